//! The course runner as a library: the lesson model and its parser, the runner that executes a
//! lesson's steps, the results and their reports, student mode, and the commands built on them.
//!
//! `cargo xtask` (`main.rs`) only parses its command line and calls one function here; the
//! end-to-end tests in `xtask/tests/` call the same functions, or the built binary.
//!
//! The public face is the model a test or another tool needs: [`lesson`] (a lesson file, parsed),
//! [`results`] (what a run found), [`runner::run_lesson`] with its options, [`report::Printer`],
//! and the commands: [`commands`] for the learner (`lesson`, `list`, `grade`, `start`, `stop`,
//! `reset`, `hint`, `watch`), [`book`] (`cargo xtask book`: the course as a web book, generated
//! from the lesson model) and [`maintainer`] for the course's authors (`starters`, `lesson --check-format`),
//! kept apart as rustlings keeps `dev`. The machinery behind them (clients, traces, proofs,
//! processes, the starter generator) is private.
//!
//! The layers, from the bottom: [`workspace`] (where things are), [`lesson`] (what a lesson
//! says), [`results`], [`report`], the runner and its steps, student mode, and the commands on
//! top. No two modules depend on each other (the tidy test `no_module_cycles` checks it): what
//! two of them share lives in one below both.

pub mod book;
pub mod commands;
pub mod crash;
pub mod lesson;
pub mod maintainer;
pub mod quiz;
pub mod report;
pub mod results;
pub mod runner;
pub mod server;
pub mod soak;
pub mod workspace;

mod bench;
mod client;
mod last_run;
pub mod process;
mod progress;
mod prove;
mod run_state;
mod starters;
mod student;
mod sys;
mod trace;

// The benchmark harness and the soak harness name these two by their crate-root paths.
pub use workspace::{target_dir, workspace_root};

use std::process::ExitCode;

/// The arguments of `cargo xtask bench`: the benchmark harness's own, which it keeps
/// crate-private; this is the face the binary parses.
#[derive(Debug, clap::Args)]
pub struct BenchCommandArgs {
    #[command(flatten)]
    args: bench::BenchArgs,
}

/// `cargo xtask bench`: runs the benchmark harness.
pub fn bench_command(args: BenchCommandArgs) -> anyhow::Result<ExitCode> {
    bench::run(args.args)
}

/// Installs the Ctrl-C handler that stops every server a command started before the process
/// exits with status 130.
pub fn install_interrupt_handler() -> std::io::Result<()> {
    process::install_interrupt_handler()
}

/// Whether Ctrl-C interrupted the run (the servers are stopped on the way out).
pub fn interrupted() -> bool {
    process::interrupted()
}
