//! Thread-local slots across a worker pool: registration, per-thread values, and shutdown.
//! (Updates still in flight when a slot is dropped are tested in the crate's `slot::tests`,
//! which can see the slot's index.)

use std::sync::{Arc, mpsc};

use eventloop::{Slot, SlotError, ThreadLocal, WorkerPool};

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
    let mut pool = started_pool();
    let tls = ThreadLocal::new();
    for dispatcher in pool.dispatchers() {
        tls.register_thread(dispatcher).unwrap();
    }
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
fn registration_and_slots_belong_to_the_main_thread() {
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
    // The refused registration left worker 1 out: a value set now reaches worker 0 only.
    slot.set(|| 7).unwrap();
    let reader = Arc::clone(&slot);
    assert_eq!(
        on_each_worker(&pool, move || reader.get().map(|value| *value)),
        vec![Some(7), None]
    );
    drop(slot);
    pool.stop();
}

#[test]
fn one_registered_thread_gets_its_value_and_shutdown_completes() {
    // Two workers, one of them registered: what the registered one gets and the other does not
    // shows that exactly one thread is registered.
    let mut pool = started_pool();
    let tls = ThreadLocal::new();
    tls.register_thread(pool.dispatchers()[0].clone()).unwrap();
    let slot: Arc<Slot<String>> = Arc::new(
        tls.allocate_slot()
            .expect("instance created, not shut down: it allocates"),
    );
    slot.set(thread_name).unwrap();
    let reader = Arc::clone(&slot);
    assert_eq!(
        on_each_worker(&pool, move || reader.get().map(|value| value.to_string())),
        vec![Some("worker_0".to_owned()), None],
        "slot allocated and set on the 1 registered thread, and on no other"
    );
    tls.shutdown_global().unwrap();
    let reader = Arc::clone(&slot);
    assert_eq!(
        on_each_worker(&pool, move || reader.get().is_none()),
        vec![true, true]
    );
    assert_eq!(slot.get(), None);
    assert_eq!(
        slot.set(thread_name),
        Err(SlotError::ShutDown),
        "shutdown completed"
    );
    assert!(matches!(
        tls.allocate_slot::<u8>(),
        Err(SlotError::ShutDown)
    ));
    drop(slot);
    pool.stop();
}
