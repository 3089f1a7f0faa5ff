//! Deterministic fault injection, compiled in only with `--cfg fault_injection`.
//!
//! Real kernels return results that a test on an idle machine rarely provokes: `EINTR` from a
//! wait a signal interrupted, `EAGAIN` from a socket epoll has just called readable, short counts
//! from `recv` and `send`, `ECONNRESET` or `EPIPE` in the middle of a write, `EMFILE` or
//! `ENFILE` from `accept`, `ENOMEM` from `epoll_ctl`. With this cfg the IO wrappers of
//! [`crate::sys`] consult this module before each call and, with a probability set from the
//! environment, return one of those results instead of (or, for a short count, by shrinking) the
//! real call — each only where the real kernel could:
//!
//! | class | calls | only when |
//! |---|---|---|
//! | `eintr` | `epoll_wait`; `read`, `write`, `recv`, `send`, `send_vectored`, `accept` | `epoll_wait` with a non-zero timeout; the others on a *blocking* fd (a non-blocking call never sleeps, so no signal can interrupt it), where the wrapper retries it |
//! | `eagain` | `read`, `write`, `recv`, `send`, `send_vectored`, `accept` | the fd is non-blocking |
//! | `short` | `read`, `recv` (fewer bytes read), `write`, `send`, `send_vectored` (fewer sent) | the fd is a stream socket or a pipe, and the call asked for more than one byte |
//! | `reset` | `send`, `send_vectored` | the fd is a connected stream socket; it is shut down both ways first, so every later call sees the dead connection the error reports, as after a peer's reset |
//! | `emfile` | `accept` | always (the pending connection stays queued, as with the real error) |
//! | `enfile` | `accept` (the system's file table full, not the process's) | always (the pending connection stays queued, as with the real error) |
//! | `enomem` | `epoll_ctl` | `EPOLL_CTL_ADD` (the one operation that allocates kernel memory, for the new registration) of a stream socket that is not listening: a connection's registration |
//!
//! Never injected: anything on an eventfd, timerfd or signalfd (their reads are never short and
//! their writes never fail that way), `epoll_ctl` other than a connection's `EPOLL_CTL_ADD`, and
//! the calls that create fds. `ENOMEM` could also meet the registration of a listener, an
//! eventfd or a timerfd, but a program makes those once, at its start, where any error ends it
//! before it serves: there is no path there for a fault to open.
//!
//! # The environment
//!
//! - `EVENTLOOP_FAULT_SEED` — a `u64`. Without it nothing is injected.
//! - `EVENTLOOP_FAULT_RATE` — the probability that one eligible call is faulted, from `0` to `0.5`
//!   (default `0.02`; values above `0.5` are clamped, so a retried `EINTR` always ends).
//! - `EVENTLOOP_FAULT_CLASSES` — a comma-separated subset of
//!   `eintr,eagain,short,reset,emfile,enfile,enomem` (default: all). The conformance runs use
//!   `eintr,eagain,short`, the faults a correct server hides from its clients; `reset`, `emfile`,
//!   `enfile` and `enomem` close connections by design, and have tests of their own.
//! - `EVENTLOOP_FAULT_REPORT` — a folder: a process that exits normally writes its counts there,
//!   to `faults-<pid>.txt` (the CI step adds them up).
//!
//! # Determinism
//!
//! Whether the `n`-th call of one kind (`recv`, `send`, ...) in the process is faulted, and how,
//! is a pure function of the seed, the kind and `n` (a SplitMix64 hash): no clock, no thread
//! identity. A single-threaded run that makes the same calls in the same order therefore gets
//! exactly the same faults; a failing seed reproduces exactly as far as the calls themselves
//! repeat (which, against a real network and several threads, is as far as the arrival order of
//! bytes repeats). [`counts`] gives a count per class and a digest of the set of injected faults,
//! which two runs of the same seed can compare.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::c_int;

/// A kind of call, each with its own call counter (so the faults of one kind do not shift when
/// another kind is called more often).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
    Recv,
    Send,
    SendVectored,
    Accept,
    EpollWait,
    /// `epoll_ctl` with `EPOLL_CTL_ADD` (the wrapper asks only for that operation).
    EpollCtlAdd,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Read,
        Op::Write,
        Op::Recv,
        Op::Send,
        Op::SendVectored,
        Op::Accept,
        Op::EpollWait,
        Op::EpollCtlAdd,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn reads(self) -> bool {
        matches!(self, Op::Read | Op::Recv)
    }

    fn writes(self) -> bool {
        matches!(self, Op::Write | Op::Send | Op::SendVectored)
    }
}

/// A class of injected fault; the bit of each in the class mask is `1 << class`, and its count
/// is `INJECTED[class]` (short writes apart, at [`SHORT_WRITES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Eintr,
    Eagain,
    Short,
    Reset,
    Emfile,
    Enfile,
    Enomem,
}

/// Every class's bit: the default set.
const ALL_CLASSES: u32 = (1 << Class::ALL.len()) - 1;
/// The index in `INJECTED` of short writes (`Short`'s own index counts short reads).
const SHORT_WRITES: usize = Class::ALL.len();

impl Class {
    const ALL: [Class; 7] = [
        Class::Eintr,
        Class::Eagain,
        Class::Short,
        Class::Reset,
        Class::Emfile,
        Class::Enfile,
        Class::Enomem,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Eintr => "eintr",
            Class::Eagain => "eagain",
            Class::Short => "short",
            Class::Reset => "reset",
            Class::Emfile => "emfile",
            Class::Enfile => "enfile",
            Class::Enomem => "enomem",
        }
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// The rate's unit: a rate of `RATE_SCALE` is "every call".
const RATE_SCALE: u64 = 1_000_000;

/// The seed; meaningful only while `ENABLED` is set.
static SEED: AtomicU64 = AtomicU64::new(0);
/// Whether faults are injected at all (a seed was given).
static ENABLED: AtomicU32 = AtomicU32::new(0);
/// The probability of a fault per eligible call, in millionths.
static RATE: AtomicU64 = AtomicU64::new(20_000);
/// The enabled classes, one bit per [`Class`].
static CLASSES: AtomicU32 = AtomicU32::new(ALL_CLASSES);
/// Calls made so far, per [`Op`].
static CALLS: [AtomicU64; Op::ALL.len()] = [const { AtomicU64::new(0) }; Op::ALL.len()];
/// Faults injected so far, per [`Class`] (short reads and short writes apart: short writes are
/// at [`SHORT_WRITES`]).
static INJECTED: [AtomicU64; Class::ALL.len() + 1] =
    [const { AtomicU64::new(0) }; Class::ALL.len() + 1];
/// The wrapping sum of one hash per injected fault: equal for two runs that injected the same
/// set of faults, whatever the order.
static DIGEST: AtomicU64 = AtomicU64::new(0);
/// Reads the environment once, before the first decision.
static FROM_ENV: Once = Once::new();

/// Every atomic here is an independent counter or setting read on its own: no other memory is
/// published through them, so `Relaxed` is enough throughout.
const ORDER: Ordering = Ordering::Relaxed;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn read_env() {
    FROM_ENV.call_once(|| {
        let Some(seed) = std::env::var("EVENTLOOP_FAULT_SEED")
            .ok()
            .and_then(|seed| seed.trim().parse::<u64>().ok())
        else {
            return;
        };
        let rate = std::env::var("EVENTLOOP_FAULT_RATE")
            .ok()
            .and_then(|rate| rate.trim().parse::<f64>().ok())
            .unwrap_or(0.02);
        let classes = std::env::var("EVENTLOOP_FAULT_CLASSES")
            .ok()
            .map(|names| parse_classes(&names))
            .unwrap_or(ALL_CLASSES);
        set(seed, rate, classes);
        if std::env::var_os("EVENTLOOP_FAULT_REPORT").is_some() {
            // SAFETY: `report_at_exit` is an `extern "C" fn()` that lives as long as the program.
            let _ = syscall!(atexit(report_at_exit));
        }
    });
}

/// Appends this process's counts to `$EVENTLOOP_FAULT_REPORT/faults-<pid>.txt` when it exits
/// normally (a process killed by a signal reports nothing).
extern "C" fn report_at_exit() {
    let Some(dir) = std::env::var_os("EVENTLOOP_FAULT_REPORT") else {
        return;
    };
    let path = std::path::Path::new(&dir).join(format!("faults-{}.txt", std::process::id()));
    let line = format!("seed={} {}\n", SEED.load(ORDER), counts());
    let _ = std::fs::write(path, line);
}

fn parse_classes(names: &str) -> u32 {
    names
        .split(',')
        .map(str::trim)
        .filter_map(|name| Class::ALL.into_iter().find(|class| class.name() == name))
        .fold(0, |mask, class| mask | class.bit())
}

fn set(seed: u64, rate: f64, classes: u32) {
    let rate = (rate.clamp(0.0, 0.5) * RATE_SCALE as f64) as u64;
    SEED.store(seed, ORDER);
    RATE.store(rate, ORDER);
    CLASSES.store(classes, ORDER);
    ENABLED.store(1, ORDER);
}

/// Turns injection on in this process with `seed`, `rate` (0 to 0.5) and the comma-separated
/// `classes`, overriding the environment, and resets the call counters, the fault counts and
/// the digest, so a test can run the same scenario twice from the same starting point.
pub fn configure(seed: u64, rate: f64, classes: &str) {
    // Read (and so discard) the environment first, so it cannot override this later.
    read_env();
    set(seed, rate, parse_classes(classes));
    for calls in &CALLS {
        calls.store(0, ORDER);
    }
    for injected in &INJECTED {
        injected.store(0, ORDER);
    }
    DIGEST.store(0, ORDER);
}

/// Turns injection off in this process (the counts stay readable).
pub fn disable() {
    read_env();
    ENABLED.store(0, ORDER);
}

/// What has been injected so far in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultCounts {
    /// `EINTR` from `epoll_wait` or a blocking call.
    pub eintr: u64,
    /// `EAGAIN`/`EWOULDBLOCK` from a non-blocking call.
    pub eagain: u64,
    /// Reads that read fewer bytes than asked for.
    pub short_read: u64,
    /// Writes that wrote fewer bytes than given.
    pub short_write: u64,
    /// `ECONNRESET` or `EPIPE` from a send (the socket shut down first).
    pub reset: u64,
    /// `EMFILE` from `accept`.
    pub emfile: u64,
    /// `ENFILE` from `accept`.
    pub enfile: u64,
    /// `ENOMEM` from `epoll_ctl` adding a connection.
    pub enomem: u64,
    /// A digest of the set of injected faults (which call of which kind got which fault).
    pub digest: u64,
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "eintr={} eagain={} short_read={} short_write={} reset={} emfile={} enfile={} \
             enomem={} digest={:016x}",
            self.eintr,
            self.eagain,
            self.short_read,
            self.short_write,
            self.reset,
            self.emfile,
            self.enfile,
            self.enomem,
            self.digest
        )
    }
}

/// The faults injected so far in this process, per class.
pub fn counts() -> FaultCounts {
    let get = |class: Class| INJECTED[class as usize].load(ORDER);
    FaultCounts {
        eintr: get(Class::Eintr),
        eagain: get(Class::Eagain),
        short_read: get(Class::Short),
        short_write: INJECTED[SHORT_WRITES].load(ORDER),
        reset: get(Class::Reset),
        emfile: get(Class::Emfile),
        enfile: get(Class::Enfile),
        enomem: get(Class::Enomem),
        digest: DIGEST.load(ORDER),
    }
}

/// The seed in force, if injection is on.
pub fn seed() -> Option<u64> {
    read_env();
    (ENABLED.load(ORDER) == 1).then(|| SEED.load(ORDER))
}

/// What the fd is, as far as the eligibility rules care; looked up only when a fault is due.
#[derive(Debug, Clone, Copy)]
struct FdKind {
    nonblocking: bool,
    /// A stream socket or a pipe: reads and writes may be short.
    stream: bool,
    /// A socket (so `shutdown` applies).
    socket: bool,
    /// A listening socket (`SO_ACCEPTCONN`).
    listening: bool,
}

fn fd_kind(fd: BorrowedFd<'_>) -> Option<FdKind> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL on a borrowed (so open) fd reads its status flags; no memory is involved.
    let flags = syscall!(fcntl(raw, libc::F_GETFL)).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` is writable memory of the type fstat fills.
    syscall!(fstat(raw, stat.as_mut_ptr())).ok()?;
    // SAFETY: fstat succeeded, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    let format = stat.st_mode & libc::S_IFMT;
    let socket = format == libc::S_IFSOCK;
    let socket_option = |option: c_int| {
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: `value` is a writable c_int and `len` holds its size, updated in place.
        syscall!(getsockopt(
            raw,
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &mut len
        ))
        .ok()
        .map(|_| value)
    };
    let (stream, listening) = if socket {
        (
            socket_option(libc::SO_TYPE)? == libc::SOCK_STREAM,
            socket_option(libc::SO_ACCEPTCONN)? != 0,
        )
    } else {
        (format == libc::S_IFIFO, false)
    };
    Some(FdKind {
        nonblocking: flags & libc::O_NONBLOCK != 0,
        stream,
        socket,
        listening,
    })
}

/// The fault due for this call, if any.
#[derive(Debug)]
pub(crate) enum Fault {
    /// Fail the call with this error, without making it.
    Error(io::Error),
    /// Make the call with at most this many bytes.
    Limit(usize),
}

fn record(op: Op, call: u64, class: usize) {
    INJECTED[class].fetch_add(1, ORDER);
    let event = splitmix64((op.index() as u64) << 56 ^ (class as u64) << 48 ^ call);
    DIGEST.fetch_add(event, ORDER);
}

/// Decides whether the next call of kind `op` on `fd` (asking for `len` bytes; for
/// `epoll_wait`, `len` is non-zero when the timeout is) is faulted, and how.
pub(crate) fn decide(op: Op, fd: BorrowedFd<'_>, len: usize) -> Option<Fault> {
    read_env();
    if ENABLED.load(ORDER) == 0 {
        return None;
    }
    let call = CALLS[op.index()].fetch_add(1, ORDER);
    let hash = splitmix64(SEED.load(ORDER) ^ splitmix64((op.index() as u64) << 56 ^ call));
    if hash % RATE_SCALE >= RATE.load(ORDER) {
        return None;
    }
    let classes = CLASSES.load(ORDER);
    let enabled = |class: Class| classes & class.bit() != 0;
    if op == Op::EpollWait {
        // epoll_wait sleeps (unless its timeout is zero), so a signal can interrupt it.
        if len != 0 && enabled(Class::Eintr) {
            record(op, call, Class::Eintr as usize);
            return Some(Fault::Error(io::Error::from_raw_os_error(libc::EINTR)));
        }
        return None;
    }
    let kind = fd_kind(fd)?;
    if op == Op::EpollCtlAdd {
        // A new registration needs kernel memory; only a connection's is a path to open.
        if enabled(Class::Enomem) && kind.socket && kind.stream && !kind.listening {
            record(op, call, Class::Enomem as usize);
            return Some(Fault::Error(io::Error::from_raw_os_error(libc::ENOMEM)));
        }
        return None;
    }
    let mut candidates = Vec::with_capacity(4);
    if enabled(Class::Eintr) && !kind.nonblocking {
        candidates.push(Class::Eintr);
    }
    if enabled(Class::Eagain) && kind.nonblocking {
        candidates.push(Class::Eagain);
    }
    if enabled(Class::Short) && kind.stream && len > 1 && (op.reads() || op.writes()) {
        candidates.push(Class::Short);
    }
    if enabled(Class::Reset)
        && kind.socket
        && kind.stream
        && matches!(op, Op::Send | Op::SendVectored)
    {
        candidates.push(Class::Reset);
    }
    if enabled(Class::Emfile) && op == Op::Accept {
        candidates.push(Class::Emfile);
    }
    if enabled(Class::Enfile) && op == Op::Accept {
        candidates.push(Class::Enfile);
    }
    if candidates.is_empty() {
        return None;
    }
    // The bits above those the rate used pick the class and its detail.
    let pick = hash / RATE_SCALE;
    let class = candidates[(pick % candidates.len() as u64) as usize];
    let detail = pick / candidates.len() as u64;
    let fault = match class {
        Class::Eintr => Fault::Error(io::Error::from_raw_os_error(libc::EINTR)),
        Class::Eagain => Fault::Error(io::Error::from_raw_os_error(libc::EAGAIN)),
        Class::Short => Fault::Limit(1 + (detail % (len as u64 - 1)) as usize),
        Class::Reset => {
            // Make the error true before reporting it: the connection is dead from here on,
            // in both directions, as after a reset from the peer.
            let _ = super::shutdown(fd, libc::SHUT_RDWR);
            let errno = if detail.is_multiple_of(2) {
                libc::ECONNRESET
            } else {
                libc::EPIPE
            };
            Fault::Error(io::Error::from_raw_os_error(errno))
        }
        Class::Emfile => Fault::Error(io::Error::from_raw_os_error(libc::EMFILE)),
        Class::Enfile => Fault::Error(io::Error::from_raw_os_error(libc::ENFILE)),
        // Only `EpollCtlAdd` gets it, above.
        Class::Enomem => return None,
    };
    let index = match class {
        Class::Short if op.writes() => SHORT_WRITES,
        other => other as usize,
    };
    record(op, call, index);
    Some(fault)
}

/// The calls made so far of each kind, for a test's report.
pub fn calls() -> [(&'static str, u64); Op::ALL.len()] {
    Op::ALL.map(|op| {
        let name = match op {
            Op::Read => "read",
            Op::Write => "write",
            Op::Recv => "recv",
            Op::Send => "send",
            Op::SendVectored => "send_vectored",
            Op::Accept => "accept",
            Op::EpollWait => "epoll_wait",
            Op::EpollCtlAdd => "epoll_ctl_add",
        };
        (name, CALLS[op.index()].load(ORDER))
    })
}

/// `bufs` cut down to their first `limit` bytes, for a short `send_vectored`.
pub(crate) fn truncate<'b>(bufs: &'b [io::IoSlice<'_>], mut limit: usize) -> Vec<io::IoSlice<'b>> {
    let mut kept = Vec::with_capacity(bufs.len());
    for buf in bufs {
        if limit == 0 {
            break;
        }
        let take = buf.len().min(limit);
        kept.push(io::IoSlice::new(&buf[..take]));
        limit -= take;
    }
    kept
}
