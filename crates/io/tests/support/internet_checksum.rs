//! The Internet checksum (RFC 1071) for tests and fuzz targets that build packets: written here rather
//! than taken from tun-rs or `fastwire_io::tun::gro`, so that a checksum bug in the code under test
//! cannot make the inputs agree with it. Included by path (crates/io/src/tun/gro_tests.rs,
//! crates/io/tests/tun_gro.rs, fuzz/fuzz_targets/tun_offload.rs).

/// The checksum of the concatenated `chunks`, complemented, as it goes into a header.
pub fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u64;
    for chunk in chunks {
        let mut words = chunk.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u64::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}
