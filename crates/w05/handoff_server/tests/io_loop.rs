//! The pool-handoff loop (`handoff_server::io_loop`) driven with a recording service, for the
//! contract between the loop and a [`Service`]: what the loop calls, and how often.
//!
//! The service here has no pool: it keeps the lines a turn produced as its unsent batch, and
//! "hands them over" by taking the batch, which is all the loop's side of the contract needs.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use eventloop::net::{DEFAULT_BACKLOG, TcpListener};
use eventloop::slab::Key;
use eventloop::{Dispatcher, DispatcherHandle};
use handoff_protocol::session::{Handled, Host, Limits, Response};
use handoff_server::io_loop::{Facts, Found, IoLoop, LoopConfig, READ_CHUNK, Results, Service};

/// How long a test lets its loop run before it gives up (a failure, never a synchronisation).
const GUARD: Duration = Duration::from_secs(10);

/// The one answer the test service gives.
#[derive(Debug, Clone, Copy)]
struct Ok_;

impl Response for Ok_ {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"OK\n");
    }

    fn is_error(&self) -> bool {
        false
    }

    fn line_too_long() -> Self {
        Ok_
    }
}

/// What the recording service saw, shared with the test.
#[derive(Debug, Default)]
struct Record {
    /// Lines handled since the last hand-over: the batch that has not left yet.
    unsent: Vec<(Key, u64)>,
    /// How many lines each hand-over took, in order.
    handed_over: Vec<usize>,
    /// How many connections closed.
    closed: usize,
    /// How many times the loop said it had drained.
    drained: usize,
    /// The client socket the host resets while it handles the first line, if any.
    reset_on_first_line: Option<std::net::TcpStream>,
}

/// A service that hands every line off (and never answers it) and records the loop's calls.
#[derive(Debug)]
struct Recorder {
    record: Rc<RefCell<Record>>,
    dispatcher: DispatcherHandle,
    /// Whether the loop is stopped once a turn has handed lines over (else once a
    /// connection closes).
    exit_after_hand_over: bool,
}

/// The recorder's session host.
#[derive(Debug)]
struct RecordingHost<'a> {
    key: Key,
    record: &'a RefCell<Record>,
}

impl Host for RecordingHost<'_> {
    type Response = Ok_;
    type Pending = ();

    fn handle(&mut self, seq: u64, _line: &[u8]) -> Handled<Ok_, ()> {
        let mut record = self.record.borrow_mut();
        record.unsent.push((self.key, seq));
        if let Some(client) = record.reset_on_first_line.take() {
            // The client resets while the loop is still inside this event, between two `recv`s.
            test_support::sys::set_linger_zero(&client).unwrap();
            drop(client);
        }
        Handled::Pending(())
    }

    fn resubmit(&mut self, _seq: u64, _line: &[u8]) -> bool {
        true
    }

    fn responded(&mut self, _response: &Ok_) {}
}

impl Service for Recorder {
    type Response = Ok_;
    type Pending = ();
    type Connection = ();
    type Done = ();
    type Host<'a> = RecordingHost<'a>;

    fn host<'a>(&'a mut self, key: Key, _state: &'a mut (), _facts: Facts) -> RecordingHost<'a> {
        RecordingHost {
            key,
            record: &self.record,
        }
    }

    fn hand_over(&mut self, key: Key, _state: Option<&mut ()>) {
        let mut record = self.record.borrow_mut();
        let before = record.unsent.len();
        record.unsent.retain(|&(owner, _)| owner != key);
        let taken = before - record.unsent.len();
        if taken > 0 {
            record.handed_over.push(taken);
            if self.exit_after_hand_over {
                self.dispatcher.exit();
            }
        }
    }

    fn owner(_done: &()) -> Option<Key> {
        None
    }

    fn finished(&mut self, _done: (), _found: Option<Found<'_, Self>>, _facts: Facts) {}

    fn has_room(&self) -> bool {
        true
    }

    fn closed(&mut self, _session: &handoff_server::io_loop::SessionOf<Self>, _state: ()) {
        self.record.borrow_mut().closed += 1;
        if !self.exit_after_hand_over {
            self.dispatcher.exit();
        }
    }

    fn drained(&mut self, _dispatcher: &Dispatcher) {
        self.record.borrow_mut().drained += 1;
    }
}

/// A loop with a recording service on a fresh port, and that port's address.
fn start(
    dispatcher: &Dispatcher,
    record: &Rc<RefCell<Record>>,
    exit_after_hand_over: bool,
) -> (Rc<RefCell<IoLoop<Recorder>>>, SocketAddr) {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0).into(), DEFAULT_BACKLOG).expect("bind");
    let addr = listener.local_addr().unwrap();
    let config = LoopConfig {
        name: "io_loop_test",
        limits: Limits {
            max_in_flight: 1024,
            max_unsent: 1 << 20,
        },
        results_capacity: 16,
    };
    let service = Recorder {
        record: Rc::clone(record),
        dispatcher: dispatcher.handle(),
        exit_after_hand_over,
    };
    let io = IoLoop::start(dispatcher, listener, config, |_: Arc<Results<()>>| service)
        .expect("start the loop");
    (io, addr)
}

/// Runs `dispatcher` until a callback stops it, or fails the test after [`GUARD`].
fn run_guarded(dispatcher: &Dispatcher) {
    let timed_out = Rc::new(RefCell::new(false));
    let guard = dispatcher.create_timer({
        let timed_out = Rc::clone(&timed_out);
        move |dispatcher| {
            *timed_out.borrow_mut() = true;
            dispatcher.exit();
        }
    });
    guard.enable(GUARD);
    dispatcher.run().unwrap();
    assert!(
        !*timed_out.borrow(),
        "the loop did not stop within {GUARD:?}"
    );
}

#[test]
fn close_all_tells_the_service_it_drained_exactly_once() {
    let dispatcher = Dispatcher::new("io_loop_test").unwrap();
    let record = Rc::new(RefCell::new(Record::default()));
    let (io, addr) = start(&dispatcher, &record, true);
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(b"work\n").unwrap();
    run_guarded(&dispatcher);
    assert_eq!(record.borrow().handed_over, vec![1]);

    // The request is in the pool and never answered, so the drain waits for it; a second
    // signal closes the connection, and with it the loop is drained: once.
    io.borrow_mut().on_shutdown_signal(&dispatcher);
    assert_eq!(record.borrow().drained, 0, "a request is still unanswered");
    io.borrow_mut().on_shutdown_signal(&dispatcher);
    assert_eq!(record.borrow().closed, 1);
    assert_eq!(
        record.borrow().drained,
        1,
        "drained once by the second signal"
    );

    // Nothing after the drain reports it again: neither a late answer's send nor the deadline.
    io.borrow_mut().send_answers(&dispatcher);
    io.borrow_mut().close_all(&dispatcher);
    assert_eq!(record.borrow().drained, 1, "drained again after the drain");
}

#[test]
fn lines_read_before_a_failed_recv_are_handed_over_when_the_connection_closes() {
    let dispatcher = Dispatcher::new("io_loop_test").unwrap();
    let record = Rc::new(RefCell::new(Record::default()));
    let (io, addr) = start(&dispatcher, &record, false);
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    // Exactly one full read of lines: the loop reads again after a full read, and that second
    // `recv` meets the reset the host caused while it handled the first line.
    let line = [b"x".repeat(1023), b"\n".to_vec()].concat();
    let lines = READ_CHUNK / line.len();
    client.write_all(&line.repeat(lines)).unwrap();
    record.borrow_mut().reset_on_first_line = Some(client);
    run_guarded(&dispatcher);

    let record = record.borrow();
    assert_eq!(record.closed, 1);
    assert!(
        record.unsent.is_empty(),
        "{} lines of a closed connection were never handed over",
        record.unsent.len()
    );
    assert_eq!(
        record.handed_over,
        vec![lines],
        "every line of the one read, in one hand-over"
    );
    drop(io);
}
