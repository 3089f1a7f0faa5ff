//! Tidy checks: the architecture invariants of ARCHITECTURE.md that a machine can check by reading
//! the source, run as tests so a change that breaks one fails CI with the file and line.
//!
//! - Every `.rs` file opens with `//!` module docs.
//! - Every `unsafe` block, `unsafe impl` and `unsafe fn` has a `// SAFETY:` comment (or, for an
//!   `unsafe fn`, a `# Safety` doc section) right above it.
//! - Only `eventloop::sys` calls libc functions; everything else goes through its `syscall!` helper
//!   or the safe wrappers built on it. (Constants and types from `libc` are fine anywhere.)
//! - Every raw fd that a libc call creates becomes an `OwnedFd` on the next line.
//! - No `dbg!`, no `#[ignore]`d tests.
//! - No module cycles within a crate ([`cycles`]).
//! - Every path and package that ARCHITECTURE.md and the READMEs name exists ([`docs`]).
//! - Servers are started and `/proc` is read only through `test_support` ([`harness`]).
//! - Every `cargo` command the course shows names a package, binary or test that exists
//!   ([`lesson_commands`]).
//! - The course runner (`xtask`) builds no benchmark code: neither the harness nor its chart
//!   library is among its dependencies (`cargo tree`).

mod cycles;
mod docs;
mod harness;
mod lesson_commands;

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root: this package lives in `<root>/tests`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Every file under the workspace root whose name `wanted` accepts, build output (`target/` and
/// any folder cargo marked with `CACHEDIR.TAG`), `.git`, the student's copy and the folders named
/// in `skipped` left out.
fn workspace_files(skipped: &[&str], wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    fn walk(dir: &Path, skipped: &[&str], wanted: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                let left_out = matches!(name.as_ref(), "target" | ".git" | "student")
                    || skipped.contains(&name.as_ref())
                    || path.join("CACHEDIR.TAG").is_file();
                if !left_out {
                    walk(&path, skipped, wanted, out);
                }
            } else if wanted(&name) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&workspace_root(), skipped, &wanted, &mut files);
    files
}

/// Every `.rs` file of the workspace that is compiled as part of it (`target/` is build output, as
/// is any cargo target folder under another name, `CARGO_TARGET_DIR=build`: cargo marks each with
/// a `CACHEDIR.TAG` file).
fn rust_files() -> Vec<PathBuf> {
    let mut files = workspace_files(&["course"], |name| name.ends_with(".rs"));
    files.sort();
    assert!(
        files.len() > 10,
        "found only {} .rs files: is the walk rooted right?",
        files.len()
    );
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Reports every violation at once, so one run shows everything to fix.
fn assert_none(what: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{what}:\n  {}",
        violations.join("\n  ")
    );
}

/// The source with `//` comments and string literals blanked out, so that a word inside a
/// comment or a string (like this very file's) is not mistaken for code. Line structure is kept.
fn code_only(source: &str) -> Vec<String> {
    source
        .lines()
        .map(|line| {
            let mut code = String::with_capacity(line.len());
            let mut in_string = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    // A `'"'` char literal is not the start of a string.
                    '\'' if !in_string && chars.peek() == Some(&'"') => {
                        chars.next();
                        chars.next();
                    }
                    '\\' if in_string => {
                        chars.next();
                    }
                    '"' => in_string = !in_string,
                    '/' if !in_string && chars.peek() == Some(&'/') => break,
                    _ if in_string => {}
                    _ => code.push(c),
                }
            }
            code
        })
        .collect()
}

#[test]
fn every_rust_file_starts_with_module_docs() {
    let violations = rust_files()
        .into_iter()
        .filter(|path| {
            let source = fs::read_to_string(path).unwrap_or_default();
            !source.trim_start().starts_with("//!")
        })
        .map(|path| relative(&path))
        .collect();
    assert_none("files that do not start with `//!` docs", violations);
}

#[test]
fn every_unsafe_has_a_safety_comment() {
    let mut violations = Vec::new();
    for path in rust_files() {
        let source = fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = source.lines().collect();
        let code = code_only(&source);
        for (index, line) in code.iter().enumerate() {
            if !line.contains("unsafe") {
                continue;
            }
            let is_block = line.contains("unsafe {") || line.trim_end().ends_with("unsafe");
            let is_impl = line.contains("unsafe impl");
            let is_fn = line.contains("unsafe fn") || line.contains("unsafe extern");
            if !(is_block || is_impl || is_fn) {
                continue;
            }
            // Look upwards over the statement's own lines and its comments for the justification.
            let window = lines[index.saturating_sub(12)..=index].join("\n");
            let justified = window.contains("SAFETY:")
                || (is_fn && window.contains("# Safety"))
                || line.contains("unsafe_op_in_unsafe_fn");
            if !justified {
                violations.push(format!(
                    "{}:{}: {}",
                    relative(&path),
                    index + 1,
                    lines[index].trim()
                ));
            }
        }
    }
    assert_none(
        "`unsafe` without a `// SAFETY:` comment above it",
        violations,
    );
}

/// The tooling module that calls libc besides `eventloop::sys` (see
/// `only_eventloop_sys_calls_libc_functions`); the runner and the benchmark harness use it.
const TOOLING_SYS: &[&str] = &["crates/test_support/src/sys.rs"];

#[test]
fn only_eventloop_sys_calls_libc_functions() {
    let sys = Path::new("crates/w04/eventloop/src/sys");
    let mut violations = Vec::new();
    for path in rust_files() {
        let rel = relative(&path);
        if Path::new(&rel).starts_with(sys) || rel == "crates/w04/eventloop/src/sys.rs" {
            continue;
        }
        // The foreign-server fixtures stand in for servers written in another language from the
        // protocol alone; sharing the course's syscall layer would defeat what they prove.
        if rel.starts_with("xtask/examples/foreign_") {
            continue;
        }
        // The tooling's own syscall module: the few calls the course does not teach (a socket
        // reset, signals taken synchronously, the clock tick), which the test suites, the runner
        // and the benchmark harness share, each through its small helper, so the teaching
        // crate's public face stays what the W04 lesson asks for.
        if TOOLING_SYS.contains(&rel.as_str()) {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap_or_default();
        for (index, line) in code_only(&source).iter().enumerate() {
            // A libc *function* call is `libc::name(`; constants (`libc::EPOLLIN`) and types
            // (`libc::c_int`) are not calls.
            let mut rest = line.as_str();
            while let Some(at) = rest.find("libc::") {
                let after = &rest[at + "libc::".len()..];
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let is_call = after[name.len()..].trim_start().starts_with('(');
                let is_lowercase = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
                // `libc::c_int(…)` would be a cast-like use of a type, not a syscall.
                if is_call && is_lowercase && !name.starts_with("c_") {
                    violations.push(format!("{rel}:{}: libc::{name}(…)", index + 1));
                }
                rest = &after[name.len()..];
            }
        }
    }
    assert_none("libc functions called outside eventloop::sys", violations);
}

#[test]
fn raw_fds_become_owned_on_the_next_line() {
    // The calls that return a new file descriptor. Inside eventloop::sys each one's result must be
    // wrapped in an `OwnedFd` on the line right after the call (the statement may span lines).
    const CREATORS: &[&str] = &[
        "epoll_create1",
        "eventfd",
        "timerfd_create",
        "signalfd",
        "socket",
        "accept4",
        "open",
        "socketpair",
        "dup",
    ];
    let mut violations = Vec::new();
    for path in rust_files() {
        let source = fs::read_to_string(&path).unwrap_or_default();
        let code = code_only(&source);
        for (index, line) in code.iter().enumerate() {
            for creator in CREATORS {
                let call = format!("libc::{creator}(");
                if !line.contains(&call) {
                    continue;
                }
                // The statement ends at the first line with `;`; the wrap must follow within
                // two lines of that (the line after, allowing a `// SAFETY:` comment line).
                let end = (index..code.len())
                    .find(|&i| code[i].contains(';'))
                    .unwrap_or(index);
                let next = code[end + 1..code.len().min(end + 4)].join(" ");
                let here = code[index..=end].join(" ");
                if !(here.contains("OwnedFd") || next.contains("OwnedFd")) {
                    violations.push(format!("{}:{}: {creator}", relative(&path), index + 1));
                }
            }
        }
    }
    assert_none(
        "fd-creating calls whose fd is not wrapped in OwnedFd right away",
        violations,
    );
}

#[test]
fn pool_servers_handle_connections_only_in_the_shared_loop() {
    // The one copy of the pool-handoff loop: the handoff server's and the KV server's code
    // outside `io_loop.rs` registers, reads, writes and closes no connection itself.
    const SERVERS: &[&str] = &["crates/w05/handoff_server/src", "crates/w09/kv_server/src"];
    const LOOP: &str = "crates/w05/handoff_server/src/io_loop.rs";
    const CONNECTION_HANDLING: &[&str] = &[
        "add_fd(",
        "modify_fd(",
        "remove_fd(",
        "TcpStream",
        ".accept()",
        "shutdown_write(",
        "discard_input(",
        "LINGER_TIMEOUT",
    ];
    let mut violations = Vec::new();
    for path in rust_files() {
        let rel = relative(&path);
        if rel == LOOP || !SERVERS.iter().any(|dir| Path::new(&rel).starts_with(dir)) {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap_or_default();
        for (index, line) in code_only(&source).iter().enumerate() {
            for needle in CONNECTION_HANDLING {
                if line.contains(needle) {
                    violations.push(format!("{rel}:{}: {needle}", index + 1));
                }
            }
        }
    }
    assert_none(
        "connection handling outside handoff_server::io_loop",
        violations,
    );
}

#[test]
fn no_dbg_and_no_ignored_tests() {
    let mut violations = Vec::new();
    for path in rust_files() {
        let source = fs::read_to_string(&path).unwrap_or_default();
        for (index, line) in code_only(&source).iter().enumerate() {
            if line.contains("dbg!(") || line.contains("#[ignore") {
                violations.push(format!(
                    "{}:{}: {}",
                    relative(&path),
                    index + 1,
                    line.trim()
                ));
            }
        }
    }
    assert_none("`dbg!` or `#[ignore]`", violations);
}

/// The package names in `cargo tree -p <package> -e normal` (its normal dependencies, each once).
fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_runner_builds_no_benchmark_code() {
    // `cargo xtask bench` runs the harness as a package of its own, so every other runner command
    // compiles without the chart library. The harness's own tree shows that the check can see it.
    let harness = normal_dependencies("bench_harness");
    assert!(harness.iter().any(|name| name == "plotters"), "{harness:?}");
    let runner = normal_dependencies("xtask");
    assert!(runner.iter().any(|name| name == "xtask"), "{runner:?}");
    let violations: Vec<String> = runner
        .into_iter()
        .filter(|name| name == "plotters" || name == "bench_harness")
        .map(|name| format!("xtask depends on {name}"))
        .collect();
    assert_none("benchmark code in the course runner", violations);
}

#[test]
fn code_only_blanks_comments_and_strings() {
    let code = code_only("let a = \"libc::close(\"; // libc::close(fd)\nlibc::close(fd);");
    assert_eq!(
        code,
        vec!["let a = ; ".to_string(), "libc::close(fd);".to_string()]
    );
    let code = code_only("if c == '\"' { libc::close(fd) } // \"");
    assert_eq!(code, vec!["if c ==  { libc::close(fd) } ".to_string()]);
}
