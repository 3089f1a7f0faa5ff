//! [`Worker`] and [`WorkerPool`]: named threads that each run their own [`Dispatcher`].
//!
//! This is the Envoy threading model: instead of one event loop plus a pool of anonymous
//! threads pulling from a shared queue, every worker is a full event loop. Work reaches a worker
//! by being *posted* to its dispatcher, so everything a worker touches can live on that worker,
//! unshared, and per-thread state ([`slot`](crate::slot)) needs no locks.
//!
//! The lifecycle is explicit:
//!
//! - [`Worker::start`] spawns the thread, which creates its dispatcher and reports ready (with
//!   its kernel thread id) before `start` returns, so a post right after `start` always has a
//!   loop to go to. [`WorkerPool::start`] spawns all workers first and then waits for all of
//!   them, so they start up in parallel.
//! - Each worker counts the posted callbacks it has run ([`Worker::handled_count`]). A callback
//!   that panics is caught on the worker (the loop survives) and still counted.
//! - [`Worker::stop`] asks the dispatcher to exit and joins the thread. By the dispatcher's rule
//!   for posts pending at exit, everything posted before `stop` has run when it returns. `Drop`
//!   stops a worker that is still running.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use crate::dispatcher::{Dispatcher, DispatcherHandle};
use crate::sys;

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
    /// The thread could not be spawned, or its dispatcher could not be created.
    Start(io::Error),
    /// The worker thread died before it reported ready.
    DiedDuringStart,
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
}

/// A worker that has been spawned but has not yet reported ready.
#[derive(Debug)]
struct Starting {
    ready: mpsc::Receiver<io::Result<(DispatcherHandle, i32)>>,
    thread: JoinHandle<()>,
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
#[derive(Debug)]
pub struct Worker {
    name: String,
    running: Option<Running>,
    /// Posted callbacks run so far. Written only by the worker thread; read by anyone (a
    /// snapshot while it runs, exact after `stop`, whose join orders the last increment first).
    handled: Arc<AtomicU64>,
}

impl Worker {
    // starter: w04-l05 todo "new"
    /// A worker named `name` (also its thread's name and its dispatcher's), not started.
    pub fn new(name: impl Into<String>) -> Worker {
        Worker {
            name: name.into(),
            running: None,
            handled: Arc::new(AtomicU64::new(0)),
        }
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
                // The receiver waits in `finish_start`; if it is gone, nobody will post here.
                if sender
                    .send(Ok((dispatcher.handle(), sys::gettid())))
                    .is_err()
                {
                    return;
                }
                drop(sender);
                if let Err(error) = dispatcher.run() {
                    eprintln!("worker {}: event loop failed: {error}", dispatcher.name());
                }
            })
            .map_err(WorkerError::Start)?;
        Ok(Starting { ready, thread })
    }

    // starter: w04-l05 todo "finish_start"
    fn finish_start(&mut self, starting: Starting) -> Result<(), WorkerError> {
        match starting.ready.recv() {
            Ok(Ok((handle, tid))) => {
                self.running = Some(Running {
                    handle,
                    tid,
                    thread: starting.thread,
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
    /// Whether the worker has been started and not stopped.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    // starter: w04-l05 todo "thread_id"
    /// The kernel thread id of the worker thread, while it runs.
    pub fn thread_id(&self) -> Option<i32> {
        self.running.as_ref().map(|running| running.tid)
    }

    // starter: w04-l05 todo "dispatcher"
    /// A handle to the worker's dispatcher, while it runs (for registering thread-local slots,
    /// or posting without the count).
    pub fn dispatcher(&self) -> Option<&DispatcherHandle> {
        self.running.as_ref().map(|running| &running.handle)
    }

    // starter: w04-l05 todo "post"
    /// Posts `work` to the worker's dispatcher; it counts as handled once it has run.
    ///
    /// A panic in `work` is caught on the worker, so the worker keeps running.
    pub fn post(&self, work: impl FnOnce() + Send + 'static) -> Result<(), WorkerError> {
        let running = self.running.as_ref().ok_or(WorkerError::NotRunning)?;
        let handled = Arc::clone(&self.handled);
        running.handle.post(move || {
            if panic::catch_unwind(AssertUnwindSafe(work)).is_err() {
                // The worker thread carries the worker's name, so nothing is cloned per post.
                let thread = thread::current();
                eprintln!(
                    "worker {}: a posted callback panicked",
                    thread.name().unwrap_or("?")
                );
            }
            handled.fetch_add(1, Ordering::Relaxed);
        });
        Ok(())
    }

    // starter: w04-l05 todo "handled_count"
    /// How many posted callbacks the worker has run.
    pub fn handled_count(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
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
        if let Some(running) = self.running.take() {
            if running.thread.join().is_err() {
                eprintln!("worker {}: the thread panicked", self.name);
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fixed set of [`Worker`]s, with round-robin posting.
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
            if let Some(spawned) = spawned {
                if let Err(error) = worker.finish_start(spawned) {
                    failure.get_or_insert(error);
                }
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
    /// Whether every worker is running.
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
        let count = self.workers.len();
        self.workers
            .get(index)
            .ok_or(WorkerError::NoSuchWorker { index, count })?
            .post(work)
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
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
