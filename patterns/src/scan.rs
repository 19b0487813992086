//! Finding sensitive spans in a buffer of whole lines, and writing the masked output.
//!
//! The work per buffer is: one Aho-Corasick pass for keywords (each hit schedules its rules'
//! regexes on a small region around it, merged per rule so a region is searched once), one
//! multi-pattern pass for structural rules, one exact pass for known values. Validators and
//! context checks run only on candidates. A clean buffer allocates nothing.

use regex_automata::util::captures::Captures;
use regex_automata::{meta, Anchored, Input};

use crate::compile::{CompiledRule, Inner, Redactor, RuleSet};
use crate::known::KnownValues;
use crate::view::view;

/// A half-open byte range to mask and the id index it is reported under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub id: u32,
}

/// Per-thread mutable state: regex caches and reusable buffers. Create one per thread with
/// [`Redactor::scratch`]; it is never shared, so the hot path takes no lock.
pub struct Scratch {
    pub(crate) spans: Vec<Span>,
    pub(crate) view_buf: Vec<u8>,
    lower_buf: Vec<u8>,
    /// Per rule, made on the rule's first search: most of 200 vendor rules never search a
    /// given log, and making every cache up front was a tenth of such a start-up.
    caches: Vec<Option<meta::Cache>>,
    captures: Vec<Option<Captures>>,
    structural_cache: Option<meta::Cache>,
    shaped_cache: Option<meta::Cache>,
    pending: Vec<Option<(usize, usize)>>,
    touched: Vec<u32>,
}

/// Redacted output as pieces (see [`Redactor::redact_lines_plan`]). Reused from call to call.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// In output order.
    pub pieces: Vec<Piece>,
    /// The mask texts the pieces refer to.
    pub masks: Vec<u8>,
}

/// One stretch of redacted output: a byte range of the input, or of [`Plan::masks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `input[start..end]`, unchanged.
    Input(usize, usize),
    /// `plan.masks[start..end]`.
    Mask(usize, usize),
}

impl Plan {
    /// The output as slices of `input` and of the masks, in order.
    pub fn slices<'a>(&'a self, input: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.pieces.iter().map(move |p| match *p {
            Piece::Input(a, b) => &input[a..b],
            Piece::Mask(a, b) => &self.masks[a..b],
        })
    }
}

/// Masks per id (rule ids, then `known-value`, `private-key-block`, `line-too-long`),
/// indexed like [`Redactor::ids`]. Counts only, never values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub Vec<u64>);

impl Counts {
    /// Adds another set of counts (from a worker) into this one.
    pub fn add(&mut self, other: &Counts) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// Total masks.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn bump(&mut self, id: u32) {
        let i = id as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        self.0[i] += 1;
    }

    /// (id, count) pairs with a non-zero count.
    pub fn nonzero<'a>(&'a self, r: &'a Redactor) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(move |(i, &n)| (r.ids()[i].as_str(), n))
    }
}

impl Redactor {
    /// A fresh scratch space for one thread.
    pub fn scratch(&self) -> Scratch {
        let inner = &self.inner;
        Scratch {
            spans: Vec::new(),
            view_buf: Vec::new(),
            lower_buf: Vec::new(),
            caches: inner.rules.iter().map(|_| None).collect(),
            captures: inner
                .rules
                .iter()
                // (A framed rule takes its group from the match's edges: no captures.)
                .map(|r| {
                    r.secret_group
                        .filter(|_| r.frame.is_none())
                        .map(|_| r.regex.create_captures())
                })
                .collect(),
            structural_cache: inner.structural.as_ref().map(|s| s.regex.create_cache()),
            shaped_cache: inner.shaped.as_ref().map(|s| s.set.regex.create_cache()),
            pending: vec![None; inner.rules.len()],
            touched: Vec::new(),
        }
    }

    /// Redacts a buffer of whole lines (each ending in `\n`, except possibly the last) into
    /// `out`, adding to `counts`. Stateless: no key-block tracking and no in-band masks; the
    /// streaming [`crate::Stream`] adds those. `extra_known` are more sets of known values
    /// (values registered in-band).
    pub fn redact_lines(
        &self,
        scratch: &mut Scratch,
        lines: &[u8],
        extra_known: &[KnownValues],
        out: &mut Vec<u8>,
        counts: &mut Counts,
    ) {
        scratch.spans.clear();
        self.find_spans(scratch, lines, extra_known);
        write_masked(
            &self.inner,
            lines,
            &mut scratch.spans,
            0,
            lines.len(),
            out,
            counts,
        );
    }

    /// Like [`Redactor::redact_lines`], but the output is a [`Plan`]: stretches of `lines`
    /// to copy and the masks between them. A caller writing with `writev` then never copies
    /// the clean text (most of a log) into an output buffer.
    pub fn redact_lines_plan(
        &self,
        scratch: &mut Scratch,
        lines: &[u8],
        extra_known: &[KnownValues],
        plan: &mut Plan,
        counts: &mut Counts,
    ) {
        plan.pieces.clear();
        plan.masks.clear();
        scratch.spans.clear();
        self.find_spans(scratch, lines, extra_known);
        let inner = &*self.inner;
        walk_masked(
            &mut scratch.spans,
            0,
            lines.len(),
            counts,
            |part| match part {
                Part::Clean(a, b) => plan.pieces.push(Piece::Input(a, b)),
                Part::Masked(id, a, b) => {
                    let m = plan.masks.len();
                    inner
                        .mask
                        .write(&inner.ids[id as usize], &lines[a..b], &mut plan.masks);
                    plan.pieces.push(Piece::Mask(m, plan.masks.len()));
                }
            },
        );
    }

    /// Fills `scratch.spans` (unsorted, possibly overlapping) with every match in `hay`.
    pub(crate) fn find_spans(
        &self,
        scratch: &mut Scratch,
        hay: &[u8],
        extra_known: &[KnownValues],
    ) {
        let inner = &*self.inner;
        let mut view_buf = std::mem::take(&mut scratch.view_buf);
        let v = view(hay, &mut view_buf);
        keyword_pass(inner, scratch, v);
        byte_pass(inner, scratch, v);
        structural_pass(inner, scratch, v);
        shape_pass(inner, scratch, v);
        let id = inner.known_id as u32;
        for k in inner.known.iter().chain(extra_known) {
            k.for_each(hay, |start, end| {
                scratch.spans.push(Span { start, end, id })
            });
        }
        scratch.view_buf = view_buf;
    }
}

/// The bounds of the line holding `at`, from `cached` when it is that line.
fn line_of(v: &[u8], cached: &mut (usize, usize), at: usize) -> (usize, usize) {
    if at >= cached.1 || at < cached.0 {
        *cached = line_bounds(v, at);
    }
    *cached
}

fn line_bounds(v: &[u8], at: usize) -> (usize, usize) {
    let start = memchr::memrchr(b'\n', &v[..at]).map_or(0, |p| p + 1);
    let end = memchr::memchr(b'\n', &v[at..]).map_or(v.len(), |p| at + p);
    (start, end)
}

/// Rules anchored on a rare byte (see `prefix::rare_required_byte`). The three passes stay
/// out of line (three calls per block) so profiles show each one's share.
#[inline(never)]
fn byte_pass(inner: &Inner, scratch: &mut Scratch, v: &[u8]) {
    for &(byte, ri, check) in &inner.byte_rules {
        let rule = &inner.rules[ri as usize];
        let (back, reach) = (rule.before_rare, rule.max_len);
        let mut line = (0usize, 0usize);
        for p in memchr::memchr_iter(byte, v) {
            let line = line_of(v, &mut line, p);
            let a = p.saturating_sub(back).max(line.0);
            let b = (p + 1 + reach).min(line.1);
            if check.is_some_and(|may_match| !may_match(v, p, b)) {
                continue;
            }
            schedule(inner, scratch, v, ri, a, b);
        }
    }
    flush_pending(inner, scratch, v);
}

fn flush_pending(inner: &Inner, scratch: &mut Scratch, v: &[u8]) {
    let touched = std::mem::take(&mut scratch.touched);
    for &ri in &touched {
        if let Some((a, b)) = scratch.pending[ri as usize].take() {
            search_rule(ri, &inner.rules[ri as usize], scratch, v, a, b);
        }
    }
    scratch.touched = touched;
    scratch.touched.clear();
}

#[inline(never)]
fn keyword_pass(inner: &Inner, scratch: &mut Scratch, v: &[u8]) {
    let search = &inner.anchor_search;
    if search.is_empty() {
        return;
    }
    let mut lower = std::mem::take(&mut scratch.lower_buf);
    crate::anchor::lowercase_into(v, &mut lower);
    // The line of the last confirmed keyword: hits come nearly in order within a pass (a new
    // pass starts over from the top; the one pass orders them by 64-byte block only, and a
    // line is recomputed when a hit falls outside it), and most anchor hits confirm no
    // keyword, so bounds are found only for those that do.
    let mut line = (0usize, 0usize);
    let every = search.reports_every_occurrence();
    search.for_each_pass(&lower, |a, start| {
        anchor_at(inner, scratch, v, &lower, a, start, &mut line);
        if every {
            return;
        }
        for &(a2, off) in &inner.anchor_overlaps[a] {
            let at = start + off as usize;
            let lit = &inner.anchors[a2 as usize];
            // Anchors of the same pass that start inside this hit are not reported by its
            // non-overlapping search; other passes report their own hits.
            if search.same_group(a, a2 as usize)
                && lower.len() >= at + lit.len()
                && lower[at..at + lit.len()] == lit[..]
            {
                anchor_at(inner, scratch, v, &lower, a2 as usize, at, &mut line);
            }
        }
    });
    scratch.lower_buf = lower;
    flush_pending(inner, scratch, v);
}

/// Anchor `a` occurs at `at`: confirms which of its keywords occur around it.
fn anchor_at(
    inner: &Inner,
    scratch: &mut Scratch,
    v: &[u8],
    lower: &[u8],
    a: usize,
    at: usize,
    line: &mut (usize, usize),
) {
    for &(k, off) in &inner.anchor_keywords[a] {
        let Some(start) = at.checked_sub(off as usize) else {
            continue;
        };
        let kw = inner.keywords[k as usize].as_bytes();
        // (Keywords hold no line breaks, so a keyword found lies within one line.)
        if start + kw.len() > lower.len() {
            continue;
        }
        // First eight bytes as one masked integer compare: an anchor shared by dozens of
        // keywords (`api` with 200 vendor rules) would otherwise cost a memcmp call each.
        let found = match lower.get(start..start + 8) {
            Some(word) => {
                let (head, mask) = inner.keyword_heads[k as usize];
                let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                word & mask == head && (kw.len() <= 8 || lower[start..start + kw.len()] == *kw)
            }
            None => lower[start..start + kw.len()] == *kw,
        };
        if found {
            let line = line_of(v, line, start);
            keyword_at(inner, scratch, v, k as usize, start, line);
        }
    }
}

/// Schedules or runs the rules of keyword `k`, which occurs at `at` in line `line`. (Out of
/// line: inlined into `anchor_at`, the whole filter took 1% more instructions.)
#[inline(never)]
fn keyword_at(
    inner: &Inner,
    scratch: &mut Scratch,
    v: &[u8],
    k: usize,
    at: usize,
    line: (usize, usize),
) {
    let kw_len = inner.keywords[k].len();
    for &(ri, ki) in &inner.keyword_rules[k] {
        let rule = &inner.rules[ri as usize];
        if rule.anchored {
            let next = at + kw_len;
            if next < line.1 && !crate::prefix::set_has(&rule.follow[ki as usize], v[next]) {
                continue;
            }
            let end = (at + rule.max_len).min(line.1);
            if let Some(b) = rule.rare_byte {
                if memchr::memchr(b, &v[at..end]).is_none() {
                    continue;
                }
            }
            anchored_rule(rule, ri, scratch, v, at, end);
            continue;
        }
        let a = at.saturating_sub(rule.max_len).max(line.0);
        let b = (at + kw_len + rule.max_len).min(line.1);
        schedule(inner, scratch, v, ri, a, b);
    }
}

/// Queues a region search of rule `ri` over `a..b`, merged with its pending region when
/// they overlap, so each stretch of a line is searched once per rule.
fn schedule(inner: &Inner, scratch: &mut Scratch, v: &[u8], ri: u32, a: usize, b: usize) {
    match &mut scratch.pending[ri as usize] {
        Some((pa, pb)) if a <= *pb && b >= *pa => {
            *pa = (*pa).min(a);
            *pb = (*pb).max(b);
        }
        slot => {
            if let Some((pa, pb)) = slot.take() {
                search_rule(ri, &inner.rules[ri as usize], scratch, v, pa, pb);
            } else {
                scratch.touched.push(ri);
            }
            scratch.pending[ri as usize] = Some((a, b));
        }
    }
}

/// Rule `ri`'s cache, made on first use.
#[inline(always)]
fn cache_of<'s>(
    caches: &'s mut [Option<meta::Cache>],
    rule: &CompiledRule,
    ri: u32,
) -> &'s mut meta::Cache {
    caches[ri as usize].get_or_insert_with(|| rule.regex.create_cache())
}

/// One anchored attempt of `rule` at `at` (its matches always start with a keyword).
fn anchored_rule(
    rule: &CompiledRule,
    ri: u32,
    scratch: &mut Scratch,
    v: &[u8],
    at: usize,
    end: usize,
) {
    let input = Input::new(v).range(at..end).anchored(Anchored::Yes);
    let cache = cache_of(&mut scratch.caches, rule, ri);
    // Most attempts fail within a few bytes: decide that with the DFA alone, and pay for
    // capture groups only on a real match.
    let Some(m) = rule.regex.search_with(cache, &input) else {
        return;
    };
    record(rule, ri, scratch, v, m.start(), m.end());
}

/// Runs one rule's regex over `v[a..b]` (look-around may see outside) and records accepted
/// matches.
fn search_rule(ri: u32, rule: &CompiledRule, scratch: &mut Scratch, v: &[u8], a: usize, b: usize) {
    let mut input = Input::new(v).range(a..b);
    while let Some(found) = rule
        .regex
        .search_with(cache_of(&mut scratch.caches, rule, ri), &input)
    {
        let ms = found.start();
        // Resume after the masked part (a rule may check the byte after its value, which can
        // begin the next value), or one byte on after a rejected candidate.
        let next = match record(rule, ri, scratch, v, ms, found.end()) {
            Some(se) => se.max(ms + 1),
            None => ms + 1,
        };
        if next >= b {
            break;
        }
        input.set_start(next);
    }
}

/// Validator and context checks on a candidate (match `ms..me`, masked part `ss..se`).
fn accept(rule: &CompiledRule, v: &[u8], ms: usize, me: usize, ss: usize, se: usize) -> bool {
    if !rule.def.validator.check(&v[ss..se]) || inside_marker(v, ss) {
        return false;
    }
    if let Some((ac, window)) = &rule.context {
        let (ls, le) = line_bounds(v, ms);
        let a = ms.saturating_sub(*window).max(ls);
        let b = (me + window).min(le);
        if ac.find(&v[a..b]).is_none() {
            return false;
        }
    }
    true
}

/// Whether `at` lies inside a `[REDACTED:...]` marker (text this or an earlier run already
/// masked): a value never starts there, so redacting redacted text changes nothing.
fn inside_marker(v: &[u8], at: usize) -> bool {
    const MARKER: &[u8] = b"[REDACTED";
    let from = at.saturating_sub(64 + MARKER.len());
    let Some(open) = memchr::memrchr(b'[', &v[from..at]).map(|i| from + i) else {
        return false;
    };
    v[open..].starts_with(MARKER) && memchr::memchr(b']', &v[open..at]).is_none()
}

#[inline(never)]
fn structural_pass(inner: &Inner, scratch: &mut Scratch, v: &[u8]) {
    let Some(set) = &inner.structural else { return };
    let Some(mut cache) = scratch.structural_cache.take() else {
        return;
    };
    search_set(set, &mut cache, inner, scratch, v, 0, v.len());
    scratch.structural_cache = Some(cache);
}

/// The shaped rules, searched only in windows around core hits (merged when they overlap).
/// Every match contains a core hit and lies within `reach` of it, so each match is inside
/// one window, and windows are disjoint: the same matches as one search over `v`.
#[inline(never)]
fn shape_pass(inner: &Inner, scratch: &mut Scratch, v: &[u8]) {
    let Some(shaped) = &inner.shaped else { return };
    let Some(mut cache) = scratch.shaped_cache.take() else {
        return;
    };
    let mut window: Option<(usize, usize)> = None;
    crate::shape::for_each_hit(v, shaped.cores, |p| {
        let a = p.saturating_sub(shaped.reach);
        let b = (p + shaped.reach).min(v.len());
        match &mut window {
            Some((_, wb)) if a <= *wb => *wb = b,
            w => {
                if let Some((wa, wb)) = w.replace((a, b)) {
                    search_set(&shaped.set, &mut cache, inner, scratch, v, wa, wb);
                }
            }
        }
    });
    if let Some((wa, wb)) = window {
        search_set(&shaped.set, &mut cache, inner, scratch, v, wa, wb);
    }
    scratch.shaped_cache = Some(cache);
}

/// Every accepted match of `set`'s rules starting in `v[from..to]` and ending by `to`.
fn search_set(
    set: &RuleSet,
    cache: &mut meta::Cache,
    inner: &Inner,
    scratch: &mut Scratch,
    v: &[u8],
    from: usize,
    to: usize,
) {
    let re = &set.regex;
    let mut input = Input::new(v).range(from..to);
    let npat = set.rules.len();
    while let Some(m) = re.search_with(cache, &input) {
        let pid = m.pattern().as_usize();
        let mut found = structural_candidate(inner, scratch, v, set.rules[pid], m.start());
        if found.is_none() {
            // The preferred pattern failed validation here; another one may still match at
            // the same start (a card number that is not a phone number...).
            let mut anchored = input.clone().range(m.start()..to).anchored(Anchored::Yes);
            for other in 0..npat {
                if other == pid {
                    continue;
                }
                anchored =
                    anchored.anchored(Anchored::Pattern(regex_automata::PatternID::must(other)));
                if re.search_with(cache, &anchored).is_some() {
                    found = structural_candidate(inner, scratch, v, set.rules[other], m.start());
                    if found.is_some() {
                        break;
                    }
                }
            }
        }
        let next = match found {
            Some(end) => end.max(m.start() + 1),
            None => m.start() + 1,
        };
        if next >= to {
            break;
        }
        input.set_start(next);
    }
}

/// Re-runs rule `ri`'s own regex anchored at `start` (the set's match may be another
/// pattern's, or end elsewhere), checks it, and records it. Returns the end of the masked
/// part when accepted.
fn structural_candidate(
    inner: &Inner,
    scratch: &mut Scratch,
    v: &[u8],
    ri: u32,
    start: usize,
) -> Option<usize> {
    let rule = &inner.rules[ri as usize];
    // Bound the search by the rule's longest match (+1 for a trailing look-around byte).
    let end = (start + rule.max_len + 1).min(v.len());
    let input = Input::new(v).range(start..end).anchored(Anchored::Yes);
    let m = rule
        .regex
        .search_with(cache_of(&mut scratch.caches, rule, ri), &input)?;
    // The caller resumes after the masked part, not the whole match: a rule that checks the
    // byte after its value must not hide a value that starts right after that byte.
    record(rule, ri, scratch, v, m.start(), m.end())
}

/// Records rule `ri`'s match `ms..me` when its secret part passes the rule's checks;
/// returns the end of the masked part when it does.
///
/// The secret part (the match being leftmost-first, as every engine finds it) is read off
/// the match's edges when the pattern allows (see [`crate::frame`]), else from a capture
/// search over exactly the match, else it is the whole match; none when the `secret` group
/// took no part in the match.
fn record(
    rule: &CompiledRule,
    ri: u32,
    scratch: &mut Scratch,
    v: &[u8],
    ms: usize,
    me: usize,
) -> Option<usize> {
    let (ss, se) = if let Some(frame) = &rule.frame {
        frame.secret(v, ms, me)
    } else {
        match (&mut scratch.captures[ri as usize], rule.secret_group) {
            (Some(caps), Some(g)) => {
                let exact = Input::new(v).range(ms..me).anchored(Anchored::Yes);
                let cache = cache_of(&mut scratch.caches, rule, ri);
                rule.regex.search_captures_with(cache, &exact, caps);
                let s = caps.get_group(g)?;
                (s.start, s.end)
            }
            _ => (ms, me),
        }
    };
    if !(ss < se && accept(rule, v, ms, me, ss, se)) {
        return None;
    }
    scratch.spans.push(Span {
        start: ss,
        end: se,
        id: ri,
    });
    Some(se)
}

/// Sorts and merges `spans`, then writes `hay[from..to]` to `out` with every span that
/// intersects it masked. Spans are clipped to `from..to`. Returns nothing; counts each merged
/// span once, under the id of its earliest part.
pub(crate) fn write_masked(
    inner: &Inner,
    hay: &[u8],
    spans: &mut Vec<Span>,
    from: usize,
    to: usize,
    out: &mut Vec<u8>,
    counts: &mut Counts,
) {
    walk_masked(spans, from, to, counts, |part| match part {
        Part::Clean(a, b) => out.extend_from_slice(&hay[a..b]),
        Part::Masked(id, a, b) => inner.mask.write(&inner.ids[id as usize], &hay[a..b], out),
    });
}

/// A stretch of output: unchanged `a..b`, or `a..b` masked under an id.
enum Part {
    Clean(usize, usize),
    Masked(u32, usize, usize),
}

/// Sorts and merges `spans` and calls `emit` for the clean and masked stretches of
/// `from..to` in order (spans clipped to it); counts each merged span once, under the id of
/// its earliest part.
fn walk_masked(
    spans: &mut Vec<Span>,
    from: usize,
    to: usize,
    counts: &mut Counts,
    mut emit: impl FnMut(Part),
) {
    merge(spans);
    let mut pos = from;
    for s in spans.iter() {
        let (a, b) = (s.start.max(from), s.end.min(to));
        if a >= b || a < pos {
            continue;
        }
        if pos < a {
            emit(Part::Clean(pos, a));
        }
        emit(Part::Masked(s.id, a, b));
        counts.bump(s.id);
        pos = b;
    }
    if pos < to {
        emit(Part::Clean(pos, to));
    }
}

/// Sorts spans by start and merges overlapping ones in place.
pub(crate) fn merge(spans: &mut Vec<Span>) {
    if spans.len() < 2 {
        return;
    }
    // A total order: which rule names a merged span must not depend on the order the passes
    // found its parts in, which varies with how the input was cut into blocks.
    spans.sort_unstable_by_key(|s| (s.start, std::cmp::Reverse(s.end), s.id));
    let mut w = 0;
    for r in 1..spans.len() {
        if spans[r].start < spans[w].end {
            spans[w].end = spans[w].end.max(spans[r].end);
        } else {
            w += 1;
            spans[w] = spans[r];
        }
    }
    spans.truncate(w + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_overlaps_keeps_adjacent() {
        let mut v = vec![
            Span {
                start: 5,
                end: 9,
                id: 1,
            },
            Span {
                start: 0,
                end: 3,
                id: 0,
            },
            Span {
                start: 2,
                end: 4,
                id: 2,
            },
            Span {
                start: 9,
                end: 10,
                id: 3,
            },
        ];
        merge(&mut v);
        assert_eq!(
            v,
            vec![
                Span {
                    start: 0,
                    end: 4,
                    id: 0
                },
                Span {
                    start: 5,
                    end: 9,
                    id: 1
                },
                Span {
                    start: 9,
                    end: 10,
                    id: 3
                },
            ]
        );
    }
}
