//! Streaming redaction with a fixed contract: the output depends only on the input bytes,
//! never on how they were split into chunks.
//!
//! How that holds:
//! - Whole lines are redacted as units. A line is held back until its newline arrives (or
//!   [`Stream::finish`]), so a secret split across two reads is seen whole.
//! - A line longer than the window is processed in windows whose positions depend only on
//!   offsets within the line: every window is exactly `window` new bytes, searched together
//!   with `overlap` bytes of history; only bytes that no later match can still reach are
//!   emitted (the last `overlap` bytes wait for the next window).
//! - Past the hard line limit the rest of the line is never emitted: a fixed marker takes its
//!   place (fail closed), and the tail of the emitted part that could begin a secret is
//!   withheld too.
//! - Multi-line private keys (PEM, OpenSSH) are tracked line by line: after a `BEGIN ...
//!   PRIVATE KEY` line every body line is masked until `END`, or until a line that cannot be
//!   key body (a block cut off with no END line).
//! - `::add-mask::VALUE` (GitHub Actions' in-band masking) registers VALUE for every later
//!   byte, and the line itself comes out with VALUE masked.

use std::sync::LazyLock;

use memchr::memmem;

use crate::compile::{known_bytes_fit, Redactor};
use crate::known::KnownValues;
use crate::known::{longest_form, MIN_KNOWN_LEN};
use crate::scan::{write_masked, Counts, Scratch, Span};
use crate::view::view;

const ADD_MASK: &[u8] = b"::add-mask::";
const PRIVATE_KEY: &[u8] = b"PRIVATE KEY";
/// Searchers for the two markers of lines that change a stream's state, built once.
static FIND_MASK: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(ADD_MASK));
static FIND_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(PRIVATE_KEY));
/// A key body longer than this many lines is not a key; stop masking.
const MAX_KEY_LINES: u32 = 1000;
/// Cap on in-band registrations, so a hostile log cannot grow the matchers without bound.
pub const MAX_INBAND_VALUES: usize = 10_000;

/// Per-stream state around a shared [`Redactor`]: line assembly, key-block tracking, in-band
/// masks and counters. One per input stream (a pipe, a file, a child's stderr).
pub struct Stream {
    r: Redactor,
    scratch: Scratch,
    counts: Counts,
    /// `pending[..hist]` was already emitted (context for the next window); the rest is the
    /// unprocessed part of the current line.
    pending: Vec<u8>,
    hist: usize,
    line_len: usize,
    windowed: bool,
    discarding: bool,
    in_key: bool,
    key_lines: u32,
    inband: Vec<Vec<u8>>,
    /// Matchers over consecutive runs of `inband`, the run of `inband_sets[i]` starting at
    /// `inband_starts[i]`; see [`Stream::register`].
    inband_sets: Vec<KnownValues>,
    inband_starts: Vec<usize>,
    /// The most bytes of in-band values: [`crate::MAX_KNOWN_BYTES`] (a field so a test can
    /// stand in a small one).
    inband_budget: usize,
    inband_overlap: usize,
    inband_refused: u64,
    lines: u64,
}

impl Redactor {
    /// A new stream over this redactor.
    pub fn stream(&self) -> Stream {
        Stream {
            r: self.clone(),
            scratch: self.scratch(),
            counts: Counts(vec![0; self.ids().len()]),
            pending: Vec::new(),
            hist: 0,
            line_len: 0,
            windowed: false,
            discarding: false,
            in_key: false,
            key_lines: 0,
            inband: Vec::new(),
            inband_sets: Vec::new(),
            inband_starts: Vec::new(),
            inband_budget: crate::MAX_KNOWN_BYTES,
            inband_overlap: 0,
            inband_refused: 0,
            lines: 0,
        }
    }

    /// Redacts a complete input in one call (the reference the streaming contract is tested
    /// against). Returns the output and the counts.
    pub fn redact_all(&self, input: &[u8]) -> (Vec<u8>, Counts) {
        let mut s = self.stream();
        let mut out = Vec::with_capacity(input.len() + input.len() / 8);
        s.push(input, &mut out);
        s.finish(&mut out);
        (out, s.counts)
    }
}

impl Stream {
    /// Masks so far, per id (see [`Redactor::ids`]).
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The redactor behind this stream.
    pub fn redactor(&self) -> &Redactor {
        &self.r
    }

    /// In-band `::add-mask::` values refused as too short, past [`MAX_INBAND_VALUES`] or past
    /// the bytes a value set may hold (each was still masked on its own line, but not
    /// registered).
    pub fn inband_refused(&self) -> u64 {
        self.inband_refused
    }

    /// Complete lines seen so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// True when no partial line is buffered, so nothing is being held back.
    pub fn at_line_start(&self) -> bool {
        self.pending.is_empty() && !self.windowed && !self.discarding
    }

    /// True when the stream has no state that makes lines depend on earlier lines (no open
    /// key block, no partial line): a caller may then redact whole-line blocks with
    /// [`Redactor::redact_lines`] (passing [`Stream::inband`]) in parallel, provided
    /// [`Stream::changes_state`] is false for each block and no line is over the window.
    pub fn is_stateless(&self) -> bool {
        self.at_line_start() && !self.in_key
    }

    /// True when `lines` hold text that would change a stream's state (a `PRIVATE KEY`
    /// block marker or an `::add-mask::` command), so later lines depend on them and they
    /// must go through [`Stream::push`] in order.
    pub fn changes_state(lines: &[u8]) -> bool {
        FIND_KEY.find(lines).is_some() || FIND_MASK.find(lines).is_some()
    }

    /// The matchers of values registered in-band so far, to pass to
    /// [`Redactor::redact_lines`] when redacting this stream's lines elsewhere.
    pub fn inband(&self) -> &[KnownValues] {
        &self.inband_sets
    }

    /// Adds counts gathered by parallel workers on this stream's behalf.
    pub fn add_counts(&mut self, c: &Counts, lines: u64) {
        self.counts.add(c);
        self.lines += lines;
    }

    /// Feeds a chunk; appends to `out` every line completed by it, redacted (and, for an
    /// over-long line, the windows that became final).
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            if self.at_line_start() {
                let take = self.complete_prefix(data);
                if take > 0 {
                    self.process_lines(&data[..take], out);
                    data = &data[take..];
                    continue;
                }
            }
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.feed_partial(&data[..i], out);
                    self.end_line(true, out);
                    data = &data[i + 1..];
                }
                None => {
                    self.feed_partial(data, out);
                    data = &[];
                }
            }
        }
    }

    /// Ends the input: redacts and appends a last line that had no newline (none is added).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start() {
            self.end_line(false, out);
        }
    }

    /// Length of the longest prefix of `data` made of complete lines, none over the window.
    pub fn complete_prefix(&self, data: &[u8]) -> usize {
        let window = self.r.inner.window;
        let (mut pos, mut end) = (0, 0);
        while pos < data.len() {
            let limit = data.len().min(pos + window + 1);
            match memchr::memrchr(b'\n', &data[pos..limit]) {
                Some(i) => {
                    end = pos + i + 1;
                    pos = end;
                }
                None => break,
            }
        }
        end
    }

    fn overlap(&self) -> usize {
        self.r.inner.overlap.max(self.inband_overlap)
    }

    /// Appends bytes of the current line (no newline among them), processing full windows.
    fn feed_partial(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        let window = self.r.inner.window;
        let max_line = self.r.inner.max_line;
        while !bytes.is_empty() {
            if self.discarding {
                return;
            }
            if self.line_len == max_line {
                self.overflow(out);
                return;
            }
            let room = window - (self.pending.len() - self.hist);
            let n = bytes.len().min(room).min(max_line - self.line_len);
            self.pending.extend_from_slice(&bytes[..n]);
            self.line_len += n;
            bytes = &bytes[n..];
            if self.pending.len() - self.hist == window {
                self.process_window(out);
            }
        }
    }

    /// Redacts the buffered part of an over-long line and emits it up to the last byte that
    /// no later match can reach: everything but the final `overlap` bytes, extended to the end
    /// of any match that starts before that point. Returns the buffer and the commit point.
    fn emit_window(&mut self, out: &mut Vec<u8>) -> (Vec<u8>, usize) {
        let overlap = self.overlap();
        let hay = std::mem::take(&mut self.pending);
        self.scratch.spans.clear();
        self.r
            .find_spans(&mut self.scratch, &hay, &self.inband_sets);
        let c = hay.len() - overlap.min(hay.len() - self.hist);
        let commit = self
            .scratch
            .spans
            .iter()
            .filter(|s| s.start < c)
            .map(|s| s.end)
            .fold(c, usize::max);
        write_masked(
            &self.r.inner,
            &hay,
            &mut self.scratch.spans,
            self.hist,
            commit,
            out,
            &mut self.counts,
        );
        (hay, commit)
    }

    /// Emits the final part of one window; the rest waits, with `overlap` bytes of history.
    fn process_window(&mut self, out: &mut Vec<u8>) {
        let (hay, commit) = self.emit_window(out);
        let keep = self.overlap().min(commit);
        self.pending = hay;
        self.pending.drain(..commit - keep);
        self.hist = keep;
        self.windowed = true;
    }

    /// The line passed the hard limit: emit what is certainly safe (the withheld last
    /// `overlap` bytes may begin a secret that continues past the limit, where it can no
    /// longer be seen whole), then the marker; drop the rest of the line.
    fn overflow(&mut self, out: &mut Vec<u8>) {
        let (mut hay, _) = self.emit_window(out);
        let id = self.r.inner.too_long_id;
        self.r.inner.mask.write(&self.r.inner.ids[id], b"", out);
        self.counts.bump(id as u32);
        hay.clear();
        self.pending = hay;
        self.hist = 0;
        self.discarding = true;
        self.in_key = false;
    }

    /// The current line ended (with a newline, or at end of input).
    fn end_line(&mut self, newline: bool, out: &mut Vec<u8>) {
        if self.discarding {
            if newline {
                out.push(b'\n');
            }
        } else if !self.windowed {
            let mut line = std::mem::take(&mut self.pending);
            if newline {
                line.push(b'\n');
            }
            self.process_lines(&line, out);
            line.clear();
            self.pending = line;
        } else {
            let hay = std::mem::take(&mut self.pending);
            self.scratch.spans.clear();
            self.r
                .find_spans(&mut self.scratch, &hay, &self.inband_sets);
            write_masked(
                &self.r.inner,
                &hay,
                &mut self.scratch.spans,
                self.hist,
                hay.len(),
                out,
                &mut self.counts,
            );
            if newline {
                out.push(b'\n');
            }
            self.pending = hay;
            self.in_key = false;
        }
        self.lines += u64::from(self.discarding || self.windowed);
        self.pending.clear();
        self.hist = 0;
        self.line_len = 0;
        self.windowed = false;
        self.discarding = false;
    }

    /// Redacts whole lines (the last may lack its newline), handling key blocks and in-band
    /// masks, which make a line depend on the lines before it.
    fn process_lines(&mut self, block: &[u8], out: &mut Vec<u8>) {
        self.lines += memchr::memchr_iter(b'\n', block).count() as u64
            + u64::from(block.last().is_some_and(|&b| b != b'\n'));
        let mut pos = 0;
        let mut next_mask = None::<Option<usize>>;
        let mut next_key = None::<Option<usize>>;
        while pos < block.len() {
            if self.in_key {
                let end = line_end(block, pos);
                if self.key_line(&block[pos..end], out) {
                    pos = end;
                }
                continue;
            }
            // Next occurrence of either marker, cached until passed.
            if next_mask.is_some_and(|p| p.is_some_and(|p| p < pos)) {
                next_mask = None;
            }
            if next_key.is_some_and(|p| p.is_some_and(|p| p < pos)) {
                next_key = None;
            }
            let m =
                *next_mask.get_or_insert_with(|| FIND_MASK.find(&block[pos..]).map(|i| pos + i));
            let k = *next_key.get_or_insert_with(|| FIND_KEY.find(&block[pos..]).map(|i| pos + i));
            let Some(hit) = m.into_iter().chain(k).min() else {
                self.plain(&block[pos..], out);
                break;
            };
            let ls = memchr::memrchr(b'\n', &block[pos..hit]).map_or(pos, |i| pos + i + 1);
            if ls > pos {
                self.plain(&block[pos..ls], out);
            }
            let le = line_end(block, hit);
            self.special_line(&block[ls..le], out);
            pos = le;
        }
    }

    fn plain(&mut self, lines: &[u8], out: &mut Vec<u8>) {
        self.r.redact_lines(
            &mut self.scratch,
            lines,
            &self.inband_sets,
            out,
            &mut self.counts,
        );
    }

    /// Redacts one line with an extra span to mask.
    fn line_with(&mut self, line: &[u8], extra: Option<Span>, out: &mut Vec<u8>) {
        self.scratch.spans.clear();
        self.r
            .find_spans(&mut self.scratch, line, &self.inband_sets);
        self.scratch.spans.extend(extra);
        write_masked(
            &self.r.inner,
            line,
            &mut self.scratch.spans,
            0,
            line.len(),
            out,
            &mut self.counts,
        );
    }

    /// A line holding `::add-mask::` or `PRIVATE KEY`.
    fn special_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let mut extra = None;
        if let Some(i) = FIND_MASK.find(line) {
            let start = i + ADD_MASK.len();
            let end = trim_end(line, start);
            if end > start {
                let value = &line[start..end];
                if value.len() < MIN_KNOWN_LEN || !self.register(value) {
                    self.inband_refused += 1;
                }
                // Masked on this line even when not registered: it was meant secret.
                extra = Some(Span {
                    start,
                    end,
                    id: self.r.inner.known_id as u32,
                });
            }
        }
        let opens_key = memmem::find(line, b"-----BEGIN").is_some_and(|b| {
            let rest = &line[b..];
            memmem::find(rest, PRIVATE_KEY).is_some() && memmem::find(rest, b"-----END").is_none()
        });
        self.line_with(line, extra, out);
        if opens_key {
            self.in_key = true;
            self.key_lines = 0;
        }
    }

    /// Registers an in-band value; false when it would take the values past
    /// [`MAX_INBAND_VALUES`] or past the bytes a value set may hold ([`crate::MAX_KNOWN_BYTES`],
    /// as for values given at start-up: their forms are indexed with 32-bit offsets).
    ///
    /// The values are indexed in runs whose lengths are distinct powers of two, longest
    /// first, like the bits of a binary counter: a new value forms a run of one, which merges
    /// with the run before it while that is no longer. So each value is indexed about
    /// log2(n) times over n registrations, and a line is searched by at most that many
    /// matchers. (One matcher rebuilt over all values at every registration made 3000
    /// `::add-mask::` lines take 6.5 s.)
    fn register(&mut self, value: &[u8]) -> bool {
        if self.inband.iter().any(|v| v == value) {
            return true;
        }
        if self.inband.len() >= MAX_INBAND_VALUES {
            return false;
        }
        let bytes: usize = self.inband.iter().map(Vec::len).sum();
        if bytes + value.len() > self.inband_budget || !known_bytes_fit(bytes + value.len()) {
            return false;
        }
        self.inband.push(value.to_vec());
        self.inband_overlap = self.inband_overlap.max(longest_form(value.len()) + 8);
        // The runs the new one absorbs: from `runs` on.
        let (mut start, mut runs) = (self.inband.len() - 1, self.inband_starts.len());
        while runs > 0 && start - self.inband_starts[runs - 1] <= self.inband.len() - start {
            runs -= 1;
            start = self.inband_starts[runs];
        }
        // (`None` cannot happen, registered values being at least `MIN_KNOWN_LEN` bytes long;
        // the runs are replaced only by a matcher that covers them.)
        let Some(k) = KnownValues::new(self.inband[start..].iter().map(|v| v.as_slice())) else {
            self.inband.pop();
            return false;
        };
        self.inband_starts.truncate(runs);
        self.inband_sets.truncate(runs);
        self.inband_starts.push(start);
        self.inband_sets.push(k);
        true
    }

    /// A line inside a key block. Returns false when the line cannot be key body: the block
    /// has ended (cut off with no END line) and the line must be processed normally.
    fn key_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> bool {
        let mut vbuf = std::mem::take(&mut self.scratch.view_buf);
        let v = view(line, &mut vbuf);
        let body_end = trim_end(v, 0);
        let result = if let Some(e) = memmem::find(v, b"-----END") {
            // Body glued to the END marker (`...Zw==-----END`) is masked; text separated from
            // it by a blank is the line's prefix (a CI timestamp), not key material.
            let start = b64_run_start(v, e);
            self.in_key = false;
            Some((start < e).then_some((start, e)))
        } else if body_end == 0 || is_key_header(&v[..body_end]) {
            Some(None)
        } else {
            let start = b64_run_start(v, body_end);
            let run = &v[start..body_end];
            let looks_like_body = run.len() >= 16
                || (!run.is_empty()
                    && (run.iter().any(|b| b.is_ascii_digit() || b"+/=".contains(b))
                        || (run.iter().any(u8::is_ascii_uppercase)
                            && run.iter().any(u8::is_ascii_lowercase))));
            if looks_like_body && self.key_lines < MAX_KEY_LINES {
                self.key_lines += 1;
                Some(Some((start, body_end)))
            } else {
                self.in_key = false;
                None
            }
        };
        self.scratch.view_buf = vbuf;
        match result {
            None => false,
            Some(span) => {
                let extra = span.map(|(start, end)| Span {
                    start,
                    end,
                    id: self.r.inner.pem_id as u32,
                });
                self.line_with(line, extra, out);
                true
            }
        }
    }
}

fn line_end(block: &[u8], at: usize) -> usize {
    memchr::memchr(b'\n', &block[at..]).map_or(block.len(), |i| at + i + 1)
}

/// End of `s[from..]` without trailing newline, CR and blanks.
fn trim_end(s: &[u8], from: usize) -> usize {
    let mut end = s.len();
    while end > from && matches!(s[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    end
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// Start of the run of base64 characters ending at `end`.
fn b64_run_start(v: &[u8], end: usize) -> usize {
    let mut start = end;
    while start > 0 && is_b64(v[start - 1]) {
        start -= 1;
    }
    start
}

fn is_key_header(line: &[u8]) -> bool {
    [&b"Proc-Type:"[..], b"DEK-Info:", b"Comment:"]
        .iter()
        .any(|h| memmem::find(line, h).is_some())
}

#[cfg(test)]
mod tests {
    /// An in-band value past the byte budget is masked on its own line, counted as refused,
    /// and not registered (its forms' offsets would not fit the index).
    #[test]
    fn inband_values_past_the_byte_budget_are_refused() {
        let r = crate::RedactorBuilder::new().build().unwrap();
        for budget in [64, crate::MAX_KNOWN_BYTES] {
            let mut s = r.stream();
            // Stands in for values registered earlier (not indexed, to keep the test small);
            // the small budget lets the value be indexed, and found, if it were registered.
            s.inband_budget = budget;
            s.inband.push(vec![b'x'; budget - 4]);
            let mut out = Vec::new();
            s.push(
                b"::add-mask::budget-secret-1\nsay budget-secret-1\n",
                &mut out,
            );
            let out = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(s.inband_refused(), 1);
            assert!(!lines[0].contains("budget-secret-1"), "{out}");
            assert!(lines[1].contains("budget-secret-1"), "{out}");
            assert!(s.inband().is_empty());
        }
    }

    /// The value past the cap on in-band values is masked on its line and counted as
    /// refused, not silently dropped.
    #[test]
    fn inband_values_past_the_cap_are_refused() {
        let r = crate::RedactorBuilder::new().build().unwrap();
        let mut s = r.stream();
        // Stand in for values registered earlier (not indexed, to keep the test small).
        s.inband = (0..super::MAX_INBAND_VALUES)
            .map(|i| format!("earlier-{i:06}").into_bytes())
            .collect();
        let mut out = Vec::new();
        s.push(b"::add-mask::cap-secret-1\nsay cap-secret-1\n", &mut out);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(s.inband_refused(), 1);
        assert!(!lines[0].contains("cap-secret-1"), "{out}");
        assert!(lines[1].contains("cap-secret-1"), "{out}");
        // A value registered before is not refused again.
        s.push(b"::add-mask::earlier-000007\n", &mut Vec::new());
        assert_eq!(s.inband_refused(), 1);
    }

    /// Values registered one by one are indexed in runs of distinct powers of two, longest
    /// first, and every one stays masked, at every count up to 70.
    #[test]
    fn inband_runs_follow_a_binary_counter() {
        let r = crate::RedactorBuilder::new().build().unwrap();
        let mut s = r.stream();
        let mut out = Vec::new();
        for n in 1..=70usize {
            s.push(
                format!("::add-mask::zq-inband-{n:04}\n").as_bytes(),
                &mut out,
            );
            let sizes: Vec<usize> = s
                .inband_starts
                .iter()
                .zip(s.inband_starts.iter().skip(1).chain([&n]))
                .map(|(a, b)| b - a)
                .collect();
            let want: Vec<usize> = (0..usize::BITS)
                .rev()
                .map(|b| 1 << b)
                .filter(|&b| n & b != 0)
                .collect();
            assert_eq!(sizes, want, "after {n}");
            assert_eq!(s.inband().len(), want.len());
        }
        out.clear();
        let said: String = (1..=70)
            .map(|n| format!("say zq-inband-{n:04}\n"))
            .collect();
        s.push(said.as_bytes(), &mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("zq-inband"), "{out}");
        assert_eq!(out.lines().count(), 70);
    }
}
