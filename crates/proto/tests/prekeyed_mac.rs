//! The precomputed-key MAC (mac1 of every handshake) agrees with keyed BLAKE2s computed from scratch.

use fastwire_proto::crypto::{PrekeyedMac, mac};
use proptest::prelude::*;

proptest! {
    #[test]
    fn agrees_with_plain_keyed_blake2s(
        key in proptest::collection::vec(any::<u8>(), 1..=32),
        data in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        prop_assert_eq!(PrekeyedMac::new(&key).mac(&data), mac(&key, &data));
    }
}

#[test]
fn block_boundaries_and_empty_input() {
    let key = [0x5a; 32];
    let m = PrekeyedMac::new(&key);
    for len in [0, 1, 60, 63, 64, 65, 116, 127, 128, 129, 132, 192] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert_eq!(m.mac(&data), mac(&key, &data), "length {len}");
    }
}
