//! The runner's process and socket control.
//!
//! The course's one way into libc is `eventloop::sys` and its `syscall!` helper, which turns the
//! C error convention into an `io::Error`. The runner uses it through this thin layer that only
//! adapts types (std's `u32` process ids, `AsFd` streams) and names the runner's intent
//! (`kill_group`, `set_nofile_limit`). The few calls the course does not teach and only tooling
//! needs (a child's clean signal mask and inherited fds, waiting for a signal, a socket reset,
//! the clock tick) are made here, through the small `check` and `check_errno` helpers below: the
//! tidy test `only_eventloop_sys_calls_libc_functions` allows this module and `test_support::sys`
//! beside `eventloop::sys`. They are the same calls as `test_support::sys`'s, and become uses of
//! it once the runner depends on that crate.
//!
//! The runner builds from the reference crates, never from a student's copy: a started lesson is
//! graded in a scratch workspace (see `student.rs`), so a half-written lesson crate cannot break
//! the tool that grades it.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd as _};

use eventloop::sys as os;

pub(crate) use os::block_signals;

/// Turns libc's `-1` error return into `io::Error::last_os_error()`.
fn check<T: Copy + PartialEq + From<i8>>(result: T) -> io::Result<T> {
    if result == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Turns the error number that the pthread and `sigwait` calls return (0 for success) into an
/// `io::Result`; these calls leave `errno` alone.
fn check_errno(error: libc::c_int) -> io::Result<()> {
    if error == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(error))
    }
}

/// Unblocks every signal in the calling thread. Async-signal-safe (it allocates nothing), so it
/// may run in a `pre_exec` hook: a child inherits its parent's mask across `exec`, and a server
/// must see SIGTERM even if the runner blocks it.
pub(crate) fn unblock_all_signals() -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is writable memory of the right type; sigemptyset initialises it.
    check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    // SAFETY: sigemptyset initialised the set; the old mask is not requested (null).
    check_errno(unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut())
    })
}

/// Waits until one of `signals` (which the caller blocked) is pending, takes it and returns it.
pub(crate) fn wait_for_signal(signals: &[libc::c_int]) -> io::Result<libc::c_int> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is writable memory of the right type; sigemptyset initialises it.
    check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    for &signal in signals {
        // SAFETY: `set` was initialised by sigemptyset; a bad signal number is EINVAL.
        check(unsafe { libc::sigaddset(set.as_mut_ptr(), signal) })?;
    }
    let mut received: libc::c_int = 0;
    // SAFETY: sigemptyset initialised the set; both pointers are live for the call.
    check_errno(unsafe { libc::sigwait(set.as_ptr(), &mut received) })?;
    Ok(received)
}

/// Clock ticks per second, the unit of the CPU times in `/proc/<pid>/stat` (100 if unknown).
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = check(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// A std process id (`Child::id`) as the kernel's `pid_t`.
fn pid_t(pid: u32) -> io::Result<i32> {
    i32::try_from(pid)
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Sends `signal` to one process.
pub(crate) fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    os::kill(pid_t(pid)?, signal)
}

/// Sends `signal` to every process of the process group `pgid` (a child started as the leader
/// of its own group has `pgid` equal to its pid).
pub(crate) fn kill_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    os::kill(-pid_t(pgid)?, signal)
}

/// Sets RLIMIT_NOFILE (soft and hard) of the calling process. Async-signal-safe, so it may run
/// in a `pre_exec` hook between fork and exec.
pub(crate) fn set_nofile_limit(limit: u64) -> io::Result<()> {
    os::set_fd_limit(limit, limit)
}

/// Marks every fd from 3 up close-on-exec, so a child started by the runner inherits only its
/// standard streams, whatever the runner itself inherited (a server's fd count must not depend on
/// the shell that started the runner). Async-signal-safe; kernels before 5.11 lack the flag, and
/// the caller may ignore that error.
pub(crate) fn cloexec_inherited_fds() -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on this process's
    // descriptors; it closes nothing and touches no memory.
    check(unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    })?;
    Ok(())
}

/// Makes the next close of `socket` send a TCP reset instead of a FIN (SO_LINGER with 0 s).
pub(crate) fn set_linger_zero(socket: &impl AsFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a readable linger struct and its size is passed with it; the fd is
    // open for as long as `socket` is borrowed.
    check(unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Shrinks a socket's receive buffer to about `bytes` (`SO_RCVBUF`; the kernel doubles it for
/// its bookkeeping), so a client that does not read soon stalls the sender at once.
pub(crate) fn set_receive_buffer(socket: &impl AsFd, bytes: i32) -> io::Result<()> {
    os::setsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)
}
