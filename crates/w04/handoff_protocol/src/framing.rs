//! Framing: from a TCP byte stream to request lines.
//!
//! TCP delivers bytes, not messages: one `recv` may return half a line, or forty lines and the
//! start of the forty-first. A [`LineFramer`] keeps the bytes that have arrived and hands out each
//! complete line as soon as its `\n` is in, so a server can treat "bytes arrived" and "a request is
//! complete" as the separate events they are.
//!
//! The rules it enforces, from the protocol:
//!
//! - A line is every byte up to its `\n`; one `\r` right before the `\n` is stripped.
//! - A line longer than [`MAX_LINE_LEN`] bytes (not counting its `\n`) is an error the connection
//!   does not survive. The framer reports it as soon as the pending bytes prove it — it does not
//!   wait for a `\n` that may never come — so a server's memory per connection stays bounded.
//! - At end of input, a final line without its `\n` is still a request ([`LineFramer::finish`]).

/// The longest request line the protocol accepts, in bytes, not counting its `\n`.
///
/// The count is taken on the raw bytes before the `\n`, so a `\r` that ends a line counts: the
/// protocol's limit excludes only the `\n`.
pub const MAX_LINE_LEN: usize = 65_536;

/// What the framer has for the caller next.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete request line: without its `\n`, and without the `\r` before it, if any.
    Line(&'a [u8]),
    /// The pending line is longer than [`MAX_LINE_LEN`]: the server answers
    /// `ERROR: line too long` and closes the connection. The framer reports this once and then
    /// yields nothing more.
    TooLong,
}

/// Accumulates received bytes and hands out complete lines.
///
/// Lines are returned as slices of the framer's own buffer, so framing copies nothing beyond the
/// bytes received; consumed bytes are discarded lazily, when the buffer next needs room. The
/// buffer never holds more than one line over the limit plus one read, because a longer pending
/// line is reported as [`Frame::TooLong`].
#[derive(Debug, Default)]
pub struct LineFramer {
    /// The buffer; every byte of it is initialised, so [`fill_with`](Self::fill_with) can lend
    /// its tail to `recv` without zeroing it again on every call. `buf[consumed..end]` holds the
    /// received bytes not yet handed out; `buf[end..]` is spare room.
    buf: Vec<u8>,
    /// Where the received bytes end.
    end: usize,
    /// How many bytes at the front of `buf` belong to lines already handed out.
    consumed: usize,
    /// How many bytes after `consumed` are known to hold no `\n`, so a line that arrives a
    /// byte at a time is scanned once in total, not once per byte.
    scanned: usize,
    /// Set once the framer has reported [`Frame::TooLong`]; the stream is unusable after it.
    overflowed: bool,
}

impl LineFramer {
    /// Creates an empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Lets `read` write received bytes straight into the framer's buffer, avoiding a copy.
    ///
    /// `read` gets at least `min_spare` bytes of writable space and returns how many it filled
    /// (as `recv` does); its result is passed through.
    ///
    /// ```
    /// use handoff_protocol::{Frame, LineFramer};
    ///
    /// let mut framer = LineFramer::new();
    /// let n = framer
    ///     .fill_with(4096, |spare| {
    ///         spare[..5].copy_from_slice(b"ping\n");
    ///         Ok::<usize, std::io::Error>(5)
    ///     })
    ///     .unwrap();
    /// assert_eq!(n, 5);
    /// assert_eq!(framer.next_frame(), Some(Frame::Line(b"ping")));
    /// ```
    pub fn fill_with<E>(
        &mut self,
        min_spare: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        self.reserve(min_spare);
        let result = read(&mut self.buf[self.end..self.end + min_spare]);
        let got = *result.as_ref().unwrap_or(&0);
        self.end += got.min(min_spare);
        result
    }

    /// Returns the next complete line, [`Frame::TooLong`] once the pending line is over the
    /// limit, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        if self.overflowed {
            return None;
        }
        let pending = &self.buf[self.consumed..self.end];
        match memchr::memchr(b'\n', &pending[self.scanned..]) {
            Some(offset) => {
                let line_len = self.scanned + offset;
                if line_len > MAX_LINE_LEN {
                    self.overflowed = true;
                    return Some(Frame::TooLong);
                }
                let start = self.consumed;
                self.consumed += line_len + 1;
                self.scanned = 0;
                Some(Frame::Line(strip_cr(&self.buf[start..start + line_len])))
            }
            None => {
                self.scanned = pending.len();
                if pending.len() > MAX_LINE_LEN {
                    self.overflowed = true;
                    Some(Frame::TooLong)
                } else {
                    None
                }
            }
        }
    }

    /// At end of input: returns the final line that had no `\n`, if any bytes are left.
    ///
    /// Call it after [`next_frame`](Self::next_frame) has returned `None`. The protocol answers
    /// such a line like any other; no `\r` is stripped from it, because the protocol strips a `\r`
    /// only when it stands right before a `\n`.
    pub fn finish(&mut self) -> Option<Frame<'_>> {
        if self.overflowed || self.consumed == self.end {
            return None;
        }
        let start = self.consumed;
        self.consumed = self.end;
        self.scanned = 0;
        if self.end - start > MAX_LINE_LEN {
            self.overflowed = true;
            return Some(Frame::TooLong);
        }
        Some(Frame::Line(&self.buf[start..self.end]))
    }

    /// Bytes received but not yet handed out as lines.
    pub fn pending_len(&self) -> usize {
        self.end - self.consumed
    }

    /// Makes room for `additional` bytes after the pending ones: first by moving the pending
    /// bytes to the front (dropping the lines already handed out, so the buffer does not grow
    /// with the stream), then, only if that is not enough, by growing the buffer. Only growth
    /// writes zeros, once per new byte.
    fn reserve(&mut self, additional: usize) {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.end, 0);
            self.end -= self.consumed;
            self.consumed = 0;
        }
        if self.buf.len() < self.end + additional {
            self.buf.resize(self.end + additional, 0);
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut LineFramer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = framer.next_frame() {
            match frame {
                Frame::Line(line) => out.push(line.to_vec()),
                Frame::TooLong => out.push(b"<too long>".to_vec()),
            }
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_one_cr() {
        let mut framer = LineFramer::new();
        framer.extend(b"a\nb\r\nc\r\r\n\n");
        assert_eq!(
            lines(&mut framer),
            vec![b"a".to_vec(), b"b".to_vec(), b"c\r".to_vec(), vec![]]
        );
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_lines() {
        let input = b"compute one\r\nping\nfail x y\n";
        let mut framer = LineFramer::new();
        let mut got = Vec::new();
        for byte in input {
            framer.extend(&[*byte]);
            got.extend(lines(&mut framer));
        }
        assert_eq!(
            got,
            vec![
                b"compute one".to_vec(),
                b"ping".to_vec(),
                b"fail x y".to_vec()
            ]
        );
    }

    #[test]
    fn final_line_without_newline_is_returned_by_finish() {
        let mut framer = LineFramer::new();
        framer.extend(b"ping\ncompute last");
        assert_eq!(lines(&mut framer), vec![b"ping".to_vec()]);
        assert_eq!(framer.pending_len(), 12);
        assert_eq!(framer.finish(), Some(Frame::Line(b"compute last")));
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn limit_is_exact() {
        let mut framer = LineFramer::new();
        let mut line = vec![b'x'; MAX_LINE_LEN];
        line.push(b'\n');
        framer.extend(&line);
        assert_eq!(framer.next_frame().map(|f| f != Frame::TooLong), Some(true));

        let mut framer = LineFramer::new();
        framer.extend(&vec![b'x'; MAX_LINE_LEN + 1]);
        assert_eq!(framer.next_frame(), Some(Frame::TooLong));
        assert_eq!(framer.next_frame(), None, "reported once");
    }

    #[test]
    fn too_long_is_reported_without_waiting_for_the_newline() {
        let mut framer = LineFramer::new();
        framer.extend(b"ping\n");
        framer.extend(&vec![b'y'; MAX_LINE_LEN]);
        assert_eq!(lines(&mut framer), vec![b"ping".to_vec()]);
        framer.extend(b"y");
        assert_eq!(framer.next_frame(), Some(Frame::TooLong));
    }

    #[test]
    fn fill_with_keeps_only_what_was_read() {
        let mut framer = LineFramer::new();
        let err = framer.fill_with(16, |_| Err::<usize, &str>("would block"));
        assert_eq!(err, Err("would block"));
        assert_eq!(framer.pending_len(), 0);
        framer
            .fill_with(16, |spare| {
                spare[..3].copy_from_slice(b"a\nb");
                Ok::<_, ()>(3)
            })
            .unwrap();
        assert_eq!(lines(&mut framer), vec![b"a".to_vec()]);
        assert_eq!(framer.pending_len(), 1);
        framer
            .fill_with(16, |spare| {
                spare[..2].copy_from_slice(b"c\n");
                Ok::<_, ()>(2)
            })
            .unwrap();
        assert_eq!(lines(&mut framer), vec![b"bc".to_vec()]);
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn the_buffer_stays_bounded_by_one_line_and_one_read() {
        let mut framer = LineFramer::new();
        for round in 0..1000 {
            framer.extend(format!("compute {round}\n").as_bytes());
            while framer.next_frame().is_some() {}
        }
        assert!(
            framer.buf.len() < 64,
            "the buffer grew with the stream: {}",
            framer.buf.len()
        );
        framer.extend(&[b'x'; MAX_LINE_LEN]);
        framer.extend(b"\n");
        assert!(
            matches!(framer.next_frame(), Some(Frame::Line(line)) if line.len() == MAX_LINE_LEN)
        );
    }
}
