//! Empty: the measurement lives in `benches/aead.rs`.
