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

#[test]
fn the_init_hook_runs_on_the_worker_and_its_error_fails_start() {
    let (sender, receiver) = mpsc::channel();
    let mut worker = Worker::with_init("hooked", move |dispatcher| {
        sender
            .send((
                dispatcher.name().to_owned(),
                dispatcher.is_dispatcher_thread(),
            ))
            .unwrap();
        Ok(())
    });
    worker.start().unwrap();
    assert_eq!(
        receiver.try_recv(),
        Ok(("hooked".to_owned(), true)),
        "ran before start returned"
    );
    worker.stop();

    let mut pool = WorkerPool::with_init(2, |index, _| {
        if index == 1 {
            Err(io::Error::other("no listener for worker 1"))
        } else {
            Ok(())
        }
    });
    match pool.start() {
        Err(WorkerError::Start(error)) => assert_eq!(error.to_string(), "no listener for worker 1"),
        other => panic!("expected the hook's error, got {other:?}"),
    }
    assert!(
        !pool.workers().iter().any(Worker::is_running),
        "the started one is stopped again"
    );
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
    assert_eq!(receiver.recv().unwrap(), "worker_1");
    pool.stop();
    assert_eq!(pool.handled_counts(), vec![0, 1]);
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
        receiver.recv().unwrap(),
        3,
        "on_complete saw all three callbacks"
    );
    assert!(receiver.recv().is_err(), "and ran exactly once");
    assert!(pool.all_running(), "the panic did not kill worker_1");
    pool.stop();
}

#[test]
fn two_workers_each_handle_one_request_for_a_total_of_two() {
    let mut pool = WorkerPool::new(2);
    assert_eq!(pool.worker_count(), 2, "pool created with 2 workers");
    pool.start().unwrap();
    assert!(pool.all_running(), "all workers ready after start()");
    let (sender, receiver) = mpsc::channel();
    for index in 0..2 {
        let sender = sender.clone();
        pool.post_to(index, move || sender.send(index).unwrap())
            .unwrap();
    }
    let mut ran: Vec<usize> = receiver.iter().take(2).collect();
    ran.sort();
    assert_eq!(ran, [0, 1]);
    pool.stop();
    assert!(!pool.all_running(), "workers stopped gracefully");
    assert_eq!(
        pool.handled_counts(),
        vec![1, 1],
        "each worker processed work"
    );
    assert_eq!(pool.total_handled(), 2, "total requests is 2");
}
