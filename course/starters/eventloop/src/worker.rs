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
    /// A worker named `name` (also its thread's name and its dispatcher's), not started.
    pub fn new(name: impl Into<String>) -> Worker {
        todo!("W04 L05: new")
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        todo!("W04 L05: name")
    }

    /// Spawns the thread and returns once its dispatcher is running.
    pub fn start(&mut self) -> Result<(), WorkerError> {
        todo!("W04 L05: start")
    }

    fn spawn(&self) -> Result<Starting, WorkerError> {
        todo!("W04 L05: spawn")
    }

    fn finish_start(&mut self, starting: Starting) -> Result<(), WorkerError> {
        todo!("W04 L05: finish_start")
    }

    /// Whether the worker has been started and not stopped.
    pub fn is_running(&self) -> bool {
        todo!("W04 L05: is_running")
    }

    /// The kernel thread id of the worker thread, while it runs.
    pub fn thread_id(&self) -> Option<i32> {
        todo!("W04 L05: thread_id")
    }

    /// A handle to the worker's dispatcher, while it runs (for registering thread-local slots,
    /// or posting without the count).
    pub fn dispatcher(&self) -> Option<&DispatcherHandle> {
        todo!("W04 L05: dispatcher")
    }

    /// Posts `work` to the worker's dispatcher; it counts as handled once it has run.
    ///
    /// A panic in `work` is caught on the worker, so the worker keeps running.
    pub fn post(&self, work: impl FnOnce() + Send + 'static) -> Result<(), WorkerError> {
        todo!("W04 L05: post")
    }

    /// How many posted callbacks the worker has run.
    pub fn handled_count(&self) -> u64 {
        todo!("W04 L05: handled_count")
    }

    /// Asks the dispatcher to exit, then joins the thread. Work posted before has run when it
    /// returns. Does nothing if the worker is not running.
    pub fn stop(&mut self) {
        todo!("W04 L05: stop")
    }

    fn request_exit(&self) {
        todo!("W04 L05: request_exit")
    }

    fn join(&mut self) {
        todo!("W04 L05: join")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Starter: nothing to release until your type owns something that needs it.
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
    /// A pool of `count` workers (at least one), named `worker_0`, `worker_1`, …, not started.
    pub fn new(count: usize) -> WorkerPool {
        todo!("W04 L05: new")
    }

    /// A pool with one worker per CPU (`available_parallelism`, 1 if unknown).
    pub fn with_cpu_count() -> WorkerPool {
        todo!("W04 L05: with_cpu_count")
    }

    /// How many workers the pool has.
    pub fn worker_count(&self) -> usize {
        todo!("W04 L05: worker_count")
    }

    /// The workers.
    pub fn workers(&self) -> &[Worker] {
        todo!("W04 L05: workers")
    }

    /// Starts every worker and returns once all of them are running. If one fails, the ones
    /// already started are stopped again and the error is returned.
    pub fn start(&mut self) -> Result<(), WorkerError> {
        todo!("W04 L05: start")
    }

    /// Whether every worker is running.
    pub fn all_running(&self) -> bool {
        todo!("W04 L05: all_running")
    }

    /// Posts `work` to worker `index`.
    pub fn post_to(
        &self,
        index: usize,
        work: impl FnOnce() + Send + 'static,
    ) -> Result<(), WorkerError> {
        todo!("W04 L05: post_to")
    }

    /// Posts `work` to the next worker in round-robin order; returns that worker's index.
    pub fn post(&self, work: impl FnOnce() + Send + 'static) -> Result<usize, WorkerError> {
        todo!("W04 L05: post")
    }

    /// Handles to every running worker's dispatcher, in worker order.
    pub fn dispatchers(&self) -> Vec<DispatcherHandle> {
        todo!("W04 L05: dispatchers")
    }

    /// Each worker's handled count, in worker order.
    pub fn handled_counts(&self) -> Vec<u64> {
        todo!("W04 L05: handled_counts")
    }

    /// The handled counts of all workers together.
    pub fn total_handled(&self) -> u64 {
        todo!("W04 L05: total_handled")
    }

    /// Stops every worker: all are asked to exit first, then all are joined.
    pub fn stop(&mut self) {
        todo!("W04 L05: stop")
    }
}

impl Default for WorkerPool {
    /// A pool with one worker per CPU, as [`WorkerPool::with_cpu_count`].
    fn default() -> WorkerPool {
        todo!("W04 L05: default")
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Starter: nothing to release until your type owns something that needs it.
    }
}

#[cfg(test)]
mod tests;
