//! The wire protocol that every server of the course speaks and every grader checks.
//!
//! The contract itself is the course's `handoff-protocol.md`: one request per line, one response
//! line per request, in request order. This crate is the single Rust copy of it, used by the W04
//! `epoll_server`, the W05 `handoff_server`, the load generator, the Tokio comparison server and
//! the lesson runner, so that none of them can drift from the others.
//!
//! It is split the way a server uses it:
//!
//! - [`framing`]: turning a byte stream into request lines ([`LineFramer`]), with the 65,536-byte
//!   limit and the CRLF and end-of-file rules.
//! - [`request`]: splitting a line into a [`Verb`] and its argument bytes, and deciding where the
//!   verb runs ([`Verb::runs_on_worker`]); this is all the event loop does with a line.
//! - [`reply`]: computing a verb's [`Reply`] ([`execute`]) — the CPU work a worker does — and
//!   writing replies and the `stats` line as response bytes.
//! - [`session`]: one connection's state without its socket ([`session::Session`]): framing,
//!   answers in request order, the output buffer, the limits that switch reading off, and the
//!   close rules (half-close, line too long and its linger). Every server's connection handling
//!   is this one state machine.
//!
//! ```
//! use handoff_protocol::{Frame, LineFramer, Verb, execute, split_request};
//!
//! let mut framer = LineFramer::new();
//! framer.extend(b"compute hello\r\nping\n");
//! let mut out = Vec::new();
//! while let Some(Frame::Line(line)) = framer.next_frame() {
//!     let (verb, args) = split_request(line);
//!     // A server would hand worker verbs to its pool here; this example runs them inline.
//!     assert_eq!(verb.runs_on_worker(), verb == Verb::Compute);
//!     execute(verb, args).write_to(&mut out);
//! }
//! assert_eq!(out, b"result: 9555e8555c62dcfd\npong\n");
//! ```

pub mod framing;
pub mod reply;
pub mod request;
pub mod session;

pub use framing::{Frame, LineFramer, MAX_LINE_LEN};
pub use reply::{
    ErrorReply, NON_STRING_PANIC, Reply, Stats, execute, expected_response, panic_message,
};
pub use request::{Verb, split_request};
