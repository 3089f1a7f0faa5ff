//! The fault injector of `eventloop::sys` (built only with `--cfg fault_injection`): every fault
//! class is reached, each only where the kernel could return it, the bytes still arrive exactly,
//! and a seed repeats its faults exactly.
//!
//! Run with `RUSTFLAGS="--cfg fault_injection" CARGO_TARGET_DIR=target/fault cargo test -p
//! eventloop --test fault_injection -- --nocapture`; without the cfg this file is empty. One test
//! in the binary, so nothing else makes calls that the counters would see.

#![cfg(fault_injection)]

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use eventloop::sys::{self, fault};
use eventloop::{Interest, Poller};

/// Every wait is bounded by this; the scenario itself takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(30);

fn pattern(round: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + round * 7) as u8).collect()
}

/// Sends all of `data` through `send` (or `send_vectored` in halves); `Ok(false)` if an
/// injected reset ended the connection.
fn send_all(fd: BorrowedFd<'_>, data: &[u8], vectored: bool, start: Instant) -> io::Result<bool> {
    let mut sent = 0;
    while sent < data.len() {
        assert!(start.elapsed() < DEADLINE, "send_all made no progress");
        let rest = &data[sent..];
        let result = if vectored {
            let (a, b) = rest.split_at(rest.len() / 2);
            sys::send_vectored(fd, &[io::IoSlice::new(a), io::IoSlice::new(b)])
        } else {
            sys::send(fd, rest)
        };
        match result {
            Ok(n) => sent += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ECONNRESET) | Some(libc::EPIPE)
                ) =>
            {
                return Ok(false);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// Receives exactly `len` bytes through `recv`.
fn recv_exact(fd: BorrowedFd<'_>, len: usize, start: Instant) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; len];
    while got.len() < len {
        assert!(start.elapsed() < DEADLINE, "recv_exact made no progress");
        match sys::recv(fd, &mut buf[..len - got.len()]) {
            Ok(0) => panic!("the peer closed early"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("recv: {error}"),
        }
    }
    got
}

/// Accepts the one pending connection, retrying injected `EAGAIN`, `EMFILE` and `ENFILE` (which,
/// as the real errors do, leave the connection queued).
fn accept_one(listener: BorrowedFd<'_>, start: Instant) -> OwnedFd {
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "accept never returned the connection"
        );
        match sys::accept(listener) {
            Ok((fd, _)) => return fd,
            Err(error)
                if error.kind() == io::ErrorKind::WouldBlock
                    || matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {}
            Err(error) => panic!("accept: {error}"),
        }
    }
}

/// Registers `fd` with `poller` (`EPOLL_CTL_ADD`), retrying an injected `ENOMEM` (which, as the
/// real error does, leaves it unregistered); returns how many times it was refused.
fn add_retrying_enomem(poller: &Poller, fd: BorrowedFd<'_>, start: Instant) -> u64 {
    let mut refused = 0;
    loop {
        assert!(start.elapsed() < DEADLINE, "epoll_ctl never registered it");
        match poller.add(fd, 0, Interest::READABLE) {
            Ok(()) => return refused,
            Err(error) if error.raw_os_error() == Some(libc::ENOMEM) => refused += 1,
            Err(error) => panic!("epoll_ctl: {error}"),
        }
    }
}

/// One run of the scenario with `seed`: blocking pipes of bytes (EINTR, short counts), TCP
/// connections (EAGAIN, short counts, resets, EMFILE, ENFILE, ENOMEM on their registration) and
/// epoll waits (EINTR). Returns what was injected; panics if a byte arrives wrong or a fault
/// comes where the kernel could not return it.
fn scenario(seed: u64) -> fault::FaultCounts {
    fault::configure(seed, 0.25, "eintr,eagain,short,reset,emfile,enfile,enomem");
    let start = Instant::now();

    // Blocking Unix stream sockets: EINTR (retried inside the wrappers) and short counts.
    let (a, b) = UnixStream::pair().expect("a Unix stream pair");
    for round in 0..40 {
        let data = pattern(round, 1024);
        let mut written = 0;
        while written < data.len() {
            written += sys::write(a.as_fd(), &data[written..]).expect("a blocking write");
        }
        let mut got = vec![0u8; data.len()];
        let mut read = 0;
        while read < got.len() {
            let n = sys::read(b.as_fd(), &mut got[read..]).expect("a blocking read");
            assert_ne!(n, 0, "early end of stream");
            read += n;
        }
        assert_eq!(got, data, "round {round}: the bytes changed");
    }

    // Non-blocking TCP on 127.0.0.1: EAGAIN, short counts, resets, EMFILE.
    let listener = sys::tcp_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("a socket");
    sys::bind(listener.as_fd(), SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    sys::listen(listener.as_fd(), 16).expect("listen");
    let addr = sys::local_addr(listener.as_fd()).expect("the bound address");
    let registrations = Poller::new().expect("an epoll instance");
    // A listener's and a pipe's registrations are never refused (a listener's is made at a
    // program's start, where no fault opens a path, and a pipe is no connection); a
    // connection's may be.
    registrations
        .add(listener.as_fd(), 0, Interest::READABLE)
        .expect("a listener's registration");
    let (pipe, _pipe_writer) = std::io::pipe().expect("a pipe");
    registrations
        .add(pipe.as_fd(), 0, Interest::READABLE)
        .expect("a pipe's registration");
    let mut resets = 0;
    let mut refused = 0;
    for round in 0..40 {
        let mut client = TcpStream::connect(addr).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let server = accept_one(listener.as_fd(), start);
        refused += add_retrying_enomem(&registrations, server.as_fd(), start);
        // Only EPOLL_CTL_ADD allocates, so only it is refused.
        registrations
            .modify(server.as_fd(), 0, Interest::WRITABLE)
            .expect("EPOLL_CTL_MOD");

        let request = pattern(round, 2048);
        client.write_all(&request).expect("the client's write");
        assert_eq!(recv_exact(server.as_fd(), request.len(), start), request);

        let reply = pattern(round + 1, 2048);
        if send_all(server.as_fd(), &reply, round % 2 == 1, start).expect("send") {
            let mut got = vec![0u8; reply.len()];
            client.read_exact(&mut got).expect("the client's read");
            assert_eq!(got, reply, "round {round}: the reply changed");
        } else {
            // The reset shut the socket down: the client sees the end of the stream after
            // whatever was sent before it, and every byte of that is right.
            resets += 1;
            let mut got = Vec::new();
            client
                .read_to_end(&mut got)
                .expect("the client reads to the end");
            assert_eq!(
                got,
                reply[..got.len()],
                "round {round}: the bytes before the reset"
            );
            let after = sys::send(server.as_fd(), b"x");
            assert!(after.is_err(), "a reset socket still sends");
        }
    }
    assert_eq!(resets, fault::counts().reset, "every reset was reported");
    assert_eq!(refused, fault::counts().enomem, "every ENOMEM was reported");

    // epoll_wait with a timeout: EINTR is returned to the caller (the poller retries it).
    let epoll = sys::epoll_create().expect("an epoll instance");
    let mut events = [MaybeUninit::<libc::epoll_event>::uninit(); 4];
    let mut interrupted = 0;
    for _ in 0..40 {
        match sys::epoll_wait(epoll.as_fd(), &mut events, 1) {
            Ok(n) => assert_eq!(n, 0, "nothing is registered"),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => interrupted += 1,
            Err(error) => panic!("epoll_wait: {error}"),
        }
        // A zero timeout never sleeps, so it is never interrupted.
        assert_eq!(sys::epoll_wait(epoll.as_fd(), &mut events, 0).ok(), Some(0));
    }
    assert!(interrupted > 0, "no epoll_wait was interrupted");

    let counts = fault::counts();
    fault::disable();
    counts
}

#[test]
fn every_fault_class_is_reached_where_the_kernel_could_and_a_seed_repeats_exactly() {
    // Without EVENTLOOP_FAULT_SEED in the environment nothing is injected until a test asks.
    if std::env::var_os("EVENTLOOP_FAULT_SEED").is_none() {
        assert_eq!(fault::seed(), None);
    }
    for seed in [1, 2, 3] {
        let first = scenario(seed);
        println!("seed {seed}: {first}");
        println!("seed {seed}: calls {:?}", fault::calls());
        for (class, count) in [
            ("eintr", first.eintr),
            ("eagain", first.eagain),
            ("short_read", first.short_read),
            ("short_write", first.short_write),
            ("reset", first.reset),
            ("emfile", first.emfile),
            ("enfile", first.enfile),
            ("enomem", first.enomem),
        ] {
            assert!(count > 0, "seed {seed}: no {class} fault was injected");
        }
        let again = scenario(seed);
        assert_eq!(first, again, "seed {seed} did not repeat its faults");
    }
    assert_ne!(
        scenario(1).digest,
        scenario(2).digest,
        "two seeds, one fault set"
    );
}
