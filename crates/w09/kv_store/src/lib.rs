//! W09: a single-node key-value store — the state machine, its hash table, its text protocol,
//! and the lock strategies that let a thread pool run it.
//!
//! The pieces, in the order a request meets them:
//!
//! - [`command`]: [`parse`] turns a request line into a [`Command`] (`GET`, `SET` with an
//!   optional `EX` expiry, `DEL`, `KEYS`, `STATS`) or a [`ParseError`] with the exact reason;
//!   [`MAX_KEY_LEN`] and [`MAX_VALUE_LEN`] are the documented limits.
//! - [`engine`]: a [`KvEngine`] executes a command at a given instant under the
//!   [`LockStrategy`] the server chose (one `RwLock`, or sharded `RwLock`s) and counts it.
//! - [`store`]: the [`Store`] state machine, its transitions and expiry (lazy on access plus
//!   an incremental [`Store::sweep`]), with time passed in so tests never sleep.
//! - [`table`]: the [`HashTable`] under the store, open addressing with tombstones.
//! - [`reply`]: a [`Reply`] and its bytes (`OK`, `VALUE <v>`, `NOT_FOUND`, `DELETED`,
//!   `KEYS …`, the `STATS` line, `ERROR <reason>`).
//! - [`metrics`]: the counters and the fixed-bucket [`LatencyHistogram`] behind `STATS`.
//!
//! The wire format is specified for clients in the course's `PROTOCOL.md` (its KV section).
//! The crate does no IO: the server's event loop frames lines with `handoff_protocol`'s
//! `LineFramer` and its workers call [`KvEngine::execute_line`].
//!
//! ```
//! use kv_store::{KvEngine, LockStrategy};
//! use std::time::{Duration, Instant};
//!
//! let engine = KvEngine::new(LockStrategy::Single);
//! let start = Instant::now();
//! let mut out = Vec::new();
//! for line in [&b"SET session abc EX 30"[..], b"GET session", b"KEYS sess"] {
//!     engine.execute_line(line, start).write_to(&mut out);
//! }
//! engine.execute_line(b"GET session", start + Duration::from_secs(30)).write_to(&mut out);
//! assert_eq!(out, b"OK\nVALUE abc\nKEYS 1 session\nNOT_FOUND\n");
//! ```

pub mod command;
pub mod engine;
pub mod metrics;
pub mod reply;
pub mod store;
pub mod table;

pub use command::{Command, MAX_EXPIRY_SECS, MAX_KEY_LEN, MAX_VALUE_LEN, ParseError, parse};
pub use engine::{DEFAULT_SHARDS, KvEngine, LockStrategy, MAX_KEYS_REPLY, MAX_SHARDS};
pub use metrics::{BucketCounts, LATENCY_BUCKETS, LatencyHistogram, OpMetrics};
pub use reply::{ErrorReply, LatencySummary, LogFigures, Reply, StatsSnapshot};
pub use store::{Lookup, Removed, Store, TooManyKeys, deadline};
pub use table::{HashTable, MIN_CAPACITY, hash_key};
