//! [`Worker`] and [`WorkerPool`]: named threads that each run their own [`Dispatcher`].
//!
//! This is the Envoy threading model: instead of one event loop plus a pool of anonymous
//! threads pulling from a shared queue, every worker is a full event loop. Work reaches a worker
//! by being *posted* to its dispatcher, so everything a worker touches can live on that worker,
//! unshared, and per-thread state ([`slot`]) needs no locks.
//!
//! The lifecycle is explicit:
//!
//! - [`Worker::start`] spawns the thread, which creates its dispatcher and reports ready (with
//!   its kernel thread id) before `start` returns, so a post right after `start` always has a
//!   loop to go to. [`WorkerPool::start`] spawns all workers first and then waits for all of
//!   them, so they start up in parallel.
//! - Each worker counts the posted callbacks it has run ([`Worker::handled_count`]). A callback
//!   that panics is caught on the worker (the loop survives) and still counted.
//! - An *init hook* ([`Worker::with_init`], [`WorkerPool::with_init`]) runs on the worker with
//!   its own `&Dispatcher` before it reports ready, so a worker can own fds, timers and a
//!   listener from the start; `start` returns once every hook has run (or with its error).
//!   Later, [`Worker::post_with`] and [`WorkerPool::run_on_all_workers`] hand posted work the
//!   worker's `&Dispatcher` too.
//! - [`Worker::stop`] asks the dispatcher to exit and joins the thread. By the dispatcher's rule
//!   for posts pending at exit, everything posted before `stop` has run when it returns (within
//!   [`EXIT_DRAIN_ROUNDS`](crate::dispatcher::EXIT_DRAIN_ROUNDS) rounds of posts made by posts;
//!   what a callback that keeps re-posting itself leaves is dropped, counted in
//!   [`Worker::posts_dropped_at_exit`], so `stop` always returns). The thread then tears down its
//!   thread-local [`slot`] values, last slot first, before its locals are destroyed.
//!   `Drop` stops a worker that is still running.
//! - A worker whose thread has died (a callback posted through its raw [`DispatcherHandle`]
//!   panicked out of the loop) is not running: [`Worker::is_running`] says so and
//!   [`Worker::post`] returns [`WorkerError::Died`] instead of dropping the work.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::dispatcher::{Dispatcher, DispatcherHandle};
use crate::{slot, sys};

/// A worker's init hook: runs on the worker thread with its dispatcher, before it is ready.
type InitHook = Arc<dyn Fn(&Dispatcher) -> io::Result<()> + Send + Sync>;

/// Why a worker operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerError {
    /// `start` was called on a worker that is already running.
    AlreadyStarted,
    /// The worker is not running (never started, or stopped).
    NotRunning,
    /// `post_to` named a worker the pool does not have.
    NoSuchWorker {
        /// The index asked for.
        index: usize,
        /// How many workers the pool has.
        count: usize,
    },
    /// The thread could not be spawned, its dispatcher could not be created, or its init hook
    /// returned this error.
    Start(io::Error),
    /// The worker thread died before it reported ready (its init hook panicked).
    DiedDuringStart,
    /// The worker's thread has died: a callback panicked out of its event loop. Work posted to
    /// it would never run.
    Died {
        /// The worker's name.
        name: String,
    },
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::AlreadyStarted => write!(f, "the worker is already running"),
            WorkerError::NotRunning => write!(f, "the worker is not running"),
            WorkerError::NoSuchWorker { index, count } => {
                write!(f, "no worker {index}: the pool has {count}")
            }
            WorkerError::Start(error) => write!(f, "the worker could not start: {error}"),
            WorkerError::DiedDuringStart => write!(f, "the worker thread died while starting"),
            WorkerError::Died { name } => write!(f, "worker {name}'s thread has died"),
        }
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Start(error) => Some(error),
            _ => None,
        }
    }
}

/// What a running worker's thread reported when it became ready.
#[derive(Debug)]
struct Running {
    handle: DispatcherHandle,
    tid: i32,
    thread: JoinHandle<()>,
    /// Cleared by the thread when its loop has ended for good (returned or panicked), before
    /// its dispatcher is dropped.
    alive: Arc<AtomicBool>,
}

/// A worker that has been spawned but has not yet reported ready.
#[derive(Debug)]
struct Starting {
    ready: mpsc::Receiver<io::Result<(DispatcherHandle, i32)>>,
    thread: JoinHandle<()>,
    alive: Arc<AtomicBool>,
}

/// Clears a worker's `alive` flag when dropped, so even a thread that unwinds is reported dead.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    // starter: w04-l05 empty "nothing to release until your type owns something that needs it."
    fn drop(&mut self) {
        // Release pairs with the Acquire in `Worker::is_alive`.
        self.0.store(false, Ordering::Release);
    }
}

/// A named thread with its own [`Dispatcher`], and a count of the work it handled.
///
/// ```
/// use eventloop::Worker;
///
/// let mut worker = Worker::new("worker_0");
/// worker.start().unwrap();
/// let (sender, receiver) = std::sync::mpsc::channel();
/// worker
///     .post(move || sender.send(std::thread::current().name().map(str::to_owned)).unwrap())
///     .unwrap();
/// assert_eq!(receiver.recv().unwrap().as_deref(), Some("worker_0"));
/// worker.stop();
/// assert_eq!(worker.handled_count(), 1);
/// ```
pub struct Worker {
    name: String,
    running: Option<Running>,
    /// Posted callbacks run so far. Written only by the worker thread; read by anyone (a
    /// snapshot while it runs, exact after `stop`, whose join orders the last increment first).
    handled: Arc<AtomicU64>,
    /// Posts the bounded exit drain dropped, over every run of the worker.
    dropped_at_exit: Arc<AtomicU64>,
    /// Runs on the worker thread before it reports ready.
    init: Option<InitHook>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("running", &self.running)
            .field("handled", &self.handled)
            .field("dropped_at_exit", &self.dropped_at_exit)
            .field("has_init_hook", &self.init.is_some())
            .finish()
    }
}

impl Worker {
    // starter: w04-l05 todo "new"
    /// A worker named `name` (also its thread's name and its dispatcher's), not started.
    pub fn new(name: impl Into<String>) -> Worker {
        Worker {
            name: name.into(),
            running: None,
            handled: Arc::new(AtomicU64::new(0)),
            dropped_at_exit: Arc::new(AtomicU64::new(0)),
            init: None,
        }
    }

    // starter: w04-l05 todo "with_init"
    /// A worker whose thread runs `init` with its own dispatcher before it reports ready (at
    /// every start), so the worker can own fds, timers or a listener from the start. If `init`
    /// fails, [`start`](Self::start) returns its error and the thread ends.
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use std::rc::Rc;
    /// use eventloop::net::{DEFAULT_BACKLOG, TcpListener};
    /// use eventloop::{Interest, Worker};
    ///
    /// let (addr_sender, addr) = std::sync::mpsc::channel();
    /// let mut worker = Worker::with_init("acceptor", move |dispatcher| {
    ///     // Runs on the worker: the listener and its callback belong to the worker's loop.
    ///     let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG)?);
    ///     addr_sender.send(listener.local_addr()?).unwrap();
    ///     let accepting = Rc::clone(&listener); // the registration owns the listener
    ///     dispatcher.add_fd(listener.as_fd(), Interest::READABLE, move |dispatcher, _| {
    ///         if let Ok(Some(_connection)) = accepting.accept() {
    ///             dispatcher.exit();
    ///         }
    ///     })?;
    ///     Ok(())
    /// });
    /// worker.start().unwrap(); // returns once the listener is registered
    /// let _client = std::net::TcpStream::connect(addr.recv().unwrap()).unwrap();
    /// worker.stop(); // the accept callback has ended the loop, or stop does
    /// ```
    pub fn with_init(
        name: impl Into<String>,
        init: impl Fn(&Dispatcher) -> io::Result<()> + Send + Sync + 'static,
    ) -> Worker {
        let mut worker = Worker::new(name);
        worker.init = Some(Arc::new(init));
        worker
    }

    // starter: w04-l05 todo "name"
    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    // starter: w04-l05 todo "start"
    /// Spawns the thread and returns once its dispatcher is running.
    pub fn start(&mut self) -> Result<(), WorkerError> {
        let starting = self.spawn()?;
        self.finish_start(starting)
    }

    // starter: w04-l05 todo "spawn"
    fn spawn(&self) -> Result<Starting, WorkerError> {
        if self.running.is_some() {
            return Err(WorkerError::AlreadyStarted);
        }
        let (sender, ready) = mpsc::channel();
        let name = self.name.clone();
        let init = self.init.clone();
        let dropped_at_exit = Arc::clone(&self.dropped_at_exit);
        let alive = Arc::new(AtomicBool::new(true));
        let alive_on_thread = Arc::clone(&alive);
        let thread = thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                let dispatcher = match Dispatcher::new(name) {
                    Ok(dispatcher) => dispatcher,
                    Err(error) => {
                        let _ = sender.send(Err(error));
                        return;
                    }
                };
                // Declared after the dispatcher, so it is dropped (and the worker reported
                // dead) before the dispatcher, even when the thread unwinds.
                let alive = AliveGuard(alive_on_thread);
                if let Some(init) = init
                    && let Err(error) = init(&dispatcher)
                {
                    let _ = sender.send(Err(error));
                    return;
                }
                // The receiver waits in `finish_start`; if it is gone, nobody will post here.
                if sender
                    .send(Ok((dispatcher.handle(), sys::gettid())))
                    .is_err()
                {
                    return;
                }
                drop(sender);
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| dispatcher.run()));
                drop(alive);
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        eprintln!("worker {}: event loop failed: {error}", dispatcher.name());
                    }
                    Err(_panic) => eprintln!(
                        "worker {}: a callback panicked out of the event loop; the worker has \
                         died",
                        dispatcher.name()
                    ),
                }
                let dropped = dispatcher.posts_dropped_at_exit();
                if dropped > 0 {
                    eprintln!(
                        "worker {}: dropped {dropped} posts still queued after the exit drain",
                        dispatcher.name()
                    );
                }
                dropped_at_exit.store(dropped, Ordering::Relaxed);
                // While every thread-local is still alive, and before the dispatcher goes.
                slot::teardown_thread();
            })
            .map_err(WorkerError::Start)?;
        Ok(Starting {
            ready,
            thread,
            alive,
        })
    }

    // starter: w04-l05 todo "finish_start"
    fn finish_start(&mut self, starting: Starting) -> Result<(), WorkerError> {
        match starting.ready.recv() {
            Ok(Ok((handle, tid))) => {
                self.running = Some(Running {
                    handle,
                    tid,
                    thread: starting.thread,
                    alive: starting.alive,
                });
                Ok(())
            }
            Ok(Err(error)) => {
                let _ = starting.thread.join();
                Err(WorkerError::Start(error))
            }
            Err(mpsc::RecvError) => {
                let _ = starting.thread.join();
                Err(WorkerError::DiedDuringStart)
            }
        }
    }

    // starter: w04-l05 todo "is_running"
    /// Whether the worker has been started, has not been stopped, and its thread is alive.
    pub fn is_running(&self) -> bool {
        self.live().is_ok()
    }

    // starter: w04-l05 todo "live"
    /// The running state, if the worker runs; `NotRunning` or `Died` if not.
    fn live(&self) -> Result<&Running, WorkerError> {
        let running = self.running.as_ref().ok_or(WorkerError::NotRunning)?;
        // Acquire pairs with the Release in `AliveGuard`.
        if running.alive.load(Ordering::Acquire) {
            Ok(running)
        } else {
            Err(WorkerError::Died {
                name: self.name.clone(),
            })
        }
    }

    // starter: w04-l05 todo "thread_id"
    /// The kernel thread id of the worker thread, while it runs.
    pub fn thread_id(&self) -> Option<i32> {
        self.running.as_ref().map(|running| running.tid)
    }

    // starter: w04-l05 todo "dispatcher"
    /// A handle to the worker's dispatcher, while it runs (for registering thread-local slots,
    /// or posting without the count).
    ///
    /// A callback posted through the handle has no panic catch: a panic in it ends the worker's
    /// loop and the worker dies (see [`WorkerError::Died`]). Prefer [`post`](Self::post) and
    /// [`post_with`](Self::post_with).
    pub fn dispatcher(&self) -> Option<&DispatcherHandle> {
        self.live().ok().map(|running| &running.handle)
    }

    // starter: w04-l05 todo "post"
    /// Posts `work` to the worker's dispatcher; it counts as handled once it has run.
    ///
    /// A panic in `work` is caught on the worker, so the worker keeps running. Returns
    /// [`WorkerError::NotRunning`] before `start` and after `stop`, and [`WorkerError::Died`] if
    /// the worker's thread has died.
    pub fn post(&self, work: impl FnOnce() + Send + 'static) -> Result<(), WorkerError> {
        self.post_with(move |_| work())
    }

    // starter: w04-l05 todo "post_with"
    /// Like [`post`](Self::post), but `work` gets the worker's dispatcher, so it can add fds,
    /// timers or a listener to the worker's loop.
    pub fn post_with(
        &self,
        work: impl FnOnce(&Dispatcher) + Send + 'static,
    ) -> Result<(), WorkerError> {
        let handled = Arc::clone(&self.handled);
        self.post_caught(move |dispatcher| {
            run_caught(work, dispatcher);
            handled.fetch_add(1, Ordering::Relaxed);
        })
    }

    // starter: w04-l05 todo "post_caught"
    /// Posts `work`, uncounted (the caller catches its panics).
    fn post_caught(
        &self,
        work: impl FnOnce(&Dispatcher) + Send + 'static,
    ) -> Result<(), WorkerError> {
        self.live()?.handle.post_with(work);
        Ok(())
    }

    // starter: w04-l05 todo "handled_count"
    /// How many posted callbacks the worker has run.
    pub fn handled_count(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    // starter: w04-l05 todo "posts_dropped_at_exit"
    /// How many posts the bounded drain at the end of the worker's last run dropped unrun (see
    /// [`EXIT_DRAIN_ROUNDS`](crate::dispatcher::EXIT_DRAIN_ROUNDS)); exact after `stop`.
    pub fn posts_dropped_at_exit(&self) -> u64 {
        self.dropped_at_exit.load(Ordering::Relaxed)
    }

    // starter: w04-l05 todo "stop"
    /// Asks the dispatcher to exit, then joins the thread. Work posted before has run when it
    /// returns. Does nothing if the worker is not running.
    pub fn stop(&mut self) {
        self.request_exit();
        self.join();
    }

    // starter: w04-l05 todo "request_exit"
    fn request_exit(&self) {
        if let Some(running) = &self.running {
            running.handle.exit();
        }
    }

    // starter: w04-l05 todo "join"
    fn join(&mut self) {
        if let Some(running) = self.running.take()
            && running.thread.join().is_err()
        {
            eprintln!("worker {}: the thread panicked", self.name);
        }
    }
}

impl Drop for Worker {
    // starter: w04-l05 empty "nothing to release until your type owns something that needs it."
    fn drop(&mut self) {
        self.stop();
    }
}

// starter: w04-l05 todo "run_caught"
/// Runs posted `work` on the worker, catching a panic so the worker's loop survives it.
fn run_caught(work: impl FnOnce(&Dispatcher), dispatcher: &Dispatcher) {
    if panic::catch_unwind(AssertUnwindSafe(|| work(dispatcher))).is_err() {
        eprintln!("worker {}: a posted callback panicked", dispatcher.name());
    }
}

/// What the callbacks of one [`WorkerPool::run_on_all_workers`] share: `on_complete` runs when
/// the last of them is dropped (after running, or unrun if its worker stopped first).
struct Completion {
    on_complete: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Drop for Completion {
    // starter: w04-l05 empty "nothing to release until your type owns something that needs it."
    fn drop(&mut self) {
        let on_complete = self
            .on_complete
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if let Some(on_complete) = on_complete {
            // Caught: this may run inside a worker's loop, which must survive it.
            if panic::catch_unwind(AssertUnwindSafe(on_complete)).is_err() {
                eprintln!("run_on_all_workers: on_complete panicked");
            }
        }
    }
}

/// A fixed set of [`Worker`]s, with round-robin posting and [`run_on_all_workers`]
/// (Envoy's `runOnAllThreads`).
///
/// [`run_on_all_workers`]: WorkerPool::run_on_all_workers
///
/// ```
/// use eventloop::WorkerPool;
///
/// let mut pool = WorkerPool::new(2);
/// pool.start().unwrap();
/// assert!(pool.all_running());
/// pool.post(|| {}).unwrap();
/// pool.post(|| {}).unwrap();
/// pool.stop();
/// assert_eq!(pool.handled_counts(), vec![1, 1]);
/// assert_eq!(pool.total_handled(), 2);
/// ```
#[derive(Debug)]
pub struct WorkerPool {
    workers: Vec<Worker>,
    /// The next worker `post` picks.
    next: AtomicUsize,
}

impl WorkerPool {
    // starter: w04-l05 todo "new"
    /// A pool of `count` workers (at least one), named `worker_0`, `worker_1`, …, not started.
    pub fn new(count: usize) -> WorkerPool {
        let workers = (0..count.max(1))
            .map(|index| Worker::new(format!("worker_{index}")))
            .collect();
        WorkerPool {
            workers,
            next: AtomicUsize::new(0),
        }
    }

    // starter: w04-l05 todo "with_init"
    /// A pool of `count` workers (at least one) whose threads each run `init(index, dispatcher)`
    /// before they report ready, at every start; [`start`](Self::start) returns once every hook
    /// has run, or with the first error (and stops the workers again). This is how each worker
    /// comes to own its fds, timers or listener — one listener per worker on a shared port with
    /// [`TcpListener::bind_reuse_port`](crate::net::TcpListener::bind_reuse_port), for instance.
    pub fn with_init(
        count: usize,
        init: impl Fn(usize, &Dispatcher) -> io::Result<()> + Send + Sync + 'static,
    ) -> WorkerPool {
        let init = Arc::new(init);
        let workers = (0..count.max(1))
            .map(|index| {
                let init = Arc::clone(&init);
                Worker::with_init(format!("worker_{index}"), move |dispatcher| {
                    init(index, dispatcher)
                })
            })
            .collect();
        WorkerPool {
            workers,
            next: AtomicUsize::new(0),
        }
    }

    // starter: w04-l05 todo "with_cpu_count"
    /// A pool with one worker per CPU (`available_parallelism`, 1 if unknown).
    pub fn with_cpu_count() -> WorkerPool {
        WorkerPool::new(thread::available_parallelism().map_or(1, usize::from))
    }

    // starter: w04-l05 todo "worker_count"
    /// How many workers the pool has.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    // starter: w04-l05 todo "workers"
    /// The workers.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    // starter: w04-l05 todo "start"
    /// Starts every worker and returns once all of them are running. If one fails, the ones
    /// already started are stopped again and the error is returned.
    pub fn start(&mut self) -> Result<(), WorkerError> {
        if self.workers.iter().any(Worker::is_running) {
            return Err(WorkerError::AlreadyStarted);
        }
        // Spawn all first and then wait for all, so the workers start up in parallel.
        let mut starting = Vec::with_capacity(self.workers.len());
        let mut failure = None;
        for worker in &self.workers {
            match worker.spawn() {
                Ok(spawned) => starting.push(Some(spawned)),
                Err(error) => {
                    starting.push(None);
                    failure.get_or_insert(error);
                }
            }
        }
        for (worker, spawned) in self.workers.iter_mut().zip(starting) {
            if let Some(spawned) = spawned
                && let Err(error) = worker.finish_start(spawned)
            {
                failure.get_or_insert(error);
            }
        }
        match failure {
            None => Ok(()),
            Some(error) => {
                self.stop();
                Err(error)
            }
        }
    }

    // starter: w04-l05 todo "all_running"
    /// Whether every worker is running (started, not stopped, its thread alive).
    pub fn all_running(&self) -> bool {
        self.workers.iter().all(Worker::is_running)
    }

    // starter: w04-l05 todo "post_to"
    /// Posts `work` to worker `index`.
    pub fn post_to(
        &self,
        index: usize,
        work: impl FnOnce() + Send + 'static,
    ) -> Result<(), WorkerError> {
        self.worker(index)?.post(work)
    }

    // starter: w04-l05 todo "worker"
    /// Worker `index`, or `NoSuchWorker`.
    fn worker(&self, index: usize) -> Result<&Worker, WorkerError> {
        let count = self.workers.len();
        self.workers
            .get(index)
            .ok_or(WorkerError::NoSuchWorker { index, count })
    }

    // starter: w04-l05 todo "post_to_with"
    /// Posts `work` to worker `index`, handing it the worker's dispatcher (see
    /// [`Worker::post_with`]).
    pub fn post_to_with(
        &self,
        index: usize,
        work: impl FnOnce(&Dispatcher) + Send + 'static,
    ) -> Result<(), WorkerError> {
        self.worker(index)?.post_with(work)
    }

    // starter: w04-l05 todo "run_on_all_workers"
    /// Runs `callback` on every worker's loop with its dispatcher, then `on_complete` once
    /// (Envoy's `runOnAllThreads`).
    ///
    /// `callback` is posted to each worker; it is not counted as handled work, and a panic in
    /// it is caught on the worker. `on_complete` runs exactly once, after `callback` has run on
    /// every worker, **on the worker that finished last** — so it must not block (it would
    /// stall that loop): send its result to a channel, or post onward. Nothing waits for it
    /// here: the caller's thread and every loop carry on. If a worker is stopped before its
    /// callback ran, that callback is dropped unrun and `on_complete` still runs once the rest
    /// are done (then possibly on the thread that stopped the worker).
    ///
    /// Returns an error, and posts nothing, if a worker is not running.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::sync::{Arc, mpsc};
    /// use eventloop::{ThreadLocal, WorkerPool};
    ///
    /// let mut pool = WorkerPool::new(2);
    /// pool.start().unwrap();
    /// let tls = ThreadLocal::new();
    /// for dispatcher in pool.dispatchers() {
    ///     tls.register_thread(dispatcher).unwrap();
    /// }
    /// // A per-worker counter, aggregated by visiting every worker.
    /// let requests = Arc::new(tls.allocate_slot::<Cell<u64>>().unwrap());
    /// requests.set(|| Cell::new(20)).unwrap();
    /// let (total_sender, total) = mpsc::channel();
    /// let sum = Arc::new(std::sync::atomic::AtomicU64::new(0));
    /// let (reader, adder) = (Arc::clone(&requests), Arc::clone(&sum));
    /// pool.run_on_all_workers(
    ///     move |_dispatcher| {
    ///         let mine = reader.get().unwrap().get();
    ///         adder.fetch_add(mine, std::sync::atomic::Ordering::Relaxed);
    ///     },
    ///     move || total_sender.send(sum.load(std::sync::atomic::Ordering::Relaxed)).unwrap(),
    /// )
    /// .unwrap();
    /// assert_eq!(total.recv().unwrap(), 40);
    /// tls.shutdown_global().unwrap();
    /// pool.stop();
    /// ```
    pub fn run_on_all_workers(
        &self,
        callback: impl Fn(&Dispatcher) + Send + Sync + 'static,
        on_complete: impl FnOnce() + Send + 'static,
    ) -> Result<(), WorkerError> {
        for worker in &self.workers {
            worker.live()?;
        }
        let callback = Arc::new(callback);
        let mut completion = Some(Arc::new(Completion {
            on_complete: Mutex::new(Some(Box::new(on_complete))),
        }));
        let last = self.workers.len() - 1;
        for (index, worker) in self.workers.iter().enumerate() {
            // The last post takes the original share, so no share stays here: `on_complete`
            // must run where the last callback finishes, never on this thread.
            let completion = match index == last {
                true => completion.take(),
                false => completion.as_ref().map(Arc::clone),
            };
            let callback = Arc::clone(&callback);
            // Checked above; a worker that died since drops the post, and with it its share.
            let _ = worker.post_caught(move |dispatcher| {
                run_caught(|dispatcher| callback(dispatcher), dispatcher);
                drop(completion);
            });
        }
        Ok(())
    }

    // starter: w04-l05 todo "post"
    /// Posts `work` to the next worker in round-robin order; returns that worker's index.
    pub fn post(&self, work: impl FnOnce() + Send + 'static) -> Result<usize, WorkerError> {
        // Relaxed: the counter only spreads work; no other memory is published through it.
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        self.post_to(index, work)?;
        Ok(index)
    }

    // starter: w04-l05 todo "dispatchers"
    /// Handles to every running worker's dispatcher, in worker order.
    pub fn dispatchers(&self) -> Vec<DispatcherHandle> {
        self.workers
            .iter()
            .filter_map(Worker::dispatcher)
            .cloned()
            .collect()
    }

    // starter: w04-l05 todo "handled_counts"
    /// Each worker's handled count, in worker order.
    pub fn handled_counts(&self) -> Vec<u64> {
        self.workers.iter().map(Worker::handled_count).collect()
    }

    // starter: w04-l05 todo "total_handled"
    /// The handled counts of all workers together.
    pub fn total_handled(&self) -> u64 {
        self.workers.iter().map(Worker::handled_count).sum()
    }

    // starter: w04-l05 todo "stop"
    /// Stops every worker: all are asked to exit first, then all are joined.
    pub fn stop(&mut self) {
        for worker in &self.workers {
            worker.request_exit();
        }
        for worker in &mut self.workers {
            worker.join();
        }
    }
}

impl Default for WorkerPool {
    // starter: w04-l05 todo "default"
    /// A pool with one worker per CPU, as [`WorkerPool::with_cpu_count`].
    fn default() -> WorkerPool {
        WorkerPool::with_cpu_count()
    }
}

impl Drop for WorkerPool {
    // starter: w04-l05 empty "nothing to release until your type owns something that needs it."
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
