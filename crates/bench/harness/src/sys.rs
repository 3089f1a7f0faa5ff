//! The harness's process control, on top of `eventloop::sys` and `test_support::sys`.
//!
//! The workspace has one way into libc: `eventloop::sys` and its `syscall!` helper, which turns
//! the C error convention into an `io::Error`, and beside it `test_support::sys` for the few
//! calls only tooling needs (a child's clean signal mask and inherited fds, waiting for a
//! signal). The harness uses both through this thin layer that only adapts types (std's `u32`
//! process ids) and names the harness's intent (`kill_group`). It calls no libc function itself.
//! Like [`crate::process`], it is the part of the course runner's `xtask/src/sys.rs` the harness
//! needs.

use std::io;

use eventloop::sys as os;

pub(crate) use os::block_signals;
pub(crate) use test_support::sys::{unblock_all_signals, wait_for_signal};

/// A std process id (`Child::id`) as the kernel's `pid_t`.
fn pid_t(pid: u32) -> io::Result<i32> {
    i32::try_from(pid)
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Sends `signal` to every process of the process group `pgid` (a child started as the leader
/// of its own group has `pgid` equal to its pid).
pub(crate) fn kill_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    os::kill(-pid_t(pgid)?, signal)
}

/// Marks every fd from 3 up close-on-exec, so a child started by the harness inherits only its
/// standard streams, whatever the harness itself inherited (a server's fd count must not depend
/// on the shell that started the benchmark). Async-signal-safe; kernels before 5.11 lack the
/// flag, and the caller may ignore that error.
pub(crate) fn cloexec_inherited_fds() -> io::Result<()> {
    test_support::sys::cloexec_fds_from(3)
}
