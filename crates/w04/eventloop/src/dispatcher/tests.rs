//! Unit tests of `dispatcher`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;

#[test]
fn posts_wake_the_loop_only_when_the_queue_becomes_non_empty() {
    let dispatcher = Dispatcher::new("wakes").unwrap();
    for _ in 0..100 {
        dispatcher.post(|| {});
    }
    assert_eq!(
        dispatcher.shared.post_waker.drain(),
        1,
        "100 posts, one wake"
    );
    dispatcher.exit();
    dispatcher.run().unwrap();
    // `run` returned without draining the eventfd (exit was already requested).
    dispatcher.shared.post_waker.drain();
    dispatcher.post(|| {});
    assert_eq!(
        dispatcher.shared.post_waker.drain(),
        1,
        "an emptied queue wakes again"
    );
}

#[test]
fn run_can_be_called_again_after_a_callback_panicked() {
    let dispatcher = Dispatcher::new("panics").unwrap();
    dispatcher.post(|| panic!("deliberate"));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatcher.run()));
    assert!(unwound.is_err());
    let handle = dispatcher.handle();
    dispatcher.post(move || handle.exit());
    dispatcher.run().unwrap();
}

#[test]
fn fd_keys_round_trip_through_tokens_and_never_collide_with_internal_ones() {
    let key = FdKey {
        index: 7,
        generation: 3,
    };
    assert_eq!(FdKey::from_token(key.token()), key);
    let largest = FdKey {
        index: u32::MAX - 2,
        generation: u32::MAX,
    };
    assert!(largest.token() < TIMER_TOKEN);
}
