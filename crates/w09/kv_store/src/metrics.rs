//! Observability: operation counters and a fixed-bucket latency histogram per operation.
//!
//! Every counter is an `AtomicU64` updated with `Relaxed` ordering: each is a tally that no
//! other memory access depends on, so a `STATS` reader needs no ordering, only eventually
//! complete sums (a `STATS` taken while commands run may count an operation in `gets` before
//! its latency sample lands, and that is fine for a monitoring line).
//!
//! Each lock shard of a [`KvEngine`](crate::KvEngine) has its own [`OpMetrics`], on its own
//! cache line: two threads working in different shards then never write the same line, which
//! would otherwise cost as much as the lock the sharding saves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many buckets a [`LatencyHistogram`] has. Bucket `i` counts samples of at most `2^i`
/// nanoseconds (and more than `2^(i-1)`); the last bucket also takes everything slower,
/// from about 9 minutes up.
pub const LATENCY_BUCKETS: usize = 40;

/// Latency samples in power-of-two nanosecond buckets.
///
/// Fixed buckets make recording one atomic add and reading a walk over 40 counters, with no
/// allocation and no lock; the price is resolution: a percentile is reported as the upper bound
/// of its bucket, so it is exact to within a factor of two.
///
/// ```
/// use kv_store::LatencyHistogram;
/// use std::time::Duration;
///
/// let histogram = LatencyHistogram::new();
/// for micros in [1, 2, 3, 100] {
///     histogram.record(Duration::from_micros(micros));
/// }
/// assert_eq!(histogram.count(), 4);
/// assert_eq!(histogram.percentile_ns(0.50), 2048); // 2 µs lands in (1024, 2048] ns
/// assert_eq!(histogram.percentile_ns(0.99), 131_072); // 100 µs lands in (65536, 131072] ns
/// ```
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Adds one sample.
    pub fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.snapshot().count()
    }

    /// The bucket upper bound, in nanoseconds, at `quantile`: see [`BucketCounts::percentile_ns`].
    pub fn percentile_ns(&self, quantile: f64) -> u64 {
        self.snapshot().percentile_ns(quantile)
    }

    /// The bucket counts as they are now, to read or to merge with other histograms'.
    pub fn snapshot(&self) -> BucketCounts {
        BucketCounts {
            counts: std::array::from_fn(|index| self.buckets[index].load(Ordering::Relaxed)),
        }
    }
}

/// A copy of a [`LatencyHistogram`]'s buckets: the sharded store merges one per shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketCounts {
    counts: [u64; LATENCY_BUCKETS],
}

impl Default for BucketCounts {
    fn default() -> Self {
        Self {
            counts: [0; LATENCY_BUCKETS],
        }
    }
}

impl BucketCounts {
    /// Adds another histogram's counts to these.
    pub fn merge(&mut self, other: &BucketCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }

    /// How many samples there are.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound, in nanoseconds, of the bucket holding the sample at `quantile`
    /// (0.5 for the median, 0.99 for p99): the smallest bucket bound that at least that share
    /// of the samples stays under. 0 when there are no samples.
    pub fn percentile_ns(&self, quantile: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        // The rank of the sample at `quantile`, counting from 1: ceil(q * total), at least 1.
        let rank = ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return 1 << index;
            }
        }
        1 << (LATENCY_BUCKETS - 1)
    }
}

/// The bucket for a sample of `nanos`: ceil(log2(nanos)), so bucket `i` holds (2^(i-1), 2^i].
fn bucket_of(nanos: u64) -> usize {
    let bucket = if nanos <= 1 {
        0
    } else {
        (u64::BITS - (nanos - 1).leading_zeros()) as usize
    };
    bucket.min(LATENCY_BUCKETS - 1)
}

/// The per-shard tallies of a store's operations.
#[derive(Debug, Default)]
pub struct OpMetrics {
    /// `GET` commands answered (found or not).
    pub gets: AtomicU64,
    /// `SET` commands applied.
    pub sets: AtomicU64,
    /// `DEL` commands answered (deleted or not).
    pub dels: AtomicU64,
    /// Entries removed because they expired, by a lookup or by a sweep.
    pub expired: AtomicU64,
    /// How long each `GET` took, lock wait included.
    pub get_latency: LatencyHistogram,
    /// How long each `SET` took, lock wait included.
    pub set_latency: LatencyHistogram,
    /// How long each `DEL` took, lock wait included.
    pub del_latency: LatencyHistogram,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
