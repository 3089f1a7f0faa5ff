//! The readiness poller: a thin, safe layer over `epoll`.
//!
//! # The readiness model
//!
//! epoll does not do I/O; it tells you *when I/O would not block*. You register an fd with an
//! [`Interest`] (readable, writable, or both) and a 64-bit token of your choosing; [`Poller::wait`]
//! sleeps until at least one registered fd is ready and returns [`Event`]s carrying your tokens.
//! Then you do the `recv`/`send`/`accept` yourself, on a non-blocking fd, until it says
//! `WouldBlock`. One thread can serve thousands of connections this way, because it only ever
//! touches fds that can make progress.
//!
//! # Level- versus edge-triggered
//!
//! - **Level-triggered** (the default) reports an fd as long as the condition holds: if 100 bytes
//!   are waiting and you read 10, the next `wait` reports it again. Forgetting some data costs a
//!   wake-up, never a hang; that is why the dispatcher uses it.
//! - **Edge-triggered** ([`Interest::edge`]) reports a *change*: new bytes arrived since the last
//!   report. If you read 10 of 100 bytes and wait again, nothing is reported until *more* bytes
//!   arrive — the other 90 sit there. Edge-triggered code must therefore read until `WouldBlock`
//!   every time. It saves wake-ups when you do, and hangs connections when you don't.
//! - **One-shot** ([`Interest::oneshot`]) reports once and then disables the fd until it is
//!   re-armed with [`Poller::modify`], which hands an fd to exactly one of several threads.
//!
//! Each [`Readiness`] reports separately what epoll reports: readable, writable, *read-closed*
//! (`EPOLLRDHUP`: the peer shut down its write side, so after the remaining data a read returns
//! end-of-input), *hang-up* (`EPOLLHUP`: both directions are finished) and *error* (`EPOLLERR`).
//! Hang-up and error are always reported, whatever the interest, so a connection that is not
//! being read (because its output is backed up) still learns that it died.
//!
//! # Timeouts and signals
//!
//! `epoll_wait` takes milliseconds; a timeout of 0.3 ms truncated to 0 would make a loop spin
//! instead of sleeping, so [`Poller::wait`] rounds sub-millisecond remainders *up*. A signal
//! arriving during the wait makes it fail with `EINTR`; the poller retries with whatever is left
//! of the timeout instead of returning early with no events.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys;

/// What an fd is registered for: readable and/or writable, level- or edge-triggered, one-shot.
///
/// ```
/// use eventloop::Interest;
///
/// let both = Interest::READABLE | Interest::WRITABLE;
/// assert!(both.is_readable() && both.is_writable());
/// assert!(Interest::READABLE.edge().is_edge());
/// assert!(!Interest::NONE.is_readable());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest {
    readable: bool,
    writable: bool,
    edge: bool,
    oneshot: bool,
}

impl Interest {
    /// No readiness at all: only hang-up and error are reported (a paused connection).
    pub const NONE: Interest = Interest {
        readable: false,
        writable: false,
        edge: false,
        oneshot: false,
    };
    /// Readable (and read-closed, `EPOLLRDHUP`), level-triggered.
    pub const READABLE: Interest = Interest {
        readable: true,
        ..Interest::NONE
    };
    /// Writable, level-triggered.
    pub const WRITABLE: Interest = Interest {
        writable: true,
        ..Interest::NONE
    };
    /// Readable and writable, level-triggered.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
        ..Interest::NONE
    };

    /// The same interest, edge-triggered (`EPOLLET`).
    #[must_use]
    pub const fn edge(self) -> Interest {
        Interest { edge: true, ..self }
    }

    /// The same interest, one-shot (`EPOLLONESHOT`): disabled after one event until re-armed.
    #[must_use]
    pub const fn oneshot(self) -> Interest {
        Interest {
            oneshot: true,
            ..self
        }
    }

    /// The same interest with readable set to `on`.
    #[must_use]
    pub const fn with_readable(self, on: bool) -> Interest {
        Interest {
            readable: on,
            ..self
        }
    }

    /// The same interest with writable set to `on`.
    #[must_use]
    pub const fn with_writable(self, on: bool) -> Interest {
        Interest {
            writable: on,
            ..self
        }
    }

    /// Whether readability is of interest.
    pub const fn is_readable(self) -> bool {
        self.readable
    }

    /// Whether writability is of interest.
    pub const fn is_writable(self) -> bool {
        self.writable
    }

    /// Whether the interest is edge-triggered.
    pub const fn is_edge(self) -> bool {
        self.edge
    }

    /// Whether the interest is one-shot.
    pub const fn is_oneshot(self) -> bool {
        self.oneshot
    }

    // starter: w04-l05 todo "Do 3: readable is EPOLLIN and EPOLLRDHUP, writable EPOLLOUT, edge EPOLLET, oneshot EPOLLONESHOT"
    /// The `epoll_event.events` bits for this interest.
    pub(crate) fn to_epoll(self) -> u32 {
        let mut bits = 0;
        if self.readable {
            bits |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if self.writable {
            bits |= libc::EPOLLOUT as u32;
        }
        if self.edge {
            bits |= libc::EPOLLET as u32;
        }
        if self.oneshot {
            bits |= libc::EPOLLONESHOT as u32;
        }
        bits
    }
}

impl std::ops::BitOr for Interest {
    type Output = Interest;

    fn bitor(self, other: Interest) -> Interest {
        Interest {
            readable: self.readable || other.readable,
            writable: self.writable || other.writable,
            edge: self.edge || other.edge,
            oneshot: self.oneshot || other.oneshot,
        }
    }
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = Vec::new();
        for (on, name) in [
            (self.readable, "READABLE"),
            (self.writable, "WRITABLE"),
            (self.edge, "EDGE"),
            (self.oneshot, "ONESHOT"),
        ] {
            if on {
                names.push(name);
            }
        }
        if names.is_empty() {
            names.push("NONE");
        }
        write!(f, "Interest({})", names.join(" | "))
    }
}

/// What epoll reported for one fd.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    bits: u32,
}

impl Readiness {
    /// Builds a readiness from raw `epoll_event.events` bits.
    pub const fn from_epoll(bits: u32) -> Readiness {
        Readiness { bits }
    }

    /// The raw `epoll_event.events` bits.
    pub const fn bits(self) -> u32 {
        self.bits
    }

    /// Data can be read (or end-of-input / an error can be read): `EPOLLIN`.
    pub const fn is_readable(self) -> bool {
        self.bits & libc::EPOLLIN as u32 != 0
    }

    /// Data can be written: `EPOLLOUT`.
    pub const fn is_writable(self) -> bool {
        self.bits & libc::EPOLLOUT as u32 != 0
    }

    /// The peer shut down its write side (half-close): `EPOLLRDHUP`.
    pub const fn is_read_closed(self) -> bool {
        self.bits & libc::EPOLLRDHUP as u32 != 0
    }

    /// Both directions are finished (for example after a reset): `EPOLLHUP`.
    pub const fn is_hang_up(self) -> bool {
        self.bits & libc::EPOLLHUP as u32 != 0
    }

    /// An error is pending on the fd: `EPOLLERR`.
    pub const fn is_error(self) -> bool {
        self.bits & libc::EPOLLERR as u32 != 0
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("readable", &self.is_readable())
            .field("writable", &self.is_writable())
            .field("read_closed", &self.is_read_closed())
            .field("hang_up", &self.is_hang_up())
            .field("error", &self.is_error())
            .finish()
    }
}

/// One readiness event: the token the fd was registered with, and what it is ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// What the fd is ready for.
    pub readiness: Readiness,
}

/// A reusable buffer for the events of one [`Poller::wait`].
///
/// It is allocated once and reused by every wait, so polling allocates nothing.
pub struct Events {
    buf: Vec<MaybeUninit<libc::epoll_event>>,
    len: usize,
}

impl Events {
    /// A buffer that receives up to `capacity` events per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        let mut buf = Vec::with_capacity(capacity.max(1));
        buf.resize_with(capacity.max(1), MaybeUninit::uninit);
        Events { buf, len: 0 }
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last wait returned no events (a timeout).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `index`-th event of the last wait.
    pub fn get(&self, index: usize) -> Option<Event> {
        if index >= self.len {
            return None;
        }
        // SAFETY: the kernel initialised the first `len` entries in the last wait.
        let raw = unsafe { self.buf[index].assume_init() };
        Some(Event {
            token: raw.u64,
            readiness: Readiness::from_epoll(raw.events),
        })
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        (0..self.len).filter_map(|index| self.get(index))
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// An epoll instance.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// use eventloop::{Events, Interest, Poller, sys};
///
/// let poller = Poller::new().unwrap();
/// let (a, b) = sys::socketpair().unwrap();
/// poller.add(a.as_fd(), 7, Interest::READABLE).unwrap();
/// let mut events = Events::with_capacity(16);
/// poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
/// assert!(events.is_empty(), "nothing to read yet");
/// sys::write(b.as_fd(), b"x").unwrap();
/// poller.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
/// let event = events.get(0).unwrap();
/// assert_eq!(event.token, 7);
/// assert!(event.readiness.is_readable());
/// ```
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    // starter: w04-l05 todo "Do 3: a Poller around sys::epoll_create"
    /// Creates an epoll instance (close-on-exec).
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            epoll: sys::epoll_create()?,
        })
    }

    // starter: w04-l05 todo "Do 3: sys::epoll_ctl with EPOLL_CTL_ADD, the interest as epoll bits and the token"
    /// Registers `fd` with `interest`; its events will carry `token`.
    ///
    /// The registration lives as long as the *open file* does, not the fd number: remove it
    /// before closing the fd, or a duplicate of the fd keeps delivering events.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        sys::epoll_ctl(
            self.epoll.as_fd(),
            libc::EPOLL_CTL_ADD,
            fd,
            interest.to_epoll(),
            token,
        )
    }

    // starter: w04-l05 todo "Do 3: sys::epoll_ctl with EPOLL_CTL_MOD, the interest as epoll bits and the token"
    /// Changes a registered fd's interest and token (also re-arms a one-shot fd).
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        sys::epoll_ctl(
            self.epoll.as_fd(),
            libc::EPOLL_CTL_MOD,
            fd,
            interest.to_epoll(),
            token,
        )
    }

    // starter: w04-l05 todo "Do 3: sys::epoll_ctl with EPOLL_CTL_DEL and no events"
    /// Removes a registered fd.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        sys::epoll_ctl(self.epoll.as_fd(), libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    // starter: w04-l05 todo "Do 4: epoll_wait with the remaining time rounded up, retry EINTR, record the count in events.len"
    /// Waits until at least one registered fd is ready or `timeout` passes (`None`: forever),
    /// filling `events`; returns the number of events.
    ///
    /// `EINTR` is retried with the remaining time; a timeout that is not a whole number of
    /// milliseconds is rounded up, so a short timeout sleeps rather than spins.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = timeout.map(|timeout| Instant::now().checked_add(timeout));
        loop {
            let timeout_ms = match deadline {
                None | Some(None) => -1,
                Some(Some(deadline)) => {
                    round_up_to_ms(deadline.saturating_duration_since(Instant::now()))
                }
            };
            events.len = 0;
            match sys::epoll_wait(self.epoll.as_fd(), &mut events.buf, timeout_ms) {
                Ok(n) => {
                    events.len = n;
                    return Ok(n);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

// starter: w04-l05 todo "Do 4: whole milliseconds rounded up, clamped to c_int::MAX"
/// Milliseconds for `epoll_wait`, rounded up and clamped to `c_int`.
fn round_up_to_ms(duration: Duration) -> libc::c_int {
    let ms = duration.as_nanos().div_ceil(1_000_000);
    ms.min(libc::c_int::MAX as u128) as libc::c_int
}

#[cfg(test)]
mod tests;
