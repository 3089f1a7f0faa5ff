//! The event loop side of the server: the listener, the connections, the handoff to the pool and
//! the results coming back.
//!
//! One [`Dispatcher`] on the main thread owns every socket. Its callbacks all land in one
//! [`Server`] (behind an `Rc<RefCell<_>>`, since the dispatcher and its callbacks live on this
//! thread only):
//!
//! - **listener readable** → accept up to a batch of connections, each registered with its slab
//!   [`Key`] captured in its callback;
//! - **connection ready** → `recv` (a few times at most, for fairness), hand the bytes to the
//!   connection's [`Session`], which answers loop verbs and submits worker verbs, then send;
//! - **waker** → drain every finished task from the results [`TaskQueue`] at once, give each
//!   reply to its session (or drop it if the key is stale), then send once per touched connection;
//! - **SIGINT/SIGTERM** (signalfd) → stop accepting and reading, answer what was read, close.
//!
//! ## The handoff, both ways
//!
//! The worker verbs read from one connection in one turn become one pool task, a [`Batch`]
//! (see the `batch` module for why): each request keeps its own sequence number, the batch
//! copies the argument bytes into a buffer the loop recycles, and the worker fills in one reply
//! per request. The task then pushes the batch into the results queue and wakes the loop **only
//! if that push made the queue non-empty** — a non-empty queue already has a wake on its way,
//! because the loop drains the eventfd before it drains the queue. So a burst of results costs
//! one eventfd write and one loop wake-up, not one per result.
//!
//! ## Backpressure
//!
//! The loop counts the requests it has handed out and not yet got back (`in_flight`). It hands
//! out at most `--queue` + workers, so at most `--queue` requests wait in the pool; a worker verb
//! read when that budget is spent is *held* by its session, that connection stops being read, and
//! it waits in the `waiting_for_pool` list until results free the budget. Nothing is dropped and
//! the loop never blocks. Every batch holds at least one request of the budget and pushes exactly
//! one result, so the pool and the results queue (both sized to the budget) can never be full:
//! handing a batch over never waits, and a worker's push never blocks either. Per connection,
//! the session's limits (requests in flight, unsent bytes) switch reading off the same way.
//!
//! ## Readiness
//!
//! Registrations are level-triggered. A connection asks for readable only while its session
//! wants input, and for writable only while it has unsent output, so an idle or paused
//! connection costs nothing, and a changed interest is one `epoll_ctl` that happens only on the
//! rare transitions (a full socket buffer, a limit reached).

// Starter code: the scaffolding is unused, and its parameters unread, until you write the
// bodies; remove this attribute once you have.
#![allow(dead_code, unused_variables, unused_imports, unused_mut, unreachable_code)]

use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use eventloop::net::{DEFAULT_BACKLOG, TcpListener, TcpStream};
use eventloop::slab::{Key, Slab};
use eventloop::{Dispatcher, FdKey, Interest, Readiness, Timer, Waker};
use handoff_protocol::{ErrorReply, Reply, Stats, Verb};
use task_queue::TaskQueue;
use thread_pool::{TaskPanic, ThreadPool};

use crate::batch::{Batch, MAX_BATCH, travels_alone};
use crate::loops::{LoopLink, LoopTally};
use crate::telemetry::OverloadStats;
use crate::session::{Host, Limits, Progress, Session};

/// The prefix of the worker threads' names (`ps -T`, panic messages).
pub(crate) const WORKER_THREAD_NAME: &str = "handoff-worker";

/// How much one `recv` may read. Received bytes are copied from this scratch buffer into the
/// connection's framer, which costs only the bytes that arrived.
const READ_CHUNK: usize = 64 * 1024;
/// How many `recv`s one connection gets per readiness event, so one fast sender cannot keep the
/// loop from everyone else; level-triggered epoll reports the rest next turn.
const READS_PER_EVENT: usize = 4;
/// How many connections one listener event may accept before the loop serves other events.
const ACCEPTS_PER_EVENT: usize = 64;
/// How long accepting pauses after an accept error the listener could not absorb, so an
/// unexpected persistent error cannot spin the loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long a connection closed for a line too long is drained before it is closed anyway.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// How many bytes such a connection may still send while it is drained.
const LINGER_MAX_BYTES: usize = 1 << 20;
/// How long a shutdown waits for slow clients to take their answers before closing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the command line decides.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Where to listen.
    pub(crate) addr: SocketAddr,
    /// Worker threads; `None` lets the pool choose (the CPU count).
    pub(crate) workers: Option<usize>,
    /// Requests that may wait in the pool beyond those running.
    pub(crate) queue: usize,
    /// Per-connection limits.
    pub(crate) limits: Limits,
    /// Log `main <tid>` and one line per task.
    pub(crate) log: bool,
    /// The W06 overload controls (all off by default; W06 adds them).
    pub(crate) overload: crate::overload::Controls,
    /// IO event loops (`--loops`): 1 runs the loop on the main thread; more run each on an
    /// `eventloop::Worker` of their own (see the `loops` module).
    pub(crate) loops: usize,
}

/// The way back from the workers: the results queue (one entry per finished batch) and the
/// loop's waker.
#[derive(Debug)]
struct ResultsChannel {
    queue: TaskQueue<Batch>,
    waker: Waker,
}

impl ResultsChannel {
    /// Called on a worker: queues a finished batch and wakes the loop if the queue was empty.
    fn deliver(&self, batch: Batch) {
        todo!("W05 L04: deliver")
    }
}

/// One client connection on the loop.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    fd_key: FdKey,
    session: Session,
    /// The interest registered with epoll now.
    interest: Interest,
    /// Whether the connection is in `Server::touched` (so it is listed once).
    touched: bool,
    /// Whether the connection is in `Server::waiting_for_pool`.
    waiting_for_pool: bool,
    /// Set while the connection lingers before its close (see `Server::linger`): the timer
    /// that ends the wait, and the bytes still allowed to be discarded.
    lingering: Option<(Timer, usize)>,
}

/// The state the loop shares between connections: the pool, the counters, the budget.
#[derive(Debug)]
struct Core {
    /// The CPU pool, shared by every loop of the process.
    pool: Arc<ThreadPool>,
    results: Arc<ResultsChannel>,
    /// Requests handed to the pool whose replies the loop has not drained yet.
    in_flight: usize,
    /// The most requests `in_flight` may reach: the queue capacity plus one per worker.
    max_in_flight: usize,
    /// The batch being filled during this turn (see [`Core::flush`]); empty between turns.
    open_batch: Batch,
    /// Finished batches, emptied, for reuse: steady traffic allocates no batches.
    spare_batches: Vec<Batch>,
    next_task_id: u64,
    /// Responses written to connections' output buffers.
    completed: u64,
    /// Of those, `ERROR: …` responses.
    errors: u64,
    /// Panics reported by finished tasks. Counted here, when the loop receives the report,
    /// rather than read from the pool's counter, which a worker bumps only after `on_done`
    /// returns: a client that has its `ERROR: task panicked` answer must find it in `stats`.
    panics: u64,
    connections: usize,
    /// The listener, until shutdown closes it.
    listener: Option<(TcpListener, FdKey)>,
    /// `rejected()` of the listener when it was closed.
    rejected_at_close: u64,
    log: bool,
}

/// How many recycled batches the loop keeps; beyond this they are freed.
const SPARE_BATCHES: usize = 1024;

impl Core {
    /// The loop's books for a fresh server: nothing in flight, no connection, no listener yet.
    fn new(
        pool: Arc<ThreadPool>,
        results: Arc<ResultsChannel>,
        max_in_flight: usize,
        log: bool,
    ) -> Self {
        todo!("W05 L04: new")
    }

    fn stats(&self) -> Stats {
        todo!("W05 L04: stats")
    }

    /// Takes one worker verb of connection `key` into this turn's batch; `false` if the
    /// budget is spent (the session then holds the request and offers it again later).
    ///
    /// The request is not handed to the pool yet: [`flush`](Self::flush) does that once the
    /// loop has read everything it will read from this connection in this turn, so a pipelined
    /// read of sixteen requests becomes one task (see the `batch` module). A request that
    /// [`travels_alone`] is handed over at once in a batch of its own.
    fn submit(&mut self, key: Key, seq: u64, verb: Verb, args: &[u8]) -> bool {
        todo!("W05 L04: submit")
    }

    /// Hands the open batch, if it holds any request, to the pool as one task.
    ///
    /// The pool's capacity is the whole request budget and every queued task holds at least one
    /// request of that budget, so the pool always has room: `spawn` never blocks here.
    fn flush(&mut self) {
        todo!("W05 L04: flush")
    }

    /// Takes a finished request off the books and returns its reply.
    fn finish(&mut self, outcome: Result<Reply, TaskPanic>) -> Reply {
        todo!("W05 L05: finish")
    }

    /// Keeps an emptied batch for reuse.
    fn recycle(&mut self, batch: Batch) {
        todo!("W05 L04: recycle")
    }
}

/// The [`Host`] a session gets: the core, plus the key its tasks carry back.
struct SessionHost<'a> {
    core: &'a mut Core,
    key: Key,
}

impl Host for SessionHost<'_> {
    fn try_submit(&mut self, seq: u64, verb: Verb, args: &[u8]) -> bool {
        todo!("W05 L04: try_submit")
    }

    fn stats(&self) -> Stats {
        todo!("W05 L04: stats")
    }

    fn responded(&mut self, is_error: bool) {
        todo!("W05 L04: responded")
    }
}

/// Everything the loop's callbacks share (see the module docs).
#[derive(Debug)]
pub(crate) struct Server {
    /// This server, for the callbacks it registers (weak: the dispatcher owns the callbacks,
    /// and the callbacks must not keep the server alive past the loop).
    this: Weak<RefCell<Server>>,
    core: Core,
    connections: Slab<Connection>,
    limits: Limits,
    /// Connections that need processing and a send before the loop sleeps again.
    touched: Vec<Key>,
    /// Connections holding a request the pool had no room for, oldest first.
    waiting_for_pool: VecDeque<Key>,
    /// The reused buffer finished batches are drained into.
    drained: Vec<Batch>,
    /// The reused receive buffer.
    read_buffer: Box<[u8]>,
    /// Re-enables accepting after an accept error.
    accept_pause: Option<Timer>,
    /// Set once SIGINT or SIGTERM arrived.
    shutting_down: bool,
    /// Closes whatever is left when a shutdown takes too long.
    drain_deadline: Option<Timer>,
}

/// Builds the server on `dispatcher` and prints the listening line; the caller runs the loop.
///
/// The caller must have blocked SIGINT and SIGTERM on this thread before any thread exists
/// (the pool's workers are started here and inherit the mask).
pub(crate) fn start(
    dispatcher: &Dispatcher,
    config: &Config,
) -> anyhow::Result<Rc<RefCell<Server>>> {
    todo!("W05 L04: start")
}

/// Prints the protocol's first stdout line, `listening on <addr>`, flushed: a grader waits for it.
pub(crate) fn print_listening(addr: SocketAddr) -> io::Result<()> {
    todo!("W05 L04: print_listening")
}

/// Starts the CPU pool every loop shares; returns it with the request budget of the whole
/// process: `--queue` plus one request per worker.
///
/// The loops' budgets, not the pool's capacity, bound the work handed out; the pool is sized to
/// the whole budget so that it always has room for a batch.
pub(crate) fn build_pool(config: &Config) -> anyhow::Result<(ThreadPool, usize)> {
    todo!("W05 L04: build_pool")
}

/// Builds one loop of `--loops` N > 1 on its own `dispatcher` (on the loop's thread): binds the
/// loop's own `SO_REUSEPORT` listener on `config.addr`, and hands pool work out within `budget`,
/// this loop's share of the process's request budget. Signals and the stats line belong to the
/// main thread, which `link` reaches.
pub(crate) fn start_loop(
    dispatcher: &Dispatcher,
    config: &Config,
    pool: Arc<ThreadPool>,
    budget: usize,
    link: LoopLink,
) -> anyhow::Result<Rc<RefCell<Server>>> {
    todo!("W05 beyond (several loops): start_loop")
}

impl Server {
    /// Stops the pool after the loop has returned: runs any task still accepted (from clients
    /// that went away) and joins every worker.
    pub(crate) fn shut_down_pool(&mut self) {
        todo!("W05 L04: shut_down_pool")
    }

    /// This loop's counters, for a `stats` answer that adds up every loop's (`--loops` N > 1).
    pub(crate) fn tally(&self) -> LoopTally {
        todo!("W05 beyond (several loops): tally")
    }

    /// The counters of every loop, added up, arrived for `stats` request `seq` of connection
    /// `key` (asked by `Host::gather_stats`): the answer takes its place, and goes out in turn.
    /// A connection gone meanwhile finds nothing, and the answer is dropped.
    pub(crate) fn complete_stats(
        &mut self,
        dispatcher: &Dispatcher,
        key: Key,
        seq: u64,
        stats: Stats,
        overload: OverloadStats,
    ) {
        todo!("W05 beyond (several loops): complete_stats")
    }

    fn on_listener_ready(&mut self, dispatcher: &Dispatcher) {
        todo!("W05 L04: on_listener_ready")
    }

    fn pause_accepting(&mut self, dispatcher: &Dispatcher) {
        todo!("W05 L04: pause_accepting")
    }

    fn resume_accepting(&mut self, dispatcher: &Dispatcher) {
        todo!("W05 L04: resume_accepting")
    }

    fn add_connection(&mut self, dispatcher: &Dispatcher, stream: TcpStream) {
        todo!("W05 L04: add_connection")
    }

    fn on_connection_ready(&mut self, dispatcher: &Dispatcher, key: Key, readiness: Readiness) {
        todo!("W05 L04: on_connection_ready")
    }

    /// Drains every finished task, routes each reply to its connection (or drops it), frees
    /// pool budget for held requests, then sends once per connection that got something.
    fn on_results(&mut self, dispatcher: &Dispatcher) {
        todo!("W05 L04: on_results")
    }

    /// Gives freed pool budget to connections holding a request, oldest first.
    fn offer_room_to_waiting(&mut self, dispatcher: &Dispatcher) {
        todo!("W05 L04: offer_room_to_waiting")
    }

    /// The one place a connection moves forward: handle buffered lines, send once, close it if
    /// it is done, and register the interest its state calls for.
    ///
    /// The worker requests this turn read from the connection leave as one batch at the end.
    fn service(&mut self, dispatcher: &Dispatcher, key: Key) {
        todo!("W05 L04: service")
    }

    /// [`service`](Self::service) before the batch is handed over.
    fn advance(&mut self, dispatcher: &Dispatcher, key: Key) {
        todo!("W05 L04: advance")
    }

    /// Closes a connection whose client may still be sending (after `line too long`) gently.
    ///
    /// Closing a socket that holds unread bytes makes the kernel answer with a reset, and a reset
    /// can overtake — and destroy — the responses still on their way to the client. So the write
    /// side is shut down first (the client reads every response, then EOF), and what the client
    /// still sends is read and discarded until it closes too, for at most `LINGER_TIMEOUT` and
    /// `LINGER_MAX_BYTES`.
    fn linger(&mut self, dispatcher: &Dispatcher, key: Key) {
        todo!("W05 L04: linger")
    }

    /// Reads and drops what a lingering connection sends; closes it at EOF, on an error, or once
    /// it has sent too much.
    fn discard_input(&mut self, dispatcher: &Dispatcher, key: Key) {
        todo!("W05 L04: discard_input")
    }

    /// Unregisters and closes a connection. Its tasks still in the pool finish, and their
    /// results are dropped when they arrive.
    fn close(&mut self, dispatcher: &Dispatcher, key: Key) {
        todo!("W05 L04: close")
    }

    /// SIGINT or SIGTERM: stop accepting, stop reading, answer what was read, then exit.
    /// A second signal closes everything at once.
    pub(crate) fn on_shutdown_signal(&mut self, dispatcher: &Dispatcher) {
        todo!("W05 L04: on_shutdown_signal")
    }

    /// Closes every connection at once (a second signal, or the drain took too long), then
    /// ends the loop.
    pub(crate) fn close_all(&mut self, dispatcher: &Dispatcher) {
        todo!("W05 L04: close_all")
    }

    /// During a shutdown, ends the loop once every connection has been answered and closed.
    fn check_shutdown_done(&mut self, dispatcher: &Dispatcher) {
        todo!("W05 L04: check_shutdown_done")
    }
}

#[cfg(test)]
mod tests;
