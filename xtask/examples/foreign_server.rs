//! An honest server of the handoff protocol written in another shape than the workspace's own,
//! for the runner's tests of `--server`: what a student of the original course might write in C,
//! here in plain blocking Rust.
//!
//! There is no event loop. The main thread accepts; every connection gets a thread of its own that
//! reads with blocking calls, frames lines itself, answers the loop verbs (`ping`, `stats`, errors)
//! at once and hands the worker verbs to a pool of `--workers` threads through one bounded
//! `std::sync::mpsc` channel of `--queue` slots (a full channel blocks the connection thread, so it
//! stops reading until a slot opens). Workers send each result back to the connection thread that
//! asked, which writes the answers in request order. Only the connection threads (and, at
//! shutdown, the main thread) touch client sockets; workers never do.
//!
//! It parses requests with its own code, not the workspace's protocol crate, so the grader's
//! checks are not checking the grader's own parser. Its only helpers from the workspace are three
//! thin wrappers of `eventloop::sys` (the project's one way into libc): blocking and taking
//! SIGTERM and SIGINT, and `gettid` for the log lines.
//!
//! Usage: `foreign_server PORT [--workers N] [--queue N] [--log]`, the flags in any order.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest request line, without its `\n`.
const MAX_LINE: usize = 65_536;

/// The command line.
struct Config {
    port: u16,
    workers: usize,
    queue: usize,
    log: bool,
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut words = args.iter();
    let port = words
        .next()
        .ok_or("missing PORT")?
        .parse::<u16>()
        .map_err(|e| format!("PORT: {e}"))?;
    let mut config = Config {
        port,
        workers: std::thread::available_parallelism().map_or(2, usize::from),
        queue: 1024,
        log: false,
    };
    while let Some(word) = words.next() {
        let mut count = |name: &str| -> Result<usize, String> {
            let value = words.next().ok_or(format!("{name} needs a number"))?;
            match value.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name}: `{value}` is not a positive number")),
            }
        };
        match word.as_str() {
            "--workers" => config.workers = count("--workers")?,
            "--queue" => config.queue = count("--queue")?,
            "--log" => config.log = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(config)
}

/// What `stats` reports, counted the way a C server would keep its globals.
#[derive(Default)]
struct Counters {
    /// Open client connections.
    open: AtomicU64,
    /// Tasks in the channel, not yet taken by a worker.
    waiting: AtomicU64,
    /// Tasks a worker is running.
    running: AtomicU64,
    /// Tasks finished, errors and panics included.
    done: AtomicU64,
    /// Tasks whose answer was an `ERROR: ` line.
    failed: AtomicU64,
    /// Tasks that panicked.
    panicked: AtomicU64,
    /// The next task's id.
    next_task: AtomicU64,
}

/// A worker verb on its way to the pool.
struct Task {
    id: u64,
    seq: u64,
    line: Vec<u8>,
    answer: Sender<(u64, Vec<u8>)>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_args(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!(
                "foreign_server: {message}\nusage: foreign_server PORT [--workers N] [--queue N] [--log]"
            );
            std::process::exit(2);
        }
    };
    // Blocked before any thread starts, so every thread inherits the mask and the signals wait
    // for the main thread to take them.
    let signals = [libc::SIGTERM, libc::SIGINT];
    eventloop::sys::block_signals(&signals).expect("block SIGTERM and SIGINT");
    // A task's panic is answered to its client; the default hook's report would only be noise.
    std::panic::set_hook(Box::new(|_| {}));

    let listener = TcpListener::bind(("127.0.0.1", config.port)).expect("bind");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("local address").port();
    println!("listening on 127.0.0.1:{port}");
    let _ = std::io::stdout().flush();
    if config.log {
        eprintln!("main {}", eventloop::sys::gettid());
    }

    let counters = Arc::new(Counters::default());
    let (tasks, queue) = mpsc::sync_channel::<Task>(config.queue);
    let queue = Arc::new(Mutex::new(queue));
    let workers: Vec<JoinHandle<()>> = (0..config.workers)
        .map(|_| {
            let (queue, counters, log) = (queue.clone(), counters.clone(), config.log);
            std::thread::spawn(move || worker(&queue, &counters, log))
        })
        .collect();

    let mut connections: Vec<(JoinHandle<()>, Arc<TcpStream>)> = Vec::new();
    loop {
        if let Ok(Some(_)) = test_support::sys::take_pending_signal(&signals) {
            break;
        }
        connections.retain(|(handle, _)| !handle.is_finished());
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                let stream = Arc::new(stream);
                let (shared, counters, tasks, workers) = (
                    stream.clone(),
                    counters.clone(),
                    tasks.clone(),
                    config.workers,
                );
                counters.open.fetch_add(1, Ordering::Relaxed);
                let handle = std::thread::spawn(move || {
                    serve(&shared, &tasks, &counters, workers);
                    counters.open.fetch_sub(1, Ordering::Relaxed);
                });
                connections.push((handle, stream));
            }
            // Nothing to accept: look again shortly (and for a signal in between).
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Out of descriptors (or another transient error): back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }

    // Shutdown: accept no more, let every connection finish what it has read, then the pool.
    drop(listener);
    for (_, stream) in &connections {
        let _ = stream.shutdown(Shutdown::Read);
    }
    for (handle, _) in connections {
        let _ = handle.join();
    }
    drop(tasks);
    for handle in workers {
        let _ = handle.join();
    }
}

fn worker(queue: &Mutex<Receiver<Task>>, counters: &Counters, log: bool) {
    let tid = eventloop::sys::gettid();
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(task) = next else { return };
        counters.waiting.fetch_sub(1, Ordering::Relaxed);
        counters.running.fetch_add(1, Ordering::Relaxed);
        if log {
            eprintln!(
                "worker {tid} task {} {}",
                task.id,
                String::from_utf8_lossy(task.line.split(|&b| b == b' ').next().unwrap_or(b""))
            );
        }
        let answer = match std::panic::catch_unwind(|| work(&task.line)) {
            Ok(answer) => answer,
            Err(payload) => {
                counters.panicked.fetch_add(1, Ordering::Relaxed);
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                format!("ERROR: task panicked: {message}\n").into_bytes()
            }
        };
        if answer.starts_with(b"ERROR: ") {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        counters.running.fetch_sub(1, Ordering::Relaxed);
        counters.done.fetch_add(1, Ordering::Relaxed);
        let _ = task.answer.send((task.seq, answer));
    }
}

/// A decimal argument: `Ok(Some(n))`, `Ok(None)` when it is all digits but too large for a u64,
/// `Err(())` when it is not a number.
fn number(text: &[u8]) -> Result<Option<u64>, ()> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    Ok(std::str::from_utf8(text).ok().and_then(|s| s.parse().ok()))
}

fn split_word(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&b| b == b' ') {
        Some(space) => (&text[..space], &text[space + 1..]),
        None => (text, &[]),
    }
}

fn hash_line(hash: u64) -> Vec<u8> {
    format!("result: {hash:016x}\n").into_bytes()
}

/// The work of a worker verb; `line` is the whole request.
fn work(line: &[u8]) -> Vec<u8> {
    use xxhash_rust::xxh3::xxh3_64;
    let (verb, text) = split_word(line);
    let error = |message: &str| format!("ERROR: {message}\n").into_bytes();
    match verb {
        b"compute" => hash_line(xxh3_64(text)),
        b"rehash" => {
            let (rounds, text) = split_word(text);
            match number(rounds) {
                Ok(Some(n)) if (1..=100_000_000).contains(&n) => {
                    let mut hash = xxh3_64(text);
                    for _ in 1..n {
                        hash = xxh3_64(&hash.to_le_bytes());
                    }
                    hash_line(hash)
                }
                Ok(_) => error("rounds out of range"),
                Err(()) => error("invalid number"),
            }
        }
        b"factorial" => match number(text) {
            Ok(Some(n)) if n <= 20 => {
                format!("result: {}\n", (1..=n).product::<u64>()).into_bytes()
            }
            Ok(_) => error("overflow"),
            Err(()) => error("invalid number"),
        },
        b"sleep" => match number(text) {
            Ok(Some(ms)) if ms <= 10_000 => {
                std::thread::sleep(Duration::from_millis(ms));
                format!("result: slept {ms}ms\n").into_bytes()
            }
            Ok(_) => error("sleep out of range"),
            Err(()) => error("invalid number"),
        },
        b"fail" => [b"ERROR: ", text, b"\n"].concat(),
        b"panic" => std::panic::panic_any(String::from_utf8_lossy(text).into_owned()),
        _ => unreachable!("only worker verbs reach the pool"),
    }
}

/// One slot of a connection's answers, in request order.
enum Slot {
    Ready(Vec<u8>),
    Pending(u64),
}

/// Serves one connection until it ends: read what came, answer it in order, repeat.
fn serve(stream: &TcpStream, tasks: &SyncSender<Task>, counters: &Counters, workers: usize) {
    let (answer, answers) = mpsc::channel::<(u64, Vec<u8>)>();
    let mut unread: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut seq = 0u64;
    let mut arrived: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut reader = stream;
    let mut writer = stream;
    loop {
        let (eof, broken) = match reader.read(&mut chunk) {
            Ok(0) => (true, false),
            Ok(n) => {
                unread.extend_from_slice(&chunk[..n]);
                (false, false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => (true, true),
        };
        if broken {
            return;
        }
        // Each line with whether it ended in `\n`: the limit counts a final `\r`, and only a
        // line that ended in `\n` has its `\r` stripped.
        let mut lines: Vec<(Vec<u8>, bool)> = Vec::new();
        while let Some(end) = unread.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = unread.drain(..=end).collect();
            line.pop();
            lines.push((line, true));
        }
        if eof && !unread.is_empty() {
            lines.push((std::mem::take(&mut unread), false));
        }
        let mut too_long = unread.len() > MAX_LINE;
        let mut slots = Vec::new();
        for (mut line, ended) in lines {
            if line.len() > MAX_LINE {
                too_long = true;
                break;
            }
            if ended && line.ends_with(b"\r") {
                line.pop();
            }
            slots.push(answer_or_hand_off(
                line, seq, tasks, &answer, counters, workers,
            ));
            seq += 1;
        }
        for slot in slots {
            let bytes = match slot {
                Slot::Ready(bytes) => bytes,
                Slot::Pending(wanted) => loop {
                    if let Some(bytes) = arrived.remove(&wanted) {
                        break bytes;
                    }
                    match answers.recv() {
                        Ok((seq, bytes)) => {
                            arrived.insert(seq, bytes);
                        }
                        Err(_) => return,
                    }
                },
            };
            if writer.write_all(&bytes).is_err() {
                return;
            }
        }
        if too_long {
            let _ = writer.write_all(b"ERROR: line too long\n");
            return;
        }
        if eof {
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

fn answer_or_hand_off(
    line: Vec<u8>,
    seq: u64,
    tasks: &SyncSender<Task>,
    answer: &Sender<(u64, Vec<u8>)>,
    counters: &Counters,
    workers: usize,
) -> Slot {
    let (verb, _) = split_word(&line);
    match verb {
        b"compute" | b"rehash" | b"factorial" | b"sleep" | b"fail" | b"panic" => {
            let id = counters.next_task.fetch_add(1, Ordering::Relaxed);
            counters.waiting.fetch_add(1, Ordering::Relaxed);
            let task = Task {
                id,
                seq,
                line,
                answer: answer.clone(),
            };
            if tasks.send(task).is_err() {
                counters.waiting.fetch_sub(1, Ordering::Relaxed);
                return Slot::Ready(b"ERROR: shutting down\n".to_vec());
            }
            Slot::Pending(seq)
        }
        b"ping" => Slot::Ready(b"pong\n".to_vec()),
        b"stats" => {
            let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            Slot::Ready(
                format!(
                    "connections={} queue_depth={} workers={workers} busy_workers={} completed={} errors={} panics={} rejected=0\n",
                    get(&counters.open),
                    get(&counters.waiting),
                    get(&counters.running),
                    get(&counters.done),
                    get(&counters.failed),
                    get(&counters.panicked),
                )
                .into_bytes(),
            )
        }
        b"" if line.is_empty() => Slot::Ready(b"ERROR: empty request\n".to_vec()),
        _ => Slot::Ready(b"ERROR: unknown command\n".to_vec()),
    }
}
