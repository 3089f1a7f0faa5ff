//! What the integration tests share: a scratch folder per test, and a small in-memory model of
//! the store that applies replayed records.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wal::Record;

/// A fresh folder under the system's temp dir, deleted (with its contents) on drop.
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl TestDir {
    /// A new empty folder whose name starts with `name`, unique to this process and call.
    pub fn new(name: &str) -> TestDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("wal-test-{name}-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a test folder");
        TestDir(path)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
