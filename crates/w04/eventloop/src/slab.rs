//! [`Slab`]: a table of values keyed by (index, generation), so a key never aliases.
//!
//! An event loop keeps tables of things that come and go — fd registrations, timers, connections,
//! thread-local slots — and hands out keys to them that other code holds on to: an epoll token,
//! a `Timer`, a result coming back from a worker long after its request was read. By the time a
//! key is used, its value may be gone and its place taken by a new one (the kernel reuses fd
//! numbers the same way). A table keyed by position alone would then act on the wrong value: the
//! old client's answer would reach the new client, a stale epoll event would run the new fd's
//! callback.
//!
//! A [`Key`] therefore names one *occupancy* of a place: its index plus the place's generation at
//! the time. Removing a value bumps the generation, so every key handed out for it stops matching,
//! whoever occupies the place next. Lookups, inserts and removals are O(1); freed places are
//! reused last-freed first, as the kernel reuses fd numbers, which keeps the table dense.
//!
//! ```
//! use eventloop::slab::Slab;
//!
//! let mut connections = Slab::new();
//! let old = connections.insert("old client");
//! assert_eq!(connections.remove(old), Some("old client"));
//! let new = connections.insert("new client");
//! assert_eq!(new.index(), old.index(), "the place is reused");
//! assert_eq!(connections.get(old), None, "but the old key matches nothing");
//! assert_eq!(connections.get(new), Some(&"new client"));
//! ```

/// The largest index a slab hands out. The two above it are never used, so a packed key
/// ([`Key::to_u64`]) never equals `u64::MAX` or `u64::MAX - 1`, which the dispatcher keeps for
/// its own epoll tokens.
pub(crate) const MAX_INDEX: u32 = u32::MAX - 2;

/// Names one value stored in a [`Slab`]; stale once that value is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// The place in the slab (reused by later values once this one is removed).
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The generation of the place when this key was handed out.
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// The key packed into a `u64` (generation in the high half), for an epoll token.
    pub(crate) fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The key [`to_u64`](Self::to_u64) packed.
    pub(crate) fn from_u64(packed: u64) -> Key {
        Key {
            index: packed as u32,
            generation: (packed >> 32) as u32,
        }
    }
}

/// One place: a value with the generation it was stored under, or a free place that remembers
/// the generation its next value will get.
#[derive(Debug)]
enum Entry<T> {
    Occupied { generation: u32, value: T },
    Vacant { next_generation: u32 },
}

/// A growable array of values with O(1) insert, lookup and removal, and keys that never alias.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Indexes of vacant entries, reused last-freed first.
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    /// An empty slab (usable in a `static`).
    pub const fn new() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` and returns its key.
    ///
    /// # Panics
    ///
    /// If the slab would hold more than 2^32 - 2 places.
    pub fn insert(&mut self, value: T) -> Key {
        match self.insert_with(|_| Ok::<T, std::convert::Infallible>(value)) {
            Ok(key) => key,
            Err(never) => match never {},
        }
    }

    /// Stores the value `make` builds from its own key, and returns that key; if `make` fails,
    /// nothing is stored and its error is returned.
    ///
    /// The value learns its key before it exists, so it can register callbacks that carry it.
    ///
    /// # Panics
    ///
    /// If the slab would hold more than 2^32 - 2 places.
    pub fn insert_with<E>(&mut self, make: impl FnOnce(Key) -> Result<T, E>) -> Result<Key, E> {
        let (index, generation) = match self.free.last() {
            Some(&index) => match self.entries[index as usize] {
                Entry::Vacant { next_generation } => (index, next_generation),
                Entry::Occupied { .. } => unreachable!("a free-listed place is vacant"),
            },
            None => {
                let index = u32::try_from(self.entries.len())
                    .ok()
                    .filter(|&index| index <= MAX_INDEX)
                    .expect("a slab holds at most 2^32 - 2 places");
                (index, 0)
            }
        };
        let key = Key { index, generation };
        let value = make(key)?;
        let entry = Entry::Occupied { generation, value };
        if index as usize == self.entries.len() {
            self.entries.push(entry);
        } else {
            self.free.pop();
            self.entries[index as usize] = entry;
        }
        self.len += 1;
        Ok(key)
    }

    /// The value `key` names, if it is still stored.
    pub fn get(&self, key: Key) -> Option<&T> {
        match self.entries.get(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The value `key` names, if it is still stored, mutably.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.entries.get_mut(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// Whether `key` still names a stored value.
    pub fn contains(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    /// Removes and returns the value `key` names; `None` if it was already gone (or `key` is
    /// stale: the place holds a newer value, which is left alone).
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let entry = self.entries.get_mut(key.index as usize)?;
        if !matches!(entry, Entry::Occupied { generation, .. } if *generation == key.generation) {
            return None;
        }
        let vacant = Entry::Vacant {
            next_generation: key.generation.wrapping_add(1),
        };
        let Entry::Occupied { value, .. } = std::mem::replace(entry, vacant) else {
            unreachable!("checked above")
        };
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// The keys of every stored value, in index order (collected, so the caller may remove
    /// values while it walks them).
    pub fn keys(&self) -> Vec<Key> {
        let occupied = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry {
                Entry::Occupied { generation, .. } => Some((index, *generation)),
                Entry::Vacant { .. } => None,
            });
        occupied
            .map(|(index, generation)| Key {
                index: index as u32,
                generation,
            })
            .collect()
    }

    /// Removes every value and returns them in index order; every key handed out so far becomes
    /// stale.
    ///
    /// The values are returned rather than dropped so that the caller can drop them with no
    /// borrow of the table held (a value's drop may reach back into it).
    pub fn take_all(&mut self) -> Vec<T> {
        let mut values = Vec::with_capacity(self.len);
        for key in self.keys() {
            values.extend(self.remove(key));
        }
        values
    }
}

impl<T> Default for Slab<T> {
    /// An empty slab, as [`Slab::new`].
    fn default() -> Slab<T> {
        Slab::new()
    }
}

#[cfg(test)]
mod tests;
