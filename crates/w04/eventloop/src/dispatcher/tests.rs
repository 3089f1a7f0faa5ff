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
    let key = FdKey::from_token((3 << 32) | 7);
    assert_eq!((key.0.index(), key.0.generation()), (7, 3));
    assert_eq!(FdKey::from_token(key.token()), key);
    let largest = FdKey::from_token((u64::from(u32::MAX) << 32) | u64::from(slab::MAX_INDEX));
    assert!(largest.token() < TIMER_TOKEN);
}

#[test]
fn the_exit_drain_is_bounded_and_counts_what_it_drops() {
    fn repost(handle: DispatcherHandle, runs: Arc<std::sync::atomic::AtomicUsize>) {
        let again = handle.clone();
        handle.post(move || {
            runs.fetch_add(1, Ordering::Relaxed);
            repost(again, runs);
        });
    }
    let dispatcher = Dispatcher::new("bounded").unwrap();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    repost(dispatcher.handle(), Arc::clone(&runs));
    dispatcher.exit();
    dispatcher.run().unwrap();
    assert_eq!(
        runs.load(Ordering::Relaxed),
        EXIT_DRAIN_ROUNDS,
        "one run per round"
    );
    assert_eq!(
        dispatcher.posts_dropped_at_exit(),
        1,
        "the re-post of the last round"
    );
}

#[test]
fn a_chain_of_posts_shorter_than_the_bound_runs_to_its_end_at_exit() {
    fn chain(handle: DispatcherHandle, left: usize, ran: Arc<Mutex<Vec<usize>>>) {
        let again = handle.clone();
        handle.post_with(move |dispatcher| {
            assert!(dispatcher.is_dispatcher_thread());
            ran.lock().unwrap().push(left);
            if left > 1 {
                chain(again, left - 1, ran);
            }
        });
    }
    let dispatcher = Dispatcher::new("chain").unwrap();
    let ran = Arc::new(Mutex::new(Vec::new()));
    chain(dispatcher.handle(), EXIT_DRAIN_ROUNDS, Arc::clone(&ran));
    dispatcher.exit();
    dispatcher.run().unwrap();
    assert_eq!(ran.lock().unwrap().len(), EXIT_DRAIN_ROUNDS);
    assert_eq!(dispatcher.posts_dropped_at_exit(), 0);
}
