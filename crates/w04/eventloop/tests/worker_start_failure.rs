//! A pool whose start fails part-way stops the workers that did start: with room for five more
//! fds and two workers that need three each (a dispatcher's epoll, eventfd and timerfd), exactly
//! one worker's dispatcher can be created, whatever order the two threads take their fds in (a
//! worker fails only when none is free, which means the other holds at least three, so it got
//! all of its own). `start` must report the other's error and stop the one that runs.
//!
//! Its own test binary with a single test, because it lowers the process's fd limit.

use std::fs::File;
use std::os::fd::AsRawFd;

use eventloop::{Worker, WorkerError, WorkerPool, sys};

/// The highest fd number open in this process.
fn highest_fd() -> i32 {
    test_support::Proc::this()
        .open_fds()
        .into_iter()
        .max()
        .map(|fd| fd as i32)
        .expect("at least stdio is open")
}

/// Files that take every free fd number up to one past the highest open fd, so the next fds the
/// process opens are numbered from the returned number on, without gaps (a test runner may have
/// left some open, say a build's jobserver pipe, with gaps below them).
fn fill_gaps() -> (Vec<File>, i32) {
    let highest = highest_fd();
    let mut files = Vec::new();
    loop {
        let file = File::open("/dev/null").expect("fds to spare below the limit");
        let number = file.as_raw_fd();
        files.push(file);
        if number > highest {
            return (files, number + 1);
        }
    }
}

#[test]
fn a_pool_whose_start_fails_part_way_stops_the_workers_that_started() {
    let mut pool = WorkerPool::new(2);
    let (soft, hard) = sys::fd_limit().unwrap();
    // Room for exactly five more fds: the limit is one past the highest fd number allowed.
    let (gaps, next) = fill_gaps();
    sys::set_fd_limit(next as u64 + 5, hard).unwrap();
    let started = pool.start();
    sys::set_fd_limit(soft, hard).unwrap();
    drop(gaps);

    match started {
        Err(WorkerError::Start(error)) => {
            assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}")
        }
        other => panic!("expected one worker's dispatcher to fail, got {other:?}"),
    }
    assert!(
        !pool.workers().iter().any(Worker::is_running),
        "the worker that started is stopped again"
    );
    assert!(pool.dispatchers().is_empty());

    // With fds available again, the same pool starts.
    pool.start().unwrap();
    assert!(pool.workers().iter().all(Worker::is_running));
    pool.stop();
}
