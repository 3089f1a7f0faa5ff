//! Unit tests of the process set-up: the choice `--loops auto` makes.

use super::*;

#[test]
fn auto_never_gives_a_loop_a_core_the_workers_or_clients_need() {
    // Too few cores for loops + workers + clients: one loop, whatever the numbers.
    for (cores, workers) in [
        (1, 1),
        (2, 1),
        (2, 2),
        (3, 2),
        (4, 4),
        (4, 8),
        (8, 8),
        (64, 64),
    ] {
        assert_eq!(
            auto_loops(cores, workers),
            1,
            "{cores} cores, {workers} workers"
        );
    }
    // Room to spare: half of what the workers leave, so every loop has a core and as many
    // are left for the clients.
    assert_eq!(auto_loops(4, 0), 2);
    assert_eq!(auto_loops(6, 2), 2);
    assert_eq!(auto_loops(8, 2), 3);
    assert_eq!(auto_loops(16, 4), 6);
    // Never more than the cap, however large the machine.
    assert_eq!(auto_loops(256, 8), MAX_AUTO_LOOPS);
    for cores in 1..300 {
        for workers in 1..=cores {
            let loops = auto_loops(cores, workers);
            assert!((1..=MAX_AUTO_LOOPS).contains(&loops));
            assert!(
                loops == 1 || 2 * loops + workers <= cores,
                "{cores} {workers}"
            );
        }
    }
}

#[test]
fn loops_resolve_to_the_count_given_or_to_the_choice_within_the_limit() {
    assert_eq!(Loops::Count(3).resolve(2, usize::MAX), 3);
    assert_eq!(Loops::Auto.resolve(usize::MAX, usize::MAX), 1);
    assert!(Loops::Auto.resolve(1, usize::MAX) >= 1);
    assert_eq!(Loops::Auto.resolve(0, 1), 1, "never above the limit");
    assert_eq!(Loops::parse("auto"), Ok(Loops::Auto));
    assert_eq!(Loops::parse("1"), Ok(Loops::Count(1)));
    let error = Loops::parse("zero").unwrap_err();
    assert!(error.contains("auto"), "{error}");
}

#[test]
fn the_pool_holds_the_whole_budget_plus_the_extra_slots_and_the_budget_is_queue_plus_workers() {
    use std::sync::mpsc;
    use std::time::Duration;
    let (pool, budget) = start_pool("start-pool-test", Some(2), 5, 3).unwrap();
    assert_eq!(
        budget, 7,
        "the budget is the queue plus one request per worker"
    );
    assert_eq!(pool.worker_count(), 2);
    // Both workers busy, so every later task stays pending: the pool takes budget + extra of
    // them, and refuses the next.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Arc::new(std::sync::Mutex::new(release_rx));
    for _ in 0..2 {
        let started = started_tx.clone();
        let release = std::sync::Arc::clone(&release_rx);
        pool.spawn(move || {
            started.send(()).unwrap();
            let _ = release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
        })
        .unwrap();
    }
    for _ in 0..2 {
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    for index in 0..budget + 3 {
        assert!(pool.try_spawn(|| {}).is_ok(), "task {index} of 10 refused");
    }
    assert!(pool.try_spawn(|| {}).unwrap_err().is_full());
    drop(release_tx);
    pool.shutdown();
}
