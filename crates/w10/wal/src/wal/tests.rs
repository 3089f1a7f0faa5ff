//! Unit tests of `wal`.

use super::*;
use crate::record::encode;
use crate::recovery::DamageKind;
use test_support::TempDir;

fn set(i: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode(
        &Record::Set {
            key: format!("key-{i}").as_bytes(),
            value: format!("value-{i}").as_bytes(),
        },
        &mut bytes,
    );
    bytes
}

/// Opens the log and returns it with the keys it replayed.
fn open(dir: &Path) -> (Wal, Vec<String>, Recovered) {
    let mut keys = Vec::new();
    let (wal, recovered) = Wal::open(dir, |record| {
        keys.push(String::from_utf8(record.key().to_vec()).unwrap());
    })
    .unwrap();
    (wal, keys, recovered)
}

fn keys(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("key-{i}")).collect()
}

#[test]
fn open_creates_the_directory_and_the_first_segment() {
    let root = TempDir::new("wal-create");
    let dir = root.path().join("log");
    let (wal, keys, recovered) = open(&dir);
    assert!(keys.is_empty());
    assert_eq!(recovered, Recovered::default());
    assert_eq!(wal.dir(), dir);
    assert_eq!(
        wal.position(),
        LogPosition {
            segment: 0,
            offset: 0
        }
    );
    assert!(segment_path(&dir, 0).is_file());
    assert_eq!(
        segment_path(&dir, 12).file_name().unwrap(),
        "00000000000000000012.wal"
    );
}

#[test]
fn appended_records_are_replayed_by_the_next_open() {
    let dir = TempDir::new("wal-reopen");
    let (mut wal, _, _) = open(dir.path());
    for i in 0..5 {
        wal.append(&set(i)).unwrap();
    }
    wal.sync().unwrap();
    let position = wal.position();
    drop(wal);
    let (wal, replayed, recovered) = open(dir.path());
    assert_eq!(replayed, keys(0..5));
    assert_eq!(recovered.replayed, 5);
    assert_eq!(recovered.segments, 1);
    assert_eq!(recovered.valid_bytes, position.offset);
    assert_eq!(recovered.damage, None);
    assert_eq!(wal.position(), position);
}

#[test]
fn a_damaged_tail_is_truncated_before_the_next_append() {
    let dir = TempDir::new("wal-truncate");
    let (mut wal, _, _) = open(dir.path());
    for i in 0..3 {
        wal.append(&set(i)).unwrap();
    }
    let good = wal.position().offset;
    // A torn fourth record: its first 10 bytes.
    wal.append(&set(3)[..10]).unwrap();
    wal.sync().unwrap();
    drop(wal);

    let (mut wal, replayed, recovered) = open(dir.path());
    assert_eq!(replayed, keys(0..3));
    assert_eq!(recovered.dropped_bytes, 10);
    assert_eq!(
        recovered.damage,
        Some((
            0,
            Damage {
                offset: good,
                kind: DamageKind::ShortTail
            }
        ))
    );
    // Truncated on disk before open returned, and appends continue from there.
    assert_eq!(
        std::fs::metadata(segment_path(dir.path(), 0))
            .unwrap()
            .len(),
        good
    );
    assert_eq!(wal.position().offset, good);
    wal.append(&set(4)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, replayed, recovered) = open(dir.path());
    assert_eq!(replayed, ["key-0", "key-1", "key-2", "key-4"]);
    assert_eq!(recovered.damage, None);
}

#[test]
fn segments_after_a_damaged_one_are_deleted() {
    let dir = TempDir::new("wal-later-segments");
    let (mut wal, _, _) = open(dir.path());
    wal.append(&set(0)).unwrap();
    wal.append(&set(1)).unwrap();
    let second = wal.position().offset;
    wal.rotate().unwrap();
    wal.append(&set(2)).unwrap();
    wal.rotate().unwrap();
    wal.append(&set(3)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    // Flip a bit in the second record of segment 0: records 1, 2 and 3 are lost.
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let later = std::fs::metadata(segment_path(dir.path(), 1))
        .unwrap()
        .len()
        + std::fs::metadata(segment_path(dir.path(), 2))
            .unwrap()
            .len();

    let (wal, replayed, recovered) = open(dir.path());
    assert_eq!(replayed, keys(0..1));
    let (segment, damage) = recovered.damage.unwrap();
    assert_eq!(segment, 0);
    assert!(matches!(damage.kind, DamageKind::Corrupt(_)));
    assert_eq!(
        recovered.dropped_bytes,
        bytes.len() as u64 - u64::try_from(set(0).len()).unwrap() + later
    );
    assert_eq!(list_segments(dir.path()).unwrap(), [0]);
    assert_eq!(wal.position().segment, 0);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        second - u64::try_from(set(1).len()).unwrap()
    );
}

#[test]
fn a_missing_segment_in_the_middle_is_refused() {
    let dir = TempDir::new("wal-gap");
    let (mut wal, _, _) = open(dir.path());
    wal.append(&set(0)).unwrap();
    wal.rotate().unwrap();
    wal.append(&set(1)).unwrap();
    wal.rotate().unwrap();
    drop(wal);
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    let error = Wal::open(dir.path(), |_| {}).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidData);
    assert!(
        error.to_string().contains("segment 1 is missing"),
        "{error}"
    );
}

#[test]
fn rotate_syncs_and_starts_the_next_segment() {
    let dir = TempDir::new("wal-rotate");
    let (mut wal, _, _) = open(dir.path());
    wal.append(&set(0)).unwrap();
    let next = wal.rotate().unwrap();
    assert_eq!(
        next,
        LogPosition {
            segment: 1,
            offset: 0
        }
    );
    assert_eq!(wal.position(), next);
    wal.append(&set(1)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(list_segments(dir.path()).unwrap(), [0, 1]);
    let (wal, replayed, recovered) = open(dir.path());
    assert_eq!(replayed, keys(0..2));
    assert_eq!(recovered.segments, 2);
    assert_eq!(wal.position().segment, 1);
}

#[test]
fn remove_segments_before_deletes_only_older_segments() {
    let dir = TempDir::new("wal-remove");
    let (mut wal, _, _) = open(dir.path());
    wal.rotate().unwrap();
    wal.rotate().unwrap();
    wal.rotate().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a segment").unwrap();
    assert_eq!(remove_segments_before(dir.path(), 2).unwrap(), 2);
    assert_eq!(list_segments(dir.path()).unwrap(), [2, 3]);
    assert_eq!(remove_segments_before(dir.path(), 2).unwrap(), 0);
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn the_summary_says_where_the_state_came_from_and_what_was_dropped() {
    let clean = Recovered {
        segments: 1,
        replayed: 3,
        ..Recovered::default()
    };
    assert_eq!(
        clean.summary(),
        "recovered 3 records from 1 segment (no checkpoint); no damaged tail"
    );
    let damaged = Recovered {
        checkpoint: Some(CheckpointInfo {
            position: LogPosition {
                segment: 4,
                offset: 120,
            },
            records: 10,
            bytes: 400,
        }),
        segments: 2,
        replayed: 7,
        valid_bytes: 300,
        dropped_bytes: 13,
        damage: Some((
            5,
            Damage {
                offset: 88,
                kind: DamageKind::ShortTail,
            },
        )),
        removed_temp: true,
    };
    assert_eq!(
        damaged.summary(),
        "recovered 10 records from the checkpoint at segment 4 offset 120 and 7 from 2 \
         segments; dropped 13 bytes of a damaged tail at segment 5 offset 88 (the file ends \
         inside a record); removed an unfinished checkpoint.tmp"
    );
}

#[test]
fn a_second_open_of_a_locked_directory_is_refused_until_the_first_is_dropped() {
    let dir = TempDir::new("wal-lock");
    let (first, _, _) = open(dir.path());
    let error = Wal::open(dir.path(), |_| {}).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WouldBlock);
    assert!(error.to_string().contains("in use"), "{error}");
    drop(first);
    let (_second, _, _) = open(dir.path());
}
