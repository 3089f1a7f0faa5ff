//! The state machine: a [`HashTable`] of entries, the SET / GET / DEL transitions, expiry, and
//! the `KEYS` scan.
//!
//! A [`Store`] is single-threaded; the [`KvEngine`](crate::KvEngine) puts it behind the lock
//! strategy the server picks. Every method that depends on time takes the current instant as a
//! parameter instead of reading the clock, so tests step time forward by adding durations to an
//! instant and never sleep.
//!
//! Expiry is lazy plus periodic, as in Redis:
//!
//! - *Lazy*: an entry whose deadline has passed is invisible at once — `get` reports it
//!   [`Lookup::Expired`], `del` and `KEYS` treat it as absent — and a lookup that finds one
//!   removes it ([`Store::remove_if_expired`], [`Store::del`], or a `set` that replaces it).
//! - *Periodic*: [`Store::sweep`] walks a bounded window of the table from a cursor and removes
//!   the expired entries it meets, so entries nobody asks for again do not stay forever. The
//!   server's loop timer calls it; the bound keeps each call short however large the table is.
//!
//! Until one of those removes it, an expired entry still counts in [`Store::len`] and
//! [`Store::bytes`] (the `keys` and `bytes` of `STATS`).

use std::time::{Duration, Instant};

use crate::table::HashTable;

/// One stored value and its deadline.
#[derive(Debug)]
struct Entry {
    value: Box<[u8]>,
    /// When the entry stops existing; `None` for never.
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|deadline| deadline <= now)
    }
}

/// What [`Store::get`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Lookup<'a> {
    /// A live entry with this value.
    Found(&'a [u8]),
    /// No entry.
    Missing,
    /// An entry whose deadline has passed: answer as if missing, and remove it when a write
    /// lock is at hand ([`Store::remove_if_expired`]).
    Expired,
}

/// What [`Store::del`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Removed {
    /// A live entry: the reply is `DELETED`.
    Live,
    /// An entry that had already expired: the reply is `NOT_FOUND`.
    Expired,
    /// Nothing: the reply is `NOT_FOUND`.
    Missing,
}

/// `KEYS` matched more than the reply may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyKeys;

/// The key-value state machine.
///
/// ```
/// use kv_store::{Lookup, Store};
/// use std::time::{Duration, Instant};
///
/// let mut store = Store::new();
/// let start = Instant::now();
/// store.set(b"session", b"abc", Some(start + Duration::from_secs(10)));
/// assert_eq!(store.get(b"session", start), Lookup::Found(b"abc"));
/// let later = start + Duration::from_secs(10);
/// assert_eq!(store.get(b"session", later), Lookup::Expired);
/// assert_eq!(store.sweep(later, 1024), 1);
/// assert_eq!(store.get(b"session", later), Lookup::Missing);
/// ```
#[derive(Debug, Default)]
pub struct Store {
    table: HashTable<Entry>,
    /// The sum of key and value lengths over every held entry.
    bytes: usize,
    /// Where the next [`sweep`](Self::sweep) starts.
    sweep_cursor: usize,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Key plus value bytes over every held entry (the table's own overhead not counted).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Looks `key` up at instant `now`. Needs only `&self`, so readers can share a lock.
    pub fn get(&self, key: &[u8], now: Instant) -> Lookup<'_> {
        match self.table.get(key) {
            None => Lookup::Missing,
            Some(entry) if entry.is_expired(now) => Lookup::Expired,
            Some(entry) => Lookup::Found(&entry.value),
        }
    }

    /// Stores `value` for `key` until `expires_at` (`None`: forever), replacing any entry and
    /// its deadline.
    pub fn set(&mut self, key: &[u8], value: &[u8], expires_at: Option<Instant>) {
        let entry = Entry {
            value: value.into(),
            expires_at,
        };
        self.bytes += value.len();
        match self.table.insert(key, entry) {
            Some(old) => self.bytes -= old.value.len(),
            None => self.bytes += key.len(),
        }
    }

    /// Removes `key` and says what was there: an expired entry is removed too, but reported
    /// as [`Removed::Expired`], because to a client it was already gone.
    pub fn del(&mut self, key: &[u8], now: Instant) -> Removed {
        match self.table.remove(key) {
            Some(entry) => {
                self.bytes -= key.len() + entry.value.len();
                if entry.is_expired(now) {
                    Removed::Expired
                } else {
                    Removed::Live
                }
            }
            None => Removed::Missing,
        }
    }

    /// Removes `key` if its entry has expired at `now`; returns whether it did. A `GET` that
    /// saw [`Lookup::Expired`] under a read lock calls this under the write lock: the entry
    /// may have been replaced in between, which is why it checks again.
    pub fn remove_if_expired(&mut self, key: &[u8], now: Instant) -> bool {
        if !self
            .table
            .get(key)
            .is_some_and(|entry| entry.is_expired(now))
        {
            return false;
        }
        let entry = self.table.remove(key).expect("the entry was just found");
        self.bytes -= key.len() + entry.value.len();
        true
    }

    /// Appends every key that starts with `prefix` and is live at `now` to `out`, in no
    /// particular order, unless that would make `out` longer than `limit`: then it returns
    /// [`TooManyKeys`] (with `out` holding some of them). One pass over the table: O(capacity).
    pub fn collect_keys(
        &self,
        prefix: &[u8],
        now: Instant,
        limit: usize,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), TooManyKeys> {
        for (key, entry) in self.table.iter() {
            if key.starts_with(prefix) && !entry.is_expired(now) {
                if out.len() == limit {
                    return Err(TooManyKeys);
                }
                out.push(key.to_vec());
            }
        }
        Ok(())
    }

    /// Removes the expired entries among the next `budget` slots of the table (wrapping at the
    /// end), resuming where the previous sweep stopped; returns how many it removed. A budget of
    /// [`sweep_all`](Self::sweep_all)'s size, or any budget at least the table's capacity,
    /// covers the whole table.
    pub fn sweep(&mut self, now: Instant, budget: usize) -> usize {
        let mut removed = 0;
        let bytes = &mut self.bytes;
        self.sweep_cursor = self
            .table
            .remove_where(self.sweep_cursor, budget, |key, entry| {
                let expired = entry.is_expired(now);
                if expired {
                    *bytes -= key.len() + entry.value.len();
                    removed += 1;
                }
                expired
            });
        removed
    }

    /// Removes every expired entry; returns how many.
    pub fn sweep_all(&mut self, now: Instant) -> usize {
        let capacity = self.table.capacity();
        self.sweep(now, capacity)
    }
}

/// The deadline of an entry set at `now` to expire after `secs` seconds.
///
/// `Instant` arithmetic can overflow only for deadlines far past any real clock; such a
/// deadline is treated as never (the parser already caps `secs` at ten years).
pub fn deadline(now: Instant, secs: u64) -> Option<Instant> {
    now.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn set_get_overwrite_del() {
        let now = Instant::now();
        let mut store = Store::new();
        assert_eq!(store.get(b"k", now), Lookup::Missing);
        store.set(b"k", b"one", None);
        assert_eq!(store.get(b"k", now), Lookup::Found(b"one"));
        store.set(b"k", b"two!", None);
        assert_eq!(store.get(b"k", now), Lookup::Found(b"two!"));
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), 1 + 4);
        assert_eq!(store.del(b"k", now), Removed::Live);
        assert_eq!(store.del(b"k", now), Removed::Missing);
        assert_eq!(store.get(b"k", now), Lookup::Missing);
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }

    #[test]
    fn empty_values_are_values() {
        let now = Instant::now();
        let mut store = Store::new();
        store.set(b"k", b"", None);
        assert_eq!(store.get(b"k", now), Lookup::Found(b""));
        assert_eq!(store.bytes(), 1);
    }

    #[test]
    fn an_entry_expires_exactly_at_its_deadline() {
        let start = Instant::now();
        let mut store = Store::new();
        store.set(b"k", b"v", deadline(start, 5));
        assert_eq!(
            store.get(b"k", start + secs(5) - Duration::from_nanos(1)),
            Lookup::Found(b"v")
        );
        assert_eq!(store.get(b"k", start + secs(5)), Lookup::Expired);
        assert_eq!(store.len(), 1, "still held until removed");
        assert!(store.remove_if_expired(b"k", start + secs(5)));
        assert_eq!(store.get(b"k", start + secs(5)), Lookup::Missing);
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }

    #[test]
    fn remove_if_expired_spares_live_and_replaced_entries() {
        let start = Instant::now();
        let mut store = Store::new();
        store.set(b"k", b"v", deadline(start, 5));
        assert!(!store.remove_if_expired(b"k", start), "still live");
        // Replaced without expiry after a reader saw it expired: the new entry stays.
        store.set(b"k", b"new", None);
        assert!(!store.remove_if_expired(b"k", start + secs(60)));
        assert_eq!(store.get(b"k", start + secs(60)), Lookup::Found(b"new"));
        assert!(!store.remove_if_expired(b"absent", start));
    }

    #[test]
    fn set_without_expiry_clears_the_old_deadline() {
        let start = Instant::now();
        let mut store = Store::new();
        store.set(b"k", b"v", deadline(start, 1));
        store.set(b"k", b"v", None);
        assert_eq!(store.get(b"k", start + secs(3600)), Lookup::Found(b"v"));
    }

    #[test]
    fn del_of_an_expired_entry_removes_it_and_reports_absent() {
        let start = Instant::now();
        let mut store = Store::new();
        store.set(b"k", b"v", deadline(start, 1));
        assert_eq!(store.del(b"k", start + secs(1)), Removed::Expired);
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn sweep_removes_only_expired_entries_within_its_budget() {
        let start = Instant::now();
        let mut store = Store::new();
        for i in 0..100u32 {
            let expiry = (i % 2 == 0).then(|| start + secs(10));
            store.set(&i.to_be_bytes(), b"value", expiry);
        }
        assert_eq!(store.sweep_all(start + secs(9)), 0, "nothing expired yet");
        let later = start + secs(10);
        let mut removed = 0;
        let mut calls = 0;
        // Small budgets: each call visits 16 slots; the cursor carries on between calls.
        while removed < 50 {
            removed += store.sweep(later, 16);
            calls += 1;
            assert!(calls <= 1000, "the sweep does not progress");
        }
        assert_eq!(removed, 50);
        assert_eq!(store.len(), 50);
        assert_eq!(store.bytes(), 50 * (4 + 5));
        for i in (1..100u32).step_by(2) {
            assert_eq!(store.get(&i.to_be_bytes(), later), Lookup::Found(b"value"));
        }
        assert_eq!(store.sweep_all(later), 0);
    }

    #[test]
    fn collect_keys_matches_prefixes_skips_expired_and_honours_the_limit() {
        let start = Instant::now();
        let mut store = Store::new();
        store.set(b"user:1", b"a", None);
        store.set(b"user:2", b"b", None);
        store.set(b"user:3", b"c", deadline(start, 1));
        store.set(b"order:1", b"d", None);
        let mut keys = Vec::new();
        store
            .collect_keys(b"user:", start + secs(1), 10, &mut keys)
            .unwrap();
        keys.sort();
        assert_eq!(keys, vec![b"user:1".to_vec(), b"user:2".to_vec()]);
        let mut all = Vec::new();
        store.collect_keys(b"", start, 10, &mut all).unwrap();
        assert_eq!(all.len(), 4);
        let mut limited = Vec::new();
        assert_eq!(
            store.collect_keys(b"", start, 3, &mut limited),
            Err(TooManyKeys)
        );
        let mut exact = Vec::new();
        assert_eq!(store.collect_keys(b"", start, 4, &mut exact), Ok(()));
    }

    #[test]
    fn far_deadlines_do_not_overflow() {
        let now = Instant::now();
        assert!(deadline(now, crate::MAX_EXPIRY_SECS).is_some());
        assert_eq!(deadline(now, u64::MAX), None);
    }
}
