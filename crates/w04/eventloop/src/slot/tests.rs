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

/// On how many workers `holds` is true, asked on every worker at once with the pool's own
/// `run_on_all_workers` (posted, so each runs after everything posted to its worker before).
fn workers_where(pool: &WorkerPool, holds: impl Fn() -> bool + Send + Sync + 'static) -> usize {
    let count = Arc::new(AtomicUsize::new(0));
    let (done_sender, done) = mpsc::channel();
    let counter = Arc::clone(&count);
    pool.run_on_all_workers(
        move |_| {
            if holds() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        },
        move || done_sender.send(()).unwrap(),
    )
    .unwrap();
    done.recv().unwrap();
    count.load(Ordering::SeqCst)
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
        workers_where(&pool, move || reader.get().is_none()),
        2,
        "no worker sees the old slot's value"
    );
    assert_eq!(
        old_inits.load(Ordering::SeqCst),
        1,
        "the dropped slot's initialiser ran only on main"
    );

    new.set(|| "new".to_owned()).unwrap();
    let reader = Arc::clone(&new);
    assert_eq!(
        workers_where(&pool, move || reader
            .get()
            .is_some_and(|value| *value == "new")),
        2,
        "every worker sees the new slot's value"
    );
    drop(new);
    tls.shutdown_global().unwrap();
    pool.stop();
}
