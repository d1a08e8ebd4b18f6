//! (to be written)
pub fn run(_seconds: u64) -> Result<(), String> {
    Err("not implemented yet".into())
}
pub fn helper(_args: &[String]) -> Result<(), String> {
    Err("not implemented yet".into())
}
