//! The runner's own TCP client, so lessons need no `nc` on the machine.
//!
//! A `console client` step runs `clients` copies of its script concurrently, `rounds` times in a
//! row. Each copy sends its lines from one thread while it reads the answers on another, so a
//! long pipeline cannot deadlock against a server that stops reading while its answers are unread.

use crate::lesson::ClientStep;
use crate::lesson::pattern::{ExpectLine, lines_match, split_lines};
use crate::server::StatsWorkers;
use crate::sys;
use handoff_protocol::{MAX_LINE_LEN, Stats, expected_response};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// `--verbose`: relay every client's requests and responses, prefixed by step, client and round.
pub(crate) static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Counts clients that have sent all their lines, so a `signal` step can wait for them.
#[derive(Debug, Default)]
pub(crate) struct SentCounter {
    count: Mutex<usize>,
    changed: Condvar,
}

impl SentCounter {
    fn add_one(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.changed.notify_all();
    }

    /// Waits until `target` clients have sent, or `deadline`; returns whether they had.
    pub(crate) fn wait_for(&self, target: usize, deadline: Instant) -> bool {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        // A while loop over the predicate: wakeups may be spurious, and each wait is bounded.
        while *count < target {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            count = self
                .changed
                .wait_timeout(count, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Renders a `> ` line: placeholders (`{client}`, `{round}`, `{port}`, `{C*N}`) and escapes
/// (`\r`, `\n`, `\t`, `\\`, `\xNN`).
pub(crate) fn render(template: &str, client: usize, round: usize, port: u16) -> Vec<u8> {
    let bytes = template.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &template[i..];
        if rest.starts_with('{') {
            if let Some(end) = rest.find('}') {
                let inner = &rest[1..end];
                let expansion = match inner {
                    "client" => Some(client.to_string().into_bytes()),
                    "round" => Some(round.to_string().into_bytes()),
                    "port" => Some(port.to_string().into_bytes()),
                    _ => repeat(inner),
                };
                if let Some(expansion) = expansion {
                    out.extend_from_slice(&expansion);
                    i += end + 1;
                    continue;
                }
            }
        }
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let escaped = match bytes[i + 1] {
                b'r' => Some((b'\r', 2)),
                b'n' => Some((b'\n', 2)),
                b't' => Some((b'\t', 2)),
                b'\\' => Some((b'\\', 2)),
                b'x' => template
                    .get(i + 2..i + 4)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .map(|byte| (byte, 4)),
                _ => None,
            };
            if let Some((byte, len)) = escaped {
                out.push(byte);
                i += len;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// `{C*N}`: the character C repeated N times.
fn repeat(inner: &str) -> Option<Vec<u8>> {
    let (unit, count) = inner.split_once('*')?;
    let mut chars = unit.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let count: usize = count.parse().ok()?;
    (count <= 64 * 1024 * 1024).then(|| c.to_string().repeat(count).into_bytes())
}

/// Shows a line for a report: lossy UTF-8, escaped control bytes, long lines shortened.
pub(crate) fn show(line: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(line).escape_debug().collect();
    if text.chars().count() > 100 {
        let head: String = text.chars().take(60).collect();
        format!("{head}… ({} bytes)", line.len())
    } else {
        text
    }
}

/// One client's script, rendered.
struct Script {
    /// The request lines as sent, without their `\n`.
    requests: Vec<Vec<u8>>,
    /// All bytes to send.
    wire: Vec<u8>,
}

fn script(step: &ClientStep, client: usize, round: usize, port: u16) -> Script {
    let requests: Vec<Vec<u8>> = step
        .sends
        .iter()
        .map(|line| render(line, client, round, port))
        .collect();
    let mut wire = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        wire.extend_from_slice(request);
        if !(step.no_final_newline && index + 1 == requests.len()) {
            wire.push(b'\n');
        }
    }
    Script { requests, wire }
}

/// Runs one client of a step; `Ok` with the time the exchange took, or why it failed.
///
/// The `workers=` value of every `stats` answer it gets goes to `stats_workers`, whether or not
/// the step passes: it is what the server said about itself, for a later thread budget.
pub(crate) fn run_client(
    step: &ClientStep,
    addr: SocketAddr,
    client: usize,
    round: usize,
    deadline: Instant,
    sent: &SentCounter,
    stats_workers: &StatsWorkers,
) -> Result<Duration, String> {
    let who = if step.clients * step.rounds > 1 {
        format!("client {client} round {round}: ")
    } else {
        String::new()
    };
    let script = script(step, client, round, addr.port());
    if let Some(delay) = step.delay {
        std::thread::sleep(delay);
    }
    let started = Instant::now();
    let outcome = exchange(step, addr, &script, deadline, sent);
    let elapsed = started.elapsed();
    let result = outcome.and_then(|responses| {
        record_stats_workers(&script.requests, &responses, stats_workers);
        if VERBOSE.load(Ordering::Relaxed) {
            let prefix = format!("[{} c{client} r{round}]", step.name);
            let mut text = String::new();
            for request in &script.requests {
                text.push_str(&format!("  {prefix} > {}\n", show(request)));
            }
            for line in split_lines(&responses) {
                text.push_str(&format!("  {prefix} < {}\n", show(line)));
            }
            eprint!("{text}");
        }
        if step.reset || step.tolerant {
            return Ok(());
        }
        let expects: Vec<ExpectLine> = step
            .expects
            .iter()
            .map(|line| match line {
                ExpectLine::Line(pattern) if pattern.source().contains('{') => {
                    let source = pattern
                        .source()
                        .replace("{client}", &client.to_string())
                        .replace("{round}", &round.to_string())
                        .replace("{port}", &addr.port().to_string());
                    ExpectLine::new(&source)
                }
                other => other.clone(),
            })
            .collect();
        check_responses(step, &expects, &script.requests, &responses)
    });
    match result {
        Err(message) if !step.tolerant => Err(format!("{who}{message}")),
        _ => match step.within {
            Some(bound) if elapsed > bound && !step.tolerant => Err(format!(
                "{who}the exchange took {} ms, more than the {} ms allowed",
                elapsed.as_millis(),
                bound.as_millis()
            )),
            _ => Ok(elapsed),
        },
    }
}

/// Connects, sends, reads; returns the response bytes.
fn exchange(
    step: &ClientStep,
    addr: SocketAddr,
    script: &Script,
    deadline: Instant,
    sent: &SentCounter,
) -> Result<Vec<u8>, String> {
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let stream = match TcpStream::connect_timeout(&addr, remaining()) {
        Ok(stream) => stream,
        Err(error) => {
            sent.add_one();
            return Err(format!("could not connect to {addr}: {error}"));
        }
    };
    if step.reset {
        let result = (&stream)
            .write_all(&script.wire)
            .map_err(|e| format!("send failed: {e}"));
        sent.add_one();
        result?;
        sys::set_linger_zero(&stream).map_err(|e| format!("could not set SO_LINGER: {e}"))?;
        drop(stream);
        return Ok(Vec::new());
    }
    if step.read_after.is_some() {
        // A slow reader with a small window: what the server cannot send waits in the server,
        // not in the kernel's buffers.
        sys::set_receive_buffer(&stream, 64 * 1024)
            .map_err(|e| format!("could not set SO_RCVBUF: {e}"))?;
    }
    let expected_lines = expected_line_count(&script.requests);
    let read_to_eof = step.eof;
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let result = (&stream).write_all(&script.wire);
            let result = result.and_then(|()| {
                if step.half_close {
                    stream.shutdown(Shutdown::Write)
                } else {
                    Ok(())
                }
            });
            sent.add_one();
            result
        });
        if let Some(pause) = step.read_after {
            // A slow reader: the answers pile up in the server meanwhile.
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        }
        let mut responses = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut closed = false;
        let mut read_error = None;
        // Bounded by the deadline: every read has a timeout no later than it.
        // Counted as the bytes come, not over the whole buffer each time (answers can be
        // megabytes).
        let mut newlines = 0;
        loop {
            if !read_to_eof && newlines >= expected_lines {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            if stream.set_read_timeout(Some(remaining())).is_err() {
                break;
            }
            match (&stream).read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    newlines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                    responses.extend_from_slice(&buf[..n]);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    closed = true;
                    read_error = Some(e);
                    break;
                }
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        if let Some(hold) = step.hold {
            // An idle client keeps its descriptor on the server busy (the EMFILE check).
            std::thread::sleep(hold.min(deadline.saturating_duration_since(Instant::now())));
        }
        // Unblock the writer if the server stopped reading, then collect it.
        let _ = stream.shutdown(Shutdown::Both);
        let write_result = writer
            .join()
            .unwrap_or_else(|_| Err(ErrorKind::Other.into()));
        if read_to_eof && !closed {
            let got = split_lines(&responses).len();
            return Err(match read_error {
                Some(e) => format!("reading failed after {got} response line(s): {e}"),
                None => format!(
                    "the server did not close the connection in time (after {got} response line(s){})",
                    if step.half_close {
                        ", though the client had half-closed"
                    } else {
                        ""
                    }
                ),
            });
        }
        if let (Err(e), false) = (&write_result, read_to_eof) {
            if split_lines(&responses).len() < expected_lines {
                return Err(format!("sending failed: {e}"));
            }
        }
        Ok(responses)
    })
}

/// Records the `workers=` value of each answer to a `stats` request. Answers come in request
/// order, one line each, so the n-th line answers the n-th request.
fn record_stats_workers(requests: &[Vec<u8>], responses: &[u8], stats_workers: &StatsWorkers) {
    for (request, answer) in requests.iter().zip(split_lines(responses)) {
        if request.strip_suffix(b"\r").unwrap_or(request) == b"stats" {
            if let Some(stats) = Stats::parse(answer) {
                stats_workers.record(stats.workers);
            }
        }
    }
}

/// How many response lines a script is owed: one per request, up to and including the first
/// line over the protocol's limit (after which the server closes).
fn expected_line_count(requests: &[Vec<u8>]) -> usize {
    requests
        .iter()
        .position(|r| r.len() > MAX_LINE_LEN)
        .map_or(requests.len(), |at| at + 1)
}

fn check_responses(
    step: &ClientStep,
    expects: &[ExpectLine],
    requests: &[Vec<u8>],
    responses: &[u8],
) -> Result<(), String> {
    let lines = split_lines(responses);
    if step.expect_protocol {
        let owed = expected_line_count(requests);
        for (index, request) in requests.iter().take(owed).enumerate() {
            let got = lines.get(index);
            let expected = if request.len() > MAX_LINE_LEN {
                Some(b"ERROR: line too long\n".to_vec())
            } else {
                expected_response(request.strip_suffix(b"\r").unwrap_or(request))
            };
            let ok = match (&expected, got) {
                (Some(bytes), Some(got)) => bytes.strip_suffix(b"\n") == Some(*got),
                (None, Some(got)) => Stats::parse(got).is_some(),
                (_, None) => false,
            };
            if !ok {
                let want = match &expected {
                    Some(bytes) => show(bytes.strip_suffix(b"\n").unwrap_or(bytes)),
                    None => "a stats line (key=value ...)".to_owned(),
                };
                let got = got.map_or_else(
                    || "nothing (no more response lines)".to_owned(),
                    |g| format!("`{}`", show(g)),
                );
                return Err(format!(
                    "request {} `{}`: expected `{want}`, got {got}",
                    index + 1,
                    show(request)
                ));
            }
        }
        if lines.len() > owed {
            return Err(format!(
                "{} request(s) got {} response lines; extra line `{}` (a result meant for another \
                 client, or a duplicate?)",
                owed,
                lines.len(),
                show(lines[owed])
            ));
        }
    }
    if expects.is_empty() {
        return Ok(());
    }
    if lines_match(expects, &lines) {
        return Ok(());
    }
    let has_any_lines = step
        .expects
        .iter()
        .any(|e| matches!(e, ExpectLine::AnyLines));
    if !has_any_lines {
        for index in 0..expects.len().max(lines.len()) {
            let want = expects.get(index);
            let got = lines.get(index);
            let ok = match (want, got) {
                (Some(ExpectLine::Line(p)), Some(g)) => p.matches(g),
                _ => false,
            };
            if !ok {
                let request = requests
                    .get(index)
                    .map_or_else(|| "(no request)".to_owned(), |r| format!("`{}`", show(r)));
                let want = want.map_or_else(
                    || "no more lines".to_owned(),
                    |w| format!("`{}`", w.source()),
                );
                let got = got.map_or_else(
                    || "nothing (no more response lines)".to_owned(),
                    |g| format!("`{}`", show(g)),
                );
                return Err(format!(
                    "request {} {request}: expected {want}, got {got}",
                    index + 1
                ));
            }
        }
    }
    let want: Vec<&str> = expects.iter().map(ExpectLine::source).collect();
    let got: Vec<String> = lines.iter().map(|l| show(l)).collect();
    Err(format!(
        "expected the lines\n      {}\n    got\n      {}",
        want.join("\n      "),
        got.join("\n      ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_expands_placeholders_and_escapes() {
        assert_eq!(render("compute {client}-{round}", 3, 1, 80), b"compute 3-1");
        assert_eq!(render("a\\r\\x41\\\\", 0, 0, 80), b"a\rA\\");
        assert_eq!(render("{a*3}b", 0, 0, 80), b"aaab");
        assert_eq!(render("{unknown}", 0, 0, 80), b"{unknown}");
    }

    #[test]
    fn only_answers_to_stats_requests_record_workers() {
        let seen = StatsWorkers::default();
        let requests = [b"compute workers=9".to_vec(), b"stats\r".to_vec()];
        record_stats_workers(
            &requests,
            b"result: workers=9\nconnections=1 queue_depth=0 workers=2 busy_workers=0 completed=1 \
              errors=0 panics=0 rejected=0\n",
            &seen,
        );
        assert_eq!(seen.values().into_iter().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn long_lines_are_owed_one_answer_then_close() {
        let long = vec![b'a'; MAX_LINE_LEN + 1];
        assert_eq!(
            expected_line_count(&[b"ping".to_vec(), long, b"ping".to_vec()]),
            2
        );
        assert_eq!(expected_line_count(&[vec![b'a'; MAX_LINE_LEN]]), 1);
    }
}
