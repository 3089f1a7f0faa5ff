//! One place for what a process does with the panic report of a task that panicked on a pool
//! worker.
//!
//! The pool catches every task panic and hands it to the submitter ([`TaskPanic`](crate::TaskPanic)),
//! so the standard library's report — several lines, and a backtrace under `RUST_BACKTRACE` — is
//! noise on a worker thread, and in a server's log it breaks up the lines that a reader counts.
//! [`report_worker_panics_with`] gives a worker's panic to the caller's reporter instead, and
//! leaves every other thread's panic to the hook that was installed before.

use std::panic::{self, PanicHookInfo};

/// Installs a panic hook: a panic on a thread whose name starts with `worker_name_prefix` (the
/// pool's [`thread_name`](crate::ThreadPoolBuilder::thread_name)) goes to `report`, which may
/// print one line or nothing; a panic on any other thread goes to the hook installed before,
/// because it is a bug, not a task's outcome.
///
/// Call it once, before the pool starts. The hook is process-wide, like every panic hook.
///
/// ```
/// thread_pool::report_worker_panics_with("my-worker", |info| {
///     eprintln!("worker panicked: {info}");
/// });
/// ```
pub fn report_worker_panics_with(
    worker_name_prefix: &'static str,
    report: impl Fn(&PanicHookInfo<'_>) + Send + Sync + 'static,
) {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let on_worker = std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with(worker_name_prefix));
        if on_worker {
            report(info);
        } else {
            previous(info);
        }
    }));
}
