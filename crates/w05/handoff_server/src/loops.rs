//! `--loops N`: N IO event loops on one port, the Envoy threading model, sharing one CPU pool.
//!
//! With one loop (the default) the main thread runs it, as every W05 lesson shows. With N > 1:
//!
//! - **N loops, each an [`eventloop::Worker`]** with its own [`Dispatcher`], started by a
//!   [`WorkerPool`] whose `start` returns once every loop runs. Each loop is a whole W05 server
//!   (`server::start_loop`): its own `SO_REUSEPORT` listener on the shared port, its own
//!   connections, its own results queue and waker. The kernel spreads new connections over the
//!   listeners by a hash of the client's address and port, and a connection belongs to the loop
//!   that accepted it for good: the loop's state is `Rc`-owned, so the compiler itself keeps it
//!   (and the sockets in it) on that loop's thread. Only that loop touches the socket; the pool
//!   never does.
//! - **One CPU [`ThreadPool`]** for all loops. A batch carries its loop's `Results` (the results
//!   queue and waker), so the worker that ran it delivers it to the loop that owns the connection.
//! - **Per-loop state in a thread-local [`Slot`]**: each loop's server (and with it its counters)
//!   is the slot's value on that loop's thread. A posted callback finds the server of the thread
//!   it runs on with one lock-free `Slot::get`.
//! - **`stats` adds up every loop**: the loop that read the request asks the main thread, which
//!   runs a callback on every loop with [`WorkerPool::run_on_all_workers`] (Envoy's
//!   `runOnAllThreads`). Each loop reads its own counters between its callbacks — so a response
//!   a client has read is counted — and sends them back; the completion, which runs once after
//!   the last loop, adds them up and posts the answer to the asking loop. No loop ever waits for
//!   another, and the answer takes its place in the connection's response order.
//! - **The main thread supervises**: it owns SIGINT/SIGTERM (blocked on every thread, read from
//!   the main dispatcher's signalfd) and posts the drain to every loop; each loop reports when it
//!   has drained, and keeps running until all have, so a `stats` from a loop still draining can
//!   visit every loop. Then the main thread stops the loops, and then the pool: every accepted
//!   task runs, every thread is joined. The process has N loops + the workers + main.
//!
//! ## Budgets and limits: exact shares
//!
//! Each loop hands work out within its share of the request budget (`--queue` + workers), and
//! the shares add up to the pool's capacity, so handing a batch over still never waits. The W06
//! gate stays loop-only (no atomic, no lock on the request path, as W06 L01 asks): each loop's
//! gate gets its exact share of `--max-inflight` and `--max-queue-depth`, so the process as a
//! whole never has more in flight than the limit. The price of a split over a shared count: a
//! loop at its share sheds while another may have room. Each loop keeps its own retry budget
//! over its own recent first tries.

use std::cell::RefCell;
use std::io::Write as _;
use std::rc::{Rc, Weak};
use std::sync::{Arc, mpsc};

use anyhow::{Context as _, bail};
use eventloop::net::ReservedPort;
use eventloop::shutdown::{ShutdownSignals, SignalStep};
use eventloop::{Dispatcher, Slot, ThreadLocal, Timer, WorkerPool};
use handoff_protocol::Stats;
use thread_pool::ThreadPool;

use handoff_server::startup::print_listening;

use crate::loop_link::{LoopLink, LoopTally, MainChannel, Message};
use crate::server::{self, Config, Server};
use crate::telemetry::OverloadStats;

/// A loop thread's value of the server slot: that loop's server, once it is built.
type LoopServer = RefCell<Option<Rc<RefCell<Server>>>>;

/// `share` of `total` split as evenly as possible over `parts`: the first `total % parts` get one
/// more, so the shares add up to `total` exactly.
fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// The configuration loop `index` of `config.loops` runs with: its share of the gate's limits.
fn loop_config(config: &Config, addr: std::net::SocketAddr, index: usize) -> Config {
    let mut config = config.clone();
    config.serve.addr = addr;
    let gate = &mut config.overload.gate;
    gate.max_inflight = gate.max_inflight.map(|max| share(max, config.loops, index));
    gate.max_queue_depth = gate
        .max_queue_depth
        .map(|max| share(max, config.loops, index));
    config
}

/// Checks that every loop gets at least one of `total` (`what` names it for the error).
fn check_divisible(total: Option<usize>, loops: usize, what: &str) -> anyhow::Result<()> {
    match total {
        Some(total) if total < loops => bail!(
            "{what} is {total}, fewer than --loops {loops}: each loop takes an exact share, \
             and every loop needs at least one"
        ),
        _ => Ok(()),
    }
}

/// The main thread's state while the loops run.
struct Supervisor {
    loops: WorkerPool,
    servers: Arc<Slot<LoopServer>>,
    pool: Arc<ThreadPool>,
    drained: usize,
    signals: ShutdownSignals,
}

/// Runs `f` with the server of the loop thread it is called on, if it has one.
fn with_loop_server(servers: &Slot<LoopServer>, f: impl FnOnce(&RefCell<Server>)) {
    let Some(cell) = servers.get() else {
        return;
    };
    let server = cell.borrow().clone();
    if let Some(server) = server {
        f(&server);
    }
}

impl Supervisor {
    /// Gathers every loop's counters with `run_on_all_workers`; `then` gets the sum, on the loop
    /// that finished last.
    fn gather(&self, then: impl FnOnce(Stats, OverloadStats) + Send + 'static) {
        let (sender, parts) = mpsc::channel();
        let servers = Arc::clone(&self.servers);
        let pool = Arc::clone(&self.pool);
        let posted = self.loops.run_on_all_workers(
            move |_dispatcher| {
                with_loop_server(&servers, |server| {
                    let _ = sender.send(server::tally(&server.borrow()));
                });
            },
            move || {
                // Every loop's callback has run (and sent) before this runs.
                let mut total = LoopTally::default();
                for part in parts.try_iter() {
                    total.add(&part);
                }
                let (stats, overload) = total.into_stats(&pool);
                then(stats, overload);
            },
        );
        if let Err(error) = posted {
            eprintln!("handoff_server: cannot gather the loops' stats: {error}");
        }
    }

    fn on_messages(&mut self, dispatcher: &Dispatcher, messages: &mpsc::Receiver<Message>) {
        for message in messages.try_iter() {
            match message {
                Message::Stats { from, key, seq } => {
                    let Some(asker) = self.loops.workers()[from].dispatcher().cloned() else {
                        continue;
                    };
                    let servers = Arc::clone(&self.servers);
                    self.gather(move |stats, overload| {
                        asker.post_with(move |dispatcher| {
                            with_loop_server(&servers, |server| {
                                server::complete_stats(
                                    &mut server.borrow_mut(),
                                    dispatcher,
                                    key,
                                    seq,
                                    stats,
                                    overload,
                                );
                            });
                        });
                    });
                }
                Message::Drained => {
                    self.drained += 1;
                    if self.drained == self.loops.worker_count() {
                        dispatcher.exit();
                    }
                }
            }
        }
    }

    /// SIGINT or SIGTERM: every loop drains; a second signal closes everything at once (the
    /// rule of `eventloop::shutdown`).
    fn on_signal(&mut self) {
        let second = self.signals.on_signal() == SignalStep::CloseAll;
        for index in 0..self.loops.worker_count() {
            let servers = Arc::clone(&self.servers);
            let posted = self.loops.post_to_with(index, move |dispatcher| {
                with_loop_server(&servers, |server| {
                    let mut server = server.borrow_mut();
                    if second {
                        server.close_all(dispatcher);
                    } else {
                        server.on_shutdown_signal(dispatcher);
                    }
                });
            });
            if let Err(error) = posted {
                eprintln!("handoff_server: cannot tell loop {index} to stop: {error}");
            }
        }
    }

    /// `--stats-interval-ms`: the stats line of every loop added up, on stderr.
    fn print_stats(&self) {
        self.gather(|stats, overload| {
            let mut line = b"stats ".to_vec();
            overload.write_line(&stats, &mut line);
            let _ = std::io::stderr().lock().write_all(&line);
        });
    }
}

/// Runs the server with `config.loops` (> 1) loops until SIGINT or SIGTERM has drained them all.
///
/// The order is the pool, the main dispatcher, the loops, their slot, their listeners, and only
/// then `listening on`: no client connects before every loop serves the port.
///
/// The caller must have blocked SIGINT and SIGTERM on this thread before any thread exists.
pub(crate) fn run(config: &Config) -> anyhow::Result<()> {
    let (pool, budget) = server::build_pool(config)?;
    check_shares(config, budget)?;
    let pool = Arc::new(pool);

    let main = Dispatcher::new("handoff-main")?;
    let supervisor: SupervisorCell = Rc::default();
    let channel = open_main_channel(&main, &supervisor)?;
    let (workers, tls, servers) = start_loops(config.loops)?;
    let addr = start_servers(config, &workers, &servers, &pool, budget, &channel)?;

    let supervised = Rc::new(RefCell::new(Supervisor {
        loops: workers,
        servers: Arc::clone(&servers),
        pool: Arc::clone(&pool),
        drained: 0,
        signals: ShutdownSignals::new(),
    }));
    *supervisor.borrow_mut() = Some(Rc::downgrade(&supervised));
    let _stats_timer = supervise(&main, config, &supervised)?;

    print_listening(addr)?;
    if config.log {
        eprintln!("main {}", eventloop::sys::gettid());
    }
    main.run().context("the main event loop failed")?;

    // Every loop has drained. Their servers go first (each on its own thread), then the loops,
    // then the pool: it runs any task still accepted (from clients that went away) and joins
    // every worker.
    tls.shutdown_global()?;
    supervised.borrow_mut().loops.stop();
    pool.shutdown();
    Ok(())
}

/// The main thread's supervisor, set once the loops run; the main dispatcher's callbacks hold it
/// weakly, so it is dropped at the end of [`run`] whatever they still hold.
type SupervisorCell = Rc<RefCell<Option<Weak<RefCell<Supervisor>>>>>;

/// Checks that every loop gets at least one of each budget and limit it takes a share of.
fn check_shares(config: &Config, budget: usize) -> anyhow::Result<()> {
    let loops = config.loops;
    check_divisible(Some(budget), loops, "--queue plus --workers")?;
    check_divisible(config.overload.gate.max_inflight, loops, "--max-inflight")?;
    check_divisible(
        config.overload.gate.max_queue_depth,
        loops,
        "--max-queue-depth",
    )
}

/// The way from the loops to the main thread: a channel whose waker, on `main`, hands the
/// messages to the supervisor.
fn open_main_channel(
    main: &Dispatcher,
    supervisor: &SupervisorCell,
) -> anyhow::Result<Arc<MainChannel>> {
    let (sender, messages) = mpsc::channel();
    let waker = main.add_waker({
        let supervisor = Rc::clone(supervisor);
        move |dispatcher| {
            let supervisor = supervisor.borrow().as_ref().and_then(Weak::upgrade);
            if let Some(supervisor) = supervisor {
                supervisor.borrow_mut().on_messages(dispatcher, &messages);
            }
        }
    })?;
    Ok(Arc::new(MainChannel::new(sender, waker)))
}

/// Starts `loops` loops (`start` returns once each is ready), then gives each its slot of loop
/// state, empty until its server is built.
fn start_loops(loops: usize) -> anyhow::Result<(WorkerPool, ThreadLocal, Arc<Slot<LoopServer>>)> {
    let mut workers = WorkerPool::new(loops);
    workers.start().context("cannot start the event loops")?;
    let tls = ThreadLocal::new();
    for dispatcher in workers.dispatchers() {
        tls.register_thread(dispatcher)?;
    }
    let servers: Arc<Slot<LoopServer>> = Arc::new(tls.allocate_slot()?);
    servers.set(LoopServer::default)?;
    Ok((workers, tls, servers))
}

/// Builds every loop's server on its own thread, each with its own `SO_REUSEPORT` listener on
/// one port, and returns that port's address once all of them listen.
fn start_servers(
    config: &Config,
    workers: &WorkerPool,
    servers: &Arc<Slot<LoopServer>>,
    pool: &Arc<ThreadPool>,
    budget: usize,
    channel: &Arc<MainChannel>,
) -> anyhow::Result<std::net::SocketAddr> {
    // The port, reserved in the `SO_REUSEPORT` group until every loop has joined it (port 0
    // picks one here). It does not listen, so a client that connects before every loop has
    // joined lands in a loop's queue, never in one that dropping the reservation would reset.
    let reservation = ReservedPort::bind(config.serve.addr)
        .with_context(|| format!("cannot listen on {}", config.serve.addr))?;
    let addr = reservation.local_addr()?;
    let (built_sender, built) = mpsc::channel();
    for index in 0..config.loops {
        let loop_config = loop_config(config, addr, index);
        let (pool, servers, built) = (Arc::clone(pool), Arc::clone(servers), built_sender.clone());
        let tid = workers.workers()[index]
            .thread_id()
            .context("a running loop has a thread id")?;
        let link = LoopLink::new(index, tid, Arc::clone(channel));
        workers.post_to_with(index, move |dispatcher| {
            let budget = share(budget, loop_config.loops, index);
            let started = match servers.get() {
                // The slot's initialiser was posted before this, so it has run.
                Some(cell) => server::start_loop(dispatcher, &loop_config, pool, budget, link)
                    .map(|server| *cell.borrow_mut() = Some(server)),
                None => Err(anyhow::anyhow!(
                    "its slot has no value ({} failed initialisations)",
                    servers.failed_initialisations()
                )),
            };
            let _ = built.send(started.map_err(|error| format!("loop {index}: {error:#}")));
        })?;
    }
    drop(built_sender);
    for _ in 0..config.loops {
        match built.recv() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => bail!(error),
            Err(mpsc::RecvError) => bail!("an event loop died while starting"),
        }
    }
    drop(reservation);
    Ok(addr)
}

/// The main thread's own duties while the loops run: the shutdown signals and, with
/// `--stats-interval-ms`, the stats timer (returned, so it lives as long as the caller keeps it).
fn supervise(
    main: &Dispatcher,
    config: &Config,
    supervised: &Rc<RefCell<Supervisor>>,
) -> anyhow::Result<Option<Timer>> {
    main.add_signals(&[libc::SIGINT, libc::SIGTERM], {
        let supervised = Rc::downgrade(supervised);
        move |_, _signal| {
            if let Some(supervised) = supervised.upgrade() {
                supervised.borrow_mut().on_signal();
            }
        }
    })?;
    Ok(config.overload.stats_interval.map(|interval| {
        let supervised = Rc::downgrade(supervised);
        let timer = main.create_timer(move |_| {
            if let Some(supervised) = supervised.upgrade() {
                supervised.borrow().print_stats();
            }
        });
        timer.enable_repeating(interval);
        timer
    }))
}

#[cfg(test)]
mod tests;
