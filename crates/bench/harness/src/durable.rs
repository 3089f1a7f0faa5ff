//! `cargo xtask bench --kv --durable`: the durable `kv_server` against `redis-server` with
//! `appendfsync always`, both answering a write only once it is on disk.
//!
//! What it does, in order:
//!
//! 1. builds `loadgen` and `kv_server` and checks that this `kv_server` takes `--data-dir` and
//!    `--fsync` (a build without durability is refused at once, saying so);
//! 2. measures the data disk: [`FsyncProbe`] appends 4 KiB to a file in the data folder and
//!    calls `fdatasync` on it, [`BenchArgs::fsync_samples`] times, from this process — the cost
//!    of one sync, which bounds a server that syncs each record on its own (measured again after
//!    the rounds, since a shared disk drifts);
//! 3. runs three servers side by side, alternating in rounds as `bench --kv` does, 50
//!    connections at depth 1, on two workloads ([`Workload`]: `loadgen --mix kv-set`, every
//!    request a `SET`; `loadgen --mix kv`, 90 % `GET` and 10 % `SET`):
//!    `kv_server --data-dir D --workers N` (group commit, its default),
//!    `kv_server --data-dir D --workers N --fsync per-record` and
//!    `redis-server --appendonly yes --appendfsync always --dir D --save ''`, each run on a
//!    freshly started server with a fresh data folder under `target/bench/durable/`, all on the
//!    one disk that was measured. Before a run of the mix, a short counted run stores its
//!    read-only keys (and checks a few answers), so the timed run (`--no-preload`) sends only
//!    measured requests; kv_server's `STATS` before and after the timed run give the records per
//!    fsync of that run alone;
//! 4. prints the table of medians over the rounds with the ratios to redis-server and the
//!    targets' verdicts, writes `target/bench/kv-durable.json` and `target/bench/kv-durable.svg`,
//!    and refreshes the section of `BENCHMARKS.md` between its own markers.
//!
//! redis-server is found or installed as in `bench --kv` (else its rows say skipped and why).

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use plotters::style::RGBColor;

use super::chart::Series;
use super::kv::{find_or_install_redis, free_port, last_lines, start_and_wait_logged, version_of};
use super::report::{LoadgenSummary, median};
use super::server::RunningServer;
use super::{BenchArgs, LoadRunner, Machine};

/// The markers around the durable part of `BENCHMARKS.md`.
const DURABLE_START: &str =
    "<!-- bench:kv-durable:start (written by `cargo xtask bench --kv --durable`) -->";
const DURABLE_END: &str = "<!-- bench:kv-durable:end -->";
/// Connections of every run.
const CONNECTIONS: usize = 50;
/// Requests in flight per connection: one, so every `SET` waits for its own sync.
const DEPTH: usize = 1;
/// The size of each append of the fdatasync probe.
const PROBE_BLOCK: usize = 4096;
/// How long reading a `STATS` answer may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests of the counted run that stores the mix's read-only keys before the timed run.
const PRELOAD_REQUESTS: &str = "200";

/// The two workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Workload {
    /// `loadgen --mix kv-set`: every request a `SET` of the connection's own keys.
    SetOnly,
    /// `loadgen --mix kv`: 90 % `GET` of preloaded keys, 10 % `SET`.
    Mix,
}

impl Workload {
    const ALL: [Workload; 2] = [Workload::SetOnly, Workload::Mix];

    fn mix(self) -> &'static str {
        match self {
            Workload::SetOnly => "kv-set",
            Workload::Mix => "kv",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::SetOnly => "SET only",
            Workload::Mix => "90 % GET / 10 % SET",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Workload::SetOnly => "set",
            Workload::Mix => "mix",
        }
    }
}

/// The three servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DurableServer {
    /// `kv_server --data-dir D` with group commit (its default `--fsync group`).
    KvGroup,
    /// `kv_server --data-dir D --fsync per-record`.
    KvPerRecord,
    /// `redis-server --appendonly yes --appendfsync always`.
    RedisAlways,
}

impl DurableServer {
    fn name(self) -> &'static str {
        match self {
            DurableServer::KvGroup => "kv_server (group commit)",
            DurableServer::KvPerRecord => "kv_server --fsync per-record",
            DurableServer::RedisAlways => "redis-server appendfsync always",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            DurableServer::KvGroup => "kv-group",
            DurableServer::KvPerRecord => "kv-per-record",
            DurableServer::RedisAlways => "redis-always",
        }
    }

    fn is_kv(self) -> bool {
        self != DurableServer::RedisAlways
    }
}

/// The fdatasync latency of the data folder's disk, measured by this process.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct FsyncProbe {
    /// Appends, each followed by one `fdatasync`.
    pub(crate) samples: usize,
    /// Bytes of each append.
    pub(crate) block_bytes: usize,
    /// Median time of one append + fdatasync, µs.
    pub(crate) median_us: f64,
    /// 99th percentile, µs.
    pub(crate) p99_us: f64,
    /// The slowest, µs.
    pub(crate) max_us: f64,
    /// The file system and device the file was on (from `/proc/self/mounts`).
    pub(crate) filesystem: String,
}

impl FsyncProbe {
    /// Appends [`PROBE_BLOCK`] bytes to a new file at `path` and syncs its data, `samples`
    /// times, timing each pair; the file is removed afterwards.
    pub(crate) fn measure(path: &Path, samples: usize) -> anyhow::Result<FsyncProbe> {
        anyhow::ensure!(samples > 0, "--fsync-samples must be at least 1");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        let block = vec![0x5a_u8; PROBE_BLOCK];
        let mut micros = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            file.write_all(&block)
                .with_context(|| format!("appending to {}", path.display()))?;
            file.sync_data()
                .with_context(|| format!("fdatasync of {}", path.display()))?;
            micros.push(start.elapsed().as_secs_f64() * 1e6);
        }
        drop(file);
        let filesystem = filesystem_of(path);
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        micros.sort_by(f64::total_cmp);
        Ok(FsyncProbe {
            samples,
            block_bytes: PROBE_BLOCK,
            median_us: median(micros.clone()),
            p99_us: quantile(&micros, 0.99),
            max_us: micros.last().copied().unwrap_or_default(),
            filesystem,
        })
    }

    /// At most how many syncs per second one after another allow: 1 / the median.
    pub(crate) fn syncs_per_second(&self) -> f64 {
        if self.median_us > 0.0 {
            1e6 / self.median_us
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for FsyncProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "append {} KiB + fdatasync on the data folder's disk ({}): median {:.0} µs, p99 {:.0} µs, max {:.0} µs over {} calls (one after another: at most {:.0} syncs/s)",
            self.block_bytes / 1024,
            self.filesystem,
            self.median_us,
            self.p99_us,
            self.max_us,
            self.samples,
            self.syncs_per_second()
        )
    }
}

/// The value at quantile `q` of `sorted` (nearest rank), 0 when empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `<type> on <device>` of the mount that holds `path`, or `unknown file system`.
fn filesystem_of(path: &Path) -> String {
    let path = path
        .parent()
        .and_then(|dir| dir.canonicalize().ok())
        .unwrap_or_else(|| path.to_owned());
    test_support::procfs::Proc::this()
        .try_read("mounts")
        .ok()
        .and_then(|mounts| mount_of(&mounts, &path))
        .unwrap_or_else(|| "unknown file system".to_owned())
}

/// In a `/proc/self/mounts` text, the longest mount point that holds `path`, as `<type> on
/// <device>`.
fn mount_of(mounts: &str, path: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point)
                .then(|| (point.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, described)| described)
}

/// The log counters of the durable kv_server's `STATS` answer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct LogStats {
    /// Records appended to the log.
    pub(crate) log_records: u64,
    /// Bytes appended to the log.
    pub(crate) log_bytes: u64,
    /// fsyncs of the log.
    pub(crate) fsyncs: u64,
    /// Records per fsync, as the server computes it.
    pub(crate) records_per_fsync: f64,
    /// Checkpoints written.
    pub(crate) checkpoints: u64,
}

impl LogStats {
    /// Reads the fields from a `STATS` line; `Err` names the ones missing.
    pub(crate) fn parse(line: &str) -> Result<LogStats, String> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        let mut missing = Vec::new();
        let mut number = |name: &'static str| match field(name).and_then(|v| v.parse().ok()) {
            Some(value) => value,
            None => {
                missing.push(name);
                0.0
            }
        };
        let stats = LogStats {
            log_records: number("log_records") as u64,
            log_bytes: number("log_bytes") as u64,
            fsyncs: number("fsyncs") as u64,
            records_per_fsync: number("records_per_fsync"),
            checkpoints: number("checkpoints") as u64,
        };
        if missing.is_empty() {
            Ok(stats)
        } else {
            Err(format!(
                "STATS has no {} (answer: {:?})",
                missing.join(", "),
                line.trim_end()
            ))
        }
    }
}

/// kv_server's log counters before and after a timed run, and what they say of that run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct LogWindow {
    /// `STATS` before the timed run.
    pub(crate) before: LogStats,
    /// `STATS` after it.
    pub(crate) after: LogStats,
    /// Records appended during the run.
    pub(crate) records: u64,
    /// fsyncs during the run.
    pub(crate) fsyncs: u64,
    /// `records / fsyncs`: how many records one fsync covered on average during the run.
    pub(crate) records_per_fsync: f64,
}

impl LogWindow {
    /// The run between two `STATS` readings.
    pub(crate) fn between(before: LogStats, after: LogStats) -> LogWindow {
        let records = after.log_records.saturating_sub(before.log_records);
        let fsyncs = after.fsyncs.saturating_sub(before.fsyncs);
        LogWindow {
            before,
            after,
            records,
            fsyncs,
            records_per_fsync: if fsyncs > 0 {
                records as f64 / fsyncs as f64
            } else {
                0.0
            },
        }
    }
}

/// Reads kv_server's log counters from its `STATS` answer.
fn log_stats(addr: SocketAddr) -> Result<LogStats, String> {
    read_stats(addr)
        .map_err(|error| format!("{error:#}"))
        .and_then(|line| LogStats::parse(&line))
}

/// Asks the server at `addr` for `STATS` on a connection of its own.
fn read_stats(addr: SocketAddr) -> anyhow::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, STATS_TIMEOUT)
        .with_context(|| format!("connecting to {addr} for STATS"))?;
    stream.set_read_timeout(Some(STATS_TIMEOUT))?;
    stream.set_write_timeout(Some(STATS_TIMEOUT))?;
    (&stream).write_all(b"STATS\n").context("sending STATS")?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("reading the STATS answer")?;
    Ok(line)
}

/// One measured run.
#[derive(Debug, serde::Serialize)]
struct DurableRun {
    round: usize,
    workload: Workload,
    server: DurableServer,
    load: LoadgenSummary,
    server_cpu_s: f64,
    /// kv_server's log counters around the timed run (`None` for redis-server), or why they
    /// could not be read.
    #[serde(serialize_with = "ok_or_reason")]
    log: Result<Option<LogWindow>, String>,
}

/// The medians of one server on one workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct DurableRow {
    /// Requests per second.
    pub(crate) throughput_rps: f64,
    /// Every request's p50, µs.
    pub(crate) p50_us: f64,
    /// Every request's p99, µs.
    pub(crate) p99_us: f64,
    /// `GET` p50, µs (workloads with `GET`s).
    pub(crate) get_p50_us: Option<f64>,
    /// `GET` p99, µs.
    pub(crate) get_p99_us: Option<f64>,
    /// `SET` p99, µs.
    pub(crate) set_p99_us: Option<f64>,
    /// Records per fsync (kv_server only).
    pub(crate) records_per_fsync: Option<f64>,
    /// Server CPU time per request, µs.
    pub(crate) server_cpu_us_per_request: f64,
}

/// One line of the table: a workload, a server, its medians (or why it was not run).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TableRow {
    /// The workload.
    pub(crate) workload: Workload,
    /// The server.
    pub(crate) server: DurableServer,
    /// Its medians, or the reason it was skipped.
    #[serde(serialize_with = "ok_or_reason")]
    pub(crate) medians: Result<DurableRow, String>,
}

/// Whether kv_server (group commit) met one of the targets.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Verdict {
    /// The target, in words.
    pub(crate) target: &'static str,
    /// The measured figures, in words.
    pub(crate) measured: String,
    /// Met or not; `None` when redis-server was skipped.
    pub(crate) met: Option<bool>,
}

/// Runs the durable KV benchmark.
pub(crate) fn run(args: &BenchArgs, root: &Path, out_dir: &Path) -> anyhow::Result<ExitCode> {
    let mut machine = Machine::read();
    eprintln!("bench --kv --durable: {machine}");
    let (loadgen, kv_server) = super::kv::build_kv_tools(args, root)?;
    check_durable_flags(&help_of(&kv_server)?)?;

    // One fresh folder for the whole run, on the disk the servers will write to.
    let data_root = data_root(out_dir);
    if data_root.exists() {
        std::fs::remove_dir_all(&data_root)
            .with_context(|| format!("removing the previous {}", data_root.display()))?;
    }
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("creating {}", data_root.display()))?;
    let probe = FsyncProbe::measure(&data_root.join("fdatasync-probe"), args.fsync_samples)?;
    eprintln!("bench --kv --durable: {probe}");

    let redis = find_or_install_redis();
    let mut servers = vec![DurableServer::KvGroup, DurableServer::KvPerRecord];
    match &redis {
        Ok(path) => {
            eprintln!("bench --kv --durable: redis-server is {}", path.display());
            servers.push(DurableServer::RedisAlways);
        }
        Err(reason) => eprintln!("bench --kv --durable: redis-server skipped: {reason}"),
    }
    let redis_version = redis.as_ref().ok().map(|path| version_of(path));

    let total = args.rounds * Workload::ALL.len() * servers.len();
    let mut runs = Vec::with_capacity(total);
    for round in 1..=args.rounds {
        for (index, &workload) in Workload::ALL.iter().enumerate() {
            for offset in 0..servers.len() {
                // Rotate the order by round and workload so no server always goes first.
                let server = servers[(round + index + offset) % servers.len()];
                let stem = format!("r{round}-{}-{}", workload.slug(), server.slug());
                let dir = data_root.join(&stem);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let stderr_log = data_root.join(format!("{stem}.stderr"));
                let mut running = match server {
                    DurableServer::RedisAlways => start_redis_always(
                        redis.as_ref().expect("listed only if found"),
                        &dir,
                        &stderr_log,
                    )?,
                    kv => start_durable_kv(&kv_server, kv, &dir, args.workers, &stderr_log)?,
                };
                let run = measure(&loadgen, &mut running, round, workload, server, args)?;
                let log = match &run.log {
                    Ok(Some(log)) => format!(
                        "  records/fsync {:.2} ({} records, {} fsyncs)",
                        log.records_per_fsync, log.records, log.fsyncs
                    ),
                    Ok(None) => String::new(),
                    Err(_) => "  records/fsync unknown (see the warning)".to_owned(),
                };
                let verb = |v: Option<super::report::LoadgenVerb>| {
                    v.map_or_else(String::new, |v| format!("{:.0}", v.latency.p99_us))
                };
                eprintln!(
                    "bench --kv --durable: [{:>2}/{total}] round {round} {:<20} {:<32} {:>9.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  GET p99 {:>6} µs  SET p99 {:>6} µs{log}",
                    runs.len() + 1,
                    workload.name(),
                    server.name(),
                    run.load.throughput_rps,
                    run.load.latency.p50_us,
                    run.load.latency.p99_us,
                    verb(run.load.by_verb.get),
                    verb(run.load.by_verb.set),
                );
                runs.push(run);
            }
        }
    }
    machine.load_average_end = super::load_average();

    let skipped = redis.as_ref().err().cloned();
    let rows: Vec<TableRow> = Workload::ALL
        .iter()
        .flat_map(|&workload| {
            let runs = &runs;
            let skipped = skipped.clone();
            [
                DurableServer::KvGroup,
                DurableServer::KvPerRecord,
                DurableServer::RedisAlways,
            ]
            .into_iter()
            .map(move |server| TableRow {
                workload,
                server,
                medians: match (&skipped, server) {
                    (Some(reason), DurableServer::RedisAlways) => Err(reason.clone()),
                    _ => Ok(medians(runs, workload, server)),
                },
            })
        })
        .collect();
    // The disk again: a shared machine's disk can be slower at the end than at the start.
    let probe_end = FsyncProbe::measure(&data_root.join("fdatasync-probe"), args.fsync_samples)?;
    let probes = [probe, probe_end];
    let verdicts = verdicts(&rows);
    let table = markdown(&rows, &verdicts);
    println!("{}\n\n{table}", disk_line(&probes));

    let command = super::command_line();
    let json = serde_json::json!({
        "command": command,
        "machine": machine,
        "fdatasync_start": probes[0],
        "fdatasync_end": probes[1],
        "workers": args.workers,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": CONNECTIONS,
        "depth": DEPTH,
        "redis_version": redis_version,
        "redis_skipped": skipped,
        "runs": runs,
        "medians": rows,
        "verdicts": verdicts,
    });
    let json_path = out_dir.join("kv-durable.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let chart_path = out_dir.join("kv-durable.svg");
    draw(&chart_path, &rows)?;
    eprintln!(
        "bench --kv --durable: wrote {} and {}",
        json_path.display(),
        chart_path.display()
    );

    if !args.no_markdown {
        let redis_text = match &redis_version {
            Some(version) => format!(
                "redis-server {version} with `--appendonly yes --appendfsync always --save ''`"
            ),
            None => "redis-server skipped".to_owned(),
        };
        let heading = format!(
            "Measured with `{command}` ({} rounds of {} s per server and workload, kv_server \
             with `--workers {}`, {redis_text}; loadgen with {} thread(s), {CONNECTIONS} \
             connections at depth {DEPTH}; medians over the rounds).",
            args.rounds, args.duration, args.workers, args.loadgen_threads,
        );
        let section = section(&heading, &machine.to_string(), &probes, &table);
        let path = root.join("BENCHMARKS.md");
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(
            &path,
            super::splice_between(&existing, DURABLE_START, DURABLE_END, &section),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench --kv --durable: refreshed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--help` of the server at `path`, stdout and stderr together.
fn help_of(path: &Path) -> anyhow::Result<String> {
    let output = Command::new(path)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --help", path.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr))
}

/// Refuses a kv_server whose `--help` does not name the durability flags the benchmark passes.
pub(crate) fn check_durable_flags(help: &str) -> anyhow::Result<()> {
    let missing: Vec<&str> = ["--data-dir", "--fsync"]
        .into_iter()
        .filter(|flag| !help.contains(flag))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "this kv_server is not the durable one: its --help has no {} (the durable kv_server \
         takes `--data-dir DIR` and `--fsync group|per-record`), so `bench --kv --durable` has \
         nothing to measure; build it from a tree with the durable kv_server",
        missing.join(" and ")
    );
    Ok(())
}

/// The arguments of a durable kv_server run, after the port.
pub(crate) fn kv_args(server: DurableServer, dir: &Path, workers: usize) -> Vec<String> {
    let mut args = vec![
        "--data-dir".to_owned(),
        dir.display().to_string(),
        "--workers".to_owned(),
        workers.to_string(),
    ];
    if server == DurableServer::KvPerRecord {
        args.extend(["--fsync".to_owned(), "per-record".to_owned()]);
    }
    args
}

/// Starts a durable kv_server on a free port with its data in `dir`.
fn start_durable_kv(
    path: &Path,
    server: DurableServer,
    dir: &Path,
    workers: usize,
    stderr_log: &Path,
) -> anyhow::Result<RunningServer> {
    let addr = free_port()?;
    let mut command = Command::new(path);
    command
        .arg(addr.port().to_string())
        .args(kv_args(server, dir, workers));
    start_and_wait_logged(command, addr, server.name(), Some(stderr_log))
}

/// The arguments of a redis-server run.
pub(crate) fn redis_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--daemonize",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts redis-server on a free port, logging every write to `dir` and syncing before it answers.
fn start_redis_always(path: &Path, dir: &Path, stderr_log: &Path) -> anyhow::Result<RunningServer> {
    let addr = free_port()?;
    let mut command = Command::new(path);
    command.args(redis_args(addr.port(), dir));
    start_and_wait_logged(
        command,
        addr,
        DurableServer::RedisAlways.name(),
        Some(stderr_log),
    )
}

/// Runs one workload against a started server and, for kv_server, reads its log counters.
fn measure(
    loadgen: &LoadRunner,
    running: &mut RunningServer,
    round: usize,
    workload: Workload,
    server: DurableServer,
    args: &BenchArgs,
) -> anyhow::Result<DurableRun> {
    let replies = if server.is_kv() { "text" } else { "redis" };
    let mut mix_args = vec!["--mix", workload.mix(), "--replies", replies];
    if workload == Workload::Mix {
        loadgen
            .run_limited(
                running,
                CONNECTIONS,
                DEPTH,
                &mix_args,
                &["--requests", PRELOAD_REQUESTS],
            )
            .with_context(|| format!("storing the mix's keys in {}", server.name()))?;
        mix_args.push("--no-preload");
    }
    let before = server.is_kv().then(|| log_stats(running.addr()));
    let cpu_before = super::server::cpu_time(running.pid())?;
    let load = loadgen
        .run_with(running, CONNECTIONS, DEPTH, &mix_args, args.duration)
        .with_context(|| format!("{} against {}", workload.name(), server.name()))?;
    let cpu_after = super::server::cpu_time(running.pid())?;
    anyhow::ensure!(
        running.is_running(),
        "{} died during the run",
        server.name()
    );
    let log = match before {
        None => Ok(None),
        Some(before) => before.and_then(|before| {
            log_stats(running.addr()).map(|after| Some(LogWindow::between(before, after)))
        }),
    };
    if let Err(reason) = &log {
        eprintln!(
            "bench --kv --durable: warning: {}: {}",
            server.name(),
            last_lines(reason, 1)
        );
    }
    Ok(DurableRun {
        round,
        workload,
        server,
        load,
        server_cpu_s: cpu_after.saturating_sub(cpu_before).as_secs_f64(),
        log,
    })
}

/// Serializes `Ok(value)` as the value and `Err(reason)` as `{"skipped": reason}`.
fn ok_or_reason<T: serde::Serialize, S: serde::Serializer>(
    value: &Result<T, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize as _;
    match value {
        Ok(value) => value.serialize(serializer),
        Err(reason) => serde_json::json!({ "skipped": reason }).serialize(serializer),
    }
}

/// The medians of `server`'s runs on `workload`.
fn medians(runs: &[DurableRun], workload: Workload, server: DurableServer) -> DurableRow {
    let runs: Vec<&DurableRun> = runs
        .iter()
        .filter(|run| run.workload == workload && run.server == server)
        .collect();
    let of = |value: &dyn Fn(&DurableRun) -> f64| median(runs.iter().map(|r| value(r)).collect());
    let of_some = |value: &dyn Fn(&DurableRun) -> Option<f64>| {
        let values: Vec<f64> = runs.iter().filter_map(|r| value(r)).collect();
        (!values.is_empty()).then(|| median(values))
    };
    DurableRow {
        throughput_rps: of(&|run| run.load.throughput_rps),
        p50_us: of(&|run| run.load.latency.p50_us),
        p99_us: of(&|run| run.load.latency.p99_us),
        get_p50_us: of_some(&|run| run.load.by_verb.get.map(|v| v.latency.p50_us)),
        get_p99_us: of_some(&|run| run.load.by_verb.get.map(|v| v.latency.p99_us)),
        set_p99_us: of_some(&|run| run.load.by_verb.set.map(|v| v.latency.p99_us)),
        records_per_fsync: of_some(&|run| match &run.log {
            Ok(Some(log)) if log.fsyncs > 0 => Some(log.records_per_fsync),
            _ => None,
        }),
        server_cpu_us_per_request: of(&|run| {
            run.server_cpu_s * 1e6 / run.load.completed.max(1) as f64
        }),
    }
}

/// The medians of `server` on `workload` in `rows`, if it ran.
fn find(rows: &[TableRow], workload: Workload, server: DurableServer) -> Option<&DurableRow> {
    rows.iter()
        .find(|row| row.workload == workload && row.server == server)
        .and_then(|row| row.medians.as_ref().ok())
}

/// The project's three targets for kv_server with group commit.
pub(crate) fn verdicts(rows: &[TableRow]) -> Vec<Verdict> {
    let kv = |w| find(rows, w, DurableServer::KvGroup);
    let redis = |w| find(rows, w, DurableServer::RedisAlways);
    let mut verdicts = Vec::new();

    let (target, measured, met) = match (kv(Workload::SetOnly), redis(Workload::SetOnly)) {
        (Some(kv), Some(redis)) => (
            "SET only: throughput ≥ redis-server appendfsync always",
            format!(
                "{:.0} against {:.0} req/s ({:.2}×)",
                kv.throughput_rps,
                redis.throughput_rps,
                ratio(kv.throughput_rps, redis.throughput_rps)
            ),
            Some(kv.throughput_rps >= redis.throughput_rps),
        ),
        _ => (
            "SET only: throughput ≥ redis-server appendfsync always",
            "redis-server not run".to_owned(),
            None,
        ),
    };
    verdicts.push(Verdict {
        target,
        measured,
        met,
    });

    let mix = (kv(Workload::Mix), redis(Workload::Mix));
    let target = "90/10 mix: throughput ≥ 4× redis-server's";
    verdicts.push(match mix {
        (Some(kv), Some(redis)) => Verdict {
            target,
            measured: format!(
                "{:.0} against {:.0} req/s ({:.2}×)",
                kv.throughput_rps,
                redis.throughput_rps,
                ratio(kv.throughput_rps, redis.throughput_rps)
            ),
            met: Some(kv.throughput_rps >= 4.0 * redis.throughput_rps),
        },
        _ => Verdict {
            target,
            measured: "redis-server not run".to_owned(),
            met: None,
        },
    });
    let target = "90/10 mix: GET p99 < redis-server's GET p50";
    verdicts.push(
        match (
            mix.0.and_then(|kv| kv.get_p99_us),
            mix.1.and_then(|redis| redis.get_p50_us),
        ) {
            (Some(kv_p99), Some(redis_p50)) => Verdict {
                target,
                measured: format!(
                    "GET p99 {kv_p99:.0} µs against redis-server's GET p50 {redis_p50:.0} µs"
                ),
                met: Some(kv_p99 < redis_p50),
            },
            _ => Verdict {
                target,
                measured: "redis-server not run".to_owned(),
                met: None,
            },
        },
    );
    verdicts
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The results table and the targets' table.
pub(crate) fn markdown(rows: &[TableRow], verdicts: &[Verdict]) -> String {
    let mut table = String::from(
        "| workload | server | req/s | p50 µs | p99 µs | GET p50 µs | GET p99 µs | SET p99 µs | records per fsync | server CPU µs/req | req/s ÷ redis-server |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let show = |value: Option<f64>, decimals: usize| {
        value.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
    };
    for row in rows {
        let (workload, server) = (row.workload.name(), row.server.name());
        match &row.medians {
            Ok(medians) => {
                let versus = find(rows, row.workload, DurableServer::RedisAlways)
                    .filter(|_| row.server != DurableServer::RedisAlways)
                    .map(|redis| ratio(medians.throughput_rps, redis.throughput_rps));
                let _ = writeln!(
                    table,
                    "| {workload} | {server} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {:.2} | {} |",
                    medians.throughput_rps,
                    medians.p50_us,
                    medians.p99_us,
                    show(medians.get_p50_us, 0),
                    show(medians.get_p99_us, 0),
                    show(medians.set_p99_us, 0),
                    show(medians.records_per_fsync, 2),
                    medians.server_cpu_us_per_request,
                    versus.map_or_else(String::new, |v| format!("{v:.2}×")),
                );
            }
            Err(reason) => {
                let _ = writeln!(
                    table,
                    "| {workload} | {server} | skipped: {reason} | | | | | | | | |"
                );
            }
        }
    }
    table.push_str("\n| Target (kv_server, group commit) | Measured | Met |\n|---|---|---|\n");
    for verdict in verdicts {
        let met = match verdict.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(
            table,
            "| {} | {} | {met} |",
            verdict.target, verdict.measured
        );
    }
    table
}

/// The disk's fdatasync latency before and after the rounds, in one line.
fn disk_line([start, end]: &[FsyncProbe; 2]) -> String {
    format!(
        "{start} before the rounds; median {:.0} µs, p99 {:.0} µs after them",
        end.median_us, end.p99_us
    )
}

/// The generated part of `BENCHMARKS.md`, markers included; `probes` are the disk's before and
/// after the rounds.
pub(crate) fn section(
    heading: &str,
    machine: &str,
    probes: &[FsyncProbe; 2],
    table: &str,
) -> String {
    let disk = disk_line(probes);
    format!(
        "{DURABLE_START}\n\
         {heading}\n\n\
         Machine: {machine}.\n\n\
         Disk: {disk}.\n\n\
         {table}\n\
         The command also draws the throughput as a chart, `target/bench/kv-durable.svg`, and \
         keeps every run in `target/bench/kv-durable.json` (both build output, not in the \
         repository).\n\
         {DURABLE_END}"
    )
}

/// The chart: median throughput per workload, one bar per server.
fn draw(path: &Path, rows: &[TableRow]) -> anyhow::Result<()> {
    let groups: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
    let colours = [
        RGBColor(0x2b, 0x6c, 0xb0),
        RGBColor(0x7f, 0xa7, 0xd6),
        RGBColor(0xc0, 0x39, 0x2b),
    ];
    let series: Vec<Series> = [
        DurableServer::KvGroup,
        DurableServer::KvPerRecord,
        DurableServer::RedisAlways,
    ]
    .into_iter()
    .zip(colours)
    .map(|(server, colour)| Series {
        name: server.name(),
        colour,
        values: Workload::ALL
            .iter()
            .map(|&w| find(rows, w, server).map(|row| row.throughput_rps))
            .collect(),
    })
    .collect();
    super::chart::draw_groups(
        path,
        "durable writes: median throughput (req/s, log scale)",
        &groups,
        &series,
    )
}

/// Where the data folders go: `durable/` in the benchmark's output folder (`target/bench`).
fn data_root(out_dir: &Path) -> PathBuf {
    out_dir.join("durable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(throughput_rps: f64, get_p50_us: f64, get_p99_us: f64) -> DurableRow {
        DurableRow {
            throughput_rps,
            p50_us: 100.0,
            p99_us: 900.0,
            get_p50_us: Some(get_p50_us),
            get_p99_us: Some(get_p99_us),
            set_p99_us: Some(2000.0),
            records_per_fsync: Some(12.4),
            server_cpu_us_per_request: 10.0,
        }
    }

    fn rows(redis: Result<(DurableRow, DurableRow), String>) -> Vec<TableRow> {
        let mut rows = vec![
            TableRow {
                workload: Workload::SetOnly,
                server: DurableServer::KvGroup,
                medians: Ok(DurableRow {
                    get_p50_us: None,
                    get_p99_us: None,
                    ..row(3000.0, 0.0, 0.0)
                }),
            },
            TableRow {
                workload: Workload::Mix,
                server: DurableServer::KvGroup,
                medians: Ok(row(40000.0, 200.0, 800.0)),
            },
        ];
        match redis {
            Ok((set, mix)) => {
                rows.push(TableRow {
                    workload: Workload::SetOnly,
                    server: DurableServer::RedisAlways,
                    medians: Ok(set),
                });
                rows.push(TableRow {
                    workload: Workload::Mix,
                    server: DurableServer::RedisAlways,
                    medians: Ok(mix),
                });
            }
            Err(reason) => rows.push(TableRow {
                workload: Workload::SetOnly,
                server: DurableServer::RedisAlways,
                medians: Err(reason),
            }),
        }
        rows
    }

    #[test]
    fn the_verdicts_compare_with_redis_or_say_it_was_not_run() {
        // SET only 3000 against 2000 (met); mix 40000 against 12000 (3.33×, not met); GET p99
        // 800 µs against redis-server's GET p50 1000 µs (met).
        let rows = rows(Ok((
            DurableRow {
                get_p50_us: None,
                get_p99_us: None,
                records_per_fsync: None,
                ..row(2000.0, 0.0, 0.0)
            },
            DurableRow {
                records_per_fsync: None,
                ..row(12000.0, 1000.0, 5000.0)
            },
        )));
        let found = verdicts(&rows);
        let met: Vec<Option<bool>> = found.iter().map(|v| v.met).collect();
        assert_eq!(met, [Some(true), Some(false), Some(true)]);
        assert!(found[1].measured.contains("(3.33×)"), "{found:?}");
        let table = markdown(&rows, &found);
        assert!(
            table.contains(
                "| SET only | kv_server (group commit) | 3000 | 100 | 900 | — | — | 2000 | 12.40 | 10.00 | 1.50× |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| 90 % GET / 10 % SET | redis-server appendfsync always | 12000 |"),
            "{table}"
        );
        assert!(
            table.contains("| **no** |") && table.contains("| yes |"),
            "{table}"
        );

        let rows = rows_without_redis();
        let found = verdicts(&rows);
        assert!(found.iter().all(|v| v.met.is_none()), "{found:?}");
        let table = markdown(&rows, &found);
        assert!(table.contains("skipped: not installed"), "{table}");
        assert!(table.contains("| not measured |"), "{table}");
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["medians"]["throughput_rps"], 3000.0, "{json}");
        assert_eq!(json[2]["medians"]["skipped"], "not installed", "{json}");
    }

    fn rows_without_redis() -> Vec<TableRow> {
        rows(Err("not installed".to_owned()))
    }

    #[test]
    fn the_section_sits_between_its_own_markers_and_leaves_the_others_alone() {
        let probe = FsyncProbe {
            samples: 10,
            block_bytes: 4096,
            median_us: 500.0,
            p99_us: 2000.0,
            max_us: 3000.0,
            filesystem: "ext4 on /dev/vda".to_owned(),
        };
        let table = markdown(&rows_without_redis(), &[]);
        let end = FsyncProbe {
            median_us: 700.0,
            p99_us: 2500.0,
            ..probe.clone()
        };
        let section = section("Measured with `x`.", "2 CPUs", &[probe, end], &table);
        assert!(section.starts_with(DURABLE_START) && section.ends_with(DURABLE_END));
        assert!(
            section.contains("median 500 µs, p99 2000 µs")
                && section.contains("2000 syncs/s")
                && section.contains("median 700 µs, p99 2500 µs after them"),
            "{section}"
        );
        let kv = "<!-- bench:kv:start (written by `cargo xtask bench --kv`) -->\nkv\n<!-- bench:kv:end -->";
        let document = format!("# B\n\n{kv}\n\n{DURABLE_START}\nold\n{DURABLE_END}\n\nafter\n");
        let updated = crate::splice_between(&document, DURABLE_START, DURABLE_END, &section);
        assert_eq!(updated, format!("# B\n\n{kv}\n\n{section}\n\nafter\n"));
        // Without its markers yet, the section is appended and the kv markers are untouched.
        let appended = crate::splice_between(
            &format!("# B\n\n{kv}\n"),
            DURABLE_START,
            DURABLE_END,
            &section,
        );
        assert!(appended.starts_with(&format!("# B\n\n{kv}\n\n{DURABLE_START}")));
    }

    #[test]
    fn the_fdatasync_probe_times_each_append_on_a_temporary_file() {
        let dir = std::env::temp_dir().join(format!("xtask-fsync-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("probe");
        let probe = FsyncProbe::measure(&file, 5).unwrap();
        assert_eq!(probe.samples, 5);
        assert!(probe.median_us > 0.0, "{probe:?}");
        assert!(probe.median_us <= probe.p99_us && probe.p99_us <= probe.max_us);
        assert!(!file.exists(), "the probe removes its file");
        assert_ne!(probe.filesystem, "unknown file system", "{probe:?}");
        assert!(FsyncProbe::measure(&file, 0).is_err());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn quantiles_and_mounts_are_read_as_documented() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(quantile(&sorted, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
        let mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n/dev/vdb /work xfs rw 0 0\n";
        assert_eq!(
            mount_of(mounts, Path::new("/work/x/target/bench/durable")).as_deref(),
            Some("xfs on /dev/vdb")
        );
        assert_eq!(
            mount_of(mounts, Path::new("/workspace")).as_deref(),
            Some("ext4 on /dev/vda"),
            "a mount point holds a path by whole components"
        );
    }

    #[test]
    fn log_stats_are_read_from_the_stats_answer_or_the_missing_fields_named() {
        let line = "gets=0 sets=7 dels=0 scans=0 errors=0 keys=7 bytes=70 expired=0 \
                    log_records=7 log_bytes=300 fsyncs=2 records_per_fsync=3.50 checkpoints=0\n";
        assert_eq!(
            LogStats::parse(line),
            Ok(LogStats {
                log_records: 7,
                log_bytes: 300,
                fsyncs: 2,
                records_per_fsync: 3.5,
                checkpoints: 0
            })
        );
        let error = LogStats::parse("gets=0 sets=7 fsyncs=2\n").unwrap_err();
        assert!(
            error.contains("log_records, log_bytes, records_per_fsync, checkpoints"),
            "{error}"
        );
    }

    #[test]
    fn records_per_fsync_are_those_of_the_run_alone() {
        let stats = |log_records, fsyncs| LogStats {
            log_records,
            log_bytes: 0,
            fsyncs,
            records_per_fsync: 0.0,
            checkpoints: 0,
        };
        let window = LogWindow::between(stats(1024, 64), stats(1024 + 900, 64 + 300));
        assert_eq!((window.records, window.fsyncs), (900, 300));
        assert_eq!(window.records_per_fsync, 3.0);
        assert_eq!(
            LogWindow::between(stats(5, 1), stats(5, 1)).records_per_fsync,
            0.0
        );
    }

    #[test]
    fn a_kv_server_without_the_durability_flags_is_refused_clearly() {
        let error = check_durable_flags("Usage: kv_server [OPTIONS] [PORT]\n  --workers <N>\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("not the durable one") && error.contains("--data-dir and --fsync"),
            "{error}"
        );
        check_durable_flags("--data-dir <DIR>\n--fsync <MODE>\n").unwrap();
    }

    #[test]
    fn a_server_that_exits_at_start_is_reported_with_what_it_said() {
        let log = std::env::temp_dir().join(format!("xtask-exits-{}.stderr", std::process::id()));
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo \"error: unexpected argument '--data-dir' found\" >&2; exit 2",
        ]);
        let error = start_and_wait_logged(command, free_port().unwrap(), "kv_server", Some(&log))
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&log).unwrap();
        assert_eq!(
            error,
            "kv_server exited at start: error: unexpected argument '--data-dir' found"
        );
    }

    #[test]
    fn the_servers_get_the_flags_of_the_comparison() {
        let dir = data_root(Path::new("/t/bench")).join("r1-set-kv-group");
        assert_eq!(
            kv_args(DurableServer::KvGroup, &dir, 2).join(" "),
            "--data-dir /t/bench/durable/r1-set-kv-group --workers 2"
        );
        assert_eq!(
            kv_args(DurableServer::KvPerRecord, &dir, 2).join(" "),
            "--data-dir /t/bench/durable/r1-set-kv-group --workers 2 --fsync per-record"
        );
        let redis = redis_args(7000, Path::new("/d3"));
        let pairs: Vec<(&str, &str)> = redis
            .chunks(2)
            .map(|pair| (pair[0].as_str(), pair[1].as_str()))
            .collect();
        for expected in [
            ("--appendonly", "yes"),
            ("--appendfsync", "always"),
            ("--dir", "/d3"),
            ("--save", ""),
            ("--port", "7000"),
        ] {
            assert!(pairs.contains(&expected), "{expected:?} in {redis:?}");
        }
    }
}
