//! The worker thread: where it looks for work, how it runs a task, and how it idles.
//!
//! A worker looks for a task in this order, looping while any source answers `Steal::Retry`
//! (a lost race, meaning the source may well hold work):
//!
//! 1. its own local deque (tasks spawned from inside its tasks land there);
//! 2. the global injector, taking a batch into its local deque;
//! 3. the other workers' deques, starting from a random one so thieves spread out.
//!
//! Finding nothing, it searches: it busy-waits with exponential backoff for [`PURE_SPIN`], then
//! yields between looks, for at most [`SPIN_BUDGET`] in all, and only then goes to sleep through
//! [`Sleep`](crate::sleep::Sleep). At most half the workers search at once; the others go to sleep
//! at once. The protocol is described in `src/sleep/README.md`.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::{Backoff, CachePadded};

use crate::error::drop_payload;
use crate::intake::Intake;
use crate::sleep::{Sleep, Slept};

/// How long an idle worker keeps looking for work before it sleeps. Waking a parked thread costs
/// tens of microseconds, while handing a task to an awake worker costs well under one; spinning
/// for about as long as a wake-up would cost keeps a busy pool awake between tasks, and bounds
/// the CPU an idle pool burns to that much per burst of work.
pub(crate) const SPIN_BUDGET: Duration = Duration::from_micros(50);

/// How much of [`SPIN_BUDGET`] an idle worker busy-waits before it starts yielding between looks.
pub(crate) const PURE_SPIN: Duration = Duration::from_micros(10);

/// An upper bound on idle rounds, in case the clock misbehaves.
const MAX_SPIN_ROUNDS: u32 = 4096;

/// What running a job amounted to, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The task (and its completion callback, if any) returned normally.
    Completed,
    /// The task or its completion callback panicked.
    Panicked,
}

/// A type-erased task as it sits in a deque.
pub(crate) type Job = Box<dyn FnOnce() -> Outcome + Send + 'static>;

/// Per-worker statistics, each on its own cache line and written only by its worker (with plain
/// stores, no read-modify-write), so counting costs nothing in contention.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    /// Whether the worker is running a task right now.
    pub(crate) busy: CachePadded<AtomicBool>,
    /// Tasks that returned normally.
    pub(crate) completed: CachePadded<AtomicU64>,
    /// Tasks that panicked.
    pub(crate) panicked: CachePadded<AtomicU64>,
}

/// Everything the workers and the pool handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Where tasks spawned from outside the pool go.
    pub(crate) injector: Injector<Job>,
    /// One stealer per worker, indexed like the workers.
    pub(crate) stealers: Box<[Stealer<Job>]>,
    /// Admission control: pending count, capacity, shutdown.
    pub(crate) intake: Intake,
    /// The idle workers' sleep protocol.
    pub(crate) sleep: Sleep,
    /// Per-worker statistics, indexed like the workers.
    pub(crate) stats: Box<[WorkerStats]>,
    /// The most workers that spin in search of work at once (half of them, at least one).
    pub(crate) max_searchers: usize,
}

impl Shared {
    /// Whether any deque visibly holds a task. Used as the re-check after a worker announced that
    /// it is going to sleep.
    fn work_visible(&self) -> bool {
        todo!("W05 L02: work_visible")
    }
}

/// What the current thread knows about the pool it works for, if it is a worker.
#[derive(Debug)]
struct WorkerContext {
    shared: Arc<Shared>,
    local: Worker<Job>,
}

thread_local! {
    /// Set for the lifetime of a worker thread's loop, so a spawn from inside a task can find the
    /// worker's local deque. A `RefCell<Option<Rc<..>>>` rather than a raw pointer keeps this
    /// free of `unsafe`; it is only ever touched by its own thread.
    static CURRENT: RefCell<Option<Rc<WorkerContext>>> = const { RefCell::new(None) };
}

/// Pushes `job` onto the calling worker's local deque if the caller is a worker of `shared`'s
/// pool; otherwise hands it back.
pub(crate) fn push_local(shared: &Arc<Shared>, job: Job) -> Result<(), Job> {
    todo!("W05 L02: push_local")
}

/// Whether the calling thread is one of the workers of `shared`'s pool.
pub(crate) fn is_worker_of(shared: &Arc<Shared>) -> bool {
    todo!("W05 L02: is_worker_of")
}

/// A small xorshift generator for choosing where to start stealing; quality hardly matters, only
/// that workers do not all start at the same victim.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: usize) -> Self {
        todo!("W05 L02: new")
    }

    fn next_below(&mut self, bound: usize) -> usize {
        todo!("W05 L02: next_below")
    }
}

/// One worker thread's state while its loop runs.
#[derive(Debug)]
struct WorkerThread {
    index: usize,
    context: Rc<WorkerContext>,
    rng: XorShift,
}

/// The body of worker thread `index`: runs tasks until the pool is shut down and drained.
/// `ready` is called once the worker is running, before it looks for work.
pub(crate) fn run(shared: Arc<Shared>, local: Worker<Job>, index: usize, ready: impl FnOnce()) {
    todo!("W05 L02: run")
}

impl WorkerThread {
    fn shared(&self) -> &Shared {
        todo!("W05 L02: shared")
    }

    fn main_loop(&mut self) {
        todo!("W05 L02: main_loop")
    }

    /// Looks once through every source, in order, looping only on `Steal::Retry`.
    fn find_job(&mut self) -> Option<Job> {
        todo!("W05 L02: find_job")
    }

    /// The bounded spin before sleeping: busy-waiting with exponential backoff for [`PURE_SPIN`],
    /// then yielding between looks, for at most [`SPIN_BUDGET`] in all.
    fn spin_for_job(&mut self) -> Option<Job> {
        todo!("W05 L02: spin_for_job")
    }

    /// Runs one job taken off a deque, keeping the books.
    fn run_job(&self, job: Job) {
        todo!("W05 L02: run_job")
    }
}
