//! One log record: how a change to the store is framed on disk, and how a reader decides
//! whether the bytes in front of it are a whole, intact record.
//!
//! A record is framed so that a reader needs nothing but the bytes: a fixed 8-byte header (the
//! CRC-32 and the length of the rest), then the body. All integers are little-endian:
//!
//! ```text
//! [crc32: u32][length: u32][op: u8][key_len: u32][key][value_len: u32][value]
//!  └─ covers ─┴─ the length field and the `length` bytes after it ─────────────┘
//! ```
//!
//! - `length` is the number of bytes after the length field (`op` through `value`), so a record
//!   occupies `8 + length` bytes and the reader knows where the next one starts without parsing
//!   the body.
//! - The CRC covers the length field as well as the body. Were the length left out, a flipped
//!   bit in it would send the reader to a wrong end, and the checksum of the wrong range could
//!   not catch it reliably; covering it means a damaged length is a bad checksum like any other
//!   damage.
//! - `op` 1 is SET (`value` is the value), 2 is DEL (`value_len` is 0), 3 is SET with an expiry:
//!   `value` is an 8-byte absolute deadline in Unix milliseconds, then the value's bytes. The
//!   deadline is absolute wall-clock time, not "N seconds from now", so replaying the log after
//!   a restart drops the keys whose deadline has passed meanwhile; a key that expires writes no
//!   record at all.
//!
//! [`decode`] never trusts a byte before the checksum agrees: it first checks that the header is
//! there and that `length` is plausible (at least the 9 bytes of `op`, `key_len` and
//! `value_len`, at most [`MAX_RECORD_LEN`]), then that all `8 + length` bytes are there (else the
//! record is [`Decoded::Short`]: a torn tail, or a reader that must wait for more), then the CRC,
//! and only then the fields inside the body. It borrows the key and value from the input, so
//! replay copies nothing it does not keep.

use crate::crc32::Crc32;
use std::fmt;

/// The bytes before a record's body: the CRC-32 and the length field.
pub const HEADER_LEN: usize = 8;

/// The largest `length` a reader accepts: 64 MiB.
///
/// A damaged length field can claim up to 4 GiB. Without a bound, the reader of a log whose
/// tail was torn inside a length field would take the garbage at face value: wait for, or
/// allocate, gigabytes that were never written. The KV protocol's lines are at most 64 KiB,
/// so no legitimate record comes near 64 MiB, and the bound still leaves a thousandfold margin
/// for a store with larger values.
pub const MAX_RECORD_LEN: u32 = 64 * 1024 * 1024;

/// The smallest body: `op`, `key_len` and `value_len`, with an empty key and value.
const MIN_BODY_LEN: u32 = 1 + 4 + 4;

/// The op byte of a SET.
const OP_SET: u8 = 1;
/// The op byte of a DEL.
const OP_DEL: u8 = 2;
/// The op byte of a SET with an expiry deadline.
const OP_SET_UNTIL: u8 = 3;

/// One change to the store, borrowing its key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// Set `key` to `value`, with no expiry.
    Set {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Set `key` to `value` until the absolute wall-clock deadline, in milliseconds since the
    /// Unix epoch.
    SetUntil {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// When the key expires, in milliseconds since 1970-01-01T00:00:00Z.
        deadline_unix_ms: u64,
    },
    /// Remove `key`.
    Del {
        /// The key.
        key: &'a [u8],
    },
}

impl<'a> Record<'a> {
    /// The key the record changes.
    pub fn key(&self) -> &'a [u8] {
        match *self {
            Record::Set { key, .. } | Record::SetUntil { key, .. } | Record::Del { key } => key,
        }
    }
}

/// Why the bytes at the start of the input are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The length field is below the smallest body (9 bytes) or above [`MAX_RECORD_LEN`].
    BadLength(u32),
    /// The stored CRC-32 is not the CRC-32 of the length field and the body.
    BadChecksum {
        /// The CRC-32 the record carries.
        stored: u32,
        /// The CRC-32 of the bytes as they are now.
        computed: u32,
    },
    /// The op byte is none of SET (1), DEL (2) and SET with expiry (3).
    UnknownOp(u8),
    /// `key_len` and `value_len` do not add up to `length`.
    FieldLengths,
    /// A DEL with a value, or a SET with expiry whose value is shorter than its 8-byte deadline.
    BadValue,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::BadLength(length) => write!(f, "impossible record length {length}"),
            Corruption::BadChecksum { stored, computed } => {
                write!(
                    f,
                    "bad checksum: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            Corruption::UnknownOp(op) => write!(f, "unknown op {op}"),
            Corruption::FieldLengths => {
                f.write_str("key and value lengths do not add up to the record length")
            }
            Corruption::BadValue => f.write_str("a value that does not fit the op"),
        }
    }
}

/// What [`decode`] found at the start of its input.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record, verified, which occupies the first `len` bytes.
    Record {
        /// The record.
        record: Record<'a>,
        /// Its framed length: `HEADER_LEN + length`.
        len: usize,
    },
    /// Fewer bytes than the header, or than the `8 + length` the header announces: a torn tail
    /// (or, for a reader of a stream, a record still arriving).
    Short,
    /// Bytes that are not a record, and why.
    Corrupt(Corruption),
}

/// The value bytes a record stores: the deadline comes first for a SET with expiry.
fn value_len(record: &Record<'_>) -> usize {
    match record {
        Record::Set { value, .. } => value.len(),
        Record::SetUntil { value, .. } => 8 + value.len(),
        Record::Del { .. } => 0,
    }
}

// starter: w10-l01 todo "8 + 1 + 4 + key.len() + 4 + the value bytes (8 more for the deadline)"
/// The number of bytes [`encode`] appends for `record`.
pub fn encoded_len(record: &Record<'_>) -> usize {
    HEADER_LEN + MIN_BODY_LEN as usize + record.key().len() + value_len(record)
}

// starter: w10-l01 todo "push a CRC placeholder and the fields (all LE), then write crc32 of out[start + 4..] into it"
/// Appends `record`, framed, to `out`.
///
/// # Panics
///
/// If the record's body would be longer than [`MAX_RECORD_LEN`]: a reader would refuse it, so
/// writing it would be a log no recovery accepts. Callers bound their keys and values far below
/// that (the KV protocol's line limit is 64 KiB).
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let total = encoded_len(record);
    let length = total - HEADER_LEN;
    assert!(
        length <= MAX_RECORD_LEN as usize,
        "a record body of {length} bytes is longer than MAX_RECORD_LEN"
    );
    let start = out.len();
    out.reserve(total);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(length as u32).to_le_bytes());
    let (op, key) = match *record {
        Record::Set { key, .. } => (OP_SET, key),
        Record::SetUntil { key, .. } => (OP_SET_UNTIL, key),
        Record::Del { key } => (OP_DEL, key),
    };
    out.push(op);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value_len(record) as u32).to_le_bytes());
    match *record {
        Record::Set { value, .. } => out.extend_from_slice(value),
        Record::SetUntil {
            value,
            deadline_unix_ms,
            ..
        } => {
            out.extend_from_slice(&deadline_unix_ms.to_le_bytes());
            out.extend_from_slice(value);
        }
        Record::Del { .. } => {}
    }
    let mut crc = Crc32::new();
    crc.update(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.finish().to_le_bytes());
}

/// The little-endian `u32` at `at` (the caller has checked the bounds).
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

// starter: w10-l01 todo "Short before the header; BadLength; Short before 8 + length; the CRC; then op, key_len, value_len"
/// Looks at the record at the start of `bytes`: a whole verified record and its length,
/// [`Decoded::Short`] when the bytes end before the record does, or [`Decoded::Corrupt`].
///
/// The checks run in the order that never trusts an unchecked byte: the header's presence, the
/// length's bounds, the body's presence, the checksum, and only then the fields.
pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < HEADER_LEN {
        return Decoded::Short;
    }
    let stored = u32_at(bytes, 0);
    let length = u32_at(bytes, 4);
    if !(MIN_BODY_LEN..=MAX_RECORD_LEN).contains(&length) {
        return Decoded::Corrupt(Corruption::BadLength(length));
    }
    let len = HEADER_LEN + length as usize;
    if bytes.len() < len {
        return Decoded::Short;
    }
    let mut crc = Crc32::new();
    crc.update(&bytes[4..len]);
    let computed = crc.finish();
    if computed != stored {
        return Decoded::Corrupt(Corruption::BadChecksum { stored, computed });
    }
    let body = &bytes[HEADER_LEN..len];
    let op = body[0];
    if !matches!(op, OP_SET | OP_DEL | OP_SET_UNTIL) {
        return Decoded::Corrupt(Corruption::UnknownOp(op));
    }
    // The body is op (1), key_len (4), key, value_len (4), value: key_len must leave room for
    // value_len, and value_len must take exactly the rest.
    let key_len = u32_at(body, 1) as usize;
    let Some(value_len_at) = key_len
        .checked_add(1 + 4)
        .filter(|&at| at <= body.len() - 4)
    else {
        return Decoded::Corrupt(Corruption::FieldLengths);
    };
    let value_len = u32_at(body, value_len_at) as usize;
    let value_at = value_len_at + 4;
    if value_at.checked_add(value_len) != Some(body.len()) {
        return Decoded::Corrupt(Corruption::FieldLengths);
    }
    let key = &body[5..value_len_at];
    let value = &body[value_at..];
    let record = match op {
        OP_SET => Record::Set { key, value },
        OP_DEL if value.is_empty() => Record::Del { key },
        OP_SET_UNTIL if value.len() >= 8 => {
            let (deadline, value) = value.split_at(8);
            let mut le = [0; 8];
            le.copy_from_slice(deadline);
            Record::SetUntil {
                key,
                value,
                deadline_unix_ms: u64::from_le_bytes(le),
            }
        }
        _ => return Decoded::Corrupt(Corruption::BadValue),
    };
    Decoded::Record { record, len }
}

#[cfg(test)]
mod tests {
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
}
