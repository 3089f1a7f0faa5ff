//! One connection's protocol state, without its socket: framing, ordering, output, limits.
//!
//! A [`Session`] turns received bytes into requests and requests into response bytes, in order.
//! It never touches a socket or the pool itself: the event loop feeds it bytes, sends what
//! [`Session::unsent`] holds, and lends it a [`Host`] that submits worker verbs and knows the
//! server's counters. That keeps the rules of the protocol (one response per request, in request
//! order, errors in their place, the line-too-long close, the half-close drain) in one small piece
//! of code that unit tests drive without a network.
//!
//! ## Ordering
//!
//! Every request takes the next sequence number and a slot at the back of a queue. Requests the
//! loop answers itself (`ping`, `stats`, the immediate errors) fill their slot at once; worker
//! verbs leave it waiting until [`Session::complete`] brings their reply. Responses are written
//! from the front only while the front slot is filled, so a client that pipelines gets its
//! answers in request order even when workers finish out of order. When nothing is waiting, a
//! loop-answered response skips the queue and goes straight to the output buffer.
//!
//! ## Limits
//!
//! A session reads more only while it has fewer than `max_in_flight` unanswered requests, fewer
//! than `max_unsent` bytes of output the client has not taken, and no request the pool had no room
//! for (see [`Session::wants_input`]). The loop stops polling the socket for input otherwise, so a
//! client that pipelines without reading cannot grow the server's memory: its bytes wait in the
//! kernel's buffers, and then in its own.
//!
//! ## Overload (W06)
//!
//! Before a worker request takes a `Waiting` slot, the session asks [`Host::admit`]; a refusal
//! (shed, retry rejected) fills the slot at once with its answer. [`Session::expire`] answers a
//! request whose deadline passed with the timeout, and [`Session::complete`] then drops its late
//! result. Either way the answer waits its turn in the slots like any other.

use std::collections::VecDeque;
use std::time::Instant;

use handoff_protocol::{ErrorReply, Frame, LineFramer, Reply, Stats, Verb, execute, split_request};

use crate::admission::OverloadReply;
use crate::overload::Admission;
use crate::retry::strip_retry;
use crate::telemetry::OverloadStats;

/// Per-connection limits, from the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Requests read but not yet answered (written to the output buffer) before reading pauses.
    pub(crate) max_in_flight: usize,
    /// Bytes of output not yet sent before reading pauses.
    pub(crate) max_unsent: usize,
}

/// What a session needs from the server while it handles requests.
pub(crate) trait Host {
    /// Hands a worker verb to the pool with the request's sequence number; `false` when the pool
    /// has no room now, in which case the session keeps the request and offers it again later.
    fn try_submit(&mut self, seq: u64, verb: Verb, args: &[u8]) -> bool;
    /// The counters for a `stats` response.
    fn stats(&self) -> Stats;
    /// Counts one response written to the output (`completed`, and `errors` for an error).
    fn responded(&mut self, is_error: bool);
    /// Asks the overload controls (W06) about worker request `seq`, just read; `retry` when the
    /// line carried the `retry ` mark. A host without controls admits everything.
    fn admit(&mut self, seq: u64, retry: bool) -> Admission {
        let _ = (seq, retry);
        Admission::Admitted {
            read_at: Instant::now(),
        }
    }
    /// An admitted request read at `read_at` got its answer: the worker's result, or the
    /// timeout when `timed_out`.
    fn settled(&mut self, read_at: Instant, timed_out: bool) {
        let _ = (read_at, timed_out);
    }
    /// The overload keys that follow the protocol's keys in a `stats` line (W06 L05); a host
    /// without them answers with the protocol's keys only.
    fn overload_stats(&self) -> Option<OverloadStats> {
        None
    }
    /// Starts gathering the counters for `stats` request `seq` from elsewhere (every loop of a
    /// server with several); `true` if so, and the answer then comes through
    /// [`Session::complete_stats`]. A host whose counters are all at hand answers `false`.
    fn gather_stats(&mut self, seq: u64) -> bool {
        let _ = seq;
        false
    }
}

/// Why [`Session::process_lines`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Progress {
    /// Every complete line is handled; more input is welcome.
    NeedInput,
    /// A per-connection limit is reached; input waits until answers are written and sent.
    AtLimit,
    /// A worker request is held because the pool was full; input waits for room in the pool.
    WaitingForPool,
    /// No more requests will come from this connection (EOF, line too long, or server stop).
    InputEnded,
}

/// Where the connection's input stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Reading.
    Open,
    /// The peer shut down its write side: the lines already received are still handled, and a
    /// last one without `\n` too.
    Eof,
    /// The server is shutting down: complete lines already received are handled, nothing more.
    Stopped,
    /// No more requests: everything received is handled.
    Ended,
    /// No more requests because the stream is unusable (a line too long), while the peer may
    /// still be sending: see [`Session::peer_may_still_send`].
    Abandoned,
}

/// A response slot in request order.
#[derive(Debug)]
enum Slot {
    /// A worker is computing the reply of this request, read at the instant it holds.
    Waiting(Instant),
    /// The reply, ready to be written once every earlier response is.
    Ready(Reply),
    /// An overload control's answer (shed, timeout, retry rejected), ready like a reply.
    Overload(OverloadReply),
    /// A `stats` answer, with the counters as they were when the request was read.
    Stats(Stats, Option<Box<OverloadStats>>),
    /// A `stats` answer whose counters are being gathered ([`Host::gather_stats`]).
    GatheringStats,
}

/// A worker request the pool had no room for; offered again before any later line is read.
#[derive(Debug)]
struct Held {
    seq: u64,
    verb: Verb,
    args: Vec<u8>,
}

/// The ordered responses and the output bytes of one connection.
#[derive(Debug, Default)]
struct Responses {
    /// Unwritten responses, oldest first; `slots[0]` belongs to request `first_seq`.
    slots: VecDeque<Slot>,
    /// The sequence number of `slots[0]` (or of the next request, when `slots` is empty).
    first_seq: u64,
    held: Option<Held>,
    /// Requests answered with a timeout whose worker result has not come back yet; it is
    /// dropped when it does.
    late: Vec<u64>,
    /// Response bytes; `out[sent..]` is not yet sent.
    out: Vec<u8>,
    sent: usize,
}

impl Responses {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.slots.len() as u64
    }

    /// The slot of request `seq`, if it is not written yet.
    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let index = seq.checked_sub(self.first_seq)?;
        self.slots.get_mut(usize::try_from(index).ok()?)
    }

    /// Appends a response that needs no worker, writing it at once if nothing is waiting before it.
    fn push_ready(&mut self, slot: Slot, host: &mut dyn Host) {
        if self.slots.is_empty() {
            write_slot(slot, &mut self.out, host);
            self.first_seq += 1;
        } else {
            self.slots.push_back(slot);
        }
    }

    /// Writes every response at the front whose turn has come.
    fn write_ready(&mut self, host: &mut dyn Host) {
        while matches!(
            self.slots.front(),
            Some(Slot::Ready(_) | Slot::Overload(_) | Slot::Stats(..))
        ) {
            let slot = self.slots.pop_front().expect("checked above");
            write_slot(slot, &mut self.out, host);
            self.first_seq += 1;
        }
    }

    /// Handles one complete request line.
    ///
    /// A line marked `retry ` (W06) is the request after the mark; the host's overload controls
    /// may refuse a worker request, which is then answered at once, in its place.
    fn handle_line(&mut self, line: &[u8], host: &mut dyn Host) {
        let (retry, line) = strip_retry(line);
        let (verb, args) = split_request(line);
        if verb.runs_on_worker() {
            let seq = self.next_seq();
            let read_at = match host.admit(seq, retry) {
                Admission::Admitted { read_at } => read_at,
                Admission::Refused(reply) => {
                    self.push_ready(Slot::Overload(reply), host);
                    return;
                }
            };
            self.slots.push_back(Slot::Waiting(read_at));
            if !host.try_submit(seq, verb, args) {
                self.held = Some(Held {
                    seq,
                    verb,
                    args: args.to_vec(),
                });
            }
        } else if verb == Verb::Stats {
            if host.gather_stats(self.next_seq()) {
                self.slots.push_back(Slot::GatheringStats);
                return;
            }
            let overload = host.overload_stats().map(Box::new);
            self.push_ready(Slot::Stats(host.stats(), overload), host);
        } else {
            // `ping`, empty lines and unknown verbs: no work, answered on the loop.
            self.push_ready(Slot::Ready(execute(verb, args)), host);
        }
    }
}

fn write_slot(slot: Slot, out: &mut Vec<u8>, host: &mut dyn Host) {
    match slot {
        Slot::Ready(reply) => {
            reply.write_to(out);
            host.responded(reply.is_error());
        }
        Slot::Overload(reply) => {
            reply.write_to(out);
            host.responded(true);
        }
        Slot::Stats(stats, overload) => {
            match overload {
                Some(overload) => overload.write_line(&stats, out),
                None => stats.write_to(out),
            }
            host.responded(false);
        }
        Slot::Waiting(_) | Slot::GatheringStats => unreachable!("only filled slots are written"),
    }
}

/// One connection's protocol state (see the module docs).
#[derive(Debug)]
pub(crate) struct Session {
    framer: LineFramer,
    input: Input,
    responses: Responses,
}

impl Session {
    /// A session for a new connection.
    pub(crate) fn new() -> Self {
        Session {
            framer: LineFramer::new(),
            input: Input::Open,
            responses: Responses::default(),
        }
    }

    /// The framer, for the loop to `recv` straight into.
    pub(crate) fn framer_mut(&mut self) -> &mut LineFramer {
        &mut self.framer
    }

    /// Whether the loop should read from the socket now.
    pub(crate) fn wants_input(&self, limits: &Limits) -> bool {
        self.input == Input::Open
            && self.responses.held.is_none()
            && self.responses.slots.len() < limits.max_in_flight
            && self.unsent().len() < limits.max_unsent
    }

    /// Records that the peer shut down its write side (`recv` returned 0).
    pub(crate) fn peer_closed_input(&mut self) {
        if self.input == Input::Open {
            self.input = Input::Eof;
        }
    }

    /// Stops taking requests beyond the complete lines already received (server shutdown).
    pub(crate) fn stop_input(&mut self) {
        if matches!(self.input, Input::Open | Input::Eof) {
            self.input = Input::Stopped;
        }
    }

    /// Handles complete request lines until none is left or a limit stops it.
    pub(crate) fn process_lines(&mut self, limits: &Limits, host: &mut dyn Host) -> Progress {
        loop {
            if matches!(self.input, Input::Ended | Input::Abandoned) {
                return Progress::InputEnded;
            }
            if self.responses.held.is_some() {
                return Progress::WaitingForPool;
            }
            if self.responses.slots.len() >= limits.max_in_flight
                || self.unsent().len() >= limits.max_unsent
            {
                return Progress::AtLimit;
            }
            if let Some(frame) = self.framer.next_frame() {
                Self::handle_frame(frame, &mut self.input, &mut self.responses, host);
                continue;
            }
            match self.input {
                Input::Open => return Progress::NeedInput,
                Input::Eof => {
                    // The peer is done sending: a last line without `\n` is still a request.
                    self.input = Input::Ended;
                    if let Some(frame) = self.framer.finish() {
                        Self::handle_frame(frame, &mut self.input, &mut self.responses, host);
                    }
                }
                Input::Stopped | Input::Ended | Input::Abandoned => self.input = Input::Ended,
            }
        }
    }

    fn handle_frame(
        frame: Frame<'_>,
        input: &mut Input,
        responses: &mut Responses,
        host: &mut dyn Host,
    ) {
        match frame {
            Frame::Line(line) => responses.handle_line(line, host),
            Frame::TooLong => {
                // The error takes its place after every earlier response; nothing after it is
                // read, and the connection closes once it is sent.
                *input = Input::Abandoned;
                responses.push_ready(Slot::Ready(Reply::Error(ErrorReply::LineTooLong)), host);
            }
        }
    }

    /// Offers the held request (the pool was full when it was read) to the pool again; `true` if
    /// the session is no longer waiting for the pool.
    pub(crate) fn retry_held(&mut self, host: &mut dyn Host) -> bool {
        let Some(held) = &self.responses.held else {
            return true;
        };
        if host.try_submit(held.seq, held.verb, &held.args) {
            self.responses.held = None;
            true
        } else {
            false
        }
    }

    /// Whether a request is held for lack of room in the pool.
    #[cfg(test)]
    pub(crate) fn is_waiting_for_pool(&self) -> bool {
        self.responses.held.is_some()
    }

    /// A worker's reply to request `seq` arrived: it is written as soon as its turn comes.
    ///
    /// The result of a request already answered with a timeout is dropped here.
    pub(crate) fn complete(&mut self, seq: u64, reply: Reply, host: &mut dyn Host) {
        let responses = &mut self.responses;
        if let Some(late) = responses.late.iter().position(|&late| late == seq) {
            responses.late.swap_remove(late);
            return;
        }
        match responses.slot_mut(seq) {
            Some(slot) => match *slot {
                Slot::Waiting(read_at) => {
                    *slot = Slot::Ready(reply);
                    host.settled(read_at, false);
                }
                _ => {
                    debug_assert!(false, "a second result for request {seq}");
                    return;
                }
            },
            // One result per request, for a request of this connection: anything else is a
            // bug, and dropping the stray result keeps every other answer right.
            None => {
                debug_assert!(false, "a stray result for request {seq}");
                return;
            }
        }
        responses.write_ready(host);
    }

    /// The gathered counters of `stats` request `seq` arrived: its answer is written in turn.
    pub(crate) fn complete_stats(
        &mut self,
        seq: u64,
        stats: Stats,
        overload: Option<OverloadStats>,
        host: &mut dyn Host,
    ) {
        let responses = &mut self.responses;
        if let Some(slot @ Slot::GatheringStats) = responses.slot_mut(seq) {
            *slot = Slot::Stats(stats, overload.map(Box::new));
            responses.write_ready(host);
        }
    }

    /// Request `seq`'s deadline passed (W06 L03): if it is still waiting for its result, it is
    /// answered with `reply` (the timeout) now, and its result, when it comes, is dropped.
    /// Returns whether anything changed (`false` for a request answered in time).
    pub(crate) fn expire(&mut self, seq: u64, reply: OverloadReply, host: &mut dyn Host) -> bool {
        let responses = &mut self.responses;
        let Some(slot) = responses.slot_mut(seq) else {
            return false;
        };
        let Slot::Waiting(read_at) = *slot else {
            return false;
        };
        *slot = Slot::Overload(reply);
        if responses.held.as_ref().is_some_and(|held| held.seq == seq) {
            // Never handed to the pool: no result will come, and reading may go on.
            responses.held = None;
        } else {
            responses.late.push(seq);
        }
        host.settled(read_at, true);
        responses.write_ready(host);
        true
    }

    /// Admitted requests still waiting for their answer; the loop takes them off the books when
    /// the connection closes.
    pub(crate) fn unanswered(&self) -> usize {
        self.responses
            .slots
            .iter()
            .filter(|slot| matches!(slot, Slot::Waiting(_)))
            .count()
    }

    /// Response bytes not yet sent.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.responses.out[self.responses.sent..]
    }

    /// Records that the first `n` bytes of [`unsent`](Self::unsent) were sent.
    pub(crate) fn mark_sent(&mut self, n: usize) {
        let responses = &mut self.responses;
        responses.sent += n;
        debug_assert!(responses.sent <= responses.out.len());
        if responses.sent == responses.out.len() {
            // The common case: everything went out, and the buffer is reused from its start.
            responses.out.clear();
            responses.sent = 0;
        } else if responses.sent >= 64 * 1024 && responses.sent * 2 >= responses.out.len() {
            // A slow reader: drop the sent prefix once it is most of the buffer, so the buffer
            // stays near the unsent size instead of growing with everything ever written.
            responses.out.drain(..responses.sent);
            responses.sent = 0;
        }
    }

    /// Whether the connection has nothing left to do: no more requests will come, every
    /// response is written and sent. The loop closes it then.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.input, Input::Ended | Input::Abandoned)
            && self.responses.slots.is_empty()
            && self.responses.held.is_none()
            && self.unsent().is_empty()
    }

    /// Whether input stopped before the peer finished sending (a line too long). Closing such a
    /// socket with unread bytes makes the kernel send a reset, which can destroy responses not
    /// yet delivered, so the loop half-closes it and drains it first.
    pub(crate) fn peer_may_still_send(&self) -> bool {
        self.input == Input::Abandoned
    }

    /// Requests read and not yet answered.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.responses.slots.len()
    }
}

#[cfg(test)]
mod tests;
