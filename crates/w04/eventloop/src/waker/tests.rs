//! Unit tests of `waker`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;

#[test]
fn wakes_coalesce_and_drain_resets() {
    let waker = Waker::new().unwrap();
    assert_eq!(waker.drain(), 0);
    for _ in 0..1000 {
        waker.wake();
    }
    assert_eq!(waker.drain(), 1000);
    assert_eq!(waker.drain(), 0);
}

#[test]
fn a_saturated_counter_still_counts_as_woken() {
    let waker = Waker::new().unwrap();
    // The largest value an eventfd counter holds is u64::MAX - 1.
    sys::eventfd_write(waker.as_fd(), u64::MAX - 1).unwrap();
    waker.wake();
    assert_eq!(waker.drain(), u64::MAX - 1);
}
