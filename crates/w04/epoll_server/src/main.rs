//! `epoll_server`: the W04 single-threaded server.
//!
//! It speaks the course's wire protocol (the same as the W05 handoff server) on one thread, with
//! one [`Dispatcher`], and computes *every* verb inline on that thread. That is the point of it:
//! it is the baseline the thread-pool server is measured against, and the demonstration of what
//! one CPU-heavy (or sleeping) request does to every other client's latency — `sleep 1000` stops
//! the whole server for a second.
//!
//! Everything that needs no pool it does right, because its connections run the course's one
//! connection state machine, [`handoff_protocol::session`] (the W05 handoff server runs the same
//! one), with a host that answers every request inline:
//!
//! - framing, CRLF, byte-at-a-time input and pipelining; responses go out in request order;
//! - half-close: after a client's end of input, every owed response (including one for a final
//!   line without `\n`) is sent, then the connection is closed;
//! - `ERROR: line too long` after the earlier responses, then a clean close: the write side is
//!   shut down and what the client still sends is discarded until it closes too (bounded in time
//!   and bytes), so no reset destroys answers still on their way;
//! - backpressure: a client whose unsent output exceeds [`OUTPUT_LIMIT`] is not read from until it
//!   drains, so a client that never reads cannot grow the server's memory;
//! - a bounded number of `recv`s per readiness event, write interest only while output is
//!   pending, one `send` per connection per loop turn;
//! - EMFILE without spinning (the listener sheds connections with the process's spare fd),
//!   SIGPIPE-proof sends, a reset ends only its own connection;
//! - SIGTERM/SIGINT through a signalfd: stop accepting, answer what was read, flush, exit 0
//!   (clients that do not read are closed after `eventloop::shutdown::DRAIN_TIMEOUT`); a second
//!   signal closes everything at once.

use std::cell::{Cell, RefCell};
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use anyhow::Context as _;
use clap::Parser;
use eventloop::net::{ACCEPT_PAUSE, ACCEPTS_PER_EVENT, DEFAULT_BACKLOG, TcpListener, TcpStream};
use eventloop::shutdown::{DRAIN_TIMEOUT, ShutdownSignals, SignalStep};
use eventloop::slab::{Key, Slab};
use eventloop::{Dispatcher, FdKey, Interest, Readiness, Timer, sys};
use handoff_protocol::session::{
    Answer, Handled, Host, LINGER_TIMEOUT, Limits, Response as _, Session, Step,
};
use handoff_protocol::{ErrorReply, Reply, Stats, Verb, execute, panic_message, split_request};

/// A client whose unsent output exceeds this is not read from until it drains below it.
const OUTPUT_LIMIT: usize = 1 << 20;
/// The session's limits: every request is answered as it is read, so none is ever in flight,
/// and only unsent output can switch reading off.
const LIMITS: Limits = Limits {
    max_in_flight: usize::MAX,
    max_unsent: OUTPUT_LIMIT,
};
/// How many bytes one `recv` may bring in.
const READ_CHUNK: usize = 64 * 1024;

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
    /// The shutdown signals seen so far: draining since the first.
    signals: RefCell<ShutdownSignals>,
    shutdown_timer: RefCell<Option<Timer>>,
}

/// One client connection.
struct Connection {
    stream: TcpStream,
    key: FdKey,
    /// The connection's protocol state: the course's one connection state machine.
    session: Session<Answer, ()>,
    /// The interest the fd is registered with now.
    interest: Interest,
    /// Set while the connection lingers before its close (after `line too long`, see
    /// `Server::linger`): the timer that ends the wait.
    lingering: Option<Timer>,
}

/// What a connection should do after an event.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Keep,
    Close,
    Linger,
}

/// The session's [`Host`] here: every request is answered as it is read, on the loop.
struct Inline<'s> {
    server: &'s Server,
}

impl Host for Inline<'_> {
    type Response = Answer;
    type Pending = ();

    fn handle(&mut self, _seq: u64, line: &[u8]) -> Handled<Answer, ()> {
        Handled::Answered(self.server.respond(line))
    }

    fn resubmit(&mut self, _seq: u64, _line: &[u8]) -> bool {
        unreachable!("every request is answered as it is read, so none is ever held")
    }

    fn responded(&mut self, answer: &Answer) {
        self.server.completed.set(self.server.completed.get() + 1);
        if answer.is_error() {
            self.server.errors.set(self.server.errors.get() + 1);
        }
    }
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
            signals: RefCell::new(ShutdownSignals::new()),
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
                server.on_shutdown_signal(dispatcher);
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
        for _ in 0..ACCEPTS_PER_EVENT {
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
                session: Session::new(),
                interest: Interest::READABLE,
                lingering: None,
            })
        });
        match inserted {
            Ok(_) => self.open_connections.set(self.open_connections.get() + 1),
            // The stream was dropped (closed) with the failed insert; the client sees its
            // connection end.
            Err(error) => eprintln!("epoll_server: cannot register a connection: {error}"),
        }
    }

    fn on_ready(self: &Rc<Self>, dispatcher: &Dispatcher, id: Key, readiness: Readiness) {
        let next = {
            let mut connections = self.connections.borrow_mut();
            let Some(connection) = connections.get_mut(id) else {
                return;
            };
            self.serve(dispatcher, connection, readiness)
        };
        self.follow(dispatcher, id, next);
    }

    fn follow(self: &Rc<Self>, dispatcher: &Dispatcher, id: Key, next: Next) {
        match next {
            Next::Keep => {}
            Next::Close => self.close(dispatcher, id),
            Next::Linger => self.linger(dispatcher, id),
        }
    }

    /// Handles one readiness report: read, answer, send once, and set the interest.
    fn serve(
        &self,
        dispatcher: &Dispatcher,
        connection: &mut Connection,
        readiness: Readiness,
    ) -> Next {
        if readiness.is_error() || readiness.is_hang_up() {
            // A reset (or both directions shut): nobody can read an answer any more.
            return Next::Close;
        }
        let stream = &connection.stream;
        let mut scratch = self.scratch.borrow_mut();
        if connection.lingering.is_some() {
            let waits_on = connection
                .session
                .discard_input(&mut scratch, |buffer| stream.recv(buffer));
            return if waits_on { Next::Keep } else { Next::Close };
        }
        if readiness.is_readable() || readiness.is_read_closed() {
            let received = connection.session.receive(
                &LIMITS,
                &mut Inline { server: self },
                &mut scratch,
                |buffer| stream.recv(buffer),
            );
            if received.is_err() {
                // A reset (or any receive error) ends only this connection.
                return Next::Close;
            }
        }
        self.advance(dispatcher, connection)
    }

    /// Answers what is buffered, sends once, and says whether the connection stays, closes or
    /// lingers; a kept one gets the interest its session calls for.
    fn advance(&self, dispatcher: &Dispatcher, connection: &mut Connection) -> Next {
        let stream = &connection.stream;
        let sent = connection
            .session
            .advance(&LIMITS, &mut Inline { server: self }, |unsent| {
                stream.send(unsent)
            });
        if sent.is_err() {
            // EPIPE or a reset: the client is gone.
            return Next::Close;
        }
        let (readable, writable) = match connection.session.next_step(&LIMITS) {
            Step::Close => return Next::Close,
            Step::Linger => return Next::Linger,
            Step::Poll { readable, writable } => (readable, writable),
        };
        let interest = Interest::NONE
            .with_readable(readable)
            .with_writable(writable);
        if interest != connection.interest {
            if dispatcher.modify_fd(connection.key, interest).is_err() {
                return Next::Close;
            }
            connection.interest = interest;
        }
        Next::Keep
    }

    /// Closes a connection whose client may still be sending (after `line too long`) gently:
    /// shuts the write side down, then discards what the client still sends until it closes
    /// too, for at most [`LINGER_TIMEOUT`] (the rule and its reason are the session's,
    /// [`Step::Linger`]).
    fn linger(self: &Rc<Self>, dispatcher: &Dispatcher, id: Key) {
        let next = {
            let mut connections = self.connections.borrow_mut();
            let Some(connection) = connections.get_mut(id) else {
                return;
            };
            if connection.stream.shutdown_write().is_err()
                || dispatcher
                    .modify_fd(connection.key, Interest::READABLE)
                    .is_err()
            {
                Next::Close
            } else {
                connection.interest = Interest::READABLE;
                let server = Rc::clone(self);
                let timer = dispatcher.create_timer(move |dispatcher| server.close(dispatcher, id));
                timer.enable(LINGER_TIMEOUT);
                connection.lingering = Some(timer);
                connection.session.start_linger();
                // What already arrived is discarded now; level-triggered epoll reports the rest.
                self.serve(dispatcher, connection, Readiness::from_epoll(0))
            }
        };
        if next == Next::Close {
            self.close(dispatcher, id);
        }
    }

    /// Computes one request's answer, here on the loop thread.
    fn respond(&self, line: &[u8]) -> Answer {
        let (verb, args) = split_request(line);
        if verb == Verb::Stats {
            return Answer::Stats(self.stats());
        }
        match panic::catch_unwind(AssertUnwindSafe(|| execute(verb, args))) {
            Ok(reply) => Answer::Reply(reply),
            Err(payload) => {
                self.panics.set(self.panics.get() + 1);
                Answer::Reply(Reply::Error(ErrorReply::Panicked(
                    panic_message(payload.as_ref()).to_owned(),
                )))
            }
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
        if self.signals.borrow().is_draining() && self.connections.borrow().is_empty() {
            dispatcher.exit();
        }
    }

    /// SIGTERM/SIGINT: the first drains ([`drain`](Self::drain)); a second closes every
    /// connection at once and exits (the rule of `eventloop::shutdown`, as in the W05 loop).
    fn on_shutdown_signal(self: &Rc<Self>, dispatcher: &Dispatcher) {
        let step = self.signals.borrow_mut().on_signal();
        match step {
            SignalStep::Drain => self.drain(dispatcher),
            SignalStep::CloseAll => self.close_all(dispatcher),
        }
    }

    /// Closes every connection at once and ends the loop.
    fn close_all(&self, dispatcher: &Dispatcher) {
        let keys = self.connections.borrow().keys();
        for id in keys {
            self.close(dispatcher, id);
        }
        dispatcher.exit();
    }

    /// The first signal: stop accepting, answer what was read, flush, then exit.
    fn drain(self: &Rc<Self>, dispatcher: &Dispatcher) {
        if let Some(key) = self.listener_key.take() {
            let _ = dispatcher.remove_fd(key);
        }
        self.rejected_before_shutdown.set(self.rejected());
        drop(self.listener.borrow_mut().take());

        let mut to_follow = Vec::new();
        {
            let mut connections = self.connections.borrow_mut();
            for id in connections.keys() {
                let Some(connection) = connections.get_mut(id) else {
                    continue;
                };
                if connection.lingering.is_some() {
                    // Already answered; its linger timer closes it.
                    continue;
                }
                // Complete lines already read are answered; a partial line is not a request.
                connection.session.stop_input();
                let next = self.advance(dispatcher, connection);
                if next != Next::Keep {
                    to_follow.push((id, next));
                }
            }
        }
        for (id, next) in to_follow {
            self.follow(dispatcher, id, next);
        }
        if self.connections.borrow().is_empty() {
            dispatcher.exit();
            return;
        }
        // Clients that never read their last responses must not keep the server alive.
        let timer = dispatcher.create_timer(|dispatcher| dispatcher.exit());
        timer.enable(DRAIN_TIMEOUT);
        *self.shutdown_timer.borrow_mut() = Some(timer);
    }
}
