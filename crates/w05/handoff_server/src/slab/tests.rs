//! Unit tests of `slab`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;

fn insert(slab: &mut Slab<&'static str>, value: &'static str) -> Key {
    slab.insert_with(|_| Ok::<_, ()>(value)).unwrap()
}

#[test]
fn stores_finds_and_removes() {
    let mut slab = Slab::new();
    let a = insert(&mut slab, "a");
    let b = insert(&mut slab, "b");
    assert_eq!(
        (slab.get(a), slab.get(b), slab.len()),
        (Some(&"a"), Some(&"b"), 2)
    );
    assert_eq!(slab.remove(a), Some("a"));
    assert_eq!(slab.remove(a), None, "a key removes its value once");
    assert_eq!(slab.get(a), None);
    assert_eq!(slab.len(), 1);
    *slab.get_mut(b).unwrap() = "b2";
    assert_eq!(slab.keys(), vec![b]);
    assert_eq!(slab.get(b), Some(&"b2"));
}

#[test]
fn a_reused_slot_does_not_answer_to_the_old_key() {
    let mut slab = Slab::new();
    let old = insert(&mut slab, "old client");
    slab.remove(old);
    let new = insert(&mut slab, "new client");
    assert_eq!(
        new.index, old.index,
        "the slot is reused, like an fd number"
    );
    assert_ne!(new, old);
    assert_eq!(
        slab.get(old),
        None,
        "a late result for the old client finds nothing"
    );
    assert_eq!(slab.get_mut(old), None);
    assert_eq!(slab.remove(old), None);
    assert_eq!(slab.get(new), Some(&"new client"));
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
    assert!(!slab.is_empty());
}
