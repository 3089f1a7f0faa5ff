//! The concurrent store: a [`Store`] behind the reader-writer lock strategy the server picks.
//!
//! A [`KvEngine`] is what the server shares (in an `Arc`) with its pool's workers: a parsed
//! command goes in, a [`Reply`] comes out, and any number of threads may call it at once.
//! Two strategies, chosen with a [`LockStrategy`]:
//!
//! - [`LockStrategy::Single`]: one `RwLock<Store>`. `GET`s share the read lock and run in
//!   parallel; a `SET` or `DEL` takes the write lock and waits for every reader to leave.
//! - [`LockStrategy::Sharded`]: N stores, each behind its own `RwLock` on its own cache line; a
//!   key lives in the shard its hash picks. Writers to different shards do not wait for each
//!   other, and readers of different shards do not even share the lock's counter line.
//!
//! Both run the same [`Store`] and the same per-command code (`Shard`); only the choice of lock
//! differs. The crate README has the measurements that chose the server's default.
//!
//! `KEYS` and `STATS` visit every shard in turn under its read lock, so under the sharded
//! strategy they are not one atomic snapshot: a `SET` to one shard may land between the visits
//! of two others. Each key's own history stays linearizable under both strategies.
//!
//! **Poisoning.** A lock is poisoned only if a thread panicked while holding it. No `Store`
//! method calls code it does not own or leaves a half-done change behind on a panic path it
//! can reach (the only panics left are allocation failures, which abort), so the engine takes
//! a poisoned lock's data as it is rather than failing every later request.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;
use std::{fmt, ops::Deref};

use crossbeam_utils::CachePadded;

use crate::command::{Command, parse};
use crate::metrics::{BucketCounts, OpMetrics, bump};
use crate::reply::{ErrorReply, LatencySummary, Reply, StatsSnapshot};
use crate::store::{Lookup, Removed, Store, deadline};
use crate::table::hash_key;

/// The most keys one `KEYS` reply lists; past it the reply is `ERROR too many keys`. It bounds
/// the reply at about 250 KiB and the time the scan holds each read lock.
pub const MAX_KEYS_REPLY: usize = 1024;

/// The shard count of `sharded` without a number.
pub const DEFAULT_SHARDS: usize = 16;

/// The most shards a store may be split into.
pub const MAX_SHARDS: usize = 1024;

/// How the store is locked.
///
/// Parsed from the server's command line: `single`, `sharded` (with [`DEFAULT_SHARDS`]) or
/// `sharded:N` with N in 1..=[`MAX_SHARDS`].
///
/// ```
/// use kv_store::LockStrategy;
///
/// assert_eq!("single".parse(), Ok(LockStrategy::Single));
/// assert_eq!("sharded:8".parse(), Ok(LockStrategy::Sharded(8)));
/// assert_eq!(LockStrategy::Sharded(8).to_string(), "sharded:8");
/// assert!("sharded:0".parse::<LockStrategy>().is_err());
/// ```
///
/// The default is [`Single`](Self::Single), the strategy the crate keeps. The crate README has
/// the figures and their limits; in short, on the two cores it was measured on, sharded locks
/// were not faster in the typical run, so the simpler strategy stays — the one whose `KEYS` and
/// `STATS` see one atomic snapshot. `Sharded` is there for machines where measurement favours it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LockStrategy {
    /// One `RwLock` around one store.
    #[default]
    Single,
    /// This many stores, each behind its own `RwLock`, chosen by key hash.
    Sharded(usize),
}

impl FromStr for LockStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "invalid lock strategy `{text}`: expected `single`, `sharded` or `sharded:N` \
                 with N in 1..={MAX_SHARDS}"
            )
        };
        match text {
            "single" => Ok(LockStrategy::Single),
            "sharded" => Ok(LockStrategy::Sharded(DEFAULT_SHARDS)),
            _ => {
                let count = text.strip_prefix("sharded:").ok_or_else(invalid)?;
                match count.parse::<usize>() {
                    Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(LockStrategy::Sharded(n)),
                    _ => Err(invalid()),
                }
            }
        }
    }
}

impl fmt::Display for LockStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockStrategy::Single => f.write_str("single"),
            LockStrategy::Sharded(n) => write!(f, "sharded:{n}"),
        }
    }
}

/// One lock, the store behind it, and the tallies of the commands it ran.
#[derive(Debug, Default)]
struct Shard {
    store: RwLock<Store>,
    metrics: OpMetrics,
}

impl Shard {
    fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// `GET` under the read lock. An entry found expired is removed under the write lock
    /// afterwards (lazy expiry); the read lock is released first, because a `RwLock` cannot
    /// be upgraded in place.
    fn get(&self, key: &[u8], now: Instant) -> Reply {
        match self.read().get(key, now) {
            Lookup::Found(value) => return Reply::Value(value.to_vec()),
            Lookup::Missing => return Reply::NotFound,
            Lookup::Expired => {}
        }
        if self.write().remove_if_expired(key, now) {
            bump(&self.metrics.expired);
        }
        Reply::NotFound
    }

    fn set(&self, key: &[u8], value: &[u8], expire_secs: Option<u64>, now: Instant) -> Reply {
        let expires_at = expire_secs.and_then(|secs| deadline(now, secs));
        self.write().set(key, value, expires_at);
        Reply::Ok
    }

    fn del(&self, key: &[u8], now: Instant) -> Reply {
        match self.write().del(key, now) {
            Removed::Live => Reply::Deleted,
            Removed::Expired => {
                bump(&self.metrics.expired);
                Reply::NotFound
            }
            Removed::Missing => Reply::NotFound,
        }
    }
}

/// The shards, as the strategy lays them out.
#[derive(Debug)]
enum Locks {
    /// One shard (boxed, as its histograms make it a kilobyte).
    Single(Box<CachePadded<Shard>>),
    Sharded(Box<[CachePadded<Shard>]>),
}

/// The store as the server shares it between threads (see the [module docs](self)).
///
/// ```
/// use kv_store::{KvEngine, LockStrategy, Reply};
/// use std::time::Instant;
///
/// let engine = KvEngine::new(LockStrategy::Sharded(4));
/// let now = Instant::now();
/// assert_eq!(engine.execute_line(b"SET greeting hello world", now), Reply::Ok);
/// assert_eq!(engine.execute_line(b"GET greeting", now).to_bytes(), b"VALUE hello world\n");
/// assert_eq!(engine.execute_line(b"DEL greeting", now), Reply::Deleted);
/// assert_eq!(engine.execute_line(b"GET greeting", now), Reply::NotFound);
/// assert_eq!(engine.execute_line(b"PUT x y", now).to_bytes(), b"ERROR unknown command\n");
/// ```
#[derive(Debug)]
pub struct KvEngine {
    locks: Locks,
    strategy: LockStrategy,
    /// `KEYS` commands; on their own line, as they touch every shard anyway.
    scans: CachePadded<AtomicU64>,
    /// `ERROR` replies; rare, so one counter for all shards.
    errors: CachePadded<AtomicU64>,
}

impl KvEngine {
    /// An empty store locked the way `strategy` says.
    ///
    /// # Panics
    ///
    /// If `strategy` is `Sharded(n)` with `n` outside 1..=[`MAX_SHARDS`] (parsing a
    /// [`LockStrategy`] never produces one).
    pub fn new(strategy: LockStrategy) -> Self {
        let locks = match strategy {
            LockStrategy::Single => Locks::Single(Box::default()),
            LockStrategy::Sharded(n) => {
                assert!(
                    (1..=MAX_SHARDS).contains(&n),
                    "shard count {n} outside 1..={MAX_SHARDS}"
                );
                Locks::Sharded((0..n).map(|_| CachePadded::new(Shard::default())).collect())
            }
        };
        Self {
            locks,
            strategy,
            scans: CachePadded::new(AtomicU64::new(0)),
            errors: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// The strategy this engine was built with.
    pub fn strategy(&self) -> LockStrategy {
        self.strategy
    }

    /// Parses `line` and executes it at instant `now`; a line that does not parse is answered
    /// `ERROR <reason>` and counted in `errors`. This is the whole of a worker's job per request.
    pub fn execute_line(&self, line: &[u8], now: Instant) -> Reply {
        match parse(line) {
            Ok(command) => self.execute(&command, now),
            Err(error) => self.error(error.into()),
        }
    }

    /// Executes `command` at instant `now` (the clock expiry is judged by; latency is measured
    /// with the real clock).
    pub fn execute(&self, command: &Command<'_>, now: Instant) -> Reply {
        let started = Instant::now();
        match *command {
            Command::Get { key } => {
                let shard = self.shard_for(key);
                let reply = shard.get(key, now);
                bump(&shard.metrics.gets);
                shard.metrics.get_latency.record(started.elapsed());
                reply
            }
            Command::Set {
                key,
                value,
                expire_secs,
            } => {
                let shard = self.shard_for(key);
                let reply = shard.set(key, value, expire_secs, now);
                bump(&shard.metrics.sets);
                shard.metrics.set_latency.record(started.elapsed());
                reply
            }
            Command::Del { key } => {
                let shard = self.shard_for(key);
                let reply = shard.del(key, now);
                bump(&shard.metrics.dels);
                shard.metrics.del_latency.record(started.elapsed());
                reply
            }
            Command::Keys { prefix } => {
                bump(&self.scans);
                let mut keys = Vec::new();
                for shard in self.shards() {
                    let found = shard
                        .read()
                        .collect_keys(prefix, now, MAX_KEYS_REPLY, &mut keys);
                    if found.is_err() {
                        return self.error(ErrorReply::TooManyKeys);
                    }
                }
                keys.sort_unstable();
                Reply::Keys(keys)
            }
            Command::Stats => Reply::Stats(Box::new(self.stats())),
        }
    }

    /// Counts and returns an error reply. The server calls this for errors it finds itself
    /// (`ErrorReply::LineTooLong`), so `errors` in `STATS` counts every `ERROR` line.
    pub fn error(&self, error: ErrorReply) -> Reply {
        bump(&self.errors);
        Reply::Error(error)
    }

    /// Removes expired entries: in each shard, among the next `budget_per_shard` slots from
    /// where that shard's previous sweep stopped. Returns how many it removed. It is made for a
    /// server's periodic timer (a timer on the event loop that submits the sweep to the pool,
    /// as it is CPU work) to call with the current instant; each shard's write lock is held for
    /// one bounded window only.
    pub fn sweep(&self, now: Instant, budget_per_shard: usize) -> usize {
        let mut removed = 0;
        for shard in self.shards() {
            let count = shard.write().sweep(now, budget_per_shard);
            shard
                .metrics
                .expired
                .fetch_add(count as u64, Ordering::Relaxed);
            removed += count;
        }
        removed
    }

    /// Stores `value` for `key` until `expires_at`, as a `SET` would, but uncounted: this is
    /// how a durable server replays its log into a fresh engine on start, and replayed records
    /// are not commands any client sent.
    pub fn restore(&self, key: &[u8], value: &[u8], expires_at: Option<Instant>) {
        self.shard_for(key).write().set(key, value, expires_at);
    }

    /// Removes `key`, as a `DEL` would, but uncounted (see [`restore`](Self::restore)).
    pub fn forget(&self, key: &[u8]) {
        // Whether anything was there does not matter to a replay: the key is gone after it.
        let _ = self.shard_for(key).write().del(key, Instant::now());
    }

    /// Calls `visit` with every entry live at `now` (key, value, deadline), one shard at a
    /// time under its read lock. Under the sharded strategy this is not one atomic snapshot;
    /// a durable server that needs one (its checkpoint) holds its log's lock meanwhile, so no
    /// write lands during the visit.
    pub fn for_each_live(
        &self,
        now: Instant,
        mut visit: impl FnMut(&[u8], &[u8], Option<Instant>),
    ) {
        for shard in self.shards() {
            for (key, value, expires_at) in shard.read().live_entries(now) {
                visit(key, value, expires_at);
            }
        }
    }

    /// The counters and percentiles, summed over the shards.
    pub fn stats(&self) -> StatsSnapshot {
        let mut stats = StatsSnapshot {
            scans: self.scans.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            ..StatsSnapshot::default()
        };
        let (mut get, mut set, mut del) = (
            BucketCounts::default(),
            BucketCounts::default(),
            BucketCounts::default(),
        );
        for shard in self.shards() {
            let metrics = &shard.metrics;
            stats.gets += metrics.gets.load(Ordering::Relaxed);
            stats.sets += metrics.sets.load(Ordering::Relaxed);
            stats.dels += metrics.dels.load(Ordering::Relaxed);
            stats.expired += metrics.expired.load(Ordering::Relaxed);
            get.merge(&metrics.get_latency.snapshot());
            set.merge(&metrics.set_latency.snapshot());
            del.merge(&metrics.del_latency.snapshot());
            let store = shard.read();
            stats.keys += store.len() as u64;
            stats.bytes += store.bytes() as u64;
        }
        stats.get_latency = LatencySummary::of(&get);
        stats.set_latency = LatencySummary::of(&set);
        stats.del_latency = LatencySummary::of(&del);
        stats
    }

    /// The shard that holds `key`.
    fn shard_for(&self, key: &[u8]) -> &Shard {
        match &self.locks {
            Locks::Single(shard) => shard,
            Locks::Sharded(shards) => &shards[shard_index(hash_key(key), shards.len())],
        }
    }

    /// Every shard, in order.
    fn shards(&self) -> impl Iterator<Item = &Shard> {
        let shards = match &self.locks {
            Locks::Single(shard) => std::slice::from_ref(&**shard),
            Locks::Sharded(shards) => shards,
        };
        shards.iter().map(Deref::deref)
    }
}

/// Maps a hash onto `0..shards` from its high 32 bits (multiply and shift, which works for any
/// count). The table inside each shard picks slots from the low bits, so the two choices stay
/// independent: keys of one shard still spread over its whole table.
fn shard_index(hash: u64, shards: usize) -> usize {
    (((hash >> 32) * shards as u64) >> 32) as usize
}

#[cfg(test)]
mod tests;
