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

// starter: w10-l03 todo "std::fs::read the file, then replay_bytes from offset 0"
/// Replays the log file at `path`: verifies each record, then passes it to `apply`, in order,
/// and stops at the first short or damaged record, never applying anything after it.
pub fn replay_file(path: &Path, apply: impl FnMut(Record<'_>)) -> io::Result<Replay> {
    let bytes = std::fs::read(path)?;
    Ok(replay_bytes(&bytes, 0, apply))
}

// starter: w10-l03 todo "decode at the offset: Record -> apply, count, advance; Short at the end -> done; Short or Corrupt before it -> Damage, stop"
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
mod tests {
    use super::*;
    use crate::record::encode;
    use crate::test_dir::TestDir;

    fn key(i: u32) -> Vec<u8> {
        format!("key-{i}").into_bytes()
    }

    /// Ten SET records, and the offset where each starts (plus the end).
    fn log() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for i in 0..10 {
            starts.push(bytes.len());
            encode(
                &Record::Set {
                    key: &key(i),
                    value: &vec![b'v'; i as usize * 3],
                },
                &mut bytes,
            );
        }
        starts.push(bytes.len());
        (bytes, starts)
    }

    fn applied_keys(bytes: &[u8], start: u64) -> (Vec<Vec<u8>>, Replay) {
        let mut keys = Vec::new();
        let replay = replay_bytes(bytes, start, |record| keys.push(record.key().to_vec()));
        (keys, replay)
    }

    #[test]
    fn an_intact_log_replays_every_record() {
        let (bytes, _) = log();
        let (keys, replay) = applied_keys(&bytes, 0);
        assert_eq!(keys, (0..10).map(key).collect::<Vec<_>>());
        assert_eq!(
            replay,
            Replay {
                records: 10,
                valid_len: bytes.len() as u64,
                file_len: bytes.len() as u64,
                damage: None
            }
        );
        assert_eq!(replay.dropped_bytes(), 0);
        let (keys, replay) = applied_keys(&[], 0);
        assert!(keys.is_empty());
        assert_eq!(replay.damage, None);
    }

    #[test]
    fn records_before_a_bad_one_are_applied_and_none_after() {
        let (mut bytes, starts) = log();
        // Damage the body of record 4; records 5..10 are intact but must not be applied.
        bytes[starts[4] + 10] ^= 0x01;
        let (keys, replay) = applied_keys(&bytes, 0);
        assert_eq!(keys, (0..4).map(key).collect::<Vec<_>>());
        assert_eq!(replay.records, 4);
        assert_eq!(replay.valid_len, starts[4] as u64);
        assert_eq!(replay.dropped_bytes(), (bytes.len() - starts[4]) as u64);
        let damage = replay.damage.unwrap();
        assert_eq!(damage.offset, starts[4] as u64);
        assert!(matches!(
            damage.kind,
            DamageKind::Corrupt(Corruption::BadChecksum { .. })
        ));
    }

    #[test]
    fn a_torn_tail_is_a_short_tail() {
        let (bytes, starts) = log();
        let cut = starts[7] + 5;
        let (keys, replay) = applied_keys(&bytes[..cut], 0);
        assert_eq!(keys.len(), 7);
        assert_eq!(
            replay.damage,
            Some(Damage {
                offset: starts[7] as u64,
                kind: DamageKind::ShortTail
            })
        );
        assert_eq!(replay.dropped_bytes(), 5);
    }

    #[test]
    fn zeros_after_the_last_record_are_damage() {
        let (mut bytes, _) = log();
        let end = bytes.len();
        bytes.extend_from_slice(&[0; 512]);
        let (keys, replay) = applied_keys(&bytes, 0);
        assert_eq!(keys.len(), 10);
        assert_eq!(
            replay.damage,
            Some(Damage {
                offset: end as u64,
                kind: DamageKind::Corrupt(Corruption::BadLength(0))
            })
        );
    }

    #[test]
    fn a_replay_can_start_at_a_record_boundary() {
        let (bytes, starts) = log();
        let (keys, replay) = applied_keys(&bytes, starts[6] as u64);
        assert_eq!(keys, (6..10).map(key).collect::<Vec<_>>());
        assert_eq!(replay.records, 4);
        assert_eq!(replay.valid_len, bytes.len() as u64);
        let (keys, replay) = applied_keys(&bytes, bytes.len() as u64 + 10);
        assert!(keys.is_empty());
        assert_eq!(replay.damage, None);
        assert_eq!(replay.valid_len, bytes.len() as u64);
    }

    #[test]
    fn replay_file_reads_the_file() {
        let dir = TestDir::new("recovery-file");
        let path = dir.path().join("log");
        let (bytes, starts) = log();
        std::fs::write(&path, &bytes[..starts[3] + 1]).unwrap();
        let mut count = 0;
        let replay = replay_file(&path, |_| count += 1).unwrap();
        assert_eq!(count, 3);
        assert_eq!(replay.valid_len, starts[3] as u64);
        assert_eq!(replay.file_len, starts[3] as u64 + 1);
        assert_eq!(
            replay_file(&dir.path().join("missing"), |_| {})
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
