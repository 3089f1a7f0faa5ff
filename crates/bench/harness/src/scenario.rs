//! The benchmark's scenarios and the targets the handoff server is held to.
//!
//! Each scenario is one `loadgen` configuration. The targets are the project's performance goals:
//! a throughput ratio to the Tokio server (with p99 latency no worse), or for the sleep-bound
//! scenario a share of its ceiling.

use std::fmt;

/// One load configuration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct Scenario {
    /// `S1` … `S6`.
    pub(crate) id: &'static str,
    /// The loadgen mix name.
    pub(crate) mix: &'static str,
    /// Connections.
    pub(crate) connections: usize,
    /// Requests in flight per connection.
    pub(crate) depth: usize,
    /// What the handoff server must reach.
    pub(crate) target: Target,
}

/// A scenario's goal for the handoff server.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Target {
    /// At least `ratio` × the Tokio server's throughput, with p99 no worse than Tokio's.
    VersusTokio {
        /// The throughput ratio to reach.
        ratio: f64,
    },
    /// At least `share` of the ceiling `workers × per_worker` requests per second (a mix whose
    /// throughput is bounded by sleeps).
    ShareOfCeiling {
        /// The fraction of the ceiling to reach.
        share: f64,
        /// Requests per second one worker can serve at most.
        per_worker: f64,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::VersusTokio { ratio } => write!(f, "≥ {ratio}× tokio, p99 ≤ tokio"),
            Target::ShareOfCeiling { share, .. } => {
                write!(f, "≥ {:.0} % of ceiling", share * 100.0)
            }
        }
    }
}

/// The six scenarios, in order.
///
/// S5's ceiling: 10 % of its requests sleep 1 ms on a worker, so one worker completes at most
/// 1,000 sleeps, and therefore at most 10,000 requests, per second.
pub(crate) const ALL: [Scenario; 6] = [
    Scenario {
        id: "S1",
        mix: "compute64",
        connections: 50,
        depth: 1,
        target: Target::VersusTokio { ratio: 1.3 },
    },
    Scenario {
        id: "S2",
        mix: "compute64",
        connections: 50,
        depth: 16,
        target: Target::VersusTokio { ratio: 2.0 },
    },
    Scenario {
        id: "S3",
        mix: "ping",
        connections: 50,
        depth: 16,
        target: Target::VersusTokio { ratio: 1.5 },
    },
    Scenario {
        id: "S4",
        mix: "rehash1000",
        connections: 20,
        depth: 4,
        target: Target::VersusTokio { ratio: 1.3 },
    },
    Scenario {
        id: "S5",
        mix: "mixed",
        connections: 100,
        depth: 2,
        target: Target::ShareOfCeiling {
            share: 0.95,
            per_worker: 10_000.0,
        },
    },
    Scenario {
        id: "S6",
        mix: "ping",
        connections: 1000,
        depth: 1,
        target: Target::VersusTokio { ratio: 1.2 },
    },
];

impl Scenario {
    /// A short description such as `compute64 50×16`.
    pub(crate) fn shape(&self) -> String {
        format!("{} {}×{}", self.mix, self.connections, self.depth)
    }
}

/// Picks scenarios by id (`S1,S3` or `s2`); all of them for an empty list.
pub(crate) fn select(ids: &[String]) -> anyhow::Result<Vec<Scenario>> {
    if ids.is_empty() {
        return Ok(ALL.to_vec());
    }
    ids.iter()
        .map(|id| {
            ALL.iter()
                .find(|s| s.id.eq_ignore_ascii_case(id.trim()))
                .copied()
                .ok_or_else(|| anyhow::anyhow!("unknown scenario {id:?} (S1 … S6)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_by_id_case_insensitively_and_rejects_unknown_ids() {
        let picked = select(&["s2".into(), "S6".into()]).unwrap();
        assert_eq!(
            picked.iter().map(|s| s.id).collect::<Vec<_>>(),
            ["S2", "S6"]
        );
        assert_eq!(select(&[]).unwrap().len(), 6);
        assert!(select(&["S7".into()]).is_err());
    }
}
