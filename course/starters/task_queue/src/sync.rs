//! The synchronisation seam: the queue names its primitives through this module so that the very
//! same code runs on `std` in normal builds and on loom's model-checked replicas under
//! `RUSTFLAGS="--cfg loom"`.

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
