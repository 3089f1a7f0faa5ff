//! The hash table: open addressing with triangular probing and tombstones, byte-string keys.
//!
//! The store needs a map from byte strings to values and nothing more, and the course builds it
//! rather than borrowing `std`'s, so every cost is visible:
//!
//! - **Layout.** One boxed slice of slots, its length a power of two (at least
//!   [`MIN_CAPACITY`]). A slot is empty, a tombstone, or full; a full slot keeps the key's
//!   64-bit XXH3 hash beside the key, so a probe compares hashes first and growth never hashes a
//!   key again.
//! - **Probing.** A key's home slot is `hash & (capacity - 1)`; a probe then steps by 1, 2, 3, …
//!   slots (triangular numbers). With a power-of-two capacity that sequence visits every slot
//!   exactly once in `capacity` steps, so a probe always ends, and it spreads collisions better
//!   than stepping by one.
//! - **Deletion.** Removing a key leaves a *tombstone*: an empty slot would cut the probe chains
//!   of keys inserted after it, and they would become unreachable. Lookups skip tombstones;
//!   an insert of a new key reuses the first tombstone its probe passed.
//! - **Growth.** Before an insert would take the occupied slots (full plus tombstones) past 3/4
//!   of the capacity, the table is rebuilt: at twice the capacity if at least half of it holds
//!   live keys, otherwise at the same capacity, which only clears the tombstones. Rebuilding
//!   moves every entry (no key bytes are copied or hashed again) and drops every tombstone.
//!   The table never shrinks on its own: memory follows the peak size, as in `std`'s map.
//!
//! Starter code: the reference's API with `todo!()` bodies; write them until the lesson passes.

// The untouched starter uses none of its private items; remove this once your bodies do.
#![allow(dead_code, unused_variables, unused_imports, unused_mut, unreachable_code)]

use xxhash_rust::xxh3::xxh3_64;

/// The smallest capacity a table allocates, in slots.
pub const MIN_CAPACITY: usize = 8;

/// The hash every table (and the sharded lock strategy) uses for a key: XXH3-64 with seed 0.
pub fn hash_key(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// One slot of the table.
#[derive(Debug)]
enum Slot<V> {
    /// Never held an entry since the last rebuild: a probe for a key stops here.
    Empty,
    /// Held an entry that was removed: a probe walks past it.
    Tombstone,
    /// Holds an entry.
    Full(Bucket<V>),
}

/// A full slot's contents.
#[derive(Debug)]
struct Bucket<V> {
    hash: u64,
    key: Box<[u8]>,
    value: V,
}

/// A map from byte-string keys to `V`, with open addressing (see the [module docs](self)).
///
/// ```
/// use kv_store::HashTable;
///
/// let mut table = HashTable::new();
/// assert_eq!(table.insert(b"alpha", 1), None);
/// assert_eq!(table.insert(b"alpha", 2), Some(1));
/// assert_eq!(table.get(b"alpha"), Some(&2));
/// assert_eq!(table.remove(b"alpha"), Some(2));
/// assert!(table.is_empty());
/// ```
#[derive(Debug)]
pub struct HashTable<V> {
    /// The slots; empty (no allocation) until the first insert, else a power of two long.
    slots: Box<[Slot<V>]>,
    /// How many slots are full.
    len: usize,
    /// How many slots are tombstones.
    tombstones: usize,
}

impl<V> Default for HashTable<V> {
    fn default() -> Self {
        todo!("W09 L01: the same as new()")
    }
}

impl<V> HashTable<V> {
    /// Creates an empty table; it allocates on the first insert.
    pub fn new() -> Self {
        todo!("W09 L01: an empty table with no slots allocated yet")
    }

    /// Creates an empty table that holds `entries` keys before it first grows.
    pub fn with_capacity(entries: usize) -> Self {
        todo!("W09 L01: allocate capacity_for(entries) slots up front (0 entries: none)")
    }

    /// How many keys the table holds.
    pub fn len(&self) -> usize {
        todo!("W09 L01: how many slots are full")
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        todo!("W09 L01: no full slot")
    }

    /// How many slots the table has allocated (0 before the first insert).
    pub fn capacity(&self) -> usize {
        todo!("W09 L01: the number of slots")
    }

    /// How many slots hold tombstones of removed keys.
    pub fn tombstones(&self) -> usize {
        todo!("W09 L01: how many slots are tombstones")
    }

    /// The value stored for `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        todo!("W09 L01: hash the key, find its full slot, return the value")
    }

    /// The value stored for `key`, mutably.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        todo!("W09 L01: like get, mutably")
    }

    /// Stores `value` for `key`, returning the value it replaces. The key's bytes are copied
    /// only when the key is new.
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        todo!(
            "W09 L01: replace an existing key's value; else reserve room, then fill the first tombstone or empty slot of the probe"
        )
    }

    /// Removes `key`, returning its value; its slot becomes a tombstone.
    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        todo!("W09 L01: find the key and turn its slot into a tombstone")
    }

    /// Every key and value, in slot order (which is no order a caller should rely on).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        // An `impl Trait` return needs a concrete type even before the body is written.
        let every_full_slot: std::iter::Empty<(&[u8], &V)> =
            todo!("W09 L01: every full slot as (key, value)");
        every_full_slot
    }

    /// Visits `count` slots starting at slot `start` (wrapping around the end), removes every
    /// entry for which `remove` returns true, and returns the slot where the next visit should
    /// start. This is the incremental sweep: a caller bounds the work of one call by `count`
    /// and resumes with the returned cursor, so no call ever walks a large table in one go.
    /// A `start` past the end (the table was rebuilt since) wraps to the front.
    pub fn remove_where(
        &mut self,
        start: usize,
        count: usize,
        mut remove: impl FnMut(&[u8], &V) -> bool,
    ) -> usize {
        todo!(
            "W09 L01: visit count slots from start (wrapping), remove where the predicate holds, return the next cursor"
        )
    }

    /// Turns the full slot at `index` into a tombstone and returns its value.
    fn remove_at(&mut self, index: usize) -> V {
        todo!(
            "W09 L01: replace the full slot with a tombstone, fix len and tombstones, return the value"
        )
    }

    /// The index of the full slot holding `key`, if any.
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        todo!(
            "W09 L01: triangular probe from hash & mask until an empty slot; compare hash, then key"
        )
    }

    /// The slot a new key with `hash` goes to: the first tombstone or empty slot of its probe.
    /// The caller has checked that the key is absent and made room with
    /// [`reserve_one`](Self::reserve_one).
    fn free_slot_for(&self, hash: u64) -> usize {
        todo!("W09 L01: the first non-full slot of the probe sequence")
    }

    /// Makes sure one more key fits without taking the occupied slots past 3/4.
    fn reserve_one(&mut self) {
        todo!(
            "W09 L01: before one more key takes occupied slots past 3/4: rebuild, doubling when half is live"
        )
    }

    /// Moves every entry into a fresh slot array of `capacity` slots, dropping the tombstones.
    fn rebuild(&mut self, capacity: usize) {
        todo!("W09 L01: move every entry into a fresh array of capacity slots, dropping tombstones")
    }
}

/// The smallest power-of-two capacity that holds `entries` keys under the 3/4 load limit.
fn capacity_for(entries: usize) -> usize {
    todo!(
        "W09 L01: the smallest power of two (at least MIN_CAPACITY) holding entries under 3/4 load"
    )
}

#[cfg(test)]
mod tests;
