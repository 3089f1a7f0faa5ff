//! The text protocol's requests: parsing a line into a [`Command`], and rendering one back.
//!
//! A request is one line (the server's `LineFramer` has already removed its `\n` and a `\r`
//! before it). The verb is the bytes before the first space and must match exactly, in
//! uppercase. The rules, which `course/PROTOCOL.md` states for clients:
//!
//! | line | command |
//! |---|---|
//! | `GET <key>` | [`Command::Get`] |
//! | `SET <key> <value>` | [`Command::Set`] without expiry |
//! | `SET <key> <value> EX <seconds>` | [`Command::Set`] that expires after `seconds` |
//! | `DEL <key>` | [`Command::Del`] |
//! | `KEYS` or `KEYS <prefix>` | [`Command::Keys`] |
//! | `STATS` | [`Command::Stats`] |
//!
//! - A key is 1 to [`MAX_KEY_LEN`] bytes, any byte but a space (so a key ends at the next
//!   space). Bytes need not be UTF-8.
//! - A value is every byte after the space that ends the key, spaces included, possibly none,
//!   up to [`MAX_VALUE_LEN`] bytes — unless the line ends with ` EX ` and one or more ASCII
//!   digits: that suffix is the expiry, and the value is what comes before it. So `SET k a b`
//!   stores `a b`, `SET k a b EX 10` stores `a b` for ten seconds, and a value that itself ends
//!   in ` EX <digits>` can be stored only with an expiry after it (`SET k a EX 5 EX 60`).
//!   The seconds must be 1 to [`MAX_EXPIRY_SECS`].
//! - Anything else is a [`ParseError`], whose [`reason`](ParseError::reason) is the exact text
//!   after `ERROR ` in the reply.

use std::fmt;

/// The longest key, in bytes (memcached's limit; it keeps `KEYS` replies and the table's key
/// copies small).
pub const MAX_KEY_LEN: usize = 250;

/// The longest value, in bytes. Chosen so that the longest `SET` line (verb, longest key,
/// longest value, ` EX ` and ten digits) and the `VALUE` reply both stay under the framer's
/// 65,536-byte line limit, with room to spare.
pub const MAX_VALUE_LEN: usize = 64_512;

/// The longest expiry `EX` accepts, in seconds: ten years (365-day years).
pub const MAX_EXPIRY_SECS: u64 = 10 * 365 * 24 * 60 * 60;

/// One parsed request. It borrows its key and value from the request line, so parsing
/// allocates nothing; the store copies what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `GET <key>`: the value stored for the key.
    Get {
        /// The key.
        key: &'a [u8],
    },
    /// `SET <key> <value> [EX <seconds>]`: store the value, replacing any earlier one and its
    /// expiry.
    Set {
        /// The key.
        key: &'a [u8],
        /// The value, byte for byte.
        value: &'a [u8],
        /// Seconds until the entry expires, or `None` for never.
        expire_secs: Option<u64>,
    },
    /// `DEL <key>`: remove the key.
    Del {
        /// The key.
        key: &'a [u8],
    },
    /// `KEYS [<prefix>]`: every live key that starts with the prefix (all keys when empty).
    Keys {
        /// The prefix; empty for every key.
        prefix: &'a [u8],
    },
    /// `STATS`: the counters and latency percentiles as one line.
    Stats,
}

/// Why a line is not a command. Each variant's [`reason`](Self::reason) is the reply's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The line is empty: `ERROR empty command`.
    Empty,
    /// The verb is none of `GET`, `SET`, `DEL`, `KEYS`, `STATS`: `ERROR unknown command`.
    UnknownCommand,
    /// `GET`, `SET` or `DEL` without a key (or with an empty one, as in `GET  k`):
    /// `ERROR missing key`.
    MissingKey,
    /// `SET <key>` with no space after the key: `ERROR missing value`.
    MissingValue,
    /// Bytes after the last argument a verb takes (a trailing space counts):
    /// `ERROR too many arguments`.
    TooManyArguments,
    /// A key (or `KEYS` prefix) over [`MAX_KEY_LEN`] bytes: `ERROR key too long`.
    KeyTooLong,
    /// A value over [`MAX_VALUE_LEN`] bytes: `ERROR value too long`.
    ValueTooLong,
    /// `EX` seconds of 0 or over [`MAX_EXPIRY_SECS`]: `ERROR expiry out of range`.
    ExpiryOutOfRange,
}

impl ParseError {
    // starter: w09-l02 todo "Do 2: match each variant to its exact reason text"
    /// The reply's text after `ERROR `.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Empty => "empty command",
            ParseError::UnknownCommand => "unknown command",
            ParseError::MissingKey => "missing key",
            ParseError::MissingValue => "missing value",
            ParseError::TooManyArguments => "too many arguments",
            ParseError::KeyTooLong => "key too long",
            ParseError::ValueTooLong => "value too long",
            ParseError::ExpiryOutOfRange => "expiry out of range",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

// starter: w09-l02 todo "Do 3: Empty for an empty line, split off the verb, then each verb's arguments"
/// Parses one request line (without its `\n`) into a [`Command`].
///
/// ```
/// use kv_store::{Command, ParseError, parse};
///
/// assert_eq!(parse(b"GET user:1"), Ok(Command::Get { key: b"user:1" }));
/// assert_eq!(
///     parse(b"SET greeting hello world EX 30"),
///     Ok(Command::Set { key: b"greeting", value: b"hello world", expire_secs: Some(30) })
/// );
/// assert_eq!(parse(b"get user:1"), Err(ParseError::UnknownCommand));
/// assert_eq!(parse(b"SET k v EX 0").unwrap_err().reason(), "expiry out of range");
/// ```
pub fn parse(line: &[u8]) -> Result<Command<'_>, ParseError> {
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (verb, rest) = split_at_space(line);
    match verb {
        b"GET" => Ok(Command::Get {
            key: only_key(rest)?,
        }),
        b"DEL" => Ok(Command::Del {
            key: only_key(rest)?,
        }),
        b"SET" => parse_set(rest),
        b"KEYS" => {
            let prefix = rest.unwrap_or_default();
            if memchr::memchr(b' ', prefix).is_some() {
                return Err(ParseError::TooManyArguments);
            }
            if prefix.len() > MAX_KEY_LEN {
                return Err(ParseError::KeyTooLong);
            }
            Ok(Command::Keys { prefix })
        }
        b"STATS" => match rest {
            None | Some(b"") => Ok(Command::Stats),
            Some(_) => Err(ParseError::TooManyArguments),
        },
        _ => Err(ParseError::UnknownCommand),
    }
}

// starter: w09-l02 todo "Do 3: the bytes before the first space, and Some of the bytes after it, None without a space"
/// Splits at the first space: the bytes before it, and the bytes after it (`None` when the
/// line has no space at all, which is different from an empty remainder).
fn split_at_space(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b' ', bytes) {
        Some(space) => (&bytes[..space], Some(&bytes[space + 1..])),
        None => (bytes, None),
    }
}

// starter: w09-l02 todo "Do 4: split the key off rest; MissingKey when absent or empty, KeyTooLong past MAX_KEY_LEN"
/// The key at the start of `rest` and whatever follows it.
fn leading_key(rest: Option<&[u8]>) -> Result<(&[u8], Option<&[u8]>), ParseError> {
    let (key, after) = split_at_space(rest.ok_or(ParseError::MissingKey)?);
    if key.is_empty() {
        return Err(ParseError::MissingKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ParseError::KeyTooLong);
    }
    Ok((key, after))
}

// starter: w09-l02 todo "Do 4: leading_key, then TooManyArguments if anything follows it"
/// `rest` must be exactly one key.
fn only_key(rest: Option<&[u8]>) -> Result<&[u8], ParseError> {
    match leading_key(rest)? {
        (key, None) => Ok(key),
        (_, Some(_)) => Err(ParseError::TooManyArguments),
    }
}

// starter: w09-l02 todo "Do 5: key, MissingValue without a space, split_expiry, then the value length check"
fn parse_set(rest: Option<&[u8]>) -> Result<Command<'_>, ParseError> {
    let (key, value) = leading_key(rest)?;
    let value = value.ok_or(ParseError::MissingValue)?;
    let (value, expire_secs) = match split_expiry(value) {
        Some((value, digits)) => (value, Some(expiry_secs(digits)?)),
        None => (value, None),
    };
    if value.len() > MAX_VALUE_LEN {
        return Err(ParseError::ValueTooLong);
    }
    Ok(Command::Set {
        key,
        value,
        expire_secs,
    })
}

// starter: w09-l02 todo "Do 5: the trailing ASCII digits, and the value before them only if it ends in the EX suffix"
/// If `value` ends with ` EX <digits>`, the bytes before that suffix and the digits.
fn split_expiry(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let digits_start = value
        .iter()
        .rposition(|byte| !byte.is_ascii_digit())
        .map_or(0, |last| last + 1);
    let digits = &value[digits_start..];
    if digits.is_empty() {
        return None;
    }
    let before = value[..digits_start].strip_suffix(b" EX ")?;
    Some((before, digits))
}

// starter: w09-l02 todo "Do 5: checked_mul and checked_add per digit, capped at MAX_EXPIRY_SECS, 0 out of range"
/// ASCII digits as seconds in 1..=MAX_EXPIRY_SECS; overflow is out of range too.
fn expiry_secs(digits: &[u8]) -> Result<u64, ParseError> {
    let mut secs: u64 = 0;
    for digit in digits {
        secs = secs
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(digit - b'0')))
            .filter(|s| *s <= MAX_EXPIRY_SECS)
            .ok_or(ParseError::ExpiryOutOfRange)?;
    }
    if secs == 0 {
        return Err(ParseError::ExpiryOutOfRange);
    }
    Ok(secs)
}

impl Command<'_> {
    // starter: w09-l02 todo "Do 6: the canonical line for each variant, then a newline"
    /// Appends the request line for this command, `\n` included, in the form [`parse`] reads:
    /// parsing the line without its `\n` gives back this command, for every command that
    /// [`parse`] produced. (A hand-made `Set` whose value ends in ` EX <digits>` and has no
    /// expiry cannot be written that way; `parse` never produces one.)
    ///
    /// ```
    /// use kv_store::{Command, parse};
    ///
    /// let mut line = Vec::new();
    /// Command::Set { key: b"k", value: b"a b", expire_secs: Some(5) }.write_to(&mut line);
    /// assert_eq!(line, b"SET k a b EX 5\n");
    /// assert_eq!(parse(&line[..line.len() - 1]).unwrap().to_owned_line(), line);
    /// ```
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match *self {
            Command::Get { key } => {
                out.extend_from_slice(b"GET ");
                out.extend_from_slice(key);
            }
            Command::Set {
                key,
                value,
                expire_secs,
            } => {
                out.extend_from_slice(b"SET ");
                out.extend_from_slice(key);
                out.push(b' ');
                out.extend_from_slice(value);
                if let Some(secs) = expire_secs {
                    out.extend_from_slice(format!(" EX {secs}").as_bytes());
                }
            }
            Command::Del { key } => {
                out.extend_from_slice(b"DEL ");
                out.extend_from_slice(key);
            }
            Command::Keys { prefix } => {
                out.extend_from_slice(b"KEYS");
                if !prefix.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(prefix);
                }
            }
            Command::Stats => out.extend_from_slice(b"STATS"),
        }
        out.push(b'\n');
    }

    /// The request line for this command, `\n` included (see [`write_to`](Self::write_to)).
    pub fn to_owned_line(&self) -> Vec<u8> {
        let mut line = Vec::new();
        self.write_to(&mut line);
        line
    }
}

#[cfg(test)]
mod tests;
