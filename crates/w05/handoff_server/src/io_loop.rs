//! The event loop side of a pool-handoff server: the listener, the connections, the way back
//! from the pool, backpressure and the shutdown drain, for any line protocol.
//!
//! One [`Dispatcher`] owns every socket of one [`IoLoop`] (with `handoff_server --loops N`,
//! each of N loops is one `IoLoop` on a thread of its own). Its callbacks all land in the
//! `IoLoop`, behind an `Rc<RefCell<_>>`, since the dispatcher and its callbacks live on this
//! thread only:
//!
//! - **listener readable** → accept up to [`ACCEPTS_PER_EVENT`] connections, each registered
//!   with its slab [`Key`] captured in its callback;
//! - **connection ready** → `recv` (a few times at most, for fairness), hand the bytes to the
//!   connection's [`Session`], which asks the [`Service`]'s host what each line means, then
//!   send, and let the service hand the turn's work to the pool ([`Service::hand_over`]);
//! - **waker** → drain every finished task from the [`Results`] queue at once, give each to the
//!   service to put its answers in their places ([`Service::finished`]), offer the freed budget
//!   to the connections waiting for it, then send once per touched connection;
//! - **SIGINT/SIGTERM** ([`IoLoop::on_shutdown_signal`]) → stop accepting and reading, answer
//!   what was read, close each connection once its answers are sent, then end the loop.
//!
//! What is *not* here is what differs between servers, and the [`Service`] supplies it: what a
//! line means (its session [`Host`]), how requests are batched and when a batch leaves, and how
//! a finished batch's answers are settled. `handoff_server` (W05, with the W06 controls) and
//! `kv_server` (W09) are two services on this one loop.
//!
//! ## The handoff, both ways
//!
//! A service's pool task ends with [`Results::deliver`]: it pushes its finished batch into the
//! results queue and wakes the loop **only if that push made the queue non-empty** — a
//! non-empty queue already has a wake on its way, because the loop drains the eventfd before it
//! drains the queue. So a burst of results costs one eventfd write and one loop wake-up.
//!
//! The results queue looks like the Dispatcher's own cross-thread path (a post queue plus an
//! eventfd), and it stays separate on purpose:
//!
//! - It carries *values*, not closures. A finished batch is handled by the loop's state, which
//!   is `Rc`-owned; a posted callback must be `Send`, so it could not capture that state and
//!   would have to find it through a thread-local on every result. Here the one waker callback
//!   that owns the loop drains the queue.
//! - It is bounded. The queue is W05 L01's `TaskQueue`, sized to what the loop may have
//!   outstanding, so results can never pile up; the post queue is unbounded and allocates a box
//!   per post. The loop takes a whole wake's worth of results with one `drain_into` into a
//!   reused buffer.
//! - It is the lesson. W05 L04/L05 teach this handoff — push, wake only on the empty to
//!   non-empty transition (`Ok(1)`), drain — on the queue the students built, and `eventloop`
//!   (W04) sits below `task_queue`, so the Dispatcher cannot be built on it.
//!
//! ## Backpressure
//!
//! A service refuses a request when its budget is spent ([`Host::resubmit`] and a
//! [`Handled::Held`](handoff_protocol::session::Handled::Held) answer); the session then holds
//! that line and reads nothing more, and the connection waits in the `waiting_for_pool` list
//! until results free budget ([`Service::has_room`]). Nothing is dropped and the loop never
//! blocks. Per connection, the session's [`Limits`] switch reading off the same way.
//!
//! ## Readiness
//!
//! Registrations are level-triggered. A connection asks for readable only while its session
//! wants input, and for writable only while it has unsent output, so an idle or paused
//! connection costs nothing, and a changed interest is one `epoll_ctl` that happens only on the
//! rare transitions (a full socket buffer, a limit reached).

use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use eventloop::net::{ACCEPT_PAUSE, ACCEPTS_PER_EVENT, TcpListener, TcpStream};
use eventloop::shutdown::{DRAIN_TIMEOUT, ShutdownSignals, SignalStep};
use eventloop::slab::{Key, Slab};
use eventloop::{Dispatcher, FdKey, Interest, Readiness, Timer, Waker};
use handoff_protocol::session::{Host, LINGER_TIMEOUT, Limits, Progress, Response, Session, Step};
use task_queue::TaskQueue;

/// How much one `recv` may read. Received bytes are copied from this scratch buffer into the
/// connection's framer, which costs only the bytes that arrived.
pub const READ_CHUNK: usize = 64 * 1024;

/// The session type of a service's connections.
pub type SessionOf<S> = Session<<S as Service>::Response, <S as Service>::Pending>;

/// What the loop knows that a service's `stats` may report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Open client connections of this loop.
    pub connections: u64,
    /// Connections the listener accepted and closed at once for lack of a file descriptor
    /// (`eventloop::net::TcpListener::rejected`), also after the listener was closed.
    pub rejected: u64,
}

/// One connection as a [`Service`] sees it when it settles answers: its key, its session and
/// the service's own state for it.
#[derive(Debug)]
pub struct Found<'a, S: Service> {
    /// The connection's key in the loop's table.
    pub key: Key,
    /// Its protocol state.
    pub session: &'a mut SessionOf<S>,
    /// The service's own state for it.
    pub state: &'a mut S::Connection,
}

/// What a server adds to the loop: what its lines mean, how they reach the pool, and how the
/// answers that come back are settled.
///
/// The loop calls a service only from its own thread, and never while another call to it runs.
pub trait Service: Sized + 'static {
    /// The answers its sessions write.
    type Response: Response + fmt::Debug;
    /// What an unanswered request of its sessions waits for.
    type Pending: Copy + fmt::Debug;
    /// The service's own state per connection (W09: the connection's next batch); `()` when
    /// it needs none.
    type Connection: Default + fmt::Debug;
    /// What one pool task brings back to the loop through the [`Results`] queue.
    type Done: Send + 'static;
    /// The host a session is driven with: what each line means.
    type Host<'a>: Host<Response = Self::Response, Pending = Self::Pending>
    where
        Self: 'a;

    /// The host for one call into the session of connection `key`.
    fn host<'a>(
        &'a mut self,
        key: Key,
        state: &'a mut Self::Connection,
        facts: Facts,
    ) -> Self::Host<'a>;

    /// Connection `key` was served for this turn (its lines handled, its output sent): hands
    /// the pool work its lines produced to the pool. `state` is `None` when the connection was
    /// closed meanwhile.
    fn hand_over(&mut self, key: Key, state: Option<&mut Self::Connection>);

    /// The connection a finished task belongs to.
    fn owner(done: &Self::Done) -> Option<Key>;

    /// A task came back: takes its requests off the books and gives each answer to its place
    /// in `found`'s session; `found` is `None` when the connection is gone (its key is stale),
    /// and the answers are dropped.
    fn finished(&mut self, done: Self::Done, found: Option<Found<'_, Self>>, facts: Facts);

    /// Whether the pool budget has room for a held request.
    fn has_room(&self) -> bool;

    /// Connection `key` closed with `session` and `state` as they were: whatever of it the
    /// service still counts leaves its books (its tasks still in the pool come back to
    /// [`finished`](Self::finished) with no connection).
    fn closed(&mut self, session: &SessionOf<Self>, state: Self::Connection);

    /// A connection from `peer` was accepted.
    fn accepted(&mut self, peer: SocketAddr) {
        let _ = peer;
    }

    /// During a shutdown, every connection is answered and closed: the loop is done. By
    /// default it exits; a loop among several may rather tell its supervisor.
    fn drained(&mut self, dispatcher: &Dispatcher) {
        dispatcher.exit();
    }
}

/// The way back from the workers: the results queue (one entry per finished task) and the
/// loop's waker.
pub struct Results<D> {
    queue: TaskQueue<D>,
    waker: Waker,
}

impl<D> fmt::Debug for Results<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Results")
            .field("queued", &self.queue.len())
            .field("waker", &self.waker)
            .finish()
    }
}

impl<D> Results<D> {
    /// A results queue for `capacity` finished tasks (at least one), waking the loop through
    /// `waker`.
    pub fn new(capacity: usize, waker: Waker) -> Self {
        let queue =
            TaskQueue::new(capacity.max(1)).expect("a capacity of at least one is accepted");
        Results { queue, waker }
    }

    /// Moves every queued result into `into`, oldest first, without blocking.
    pub fn drain_into(&self, into: &mut Vec<D>) {
        self.queue.drain_into(into);
    }

    // starter: w05-l04 todo "Do 6: push the result; wake the waker only when push returned Ok(1)"
    /// Called on a worker: queues a finished task's result and wakes the loop if the queue was
    /// empty.
    pub fn deliver(&self, done: D) {
        // The queue holds everything the loop can have outstanding (each task holds at least
        // one request of the budget), so this never blocks; it fails only once the queue is
        // closed at shutdown, when nobody wants the result.
        if let Ok(1) = self.queue.push(done) {
            self.waker.wake();
        }
    }
}

/// How an [`IoLoop`] is set up.
#[derive(Debug, Clone, Copy)]
pub struct LoopConfig {
    /// The server's name, the prefix of the loop's error lines (`kv_server: accept failed: …`).
    pub name: &'static str,
    /// Per-connection limits.
    pub limits: Limits,
    /// How many finished tasks the results queue holds: at least as many as the loop can have
    /// in the pool at once.
    pub results_capacity: usize,
}

/// One client connection on the loop.
struct Connection<S: Service> {
    stream: TcpStream,
    fd_key: FdKey,
    session: SessionOf<S>,
    /// The interest registered with epoll now.
    interest: Interest,
    /// Whether the connection is in `IoLoop::touched` (so it is listed once).
    touched: bool,
    /// Whether the connection is in `IoLoop::waiting_for_pool`.
    waiting_for_pool: bool,
    /// Set while the connection lingers before its close (see [`IoLoop::linger`]): the timer
    /// that ends the wait.
    linger_timer: Option<Timer>,
    /// The service's own state for the connection.
    state: S::Connection,
}

/// One event loop's connections and its end of the handoff (see the module docs).
pub struct IoLoop<S: Service> {
    /// This loop, for the callbacks it registers (weak: the dispatcher owns the callbacks, and
    /// the callbacks must not keep the loop alive past the dispatcher).
    this: Weak<RefCell<IoLoop<S>>>,
    service: S,
    name: &'static str,
    limits: Limits,
    connections: Slab<Connection<S>>,
    results: Arc<Results<S::Done>>,
    /// The listener, until shutdown closes it.
    listener: Option<(TcpListener, FdKey)>,
    /// `rejected()` of the listener when it was closed.
    rejected_at_close: u64,
    /// Connections that need processing and a send before the loop sleeps again.
    touched: Vec<Key>,
    /// Connections holding a request the pool had no room for, oldest first.
    waiting_for_pool: VecDeque<Key>,
    /// The reused buffer finished tasks are drained into.
    drained: Vec<S::Done>,
    /// The reused receive buffer.
    read_buffer: Box<[u8]>,
    /// Re-enables accepting after an accept error.
    accept_pause: Option<Timer>,
    /// The shutdown signals seen so far: draining since the first.
    signals: ShutdownSignals,
    /// Set once the service was told the loop drained ([`Service::drained`]), which happens
    /// once: later closes and sends find nothing more to report.
    reported_drained: bool,
    /// Closes whatever is left when a shutdown takes too long.
    drain_deadline: Option<Timer>,
}

impl<S: Service> fmt::Debug for IoLoop<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoLoop")
            .field("name", &self.name)
            .field("connections", &self.connections.len())
            .field("listening", &self.listener.is_some())
            .field("waiting_for_pool", &self.waiting_for_pool.len())
            .field("draining", &self.signals.is_draining())
            .finish_non_exhaustive()
    }
}

impl<S: Service> IoLoop<S> {
    /// Builds a loop on `dispatcher` around `listener`: registers the listener and the results
    /// waker, and makes the service with `make_service`, which gets the [`Results`] its pool
    /// tasks deliver to. The caller runs the dispatcher.
    ///
    /// Signals are the caller's to register (one loop of several does not read them): their
    /// callback calls [`on_shutdown_signal`](Self::on_shutdown_signal).
    pub fn start(
        dispatcher: &Dispatcher,
        listener: TcpListener,
        config: LoopConfig,
        make_service: impl FnOnce(Arc<Results<S::Done>>) -> S,
    ) -> io::Result<Rc<RefCell<Self>>> {
        // The waker's callback needs the loop and the loop needs the waker, so the callback
        // finds the loop through a cell filled right after both exist.
        let cell: Rc<OnceCell<Weak<RefCell<Self>>>> = Rc::new(OnceCell::new());
        let waker = dispatcher.add_waker({
            let cell = Rc::clone(&cell);
            move |dispatcher| {
                if let Some(io) = cell.get().and_then(Weak::upgrade) {
                    io.borrow_mut().on_results(dispatcher);
                }
            }
        })?;
        let results = Arc::new(Results::new(config.results_capacity, waker));
        let service = make_service(Arc::clone(&results));

        let io = Rc::new_cyclic(|this| {
            RefCell::new(IoLoop {
                this: this.clone(),
                service,
                name: config.name,
                limits: config.limits,
                connections: Slab::new(),
                results,
                listener: None,
                rejected_at_close: 0,
                touched: Vec::new(),
                waiting_for_pool: VecDeque::new(),
                drained: Vec::new(),
                read_buffer: vec![0; READ_CHUNK].into_boxed_slice(),
                accept_pause: None,
                signals: ShutdownSignals::new(),
                reported_drained: false,
                drain_deadline: None,
            })
        });
        let _ = cell.set(Rc::downgrade(&io));

        let weak = Rc::downgrade(&io);
        let listener_key = dispatcher.add_fd(listener.as_fd(), Interest::READABLE, {
            let weak = weak.clone();
            move |dispatcher, _| {
                if let Some(io) = weak.upgrade() {
                    io.borrow_mut().on_listener_ready(dispatcher);
                }
            }
        })?;
        let accept_pause = dispatcher.create_timer(move |dispatcher| {
            if let Some(io) = weak.upgrade() {
                io.borrow_mut().resume_accepting(dispatcher);
            }
        });
        {
            let mut this = io.borrow_mut();
            this.listener = Some((listener, listener_key));
            this.accept_pause = Some(accept_pause);
        }
        Ok(io)
    }

    /// Registers SIGINT and SIGTERM on `dispatcher` (the caller blocked them before any thread
    /// started): the first starts the drain, a second closes everything
    /// ([`on_shutdown_signal`](Self::on_shutdown_signal)). For a loop that owns the process's
    /// signals; one loop among several leaves them to its supervisor. The key unregisters them.
    pub fn drain_on_shutdown_signals(
        this: &Rc<RefCell<Self>>,
        dispatcher: &Dispatcher,
    ) -> io::Result<FdKey> {
        let weak = Rc::downgrade(this);
        dispatcher.add_signals(
            &[libc::SIGINT, libc::SIGTERM],
            move |dispatcher, _signal| {
                if let Some(io) = weak.upgrade() {
                    io.borrow_mut().on_shutdown_signal(dispatcher);
                }
            },
        )
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The service, to change.
    pub fn service_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// What the loop knows for `stats`.
    pub fn facts(&self) -> Facts {
        let rejected = match &self.listener {
            Some((listener, _)) => listener.rejected(),
            None => self.rejected_at_close,
        };
        Facts {
            connections: self.connections.len() as u64,
            rejected,
        }
    }

    /// Whether a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.signals.is_draining()
    }

    /// Closes the results queue, after the pool has shut down: a task of a client that went
    /// away finds it closed and its result is dropped.
    pub fn close_results(&self) {
        self.results.queue.close();
    }

    /// Lets `answer` change connection `key`'s session (an answer that arrived from elsewhere:
    /// a timeout, the counters of every loop); if the connection is still there and `answer`
    /// returns `true`, the connection is served at the next [`send_answers`](Self::send_answers).
    /// Returns whether the connection was there.
    pub fn answer(
        &mut self,
        key: Key,
        answer: impl FnOnce(&mut S, Found<'_, S>, Facts) -> bool,
    ) -> bool {
        let facts = self.facts();
        let Some(connection) = self.connections.get_mut(key) else {
            return false;
        };
        let found = Found {
            key,
            session: &mut connection.session,
            state: &mut connection.state,
        };
        if answer(&mut self.service, found, facts) && !connection.touched {
            connection.touched = true;
            self.touched.push(key);
        }
        true
    }

    /// Serves every connection [`answer`](Self::answer) touched: sends, closes, re-registers,
    /// hands over their work; then offers freed budget to the waiting connections.
    pub fn send_answers(&mut self, dispatcher: &Dispatcher) {
        self.service_touched(dispatcher);
        self.offer_room_to_waiting(dispatcher);
        self.check_shutdown_done(dispatcher);
    }

    fn on_listener_ready(&mut self, dispatcher: &Dispatcher) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let Some((listener, _)) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok(Some((stream, peer))) => {
                    self.service.accepted(peer);
                    self.add_connection(dispatcher, stream);
                }
                Ok(None) => return,
                Err(error) => {
                    // The listener absorbs EMFILE itself; an error here is one it could not
                    // (no spare fd left, or something unexpected). Stop polling the listener
                    // for a moment rather than have level-triggered epoll report it again and
                    // again.
                    eprintln!("{}: accept failed: {error}", self.name);
                    self.pause_accepting(dispatcher);
                    return;
                }
            }
        }
    }

    fn pause_accepting(&mut self, dispatcher: &Dispatcher) {
        if let Some((_, key)) = &self.listener {
            let _ = dispatcher.modify_fd(*key, Interest::NONE);
            if let Some(timer) = &self.accept_pause {
                timer.enable(ACCEPT_PAUSE);
            }
        }
    }

    fn resume_accepting(&mut self, dispatcher: &Dispatcher) {
        if let Some((_, key)) = &self.listener {
            let _ = dispatcher.modify_fd(*key, Interest::READABLE);
        }
    }

    fn add_connection(&mut self, dispatcher: &Dispatcher, stream: TcpStream) {
        // Responses are small and already batched per turn; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let weak = self.this.clone();
        let added = self.connections.insert_with(|key| {
            let fd_key = dispatcher.add_fd(
                stream.as_fd(),
                Interest::READABLE,
                move |dispatcher, readiness| {
                    if let Some(io) = weak.upgrade() {
                        io.borrow_mut()
                            .on_connection_ready(dispatcher, key, readiness);
                    }
                },
            )?;
            Ok::<_, io::Error>(Connection {
                stream,
                fd_key,
                session: Session::new(),
                interest: Interest::READABLE,
                touched: false,
                waiting_for_pool: false,
                linger_timer: None,
                state: S::Connection::default(),
            })
        });
        if let Err(error) = added {
            // The stream was dropped (closed) with the failed closure.
            eprintln!("{}: cannot register a connection: {error}", self.name);
        }
    }

    fn on_connection_ready(&mut self, dispatcher: &Dispatcher, key: Key, readiness: Readiness) {
        let facts = self.facts();
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if readiness.is_error() || readiness.is_hang_up() {
            // A reset (or both directions shut): nobody can read an answer any more.
            self.close(dispatcher, key);
            return;
        }
        if connection.session.is_lingering() {
            self.discard_input(dispatcher, key);
            return;
        }
        if readiness.is_readable() || readiness.is_read_closed() {
            let mut host = self.service.host(key, &mut connection.state, facts);
            let stream = &connection.stream;
            let received = connection.session.receive(
                &self.limits,
                &mut host,
                &mut self.read_buffer,
                |buffer| stream.recv(buffer),
            );
            drop(host);
            if received.is_err() {
                // Lines read before the failing `recv` may have joined the service's batch for
                // this turn: the service still hands it over (without the connection), so the
                // batch does not keep a dead connection's requests and budget.
                self.close(dispatcher, key);
                self.service.hand_over(key, None);
                return;
            }
        }
        self.serve(dispatcher, key);
    }

    // starter: w05-l04 todo "Do 8: drain the whole queue into the reused buffer, hand_back each result, then offer room and send"
    /// Drains every finished task, gives each to the service to settle (its answers reach
    /// their connection, or are dropped if the key is stale), frees pool budget for held
    /// requests, then sends once per connection that got something.
    fn on_results(&mut self, dispatcher: &Dispatcher) {
        let mut drained = std::mem::take(&mut self.drained);
        self.results.drain_into(&mut drained);
        for done in drained.drain(..) {
            self.hand_back(done);
        }
        self.drained = drained;
        // The oldest waiting connections get the freed budget first. A connection whose own
        // state refused its held request (W09: its next batch is full while one runs) stays
        // first in line; serving the touched connections sends such a batch off, so room is
        // offered once more after them.
        self.offer_room_to_waiting(dispatcher);
        self.send_answers(dispatcher);
    }

    // starter: w05-l04 todo "Do 8: find the owner connection; with it, give the service Found and mark it touched once, else None"
    /// Gives one finished task to the service to settle: its answers go to the session of the
    /// connection it belongs to, which is then served once at the end of the wake-up; if the key
    /// is stale (the client went away, its slot maybe reused), the service gets no connection and
    /// drops the answers, so they never reach another client.
    fn hand_back(&mut self, done: S::Done) {
        let facts = self.facts();
        let owner = S::owner(&done).and_then(|key| Some((key, self.connections.get_mut(key)?)));
        match owner {
            Some((key, connection)) => {
                let found = Found {
                    key,
                    session: &mut connection.session,
                    state: &mut connection.state,
                };
                self.service.finished(done, Some(found), facts);
                if !connection.touched {
                    connection.touched = true;
                    self.touched.push(key);
                }
            }
            None => self.service.finished(done, None, facts),
        }
    }

    /// Services (sends, closes, re-registers) every connection in `touched`, once each.
    fn service_touched(&mut self, dispatcher: &Dispatcher) {
        let touched = std::mem::take(&mut self.touched);
        for &key in &touched {
            if let Some(connection) = self.connections.get_mut(key) {
                connection.touched = false;
                self.serve(dispatcher, key);
            }
        }
        self.touched = touched;
        self.touched.clear();
    }

    /// Gives freed pool budget to connections holding a request, oldest first.
    fn offer_room_to_waiting(&mut self, dispatcher: &Dispatcher) {
        let facts = self.facts();
        while self.service.has_room() {
            let Some(key) = self.waiting_for_pool.pop_front() else {
                return;
            };
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let mut host = self.service.host(key, &mut connection.state, facts);
            let retried = connection.session.retry_held(&mut host);
            drop(host);
            if retried {
                connection.waiting_for_pool = false;
                self.serve(dispatcher, key);
            } else {
                // Refused although the budget has room (the connection's own batch is full):
                // keep the connection first in line for the next offer.
                self.waiting_for_pool.push_front(key);
                return;
            }
        }
    }

    // starter: w05-l04 todo "Do 7: advance the connection, then hand_over its work with its state if it is still open"
    /// The one place a connection moves forward: handle buffered lines, send once, close it if
    /// it is done, register the interest its state calls for; then the service hands the work
    /// its lines produced to the pool.
    fn serve(&mut self, dispatcher: &Dispatcher, key: Key) {
        self.advance(dispatcher, key);
        let state = self
            .connections
            .get_mut(key)
            .map(|connection| &mut connection.state);
        self.service.hand_over(key, state);
    }

    /// [`serve`](Self::serve) before the work is handed over.
    fn advance(&mut self, dispatcher: &Dispatcher, key: Key) {
        let facts = self.facts();
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.session.is_lingering() {
            return;
        }
        let mut host = self.service.host(key, &mut connection.state, facts);
        let stream = &connection.stream;
        let advanced = connection
            .session
            .advance(&self.limits, &mut host, |unsent| stream.send(unsent));
        drop(host);
        let Ok(progress) = advanced else {
            // EPIPE or a reset: the client is gone.
            self.close(dispatcher, key);
            return;
        };
        if progress == Progress::WaitingForPool && !connection.waiting_for_pool {
            connection.waiting_for_pool = true;
            self.waiting_for_pool.push_back(key);
        }
        let wanted = match connection.session.next_step(&self.limits) {
            Step::Close => return self.close(dispatcher, key),
            Step::Linger => return self.linger(dispatcher, key),
            Step::Poll { readable, writable } => Interest::NONE
                .with_readable(readable)
                .with_writable(writable),
        };
        if wanted != connection.interest {
            match dispatcher.modify_fd(connection.fd_key, wanted) {
                Ok(()) => connection.interest = wanted,
                Err(_) => self.close(dispatcher, key),
            }
        }
    }

    /// Closes a connection whose client may still be sending (after `line too long`) gently:
    /// shuts the write side down, then discards what the client still sends until it closes
    /// too, for at most [`LINGER_TIMEOUT`] (the rule and its reason are the shared session's,
    /// [`Step::Linger`]).
    fn linger(&mut self, dispatcher: &Dispatcher, key: Key) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.stream.shutdown_write().is_err()
            || dispatcher
                .modify_fd(connection.fd_key, Interest::READABLE)
                .is_err()
        {
            self.close(dispatcher, key);
            return;
        }
        connection.interest = Interest::READABLE;
        let weak = self.this.clone();
        let timer = dispatcher.create_timer(move |dispatcher| {
            if let Some(io) = weak.upgrade() {
                io.borrow_mut().close(dispatcher, key);
            }
        });
        timer.enable(LINGER_TIMEOUT);
        connection.linger_timer = Some(timer);
        connection.session.start_linger();
        self.discard_input(dispatcher, key);
    }

    /// Reads and drops what a lingering connection sends; closes it at EOF, on an error, or once
    /// it has sent too much.
    fn discard_input(&mut self, dispatcher: &Dispatcher, key: Key) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        let stream = &connection.stream;
        if !connection
            .session
            .discard_input(&mut self.read_buffer, |buffer| stream.recv(buffer))
        {
            self.close(dispatcher, key);
        }
    }

    /// Unregisters and closes a connection. Its tasks still in the pool finish, and their
    /// results are dropped when they arrive.
    fn close(&mut self, dispatcher: &Dispatcher, key: Key) {
        if let Some(connection) = self.connections.remove(key) {
            // Unregister before the fd is closed (when `connection` drops), so epoll never
            // holds a closed fd.
            let _ = dispatcher.remove_fd(connection.fd_key);
            let Connection { session, state, .. } = connection;
            self.service.closed(&session, state);
        }
        self.check_shutdown_done(dispatcher);
    }

    /// SIGINT or SIGTERM: stop accepting, stop reading, answer what was read, then end the
    /// loop. A second signal closes everything at once (the rule of `eventloop::shutdown`).
    pub fn on_shutdown_signal(&mut self, dispatcher: &Dispatcher) {
        if self.signals.on_signal() == SignalStep::CloseAll {
            self.close_all(dispatcher);
            return;
        }
        if let Some((listener, key)) = self.listener.take() {
            let _ = dispatcher.remove_fd(key);
            self.rejected_at_close = listener.rejected();
            // Closing the listener: new connections are refused by the kernel from now on.
            drop(listener);
        }
        self.accept_pause = None;
        for key in self.connections.keys() {
            if let Some(connection) = self.connections.get_mut(key) {
                connection.session.stop_input();
            }
            self.serve(dispatcher, key);
        }
        let weak = self.this.clone();
        let deadline = dispatcher.create_timer(move |dispatcher| {
            if let Some(io) = weak.upgrade() {
                io.borrow_mut().close_all(dispatcher);
            }
        });
        deadline.enable(DRAIN_TIMEOUT);
        self.drain_deadline = Some(deadline);
        self.check_shutdown_done(dispatcher);
    }

    /// Closes every connection at once (a second signal, or the drain took too long), then
    /// ends the loop.
    pub fn close_all(&mut self, dispatcher: &Dispatcher) {
        for key in self.connections.keys() {
            self.close(dispatcher, key);
        }
        // The last close has reported the drain if a shutdown is under way; this reports it
        // otherwise, and never a second time.
        self.report_drained(dispatcher);
    }

    /// During a shutdown, ends the loop once every connection has been answered and closed.
    fn check_shutdown_done(&mut self, dispatcher: &Dispatcher) {
        if self.signals.is_draining() && self.connections.is_empty() {
            self.report_drained(dispatcher);
        }
    }

    /// Tells the service the loop has drained, the first time only: a close or a send after the
    /// drain (a late result, the drain deadline) must not end the loop, or tell a supervisor,
    /// again.
    fn report_drained(&mut self, dispatcher: &Dispatcher) {
        if !std::mem::replace(&mut self.reported_drained, true) {
            self.service.drained(dispatcher);
        }
    }
}
