//! Dispatcher behaviour through the public API: posts, exit, fds, timers, wakers and signals.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use eventloop::{Dispatcher, FdKey, Interest, Timer, sys};

/// A hang guard: a timer that panics if the loop is still running long after it should have
/// stopped. Tests never wait on it; it only bounds a bug.
fn hang_guard(dispatcher: &Dispatcher) -> Timer {
    let timer = dispatcher.create_timer(|_| panic!("the dispatcher did not exit within 30 s"));
    timer.enable(Duration::from_secs(30));
    timer
}

#[test]
fn dispatcher_is_created_with_its_name() {
    let dispatcher = Dispatcher::new("worker_7").unwrap();
    assert_eq!(dispatcher.name(), "worker_7");
    assert_eq!(dispatcher.handle().name(), "worker_7");
    assert!(dispatcher.is_dispatcher_thread());
}

#[test]
fn posted_callback_runs_on_the_dispatcher_thread() {
    let (ready_sender, ready_receiver) = mpsc::channel();
    let (result_sender, result_receiver) = mpsc::channel();
    let loop_thread = thread::spawn(move || {
        let dispatcher = Dispatcher::new("loop").unwrap();
        let _guard = hang_guard(&dispatcher);
        ready_sender
            .send((dispatcher.handle(), thread::current().id()))
            .unwrap();
        dispatcher.run().unwrap();
    });
    let (handle, loop_thread_id) = ready_receiver.recv().unwrap();
    assert!(!handle.is_dispatcher_thread());
    let check = handle.clone();
    handle.post(move || {
        result_sender
            .send((thread::current().id(), check.is_dispatcher_thread()))
            .unwrap();
    });
    let (ran_on, flagged) = result_receiver
        .recv_timeout(Duration::from_secs(30))
        .unwrap();
    assert_eq!(ran_on, loop_thread_id);
    assert!(flagged);
    handle.exit();
    loop_thread.join().unwrap();
}

#[test]
fn exit_from_another_thread_ends_run() {
    let dispatcher = Dispatcher::new("exit").unwrap();
    let _guard = hang_guard(&dispatcher);
    let handle = dispatcher.handle();
    // The barrier makes the exit come while (or just before) the loop sleeps in epoll_wait.
    let barrier = Arc::new(Barrier::new(2));
    let other = {
        let barrier = Arc::clone(&barrier);
        thread::spawn(move || {
            barrier.wait();
            handle.exit();
        })
    };
    let arrived = Arc::clone(&barrier);
    dispatcher.post(move || {
        arrived.wait();
    });
    dispatcher.run().unwrap();
    other.join().unwrap();
}

#[test]
fn exit_before_run_makes_run_return_at_once_and_run_can_be_called_again() {
    let dispatcher = Dispatcher::new("again").unwrap();
    let _guard = hang_guard(&dispatcher);
    dispatcher.exit();
    dispatcher.run().unwrap();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let handle = dispatcher.handle();
    dispatcher.post(move || {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        handle.exit();
    });
    dispatcher.run().unwrap();
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn run_inside_a_callback_is_an_error() {
    let dispatcher = Dispatcher::new("nested").unwrap();
    let _guard = hang_guard(&dispatcher);
    let result = Rc::new(RefCell::new(None));
    let seen = Rc::clone(&result);
    let timer = dispatcher.create_timer(move |dispatcher| {
        *seen.borrow_mut() = Some(dispatcher.run().is_err());
        dispatcher.exit();
    });
    timer.enable(Duration::ZERO);
    dispatcher.run().unwrap();
    assert_eq!(*result.borrow(), Some(true));
}

#[test]
fn ten_thousand_posts_from_four_threads_run_once_in_per_sender_order() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 2_500;
    let dispatcher = Dispatcher::new("posts").unwrap();
    let _guard = hang_guard(&dispatcher);
    let (sender, receiver) = mpsc::channel::<(usize, usize)>();
    let start = Arc::new(Barrier::new(SENDERS));
    let senders: Vec<_> = (0..SENDERS)
        .map(|id| {
            let handle = dispatcher.handle();
            let sender = sender.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for sequence in 0..PER_SENDER {
                    let sender = sender.clone();
                    handle.post(move || sender.send((id, sequence)).unwrap());
                }
            })
        })
        .collect();
    drop(sender);
    // The loop exits once every sender is done: the last post of each is counted on the loop.
    let finished = Rc::new(Cell::new(0));
    let joiner = thread::spawn(move || {
        for sender in senders {
            sender.join().unwrap();
        }
    });
    let handle = dispatcher.handle();
    let seen = Rc::new(RefCell::new(Vec::with_capacity(SENDERS * PER_SENDER)));
    let collected = Rc::clone(&seen);
    let done = Rc::clone(&finished);
    // Collect on the loop with a repeating timer, so the loop itself notices when all are in.
    let collector = dispatcher.create_timer(move |dispatcher| {
        while let Ok(item) = receiver.try_recv() {
            collected.borrow_mut().push(item);
        }
        if collected.borrow().len() == SENDERS * PER_SENDER {
            done.set(1);
            dispatcher.exit();
        }
    });
    collector.enable_repeating(Duration::from_millis(1));
    dispatcher.run().unwrap();
    joiner.join().unwrap();
    drop(handle);
    assert_eq!(finished.get(), 1);
    let seen = seen.borrow();
    let mut next = [0usize; SENDERS];
    for &(id, sequence) in seen.iter() {
        assert_eq!(
            sequence, next[id],
            "sender {id}: out of order or duplicated"
        );
        next[id] += 1;
    }
    assert_eq!(next, [PER_SENDER; SENDERS], "every post ran exactly once");
}

#[test]
fn posts_pending_at_exit_run_before_run_returns() {
    let dispatcher = Dispatcher::new("pending").unwrap();
    let _guard = hang_guard(&dispatcher);
    let handle = dispatcher.handle();
    let (sender, receiver) = mpsc::channel();
    // exit first, then three posts: run still runs all of them (and the one they post).
    dispatcher.exit();
    for index in 0..3 {
        let sender = sender.clone();
        let again = handle.clone();
        dispatcher.post(move || {
            sender.send(index).unwrap();
            if index == 2 {
                let sender = sender.clone();
                again.post(move || sender.send(3).unwrap());
            }
        });
    }
    dispatcher.run().unwrap();
    drop(sender);
    assert_eq!(receiver.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
}

#[test]
fn posts_after_the_dispatcher_is_dropped_are_dropped_unrun() {
    let dispatcher = Dispatcher::new("gone").unwrap();
    let handle = dispatcher.handle();
    let queued = Arc::new(());
    let queued_clone = Arc::clone(&queued);
    handle.post(move || drop(queued_clone));
    drop(dispatcher);
    assert_eq!(
        Arc::strong_count(&queued),
        1,
        "a queued post is dropped with the dispatcher"
    );
    let late = Arc::new(());
    let late_clone = Arc::clone(&late);
    handle.post(move || drop(late_clone));
    assert_eq!(
        Arc::strong_count(&late),
        1,
        "a late post is dropped at once"
    );
}

#[test]
fn a_timer_fires_and_a_disabled_one_does_not() {
    let dispatcher = Dispatcher::new("timers").unwrap();
    let _guard = hang_guard(&dispatcher);
    let fired = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&fired);
    let disabled = dispatcher.create_timer(move |_| log.borrow_mut().push("disabled"));
    disabled.enable(Duration::from_millis(1));
    disabled.disable();
    assert!(!disabled.is_enabled());
    let log = Rc::clone(&fired);
    let never_enabled = dispatcher.create_timer(move |_| log.borrow_mut().push("never"));
    let log = Rc::clone(&fired);
    let enabled = dispatcher.create_timer(move |dispatcher| {
        log.borrow_mut().push("enabled");
        dispatcher.exit();
    });
    // The enabled timer fires later than the disabled one would have.
    enabled.enable(Duration::from_millis(20));
    dispatcher.run().unwrap();
    assert_eq!(*fired.borrow(), vec!["enabled"]);
    assert!(!never_enabled.is_enabled());
}

#[test]
fn timer_fires_no_earlier_than_its_delay() {
    let dispatcher = Dispatcher::new("delay").unwrap();
    let _guard = hang_guard(&dispatcher);
    let timer = dispatcher.create_timer(|dispatcher| dispatcher.exit());
    let start = Instant::now();
    timer.enable(Duration::from_millis(15));
    dispatcher.run().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(15));
}

#[test]
fn repeating_timer_repeats_until_disabled_from_its_own_callback() {
    let dispatcher = Dispatcher::new("repeat").unwrap();
    let _guard = hang_guard(&dispatcher);
    let count = Rc::new(Cell::new(0));
    let slot: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let counter = Rc::clone(&count);
    let me = Rc::clone(&slot);
    let timer = dispatcher.create_timer(move |dispatcher| {
        counter.set(counter.get() + 1);
        if counter.get() == 5 {
            let me = me.borrow();
            let me = me.as_ref().unwrap();
            assert!(
                me.is_enabled(),
                "a repeating timer is re-armed before its callback"
            );
            me.disable();
            dispatcher.exit();
        }
    });
    timer.enable_repeating(Duration::from_millis(1));
    *slot.borrow_mut() = Some(timer);
    dispatcher.run().unwrap();
    assert_eq!(count.get(), 5);
    assert!(!slot.borrow().as_ref().unwrap().is_enabled());
    // Break the cycle (the timer's callback holds the slot that holds the timer).
    slot.borrow_mut().take();
}

#[test]
fn timers_can_be_created_rearmed_and_dropped_from_callbacks() {
    let dispatcher = Dispatcher::new("reentrant").unwrap();
    let _guard = hang_guard(&dispatcher);
    let log = Rc::new(RefCell::new(Vec::new()));
    let made: Rc<RefCell<Vec<Timer>>> = Rc::new(RefCell::new(Vec::new()));
    // The victim is armed to fire at the same time as the first timer, but the first timer's
    // callback drops it: it must never fire.
    let victim_log = Rc::clone(&log);
    let victim = Rc::new(RefCell::new(Some(
        dispatcher.create_timer(move |_| victim_log.borrow_mut().push("victim")),
    )));
    let first_log = Rc::clone(&log);
    let first_made = Rc::clone(&made);
    let first_victim = Rc::clone(&victim);
    let first = dispatcher.create_timer(move |dispatcher| {
        first_log.borrow_mut().push("first");
        first_victim.borrow_mut().take();
        let child_log = Rc::clone(&first_log);
        let child = dispatcher.create_timer(move |dispatcher| {
            child_log.borrow_mut().push("child");
            dispatcher.exit();
        });
        child.enable(Duration::ZERO);
        first_made.borrow_mut().push(child);
    });
    first.enable(Duration::from_millis(2));
    victim
        .borrow()
        .as_ref()
        .unwrap()
        .enable(Duration::from_millis(2));
    dispatcher.run().unwrap();
    assert_eq!(*log.borrow(), vec!["first", "child"]);
}

#[test]
fn hundred_thousand_timers_on_one_dispatcher_fire_in_deadline_order() {
    const TIMERS: usize = 100_000;
    let dispatcher = Dispatcher::new("many").unwrap();
    let _guard = hang_guard(&dispatcher);
    let order = Rc::new(RefCell::new(Vec::with_capacity(TIMERS)));
    let base = Instant::now() + Duration::from_millis(20);
    // Deadlines spread over 50 ms in a scrambled order (7919 is prime, so every offset 0..TIMERS
    // occurs once), unrelated to the creation order; several timers share each microsecond.
    let timers: Vec<Timer> = (0..TIMERS)
        .map(|index| {
            let offset = ((index * 7919) % TIMERS) as u64;
            let deadline = base + Duration::from_micros(offset / 2);
            let log = Rc::clone(&order);
            let timer = dispatcher.create_timer(move |dispatcher| {
                log.borrow_mut().push((deadline, index));
                if log.borrow().len() == TIMERS {
                    dispatcher.exit();
                }
            });
            timer.enable_at(deadline);
            timer
        })
        .collect();
    dispatcher.run().unwrap();
    let order = order.borrow();
    assert_eq!(order.len(), TIMERS, "every timer fired once");
    // Deadline order; equal deadlines in the order they were armed (here: the index order).
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "timers fired out of deadline order"
    );
    assert!(timers.iter().all(|timer| !timer.is_enabled()));
}

/// Reads until `WouldBlock`.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 64];
    while sys::read(fd.as_fd(), &mut buf).is_ok_and(|n| n > 0) {}
}

#[test]
fn fd_callback_receives_readiness_and_can_modify_and_remove_itself() {
    let dispatcher = Dispatcher::new("fds").unwrap();
    let _guard = hang_guard(&dispatcher);
    let (a, b) = sys::socketpair().unwrap();
    let a = Rc::new(a);
    let key: Rc<Cell<Option<FdKey>>> = Rc::new(Cell::new(None));
    let calls = Rc::new(Cell::new(0));
    let (reader, my_key, counter) = (Rc::clone(&a), Rc::clone(&key), Rc::clone(&calls));
    let registered = dispatcher
        .add_fd(
            a.as_fd(),
            Interest::READABLE,
            move |dispatcher, readiness| {
                counter.set(counter.get() + 1);
                let key = my_key.get().unwrap();
                if counter.get() == 1 {
                    assert!(readiness.is_readable() && !readiness.is_writable());
                    drain(&reader);
                    dispatcher.modify_fd(key, Interest::BOTH).unwrap();
                } else {
                    assert!(readiness.is_writable(), "modify_fd added writable interest");
                    dispatcher.remove_fd(key).unwrap();
                    assert!(dispatcher.remove_fd(key).is_err(), "a removed key is stale");
                    dispatcher.exit();
                }
            },
        )
        .unwrap();
    key.set(Some(registered));
    assert_eq!(dispatcher.fd_count(), 1);
    sys::write(b.as_fd(), b"1").unwrap();
    dispatcher.run().unwrap();
    assert_eq!(calls.get(), 2);
    assert_eq!(dispatcher.fd_count(), 0);
    assert!(
        dispatcher
            .modify_fd(registered, Interest::READABLE)
            .is_err()
    );
}

#[test]
fn an_fd_removed_earlier_in_the_batch_gets_no_callback_even_if_its_slot_is_reused() {
    let dispatcher = Dispatcher::new("batch").unwrap();
    let _guard = hang_guard(&dispatcher);
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..2).map(|_| sys::socketpair().unwrap()).collect();
    let keys: Rc<RefCell<Vec<FdKey>>> = Rc::new(RefCell::new(Vec::new()));
    let fired = Rc::new(RefCell::new(Vec::new()));
    let replacement_fired = Rc::new(Cell::new(false));
    let (replacement_a, replacement_b) = sys::socketpair().unwrap();
    let replacement_a = Rc::new(replacement_a);
    for (index, (a, b)) in pairs.iter().enumerate() {
        sys::write(b.as_fd(), b"x").unwrap();
        let (keys_for_cb, log) = (Rc::clone(&keys), Rc::clone(&fired));
        let (replacement, replacement_flag) =
            (Rc::clone(&replacement_a), Rc::clone(&replacement_fired));
        let key = dispatcher
            .add_fd(a.as_fd(), Interest::READABLE, move |dispatcher, _| {
                log.borrow_mut().push(index);
                // Whichever fd's callback runs first removes the other one, then registers a
                // new fd, which reuses the freed slot.
                let other = keys_for_cb.borrow()[1 - index];
                dispatcher.remove_fd(other).unwrap();
                let flag = Rc::clone(&replacement_flag);
                dispatcher
                    .add_fd(replacement.as_fd(), Interest::READABLE, move |_, _| {
                        flag.set(true)
                    })
                    .unwrap();
                dispatcher.exit();
            })
            .unwrap();
        keys.borrow_mut().push(key);
    }
    // Both are readable, so one epoll_wait returns both events in one batch.
    dispatcher.run().unwrap();
    assert_eq!(
        fired.borrow().len(),
        1,
        "the removed fd's event was dropped: {:?}",
        fired.borrow()
    );
    assert!(
        !replacement_fired.get(),
        "the stale event did not reach the slot's new fd"
    );
    drop(replacement_b);
}

#[test]
fn waker_coalesces_and_a_wake_during_the_callback_is_not_lost() {
    let dispatcher = Dispatcher::new("waker").unwrap();
    let _guard = hang_guard(&dispatcher);
    let calls = Rc::new(Cell::new(0));
    let counter = Rc::clone(&calls);
    let cell: Rc<RefCell<Option<eventloop::Waker>>> = Rc::new(RefCell::new(None));
    let me = Rc::clone(&cell);
    let waker = dispatcher
        .add_waker(move |dispatcher| {
            counter.set(counter.get() + 1);
            if counter.get() == 1 {
                // A wake that arrives while the callback runs must produce another call.
                me.borrow().as_ref().unwrap().wake();
            } else {
                dispatcher.exit();
            }
        })
        .unwrap();
    *cell.borrow_mut() = Some(waker.clone());
    let remote = waker.clone();
    thread::spawn(move || {
        for _ in 0..100 {
            remote.wake();
        }
    })
    .join()
    .unwrap();
    dispatcher.run().unwrap();
    assert_eq!(
        calls.get(),
        2,
        "100 wakes coalesced into one call, plus the re-wake"
    );
    cell.borrow_mut().take();
}

#[test]
fn signals_arrive_through_the_signalfd() {
    // SIGUSR1, blocked in this thread only and raised at this thread: the signalfd of a
    // dispatcher on this thread reports it. (A server blocks its signals process-wide instead.)
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        sys::block_signals(&[libc::SIGUSR1]).unwrap();
        let dispatcher = Dispatcher::new("signals").unwrap();
        let _guard = hang_guard(&dispatcher);
        let key = dispatcher
            .add_signals(&[libc::SIGUSR1], move |dispatcher, signal| {
                sender.send(signal).unwrap();
                dispatcher.exit();
            })
            .unwrap();
        sys::raise_signal(libc::SIGUSR1).unwrap();
        dispatcher.run().unwrap();
        dispatcher.remove_fd(key).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(receiver.recv().unwrap(), libc::SIGUSR1);
}

#[test]
fn a_tcp_peers_half_close_is_reported_as_read_closed() {
    use eventloop::net::{DEFAULT_BACKLOG, TcpListener};
    let dispatcher = Dispatcher::new("rdhup").unwrap();
    let _guard = hang_guard(&dispatcher);
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let start = Instant::now();
    let server_side = loop {
        if let Some((stream, _)) = listener.accept().unwrap() {
            break stream;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        thread::yield_now();
    };
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&seen);
    dispatcher
        .add_fd(
            server_side.as_fd(),
            Interest::READABLE,
            move |dispatcher, readiness| {
                log.borrow_mut().push(readiness);
                dispatcher.exit();
            },
        )
        .unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    dispatcher.run().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].is_read_closed(), "{:?}", seen[0]);
    assert!(
        !seen[0].is_hang_up(),
        "only the peer's write side is closed: {:?}",
        seen[0]
    );
    // Our side can still send to the half-closed peer.
    assert_eq!(server_side.send(b"still open").unwrap(), 10);
}

#[test]
fn a_one_shot_timer_can_rearm_itself_from_its_callback() {
    let dispatcher = Dispatcher::new("rearm").unwrap();
    let _guard = hang_guard(&dispatcher);
    let fired = Rc::new(Cell::new(0));
    let me: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let (count, myself) = (Rc::clone(&fired), Rc::clone(&me));
    let timer = dispatcher.create_timer(move |dispatcher| {
        count.set(count.get() + 1);
        let myself = myself.borrow();
        let timer = myself.as_ref().unwrap();
        assert!(
            !timer.is_enabled(),
            "a one-shot timer is disabled while its callback runs"
        );
        if count.get() < 3 {
            timer.enable(Duration::from_millis(1));
        } else {
            dispatcher.exit();
        }
    });
    timer.enable(Duration::ZERO);
    *me.borrow_mut() = Some(timer);
    dispatcher.run().unwrap();
    assert_eq!(fired.get(), 3);
    me.borrow_mut().take();
}
