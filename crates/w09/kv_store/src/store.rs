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
//!   the expired entries it meets, so entries nobody asks for again do not stay forever. A server
//!   calls it from a periodic timer; the bound keeps each call short however large the table is.
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
    // starter: w09-l01 todo "Do 8: true when there is a deadline and it is at or before now"
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

    // starter: w09-l01 todo "Do 8: Missing, Expired when the deadline has passed, else Found with the value"
    /// Looks `key` up at instant `now`. Needs only `&self`, so readers can share a lock.
    pub fn get(&self, key: &[u8], now: Instant) -> Lookup<'_> {
        match self.table.get(key) {
            None => Lookup::Missing,
            Some(entry) if entry.is_expired(now) => Lookup::Expired,
            Some(entry) => Lookup::Found(&entry.value),
        }
    }

    // starter: w09-l01 todo "Do 8: insert the entry; bytes gains the value, loses a replaced value, gains a new key"
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

    // starter: w09-l01 todo "Do 8: remove the key; bytes loses key and value; Live, Expired or Missing"
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

    // starter: w09-l01 todo "Do 9: check again that the entry has expired, then remove it and its bytes"
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

    // starter: w09-l01 todo "Do 9: every live key with the prefix into out, TooManyKeys once out would pass limit"
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

    /// Every entry live at `now`, as (key, value, deadline), in no particular order: what a
    /// checkpoint of a durable store writes. Expired entries not yet removed are left out, so a
    /// store recovered from the checkpoint never holds them.
    pub fn live_entries(
        &self,
        now: Instant,
    ) -> impl Iterator<Item = (&[u8], &[u8], Option<Instant>)> {
        self.table.iter().filter_map(move |(key, entry)| {
            (!entry.is_expired(now)).then_some((key, &*entry.value, entry.expires_at))
        })
    }

    // starter: w09-l01 todo "Do 10: remove_where from the cursor with budget; remove expired entries, fix bytes, count them"
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
mod tests;
