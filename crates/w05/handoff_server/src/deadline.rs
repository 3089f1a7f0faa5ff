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
        Deadlines {
            timeout,
            due: VecDeque::new(),
        }
    }

    /// The timeout, if requests have one.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    // starter: w06-l03 todo "Do 1: the timeout in whole milliseconds, None without one"
    /// The timeout in whole milliseconds, for the `ERROR: timeout after <ms> ms` line.
    pub(crate) fn timeout_ms(&self) -> Option<u64> {
        self.timeout
            .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
    }

    // starter: w06-l03 todo "Do 1: append read_at + timeout; Some of it only if the queue was empty"
    /// Records the deadline of request `seq` of connection `key`, read at `read_at`. Returns the
    /// deadline when the loop's timer must be armed for it (the queue was empty, so the timer is
    /// idle); otherwise the timer is already armed for an earlier deadline.
    pub(crate) fn push(&mut self, read_at: Instant, key: K, seq: u64) -> Option<Instant> {
        let timeout = self.timeout?;
        let deadline = read_at + timeout;
        // Deadlines are pushed in read order with one timeout, so the queue stays sorted.
        debug_assert!(self.due.back().is_none_or(|&(last, _, _)| last <= deadline));
        let was_empty = self.due.is_empty();
        self.due.push_back((deadline, key, seq));
        was_empty.then_some(deadline)
    }

    // starter: w06-l03 todo "Do 2: pop the front entry if its deadline is at or before now"
    /// Takes the oldest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(K, u64)> {
        match self.due.front() {
            Some(&(deadline, key, seq)) if deadline <= now => {
                self.due.pop_front();
                Some((key, seq))
            }
            _ => None,
        }
    }

    // starter: w06-l03 todo "Do 2: the deadline of the front entry"
    /// The deadline the timer must be armed for next, if any entry is left.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.due.front().map(|&(deadline, _, _)| deadline)
    }

    // starter: w06-l03 todo "Do 2: the number of entries queued"
    /// Entries still queued (answered requests included, until their deadline passes).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests;
