//! Fuzz target: the KV command parser, and the store behind it.
//!
//! For any input bytes:
//!
//! - `kv_store::parse` never panics on the whole input taken as one line;
//! - a line it accepts renders (`Command::write_to`) to a line that parses to the same command,
//!   and rendering that again gives the same bytes (the rendering is canonical);
//! - split on `\n` into request lines, every line executed by a fresh `KvEngine` is answered
//!   with exactly one reply line, and `STATS` afterwards counts every `ERROR` reply.

#![no_main]

use std::time::{Duration, Instant};

use kv_store::{KvEngine, LockStrategy, Reply, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = parse(data) {
        let rendered = command.to_owned_line();
        let reparsed = parse(&rendered[..rendered.len() - 1]);
        assert_eq!(
            reparsed,
            Ok(command),
            "render then parse changed the command"
        );
        assert_eq!(
            reparsed.unwrap().to_owned_line(),
            rendered,
            "rendering is not canonical"
        );
    }

    let engine = KvEngine::new(LockStrategy::Sharded(2));
    let start = Instant::now();
    let mut errors = 0;
    for (index, line) in data.split(|byte| *byte == b'\n').enumerate() {
        // Time moves a second per line, so `EX` expiries come due within one input.
        let now = start + Duration::from_secs(index as u64);
        let reply = engine.execute_line(line, now);
        errors += u64::from(matches!(reply, Reply::Error(_)));
        let bytes = reply.to_bytes();
        assert_eq!(
            bytes.iter().position(|byte| *byte == b'\n'),
            Some(bytes.len() - 1)
        );
        if index % 8 == 7 {
            engine.sweep(now, 64);
        }
    }
    assert_eq!(engine.stats().errors, errors);
});
