//! The workspace's integration tests live in `integration/`, one test binary with a module per
//! area and a shared `util` module; this library target is empty on purpose.
