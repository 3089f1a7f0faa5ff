//! `cargo xtask`: the course runner.
//!
//! Each subcommand's arguments live in its own module, so the modules can grow independently.

mod bench;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The course runner: runs a lesson's steps against the code, grades, and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one lesson's Test / Expected / Prove steps against the code.
    Lesson {
        /// The lesson id, for example `w05-l04`.
        id: String,
    },
    /// Benchmarks the servers against each other.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lesson { id } => {
            eprintln!(
                "cargo xtask lesson {id}: the lesson runner is not there yet; \
                 run the tests with `cargo test --workspace` meanwhile"
            );
            return ExitCode::from(2);
        }
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
