//! `bench_harness`: the binary `cargo xtask bench` runs; see the library's docs for what it does.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = bench_harness::BenchArgs::parse();
    if let Err(error) = bench_harness::install_interrupt_handler() {
        eprintln!("warning: Ctrl-C will not stop servers cleanly: {error}");
    }
    match bench_harness::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
