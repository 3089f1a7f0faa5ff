//! Wildcard patterns for expected output and log lines.
//!
//! `[..]` matches any run of characters inside one line, a line that is exactly `...` matches
//! any number of whole lines, and `{tid}` (log patterns only) captures a decimal thread id.
//! Everything else matches itself, byte for byte.

/// One piece of a line pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Bytes that must appear exactly.
    Literal(Vec<u8>),
    /// `[..]`: any bytes, possibly none.
    Any,
    /// `{tid}`: one or more ASCII digits, captured.
    Tid,
}

/// A pattern for one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinePattern {
    source: String,
    pieces: Vec<Piece>,
}

impl LinePattern {
    /// Parses a line pattern; `allow_tid` says whether `{tid}` is a capture or literal text.
    pub fn new(source: &str, allow_tid: bool) -> Self {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut rest = source.as_bytes();
        while !rest.is_empty() {
            if rest.starts_with(b"[..]") {
                flush(&mut literal, &mut pieces);
                pieces.push(Piece::Any);
                rest = &rest[4..];
            } else if allow_tid && rest.starts_with(b"{tid}") {
                flush(&mut literal, &mut pieces);
                pieces.push(Piece::Tid);
                rest = &rest[5..];
            } else {
                literal.push(rest[0]);
                rest = &rest[1..];
            }
        }
        flush(&mut literal, &mut pieces);
        Self {
            source: source.to_owned(),
            pieces,
        }
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has a `{tid}` capture.
    pub fn has_tid(&self) -> bool {
        self.pieces.contains(&Piece::Tid)
    }

    /// Whether `line` matches the whole pattern.
    pub fn matches(&self, line: &[u8]) -> bool {
        self.captures(line).is_some()
    }

    /// Matches `line`; `Some(tid)` on a match, where `tid` is the captured id if there is one.
    pub fn captures(&self, line: &[u8]) -> Option<Option<u64>> {
        match_pieces(&self.pieces, line, None)
    }
}

fn flush(literal: &mut Vec<u8>, pieces: &mut Vec<Piece>) {
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal)));
    }
}

/// Backtracking match; patterns are short, so the cost is small.
fn match_pieces(pieces: &[Piece], line: &[u8], tid: Option<u64>) -> Option<Option<u64>> {
    let Some((first, rest)) = pieces.split_first() else {
        return line.is_empty().then_some(tid);
    };
    match first {
        Piece::Literal(bytes) => line
            .strip_prefix(bytes.as_slice())
            .and_then(|tail| match_pieces(rest, tail, tid)),
        Piece::Any => (0..=line.len()).find_map(|skip| match_pieces(rest, &line[skip..], tid)),
        Piece::Tid => {
            let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
            (1..=digits).rev().find_map(|len| {
                let value = std::str::from_utf8(&line[..len]).ok()?.parse().ok()?;
                match_pieces(rest, &line[len..], Some(value))
            })
        }
    }
}

/// One line of a multi-line expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectLine {
    /// A line that must match this pattern.
    Line(LinePattern),
    /// `...`: any number of lines.
    AnyLines,
}

impl ExpectLine {
    /// Parses one expected line.
    pub fn new(source: &str) -> Self {
        if source == "..." {
            Self::AnyLines
        } else {
            Self::Line(LinePattern::new(source, false))
        }
    }

    /// The line as written.
    pub fn source(&self) -> &str {
        match self {
            Self::Line(pattern) => pattern.source(),
            Self::AnyLines => "...",
        }
    }
}

/// Whether `lines` match `expected` as a whole (every line accounted for).
pub fn lines_match(expected: &[ExpectLine], lines: &[&[u8]]) -> bool {
    // memo[i][j]: whether expected[i..] matches lines[j..]; filled from the end.
    let (rows, cols) = (expected.len() + 1, lines.len() + 1);
    let mut memo = vec![false; rows * cols];
    memo[rows * cols - 1] = true;
    for i in (0..expected.len()).rev() {
        for j in (0..=lines.len()).rev() {
            memo[i * cols + j] = match &expected[i] {
                ExpectLine::AnyLines => {
                    memo[(i + 1) * cols + j] || (j < lines.len() && memo[i * cols + j + 1])
                }
                // The memo first: it rules out most pairs, and a match over a long line is not
                // free (a `KEYS` answer is a quarter of a megabyte).
                ExpectLine::Line(pattern) => {
                    j < lines.len() && memo[(i + 1) * cols + j + 1] && pattern.matches(lines[j])
                }
            };
        }
    }
    memo[0]
}

/// Splits output into lines without their `\n` (and without a `\r` before it).
pub fn split_lines(output: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = output
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .collect();
    if lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(lines: &[&str]) -> Vec<ExpectLine> {
        lines.iter().map(|line| ExpectLine::new(line)).collect()
    }

    #[test]
    fn literal_and_inline_wildcards() {
        let pattern = LinePattern::new("result: [..]", false);
        assert!(pattern.matches(b"result: 12ab"));
        assert!(pattern.matches(b"result: "));
        assert!(!pattern.matches(b"ERROR: overflow"));
        assert!(LinePattern::new("a[..]c[..]e", false).matches(b"abcde"));
        assert!(!LinePattern::new("a[..]c", false).matches(b"abcd"));
    }

    #[test]
    fn tid_captures_digits() {
        let pattern = LinePattern::new("worker {tid} task [..]", true);
        assert_eq!(
            pattern.captures(b"worker 4242 task 7 compute"),
            Some(Some(4242))
        );
        assert_eq!(pattern.captures(b"worker x task 7"), None);
        assert!(pattern.has_tid());
        // Without allow_tid the braces are literal text.
        assert!(LinePattern::new("{tid}", false).matches(b"{tid}"));
    }

    #[test]
    fn any_lines_matches_zero_or_more() {
        let lines: Vec<&[u8]> = vec![b"a", b"b", b"test result: ok. 3 passed", b"c"];
        assert!(lines_match(
            &expect(&["...", "test result: ok. [..]", "..."]),
            &lines
        ));
        assert!(!lines_match(&expect(&["test result: ok. [..]"]), &lines));
        assert!(lines_match(&expect(&["a", "...", "c"]), &lines));
        assert!(lines_match(&expect(&["..."]), &[]));
        assert!(!lines_match(&expect(&["a"]), &[]));
    }

    #[test]
    fn split_lines_strips_line_endings() {
        assert_eq!(split_lines(b"a\r\nb\nc"), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(split_lines(b"a\n"), vec![&b"a"[..]]);
        assert!(split_lines(b"").is_empty());
    }
}
