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

    /// The value stored for `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let index = self.find(hash_key(key), key)?;
        match &self.slots[index] {
            Slot::Full(bucket) => Some(&bucket.value),
            _ => unreachable!("find returns only full slots"),
        }
    }

    /// The value stored for `key`, mutably.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let index = self.find(hash_key(key), key)?;
        match &mut self.slots[index] {
            Slot::Full(bucket) => Some(&mut bucket.value),
            _ => unreachable!("find returns only full slots"),
        }
    }

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

    /// Turns the full slot at `index` into a tombstone and returns its value.
    fn remove_at(&mut self, index: usize) -> V {
        let Slot::Full(bucket) = std::mem::replace(&mut self.slots[index], Slot::Tombstone) else {
            unreachable!("remove_at is called only on full slots");
        };
        self.len -= 1;
        self.tombstones += 1;
        bucket.value
    }

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
mod tests {
    use super::*;

    #[test]
    fn insert_get_replace_remove() {
        let mut table = HashTable::new();
        assert_eq!(table.capacity(), 0, "no allocation before the first insert");
        assert_eq!(table.get(b"k"), None);
        assert_eq!(table.insert(b"k", 1), None);
        assert_eq!(table.insert(b"k", 2), Some(1));
        assert_eq!(table.len(), 1);
        *table.get_mut(b"k").unwrap() += 40;
        assert_eq!(table.get(b"k"), Some(&42));
        assert_eq!(table.remove(b"k"), Some(42));
        assert_eq!(table.remove(b"k"), None);
        assert_eq!(table.get(b"k"), None);
        assert!(table.is_empty());
    }

    #[test]
    fn keys_are_byte_exact() {
        let mut table = HashTable::new();
        table.insert(b"a", 1);
        table.insert(b"a\0", 2);
        table.insert(b"A", 3);
        table.insert(&[0xff, 0xfe], 4);
        table.insert(b"", 5);
        assert_eq!(table.get(b"a"), Some(&1));
        assert_eq!(table.get(b"a\0"), Some(&2));
        assert_eq!(table.get(b"A"), Some(&3));
        assert_eq!(table.get(&[0xff, 0xfe]), Some(&4));
        assert_eq!(table.get(b""), Some(&5));
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn growth_doubles_and_keeps_every_key() {
        let mut table = HashTable::new();
        let mut capacities = vec![];
        for i in 0..10_000u32 {
            table.insert(&i.to_le_bytes(), i);
            if capacities.last() != Some(&table.capacity()) {
                capacities.push(table.capacity());
            }
            assert!(table.len() * 4 <= table.capacity() * 3, "load over 3/4");
        }
        let expected: Vec<usize> = (3..=14).map(|bits| 1 << bits).collect();
        assert_eq!(capacities, expected, "8, 16, 32, ... 16384");
        for i in 0..10_000u32 {
            assert_eq!(table.get(&i.to_le_bytes()), Some(&i));
        }
    }

    #[test]
    fn a_new_key_reuses_the_tombstone_its_probe_passes() {
        let mut table = HashTable::new();
        table.insert(b"x", 1);
        table.remove(b"x");
        assert_eq!(table.tombstones(), 1);
        // The same key probes the same home slot, meets its own tombstone first, and takes it.
        table.insert(b"x", 2);
        assert_eq!(table.tombstones(), 0);
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(b"x"), Some(&2));
    }

    #[test]
    fn keys_behind_a_tombstone_stay_reachable() {
        // Fill a table enough that probe chains form, then remove every other key.
        let mut table = HashTable::with_capacity(64);
        let capacity = table.capacity();
        for i in 0..40u32 {
            table.insert(&i.to_be_bytes(), i);
        }
        for i in (0..40u32).step_by(2) {
            assert_eq!(table.remove(&i.to_be_bytes()), Some(i));
        }
        assert_eq!(table.capacity(), capacity, "no rebuild happened");
        for i in 0..40u32 {
            let expected = (i % 2 == 1).then_some(i);
            assert_eq!(table.get(&i.to_be_bytes()).copied(), expected, "key {i}");
        }
    }

    #[test]
    fn churn_rebuilds_in_place_instead_of_growing() {
        // Insert and remove distinct keys forever with at most one live: tombstones pile up,
        // and each rebuild must clear them at the same capacity rather than double it.
        let mut table = HashTable::new();
        for i in 0..100_000u32 {
            table.insert(&i.to_le_bytes(), ());
            table.remove(&i.to_le_bytes());
            assert!(table.len() + table.tombstones() < table.capacity());
        }
        assert_eq!(table.capacity(), MIN_CAPACITY);
        assert!(table.is_empty());
    }

    #[test]
    fn remove_where_visits_a_bounded_window_and_wraps() {
        let mut table = HashTable::with_capacity(4);
        assert_eq!(table.capacity(), 8);
        for i in 0..6u8 {
            table.insert(&[i], i);
        }
        let mut visited = 0;
        let next = table.remove_where(6, 4, |_, _| {
            visited += 1;
            false
        });
        assert_eq!(next, 2, "6, 7, 0, 1 visited; the cursor wraps");
        assert!(visited <= 4);
        // A full pass removes every even value.
        table.remove_where(0, 8, |_, value| value % 2 == 0);
        let mut left: Vec<u8> = table.iter().map(|(_, v)| *v).collect();
        left.sort();
        assert_eq!(left, vec![1, 3, 5]);
        assert_eq!(table.tombstones(), 3);
        assert_eq!(HashTable::<u8>::new().remove_where(5, 5, |_, _| true), 0);
    }

    #[test]
    fn with_capacity_fits_without_growing() {
        let mut table = HashTable::with_capacity(100);
        let capacity = table.capacity();
        for i in 0..100u32 {
            table.insert(&i.to_le_bytes(), ());
        }
        assert_eq!(table.capacity(), capacity);
    }
}
