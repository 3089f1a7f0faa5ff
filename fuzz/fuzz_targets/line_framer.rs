//! Fuzz target: `handoff_protocol::LineFramer` under arbitrary chunking.
//!
//! The properties live in [`fuzz_checks::line_framer`], where the workspace's corpus replay test
//! (`crates/fuzz_checks/tests/corpus.rs`) calls them on stable for every file of
//! `fuzz/corpus/line_framer/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_checks::line_framer(data);
});
