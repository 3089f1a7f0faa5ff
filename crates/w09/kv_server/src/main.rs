//! `kv_server`: the W09 key-value server (lessons L04–L06 and the quest).
//!
//! The W05 handoff with a store behind it: the main thread runs the W05 loop,
//! `handoff_server::io_loop`, on an `eventloop` [`Dispatcher`] that owns the listener and every
//! client socket; each connection's protocol state is the course's shared
//! `handoff_protocol::session::Session`, a `thread_pool` runs every command on the `kv_store`
//! engine in per-connection batches, and the replies come back through the loop's results queue
//! and eventfd waker. The wire format is the KV section of `course/PROTOCOL.md`.
//!
//! - [`server`]: the KV server's service on that loop — the session host, one batch per
//!   connection in the pool, the budget, the expiry sweep.
//! - [`batch`]: the request lines of one connection and one turn, run as one pool task.
//!
//! Shutdown on SIGINT/SIGTERM, as in W05: the signals are blocked before the pool starts (every
//! worker inherits the mask) and arrive through the dispatcher's signalfd; the loop stops
//! accepting and reading, answers every request it has read, closes each connection once its
//! answers are sent, and returns; then the pool is shut down (every accepted task runs, every
//! worker is joined), every fd is closed, and the process exits 0.

mod batch;
mod server;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use eventloop::Dispatcher;
use handoff_server::startup::{
    ServeArgs, block_shutdown_signals, exit_code, report_worker_panics_in_one_line,
};
use kv_store::LockStrategy;

use crate::server::{Config, WORKER_THREAD_NAME};

const EXAMPLES: &str = "\
Examples:
  kv_server 9099
      Listen on 127.0.0.1:9099 with one worker per CPU and one lock around the store.
  kv_server 0 --workers 2 --lock sharded:16 --log
      Pick a free port (printed as `listening on 127.0.0.1:<port>`), run 2 workers over 16
      lock shards, and log the loop's thread id and, from each worker, every command it runs.

Then, from another terminal:
  echo \"SET foo bar\" | nc -q1 localhost 9099        # OK
  echo \"GET foo\" | nc -q1 localhost 9099            # VALUE bar
  printf 'SET t 1 EX 60\\nKEYS\\nSTATS\\n' | nc -q1 localhost 9099

SIGINT or SIGTERM: stop accepting, answer every request already read, join the workers, exit 0.";

/// The W09 key-value server: SET (with EX expiry), GET, DEL, KEYS, STATS over the course's line
/// protocol; an epoll event loop owns every socket and a thread pool runs every command.
#[derive(Debug, Parser)]
#[command(name = "kv_server", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,

    /// How the store is locked: `single` (one reader-writer lock), `sharded` (16 of them, by
    /// key hash) or `sharded:N`. GETs and KEYS take read locks, so they run in parallel either
    /// way; see the kv_store README for what was measured.
    #[arg(long, value_name = "STRATEGY", default_value_t = LockStrategy::default())]
    lock: LockStrategy,

    /// Log `main <thread-id>` once from the loop, and `worker <thread-id> task <task-id> <verb>`
    /// on stderr from the worker that runs each command.
    #[arg(long)]
    log: bool,
}

fn main() -> ExitCode {
    exit_code("kv_server", run(&Cli::parse()))
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // Before any thread exists: every worker inherits this mask, so the signals can only be
    // read from the loop's signalfd.
    block_shutdown_signals().context("cannot block SIGINT and SIGTERM")?;
    // A command that panics on a worker is a bug (the client gets `ERROR task panicked`); its
    // report becomes one line on stderr instead of the default several.
    report_worker_panics_in_one_line(WORKER_THREAD_NAME, true);
    let config = Config {
        serve: cli.serve.serve(),
        lock: cli.lock,
        log: cli.log,
    };
    let dispatcher = Dispatcher::new("kv-loop")?;
    let server = server::start(&dispatcher, &config)?;
    dispatcher.run().context("the event loop failed")?;
    server::shut_down_pool(&server.borrow());
    drop(dispatcher);
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses_and_refuses_bad_values() {
        let cli = Cli::try_parse_from([
            "kv_server",
            "9099",
            "--workers",
            "2",
            "--queue",
            "8",
            "--lock",
            "sharded:4",
            "--log",
        ])
        .unwrap();
        assert_eq!(
            (
                cli.serve.port,
                cli.serve.workers,
                cli.serve.queue,
                cli.lock,
                cli.log
            ),
            (9099, Some(2), 8, LockStrategy::Sharded(4), true)
        );
        assert_eq!(
            Cli::try_parse_from(["kv_server"]).unwrap().lock,
            LockStrategy::Single
        );
        for bad in [
            &["kv_server", "--lock", "sharded:0"][..],
            &["kv_server", "--lock", "striped"][..],
            &["kv_server", "--workers", "0"][..],
            &["kv_server", "notaport"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
