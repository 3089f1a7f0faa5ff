//! Flood mode (`--flood`, the W06 quest): three waves of open-loop load against a server with
//! overload controls, and the seven objectives that say whether it survived.
//!
//! The waves, each `--wave-seconds` long (`--full`: 20 s each, the one-minute flood):
//!
//! 1. **ramp**: the request rate climbs linearly from 1× to 10× `--base-rps`;
//! 2. **sustain**: 10× the base rate, with one request in five marked `retry ` and one in
//!    twenty slow (`sleep <slow-ms>`, past the server's request timeout);
//! 3. **drain**: back to 1×, then nothing; every answer owed is read.
//!
//! The load is open-loop: requests leave at the wave's rate whatever the server answers (a
//! flood does not wait for its victims), spread round-robin over `--connections` pipelined
//! connections. An ordinary request is `sleep <work-ms>`, a unit of work of known cost, so
//! 1× means the same load on any machine. Every answer must be one of: the request's result,
//! `ERROR: overloaded, retry after <ms> ms`, `ERROR: timeout after <timeout> ms`, or (for a
//! retry) `ERROR: retry budget exhausted`; anything else fails the run. Meanwhile a control
//! connection asks for `stats` every 100 ms.
//!
//! The objectives, each printed as `objective N <name>: PASS|FAIL <figures>`:
//!
//! 1. `gate`: `inflight` never above `--expect-max-inflight` in any stats line, nor its peak;
//! 2. `shed`: every request got exactly one answer, and the shed answers the clients counted
//!    equal the server's `shed` (and likewise `timeouts` and `retry_rejects`);
//! 3. `timeouts`: at least one timeout among the requests of wave 2;
//! 4. `retry-budget`: at least one retry rejected;
//! 5. `latency`: wave 2's client-side p99 below the request timeout + 100 ms;
//! 6. `drain`: after the flood, `inflight` back to 0, no worker busy (the late work of timed-out
//!    requests finished) and (with `--spawn`) the server's open fds back to their idle count;
//! 7. `harness`: after the flood, one request of every verb answered byte for byte.
//!
//! With `--spawn CMD` loadgen starts the server itself (`CMD` must listen on port 0 and print
//! `listening on <addr>`), so it can count the server's fds; it stops it with SIGTERM at the end
//! and requires exit status 0.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use eventloop::{Events, Interest, Poller};
use handoff_protocol::expected_response;
use hdrhistogram::Histogram;
use test_support::ServerProcess;

/// How often the control connection asks for `stats`.
const STATS_EVERY: Duration = Duration::from_millis(100);
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// The slack objective 5 allows above the request timeout.
const LATENCY_SLACK: Duration = Duration::from_millis(100);
/// How long the drain may take to bring `inflight` and the fds back.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The wave length of `--full`.
pub(crate) const FULL_WAVE: Duration = Duration::from_secs(20);
/// One request in this many of wave 2 is marked `retry `.
const RETRY_ONE_IN: u64 = 5;
/// One request in this many of wave 2 is slow.
const SLOW_ONE_IN: u64 = 20;
/// The peak rate, as a multiple of the base rate.
const PEAK: f64 = 10.0;
const WAVE_NAMES: [&str; 3] = ["ramp", "sustain", "drain"];

/// What a flood is to do (from the command line).
#[derive(Debug, Clone)]
pub(crate) struct FloodPlan {
    /// The server, when not spawned.
    pub(crate) addr: SocketAddr,
    /// The server command to start, with port 0.
    pub(crate) spawn: Option<String>,
    /// Flood connections.
    pub(crate) connections: usize,
    /// How long each wave lasts.
    pub(crate) wave: Duration,
    /// Requests per second at 1×.
    pub(crate) base_rps: f64,
    /// The `sleep` of an ordinary request.
    pub(crate) work_ms: u64,
    /// The `sleep` of a slow request.
    pub(crate) slow_ms: u64,
    /// The server's `--max-inflight`, for objective 1.
    pub(crate) max_inflight: u64,
    /// The server's `--request-timeout-ms`, for objectives 2 and 5.
    pub(crate) timeout_ms: u64,
    /// The hang guard: an owed answer that does not come for this long fails the run.
    pub(crate) hang_guard: Duration,
    /// No progress line.
    pub(crate) quiet: bool,
}

/// What kind of request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Work,
    Slow,
}

/// One request waiting for its answer.
#[derive(Debug, Clone, Copy)]
struct Sent {
    kind: Kind,
    retry: bool,
    wave: usize,
    at: Instant,
}

/// What the clients counted in one wave (by the wave the request was sent in).
#[derive(Debug)]
struct WaveTally {
    sent: u64,
    retries: u64,
    results: u64,
    shed: u64,
    timeouts: u64,
    retry_rejects: u64,
    latency_us: Histogram<u64>,
}

impl WaveTally {
    fn new() -> anyhow::Result<Self> {
        Ok(WaveTally {
            sent: 0,
            retries: 0,
            results: 0,
            shed: 0,
            timeouts: 0,
            retry_rejects: 0,
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .context("creating a latency histogram")?,
        })
    }

    fn answered(&self) -> u64 {
        self.results + self.shed + self.timeouts + self.retry_rejects
    }

    fn p99_ms(&self) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.value_at_quantile(0.99) as f64 / 1000.0
    }
}

/// One flood connection.
#[derive(Debug)]
struct FloodConnection {
    stream: TcpStream,
    pending: VecDeque<Sent>,
    out: Vec<u8>,
    out_sent: usize,
    input: Vec<u8>,
    wants_write: bool,
}

/// The classified answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerKind {
    Result,
    Shed,
    Timeout,
    RetryRejected,
}

/// The request lines and the result each must get.
#[derive(Debug)]
struct Lines {
    work: Vec<u8>,
    work_result: Vec<u8>,
    slow: Vec<u8>,
    slow_result: Vec<u8>,
    timeout: Vec<u8>,
}

impl Lines {
    fn new(plan: &FloodPlan) -> Self {
        let work = format!("sleep {}", plan.work_ms).into_bytes();
        let slow = format!("sleep {}", plan.slow_ms).into_bytes();
        Lines {
            work_result: expected_response(&work).expect("sleep has a prediction"),
            slow_result: expected_response(&slow).expect("sleep has a prediction"),
            work,
            slow,
            timeout: format!("ERROR: timeout after {} ms\n", plan.timeout_ms).into_bytes(),
        }
    }

    /// Classifies `line` (with its `\n`) as the answer to `sent`, or says why it cannot be.
    fn classify(&self, sent: &Sent, line: &[u8]) -> Result<AnswerKind, String> {
        let result = match sent.kind {
            Kind::Work => &self.work_result,
            Kind::Slow => &self.slow_result,
        };
        if line == result.as_slice() {
            return Ok(AnswerKind::Result);
        }
        if line == self.timeout.as_slice() {
            return Ok(AnswerKind::Timeout);
        }
        if is_shed(line) {
            return Ok(AnswerKind::Shed);
        }
        if sent.retry && line == b"ERROR: retry budget exhausted\n" {
            return Ok(AnswerKind::RetryRejected);
        }
        Err(format!(
            "{}request {:?} got {:?}",
            if sent.retry { "retried " } else { "" },
            String::from_utf8_lossy(match sent.kind {
                Kind::Work => &self.work,
                Kind::Slow => &self.slow,
            }),
            String::from_utf8_lossy(line)
        ))
    }
}

/// Whether `line` is `ERROR: overloaded, retry after <ms> ms\n` with a sane `<ms>`.
fn is_shed(line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    line.strip_prefix("ERROR: overloaded, retry after ")
        .and_then(|rest| rest.strip_suffix(" ms\n"))
        .is_some_and(|ms| ms.parse::<u64>().is_ok_and(|ms| (1..=10_000).contains(&ms)))
}

/// The value of `key=` in a stats line.
fn stat(line: &str, key: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.trim_end().parse().ok())
}

/// Requests that should have left by `elapsed` since the start: the integral of the rate.
fn target_sent(plan: &FloodPlan, elapsed: Duration) -> u64 {
    let wave = plan.wave.as_secs_f64();
    let t = elapsed.as_secs_f64().min(3.0 * wave);
    let base = plan.base_rps;
    // Wave 1: rate base·(1 + 9t/W), integral base·(t + 9t²/2W).
    let ramp = |t: f64| base * (t + (PEAK - 1.0) * t * t / (2.0 * wave));
    let sent = if t <= wave {
        ramp(t)
    } else if t <= 2.0 * wave {
        ramp(wave) + PEAK * base * (t - wave)
    } else {
        ramp(wave) + PEAK * base * wave + base * (t - 2.0 * wave)
    };
    sent as u64
}

/// A server started by `--spawn` through the workspace's harness (`test_support`), stopped (and
/// reaped) however the run ends.
#[derive(Debug)]
struct Spawned {
    process: ServerProcess,
}

impl Spawned {
    /// How long the server may take to print its `listening on` line.
    const STARTUP: Duration = Duration::from_secs(20);

    fn start(command: &str) -> anyhow::Result<(Spawned, SocketAddr)> {
        let mut words = command.split_whitespace();
        let program = words.next().context("--spawn needs a command")?;
        let mut command = Command::new(program);
        command.args(words).stderr(Stdio::null());
        let process =
            ServerProcess::try_start(&mut command, Self::STARTUP).map_err(anyhow::Error::msg)?;
        let addr = process.addr();
        Ok((Spawned { process }, addr))
    }

    fn fds(&self) -> anyhow::Result<usize> {
        Ok(self.process.proc().fd_count())
    }

    /// SIGTERM, then the exit status within 5 s.
    fn stop(&mut self) -> anyhow::Result<Option<i32>> {
        self.process.signal(libc::SIGTERM);
        let status = self
            .process
            .wait_exit(Duration::from_secs(5))
            .context("the server ignored SIGTERM for 5 s")?;
        Ok(status.code())
    }
}

/// The control connection: one `stats` at a time, every line checked against the gate.
#[derive(Debug)]
struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    lines: u64,
    max_inflight_seen: u64,
    last: String,
}

impl Control {
    fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).context("opening the stats connection")?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Control {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            lines: 0,
            max_inflight_seen: 0,
            last: String::new(),
        })
    }

    fn request(&mut self, line: &str) -> anyhow::Result<String> {
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        self.reader
            .read_line(&mut answer)
            .context("reading an answer on the stats connection")?;
        anyhow::ensure!(
            answer.ends_with('\n'),
            "the server closed the stats connection"
        );
        Ok(answer)
    }

    fn poll(&mut self) -> anyhow::Result<&str> {
        let line = self.request("stats")?;
        let inflight = stat(&line, "inflight")
            .with_context(|| format!("no inflight= in the stats line {line:?}"))?;
        self.lines += 1;
        self.max_inflight_seen = self.max_inflight_seen.max(inflight);
        self.last = line;
        Ok(&self.last)
    }
}

/// Runs the flood; returns the report (stdout) and whether every objective passed.
///
/// Four stages: the three waves ([`Flood::run`]), the wait for the server to come back to idle
/// ([`settle`]), the byte-for-byte harness on a fresh connection ([`run_harness`]), and the
/// objectives judged from what the clients counted and what the server said ([`report`]).
pub(crate) fn run(plan: &FloodPlan) -> anyhow::Result<(String, bool)> {
    anyhow::ensure!(plan.base_rps > 0.0, "--base-rps must be positive");
    anyhow::ensure!(!plan.wave.is_zero(), "--wave-seconds must be positive");
    crate::driver::raise_fd_limit(plan.connections + 64).context("raising the open-file limit")?;
    let (mut spawned, addr) = match &plan.spawn {
        Some(command) => {
            let (spawned, addr) = Spawned::start(command)?;
            (Some(spawned), addr)
        }
        None => (None, plan.addr),
    };
    let lines = Lines::new(plan);
    let mut control = Control::connect(addr)?;
    control.poll()?;
    let idle_fds = spawned.as_ref().map(Spawned::fds).transpose()?;

    let flood = Flood::open(plan, addr)?.run(plan, &lines, &mut control)?;
    let settled = settle(&mut control, spawned.as_ref(), idle_fds)?;
    let harness = run_harness(addr);
    let exit = match &mut spawned {
        Some(spawned) => Some(spawned.stop()?),
        None => None,
    };
    Ok(report(plan, &flood, &control, &settled, &harness, exit))
}

/// What the three waves left: the clients' counts, by wave.
#[derive(Debug)]
struct Flooded {
    waves: [WaveTally; 3],
    sent_total: u64,
    flood_time: Duration,
}

/// The flood connections while the waves run, and what they have counted so far.
#[derive(Debug)]
struct Flood {
    poller: Poller,
    connections: Vec<FloodConnection>,
    waves: [WaveTally; 3],
    sent_total: u64,
    next_connection: usize,
    last_heard: Instant,
    /// The first thing that went wrong; the waves stop at it.
    failure: Option<String>,
}

impl Flood {
    /// Opens `plan.connections` non-blocking connections to `addr`, registered for reading.
    fn open(plan: &FloodPlan, addr: SocketAddr) -> anyhow::Result<Self> {
        let poller = Poller::new().context("creating an epoll instance")?;
        let mut connections = Vec::with_capacity(plan.connections);
        for token in 0..plan.connections {
            let stream =
                TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            stream.set_nonblocking(true)?;
            poller
                .add(stream.as_fd(), token as u64, Interest::READABLE)
                .context("registering a connection")?;
            connections.push(FloodConnection {
                stream,
                pending: VecDeque::new(),
                out: Vec::new(),
                out_sent: 0,
                input: Vec::new(),
                wants_write: false,
            });
        }
        Ok(Flood {
            poller,
            connections,
            waves: [WaveTally::new()?, WaveTally::new()?, WaveTally::new()?],
            sent_total: 0,
            next_connection: 0,
            last_heard: Instant::now(),
            failure: None,
        })
    }

    /// Sends the three waves at the planned rate and reads every answer, until every request
    /// sent is answered (or something fails: a wrong answer, a closed connection, the hang
    /// guard).
    fn run(
        mut self,
        plan: &FloodPlan,
        lines: &Lines,
        control: &mut Control,
    ) -> anyhow::Result<Flooded> {
        let start = Instant::now();
        let sending_ends = start + 3 * plan.wave;
        let mut next_stats = start;
        let mut next_progress = start + PROGRESS_EVERY;
        self.last_heard = start;
        let mut events = Events::with_capacity(1024);
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            let sending = now < sending_ends;
            let owed: usize = self.connections.iter().map(|c| c.pending.len()).sum();
            if !sending && owed == 0 {
                break;
            }
            if owed > 0 && now.duration_since(self.last_heard) >= plan.hang_guard {
                self.failure = Some(format!(
                    "no answer for {:?} with {owed} answers owed",
                    plan.hang_guard
                ));
                break;
            }
            if sending {
                self.send_due(plan, lines, now.duration_since(start), now)?;
            }
            if now >= next_stats {
                control.poll()?;
                next_stats = now + STATS_EVERY;
            }
            if now >= next_progress {
                next_progress = now + PROGRESS_EVERY;
                if !plan.quiet {
                    progress_line(plan, start, &self.waves, owed, &control.last);
                }
            }
            let wait = if sending {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(50)
            };
            self.poller
                .wait(&mut events, Some(wait))
                .context("waiting for answers")?;
            let now = Instant::now();
            for event in events.iter() {
                self.on_event(event, lines, &mut buffer, now)?;
            }
            if self.failure.is_some() {
                break;
            }
        }
        if let Some(failure) = self.failure {
            anyhow::bail!("the flood failed: {failure}");
        }
        Ok(Flooded {
            waves: self.waves,
            sent_total: self.sent_total,
            flood_time: start.elapsed(),
        })
    }

    /// Queues the requests due by `elapsed` (the integral of the planned rate), round-robin
    /// over the connections, and sends them.
    fn send_due(
        &mut self,
        plan: &FloodPlan,
        lines: &Lines,
        elapsed: Duration,
        now: Instant,
    ) -> anyhow::Result<()> {
        let wave = ((elapsed.as_secs_f64() / plan.wave.as_secs_f64()) as usize).min(2);
        let due = target_sent(plan, elapsed).saturating_sub(self.sent_total);
        for _ in 0..due {
            let tally = &mut self.waves[wave];
            let number = tally.sent;
            let kind = if wave == 1 && number % SLOW_ONE_IN == SLOW_ONE_IN - 1 {
                Kind::Slow
            } else {
                Kind::Work
            };
            let retry = wave == 1 && kind == Kind::Work && number.is_multiple_of(RETRY_ONE_IN);
            tally.sent += 1;
            tally.retries += u64::from(retry);
            let count = self.connections.len();
            let connection = &mut self.connections[self.next_connection];
            self.next_connection = (self.next_connection + 1) % count;
            if retry {
                connection.out.extend_from_slice(b"retry ");
            }
            connection.out.extend_from_slice(match kind {
                Kind::Work => &lines.work,
                Kind::Slow => &lines.slow,
            });
            connection.out.push(b'\n');
            connection.pending.push_back(Sent {
                kind,
                retry,
                wave,
                at: now,
            });
            self.sent_total += 1;
        }
        if due > 0 {
            for (token, connection) in self.connections.iter_mut().enumerate() {
                flush(&self.poller, token, connection)?;
            }
        }
        Ok(())
    }

    /// One readiness event of a flood connection: sends what waits, reads what arrived, and
    /// classifies every complete answer.
    fn on_event(
        &mut self,
        event: eventloop::Event,
        lines: &Lines,
        buffer: &mut [u8],
        now: Instant,
    ) -> anyhow::Result<()> {
        let token = event.token as usize;
        let connection = &mut self.connections[token];
        if event.readiness.is_writable() {
            flush(&self.poller, token, connection)?;
        }
        if !(event.readiness.is_readable()
            || event.readiness.is_hang_up()
            || event.readiness.is_error())
        {
            return Ok(());
        }
        loop {
            match connection.stream.read(buffer) {
                Ok(0) => {
                    self.failure
                        .get_or_insert_with(|| "the server closed a flood connection".to_owned());
                    break;
                }
                Ok(received) => {
                    self.last_heard = now;
                    connection.input.extend_from_slice(&buffer[..received]);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    self.failure
                        .get_or_insert_with(|| format!("receiving: {error}"));
                    break;
                }
            }
        }
        let mut consumed = 0;
        while let Some(end) = connection.input[consumed..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line = &connection.input[consumed..consumed + end + 1];
            consumed += end + 1;
            let Some(sent) = connection.pending.pop_front() else {
                self.failure.get_or_insert_with(|| {
                    format!(
                        "an answer with no request: {:?}",
                        String::from_utf8_lossy(line)
                    )
                });
                break;
            };
            match lines.classify(&sent, line) {
                Ok(answer) => count_answer(&mut self.waves[sent.wave], answer, sent.at, now),
                Err(message) => {
                    self.failure.get_or_insert(message);
                }
            }
        }
        connection.input.drain(..consumed);
        Ok(())
    }
}

/// Counts one classified answer, and its latency from `sent_at`, in its wave's tally.
fn count_answer(tally: &mut WaveTally, answer: AnswerKind, sent_at: Instant, now: Instant) {
    match answer {
        AnswerKind::Result => tally.results += 1,
        AnswerKind::Shed => tally.shed += 1,
        AnswerKind::Timeout => tally.timeouts += 1,
        AnswerKind::RetryRejected => tally.retry_rejects += 1,
    }
    let micros = now.saturating_duration_since(sent_at).as_micros();
    tally
        .latency_us
        .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
}

/// The server after the flood, as [`settle`] last saw it.
#[derive(Debug)]
struct Settled {
    inflight: u64,
    /// Workers busy plus tasks queued.
    busy: u64,
    /// The spawned server's open fds (`None` without `--spawn`).
    fds: Option<usize>,
    /// Its fds before the flood.
    idle_fds: Option<usize>,
    /// The last stats line.
    last: String,
}

/// After the flood: waits (bounded) for the server to come back to idle. Timed-out requests
/// may still hold workers (a worker cannot be interrupted), so idle also waits for the workers
/// to finish them; the harness that follows would otherwise queue behind that late work.
fn settle(
    control: &mut Control,
    spawned: Option<&Spawned>,
    idle_fds: Option<usize>,
) -> anyhow::Result<Settled> {
    let settle_deadline = Instant::now() + SETTLE_TIMEOUT;
    let (mut inflight, mut busy, mut fds) = (u64::MAX, u64::MAX, None);
    while Instant::now() < settle_deadline {
        let line = control.poll()?;
        inflight = stat(line, "inflight").unwrap_or(u64::MAX);
        busy = stat(line, "busy_workers").unwrap_or(u64::MAX)
            + stat(line, "queue_depth").unwrap_or(u64::MAX);
        fds = spawned.map(Spawned::fds).transpose()?;
        if inflight == 0 && busy == 0 && fds == idle_fds {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = control.poll()?.to_owned();
    Ok(Settled {
        inflight,
        busy,
        fds,
        idle_fds,
        last,
    })
}

/// One objective of the flood: its name, whether it passed, and what was measured.
type Objective = (&'static str, bool, String);

/// The report: each wave's counts, then every objective judged, then the server's exit; and
/// whether everything passed.
fn report(
    plan: &FloodPlan,
    flood: &Flooded,
    control: &Control,
    settled: &Settled,
    harness: &Result<usize, String>,
    exit: Option<Option<i32>>,
) -> (String, bool) {
    let mut report = String::new();
    for (index, tally) in flood.waves.iter().enumerate() {
        let _ = writeln!(
            report,
            "wave {} {}: sent={} retries={} results={} shed={} timeouts={} retry_rejects={} \
             p99_ms={:.1}",
            index + 1,
            WAVE_NAMES[index],
            tally.sent,
            tally.retries,
            tally.results,
            tally.shed,
            tally.timeouts,
            tally.retry_rejects,
            tally.p99_ms()
        );
    }
    let _ = writeln!(
        report,
        "flood: {} requests in {:.1} s, {} stats lines",
        flood.sent_total,
        flood.flood_time.as_secs_f64(),
        control.lines
    );
    let objectives = objectives(plan, flood, control, settled, harness);
    let mut passed = 0;
    for (index, (name, ok, detail)) in objectives.iter().enumerate() {
        passed += usize::from(*ok);
        let verdict = if *ok { "PASS" } else { "FAIL" };
        let _ = writeln!(report, "objective {} {name}: {verdict} {detail}", index + 1);
    }
    let exit_ok = exit.is_none_or(|code| code == Some(0));
    if let Some(code) = exit {
        let _ = writeln!(
            report,
            "server: {} after SIGTERM",
            code.map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"))
        );
    }
    let all = passed == objectives.len() && exit_ok;
    let _ = writeln!(
        report,
        "flood: {} {passed}/{} objectives",
        if all { "PASS" } else { "FAIL" },
        objectives.len()
    );
    (report, all)
}

/// The W06 quest's objectives, judged from the clients' counts and the server's last stats.
fn objectives(
    plan: &FloodPlan,
    flood: &Flooded,
    control: &Control,
    settled: &Settled,
    harness: &Result<usize, String>,
) -> Vec<Objective> {
    let waves = &flood.waves;
    let sent_total = flood.sent_total;
    let sum = |field: fn(&WaveTally) -> u64| waves.iter().map(field).sum::<u64>();
    let server = |key: &str| stat(&settled.last, key).unwrap_or(u64::MAX);
    let mut objectives = Vec::new();
    let peak = server("inflight_peak");
    objectives.push((
        "gate",
        control.max_inflight_seen <= plan.max_inflight && peak <= plan.max_inflight,
        format!(
            "inflight at most {} in {} stats lines, peak {peak}, limit {}",
            control.max_inflight_seen, control.lines, plan.max_inflight
        ),
    ));
    let answered = sum(WaveTally::answered);
    let (shed, timeouts, rejects) = (
        sum(|t| t.shed),
        sum(|t| t.timeouts),
        sum(|t| t.retry_rejects),
    );
    objectives.push((
        "shed",
        answered == sent_total
            && shed == server("shed")
            && timeouts == server("timeouts")
            && rejects == server("retry_rejects"),
        format!(
            "{answered} of {sent_total} answered; clients/server shed {shed}/{}, timeouts \
             {timeouts}/{}, retry rejects {rejects}/{}",
            server("shed"),
            server("timeouts"),
            server("retry_rejects")
        ),
    ));
    objectives.push((
        "timeouts",
        waves[1].timeouts > 0,
        format!("{} timeouts in wave 2", waves[1].timeouts),
    ));
    objectives.push((
        "retry-budget",
        rejects > 0,
        format!("{rejects} retries rejected of {}", sum(|t| t.retries)),
    ));
    let bound = Duration::from_millis(plan.timeout_ms) + LATENCY_SLACK;
    objectives.push((
        "latency",
        waves[1].p99_ms() < bound.as_secs_f64() * 1000.0,
        format!(
            "wave 2 p99 {:.1} ms, bound {} ms",
            waves[1].p99_ms(),
            bound.as_millis()
        ),
    ));
    let Settled {
        inflight,
        busy,
        fds,
        idle_fds,
        ..
    } = *settled;
    objectives.push((
        "drain",
        inflight == 0 && busy == 0 && fds == idle_fds,
        match (fds, idle_fds) {
            (Some(fds), Some(idle)) => {
                format!(
                    "inflight {inflight}, workers busy or queued {busy}, fds {fds} (idle {idle})"
                )
            }
            _ => format!(
                "inflight {inflight}, workers busy or queued {busy}, fds not counted (no --spawn)"
            ),
        },
    ));
    objectives.push(match harness {
        Ok(count) => (
            "harness",
            true,
            format!("{count} requests answered byte for byte after the flood"),
        ),
        Err(error) => ("harness", false, error.clone()),
    });
    objectives
}

/// Sends what the connection has queued; writable interest stays on while bytes are left.
fn flush(poller: &Poller, token: usize, connection: &mut FloodConnection) -> anyhow::Result<()> {
    while connection.out_sent < connection.out.len() {
        match connection
            .stream
            .write(&connection.out[connection.out_sent..])
        {
            Ok(sent) => connection.out_sent += sent,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => return Err(error).context("sending a flood request"),
        }
    }
    if connection.out_sent == connection.out.len() {
        connection.out.clear();
        connection.out_sent = 0;
    }
    let wants_write = !connection.out.is_empty();
    if wants_write != connection.wants_write {
        poller
            .modify(
                connection.stream.as_fd(),
                token as u64,
                Interest::READABLE.with_writable(wants_write),
            )
            .context("re-registering a flood connection")?;
        connection.wants_write = wants_write;
    }
    Ok(())
}

/// The requests of the post-flood harness: one of every verb, good and bad input, and a retry.
const HARNESS: [&[u8]; 12] = [
    b"compute after the flood",
    b"rehash 3 after",
    b"factorial 20",
    b"factorial 21",
    b"factorial x",
    b"sleep 1",
    b"fail on purpose",
    b"panic on purpose",
    b"ping",
    b"",
    b"BOGUS",
    b"retry compute after the flood",
];

/// Sends [`HARNESS`] on a fresh connection, one request at a time (pipelined, the requests
/// alone could pass `--max-inflight`), and checks every answer byte for byte; the number of
/// requests checked, or what differed.
fn run_harness(addr: SocketAddr) -> Result<usize, String> {
    let check = || -> anyhow::Result<Result<usize, String>> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(&stream);
        for line in HARNESS {
            let mut request = line.to_vec();
            request.push(b'\n');
            (&stream).write_all(&request)?;
            let unmarked = line.strip_prefix(b"retry ").unwrap_or(line);
            let want = expected_response(unmarked).expect("no stats in the harness");
            let mut got = Vec::new();
            reader.read_until(b'\n', &mut got)?;
            if got != want {
                return Ok(Err(format!(
                    "request {:?} expected {:?} but got {:?}",
                    String::from_utf8_lossy(line),
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(&got)
                )));
            }
        }
        Ok(Ok(HARNESS.len()))
    };
    check().unwrap_or_else(|error| Err(format!("the harness failed: {error:#}")))
}

/// The progress line on stderr.
fn progress_line(
    plan: &FloodPlan,
    start: Instant,
    waves: &[WaveTally; 3],
    owed: usize,
    last_stats: &str,
) {
    let elapsed = start.elapsed();
    let wave = ((elapsed.as_secs_f64() / plan.wave.as_secs_f64()) as usize).min(2);
    let sum = |field: fn(&WaveTally) -> u64| waves.iter().map(field).sum::<u64>();
    eprintln!(
        "loadgen flood: {:5.1} s  wave {} {:7}  sent {}  results {}  shed {}  timeouts {}  \
         retry rejects {}  owed {owed}  server inflight {}",
        elapsed.as_secs_f64(),
        wave + 1,
        WAVE_NAMES[wave],
        sum(|t| t.sent),
        sum(|t| t.results),
        sum(|t| t.shed),
        sum(|t| t.timeouts),
        sum(|t| t.retry_rejects),
        stat(last_stats, "inflight").map_or_else(|| "?".to_owned(), |n| n.to_string()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> FloodPlan {
        FloodPlan {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            spawn: None,
            connections: 4,
            wave: Duration::from_secs(2),
            base_rps: 100.0,
            work_ms: 10,
            slow_ms: 1000,
            max_inflight: 16,
            timeout_ms: 300,
            hang_guard: Duration::from_secs(10),
            quiet: true,
        }
    }

    #[test]
    fn the_waves_ramp_to_ten_times_sustain_and_drain() {
        let plan = plan();
        let at = |seconds: f64| target_sent(&plan, Duration::from_secs_f64(seconds));
        // Ramp: the average of 1x and 10x over two seconds: 5.5 x 100 x 2.
        assert_eq!(at(2.0), 1100);
        // Sustain: 10 x 100 for two seconds more.
        assert_eq!(at(4.0), 1100 + 2000);
        // Drain: 1 x 100 for the last two, and nothing after.
        assert_eq!(at(6.0), 3300);
        assert_eq!(at(60.0), 3300);
        assert!(at(1.0) < 1100 / 2, "the ramp starts slow");
    }

    #[test]
    fn every_allowed_answer_is_classified_and_anything_else_is_an_error() {
        let lines = Lines::new(&plan());
        let sent = |kind, retry| Sent {
            kind,
            retry,
            wave: 1,
            at: Instant::now(),
        };
        let work = sent(Kind::Work, false);
        assert_eq!(
            lines.classify(&work, b"result: slept 10ms\n"),
            Ok(AnswerKind::Result)
        );
        assert_eq!(
            lines.classify(&work, b"ERROR: overloaded, retry after 25 ms\n"),
            Ok(AnswerKind::Shed)
        );
        assert_eq!(
            lines.classify(&work, b"ERROR: timeout after 300 ms\n"),
            Ok(AnswerKind::Timeout)
        );
        assert!(
            lines
                .classify(&work, b"ERROR: retry budget exhausted\n")
                .is_err()
        );
        assert_eq!(
            lines.classify(&sent(Kind::Work, true), b"ERROR: retry budget exhausted\n"),
            Ok(AnswerKind::RetryRejected)
        );
        assert!(lines.classify(&work, b"result: slept 1000ms\n").is_err());
        assert!(
            lines
                .classify(&work, b"ERROR: overloaded, retry after soon ms\n")
                .is_err()
        );
        assert_eq!(
            lines.classify(&sent(Kind::Slow, false), b"result: slept 1000ms\n"),
            Ok(AnswerKind::Result)
        );
    }

    #[test]
    fn stats_keys_are_read_by_name() {
        let line = "connections=3 inflight=7 inflight_peak=16 shed=2\n";
        assert_eq!(stat(line, "inflight"), Some(7));
        assert_eq!(stat(line, "inflight_peak"), Some(16));
        assert_eq!(stat(line, "shed"), Some(2));
        assert_eq!(stat(line, "timeouts"), None);
    }
}
