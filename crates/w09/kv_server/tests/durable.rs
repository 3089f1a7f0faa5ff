//! `kv_server --data-dir` end to end: what a restart recovers (SET, DEL, expiry, a torn tail,
//! checkpoints), the log's STATS figures, group commit against one fsync per record, a GET that
//! never sees a write before its fsync while the loop keeps answering, and a failed log write
//! that is fatal and never acknowledged.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    IO_TIMEOUT, connect, exchange, start_durable, stat, stderr_text, terminate, wait_exit,
};
use test_support::{ServerProcess, TempDir};

/// The data folder of a test: `data/` inside its own temporary folder (the servers' stderr
/// file sits beside it).
fn data_dir(temp: &TempDir) -> PathBuf {
    temp.path().join("data")
}

fn stats(addr: SocketAddr) -> String {
    exchange(addr, "STATS\n")
}

/// The log segments in `data`, in order.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    found.sort();
    found
}

#[test]
fn a_restart_recovers_every_acknowledged_set_and_del_and_replay_drops_expired_keys() {
    let temp = TempDir::new("kv-durable");
    let data = data_dir(&temp);
    let mut server = start_durable(&data, &[], None);
    assert_eq!(
        exchange(
            server.addr(),
            "SET a 1\nSET b 2\nDEL a\nSET b two words\nSET short old\nSET short 3 EX 1\n\
             SET long 4 EX 600\n"
        ),
        "OK\nOK\nDELETED\nOK\nOK\nOK\nOK\n"
    );
    assert!(terminate(&mut server).success(), "SIGTERM exits 0");
    drop(server);
    // Past `short`'s deadline: replay must leave it out altogether, not keep it to expire lazily,
    // and not bring back the value its expiring `SET` replaced.
    std::thread::sleep(Duration::from_millis(1100));
    let server = start_durable(&data, &[], None);
    assert_eq!(
        exchange(server.addr(), "GET a\nGET b\nGET short\nGET long\n"),
        "NOT_FOUND\nVALUE two words\nNOT_FOUND\nVALUE 4\n"
    );
    let line = stats(server.addr());
    assert_eq!(stat(&line, "keys"), 2.0, "{line}");
    assert!(
        stderr_text(&data).contains("kv_server: recovered"),
        "{}",
        stderr_text(&data)
    );
}

#[test]
fn stats_shows_the_log_figures_and_a_kill_loses_nothing_acknowledged() {
    let temp = TempDir::new("kv-durable");
    let data = data_dir(&temp);
    let mut server = start_durable(&data, &[], None);
    let input: String = (0..50).map(|i| format!("SET k{i} {i}\n")).collect();
    assert_eq!(exchange(server.addr(), &input), "OK\n".repeat(50));
    assert_eq!(
        exchange(server.addr(), "GET k1\nDEL k1\n"),
        "VALUE 1\nDELETED\n"
    );
    let line = stats(server.addr());
    assert_eq!(stat(&line, "log_records"), 51.0, "{line}");
    let fsyncs = stat(&line, "fsyncs");
    assert!((1.0..=51.0).contains(&fsyncs), "{line}");
    assert!(stat(&line, "log_bytes") > 51.0 * 8.0, "{line}");
    assert_eq!(stat(&line, "checkpoints"), 0.0, "{line}");
    // kill -9: no drain, no last fsync; every answered write must still be there.
    server.child_mut().kill().unwrap();
    wait_exit(&mut server);
    drop(server);
    let server = start_durable(&data, &[], None);
    let gets: String = (0..50).map(|i| format!("GET k{i}\n")).collect();
    let expected: String = (0..50)
        .map(|i| {
            if i == 1 {
                "NOT_FOUND\n".to_owned()
            } else {
                format!("VALUE {i}\n")
            }
        })
        .collect();
    assert_eq!(exchange(server.addr(), &gets), expected);
    // A fresh server's figures count from its start.
    assert_eq!(stat(&stats(server.addr()), "log_records"), 0.0);
}

/// Sends one `SET` from each of `clients` connections at once and waits for every `OK`.
fn concurrent_sets(addr: SocketAddr, clients: usize) {
    std::thread::scope(|scope| {
        for client in 0..clients {
            scope.spawn(move || {
                assert_eq!(exchange(addr, &format!("SET c{client} v\n")), "OK\n");
            });
        }
    });
}

#[test]
fn one_fsync_covers_the_writes_of_many_clients_and_per_record_mode_pays_one_each() {
    let temp = TempDir::new("kv-durable");
    // Every fsync stalls 400 ms, so the writes of 16 clients pile up behind the first one.
    let group = start_durable(&data_dir(&temp), &[], Some("slow-log-sync"));
    concurrent_sets(group.addr(), 16);
    let line = stats(group.addr());
    assert_eq!(stat(&line, "log_records"), 16.0, "{line}");
    assert!(
        stat(&line, "records_per_fsync") >= 4.0,
        "one fsync per group: {line}"
    );
    drop(group);

    let other = TempDir::new("kv-durable");
    let per_record = start_durable(&data_dir(&other), &["--fsync", "per-record"], None);
    concurrent_sets(per_record.addr(), 16);
    let line = stats(per_record.addr());
    assert_eq!(stat(&line, "log_records"), 16.0, "{line}");
    assert_eq!(stat(&line, "fsyncs"), 16.0, "{line}");
    assert!(line.contains(" records_per_fsync=1.00 "), "{line}");
}

#[test]
fn a_get_never_sees_a_write_before_its_fsync_and_the_loop_answers_meanwhile() {
    let temp = TempDir::new("kv-durable");
    let server = start_durable(&data_dir(&temp), &[], Some("slow-log-sync"));
    let addr = server.addr();
    let mut writer = connect(addr);
    let sent = Instant::now();
    writer.write_all(b"SET k v\n").unwrap();
    // The reader asks while the write waits for its (400 ms) fsync.
    let mut reader = BufReader::new(connect(addr));
    let mut early = Vec::new();
    let mut line = String::new();
    while sent.elapsed() < Duration::from_millis(200) {
        let asked = Instant::now();
        reader.get_mut().write_all(b"GET k\n").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        early.push((line.clone(), asked.elapsed()));
    }
    let mut ok = String::new();
    BufReader::new(&writer).read_line(&mut ok).unwrap();
    let acknowledged = sent.elapsed();
    assert_eq!(ok, "OK\n");
    assert!(
        acknowledged >= Duration::from_millis(300),
        "the SET waited for its stalled fsync ({acknowledged:?})"
    );
    assert!(!early.is_empty());
    for (answer, took) in &early {
        assert_eq!(answer, "NOT_FOUND\n", "a GET saw a write before its fsync");
        assert!(
            *took < Duration::from_millis(200),
            "the loop kept answering GETs while the fsync ran ({took:?})"
        );
    }
    // Once acknowledged, everyone reads it.
    reader.get_mut().write_all(b"GET k\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "VALUE v\n");
}

#[test]
fn a_torn_tail_is_dropped_and_reported_and_the_next_append_survives() {
    let temp = TempDir::new("kv-durable");
    let data = data_dir(&temp);
    let mut server = start_durable(&data, &[], None);
    assert_eq!(exchange(server.addr(), "SET a 1\nSET b 2\n"), "OK\nOK\n");
    assert!(terminate(&mut server).success());
    drop(server);
    // Half a record at the end, as a crash in the middle of a write leaves it.
    let last = segments(&data).pop().expect("a segment");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    file.write_all(&[0x5a; 13]).unwrap();
    drop(file);

    let mut server = start_durable(&data, &[], None);
    assert!(
        stderr_text(&data).contains("dropped 13 bytes"),
        "{}",
        stderr_text(&data)
    );
    assert_eq!(
        exchange(server.addr(), "GET a\nGET b\nSET c 3\n"),
        "VALUE 1\nVALUE 2\nOK\n"
    );
    assert!(terminate(&mut server).success());
    drop(server);
    let server = start_durable(&data, &[], None);
    assert_eq!(
        exchange(server.addr(), "GET a\nGET b\nGET c\n"),
        "VALUE 1\nVALUE 2\nVALUE 3\n"
    );
}

#[test]
fn a_size_triggered_checkpoint_replaces_old_segments_and_a_restart_uses_it() {
    let temp = TempDir::new("kv-durable");
    let data = data_dir(&temp);
    let args = ["--checkpoint-bytes", "2000", "--checkpoint-every", "0"];
    let mut server = start_durable(&data, &args, None);
    let input: String = (0..200).map(|i| format!("SET key{i} value{i}\n")).collect();
    assert_eq!(exchange(server.addr(), &input), "OK\n".repeat(200));
    // The sweep tick (every 100 ms) sees the size and hands a checkpoint to the pool.
    let deadline = Instant::now() + IO_TIMEOUT;
    let line = loop {
        let line = stats(server.addr());
        if stat(&line, "checkpoints") >= 1.0 {
            break line;
        }
        assert!(Instant::now() < deadline, "no checkpoint: {line}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(stat(&line, "last_checkpoint_ms") > 0.0, "{line}");
    assert!(data.join("checkpoint").exists());
    assert_eq!(segments(&data).len(), 1, "the covered segments are gone");
    assert_eq!(exchange(server.addr(), "DEL key0\n"), "DELETED\n");
    server.child_mut().kill().unwrap();
    wait_exit(&mut server);
    drop(server);

    let server = start_durable(&data, &args, None);
    let text = stderr_text(&data);
    assert!(text.contains("checkpoint"), "{text}");
    assert_eq!(
        exchange(server.addr(), "GET key0\nGET key1\nGET key199\n"),
        "NOT_FOUND\nVALUE value1\nVALUE value199\n"
    );
    assert_eq!(stat(&stats(server.addr()), "keys"), 199.0);
}

#[test]
fn a_failed_log_write_is_fatal_one_line_and_never_acknowledged() {
    let temp = TempDir::new("kv-durable");
    let data = data_dir(&temp);
    std::fs::create_dir_all(&data).unwrap();
    // A file-size limit of 4 KiB (8 blocks of 512 bytes): the log's write past it fails with
    // EFBIG (the server blocks SIGXFSZ so the write fails instead of killing it).
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -f 8 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_kv_server"))
        .args(["0", "--workers", "2", "--data-dir"])
        .arg(&data)
        .stderr(std::fs::File::create(temp.path().join("limited.stderr")).unwrap());
    let mut server = ServerProcess::start(&mut command, IO_TIMEOUT);
    let value = "x".repeat(200);
    let input: String = (0..40).map(|i| format!("SET k{i} {value}\n")).collect();
    // The server dies mid-answer: read what came until the connection ends, however it ends.
    let mut stream = connect(server.addr());
    stream.write_all(input.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    // Bytes read before an error (a reset) stay in `bytes`.
    let _ = std::io::Read::read_to_end(&mut stream, &mut bytes);
    let answers = String::from_utf8(bytes).unwrap();
    let acknowledged = answers.lines().take_while(|line| *line == "OK").count();
    assert!(
        answers.lines().all(|line| line == "OK"),
        "never anything but OK before the end: {answers:?}"
    );
    assert!(acknowledged < 40, "the limit stopped the log: {answers:?}");
    let status = wait_exit(&mut server);
    assert_eq!(status.code(), Some(1), "{status}");
    let stderr = std::fs::read_to_string(temp.path().join("limited.stderr")).unwrap();
    let fatal: Vec<&str> = stderr.lines().filter(|l| l.contains("fatal")).collect();
    assert_eq!(fatal.len(), 1, "{stderr}");
    assert!(fatal[0].contains("log write failed"), "{stderr}");
    drop(server);

    // Without the limit, every acknowledged write is there.
    let server = start_durable(&data, &[], None);
    let gets: String = (0..acknowledged).map(|i| format!("GET k{i}\n")).collect();
    assert_eq!(
        exchange(server.addr(), &gets),
        format!("VALUE {value}\n").repeat(acknowledged)
    );
}

#[test]
fn a_second_server_on_the_same_folder_is_refused_while_the_first_lives() {
    let temp = TempDir::new("kv-durable");
    let data = data_dir(&temp);
    let first = start_durable(&data, &[], None);
    let second = common::durable_command(&data, &[], None)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("runs");
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(second.stdout.is_empty(), "it never listened");
    // The first is unharmed, and once it is gone the folder opens again.
    assert_eq!(exchange(first.addr(), "SET a 1\n"), "OK\n");
    drop(first);
    let again = start_durable(&data, &[], None);
    assert_eq!(exchange(again.addr(), "GET a\n"), "VALUE 1\n");
}
