//! The runner's process and socket control.
//!
//! The course's one way into libc is `eventloop::sys` and its `syscall!` helper, which turns the
//! C error convention into an `io::Error`; the few calls the course does not teach and only
//! tooling needs (a child's clean signal mask and inherited fds, waiting for a signal, a socket
//! reset, the clock tick) are `test_support::sys`'s, shared by the test suites, this runner and
//! the benchmark harness. This module makes no libc call of its own: it only adapts types (std's
//! `u32` process ids, `AsFd` streams) and names the runner's intent (`kill_group`,
//! `set_nofile_limit`).
//!
//! The runner builds from the reference crates, never from a student's copy: a started lesson is
//! graded in a scratch workspace (see `student.rs`), so a half-written lesson crate cannot break
//! the tool that grades it.

use std::io;
use std::os::fd::AsFd;

use eventloop::sys as os;

pub(crate) use os::block_signals;
pub(crate) use test_support::sys::{
    clock_ticks_per_second, set_linger_zero, unblock_all_signals, wait_for_signal,
};

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
    test_support::sys::cloexec_fds_from(3)
}

/// Shrinks a socket's receive buffer to about `bytes` (`SO_RCVBUF`; the kernel doubles it for
/// its bookkeeping), so a client that does not read soon stalls the sender at once.
pub(crate) fn set_receive_buffer(socket: &impl AsFd, bytes: i32) -> io::Result<()> {
    os::setsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)
}
