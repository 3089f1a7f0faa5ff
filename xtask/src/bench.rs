//! `cargo xtask bench`: forwards to the benchmark harness, `crates/bench/harness`.
//!
//! The harness is a package of its own (`bench_harness`) so the runner does not build the chart
//! library, the JSON report and the rest of what only a benchmark needs; `cargo xtask bench
//! ARGS...` runs `cargo run --release -p bench_harness -- ARGS...` and exits as it did. Every flag
//! is the harness's: `cargo xtask bench --help` prints its list.

use std::process::{Command, ExitCode};

use anyhow::Context as _;

use crate::process;

/// Arguments of `cargo xtask bench`: passed to the harness untouched, `--help` included.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct BenchArgs {
    /// The harness's arguments (`--rounds`, `--scenarios`, `--kv`, `--baseline`, ...); `--help`
    /// lists them all.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<String>,
}

impl BenchArgs {
    /// The `cargo` command line that runs the harness with these arguments.
    fn command(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(crate::workspace_root())
            .args(["run", "--release", "--package", "bench_harness", "--"])
            .args(&self.args);
        command
    }
}

/// Runs the harness and returns its exit status.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut command = args.command();
    // In a registered process group of its own, so Ctrl-C stops cargo, the harness and what it
    // started; the streams are inherited, so the harness's output appears as it is printed.
    let status = process::output(&mut command)
        .context("running cargo run -p bench_harness")?
        .status;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask bench ARGS` as the runner's command line parses it.
    fn parse(args: &[&str]) -> BenchArgs {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let mut argv = vec!["bench"];
        argv.extend_from_slice(args);
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().bench
    }

    #[test]
    fn every_argument_reaches_the_harness_untouched() {
        let args = parse(&["--kv", "--rounds", "2", "--help", "--scenarios", "S1,S2"]);
        let command = args.command();
        let argv: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            argv,
            [
                "run",
                "--release",
                "--package",
                "bench_harness",
                "--",
                "--kv",
                "--rounds",
                "2",
                "--help",
                "--scenarios",
                "S1,S2"
            ]
        );
        assert!(parse(&[]).args.is_empty());
    }
}
