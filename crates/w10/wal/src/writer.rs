//! The append discipline: how bytes reach a log file and when they are durable.
//!
//! A `write` that returns is not a write that reached the disk. It copied the bytes into the
//! kernel's page cache, and the kernel writes them back whenever it likes; a power cut before
//! then loses them, and a crash in the middle of write-back can leave a record half on disk (a
//! *torn write*). Only `fsync` (or `fdatasync`) returns after the file's data is on stable
//! storage. So the discipline has three parts:
//!
//! 1. **Every byte is written, once.** `write` may write fewer bytes than asked (a *short
//!    write*) or fail with `EINTR` before writing anything; [`write_all_retrying`] loops until
//!    every byte is in, and treats a write of zero bytes as the error it is rather than looping
//!    forever.
//! 2. **Appending never destroys.** [`LogWriter::open`] creates the file if it is missing and
//!    otherwise appends to it: it never truncates (no `O_TRUNC`), because a log opened after a
//!    crash holds exactly the records recovery needs. A file that was *created* is only durable
//!    once its directory entry is: the new name lives in the directory, so the directory is
//!    fsynced too ([`sync_dir`]), or a crash can leave the data on disk and no name pointing at
//!    it.
//! 3. **Durable means synced, and a failed sync is never retried.** [`LogWriter::sync`] is
//!    `fdatasync` (the data and the size, not the timestamps). If it fails, the kernel may already
//!    have dropped the dirty pages and marked them clean (PostgreSQL learned this in 2018,
//!    "fsyncgate"): a second `fsync` would then succeed with the data lost. So a failed append or
//!    sync poisons the writer: every later call fails, and the owner must stop acknowledging
//!    writes and recover from what the disk really holds.
//!
//! None of this belongs on an event loop: a `write` to a file blocks in the kernel, and an
//! `fsync` takes milliseconds. A server runs its log on a pool thread, as libuv runs file-system
//! work on its thread pool.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::Path;

// starter: w10-l02 todo "Do 1: loop: write the rest; Ok(0) is WriteZero, Interrupted goes round again, any other error returns"
/// Writes every byte of `bytes` to `out`: loops over short writes and over
/// [`ErrorKind::Interrupted`], and fails with [`ErrorKind::WriteZero`] when a write accepts no
/// byte at all (else the loop would spin forever).
pub fn write_all_retrying<W: Write>(out: &mut W, bytes: &[u8]) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match out.write(rest) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::WriteZero,
                    "the log file accepted no bytes",
                ));
            }
            Ok(written) => rest = &rest[written..],
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

// starter: w10-l02 todo "Do 2: File::open(dir), then sync_all"
/// Fsyncs the directory `dir`, which makes the names created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory a file's name lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// An append-only log file: appends go to its end, syncs make them durable.
#[derive(Debug)]
pub struct LogWriter {
    /// Opened for appending: every write goes to the end of the file.
    file: File,
    /// The file's length as this writer knows it: its length when opened plus every byte
    /// appended since.
    len: u64,
    /// The error that poisoned the writer, if an append or a sync failed.
    failed: Option<ErrorKind>,
}

impl LogWriter {
    // starter: w10-l02 todo "Do 3: create_new + append first; on AlreadyExists open with append (never truncate); sync_dir(parent_dir(path)) only when created; len from metadata"
    /// Opens the log file at `path` for appending, creating it if missing. An existing file
    /// keeps every byte; a file that was created has its directory fsynced, so its name
    /// survives a crash.
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        match OpenOptions::new().append(true).create_new(true).open(path) {
            Ok(file) => {
                sync_dir(parent_dir(path))?;
                Ok(LogWriter::over(file, 0))
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                let file = OpenOptions::new().append(true).open(path)?;
                let len = file.metadata()?.len();
                Ok(LogWriter::over(file, len))
            }
            Err(error) => Err(error),
        }
    }

    /// Creates the log file at `path`, which must not exist yet (a new segment), and fsyncs its
    /// directory.
    pub fn create(path: &Path) -> io::Result<LogWriter> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        sync_dir(parent_dir(path))?;
        Ok(LogWriter::over(file, 0))
    }

    fn over(file: File, len: u64) -> LogWriter {
        LogWriter {
            file,
            len,
            failed: None,
        }
    }

    /// Fails when an earlier append or sync failed: what the file holds is no longer known.
    fn check(&self) -> io::Result<()> {
        match self.failed {
            None => Ok(()),
            Some(kind) => Err(io::Error::other(format!(
                "the log writer failed earlier ({kind}); what is on disk is unknown, so it \
                 accepts nothing more: recover from the log"
            ))),
        }
    }

    // starter: w10-l02 todo "Do 4: refuse when poisoned; write_all_retrying; add to len; poison on error"
    /// Appends `bytes` at the end of the file (into the page cache: durable after
    /// [`sync`](LogWriter::sync)). After an error, the writer refuses every later call.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.check()?;
        match write_all_retrying(&mut self.file, bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                self.failed = Some(error.kind());
                Err(error)
            }
        }
    }

    // starter: w10-l02 todo "Do 5: refuse when poisoned; sync_data; poison on error, never retry"
    /// Makes every appended byte durable (`fdatasync`). A failure is never retried: it poisons
    /// the writer (see the module docs on fsyncgate).
    pub fn sync(&mut self) -> io::Result<()> {
        self.check()?;
        self.file.sync_data().inspect_err(|error| {
            self.failed = Some(error.kind());
        })
    }

    /// The number of bytes in the file: its length when opened plus every byte appended.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests;
