//! The typed errors of the queue. Every error returned by a push hands the rejected item back, so
//! a caller never loses an item because the queue refused it.

use std::error::Error;
use std::fmt;

/// `TaskQueue::new(0)` was asked for: a queue that can hold nothing would block every push forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroCapacityError;

impl fmt::Display for ZeroCapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a task queue needs a capacity of at least 1")
    }
}

impl Error for ZeroCapacityError {}

/// A blocking push found the queue closed; the item is handed back untouched.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PushError<T>(pub T);

impl<T> PushError<T> {
    /// Returns the item that could not be pushed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

// `Debug` is written by hand so that it does not require `T: Debug`: the interesting fact is that
// the queue was closed, not the item's contents.
impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PushError(..)")
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pushing onto a closed queue")
    }
}

impl<T> Error for PushError<T> {}

/// Why a non-blocking [`try_push`](crate::TaskQueue::try_push) refused an item; either way the item
/// comes back.
#[must_use = "the rejected item is inside the error"]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The queue held `capacity` items.
    Full(T),
    /// The queue was closed.
    Closed(T),
}

impl<T> TryPushError<T> {
    /// Returns the item that could not be pushed.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(item) | Self::Closed(item) => item,
        }
    }

    /// Whether the push failed because the queue was full (and might succeed later).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the push failed because the queue was closed (and never will succeed).
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("pushing onto a full queue"),
            Self::Closed(_) => f.write_str("pushing onto a closed queue"),
        }
    }
}

impl<T> Error for TryPushError<T> {}

/// Why a [`push_timeout`](crate::TaskQueue::push_timeout) refused an item; either way the item
/// comes back.
#[must_use = "the rejected item is inside the error"]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PushTimeoutError<T> {
    /// The queue stayed full for the whole timeout.
    Timeout(T),
    /// The queue was closed (before or while waiting).
    Closed(T),
}

impl<T> PushTimeoutError<T> {
    /// Returns the item that could not be pushed.
    pub fn into_inner(self) -> T {
        match self {
            Self::Timeout(item) | Self::Closed(item) => item,
        }
    }
}

impl<T> fmt::Debug for PushTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PushTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("timed out waiting for room in a full queue"),
            Self::Closed(_) => f.write_str("pushing onto a closed queue"),
        }
    }
}

impl<T> Error for PushTimeoutError<T> {}

/// A blocking pop found the queue closed and empty: no item will ever arrive again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the queue is closed and empty")
    }
}

impl Error for Closed {}

/// Why a non-blocking [`try_pop`](crate::TaskQueue::try_pop) returned no item.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryPopError {
    /// The queue is open but holds no item right now.
    Empty,
    /// The queue is closed and empty: no item will ever arrive again.
    Closed,
}

impl fmt::Display for TryPopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the queue is empty"),
            Self::Closed => f.write_str("the queue is closed and empty"),
        }
    }
}

impl Error for TryPopError {}

/// Why a [`pop_timeout`](crate::TaskQueue::pop_timeout) returned no item.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopTimeoutError {
    /// The queue stayed empty for the whole timeout.
    Timeout,
    /// The queue is closed and empty: no item will ever arrive again.
    Closed,
}

impl fmt::Display for PopTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting for an item"),
            Self::Closed => f.write_str("the queue is closed and empty"),
        }
    }
}

impl Error for PopTimeoutError {}
