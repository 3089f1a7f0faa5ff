//! One connection's requests in flight, and the byte-for-byte check of its responses.
//!
//! [`Pipeline`] does no I/O: the driver tells it when it may send and what bytes arrived, and
//! it says which bytes to send, how many responses completed, and whether one was wrong. Keeping
//! the protocol side apart from the sockets is what lets it be tested with plain byte strings.
//!
//! Responses come back in request order, so checking is a single pass: the bytes that arrive
//! are compared against the expected response of the oldest request in flight, continuing where
//! the previous chunk stopped, because a response may be split across reads.

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use crate::mix::{Request, RequestPicker};
use crate::report::Histograms;

/// How many bytes of a wrong response a [`Mismatch`] keeps for its message.
const MISMATCH_EXCERPT: usize = 200;

/// A response that differed from the expected bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// The request line that was answered wrongly (`None` when bytes arrived with no request
    /// in flight).
    pub(crate) request: Option<Vec<u8>>,
    /// The response it should have got.
    pub(crate) expected: Vec<u8>,
    /// The start of what arrived instead, up to its `\n` or [`MISMATCH_EXCERPT`] bytes.
    pub(crate) got: Vec<u8>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |bytes: &[u8]| format!("{:?}", String::from_utf8_lossy(bytes));
        match &self.request {
            Some(request) => write!(
                f,
                "request {} expected {} but got {}",
                show(request),
                show(&self.expected),
                show(&self.got)
            ),
            None => write!(f, "got {} with no request in flight", show(&self.got)),
        }
    }
}

/// One request sent and not yet fully answered.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Index into the mix's requests.
    request: usize,
    /// When its bytes were queued for sending (the driver sends them in the same turn).
    sent_at: Instant,
}

/// The requests one connection has in flight, up to its pipelining depth.
#[derive(Debug)]
pub(crate) struct Pipeline {
    depth: usize,
    picker: RequestPicker,
    /// How many more requests this connection may start; `None` in a timed run.
    quota: Option<u64>,
    in_flight: VecDeque<InFlight>,
    /// How many bytes of the oldest request's expected response have arrived and matched.
    matched: usize,
    /// Request bytes to send; `out[out_sent..]` have not been sent yet.
    out: Vec<u8>,
    out_sent: usize,
}

impl Pipeline {
    /// A pipeline that keeps up to `depth` requests in flight, and starts at most `quota` of
    /// them in all (`None`: until told to stop).
    pub(crate) fn new(depth: usize, picker: RequestPicker, quota: Option<u64>) -> Pipeline {
        Pipeline {
            depth: depth.max(1),
            picker,
            quota,
            in_flight: VecDeque::with_capacity(depth),
            matched: 0,
            out: Vec::with_capacity(depth * 128),
            out_sent: 0,
        }
    }

    /// Starts requests until `depth` are in flight (or the quota is used up), appending their
    /// bytes to the output. Returns how many it started.
    pub(crate) fn fill(&mut self, requests: &[Request], now: Instant) -> usize {
        let mut started = 0;
        while self.in_flight.len() < self.depth && self.quota != Some(0) {
            let request = self.picker.next();
            self.out.extend_from_slice(&requests[request].line);
            self.in_flight.push_back(InFlight {
                request,
                sent_at: now,
            });
            if let Some(quota) = &mut self.quota {
                *quota -= 1;
            }
            started += 1;
        }
        started
    }

    /// Stops starting new requests: the connection finishes what is in flight.
    pub(crate) fn stop(&mut self) {
        self.quota = Some(0);
    }

    /// The bytes still to send.
    pub(crate) fn output(&self) -> &[u8] {
        &self.out[self.out_sent..]
    }

    /// Records that the first `sent` bytes of [`output`](Self::output) went out.
    pub(crate) fn advance_output(&mut self, sent: usize) {
        self.out_sent += sent;
        if self.out_sent == self.out.len() {
            self.out.clear();
            self.out_sent = 0;
        }
    }

    /// Whether the connection has nothing in flight and will start nothing more.
    pub(crate) fn is_finished(&self) -> bool {
        self.in_flight.is_empty() && self.quota == Some(0)
    }

    /// How many requests are waiting for (the rest of) their response.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Checks received bytes against the expected responses, oldest request first, recording
    /// each completed response's latency (in nanoseconds) in `latencies`, overall and by its
    /// verb. Returns how many responses completed, or the first mismatch.
    pub(crate) fn receive(
        &mut self,
        mut bytes: &[u8],
        requests: &[Request],
        now: Instant,
        latencies: &mut Histograms,
    ) -> Result<u64, Mismatch> {
        let mut completed = 0;
        while !bytes.is_empty() {
            let Some(head) = self.in_flight.front() else {
                return Err(Mismatch {
                    request: None,
                    expected: Vec::new(),
                    got: excerpt(&[], bytes),
                });
            };
            let request = &requests[head.request];
            let want = &request.expected[self.matched..];
            let take = want.len().min(bytes.len());
            if bytes[..take] != want[..take] {
                return Err(Mismatch {
                    request: Some(
                        request
                            .line
                            .strip_suffix(b"\n")
                            .unwrap_or(&request.line)
                            .to_vec(),
                    ),
                    expected: request.expected.clone(),
                    got: excerpt(&request.expected[..self.matched], bytes),
                });
            }
            bytes = &bytes[take..];
            self.matched += take;
            if self.matched == request.expected.len() {
                let nanos = now.saturating_duration_since(head.sent_at).as_nanos();
                latencies.record(request.verb, u64::try_from(nanos).unwrap_or(u64::MAX));
                self.in_flight.pop_front();
                self.matched = 0;
                completed += 1;
            }
        }
        Ok(completed)
    }
}

/// The wrong response as it arrived: the part that matched, then the received bytes up to the
/// end of that line.
fn excerpt(matched: &[u8], received: &[u8]) -> Vec<u8> {
    let line_end = received
        .iter()
        .position(|&b| b == b'\n')
        .map_or(received.len(), |i| i + 1);
    let mut got = matched.to_vec();
    got.extend_from_slice(&received[..line_end]);
    got.truncate(MISMATCH_EXCERPT);
    got
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::{Mix, MixKind};

    fn histogram() -> Histograms {
        Histograms::new().expect("valid bounds")
    }

    #[test]
    fn keeps_depth_requests_in_flight_and_completes_split_responses() {
        let mix = Mix::new(MixKind::Ping, 1, crate::mix::KvReplies::Text);
        let mut pipeline = Pipeline::new(3, mix.picker(0), None);
        let start = Instant::now();
        assert_eq!(pipeline.fill(mix.requests(), start), 3);
        assert_eq!(pipeline.output(), b"ping\nping\nping\n");
        pipeline.advance_output(15);
        assert!(pipeline.output().is_empty());

        let mut latencies = histogram();
        let got = pipeline.receive(b"pong\npo", mix.requests(), Instant::now(), &mut latencies);
        assert_eq!(got, Ok(1));
        assert_eq!(
            pipeline.receive(b"ng\n", mix.requests(), Instant::now(), &mut latencies),
            Ok(1)
        );
        assert_eq!(pipeline.in_flight(), 1);
        assert_eq!(latencies.all.len(), 2);
        assert_eq!(pipeline.fill(mix.requests(), Instant::now()), 2);
    }

    #[test]
    fn quota_and_stop_end_the_connection_once_answered() {
        let mix = Mix::new(MixKind::Ping, 1, crate::mix::KvReplies::Text);
        let mut pipeline = Pipeline::new(4, mix.picker(0), Some(2));
        assert_eq!(pipeline.fill(mix.requests(), Instant::now()), 2);
        assert!(!pipeline.is_finished());
        let mut latencies = histogram();
        let done = pipeline.receive(
            b"pong\npong\n",
            mix.requests(),
            Instant::now(),
            &mut latencies,
        );
        assert_eq!(done, Ok(2));
        assert!(pipeline.is_finished());

        let mut timed = Pipeline::new(2, mix.picker(0), None);
        timed.fill(mix.requests(), Instant::now());
        timed.stop();
        assert_eq!(timed.fill(mix.requests(), Instant::now()), 0);
        assert!(!timed.is_finished(), "two requests are still owed");
    }

    #[test]
    fn a_wrong_byte_is_a_mismatch_naming_request_and_response() {
        let mix = Mix::new(MixKind::Compute64, 1, crate::mix::KvReplies::Text);
        let mut pipeline = Pipeline::new(1, mix.picker(0), None);
        pipeline.fill(mix.requests(), Instant::now());
        let request = mix.requests()[mix.picker(0).next()].clone();
        let mut wrong = request.expected.clone();
        wrong[10] ^= 1;
        let mut latencies = histogram();
        // The right first half arrives in one read, the wrong byte in the next.
        assert_eq!(
            pipeline.receive(&wrong[..5], mix.requests(), Instant::now(), &mut latencies),
            Ok(0)
        );
        let mismatch = pipeline
            .receive(&wrong[5..], mix.requests(), Instant::now(), &mut latencies)
            .expect_err("a flipped bit is caught");
        assert_eq!(mismatch.got, wrong);
        assert_eq!(mismatch.expected, request.expected);
        assert_eq!(
            mismatch.request.as_deref(),
            request.line.strip_suffix(b"\n")
        );
        assert!(mismatch.to_string().contains("expected"));
    }

    #[test]
    fn kv_responses_are_timed_by_their_verb() {
        let mix = Mix::new(MixKind::Kv, 1, crate::mix::KvReplies::Text);
        let mut pipeline = Pipeline::new(64, mix.picker(0), Some(64));
        pipeline.fill(mix.requests(), Instant::now());
        let mut picker = mix.picker(0);
        let answers: Vec<u8> = (0..64)
            .flat_map(|_| mix.requests()[picker.next()].expected.clone())
            .collect();
        let mut latencies = histogram();
        assert_eq!(
            pipeline.receive(&answers, mix.requests(), Instant::now(), &mut latencies),
            Ok(64)
        );
        let (gets, sets) = (latencies.get.len(), latencies.set.len());
        assert!(gets > 0 && sets > 0, "{gets} GETs, {sets} SETs");
        assert_eq!(gets + sets, 64);
        assert_eq!(latencies.all.len(), 64);
    }

    #[test]
    fn bytes_with_nothing_in_flight_are_a_mismatch() {
        let mix = Mix::new(MixKind::Ping, 1, crate::mix::KvReplies::Text);
        let mut pipeline = Pipeline::new(1, mix.picker(0), None);
        let got = pipeline.receive(b"pong\n", mix.requests(), Instant::now(), &mut histogram());
        assert_eq!(got.map_err(|m| m.request), Err(None));
    }
}
