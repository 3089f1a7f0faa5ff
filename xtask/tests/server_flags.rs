//! `--server` and its companions refuse what they cannot grade, with the reason, before any
//! server starts.

use assert_cmd::Command;
use predicates::str::contains;

fn xtask() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.env("NO_COLOR", "1");
    command
}

#[test]
fn a_command_without_the_port_is_refused() {
    xtask()
        .args(["lesson", "w05-l04", "--server", "./server {args}"])
        .assert()
        .code(2)
        .stderr(contains("--server needs `{port}`"));
}

#[test]
fn args_none_with_the_args_placeholder_is_refused() {
    xtask()
        .args([
            "grade",
            "--server",
            "./server {port} {args}",
            "--server-args-none",
        ])
        .assert()
        .code(2)
        .stderr(contains("--server-args-none"));
}

#[test]
fn args_none_needs_a_server() {
    xtask()
        .args(["lesson", "w05-l04", "--server-args-none"])
        .assert()
        .failure()
        .stderr(contains("--server <CMD>"));
}

#[test]
fn a_lesson_without_a_server_step_has_nothing_to_grade_with_a_server() {
    xtask()
        .args(["lesson", "w05-l01", "--server", "./server {port}"])
        .assert()
        .code(2)
        .stderr(contains(
            "lesson w05-l01 has nothing to grade another server on: it has no server step",
        ));
}
