//! One connection's state, without its socket: framing, ordering, output, and the close rules.
//!
//! A [`Session`] turns received bytes into requests and requests into response bytes, in request
//! order. It never touches a socket, a pool or a clock itself: the event loop feeds it bytes (or
//! lends it a `recv` to call, [`Session::receive`]), sends what [`Session::unsent`] holds (or
//! lends it a `send`, [`Session::advance`]), and lends it a [`Host`] that decides what each
//! request line is. So the rules every server of the course shares — one response per request,
//! in request order, errors in their place, the half-close drain, the line-too-long close and its
//! linger, the limits that switch reading off — live in this one piece of code, which unit tests
//! drive without a network. The W04 `epoll_server` uses it with a host that answers every request
//! inline; the W05 `handoff_server` with a host that hands worker verbs to its pool.
//!
//! The session knows the framing (one request per line, [`LineFramer`]) and nothing of the verbs:
//! what a line means, and what its answer looks like, is the host's ([`Host::handle`], and a
//! [`Response`] type that writes itself). A server with another line protocol on the same framing
//! uses the same session.
//!
//! ## Ordering
//!
//! Every request takes the next sequence number and a slot at the back of a queue. Requests the
//! host answers at once fill their slot at once; requests it hands off
//! ([`Handled::Pending`]) leave it waiting until [`Session::complete`] brings their answer.
//! Responses are written from the front only while the front slot is filled, so a client that
//! pipelines gets its answers in request order even when workers finish out of order. When
//! nothing is waiting, an immediate answer skips the queue and goes straight to the output.
//!
//! ## Limits
//!
//! A session reads more only while it has fewer than [`Limits::max_in_flight`] unanswered
//! requests, fewer than [`Limits::max_unsent`] bytes of output the client has not taken, and no
//! request the host had no room for ([`Handled::Held`]; see [`Session::wants_input`]). The loop
//! stops polling the socket for input otherwise, so a client that pipelines without reading
//! cannot grow the server's memory: its bytes wait in the kernel's buffers, and then in its own.
//!
//! ## Closing
//!
//! - **Half-close.** After the peer's end of input ([`Session::peer_closed_input`]), the lines
//!   already received are answered, and a last one without `\n` too; the connection closes once
//!   everything owed is sent.
//! - **Line too long.** `ERROR: line too long` takes its place after every earlier response, and
//!   nothing after it is read. The peer may still be sending, and closing a socket that holds
//!   unread bytes makes the kernel send a reset, which can overtake — and destroy — responses not
//!   yet delivered. So once the answers are sent, [`Session::next_step`] says [`Step::Linger`]:
//!   the loop shuts its write side down (the client reads every answer, then EOF) and discards
//!   what still comes ([`Session::discard_input`]) until the client closes too, for at most
//!   [`LINGER_TIMEOUT`] and [`LINGER_MAX_BYTES`].
//! - **Server stop.** [`Session::stop_input`]: complete lines already received are answered,
//!   nothing more is read. If the peer had not ended its input, bytes the server will never read
//!   may be waiting in the kernel, and a close over them is a reset that can destroy answers still
//!   in flight; so such a connection lingers too, but only while the peer is still sending (a
//!   stopping server does not wait for idle clients).
//!
//! ```
//! use handoff_protocol::session::{Answer, Handled, Host, Limits, Session, Step};
//! use handoff_protocol::{Reply, execute, split_request};
//!
//! /// A host that answers every request at once, as a single-threaded server does.
//! struct Inline;
//! impl Host for Inline {
//!     type Response = Answer;
//!     type Pending = ();
//!     fn handle(&mut self, _seq: u64, line: &[u8]) -> Handled<Answer, ()> {
//!         let (verb, args) = split_request(line);
//!         Handled::Answered(Answer::Reply(execute(verb, args)))
//!     }
//!     fn resubmit(&mut self, _seq: u64, _line: &[u8]) -> bool {
//!         unreachable!("nothing is ever held")
//!     }
//!     fn responded(&mut self, _answer: &Answer) {}
//! }
//!
//! let limits = Limits { max_in_flight: 64, max_unsent: 1 << 20 };
//! let mut session = Session::new();
//! // A `recv` that hands out these bytes, then end of input (0, as `recv` says at EOF).
//! let mut wire = &b"ping\nfactorial 5"[..];
//! let mut recv = |buf: &mut [u8]| std::io::Read::read(&mut wire, buf);
//! let mut buffer = [0; 1024];
//! // The first call stops at the short read; the second sees the end of input.
//! session.receive(&limits, &mut Inline, &mut buffer, &mut recv).unwrap();
//! session.receive(&limits, &mut Inline, &mut buffer, &mut recv).unwrap();
//! let mut sent = Vec::new();
//! session
//!     .advance(&limits, &mut Inline, |bytes| {
//!         sent.extend_from_slice(bytes);
//!         Ok(bytes.len())
//!     })
//!     .unwrap();
//! assert_eq!(sent, b"pong\nresult: 120\n");
//! assert_eq!(session.next_step(&limits), Step::Close);
//! ```

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use crate::framing::{Frame, LineFramer};
use crate::reply::{ErrorReply, Reply, Stats};

/// How many `recv`s one readiness event gets ([`Session::receive`],
/// [`Session::discard_input`]), so one fast sender cannot keep the loop from everyone else;
/// level-triggered epoll reports the rest on the next turn.
pub const READS_PER_EVENT: usize = 4;

/// How long a connection closed for a line too long is drained before it is closed anyway.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// How many bytes such a connection may still send while it is drained.
pub const LINGER_MAX_BYTES: usize = 1 << 20;

/// The output buffer capacity an idle session keeps; a larger one, grown by a burst, is freed
/// once everything in it is sent.
const KEPT_OUTPUT_CAPACITY: usize = 64 * 1024;

/// A response that writes itself into the output buffer.
pub trait Response {
    /// Appends the response line, `\n` included.
    fn write_to(&self, out: &mut Vec<u8>);
    /// Whether it is an `ERROR: …` line (for the server's error count).
    fn is_error(&self) -> bool;
    /// The answer to a line over [`MAX_LINE_LEN`](crate::MAX_LINE_LEN), `ERROR: line too long`.
    fn line_too_long() -> Self;
}

/// The course protocol's answers: a verb's [`Reply`], or a `stats` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A verb's reply.
    Reply(Reply),
    /// The `stats` line, with the counters as they were when the request was read.
    Stats(Stats),
}

impl Response for Answer {
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Answer::Reply(reply) => reply.write_to(out),
            Answer::Stats(stats) => stats.write_to(out),
        }
    }

    fn is_error(&self) -> bool {
        matches!(self, Answer::Reply(reply) if reply.is_error())
    }

    fn line_too_long() -> Self {
        Answer::Reply(Reply::Error(ErrorReply::LineTooLong))
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests read but not yet answered (written to the output buffer) before reading pauses.
    pub max_in_flight: usize,
    /// Bytes of output not yet sent before reading pauses.
    pub max_unsent: usize,
}

/// What the host made of one request line ([`Host::handle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Handled<R, P> {
    /// Answered at once; the answer takes its place in request order.
    Answered(R),
    /// Handed off (to a pool); its answer comes with [`Session::complete`]. `P` is what the host
    /// wants back when the answer takes its place ([`Host::settled`]), for example the instant
    /// the request was read.
    Pending(P),
    /// Accepted, but there is no room to hand it off now: the session keeps the line, reads
    /// nothing more, and offers it again with [`Host::resubmit`] when
    /// [`Session::retry_held`] is called.
    Held(P),
}

/// What a session needs from the server: the meaning of a request line, and the books.
pub trait Host {
    /// The answers this server gives.
    type Response: Response;
    /// What a handed-off request carries until its answer takes its place.
    type Pending: Copy;
    /// Decides what request `seq`, the complete line `line` (without its `\n`), is.
    fn handle(&mut self, seq: u64, line: &[u8]) -> Handled<Self::Response, Self::Pending>;
    /// Offers a held request again; `true` if it was handed off this time.
    fn resubmit(&mut self, seq: u64, line: &[u8]) -> bool;
    /// Counts one response written to the output, just written.
    fn responded(&mut self, response: &Self::Response);
    /// A handed-off request's answer took its place: its result, or (`timed_out`) the answer
    /// given by [`Session::expire`]. A host without deadlines need not count these.
    fn settled(&mut self, pending: Self::Pending, timed_out: bool) {
        let _ = (pending, timed_out);
    }
}

/// Why [`Session::process_lines`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Progress {
    /// Every complete line is handled; more input is welcome.
    NeedInput,
    /// A per-connection limit is reached; input waits until answers are written and sent.
    AtLimit,
    /// A request is held because the host had no room for it; input waits for that room.
    WaitingForPool,
    /// No more requests will come from this connection (EOF, line too long, or server stop).
    InputEnded,
}

/// What the loop should do with a connection after serving it ([`Session::next_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Keep it, polling for readable and writable as given.
    Poll {
        /// Whether the session wants input now.
        readable: bool,
        /// Whether output is waiting to be sent.
        writable: bool,
    },
    /// Everything is answered and sent: close it.
    Close,
    /// Everything is answered and sent, but the peer may still be sending (a line too long):
    /// shut the write side down, call [`Session::start_linger`], and discard input until the
    /// peer closes (see the module docs).
    Linger,
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
    /// still be sending: see [`Step::Linger`].
    Abandoned,
}

/// A response slot in request order.
#[derive(Debug)]
enum Slot<R, P> {
    /// Handed off; the answer has not come yet.
    Waiting(P),
    /// The answer, ready to be written once every earlier response is.
    Ready(R),
}

/// A request the host had no room for; offered again before any later line is read.
#[derive(Debug)]
struct Held {
    seq: u64,
    line: Vec<u8>,
}

/// The ordered responses and the output bytes of one connection.
#[derive(Debug)]
struct Responses<R, P> {
    /// Unwritten responses, oldest first; `slots[0]` belongs to request `first_seq`.
    slots: VecDeque<Slot<R, P>>,
    /// The sequence number of `slots[0]` (or of the next request, when `slots` is empty).
    first_seq: u64,
    held: Option<Held>,
    /// Requests answered by [`Session::expire`] whose result has not come back yet; it is
    /// dropped when it does.
    late: Vec<u64>,
    /// Response bytes; `out[sent..]` is not yet sent.
    out: Vec<u8>,
    sent: usize,
}

impl<R: Response, P: Copy> Responses<R, P> {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.slots.len() as u64
    }

    /// The slot of request `seq`, if it is not written yet.
    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot<R, P>> {
        let index = seq.checked_sub(self.first_seq)?;
        self.slots.get_mut(usize::try_from(index).ok()?)
    }

    /// Appends an answer, writing it at once if nothing is waiting before it.
    fn push_ready<H: Host<Response = R, Pending = P>>(&mut self, answer: R, host: &mut H) {
        if self.slots.is_empty() {
            self.write(&answer, host);
            self.first_seq += 1;
        } else {
            self.slots.push_back(Slot::Ready(answer));
        }
    }

    /// Writes every answer at the front whose turn has come.
    fn write_ready<H: Host<Response = R, Pending = P>>(&mut self, host: &mut H) {
        while matches!(self.slots.front(), Some(Slot::Ready(_))) {
            if let Some(Slot::Ready(answer)) = self.slots.pop_front() {
                self.write(&answer, host);
            }
            self.first_seq += 1;
        }
    }

    fn write<H: Host<Response = R, Pending = P>>(&mut self, answer: &R, host: &mut H) {
        answer.write_to(&mut self.out);
        host.responded(answer);
    }

    /// Handles one complete request line.
    fn handle_line<H: Host<Response = R, Pending = P>>(&mut self, line: &[u8], host: &mut H) {
        let seq = self.next_seq();
        match host.handle(seq, line) {
            Handled::Answered(answer) => self.push_ready(answer, host),
            Handled::Pending(pending) => self.slots.push_back(Slot::Waiting(pending)),
            Handled::Held(pending) => {
                self.slots.push_back(Slot::Waiting(pending));
                self.held = Some(Held {
                    seq,
                    line: line.to_vec(),
                });
            }
        }
    }
}

/// One connection's protocol state (see the module docs): answers of type `R`, handed-off
/// requests carrying a `P`.
#[derive(Debug)]
pub struct Session<R, P> {
    framer: LineFramer,
    input: Input,
    responses: Responses<R, P>,
    /// While lingering (see [`Step::Linger`]): the bytes the peer may still send.
    linger_allowance: Option<usize>,
    /// Input was stopped ([`Session::stop_input`]) before the peer's end of input: bytes the
    /// server will never read may be waiting in the kernel, and closing over them would send a
    /// reset, so the connection lingers, but only while the peer is still sending.
    stopped_open: bool,
}

impl<R: Response, P: Copy> Default for Session<R, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Response, P: Copy> Session<R, P> {
    /// A session for a new connection.
    pub fn new() -> Self {
        Session {
            framer: LineFramer::new(),
            input: Input::Open,
            responses: Responses {
                slots: VecDeque::new(),
                first_seq: 0,
                held: None,
                late: Vec::new(),
                out: Vec::new(),
                sent: 0,
            },
            linger_allowance: None,
            stopped_open: false,
        }
    }

    /// The framer, for received bytes to go into.
    pub fn framer_mut(&mut self) -> &mut LineFramer {
        &mut self.framer
    }

    /// Whether the loop should read from the socket now.
    pub fn wants_input(&self, limits: &Limits) -> bool {
        self.input == Input::Open
            && self.responses.held.is_none()
            && self.responses.slots.len() < limits.max_in_flight
            && self.unsent().len() < limits.max_unsent
    }

    /// Records that the peer shut down its write side (`recv` returned 0).
    pub fn peer_closed_input(&mut self) {
        if self.input == Input::Open {
            self.input = Input::Eof;
        }
    }

    /// Stops taking requests beyond the complete lines already received (server shutdown).
    pub fn stop_input(&mut self) {
        self.stopped_open |= self.input == Input::Open;
        if matches!(self.input, Input::Open | Input::Eof) {
            self.input = Input::Stopped;
        }
    }

    /// Handles complete request lines until none is left or a limit stops it.
    pub fn process_lines<H: Host<Response = R, Pending = P>>(
        &mut self,
        limits: &Limits,
        host: &mut H,
    ) -> Progress {
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

    fn handle_frame<H: Host<Response = R, Pending = P>>(
        frame: Frame<'_>,
        input: &mut Input,
        responses: &mut Responses<R, P>,
        host: &mut H,
    ) {
        match frame {
            Frame::Line(line) => responses.handle_line(line, host),
            Frame::TooLong => {
                // The error takes its place after every earlier response; nothing after it is
                // read, and the connection closes (lingering) once it is sent.
                *input = Input::Abandoned;
                responses.push_ready(R::line_too_long(), host);
            }
        }
    }

    /// Reads what the socket has, through `recv`, and handles the complete lines.
    ///
    /// At most [`READS_PER_EVENT`] calls of `recv` into `buffer`, and none once the session
    /// stops wanting input (a limit, a held request, the end of input); a short read is taken
    /// to mean the socket is drained, `Ok(0)` is the peer's end of input, and `WouldBlock` ends
    /// the reading quietly. Any other error is returned: the connection is broken.
    pub fn receive<H: Host<Response = R, Pending = P>>(
        &mut self,
        limits: &Limits,
        host: &mut H,
        buffer: &mut [u8],
        mut recv: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<()> {
        for _ in 0..READS_PER_EVENT {
            if !self.wants_input(limits) {
                break;
            }
            match recv(buffer) {
                Ok(0) => {
                    self.peer_closed_input();
                    break;
                }
                Ok(received) => {
                    self.framer.extend(&buffer[..received]);
                    let _ = self.process_lines(limits, host);
                    if received < buffer.len() {
                        // The socket is most likely drained; don't pay for a WouldBlock.
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Moves the connection forward: handles buffered lines, then makes one `send` of the
    /// unsent output (if there is any), then handles lines again, since sending may have lifted
    /// the output limit and lines already buffered must not wait for input that may never come.
    /// What they produce goes out on the next call.
    ///
    /// `WouldBlock` from `send` is no error (the output waits for writable); any other error is
    /// returned: the client is gone.
    pub fn advance<H: Host<Response = R, Pending = P>>(
        &mut self,
        limits: &Limits,
        host: &mut H,
        send: impl FnOnce(&[u8]) -> io::Result<usize>,
    ) -> io::Result<Progress> {
        let mut progress = self.process_lines(limits, host);
        if !self.unsent().is_empty() {
            match send(self.unsent()) {
                Ok(sent) => {
                    self.mark_sent(sent);
                    progress = self.process_lines(limits, host);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        Ok(progress)
    }

    /// What the loop should do with the connection now: close it, linger, or poll it with the
    /// interest its state calls for (readable only while it wants input, writable only while
    /// output is unsent).
    pub fn next_step(&self, limits: &Limits) -> Step {
        if self.is_finished() {
            if self.peer_may_still_send() {
                Step::Linger
            } else {
                Step::Close
            }
        } else {
            Step::Poll {
                readable: self.wants_input(limits),
                writable: !self.unsent().is_empty(),
            }
        }
    }

    /// Begins the linger of [`Step::Linger`]: from now on input is only discarded, at most
    /// [`LINGER_MAX_BYTES`] of it.
    pub fn start_linger(&mut self) {
        self.linger_allowance = Some(LINGER_MAX_BYTES);
    }

    /// Whether the connection lingers (see [`start_linger`](Self::start_linger)).
    pub fn is_lingering(&self) -> bool {
        self.linger_allowance.is_some()
    }

    /// Reads and drops what a lingering peer sends, through `recv` into `buffer` (at most
    /// [`READS_PER_EVENT`] times). Returns `true` while the linger goes on, `false` when the
    /// connection should close now: at the peer's EOF, on an error, or once it sent more than
    /// [`LINGER_MAX_BYTES`]; after a server stop, also as soon as a pass finds nothing at all to
    /// read (a stopping server does not wait for idle clients, and with nothing unread its close
    /// is a plain FIN that leaves every answer in flight intact).
    pub fn discard_input(
        &mut self,
        buffer: &mut [u8],
        mut recv: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> bool {
        let Some(allowance) = &mut self.linger_allowance else {
            return false;
        };
        let mut discarded = false;
        for _ in 0..READS_PER_EVENT {
            match recv(buffer) {
                Ok(received) if received > 0 && received < *allowance => {
                    *allowance -= received;
                    discarded = true;
                }
                // After a server stop, a peer that sent nothing since the last pass is idle, not
                // sending: close now. One still sending keeps the linger going.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return !self.stopped_open || discarded;
                }
                // EOF, an error, or past the allowance: done waiting.
                _ => return false,
            }
        }
        // More may be waiting; level-triggered epoll reports it on the next turn.
        true
    }

    /// Offers the held request (the host had no room when it was read) again; `true` if the
    /// session is no longer waiting for room.
    pub fn retry_held<H: Host<Response = R, Pending = P>>(&mut self, host: &mut H) -> bool {
        let Some(held) = &self.responses.held else {
            return true;
        };
        if host.resubmit(held.seq, &held.line) {
            self.responses.held = None;
            true
        } else {
            false
        }
    }

    /// Whether a request is held for lack of room.
    pub fn is_holding(&self) -> bool {
        self.responses.held.is_some()
    }

    /// The answer to handed-off request `seq` arrived: it is written as soon as its turn comes.
    ///
    /// The answer of a request already answered by [`expire`](Self::expire) is dropped here.
    pub fn complete<H: Host<Response = R, Pending = P>>(
        &mut self,
        seq: u64,
        answer: R,
        host: &mut H,
    ) {
        let responses = &mut self.responses;
        if let Some(late) = responses.late.iter().position(|&late| late == seq) {
            responses.late.swap_remove(late);
            return;
        }
        match responses.slot_mut(seq) {
            Some(slot) => match *slot {
                Slot::Waiting(pending) => {
                    *slot = Slot::Ready(answer);
                    host.settled(pending, false);
                }
                Slot::Ready(_) => {
                    debug_assert!(false, "a second answer for request {seq}");
                    return;
                }
            },
            // One answer per request, for a request of this connection: anything else is a
            // bug, and dropping the stray answer keeps every other answer right.
            None => {
                debug_assert!(false, "a stray answer for request {seq}");
                return;
            }
        }
        responses.write_ready(host);
    }

    /// Request `seq`'s deadline passed: if it is still waiting for its answer, it is answered
    /// with `answer` (a timeout) now, and its result, when it comes, is dropped. Returns whether
    /// anything changed (`false` for a request answered in time).
    pub fn expire<H: Host<Response = R, Pending = P>>(
        &mut self,
        seq: u64,
        answer: R,
        host: &mut H,
    ) -> bool {
        let responses = &mut self.responses;
        let Some(slot) = responses.slot_mut(seq) else {
            return false;
        };
        let Slot::Waiting(pending) = *slot else {
            return false;
        };
        *slot = Slot::Ready(answer);
        if responses.held.as_ref().is_some_and(|held| held.seq == seq) {
            // Never handed off: no result will come, and reading may go on.
            responses.held = None;
        } else {
            responses.late.push(seq);
        }
        host.settled(pending, true);
        responses.write_ready(host);
        true
    }

    /// No result will come for request `seq` (its host dropped the work: a W06 worker skips a
    /// batch whose deadlines all passed before it started). If the request was already answered
    /// by [`expire`](Self::expire), it is no longer late; if it is still waiting, it is answered
    /// with `answer` now, exactly as `expire` would, but no late result is expected for it.
    /// Returns whether this answered it.
    pub fn abandon<H: Host<Response = R, Pending = P>>(
        &mut self,
        seq: u64,
        answer: R,
        host: &mut H,
    ) -> bool {
        let late = &mut self.responses.late;
        if let Some(index) = late.iter().position(|&late| late == seq) {
            late.swap_remove(index);
            return false;
        }
        let answered = self.expire(seq, answer, host);
        let late = &mut self.responses.late;
        if let Some(index) = late.iter().position(|&late| late == seq) {
            late.swap_remove(index);
        }
        answered
    }

    /// Handed-off requests still waiting for their answer.
    pub fn unanswered(&self) -> usize {
        self.unanswered_where(|_| true)
    }

    /// Of the handed-off requests still waiting for their answer, those whose pending value
    /// `counts` (a host whose requests wait for different things tells them apart).
    pub fn unanswered_where(&self, counts: impl Fn(&P) -> bool) -> usize {
        self.responses
            .slots
            .iter()
            .filter(|slot| matches!(slot, Slot::Waiting(pending) if counts(pending)))
            .count()
    }

    /// Requests read and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.responses.slots.len()
    }

    /// Response bytes not yet sent.
    pub fn unsent(&self) -> &[u8] {
        &self.responses.out[self.responses.sent..]
    }

    /// Records that the first `n` bytes of [`unsent`](Self::unsent) were sent.
    pub fn mark_sent(&mut self, n: usize) {
        let responses = &mut self.responses;
        responses.sent += n;
        debug_assert!(responses.sent <= responses.out.len());
        if responses.sent == responses.out.len() {
            // The common case: everything went out, and the buffer is reused from its start.
            responses.out.clear();
            responses.sent = 0;
            if responses.out.capacity() > KEPT_OUTPUT_CAPACITY {
                // Give back the memory of a past burst, so idle connections stay small.
                responses.out = Vec::new();
            }
        } else if responses.sent >= 64 * 1024 && responses.sent * 2 >= responses.out.len() {
            // A slow reader: drop the sent prefix once it is most of the buffer, so the buffer
            // stays near the unsent size instead of growing with everything ever written.
            responses.out.drain(..responses.sent);
            responses.sent = 0;
        }
    }

    /// Whether the connection has nothing left to do: no more requests will come, every
    /// response is written and sent.
    pub fn is_finished(&self) -> bool {
        matches!(self.input, Input::Ended | Input::Abandoned)
            && self.responses.slots.is_empty()
            && self.responses.held.is_none()
            && self.unsent().is_empty()
    }

    /// Whether input stopped before the peer finished sending (a line too long, or a server
    /// stop before the peer's end of input), so the connection lingers before its close (see
    /// [`Step::Linger`]).
    pub fn peer_may_still_send(&self) -> bool {
        self.input == Input::Abandoned || self.stopped_open
    }
}

#[cfg(test)]
mod tests;
