//! A batch: the request lines of one connection read in one loop turn, run on a worker as one
//! pool task and brought back as one result.
//!
//! The reasons are those of the W05 server's batches (`handoff_server`'s `batch` module): at
//! pipelining depth 16 one `recv` brings sixteen requests, and a batch pays the task allocation,
//! the pool push, a possible worker wake-up and the results push once for all of them; batches
//! are recycled, so steady traffic allocates nothing per request between the loop and the
//! workers. Every request keeps its own sequence number, so the session still writes each answer
//! in its place, and a panic is caught per request.
//!
//! What differs is the work: every KV request is one [`KvEngine::execute_line`] on the shared
//! engine, whose locks let the `GET`s of two batches run on two workers at once.

use std::ops::Range;
use std::time::Instant;

use eventloop::slab::Key;
use kv_store::{Command, KvEngine, Reply};
use thread_pool::TaskPanic;

use crate::durable::LogCounters;

/// The most requests one batch holds: one read of a client pipelining sixteen deep, while a
/// deeper pipeline is still spread over every worker.
pub(crate) const MAX_BATCH: usize = 16;

/// How many line bytes a recycled batch may keep allocated; a batch that carried a huge `SET`
/// is trimmed back so it does not pin that memory for good.
const MAX_KEPT_LINES: usize = 16 * 1024;

/// One request inside a batch.
#[derive(Debug)]
struct Request {
    seq: u64,
    /// The server-wide task number, for `--log`.
    task_id: u64,
    /// Where its line is in [`Batch::lines`].
    line: Range<usize>,
}

/// Request lines of one connection on their way to a worker, and their replies on the way back.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    key: Option<Key>,
    requests: Vec<Request>,
    /// Every request's line, one after another.
    lines: Vec<u8>,
    /// Filled by [`run`](Self::run): one outcome per request, in the same order.
    replies: Vec<Result<Reply, TaskPanic>>,
}

impl Batch {
    // starter: w09-l04 todo "Do 2: set the key, clear requests, lines and replies, trim lines past MAX_KEPT_LINES"
    /// Readies a recycled (or new) batch for the requests of connection `key`.
    pub(crate) fn start(&mut self, key: Key) {
        self.key = Some(key);
        self.requests.clear();
        self.lines.clear();
        self.replies.clear();
        if self.lines.capacity() > MAX_KEPT_LINES {
            self.lines.shrink_to(MAX_KEPT_LINES);
        }
    }

    /// The connection the batch belongs to.
    pub(crate) fn key(&self) -> Option<Key> {
        self.key
    }

    // starter: w09-l04 todo "Do 2: append the line to lines and a Request with its seq, task id and byte range"
    /// Adds a request, copying its line.
    pub(crate) fn push(&mut self, seq: u64, task_id: u64, line: &[u8]) {
        let start = self.lines.len();
        self.lines.extend_from_slice(line);
        self.requests.push(Request {
            seq,
            task_id,
            line: start..self.lines.len(),
        });
    }

    /// How many requests the batch holds.
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the batch holds no request.
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    // starter: w10-l06 todo "Do 2: one record per SET (SetUntil with its absolute deadline when EX) and DEL, in request order; return the count"
    /// Appends one write-ahead-log record per write of the batch to `out`, in request order,
    /// and returns how many: `SET` (a `SetUntil` with its absolute deadline, `now_unix_ms` plus
    /// its `EX` seconds, when it has one) and `DEL`. Reads and lines that do not parse write
    /// nothing. A batch whose count is 0 changes nothing and may run at once.
    pub(crate) fn encode_records(&self, now_unix_ms: u64, out: &mut Vec<u8>) -> u64 {
        let mut count = 0;
        for request in &self.requests {
            let record = match kv_store::parse(&self.lines[request.line.clone()]) {
                Ok(Command::Set {
                    key,
                    value,
                    expire_secs: None,
                }) => wal::Record::Set { key, value },
                Ok(Command::Set {
                    key,
                    value,
                    expire_secs: Some(secs),
                }) => wal::Record::SetUntil {
                    key,
                    value,
                    deadline_unix_ms: now_unix_ms.saturating_add(secs.saturating_mul(1000)),
                },
                Ok(Command::Del { key }) => wal::Record::Del { key },
                _ => continue,
            };
            wal::encode(&record, out);
            count += 1;
        }
        count
    }

    // starter: w09-l04 todo "Do 3: read the clock once; per request, log if asked, then push TaskPanic::catch of execute_line with it"
    /// Runs every request on `engine`, on a worker. Reads the clock once, as it starts: every
    /// request of the batch is judged for expiry at that one instant. A panic is caught per
    /// request. With `log`, prints `worker <tid> task <id> <verb>` per request. With a durable
    /// store, `log_figures` are its log's counters, added to every `STATS` answer.
    pub(crate) fn run(&mut self, engine: &KvEngine, log: bool, log_figures: Option<&LogCounters>) {
        self.replies.clear();
        // One clock reading for the whole batch: every command of it is judged for expiry at
        // the instant `run` starts (with `--data-dir`, a batch with writes runs once the fsync
        // that covers them is done), as redis-server judges a command at one cached time. A
        // reading costs about as much as a `GET`'s table lookup; BENCHMARKS.md measures what
        // one per command cost a worker at depth 16.
        let now = Instant::now();
        for request in &self.requests {
            let line = &self.lines[request.line.clone()];
            if log {
                let verb = line.split(|&b| b == b' ').next().unwrap_or_default();
                eprintln!(
                    "worker {} task {} {}",
                    eventloop::sys::gettid(),
                    request.task_id,
                    String::from_utf8_lossy(verb)
                );
            }
            self.replies.push(TaskPanic::catch(|| {
                let mut reply = engine.execute_line(line, now);
                if let (Reply::Stats(stats), Some(figures)) = (&mut reply, log_figures) {
                    stats.log = Some(figures.figures());
                }
                reply
            }));
        }
    }

    // starter: w09-l04 todo "Do 3: drain requests and replies together; (seq, the reply or None)"
    /// Takes the replies out, each with its request's sequence number, in request order. A
    /// request without a reply (the batch never ran) counts as a panicked one, so that every
    /// request still gets exactly one answer.
    pub(crate) fn take_replies(&mut self) -> impl Iterator<Item = (u64, Option<Reply>)> {
        let mut replies = self.replies.drain(..);
        self.requests
            .drain(..)
            .map(move |request| (request.seq, replies.next().and_then(Result::ok)))
    }
}

#[cfg(test)]
mod tests;
