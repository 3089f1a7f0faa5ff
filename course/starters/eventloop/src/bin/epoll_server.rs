//! `epoll_server`: the W04 single-threaded server. (starter)
//!
//! It speaks the course's wire protocol (the same as the W05 handoff server) on one thread, with
//! one [`Dispatcher`], and computes *every* verb inline on that thread. That is the point of it:
//! it is the baseline the thread-pool server is measured against, and the demonstration of what
//! one CPU-heavy (or sleeping) request does to every other client's latency — `sleep 1000` stops
//! the whole server for a second.
//!
//! Everything that needs no pool it does right:
//!
//! - framing, CRLF, byte-at-a-time input and pipelining, through `handoff_protocol`'s framer;
//!   responses go out in request order because they are produced in request order;
//! - half-close: after a client's end of input, every owed response (including one for a final
//!   line without `\n`) is sent, then the connection is closed;
//! - `ERROR: line too long` after the earlier responses, then close;
//! - backpressure: a client whose unsent output exceeds [`OUTPUT_LIMIT`] is not read from until it
//!   drains, so a client that never reads cannot grow the server's memory;
//! - write interest only while output is pending, one `send` per connection per loop turn;
//! - EMFILE without spinning (the listener sheds connections with its spare fd), SIGPIPE-proof
//!   sends, a reset ends only its own connection;
//! - SIGTERM/SIGINT through a signalfd: stop accepting, answer what was read, flush, exit 0.
//!
//! # Starter code
//!
//! The server's structure with every body a `todo!()`: write it on top of your `eventloop`.

// The scaffolding is unused until you write the bodies; remove this line once you have.
#![allow(
    dead_code,
    unused_variables,
    unused_imports,
    unused_mut,
    unreachable_code
)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use eventloop::net::{DEFAULT_BACKLOG, TcpListener, TcpStream};
use eventloop::{Dispatcher, FdKey, Interest, Readiness, Timer, sys};
use handoff_protocol::{ErrorReply, Frame, LineFramer, Reply, Stats, Verb, execute, split_request};

/// A client whose unsent output exceeds this is not read from until it drains below it.
const OUTPUT_LIMIT: usize = 1 << 20;
/// How many bytes one `recv` may bring in.
const READ_CHUNK: usize = 64 * 1024;
/// How many `recv` calls one connection gets per loop turn, so one fast sender cannot starve the
/// others (the fd is level-triggered, so what is left is reported again).
const READS_PER_TURN: usize = 4;
/// How long shutdown waits for clients that do not read their last responses.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long the listener pauses after an accept error it cannot shed (so it cannot spin).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The W04 single-threaded epoll server: every verb runs inline on the event loop, so one slow
/// request (`sleep 1000`) delays every client.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  epoll_server 9090                  listen on 127.0.0.1:9090\n  \
                  epoll_server 0                     pick a free port (printed on stdout)\n  \
                  epoll_server 0 --bind 0.0.0.0      listen on every interface\n\n\
                  Then: printf 'ping\\ncompute hello\\n' | nc -q1 127.0.0.1 9090"
)]
struct Args {
    /// The TCP port to listen on; 0 picks a free one.
    #[arg(default_value_t = 9090)]
    port: u16,
    /// The address to bind.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    bind: IpAddr,
}

fn main() -> anyhow::Result<()> {
    todo!("W04 L05: main")
}

/// Task panics are answered to the client; the default hook's multi-line report on stderr for
/// each of them would drown everything else, so the hook prints one line.
fn install_quiet_panic_hook() {
    todo!("W04 L05: install_quiet_panic_hook")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    todo!("W04 L05: panic_message")
}

/// The server's state; it lives on the loop thread, shared by the callbacks through an `Rc`.
struct Server {
    /// `None` once shutdown has begun.
    listener: RefCell<Option<TcpListener>>,
    listener_key: Cell<Option<FdKey>>,
    /// Re-enables the listener after an accept error that could not be shed.
    accept_pause: RefCell<Option<Timer>>,
    connections: RefCell<HashMap<u64, Connection>>,
    next_id: Cell<u64>,
    /// The buffer every connection receives into before its bytes go to its framer.
    scratch: RefCell<Vec<u8>>,
    /// How many connections are open (the table is borrowed while a request is answered, so
    /// `stats` reads this counter rather than the table's length).
    open_connections: Cell<u64>,
    /// Counters for `stats`.
    completed: Cell<u64>,
    errors: Cell<u64>,
    panics: Cell<u64>,
    /// Connections the listener shed when out of fds (kept after the listener is dropped).
    rejected_before_shutdown: Cell<u64>,
    shutting_down: Cell<bool>,
    shutdown_timer: RefCell<Option<Timer>>,
}

/// One client connection.
struct Connection {
    stream: TcpStream,
    key: FdKey,
    framer: LineFramer,
    /// Response bytes not yet sent: `output[sent..]`.
    output: Vec<u8>,
    sent: usize,
    /// The client shut down its write side (or shutdown began): read nothing more.
    input_ended: bool,
    /// Whether input ended at a real end-of-input, whose final unterminated line is answered.
    answer_final_line: bool,
    /// `line too long` was answered: send what is owed, then close.
    close_after_output: bool,
    /// The interest the fd is registered with now.
    interest: Interest,
}

/// What a connection should do after an event.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Keep,
    Close,
}

impl Server {
    fn new(listener: TcpListener) -> Server {
        todo!("W04 L05: new")
    }

    /// Registers the listener and the signals with the dispatcher.
    fn start(self: &Rc<Self>, dispatcher: &Dispatcher) -> io::Result<()> {
        todo!("W04 L05: start")
    }

    fn rejected(&self) -> u64 {
        todo!("W04 L05: rejected")
    }

    fn accept_all(self: &Rc<Self>, dispatcher: &Dispatcher) {
        todo!("W04 L05: accept_all")
    }

    fn add_connection(self: &Rc<Self>, dispatcher: &Dispatcher, stream: TcpStream) {
        todo!("W04 L05: add_connection")
    }

    fn on_ready(&self, dispatcher: &Dispatcher, id: u64, readiness: Readiness) {
        todo!("W04 L05: on_ready")
    }

    /// Handles one readiness report: read, answer, send once, and set the interest.
    fn serve(
        &self,
        dispatcher: &Dispatcher,
        connection: &mut Connection,
        readiness: Readiness,
    ) -> Next {
        todo!("W04 L05: serve")
    }

    /// Answers every complete line that fits under the output limit, inline.
    fn answer(&self, connection: &mut Connection) {
        todo!("W04 L05: answer")
    }

    /// Computes one request's response bytes, here on the loop thread.
    fn respond(&self, line: &[u8]) -> Vec<u8> {
        todo!("W04 L05: respond")
    }

    fn count(&self, reply: &Reply) {
        todo!("W04 L05: count")
    }

    fn stats(&self) -> Stats {
        todo!("W04 L05: stats")
    }

    fn close(&self, dispatcher: &Dispatcher, id: u64) {
        todo!("W04 L05: close")
    }

    /// SIGTERM/SIGINT: stop accepting, answer what was read, flush, then exit.
    fn begin_shutdown(&self, dispatcher: &Dispatcher) {
        todo!("W04 L05: begin_shutdown")
    }
}

impl Connection {
    fn pending_output(&self) -> usize {
        todo!("W04 L05: pending_output")
    }

    /// Whether the connection should read: input not ended, and output not over the limit.
    fn reading(&self) -> bool {
        todo!("W04 L05: reading")
    }

    /// Receives up to `READS_PER_TURN` chunks through the loop's shared `scratch` buffer (so an
    /// idle connection holds no 64 KiB read buffer of its own); notes end of input. `Err` ends
    /// the connection.
    fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        todo!("W04 L05: read_some")
    }

    /// One `send` of everything pending; keeps what the kernel did not take.
    fn send_once(&mut self) -> io::Result<()> {
        todo!("W04 L05: send_once")
    }

    /// Done: nothing more will be read or answered, and everything owed has been sent.
    ///
    /// With no output pending, the answer step has consumed every complete line (it stops early
    /// only while output is over the limit), so only the final unterminated line can be owed.
    fn is_finished(&self) -> bool {
        todo!("W04 L05: is_finished")
    }

    fn desired_interest(&self) -> Interest {
        todo!("W04 L05: desired_interest")
    }
}
