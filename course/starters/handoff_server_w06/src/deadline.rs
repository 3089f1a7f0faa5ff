//! Request deadlines (W06 L03): `--request-timeout-ms N` answers a request that is not finished
//! N ms after it was read with `ERROR: timeout after N ms`, on time.
//!
//! Every request gets the same timeout, so deadlines come due in the order requests were read:
//! a FIFO queue of `(deadline, connection, sequence number)` is already sorted, and one loop timer
//! armed for its front serves them all — no heap, no timer per request. When the timer fires the
//! loop pops every entry that is due and asks the connection's session to answer that request with
//! the timeout *if it is still waiting*; an entry whose request was answered in time is simply
//! skipped (lazy removal), so a result arriving never has to search the queue.
//!
//! The worker that runs a timed-out request cannot be interrupted (it may be in the middle of a
//! `sleep`); its late result still comes back through the results queue, and the session drops
//! it. The timeout is on the loop, the late result is dropped on the loop: workers still never
//! touch a socket. What a worker *can* do is not start work for nobody: each batch carries the
//! time by which all its requests are past their deadline (the time it was handed over plus the
//! timeout), and a worker that takes it later skips it (`Batch::skip`); the loop then settles
//! its requests as timed out, whether or not its timer got there first.

// The starter: every body is `todo!()`. Remove this line once yours are written.
#![allow(dead_code, unused_variables, unused_imports, unused_mut, clippy::all)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The pending deadlines of every admitted worker request, oldest first.
#[derive(Debug)]
pub(crate) struct Deadlines<K> {
    timeout: Option<Duration>,
    due: VecDeque<(Instant, K, u64)>,
}

impl<K: Copy> Deadlines<K> {
    /// Deadlines `timeout` after a request is read; `None` never times a request out.
    pub(crate) fn new(timeout: Option<Duration>) -> Self {
        todo!("W06 L03: new")
    }

    /// The timeout, if requests have one.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        todo!("W06 L03: timeout")
    }

    /// The timeout in whole milliseconds, for the `ERROR: timeout after <ms> ms` line.
    pub(crate) fn timeout_ms(&self) -> Option<u64> {
        todo!("W06 L03: timeout_ms")
    }

    /// Records the deadline of request `seq` of connection `key`, read at `read_at`. Returns the
    /// deadline when the loop's timer must be armed for it (the queue was empty, so the timer is
    /// idle); otherwise the timer is already armed for an earlier deadline.
    pub(crate) fn push(&mut self, read_at: Instant, key: K, seq: u64) -> Option<Instant> {
        todo!("W06 L03: push")
    }

    /// Takes the oldest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(K, u64)> {
        todo!("W06 L03: pop_due")
    }

    /// The deadline the timer must be armed for next, if any entry is left.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        todo!("W06 L03: next_deadline")
    }

    /// Entries still queued (answered requests included, until their deadline passes).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        todo!("W06 L03: len")
    }
}

#[cfg(test)]
mod tests;
