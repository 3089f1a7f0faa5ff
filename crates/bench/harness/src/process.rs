//! Child processes: spawning them in their own process group, and always stopping them.
//!
//! Every process the harness starts (servers, `cargo` commands, `perf`, `strace`) leads a process
//! group of its own, so stopping it stops whatever it forked too, and a terminal's Ctrl-C reaches
//! the harness alone — which then stops every group it started ([`install_interrupt_handler`])
//! before it exits. Groups are registered in a process-wide list while they live for that reason.
//!
//! This is the course runner's `xtask/src/process.rs`, cut down to what the harness uses. It is a
//! copy because the runner is a binary-only package: there is no library to depend on, and the
//! runner must not depend on the harness (that is the point of the harness being apart). When the
//! runner becomes a library with this module public, the harness should depend on it and this
//! file should go.

use crate::sys;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Process groups started and not yet reaped; Ctrl-C stops all of them.
static LIVE_GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// How long a group gets between SIGTERM and SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// Prepares `command` to run in its own process group with every signal unblocked.
pub(crate) fn configure(command: &mut Command) {
    command.process_group(0);
    // SAFETY: the hook runs between fork and exec in the child, and calls only
    // async-signal-safe functions (pthread_sigmask, close_range); it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            // The harness blocks SIGINT/SIGTERM to handle Ctrl-C on a thread of its own; a child
            // inherits that mask and would ignore SIGTERM unless it is unblocked here.
            sys::unblock_all_signals()?;
            // Best effort: on a kernel without the flag the child inherits what we inherited.
            let _ = sys::cloexec_inherited_fds();
            Ok(())
        });
    }
}

/// Spawns a configured command and registers its group.
pub(crate) fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let child = command.spawn()?;
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child.id());
    Ok(child)
}

fn unregister(pgid: u32) {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&live| live != pgid);
}

/// Waits for `child` until `deadline`, polling; `None` if it is still running then.
pub(crate) fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    // Bounded by the deadline; each turn sleeps a little so the wait costs no CPU to speak of.
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
    }
}

/// Stops the child's whole process group: SIGTERM, then SIGKILL after [`GRACE`]; reaps the child.
///
/// Returns the child's exit status.
pub(crate) fn stop_group(child: &mut Child) -> Option<ExitStatus> {
    let pgid = child.id();
    let status = match child.try_wait() {
        Ok(Some(status)) => Some(status),
        _ => {
            let _ = sys::kill_group(pgid, libc::SIGTERM);
            match wait_until(child, Instant::now() + GRACE) {
                Some(status) => Some(status),
                None => {
                    let _ = sys::kill_group(pgid, libc::SIGKILL);
                    child.wait().ok()
                }
            }
        }
    };
    // The leader is gone; anything it forked into the group goes too.
    let _ = sys::kill_group(pgid, libc::SIGKILL);
    unregister(pgid);
    status
}

/// Runs a command to its end in a registered process group of its own (as [`spawn`]), so Ctrl-C
/// stops it and whatever it forked; returns what it printed on the streams set to be piped.
pub(crate) fn output(command: &mut Command) -> std::io::Result<std::process::Output> {
    configure(command);
    let child = spawn(command)?;
    let pgid = child.id();
    let output = child.wait_with_output();
    release_group(pgid);
    output
}

/// Whether `pgid` is a group the harness started and has not stopped yet.
#[cfg(test)]
pub(crate) fn owns(pgid: u32) -> bool {
    live_groups().contains(&pgid)
}

/// Forgets a group whose leader was reaped elsewhere, after killing any stragglers in it.
pub(crate) fn release_group(pgid: u32) {
    let _ = sys::kill_group(pgid, libc::SIGKILL);
    unregister(pgid);
}

fn live_groups() -> Vec<u32> {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Stops every registered group: SIGTERM, a bounded wait of [`GRACE`], then SIGKILL.
fn stop_every_group() {
    let groups = live_groups();
    for &pgid in &groups {
        let _ = sys::kill_group(pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    // Bounded wait for the groups to go; a group is gone when signal 0 cannot reach it.
    while Instant::now() < deadline && groups.iter().any(|&pgid| sys::kill_group(pgid, 0).is_ok()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pgid in &groups {
        let _ = sys::kill_group(pgid, libc::SIGKILL);
    }
}

/// Makes Ctrl-C (SIGINT), SIGTERM and SIGHUP stop every registered process group before the
/// harness exits with status 130.
///
/// Must be called on the main thread before any other thread starts, so every thread inherits
/// the blocked mask and only the handler thread receives these signals.
pub fn install_interrupt_handler() -> std::io::Result<()> {
    let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    sys::block_signals(&signals)?;
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            if let Ok(signal) = sys::wait_for_signal(&signals) {
                let count = live_groups().len();
                eprintln!("\ninterrupted (signal {signal}): stopping {count} process group(s)");
                stop_every_group();
                std::process::exit(130);
            }
        })?;
    Ok(())
}
