//! The workspace's integration tests: one binary, one module per area, and a shared [`util`].
//!
//! - [`conformance`]: the wire protocol, written once and run against both servers that speak it
//!   (`handoff_server` and the W04 `epoll_server`), for everything that needs no thread pool.
//! - [`errors`]: every binary's operational errors, one clean line each.
//! - `faults` (only with `--cfg fault_injection`): the servers under injected resets and
//!   `EMFILE`, each closing only the connection it hits.
//! - [`handoff`]: what only the handoff server promises: work on a pool while the loop stays
//!   responsive, panics isolated, backpressure, the thread layout and the SIGTERM drain.
//! - [`loops`]: `handoff_server --loops N`: which loop serves which connection, the thread
//!   layout, `stats` over every loop, the W06 limits split over the loops, the drain.
//! - [`overload`]: the handoff server's W06 overload controls: the admission gate and shedding,
//!   request timeouts, the retry budget and their counters.
//!
//! The servers are run as real processes on `127.0.0.1`, port 0, exactly as graders run them.
//! `cargo test --workspace` builds both binaries first; `test_support::binary_path` says what to
//! run when one is missing. Servers, clients and `/proc` facts come from `test_support`, the
//! workspace's one harness; [`util`] adds what is this suite's own.

mod conformance;
mod errors;
#[cfg(fault_injection)]
mod faults;
mod handoff;
mod loops;
mod overload;
mod util;
