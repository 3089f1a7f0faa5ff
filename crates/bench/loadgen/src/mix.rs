//! The request mixes, and the response each request must get.
//!
//! A mix is a small table of distinct request lines, each with its expected response computed
//! once, up front, by [`handoff_protocol::expected_response`]. During the run a connection only
//! picks an index into that table, so checking a response is a byte comparison and never a
//! hash: the load generator stays cheap however fast the server answers.
//!
//! ## The KV mix
//!
//! `kv` drives a key-value server (the W09 `kv_server`, or `redis-server` with
//! `--replies redis`): 90 % `GET`, 10 % `SET`. Its checks stay exact although connections run
//! concurrently, because no two connections ever write the same key and nobody reads a key that
//! is written during the run: every `GET` reads one of [`KV_READ_KEYS`] shared keys that
//! [`Mix::preload`] stores before the clock starts and nobody changes afterwards, and every `SET`
//! writes one of [`KV_WRITE_KEYS_PER_CONNECTION`] keys that belong to its connection alone. So
//! each response has one right answer, known before the run.
//!
//! ## The SET-only mix
//!
//! `kv-set` sends nothing but `SET`s, for a server whose writes cost more than its reads (a
//! durable one, that logs and syncs every write before answering): each connection writes its
//! own keys `s:<connection>:<n>`, `n` increasing from 0, [`KV_SET_KEYS_PER_CONNECTION`] of them
//! before it starts over at 0, so the store stays the same size however long the run. Every
//! answer must be `OK`. No preload.
//!
//! ## Latency per verb
//!
//! Each request knows its [`Verb`], so the KV mixes report `GET` and `SET` latency apart as well
//! as together: a `SET` that waits for a disk sync and a `GET` that does not are different
//! stories, and one histogram over both would tell neither.

use std::fmt;

use handoff_protocol::expected_response;
use kv_store::Reply as KvReply;

/// How many distinct texts the `compute` and `rehash` requests cycle through, so the server sees
/// different inputs without the checker ever hashing during the run.
const DISTINCT_TEXTS: usize = 64;
/// The length of the text of a `compute64` request.
const COMPUTE_TEXT_LEN: usize = 64;
/// The length of the text of a `rehash1000` request.
const REHASH_TEXT_LEN: usize = 16;
/// In the `mixed` mix, one request in this many is `sleep 1`; the rest are `compute64`.
const MIXED_SLEEP_ONE_IN: u64 = 10;
/// In the `kv` mix, one request in this many is a `SET`; the rest are `GET`s.
const KV_SET_ONE_IN: u64 = 10;
/// The shared, read-only keys of the `kv` mix: preloaded, then only read.
pub(crate) const KV_READ_KEYS: usize = 1024;
/// The keys each connection of the `kv` mix writes, and it alone.
pub(crate) const KV_WRITE_KEYS_PER_CONNECTION: usize = 16;
/// The length of every value of the `kv` and `kv-set` mixes.
const KV_VALUE_LEN: usize = 32;
/// The keys each connection of the `kv-set` mix writes in turn before it starts over.
pub(crate) const KV_SET_KEYS_PER_CONNECTION: usize = 1024;

/// How a key-value server words its replies (the requests are the same bytes for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KvReplies {
    /// The course's KV protocol: `OK`, `VALUE <v>`.
    Text,
    /// Redis's RESP, as `redis-server` answers inline commands: `+OK`, `$<len>` then the value.
    Redis,
}

/// Which requests a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MixKind {
    /// `compute <64 bytes>`: a short hash on a worker.
    Compute64,
    /// `ping`: answered by the event loop alone.
    Ping,
    /// `rehash 1000 <16 bytes>`: about a thousand hashes on a worker.
    Rehash1000,
    /// `sleep 1`: blocks a worker for one millisecond.
    Sleep1,
    /// 90 % `compute64`, 10 % `sleep 1`.
    Mixed,
    /// A key-value server: 90 % `GET` of preloaded shared keys, 10 % `SET` of the connection's
    /// own keys (see the module docs).
    Kv,
    /// A key-value server, writes only: every request a `SET` of the connection's own keys, in
    /// increasing order (see the module docs).
    #[serde(rename = "kv-set")]
    KvSet,
}

impl MixKind {
    /// Whether the mix drives a key-value server (and so reports latency per verb).
    pub(crate) fn is_kv(self) -> bool {
        matches!(self, MixKind::Kv | MixKind::KvSet)
    }
}

/// The verb of a request, for the latency kept per verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// A key-value `GET`.
    Get,
    /// A key-value `SET`.
    Set,
    /// Anything else (the handoff protocol's verbs), counted only in the overall latency.
    Other,
}

impl fmt::Display for MixKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MixKind::Compute64 => "compute64",
            MixKind::Ping => "ping",
            MixKind::Rehash1000 => "rehash1000",
            MixKind::Sleep1 => "sleep1",
            MixKind::Mixed => "mixed",
            MixKind::Kv => "kv",
            MixKind::KvSet => "kv-set",
        })
    }
}

/// One distinct request: the bytes to send and the bytes that must come back.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The request line, `\n` included.
    pub(crate) line: Vec<u8>,
    /// The exact response, `\n` included.
    pub(crate) expected: Vec<u8>,
    /// Its verb, which picks the latency histogram it is recorded in besides the overall one.
    pub(crate) verb: Verb,
}

/// The table of distinct requests of one mix, and how a connection picks from it.
#[derive(Debug, Clone)]
pub(crate) struct Mix {
    kind: MixKind,
    /// The distinct requests. For `mixed`, the last one is `sleep 1` and the others are
    /// `compute64`. For `kv`, the first [`KV_READ_KEYS`] are the `GET`s, then each
    /// connection's [`KV_WRITE_KEYS_PER_CONNECTION`] `SET`s. For `kv-set`, each connection's
    /// [`KV_SET_KEYS_PER_CONNECTION`] `SET`s, connection by connection.
    requests: Vec<Request>,
    /// For `kv`: the `SET`s that store the read-only keys before the run.
    preload: Vec<Request>,
}

impl Mix {
    /// Builds the table for `kind`, computing every expected response once. `connections` and
    /// `replies` matter only to the `kv` mix.
    pub(crate) fn new(kind: MixKind, connections: usize, replies: KvReplies) -> Mix {
        match kind {
            MixKind::Kv => return Mix::kv(connections, replies),
            MixKind::KvSet => return Mix::kv_set(connections, replies),
            _ => {}
        }
        let mut lines: Vec<Vec<u8>> = match kind {
            MixKind::Compute64 | MixKind::Mixed => (0..DISTINCT_TEXTS)
                .map(|i| with_text(b"compute ", i, COMPUTE_TEXT_LEN))
                .collect(),
            MixKind::Rehash1000 => (0..DISTINCT_TEXTS)
                .map(|i| with_text(b"rehash 1000 ", i, REHASH_TEXT_LEN))
                .collect(),
            MixKind::Ping => vec![b"ping".to_vec()],
            MixKind::Sleep1 => vec![b"sleep 1".to_vec()],
            MixKind::Kv | MixKind::KvSet => unreachable!("built by Mix::kv and Mix::kv_set"),
        };
        if kind == MixKind::Mixed {
            lines.push(b"sleep 1".to_vec());
        }
        let requests = lines
            .into_iter()
            .map(|line| {
                let expected = expected_response(&line)
                    .expect("the mixes contain no `stats`, the one request without a prediction");
                let mut line = line;
                line.push(b'\n');
                Request {
                    line,
                    expected,
                    verb: Verb::Other,
                }
            })
            .collect();
        Mix {
            kind,
            requests,
            preload: Vec::new(),
        }
    }

    /// The `kv` mix for `connections` connections.
    fn kv(connections: usize, replies: KvReplies) -> Mix {
        let read_keys = (0..KV_READ_KEYS).map(|i| (format!("r:{i}"), i));
        let write_keys = (0..connections).flat_map(|connection| {
            (0..KV_WRITE_KEYS_PER_CONNECTION).map(move |j| {
                (
                    format!("w:{connection}:{j}"),
                    KV_READ_KEYS + connection * KV_WRITE_KEYS_PER_CONNECTION + j,
                )
            })
        });
        let mut requests: Vec<Request> = read_keys
            .clone()
            .map(|(key, variant)| Request {
                line: format!("GET {key}\n").into_bytes(),
                expected: kv_reply(
                    &KvReply::Value(with_text(b"", variant, KV_VALUE_LEN)),
                    replies,
                ),
                verb: Verb::Get,
            })
            .collect();
        requests.extend(write_keys.map(|(key, variant)| kv_set(&key, variant, replies)));
        Mix {
            kind: MixKind::Kv,
            requests,
            preload: read_keys
                .map(|(key, variant)| kv_set(&key, variant, replies))
                .collect(),
        }
    }

    /// The `kv-set` mix for `connections` connections: each connection's own keys, in order.
    fn kv_set(connections: usize, replies: KvReplies) -> Mix {
        let requests = (0..connections)
            .flat_map(|connection| {
                (0..KV_SET_KEYS_PER_CONNECTION).map(move |n| {
                    let variant = connection * KV_SET_KEYS_PER_CONNECTION + n;
                    kv_set(&format!("s:{connection}:{n}"), variant, replies)
                })
            })
            .collect();
        Mix {
            kind: MixKind::KvSet,
            requests,
            preload: Vec::new(),
        }
    }

    /// The requests to send, and check, on one connection before the run: the `kv` mix's
    /// read-only keys. Empty for every other mix.
    pub(crate) fn preload(&self) -> &[Request] {
        &self.preload
    }

    /// The distinct requests; [`RequestPicker::next`] returns indices into this slice.
    pub(crate) fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// A deterministic sequence of request indices for one connection.
    pub(crate) fn picker(&self, connection: usize) -> RequestPicker {
        RequestPicker {
            kind: self.kind,
            distinct: self.requests.len(),
            // A distinct, non-zero seed per connection (xorshift never leaves zero).
            state: (connection as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            counter: connection,
            connection,
            next_key: 0,
        }
    }
}

/// `SET <key> <32 bytes that differ for each variant>`, answered `OK` in the dialect `replies`.
fn kv_set(key: &str, variant: usize, replies: KvReplies) -> Request {
    let mut line = with_text(format!("SET {key} ").as_bytes(), variant, KV_VALUE_LEN);
    line.push(b'\n');
    Request {
        line,
        expected: kv_reply(&KvReply::Ok, replies),
        verb: Verb::Set,
    }
}

/// The bytes a key-value server answers `reply` with, in the dialect `replies`.
fn kv_reply(reply: &KvReply, replies: KvReplies) -> Vec<u8> {
    match (replies, reply) {
        (KvReplies::Text, reply) => reply.to_bytes(),
        (KvReplies::Redis, KvReply::Ok) => b"+OK\r\n".to_vec(),
        (KvReplies::Redis, KvReply::Value(value)) => {
            let mut out = format!("${}\r\n", value.len()).into_bytes();
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
            out
        }
        (KvReplies::Redis, other) => unreachable!("the kv mix expects no {other:?}"),
    }
}

/// Picks the next request of a connection: round-robin over the distinct texts, and for
/// `mixed` a pseudo-random one in ten is `sleep 1`.
#[derive(Debug, Clone)]
pub(crate) struct RequestPicker {
    kind: MixKind,
    distinct: usize,
    state: u64,
    counter: usize,
    /// The connection's number, which picks its own `SET` keys in the `kv` and `kv-set` mixes.
    connection: usize,
    /// `kv-set`: the number of the connection's next key, counting up.
    next_key: usize,
}

impl RequestPicker {
    /// The index of the next request to send.
    pub(crate) fn next(&mut self) -> usize {
        if self.kind == MixKind::KvSet {
            let own = self.next_key;
            self.next_key = (self.next_key + 1) % KV_SET_KEYS_PER_CONNECTION;
            return self.connection * KV_SET_KEYS_PER_CONNECTION + own;
        }
        if self.kind == MixKind::Kv {
            self.step_xorshift();
            self.counter = self.counter.wrapping_add(1);
            if self.state.is_multiple_of(KV_SET_ONE_IN) {
                let own = self.counter % KV_WRITE_KEYS_PER_CONNECTION;
                return KV_READ_KEYS + self.connection * KV_WRITE_KEYS_PER_CONNECTION + own;
            }
            // Spread the reads over the shared keys; the multiplier is odd, so every key comes up.
            return self.counter.wrapping_mul(7919) % KV_READ_KEYS;
        }
        if self.kind == MixKind::Mixed {
            self.step_xorshift();
            if self.state.is_multiple_of(MIXED_SLEEP_ONE_IN) {
                return self.distinct - 1;
            }
            self.counter = (self.counter + 1) % (self.distinct - 1);
            return self.counter;
        }
        self.counter = (self.counter + 1) % self.distinct;
        self.counter
    }

    /// xorshift64: cheap, and the same sequence every run.
    fn step_xorshift(&mut self) {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
    }
}

/// `prefix` followed by `len` printable bytes that differ for each `variant`.
fn with_text(prefix: &[u8], variant: usize, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut line = prefix.to_vec();
    let mut state = variant as u64 * 2_654_435_761 + 1;
    for _ in 0..len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        line.push(ALPHABET[(state >> 33) as usize % ALPHABET.len()]);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute64_lines_carry_64_bytes_of_text_and_their_hash() {
        let mix = Mix::new(MixKind::Compute64, 1, KvReplies::Text);
        assert_eq!(mix.requests().len(), DISTINCT_TEXTS);
        let first = &mix.requests()[0];
        assert_eq!(first.line.len(), "compute ".len() + COMPUTE_TEXT_LEN + 1);
        assert!(first.expected.starts_with(b"result: "));
        assert_ne!(mix.requests()[0].line, mix.requests()[1].line);
    }

    #[test]
    fn mixed_sends_about_one_sleep_in_ten() {
        let mix = Mix::new(MixKind::Mixed, 1, KvReplies::Text);
        let sleep = mix.requests().len() - 1;
        assert_eq!(mix.requests()[sleep].line, b"sleep 1\n");
        let mut picker = mix.picker(3);
        let sleeps = (0..100_000).filter(|_| picker.next() == sleep).count();
        assert!(
            (9_000..11_000).contains(&sleeps),
            "{sleeps} sleeps in 100000"
        );
    }

    #[test]
    fn single_line_mixes_always_pick_it() {
        for kind in [MixKind::Ping, MixKind::Sleep1] {
            let mix = Mix::new(kind, 1, KvReplies::Text);
            let mut picker = mix.picker(7);
            assert!((0..10).all(|_| picker.next() == 0));
        }
        assert_eq!(
            Mix::new(MixKind::Ping, 1, KvReplies::Text).requests()[0].expected,
            b"pong\n"
        );
    }

    #[test]
    fn kv_sets_only_its_own_keys_and_gets_only_preloaded_ones() {
        let mix = Mix::new(MixKind::Kv, 3, KvReplies::Text);
        assert_eq!(mix.preload().len(), KV_READ_KEYS);
        assert_eq!(
            mix.requests().len(),
            KV_READ_KEYS + 3 * KV_WRITE_KEYS_PER_CONNECTION
        );
        let mut picker = mix.picker(1);
        let mut sets = 0;
        for _ in 0..100_000 {
            let request = &mix.requests()[picker.next()];
            if request.line.starts_with(b"SET ") {
                sets += 1;
                assert!(request.line.starts_with(b"SET w:1:"), "{:?}", request.line);
                assert_eq!(request.expected, b"OK\n");
            } else {
                assert!(request.line.starts_with(b"GET r:"));
                assert!(request.expected.starts_with(b"VALUE "));
            }
        }
        assert!((9_000..11_000).contains(&sets), "{sets} sets in 100000");
        // The value a GET expects is the one its preload stored.
        let preload = String::from_utf8(mix.preload()[5].line.clone()).unwrap();
        let value = preload.trim_end().rsplit(' ').next().unwrap();
        assert_eq!(mix.requests()[5].line, b"GET r:5\n");
        assert_eq!(
            mix.requests()[5].expected,
            format!("VALUE {value}\n").as_bytes()
        );
    }

    #[test]
    fn kv_set_writes_only_its_own_keys_in_increasing_order_and_starts_over() {
        let mix = Mix::new(MixKind::KvSet, 3, KvReplies::Text);
        assert!(mix.preload().is_empty());
        assert_eq!(mix.requests().len(), 3 * KV_SET_KEYS_PER_CONNECTION);
        let mut picker = mix.picker(2);
        let keys: Vec<String> = (0..KV_SET_KEYS_PER_CONNECTION + 2)
            .map(|_| {
                let request = &mix.requests()[picker.next()];
                assert_eq!(request.verb, Verb::Set);
                assert_eq!(request.expected, b"OK\n");
                let line = String::from_utf8(request.line.clone()).unwrap();
                let mut words = line.trim_end().split(' ');
                assert_eq!(words.next(), Some("SET"));
                let key = words.next().unwrap().to_owned();
                assert_eq!(words.next().map(str::len), Some(KV_VALUE_LEN), "{line}");
                key
            })
            .collect();
        assert_eq!(keys[0], "s:2:0");
        assert_eq!(keys[1], "s:2:1");
        assert_eq!(keys[KV_SET_KEYS_PER_CONNECTION - 1], "s:2:1023");
        assert_eq!(keys[KV_SET_KEYS_PER_CONNECTION], "s:2:0", "starts over");
        let redis = Mix::new(MixKind::KvSet, 1, KvReplies::Redis);
        assert_eq!(redis.requests()[0].expected, b"+OK\r\n");
    }

    #[test]
    fn kv_requests_know_their_verb() {
        let mix = Mix::new(MixKind::Kv, 2, KvReplies::Text);
        for request in mix.requests() {
            let verb = if request.line.starts_with(b"GET ") {
                Verb::Get
            } else {
                Verb::Set
            };
            assert_eq!(request.verb, verb, "{:?}", request.line);
        }
        let compute = Mix::new(MixKind::Compute64, 1, KvReplies::Text);
        assert!(compute.requests().iter().all(|r| r.verb == Verb::Other));
        assert!(MixKind::KvSet.is_kv() && MixKind::Kv.is_kv() && !MixKind::Ping.is_kv());
    }

    #[test]
    fn kv_redis_replies_are_resp() {
        let mix = Mix::new(MixKind::Kv, 1, KvReplies::Redis);
        assert_eq!(mix.preload()[0].expected, b"+OK\r\n");
        let get = &mix.requests()[0].expected;
        assert!(
            get.starts_with(b"$32\r\n") && get.ends_with(b"\r\n"),
            "{get:?}"
        );
        assert_eq!(get.len(), "$32\r\n".len() + 32 + 2);
    }
}
