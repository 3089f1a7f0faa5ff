//! N event loops on one port, the shape of a multi-loop server: a `WorkerPool` of two workers,
//! each owning a `SO_REUSEPORT` listener on its own dispatcher, per-loop counters in a
//! thread-local slot, and the counters aggregated with `run_on_all_workers`.

use std::cell::Cell;
use std::io::Read;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use eventloop::net::{DEFAULT_BACKLOG, TcpListener};
use eventloop::{Interest, Slot, ThreadLocal, WorkerPool};

/// Generous: only a hang guard.
const HANG_GUARD: Duration = Duration::from_secs(30);

#[test]
fn two_loops_each_accept_on_their_own_reuse_port_listener_and_their_counters_add_up() {
    let mut pool = WorkerPool::new(2);
    pool.start().unwrap();

    // Per-loop counters: one `Cell` per worker thread, no lock and no atomic.
    let tls = ThreadLocal::new();
    for dispatcher in pool.dispatchers() {
        tls.register_thread(dispatcher).unwrap();
    }
    let accepted: Arc<Slot<Cell<u64>>> = Arc::new(tls.allocate_slot().unwrap());
    accepted.set(|| Cell::new(0)).unwrap();

    // The port: learnt from a reservation in the group, dropped once every loop has joined it.
    let reservation =
        TcpListener::bind_reuse_port("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
    let addr = reservation.local_addr().unwrap();

    // Each loop binds its own listener, on its own dispatcher, which owns it from then on.
    let (listening_sender, listening) = mpsc::channel();
    let counter = Arc::clone(&accepted);
    pool.run_on_all_workers(
        move |dispatcher| {
            let listener = Rc::new(TcpListener::bind_reuse_port(addr, DEFAULT_BACKLOG).unwrap());
            let (accepting, counter) = (Rc::clone(&listener), Arc::clone(&counter));
            dispatcher
                .add_fd(listener.as_fd(), Interest::READABLE, move |_, _| {
                    while let Ok(Some((connection, _peer))) = accepting.accept() {
                        let mine = counter.get().expect("set on every worker");
                        mine.set(mine.get() + 1);
                        // Closing it tells the client it was accepted, after the count.
                        drop(connection);
                    }
                })
                .unwrap();
        },
        move || listening_sender.send(()).unwrap(),
    )
    .unwrap();
    listening.recv_timeout(HANG_GUARD).unwrap();
    drop(reservation);

    // 32 clients from 32 source ports; each reads end of input once a loop has counted it.
    const CLIENTS: u64 = 32;
    for _ in 0..CLIENTS {
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(HANG_GUARD)).unwrap();
        assert_eq!(
            client.read(&mut [0u8; 1]).unwrap(),
            0,
            "accepted and closed"
        );
    }

    // Aggregate: each loop reports its own counter; `on_complete` runs once, after both.
    let (count_sender, counts) = mpsc::channel();
    let (done_sender, done) = mpsc::channel();
    let reader = Arc::clone(&accepted);
    pool.run_on_all_workers(
        move |dispatcher| {
            let mine = reader.get().unwrap().get();
            count_sender
                .send((dispatcher.name().to_owned(), mine))
                .unwrap();
        },
        move || {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            done_sender.send(thread).unwrap();
        },
    )
    .unwrap();
    let completed_on = done.recv_timeout(HANG_GUARD).unwrap();
    assert!(
        completed_on.starts_with("worker_"),
        "on_complete runs on the worker that finished last, not {completed_on}"
    );
    assert!(done.try_recv().is_err(), "on_complete runs exactly once");
    let mut per_loop: Vec<(String, u64)> = counts.try_iter().collect();
    per_loop.sort();
    assert_eq!(
        per_loop.len(),
        2,
        "every loop reported before on_complete: {per_loop:?}"
    );
    assert_eq!(
        per_loop.iter().map(|(_, count)| count).sum::<u64>(),
        CLIENTS
    );
    // The kernel's hash puts all 32 on one queue with probability 2^-31.
    assert!(
        per_loop.iter().all(|(_, count)| *count > 0),
        "both loops accepted connections: {per_loop:?}"
    );

    tls.shutdown_global().unwrap();
    pool.stop();
}
