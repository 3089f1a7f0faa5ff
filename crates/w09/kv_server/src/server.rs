//! The event loop side of the KV server: the listener, the connections, the handoff to the pool
//! and the results coming back.
//!
//! The composition is W05's (`handoff_server`): one [`Dispatcher`] on the main thread owns the
//! listener and every client socket, each connection's protocol state is the course's shared
//! socket-free [`Session`] (framing, answers in request order, output, limits, half-close, the
//! line-too-long linger), a [`ThreadPool`] runs the commands in per-connection [`Batch`]es, and a
//! [`TaskQueue`] plus a [`Waker`] bring the finished batches back.
//!
//! - **Every command runs on the pool**, `STATS` and the errors included: the loop does no CPU
//!   work, not even the parse. The store is one [`KvEngine`] shared by the workers, so the
//!   batches of two connections run on two workers at once (their `GET`s under the engine's read
//!   locks).
//! - **One batch per connection at a time.** A client that pipelines `SET k 1` then `GET k`
//!   must read its own write, so a connection's commands run in the order it sent them: while
//!   its batch is in the pool, the lines read meanwhile gather in the connection's next batch
//!   (at most [`MAX_BATCH`]; past that the session holds the line and stops reading), which
//!   leaves when the first comes back. The W05 server may spread one connection over several
//!   workers because its verbs share no state; a store's commands do.
//! - **Backpressure** as in W05: the loop hands out at most `--queue` + workers requests; a line
//!   read when that budget is spent is held by its session, which stops reading, until results
//!   free the budget. Per connection the session's limits switch reading off the same way.
//! - **Expiry**: a `GET` of an expired key removes it (lazily, in the store); a loop timer every
//!   [`SWEEP_EVERY`] hands one bounded [`KvEngine::sweep`] to the pool, at most one at a time.
//! - **SIGINT/SIGTERM**: stop accepting, stop reading, answer every request already read, close
//!   each connection once its answers are sent, then return so `main` joins the pool.

use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eventloop::net::{DEFAULT_BACKLOG, TcpListener, TcpStream};
use eventloop::slab::{Key, Slab};
use eventloop::{Dispatcher, FdKey, Interest, Readiness, Timer, Waker};
use handoff_protocol::session::{
    Handled, Host, LINGER_TIMEOUT, Limits, Progress, Response, Session, Step,
};
use kv_store::{ErrorReply, KvEngine, LockStrategy, Reply};
use task_queue::TaskQueue;
use thread_pool::ThreadPool;

use crate::batch::{Batch, MAX_BATCH};

/// The prefix of the worker threads' names (`ps -T`, panic messages).
pub(crate) const WORKER_THREAD_NAME: &str = "kv-worker";

/// How much one `recv` may read.
const READ_CHUNK: usize = 64 * 1024;
/// How many connections one listener event may accept before the loop serves other events.
const ACCEPTS_PER_EVENT: usize = 64;
/// How long accepting pauses after an accept error the listener could not absorb.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long a shutdown waits for slow clients to take their answers before closing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the loop hands an expiry sweep to the pool.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// How many table slots one sweep looks at per shard: bounded, so a sweep holds a write lock
/// for microseconds, and a large table is covered over several sweeps.
const SWEEP_BUDGET: usize = 512;
/// How many recycled batches the loop keeps; beyond this they are freed.
const SPARE_BATCHES: usize = 1024;

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
    /// How the store is locked.
    pub(crate) lock: LockStrategy,
    /// Log `main <tid>` and one line per request.
    pub(crate) log: bool,
}

/// One answer of the KV protocol, as the session writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvAnswer {
    /// The store's reply.
    Reply(Reply),
    /// The command panicked on its worker (a bug: the store is built never to): the client gets
    /// `ERROR task panicked`, the connection and the server go on.
    Panicked,
}

impl Response for KvAnswer {
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            KvAnswer::Reply(reply) => reply.write_to(out),
            KvAnswer::Panicked => out.extend_from_slice(b"ERROR task panicked\n"),
        }
    }

    fn is_error(&self) -> bool {
        matches!(self, KvAnswer::Reply(Reply::Error(_)) | KvAnswer::Panicked)
    }

    fn line_too_long() -> Self {
        KvAnswer::Reply(Reply::Error(ErrorReply::LineTooLong))
    }
}

/// The way back from the workers: finished batches, and the loop's waker (the W05 handoff: push,
/// wake only when the push made the queue non-empty, drain everything at once).
#[derive(Debug)]
struct ResultsChannel {
    queue: TaskQueue<Batch>,
    waker: Waker,
}

impl ResultsChannel {
    /// Called on a worker: queues a finished batch and wakes the loop if the queue was empty.
    fn deliver(&self, batch: Batch) {
        // The queue holds every batch the loop can have outstanding, so this never blocks; it
        // fails only once the queue is closed at shutdown, when nobody wants the result.
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
    session: Session<KvAnswer, ()>,
    /// The interest registered with epoll now.
    interest: Interest,
    /// Whether the connection is in `Server::touched`.
    touched: bool,
    /// Whether the connection is in `Server::waiting_for_pool`.
    waiting_for_pool: bool,
    /// The timer that ends a linger (after `line too long`).
    linger_timer: Option<Timer>,
    /// Lines read and accepted, waiting for the running batch to come back.
    pending: Batch,
    /// Whether a batch of this connection is in the pool (or its results queue).
    running: bool,
}

/// The state the loop shares between connections: the pool, the engine, the budget.
#[derive(Debug)]
struct Core {
    pool: ThreadPool,
    engine: Arc<KvEngine>,
    results: Arc<ResultsChannel>,
    /// Requests handed to the pool whose replies the loop has not drained yet.
    in_flight: usize,
    /// The most requests `in_flight` may reach: the queue capacity plus one per worker.
    max_in_flight: usize,
    spare_batches: Vec<Batch>,
    next_task_id: u64,
    /// Set while a sweep task is in the pool, so there is never more than one.
    sweeping: Arc<AtomicBool>,
    listener: Option<(TcpListener, FdKey)>,
    log: bool,
}

impl Core {
    // starter: w09-l04 todo "budget and batch-size check, then into the pending batch"
    /// Takes one request line into the connection's next batch, `pending`; `false` if the
    /// budget is spent or that batch is full (the session then holds the line and offers it
    /// again later).
    fn submit(&mut self, pending: &mut Batch, key: Key, seq: u64, line: &[u8]) -> bool {
        if self.in_flight >= self.max_in_flight || pending.len() >= MAX_BATCH {
            return false;
        }
        if pending.is_empty() {
            pending.start(key);
        }
        pending.push(seq, self.next_task_id, line);
        self.in_flight += 1;
        self.next_task_id += 1;
        true
    }

    // starter: w09-l04 todo "spawn the batch: run it on the engine, deliver it to the results channel"
    /// Hands a connection's batch to the pool as one task.
    ///
    /// The pool's capacity is the whole request budget plus one slot for the sweep, and every
    /// queued batch holds at least one request of the budget, so `spawn` never blocks here.
    fn launch(&mut self, pending: &mut Batch) {
        let mut batch = std::mem::replace(pending, self.spare_batches.pop().unwrap_or_default());
        let results = Arc::clone(&self.results);
        let engine = Arc::clone(&self.engine);
        let log = self.log;
        let task = move || {
            batch.run(&engine, log);
            results.deliver(batch);
        };
        if self.pool.spawn(task).is_err() {
            // Only a shut-down pool refuses, and it shuts down only after the loop returned.
            eprintln!("kv_server: the pool refused a batch while shutting down");
        }
    }

    // starter: w09-l05 todo "at most one bounded sweep in the pool, with try_spawn"
    /// Hands one bounded expiry sweep to the pool, unless one is still running.
    fn sweep(&mut self) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let engine = Arc::clone(&self.engine);
        let sweeping = Arc::clone(&self.sweeping);
        let task = move || {
            engine.sweep(Instant::now(), SWEEP_BUDGET);
            sweeping.store(false, Ordering::Release);
        };
        if self.pool.try_spawn(task).is_err() {
            // Full or shut down: the next tick tries again.
            self.sweeping.store(false, Ordering::Release);
        }
    }

    fn recycle(&mut self, batch: Batch) {
        if self.spare_batches.len() < SPARE_BATCHES {
            self.spare_batches.push(batch);
        }
    }
}

/// The [`Host`] a session gets: every line goes to the connection's next batch, under the
/// budget.
struct SessionHost<'a> {
    core: &'a mut Core,
    pending: &'a mut Batch,
    key: Key,
}

impl Host for SessionHost<'_> {
    type Response = KvAnswer;
    type Pending = ();

    fn handle(&mut self, seq: u64, line: &[u8]) -> Handled<KvAnswer, ()> {
        if self.core.submit(self.pending, self.key, seq, line) {
            Handled::Pending(())
        } else {
            Handled::Held(())
        }
    }

    fn resubmit(&mut self, seq: u64, line: &[u8]) -> bool {
        self.core.submit(self.pending, self.key, seq, line)
    }

    fn responded(&mut self, answer: &KvAnswer) {
        // The engine counts every command and its errors itself; the two errors it never sees
        // are counted here, so `errors` in STATS counts every `ERROR` line.
        // (`KvEngine::error` counts one error of any kind; the reply it returns is not needed.)
        if matches!(
            answer,
            KvAnswer::Reply(Reply::Error(ErrorReply::LineTooLong)) | KvAnswer::Panicked
        ) {
            let _ = self.core.engine.error(ErrorReply::LineTooLong);
        }
    }
}

/// Everything the loop's callbacks share.
#[derive(Debug)]
pub(crate) struct Server {
    this: Weak<RefCell<Server>>,
    core: Core,
    connections: Slab<Connection>,
    limits: Limits,
    touched: Vec<Key>,
    waiting_for_pool: VecDeque<Key>,
    drained: Vec<Batch>,
    read_buffer: Box<[u8]>,
    accept_pause: Option<Timer>,
    sweep_timer: Option<Timer>,
    shutting_down: bool,
    drain_deadline: Option<Timer>,
}

/// Builds the server on `dispatcher` and prints the listening line; the caller runs the loop.
///
/// The caller must have blocked SIGINT and SIGTERM on this thread before any thread exists.
pub(crate) fn start(
    dispatcher: &Dispatcher,
    config: &Config,
) -> anyhow::Result<Rc<RefCell<Server>>> {
    let listener = TcpListener::bind(config.addr, DEFAULT_BACKLOG)
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let local_addr = listener.local_addr()?;

    let mut builder = ThreadPool::builder().thread_name(WORKER_THREAD_NAME);
    if let Some(workers) = config.workers {
        builder = builder.workers(workers);
    }
    let max_in_flight = config.queue
        + builder
            .worker_count()
            .context("cannot start the worker threads")?;
    // One slot more than the budget, for the one sweep task that may be queued.
    let pool = builder
        .capacity(max_in_flight + 1)
        .build()
        .context("cannot start the worker threads")?;

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
        queue: TaskQueue::new(max_in_flight).expect("the budget is at least one worker"),
        waker,
    });

    let server = Rc::new_cyclic(|this| {
        RefCell::new(Server {
            this: this.clone(),
            core: Core {
                pool,
                engine: Arc::new(KvEngine::new(config.lock)),
                results,
                in_flight: 0,
                max_in_flight,
                spare_batches: Vec::new(),
                next_task_id: 1,
                sweeping: Arc::new(AtomicBool::new(false)),
                listener: None,
                log: config.log,
            },
            connections: Slab::new(),
            limits: config.limits,
            touched: Vec::new(),
            waiting_for_pool: VecDeque::new(),
            drained: Vec::new(),
            read_buffer: vec![0; READ_CHUNK].into_boxed_slice(),
            accept_pause: None,
            sweep_timer: None,
            shutting_down: false,
            drain_deadline: None,
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
    let sweep_timer = dispatcher.create_timer({
        let weak = weak.clone();
        move |_dispatcher| {
            if let Some(server) = weak.upgrade() {
                server.borrow_mut().on_sweep_tick();
            }
        }
    });
    sweep_timer.enable(SWEEP_EVERY);
    dispatcher.add_signals(&[libc::SIGINT, libc::SIGTERM], {
        let weak = weak.clone();
        move |dispatcher, _signal| {
            if let Some(server) = weak.upgrade() {
                server.borrow_mut().on_shutdown_signal(dispatcher);
            }
        }
    })?;
    {
        let mut server = server.borrow_mut();
        server.core.listener = Some((listener, listener_key));
        server.accept_pause = Some(accept_pause);
        server.sweep_timer = Some(sweep_timer);
    }

    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {local_addr}")?;
    stdout.flush()?;
    if config.log {
        eprintln!("main {}", eventloop::sys::gettid());
        eprintln!("kv_server: lock strategy {}", config.lock);
    }
    Ok(server)
}

impl Server {
    /// Stops the pool after the loop has returned: runs every task still accepted and joins
    /// every worker.
    pub(crate) fn shut_down_pool(&mut self) {
        self.core.pool.shutdown();
        self.core.results.queue.close();
    }

    fn on_listener_ready(&mut self, dispatcher: &Dispatcher) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let Some((listener, _)) = &self.core.listener else {
                return;
            };
            match listener.accept() {
                Ok(Some((stream, _peer))) => self.add_connection(dispatcher, stream),
                Ok(None) => return,
                Err(error) => {
                    eprintln!("kv_server: accept failed: {error}");
                    if let Some((_, key)) = &self.core.listener {
                        let _ = dispatcher.modify_fd(*key, Interest::NONE);
                        if let Some(timer) = &self.accept_pause {
                            timer.enable(ACCEPT_PAUSE);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn resume_accepting(&mut self, dispatcher: &Dispatcher) {
        if let Some((_, key)) = &self.core.listener {
            let _ = dispatcher.modify_fd(*key, Interest::READABLE);
        }
    }

    /// The sweep timer fired: one bounded sweep goes to the pool, and the timer is set again.
    fn on_sweep_tick(&mut self) {
        self.core.sweep();
        if let Some(timer) = &self.sweep_timer {
            timer.enable(SWEEP_EVERY);
        }
    }

    fn add_connection(&mut self, dispatcher: &Dispatcher, stream: TcpStream) {
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
                linger_timer: None,
                pending: Batch::default(),
                running: false,
            })
        });
        if let Err(error) = added {
            eprintln!("kv_server: cannot register a connection: {error}");
        }
    }

    fn on_connection_ready(&mut self, dispatcher: &Dispatcher, key: Key, readiness: Readiness) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if readiness.is_error() || readiness.is_hang_up() {
            self.close(dispatcher, key);
            return;
        }
        if connection.session.is_lingering() {
            let stream = &connection.stream;
            if !connection
                .session
                .discard_input(&mut self.read_buffer, |buffer| stream.recv(buffer))
            {
                self.close(dispatcher, key);
            }
            return;
        }
        if readiness.is_readable() || readiness.is_read_closed() {
            let mut host = SessionHost {
                core: &mut self.core,
                pending: &mut connection.pending,
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

    // starter: w09-l05 todo "drain, complete each answer in its slot, service, offer room"
    /// Drains every finished batch, gives each reply to its connection (or drops it when the
    /// key is stale), frees budget for held lines, then sends once per connection served.
    fn on_results(&mut self, dispatcher: &Dispatcher) {
        let mut drained = std::mem::take(&mut self.drained);
        self.core.results.queue.drain_into(&mut drained);
        for mut batch in drained.drain(..) {
            let key = batch.key();
            let mut connection = key.and_then(|key| self.connections.get_mut(key));
            for (seq, reply) in batch.take_replies() {
                self.core.in_flight -= 1;
                let answer = reply.map_or(KvAnswer::Panicked, KvAnswer::Reply);
                if let (Some(connection), Some(key)) = (connection.as_deref_mut(), key) {
                    let mut host = SessionHost {
                        core: &mut self.core,
                        pending: &mut connection.pending,
                        key,
                    };
                    connection.session.complete(seq, answer, &mut host);
                }
            }
            if let (Some(connection), Some(key)) = (connection, key) {
                // Its next batch may leave now (`service` launches it).
                connection.running = false;
                if !connection.touched {
                    connection.touched = true;
                    self.touched.push(key);
                }
            }
            self.core.recycle(batch);
        }
        self.drained = drained;
        // The connections that got answers first: their next batches leave, which makes room
        // in those batches for the lines their sessions hold.
        let touched = std::mem::take(&mut self.touched);
        for &key in &touched {
            if let Some(connection) = self.connections.get_mut(key) {
                connection.touched = false;
                self.service(dispatcher, key);
            }
        }
        self.touched = touched;
        self.touched.clear();
        self.offer_room_to_waiting(dispatcher);
        self.check_shutdown_done(dispatcher);
    }

    /// Gives freed budget to connections holding a line, oldest first.
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
                pending: &mut connection.pending,
                key,
            };
            if connection.session.retry_held(&mut host) {
                connection.waiting_for_pool = false;
                self.service(dispatcher, key);
            } else {
                self.waiting_for_pool.push_front(key);
                return;
            }
        }
    }

    // starter: w09-l04 todo "advance, then launch the next batch unless one is running"
    /// The one place a connection moves forward: handle buffered lines, send once, close or
    /// linger when it is done, register the interest its state calls for; then its next batch
    /// goes to the pool, unless one is still there.
    fn service(&mut self, dispatcher: &Dispatcher, key: Key) {
        self.advance(dispatcher, key);
        if let Some(connection) = self.connections.get_mut(key) {
            if !connection.running && !connection.pending.is_empty() {
                connection.running = true;
                self.core.launch(&mut connection.pending);
            }
        }
    }

    fn advance(&mut self, dispatcher: &Dispatcher, key: Key) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.session.is_lingering() {
            return;
        }
        let mut host = SessionHost {
            core: &mut self.core,
            pending: &mut connection.pending,
            key,
        };
        let stream = &connection.stream;
        let progress = match connection
            .session
            .advance(&self.limits, &mut host, |unsent| stream.send(unsent))
        {
            Ok(progress) => progress,
            Err(_) => {
                // EPIPE or a reset: the client is gone.
                self.close(dispatcher, key);
                return;
            }
        };
        if progress == Progress::WaitingForPool && !connection.waiting_for_pool {
            connection.waiting_for_pool = true;
            self.waiting_for_pool.push_back(key);
        }
        let (readable, writable) = match connection.session.next_step(&self.limits) {
            Step::Close => {
                self.close(dispatcher, key);
                return;
            }
            Step::Linger => {
                self.linger(dispatcher, key);
                return;
            }
            Step::Poll { readable, writable } => (readable, writable),
        };
        let wanted = Interest::NONE
            .with_readable(readable)
            .with_writable(writable);
        if wanted != connection.interest {
            match dispatcher.modify_fd(connection.fd_key, wanted) {
                Ok(()) => connection.interest = wanted,
                Err(_) => self.close(dispatcher, key),
            }
        }
    }

    // starter: w09-l06 todo "shut the write side, arm the linger timer, discard input"
    /// After `line too long`: shut the write side, discard what the client still sends until
    /// it closes, for at most [`LINGER_TIMEOUT`] (the session's rule, [`Step::Linger`]).
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
        connection.linger_timer = Some(timer);
        connection.session.start_linger();
        let stream = &connection.stream;
        if !connection
            .session
            .discard_input(&mut self.read_buffer, |buffer| stream.recv(buffer))
        {
            self.close(dispatcher, key);
        }
    }

    /// Unregisters and closes a connection. Its batches still in the pool finish, and their
    /// replies are dropped when they arrive (the slab key is stale by then).
    fn close(&mut self, dispatcher: &Dispatcher, key: Key) {
        if let Some(connection) = self.connections.remove(key) {
            // Unregister before the fd is closed, so epoll never holds a closed fd.
            let _ = dispatcher.remove_fd(connection.fd_key);
            // Its lines that never left will never run: they leave the budget now.
            self.core.in_flight -= connection.pending.len();
            drop(connection);
        }
        self.check_shutdown_done(dispatcher);
    }

    // starter: w09-l06 todo "close the listener, stop input, answer what was read, exit when drained"
    /// SIGINT or SIGTERM: stop accepting, stop reading, answer what was read, then exit. A
    /// second signal closes everything at once.
    fn on_shutdown_signal(&mut self, dispatcher: &Dispatcher) {
        if self.shutting_down {
            self.close_all(dispatcher);
            return;
        }
        self.shutting_down = true;
        if let Some((listener, key)) = self.core.listener.take() {
            let _ = dispatcher.remove_fd(key);
            drop(listener);
        }
        self.accept_pause = None;
        self.sweep_timer = None;
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

    fn close_all(&mut self, dispatcher: &Dispatcher) {
        for key in self.connections.keys() {
            self.close(dispatcher, key);
        }
        dispatcher.exit();
    }

    fn check_shutdown_done(&mut self, dispatcher: &Dispatcher) {
        if self.shutting_down && self.connections.is_empty() {
            dispatcher.exit();
        }
    }
}
