//! Checkpoints: a snapshot of the state and the log position it covers, so recovery need not
//! replay the log from the beginning of time, and old segments can be deleted.
//!
//! A checkpoint file replaces the segments it covers, so it must never be half there. It is
//! written the one way a file can be replaced atomically on POSIX:
//!
//! 1. write everything to `checkpoint.tmp` (a crash here leaves the old `checkpoint` intact; the
//!    temp is garbage, deleted at the next open);
//! 2. `fsync` the temp file, so its *data* is on disk before any name points at it (without
//!    this, a crash after the rename can leave `checkpoint` naming a file of zeros or of nothing:
//!    file systems may persist the rename before the data);
//! 3. `rename` it over `checkpoint` (atomic: after a crash the name points at the old file or the
//!    new one, never at a mixture);
//! 4. `fsync` the directory, so the rename itself is durable. Only now may the caller delete the
//!    segments the checkpoint covers: before it, a crash could bring back the old checkpoint
//!    with its segments already gone.
//!
//! The hook passed to [`write_checkpoint`] hears each step as it completes, so a test (or a
//! server's failure injection) can crash right after any of them.
//!
//! The file, all integers little-endian:
//!
//! ```text
//! [magic: 8 bytes "WALCHKPT"][version: u32 = 1][segment: u64][offset: u64][records: u64]
//! [record]*                       (each in the log's record format, CRC included)
//! [crc32: u32]                    (of every byte before it)
//! ```
//!
//! Reading verifies everything before applying anything: the whole-file CRC, the magic and
//! version, and that the records decode and are as many as the header says. A checkpoint that
//! fails is an error, never skipped: the segments it covered may already be deleted, so
//! recovering without it would silently lose data. A leftover `checkpoint.tmp` is never read.

use crate::crc32::crc32;
use crate::record::{Decoded, Record, decode, encode};
use crate::writer::{sync_dir, write_all_retrying};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::path::Path;

/// The checkpoint's file name in the log directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// The name the next checkpoint is written under before it is renamed into place.
pub const CHECKPOINT_TEMP_FILE: &str = "checkpoint.tmp";

/// The first bytes of every checkpoint file.
const MAGIC: &[u8; 8] = b"WALCHKPT";
/// The format version this crate writes and reads.
const VERSION: u32 = 1;
/// Magic, version, segment, offset and record count.
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8;
/// The trailing CRC-32.
const TRAILER_LEN: usize = 4;

/// A place in the log: a segment and a byte offset in it. Positions order as the log does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    /// The segment number.
    pub segment: u64,
    /// The byte offset within the segment (a record boundary).
    pub offset: u64,
}

/// A step of [`write_checkpoint`], reported to its hook as soon as it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStep {
    /// `checkpoint.tmp` holds the whole checkpoint (in the page cache).
    TempWritten,
    /// `checkpoint.tmp` is fsynced.
    TempSynced,
    /// `checkpoint.tmp` is renamed over `checkpoint`.
    Renamed,
    /// The directory is fsynced: the new checkpoint is durable.
    DirSynced,
}

/// What a checkpoint holds: the position it covers, its record count and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The log position the snapshot covers: replay resumes here.
    pub position: LogPosition,
    /// The records in the snapshot.
    pub records: u64,
    /// The checkpoint file's size in bytes.
    pub bytes: u64,
}

// starter: w10-l05 todo "Do 1: header with a record count patched in after encoding each record, trailing crc32; write checkpoint.tmp, sync_all, rename, sync_dir; on_step after each"
/// Writes a checkpoint of `records` covering the log up to `position` into `dir` as
/// `checkpoint`, through `checkpoint.tmp`, a file fsync, a rename and a directory fsync,
/// calling `on_step` after each step.
///
/// The caller must have synced the log up to `position` or hold the state the records describe
/// (they are the state as of `position`), and may delete the segments before
/// `position.segment` once this returns.
pub fn write_checkpoint<'a>(
    dir: &Path,
    position: LogPosition,
    records: impl IntoIterator<Item = Record<'a>>,
    on_step: &mut dyn FnMut(CheckpointStep),
) -> io::Result<CheckpointInfo> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + TRAILER_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&position.segment.to_le_bytes());
    bytes.extend_from_slice(&position.offset.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    let mut count = 0u64;
    for record in records {
        encode(&record, &mut bytes);
        count += 1;
    }
    bytes[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&count.to_le_bytes());
    let crc = crc32(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());

    let temp = dir.join(CHECKPOINT_TEMP_FILE);
    // Truncating is right for the temp file only: it is garbage by definition.
    let mut file = File::create(&temp)?;
    write_all_retrying(&mut file, &bytes)?;
    on_step(CheckpointStep::TempWritten);
    file.sync_all()?;
    drop(file);
    on_step(CheckpointStep::TempSynced);
    std::fs::rename(&temp, dir.join(CHECKPOINT_FILE))?;
    on_step(CheckpointStep::Renamed);
    sync_dir(dir)?;
    on_step(CheckpointStep::DirSynced);
    Ok(CheckpointInfo {
        position,
        records: count,
        bytes: bytes.len() as u64,
    })
}

/// An `InvalidData` error naming the damaged checkpoint and why it is refused.
fn damaged(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        ErrorKind::InvalidData,
        format!(
            "the checkpoint {} is damaged ({why}); refusing to recover without it, since the \
             log segments it covers may be gone",
            path.display()
        ),
    )
}

// starter: w10-l05 todo "Do 3: NotFound is None; check length, crc32 trailer, magic, version; decode every record into a Vec and check the count; only then apply them"
/// Reads the checkpoint in `dir` and passes its records to `apply`: `None` when there is none.
///
/// The whole file is verified before the first record is applied: the trailing CRC-32, the
/// magic and version, every record and the record count. A damaged checkpoint is an error of
/// kind [`ErrorKind::InvalidData`], never skipped. `checkpoint.tmp` is never read.
pub fn read_checkpoint(
    dir: &Path,
    mut apply: impl FnMut(Record<'_>),
) -> io::Result<Option<CheckpointInfo>> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(damaged(&path, format!("only {} bytes", bytes.len())));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let stored = u32::from_le_bytes(trailer.try_into().expect("four bytes"));
    let computed = crc32(body);
    if stored != computed {
        return Err(damaged(
            &path,
            format!("bad checksum: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    if &body[..8] != MAGIC {
        return Err(damaged(&path, "not a checkpoint file"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(body[8..12].try_into().expect("four bytes"));
    if version != VERSION {
        return Err(damaged(&path, format!("unknown format version {version}")));
    }
    let position = LogPosition {
        segment: u64_at(12),
        offset: u64_at(20),
    };
    let count = u64_at(28);
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    while at < body.len() {
        match decode(&body[at..]) {
            Decoded::Record { record, len } => {
                records.push(record);
                at += len;
            }
            Decoded::Short => return Err(damaged(&path, format!("a record cut short at {at}"))),
            Decoded::Corrupt(why) => return Err(damaged(&path, format!("at {at}: {why}"))),
        }
    }
    if records.len() as u64 != count {
        return Err(damaged(
            &path,
            format!("{} records where the header says {count}", records.len()),
        ));
    }
    for record in records {
        apply(record);
    }
    Ok(Some(CheckpointInfo {
        position,
        records: count,
        bytes: bytes.len() as u64,
    }))
}

#[cfg(test)]
mod tests;
