//! Fuzz target: the KV command parser, and the store behind it.
//!
//! The properties live in [`fuzz_checks::kv_parse`], where the workspace's corpus replay test
//! (`crates/fuzz_checks/tests/corpus.rs`) calls them on stable for every file of
//! `fuzz/corpus/kv_parse/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_checks::kv_parse(data);
});
