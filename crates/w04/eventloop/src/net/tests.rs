//! Unit tests of `net`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

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

#[test]
fn reuse_port_listeners_share_a_port_and_the_kernel_spreads_connections_over_them() {
    let first =
        TcpListener::bind_reuse_port("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
    let addr = first.local_addr().unwrap();
    let second = TcpListener::bind_reuse_port(addr, DEFAULT_BACKLOG).unwrap();
    assert_eq!(
        TcpListener::bind(addr, DEFAULT_BACKLOG).unwrap_err().kind(),
        io::ErrorKind::AddrInUse,
        "a listener without SO_REUSEPORT cannot join the group"
    );
    // 64 connections from 64 source ports: the chance that the hash puts all on one queue is
    // 2^-63.
    const CLIENTS: usize = 64;
    let clients: Vec<std::net::TcpStream> = (0..CLIENTS)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let mut accepted = [0usize; 2];
    let start = Instant::now();
    while accepted.iter().sum::<usize>() < CLIENTS {
        for (count, listener) in accepted.iter_mut().zip([&first, &second]) {
            while listener.accept().unwrap().is_some() {
                *count += 1;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "accepted only {accepted:?}"
        );
        std::thread::yield_now();
    }
    assert_eq!(accepted.iter().sum::<usize>(), CLIENTS);
    assert!(
        accepted.iter().all(|&count| count > 0),
        "both queues got connections: {accepted:?}"
    );
    drop(clients);
}

/// Regression: `handoff_server --loops N` reserved its port with a *listening* socket, so a
/// client that connected before the loops had joined could land in the reservation's queue and
/// was reset when it was dropped. A reservation refuses every connection; the connections the
/// listener that joins it accepts outlive it.
#[test]
fn a_reserved_port_refuses_connections_and_its_drop_cuts_none() {
    let reservation = ReservedPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reservation.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    assert_eq!(
        std::net::TcpStream::connect(addr).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused,
        "a reservation accepts nothing"
    );
    let listener = TcpListener::bind_reuse_port(addr, DEFAULT_BACKLOG).unwrap();
    // Every connection goes to the listener, none to the reservation: with a listening
    // reservation about half of 64 would queue there and be reset by the drop below.
    let mut clients: Vec<std::net::TcpStream> = (0..64)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    drop(reservation);
    let mut served = Vec::new();
    for _ in &clients {
        let (stream, _) = accept_within(&listener, Duration::from_secs(5));
        served.push(stream);
    }
    for (client, stream) in clients.iter_mut().zip(&served) {
        client.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        let started = Instant::now();
        loop {
            match stream.recv(&mut byte) {
                Ok(1) => break,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        started.elapsed() < Duration::from_secs(5),
                        "no byte arrived"
                    );
                    std::thread::yield_now();
                }
                other => panic!("a connection was cut: {other:?}"),
            }
        }
    }
}
