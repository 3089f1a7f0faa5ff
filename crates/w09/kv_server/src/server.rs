//! The KV server's half of the W05 loop: what its lines mean, how a connection's commands reach
//! the pool in order, how their replies are settled, and the expiry sweep.
//!
//! The loop itself — the listener, the connections and their sessions (the course's shared
//! socket-free [`Session`]: framing, answers in request
//! order, output, limits, half-close, the line-too-long linger), the results queue and its waker,
//! backpressure and the shutdown drain — is the shared [`IoLoop`] of
//! `handoff_server::io_loop`, the very loop the W05 server runs; a change to connection handling
//! goes there. This module is its [`Service`], [`Core`]:
//!
//! - **Every command runs on the pool**, `STATS` and the errors included: the loop does no CPU
//!   work, not even the parse. The store is one [`KvEngine`] shared by the workers, so the
//!   batches of two connections run on two workers at once (their `GET`s under the engine's read
//!   locks).
//! - **One batch per connection at a time.** A client that pipelines `SET k 1` then `GET k`
//!   must read its own write, so a connection's commands run in the order it sent them: while
//!   its batch is in the pool, the lines read meanwhile gather in the connection's next batch
//!   ([`KvConnection`], at most [`MAX_BATCH`] lines; past that the session holds the line and
//!   stops reading), which leaves when the first comes back ([`Service::hand_over`]). The W05
//!   server may spread one connection over several workers because its verbs share no state; a
//!   store's commands do.
//! - **Backpressure** as in W05: the loop hands out at most `--queue` + workers requests; a line
//!   read when that budget is spent is held by its session, which stops reading, until results
//!   free the budget ([`Service::has_room`]).
//! - **Expiry**: a `GET` of an expired key removes it (lazily, in the store); a loop timer every
//!   [`SWEEP_EVERY`] hands one bounded [`KvEngine::sweep`] to the pool, at most one at a time.
//! - **SIGINT/SIGTERM**: the loop's drain (stop accepting, stop reading, answer every request
//!   already read, close each connection once its answers are sent), then `main` joins the pool.
//! - **`--data-dir`** (W10): the store is durable. Recovery runs on a pool worker before the
//!   server listens; every batch goes through [`Durable::run_batch`], which answers a write only
//!   after the fsync that covers it; the sweep tick also hands due checkpoints to the pool. The
//!   loop itself never touches the disk. See the `durable` module.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eventloop::net::{DEFAULT_BACKLOG, TcpListener};
use eventloop::slab::Key;
use eventloop::{Dispatcher, Timer};
use handoff_protocol::session::{Handled, Host, Response, Session};
use handoff_server::io_loop::{Facts, Found, IoLoop, LoopConfig, Results, Service};
use handoff_server::startup::{Serve, print_listening, start_pool};
use kv_store::{ErrorReply, KvEngine, LockStrategy, Reply};
use thread_pool::ThreadPool;

use crate::batch::{Batch, MAX_BATCH};
use crate::durable::{Durability, Durable};

/// The prefix of the worker threads' names (`ps -T`, panic messages).
pub(crate) const WORKER_THREAD_NAME: &str = "kv-worker";

/// The name the loop's error lines start with.
const NAME: &str = "kv_server";
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
    /// Where to listen, the pool and the limits.
    pub(crate) serve: Serve,
    /// How the store is locked.
    pub(crate) lock: LockStrategy,
    /// Log `main <tid>` and one line per request.
    pub(crate) log: bool,
    /// Where and how the store is made durable; `None`: in memory only.
    pub(crate) durability: Option<Durability>,
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
    // starter: w09-l04 todo "Do 7: the store reply through Reply::write_to, or the task panicked error line"
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            KvAnswer::Reply(reply) => reply.write_to(out),
            KvAnswer::Panicked => out.extend_from_slice(b"ERROR task panicked\n"),
        }
    }

    fn is_error(&self) -> bool {
        matches!(self, KvAnswer::Reply(Reply::Error(_)) | KvAnswer::Panicked)
    }

    // starter: w09-l06 todo "Do 1: the KV protocol answer to a line over the limit"
    fn line_too_long() -> Self {
        KvAnswer::Reply(Reply::Error(ErrorReply::LineTooLong))
    }
}

/// The loop this server runs: the shared pool-handoff loop with [`Core`] as its service.
pub(crate) type Server = IoLoop<Core>;

/// The KV server's own state of one connection: its next batch.
#[derive(Debug, Default)]
pub(crate) struct KvConnection {
    /// Lines read and accepted, waiting for the running batch to come back.
    pending: Batch,
    /// Whether a batch of this connection is in the pool (or its results queue).
    running: bool,
}

/// The state the loop shares between connections: the pool, the engine, the budget.
#[derive(Debug)]
pub(crate) struct Core {
    pool: ThreadPool,
    engine: Arc<KvEngine>,
    results: Arc<Results<Batch>>,
    /// Requests handed to the pool whose replies the loop has not drained yet.
    in_flight: usize,
    /// The most requests `in_flight` may reach: the queue capacity plus one per worker.
    max_in_flight: usize,
    spare_batches: Vec<Batch>,
    next_task_id: u64,
    /// Set while a sweep task is in the pool, so there is never more than one.
    sweeping: Arc<AtomicBool>,
    /// Hands a sweep to the pool every [`SWEEP_EVERY`], until a shutdown begins.
    sweep_timer: Option<Timer>,
    log: bool,
    /// The write-ahead log, with `--data-dir`.
    durable: Option<Arc<Durable>>,
}

impl Core {
    /// A core with nothing in flight yet: `max_in_flight` is the request budget, `results` the
    /// loop's results queue, `log` whether to log every request, `durable` the write-ahead log.
    fn new(
        pool: ThreadPool,
        engine: Arc<KvEngine>,
        results: Arc<Results<Batch>>,
        max_in_flight: usize,
        log: bool,
        durable: Option<Arc<Durable>>,
    ) -> Self {
        Core {
            pool,
            engine,
            results,
            in_flight: 0,
            max_in_flight,
            spare_batches: Vec::new(),
            next_task_id: 1,
            sweeping: Arc::new(AtomicBool::new(false)),
            sweep_timer: None,
            log,
            durable,
        }
    }

    // starter: w09-l04 todo "Do 4: false when the budget is spent or the batch full; else start it if empty, push, count"
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

    // starter: w09-l04 todo "Do 5: swap in a spare batch, spawn a task that runs it and delivers it to results"
    /// Hands a connection's batch to the pool as one task.
    ///
    /// The pool's capacity is the whole request budget plus one slot for the sweep, and every
    /// queued batch holds at least one request of the budget, so `spawn` never blocks here.
    fn launch(&mut self, pending: &mut Batch) {
        let mut batch = std::mem::replace(pending, self.spare_batches.pop().unwrap_or_default());
        let results = Arc::clone(&self.results);
        let engine = Arc::clone(&self.engine);
        let log = self.log;
        let durable = self.durable.clone();
        let task = move || match durable {
            // Durable: a batch with writes waits for their fsync, maybe on another worker.
            Some(durable) => durable.run_batch(batch),
            None => {
                batch.run(&engine, log, None);
                results.deliver(batch);
            }
        };
        if self.pool.spawn(task).is_err() {
            // Only a shut-down pool refuses, and it shuts down only after the loop returned.
            eprintln!("kv_server: the pool refused a batch while shutting down");
        }
    }

    // starter: w09-l05 empty "Do 2: one bounded engine sweep in the pool at a time: the sweeping flag, then try_spawn"
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

    /// Hands a checkpoint to the pool when one is due and none is running.
    fn checkpoint_if_due(&mut self) {
        let Some(durable) = &self.durable else {
            return;
        };
        if !durable.checkpoint_due() || !durable.begin_checkpoint() {
            return;
        }
        let task_durable = Arc::clone(durable);
        if self
            .pool
            .try_spawn(move || task_durable.checkpoint())
            .is_err()
        {
            // Full or shut down: the next tick tries again.
            durable.abandon_checkpoint();
        }
    }

    fn recycle(&mut self, batch: Batch) {
        if self.spare_batches.len() < SPARE_BATCHES {
            self.spare_batches.push(batch);
        }
    }
}

impl Service for Core {
    type Response = KvAnswer;
    type Pending = ();
    type Connection = KvConnection;
    type Done = Batch;
    type Host<'a> = SessionHost<'a>;

    fn host<'a>(
        &'a mut self,
        key: Key,
        state: &'a mut KvConnection,
        _facts: Facts,
    ) -> SessionHost<'a> {
        SessionHost {
            core: self,
            pending: &mut state.pending,
            key,
        }
    }

    // starter: w09-l04 todo "Do 6: launch the pending batch unless it is empty or one of this connection is running"
    /// A connection's next batch leaves only while none of its batches is in the pool, so its
    /// commands run in the order it sent them.
    fn hand_over(&mut self, _key: Key, state: Option<&mut KvConnection>) {
        if let Some(connection) = state
            && !connection.running
            && !connection.pending.is_empty()
        {
            connection.running = true;
            self.launch(&mut connection.pending);
        }
    }

    fn owner(batch: &Batch) -> Option<Key> {
        batch.key()
    }

    // starter: w09-l04 todo "Do 7: each reply leaves the budget and completes its slot; then the connection is not running"
    /// Every reply of a finished batch leaves the budget and, if its connection is still there,
    /// takes its request's place in the session; then that connection's next batch may leave
    /// (the loop serves it next, and [`hand_over`](Service::hand_over) launches it).
    fn finished(&mut self, mut batch: Batch, mut found: Option<Found<'_, Self>>, _facts: Facts) {
        for (seq, reply) in batch.take_replies() {
            self.in_flight -= 1;
            if let Some(found) = found.as_mut() {
                let answer = reply.map_or(KvAnswer::Panicked, KvAnswer::Reply);
                let mut host = SessionHost {
                    core: self,
                    pending: &mut found.state.pending,
                    key: found.key,
                };
                found.session.complete(seq, answer, &mut host);
            }
        }
        if let Some(found) = found {
            found.state.running = false;
        }
        self.recycle(batch);
    }

    fn has_room(&self) -> bool {
        self.in_flight < self.max_in_flight
    }

    // starter: w09-l06 empty "Do 3: the lines of the pending batch, which never left, leave the budget"
    fn closed(&mut self, _session: &Session<KvAnswer, ()>, state: KvConnection) {
        // Its lines that never left will never run: they leave the budget now. Its batch still
        // in the pool finishes, and its replies are dropped when they arrive (the key is stale).
        // (The batch is dropped, not recycled: it still holds those lines.)
        self.in_flight -= state.pending.len();
    }
}

/// The [`Host`] a session gets: every line goes to the connection's next batch, under the
/// budget.
#[derive(Debug)]
pub(crate) struct SessionHost<'a> {
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

    // starter: w09-l06 empty "Do 2: count line too long and a panicked task with KvEngine::error"
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

/// Builds the server on `dispatcher`, registers the shutdown signals and the sweep timer, and
/// prints the listening line; the caller runs the loop.
///
/// The caller must have blocked SIGINT and SIGTERM on this thread before any thread exists.
pub(crate) fn start(
    dispatcher: &Dispatcher,
    config: &Config,
) -> anyhow::Result<Rc<RefCell<Server>>> {
    let listener = TcpListener::bind(config.serve.addr, DEFAULT_BACKLOG)
        .with_context(|| format!("cannot listen on {}", config.serve.addr))?;
    let local_addr = listener.local_addr()?;
    // Two slots more than the budget: one for the one sweep task that may be queued, one for
    // the one checkpoint (or, at start and at exit, the log's recovery and last fsync).
    let (pool, max_in_flight) = start_pool(
        WORKER_THREAD_NAME,
        config.serve.workers,
        config.serve.queue,
        2,
    )
    .context("cannot start the worker threads")?;
    let loop_config = LoopConfig {
        name: NAME,
        limits: config.serve.limits,
        results_capacity: max_in_flight,
    };
    let engine = Arc::new(KvEngine::new(config.lock));
    let wal = match &config.durability {
        Some(durability) => Some(recover_on_pool(&pool, &durability.dir, &engine)?),
        None => None,
    };
    let log = config.log;
    let server = IoLoop::start(dispatcher, listener, loop_config, |results| {
        let durable = wal
            .zip(config.durability.as_ref())
            .map(|(wal, durability)| {
                Arc::new(Durable::new(
                    wal,
                    Arc::clone(&engine),
                    Arc::clone(&results),
                    log,
                    durability,
                ))
            });
        Core::new(pool, engine, results, max_in_flight, log, durable)
    })?;

    let weak = Rc::downgrade(&server);
    let sweep_timer = dispatcher.create_timer(move |_dispatcher| {
        if let Some(server) = weak.upgrade() {
            on_sweep_tick(&mut server.borrow_mut());
        }
    });
    sweep_timer.enable(SWEEP_EVERY);
    server.borrow_mut().service_mut().sweep_timer = Some(sweep_timer);
    Server::drain_on_shutdown_signals(&server, dispatcher)?;

    print_listening(local_addr)?;
    if config.log {
        eprintln!("main {}", eventloop::sys::gettid());
        eprintln!("{NAME}: lock strategy {}", config.lock);
    }
    Ok(server)
}

/// Opens and replays the log in `dir` on a pool worker, and waits for it: the loop thread does no
/// disk IO, not even before it starts. Prints what recovery found as one line on stderr.
fn recover_on_pool(
    pool: &ThreadPool,
    dir: &std::path::Path,
    engine: &Arc<KvEngine>,
) -> anyhow::Result<wal::Wal> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let task_dir = dir.to_path_buf();
    let task_engine = Arc::clone(engine);
    let task = move || {
        let _ = sender.send(crate::durable::recover(&task_dir, &task_engine));
    };
    if pool.spawn(task).is_err() {
        anyhow::bail!("the pool refused the recovery task");
    }
    let (wal, recovered) = receiver
        .recv()
        .context("the recovery task ended without an answer")?
        .with_context(|| format!("cannot recover the log in {}", dir.display()))?;
    eprintln!("{NAME}: {}", recovered.summary());
    Ok(wal)
}

/// The sweep timer fired: one bounded sweep goes to the pool (and, with `--data-dir`, a due
/// checkpoint), and the timer is set again; a draining server sweeps no more.
fn on_sweep_tick(server: &mut Server) {
    if server.is_shutting_down() {
        return;
    }
    let core = server.service_mut();
    core.sweep();
    core.checkpoint_if_due();
    if let Some(timer) = &core.sweep_timer {
        timer.enable(SWEEP_EVERY);
    }
}

/// Stops the pool after the loop has returned: with `--data-dir`, hands it the log's last fsync
/// first (the loop thread does no disk IO); runs every task still accepted and joins every
/// worker; then closes the results queue.
pub(crate) fn shut_down_pool(server: &Server) {
    let core = server.service();
    if let Some(durable) = &core.durable {
        let durable = Arc::clone(durable);
        let last_sync = move || {
            if let Err(error) = durable.close() {
                eprintln!("{NAME}: the last fsync of the log failed: {error}");
                std::process::exit(1);
            }
        };
        if core.pool.spawn(last_sync).is_err() {
            eprintln!("{NAME}: the pool refused the log's last fsync");
        }
    }
    core.pool.shutdown();
    server.close_results();
}

#[cfg(test)]
mod tests;
