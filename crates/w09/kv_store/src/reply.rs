//! The text protocol's responses: a [`Reply`] and the bytes it is written as.
//!
//! | reply | bytes |
//! |---|---|
//! | [`Reply::Ok`] | `OK` |
//! | [`Reply::Value`] | `VALUE <value>` (the value byte for byte, possibly empty) |
//! | [`Reply::NotFound`] | `NOT_FOUND` |
//! | [`Reply::Deleted`] | `DELETED` |
//! | [`Reply::Keys`] | `KEYS <count>` then ` <key>` for each key, in byte order |
//! | [`Reply::Stats`] | the [`StatsSnapshot`] line |
//! | [`Reply::Error`] | `ERROR <reason>` |
//!
//! Every reply is one line and ends in `\n`. Keys hold no space and values no `\n` (a request
//! line cannot carry one), so a reply never spans two lines.

use crate::command::ParseError;
use crate::metrics::BucketCounts;

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `SET` stored the value.
    Ok,
    /// `GET` found this value.
    Value(Vec<u8>),
    /// `GET` or `DEL` found no live entry.
    NotFound,
    /// `DEL` removed a live entry.
    Deleted,
    /// `KEYS`: the matching keys, sorted by their bytes.
    Keys(Vec<Vec<u8>>),
    /// `STATS`. Boxed: the snapshot is several times the size of every other reply, and a
    /// reply is moved a few times on its way from the worker to the connection's output (the
    /// batch's results, the session's queue of answers), each move a copy of the whole enum.
    Stats(Box<StatsSnapshot>),
    /// The request failed; the connection stays open (except after
    /// [`ErrorReply::LineTooLong`]).
    Error(ErrorReply),
}

/// Why a request failed: the text after `ERROR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// The line is not a command.
    Parse(ParseError),
    /// `KEYS` matched more than [`MAX_KEYS_REPLY`](crate::MAX_KEYS_REPLY) keys:
    /// `ERROR too many keys`; a longer prefix narrows the scan.
    TooManyKeys,
    /// The framer found a line over its limit: `ERROR line too long`, after which the server
    /// closes the connection (as in the W05 protocol).
    LineTooLong,
}

impl ErrorReply {
    // starter: w09-l02 todo "Do 2: a parse error's own reason, or the text of the other two"
    /// The text after `ERROR `.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorReply::Parse(error) => error.reason(),
            ErrorReply::TooManyKeys => "too many keys",
            ErrorReply::LineTooLong => "line too long",
        }
    }
}

impl From<ParseError> for ErrorReply {
    fn from(error: ParseError) -> Self {
        ErrorReply::Parse(error)
    }
}

/// Three percentiles of one operation's latency, each the upper bound of a power-of-two
/// nanosecond bucket (so exact to within a factor of two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// The median.
    pub p50_ns: u64,
    /// The 99th percentile.
    pub p99_ns: u64,
    /// The 99.9th percentile.
    pub p999_ns: u64,
}

impl LatencySummary {
    /// The three percentiles of `counts`.
    pub fn of(counts: &BucketCounts) -> Self {
        Self {
            p50_ns: counts.percentile_ns(0.50),
            p99_ns: counts.percentile_ns(0.99),
            p999_ns: counts.percentile_ns(0.999),
        }
    }
}

/// The `STATS` line's numbers.
///
/// Written as `key=value` pairs separated by single spaces, in this order: `gets`, `sets`,
/// `dels`, `scans` (`KEYS` commands), `errors` (every `ERROR` reply), `keys` (entries held,
/// expired ones not yet removed included), `bytes` (key plus value bytes held), `expired`
/// (entries removed because they expired), then `get_p50_ns`, `get_p99_ns`, `get_p999_ns` and
/// the same three for `set` and `del`.
///
/// ```
/// use kv_store::{Reply, StatsSnapshot};
///
/// let stats = StatsSnapshot { gets: 2, sets: 1, keys: 1, bytes: 6, ..Default::default() };
/// let mut line = Vec::new();
/// Reply::Stats(Box::new(stats)).write_to(&mut line);
/// assert!(line.starts_with(b"gets=2 sets=1 dels=0 scans=0 errors=0 keys=1 bytes=6 expired=0 "));
/// assert!(line.ends_with(b" del_p999_ns=0\n"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// `GET` commands answered.
    pub gets: u64,
    /// `SET` commands applied.
    pub sets: u64,
    /// `DEL` commands answered.
    pub dels: u64,
    /// `KEYS` commands answered (successfully or with `too many keys`).
    pub scans: u64,
    /// `ERROR` replies of every kind.
    pub errors: u64,
    /// Entries held.
    pub keys: u64,
    /// Key plus value bytes held.
    pub bytes: u64,
    /// Entries removed because they had expired.
    pub expired: u64,
    /// `GET` latency, lock wait included.
    pub get_latency: LatencySummary,
    /// `SET` latency, lock wait included.
    pub set_latency: LatencySummary,
    /// `DEL` latency, lock wait included.
    pub del_latency: LatencySummary,
    /// The write-ahead log's figures, when the server keeps one (`kv_server --data-dir`).
    pub log: Option<LogFigures>,
}

/// What a durable server's write-ahead log has done since the server started: the `STATS`
/// fields `log_records`, `log_bytes`, `fsyncs`, `records_per_fsync` (two decimals),
/// `checkpoints` and `last_checkpoint_ms` (Unix milliseconds of the last finished checkpoint,
/// 0 before the first).
///
/// ```
/// use kv_store::{LogFigures, Reply, StatsSnapshot};
///
/// let log = LogFigures { records: 10, bytes: 300, fsyncs: 4, checkpoints: 1, last_checkpoint_ms: 7 };
/// let line = Reply::Stats(Box::new(StatsSnapshot { log: Some(log), ..Default::default() })).to_bytes();
/// let line = String::from_utf8(line).unwrap();
/// assert!(line.ends_with(
///     " log_records=10 log_bytes=300 fsyncs=4 records_per_fsync=2.50 checkpoints=1 last_checkpoint_ms=7\n"
/// ));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogFigures {
    /// Records appended to the log.
    pub records: u64,
    /// Bytes appended to the log.
    pub bytes: u64,
    /// `fdatasync` calls that made appended records durable.
    pub fsyncs: u64,
    /// Checkpoints finished.
    pub checkpoints: u64,
    /// When the last checkpoint finished, in Unix milliseconds; 0 before the first.
    pub last_checkpoint_ms: u64,
}

impl LogFigures {
    /// Records per fsync, the measure of group commit: 1.00 when every record pays its own
    /// fsync, more when one fsync covers the records of several clients.
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.records as f64 / self.fsyncs as f64
        }
    }
}

impl Reply {
    // starter: w09-l02 todo "Do 7: the reply's line for each variant, then a newline"
    /// Appends the reply's bytes, `\n` included.
    ///
    /// ```
    /// use kv_store::{ErrorReply, ParseError, Reply};
    ///
    /// let mut out = Vec::new();
    /// Reply::Value(b"hello world".to_vec()).write_to(&mut out);
    /// Reply::Keys(vec![b"a".to_vec(), b"b".to_vec()]).write_to(&mut out);
    /// Reply::Error(ErrorReply::Parse(ParseError::UnknownCommand)).write_to(&mut out);
    /// assert_eq!(out, b"VALUE hello world\nKEYS 2 a b\nERROR unknown command\n");
    /// ```
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ok => out.extend_from_slice(b"OK"),
            Reply::Value(value) => {
                out.extend_from_slice(b"VALUE ");
                out.extend_from_slice(value);
            }
            Reply::NotFound => out.extend_from_slice(b"NOT_FOUND"),
            Reply::Deleted => out.extend_from_slice(b"DELETED"),
            Reply::Keys(keys) => {
                out.extend_from_slice(format!("KEYS {}", keys.len()).as_bytes());
                for key in keys {
                    out.push(b' ');
                    out.extend_from_slice(key);
                }
            }
            Reply::Stats(stats) => out.extend_from_slice(stats.line().as_bytes()),
            Reply::Error(error) => {
                out.extend_from_slice(b"ERROR ");
                out.extend_from_slice(error.reason().as_bytes());
            }
        }
        out.push(b'\n');
    }

    /// The reply's bytes, `\n` included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl StatsSnapshot {
    // starter: w09-l02 todo "Do 7: every field as key=value in the documented order, the log fields only when present"
    /// The `STATS` line without its `\n`.
    fn line(&self) -> String {
        let mut line = format!(
            "gets={} sets={} dels={} scans={} errors={} keys={} bytes={} expired={}",
            self.gets,
            self.sets,
            self.dels,
            self.scans,
            self.errors,
            self.keys,
            self.bytes,
            self.expired
        );
        for (op, latency) in [
            ("get", self.get_latency),
            ("set", self.set_latency),
            ("del", self.del_latency),
        ] {
            line.push_str(&format!(
                " {op}_p50_ns={} {op}_p99_ns={} {op}_p999_ns={}",
                latency.p50_ns, latency.p99_ns, latency.p999_ns
            ));
        }
        if let Some(log) = &self.log {
            line.push_str(&format!(
                " log_records={} log_bytes={} fsyncs={} records_per_fsync={:.2} checkpoints={} \
                 last_checkpoint_ms={}",
                log.records,
                log.bytes,
                log.fsyncs,
                log.records_per_fsync(),
                log.checkpoints,
                log.last_checkpoint_ms
            ));
        }
        line
    }
}

#[cfg(test)]
mod tests;
