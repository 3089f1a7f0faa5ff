//! [`Worker`] and [`WorkerPool`]: named threads that each run their own [`Dispatcher`].
//!
//! This is the Envoy threading model: instead of one event loop plus a pool of anonymous
//! threads pulling from a shared queue, every worker is a full event loop. Work reaches a worker
//! by being *posted* to its dispatcher, so everything a worker touches can live on that worker,
//! unshared, and per-thread state ([`slot`]) needs no locks.
//!
//! The lifecycle is explicit:
//!
//! - [`WorkerPool::start`] spawns every worker's thread, which creates its dispatcher and reports
//!   ready (with its kernel thread id). It spawns all first and then waits for all, so the
//!   workers start up in parallel, and it returns once every one runs, so a post right after
//!   `start` always has a loop to go to. If one cannot start, the ones already started are
//!   stopped again.
//! - Work reaches a worker through [`WorkerPool::post_to_with`] ([`Worker::post_with`]) and
//!   [`WorkerPool::run_on_all_workers`], which hand it the worker's own `&Dispatcher`, so a worker
//!   can own fds, timers and a listener registered on its own loop. A posted callback that
//!   panics is caught on the worker, and the loop survives it.
//! - [`WorkerPool::stop`] asks every dispatcher to exit, then joins every thread. By the
//!   dispatcher's rule for posts pending at exit, everything posted before `stop` has run when it
//!   returns (within [`EXIT_DRAIN_ROUNDS`](crate::dispatcher::EXIT_DRAIN_ROUNDS) rounds of posts
//!   made by posts; what a callback that keeps re-posting itself leaves is dropped, and the
//!   worker writes how many to stderr, so `stop` always returns). Each thread then tears down its
//!   thread-local [`slot`] values, last slot first, before its locals are destroyed. `Drop` stops
//!   a pool that is still running.
//! - A worker whose thread has died (a callback posted through its raw [`DispatcherHandle`]
//!   panicked out of the loop) is not running: [`Worker::is_running`] says so and posts return
//!   [`WorkerError::Died`] instead of dropping the work.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::dispatcher::{Dispatcher, DispatcherHandle};
use crate::{slot, sys};

/// Why a worker operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerError {
    /// `start` was called on a pool whose workers are already running.
    AlreadyStarted,
    /// The worker is not running (never started, or stopped).
    NotRunning,
    /// `post_to_with` named a worker the pool does not have.
    NoSuchWorker {
        /// The index asked for.
        index: usize,
        /// How many workers the pool has.
        count: usize,
    },
    /// The thread could not be spawned, or its dispatcher could not be created.
    Start(io::Error),
    /// The worker thread ended before it reported ready (it panicked while starting).
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
    fn drop(&mut self) {
        // Release pairs with the Acquire in `Worker::live`.
        self.0.store(false, Ordering::Release);
    }
}

/// A named thread with its own [`Dispatcher`]: one of a [`WorkerPool`]'s workers.
///
/// ```
/// use eventloop::WorkerPool;
///
/// let mut pool = WorkerPool::new(1);
/// pool.start().unwrap();
/// let worker = &pool.workers()[0];
/// assert!(worker.is_running());
/// let (sender, receiver) = std::sync::mpsc::channel();
/// worker
///     .post_with(move |dispatcher| {
///         let thread = std::thread::current().name().map(str::to_owned);
///         sender.send((thread, dispatcher.name().to_owned())).unwrap()
///     })
///     .unwrap();
/// assert_eq!(
///     receiver.recv().unwrap(),
///     (Some("worker_0".to_owned()), "worker_0".to_owned())
/// );
/// pool.stop();
/// ```
#[derive(Debug)]
pub struct Worker {
    name: String,
    running: Option<Running>,
}

impl Worker {
    /// A worker named `name` (also its thread's name and its dispatcher's), not started.
    fn new(name: impl Into<String>) -> Worker {
        Worker {
            name: name.into(),
            running: None,
        }
    }

    fn spawn(&self) -> Result<Starting, WorkerError> {
        if self.running.is_some() {
            return Err(WorkerError::AlreadyStarted);
        }
        let (sender, ready) = mpsc::channel();
        let name = self.name.clone();
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

    /// Whether the worker has been started, has not been stopped, and its thread is alive.
    pub fn is_running(&self) -> bool {
        self.live().is_ok()
    }

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

    /// The kernel thread id of the worker thread, while it runs.
    pub fn thread_id(&self) -> Option<i32> {
        self.running.as_ref().map(|running| running.tid)
    }

    /// A handle to the worker's dispatcher, while it runs (for registering thread-local slots,
    /// or posting to it from elsewhere).
    ///
    /// A callback posted through the handle has no panic catch: a panic in it ends the worker's
    /// loop and the worker dies (see [`WorkerError::Died`]). Prefer
    /// [`post_with`](Self::post_with).
    pub fn dispatcher(&self) -> Option<&DispatcherHandle> {
        self.live().ok().map(|running| &running.handle)
    }

    /// Posts `work` to the worker's dispatcher; it gets the worker's dispatcher, so it can add
    /// fds, timers or a listener to the worker's loop.
    ///
    /// A panic in `work` is caught on the worker, so the worker keeps running. Returns
    /// [`WorkerError::NotRunning`] before the pool starts and after it stops, and
    /// [`WorkerError::Died`] if the worker's thread has died; the work is then dropped unrun.
    pub fn post_with(
        &self,
        work: impl FnOnce(&Dispatcher) + Send + 'static,
    ) -> Result<(), WorkerError> {
        self.post_caught(move |dispatcher| run_caught(work, dispatcher))
    }

    /// Posts `work` as it is (the caller catches its panics).
    fn post_caught(
        &self,
        work: impl FnOnce(&Dispatcher) + Send + 'static,
    ) -> Result<(), WorkerError> {
        self.live()?.handle.post_with(work);
        Ok(())
    }

    fn request_exit(&self) {
        if let Some(running) = &self.running {
            running.handle.exit();
        }
    }

    fn join(&mut self) {
        if let Some(running) = self.running.take()
            && running.thread.join().is_err()
        {
            eprintln!("worker {}: the thread panicked", self.name);
        }
    }
}

impl Drop for Worker {
    /// Stops the worker if its pool has not: asks its dispatcher to exit, then joins the thread.
    fn drop(&mut self) {
        self.request_exit();
        self.join();
    }
}

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

/// A fixed set of [`Worker`]s, with posting to one of them ([`post_to_with`]) and to all of
/// them with one completion ([`run_on_all_workers`], Envoy's `runOnAllThreads`).
///
/// [`post_to_with`]: WorkerPool::post_to_with
/// [`run_on_all_workers`]: WorkerPool::run_on_all_workers
///
/// ```
/// use eventloop::WorkerPool;
///
/// let mut pool = WorkerPool::new(2);
/// pool.start().unwrap();
/// let (sender, receiver) = std::sync::mpsc::channel();
/// for index in 0..pool.worker_count() {
///     let sender = sender.clone();
///     pool.post_to_with(index, move |dispatcher| sender.send(dispatcher.name().to_owned()).unwrap())
///         .unwrap();
/// }
/// pool.stop(); // everything posted before has run
/// let mut ran: Vec<String> = receiver.try_iter().collect();
/// ran.sort();
/// assert_eq!(ran, ["worker_0", "worker_1"]);
/// ```
#[derive(Debug)]
pub struct WorkerPool {
    workers: Vec<Worker>,
}

impl WorkerPool {
    /// A pool of `count` workers (at least one), named `worker_0`, `worker_1`, …, not started.
    pub fn new(count: usize) -> WorkerPool {
        let workers = (0..count.max(1))
            .map(|index| Worker::new(format!("worker_{index}")))
            .collect();
        WorkerPool { workers }
    }

    /// How many workers the pool has.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The workers.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

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

    /// Worker `index`, or `NoSuchWorker`.
    fn worker(&self, index: usize) -> Result<&Worker, WorkerError> {
        let count = self.workers.len();
        self.workers
            .get(index)
            .ok_or(WorkerError::NoSuchWorker { index, count })
    }

    /// Posts `work` to worker `index`, handing it the worker's dispatcher; a panic in it is
    /// caught on the worker (see [`Worker::post_with`]). Returns
    /// [`WorkerError::NoSuchWorker`] for an index the pool does not have.
    pub fn post_to_with(
        &self,
        index: usize,
        work: impl FnOnce(&Dispatcher) + Send + 'static,
    ) -> Result<(), WorkerError> {
        self.worker(index)?.post_with(work)
    }

    /// Runs `callback` on every worker's loop with its dispatcher, then `on_complete` once
    /// (Envoy's `runOnAllThreads`).
    ///
    /// `callback` is posted to each worker, and a panic in it is caught on the worker.
    /// `on_complete` runs exactly once, after `callback` has run on every worker, **on the
    /// worker that finished last** — so it must not block (it would stall that loop): send its
    /// result to a channel, or post onward. Nothing waits for it here: the caller's thread and
    /// every loop carry on. If a worker is stopped before its callback ran, that callback is
    /// dropped unrun and `on_complete` still runs once the rest are done (then possibly on the
    /// thread that stopped the worker).
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

    /// Handles to every running worker's dispatcher, in worker order.
    pub fn dispatchers(&self) -> Vec<DispatcherHandle> {
        self.workers
            .iter()
            .filter_map(Worker::dispatcher)
            .cloned()
            .collect()
    }

    /// Stops every worker: all are asked to exit first, then all are joined. Work posted before
    /// has run when it returns (see the module docs for the bound on posts made by posts). Does
    /// nothing for a worker that is not running.
    pub fn stop(&mut self) {
        for worker in &self.workers {
            worker.request_exit();
        }
        for worker in &mut self.workers {
            worker.join();
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
