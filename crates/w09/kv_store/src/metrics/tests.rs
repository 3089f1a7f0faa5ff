//! Unit tests of the latency histogram.

use super::*;

#[test]
fn buckets_are_powers_of_two() {
    assert_eq!(bucket_of(0), 0);
    assert_eq!(bucket_of(1), 0);
    assert_eq!(bucket_of(2), 1);
    assert_eq!(bucket_of(3), 2);
    assert_eq!(bucket_of(4), 2);
    assert_eq!(bucket_of(5), 3);
    assert_eq!(bucket_of(1 << 20), 20);
    assert_eq!(bucket_of((1 << 20) + 1), 21);
    assert_eq!(bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
}

#[test]
fn percentiles_walk_the_cumulative_counts() {
    let histogram = LatencyHistogram::new();
    assert_eq!(histogram.percentile_ns(0.5), 0, "no samples");
    for _ in 0..90 {
        histogram.record(Duration::from_nanos(100)); // bucket 7: (64, 128]
    }
    for _ in 0..9 {
        histogram.record(Duration::from_nanos(1000)); // bucket 10: (512, 1024]
    }
    histogram.record(Duration::from_secs(3600)); // the last bucket
    assert_eq!(histogram.count(), 100);
    assert_eq!(histogram.percentile_ns(0.0), 128);
    assert_eq!(histogram.percentile_ns(0.5), 128);
    assert_eq!(histogram.percentile_ns(0.90), 128);
    assert_eq!(histogram.percentile_ns(0.91), 1024);
    assert_eq!(histogram.percentile_ns(0.99), 1024);
    assert_eq!(histogram.percentile_ns(0.999), 1 << (LATENCY_BUCKETS - 1));
    assert_eq!(histogram.percentile_ns(1.0), 1 << (LATENCY_BUCKETS - 1));
}

#[test]
fn merged_counts_add_up() {
    let fast = LatencyHistogram::new();
    let slow = LatencyHistogram::new();
    fast.record(Duration::from_nanos(10));
    slow.record(Duration::from_nanos(5000));
    slow.record(Duration::from_nanos(5000));
    let mut merged = fast.snapshot();
    merged.merge(&slow.snapshot());
    assert_eq!(merged.count(), 3);
    assert_eq!(merged.percentile_ns(0.3), 16);
    assert_eq!(merged.percentile_ns(0.5), 8192);
}
