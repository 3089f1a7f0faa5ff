//! Integration tests: loadgen against the Tokio comparison server, and against servers that
//! answer wrongly or hang up, which it must catch and report with a failing exit status.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use test_support::ServerProcess;

/// Generous bound on how long one test server waits on a socket.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The `tokio_server` binary.
///
/// `cargo test --workspace` builds it along with this test (it is a binary of another package
/// of the workspace, in the same target directory). When only this package's tests run, it is
/// built here, once, into a target directory of its own: the outer cargo holds the lock on the
/// shared one while the tests run.
fn tokio_server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let loadgen = PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
            let profile_dir = loadgen
                .parent()
                .expect("the binary lives in a profile directory");
            let binary = profile_dir.join("tokio_server");
            if binary.exists() {
                return binary;
            }
            let target_dir = profile_dir
                .parent()
                .expect("a profile directory has a parent")
                .join("loadgen-tests");
            let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "--quiet", "-p", "tokio_server"])
                .env("CARGO_TARGET_DIR", &target_dir)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building tokio_server failed");
            target_dir.join("debug").join("tokio_server")
        })
        .clone()
}

/// A running `tokio_server`, killed and reaped when dropped (by its [`ServerProcess`]).
struct TokioServer {
    _process: ServerProcess,
    addr: String,
}

impl TokioServer {
    fn start() -> TokioServer {
        let process = ServerProcess::start(
            Command::new(tokio_server_binary())
                .args(["0", "--workers", "2"])
                .stderr(Stdio::null()),
            IO_TIMEOUT,
        );
        let addr = process.addr().to_string();
        TokioServer {
            _process: process,
            addr,
        }
    }
}

/// A one-connection-at-a-time test server on its own thread that answers each request line
/// with `answer(line)`; stopped and joined when dropped.
struct FakeServer {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// `answer` returns the bytes to send for one request line, or `None` to hang up.
    fn start(answer: fn(&[u8]) -> Option<Vec<u8>>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("has an address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut clients = Vec::new();
            for stream in listener.incoming() {
                // `Drop` sets the flag and then connects once to wake this blocking accept.
                if stop_flag.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { break };
                stream
                    .set_read_timeout(Some(IO_TIMEOUT))
                    .expect("read timeout");
                clients.push(std::thread::spawn(move || serve(stream, answer)));
            }
            for client in clients {
                let _ = client.join();
            }
        });
        FakeServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(stream: TcpStream, answer: fn(&[u8]) -> Option<Vec<u8>>) {
    let mut writer = stream.try_clone().expect("clones the socket");
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request = line.strip_suffix(b"\n").unwrap_or(&line);
        match answer(request) {
            Some(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            None => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args(["--timeout", "20"])
        .stdin(Stdio::null())
        .output()
        .expect("loadgen runs")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "no JSON summary ({error}); stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn every_mix_against_the_tokio_server_is_clean_and_counted_exactly() {
    let server = TokioServer::start();
    for (mix, connections, depth) in [
        ("compute64", "8", "4"),
        ("ping", "3", "16"),
        ("rehash1000", "4", "2"),
        ("mixed", "5", "2"),
    ] {
        let output = loadgen(&[
            "--addr",
            &server.addr,
            "--mix",
            mix,
            "-c",
            connections,
            "-d",
            depth,
            "--requests",
            "997",
            "--json",
            "--threads",
            "2",
        ]);
        let summary = json(&output);
        assert!(
            output.status.success(),
            "{mix}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(summary["completed"], 997, "{mix}: {summary}");
        assert_eq!(summary["mismatches"], 0, "{mix}");
        assert_eq!(summary["connection_errors"], 0, "{mix}");
        assert!(summary["throughput_rps"].as_f64().unwrap() > 0.0);
        assert!(summary["latency"]["p99_us"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn a_timed_run_prints_a_human_summary() {
    let server = TokioServer::start();
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "--mix",
        "ping",
        "-c",
        "2",
        "--duration",
        "0.3",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("req/s") && text.contains("p99.9"), "{text}");
    assert!(text.contains("mismatches 0"), "{text}");
}

#[test]
fn wrong_answers_fail_the_run_and_name_the_request() {
    let server = FakeServer::start(|_| Some(b"result: 0000000000000000\n".to_vec()));
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "-c",
        "2",
        "-d",
        "3",
        "--requests",
        "50",
        "--json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a wrong server must fail the run"
    );
    let summary = json(&output);
    assert_eq!(
        summary["mismatches"], 2,
        "each connection stops at its first mismatch"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FAILED"), "{stderr}");
    assert!(
        stderr.contains("request \"compute "),
        "names the request: {stderr}"
    );
    assert!(
        stderr.contains("but got \"result: 0000000000000000\\n\""),
        "{stderr}"
    );
}

#[test]
fn a_response_off_by_one_byte_is_caught() {
    // Right for every request but the last byte of the hash is changed.
    let server = FakeServer::start(|line| {
        let mut bytes = handoff_protocol::expected_response(line)?;
        let last_digit = bytes.len() - 2;
        bytes[last_digit] = if bytes[last_digit] == b'0' {
            b'1'
        } else {
            b'0'
        };
        Some(bytes)
    });
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "-c",
        "1",
        "--requests",
        "5",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["mismatches"], 1);
}

#[test]
fn a_server_that_hangs_up_is_a_connection_error() {
    let server = FakeServer::start(|_| None);
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "-c",
        "3",
        "--requests",
        "30",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let summary = json(&output);
    assert_eq!(summary["connection_errors"], 3, "{summary}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("closed a connection"));
}

#[test]
fn a_correct_fake_server_passes() {
    // The same fake server with the right answers: the failures above come from the answers.
    let server = FakeServer::start(handoff_protocol::expected_response);
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "-c",
        "2",
        "-d",
        "4",
        "--requests",
        "64",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json(&output)["completed"], 64);
}

#[test]
fn nothing_listening_is_a_clear_start_error() {
    // Bind and drop a listener to get a port on which nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = loadgen(&["--addr", &format!("127.0.0.1:{port}"), "--requests", "1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connect"), "{stderr}");
}

/// The store behind [`kv_answer`], shared by every connection of the fake KV server.
static KV_ENGINE: OnceLock<kv_store::KvEngine> = OnceLock::new();

/// A key-value server's answer, from the course's own store.
fn kv_answer(line: &[u8]) -> Option<Vec<u8>> {
    let engine = KV_ENGINE.get_or_init(|| kv_store::KvEngine::new(Default::default()));
    Some(
        engine
            .execute_line(line, std::time::Instant::now())
            .to_bytes(),
    )
}

#[test]
fn the_kv_mix_preloads_its_keys_and_checks_every_answer_exactly() {
    let server = FakeServer::start(kv_answer);
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "--mix",
        "kv",
        "-c",
        "8",
        "-d",
        "16",
        "--requests",
        "4000",
        "--json",
        "--threads",
        "2",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json(&output);
    assert_eq!(summary["completed"], 4000, "{summary}");
    assert_eq!(summary["mismatches"], 0);
    // The 1024 preloaded keys plus some of the 8 connections' 16 own keys each.
    let stats = String::from_utf8(kv_answer(b"STATS").unwrap()).unwrap();
    let keys: u64 = stats
        .split(' ')
        .find_map(|pair| pair.strip_prefix("keys="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no keys= in {stats}"));
    assert!((1025..=1024 + 8 * 16).contains(&keys), "{stats}");
}

#[test]
fn the_kv_mix_with_redis_replies_rejects_text_answers() {
    let server = FakeServer::start(kv_answer);
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "--mix",
        "kv",
        "--replies",
        "redis",
        "-c",
        "1",
        "--requests",
        "10",
    ]);
    assert_eq!(output.status.code(), Some(2), "the preload must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("preload got a wrong answer"), "{stderr}");
}

/// A `STATS` field of the fake KV server's store.
fn kv_stat(name: &str) -> u64 {
    let stats = String::from_utf8(kv_answer(b"STATS").unwrap()).unwrap();
    stats
        .split(' ')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {stats}"))
}

#[test]
fn the_kv_mix_reports_get_and_set_latency_apart() {
    let server = FakeServer::start(kv_answer);
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "--mix",
        "kv",
        "-c",
        "4",
        "-d",
        "2",
        "--requests",
        "3000",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json(&output);
    let (gets, sets) = (
        summary["by_verb"]["get"]["completed"].as_u64(),
        summary["by_verb"]["set"]["completed"].as_u64(),
    );
    let (Some(gets), Some(sets)) = (gets, sets) else {
        panic!("no GET and SET counts in {summary}");
    };
    assert_eq!(gets + sets, 3000, "{summary}");
    assert!(
        (150..600).contains(&sets),
        "about one SET in ten: {summary}"
    );
    for verb in ["get", "set"] {
        let latency = &summary["by_verb"][verb]["latency"];
        let (p50, p99) = (latency["p50_us"].as_f64(), latency["p99_us"].as_f64());
        assert!(
            p50.is_some_and(|p50| p50 > 0.0) && p99 >= p50,
            "{verb}: {summary}"
        );
    }
}

#[test]
fn the_kv_set_mix_sends_only_sets_each_answer_checked() {
    let server = FakeServer::start(kv_answer);
    let sets_before = kv_stat("sets");
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "--mix",
        "kv-set",
        "-c",
        "3",
        "-d",
        "4",
        "--requests",
        "3100",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json(&output);
    assert_eq!(summary["mix"], "kv-set", "{summary}");
    assert_eq!(summary["completed"], 3100, "{summary}");
    assert_eq!(summary["by_verb"]["set"]["completed"], 3100, "{summary}");
    assert!(summary["by_verb"].get("get").is_none(), "{summary}");
    // Other tests share the store, so the count is a lower bound. 3100 SETs over 3 connections
    // go past each connection's 1024 keys, so the last of connection 2's keys is stored.
    assert!(kv_stat("sets") >= sets_before + 3100);
    let text = String::from_utf8(kv_answer(b"GET s:2:1023").unwrap()).unwrap();
    assert!(text.starts_with("VALUE "), "{text}");
    // The text summary names both verbs' figures when they were sent.
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "--mix",
        "kv-set",
        "-c",
        "1",
        "--requests",
        "10",
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("SET latency µs (10 responses)"), "{text}");
    assert!(!text.contains("GET latency"), "{text}");
}

#[test]
fn the_kv_set_mix_fails_on_a_wrong_answer_to_a_set() {
    // The course's replies where redis-server's are expected: the first `OK` is a mismatch.
    let server = FakeServer::start(kv_answer);
    let output = loadgen(&[
        "--addr",
        &server.addr,
        "--mix",
        "kv-set",
        "--replies",
        "redis",
        "-c",
        "2",
        "--requests",
        "20",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["mismatches"], 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("request \"SET s:"), "{stderr}");
}

/// A store of its own for [`no_preload_sends_only_the_measured_requests`], so its counters
/// are exact.
static KV_ENGINE_OWN: OnceLock<kv_store::KvEngine> = OnceLock::new();

fn kv_answer_own(line: &[u8]) -> Option<Vec<u8>> {
    let engine = KV_ENGINE_OWN.get_or_init(|| kv_store::KvEngine::new(Default::default()));
    Some(
        engine
            .execute_line(line, std::time::Instant::now())
            .to_bytes(),
    )
}

#[test]
fn no_preload_sends_only_the_measured_requests() {
    let server = FakeServer::start(kv_answer_own);
    let base = [
        "--addr",
        &server.addr,
        "--mix",
        "kv",
        "-c",
        "2",
        "--requests",
        "300",
        "--json",
    ];
    let sets_of = |output: &Output| {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        json(output)["by_verb"]["set"]["completed"]
            .as_u64()
            .unwrap_or(0)
    };
    // The first run stores the 1024 read-only keys, the second finds them there.
    let first = sets_of(&loadgen(&base));
    let mut args = base.to_vec();
    args.push("--no-preload");
    let second = sets_of(&loadgen(&args));
    let stats = String::from_utf8(kv_answer_own(b"STATS").unwrap()).unwrap();
    let sets: u64 = stats
        .split(' ')
        .find_map(|pair| pair.strip_prefix("sets="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sets= in {stats}"));
    assert_eq!(sets, 1024 + first + second, "one preload only: {stats}");
}
