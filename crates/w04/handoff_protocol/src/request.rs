//! Requests: what the event loop does with a line.
//!
//! The loop does as little as it can with a request: it splits off the verb and decides where
//! the verb runs. Parsing and checking a verb's arguments is part of the verb's work, so for the
//! worker verbs it happens on the worker, and an invalid argument reaches the client through the
//! same path as a result does (W05 L05).

/// A request's verb: the bytes before the first space, matched exactly (verbs are lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `compute <text>`: XXH3-64 of the text. Worker.
    Compute,
    /// `rehash <n> <text>`: XXH3-64 of the text, rehashed `n - 1` more times. Worker.
    Rehash,
    /// `factorial <n>`: `n!` for `n` in `0..=20`. Worker.
    Factorial,
    /// `sleep <ms>`: blocks the worker for `ms` milliseconds. Worker.
    Sleep,
    /// `fail <text>`: the task returns the error `<text>`. Worker.
    Fail,
    /// `panic <text>`: the task panics with `<text>`. Worker.
    Panic,
    /// `ping`: answered by the event loop itself.
    Ping,
    /// `stats`: the server's counters, answered by the event loop.
    Stats,
    /// An empty line.
    Empty,
    /// Any other verb.
    Unknown,
}

impl Verb {
    /// Whether the verb is CPU (or blocking) work that belongs on a worker thread.
    ///
    /// The other verbs are answered by the event loop without the pool: `ping` measures the loop
    /// itself, `stats` reads the loop's counters, and the errors for empty lines and unknown verbs
    /// need no work at all.
    pub fn runs_on_worker(self) -> bool {
        matches!(
            self,
            Verb::Compute | Verb::Rehash | Verb::Factorial | Verb::Sleep | Verb::Fail | Verb::Panic
        )
    }

    /// The verb as it is written on the wire (`""` for an empty line, `"?"` for unknown verbs).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Compute => "compute",
            Verb::Rehash => "rehash",
            Verb::Factorial => "factorial",
            Verb::Sleep => "sleep",
            Verb::Fail => "fail",
            Verb::Panic => "panic",
            Verb::Ping => "ping",
            Verb::Stats => "stats",
            Verb::Empty => "",
            Verb::Unknown => "?",
        }
    }
}

/// Splits a request line (already without its line ending) into its verb and argument bytes.
///
/// The verb ends at the first space; the arguments are every byte after that space, spaces
/// included, possibly none. A line without a space is all verb.
///
/// ```
/// use handoff_protocol::{Verb, split_request};
///
/// assert_eq!(split_request(b"compute  two spaces "), (Verb::Compute, &b" two spaces "[..]));
/// assert_eq!(split_request(b"ping"), (Verb::Ping, &b""[..]));
/// assert_eq!(split_request(b"PING"), (Verb::Unknown, &b""[..]));
/// assert_eq!(split_request(b""), (Verb::Empty, &b""[..]));
/// ```
pub fn split_request(line: &[u8]) -> (Verb, &[u8]) {
    if line.is_empty() {
        return (Verb::Empty, line);
    }
    let (verb, args) = match memchr::memchr(b' ', line) {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &line[line.len()..]),
    };
    let verb = match verb {
        b"compute" => Verb::Compute,
        b"rehash" => Verb::Rehash,
        b"factorial" => Verb::Factorial,
        b"sleep" => Verb::Sleep,
        b"fail" => Verb::Fail,
        b"panic" => Verb::Panic,
        b"ping" => Verb::Ping,
        b"stats" => Verb::Stats,
        _ => Verb::Unknown,
    };
    (verb, args)
}

/// A decimal argument, as the protocol reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Number {
    /// ASCII digits only, and their value fits in a `u64`.
    Value(u64),
    /// ASCII digits only, but more than a `u64` holds: a number, just out of every range.
    TooLarge,
    /// Empty, or anything but ASCII digits (a sign, a space, a letter).
    Invalid,
}

/// Reads a non-negative decimal integer: one or more ASCII digits and nothing else.
pub(crate) fn parse_number(bytes: &[u8]) -> Number {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Number::Invalid;
    }
    bytes
        .iter()
        .try_fold(0u64, |value, digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .map_or(Number::TooLarge, Number::Value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_exact_and_lowercase() {
        for (line, verb) in [
            (&b"compute x"[..], Verb::Compute),
            (b"rehash 1 x", Verb::Rehash),
            (b"factorial 3", Verb::Factorial),
            (b"sleep 1", Verb::Sleep),
            (b"fail x", Verb::Fail),
            (b"panic x", Verb::Panic),
            (b"ping", Verb::Ping),
            (b"stats", Verb::Stats),
            (b"", Verb::Empty),
            (b" ", Verb::Unknown),
            (b"Compute x", Verb::Unknown),
            (b"computex", Verb::Unknown),
            (b"\xff\xfe", Verb::Unknown),
        ] {
            assert_eq!(
                split_request(line).0,
                verb,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn arguments_keep_every_byte_after_the_first_space() {
        assert_eq!(split_request(b"fail  a  b ").1, b" a  b ");
        assert_eq!(split_request(b"compute ").1, b"");
        assert_eq!(split_request(b"compute").1, b"");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"0"), Number::Value(0));
        assert_eq!(parse_number(b"0020"), Number::Value(20));
        assert_eq!(
            parse_number(b"18446744073709551615"),
            Number::Value(u64::MAX)
        );
        assert_eq!(parse_number(b"18446744073709551616"), Number::TooLarge);
        for invalid in [&b""[..], b"-1", b"+1", b"1 ", b" 1", b"1.0", b"x", b"1e3"] {
            assert_eq!(parse_number(invalid), Number::Invalid);
        }
    }
}
