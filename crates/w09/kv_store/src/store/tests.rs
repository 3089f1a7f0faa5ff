//! Unit tests of the state machine's transitions and expiry.

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn set_get_overwrite_del() {
    let now = Instant::now();
    let mut store = Store::new();
    assert_eq!(store.get(b"k", now), Lookup::Missing);
    store.set(b"k", b"one", None);
    assert_eq!(store.get(b"k", now), Lookup::Found(b"one"));
    store.set(b"k", b"two!", None);
    assert_eq!(store.get(b"k", now), Lookup::Found(b"two!"));
    assert_eq!(store.len(), 1);
    assert_eq!(store.bytes(), 1 + 4);
    assert_eq!(store.del(b"k", now), Removed::Live);
    assert_eq!(store.del(b"k", now), Removed::Missing);
    assert_eq!(store.get(b"k", now), Lookup::Missing);
    assert_eq!((store.len(), store.bytes()), (0, 0));
}

#[test]
fn empty_values_are_values() {
    let now = Instant::now();
    let mut store = Store::new();
    store.set(b"k", b"", None);
    assert_eq!(store.get(b"k", now), Lookup::Found(b""));
    assert_eq!(store.bytes(), 1);
}

#[test]
fn an_entry_expires_exactly_at_its_deadline() {
    let start = Instant::now();
    let mut store = Store::new();
    store.set(b"k", b"v", deadline(start, 5));
    assert_eq!(
        store.get(b"k", start + secs(5) - Duration::from_nanos(1)),
        Lookup::Found(b"v")
    );
    assert_eq!(store.get(b"k", start + secs(5)), Lookup::Expired);
    assert_eq!(store.len(), 1, "still held until removed");
    assert!(store.remove_if_expired(b"k", start + secs(5)));
    assert_eq!(store.get(b"k", start + secs(5)), Lookup::Missing);
    assert_eq!((store.len(), store.bytes()), (0, 0));
}

#[test]
fn remove_if_expired_spares_live_and_replaced_entries() {
    let start = Instant::now();
    let mut store = Store::new();
    store.set(b"k", b"v", deadline(start, 5));
    assert!(!store.remove_if_expired(b"k", start), "still live");
    // Replaced without expiry after a reader saw it expired: the new entry stays.
    store.set(b"k", b"new", None);
    assert!(!store.remove_if_expired(b"k", start + secs(60)));
    assert_eq!(store.get(b"k", start + secs(60)), Lookup::Found(b"new"));
    assert!(!store.remove_if_expired(b"absent", start));
}

#[test]
fn set_without_expiry_clears_the_old_deadline() {
    let start = Instant::now();
    let mut store = Store::new();
    store.set(b"k", b"v", deadline(start, 1));
    store.set(b"k", b"v", None);
    assert_eq!(store.get(b"k", start + secs(3600)), Lookup::Found(b"v"));
}

#[test]
fn del_of_an_expired_entry_removes_it_and_reports_absent() {
    let start = Instant::now();
    let mut store = Store::new();
    store.set(b"k", b"v", deadline(start, 1));
    assert_eq!(store.del(b"k", start + secs(1)), Removed::Expired);
    assert!(store.is_empty());
    assert_eq!(store.bytes(), 0);
}

#[test]
fn sweep_removes_only_expired_entries_within_its_budget() {
    let start = Instant::now();
    let mut store = Store::new();
    for i in 0..100u32 {
        let expiry = (i % 2 == 0).then(|| start + secs(10));
        store.set(&i.to_be_bytes(), b"value", expiry);
    }
    assert_eq!(store.sweep_all(start + secs(9)), 0, "nothing expired yet");
    let later = start + secs(10);
    let mut removed = 0;
    let mut calls = 0;
    // Small budgets: each call visits 16 slots; the cursor carries on between calls.
    while removed < 50 {
        removed += store.sweep(later, 16);
        calls += 1;
        assert!(calls <= 1000, "the sweep does not progress");
    }
    assert_eq!(removed, 50);
    assert_eq!(store.len(), 50);
    assert_eq!(store.bytes(), 50 * (4 + 5));
    for i in (1..100u32).step_by(2) {
        assert_eq!(store.get(&i.to_be_bytes(), later), Lookup::Found(b"value"));
    }
    assert_eq!(store.sweep_all(later), 0);
}

#[test]
fn collect_keys_matches_prefixes_skips_expired_and_honours_the_limit() {
    let start = Instant::now();
    let mut store = Store::new();
    store.set(b"user:1", b"a", None);
    store.set(b"user:2", b"b", None);
    store.set(b"user:3", b"c", deadline(start, 1));
    store.set(b"order:1", b"d", None);
    let mut keys = Vec::new();
    store
        .collect_keys(b"user:", start + secs(1), 10, &mut keys)
        .unwrap();
    keys.sort();
    assert_eq!(keys, vec![b"user:1".to_vec(), b"user:2".to_vec()]);
    let mut all = Vec::new();
    store.collect_keys(b"", start, 10, &mut all).unwrap();
    assert_eq!(all.len(), 4);
    let mut limited = Vec::new();
    assert_eq!(
        store.collect_keys(b"", start, 3, &mut limited),
        Err(TooManyKeys)
    );
    let mut exact = Vec::new();
    assert_eq!(store.collect_keys(b"", start, 4, &mut exact), Ok(()));
}

#[test]
fn far_deadlines_do_not_overflow() {
    let now = Instant::now();
    assert!(deadline(now, crate::MAX_EXPIRY_SECS).is_some());
    assert_eq!(deadline(now, u64::MAX), None);
}
