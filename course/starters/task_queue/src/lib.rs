//! W05 L01 (starter): the bounded task queue contract, with the L03 close semantics.
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
//!
//! # Starter code
//!
//! This is the lesson's starting point: the public API of the reference crate, every body a
//! `todo!()`. The shared state (`State`), the two condvars and the error types are given, because
//! the tests observe them; the rest is yours. A good shape is one private `push_with(item, patience)`
//! behind `push`, `try_push` and `push_timeout` (and a `pop_with` behind the pops), where patience
//! is "none", "until this instant" or "forever".

mod error;
mod sync;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

use std::collections::VecDeque;
use std::fmt;
// `Instant` is for the deadlines of the `_timeout` methods (and the tests use it too).
#[allow(unused_imports)]
use std::time::{Duration, Instant};

pub use error::{
    Closed, PopTimeoutError, PushError, PushTimeoutError, TryPopError, TryPushError,
    ZeroCapacityError,
};
use sync::{Condvar, Mutex, MutexGuard};

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
// The starter reads none of these fields yet; remove this attribute once your bodies use them.
#[allow(dead_code)]
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

impl<T> TaskQueue<T> {
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
        let _ = capacity;
        todo!("W05 L01: reject 0, then build the state, the two condvars and the capacity")
    }

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
        let _ = item;
        todo!(
            "W05 L01: wait on `not_full` in a while loop, push, notify `not_empty` if a consumer waits"
        )
    }

    /// Appends `item` if there is room right now; never blocks.
    ///
    /// Returns the queue length right after the push, as [`push`](Self::push) does.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Full`] or [`TryPushError::Closed`], each holding `item`.
    pub fn try_push(&self, item: T) -> Result<usize, TryPushError<T>> {
        let _ = item;
        todo!("W05 L01: push without waiting")
    }

    /// Appends `item`, waiting at most `timeout` for room.
    ///
    /// Returns the queue length right after the push, as [`push`](Self::push) does.
    ///
    /// # Errors
    ///
    /// [`PushTimeoutError::Timeout`] when the queue stayed full, [`PushTimeoutError::Closed`] when
    /// it is closed; each holds `item`.
    pub fn push_timeout(&self, item: T, timeout: Duration) -> Result<usize, PushTimeoutError<T>> {
        let _ = (item, timeout);
        todo!("W05 L01: push, waiting until a deadline at most")
    }

    /// Removes the oldest item, blocking while the queue is empty and open.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the queue is closed and every queued item has been taken.
    pub fn pop(&self) -> Result<T, Closed> {
        todo!(
            "W05 L01: wait on `not_empty` in a while loop, pop, notify `not_full` if a producer waits"
        )
    }

    /// Removes the oldest item if there is one right now; never blocks.
    ///
    /// # Errors
    ///
    /// [`TryPopError::Empty`] when the open queue holds nothing, [`TryPopError::Closed`] when the
    /// queue is closed and empty.
    pub fn try_pop(&self) -> Result<T, TryPopError> {
        todo!("W05 L01: pop without waiting")
    }

    /// Removes the oldest item, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`PopTimeoutError::Timeout`] when the queue stayed empty, [`PopTimeoutError::Closed`] when
    /// it is closed and empty.
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopTimeoutError> {
        let _ = timeout;
        todo!("W05 L01: pop, waiting until a deadline at most")
    }

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
        let _ = out;
        todo!("W05 L01: move every item under one lock, then wake the producers that wait for room")
    }

    /// Takes every queued item, oldest first, under one lock acquisition.
    pub fn drain(&self) -> Vec<T> {
        todo!("W05 L01: drain into a new Vec")
    }

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
        todo!("W05 L03: set `closed` under the lock, then notify_all on both condvars")
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        todo!("W05 L01")
    }

    /// The number of queued items at the moment of the call.
    pub fn len(&self) -> usize {
        todo!("W05 L01")
    }

    /// Whether the queue held no item at the moment of the call.
    pub fn is_empty(&self) -> bool {
        todo!("W05 L01")
    }

    /// The most items the queue holds at once.
    pub fn capacity(&self) -> usize {
        todo!("W05 L01")
    }

    /// Locks the state. Decide the poisoning policy and write it in the crate docs: the tests
    /// expect a panic in another thread not to make the queue unusable.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        todo!("W05 L01: lock `state`, applying your poisoning policy")
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
