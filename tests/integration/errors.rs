//! Every binary reports an operational error as one clean line and a failure status, with no
//! backtrace even when `RUST_BACKTRACE` asks for one: a busy port for the servers, a refused
//! connection for the load generator.

use std::net::TcpListener;
use std::process::{Command, Stdio};

use crate::util::binary_path;

/// Runs a binary to its end (each of these fails at once) and returns its stderr lines.
fn stderr_lines(name: &str, args: &[String]) -> (Option<i32>, Vec<String>) {
    let output = Command::new(binary_path(name))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run the binary");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.code(),
        text.lines().map(str::to_owned).collect(),
    )
}

#[test]
fn a_server_on_a_busy_port_says_so_in_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
    let port = taken.local_addr().expect("its address").port().to_string();
    for name in ["epoll_server", "handoff_server", "tokio_server"] {
        let (code, lines) = stderr_lines(name, std::slice::from_ref(&port));
        assert_eq!(code, Some(1), "{name}: {lines:?}");
        assert_eq!(lines.len(), 1, "{name}: one line, no backtrace: {lines:?}");
        assert!(
            lines[0].starts_with(&format!("{name}: ")) && lines[0].contains("in use"),
            "{name}: {lines:?}"
        );
    }
}

#[test]
fn loadgen_without_a_server_says_so_in_one_line() {
    // A port that was free a moment ago: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let args = [
        "--addr".to_owned(),
        addr.to_string(),
        "--requests".to_owned(),
        "1".to_owned(),
        "--quiet".to_owned(),
    ];
    let (code, lines) = stderr_lines("loadgen", &args);
    assert_ne!(code, Some(0), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line, no backtrace: {lines:?}");
    assert!(lines[0].starts_with("loadgen: "), "{lines:?}");
}
