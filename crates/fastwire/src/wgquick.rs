//! (to be written)
use std::path::Path;
pub fn up(_file: &Path, _workers: Option<usize>) -> Result<(), String> {
    Err("up: not implemented yet".into())
}
pub fn down(_target: &str) -> Result<(), String> {
    Err("down: not implemented yet".into())
}
