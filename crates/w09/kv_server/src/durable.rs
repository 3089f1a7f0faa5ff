//! `--data-dir`: the store made durable on the handoff. Every `SET` and `DEL` is a record in a
//! write-ahead log (the `wal` crate), appended and fsynced on a pool thread before its answer
//! leaves; the event loop never touches the disk.
//!
//! **A batch's road.** The loop hands a connection's batch to the pool as before
//! ([`Durable::run_batch`]). A batch of reads only runs at once: the engine holds durable
//! writes only, so a `GET` can never see a write that a crash could still take back. A batch
//! with a write encodes one record per write and joins the *commit queue*; it is executed (all
//! its commands, in order, reads included) and delivered to the loop only after the fsync that
//! covers its records. A connection's next batch leaves only when this one came back, so each
//! client still reads its own writes, and its answers stay in request order.
//!
//! **Group commit.** The commit queue has at most one *flusher*: the worker that found no
//! flush running takes every record queued so far, writes them with one `write` and makes them
//! durable with one `fdatasync`, applies their batches in log order, delivers them, and goes
//! round again while records arrived meanwhile. Other workers only add to the queue and return
//! to the pool, so one fsync covers every record that arrived while the previous one ran. With
//! `--fsync per-record` every record pays its own fsync instead: the benchmark's baseline.
//!
//! **Expiry.** `SET … EX n` is logged with its absolute wall-clock deadline (a `SetUntil`
//! record); a key that expires writes nothing. Replay after a restart drops a key whose
//! deadline has passed and gives the others the time they have left.
//!
//! **Checkpoints.** The loop's sweep timer also checks the log: after `--checkpoint-every`
//! seconds with new records, or once the log holds `--checkpoint-bytes` since the last
//! checkpoint, it hands one checkpoint to the pool. Under the log's lock (so no write is applied
//! meanwhile) the checkpoint starts a new log segment and copies the live entries; then,
//! without the lock, it writes them as a checksummed snapshot (temporary file, fsync, rename,
//! directory fsync) and deletes the segments it covers.
//!
//! **Failure.** A failed `write` or `fsync` of the log is never retried: after a failed fsync
//! the kernel may have dropped the dirty pages and cleared the error, so a retry that succeeds
//! proves nothing. The server answers none of the records it held, reports one line and exits
//! with status 1; a restart recovers what the disk really has. A failed checkpoint is reported
//! and left behind: the log still holds every record, and the next tick tries again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kv_store::{KvEngine, LogFigures};
use wal::{CheckpointStep, LogPosition, Record, Recovered, Wal};

use crate::batch::Batch;
use handoff_server::io_loop::Results;

/// When a log record reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum FsyncMode {
    /// One fsync covers every record queued while the previous one ran.
    #[default]
    Group,
    /// One fsync per record (the benchmark's baseline for what group commit buys).
    PerRecord,
}

/// When the log is checkpointed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointPolicy {
    /// After this long with new records; `None`: never on time.
    pub(crate) every: Option<Duration>,
    /// Once the log holds this many bytes since the last checkpoint; `None`: never on size.
    pub(crate) bytes: Option<u64>,
}

/// A place where a test makes the server die as `kill -9` would (`KV_SERVER_FAILPOINT`), to
/// prove that a crash at that step loses nothing acknowledged; or, for `slow-log-sync`, stall,
/// to make the window between a write's arrival and its fsync wide enough to observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failpoint {
    /// The checkpoint's temporary file is written but not fsynced.
    CheckpointBeforeSync,
    /// The temporary file is fsynced, not yet renamed.
    CheckpointBeforeRename,
    /// Renamed, but the directory is not fsynced yet.
    CheckpointAfterRename,
    /// The directory is fsynced; the covered segments are not deleted yet.
    CheckpointBeforeCleanup,
    /// A group of records is fsynced but not yet applied or answered.
    AfterLogSync,
    /// Not a crash: every hold of the log's lock (a group's fsync, a checkpoint's rotate) first
    /// waits [`SLOW_SYNC`], as a slow disk would.
    SlowLogSync,
}

/// How long `slow-log-sync` stalls each log fsync.
pub(crate) const SLOW_SYNC: Duration = Duration::from_millis(400);

impl Failpoint {
    /// Every failpoint with its name, as `KV_SERVER_FAILPOINT` spells it.
    pub(crate) const ALL: [(Failpoint, &'static str); 6] = [
        (Failpoint::CheckpointBeforeSync, "checkpoint-before-sync"),
        (
            Failpoint::CheckpointBeforeRename,
            "checkpoint-before-rename",
        ),
        (Failpoint::CheckpointAfterRename, "checkpoint-after-rename"),
        (
            Failpoint::CheckpointBeforeCleanup,
            "checkpoint-before-cleanup",
        ),
        (Failpoint::AfterLogSync, "after-log-sync"),
        (Failpoint::SlowLogSync, "slow-log-sync"),
    ];

    /// The failpoint `name` names; the error lists the names there are.
    pub(crate) fn parse(name: &str) -> Result<Failpoint, String> {
        Self::ALL
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(point, _)| *point)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, known)| *known).collect();
                format!("unknown failpoint `{name}` (known: {})", names.join(", "))
            })
    }

    /// The failpoint a checkpoint step reaches right after it finished.
    fn after_step(step: CheckpointStep) -> Failpoint {
        match step {
            CheckpointStep::TempWritten => Failpoint::CheckpointBeforeSync,
            CheckpointStep::TempSynced => Failpoint::CheckpointBeforeRename,
            CheckpointStep::Renamed => Failpoint::CheckpointAfterRename,
            CheckpointStep::DirSynced => Failpoint::CheckpointBeforeCleanup,
        }
    }
}

/// `--data-dir` and the flags that go with it.
#[derive(Debug, Clone)]
pub(crate) struct Durability {
    /// The log's folder.
    pub(crate) dir: PathBuf,
    /// When a record reaches the disk.
    pub(crate) fsync: FsyncMode,
    /// When the log is checkpointed.
    pub(crate) checkpoints: CheckpointPolicy,
    /// Where a test makes the server die (`KV_SERVER_FAILPOINT`).
    pub(crate) failpoint: Option<Failpoint>,
}

/// The log's running figures, read by `STATS` from any worker.
#[derive(Debug, Default)]
pub(crate) struct LogCounters {
    records: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    checkpoints: AtomicU64,
    last_checkpoint_ms: AtomicU64,
    /// Log bytes appended since the last checkpoint began: the size trigger.
    bytes_since_checkpoint: AtomicU64,
}

impl LogCounters {
    /// The figures as `STATS` shows them.
    pub(crate) fn figures(&self) -> LogFigures {
        LogFigures {
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            last_checkpoint_ms: self.last_checkpoint_ms.load(Ordering::Relaxed),
        }
    }
}

/// Records waiting for the next fsync, and their batches.
#[derive(Debug, Default)]
struct CommitQueue {
    /// The encoded records, in the order their batches joined.
    records: Vec<u8>,
    /// How many records `records` holds.
    count: u64,
    /// The batches whose records are in `records`, in the same order.
    batches: Vec<Batch>,
    /// Whether a worker is flushing; only that worker takes from the queue.
    flushing: bool,
}

/// The durable half of the KV server, shared by the loop and every worker.
#[derive(Debug)]
pub(crate) struct Durable {
    engine: Arc<KvEngine>,
    results: Arc<Results<Batch>>,
    log_requests: bool,
    mode: FsyncMode,
    policy: CheckpointPolicy,
    failpoint: Option<Failpoint>,
    queue: Mutex<CommitQueue>,
    /// The log. Its lock is held while a group is written, fsynced and applied, so a checkpoint
    /// that holds it sees the store exactly as the log up to its position left it.
    wal: Mutex<Wal>,
    dir: PathBuf,
    counters: LogCounters,
    /// Set while a checkpoint task is in the pool, so there is never more than one.
    checkpointing: AtomicBool,
    /// When the last checkpoint began (or the server started).
    last_checkpoint: Mutex<Instant>,
}

/// Locks `mutex`, taking the data of a poisoned one as it is: a panic on a worker is caught
/// per request and never happens while one of these locks is held over a half-made change.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now, in Unix milliseconds: the clock a logged deadline is written in.
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Opens the log in `dir` and replays the checkpoint and the log into `engine`. Runs on a pool
/// worker (the loop does no disk IO, not even at start); the loop waits for it before it
/// listens.
pub(crate) fn recover(dir: &Path, engine: &KvEngine) -> std::io::Result<(Wal, Recovered)> {
    let now = Instant::now();
    let now_ms = unix_ms_now();
    Wal::open(dir, |record| apply_record(engine, record, now, now_ms))
}

// starter: w10-l06 todo "Do 3: Set restores, Del forgets, SetUntil restores with the time left or forgets"
/// Applies one replayed record to the engine. A `SetUntil` whose deadline has passed removes
/// the key (it replaced an older value before it expired); the others keep the time they have
/// left, measured from `now_ms` on the wall clock and `now` on the monotonic one.
fn apply_record(engine: &KvEngine, record: Record<'_>, now: Instant, now_ms: u64) {
    match record {
        Record::Set { key, value } => engine.restore(key, value, None),
        Record::SetUntil {
            key,
            value,
            deadline_unix_ms,
        } => {
            if deadline_unix_ms > now_ms {
                let left = Duration::from_millis(deadline_unix_ms - now_ms);
                engine.restore(key, value, now.checked_add(left));
            } else {
                engine.forget(key);
            }
        }
        Record::Del { key } => engine.forget(key),
    }
}

impl Durable {
    /// The durable server's state over a recovered log, as `durability` configures it.
    pub(crate) fn new(
        wal: Wal,
        engine: Arc<KvEngine>,
        results: Arc<Results<Batch>>,
        log_requests: bool,
        durability: &Durability,
    ) -> Durable {
        let dir = wal.dir().to_path_buf();
        Durable {
            engine,
            results,
            log_requests,
            mode: durability.fsync,
            policy: durability.checkpoints,
            failpoint: durability.failpoint,
            queue: Mutex::new(CommitQueue::default()),
            wal: Mutex::new(wal),
            dir,
            counters: LogCounters::default(),
            checkpointing: AtomicBool::new(false),
            last_checkpoint: Mutex::new(Instant::now()),
        }
    }

    // starter: w10-quest todo "Do 2: reads at once; writes into the commit queue; the first finder of an idle queue flushes round after round"
    /// Runs one connection's batch on this worker: at once when it only reads, else through
    /// the commit queue (see the [module docs](self)). Either way the batch reaches the loop's
    /// results exactly once.
    pub(crate) fn run_batch(&self, mut batch: Batch) {
        let mut records = Vec::new();
        let count = batch.encode_records(unix_ms_now(), &mut records);
        if count == 0 {
            batch.run(&self.engine, self.log_requests, Some(&self.counters));
            self.results.deliver(batch);
            return;
        }
        let mut queue = lock(&self.queue);
        queue.records.extend_from_slice(&records);
        queue.count += count;
        queue.batches.push(batch);
        if queue.flushing {
            // The flusher takes it on its next round: this worker goes back to the pool.
            return;
        }
        queue.flushing = true;
        let mut spare_records = records;
        let mut spare_batches = Vec::new();
        loop {
            spare_records.clear();
            let group = std::mem::replace(&mut queue.records, spare_records);
            let group_count = std::mem::take(&mut queue.count);
            let batches = std::mem::replace(&mut queue.batches, spare_batches);
            drop(queue);
            let (group, batches) = self.flush(group, group_count, batches);
            (spare_records, spare_batches) = (group, batches);
            queue = lock(&self.queue);
            if queue.batches.is_empty() {
                queue.flushing = false;
                return;
            }
        }
    }

    // starter: w10-quest todo "Do 3: append, fsync (or one per record), count, then apply and deliver in order, all under the log's lock"
    /// Writes and fsyncs one group of records, then applies and delivers its batches, in log
    /// order, all under the log's lock. Returns the emptied buffers for reuse.
    fn flush(&self, group: Vec<u8>, count: u64, mut batches: Vec<Batch>) -> (Vec<u8>, Vec<Batch>) {
        let mut wal = self.lock_wal();
        let fsyncs = match self.mode {
            FsyncMode::Group => {
                if let Err(error) = wal.append(&group) {
                    fatal(&wal, "write", &error);
                }
                if let Err(error) = wal.sync() {
                    fatal(&wal, "fsync", &error);
                }
                1
            }
            FsyncMode::PerRecord => self.append_one_by_one(&mut wal, &group),
        };
        self.counters.records.fetch_add(count, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.counters
            .bytes_since_checkpoint
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.counters.fsyncs.fetch_add(fsyncs, Ordering::Relaxed);
        self.crash_at(Failpoint::AfterLogSync);
        for mut batch in batches.drain(..) {
            batch.run(&self.engine, self.log_requests, Some(&self.counters));
            self.results.deliver(batch);
        }
        drop(wal);
        (group, batches)
    }

    /// Locks the log for one group's write, fsync and apply (or a checkpoint's rotate and copy).
    /// With the `slow-log-sync` failpoint it then waits [`SLOW_SYNC`] with the lock held, as a
    /// slow disk would keep the flusher in its fsync.
    fn lock_wal(&self) -> MutexGuard<'_, Wal> {
        let wal = lock(&self.wal);
        if self.failpoint == Some(Failpoint::SlowLogSync) {
            std::thread::sleep(SLOW_SYNC);
        }
        wal
    }

    /// `--fsync per-record`: each record of the group is written and fsynced on its own.
    fn append_one_by_one(&self, wal: &mut Wal, group: &[u8]) -> u64 {
        let mut rest = group;
        let mut fsyncs = 0;
        while !rest.is_empty() {
            let len = match wal::decode(rest) {
                wal::Decoded::Record { len, .. } => len,
                // The group was encoded by this process a moment ago; anything else is a bug.
                other => unreachable!("a record this server encoded does not decode: {other:?}"),
            };
            let (record, after) = rest.split_at(len);
            if let Err(error) = wal.append(record) {
                fatal(wal, "write", &error);
            }
            if let Err(error) = wal.sync() {
                fatal(wal, "fsync", &error);
            }
            fsyncs += 1;
            rest = after;
        }
        fsyncs
    }

    /// Dies here, as `kill -9` would, when the test's failpoint is `point`.
    fn crash_at(&self, point: Failpoint) {
        if self.failpoint == Some(point) {
            eprintln!("kv_server: failpoint {point:?} reached: killing the process");
            // SIGKILL cannot be caught or blocked: no destructor, no flush, as in a real crash.
            let _ = eventloop::sys::kill(std::process::id() as i32, libc::SIGKILL);
            // The signal is delivered before kill returns for a process signalling itself;
            // should it not be, abort is the next most abrupt end.
            std::process::abort();
        }
    }

    // starter: w10-quest todo "Do 4: not while one runs, not without new bytes; due on size or on time"
    /// Whether a checkpoint is due: checked by the loop on its sweep tick (a few atomic loads, a
    /// clock read and an uncontended lock; the loop does no IO for it).
    pub(crate) fn checkpoint_due(&self) -> bool {
        if self.checkpointing.load(Ordering::Acquire) {
            return false;
        }
        let pending = self.counters.bytes_since_checkpoint.load(Ordering::Relaxed);
        if pending == 0 {
            return false;
        }
        if self.policy.bytes.is_some_and(|limit| pending >= limit) {
            return true;
        }
        self.policy
            .every
            .is_some_and(|every| lock(&self.last_checkpoint).elapsed() >= every)
    }

    /// Marks a checkpoint as running; `false` if one already is.
    pub(crate) fn begin_checkpoint(&self) -> bool {
        !self.checkpointing.swap(true, Ordering::AcqRel)
    }

    /// Forgets a checkpoint that never reached the pool.
    pub(crate) fn abandon_checkpoint(&self) {
        self.checkpointing.store(false, Ordering::Release);
    }

    /// Runs one checkpoint, on a worker (see the [module docs](self)).
    pub(crate) fn checkpoint(&self) {
        let result = self.checkpoint_inner();
        if let Err(error) = result {
            eprintln!(
                "kv_server: checkpoint failed (the log still holds every record; the next tick \
                 tries again): {error}"
            );
        }
        *lock(&self.last_checkpoint) = Instant::now();
        self.checkpointing.store(false, Ordering::Release);
    }

    // starter: w10-quest todo "Do 5: rotate and copy under the log's lock; write the checkpoint and remove the covered segments without it"
    /// The checkpoint's steps; its caller reports a failure and marks the checkpoint done.
    fn checkpoint_inner(&self) -> std::io::Result<()> {
        let now = Instant::now();
        let now_ms = unix_ms_now();
        let mut entries: Vec<(Vec<u8>, Vec<u8>, Option<u64>)> = Vec::new();
        let position: LogPosition = {
            let mut wal = self.lock_wal();
            let position = match wal.rotate() {
                Ok(position) => position,
                // rotate fsyncs the segment it leaves: its failure is the log's failure.
                Err(error) => fatal(&wal, "fsync (rotating)", &error),
            };
            self.counters
                .bytes_since_checkpoint
                .store(0, Ordering::Relaxed);
            self.engine.for_each_live(now, |key, value, expires_at| {
                let deadline = expires_at.map(|at| {
                    now_ms.saturating_add(at.saturating_duration_since(now).as_millis() as u64)
                });
                entries.push((key.to_vec(), value.to_vec(), deadline));
            });
            position
        };
        let records = entries.iter().map(|(key, value, deadline)| match deadline {
            Some(deadline_unix_ms) => Record::SetUntil {
                key,
                value,
                deadline_unix_ms: *deadline_unix_ms,
            },
            None => Record::Set { key, value },
        });
        wal::write_checkpoint(&self.dir, position, records, &mut |step| {
            self.crash_at(Failpoint::after_step(step));
        })?;
        wal::remove_segments_before(&self.dir, position.segment)?;
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_checkpoint_ms
            .store(unix_ms_now(), Ordering::Relaxed);
        Ok(())
    }

    /// At shutdown, after the pool has run every task: one last fsync (every record is durable
    /// already, since each answer waited for its fsync; this one only proves it).
    pub(crate) fn close(&self) -> std::io::Result<()> {
        lock(&self.wal).sync()
    }
}

/// A failed log write or fsync: one line, then exit 1, never a retry (see the
/// [module docs](self)).
fn fatal(wal: &Wal, what: &str, error: &std::io::Error) -> ! {
    let position = wal.position();
    eprintln!(
        "kv_server: fatal: log {what} failed in {} (segment {}, offset {}): {error}; exiting \
         without acknowledging the records it held (a failed fsync is never retried; restart \
         to recover what the disk holds)",
        wal.dir().display(),
        position.segment,
        position.offset
    );
    std::process::exit(1);
}

#[cfg(test)]
mod tests;
