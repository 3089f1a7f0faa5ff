//! Unit tests of the parser and the request rendering.

use super::*;

fn reason(line: &[u8]) -> &'static str {
    parse(line).expect_err("a parse error").reason()
}

#[test]
fn each_verb_parses() {
    assert_eq!(parse(b"GET k"), Ok(Command::Get { key: b"k" }));
    assert_eq!(parse(b"DEL k"), Ok(Command::Del { key: b"k" }));
    assert_eq!(parse(b"STATS"), Ok(Command::Stats));
    assert_eq!(parse(b"STATS "), Ok(Command::Stats));
    assert_eq!(parse(b"KEYS"), Ok(Command::Keys { prefix: b"" }));
    assert_eq!(parse(b"KEYS "), Ok(Command::Keys { prefix: b"" }));
    assert_eq!(parse(b"KEYS user:"), Ok(Command::Keys { prefix: b"user:" }));
    assert_eq!(
        parse(b"SET k v"),
        Ok(Command::Set {
            key: b"k",
            value: b"v",
            expire_secs: None
        })
    );
}

#[test]
fn keys_and_values_are_byte_exact() {
    assert_eq!(
        parse(b"GET \xff\x00\tk\r"),
        Ok(Command::Get {
            key: b"\xff\x00\tk\r"
        })
    );
    assert_eq!(
        parse(b"SET k \x00 two  spaces \xfe"),
        Ok(Command::Set {
            key: b"k",
            value: b"\x00 two  spaces \xfe",
            expire_secs: None
        })
    );
}

#[test]
fn the_value_is_the_rest_of_the_line_and_may_be_empty() {
    let set = |line| match parse(line) {
        Ok(Command::Set {
            value, expire_secs, ..
        }) => (value, expire_secs),
        other => panic!("not a SET: {other:?}"),
    };
    assert_eq!(set(b"SET k "), (&b""[..], None));
    assert_eq!(set(b"SET k  "), (&b" "[..], None));
    assert_eq!(set(b"SET k a b c"), (&b"a b c"[..], None));
    assert_eq!(set(b"SET k a b EX 10"), (&b"a b"[..], Some(10)));
    assert_eq!(set(b"SET k  EX 10"), (&b""[..], Some(10)));
    // Only a trailing ` EX <digits>` is an expiry; anything else is value bytes.
    assert_eq!(set(b"SET k EX 10"), (&b"EX 10"[..], None));
    assert_eq!(set(b"SET k a EX ten"), (&b"a EX ten"[..], None));
    assert_eq!(set(b"SET k a EX 10 "), (&b"a EX 10 "[..], None));
    assert_eq!(set(b"SET k a ex 10"), (&b"a ex 10"[..], None));
    assert_eq!(set(b"SET k a EX -1"), (&b"a EX -1"[..], None));
    assert_eq!(set(b"SET k a EX 5 EX 60"), (&b"a EX 5"[..], Some(60)));
    assert_eq!(set(b"SET k a EX 007"), (&b"a"[..], Some(7)));
}

#[test]
fn every_error_reason() {
    assert_eq!(reason(b""), "empty command");
    assert_eq!(reason(b"get k"), "unknown command");
    assert_eq!(reason(b"FLUSH"), "unknown command");
    assert_eq!(reason(b" GET k"), "unknown command");
    assert_eq!(reason(b"GET"), "missing key");
    assert_eq!(reason(b"GET "), "missing key");
    assert_eq!(reason(b"GET  k"), "missing key");
    assert_eq!(reason(b"DEL"), "missing key");
    assert_eq!(reason(b"SET"), "missing key");
    assert_eq!(reason(b"SET  v"), "missing key");
    assert_eq!(reason(b"SET k"), "missing value");
    assert_eq!(reason(b"GET a b"), "too many arguments");
    assert_eq!(reason(b"GET a "), "too many arguments");
    assert_eq!(reason(b"DEL a b"), "too many arguments");
    assert_eq!(reason(b"KEYS a b"), "too many arguments");
    assert_eq!(reason(b"STATS now"), "too many arguments");
    assert_eq!(reason(b"SET k v EX 0"), "expiry out of range");
    assert_eq!(
        reason(b"SET k v EX 99999999999999999999999"),
        "expiry out of range"
    );
    for error in [
        ParseError::Empty,
        ParseError::UnknownCommand,
        ParseError::MissingKey,
        ParseError::MissingValue,
        ParseError::TooManyArguments,
        ParseError::KeyTooLong,
        ParseError::ValueTooLong,
        ParseError::ExpiryOutOfRange,
    ] {
        assert_eq!(error.to_string(), error.reason());
    }
}

#[test]
fn key_limit_is_exact() {
    let key = vec![b'k'; MAX_KEY_LEN];
    let long = vec![b'k'; MAX_KEY_LEN + 1];
    for verb in ["GET ", "DEL ", "KEYS "] {
        let line = [verb.as_bytes(), &key].concat();
        assert!(parse(&line).is_ok(), "{verb}at the limit");
        let line = [verb.as_bytes(), &long].concat();
        assert_eq!(reason(&line), "key too long", "{verb}over the limit");
    }
    assert!(parse(&[b"SET ", &key[..], b" v"].concat()).is_ok());
    assert_eq!(
        reason(&[b"SET ", &long[..], b" v"].concat()),
        "key too long"
    );
}

#[test]
fn value_limit_is_exact() {
    let value = vec![b'v'; MAX_VALUE_LEN];
    let long = vec![b'v'; MAX_VALUE_LEN + 1];
    assert!(parse(&[b"SET k ", &value[..]].concat()).is_ok());
    assert!(parse(&[b"SET k ", &value[..], b" EX 9"].concat()).is_ok());
    assert_eq!(reason(&[b"SET k ", &long[..]].concat()), "value too long");
    assert_eq!(
        reason(&[b"SET k ", &long[..], b" EX 9"].concat()),
        "value too long"
    );
}

#[test]
fn expiry_limit_is_exact() {
    let at = format!("SET k v EX {MAX_EXPIRY_SECS}");
    let over = format!("SET k v EX {}", MAX_EXPIRY_SECS + 1);
    assert!(matches!(
        parse(at.as_bytes()),
        Ok(Command::Set {
            expire_secs: Some(MAX_EXPIRY_SECS),
            ..
        })
    ));
    assert_eq!(reason(over.as_bytes()), "expiry out of range");
    assert!(parse(b"SET k v EX 1").is_ok());
}

#[test]
fn the_longest_set_line_fits_the_framer_limit() {
    let longest = format!(" EX {MAX_EXPIRY_SECS}").len() + "SET ".len() + MAX_KEY_LEN + 1;
    assert!(longest + MAX_VALUE_LEN <= 65_536);
    assert!("VALUE ".len() + MAX_VALUE_LEN <= 65_536);
}

#[test]
fn rendering_round_trips() {
    for line in [
        &b"GET k"[..],
        b"DEL \xff",
        b"SET k a b",
        b"SET k ",
        b"SET k a EX 5 EX 60",
        b"SET k  EX 1",
        b"KEYS",
        b"KEYS pre",
        b"STATS",
    ] {
        let command = parse(line).unwrap();
        let rendered = command.to_owned_line();
        assert_eq!(rendered.last(), Some(&b'\n'));
        assert_eq!(parse(&rendered[..rendered.len() - 1]), Ok(command));
    }
    assert_eq!(
        parse(b"SET k v EX 007").unwrap().to_owned_line(),
        b"SET k v EX 7\n"
    );
}
