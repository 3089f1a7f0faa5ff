//! The [`Dispatcher`]: an Envoy-style event loop that owns one thread's I/O, timers and posted
//! work.
//!
//! A dispatcher is a [`Poller`] plus three kinds of event source, all of them fds in one epoll
//! set, so one `epoll_wait` sleeps on everything at once:
//!
//! - **fds** registered with [`Dispatcher::add_fd`] and a callback that receives the
//!   [`Readiness`];
//! - **timers** ([`Dispatcher::create_timer`]), all multiplexed on one timerfd (see
//!   [`Timer`]);
//! - **posted callbacks** ([`Dispatcher::post`], or [`DispatcherHandle::post`] from any
//!   thread), which are how other threads hand work to this one. The queue is a mutex-guarded
//!   `VecDeque`; a post wakes the loop (through an eventfd, see [`Waker`]) only when it makes the
//!   queue go from empty to non-empty, because a non-empty queue is already due to be drained.
//!   The loop drains the eventfd first, then swaps the whole queue out under the lock, and runs
//!   the callbacks *unlocked*, in FIFO order, so a callback may post again without deadlock.
//!
//! # The fd-reuse bug, and generation-checked keys
//!
//! One `epoll_wait` returns a *batch* of events, and the loop runs their callbacks one after the
//! other. Suppose the callback of event 1 closes connection B (whose event 2 is in the same batch)
//! and accepts a new connection C, which the kernel gives B's old fd number. A loop that finds
//! callbacks by fd number would now run C's callback for B's stale event — reading from the wrong
//! client, or acting on a hang-up C never had. Here every registration gets an [`FdKey`]: a slot
//! index plus a *generation* that is incremented whenever the slot is freed. The epoll token
//! carries both; an event whose generation no longer matches its slot is dropped. So a callback
//! never fires for an fd removed earlier in the same batch, and a stale key can never modify or
//! remove a newer registration.
//!
//! # Re-entrancy
//!
//! Every loop-side callback receives `&Dispatcher`, and while it runs it is taken out of its
//! table, so it may add or remove fds and timers — its own included — without any `RefCell`
//! borrow being held. A callback that removes its own registration is dropped when it returns.
//!
//! # Exit, and posts pending at exit
//!
//! [`exit`](Dispatcher::exit) (or [`DispatcherHandle::exit`]) asks `run` to return; the loop
//! finishes the current batch of events first. An exit requested before `run` is called makes
//! the next `run` return at once. **Rule for pending posts:** before `run` returns, it runs the
//! callbacks still in the post queue, and the ones those post in turn, for at most
//! [`EXIT_DRAIN_ROUNDS`] rounds (a round is what the queue holds when the round starts). So
//! nothing posted before `exit` is lost, and a reply posted by a pending callback still runs —
//! but a callback that re-posts itself forever cannot keep `run` (and with it a worker's `stop`)
//! from returning: what is still queued after the last round is dropped unrun, and counted in
//! [`posts_dropped_at_exit`](Dispatcher::posts_dropped_at_exit). Envoy bounds its exit the same
//! way. A callback posted after `run` has returned waits for the next `run`; when the
//! `Dispatcher` is dropped, callbacks still queued are dropped without running, and later posts
//! through a handle are dropped at once.
//!
//! # Signals
//!
//! [`add_signals`](Dispatcher::add_signals) delivers signals as ordinary events through a
//! signalfd, so a server can shut down from its own loop with no signal handler. The signals
//! must be blocked first ([`sys::block_signals`]) in *every* thread —
//! block them on the main thread before spawning any — or the kernel delivers them to a thread
//! that does not block them, the old way, and the signalfd never sees them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};

use crate::poller::{Events, Interest, Poller, Readiness};
use crate::slab::{self, Slab};
use crate::sys;
use crate::timer::{self, Timer, TimerQueue};
use crate::waker::Waker;

/// An fd callback, run on the loop thread with the readiness epoll reported.
type FdCallback = Box<dyn FnMut(&Dispatcher, Readiness)>;
/// A posted callback; it gets the dispatcher it runs on.
type Post = Box<dyn FnOnce(&Dispatcher) + Send>;

/// How many events one `epoll_wait` may return.
const EVENT_CAPACITY: usize = 256;
/// The epoll token of the post queue's eventfd.
const POST_TOKEN: u64 = u64::MAX;
/// The epoll token of the timerfd.
const TIMER_TOKEN: u64 = u64::MAX - 1;

/// How many rounds of posts [`Dispatcher::run`] runs after its loop has stopped: the posts queued
/// when it stopped are the first round, the posts those make are the second, and so on. What is
/// still queued after the last round is dropped unrun and counted
/// ([`Dispatcher::posts_dropped_at_exit`]), so a callback that keeps posting itself cannot keep
/// `run` from returning.
pub const EXIT_DRAIN_ROUNDS: usize = 8;

/// Identifies an fd registration of a [`Dispatcher`]: a [`slab::Key`] into its fd table (a
/// place and its generation).
///
/// A key outlives its registration harmlessly: once the fd is removed, the key matches nothing,
/// even after the place is reused for another fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FdKey(slab::Key);

impl FdKey {
    fn token(self) -> u64 {
        self.0.to_u64()
    }

    fn from_token(token: u64) -> FdKey {
        FdKey(slab::Key::from_u64(token))
    }
}

/// A registered fd.
struct FdEntry {
    /// The fd number, for `epoll_ctl`. The registration does not own the fd; see `remove_fd`.
    fd: RawFd,
    /// The callback; `None` while it runs.
    callback: Option<FdCallback>,
}

/// The part of a dispatcher that other threads reach through a [`DispatcherHandle`].
struct Shared {
    name: String,
    /// The thread that created the dispatcher, the only one that can run it.
    thread: ThreadId,
    /// Invariant: when non-empty, a wake is pending on `post_waker` or the loop is about to
    /// drain the queue (it drains the eventfd before taking the queue).
    posts: Mutex<PostQueue>,
    post_waker: Waker,
    /// Set by `exit`, consumed by `run`.
    exit_requested: AtomicBool,
}

#[derive(Default)]
struct PostQueue {
    callbacks: VecDeque<Post>,
    /// Set when the dispatcher is dropped: later posts are dropped at once.
    closed: bool,
}

impl Shared {
    /// The post queue; a callback that panicked elsewhere does not poison the queue itself (the
    /// lock guards only the push and the swap, which cannot leave it half-updated).
    fn posts(&self) -> MutexGuard<'_, PostQueue> {
        self.posts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn post(&self, callback: Post) {
        let mut queue = self.posts();
        if queue.closed {
            drop(queue);
            drop(callback);
            return;
        }
        let was_empty = queue.callbacks.is_empty();
        queue.callbacks.push_back(callback);
        drop(queue);
        // Only the empty -> non-empty transition needs a wake: a non-empty queue already has
        // one pending (see the invariant on `posts`).
        if was_empty {
            self.post_waker.wake();
        }
    }

    fn exit(&self) {
        // Release pairs with the loop's Acquire swap, so whatever the caller did before exit()
        // is visible to the loop when it sees the request.
        self.exit_requested.store(true, Ordering::Release);
        self.post_waker.wake();
    }

    fn take_posts(&self) -> VecDeque<Post> {
        std::mem::take(&mut self.posts().callbacks)
    }
}

/// An event loop for one thread: fds, timers, signals and posted callbacks.
///
/// It lives on the thread that created it (it is neither `Send` nor `Sync`); other threads talk
/// to it through a [`DispatcherHandle`].
///
/// The compiler enforces that: a dispatcher cannot be sent to another thread,
///
/// ```compile_fail
/// let dispatcher = eventloop::Dispatcher::new("pinned").unwrap();
/// std::thread::spawn(move || dispatcher.run());
/// ```
///
/// and a callback posted from another thread must itself be `Send` (an `Rc` is not):
///
/// ```compile_fail
/// let dispatcher = eventloop::Dispatcher::new("posts").unwrap();
/// let shared = std::rc::Rc::new(1);
/// dispatcher.handle().post(move || drop(shared));
/// ```
///
/// ```
/// use eventloop::Dispatcher;
/// use std::sync::mpsc;
///
/// let dispatcher = Dispatcher::new("main").unwrap();
/// let handle = dispatcher.handle();
/// let (sender, receiver) = mpsc::channel();
/// let helper = std::thread::spawn(move || {
///     handle.post(move || sender.send("ran on the loop").unwrap());
///     handle.exit();
/// });
/// dispatcher.run().unwrap();
/// helper.join().unwrap();
/// assert_eq!(receiver.recv().unwrap(), "ran on the loop");
/// ```
pub struct Dispatcher {
    shared: Arc<Shared>,
    poller: Poller,
    /// The event buffer; `None` while `run` is dispatching from it.
    events: RefCell<Option<Events>>,
    fds: RefCell<Slab<FdEntry>>,
    pub(crate) timers: Rc<RefCell<TimerQueue>>,
    running: Cell<bool>,
    /// Posts dropped unrun by the bounded drain at the end of `run`, over every `run`.
    dropped_at_exit: Cell<u64>,
    /// Keeps the dispatcher on its thread even if every other field were `Send`.
    _not_send: PhantomData<*const ()>,
}

impl Dispatcher {
    /// Creates a dispatcher named `name` (the name is for logs and thread names).
    pub fn new(name: impl Into<String>) -> io::Result<Dispatcher> {
        let poller = Poller::new()?;
        let post_waker = Waker::new()?;
        let timers = TimerQueue::new()?;
        poller.add(post_waker.as_fd(), POST_TOKEN, Interest::READABLE)?;
        poller.add(timers.fd(), TIMER_TOKEN, Interest::READABLE)?;
        Ok(Dispatcher {
            shared: Arc::new(Shared {
                name: name.into(),
                thread: thread::current().id(),
                posts: Mutex::new(PostQueue::default()),
                post_waker,
                exit_requested: AtomicBool::new(false),
            }),
            poller,
            events: RefCell::new(Some(Events::with_capacity(EVENT_CAPACITY))),
            fds: RefCell::new(Slab::new()),
            timers: Rc::new(RefCell::new(timers)),
            running: Cell::new(false),
            dropped_at_exit: Cell::new(0),
            _not_send: PhantomData,
        })
    }

    /// The dispatcher's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A handle for other threads: [`post`](DispatcherHandle::post) and
    /// [`exit`](DispatcherHandle::exit).
    pub fn handle(&self) -> DispatcherHandle {
        DispatcherHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whether the calling thread is this dispatcher's thread (the one that created it).
    pub fn is_dispatcher_thread(&self) -> bool {
        thread::current().id() == self.shared.thread
    }

    /// Runs the loop until [`exit`](Self::exit) is called, then runs the posts still queued for
    /// at most [`EXIT_DRAIN_ROUNDS`] rounds (see the module docs) and returns.
    ///
    /// A callback that panics unwinds out of `run` (the dispatcher stays usable; a panicking fd
    /// callback is lost, so its registration never fires again, and posts taken in the same batch
    /// after a panicking one are dropped). Catch panics inside callbacks
    /// that must survive them, as [`Worker`](crate::Worker) does for posted work.
    ///
    /// Returns an error if `epoll_wait` or the timerfd fails, or if called from inside one of
    /// its own callbacks (the loop is already running).
    pub fn run(&self) -> io::Result<()> {
        if self.running.replace(true) {
            return Err(io::Error::other(
                "Dispatcher::run called while it is already running",
            ));
        }
        // A callback that panics unwinds out of `run`; the guard still marks the loop as
        // stopped, so `run` can be called again after the panic is caught.
        let _running = RunningGuard(&self.running);
        let result = self.run_until_exit();
        // Pending posts run even if the loop failed: their senders may be waiting on them.
        self.drain_posts_at_exit();
        result
    }

    // starter: w04-l05 todo "Do 7: until exit is requested: sync the timerfd, wait on the poller, dispatch every event"
    fn run_until_exit(&self) -> io::Result<()> {
        loop {
            // Acquire pairs with the Release in `Shared::exit`.
            if self.shared.exit_requested.swap(false, Ordering::Acquire) {
                return Ok(());
            }
            self.timers.borrow_mut().sync_timerfd()?;
            let mut events = self
                .events
                .borrow_mut()
                .take()
                // Missing only if a callback panicked out of the previous batch.
                .unwrap_or_else(|| Events::with_capacity(EVENT_CAPACITY));
            let waited = self.poller.wait(&mut events, None);
            if let Ok(count) = waited {
                for index in 0..count {
                    if let Some(event) = events.get(index) {
                        self.dispatch(event.token, event.readiness);
                    }
                }
            }
            *self.events.borrow_mut() = Some(events);
            waited?;
        }
    }

    fn dispatch(&self, token: u64, readiness: Readiness) {
        match token {
            POST_TOKEN => {
                // Drain before taking the queue, so a post that races with us either lands in
                // this batch or leaves the eventfd readable for the next turn.
                self.shared.post_waker.drain();
                self.run_posts();
            }
            TIMER_TOKEN => timer::fire_due(self, &self.timers),
            token => self.dispatch_fd(FdKey::from_token(token), readiness),
        }
    }

    // starter: w04-l05 todo "Do 7: take the callback out of the live entry, run it, put it back unless the entry is gone"
    fn dispatch_fd(&self, key: FdKey, readiness: Readiness) {
        // A stale key (the fd was removed earlier in this batch, or its slot reused) finds
        // nothing, so its event is dropped.
        let Some(mut callback) = self
            .fds
            .borrow_mut()
            .get_mut(key.0)
            .and_then(|entry| entry.callback.take())
        else {
            return;
        };
        callback(self, readiness);
        let mut fds = self.fds.borrow_mut();
        match fds.get_mut(key.0) {
            Some(entry) if entry.callback.is_none() => entry.callback = Some(callback),
            _ => {
                // The callback removed its own registration: drop it outside the borrow.
                drop(fds);
                drop(callback);
            }
        }
    }

    /// Runs the posts queued now, in FIFO order; posts they make wait for the next turn.
    fn run_posts(&self) {
        for post in self.shared.take_posts() {
            post(self);
        }
    }

    /// Runs the posts queued at exit, and those they post, for at most `EXIT_DRAIN_ROUNDS`
    /// rounds; drops (and counts) what is left.
    fn drain_posts_at_exit(&self) {
        for _ in 0..EXIT_DRAIN_ROUNDS {
            let posts = self.shared.take_posts();
            if posts.is_empty() {
                return;
            }
            for post in posts {
                post(self);
            }
        }
        let left = self.shared.take_posts();
        self.dropped_at_exit
            .set(self.dropped_at_exit.get() + left.len() as u64);
        // Dropped here, outside the queue's lock: a callback's captures may post in their drop.
        drop(left);
    }

    /// How many posted callbacks the bounded drain at the end of [`run`](Self::run) has dropped
    /// unrun, over every `run` so far (see [`EXIT_DRAIN_ROUNDS`]).
    pub fn posts_dropped_at_exit(&self) -> u64 {
        self.dropped_at_exit.get()
    }

    /// Asks [`run`](Self::run) to return after the current batch of events.
    pub fn exit(&self) {
        self.shared.exit();
    }

    /// Queues `callback` to run on the loop thread, after the events being handled now.
    pub fn post(&self, callback: impl FnOnce() + Send + 'static) {
        self.shared.post(Box::new(move |_: &Dispatcher| callback()));
    }

    /// Like [`post`](Self::post), but `callback` gets the dispatcher it runs on, so it can add
    /// fds and timers there.
    pub fn post_with(&self, callback: impl FnOnce(&Dispatcher) + Send + 'static) {
        self.shared.post(Box::new(callback));
    }

    /// Registers `fd` with `interest`; `callback` runs on the loop whenever it is ready.
    ///
    /// The dispatcher does not own `fd`: call [`remove_fd`](Self::remove_fd) before closing it.
    pub fn add_fd(
        &self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        callback: impl FnMut(&Dispatcher, Readiness) + 'static,
    ) -> io::Result<FdKey> {
        self.add_fd_boxed(fd, interest, Box::new(callback))
    }

    // starter: w04-l05 todo "Do 6: insert an FdEntry into the fd table, then poller.add with the key as token; undo the insert on error"
    fn add_fd_boxed(
        &self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        callback: FdCallback,
    ) -> io::Result<FdKey> {
        let key = FdKey(self.fds.borrow_mut().insert(FdEntry {
            fd: fd.as_raw_fd(),
            callback: Some(callback),
        }));
        if let Err(error) = self.poller.add(fd, key.token(), interest) {
            let entry = self.fds.borrow_mut().remove(key.0);
            drop(entry);
            return Err(error);
        }
        Ok(key)
    }

    // starter: w04-l05 todo "Do 6: look up the key in the fd table, NotFound if stale, then EPOLL_CTL_MOD on its fd"
    /// Changes the interest of a registered fd (also re-arms a one-shot registration).
    ///
    /// A stale key gives a `NotFound` error.
    pub fn modify_fd(&self, key: FdKey, interest: Interest) -> io::Result<()> {
        let fd = self
            .fds
            .borrow_mut()
            .get(key.0)
            .map(|entry| entry.fd)
            .ok_or_else(stale_key)?;
        sys::epoll_ctl_raw(
            self.poller.as_fd(),
            libc::EPOLL_CTL_MOD,
            fd,
            interest.to_epoll(),
            key.token(),
        )
    }

    // starter: w04-l05 todo "Do 6: remove the entry from the fd table first, NotFound if stale, then EPOLL_CTL_DEL on its fd"
    /// Unregisters an fd; its callback will not run again, not even for an event already in the
    /// current batch. Call it before closing the fd.
    ///
    /// A stale key gives a `NotFound` error. The registration is removed from the table even if
    /// the fd was already closed (the error from epoll is returned then).
    pub fn remove_fd(&self, key: FdKey) -> io::Result<()> {
        let entry = self.fds.borrow_mut().remove(key.0).ok_or_else(stale_key)?;
        let result = sys::epoll_ctl_raw(self.poller.as_fd(), libc::EPOLL_CTL_DEL, entry.fd, 0, 0);
        // Dropped outside any borrow: the callback may own fds, timers or other keys.
        drop(entry);
        result
    }

    /// How many fds are registered (internal ones not counted).
    pub fn fd_count(&self) -> usize {
        self.fds.borrow().len()
    }

    /// Creates a disabled timer whose `callback` runs on the loop when it fires.
    pub fn create_timer(&self, callback: impl FnMut(&Dispatcher) + 'static) -> Timer {
        Timer::new(&self.timers, Box::new(callback))
    }

    /// Creates a [`Waker`] for this loop: any thread may call [`Waker::wake`], and `callback`
    /// then runs on the loop — once for any number of wakes that arrive before it runs.
    ///
    /// The eventfd is drained *before* `callback` runs, so a wake that races with the callback is
    /// never lost: it makes the callback run again. The registration lasts as long as the
    /// dispatcher.
    pub fn add_waker(&self, mut callback: impl FnMut(&Dispatcher) + 'static) -> io::Result<Waker> {
        let waker = Waker::new()?;
        let drained = waker.clone();
        self.add_fd(waker.as_fd(), Interest::READABLE, move |dispatcher, _| {
            if drained.drain() > 0 {
                callback(dispatcher);
            }
        })?;
        Ok(waker)
    }

    /// Delivers `signals` through a signalfd: `callback` runs on the loop with each signal
    /// number. The caller must have blocked the signals in every thread first (see
    /// [`sys::block_signals`]).
    ///
    /// The returned key removes the registration (and closes the signalfd) with
    /// [`remove_fd`](Self::remove_fd).
    pub fn add_signals(
        &self,
        signals: &[libc::c_int],
        mut callback: impl FnMut(&Dispatcher, libc::c_int) + 'static,
    ) -> io::Result<FdKey> {
        // The callback shares the signalfd, so removing the registration closes it.
        let fd = Rc::new(sys::signalfd(signals)?);
        let reader = Rc::clone(&fd);
        let on_ready = move |dispatcher: &Dispatcher, _: Readiness| {
            while let Ok(Some(signal)) = sys::read_signal(reader.as_fd()) {
                callback(dispatcher, signal);
            }
        };
        self.add_fd_boxed(fd.as_fd(), Interest::READABLE, Box::new(on_ready))
    }
}

/// Clears the dispatcher's `running` flag when `run` returns or unwinds.
struct RunningGuard<'a>(&'a Cell<bool>);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

fn stale_key() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "stale FdKey: the fd is not registered",
    )
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Close the queue first, so posts racing with the drop are dropped by their senders.
        let posts = {
            let mut queue = self.shared.posts();
            queue.closed = true;
            std::mem::take(&mut queue.callbacks)
        };
        drop(posts);
        // Callbacks are dropped with no borrow held: they may own timers, whose drop reaches
        // back into the timer table.
        let fd_callbacks: Vec<FdEntry> = self.fds.borrow_mut().take_all();
        drop(fd_callbacks);
        let timer_callbacks = self.timers.borrow_mut().take_all();
        drop(timer_callbacks);
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("name", &self.shared.name)
            .field("fds", &self.fds.borrow().len())
            .field("running", &self.running.get())
            .finish_non_exhaustive()
    }
}

/// A handle to a [`Dispatcher`] for other threads: post work to it, or make it exit.
///
/// Cloneable, `Send` and `Sync`. Posting through a handle whose dispatcher has been dropped
/// drops the callback without running it. Handles share the post queue's eventfd, so it stays
/// open until the dispatcher and its last handle are gone.
#[derive(Clone)]
pub struct DispatcherHandle {
    shared: Arc<Shared>,
}

impl DispatcherHandle {
    /// Queues `callback` to run on the dispatcher's thread; wakes the loop if the queue was
    /// empty.
    pub fn post(&self, callback: impl FnOnce() + Send + 'static) {
        self.shared.post(Box::new(move |_: &Dispatcher| callback()));
    }

    /// Like [`post`](Self::post), but `callback` gets the dispatcher it runs on — the way for
    /// another thread to make a loop own an fd, a timer or a listener.
    ///
    /// ```
    /// use eventloop::Dispatcher;
    ///
    /// let dispatcher = Dispatcher::new("target").unwrap();
    /// let handle = dispatcher.handle();
    /// std::thread::spawn(move || {
    ///     handle.post_with(|dispatcher| {
    ///         // On the loop, with the loop's own dispatcher: it could add an fd or a timer here.
    ///         assert!(dispatcher.is_dispatcher_thread());
    ///         dispatcher.exit();
    ///     })
    /// })
    /// .join()
    /// .unwrap();
    /// dispatcher.run().unwrap(); // returns once the callback posted from the other thread ran
    /// ```
    pub fn post_with(&self, callback: impl FnOnce(&Dispatcher) + Send + 'static) {
        self.shared.post(Box::new(callback));
    }

    /// Asks the dispatcher's `run` to return (after the posts queued before it have run, within
    /// the bound of [`EXIT_DRAIN_ROUNDS`]).
    pub fn exit(&self) {
        self.shared.exit();
    }

    /// The dispatcher's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the calling thread is the dispatcher's thread.
    pub fn is_dispatcher_thread(&self) -> bool {
        thread::current().id() == self.shared.thread
    }
}

impl std::fmt::Debug for DispatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherHandle")
            .field("name", &self.shared.name)
            .finish()
    }
}

#[cfg(test)]
mod tests;
