//! Unit tests of `worker`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;
use std::collections::HashSet;
use std::sync::Barrier;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Generous: only a hang guard.
const HANG_GUARD: Duration = Duration::from_secs(30);

fn all_running(pool: &WorkerPool) -> bool {
    pool.workers().iter().all(Worker::is_running)
}

fn none_running(pool: &WorkerPool) -> bool {
    !pool.workers().iter().any(Worker::is_running)
}

#[test]
fn pool_of_two_starts_runs_work_on_both_threads_at_once_and_stops() {
    let mut pool = WorkerPool::new(2);
    assert_eq!(pool.worker_count(), 2);
    assert!(none_running(&pool), "not started yet");
    assert!(matches!(
        pool.post_to_with(0, |_| {}),
        Err(WorkerError::NotRunning)
    ));
    pool.start().unwrap();
    assert!(all_running(&pool), "all workers are ready after start");
    assert!(matches!(pool.start(), Err(WorkerError::AlreadyStarted)));

    // Both workers block on one barrier: this proves the work ran on two different threads
    // at the same time, each in its own worker.
    let barrier = Arc::new(Barrier::new(2));
    let (sender, receiver) = mpsc::channel();
    for index in 0..2 {
        let (barrier, sender) = (Arc::clone(&barrier), sender.clone());
        pool.post_to_with(index, move |dispatcher| {
            barrier.wait();
            let thread = thread::current().name().unwrap().to_owned();
            sender.send((thread, dispatcher.name().to_owned())).unwrap();
        })
        .unwrap();
    }
    let names: HashSet<(String, String)> = receiver.iter().take(2).collect();
    assert_eq!(
        names,
        HashSet::from([
            ("worker_0".to_owned(), "worker_0".to_owned()),
            ("worker_1".to_owned(), "worker_1".to_owned())
        ]),
        "each worker's work ran on its own thread, with its own dispatcher"
    );
    assert!(matches!(
        pool.post_to_with(2, |_| {}),
        Err(WorkerError::NoSuchWorker { index: 2, count: 2 })
    ));
    let tids: HashSet<i32> = pool
        .workers()
        .iter()
        .filter_map(Worker::thread_id)
        .collect();
    assert_eq!(tids.len(), 2);
    assert!(!tids.contains(&sys::gettid()));

    pool.stop();
    assert!(none_running(&pool), "workers stopped and joined");
    assert!(matches!(
        pool.post_to_with(0, |_| {}),
        Err(WorkerError::NotRunning)
    ));
}

#[test]
fn a_panicking_callback_does_not_kill_the_worker() {
    let mut pool = WorkerPool::new(1);
    pool.start().unwrap();
    pool.post_to_with(0, |_| panic!("deliberate")).unwrap();
    let (sender, receiver) = mpsc::channel();
    pool.post_to_with(0, move |_| sender.send(()).unwrap())
        .unwrap();
    assert_eq!(
        receiver.recv_timeout(HANG_GUARD),
        Ok(()),
        "the worker ran the next post after the panic"
    );
    assert!(all_running(&pool), "the panic was caught on the worker");
    pool.stop();
}

#[test]
fn work_posted_before_stop_has_run_when_stop_returns() {
    let mut pool = WorkerPool::new(1);
    pool.start().unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    for _ in 0..100 {
        let ran = Arc::clone(&ran);
        pool.post_to_with(0, move |_| {
            ran.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    pool.stop();
    // The join in `stop` orders every increment before this load.
    assert_eq!(ran.load(Ordering::Relaxed), 100);
}

#[test]
fn a_pool_has_at_least_one_worker() {
    assert_eq!(WorkerPool::new(0).worker_count(), 1);
}

#[test]
fn post_with_hands_the_worker_its_own_dispatcher() {
    let mut pool = WorkerPool::new(2);
    pool.start().unwrap();
    let (sender, receiver) = mpsc::channel();
    pool.post_to_with(1, move |dispatcher| {
        // A timer made here belongs to the worker's loop; it fires there.
        // The timer owns itself until it fires, then drops itself from its own callback.
        let holder: std::rc::Rc<std::cell::RefCell<Option<crate::Timer>>> = Default::default();
        let in_callback = std::rc::Rc::clone(&holder);
        let timer = dispatcher.create_timer(move |dispatcher| {
            sender.send(dispatcher.name().to_owned()).unwrap();
            in_callback.borrow_mut().take();
        });
        timer.enable(std::time::Duration::ZERO);
        *holder.borrow_mut() = Some(timer);
    })
    .unwrap();
    assert_eq!(receiver.recv_timeout(HANG_GUARD).unwrap(), "worker_1");
    pool.stop();
}

#[test]
fn run_on_all_workers_needs_every_worker_running() {
    let pool = WorkerPool::new(2);
    let (sender, receiver) = mpsc::channel::<()>();
    assert!(matches!(
        pool.run_on_all_workers(|_| {}, move || sender.send(()).unwrap()),
        Err(WorkerError::NotRunning)
    ));
    assert!(
        receiver.recv().is_err(),
        "on_complete was dropped, never run"
    );
}

#[test]
fn run_on_all_workers_completes_once_after_every_worker_even_if_one_callback_panics() {
    let mut pool = WorkerPool::new(3);
    pool.start().unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let (sender, receiver) = mpsc::channel();
    let (counter, total) = (Arc::clone(&ran), Arc::clone(&ran));
    pool.run_on_all_workers(
        move |dispatcher| {
            counter.fetch_add(1, Ordering::Relaxed);
            assert_ne!(
                dispatcher.name(),
                "worker_1",
                "deliberate: caught on the worker"
            );
        },
        move || sender.send(total.load(Ordering::Relaxed)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        receiver.recv_timeout(HANG_GUARD),
        Ok(3),
        "on_complete saw all three callbacks"
    );
    assert!(receiver.recv().is_err(), "and ran exactly once");
    assert!(all_running(&pool), "the panic did not kill worker_1");
    pool.stop();
}

#[test]
fn two_workers_each_handle_one_request_for_a_total_of_two() {
    let mut pool = WorkerPool::new(2);
    assert_eq!(pool.worker_count(), 2, "pool created with 2 workers");
    pool.start().unwrap();
    assert!(all_running(&pool), "all workers ready after start()");
    // Each request counts itself on the worker that ran it, told apart by its dispatcher.
    let handled: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    for index in 0..2 {
        let handled = Arc::clone(&handled);
        pool.post_to_with(index, move |dispatcher| {
            let worker: usize = dispatcher.name()["worker_".len()..].parse().unwrap();
            handled[worker].fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    pool.stop();
    assert!(none_running(&pool), "workers stopped gracefully");
    // The joins in `stop` order every increment before these loads.
    let counts = handled
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect::<Vec<_>>();
    assert_eq!(counts, vec![1, 1], "each worker processed work");
    assert_eq!(counts.iter().sum::<u64>(), 2, "total requests is 2");
}
