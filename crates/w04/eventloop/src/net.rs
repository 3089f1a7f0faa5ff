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
//!   up again at 100% CPU forever. [`TcpListener::accept`] keeps a spare fd (open on `/dev/null`)
//!   for exactly this moment: it closes the spare, accepts the pending connection into the freed
//!   slot, closes it at once (the client sees the connection closed), counts it in
//!   [`TcpListener::rejected`], and re-opens the spare when fds are available again. The queue
//!   drains and the loop goes back to sleep.
//! - **One spare for the whole process.** The fd table belongs to the process, not to a listener,
//!   so the spare does too: it is opened with the first listener and shared by every listener
//!   after it ([`has_spare_fd`] says whether it is held). With several loops, each with its own
//!   `SO_REUSEPORT` listener, whichever loop runs out of fds spends it, and a process holds one
//!   spare however many loops it runs. Every accept holds the spare's lock shared, and spending
//!   the spare holds it exclusively, so no listener's accept can take the slot another listener
//!   has just freed for its pending connection and leave the process without a spare.
//! - **A listen backlog of `SOMAXCONN`**, so a burst of thousands of connects is queued by the
//!   kernel rather than refused while the loop is busy.
//!
//! Everything is created `CLOEXEC | NONBLOCK` and owned as an `OwnedFd`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::sys;

/// The default listen backlog: the kernel's maximum (`SOMAXCONN`).
pub const DEFAULT_BACKLOG: i32 = libc::SOMAXCONN;

/// How many connections a server's loop accepts for one readiness event of its listener before
/// it serves its other events; every server on this crate's loop uses this one bound.
///
/// Each accept also registers the connection (an `epoll_ctl`) and allocates its state, so a
/// connection storm must not hold the loop away from the clients it already has: 64 bounds one
/// listener event to a small slice of a turn, and since the listener is level-triggered, what is
/// left in the backlog is reported again on the next turn (a full `SOMAXCONN` backlog of 4,096
/// drains in 64 turns, each of which also serves every ready client).
pub const ACCEPTS_PER_EVENT: usize = 64;

/// How long a server's loop stops polling its listener after an accept error the listener could
/// not absorb (no spare fd left, or something unexpected), so that level-triggered epoll cannot
/// report the same error in a tight loop.
pub const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The process's spare fd, which the EMFILE policy of every listener sacrifices to accept and
/// close a connection; `None` before the first listener is bound, and while the spare is spent
/// (the process is still out of fds).
///
/// A read-write lock rather than a mutex, because it also keeps the spare's slot from being taken:
/// every `accept` of every listener holds it shared, so listeners on different loops still
/// accept in parallel, and spending the spare holds it exclusively, from closing the spare until
/// it is re-opened. No value it guards can be left half-changed by a panic (it is an `Option` that
/// is taken or replaced whole), so a poisoned lock is simply taken over.
static SPARE: RwLock<Option<OwnedFd>> = RwLock::new(None);

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
    /// Connections accepted and closed at once because the process was out of fds.
    rejected: AtomicU64,
}

impl TcpListener {
    /// Binds a non-blocking listener to `addr` (port 0 picks a free port) with `SO_REUSEADDR`,
    /// listening with `backlog` (use [`DEFAULT_BACKLOG`] for `SOMAXCONN`).
    pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
        TcpListener::bind_with(addr, backlog, false)
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
        TcpListener::bind_with(addr, backlog, true)
    }

    fn bind_with(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<TcpListener> {
        let fd = bound_socket(addr, reuse_port)?;
        sys::listen(fd.as_fd(), backlog)?;
        // Opened after the socket, so a process's first listener is the lower fd number of the two.
        reserve_spare()?;
        Ok(TcpListener {
            fd,
            rejected: AtomicU64::new(0),
        })
    }

    /// The address the listener is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::local_addr(self.fd.as_fd())
    }

    // starter: w04-l05 todo "Do 5: accept until one succeeds: WouldBlock is Ok(None), EMFILE spends the spare, skip aborted ones"
    /// Accepts one pending connection: `Ok(None)` when there is none (`WouldBlock`).
    ///
    /// When the process is out of fds (`EMFILE`/`ENFILE`), the pending connection is accepted
    /// with the slot of the process's spare fd and closed at once, counted in
    /// [`rejected`](Self::rejected), and the call reports `Ok(None)` if the queue is then empty or
    /// tries the next one; if the spare is not held either, the error is returned. Other errors
    /// are returned as they are; errors that concern only the aborted connection
    /// (`ECONNABORTED`, …) are skipped.
    pub fn accept(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        // Bound the work of one call, so a flood of aborted connections cannot keep the loop here.
        for _ in 0..64 {
            restore_spare();
            let accepted = {
                // Shared, so that this accept cannot run while another listener has the spare
                // closed, and take the slot that listener freed for its pending connection.
                let _spare = spare_shared();
                sys::accept(self.fd.as_fd())
            };
            match accepted {
                Ok((fd, addr)) => return Ok(Some((TcpStream { fd }, addr))),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(error) if is_out_of_fds(&error) => {
                    if !self.reject_one()? {
                        return Err(error);
                    }
                }
                Err(error) if is_connection_specific(&error) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }

    /// How many connections the EMFILE policy accepted and closed at once.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Spends the process's spare fd to accept and close one pending connection. Returns false
    /// if there was no spare to spend.
    fn reject_one(&self) -> io::Result<bool> {
        // Exclusive from closing the spare until it is re-opened: no accept of any listener can
        // take the freed slot meanwhile (see `SPARE`).
        let mut spare = spare_exclusive();
        let Some(fd) = spare.take() else {
            return Ok(false);
        };
        drop(fd);
        match sys::accept(self.fd.as_fd()) {
            Ok((connection, _addr)) => {
                // Closing at once: the client sees its connection end rather than hang.
                drop(connection);
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
            // Another thread or process took the freed slot, or the connection went away: nothing
            // to do.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) if is_out_of_fds(&error) || is_connection_specific(&error) => {}
            Err(error) => return Err(error),
        }
        // Take the slot back before anyone else can; if that fails the next accept retries.
        *spare = sys::open_dev_null().ok();
        Ok(true)
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Whether the process's spare fd is held: false before the first listener is bound, and while
/// the process is out of fds after a listener spent the spare (it is re-opened by the next
/// `accept` of any listener once an fd is free). Every listener of the process shares this one
/// spare; see the module docs.
pub fn has_spare_fd() -> bool {
    spare_shared().is_some()
}

/// The spare, locked shared (for an accept, or to look at it).
fn spare_shared() -> RwLockReadGuard<'static, Option<OwnedFd>> {
    SPARE.read().unwrap_or_else(|poison| poison.into_inner())
}

/// The spare, locked exclusively (to open or spend it).
fn spare_exclusive() -> RwLockWriteGuard<'static, Option<OwnedFd>> {
    SPARE.write().unwrap_or_else(|poison| poison.into_inner())
}

/// Opens the process's spare fd unless it is held already; a listener is bound only if the spare
/// is there for it.
fn reserve_spare() -> io::Result<()> {
    let mut spare = spare_exclusive();
    if spare.is_none() {
        *spare = Some(sys::open_dev_null()?);
    }
    Ok(())
}

/// Re-opens the spare fd if it was spent and fds are available again.
fn restore_spare() {
    // Looked at shared first: the spare is nearly always held, and then accepts of every
    // listener need not queue up behind each other here.
    if spare_shared().is_some() {
        return;
    }
    let mut spare = spare_exclusive();
    if spare.is_none() {
        // Failing here just means the process is still out of fds; try again next time.
        *spare = sys::open_dev_null().ok();
    }
}

/// A TCP socket bound to `addr` (not listening yet), with `SO_REUSEADDR` and, if asked,
/// `SO_REUSEPORT`.
fn bound_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<OwnedFd> {
    let fd = sys::tcp_socket(addr)?;
    // SO_REUSEADDR lets a restarted server bind its port while old connections of the previous
    // process sit in TIME_WAIT.
    sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuse_port {
        sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    sys::bind(fd.as_fd(), addr)?;
    Ok(fd)
}

/// A port held in a `SO_REUSEPORT` group without listening on it: listeners bound to its address
/// with [`TcpListener::bind_reuse_port`] join it, and no connection is ever made to it.
///
/// Several event loops that each bind a listener of their own need the port fixed before the
/// first of them binds (with port 0 each would get a port of its own), so a server reserves it
/// first, lets every loop join, and drops the reservation. A *listening* reservation would be
/// wrong: it is a member of the group like any other, so once a client can connect at all the
/// kernel hands some connections to its queue, which nothing accepts, and dropping it resets
/// them. Bound but not listening, it keeps the port (it is not handed out to another socket
/// bound to port 0 or connecting from one) while a client's connect is refused until the first
/// listener has joined.
///
/// ```
/// use eventloop::net::{DEFAULT_BACKLOG, ReservedPort, TcpListener};
///
/// let reservation = ReservedPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
/// let addr = reservation.local_addr().unwrap();
/// assert!(std::net::TcpStream::connect(addr).is_err(), "nothing listens yet");
/// let listener = TcpListener::bind_reuse_port(addr, DEFAULT_BACKLOG).unwrap();
/// drop(reservation);
/// let _client = std::net::TcpStream::connect(addr).unwrap();
/// # let _ = listener;
/// ```
#[derive(Debug)]
pub struct ReservedPort {
    /// The bound, non-listening socket.
    fd: OwnedFd,
}

impl ReservedPort {
    /// Reserves `addr` (port 0 picks a free port) for listeners that bind it with
    /// [`TcpListener::bind_reuse_port`].
    pub fn bind(addr: SocketAddr) -> io::Result<ReservedPort> {
        Ok(ReservedPort {
            fd: bound_socket(addr, true)?,
        })
    }

    /// The reserved address, with the real port when reserved with port 0.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::local_addr(self.fd.as_fd())
    }
}

fn is_out_of_fds(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Errors of `accept` that concern only the connection being accepted (Linux passes pending
/// network errors of the new socket on to accept).
fn is_connection_specific(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM
        )
    )
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
        let fd = sys::tcp_socket(addr)?;
        match sys::connect(fd.as_fd(), addr) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(error) => return Err(error),
        }
        Ok(TcpStream { fd })
    }

    /// Receives into `buf`; `Ok(0)` means the peer shut down its write side (end of input).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv(self.fd.as_fd(), buf)
    }

    /// Sends from `buf` with `MSG_NOSIGNAL`; returns how many bytes the kernel took.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        sys::send(self.fd.as_fd(), buf)
    }

    /// Sends several buffers in one system call (`sendmsg`), with `MSG_NOSIGNAL`.
    pub fn send_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.fd.as_fd(), bufs)
    }

    /// Shuts down the write side: the peer reads end of input after the bytes already sent.
    pub fn shutdown_write(&self) -> io::Result<()> {
        sys::shutdown(self.fd.as_fd(), libc::SHUT_WR)
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm), so small responses leave at once.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        sys::setsockopt_int(
            self.fd.as_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            i32::from(nodelay),
        )
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::local_addr(self.fd.as_fd())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sys::peer_addr(self.fd.as_fd())
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<TcpStream> for OwnedFd {
    fn from(stream: TcpStream) -> OwnedFd {
        stream.fd
    }
}

#[cfg(test)]
mod tests;
