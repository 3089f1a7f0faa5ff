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
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap()
    }

    fn accept_within(listener: &TcpListener, limit: Duration) -> (TcpStream, SocketAddr) {
        let start = Instant::now();
        loop {
            if let Some(accepted) = listener.accept().unwrap() {
                return accepted;
            }
            assert!(start.elapsed() < limit, "no connection arrived");
            std::thread::yield_now();
        }
    }

    #[test]
    fn accept_is_none_without_a_pending_connection() {
        let listener = listener();
        assert!(listener.accept().unwrap().is_none());
        assert_eq!(listener.rejected(), 0);
    }

    #[test]
    fn recv_and_send_move_bytes_and_report_would_block() {
        let listener = listener();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = accept_within(&listener, Duration::from_secs(10));
        assert_eq!(peer, client.local_addr().unwrap());
        let mut buf = [0u8; 16];
        assert_eq!(
            stream.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        client.write_all(b"hello").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(stream.send(b"world").unwrap(), 5);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"world");
        let start = Instant::now();
        let n = loop {
            match stream.recv(&mut buf) {
                Ok(n) => break n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    assert!(start.elapsed() < Duration::from_secs(10));
                    std::thread::yield_now();
                }
                Err(error) => panic!("{error}"),
            }
        };
        assert_eq!(&buf[..n], b"hello");
        stream.shutdown_write().unwrap();
        assert_eq!(
            client.read(&mut got).unwrap(),
            0,
            "end of input after shutdown_write"
        );
    }

    #[test]
    fn send_to_a_closed_peer_is_an_error_not_sigpipe() {
        let listener = listener();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = accept_within(&listener, Duration::from_secs(10));
        drop(client);
        // The first send may succeed (the peer answers it with a reset); a later one fails with
        // EPIPE or ECONNRESET. Without MSG_NOSIGNAL the process would die of SIGPIPE here.
        let start = Instant::now();
        let error = loop {
            match stream.send(b"data") {
                Ok(_) => assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "send kept working"
                ),
                Err(error) => break error,
            }
        };
        assert!(
            matches!(error.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)),
            "{error}"
        );
    }
}
