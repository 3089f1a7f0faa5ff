//! A blocking client of a line-protocol server, and the helpers its assertions need.
//!
//! Every blocking step is bounded: a client's reads and writes time out after
//! [`READ_TIMEOUT`], and [`wait_until`] gives up (and fails the test) after its deadline.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a client waits for a response before the test fails. Generous on purpose: it is a
/// hang guard for a loaded two-core CI machine, not a latency claim.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A blocking client connection with a read timeout.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects to `addr`; panics if that fails.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|error| panic!("connect to {addr}: {error}"))
    }

    /// Connects to `addr`.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// The underlying stream (for timeouts, `peek`, or raw writes).
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// Sends `bytes`, all of them.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to the server");
    }

    /// Reads one response line, `\n` included; `Ok(None)` at EOF.
    pub fn try_read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Ok(None);
        }
        Ok(Some(line))
    }

    /// Reads one response line, `\n` included; fails the test on EOF, error or timeout.
    pub fn read_line(&mut self) -> Vec<u8> {
        match self.try_read_line() {
            Ok(Some(line)) => {
                assert!(
                    line.ends_with(b"\n"),
                    "response cut short by EOF: {}",
                    show(&line)
                );
                line
            }
            Ok(None) => panic!("the server closed the connection instead of responding"),
            Err(error) => panic!("no response within the read timeout: {error}"),
        }
    }

    /// Sends `line` plus `\n` and returns the response without its `\n`.
    pub fn request(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        let response = self.read_line();
        String::from_utf8(response[..response.len() - 1].to_vec()).expect("a UTF-8 response")
    }

    /// Half-closes: shuts down the write side, as `nc -q1` does after its input.
    pub fn shutdown_write(&self) {
        self.writer
            .shutdown(Shutdown::Write)
            .expect("shutdown(SHUT_WR)");
    }

    /// Reads everything until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        self.reader
            .read_to_end(&mut all)
            .expect("read until the server closes");
        all
    }

    /// Whether the server has closed the connection: EOF or a reset, with no more bytes.
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    /// Closes the connection with a TCP reset instead of a FIN.
    ///
    /// Linux resets a connection that is closed while received bytes are still unread, so this
    /// waits (bounded) until at least one byte from the server has arrived unread, then drops the
    /// socket. The caller must have made the server send something.
    pub fn reset(self) {
        let mut byte = [0u8; 1];
        let peeked = self
            .writer
            .peek(&mut byte)
            .expect("peek at the server's bytes");
        assert!(
            peeked > 0 || !self.reader.buffer().is_empty(),
            "nothing unread to force a reset"
        );
        drop(self);
    }
}

/// A plain stream to `addr` with the read and write timeouts of [`READ_TIMEOUT`] set, for a test
/// that drives the socket itself.
pub fn timed_stream(addr: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect(addr).unwrap_or_else(|error| panic!("connect to {addr}: {error}"));
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// What `printf "$input" | nc -q1` prints: sends everything on a new connection, half-closes,
/// and reads until the server closes.
///
/// As `nc` does, it reads while it sends: a server stops reading a client whose answers it
/// cannot send (backpressure), so a client that sent a large input before reading any answer
/// would wait on the server while the server waits on it, until the send timed out.
pub fn exchange(addr: SocketAddr, input: &[u8]) -> String {
    let stream = timed_stream(addr);
    let mut sender = stream
        .try_clone()
        .expect("a second handle on the connection");
    let mut output = Vec::new();
    std::thread::scope(|scope| {
        let sending = scope.spawn(move || {
            sender.write_all(input).expect("send to the server");
            sender.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
        });
        (&stream)
            .read_to_end(&mut output)
            .expect("read until the server closes");
        if let Err(panic) = sending.join() {
            std::panic::resume_unwind(panic);
        }
    });
    String::from_utf8(output).expect("a UTF-8 response")
}

/// Polls `condition` until it holds, failing the test with `what` after `timeout`.
///
/// A hang guard for states that only the server can reach (a task picked up, an fd closed), not
/// a timing assumption: it returns as soon as the condition holds.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Shows bytes readably in assertion messages.
pub fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Asserts two response streams are equal, showing the first differing line when they are not.
pub fn assert_responses(actual: &[u8], expected: &[u8]) {
    if actual == expected {
        return;
    }
    let mut actual_lines = actual.split_inclusive(|&b| b == b'\n');
    let mut expected_lines = expected.split_inclusive(|&b| b == b'\n');
    for index in 0.. {
        match (actual_lines.next(), expected_lines.next()) {
            (Some(a), Some(e)) if a == e => continue,
            (a, e) => panic!(
                "responses differ at line {index}: got {}, expected {} ({} vs {} bytes in all)",
                a.map_or("<end>".to_owned(), show),
                e.map_or("<end>".to_owned(), show),
                actual.len(),
                expected.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// An echo server that writes each chunk back before it reads the next, so it stops reading
    /// while its answers wait to be read, as a server with backpressure does.
    #[test]
    fn exchange_reads_while_it_sends_so_a_large_input_cannot_deadlock() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a port");
        let addr = listener.local_addr().expect("its address");
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("one client");
            let mut chunk = [0_u8; 4096];
            loop {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => stream.write_all(&chunk[..n]).expect("echo"),
                }
            }
        });
        // Far more than the two sockets' buffers hold.
        let input: Vec<u8> = (0..16_u32 << 20).map(|n| b'a' + (n % 26) as u8).collect();
        let started = Instant::now();
        let output = exchange(addr, &input);
        assert!(output.as_bytes() == input, "every byte echoed, in order");
        assert!(
            started.elapsed() < READ_TIMEOUT,
            "no send waited for its timeout"
        );
        echo.join().expect("the echo server ends");
    }
}
