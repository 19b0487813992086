//! The keyword prefilter: a few short, rare "anchor" literals standing in for all keywords.
//!
//! Keywords match ASCII case-insensitively, and aho-corasick cannot use its SIMD (Teddy)
//! prefilter for case-insensitive searches or for more than a few dozen patterns, which left
//! the keyword pass walking a DFA byte by byte. Instead the buffer is lowercased once (a
//! cheap, vectorised copy) and searched case-sensitively for anchors: every keyword contains
//! one anchor (chosen to be shared and rare), so anchor hits are few and each is confirmed
//! against its keywords with a plain comparison.
//!
//! Where the CPU has AVX-512 VBMI, all anchors are found in one pass ([`crate::permute`]);
//! elsewhere in Teddy passes of [`GROUP`] anchors each.

use std::collections::HashMap;

/// Approximate frequency of each byte in CI logs (per mille, rough): used only to prefer
/// rare anchors. Letters follow English frequencies; separators common in logs are common.
fn freq(b: u8) -> f64 {
    match b {
        b'e' => 127.0,
        b't' => 91.0,
        b'a' => 82.0,
        b'o' => 75.0,
        b'i' => 70.0,
        b'n' => 67.0,
        b's' => 63.0,
        b'h' => 61.0,
        b'r' => 60.0,
        b'd' => 43.0,
        b'l' => 40.0,
        b'c' | b'u' => 28.0,
        b'm' | b'w' => 24.0,
        b'f' => 22.0,
        b'g' | b'y' => 20.0,
        b'p' => 19.0,
        b'b' => 15.0,
        b'v' => 10.0,
        b'k' => 8.0,
        b'j' | b'x' => 1.5,
        b'q' => 1.0,
        b'z' => 0.7,
        b' ' => 150.0,
        b'0'..=b'9' => 30.0,
        b'.' | b'/' | b':' | b'-' => 20.0,
        b'_' | b'"' | b'=' | b',' => 8.0,
        _ => 2.0,
    }
}

fn rarity(gram: &[u8]) -> f64 {
    gram.iter().map(|&b| freq(b).ln()).sum()
}

/// The chosen anchors and, for each, the keywords it stands for.
pub(crate) struct Anchors {
    /// Lowercase anchor literals.
    pub anchors: Vec<Vec<u8>>,
    /// Per anchor: (keyword index, offset of the anchor inside the keyword).
    pub keywords: Vec<Vec<(u32, u32)>>,
    /// Per anchor: (other anchor, offset) pairs that may start inside an occurrence of it.
    pub overlaps: Vec<Vec<(u32, u32)>>,
}

/// Anchors per Teddy pass. Teddy's cost is mostly verifying its fingerprint hits, and those
/// grow with the literals sharing one of its buckets: measured on a CI log (10 MB, fat
/// 16-bucket AVX2 Teddy, best of 7), the built-in packs' 78 anchors took 6.7 ms in passes
/// of at most 16, 8.6 ms in passes of 20-32 and 10.8 ms in passes of 40-64; with 200 user
/// rules (124 anchors) 10.6 ms at 16-20, 11.5 ms at 24, 28 ms at 64.
pub(crate) const GROUP: usize = 16;

/// The anchor search: one pass over all anchors where AVX-512 VBMI is present (see
/// [`crate::permute`]), otherwise a few SIMD (Teddy) passes of at most [`GROUP`] anchors.
pub(crate) enum AnchorSearch {
    /// Every occurrence of every anchor, in one pass.
    OnePass(crate::permute::Permute),
    Passes {
        /// Per group: its searcher and the index of its first anchor.
        groups: Vec<(Finder, u32)>,
        /// Group index per anchor.
        group_of: Vec<u32>,
    },
}

pub(crate) enum Finder {
    Packed(aho_corasick::packed::Searcher),
    /// When Teddy is unavailable (no SSSE3/AVX2): a DFA, still correct.
    Dfa(aho_corasick::AhoCorasick),
}

impl AnchorSearch {
    /// The one pass when `one_pass` (which the caller sets only where
    /// [`crate::permute::available`]), else Teddy passes.
    pub(crate) fn new(anchors: &[Vec<u8>], one_pass: bool) -> Result<AnchorSearch, String> {
        if one_pass && !anchors.is_empty() {
            return Ok(AnchorSearch::OnePass(crate::permute::Permute::new(anchors)));
        }
        AnchorSearch::passes(anchors)
    }

    /// Teddy passes (or DFA passes) whatever the CPU.
    pub(crate) fn passes(anchors: &[Vec<u8>]) -> Result<AnchorSearch, String> {
        let ngroups = anchors.len().div_ceil(GROUP);
        let mut groups = Vec::with_capacity(ngroups);
        let mut group_of = Vec::with_capacity(anchors.len());
        let mut base = 0;
        for gi in 0..ngroups {
            // Even split: 99 anchors make groups of 25, 25, 25, 24, not 24, 24, 24, 24, 3.
            let size = (anchors.len() - base).div_ceil(ngroups - gi);
            let group = &anchors[base..base + size];
            let mut cfg = aho_corasick::packed::Config::new();
            cfg.match_kind(aho_corasick::packed::MatchKind::LeftmostLongest)
                .heuristic_pattern_limits(false)
                .only_teddy_fat(Some(true));
            let finder = match cfg.builder().extend(group).build() {
                Some(s) => Finder::Packed(s),
                None => Finder::Dfa(
                    aho_corasick::AhoCorasick::builder()
                        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                        .build(group)
                        .map_err(|e| e.to_string())?,
                ),
            };
            groups.push((finder, base as u32));
            group_of.extend(std::iter::repeat_n(gi as u32, size));
            base += size;
        }
        Ok(AnchorSearch::Passes { groups, group_of })
    }

    /// Whether two anchors are searched in the same pass (a pass does not report an anchor
    /// that starts inside another hit of the same pass; the one pass reports all of them).
    pub(crate) fn same_group(&self, a: usize, b: usize) -> bool {
        match self {
            AnchorSearch::OnePass(_) => false,
            AnchorSearch::Passes { group_of, .. } => group_of[a] == group_of[b],
        }
    }

    /// Whether every occurrence is reported, overlapping ones included (the one pass); else
    /// anchors starting inside a hit of their own pass are missed (see [`Self::same_group`]).
    pub(crate) fn reports_every_occurrence(&self) -> bool {
        matches!(self, AnchorSearch::OnePass(_))
    }

    /// Calls `f(anchor, start)` for each hit, pass by pass: non-overlapping hits per Teddy
    /// pass in increasing `start`, every occurrence in the one pass, 64-byte block by block
    /// (in no particular order within a block).
    pub(crate) fn for_each_pass(&self, hay: &[u8], mut f: impl FnMut(usize, usize)) {
        let groups = match self {
            AnchorSearch::OnePass(p) => return p.for_each(hay, f),
            AnchorSearch::Passes { groups, .. } => groups,
        };
        for (finder, base) in groups {
            let base = *base as usize;
            match finder {
                Finder::Packed(s) => {
                    for m in s.find_iter(hay) {
                        f(base + m.pattern().as_usize(), m.start());
                    }
                }
                Finder::Dfa(ac) => {
                    for m in ac.find_iter(hay) {
                        f(base + m.pattern().as_usize(), m.start());
                    }
                }
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            AnchorSearch::OnePass(_) => false,
            AnchorSearch::Passes { groups, .. } => groups.is_empty(),
        }
    }
}

/// Picks anchors for lowercase `keywords` by greedy set cover: repeatedly the substring of
/// length `LEN` (or a whole shorter keyword) shared by the most uncovered keywords, rarest
/// first among equals.
pub(crate) fn choose(keywords: &[String], one_pass: bool) -> Anchors {
    // Four bytes are more selective; three bytes are shared by more keywords. One Teddy
    // pass handles GROUP anchors, so take the longest length that fits in the fewest passes.
    // The one-pass search costs little per anchor: four bytes (with the built-in packs and
    // 200 vendor rules, 176 anchors rather than 107, and half the hits on the bench log).
    let four = choose_len(keywords, 4);
    if one_pass || four.anchors.len() <= GROUP {
        return four;
    }
    let three = choose_len(keywords, 3);
    if three.anchors.len().div_ceil(GROUP) < four.anchors.len().div_ceil(GROUP) {
        three
    } else {
        four
    }
}

fn choose_len(keywords: &[String], len: usize) -> Anchors {
    #[allow(non_snake_case)]
    let LEN = len;
    // Each keyword's distinct grams, counted once; covering a keyword takes its grams' counts
    // back out, so each round is one scan of the counts (recounting every round was
    // quadratic: 107 M instructions at start-up with 200 user rules).
    let grams_of: Vec<Vec<&[u8]>> = keywords
        .iter()
        .map(|k| {
            let kw = k.as_bytes();
            let mut grams: Vec<&[u8]> = if kw.len() <= LEN {
                vec![kw]
            } else {
                kw.windows(LEN).collect()
            };
            grams.sort_unstable();
            grams.dedup();
            grams
        })
        .collect();
    // Distinct grams with their rarity (computed once: a logarithm per byte at every
    // comparison of every round was a tenth of the start-up with 200 user rules) and the
    // uncovered keywords holding each.
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut grams: Vec<(&[u8], f64, usize)> = Vec::new();
    for &g in grams_of.iter().flatten() {
        let i = *index.entry(g).or_insert_with(|| {
            grams.push((g, rarity(g), 0));
            grams.len() - 1
        });
        grams[i].2 += 1;
    }
    let mut uncovered: Vec<usize> = (0..keywords.len()).collect();
    let mut anchors: Vec<Vec<u8>> = Vec::new();
    let mut assigned: Vec<(u32, u32)> = vec![(0, 0); keywords.len()];
    while !uncovered.is_empty() {
        // (A gram no uncovered keyword holds is no candidate any more.)
        let best = grams
            .iter()
            .filter(|g| g.2 > 0)
            .max_by(|a, b| a.2.cmp(&b.2).then(b.1.total_cmp(&a.1)).then(b.0.cmp(a.0)))
            .map(|g| g.0.to_vec())
            .expect("an uncovered keyword has a gram");
        let ai = anchors.len() as u32;
        uncovered.retain(
            |&k| match memchr::memmem::find(keywords[k].as_bytes(), &best) {
                Some(off) => {
                    assigned[k] = (ai, off as u32);
                    for g in &grams_of[k] {
                        let n = &mut grams[index[g]].2;
                        *n = n.saturating_sub(1);
                    }
                    false
                }
                None => true,
            },
        );
        anchors.push(best);
    }
    let mut per_anchor = vec![Vec::new(); anchors.len()];
    for (k, &(a, off)) in assigned.iter().enumerate() {
        per_anchor[a as usize].push((k as u32, off));
    }
    let overlaps = anchors
        .iter()
        .map(|a| {
            let mut v = Vec::new();
            for (j, a2) in anchors.iter().enumerate() {
                for off in 0..a.len() {
                    if off == 0 && a2 == a {
                        continue;
                    }
                    let tail = &a[off..];
                    let n = tail.len().min(a2.len());
                    if tail[..n] == a2[..n] {
                        v.push((j as u32, off as u32));
                    }
                }
            }
            v
        })
        .collect();
    Anchors {
        anchors,
        keywords: per_anchor,
        overlaps,
    }
}

/// ASCII-lowercases `src` into `dst` (same length).
pub(crate) fn lowercase_into(src: &[u8], dst: &mut Vec<u8>) {
    dst.clear();
    dst.extend(
        src.iter()
            .map(|&b| b | (((b.wrapping_sub(b'A') < 26) as u8) << 5)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_contains_its_anchor() {
        let kws: Vec<String> = [
            "account_number",
            "account-no",
            "password",
            "passwd",
            "://",
            "mrn",
            "ghp_",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let a = choose(&kws, false);
        let mut covered = vec![false; kws.len()];
        for (ai, list) in a.keywords.iter().enumerate() {
            for &(k, off) in list {
                let kw = kws[k as usize].as_bytes();
                let anchor = &a.anchors[ai];
                assert_eq!(
                    &kw[off as usize..off as usize + anchor.len()],
                    anchor.as_slice()
                );
                covered[k as usize] = true;
            }
        }
        assert!(covered.iter().all(|&c| c));
        assert!(a.anchors.len() <= 5, "{:?}", a.anchors);
    }

    #[test]
    fn every_anchor_of_every_pass_is_reported_at_its_offset() {
        // More anchors than one pass holds, each planted once, separated by blanks.
        let anchors: Vec<Vec<u8>> = (0..GROUP * 3 + 5)
            .map(|i| format!("k{:03}x", i).into_bytes())
            .collect();
        let mut hay = Vec::new();
        let mut want = Vec::new();
        for (i, a) in anchors.iter().enumerate().rev() {
            want.push((i, hay.len()));
            hay.extend_from_slice(a);
            hay.extend_from_slice(b" filler text ");
        }
        want.sort();
        let mut searches = vec![AnchorSearch::passes(&anchors).unwrap()];
        if crate::permute::available() {
            searches.push(AnchorSearch::new(&anchors, true).unwrap());
        }
        for search in &searches {
            let mut got = Vec::new();
            search.for_each_pass(&hay, |a, at| got.push((a, at)));
            got.sort();
            assert_eq!(got, want);
        }
        let passes = &searches[0];
        assert!(!passes.reports_every_occurrence());
        assert!(passes.same_group(0, 1));
        assert!(!passes.same_group(0, anchors.len() - 1));
        if let Some(one) = searches.get(1) {
            assert!(one.reports_every_occurrence() && !one.same_group(0, 1));
        }
    }

    #[test]
    fn lowercase_only_touches_ascii_capitals() {
        let mut d = Vec::new();
        lowercase_into(b"AbZ@[`\xc3\x89\xff", &mut d);
        assert_eq!(d, b"abz@[`\xc3\x89\xff");
    }
}
