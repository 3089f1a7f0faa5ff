//! `kv_server`: the W09 key-value server (lessons L04–L06 and the quest).
//!
//! The W05 handoff with a store behind it: the main thread runs an `eventloop` [`Dispatcher`]
//! that owns the listener and every client socket, each connection's protocol state is the
//! course's shared `handoff_protocol::session::Session`, a `thread_pool` runs every command on
//! the `kv_store` engine in per-connection batches, and the replies come back through a
//! `task_queue` and an eventfd waker. The wire format is the KV section of `course/PROTOCOL.md`.
//!
//! - [`server`]: the loop side — accepting, reading, the handoff both ways, backpressure, the
//!   expiry sweep, shutdown.
//! - [`batch`]: the request lines of one connection and one turn, run as one pool task.
//!
//! Shutdown on SIGINT/SIGTERM, as in W05: the signals are blocked before the pool starts (every
//! worker inherits the mask) and arrive through the dispatcher's signalfd; the loop stops
//! accepting and reading, answers every request it has read, closes each connection once its
//! answers are sent, and returns; then the pool is shut down (every accepted task runs, every
//! worker is joined), every fd is closed, and the process exits 0.

mod batch;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use eventloop::Dispatcher;
use handoff_protocol::session::Limits;
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
    /// TCP port to listen on; 0 picks a free port. Either way the first stdout line is
    /// `listening on <addr>:<port>`.
    #[arg(value_name = "PORT", default_value_t = 0)]
    port: u16,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,

    /// Worker threads [default: the number of CPUs, or THREAD_POOL_WORKERS if set].
    #[arg(long, value_name = "N", value_parser = positive)]
    workers: Option<usize>,

    /// Requests that may wait in the pool for a worker. When they are all taken, the loop stops
    /// reading requests until a result frees room (nothing is dropped).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = positive)]
    queue: usize,

    /// How the store is locked: `single` (one reader-writer lock), `sharded` (16 of them, by
    /// key hash) or `sharded:N`. GETs and KEYS take read locks, so they run in parallel either
    /// way; see the kv_store README for what was measured.
    #[arg(long, value_name = "STRATEGY", default_value_t = LockStrategy::default())]
    lock: LockStrategy,

    /// Per connection: unanswered requests beyond which the loop stops reading that connection
    /// until answers go out.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = positive)]
    max_in_flight: usize,

    /// Per connection: bytes of responses the client has not taken yet beyond which the loop
    /// stops reading that connection until it drains (1048576 is 1 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = positive)]
    max_unsent_bytes: usize,

    /// Log `main <thread-id>` once from the loop, and `worker <thread-id> task <task-id> <verb>`
    /// on stderr from the worker that runs each command.
    #[arg(long)]
    log: bool,
}

/// A count that must be at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kv_server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // Before any thread exists: every worker inherits this mask, so the signals can only be
    // read from the loop's signalfd.
    eventloop::sys::block_signals(&[libc::SIGINT, libc::SIGTERM])
        .context("cannot block SIGINT and SIGTERM")?;
    report_worker_panics_in_one_line();
    let config = Config {
        addr: SocketAddr::new(cli.bind, cli.port),
        workers: cli.workers,
        queue: cli.queue,
        limits: Limits {
            max_in_flight: cli.max_in_flight,
            max_unsent: cli.max_unsent_bytes,
        },
        lock: cli.lock,
        log: cli.log,
    };
    let dispatcher = Dispatcher::new("kv-loop")?;
    let server = server::start(&dispatcher, &config)?;
    dispatcher.run().context("the event loop failed")?;
    server.borrow_mut().shut_down_pool();
    drop(dispatcher);
    drop(server);
    Ok(())
}

/// A command that panics on a worker is a bug (the client gets `ERROR task panicked`); its
/// report becomes one line on stderr instead of the default several.
fn report_worker_panics_in_one_line() {
    thread_pool::report_worker_panics_with(WORKER_THREAD_NAME, |info| {
        let message = handoff_protocol::panic_message(info.payload());
        eprintln!("worker {} panicked: {message}", eventloop::sys::gettid());
    });
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
            (cli.port, cli.workers, cli.queue, cli.lock, cli.log),
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
