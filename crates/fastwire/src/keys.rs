//! (to be written)
pub fn genkey() -> Result<(), String> {
    Err("not implemented yet".into())
}
pub fn pubkey() -> Result<(), String> {
    Err("not implemented yet".into())
}
pub fn genpsk() -> Result<(), String> {
    Err("not implemented yet".into())
}
