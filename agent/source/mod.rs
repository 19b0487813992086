//! Sources: where lines come from, redacted as soon as they are read.
//!
//! A source turns what it reads into [`Block`]s: the events (canonical NDJSON, already
//! redacted) of the complete lines of one read, the masks counted while redacting them, and
//! the position to checkpoint once the block is durable. Raw bytes never leave a source: the
//! redaction runs on the blocking pool right after the read, one engine `Stream` per input.

pub mod file;
pub mod stdin;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use logveil_patterns::{Redactor, Stream};
use tokio::sync::{mpsc, watch};

use crate::checkpoint::FileEntry;
use crate::event::{EventEncoder, Origin};
use crate::pipeline::{stopped, Activity};

/// Input bytes handled per read.
pub const READ_CHUNK: usize = 64 * 1024;

/// What every source task shares.
#[derive(Clone)]
pub struct Ctx {
    /// The engine.
    pub redactor: Redactor,
    /// Host and job for events.
    pub origin: Origin,
    /// Into the batcher.
    pub tx: mpsc::Sender<Block>,
    /// Becomes true when sources must stop.
    pub stop: watch::Receiver<bool>,
    /// Idle detection.
    pub activity: Arc<Activity>,
    /// Lines per block at most (the batch's `max_events`).
    pub max_block_events: u64,
    /// The next free lineage id.
    pub lineages: Arc<AtomicU64>,
}

impl Ctx {
    /// A fresh lineage id.
    pub fn new_lineage(&self) -> u64 {
        self.lineages.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a block unless the sources are told to stop first. A block that is not sent is
    /// not lost: its lines are past the checkpoint and are read again on the next start.
    pub async fn send(&self, block: Block) -> bool {
        let mut stop = self.stop.clone();
        self.activity.block_sent();
        tokio::select! {
            biased;
            r = self.tx.send(block) => r.is_ok(),
            _ = stopped(&mut stop) => false,
        }
    }
}

/// What to record once the block holding it is durable.
#[derive(Clone, Debug)]
pub struct Position {
    /// The logical file (see `source::file`): stable across restarts while the checkpoint
    /// file lives; carried over to a copy after copytruncate.
    pub lineage: u64,
    /// Identity and offset of the file after this block's last line.
    pub entry: FileEntry,
}

/// Redacted events of one read.
#[derive(Debug, Default)]
pub struct Block {
    /// Canonical NDJSON of the events.
    pub payload: Vec<u8>,
    /// Number of events (lines).
    pub events: u64,
    /// When the lines were read.
    pub ts: String,
    /// Masks per engine id while redacting these lines (empty when none).
    pub counts: Vec<u64>,
    /// File position after these lines.
    pub position: Option<Position>,
    /// A file that has ended (rotated away or deleted and read to its end): forget its
    /// checkpoint once everything before this block is durable.
    pub forget: Option<u64>,
}

/// One input's redaction state: the engine stream and the bookkeeping that ties each output
/// line back to the byte offset of its input line.
pub struct LineRedactor {
    stream: Stream,
    out: Vec<u8>,
    /// Output of the current line so far (only for a line longer than the engine's window,
    /// whose final parts come out before its end; already redacted).
    partial: Vec<u8>,
    line_start: u64,
    pos: u64,
    reported: Vec<u64>,
}

impl LineRedactor {
    /// A redactor for an input read from byte `start` on.
    pub fn new(r: &Redactor, start: u64) -> LineRedactor {
        LineRedactor {
            stream: r.stream(),
            out: Vec::new(),
            partial: Vec::new(),
            line_start: start,
            pos: start,
            reported: vec![0; r.ids().len()],
        }
    }

    /// Offset just after the last complete line: where to resume after a restart.
    pub fn line_start(&self) -> u64 {
        self.line_start
    }

    /// Offset just after the bytes pushed so far.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Redacts `input` (the bytes at [`Self::pos`]) and encodes every line it completes.
    pub fn push(&mut self, input: &[u8], enc: &EventEncoder, block: &mut Block) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.stream.push(input, &mut out);
        let base = self.pos;
        let mut ends = memchr::memchr_iter(b'\n', input).map(|i| base + i as u64 + 1);
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &out) {
            // The engine keeps lines 1:1; should that ever fail, offsets stay monotonic and
            // the line is still the engine's output.
            let end = ends.next().unwrap_or(self.line_start);
            let end = end.max(self.line_start);
            if self.partial.is_empty() {
                enc.encode(self.line_start, &out[start..nl], &mut block.payload);
            } else {
                self.partial.extend_from_slice(&out[start..nl]);
                enc.encode(self.line_start, &self.partial, &mut block.payload);
                self.partial.clear();
            }
            block.events += 1;
            self.line_start = end;
            start = nl + 1;
        }
        self.partial.extend_from_slice(&out[start..]);
        self.pos += input.len() as u64;
        self.out = out;
    }

    /// Ends the input: an unterminated last line becomes an event.
    pub fn finish(&mut self, enc: &EventEncoder, block: &mut Block) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.stream.finish(&mut out);
        self.partial.extend_from_slice(&out);
        if self.pos > self.line_start || !self.partial.is_empty() {
            enc.encode(self.line_start, &self.partial, &mut block.payload);
            block.events += 1;
            self.partial.clear();
            self.line_start = self.pos;
        }
        self.out = out;
    }

    /// Masks counted since the last call (empty when none).
    pub fn take_counts(&mut self) -> Vec<u64> {
        let now = &self.stream.counts().0;
        if now.len() > self.reported.len() {
            self.reported.resize(now.len(), 0);
        }
        if now.iter().zip(&self.reported).all(|(a, b)| a == b) {
            return Vec::new();
        }
        let delta = now.iter().zip(&self.reported).map(|(a, b)| a - b).collect();
        self.reported.clone_from(now);
        delta
    }
}

/// A block of this input's lines from `input`, for sources that read whole chunks.
pub fn redact_block(
    lr: &mut LineRedactor,
    input: &[u8],
    origin: &Origin,
    source: &str,
    finish: bool,
) -> Block {
    let ts = crate::event::now_rfc3339();
    let enc = EventEncoder::new(&ts, origin, source);
    let mut block = Block {
        payload: Vec::with_capacity(input.len() + input.len() / 2),
        ts,
        ..Block::default()
    };
    lr.push(input, &enc, &mut block);
    if finish {
        lr.finish(&enc, &mut block);
    }
    // Masks inside an over-long line that has not ended yet count with the block that
    // completes it.
    if block.events > 0 {
        block.counts = lr.take_counts();
    }
    crate::metrics::global().read(input.len() as u64, block.events);
    block
}

/// Position of the `n`-th newline in `buf`.
pub fn nth_newline(buf: &[u8], n: u64) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).nth(n.checked_sub(1)? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logveil_patterns::RedactorBuilder;

    fn events(block: &Block) -> Vec<(u64, String)> {
        std::str::from_utf8(&block.payload)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["offset"].as_u64().unwrap(),
                    v["line"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn offsets_follow_input_lines_across_chunks() {
        let r = RedactorBuilder::new().build().unwrap();
        let o = Origin {
            host: "h".into(),
            job: None,
        };
        let mut lr = LineRedactor::new(&r, 100);
        let b1 = redact_block(&mut lr, b"one\ntw", &o, "f", false);
        assert_eq!(events(&b1), vec![(100, "one".to_string())]);
        assert_eq!(lr.line_start(), 104);
        let b2 = redact_block(&mut lr, b"o\n\nthree", &o, "f", false);
        assert_eq!(
            events(&b2),
            vec![(104, "two".to_string()), (108, String::new())]
        );
        assert_eq!(lr.line_start(), 109);
        let b3 = redact_block(&mut lr, b"", &o, "f", true);
        assert_eq!(events(&b3), vec![(109, "three".to_string())]);
        assert_eq!(lr.line_start(), 114);
    }

    #[test]
    fn over_long_line_fails_closed_and_counts() {
        let mut b = RedactorBuilder::new();
        b.window(4096).max_line_bytes(4096);
        let r = b.build().unwrap();
        let o = Origin {
            host: "h".into(),
            job: None,
        };
        let mut lr = LineRedactor::new(&r, 0);
        let n = r.max_line_bytes() * 3;
        let mut long = vec![b'x'; n];
        long.extend_from_slice(b"SECRETSECRET\nnext\n");
        let mut all = Vec::new();
        let mut counts = vec![0u64; r.ids().len()];
        for chunk in long.chunks(10_000) {
            let bl = redact_block(&mut lr, chunk, &o, "f", false);
            all.extend(events(&bl));
            for (c, d) in counts.iter_mut().zip(&bl.counts) {
                *c += d;
            }
        }
        assert_eq!(all.len(), 2);
        assert!(
            all[0].1.ends_with("[REDACTED:line-too-long]"),
            "{}",
            all[0].1.len()
        );
        assert!(all[0].1.len() <= r.max_line_bytes() + 30);
        assert!(!all[0].1.contains("SECRET"));
        assert_eq!(all[1], (n as u64 + 13, "next".to_string()));
        let id = r.ids().iter().position(|i| i == "line-too-long").unwrap();
        assert_eq!(counts[id], 1);
    }
}
