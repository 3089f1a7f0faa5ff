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

// Starter code: the scaffolding is unused, and its parameters unread, until you write the
// bodies; remove this attribute once you have.
#![allow(dead_code, unused_variables, unused_imports, unused_mut, unreachable_code)]

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
    fn next_seq(&self) -> u64 {
        todo!("W05 L04: next_seq")
    }

    /// Appends a response that needs no worker, writing it at once if nothing is waiting before it.
    fn push_ready(&mut self, slot: Slot, host: &mut dyn Host) {
        todo!("W05 L04: push_ready")
    }

    /// Writes every response at the front whose turn has come.
    fn write_ready(&mut self, host: &mut dyn Host) {
        todo!("W05 L04: write_ready")
    }

    /// Handles one complete request line.
    fn handle_line(&mut self, line: &[u8], host: &mut dyn Host) {
        todo!("W05 L04: handle_line")
    }
}

fn write_slot(slot: Slot, out: &mut Vec<u8>, host: &mut dyn Host) {
    todo!("W05 L04: write_slot")
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
        todo!("W05 L04: new")
    }

    /// The framer, for the loop to `recv` straight into.
    pub(crate) fn framer_mut(&mut self) -> &mut LineFramer {
        todo!("W05 L04: framer_mut")
    }

    /// Whether the loop should read from the socket now.
    pub(crate) fn wants_input(&self, limits: &Limits) -> bool {
        todo!("W05 L04: wants_input")
    }

    /// Records that the peer shut down its write side (`recv` returned 0).
    pub(crate) fn peer_closed_input(&mut self) {
        todo!("W05 L04: peer_closed_input")
    }

    /// Stops taking requests beyond the complete lines already received (server shutdown).
    pub(crate) fn stop_input(&mut self) {
        todo!("W05 L04: stop_input")
    }

    /// Handles complete request lines until none is left or a limit stops it.
    pub(crate) fn process_lines(&mut self, limits: &Limits, host: &mut dyn Host) -> Progress {
        todo!("W05 L04: process_lines")
    }

    fn handle_frame(
        frame: Frame<'_>,
        input: &mut Input,
        responses: &mut Responses,
        host: &mut dyn Host,
    ) {
        todo!("W05 L04: handle_frame")
    }

    /// Offers the held request (the pool was full when it was read) to the pool again; `true` if
    /// the session is no longer waiting for the pool.
    pub(crate) fn retry_held(&mut self, host: &mut dyn Host) -> bool {
        todo!("W05 L04: retry_held")
    }

    /// Whether a request is held for lack of room in the pool.
    #[cfg(test)]
    pub(crate) fn is_waiting_for_pool(&self) -> bool {
        self.responses.held.is_some()
    }

    /// A worker's reply to request `seq` arrived: it is written as soon as its turn comes.
    pub(crate) fn complete(&mut self, seq: u64, reply: Reply, host: &mut dyn Host) {
        todo!("W05 L04: complete")
    }

    /// Response bytes not yet sent.
    pub(crate) fn unsent(&self) -> &[u8] {
        todo!("W05 L04: unsent")
    }

    /// Records that the first `n` bytes of [`unsent`](Self::unsent) were sent.
    pub(crate) fn mark_sent(&mut self, n: usize) {
        todo!("W05 L04: mark_sent")
    }

    /// Whether the connection has nothing left to do: no more requests will come, every
    /// response is written and sent. The loop closes it then.
    pub(crate) fn is_finished(&self) -> bool {
        todo!("W05 L04: is_finished")
    }

    /// Whether input stopped before the peer finished sending (a line too long). Closing such a
    /// socket with unread bytes makes the kernel send a reset, which can destroy responses not
    /// yet delivered, so the loop half-closes it and drains it first.
    pub(crate) fn peer_may_still_send(&self) -> bool {
        todo!("W05 L04: peer_may_still_send")
    }

    /// Requests read and not yet answered.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.responses.slots.len()
    }
}

#[cfg(test)]
mod tests;
