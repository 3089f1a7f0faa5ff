//! `cargo xtask soak`: `handoff_server` under hours-in-minutes of mixed traffic with syscall
//! faults injected, watched for growth.
//!
//! The server and the load generator are built in release mode with `--cfg fault_injection`
//! (in `target/fault`, the folder CI's fault step uses). The server runs with
//! `EVENTLOOP_FAULT_SEED` set and the faults a correct server hides from its clients (`EINTR`,
//! `EAGAIN`, short counts; `eventloop::sys`'s `fault` module has the rules), so every answer must
//! still be exact. The run is split over `--seeds` seeds, the server restarted for each. Each
//! round of about 20 s (21 s in the 10-minute run RELIABILITY.md reports) runs, at once:
//!
//! - the load generator's mixed workload (90 % `compute`, 10 % `sleep 1`, pipelined), which
//!   checks every byte of every answer;
//! - a flood: 200 more connections at pipeline depth 16 for the first 5 s of the round;
//! - clients that vanish mid-pipeline: each sends 32 requests, reads a few answers (checked) and
//!   closes with the rest unread;
//! - slow readers: each pipelines 1,000 requests and reads the answers one line at a time with a
//!   pause, checking each, in order.
//!
//! The server's RSS, open fds and CPU time are sampled every 2 s (printed, written to
//! `target/xtask/soak.csv` and plotted in `target/xtask/soak.svg`). After each round the server must be back at its idle fd count and
//! use almost no CPU over a second; at the end its RSS must not have grown past the second
//! round's by more than a quarter plus 8 MiB, and it must exit 0 on SIGTERM. Any wrong byte,
//! connection error, leaked fd, busy idle loop or growth fails the command.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use handoff_protocol::{Verb, execute};
use test_support::procfs::Proc;

use crate::process;

/// The arguments of `cargo xtask soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long the whole soak runs, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// How many fault seeds the run is split over (the server is restarted for each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// The first seed; the others follow it.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// The probability that one eligible system call of the server is faulted (0 to 0.5).
    #[arg(long, default_value_t = 0.05)]
    rate: f64,
}

/// How long one round of traffic lasts (the load generator's `--duration`).
const ROUND_LOAD: Duration = Duration::from_secs(20);
/// How often the server is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// One sample of the server process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    seed: u64,
    rss_kib: u64,
    fds: usize,
    cpu: Duration,
    answers: u64,
}

/// Answers checked so far, over every kind of client.
static ANSWERS: AtomicU64 = AtomicU64::new(0);

// The server's facts, through the workspace's one `/proc` reader. A server that is gone reads
// as nothing open, no memory and no CPU: the sample after it shows the exit.
fn proc_fds(pid: u32) -> usize {
    Proc::of(pid).try_fd_count().unwrap_or(0)
}

fn proc_rss_kib(pid: u32) -> u64 {
    Proc::of(pid).try_rss_kib().unwrap_or(0)
}

fn proc_cpu(pid: u32) -> Duration {
    Proc::of(pid)
        .try_cpu_ticks()
        .map_or(Duration::ZERO, |ticks| {
            Duration::from_millis(ticks * 1000 / crate::sys::clock_ticks_per_second())
        })
}

/// The answer line the protocol gives `compute <text>`.
fn compute_answer(text: &str) -> Vec<u8> {
    execute(Verb::Compute, text.as_bytes()).to_bytes()
}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr).context("connecting to the server")?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    Ok(stream)
}

/// Clients that vanish mid-pipeline, until `stop`: each answer read is checked.
fn vanishing_clients(addr: SocketAddr, stop: &AtomicBool) -> anyhow::Result<u64> {
    let mut clients = 0;
    while !stop.load(Ordering::Relaxed) {
        let stream = connect(addr)?;
        let texts: Vec<String> = (0..32).map(|i| format!("vanish-{clients}-{i}")).collect();
        let pipeline: String = texts
            .iter()
            .map(|text| format!("compute {text}\n"))
            .collect();
        (&stream).write_all(pipeline.as_bytes())?;
        let mut reader = BufReader::new(&stream);
        for text in texts.iter().take((clients % 8) as usize) {
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line)?;
            ensure!(
                line == compute_answer(text),
                "a vanishing client got {:?} for `compute {text}`",
                String::from_utf8_lossy(&line)
            );
            ANSWERS.fetch_add(1, Ordering::Relaxed);
        }
        // Closed with answers unread and possibly requests unread: the server must cope.
        drop(reader);
        drop(stream);
        clients += 1;
    }
    Ok(clients)
}

/// One slow reader: 1,000 pipelined requests, answers read a line at a time with a pause.
fn slow_reader(addr: SocketAddr, id: usize) -> anyhow::Result<()> {
    let stream = connect(addr)?;
    let texts: Vec<String> = (0..1000).map(|i| format!("slow-{id}-{i}")).collect();
    let pipeline: String = texts
        .iter()
        .map(|text| format!("compute {text}\n"))
        .collect();
    let writer = stream.try_clone()?;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let sending = scope.spawn(move || (&writer).write_all(pipeline.as_bytes()));
        let mut reader = BufReader::with_capacity(64, &stream);
        for (index, text) in texts.iter().enumerate() {
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line)?;
            ensure!(
                line == compute_answer(text),
                "slow reader {id}: answer {index} is {:?}, not that of `compute {text}`",
                String::from_utf8_lossy(&line)
            );
            ANSWERS.fetch_add(1, Ordering::Relaxed);
            if index % 16 == 0 {
                // The point of a slow reader: the server's output must wait for it.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        sending
            .join()
            .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
        Ok(())
    })
}

/// Runs the load generator; returns the answers it checked.
fn loadgen(bin: &Path, addr: SocketAddr, args: &[&str]) -> anyhow::Result<u64> {
    let output = Command::new(bin)
        .args(["--addr", &addr.to_string(), "--json", "--quiet"])
        .args(args)
        .env_remove("EVENTLOOP_FAULT_SEED")
        .stderr(Stdio::inherit())
        .output()
        .context("running loadgen")?;
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "loadgen's summary: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let field = |name: &str| summary[name].as_u64().unwrap_or(u64::MAX);
    ensure!(
        output.status.success() && field("mismatches") == 0 && field("connection_errors") == 0,
        "loadgen {args:?} failed: {summary}"
    );
    let completed = field("completed");
    ANSWERS.fetch_add(completed, Ordering::Relaxed);
    Ok(completed)
}

/// The started server: the child and the address from its `listening on` line.
fn start_server(bin: &Path, seed: u64, rate: f64) -> anyhow::Result<(Child, SocketAddr)> {
    let mut command = Command::new(bin);
    command
        .args(["0", "--workers", "2"])
        .env("EVENTLOOP_FAULT_SEED", seed.to_string())
        .env("EVENTLOOP_FAULT_RATE", rate.to_string())
        .env("EVENTLOOP_FAULT_CLASSES", "eintr,eagain,short")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    process::configure(&mut command, None);
    let mut child = process::spawn(&mut command).context("starting handoff_server")?;
    // The rest of stdout is dropped: the server writes nothing more there.
    let (addr, _) = test_support::read_listening_line(&mut child, Duration::from_secs(30))
        .map_err(anyhow::Error::msg)
        .context("starting handoff_server")?;
    Ok((child, addr))
}

/// Runs one seed's share of the soak; appends its samples.
fn soak_seed(
    bins: &Bins,
    args: &SoakArgs,
    seed: u64,
    until: Instant,
    started: Instant,
    samples: &mut Vec<Sample>,
) -> anyhow::Result<()> {
    let (mut child, addr) = start_server(&bins.server, seed, args.rate)?;
    let pid = child.id();
    let result = (|| -> anyhow::Result<()> {
        let sample = |samples: &mut Vec<Sample>| {
            let sample = Sample {
                at: started.elapsed(),
                seed,
                rss_kib: proc_rss_kib(pid),
                fds: proc_fds(pid),
                cpu: proc_cpu(pid),
                answers: ANSWERS.load(Ordering::Relaxed),
            };
            println!(
                "{:>6.0} s  seed {:>3}  rss {:>7} KiB  fds {:>4}  cpu {:>7.1} s  answers {:>11}",
                sample.at.as_secs_f64(),
                sample.seed,
                sample.rss_kib,
                sample.fds,
                sample.cpu.as_secs_f64(),
                sample.answers
            );
            samples.push(sample);
        };
        // The idle baseline: a moment after start, before any client.
        std::thread::sleep(Duration::from_millis(500));
        let idle_fds = proc_fds(pid);
        let mut round = 0;
        while Instant::now() + ROUND_LOAD < until && !process::interrupted() {
            round += 1;
            let stop = AtomicBool::new(false);
            std::thread::scope(|scope| -> anyhow::Result<()> {
                let mixed = scope.spawn(|| {
                    let seconds = ROUND_LOAD.as_secs().to_string();
                    loadgen(
                        &bins.loadgen,
                        addr,
                        &[
                            "--mix",
                            "mixed",
                            "-c",
                            "16",
                            "-d",
                            "8",
                            "--duration",
                            &seconds,
                        ],
                    )
                });
                let flood = scope.spawn(|| {
                    loadgen(
                        &bins.loadgen,
                        addr,
                        &[
                            "--mix",
                            "compute64",
                            "-c",
                            "200",
                            "-d",
                            "16",
                            "--duration",
                            "5",
                        ],
                    )
                });
                let vanishing = scope.spawn(|| vanishing_clients(addr, &stop));
                let slow: Vec<_> = (0..4)
                    .map(|id| scope.spawn(move || slow_reader(addr, round * 10 + id)))
                    .collect();
                let load_until = Instant::now() + ROUND_LOAD;
                while Instant::now() < load_until {
                    sample(samples);
                    std::thread::sleep(SAMPLE_EVERY);
                }
                let join = |name: &str| anyhow::anyhow!("the {name} thread panicked");
                let mixed = mixed.join().map_err(|_| join("loadgen"));
                let flood = flood.join().map_err(|_| join("flood"));
                stop.store(true, Ordering::Relaxed);
                let vanishing = vanishing.join().map_err(|_| join("vanishing-client"));
                mixed??;
                flood??;
                vanishing??;
                for reader in slow {
                    reader.join().map_err(|_| join("slow-reader"))??;
                }
                Ok(())
            })?;
            // Idle again: every connection closed, every fd back, the loop asleep.
            let deadline = Instant::now() + Duration::from_secs(10);
            while proc_fds(pid) > idle_fds && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let fds = proc_fds(pid);
            ensure!(
                fds <= idle_fds,
                "round {round}: {fds} fds open at idle, {idle_fds} at start"
            );
            let cpu_before = proc_cpu(pid);
            let window = Instant::now();
            // The measurement window itself, not a synchronisation.
            std::thread::sleep(Duration::from_secs(1));
            let used = proc_cpu(pid).saturating_sub(cpu_before);
            ensure!(
                used < window.elapsed() / 10,
                "round {round}: the idle server used {used:?} of CPU in a second"
            );
            sample(samples);
        }
        Ok(())
    })();
    let status = process::stop_group(&mut child);
    result?;
    ensure!(
        status.is_some_and(|status| status.success()),
        "seed {seed}: the server did not exit 0 on SIGTERM: {status:?}"
    );
    Ok(())
}

/// The release binaries built with the cfg.
#[derive(Debug)]
struct Bins {
    server: PathBuf,
    loadgen: PathBuf,
}

fn build(root: &Path) -> anyhow::Result<Bins> {
    let target = root.join("target/fault");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--release",
            "-p",
            "handoff_server",
            "-p",
            "loadgen",
        ])
        .env("RUSTFLAGS", "--cfg fault_injection")
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    ensure!(
        status.success(),
        "building the fault-injected binaries failed"
    );
    Ok(Bins {
        server: target.join("release/handoff_server"),
        loadgen: target.join("release/loadgen"),
    })
}

/// Runs the soak; its verdict is the exit status.
pub fn run(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    ensure!(args.minutes > 0.0, "--minutes must be positive");
    let root = crate::workspace_root();
    let bins = build(&root)?;
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    println!(
        "soak: {:.1} min over {} seed(s) from {}, fault rate {} (eintr, eagain, short)",
        args.minutes, args.seeds, args.first_seed, args.rate
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut outcome = Ok(());
    for index in 0..args.seeds {
        let seed = args.first_seed + index;
        let until = started + total.mul_f64((index + 1) as f64 / args.seeds as f64);
        outcome = soak_seed(&bins, args, seed, until, started, &mut samples)
            .with_context(|| format!("seed {seed} (EVENTLOOP_FAULT_SEED={seed})"));
        if outcome.is_err() {
            break;
        }
    }
    let csv_path = root.join("target/xtask/soak.csv");
    std::fs::create_dir_all(root.join("target/xtask"))?;
    let mut csv = String::from("seconds,seed,rss_kib,fds,cpu_seconds,answers\n");
    for sample in &samples {
        csv.push_str(&format!(
            "{:.0},{},{},{},{:.1},{}\n",
            sample.at.as_secs_f64(),
            sample.seed,
            sample.rss_kib,
            sample.fds,
            sample.cpu.as_secs_f64(),
            sample.answers
        ));
    }
    std::fs::write(&csv_path, csv)?;
    let svg_path = root.join("target/xtask/soak.svg");
    plot(&svg_path, &samples)?;
    println!(
        "samples: {} (plotted in {})",
        csv_path.display(),
        svg_path.display()
    );
    outcome?;
    check_growth(&samples)?;
    let last = samples.last().context("no sample was taken")?;
    println!(
        "soak passed: {} answers checked, RSS {} KiB at the end (max {} KiB), CPU {:.1} s, \
         no wrong byte, no leaked fd, no growth",
        ANSWERS.load(Ordering::Relaxed),
        last.rss_kib,
        samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        last.cpu.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// One panel of the plot: its title, its points (seconds, value) and its colour (`#rrggbb`).
type Panel = (&'static str, Vec<(f64, f64)>, &'static str);

/// Plots RSS (MiB), open fds and CPU use (% of one core over each interval) against time, one
/// panel each, into an SVG file at `path`.
///
/// The SVG is written by hand: three framed line charts need a few dozen lines of markup, and
/// the runner stays free of a chart library (the benchmark harness, a package of its own, has
/// one).
fn plot(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let end = samples.last().map_or(1.0, |s| s.at.as_secs_f64()).max(1.0);
    let cpu: Vec<(f64, f64)> = samples
        .windows(2)
        .filter(|pair| pair[0].seed == pair[1].seed && pair[1].at > pair[0].at)
        .map(|pair| {
            let used = pair[1].cpu.saturating_sub(pair[0].cpu).as_secs_f64();
            let wall = (pair[1].at - pair[0].at).as_secs_f64();
            (pair[1].at.as_secs_f64(), 100.0 * used / wall)
        })
        .collect();
    let series: [Panel; 3] = [
        (
            "RSS (MiB)",
            samples
                .iter()
                .map(|s| (s.at.as_secs_f64(), s.rss_kib as f64 / 1024.0))
                .collect(),
            "#2b6cb0",
        ),
        (
            "open fds",
            samples
                .iter()
                .map(|s| (s.at.as_secs_f64(), s.fds as f64))
                .collect(),
            "#3c9d5a",
        ),
        ("CPU (% of a core)", cpu, "#d96c1e"),
    ];
    let (width, panel_height) = (960.0, 240.0);
    let (left, right, top_margin, bottom_margin) = (70.0, 20.0, 34.0, 30.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        panel_height * 3.0
    );
    for (index, (name, points, colour)) in series.iter().enumerate() {
        let y0 = index as f64 * panel_height;
        let top = points.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.1;
        let (plot_w, plot_h) = (
            width - left - right,
            panel_height - top_margin - bottom_margin,
        );
        let x = |seconds: f64| left + seconds / end * plot_w;
        let y = |value: f64| y0 + top_margin + plot_h - value / top * plot_h;
        let line: Vec<String> = points
            .iter()
            .map(|&(s, v)| format!("{:.1},{:.1}", x(s), y(v)))
            .collect();
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"18\" text-anchor=\"middle\">{name}</text>\n\
             <rect x=\"{left}\" y=\"{}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"black\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{top:.1}</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{end:.0} seconds</text>\n\
             <polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            width / 2.0,
            y0 + 22.0,
            y0 + top_margin,
            left - 6.0,
            y0 + top_margin + 12.0,
            left - 6.0,
            y0 + top_margin + plot_h,
            width - right,
            y0 + panel_height - 10.0,
            line.join(" "),
        ));
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

/// Fails if a seed's RSS in its last quarter exceeds its second quarter's by more than a
/// quarter plus 8 MiB (the first quarter is warm-up: buffers and pools reach their size).
fn check_growth(samples: &[Sample]) -> anyhow::Result<()> {
    let mut seeds: Vec<u64> = samples.iter().map(|s| s.seed).collect();
    seeds.dedup();
    for seed in seeds {
        let of_seed: Vec<&Sample> = samples.iter().filter(|s| s.seed == seed).collect();
        if of_seed.len() < 8 {
            continue;
        }
        let quarter = of_seed.len() / 4;
        let max = |part: &[&Sample]| part.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let early = max(&of_seed[quarter..2 * quarter]);
        let late = max(&of_seed[of_seed.len() - quarter..]);
        if late > early + early / 4 + 8 * 1024 {
            bail!("seed {seed}: RSS grew from {early} KiB to {late} KiB");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: u64, rss_kib: u64) -> Sample {
        Sample {
            at: Duration::ZERO,
            seed,
            rss_kib,
            fds: 10,
            cpu: Duration::ZERO,
            answers: 0,
        }
    }

    #[test]
    fn steady_rss_passes_and_growth_fails() {
        let steady: Vec<Sample> = (0..16).map(|i| sample(1, 20_000 + i % 3)).collect();
        assert!(check_growth(&steady).is_ok());
        let growing: Vec<Sample> = (0..16).map(|i| sample(1, 20_000 + i * 4_000)).collect();
        assert!(check_growth(&growing).is_err());
    }

    #[test]
    fn the_plot_is_an_svg_of_three_panels() {
        let dir = std::env::temp_dir().join(format!("soak-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("soak.svg");
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                at: Duration::from_secs(2 * i),
                cpu: Duration::from_millis(300 * i),
                ..sample(1, 5_000 + i)
            })
            .collect();
        plot(&path, &samples).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        for name in ["RSS (MiB)", "open fds", "CPU (% of a core)"] {
            assert!(svg.contains(name), "{name} is missing");
        }
    }

    #[test]
    fn compute_answers_are_the_protocols() {
        let answer = compute_answer("abc");
        assert!(answer.starts_with(b"result: ") && answer.ends_with(b"\n"));
        assert_eq!(answer.len(), "result: ".len() + 16 + 1);
    }
}
