//! Unit tests of `recovery`.

use super::*;
use crate::record::encode;
use test_support::TempDir;

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
    let dir = TempDir::new("recovery-file");
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
