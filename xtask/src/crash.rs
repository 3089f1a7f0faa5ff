//! `cargo xtask crash`: the W10 crash harness at full length.
//!
//! The harness itself is a test binary of `kv_server` (`crates/w09/kv_server/tests/crash.rs`),
//! so `cargo test` runs it too, with a few kills. This command runs the same binary, built in
//! release mode, with many more (`--kills`, 200 by default) and, with `--seed`, the random
//! choices of an earlier run, and relays its report: the lives, the kills, the writes
//! acknowledged and checked, and the seed that repeats the run.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Context as _;

/// The arguments of `cargo xtask crash`.
#[derive(Debug, clap::Args)]
pub struct CrashArgs {
    /// How many times the server is killed with SIGKILL at a random moment under load (each
    /// followed by a restart and a check); every failpoint of the log and the checkpoint is
    /// visited after them.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    kills: u64,
    /// Repeat the random choices of a run that printed `KV_CRASH_SEED=<seed>`.
    #[arg(long)]
    seed: Option<u64>,
}

/// The command line of the harness for `args`: `cargo test` of the crash binary, in release
/// mode, with its output shown as it comes.
fn harness_command(root: &Path, args: &CrashArgs) -> Command {
    let mut command = Command::new(crate::workspace::cargo());
    command
        .args([
            "test",
            "--release",
            "-p",
            "kv_server",
            "--test",
            "crash",
            "--",
            "--nocapture",
        ])
        .current_dir(root)
        .env("KV_CRASH_KILLS", args.kills.to_string());
    match args.seed {
        Some(seed) => command.env("KV_CRASH_SEED", seed.to_string()),
        None => command.env_remove("KV_CRASH_SEED"),
    };
    command
}

/// Runs the harness; its exit status is the command's.
pub fn run(args: &CrashArgs) -> anyhow::Result<ExitCode> {
    let root = crate::workspace::workspace_root();
    println!(
        "crash harness: {} SIGKILLs under load, then every failpoint (the test binary \
         kv_server/tests/crash.rs, release build)",
        args.kills
    );
    let status = harness_command(&root, args)
        .status()
        .context("running cargo test for the crash harness")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        crash: CrashArgs,
    }

    #[test]
    fn the_harness_runs_the_crash_test_binary_with_the_kills_and_the_seed() {
        let args = Cli::try_parse_from(["crash", "--kills", "7", "--seed", "99"])
            .unwrap()
            .crash;
        let command = harness_command(Path::new("/w"), &args);
        let words: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            words,
            [
                "test",
                "--release",
                "-p",
                "kv_server",
                "--test",
                "crash",
                "--",
                "--nocapture"
            ]
        );
        let envs: Vec<_> = command
            .get_envs()
            .map(|(k, v)| (k.to_str().unwrap(), v.and_then(|v| v.to_str())))
            .collect();
        assert!(envs.contains(&("KV_CRASH_KILLS", Some("7"))), "{envs:?}");
        assert!(envs.contains(&("KV_CRASH_SEED", Some("99"))), "{envs:?}");
        assert_eq!(Cli::try_parse_from(["crash"]).unwrap().crash.kills, 200);
        assert!(Cli::try_parse_from(["crash", "--kills", "0"]).is_err());
    }
}
