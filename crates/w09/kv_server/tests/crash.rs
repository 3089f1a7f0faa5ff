//! The crash harness: `kv_server --data-dir` killed with SIGKILL at random moments under load,
//! and at each failpoint of its log and checkpoint, then restarted on the same folder; every
//! acknowledged write must be there, and each client's keys must form an unbroken run.
//!
//! Each client owns a connection and writes its own keys `c<client>-<index>` with index
//! 0, 1, 2, … (pipelined [`depth`] deep), noting every `OK`. A client's writes reach the log in
//! the order it sent them, so after any crash what survived of them is a prefix: every index
//! up to its last `OK` at least, then possibly a few sent but not yet acknowledged, then
//! nothing. The check asks the restarted server for exactly that, value included.
//!
//! `cargo test` runs a short version (`KV_CRASH_KILLS`, default 8 kills, plus every failpoint);
//! `cargo xtask crash` runs the long one (200 kills). `KV_CRASH_SEED` repeats a run's random
//! choices (each run prints its seed).

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{exchange, start_durable, stat, stderr_text, wait_exit};
use test_support::{ServerProcess, TempDir};

/// Concurrent writers.
const CLIENTS: usize = 6;
/// Requests writer `client` keeps in flight: client 0 a full batch of the server's (16, its
/// `MAX_BATCH`: one read of it is one batch, so a server that logs only part of a batch loses
/// acknowledged writes here), the others 4.
fn depth(client: usize) -> u64 {
    if client == 0 { 16 } else { 4 }
}

/// Small checkpoints, so kills land in checkpoints too.
const SERVER_ARGS: [&str; 4] = ["--checkpoint-bytes", "16384", "--checkpoint-every", "1"];
/// The failpoints that kill the server, each visited by the harness.
const KILLING_FAILPOINTS: [&str; 5] = [
    "checkpoint-before-sync",
    "checkpoint-before-rename",
    "checkpoint-after-rename",
    "checkpoint-before-cleanup",
    "after-log-sync",
];

/// A small deterministic generator (xorshift64*), so a seed repeats a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

fn key(client: usize, index: u64) -> String {
    format!("c{client}-{index}")
}

fn value(client: usize, index: u64) -> String {
    // Varied lengths, so records straddle the disk's blocks differently.
    format!(
        "v{index}-{}",
        "x".repeat((index as usize * 7 + client) % 61)
    )
}

/// What every client knows: the first index it has not yet written in this life of the server,
/// and how many of its writes were acknowledged in all.
#[derive(Debug, Clone, Copy, Default)]
struct Writer {
    next: u64,
    acknowledged: u64,
}

/// Writes from `writer.next` on, [`depth`] requests in flight, until the connection breaks or
/// `until` passes; returns the writer's state: `next` past every index sent, `acknowledged`
/// past every `OK`.
fn write_until_broken(
    addr: SocketAddr,
    client: usize,
    mut writer: Writer,
    until: Instant,
) -> Writer {
    let Ok(stream) = std::net::TcpStream::connect(addr) else {
        return writer;
    };
    stream
        .set_read_timeout(Some(common::IO_TIMEOUT))
        .expect("sets the timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clones the socket"));
    let mut stream = stream;
    let mut line = String::new();
    let depth = depth(client);
    while Instant::now() < until {
        let batch: String = (writer.next..writer.next + depth)
            .map(|index| format!("SET {} {}\n", key(client, index), value(client, index)))
            .collect();
        if stream.write_all(batch.as_bytes()).is_err() {
            return writer;
        }
        // Sent: these may be in the log from now on, acknowledged or not.
        let first = writer.next;
        writer.next += depth;
        for index in first..first + depth {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => {
                    assert_eq!(line, "OK\n", "client {client}, index {index}");
                    writer.acknowledged = index + 1;
                }
                // The server died: what is acknowledged is acknowledged.
                _ => return writer,
            }
        }
    }
    writer
}

/// Asks the restarted server for each client's keys from index `from[client]` on (0 for all);
/// checks the unbroken run (every acknowledged index present with its value, then at most the
/// unacknowledged ones sent, then nothing) and returns each client's state for the next life:
/// writing resumes right after the run that survived. The keys below `from` were checked in an
/// earlier round; that none of them went missing since is checked by the store's key count,
/// which must equal the sum of the runs.
fn check_recovery(
    addr: SocketAddr,
    writers: &[Writer],
    from: &[u64],
    round: u64,
    seed: u64,
) -> Vec<Writer> {
    let mut next = Vec::new();
    for (client, writer) in writers.iter().enumerate() {
        let start = from[client].min(writer.next);
        let gets: String = (start..writer.next)
            .map(|index| format!("GET {}\n", key(client, index)))
            .collect();
        let answers = exchange(addr, &gets);
        let mut survived = start;
        for (index, answer) in (start..writer.next).zip(answers.lines()) {
            let expected = format!("VALUE {}", value(client, index));
            let context = format!(
                "round {round} (KV_CRASH_SEED={seed}), client {client}, index {index}: \
                 acknowledged up to {}, sent up to {}",
                writer.acknowledged, writer.next
            );
            if index < writer.acknowledged {
                assert_eq!(
                    answer, expected,
                    "an acknowledged write was lost: {context}"
                );
                survived = index + 1;
            } else if answer == expected && survived == index {
                survived = index + 1; // sent, not acknowledged, yet logged: allowed
            } else {
                assert_eq!(answer, "NOT_FOUND", "a gap or a corrupt value: {context}");
            }
        }
        assert_eq!(answers.lines().count() as u64, writer.next - start);
        next.push(Writer {
            next: survived,
            acknowledged: survived,
        });
    }
    // Nothing beyond the clients' keys exists: the store holds exactly the runs.
    let keys = stat(&exchange(addr, "STATS\n"), "keys") as u64;
    let expected: u64 = next.iter().map(|writer| writer.next).sum();
    assert_eq!(keys, expected, "round {round} (KV_CRASH_SEED={seed})");
    next
}

/// One life of the server: start on `data` (with `failpoint`), load it from every client until
/// `kill_after` (then SIGKILL) or until the failpoint kills it; returns the writers' states.
fn one_life(
    data: &Path,
    writers: &[Writer],
    failpoint: Option<&str>,
    kill_after: Duration,
) -> Vec<Writer> {
    let mut server = start_durable(data, &SERVER_ARGS, failpoint);
    let addr = server.addr();
    // With a failpoint the server must kill itself; the deadline only bounds the test.
    let until = Instant::now()
        + if failpoint.is_some() {
            common::IO_TIMEOUT
        } else {
            kill_after
        };
    let after = std::thread::scope(|scope| {
        let handles: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(client, writer)| {
                let writer = *writer;
                scope.spawn(move || write_until_broken(addr, client, writer, until))
            })
            .collect();
        if failpoint.is_none() {
            std::thread::sleep(kill_after);
            server.child_mut().kill().expect("kill -9");
        }
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a writer panicked"))
            .collect::<Vec<_>>()
    });
    let status = match failpoint {
        // A failpoint never reached leaves the server running: say so, not just that it did not
        // exit (a checkpoint that never comes due never reaches the checkpoint's failpoints).
        Some(point) => server.wait_exit(common::IO_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "failpoint {point} was never reached: the server still ran {:?} after the \
                 writers stopped; its stderr:\n{}",
                common::IO_TIMEOUT,
                stderr_text(data)
            )
        }),
        None => wait_exit(&mut server),
    };
    if let Some(point) = failpoint {
        assert!(
            status.code().is_none(),
            "failpoint {point}: the server should have killed itself, it exited {status}; \
             its stderr:\n{}",
            stderr_text(data)
        );
        assert!(
            stderr_text(data).contains("failpoint"),
            "failpoint {point} was never reached:\n{}",
            stderr_text(data)
        );
    }
    after
}

/// Restarts the server on `data` and checks it (see [`check_recovery`]); `full` asks for every
/// key, otherwise only those written since the last check.
fn restart_and_check(
    data: &Path,
    before: &[Writer],
    after: &[Writer],
    full: bool,
    round: u64,
    seed: u64,
) -> Vec<Writer> {
    let server: ServerProcess = start_durable(data, &SERVER_ARGS, None);
    let from: Vec<u64> = if full {
        vec![0; after.len()]
    } else {
        before.iter().map(|writer| writer.next).collect()
    };
    let next = check_recovery(server.addr(), after, &from, round, seed);
    drop(server);
    next
}

#[test]
fn nothing_acknowledged_is_lost_across_random_kills_and_every_failpoint() {
    let kills = env_number("KV_CRASH_KILLS", 8);
    let seed = env_number(
        "KV_CRASH_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
            | 1,
    );
    println!("crash harness: {kills} kills, KV_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let temp = TempDir::new("kv-crash");
    let data = temp.path().join("data");
    let mut writers = vec![Writer::default(); CLIENTS];
    let mut acknowledged_total = 0;
    let started = Instant::now();
    for round in 0..kills {
        let kill_after = Duration::from_millis(20 + rng.below(180));
        let after = one_life(&data, &writers, None, kill_after);
        acknowledged_total += after
            .iter()
            .zip(&writers)
            .map(|(after, before)| after.acknowledged.saturating_sub(before.acknowledged))
            .sum::<u64>();
        writers = restart_and_check(&data, &writers, &after, false, round, seed);
    }
    for (offset, point) in KILLING_FAILPOINTS.iter().enumerate() {
        let round = kills + offset as u64;
        let after = one_life(&data, &writers, Some(point), Duration::ZERO);
        let last = offset + 1 == KILLING_FAILPOINTS.len();
        writers = restart_and_check(&data, &writers, &after, last, round, seed);
    }
    let keys: u64 = writers.iter().map(|writer| writer.next).sum();
    println!(
        "crash harness: {} lives ({kills} SIGKILLs, {} failpoints), {acknowledged_total} writes \
         acknowledged under random kills, {keys} keys checked at the end, 0 lost, in {:.1} s",
        kills + KILLING_FAILPOINTS.len() as u64,
        KILLING_FAILPOINTS.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        acknowledged_total > 0,
        "no write was ever acknowledged: nothing was tested"
    );
}
