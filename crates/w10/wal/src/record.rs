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

// starter: w10-l01 todo "Do 3: 8 + 1 + 4 + key.len() + 4 + the value bytes (8 more for the deadline)"
/// The number of bytes [`encode`] appends for `record`.
pub fn encoded_len(record: &Record<'_>) -> usize {
    HEADER_LEN + MIN_BODY_LEN as usize + record.key().len() + value_len(record)
}

// starter: w10-l01 todo "Do 4: push a CRC placeholder and the fields (all LE), then write crc32 of out[start + 4..] into it"
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

// starter: w10-l01 todo "Do 5: Short before the header; BadLength; Short before 8 + length; the CRC; then op, key_len, value_len"
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
mod tests;
