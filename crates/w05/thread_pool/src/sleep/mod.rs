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
    counts & SLEEPER_MASK
}

fn searchers(counts: usize) -> usize {
    counts >> SEARCHER_SHIFT
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
        Self {
            counts: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wakeup: Condvar::new(),
        }
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
        // Relaxed is enough: a producer that skips its wake-up because of this count relies on the
        // searcher's later fence-protected check (`stop_searching` or `sleep_unless`), not on this
        // increment, to see its task.
        let before = self.counts.fetch_add(SEARCHER_ONE, Ordering::Relaxed);
        if searchers(before) < max_searchers {
            return true;
        }
        // Too many searchers: undo. Like leaving the search for any other reason, this must not
        // strand a task whose producer skipped its wake-up on seeing the transient count.
        self.stop_searching(|| true);
        false
    }

    /// The calling worker stops searching because it found a task (or the pool is exiting). If it
    /// was the last searcher and `more_work` reports work still visible, it wakes a sleeper: a
    /// producer may have skipped its wake-up counting on this searcher, whose found task may be a
    /// different one.
    pub(crate) fn stop_searching(&self, more_work: impl FnOnce() -> bool) {
        let before = self.counts.fetch_sub(SEARCHER_ONE, Ordering::Relaxed);
        if searchers(before) == 1 && sleepers(before) > 0 {
            // Pairs with the producer's fence in `wake_one`, as in `sleep_unless`: either the
            // producer sees the searcher count drop to zero and wakes a sleeper itself, or this
            // check sees the producer's task.
            fence(Ordering::SeqCst);
            if more_work() {
                self.wake_one();
            }
        }
    }

    // starter: w05-l02 todo "Do 6: lock, announce as sleeper, SeqCst fence, re-check, then wait; count yourself out"
    /// Moves the calling worker to sleep, unless `stay_awake`, evaluated after the announcement,
    /// reports work (or a reason to exit). `searching` says whether the caller is counted as a
    /// searcher; either way it is counted as neither searching nor sleeping when this returns.
    ///
    /// The caller must treat [`Slept::Woken`] as "look for work again", never as "there is work":
    /// a wake-up may be spurious, or another worker may have taken the task first.
    pub(crate) fn sleep_unless(&self, searching: bool, stay_awake: impl FnOnce() -> bool) -> Slept {
        let guard = sync::lock(&self.lock);
        // One step from searcher to sleeper, so a producer never sees this worker as neither.
        let announce = if searching {
            SLEEPER_ONE.wrapping_sub(SEARCHER_ONE)
        } else {
            SLEEPER_ONE
        };
        self.counts.fetch_add(announce, Ordering::Relaxed);
        // Pairs with the fence in `wake_one`/`wake_all`. Either this fence comes first in the
        // single total order of SeqCst fences, and then the producer's load after its fence sees
        // the announcement above; or the producer's fence comes first, and then the loads that
        // `stay_awake` makes below see the task the producer published before its fence.
        fence(Ordering::SeqCst);
        if stay_awake() {
            self.counts.fetch_sub(SLEEPER_ONE, Ordering::Relaxed);
            return Slept::StayedAwake;
        }
        // `wait` releases the lock atomically, so a producer that saw the announcement and takes
        // the lock to notify can only do so once this worker is waiting.
        let guard = sync::wait(&self.wakeup, guard);
        drop(guard);
        self.counts.fetch_sub(SLEEPER_ONE, Ordering::Relaxed);
        Slept::Woken
    }

    // starter: w05-l02 todo "Do 6: SeqCst fence, then notify_one only if nobody searches and somebody sleeps"
    /// Called by a producer right after it published a task: wakes one sleeping worker if nobody
    /// is searching. With a searcher about, or nobody asleep, this is a fence and a load.
    pub(crate) fn wake_one(&self) {
        // Pairs with the fences in `sleep_unless` and `stop_searching`; see there.
        fence(Ordering::SeqCst);
        let counts = self.counts.load(Ordering::Relaxed);
        if searchers(counts) > 0 || sleepers(counts) == 0 {
            return;
        }
        // Taking the lock waits out any worker between its announcement and its wait. The
        // notification itself is sent after unlocking so the woken worker does not immediately
        // block on the lock just released.
        drop(sync::lock(&self.lock));
        self.wakeup.notify_one();
    }

    // starter: w05-l02 todo "Do 6: SeqCst fence, then notify_all if somebody sleeps"
    /// Called after a change every worker must see (shutdown, or the last pending task of a pool
    /// that is shutting down was taken): wakes every sleeping worker.
    pub(crate) fn wake_all(&self) {
        fence(Ordering::SeqCst);
        if sleepers(self.counts.load(Ordering::Relaxed)) == 0 {
            return;
        }
        drop(sync::lock(&self.lock));
        self.wakeup.notify_all();
    }

    /// How many workers are announced as sleeping right now.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn sleepers(&self) -> usize {
        sleepers(self.counts.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
