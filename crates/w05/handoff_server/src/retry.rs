//! The retry budget (W06 L04): retries may add at most a fixed fraction to the load.
//!
//! A client marks a retry by prefixing the request line with `retry ` (the W06 extension of the
//! protocol). Retries are how a brief overload becomes a lasting one: every shed or timed-out
//! request that comes back as a retry is more load on a server that is already full — a retry
//! storm. `--max-retry-ratio R` lets retries be at most R times the recent first tries; a retry
//! beyond that is answered `ERROR: retry budget exhausted` at once and costs no worker.
//!
//! The budget is a token bucket, as in gRPC's retry throttling and Finagle's `RetryBudget`, but
//! counted in requests rather than time, so it behaves the same on a fast and a slow machine:
//!
//! - every first try of a worker verb deposits R tokens;
//! - every retry of a worker verb needs one token, and takes it if there is one;
//! - the bucket holds at most R × [`RECENT_FIRST_TRIES`] tokens, so only the recent first tries
//!   count: a long quiet stretch of first tries cannot bank an unlimited burst of retries.
//!
//! Tokens are kept in thousandths, so R is exact to three decimals and no float drifts.
//! `ping` and `stats` need no worker; marked as retries they are answered as usual and are
//! neither counted nor charged.

/// How many of the latest first tries the budget remembers (its bucket's size divided by R).
pub(crate) const RECENT_FIRST_TRIES: u64 = 1000;

/// One token, in thousandths.
const TOKEN: u64 = 1000;

/// Splits off the `retry ` mark: `(true, rest)` for a retry, `(false, line)` otherwise.
///
/// Every line the loop reads comes through here, and almost every one is a first try whose
/// verb is not `retry`: it is told apart by its first bytes, and only a line that starts with
/// the word goes on to [`split_mark`].
#[inline]
pub(crate) fn strip_retry(line: &[u8]) -> (bool, &[u8]) {
    if line.starts_with(b"retry") {
        split_mark(line)
    } else {
        (false, line)
    }
}

// starter: w06-l04 todo "Do 1: strip the prefix retry with its space: true and the rest, else false and the line"
/// A line that starts with `retry`: `(true, rest)` when it is the mark `retry ` (with its
/// space) followed by the request, `(false, line)` for a bare `retry` or a word like
/// `retrying` (an ordinary, unknown, request).
fn split_mark(line: &[u8]) -> (bool, &[u8]) {
    match line.strip_prefix(b"retry ") {
        Some(rest) => (true, rest),
        None => (false, line),
    }
}

/// Parses `--max-retry-ratio`: a finite number from 0 up, at most three decimals counted.
pub(crate) fn parse_ratio(text: &str) -> Result<f64, String> {
    let ratio: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number (for example 0.1)"))?;
    if !ratio.is_finite() || ratio < 0.0 {
        return Err("must be a number from 0 up (for example 0.1)".to_owned());
    }
    if ratio > 1000.0 {
        return Err("must be at most 1000".to_owned());
    }
    Ok(ratio)
}

/// The server-wide retry budget (see the module docs). A server without `--max-retry-ratio` has
/// none, and admits every retry (see `Overload::admit`).
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// R in thousandths.
    ratio_milli: u64,
    /// The tokens in the bucket, in thousandths: at most `ratio_milli` × [`RECENT_FIRST_TRIES`].
    tokens_milli: u64,
    /// Retries rejected so far.
    rejects: u64,
}

impl RetryBudget {
    // starter: w06-l04 todo "Do 2: ratio in thousandths, rounded; an empty bucket, no rejects"
    /// A budget of `ratio` retries per recent first try. It starts empty: a retry before any
    /// first try has nothing to be a retry of.
    pub(crate) fn new(ratio: f64) -> Self {
        RetryBudget {
            ratio_milli: (ratio * TOKEN as f64).round() as u64,
            tokens_milli: 0,
            rejects: 0,
        }
    }

    // starter: w06-l04 todo "Do 2: add R in thousandths, capped at R times RECENT_FIRST_TRIES"
    /// A first try of a worker verb was read: it earns R tokens.
    pub(crate) fn first_try(&mut self) {
        let cap = self.ratio_milli * RECENT_FIRST_TRIES;
        self.tokens_milli = (self.tokens_milli + self.ratio_milli).min(cap);
    }

    // starter: w06-l04 todo "Do 2: take one TOKEN if there is one, else count a reject and refuse"
    /// A retry of a worker verb was read: `true` if the budget admits it (a token is spent),
    /// `false` if it is rejected (counted in [`rejects`](Self::rejects)).
    pub(crate) fn admit_retry(&mut self) -> bool {
        if self.tokens_milli >= TOKEN {
            self.tokens_milli -= TOKEN;
            true
        } else {
            self.rejects += 1;
            false
        }
    }

    // starter: w06-l04 todo "Do 2: return the rejects counted"
    /// Retries rejected so far.
    pub(crate) fn rejects(&self) -> u64 {
        self.rejects
    }
}

#[cfg(test)]
mod tests;
