//! The pool's typed errors and the panic report handed to `on_done` callbacks. Every error from a
//! spawn hands the task back, so a caller can run it elsewhere or report it.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};

/// Why [`ThreadPoolBuilder::build`](crate::ThreadPoolBuilder::build) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// A pool needs at least one worker.
    ZeroWorkers,
    /// A pool needs room for at least one pending task.
    ZeroCapacity,
    /// The requested capacity does not fit the pool's pending-task counter.
    CapacityTooLarge {
        /// The capacity that was asked for.
        requested: usize,
        /// The largest capacity the pool supports.
        max: usize,
    },
    /// The `THREAD_POOL_WORKERS` environment variable is set but is not a positive integer.
    InvalidWorkersEnv {
        /// The variable's value as found.
        value: String,
    },
    /// The operating system refused to start a worker thread. The workers started before it have
    /// been shut down and joined.
    Spawn(io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroWorkers => f.write_str("a thread pool needs at least one worker"),
            Self::ZeroCapacity => {
                f.write_str("a thread pool needs a capacity of at least one task")
            }
            Self::CapacityTooLarge { requested, max } => {
                write!(f, "capacity {requested} exceeds the maximum of {max}")
            }
            Self::InvalidWorkersEnv { value } => write!(
                f,
                "{} must be a positive integer, found {value:?}",
                crate::WORKERS_ENV
            ),
            Self::Spawn(_) => f.write_str("failed to start a worker thread"),
        }
    }
}

impl Error for BuildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Spawn(error) => Some(error),
            _ => None,
        }
    }
}

/// A blocking [`spawn`](crate::ThreadPool::spawn) found the pool shut down; the task is handed back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SpawnError<F>(pub F);

impl<F> SpawnError<F> {
    /// Returns the task that was not accepted.
    pub fn into_inner(self) -> F {
        self.0
    }
}

// `Debug` by hand, so it does not require `F: Debug` (closures never are).
impl<F> fmt::Debug for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpawnError(..)")
    }
}

impl<F> fmt::Display for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the thread pool is shut down")
    }
}

impl<F> Error for SpawnError<F> {}

/// Why a non-blocking [`try_spawn`](crate::ThreadPool::try_spawn) refused a task; either way the
/// task comes back.
#[must_use = "the rejected task is inside the error"]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySpawnError<F> {
    /// `capacity` tasks were already pending.
    Full(F),
    /// The pool is shut down (or shutting down).
    ShutDown(F),
}

impl<F> TrySpawnError<F> {
    /// Returns the task that was not accepted.
    pub fn into_inner(self) -> F {
        match self {
            Self::Full(task) | Self::ShutDown(task) => task,
        }
    }

    /// Whether the pool refused because it was full (and might accept later).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the pool refused because it is shut down (and never will accept again).
    pub fn is_shut_down(&self) -> bool {
        matches!(self, Self::ShutDown(_))
    }
}

impl<F> fmt::Debug for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::ShutDown(_) => f.write_str("ShutDown(..)"),
        }
    }
}

impl<F> fmt::Display for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the thread pool is at capacity"),
            Self::ShutDown(_) => f.write_str("the thread pool is shut down"),
        }
    }
}

impl<F> Error for TrySpawnError<F> {}

/// A task panicked; this is what its `on_done` callback receives instead of a value.
///
/// The panic payload itself is dropped on the worker (it may not be `Sync`, and the worker must
/// survive it); what is kept is its message, which is what a server reports to its client.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskPanic {
    message: String,
}

/// The message recorded when a task panics with something other than a `&str` or a `String`.
const NON_STRING_PAYLOAD: &str = "task panicked with a non-string payload";

impl TaskPanic {
    // starter: w05-l02 todo "Do 5: downcast to a str or a String for the message, then drop_payload"
    /// Turns a payload caught by `catch_unwind` into a report, dropping the payload safely.
    pub(crate) fn from_payload(payload: Box<dyn Any + Send>) -> Self {
        let message = if let Some(text) = payload.downcast_ref::<&'static str>() {
            (*text).to_owned()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            NON_STRING_PAYLOAD.to_owned()
        };
        drop_payload(payload);
        Self { message }
    }

    /// Runs `f`, catching a panic the way the pool catches a task's: `Ok` with its value, or
    /// `Err` with the panic's message (the payload is dropped safely).
    ///
    /// For a task that runs several pieces of work and must give each its own outcome (a server
    /// task answering a batch of requests, where one panicking request must not take the others'
    /// answers with it). The pool does not count panics caught here; the caller does.
    ///
    /// ```
    /// use thread_pool::TaskPanic;
    ///
    /// assert_eq!(TaskPanic::catch(|| 6 * 7), Ok(42));
    /// let caught = TaskPanic::catch(|| -> u32 { panic!("bad input {}", 7) }).unwrap_err();
    /// assert_eq!(caught.message(), "bad input 7");
    /// ```
    pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, TaskPanic> {
        panic::catch_unwind(AssertUnwindSafe(f)).map_err(Self::from_payload)
    }

    /// The panic message: the `&str` or `String` the task panicked with (a fixed description for
    /// any other payload type).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for TaskPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskPanic")
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for TaskPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task panicked: {}", self.message)
    }
}

impl Error for TaskPanic {}

/// Drops a panic payload without letting a panicking `Drop` of the payload unwind into the worker.
/// If the drop panics, the second payload is leaked rather than dropped, since dropping it could
/// panic again without end.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(nested) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(nested);
    }
}
