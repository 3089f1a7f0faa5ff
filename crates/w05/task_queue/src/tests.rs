//! Unit tests of the queue contract. They live inside the crate so that a test can observe, through
//! the private waiter counts, that a thread really is blocked inside the queue, which lets every
//! blocking test synchronise on facts instead of on sleeps.

use super::*;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;

/// How long a test waits for another thread to reach a state before declaring a hang.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// Spins (yielding) until `condition` holds, panicking with `what` if it takes longer than the hang
/// guard. Used to wait until a thread is *inside* a blocking call.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::yield_now();
    }
}

/// The number of producers and of consumers currently blocked inside the queue.
fn waiters<T>(queue: &TaskQueue<T>) -> (usize, usize) {
    let state = queue.lock();
    (state.waiting_producers, state.waiting_consumers)
}

#[test]
fn zero_capacity_is_a_typed_error() {
    assert_eq!(TaskQueue::<u8>::new(0).err(), Some(ZeroCapacityError));
    assert!(TaskQueue::<u8>::new(1).is_ok());
}

#[test]
fn items_come_out_in_fifo_order() {
    let queue = TaskQueue::new(100).unwrap();
    for item in 0..100 {
        assert_eq!(
            queue.push(item),
            Ok(item + 1),
            "push returns the length after it"
        );
    }
    assert_eq!(queue.len(), 100);
    for expected in 0..100 {
        assert_eq!(queue.pop(), Ok(expected));
    }
    assert!(queue.is_empty());
}

#[test]
fn try_push_reports_full_and_hands_the_item_back() {
    let queue = TaskQueue::new(2).unwrap();
    assert_eq!(queue.try_push('a'), Ok(1));
    assert_eq!(queue.try_push('b'), Ok(2));
    let refused = queue.try_push('c').unwrap_err();
    assert!(refused.is_full());
    assert_eq!(refused.into_inner(), 'c');
    assert_eq!(queue.try_pop(), Ok('a'));
    assert_eq!(queue.try_push('c'), Ok(2));
}

#[test]
fn try_pop_distinguishes_empty_from_closed() {
    let queue = TaskQueue::new(1).unwrap();
    assert_eq!(queue.try_pop(), Err(TryPopError::Empty));
    queue.push(7).unwrap();
    queue.close();
    assert_eq!(queue.try_pop(), Ok(7));
    assert_eq!(queue.try_pop(), Err(TryPopError::Closed));
}

#[test]
fn timeouts_expire_on_a_full_or_empty_queue() {
    let queue = TaskQueue::new(1).unwrap();
    assert_eq!(
        queue.pop_timeout(Duration::from_millis(5)),
        Err(PopTimeoutError::Timeout)
    );
    queue.push(1).unwrap();
    match queue.push_timeout(2, Duration::from_millis(5)) {
        Err(PushTimeoutError::Timeout(2)) => {}
        other => panic!("expected a timeout handing back 2, got {other:?}"),
    }
    // Nobody is left registered as a waiter after giving up.
    assert_eq!(waiters(&queue), (0, 0));
    assert_eq!(queue.pop_timeout(Duration::from_millis(5)), Ok(1));
    assert_eq!(queue.push_timeout(3, Duration::MAX), Ok(1));
}

#[test]
fn timed_waits_are_woken_by_the_other_side() {
    let queue = Arc::new(TaskQueue::new(1).unwrap());
    let consumer = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || queue.pop_timeout(HANG_GUARD))
    };
    wait_until("the consumer waits", || waiters(&queue).1 == 1);
    queue.push(5).unwrap();
    assert_eq!(consumer.join().unwrap(), Ok(5));

    queue.push(6).unwrap();
    let producer = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || {
            queue
                .push_timeout(7, HANG_GUARD)
                .map_err(|e| e.into_inner())
        })
    };
    wait_until("the producer waits", || waiters(&queue).0 == 1);
    assert_eq!(queue.pop(), Ok(6));
    assert_eq!(producer.join().unwrap(), Ok(1));
    assert_eq!(queue.pop(), Ok(7));
}

#[test]
fn push_blocks_while_full_until_a_pop() {
    let queue = Arc::new(TaskQueue::new(1).unwrap());
    queue.push(1).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let producer = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || {
            let pushed = queue.push(2);
            done_tx.send(()).unwrap();
            pushed
        })
    };
    wait_until("the producer blocks on the full queue", || {
        waiters(&queue).0 == 1
    });
    // The producer is registered as waiting, so it cannot have finished.
    assert_eq!(done_rx.try_recv(), Err(mpsc::TryRecvError::Empty));
    assert_eq!(queue.pop(), Ok(1));
    done_rx
        .recv_timeout(HANG_GUARD)
        .expect("the pop unblocks the producer");
    assert_eq!(producer.join().unwrap(), Ok(1));
    assert_eq!(queue.pop(), Ok(2));
}

#[test]
fn pop_blocks_while_empty_until_a_push() {
    let queue = Arc::new(TaskQueue::new(4).unwrap());
    let (done_tx, done_rx) = mpsc::channel();
    let consumer = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || {
            let popped = queue.pop();
            done_tx.send(()).unwrap();
            popped
        })
    };
    wait_until("the consumer blocks on the empty queue", || {
        waiters(&queue).1 == 1
    });
    assert_eq!(done_rx.try_recv(), Err(mpsc::TryRecvError::Empty));
    assert_eq!(queue.push("hello"), Ok(1));
    done_rx
        .recv_timeout(HANG_GUARD)
        .expect("the push unblocks the consumer");
    assert_eq!(consumer.join().unwrap(), Ok("hello"));
}

#[test]
fn close_wakes_blocked_consumers_and_producers_without_losing_items() {
    // Three consumers block on an empty queue and are released by close.
    let empty = Arc::new(TaskQueue::<u32>::new(1).unwrap());
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let queue = Arc::clone(&empty);
            thread::spawn(move || queue.pop())
        })
        .collect();
    wait_until("three consumers block", || waiters(&empty).1 == 3);
    assert!(empty.close());
    for consumer in consumers {
        assert_eq!(consumer.join().unwrap(), Err(Closed));
    }

    // Three producers block on a full queue; close hands each its item back, and the item that was
    // already queued is still delivered afterwards.
    let full = Arc::new(TaskQueue::new(1).unwrap());
    full.push(100).unwrap();
    let producers: Vec<_> = (0..3)
        .map(|item| {
            let queue = Arc::clone(&full);
            thread::spawn(move || queue.push(item).map_err(PushError::into_inner))
        })
        .collect();
    wait_until("three producers block", || waiters(&full).0 == 3);
    assert!(full.close());
    assert!(!full.close(), "closing twice is harmless");
    let mut handed_back: Vec<_> = producers
        .into_iter()
        .map(|producer| producer.join().unwrap().unwrap_err())
        .collect();
    handed_back.sort_unstable();
    assert_eq!(handed_back, [0, 1, 2]);
    assert!(full.is_closed());
    assert_eq!(full.pop(), Ok(100));
    assert_eq!(full.pop(), Err(Closed));
    assert_eq!(full.try_push(9), Err(TryPushError::Closed(9)));
    assert_eq!(waiters(&full), (0, 0));
}

#[test]
fn drain_takes_everything_and_frees_blocked_producers() {
    let queue = Arc::new(TaskQueue::new(2).unwrap());
    queue.push(1).unwrap();
    queue.push(2).unwrap();
    let producers: Vec<_> = (3..5)
        .map(|item| {
            let queue = Arc::clone(&queue);
            thread::spawn(move || queue.push(item).is_ok())
        })
        .collect();
    wait_until("two producers block", || waiters(&queue).0 == 2);
    let mut out = vec![0];
    assert_eq!(queue.drain_into(&mut out), 2);
    assert_eq!(out, [0, 1, 2]);
    for producer in producers {
        assert!(
            producer.join().unwrap(),
            "drain made room for both producers"
        );
    }
    let mut rest = queue.drain();
    rest.sort_unstable();
    assert_eq!(rest, [3, 4]);
    assert_eq!(queue.drain_into(&mut out), 0);
}

#[test]
fn capacity_one_alternates_between_producer_and_consumer() {
    // Under Miri, which interprets every step, a few hundred handoffs keep the run in seconds.
    const ITEMS: u32 = if cfg!(miri) { 300 } else { 10_000 };
    let queue = Arc::new(TaskQueue::new(1).unwrap());
    let producer = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || {
            for item in 0..ITEMS {
                assert_eq!(
                    queue.push(item),
                    Ok(1),
                    "a capacity-1 queue is empty before a push"
                );
            }
            queue.close();
        })
    };
    let mut expected = 0;
    while let Ok(item) = queue.pop() {
        assert_eq!(item, expected);
        expected += 1;
    }
    assert_eq!(expected, ITEMS);
    producer.join().unwrap();
}

#[test]
fn four_producers_four_consumers_a_million_items_no_loss_no_duplicate() {
    const PRODUCERS: u32 = 4;
    const CONSUMERS: usize = 4;
    // Under Miri, which interprets every step, 2,048 items through a queue of 16 (so producers
    // and consumers still block and wake each other) keep the run in seconds.
    const ITEMS: u32 = if cfg!(miri) { 2_048 } else { 1_000_000 };
    const CAPACITY: usize = if cfg!(miri) { 16 } else { 1024 };
    const PER_PRODUCER: u32 = ITEMS / PRODUCERS;

    let queue = Arc::new(TaskQueue::new(CAPACITY).unwrap());
    let start = Arc::new(Barrier::new(PRODUCERS as usize + CONSUMERS));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let queue = Arc::clone(&queue);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let first = producer * PER_PRODUCER;
                for item in first..first + PER_PRODUCER {
                    queue
                        .push(item)
                        .expect("nobody closes before the producers finish");
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let mut seen = Vec::with_capacity(ITEMS as usize / CONSUMERS);
                while let Ok(item) = queue.pop() {
                    seen.push(item);
                }
                seen
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    queue.close();

    let mut bitmap = vec![0u64; ITEMS.div_ceil(64) as usize];
    let mut total = 0;
    for consumer in consumers {
        let seen = consumer.join().unwrap();
        // FIFO: one consumer sees each producer's items in the order they were pushed.
        let mut last_per_producer = [None::<u32>; PRODUCERS as usize];
        for &item in &seen {
            let last = &mut last_per_producer[(item / PER_PRODUCER) as usize];
            assert!(
                last.is_none_or(|last| last < item),
                "item {item} out of order"
            );
            *last = Some(item);
            let (word, bit) = ((item / 64) as usize, item % 64);
            assert_eq!(bitmap[word] & (1 << bit), 0, "item {item} delivered twice");
            bitmap[word] |= 1 << bit;
        }
        total += seen.len();
    }
    assert_eq!(total, ITEMS as usize, "every item delivered exactly once");
    assert!(bitmap.iter().all(|&word| word == u64::MAX));
}

#[test]
fn a_panic_while_holding_items_does_not_poison_the_queue() {
    let queue = Arc::new(TaskQueue::new(2).unwrap());
    queue.push(1).unwrap();
    let poisoner = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || {
            let _guard = queue.lock();
            panic!("a thread dies while holding the queue's lock");
        })
    };
    assert!(poisoner.join().is_err());
    assert!(queue.state.is_poisoned());
    assert_eq!(queue.push(2), Ok(2));
    assert_eq!(queue.drain(), [1, 2]);
}

#[test]
fn queue_is_send_and_sync_for_send_items() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TaskQueue<Box<dyn FnOnce() + Send>>>();
}
