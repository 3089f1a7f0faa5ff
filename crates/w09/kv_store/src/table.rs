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
        Self::new()
    }
}

impl<V> HashTable<V> {
    /// Creates an empty table; it allocates on the first insert.
    pub fn new() -> Self {
        Self {
            slots: Box::new([]),
            len: 0,
            tombstones: 0,
        }
    }

    /// Creates an empty table that holds `entries` keys before it first grows.
    pub fn with_capacity(entries: usize) -> Self {
        let mut table = Self::new();
        if entries > 0 {
            table.rebuild(capacity_for(entries));
        }
        table
    }

    /// How many keys the table holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many slots the table has allocated (0 before the first insert).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many slots hold tombstones of removed keys.
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    // starter: w09-l01 todo "Do 3: find the key by its hash, return the full slot's value"
    /// The value stored for `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let index = self.find(hash_key(key), key)?;
        match &self.slots[index] {
            Slot::Full(bucket) => Some(&bucket.value),
            _ => unreachable!("find returns only full slots"),
        }
    }

    // starter: w09-l01 todo "Do 3: like get, with a mutable borrow of the value"
    /// The value stored for `key`, mutably.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let index = self.find(hash_key(key), key)?;
        match &mut self.slots[index] {
            Slot::Full(bucket) => Some(&mut bucket.value),
            _ => unreachable!("find returns only full slots"),
        }
    }

    // starter: w09-l01 todo "Do 5: replace an existing value in place; else reserve_one, take free_slot_for, count a reused tombstone"
    /// Stores `value` for `key`, returning the value it replaces. The key's bytes are copied
    /// only when the key is new.
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        let hash = hash_key(key);
        if let Some(index) = self.find(hash, key) {
            let Slot::Full(bucket) = &mut self.slots[index] else {
                unreachable!("find returns only full slots");
            };
            return Some(std::mem::replace(&mut bucket.value, value));
        }
        self.reserve_one();
        let index = self.free_slot_for(hash);
        if matches!(self.slots[index], Slot::Tombstone) {
            self.tombstones -= 1;
        }
        self.slots[index] = Slot::Full(Bucket {
            hash,
            key: key.into(),
            value,
        });
        self.len += 1;
        None
    }

    // starter: w09-l01 todo "Do 6: find the key, then remove_at its slot"
    /// Removes `key`, returning its value; its slot becomes a tombstone.
    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let index = self.find(hash_key(key), key)?;
        Some(self.remove_at(index))
    }

    /// Every key and value, in slot order (which is no order a caller should rely on).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::Full(bucket) => Some((&*bucket.key, &bucket.value)),
            _ => None,
        })
    }

    // starter: w09-l01 todo "Do 7: visit count slots from start, wrapping; remove_at the ones the predicate picks; return the next cursor"
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
        let capacity = self.slots.len();
        if capacity == 0 {
            return 0;
        }
        let mut index = start % capacity;
        for _ in 0..count.min(capacity) {
            let doomed = match &self.slots[index] {
                Slot::Full(bucket) => remove(&bucket.key, &bucket.value),
                Slot::Empty | Slot::Tombstone => false,
            };
            if doomed {
                self.remove_at(index);
            }
            index = (index + 1) % capacity;
        }
        index
    }

    // starter: w09-l01 todo "Do 6: swap the full slot for a tombstone, update both counts, return the value"
    /// Turns the full slot at `index` into a tombstone and returns its value.
    fn remove_at(&mut self, index: usize) -> V {
        let Slot::Full(bucket) = std::mem::replace(&mut self.slots[index], Slot::Tombstone) else {
            unreachable!("remove_at is called only on full slots");
        };
        self.len -= 1;
        self.tombstones += 1;
        bucket.value
    }

    // starter: w09-l01 todo "Do 2: probe from hash & mask with steps 1, 2, 3, ...; stop at an empty slot, skip tombstones"
    /// The index of the full slot holding `key`, if any.
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut index = hash as usize & mask;
        // The triangular sequence visits every slot once in `capacity` steps; the table always
        // keeps an empty slot (the load stays under 3/4), so the loop ends at one well before.
        for step in 1..=self.slots.len() {
            match &self.slots[index] {
                Slot::Empty => return None,
                Slot::Full(bucket) if bucket.hash == hash && *bucket.key == *key => {
                    return Some(index);
                }
                Slot::Full(_) | Slot::Tombstone => {}
            }
            index = (index + step) & mask;
        }
        None
    }

    // starter: w09-l01 todo "Do 4: the first tombstone or empty slot of the probe sequence"
    /// The slot a new key with `hash` goes to: the first tombstone or empty slot of its probe.
    /// The caller has checked that the key is absent and made room with
    /// [`reserve_one`](Self::reserve_one).
    fn free_slot_for(&self, hash: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut index = hash as usize & mask;
        for step in 1..=self.slots.len() {
            if !matches!(self.slots[index], Slot::Full(_)) {
                return index;
            }
            index = (index + step) & mask;
        }
        unreachable!("reserve_one keeps free slots in every table");
    }

    // starter: w09-l01 todo "Do 4: allocate MIN_CAPACITY, or rebuild past 3/4 occupied: double if over half live, else same size"
    /// Makes sure one more key fits without taking the occupied slots past 3/4.
    fn reserve_one(&mut self) {
        let capacity = self.slots.len();
        let occupied = self.len + self.tombstones + 1;
        if capacity == 0 {
            self.rebuild(MIN_CAPACITY);
        } else if occupied * 4 > capacity * 3 {
            // Mostly live keys: grow. Mostly tombstones: rebuild in place to clear them.
            let new_capacity = if (self.len + 1) * 2 > capacity {
                capacity * 2
            } else {
                capacity
            };
            self.rebuild(new_capacity);
        }
    }

    // starter: w09-l01 todo "Do 4: move every full slot into a fresh array of capacity empty slots, tombstones dropped"
    /// Moves every entry into a fresh slot array of `capacity` slots, dropping the tombstones.
    fn rebuild(&mut self, capacity: usize) {
        debug_assert!(capacity.is_power_of_two() && capacity >= MIN_CAPACITY);
        let fresh = (0..capacity).map(|_| Slot::Empty).collect();
        let old = std::mem::replace(&mut self.slots, fresh);
        self.tombstones = 0;
        for slot in old.into_vec() {
            if let Slot::Full(bucket) = slot {
                let index = self.free_slot_for(bucket.hash);
                self.slots[index] = Slot::Full(bucket);
            }
        }
    }
}

/// The smallest power-of-two capacity that holds `entries` keys under the 3/4 load limit.
fn capacity_for(entries: usize) -> usize {
    (entries.saturating_mul(4) / 3 + 1)
        .max(MIN_CAPACITY)
        .next_power_of_two()
}

#[cfg(test)]
mod tests;
