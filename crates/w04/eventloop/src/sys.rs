//! The system-call layer: the one place in the workspace that calls libc functions.
//!
//! Every call goes through the `syscall!` macro defined here, which turns the C convention
//! "return -1 and set `errno`" (or, in its `errno` form, pthread's "return the error number")
//! into Rust's `io::Result`, so no caller can forget to check an error
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
//!
//! Built with `--cfg fault_injection`, the IO wrappers here (`read`, `write`, `recv`, `send`,
//! `send_vectored`, `accept`, `epoll_wait`, `epoll_ctl`) first ask a seeded fault injector (the
//! `fault` submodule, which exists only with that cfg) whether to return `EINTR`, `EAGAIN`, a
//! short count, a reset, `EMFILE`, `ENFILE` or `ENOMEM` instead, each only where a kernel could.
//! Without the cfg the `inject!` hook is the plain length and nothing else is compiled.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub use libc::c_int;

/// Calls a libc function and turns its `-1` error return into `io::Error::last_os_error()`.
///
/// The macro's two forms hold the crate's only FFI `unsafe` blocks; each use site states, in a
/// `// SAFETY:` comment, why its arguments are valid for that call.
///
/// It expands to the call inside an `unsafe` block followed by `check`; its `errno` form, for
/// the functions that return an error number rather than `-1` (`pthread_sigmask`), is followed
/// by `check_errno` instead. It is private to this module on purpose: this is the one place that
/// calls libc.
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
    // The few functions that return an error number instead of `-1` and `errno`
    // (`pthread_sigmask`): a non-zero result is that error.
    (errno $fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: as above, every use site documents its arguments.
        let error = unsafe { libc::$fn($($arg),*) };
        $crate::sys::check_errno(error)
    }};
}

/// Asks the fault injector (with `--cfg fault_injection`) whether the next call of kind `$op` on
/// `$fd`, for `$len` bytes, is faulted: evaluates to the length to use, `continue`s the
/// enclosing retry loop for an injected `EINTR`, and returns an injected error. Without the cfg
/// it is `$len` and costs nothing.
macro_rules! inject {
    ($op:ident, $fd:expr, $len:expr) => {{
        #[cfg(fault_injection)]
        let len = match fault::decide(fault::Op::$op, $fd, $len) {
            None => $len,
            Some(fault::Fault::Limit(len)) => len,
            Some(fault::Fault::Error(error)) if error.kind() == io::ErrorKind::Interrupted => {
                continue;
            }
            Some(fault::Fault::Error(error)) => return Err(error),
        };
        #[cfg(not(fault_injection))]
        let len = $len;
        len
    }};
}

#[cfg(fault_injection)]
pub mod fault;

/// Return values that signal an error with `-1`.
trait MinusOneIsError: Copy {
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
fn check<T: MinusOneIsError>(result: T) -> io::Result<T> {
    if result.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Turns the error number a pthread call returns (0 for success) into an `io::Error`: these
/// calls report their error as the return value and leave `errno` alone, so `check` cannot
/// read them. Used by the `syscall!` macro's `errno` form.
fn check_errno(error: c_int) -> io::Result<()> {
    if error == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(error))
    }
}

/// Wraps a freshly created raw fd.
///
/// # Safety
///
/// `fd` must be a valid, open file descriptor that nothing else owns.
unsafe fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees that `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The kernel thread id of the calling thread (what `top -H` and `/proc/<pid>/task` show).
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments; it cannot fail, so the `-1` check never fires.
    syscall!(gettid()).expect("gettid cannot fail")
}

fn signal_set(signals: &[c_int]) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` points to writable memory of the right type; sigemptyset initialises it.
    syscall!(sigemptyset(set.as_mut_ptr()))?;
    for &signal in signals {
        // SAFETY: `set` was initialised by sigemptyset above; an invalid signal number is
        // reported as EINVAL.
        syscall!(sigaddset(set.as_mut_ptr(), signal))?;
    }
    // SAFETY: sigemptyset initialised the set.
    Ok(unsafe { set.assume_init() })
}

/// Blocks `signals` in the calling thread, so they are delivered only through a signalfd.
///
/// Call it on the main thread before spawning any thread: threads inherit the mask of their
/// creator, and a signal goes to any thread that does not block it.
pub fn block_signals(signals: &[c_int]) -> io::Result<()> {
    let set = signal_set(signals)?;
    // SAFETY: `set` is an initialised signal set; the old mask is not requested (null).
    syscall!(errno pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))
}

/// Sends `signal` to the calling thread (`raise`). With the signal blocked it stays pending on
/// this thread, where a signalfd read on this thread picks it up; tests use it that way.
pub fn raise_signal(signal: c_int) -> io::Result<()> {
    // SAFETY: raise takes a signal number and reports a bad one as `-1` and `errno`.
    syscall!(raise(signal))?;
    Ok(())
}

/// Sends `signal` to process `pid` (a negative `pid` signals the process group `-pid`, as
/// `kill(2)` does; `pid` 0 and -1 are refused, because they would signal our own group or every
/// process we may signal).
pub fn kill(pid: i32, signal: c_int) -> io::Result<()> {
    if pid == 0 || pid == -1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill has no memory-safety preconditions; a stale pid at worst signals nothing.
    syscall!(kill(pid, signal))?;
    Ok(())
}

/// Creates a signalfd that reports `signals` (which the caller has blocked).
pub(crate) fn signalfd(signals: &[c_int]) -> io::Result<OwnedFd> {
    let set = signal_set(signals)?;
    // SAFETY: -1 asks for a new fd; `set` is an initialised signal set.
    let fd = syscall!(signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK))?;
    // SAFETY: signalfd just returned this fd and nothing else owns it.
    let fd = unsafe { owned(fd) };
    Ok(fd)
}

/// Reads one pending signal number from a signalfd; `None` when none is pending.
pub(crate) fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<c_int>> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
    let size = mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is writable memory of exactly `size` bytes.
    match syscall!(read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size)) {
        Ok(n) if n as usize == size => {
            // SAFETY: the kernel filled the whole structure.
            let info = unsafe { info.assume_init() };
            Ok(Some(info.ssi_signo as c_int))
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "short signalfd read",
        )),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(error) => Err(error),
    }
}

// starter: w04-l05 todo "Do 1: epoll_create1 with EPOLL_CLOEXEC through syscall!, then wrap the fd with owned on the next line"
/// Creates an epoll instance.
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes only flags.
    let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
    // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
    let fd = unsafe { owned(fd) };
    Ok(fd)
}

// starter: w04-l05 todo "Do 1: build an epoll_event from events and token and pass it to epoll_ctl with op on both raw fds"
/// `epoll_ctl`: adds, modifies (`op`) or deletes `fd` in `epoll` with `events` and `token`.
pub(crate) fn epoll_ctl(
    epoll: BorrowedFd<'_>,
    op: c_int,
    fd: BorrowedFd<'_>,
    events: u32,
    token: u64,
) -> io::Result<()> {
    #[cfg(fault_injection)]
    if op == libc::EPOLL_CTL_ADD {
        if let Some(fault::Fault::Error(error)) = fault::decide(fault::Op::EpollCtlAdd, fd, 0) {
            return Err(error);
        }
    }
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: both fds are open (they are borrowed); `event` is valid for the call (the kernel
    // ignores it for EPOLL_CTL_DEL, and passing one keeps old kernels happy).
    syscall!(epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut event))?;
    Ok(())
}

/// `epoll_ctl` on an fd given by its number, for a table that records registrations without
/// borrowing their fds (the dispatcher's). No memory safety is at stake: a closed fd number gives
/// `EBADF`, and a reused one affects only that fd's registration in this epoll set.
pub(crate) fn epoll_ctl_raw(
    epoll: BorrowedFd<'_>,
    op: c_int,
    fd: RawFd,
    events: u32,
    token: u64,
) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: `event` is valid for the call; the fd is only a number to the kernel.
    syscall!(epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event))?;
    Ok(())
}

// starter: w04-l05 todo "Do 1: epoll_wait into the events buffer, at most its length, and return the count the kernel filled"
/// `epoll_wait` into `events`; returns how many entries the kernel filled.
///
/// `timeout_ms` is -1 for "forever". EINTR is returned to the caller, which knows how much of
/// its timeout is left.
pub fn epoll_wait(
    epoll: BorrowedFd<'_>,
    events: &mut [MaybeUninit<libc::epoll_event>],
    timeout_ms: c_int,
) -> io::Result<usize> {
    let max = c_int::try_from(events.len()).unwrap_or(c_int::MAX).max(1);
    debug_assert!(!events.is_empty());
    #[cfg(fault_injection)]
    if let Some(fault::Fault::Error(error)) =
        fault::decide(fault::Op::EpollWait, epoll, usize::from(timeout_ms != 0))
    {
        return Err(error);
    }
    // SAFETY: `events` is writable for `max` entries (it is never empty: the poller allocates at
    // least one slot); the kernel writes only initialised entries, and only the returned count.
    let n = syscall!(epoll_wait(
        epoll.as_raw_fd(),
        events.as_mut_ptr().cast(),
        max,
        timeout_ms
    ))?;
    Ok(n as usize)
}

/// Creates a non-blocking eventfd with a zero counter.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes an initial value and flags.
    let fd = syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?;
    // SAFETY: eventfd just returned this fd and nothing else owns it.
    let fd = unsafe { owned(fd) };
    Ok(fd)
}

/// Adds `value` to an eventfd's counter (`WouldBlock` if the counter would overflow).
pub(crate) fn eventfd_write(fd: BorrowedFd<'_>, value: u64) -> io::Result<()> {
    let bytes = value.to_ne_bytes();
    // SAFETY: `bytes` is readable for its 8 bytes, the size an eventfd expects.
    syscall!(write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()))?;
    Ok(())
}

/// Reads and resets an eventfd's counter; `Ok(0)` when it was already zero.
pub(crate) fn eventfd_read(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: `bytes` is writable for its 8 bytes, the size an eventfd read needs.
    match syscall!(read(fd.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len())) {
        Ok(_) => Ok(u64::from_ne_bytes(bytes)),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(error) => Err(error),
    }
}

/// Creates a non-blocking timerfd on the monotonic clock, disarmed.
pub(crate) fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create takes a clock id and flags.
    let fd = syscall!(timerfd_create(
        libc::CLOCK_MONOTONIC,
        libc::TFD_CLOEXEC | libc::TFD_NONBLOCK
    ))?;
    // SAFETY: timerfd_create just returned this fd and nothing else owns it.
    let fd = unsafe { owned(fd) };
    Ok(fd)
}

/// Arms a timerfd to expire once after `after` (relative), or disarms it with `None`.
///
/// A zero duration would disarm the timer, so it is raised to one nanosecond: "already due"
/// must still produce an expiry.
pub(crate) fn timerfd_set(fd: BorrowedFd<'_>, after: Option<Duration>) -> io::Result<()> {
    let value = match after {
        Some(after) => {
            let after = after.max(Duration::from_nanos(1));
            libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            }
        }
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: value,
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not requested (null).
    syscall!(timerfd_settime(
        fd.as_raw_fd(),
        0,
        &spec,
        std::ptr::null_mut()
    ))?;
    Ok(())
}

/// Reads (and resets) a timerfd's expiry count; `Ok(0)` when it has not expired.
pub(crate) fn timerfd_read(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // A timerfd read has the same shape as an eventfd read: one 8-byte counter.
    eventfd_read(fd)
}

/// Opens `/dev/null` read-only: the spare fd the process keeps for the listeners' EMFILE policy.
pub(crate) fn open_dev_null() -> io::Result<OwnedFd> {
    let path = c"/dev/null";
    // SAFETY: `path` is a NUL-terminated string that lives across the call.
    let fd = syscall!(open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC))?;
    // SAFETY: open just returned this fd and nothing else owns it.
    let fd = unsafe { owned(fd) };
    Ok(fd)
}

/// A connected pair of non-blocking Unix stream sockets (handy for tests of readiness).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: `fds` is writable for the two fds socketpair returns.
    syscall!(socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()))?;
    // SAFETY: socketpair just returned both fds and nothing else owns them.
    let pair = unsafe { (owned(fds[0]), owned(fds[1])) };
    Ok(pair)
}

/// `read` into `buf`; EINTR is retried. `WouldBlock` comes back as an error.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let len = inject!(Read, fd, buf.len());
        // SAFETY: `buf` is writable for `buf.len()` bytes, and `len` is at most that.
        match syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len)) {
            Ok(n) => return Ok(n as usize),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// `write` from `buf`; EINTR is retried. `WouldBlock` comes back as an error.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        let len = inject!(Write, fd, buf.len());
        // SAFETY: `buf` is readable for `buf.len()` bytes, and `len` is at most that.
        match syscall!(write(fd.as_raw_fd(), buf.as_ptr().cast(), len)) {
            Ok(n) => return Ok(n as usize),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// A socket address in the C layout, with its length.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn empty() -> RawAddr {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (unspecified) value.
        let storage = unsafe { mem::zeroed::<libc::sockaddr_storage>() };
        RawAddr {
            storage,
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    fn from_std(addr: SocketAddr) -> RawAddr {
        let mut raw = RawAddr::empty();
        match addr {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*v4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
                unsafe { std::ptr::write((&raw mut raw.storage).cast(), sin) };
                raw.len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: v6.scope_id(),
                };
                // SAFETY: as above.
                unsafe { std::ptr::write((&raw mut raw.storage).cast(), sin6) };
                raw.len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        raw
    }

    fn to_std(&self) -> io::Result<SocketAddr> {
        match c_int::from(self.storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin: libc::sockaddr_in =
                    unsafe { std::ptr::read((&raw const self.storage).cast()) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6: libc::sockaddr_in6 =
                    unsafe { std::ptr::read((&raw const self.storage).cast()) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an IP socket address",
            )),
        }
    }
}

/// Creates a non-blocking TCP socket for `addr`'s family.
pub fn tcp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: socket takes only integers.
    let fd = syscall!(socket(family, kind, 0))?;
    // SAFETY: socket just returned this fd and nothing else owns it.
    let fd = unsafe { owned(fd) };
    Ok(fd)
}

/// Sets an integer socket option.
pub fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a readable c_int and its size is passed with it.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        level,
        name,
        (&raw const value).cast(),
        mem::size_of::<c_int>() as libc::socklen_t
    ))?;
    Ok(())
}

/// Binds a socket to `addr`.
pub fn bind(fd: BorrowedFd<'_>, addr: SocketAddr) -> io::Result<()> {
    let raw = RawAddr::from_std(addr);
    // SAFETY: `raw.storage` holds a valid sockaddr of `raw.len` bytes.
    syscall!(bind(
        fd.as_raw_fd(),
        (&raw const raw.storage).cast(),
        raw.len
    ))?;
    Ok(())
}

/// Starts a connection to `addr`; a non-blocking socket reports `EINPROGRESS` as an error.
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: SocketAddr) -> io::Result<()> {
    let raw = RawAddr::from_std(addr);
    // SAFETY: `raw.storage` holds a valid sockaddr of `raw.len` bytes.
    syscall!(connect(
        fd.as_raw_fd(),
        (&raw const raw.storage).cast(),
        raw.len
    ))?;
    Ok(())
}

/// Marks a bound socket as listening with the given backlog.
pub fn listen(fd: BorrowedFd<'_>, backlog: c_int) -> io::Result<()> {
    // SAFETY: listen takes an open fd and an integer.
    syscall!(listen(fd.as_raw_fd(), backlog))?;
    Ok(())
}

/// The address a socket is bound to.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::empty();
    // SAFETY: `raw.storage` is writable for `raw.len` bytes, and `raw.len` is updated in place.
    syscall!(getsockname(
        fd.as_raw_fd(),
        (&raw mut raw.storage).cast(),
        &mut raw.len
    ))?;
    raw.to_std()
}

/// The address of a connected socket's peer.
pub(crate) fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::empty();
    // SAFETY: as in `local_addr`.
    syscall!(getpeername(
        fd.as_raw_fd(),
        (&raw mut raw.storage).cast(),
        &mut raw.len
    ))?;
    raw.to_std()
}

// starter: w04-l05 todo "Do 2: accept4 with SOCK_CLOEXEC and SOCK_NONBLOCK into a RawAddr, own the new fd, retry EINTR"
/// Accepts one connection as a non-blocking, close-on-exec socket; EINTR is retried.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, SocketAddr)> {
    loop {
        #[cfg(fault_injection)]
        let _ = inject!(Accept, fd, 0);
        let mut raw = RawAddr::empty();
        let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: `raw.storage` is writable for `raw.len` bytes, and `raw.len` is updated.
        let result = syscall!(accept4(
            fd.as_raw_fd(),
            (&raw mut raw.storage).cast(),
            &mut raw.len,
            flags
        ));
        match result {
            Ok(new_fd) => {
                // SAFETY: accept4 just returned this fd and nothing else owns it.
                let new_fd = unsafe { owned(new_fd) };
                // An address the conversion does not know (it cannot happen for TCP) is
                // reported as unspecified rather than losing the connection.
                let addr = raw.to_std().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                return Ok((new_fd, addr));
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

// starter: w04-l05 todo "Do 2: recv into buf with no flags, retry EINTR, return WouldBlock and other errors as they are"
/// `recv` into `buf`; EINTR is retried; `Ok(0)` means the peer shut down its write side.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let len = inject!(Recv, fd, buf.len());
        // SAFETY: `buf` is writable for `buf.len()` bytes, and `len` is at most that.
        match syscall!(recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len, 0)) {
            Ok(n) => return Ok(n as usize),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

// starter: w04-l05 todo "Do 2: send from buf with MSG_NOSIGNAL, retry EINTR, return WouldBlock and other errors as they are"
/// `send` with `MSG_NOSIGNAL`, so a peer that has gone away gives `EPIPE` instead of killing the
/// process with SIGPIPE; EINTR is retried.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        let len = inject!(Send, fd, buf.len());
        // SAFETY: `buf` is readable for `buf.len()` bytes, and `len` is at most that.
        match syscall!(send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            len,
            libc::MSG_NOSIGNAL
        )) {
            Ok(n) => return Ok(n as usize),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// `sendmsg` of several buffers at once with `MSG_NOSIGNAL`; EINTR is retried.
pub fn send_vectored(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    loop {
        #[cfg(fault_injection)]
        let limit = inject!(
            SendVectored,
            fd,
            bufs.iter().map(|buf| buf.len()).sum::<usize>()
        );
        #[cfg(fault_injection)]
        let shortened = fault::truncate(bufs, limit);
        #[cfg(fault_injection)]
        let bufs = &shortened[..];
        // SAFETY: msghdr is plain old data; all zeroes is "no address, no control data".
        let mut message = unsafe { mem::zeroed::<libc::msghdr>() };
        // `IoSlice` is guaranteed to be ABI-compatible with `iovec` on Unix.
        message.msg_iov = bufs.as_ptr().cast_mut().cast();
        message.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
        // SAFETY: `message` points at `bufs`, readable iovecs that outlive the call; the kernel
        // only reads through them.
        match syscall!(sendmsg(fd.as_raw_fd(), &message, libc::MSG_NOSIGNAL)) {
            Ok(n) => return Ok(n as usize),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Shuts down one or both directions of a socket (`libc::SHUT_WR`, …).
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: c_int) -> io::Result<()> {
    // SAFETY: shutdown takes an open fd and an integer.
    syscall!(shutdown(fd.as_raw_fd(), how))?;
    Ok(())
}

/// The fds this process may have open, `RLIMIT_NOFILE` as `(soft, hard)`: the soft limit is
/// the one `EMFILE` enforces, the hard one the ceiling the soft one may be raised to.
pub fn fd_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a writable rlimit.
    syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut limit))?;
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Sets the soft (and hard) fd limit of this process; tests use it to provoke EMFILE.
pub fn set_fd_limit(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `limit` is a readable rlimit.
    syscall!(setrlimit(libc::RLIMIT_NOFILE, &limit))?;
    Ok(())
}

#[cfg(test)]
mod tests;
