//! Known secret values (CI masked variables) and the encoded forms they leak in.
//!
//! A value printed by a build rarely appears only raw: `echo $TOKEN | base64`, a URL query, a
//! JSON document or a hex dump all carry it too. Each value is expanded into every form below,
//! and all forms go into one exact Aho-Corasick automaton.

use base64::alphabet::{STANDARD, URL_SAFE};
use base64::engine::GeneralPurpose;
use base64::Engine;

/// Values shorter than this are refused: GitHub's runner once masked `{` everywhere because it
/// had no minimum.
pub const MIN_KNOWN_LEN: usize = 6;

/// Every form of `value` to mask: raw, base64 (standard and URL-safe alphabets, each at the
/// three alignments a value can take inside a longer base64 stream), URL-encoded, JSON-escaped
/// and hex (both cases). Duplicates and forms shorter than the minimum are dropped.
pub fn encoded_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms: Vec<Vec<u8>> = Vec::with_capacity(19);
    forms.push(value.to_vec());
    // One padded encoding per alphabet and alignment gives both base64 forms (10k values
    // took 310 M instructions at start-up with two encodings and five allocations each).
    let mut buf: Vec<u8> = Vec::with_capacity(value.len() + 2);
    let mut enc = String::with_capacity((value.len() + 2).div_ceil(3) * 4);
    for alphabet in [&STANDARD, &URL_SAFE] {
        let padded = GeneralPurpose::new(alphabet, base64::engine::general_purpose::PAD);
        for k in 0..3usize {
            buf.clear();
            buf.resize(k, 0);
            buf.extend_from_slice(value);
            enc.clear();
            padded.encode_string(&buf, &mut enc);
            let (aligned, tail) = base64_forms(enc.as_bytes(), k, buf.len());
            forms.push(aligned.to_vec());
            // The value at the very end of the encoded data: its last characters and the
            // padding are determined too (the usual `echo $SECRET | base64` case).
            forms.push(tail.to_vec());
        }
    }
    forms.push(url_encode(value, false));
    forms.push(url_encode(value, true));
    forms.push(json_escape(value, false));
    forms.push(json_escape(value, true));
    forms.push(hex(value, b"0123456789abcdef"));
    forms.push(hex(value, b"0123456789ABCDEF"));
    forms.retain(|f| f.len() >= MIN_KNOWN_LEN.min(value.len()) && !f.is_empty());
    forms.sort_unstable();
    forms.dedup();
    forms
}

/// From the padded base64 `enc` of `k` zero bytes then the value (`n` bytes in all): the
/// characters that depend only on the value when it sits `k` bytes past a 3-byte group
/// boundary (characters mixing in bits of the neighbouring bytes are cut off), and the same
/// with the value ending the stream, so the final characters and `=` padding belong to it.
fn base64_forms(enc: &[u8], k: usize, n: usize) -> (&[u8], &[u8]) {
    // Character i covers bits [6i, 6i+6) of the stream; the value occupies bits [8k, 8n).
    let start = (8 * k).div_ceil(6);
    let end = (8 * n) / 6;
    let aligned = if start < end {
        &enc[start..end]
    } else {
        &[][..]
    };
    (aligned, &enc[start.min(enc.len())..])
}

fn url_encode(value: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(value.len() * 3);
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(digits[(b >> 4) as usize]);
            out.push(digits[(b & 15) as usize]);
        }
    }
    out
}

fn json_escape(value: &[u8], escape_slash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' if escape_slash => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

fn hex(value: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() * 2);
    for &b in value {
        out.push(digits[(b >> 4) as usize]);
        out.push(digits[(b & 15) as usize]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;

    #[test]
    fn every_alignment_is_found_inside_a_longer_base64_stream() {
        let value = b"s3cr3t-Value!";
        let forms = encoded_forms(value);
        for prefix_len in 0..6 {
            let mut plain = b"prefix".to_vec();
            plain.truncate(prefix_len);
            plain.extend_from_slice(value);
            plain.extend_from_slice(b"suffix");
            let enc = B64.encode(&plain).into_bytes();
            assert!(
                forms
                    .iter()
                    .any(|f| enc.windows(f.len()).any(|w| w == f.as_slice())),
                "prefix {prefix_len}: {}",
                String::from_utf8_lossy(&enc)
            );
        }
    }

    #[test]
    fn url_json_hex_forms() {
        let forms = encoded_forms(b"p@ss w\"rd/1");
        let has = |s: &str| forms.iter().any(|f| f == s.as_bytes());
        assert!(has("p%40ss%20w%22rd%2F1"));
        assert!(has("p%40ss%20w%22rd%2f1"));
        assert!(has("p@ss w\\\"rd\\/1"));
        assert!(has(&"p@ss w\"rd/1"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()));
    }
}

/// Finds every form of every known value in a buffer.
///
/// Few forms go into one Aho-Corasick automaton with its SIMD prefilter. Thousands of forms
/// (10k masked variables) would make that automaton hundreds of megabytes and walk it byte
/// by byte, so large sets use sampled hash filters instead (see [`Tier`]).
#[derive(Clone, Debug)]
pub struct KnownValues {
    imp: KnownImp,
}

#[derive(Clone, Debug)]
enum KnownImp {
    Small(aho_corasick::AhoCorasick),
    Large(Vec<Tier>),
}

/// Forms of similar length, found by sampling. If every form is at least `min` bytes long,
/// an occurrence starting at `s` covers one of the positions `0, S, 2S, ...` with
/// `S = min - K + 1`, at an offset `o < S` from its start, with `K` bytes of the form there.
/// So each form is indexed under the `K` bytes at each offset `0..S`, and only every `S`-th
/// position of the input is looked up: one load, a multiply and a bit test per `S` bytes.
/// Long forms use `K = 8`: hex forms would otherwise share their 4-byte keys with every
/// digest in a log.
///
/// Memory is laid out for few cache misses, since 10k values make millions of entries: a
/// position that passes the filter finds its candidates in one bucket (`starts`, then
/// `items`) instead of a binary search over all entries (which was over half the time of
/// the 10k-value benchmark), and forms live in one arena.
#[derive(Clone, Debug)]
struct Tier {
    stride: usize,
    key_len: usize,
    /// A blocked Bloom filter: each key sets two bits of one word (8 bits per key).
    words: Vec<u64>,
    word_mask: u32,
    /// Per bucket (8 per filter word): where its items start in `items`; one extra at the
    /// end.
    starts: Vec<u32>,
    /// `form index << 3 | offset of the key in the form`, grouped by bucket.
    items: Vec<u32>,
    /// All forms back to back; form `i` is `arena[ends[i-1]..ends[i]]`.
    arena: Vec<u8>,
    ends: Vec<u32>,
}

const SMALL_LIMIT: usize = 64;
/// Longest sampling stride: larger strides index more entries per form for little gain.
/// Offsets are stored in 3 bits.
const MAX_STRIDE: usize = 8;

#[inline(always)]
fn key(b: &[u8], len: usize) -> u64 {
    // The two lengths in use, as single loads (a variable-length copy is a memcpy call).
    match len {
        8 => return u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        4 => return u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as u64,
        _ => {}
    }
    let mut k = [0u8; 8];
    k[..len].copy_from_slice(&b[..len]);
    u64::from_le_bytes(k)
}

/// Where key `k` lives: its filter word, the two bits it sets there, and its bucket.
/// Two bits in one word (a blocked Bloom filter) give a lower false-positive rate at 8 bits
/// per key than one bit at 16, so the filter is half the size: with 10k values it is the
/// L2 cache's size rather than twice it, and the other passes evict less of it.
#[inline(always)]
fn place(k: u64, word_mask: u32) -> (usize, u64, usize) {
    let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let word = (h >> 40) as u32 & word_mask;
    let g = (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let bits = 1u64 << (g >> 58) | 1u64 << ((g >> 52) & 63);
    let bucket = (word as usize) << 3 | ((g >> 49) & 7) as usize;
    (word as usize, bits, bucket)
}

impl Tier {
    fn new(forms: Vec<Vec<u8>>, key_len: usize) -> Tier {
        let min = forms.iter().map(Vec::len).min().unwrap_or(key_len);
        let stride = (min + 1 - key_len).clamp(1, MAX_STRIDE);
        // 8 bits per entry, 2 per key: about one random position in 25 passes the test.
        let nwords = (forms.len() * stride / 8).next_power_of_two().max(1 << 10);
        let word_mask = (nwords - 1) as u32;
        let mut words = vec![0u64; nwords];
        // Items grouped by bucket with a counting sort (two passes over the keys; sorting
        // the pairs was most of the start-up time with 10k values).
        let place_of = |fi: usize, off: usize| place(key(&forms[fi][off..], key_len), word_mask);
        // Counts, then running ends, then each item placed by decrementing its bucket's end,
        // which leaves the starts behind (no second 8 MiB array for the fill positions).
        let mut starts = vec![0u32; nwords * 8 + 1];
        for fi in 0..forms.len() {
            for off in 0..stride {
                let (w, bits, b) = place_of(fi, off);
                words[w] |= bits;
                starts[b] += 1;
            }
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut items = vec![0u32; forms.len() * stride];
        for fi in 0..forms.len() {
            for off in 0..stride {
                let (_, _, b) = place_of(fi, off);
                starts[b] -= 1;
                items[starts[b] as usize] = (fi as u32) << 3 | off as u32;
            }
        }
        let mut arena = Vec::with_capacity(forms.iter().map(Vec::len).sum());
        let mut ends = Vec::with_capacity(forms.len());
        for f in &forms {
            arena.extend_from_slice(f);
            ends.push(arena.len() as u32);
        }
        Tier {
            stride,
            key_len,
            words,
            word_mask,
            starts,
            items,
            arena,
            ends,
        }
    }

    fn form(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.arena[start..self.ends[i] as usize]
    }

    fn for_each(&self, hay: &[u8], f: &mut impl FnMut(usize, usize)) {
        // (Eight branch-free filter tests per step, to overlap their cache misses, measured
        // slower than this plain loop.)
        let mut p = 0;
        while p + self.key_len <= hay.len() {
            let (w, bits, bucket) = place(key(&hay[p..], self.key_len), self.word_mask);
            if self.words[w] & bits == bits {
                self.candidates(hay, p, bucket, f);
            }
            p += self.stride;
        }
    }

    /// Checks the forms of `bucket` whose key may sit at `p`.
    fn candidates(&self, hay: &[u8], p: usize, bucket: usize, f: &mut impl FnMut(usize, usize)) {
        let (lo, hi) = (
            self.starts[bucket] as usize,
            self.starts[bucket + 1] as usize,
        );
        for &item in &self.items[lo..hi] {
            let off = (item & 7) as usize;
            let Some(start) = p.checked_sub(off) else {
                continue;
            };
            let form = self.form((item >> 3) as usize);
            if hay[start..].starts_with(form) {
                f(start, start + form.len());
            }
        }
    }
}

impl KnownValues {
    /// Builds the matcher over `values` and all their encoded forms; `None` when empty.
    pub fn new<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<KnownValues> {
        let mut forms: Vec<Vec<u8>> = values.flat_map(encoded_forms).collect();
        forms.retain(|f| f.len() >= 4);
        if forms.is_empty() {
            return None;
        }
        forms.sort_unstable();
        forms.dedup();
        if forms.len() <= SMALL_LIMIT {
            // A failed build (it cannot, for so few literals) falls through to the filter:
            // never to matching nothing.
            if let Ok(ac) = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&forms)
            {
                return Some(KnownValues {
                    imp: KnownImp::Small(ac),
                });
            }
        }
        // Short forms would force a short stride and short keys on all: own tier.
        let (long, short): (Vec<_>, Vec<_>) =
            forms.into_iter().partition(|f| f.len() >= MAX_STRIDE + 7);
        let tiers = [(short, 4), (long, 8)]
            .into_iter()
            .filter(|(t, _)| !t.is_empty())
            .map(|(t, k)| Tier::new(t, k))
            .collect();
        Some(KnownValues {
            imp: KnownImp::Large(tiers),
        })
    }

    /// Calls `f(start, end)` for every occurrence (leftmost-longest for the automaton; every
    /// occurrence for the filters, a superset that masks the same bytes).
    pub(crate) fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize, usize)) {
        match &self.imp {
            KnownImp::Small(ac) => {
                for m in ac.find_iter(hay) {
                    f(m.start(), m.end());
                }
            }
            KnownImp::Large(tiers) => {
                for t in tiers {
                    t.for_each(hay, &mut f);
                }
            }
        }
    }
}

#[cfg(test)]
mod matcher_tests {
    use super::*;

    /// Every occurrence is found, at every alignment against the sampling stride, for short
    /// and long forms alike.
    #[test]
    fn sampled_filter_finds_every_occurrence() {
        let mut values: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("long-value-{i:04}-xyz").into_bytes())
            .collect();
        values.push(b"tiny-1".to_vec());
        let k = KnownValues::new(values.iter().map(|v| v.as_slice())).unwrap();
        for v in [&values[0], &values[123], &values[200]] {
            for pad in 0..12 {
                let mut hay = vec![b'.'; pad];
                hay.extend_from_slice(v);
                hay.extend_from_slice(b"..");
                let mut got = Vec::new();
                k.for_each(&hay, |a, b| got.push((a, b)));
                assert!(
                    got.contains(&(pad, pad + v.len())),
                    "{} at {pad}: {got:?}",
                    String::from_utf8_lossy(v)
                );
            }
        }
    }

    #[test]
    fn small_and_large_sets_find_the_same_spans() {
        let values: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("value-{i:04}-secret").into_bytes())
            .collect();
        let hay = b"x value-0007-secret y dmFsdWUtMDI5OS1zZWNyZXQ= z value-0300-secret".to_vec();
        let large = KnownValues::new(values.iter().map(|v| v.as_slice())).unwrap();
        assert!(matches!(large.imp, KnownImp::Large(_)));
        let mut got = Vec::new();
        large.for_each(&hay, |a, b| got.push((a, b)));
        let small = KnownValues::new([&values[7][..], &values[299][..]].into_iter()).unwrap();
        assert!(matches!(small.imp, KnownImp::Small(_)));
        let mut want = Vec::new();
        small.for_each(&hay, |a, b| want.push((a, b)));
        assert_eq!(got.first(), want.first());
        assert!(got.len() >= 2 && want.len() == 2, "{got:?} {want:?}");
        // The same bytes are covered, padding of the base64 tail form included.
        let cover = |spans: &[(usize, usize)]| {
            let mut c = vec![false; hay.len()];
            for &(a, b) in spans {
                c[a..b].iter_mut().for_each(|x| *x = true);
            }
            c
        };
        assert_eq!(cover(&got), cover(&want), "{got:?} {want:?}");
        assert!(cover(&got)[hay.iter().position(|&b| b == b'=').unwrap()]);
        assert!(
            !got.iter().any(|&(a, _)| a > 50),
            "value-0300 was never registered"
        );
    }
}
