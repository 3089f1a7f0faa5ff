//! Unit tests of `crc32`.

use super::*;
use proptest::prelude::*;

#[test]
fn the_table_holds_the_known_entries() {
    let table = make_table();
    assert_eq!(table[0], 0);
    assert_eq!(table[1], 0x7707_3096);
    assert_eq!(table[128], 0xEDB8_8320);
    assert_eq!(table[255], 0x2D02_EF8D);
}

#[test]
fn the_check_value_matches() {
    // The check value of every CRC catalogue: CRC-32 of the ASCII digits 1 to 9.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
}

#[test]
fn fixed_vectors_match_crc32fast() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b""), crc32fast::hash(b""));
    for byte in 0..=255u8 {
        assert_eq!(crc32(&[byte]), crc32fast::hash(&[byte]), "byte {byte:#04x}");
    }
    let long: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
    assert_eq!(crc32(&long), crc32fast::hash(&long));
}

#[test]
fn incremental_equals_one_shot() {
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    for split in [0, 1, 3, 500, 999, 1000] {
        let mut crc = Crc32::new();
        crc.update(&bytes[..split]);
        crc.update(&bytes[split..]);
        assert_eq!(crc.finish(), crc32(&bytes), "split at {split}");
    }
    assert_eq!(Crc32::default().finish(), crc32(b""));
}

proptest! {
    #[test]
    fn random_bytes_match_crc32fast(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(crc32(&bytes), crc32fast::hash(&bytes));
    }

    #[test]
    fn random_splits_equal_one_shot(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut crc = Crc32::new();
        let mut from = 0;
        for cut in cuts {
            crc.update(&bytes[from..cut]);
            from = cut;
        }
        crc.update(&bytes[from..]);
        prop_assert_eq!(crc.finish(), crc32(&bytes));
    }
}
