//! `handoff_server`: the W05 IO-to-CPU handoff server (lessons L04–L06 and the quest).
//!
//! The main thread runs an `eventloop` [`Dispatcher`] that owns the listener and every client
//! socket; a `thread_pool` runs the CPU verbs; results come back through a `task_queue` and an
//! eventfd waker. It speaks the course's wire protocol (`handoff_protocol`) exactly. The crate's
//! `README.md` walks through a request's path, the backpressure rules and the defaults.
//!
//! - [`server`]: the loop side — accepting, reading, the handoff both ways, backpressure,
//!   shutdown.
//! - [`session`]: one connection's protocol state (framing, response order, limits), without a
//!   socket, so it is unit-tested on its own.
//! - connections live in an [`eventloop::slab::Slab`], keyed by (index, generation), so a late
//!   result never reaches the wrong client.
//! - [`loops`]: `--loops N` (N > 1), the Envoy model: N event loops, each an `eventloop::Worker`
//!   with its own `SO_REUSEPORT` listener and connections, sharing the pool; the main thread
//!   supervises (signals, `stats` across loops).
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
mod loops;
mod overload;
mod retry;
mod server;
mod session;
mod telemetry;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use eventloop::Dispatcher;

use crate::admission::GateLimits;
use crate::overload::Controls;
use crate::server::{Config, WORKER_THREAD_NAME};
use crate::session::Limits;

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
    /// TCP port to listen on; 0 picks a free port. Either way the first stdout line is
    /// `listening on <addr>:<port>`.
    #[arg(value_name = "PORT", default_value_t = 0)]
    port: u16,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,

    /// Worker threads [default: the number of CPUs, or THREAD_POOL_WORKERS if set].
    #[arg(long, value_name = "N", value_parser = positive)]
    workers: Option<usize>,

    /// Requests that may wait in the pool for a worker. When they are all taken, the loop stops
    /// reading requests until a result frees room (nothing is dropped).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = positive)]
    queue: usize,

    /// Per connection: unanswered requests beyond which the loop stops reading that connection
    /// until answers go out.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = positive)]
    max_in_flight: usize,

    /// Per connection: bytes of responses the client has not taken yet beyond which the loop
    /// stops reading that connection until it drains (1048576 is 1 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = positive)]
    max_unsent_bytes: usize,

    /// Log `main <thread-id>` once from the loop, and `worker <thread-id> task <task-id> <verb>`
    /// on stderr from the worker that runs each task. With --loops N > 1, `main <thread-id>` is
    /// the supervising main thread, and each loop logs `loop <thread-id>` and `loop <thread-id>
    /// accepted <peer>` for every connection it accepts.
    #[arg(long)]
    log: bool,

    /// IO event loops. 1 runs the loop on the main thread (every W05 lesson). N > 1 runs N loops,
    /// each a thread with its own listener on the same port (SO_REUSEPORT) and its own
    /// connections, sharing the one worker pool; the main thread then only supervises (signals,
    /// `stats` across loops). With --log each loop logs `loop <thread-id>` and `loop <thread-id>
    /// accepted <peer>`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = positive)]
    loops: usize,

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

/// A whole number of milliseconds as a duration.
fn millis(ms: usize) -> Duration {
    Duration::from_millis(ms as u64)
}

/// A count that must be at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("handoff_server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // Before any thread exists: every worker inherits this mask, so the signals can only ever
    // be read from the loop's signalfd and never kill the process the default way.
    eventloop::sys::block_signals(&[libc::SIGINT, libc::SIGTERM])
        .context("cannot block SIGINT and SIGTERM")?;
    report_task_panics_in_one_line(cli.log);
    // Also before any thread exists, so that every worker inherits it.
    tighten_timer_slack();
    let config = Config {
        addr: SocketAddr::new(cli.bind, cli.port),
        workers: cli.workers,
        queue: cli.queue,
        limits: Limits {
            max_in_flight: cli.max_in_flight,
            max_unsent: cli.max_unsent_bytes,
        },
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
        loops: cli.loops,
    };
    if config.loops > 1 {
        return loops::run(&config);
    }
    let dispatcher = Dispatcher::new("handoff-loop")?;
    let server = server::start(&dispatcher, &config)?;
    dispatcher.run().context("the event loop failed")?;
    // Every connection is closed; the pool may still run tasks of clients that went away.
    server.borrow_mut().shut_down_pool();
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

/// Replaces the default panic report for a task's panic with at most one log line.
///
/// A `panic` request is part of the protocol: the pool catches it, the client gets
/// `ERROR: task panicked: <msg>`, and `stats` counts it. The default report (several lines, and
/// a backtrace when `RUST_BACKTRACE` is set) would flood stderr and break up the `--log` lines
/// that the lesson's proofs read, so on a worker thread it becomes `worker <tid> panicked: <msg>`
/// with `--log`, and nothing without. Panics on any other thread keep the default report: they
/// are bugs, not requests.
fn report_task_panics_in_one_line(log: bool) {
    thread_pool::report_worker_panics_with(WORKER_THREAD_NAME, move |info| {
        if log {
            let message = handoff_protocol::panic_message(info.payload());
            eprintln!("worker {} panicked: {message}", eventloop::sys::gettid());
        }
    });
}
