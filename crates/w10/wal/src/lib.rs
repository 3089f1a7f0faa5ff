//! A write-ahead log: the durability layer under a key-value store.
//!
//! A store that keeps its data in memory loses it all when the process dies. A write-ahead log
//! (WAL) fixes that with one rule: **a change is appended to the log, and the log synced, before
//! the change is acknowledged**. After a crash the state is rebuilt by replaying the log. Every
//! database has one (PostgreSQL's WAL, SQLite's journal, Redis's AOF, RocksDB's log files), and
//! they share the same parts, which this crate builds one lesson at a time (W10):
//!
//! - [`crc32`](mod@crc32) (L01): the checksum that tells an intact record from a damaged one;
//! - [`record`] (L01): the framing of one change on disk;
//! - [`writer`] (L02): the append discipline: every byte written once, never truncating, syncs
//!   that are never retried, and directories fsynced when names change;
//! - [`recovery`] (L03): replay by verification, stopping at the first bad record;
//! - the crash-scenario suite (`tests/crash_scenarios.rs`, L04): torn tails, bit flips, zeroed
//!   sectors;
//! - [`checkpoint`] (L05): a snapshot and the position it covers, replaced atomically;
//! - [`wal`](mod@wal): the log directory, segments, recovery of checkpoint plus tail.
//!
//! The design notes, with the crash-safety argument step by step and what each test suite
//! proves, are in the crate's design README, `README.md` in the crate's folder.
//!
//! # The files on disk
//!
//! A log directory holds segments `NNNNNNNNNNNNNNNNNNNN.wal` (a 20-digit zero-padded segment
//! number), at most one `checkpoint`, after a crash during a checkpoint a `checkpoint.tmp` that
//! the next open deletes, and an empty `LOCK` file whose exclusive lock an open [`Wal`] holds.
//!
//! A **segment** is records back to back, nothing else. A **record**, all integers
//! little-endian:
//!
//! ```text
//! [crc32: u32][length: u32][op: u8][key_len: u32][key][value_len: u32][value]
//! ```
//!
//! `length` counts the bytes after the length field (`op` through `value`): a record occupies
//! `8 + length` bytes. The CRC-32 covers the length field and those `length` bytes, so a
//! damaged length is caught like any other damage. `op` 1 is SET, 2 is DEL (`value_len` 0), 3 is
//! SET with expiry, whose `value` is the 8-byte deadline followed by the value's bytes. A
//! `length` below 9 or above [`MAX_RECORD_LEN`], an unknown op, or `key_len` and `value_len` that
//! do not add up to `length` make the record corrupt.
//!
//! **Expiry** is logged as an absolute wall-clock deadline in Unix milliseconds, never as a
//! duration: replaying the log after a restart then knows which keys expired while the process
//! was down, and drops them. A key that expires writes no record; its deadline is already in
//! the log.
//!
//! A **checkpoint**, all integers little-endian:
//!
//! ```text
//! [magic "WALCHKPT"][version: u32 = 1][segment: u64][offset: u64][record count: u64]
//! [record]*   (the store's live entries, in the record format above)
//! [crc32: u32 of every byte before it]
//! ```
//!
//! # Crash safety, step by step
//!
//! - **Appends** ([`LogWriter`]): bytes are written in full (short writes and `EINTR` retried),
//!   then `fdatasync`ed before a write is acknowledged. A failed sync is never retried: the
//!   kernel may have dropped the pages, so a retry could report success for lost data; the
//!   writer refuses everything after a failure.
//! - **New files** (a segment, the log directory): the *directory* is fsynced after a name is
//!   created, because a file's name lives in its directory, and without that fsync a crash can
//!   keep the file's data but lose its name.
//! - **Recovery** ([`Wal::open`]): each record is verified (length bounds, CRC) before it is
//!   applied, and replay stops at the first record that fails; nothing after it is applied.
//!   The damaged tail is **truncated before the next append**: a record appended after garbage
//!   would be invisible to every later recovery, which stops at the garbage.
//! - **Checkpoints** ([`write_checkpoint`]): written to `checkpoint.tmp`, fsynced, renamed over
//!   `checkpoint`, and the directory fsynced. The rename makes the switch atomic (the old or the
//!   new checkpoint, never half of one); the fsync before it makes sure the new name never
//!   points at data still in the page cache; the directory fsync makes the rename durable before
//!   [`remove_segments_before`] deletes what the old checkpoint needed.
//!
//! # Where it runs
//!
//! Every call here blocks on the disk, and a sync takes milliseconds. An event loop must never
//! make them: a server hands log work to its thread pool, as libuv does with file-system calls.
//!
//! ```
//! use wal::{Record, Wal, encode};
//!
//! let dir = std::env::temp_dir().join(format!("wal-doc-{}", std::process::id()));
//! let (mut log, recovered) = Wal::open(&dir, |_| {})?;
//! assert_eq!(recovered.replayed, 0);
//! let mut bytes = Vec::new();
//! encode(&Record::Set { key: b"k", value: b"v" }, &mut bytes);
//! log.append(&bytes)?;
//! log.sync()?;
//! drop(log);
//!
//! let mut keys = Vec::new();
//! let (_log, recovered) = Wal::open(&dir, |record| keys.push(record.key().to_vec()))?;
//! assert_eq!(keys, [b"k".to_vec()]);
//! assert_eq!(recovered.replayed, 1);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod checkpoint;
pub mod crc32;
pub mod record;
pub mod recovery;
pub mod wal;
pub mod writer;

pub use checkpoint::{
    CheckpointInfo, CheckpointStep, LogPosition, read_checkpoint, write_checkpoint,
};
pub use crc32::{Crc32, crc32};
pub use record::{
    Corruption, Decoded, HEADER_LEN, MAX_RECORD_LEN, Record, decode, encode, encoded_len,
};
pub use recovery::{Damage, DamageKind, Replay, replay_bytes, replay_file};
pub use wal::{LOCK_FILE, Recovered, Wal, list_segments, remove_segments_before, segment_path};
pub use writer::{LogWriter, sync_dir, write_all_retrying};
