//! The keyword prefilter: a few short, rare "anchor" literals standing in for all keywords.
//!
//! Keywords match ASCII case-insensitively, and aho-corasick cannot use its SIMD (Teddy)
//! prefilter for case-insensitive searches or for more than a few dozen patterns, which left
//! the keyword pass walking a DFA byte by byte. Instead the buffer is lowercased once (a
//! cheap, vectorised copy) and searched case-sensitively for anchors: every keyword contains
//! one anchor (chosen to be shared and rare), so anchor hits are few and each is confirmed
//! against its keywords with a plain comparison.

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

/// Picks anchors for lowercase `keywords` by greedy set cover: repeatedly the substring of
/// length `LEN` (or a whole shorter keyword) shared by the most uncovered keywords, rarest
/// first among equals.
pub(crate) fn choose(keywords: &[String]) -> Anchors {
    // Four bytes are more selective; three bytes are shared by more keywords. One Teddy
    // pass handles 64 anchors, so take the longest length that fits in the fewest passes.
    let four = choose_len(keywords, 4);
    if four.anchors.len() <= 64 {
        return four;
    }
    let three = choose_len(keywords, 3);
    if three.anchors.len().div_ceil(64) < four.anchors.len().div_ceil(64) {
        three
    } else {
        four
    }
}

fn choose_len(keywords: &[String], len: usize) -> Anchors {
    #[allow(non_snake_case)]
    let LEN = len;
    let mut uncovered: Vec<usize> = (0..keywords.len()).collect();
    let mut anchors: Vec<Vec<u8>> = Vec::new();
    let mut assigned: Vec<(u32, u32)> = vec![(0, 0); keywords.len()];
    while !uncovered.is_empty() {
        let mut counts: HashMap<&[u8], usize> = HashMap::new();
        for &k in &uncovered {
            let kw = keywords[k].as_bytes();
            let mut seen: Vec<&[u8]> = Vec::new();
            let grams: Vec<&[u8]> = if kw.len() <= LEN {
                vec![kw]
            } else {
                kw.windows(LEN).collect()
            };
            for g in grams {
                if !seen.contains(&g) {
                    seen.push(g);
                    *counts.entry(g).or_default() += 1;
                }
            }
        }
        let best = counts
            .iter()
            .max_by(|a, b| {
                a.1.cmp(b.1)
                    .then(rarity(b.0).total_cmp(&rarity(a.0)))
                    .then(b.0.cmp(a.0))
            })
            .map(|(g, _)| g.to_vec())
            .expect("an uncovered keyword has a gram");
        let ai = anchors.len() as u32;
        uncovered.retain(
            |&k| match memchr::memmem::find(keywords[k].as_bytes(), &best) {
                Some(off) => {
                    assigned[k] = (ai, off as u32);
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
        let a = choose(&kws);
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
    fn lowercase_only_touches_ascii_capitals() {
        let mut d = Vec::new();
        lowercase_into(b"AbZ@[`\xc3\x89\xff", &mut d);
        assert_eq!(d, b"abz@[`\xc3\x89\xff");
    }
}
