//! Turning runs into medians, ratios, verdicts and the Markdown table.
//!
//! Each (scenario, server) pair is run once per round; the table shows the median of each
//! figure over the rounds, so one disturbed run (another process waking on the shared machine)
//! moves nothing. Ratios are taken against the Tokio server's medians of the same scenario.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::measure::SyscallCount;
use crate::scenario::{Scenario, Target};
use crate::server::{ContextSwitches, ServerKind};

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
}

impl Run {
    /// The server's CPU time per response, µs.
    pub(crate) fn server_cpu_us_per_request(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.load.completed.max(1) as f64
    }
}

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

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Medians per (scenario, server), in scenario then server order, with ratios to Tokio.
pub(crate) fn rows(scenarios: &[Scenario], servers: &[ServerKind], runs: &[Run]) -> Vec<Row> {
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
pub(crate) fn verdicts(scenarios: &[Scenario], rows: &[Row], workers: usize) -> Vec<Verdict> {
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
                        (Some(vs), Some(p99)) => (
                            format!(
                                "{vs:.2}× tokio, p99 {p99:.2}× tokio's (CPU per request {})",
                                self::ratio(row.cpu_vs_tokio)
                            ),
                            Some(vs >= ratio && p99 <= 1.0),
                        ),
                        _ => ("tokio_server not run".to_owned(), None),
                    }
                }
                (Target::ShareOfCeiling { share, per_worker }, Some(row)) => {
                    let ceiling = per_worker * workers as f64;
                    let got = row.throughput_rps / ceiling;
                    (
                        format!("{:.1} % of {ceiling:.0} req/s", got * 100.0),
                        Some(got >= share),
                    )
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
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

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
        let rows = rows(scenarios, &ServerKind::ALL, &runs);
        let s1 = rows
            .iter()
            .find(|r| r.scenario == "S1" && r.server == ServerKind::Handoff)
            .unwrap();
        assert_eq!(s1.vs_tokio, Some(1.4));
        assert!((s1.context_switches_per_request - 0.01).abs() < 1e-9);
        assert!((s1.server_cpu_us_per_request - 2.0).abs() < 1e-9);
        let verdicts = verdicts(scenarios, &rows, 2);
        let met = |id: &str| verdicts.iter().find(|v| v.scenario == id).unwrap().met;
        assert_eq!(met("S1"), Some(true), "1.4× ≥ 1.3× and p99 better");
        assert_eq!(met("S2"), Some(false), "1.5× < 2×");
        assert_eq!(met("S5"), Some(true), "95 % of 20000");
        assert_eq!(met("S3"), None, "not run");
        let table = markdown(scenarios, &rows, &verdicts, &[]);
        assert!(
            table.contains("| S1 compute64 50×1 | handoff_server | 280 | 1.40× |"),
            "{table}"
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
        let rows = rows(scenarios, &ServerKind::ALL, &runs);
        let verdicts = verdicts(scenarios, &rows, 2);
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
