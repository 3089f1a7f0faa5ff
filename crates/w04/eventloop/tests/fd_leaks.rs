//! After everything the crate opened is dropped, every fd it opened is closed, but for the one
//! spare fd of the EMFILE policy, which the process keeps from its first listener on.
//!
//! This file is its own test binary with a single test, so no other test's fds come and go
//! while it counts `/proc/self/fd`.

use std::os::fd::AsFd;
use std::time::Duration;

use eventloop::net::{self, DEFAULT_BACKLOG, TcpListener, TcpStream};
use eventloop::{Dispatcher, Interest, WorkerPool, sys};

fn open_fds() -> usize {
    test_support::Proc::this().fd_count()
}

#[test]
fn dropping_everything_closes_every_fd_the_crate_opened() {
    sys::block_signals(&[libc::SIGUSR2]).unwrap();
    assert!(!net::has_spare_fd(), "no listener has been bound yet");
    let before = open_fds();
    {
        let dispatcher = Dispatcher::new("fds").unwrap();
        assert_eq!(
            open_fds(),
            before + 3,
            "a dispatcher holds epoll, eventfd and timerfd"
        );
        let timers: Vec<_> = (0..1000).map(|_| dispatcher.create_timer(|_| {})).collect();
        for timer in &timers {
            timer.enable(Duration::from_secs(60));
        }
        assert_eq!(
            open_fds(),
            before + 3,
            "a thousand timers share the one timerfd"
        );
        let waker = dispatcher.add_waker(|_| {}).unwrap();
        let _signals = dispatcher.add_signals(&[libc::SIGUSR2], |_, _| {}).unwrap();
        let (a, b) = sys::socketpair().unwrap();
        dispatcher
            .add_fd(a.as_fd(), Interest::READABLE, |_, _| {})
            .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = loop {
            if let Some((stream, _)) = listener.accept().unwrap() {
                break stream;
            }
            std::thread::yield_now();
        };
        dispatcher
            .add_fd(accepted.as_fd(), Interest::READABLE, |_, _| {})
            .unwrap();

        // A worker pool, started, used and stopped: each worker's dispatcher is closed too.
        let mut pool = WorkerPool::new(3);
        pool.start().unwrap();
        assert!(
            open_fds() >= before + 9,
            "three dispatchers hold three fds each"
        );
        pool.post_to_with(0, |_| {}).unwrap();
        pool.stop();

        waker.wake();
        dispatcher.exit();
        dispatcher.run().unwrap();
        assert!(
            open_fds() > before + 8,
            "the objects above hold fds while alive"
        );
        drop((timers, waker, client, accepted, listener));
        drop(dispatcher);
        drop((a, b));
    }
    // The spare belongs to the process, not to the listener that opened it, so it outlives the
    // listener: one fd, however many listeners came and went.
    assert!(net::has_spare_fd());
    assert_eq!(
        open_fds(),
        before + 1,
        "every fd the crate opened is closed again, but the process's spare"
    );
}
