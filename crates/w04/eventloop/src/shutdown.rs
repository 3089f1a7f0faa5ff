//! The shutdown rule of every server on this loop: the first SIGTERM or SIGINT drains, a second
//! closes everything.
//!
//! On the first signal a server stops accepting and reading, answers every request it has read,
//! and closes each connection once its answers are sent; the loop ends when the last one is
//! closed. Clients that never take their answers cannot keep it alive for longer than
//! [`DRAIN_TIMEOUT`]. A second signal is the operator saying "now": every connection is closed
//! at once and the loop ends. [`ShutdownSignals`] is that rule as a value, so the W04 server and
//! the W05 loop (one loop or several) follow it alike.

use std::time::Duration;

/// How long a drain waits, from the first signal, before it closes what is left.
///
/// It bounds the wait for clients that do not read their last answers, and in a pool server it
/// also covers the requests still running when the signal came: a `sleep` may take 10 s, and
/// one queued behind others longer, and the protocol owes each accepted request its answer. So
/// the bound is generous; the operator who wants the process gone sooner sends a second signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a shutdown signal asks of a server ([`ShutdownSignals::on_signal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum SignalStep {
    /// The first signal: start the drain.
    Drain,
    /// A later one: close every connection at once and end the loop.
    CloseAll,
}

/// Which shutdown signals a server has seen so far.
#[derive(Debug, Default)]
pub struct ShutdownSignals {
    /// Set by the first signal, and never cleared: a drain is not undone.
    draining: bool,
}

impl ShutdownSignals {
    /// A server that has seen no shutdown signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A SIGTERM or SIGINT arrived: what to do now.
    pub fn on_signal(&mut self) -> SignalStep {
        if std::mem::replace(&mut self.draining, true) {
            SignalStep::CloseAll
        } else {
            SignalStep::Drain
        }
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_drains_and_every_later_one_closes_everything() {
        let mut signals = ShutdownSignals::new();
        assert!(!signals.is_draining());
        assert_eq!(signals.on_signal(), SignalStep::Drain);
        assert!(signals.is_draining());
        assert_eq!(signals.on_signal(), SignalStep::CloseAll);
        assert_eq!(signals.on_signal(), SignalStep::CloseAll);
        assert!(signals.is_draining());
    }
}
