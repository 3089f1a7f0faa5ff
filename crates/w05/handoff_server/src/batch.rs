//! A batch: the worker requests of one connection read in one loop turn, handed to the pool as
//! one task and brought back as one result.
//!
//! ## Why batch
//!
//! At pipelining depth 16 one `recv` brings sixteen requests. Handed over one by one, each would
//! cost a task allocation (the pool boxes every task), a push onto the pool's queue, possibly a
//! wake-up of a sleeping worker, and a push onto the results queue on the way back. A batch pays
//! each of those once for all the requests read from a connection in one turn, and the batch
//! itself (its request list, its argument bytes, its replies) is recycled by the loop, so steady
//! traffic allocates nothing per request on the way to the worker and back.
//!
//! ## What a batch keeps apart
//!
//! - **Ordering** is still per request: every request keeps its own sequence number, and the
//!   session writes each reply in its slot, exactly as for a single task.
//! - **Panics** are caught per request ([`TaskPanic::catch`]): one `panic` request gets its
//!   `ERROR: task panicked` answer and the other requests in the same batch get theirs.
//! - **Slow requests** travel alone (see [`travels_alone`]): a request that holds a worker without
//!   computing (`sleep`) would make every request batched behind it wait, and two such requests
//!   from one connection must be able to run on two workers at once.
//! - **Parallelism**: a batch holds at most [`MAX_BATCH`] requests, so a single connection that
//!   pipelines hundreds of requests still spreads them over every worker.

use std::ops::Range;

use handoff_protocol::{ErrorReply, Reply, Verb, execute};
use thread_pool::TaskPanic;

use eventloop::slab::Key;

/// The most requests one batch holds. Sixteen covers one read of a client pipelining sixteen
/// deep (the depth the benchmarks use) while still giving every worker a share of a deeper
/// pipeline.
pub(crate) const MAX_BATCH: usize = 16;

// starter: w05-l04 todo "Do 3: true for a sleep only"
/// Whether a request gets a task of its own instead of joining its connection's batch: `sleep`
/// blocks a worker for milliseconds without using it, so it must not hold up other requests, and
/// several of them must run on several workers at once.
pub(crate) fn travels_alone(verb: Verb) -> bool {
    verb == Verb::Sleep
}

/// One request inside a batch.
#[derive(Debug)]
struct Request {
    seq: u64,
    verb: Verb,
    /// The server-wide task number, for `--log`.
    task_id: u64,
    /// Where its argument bytes are in [`Batch::args`].
    args: Range<usize>,
}

/// Requests of one connection on their way to a worker, and their replies on the way back.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The connection the requests came from.
    key: Option<Key>,
    requests: Vec<Request>,
    /// Every request's argument bytes, one after another.
    args: Vec<u8>,
    /// Filled by [`run`](Self::run): one outcome per request, in the same order.
    replies: Vec<Result<Reply, TaskPanic>>,
    /// Set by [`skip`](Self::skip): a worker took the batch after every request's deadline had
    /// passed (W06 L03), and ran none of them.
    skipped: bool,
}

/// How many argument bytes a recycled batch may keep allocated; a batch that carried a huge
/// request is trimmed back so it does not pin that memory for good.
const MAX_KEPT_ARGS: usize = 16 * 1024;

impl Batch {
    /// Readies a recycled (or new) batch for the requests of connection `key`.
    pub(crate) fn start(&mut self, key: Key) {
        self.key = Some(key);
        self.requests.clear();
        self.args.clear();
        self.replies.clear();
        self.skipped = false;
        if self.args.capacity() > MAX_KEPT_ARGS {
            self.args.shrink_to(MAX_KEPT_ARGS);
        }
    }

    /// The connection the batch belongs to.
    pub(crate) fn key(&self) -> Option<Key> {
        self.key
    }

    // starter: w05-l04 todo "Do 3: append the argument bytes to args and a Request with their range to requests"
    /// Adds a request, copying its argument bytes.
    pub(crate) fn push(&mut self, seq: u64, verb: Verb, task_id: u64, args: &[u8]) {
        let start = self.args.len();
        self.args.extend_from_slice(args);
        self.requests.push(Request {
            seq,
            verb,
            task_id,
            args: start..self.args.len(),
        });
    }

    /// How many requests the batch holds.
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the batch holds no request.
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    // starter: w05-l04 todo "Do 3: clear replies; per request log if asked, then push TaskPanic::catch of execute"
    /// Runs every request, on a worker. A panic is caught per request, so it becomes that
    /// request's outcome only. With `log`, prints `worker <tid> task <id> <verb>` per request.
    pub(crate) fn run(&mut self, log: bool) {
        self.replies.clear();
        for request in &self.requests {
            if log {
                eprintln!(
                    "worker {} task {} {}",
                    eventloop::sys::gettid(),
                    request.task_id,
                    request.verb.as_str()
                );
            }
            let args = &self.args[request.args.clone()];
            self.replies
                .push(TaskPanic::catch(|| execute(request.verb, args)));
        }
    }

    /// Runs none of the requests, on a worker: every one of them is past its deadline, so the
    /// loop has answered (or is about to answer) each with the timeout, and a result would be
    /// dropped anyway. The loop sees [`was_skipped`](Self::was_skipped) and settles them so.
    pub(crate) fn skip(&mut self) {
        self.replies.clear();
        self.skipped = true;
    }

    /// Whether a worker [skipped](Self::skip) the batch.
    pub(crate) fn was_skipped(&self) -> bool {
        self.skipped
    }

    // starter: w05-l04 todo "Do 3: drain requests and replies together into seq and outcome pairs, a missing reply a Failed error"
    /// Takes the replies out, each with its request's sequence number, in request order. A
    /// request without a reply (the batch never ran) is answered as a failed task, so that every
    /// request still gets exactly one answer.
    pub(crate) fn take_replies(&mut self) -> impl Iterator<Item = (u64, Result<Reply, TaskPanic>)> {
        let mut replies = self.replies.drain(..);
        self.requests.drain(..).map(move |request| {
            let outcome = replies.next().unwrap_or_else(|| {
                Ok(Reply::Error(ErrorReply::Failed(
                    b"the task did not run".to_vec(),
                )))
            });
            (request.seq, outcome)
        })
    }
}

#[cfg(test)]
mod tests;
