//! Unit tests of `slot`, in a file of their own so the course's starter code can declare them and
//! run these very tests against a student's code.
//!
//! Here rather than in `tests/slots.rs` because they check the slot's index, which is not public:
//! a freed index is reused by the next slot, and the new slot still sees nothing of the old one's.
//! Slot indices are process-wide; no other unit test of the crate allocates slots, so none can
//! take a freed index in between.

use super::*;
use crate::WorkerPool;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

/// Runs `read` on every worker (posted, so it runs after everything posted before it) and
/// returns the results in worker order.
fn on_each_worker<R: Send + 'static>(
    pool: &WorkerPool,
    read: impl Fn() -> R + Send + Sync + 'static,
) -> Vec<R> {
    let read = Arc::new(read);
    let (sender, receiver) = mpsc::channel();
    for index in 0..pool.worker_count() {
        let (read, sender) = (Arc::clone(&read), sender.clone());
        pool.post_to_with(index, move |_| sender.send((index, read())).unwrap())
            .unwrap();
    }
    drop(sender);
    let mut results: Vec<(usize, R)> = receiver.iter().collect();
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[test]
fn dropping_a_slot_with_updates_in_flight_installs_nothing_and_confuses_no_later_slot() {
    let mut pool = WorkerPool::new(2);
    pool.start().unwrap();
    let tls = ThreadLocal::new();
    for dispatcher in pool.dispatchers() {
        tls.register_thread(dispatcher).unwrap();
    }
    // Hold both workers inside a callback, so the updates below stay queued.
    let (release_sender, release_receiver) = mpsc::channel::<()>();
    let release_receiver = Arc::new(Mutex::new(release_receiver));
    let (blocked_sender, blocked_receiver) = mpsc::channel();
    for index in 0..2 {
        let (release, blocked) = (Arc::clone(&release_receiver), blocked_sender.clone());
        pool.post_to_with(index, move |_| {
            blocked.send(()).unwrap();
            release.lock().unwrap().recv().unwrap();
        })
        .unwrap();
    }
    blocked_receiver.iter().take(2).for_each(drop);

    let old_inits = Arc::new(AtomicUsize::new(0));
    let old: Slot<u64> = tls.allocate_slot().unwrap();
    let counter = Arc::clone(&old_inits);
    old.set(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        1
    })
    .unwrap();
    let old_index = old.shared.index;
    drop(old);
    // The freed index is reused at once by a new slot of another type.
    let new: Arc<Slot<String>> = Arc::new(tls.allocate_slot().unwrap());
    assert_eq!(new.shared.index, old_index, "the index is reused");
    assert_eq!(
        new.get(),
        None,
        "the old slot's main-thread value is not visible"
    );

    release_sender.send(()).unwrap();
    release_sender.send(()).unwrap();
    let reader = Arc::clone(&new);
    assert_eq!(
        on_each_worker(&pool, move || reader.get().is_none()),
        vec![true, true]
    );
    assert_eq!(
        old_inits.load(Ordering::SeqCst),
        1,
        "the dropped slot's initialiser ran only on main"
    );

    new.set(|| "new".to_owned()).unwrap();
    let reader = Arc::clone(&new);
    let seen = on_each_worker(&pool, move || reader.get().map(|value| value.to_string()));
    assert_eq!(seen, vec![Some("new".to_owned()), Some("new".to_owned())]);
    drop(new);
    tls.shutdown_global().unwrap();
    pool.stop();
}
