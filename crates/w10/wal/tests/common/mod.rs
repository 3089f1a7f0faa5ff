//! What the integration tests share: a scratch folder per test (`test_support::TempDir`), and a
//! small in-memory model of the store that applies replayed records.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use wal::Record;

use std::path::Path;

pub use test_support::TempDir;

/// The state a run of records describes: key to (value, deadline).
pub type State = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

/// Applies one record to `state`, as a store replaying the log would.
pub fn apply(state: &mut State, record: Record<'_>) {
    match record {
        Record::Set { key, value } => {
            state.insert(key.to_vec(), (value.to_vec(), None));
        }
        Record::SetUntil {
            key,
            value,
            deadline_unix_ms,
        } => {
            state.insert(key.to_vec(), (value.to_vec(), Some(deadline_unix_ms)));
        }
        Record::Del { key } => {
            state.remove(key);
        }
    }
}

/// The records that rebuild `state` (what a checkpoint of it holds).
pub fn snapshot(state: &State) -> Vec<Record<'_>> {
    state
        .iter()
        .map(|(key, (value, deadline))| match deadline {
            None => Record::Set { key, value },
            Some(deadline) => Record::SetUntil {
                key,
                value,
                deadline_unix_ms: *deadline,
            },
        })
        .collect()
}

/// Copies every file of `from` into a fresh folder `to` (no subfolders): the directory as a
/// crash at this instant would leave it, for the page cache holds what the files hold.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("creating the copy");
    for entry in std::fs::read_dir(from).expect("listing the log directory") {
        let entry = entry.expect("a directory entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copying a file");
    }
}
