//! `cargo xtask quiz <week>`: the week's self-check, one question at a time.
//!
//! Each week of the course ends with `course/wNN/quiz.md`: multiple-choice and short-answer
//! questions, each with its key and a one-line reason (the format is in `course/FORMAT.md`,
//! section 8). This module parses that file, checks that every question has exactly one key,
//! asks the questions on a terminal (or any reader, which is how the tests drive it), tells the
//! student after each answer whether it was right and why, and appends the attempt's score to
//! `target/xtask/quiz/<week>.jsonl` so progress over attempts stays visible.
//!
//! The file is parsed line by line rather than as markdown: its grammar is four kinds of line
//! (`## N.`, `- x)`, `Answer:`/`Accept:`/`Why:`), and a line-based parser can name the exact line
//! of every mistake a teacher makes while writing one.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::workspace::{target_dir, workspace_root};

/// One week's quiz, as parsed from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quiz {
    /// The file's `#` heading.
    pub(crate) title: String,
    /// The questions, numbered from 1 in file order.
    pub(crate) questions: Vec<Question>,
}

/// One question and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    /// Its number, as written after `## `.
    pub(crate) number: usize,
    /// The question's text: the heading, then any lines before the options or the key.
    pub(crate) prompt: String,
    /// The choices, `(letter, text)`, in order from `a`; empty for a short-answer question.
    pub(crate) options: Vec<(char, String)>,
    /// The key: the right letter, or the model short answer.
    pub(crate) answer: String,
    /// Other short answers that count as right (the `Accept:` line), besides `answer`.
    pub(crate) accepted: Vec<String>,
    /// Why the key is right, in one line.
    pub(crate) why: String,
    /// The line of its heading, for messages.
    pub(crate) line: usize,
}

/// A mistake in a quiz file, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuizFormatError {
    /// 1-based line number.
    pub(crate) line: usize,
    /// What is wrong, and what the format expects there.
    pub(crate) message: String,
}

impl fmt::Display for QuizFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for QuizFormatError {}

fn format_error(line: usize, message: impl Into<String>) -> QuizFormatError {
    QuizFormatError {
        line,
        message: message.into(),
    }
}

/// The question being read, before its key is checked.
#[derive(Debug)]
struct Draft {
    number: usize,
    prompt: String,
    options: Vec<(char, String)>,
    answer: Option<String>,
    accepted: Option<Vec<String>>,
    why: Option<String>,
    line: usize,
}

impl Draft {
    fn set_once(
        slot: &mut Option<String>,
        value: &str,
        key: &str,
        line: usize,
    ) -> Result<(), QuizFormatError> {
        if slot.is_some() {
            return Err(format_error(
                line,
                format!("a second `{key}:` line; each question has exactly one"),
            ));
        }
        if value.is_empty() {
            return Err(format_error(
                line,
                format!("`{key}:` with nothing after it"),
            ));
        }
        *slot = Some(value.to_owned());
        Ok(())
    }

    fn finish(self) -> Result<Question, QuizFormatError> {
        let number = self.number;
        let answer = self.answer.ok_or_else(|| {
            format_error(
                self.line,
                format!("question {number} has no `Answer:` line"),
            )
        })?;
        let why = self.why.ok_or_else(|| {
            format_error(self.line, format!("question {number} has no `Why:` line"))
        })?;
        if self.options.is_empty() {
            return Ok(Question {
                number,
                prompt: self.prompt,
                options: self.options,
                answer,
                accepted: self.accepted.unwrap_or_default(),
                why,
                line: self.line,
            });
        }
        if self.accepted.is_some() {
            return Err(format_error(
                self.line,
                format!(
                    "question {number} has options and an `Accept:` line; `Accept:` is for \
                     short answers only"
                ),
            ));
        }
        if self.options.len() < 2 {
            return Err(format_error(
                self.line,
                format!("question {number} has one option; a choice needs at least two"),
            ));
        }
        let letter = single_letter(&answer)
            .filter(|letter| self.options.iter().any(|(option, _)| option == letter));
        let Some(letter) = letter else {
            let letters: Vec<String> = self.options.iter().map(|(l, _)| l.to_string()).collect();
            return Err(format_error(
                self.line,
                format!(
                    "question {number}: `Answer: {answer}` must be one of its option letters ({})",
                    letters.join(", ")
                ),
            ));
        };
        Ok(Question {
            number,
            prompt: self.prompt,
            options: self.options,
            answer: letter.to_string(),
            accepted: Vec::new(),
            why,
            line: self.line,
        })
    }
}

/// `b`, `b)` or `B` as the letter `b`; anything else is not one letter.
fn single_letter(text: &str) -> Option<char> {
    let text = text.trim().trim_end_matches(')');
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(letter), None) if letter.is_ascii_alphabetic() => Some(letter.to_ascii_lowercase()),
        _ => None,
    }
}

/// Parses a quiz file (the format is in `course/FORMAT.md`, section 8).
pub(crate) fn parse_quiz(text: &str) -> Result<Quiz, QuizFormatError> {
    let mut title: Option<String> = None;
    let mut questions: Vec<Question> = Vec::new();
    let mut draft: Option<Draft> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if let Some(heading) = trimmed.strip_prefix("## ") {
            if let Some(done) = draft.take() {
                questions.push(done.finish()?);
            }
            draft = Some(start_question(heading, line, questions.len() + 1)?);
            continue;
        }
        if let Some(heading) = trimmed.strip_prefix("# ") {
            if title.is_some() || draft.is_some() {
                return Err(format_error(
                    line,
                    "a second `#` heading; the quiz has one title, before its questions",
                ));
            }
            title = Some(heading.trim().to_owned());
            continue;
        }
        let Some(current) = draft.as_mut() else {
            // The introduction, before the first question, is free text.
            continue;
        };
        read_question_line(current, trimmed, line)?;
    }
    if let Some(done) = draft.take() {
        questions.push(done.finish()?);
    }
    let title = title.ok_or_else(|| format_error(1, "no `# ` title line"))?;
    if questions.is_empty() {
        return Err(format_error(
            1,
            "no questions: each starts with a `## 1. ` heading",
        ));
    }
    Ok(Quiz { title, questions })
}

/// `## N. text` starts question N, which must be the next number.
fn start_question(heading: &str, line: usize, expected: usize) -> Result<Draft, QuizFormatError> {
    let (number, prompt) = heading
        .split_once(". ")
        .and_then(|(number, prompt)| Some((number.parse::<usize>().ok()?, prompt)))
        .ok_or_else(|| {
            format_error(
                line,
                format!("a question heading is `## {expected}. <question>`, not `## {heading}`"),
            )
        })?;
    if number != expected {
        return Err(format_error(
            line,
            format!("question {number} should be numbered {expected}: questions count from 1"),
        ));
    }
    Ok(Draft {
        number,
        prompt: prompt.trim().to_owned(),
        options: Vec::new(),
        answer: None,
        accepted: None,
        why: None,
        line,
    })
}

/// One line inside a question: an option, a key line, or more of the question's text.
fn read_question_line(draft: &mut Draft, text: &str, line: usize) -> Result<(), QuizFormatError> {
    if text.is_empty() {
        return Ok(());
    }
    if let Some(value) = text.strip_prefix("Answer:") {
        return Draft::set_once(&mut draft.answer, value.trim(), "Answer", line);
    }
    if let Some(value) = text.strip_prefix("Why:") {
        return Draft::set_once(&mut draft.why, value.trim(), "Why", line);
    }
    if let Some(value) = text.strip_prefix("Accept:") {
        if draft.accepted.is_some() {
            return Err(format_error(line, "a second `Accept:` line"));
        }
        let forms: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|form| !form.is_empty())
            .map(str::to_owned)
            .collect();
        if forms.is_empty() {
            return Err(format_error(line, "`Accept:` with no answers after it"));
        }
        draft.accepted = Some(forms);
        return Ok(());
    }
    if draft.answer.is_some() || draft.why.is_some() {
        return Err(format_error(
            line,
            format!(
                "unexpected text after question {}'s key; the key lines come last",
                draft.number
            ),
        ));
    }
    if let Some(option) = text.strip_prefix("- ") {
        let expected = char::from(b'a' + u8::try_from(draft.options.len()).unwrap_or(25));
        let body = option
            .strip_prefix(expected)
            .and_then(|rest| rest.strip_prefix(") "))
            .ok_or_else(|| {
                format_error(
                    line,
                    format!(
                        "option {} of question {} is `- {expected}) <text>`",
                        draft.options.len() + 1,
                        draft.number
                    ),
                )
            })?;
        draft.options.push((expected, body.trim().to_owned()));
        return Ok(());
    }
    if !draft.options.is_empty() {
        return Err(format_error(
            line,
            format!(
                "unexpected text among question {}'s options; an option is `- x) <text>`",
                draft.number
            ),
        ));
    }
    draft.prompt.push('\n');
    draft.prompt.push_str(text);
    Ok(())
}

/// Lowercase, with every run of characters other than letters, digits and `_` turned into one
/// space: `2, 3, 1, 4`, `2-3-1-4` and `2 3 1 4` all read the same, as do `EAGAIN` and `eagain`.
fn normalize(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Question {
    /// Whether `given` is a right answer: the key's letter for a choice; for a short answer the
    /// key or one of the `Accept:` forms, compared as [`normalize`] reads them.
    pub(crate) fn is_right(&self, given: &str) -> bool {
        if !self.options.is_empty() {
            return single_letter(given).is_some_and(|letter| letter.to_string() == self.answer);
        }
        let given = normalize(given);
        !given.is_empty()
            && std::iter::once(&self.answer)
                .chain(&self.accepted)
                .any(|form| normalize(form) == given)
    }

    /// The key as a student reads it: `b) <the option's text>`, or the short answer.
    pub(crate) fn key_text(&self) -> String {
        self.options
            .iter()
            .find(|(letter, _)| letter.to_string() == self.answer)
            .map_or_else(
                || self.answer.clone(),
                |(letter, text)| format!("{letter}) {text}"),
            )
    }
}

/// One answer of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Given {
    /// The question's number.
    pub(crate) question: usize,
    /// What the student typed (empty when skipped).
    pub(crate) answer: String,
    /// Whether it was right.
    pub(crate) right: bool,
}

/// The outcome of one attempt at a quiz.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Attempt {
    /// The week, `wNN`.
    pub(crate) week: String,
    /// Questions in the quiz.
    pub(crate) total: usize,
    /// Questions answered right.
    pub(crate) right: usize,
    /// Every answer given, in order; fewer than `total` when the input ended early.
    pub(crate) answers: Vec<Given>,
    /// When the attempt ended, in seconds since the Unix epoch.
    pub(crate) finished_unix: u64,
}

/// Asks every question of `quiz` on `output`, reading one answer line each from `input`, and
/// says after each whether it was right and why. An empty line skips a question (it counts as
/// not right); the end of the input ends the attempt early.
pub(crate) fn ask(
    week: &str,
    quiz: &Quiz,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> io::Result<Attempt> {
    writeln!(output, "{}", quiz.title)?;
    writeln!(
        output,
        "{} questions. Type the letter or the short answer, then Enter; Enter alone skips, \
         end of input (Ctrl-D) stops.",
        quiz.questions.len()
    )?;
    let mut answers = Vec::new();
    for question in &quiz.questions {
        writeln!(output)?;
        writeln!(
            output,
            "Question {}/{}: {}",
            question.number,
            quiz.questions.len(),
            question.prompt
        )?;
        for (letter, text) in &question.options {
            writeln!(output, "  {letter}) {text}")?;
        }
        write!(output, "> ")?;
        output.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(output)?;
            writeln!(output, "(input ended: the attempt stops here)")?;
            break;
        }
        let given = line.trim().to_owned();
        let right = question.is_right(&given);
        let verdict = if right {
            "right"
        } else if given.is_empty() {
            "skipped; the answer is "
        } else {
            "not quite; the answer is "
        };
        if right {
            writeln!(output, "{verdict}.")?;
        } else {
            writeln!(output, "{verdict}{}", question.key_text())?;
        }
        writeln!(output, "  why: {}", question.why)?;
        answers.push(Given {
            question: question.number,
            answer: given,
            right,
        });
    }
    let right = answers.iter().filter(|given| given.right).count();
    writeln!(output)?;
    writeln!(output, "score: {right}/{}", quiz.questions.len())?;
    let finished_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    Ok(Attempt {
        week: week.to_owned(),
        total: quiz.questions.len(),
        right,
        answers,
        finished_unix,
    })
}

/// The quiz file of `week` (`course/<week>/quiz.md`).
pub(crate) fn quiz_path(root: &Path, week: &str) -> PathBuf {
    root.join("course").join(week).join("quiz.md")
}

/// Every week that has a quiz, in course order.
pub(crate) fn weeks_with_quiz(root: &Path) -> io::Result<Vec<String>> {
    let mut weeks = Vec::new();
    for entry in std::fs::read_dir(root.join("course"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_week(&name) && entry.path().join("quiz.md").is_file() {
            weeks.push(name);
        }
    }
    weeks.sort();
    Ok(weeks)
}

fn is_week(name: &str) -> bool {
    name.len() == 3 && name.starts_with('w') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Reads and parses the quiz of `week`, naming the file in any error.
pub(crate) fn load(root: &Path, week: &str) -> anyhow::Result<Quiz> {
    let path = quiz_path(root, week);
    let shown = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .display()
        .to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|error| anyhow::anyhow!("cannot read {shown}: {error}"))?;
    parse_quiz(&text).map_err(|error| anyhow::anyhow!("{shown}: {error}"))
}

/// Appends `attempt` as one JSON line to `<dir>/<week>.jsonl` and returns the file, with the
/// number of attempts it now holds and the best score among them.
pub(crate) fn record(dir: &Path, attempt: &Attempt) -> anyhow::Result<(PathBuf, usize, usize)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.jsonl", attempt.week));
    let mut line = serde_json::to_string(attempt)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    file.write_all(line.as_bytes())?;
    let history = std::fs::read_to_string(&path)?;
    let mut attempts = 0;
    let mut best = 0;
    for entry in history.lines() {
        let value: serde_json::Value = serde_json::from_str(entry)?;
        attempts += 1;
        let right = value["right"].as_u64().unwrap_or(0);
        best = best.max(usize::try_from(right).unwrap_or(usize::MAX));
    }
    Ok((path, attempts, best))
}

/// The weeks whose quiz does not parse, each with its file and the mistake, among `weeks`.
pub(crate) fn broken_quizzes(root: &Path, weeks: &[String]) -> Vec<(String, String)> {
    weeks
        .iter()
        .filter(|week| quiz_path(root, week).is_file())
        .filter_map(|week| {
            load(root, week)
                .err()
                .map(|error| (week.clone(), format!("{error:#}")))
        })
        .collect()
}

/// `cargo xtask quiz [<week>] [--check]`: without a week, lists the weeks that have a quiz and
/// the best score so far; with one, asks its questions on stdin and stdout and records the
/// attempt; with `--check`, checks every quiz's format and asks nothing.
pub fn quiz_command(week: Option<&str>, check: bool) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let weeks = weeks_with_quiz(&root)?;
    let records = target_dir(&root).join("xtask/quiz");
    if check {
        return check_command(&root, &weeks);
    }
    let Some(week) = week else {
        list_quizzes(&root, &weeks, &records)?;
        return Ok(ExitCode::SUCCESS);
    };
    if !weeks.iter().any(|known| known == week) {
        eprintln!(
            "error: {week} has no quiz (course/{week}/quiz.md); the weeks with one: {}",
            weeks.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    let quiz = load(&root, week)?;
    let attempt = ask(
        week,
        &quiz,
        &mut io::stdin().lock(),
        &mut io::stdout().lock(),
    )?;
    let (file, attempts, best) = record(&records, &attempt)?;
    println!(
        "recorded in {} (attempt {attempts}; best so far {best}/{})",
        file.strip_prefix(&root).unwrap_or(&file).display(),
        attempt.total
    );
    Ok(ExitCode::SUCCESS)
}

/// `--check`: every quiz parsed, each named with its question count or its first mistake.
fn check_command(root: &Path, weeks: &[String]) -> anyhow::Result<ExitCode> {
    let mut broken = 0;
    for week in weeks {
        match load(root, week) {
            Ok(quiz) => println!(
                "course/{week}/quiz.md: {} questions, each with one key",
                quiz.questions.len()
            ),
            Err(error) => {
                broken += 1;
                println!("{error:#}");
            }
        }
    }
    if broken > 0 {
        eprintln!("{broken} quiz file(s) do not follow course/FORMAT.md, section 8");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The weeks with a quiz, each with its size and the best recorded score.
fn list_quizzes(root: &Path, weeks: &[String], records: &Path) -> anyhow::Result<()> {
    for week in weeks {
        let size = load(root, week).map_or_else(
            |error| format!("does not parse: {error:#}"),
            |quiz| format!("{} questions", quiz.questions.len()),
        );
        let best = best_score(&records.join(format!("{week}.jsonl")));
        println!(
            "{week}  {size}{}",
            best.map_or_else(String::new, |(right, total)| format!(
                ", best so far {right}/{total}"
            ))
        );
    }
    println!("take one with `cargo xtask quiz <week>`, for example `cargo xtask quiz w05`");
    Ok(())
}

/// The best `(right, total)` among the attempts recorded in `file`, if any.
fn best_score(file: &Path) -> Option<(u64, u64)> {
    let history = std::fs::read_to_string(file).ok()?;
    history
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|value| Some((value["right"].as_u64()?, value["total"].as_u64()?)))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Sample quiz\n\nIntro text.\n\n## 1. Which one?\n\n- a) this\n- b) that\n\nAnswer: b\nWhy: because.\n\n## 2. Name the errno.\n\nAnswer: EAGAIN\nAccept: EWOULDBLOCK\nWhy: it means drained.\n";

    #[test]
    fn a_quiz_parses_into_choices_and_short_answers() {
        let quiz = parse_quiz(SAMPLE).unwrap();
        assert_eq!(quiz.title, "Sample quiz");
        assert_eq!(quiz.questions.len(), 2);
        let choice = &quiz.questions[0];
        assert_eq!(
            choice.options,
            vec![('a', "this".into()), ('b', "that".into())]
        );
        assert_eq!(choice.answer, "b");
        assert_eq!(choice.key_text(), "b) that");
        let short = &quiz.questions[1];
        assert!(short.options.is_empty());
        assert_eq!(short.accepted, vec!["EWOULDBLOCK".to_owned()]);
    }

    #[test]
    fn answers_are_checked_by_letter_or_by_normalized_text() {
        let quiz = parse_quiz(SAMPLE).unwrap();
        let (choice, short) = (&quiz.questions[0], &quiz.questions[1]);
        for right in ["b", "B", "b)", " b "] {
            assert!(choice.is_right(right), "{right:?}");
        }
        for wrong in ["a", "", "that", "bb"] {
            assert!(!choice.is_right(wrong), "{wrong:?}");
        }
        for right in ["EAGAIN", "eagain", " EWouldBlock "] {
            assert!(short.is_right(right), "{right:?}");
        }
        for wrong in ["", "EINTR", "eagain eintr"] {
            assert!(!short.is_right(wrong), "{wrong:?}");
        }
        assert_eq!(normalize("2, 3-1 ,4"), "2 3 1 4");
    }

    #[test]
    fn every_key_mistake_is_named_with_its_line() {
        let cases: [(&str, usize, &str); 8] = [
            ("# T\n## 1. Q\n- a) x\n- b) y\nWhy: w\n", 2, "no `Answer:`"),
            ("# T\n## 1. Q\n- a) x\n- b) y\nAnswer: a\n", 2, "no `Why:`"),
            (
                "# T\n## 1. Q\n- a) x\n- b) y\nAnswer: a\nAnswer: b\nWhy: w\n",
                6,
                "a second `Answer:`",
            ),
            (
                "# T\n## 1. Q\n- a) x\n- b) y\nAnswer: c\nWhy: w\n",
                2,
                "must be one of its option letters (a, b)",
            ),
            (
                "# T\n## 1. Q\n- a) x\n- c) y\nAnswer: a\nWhy: w\n",
                4,
                "`- b) <text>`",
            ),
            ("# T\n## 2. Q\nAnswer: a\nWhy: w\n", 2, "numbered 1"),
            (
                "# T\n## 1. Q\n- a) x\n- b) y\nAnswer: a\nAccept: b\nWhy: w\n",
                2,
                "short answers only",
            ),
            (
                "# T\n## 1. Q\nAnswer: a\nWhy: w\nmore\n",
                5,
                "after question 1's key",
            ),
        ];
        for (text, line, message) in cases {
            let error = parse_quiz(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(message), "{text:?}: {error}");
        }
        assert!(
            parse_quiz("# T\nno questions\n")
                .unwrap_err()
                .message
                .contains("no questions")
        );
        assert!(
            parse_quiz("## 1. Q\nAnswer: a\nWhy: w\n")
                .unwrap_err()
                .message
                .contains("title")
        );
    }

    #[test]
    fn an_attempt_asks_every_question_and_scores_it() {
        let quiz = parse_quiz(SAMPLE).unwrap();
        let mut output = Vec::new();
        let attempt = ask(
            "w99",
            &quiz,
            &mut "a\newouldblock\n".as_bytes(),
            &mut output,
        )
        .unwrap();
        let shown = String::from_utf8(output).unwrap();
        assert_eq!(
            (attempt.right, attempt.total, attempt.answers.len()),
            (1, 2, 2)
        );
        assert!(
            shown.contains("Question 1/2: Which one?\n  a) this\n  b) that\n"),
            "{shown}"
        );
        assert!(
            shown.contains("not quite; the answer is b) that\n  why: because."),
            "{shown}"
        );
        assert!(
            shown.contains("right.\n  why: it means drained."),
            "{shown}"
        );
        assert!(shown.contains("score: 1/2"), "{shown}");
    }

    #[test]
    fn an_attempt_stops_where_the_input_ends_and_counts_skips_as_not_right() {
        let quiz = parse_quiz(SAMPLE).unwrap();
        let mut output = Vec::new();
        let attempt = ask("w99", &quiz, &mut "\n".as_bytes(), &mut output).unwrap();
        let shown = String::from_utf8(output).unwrap();
        assert_eq!((attempt.right, attempt.answers.len()), (0, 1));
        assert!(
            shown.contains("skipped; the answer is b) that\n"),
            "{shown}"
        );
        assert!(shown.contains("input ended"), "{shown}");
    }

    #[test]
    fn attempts_are_appended_and_the_best_score_reported() {
        let dir = test_support::TempDir::new("quiz-record");
        let mut attempt = Attempt {
            week: "w99".into(),
            total: 2,
            right: 2,
            answers: Vec::new(),
            finished_unix: 1,
        };
        let (path, attempts, best) = record(dir.path(), &attempt).unwrap();
        assert_eq!((attempts, best), (1, 2));
        attempt.right = 1;
        let (again, attempts, best) = record(dir.path(), &attempt).unwrap();
        assert_eq!((again, attempts, best), (path.clone(), 2, 2));
        assert_eq!(std::fs::read_to_string(path).unwrap().lines().count(), 2);
    }

    #[test]
    fn grade_finds_the_broken_quizzes_of_the_weeks_it_grades() {
        let root = test_support::TempDir::new("quiz-broken");
        for (week, text) in [
            ("w01", "# T\n## 1. Q\n- a) x\n- b) y\nWhy: w\n"),
            ("w02", SAMPLE),
        ] {
            std::fs::create_dir_all(root.path().join("course").join(week)).unwrap();
            std::fs::write(quiz_path(root.path(), week), text).unwrap();
        }
        let weeks: Vec<String> = ["w01", "w02", "w03"].map(String::from).to_vec();
        let broken = broken_quizzes(root.path(), &weeks);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert_eq!(broken[0].0, "w01");
        assert!(
            broken[0]
                .1
                .contains("course/w01/quiz.md: line 2: question 1 has no `Answer:`"),
            "{broken:?}"
        );
        assert_eq!(weeks_with_quiz(root.path()).unwrap(), ["w01", "w02"]);
    }

    /// The course's own quizzes: every week's file parses, every question has one key.
    #[test]
    fn every_quiz_of_the_course_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let weeks = weeks_with_quiz(root).unwrap();
        assert!(weeks.len() >= 5, "{weeks:?}");
        for week in weeks {
            let quiz = load(root, &week).unwrap();
            assert!(
                quiz.questions.len() >= 10,
                "{week}: {} questions",
                quiz.questions.len()
            );
        }
    }
}
