//! The rule of W09 L04 on its own, with the test thread in the loop's place: one batch per
//! connection in the pool, so a connection's `GET k` never overtakes its `SET k`.
//!
//! The end-to-end steps cannot show this rule reliably: a pipeline that arrives in one read
//! becomes one batch, which cannot overtake itself. Here each line arrives on its own.

use std::io;
use std::time::{Duration, Instant};

use handoff_protocol::session::Limits;

use super::*;

const LIMITS: Limits = Limits {
    max_in_flight: 16,
    max_unsent: 64 * 1024,
};

/// A core on a pool of two workers, whose results nobody drains but the test.
fn core_on(dispatcher: &Dispatcher) -> Core {
    let (pool, max_in_flight) = start_pool("kv-test", Some(2), 8, 2).unwrap();
    let waker = dispatcher.add_waker(|_| {}).unwrap();
    let engine = Arc::new(KvEngine::new(LockStrategy::default()));
    let results = Arc::new(Results::new(max_in_flight, waker));
    Core::new(pool, engine, results, max_in_flight, false, None)
}

/// One connection as the loop holds it: its key, its session and the core's state for it.
struct Connection {
    key: Key,
    session: Session<KvAnswer, ()>,
    state: KvConnection,
}

impl Connection {
    fn new() -> Self {
        let mut slab = eventloop::slab::Slab::new();
        Self {
            key: slab.insert(()),
            session: Session::new(),
            state: KvConnection::default(),
        }
    }

    /// The loop reads `bytes` from the socket, then hands the connection over.
    fn read(&mut self, core: &mut Core, bytes: &[u8]) {
        let mut host = SessionHost {
            core,
            pending: &mut self.state.pending,
            key: self.key,
        };
        let mut unread = Some(bytes);
        let mut buffer = [0u8; 256];
        self.session
            .receive(&LIMITS, &mut host, &mut buffer, |into| {
                match unread.take() {
                    Some(bytes) => {
                        into[..bytes.len()].copy_from_slice(bytes);
                        Ok(bytes.len())
                    }
                    None => Err(io::ErrorKind::WouldBlock.into()),
                }
            })
            .unwrap();
        core.hand_over(self.key, Some(&mut self.state));
    }

    /// The loop settles a batch that came back.
    fn settle(&mut self, core: &mut Core, batch: Batch) {
        let found = Found {
            key: self.key,
            session: &mut self.session,
            state: &mut self.state,
        };
        core.finished(batch, Some(found), Facts::default());
        core.hand_over(self.key, Some(&mut self.state));
    }
}

/// Waits, for at most ten seconds, until the pool has delivered `count` batches.
fn delivered(core: &Core, count: usize) -> Vec<Batch> {
    let mut done = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while done.len() < count && Instant::now() < deadline {
        core.results.drain_into(&mut done);
        std::thread::sleep(Duration::from_millis(1));
    }
    done
}

#[test]
fn a_connections_next_batch_waits_on_the_loop_while_its_batch_is_in_the_pool() {
    let dispatcher = Dispatcher::new("kv-test").unwrap();
    let mut core = core_on(&dispatcher);
    let mut connection = Connection::new();

    connection.read(&mut core, b"SET k 1\n");
    assert!(connection.state.running, "the first batch leaves at once");
    assert!(connection.state.pending.is_empty());

    // The `GET` arrives in a read of its own while the `SET`'s batch is out.
    connection.read(&mut core, b"GET k\n");
    assert_eq!(
        connection.state.pending.len(),
        1,
        "the GET must wait on the loop until the SET's batch is back: two batches of one \
         connection in the pool run on two workers, and the GET may run first"
    );

    // Only the `SET`'s batch is in the pool; once it is settled, the `GET`'s leaves.
    let mut first = delivered(&core, 1);
    assert!(!first.is_empty(), "the SET's batch never came back");
    std::thread::sleep(Duration::from_millis(20));
    core.results.drain_into(&mut first);
    assert_eq!(
        first.len(),
        1,
        "a second batch of the connection was in the pool"
    );
    for batch in first {
        connection.settle(&mut core, batch);
    }
    assert!(
        connection.state.running,
        "the GET's batch leaves once the SET's is settled"
    );
    assert!(connection.state.pending.is_empty());
    let second = delivered(&core, 1);
    assert_eq!(second.len(), 1, "the GET's batch never came back");
    for batch in second {
        connection.settle(&mut core, batch);
    }

    assert_eq!(connection.session.unsent(), b"OK\nVALUE 1\n");
    assert!(!connection.state.running);
    assert_eq!(core.in_flight, 0);
    core.pool.shutdown();
}
