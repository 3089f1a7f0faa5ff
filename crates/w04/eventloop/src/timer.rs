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
        Ok(TimerQueue {
            fd: sys::timerfd()?,
            heap: BinaryHeap::new(),
            timers: Slab::new(),
            next_sequence: 0,
            armed_count: 0,
            programmed: None,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Adds a disabled timer; returns its key.
    fn insert(&mut self, callback: TimerCallback) -> Key {
        self.timers.insert(TimerState {
            armed: None,
            deadline: Instant::now(),
            period: None,
            callback: Some(callback),
        })
    }

    /// Removes a timer; returns its callback so the caller drops it with no borrow held.
    fn remove(&mut self, key: Key) -> Option<TimerCallback> {
        let state = self.timers.remove(key)?;
        if state.armed.is_some() {
            self.armed_count -= 1;
        }
        state.callback
    }

    fn arm(&mut self, key: Key, deadline: Instant, period: Option<Duration>) {
        let sequence = self.next_sequence;
        let Some(state) = self.timers.get_mut(key) else {
            return;
        };
        let was_armed = state.armed.replace(sequence).is_some();
        state.deadline = deadline;
        state.period = period;
        self.next_sequence += 1;
        if !was_armed {
            self.armed_count += 1;
        }
        self.heap.push(Reverse(Armed {
            deadline,
            sequence,
            key,
        }));
        self.compact_if_mostly_stale();
    }

    fn disarm(&mut self, key: Key) {
        if let Some(state) = self.timers.get_mut(key)
            && state.armed.take().is_some()
        {
            self.armed_count -= 1;
        }
    }

    fn is_armed(&self, key: Key) -> bool {
        self.timers
            .get(key)
            .is_some_and(|state| state.armed.is_some())
    }

    fn is_live(&self, entry: &Armed) -> bool {
        self.timers
            .get(entry.key)
            .is_some_and(|state| state.armed == Some(entry.sequence))
    }

    fn compact_if_mostly_stale(&mut self) {
        if self.heap.len() > 64 && self.heap.len() > 2 * self.armed_count {
            let heap = std::mem::take(&mut self.heap);
            self.heap = heap
                .into_iter()
                .filter(|Reverse(entry)| self.is_live(entry))
                .collect();
        }
    }

    /// The earliest live deadline, dropping stale entries from the top of the heap.
    fn earliest(&mut self) -> Option<Instant> {
        while let Some(Reverse(top)) = self.heap.peek().copied() {
            if self.is_live(&top) {
                return Some(top.deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Arms the timerfd for the earliest deadline, if that changed since it was last armed.
    pub(crate) fn sync_timerfd(&mut self) -> io::Result<()> {
        let earliest = self.earliest();
        if earliest != self.programmed {
            let after = earliest.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            sys::timerfd_set(self.fd.as_fd(), after)?;
            self.programmed = earliest;
        }
        Ok(())
    }

    /// Drains the timerfd and pops every live entry due at `now`, in deadline order.
    fn take_due(&mut self, now: Instant) -> Vec<Armed> {
        // The expiry count does not matter: the heap says what is due.
        let _ = sys::timerfd_read(self.fd.as_fd());
        self.programmed = None;
        let mut due = Vec::new();
        while let Some(Reverse(top)) = self.heap.peek().copied() {
            if top.deadline > now {
                break;
            }
            self.heap.pop();
            if self.is_live(&top) {
                due.push(top);
            }
        }
        due
    }

    /// Starts firing `entry` if it is still armed with the same sequence: a one-shot timer is
    /// disarmed, a repeating one re-armed for its next period; returns the callback to run.
    fn begin_fire(&mut self, entry: Armed, now: Instant) -> Option<TimerCallback> {
        if !self.is_live(&entry) {
            // An earlier callback of this batch disabled or re-armed it.
            return None;
        }
        let state = self.timers.get_mut(entry.key)?;
        let callback = state.callback.take()?;
        match state.period {
            Some(period) => {
                // Keep the rhythm, but after a long stall skip the missed beats rather than
                // firing them all at once.
                let mut next = state.deadline + period;
                if next <= now {
                    next = now + period;
                }
                self.arm(entry.key, next, Some(period));
            }
            None => self.disarm(entry.key),
        }
        Some(callback)
    }

    /// Puts a callback back after it ran; returns it instead if its timer was dropped meanwhile.
    fn end_fire(&mut self, key: Key, callback: TimerCallback) -> Option<TimerCallback> {
        match self.timers.get_mut(key) {
            Some(state) if state.callback.is_none() => {
                state.callback = Some(callback);
                None
            }
            _ => Some(callback),
        }
    }

    /// Takes every callback out of the table, for the dispatcher's drop.
    pub(crate) fn take_all(&mut self) -> Vec<TimerCallback> {
        self.heap.clear();
        self.armed_count = 0;
        self.timers
            .take_all()
            .into_iter()
            .filter_map(|state| state.callback)
            .collect()
    }
}

/// Runs every timer that is due, in deadline order; called when the timerfd is readable.
pub(crate) fn fire_due(dispatcher: &Dispatcher, queue: &RefCell<TimerQueue>) {
    let now = Instant::now();
    let due = queue.borrow_mut().take_due(now);
    for entry in due {
        let Some(mut callback) = queue.borrow_mut().begin_fire(entry, now) else {
            continue;
        };
        // No borrow is held while the callback runs: it may use any timer, its own included.
        callback(dispatcher);
        let orphan = queue.borrow_mut().end_fire(entry.key, callback);
        // A timer dropped by its own callback: its callback is dropped here, outside the borrow.
        drop(orphan);
    }
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
        let key = queue.borrow_mut().insert(callback);
        Timer {
            queue: Rc::downgrade(queue),
            key,
        }
    }

    /// Arms the timer to fire once, `after` from now (replacing any earlier arming).
    pub fn enable(&self, after: Duration) {
        self.arm(after, None);
    }

    /// Arms the timer to fire once at `deadline` (at once if it has passed).
    ///
    /// Timers with the same deadline fire in the order they were armed.
    pub fn enable_at(&self, deadline: Instant) {
        if let Some(queue) = self.queue.upgrade() {
            queue.borrow_mut().arm(self.key, deadline, None);
        }
    }

    /// Arms the timer to fire every `period`, the first time `period` from now.
    ///
    /// A zero period is raised to one millisecond, so a repeating timer cannot starve the loop.
    pub fn enable_repeating(&self, period: Duration) {
        let period = period.max(Duration::from_millis(1));
        self.arm(period, Some(period));
    }

    /// Disarms the timer; it will not fire until enabled again.
    pub fn disable(&self) {
        if let Some(queue) = self.queue.upgrade() {
            queue.borrow_mut().disarm(self.key);
        }
    }

    /// Whether the timer is armed.
    pub fn is_enabled(&self) -> bool {
        self.queue
            .upgrade()
            .is_some_and(|queue| queue.borrow().is_armed(self.key))
    }

    fn arm(&self, after: Duration, period: Option<Duration>) {
        if let Some(queue) = self.queue.upgrade() {
            // A duration too large for the clock is as good as "never": park it a century out.
            let now = Instant::now();
            let deadline = now
                .checked_add(after)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
            queue.borrow_mut().arm(self.key, deadline, period);
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.upgrade() {
            let callback = queue.borrow_mut().remove(self.key);
            // Dropped outside the borrow: the callback may own other timers.
            drop(callback);
        }
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
