//! Unit tests of `checkpoint`.

use super::*;
use test_support::TempDir;

fn sample() -> Vec<Record<'static>> {
    vec![
        Record::Set {
            key: b"a",
            value: b"1",
        },
        Record::SetUntil {
            key: b"b",
            value: b"2",
            deadline_unix_ms: 1_700_000_000_000,
        },
        Record::Set {
            key: b"c",
            value: b"",
        },
    ]
}

fn read_all(dir: &Path) -> io::Result<(Option<CheckpointInfo>, Vec<Vec<u8>>)> {
    let mut seen = Vec::new();
    let info = read_checkpoint(dir, |record| {
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        seen.push(bytes);
    })?;
    Ok((info, seen))
}

#[test]
fn a_checkpoint_round_trips() {
    let dir = TempDir::new("checkpoint-round-trip");
    let position = LogPosition {
        segment: 3,
        offset: 1234,
    };
    let mut steps = Vec::new();
    let info =
        write_checkpoint(dir.path(), position, sample(), &mut |step| steps.push(step)).unwrap();
    assert_eq!(
        steps,
        [
            CheckpointStep::TempWritten,
            CheckpointStep::TempSynced,
            CheckpointStep::Renamed,
            CheckpointStep::DirSynced
        ]
    );
    assert_eq!(info.position, position);
    assert_eq!(info.records, 3);
    let file = dir.path().join(CHECKPOINT_FILE);
    assert_eq!(info.bytes, std::fs::metadata(&file).unwrap().len());
    assert!(!dir.path().join(CHECKPOINT_TEMP_FILE).exists());

    let mut got = Vec::new();
    let read = read_checkpoint(dir.path(), |record| {
        got.push(format!("{record:?}"));
    })
    .unwrap();
    assert_eq!(read, Some(info));
    let want: Vec<String> = sample().iter().map(|r| format!("{r:?}")).collect();
    assert_eq!(got, want);
}

#[test]
fn an_empty_checkpoint_round_trips() {
    let dir = TempDir::new("checkpoint-empty");
    let position = LogPosition {
        segment: 0,
        offset: 0,
    };
    let info = write_checkpoint(dir.path(), position, [], &mut |_| {}).unwrap();
    assert_eq!(info.records, 0);
    assert_eq!(info.bytes, (HEADER_LEN + TRAILER_LEN) as u64);
    assert_eq!(read_all(dir.path()).unwrap(), (Some(info), Vec::new()));
}

#[test]
fn no_checkpoint_is_none_and_a_leftover_temp_is_not_read() {
    let dir = TempDir::new("checkpoint-none");
    assert_eq!(read_all(dir.path()).unwrap(), (None, Vec::new()));
    std::fs::write(dir.path().join(CHECKPOINT_TEMP_FILE), b"half a checkpoint").unwrap();
    assert_eq!(read_all(dir.path()).unwrap(), (None, Vec::new()));
}

#[test]
fn a_new_checkpoint_replaces_the_old_one() {
    let dir = TempDir::new("checkpoint-replace");
    let first = LogPosition {
        segment: 1,
        offset: 10,
    };
    write_checkpoint(dir.path(), first, sample(), &mut |_| {}).unwrap();
    let second = LogPosition {
        segment: 2,
        offset: 0,
    };
    write_checkpoint(
        dir.path(),
        second,
        sample().into_iter().take(1),
        &mut |_| {},
    )
    .unwrap();
    let (info, seen) = read_all(dir.path()).unwrap();
    assert_eq!(info.unwrap().position, second);
    assert_eq!(seen.len(), 1);
}

#[test]
fn every_damaged_checkpoint_is_refused_before_any_record_is_applied() {
    let dir = TempDir::new("checkpoint-damaged");
    let position = LogPosition {
        segment: 7,
        offset: 99,
    };
    write_checkpoint(dir.path(), position, sample(), &mut |_| {}).unwrap();
    let file = dir.path().join(CHECKPOINT_FILE);
    let good = std::fs::read(&file).unwrap();
    let mut damages: Vec<(String, Vec<u8>)> = Vec::new();
    for byte in 0..good.len() {
        let mut bytes = good.clone();
        bytes[byte] ^= 0x10;
        damages.push((format!("byte {byte} flipped"), bytes));
    }
    for len in [0, 10, HEADER_LEN + TRAILER_LEN - 1, good.len() - 1] {
        damages.push((format!("cut to {len} bytes"), good[..len].to_vec()));
    }
    // A wrong magic, an unknown version and a wrong record count, each with the CRC made to
    // match: the checksum does not stand in for these checks.
    let header_edits: [(&str, std::ops::Range<usize>, &[u8]); 3] = [
        ("a wrong magic", 0..8, b"WALCHKPX"),
        ("an unknown version", 8..12, &2u32.to_le_bytes()),
        (
            "a wrong record count",
            HEADER_LEN - 8..HEADER_LEN,
            &4u64.to_le_bytes(),
        ),
    ];
    for (what, field, value) in header_edits {
        let mut bytes = good[..good.len() - TRAILER_LEN].to_vec();
        bytes[field].copy_from_slice(value);
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        damages.push((what.to_owned(), bytes));
    }

    for (what, bytes) in damages {
        std::fs::write(&file, &bytes).unwrap();
        let mut applied = 0;
        let error = match read_checkpoint(dir.path(), |_| applied += 1) {
            Ok(info) => panic!("{what}: read as a checkpoint: {info:?}"),
            Err(error) => error,
        };
        assert_eq!(error.kind(), ErrorKind::InvalidData, "{what}: {error}");
        assert!(error.to_string().contains("damaged"), "{what}: {error}");
        assert_eq!(
            applied, 0,
            "{what}: records applied from a damaged checkpoint"
        );
    }
}
