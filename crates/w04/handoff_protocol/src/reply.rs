//! Replies: the work a verb does, and the bytes that answer it.
//!
//! [`execute`] is the whole of a verb's work — hashing, multiplying, sleeping, failing or
//! panicking — and returns a [`Reply`], a small value rather than a formatted string, so a worker
//! hands back a few words and only the event loop writes bytes. [`Reply::write_to`] turns it into
//! the response line.

use std::io::Write as _;
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

use crate::request::{Number, Verb, parse_number, split_request};

/// The largest `n` whose factorial fits in a `u64`.
pub const MAX_FACTORIAL: u64 = 20;
/// The largest round count `rehash` accepts.
pub const MAX_REHASH_ROUNDS: u64 = 100_000_000;
/// The longest `sleep` accepts, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// The outcome of one request, before it is written as a response line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `result: <16 lowercase hex digits>`, from `compute` and `rehash`.
    Hash(u64),
    /// `result: <decimal>`, from `factorial`.
    Factorial(u64),
    /// `result: slept <ms>ms`, from `sleep`.
    Slept(u64),
    /// `pong`.
    Pong,
    /// `ERROR: …`.
    Error(ErrorReply),
}

/// Every `ERROR: …` response the protocol defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorReply {
    /// `ERROR: invalid number`: a numeric argument that is not a non-negative decimal integer.
    InvalidNumber,
    /// `ERROR: rounds out of range`: `rehash` with `n` outside `1..=100000000`.
    RoundsOutOfRange,
    /// `ERROR: overflow`: `factorial` with `n > 20`.
    Overflow,
    /// `ERROR: sleep out of range`: `sleep` with `ms` outside `0..=10000`.
    SleepOutOfRange,
    /// `ERROR: empty request`.
    EmptyRequest,
    /// `ERROR: unknown command`.
    UnknownCommand,
    /// `ERROR: line too long`; the server closes the connection after it.
    LineTooLong,
    /// `ERROR: <text>`, from `fail <text>`.
    Failed(Vec<u8>),
    /// `ERROR: task panicked: <message>`, for a task that panicked with `message`.
    Panicked(String),
}

impl Reply {
    /// Whether this reply is an `ERROR: …` line.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the response line, `\n` included.
    ///
    /// ```
    /// use handoff_protocol::{ErrorReply, Reply};
    ///
    /// let mut out = Vec::new();
    /// Reply::Hash(0xab).write_to(&mut out);
    /// Reply::Error(ErrorReply::Failed(b"disk full".to_vec())).write_to(&mut out);
    /// assert_eq!(out, b"result: 00000000000000ab\nERROR: disk full\n");
    /// ```
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Hash(hash) => out.extend_from_slice(&hash_line(*hash)),
            Reply::Factorial(value) => {
                // Writing into a Vec cannot fail.
                let _ = writeln!(out, "result: {value}");
            }
            Reply::Slept(ms) => {
                let _ = writeln!(out, "result: slept {ms}ms");
            }
            Reply::Pong => out.extend_from_slice(b"pong\n"),
            Reply::Error(error) => {
                out.extend_from_slice(b"ERROR: ");
                match error {
                    ErrorReply::InvalidNumber => out.extend_from_slice(b"invalid number"),
                    ErrorReply::RoundsOutOfRange => out.extend_from_slice(b"rounds out of range"),
                    ErrorReply::Overflow => out.extend_from_slice(b"overflow"),
                    ErrorReply::SleepOutOfRange => out.extend_from_slice(b"sleep out of range"),
                    ErrorReply::EmptyRequest => out.extend_from_slice(b"empty request"),
                    ErrorReply::UnknownCommand => out.extend_from_slice(b"unknown command"),
                    ErrorReply::LineTooLong => out.extend_from_slice(b"line too long"),
                    ErrorReply::Failed(text) => out.extend_from_slice(text),
                    ErrorReply::Panicked(message) => {
                        out.extend_from_slice(b"task panicked: ");
                        out.extend_from_slice(message.as_bytes());
                    }
                }
                out.push(b'\n');
            }
        }
    }

    /// The response line as a new buffer, `\n` included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.write_to(&mut out);
        out
    }
}

/// Does a verb's work and returns its reply.
///
/// This is the CPU (or blocking) work of the worker verbs, and the trivial answer of `ping`,
/// empty lines and unknown verbs. `sleep` really sleeps, and `panic <text>` really panics, with
/// `<text>` as the panic message (a `String` payload; bytes that are not UTF-8 are replaced by
/// U+FFFD), so a pool's panic handling is exercised for real.
///
/// # Panics
///
/// On `Verb::Panic`, by design; and on `Verb::Stats`, whose answer needs the server's own
/// counters: a server answers it with [`Stats::write_to`] instead.
///
/// ```
/// use handoff_protocol::{ErrorReply, Reply, Verb, execute};
///
/// assert_eq!(execute(Verb::Factorial, b"5"), Reply::Factorial(120));
/// assert_eq!(execute(Verb::Factorial, b"21"), Reply::Error(ErrorReply::Overflow));
/// assert_eq!(execute(Verb::Rehash, b"0 x"), Reply::Error(ErrorReply::RoundsOutOfRange));
/// ```
pub fn execute(verb: Verb, args: &[u8]) -> Reply {
    match verb {
        Verb::Sleep => match sleep_ms(args) {
            Ok(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Reply::Slept(ms)
            }
            Err(error) => Reply::Error(error),
        },
        Verb::Panic => std::panic::panic_any(String::from_utf8_lossy(args).into_owned()),
        Verb::Stats => panic!("`stats` is answered from the server's own counters, not by execute"),
        _ => reply_without_side_effects(verb, args),
    }
}

/// The message of a caught panic, for an `ERROR: task panicked: <message>` reply or a log line.
///
/// [`execute`]'s `panic` verb raises a `String` payload, and `panic!("literal")` raises a
/// `&'static str`; any other payload has no text, and this says so instead. Every server of the
/// course turns a caught panic into its reply through this one function, so they all answer alike.
///
/// ```
/// use handoff_protocol::{Verb, execute, panic_message};
///
/// let payload = std::panic::catch_unwind(|| execute(Verb::Panic, b"boom")).unwrap_err();
/// assert_eq!(panic_message(payload.as_ref()), "boom");
/// ```
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&'static str>().copied())
        .unwrap_or(NON_STRING_PANIC)
}

/// What [`panic_message`] says of a panic whose payload is neither a `String` nor a `&str`.
pub const NON_STRING_PANIC: &str = "task panicked with a non-string payload";

/// The exact response a conforming server sends for one request line (given without its line
/// ending), or `None` for `stats`, whose numbers only the server knows.
///
/// It never sleeps and never panics: `sleep` and `panic` replies are predicted, not run. Graders
/// and the load generator use it to check every response byte for byte.
///
/// ```
/// use handoff_protocol::expected_response;
///
/// assert_eq!(expected_response(b"sleep 10000").unwrap(), b"result: slept 10000ms\n");
/// assert_eq!(expected_response(b"panic boom").unwrap(), b"ERROR: task panicked: boom\n");
/// assert_eq!(expected_response(b"stats"), None);
/// ```
pub fn expected_response(line: &[u8]) -> Option<Vec<u8>> {
    let (verb, args) = split_request(line);
    let reply = match verb {
        Verb::Stats => return None,
        Verb::Sleep => sleep_ms(args).map_or_else(Reply::Error, Reply::Slept),
        Verb::Panic => Reply::Error(ErrorReply::Panicked(
            String::from_utf8_lossy(args).into_owned(),
        )),
        _ => reply_without_side_effects(verb, args),
    };
    Some(reply.to_bytes())
}

/// The verbs whose reply depends on nothing but their arguments.
fn reply_without_side_effects(verb: Verb, args: &[u8]) -> Reply {
    match verb {
        Verb::Compute => Reply::Hash(xxh3_64(args)),
        Verb::Rehash => rehash(args),
        Verb::Factorial => match parse_number(args) {
            Number::Value(n) if n <= MAX_FACTORIAL => Reply::Factorial((1..=n).product()),
            Number::Value(_) | Number::TooLarge => Reply::Error(ErrorReply::Overflow),
            Number::Invalid => Reply::Error(ErrorReply::InvalidNumber),
        },
        Verb::Fail => Reply::Error(ErrorReply::Failed(args.to_vec())),
        Verb::Ping => Reply::Pong,
        Verb::Empty => Reply::Error(ErrorReply::EmptyRequest),
        Verb::Unknown => Reply::Error(ErrorReply::UnknownCommand),
        Verb::Sleep | Verb::Panic | Verb::Stats => unreachable!("handled by the callers"),
    }
}

/// `rehash <n> <text>`: `n` ends at the first space of the arguments, the text is the rest.
fn rehash(args: &[u8]) -> Reply {
    let (rounds, text) = match memchr::memchr(b' ', args) {
        Some(space) => (&args[..space], &args[space + 1..]),
        None => (args, &args[args.len()..]),
    };
    let rounds = match parse_number(rounds) {
        Number::Value(n) if (1..=MAX_REHASH_ROUNDS).contains(&n) => n,
        Number::Value(_) | Number::TooLarge => {
            return Reply::Error(ErrorReply::RoundsOutOfRange);
        }
        Number::Invalid => return Reply::Error(ErrorReply::InvalidNumber),
    };
    let mut hash = xxh3_64(text);
    for _ in 1..rounds {
        hash = xxh3_64(&hash.to_le_bytes());
    }
    Reply::Hash(hash)
}

/// `sleep <ms>`. The protocol names only the out-of-range error; an argument that is not a
/// number at all gets `ERROR: invalid number`, as it does for the other numeric verbs.
fn sleep_ms(args: &[u8]) -> Result<u64, ErrorReply> {
    match parse_number(args) {
        Number::Value(ms) if ms <= MAX_SLEEP_MS => Ok(ms),
        Number::Value(_) | Number::TooLarge => Err(ErrorReply::SleepOutOfRange),
        Number::Invalid => Err(ErrorReply::InvalidNumber),
    }
}

/// `result: <16 hex digits>\n`, built on the stack and appended with one copy: this is the
/// response to nearly every request under load, and pushing its 25 bytes one at a time (each push
/// checking the vector's capacity) cost several times more than the copy.
fn hash_line(hash: u64) -> [u8; 25] {
    let mut line = *b"result: 0000000000000000\n";
    line[8..16].copy_from_slice(&hex8((hash >> 32) as u32));
    line[16..24].copy_from_slice(&hex8(hash as u32));
    line
}

/// The 8 lowercase hex digits of `value`, most significant first, computed eight at a time in
/// one `u64` (one nibble per byte) rather than looked up one by one: the event loop formats one
/// hash per `compute` answer, and the per-digit loop was about 60 instructions of it, this is
/// about 20.
fn hex8(value: u32) -> [u8; 8] {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Spread the nibbles so that byte i (counting from the most significant) holds nibble i.
    let x = u64::from(value);
    let x = ((x & 0xffff_0000) << 16) | (x & 0x0000_ffff);
    let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    let x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // Every byte is now 0..=15; `letters` has 1 in the bytes of 10..=15 (6 + n carries into
    // bit 4 exactly then), which move on from '0' + n to 'a' + n - 10, 39 further.
    let letters = ((x + 6 * ONES) >> 4) & ONES;
    (x + u64::from(b'0') * ONES + letters * 39).to_be_bytes()
}

/// The counters a server reports for `stats`.
///
/// Every field is a count the server keeps; [`Stats::write_to`] prints them in the protocol's
/// `key=value` form, in the order of the fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client connections open now.
    pub connections: u64,
    /// Tasks submitted to the pool and not yet picked up by a worker.
    pub queue_depth: u64,
    /// Worker threads in the pool (0 for a server without one).
    pub workers: u64,
    /// Workers running a task right now.
    pub busy_workers: u64,
    /// Requests answered so far, errors included.
    pub completed: u64,
    /// Responses so far that were `ERROR: …` lines (panics included).
    pub errors: u64,
    /// Tasks that panicked.
    pub panics: u64,
    /// Connections the server could not accept (for lack of file descriptors).
    pub rejected: u64,
}

impl Stats {
    /// Appends the `stats` response line, `\n` included.
    ///
    /// ```
    /// use handoff_protocol::Stats;
    ///
    /// let mut out = Vec::new();
    /// Stats { connections: 2, workers: 4, ..Stats::default() }.write_to(&mut out);
    /// assert_eq!(
    ///     out,
    ///     b"connections=2 queue_depth=0 workers=4 busy_workers=0 completed=0 errors=0 panics=0 rejected=0\n"
    /// );
    /// ```
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let _ = writeln!(
            out,
            "connections={} queue_depth={} workers={} busy_workers={} completed={} errors={} \
             panics={} rejected={}",
            self.connections,
            self.queue_depth,
            self.workers,
            self.busy_workers,
            self.completed,
            self.errors,
            self.panics,
            self.rejected
        );
    }

    /// Reads a `stats` response line back (with or without its `\n`); `None` if a required key
    /// is missing or not a number. Extra keys are allowed, as the protocol allows them.
    pub fn parse(line: &[u8]) -> Option<Stats> {
        let line = std::str::from_utf8(line)
            .ok()?
            .trim_end_matches(['\r', '\n']);
        let mut stats = Stats::default();
        let mut seen = 0u8;
        for pair in line.split(' ') {
            let (key, value) = pair.split_once('=')?;
            let (bit, field) = match key {
                "connections" => (0, &mut stats.connections),
                "queue_depth" => (1, &mut stats.queue_depth),
                "workers" => (2, &mut stats.workers),
                "busy_workers" => (3, &mut stats.busy_workers),
                "completed" => (4, &mut stats.completed),
                "errors" => (5, &mut stats.errors),
                "panics" => (6, &mut stats.panics),
                "rejected" => (7, &mut stats.rejected),
                _ => continue,
            };
            *field = value.parse().ok()?;
            seen |= 1 << bit;
        }
        (seen == 0xff).then_some(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(line: &[u8]) -> String {
        String::from_utf8(expected_response(line).unwrap()).unwrap()
    }

    #[test]
    fn hash_lines_are_sixteen_lowercase_hex_digits() {
        let mut values = vec![
            0,
            1,
            9,
            10,
            15,
            16,
            0xabcdef,
            u64::MAX,
            0x0123_4567_89ab_cdef,
        ];
        // Every nibble value in every position, and a spread of others.
        values.extend((0..16u64).map(|n| n * 0x1111_1111_1111_1111));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            values.push(x);
        }
        for value in values {
            assert_eq!(
                hash_line(value).to_vec(),
                format!("result: {value:016x}\n").into_bytes(),
                "{value:#x}"
            );
        }
    }

    #[test]
    fn compute_is_xxh3_of_every_byte_after_the_first_space() {
        assert_eq!(
            response(b"compute test"),
            format!("result: {:016x}\n", xxh3_64(b"test"))
        );
        assert_eq!(
            response(b"compute  a "),
            format!("result: {:016x}\n", xxh3_64(b" a "))
        );
        assert_eq!(
            response(b"compute"),
            format!("result: {:016x}\n", xxh3_64(b""))
        );
        assert_eq!(response(b"compute "), response(b"compute"));
    }

    #[test]
    fn rehash_chains_little_endian_hashes() {
        let once = xxh3_64(b"abc");
        let twice = xxh3_64(&once.to_le_bytes());
        assert_eq!(response(b"rehash 1 abc"), format!("result: {once:016x}\n"));
        assert_eq!(response(b"rehash 2 abc"), format!("result: {twice:016x}\n"));
        assert_eq!(
            response(b"rehash 1"),
            format!("result: {:016x}\n", xxh3_64(b""))
        );
        assert_eq!(response(b"rehash 0 abc"), "ERROR: rounds out of range\n");
        assert_eq!(
            response(b"rehash 100000001 abc"),
            "ERROR: rounds out of range\n"
        );
        assert_eq!(
            response(b"rehash 99999999999999999999 x"),
            "ERROR: rounds out of range\n"
        );
        assert_eq!(response(b"rehash x abc"), "ERROR: invalid number\n");
        assert_eq!(response(b"rehash -1 abc"), "ERROR: invalid number\n");
        assert_eq!(response(b"rehash"), "ERROR: invalid number\n");
    }

    #[test]
    fn factorial_bounds() {
        assert_eq!(response(b"factorial 0"), "result: 1\n");
        assert_eq!(response(b"factorial 20"), "result: 2432902008176640000\n");
        assert_eq!(response(b"factorial 21"), "ERROR: overflow\n");
        assert_eq!(
            response(b"factorial 123456789012345678901234567890"),
            "ERROR: overflow\n"
        );
        assert_eq!(response(b"factorial -1"), "ERROR: invalid number\n");
        assert_eq!(response(b"factorial"), "ERROR: invalid number\n");
        assert_eq!(response(b"factorial 5 6"), "ERROR: invalid number\n");
    }

    #[test]
    fn sleep_fail_panic_and_loop_verbs() {
        assert_eq!(response(b"sleep 0"), "result: slept 0ms\n");
        assert_eq!(response(b"sleep 10001"), "ERROR: sleep out of range\n");
        assert_eq!(response(b"sleep soon"), "ERROR: invalid number\n");
        assert_eq!(response(b"fail disk on fire"), "ERROR: disk on fire\n");
        assert_eq!(response(b"fail"), "ERROR: \n");
        assert_eq!(
            response(b"panic at the disco"),
            "ERROR: task panicked: at the disco\n"
        );
        assert_eq!(response(b"ping"), "pong\n");
        assert_eq!(response(b"ping extra"), "pong\n");
        assert_eq!(response(b""), "ERROR: empty request\n");
        assert_eq!(response(b"frobnicate"), "ERROR: unknown command\n");
    }

    #[test]
    fn execute_sleeps_and_panics_for_real() {
        assert_eq!(execute(Verb::Sleep, b"1"), Reply::Slept(1));
        let panic = std::panic::catch_unwind(|| execute(Verb::Panic, b"boom")).unwrap_err();
        assert_eq!(
            panic.downcast_ref::<String>().map(String::as_str),
            Some("boom")
        );
    }

    #[test]
    fn panic_message_reads_string_and_str_payloads() {
        let string =
            std::panic::catch_unwind(|| execute(Verb::Panic, b"from a String")).unwrap_err();
        assert_eq!(panic_message(string.as_ref()), "from a String");
        let literal = std::panic::catch_unwind(|| panic!("from a literal")).unwrap_err();
        assert_eq!(panic_message(literal.as_ref()), "from a literal");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(other.as_ref()), NON_STRING_PANIC);
    }

    #[test]
    fn fail_echoes_bytes_that_are_not_utf8() {
        assert_eq!(
            expected_response(b"fail \xff\x00").unwrap(),
            b"ERROR: \xff\x00\n"
        );
    }

    #[test]
    fn stats_round_trip() {
        let stats = Stats {
            connections: 1,
            queue_depth: 2,
            workers: 3,
            busy_workers: 4,
            completed: 5,
            errors: 6,
            panics: 7,
            rejected: 8,
        };
        let mut line = Vec::new();
        stats.write_to(&mut line);
        assert_eq!(Stats::parse(&line), Some(stats));
        assert_eq!(Stats::parse(b"connections=1 extra=9"), None);
    }
}
