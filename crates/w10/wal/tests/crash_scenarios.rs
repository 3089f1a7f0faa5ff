//! The crash-scenario suite: what the disk can hold after a crash, and what recovery makes of it.
//!
//! A log of a few hundred records of varied sizes is damaged in the three ways real crashes and
//! real disks damage logs, and every damaged copy is recovered with [`wal::Wal::open`]:
//!
//! - **a torn tail**: the file cut at *every* byte offset (a crash in the middle of an append,
//!   or of the page cache's write-back). Recovery must yield exactly the records wholly before
//!   the cut, truncate the rest on disk, and a record appended afterwards must be replayed by
//!   the next open (it would be lost behind the garbage had the tail not been truncated);
//! - **flipped bits**: every bit of three whole records, headers included, and one bit of every
//!   record (media errors). Recovery must yield exactly the records before the damaged one;
//! - **zeroed sectors**: each 512-byte sector zeroed in turn (a sector the disk allocated but
//!   never wrote). Recovery must yield exactly the records before the first one the sector
//!   touches.
//!
//! The suite is exhaustive where it is cheap and sampled where it is not, so it runs in seconds.
//! It prints nothing when it passes; a failure names the offset, bit or sector.

mod common;

use common::TempDir;
use std::path::Path;
use wal::{Record, Recovered, Wal, encode, segment_path};

/// The number of records in the test log.
const RECORDS: usize = 200;
/// The sector size of the zeroed-sector scenario.
const SECTOR: usize = 512;

/// The test log: every record's bytes, in order, and the whole segment.
struct Log {
    records: Vec<Vec<u8>>,
    /// `starts[i]` is where record `i` begins; `starts[RECORDS]` is the end.
    starts: Vec<usize>,
    bytes: Vec<u8>,
}

impl Log {
    /// A deterministic log of SETs, SETs with expiry and DELs, keys of 1 to 12 bytes and values
    /// of 0 to 39 bytes, so records of many sizes start at many alignments.
    fn new() -> Log {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut records = Vec::new();
        let mut starts = Vec::new();
        let mut bytes = Vec::new();
        for i in 0..RECORDS {
            let key: Vec<u8> = (0..1 + next() % 12)
                .map(|j| b'a' + ((i as u64 + j) % 26) as u8)
                .collect();
            let value: Vec<u8> = (0..next() % 40)
                .map(|j| (j as u8).wrapping_mul(7) | 1)
                .collect();
            let record = match next() % 5 {
                0..=2 => Record::Set {
                    key: &key,
                    value: &value,
                },
                3 => Record::SetUntil {
                    key: &key,
                    value: &value,
                    deadline_unix_ms: 1_700_000_000_000 + next() % 1_000_000,
                },
                _ => Record::Del { key: &key },
            };
            let mut one = Vec::new();
            encode(&record, &mut one);
            starts.push(bytes.len());
            bytes.extend_from_slice(&one);
            records.push(one);
        }
        starts.push(bytes.len());
        Log {
            records,
            starts,
            bytes,
        }
    }

    /// How many records end at or before byte `offset`.
    fn whole_before(&self, offset: usize) -> usize {
        self.starts[1..]
            .iter()
            .take_while(|&&end| end <= offset)
            .count()
    }
}

/// Writes `bytes` as segment 0 of the folder `dir`, its only file (every scenario recovers into
/// segment 0 alone, so the folder never holds another).
fn lay_out(dir: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(segment_path(dir, 0), bytes).unwrap();
}

/// Opens the log in `dir` and returns it, every record it replayed (re-encoded) and the report.
fn recover(dir: &Path, what: &str) -> (Wal, Vec<Vec<u8>>, Recovered) {
    let mut replayed = Vec::new();
    let (wal, recovered) = Wal::open(dir, |record| {
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        replayed.push(bytes);
    })
    .unwrap_or_else(|error| panic!("{what}: Wal::open failed: {error}"));
    (wal, replayed, recovered)
}

/// Checks that recovery of `dir` yielded exactly the first `expected` records, with the segment
/// truncated right after them.
fn assert_recovers_prefix(log: &Log, dir: &Path, expected: usize, what: &str) -> Wal {
    let (wal, replayed, recovered) = recover(dir, what);
    if replayed.len() != expected || replayed[..] != log.records[..expected] {
        let same = replayed
            .iter()
            .zip(&log.records)
            .take_while(|(a, b)| a == b)
            .count();
        panic!(
            "{what}: expected the first {expected} records, got {} (the first {same} of them as written)",
            replayed.len()
        );
    }
    let valid = log.starts[expected] as u64;
    let len = std::fs::metadata(segment_path(dir, 0)).unwrap().len();
    assert_eq!(
        len, valid,
        "{what}: the segment is {len} bytes after recovery, not {valid}"
    );
    assert_eq!(
        wal.position().offset,
        valid,
        "{what}: appends would not start at the cut"
    );
    assert_eq!(recovered.valid_bytes, valid, "{what}: valid_bytes");
    wal
}

#[test]
fn a_log_cut_at_every_byte_offset_recovers_the_records_before_the_cut() {
    let log = Log::new();
    let scratch = TempDir::new("torn-tail");
    let dir = scratch.path().join("log");
    let mut extra = Vec::new();
    encode(
        &Record::Set {
            key: b"after the crash",
            value: b"appended",
        },
        &mut extra,
    );
    for cut in 0..=log.bytes.len() {
        let what = format!("log cut at byte offset {cut}");
        lay_out(&dir, &log.bytes[..cut]);
        let whole = log.whole_before(cut);
        let mut wal = assert_recovers_prefix(&log, &dir, whole, &what);
        let torn = cut - log.starts[whole];
        // The next append lands right after the last whole record and is replayed by the next
        // open: a tail left in place would hide it.
        wal.append(&extra).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, replayed, recovered) = recover(&dir, &what);
        assert_eq!(
            replayed.len(),
            whole + 1,
            "{what}: the record appended after recovery is lost ({torn} torn bytes were before it)"
        );
        assert_eq!(
            replayed.last(),
            Some(&extra),
            "{what}: the appended record came back different"
        );
        assert_eq!(recovered.damage, None, "{what}: damage after the append");
    }
}

#[test]
fn a_cut_reports_the_damage_and_the_dropped_bytes() {
    let log = Log::new();
    let scratch = TempDir::new("torn-tail-report");
    let dir = scratch.path().join("log");
    for record in [0, 1, RECORDS / 2, RECORDS - 1] {
        for into in [1, 7, 8, 9, log.records[record].len() - 1] {
            let cut = log.starts[record] + into;
            lay_out(&dir, &log.bytes[..cut]);
            let (_, _, recovered) = recover(&dir, &format!("cut at {cut}"));
            let (segment, damage) = recovered
                .damage
                .unwrap_or_else(|| panic!("cut at {cut}: no damage reported"));
            assert_eq!(segment, 0);
            assert_eq!(damage.offset, log.starts[record] as u64, "cut at {cut}");
            assert_eq!(recovered.dropped_bytes, into as u64, "cut at {cut}");
            assert_eq!(recovered.replayed, record as u64, "cut at {cut}");
        }
    }
}

/// Flips `bit` of the log, recovers, and checks that exactly the records before the damaged one
/// came back.
fn flip_and_recover(log: &Log, dir: &Path, bit: usize) {
    let mut bytes = log.bytes.clone();
    bytes[bit / 8] ^= 1 << (bit % 8);
    lay_out(dir, &bytes);
    let damaged = log.whole_before(bit / 8);
    let what = format!("bit {bit} (byte {}, in record {damaged}) flipped", bit / 8);
    assert_recovers_prefix(log, dir, damaged, &what);
}

#[test]
fn every_bit_of_three_whole_records_flipped_recovers_the_records_before_it() {
    let log = Log::new();
    let scratch = TempDir::new("bit-flips");
    let dir = scratch.path().join("log");
    for record in [0, RECORDS / 2, RECORDS - 1] {
        for bit in log.starts[record] * 8..log.starts[record + 1] * 8 {
            flip_and_recover(&log, &dir, bit);
        }
    }
}

#[test]
fn one_bit_of_every_record_flipped_recovers_the_records_before_it() {
    let log = Log::new();
    let scratch = TempDir::new("bit-flip-each");
    let dir = scratch.path().join("log");
    for record in 0..RECORDS {
        let bits = log.records[record].len() * 8;
        // A different bit of each record, through the header and the body.
        let bit = log.starts[record] * 8 + (record * 37) % bits;
        flip_and_recover(&log, &dir, bit);
    }
}

#[test]
fn each_sector_zeroed_recovers_the_records_before_the_first_one_it_touches() {
    let log = Log::new();
    let scratch = TempDir::new("zeroed-sectors");
    let dir = scratch.path().join("log");
    for sector in 0..log.bytes.len().div_ceil(SECTOR) {
        let from = sector * SECTOR;
        let to = (from + SECTOR).min(log.bytes.len());
        let mut bytes = log.bytes.clone();
        bytes[from..to].fill(0);
        lay_out(&dir, &bytes);
        // A record's own zero bytes (high bytes of its lengths, say) stay as they were, so the
        // damage starts at the first byte the zeroing changed.
        let changed = (from..to)
            .find(|&at| log.bytes[at] != 0)
            .unwrap_or(log.bytes.len());
        let touched = log.whole_before(changed);
        assert_recovers_prefix(
            &log,
            &dir,
            touched,
            &format!(
                "sector {sector} (bytes {from}..{to}) zeroed, first changed byte {changed} in record {touched}"
            ),
        );
    }
}

#[test]
fn zeros_after_the_last_record_are_cut_off() {
    let log = Log::new();
    let scratch = TempDir::new("zero-tail");
    let dir = scratch.path().join("log");
    // A file system may extend a file with zeros the crash never let the data fill.
    let mut bytes = log.bytes.clone();
    bytes.extend_from_slice(&[0; SECTOR]);
    lay_out(&dir, &bytes);
    assert_recovers_prefix(&log, &dir, RECORDS, "a zeroed sector after the last record");
}
