//! The stdin → stdout filter loop (synchronous: std I/O plus scoped threads).
//!
//! Latency: after every read that leaves the input momentarily empty, whatever complete
//! lines are buffered are redacted and written at once, so a live CI log never waits in a
//! buffer. Throughput: while input keeps coming, reads accumulate up to a large block that is
//! split at newlines and redacted on all threads, with output kept in order. Both paths give
//! the same bytes: the parallel path is used only where no line depends on an earlier one.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use logveil_patterns::{Counts, KnownValues, Plan, Redactor, Scratch, Stream};

/// Largest block read before redacting (bigger blocks amortise thread hand-offs).
const BLOCK: usize = 4 << 20;
/// The same with one thread: a block each pass reads in turn, which should stay in the L2
/// cache (1 MiB here) beside the passes' tables and the known values' filter. 256 KiB against
/// 1 MiB, 20 interleaved runs over the 64 MiB bench log: 208 against 226 ms (median), and
/// with 10k known values 272 against 296 ms.
const SINGLE_BLOCK: usize = 256 << 10;
/// Chunks of a parallel block per thread (see [`parallel`]). At the end of a block one
/// thread waits for the other's last chunk: 8 per thread (256 KiB chunks with 2 threads)
/// took 0.95 s over the 512 MiB bench log where 32 took 0.91 s (medians of 9 interleaved
/// runs); 64 were no better than 32.
const CHUNKS_PER_THREAD: usize = 32;
/// Below this, splitting over threads costs more than it saves.
const PARALLEL_MIN: usize = 256 << 10;

/// Where a filter run failed: reading (exit 1) or writing (exit 0 on a broken pipe).
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Reading the input failed; the unread rest was not emitted.
    #[error("reading input: {0}")]
    Read(io::Error),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(io::Error),
}

/// What a finished run saw.
#[derive(Debug, Default)]
pub struct FilterSummary {
    /// Masks per id.
    pub counts: Counts,
    /// Lines processed.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// In-band mask values refused as too short.
    pub inband_refused: u64,
}

/// True when a read on `fd` would not block within `wait_ms` (a regular file is always
/// ready).
fn input_ready(fd: RawFd, wait_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, wait_ms) };
    r != 0
}

/// Asks for a 1 MiB pipe buffer when the input is a pipe, so a fast writer hands over large
/// blocks (the default 64 KiB keeps every block too small to split across threads). Failure
/// (not a pipe, over the system limit) changes nothing.
fn widen_pipe(fd: RawFd) {
    // SAFETY: fcntl on our own descriptor; F_SETPIPE_SZ only resizes a pipe's buffer.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Input read ahead while the worker threads redact a block.
#[derive(Default)]
struct ReadAhead {
    /// Read into directly; sized on first use (a block at most).
    buf: Vec<u8>,
    /// Bytes kept free at the front of `buf` (see [`ReadAhead::fill`]).
    front: usize,
    len: usize,
    eof: bool,
    err: Option<io::Error>,
}

impl ReadAhead {
    /// Reads what is available now, up to `max` bytes in all, without ever blocking: a
    /// block's output must not wait for input that has not arrived. The first `front` bytes
    /// of the buffer are left free for the unfinished line of the block being redacted, so
    /// that the buffers can then be swapped instead of copying what was read.
    fn fill<R: Read>(&mut self, input: &mut R, fd: RawFd, front: usize, max: usize) {
        if self.buf.len() < front + max {
            self.buf.resize(front + max, 0);
        }
        self.front = front;
        while !self.eof && self.err.is_none() && self.len < max && input_ready(fd, 0) {
            let at = front + self.len;
            match input.read(&mut self.buf[at..front + max]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.err = Some(e),
            }
        }
    }

    /// Moves what was read behind the `kept` unfinished bytes at the end of `buf[..filled]`
    /// by swapping buffers (the read went to `front`, which was `kept`); returns the new
    /// fill. Copies instead when nothing was read or the front does not fit.
    fn swap_into(&mut self, buf: &mut Vec<u8>, filled: usize, kept: usize) -> usize {
        let n = std::mem::take(&mut self.len);
        if n > 0 && self.front == kept && self.buf.len() == buf.len() {
            self.buf[..kept].copy_from_slice(&buf[filled - kept..filled]);
            std::mem::swap(&mut self.buf, buf);
            kept + n
        } else {
            buf.copy_within(filled - kept..filled, 0);
            buf[kept..kept + n].copy_from_slice(&self.buf[self.front..self.front + n]);
            kept + n
        }
    }
}

/// Redacts `input` to `output` until end of input.
pub fn run<R: Read + AsRawFd, W: Write>(
    redactor: &Redactor,
    input: &mut R,
    mut output: W,
    threads: usize,
) -> Result<FilterSummary, FilterError> {
    let threads = threads.max(1);
    let fd = input.as_raw_fd();
    if threads > 1 {
        widen_pipe(fd);
    }
    let mut stream = redactor.stream();
    let mut scratches: Vec<Scratch> = (0..threads).map(|_| redactor.scratch()).collect();
    let mut buf = vec![0u8; if threads > 1 { BLOCK } else { SINGLE_BLOCK }];
    let mut out = Vec::with_capacity(buf.len() + buf.len() / 4);
    let mut parts = Parts::default();
    let mut ahead = ReadAhead::default();
    let mut filled = 0;
    let mut bytes = 0u64;
    let mut eof = false;
    // Whether the last round's workers read input ahead (it is already in `buf`).
    let mut fresh = false;
    loop {
        eof |= ahead.eof;
        let mut read_err = ahead.err.take();
        // With fresh data in hand, only read what is already there: the complete lines
        // must go out now. Otherwise block for input as usual.
        let mut may_block = !fresh;
        while !eof && read_err.is_none() && filled < buf.len() {
            if !may_block && !input_ready(fd, 0) {
                break;
            }
            match input.read(&mut buf[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => {
                    filled += n;
                    bytes += n as u64;
                    // A read of 64 KiB or more means a backlog: wait up to 1 ms for the
                    // writer to refill before redacting a block too small for the threads.
                    // A live log (small reads) is redacted the moment input pauses.
                    let wait = if n >= 64 << 10 && filled < PARALLEL_MIN {
                        1
                    } else {
                        0
                    };
                    if !input_ready(fd, wait) {
                        break;
                    }
                    may_block = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => read_err = Some(e),
            }
        }
        let full = filled == buf.len();
        // A read error ends the input like EOF, except that the stream is not finished:
        // lines already complete are safe to emit, a partial line is withheld.
        let final_round = eof || read_err.is_some();
        let kept = {
            let mut read_ahead = |front: usize, max: usize| {
                if !final_round {
                    ahead.fill(input, fd, front, max);
                }
            };
            process(
                redactor,
                &mut stream,
                &mut scratches,
                &buf[..filled],
                (&mut out, &mut parts),
                (final_round, full),
                &mut read_ahead,
            )
        };
        if let Some(e) = read_err {
            let _ = output.write_all(&out);
            return Err(FilterError::Read(e));
        }
        if eof {
            stream.finish(&mut out);
        }
        if !out.is_empty() || parts.done > 0 {
            // Clean text of the parts goes out straight from the input buffer (before it
            // is reused), between what came before the block and the stream's tail.
            let done = std::mem::take(&mut parts.done);
            let block = &buf[parts.base..];
            let slices = parts.list[..done]
                .iter()
                .flat_map(|p| p.plan.slices(&block[p.text.clone()]));
            let all = std::iter::once(&out[..])
                .chain(slices)
                .chain(std::iter::once(&parts.tail[..]));
            write_all_slices(&mut output, all).map_err(FilterError::Write)?;
            output.flush().map_err(FilterError::Write)?;
            out.clear();
            parts.tail.clear();
        }
        // The unfinished line moves to the front, then what was read ahead follows it.
        let refilled = ahead.swap_into(&mut buf, filled, kept);
        fresh = refilled > kept;
        bytes += (refilled - kept) as u64;
        filled = refilled;
        if eof {
            break;
        }
    }
    Ok(FilterSummary {
        counts: stream.counts().clone(),
        lines: stream.lines(),
        bytes,
        inband_refused: stream.inband_refused(),
    })
}

/// Redacts what can be redacted now; returns how many trailing bytes of `data` it left for
/// the next round. A partial last line stays in our buffer rather than in the stream, so
/// the stream stays at a line start and the next big block can go parallel; only a line
/// that fills the whole buffer goes to the stream, which holds it until its end (redacting
/// it in windows once it passes the window size).
///
/// Output goes to `out`, then (when `parts.done` > 0) to the parts and then `parts.tail`,
/// in that order.
/// `(final_round, buffer_full)`: input ended / the buffer is full. `read_ahead(front, max)`
/// is called on this thread while worker threads redact a block, with the length of this
/// round's unfinished line (`front`) and the room the buffer will have for input after it.
fn process(
    redactor: &Redactor,
    stream: &mut Stream,
    scratches: &mut [Scratch],
    mut data: &[u8],
    (out, parts): (&mut Vec<u8>, &mut Parts),
    (final_round, buffer_full): (bool, bool),
    read_ahead: &mut dyn FnMut(usize, usize),
) -> usize {
    let whole = data;
    if final_round {
        stream.push(data, out);
        return 0;
    }
    // Finish a line the stream is in the middle of (an over-long one) first.
    if !stream.at_line_start() {
        match memchr::memchr(b'\n', data) {
            Some(i) => {
                stream.push(&data[..=i], out);
                data = &data[i + 1..];
            }
            None => {
                stream.push(data, out);
                return 0;
            }
        }
    }
    let take = stream.complete_prefix(data);
    if take == 0 {
        if buffer_full {
            stream.push(data, out);
            return 0;
        }
        return data.len();
    }
    let block = &data[..take];
    let stateless = stream.is_stateless();
    let parallel_ok = scratches.len() > 1 && block.len() >= PARALLEL_MIN && stateless;
    let front = data.len() - take;
    // (`data` is a suffix of `whole`: the block starts where `data` does.)
    parts.base = whole.len() - data.len();
    let done = if parallel_ok {
        parallel(redactor, stream, scratches, block, parts, || {
            read_ahead(front, BLOCK - front)
        })
    } else if let ([scratch], true) = (&mut *scratches, stateless) {
        single(redactor, stream, scratch, block, parts)
    } else {
        0
    };
    match done {
        0 => stream.push(block, out),
        // From the first chunk that changes the stream's state on, in order, after the
        // chunks redacted in parallel.
        n if n < block.len() => stream.push(&block[n..], &mut parts.tail),
        _ => {}
    }
    data.len() - take
}

/// One chunk of a parallel block: its lines (a range of the block), its output as pieces of
/// them and masks, its masks per id and line count. Kept from block to block so that the
/// buffers are reused rather than allocated every 4 MiB.
#[derive(Default)]
struct Part {
    text: std::ops::Range<usize>,
    plan: Plan,
    counts: Counts,
    lines: u64,
}

impl Part {
    /// Redacts this part's lines of `block` into its plan, counts and line count.
    fn redact(
        &mut self,
        redactor: &Redactor,
        scratch: &mut Scratch,
        block: &[u8],
        inband: &[KnownValues],
    ) {
        let text = &block[self.text.clone()];
        self.counts.0.fill(0);
        redactor.redact_lines_plan(scratch, text, inband, &mut self.plan, &mut self.counts);
        self.lines = memchr::memchr_iter(b'\n', text).count() as u64;
    }
}

#[derive(Default)]
struct Parts {
    list: Vec<Part>,
    /// The chunks redacted in parallel, whose output is not yet written: `list[..done]`.
    done: usize,
    /// Where the block starts in the data `process` was given.
    base: usize,
    /// The rest of the block, redacted by the stream, when a chunk changed its state.
    tail: Vec<u8>,
}

/// Writes every slice, in order, with as few `writev` calls as the system allows (a
/// `File` passes at most `IOV_MAX` slices per call and reports how much it wrote).
fn write_all_slices<'a, W: Write>(
    output: &mut W,
    slices: impl Iterator<Item = &'a [u8]>,
) -> io::Result<()> {
    // (Empty slices are left out: a call given only those would report zero bytes written.)
    let mut all: Vec<io::IoSlice<'a>> = slices
        .filter(|s| !s.is_empty())
        .map(io::IoSlice::new)
        .collect();
    let mut rest = &mut all[..];
    while !rest.is_empty() {
        match output.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => io::IoSlice::advance_slices(&mut rest, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One thread, the stream at a line start outside a key block: a block whose lines do not
/// change the stream's state is redacted as one part, so that its clean text goes out
/// straight from the input buffer like the parallel chunks', instead of being copied into
/// the output first (that copy was ~3% of a one-thread run). Returns how much of the block
/// that covers: all of it, or nothing.
fn single(
    redactor: &Redactor,
    stream: &mut Stream,
    scratch: &mut Scratch,
    block: &[u8],
    parts: &mut Parts,
) -> usize {
    if Stream::changes_state(block) {
        return 0;
    }
    parts.list.resize_with(1, Default::default);
    let part = &mut parts.list[0];
    part.text = 0..block.len();
    part.redact(redactor, scratch, block, stream.inband());
    stream.add_counts(&part.counts, part.lines);
    parts.done = 1;
    block.len()
}

/// Splits whole lines into chunks and redacts them on all threads; returns how many bytes
/// of the block that covers: all of it, or the chunks before the first one holding text that
/// changes the stream's state (a key block or a mask command), which the caller must push
/// through the stream in order. Each worker checks its own chunk for that text, rather than
/// this thread searching the whole block while they wait; after such a chunk, workers take
/// no more.
/// All chunks run on spawned threads while this one calls `meanwhile` (reading ahead), so
/// reading the next block overlaps redacting this one.
fn parallel(
    redactor: &Redactor,
    stream: &mut Stream,
    scratches: &mut [Scratch],
    block: &[u8],
    parts: &mut Parts,
    meanwhile: impl FnOnce(),
) -> usize {
    // More chunks than threads, taken in order by whichever thread is free: the work per
    // byte varies along a log, and equal halves left one thread idle 7% of the time.
    let chunks = scratches.len() * CHUNKS_PER_THREAD;
    parts.list.resize_with(chunks, Default::default);
    let mut start = 0;
    for (i, part) in parts.list.iter_mut().enumerate() {
        let target = (block.len() * (i + 1) / chunks).max(start);
        let end = memchr::memchr(b'\n', &block[target..]).map_or(block.len(), |p| target + p + 1);
        part.text = start..end;
        start = end;
    }
    let inband = stream.inband();
    let queue = std::sync::Mutex::new(parts.list.iter_mut().enumerate());
    // The first chunk found to change the stream's state.
    let stop = std::sync::atomic::AtomicUsize::new(usize::MAX);
    std::thread::scope(|s| {
        for scratch in scratches.iter_mut() {
            let (queue, stop) = (&queue, &stop);
            s.spawn(move || loop {
                // (Nothing panics while holding the lock; a poisoned queue is still valid.)
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((i, part)) = next else { break };
                // Chunks are taken in order: past a stateful one, all are.
                if i > stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if Stream::changes_state(&block[part.text.clone()]) {
                    stop.fetch_min(i, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                part.redact(redactor, scratch, block, inband);
            });
        }
        meanwhile();
    });
    // Every chunk before the first stateful one was redacted (each was taken while `stop`
    // was still above it), and that one was checked (for the same reason).
    let done = stop.into_inner().min(chunks);
    let mut counts = Counts::default();
    let mut lines = 0;
    for p in &parts.list[..done] {
        counts.add(&p.counts);
        lines += p.lines;
    }
    stream.add_counts(&counts, lines);
    parts.done = done;
    parts.list.get(done).map_or(block.len(), |p| p.text.start)
}
