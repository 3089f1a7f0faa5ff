//! The failure modes of a worker's life and death, as Envoy's history records them: an exit that
//! never ends, a value whose drop runs after its thread's locals are gone, and a worker whose
//! thread died while the pool still reports it running.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use eventloop::{Slot, ThreadLocal, Worker, WorkerError, WorkerPool};

/// Generous: only a hang guard. A bounded exit drain returns in microseconds.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Whether every worker of `pool` is running.
fn all_running(pool: &WorkerPool) -> bool {
    pool.workers().iter().all(Worker::is_running)
}

/// A started pool of `count` workers, every one registered with a new `ThreadLocal`.
fn started_pool_with_tls(count: usize) -> (WorkerPool, ThreadLocal) {
    let mut pool = WorkerPool::new(count);
    pool.start().unwrap();
    let tls = ThreadLocal::new();
    for dispatcher in pool.dispatchers() {
        tls.register_thread(dispatcher).unwrap();
    }
    (pool, tls)
}

/// Posts itself again every time it runs, until `stop_reposting` is set.
fn repost_forever(
    handle: eventloop::DispatcherHandle,
    runs: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let again = handle.clone();
    handle.post(move || {
        runs.fetch_add(1, Ordering::Relaxed);
        if !stop.load(Ordering::Relaxed) {
            repost_forever(again, runs, stop);
        }
    });
}

#[test]
fn stop_returns_even_if_a_callback_keeps_reposting_itself() {
    let mut pool = WorkerPool::new(1);
    pool.start().unwrap();
    let (runs, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    repost_forever(
        pool.workers()[0].dispatcher().unwrap().clone(),
        Arc::clone(&runs),
        Arc::clone(&stop),
    );
    // `stop` runs on a scoped thread, so a hang is reported (and then ended) rather than
    // hanging the test binary: on timeout the callback is told to stop reposting.
    let returned = std::thread::scope(|scope| {
        let (done_sender, done) = mpsc::channel();
        let pool = &mut pool;
        scope.spawn(move || {
            pool.stop();
            let _ = done_sender.send(());
        });
        let returned = done.recv_timeout(HANG_GUARD).is_ok();
        stop.store(true, Ordering::Relaxed);
        returned
    });
    assert!(
        returned,
        "WorkerPool::stop hung: the exit drain ran {} reposts without returning",
        runs.load(Ordering::Relaxed)
    );
    assert!(!pool.workers()[0].is_running());
}

/// A value whose drop reads another slot, as a stats sink that flushes into a shared cache
/// would.
struct ReadsASlotOnDrop {
    other: Arc<Slot<u32>>,
    seen: mpsc::Sender<Option<u32>>,
}

impl Drop for ReadsASlotOnDrop {
    fn drop(&mut self) {
        let _ = self.seen.send(self.other.get().map(|value| *value));
    }
}

#[test]
fn a_pool_stopped_before_the_slots_shutdown_tears_its_values_down_without_aborting() {
    let (mut pool, tls) = started_pool_with_tls(2);
    // Allocated first, so a reverse-order teardown drops `reader` before `other`.
    let other: Arc<Slot<u32>> = Arc::new(tls.allocate_slot().unwrap());
    let reader: Slot<ReadsASlotOnDrop> = tls.allocate_slot().unwrap();
    other.set(|| 7).unwrap();
    let (seen_sender, seen) = mpsc::channel();
    let seen_sender = std::sync::Mutex::new(seen_sender);
    let other_for_init = Arc::clone(&other);
    reader
        .set(move || ReadsASlotOnDrop {
            other: Arc::clone(&other_for_init),
            seen: seen_sender.lock().unwrap().clone(),
        })
        .unwrap();
    // The workers exit with both values still installed: their teardown runs at thread exit.
    pool.stop();
    let mut on_workers: Vec<Option<u32>> = seen.try_iter().collect();
    assert_eq!(
        on_workers,
        vec![Some(7), Some(7)],
        "each worker dropped its value while the slot it reads was still there"
    );
    tls.shutdown_global().unwrap();
    on_workers.extend(seen.try_iter());
    assert_eq!(on_workers.len(), 3, "and the main thread's at shutdown");
    drop(reader);
}

#[test]
fn a_panicking_slot_initialiser_is_caught_and_the_worker_keeps_serving() {
    let (mut pool, tls) = started_pool_with_tls(2);
    let slot: Arc<Slot<u32>> = Arc::new(tls.allocate_slot().unwrap());
    // Panics on the workers only; the main thread's value is built fine.
    slot.set(|| {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        assert!(!name.starts_with("worker_"), "no value on {name}");
        1
    })
    .unwrap();
    assert!(all_running(&pool));
    for index in 0..pool.worker_count() {
        let (sender, receiver) = mpsc::channel();
        let reader = Arc::clone(&slot);
        pool.post_to_with(index, move |_| sender.send(reader.get().is_none()).unwrap())
            .unwrap();
        assert_eq!(
            receiver.recv_timeout(HANG_GUARD),
            Ok(true),
            "worker {index} survived its failed initialiser and has no value"
        );
    }
    assert_eq!(
        slot.failed_initialisations(),
        2,
        "one failure on each worker"
    );
    assert!(all_running(&pool));
    tls.shutdown_global().unwrap();
    pool.stop();
}

/// Sends its thread's name when dropped.
struct SignalsOnDrop(mpsc::Sender<String>);

impl Drop for SignalsOnDrop {
    fn drop(&mut self) {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let _ = self.0.send(thread);
    }
}

#[test]
fn a_worker_whose_thread_died_is_not_running_and_refuses_posts() {
    // A slot value on each worker tells us when a worker's thread has torn itself down, which
    // it does after it has marked itself dead.
    let (mut pool, tls) = started_pool_with_tls(2);
    let (torn_down_sender, torn_down) = mpsc::channel();
    let torn_down_sender = std::sync::Mutex::new(torn_down_sender);
    let signal: Slot<SignalsOnDrop> = tls.allocate_slot().unwrap();
    signal
        .set(move || SignalsOnDrop(torn_down_sender.lock().unwrap().clone()))
        .unwrap();

    // A raw post through the dispatcher handle has no panic catch: it unwinds out of the loop
    // and ends the thread.
    let handle = pool.workers()[1].dispatcher().unwrap().clone();
    handle.post(|| panic!("deliberate: kills the worker's loop"));
    assert_eq!(
        torn_down.recv_timeout(HANG_GUARD).as_deref(),
        Ok("worker_1")
    );

    assert!(!all_running(&pool), "a dead worker is not running");
    assert!(!pool.workers()[1].is_running());
    assert!(pool.workers()[1].dispatcher().is_none());
    assert!(pool.workers()[0].is_running());
    // The refused work comes back as an error, not as a silent drop: it never runs.
    let refused_ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&refused_ran);
    assert!(matches!(
        pool.post_to_with(1, move |_| flag.store(true, Ordering::Relaxed)),
        Err(WorkerError::Died { .. })
    ));
    assert!(pool.run_on_all_workers(|_| {}, || {}).is_err());
    // The live worker still serves.
    let (served_sender, served) = mpsc::channel();
    pool.post_to_with(0, move |_| served_sender.send(()).unwrap())
        .unwrap();
    assert_eq!(served.recv_timeout(HANG_GUARD), Ok(()));
    tls.shutdown_global().unwrap();
    pool.stop();
    assert!(!refused_ran.load(Ordering::Relaxed));
    drop(signal);
}

/// Records its name when dropped.
struct RecordsDrop {
    name: &'static str,
    dropped: Arc<std::sync::Mutex<Vec<(String, &'static str)>>>,
}

impl Drop for RecordsDrop {
    fn drop(&mut self) {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.dropped.lock().unwrap().push((thread, self.name));
    }
}

#[test]
fn a_worker_tears_its_slots_down_in_reverse_order_at_exit() {
    let (mut pool, tls) = started_pool_with_tls(1);
    let dropped = Arc::new(std::sync::Mutex::new(Vec::new()));
    let slots: Vec<Slot<RecordsDrop>> = ["first", "second", "third"]
        .into_iter()
        .map(|name| {
            let slot = tls.allocate_slot().unwrap();
            let dropped = Arc::clone(&dropped);
            slot.set(move || RecordsDrop {
                name,
                dropped: Arc::clone(&dropped),
            })
            .unwrap();
            slot
        })
        .collect();
    pool.stop();
    let on_worker: Vec<&str> = dropped
        .lock()
        .unwrap()
        .iter()
        .filter(|(thread, _)| thread == "worker_0")
        .map(|(_, name)| *name)
        .collect();
    assert_eq!(on_worker, ["third", "second", "first"]);
    tls.shutdown_global().unwrap();
    drop(slots);
}
