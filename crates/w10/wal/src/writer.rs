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

// starter: w10-l02 todo "loop: write the rest; Ok(0) is WriteZero, Interrupted goes round again, any other error returns"
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

// starter: w10-l02 todo "File::open(dir), then sync_all"
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
    // starter: w10-l02 todo "create_new + append first; on AlreadyExists open with append (never truncate); sync_dir(parent_dir(path)) only when created; len from metadata"
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

    // starter: w10-l02 todo "refuse when poisoned; write_all_retrying; add to len; poison on error"
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

    // starter: w10-l02 todo "refuse when poisoned; sync_data; poison on error, never retry"
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
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    /// A writer that accepts at most `max` bytes per call and fails every `interrupt_every`-th
    /// call with `Interrupted`, recording what it was given.
    struct Stingy {
        max: usize,
        interrupt_every: usize,
        calls: usize,
        written: Vec<u8>,
    }

    impl Write for Stingy {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(self.interrupt_every) {
                return Err(ErrorKind::Interrupted.into());
            }
            let n = bytes.len().min(self.max);
            self.written.extend_from_slice(&bytes[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_and_interrupts_land_every_byte_once() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        for (max, interrupt_every) in [(1, 2), (7, 3), (999, 2), (1000, 5), (4096, 1000)] {
            let mut out = Stingy {
                max,
                interrupt_every,
                calls: 0,
                written: Vec::new(),
            };
            write_all_retrying(&mut out, &bytes).unwrap();
            assert_eq!(
                out.written, bytes,
                "max {max}, interrupt every {interrupt_every}"
            );
        }
    }

    #[test]
    fn a_write_of_zero_bytes_is_write_zero() {
        let mut full: &mut [u8] = &mut [];
        let error = write_all_retrying(&mut full, b"x").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::WriteZero);
        // Nothing to write is no write at all.
        write_all_retrying(&mut full, b"").unwrap();
    }

    #[test]
    fn other_errors_are_returned_not_retried() {
        struct Broken(usize);
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                Err(ErrorKind::PermissionDenied.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Broken(0);
        let error = write_all_retrying(&mut out, b"x").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied);
        assert_eq!(out.0, 1);
    }

    #[test]
    fn open_creates_a_missing_file() {
        let dir = TestDir::new("writer-create");
        let path = dir.path().join("log");
        let mut log = LogWriter::open(&path).unwrap();
        assert_eq!(log.len(), 0);
        assert!(log.is_empty());
        log.append(b"hello").unwrap();
        log.sync().unwrap();
        assert_eq!(log.len(), 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    }

    #[test]
    fn open_keeps_the_bytes_of_an_existing_file() {
        let dir = TestDir::new("writer-keep");
        let path = dir.path().join("log");
        std::fs::write(&path, b"existing records").unwrap();
        let log = LogWriter::open(&path).unwrap();
        assert_eq!(log.len(), 16);
        drop(log);
        assert_eq!(std::fs::read(&path).unwrap(), b"existing records");
    }

    #[test]
    fn appends_after_a_reopen_go_to_the_end() {
        let dir = TestDir::new("writer-reopen");
        let path = dir.path().join("log");
        let mut log = LogWriter::open(&path).unwrap();
        log.append(b"one ").unwrap();
        log.sync().unwrap();
        drop(log);
        let mut log = LogWriter::open(&path).unwrap();
        assert_eq!(log.len(), 4);
        log.append(b"two").unwrap();
        log.sync().unwrap();
        assert_eq!(log.len(), 7);
        assert_eq!(std::fs::read(&path).unwrap(), b"one two");
    }

    #[test]
    fn create_refuses_an_existing_file() {
        let dir = TestDir::new("writer-create-new");
        let path = dir.path().join("log");
        std::fs::write(&path, b"keep").unwrap();
        let error = LogWriter::create(&path).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
    }

    #[test]
    fn a_failed_append_poisons_the_writer() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let mut log = LogWriter::open(Path::new("/dev/full")).unwrap();
        let error = log.append(b"x").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::StorageFull);
        let again = log.append(b"x").unwrap_err();
        assert_eq!(again.kind(), ErrorKind::Other, "{again}");
        assert!(again.to_string().contains("failed earlier"), "{again}");
        assert_eq!(log.sync().unwrap_err().kind(), ErrorKind::Other);
    }

    #[test]
    fn sync_dir_syncs_a_directory() {
        let dir = TestDir::new("writer-sync-dir");
        sync_dir(dir.path()).unwrap();
        assert_eq!(
            sync_dir(&dir.path().join("missing")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
