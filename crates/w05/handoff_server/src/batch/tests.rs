//! Unit tests of `batch`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;
use handoff_protocol::expected_response;

fn key() -> Key {
    let mut slab = eventloop::slab::Slab::new();
    slab.insert_with(|_| Ok::<_, ()>(())).unwrap()
}

#[test]
fn each_request_gets_its_own_reply_in_order_and_a_panic_stays_in_its_slot() {
    let mut batch = Batch::default();
    batch.start(key());
    batch.push(7, Verb::Compute, 1, b"first");
    batch.push(8, Verb::Panic, 2, b"boom");
    batch.push(9, Verb::Compute, 3, b"third");
    batch.run(false);
    let replies: Vec<_> = batch.take_replies().collect();
    assert_eq!(replies.len(), 3);
    let mut first = Vec::new();
    replies[0].1.as_ref().unwrap().write_to(&mut first);
    assert_eq!(Some(first), expected_response(b"compute first"));
    assert_eq!(replies[1].0, 8);
    assert_eq!(replies[1].1.as_ref().unwrap_err().message(), "boom");
    let mut third = Vec::new();
    replies[2].1.as_ref().unwrap().write_to(&mut third);
    assert_eq!(Some(third), expected_response(b"compute third"));
    assert!(batch.is_empty(), "taking the replies empties the batch");
}

#[test]
fn a_recycled_batch_starts_empty() {
    let mut batch = Batch::default();
    batch.start(key());
    batch.push(1, Verb::Compute, 1, b"x");
    batch.start(key());
    assert!(batch.is_empty());
    batch.run(false);
    assert_eq!(batch.take_replies().count(), 0);
}

#[test]
fn only_sleep_travels_alone() {
    assert!(travels_alone(Verb::Sleep));
    for verb in [
        Verb::Compute,
        Verb::Rehash,
        Verb::Factorial,
        Verb::Fail,
        Verb::Panic,
    ] {
        assert!(!travels_alone(verb), "{verb:?}");
    }
}
