//! A test fixture for the harness's own tests: a server that listens on 127.0.0.1 at the port
//! given as its first argument (0 for any), prints `listening on <addr>` as the benchmarked
//! servers do, and accepts and closes connections until it is stopped. `cargo test` builds it,
//! so the tests that start a server need no other package's binary.

use std::io::Write as _;
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|port| port.parse().ok())
        .unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    // Runs until the harness stops its process group; each connection is closed at once.
    for stream in listener.incoming() {
        drop(stream);
    }
    Ok(())
}
