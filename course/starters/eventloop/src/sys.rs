//! The system-call layer: the one place in the workspace that calls libc functions.
//!
//! Every call goes through the `syscall!` macro defined here, which turns the C convention
//! "return -1 and set `errno`" into Rust's `io::Result`, so no caller can forget to check an error
//! and no caller reads `errno` after something else has overwritten it. Everything above this
//! module (the poller, the dispatcher, the sockets) is safe code built on the small wrappers here.
//!
//! Two disciplines keep file descriptors correct:
//!
//! - **Ownership from the first line.** A raw fd returned by the kernel is wrapped in an
//!   [`OwnedFd`] on the very next line. From then on Rust's ownership closes it exactly once: no
//!   leak on an early `?` return, no double close, no use after close. Other code borrows it as a
//!   [`BorrowedFd`].
//! - **`CLOEXEC | NONBLOCK` at creation.** `CLOEXEC` keeps the fd from leaking into a child
//!   process if another thread runs `fork`+`exec` at the same moment (setting it later with `fcntl`
//!   would leave a window). `NONBLOCK` is what an event loop needs: a read or write that cannot
//!   make progress returns `WouldBlock` instead of stalling every other connection.
//!
//! Signals are the one piece of process-wide state here: [`block_signals`] changes the calling
//! thread's signal mask, and threads inherit the mask of the thread that spawns them. That is why
//! a program that wants `signalfd` delivery must block the signals on the main thread *before* it
//! starts any other thread: a signal is delivered to any one thread that does not block it, and a
//! single forgotten thread would receive SIGTERM the old way (and die) instead of the signalfd
//! reporting it.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub use libc::c_int;

/// Calls a libc function and turns its `-1` error return into `io::Error::last_os_error()`.
///
/// The macro contains the crate's only FFI `unsafe` block; each use site states, in a
/// `// SAFETY:` comment, why its arguments are valid for that call.
///
/// It expands to the call inside an `unsafe` block followed by [`check`]. It is private to this
/// module on purpose: this is the one place that calls libc.
///
/// ```text
/// // SAFETY: epoll_create1 takes only flags.
/// let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
/// // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
/// let fd = unsafe { OwnedFd::from_raw_fd(fd) };
/// ```
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every use site of this macro documents why its arguments satisfy the
        // function's contract; the call itself has no other requirement.
        let result = unsafe { libc::$fn($($arg),*) };
        $crate::sys::check(result)
    }};
}

/// Return values that signal an error with `-1`.
pub trait MinusOneIsError: Copy {
    /// Whether the value is the error marker `-1`.
    fn is_minus_one(self) -> bool;
}

impl MinusOneIsError for i32 {
    fn is_minus_one(self) -> bool {
        self == -1
    }
}

impl MinusOneIsError for isize {
    fn is_minus_one(self) -> bool {
        self == -1
    }
}

impl MinusOneIsError for i64 {
    fn is_minus_one(self) -> bool {
        self == -1
    }
}

/// Turns a `-1` into the current `errno` as an `io::Error`; used by the `syscall!` macro.
pub fn check<T: MinusOneIsError>(result: T) -> io::Result<T> {
    if result.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Wraps a freshly created raw fd.
///
/// # Safety
///
/// `fd` must be a valid, open file descriptor that nothing else owns.
unsafe fn owned(fd: RawFd) -> OwnedFd {
    todo!("W04 L05: owned")
}

/// The kernel thread id of the calling thread (what `top -H` and `/proc/<pid>/task` show).
pub fn gettid() -> i32 {
    todo!("W04 L05: gettid")
}

fn signal_set(signals: &[c_int]) -> io::Result<libc::sigset_t> {
    todo!("W04 L05: signal_set")
}

/// Blocks `signals` in the calling thread, so they are delivered only through a signalfd.
///
/// Call it on the main thread before spawning any thread: threads inherit the mask of their
/// creator, and a signal goes to any thread that does not block it.
pub fn block_signals(signals: &[c_int]) -> io::Result<()> {
    todo!("W04 L05: block_signals")
}

/// Unblocks `signals` in the calling thread (the inverse of [`block_signals`]).
pub fn unblock_signals(signals: &[c_int]) -> io::Result<()> {
    todo!("W04 L05: unblock_signals")
}

/// Sends `signal` to the calling thread (`raise`). With the signal blocked it stays pending on
/// this thread, where a signalfd read on this thread picks it up; tests use it that way.
pub fn raise_signal(signal: c_int) -> io::Result<()> {
    todo!("W04 L05: raise_signal")
}

/// Sends `signal` to process `pid` (a negative `pid` signals the process group `-pid`, as
/// `kill(2)` does; `pid` 0 and -1 are refused, because they would signal our own group or every
/// process we may signal).
pub fn kill(pid: i32, signal: c_int) -> io::Result<()> {
    todo!("W04 L05: kill")
}

/// Unblocks every signal in the calling thread. Async-signal-safe (it allocates nothing), so it
/// may run in a `pre_exec` hook: a child inherits its parent's mask across `exec`, and a server
/// must see SIGTERM even if its launcher blocks it.
pub fn unblock_all_signals() -> io::Result<()> {
    todo!("W04 L05: unblock_all_signals")
}

/// Waits until one of `signals` (which the caller blocked) is pending, takes it and returns it.
pub fn wait_for_signal(signals: &[c_int]) -> io::Result<c_int> {
    todo!("W04 L05: wait_for_signal")
}

/// Takes one of `signals` (which the caller blocked) if it is pending, without waiting.
pub fn take_pending_signal(signals: &[c_int]) -> io::Result<Option<c_int>> {
    todo!("W04 L05: take_pending_signal")
}

/// Clock ticks per second, the unit of the CPU times in `/proc/<pid>/stat` (100 if unknown).
pub fn clock_ticks_per_second() -> u64 {
    todo!("W04 L05: clock_ticks_per_second")
}

/// Creates a signalfd that reports `signals` (which the caller has blocked).
pub fn signalfd(signals: &[c_int]) -> io::Result<OwnedFd> {
    todo!("W04 L05: signalfd")
}

/// Reads one pending signal number from a signalfd; `None` when none is pending.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<c_int>> {
    todo!("W04 L05: read_signal")
}

/// Creates an epoll instance.
pub fn epoll_create() -> io::Result<OwnedFd> {
    todo!("W04 L05: epoll_create")
}

/// `epoll_ctl`: adds, modifies (`op`) or deletes `fd` in `epoll` with `events` and `token`.
pub fn epoll_ctl(
    epoll: BorrowedFd<'_>,
    op: c_int,
    fd: BorrowedFd<'_>,
    events: u32,
    token: u64,
) -> io::Result<()> {
    todo!("W04 L05: epoll_ctl")
}

/// `epoll_ctl` on an fd given by its number, for a table that records registrations without
/// borrowing their fds (the dispatcher's). No memory safety is at stake: a closed fd number gives
/// `EBADF`, and a reused one affects only that fd's registration in this epoll set.
pub fn epoll_ctl_raw(
    epoll: BorrowedFd<'_>,
    op: c_int,
    fd: RawFd,
    events: u32,
    token: u64,
) -> io::Result<()> {
    todo!("W04 L05: epoll_ctl_raw")
}

/// `epoll_wait` into `events`; returns how many entries the kernel filled.
///
/// `timeout_ms` is -1 for "forever". EINTR is returned to the caller, which knows how much of
/// its timeout is left.
pub fn epoll_wait(
    epoll: BorrowedFd<'_>,
    events: &mut [MaybeUninit<libc::epoll_event>],
    timeout_ms: c_int,
) -> io::Result<usize> {
    todo!("W04 L05: epoll_wait")
}

/// Creates a non-blocking eventfd with a zero counter.
pub fn eventfd() -> io::Result<OwnedFd> {
    todo!("W04 L05: eventfd")
}

/// Adds `value` to an eventfd's counter (`WouldBlock` if the counter would overflow).
pub fn eventfd_write(fd: BorrowedFd<'_>, value: u64) -> io::Result<()> {
    todo!("W04 L05: eventfd_write")
}

/// Reads and resets an eventfd's counter; `Ok(0)` when it was already zero.
pub fn eventfd_read(fd: BorrowedFd<'_>) -> io::Result<u64> {
    todo!("W04 L05: eventfd_read")
}

/// Creates a non-blocking timerfd on the monotonic clock, disarmed.
pub fn timerfd() -> io::Result<OwnedFd> {
    todo!("W04 L05: timerfd")
}

/// Arms a timerfd to expire once after `after` (relative), or disarms it with `None`.
///
/// A zero duration would disarm the timer, so it is raised to one nanosecond: "already due"
/// must still produce an expiry.
pub fn timerfd_set(fd: BorrowedFd<'_>, after: Option<Duration>) -> io::Result<()> {
    todo!("W04 L05: timerfd_set")
}

/// Reads (and resets) a timerfd's expiry count; `Ok(0)` when it has not expired.
pub fn timerfd_read(fd: BorrowedFd<'_>) -> io::Result<u64> {
    todo!("W04 L05: timerfd_read")
}

/// Opens `/dev/null` read-only: the spare fd a listener keeps for the EMFILE policy.
pub fn open_dev_null() -> io::Result<OwnedFd> {
    todo!("W04 L05: open_dev_null")
}

/// Duplicates `fd` (with CLOEXEC), for tests and for handing a second owner the same file.
pub fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    todo!("W04 L05: dup")
}

/// A connected pair of non-blocking Unix stream sockets (handy for tests of readiness).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    todo!("W04 L05: socketpair")
}

/// `read` into `buf`; EINTR is retried. `WouldBlock` comes back as an error.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    todo!("W04 L05: read")
}

/// `write` from `buf`; EINTR is retried. `WouldBlock` comes back as an error.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    todo!("W04 L05: write")
}

/// A socket address in the C layout, with its length.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn empty() -> RawAddr {
        todo!("W04 L05: empty")
    }

    fn from_std(addr: SocketAddr) -> RawAddr {
        todo!("W04 L05: from_std")
    }

    fn to_std(&self) -> io::Result<SocketAddr> {
        todo!("W04 L05: to_std")
    }
}

/// Creates a non-blocking TCP socket for `addr`'s family.
pub fn tcp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    todo!("W04 L05: tcp_socket")
}

/// Sets an integer socket option.
pub fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: c_int,
) -> io::Result<()> {
    todo!("W04 L05: setsockopt_int")
}

/// Makes the next close of a socket send a TCP reset instead of a FIN (`SO_LINGER` of 0 s).
pub fn set_linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    todo!("W04 L05: set_linger_zero")
}

/// Binds a socket to `addr`.
pub fn bind(fd: BorrowedFd<'_>, addr: SocketAddr) -> io::Result<()> {
    todo!("W04 L05: bind")
}

/// Starts a connection to `addr`; a non-blocking socket reports `EINPROGRESS` as an error.
pub fn connect(fd: BorrowedFd<'_>, addr: SocketAddr) -> io::Result<()> {
    todo!("W04 L05: connect")
}

/// Marks a bound socket as listening with the given backlog.
pub fn listen(fd: BorrowedFd<'_>, backlog: c_int) -> io::Result<()> {
    todo!("W04 L05: listen")
}

/// The address a socket is bound to.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    todo!("W04 L05: local_addr")
}

/// The address of a connected socket's peer.
pub fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    todo!("W04 L05: peer_addr")
}

/// Accepts one connection as a non-blocking, close-on-exec socket; EINTR is retried.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, SocketAddr)> {
    todo!("W04 L05: accept")
}

/// `recv` into `buf`; EINTR is retried; `Ok(0)` means the peer shut down its write side.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    todo!("W04 L05: recv")
}

/// `send` with `MSG_NOSIGNAL`, so a peer that has gone away gives `EPIPE` instead of killing the
/// process with SIGPIPE; EINTR is retried.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    todo!("W04 L05: send")
}

/// `sendmsg` of several buffers at once with `MSG_NOSIGNAL`; EINTR is retried.
pub fn send_vectored(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    todo!("W04 L05: send_vectored")
}

/// Shuts down one or both directions of a socket (`libc::SHUT_WR`, …).
pub fn shutdown(fd: BorrowedFd<'_>, how: c_int) -> io::Result<()> {
    todo!("W04 L05: shutdown")
}

/// Marks every fd from `first` up close-on-exec, so a child about to `exec` inherits only the
/// descriptors below `first` (its standard streams, for `first = 3`), whatever its parent
/// inherited. Async-signal-safe, for a `pre_exec` hook. Kernels before 5.11 lack the flag and
/// answer `EINVAL`, which a caller may treat as "nothing to do".
pub fn cloexec_fds_from(first: u32) -> io::Result<()> {
    todo!("W04 L05: cloexec_fds_from")
}

/// The number of fds this process may have open (the soft `RLIMIT_NOFILE`).
pub fn fd_limit() -> io::Result<(u64, u64)> {
    todo!("W04 L05: fd_limit")
}

/// Sets the soft (and hard) fd limit of this process; tests use it to provoke EMFILE.
pub fn set_fd_limit(soft: u64, hard: u64) -> io::Result<()> {
    todo!("W04 L05: set_fd_limit")
}

#[cfg(test)]
mod tests;
