//! One load thread: an epoll loop over its share of the connections.
//!
//! The thread is built like a small event-loop server, on the course's own `eventloop` crate: a
//! [`Poller`] with one token per connection (the index into a `Vec`), nonblocking
//! [`TcpStream`]s, one 64 KiB receive buffer shared by every connection of the thread, and no
//! allocation per request. A turn of the loop, for each connection that is readable:
//!
//! 1. one `recv` of whatever has arrived, checked byte for byte by the connection's
//!    [`Pipeline`] (which records each completed response's latency);
//! 2. as many new requests as were answered, so the pipeline is full again;
//! 3. one `send` of all of them.
//!
//! Writable interest is switched on only while a send is incomplete, so an idle connection costs
//! nothing. The loop has no timer: `Poller::wait` gets the time left until the end of the run (or
//! until the hang guard fires) as its timeout.
//!
//! Run phases: connect every connection and wait until each is writable (connected), meet the
//! other threads at a barrier, then start the clock and send the first requests. A timed run
//! stops starting requests at its deadline and waits for the ones in flight; a counted run ends
//! when every connection has its quota answered.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::mix::Mix;
use crate::pipeline::Pipeline;
use crate::report::Histograms;
use anyhow::Context as _;
use eventloop::net::TcpStream;
use eventloop::{Events, Interest, Poller};

/// How many bytes one `recv` asks for.
const RECV_BUFFER: usize = 64 * 1024;
/// How many events one `Poller::wait` can return.
const EVENTS_PER_WAIT: usize = 1024;
/// How long connecting may take before the run gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters every thread adds to as it goes, read by the progress line.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Correct responses so far.
    pub(crate) completed: AtomicU64,
    /// Wrong responses so far.
    pub(crate) mismatches: AtomicU64,
    /// Failed connections so far.
    pub(crate) connection_errors: AtomicU64,
}

/// What one thread is to do.
#[derive(Debug)]
pub(crate) struct RunPlan {
    /// The server.
    pub(crate) addr: SocketAddr,
    /// Requests in flight per connection.
    pub(crate) depth: usize,
    /// The global indices of this thread's connections (they seed the request sequences).
    pub(crate) connections: Vec<usize>,
    /// Per connection, how many requests it sends (`None`: until the deadline).
    pub(crate) quotas: Vec<Option<u64>>,
    /// How long a timed run lasts (`None`: a counted run).
    pub(crate) duration: Option<Duration>,
    /// The hang guard: a connection that owes responses and hears nothing this long has failed.
    pub(crate) timeout: Duration,
    /// The requests and their expected responses.
    pub(crate) mix: Arc<Mix>,
    /// Shared counters for the progress line.
    pub(crate) progress: Arc<Progress>,
    /// Where the threads meet once connected, so the clock starts for all at once.
    pub(crate) barrier: Arc<Barrier>,
}

/// What one thread measured.
#[derive(Debug)]
pub(crate) struct ThreadResult {
    /// Latencies of correct responses, in nanoseconds, overall and by verb.
    pub(crate) latencies: Histograms,
    /// Correct responses.
    pub(crate) completed: u64,
    /// Wrong responses (each ends its connection).
    pub(crate) mismatches: u64,
    /// Failed connections.
    pub(crate) connection_errors: u64,
    /// From the start of the clock to the last response.
    pub(crate) elapsed: Duration,
    /// The first mismatch or connection failure, described.
    pub(crate) first_error: Option<String>,
}

/// One connection of the thread.
#[derive(Debug)]
struct Connection {
    /// `None` once closed.
    stream: Option<TcpStream>,
    pipeline: Pipeline,
    /// Whether writable interest is on (a send was incomplete).
    wants_write: bool,
    /// When bytes last arrived (or the run started), for the hang guard.
    last_heard: Instant,
}

/// The thread's state besides its connections.
#[derive(Debug)]
struct Tally {
    result: ThreadResult,
    open: usize,
    last_response: Option<Instant>,
}

impl Tally {
    fn fail(&mut self, progress: &Progress, mismatch: bool, message: impl FnOnce() -> String) {
        if mismatch {
            self.result.mismatches += 1;
            progress.mismatches.fetch_add(1, Ordering::Relaxed);
        } else {
            self.result.connection_errors += 1;
            progress.connection_errors.fetch_add(1, Ordering::Relaxed);
        }
        if self.result.first_error.is_none() {
            self.result.first_error = Some(message());
        }
    }
}

/// Raises the soft open-file limit to at least `needed` (up to the hard limit), so a thousand
/// connections do not run into the common default of 1024.
pub(crate) fn raise_fd_limit(needed: usize) -> io::Result<()> {
    let (soft, hard) = eventloop::sys::fd_limit()?;
    let needed = needed as u64;
    if soft < needed {
        eventloop::sys::set_fd_limit(needed.min(hard), hard)?;
    }
    Ok(())
}

/// Runs one thread's share of the load.
pub(crate) fn run_thread(plan: RunPlan) -> anyhow::Result<ThreadResult> {
    let connected = connect_all(&plan);
    // Meet the other threads even when connecting failed, so none of them waits forever.
    plan.barrier.wait();
    let (poller, mut connections) = connected?;
    drive(&plan, &poller, &mut connections)
}

/// Opens every connection of the thread and waits until all are connected.
fn connect_all(plan: &RunPlan) -> anyhow::Result<(Poller, Vec<Connection>)> {
    let poller = Poller::new().context("creating an epoll instance")?;
    let mut connections = Vec::with_capacity(plan.connections.len());
    let now = Instant::now();
    for (token, (&global, &quota)) in plan.connections.iter().zip(&plan.quotas).enumerate() {
        let stream = TcpStream::connect(plan.addr)
            .with_context(|| format!("connecting to {}", plan.addr))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        poller
            .add(stream.as_fd(), token as u64, Interest::WRITABLE)
            .context("registering a connection")?;
        connections.push(Connection {
            stream: Some(stream),
            pipeline: Pipeline::new(plan.depth, plan.mix.picker(global), quota),
            wants_write: true,
            last_heard: now,
        });
    }
    // A nonblocking connect is done when the socket turns writable; an error or hang-up instead
    // means it was refused.
    let mut pending = connections.len();
    let mut events = Events::with_capacity(EVENTS_PER_WAIT);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(
            !left.is_zero(),
            "{pending} connections to {} not established within {CONNECT_TIMEOUT:?}",
            plan.addr
        );
        poller
            .wait(&mut events, Some(left))
            .context("waiting for connections")?;
        for event in events.iter() {
            let connection = &mut connections[event.token as usize];
            if !connection.wants_write {
                continue;
            }
            let readiness = event.readiness;
            anyhow::ensure!(
                !(readiness.is_error() || readiness.is_hang_up()),
                "connecting to {} failed (is the server running?)",
                plan.addr
            );
            if readiness.is_writable() {
                let stream = connection.stream.as_ref().expect("open while connecting");
                poller
                    .modify(stream.as_fd(), event.token, Interest::READABLE)
                    .context("switching a connection to reading")?;
                connection.wants_write = false;
                pending -= 1;
            }
        }
    }
    Ok((poller, connections))
}

/// The measured part of the run.
fn drive(
    plan: &RunPlan,
    poller: &Poller,
    connections: &mut [Connection],
) -> anyhow::Result<ThreadResult> {
    let requests = plan.mix.requests();
    let mut tally = Tally {
        result: ThreadResult {
            latencies: Histograms::new()?,
            completed: 0,
            mismatches: 0,
            connection_errors: 0,
            elapsed: Duration::ZERO,
            first_error: None,
        },
        open: connections.len(),
        last_response: None,
    };
    let start = Instant::now();
    let deadline = plan.duration.map(|duration| start + duration);
    // Set at the deadline of a timed run; a counted run stops through its quotas instead.
    let mut stopped = false;

    for (token, connection) in connections.iter_mut().enumerate() {
        connection.last_heard = start;
        connection.pipeline.fill(requests, start);
        flush(poller, token, connection, &mut tally, &plan.progress);
        close_if_finished(poller, connection, &mut tally);
    }

    let mut events = Events::with_capacity(EVENTS_PER_WAIT);
    let mut buffer = vec![0u8; RECV_BUFFER];
    while tally.open > 0 {
        let now = Instant::now();
        if !stopped && deadline.is_some_and(|deadline| now >= deadline) {
            stopped = true;
            for connection in connections.iter_mut() {
                connection.pipeline.stop();
                close_if_finished(poller, connection, &mut tally);
            }
            continue;
        }
        let mut timeout = plan.timeout;
        if let Some(deadline) = deadline.filter(|_| !stopped) {
            timeout = timeout.min(deadline.saturating_duration_since(now));
        }
        poller
            .wait(&mut events, Some(timeout))
            .context("waiting for responses")?;
        let now = Instant::now();
        let mut completed_this_turn = 0;
        for event in events.iter() {
            let token = event.token as usize;
            let connection = &mut connections[token];
            let Some(stream) = connection.stream.as_ref() else {
                continue;
            };
            let readiness = event.readiness;
            if readiness.is_readable() || readiness.is_hang_up() || readiness.is_error() {
                match stream.recv(&mut buffer) {
                    Ok(0) => {
                        let owed = connection.pipeline.in_flight();
                        tally.fail(&plan.progress, false, || {
                            format!("the server closed a connection that was owed {owed} responses")
                        });
                        close(poller, connection, &mut tally);
                        continue;
                    }
                    Ok(received) => {
                        connection.last_heard = now;
                        match connection.pipeline.receive(
                            &buffer[..received],
                            requests,
                            now,
                            &mut tally.result.latencies,
                        ) {
                            Ok(completed) => completed_this_turn += completed,
                            Err(mismatch) => {
                                tally.fail(&plan.progress, true, || mismatch.to_string());
                                close(poller, connection, &mut tally);
                                continue;
                            }
                        }
                        if !stopped {
                            connection.pipeline.fill(requests, now);
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => {
                        tally.fail(&plan.progress, false, || format!("receiving: {error}"));
                        close(poller, connection, &mut tally);
                        continue;
                    }
                }
            }
            flush(poller, token, connection, &mut tally, &plan.progress);
            close_if_finished(poller, connection, &mut tally);
        }
        if completed_this_turn > 0 {
            tally.result.completed += completed_this_turn;
            tally.last_response = Some(now);
            plan.progress
                .completed
                .fetch_add(completed_this_turn, Ordering::Relaxed);
        }
        // The hang guard: a connection that owes responses and has heard nothing for the whole
        // timeout has failed. Checked only after a quiet wait, so it costs nothing under load.
        if events.is_empty() {
            for connection in connections.iter_mut() {
                if connection.stream.is_some()
                    && connection.pipeline.in_flight() > 0
                    && now.duration_since(connection.last_heard) >= plan.timeout
                {
                    let owed = connection.pipeline.in_flight();
                    tally.fail(&plan.progress, false, || {
                        format!(
                            "no response for {:?} with {owed} requests owed",
                            plan.timeout
                        )
                    });
                    close(poller, connection, &mut tally);
                }
            }
        }
    }
    tally.result.elapsed = tally
        .last_response
        .map_or(Duration::ZERO, |last| last - start);
    Ok(tally.result)
}

/// Sends what the connection's pipeline has queued, and switches writable interest on while
/// bytes are left over.
fn flush(
    poller: &Poller,
    token: usize,
    connection: &mut Connection,
    tally: &mut Tally,
    progress: &Progress,
) {
    let Some(stream) = connection.stream.as_ref() else {
        return;
    };
    let mut failed = None;
    while !connection.pipeline.output().is_empty() {
        match stream.send(connection.pipeline.output()) {
            Ok(sent) => connection.pipeline.advance_output(sent),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    if let Some(error) = failed {
        tally.fail(progress, false, || format!("sending: {error}"));
        close(poller, connection, tally);
        return;
    }
    let wants_write = !connection.pipeline.output().is_empty();
    if wants_write != connection.wants_write {
        let interest = Interest::READABLE.with_writable(wants_write);
        if poller
            .modify(stream.as_fd(), token as u64, interest)
            .is_err()
        {
            tally.fail(progress, false, || {
                "re-registering a connection failed".to_owned()
            });
            close(poller, connection, tally);
            return;
        }
        connection.wants_write = wants_write;
    }
}

/// Closes the connection once it has nothing in flight and will send nothing more.
fn close_if_finished(poller: &Poller, connection: &mut Connection, tally: &mut Tally) {
    if connection.pipeline.is_finished() {
        close(poller, connection, tally);
    }
}

/// Deregisters and closes a connection (once).
fn close(poller: &Poller, connection: &mut Connection, tally: &mut Tally) {
    if let Some(stream) = connection.stream.take() {
        // The fd is about to be closed, which removes it from the epoll set anyway; deleting it
        // first keeps the registration rule of the poller, and its failure changes nothing.
        let _ = poller.delete(stream.as_fd());
        tally.open -= 1;
    }
}
