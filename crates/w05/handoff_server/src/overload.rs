//! The W06 overload controls, composed: what the loop asks before it hands a worker request to
//! the pool, and what it records when the answer is committed.
//!
//! Each control has a module of its own, one per lesson: [`admission`](crate::admission) (the
//! gate, W06 L01, and shedding, L02), [`deadline`](crate::deadline) (timeouts, L03),
//! [`retry`](crate::retry) (the retry budget, L04) and [`telemetry`](crate::telemetry) (L05).
//! [`Overload`] holds one of each for the server; the loop calls [`Overload::admit`] for every
//! worker request it reads and [`Overload::settle`] when the request's answer takes its place.
//! Every control is off by default, and then `admit` admits everything: the W05 server, unchanged.
//!
//! ## What the controls cost per request
//!
//! `admit` and `settle` run on the loop for every worker request, so they read no clock of their
//! own: the caller passes a [`Now`], one reading of the clock shared by every request the loop
//! handles in one go (the lines of one receive, the replies of one finished batch), and a
//! request carries its read time as a [`LoopTime`], microseconds on the loop's clock, so that its
//! latency is one subtraction. A latency is therefore measured from the loop's reading before
//! the request's line was handled to its reading before the answer was committed: never shorter
//! than the request really took, and longer by at most the loop's time for one receive or one
//! batch. With every control off, `admit` only counts the request into the gate and `settle`
//! only counts it out and records its latency for `stats`.
//!
//! A control that is off is not asked at all: no deadline is queued without a timeout, no retry
//! budget exists without a ratio, and the drain rate is fed only when the gate can shed. That
//! keeps the cost of an unused control at a branch, and it is what lets the course's W06 starter
//! run each lesson with the later lessons' controls still unwritten.

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

/// An instant on one loop's clock: microseconds since the loop's [`Overload`] was made.
///
/// It is what an unanswered request carries as its read time: 8 bytes, and a latency is one
/// subtraction, where an [`Instant`] is 16 bytes and its difference a checked `timespec`
/// subtraction (about a tenth of what the server spends per request, measured with callgrind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LoopTime(u64);

impl LoopTime {
    /// Microseconds from `earlier` to this time; 0 if `earlier` is later.
    pub(crate) fn micros_since(self, earlier: LoopTime) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// One reading of the clock, both ways the controls use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// For deadlines and the drain rate, which compare with other instants.
    pub(crate) instant: Instant,
    /// For latencies.
    pub(crate) at: LoopTime,
}

/// What the controls decided about a worker request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Admission {
    /// Go ahead: the request is in flight from `read_at`.
    Admitted {
        /// When the request was read; its latency counts from here.
        read_at: LoopTime,
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
    /// The retry budget, with `--max-retry-ratio`; without one every retry is admitted.
    retry: Option<RetryBudget>,
    telemetry: Telemetry,
    drain: DrainRate,
    /// Whether the gate may shed (`--max-inflight` or `--max-queue-depth`): only then is the
    /// drain rate, which words a shed request's answer, worth measuring.
    sheds: bool,
    /// Whether requests time out (`--request-timeout-ms`): only then do they get a deadline.
    times_out: bool,
    /// Whether any control may refuse or time out a request (the gate's limits, a timeout, a
    /// retry budget). Without one, [`admit`](Self::admit) only counts the request in.
    controlled: bool,
    /// The zero of this loop's [`LoopTime`].
    epoch: Instant,
}

impl<K: Copy> Overload<K> {
    /// The controls `controls` asks for, with nothing counted yet.
    pub(crate) fn new(controls: &Controls) -> Self {
        let epoch = Instant::now();
        Overload {
            gate: Gate::new(controls.gate),
            queue: QueueGauge::default(),
            deadlines: Deadlines::new(controls.request_timeout),
            retry: controls.max_retry_ratio.map(RetryBudget::new),
            telemetry: Telemetry::new(),
            drain: DrainRate::new(epoch),
            sheds: controls.gate != GateLimits::default(),
            times_out: controls.request_timeout.is_some(),
            controlled: controls.gate != GateLimits::default()
                || controls.request_timeout.is_some()
                || controls.max_retry_ratio.is_some(),
            epoch,
        }
    }

    /// Reads the clock, for the [`admit`](Self::admit) and [`settle`](Self::settle) calls of
    /// one go of the loop.
    pub(crate) fn now(&self) -> Now {
        let instant = Instant::now();
        let micros = instant.saturating_duration_since(self.epoch).as_micros();
        Now {
            instant,
            at: LoopTime(u64::try_from(micros).unwrap_or(u64::MAX)),
        }
    }

    /// Decides about worker request `seq` of connection `key`, read at `now` (a retry if
    /// `retry`).
    ///
    /// In this order: a retry beyond the retry budget is refused; then a request the gate has no
    /// room for is shed; anything else is admitted and, with a timeout, gets its deadline. The
    /// second value is a deadline the loop's timer must be armed for (see
    /// [`Deadlines::push`]). A refusal is counted here, since its answer is committed at once.
    #[inline]
    pub(crate) fn admit(
        &mut self,
        now: Now,
        key: K,
        seq: u64,
        retry: bool,
    ) -> (Admission, Option<Instant>) {
        if !self.controlled {
            // Every control off: nothing can refuse or time out the request, so it is only
            // counted in flight (`stats` reports that count whatever the controls).
            self.gate.admit();
            return (Admission::Admitted { read_at: now.at }, None);
        }
        self.admit_controlled(now, key, seq, retry)
    }

    /// [`admit`](Self::admit) with at least one control on.
    fn admit_controlled(
        &mut self,
        now: Now,
        key: K,
        seq: u64,
        retry: bool,
    ) -> (Admission, Option<Instant>) {
        if let Some(budget) = &mut self.retry {
            if !retry {
                budget.first_try();
            } else if !budget.admit_retry() {
                return (
                    Admission::Refused(OverloadReply::RetryBudgetExhausted),
                    None,
                );
            }
        }
        if !self.gate.has_room(self.queue.depth()) {
            self.gate.shed();
            let retry_after_ms = self.drain.retry_after_ms(self.gate.inflight(), now.instant);
            return (
                Admission::Refused(OverloadReply::Overloaded { retry_after_ms }),
                None,
            );
        }
        self.gate.admit();
        let arm = if self.times_out {
            self.deadlines.push(now.instant, key, seq)
        } else {
            None
        };
        (Admission::Admitted { read_at: now.at }, arm)
    }

    /// An admitted request read at `read_at` had its answer take its place at `now`: its result
    /// if `timed_out` is false, the timeout otherwise.
    #[inline]
    pub(crate) fn settle(&mut self, now: Now, read_at: LoopTime, timed_out: bool) {
        self.gate.settle(1);
        self.telemetry.record(
            Duration::from_micros(now.at.micros_since(read_at)),
            timed_out,
        );
        if self.sheds && !timed_out {
            self.drain.record(now.instant);
        }
    }

    /// A connection closed with `count` admitted requests unanswered: they are no longer in
    /// flight (their late results are dropped when they come).
    pub(crate) fn forget(&mut self, count: usize) {
        self.gate.settle(count);
    }

    /// The `timeout after <ms>` of this server, if it times requests out.
    pub(crate) fn timeout_reply(&self) -> Option<OverloadReply> {
        if !self.times_out {
            return None;
        }
        self.deadlines
            .timeout_ms()
            .map(|after_ms| OverloadReply::Timeout { after_ms })
    }

    /// Retries rejected by the budget so far (none without a budget).
    fn retry_rejects(&self) -> u64 {
        self.retry.as_ref().map_or(0, RetryBudget::rejects)
    }

    /// The overload keys for a `stats` line.
    pub(crate) fn stats(&self) -> OverloadStats {
        OverloadTally::stats_of(
            [
                self.gate.inflight() as u64,
                self.gate.peak() as u64,
                self.gate.shed_count(),
                self.retry_rejects(),
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
            retry_rejects: self.retry_rejects(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `now` moved on by `micros`.
    fn later(now: Now, micros: u64) -> Now {
        Now {
            instant: now.instant + Duration::from_micros(micros),
            at: LoopTime(now.at.0 + micros),
        }
    }

    #[test]
    fn with_every_control_off_a_request_is_counted_in_and_out_with_its_latency() {
        let mut overload: Overload<u32> = Overload::new(&Controls::default());
        let read = overload.now();
        for seq in 0..3 {
            let (admission, arm) = overload.admit(read, 7, seq, seq == 1);
            assert_eq!(admission, Admission::Admitted { read_at: read.at });
            assert_eq!(arm, None);
        }
        assert_eq!(
            (overload.stats().inflight, overload.stats().inflight_peak),
            (3, 3)
        );
        for _ in 0..3 {
            overload.settle(later(read, 5_000), read.at, false);
        }
        let stats = overload.stats();
        assert_eq!((stats.inflight, stats.shed, stats.retry_rejects), (0, 0, 0));
        assert!((5_000..=5_003).contains(&stats.p50_us), "{stats:?}");
        // Nothing a control keeps moved: no deadline, no drain rate.
        assert_eq!(overload.deadlines.next_deadline(), None);
    }

    #[test]
    fn a_control_that_is_on_still_refuses() {
        let controls = Controls {
            gate: GateLimits {
                max_inflight: Some(1),
                ..GateLimits::default()
            },
            request_timeout: Some(Duration::from_millis(50)),
            ..Controls::default()
        };
        let mut overload: Overload<u32> = Overload::new(&controls);
        let now = overload.now();
        let (first, arm) = overload.admit(now, 1, 0, false);
        assert_eq!(first, Admission::Admitted { read_at: now.at });
        assert_eq!(arm, Some(now.instant + Duration::from_millis(50)));
        let (second, _) = overload.admit(now, 1, 1, false);
        assert!(matches!(
            second,
            Admission::Refused(OverloadReply::Overloaded { .. })
        ));
        overload.settle(later(now, 10), now.at, false);
        assert_eq!(overload.stats().shed, 1);
    }

    #[test]
    fn loop_times_subtract_without_going_below_zero() {
        assert_eq!(LoopTime(10).micros_since(LoopTime(4)), 6);
        assert_eq!(LoopTime(4).micros_since(LoopTime(10)), 0);
        let overload: Overload<u32> = Overload::new(&Controls::default());
        let (a, b) = (overload.now(), overload.now());
        assert!(b.at >= a.at && b.instant >= a.instant);
    }
}
