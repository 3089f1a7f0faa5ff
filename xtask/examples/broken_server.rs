//! A deliberately breakable protocol server, for the runner's own tests.
//!
//! Without `--bug` it is a correct (if thread-hungry) server of the handoff protocol: a "loop"
//! thread accepts and routes every request, a pool of workers computes, and each connection has
//! a reader and a writer thread that do its socket I/O, so workers never touch a socket and the
//! loop never computes. Each `--bug NAME` plants one of the mistakes the course warns about, so
//! the tests can check that the lesson steps reject it with the right message:
//!
//! | bug | the mistake |
//! |---|---|
//! | `drop-on-half-close` | closes as soon as the client half-closes, dropping owed answers |
//! | `compute-on-loop` | runs worker verbs on the loop thread |
//! | `worker-writes-socket` | the worker sends its own answer on the client socket |
//! | `fd-reuse` | routes results by fd number, so a new client on a reused fd gets an old answer |
//! | `out-of-order` | writes answers in completion order, not request order |
//! | `no-drain` | exits on SIGTERM at once, without answering accepted requests |
//! | `fd-leak` | leaks one descriptor per connection |
//! | `panic-kills` | a task panic takes the process down |
//! | `keep-cr` | keeps the `\r` of a CRLF line ending |
//! | `drop-final-line` | ignores a last line without `\n` at EOF |
//! | `off-by-one` | rejects a line of exactly 65,536 bytes as too long |
//! | `spin-on-emfile` | retries `accept` in a busy loop when out of descriptors |
//! | `wrong-hash` | answers `compute` with a hash of the wrong bytes (the whole line) |
//!
//! Usage: `broken_server PORT [--workers N] [--queue N] [--log] [--bug NAME]`.

use eventloop::sys;
use handoff_protocol::{
    ErrorReply, Frame, LineFramer, MAX_LINE_LEN, Reply, Stats, Verb, execute, panic_message,
    split_request,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The planted mistake, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    DropOnHalfClose,
    ComputeOnLoop,
    WorkerWritesSocket,
    FdReuse,
    OutOfOrder,
    NoDrain,
    FdLeak,
    PanicKills,
    KeepCr,
    DropFinalLine,
    OffByOne,
    SpinOnEmfile,
    WrongHash,
}

impl Bug {
    fn parse(name: &str) -> Option<Bug> {
        Some(match name {
            "none" => Bug::None,
            "drop-on-half-close" => Bug::DropOnHalfClose,
            "compute-on-loop" => Bug::ComputeOnLoop,
            "worker-writes-socket" => Bug::WorkerWritesSocket,
            "fd-reuse" => Bug::FdReuse,
            "out-of-order" => Bug::OutOfOrder,
            "no-drain" => Bug::NoDrain,
            "fd-leak" => Bug::FdLeak,
            "panic-kills" => Bug::PanicKills,
            "keep-cr" => Bug::KeepCr,
            "drop-final-line" => Bug::DropFinalLine,
            "off-by-one" => Bug::OffByOne,
            "spin-on-emfile" => Bug::SpinOnEmfile,
            "wrong-hash" => Bug::WrongHash,
            _ => return None,
        })
    }
}

/// What the writer of a connection receives.
enum ToWriter {
    /// The answer to request `seq` (`None`: someone else already sent it).
    Answer(u64, Option<Vec<u8>>),
    /// The reader saw EOF after `total` requests: finish them, then close.
    End(u64),
    /// The connection broke: close at once.
    Abort,
}

/// What the loop thread receives.
enum ToLoop {
    /// A request line (or a too-long line) from a reader.
    Request {
        fd: i32,
        seq: u64,
        line: Option<Vec<u8>>,
        writer: Sender<ToWriter>,
        /// Only for the `worker-writes-socket` bug: any other holder would keep the fd open.
        socket: Option<Arc<TcpStream>>,
    },
    /// A worker's result, routed by fd number (the `fd-reuse` bug only).
    ResultForFd { fd: i32, seq: u64, bytes: Vec<u8> },
    /// A connection is finished.
    Closed { conn: u64 },
}

/// A task for the pool.
struct Job {
    task: u64,
    fd: i32,
    seq: u64,
    verb: Verb,
    args: Vec<u8>,
    writer: Sender<ToWriter>,
    socket: Option<Arc<TcpStream>>,
}

#[derive(Default)]
struct Counters {
    workers: AtomicU64,
    connections: AtomicU64,
    queued: AtomicU64,
    busy: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    rejected: AtomicU64,
}

fn thread_id() -> u64 {
    // `/proc/thread-self` links to `<pid>/task/<tid>`.
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut port: u16 = 0;
    let mut workers = 4usize;
    let mut log = false;
    let mut bug = Bug::None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--workers" => workers = iter.next().and_then(|v| v.parse().ok()).unwrap_or(4),
            "--queue" => {
                iter.next();
            }
            "--log" => log = true,
            "--bug" => {
                bug = iter
                    .next()
                    .and_then(|v| Bug::parse(v))
                    .expect("unknown --bug")
            }
            other => port = other.parse().expect("PORT"),
        }
    }
    // Blocked before any thread starts, so every thread inherits the mask and the loop can
    // take SIGTERM/SIGINT synchronously.
    sys::block_signals(&[libc::SIGTERM, libc::SIGINT]).expect("block signals");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    println!("listening on {}", listener.local_addr().expect("addr"));
    let main_tid = thread_id();
    if log {
        eprintln!("main {main_tid}");
    }
    let counters = Arc::new(Counters::default());
    counters.workers.store(workers as u64, Ordering::Relaxed);
    let (to_loop, events) = mpsc::channel::<ToLoop>();
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let pool: Vec<_> = (0..workers)
        .map(|_| {
            let (jobs, counters, to_loop) = (jobs_rx.clone(), counters.clone(), to_loop.clone());
            std::thread::spawn(move || worker(&jobs, &counters, &to_loop, bug, log))
        })
        .collect();
    run_loop(
        listener, &events, &to_loop, jobs_tx, &counters, bug, log, main_tid,
    );
    for worker in pool {
        let _ = worker.join();
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "a test fixture's one loop function"
)]
fn run_loop(
    listener: TcpListener,
    events: &Receiver<ToLoop>,
    to_loop: &Sender<ToLoop>,
    jobs: Sender<Job>,
    counters: &Arc<Counters>,
    bug: Bug,
    log: bool,
    main_tid: u64,
) {
    let mut listener = Some(listener);
    let mut spare = std::fs::File::open("/dev/null").ok();
    let mut live: HashMap<u64, Arc<TcpStream>> = HashMap::new();
    let mut by_fd: HashMap<i32, Sender<ToWriter>> = HashMap::new();
    let mut next_conn = 0u64;
    let mut next_task = 0u64;
    let mut draining = false;
    loop {
        if let Ok(Some(_)) = test_support::sys::take_pending_signal(&[libc::SIGTERM, libc::SIGINT])
        {
            if bug == Bug::NoDrain {
                std::process::exit(0);
            }
            draining = true;
            listener = None;
            // Readers see EOF, answer what they have read, and close.
            for socket in live.values() {
                let _ = socket.shutdown(Shutdown::Read);
            }
        }
        if draining && live.is_empty() {
            break;
        }
        if let Some(server) = &listener {
            match server.accept() {
                Ok((stream, _)) => {
                    next_conn += 1;
                    let socket = Arc::new(stream);
                    if bug == Bug::FdLeak {
                        std::mem::forget(socket.try_clone());
                    }
                    let fd = socket.as_raw_fd();
                    let (writer_tx, writer_rx) = mpsc::channel();
                    by_fd.insert(fd, writer_tx.clone());
                    live.insert(next_conn, socket.clone());
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    spawn_connection(
                        next_conn,
                        socket,
                        writer_tx,
                        writer_rx,
                        to_loop.clone(),
                        bug,
                    );
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if bug == Bug::SpinOnEmfile {
                        continue;
                    }
                    // Free the reserved fd, accept the pending client and close it, so the
                    // backlog does not keep the listener readable forever.
                    spare = None;
                    if let Ok((rejected, _)) = server.accept() {
                        drop(rejected);
                        counters.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    spare = spare.or_else(|| std::fs::File::open("/dev/null").ok());
                }
                Err(_) => {}
            }
        }
        let event = match events.recv_timeout(Duration::from_millis(5)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match event {
            ToLoop::Closed { conn } => {
                if let Some(socket) = live.remove(&conn) {
                    by_fd.remove(&socket.as_raw_fd());
                }
                counters.connections.fetch_sub(1, Ordering::Relaxed);
            }
            ToLoop::ResultForFd { fd, seq, bytes } => {
                if let Some(writer) = by_fd.get(&fd) {
                    let _ = writer.send(ToWriter::Answer(seq, Some(bytes)));
                }
            }
            ToLoop::Request {
                fd,
                seq,
                line,
                writer,
                socket,
            } => {
                let Some(line) = line else {
                    counters.completed.fetch_add(1, Ordering::Relaxed);
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = writer.send(ToWriter::Answer(
                        seq,
                        Some(Reply::Error(ErrorReply::LineTooLong).to_bytes()),
                    ));
                    continue;
                };
                let (verb, args) = split_request(&line);
                if verb == Verb::Stats {
                    let mut out = Vec::new();
                    Stats {
                        connections: counters.connections.load(Ordering::Relaxed),
                        queue_depth: counters.queued.load(Ordering::Relaxed),
                        workers: counters.workers.load(Ordering::Relaxed),
                        busy_workers: counters.busy.load(Ordering::Relaxed),
                        completed: counters.completed.load(Ordering::Relaxed),
                        errors: counters.errors.load(Ordering::Relaxed),
                        panics: counters.panics.load(Ordering::Relaxed),
                        rejected: counters.rejected.load(Ordering::Relaxed),
                    }
                    .write_to(&mut out);
                    counters.completed.fetch_add(1, Ordering::Relaxed);
                    let _ = writer.send(ToWriter::Answer(seq, Some(out)));
                } else if verb.runs_on_worker() {
                    next_task += 1;
                    if bug == Bug::ComputeOnLoop {
                        if log {
                            eprintln!("worker {main_tid} task {next_task} {}", verb.as_str());
                        }
                        let bytes = run_task(verb, args, counters, bug);
                        let _ = writer.send(ToWriter::Answer(seq, Some(bytes)));
                    } else {
                        counters.queued.fetch_add(1, Ordering::Relaxed);
                        let job = Job {
                            task: next_task,
                            fd,
                            seq,
                            verb,
                            args: args.to_vec(),
                            writer,
                            socket,
                        };
                        let _ = jobs.send(job);
                    }
                } else {
                    let bytes = run_task(verb, args, counters, bug);
                    let _ = writer.send(ToWriter::Answer(seq, Some(bytes)));
                }
            }
        }
    }
    drop(spare);
}

fn run_task(verb: Verb, args: &[u8], counters: &Counters, bug: Bug) -> Vec<u8> {
    if bug == Bug::PanicKills && verb == Verb::Panic {
        // As if the pool ran tasks without catch_unwind and the panic took the process down.
        std::process::abort();
    }
    // The verb's own word hashed along with its argument: a plausible hash, of the wrong bytes.
    let wrong_hash_input = [b"compute ".as_slice(), args].concat();
    let args = if bug == Bug::WrongHash && verb == Verb::Compute {
        wrong_hash_input.as_slice()
    } else {
        args
    };
    let reply = std::panic::catch_unwind(|| execute(verb, args)).unwrap_or_else(|payload| {
        counters.panics.fetch_add(1, Ordering::Relaxed);
        Reply::Error(ErrorReply::Panicked(
            panic_message(payload.as_ref()).to_owned(),
        ))
    });
    counters.completed.fetch_add(1, Ordering::Relaxed);
    if reply.is_error() {
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    reply.to_bytes()
}

fn worker(
    jobs: &Mutex<Receiver<Job>>,
    counters: &Counters,
    to_loop: &Sender<ToLoop>,
    bug: Bug,
    log: bool,
) {
    let tid = thread_id();
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        counters.busy.fetch_add(1, Ordering::Relaxed);
        if log {
            eprintln!("worker {tid} task {} {}", job.task, job.verb.as_str());
        }
        let bytes = run_task(job.verb, &job.args, counters, bug);
        counters.busy.fetch_sub(1, Ordering::Relaxed);
        match bug {
            Bug::FdReuse => {
                let _ = to_loop.send(ToLoop::ResultForFd {
                    fd: job.fd,
                    seq: job.seq,
                    bytes,
                });
            }
            Bug::WorkerWritesSocket => {
                if let Some(socket) = &job.socket {
                    let _ = (&**socket).write_all(&bytes);
                }
                let _ = job.writer.send(ToWriter::Answer(job.seq, None));
            }
            _ => {
                let _ = job.writer.send(ToWriter::Answer(job.seq, Some(bytes)));
            }
        }
    }
}

fn spawn_connection(
    conn: u64,
    socket: Arc<TcpStream>,
    writer_tx: Sender<ToWriter>,
    writer_rx: Receiver<ToWriter>,
    to_loop: Sender<ToLoop>,
    bug: Bug,
) {
    let reader_socket = socket.clone();
    let reader_loop = to_loop.clone();
    std::thread::spawn(move || reader(&reader_socket, &writer_tx, &reader_loop, bug));
    std::thread::spawn(move || {
        writer(&socket, &writer_rx, bug);
        let _ = to_loop.send(ToLoop::Closed { conn });
    });
}

fn reader(socket: &Arc<TcpStream>, writer: &Sender<ToWriter>, to_loop: &Sender<ToLoop>, bug: Bug) {
    let fd = socket.as_raw_fd();
    let mut framer = LineFramer::new();
    let mut raw: Vec<u8> = Vec::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    let send = |seq: u64, line: Option<Vec<u8>>| {
        let socket = (bug == Bug::WorkerWritesSocket).then(|| socket.clone());
        let _ = to_loop.send(ToLoop::Request {
            fd,
            seq,
            line,
            writer: writer.clone(),
            socket,
        });
    };
    loop {
        let n = match (&**socket).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                let _ = writer.send(ToWriter::Abort);
                return;
            }
        };
        if n == 0 {
            break;
        }
        let mut too_long = false;
        if bug == Bug::KeepCr || bug == Bug::OffByOne {
            // Hand-written framing: the planted mistakes live here.
            raw.extend_from_slice(&buf[..n]);
            while let Some(end) = raw.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = raw.drain(..=end).take(end).collect();
                let line = if bug == Bug::OffByOne {
                    line.strip_suffix(b"\r").map(<[u8]>::to_vec).unwrap_or(line)
                } else {
                    line
                };
                if line.len() >= MAX_LINE_LEN && bug == Bug::OffByOne || line.len() > MAX_LINE_LEN {
                    too_long = true;
                    break;
                }
                send(seq, Some(line));
                seq += 1;
            }
            if raw.len() > MAX_LINE_LEN {
                too_long = true;
            }
        } else {
            framer.extend(&buf[..n]);
            while let Some(frame) = framer.next_frame() {
                match frame {
                    Frame::Line(line) => {
                        send(seq, Some(line.to_vec()));
                        seq += 1;
                    }
                    Frame::TooLong => {
                        too_long = true;
                        break;
                    }
                }
            }
        }
        if too_long {
            send(seq, None);
            seq += 1;
            let _ = writer.send(ToWriter::End(seq));
            // Read and discard until the client closes, so closing never resets the connection
            // before the error line is read.
            while (&**socket).read(&mut buf).is_ok_and(|n| n > 0) {}
            return;
        }
    }
    if bug != Bug::DropFinalLine {
        if bug == Bug::KeepCr || bug == Bug::OffByOne {
            if !raw.is_empty() {
                send(seq, Some(std::mem::take(&mut raw)));
                seq += 1;
            }
        } else if let Some(Frame::Line(line)) = framer.finish() {
            send(seq, Some(line.to_vec()));
            seq += 1;
        }
    }
    let _ = writer.send(ToWriter::End(seq));
}

fn writer(socket: &TcpStream, answers: &Receiver<ToWriter>, bug: Bug) {
    let mut pending: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
    let mut next = 0u64;
    let mut total: Option<u64> = None;
    while total != Some(next) {
        let Ok(message) = answers.recv() else { return };
        match message {
            ToWriter::Abort => return,
            ToWriter::End(count) => {
                if bug == Bug::DropOnHalfClose {
                    break;
                }
                total = Some(count);
            }
            ToWriter::Answer(seq, bytes) => {
                if bug == Bug::OutOfOrder {
                    if let Some(bytes) = bytes {
                        let _ = (&*socket).write_all(&bytes);
                    }
                    next += 1;
                    continue;
                }
                pending.insert(seq, bytes);
                while let Some(bytes) = pending.remove(&next) {
                    if let Some(bytes) = bytes {
                        if (&*socket).write_all(&bytes).is_err() {
                            return;
                        }
                    }
                    next += 1;
                }
            }
        }
    }
    let _ = socket.shutdown(Shutdown::Write);
}
