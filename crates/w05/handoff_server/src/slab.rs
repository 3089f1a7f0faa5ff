//! A slab of connections keyed by (index, generation).
//!
//! A result comes back from a worker long after its request was read; by then the connection may
//! be gone, and the kernel may even have handed its fd number to a new client. Keying connections
//! by their fd would deliver the old client's answer to the new one. A [`Key`] instead names one
//! *occupancy* of a slot: removing a value bumps the slot's generation, so every key that was
//! handed out for the old value stops matching, whoever occupies the slot next.

/// Names one value stored in a [`Slab`]; stale once that value is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    index: u32,
    generation: u32,
}

/// One slot: a value with the generation it was stored under, or a free slot that remembers the
/// generation its next value will get.
#[derive(Debug)]
enum Entry<T> {
    Occupied { generation: u32, value: T },
    Vacant { next_generation: u32 },
}

/// A growable array of values with O(1) insert, lookup and removal, and keys that never alias.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Indexes of vacant entries, reused last-freed first, as the kernel reuses fd numbers.
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    // starter: w05-l04 todo "new"
    /// An empty slab.
    pub(crate) fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// How many values are stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    // starter: w05-l04 todo "is_empty"
    /// Whether no value is stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    // starter: w05-l04 todo "insert_with"
    /// Stores the value `make` builds from its own key, and returns that key.
    ///
    /// The value learns its key before it exists, so it can register callbacks that carry it.
    pub(crate) fn insert_with<E>(
        &mut self,
        make: impl FnOnce(Key) -> Result<T, E>,
    ) -> Result<Key, E> {
        let (index, generation) = match self.free.last() {
            Some(&index) => match self.entries[index as usize] {
                Entry::Vacant { next_generation } => (index, next_generation),
                Entry::Occupied { .. } => unreachable!("a free-listed slot is vacant"),
            },
            None => {
                let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 connections");
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
    #[cfg(test)]
    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.entries.get(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    // starter: w05-l04 todo "get_mut"
    /// The value `key` names, if it is still stored, mutably.
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.entries.get_mut(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    // starter: w05-l04 todo "remove"
    /// Removes and returns the value `key` names; `None` if it was already gone.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
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

    // starter: w05-l04 todo "keys"
    /// The keys of every stored value.
    pub(crate) fn keys(&self) -> Vec<Key> {
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
}

#[cfg(test)]
mod tests;
