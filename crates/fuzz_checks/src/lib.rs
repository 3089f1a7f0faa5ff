//! The properties the fuzz targets check, as plain functions of the input bytes.
//!
//! `fuzz/` (a cargo-fuzz workspace of its own, nightly only) calls each function from its target
//! of the same name, and `tests/corpus.rs` replays every file of `fuzz/corpus/<target>/` through
//! the same function on stable, so every `cargo test --workspace` checks the inputs the fuzzer
//! kept, with or without nightly. A property that does not hold panics, which is what both the
//! fuzzer and the test report.

use std::time::{Duration, Instant};

use handoff_protocol::{Frame, LineFramer, MAX_LINE_LEN};
use kv_store::{KvEngine, LockStrategy, Reply, parse};

/// The names of the fuzz targets, each the name of its function here and of its corpus folder.
pub const TARGETS: [&str; 2] = ["kv_parse", "line_framer"];

/// Runs the check of the target called `target` on `data`; `false` if no target has that name.
pub fn check(target: &str, data: &[u8]) -> bool {
    match target {
        "kv_parse" => kv_parse(data),
        "line_framer" => line_framer(data),
        _ => return false,
    }
    true
}

/// The KV command parser, and the store behind it. For any input bytes:
///
/// - `kv_store::parse` never panics on the whole input taken as one line;
/// - a line it accepts renders (`Command::write_to`) to a line that parses to the same command,
///   and rendering that again gives the same bytes (the rendering is canonical);
/// - split on `\n` into request lines, every line executed by a fresh `KvEngine` is answered
///   with exactly one reply line, and `STATS` afterwards counts every `ERROR` reply.
pub fn kv_parse(data: &[u8]) {
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
}

/// A frame, owned, so frames from different framers can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Line(Vec<u8>),
    TooLong,
}

fn own(frame: Frame<'_>) -> Owned {
    match frame {
        Frame::Line(line) => Owned::Line(line.to_vec()),
        Frame::TooLong => Owned::TooLong,
    }
}

fn drain(framer: &mut LineFramer, out: &mut Vec<Owned>) {
    while let Some(frame) = framer.next_frame() {
        out.push(own(frame));
    }
}

/// What the protocol says the stream's frames are.
fn naive_frames(stream: &[u8]) -> Vec<Owned> {
    let mut frames = Vec::new();
    let mut segments: Vec<&[u8]> = stream.split(|byte| *byte == b'\n').collect();
    // The last segment has no `\n`: a final line if it is not empty.
    let last = segments.pop().unwrap_or_default();
    for segment in segments {
        if segment.len() > MAX_LINE_LEN {
            frames.push(Owned::TooLong);
            return frames;
        }
        frames.push(Owned::Line(
            segment.strip_suffix(b"\r").unwrap_or(segment).to_vec(),
        ));
    }
    if last.len() > MAX_LINE_LEN {
        frames.push(Owned::TooLong);
    } else if !last.is_empty() {
        frames.push(Owned::Line(last.to_vec()));
    }
    frames
}

/// A chunk size from a seed: mostly small (1..=64 bytes, byte-at-a-time included), or, with the
/// top bit set, up to 128 KiB.
fn chunk_size(seed: u16) -> usize {
    if seed & 0x8000 != 0 {
        usize::from(seed & 0x7fff) * 4 + 1
    } else {
        usize::from(seed % 64) + 1
    }
}

/// `handoff_protocol::LineFramer` under arbitrary chunking.
///
/// The input is a recipe: byte 0 says how many times the payload repeats (so streams reach past
/// the 65,536-byte line limit although inputs stay small), bytes 1..9 are four chunk-size seeds,
/// the rest is the payload. The stream is fed to one framer whole and to another in chunks of
/// the seeded sizes (alternating `extend` and `fill_with`), draining lines after every chunk.
/// Both must give the same frames, those frames must be what a naive split on `\n` predicts
/// (one `\r` stripped before a `\n`, `TooLong` once for a line over the limit, then nothing), and
/// no line may exceed the limit.
pub fn line_framer(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let repeats = usize::from(data[0]) + 1;
    let seeds: Vec<u16> = data[1..9]
        .chunks(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let payload = &data[9..];
    let stream: Vec<u8> = payload.repeat(repeats.min(300_000 / payload.len().max(1)).max(1));

    let mut whole = LineFramer::new();
    let mut expected = Vec::new();
    whole.extend(&stream);
    drain(&mut whole, &mut expected);
    if let Some(frame) = whole.finish() {
        expected.push(own(frame));
    }

    let mut chunked = LineFramer::new();
    let mut got = Vec::new();
    let mut offset = 0;
    let mut turn = 0;
    while offset < stream.len() {
        let size = chunk_size(seeds[turn % seeds.len()]).min(stream.len() - offset);
        let chunk = &stream[offset..offset + size];
        if turn % 2 == 0 {
            chunked.extend(chunk);
        } else {
            let filled = chunked.fill_with(size, |spare| {
                spare[..size].copy_from_slice(chunk);
                Ok::<usize, ()>(size)
            });
            assert_eq!(filled, Ok(size));
        }
        offset += size;
        turn += 1;
        drain(&mut chunked, &mut got);
    }
    if let Some(frame) = chunked.finish() {
        got.push(own(frame));
    }

    assert_eq!(got, expected, "chunking changed the frames");
    assert_eq!(
        expected,
        naive_frames(&stream),
        "the frames differ from the protocol's"
    );
    for frame in &got {
        if let Owned::Line(line) = frame {
            assert!(line.len() <= MAX_LINE_LEN);
        }
    }
    let too_long = got.iter().filter(|frame| **frame == Owned::TooLong).count();
    assert!(too_long <= 1, "TooLong reported {too_long} times");
    if too_long == 1 {
        assert_eq!(got.last(), Some(&Owned::TooLong), "frames after TooLong");
    }
}
