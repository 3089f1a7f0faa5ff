//! Waking a sleeping event loop from another thread: [`Waker`], built on `eventfd`.
//!
//! An event loop sleeps in `epoll_wait`, which returns only when an fd is ready. To hand it work
//! from another thread, that thread must make some fd ready. An eventfd is the cheapest such fd:
//! a 64-bit counter in the kernel that is readable whenever it is non-zero. A wake *adds 1*; the
//! loop *reads*, which returns the sum and resets it to 0.
//!
//! That gives coalescing for free: a thousand wakes before the loop gets round to it are one
//! readable fd and one read, not a thousand events. (A pipe, the older trick, fills up and needs
//! one byte per wake.) The counter cannot realistically overflow — it would take 2^64 - 1 wakes
//! without a read — but if it ever did, the write fails with `WouldBlock`, which means "already
//! signalled", so [`Waker::wake`] treats it as success.
//!
//! The order of draining matters: the loop drains the eventfd *before* it looks for the work
//! (the posted callbacks, or the user's wake callback). A wake that arrives after the drain
//! makes the fd readable again and is seen on the next turn; had the loop drained *after*
//! looking, a wake landing in between would be erased with nobody having seen its work.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::sys;

/// Wakes an event loop from any thread. Cheap to clone; all clones share one eventfd.
///
/// Made by [`Dispatcher::add_waker`](crate::Dispatcher::add_waker), which also registers the
/// callback the loop runs when woken.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// Creates a waker with a fresh eventfd (not registered with any loop yet).
    pub(crate) fn new() -> io::Result<Waker> {
        Ok(Waker {
            fd: Arc::new(sys::eventfd()?),
        })
    }

    /// Wakes the loop. Many wakes before the loop runs coalesce into one callback.
    pub fn wake(&self) {
        match sys::eventfd_write(self.fd.as_fd(), 1) {
            // `WouldBlock` means the counter is at its maximum: the loop is certainly signalled.
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            // An eventfd write of 1 cannot fail otherwise while the fd is open (and `self`
            // keeps it open), so there is nothing a caller could do about an error.
            Err(_) => {}
        }
    }

    /// Reads and resets the counter; returns how many wakes were coalesced (0: none pending).
    pub(crate) fn drain(&self) -> u64 {
        sys::eventfd_read(self.fd.as_fd()).unwrap_or(0)
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests;
