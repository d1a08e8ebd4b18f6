//! (to be written)
pub fn show(_iface: Option<&str>) -> Result<(), String> {
    Err("not implemented yet".into())
}
