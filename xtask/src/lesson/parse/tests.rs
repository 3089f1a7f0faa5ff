//! Tests of the lesson parser: the documented example parses, every deviation is an error.

use super::*;
use crate::lesson::StepKind;
use std::path::Path;

/// The complete minimal lesson of `course/FORMAT.md`, taken from the document itself so the
/// documentation cannot drift from the parser.
fn format_example() -> String {
    let format = std::fs::read_to_string(crate::workspace_root().join("course/FORMAT.md")).unwrap();
    let mut in_example = false;
    let mut example = String::new();
    for event in Parser::new(&format) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) if &*info == "markdown" => {
                in_example = true;
            }
            Event::Text(text) if in_example => example.push_str(&text),
            Event::End(TagEnd::CodeBlock) if in_example => break,
            _ => {}
        }
    }
    assert!(
        example.starts_with("---"),
        "FORMAT.md lost its example lesson"
    );
    example
}

fn parse(text: &str) -> Result<Lesson, FormatError> {
    parse_lesson(text, Path::new("lesson.md"))
}

fn parse_err(text: &str) -> String {
    parse(text)
        .expect_err("the lesson should be rejected")
        .to_string()
}

#[test]
fn the_documented_example_parses() {
    let lesson = parse(&format_example()).unwrap();
    assert_eq!(lesson.front.id, "w05-l09");
    assert_eq!(lesson.front.krate, "handoff_server");
    let names: Vec<&str> = lesson.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["main", "ping", "pipelined", "still-alive"]);
    assert!(
        matches!(&lesson.steps[2].kind, StepKind::Client(c) if c.expect_protocol && c.server == "main")
    );
    assert_eq!(lesson.done_when[0].checked_by, ["ping"]);
    assert!(lesson.done_when[1].checked_by.is_empty());
    assert_eq!(lesson.hints_for("ping").len(), 1);
    assert!(lesson.hints_for("pipelined").is_empty());
}

#[test]
fn unknown_kinds_and_attributes_are_errors() {
    let example = format_example();
    let bad_kind = example.replace("console client name=ping", "console clinet name=ping");
    assert!(parse_err(&bad_kind).contains("unknown step kind `console clinet`"));
    let bad_attr = example.replace("name=ping server=main", "name=ping server=main halfclose");
    assert!(parse_err(&bad_attr).contains("unknown attribute `halfclose`"));
    let bad_value = example.replace("within=500ms", "within=fast");
    assert!(parse_err(&bad_value).contains("not a duration"));
    let bad_assertion = example.replace("alive\n", "still alive\n");
    assert!(parse_err(&bad_assertion).contains("unknown assertion `still alive`"));
    let no_tid = example.replace("log has `main {tid}`", "log tids `main` at most 1");
    assert!(parse_err(&no_tid).contains("needs a `{tid}` capture"));
}

#[test]
fn references_must_name_steps() {
    let example = format_example();
    let done = example.replace("(checked by: ping)", "(checked by: pong)");
    assert!(parse_err(&done).contains("`pong` is not a step"));
    let mistake = example.replace("| `ping` |", "| `pnig` |");
    assert!(parse_err(&mistake).contains("`pnig` is not a step"));
    let server = example.replace("name=ping server=main", "name=ping server=other");
    assert!(parse_err(&server).contains("no earlier server step is named `other`"));
}

#[test]
fn structure_is_checked() {
    let example = format_example();
    let missing = example.replace("## Why it matters", "## Why");
    assert!(parse_err(&missing).contains("expected `Why it matters` next"));
    let cut = example.split("## Diagram").next().unwrap().to_owned();
    assert!(parse_err(&cut).contains("lacks the section `## Diagram`"));
    let front = example.replace(
        "crate: handoff_server\n",
        "crate: handoff_server\nauthor: x\n",
    );
    assert!(parse_err(&front).contains("unknown front matter key `author`"));
    let bad_id = example.replace("id: w05-l09", "id: lesson9");
    assert!(parse_err(&bad_id).contains("neither `wNN-lNN`"));
    let misplaced = example.replace(
        "1. Answer `ping`",
        "```console prove\nalive\n```\n\n1. Answer `ping`",
    );
    assert!(parse_err(&misplaced).contains("stands in section `Do`"));
    let duplicate = example.replace("name=pipelined", "name=ping");
    assert!(parse_err(&duplicate).contains("used twice"));
}

#[test]
fn illustrative_blocks_are_not_steps() {
    let example = format_example().replace(
        "## Expected\n",
        "## Expected\n\n```rust\nfn main() {}\n```\n\n```console\n$ echo hi\n```\n",
    );
    let lesson = parse(&example).unwrap();
    assert_eq!(lesson.steps.len(), 4);
}

#[test]
fn assertions_parse() {
    assert!(
        matches!(parse_assertion("cpu at most 20% over 1s"), Ok(Assertion::CpuAtMost { percent, .. }) if percent == 20.0)
    );
    assert!(matches!(
        parse_assertion("exits 0 within 3s"),
        Ok(Assertion::Exits { status: 0, .. })
    ));
    assert!(matches!(
        parse_assertion("threads exactly 3"),
        Ok(Assertion::Threads {
            exact: true,
            bound: ThreadBound::Count(3)
        })
    ));
    assert!(matches!(
        parse_assertion("log has `worker {tid} task [..]` at least 10 times"),
        Ok(Assertion::LogHas(_, 10))
    ));
    assert!(parse_assertion("fds at most many").is_err());
    assert!(matches!(
        parse_assertion("eventfd writes from `worker {tid} task [..]` at most reads plus 1"),
        Ok(Assertion::EventfdWritesAtMostReads(_))
    ));
    assert!(parse_assertion("eventfd writes from `worker {tid}` at most reads plus 2").is_err());
}

#[test]
fn a_thread_budget_parses_into_the_threads_assertion() {
    assert!(matches!(
        parse_assertion("threads exactly workers + io"),
        Ok(Assertion::Threads {
            exact: true,
            bound: ThreadBound::WorkersPlusIo
        })
    ));
    assert!(matches!(
        parse_assertion("threads at most  workers  +  io"),
        Ok(Assertion::Threads {
            exact: false,
            bound: ThreadBound::WorkersPlusIo
        })
    ));
    assert!(matches!(
        parse_assertion("threads at most 4"),
        Ok(Assertion::Threads {
            exact: false,
            bound: ThreadBound::Count(4)
        })
    ));
}

#[test]
fn a_malformed_thread_bound_is_refused_with_the_two_forms() {
    for bad in [
        "threads exactly workers+io",
        "threads exactly workers + loops",
        "threads exactly workers",
        "threads at most io + workers",
        "threads at most -1",
        "threads exactly",
        "threads exactly 3 + io",
    ] {
        let error = parse_assertion(bad).expect_err(bad);
        assert!(
            error.contains("a thread bound is a number") && error.contains("`workers + io`"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn a_thread_budget_needs_a_server_step() {
    let example = format_example();
    let in_lesson = example.replace("alive\nlog has", "threads exactly workers + io\nlog has");
    let lesson = parse(&in_lesson).unwrap();
    let prove = lesson
        .steps
        .iter()
        .find(|s| s.name == "still-alive")
        .unwrap();
    assert!(matches!(
        &prove.kind,
        StepKind::Prove(p) if p.assertions[0].0 == "threads exactly workers + io"
    ));
    let before_the_server = example.replace(
        "```console server name=main",
        "```console prove name=early\nthreads exactly workers + io\n```\n\n```console server name=main",
    );
    assert!(parse_err(&before_the_server).contains("needs a server step before it"));
}

#[test]
fn every_lesson_in_the_course_parses() {
    let lessons = crate::lesson::discover(&crate::workspace_root()).unwrap();
    assert!(
        lessons.iter().any(|lesson| lesson.front.id == "w05-l04"),
        "the W05 L04 lesson is missing"
    );
}

#[test]
fn a_step_of_a_reference_only_server_must_be_reference_only_too() {
    let example = format_example();
    let marked = example.replace(
        "console server name=main",
        "console server name=main reference-only",
    );
    let error = parse_err(&marked);
    assert!(
        error.contains("needs `main`, which is reference-only"),
        "{error}"
    );
    // Marking every step of that server makes the lesson whole again.
    let all = marked
        .replace(
            "name=ping server=main",
            "name=ping server=main reference-only",
        )
        .replace("name=pipelined", "name=pipelined reference-only")
        .replace("name=still-alive", "name=still-alive reference-only");
    let lesson = parse(&all).unwrap();
    assert!(lesson.steps.iter().all(|s| !s.applies_to_foreign_server()));
    assert!(
        parse(&example)
            .unwrap()
            .steps
            .iter()
            .all(|s| s.applies_to_foreign_server())
    );
}
