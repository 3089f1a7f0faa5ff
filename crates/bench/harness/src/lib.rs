//! The benchmark harness behind `cargo xtask bench`: the handoff server against the W04 epoll
//! server and a Tokio server.
//!
//! `cargo xtask bench ARGS...` runs `cargo run --release -p bench_harness -- ARGS...`; the harness
//! is a package of its own so the course runner does not build the chart library and the rest of
//! what only a benchmark needs. The binary (`src/main.rs`) parses [`BenchArgs`] and calls [`run`].
//!
//! What it does, in order:
//!
//! 1. builds the release binaries (`handoff_server`, `epoll_server`, `tokio_server`, `loadgen`);
//! 2. runs every scenario (`scenario::ALL`, S1–S6) against every server, each run on a freshly
//!    started server with the same `--workers`, for `--rounds` rounds; within a round the order
//!    of the servers rotates, so slow drift of the shared machine (another build starting, CPU
//!    frequency) lands on each server alike and the medians cancel it;
//!    every run also reads each server thread's user and kernel CPU time (`threads.rs`);
//! 3. counts the servers' system calls and context switches per request at depth 16 (`measure.rs`);
//! 4. times 200 sleeps of 1 ms, which the sleep-bound scenario's verdict needs (`report.rs`);
//! 5. prints the table of medians and ratios to the Tokio server, the targets' verdicts (a missed
//!    one names what bounded the run) and where each server's CPU went, thread by thread, writes `target/bench/bench.json` and `target/bench/throughput.svg`, and refreshes the
//!    results section of `BENCHMARKS.md` between its markers (the prose around it is kept).
//!
//! `--baseline <git-rev>` runs the working tree's servers against that revision's instead, side by
//! side, and prints the ratios new / old (`baseline.rs`).
//!
//! `--kv` runs the W09 `kv_server` against `redis-server` instead (`kv.rs`), and `--kv
//! --durable` the durable `kv_server` against `redis-server` with `appendfsync always`
//! (`durable.rs`).
//!
//! Every run prints one progress line. A wrong response (loadgen checks every byte) or a server
//! that dies ends the benchmark with an error: a fast wrong server measures nothing.

use test_support::procfs::read_machine_file;

mod baseline;
mod chart;
mod durable;
mod kv;
mod measure;
mod median;
mod report;
mod scenario;
mod server;
mod threads;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use self::report::{LoadgenSummary, Run, SyscallRow};
use self::scenario::Scenario;
use self::server::{ContextSwitches, RunningServer, ServerBinary, ServerKind};
pub use xtask::process::install_interrupt_handler;

/// The markers around the generated part of `BENCHMARKS.md`.
const RESULTS_START: &str = "<!-- bench:results:start (written by `cargo xtask bench`) -->";
const RESULTS_END: &str = "<!-- bench:results:end -->";
/// How long each server runs before a counted run, so lazily started threads (Tokio's blocking
/// pool) exist when the counting tool attaches to the process.
const WARM_UP: Duration = Duration::from_millis(500);

/// Arguments of `cargo xtask bench` (and of the `bench_harness` binary it runs).
#[derive(Debug, clap::Parser)]
#[command(
    name = "cargo xtask bench",
    about = "Benchmarks the course's servers against a Tokio server (or, with --kv, kv_server \
             against redis-server) and refreshes BENCHMARKS.md.",
    long_about = None
)]
pub struct BenchArgs {
    /// Rounds: each round runs every scenario once against every server.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Scenarios to run, comma-separated (`S1,S3`); all six by default.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Servers to run, comma-separated; all four by default (`handoff-loops` is
    /// `handoff_server --loops N`, N from `--loops`).
    #[arg(long, value_delimiter = ',', value_enum)]
    servers: Vec<ServerKind>,
    /// Worker threads of every server (Tokio: runtime workers and blocking threads).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Event loops of the `handoff-loops` server, compared with the one-loop `handoff`: the
    /// benchmark's loops dimension, on the same `--workers` CPU budget.
    #[arg(long, default_value_t = 2)]
    loops: usize,
    /// Load generator threads.
    #[arg(long, default_value_t = 1)]
    loadgen_threads: usize,
    /// Seconds of load for each system call count (perf stat, then strace).
    #[arg(long, default_value_t = 2.0)]
    syscall_duration: f64,
    /// Skip counting system calls and context switches at depth 16.
    #[arg(long)]
    no_syscalls: bool,
    /// Leave `BENCHMARKS.md` as it is (the JSON and SVG are still written).
    #[arg(long)]
    no_markdown: bool,
    /// Benchmark the W09 `kv_server` against `redis-server` instead (installed with apt-get
    /// when missing and running as root, else reported skipped): `loadgen --mix kv`, 50
    /// connections, depths 1 and 16. Takes --rounds, --duration, --workers, --loadgen-threads
    /// and --no-markdown.
    #[arg(long)]
    kv: bool,
    /// With --kv: the durable kv_server (`--data-dir`, group commit), the same with `--fsync
    /// per-record`, and `redis-server --appendonly yes --appendfsync always`, every write on
    /// disk before its answer. First measures the data disk's fdatasync latency (4 KiB appends,
    /// --fsync-samples of them), then 50 connections at depth 1, SET only (`loadgen --mix
    /// kv-set`) and 90 % GET / 10 % SET (`--mix kv`), fresh data folders under
    /// target/bench/durable/. Writes its own section of BENCHMARKS.md.
    #[arg(long, requires = "kv")]
    durable: bool,
    /// With --durable: how many 4 KiB append + fdatasync calls measure the data disk.
    #[arg(long, default_value_t = 200, value_name = "N")]
    fsync_samples: usize,
    /// Compare the working tree's servers with those of git revision REV (a hash, branch or
    /// tag): builds REV in a worktree of its own, `target/bench-baseline/<commit>/` (its own
    /// CARGO_TARGET_DIR inside, both reused by the next run), then runs old and new alternating
    /// on every round of every chosen scenario and prints per-scenario throughput and p99 ratios
    /// new / old, their median and spread. Servers: `handoff` unless --servers says otherwise.
    /// Takes --rounds, --duration, --scenarios, --servers, --workers, --loops and
    /// --loadgen-threads; leaves BENCHMARKS.md as it is.
    #[arg(long, value_name = "REV", conflicts_with = "kv")]
    baseline: Option<String>,
}

/// Runs the benchmark.
///
/// # Errors
///
/// A failed build, a server that does not start or dies, a wrong response, or output that cannot
/// be written.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    if args.kv {
        let root = workspace_root();
        let out_dir = target_dir(&root).join("bench");
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        if args.durable {
            return durable::run(&args, &root, &out_dir);
        }
        return kv::run(&args, &root, &out_dir);
    }
    anyhow::ensure!(
        args.loops > 1,
        "--loops must be at least 2 (one loop is `handoff`)"
    );
    if let Some(rev) = &args.baseline {
        server::set_multi_loops(args.loops);
        let root = workspace_root();
        let out_dir = target_dir(&root).join("bench");
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        return baseline::run(&args, rev, &root, &out_dir);
    }
    server::set_multi_loops(args.loops);
    let scenarios = scenario::select(&args.scenarios)?;
    let servers: Vec<ServerKind> = if args.servers.is_empty() {
        ServerKind::ALL.to_vec()
    } else {
        let mut servers = args.servers.clone();
        servers.sort();
        servers.dedup();
        servers
    };
    let root = workspace_root();
    let out_dir = target_dir(&root).join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let mut machine = Machine::read();
    eprintln!("bench: {machine}");
    let executables = build(&root, &servers, None)?;
    let loadgen = executables
        .get("loadgen")
        .context("the build produced no loadgen")?
        .clone();
    let binaries = servers
        .iter()
        .map(|&kind| {
            let path = executables
                .get(kind.binary())
                .with_context(|| format!("the build produced no {}", kind.binary()))?;
            ServerBinary::probe(kind, path)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for binary in binaries.iter().filter(|b| !b.takes_workers) {
        eprintln!(
            "bench: note: {} takes no --workers; it runs with its own thread count",
            binary.kind
        );
    }
    let load = LoadRunner {
        path: loadgen,
        threads: args.loadgen_threads,
    };

    // The rounds.
    let total = args.rounds * scenarios.len() * binaries.len();
    let mut runs = Vec::with_capacity(total);
    for round in 1..=args.rounds {
        for (index, scenario) in scenarios.iter().enumerate() {
            for offset in 0..binaries.len() {
                // Rotate the server order by round and scenario so no server always goes first.
                let binary = &binaries[(round + index + offset) % binaries.len()];
                let run = measure_run(binary, &load, scenario, &args, round)?;
                eprintln!(
                    "bench: [{:>2}/{total}] round {round} {} {:<18} {:<24} {:>10.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  ctx/req {:.4}  CPU µs/req server {:.2} loadgen {:.2}",
                    runs.len() + 1,
                    scenario.id,
                    scenario.shape(),
                    binary.kind.to_string(),
                    run.load.throughput_rps,
                    run.load.latency.p50_us,
                    run.load.latency.p99_us,
                    run.context_switches.total() as f64 / run.load.completed.max(1) as f64,
                    run.server_cpu_us_per_request(),
                    run.load.loadgen_cpu_us_per_request,
                );
                runs.push(run);
            }
        }
    }

    // System calls and context switches per request at depth 16.
    let mut syscalls = Vec::new();
    if args.no_syscalls {
        eprintln!("bench: system call counts skipped (--no-syscalls)");
    } else {
        let tools = Tools::detect();
        for scenario in scenarios.iter().filter(|s| s.depth == 16) {
            for binary in &binaries {
                let row = count_syscalls(binary, &load, scenario, &args, &tools, &out_dir)?;
                eprintln!(
                    "bench: syscalls {} {:<24} perf {}  strace {}  ctx/req (/proc) {:.4}",
                    scenario.id,
                    binary.kind.to_string(),
                    show(&row.perf_syscalls_per_request),
                    show(&row.strace_syscalls_per_request),
                    row.proc_context_switches_per_request
                );
                syscalls.push(row);
            }
        }
    }

    machine.load_average_end = load_average();
    let rows = report::rows(&scenarios, &servers, &runs, machine.cpus);
    let sleep = report::SleepCheck::measure();
    eprintln!("bench: {sleep}");
    let verdicts = report::verdicts(&scenarios, &rows, args.workers, &sleep);
    let table = report::markdown(&scenarios, &rows, &verdicts, &syscalls);
    println!("{table}");

    let command = command_line();
    let json = serde_json::json!({
        "command": command,
        "machine": machine,
        "workers": args.workers,
        "loops": args.loops,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "scenarios": scenarios,
        "runs": runs,
        "medians": rows,
        "verdicts": verdicts,
        "syscalls": syscalls,
    });
    let json_path = out_dir.join("bench.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let chart_path = out_dir.join("throughput.svg");
    let ids: Vec<&str> = scenarios.iter().map(|s| s.id).collect();
    chart::draw(&chart_path, &ids, &servers, &rows)?;
    eprintln!(
        "bench: wrote {} and {}",
        json_path.display(),
        chart_path.display()
    );

    if !args.no_markdown {
        let section = results_section(&command, &machine, &args, &table);
        let path = root.join("BENCHMARKS.md");
        refresh_markdown(&path, &section)?;
        eprintln!("bench: refreshed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn show(value: &Result<f64, String>) -> String {
    match value {
        Ok(v) => format!("{v:.3}/req"),
        Err(reason) => format!("skipped ({reason})"),
    }
}

// Where the workspace is and where its builds go, as the course runner finds them (its
// `workspace` module honours `CARGO_TARGET_DIR` and `build.target-dir` through `cargo metadata`).
use xtask::{target_dir, workspace_root};

/// `cargo xtask bench` and the arguments it was given, for the report, prefixed by `nice -n N`
/// when the benchmark runs at a changed priority (every server and loadgen inherit it).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("cargo xtask bench {}", args.join(" "))
        .trim_end()
        .to_owned();
    match own_niceness() {
        Some(nice) if nice != 0 => format!("nice -n {nice} {command}"),
        _ => command,
    }
}

/// This process's nice value: field 19 of `/proc/self/stat`, counted after the parenthesised
/// command name, where field 3 is the first.
fn own_niceness() -> Option<i64> {
    let stat = test_support::procfs::Proc::this().try_read("stat").ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

/// Builds the release binaries of the workspace at `root` (into `target`, when given, else the
/// inherited target folder) and returns their paths by name, as cargo reports them.
fn build(
    root: &Path,
    servers: &[ServerKind],
    target: Option<&Path>,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut packages = vec!["loadgen"];
    for server in servers {
        let package = match server {
            ServerKind::Handoff | ServerKind::HandoffLoops => "handoff_server",
            ServerKind::Epoll => "epoll_server",
            ServerKind::Tokio => "tokio_server",
        };
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    // An older revision is built for its servers only: the working tree's loadgen drives both.
    if target.is_some() {
        packages.retain(|&package| package != "loadgen");
    }
    build_packages_into(root, &packages, target)
}

/// Builds the release binaries of `packages` and returns their paths by name, as cargo reports
/// them.
fn build_packages(root: &Path, packages: &[&str]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    build_packages_into(root, packages, None)
}

/// [`build_packages`] of the workspace at `root`, into the target folder `target` when given.
fn build_packages_into(
    root: &Path,
    packages: &[&str],
    target: Option<&Path>,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    if let Some(target) = target {
        command.env("CARGO_TARGET_DIR", target);
    }
    command.current_dir(root).args([
        "build",
        "--release",
        "--bins",
        "--message-format=json-render-diagnostics",
    ]);
    for package in packages {
        command.args(["-p", package]);
    }
    eprintln!(
        "bench: cargo build --release -p {} (in {})",
        packages.join(" -p "),
        root.display()
    );
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let output = xtask::process::output(&mut command).context("running cargo build")?;
    anyhow::ensure!(output.status.success(), "cargo build --release failed");
    let mut executables = BTreeMap::new();
    for line in output.stdout.split(|&b| b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(path)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            executables.insert(name.to_owned(), PathBuf::from(path));
        }
    }
    Ok(executables)
}

/// How to run the load generator.
#[derive(Debug)]
struct LoadRunner {
    path: PathBuf,
    threads: usize,
}

impl LoadRunner {
    /// Runs loadgen for `seconds` against `server` and returns its summary; a wrong response or
    /// a failed connection is an error naming what went wrong.
    fn run(
        &self,
        server: &RunningServer,
        scenario: &Scenario,
        seconds: f64,
    ) -> anyhow::Result<LoadgenSummary> {
        self.run_with(
            server,
            scenario.connections,
            scenario.depth,
            &["--mix", scenario.mix],
            seconds,
        )
    }

    /// Runs loadgen for `seconds` against `server` with `connections` connections at `depth`,
    /// `mix_args` choosing what it sends; any wrong response is an error.
    fn run_with(
        &self,
        server: &RunningServer,
        connections: usize,
        depth: usize,
        mix_args: &[&str],
        seconds: f64,
    ) -> anyhow::Result<LoadgenSummary> {
        self.run_limited(
            server,
            connections,
            depth,
            mix_args,
            &["--duration", &format!("{seconds}")],
        )
    }

    /// [`run_with`](Self::run_with), with `limit` saying when loadgen stops: `--duration S` or
    /// `--requests N`.
    fn run_limited(
        &self,
        server: &RunningServer,
        connections: usize,
        depth: usize,
        mix_args: &[&str],
        limit: &[&str],
    ) -> anyhow::Result<LoadgenSummary> {
        let mut command = Command::new(&self.path);
        command
            .args(["--addr", &server.addr().to_string()])
            .args(["--connections", &connections.to_string()])
            .args(["--depth", &depth.to_string()])
            .args(mix_args)
            .args(limit)
            .args(["--threads", &self.threads.to_string()])
            .args(["--json", "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = xtask::process::output(&mut command).context("running loadgen")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let summary: LoadgenSummary = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("loadgen printed no summary: {}", stderr.trim()))?;
        anyhow::ensure!(
            output.status.success() && summary.mismatches == 0 && summary.connection_errors == 0,
            "loadgen found errors: {}",
            stderr.trim()
        );
        Ok(summary)
    }
}

/// One measured run: a fresh server, loadgen against it, the server's context switches.
fn measure_run(
    binary: &ServerBinary,
    load: &LoadRunner,
    scenario: &Scenario,
    args: &BenchArgs,
    round: usize,
) -> anyhow::Result<Run> {
    let mut server = binary.start(args.workers)?;
    let before = ContextSwitches::of(server.pid())?;
    let cpu_before = server::cpu_time(server.pid())?;
    let threads_before = threads::ThreadTimes::of(server.pid())?;
    let started = std::time::Instant::now();
    let summary = load
        .run(&server, scenario, args.duration)
        .with_context(|| {
            format!(
                "{} {} against {}",
                scenario.id,
                scenario.shape(),
                binary.kind
            )
        })?;
    let wall_s = started.elapsed().as_secs_f64();
    let threads_after = threads::ThreadTimes::of(server.pid())?;
    let after = ContextSwitches::of(server.pid())?;
    let cpu_after = server::cpu_time(server.pid())?;
    anyhow::ensure!(
        server.is_running(),
        "{} died during {}",
        binary.kind,
        scenario.id
    );
    Ok(Run {
        round,
        scenario: scenario.id,
        server: binary.kind,
        load: summary,
        context_switches: after.since(before),
        server_cpu_s: cpu_after.saturating_sub(cpu_before).as_secs_f64(),
        threads: threads_after.since(&threads_before),
        wall_s,
    })
}

/// Which counting tools this machine has.
#[derive(Debug)]
struct Tools {
    perf: Result<(), String>,
    strace: Result<(), String>,
}

impl Tools {
    fn detect() -> Tools {
        let perf = if measure::available("perf") {
            Ok(())
        } else {
            Err("perf not installed".to_owned())
        };
        let strace = if !measure::available("strace") {
            Err("strace not installed".to_owned())
        } else {
            Ok(())
        };
        Tools { perf, strace }
    }
}

/// Counts one server's system calls and context switches per request in one scenario.
fn count_syscalls(
    binary: &ServerBinary,
    load: &LoadRunner,
    scenario: &Scenario,
    args: &BenchArgs,
    tools: &Tools,
    out_dir: &Path,
) -> anyhow::Result<SyscallRow> {
    let server = binary.start(args.workers)?;
    load.run(&server, scenario, WARM_UP.as_secs_f64())?;
    let window = measure::ATTACH_ALLOWANCE * 2 + Duration::from_secs_f64(args.syscall_duration);
    let stem = match binary.kind {
        ServerKind::HandoffLoops => format!("{}-handoff_server-loops{}", scenario.id, args.loops),
        kind => format!("{}-{}", scenario.id, kind.binary()),
    };

    let mut row = SyscallRow {
        scenario: scenario.id,
        server: binary.kind,
        perf_requests: 0,
        perf_syscalls_per_request: Err(String::new()),
        perf_context_switches_per_request: Err(String::new()),
        proc_context_switches_per_request: 0.0,
        strace_syscalls_per_request: Err(String::new()),
        strace_top: Vec::new(),
        strace_requests: 0,
    };

    // perf stat (or, without it, just /proc).
    let perf = match &tools.perf {
        Ok(()) => Some(measure::attach_perf(
            server.pid(),
            window,
            &out_dir.join(format!("{stem}.perf.csv")),
        )?),
        Err(_) => None,
    };
    std::thread::sleep(measure::ATTACH_ALLOWANCE);
    let before = ContextSwitches::of(server.pid())?;
    let summary = load.run(&server, scenario, args.syscall_duration)?;
    let after = ContextSwitches::of(server.pid())?;
    let requests = summary.completed.max(1) as f64;
    row.perf_requests = summary.completed;
    row.proc_context_switches_per_request = after.since(before).total() as f64 / requests;
    match perf {
        Some(attached) => match attached
            .finish()
            .and_then(|report| measure::parse_perf(&report))
        {
            Ok(counts) => {
                row.perf_syscalls_per_request = Ok(counts.syscalls as f64 / requests);
                row.perf_context_switches_per_request =
                    Ok(counts.context_switches as f64 / requests);
            }
            Err(error) => {
                let reason = format!("perf stat failed: {}", first_line(&error.to_string()));
                row.perf_syscalls_per_request = Err(reason.clone());
                row.perf_context_switches_per_request = Err(reason);
            }
        },
        None => {
            let reason = tools.perf.clone().err().unwrap_or_default();
            row.perf_syscalls_per_request = Err(reason.clone());
            row.perf_context_switches_per_request = Err(reason);
        }
    }

    // strace -c -f, for the names of the calls. It stops when the server does.
    row.strace_syscalls_per_request = match &tools.strace {
        Err(reason) => Err(reason.clone()),
        Ok(()) => {
            let attached =
                measure::attach_strace(server.pid(), &out_dir.join(format!("{stem}.strace.txt")))?;
            std::thread::sleep(measure::ATTACH_ALLOWANCE);
            let summary = load.run(&server, scenario, args.syscall_duration);
            drop(server);
            let summary = summary?;
            match attached
                .finish()
                .and_then(|report| measure::parse_strace(&report))
            {
                Ok((total, calls)) => {
                    row.strace_requests = summary.completed;
                    row.strace_top = calls;
                    Ok(total as f64 / summary.completed.max(1) as f64)
                }
                Err(error) => Err(format!("strace failed: {}", first_line(&error.to_string()))),
            }
        }
    };
    Ok(row)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// What the machine is, for the report.
#[derive(Debug, Clone, serde::Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
    load_average: String,
    load_average_end: String,
    date_utc: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = read_machine_file("cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")
                    .and_then(|rest| rest.split_once(':'))
            })
            .map_or_else(
                || "unknown".to_owned(),
                |(_, model)| model.trim().to_owned(),
            );
        let read = |name: &str| {
            read_machine_file(name)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let date_utc = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            kernel: read("sys/kernel/osrelease"),
            load_average: load_average(),
            load_average_end: String::new(),
            date_utc,
        }
    }
}

/// The 1-, 5- and 15-minute load averages: how busy the shared machine was.
fn load_average() -> String {
    read_machine_file("loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} CPUs ({}), Linux {}, load average {} at the start{}, {}",
            self.cpus,
            self.cpu_model,
            self.kernel,
            self.load_average,
            if self.load_average_end.is_empty() {
                String::new()
            } else {
                format!(" and {} at the end", self.load_average_end)
            },
            self.date_utc
        )
    }
}

/// The generated part of `BENCHMARKS.md`.
fn results_section(command: &str, machine: &Machine, args: &BenchArgs, table: &str) -> String {
    format!(
        "{RESULTS_START}\n\
         Measured with `{command}` ({} rounds of {} s per server and scenario, `--workers {}`, \
         loadgen with {} thread(s); medians over the rounds).\n\n\
         Machine: {machine}.\n\n\
         {table}\n\
         The tables above are the results; the command also draws them as a chart, \
         `target/bench/throughput.svg`, and keeps every run in `target/bench/bench.json` (both \
         build output, in the cargo target folder, not in the repository).\n\
         {RESULTS_END}",
        args.rounds, args.duration, args.workers, args.loadgen_threads
    )
}

/// Replaces the text between the markers in `BENCHMARKS.md` (or appends it when the markers are
/// missing), keeping everything else as written.
fn refresh_markdown(path: &Path, section: &str) -> anyhow::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let updated = splice(&existing, section);
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

fn splice(existing: &str, section: &str) -> String {
    splice_between(existing, RESULTS_START, RESULTS_END, section)
}

/// `existing` with the text from `start_marker` to `end_marker` replaced by `section` (which
/// carries the markers itself), or with `section` appended when the markers are missing.
fn splice_between(existing: &str, start_marker: &str, end_marker: &str, section: &str) -> String {
    match (existing.find(start_marker), existing.find(end_marker)) {
        (Some(start), Some(end)) if end > start => {
            format!(
                "{}{section}{}",
                &existing[..start],
                &existing[end + end_marker.len()..]
            )
        }
        _ if existing.is_empty() => format!("# Benchmarks\n\n{section}\n"),
        _ => format!("{}\n\n{section}\n", existing.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_names_a_changed_priority() {
        assert!(own_niceness().is_some());
        assert!(command_line().contains("cargo xtask"));
    }

    /// `cargo xtask bench ARGS` as the harness's command line parses it.
    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let mut argv = vec!["bench_harness"];
        argv.extend_from_slice(args);
        <BenchArgs as clap::Parser>::try_parse_from(argv)
    }

    #[test]
    fn durable_is_a_flag_of_the_kv_benchmark() {
        let args = parse(&["--kv", "--durable", "--rounds", "2", "--duration", "0.5"]).unwrap();
        assert!(args.kv && args.durable);
        assert_eq!((args.rounds, args.duration, args.workers), (2, 0.5, 2));
        assert_eq!(args.fsync_samples, 200);
        let args = parse(&["--kv", "--durable", "--fsync-samples", "20"]).unwrap();
        assert_eq!(args.fsync_samples, 20);
        let error = parse(&["--durable"]).unwrap_err().to_string();
        assert!(error.contains("--kv"), "{error}");
        assert!(!parse(&["--kv"]).unwrap().durable);
    }

    #[test]
    fn baseline_takes_a_revision_and_is_not_a_kv_flag() {
        let args = parse(&[
            "--baseline",
            "c308ef5",
            "--scenarios",
            "S2",
            "--rounds",
            "5",
        ])
        .unwrap();
        assert_eq!(args.baseline.as_deref(), Some("c308ef5"));
        assert_eq!((args.scenarios, args.rounds), (vec!["S2".to_owned()], 5));
        assert!(parse(&[]).unwrap().baseline.is_none());
        assert!(parse(&["--baseline"]).is_err());
        let error = parse(&["--kv", "--baseline", "HEAD"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--baseline"), "{error}");
    }

    #[test]
    fn splice_replaces_only_the_results_section() {
        let before = format!("# B\n\nintro\n\n{RESULTS_START}\nold\n{RESULTS_END}\n\nanalysis\n");
        let section = format!("{RESULTS_START}\nnew\n{RESULTS_END}");
        let after = splice(&before, &section);
        assert_eq!(after, format!("# B\n\nintro\n\n{section}\n\nanalysis\n"));
        assert!(splice("# B\n", &section).ends_with(&format!("{section}\n")));
        assert!(splice("", &section).starts_with("# Benchmarks"));
    }
}
