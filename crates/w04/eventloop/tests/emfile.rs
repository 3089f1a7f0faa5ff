//! The listener's EMFILE policy: out of fds, pending connections are accepted and closed with the
//! process's spare fd (and counted), so `accept` reports "nothing pending" instead of failing
//! forever.
//!
//! Its own test binary with a single test, because it lowers the process's fd limit.

use std::io::Read;
use std::time::{Duration, Instant};

use eventloop::net::{self, DEFAULT_BACKLOG, TcpListener};
use eventloop::sys;

fn open_fds() -> u64 {
    test_support::Proc::this().fd_count() as u64
}

#[test]
fn out_of_fds_the_listener_rejects_pending_connections_instead_of_spinning() {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(net::has_spare_fd());
    let mut clients: Vec<std::net::TcpStream> = (0..5)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    for client in &clients {
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }

    let (soft, hard) = sys::fd_limit().unwrap();
    // Room for exactly one more fd (read_dir itself needs one while counting, then frees it).
    let limit = open_fds();
    sys::set_fd_limit(limit, hard).unwrap();

    let mut accepted = Vec::new();
    let mut outcomes = Vec::new();
    let start = Instant::now();
    // Five connections are pending: one or two fit, the others are rejected; then the queue is
    // empty and accept says so. A bounded number of calls must get there.
    for _ in 0..20 {
        match listener.accept() {
            Ok(Some((stream, _))) => {
                accepted.push(stream);
                outcomes.push("accepted");
            }
            Ok(None) if listener.rejected() + accepted.len() as u64 == 5 => break,
            Ok(None) => outcomes.push("none"),
            Err(error) => {
                panic!("accept failed instead of shedding load: {error} after {outcomes:?}")
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    let rejected = listener.rejected();
    assert!(listener.accept().unwrap().is_none(), "the queue is drained");
    sys::set_fd_limit(soft, hard).unwrap();

    // The limit is on fd *numbers*, and counting needed one fd of its own, so one or two fit.
    assert!((1..=2).contains(&accepted.len()), "{outcomes:?}");
    assert_eq!(rejected, 5 - accepted.len() as u64, "{outcomes:?}");
    assert!(net::has_spare_fd(), "the spare fd is re-reserved");
    // The rejected clients see their connection closed rather than hanging (and so do the
    // accepted ones, once we drop them, so every client's read ends promptly).
    let accepted_count = accepted.len() as u64;
    drop(accepted);
    let mut closed = 0;
    for client in &mut clients {
        let mut buf = [0u8; 1];
        match client.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Ok(_) => panic!("unexpected data"),
            Err(error) => panic!("a client's connection was not closed: {error}"),
        }
    }
    assert_eq!(closed, rejected + accepted_count);

    // With fds available again, accepting works normally.
    let _late = std::net::TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    loop {
        if listener.accept().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no connection after the limit was raised"
        );
        std::thread::yield_now();
    }
}
