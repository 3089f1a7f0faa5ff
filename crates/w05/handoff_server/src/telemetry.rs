//! Overload telemetry (W06 L05): what the controls did, counted exactly, and how long requests
//! took.
//!
//! `stats` keeps the protocol's keys and gains, after them:
//!
//! | key | meaning |
//! |---|---|
//! | `inflight` | worker requests admitted and not yet answered, across every connection |
//! | `inflight_peak` | the most that were ever in flight at once (never above `--max-inflight`) |
//! | `shed` | requests answered `ERROR: overloaded, retry after <ms> ms` |
//! | `timeouts` | requests answered `ERROR: timeout after <N> ms` |
//! | `retry_rejects` | retries answered `ERROR: retry budget exhausted` |
//! | `p50_us`, `p99_us` | the median and 99th percentile of the time from reading a worker request to committing its answer (result or timeout), in microseconds, since the server started |
//!
//! Each counter moves exactly once per answer, at the moment the answer takes its place in the
//! connection's order, on the loop — the one thread that writes answers. So once a client has
//! read its answers, the counts in a later `stats` equal what it saw.
//!
//! Latencies go into an HdrHistogram (three significant digits, 1 µs to 1 hour) on the loop; a
//! percentile is the highest value of its bucket, so it is never reported lower than measured.
//! With `--stats-interval-ms N` the loop also prints `stats <the stats line>` to stderr every
//! N ms, for watching a flood as it happens.

use std::io::Write as _;
use std::time::Duration;

use handoff_protocol::Stats;
use hdrhistogram::Histogram;

/// The overload keys of a `stats` line (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OverloadStats {
    /// Worker requests admitted and not yet answered.
    pub(crate) inflight: u64,
    /// The most ever in flight at once.
    pub(crate) inflight_peak: u64,
    /// Requests shed by the gate.
    pub(crate) shed: u64,
    /// Requests answered with a timeout.
    pub(crate) timeouts: u64,
    /// Retries rejected by the retry budget.
    pub(crate) retry_rejects: u64,
    /// Median latency, in microseconds.
    pub(crate) p50_us: u64,
    /// 99th percentile latency, in microseconds.
    pub(crate) p99_us: u64,
}

impl OverloadStats {
    // starter: w06-l05 todo "write_line"
    /// Appends the whole `stats` line: the protocol's keys from `base`, then these, then `\n`.
    pub(crate) fn write_line(&self, base: &Stats, out: &mut Vec<u8>) {
        base.write_to(out);
        // `Stats::write_to` ends the line; the overload keys continue it.
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        // Writing into a Vec cannot fail.
        let _ = writeln!(
            out,
            " inflight={} inflight_peak={} shed={} timeouts={} retry_rejects={} p50_us={} p99_us={}",
            self.inflight,
            self.inflight_peak,
            self.shed,
            self.timeouts,
            self.retry_rejects,
            self.p50_us,
            self.p99_us
        );
    }
}

/// The loop's latency histogram and timeout count.
#[derive(Debug)]
pub(crate) struct Telemetry {
    latency: Histogram<u64>,
    timeouts: u64,
}

/// The largest latency recorded exactly (one hour); longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

impl Telemetry {
    // starter: w06-l05 todo "new"
    /// Empty counters.
    pub(crate) fn new() -> Self {
        Telemetry {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("the bounds are valid"),
            timeouts: 0,
        }
    }

    // starter: w06-l05 todo "record"
    /// A worker request's answer was committed `latency` after the request was read;
    /// `timed_out` when that answer is the timeout.
    pub(crate) fn record(&mut self, latency: Duration, timed_out: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency
            .saturating_record(micros.clamp(1, MAX_LATENCY_US));
        self.timeouts += u64::from(timed_out);
    }

    // starter: w06-l05 todo "add"
    /// Adds `other`'s latencies and timeouts to these (another loop's, for a `stats` of every
    /// loop): the percentiles of the sum are those of all the requests together.
    pub(crate) fn add(&mut self, other: &Telemetry) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.timeouts += other.timeouts;
    }

    // starter: w06-l05 todo "timeouts"
    /// Requests answered with a timeout so far.
    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts
    }

    // starter: w06-l05 todo "percentile_us"
    /// The latency at `quantile` (0.5 for the median) in microseconds, as the highest value of
    /// its bucket; 0 before anything was recorded.
    pub(crate) fn percentile_us(&self, quantile: f64) -> u64 {
        if self.latency.is_empty() {
            return 0;
        }
        self.latency
            .highest_equivalent(self.latency.value_at_quantile(quantile))
    }
}

#[cfg(test)]
mod tests;
