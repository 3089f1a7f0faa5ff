//! A KV server written only from the KV section of `course/PROTOCOL.md`, in another shape than
//! the workspace's `kv_server`, for the runner's tests of `grade --week w09 --server`.
//!
//! One thread runs a `poll(2)` loop over the listener, the client sockets and a wake-up socket:
//! it alone accepts, reads, writes and closes client sockets. Each connection's complete lines
//! wait in its queue; while none of its lines is on a worker, the loop hands the queued lines to
//! the pool as one batch, so one connection's requests run in its order. `--workers` threads
//! run batches on one `RwLock<HashMap>` table, log each request, and push the answers back
//! through a mutex-guarded list and a byte on the wake-up socket. Every 100 ms the loop hands an
//! expiry sweep to the pool (never more than one at a time). SIGTERM and SIGINT are blocked and
//! taken by the loop: it stops accepting and reading, answers what it read, closes, joins.
//!
//! It parses requests with its own code, not `kv_store`, so the grader is not checking its own
//! parser. Its only helpers from the workspace are `eventloop::sys`'s signal and `gettid`
//! wrappers.
//!
//! With `--data-dir DIR` it is a durable server of the W10 section of the contract: every `SET`
//! and every `DEL` that deletes is appended to `DIR/kv.log` as one checksummed text line and
//! `fdatasync`ed before it changes the table and is answered (under one lock, so the log's order
//! is the table's); expiry is logged as a wall-clock deadline. It recovers before it listens, on
//! a thread of its own that ends before the workers start: it replays the verified lines, cuts a
//! torn or corrupt tail and says so on stderr. Only that thread and the workers touch `DIR`.
//!
//! The same program is the planted-mistakes fixture of the W09 lessons: `--bug NAME` (before the
//! port) plants one mistake a Common-mistakes row or a protocol rule names; without it, it is
//! honest.
//!
//! | bug | the mistake |
//! |---|---|
//! | `batches-at-once` | hands every line to the pool as it is read, one task each: a connection's `GET` overtakes its `SET` |
//! | `completion-order` | the same, and writes each answer as its task comes back, out of request order |
//! | `join-first` | at SIGTERM waits for the pool before draining the loop: it never exits |
//! | `stats-on-loop` | answers `STATS` and malformed lines on the loop |
//! | `worker-writes-socket` | a worker writes its batch's answers to the client socket itself |
//! | `no-lock` | a `SET` copies the table, changes the copy and stores it back: concurrent writes are lost |
//! | `no-expiry` | never expires a key |
//! | `no-sweep` | expires keys only when they are read |
//! | `sweep-thread` | sweeps on a helper thread of its own |
//! | `close-on-error` | closes the connection after any `ERROR` |
//! | `uncounted-too-long` | does not count `line too long` in `errors` |
//! | `loop-counts` | counts `gets`/`sets`/`dels`/`scans` on the loop by verb, malformed lines included |
//! | `no-drain` | exits at SIGTERM at once |
//! | `keep-cr` | keeps the `\r` of a CRLF line ending |
//! | `off-by-one` | takes a line of exactly 65,536 bytes as too long |
//! | `drop-final-line` | ignores a last line without `\n` at EOF |
//! | `no-del-records` | (`--data-dir`) does not log a `DEL`: the deleted value comes back after a restart |
//! | `log-on-loop` | (`--data-dir`) the loop itself fsyncs the log on its sweep tick |
//!
//! Usage: `foreign_kv_server [--bug NAME] PORT [--workers N] [--queue N] [--log] [--data-dir DIR]`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The longest request line, without its `\n`.
const MAX_LINE: usize = 65_536;
/// The longest key.
const MAX_KEY: usize = 250;
/// The longest value.
const MAX_VALUE: usize = 64_512;
/// The most keys a `KEYS` answer lists.
const MAX_KEYS: usize = 1024;
/// The longest expiry, in seconds (ten years).
const MAX_EXPIRY: u64 = 315_360_000;
/// How often the loop hands a sweep to the pool.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// The planted mistake, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    BatchesAtOnce,
    CompletionOrder,
    JoinFirst,
    StatsOnLoop,
    WorkerWritesSocket,
    NoLock,
    NoExpiry,
    NoSweep,
    SweepThread,
    CloseOnError,
    UncountedTooLong,
    LoopCounts,
    NoDrain,
    KeepCr,
    OffByOne,
    DropFinalLine,
    NoDelRecords,
    LogOnLoop,
}

impl Bug {
    fn parse(name: &str) -> Option<Bug> {
        Some(match name {
            "none" => Bug::None,
            "batches-at-once" => Bug::BatchesAtOnce,
            "completion-order" => Bug::CompletionOrder,
            "join-first" => Bug::JoinFirst,
            "stats-on-loop" => Bug::StatsOnLoop,
            "worker-writes-socket" => Bug::WorkerWritesSocket,
            "no-lock" => Bug::NoLock,
            "no-expiry" => Bug::NoExpiry,
            "no-sweep" => Bug::NoSweep,
            "sweep-thread" => Bug::SweepThread,
            "close-on-error" => Bug::CloseOnError,
            "uncounted-too-long" => Bug::UncountedTooLong,
            "loop-counts" => Bug::LoopCounts,
            "no-drain" => Bug::NoDrain,
            "keep-cr" => Bug::KeepCr,
            "off-by-one" => Bug::OffByOne,
            "drop-final-line" => Bug::DropFinalLine,
            "no-del-records" => Bug::NoDelRecords,
            "log-on-loop" => Bug::LogOnLoop,
            _ => return None,
        })
    }
}

/// The command line.
struct Config {
    port: u16,
    workers: usize,
    queue: usize,
    log: bool,
    data_dir: Option<std::path::PathBuf>,
    bug: Bug,
}

const USAGE: &str = "usage: foreign_kv_server [--bug NAME] PORT [--workers N] [--queue N] [--log] \
                     [--data-dir DIR]";

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut words = args.iter().peekable();
    let mut bug = Bug::None;
    if words.peek().is_some_and(|w| *w == "--bug") {
        words.next();
        let name = words.next().ok_or("--bug needs a name")?;
        bug = Bug::parse(name).ok_or(format!("unknown bug `{name}`"))?;
    }
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
        data_dir: None,
        bug,
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
            "--data-dir" => {
                let dir = words.next().ok_or("--data-dir needs a folder")?;
                config.data_dir = Some(dir.into());
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(config)
}

/// One latency histogram: power-of-two buckets of nanoseconds.
struct Latency([AtomicU64; 64]);

impl Latency {
    fn new() -> Self {
        Latency(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn record(&self, elapsed: Duration) {
        let ns = elapsed.as_nanos().max(1) as u64;
        let bucket = 64 - ns.leading_zeros() as usize;
        self.0[bucket.min(63)].fetch_add(1, Ordering::Relaxed);
    }

    /// The upper bound of the bucket holding the `per_mille`-th value (0 before any).
    fn percentile(&self, per_mille: u64) -> u64 {
        let counts: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = (total * per_mille).div_ceil(1000).max(1);
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return 1u64 << bucket.min(63);
            }
        }
        u64::MAX
    }
}

/// A stored value.
#[derive(Clone)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

/// The table and its counters.
struct Store {
    table: RwLock<HashMap<Vec<u8>, Entry>>,
    gets: AtomicU64,
    sets: AtomicU64,
    dels: AtomicU64,
    scans: AtomicU64,
    errors: AtomicU64,
    expired: AtomicU64,
    get_latency: Latency,
    set_latency: Latency,
    del_latency: Latency,
    /// The log of a durable server (`--data-dir`).
    log: Option<Mutex<Log>>,
    bug: Bug,
}

/// The append-only log of a durable server and its figures.
struct Log {
    file: std::fs::File,
    records: u64,
    bytes: u64,
    fsyncs: u64,
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One log line: a checksum of the rest, then the rest (`S <deadline ms> <key> <value>` or
/// `D <key>`), then `\n`. Keys hold no space and values no `\n`, so a line is a record.
fn log_line(body: &[u8]) -> Vec<u8> {
    let mut line = format!("{:016x} ", xxhash_rust::xxh3::xxh3_64(body)).into_bytes();
    line.extend_from_slice(body);
    line.push(b'\n');
    line
}

/// What recovery found in the data folder.
struct Recovered {
    file: std::fs::File,
    table: HashMap<Vec<u8>, Entry>,
    records: usize,
    dropped: u64,
}

/// Opens `dir/kv.log`, replays every verified line in order, and cuts the file after the last
/// one (a torn or corrupt tail is dropped).
fn recover(dir: &std::path::Path) -> std::io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("kv.log");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (now_ms, now) = (unix_ms(), Instant::now());
    let mut table = HashMap::new();
    let (mut good, mut records) = (0, 0);
    while let Some(end) = bytes[good..].iter().position(|&b| b == b'\n') {
        let line = &bytes[good..good + end];
        let Some((sum, body)) = line.split_at_checked(16) else {
            break;
        };
        let Some(body) = body.strip_prefix(b" ") else {
            break;
        };
        if format!("{:016x}", xxhash_rust::xxh3::xxh3_64(body)).as_bytes() != sum {
            break;
        }
        match split_space(body) {
            (b"S", Some(rest)) => {
                let (deadline, rest) = split_space(rest);
                let (key, value) = split_space(rest.unwrap_or_default());
                let deadline: u64 = std::str::from_utf8(deadline)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                if deadline != 0 && deadline <= now_ms {
                    table.remove(key);
                } else {
                    let expires =
                        (deadline != 0).then(|| now + Duration::from_millis(deadline - now_ms));
                    let value = value.unwrap_or_default().to_vec();
                    table.insert(key.to_vec(), Entry { value, expires });
                }
            }
            (b"D", Some(key)) => {
                table.remove(key);
            }
            _ => break,
        }
        good += end + 1;
        records += 1;
    }
    let dropped = (bytes.len() - good) as u64;
    if dropped > 0 {
        file.set_len(good as u64)?;
        file.sync_all()?;
    }
    Ok(Recovered {
        file,
        table,
        records,
        dropped,
    })
}

fn error(reason: &str) -> Vec<u8> {
    format!("ERROR {reason}\n").into_bytes()
}

/// The bytes before the first space and, when there is a space, the bytes after it.
fn split_space(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    match bytes.iter().position(|&b| b == b' ') {
        Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
        None => (bytes, None),
    }
}

/// A request that did not parse: its reason.
type Malformed = &'static str;

/// The key that starts `rest`, and what follows it.
fn leading_key(rest: Option<&[u8]>) -> Result<(&[u8], Option<&[u8]>), Malformed> {
    let (key, after) = split_space(rest.ok_or("missing key")?);
    if key.is_empty() {
        return Err("missing key");
    }
    if key.len() > MAX_KEY {
        return Err("key too long");
    }
    Ok((key, after))
}

fn only_key(rest: Option<&[u8]>) -> Result<&[u8], Malformed> {
    match leading_key(rest)? {
        (key, None) => Ok(key),
        (_, Some(_)) => Err("too many arguments"),
    }
}

/// A `SET`'s value and expiry: a trailing ` EX <digits>` is the expiry.
fn value_and_expiry(value: &[u8]) -> Result<(&[u8], Option<u64>), Malformed> {
    let digits = value
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let before = &value[..value.len() - digits];
    if digits == 0 || !before.ends_with(b" EX ") {
        return Ok((value, None));
    }
    let seconds = std::str::from_utf8(&value[value.len() - digits..])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| (1..=MAX_EXPIRY).contains(s))
        .ok_or("expiry out of range")?;
    Ok((&before[..before.len() - 4], Some(seconds)))
}

impl Store {
    fn new(bug: Bug, recovered: Option<Recovered>) -> Self {
        let (table, log) = match recovered {
            Some(r) => (
                r.table,
                Some(Mutex::new(Log {
                    file: r.file,
                    records: 0,
                    bytes: 0,
                    fsyncs: 0,
                })),
            ),
            None => (HashMap::new(), None),
        };
        Store {
            table: RwLock::new(table),
            log,
            gets: AtomicU64::new(0),
            sets: AtomicU64::new(0),
            dels: AtomicU64::new(0),
            scans: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            get_latency: Latency::new(),
            set_latency: Latency::new(),
            del_latency: Latency::new(),
            bug,
        }
    }

    fn is_expired(&self, entry: &Entry, now: Instant) -> bool {
        self.bug != Bug::NoExpiry && entry.expires.is_some_and(|at| at <= now)
    }

    /// Appends `body` to the log, if there is one, and waits for `fdatasync`. The caller holds
    /// the log's lock (`log`) until it has changed the table too, so the log's order is the
    /// table's. A failed write or fsync is never retried: the server exits with status 1.
    fn append(log: Option<&mut Log>, body: &[u8]) {
        let Some(log) = log else { return };
        let line = log_line(body);
        let result = log
            .file
            .write_all(&line)
            .and_then(|()| log.file.sync_data());
        if let Err(error) = result {
            eprintln!("foreign_kv_server: writing the log failed: {error}");
            std::process::exit(1);
        }
        log.records += 1;
        log.bytes += line.len() as u64;
        log.fsyncs += 1;
    }

    /// The log's lock, when the server has a log.
    fn lock_log(&self) -> Option<std::sync::MutexGuard<'_, Log>> {
        self.log
            .as_ref()
            .map(|log| log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Removes `key` if it has expired; whether it did.
    fn expire(&self, key: &[u8], now: Instant) -> bool {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if table.get(key).is_some_and(|e| self.is_expired(e, now)) {
            table.remove(key);
            self.expired.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Removes every expired entry.
    fn sweep(&self) {
        if matches!(self.bug, Bug::NoExpiry | Bug::NoSweep) {
            return;
        }
        let now = Instant::now();
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let before = table.len();
        table.retain(|_, entry| !self.is_expired(entry, now));
        self.expired
            .fetch_add((before - table.len()) as u64, Ordering::Relaxed);
    }

    /// Runs one request line and returns its answer (with its `\n`).
    fn execute(&self, line: &[u8]) -> Vec<u8> {
        let answer = self.run(line).unwrap_or_else(error);
        if answer.starts_with(b"ERROR ") {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    fn run(&self, line: &[u8]) -> Result<Vec<u8>, Malformed> {
        if line.is_empty() {
            return Err("empty command");
        }
        let counted = |counter: &AtomicU64| {
            if self.bug != Bug::LoopCounts {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        };
        let (verb, rest) = split_space(line);
        let started = Instant::now();
        match verb {
            b"GET" => {
                let key = only_key(rest)?;
                self.expire(key, started);
                let table = self.table.read().unwrap_or_else(|e| e.into_inner());
                let answer = match table.get(key) {
                    Some(entry) => [b"VALUE ", &entry.value[..], b"\n"].concat(),
                    None => b"NOT_FOUND\n".to_vec(),
                };
                drop(table);
                counted(&self.gets);
                self.get_latency.record(started.elapsed());
                Ok(answer)
            }
            b"DEL" => {
                let key = only_key(rest)?;
                self.expire(key, started);
                let mut log = self.lock_log();
                let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
                let removed = table.remove(key).is_some();
                if removed && self.bug != Bug::NoDelRecords {
                    Self::append(log.as_deref_mut(), &[b"D ", key].concat());
                }
                drop(table);
                drop(log);
                counted(&self.dels);
                self.del_latency.record(started.elapsed());
                Ok(if removed {
                    b"DELETED\n".to_vec()
                } else {
                    b"NOT_FOUND\n".to_vec()
                })
            }
            b"SET" => {
                let (key, value) = leading_key(rest)?;
                let (value, seconds) = value_and_expiry(value.ok_or("missing value")?)?;
                if value.len() > MAX_VALUE {
                    return Err("value too long");
                }
                let entry = Entry {
                    value: value.to_vec(),
                    expires: seconds.map(|s| started + Duration::from_secs(s)),
                };
                let mut log = self.lock_log();
                if log.is_some() {
                    let deadline = seconds.map_or(0, |s| unix_ms() + s * 1000);
                    let body = [format!("S {deadline} ").as_bytes(), key, b" ", value].concat();
                    Self::append(log.as_deref_mut(), &body);
                }
                if self.bug == Bug::NoLock {
                    // Read, change a copy, write back: two workers doing this at once lose one
                    // of the writes, as an unlocked table would.
                    let mut copy = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
                    copy.insert(key.to_vec(), entry);
                    *self.table.write().unwrap_or_else(|e| e.into_inner()) = copy;
                } else {
                    self.table
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.to_vec(), entry);
                }
                drop(log);
                counted(&self.sets);
                self.set_latency.record(started.elapsed());
                Ok(b"OK\n".to_vec())
            }
            b"KEYS" => {
                let prefix = rest.unwrap_or_default();
                if prefix.contains(&b' ') {
                    return Err("too many arguments");
                }
                if prefix.len() > MAX_KEY {
                    return Err("key too long");
                }
                counted(&self.scans);
                let expired: Vec<Vec<u8>> = {
                    let table = self.table.read().unwrap_or_else(|e| e.into_inner());
                    table
                        .iter()
                        .filter(|(key, entry)| {
                            key.starts_with(prefix) && self.is_expired(entry, started)
                        })
                        .map(|(key, _)| key.clone())
                        .collect()
                };
                for key in expired {
                    self.expire(&key, started);
                }
                let table = self.table.read().unwrap_or_else(|e| e.into_inner());
                let mut keys: Vec<&Vec<u8>> =
                    table.keys().filter(|key| key.starts_with(prefix)).collect();
                if keys.len() > MAX_KEYS {
                    return Ok(error("too many keys"));
                }
                keys.sort();
                let mut answer = format!("KEYS {}", keys.len()).into_bytes();
                for key in keys {
                    answer.push(b' ');
                    answer.extend_from_slice(key);
                }
                answer.push(b'\n');
                Ok(answer)
            }
            b"STATS" => match rest {
                None | Some(b"") => Ok(self.stats()),
                Some(_) => Err("too many arguments"),
            },
            _ => Err("unknown command"),
        }
    }

    fn stats(&self) -> Vec<u8> {
        let (keys, bytes) = {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            let bytes: usize = table.iter().map(|(k, e)| k.len() + e.value.len()).sum();
            (table.len(), bytes)
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut line = format!(
            "gets={} sets={} dels={} scans={} errors={} keys={keys} bytes={bytes} expired={}",
            load(&self.gets),
            load(&self.sets),
            load(&self.dels),
            load(&self.scans),
            load(&self.errors),
            load(&self.expired)
        );
        for (name, latency) in [
            ("get", &self.get_latency),
            ("set", &self.set_latency),
            ("del", &self.del_latency),
        ] {
            for (suffix, per_mille) in [("p50", 500), ("p99", 990), ("p999", 999)] {
                line.push_str(&format!(
                    " {name}_{suffix}_ns={}",
                    latency.percentile(per_mille)
                ));
            }
        }
        if let Some(log) = self.lock_log() {
            let per_fsync = if log.fsyncs == 0 {
                0.0
            } else {
                log.records as f64 / log.fsyncs as f64
            };
            line.push_str(&format!(
                " log_records={} log_bytes={} fsyncs={} records_per_fsync={per_fsync:.2} \
                 checkpoints=0 last_checkpoint_ms=0",
                log.records, log.bytes, log.fsyncs
            ));
        }
        line.push('\n');
        line.into_bytes()
    }
}

/// Work for the pool.
enum Job {
    /// A connection's lines, in its order.
    Batch {
        conn: u64,
        /// The batch's place among its connection's batches.
        seq: u64,
        lines: Vec<Vec<u8>>,
        /// Only for the `worker-writes-socket` bug.
        socket: Option<Arc<TcpStream>>,
    },
    /// One expiry sweep.
    Sweep,
}

/// What the pool gives back to the loop.
enum Done {
    /// A batch's answers (empty when the worker wrote them itself) and its number of lines.
    Batch {
        conn: u64,
        seq: u64,
        lines: usize,
        answers: Vec<u8>,
    },
    /// The sweep finished.
    Sweep,
}

/// Where workers leave results, and the socket that wakes the loop.
struct Results {
    done: Mutex<Vec<Done>>,
    wake: UnixStream,
}

impl Results {
    fn push(&self, done: Done) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(done);
        // A full wake-up socket already holds a wake-up.
        let _ = (&self.wake).write(&[1]);
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, store: &Store, results: &Results, log: bool) {
    let tid = eventloop::sys::gettid();
    static NEXT_TASK: AtomicU64 = AtomicU64::new(1);
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            Err(_) => return,
            Ok(Job::Sweep) => {
                store.sweep();
                results.push(Done::Sweep);
            }
            Ok(Job::Batch {
                conn,
                seq,
                lines,
                socket,
            }) => {
                let mut answers = Vec::new();
                for line in &lines {
                    if log {
                        let id = NEXT_TASK.fetch_add(1, Ordering::Relaxed);
                        let verb = split_space(line).0;
                        eprintln!("worker {tid} task {id} {}", String::from_utf8_lossy(verb));
                    }
                    answers.extend(store.execute(line));
                }
                if let Some(socket) = socket {
                    let _ = (&*socket).write_all(&answers);
                    answers.clear();
                }
                results.push(Done::Batch {
                    conn,
                    seq,
                    lines: lines.len(),
                    answers,
                });
            }
        }
    }
}

/// A queued line: a request, or the place of a line that was too long.
enum Queued {
    Line(Vec<u8>),
    TooLong,
}

/// One client connection, owned by the loop.
struct Conn {
    stream: Arc<TcpStream>,
    input: Vec<u8>,
    queued: VecDeque<Queued>,
    /// Lines of this connection on a worker.
    running: usize,
    /// The next batch's number, and the number of the batch whose answers go out next.
    next_batch: u64,
    next_out: u64,
    /// Answers of batches that finished before an earlier one (only when several run at once).
    early: BTreeMap<u64, Vec<u8>>,
    output: Vec<u8>,
    /// No more reading: EOF, a line too long, or the server's stop.
    input_done: bool,
    /// A line was too long: close once its answer is out.
    close_after_output: bool,
}

impl Conn {
    /// Whether everything owed is sent and nothing more will come.
    fn finished(&self) -> bool {
        self.input_done && self.queued.is_empty() && self.running == 0 && self.output.is_empty()
    }
}

/// What the loop shares with itself across a turn.
struct Loop {
    config: Config,
    store: Arc<Store>,
    jobs: Sender<Job>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    /// Lines queued or running, across connections (the `--queue` bound).
    pending: usize,
}

impl Loop {
    /// Splits the connection's input into queued lines.
    fn frame(&mut self, id: u64, eof: bool) {
        let bug = self.config.bug;
        let limit = if bug == Bug::OffByOne {
            MAX_LINE - 1
        } else {
            MAX_LINE
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        loop {
            if conn.close_after_output {
                conn.input.clear();
                return;
            }
            let Some(end) = conn.input.iter().position(|&b| b == b'\n') else {
                break;
            };
            let mut line: Vec<u8> = conn.input.drain(..=end).collect();
            line.pop();
            // The limit counts a `\r` before the `\n`.
            let too_long = line.len() > limit;
            if line.last() == Some(&b'\r') && bug != Bug::KeepCr {
                line.pop();
            }
            if too_long {
                conn.queued.push_back(Queued::TooLong);
                conn.close_after_output = true;
                conn.input_done = true;
            } else {
                conn.queued.push_back(Queued::Line(line));
                self.pending += 1;
            }
        }
        if conn.input.len() > limit {
            conn.input.clear();
            conn.queued.push_back(Queued::TooLong);
            conn.close_after_output = true;
            conn.input_done = true;
        } else if eof {
            conn.input_done = true;
            if !conn.input.is_empty() && bug != Bug::DropFinalLine {
                let mut line = std::mem::take(&mut conn.input);
                if line.last() == Some(&b'\r') && bug != Bug::KeepCr {
                    line.pop();
                }
                conn.queued.push_back(Queued::Line(line));
                self.pending += 1;
            }
        }
    }

    /// Hands a connection's queued lines to the pool when none of its lines is running;
    /// answers a too-long line in its place.
    fn launch(&mut self, id: u64) {
        let bug = self.config.bug;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let at_once = matches!(bug, Bug::BatchesAtOnce | Bug::CompletionOrder);
        if conn.running > 0 && !at_once {
            return;
        }
        while let Some(front) = conn.queued.front() {
            match front {
                Queued::TooLong => {
                    if conn.running > 0 {
                        return;
                    }
                    conn.queued.pop_front();
                    conn.output.extend_from_slice(b"ERROR line too long\n");
                    if bug != Bug::UncountedTooLong {
                        self.store.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.queued.clear();
                    return;
                }
                Queued::Line(line) => {
                    if matches!(bug, Bug::StatsOnLoop | Bug::LoopCounts) && conn.running == 0 {
                        let (verb, rest) = split_space(line);
                        if bug == Bug::LoopCounts {
                            let counter = match verb {
                                b"GET" => Some(&self.store.gets),
                                b"SET" => Some(&self.store.sets),
                                b"DEL" => Some(&self.store.dels),
                                b"KEYS" => Some(&self.store.scans),
                                _ => None,
                            };
                            if let Some(counter) = counter {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if !matches!(verb, b"GET" | b"SET" | b"DEL" | b"KEYS")
                            || rest.is_none() && verb != b"KEYS"
                        {
                            // The cheap lines (STATS, unknown verbs, a verb without its
                            // arguments), answered on the loop.
                            let answer = self.store.execute(line);
                            conn.output.extend(answer);
                            conn.queued.pop_front();
                            self.pending -= 1;
                            continue;
                        }
                    }
                }
            }
            let mut lines = Vec::new();
            while let Some(Queued::Line(_)) = conn.queued.front() {
                let Some(Queued::Line(line)) = conn.queued.pop_front() else {
                    break;
                };
                lines.push(line);
                if at_once || matches!(bug, Bug::StatsOnLoop | Bug::LoopCounts) {
                    break;
                }
            }
            conn.running += lines.len();
            let socket = (bug == Bug::WorkerWritesSocket).then(|| conn.stream.clone());
            let seq = conn.next_batch;
            conn.next_batch += 1;
            let _ = self.jobs.send(Job::Batch {
                conn: id,
                seq,
                lines,
                socket,
            });
            if !at_once {
                return;
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_args(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("foreign_kv_server: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let signals = [libc::SIGTERM, libc::SIGINT];
    eventloop::sys::block_signals(&signals).expect("block SIGTERM and SIGINT");

    // Recovery comes before the listening line, on a thread that ends before the workers start:
    // the loop's thread never touches the data folder.
    let recovered = config.data_dir.clone().map(|dir| {
        let recovered = std::thread::spawn(move || recover(&dir))
            .join()
            .expect("the recovery thread");
        match recovered {
            Ok(recovered) => {
                eprintln!(
                    "foreign_kv_server: recovered {} records, dropped {} bytes of a damaged tail",
                    recovered.records, recovered.dropped
                );
                recovered
            }
            Err(error) => {
                eprintln!("foreign_kv_server: cannot recover the data folder: {error}");
                std::process::exit(1);
            }
        }
    });
    // Only for the `log-on-loop` bug: the loop's own handle on the log.
    let loop_log = match (&recovered, config.bug) {
        (Some(recovered), Bug::LogOnLoop) => recovered.file.try_clone().ok(),
        _ => None,
    };

    let listener = TcpListener::bind(("127.0.0.1", config.port)).expect("bind");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    println!(
        "listening on 127.0.0.1:{}",
        listener.local_addr().expect("address").port()
    );
    let _ = std::io::stdout().flush();
    if config.log {
        eprintln!("main {}", eventloop::sys::gettid());
    }

    let (wake_tx, wake_rx) = UnixStream::pair().expect("wake-up socket");
    wake_tx.set_nonblocking(true).expect("non-blocking");
    wake_rx.set_nonblocking(true).expect("non-blocking");
    let results = Arc::new(Results {
        done: Mutex::new(Vec::new()),
        wake: wake_tx,
    });
    let store = Arc::new(Store::new(config.bug, recovered));
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let workers: Vec<_> = (0..config.workers)
        .map(|_| {
            let (queue, store, results, log) =
                (queue.clone(), store.clone(), results.clone(), config.log);
            std::thread::spawn(move || worker(&queue, &store, &results, log))
        })
        .collect();
    if config.bug == Bug::SweepThread {
        let store = store.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(SWEEP_EVERY);
                store.sweep();
            }
        });
    }

    let mut state = Loop {
        config,
        store,
        jobs,
        conns: HashMap::new(),
        next_conn: 0,
        pending: 0,
    };
    let mut listener = Some(listener);
    let mut sweeping = false;
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let stopping = listener.is_none();
        if stopping && state.conns.is_empty() {
            break;
        }
        // Build the poll set: the wake-up socket, the listener, then each connection.
        let reading = state.pending < state.config.queue;
        let mut fds = vec![libc::pollfd {
            fd: wake_rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(listener) = &listener {
            fds.push(libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ids: Vec<u64> = state.conns.keys().copied().collect();
        for id in &ids {
            let conn = &state.conns[id];
            let mut events = 0;
            if reading && !conn.input_done {
                events |= libc::POLLIN;
            }
            if !conn.output.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd {
                fd: conn.stream.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structs that lives
        // across the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        if ready < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            panic!("poll: {}", std::io::Error::last_os_error());
        }

        if let Ok(Some(_)) = test_support::sys::take_pending_signal(&signals) {
            if state.config.bug == Bug::NoDrain {
                std::process::exit(0);
            }
            if state.config.bug == Bug::JoinFirst {
                // Waiting for workers that wait for work: forever.
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            listener = None;
            for conn in state.conns.values_mut() {
                conn.input_done = true;
            }
        }

        // Results from the pool.
        while (&wake_rx).read(&mut buf).is_ok_and(|n| n > 0) {}
        let done = std::mem::take(&mut *results.done.lock().unwrap_or_else(|e| e.into_inner()));
        for done in done {
            match done {
                Done::Sweep => sweeping = false,
                Done::Batch {
                    conn,
                    seq,
                    lines,
                    answers,
                } => {
                    if let Some(c) = state.conns.get_mut(&conn) {
                        c.running -= lines;
                        state.pending -= lines;
                        let mut answers = answers;
                        if state.config.bug == Bug::CloseOnError {
                            // Everything after the first error is dropped, and the connection
                            // closes.
                            let mut at = 0;
                            for line in answers.split_inclusive(|&b| b == b'\n') {
                                at += line.len();
                                if line.starts_with(b"ERROR") {
                                    answers.truncate(at);
                                    c.close_after_output = true;
                                    c.input_done = true;
                                    c.queued.clear();
                                    break;
                                }
                            }
                        }
                        // Answers go out in batch order.
                        if state.config.bug == Bug::CompletionOrder {
                            c.next_out = seq;
                        }
                        c.early.insert(seq, answers);
                        while let Some(answers) = c.early.remove(&c.next_out) {
                            c.output.extend(answers);
                            c.next_out += 1;
                        }
                    }
                }
            }
        }

        // New connections.
        if let Some(listener) = &listener {
            // Every pending connection (an error, `WouldBlock` included, ends the round).
            while let Ok((stream, _)) = listener.accept() {
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                state.next_conn += 1;
                state.conns.insert(
                    state.next_conn,
                    Conn {
                        stream: Arc::new(stream),
                        input: Vec::new(),
                        queued: VecDeque::new(),
                        running: 0,
                        next_batch: 0,
                        next_out: 0,
                        early: BTreeMap::new(),
                        output: Vec::new(),
                        input_done: false,
                        close_after_output: false,
                    },
                );
            }
        }

        // Reads, launches, writes, closes.
        for id in ids {
            let Some(conn) = state.conns.get_mut(&id) else {
                continue;
            };
            let mut eof = false;
            let mut broken = false;
            if reading && !conn.input_done {
                loop {
                    match (&*conn.stream).read(&mut buf) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => {
                            conn.input.extend_from_slice(&buf[..n]);
                            if conn.input.len() > MAX_LINE * 2 {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
            }
            if broken {
                let conn = state.conns.remove(&id).expect("the connection");
                state.pending -= conn
                    .queued
                    .iter()
                    .filter(|q| matches!(q, Queued::Line(_)))
                    .count();
                // Lines still on a worker come back to a connection that is gone.
                state.pending -= conn.running;
                continue;
            }
            state.frame(id, eof);
            state.launch(id);
            let conn = state.conns.get_mut(&id).expect("the connection");
            while !conn.output.is_empty() {
                match (&*conn.stream).write(&conn.output) {
                    Ok(n) => {
                        conn.output.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if conn.finished()
                || (conn.close_after_output && conn.output.is_empty() && conn.running == 0)
            {
                let _ = conn.stream.shutdown(Shutdown::Write);
                if conn.close_after_output {
                    // Discard what the client still sends, briefly, so the close sends no reset.
                    let _ = conn.stream.set_nonblocking(false);
                    let _ = conn
                        .stream
                        .set_read_timeout(Some(Duration::from_millis(100)));
                    let until = Instant::now() + Duration::from_millis(500);
                    while Instant::now() < until
                        && (&*conn.stream).read(&mut buf).is_ok_and(|n| n > 0)
                    {}
                }
                let conn = state.conns.remove(&id).expect("the connection");
                state.pending -= conn
                    .queued
                    .iter()
                    .filter(|q| matches!(q, Queued::Line(_)))
                    .count();
            }
        }

        // The sweep, on the pool, one at a time.
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + SWEEP_EVERY;
            if let Some(file) = &loop_log {
                let _ = file.sync_data();
            }
            if !sweeping && state.config.bug != Bug::SweepThread {
                sweeping = state.jobs.send(Job::Sweep).is_ok();
            }
        }
    }
    drop(state);
    for handle in workers {
        let _ = handle.join();
    }
}
