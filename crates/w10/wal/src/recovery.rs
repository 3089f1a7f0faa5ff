//! Replay by verification: reading a log back after a crash, and knowing where to stop.
//!
//! After a crash the end of a log is whatever the disk kept: every record that was synced, then
//! possibly part of the next one (a torn tail), zeros where a sector was never written, or, on
//! bad media, a flipped bit anywhere. Recovery must rebuild exactly the state the log's intact
//! prefix describes, so it **verifies each record before applying it** and **stops at the first
//! record it cannot verify**: the bytes after a damaged record cannot be trusted to start at a
//! record boundary, and even a record that checks out after a gap would apply a change out of
//! order (the one before it is lost). So nothing after the first bad record is ever applied.
//!
//! The result, [`Replay`], says how many records were applied, how long the valid prefix is and
//! where and why the damage starts. The caller decides what to do with the damaged tail; the
//! log directory ([`crate::Wal::open`]) truncates it before it appends anything, because a new
//! record written after garbage would be unreachable: the next recovery would stop at the
//! garbage and never see it.

use crate::record::{Corruption, Decoded, Record, decode};
use std::fmt;
use std::io;
use std::path::Path;

/// What is wrong at the end of a log's valid prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// The file ends inside a record: a torn write, or a crash before the record was whole.
    ShortTail,
    /// The bytes at the offset are not a valid record.
    Corrupt(Corruption),
}

/// Where a log's damage starts, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// The byte offset in the file of the first record that could not be verified (the valid
    /// prefix's length).
    pub offset: u64,
    /// What was found there.
    pub kind: DamageKind,
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageKind::ShortTail => f.write_str("the file ends inside a record"),
            DamageKind::Corrupt(corruption) => corruption.fmt(f),
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.kind)
    }
}

/// The outcome of replaying one log file (or one run of bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Records verified and applied.
    pub records: u64,
    /// The length of the valid prefix: the offset just past the last applied record.
    pub valid_len: u64,
    /// The length of the file (or of the bytes).
    pub file_len: u64,
    /// Where and why the replay stopped before the end, if it did.
    pub damage: Option<Damage>,
}

impl Replay {
    /// The bytes after the valid prefix, which recovery drops.
    pub fn dropped_bytes(&self) -> u64 {
        self.file_len - self.valid_len
    }
}

// starter: w10-l03 todo "Do 2: std::fs::read the file, then replay_bytes from offset 0"
/// Replays the log file at `path`: verifies each record, then passes it to `apply`, in order,
/// and stops at the first short or damaged record, never applying anything after it.
pub fn replay_file(path: &Path, apply: impl FnMut(Record<'_>)) -> io::Result<Replay> {
    let bytes = std::fs::read(path)?;
    Ok(replay_bytes(&bytes, 0, apply))
}

// starter: w10-l03 todo "Do 1: at == bytes.len(), checked before decoding -> clean end; else decode: Record -> apply, count, advance; Short or Corrupt -> Damage at `at`, stop"
/// Replays the records in `bytes` from byte offset `start` (which the caller knows is a record
/// boundary: 0, or a checkpoint's offset). Offsets in the result count from the start of
/// `bytes`. A `start` past the end replays nothing and reports no damage.
pub fn replay_bytes(bytes: &[u8], start: u64, mut apply: impl FnMut(Record<'_>)) -> Replay {
    let file_len = bytes.len() as u64;
    let mut at = start.min(file_len) as usize;
    let mut records = 0;
    let damage = loop {
        if at == bytes.len() {
            break None;
        }
        match decode(&bytes[at..]) {
            Decoded::Record { record, len } => {
                apply(record);
                records += 1;
                at += len;
            }
            Decoded::Short => break Some(DamageKind::ShortTail),
            Decoded::Corrupt(corruption) => break Some(DamageKind::Corrupt(corruption)),
        }
    };
    let valid_len = if start > file_len {
        file_len
    } else {
        at as u64
    };
    Replay {
        records,
        valid_len,
        file_len,
        damage: damage.map(|kind| Damage {
            offset: valid_len,
            kind,
        }),
    }
}

#[cfg(test)]
mod tests;
