//! Unit tests of the hash table.

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
