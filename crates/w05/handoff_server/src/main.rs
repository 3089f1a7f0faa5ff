//! `handoff_server`: the W05 IO-to-CPU handoff server (lessons L04–L06 and the quest).
//!
//! The main thread runs an `eventloop` [`Dispatcher`] that owns the listener and every client
//! socket; a `thread_pool` runs the CPU verbs; results come back through a `task_queue` and an
//! eventfd waker. It speaks the course's wire protocol (`handoff_protocol`) exactly. The crate's
//! `README.md` walks through a request's path, the backpressure rules and the defaults.
//!
//! The loop itself — accepting, reading, the way back from the pool, backpressure, the shutdown
//! drain — is the crate's library, `handoff_server::io_loop` (which the W09 `kv_server` runs
//! too), and the process set-up is `handoff_server::startup`. This binary adds:
//!
//! - [`server`]: its service on that loop — what its lines mean, batches, how answers are
//!   settled, the W06 timers.
//! - [`session`]: what a line means here, on the shared socket-free connection state machine
//!   (`handoff_protocol::session`), so it is unit-tested on its own.
//! - [`loops`]: `--loops N` (N > 1), the Envoy model: N event loops, each an `eventloop::Worker`
//!   with its own `SO_REUSEPORT` listener and connections, sharing the pool; the main thread
//!   supervises (signals, `stats` across loops). [`loop_link`] holds what a loop and the main
//!   thread share (the link, the counters), so `server` never depends on `loops`.
//! - [`overload`] and its controls (W06, all off by default): [`admission`] (the gate and
//!   shedding), [`deadline`] (request timeouts), [`retry`] (the retry budget) and [`telemetry`]
//!   (the overload keys of `stats`).
//!
//! Shutdown order on SIGINT/SIGTERM: the signals are blocked on the main thread before the pool
//! starts (every worker inherits the mask) and arrive through the dispatcher's signalfd; the loop
//! stops accepting and reading, answers every request it has read, closes each connection once
//! its answers are sent, and returns; then the pool is shut down (every accepted task runs, every
//! worker is joined) and the process exits 0. With several loops the main thread reads the
//! signals and every loop drains the same way (see [`loops`]), then the loops stop, then the pool.

mod admission;
mod batch;
mod deadline;
mod loop_link;
mod loops;
mod overload;
mod retry;
mod server;
mod session;
mod telemetry;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use eventloop::Dispatcher;

use crate::admission::GateLimits;
use crate::overload::Controls;
use handoff_server::startup::{
    Loops, ServeArgs, block_shutdown_signals, exit_code, positive,
    report_worker_panics_in_one_line, worker_count,
};

use crate::server::{Config, WORKER_THREAD_NAME};

const EXAMPLES: &str = "\
Examples:
  handoff_server 9090
      Listen on 127.0.0.1:9090 with one worker per CPU.
  handoff_server 0 --workers 4 --log
      Pick a free port (printed as `listening on 127.0.0.1:<port>`), run 4 workers, and log the
      loop's thread id and, from each worker, every task it runs.
  handoff_server 9090 --bind 0.0.0.0 --queue 256 --max-in-flight 64
      Listen on every interface, let at most 256 tasks wait for a worker, and read at most 64
      unanswered requests ahead on any one connection.
  handoff_server 9090 --workers 2 --loops 2
      Two event loops, each with its own listener on port 9090 and its own connections, and two
      workers that both loops hand their CPU work to.
  handoff_server 9090 --workers 2 --max-inflight 10 --request-timeout-ms 300 \\
      --max-retry-ratio 0.2 --stats-interval-ms 1000
      Survive a flood (W06): shed requests beyond 10 in flight, answer any request still
      unfinished after 300 ms with a timeout, let retries (`retry compute x`) be at most 20 % of
      the recent first tries, and print the stats line on stderr every second.

Then, from another terminal:
  echo \"compute test\" | nc -q1 localhost 9090        # result: 9ec9f7918d7dfc40
  printf 'ping\\nfactorial 20\\nstats\\n' | nc -q1 localhost 9090

SIGINT or SIGTERM: stop accepting, answer every request already read, join the workers, exit 0.";

/// The IO-to-CPU handoff server: an epoll event loop owns every socket and a thread pool runs
/// the CPU work, speaking the course's line protocol (compute, rehash, factorial, sleep, fail,
/// panic, ping, stats).
#[derive(Debug, Parser)]
#[command(name = "handoff_server", version, after_help = EXAMPLES, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,

    /// Log `main <thread-id>` once from the loop, and `worker <thread-id> task <task-id> <verb>`
    /// on stderr from the worker that runs each task. With --loops N > 1, `main <thread-id>` is
    /// the supervising main thread, and each loop logs `loop <thread-id>` and `loop <thread-id>
    /// accepted <peer>` for every connection it accepts.
    #[arg(long)]
    log: bool,

    /// IO event loops. 1 runs the loop on the main thread (every W05 lesson). N > 1 runs N loops,
    /// each a thread with its own listener on the same port (SO_REUSEPORT) and its own
    /// connections, sharing the one worker pool; the main thread then only supervises (signals,
    /// `stats` across loops). `auto`: half of the CPUs the workers leave free, at least 1 and at
    /// most 8 (so 1 whenever there are no more CPUs than workers); more loops pay only when each
    /// gets a core of its own. With --log each loop logs `loop <thread-id>` and `loop
    /// <thread-id> accepted <peer>`, and `auto` logs what it chose.
    #[arg(long, value_name = "N|auto", default_value = "1", value_parser = Loops::parse)]
    loops: Loops,

    /// Overload (W06 L01): worker requests accepted and not yet answered, across all
    /// connections, beyond which a new one is shed (answered `ERROR: overloaded, retry after
    /// <ms> ms` at once). Unlike --max-in-flight, which pauses reading one connection, this
    /// answers. With several --loops, each loop enforces an exact share, so the limit must be
    /// at least the number of loops. [default: no limit]
    #[arg(long, value_name = "N", value_parser = positive, help_heading = "Overload controls (W06)")]
    max_inflight: Option<usize>,

    /// Overload (W06 L01): requests waiting for a worker beyond which a new one is shed.
    /// [default: no limit]
    #[arg(long, value_name = "N", value_parser = positive, help_heading = "Overload controls (W06)")]
    max_queue_depth: Option<usize>,

    /// Overload (W06 L03): a worker request not answered MS milliseconds after it was read is
    /// answered `ERROR: timeout after <MS> ms` then; the worker's late result is dropped.
    /// [default: none]
    #[arg(long, value_name = "MS", value_parser = positive, help_heading = "Overload controls (W06)")]
    request_timeout_ms: Option<usize>,

    /// Overload (W06 L04): retries (lines marked `retry `) may be at most R times the recent
    /// first tries (the last 1000); beyond that a retry is answered `ERROR: retry budget
    /// exhausted`. [default: no budget]
    #[arg(long, value_name = "R", value_parser = retry::parse_ratio, help_heading = "Overload controls (W06)")]
    max_retry_ratio: Option<f64>,

    /// Overload (W06 L05): print `stats <the stats line>` on stderr every MS milliseconds.
    /// [default: never]
    #[arg(long, value_name = "MS", value_parser = positive, help_heading = "Overload controls (W06)")]
    stats_interval_ms: Option<usize>,
}

/// The number of loops `--loops` asks for; `auto` never chooses more than `--max-inflight` or
/// `--max-queue-depth`, since each loop takes an exact share of them.
fn resolve_loops(cli: &Cli) -> anyhow::Result<usize> {
    let workers = worker_count(cli.serve.workers).context("cannot count the workers")?;
    let most = cli
        .max_inflight
        .into_iter()
        .chain(cli.max_queue_depth)
        .min()
        .unwrap_or(usize::MAX);
    let loops = cli.loops.resolve(workers, most);
    if cli.log && cli.loops == Loops::Auto {
        eprintln!("loops auto: {loops} (for {workers} workers)");
    }
    Ok(loops)
}

/// A whole number of milliseconds as a duration.
fn millis(ms: usize) -> Duration {
    Duration::from_millis(ms as u64)
}

fn main() -> ExitCode {
    exit_code("handoff_server", run(&Cli::parse()))
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // Before any thread exists: every worker inherits this mask, so the signals can only ever
    // be read from the loop's signalfd and never kill the process the default way.
    block_shutdown_signals().context("cannot block SIGINT and SIGTERM")?;
    // A `panic` request is part of the protocol: the pool catches it, the client gets
    // `ERROR: task panicked: <msg>` and `stats` counts it, so its report is one `--log` line.
    report_worker_panics_in_one_line(WORKER_THREAD_NAME, cli.log);
    // Also before any thread exists, so that every worker inherits it.
    tighten_timer_slack();
    let config = Config {
        serve: cli.serve.serve(),
        log: cli.log,
        overload: Controls {
            gate: GateLimits {
                max_inflight: cli.max_inflight,
                max_queue_depth: cli.max_queue_depth,
            },
            request_timeout: cli.request_timeout_ms.map(millis),
            max_retry_ratio: cli.max_retry_ratio,
            stats_interval: cli.stats_interval_ms.map(millis),
        },
        loops: resolve_loops(cli)?,
    };
    if config.loops > 1 {
        return loops::run(&config);
    }
    let dispatcher = Dispatcher::new("handoff-loop")?;
    let server = server::start(&dispatcher, &config)?;
    dispatcher.run().context("the event loop failed")?;
    // Every connection is closed; the pool may still run tasks of clients that went away.
    server::shut_down_pool(&server.borrow());
    drop(dispatcher);
    drop(server);
    Ok(())
}

/// The timer slack the server's threads run with, in nanoseconds (see [`tighten_timer_slack`]).
const TIMER_SLACK_NS: u64 = 1_000;

/// Lowers this thread's timer slack to [`TIMER_SLACK_NS`]; threads started afterwards inherit it.
///
/// Linux lets a timed sleep of a normal thread end up to 50 µs late by default (the *timer
/// slack*, which lets the kernel batch timer wake-ups to save power). A `sleep <ms>` request
/// holds its worker for the requested time plus that slack, so with `sleep 1` requests the
/// default costs about 5 % of the workers' capacity: measured on the project's machine, a 1 ms
/// `thread::sleep` took 1,109 µs at the median with the default slack and 1,043 µs with 1 µs.
///
/// The value is written to `/proc/self/timerslack_ns` (the calling thread's slack, when called on
/// the main thread), a plain file write rather than a `prctl` call. Without `/proc`, or on a
/// kernel that predates the file, the default stays, which costs only that precision.
fn tighten_timer_slack() {
    let _ = std::fs::write("/proc/self/timerslack_ns", TIMER_SLACK_NS.to_string());
}
