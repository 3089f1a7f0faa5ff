//! The runner's only contact with libc.
//!
//! The workspace rule is that every libc call goes through one helper that turns the C error
//! convention into an `io::Error`. The runner needs only a handful of calls that the standard
//! library does not offer — signalling process groups, limiting a child's file descriptors,
//! waiting for Ctrl-C, resetting a TCP connection — and they all live here, each through
//! [`syscall`] (for calls that return -1 and set `errno`) or [`pthread_result`] (for the
//! `pthread_*` family, which returns the error number itself).

use std::io;
use std::os::fd::AsRawFd;

/// Turns the `-1`-and-`errno` convention into an `io::Result`.
fn syscall(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turns the `pthread_*` convention (0 or an error number) into an `io::Result`.
fn pthread_result(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// Sends `signal` to one process.
pub(crate) fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill has no memory-safety preconditions; a stale pid at worst signals nothing.
    syscall(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Sends `signal` to every process of the process group `pgid`.
pub(crate) fn kill_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // The group id must be positive: `kill(-0, ..)` would signal our own group.
    if pgid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill has no memory-safety preconditions.
    syscall(unsafe { libc::kill(-pgid, signal) }).map(drop)
}

/// Sets RLIMIT_NOFILE (soft and hard) of the calling process.
///
/// Async-signal-safe, so it may run in a `pre_exec` hook between fork and exec.
pub(crate) fn set_nofile_limit(limit: u64) -> io::Result<()> {
    let rlimit = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: limit as libc::rlim_t,
    };
    // SAFETY: the pointer is to a live, initialised rlimit for the duration of the call.
    syscall(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) }).map(drop)
}

/// Builds a signal set holding `signals`.
fn signal_set(signals: &[libc::c_int]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    syscall(unsafe { libc::sigemptyset(&mut set) })?;
    for &signal in signals {
        // SAFETY: `set` is a valid, initialised sigset_t.
        syscall(unsafe { libc::sigaddset(&mut set, signal) })?;
    }
    Ok(set)
}

/// Blocks `signals` in the calling thread; threads spawned afterwards inherit the mask.
pub(crate) fn block_signals(signals: &[libc::c_int]) -> io::Result<()> {
    let set = signal_set(signals)?;
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    pthread_result(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })
}

/// Unblocks every signal in the calling thread.
///
/// Children inherit the signal mask across `exec`, so the runner calls this in every child's
/// `pre_exec` hook: a server must see SIGTERM even though the runner blocks it. Async-signal-safe.
pub(crate) fn unblock_all_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain data and sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    syscall(unsafe { libc::sigemptyset(&mut set) })?;
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    pthread_result(unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) })
}

/// Marks every fd from 3 up close-on-exec, so a child started by the runner inherits only its
/// standard streams, whatever the runner itself inherited (a server's fd count must not depend on
/// the shell that started the runner). Async-signal-safe; kernels before 5.11 lack the flag, and
/// the caller may ignore that error.
pub(crate) fn cloexec_inherited_fds() -> io::Result<()> {
    // SAFETY: close_range only changes flags of this process's descriptors; it touches no memory.
    syscall(unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    })
    .map(drop)
}

/// Waits until one of `signals` (which the caller blocked) is pending and returns it.
pub(crate) fn wait_for_signal(signals: &[libc::c_int]) -> io::Result<libc::c_int> {
    let set = signal_set(signals)?;
    let mut received: libc::c_int = 0;
    // SAFETY: both pointers are to live, initialised values for the duration of the call.
    pthread_result(unsafe { libc::sigwait(&set, &mut received) })?;
    Ok(received)
}

/// Makes the next close of `socket` send a TCP reset instead of a FIN (SO_LINGER with 0 s).
pub(crate) fn set_linger_zero(socket: &impl AsRawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open for the duration of the call (borrowed from `socket`), and the
    // option value points to a live linger struct of the size passed.
    syscall(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Clock ticks per second, the unit of the CPU times in `/proc/<pid>/stat`.
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // Linux has reported 100 on every architecture for decades; fall back to it on error.
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Takes one of `signals` (which the caller blocked) if it is pending, without waiting.
#[allow(
    dead_code,
    reason = "used by examples/broken_server.rs, which includes this module"
)]
pub(crate) fn take_pending_signal(signals: &[libc::c_int]) -> io::Result<Option<libc::c_int>> {
    let set = signal_set(signals)?;
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the set and the timeout point to live, initialised values; a null siginfo pointer
    // is allowed.
    match syscall(unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) }) {
        Ok(signal) => Ok(Some(signal)),
        Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(error) => Err(error),
    }
}
