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
    // starter: w05-l02 todo "Do 4: whether the injector or any stealer is not empty"
    /// Whether any deque visibly holds a task. Used as the re-check after a worker announced that
    /// it is going to sleep.
    fn work_visible(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|stealer| !stealer.is_empty())
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

// starter: w05-l02 todo "Do 3: push to CURRENT local deque if it belongs to this pool, else hand the job back"
/// Pushes `job` onto the calling worker's local deque if the caller is a worker of `shared`'s
/// pool; otherwise hands it back.
pub(crate) fn push_local(shared: &Arc<Shared>, job: Job) -> Result<(), Job> {
    CURRENT.with(|current| match current.borrow().as_ref() {
        Some(context) if Arc::ptr_eq(&context.shared, shared) => {
            context.local.push(job);
            Ok(())
        }
        _ => Err(job),
    })
}

/// Whether the calling thread is one of the workers of `shared`'s pool.
pub(crate) fn is_worker_of(shared: &Arc<Shared>) -> bool {
    CURRENT.with(|current| {
        current
            .borrow()
            .as_ref()
            .is_some_and(|context| Arc::ptr_eq(&context.shared, shared))
    })
}

/// A small xorshift generator for choosing where to start stealing; quality hardly matters, only
/// that workers do not all start at the same victim.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: usize) -> Self {
        // An odd constant mixed in keeps the state non-zero for every seed.
        Self((seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_below(&mut self, bound: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % bound as u64) as usize
    }
}

/// One worker thread's state while its loop runs.
#[derive(Debug)]
struct WorkerThread {
    index: usize,
    context: Rc<WorkerContext>,
    rng: XorShift,
}

// starter: w05-l02 todo "Do 3: install the WorkerContext in CURRENT, call ready, run main_loop, clear CURRENT"
/// The body of worker thread `index`: runs tasks until the pool is shut down and drained.
/// `ready` is called once the worker is running, before it looks for work.
pub(crate) fn run(shared: Arc<Shared>, local: Worker<Job>, index: usize, ready: impl FnOnce()) {
    let context = Rc::new(WorkerContext { shared, local });
    CURRENT.with(|current| *current.borrow_mut() = Some(Rc::clone(&context)));
    let mut worker = WorkerThread {
        index,
        context,
        rng: XorShift::new(index + 1),
    };
    ready();
    worker.main_loop();
    CURRENT.with(|current| current.borrow_mut().take());
}

impl WorkerThread {
    fn shared(&self) -> &Shared {
        &self.context.shared
    }

    // starter: w05-l02 todo "Do 7: search, find_job or spin_for_job, run it; exit when drained; else sleep_unless"
    fn main_loop(&mut self) {
        let context = Rc::clone(&self.context);
        let shared = &context.shared;
        loop {
            // With its own deque empty, the worker counts itself as a searcher *before* looking
            // elsewhere: a producer publishing a task right after this worker's last task
            // finished then sees the count and does not wake a sleeper for a task this worker is
            // about to take. With tasks still in its own deque it just takes the next one, which
            // keeps the shared counts untouched in a burst.
            let searching =
                context.local.is_empty() && shared.sleep.try_start_searching(shared.max_searchers);
            let found = match self.find_job() {
                Some(job) => Some(job),
                None if searching => self.spin_for_job(),
                None => None,
            };
            if let Some(job) = found {
                if searching {
                    shared.sleep.stop_searching(|| shared.work_visible());
                }
                self.run_job(job);
                continue;
            }
            if shared.intake.is_drained() {
                if searching {
                    shared.sleep.stop_searching(|| false);
                }
                return;
            }
            // Whether it slept or not, the next round looks for work (and for the exit) again.
            let _: Slept = shared.sleep.sleep_unless(searching, || {
                shared.work_visible() || shared.intake.is_drained()
            });
        }
    }

    // starter: w05-l02 todo "Do 4: pop local, else steal_batch_and_pop from the injector and the others, again while any Retry"
    /// Looks once through every source, in order, looping only on `Steal::Retry`.
    fn find_job(&mut self) -> Option<Job> {
        let shared = &self.context.shared;
        let local = &self.context.local;
        if let Some(job) = local.pop() {
            return Some(job);
        }
        loop {
            let mut retry = false;
            match shared.injector.steal_batch_and_pop(local) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let victims = shared.stealers.len();
            let start = self.rng.next_below(victims);
            for offset in 0..victims {
                let victim = (start + offset) % victims;
                if victim == self.index {
                    continue;
                }
                match shared.stealers[victim].steal_batch_and_pop(local) {
                    Steal::Success(job) => return Some(job),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    // starter: w05-l02 todo "Do 7: Backoff spin for PURE_SPIN then snooze, find_job each round, give up after SPIN_BUDGET"
    /// The bounded spin before sleeping: busy-waiting with exponential backoff for [`PURE_SPIN`],
    /// then yielding between looks, for at most [`SPIN_BUDGET`] in all.
    fn spin_for_job(&mut self) -> Option<Job> {
        let backoff = Backoff::new();
        let started = Instant::now();
        for _ in 0..MAX_SPIN_ROUNDS {
            // Busy-wait (`spin`) first: a producer that saw this worker counted as a searcher
            // relies on it to take the task promptly, and yielding would hand the processor to
            // whatever else is runnable for a whole time slice. Only after `PURE_SPIN` does the
            // worker yield between looks (`snooze`), so that on a machine with more runnable
            // threads than cores it stops taking time from the threads doing work.
            if started.elapsed() < PURE_SPIN {
                backoff.spin();
            } else {
                backoff.snooze();
            }
            if let Some(job) = self.find_job() {
                return Some(job);
            }
            if self.shared().intake.is_drained() || started.elapsed() >= SPIN_BUDGET {
                return None;
            }
        }
        None
    }

    // starter: w05-l02 todo "Do 5: task_taken, busy flag, catch_unwind the job, count completed or panicked"
    /// Runs one job taken off a deque, keeping the books.
    fn run_job(&self, job: Job) {
        let shared = self.shared();
        if shared.intake.task_taken() {
            // That was the last task of a pool that is shutting down: let the sleepers exit.
            shared.sleep.wake_all();
        }
        let stats = &shared.stats[self.index];
        stats.busy.store(true, Ordering::Relaxed);
        // Every job already catches its task's panic; this outer catch covers a panicking
        // completion callback, so nothing a user wrote can unwind out of the worker loop.
        let outcome = panic::catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|payload| {
            drop_payload(payload);
            Outcome::Panicked
        });
        let counter = match outcome {
            Outcome::Completed => &stats.completed,
            Outcome::Panicked => &stats.panicked,
        };
        // Only this worker writes its counters, so a load and a store suffice; `Relaxed` because
        // the statistics are a snapshot that orders nothing else.
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        stats.busy.store(false, Ordering::Relaxed);
    }
}
