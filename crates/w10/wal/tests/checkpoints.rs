//! Checkpoints through the log directory: a checkpoint plus the segments after it recover the
//! same state as the whole log did, a crash at any step of writing one loses nothing, and a
//! damaged checkpoint is refused rather than skipped.

mod common;

use common::{State, TempDir, apply, copy_dir, snapshot};
use std::io::ErrorKind;
use std::path::Path;
use wal::{
    CheckpointStep, LogPosition, Record, Recovered, Wal, encode, list_segments,
    remove_segments_before, segment_path, write_checkpoint,
};

/// Opens the log in `dir` and returns it with the state it recovered.
fn recover(dir: &Path) -> (Wal, State, Recovered) {
    let mut state = State::new();
    let (wal, recovered) = Wal::open(dir, |record| apply(&mut state, record))
        .unwrap_or_else(|error| panic!("recovering {}: {error}", dir.display()));
    (wal, state, recovered)
}

/// Appends one record to the log and to the model state.
fn append(wal: &mut Wal, state: &mut State, record: Record<'_>) {
    let mut bytes = Vec::new();
    encode(&record, &mut bytes);
    wal.append(&bytes).unwrap();
    apply(state, record);
}

/// Appends `n` changes numbered from `first`: sets, sets with a deadline, and deletes of
/// earlier keys.
fn changes(wal: &mut Wal, state: &mut State, first: u32, n: u32) {
    for i in first..first + n {
        let key = format!("key-{}", i % 17);
        let value = format!("value-{i}");
        let record = match i % 4 {
            0 | 1 => Record::Set {
                key: key.as_bytes(),
                value: value.as_bytes(),
            },
            2 => Record::SetUntil {
                key: key.as_bytes(),
                value: value.as_bytes(),
                deadline_unix_ms: 1_700_000_000_000 + u64::from(i),
            },
            _ => Record::Del {
                key: key.as_bytes(),
            },
        };
        append(wal, state, record);
    }
    wal.sync().unwrap();
}

/// Rotates and checkpoints `state` at the new segment, then deletes the segments it covers.
fn checkpoint(wal: &mut Wal, state: &State) -> LogPosition {
    let position = wal.rotate().unwrap();
    write_checkpoint(wal.dir(), position, snapshot(state), &mut |_| {}).unwrap();
    remove_segments_before(wal.dir(), position.segment).unwrap();
    position
}

#[test]
fn a_checkpoint_and_its_tail_recover_the_whole_state() {
    let dir = TempDir::new("checkpoint-and-tail");
    let (mut wal, _, _) = recover(dir.path());
    let mut state = State::new();
    changes(&mut wal, &mut state, 0, 60);
    let position = checkpoint(&mut wal, &state);
    let live_at_checkpoint = state.len() as u64;
    assert_eq!(position.segment, 1);
    assert_eq!(list_segments(dir.path()).unwrap(), [1]);
    changes(&mut wal, &mut state, 60, 25);
    drop(wal);

    let (mut wal, recovered_state, recovered) = recover(dir.path());
    assert_eq!(recovered_state, state);
    let checkpoint_info = recovered.checkpoint.expect("the checkpoint was read");
    assert_eq!(checkpoint_info.position, position);
    assert_eq!(checkpoint_info.records, live_at_checkpoint);
    assert_eq!(recovered.replayed, 25);
    assert_eq!(recovered.segments, 1);
    assert_eq!(recovered.damage, None);

    // A second round: checkpoint again, and the tail after it.
    let second = checkpoint(&mut wal, &state);
    changes(&mut wal, &mut state, 85, 10);
    drop(wal);
    let (_, recovered_state, recovered) = recover(dir.path());
    assert_eq!(recovered_state, state);
    assert_eq!(recovered.checkpoint.unwrap().position, second);
    assert_eq!(list_segments(dir.path()).unwrap(), [second.segment]);
}

#[test]
fn a_crash_after_any_checkpoint_step_recovers_the_same_state() {
    let scratch = TempDir::new("checkpoint-crash");
    let dir = scratch.path().join("log");
    let (mut wal, _, _) = recover(&dir);
    let mut state = State::new();
    changes(&mut wal, &mut state, 0, 40);
    checkpoint(&mut wal, &state);
    changes(&mut wal, &mut state, 40, 30);

    // The second checkpoint; at each step, the directory is copied as a crash would leave it.
    let position = wal.rotate().unwrap();
    let mut copies = Vec::new();
    write_checkpoint(&dir, position, snapshot(&state), &mut |step| {
        let copy = scratch.path().join(format!("{step:?}"));
        copy_dir(&dir, &copy);
        copies.push((step, copy));
    })
    .unwrap();
    let steps: Vec<CheckpointStep> = copies.iter().map(|(step, _)| *step).collect();
    assert_eq!(
        steps,
        [
            CheckpointStep::TempWritten,
            CheckpointStep::TempSynced,
            CheckpointStep::Renamed,
            CheckpointStep::DirSynced
        ]
    );
    remove_segments_before(&dir, position.segment).unwrap();
    let after_removal = scratch.path().join("after-removal");
    copy_dir(&dir, &after_removal);
    copies.push((CheckpointStep::DirSynced, after_removal));

    for (step, copy) in copies {
        let (_, recovered_state, recovered) = recover(&copy);
        assert_eq!(recovered_state, state, "a crash after {step:?}");
        let temp_left = matches!(
            step,
            CheckpointStep::TempWritten | CheckpointStep::TempSynced
        );
        assert_eq!(recovered.removed_temp, temp_left, "a crash after {step:?}");
        assert!(
            !copy.join("checkpoint.tmp").exists(),
            "a crash after {step:?}: checkpoint.tmp left behind"
        );
        let from = recovered.checkpoint.unwrap().position;
        if temp_left {
            assert!(
                from < position,
                "a crash after {step:?} used the new checkpoint"
            );
        } else {
            assert_eq!(from, position, "a crash after {step:?}");
        }
    }
}

#[test]
fn a_damaged_checkpoint_is_refused_with_invalid_data() {
    let dir = TempDir::new("checkpoint-damaged");
    let (mut wal, _, _) = recover(dir.path());
    let mut state = State::new();
    changes(&mut wal, &mut state, 0, 20);
    checkpoint(&mut wal, &state);
    drop(wal);
    let file = dir.path().join("checkpoint");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let mut applied = 0;
    let error = Wal::open(dir.path(), |_| applied += 1).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidData, "{error}");
    assert!(error.to_string().contains("checkpoint"), "{error}");
    assert_eq!(applied, 0, "records applied from a damaged checkpoint");
}

#[test]
fn a_leftover_temp_is_removed_and_never_read() {
    let dir = TempDir::new("checkpoint-leftover");
    let (mut wal, _, _) = recover(dir.path());
    let mut state = State::new();
    changes(&mut wal, &mut state, 0, 10);
    drop(wal);
    std::fs::write(dir.path().join("checkpoint.tmp"), b"the start of a checkp").unwrap();
    let (_, recovered_state, recovered) = recover(dir.path());
    assert_eq!(recovered_state, state);
    assert!(recovered.removed_temp);
    assert_eq!(recovered.checkpoint, None);
    assert!(!dir.path().join("checkpoint.tmp").exists());
    assert!(
        recovered
            .summary()
            .contains("removed an unfinished checkpoint.tmp")
    );
}

#[test]
fn a_checkpoint_past_its_segments_end_sends_appends_to_the_next_segment() {
    // The checkpoint covered appends that never reached the segment: appending to it again
    // would write records below the checkpoint's offset, which the next replay skips.
    let dir = TempDir::new("checkpoint-ahead");
    let (mut wal, _, _) = recover(dir.path());
    let mut state = State::new();
    changes(&mut wal, &mut state, 0, 5);
    let ahead = LogPosition {
        segment: 0,
        offset: wal.position().offset + 1000,
    };
    drop(wal);
    write_checkpoint(dir.path(), ahead, snapshot(&state), &mut |_| {}).unwrap();

    let (mut wal, recovered_state, _) = recover(dir.path());
    assert_eq!(recovered_state, state);
    assert_eq!(
        wal.position(),
        LogPosition {
            segment: 1,
            offset: 0
        }
    );
    changes(&mut wal, &mut state, 5, 3);
    drop(wal);
    let (_, recovered_state, recovered) = recover(dir.path());
    assert_eq!(recovered_state, state);
    assert_eq!(recovered.replayed, 3);
    assert!(segment_path(dir.path(), 1).exists());
}
