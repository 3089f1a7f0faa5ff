//! What the integration tests add to the workspace's harness (`test_support`): which servers
//! speak the wire protocol and how each is started, a server's `stats`, and the exact response
//! bytes the protocol predicts.
//!
//! Everything else — starting a server on `127.0.0.1` port 0 and reading its `listening on`
//! line, signalling and stopping it within bounds, clients with read timeouts, `/proc` facts —
//! is `test_support`'s, re-exported here so each test module has one place to import from.

use handoff_protocol::Stats;

pub(crate) use test_support::{
    Client, ServerProcess as Server, assert_responses, binary_path, client::READ_TIMEOUT,
    fd_heavy_test, raise_fd_limit, show, wait_until,
};

/// The servers that speak the wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// The W05 handoff server: an event loop plus a thread pool.
    Handoff,
    /// The same server with `--loops 2`: two event loops on one port sharing the pool.
    HandoffTwoLoops,
    /// The W04 single-threaded epoll server, which answers every verb on its loop.
    Epoll,
}

impl ServerKind {
    /// The binary's file name.
    pub(crate) fn binary_name(self) -> &'static str {
        match self {
            ServerKind::Handoff | ServerKind::HandoffTwoLoops => "handoff_server",
            ServerKind::Epoll => "epoll_server",
        }
    }

    /// The arguments every conformance test starts this server with (after the port).
    fn default_args(self) -> &'static [&'static str] {
        match self {
            // Two workers: enough to run tasks out of order, few enough for a two-core machine.
            ServerKind::Handoff => &["--workers", "2"],
            ServerKind::HandoffTwoLoops => &["--workers", "2", "--loops", "2"],
            ServerKind::Epoll => &[],
        }
    }

    /// Starts describing this server on port 0 (arguments after the port are the caller's).
    pub(crate) fn builder(self) -> test_support::ServerBuilder {
        Server::builder(binary_path(self.binary_name())).args(["0"])
    }

    /// Starts the server with its default arguments.
    pub(crate) fn start(self) -> Server {
        self.builder().args(self.default_args()).start()
    }
}

/// A server's `stats`, asked on a new connection.
pub(crate) trait StatsOf {
    /// Asks for `stats` on a new connection and parses the answer.
    fn stats(&self) -> Stats;
}

impl StatsOf for Server {
    fn stats(&self) -> Stats {
        let mut client = self.client();
        let line = client.request("stats");
        Stats::parse(line.as_bytes()).unwrap_or_else(|| panic!("unparsable stats line {line:?}"))
    }
}

/// The exact response bytes for one request line (without its line ending).
pub(crate) fn expected(line: &[u8]) -> Vec<u8> {
    handoff_protocol::expected_response(line)
        .unwrap_or_else(|| panic!("no fixed response for {}", show(line)))
}
