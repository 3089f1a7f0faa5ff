//! The event loop side of the server: the listener, the connections, the handoff to the pool and
//! the results coming back.
//!
//! One [`Dispatcher`] on the main thread owns every socket (with `--loops N`, each of N loops is
//! such a server on its own thread, owning its own listener and connections: see the `loops`
//! module). Its callbacks all land in one [`Server`] (behind an `Rc<RefCell<_>>`, since the
//! dispatcher and its callbacks live on this thread only):
//!
//! - **listener readable** → accept up to a batch of connections, each registered with its slab
//!   [`Key`] captured in its callback;
//! - **connection ready** → `recv` (a few times at most, for fairness), hand the bytes to the
//!   connection's [`Session`], which answers loop verbs and submits worker verbs, then send;
//! - **waker** → drain every finished task from the results [`TaskQueue`] at once, give each
//!   reply to its session (or drop it if the key is stale), then send once per touched connection;
//! - **SIGINT/SIGTERM** (signalfd) → stop accepting and reading, answer what was read, close.
//! - **deadline timer** (W06, with `--request-timeout-ms`) → answer every request past its
//!   deadline with the timeout (see the `deadline` module); with `--stats-interval-ms`, a second
//!   timer prints the stats line.
//!
//! The W06 overload controls (`overload` module) are asked once per worker request, through
//! [`Host::admit`], before the request joins a batch.
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

use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eventloop::net::{DEFAULT_BACKLOG, TcpListener, TcpStream};
use eventloop::slab::{Key, Slab};
use eventloop::{Dispatcher, FdKey, Interest, Readiness, Timer, Waker};
use handoff_protocol::{ErrorReply, Reply, Stats, Verb};
use task_queue::TaskQueue;
use thread_pool::{TaskPanic, ThreadPool};

use crate::admission::QueueGauge;
use crate::batch::{Batch, MAX_BATCH, travels_alone};
use crate::loops::{LoopLink, LoopTally};
use crate::overload::{Admission, Controls, Overload};
use crate::session::{Host, LINGER_TIMEOUT, Limits, Progress, Session, Step};
use crate::telemetry::OverloadStats;

/// The prefix of the worker threads' names (`ps -T`, panic messages).
pub(crate) const WORKER_THREAD_NAME: &str = "handoff-worker";

/// How much one `recv` may read. Received bytes are copied from this scratch buffer into the
/// connection's framer, which costs only the bytes that arrived.
const READ_CHUNK: usize = 64 * 1024;
/// How many connections one listener event may accept before the loop serves other events.
const ACCEPTS_PER_EVENT: usize = 64;
/// How long accepting pauses after an accept error the listener could not absorb, so an
/// unexpected persistent error cannot spin the loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
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
    /// The W06 overload controls (all off by default).
    pub(crate) overload: Controls,
    /// IO event loops (`--loops`): 1 runs the loop on the main thread; more run each on an
    /// `eventloop::Worker` of their own (see the `loops` module).
    pub(crate) loops: usize,
}

/// The way back from the workers: the results queue (one entry per finished batch) and the
/// loop's waker.
///
/// It looks like the Dispatcher's own cross-thread path (a post queue plus an eventfd), and it
/// stays separate on purpose:
///
/// - It carries *values*, not closures. A finished batch is handled by the loop's `Server`,
///   which is `Rc`-owned loop state; a posted callback must be `Send`, so it could not capture
///   the server and would have to find it through a thread-local on every result. Here the one
///   waker callback that owns the server drains the queue.
/// - It is bounded. The queue is W05 L01's `TaskQueue`, sized to the requests the loop may have
///   outstanding, so results can never pile up; the post queue is unbounded and allocates a box
///   per post. The loop takes a whole wake's worth of results with one `drain_into` into a
///   reused buffer.
/// - It is the lesson. W05 L04/L05 teach this handoff — push, wake only on the empty to
///   non-empty transition (`Ok(1)`), drain — on the queue the students built, and `eventloop`
///   (W04) sits below `task_queue`, so the Dispatcher cannot be built on it.
#[derive(Debug)]
struct ResultsChannel {
    queue: TaskQueue<Batch>,
    waker: Waker,
}

impl ResultsChannel {
    // starter: w05-l04 todo "deliver"
    /// Called on a worker: queues a finished batch and wakes the loop if the queue was empty.
    fn deliver(&self, batch: Batch) {
        // The queue holds every batch the loop can have outstanding (each holds at least one
        // request of the budget), so this never blocks; it fails only once the queue is closed
        // at shutdown, when nobody wants the result.
        if let Ok(1) = self.queue.push(batch) {
            self.waker.wake();
        }
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
    /// that ends the wait.
    lingering: Option<Timer>,
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
    /// How far task ids advance: the number of loops, so ids stay unique across loops.
    task_id_step: u64,
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
    /// The W06 overload controls: the gate, deadlines, retry budget and telemetry.
    overload: Overload<Key>,
    /// Fires at the oldest pending deadline (see the `deadline` module); `None` in unit tests.
    deadline_timer: Option<Timer>,
    /// With `--loops` N > 1: this loop's way to the main thread (stats of every loop, the
    /// drained report); `None` when the loop is the only one.
    link: Option<LoopLink>,
}

/// How many recycled batches the loop keeps; beyond this they are freed.
const SPARE_BATCHES: usize = 1024;

impl Core {
    // starter: w05-l04 todo "new"
    /// The loop's books for a fresh server: nothing in flight, no connection, no listener yet.
    fn new(
        pool: Arc<ThreadPool>,
        results: Arc<ResultsChannel>,
        max_in_flight: usize,
        log: bool,
    ) -> Self {
        Core {
            pool,
            results,
            in_flight: 0,
            max_in_flight,
            next_task_id: 1,
            task_id_step: 1,
            completed: 0,
            errors: 0,
            panics: 0,
            connections: 0,
            listener: None,
            rejected_at_close: 0,
            open_batch: Batch::default(),
            spare_batches: Vec::new(),
            log,
            overload: Overload::new(&Controls::default()),
            deadline_timer: None,
            link: None,
        }
    }

    // starter: w05-l04 todo "stats"
    fn stats(&self) -> Stats {
        let pool = self.pool.stats();
        let rejected = match &self.listener {
            Some((listener, _)) => listener.rejected(),
            None => self.rejected_at_close,
        };
        Stats {
            connections: self.connections as u64,
            queue_depth: pool.queued as u64,
            workers: pool.workers as u64,
            busy_workers: pool.busy as u64,
            completed: self.completed,
            errors: self.errors,
            panics: self.panics,
            rejected,
        }
    }

    // starter: w05-l04 todo "submit"
    /// Takes one worker verb of connection `key` into this turn's batch; `false` if the
    /// budget is spent (the session then holds the request and offers it again later).
    ///
    /// The request is not handed to the pool yet: [`flush`](Self::flush) does that once the
    /// loop has read everything it will read from this connection in this turn, so a pipelined
    /// read of sixteen requests becomes one task (see the `batch` module). A request that
    /// [`travels_alone`] is handed over at once in a batch of its own.
    fn submit(&mut self, key: Key, seq: u64, verb: Verb, args: &[u8]) -> bool {
        if self.in_flight >= self.max_in_flight {
            return false;
        }
        if self.open_batch.key() != Some(key) || travels_alone(verb) {
            // Batches never mix connections, and a slow request never waits behind others.
            self.flush();
        }
        if self.open_batch.is_empty() {
            self.open_batch.start(key);
        }
        self.open_batch.push(seq, verb, self.next_task_id, args);
        self.in_flight += 1;
        self.overload.queue.handed_out(1);
        self.next_task_id += self.task_id_step;
        if travels_alone(verb) || self.open_batch.len() >= MAX_BATCH {
            self.flush();
        }
        true
    }

    // starter: w05-l04 todo "flush"
    /// Hands the open batch, if it holds any request, to the pool as one task.
    ///
    /// The pool's capacity is the whole request budget and every queued task holds at least one
    /// request of that budget, so the pool always has room: `spawn` never blocks here.
    fn flush(&mut self) {
        if self.open_batch.is_empty() {
            return;
        }
        let mut batch = std::mem::replace(
            &mut self.open_batch,
            self.spare_batches.pop().unwrap_or_default(),
        );
        let results = Arc::clone(&self.results);
        let started = self.overload.queue.started_counter();
        let log = self.log;
        // Every request of the batch was read by now, so by `skip_at` each is past its deadline
        // (W06 L03): a worker that only gets to the batch then has nobody to compute for.
        let skip_at = self
            .overload
            .deadlines
            .timeout()
            .map(|timeout| Instant::now() + timeout);
        // Panics are caught per request inside `run`, so the task itself never panics and its
        // batch always comes back.
        let task = move || {
            QueueGauge::mark_started(&started, batch.len());
            if skip_at.is_some_and(|skip_at| Instant::now() >= skip_at) {
                batch.skip();
            } else {
                batch.run(log);
            }
            results.deliver(batch);
        };
        if self.pool.spawn(task).is_err() {
            // Only a shut-down pool refuses, and the pool shuts down only after the loop has
            // returned, so no connection is left waiting for these requests.
            eprintln!("handoff_server: the pool refused a batch while shutting down");
        }
    }

    // starter: w05-l05 todo "finish"
    /// Takes a finished request off the books and returns its reply.
    fn finish(&mut self, outcome: Result<Reply, TaskPanic>) -> Reply {
        self.in_flight -= 1;
        outcome.unwrap_or_else(|panic| {
            self.panics += 1;
            Reply::Error(ErrorReply::Panicked(panic.message().to_owned()))
        })
    }

    // starter: w05-l04 todo "recycle"
    /// Keeps an emptied batch for reuse.
    fn recycle(&mut self, batch: Batch) {
        if self.spare_batches.len() < SPARE_BATCHES {
            self.spare_batches.push(batch);
        }
    }
}

/// The [`Host`] a session gets: the core, plus the key its tasks carry back.
struct SessionHost<'a> {
    core: &'a mut Core,
    key: Key,
}

impl Host for SessionHost<'_> {
    // starter: w05-l04 todo "try_submit"
    fn try_submit(&mut self, seq: u64, verb: Verb, args: &[u8]) -> bool {
        self.core.submit(self.key, seq, verb, args)
    }

    // starter: w05-l04 todo "stats"
    fn stats(&self) -> Stats {
        self.core.stats()
    }

    // starter: w05-l04 todo "responded"
    fn responded(&mut self, is_error: bool) {
        self.core.completed += 1;
        self.core.errors += u64::from(is_error);
    }

    fn admit(&mut self, seq: u64, retry: bool) -> Admission {
        let (admission, arm) = self.core.overload.admit(self.key, seq, retry);
        if let (Some(deadline), Some(timer)) = (arm, &self.core.deadline_timer) {
            timer.enable_at(deadline);
        }
        admission
    }

    fn settled(&mut self, read_at: Instant, timed_out: bool) {
        self.core.overload.settle(read_at, timed_out);
    }

    fn overload_stats(&self) -> Option<OverloadStats> {
        Some(self.core.overload.stats())
    }

    fn gather_stats(&mut self, seq: u64) -> bool {
        match &self.core.link {
            // Another loop's counters are that loop's own: ask every loop (through the main
            // thread), and answer when they all have (`Server::complete_stats`).
            Some(link) => {
                link.ask_stats(self.key, seq);
                true
            }
            None => false,
        }
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
    /// Prints the stats line to stderr every `--stats-interval-ms`.
    stats_timer: Option<Timer>,
}

// starter: w05-l04 todo "start"
/// Builds the server on `dispatcher` and prints the listening line; the caller runs the loop.
///
/// The caller must have blocked SIGINT and SIGTERM on this thread before any thread exists
/// (the pool's workers are started here and inherit the mask).
pub(crate) fn start(
    dispatcher: &Dispatcher,
    config: &Config,
) -> anyhow::Result<Rc<RefCell<Server>>> {
    let listener = TcpListener::bind(config.addr, DEFAULT_BACKLOG)
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let local_addr = listener.local_addr()?;
    let (pool, max_in_flight) = build_pool(config)?;
    let server = build(dispatcher, config, listener, Arc::new(pool), max_in_flight)?;

    let weak = Rc::downgrade(&server);
    dispatcher.add_signals(
        &[libc::SIGINT, libc::SIGTERM],
        move |dispatcher, _signal| {
            if let Some(server) = weak.upgrade() {
                server.borrow_mut().on_shutdown_signal(dispatcher);
            }
        },
    )?;
    if let Some(interval) = config.overload.stats_interval {
        let weak = Rc::downgrade(&server);
        let timer = dispatcher.create_timer(move |_| {
            if let Some(server) = weak.upgrade() {
                server.borrow().print_stats();
            }
        });
        timer.enable_repeating(interval);
        server.borrow_mut().stats_timer = Some(timer);
    }

    // The protocol's first stdout line; flushed, because a grader waits for it.
    print_listening(local_addr)?;
    if config.log {
        eprintln!("main {}", eventloop::sys::gettid());
    }
    Ok(server)
}

// starter: w05-l04 todo "print_listening"
/// Prints the protocol's first stdout line, `listening on <addr>`, flushed: a grader waits for it.
pub(crate) fn print_listening(addr: SocketAddr) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()
}

// starter: w05-l04 todo "build_pool"
/// Starts the CPU pool every loop shares; returns it with the request budget of the whole
/// process: `--queue` plus one request per worker.
///
/// The loops' budgets, not the pool's capacity, bound the work handed out; the pool is sized to
/// the whole budget so that it always has room for a batch.
pub(crate) fn build_pool(config: &Config) -> anyhow::Result<(ThreadPool, usize)> {
    let mut builder = ThreadPool::builder().thread_name(WORKER_THREAD_NAME);
    if let Some(workers) = config.workers {
        builder = builder.workers(workers);
    }
    let max_in_flight = config.queue
        + builder
            .worker_count()
            .context("cannot start the worker threads")?;
    let pool = builder
        .capacity(max_in_flight)
        .build()
        .context("cannot start the worker threads")?;
    Ok((pool, max_in_flight))
}

// starter: w05-l07 todo "start_loop"
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
    let listener = TcpListener::bind_reuse_port(config.addr, DEFAULT_BACKLOG)
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let server = build(dispatcher, config, listener, pool, budget)?;
    let tid = link.tid();
    {
        let mut server = server.borrow_mut();
        // Loop i hands out task ids i + 1, i + 1 + N, …: unique across the loops in the log.
        server.core.next_task_id = link.index() as u64 + 1;
        server.core.task_id_step = config.loops as u64;
        server.core.link = Some(link);
    }
    if config.log {
        eprintln!("loop {tid}");
    }
    Ok(server)
}

/// The loop's part of a server: its listener, connections, results channel and timers on
/// `dispatcher`, handing work to `pool` within `max_in_flight` requests.
fn build(
    dispatcher: &Dispatcher,
    config: &Config,
    listener: TcpListener,
    pool: Arc<ThreadPool>,
    max_in_flight: usize,
) -> anyhow::Result<Rc<RefCell<Server>>> {
    // The waker's callback needs the server and the server needs the waker, so the callback
    // finds the server through a cell filled right after both exist.
    let server_cell: Rc<OnceCell<Weak<RefCell<Server>>>> = Rc::new(OnceCell::new());
    let waker = dispatcher.add_waker({
        let server_cell = Rc::clone(&server_cell);
        move |dispatcher| {
            if let Some(server) = server_cell.get().and_then(Weak::upgrade) {
                server.borrow_mut().on_results(dispatcher);
            }
        }
    })?;
    let results = Arc::new(ResultsChannel {
        queue: TaskQueue::new(max_in_flight).expect("the budget is at least one request"),
        waker,
    });

    let server = Rc::new_cyclic(|this| {
        RefCell::new(Server {
            this: this.clone(),
            core: Core::new(pool, results, max_in_flight, config.log),
            connections: Slab::new(),
            limits: config.limits,
            touched: Vec::new(),
            waiting_for_pool: VecDeque::new(),
            drained: Vec::new(),
            read_buffer: vec![0; READ_CHUNK].into_boxed_slice(),
            accept_pause: None,
            shutting_down: false,
            drain_deadline: None,
            stats_timer: None,
        })
    });
    let _ = server_cell.set(Rc::downgrade(&server));

    let weak = Rc::downgrade(&server);
    let listener_key = dispatcher.add_fd(listener.as_fd(), Interest::READABLE, {
        let weak = weak.clone();
        move |dispatcher, _| {
            if let Some(server) = weak.upgrade() {
                server.borrow_mut().on_listener_ready(dispatcher);
            }
        }
    })?;
    let accept_pause = dispatcher.create_timer({
        let weak = weak.clone();
        move |dispatcher| {
            if let Some(server) = weak.upgrade() {
                server.borrow_mut().resume_accepting(dispatcher);
            }
        }
    });
    let deadline_timer = dispatcher.create_timer({
        let weak = weak.clone();
        move |dispatcher| {
            if let Some(server) = weak.upgrade() {
                server.borrow_mut().on_deadlines(dispatcher);
            }
        }
    });
    {
        let mut server = server.borrow_mut();
        server.core.listener = Some((listener, listener_key));
        server.accept_pause = Some(accept_pause);
        server.core.overload = Overload::new(&config.overload);
        server.core.deadline_timer = Some(deadline_timer);
    }
    Ok(server)
}

impl Server {
    // starter: w05-l04 todo "shut_down_pool"
    /// Stops the pool after the loop has returned: runs any task still accepted (from clients
    /// that went away) and joins every worker.
    pub(crate) fn shut_down_pool(&mut self) {
        self.core.pool.shutdown();
        self.core.results.queue.close();
    }

    // starter: w05-l07 todo "tally"
    /// This loop's counters, for a `stats` answer that adds up every loop's (`--loops` N > 1).
    pub(crate) fn tally(&self) -> LoopTally {
        LoopTally {
            base: self.core.stats(),
            overload: self.core.overload.tally(),
        }
    }

    // starter: w05-l07 todo "complete_stats"
    /// The counters of every loop, added up, arrived for `stats` request `seq` of connection
    /// `key` (asked by [`Host::gather_stats`]): the answer takes its place, and goes out in turn.
    /// A connection gone meanwhile finds nothing, and the answer is dropped.
    pub(crate) fn complete_stats(
        &mut self,
        dispatcher: &Dispatcher,
        key: Key,
        seq: u64,
        stats: Stats,
        overload: OverloadStats,
    ) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        let mut host = SessionHost {
            core: &mut self.core,
            key,
        };
        connection
            .session
            .complete_stats(seq, stats, Some(overload), &mut host);
        self.service(dispatcher, key);
        self.check_shutdown_done(dispatcher);
    }

    // starter: w05-l04 todo "on_listener_ready"
    fn on_listener_ready(&mut self, dispatcher: &Dispatcher) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let Some((listener, _)) = &self.core.listener else {
                return;
            };
            match listener.accept() {
                Ok(Some((stream, peer))) => {
                    if let (true, Some(link)) = (self.core.log, &self.core.link) {
                        // With several loops, which one serves a connection is worth seeing.
                        eprintln!("loop {} accepted {peer}", link.tid());
                    }
                    self.add_connection(dispatcher, stream);
                }
                Ok(None) => return,
                Err(error) => {
                    // The listener absorbs EMFILE itself; an error here is one it could not
                    // (no spare fd left, or something unexpected). Stop polling the listener
                    // for a moment rather than have level-triggered epoll report it again and
                    // again.
                    eprintln!("handoff_server: accept failed: {error}");
                    self.pause_accepting(dispatcher);
                    return;
                }
            }
        }
    }

    // starter: w05-l04 todo "pause_accepting"
    fn pause_accepting(&mut self, dispatcher: &Dispatcher) {
        if let Some((_, key)) = &self.core.listener {
            let _ = dispatcher.modify_fd(*key, Interest::NONE);
            if let Some(timer) = &self.accept_pause {
                timer.enable(ACCEPT_PAUSE);
            }
        }
    }

    // starter: w05-l04 todo "resume_accepting"
    fn resume_accepting(&mut self, dispatcher: &Dispatcher) {
        if let Some((_, key)) = &self.core.listener {
            let _ = dispatcher.modify_fd(*key, Interest::READABLE);
        }
    }

    // starter: w05-l04 todo "add_connection"
    fn add_connection(&mut self, dispatcher: &Dispatcher, stream: TcpStream) {
        // Responses are small and already batched per turn; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let weak = self.this.clone();
        let added = self.connections.insert_with(|key| {
            let fd_key = dispatcher.add_fd(
                stream.as_fd(),
                Interest::READABLE,
                move |dispatcher, readiness| {
                    if let Some(server) = weak.upgrade() {
                        server
                            .borrow_mut()
                            .on_connection_ready(dispatcher, key, readiness);
                    }
                },
            )?;
            Ok::<_, io::Error>(Connection {
                stream,
                fd_key,
                session: Session::new(),
                interest: Interest::READABLE,
                touched: false,
                waiting_for_pool: false,
                lingering: None,
            })
        });
        match added {
            Ok(_) => self.core.connections += 1,
            // The stream was dropped (closed) with the failed closure.
            Err(error) => eprintln!("handoff_server: cannot register a connection: {error}"),
        }
    }

    // starter: w05-l04 todo "on_connection_ready"
    fn on_connection_ready(&mut self, dispatcher: &Dispatcher, key: Key, readiness: Readiness) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if readiness.is_error() || readiness.is_hang_up() {
            // A reset (or both directions shut): nobody can read an answer any more.
            self.close(dispatcher, key);
            return;
        }
        if connection.lingering.is_some() {
            self.discard_input(dispatcher, key);
            return;
        }
        if readiness.is_readable() || readiness.is_read_closed() {
            let mut host = SessionHost {
                core: &mut self.core,
                key,
            };
            let stream = &connection.stream;
            let received = connection.session.receive(
                &self.limits,
                &mut host,
                &mut self.read_buffer,
                |buffer| stream.recv(buffer),
            );
            if received.is_err() {
                self.close(dispatcher, key);
                return;
            }
        }
        self.service(dispatcher, key);
    }

    // starter: w05-l04 todo "on_results"
    /// Drains every finished task, routes each reply to its connection (or drops it), frees
    /// pool budget for held requests, then sends once per connection that got something.
    fn on_results(&mut self, dispatcher: &Dispatcher) {
        let mut drained = std::mem::take(&mut self.drained);
        self.core.results.queue.drain_into(&mut drained);
        for mut batch in drained.drain(..) {
            let key = batch.key();
            // A stale key (the client went away, its slot maybe reused) finds nothing, and the
            // replies are dropped: they never reach another client.
            let mut connection = key.and_then(|key| self.connections.get_mut(key));
            let skipped = batch.was_skipped();
            let timeout_reply = self.core.overload.timeout_reply();
            for (seq, outcome) in batch.take_replies() {
                let reply = self.core.finish(outcome);
                if let (Some(connection), Some(key)) = (connection.as_deref_mut(), key) {
                    let mut host = SessionHost {
                        core: &mut self.core,
                        key,
                    };
                    match (skipped, timeout_reply) {
                        (true, Some(timeout)) => {
                            connection
                                .session
                                .skipped_past_deadline(seq, timeout, &mut host);
                        }
                        _ => connection.session.complete(seq, reply, &mut host),
                    }
                }
            }
            if let (Some(connection), Some(key)) = (connection, key) {
                if !connection.touched {
                    connection.touched = true;
                    self.touched.push(key);
                }
            }
            self.core.recycle(batch);
        }
        self.drained = drained;
        self.offer_room_to_waiting(dispatcher);
        self.service_touched(dispatcher);
    }

    /// The deadline timer fired (W06 L03): answers every request that is due and still waiting
    /// with the timeout, sends, and arms the timer for the next deadline.
    fn on_deadlines(&mut self, dispatcher: &Dispatcher) {
        let Some(reply) = self.core.overload.timeout_reply() else {
            return;
        };
        let now = Instant::now();
        while let Some((key, seq)) = self.core.overload.deadlines.pop_due(now) {
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let mut host = SessionHost {
                core: &mut self.core,
                key,
            };
            if connection.session.expire(seq, reply, &mut host) && !connection.touched {
                connection.touched = true;
                self.touched.push(key);
            }
        }
        if let (Some(next), Some(timer)) = (
            self.core.overload.deadlines.next_deadline(),
            &self.core.deadline_timer,
        ) {
            timer.enable_at(next);
        }
        self.service_touched(dispatcher);
    }

    /// `--stats-interval-ms`: one `stats <line>` on stderr.
    fn print_stats(&self) {
        let mut line = b"stats ".to_vec();
        self.core
            .overload
            .stats()
            .write_line(&self.core.stats(), &mut line);
        let _ = io::stderr().lock().write_all(&line);
    }

    /// Services (sends, closes, re-registers) every connection in `touched`, once each.
    fn service_touched(&mut self, dispatcher: &Dispatcher) {
        let touched = std::mem::take(&mut self.touched);
        for &key in &touched {
            if let Some(connection) = self.connections.get_mut(key) {
                connection.touched = false;
                self.service(dispatcher, key);
            }
        }
        self.touched = touched;
        self.touched.clear();
        self.check_shutdown_done(dispatcher);
    }

    // starter: w05-l04 todo "offer_room_to_waiting"
    /// Gives freed pool budget to connections holding a request, oldest first.
    fn offer_room_to_waiting(&mut self, dispatcher: &Dispatcher) {
        while self.core.in_flight < self.core.max_in_flight {
            let Some(key) = self.waiting_for_pool.pop_front() else {
                return;
            };
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let mut host = SessionHost {
                core: &mut self.core,
                key,
            };
            if connection.session.retry_held(&mut host) {
                connection.waiting_for_pool = false;
                self.service(dispatcher, key);
            } else {
                // The pool itself is full (its workers have not taken their tasks yet): keep
                // the connection first in line for the next result.
                self.waiting_for_pool.push_front(key);
                return;
            }
        }
    }

    // starter: w05-l04 todo "service"
    /// The one place a connection moves forward: handle buffered lines, send once, close it if
    /// it is done, and register the interest its state calls for.
    ///
    /// The worker requests this turn read from the connection leave as one batch at the end.
    fn service(&mut self, dispatcher: &Dispatcher, key: Key) {
        self.advance(dispatcher, key);
        self.core.flush();
    }

    // starter: w05-l04 todo "advance"
    /// [`service`](Self::service) before the batch is handed over.
    fn advance(&mut self, dispatcher: &Dispatcher, key: Key) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.lingering.is_some() {
            return;
        }
        let mut host = SessionHost {
            core: &mut self.core,
            key,
        };
        let stream = &connection.stream;
        let Ok(progress) = connection
            .session
            .advance(&self.limits, &mut host, |unsent| stream.send(unsent))
        else {
            // EPIPE or a reset: the client is gone.
            self.close(dispatcher, key);
            return;
        };
        if progress == Progress::WaitingForPool && !connection.waiting_for_pool {
            connection.waiting_for_pool = true;
            self.waiting_for_pool.push_back(key);
        }
        let wanted = match connection.session.next_step(&self.limits) {
            Step::Close => return self.close(dispatcher, key),
            Step::Linger => return self.linger(dispatcher, key),
            Step::Poll { readable, writable } => Interest::NONE
                .with_readable(readable)
                .with_writable(writable),
        };
        if wanted != connection.interest {
            match dispatcher.modify_fd(connection.fd_key, wanted) {
                Ok(()) => connection.interest = wanted,
                Err(_) => self.close(dispatcher, key),
            }
        }
    }

    // starter: w05-l04 todo "linger"
    /// Closes a connection whose client may still be sending (after `line too long`) gently:
    /// shuts the write side down, then discards what the client still sends until it closes
    /// too, for at most `LINGER_TIMEOUT` (the rule and its reason are the shared session's,
    /// [`Step::Linger`]).
    fn linger(&mut self, dispatcher: &Dispatcher, key: Key) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.stream.shutdown_write().is_err()
            || dispatcher
                .modify_fd(connection.fd_key, Interest::READABLE)
                .is_err()
        {
            self.close(dispatcher, key);
            return;
        }
        connection.interest = Interest::READABLE;
        let weak = self.this.clone();
        let timer = dispatcher.create_timer(move |dispatcher| {
            if let Some(server) = weak.upgrade() {
                server.borrow_mut().close(dispatcher, key);
            }
        });
        timer.enable(LINGER_TIMEOUT);
        connection.lingering = Some(timer);
        connection.session.start_linger();
        self.discard_input(dispatcher, key);
    }

    // starter: w05-l04 todo "discard_input"
    /// Reads and drops what a lingering connection sends; closes it at EOF, on an error, or once
    /// it has sent too much.
    fn discard_input(&mut self, dispatcher: &Dispatcher, key: Key) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        let stream = &connection.stream;
        if !connection
            .session
            .discard_input(&mut self.read_buffer, |buffer| stream.recv(buffer))
        {
            self.close(dispatcher, key);
        }
    }

    // starter: w05-l04 todo "close"
    /// Unregisters and closes a connection. Its tasks still in the pool finish, and their
    /// results are dropped when they arrive.
    fn close(&mut self, dispatcher: &Dispatcher, key: Key) {
        if let Some(connection) = self.connections.remove(key) {
            // Unregister before the fd is closed (when `connection` drops), so epoll never
            // holds a closed fd.
            let _ = dispatcher.remove_fd(connection.fd_key);
            self.core.connections -= 1;
            // Its admitted requests leave the gate's count; their results are dropped on arrival.
            self.core.overload.forget(connection.session.unanswered());
            drop(connection);
        }
        self.check_shutdown_done(dispatcher);
    }

    // starter: w05-l04 todo "on_shutdown_signal"
    /// SIGINT or SIGTERM: stop accepting, stop reading, answer what was read, then exit.
    /// A second signal closes everything at once.
    pub(crate) fn on_shutdown_signal(&mut self, dispatcher: &Dispatcher) {
        if self.shutting_down {
            self.close_all(dispatcher);
            return;
        }
        self.shutting_down = true;
        if let Some((listener, key)) = self.core.listener.take() {
            let _ = dispatcher.remove_fd(key);
            self.core.rejected_at_close = listener.rejected();
            // Closing the listener: new connections are refused by the kernel from now on.
            drop(listener);
        }
        self.accept_pause = None;
        for key in self.connections.keys() {
            if let Some(connection) = self.connections.get_mut(key) {
                connection.session.stop_input();
            }
            self.service(dispatcher, key);
        }
        let weak = self.this.clone();
        let deadline = dispatcher.create_timer(move |dispatcher| {
            if let Some(server) = weak.upgrade() {
                server.borrow_mut().close_all(dispatcher);
            }
        });
        deadline.enable(DRAIN_TIMEOUT);
        self.drain_deadline = Some(deadline);
        self.check_shutdown_done(dispatcher);
    }

    // starter: w05-l04 todo "close_all"
    /// Closes every connection at once (a second signal, or the drain took too long), then
    /// ends the loop.
    pub(crate) fn close_all(&mut self, dispatcher: &Dispatcher) {
        for key in self.connections.keys() {
            self.close(dispatcher, key);
        }
        self.drained(dispatcher);
    }

    // starter: w05-l04 todo "check_shutdown_done"
    /// During a shutdown, ends the loop once every connection has been answered and closed.
    fn check_shutdown_done(&mut self, dispatcher: &Dispatcher) {
        if self.shutting_down && self.connections.is_empty() {
            self.drained(dispatcher);
        }
    }

    /// The loop has nothing left to serve. Alone, it exits. One of several, it tells the main
    /// thread and keeps running, so that the `stats` of loops still draining can visit it; the
    /// main thread stops every loop once all have drained.
    fn drained(&mut self, dispatcher: &Dispatcher) {
        match &mut self.core.link {
            None => dispatcher.exit(),
            Some(link) => link.report_drained(),
        }
    }
}

#[cfg(test)]
mod tests;
