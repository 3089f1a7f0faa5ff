//! A lesson's page in the book: the lesson file as written, with what the runner does with it
//! shown beside it.
//!
//! Everything shown comes from the [`Lesson`] the runner grades with, so the page cannot say one
//! thing while the runner checks another: the front matter becomes a box with the lesson's facts
//! and its `cargo xtask start` and `cargo xtask lesson` commands; every step block gets a label
//! with its section, kind and name and the checks that step runs (anchored as `#step-NAME`); and
//! each Done-when item names, with links, the steps that check it, or says it is not checked
//! mechanically. The page is edited by splicing the source at the offsets the markdown parser
//! reports, so the rest of the text reaches mdBook untouched.

use super::links::{line_index, options};
use crate::lesson::{Assertion, ExpectStatus, Lesson, Ready, Step, StepKind, Stream};
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use std::time::Duration;

/// An edit of the source: replace `start..end` with `text`.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// The lesson page's markdown for mdBook, from the lesson file's `text` and its parsed `lesson`.
pub(crate) fn lesson_page(text: &str, lesson: &Lesson) -> String {
    let line_of = line_index(text);
    let mut edits: Vec<Edit> = Vec::new();
    let mut front_end = 0;
    let mut box_placed = false;
    let mut heading: Option<(HeadingLevel, String)> = None;
    let mut section = String::new();
    let mut list_depth = 0usize;
    let mut item_start: Option<usize> = None;
    let mut done_items = lesson.done_when.iter();
    for (event, range) in Parser::new_ext(text, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::MetadataBlock(_)) => {
                edits.push(Edit {
                    start: range.start,
                    end: range.end,
                    text: String::new(),
                });
                front_end = range.end;
            }
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level, String::new())),
            Event::End(TagEnd::Heading(level)) => {
                let name = heading.take().map(|(_, name)| name).unwrap_or_default();
                if level == HeadingLevel::H1 && !box_placed {
                    edits.push(Edit {
                        start: range.end,
                        end: range.end,
                        text: format!("\n{}\n", lesson_box(lesson)),
                    });
                    box_placed = true;
                }
                if level == HeadingLevel::H2 {
                    section = name.trim().to_owned();
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, name)) = heading.as_mut() {
                    name.push_str(&t);
                }
            }
            Event::Start(Tag::CodeBlock(_)) => {
                let line = line_of(range.start);
                if let Some(step) = lesson.steps.iter().find(|s| s.line == line) {
                    let line_start = text[..range.start].rfind('\n').map_or(0, |at| at + 1);
                    let indent = &text[line_start..range.start];
                    edits.push(Edit {
                        start: line_start,
                        end: line_start,
                        text: format!("{indent}{}\n\n", step_label(&section, step, lesson)),
                    });
                }
            }
            Event::Start(Tag::List(_)) if section == "Done when" => list_depth += 1,
            Event::End(TagEnd::List(_)) if section == "Done when" => {
                list_depth = list_depth.saturating_sub(1);
            }
            Event::Start(Tag::Item) if section == "Done when" && list_depth == 1 => {
                item_start = Some(range.start);
            }
            Event::End(TagEnd::Item) if section == "Done when" && list_depth == 1 => {
                if let (Some(start), Some(item)) = (item_start.take(), done_items.next()) {
                    edits.push(done_edit(text, start, range.end, &item.checked_by));
                }
            }
            _ => {}
        }
    }
    if !box_placed {
        edits.push(Edit {
            start: front_end,
            end: front_end,
            text: format!("\n{}\n", lesson_box(lesson)),
        });
    }
    apply(text, edits)
}

/// Applies non-overlapping edits.
fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|edit| (edit.start, edit.end));
    let mut out = String::with_capacity(text.len() * 2);
    let mut at = 0;
    for edit in edits {
        if edit.start < at {
            continue;
        }
        out.push_str(&text[at..edit.start]);
        out.push_str(&edit.text);
        at = edit.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The box under the lesson's title: its facts and the commands that start, check, watch it and
/// give its hints.
fn lesson_box(lesson: &Lesson) -> String {
    let front = &lesson.front;
    let week = front.week().trim_start_matches('w').trim_start_matches('0');
    let place = if front.id.ends_with("-quest") {
        format!("week {week}, quest")
    } else {
        format!("week {week}")
    };
    let starter = if front.starter == front.krate {
        String::new()
    } else {
        format!(" (starter <code>{}</code>)", escape(&front.starter))
    };
    let steps = lesson.steps.len();
    let foreign = lesson
        .steps
        .iter()
        .filter(|s| s.applies_to_foreign_server())
        .count();
    let foreign = if !lesson.has_server() {
        String::new()
    } else if foreign == steps {
        ", all of them also for a server of your own (<code>--server</code>)".to_owned()
    } else if foreign > 0 {
        format!(", {foreign} of them also for a server of your own (<code>--server</code>)")
    } else {
        String::new()
    };
    let id = escape(&front.id);
    format!(
        "<div class=\"xtask-lesson\">\n\
<p class=\"xtask-facts\"><code>{id}</code> · {place} · {duration} · crate <code>{krate}</code>{starter} · {steps} steps{foreign}</p>\n\
<pre class=\"xtask-commands\"><code>cargo xtask start {id}    # your copy, in student/{starter_dir}/\n\
cargo xtask lesson {id}   # check it: this page's steps\n\
cargo xtask watch {id}    # check it again at every save\n\
cargo xtask hint {id}     # stuck? the failed step's hint, then more</code></pre>\n\
</div>\n",
        duration = escape(&front.duration),
        krate = escape(&front.krate),
        starter_dir = escape(&front.starter),
    )
}

/// The label above a step's block: section, kind, name, and the checks it runs.
fn step_label(section: &str, step: &Step, lesson: &Lesson) -> String {
    let mut checks = checks(step);
    checks.push(format!("time limit {}", duration(step.timeout)));
    if !step.applies_to_foreign_server() && lesson.has_server() {
        checks.push(
            "reference-only: not applicable (and not counted) when another server is graded with \
             <code>--server</code>"
                .to_owned(),
        );
    }
    if step.points != 1 {
        checks.push(format!(
            "worth {} points in the Classroom result",
            step.points
        ));
    }
    let items: String = checks.iter().map(|c| format!("<li>{c}</li>")).collect();
    format!(
        "<div class=\"xtask-step\" id=\"step-{name}\"><p class=\"xtask-step-title\"><span class=\"xtask-section\">{section}</span> · {kind} <code>{name}</code> — what the runner checks:</p><ul>{items}</ul></div>",
        name = escape(&step.name),
        section = escape(section),
        kind = step.kind.word(),
    )
}

/// What a step checks, one HTML fragment per check.
fn checks(step: &Step) -> Vec<String> {
    let code = |text: &str| format!("<code>{}</code>", escape(text));
    match &step.kind {
        StepKind::Run(run) => run
            .commands
            .iter()
            .map(|(command, expected)| {
                let stream = match run.stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                    Stream::Both => "stdout then stderr",
                };
                let output = if expected.is_empty() {
                    "any output".to_owned()
                } else {
                    format!(
                        "its {stream} matches the {} line(s) below it (<code>[..]</code> and \
                         <code>...</code> are wildcards)",
                        expected.len()
                    )
                };
                let status = match run.status {
                    ExpectStatus::Code(0) => "exits 0".to_owned(),
                    ExpectStatus::Code(n) => format!("exits {n}"),
                    ExpectStatus::Failure => "exits non-zero".to_owned(),
                };
                format!("runs {}: {status}, {output}", code(command))
            })
            .collect(),
        StepKind::Server(server) => {
            let mut checks = vec![format!(
                "starts {} (with <code>--server CMD</code>: your command, with these arguments)",
                code(&server.command)
            )];
            checks.push(match &server.ready {
                Ready::Tcp => "ready when a TCP connection to its port succeeds".to_owned(),
                Ready::Line(text) => {
                    format!("ready when its log has a line containing {}", code(text))
                }
            });
            if let Some(limit) = server.nofile {
                checks.push(format!(
                    "started with at most {limit} open files (RLIMIT_NOFILE)"
                ));
            }
            checks
        }
        StepKind::Client(client) => {
            let mut checks = vec![format!(
                "{} client(s) × {} round(s) connect to <code>{}</code>, each sending the {} <code>&gt;</code> line(s) at once",
                client.clients,
                client.rounds,
                escape(&client.server),
                client.sends.len()
            )];
            if !client.expects.is_empty() {
                checks.push(format!(
                    "the responses match the {} <code>&lt;</code> line(s), in order",
                    client.expects.len()
                ));
            }
            let flags = [
                (
                    client.expect_protocol,
                    "every response is the one the protocol prescribes for its request".to_owned(),
                ),
                (
                    client.half_close,
                    "half-closes after sending, and reads until the server closes".to_owned(),
                ),
                (
                    client.eof && !client.half_close,
                    "the server closes the connection after the answers".to_owned(),
                ),
                (
                    client.reset,
                    "closes with a TCP reset right after sending, reading nothing".to_owned(),
                ),
                (
                    client.background,
                    "runs in the background while the next steps run".to_owned(),
                ),
                (
                    client.tolerant,
                    "connection errors do not fail it (it is load)".to_owned(),
                ),
            ];
            checks.extend(
                flags
                    .into_iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, text)| text),
            );
            if let Some(within) = client.within {
                checks.push(format!("every client finishes within {}", duration(within)));
            }
            if let Some(delay) = client.delay {
                checks.push(format!("connects after {}", duration(delay)));
            }
            if let Some(hold) = client.hold {
                checks.push(format!(
                    "holds the connection {} after the exchange",
                    duration(hold)
                ));
            }
            if let Some(after) = client.read_after {
                checks.push(format!(
                    "reads nothing for {} (a slow reader)",
                    duration(after)
                ));
            }
            checks
        }
        StepKind::Wait(wait) => vec![format!(
            "passes when the background client {} passed",
            code(&wait.client)
        )],
        StepKind::Signal(signal) => {
            let mut checks = vec![format!(
                "sends SIG{} to the server {}",
                escape(&signal.signal_name),
                code(&signal.server)
            )];
            if signal.signal_name == "KILL" {
                checks.push("waits until the process is gone".to_owned());
            }
            checks
        }
        StepKind::Trace(trace) => vec![format!(
            "attaches <code>strace -f</code> to the server {}, recording which thread touches each \
             client socket, each file in the data folder and each eventfd (SKIPPED, never passed, without strace)",
            code(&trace.server)
        )],
        StepKind::Prove(prove) => prove
            .assertions
            .iter()
            .map(|(source, assertion)| {
                let about = match assertion {
                    Assertion::LogHas(..)
                    | Assertion::LogLacks(_)
                    | Assertion::TidsDiffer(..)
                    | Assertion::TidsAtMost(..) => "in the server's log",
                    Assertion::Threads { .. }
                    | Assertion::FdsAtMost(_)
                    | Assertion::CpuAtMost { .. }
                    | Assertion::Alive
                    | Assertion::Exits { .. } => "of the live process",
                    Assertion::SocketTidsDisjoint(_)
                    | Assertion::DiskTidsDisjoint(_)
                    | Assertion::EventfdWritesAtMostReads(_) => "against the strace record",
                };
                format!("{} ({about})", code(source))
            })
            .collect(),
    }
}

/// The edit that shows which steps check a Done-when item (the item's source is
/// `start..end`): its `(checked by: ...)` suffix becomes links to those steps' labels; an item
/// without one is marked as not checked mechanically.
fn done_edit(text: &str, start: usize, end: usize, checked_by: &[String]) -> Edit {
    let item = &text[start..end];
    let content_end = start + item.trim_end().len();
    if checked_by.is_empty() {
        return Edit {
            start: content_end,
            end: content_end,
            text: " <span class=\"xtask-unchecked\">not checked mechanically: check it yourself</span>"
                .to_owned(),
        };
    }
    let links: Vec<String> = checked_by
        .iter()
        .map(|name| {
            let name = escape(name);
            format!("<a href=\"#step-{name}\"><code>{name}</code></a>")
        })
        .collect();
    let label = format!(
        "<span class=\"xtask-checked\">checked by {}</span>",
        links.join(", ")
    );
    match item.rfind("(checked by:") {
        Some(at) => Edit {
            start: start + at,
            end: content_end,
            text: label,
        },
        None => Edit {
            start: content_end,
            end: content_end,
            text: format!(" {label}"),
        },
    }
}

/// A duration as lessons write it: `500ms`, `10s`, `2m`.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `text` safe inside HTML.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lesson::parse::parse_lesson;
    use std::path::Path;

    #[test]
    fn the_w05_l04_page_has_the_box_a_label_per_step_and_linked_done_when_items() {
        let root = crate::workspace_root();
        let file = Path::new("course/w05/04-io-cpu-handoff.md");
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let lesson = parse_lesson(&text, file).unwrap();
        let page = lesson_page(&text, &lesson);
        assert!(
            !page.starts_with("---"),
            "the front matter is shown as a box, not as text"
        );
        assert!(page.contains("cargo xtask start w05-l04"), "{page}");
        assert!(page.contains("cargo xtask lesson w05-l04"), "{page}");
        assert!(page.contains("cargo xtask watch w05-l04"), "{page}");
        assert!(page.contains("cargo xtask hint w05-l04"), "{page}");
        // The box comes right after the title.
        let title = page.find("# The IO-to-CPU handoff").unwrap();
        assert!(page[title..].find("xtask-lesson").unwrap() < 60, "{page}");
        for step in &lesson.steps {
            let anchor = format!("id=\"step-{}\"", step.name);
            assert_eq!(page.matches(&anchor).count(), 1, "{anchor}");
        }
        assert!(page.contains(
            "<span class=\"xtask-section\">Prove</span> · prove <code>thread-ids</code>"
        ));
        // The checks a prove step runs are its assertions, as written.
        assert!(page.contains("<code>log has `main {tid}`</code>"), "{page}");
        // Done when: each item names its steps with links, or says it is not checked.
        for item in &lesson.done_when {
            for name in &item.checked_by {
                assert!(
                    page.contains(&format!("<a href=\"#step-{name}\">")),
                    "{name}"
                );
            }
        }
        assert!(!page.contains("(checked by:"), "{page}");
        // The step blocks themselves are still there for mdBook to render.
        assert_eq!(
            page.matches("```console").count(),
            text.matches("```console").count()
        );
    }
}
