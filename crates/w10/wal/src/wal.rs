//! The log directory: numbered segments, a checkpoint, and the recovery that ties them together.
//!
//! A log that only grows must be cut into pieces to be trimmed, so the log is a run of
//! *segments*, `DIR/00000000000000000000.wal`, `…001.wal`, … (20-digit zero-padded numbers,
//! so names sort as numbers do). Appends go to the last one; [`Wal::rotate`] syncs it and starts
//! the next. A checkpoint ([`crate::checkpoint`]) records the state as of a [`LogPosition`];
//! once it is durable, [`remove_segments_before`] deletes the segments it made redundant.
//!
//! [`Wal::open`] is recovery, in an order where every step is safe to crash in and to repeat:
//!
//! 1. Create the directory if missing, and fsync its parent (the directory's own name must
//!    survive a crash before any file in it matters). Then take the directory's lock, an
//!    exclusive `flock` on `DIR/LOCK` held for as long as the [`Wal`] lives: two processes
//!    recovering, truncating and appending in one directory would destroy each other's records,
//!    so the second is refused. The kernel drops the lock when its holder dies, `kill -9`
//!    included, so a crash never leaves the directory locked.
//! 2. Delete a leftover `checkpoint.tmp`: a checkpoint that never got renamed into place is
//!    garbage by construction.
//! 3. Read the checkpoint, if there is one, verifying all of it before applying a record. A
//!    damaged checkpoint is an error: the segments it covered may be gone.
//! 4. Replay, in order, every segment from the checkpoint's position on (its own segment from
//!    its offset), verifying each record before applying it, and stop at the first damaged one.
//! 5. **Truncate** the damaged segment to its valid length (and sync it), and delete any later
//!    segment (and sync the directory), *before* returning: the next append must land right
//!    after the last good record. Appended after garbage, it would be lost to every later
//!    recovery, which stops at the garbage; and a truncation that is not synced could come back
//!    after the next crash, under records already acknowledged.
//! 6. Open the last segment for appending (creating the first one when there is none).
//!
//! Missing segments in the middle of the run (a segment number skipped) are refused: records
//! were lost, and replaying past the gap would apply later changes without earlier ones.

use crate::checkpoint::{
    CHECKPOINT_FILE, CHECKPOINT_TEMP_FILE, CheckpointInfo, LogPosition, read_checkpoint,
};
use crate::record::Record;
use crate::recovery::{Damage, replay_bytes};
use crate::writer::{LogWriter, parent_dir, sync_dir};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

/// The lock file of a log directory; its contents are never read.
pub const LOCK_FILE: &str = "LOCK";

/// The file-name suffix of a segment.
const SEGMENT_SUFFIX: &str = ".wal";
/// The digits of a segment number in its file name.
const SEGMENT_DIGITS: usize = 20;

/// The path of segment `segment` in `dir`: `DIR/NNNNNNNNNNNNNNNNNNNN.wal`.
pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:0SEGMENT_DIGITS$}{SEGMENT_SUFFIX}"))
}

/// The segment number a file name stands for, if it is a segment's name.
fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The numbers of the segments in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(segment) = entry.file_name().to_str().and_then(segment_number) {
            segments.push(segment);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// What [`Wal::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    /// The checkpoint recovery started from, if there was one.
    pub checkpoint: Option<CheckpointInfo>,
    /// The segments replayed (the checkpoint's own segment included).
    pub segments: u64,
    /// The records replayed from the segments (the checkpoint's are in `checkpoint`).
    pub replayed: u64,
    /// The bytes of the segments' records replayed.
    pub valid_bytes: u64,
    /// The bytes dropped: the damaged tail of the damaged segment and every later segment.
    pub dropped_bytes: u64,
    /// The segment where the damage starts, and what and where it is.
    pub damage: Option<(u64, Damage)>,
    /// Whether a leftover `checkpoint.tmp` was deleted.
    pub removed_temp: bool,
}

/// `n` and the noun, plural unless `n` is 1.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl Recovered {
    /// One line for a human (a server's start-up log): where the state came from, and what was
    /// dropped and why.
    pub fn summary(&self) -> String {
        let mut line = match &self.checkpoint {
            Some(checkpoint) => format!(
                "recovered {} from the checkpoint at segment {} offset {} and {} from {}",
                count(checkpoint.records, "record"),
                checkpoint.position.segment,
                checkpoint.position.offset,
                self.replayed,
                count(self.segments, "segment"),
            ),
            None => format!(
                "recovered {} from {} (no checkpoint)",
                count(self.replayed, "record"),
                count(self.segments, "segment"),
            ),
        };
        match &self.damage {
            Some((segment, damage)) => {
                let _ = write!(
                    line,
                    "; dropped {} of a damaged tail at segment {segment} offset {} ({})",
                    count(self.dropped_bytes, "byte"),
                    damage.offset,
                    damage.kind,
                );
            }
            None => line.push_str("; no damaged tail"),
        }
        if self.removed_temp {
            line.push_str("; removed an unfinished checkpoint.tmp");
        }
        line
    }
}

// starter: w10-l03 todo "Do 3: set_len(valid_len) on the damaged segment and sync_all it; remove every later segment, then sync_dir; return the bytes they held"
/// Cuts the log after its last good record: truncates segment `segment` to `valid_len` (synced,
/// so the cut survives a crash) and deletes every segment in `later` (then fsyncs the
/// directory). Returns the bytes the deleted segments held.
fn cut_damaged_tail(dir: &Path, segment: u64, valid_len: u64, later: &[u64]) -> io::Result<u64> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment_path(dir, segment))?;
    file.set_len(valid_len)?;
    file.sync_all()?;
    let mut removed = 0;
    for &later in later {
        let path = segment_path(dir, later);
        removed += std::fs::metadata(&path)?.len();
        std::fs::remove_file(&path)?;
    }
    if !later.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// An open log directory: the segment appends go to, and where it lives.
#[derive(Debug)]
pub struct Wal {
    /// The log directory.
    dir: PathBuf,
    /// The number of the segment appends go to.
    segment: u64,
    /// That segment, open for appending.
    writer: LogWriter,
    /// `DIR/LOCK`, exclusively locked while this log is open (the lock goes with the file).
    _lock: File,
}

/// Opens `DIR/LOCK` and takes its exclusive lock without waiting; another holder is an error of
/// kind `WouldBlock` that names the directory.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(io::Error::new(
            ErrorKind::WouldBlock,
            format!(
                "{} is in use: another process holds its {LOCK_FILE}",
                dir.display()
            ),
        )),
        Err(TryLockError::Error(error)) => Err(error),
    }
}

impl Wal {
    /// Opens (or creates) the log directory `dir` and recovers it, passing every record of the
    /// checkpoint and then of the segments to `apply`, in log order; returns the log, ready to
    /// append after the last good record, and what recovery found. The steps and why each is
    /// safe are in the module docs.
    ///
    /// Appends go to the last segment replayed. When the checkpoint's segment is the last one
    /// but holds less than the checkpoint's offset (the checkpoint covered appends that never
    /// reached the segment's file), appends go to a new, next segment instead, so no record is
    /// ever written below a checkpoint's offset, where replay would skip it.
    pub fn open(dir: &Path, mut apply: impl FnMut(Record<'_>)) -> io::Result<(Wal, Recovered)> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            sync_dir(parent_dir(dir))?;
        }
        let lock = lock_dir(dir)?;
        let mut recovered = Recovered::default();
        let temp = dir.join(CHECKPOINT_TEMP_FILE);
        match std::fs::remove_file(&temp) {
            Ok(()) => {
                recovered.removed_temp = true;
                sync_dir(dir)?;
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        // Only a checkpoint that is there is read; its absence is the common case.
        if dir.join(CHECKPOINT_FILE).exists() {
            recovered.checkpoint = read_checkpoint(dir, &mut apply)?;
        }
        let start = recovered.checkpoint.map_or(
            LogPosition {
                segment: 0,
                offset: 0,
            },
            |checkpoint| checkpoint.position,
        );

        let segments: Vec<u64> = list_segments(dir)?
            .into_iter()
            .filter(|&segment| segment >= start.segment)
            .collect();
        let mut expected = start.segment;
        for (index, &segment) in segments.iter().enumerate() {
            // The checkpoint's own segment may be missing when nothing follows the checkpoint
            // (it is made before the first append to that segment); any later gap lost records.
            let skipped_checkpoint_segment =
                index == 0 && recovered.checkpoint.is_some() && segment == start.segment + 1;
            if segment != expected && !skipped_checkpoint_segment {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "segment {expected} is missing from {} (the next one is {segment}): \
                         refusing to replay past lost records",
                        dir.display()
                    ),
                ));
            }
            expected = segment + 1;
        }

        let mut last: Option<(u64, u64)> = None;
        for (index, &segment) in segments.iter().enumerate() {
            let bytes = std::fs::read(segment_path(dir, segment))?;
            let from = if segment == start.segment {
                start.offset
            } else {
                0
            };
            let replay = replay_bytes(&bytes, from, &mut apply);
            recovered.segments += 1;
            recovered.replayed += replay.records;
            recovered.valid_bytes += replay.valid_len - from.min(replay.valid_len);
            last = Some((segment, replay.valid_len));
            if let Some(damage) = replay.damage {
                let later = &segments[index + 1..];
                let removed = cut_damaged_tail(dir, segment, replay.valid_len, later)?;
                recovered.dropped_bytes = replay.dropped_bytes() + removed;
                recovered.damage = Some((segment, damage));
                break;
            }
        }

        let segment = match last {
            Some((segment, len)) if segment != start.segment || len >= start.offset => segment,
            Some((segment, _)) => segment + 1,
            None if start.offset == 0 => start.segment,
            None => start.segment + 1,
        };
        let writer = LogWriter::open(&segment_path(dir, segment))?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            segment,
            writer,
            _lock: lock,
        };
        Ok((wal, recovered))
    }

    /// Appends `bytes` (whole framed records) to the current segment.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.append(bytes)
    }

    /// Makes every appended byte durable. A failure is never retried (see
    /// [`LogWriter::sync`]).
    pub fn sync(&mut self) -> io::Result<()> {
        self.writer.sync()
    }

    /// The current segment and its length: the position the next append starts at.
    pub fn position(&self) -> LogPosition {
        LogPosition {
            segment: self.segment,
            offset: self.writer.len(),
        }
    }

    /// Syncs the current segment, creates the next one (fsyncing the directory) and switches to
    /// it. Returns its position: the new segment, offset 0.
    pub fn rotate(&mut self) -> io::Result<LogPosition> {
        self.writer.sync()?;
        let next = self.segment + 1;
        self.writer = LogWriter::create(&segment_path(&self.dir, next))?;
        self.segment = next;
        Ok(self.position())
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Deletes every segment in `dir` numbered below `segment` (those a durable checkpoint at
/// `segment` made redundant), then fsyncs the directory. Returns how many were deleted.
pub fn remove_segments_before(dir: &Path, segment: u64) -> io::Result<u64> {
    let mut removed = 0;
    for old in list_segments(dir)? {
        if old < segment {
            std::fs::remove_file(segment_path(dir, old))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
