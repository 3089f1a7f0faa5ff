//! Background servers: started in their own process group, probed until ready, logged, and
//! always stopped.

use crate::lesson::Ready;
use crate::process;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A log shared between the threads that fill it and the steps that read it.
pub(crate) type SharedLog = Arc<Mutex<Vec<u8>>>;

/// The `workers=` values of the `stats` answers clients got from one server, shared with the
/// client threads that record them.
///
/// A `threads ... workers + io` check falls back on them when the server's command line names no
/// `--workers`: the server's own answer is then the only word on how many workers it runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatsWorkers(Arc<Mutex<BTreeSet<u64>>>);

impl StatsWorkers {
    /// Records the `workers=` value of one `stats` answer.
    pub(crate) fn record(&self, workers: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(workers);
    }

    /// Every distinct value recorded so far.
    pub(crate) fn values(&self) -> BTreeSet<u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A server process the runner started.
#[derive(Debug)]
pub(crate) struct RunningServer {
    /// The port it listens on.
    pub(crate) port: u16,
    /// Its stdout and stderr, interleaved as they arrived.
    pub(crate) log: SharedLog,
    /// The `workers=` values of the `stats` answers its clients got.
    pub(crate) stats_workers: StatsWorkers,
    /// The shell command it was started with, placeholders replaced: the source of the
    /// `--workers` a thread budget counts.
    command: String,
    child: Child,
    relays: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

/// Picks a free ephemeral port on 127.0.0.1.
///
/// The port is free when this returns; a server that starts right after almost always gets it,
/// and a server that does not fails its readiness probe with its own error in the report.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `--server CMD`: another server graded in place of the lesson's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignServer {
    /// The shell command, with `{port}` and optionally `{args}`.
    pub(crate) template: String,
    /// Whether the lesson's server arguments are passed (`--server-args-none` turns it off).
    pub(crate) lesson_args: bool,
}

impl ForeignServer {
    /// Checks the command: `{port}` is required, and `{args}` contradicts `--server-args-none`.
    pub fn new(template: &str, lesson_args: bool) -> Result<Self, String> {
        if !template.contains("{port}") {
            return Err(format!(
                "--server needs `{{port}}` where the port goes, e.g. --server './server {{port}}' \
                 (`{{args}}` is only the lesson's arguments after the port); got `{template}`"
            ));
        }
        if !lesson_args && template.contains("{args}") {
            return Err(format!(
                "--server-args-none passes no arguments, so `{{args}}` in `{template}` would stay empty; \
                 drop one of the two"
            ));
        }
        Ok(Self {
            template: template.to_owned(),
            lesson_args,
        })
    }

    /// The command to run for a lesson's server command (`handoff_server {port} --workers 2`):
    /// `{port}` replaced; the lesson's arguments after the port in place of `{args}`, or, without
    /// `{args}`, appended (unless `--server-args-none`).
    pub(crate) fn command(&self, lesson_command: &str, port: u16) -> String {
        let args = lesson_server_args(lesson_command);
        let command = self.template.replace("{port}", &port.to_string());
        if command.contains("{args}") {
            command.replace("{args}", &args)
        } else if self.lesson_args && !args.is_empty() {
            format!("{command} {args}")
        } else {
            command
        }
    }
}

/// A lesson server command's arguments after the port: the words after the program name, the
/// `{port}` word left out (`handoff_server {port} --workers 2 --log` gives `--workers 2 --log`).
pub(crate) fn lesson_server_args(lesson_command: &str) -> String {
    lesson_command
        .split_whitespace()
        .skip(1)
        .filter(|word| *word != "{port}")
        .collect::<Vec<_>>()
        .join(" ")
}

/// The program a lesson's server command runs (its first word).
pub(crate) fn lesson_server_program(lesson_command: &str) -> &str {
    lesson_command.split_whitespace().next().unwrap_or_default()
}

/// How a server is started.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    /// The log's name, used to prefix relayed lines.
    pub(crate) log_name: &'a str,
    /// The shell command, placeholders already replaced.
    pub(crate) command: &'a str,
    /// Working directory.
    pub(crate) cwd: &'a std::path::Path,
    /// `PATH` for the server.
    pub(crate) path_env: &'a std::ffi::OsStr,
    /// The port in the command.
    pub(crate) port: u16,
    /// RLIMIT_NOFILE.
    pub(crate) nofile: Option<u64>,
    /// Relay output live.
    pub(crate) verbose: bool,
}

impl RunningServer {
    /// Starts the server; it is not ready yet (see [`RunningServer::wait_ready`]).
    pub(crate) fn start(launch: &Launch<'_>) -> std::io::Result<Self> {
        let mut command = Command::new("sh");
        // `exec` makes the server itself the process the runner watches and signals.
        command
            .arg("-c")
            .arg(format!("exec {}", launch.command))
            .current_dir(launch.cwd)
            .env("PATH", launch.path_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        process::configure(&mut command, launch.nofile);
        let mut child = process::spawn(&mut command)?;
        let log: SharedLog = Arc::default();
        let mut relays = Vec::new();
        let prefix = launch.log_name.to_owned();
        let verbose = launch.verbose;
        if let Some(out) = child.stdout.take() {
            relays.push(relay(out, log.clone(), prefix.clone(), verbose)?);
        }
        if let Some(err) = child.stderr.take() {
            relays.push(relay(err, log.clone(), prefix, verbose)?);
        }
        Ok(Self {
            port: launch.port,
            log,
            stats_workers: StatsWorkers::default(),
            command: launch.command.to_owned(),
            child,
            relays,
            exit: None,
        })
    }

    /// The server's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The shell command the server was started with (without the `exec` the runner puts
    /// before it).
    pub(crate) fn command(&self) -> &str {
        &self.command
    }

    /// The address clients connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The exit status if the process has ended.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                process::release_group(self.child.id());
            }
        }
        self.exit
    }

    /// Waits until the process ends or `deadline` passes.
    pub(crate) fn wait_exit(&mut self, deadline: Instant) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(status) = process::wait_until(&mut self.child, deadline) {
                self.exit = Some(status);
                process::release_group(self.child.id());
            }
        }
        self.exit
    }

    /// A copy of the log so far.
    pub(crate) fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Probes until the server is ready; on failure, says why (with its output if it died).
    pub(crate) fn wait_ready(&mut self, ready: &Ready, deadline: Instant) -> Result<(), String> {
        // Bounded by the deadline; probes are cheap and spaced out.
        loop {
            if let Some(status) = self.exited() {
                self.join_relays();
                return Err(format!(
                    "the server exited ({status}) before it was ready; its output:\n{}",
                    indent(&self.log_text())
                ));
            }
            let is_ready = match ready {
                Ready::Tcp => {
                    TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
                }
                Ready::Line(text) => self
                    .log_text()
                    .lines()
                    .any(|line| line.contains(text.as_str())),
            };
            if is_ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server was not ready on port {} in time; its output so far:\n{}",
                    self.port,
                    indent(&self.log_text())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server's group (SIGTERM, then SIGKILL) and collects the rest of its output.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = process::stop_group(&mut self.child);
        } else {
            process::release_group(self.child.id());
        }
        self.join_relays();
        self.exit
    }

    fn join_relays(&mut self) {
        for relay in self.relays.drain(..) {
            let _ = relay.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn relay(
    stream: impl Read + Send + 'static,
    log: SharedLog,
    prefix: String,
    verbose: bool,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("log-{prefix}"))
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            // Ends when the server (and everything that inherited the pipe) has closed it.
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if verbose {
                    eprint!("  [{prefix}] {}", String::from_utf8_lossy(&line));
                    if !line.ends_with(b"\n") {
                        eprintln!();
                    }
                }
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&line);
                line.clear();
            }
        })
}

/// How many lines of an output [`indent`] keeps at its end.
const KEPT_TAIL: usize = 40;
/// How many lines of the first panic [`indent`] keeps when the tail leaves it out.
const KEPT_PANIC: usize = 12;

/// Indents text for the report, keeping at most its last 40 lines, and, when those leave out a
/// panic, the first panic's message above them: with `RUST_BACKTRACE` set, a failing test's
/// last lines are all backtrace frames, and its assertion would be cut.
pub(crate) fn indent(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skipped = lines.len().saturating_sub(KEPT_TAIL);
    let mut out = String::new();
    let mut push = |line: &str| {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    };
    let mut shown = 0;
    if let Some(panic) = lines[..skipped]
        .iter()
        .position(|line| line.contains("panicked at"))
    {
        // The message ends where the backtrace (or the next blank line) starts.
        let end = lines[panic + 1..skipped]
            .iter()
            .position(|line| line.is_empty() || line.starts_with("stack backtrace:"))
            .map_or(skipped, |at| panic + 1 + at)
            .min(panic + KEPT_PANIC);
        if panic > 0 {
            push(&format!("... ({panic} earlier lines)"));
        }
        for line in &lines[panic..end] {
            push(line);
        }
        shown = end;
    }
    if skipped > shown {
        let what = if shown == 0 { "earlier" } else { "more" };
        push(&format!("... ({} {what} lines)", skipped - shown));
    }
    for line in &lines[skipped..] {
        push(line);
    }
    if lines.is_empty() {
        push("(no output)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LESSON: &str = "handoff_server {port} --workers 2 --log";

    #[test]
    fn without_args_placeholder_the_lesson_arguments_follow_the_command() {
        let server = ForeignServer::new("./server {port}", true).unwrap();
        assert_eq!(
            server.command(LESSON, 4000),
            "./server 4000 --workers 2 --log"
        );
        let bare = "handoff_server {port}";
        assert_eq!(server.command(bare, 4000), "./server 4000");
    }

    #[test]
    fn the_args_placeholder_is_the_arguments_after_the_port() {
        let server = ForeignServer::new("./server --port {port} -- {args} --extra", true).unwrap();
        assert_eq!(
            server.command(LESSON, 4000),
            "./server --port 4000 -- --workers 2 --log --extra"
        );
    }

    #[test]
    fn args_none_passes_only_the_port() {
        let server = ForeignServer::new("./server {port}", false).unwrap();
        assert_eq!(server.command(LESSON, 4000), "./server 4000");
    }

    #[test]
    fn bad_commands_are_refused_with_the_reason() {
        let no_port = ForeignServer::new("./server {args}", true).unwrap_err();
        assert!(no_port.contains("needs `{port}`"), "{no_port}");
        let both = ForeignServer::new("./server {port} {args}", false).unwrap_err();
        assert!(both.contains("--server-args-none"), "{both}");
    }

    #[test]
    fn the_program_and_arguments_of_a_lesson_command() {
        assert_eq!(lesson_server_program(LESSON), "handoff_server");
        assert_eq!(lesson_server_args("epoll_server {port}"), "");
    }

    #[test]
    fn a_long_output_keeps_its_tail_and_the_first_panic_above_a_backtrace() {
        let short = "one\ntwo\n";
        assert_eq!(indent(short), "    one\n    two\n");
        assert_eq!(indent(""), "    (no output)\n");

        let plain: String = (0..50).map(|n| format!("line {n}\n")).collect();
        let kept = indent(&plain);
        assert!(
            kept.starts_with("    ... (10 earlier lines)\n    line 10\n"),
            "{kept}"
        );
        assert!(kept.ends_with("    line 49\n"), "{kept}");

        let mut failing = String::from("running 1 test\n\n---- t stdout ----\n");
        failing
            .push_str("thread 't' panicked at src/a.rs:1:5:\nassertion `left == right` failed\n");
        failing.push_str("  left: 1\n right: 2\nstack backtrace:\n");
        failing.extend((0..60).map(|n| format!("  {n}: frame\n")));
        failing.push_str("test result: FAILED. 0 passed; 1 failed\n");
        let kept = indent(&failing);
        assert!(
            kept.starts_with(
                "    ... (3 earlier lines)\n    thread 't' panicked at src/a.rs:1:5:\n    \
                 assertion `left == right` failed\n      left: 1\n     right: 2\n    ... (\
                 22 more lines)\n"
            ),
            "{kept}"
        );
        assert!(
            kept.ends_with("    test result: FAILED. 0 passed; 1 failed\n"),
            "{kept}"
        );
    }
}
