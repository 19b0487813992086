//! Where the `secret` group lies in a match, read off the pattern instead of a capture engine.
//!
//! Most keywordless rules are written `(?:^|[^0-9A-Za-z_.+-])(?P<secret>…)\b`: the group is
//! the whole match but for an optional leading byte (a look-behind the regex syntax lacks)
//! and sometimes a short optional tail (`(?:[^0-9A-Za-z_-]|$)`). When the group can neither
//! begin with a byte the leading part can take nor end with one the trailing part can take,
//! counting such bytes at the match's edges finds the group, from the match alone. Running
//! the capture engine (a bounded backtracker over the rule's NFA) for every candidate was
//! ~9% of a CI log's filtering.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::prefix::{set_add, set_has, set_insert, set_intersects, set_union, ByteSet};

/// The optional edges around the group: the bytes each can take and its longest length.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    lead: Option<(ByteSet, usize)>,
    trail: Option<(ByteSet, usize)>,
}

impl Frame {
    /// The group's span in the match `ms..me` of `v`.
    pub(crate) fn secret(&self, v: &[u8], ms: usize, me: usize) -> (usize, usize) {
        let mut s = ms;
        if let Some((lead, max)) = &self.lead {
            while s < me && s - ms < *max && set_has(lead, v[s]) {
                s += 1;
            }
        }
        let mut e = me;
        if let Some((trail, max)) = &self.trail {
            while e > s && me - e < *max && set_has(trail, v[e - 1]) {
                e -= 1;
            }
        }
        (s, e)
    }
}

/// The frame of capture group `group` in `hir`, when the pattern has that shape: the group,
/// never empty, at the top level; before and after it only items of bounded length whose
/// bytes the group cannot begin (leading side) or end (trailing side) with.
pub(crate) fn secret_frame(hir: &Hir, group: u32) -> Option<Frame> {
    let items: &[Hir] = match hir.kind() {
        HirKind::Concat(items) => items,
        _ => std::slice::from_ref(hir),
    };
    let i = items
        .iter()
        .position(|h| matches!(h.kind(), HirKind::Capture(c) if c.index == group))?;
    let HirKind::Capture(cap) = items[i].kind() else {
        return None;
    };
    if cap.sub.properties().minimum_len().unwrap_or(0) == 0 {
        return None;
    }
    let lead = edge(&items[..i])?;
    let trail = edge(&items[i + 1..])?;
    if let Some((lead, _)) = &lead {
        if set_intersects(lead, &ends(&cap.sub, false)?) {
            return None;
        }
    }
    if let Some((trail, _)) = &trail {
        if set_intersects(trail, &ends(&cap.sub, true)?) {
            return None;
        }
    }
    Some(Frame { lead, trail })
}

/// The bytes `items` can take and their longest total length: `Some(None)` when they take
/// none (assertions only), `None` when unbounded or not understood.
fn edge(items: &[Hir]) -> Option<Option<(ByteSet, usize)>> {
    let mut set = [0u64; 4];
    let mut max = 0;
    for h in items {
        max += h.properties().maximum_len()?;
        bytes_of(h, &mut set)?;
    }
    Some((max > 0).then_some((set, max)))
}

/// Adds every byte `h` can match to `set`.
fn bytes_of(h: &Hir, set: &mut ByteSet) -> Option<()> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(l) => l.0.iter().for_each(|&b| set_insert(set, b)),
        HirKind::Class(Class::Bytes(c)) => set_add(set, c),
        HirKind::Class(Class::Unicode(c)) => set_add(set, &c.to_byte_class()?),
        HirKind::Capture(c) => bytes_of(&c.sub, set)?,
        HirKind::Repetition(r) => bytes_of(&r.sub, set)?,
        HirKind::Alternation(items) | HirKind::Concat(items) => {
            for item in items {
                bytes_of(item, set)?;
            }
        }
    }
    Some(())
}

/// The bytes a match of `h` can begin with (`last`: end with); `None` when unknown.
fn ends(h: &Hir, last: bool) -> Option<ByteSet> {
    let mut set = [0u64; 4];
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(l) => {
            let b = if last { *l.0.last()? } else { *l.0.first()? };
            set_insert(&mut set, b);
        }
        HirKind::Class(Class::Bytes(c)) => set_add(&mut set, c),
        HirKind::Class(Class::Unicode(c)) => set_add(&mut set, &c.to_byte_class()?),
        HirKind::Capture(c) => return ends(&c.sub, last),
        HirKind::Repetition(r) => return ends(&r.sub, last),
        HirKind::Alternation(alts) => {
            for a in alts {
                set_union(&mut set, &ends(a, last)?);
            }
        }
        HirKind::Concat(items) => {
            // The first item that cannot be empty, and every possibly-empty one before it.
            let mut walk: Box<dyn Iterator<Item = &Hir>> = if last {
                Box::new(items.iter().rev())
            } else {
                Box::new(items.iter())
            };
            for item in &mut walk {
                set_union(&mut set, &ends(item, last)?);
                if item.properties().minimum_len() != Some(0) {
                    break;
                }
            }
        }
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(re: &str) -> Option<Frame> {
        let hir = crate::compile::parse_regex(re).unwrap();
        secret_frame(&hir, 1)
    }

    #[test]
    fn edges_decide_the_group() {
        // A tail of up to two bytes (e-mail's `(?:$|[^…]|\.(?:$|[^…]))`).
        let f =
            frame(r"(?:^|[^a-z])(?P<secret>[a-z]+@[a-z]+\.[a-z]{2,})(?:$|[^a-z.]|\.(?:$|[^a-z]))")
                .unwrap();
        assert_eq!(f.secret(b" a@b.io.,", 0, 9), (1, 7));
        assert_eq!(f.secret(b" a@b.io.", 0, 8), (1, 7));
        assert_eq!(f.secret(b"a@b.io", 0, 6), (0, 6));
        // A keyword and separators of bounded length, none of them a digit.
        let f = frame(r"(?i:npi)[^0-9]{1,24}(?P<secret>[12][0-9]{9})(?:$|[^0-9])").unwrap();
        assert_eq!(f.secret(b"NPI #: 1234567893.", 0, 18), (7, 17));
        let f = frame(r"(?:^|[^0-9A-Za-z_.+-])(?P<secret>[0-9]{3}-[0-9]{2}-[0-9]{4})\b").unwrap();
        assert_eq!(f.secret(b"x 123-45-6789", 1, 13), (2, 13));
        assert_eq!(f.secret(b"123-45-6789", 0, 11), (0, 11));
        let f = frame(r"\b(?P<secret>AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)").unwrap();
        assert_eq!(f.secret(b"AIzaX\"", 0, 6), (0, 5));
        assert_eq!(f.secret(b"AIzaX", 0, 5), (0, 5));
    }

    #[test]
    fn ambiguous_or_complex_shapes_keep_the_capture_engine() {
        // The leading class overlaps the group's first byte.
        assert!(frame(r"(?:^|[^a-z])(?P<secret>[0-9a-f]{8})").is_none());
        // The group's last byte may be the trailing class's.
        assert!(frame(r"(?P<secret>[0-9]+-?)(?:-|$)").is_none());
        // A keyword prefix whose bytes the group can begin with.
        assert!(frame(r"token[:=](?P<secret>[A-Za-z0-9]{16})").is_none());
        // An unbounded prefix.
        assert!(frame(r"id[^0-9]*(?P<secret>[0-9]{4})").is_none());
        // Not at the top level.
        assert!(frame(r"(?:a(?P<secret>[0-9]{4}))+").is_none());
        // A possibly-empty first item: its successor's bytes count too.
        assert!(frame(r"(?:^|[^0-9x])(?P<secret>x?[0-9]{4})").is_some());
        assert!(frame(r"(?:^|[^0-9])(?P<secret>x?[0-9]{4})").is_none());
    }
}

#[cfg(test)]
mod builtin_tests {
    /// Built-in rules that fire often in CI logs take their group from the match's edges (a
    /// rule edited out of that shape would silently get slower). (`phone-us` cannot: its
    /// number may begin with `(`, a byte its leading part may also take.)
    #[test]
    fn hot_builtin_rules_are_framed() {
        let r = crate::RedactorBuilder::new().build().unwrap();
        let framed: Vec<&str> = r
            .inner
            .rules
            .iter()
            .filter(|c| c.frame.is_some())
            .map(|c| c.def.id.as_str())
            .collect();
        for id in ["ssn", "itin", "payment-card", "email", "npi", "ssn-bare"] {
            assert!(framed.contains(&id), "{id} not framed: {framed:?}");
        }
    }
}

#[cfg(test)]
mod equivalence_tests {
    use proptest::prelude::*;

    /// Every built-in rule's examples (both kinds), split at blanks and separators too, so
    /// that random joins put values next to each other and to prefixes and tails.
    fn pieces() -> Vec<String> {
        let mut out = Vec::new();
        for pack in crate::rule::builtin_packs().unwrap() {
            for r in &pack.rules {
                for ex in r.examples_match.iter().chain(&r.examples_no_match) {
                    out.push(ex.clone());
                    out.extend(ex.split([' ', '=', ':']).map(str::to_string));
                }
            }
        }
        out.extend([" ", "\n", "(", ".", "-", "x", "\u{1b}[0m", "@", "\""].map(String::from));
        out
    }

    /// The pieces and the two redactors (with and without frames), built once for all cases
    /// (building them per case was most of the test's time).
    static SETUP: std::sync::LazyLock<(Vec<String>, crate::Redactor, crate::Redactor)> =
        std::sync::LazyLock::new(|| {
            let with = crate::RedactorBuilder::new().build().unwrap();
            let mut b = crate::RedactorBuilder::new();
            b.frames = false;
            let without = b.build().unwrap();
            assert!(without.inner.rules.iter().all(|r| r.frame.is_none()));
            assert!(with.inner.rules.iter().any(|r| r.frame.is_some()));
            (pieces(), with, without)
        });

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Spans taken from the match's edges are the capture engine's spans.
        #[test]
        fn frames_equal_captures(picks in prop::collection::vec(any::<prop::sample::Index>(), 1..60)) {
            let (pieces, with, without) = &*SETUP;
            let hay: String = picks.iter().map(|i| i.get(pieces).as_str()).collect();
            let (a, ca) = with.redact_all(hay.as_bytes());
            let (b, cb) = without.redact_all(hay.as_bytes());
            prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "input {:?}", hay);
            prop_assert_eq!(ca, cb);
        }
    }
}
