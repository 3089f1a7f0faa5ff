//! Thread-local slots across a worker pool: registration, per-thread values, updates in flight
//! when a slot is dropped, and shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use eventloop::{Slot, SlotError, ThreadLocal, WorkerPool};

/// Slot indices are process-wide, and one test checks that a freed index is reused; the tests
/// of this file take this lock so that no other test allocates in between.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poison| poison.into_inner())
}

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
        pool.post_to(index, move || sender.send((index, read())).unwrap())
            .unwrap();
    }
    drop(sender);
    let mut results: Vec<(usize, R)> = receiver.iter().collect();
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

fn started_pool() -> WorkerPool {
    let mut pool = WorkerPool::new(2);
    pool.start().unwrap();
    pool
}

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

#[test]
fn each_thread_sees_its_own_value_and_shutdown_is_clean() {
    let _serial = serial();
    let mut pool = started_pool();
    let tls = ThreadLocal::new();
    for dispatcher in pool.dispatchers() {
        tls.register_thread(dispatcher).unwrap();
    }
    assert_eq!(tls.registered_thread_count(), 2);
    let slot: Arc<Slot<String>> = Arc::new(tls.allocate_slot().unwrap());
    assert_eq!(slot.get(), None, "nothing set yet");
    slot.set(thread_name).unwrap();
    assert_eq!(
        slot.get().as_deref().map(String::as_str),
        Some(thread_name().as_str()),
        "main thread"
    );
    let reader = Arc::clone(&slot);
    let seen = on_each_worker(&pool, move || reader.get().map(|value| value.to_string()));
    assert_eq!(
        seen,
        vec![Some("worker_0".to_owned()), Some("worker_1".to_owned())]
    );

    // A second set replaces every thread's value.
    slot.set(|| format!("v2 on {}", thread_name())).unwrap();
    let reader = Arc::clone(&slot);
    let seen = on_each_worker(&pool, move || reader.get().map(|value| value.to_string()));
    assert_eq!(
        seen,
        vec![
            Some("v2 on worker_0".to_owned()),
            Some("v2 on worker_1".to_owned())
        ]
    );

    tls.shutdown_global().unwrap();
    assert!(tls.is_shut_down());
    assert_eq!(slot.get(), None, "the main thread's value is gone");
    let reader = Arc::clone(&slot);
    assert_eq!(
        on_each_worker(&pool, move || reader.get().is_none()),
        vec![true, true]
    );
    assert_eq!(slot.set(thread_name), Err(SlotError::ShutDown));
    assert!(matches!(
        tls.allocate_slot::<u8>(),
        Err(SlotError::ShutDown)
    ));
    drop(slot);
    pool.stop();
}

#[test]
fn dropping_a_slot_with_updates_in_flight_installs_nothing_and_confuses_no_later_slot() {
    let _serial = serial();
    let mut pool = started_pool();
    let tls = ThreadLocal::new();
    for dispatcher in pool.dispatchers() {
        tls.register_thread(dispatcher).unwrap();
    }
    // Hold both workers inside a callback, so the updates below stay queued.
    let (release_sender, release_receiver) = mpsc::channel::<()>();
    let release_receiver = Arc::new(std::sync::Mutex::new(release_receiver));
    let (blocked_sender, blocked_receiver) = mpsc::channel();
    for index in 0..2 {
        let (release, blocked) = (Arc::clone(&release_receiver), blocked_sender.clone());
        pool.post_to(index, move || {
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
    let old_index = old.index();
    drop(old);
    // The freed index is reused at once by a new slot of another type.
    let new: Arc<Slot<String>> = Arc::new(tls.allocate_slot().unwrap());
    assert_eq!(new.index(), old_index, "the index is reused");
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

#[test]
fn registration_and_slots_belong_to_the_main_thread() {
    let _serial = serial();
    let mut pool = started_pool();
    let tls = Arc::new(ThreadLocal::new());
    tls.register_thread(pool.dispatchers()[0].clone()).unwrap();
    let slot: Arc<Slot<u32>> = Arc::new(tls.allocate_slot().unwrap());
    assert_eq!(
        tls.register_thread(pool.dispatchers()[1].clone()),
        Err(SlotError::SlotsAlreadyAllocated)
    );
    let (tls_there, slot_there) = (Arc::clone(&tls), Arc::clone(&slot));
    let errors = on_each_worker(&pool, move || {
        (
            slot_there.set(|| 7).err(),
            tls_there.allocate_slot::<u8>().err().is_some(),
            tls_there.shutdown_global().err(),
        )
    });
    for error in errors {
        assert_eq!(
            error,
            (
                Some(SlotError::NotMainThread),
                true,
                Some(SlotError::NotMainThread)
            )
        );
    }
    assert_eq!(tls.registered_thread_count(), 1);
    drop(slot);
    pool.stop();
}

#[test]
fn one_registered_thread_gets_its_value_and_shutdown_completes() {
    let _serial = serial();
    let mut pool = WorkerPool::new(1);
    pool.start().unwrap();
    let tls = ThreadLocal::new();
    assert!(!tls.is_shut_down(), "instance created");
    tls.register_thread(pool.dispatchers()[0].clone()).unwrap();
    assert_eq!(tls.registered_thread_count(), 1, "1 registered thread");
    let slot: Arc<Slot<String>> = Arc::new(tls.allocate_slot().unwrap());
    slot.set(thread_name).unwrap();
    let reader = Arc::clone(&slot);
    assert_eq!(
        on_each_worker(&pool, move || reader.get().map(|value| value.to_string())),
        vec![Some("worker_0".to_owned())],
        "slot allocated and set on the registered thread"
    );
    tls.shutdown_global().unwrap();
    assert!(tls.is_shut_down(), "shutdown completed");
    let reader = Arc::clone(&slot);
    assert_eq!(
        on_each_worker(&pool, move || reader.get().is_none()),
        vec![true]
    );
    drop(slot);
    pool.stop();
}
