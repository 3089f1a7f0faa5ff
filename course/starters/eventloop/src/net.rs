//! Non-blocking TCP sockets for an event loop: [`TcpListener`] and [`TcpStream`].
//!
//! `std::net` sockets work in non-blocking mode too, but an event loop needs a few things they do
//! not offer, and each is a lesson of its own:
//!
//! - **Sends that cannot kill the process.** Writing to a connection whose peer has gone away
//!   raises SIGPIPE, whose default action ends the process. Every send here passes
//!   `MSG_NOSIGNAL`, so the loop gets an `EPIPE` error for that one connection instead.
//! - **Accept under fd exhaustion.** When the process runs out of fds, `accept` fails with
//!   `EMFILE` (or `ENFILE` system-wide) — but the pending connection stays in the listen queue, so
//!   the listening socket is *still readable*. A level-triggered loop would wake up, fail, and wake
//!   up again at 100% CPU forever. [`TcpListener::accept`] keeps one spare fd (open on
//!   `/dev/null`) for exactly this moment: it closes the spare, accepts the pending connection
//!   into the freed slot, closes it at once (the client sees the connection closed), counts it in
//!   [`TcpListener::rejected`], and re-opens the spare when fds are available again. The queue
//!   drains and the loop goes back to sleep.
//! - **A listen backlog of `SOMAXCONN`**, so a burst of thousands of connects is queued by the
//!   kernel rather than refused while the loop is busy.
//!
//! Everything is created `CLOEXEC | NONBLOCK` and owned as an `OwnedFd`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

/// The default listen backlog: the kernel's maximum (`SOMAXCONN`).
pub const DEFAULT_BACKLOG: i32 = libc::SOMAXCONN;

/// A non-blocking listening TCP socket with an EMFILE-safe [`accept`](TcpListener::accept).
///
/// ```
/// use eventloop::net::{DEFAULT_BACKLOG, TcpListener};
///
/// let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
/// let addr = listener.local_addr().unwrap();
/// let _client = std::net::TcpStream::connect(addr).unwrap();
/// // The connection is complete in the kernel once connect returns; accept picks it up.
/// let (stream, _peer) = loop {
///     if let Some(accepted) = listener.accept().unwrap() {
///         break accepted;
///     }
/// };
/// assert_eq!(stream.local_addr().unwrap(), addr);
/// ```
#[derive(Debug)]
pub struct TcpListener {
    /// The listening socket.
    fd: OwnedFd,
    /// The spare fd the EMFILE policy sacrifices to accept-and-close a connection; `None` while
    /// it is spent (the process is still out of fds). A mutex rather than a `Cell` keeps the
    /// listener `Sync`; only the loop thread ever takes it, so it is never contended.
    spare: Mutex<Option<OwnedFd>>,
    /// Connections accepted and closed at once because the process was out of fds.
    rejected: AtomicU64,
}

impl TcpListener {
    /// Binds a non-blocking listener to `addr` (port 0 picks a free port) with `SO_REUSEADDR`,
    /// listening with `backlog` (use [`DEFAULT_BACKLOG`] for `SOMAXCONN`).
    pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
        todo!("W04 L05: bind")
    }

    /// Like [`bind`](Self::bind), with `SO_REUSEPORT` as well: several listeners (one per event
    /// loop) may then bind the same address, each with its own accept queue, and the kernel
    /// spreads incoming connections over them by a hash of the connection's addresses. Each
    /// loop accepts only from its own queue, so no two loops contend for one listener.
    ///
    /// Every listener sharing the port must set the option (and belong to the same user); a
    /// plain `bind` to the port then fails with `AddrInUse`. Bind the first to port 0 and the
    /// rest to the port it got.
    ///
    /// ```
    /// use eventloop::net::{DEFAULT_BACKLOG, TcpListener};
    ///
    /// let first = TcpListener::bind_reuse_port("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
    /// let addr = first.local_addr().unwrap();
    /// let second = TcpListener::bind_reuse_port(addr, DEFAULT_BACKLOG).unwrap();
    /// assert_eq!(second.local_addr().unwrap(), addr);
    /// ```
    pub fn bind_reuse_port(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
        todo!("W04 L05: bind_reuse_port")
    }

    fn bind_with(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<TcpListener> {
        todo!("W04 L05: bind_with")
    }

    /// The address the listener is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        todo!("W04 L05: local_addr")
    }

    /// Accepts one pending connection: `Ok(None)` when there is none (`WouldBlock`).
    ///
    /// When the process is out of fds (`EMFILE`/`ENFILE`), the pending connection is accepted
    /// with the spare fd's slot and closed at once, counted in [`rejected`](Self::rejected), and
    /// the call reports `Ok(None)` if the queue is then empty or tries the next one; if no spare
    /// is held either, the error is returned. Other errors are returned as they are; errors that
    /// concern only the aborted connection (`ECONNABORTED`, …) are skipped.
    pub fn accept(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        todo!("W04 L05: accept")
    }

    /// How many connections the EMFILE policy accepted and closed at once.
    pub fn rejected(&self) -> u64 {
        todo!("W04 L05: rejected")
    }

    /// Whether the spare fd is currently held (false only while the process is out of fds).
    pub fn has_spare_fd(&self) -> bool {
        todo!("W04 L05: has_spare_fd")
    }

    /// Re-opens the spare fd if it was spent and fds are available again.
    fn restore_spare(&self) {
        todo!("W04 L05: restore_spare")
    }

    /// Spends the spare fd to accept and close one pending connection. Returns false if there
    /// was no spare to spend.
    fn reject_one(&self) -> io::Result<bool> {
        todo!("W04 L05: reject_one")
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        todo!("W04 L05: as_fd")
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        todo!("W04 L05: as_raw_fd")
    }
}

fn is_out_of_fds(error: &io::Error) -> bool {
    todo!("W04 L05: is_out_of_fds")
}

/// Errors of `accept` that concern only the connection being accepted (Linux passes pending
/// network errors of the new socket on to accept).
fn is_connection_specific(error: &io::Error) -> bool {
    todo!("W04 L05: is_connection_specific")
}

/// A non-blocking, connected TCP socket.
///
/// `recv` and `send` return `WouldBlock` errors when the socket is not ready; the event loop
/// waits for readiness and tries again.
#[derive(Debug)]
pub struct TcpStream {
    fd: OwnedFd,
}

impl TcpStream {
    /// Starts a non-blocking connection to `addr`. The connection may still be in progress when
    /// this returns: wait until the socket is writable before sending.
    pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        todo!("W04 L05: connect")
    }

    /// Receives into `buf`; `Ok(0)` means the peer shut down its write side (end of input).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        todo!("W04 L05: recv")
    }

    /// Sends from `buf` with `MSG_NOSIGNAL`; returns how many bytes the kernel took.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        todo!("W04 L05: send")
    }

    /// Sends several buffers in one system call (`sendmsg`), with `MSG_NOSIGNAL`.
    pub fn send_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        todo!("W04 L05: send_vectored")
    }

    /// Shuts down the write side: the peer reads end of input after the bytes already sent.
    pub fn shutdown_write(&self) -> io::Result<()> {
        todo!("W04 L05: shutdown_write")
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm), so small responses leave at once.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        todo!("W04 L05: set_nodelay")
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        todo!("W04 L05: local_addr")
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        todo!("W04 L05: peer_addr")
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        todo!("W04 L05: as_fd")
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        todo!("W04 L05: as_raw_fd")
    }
}

impl From<TcpStream> for OwnedFd {
    fn from(stream: TcpStream) -> OwnedFd {
        todo!("W04 L05: from")
    }
}

#[cfg(test)]
mod tests;
