//! Unit tests of `writer`.

use super::*;
use std::io::Read;
use test_support::TempDir;

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
    let dir = TempDir::new("writer-create");
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
    let dir = TempDir::new("writer-keep");
    let path = dir.path().join("log");
    std::fs::write(&path, b"existing records").unwrap();
    let log = LogWriter::open(&path).unwrap();
    assert_eq!(log.len(), 16);
    drop(log);
    assert_eq!(std::fs::read(&path).unwrap(), b"existing records");
}

#[test]
fn appends_after_a_reopen_go_to_the_end() {
    let dir = TempDir::new("writer-reopen");
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
    let dir = TempDir::new("writer-create-new");
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
fn a_failed_sync_poisons_the_writer() {
    // `fdatasync` on a socket fails with EINVAL, while the socket still takes writes: after the
    // failed sync, only the poisoning refuses the append, and only it keeps a retried sync from
    // being tried.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    let mut log = LogWriter::over(File::from(std::os::fd::OwnedFd::from(ours)), 0);
    assert_eq!(log.sync().unwrap_err().kind(), ErrorKind::InvalidInput);
    let again = log.sync().unwrap_err();
    assert!(again.to_string().contains("failed earlier"), "{again}");
    let append = log.append(b"x").unwrap_err();
    assert!(append.to_string().contains("failed earlier"), "{append}");
    // The refused append wrote nothing.
    let mut byte = [0_u8; 1];
    assert_eq!(
        (&theirs).read(&mut byte).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

#[test]
fn sync_dir_syncs_a_directory() {
    let dir = TempDir::new("writer-sync-dir");
    sync_dir(dir.path()).unwrap();
    assert_eq!(
        sync_dir(&dir.path().join("missing")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn sync_dir_reports_a_directory_that_cannot_be_synced() {
    // procfs implements no fsync: syncing /proc fails with EINVAL. A `sync_dir` that only opens
    // the directory returns `Ok` here.
    assert_eq!(
        sync_dir(Path::new("/proc")).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
