//! How idle workers search, go to sleep, and get woken, without ever losing a wake-up.
//!
//! The protocol, and why it is correct, is written down in `README.md` beside this file
//! (`crates/w05/thread_pool/src/sleep/README.md`); read that first. In short: a worker that found
//! no work becomes a *searcher* for a bounded spin; then it *announces* itself as a sleeper,
//! *re-checks* for work, and only then waits. A producer *publishes* its task, then reads the
//! counts, and wakes a sleeper only when nobody is searching (a searcher will find the task) and
//! somebody sleeps. A sequentially consistent fence on each side makes it impossible for the
//! re-check and the producer's read to miss each other, so a hot submit path makes no system call.
//!
//! The spinning itself lives in the worker loop; this module is only the part that must be exactly
//! right, kept small and free of crossbeam-deque so loom can check it.

use crate::sync::{self, AtomicUsize, Condvar, Mutex, Ordering, fence};

/// One sleeping worker in [`Sleep::counts`].
const SLEEPER_ONE: usize = 1;
/// Where the searching-worker count starts in [`Sleep::counts`].
const SEARCHER_SHIFT: u32 = usize::BITS / 2;
/// One searching worker in [`Sleep::counts`].
const SEARCHER_ONE: usize = 1 << SEARCHER_SHIFT;
/// The bits holding the sleeper count.
const SLEEPER_MASK: usize = SEARCHER_ONE - 1;

fn sleepers(counts: usize) -> usize {
    todo!("W05 L02: sleepers")
}

fn searchers(counts: usize) -> usize {
    todo!("W05 L02: searchers")
}

/// The idle protocol's shared state.
#[derive(Debug)]
pub(crate) struct Sleep {
    /// Two counts in one word, so a worker moves from searching to sleeping in one atomic step
    /// and a producer reads both at once: the low half counts *sleepers* (workers between their
    /// announcement and the end of their wait), the high half counts *searchers* (workers spinning
    /// in search of work, which will find a newly published task without being woken).
    counts: AtomicUsize,
    /// Held by a worker from its announcement until it waits on `wakeup`, and taken by a producer
    /// before it notifies, so a notification can never fall between the re-check and the wait.
    lock: Mutex<()>,
    /// Where sleeping workers wait.
    wakeup: Condvar,
}

/// What [`Sleep::sleep_unless`] did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slept {
    /// The re-check after the announcement found a reason to stay awake; the worker did not wait.
    StayedAwake,
    /// The worker waited and has been woken (by a producer, by shutdown, or spuriously).
    Woken,
}

impl Sleep {
    /// A `Sleep` with nobody searching or asleep.
    pub(crate) fn new() -> Self {
        todo!("W05 L02: new")
    }

    /// The calling worker found nothing and asks to start its bounded spin. Refused (returns
    /// `false`) when `max_searchers` workers already search: on a machine with few cores, more
    /// spinners than that only steal processor time from the threads doing work and from the
    /// producers, while one searcher already takes every new task without a wake-up. A refused
    /// worker goes straight to [`sleep_unless`](Self::sleep_unless) with `searching = false`.
    ///
    /// While a worker is counted as searching, producers do not wake sleepers: it will find their
    /// tasks.
    pub(crate) fn try_start_searching(&self, max_searchers: usize) -> bool {
        todo!("W05 L02: try_start_searching")
    }

    /// The calling worker stops searching because it found a task (or the pool is exiting). If it
    /// was the last searcher and `more_work` reports work still visible, it wakes a sleeper: a
    /// producer may have skipped its wake-up counting on this searcher, whose found task may be a
    /// different one.
    pub(crate) fn stop_searching(&self, more_work: impl FnOnce() -> bool) {
        todo!("W05 L02: stop_searching")
    }

    /// Moves the calling worker to sleep, unless `stay_awake`, evaluated after the announcement,
    /// reports work (or a reason to exit). `searching` says whether the caller is counted as a
    /// searcher; either way it is counted as neither searching nor sleeping when this returns.
    ///
    /// The caller must treat [`Slept::Woken`] as "look for work again", never as "there is work":
    /// a wake-up may be spurious, or another worker may have taken the task first.
    pub(crate) fn sleep_unless(&self, searching: bool, stay_awake: impl FnOnce() -> bool) -> Slept {
        todo!("W05 L02: sleep_unless")
    }

    /// Called by a producer right after it published a task: wakes one sleeping worker if nobody
    /// is searching. With a searcher about, or nobody asleep, this is a fence and a load.
    pub(crate) fn wake_one(&self) {
        todo!("W05 L02: wake_one")
    }

    /// Called after a change every worker must see (shutdown, or the last pending task of a pool
    /// that is shutting down was taken): wakes every sleeping worker.
    pub(crate) fn wake_all(&self) {
        todo!("W05 L02: wake_all")
    }

    /// How many workers are announced as sleeping right now.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn sleepers(&self) -> usize {
        sleepers(self.counts.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
