//! Unit tests of `slab`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;

#[test]
fn insert_get_and_remove() {
    let mut slab = Slab::new();
    assert!(slab.is_empty());
    let a = slab.insert("a");
    let b = slab.insert("b");
    assert_eq!(
        (slab.get(a), slab.get(b), slab.len()),
        (Some(&"a"), Some(&"b"), 2)
    );
    assert_eq!(slab.remove(a), Some("a"));
    assert_eq!(slab.remove(a), None, "a key removes its value once");
    assert_eq!(slab.get(a), None);
    assert!(!slab.contains(a));
    assert_eq!(slab.len(), 1);
    *slab.get_mut(b).unwrap() = "b2";
    assert_eq!(slab.keys(), vec![b]);
    assert_eq!(slab.get(b), Some(&"b2"));
}

#[test]
fn a_stale_key_is_rejected_after_its_place_is_reused() {
    let mut slab = Slab::new();
    let old = slab.insert("old client");
    slab.remove(old);
    let new = slab.insert("new client");
    assert_eq!(
        new.index(),
        old.index(),
        "the place is reused, like an fd number"
    );
    assert_eq!(new.generation(), old.generation() + 1);
    assert_ne!(new, old);
    assert_eq!(
        slab.get(old),
        None,
        "a late result for the old client finds nothing"
    );
    assert_eq!(slab.get_mut(old), None);
    assert_eq!(slab.remove(old), None, "and cannot remove the new client");
    assert_eq!(slab.get(new), Some(&"new client"));
}

#[test]
fn freed_places_are_reused_last_freed_first() {
    let mut slab = Slab::new();
    let keys: Vec<Key> = (0..4).map(|value| slab.insert(value)).collect();
    slab.remove(keys[1]);
    slab.remove(keys[3]);
    assert_eq!(slab.insert(10).index(), 3);
    assert_eq!(slab.insert(11).index(), 1);
    assert_eq!(
        slab.insert(12).index(),
        4,
        "no free place left: the table grows"
    );
}

#[test]
fn the_value_knows_its_key_and_a_failed_insert_stores_nothing() {
    let mut slab: Slab<Key> = Slab::new();
    let key = slab.insert_with(Ok::<_, ()>).unwrap();
    assert_eq!(slab.get(key), Some(&key));
    assert_eq!(slab.insert_with(|_| Err("no fd")), Err("no fd"));
    assert_eq!(slab.len(), 1);
    let next = slab.insert_with(Ok::<_, ()>).unwrap();
    assert_eq!(slab.get(next), Some(&next));
    assert_eq!(next.index(), 1, "the failed insert took no place");
}

#[test]
fn take_all_empties_the_slab_and_makes_every_key_stale() {
    let mut slab = Slab::new();
    let keys: Vec<Key> = (0..3).map(|value| slab.insert(value)).collect();
    slab.remove(keys[1]);
    assert_eq!(slab.take_all(), vec![0, 2]);
    assert!(slab.is_empty());
    let reused = slab.insert(7);
    assert!(keys.iter().all(|&key| slab.get(key).is_none()));
    assert_eq!(slab.get(reused), Some(&7));
}

#[test]
fn keys_survive_packing_into_a_token() {
    let mut slab = Slab::new();
    for value in 0..3 {
        let key = slab.insert(value);
        slab.remove(key);
    }
    let key = slab.insert(9);
    assert_eq!(key.generation(), 3);
    assert_eq!(Key::from_u64(key.to_u64()), key);
}
