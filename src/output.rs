//! What a worker container prints, as the owner reads it: split into lines,
//! made harmless for logging, kept as a short tail for error messages, and
//! pumped to a sink.
//!
//! A container runs untrusted code, so whatever it prints the owner stays
//! bounded: a line is capped at `MAX_LINE` bytes (the rest is counted, not
//! kept, and a marker says how many bytes were dropped), every byte is looked
//! at once (linear time whatever the shape of the output), the tail is capped
//! in lines and bytes, and terminal escape sequences and control characters
//! never reach Python `logging` as such.
//!
//! `\r` not followed by `\n` acts as on a terminal: what follows overwrites the
//! line, so a progress bar costs one record per finished line, not one per
//! update. `\r\n` ends a line, even split across two chunks.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

use crate::engine::{Output, OutputStream};

/// Longest line kept, in bytes. Long enough for any ready line and for the
/// lines people read; a longer line is truncated with a marker. (Output is
/// split here, not by the line codec: it is cleaned and truncated, not read.)
pub use crate::lines::MAX_LINE;
/// Lines of output kept for error messages.
pub const TAIL_LINES: usize = 40;
/// Bytes of output kept for error messages, all tail lines together.
pub const TAIL_BYTES: usize = 8 * 1024;
/// Longest single line kept in the tail, in bytes.
const TAIL_LINE_BYTES: usize = 1024;
/// Once serving, a pump that read only small pieces (less than `PUMP_SMALL`
/// bytes each on average) waits `PUMP_PAUSE` before reading again. A container
/// that writes many small pieces (a progress bar flushed at every update) then
/// costs the owner one wake-up per batch rather than one per write, and if it
/// writes faster than that, the Engine, held back, sends its writes in larger
/// pieces, which are read without pause. Output is delayed by `PUMP_PAUSE` at
/// most; a flood in large pieces is never paused. A batch reads at most
/// `PUMP_BATCH` bytes, so one busy container cannot hold a runtime thread.
const PUMP_PAUSE: Duration = Duration::from_millis(50);
const PUMP_SMALL: usize = 4096;
const PUMP_BATCH: usize = 256 * 1024;
/// Longest escape sequence removed. Past it the sequence ends and what follows
/// is text again, so a stray ESC cannot hide the rest of the output.
const MAX_ESCAPE: usize = 4096;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// Receives each line a worker container prints: (container name, is stderr, line).
pub type LogSink = Arc<dyn Fn(&str, bool, &str) + Send + Sync>;

/// Where the splitter is inside a terminal escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Plain text.
    None,
    /// Right after ESC.
    Esc,
    /// ESC and intermediate bytes (e.g. `ESC ( B`).
    Intermediate,
    /// A control sequence, `ESC [` parameters final byte.
    Csi,
    /// A string (OSC `ESC ]`, DCS, SOS, PM, APC), ended by BEL or ST (`ESC \`).
    Str,
    /// ESC inside a string: ST if a `\` follows.
    StrEsc,
}

/// Splits one stream (stdout or stderr) into lines, in bytes bounded by
/// `MAX_LINE` whatever arrives.
#[derive(Debug)]
pub struct Splitter {
    /// The current line's first `MAX_LINE` bytes (escape sequences removed).
    line: Vec<u8>,
    /// Bytes of the current line past `MAX_LINE`: counted, never kept.
    dropped: u64,
    /// The last byte was `\r`: a `\n` next ends the line, anything else
    /// overwrites it.
    cr: bool,
    escape: Escape,
    escape_len: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter {
            line: Vec::new(),
            dropped: 0,
            cr: false,
            escape: Escape::None,
            escape_len: 0,
        }
    }
}

impl Splitter {
    /// Take in one chunk; every line it completes goes to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut dyn FnMut(String)) {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.escape != Escape::None && self.escape_step(b) {
                i += 1;
                continue;
            }
            if self.cr {
                self.cr = false;
                if b == b'\n' {
                    self.end_line(out);
                    i += 1;
                    continue;
                }
                // A terminal would write over the line from its start.
                self.line.clear();
                self.dropped = 0;
            }
            // The bulk: a run of text up to the next byte that means something.
            let rest = &bytes[i..];
            let run = memchr::memchr3(b'\n', b'\r', ESC, rest).unwrap_or(rest.len());
            self.push_text(&rest[..run]);
            i += run;
            match bytes.get(i) {
                Some(b'\n') => self.end_line(out),
                Some(b'\r') => self.cr = true,
                Some(_) => {
                    self.escape = Escape::Esc;
                    self.escape_len = 1;
                }
                None => break,
            }
            i += 1;
        }
    }

    /// The stream ended: hand over an unfinished line, if any.
    pub fn finish(&mut self, out: &mut dyn FnMut(String)) {
        self.escape = Escape::None;
        self.cr = false;
        if !self.line.is_empty() || self.dropped > 0 {
            self.end_line(out);
        }
    }

    /// One byte of an escape sequence: whether it belongs to it (`false` ends
    /// the sequence and leaves the byte to be read as text).
    fn escape_step(&mut self, b: u8) -> bool {
        self.escape_len += 1;
        // A newline always ends a sequence, so a broken one costs one line at most.
        if self.escape_len > MAX_ESCAPE || b == b'\n' {
            self.escape = Escape::None;
            return false;
        }
        let (next, consumed) = match (self.escape, b) {
            (Escape::Esc, b'[') => (Escape::Csi, true),
            (Escape::Esc, b']' | b'P' | b'X' | b'^' | b'_') => (Escape::Str, true),
            (Escape::Esc | Escape::Intermediate, 0x20..=0x2f) => (Escape::Intermediate, true),
            (Escape::Esc | Escape::Intermediate, 0x30..=0x7e) => (Escape::None, true),
            (Escape::Csi, 0x20..=0x3f) => (Escape::Csi, true),
            (Escape::Csi, 0x40..=0x7e) => (Escape::None, true),
            (Escape::Str, BEL) => (Escape::None, true),
            (Escape::Str, ESC) => (Escape::StrEsc, true),
            (Escape::Str, _) => (Escape::Str, true),
            (Escape::StrEsc, b'\\') => (Escape::None, true),
            // ESC inside a string ends it and starts a new sequence.
            (Escape::StrEsc, _) => {
                self.escape = Escape::Esc;
                return self.escape_step(b);
            }
            // Anything else: not a sequence after all.
            _ => (Escape::None, false),
        };
        self.escape = next;
        consumed
    }

    fn push_text(&mut self, text: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        let kept = room.min(text.len());
        self.line.extend_from_slice(&text[..kept]);
        self.dropped += (text.len() - kept) as u64;
    }

    fn end_line(&mut self, out: &mut dyn FnMut(String)) {
        let mut line = sanitize(&String::from_utf8_lossy(&self.line)).into_owned();
        if self.dropped > 0 {
            let _ = write!(line, "… [line truncated: {} bytes dropped]", self.dropped);
        }
        self.line.clear();
        self.dropped = 0;
        out(line);
    }
}

/// `text` with every control character but tab replaced by its escape
/// (`\x07`), so a line cannot move a terminal's cursor, ring it, or fake a
/// log line of its own.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut clean = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(clean, "\\x{:02x}", u32::from(c));
        } else {
            clean.push(c);
        }
    }
    Cow::Owned(clean)
}

/// The last lines of output, bounded in lines and bytes, for error messages.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    /// Keep `line` (clipped), forgetting the oldest lines past the bounds.
    pub fn push(&mut self, line: &str) {
        let line = clip(line, TAIL_LINE_BYTES);
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || self.bytes > TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The kept lines, oldest first, one per line.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// At most `max` bytes of `line` (on a character boundary), marked if clipped.
fn clip(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_owned();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [clipped]", &line[..end])
}

/// A container's attached output: split into lines, forwarded to the sink,
/// stdout lines handed to the caller (the ready line is one), a tail kept.
pub struct Lines {
    name: String,
    output: OutputStream,
    sink: Option<LogSink>,
    /// stdout, stderr.
    split: [Splitter; 2],
    /// stdout lines not yet returned by `next_stdout`.
    pending: VecDeque<String>,
    /// Whether stdout lines are queued for `next_stdout` (not once pumping).
    collect: bool,
    tail: Tail,
}

impl Lines {
    /// Read `output` of the container named `name`, each line to `sink`.
    pub fn new(name: String, output: OutputStream, sink: Option<LogSink>) -> Self {
        Lines {
            name,
            output,
            sink,
            split: Default::default(),
            pending: Default::default(),
            collect: true,
            tail: Default::default(),
        }
    }

    /// The next complete stdout line (stderr lines are forwarded and kept in
    /// the tail); `None` once the output ended.
    pub async fn next_stdout(&mut self) -> Option<String> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            let chunk = match self.output.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "container output ended with an error");
                    return self.finish();
                }
                None => return self.finish(),
            };
            match chunk {
                Output::Stdout(b) => self.feed(false, &b),
                Output::Stderr(b) => self.feed(true, &b),
            }
        }
    }

    fn feed(&mut self, stderr: bool, bytes: &[u8]) {
        let Lines {
            name,
            sink,
            split,
            pending,
            collect,
            tail,
            ..
        } = self;
        split[usize::from(stderr)].feed(bytes, &mut |line| {
            deliver(name, sink, tail, pending, *collect, stderr, line)
        });
    }

    fn finish(&mut self) -> Option<String> {
        let Lines {
            name,
            sink,
            split,
            pending,
            collect,
            tail,
            ..
        } = self;
        for stderr in [false, true] {
            split[usize::from(stderr)]
                .finish(&mut |line| deliver(name, sink, tail, pending, *collect, stderr, line));
        }
        pending.pop_front()
    }

    /// Read what is left for a short while (the last words of a dying container).
    pub async fn drain_for(&mut self, d: Duration) {
        let _ =
            tokio::time::timeout(d, async { while self.next_stdout().await.is_some() {} }).await;
    }

    /// The last lines, for an error message.
    pub fn tail(&self) -> String {
        self.tail.text()
    }

    /// Forward the rest of the output until the container's output closes.
    pub async fn pump(mut self) {
        self.collect = false;
        self.pending.clear();
        loop {
            let (mut read, mut pieces) = (0, 0);
            let mut next = self.output.next().await;
            // Everything already received, in one go.
            loop {
                match next {
                    Some(Ok(Output::Stdout(b))) => {
                        (read, pieces) = (read + b.len(), pieces + 1);
                        self.feed(false, &b);
                    }
                    Some(Ok(Output::Stderr(b))) => {
                        (read, pieces) = (read + b.len(), pieces + 1);
                        self.feed(true, &b);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "container output ended with an error");
                        self.finish();
                        return;
                    }
                    None => {
                        self.finish();
                        return;
                    }
                }
                if read >= PUMP_BATCH {
                    break;
                }
                match self.output.next().now_or_never() {
                    Some(item) => next = item,
                    None => break,
                }
            }
            if read < PUMP_SMALL * pieces {
                tokio::time::sleep(PUMP_PAUSE).await;
            }
        }
    }
}

fn deliver(
    name: &str,
    sink: &Option<LogSink>,
    tail: &mut Tail,
    pending: &mut VecDeque<String>,
    collect: bool,
    stderr: bool,
    line: String,
) {
    if let Some(sink) = sink {
        sink(name, stderr, &line);
    }
    tail.push(&line);
    if collect && !stderr {
        pending.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = Splitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            s.feed(chunk, &mut |l| lines.push(l));
        }
        s.finish(&mut |l| lines.push(l));
        lines
    }

    #[test]
    fn lines_end_at_newline_and_at_the_end() {
        assert_eq!(split(&[b"a\nb", b"c\n\nd"]), ["a", "bc", "", "d"]);
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn a_long_line_is_capped_with_a_marker() {
        let big = vec![b'x'; MAX_LINE + 1000];
        let lines = split(&[&big, b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(&"x".repeat(MAX_LINE)));
        assert!(lines[0].ends_with("… [line truncated: 1000 bytes dropped]"));
        assert!(lines[0].len() < MAX_LINE + 64);
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn a_huge_line_without_newline_costs_linear_time_and_bounded_memory() {
        // 256 MiB in 64 KiB chunks: quadratic work would not finish.
        let chunk = vec![b'y'; 64 * 1024];
        let mut s = Splitter::default();
        let mut lines = Vec::new();
        let start = std::time::Instant::now();
        for _ in 0..(4 * 1024) {
            s.feed(&chunk, &mut |l| lines.push(l));
            assert!(s.line.capacity() <= 2 * MAX_LINE);
        }
        s.finish(&mut |l| lines.push(l));
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(lines.len(), 1);
        let dropped = (256u64 << 20) - MAX_LINE as u64;
        assert!(lines[0].ends_with(&format!("[line truncated: {dropped} bytes dropped]")));
    }

    #[test]
    fn carriage_return_overwrites_like_a_terminal() {
        let bar: Vec<u8> = (0..=100)
            .flat_map(|i| format!("\r{i:3}%|{}|", "#".repeat(i / 10)).into_bytes())
            .collect();
        let lines = split(&[&bar, b"\n", b"done\n"]);
        assert_eq!(lines, ["100%|##########|", "done"]);
        // Each chunk boundary, including one between \r and \n.
        let lines = split(&[b"one\r", b"\ntwo\r\n", b"th", b"ree\r", b"\n"]);
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(split(&[b"old\r", b"new\n"]), ["new"]);
        assert_eq!(split(&[b"last\r"]), ["last"]);
    }

    #[test]
    fn escape_sequences_are_removed_even_across_chunks() {
        let lines = split(&[
            b"\x1b[1;31mred\x1b[0m plain\n",
            b"\x1b]0;title\x07text\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\n",
            b"a\x1b[",
            b"32",
            b"mb\x1b(Bc\x1b7d\n",
        ]);
        assert_eq!(lines, ["red plain", "textlink", "abcd"]);
        assert!(lines.iter().all(|l| !l.contains('\x1b')));
    }

    #[test]
    fn a_broken_escape_sequence_ends_at_the_newline() {
        // An OSC never terminated must not swallow the following lines.
        assert_eq!(split(&[b"a\x1b]never ends\nb\n"]), ["a", "b"]);
        let long = [b"\x1b]".as_slice(), &vec![b'z'; MAX_ESCAPE + 10]].concat();
        let lines = split(&[&long]);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("zz"));
    }

    #[test]
    fn control_characters_are_made_visible_but_tab_stays() {
        assert_eq!(
            split(&["a\tb\x07c\x00d\x7fe\u{85}f\n".as_bytes()]),
            ["a\tb\\x07c\\x00d\\x7fe\\x85f"]
        );
        assert_eq!(sanitize("plain"), Cow::Borrowed("plain"));
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        assert_eq!(split(&[b"a\xffb\n"]), ["a\u{fffd}b"]);
    }

    #[tokio::test]
    async fn lines_find_the_ready_line_then_pump_the_rest_to_the_sink() {
        let chunks: Vec<crate::error::Result<Output>> = vec![
            Ok(Output::Stderr(vec![b'e'; 300_000])),
            Ok(Output::Stdout(b"noise\r\nwool-docker re".to_vec())),
            Ok(Output::Stdout(b"ady {}\nafter".to_vec())),
            Ok(Output::Stderr(b"\x1b[31mlast\x1b[0m\n".to_vec())),
        ];
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink: LogSink = {
            let seen = seen.clone();
            Arc::new(move |name: &str, stderr: bool, line: &str| {
                seen.lock()
                    .unwrap()
                    .push((name.to_owned(), stderr, line.to_owned()))
            })
        };
        let output = Box::pin(futures_util::stream::iter(chunks));
        let mut lines = Lines::new("c".into(), output, Some(sink));
        assert_eq!(lines.next_stdout().await.as_deref(), Some("noise"));
        assert_eq!(
            lines.next_stdout().await.as_deref(),
            Some("wool-docker ready {}")
        );
        lines.pump().await;
        let seen = seen.lock().unwrap();
        let text: Vec<(bool, &str)> = seen.iter().map(|(_, e, l)| (*e, l.as_str())).collect();
        assert!(seen.iter().all(|(name, _, _)| name == "c"));
        assert_eq!(
            text[..2],
            [(false, "noise"), (false, "wool-docker ready {}")]
        );
        let dropped = 300_000 + 4 - MAX_LINE;
        assert!(text.contains(&(
            true,
            &*format!(
                "{}… [line truncated: {dropped} bytes dropped]",
                "e".repeat(MAX_LINE)
            )
        )));
        assert!(text.contains(&(false, "after")));
        assert_eq!(text.len(), 4);
    }

    #[test]
    fn tail_is_bounded_in_lines_and_bytes() {
        let mut tail = Tail::default();
        for i in 0..100 {
            tail.push(&format!("line {i}"));
        }
        let text = tail.text();
        assert_eq!(text.lines().count(), TAIL_LINES);
        assert!(text.ends_with("line 99"));

        let mut tail = Tail::default();
        for _ in 0..100 {
            tail.push(&"é".repeat(MAX_LINE));
        }
        let text = tail.text();
        assert!(text.len() <= TAIL_BYTES + TAIL_LINES, "{}", text.len());
        assert!(text.lines().all(|l| l.ends_with("… [clipped]")));
    }
}
