//! A slab of connections keyed by (index, generation).
//!
//! A result comes back from a worker long after its request was read; by then the connection may
//! be gone, and the kernel may even have handed its fd number to a new client. Keying connections
//! by their fd would deliver the old client's answer to the new one. A [`Key`] instead names one
//! *occupancy* of a slot: removing a value bumps the slot's generation, so every key that was
//! handed out for the old value stops matching, whoever occupies the slot next.

// Starter code: the scaffolding is unused, and its parameters unread, until you write the
// bodies; remove this attribute once you have.
#![allow(dead_code, unused_variables, unused_imports, unused_mut, unreachable_code)]

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
    /// An empty slab.
    pub(crate) fn new() -> Self {
        todo!("W05 L04: new")
    }

    /// How many values are stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub(crate) fn is_empty(&self) -> bool {
        todo!("W05 L04: is_empty")
    }

    /// Stores the value `make` builds from its own key, and returns that key.
    ///
    /// The value learns its key before it exists, so it can register callbacks that carry it.
    pub(crate) fn insert_with<E>(
        &mut self,
        make: impl FnOnce(Key) -> Result<T, E>,
    ) -> Result<Key, E> {
        todo!("W05 L04: insert_with")
    }

    /// The value `key` names, if it is still stored.
    #[cfg(test)]
    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.entries.get(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The value `key` names, if it is still stored, mutably.
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        todo!("W05 L04: get_mut")
    }

    /// Removes and returns the value `key` names; `None` if it was already gone.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        todo!("W05 L04: remove")
    }

    /// The keys of every stored value.
    pub(crate) fn keys(&self) -> Vec<Key> {
        todo!("W05 L04: keys")
    }
}

#[cfg(test)]
mod tests;
