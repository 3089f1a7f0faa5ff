//! Unit tests of `timer`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;

#[test]
fn rearming_does_not_grow_the_heap_without_bound() {
    let dispatcher = Dispatcher::new("rearm").unwrap();
    let timer = dispatcher.create_timer(|_| {});
    let other = dispatcher.create_timer(|_| {});
    other.enable(Duration::from_secs(60));
    for _ in 0..10_000 {
        timer.enable(Duration::from_secs(60));
    }
    let queue = dispatcher.timers.borrow();
    assert!(
        queue.heap.len() <= 2 * 64 + 2,
        "stale entries are compacted: {}",
        queue.heap.len()
    );
    assert_eq!(queue.armed_count, 2);
}

#[test]
fn a_dropped_timer_frees_its_slot_for_reuse_without_confusion() {
    let dispatcher = Dispatcher::new("reuse").unwrap();
    let first = dispatcher.create_timer(|_| {});
    first.enable(Duration::from_secs(60));
    drop(first);
    let second = dispatcher.create_timer(|_| {});
    assert!(
        !second.is_enabled(),
        "the reused slot does not inherit the old arming"
    );
    assert_eq!(
        dispatcher.timers.borrow_mut().earliest(),
        None,
        "the old heap entry is stale"
    );
}
