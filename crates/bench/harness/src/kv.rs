//! `cargo xtask bench --kv`: the W09 `kv_server` against a real `redis-server`.
//!
//! Both servers get the same load from the same load generator: `loadgen --mix kv` (90 % `GET`
//! of 1024 preloaded shared keys, 10 % `SET` of each connection's own keys, 32-byte values,
//! every answer checked byte for byte), 50 connections, at depth 1 and at depth 16. The request
//! lines are the same bytes for both: redis-server reads them as inline commands, and loadgen
//! expects its RESP answers (`--replies redis`) instead of the KV protocol's.
//!
//! redis-server comes from the Debian package `redis-server`. When it is not on `PATH` and the
//! benchmark runs as root, it is installed (`apt-get update`, then `apt-get install -y
//! redis-server`); otherwise, or when that fails, its side of the table says skipped and why.
//! It runs without a configuration file, so with redis-server's built-in defaults (one thread
//! runs every command), apart from what a benchmark needs: no persistence (`--save ''`,
//! `--appendonly no`), 127.0.0.1 only.
//!
//! Each server is started fresh for every run; within a round the order of the servers rotates
//! so slow drift of the shared machine lands on both alike. Besides the medians, the command
//! gives kv_server's verdicts against its targets ([`TARGETS`]) and where each server's CPU went,
//! thread by thread, with what bounded the run (the `threads` module): a missed target names its
//! bound. The results go into `BENCHMARKS.md` between markers of their own, the chart into
//! `target/bench/kv.svg` and every run into `target/bench/kv.json`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use std::fmt::Write as _;

use super::chart::Series;
use super::report::{LoadgenSummary, median};
use super::server::RunningServer;
use super::threads::{self, Bound, GroupProfile, RunCpu, ThreadGroup, ThreadTimes};
use super::{BenchArgs, LoadRunner, Machine};
use plotters::style::RGBColor;

/// The markers around the KV part of `BENCHMARKS.md`.
const KV_START: &str = "<!-- bench:kv:start (written by `cargo xtask bench --kv`) -->";
const KV_END: &str = "<!-- bench:kv:end -->";
/// Connections of every KV run.
const CONNECTIONS: usize = 50;
/// The pipelining depths compared: those of [`TARGETS`].
const DEPTHS: [usize; 2] = [TARGETS[0].0, TARGETS[1].0];
/// How long a server may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The two servers of the KV benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum KvServer {
    /// The course's `kv_server`.
    Kv,
    /// `redis-server`.
    Redis,
}

impl KvServer {
    fn name(self) -> &'static str {
        match self {
            KvServer::Kv => "kv_server",
            KvServer::Redis => "redis-server",
        }
    }
}

/// kv_server's targets against redis-server: each pipelining depth measured, with the
/// throughput ratio to reach there.
const TARGETS: [(usize, f64); 2] = [(1, 1.0), (16, 1.5)];

/// One measured run.
#[derive(Debug, serde::Serialize)]
struct KvRun {
    round: usize,
    depth: usize,
    server: KvServer,
    load: LoadgenSummary,
    server_cpu_s: f64,
    /// The server's CPU time thread group by thread group.
    threads: Vec<ThreadGroup>,
    /// Wall time of the run, the window of the CPU readings, seconds.
    wall_s: f64,
}

/// The medians of one server at one depth.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct KvRow {
    throughput_rps: f64,
    p50_us: f64,
    p99_us: f64,
    server_cpu_us_per_request: f64,
    /// Where the server's CPU went, thread group by thread group.
    threads: Vec<GroupProfile>,
    /// CPUs' worth the server and the load generator kept busy together.
    cpus_busy: f64,
    /// What bounded the server's throughput; `None` without runs.
    bound: Option<Bound>,
}

/// Builds `loadgen` and `kv_server` in release mode: the load generator, run with
/// `--loadgen-threads`, and the server's path. Both KV benchmarks (`--kv`, `--kv --durable`)
/// start from them.
pub(crate) fn build_kv_tools(
    args: &BenchArgs,
    root: &Path,
) -> anyhow::Result<(LoadRunner, PathBuf)> {
    let executables = super::build_packages(root, &["loadgen", "kv_server"])?;
    let loadgen = LoadRunner {
        path: executables
            .get("loadgen")
            .context("the build produced no loadgen")?
            .clone(),
        threads: args.loadgen_threads,
    };
    let kv_server = executables
        .get("kv_server")
        .context("the build produced no kv_server")?
        .clone();
    Ok((loadgen, kv_server))
}

/// Runs the KV benchmark.
pub(crate) fn run(args: &BenchArgs, root: &Path, out_dir: &Path) -> anyhow::Result<ExitCode> {
    let mut machine = Machine::read();
    eprintln!("bench --kv: {machine}");
    let (loadgen, kv_server) = build_kv_tools(args, root)?;
    let redis = find_or_install_redis();
    let mut servers = vec![KvServer::Kv];
    match &redis {
        Ok(path) => {
            eprintln!("bench --kv: redis-server is {}", path.display());
            servers.push(KvServer::Redis);
        }
        Err(reason) => eprintln!("bench --kv: redis-server skipped: {reason}"),
    }
    let redis_version = redis.as_ref().ok().map(|path| version_of(path));

    let total = args.rounds * DEPTHS.len() * servers.len();
    let mut runs = Vec::with_capacity(total);
    for round in 1..=args.rounds {
        for (index, &depth) in DEPTHS.iter().enumerate() {
            for offset in 0..servers.len() {
                let server = servers[(round + index + offset) % servers.len()];
                let mut running = match server {
                    KvServer::Kv => start_kv_server(&kv_server, args.workers)?,
                    KvServer::Redis => start_redis(redis.as_ref().expect("listed only if found"))?,
                };
                let cpu_before = super::server::cpu_time(running.pid())?;
                let threads_before = ThreadTimes::of(running.pid())?;
                let started = Instant::now();
                let replies = match server {
                    KvServer::Kv => "text",
                    KvServer::Redis => "redis",
                };
                let load = loadgen
                    .run_with(
                        &running,
                        CONNECTIONS,
                        depth,
                        &["--mix", "kv", "--replies", replies],
                        args.duration,
                    )
                    .with_context(|| format!("depth {depth} against {}", server.name()))?;
                let wall_s = started.elapsed().as_secs_f64();
                let threads_after = ThreadTimes::of(running.pid())?;
                let cpu_after = super::server::cpu_time(running.pid())?;
                anyhow::ensure!(
                    running.is_running(),
                    "{} died during the run",
                    server.name()
                );
                eprintln!(
                    "bench --kv: [{:>2}/{total}] round {round} c={CONNECTIONS} d={depth:<2} {:<12} {:>10.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs",
                    runs.len() + 1,
                    server.name(),
                    load.throughput_rps,
                    load.latency.p50_us,
                    load.latency.p99_us,
                );
                runs.push(KvRun {
                    round,
                    depth,
                    server,
                    load,
                    server_cpu_s: cpu_after.saturating_sub(cpu_before).as_secs_f64(),
                    threads: threads_after.since(&threads_before),
                    wall_s,
                });
            }
        }
    }
    machine.load_average_end = super::load_average();

    let rows: Vec<(usize, KvRow, Option<KvRow>)> = DEPTHS
        .iter()
        .map(|&depth| {
            (
                depth,
                medians(&runs, depth, KvServer::Kv, machine.cpus),
                (servers.contains(&KvServer::Redis))
                    .then(|| medians(&runs, depth, KvServer::Redis, machine.cpus)),
            )
        })
        .collect();
    let table = markdown(&rows, redis.as_ref().err());
    println!("{table}");

    let command = super::command_line();
    let json = serde_json::json!({
        "command": command,
        "machine": machine,
        "workers": args.workers,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": CONNECTIONS,
        "redis_version": redis_version,
        "redis_skipped": redis.as_ref().err(),
        "runs": runs,
    });
    let json_path = out_dir.join("kv.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let chart_path = out_dir.join("kv.svg");
    let groups: Vec<String> = DEPTHS.iter().map(|d| format!("depth {d}")).collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let mut series = vec![Series {
        name: KvServer::Kv.name(),
        colour: RGBColor(0x2b, 0x6c, 0xb0),
        values: rows
            .iter()
            .map(|(_, kv, _)| Some(kv.throughput_rps))
            .collect(),
    }];
    if servers.contains(&KvServer::Redis) {
        series.push(Series {
            name: KvServer::Redis.name(),
            colour: RGBColor(0xc0, 0x39, 0x2b),
            values: rows
                .iter()
                .map(|(_, _, redis)| redis.as_ref().map(|r| r.throughput_rps))
                .collect(),
        });
    }
    super::chart::draw_groups(
        &chart_path,
        "kv_server and redis-server: median throughput (req/s, log scale)",
        &groups,
        &series,
    )?;
    eprintln!(
        "bench --kv: wrote {} and {}",
        json_path.display(),
        chart_path.display()
    );

    if !args.no_markdown {
        let section = format!(
            "{KV_START}\n\
             Measured with `{command}` ({} rounds of {} s per server and depth, kv_server with \
             `--workers {}`, redis-server {} with its built-in defaults; loadgen with {} thread(s), \
             `--mix kv`, {CONNECTIONS} connections; medians over the rounds).\n\n\
             Machine: {machine}.\n\n\
             {table}\n\
             The command also draws the table as a chart, `target/bench/kv.svg`, and keeps \
             every run in `target/bench/kv.json` (both build output, not in the repository).\n\
             {KV_END}",
            args.rounds,
            args.duration,
            args.workers,
            redis_version.as_deref().unwrap_or("(skipped)"),
            args.loadgen_threads,
        );
        let path = root.join("BENCHMARKS.md");
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(
            &path,
            super::splice_between(&existing, KV_START, KV_END, &section),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench --kv: refreshed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The medians of `server`'s runs at `depth`, on a machine of `cpus`.
fn medians(runs: &[KvRun], depth: usize, server: KvServer, cpus: usize) -> KvRow {
    let mine: Vec<&KvRun> = runs
        .iter()
        .filter(|run| run.depth == depth && run.server == server)
        .collect();
    let of = |value: &dyn Fn(&KvRun) -> f64| median(mine.iter().map(|run| value(run)).collect());
    let cpu: Vec<RunCpu<'_>> = mine
        .iter()
        .map(|run| run.load.run_cpu(&run.threads, run.server_cpu_s, run.wall_s))
        .collect();
    let (threads, cpus_busy) = threads::profile(&cpu);
    let bound = (!mine.is_empty()).then(|| Bound::of(&threads, cpus_busy, cpus));
    KvRow {
        threads,
        cpus_busy,
        bound,
        throughput_rps: of(&|run| run.load.throughput_rps),
        p50_us: of(&|run| run.load.latency.p50_us),
        p99_us: of(&|run| run.load.latency.p99_us),
        server_cpu_us_per_request: of(&|run| {
            run.server_cpu_s * 1e6 / run.load.completed.max(1) as f64
        }),
    }
}

/// The results table, with the ratio of kv_server's throughput to redis-server's.
fn markdown(rows: &[(usize, KvRow, Option<KvRow>)], skipped: Option<&String>) -> String {
    let mut table = String::from(
        "| depth | server | req/s | p50 µs | p99 µs | server CPU µs/req | kv_server / redis-server |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (depth, kv, redis) in rows {
        let ratio = redis
            .as_ref()
            .filter(|redis| redis.throughput_rps > 0.0)
            .map_or_else(
                || "—".to_owned(),
                |redis| format!("{:.2}", kv.throughput_rps / redis.throughput_rps),
            );
        table.push_str(&row_line(*depth, "kv_server", kv, &ratio));
        match redis {
            Some(redis) => table.push_str(&row_line(*depth, "redis-server", redis, "")),
            None => table.push_str(&format!(
                "| {depth} | redis-server | skipped: {} | | | | |\n",
                skipped.map_or("not run", String::as_str)
            )),
        }
    }
    table.push_str(
        "\n| depth | target (kv_server / redis-server) | measured | met |\n|---|---|---|---|\n",
    );
    for (depth, kv, redis) in rows {
        let Some(&(_, target)) = TARGETS.iter().find(|(d, _)| d == depth) else {
            continue;
        };
        let (measured, met) = match redis.as_ref().filter(|redis| redis.throughput_rps > 0.0) {
            Some(redis) => {
                let ratio = kv.throughput_rps / redis.throughput_rps;
                let mut measured = format!(
                    "{ratio:.2}× (server CPU per request {:.2}×)",
                    kv.server_cpu_us_per_request
                        / redis.server_cpu_us_per_request.max(f64::EPSILON)
                );
                if let (false, Some(bound)) = (ratio >= target, &kv.bound) {
                    let _ = write!(measured, "; bound by {bound}");
                }
                (measured, if ratio >= target { "yes" } else { "**no**" })
            }
            None => ("redis-server not run".to_owned(), "–"),
        };
        let _ = writeln!(table, "| {depth} | ≥ {target:.1}× | {measured} | {met} |");
    }
    table.push_str(
        "\nWhere each server's CPU went (medians; per thread group, its CPU time per request, \
         the share of it in the kernel, and its busiest thread's CPU time as a share of the run; \
         what bounded the run, as in `cargo xtask bench`):\n\n\
         | depth | server | threads | CPUs busy | bound by |\n|---|---|---|---:|---|\n",
    );
    for (depth, kv, redis) in rows {
        let servers =
            std::iter::once(("kv_server", kv)).chain(redis.iter().map(|r| ("redis-server", r)));
        for (name, row) in servers {
            let _ = writeln!(
                table,
                "| {depth} | {name} | {} | {:.2} | {} |",
                threads::cell(&row.threads),
                row.cpus_busy,
                row.bound
                    .as_ref()
                    .map_or_else(|| "–".to_owned(), ToString::to_string)
            );
        }
    }
    table
}

fn row_line(depth: usize, name: &str, row: &KvRow, ratio: &str) -> String {
    format!(
        "| {depth} | {name} | {:.0} | {:.0} | {:.0} | {:.2} | {ratio} |\n",
        row.throughput_rps, row.p50_us, row.p99_us, row.server_cpu_us_per_request
    )
}

/// Starts `kv_server` on a free port.
fn start_kv_server(path: &Path, workers: usize) -> anyhow::Result<RunningServer> {
    let addr = free_port()?;
    let mut command = Command::new(path);
    command
        .arg(addr.port().to_string())
        .args(["--workers", &workers.to_string()]);
    start_and_wait(command, addr, "kv_server")
}

/// Starts `redis-server` on a free port, without persistence.
fn start_redis(path: &Path) -> anyhow::Result<RunningServer> {
    let addr = free_port()?;
    let mut command = Command::new(path);
    command
        .args(["--port", &addr.port().to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"]);
    start_and_wait(command, addr, "redis-server")
}

/// A port nobody listens on now. Another process could take it before the server binds it;
/// the server then fails to start and the benchmark says so.
pub(super) fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// Spawns `command` in a group of its own and waits until it accepts connections on `addr`.
fn start_and_wait(command: Command, addr: SocketAddr, name: &str) -> anyhow::Result<RunningServer> {
    start_and_wait_logged(command, addr, name, None)
}

/// [`start_and_wait`], with the server's stderr going to `stderr_log` (else nowhere); a server
/// that exits at start is then reported with the end of what it wrote there, its reason.
pub(super) fn start_and_wait_logged(
    mut command: Command,
    addr: SocketAddr,
    name: &str,
    stderr_log: Option<&Path>,
) -> anyhow::Result<RunningServer> {
    let stderr = match stderr_log {
        Some(path) => Stdio::from(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Stdio::null(),
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    xtask::process::configure(&mut command, None);
    let child = xtask::process::spawn(&mut command).with_context(|| format!("starting {name}"))?;
    let mut server = RunningServer::new(child, addr);
    let deadline = Instant::now() + START_TIMEOUT;
    // Bounded by the deadline; the server's death ends it at once.
    loop {
        if !server.is_running() {
            let said = stderr_log
                .and_then(|path| std::fs::read_to_string(path).ok())
                .map(|text| last_lines(&text, 3))
                .filter(|text| !text.is_empty());
            match said {
                Some(said) => anyhow::bail!("{name} exited at start: {said}"),
                None => anyhow::bail!("{name} exited at start"),
            }
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(server);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} did not accept connections on {addr} within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-server` on `PATH`, installed from Debian's package when missing and allowed; `Err`
/// says why the comparison is skipped.
pub(super) fn find_or_install_redis() -> Result<PathBuf, String> {
    if let Some(path) = on_path("redis-server") {
        return Ok(path);
    }
    if !is_root() {
        return Err("redis-server is not installed and installing it needs root (apt-get install redis-server)".to_owned());
    }
    eprintln!(
        "bench --kv: redis-server missing: apt-get update && apt-get install -y --no-install-recommends redis-server"
    );
    for args in [
        &["update"][..],
        &["install", "-y", "--no-install-recommends", "redis-server"][..],
    ] {
        let mut command = Command::new("apt-get");
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match xtask::process::output(&mut command) {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(format!(
                    "apt-get {} failed: {}",
                    args.join(" "),
                    stderr.lines().last().unwrap_or("").trim()
                ));
            }
            Err(error) => return Err(format!("cannot run apt-get: {error}")),
        }
    }
    on_path("redis-server").ok_or_else(|| "apt-get installed no redis-server".to_owned())
}

/// The last `n` non-empty lines of `text`, joined by ` / `.
pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// Whether this process runs as root (the real uid in `/proc/self/status`).
fn is_root() -> bool {
    test_support::procfs::Proc::this()
        .try_read("status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// `redis-server --version`'s `v=` field, for the report.
pub(super) fn version_of(path: &Path) -> String {
    Command::new(path)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .find_map(|word| word.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_else(|| "(unknown version)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_the_ratio_or_says_why_redis_was_skipped() {
        let kv = KvRow {
            throughput_rps: 300.0,
            ..KvRow::default()
        };
        let redis = KvRow {
            throughput_rps: 200.0,
            ..KvRow::default()
        };
        let table = markdown(&[(16, kv.clone(), Some(redis.clone()))], None);
        assert!(table.contains("| 16 | kv_server | 300 |"), "{table}");
        assert!(table.contains("| 1.50 |"), "{table}");
        assert!(table.contains("| 16 | ≥ 1.5× | 1.50× "), "{table}");
        assert!(table.contains("| yes |"), "{table}");
        let reason = "not installed".to_owned();
        let table = markdown(&[(1, kv.clone(), None)], Some(&reason));
        assert!(table.contains("skipped: not installed"), "{table}");
        assert!(
            table.contains("| 1 | ≥ 1.0× | redis-server not run | – |"),
            "{table}"
        );
    }

    #[test]
    fn a_missed_target_says_what_bounded_kv_server() {
        let kv = KvRow {
            throughput_rps: 95.0,
            server_cpu_us_per_request: 7.5,
            bound: Some(Bound::Cpus {
                busy: 1.9,
                cpus: 2,
                busiest: None,
            }),
            ..KvRow::default()
        };
        let redis = KvRow {
            throughput_rps: 100.0,
            server_cpu_us_per_request: 7.0,
            ..KvRow::default()
        };
        let table = markdown(&[(1, kv, Some(redis))], None);
        assert!(
            table.contains(
                "| 1 | ≥ 1.0× | 0.95× (server CPU per request 1.07×); bound by the machine's 2 CPUs, \
                 1.90 of them busy with the server and the load generator | **no** |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| 1 | kv_server | – | 0.00 | the machine's 2 CPUs"),
            "{table}"
        );
    }

    #[test]
    fn medians_profile_the_runs_of_one_server_at_one_depth() {
        let load = |completed: u64| LoadgenSummary {
            completed,
            mismatches: 0,
            connection_errors: 0,
            elapsed_s: 1.0,
            throughput_rps: completed as f64,
            latency: super::super::report::LoadgenLatency {
                p50_us: 1.0,
                p99_us: 2.0,
                p999_us: 3.0,
                max_us: 4.0,
            },
            first_error: None,
            loadgen_cpu_us_per_request: 5.0,
            by_verb: Default::default(),
        };
        let loop_thread = ThreadGroup {
            name: "kv_server".to_owned(),
            threads: 1,
            user_s: 0.1,
            system_s: 0.85,
            busiest_s: 0.95,
        };
        let runs = [
            KvRun {
                round: 1,
                depth: 1,
                server: KvServer::Kv,
                load: load(100_000),
                server_cpu_s: 0.95,
                threads: vec![loop_thread.clone()],
                wall_s: 1.0,
            },
            KvRun {
                round: 1,
                depth: 16,
                server: KvServer::Kv,
                load: load(1_000_000),
                server_cpu_s: 0.5,
                threads: vec![ThreadGroup {
                    busiest_s: 0.5,
                    ..loop_thread
                }],
                wall_s: 1.0,
            },
        ];
        let row = medians(&runs, 1, KvServer::Kv, 2);
        assert_eq!(row.throughput_rps, 100_000.0);
        assert!((row.cpus_busy - 1.45).abs() < 1e-9, "{row:?}");
        assert!(
            matches!(&row.bound, Some(Bound::Thread { name, .. }) if name == "kv_server"),
            "{row:?}"
        );
        assert!(medians(&runs, 1, KvServer::Redis, 2).bound.is_none());
    }
}
