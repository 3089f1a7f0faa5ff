//! `loadgen`: drives a handoff-protocol server with many pipelined connections and checks every
//! response byte for byte.
//!
//! ```text
//! loadgen --addr 127.0.0.1:9090 --connections 50 --depth 16 --mix compute64 --duration 5 --json
//! ```
//!
//! It must not be the bottleneck of the servers it measures, so it is built like one of them:
//! each load thread runs an epoll loop over many nonblocking connections ([`driver`]), keeps up
//! to `--depth` requests in flight per connection, and checks responses against expected bytes
//! computed once per distinct request before the run ([`mix`]) — a check is a `memcmp`, never a
//! hash. Latencies go into one HdrHistogram per thread, merged at the end ([`report`]).
//!
//! `--mix kv` drives a key-value server instead (90 % `GET`, 10 % `SET`; see [`mix`] for how
//! its checks stay exact under concurrent writers): `--replies text` for the course's KV
//! protocol, `--replies redis` for `redis-server`, which takes the same request lines as inline
//! commands and answers in RESP. Its read-only keys are stored, and every answer checked, on one
//! connection before the clock starts (`--no-preload` skips that, for a server an earlier run
//! stored them in). `--mix kv-set` sends only `SET`s, each connection of its
//! own keys in increasing order. In both, the summary gives the `GET` and the `SET` latency
//! apart as well (`by_verb` in the JSON).
//!
//! While it runs, a progress line goes to stderr once per second. The exit status is 0 when
//! every response was right, 1 when any response differed or a connection failed (with the first
//! such error named), and 2 when the run could not start.
//!
//! `--flood` is another mode, for the W06 quest ([`flood`]): three waves of open-loop load
//! against a server with overload controls, where a shed or timed-out answer is allowed in place
//! of a result, and seven objectives printed as `objective N <name>: PASS|FAIL`; its exit status
//! is 0 only when every objective passed.

mod driver;
mod flood;
mod mix;
mod pipeline;
mod report;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use crate::driver::{Progress, RunPlan, ThreadResult};
use crate::mix::{KvReplies, Mix, MixKind};
use crate::report::{ByVerb, Histograms, Latency, Summary};
use anyhow::Context as _;
use clap::Parser;

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Command line of the load generator.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for the handoff protocol; checks every byte"
)]
struct Cli {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    addr: SocketAddr,
    /// Connections to open.
    #[arg(long, short = 'c', default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection (1 = request/response).
    #[arg(long, short = 'd', default_value_t = 1)]
    depth: usize,
    /// The request mix.
    #[arg(long, value_enum, default_value_t = MixKind::Compute64)]
    mix: MixKind,
    /// How the key-value server of `--mix kv` or `kv-set` words its replies: `text` (the
    /// course's KV protocol) or `redis` (RESP, as redis-server answers inline commands).
    #[arg(long, value_enum, default_value_t = KvReplies::Text)]
    replies: KvReplies,
    /// Run for this many seconds (the default when neither this nor --requests is given: 5).
    #[arg(long, conflicts_with = "requests")]
    duration: Option<f64>,
    /// Send exactly this many requests in all, spread over the connections.
    #[arg(long)]
    requests: Option<u64>,
    /// Load threads, each driving its share of the connections with its own epoll loop.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Give up on a connection whose server sends nothing for this many seconds while it owes
    /// responses.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Skip the `kv` mix's preload: its read-only keys are already stored, by an earlier run
    /// against the same server (which then sees only the measured requests).
    #[arg(long)]
    no_preload: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,

    /// Flood mode (the W06 quest): three waves of open-loop `sleep` requests — ramp 1x to 10x
    /// --base-rps, sustain 10x with 20 % retries and 5 % slow requests, drain at 1x — then the
    /// seven objectives, one `objective N <name>: PASS|FAIL` line each; exit 0 only if all
    /// pass. Needs --expect-max-inflight and --expect-timeout-ms.
    #[arg(long, help_heading = "Flood mode", conflicts_with_all = ["requests", "duration", "json", "depth", "mix", "threads"])]
    flood: bool,
    /// Flood: start the server with this command (its port must be 0) instead of using --addr,
    /// count its fds before and after, and stop it with SIGTERM at the end.
    #[arg(
        long,
        value_name = "CMD",
        requires = "flood",
        help_heading = "Flood mode"
    )]
    spawn: Option<String>,
    /// Flood: the length of each wave, in seconds.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 2.0,
        requires = "flood",
        help_heading = "Flood mode"
    )]
    wave_seconds: f64,
    /// Flood: the full one-minute flood (20 s waves), overriding --wave-seconds.
    #[arg(long, requires = "flood", help_heading = "Flood mode")]
    full: bool,
    /// Flood: the request rate at 1x, in requests per second over all connections.
    #[arg(
        long,
        value_name = "RPS",
        default_value_t = 100.0,
        requires = "flood",
        help_heading = "Flood mode"
    )]
    base_rps: f64,
    /// Flood: the `sleep` of an ordinary request, in ms (its cost on a worker).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 10,
        requires = "flood",
        help_heading = "Flood mode"
    )]
    work_ms: u64,
    /// Flood: the `sleep` of a slow request, in ms (longer than the server's request timeout).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        requires = "flood",
        help_heading = "Flood mode"
    )]
    slow_ms: u64,
    /// Flood: the server's --max-inflight, which no stats line may exceed (objective 1).
    #[arg(
        long,
        value_name = "N",
        requires = "flood",
        help_heading = "Flood mode"
    )]
    expect_max_inflight: Option<u64>,
    /// Flood: the server's --request-timeout-ms (the timeout answer, and objective 5's bound).
    #[arg(
        long,
        value_name = "MS",
        requires = "flood",
        help_heading = "Flood mode"
    )]
    expect_timeout_ms: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.flood {
        return flood_main(&cli);
    }
    match run(&cli) {
        Ok(summary) => {
            let mut stdout = std::io::stdout().lock();
            let printed = if cli.json {
                serde_json::to_string(&summary)
                    .map_err(std::io::Error::other)
                    .and_then(|json| writeln!(stdout, "{json}"))
            } else {
                writeln!(stdout, "{summary}")
            };
            if let Err(error) = printed.and_then(|()| stdout.flush()) {
                eprintln!("loadgen: writing the summary: {error}");
                return ExitCode::from(2);
            }
            if summary.is_clean() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "loadgen: FAILED: {} mismatched responses, {} failed connections; first: {}",
                    summary.mismatches,
                    summary.connection_errors,
                    summary.first_error.as_deref().unwrap_or("(none recorded)")
                );
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// `--flood`: runs the three waves and prints the objectives.
fn flood_main(cli: &Cli) -> ExitCode {
    let plan = match flood_plan(cli) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            return ExitCode::from(2);
        }
    };
    match flood::run(&plan) {
        Ok((report, passed)) => {
            print!("{report}");
            let _ = std::io::stdout().flush();
            if passed {
                ExitCode::SUCCESS
            } else {
                eprintln!("loadgen: FAILED: the flood missed an objective");
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The flood's plan from the command line.
fn flood_plan(cli: &Cli) -> anyhow::Result<flood::FloodPlan> {
    anyhow::ensure!(cli.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(cli.timeout > 0.0, "--timeout must be positive");
    anyhow::ensure!(
        cli.wave_seconds.is_finite() && cli.wave_seconds > 0.0,
        "--wave-seconds must be positive"
    );
    anyhow::ensure!(
        cli.base_rps.is_finite() && cli.base_rps > 0.0,
        "--base-rps must be positive"
    );
    Ok(flood::FloodPlan {
        addr: cli.addr,
        spawn: cli.spawn.clone(),
        connections: cli.connections,
        wave: if cli.full {
            flood::FULL_WAVE
        } else {
            Duration::from_secs_f64(cli.wave_seconds)
        },
        base_rps: cli.base_rps,
        work_ms: cli.work_ms,
        slow_ms: cli.slow_ms,
        max_inflight: cli
            .expect_max_inflight
            .context("--flood needs --expect-max-inflight (the server's --max-inflight)")?,
        timeout_ms: cli
            .expect_timeout_ms
            .context("--flood needs --expect-timeout-ms (the server's --request-timeout-ms)")?,
        hang_guard: Duration::from_secs_f64(cli.timeout),
        quiet: cli.quiet,
    })
}

/// Runs the load and merges the threads' results.
fn run(cli: &Cli) -> anyhow::Result<Summary> {
    anyhow::ensure!(cli.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(cli.depth > 0, "--depth must be at least 1");
    anyhow::ensure!(cli.timeout > 0.0, "--timeout must be positive");
    let duration = match (cli.duration, cli.requests) {
        (Some(seconds), _) => {
            anyhow::ensure!(seconds > 0.0, "--duration must be positive");
            Some(Duration::from_secs_f64(seconds))
        }
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(5)),
    };
    let threads = cli.threads.clamp(1, cli.connections);
    driver::raise_fd_limit(cli.connections + 64).context("raising the open-file limit")?;

    let cpu_at_start = report::process_cpu_time();
    let mix = Arc::new(Mix::new(cli.mix, cli.connections, cli.replies));
    if !cli.no_preload {
        preload(
            cli.addr,
            mix.preload(),
            Duration::from_secs_f64(cli.timeout),
        )?;
    }
    let progress = Arc::new(Progress::default());
    // Every thread connects first; the clock starts once all connections are up.
    let barrier = Arc::new(Barrier::new(threads));
    let (results_tx, results_rx) = mpsc::channel::<anyhow::Result<ThreadResult>>();
    let mut handles = Vec::with_capacity(threads);
    for thread in 0..threads {
        // Connection `i` goes to thread `i % threads`; quotas split `--requests` evenly.
        let connections: Vec<usize> = (thread..cli.connections).step_by(threads).collect();
        let plan = RunPlan {
            addr: cli.addr,
            depth: cli.depth,
            quotas: connections
                .iter()
                .map(|&c| cli.requests.map(|n| share(n, cli.connections, c)))
                .collect(),
            connections,
            duration,
            timeout: Duration::from_secs_f64(cli.timeout),
            mix: Arc::clone(&mix),
            progress: Arc::clone(&progress),
            barrier: Arc::clone(&barrier),
        };
        let results_tx = results_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{thread}"))
            .spawn(move || {
                // The receiver outlives every thread (main joins them all), so this cannot fail.
                let _ = results_tx.send(driver::run_thread(plan));
            })
            .context("spawning a load thread")?;
        handles.push(handle);
    }
    drop(results_tx);

    let mut results = Vec::with_capacity(threads);
    let started = Instant::now();
    let mut last_completed = 0;
    let mut last_print = Instant::now();
    while results.len() < threads {
        match results_rx.recv_timeout(PROGRESS_EVERY) {
            Ok(result) => results.push(result),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !cli.quiet && last_print.elapsed() >= PROGRESS_EVERY {
            let completed = progress.completed.load(Ordering::Relaxed);
            let rate = Summary::rate(completed - last_completed, last_print.elapsed());
            eprintln!(
                "loadgen: {:5.1} s  {completed} responses  {rate:.0} req/s  mismatches {}  \
                 connection errors {}",
                started.elapsed().as_secs_f64(),
                progress.mismatches.load(Ordering::Relaxed),
                progress.connection_errors.load(Ordering::Relaxed),
            );
            last_completed = completed;
            last_print = Instant::now();
        }
    }
    for handle in handles {
        if handle.join().is_err() {
            anyhow::bail!("a load thread panicked");
        }
    }

    let mut latencies = Histograms::new()?;
    let mut summary = Summary {
        addr: cli.addr.to_string(),
        mix: cli.mix,
        connections: cli.connections,
        depth: cli.depth,
        threads,
        completed: 0,
        mismatches: 0,
        connection_errors: 0,
        elapsed_s: 0.0,
        throughput_rps: 0.0,
        latency: Latency::default(),
        by_verb: ByVerb::default(),
        first_error: None,
        loadgen_cpu_us_per_request: 0.0,
    };
    for result in results {
        let result = result?;
        latencies.add(&result.latencies)?;
        summary.completed += result.completed;
        summary.mismatches += result.mismatches;
        summary.connection_errors += result.connection_errors;
        summary.elapsed_s = summary.elapsed_s.max(result.elapsed.as_secs_f64());
        if summary.first_error.is_none() {
            summary.first_error = result.first_error;
        }
    }
    summary.throughput_rps = Summary::rate(
        summary.completed,
        Duration::from_secs_f64(summary.elapsed_s),
    );
    summary.latency = Latency::from_nanos(&latencies.all);
    if cli.mix.is_kv() {
        summary.by_verb = latencies.by_verb();
    }
    if let (Some(start), Some(end)) = (cpu_at_start, report::process_cpu_time()) {
        let micros = end.saturating_sub(start).as_secs_f64() * 1e6;
        summary.loadgen_cpu_us_per_request = micros / summary.completed.max(1) as f64;
    }
    Ok(summary)
}

/// Sends `requests` on one blocking connection, all at once, and checks every answer.
fn preload(addr: SocketAddr, requests: &[mix::Request], timeout: Duration) -> anyhow::Result<()> {
    if requests.is_empty() {
        return Ok(());
    }
    let mut stream = std::net::TcpStream::connect(addr)
        .with_context(|| format!("connecting to {addr} to preload the keys"))?;
    stream.set_read_timeout(Some(timeout))?;
    let lines: Vec<u8> = requests
        .iter()
        .flat_map(|r| r.line.iter().copied())
        .collect();
    let expected: Vec<u8> = requests
        .iter()
        .flat_map(|r| r.expected.iter().copied())
        .collect();
    // The answers are short and the server reads while it answers, so writing everything before
    // reading cannot deadlock: a thousand `OK`s fit the socket buffers many times over.
    stream.write_all(&lines).context("sending the preload")?;
    // Compared as the bytes arrive, so a server that answers differently fails at once rather
    // than after the timeout.
    let mut got = Vec::with_capacity(expected.len());
    let mut chunk = [0; 16 * 1024];
    while got.len() < expected.len() {
        let received = stream
            .read(&mut chunk)
            .context("reading the preload's answers")?;
        anyhow::ensure!(
            received > 0,
            "the server closed the connection during the preload"
        );
        let want = &expected[got.len()..];
        let take = received.min(want.len());
        got.extend_from_slice(&chunk[..received]);
        if chunk[..take] != want[..take] || received > want.len() {
            let at = got
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len());
            anyhow::bail!(
                "the preload got a wrong answer at byte {at}: {:?} (expected {:?})",
                String::from_utf8_lossy(&got[at..(at + 40).min(got.len())]),
                String::from_utf8_lossy(&expected[at..(at + 40).min(expected.len())])
            );
        }
    }
    Ok(())
}

/// Connection `index`'s share of `total` requests over `connections` connections.
fn share(total: u64, connections: usize, index: usize) -> u64 {
    let connections = connections as u64;
    total / connections + u64::from((index as u64) < total % connections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, connections) in [(10, 3), (2, 5), (1000, 1000), (0, 4)] {
            let sum: u64 = (0..connections).map(|i| share(total, connections, i)).sum();
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--addr",
            "127.0.0.1:1",
            "-c",
            "3",
            "-d",
            "16",
            "--mix",
            "rehash1000",
            "--requests",
            "9",
            "--json",
        ])
        .unwrap();
        assert_eq!(
            (cli.connections, cli.depth, cli.mix),
            (3, 16, MixKind::Rehash1000)
        );
        assert!(Cli::try_parse_from(["loadgen", "--duration", "1", "--requests", "2"]).is_err());
        let cli =
            Cli::try_parse_from(["loadgen", "--mix", "kv-set", "--replies", "redis"]).unwrap();
        assert_eq!((cli.mix, cli.replies), (MixKind::KvSet, KvReplies::Redis));
        assert!(!cli.no_preload);
        let cli = Cli::try_parse_from(["loadgen", "--mix", "kv", "--no-preload"]).unwrap();
        assert!(cli.no_preload);
    }
}
