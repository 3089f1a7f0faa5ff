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
//! - [`durable`]: `--data-dir` (W10): the write-ahead log on the pool, group commit,
//!   recovery and checkpoints.
//!
//! Shutdown on SIGINT/SIGTERM, as in W05: the signals are blocked before the pool starts (every
//! worker inherits the mask) and arrive through the dispatcher's signalfd; the loop stops
//! accepting and reading, answers every request it has read, closes each connection once its
//! answers are sent, and returns; then the pool is shut down (every accepted task runs, every
//! worker is joined), every fd is closed, and the process exits 0.

mod batch;
mod durable;
mod server;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use eventloop::Dispatcher;
use handoff_server::startup::{
    ServeArgs, block_shutdown_signals, exit_code, report_worker_panics_in_one_line,
};
use kv_store::LockStrategy;

use crate::durable::{CheckpointPolicy, Durability, Failpoint, FsyncMode};
use crate::server::{Config, WORKER_THREAD_NAME};

/// The environment variable that names a failpoint (tests only; see `--help`).
const FAILPOINT_ENV: &str = "KV_SERVER_FAILPOINT";

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

Durable (W10):
  kv_server 9099 --data-dir data
      Recover the store from data/ (checkpoint, then the log after it), then answer every SET
      and DEL only once its log record is fsynced. The workers write and fsync the log; the
      event loop never touches the disk. STATS adds log_records, log_bytes, fsyncs,
      records_per_fsync, checkpoints and last_checkpoint_ms.

  A failed write or fsync of the log is never retried: the server reports it on one line and
  exits 1 without acknowledging the records it held. For crash tests only, KV_SERVER_FAILPOINT
  names a step at which the server kills itself with SIGKILL: checkpoint-before-sync,
  checkpoint-before-rename, checkpoint-after-rename, checkpoint-before-cleanup, after-log-sync;
  or slow-log-sync, which stalls every log fsync by 400 ms, as a slow disk would.

SIGINT or SIGTERM: stop accepting, answer every request already read, join the workers (with
--data-dir, after one last fsync of the log), exit 0.";

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

    /// Make the store durable in DIR (created if missing): recover from it on start, log and
    /// fsync every SET and DEL before answering it. Without it the store lives in memory only.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,

    /// With --data-dir: `group` (one fsync covers every record that arrived while the previous
    /// one ran) or `per-record` (one fsync per record: slower, for comparison).
    #[arg(long, value_enum, default_value_t = FsyncMode::Group, requires = "data_dir")]
    fsync: FsyncMode,

    /// With --data-dir: checkpoint after this many seconds with new records (0: never on time).
    #[arg(long, value_name = "SECS", default_value_t = 60, requires = "data_dir")]
    checkpoint_every: u64,

    /// With --data-dir: checkpoint once the log has grown by this many bytes since the last one
    /// (0: never on size).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, requires = "data_dir")]
    checkpoint_bytes: u64,
}

impl Cli {
    /// `--data-dir` and its flags, with the failpoint `failpoint` names (from the environment).
    fn durability(&self, failpoint: Option<&str>) -> anyhow::Result<Option<Durability>> {
        let Some(dir) = &self.data_dir else {
            if failpoint.is_some() {
                anyhow::bail!("{FAILPOINT_ENV} is set, but failpoints need --data-dir");
            }
            return Ok(None);
        };
        let failpoint = failpoint
            .map(Failpoint::parse)
            .transpose()
            .map_err(|error| anyhow::anyhow!("{FAILPOINT_ENV}: {error}"))?;
        Ok(Some(Durability {
            dir: dir.clone(),
            fsync: self.fsync,
            checkpoints: CheckpointPolicy {
                every: (self.checkpoint_every > 0)
                    .then(|| std::time::Duration::from_secs(self.checkpoint_every)),
                bytes: (self.checkpoint_bytes > 0).then_some(self.checkpoint_bytes),
            },
            failpoint,
        }))
    }
}

fn main() -> ExitCode {
    exit_code("kv_server", run(&Cli::parse()))
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let failpoint = std::env::var(FAILPOINT_ENV).ok();
    let durability = cli.durability(failpoint.as_deref())?;
    // Before any thread exists: every worker inherits this mask, so the signals can only be
    // read from the loop's signalfd.
    block_shutdown_signals().context("cannot block SIGINT and SIGTERM")?;
    if durability.is_some() {
        // A log write past RLIMIT_FSIZE must fail with EFBIG (and take the fatal-error path)
        // rather than kill the process with SIGXFSZ.
        eventloop::sys::block_signals(&[libc::SIGXFSZ]).context("cannot block SIGXFSZ")?;
    }
    // A command that panics on a worker is a bug (the client gets `ERROR task panicked`); its
    // report becomes one line on stderr instead of the default several.
    report_worker_panics_in_one_line(WORKER_THREAD_NAME, true);
    let config = Config {
        serve: cli.serve.serve(),
        lock: cli.lock,
        log: cli.log,
        durability,
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
        let durable = Cli::try_parse_from([
            "kv_server",
            "--data-dir",
            "d",
            "--fsync",
            "per-record",
            "--checkpoint-every",
            "0",
        ])
        .unwrap();
        let durability = durable.durability(Some("checkpoint-after-rename")).unwrap();
        let durability = durability.expect("--data-dir makes it durable");
        assert_eq!(durability.fsync, FsyncMode::PerRecord);
        assert_eq!(durability.checkpoints.every, None);
        assert_eq!(durability.checkpoints.bytes, Some(64 << 20));
        assert_eq!(durability.failpoint, Some(Failpoint::CheckpointAfterRename));
        assert!(durable.durability(Some("nowhere")).is_err());
        let in_memory = Cli::try_parse_from(["kv_server"]).unwrap();
        assert!(in_memory.durability(None).unwrap().is_none());
        assert!(in_memory.durability(Some("after-log-sync")).is_err());
        for bad in [
            &["kv_server", "--fsync", "per-record"][..],
            &["kv_server", "--checkpoint-every", "5"][..],
            &["kv_server", "--data-dir", "d", "--fsync", "sometimes"][..],
            &["kv_server", "--lock", "sharded:0"][..],
            &["kv_server", "--lock", "striped"][..],
            &["kv_server", "--workers", "0"][..],
            &["kv_server", "notaport"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
