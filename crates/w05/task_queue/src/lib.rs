//! W05 L01: the bounded task queue contract, with the L03 close semantics.
//!
//! [`TaskQueue<T>`] is a bounded multi-producer, multi-consumer FIFO queue built from exactly
//! one `std::sync::Mutex` and two `std::sync::Condvar`s:
//!
//! - `not_empty` is where consumers wait while the queue holds no item;
//! - `not_full` is where producers wait while the queue holds `capacity` items.
//!
//! Every wait re-checks its predicate in a `while`-style loop, because a condvar may wake a thread
//! spuriously and because another thread may take the item (or the free slot) between the
//! notification and the moment the woken thread re-acquires the lock. The queue counts its waiting
//! producers and consumers under the lock and only notifies a condvar when that count is non-zero,
//! so an uncontended push or pop never makes a wake-up system call.
//!
//! # Close semantics
//!
//! [`close`](TaskQueue::close) wakes every blocked producer and consumer. After it, every push hands
//! its item back inside a typed error, while pops keep returning the items that were already queued
//! until the queue is empty and only then report [`Closed`]. No item is lost or duplicated.
//!
//! # Poisoning policy
//!
//! No user code runs while the lock is held: the critical sections only move items in and out of a
//! `VecDeque` whose room was reserved up front, and update counters. A panic can therefore only
//! unwind through a critical section at a point where the queue's invariants hold, so the queue
//! ignores mutex poisoning (it takes the guard out of the `PoisonError`) instead of turning one
//! panicking thread into a panic in every other thread that touches the queue.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::thread;
//! use task_queue::{Closed, TaskQueue};
//!
//! let queue = Arc::new(TaskQueue::new(4).expect("capacity is not zero"));
//! let consumer = {
//!     let queue = Arc::clone(&queue);
//!     thread::spawn(move || {
//!         let mut sum = 0;
//!         // `pop` keeps returning items after `close` until the queue is empty.
//!         while let Ok(item) = queue.pop() {
//!             sum += item;
//!         }
//!         sum
//!     })
//! };
//! for item in 1..=10 {
//!     queue.push(item).expect("the queue is open");
//! }
//! queue.close();
//! assert_eq!(consumer.join().unwrap(), 55);
//! assert_eq!(queue.pop(), Err(Closed));
//! ```
//!
//! `TaskQueue<T>` is `Sync` only when `T: Send`, because items cross threads through it:
//!
//! ```compile_fail
//! fn share<T: Sync>(_: &T) {}
//! let queue = task_queue::TaskQueue::<std::rc::Rc<u8>>::new(1).unwrap();
//! share(&queue);
//! ```

mod error;
mod sync;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

pub use error::{
    Closed, PopTimeoutError, PushError, PushTimeoutError, TryPopError, TryPushError,
    ZeroCapacityError,
};
use sync::{Condvar, Mutex, MutexGuard};

/// The most item slots the queue reserves up front. A queue with a larger capacity grows its buffer
/// on demand instead, so `TaskQueue::new(usize::MAX)` is a valid "practically unbounded" queue
/// rather than an allocation failure.
const MAX_PREALLOCATED_SLOTS: usize = 4096;

/// A bounded, closable, multi-producer multi-consumer FIFO queue.
///
/// Share it between threads with an [`Arc`](std::sync::Arc). All methods take `&self`.
///
/// ```
/// use task_queue::{TaskQueue, TryPushError};
///
/// let queue = TaskQueue::new(2)?;
/// assert_eq!(queue.push("a"), Ok(1)); // 1: the queue went from empty to non-empty.
/// assert_eq!(queue.try_push("b"), Ok(2));
/// assert!(matches!(queue.try_push("c"), Err(TryPushError::Full("c"))));
/// assert_eq!(queue.pop(), Ok("a"));
/// assert_eq!(queue.drain(), vec!["b"]);
/// # Ok::<(), task_queue::ZeroCapacityError>(())
/// ```
pub struct TaskQueue<T> {
    /// Everything that changes, behind the one lock.
    state: Mutex<State<T>>,
    /// Signalled when an item arrives (or the queue closes) while a consumer waits.
    not_empty: Condvar,
    /// Signalled when a slot frees up (or the queue closes) while a producer waits.
    not_full: Condvar,
    /// The most items the queue holds at once; never zero.
    capacity: usize,
}

/// The queue's state; only ever touched with the lock held.
struct State<T> {
    /// The queued items, oldest first. Invariant: `items.len() <= capacity`.
    items: VecDeque<T>,
    /// Set once by `close` and never cleared. Invariant: once set, no item is ever added.
    closed: bool,
    /// How many consumers are inside `not_empty.wait`. A producer notifies `not_empty` only when
    /// this is non-zero, which is what keeps the uncontended path free of wake-up calls.
    waiting_consumers: usize,
    /// How many producers are inside `not_full.wait`; the mirror image of `waiting_consumers`.
    waiting_producers: usize,
}

/// How long an operation is willing to wait for its predicate.
#[derive(Clone, Copy)]
enum Patience {
    /// Give up at once (the `try_` methods).
    None,
    /// Wait until this instant (the `_timeout` methods).
    Until(Instant),
    /// Wait as long as it takes (the blocking methods).
    Forever,
}

/// How long one condvar wait may last.
#[derive(Clone, Copy)]
enum Wait {
    /// Until notified.
    Forever,
    /// Until notified or this much time passed.
    For(Duration),
}

impl Patience {
    // starter: w05-l01 todo "Do 3: Instant::now() plus timeout as an Until deadline, or Forever when checked_add overflows"
    /// Turns a timeout into a deadline; a timeout too large to represent waits forever.
    fn from_timeout(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Forever, Self::Until)
    }

    // starter: w05-l01 todo "Do 3: None gives up, Forever waits forever, Until waits the time left or gives up at zero"
    /// How long the caller may wait now, or `None` when it must give up.
    fn time_left(self) -> Option<Wait> {
        match self {
            Self::None => None,
            Self::Forever => Some(Wait::Forever),
            Self::Until(deadline) => deadline
                .checked_duration_since(Instant::now())
                .filter(|remaining| !remaining.is_zero())
                .map(Wait::For),
        }
    }
}

/// Why an internal push or pop attempt came back without doing its job.
enum Refusal {
    /// The predicate (room, or an item) did not become true in time.
    OutOfPatience,
    /// The queue is closed (and, for a pop, empty).
    Closed,
}

impl<T> TaskQueue<T> {
    // starter: w05-l01 todo "Do 1: reject 0, then build the state, the two condvars and the capacity"
    /// Creates an empty, open queue holding at most `capacity` items.
    ///
    /// # Errors
    ///
    /// [`ZeroCapacityError`] when `capacity` is zero.
    ///
    /// ```
    /// use task_queue::{TaskQueue, ZeroCapacityError};
    ///
    /// assert_eq!(TaskQueue::<u32>::new(0).err(), Some(ZeroCapacityError));
    /// assert_eq!(TaskQueue::<u32>::new(8).unwrap().capacity(), 8);
    /// ```
    pub fn new(capacity: usize) -> Result<Self, ZeroCapacityError> {
        if capacity == 0 {
            return Err(ZeroCapacityError);
        }
        Ok(Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(MAX_PREALLOCATED_SLOTS)),
                closed: false,
                waiting_consumers: 0,
                waiting_producers: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity,
        })
    }

    // starter: w05-l01 todo "Do 6: push_with with Patience::Forever, the item back in PushError"
    /// Appends `item`, blocking while the queue is full.
    ///
    /// Returns the queue length right after the push: `1` means the queue went from empty to
    /// non-empty, which is when a consumer that sleeps on something other than this queue (an
    /// event loop waiting on an eventfd, say) needs a wake-up.
    ///
    /// # Errors
    ///
    /// [`PushError`] holding `item` when the queue is closed, including when it closes while this
    /// call waits for room.
    pub fn push(&self, item: T) -> Result<usize, PushError<T>> {
        self.push_with(item, Patience::Forever)
            .map_err(|(_, item)| PushError(item))
    }

    // starter: w05-l01 todo "Do 6: push_with with Patience::None, each refusal mapped to its TryPushError"
    /// Appends `item` if there is room right now; never blocks.
    ///
    /// Returns the queue length right after the push, as [`push`](Self::push) does.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Full`] or [`TryPushError::Closed`], each holding `item`.
    pub fn try_push(&self, item: T) -> Result<usize, TryPushError<T>> {
        self.push_with(item, Patience::None)
            .map_err(|(refusal, item)| match refusal {
                Refusal::OutOfPatience => TryPushError::Full(item),
                Refusal::Closed => TryPushError::Closed(item),
            })
    }

    // starter: w05-l01 todo "Do 6: push_with with Patience::from_timeout, each refusal mapped to its PushTimeoutError"
    /// Appends `item`, waiting at most `timeout` for room.
    ///
    /// Returns the queue length right after the push, as [`push`](Self::push) does.
    ///
    /// # Errors
    ///
    /// [`PushTimeoutError::Timeout`] when the queue stayed full, [`PushTimeoutError::Closed`] when
    /// it is closed; each holds `item`.
    pub fn push_timeout(&self, item: T, timeout: Duration) -> Result<usize, PushTimeoutError<T>> {
        self.push_with(item, Patience::from_timeout(timeout))
            .map_err(|(refusal, item)| match refusal {
                Refusal::OutOfPatience => PushTimeoutError::Timeout(item),
                Refusal::Closed => PushTimeoutError::Closed(item),
            })
    }

    // starter: w05-l01 todo "Do 6: pop_with with Patience::Forever, any refusal is Closed"
    /// Removes the oldest item, blocking while the queue is empty and open.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the queue is closed and every queued item has been taken.
    pub fn pop(&self) -> Result<T, Closed> {
        self.pop_with(Patience::Forever).map_err(|_| Closed)
    }

    // starter: w05-l01 todo "Do 6: pop_with with Patience::None, each refusal mapped to its TryPopError"
    /// Removes the oldest item if there is one right now; never blocks.
    ///
    /// # Errors
    ///
    /// [`TryPopError::Empty`] when the open queue holds nothing, [`TryPopError::Closed`] when the
    /// queue is closed and empty.
    pub fn try_pop(&self) -> Result<T, TryPopError> {
        self.pop_with(Patience::None)
            .map_err(|refusal| match refusal {
                Refusal::OutOfPatience => TryPopError::Empty,
                Refusal::Closed => TryPopError::Closed,
            })
    }

    // starter: w05-l01 todo "Do 6: pop_with with Patience::from_timeout, each refusal mapped to its PopTimeoutError"
    /// Removes the oldest item, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`PopTimeoutError::Timeout`] when the queue stayed empty, [`PopTimeoutError::Closed`] when
    /// it is closed and empty.
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopTimeoutError> {
        self.pop_with(Patience::from_timeout(timeout))
            .map_err(|refusal| match refusal {
                Refusal::OutOfPatience => PopTimeoutError::Timeout,
                Refusal::Closed => PopTimeoutError::Closed,
            })
    }

    // starter: w05-l01 todo "Do 7: move every item out under one lock, then notify_all not_full if producers wait"
    /// Moves every queued item, oldest first, to the end of `out` under one lock acquisition, and
    /// returns how many it moved. Never blocks on an empty queue; works after `close` too.
    ///
    /// Reusing one `Vec` across calls lets a consumer that wakes up for a batch of results (an
    /// event loop, say) take them all without allocating or re-locking per item.
    ///
    /// ```
    /// let queue = task_queue::TaskQueue::new(4)?;
    /// queue.push(1).unwrap();
    /// queue.push(2).unwrap();
    /// let mut batch = Vec::new();
    /// assert_eq!(queue.drain_into(&mut batch), 2);
    /// assert_eq!(batch, [1, 2]);
    /// assert!(queue.is_empty());
    /// # Ok::<(), task_queue::ZeroCapacityError>(())
    /// ```
    pub fn drain_into(&self, out: &mut Vec<T>) -> usize {
        let mut state = self.lock();
        let moved = state.items.len();
        out.extend(state.items.drain(..));
        // Every slot is free now, so every waiting producer may proceed.
        let wake_producers = moved > 0 && state.waiting_producers > 0;
        drop(state);
        if wake_producers {
            self.not_full.notify_all();
        }
        moved
    }

    // starter: w05-l01 todo "Do 7: drain_into a new Vec and return it"
    /// Takes every queued item, oldest first, under one lock acquisition.
    pub fn drain(&self) -> Vec<T> {
        let mut out = Vec::new();
        self.drain_into(&mut out);
        out
    }

    // starter: w05-l01 todo "Do 8: set closed under the lock, then notify_all each condvar that has waiters"
    /// Closes the queue and wakes every blocked producer and consumer.
    ///
    /// Afterwards pushes hand their items back and pops return the remaining items, then
    /// [`Closed`]. Closing twice is harmless; the return value says whether this call was the
    /// one that closed the queue.
    ///
    /// ```
    /// use task_queue::{Closed, TaskQueue};
    ///
    /// let queue = TaskQueue::new(2)?;
    /// queue.push('x').unwrap();
    /// assert!(queue.close());
    /// assert!(!queue.close());
    /// assert_eq!(queue.push('y').unwrap_err().into_inner(), 'y');
    /// assert_eq!(queue.pop(), Ok('x'));
    /// assert_eq!(queue.pop(), Err(Closed));
    /// # Ok::<(), task_queue::ZeroCapacityError>(())
    /// ```
    pub fn close(&self) -> bool {
        let mut state = self.lock();
        let was_open = !state.closed;
        state.closed = true;
        let wake_consumers = state.waiting_consumers > 0;
        let wake_producers = state.waiting_producers > 0;
        drop(state);
        // The waiters registered themselves under the lock before waiting, and `wait` releases the
        // lock atomically, so every thread counted above is already waiting and receives these
        // notifications even though they are sent after unlocking.
        if wake_consumers {
            self.not_empty.notify_all();
        }
        if wake_producers {
            self.not_full.notify_all();
        }
        was_open
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The number of queued items at the moment of the call.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether the queue held no item at the moment of the call.
    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// The most items the queue holds at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    // starter: w05-l01 todo "Do 2: lock state, taking the guard out of a PoisonError"
    /// Locks the state, ignoring poisoning (see the crate docs for why that is sound here).
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // starter: w05-l01 todo "Do 2: Condvar::wait for Wait::Forever, wait_timeout for Wait::For, guard out of a PoisonError"
    /// Waits on `condvar` (one of ours) with `state` locked, for at most `wait`, and returns the
    /// re-acquired guard. The caller re-checks its predicate afterwards: a wake-up may be spurious,
    /// may have timed out, or may have been beaten to the item (or slot) by another thread.
    fn wait<'a>(
        &self,
        condvar: &Condvar,
        state: MutexGuard<'a, State<T>>,
        wait: Wait,
    ) -> MutexGuard<'a, State<T>> {
        match wait {
            Wait::Forever => condvar.wait(state).unwrap_or_else(PoisonError::into_inner),
            Wait::For(remaining) => {
                condvar
                    .wait_timeout(state, remaining)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }

    // starter: w05-l01 todo "Do 4: lock, wait on not_full while full and open, refuse if closed, push, notify_one not_empty if a consumer waits"
    /// The one push implementation behind `push`, `try_push` and `push_timeout`.
    fn push_with(&self, item: T, patience: Patience) -> Result<usize, (Refusal, T)> {
        let mut state = self.lock();
        // The predicate is checked before the patience, so room that appeared just as a timed
        // wait expired is still used rather than reported as a timeout.
        while state.items.len() >= self.capacity && !state.closed {
            let Some(wait) = patience.time_left() else {
                return Err((Refusal::OutOfPatience, item));
            };
            state.waiting_producers += 1;
            state = self.wait(&self.not_full, state, wait);
            state.waiting_producers -= 1;
        }
        if state.closed {
            return Err((Refusal::Closed, item));
        }
        state.items.push_back(item);
        let len = state.items.len();
        let wake_consumer = state.waiting_consumers > 0;
        drop(state);
        // One new item can satisfy one consumer. The consumer counted itself under the lock before
        // waiting, and `wait` releases the lock atomically, so it is already waiting and this
        // notification reaches it even though it is sent after unlocking (which spares the woken
        // thread from blocking straight away on our lock).
        if wake_consumer {
            self.not_empty.notify_one();
        }
        Ok(len)
    }

    // starter: w05-l01 todo "Do 5: lock, wait on not_empty while empty and open, pop the front or refuse Closed, notify_one not_full if a producer waits"
    /// The one pop implementation behind `pop`, `try_pop` and `pop_timeout`.
    fn pop_with(&self, patience: Patience) -> Result<T, Refusal> {
        let mut state = self.lock();
        while state.items.is_empty() && !state.closed {
            let Some(wait) = patience.time_left() else {
                return Err(Refusal::OutOfPatience);
            };
            state.waiting_consumers += 1;
            state = self.wait(&self.not_empty, state, wait);
            state.waiting_consumers -= 1;
        }
        // Closed or not, queued items are handed out first: close never loses an item.
        let item = state.items.pop_front().ok_or(Refusal::Closed)?;
        let wake_producer = state.waiting_producers > 0;
        drop(state);
        // One freed slot can satisfy one producer; see `push_with` for why notifying after
        // unlocking cannot lose the wake-up.
        if wake_producer {
            self.not_full.notify_one();
        }
        Ok(item)
    }
}

impl<T> fmt::Debug for TaskQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("TaskQueue")
            .field("len", &state.items.len())
            .field("capacity", &self.capacity)
            .field("closed", &state.closed)
            .field("waiting_producers", &state.waiting_producers)
            .field("waiting_consumers", &state.waiting_consumers)
            .finish()
    }
}
