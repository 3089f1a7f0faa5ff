//! `epoll_server`: the W04 single-threaded server.
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

use std::cell::{Cell, RefCell};
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use eventloop::net::{DEFAULT_BACKLOG, TcpListener, TcpStream};
use eventloop::slab::{Key, Slab};
use eventloop::{Dispatcher, FdKey, Interest, Readiness, Timer, sys};
use handoff_protocol::{
    ErrorReply, Frame, LineFramer, Reply, Stats, Verb, execute, panic_message, split_request,
};

/// A client whose unsent output exceeds this is not read from until it drains below it.
const OUTPUT_LIMIT: usize = 1 << 20;
/// How many bytes one `recv` may bring in.
const READ_CHUNK: usize = 64 * 1024;
/// How many `recv` calls one connection gets per loop turn, so one fast sender cannot starve the
/// others (the fd is level-triggered, so what is left is reported again).
const READS_PER_TURN: usize = 4;
/// How many connections one listener event may accept.
const ACCEPTS_PER_TURN: usize = 256;
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

fn main() -> std::process::ExitCode {
    // An operational error (a busy port) is one line, never a backtrace.
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("epoll_server: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // Blocked before anything else runs (and before any thread could exist), so the signals
    // reach only the signalfd.
    sys::block_signals(&[libc::SIGTERM, libc::SIGINT]).context("blocking SIGTERM and SIGINT")?;
    install_quiet_panic_hook();

    let addr = SocketAddr::new(args.bind, args.port);
    let listener =
        TcpListener::bind(addr, DEFAULT_BACKLOG).with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let dispatcher = Dispatcher::new("epoll_server")?;
    let server = Rc::new(Server::new(listener));
    server.start(&dispatcher)?;

    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {local}")?;
    stdout.flush()?;
    drop(stdout);

    dispatcher.run()?;
    Ok(())
}

/// Task panics are answered to the client; the default hook's multi-line report on stderr for
/// each of them would drown everything else, so the hook prints one line.
fn install_quiet_panic_hook() {
    panic::set_hook(Box::new(|info| {
        eprintln!(
            "epoll_server: task panicked: {}",
            panic_message(info.payload())
        );
    }));
}

/// The server's state; it lives on the loop thread, shared by the callbacks through an `Rc`.
struct Server {
    /// `None` once shutdown has begun.
    listener: RefCell<Option<TcpListener>>,
    listener_key: Cell<Option<FdKey>>,
    /// Re-enables the listener after an accept error that could not be shed.
    accept_pause: RefCell<Option<Timer>>,
    /// The open connections. Each fd callback carries its connection's key; the key's
    /// generation keeps a late event from reaching a connection that reused the place.
    connections: RefCell<Slab<Connection>>,
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
        Server {
            listener: RefCell::new(Some(listener)),
            listener_key: Cell::new(None),
            accept_pause: RefCell::new(None),
            connections: RefCell::new(Slab::new()),
            scratch: RefCell::new(vec![0; READ_CHUNK]),
            open_connections: Cell::new(0),
            completed: Cell::new(0),
            errors: Cell::new(0),
            panics: Cell::new(0),
            rejected_before_shutdown: Cell::new(0),
            shutting_down: Cell::new(false),
            shutdown_timer: RefCell::new(None),
        }
    }

    /// Registers the listener and the signals with the dispatcher.
    fn start(self: &Rc<Self>, dispatcher: &Dispatcher) -> io::Result<()> {
        let server = Rc::clone(self);
        let key = {
            let listener = self.listener.borrow();
            let listener = listener
                .as_ref()
                .expect("the listener exists until shutdown");
            dispatcher.add_fd(
                listener.as_fd(),
                Interest::READABLE,
                move |dispatcher, _| {
                    server.accept_all(dispatcher);
                },
            )?
        };
        self.listener_key.set(Some(key));

        let server = Rc::clone(self);
        let pause = dispatcher.create_timer(move |dispatcher| {
            if let Some(key) = server.listener_key.get() {
                // If this fails the listener stays paused; there is nothing better to do.
                let _ = dispatcher.modify_fd(key, Interest::READABLE);
            }
        });
        *self.accept_pause.borrow_mut() = Some(pause);

        let server = Rc::clone(self);
        dispatcher.add_signals(
            &[libc::SIGTERM, libc::SIGINT],
            move |dispatcher, _signal| {
                server.begin_shutdown(dispatcher);
            },
        )?;
        Ok(())
    }

    fn rejected(&self) -> u64 {
        let listener = self.listener.borrow();
        listener
            .as_ref()
            .map_or(self.rejected_before_shutdown.get(), TcpListener::rejected)
    }

    fn accept_all(self: &Rc<Self>, dispatcher: &Dispatcher) {
        // Bounded per turn, so a connection storm cannot keep the loop from serving clients;
        // the listener is level-triggered, so what is left is reported again.
        for _ in 0..ACCEPTS_PER_TURN {
            let accepted = {
                let listener = self.listener.borrow();
                let Some(listener) = listener.as_ref() else {
                    return;
                };
                listener.accept()
            };
            match accepted {
                Ok(Some((stream, _peer))) => self.add_connection(dispatcher, stream),
                Ok(None) => return,
                Err(error) => {
                    // Out of fds with no spare left, or something stranger: pause the listener
                    // briefly instead of being woken for the same error again and again.
                    eprintln!("epoll_server: accept failed: {error}");
                    if let Some(key) = self.listener_key.get() {
                        let _ = dispatcher.modify_fd(key, Interest::NONE);
                        if let Some(timer) = self.accept_pause.borrow().as_ref() {
                            timer.enable(ACCEPT_PAUSE);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn add_connection(self: &Rc<Self>, dispatcher: &Dispatcher, stream: TcpStream) {
        // Small responses should leave at once rather than wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let server = Rc::clone(self);
        // The connection learns its key before it exists, so its callback can carry it.
        let inserted = self.connections.borrow_mut().insert_with(|id| {
            let key = dispatcher.add_fd(
                stream.as_fd(),
                Interest::READABLE,
                move |dispatcher, readiness| {
                    server.on_ready(dispatcher, id, readiness);
                },
            )?;
            Ok::<_, io::Error>(Connection {
                stream,
                key,
                framer: LineFramer::new(),
                output: Vec::new(),
                sent: 0,
                input_ended: false,
                answer_final_line: false,
                close_after_output: false,
                interest: Interest::READABLE,
            })
        });
        match inserted {
            Ok(_) => self.open_connections.set(self.open_connections.get() + 1),
            // The stream was dropped (closed) with the failed insert; the client sees its
            // connection end.
            Err(error) => eprintln!("epoll_server: cannot register a connection: {error}"),
        }
    }

    fn on_ready(&self, dispatcher: &Dispatcher, id: Key, readiness: Readiness) {
        let next = {
            let mut connections = self.connections.borrow_mut();
            let Some(connection) = connections.get_mut(id) else {
                return;
            };
            self.serve(dispatcher, connection, readiness)
        };
        if next == Next::Close {
            self.close(dispatcher, id);
        }
    }

    /// Handles one readiness report: read, answer, send once, and set the interest.
    fn serve(
        &self,
        dispatcher: &Dispatcher,
        connection: &mut Connection,
        readiness: Readiness,
    ) -> Next {
        let wants_read = readiness.is_readable()
            || readiness.is_read_closed()
            || readiness.is_hang_up()
            || readiness.is_error();
        if wants_read
            && connection.reading()
            && connection
                .read_some(&mut self.scratch.borrow_mut())
                .is_err()
        {
            // A reset (or any receive error) ends only this connection.
            return Next::Close;
        }
        self.answer(connection);
        if connection.pending_output() > 0 && connection.send_once().is_err() {
            return Next::Close;
        }
        // Sending may have made room for answering lines that waited for it.
        self.answer(connection);
        if (readiness.is_hang_up() || readiness.is_error()) && connection.pending_output() > 0 {
            // The peer is gone in both directions; what is owed can no longer be delivered.
            return Next::Close;
        }
        if connection.is_finished() {
            return Next::Close;
        }
        let interest = connection.desired_interest();
        if interest != connection.interest {
            if dispatcher.modify_fd(connection.key, interest).is_err() {
                return Next::Close;
            }
            connection.interest = interest;
        }
        Next::Keep
    }

    /// Answers every complete line that fits under the output limit, inline.
    fn answer(&self, connection: &mut Connection) {
        while connection.pending_output() < OUTPUT_LIMIT && !connection.close_after_output {
            let reply_to = match connection.framer.next_frame() {
                Some(Frame::Line(line)) => Some(self.respond(line)),
                Some(Frame::TooLong) => None,
                None => {
                    if connection.input_ended && connection.answer_final_line {
                        // Only once: `finish` returns nothing after the final line.
                        connection.answer_final_line = false;
                        match connection.framer.finish() {
                            Some(Frame::Line(line)) => Some(self.respond(line)),
                            Some(Frame::TooLong) => None,
                            None => return,
                        }
                    } else {
                        return;
                    }
                }
            };
            match reply_to {
                Some(reply) => connection.output.extend_from_slice(&reply),
                None => {
                    self.count(&Reply::Error(ErrorReply::LineTooLong));
                    Reply::Error(ErrorReply::LineTooLong).write_to(&mut connection.output);
                    connection.close_after_output = true;
                    connection.input_ended = true;
                }
            }
        }
    }

    /// Computes one request's response bytes, here on the loop thread.
    fn respond(&self, line: &[u8]) -> Vec<u8> {
        let (verb, args) = split_request(line);
        if verb == Verb::Stats {
            let mut out = Vec::with_capacity(128);
            self.stats().write_to(&mut out);
            self.completed.set(self.completed.get() + 1);
            return out;
        }
        let reply = match panic::catch_unwind(AssertUnwindSafe(|| execute(verb, args))) {
            Ok(reply) => reply,
            Err(payload) => {
                self.panics.set(self.panics.get() + 1);
                Reply::Error(ErrorReply::Panicked(
                    panic_message(payload.as_ref()).to_owned(),
                ))
            }
        };
        self.count(&reply);
        reply.to_bytes()
    }

    fn count(&self, reply: &Reply) {
        self.completed.set(self.completed.get() + 1);
        if reply.is_error() {
            self.errors.set(self.errors.get() + 1);
        }
    }

    fn stats(&self) -> Stats {
        Stats {
            connections: self.open_connections.get(),
            queue_depth: 0,
            workers: 0,
            busy_workers: 0,
            completed: self.completed.get(),
            errors: self.errors.get(),
            panics: self.panics.get(),
            rejected: self.rejected(),
        }
    }

    fn close(&self, dispatcher: &Dispatcher, id: Key) {
        let connection = self.connections.borrow_mut().remove(id);
        if let Some(connection) = connection {
            // Unregister before the stream (and its fd) is dropped.
            let _ = dispatcher.remove_fd(connection.key);
            drop(connection);
            self.open_connections.set(self.open_connections.get() - 1);
        }
        if self.shutting_down.get() && self.connections.borrow().is_empty() {
            dispatcher.exit();
        }
    }

    /// SIGTERM/SIGINT: stop accepting, answer what was read, flush, then exit.
    fn begin_shutdown(&self, dispatcher: &Dispatcher) {
        if self.shutting_down.replace(true) {
            return;
        }
        if let Some(key) = self.listener_key.take() {
            let _ = dispatcher.remove_fd(key);
        }
        self.rejected_before_shutdown.set(self.rejected());
        drop(self.listener.borrow_mut().take());

        let mut to_close = Vec::new();
        {
            let mut connections = self.connections.borrow_mut();
            for id in connections.keys() {
                let Some(connection) = connections.get_mut(id) else {
                    continue;
                };
                // Complete lines already read are answered; a partial line is not a request.
                connection.input_ended = true;
                connection.answer_final_line = false;
                let next = self.serve(dispatcher, connection, Readiness::from_epoll(0));
                if next == Next::Close {
                    to_close.push(id);
                }
            }
        }
        for id in to_close {
            self.close(dispatcher, id);
        }
        if self.connections.borrow().is_empty() {
            dispatcher.exit();
            return;
        }
        // Clients that never read their last responses must not keep the server alive.
        let timer = dispatcher.create_timer(|dispatcher| dispatcher.exit());
        timer.enable(SHUTDOWN_GRACE);
        *self.shutdown_timer.borrow_mut() = Some(timer);
    }
}

impl Connection {
    fn pending_output(&self) -> usize {
        self.output.len() - self.sent
    }

    /// Whether the connection should read: input not ended, and output not over the limit.
    fn reading(&self) -> bool {
        !self.input_ended && self.pending_output() < OUTPUT_LIMIT
    }

    /// Receives up to `READS_PER_TURN` chunks through the loop's shared `scratch` buffer (so an
    /// idle connection holds no 64 KiB read buffer of its own); notes end of input. `Err` ends
    /// the connection.
    fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        for _ in 0..READS_PER_TURN {
            match self.stream.recv(scratch) {
                Ok(0) => {
                    self.input_ended = true;
                    self.answer_final_line = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.framer.extend(&scratch[..n]);
                    if n < scratch.len() {
                        return Ok(());
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
            if self.framer.pending_len() > handoff_protocol::MAX_LINE_LEN * 2 {
                // Let the answer step consume (or reject) what is buffered before reading more.
                return Ok(());
            }
        }
        Ok(())
    }

    /// One `send` of everything pending; keeps what the kernel did not take.
    fn send_once(&mut self) -> io::Result<()> {
        match self.stream.send(&self.output[self.sent..]) {
            Ok(n) => {
                self.sent += n;
                if self.sent == self.output.len() {
                    self.output.clear();
                    self.sent = 0;
                    // Give back the memory of a past burst, so idle connections stay small.
                    if self.output.capacity() > READ_CHUNK {
                        self.output = Vec::new();
                    }
                } else if self.sent > OUTPUT_LIMIT {
                    // Reclaim the sent prefix now and then, so the buffer does not creep.
                    self.output.drain(..self.sent);
                    self.sent = 0;
                }
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Done: nothing more will be read or answered, and everything owed has been sent.
    ///
    /// With no output pending, the answer step has consumed every complete line (it stops early
    /// only while output is over the limit), so only the final unterminated line can be owed.
    fn is_finished(&self) -> bool {
        let nothing_to_answer =
            self.close_after_output || (self.input_ended && !self.answer_final_line);
        nothing_to_answer && self.pending_output() == 0
    }

    fn desired_interest(&self) -> Interest {
        Interest::NONE
            .with_readable(self.reading())
            .with_writable(self.pending_output() > 0)
    }
}
