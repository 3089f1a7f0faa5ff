//! Child processes: spawning them in their own process group, and always stopping them.
//!
//! Every process the runner starts (servers, `cargo` commands, `strace`) leads a process group
//! of its own, so stopping it stops whatever it forked too, and a terminal's Ctrl-C reaches the
//! runner alone — which then stops every group it started ([`install_interrupt_handler`]) before
//! it exits. Groups are registered in a process-wide list while they live for that reason.
//!
//! The benchmark harness (`bench_harness`) starts its servers and tools through this module too:
//! it is public for that, the one place the workspace's tooling spawns process groups.

use crate::sys;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Process groups started and not yet reaped; Ctrl-C stops all of them.
static LIVE_GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Set once Ctrl-C (or SIGTERM/SIGHUP) arrived: the report stops, the cleanup runs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the runner is being interrupted (its output after that point would only confuse).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// How long a group gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// Prepares `command` to run in its own process group with every signal unblocked and, if
/// given, a RLIMIT_NOFILE limit.
pub fn configure(command: &mut Command, nofile: Option<u64>) {
    command.process_group(0);
    // SAFETY: the hook runs between fork and exec in the child, and calls only
    // async-signal-safe functions (pthread_sigmask, setrlimit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // The runner blocks SIGINT/SIGTERM to handle Ctrl-C on a thread of its own; a child
            // inherits that mask and would ignore SIGTERM unless it is unblocked here.
            sys::unblock_all_signals()?;
            // Best effort: on a kernel without the flag the child inherits what we inherited.
            let _ = sys::cloexec_inherited_fds();
            if let Some(limit) = nofile {
                sys::set_nofile_limit(limit)?;
            }
            Ok(())
        });
    }
}

/// Spawns a configured command and registers its group.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
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
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
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
pub fn stop_group(child: &mut Child) -> Option<ExitStatus> {
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
pub fn output(command: &mut Command) -> std::io::Result<std::process::Output> {
    configure(command, None);
    let child = spawn(command)?;
    let pgid = child.id();
    let output = child.wait_with_output();
    release_group(pgid);
    output
}

/// Forgets a group whose leader was reaped elsewhere, after killing any stragglers in it.
pub fn release_group(pgid: u32) {
    let _ = sys::kill_group(pgid, libc::SIGKILL);
    unregister(pgid);
}

/// Whether `pgid` is a group started here and not stopped yet (Ctrl-C stops exactly these).
pub fn owns(pgid: u32) -> bool {
    live_groups().contains(&pgid)
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

/// Ends the runner because its stdout was closed (`cargo xtask list | head -3`): stops every
/// process group it started, then exits with status 141 (128 + SIGPIPE), as a program the closed
/// pipe had killed would, without a word (the reader is gone, and stderr is no place for a
/// normal end of a pipeline).
pub(crate) fn exit_on_closed_stdout() -> ! {
    // The interrupt flag silences the report's remaining lines while the groups stop.
    INTERRUPTED.store(true, Ordering::Relaxed);
    stop_every_group();
    std::process::exit(141);
}

/// Makes Ctrl-C (SIGINT), SIGTERM and SIGHUP stop every registered process group before the
/// runner exits with status 130.
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
                INTERRUPTED.store(true, Ordering::Relaxed);
                let count = live_groups().len();
                eprintln!("\ninterrupted (signal {signal}): stopping {count} process group(s)");
                stop_every_group();
                std::process::exit(130);
            }
        })?;
    Ok(())
}
