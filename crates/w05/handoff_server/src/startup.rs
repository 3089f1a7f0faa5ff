//! The process set-up every pool-handoff server shares, in the order it must happen: read the
//! command-line flags every such server has ([`ServeArgs`]), block the shutdown signals before
//! any thread exists, replace the worker panic report, start the pool with the request budget,
//! print the `listening on` line.

use std::fmt;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use handoff_protocol::session::Limits;
use thread_pool::{BuildError, ThreadPool};

/// The command-line flags of every pool-handoff server: where to listen, the pool, the request
/// budget and the per-connection limits. A server's own parser takes them in with
/// `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// TCP port to listen on; 0 picks a free port. Either way the first stdout line is
    /// `listening on <addr>:<port>`.
    #[arg(value_name = "PORT", default_value_t = 0)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// Worker threads [default: the number of CPUs, or THREAD_POOL_WORKERS if set].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub workers: Option<usize>,

    /// Requests that may wait in the pool for a worker. When they are all taken, the loop stops
    /// reading requests until a result frees room (nothing is dropped).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = positive)]
    pub queue: usize,

    /// Per connection: unanswered requests beyond which the loop stops reading that connection
    /// until answers go out.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = positive)]
    pub max_in_flight: usize,

    /// Per connection: bytes of responses the client has not taken yet beyond which the loop
    /// stops reading that connection until it drains (1048576 is 1 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = positive)]
    pub max_unsent_bytes: usize,
}

impl ServeArgs {
    /// What the flags decide.
    pub fn serve(&self) -> Serve {
        Serve {
            addr: SocketAddr::new(self.bind, self.port),
            workers: self.workers,
            queue: self.queue,
            limits: Limits {
                max_in_flight: self.max_in_flight,
                max_unsent: self.max_unsent_bytes,
            },
        }
    }
}

/// Where a pool-handoff server listens, its pool and its limits, as [`ServeArgs`] decide them.
#[derive(Debug, Clone, Copy)]
pub struct Serve {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Worker threads; `None` lets the pool choose (the CPU count).
    pub workers: Option<usize>,
    /// Requests that may wait in the pool beyond those running.
    pub queue: usize,
    /// Per-connection limits.
    pub limits: Limits,
}

/// Blocks SIGINT and SIGTERM on this thread. Call it before any thread exists: every thread
/// started afterwards (the pool's workers, other loops) inherits the mask, so the signals can
/// only ever be read from a loop's signalfd and never kill the process the default way.
pub fn block_shutdown_signals() -> io::Result<()> {
    eventloop::sys::block_signals(&[libc::SIGINT, libc::SIGTERM])
}

/// Replaces the default panic report of a panic on a worker thread (a thread whose name starts
/// with `worker_name_prefix`) with at most one line, `worker <tid> panicked: <msg>`, and with
/// none at all unless `print`. Panics on any other thread keep the default report.
///
/// The pool catches a task's panic and the client gets its error answer; the default report
/// (several lines, and a backtrace when `RUST_BACKTRACE` is set) would flood stderr and break up
/// the `--log` lines the lessons' proofs read.
pub fn report_worker_panics_in_one_line(worker_name_prefix: &'static str, print: bool) {
    thread_pool::report_worker_panics_with(worker_name_prefix, move |info| {
        if print {
            let message = handoff_protocol::panic_message(info.payload());
            eprintln!("worker {} panicked: {message}", eventloop::sys::gettid());
        }
    });
}

// starter: w05-l04 todo "Do 1: builder with thread_name and workers; budget is queue plus worker_count; capacity budget plus extra"
/// Starts the CPU pool with workers named `thread_name-<i>` (`workers`, or one per CPU when
/// `None`), and returns it with the request budget: `queue` plus one request per worker.
///
/// The pool's capacity is the whole budget plus `extra` slots (for tasks outside the budget, like
/// W09's expiry sweep): the budget, not the pool's capacity, bounds the work a loop hands out,
/// and every queued task holds at least one request of it, so the pool always has room and a
/// loop's `spawn` never blocks.
pub fn start_pool(
    thread_name: &str,
    workers: Option<usize>,
    queue: usize,
    extra: usize,
) -> Result<(ThreadPool, usize), BuildError> {
    let mut builder = ThreadPool::builder().thread_name(thread_name);
    if let Some(workers) = workers {
        builder = builder.workers(workers);
    }
    let budget = queue + builder.worker_count()?;
    let pool = builder.capacity(budget + extra).build()?;
    Ok((pool, budget))
}

/// Prints the protocol's first stdout line, `listening on <addr>`, flushed: a grader waits for it.
pub fn print_listening(addr: SocketAddr) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()
}

/// A server's exit: 0 after a clean shutdown; otherwise the error and its causes on one stderr
/// line, `<name>: <error>: <cause>…`, and 1.
pub fn exit_code<E: fmt::Display>(name: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` is how `anyhow` errors show their chain of causes on one line.
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--loops`: a number of event loops, or `auto` to let the machine decide ([`auto_loops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loops {
    /// Exactly this many loops (at least 1).
    Count(usize),
    /// As many as [`auto_loops`] chooses for this machine and the worker count.
    Auto,
}

impl Loops {
    /// Reads `auto` or a count of at least 1, for a command-line parser.
    ///
    /// ```
    /// use handoff_server::startup::Loops;
    /// assert_eq!(Loops::parse("auto"), Ok(Loops::Auto));
    /// assert_eq!(Loops::parse("2"), Ok(Loops::Count(2)));
    /// assert!(Loops::parse("0").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Loops, String> {
        if text == "auto" {
            return Ok(Loops::Auto);
        }
        positive(text)
            .map(Loops::Count)
            .map_err(|error| format!("{error} (or `auto`)"))
    }

    /// The number of loops to run with `workers` worker threads: the count given, or for `auto`
    /// what [`auto_loops`] chooses for this machine's available parallelism, never more than
    /// `most` (a limit every loop takes an exact share of, like `--max-inflight`).
    pub fn resolve(self, workers: usize, most: usize) -> usize {
        match self {
            Loops::Count(count) => count,
            Loops::Auto => {
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                auto_loops(cores, workers).min(most.max(1))
            }
        }
    }
}

/// The most loops `--loops auto` ever chooses: beyond that, one listener's connections are spread
/// so thin that a loop's batches shrink, and the per-request cost rises instead of falling.
pub const MAX_AUTO_LOOPS: usize = 8;

/// The loop count `--loops auto` chooses on a machine with `cores` CPUs for a pool of `workers`
/// workers: half of the cores the workers leave free, at least 1 and at most
/// [`MAX_AUTO_LOOPS`].
///
/// A second loop only pays when it gets a core of its own: a loop is busy the whole time the
/// server is loaded, so two loops sharing a core with each other, with the workers or with the
/// clients only add switches between them (measured: `--loops 2` on 2 cores with 2 workers and a
/// local load generator was slower than one loop). The other half of the free cores is left to
/// what runs beside the server under load: the clients (or, with remote clients, the kernel's
/// network processing) and the main thread. So a machine with no more cores than workers, as
/// every machine is with the default of one worker per CPU, gets one loop.
///
/// ```
/// use handoff_server::startup::auto_loops;
/// assert_eq!(auto_loops(2, 2), 1);
/// assert_eq!(auto_loops(16, 4), 6);
/// ```
pub fn auto_loops(cores: usize, workers: usize) -> usize {
    (cores.saturating_sub(workers) / 2).clamp(1, MAX_AUTO_LOOPS)
}

/// The worker count a pool started with `workers` (`--workers`, or `None` for the default) will
/// have: the count given, else `THREAD_POOL_WORKERS`, else one per CPU.
pub fn worker_count(workers: Option<usize>) -> Result<usize, BuildError> {
    let mut builder = ThreadPool::builder();
    if let Some(workers) = workers {
        builder = builder.workers(workers);
    }
    builder.worker_count()
}

/// A count that must be at least 1, for a command-line parser.
///
/// ```
/// use handoff_server::startup::positive;
/// assert_eq!(positive("8"), Ok(8));
/// assert!(positive("0").is_err());
/// assert!(positive("many").is_err());
/// ```
pub fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests;
