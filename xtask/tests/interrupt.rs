//! Ctrl-C in the middle of a lesson: the runner stops every server it started, then exits 130,
//! and records nothing in the progress file (the test points it at a temporary one).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the runner if the test fails before it exits on its own.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_stops_the_servers_and_exits_130() {
    let runner = env!("CARGO_BIN_EXE_xtask");
    let fixture = Path::new(runner)
        .parent()
        .expect("profile folder")
        .join("examples/broken_server");
    assert!(fixture.is_file(), "cargo test builds the fixture example");
    let progress =
        std::env::temp_dir().join(format!("xtask-interrupt-progress-{}", std::process::id()));
    let child = Command::new(runner)
        .args(["lesson", "w05-quest", "--server"])
        .arg(format!("{} {{port}}", fixture.display()))
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", &progress)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the runner");
    let mut runner_process = KillOnDrop(child);
    let stdout = runner_process.0.stdout.take().expect("piped stdout");
    let stderr = runner_process.0.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stdout).lines();
    std::thread::scope(|scope| {
        // stderr is drained alongside, so the runner never blocks on a full pipe.
        let notes = scope.spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        interrupt_and_check(&mut runner_process, &mut lines, notes);
    });
    assert!(
        !progress.exists(),
        "a --server run must not record progress"
    );
}

fn interrupt_and_check(
    runner_process: &mut KillOnDrop,
    lines: &mut std::io::Lines<BufReader<std::process::ChildStdout>>,
    notes: std::thread::ScopedJoinHandle<'_, Vec<String>>,
) {
    // The server step reports `... is ready — pid N, port P`: that is the process to watch.
    let server_pid = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let (_, after) = line.split_once("— pid ")?;
            after.split(',').next()?.trim().parse::<u32>().ok()
        })
        .expect("the runner reported the server's pid");
    assert!(Path::new(&format!("/proc/{server_pid}")).exists());

    let runner_pid = runner_process.0.id();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -INT {runner_pid}"))
        .status();
    assert!(status.is_ok_and(|s| s.success()), "sending SIGINT");
    // Drain the rest of the report so the runner never blocks on a full pipe.
    let mut rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = runner_process.0.wait().expect("wait for the runner");
    rest.extend(notes.join().expect("stderr reader"));
    assert_eq!(
        exit.code(),
        Some(130),
        "report after the interrupt:\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|line| line.contains("interrupted")),
        "{}",
        rest.join("\n")
    );

    // The server was stopped (and, its parent gone, reaped by init): its /proc entry goes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{server_pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !Path::new(&format!("/proc/{server_pid}")).exists(),
        "server {server_pid} outlived the runner"
    );
}
