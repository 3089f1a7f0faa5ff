//! The W06 overload controls, composed: what the loop asks before it hands a worker request to
//! the pool, and what it records when the answer is committed.
//!
//! Each control has a module of its own, one per lesson: [`admission`](crate::admission) (the
//! gate, W06 L01, and shedding, L02), [`deadline`](crate::deadline) (timeouts, L03),
//! [`retry`](crate::retry) (the retry budget, L04) and [`telemetry`](crate::telemetry) (L05).
//! [`Overload`] holds one of each for the server; the loop calls [`Overload::admit`] for every
//! worker request it reads and [`Overload::settle`] when the request's answer takes its place.
//! Every control is off by default, and then `admit` admits everything: the W05 server, unchanged.

use std::time::{Duration, Instant};

use crate::admission::{DrainRate, Gate, GateLimits, OverloadReply, QueueGauge};
use crate::deadline::Deadlines;
use crate::retry::RetryBudget;
use crate::telemetry::{OverloadStats, Telemetry};

/// The overload settings from the command line; the default turns every control off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Controls {
    /// `--max-inflight` and `--max-queue-depth`.
    pub(crate) gate: GateLimits,
    /// `--request-timeout-ms`.
    pub(crate) request_timeout: Option<Duration>,
    /// `--max-retry-ratio`.
    pub(crate) max_retry_ratio: Option<f64>,
    /// `--stats-interval-ms`.
    pub(crate) stats_interval: Option<Duration>,
}

/// What the controls decided about a worker request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Admission {
    /// Go ahead: the request is in flight from `read_at`.
    Admitted {
        /// When the request was read; its latency and deadline count from here.
        read_at: Instant,
    },
    /// HandoffAnswer the request with this instead, at once, in its place.
    Refused(OverloadReply),
}

/// The server's overload state: one of each control (see the module docs).
#[derive(Debug)]
pub(crate) struct Overload<K> {
    gate: Gate,
    /// Requests waiting for a worker, for the gate's `--max-queue-depth`.
    pub(crate) queue: QueueGauge,
    /// Deadlines of the admitted requests, for the loop's timeout timer.
    pub(crate) deadlines: Deadlines<K>,
    retry: RetryBudget,
    telemetry: Telemetry,
    drain: DrainRate,
}

impl<K: Copy> Overload<K> {
    /// The controls `controls` asks for, with nothing counted yet.
    pub(crate) fn new(controls: &Controls) -> Self {
        Overload {
            gate: Gate::new(controls.gate),
            queue: QueueGauge::default(),
            deadlines: Deadlines::new(controls.request_timeout),
            retry: RetryBudget::new(controls.max_retry_ratio),
            telemetry: Telemetry::new(),
            drain: DrainRate::new(Instant::now()),
        }
    }

    /// Decides about worker request `seq` of connection `key`, just read (a retry if `retry`).
    ///
    /// In this order: a retry beyond the retry budget is refused; then a request the gate has no
    /// room for is shed; anything else is admitted and, with a timeout, gets its deadline. The
    /// second value is a deadline the loop's timer must be armed for (see
    /// [`Deadlines::push`]). A refusal is counted here, since its answer is committed at once.
    pub(crate) fn admit(&mut self, key: K, seq: u64, retry: bool) -> (Admission, Option<Instant>) {
        let now = Instant::now();
        if retry {
            if !self.retry.admit_retry() {
                return (
                    Admission::Refused(OverloadReply::RetryBudgetExhausted),
                    None,
                );
            }
        } else {
            self.retry.first_try();
        }
        if !self.gate.has_room(self.queue.depth()) {
            self.gate.shed();
            let retry_after_ms = self.drain.retry_after_ms(self.gate.inflight(), now);
            return (
                Admission::Refused(OverloadReply::Overloaded { retry_after_ms }),
                None,
            );
        }
        self.gate.admit();
        let arm = self.deadlines.push(now, key, seq);
        (Admission::Admitted { read_at: now }, arm)
    }

    /// An admitted request's answer took its place: its result if `timed_out` is false, the
    /// timeout otherwise.
    pub(crate) fn settle(&mut self, read_at: Instant, timed_out: bool) {
        let now = Instant::now();
        self.gate.settle(1);
        self.telemetry
            .record(now.saturating_duration_since(read_at), timed_out);
        if !timed_out {
            self.drain.record(now);
        }
    }

    /// A connection closed with `count` admitted requests unanswered: they are no longer in
    /// flight (their late results are dropped when they come).
    pub(crate) fn forget(&mut self, count: usize) {
        self.gate.settle(count);
    }

    /// The `timeout after <ms>` of this server, if it times requests out.
    pub(crate) fn timeout_reply(&self) -> Option<OverloadReply> {
        self.deadlines
            .timeout_ms()
            .map(|after_ms| OverloadReply::Timeout { after_ms })
    }

    /// The overload keys for a `stats` line.
    pub(crate) fn stats(&self) -> OverloadStats {
        OverloadTally::stats_of(
            [
                self.gate.inflight() as u64,
                self.gate.peak() as u64,
                self.gate.shed_count(),
                self.retry.rejects(),
            ],
            &self.telemetry,
        )
    }

    /// This loop's counters, for a `stats` that adds up every loop's (`--loops` N > 1).
    pub(crate) fn tally(&self) -> OverloadTally {
        let mut telemetry = Telemetry::new();
        telemetry.add(&self.telemetry);
        OverloadTally {
            inflight: self.gate.inflight() as u64,
            inflight_peak: self.gate.peak() as u64,
            shed: self.gate.shed_count(),
            retry_rejects: self.retry.rejects(),
            telemetry,
        }
    }
}

/// The overload counters of one loop, or of several added up: a `stats` answer of a server with
/// several loops is the sum of every loop's tally.
///
/// Each loop has a gate of its own, with its exact share of `--max-inflight` (see the `loops`
/// module), so `inflight` adds up exactly; `inflight_peak` adds the loops' peaks, which bounds the
/// process's peak from above and, like each share, never exceeds the limit.
#[derive(Debug)]
pub(crate) struct OverloadTally {
    inflight: u64,
    inflight_peak: u64,
    shed: u64,
    retry_rejects: u64,
    telemetry: Telemetry,
}

impl Default for OverloadTally {
    fn default() -> Self {
        OverloadTally {
            inflight: 0,
            inflight_peak: 0,
            shed: 0,
            retry_rejects: 0,
            telemetry: Telemetry::new(),
        }
    }
}

impl OverloadTally {
    /// Adds another loop's tally to this one.
    pub(crate) fn add(&mut self, other: &OverloadTally) {
        self.inflight += other.inflight;
        self.inflight_peak += other.inflight_peak;
        self.shed += other.shed;
        self.retry_rejects += other.retry_rejects;
        self.telemetry.add(&other.telemetry);
    }

    /// The overload keys of a `stats` line for these counters.
    pub(crate) fn stats(&self) -> OverloadStats {
        Self::stats_of(
            [
                self.inflight,
                self.inflight_peak,
                self.shed,
                self.retry_rejects,
            ],
            &self.telemetry,
        )
    }

    /// The keys from `[inflight, inflight_peak, shed, retry_rejects]` and the latencies.
    fn stats_of(counts: [u64; 4], telemetry: &Telemetry) -> OverloadStats {
        let [inflight, inflight_peak, shed, retry_rejects] = counts;
        OverloadStats {
            inflight,
            inflight_peak,
            shed,
            timeouts: telemetry.timeouts(),
            retry_rejects,
            p50_us: telemetry.percentile_us(0.5),
            p99_us: telemetry.percentile_us(0.99),
        }
    }
}
