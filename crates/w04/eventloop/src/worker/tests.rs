//! Unit tests of `worker`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;
use std::collections::HashSet;
use std::sync::Barrier;

#[test]
fn pool_of_two_starts_counts_work_and_stops() {
    let mut pool = WorkerPool::new(2);
    assert_eq!(pool.worker_count(), 2);
    assert!(!pool.all_running(), "not started yet");
    assert!(matches!(pool.post(|| {}), Err(WorkerError::NotRunning)));
    pool.start().unwrap();
    assert!(pool.all_running(), "all workers are ready after start");
    assert!(matches!(pool.start(), Err(WorkerError::AlreadyStarted)));

    // Both workers block on one barrier: this proves the work ran on two different threads
    // at the same time, each in its own worker.
    let barrier = Arc::new(Barrier::new(2));
    let (sender, receiver) = mpsc::channel();
    for _ in 0..2 {
        let (barrier, sender) = (Arc::clone(&barrier), sender.clone());
        pool.post(move || {
            barrier.wait();
            sender
                .send(thread::current().name().unwrap().to_owned())
                .unwrap();
        })
        .unwrap();
    }
    let names: HashSet<String> = receiver.iter().take(2).collect();
    assert_eq!(
        names,
        HashSet::from(["worker_0".to_owned(), "worker_1".to_owned()])
    );
    pool.post_to(1, || {}).unwrap();
    assert!(matches!(
        pool.post_to(2, || {}),
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
    assert!(!pool.all_running(), "workers stopped and joined");
    assert_eq!(
        pool.handled_counts(),
        vec![1, 2],
        "each worker processed its posted work"
    );
    assert_eq!(pool.total_handled(), 3);
}

#[test]
fn a_panicking_callback_does_not_kill_the_worker() {
    let mut worker = Worker::new("sturdy");
    worker.start().unwrap();
    worker.post(|| panic!("deliberate")).unwrap();
    let (sender, receiver) = mpsc::channel();
    worker.post(move || sender.send(()).unwrap()).unwrap();
    receiver.recv().unwrap();
    worker.stop();
    assert_eq!(worker.handled_count(), 2);
    assert!(matches!(worker.post(|| {}), Err(WorkerError::NotRunning)));
}

#[test]
fn work_posted_before_stop_has_run_when_stop_returns() {
    let mut worker = Worker::new("drain");
    worker.start().unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    for _ in 0..100 {
        let ran = Arc::clone(&ran);
        worker
            .post(move || {
                ran.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    }
    worker.stop();
    assert_eq!(ran.load(Ordering::Relaxed), 100);
    assert_eq!(worker.handled_count(), 100);
}

#[test]
fn cpu_count_pool_has_at_least_one_worker() {
    assert!(WorkerPool::with_cpu_count().worker_count() >= 1);
    assert_eq!(
        WorkerPool::default().worker_count(),
        WorkerPool::with_cpu_count().worker_count()
    );
    assert_eq!(WorkerPool::new(0).worker_count(), 1);
}
