//! What a loop of `--loops N` and the main thread share: the loop's link to the main thread
//! (`LoopLink`, the messages it carries) and one loop's counters for a `stats` answer
//! (`LoopTally`).
//!
//! A leaf module: the server keeps its loop's link and reports its tally through these types,
//! and `loops` (the supervisor) builds the links and adds the tallies up, so both depend on this
//! module and neither on the other's internals for them.

use std::sync::{Arc, mpsc};

use eventloop::Waker;
use eventloop::slab::Key;
use handoff_protocol::Stats;
use thread_pool::ThreadPool;

use crate::overload::OverloadTally;
use crate::telemetry::OverloadStats;

/// One loop's counters for a `stats` answer, or several loops' added up.
#[derive(Debug, Default)]
pub(crate) struct LoopTally {
    /// The protocol's keys as the loop counts them (the pool's keys are read once, at the end).
    pub(crate) base: Stats,
    /// The W06 keys.
    pub(crate) overload: OverloadTally,
}

impl LoopTally {
    /// Adds another loop's tally to this one.
    pub(crate) fn add(&mut self, other: &LoopTally) {
        let (sum, part) = (&mut self.base, &other.base);
        sum.connections += part.connections;
        sum.completed += part.completed;
        sum.errors += part.errors;
        sum.panics += part.panics;
        sum.rejected += part.rejected;
        self.overload.add(&other.overload);
    }

    /// The whole `stats` answer: these counters, and the shared pool's own.
    pub(crate) fn into_stats(self, pool: &ThreadPool) -> (Stats, OverloadStats) {
        let pool_stats = pool.stats();
        let stats = Stats {
            queue_depth: pool_stats.queued as u64,
            workers: pool_stats.workers as u64,
            busy_workers: pool_stats.busy as u64,
            ..self.base
        };
        (stats, self.overload.stats())
    }
}

/// What a loop tells the main thread.
#[derive(Debug)]
pub(crate) enum Message {
    /// Loop `from` read `stats` request `seq` on connection `key`: gather every loop's counters.
    Stats { from: usize, key: Key, seq: u64 },
    /// A loop has drained after the shutdown signal.
    Drained,
}

/// The way from the loops to the main thread: a channel and the main dispatcher's waker.
#[derive(Debug)]
pub(crate) struct MainChannel {
    sender: mpsc::Sender<Message>,
    waker: Waker,
}

impl MainChannel {
    /// The channel whose messages `waker`'s callback on the main dispatcher reads.
    pub(crate) fn new(sender: mpsc::Sender<Message>, waker: Waker) -> Self {
        Self { sender, waker }
    }

    fn send(&self, message: Message) {
        // The receiver lives as long as the main loop, which outlives every loop's requests.
        if self.sender.send(message).is_ok() {
            self.waker.wake();
        }
    }
}

/// A loop's link to the main thread, kept in its server.
#[derive(Debug)]
pub(crate) struct LoopLink {
    index: usize,
    tid: i32,
    main: Arc<MainChannel>,
    reported_drained: bool,
}

impl LoopLink {
    /// The link of loop `index`, whose thread has kernel thread id `tid`, to the main thread.
    pub(crate) fn new(index: usize, tid: i32, main: Arc<MainChannel>) -> Self {
        Self {
            index,
            tid,
            main,
            reported_drained: false,
        }
    }

    /// The loop's index, 0..N.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The loop thread's kernel thread id.
    pub(crate) fn tid(&self) -> i32 {
        self.tid
    }

    /// Asks for every loop's counters for `stats` request `seq` of connection `key`.
    pub(crate) fn ask_stats(&self, key: Key, seq: u64) {
        self.main.send(Message::Stats {
            from: self.index,
            key,
            seq,
        });
    }

    /// Tells the main thread, once, that this loop has drained.
    pub(crate) fn report_drained(&mut self) {
        if !self.reported_drained {
            self.reported_drained = true;
            self.main.send(Message::Drained);
        }
    }
}
