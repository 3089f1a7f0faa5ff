//! Unit tests of `admission`, in a file of their own so the course's starter code can declare
//! them and run these very tests against a student's code.

use super::*;

#[test]
fn without_limits_the_gate_always_has_room() {
    let mut gate = Gate::new(GateLimits::default());
    for _ in 0..10_000 {
        assert!(gate.has_room(usize::MAX - 1));
        gate.admit();
    }
    assert_eq!(
        (gate.inflight(), gate.peak(), gate.shed_count()),
        (10_000, 10_000, 0)
    );
}

#[test]
fn max_inflight_closes_the_gate_at_the_limit_and_settling_reopens_it() {
    let mut gate = Gate::new(GateLimits {
        max_inflight: Some(3),
        max_queue_depth: None,
    });
    for _ in 0..3 {
        assert!(gate.has_room(0));
        gate.admit();
    }
    assert!(!gate.has_room(0), "a fourth request must be shed");
    gate.shed();
    gate.settle(1);
    assert!(gate.has_room(0));
    gate.admit();
    assert_eq!((gate.inflight(), gate.peak(), gate.shed_count()), (3, 3, 1));
    gate.settle(3);
    assert_eq!(gate.inflight(), 0);
}

#[test]
fn max_queue_depth_looks_at_the_requests_waiting_for_a_worker() {
    let gate = Gate::new(GateLimits {
        max_inflight: None,
        max_queue_depth: Some(2),
    });
    assert!(gate.has_room(0));
    assert!(gate.has_room(1));
    assert!(!gate.has_room(2));
}

#[test]
fn the_queue_gauge_is_handed_out_minus_started() {
    let mut gauge = QueueGauge::default();
    gauge.handed_out(5);
    assert_eq!(gauge.depth(), 5);
    let started = gauge.started_counter();
    QueueGauge::mark_started(&started, 3);
    assert_eq!(gauge.depth(), 2);
    QueueGauge::mark_started(&started, 2);
    assert_eq!(gauge.depth(), 0);
}

#[test]
fn overload_replies_are_the_documented_lines() {
    let line = |reply: OverloadReply| {
        let mut out = Vec::new();
        reply.write_to(&mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        line(OverloadReply::Overloaded { retry_after_ms: 12 }),
        "ERROR: overloaded, retry after 12 ms\n"
    );
    assert_eq!(
        line(OverloadReply::Timeout { after_ms: 300 }),
        "ERROR: timeout after 300 ms\n"
    );
    assert_eq!(
        line(OverloadReply::RetryBudgetExhausted),
        "ERROR: retry budget exhausted\n"
    );
}

#[test]
fn retry_after_is_the_backlog_at_the_measured_drain_rate() {
    let start = Instant::now();
    let mut rate = DrainRate::new(start);
    assert_eq!(rate.retry_after_ms(10, start), DEFAULT_RETRY_AFTER_MS);
    // 50 results in 250 ms: 200 per second, so 10 requests ahead drain in 50 ms.
    for i in 0..50 {
        rate.record(start + Duration::from_millis(5 * i));
    }
    let now = start + Duration::from_millis(250);
    assert_eq!(rate.retry_after_ms(10, now), 50);
    assert_eq!(
        rate.retry_after_ms(0, now),
        5,
        "at least one request's time"
    );
    assert_eq!(rate.retry_after_ms(1_000_000, now), MAX_RETRY_AFTER_MS);
}

#[test]
fn the_drain_rate_forgets_windows_that_ended_long_ago() {
    let start = Instant::now();
    let mut rate = DrainRate::new(start);
    for _ in 0..1000 {
        rate.record(start);
    }
    // Three windows later with nothing finished: the old burst no longer counts.
    let later = start + 3 * DRAIN_WINDOW;
    assert_eq!(rate.per_second(later), None);
    assert_eq!(rate.retry_after_ms(5, later), DEFAULT_RETRY_AFTER_MS);
}
