//! `cargo xtask bench` (being written).

use std::process::ExitCode;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {}

/// Runs the benchmark.
pub(crate) fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cargo xtask bench is not there yet")
}
