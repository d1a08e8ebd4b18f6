//! Cryptokey routing table (to be written).
