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

use std::collections::VecDeque;

use handoff_protocol::{ErrorReply, Frame, LineFramer, Reply, Stats, Verb, execute, split_request};

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
    /// A worker is computing this request's reply.
    Waiting,
    /// The reply, ready to be written once every earlier response is.
    Ready(Reply),
    /// A `stats` answer, with the counters as they were when the request was read.
    Stats(Stats),
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
    /// Response bytes; `out[sent..]` is not yet sent.
    out: Vec<u8>,
    sent: usize,
}

impl Responses {
    // starter: w05-l04 todo "next_seq"
    fn next_seq(&self) -> u64 {
        self.first_seq + self.slots.len() as u64
    }

    // starter: w05-l04 todo "push_ready"
    /// Appends a response that needs no worker, writing it at once if nothing is waiting before it.
    fn push_ready(&mut self, slot: Slot, host: &mut dyn Host) {
        if self.slots.is_empty() {
            write_slot(slot, &mut self.out, host);
            self.first_seq += 1;
        } else {
            self.slots.push_back(slot);
        }
    }

    // starter: w05-l04 todo "write_ready"
    /// Writes every response at the front whose turn has come.
    fn write_ready(&mut self, host: &mut dyn Host) {
        while matches!(self.slots.front(), Some(Slot::Ready(_) | Slot::Stats(_))) {
            let slot = self.slots.pop_front().expect("checked above");
            write_slot(slot, &mut self.out, host);
            self.first_seq += 1;
        }
    }

    // starter: w05-l04 todo "handle_line"
    /// Handles one complete request line.
    fn handle_line(&mut self, line: &[u8], host: &mut dyn Host) {
        let (verb, args) = split_request(line);
        if verb.runs_on_worker() {
            let seq = self.next_seq();
            self.slots.push_back(Slot::Waiting);
            if !host.try_submit(seq, verb, args) {
                self.held = Some(Held {
                    seq,
                    verb,
                    args: args.to_vec(),
                });
            }
        } else if verb == Verb::Stats {
            self.push_ready(Slot::Stats(host.stats()), host);
        } else {
            // `ping`, empty lines and unknown verbs: no work, answered on the loop.
            self.push_ready(Slot::Ready(execute(verb, args)), host);
        }
    }
}

// starter: w05-l04 todo "write_slot"
fn write_slot(slot: Slot, out: &mut Vec<u8>, host: &mut dyn Host) {
    match slot {
        Slot::Ready(reply) => {
            reply.write_to(out);
            host.responded(reply.is_error());
        }
        Slot::Stats(stats) => {
            stats.write_to(out);
            host.responded(false);
        }
        Slot::Waiting => unreachable!("only filled slots are written"),
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
    // starter: w05-l04 todo "new"
    /// A session for a new connection.
    pub(crate) fn new() -> Self {
        Session {
            framer: LineFramer::new(),
            input: Input::Open,
            responses: Responses::default(),
        }
    }

    // starter: w05-l04 todo "framer_mut"
    /// The framer, for the loop to `recv` straight into.
    pub(crate) fn framer_mut(&mut self) -> &mut LineFramer {
        &mut self.framer
    }

    // starter: w05-l04 todo "wants_input"
    /// Whether the loop should read from the socket now.
    pub(crate) fn wants_input(&self, limits: &Limits) -> bool {
        self.input == Input::Open
            && self.responses.held.is_none()
            && self.responses.slots.len() < limits.max_in_flight
            && self.unsent().len() < limits.max_unsent
    }

    // starter: w05-l04 todo "peer_closed_input"
    /// Records that the peer shut down its write side (`recv` returned 0).
    pub(crate) fn peer_closed_input(&mut self) {
        if self.input == Input::Open {
            self.input = Input::Eof;
        }
    }

    // starter: w05-l04 todo "stop_input"
    /// Stops taking requests beyond the complete lines already received (server shutdown).
    pub(crate) fn stop_input(&mut self) {
        if matches!(self.input, Input::Open | Input::Eof) {
            self.input = Input::Stopped;
        }
    }

    // starter: w05-l04 todo "process_lines"
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

    // starter: w05-l04 todo "handle_frame"
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

    // starter: w05-l04 todo "retry_held"
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

    // starter: w05-l04 todo "complete"
    /// A worker's reply to request `seq` arrived: it is written as soon as its turn comes.
    pub(crate) fn complete(&mut self, seq: u64, reply: Reply, host: &mut dyn Host) {
        let responses = &mut self.responses;
        let slot = seq
            .checked_sub(responses.first_seq)
            .and_then(|index| responses.slots.get_mut(usize::try_from(index).ok()?));
        match slot {
            Some(slot @ Slot::Waiting) => *slot = Slot::Ready(reply),
            // One result per request, for a request of this connection: anything else is a
            // bug, and dropping the stray result keeps every other answer right.
            _ => {
                debug_assert!(false, "a stray result for request {seq}");
                return;
            }
        }
        responses.write_ready(host);
    }

    // starter: w05-l04 todo "unsent"
    /// Response bytes not yet sent.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.responses.out[self.responses.sent..]
    }

    // starter: w05-l04 todo "mark_sent"
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

    // starter: w05-l04 todo "is_finished"
    /// Whether the connection has nothing left to do: no more requests will come, every
    /// response is written and sent. The loop closes it then.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.input, Input::Ended | Input::Abandoned)
            && self.responses.slots.is_empty()
            && self.responses.held.is_none()
            && self.unsent().is_empty()
    }

    // starter: w05-l04 todo "peer_may_still_send"
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
