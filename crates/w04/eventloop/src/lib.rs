//! W04: an epoll reactor and the Envoy-style threading layer built on it, on raw libc.
//!
//! The crate is layered; each layer's module docs teach the idea it rests on:
//!
//! 1. [`sys`]: the only module that calls libc. One `syscall!` macro turns `-1` into
//!    `io::Error`; every fd is an `OwnedFd` from the line it is created; `CLOEXEC | NONBLOCK`.
//!    Beside it, [`slab`]: the one table type with generation-checked keys that the fd
//!    registry, the timers and the slot indices (and the W05 server's connections) are kept in.
//! 2. [`net`]: non-blocking TCP sockets — SIGPIPE-proof sends, an accept that survives running
//!    out of fds (`EMFILE`) without spinning, and `SO_REUSEPORT` listeners for one per loop.
//! 3. [`poller`]: epoll and its readiness model — level- versus edge-triggered, one-shot,
//!    half-close (`EPOLLRDHUP`).
//! 4. [`waker`]: waking a loop from another thread with an eventfd, and why wakes coalesce.
//! 5. [`timer`]: any number of timers on one timerfd.
//! 6. [`dispatcher`]: the event loop — fds, timers, signals and posted callbacks, with
//!    generation-checked keys against the fd-reuse bug.
//! 7. [`worker`]: a pool of named threads that each run a dispatcher — `post_to_with` and
//!    `run_on_all_workers` hand work the worker's own `&Dispatcher`.
//! 8. [`slot`]: thread-local slots — one value per dispatcher thread, read without a lock.
//!
//! Beside them, [`shutdown`]: the rule every server on this loop follows on SIGTERM and SIGINT
//! (the first drains, a second closes everything), with the drain's bound; and in [`net`], the
//! accept bounds every server's listener uses.
//!
//! ```
//! use std::time::Duration;
//! use eventloop::Dispatcher;
//!
//! let dispatcher = Dispatcher::new("example").unwrap();
//! let handle = dispatcher.handle();
//! // A timer that ends the loop; a post from another thread that runs first.
//! let timer = dispatcher.create_timer(|dispatcher| dispatcher.exit());
//! timer.enable(Duration::from_millis(5));
//! let (sender, receiver) = std::sync::mpsc::channel();
//! std::thread::spawn(move || handle.post(move || sender.send(42).unwrap())).join().unwrap();
//! dispatcher.run().unwrap();
//! assert_eq!(receiver.try_recv(), Ok(42));
//! ```

pub mod sys;

pub mod dispatcher;
pub mod net;
pub mod poller;
pub mod shutdown;
pub mod slab;
pub mod slot;
pub mod timer;
pub mod waker;
pub mod worker;

pub use dispatcher::{Dispatcher, DispatcherHandle, FdKey};
pub use poller::{Event, Events, Interest, Poller, Readiness};
pub use slot::{Slot, SlotError, ThreadLocal};
pub use timer::Timer;
pub use waker::Waker;
pub use worker::{Worker, WorkerError, WorkerPool};

/// The README's examples, compiled and run as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
