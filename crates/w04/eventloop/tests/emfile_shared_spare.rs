//! One spare fd for the whole process: a second listener adds only its own socket, not a second
//! spare, and once the process is out of fds, two listeners accepting at the same time on two
//! threads each shed every pending connection with that one spare, and neither loses it.
//!
//! Its own test binary with a single test, because it counts the process's fds and lowers its fd
//! limit, which no other test may see.

use std::io::Read;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use eventloop::net::{self, DEFAULT_BACKLOG, TcpListener};
use eventloop::sys;

/// Generous: only a hang guard.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// Pending connections on each listener while the process is out of fds.
const PER_LISTENER: u64 = 16;

fn open_fds() -> usize {
    test_support::Proc::this().fd_count()
}

fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap()
}

/// What one thread's accepts on its listener came to while the process was out of fds.
#[derive(Debug, Default)]
struct Outcome {
    calls: u32,
    accepted: u32,
    error: Option<String>,
}

/// Calls `accept` until every pending connection of `listener` has been shed, a bounded number
/// of times. Out of fds, nothing may be accepted and no call may fail: a call that fails has
/// found the process without its spare.
fn shed_all(listener: &TcpListener) -> Outcome {
    let mut outcome = Outcome::default();
    let start = Instant::now();
    while listener.rejected() < PER_LISTENER && outcome.calls < 200 {
        outcome.calls += 1;
        match listener.accept() {
            Ok(Some(_accepted)) => outcome.accepted += 1,
            Ok(None) => {}
            Err(error) => {
                outcome.error = Some(error.to_string());
                break;
            }
        }
        if start.elapsed() > HANG_GUARD {
            break;
        }
    }
    outcome
}

#[test]
fn listeners_share_one_spare_fd_and_both_shed_their_connections_with_it_when_out_of_fds() {
    assert!(!net::has_spare_fd(), "no listener has been bound yet");
    let before = open_fds();
    let first = bind();
    assert_eq!(
        open_fds(),
        before + 2,
        "the first listener opens its socket and the process's spare"
    );
    let second = bind();
    assert_eq!(
        open_fds(),
        before + 3,
        "a second listener adds its socket only: the spare is shared"
    );
    drop(bind());
    assert_eq!(
        open_fds(),
        before + 3,
        "a dropped listener closes its socket, and the spare stays for the others"
    );
    assert!(net::has_spare_fd());

    // The clients connect before the limit is lowered: each socket is an fd of this process too.
    let mut clients = Vec::new();
    for listener in [&first, &second] {
        let addr = listener.local_addr().unwrap();
        for _ in 0..PER_LISTENER {
            let client = std::net::TcpStream::connect(addr).unwrap();
            client.set_read_timeout(Some(HANG_GUARD)).unwrap();
            clients.push(client);
        }
    }

    let (soft, hard) = sys::fd_limit().unwrap();
    // Room for about one more fd (read_dir needs one while counting, then frees it; the limit is
    // on fd numbers, so a closed fd's number below it is room too), and files take what room is
    // left, so the process is out of fds: the spare is its only way to accept.
    sys::set_fd_limit(open_fds() as u64, hard).unwrap();
    let mut fillers = Vec::new();
    let out_of_fds = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) if fillers.len() < 64 => fillers.push(file),
            Ok(_) => break None,
            Err(error) => break error.raw_os_error(),
        }
    };

    // Both listeners at once, each on its own thread, as two loops would: each sheds its own
    // connections with the one spare while the other may have it closed.
    let barrier = Barrier::new(2);
    let outcomes = std::thread::scope(|scope| {
        let threads = [&first, &second].map(|listener| {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                shed_all(listener)
            })
        });
        threads.map(|thread| thread.join().expect("the shedding thread panicked"))
    });
    drop(fillers);
    sys::set_fd_limit(soft, hard).unwrap();

    assert_eq!(out_of_fds, Some(libc::EMFILE), "the process was out of fds");
    for (outcome, listener) in outcomes.iter().zip([&first, &second]) {
        assert_eq!(outcome.error, None, "{outcome:?}");
        assert_eq!(outcome.accepted, 0, "out of fds, {outcome:?}");
        assert_eq!(listener.rejected(), PER_LISTENER, "{outcome:?}");
    }
    assert!(net::has_spare_fd(), "the spare is held again");

    // Every client sees its connection closed rather than hanging.
    for client in &mut clients {
        match client.read(&mut [0u8; 1]) {
            Ok(0) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(_) => panic!("unexpected data"),
            Err(error) => panic!("a client's connection was not closed: {error}"),
        }
    }

    // With fds available again, both listeners accept normally.
    for listener in [&first, &second] {
        let _late = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let start = Instant::now();
        while listener.accept().unwrap().is_none() {
            assert!(
                start.elapsed() < HANG_GUARD,
                "no connection after the limit was raised"
            );
            std::thread::yield_now();
        }
    }
}
