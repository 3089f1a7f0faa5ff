//! Unit tests of `telemetry`, in a file of their own so the course's starter code can declare
//! them and run these very tests against a student's code.

use super::*;

#[test]
fn the_overload_keys_follow_the_protocol_keys_on_one_line() {
    let base = Stats {
        connections: 1,
        workers: 2,
        ..Stats::default()
    };
    let overload = OverloadStats {
        inflight: 3,
        inflight_peak: 10,
        shed: 4,
        timeouts: 5,
        retry_rejects: 6,
        p50_us: 700,
        p99_us: 8000,
    };
    let mut out = Vec::new();
    overload.write_line(&base, &mut out);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "connections=1 queue_depth=0 workers=2 busy_workers=0 completed=0 errors=0 panics=0 \
         rejected=0 inflight=3 inflight_peak=10 shed=4 timeouts=5 retry_rejects=6 p50_us=700 \
         p99_us=8000\n"
    );
    assert_eq!(
        Stats::parse(&out),
        Some(base),
        "still a protocol stats line"
    );
}

#[test]
fn histogram_percentiles_are_never_below_what_was_measured() {
    let mut telemetry = Telemetry::new();
    assert_eq!(telemetry.percentile_us(0.99), 0, "nothing recorded yet");
    for micros in 1..=1000 {
        telemetry.record(Duration::from_micros(micros), false);
    }
    let p50 = telemetry.percentile_us(0.5);
    let p99 = telemetry.percentile_us(0.99);
    assert!((500..=501).contains(&p50), "p50 {p50}");
    assert!((990..=991).contains(&p99), "p99 {p99}");
    assert_eq!(telemetry.timeouts(), 0);
}

#[test]
fn histogram_records_the_latency_of_a_timeout_and_telemetry_counts_it() {
    let mut telemetry = Telemetry::new();
    telemetry.record(Duration::from_millis(300), true);
    telemetry.record(Duration::from_millis(1), false);
    assert_eq!(telemetry.timeouts(), 1);
    assert!(telemetry.percentile_us(1.0) >= 300_000);
}

#[test]
fn the_histogram_buckets_are_hdrhistograms_three_significant_digits() {
    // Exact below 2048; above, each bucket is at most 1/1024 of its values wide, and the buckets
    // follow each other without a gap or an overlap up to an hour.
    for micros in [1, 2, 1000, 2047] {
        assert_eq!(
            LatencyHistogram::bounds(LatencyHistogram::index(micros)),
            (micros, micros)
        );
    }
    let mut previous_high = 2047;
    for index in 2048..BUCKETS {
        let (low, high) = LatencyHistogram::bounds(index);
        assert_eq!(low, previous_high + 1, "bucket {index}");
        assert!(
            (high - low + 1) * 1024 <= low,
            "bucket {index}: {low}..={high}"
        );
        assert_eq!(LatencyHistogram::index(low), index);
        assert_eq!(LatencyHistogram::index(high), index);
        previous_high = high;
    }
    assert!(previous_high >= MAX_LATENCY_US);
    let mut histogram = LatencyHistogram::new();
    assert!(histogram.is_empty());
    histogram.record(0);
    histogram.record(u64::MAX);
    assert_eq!(histogram.value_at_quantile(0.0), 1, "clamped to 1 µs");
    assert!(histogram.highest_equivalent(histogram.value_at_quantile(1.0)) >= MAX_LATENCY_US);
    assert_eq!(histogram.highest_equivalent(1_000_000), 1_000_447);
}

#[test]
fn added_histograms_answer_for_all_their_values() {
    let mut a = Telemetry::new();
    let mut b = Telemetry::new();
    for micros in 1..=500 {
        a.record(Duration::from_micros(micros), false);
        b.record(Duration::from_micros(micros + 500), micros == 1);
    }
    a.add(&b);
    assert_eq!(a.timeouts(), 1);
    assert!((500..=501).contains(&a.percentile_us(0.5)));
    assert!((990..=991).contains(&a.percentile_us(0.99)));
}
