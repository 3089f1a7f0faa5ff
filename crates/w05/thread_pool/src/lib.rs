//! W05 L02–L03: a work-stealing thread pool with bounded intake, caught panics and clean shutdown.
//!
//! # Design
//!
//! - **Work stealing** on crossbeam-deque: tasks spawned from outside the pool go to a global
//!   `Injector`; tasks spawned from inside a task go to the running worker's local deque. A worker
//!   looks in its own deque, then takes a batch from the injector, then steals from the other
//!   workers starting at a random one (see the `worker` module).
//! - **Bounded intake**: at most `capacity` tasks are *pending* (accepted, not yet started).
//!   [`spawn`](ThreadPool::spawn) blocks while the pool is full; [`try_spawn`](ThreadPool::try_spawn)
//!   never blocks and hands the task back. A spawn from one of the pool's own workers never
//!   blocks (the waiting worker would be one of the threads that makes room); it may exceed the
//!   capacity instead.
//! - **Idle workers** spin briefly (busy-waiting for 10 µs, then yielding, 50 µs in all) and then
//!   sleep. Sleeping and waking follow an announce-then-recheck protocol that cannot lose a
//!   wake-up and costs a submitter no system call while some worker is searching for work or none
//!   sleeps; it is written down in `src/sleep/README.md` and checked with loom.
//! - **Panics** never kill a worker: every task runs under `catch_unwind`, the panic is counted,
//!   and [`spawn_with`](ThreadPool::spawn_with) hands the outcome (value or [`TaskPanic`]) to its
//!   `on_done` callback on the worker thread.
//! - **Shutdown** ([`shutdown`](ThreadPool::shutdown), or `Drop`) stops intake, lets the workers
//!   run every accepted task, and joins every worker thread before returning.
//!
//! # Example
//!
//! ```
//! use std::sync::mpsc;
//! use thread_pool::ThreadPool;
//!
//! let pool = ThreadPool::builder().workers(2).capacity(64).thread_name("example").build()?;
//! let (results, received) = mpsc::channel();
//! for n in 0..10u64 {
//!     let results = results.clone();
//!     pool.spawn_with(move || n * n, move |outcome| results.send(outcome).unwrap())
//!         .unwrap_or_else(|_| panic!("the pool is running"));
//! }
//! let mut squares: Vec<u64> = received.iter().take(10).map(Result::unwrap).collect();
//! squares.sort_unstable();
//! assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! pool.shutdown();
//! assert_eq!(pool.stats().completed, 10);
//! # Ok::<(), thread_pool::BuildError>(())
//! ```
//!
//! Tasks must be `Send + 'static`, since they run on another thread after `spawn` returns:
//!
//! ```compile_fail
//! let pool = thread_pool::ThreadPool::builder().workers(1).build().unwrap();
//! let local = std::rc::Rc::new(5);
//! pool.spawn(move || drop(local));
//! ```

mod error;
mod intake;
mod panic_hook;
mod sleep;
mod sync;
mod worker;

#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use crossbeam_deque::{Injector, Worker};

pub use error::{BuildError, SpawnError, TaskPanic, TrySpawnError};
use intake::{Intake, MAX_CAPACITY, Refused};
pub use panic_hook::report_worker_panics_with;
use sleep::Sleep;
use worker::{Job, Outcome, Shared, WorkerStats};

/// The environment variable that sets the default worker count (a positive integer) when
/// [`ThreadPoolBuilder::workers`] is not called.
pub const WORKERS_ENV: &str = "THREAD_POOL_WORKERS";

/// The default bound on pending tasks.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// The default thread-name prefix; workers are named `<prefix>-<index>`.
pub const DEFAULT_THREAD_NAME: &str = "thread-pool";

/// A snapshot of the pool's counters, as returned by [`ThreadPool::stats`]. The fields are read
/// one after another without a common lock, so under load they are each exact but not
/// necessarily from the same instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// The number of worker threads.
    pub workers: usize,
    /// Workers running a task right now.
    pub busy: usize,
    /// Tasks accepted but not yet started (the ones that count against the capacity).
    pub queued: usize,
    /// Tasks that returned normally (including their `on_done` callback).
    pub completed: u64,
    /// Tasks whose body or `on_done` callback panicked.
    pub panicked: u64,
}

/// Configures and starts a [`ThreadPool`]; get one from [`ThreadPool::builder`].
#[derive(Debug, Clone)]
pub struct ThreadPoolBuilder {
    workers: Option<usize>,
    capacity: usize,
    thread_name: String,
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        Self {
            workers: None,
            capacity: DEFAULT_CAPACITY,
            thread_name: DEFAULT_THREAD_NAME.to_owned(),
        }
    }
}

impl ThreadPoolBuilder {
    /// Sets the number of worker threads. Without this call the count comes from the
    /// [`WORKERS_ENV`] environment variable if it is set, else from
    /// [`std::thread::available_parallelism`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Sets the most tasks that may be pending (accepted, not yet started) at once; the default is
    /// [`DEFAULT_CAPACITY`].
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the worker thread-name prefix; workers are named `<prefix>-<index>`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    // starter: w05-l02 todo "Do 2: check the settings, make the deques and Shared, spawn named threads running worker::run, wait for every ready"
    /// Starts the workers and returns once every one of them is running.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero worker count or capacity, an unusable [`WORKERS_ENV`] value, or
    /// a thread the operating system refused to start (the workers already started are joined
    /// before this returns).
    ///
    /// ```
    /// use thread_pool::{BuildError, ThreadPool};
    ///
    /// assert!(matches!(ThreadPool::builder().workers(0).build(), Err(BuildError::ZeroWorkers)));
    /// let pool = ThreadPool::builder().workers(3).build()?;
    /// assert_eq!(pool.worker_count(), 3);
    /// # Ok::<(), BuildError>(())
    /// ```
    pub fn build(self) -> Result<ThreadPool, BuildError> {
        let workers = self.resolve_workers()?;
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if self.capacity > MAX_CAPACITY {
            return Err(BuildError::CapacityTooLarge {
                requested: self.capacity,
                max: MAX_CAPACITY,
            });
        }
        // FIFO local deques: a task spawned from inside a task runs after the ones spawned before
        // it, which keeps latency fair for a server's request tasks.
        let deques: Vec<Worker<Job>> = (0..workers).map(|_| Worker::new_fifo()).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            intake: Intake::new(self.capacity),
            sleep: Sleep::new(),
            stats: (0..workers).map(|_| WorkerStats::default()).collect(),
            max_searchers: workers.div_ceil(2),
        });
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut threads = Vec::with_capacity(workers);
        for (index, local) in deques.into_iter().enumerate() {
            let worker_shared = Arc::clone(&shared);
            let ready = ready_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("{}-{index}", self.thread_name))
                .spawn(move || {
                    worker::run(worker_shared, local, index, move || {
                        // The receiver outlives every send: `build` waits for all of them.
                        let _ = ready.send(());
                    });
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(error) => {
                    // Shut the partial pool down, which joins the workers started so far (their
                    // "ready" messages go unread, which is harmless).
                    ThreadPool {
                        shared,
                        threads: Mutex::new(threads),
                        workers,
                    }
                    .shutdown();
                    return Err(BuildError::Spawn(error));
                }
            }
        }
        drop(ready_tx);
        // Every worker sends once, right before it starts looking for work. A worker cannot die
        // before sending, so this receives exactly `workers` messages.
        for _ in 0..workers {
            if ready_rx.recv().is_err() {
                break;
            }
        }
        Ok(ThreadPool {
            shared,
            threads: Mutex::new(threads),
            workers,
        })
    }

    /// The number of workers [`build`](Self::build) would start: the explicit setting, else
    /// [`WORKERS_ENV`], else the available parallelism. Lets a caller size things that depend on
    /// the worker count (such as the capacity) before building.
    ///
    /// # Errors
    ///
    /// The [`BuildError`] that `build` would return for the worker count.
    ///
    /// ```
    /// let builder = thread_pool::ThreadPool::builder().workers(3);
    /// assert_eq!(builder.worker_count()?, 3);
    /// # Ok::<(), thread_pool::BuildError>(())
    /// ```
    pub fn worker_count(&self) -> Result<usize, BuildError> {
        self.resolve_workers()
    }

    fn resolve_workers(&self) -> Result<usize, BuildError> {
        resolve_workers(self.workers, std::env::var_os(WORKERS_ENV))
    }
}

/// The worker count: the explicit setting if there is one, else the [`WORKERS_ENV`] value
/// (`env_value`) if set, else the available parallelism.
fn resolve_workers(
    explicit: Option<usize>,
    env_value: Option<std::ffi::OsString>,
) -> Result<usize, BuildError> {
    let workers = match (explicit, env_value) {
        (Some(workers), _) => workers,
        (None, Some(value)) => {
            let invalid = || BuildError::InvalidWorkersEnv {
                value: value.to_string_lossy().into_owned(),
            };
            value
                .to_str()
                .ok_or_else(invalid)?
                .trim()
                .parse::<NonZeroUsize>()
                .map_err(|_| invalid())?
                .get()
        }
        (None, None) => thread::available_parallelism().map_or(1, NonZeroUsize::get),
    };
    if workers == 0 {
        return Err(BuildError::ZeroWorkers);
    }
    Ok(workers)
}

/// A fixed set of worker threads running submitted tasks, with work stealing, bounded intake and
/// clean shutdown. `Send + Sync`: share it by reference or in an `Arc`.
pub struct ThreadPool {
    shared: Arc<Shared>,
    /// The workers' join handles; emptied by the first shutdown that joins them. The lock is held
    /// while joining, so a concurrent second `shutdown` also returns only after the join.
    threads: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
}

impl ThreadPool {
    /// A builder with the defaults: [`WORKERS_ENV`] or all available cores, [`DEFAULT_CAPACITY`],
    /// threads named `thread-pool-<index>`.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// Submits `task`, blocking while `capacity` tasks are pending.
    ///
    /// Called from inside one of this pool's tasks, the task goes to the running worker's local
    /// deque and the call never blocks (it may exceed the capacity).
    ///
    /// # Errors
    ///
    /// [`SpawnError`] holding `task` once the pool is shut down (including while this call
    /// waited for room).
    pub fn spawn<F>(&self, task: F) -> Result<(), SpawnError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        match self.reserve_slot(true) {
            Ok(()) => {
                self.publish(Box::new(move || {
                    task();
                    Outcome::Completed
                }));
                Ok(())
            }
            Err(_) => Err(SpawnError(task)),
        }
    }

    /// Submits `task` if a slot is free right now; never blocks.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError::Full`] or [`TrySpawnError::ShutDown`], each holding `task`.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use thread_pool::{ThreadPool, TrySpawnError};
    ///
    /// let pool = ThreadPool::builder().workers(1).capacity(1).build()?;
    /// let (release, gate) = mpsc::channel::<()>();
    /// let (started_tx, started) = mpsc::channel();
    /// // Occupy the only worker, then fill the only pending slot.
    /// pool.try_spawn(move || { started_tx.send(()).unwrap(); gate.recv().unwrap(); }).unwrap();
    /// started.recv().unwrap();
    /// pool.try_spawn(|| ()).unwrap();
    /// let (ran_tx, ran) = mpsc::channel();
    /// let refused = pool.try_spawn(move || ran_tx.send("ran").unwrap()).unwrap_err();
    /// assert!(refused.is_full());
    /// // The task came back untouched; the caller may run it itself.
    /// (refused.into_inner())();
    /// assert_eq!(ran.recv().unwrap(), "ran");
    /// release.send(()).unwrap();
    /// pool.shutdown();
    /// assert!(matches!(pool.try_spawn(|| ()), Err(TrySpawnError::ShutDown(_))));
    /// # Ok::<(), thread_pool::BuildError>(())
    /// ```
    pub fn try_spawn<F>(&self, task: F) -> Result<(), TrySpawnError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        match self.reserve_slot(false) {
            Ok(()) => {
                self.publish(Box::new(move || {
                    task();
                    Outcome::Completed
                }));
                Ok(())
            }
            Err(Refused::Full) => Err(TrySpawnError::Full(task)),
            Err(Refused::ShutDown) => Err(TrySpawnError::ShutDown(task)),
        }
    }

    /// Submits `task`, blocking while the pool is full, and arranges for `on_done` to receive its
    /// outcome: `Ok(value)`, or `Err(TaskPanic)` if the task panicked. `on_done` runs on the worker
    /// thread right after the task; keep it short (hand the result to whoever needs it).
    ///
    /// # Errors
    ///
    /// [`SpawnError`] holding `(task, on_done)` once the pool is shut down.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use thread_pool::ThreadPool;
    ///
    /// let pool = ThreadPool::builder().workers(1).build()?;
    /// let (tx, rx) = mpsc::channel();
    /// pool.spawn_with(|| -> u32 { panic!("no answer") }, move |outcome| tx.send(outcome).unwrap())
    ///     .unwrap_or_else(|_| unreachable!("the pool is running"));
    /// assert_eq!(rx.recv().unwrap().unwrap_err().message(), "no answer");
    /// pool.shutdown();
    /// assert_eq!(pool.stats().panicked, 1);
    /// # Ok::<(), thread_pool::BuildError>(())
    /// ```
    pub fn spawn_with<T, R, D>(&self, task: T, on_done: D) -> Result<(), SpawnError<(T, D)>>
    where
        T: FnOnce() -> R + Send + 'static,
        D: FnOnce(Result<R, TaskPanic>) + Send + 'static,
        R: 'static,
    {
        match self.reserve_slot(true) {
            Ok(()) => {
                self.publish(completion_job(task, on_done));
                Ok(())
            }
            Err(_) => Err(SpawnError((task, on_done))),
        }
    }

    /// [`spawn_with`](Self::spawn_with) that never blocks.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError::Full`] or [`TrySpawnError::ShutDown`], each holding `(task, on_done)`.
    pub fn try_spawn_with<T, R, D>(&self, task: T, on_done: D) -> Result<(), TrySpawnError<(T, D)>>
    where
        T: FnOnce() -> R + Send + 'static,
        D: FnOnce(Result<R, TaskPanic>) + Send + 'static,
        R: 'static,
    {
        match self.reserve_slot(false) {
            Ok(()) => {
                self.publish(completion_job(task, on_done));
                Ok(())
            }
            Err(Refused::Full) => Err(TrySpawnError::Full((task, on_done))),
            Err(Refused::ShutDown) => Err(TrySpawnError::ShutDown((task, on_done))),
        }
    }

    // starter: w05-l02 todo "Do 9: intake.shut_down, sleep.wake_all, return if a worker of this pool, else join every handle"
    /// Stops intake, runs every accepted task, and joins every worker thread; returns once they
    /// have all exited. Calling it again (or concurrently) is harmless and also returns only after
    /// the workers are joined. `Drop` calls it.
    ///
    /// Called from inside one of this pool's own tasks, it stops intake and returns at once: a
    /// worker cannot join itself. The workers still finish every accepted task and exit; the
    /// owner's `shutdown` or `Drop` joins them.
    pub fn shutdown(&self) {
        self.shared.intake.shut_down();
        // Sleeping workers must re-check: either to run what is left or to exit.
        self.shared.sleep.wake_all();
        if worker::is_worker_of(&self.shared) {
            return;
        }
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        for handle in threads.drain(..) {
            // Workers catch every panic from user code, so a join error would be a bug in the
            // pool itself; there is nothing better to do with its payload than drop it safely.
            if let Err(payload) = handle.join() {
                error::drop_payload(payload);
            }
        }
    }

    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats {
            workers: self.workers,
            queued: self.shared.intake.pending(),
            ..PoolStats::default()
        };
        for worker in &self.shared.stats {
            use std::sync::atomic::Ordering::Relaxed;
            stats.busy += usize::from(worker.busy.load(Relaxed));
            stats.completed += worker.completed.load(Relaxed);
            stats.panicked += worker.panicked.load(Relaxed);
        }
        stats
    }

    /// The number of worker threads.
    pub fn worker_count(&self) -> usize {
        self.workers
    }

    // starter: w05-l03 todo "Do 4: ask the intake"
    /// Whether [`shutdown`](Self::shutdown) has begun (spawns are refused from then on).
    pub fn is_shut_down(&self) -> bool {
        self.shared.intake.is_shut_down()
    }

    /// Takes a pending slot. `block` asks to wait for room, which a worker of this pool never
    /// does (see `spawn`).
    fn reserve_slot(&self, block: bool) -> Result<(), Refused> {
        let intake = &self.shared.intake;
        let reserved = match intake.try_reserve() {
            Err(refusal) if block && refusal.reason == Refused::Full => {
                if worker::is_worker_of(&self.shared) {
                    intake.reserve_over_capacity()
                } else {
                    intake.reserve()
                }
            }
            settled => settled,
        };
        reserved.map_err(|refusal| {
            if refusal.drained {
                // Undoing the refused reservation took the last pending count of a shut-down
                // pool: the sleeping workers may exit now, and must be told.
                self.shared.sleep.wake_all();
            }
            refusal.reason
        })
    }

    // starter: w05-l02 todo "Do 8: push_local or else the injector, then sleep.wake_one"
    /// Makes a job whose slot is reserved visible to the workers, and wakes one if any sleeps.
    fn publish(&self, job: Job) {
        if let Err(job) = worker::push_local(&self.shared, job) {
            self.shared.injector.push(job);
        }
        self.shared.sleep.wake_one();
    }
}

// starter: w05-l02 todo "Do 5: box a job that runs task under catch_unwind and hands Ok or Err TaskPanic to on_done"
/// Wraps a task and its completion callback into one job: the task runs under `catch_unwind`,
/// and `on_done` receives its value or the panic.
fn completion_job<T, R, D>(task: T, on_done: D) -> Job
where
    T: FnOnce() -> R + Send + 'static,
    D: FnOnce(Result<R, TaskPanic>) + Send + 'static,
    R: 'static,
{
    Box::new(
        move || match std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)) {
            Ok(value) => {
                on_done(Ok(value));
                Outcome::Completed
            }
            Err(payload) => {
                on_done(Err(TaskPanic::from_payload(payload)));
                Outcome::Panicked
            }
        },
    )
}

impl Drop for ThreadPool {
    // starter: w05-l03 empty "Do 5: dropping the pool shuts it down"
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("stats", &self.stats())
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}
