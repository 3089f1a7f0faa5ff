//! The Tokio comparison server: the handoff protocol served the way a good Tokio user would.
//!
//! The benchmark compares the course's hand-built servers against what a Rust developer would
//! otherwise write, so this server is deliberately idiomatic rather than clever:
//!
//! - a multi-thread runtime with `--workers N` worker threads, and a blocking pool capped at the
//!   same `N` threads, so every server in a comparison has the same number of threads doing CPU
//!   work (with Tokio's default cap of 512 blocking threads, `sleep 1` would not be bounded by
//!   the worker count the way it is for the other servers);
//! - one task per connection that owns its `TcpStream`, reads into a [`LineFramer`] straight from
//!   the socket (`readable` + `try_read`, so a read is one `recv` of up to 64 KiB);
//! - `spawn_blocking` for every verb where [`Verb::runs_on_worker`] holds, answered in request
//!   order by awaiting an in-order queue of `JoinHandle`s, the head first;
//! - one `write_all` per batch of replies that are ready at the same time.
//!
//! Same protocol, same bytes: framing, verbs, replies and the `stats` line all come from
//! [`handoff_protocol`]. Usage: `tokio_server [PORT] [--workers N]`; it prints
//! `listening on 127.0.0.1:<port>` once it accepts connections.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use handoff_protocol::{
    ErrorReply, Frame, LineFramer, Reply, Stats, Verb, execute, panic_message, split_request,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How many bytes one read asks the socket for.
const READ_CHUNK: usize = 64 * 1024;
/// How many requests one connection may have in flight before the server stops reading from it:
/// the same kind of back-pressure the hand-built servers get from their bounded queues.
const MAX_IN_FLIGHT: usize = 1024;
/// How long the server waits for open connections to finish after SIGINT or SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long the accept loop backs off after an accept error such as EMFILE, which would
/// otherwise leave the listener readable and the loop spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Command line of the Tokio comparison server.
#[derive(Debug, Parser)]
#[command(
    name = "tokio_server",
    about = "The handoff protocol on a Tokio multi-thread runtime"
)]
struct Cli {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    #[arg(default_value_t = 0)]
    port: u16,
    /// Runtime worker threads, and the cap on blocking threads (default: the number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
}

/// Counters shared by every connection, reported by `stats`.
#[derive(Debug, Default)]
struct Counters {
    /// Client connections open now.
    connections: AtomicU64,
    /// Blocking tasks spawned and not yet started.
    queued: AtomicU64,
    /// Blocking tasks running now.
    busy: AtomicU64,
    /// Responses written, errors included.
    completed: AtomicU64,
    /// Responses that were `ERROR: …` lines.
    errors: AtomicU64,
    /// Blocking tasks that panicked.
    panics: AtomicU64,
    /// Accept calls that failed (for example for lack of file descriptors).
    rejected: AtomicU64,
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    /// In an `Arc` of its own so each blocking task can hold it: the task must be `'static`.
    counters: Arc<Counters>,
    workers: u64,
}

impl Shared {
    /// A snapshot for `stats`. The counters are independent statistics, so relaxed loads are
    /// enough: nothing else is published through them.
    fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            connections: c.connections.load(Ordering::Relaxed),
            queue_depth: c.queued.load(Ordering::Relaxed),
            workers: self.workers,
            busy_workers: c.busy.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            panics: c.panics.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
        }
    }
}

/// One response a connection owes, in request order.
#[derive(Debug)]
enum Pending {
    /// Answered already (loop verbs, `stats`, line too long).
    Ready(Answer),
    /// Running (or queued) on the blocking pool.
    Blocking(JoinHandle<Reply>),
}

/// A response before it is written.
#[derive(Debug)]
enum Answer {
    Reply(Reply),
    Stats(Stats),
}

impl Answer {
    fn write_to(&self, out: &mut Vec<u8>, counters: &Counters) {
        counters.completed.fetch_add(1, Ordering::Relaxed);
        match self {
            Answer::Reply(reply) => {
                if reply.is_error() {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                reply.write_to(out);
            }
            Answer::Stats(stats) => stats.write_to(out),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tokio_server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let workers = cli
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(workers)
        .thread_name("tokio-server")
        .enable_io()
        .enable_time()
        .build()
        .context("building the Tokio runtime")?;
    let shared = Arc::new(Shared {
        counters: Arc::default(),
        workers: workers as u64,
    });
    runtime.block_on(serve(cli.port, shared))
}

async fn serve(port: u16, shared: Arc<Shared>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let local = listener.local_addr()?;
    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "listening on {local}")?;
        stdout.flush()?;
    }

    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            // Reap finished connection tasks so the set does not grow with every connection.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                        // A connection that fails (reset by the peer, say) ends quietly: it
                        // concerns only that client.
                        let _ = serve_connection(stream, &shared).await;
                        shared.counters.connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(_) => {
                    shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    // Stop accepting, then give the open connections a bounded time to answer what they owe.
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

/// Serves one connection until the client closes it (or sends a line that is too long), then
/// answers everything it owes and closes.
async fn serve_connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let counters = &shared.counters;
    let mut framer = LineFramer::new();
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    let mut out = Vec::with_capacity(4096);
    let mut reading = true;
    loop {
        if !reading && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            // Answers first: finishing what is owed frees in-flight room before reading more.
            biased;
            reply = head_of(&mut in_flight), if matches!(in_flight.front(), Some(Pending::Blocking(_))) => {
                in_flight.pop_front();
                Answer::Reply(reply).write_to(&mut out, counters);
            }
            ready = stream.readable(), if reading && in_flight.len() < MAX_IN_FLIGHT => {
                ready?;
                match framer.fill_with(READ_CHUNK, |buf| stream.try_read(buf)) {
                    Ok(0) => {
                        reading = false;
                        if let Some(frame) = framer.finish() {
                            let frame = owned(frame);
                            accept_frame(frame.as_ref(), shared, &mut in_flight, &mut reading);
                        }
                    }
                    Ok(_) => {
                        while reading && let Some(frame) = framer.next_frame() {
                            let frame = owned(frame);
                            accept_frame(frame.as_ref(), shared, &mut in_flight, &mut reading);
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
            }
        }
        // Everything at the head that is answered already goes into the same write.
        while let Some(front) = in_flight.front() {
            match front {
                Pending::Ready(_) => {
                    if let Some(Pending::Ready(answer)) = in_flight.pop_front() {
                        answer.write_to(&mut out, counters);
                    }
                }
                Pending::Blocking(handle) if handle.is_finished() => {
                    let reply = head_of(&mut in_flight).await;
                    in_flight.pop_front();
                    Answer::Reply(reply).write_to(&mut out, counters);
                }
                Pending::Blocking(_) => break,
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
    stream.shutdown().await
}

/// A frame detached from the framer's buffer, so the framer can be borrowed again.
///
/// Only the argument bytes of worker verbs need to be owned (they move to the blocking pool);
/// the copy is made once, here.
enum OwnedFrame {
    Line(Vec<u8>),
    TooLong,
}

impl OwnedFrame {
    fn as_ref(&self) -> Frame<'_> {
        match self {
            OwnedFrame::Line(line) => Frame::Line(line),
            OwnedFrame::TooLong => Frame::TooLong,
        }
    }
}

fn owned(frame: Frame<'_>) -> OwnedFrame {
    match frame {
        Frame::Line(line) => OwnedFrame::Line(line.to_vec()),
        Frame::TooLong => OwnedFrame::TooLong,
    }
}

/// Turns one request into the response it is owed: answered now, or handed to the blocking pool.
fn accept_frame(
    frame: Frame<'_>,
    shared: &Shared,
    in_flight: &mut VecDeque<Pending>,
    reading: &mut bool,
) {
    let line = match frame {
        Frame::Line(line) => line,
        Frame::TooLong => {
            // The protocol closes the connection after this answer: stop reading.
            *reading = false;
            in_flight.push_back(Pending::Ready(Answer::Reply(Reply::Error(
                ErrorReply::LineTooLong,
            ))));
            return;
        }
    };
    let (verb, args) = split_request(line);
    let pending = if verb == Verb::Stats {
        Pending::Ready(Answer::Stats(shared.stats()))
    } else if verb.runs_on_worker() {
        Pending::Blocking(spawn_worker_verb(verb, args.to_vec(), shared))
    } else {
        Pending::Ready(Answer::Reply(execute(verb, args)))
    };
    in_flight.push_back(pending);
}

/// Runs a worker verb on the blocking pool. A panic is caught in the task, so the client gets
/// `ERROR: task panicked: …` and the pool keeps its thread.
fn spawn_worker_verb(verb: Verb, args: Vec<u8>, shared: &Shared) -> JoinHandle<Reply> {
    let counters = Arc::clone(&shared.counters);
    counters.queued.fetch_add(1, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || {
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        counters.busy.fetch_add(1, Ordering::Relaxed);
        let reply = std::panic::catch_unwind(AssertUnwindSafe(|| execute(verb, &args)))
            .unwrap_or_else(|payload| {
                counters.panics.fetch_add(1, Ordering::Relaxed);
                Reply::Error(ErrorReply::Panicked(
                    panic_message(payload.as_ref()).to_owned(),
                ))
            });
        counters.busy.fetch_sub(1, Ordering::Relaxed);
        reply
    })
}

/// Awaits the reply at the head of the queue; the head must be [`Pending::Blocking`].
///
/// It polls the `JoinHandle` by reference, so dropping this future (when `select!` picks the
/// other branch) loses nothing: the next call resumes waiting on the same task.
async fn head_of(in_flight: &mut VecDeque<Pending>) -> Reply {
    let Some(Pending::Blocking(handle)) = in_flight.front_mut() else {
        unreachable!("head_of is only called with a blocking task at the head");
    };
    match handle.await {
        Ok(reply) => reply,
        // The task catches its own panics, and blocking tasks are never aborted, so a join
        // error can only come from a runtime shutting down; the client is gone by then.
        Err(error) => Reply::Error(ErrorReply::Panicked(error.to_string())),
    }
}
