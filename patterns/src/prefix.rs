//! Does every match of a rule begin with one of its keywords?
//!
//! When it does, a keyword hit fixes where a match can start, so the rule's regex runs as an
//! anchored search at the hit: it fails within a few bytes on ordinary text, instead of
//! scanning a region around the hit and then searching backwards for the start. The answer
//! is computed from the pattern itself, so rule authors need not declare it.

use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, Hir, HirKind};

/// A match prefix: its byte classes, and once it spells a whole keyword, which one (the
/// next class is then recorded as a byte that can follow that keyword, and the prefix is
/// dropped).
#[derive(Clone)]
struct Seq {
    classes: Vec<ClassBytes>,
    done: Option<usize>,
}

/// A set of bytes.
pub(crate) type ByteSet = [u64; 4];

/// Adds every byte of `class` to `set`.
pub(crate) fn set_add(set: &mut ByteSet, class: &ClassBytes) {
    for r in class.iter() {
        for b in r.start()..=r.end() {
            set_insert(set, b);
        }
    }
}

/// Adds `b` to `set`.
pub(crate) fn set_insert(set: &mut ByteSet, b: u8) {
    set[(b >> 6) as usize] |= 1 << (b & 63);
}

/// Adds every byte of `other` to `set`.
pub(crate) fn set_union(set: &mut ByteSet, other: &ByteSet) {
    set.iter_mut().zip(other).for_each(|(w, o)| *w |= o);
}

/// Whether `b` is in `set`.
pub(crate) fn set_has(set: &ByteSet, b: u8) -> bool {
    set[(b >> 6) as usize] & (1 << (b & 63)) != 0
}

/// Whether `a` and `b` share a byte.
pub(crate) fn set_intersects(a: &ByteSet, b: &ByteSet) -> bool {
    a.iter().zip(b).any(|(x, y)| x & y != 0)
}

/// Walks the pattern keeping the match prefixes that are still "alive": consistent with the
/// start of some keyword but not yet covering a whole one. Prefixes that cover a keyword are
/// done and dropped; a prefix that fits no keyword proves the answer is no (`None`).
struct Walk<'a> {
    keywords: &'a [&'a [u8]],
    budget: usize,
    /// Per keyword: bytes that can come right after it in a match.
    follow: Vec<ByteSet>,
}

enum State {
    Done(usize),
    Alive,
    Dead,
}

impl Walk<'_> {
    fn classify(&self, seq: &[ClassBytes]) -> State {
        let n = seq.len();
        if let Some(k) = self
            .keywords
            .iter()
            .position(|k| k.len() <= n && implies(&seq[..k.len()], k))
        {
            return State::Done(k);
        }
        if self
            .keywords
            .iter()
            .any(|k| k.len() > n && implies(seq, &k[..n]))
        {
            return State::Alive;
        }
        State::Dead
    }

    fn push(&mut self, cur: Vec<Seq>, class: &ClassBytes) -> Option<Vec<Seq>> {
        // A small class like `[pousr]` or `[_-]` is split into one class per letter (both
        // cases together), so `gh[pousr]_` is seen as five prefixes, each a keyword.
        let size: usize = class.iter().map(|r| r.len()).sum();
        let parts: Vec<ClassBytes> = if size > 1 && size <= 16 {
            let mut groups: Vec<(u8, Vec<u8>)> = Vec::new();
            for r in class.iter() {
                for b in r.start()..=r.end() {
                    let key = b.to_ascii_lowercase();
                    match groups.iter_mut().find(|g| g.0 == key) {
                        Some(g) => g.1.push(b),
                        None => groups.push((key, vec![b])),
                    }
                }
            }
            groups
                .into_iter()
                .map(|(_, bs)| ClassBytes::new(bs.into_iter().map(|b| ClassBytesRange::new(b, b))))
                .collect()
        } else {
            vec![class.clone()]
        };
        let mut out = Vec::with_capacity(cur.len() * parts.len());
        for seq in cur {
            if let Some(k) = seq.done {
                set_add(&mut self.follow[k], class);
                continue;
            }
            for part in &parts {
                let mut seq = seq.clone();
                seq.classes.push(part.clone());
                match self.classify(&seq.classes) {
                    State::Done(k) => {
                        seq.done = Some(k);
                        out.push(seq);
                    }
                    State::Alive => out.push(seq),
                    State::Dead => return None,
                }
            }
        }
        if out.len() > self.budget {
            return None;
        }
        Some(out)
    }

    fn extend(&mut self, hir: &Hir, cur: Vec<Seq>) -> Option<Vec<Seq>> {
        if cur.is_empty() {
            return Some(cur);
        }
        if cur.len() > self.budget {
            return None;
        }
        self.budget -= 1;
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => Some(cur),
            HirKind::Literal(lit) => {
                let mut cur = cur;
                for &b in lit.0.iter() {
                    cur = self.push(cur, &ClassBytes::new([ClassBytesRange::new(b, b)]))?;
                    if cur.is_empty() {
                        break;
                    }
                }
                Some(cur)
            }
            HirKind::Class(Class::Bytes(c)) => self.push(cur, c),
            HirKind::Class(Class::Unicode(c)) => self.push(cur, &c.to_byte_class()?),
            HirKind::Capture(c) => self.extend(&c.sub, cur),
            HirKind::Concat(subs) => {
                let mut cur = cur;
                for s in subs {
                    cur = self.extend(s, cur)?;
                }
                Some(cur)
            }
            HirKind::Alternation(subs) => {
                let mut all = Vec::new();
                for s in subs {
                    all.extend(self.extend(s, cur.clone())?);
                }
                Some(all)
            }
            HirKind::Repetition(rep) => {
                let limit = self.keywords.iter().map(|k| k.len()).max().unwrap_or(0) + 1;
                let mut cur = cur;
                for _ in 0..rep.min {
                    if cur.is_empty() {
                        return Some(cur);
                    }
                    cur = self.extend(&rep.sub, cur)?;
                }
                let extra = rep.max.map(|m| m - rep.min);
                let mut stopped = Vec::new();
                let mut i = 0u32;
                while !cur.is_empty() && extra.is_none_or(|e| i < e) {
                    if i as usize > limit {
                        // Still short of a keyword after `limit` more copies: the repeated
                        // part can be empty; give up rather than loop.
                        return None;
                    }
                    stopped.extend(cur.iter().cloned());
                    cur = self.extend(&rep.sub, cur)?;
                    i += 1;
                }
                stopped.extend(cur);
                Some(stopped)
            }
        }
    }
}

/// True when every byte string matching `seq` is `kw` up to ASCII case.
fn implies(seq: &[ClassBytes], kw: &[u8]) -> bool {
    seq.iter().zip(kw).all(|(class, &k)| {
        let (lo, up) = (k.to_ascii_lowercase(), k.to_ascii_uppercase());
        class
            .iter()
            .all(|r| (r.start()..=r.end()).all(|b| b == lo || b == up))
    })
}

/// When every match of `hir` starts with one of `keywords`: for each keyword, the bytes
/// that can follow it in a match (all bytes if a match can end right after it). A keyword hit
/// followed by any other byte cannot start a match, so the regex need not even run.
pub(crate) fn anchored_follow(hir: &Hir, keywords: &[String]) -> Option<Vec<ByteSet>> {
    if keywords.is_empty() {
        return None;
    }
    let kws: Vec<&[u8]> = keywords.iter().map(|k| k.as_bytes()).collect();
    let mut walk = Walk {
        keywords: &kws,
        budget: 50_000,
        follow: vec![[0; 4]; kws.len()],
    };
    let rest = walk.extend(
        hir,
        vec![Seq {
            classes: Vec::new(),
            done: None,
        }],
    )?;
    for seq in rest {
        // A prefix still short of a keyword when the pattern ends: a match may not start
        // with a keyword at all.
        let k = seq.done?;
        walk.follow[k] = [u64::MAX; 4];
    }
    Some(walk.follow)
}

/// Whether every match of `hir` starts with one of `keywords`.
#[cfg(test)]
fn starts_with_keyword(hir: &Hir, keywords: &[String]) -> bool {
    anchored_follow(hir, keywords).is_some()
}

/// Bytes that every match of `hir` contains (each one individually).
fn required_bytes(hir: &Hir) -> Vec<u8> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(lit) => {
            let mut v = lit.0.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        }
        HirKind::Class(Class::Bytes(c)) => match c.iter().collect::<Vec<_>>()[..] {
            [r] if r.start() == r.end() => vec![r.start()],
            _ => Vec::new(),
        },
        HirKind::Class(Class::Unicode(_)) => Vec::new(),
        HirKind::Capture(c) => required_bytes(&c.sub),
        HirKind::Repetition(r) if r.min > 0 => required_bytes(&r.sub),
        HirKind::Repetition(_) => Vec::new(),
        HirKind::Concat(subs) => {
            let mut v: Vec<u8> = subs.iter().flat_map(required_bytes).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        HirKind::Alternation(subs) => {
            let mut it = subs.iter().map(required_bytes);
            let first = it.next().unwrap_or_default();
            it.fold(first, |acc, s| {
                acc.into_iter().filter(|b| s.contains(b)).collect()
            })
        }
    }
}

/// A byte that every match contains and that is rare in logs (`@`, `|`, `#`...), if any: a
/// keywordless rule with one runs only around that byte's occurrences (found with memchr)
/// instead of scanning every byte, e.g. email around `@`.
pub(crate) fn rare_required_byte(hir: &Hir) -> Option<u8> {
    const RARE: &[u8] = b"@|#$~^!`";
    let req = required_bytes(hir);
    RARE.iter().copied().find(|b| req.contains(b))
}

/// The most bytes a match of `hir` can have before its first `b`, when every match contains
/// `b`. A search for such a rule around an occurrence of `b` needs to look back only this far
/// (email: the local part and one boundary byte, 65 bytes, not the whole rule length).
pub(crate) fn max_before(hir: &Hir, b: u8) -> Option<usize> {
    let requires = |h: &Hir| required_bytes(h).contains(&b);
    match hir.kind() {
        HirKind::Literal(lit) => lit.0.iter().position(|&x| x == b),
        HirKind::Class(Class::Bytes(c)) => match c.iter().collect::<Vec<_>>()[..] {
            [r] if r.start() == b && r.end() == b => Some(0),
            _ => None,
        },
        HirKind::Capture(c) => max_before(&c.sub, b),
        // Every repetition contains `b`, so the first one is in the first repetition.
        HirKind::Repetition(r) if r.min > 0 => max_before(&r.sub, b),
        HirKind::Concat(subs) => {
            let mut before = 0usize;
            for sub in subs {
                if requires(sub) {
                    return before.checked_add(max_before(sub, b)?);
                }
                // A part that only may contain `b` can only move the first one earlier.
                before = before.checked_add(sub.properties().maximum_len()?)?;
            }
            None
        }
        HirKind::Alternation(subs) => subs
            .iter()
            .map(|sub| max_before(sub, b))
            .try_fold(0usize, |m, x| Some(m.max(x?))),
        _ => None,
    }
}

/// Parses `re` as the engine does (ASCII, bytes), for tests.
#[cfg(test)]
fn parse_ascii(re: &str) -> Hir {
    crate::compile::parse_regex(re).unwrap()
}

#[cfg(test)]
mod tests {
    #[test]
    fn required_byte_of_email_is_at() {
        let hir = parse_ascii(r"(?:^|[^a-z])(?P<secret>[a-z]{1,9}@(?:[a-z]{2,9}\.)+[a-z]{2,6})\b");
        assert_eq!(rare_required_byte(&hir), Some(b'@'));
        assert_eq!(rare_required_byte(&parse_ascii(r"a@b|c")), None);
    }

    #[test]
    fn max_before_bounds_the_look_back() {
        let email =
            parse_ascii(r"(?:^|[^a-z])(?P<secret>[a-z]{1,9}@(?:[a-z]{2,9}\.)+[a-z]{2,6})\b");
        assert_eq!(max_before(&email, b'@'), Some(10));
        assert_eq!(max_before(&parse_ascii(r"ab@c"), b'@'), Some(2));
        assert_eq!(max_before(&parse_ascii(r"(?:x{1,3}@|yy@)z"), b'@'), Some(3));
        // A part that may hold `@` before the required one: still an upper bound.
        assert_eq!(max_before(&parse_ascii(r"[a@]{0,4}@"), b'@'), Some(4));
        assert_eq!(max_before(&parse_ascii(r"a+@"), b'@'), None);
        assert_eq!(max_before(&parse_ascii(r"a@|b"), b'@'), None);
    }

    use super::*;
}

#[cfg(test)]
mod anchored_tests {
    use super::*;

    fn check(re: &str, kws: &[&str]) -> bool {
        let hir = parse_ascii(re);
        starts_with_keyword(&hir, &kws.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn anchored_rules_are_recognised() {
        assert!(check(r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b", &["akia", "asia"]));
        assert!(check(
            r"(?i)\bpass(?:word|wd)\s*[:=]\s*(?P<secret>\S{8,64})",
            &["password", "passwd"]
        ));
        assert!(check(r"://[^:]{0,9}:(?P<secret>[^@]{1,9})@", &["://"]));
        assert!(check(
            r"(?i:mrn|patient[ _-]?id)[:#]\d{5}",
            &["mrn", "patient"]
        ));
        assert!(check(
            r"\bgh[pousr]_[A-Za-z0-9]{36}",
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]
        ));
        assert!(check(
            r"(?i)api[_-]?key=",
            &["api_key", "api-key", "apikey"]
        ));
    }

    #[test]
    fn follow_sets() {
        let kws = vec!["token".to_string(), "mrn".to_string()];
        let f = anchored_follow(&parse_ascii(r"(?i)(?:token|mrn)\s{0,3}[:=]\s*x"), &kws).unwrap();
        for (k, set) in f.iter().enumerate() {
            assert!(
                set_has(set, b':') && set_has(set, b' ') && set_has(set, b'='),
                "{k}"
            );
            assert!(!set_has(set, b's') && !set_has(set, b'_'), "{k}");
        }
        let f = anchored_follow(&parse_ascii(r"\btoken\b"), &kws[..1]).unwrap();
        assert!(
            set_has(&f[0], b's'),
            "a match may end right after the keyword"
        );
    }

    #[test]
    fn unanchored_rules_are_not() {
        assert!(!check(r"[a-z]{1,5}://x", &["://"]));
        assert!(!check(r"(?:^|\s)_auth=\S{8}", &["_auth"]));
        assert!(!check(r"\bpass(?:word)?=\S{8}", &["password"]));
        assert!(!check(r"(?i)x?akia\d", &["akia"]));
    }
}
