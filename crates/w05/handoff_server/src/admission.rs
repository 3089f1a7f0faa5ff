//! The admission gate (W06 L01) and load shedding (W06 L02).
//!
//! Before the loop hands a worker request to the pool it asks the [`Gate`]: is there room? Two
//! limits decide, both off unless given on the command line:
//!
//! - `--max-inflight N`: worker requests accepted and not yet answered, across every
//!   connection. A request is *in flight* from the moment the gate admits it until its answer
//!   takes its place in the connection's order (the worker's result, or the timeout of W06 L03),
//!   or until its connection goes away.
//! - `--max-queue-depth N`: requests handed out by the loop that no worker has started yet
//!   (a [`QueueGauge`]).
//!
//! A request the gate refuses is **shed**: it is answered at once, in its place in the
//! connection's order, with `ERROR: overloaded, retry after <ms> ms`. The client is never left
//! waiting and never disconnected; it learns when trying again is likely to help. The estimate
//! comes from a [`DrainRate`]: how fast workers have been finishing requests recently, and how many
//! are ahead (see [`DrainRate::retry_after_ms`]).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The gate's limits; `None` is no limit (the default, so every W05 behaviour is unchanged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GateLimits {
    /// The most worker requests in flight across all connections.
    pub(crate) max_inflight: Option<usize>,
    /// The most requests waiting for a worker.
    pub(crate) max_queue_depth: Option<usize>,
}

/// The answers the overload controls give in a request's place: shedding (W06 L01–L02), the
/// timeout (L03) and the retry budget (L04).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverloadReply {
    /// `ERROR: overloaded, retry after <ms> ms`: shed by the gate.
    Overloaded {
        /// The estimated wait before a retry is likely to be admitted.
        retry_after_ms: u64,
    },
    /// `ERROR: timeout after <ms> ms`: not finished within the request timeout.
    Timeout {
        /// The request timeout.
        after_ms: u64,
    },
    /// `ERROR: retry budget exhausted`: a retry beyond the retry budget.
    RetryBudgetExhausted,
}

impl OverloadReply {
    // starter: w06-l01 todo "Do 3: write the line of each of the three answers, ending in a newline"
    /// Appends the response line, `\n` included: for example
    /// `ERROR: overloaded, retry after 12 ms\n`.
    pub(crate) fn write_to(self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = match self {
            OverloadReply::Overloaded { retry_after_ms } => {
                writeln!(out, "ERROR: overloaded, retry after {retry_after_ms} ms")
            }
            OverloadReply::Timeout { after_ms } => {
                writeln!(out, "ERROR: timeout after {after_ms} ms")
            }
            OverloadReply::RetryBudgetExhausted => writeln!(out, "ERROR: retry budget exhausted"),
        };
    }
}

/// The loop's count of worker requests in flight, and the limits it enforces.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    limits: GateLimits,
    inflight: usize,
    peak: usize,
    shed: u64,
}

impl Gate {
    // starter: w06-l01 todo "Do 1: a gate with these limits and every count at zero"
    /// A gate with nothing in flight.
    pub(crate) fn new(limits: GateLimits) -> Self {
        Gate {
            limits,
            inflight: 0,
            peak: 0,
            shed: 0,
        }
    }

    // starter: w06-l01 todo "Do 1: true when each limit is None or its count is below it"
    /// Whether one more request may be admitted while `queue_depth` requests wait for a worker.
    pub(crate) fn has_room(&self, queue_depth: usize) -> bool {
        let inflight_ok = self
            .limits
            .max_inflight
            .is_none_or(|max| self.inflight < max);
        let queue_ok = self
            .limits
            .max_queue_depth
            .is_none_or(|max| queue_depth < max);
        inflight_ok && queue_ok
    }

    // starter: w06-l01 todo "Do 1: count one more in flight and keep the peak"
    /// Counts an admitted request as in flight.
    pub(crate) fn admit(&mut self) {
        self.inflight += 1;
        self.peak = self.peak.max(self.inflight);
    }

    // starter: w06-l01 todo "Do 1: count one more shed request"
    /// Counts a refused request as shed: its `ERROR: overloaded` answer is in its place now.
    pub(crate) fn shed(&mut self) {
        self.shed += 1;
    }

    // starter: w06-l01 todo "Do 1: take count requests off the in-flight count"
    /// `count` admitted requests are answered (or their connection is gone).
    pub(crate) fn settle(&mut self, count: usize) {
        debug_assert!(count <= self.inflight, "settling more than is in flight");
        self.inflight = self.inflight.saturating_sub(count);
    }

    // starter: w06-l01 todo "Do 1: return the in-flight count"
    /// Worker requests in flight now.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight
    }

    // starter: w06-l01 todo "Do 1: return the peak"
    /// The most requests that were ever in flight at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    // starter: w06-l01 todo "Do 1: return the shed count"
    /// Requests shed so far.
    pub(crate) fn shed_count(&self) -> u64 {
        self.shed
    }
}

/// Requests handed to the pool that no worker has started yet.
///
/// The loop counts what it hands out; each worker adds what it starts to a shared counter
/// (one relaxed `fetch_add` per batch). The difference is the queue depth in requests (the
/// pool's own `queued` counts tasks, and a batch is one task for up to sixteen requests). It is a
/// gauge, read on the loop while workers move it: a reading can be a moment old, never wrong by
/// more than the batches starting at that moment.
#[derive(Debug, Default)]
pub(crate) struct QueueGauge {
    handed_out: u64,
    started: Arc<AtomicU64>,
}

impl QueueGauge {
    // starter: w06-l01 todo "Do 2: add count to the requests handed out"
    /// Counts `count` requests handed to the pool (on the loop).
    pub(crate) fn handed_out(&mut self, count: usize) {
        self.handed_out += count as u64;
    }

    // starter: w06-l01 todo "Do 2: a clone of the Arc of the started counter"
    /// The counter a task bumps when a worker starts it.
    pub(crate) fn started_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.started)
    }

    // starter: w06-l01 todo "Do 2: add count to the counter with one relaxed fetch_add"
    /// Counts `count` requests started (on a worker).
    pub(crate) fn mark_started(counter: &AtomicU64, count: usize) {
        // Relaxed: the counter is a gauge; nothing else is published through it.
        counter.fetch_add(count as u64, Ordering::Relaxed);
    }

    // starter: w06-l01 todo "Do 2: handed out minus started, never below zero"
    /// Requests handed out and not yet started.
    pub(crate) fn depth(&self) -> usize {
        let started = self.started.load(Ordering::Relaxed);
        usize::try_from(self.handed_out.saturating_sub(started)).unwrap_or(usize::MAX)
    }
}

/// How long one window of the drain-rate measurement lasts.
const DRAIN_WINDOW: Duration = Duration::from_millis(500);
/// The estimate when no request has finished yet to measure by.
pub(crate) const DEFAULT_RETRY_AFTER_MS: u64 = 100;
/// The longest wait the estimate ever suggests (the longest `sleep` the protocol allows).
pub(crate) const MAX_RETRY_AFTER_MS: u64 = 10_000;

/// How fast workers have been finishing requests: the completions of the current window and of
/// the one before it, over the time they span (between half a second and one second).
#[derive(Debug)]
pub(crate) struct DrainRate {
    window_start: Instant,
    in_window: u64,
    previous: u64,
    previous_len: Duration,
}

impl DrainRate {
    /// A rate with nothing measured yet, starting at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        DrainRate {
            window_start: now,
            in_window: 0,
            previous: 0,
            previous_len: Duration::ZERO,
        }
    }

    // starter: w06-l02 empty "Do 1: roll the windows to now, then count one in the current window"
    /// A worker's result reached the loop at `now`.
    pub(crate) fn record(&mut self, now: Instant) {
        self.roll(now);
        self.in_window += 1;
    }

    // starter: w06-l02 todo "Do 1: start a new window once this one is DRAIN_WINDOW old, a stale one counting as empty"
    /// Moves on to a new window once the current one is [`DRAIN_WINDOW`] old: lazily, when a
    /// result comes or an estimate is asked for, so the rate needs no timer.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= DRAIN_WINDOW {
            // A window that ended long ago says nothing about now: it counts as empty.
            let stale = elapsed >= 2 * DRAIN_WINDOW;
            self.previous = if stale { 0 } else { self.in_window };
            self.previous_len = if stale { DRAIN_WINDOW } else { elapsed };
            self.in_window = 0;
            self.window_start = now;
        }
    }

    // starter: w06-l02 todo "Do 2: roll, then both windows' count over the time they span; None when nothing counted"
    /// Requests finished per second, recently; `None` before anything finished.
    pub(crate) fn per_second(&mut self, now: Instant) -> Option<f64> {
        self.roll(now);
        let count = self.previous + self.in_window;
        let span = self.previous_len + now.saturating_duration_since(self.window_start);
        (count > 0 && !span.is_zero()).then(|| count as f64 / span.as_secs_f64())
    }

    /// The `<ms>` of `ERROR: overloaded, retry after <ms> ms`: the time the workers need, at
    /// the recent drain rate, to finish the `backlog` requests ahead (see [`ms_to_drain`]).
    /// Before any request has finished (nothing to measure) it is [`DEFAULT_RETRY_AFTER_MS`].
    pub(crate) fn retry_after_ms(&mut self, backlog: usize, now: Instant) -> u64 {
        // Both windows empty: no result was recorded lately, and rolling cannot change that.
        if self.in_window == 0 && self.previous == 0 {
            return DEFAULT_RETRY_AFTER_MS;
        }
        match self.per_second(now) {
            None => DEFAULT_RETRY_AFTER_MS,
            Some(rate) => ms_to_drain(backlog, rate),
        }
    }
}

// starter: w06-l02 todo "Do 3: backlog, at least 1, over the rate in ms, rounded up, within 1..=MAX_RETRY_AFTER_MS"
/// The time, in whole milliseconds, that `backlog` requests take to finish at `per_second`
/// (a positive rate): rounded up, and kept within 1..=[`MAX_RETRY_AFTER_MS`]. An empty backlog
/// counts as one request, so a client never hears "retry after 0 ms".
fn ms_to_drain(backlog: usize, per_second: f64) -> u64 {
    let ms = (backlog.max(1) as f64 * 1000.0 / per_second).ceil();
    (ms as u64).clamp(1, MAX_RETRY_AFTER_MS)
}

#[cfg(test)]
mod tests;
