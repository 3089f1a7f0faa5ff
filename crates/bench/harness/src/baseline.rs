//! `cargo xtask bench --baseline <git-rev>`: the working tree's servers against an earlier
//! revision's, side by side, so a change to a hot path can quote "new / old".
//!
//! The revision is resolved to a commit (`git rev-parse --verify <rev>^{commit}`) and checked
//! out, detached, in a git worktree of its own under the target folder,
//! `target/bench-baseline/<first 12 hex digits>/`, which is built with its own
//! `CARGO_TARGET_DIR` (`target/` inside that worktree) so neither build invalidates the other.
//! Both the worktree and its build are reused by the next run with the same revision; only the
//! chosen servers are built there. The load generator is the working tree's for both sides, so
//! the only difference is the server.
//!
//! Every round runs each chosen scenario against old and new, one after the other on freshly
//! started servers, the order swapping from one round (and scenario) to the next so that drift
//! of a shared machine lands on both alike. The figures are per-round ratios new / old of the
//! throughput and of the p99 latency; the report gives their median and their spread (lowest
//! and highest), since on a busy machine one round's ratio says little and the spread says how
//! little.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context as _;

use crate::report::median;
use crate::scenario::{self, Scenario};
use crate::server::{ServerBinary, ServerKind};
use crate::{BenchArgs, LoadRunner, Machine};

/// A revision resolved to its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revision {
    /// What the user wrote (`c308ef5`, `main~3`, `HEAD`).
    pub(crate) name: String,
    /// The full commit hash.
    pub(crate) commit: String,
}

impl Revision {
    /// The folder of its worktree under `target`: `bench-baseline/<12 hex digits>`.
    pub(crate) fn worktree(&self, target: &Path) -> PathBuf {
        target.join("bench-baseline").join(&self.commit[..12])
    }
}

/// Resolves `rev` in the repository at `root` to a commit; an unknown revision is an error that
/// names it.
pub(crate) fn resolve(root: &Path, rev: &str) -> anyhow::Result<Revision> {
    anyhow::ensure!(
        !rev.is_empty() && !rev.starts_with('-'),
        "--baseline wants a git revision, not {rev:?}"
    );
    let output = Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{rev}^{{commit}}"))
        .stdin(Stdio::null())
        .output()
        .context("running git rev-parse")?;
    let commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    anyhow::ensure!(
        output.status.success()
            && commit.len() == 40
            && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "--baseline {rev}: not a commit of this repository"
    );
    Ok(Revision {
        name: rev.to_owned(),
        commit,
    })
}

/// The baseline's worktree at `dir`, checked out at `revision`: reused when it is already there
/// at that commit, else created (`git worktree add --detach`).
fn worktree(root: &Path, revision: &Revision, dir: &Path) -> anyhow::Result<()> {
    if dir.join(".git").exists() {
        let head = Command::new("git")
            .current_dir(dir)
            .args(["rev-parse", "HEAD"])
            .output()
            .context("running git rev-parse HEAD in the baseline worktree")?;
        let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
        anyhow::ensure!(
            head == revision.commit,
            "{} is checked out at {head}, not {}; remove it (git worktree remove --force {}) \
             and run again",
            dir.display(),
            revision.commit,
            dir.display()
        );
        eprintln!("bench: baseline worktree {} (reused)", dir.display());
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    eprintln!(
        "bench: git worktree add --detach {} {}",
        dir.display(),
        revision.commit
    );
    let mut command = Command::new("git");
    command
        .current_dir(root)
        .args(["worktree", "add", "--detach"])
        .arg(dir)
        .arg(&revision.commit)
        .stdout(Stdio::null());
    let output = xtask::process::output(&mut command).context("running git worktree add")?;
    anyhow::ensure!(output.status.success(), "git worktree add failed");
    Ok(())
}

/// One scenario's ratios new / old, one per round.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Ratios {
    /// The scenario.
    pub(crate) scenario: &'static str,
    /// The server compared.
    pub(crate) server: ServerKind,
    /// Throughput new / old, per round.
    pub(crate) throughput: Vec<f64>,
    /// p99 latency new / old, per round.
    pub(crate) p99: Vec<f64>,
}

/// The median, lowest and highest of `values`.
pub(crate) fn spread(values: &[f64]) -> (f64, f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(values.to_vec()), low, high)
}

/// The report's table: one row per scenario and server.
pub(crate) fn table(revision: &Revision, ratios: &[Ratios]) -> String {
    let mut out = format!(
        "| Scenario | Server | rounds | throughput new / {name} (median, low–high) | p99 new / {name} (median, low–high) |\n\
         |---|---|---:|---:|---:|\n",
        name = revision.name
    );
    for row in ratios {
        let (t, t_low, t_high) = spread(&row.throughput);
        let (p, p_low, p_high) = spread(&row.p99);
        out.push_str(&format!(
            "| {} | {} | {} | {t:.3} ({t_low:.3}–{t_high:.3}) | {p:.3} ({p_low:.3}–{p_high:.3}) |\n",
            row.scenario,
            row.server,
            row.throughput.len()
        ));
    }
    out
}

/// Runs the A/B benchmark against `rev`.
pub(crate) fn run(
    args: &BenchArgs,
    rev: &str,
    root: &Path,
    out_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let revision = resolve(root, rev)?;
    let scenarios: Vec<Scenario> = scenario::select(&args.scenarios)?;
    // The comparison is of one server with itself, so by default the one the issue is about.
    let servers: Vec<ServerKind> = if args.servers.is_empty() {
        vec![ServerKind::Handoff]
    } else {
        let mut servers = args.servers.clone();
        servers.sort();
        servers.dedup();
        servers
    };
    let target = crate::target_dir(root);
    let dir = revision.worktree(&target);
    worktree(root, &revision, &dir)?;

    let mut machine = Machine::read();
    eprintln!("bench: {machine}");
    let new = crate::build(root, &servers, None)?;
    let old = crate::build(&dir, &servers, Some(&dir.join("target")))?;
    let loadgen = new
        .get("loadgen")
        .context("the build produced no loadgen")?
        .clone();
    let load = LoadRunner {
        path: loadgen,
        threads: args.loadgen_threads,
    };
    let pick = |executables: &std::collections::BTreeMap<String, PathBuf>, kind: ServerKind| {
        executables
            .get(kind.binary())
            .with_context(|| format!("the build produced no {}", kind.binary()))
            .and_then(|path| ServerBinary::probe(kind, path))
    };
    let pairs = servers
        .iter()
        .map(|&kind| Ok((pick(&old, kind)?, pick(&new, kind)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut ratios: Vec<Ratios> = Vec::new();
    let mut runs = Vec::new();
    let total = args.rounds * scenarios.len() * pairs.len() * 2;
    let mut done = 0;
    for round in 1..=args.rounds {
        for (index, scenario) in scenarios.iter().enumerate() {
            for (old_binary, new_binary) in &pairs {
                // Old first in every other round (and scenario), new first in the rest.
                let old_first = (round + index) % 2 == 0;
                let order = if old_first {
                    [("old", old_binary), ("new", new_binary)]
                } else {
                    [("new", new_binary), ("old", old_binary)]
                };
                let mut measured = Vec::with_capacity(2);
                for (side, binary) in order {
                    let run = crate::measure_run(binary, &load, scenario, args, round)?;
                    done += 1;
                    eprintln!(
                        "bench: [{done:>2}/{total}] round {round} {} {:<18} {side} {:<16} {:>10.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  CPU µs/req server {:.2}",
                        scenario.id,
                        scenario.shape(),
                        binary.kind.to_string(),
                        run.load.throughput_rps,
                        run.load.latency.p50_us,
                        run.load.latency.p99_us,
                        run.server_cpu_us_per_request(),
                    );
                    measured.push((side, run));
                }
                let (old_run, new_run) = if old_first {
                    (&measured[0].1, &measured[1].1)
                } else {
                    (&measured[1].1, &measured[0].1)
                };
                let throughput = new_run.load.throughput_rps
                    / old_run.load.throughput_rps.max(f64::MIN_POSITIVE);
                let p99 = new_run.load.latency.p99_us / old_run.load.latency.p99_us.max(1.0);
                match ratios
                    .iter_mut()
                    .find(|r| r.scenario == scenario.id && r.server == new_binary.kind)
                {
                    Some(row) => {
                        row.throughput.push(throughput);
                        row.p99.push(p99);
                    }
                    None => ratios.push(Ratios {
                        scenario: scenario.id,
                        server: new_binary.kind,
                        throughput: vec![throughput],
                        p99: vec![p99],
                    }),
                }
                runs.extend(
                    measured
                        .into_iter()
                        .map(|(side, run)| serde_json::json!({ "side": side, "run": run })),
                );
            }
        }
    }
    machine.load_average_end = crate::load_average();
    let table = table(&revision, &ratios);
    println!(
        "new = this working tree, {} = commit {} (`cargo xtask bench --baseline`); \
         {} rounds of {} s, --workers {}\n",
        revision.name, revision.commit, args.rounds, args.duration, args.workers
    );
    println!("{table}");
    let json = serde_json::json!({
        "command": crate::command_line(),
        "machine": machine,
        "baseline": { "name": revision.name, "commit": revision.commit },
        "workers": args.workers,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "ratios": ratios,
        "runs": runs,
    });
    let json_path = out_dir.join("baseline.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("bench: wrote {}", json_path.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository() -> PathBuf {
        crate::workspace_root()
    }

    fn git(args: &[&str]) -> String {
        let output = Command::new("git")
            .current_dir(repository())
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn a_revision_resolves_to_its_full_commit() {
        let head = git(&["rev-parse", "HEAD"]);
        let revision = resolve(&repository(), "HEAD").unwrap();
        assert_eq!(revision.commit, head);
        assert_eq!(revision.name, "HEAD");
        // An abbreviated hash names the same commit, and the worktree folder by its 12 digits.
        let short = resolve(&repository(), &head[..9]).unwrap();
        assert_eq!(short.commit, head);
        assert_eq!(
            short.worktree(Path::new("/t")),
            Path::new("/t/bench-baseline").join(&head[..12])
        );
    }

    #[test]
    fn an_unknown_revision_is_an_error_naming_it() {
        for rev in ["no-such-branch-or-tag", "0000000000", "", "--all"] {
            let error = resolve(&repository(), rev).unwrap_err().to_string();
            assert!(error.contains("--baseline"), "{rev}: {error}");
        }
        // A tree or a blob is not a commit.
        let tree = git(&["rev-parse", "HEAD^{tree}"]);
        assert!(resolve(&repository(), &tree).is_err());
    }

    #[test]
    fn the_spread_is_median_low_and_high() {
        assert_eq!(spread(&[1.02, 0.98, 1.10]), (1.02, 0.98, 1.10));
        assert_eq!(spread(&[1.0, 0.9]), (0.95, 0.9, 1.0));
        let revision = Revision {
            name: "c308ef5".into(),
            commit: "c308ef5c282d02fe15f8118e395a32803c1f1001".into(),
        };
        let table = table(
            &revision,
            &[Ratios {
                scenario: "S2",
                server: ServerKind::Handoff,
                throughput: vec![1.02, 0.98, 1.10],
                p99: vec![0.9, 1.0, 0.8],
            }],
        );
        assert!(
            table.contains(
                "| S2 | handoff_server | 3 | 1.020 (0.980–1.100) | 0.900 (0.800–1.000) |"
            ),
            "{table}"
        );
        assert!(table.contains("new / c308ef5"), "{table}");
    }
}
