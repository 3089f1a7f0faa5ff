//! Timers: many [`Timer`]s multiplexed on one `timerfd`.
//!
//! A `timerfd` is a clock that becomes *readable* when it expires, so a timer is just one more fd
//! in the epoll set and the loop needs no timeout arithmetic of its own. But one timerfd per timer
//! would make 100,000 connection timeouts cost 100,000 fds. So the dispatcher keeps a single
//! timerfd and a binary min-heap of deadlines, and always arms the timerfd for the *earliest*
//! deadline. When it fires, every timer whose deadline has passed runs, in deadline order, and the
//! timerfd is re-armed for the next one.
//!
//! Cancelling a timer does not search the heap (that would be O(n)). Each arming gets a fresh
//! sequence number, which the timer records and the heap entry carries; disabling or re-arming
//! a timer just changes what the timer records. A heap entry whose number no longer matches is
//! *stale*: it is skipped when it reaches the top (lazy cancellation). If stale entries ever
//! outnumber live ones, the heap is rebuilt, so a connection that resets its idle timer on every
//! request cannot grow the heap without bound. The sequence number also orders timers with the
//! same deadline: they fire in the order they were armed.
//!
//! Timer callbacks run on the loop with no borrow of the timer table held, so a callback may
//! create, re-arm, disable or drop any timer, its own included.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::dispatcher::Dispatcher;
use crate::slab::{Key, Slab};
use crate::sys;

/// A timer callback, run on the loop thread.
pub(crate) type TimerCallback = Box<dyn FnMut(&Dispatcher)>;

/// A heap entry: ordered by deadline, then by the order of arming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Armed {
    deadline: Instant,
    sequence: u64,
    key: Key,
}

/// One timer's state in the table.
struct TimerState {
    /// The sequence number of the current arming; `None` while disabled.
    armed: Option<u64>,
    /// The current deadline (meaningful while armed).
    deadline: Instant,
    /// The period of a repeating timer.
    period: Option<Duration>,
    /// The callback; `None` while it runs.
    callback: Option<TimerCallback>,
}

/// The dispatcher's timer table, heap and timerfd.
pub(crate) struct TimerQueue {
    fd: OwnedFd,
    heap: BinaryHeap<Reverse<Armed>>,
    /// The timers, keyed by generation-checked keys, so a dropped timer's place is reused safely.
    timers: Slab<TimerState>,
    next_sequence: u64,
    /// How many timers are armed (the live heap entries).
    armed_count: usize,
    /// The deadline the timerfd is armed for, if any.
    programmed: Option<Instant>,
}

impl TimerQueue {
    pub(crate) fn new() -> io::Result<TimerQueue> {
        todo!("W04 L05: new")
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        todo!("W04 L05: fd")
    }

    /// Adds a disabled timer; returns its key.
    fn insert(&mut self, callback: TimerCallback) -> Key {
        todo!("W04 L05: insert")
    }

    /// Removes a timer; returns its callback so the caller drops it with no borrow held.
    fn remove(&mut self, key: Key) -> Option<TimerCallback> {
        todo!("W04 L05: remove")
    }

    fn arm(&mut self, key: Key, deadline: Instant, period: Option<Duration>) {
        todo!("W04 L05: arm")
    }

    fn disarm(&mut self, key: Key) {
        todo!("W04 L05: disarm")
    }

    fn is_armed(&self, key: Key) -> bool {
        todo!("W04 L05: is_armed")
    }

    fn is_live(&self, entry: &Armed) -> bool {
        todo!("W04 L05: is_live")
    }

    fn compact_if_mostly_stale(&mut self) {
        todo!("W04 L05: compact_if_mostly_stale")
    }

    /// The earliest live deadline, dropping stale entries from the top of the heap.
    fn earliest(&mut self) -> Option<Instant> {
        todo!("W04 L05: earliest")
    }

    /// Arms the timerfd for the earliest deadline, if that changed since it was last armed.
    pub(crate) fn sync_timerfd(&mut self) -> io::Result<()> {
        todo!("W04 L05: sync_timerfd")
    }

    /// Drains the timerfd and pops every live entry due at `now`, in deadline order.
    fn take_due(&mut self, now: Instant) -> Vec<Armed> {
        todo!("W04 L05: take_due")
    }

    /// Starts firing `entry` if it is still armed with the same sequence: a one-shot timer is
    /// disarmed, a repeating one re-armed for its next period; returns the callback to run.
    fn begin_fire(&mut self, entry: Armed, now: Instant) -> Option<TimerCallback> {
        todo!("W04 L05: begin_fire")
    }

    /// Puts a callback back after it ran; returns it instead if its timer was dropped meanwhile.
    fn end_fire(&mut self, key: Key, callback: TimerCallback) -> Option<TimerCallback> {
        todo!("W04 L05: end_fire")
    }

    /// Takes every callback out of the table, for the dispatcher's drop.
    pub(crate) fn take_all(&mut self) -> Vec<TimerCallback> {
        todo!("W04 L05: take_all")
    }
}

/// Runs every timer that is due, in deadline order; called when the timerfd is readable.
pub(crate) fn fire_due(dispatcher: &Dispatcher, queue: &RefCell<TimerQueue>) {
    todo!("W04 L05: fire_due")
}

/// A timer of a [`Dispatcher`]: one-shot or repeating, enabled and disabled at will.
///
/// Made by [`Dispatcher::create_timer`]; it starts disabled. Dropping it cancels it. Like the
/// dispatcher, it belongs to the loop thread (it is neither `Send` nor `Sync`).
///
/// ```
/// use std::time::Duration;
/// use eventloop::Dispatcher;
///
/// let dispatcher = Dispatcher::new("timers").unwrap();
/// let timer = dispatcher.create_timer(|dispatcher| dispatcher.exit());
/// assert!(!timer.is_enabled());
/// timer.enable(Duration::from_millis(1));
/// assert!(timer.is_enabled());
/// dispatcher.run().unwrap(); // returns when the timer has called exit()
/// assert!(!timer.is_enabled(), "a one-shot timer is disabled once it has fired");
/// ```
pub struct Timer {
    queue: Weak<RefCell<TimerQueue>>,
    key: Key,
}

impl Timer {
    pub(crate) fn new(queue: &Rc<RefCell<TimerQueue>>, callback: TimerCallback) -> Timer {
        todo!("W04 L05: new")
    }

    /// Arms the timer to fire once, `after` from now (replacing any earlier arming).
    pub fn enable(&self, after: Duration) {
        todo!("W04 L05: enable")
    }

    /// Arms the timer to fire once at `deadline` (at once if it has passed).
    ///
    /// Timers with the same deadline fire in the order they were armed.
    pub fn enable_at(&self, deadline: Instant) {
        todo!("W04 L05: enable_at")
    }

    /// Arms the timer to fire every `period`, the first time `period` from now.
    ///
    /// A zero period is raised to one millisecond, so a repeating timer cannot starve the loop.
    pub fn enable_repeating(&self, period: Duration) {
        todo!("W04 L05: enable_repeating")
    }

    /// Disarms the timer; it will not fire until enabled again.
    pub fn disable(&self) {
        todo!("W04 L05: disable")
    }

    /// Whether the timer is armed.
    pub fn is_enabled(&self) -> bool {
        todo!("W04 L05: is_enabled")
    }

    fn arm(&self, after: Duration, period: Option<Duration>) {
        todo!("W04 L05: arm")
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Starter: nothing to release until your type owns something that needs it.
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("key", &self.key)
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

#[cfg(test)]
mod tests;
