//! Unit tests of the pool. They live inside the crate so they can observe internal facts (a
//! producer registered as blocked, workers announced as sleeping, where a spawned task landed)
//! and synchronise on those facts rather than on sleeps. Threads are recognised in
//! `/proc/self/task` by their unique name prefixes, so tests running in parallel in this process
//! do not disturb each other's measurements.

use super::*;
use std::collections::HashSet;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
// Not under Miri, which does not emulate /proc: the tests that read it are left out there.
#[cfg(not(miri))]
use test_support::Proc;

/// How long a test waits for another thread to reach a state before declaring a hang.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Spins (yielding) until `condition` holds, panicking with `what` after the hang guard.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// A gate tasks can wait on: opened once, from the test thread.
#[derive(Default)]
struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Occupies every worker of `pool` with a task that reports its start and waits on the returned
/// gate; returns once all of them are running.
fn occupy_all_workers(pool: &ThreadPool) -> Arc<Gate> {
    let gate = Arc::new(Gate::default());
    let started = Arc::new(Barrier::new(pool.worker_count() + 1));
    for _ in 0..pool.worker_count() {
        let gate = Arc::clone(&gate);
        let started = Arc::clone(&started);
        // Every worker must take one of these: each blocks its worker until all have started.
        pool.spawn(move || {
            started.wait();
            gate.wait();
        })
        .unwrap_or_else(|_| panic!("the pool is running"));
    }
    started.wait();
    gate
}

#[test]
fn twenty_tasks_over_four_workers_run_on_at_most_four_threads() {
    let pool = ThreadPool::builder()
        .workers(4)
        .thread_name("l02-proof")
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for task in 0..20 {
        let tx = tx.clone();
        pool.spawn(move || {
            let current = thread::current();
            tx.send((task, current.id(), current.name().map(str::to_owned)))
                .unwrap();
        })
        .unwrap_or_else(|_| panic!("the pool is running"));
    }
    drop(tx);
    let reports: Vec<_> = rx.iter().collect();
    assert_eq!(reports.len(), 20);
    let tasks: HashSet<_> = reports.iter().map(|(task, _, _)| *task).collect();
    assert_eq!(tasks.len(), 20, "every task ran once");
    let threads: HashSet<_> = reports.iter().map(|(_, id, _)| *id).collect();
    assert!(
        (1..=4).contains(&threads.len()),
        "ran on {} threads",
        threads.len()
    );
    assert!(!threads.contains(&thread::current().id()));
    for (_, _, name) in &reports {
        let name = name.as_deref().expect("workers are named");
        assert!(
            name.starts_with("l02-proof-"),
            "unexpected worker name {name}"
        );
    }
}

// Reads /proc/self/task, which Miri does not emulate.
#[cfg(not(miri))]
#[test]
fn build_returns_with_every_worker_running_and_named() {
    let pool = ThreadPool::builder()
        .workers(3)
        .thread_name("buildready")
        .build()
        .unwrap();
    let mut names: Vec<String> = Proc::this()
        .threads_named("buildready-")
        .into_iter()
        .map(|tid| Proc::this().thread_name(tid))
        .collect();
    names.sort();
    assert_eq!(names, ["buildready-0", "buildready-1", "buildready-2"]);
    drop(pool);
}

// Reads /proc/self/task, which Miri does not emulate.
#[cfg(not(miri))]
#[test]
fn shutdown_with_ten_thousand_queued_tasks_runs_all_and_joins() {
    const TASKS: usize = 10_000;
    let pool = Arc::new(
        ThreadPool::builder()
            .workers(2)
            .capacity(TASKS)
            .thread_name("shutjoin")
            .build()
            .unwrap(),
    );
    let worker_tids = Proc::this().threads_named("shutjoin-");
    assert_eq!(worker_tids.len(), 2);
    let gate = occupy_all_workers(&pool);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..TASKS {
        let ran = Arc::clone(&ran);
        pool.try_spawn(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap_or_else(|_| panic!("capacity is exactly the number of tasks"));
    }
    assert_eq!(pool.stats().queued, TASKS);
    assert_eq!(pool.stats().busy, 2);

    // Shut down while every task is still queued; the shutdown must wait for all of them.
    let shutter = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || pool.shutdown())
    };
    wait_until("shutdown has begun", || pool.is_shut_down());
    assert!(pool.try_spawn(|| ()).unwrap_err().is_shut_down());
    assert_eq!(
        ran.load(Ordering::Relaxed),
        0,
        "the workers are still gated"
    );
    gate.open();
    shutter.join().unwrap();

    assert_eq!(
        ran.load(Ordering::Relaxed),
        TASKS,
        "every accepted task ran"
    );
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.busy), (0, 0));
    assert_eq!(stats.completed, TASKS as u64 + 2);
    // The worker threads are gone: joined, their handles consumed, their shared state released,
    // and (once the kernel reaps them, which follows the join) absent from /proc.
    assert!(pool.threads.lock().unwrap().is_empty());
    assert_eq!(Arc::strong_count(&pool.shared), 1);
    wait_until("the worker threads leave /proc", || {
        worker_tids.iter().all(|&tid| !Proc::this().has_thread(tid))
    });
    pool.shutdown(); // Twice is harmless.
}

#[test]
fn drop_shuts_down_runs_accepted_tasks_and_joins() {
    let ran = Arc::new(AtomicUsize::new(0));
    let pool = ThreadPool::builder()
        .workers(2)
        .thread_name("dropjoin")
        .build()
        .unwrap();
    let shared = Arc::clone(&pool.shared);
    for _ in 0..100 {
        let ran = Arc::clone(&ran);
        pool.spawn(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap_or_else(|_| panic!("the pool is running"));
    }
    drop(pool);
    assert_eq!(ran.load(Ordering::Relaxed), 100);
    assert_eq!(
        Arc::strong_count(&shared),
        1,
        "no worker holds the pool any more"
    );
}

// Reads /proc/self/task, which Miri does not emulate.
#[cfg(not(miri))]
#[test]
fn panics_leave_the_pool_whole_and_reach_on_done() {
    let pool = ThreadPool::builder()
        .workers(1)
        .thread_name("panics")
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let report =
        move |tx: mpsc::Sender<Result<u32, TaskPanic>>| move |outcome| tx.send(outcome).unwrap();
    pool.spawn_with(|| -> u32 { panic!("static message") }, report(tx.clone()))
        .unwrap_or_else(|_| panic!("running"));
    pool.spawn_with(|| -> u32 { panic!("formatted {}", 42) }, report(tx.clone()))
        .unwrap_or_else(|_| panic!("running"));
    pool.spawn_with(
        || -> u32 { std::panic::panic_any(7_u8) },
        report(tx.clone()),
    )
    .unwrap_or_else(|_| panic!("running"));
    pool.spawn(|| panic!("plain spawn"))
        .unwrap_or_else(|_| panic!("running"));
    // A panicking completion callback is caught too.
    pool.spawn_with(|| 1_u32, |_| panic!("on_done panics"))
        .unwrap_or_else(|_| panic!("running"));
    // The single worker survived all of that and still runs tasks.
    pool.spawn_with(|| 5_u32, report(tx))
        .unwrap_or_else(|_| panic!("running"));

    let outcomes: Vec<_> = rx.iter().take(4).collect();
    assert_eq!(
        outcomes[0].as_ref().unwrap_err().message(),
        "static message"
    );
    assert_eq!(outcomes[1].as_ref().unwrap_err().message(), "formatted 42");
    assert_eq!(
        outcomes[2].as_ref().unwrap_err().message(),
        "task panicked with a non-string payload"
    );
    assert_eq!(outcomes[3], Ok(5));
    pool.shutdown();
    let stats = pool.stats();
    assert_eq!(stats.panicked, 5);
    assert_eq!(stats.completed, 1);
    wait_until("the worker thread is gone", || {
        Proc::this().threads_named("panics-").is_empty()
    });
}

#[test]
fn try_spawn_when_full_and_after_shutdown_hands_the_task_back() {
    let pool = ThreadPool::builder()
        .workers(1)
        .capacity(2)
        .thread_name("tryspawn")
        .build()
        .unwrap();
    let gate = occupy_all_workers(&pool);
    let ran = Arc::new(AtomicUsize::new(0));
    let counting = || {
        let ran = Arc::clone(&ran);
        move || {
            ran.fetch_add(1, Ordering::Relaxed);
        }
    };
    pool.try_spawn(counting())
        .unwrap_or_else(|_| panic!("room"));
    pool.try_spawn(counting())
        .unwrap_or_else(|_| panic!("room"));
    let refused = pool.try_spawn(counting()).unwrap_err();
    assert!(refused.is_full());
    match pool.try_spawn_with(|| 3, |_: Result<i32, TaskPanic>| ()) {
        Err(TrySpawnError::Full((task, _on_done))) => assert_eq!(task(), 3),
        other => panic!("expected Full, got {other:?}"),
    }
    // The handed-back task is the one we passed: running it here counts.
    (refused.into_inner())();
    assert_eq!(ran.load(Ordering::Relaxed), 1);

    gate.open();
    pool.shutdown();
    assert_eq!(ran.load(Ordering::Relaxed), 3);
    let refused = pool.try_spawn(counting()).unwrap_err();
    assert!(refused.is_shut_down());
    (refused.into_inner())();
    assert_eq!(ran.load(Ordering::Relaxed), 4);
    assert!(pool.spawn(counting()).is_err());
    assert!(matches!(
        pool.try_spawn_with(|| 1, |_: Result<i32, TaskPanic>| ()),
        Err(TrySpawnError::ShutDown(_))
    ));
    match pool.spawn_with(|| 9, |_: Result<i32, TaskPanic>| ()) {
        Err(SpawnError((task, _))) => assert_eq!(task(), 9),
        Ok(()) => panic!("a shut-down pool accepted a task"),
    }
}

#[test]
fn spawn_blocks_while_full_until_a_task_starts() {
    let pool = Arc::new(
        ThreadPool::builder()
            .workers(1)
            .capacity(1)
            .thread_name("blockspawn")
            .build()
            .unwrap(),
    );
    let gate = occupy_all_workers(&pool);
    pool.try_spawn(|| ()).unwrap_or_else(|_| panic!("one slot"));
    let (done_tx, done_rx) = mpsc::channel();
    let producer = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            let outcome = pool.spawn(|| ()).is_ok();
            done_tx.send(()).unwrap();
            outcome
        })
    };
    wait_until("the producer blocks", || {
        pool.shared.intake.blocked_producers() == 1
    });
    assert_eq!(done_rx.try_recv(), Err(mpsc::TryRecvError::Empty));
    gate.open();
    assert!(producer.join().unwrap(), "a started task made room");
    done_rx.recv().unwrap();
    pool.shutdown();
    assert_eq!(pool.stats().completed, 3);
}

#[test]
fn shutdown_releases_a_blocked_spawn_with_its_task() {
    let pool = Arc::new(
        ThreadPool::builder()
            .workers(1)
            .capacity(1)
            .thread_name("blockshut")
            .build()
            .unwrap(),
    );
    let gate = occupy_all_workers(&pool);
    pool.try_spawn(|| ()).unwrap_or_else(|_| panic!("one slot"));
    let (handed_back_tx, handed_back) = mpsc::channel();
    let producer = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            pool.spawn(move || handed_back_tx.send(77).unwrap())
                .map_err(|error| (error.into_inner())())
        })
    };
    wait_until("the producer blocks", || {
        pool.shared.intake.blocked_producers() == 1
    });
    let shutter = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || pool.shutdown())
    };
    assert_eq!(producer.join().unwrap(), Err(()), "refused after shutdown");
    assert_eq!(
        handed_back.recv().unwrap(),
        77,
        "the task came back to the caller"
    );
    gate.open();
    shutter.join().unwrap();
    assert_eq!(pool.stats().completed, 2);
}

#[test]
fn spawn_from_inside_a_task_goes_to_the_local_deque_and_never_blocks() {
    let pool = Arc::new(
        ThreadPool::builder()
            .workers(1)
            .capacity(1)
            .thread_name("localspawn")
            .build()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let inner = Arc::clone(&pool);
    pool.spawn(move || {
        let children = Arc::new(AtomicUsize::new(0));
        // Three blocking spawns into a capacity-1 pool from its only worker: blocking would
        // deadlock, so they must go through (to the local deque) at once.
        for _ in 0..3 {
            let children = Arc::clone(&children);
            inner
                .spawn(move || {
                    children.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap_or_else(|_| panic!("the pool is running"));
        }
        let shared = &inner.shared;
        tx.send((
            shared.injector.is_empty(),
            shared.stealers[0].len(),
            children.load(Ordering::Relaxed),
        ))
        .unwrap();
    })
    .unwrap_or_else(|_| panic!("the pool is running"));
    let (injector_empty, local_len, children_run) = rx.recv().unwrap();
    assert!(injector_empty, "inside spawns bypass the injector");
    assert_eq!(local_len, 3, "inside spawns land on the worker's own deque");
    assert_eq!(children_run, 0);
    pool.shutdown();
    assert_eq!(pool.stats().completed, 4);
}

#[test]
fn shutdown_from_inside_a_task_stops_intake_without_deadlock() {
    let pool = Arc::new(
        ThreadPool::builder()
            .workers(2)
            .thread_name("innershut")
            .build()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let inner = Arc::clone(&pool);
    pool.spawn(move || {
        inner.shutdown();
        tx.send(inner.try_spawn(|| ()).is_err()).unwrap();
    })
    .unwrap_or_else(|_| panic!("the pool is running"));
    assert!(rx.recv().unwrap(), "intake stopped");
    pool.shutdown();
    assert!(pool.threads.lock().unwrap().is_empty());
}

#[test]
fn stats_report_workers_busy_queued_completed() {
    let pool = ThreadPool::builder()
        .workers(2)
        .thread_name("stats")
        .build()
        .unwrap();
    assert_eq!(
        pool.stats(),
        PoolStats {
            workers: 2,
            ..PoolStats::default()
        }
    );
    let gate = occupy_all_workers(&pool);
    for _ in 0..5 {
        pool.spawn(|| ()).unwrap_or_else(|_| panic!("running"));
    }
    let stats = pool.stats();
    assert_eq!((stats.busy, stats.queued, stats.completed), (2, 5, 0));
    gate.open();
    pool.shutdown();
    let stats = pool.stats();
    assert_eq!((stats.busy, stats.queued, stats.completed), (0, 0, 7));
}

// Reads /proc/self/task, which Miri does not emulate.
#[cfg(not(miri))]
#[test]
fn idle_pool_cpu_time_stays_flat_over_one_second() {
    let pool = ThreadPool::builder()
        .workers(2)
        .thread_name("idlecpu")
        .build()
        .unwrap();
    // Wake the workers with some work, then let them settle into sleep.
    for _ in 0..100 {
        pool.spawn(|| ()).unwrap_or_else(|_| panic!("running"));
    }
    wait_until("both workers sleep", || pool.shared.sleep.sleepers() == 2);
    let tids = Proc::this().threads_named("idlecpu-");
    assert_eq!(tids.len(), 2);
    let before: u64 = tids
        .iter()
        .map(|&tid| Proc::this().thread_cpu_ticks(tid))
        .sum();
    // The one-second window is the quantity under test, not a synchronisation.
    thread::sleep(Duration::from_secs(1));
    let after: u64 = tids
        .iter()
        .map(|&tid| Proc::this().thread_cpu_ticks(tid))
        .sum();
    // A spinning worker would burn about 100 ticks per second; allow one tick of accounting
    // granularity per worker.
    assert!(
        after - before <= 2,
        "idle workers used {} ticks in one second",
        after - before
    );
    assert_eq!(pool.shared.sleep.sleepers(), 2, "nobody woke up");
}

#[test]
fn a_million_tiny_tasks_all_run_exactly_once() {
    // Under Miri, which interprets every step (and every turn a worker spins before it sleeps),
    // 64 tasks keep the run in seconds: 2,048 took six minutes.
    const TASKS: usize = if cfg!(miri) { 64 } else { 1_000_000 };
    let pool = ThreadPool::builder()
        .workers(2)
        .thread_name("million")
        .build()
        .unwrap();
    let seen: Arc<Vec<AtomicU64>> =
        Arc::new((0..TASKS.div_ceil(64)).map(|_| AtomicU64::new(0)).collect());
    let duplicate = Arc::new(AtomicBool::new(false));
    for task in 0..TASKS {
        let seen = Arc::clone(&seen);
        let duplicate = Arc::clone(&duplicate);
        pool.spawn(move || {
            let bit = 1 << (task % 64);
            if seen[task / 64].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                duplicate.store(true, Ordering::Relaxed);
            }
        })
        .unwrap_or_else(|_| panic!("running"));
    }
    pool.shutdown();
    assert!(!duplicate.load(Ordering::Relaxed), "a task ran twice");
    let ran: u32 = seen
        .iter()
        .map(|word| word.load(Ordering::Relaxed).count_ones())
        .sum();
    assert_eq!(ran as usize, TASKS, "every task ran");
    assert_eq!(pool.stats().completed, TASKS as u64);
}

#[test]
fn builder_rejects_bad_settings_and_reads_the_env_override() {
    assert!(matches!(
        ThreadPool::builder().workers(0).build(),
        Err(BuildError::ZeroWorkers)
    ));
    assert!(matches!(
        ThreadPool::builder().workers(1).capacity(0).build(),
        Err(BuildError::ZeroCapacity)
    ));
    assert!(matches!(
        ThreadPool::builder()
            .workers(1)
            .capacity(usize::MAX)
            .build(),
        Err(BuildError::CapacityTooLarge { .. })
    ));
    assert_eq!(resolve_workers(Some(3), Some("8".into())).unwrap(), 3);
    assert_eq!(resolve_workers(None, Some(" 8 ".into())).unwrap(), 8);
    assert!(matches!(
        resolve_workers(None, Some("0".into())),
        Err(BuildError::InvalidWorkersEnv { .. })
    ));
    assert!(matches!(
        resolve_workers(None, Some("many".into())),
        Err(BuildError::InvalidWorkersEnv { value }) if value == "many"
    ));
    let default = resolve_workers(None, None).unwrap();
    assert_eq!(
        default,
        thread::available_parallelism().map_or(1, NonZeroUsize::get)
    );
}

#[test]
fn pool_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ThreadPool>();
    assert_send_sync::<PoolStats>();
    assert_send_sync::<TaskPanic>();
}
