//! The request mixes, and the response each request must get.
//!
//! A mix is a small table of distinct request lines, each with its expected response computed
//! once, up front, by [`handoff_protocol::expected_response`]. During the run a connection only
//! picks an index into that table, so checking a response is a byte comparison and never a
//! hash: the load generator stays cheap however fast the server answers.

use std::fmt;

use handoff_protocol::expected_response;

/// How many distinct texts the `compute` and `rehash` requests cycle through, so the server sees
/// different inputs without the checker ever hashing during the run.
const DISTINCT_TEXTS: usize = 64;
/// The length of the text of a `compute64` request.
const COMPUTE_TEXT_LEN: usize = 64;
/// The length of the text of a `rehash1000` request.
const REHASH_TEXT_LEN: usize = 16;
/// In the `mixed` mix, one request in this many is `sleep 1`; the rest are `compute64`.
const MIXED_SLEEP_ONE_IN: u64 = 10;

/// Which requests a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MixKind {
    /// `compute <64 bytes>`: a short hash on a worker.
    Compute64,
    /// `ping`: answered by the event loop alone.
    Ping,
    /// `rehash 1000 <16 bytes>`: about a thousand hashes on a worker.
    Rehash1000,
    /// `sleep 1`: blocks a worker for one millisecond.
    Sleep1,
    /// 90 % `compute64`, 10 % `sleep 1`.
    Mixed,
}

impl fmt::Display for MixKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MixKind::Compute64 => "compute64",
            MixKind::Ping => "ping",
            MixKind::Rehash1000 => "rehash1000",
            MixKind::Sleep1 => "sleep1",
            MixKind::Mixed => "mixed",
        })
    }
}

/// One distinct request: the bytes to send and the bytes that must come back.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The request line, `\n` included.
    pub(crate) line: Vec<u8>,
    /// The exact response, `\n` included.
    pub(crate) expected: Vec<u8>,
}

/// The table of distinct requests of one mix, and how a connection picks from it.
#[derive(Debug, Clone)]
pub(crate) struct Mix {
    kind: MixKind,
    /// The distinct requests. For `mixed`, the last one is `sleep 1` and the others are
    /// `compute64`.
    requests: Vec<Request>,
}

impl Mix {
    /// Builds the table for `kind`, computing every expected response once.
    pub(crate) fn new(kind: MixKind) -> Mix {
        let mut lines: Vec<Vec<u8>> = match kind {
            MixKind::Compute64 | MixKind::Mixed => (0..DISTINCT_TEXTS)
                .map(|i| with_text(b"compute ", i, COMPUTE_TEXT_LEN))
                .collect(),
            MixKind::Rehash1000 => (0..DISTINCT_TEXTS)
                .map(|i| with_text(b"rehash 1000 ", i, REHASH_TEXT_LEN))
                .collect(),
            MixKind::Ping => vec![b"ping".to_vec()],
            MixKind::Sleep1 => vec![b"sleep 1".to_vec()],
        };
        if kind == MixKind::Mixed {
            lines.push(b"sleep 1".to_vec());
        }
        let requests = lines
            .into_iter()
            .map(|line| {
                let expected = expected_response(&line)
                    .expect("the mixes contain no `stats`, the one request without a prediction");
                let mut line = line;
                line.push(b'\n');
                Request { line, expected }
            })
            .collect();
        Mix { kind, requests }
    }

    /// The distinct requests; [`RequestPicker::next`] returns indices into this slice.
    pub(crate) fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// A deterministic sequence of request indices for one connection.
    pub(crate) fn picker(&self, connection: usize) -> RequestPicker {
        RequestPicker {
            kind: self.kind,
            distinct: self.requests.len(),
            // A distinct, non-zero seed per connection (xorshift never leaves zero).
            state: (connection as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            counter: connection,
        }
    }
}

/// Picks the next request of a connection: round-robin over the distinct texts, and for
/// `mixed` a pseudo-random one in ten is `sleep 1`.
#[derive(Debug, Clone)]
pub(crate) struct RequestPicker {
    kind: MixKind,
    distinct: usize,
    state: u64,
    counter: usize,
}

impl RequestPicker {
    /// The index of the next request to send.
    pub(crate) fn next(&mut self) -> usize {
        if self.kind == MixKind::Mixed {
            // xorshift64: cheap, and the same sequence every run.
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            if self.state.is_multiple_of(MIXED_SLEEP_ONE_IN) {
                return self.distinct - 1;
            }
            self.counter = (self.counter + 1) % (self.distinct - 1);
            return self.counter;
        }
        self.counter = (self.counter + 1) % self.distinct;
        self.counter
    }
}

/// `prefix` followed by `len` printable bytes that differ for each `variant`.
fn with_text(prefix: &[u8], variant: usize, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut line = prefix.to_vec();
    let mut state = variant as u64 * 2_654_435_761 + 1;
    for _ in 0..len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        line.push(ALPHABET[(state >> 33) as usize % ALPHABET.len()]);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute64_lines_carry_64_bytes_of_text_and_their_hash() {
        let mix = Mix::new(MixKind::Compute64);
        assert_eq!(mix.requests().len(), DISTINCT_TEXTS);
        let first = &mix.requests()[0];
        assert_eq!(first.line.len(), "compute ".len() + COMPUTE_TEXT_LEN + 1);
        assert!(first.expected.starts_with(b"result: "));
        assert_ne!(mix.requests()[0].line, mix.requests()[1].line);
    }

    #[test]
    fn mixed_sends_about_one_sleep_in_ten() {
        let mix = Mix::new(MixKind::Mixed);
        let sleep = mix.requests().len() - 1;
        assert_eq!(mix.requests()[sleep].line, b"sleep 1\n");
        let mut picker = mix.picker(3);
        let sleeps = (0..100_000).filter(|_| picker.next() == sleep).count();
        assert!(
            (9_000..11_000).contains(&sleeps),
            "{sleeps} sleeps in 100000"
        );
    }

    #[test]
    fn single_line_mixes_always_pick_it() {
        for kind in [MixKind::Ping, MixKind::Sleep1] {
            let mix = Mix::new(kind);
            let mut picker = mix.picker(7);
            assert!((0..10).all(|_| picker.next() == 0));
        }
        assert_eq!(Mix::new(MixKind::Ping).requests()[0].expected, b"pong\n");
    }
}
