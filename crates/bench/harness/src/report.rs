//! Turning runs into medians, ratios, verdicts and the Markdown table.
//!
//! Each (scenario, server) pair is run once per round; the table shows the median of each
//! figure over the rounds, so one disturbed run (another process waking on the shared machine)
//! moves nothing. Ratios are taken against the Tokio server's medians of the same scenario.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use test_support::procfs::Proc;

use crate::measure::SyscallCount;
pub(crate) use crate::median::median;
use crate::scenario::{Scenario, Target};
use crate::server::{ContextSwitches, ServerKind};
use crate::threads::{self, Bound, GroupProfile, RunCpu, ThreadGroup};

/// The part of `loadgen --json` the benchmark reads.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub(crate) struct LoadgenSummary {
    /// Correct responses.
    pub(crate) completed: u64,
    /// Wrong responses.
    pub(crate) mismatches: u64,
    /// Failed connections.
    pub(crate) connection_errors: u64,
    /// Seconds from the first request to the last response.
    pub(crate) elapsed_s: f64,
    /// Responses per second.
    pub(crate) throughput_rps: f64,
    /// Latency percentiles.
    pub(crate) latency: LoadgenLatency,
    /// The first error, if any.
    pub(crate) first_error: Option<String>,
    /// The load generator's own CPU time per response, µs.
    #[serde(default)]
    pub(crate) loadgen_cpu_us_per_request: f64,
    /// In the key-value mixes, the `GET` and `SET` latency apart (absent in the others).
    #[serde(default)]
    pub(crate) by_verb: LoadgenByVerb,
}

impl LoadgenSummary {
    /// The CPU figures of a run of this load against a server whose threads spent `groups`
    /// (`server_cpu_s` in all) in a window of `wall_s` seconds, for [`threads::profile`]: the
    /// load generator's own CPU time counts towards the CPUs kept busy.
    pub(crate) fn run_cpu<'a>(
        &self,
        groups: &'a [ThreadGroup],
        server_cpu_s: f64,
        wall_s: f64,
    ) -> RunCpu<'a> {
        let loadgen_cpu_s = self.loadgen_cpu_us_per_request * self.completed as f64 / 1e6;
        RunCpu {
            groups,
            requests: self.completed,
            wall_s,
            total_cpu_s: server_cpu_s + loadgen_cpu_s,
        }
    }
}

/// Latency by verb, as loadgen reports it for the key-value mixes.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, serde::Serialize)]
pub(crate) struct LoadgenByVerb {
    /// `GET`, when the mix sent any.
    pub(crate) get: Option<LoadgenVerb>,
    /// `SET`, when the mix sent any.
    pub(crate) set: Option<LoadgenVerb>,
}

/// One verb's responses and their latency.
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize)]
pub(crate) struct LoadgenVerb {
    /// Correct responses to this verb.
    pub(crate) completed: u64,
    /// Their latency.
    pub(crate) latency: LoadgenLatency,
}

/// Latency percentiles in microseconds, as loadgen reports them.
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize)]
pub(crate) struct LoadgenLatency {
    /// Median.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// Maximum.
    pub(crate) max_us: f64,
}

/// One loadgen run against one server.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Run {
    /// 1-based round.
    pub(crate) round: usize,
    /// Scenario id.
    pub(crate) scenario: &'static str,
    /// The server.
    pub(crate) server: ServerKind,
    /// What loadgen measured.
    pub(crate) load: LoadgenSummary,
    /// The server's context switches during the run.
    pub(crate) context_switches: ContextSwitches,
    /// The server's CPU time (all threads, user + system) during the run, seconds.
    pub(crate) server_cpu_s: f64,
    /// The same time thread group by thread group, user and kernel apart.
    pub(crate) threads: Vec<ThreadGroup>,
    /// Wall time of the run as the benchmark timed it (the window of the CPU readings), seconds.
    pub(crate) wall_s: f64,
}

impl Run {
    /// The server's CPU time per response, µs.
    pub(crate) fn server_cpu_us_per_request(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.load.completed.max(1) as f64
    }

    /// The run's CPU figures, for [`threads::profile`].
    fn cpu(&self) -> RunCpu<'_> {
        self.load
            .run_cpu(&self.threads, self.server_cpu_s, self.wall_s)
    }
}

/// How long a 1 ms sleep really takes on this machine: the sleep-bound scenario's ceiling
/// assumes exactly 1 ms, and the kernel's timer slack (50 µs by default) and the wake-up make
/// every sleep longer, which no server can help.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct SleepCheck {
    /// The median length of a `std::thread::sleep` of 1 ms, µs.
    pub(crate) median_us: f64,
    /// How many sleeps the median is over.
    pub(crate) samples: usize,
    /// This process's timer slack, µs (`/proc/self/timerslack_ns`), when readable.
    pub(crate) timer_slack_us: Option<f64>,
}

impl SleepCheck {
    /// Sleeps 1 ms [`SLEEP_SAMPLES`] times (a fifth of a second) and keeps the median length.
    pub(crate) fn measure() -> SleepCheck {
        let lengths = (0..SLEEP_SAMPLES)
            .map(|_| {
                let started = std::time::Instant::now();
                std::thread::sleep(std::time::Duration::from_millis(1));
                started.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        SleepCheck {
            median_us: median(lengths),
            samples: SLEEP_SAMPLES,
            timer_slack_us: Proc::this()
                .try_read("timerslack_ns")
                .ok()
                .and_then(|text| text.trim().parse::<f64>().ok())
                .map(|ns| ns / 1000.0),
        }
    }

    /// The share of a nominal sleep-bound ceiling that sleeps of this length leave reachable.
    pub(crate) fn reachable_share(&self) -> f64 {
        if self.median_us > 0.0 {
            (1000.0 / self.median_us).min(1.0)
        } else {
            1.0
        }
    }
}

impl fmt::Display for SleepCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a 1 ms sleep takes {:.0} µs here (median of {}",
            self.median_us, self.samples
        )?;
        if let Some(slack) = self.timer_slack_us {
            write!(f, ", timer slack {slack:.0} µs")?;
        }
        write!(f, ")")
    }
}

/// How many 1 ms sleeps [`SleepCheck::measure`] times.
const SLEEP_SAMPLES: usize = 200;

/// Medians of one (scenario, server) pair over the rounds.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    /// Scenario id.
    pub(crate) scenario: &'static str,
    /// The server.
    pub(crate) server: ServerKind,
    /// How many runs the medians are over.
    pub(crate) runs: usize,
    /// Median throughput, requests per second.
    pub(crate) throughput_rps: f64,
    /// Median p50 latency, µs.
    pub(crate) p50_us: f64,
    /// Median p99 latency, µs.
    pub(crate) p99_us: f64,
    /// Median p99.9 latency, µs.
    pub(crate) p999_us: f64,
    /// Median maximum latency, µs.
    pub(crate) max_us: f64,
    /// Median context switches per request (server side, all threads).
    pub(crate) context_switches_per_request: f64,
    /// Median server CPU time per request, µs (all threads, user + system).
    pub(crate) server_cpu_us_per_request: f64,
    /// Median load generator CPU time per request, µs.
    pub(crate) loadgen_cpu_us_per_request: f64,
    /// Throughput divided by the Tokio server's (None without a Tokio row).
    pub(crate) vs_tokio: Option<f64>,
    /// p99 divided by the Tokio server's.
    pub(crate) p99_vs_tokio: Option<f64>,
    /// Server CPU time per request divided by the Tokio server's: what the throughput ratio
    /// would be the inverse of if CPU were the only limit.
    pub(crate) cpu_vs_tokio: Option<f64>,
    /// Where the server's CPU went, thread group by thread group (medians).
    pub(crate) threads: Vec<GroupProfile>,
    /// CPUs' worth the server and the load generator kept busy together (median).
    pub(crate) cpus_busy: f64,
    /// What bounded the server's throughput (see the `threads` module).
    pub(crate) bound: Bound,
}

/// Whether the handoff server met a scenario's target.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Verdict {
    /// Scenario id.
    pub(crate) scenario: &'static str,
    /// The target, in words.
    pub(crate) target: String,
    /// The measured figure, in words.
    pub(crate) measured: String,
    /// Met, or not (None when a server needed for the verdict was not run).
    pub(crate) met: Option<bool>,
}

/// System call and context switch counts of one server in one depth-16 scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SyscallRow {
    /// Scenario id.
    pub(crate) scenario: &'static str,
    /// The server.
    pub(crate) server: ServerKind,
    /// Requests served while `perf stat` counted.
    pub(crate) perf_requests: u64,
    /// `perf stat` system calls per request, or why it was skipped.
    pub(crate) perf_syscalls_per_request: Result<f64, String>,
    /// `perf stat` context switches per request.
    pub(crate) perf_context_switches_per_request: Result<f64, String>,
    /// `/proc` context switches per request during the same run.
    pub(crate) proc_context_switches_per_request: f64,
    /// `strace -c -f` system calls per request (slowed by tracing), or why it was skipped.
    pub(crate) strace_syscalls_per_request: Result<f64, String>,
    /// The most frequent calls under strace, per request.
    pub(crate) strace_top: Vec<SyscallCount>,
    /// Requests served while strace counted.
    pub(crate) strace_requests: u64,
}

/// Medians per (scenario, server), in scenario then server order, with ratios to Tokio.
/// `cpus` is the machine's CPU count, against which the CPUs kept busy are judged.
pub(crate) fn rows(
    scenarios: &[Scenario],
    servers: &[ServerKind],
    runs: &[Run],
    cpus: usize,
) -> Vec<Row> {
    let mut grouped: BTreeMap<(&str, ServerKind), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        grouped
            .entry((run.scenario, run.server))
            .or_default()
            .push(run);
    }
    let mut rows = Vec::new();
    for scenario in scenarios {
        let mut scenario_rows: Vec<Row> = servers
            .iter()
            .filter_map(|&server| {
                let runs = grouped.get(&(scenario.id, server))?;
                let pick = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(|r| f(r)).collect());
                let cpu: Vec<RunCpu<'_>> = runs.iter().map(|run| run.cpu()).collect();
                let (threads, cpus_busy) = threads::profile(&cpu);
                let bound = Bound::of(&threads, cpus_busy, cpus);
                Some(Row {
                    scenario: scenario.id,
                    server,
                    runs: runs.len(),
                    throughput_rps: pick(&|r| r.load.throughput_rps),
                    p50_us: pick(&|r| r.load.latency.p50_us),
                    p99_us: pick(&|r| r.load.latency.p99_us),
                    p999_us: pick(&|r| r.load.latency.p999_us),
                    max_us: pick(&|r| r.load.latency.max_us),
                    context_switches_per_request: pick(&|r| {
                        r.context_switches.total() as f64 / r.load.completed.max(1) as f64
                    }),
                    server_cpu_us_per_request: pick(&|r| r.server_cpu_us_per_request()),
                    loadgen_cpu_us_per_request: pick(&|r| r.load.loadgen_cpu_us_per_request),
                    vs_tokio: None,
                    p99_vs_tokio: None,
                    cpu_vs_tokio: None,
                    threads,
                    cpus_busy,
                    bound,
                })
            })
            .collect();
        let tokio = scenario_rows
            .iter()
            .find(|row| row.server == ServerKind::Tokio)
            .map(|row| {
                (
                    row.throughput_rps,
                    row.p99_us,
                    row.server_cpu_us_per_request,
                )
            });
        if let Some((throughput, p99, cpu)) = tokio {
            for row in &mut scenario_rows {
                row.vs_tokio = (throughput > 0.0).then(|| row.throughput_rps / throughput);
                row.p99_vs_tokio = (p99 > 0.0).then(|| row.p99_us / p99);
                row.cpu_vs_tokio = (cpu > 0.0).then(|| row.server_cpu_us_per_request / cpu);
            }
        }
        rows.extend(scenario_rows);
    }
    rows
}

/// The handoff server's verdict for each scenario: the one-loop server's, then, where it ran,
/// the several-loop server's (`--loops`).
///
/// A target that is missed says what bounded the run ([`Bound`]); the sleep-bound scenario's
/// also says how much of its nominal ceiling this machine's sleeps leave reachable (`sleep`).
pub(crate) fn verdicts(
    scenarios: &[Scenario],
    rows: &[Row],
    workers: usize,
    sleep: &SleepCheck,
) -> Vec<Verdict> {
    let find = |scenario: &Scenario, server| {
        rows.iter()
            .find(|r| r.scenario == scenario.id && r.server == server)
    };
    scenarios
        .iter()
        .flat_map(|scenario| {
            let several = find(scenario, ServerKind::HandoffLoops).map(|row| (scenario, Some(row)));
            std::iter::once((scenario, find(scenario, ServerKind::Handoff))).chain(several)
        })
        .map(|(scenario, handoff)| {
            let (measured, met) = match (scenario.target, handoff) {
                (_, None) => ("handoff_server not run".to_owned(), None),
                (Target::VersusTokio { ratio }, Some(row)) => {
                    match (row.vs_tokio, row.p99_vs_tokio) {
                        (Some(vs), Some(p99)) => {
                            let met = vs >= ratio && p99 <= 1.0;
                            let mut measured = format!(
                                "{vs:.2}× tokio, p99 {p99:.2}× tokio's (CPU per request {})",
                                self::ratio(row.cpu_vs_tokio)
                            );
                            if !met {
                                let _ = write!(measured, "; bound by {}", row.bound);
                            }
                            (measured, Some(met))
                        }
                        _ => ("tokio_server not run".to_owned(), None),
                    }
                }
                (Target::ShareOfCeiling { share, per_worker }, Some(row)) => {
                    let ceiling = per_worker * workers as f64;
                    let got = row.throughput_rps / ceiling;
                    let reachable = ceiling * sleep.reachable_share();
                    let mut measured = format!("{:.1} % of {ceiling:.0} req/s", got * 100.0);
                    if got < share {
                        // The sleeps are the bound only if the server got about as far as they
                        // let it; short of that, the run's own bound says what held it back.
                        let of_reachable = row.throughput_rps / reachable;
                        if of_reachable >= share {
                            let _ = write!(
                                measured,
                                "; bound by the sleeps: {sleep}, so at most {reachable:.0} \
                                 req/s, of which it reached {:.1} %",
                                of_reachable * 100.0
                            );
                        } else {
                            let _ = write!(
                                measured,
                                "; {sleep}, so at most {reachable:.0} req/s, of which it \
                                 reached {:.1} %; bound by {}",
                                of_reachable * 100.0,
                                row.bound
                            );
                        }
                    }
                    (measured, Some(got >= share))
                }
            };
            let target = match handoff {
                Some(row) if row.server == ServerKind::HandoffLoops => {
                    format!("{} ({})", scenario.target, row.server)
                }
                _ => scenario.target.to_string(),
            };
            Verdict {
                scenario: scenario.id,
                target,
                measured,
                met,
            }
        })
        .collect()
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}×"))
}

/// The results as Markdown tables: medians, targets, and system calls.
pub(crate) fn markdown(
    scenarios: &[Scenario],
    rows: &[Row],
    verdicts: &[Verdict],
    syscalls: &[SyscallRow],
) -> String {
    let mut out = String::new();
    out.push_str(
        "| Scenario | Server | req/s | × tokio | p50 µs | p99 µs | p99.9 µs | max µs | p99 × tokio | \
         ctx sw/req | server CPU µs/req | loadgen CPU µs/req |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let shape = scenarios
            .iter()
            .find(|s| s.id == row.scenario)
            .map(Scenario::shape);
        let _ = writeln!(
            out,
            "| {} {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.3} | {:.2} | {:.2} |",
            row.scenario,
            shape.unwrap_or_default(),
            row.server,
            row.throughput_rps,
            ratio(row.vs_tokio),
            row.p50_us,
            row.p99_us,
            row.p999_us,
            row.max_us,
            ratio(row.p99_vs_tokio),
            row.context_switches_per_request,
            row.server_cpu_us_per_request,
            row.loadgen_cpu_us_per_request,
        );
    }
    out.push_str("\n| Scenario | Target (handoff_server) | Measured | Met |\n|---|---|---|---|\n");
    for verdict in verdicts {
        let met = match verdict.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {met} |",
            verdict.scenario, verdict.target, verdict.measured
        );
    }
    out.push_str(
        "\nWhere each server's CPU went (medians): per thread group, its CPU time per request, \
         the share of it in the kernel, and its busiest thread's CPU time as a share of the run; \
         then the CPUs the server and the load generator kept busy together, and what bounded \
         the run: the more saturated of its busiest thread and the CPUs, once at least 80 % \
         busy, else the requests' own waits (idle threads are left out):\n\n\
         | Scenario | Server | threads | CPUs busy | bound by |\n|---|---|---|---:|---|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} |",
            row.scenario,
            row.server,
            threads::cell(&row.threads),
            row.cpus_busy,
            row.bound
        );
    }
    if !syscalls.is_empty() {
        out.push_str(
            "\nPer request at depth 16, server process only (target for handoff_server: < 0.3 \
             syscalls and < 0.02 context switches):\n\n\
             | Scenario | Server | syscalls/req (perf) | ctx sw/req (perf) | ctx sw/req (/proc) | \
             syscalls/req (strace -c -f) | top calls under strace, per req |\n\
             |---|---|---:|---:|---:|---:|---|\n",
        );
        for row in syscalls {
            let figure = |value: &Result<f64, String>, digits: usize| match value {
                Ok(v) => format!("{v:.digits$}"),
                Err(reason) => format!("skipped ({reason})"),
            };
            let top = row
                .strace_top
                .iter()
                .take(4)
                .map(|call| {
                    format!(
                        "{} {:.3}",
                        call.name,
                        call.calls as f64 / row.strace_requests.max(1) as f64
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.4} | {} | {} |",
                row.scenario,
                row.server,
                figure(&row.perf_syscalls_per_request, 3),
                figure(&row.perf_context_switches_per_request, 4),
                row.proc_context_switches_per_request,
                figure(&row.strace_syscalls_per_request, 3),
                if top.is_empty() {
                    "–".to_owned()
                } else {
                    top
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ALL;

    fn run(scenario: &'static str, server: ServerKind, rps: f64, p99: f64) -> Run {
        Run {
            round: 1,
            scenario,
            server,
            load: LoadgenSummary {
                completed: 1000,
                mismatches: 0,
                connection_errors: 0,
                elapsed_s: 1.0,
                throughput_rps: rps,
                latency: LoadgenLatency {
                    p50_us: 1.0,
                    p99_us: p99,
                    p999_us: 1.0,
                    max_us: 1.0,
                },
                first_error: None,
                by_verb: LoadgenByVerb::default(),
                loadgen_cpu_us_per_request: 1.0,
            },
            context_switches: ContextSwitches {
                voluntary: 10,
                involuntary: 0,
            },
            server_cpu_s: 0.002,
            threads: vec![ThreadGroup {
                name: "main".to_owned(),
                threads: 1,
                user_s: 0.0005,
                system_s: 0.0015,
                busiest_s: 0.002,
            }],
            wall_s: 1.0,
        }
    }

    /// A sleep check as on a machine whose 1 ms sleeps take 1.1 ms.
    const SLOW_SLEEPS: SleepCheck = SleepCheck {
        median_us: 1100.0,
        samples: 200,
        timer_slack_us: Some(50.0),
    };

    #[test]
    fn rows_take_medians_and_ratios_and_verdicts_follow_the_targets() {
        let runs = vec![
            run("S1", ServerKind::Tokio, 100.0, 50.0),
            run("S1", ServerKind::Tokio, 300.0, 50.0),
            run("S1", ServerKind::Tokio, 200.0, 50.0),
            run("S1", ServerKind::Handoff, 280.0, 40.0),
            run("S2", ServerKind::Tokio, 100.0, 50.0),
            run("S2", ServerKind::Handoff, 150.0, 60.0),
            run("S5", ServerKind::Handoff, 19_000.0, 60.0),
        ];
        let scenarios = &ALL[..];
        let rows = rows(scenarios, &ServerKind::ALL, &runs, 2);
        let s1 = rows
            .iter()
            .find(|r| r.scenario == "S1" && r.server == ServerKind::Handoff)
            .unwrap();
        assert_eq!(s1.vs_tokio, Some(1.4));
        assert!((s1.context_switches_per_request - 0.01).abs() < 1e-9);
        assert!((s1.server_cpu_us_per_request - 2.0).abs() < 1e-9);
        let verdicts = verdicts(scenarios, &rows, 2, &SLOW_SLEEPS);
        let verdict = |id: &str| verdicts.iter().find(|v| v.scenario == id).unwrap();
        assert_eq!(verdict("S1").met, Some(true), "1.4× ≥ 1.3× and p99 better");
        assert!(
            !verdict("S1").measured.contains("bound by"),
            "a met target needs no bound"
        );
        assert_eq!(verdict("S2").met, Some(false), "1.5× < 2×");
        assert!(
            verdict("S2").measured.ends_with(
                "; bound by the requests' own waits: no thread busier than 0 %, 0.00 of 2 CPUs busy"
            ),
            "{:?}",
            verdict("S2")
        );
        assert_eq!(verdict("S5").met, Some(true), "95 % of 20000");
        assert_eq!(verdict("S3").met, None, "not run");
        let table = markdown(scenarios, &rows, &verdicts, &[]);
        assert!(
            table.contains("| S1 compute64 50×1 | handoff_server | 280 | 1.40× |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| S1 | handoff_server | main ×1: 2.00 µs (75 % kernel), busiest 0 % | 0.00 | the requests' own waits"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_missed_target_names_the_saturated_thread_or_the_sleeps_that_bound_it() {
        let mut busy = run("S1", ServerKind::Handoff, 120.0, 40.0);
        busy.threads[0].busiest_s = 0.97;
        busy.threads[0].system_s = 0.7275;
        busy.threads[0].user_s = 0.2425;
        busy.server_cpu_s = 0.97;
        let runs = vec![
            run("S1", ServerKind::Tokio, 100.0, 50.0),
            busy,
            run("S5", ServerKind::Handoff, 18_000.0, 60.0),
        ];
        let scenarios = &ALL[..];
        let rows = rows(scenarios, &ServerKind::ALL, &runs, 2);
        let verdicts = verdicts(scenarios, &rows, 2, &SLOW_SLEEPS);
        let verdict = |id: &str| verdicts.iter().find(|v| v.scenario == id).unwrap();
        assert_eq!(verdict("S1").met, Some(false), "1.2× < 1.3×");
        assert!(
            verdict("S1").measured.ends_with(
                "; bound by its main thread, busy 97 % of the run, 75 % of that in the kernel \
                 (0.97 of 2 CPUs busy)"
            ),
            "{:?}",
            verdict("S1")
        );
        assert_eq!(verdict("S5").met, Some(false), "90 % of 20000 < 95 %");
        assert_eq!(
            verdict("S5").measured,
            "90.0 % of 20000 req/s; bound by the sleeps: a 1 ms sleep takes 1100 µs here (median \
             of 200, timer slack 50 µs), so at most 18182 req/s, of which it reached 99.0 %"
        );

        // Far short of what the sleeps allow: the sleeps are not the bound.
        let slow = vec![run("S5", ServerKind::Handoff, 14_000.0, 60.0)];
        let slow_rows = super::rows(scenarios, &ServerKind::ALL, &slow, 2);
        let slow_verdicts = super::verdicts(scenarios, &slow_rows, 2, &SLOW_SLEEPS);
        let s5 = slow_verdicts.iter().find(|v| v.scenario == "S5").unwrap();
        assert_eq!(s5.met, Some(false));
        assert!(
            s5.measured.starts_with(
                "70.0 % of 20000 req/s; a 1 ms sleep takes 1100 µs here (median of 200, timer \
                 slack 50 µs), so at most 18182 req/s, of which it reached 77.0 %; bound by the \
                 requests' own waits"
            ),
            "{s5:?}"
        );
    }

    #[test]
    fn the_sleep_check_times_real_sleeps() {
        let check = SleepCheck::measure();
        assert_eq!(check.samples, SLEEP_SAMPLES);
        assert!(check.median_us >= 1000.0, "{check}");
        assert!(check.reachable_share() <= 1.0 && check.reachable_share() > 0.0);
        assert!(
            check.to_string().starts_with("a 1 ms sleep takes "),
            "{check}"
        );
    }

    #[test]
    fn the_several_loop_server_gets_a_verdict_and_a_row_of_its_own() {
        crate::server::set_multi_loops(2);
        let runs = vec![
            run("S1", ServerKind::Tokio, 100.0, 50.0),
            run("S1", ServerKind::Handoff, 120.0, 40.0),
            run("S1", ServerKind::HandoffLoops, 160.0, 45.0),
        ];
        let scenarios = &ALL[..1];
        let rows = rows(scenarios, &ServerKind::ALL, &runs, 2);
        let verdicts = verdicts(scenarios, &rows, 2, &SLOW_SLEEPS);
        let summary: Vec<(&str, Option<bool>)> = verdicts
            .iter()
            .map(|v| (v.target.as_str(), v.met))
            .collect();
        assert_eq!(summary.len(), 2, "{summary:?}");
        assert_eq!(summary[0].1, Some(false), "one loop: 1.2× < 1.3×");
        assert!(
            summary[1].0.ends_with("(handoff_server --loops 2)"),
            "{summary:?}"
        );
        assert_eq!(summary[1].1, Some(true), "two loops: 1.6× ≥ 1.3×");
        let table = markdown(scenarios, &rows, &verdicts, &[]);
        assert!(
            table.contains("| S1 compute64 50×1 | handoff_server --loops 2 | 160 | 1.60× |"),
            "{table}"
        );
    }

    #[test]
    fn a_missing_tool_is_reported_as_skipped_with_its_reason() {
        let row = SyscallRow {
            scenario: "S2",
            server: ServerKind::Handoff,
            perf_requests: 1000,
            perf_syscalls_per_request: Ok(0.25),
            perf_context_switches_per_request: Ok(0.01),
            proc_context_switches_per_request: 0.01,
            strace_syscalls_per_request: Err("strace not installed".to_owned()),
            strace_top: Vec::new(),
            strace_requests: 0,
        };
        let table = markdown(&ALL[..], &[], &[], &[row]);
        assert!(
            table.contains("| S2 | handoff_server | 0.250 | 0.0100 | 0.0100 | skipped (strace not installed) | – |"),
            "{table}"
        );
    }
}
