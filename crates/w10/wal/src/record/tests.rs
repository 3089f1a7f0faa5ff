//! Unit tests of `record`.

use super::*;
use proptest::prelude::*;

fn encoded(record: &Record<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(record, &mut out);
    out
}

/// Rewrites a record's CRC to match its (edited) bytes, so a test reaches the checks after
/// the checksum.
fn reseal(bytes: &mut [u8]) {
    let crc = crate::crc32(&bytes[4..]);
    bytes[..4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn the_layout_is_exactly_the_documented_one() {
    let bytes = encoded(&Record::Set {
        key: b"k",
        value: b"vv",
    });
    let length = 1 + 4 + 1 + 4 + 2;
    assert_eq!(bytes.len(), 8 + length);
    assert_eq!(bytes[4..8], (length as u32).to_le_bytes());
    assert_eq!(bytes[8], 1);
    assert_eq!(bytes[9..13], 1u32.to_le_bytes());
    assert_eq!(&bytes[13..14], b"k");
    assert_eq!(bytes[14..18], 2u32.to_le_bytes());
    assert_eq!(&bytes[18..], b"vv");
    // The CRC covers the length field and the body: bytes 4.. of the record.
    assert_eq!(bytes[..4], crate::crc32(&bytes[4..]).to_le_bytes());

    let del = encoded(&Record::Del { key: b"k" });
    assert_eq!(del[8], 2);
    assert_eq!(del[14..18], 0u32.to_le_bytes());

    let until = encoded(&Record::SetUntil {
        key: b"k",
        value: b"v",
        deadline_unix_ms: 0x0102_0304_0506_0708,
    });
    assert_eq!(until[8], 3);
    assert_eq!(until[14..18], 9u32.to_le_bytes());
    assert_eq!(until[18..26], 0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&until[26..], b"v");
}

#[test]
fn encode_appends_and_encoded_len_agrees() {
    let record = Record::SetUntil {
        key: b"key",
        value: b"value",
        deadline_unix_ms: 7,
    };
    let mut out = b"before".to_vec();
    encode(&record, &mut out);
    assert_eq!(&out[..6], b"before");
    assert_eq!(out.len() - 6, encoded_len(&record));
    assert_eq!(
        decode(&out[6..]),
        Decoded::Record {
            record,
            len: encoded_len(&record)
        }
    );
}

#[test]
fn every_prefix_is_short() {
    for record in [
        Record::Set {
            key: b"key",
            value: b"a value",
        },
        Record::Del { key: b"" },
        Record::SetUntil {
            key: b"k",
            value: b"",
            deadline_unix_ms: u64::MAX,
        },
    ] {
        let bytes = encoded(&record);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Decoded::Short,
                "{record:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn decode_reads_only_the_first_record() {
    let mut bytes = encoded(&Record::Del { key: b"a" });
    let first = bytes.len();
    encode(&Record::Del { key: b"b" }, &mut bytes);
    assert_eq!(
        decode(&bytes),
        Decoded::Record {
            record: Record::Del { key: b"a" },
            len: first
        }
    );
}

#[test]
fn a_length_below_the_smallest_body_or_above_the_limit_is_corrupt() {
    let mut bytes = encoded(&Record::Del { key: b"" });
    for length in [0, 1, 8, MAX_RECORD_LEN + 1, u32::MAX] {
        bytes[4..8].copy_from_slice(&length.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Decoded::Corrupt(Corruption::BadLength(length)),
            "length {length}"
        );
    }
}

#[test]
fn a_flipped_bit_anywhere_is_caught() {
    let bytes = encoded(&Record::Set {
        key: b"key",
        value: b"value",
    });
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(
            !matches!(decode(&damaged), Decoded::Record { .. }),
            "bit {bit} flipped and the record still decoded"
        );
    }
}

#[test]
fn a_flipped_checksum_or_body_is_a_bad_checksum() {
    let bytes = encoded(&Record::Set {
        key: b"key",
        value: b"value",
    });
    let mut damaged = bytes.clone();
    damaged[0] ^= 0x80;
    assert!(matches!(
        decode(&damaged),
        Decoded::Corrupt(Corruption::BadChecksum { .. })
    ));
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    let stored = u32_at(&bytes, 0);
    assert_eq!(
        decode(&damaged),
        Decoded::Corrupt(Corruption::BadChecksum {
            stored,
            computed: crate::crc32(&damaged[4..])
        })
    );
    // A damaged field is a bad checksum, not a bad field: the CRC is checked first, and
    // nothing inside an unverified body is believed.
    for at in [8, 9, 12, 16] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        assert!(
            matches!(
                decode(&damaged),
                Decoded::Corrupt(Corruption::BadChecksum { .. })
            ),
            "byte {at} flipped: {:?}",
            decode(&damaged)
        );
    }
    // A length that shrinks by one still points inside the record: the CRC catches it.
    let mut damaged = bytes.clone();
    let length = u32_at(&bytes, 4) - 1;
    damaged[4..8].copy_from_slice(&length.to_le_bytes());
    assert!(matches!(
        decode(&damaged),
        Decoded::Corrupt(Corruption::BadChecksum { .. })
    ));
}

#[test]
fn an_unknown_op_is_corrupt() {
    let mut bytes = encoded(&Record::Del { key: b"k" });
    for op in [0, 4, 255] {
        bytes[8] = op;
        reseal(&mut bytes);
        assert_eq!(decode(&bytes), Decoded::Corrupt(Corruption::UnknownOp(op)));
    }
}

#[test]
fn field_lengths_that_do_not_add_up_are_corrupt() {
    let good = encoded(&Record::Set {
        key: b"key",
        value: b"value",
    });
    // key_len too large (past value_len's place), one too large, one too small.
    for key_len in [u32::MAX, 100, 4, 2] {
        let mut bytes = good.clone();
        bytes[9..13].copy_from_slice(&key_len.to_le_bytes());
        reseal(&mut bytes);
        assert_eq!(
            decode(&bytes),
            Decoded::Corrupt(Corruption::FieldLengths),
            "key_len {key_len}"
        );
    }
    // value_len one too large, one too small.
    for value_len in [6u32, 4, u32::MAX] {
        let mut bytes = good.clone();
        bytes[16..20].copy_from_slice(&value_len.to_le_bytes());
        reseal(&mut bytes);
        assert_eq!(
            decode(&bytes),
            Decoded::Corrupt(Corruption::FieldLengths),
            "value_len {value_len}"
        );
    }
}

#[test]
fn a_value_that_does_not_fit_its_op_is_corrupt() {
    // A DEL with a one-byte value.
    let mut bytes = encoded(&Record::Set {
        key: b"k",
        value: b"v",
    });
    bytes[8] = 2;
    reseal(&mut bytes);
    assert_eq!(decode(&bytes), Decoded::Corrupt(Corruption::BadValue));
    // A SET with expiry whose value is shorter than the deadline.
    let mut bytes = encoded(&Record::Set {
        key: b"k",
        value: b"1234567",
    });
    bytes[8] = 3;
    reseal(&mut bytes);
    assert_eq!(decode(&bytes), Decoded::Corrupt(Corruption::BadValue));
}

fn any_record() -> impl Strategy<Value = (u8, Vec<u8>, Vec<u8>, u64)> {
    (
        1..=3u8,
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..256),
        any::<u64>(),
    )
}

fn record_of<'a>(op: u8, key: &'a [u8], value: &'a [u8], deadline: u64) -> Record<'a> {
    match op {
        1 => Record::Set { key, value },
        2 => Record::Del { key },
        _ => Record::SetUntil {
            key,
            value,
            deadline_unix_ms: deadline,
        },
    }
}

proptest! {
    #[test]
    fn every_record_round_trips((op, key, value, deadline) in any_record()) {
        let record = record_of(op, &key, &value, deadline);
        let bytes = encoded(&record);
        prop_assert_eq!(bytes.len(), encoded_len(&record));
        prop_assert_eq!(decode(&bytes), Decoded::Record { record, len: bytes.len() });
    }

    #[test]
    fn a_run_of_records_decodes_in_order(records in proptest::collection::vec(any_record(), 0..16)) {
        let records: Vec<Record<'_>> = records
            .iter()
            .map(|(op, key, value, deadline)| record_of(*op, key, value, *deadline))
            .collect();
        let mut bytes = Vec::new();
        for record in &records {
            encode(record, &mut bytes);
        }
        let mut at = 0;
        for record in &records {
            match decode(&bytes[at..]) {
                Decoded::Record { record: got, len } => {
                    prop_assert_eq!(&got, record);
                    at += len;
                }
                other => prop_assert!(false, "at {}: {:?}", at, other),
            }
        }
        prop_assert_eq!(at, bytes.len());
        prop_assert_eq!(decode(&bytes[at..]), Decoded::Short);
    }
}
