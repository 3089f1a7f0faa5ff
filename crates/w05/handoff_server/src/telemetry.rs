//! Overload telemetry (W06 L05; its `stats` line is W06 L01's): what the controls did, counted
//! exactly, and how long requests took.
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
//! Latencies go into a [`LatencyHistogram`] on the loop: HdrHistogram's bucket layout (three
//! significant digits, 1 µs to 1 hour) in a fixed array, because the loop records one latency per
//! worker request and the `hdrhistogram` crate's general `record` (any bounds, any precision,
//! checked counts, min and max kept) cost about a twentieth of the server's instructions per
//! request; this one is a shift, a count and an add. A percentile is the highest value of its
//! bucket, so it is never reported lower than measured.
//! With `--stats-interval-ms N` the loop also prints `stats <the stats line>` to stderr every
//! N ms, for watching a flood as it happens.

use std::io::Write as _;
use std::time::Duration;

use handoff_protocol::Stats;

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
    // starter: w06-l01 todo "Do 4: the protocol line from base without its newline, then the seven keys, then a newline"
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

/// The largest latency recorded exactly (one hour); longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Values below this are counted exactly, one bucket each; from there on every power of two is
/// split into `SUB_BUCKETS / 2` buckets, so a bucket is never wider than 1/1024 of its values:
/// three significant digits, as HdrHistogram's `new_with_bounds(1, MAX_LATENCY_US, 3)`.
const SUB_BUCKETS: u64 = 2048;
/// `log2(SUB_BUCKETS / 2)`: the bits of a value kept below its leading one.
const SUB_BITS: u32 = 10;
/// Buckets for 0 ..= [`MAX_LATENCY_US`]: `SUB_BUCKETS` exact ones, then `SUB_BUCKETS / 2` per
/// power of two up to 2^32 (an hour is about 2^31.7 µs).
const BUCKETS: usize = (SUB_BUCKETS + (32 - SUB_BITS as u64 - 1) * (SUB_BUCKETS / 2)) as usize;

/// Latencies in microseconds, counted in fixed buckets of three significant digits (see the
/// module docs); the same questions as an HdrHistogram answers, in the same way.
pub(crate) struct LatencyHistogram {
    counts: Box<[u64]>,
    total: u64,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl LatencyHistogram {
    /// An empty histogram (its buckets are one zeroed allocation).
    pub(crate) fn new() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }

    // starter: w06-l05 todo "Do 1: below SUB_BUCKETS the value itself, else the shift and the leading SUB_BITS + 1 bits"
    /// The bucket of `micros` (at most [`MAX_LATENCY_US`]).
    fn index(micros: u64) -> usize {
        if micros < SUB_BUCKETS {
            return micros as usize;
        }
        // `shift` drops all but the 11 leading bits: the value's bucket within its power of two.
        let shift = (u64::BITS - 1 - micros.leading_zeros()) - SUB_BITS;
        ((u64::from(shift) << SUB_BITS) + (micros >> shift)) as usize
    }

    // starter: w06-l05 todo "Do 1: the inverse of index: the lowest and highest value of the bucket"
    /// The lowest and the highest value counted in bucket `index`.
    fn bounds(index: usize) -> (u64, u64) {
        let index = index as u64;
        if index < SUB_BUCKETS {
            return (index, index);
        }
        let shift = (index >> SUB_BITS) - 1;
        let leading = index - (shift << SUB_BITS);
        (leading << shift, ((leading + 1) << shift) - 1)
    }

    // starter: w06-l05 empty "Do 2: clamp to 1..=MAX_LATENCY_US, count one in its bucket and in total"
    /// Counts one latency of `micros`, clamped to 1 ..= [`MAX_LATENCY_US`].
    pub(crate) fn record(&mut self, micros: u64) {
        self.counts[Self::index(micros.clamp(1, MAX_LATENCY_US))] += 1;
        self.total += 1;
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    // starter: w06-l05 todo "Do 3: the rank, at least 1, then walk the buckets until that many are seen"
    /// The lowest value of the bucket holding the value at `quantile` (0.5 for the median), as
    /// HdrHistogram's `value_at_quantile`; 0 when empty.
    pub(crate) fn value_at_quantile(&self, quantile: f64) -> u64 {
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::bounds(index).0;
            }
        }
        0
    }

    // starter: w06-l05 todo "Do 3: the high bound of the bucket of micros, capped at MAX_LATENCY_US"
    /// The highest value counted in the same bucket as `micros`, as HdrHistogram's
    /// `highest_equivalent`.
    pub(crate) fn highest_equivalent(&self, micros: u64) -> u64 {
        Self::bounds(Self::index(micros.min(MAX_LATENCY_US))).1
    }

    // starter: w06-l05 todo "Do 4: add other's counts bucket by bucket, and its total"
    /// Adds `other`'s counts to these.
    pub(crate) fn add(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
    }
}

/// The loop's latency histogram and timeout count.
#[derive(Debug)]
pub(crate) struct Telemetry {
    latency: LatencyHistogram,
    timeouts: u64,
}

impl Telemetry {
    /// Empty counters.
    pub(crate) fn new() -> Self {
        Telemetry {
            latency: LatencyHistogram::new(),
            timeouts: 0,
        }
    }

    /// A worker request's answer was committed `latency` after the request was read;
    /// `timed_out` when that answer is the timeout.
    pub(crate) fn record(&mut self, latency: Duration, timed_out: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.record(micros);
        self.timeouts += u64::from(timed_out);
    }

    /// Adds `other`'s latencies and timeouts to these (another loop's, for a `stats` of every
    /// loop): the percentiles of the sum are those of all the requests together.
    pub(crate) fn add(&mut self, other: &Telemetry) {
        self.latency.add(&other.latency);
        self.timeouts += other.timeouts;
    }

    /// Requests answered with a timeout so far.
    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts
    }

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
