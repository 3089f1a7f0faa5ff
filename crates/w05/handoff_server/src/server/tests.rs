//! Unit tests of `server`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;

/// A core with a one-worker pool whose results nobody drains but the test.
fn core(dispatcher: &Dispatcher) -> Core {
    let pool = ThreadPool::builder()
        .workers(1)
        .capacity(64)
        .build()
        .unwrap();
    let results = Arc::new(Results::new(64, dispatcher.add_waker(|_| {}).unwrap()));
    Core::new(Arc::new(pool), results, 64, false)
}

fn keys(count: usize) -> Vec<Key> {
    use eventloop::slab::Slab;
    let mut slab = Slab::new();
    (0..count)
        .map(|_| slab.insert_with(|_| Ok::<_, ()>(())).unwrap())
        .collect()
}

/// Shuts the pool down (every task runs) and returns how many tasks ran and the requests
/// of each finished batch, in the order the batches were queued.
fn finish(core: &Core) -> (u64, Vec<usize>) {
    core.pool.shutdown();
    let mut batches = Vec::new();
    core.results.drain_into(&mut batches);
    (
        core.pool.stats().completed,
        batches.iter().map(Batch::len).collect(),
    )
}

#[test]
fn requests_of_one_connection_in_one_turn_travel_as_one_task() {
    let dispatcher = Dispatcher::new("test").unwrap();
    let mut core = core(&dispatcher);
    let key = keys(1)[0];
    for seq in 0..MAX_BATCH as u64 {
        assert!(core.submit(key, seq, Verb::Compute, b"x"));
    }
    core.flush();
    assert_eq!(finish(&core), (1, vec![MAX_BATCH]));
    assert_eq!(core.in_flight, MAX_BATCH);
}

#[test]
fn a_batch_is_capped_never_mixes_connections_and_a_sleep_travels_alone() {
    let dispatcher = Dispatcher::new("test").unwrap();
    let mut core = core(&dispatcher);
    let keys = keys(2);
    for seq in 0..MAX_BATCH as u64 + 1 {
        assert!(core.submit(keys[0], seq, Verb::Compute, b"x"));
    }
    assert!(core.submit(keys[1], 0, Verb::Compute, b"y"));
    assert!(core.submit(keys[1], 1, Verb::Sleep, b"0"));
    assert!(core.submit(keys[1], 2, Verb::Compute, b"z"));
    core.flush();
    assert_eq!(finish(&core), (5, vec![MAX_BATCH, 1, 1, 1, 1]));
}

#[test]
fn a_spent_budget_refuses_the_request_instead_of_batching_it() {
    let dispatcher = Dispatcher::new("test").unwrap();
    let mut core = core(&dispatcher);
    core.max_in_flight = 2;
    let key = keys(1)[0];
    assert!(core.submit(key, 0, Verb::Compute, b"x"));
    assert!(core.submit(key, 1, Verb::Compute, b"x"));
    assert!(!core.submit(key, 2, Verb::Compute, b"x"));
    core.flush();
    assert_eq!(finish(&core), (1, vec![2]));
}
