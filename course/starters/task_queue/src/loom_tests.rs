//! loom models of the queue's push/pop/close interleavings. Each model runs two or three threads on
//! a tiny queue; loom explores every interleaving of their lock acquisitions and condvar waits and
//! fails on a deadlock, which is exactly how a lost wake-up would show up.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release -p task_queue --lib -- loom`.

use super::*;
use loom::sync::Arc;
use loom::thread;

/// A producer filling a capacity-1 queue and a consumer emptying it hand over every item in order:
/// each side blocks in turn, so this checks both condvars' notify-only-when-waiting logic.
#[test]
fn loom_push_pop_capacity_one_delivers_in_order() {
    loom::model(|| {
        let queue = Arc::new(TaskQueue::new(1).unwrap());
        let producer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                queue.push(1).unwrap();
                queue.push(2).unwrap();
            })
        };
        assert_eq!(queue.pop(), Ok(1));
        assert_eq!(queue.pop(), Ok(2));
        producer.join().unwrap();
        assert!(queue.is_empty());
    });
}

/// Two blocked consumers and one producer of two items: `notify_one` must never strand a consumer
/// while an item sits in the queue.
#[test]
fn loom_two_consumers_each_get_one_item() {
    loom::model(|| {
        let queue = Arc::new(TaskQueue::new(1).unwrap());
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || queue.pop().unwrap())
            })
            .collect();
        queue.push(10).unwrap();
        queue.push(20).unwrap();
        let mut got: Vec<_> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [10, 20]);
    });
}

/// Close racing a consumer: whatever the order, the consumer gets every item pushed before the
/// close and then `Closed`, never a hang and never a lost item.
#[test]
fn loom_close_releases_consumer_after_queued_items() {
    loom::model(|| {
        let queue = Arc::new(TaskQueue::new(2).unwrap());
        let consumer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(item) = queue.pop() {
                    got.push(item);
                }
                got
            })
        };
        queue.push(1).unwrap();
        queue.close();
        assert_eq!(consumer.join().unwrap(), [1]);
    });
}

/// Close racing a producer blocked on a full queue and a consumer: the blocked push either lands
/// (and is then popped) or comes back in the error; the item is never lost or duplicated.
#[test]
fn loom_close_releases_blocked_producer_without_loss() {
    loom::model(|| {
        let queue = Arc::new(TaskQueue::new(1).unwrap());
        queue.push(1).unwrap();
        let producer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || queue.push(2).err().map(PushError::into_inner))
        };
        let closer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                queue.close();
            })
        };
        let mut popped = Vec::new();
        while let Ok(item) = queue.pop() {
            popped.push(item);
        }
        let handed_back = producer.join().unwrap();
        closer.join().unwrap();
        popped.extend(handed_back);
        assert_eq!(popped, [1, 2]);
    });
}

/// `drain_into` freeing the whole queue must wake a producer blocked on it.
#[test]
fn loom_drain_wakes_blocked_producer() {
    loom::model(|| {
        let queue = Arc::new(TaskQueue::new(1).unwrap());
        queue.push(1).unwrap();
        let producer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || queue.push(2).unwrap())
        };
        let mut out = Vec::new();
        while out.len() < 2 {
            queue.drain_into(&mut out);
            if out.len() < 2 {
                // Block until the producer's item arrives instead of spinning, which loom would
                // explore without bound.
                out.push(queue.pop().unwrap());
            }
        }
        producer.join().unwrap();
        assert_eq!(out, [1, 2]);
    });
}
