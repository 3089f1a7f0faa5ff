//! Admission control: the bounded count of pending tasks, the shutdown flag, and the producers
//! blocked waiting for room, all packed into one atomic word.
//!
//! A task is *pending* from the moment a spawn reserves a slot for it until a worker takes it off a
//! deque to run it. Packing the pending count, the number of blocked producers and the shutdown bit
//! into one `AtomicU64` means every decision is one read-modify-write on one word, whose single
//! modification order makes the protocol easy to argue about (and lets loom check it):
//!
//! - a spawn's reservation and the shutdown are ordered, so no task is accepted after the shutdown
//!   bit is set, and a worker that sees "shut down and nothing pending" knows the pool is drained
//!   for good;
//! - a worker's decrement returns the number of blocked producers in the same operation, so the hot
//!   path learns whether anyone needs a wake-up without touching another cache line;
//! - a blocked producer registers itself *and* re-checks for room in one compare-and-swap, while
//!   holding the room lock that a waking worker must take before notifying, so a freed slot is
//!   either seen by that compare-and-swap or announced to a thread already waiting.

use crate::sync::{self, AtomicU64, Condvar, Mutex, Ordering};

/// Set once by shutdown and never cleared. Once set, no reservation ever succeeds again.
const SHUTDOWN: u64 = 1 << 63;
/// Where the count of producers blocked on a full pool starts.
const WAITER_SHIFT: u32 = 48;
/// One blocked producer.
const WAITER_ONE: u64 = 1 << WAITER_SHIFT;
/// The bits holding the count of blocked producers (15 bits).
const WAITER_MASK: u64 = ((1 << 15) - 1) << WAITER_SHIFT;
/// The bits holding the pending-task count (48 bits).
const PENDING_MASK: u64 = WAITER_ONE - 1;

/// The largest capacity accepted. Half the pending field, so that reservations which are added
/// optimistically and then undone (see [`Intake::try_reserve`]) can never carry into the waiter
/// bits.
pub(crate) const MAX_CAPACITY: usize = (PENDING_MASK / 2) as usize;

/// A refused reservation: why, and whether undoing it left a shut-down pool drained (the caller
/// must then wake sleeping workers so they can exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Why the reservation was refused.
    pub(crate) reason: Refused,
    /// Whether the undo took the last pending count of a shut-down pool.
    pub(crate) drained: bool,
}

impl Refusal {
    /// Refused because the pool is shut down, with nothing to undo.
    const SHUT_DOWN: Self = Self {
        reason: Refused::ShutDown,
        drained: false,
    };
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `capacity` tasks are pending.
    Full,
    /// The pool is shut down.
    ShutDown,
}

/// The pool's admission state; see the module docs for the protocol.
#[derive(Debug)]
pub(crate) struct Intake {
    /// Pending count, blocked-producer count and shutdown bit, as laid out by the constants above.
    state: AtomicU64,
    /// The most tasks that may be pending at once (at most [`MAX_CAPACITY`]).
    capacity: u64,
    /// Held by a producer from its registration as a waiter until it waits on `room`, and taken by
    /// whoever notifies `room`, so no notification can slip in between the two.
    room_lock: Mutex<()>,
    /// Where producers wait for a free slot (or the shutdown).
    room: Condvar,
}

fn pending(state: u64) -> u64 {
    state & PENDING_MASK
}

fn waiters(state: u64) -> u64 {
    (state & WAITER_MASK) >> WAITER_SHIFT
}

impl Intake {
    /// An open intake admitting up to `capacity` pending tasks.
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!((1..=MAX_CAPACITY).contains(&capacity));
        Self {
            state: AtomicU64::new(0),
            capacity: capacity as u64,
            room_lock: Mutex::new(()),
            room: Condvar::new(),
        }
    }

    /// Reserves a slot for one task without blocking.
    ///
    /// The common case is a single `fetch_add`: the submit path is the pool's hottest, and the
    /// word it touches is also written by every worker taking a task, so each extra access is a
    /// cache-line transfer. An add that finds the pool full or shut down is undone at once. The
    /// undo is a decrement like a worker's, with the same duties (see [`Self::task_taken`]); its
    /// return value (true when the undo left a shut-down pool drained) is passed on in
    /// [`Refusal::drained`] so the caller can wake sleeping workers to exit.
    pub(crate) fn try_reserve(&self) -> Result<(), Refusal> {
        // Acquire/Release on the word is all the protocol needs: the task itself is published
        // through the deques, and every decision here reads the latest value of this one word.
        let before = self.state.fetch_add(1, Ordering::AcqRel);
        let reason = if before & SHUTDOWN != 0 {
            Refused::ShutDown
        } else if pending(before) >= self.capacity {
            Refused::Full
        } else {
            return Ok(());
        };
        // While the add is outstanding, a concurrent reservation may see one slot fewer than is
        // really free and be refused as full; "full" is a snapshot under concurrency anyway.
        let drained = self.task_taken();
        Err(Refusal { reason, drained })
    }

    /// Reserves a slot for one task even when the pool is at capacity; refuses only after shutdown.
    /// Used for spawns from the pool's own workers, which must never wait for room: the waiting
    /// worker would be one of the threads that makes room.
    pub(crate) fn reserve_over_capacity(&self) -> Result<(), Refusal> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & SHUTDOWN != 0 {
                return Err(Refusal::SHUT_DOWN);
            }
            // The pending field has 48 bits; reaching that many queued tasks would exhaust memory
            // long before it overflowed into the waiter bits.
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => state = actual,
            }
        }
    }

    /// Reserves a slot for one task, blocking while the pool is at capacity.
    pub(crate) fn reserve(&self) -> Result<(), Refusal> {
        match self.try_reserve() {
            Err(Refusal {
                reason: Refused::Full,
                ..
            }) => {}
            settled => return settled,
        }
        // A full pool usually frees a slot within microseconds (a worker takes a task every few
        // hundred nanoseconds under load), while blocking costs a futex wait here and a futex wake
        // in the worker. So spin briefly first, like an idle worker does. Left out of loom models,
        // whose state space it would multiply without exercising anything new.
        #[cfg(not(loom))]
        {
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                backoff.snooze();
                match self.try_reserve() {
                    Err(Refusal {
                        reason: Refused::Full,
                        ..
                    }) => {}
                    settled => return settled,
                }
            }
        }
        let mut guard = sync::lock(&self.room_lock);
        loop {
            let mut state = self.state.load(Ordering::Relaxed);
            // Take a free slot or register as a waiter, in one compare-and-swap.
            loop {
                if state & SHUTDOWN != 0 {
                    return Err(Refusal::SHUT_DOWN);
                }
                let (next, reserved) = if pending(state) < self.capacity {
                    (state + 1, true)
                } else if waiters(state) < waiters(WAITER_MASK) {
                    (state + WAITER_ONE, false)
                } else {
                    // More than 32,767 threads are blocked on this pool at once. Rather than
                    // overflow the count, this thread polls: it releases the lock and yields,
                    // then looks again.
                    drop(guard);
                    yield_now();
                    guard = sync::lock(&self.room_lock);
                    state = self.state.load(Ordering::Relaxed);
                    continue;
                };
                match self.state.compare_exchange_weak(
                    state,
                    next,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) if reserved => return Ok(()),
                    Ok(_) => break,
                    Err(actual) => state = actual,
                }
            }
            // Registered while holding `room_lock`: a worker that frees a slot after this point
            // sees the registration in the word it decrements and takes `room_lock` before
            // notifying, which it can only do once this thread is waiting.
            guard = sync::wait(&self.room, guard);
            self.state.fetch_sub(WAITER_ONE, Ordering::AcqRel);
        }
    }

    /// Records that a worker took one pending task off a deque. Returns `true` when that was the
    /// last pending task of a pool that is shutting down, so the caller must wake every sleeping
    /// worker to let it exit.
    pub(crate) fn task_taken(&self) -> bool {
        let before = self.state.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(
            pending(before) > 0,
            "a task was taken that was never reserved"
        );
        if waiters(before) > 0 {
            // Taking the lock orders this notification after the waiter's wait (see `reserve`).
            drop(sync::lock(&self.room_lock));
            self.room.notify_one();
        }
        before & SHUTDOWN != 0 && pending(before) == 1
    }

    /// Stops admission. Returns `true` for the call that did it. Wakes every producer blocked for
    /// room so it can take its task back.
    pub(crate) fn shut_down(&self) -> bool {
        let before = self.state.fetch_or(SHUTDOWN, Ordering::AcqRel);
        if waiters(before) > 0 {
            self.release_blocked_producers();
        }
        before & SHUTDOWN == 0
    }

    // starter: w05-l03 todo "Do 3: take and drop room_lock, then notify_all on room"
    /// Wakes every producer blocked in [`reserve`](Self::reserve) after the `SHUTDOWN` bit is set,
    /// so each sees the bit, unregisters, and takes its task back.
    fn release_blocked_producers(&self) {
        // Taking the lock orders this notification after the waiter's wait (see `reserve`): a
        // producer registers itself while holding `room_lock` and releases it only by waiting.
        drop(sync::lock(&self.room_lock));
        self.room.notify_all();
    }

    /// Whether the pool is shut down and every accepted task has been taken by a worker: nothing
    /// will ever be pending again, so an idle worker may exit.
    pub(crate) fn is_drained(&self) -> bool {
        self.state.load(Ordering::Acquire) & (SHUTDOWN | PENDING_MASK) == SHUTDOWN
    }

    // starter: w05-l03 todo "Do 2: load state and test the SHUTDOWN bit"
    /// Whether shutdown has begun.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.state.load(Ordering::Relaxed) & SHUTDOWN != 0
    }

    /// The number of tasks accepted and not yet taken by a worker.
    pub(crate) fn pending(&self) -> usize {
        pending(self.state.load(Ordering::Relaxed)) as usize
    }

    /// The number of producers registered as blocked for room.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn blocked_producers(&self) -> usize {
        waiters(self.state.load(Ordering::Relaxed)) as usize
    }
}

/// Gives up the processor; loom's version lets the model checker run another thread.
fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

#[cfg(all(test, loom))]
mod loom_tests;
