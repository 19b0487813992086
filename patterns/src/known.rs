//! Known secret values (CI masked variables) and the encoded forms they leak in.
//!
//! A value printed by a build rarely appears only raw: `echo $TOKEN | base64`, a URL query, a
//! JSON document or a hex dump all carry it too. Each value is expanded into every form below,
//! and the forms are found by one Aho-Corasick automaton (few forms) or sampled hash filters
//! (see [`KnownValues`]).

use base64::engine::general_purpose;
use base64::Engine;

/// Values shorter than this are refused: GitHub's runner once masked `{` everywhere because it
/// had no minimum.
pub const MIN_KNOWN_LEN: usize = 6;

/// The longest form of a value of `len` bytes: JSON's `\u00XX` for a control byte, six bytes
/// per byte. (Windows over long lines must overlap by this much.)
pub(crate) fn longest_form(len: usize) -> usize {
    len * 6
}

/// Every form of `value` to mask: raw, base64 (standard and URL-safe alphabets, each at the
/// three alignments a value can take inside a longer base64 stream), URL-encoded, JSON-escaped
/// and hex (both cases). Duplicates and forms shorter than the minimum are dropped.
pub fn encoded_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut fb = FormBuf::default();
    fb.fill(value);
    fb.ranges.iter().map(|r| fb.get(*r).to_vec()).collect()
}

/// The forms of one value, written back to back into one reused buffer: 10k values made
/// 190k small allocations at start-up when each form was its own `Vec`.
#[derive(Default)]
struct FormBuf {
    bytes: Vec<u8>,
    /// (start, end) in `bytes`, shortest first, without duplicates, after [`FormBuf::fill`].
    ranges: Vec<(u32, u32)>,
    tmp: Vec<u8>,
    enc: String,
}

impl FormBuf {
    fn get(&self, (a, b): (u32, u32)) -> &[u8] {
        &self.bytes[a as usize..b as usize]
    }

    fn push(&mut self, f: &[u8]) {
        let a = self.bytes.len() as u32;
        self.bytes.extend_from_slice(f);
        self.ranges.push((a, self.bytes.len() as u32));
    }

    /// Starts a form written in place by `write`.
    fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let a = self.bytes.len() as u32;
        write(&mut self.bytes);
        self.ranges.push((a, self.bytes.len() as u32));
    }

    fn fill(&mut self, value: &[u8]) {
        self.bytes.clear();
        self.ranges.clear();
        self.push(value);
        // One padded encoding per alignment gives both base64 forms, and the URL-safe
        // alphabet's by translating its two characters (when the encoding has them: else the
        // forms are the same).
        for k in 0..3usize {
            self.tmp.clear();
            self.tmp.resize(k, 0);
            self.tmp.extend_from_slice(value);
            let n = self.tmp.len();
            let mut enc = std::mem::take(&mut self.enc);
            enc.clear();
            // (Appending to a String cannot fail, unlike encoding into a sized slice.)
            general_purpose::STANDARD.encode_string(&self.tmp, &mut enc);
            let (aligned, tail) = base64_forms(enc.as_bytes(), k, n);
            self.push(aligned);
            // The value at the very end of the encoded data: its last characters and the
            // padding are determined too (the usual `echo $SECRET | base64` case).
            self.push(tail);
            if enc.bytes().any(|b| b == b'+' || b == b'/') {
                let url_safe = |b: u8| match b {
                    b'+' => b'-',
                    b'/' => b'_',
                    b => b,
                };
                self.push_with(|o| o.extend(aligned.iter().map(|&b| url_safe(b))));
                self.push_with(|o| o.extend(tail.iter().map(|&b| url_safe(b))));
            }
            self.enc = enc;
        }
        // URL and JSON escaping leave most values as they are: then they are the raw form.
        if !value.iter().all(|&b| url_unreserved(b)) {
            self.push_with(|o| url_encode(value, false, o));
            self.push_with(|o| url_encode(value, true, o));
        }
        if value
            .iter()
            .any(|&b| b < 0x20 || matches!(b, b'"' | b'\\' | b'/'))
        {
            self.push_with(|o| json_escape(value, false, o));
            self.push_with(|o| json_escape(value, true, o));
        }
        self.push_with(|o| hex(value, b"0123456789abcdef", o));
        self.push_with(|o| hex(value, b"0123456789ABCDEF", o));
        let min = MIN_KNOWN_LEN.min(value.len()).max(1) as u32;
        self.ranges.retain(|&(a, b)| b - a >= min);
        // Shortest first (a form's prefixes come before it), duplicates dropped: only forms
        // of equal length need comparing (sorting the forms by content took 6k instructions
        // per value).
        self.ranges.sort_by_key(|&(a, b)| b - a);
        let bytes = &self.bytes;
        let get = |(a, b): (u32, u32)| &bytes[a as usize..b as usize];
        let (mut kept, mut same_len_from) = (0, 0);
        for i in 0..self.ranges.len() {
            let r = self.ranges[i];
            if kept > 0 && self.ranges[kept - 1].1 - self.ranges[kept - 1].0 != r.1 - r.0 {
                same_len_from = kept;
            }
            if !self.ranges[same_len_from..kept]
                .iter()
                .any(|&k| bytes[k.0 as usize] == bytes[r.0 as usize] && get(k) == get(r))
            {
                self.ranges[kept] = r;
                kept += 1;
            }
        }
        self.ranges.truncate(kept);
    }
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

fn url_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn url_encode(value: &[u8], upper: bool, out: &mut Vec<u8>) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    for &b in value {
        if url_unreserved(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', digits[(b >> 4) as usize], digits[(b & 15) as usize]]);
        }
    }
}

fn json_escape(value: &[u8], escape_slash: bool, out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' if escape_slash => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                DIGITS[(b >> 4) as usize],
                DIGITS[(b & 15) as usize],
            ]),
            _ => out.push(b),
        }
    }
}

fn hex(value: &[u8], digits: &[u8; 16], out: &mut Vec<u8>) {
    for &b in value {
        out.extend_from_slice(&[digits[(b >> 4) as usize], digits[(b & 15) as usize]]);
    }
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
/// by byte, so large sets use sampled hash filters instead (see `Tier` in the source).
#[derive(Clone, Debug)]
pub struct KnownValues {
    imp: KnownImp,
}

#[derive(Clone, Debug)]
enum KnownImp {
    Small(aho_corasick::AhoCorasick),
    Large(Large),
}

/// The sampled filters and the forms they index.
#[derive(Clone, Debug)]
struct Large {
    tiers: Vec<Tier>,
    /// All forms back to back.
    arena: Vec<u8>,
    /// Suffixes (ranges of `arena`) that extend an indexed form into another form.
    exts: Vec<(u32, u32)>,
}

/// An indexed form: its bytes `arena[start..end]`, and its extensions `exts[ext.0..ext.1]`.
///
/// A form that has another form of the same value as a prefix (the base64 form of a value
/// that ends the stream, with its last characters and padding, extends the aligned one) is
/// not indexed but checked as a suffix where its prefix matched: every occurrence of it
/// begins with an occurrence of the prefix. That keeps a third of the forms out of the
/// filters.
#[derive(Clone, Copy, Debug)]
struct Form {
    start: u32,
    end: u32,
    ext: (u32, u32),
}

impl Form {
    fn bytes<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.start as usize..self.end as usize]
    }
}

/// Forms of similar length, found by sampling. If every form is at least `min` bytes long,
/// an occurrence starting at `s` covers one of the positions `0, S, 2S, ...` with
/// `S = min - K + 1`, at an offset `o < S` from its start, with `K` bytes of the form there.
/// So each form is indexed under the `K` bytes at each offset `0..S`, and only every `S`-th
/// position of the input is looked up: one load, a multiply and a bit test per `S` bytes.
/// Long forms use `K = 8`: hex forms would otherwise share their 4-byte keys with every
/// digest in a log.
///
/// With 10k values the filter is larger than the L2 cache, so each lookup is a likely cache
/// miss: a longer stride means fewer lookups for a larger filter, a good trade once the
/// filter has left L2 anyway (10k values, the bench log's known values alone: stride 8
/// 0.47 s, 13 0.32 s per 512 MiB), and the lookups are prefetched (see [`Tier::scan`]).
/// A position that passes the filter finds its candidates in one bucket (`starts`, then
/// `items`) instead of a binary search over all entries.
#[derive(Clone, Debug)]
struct Tier {
    stride: usize,
    key_len: usize,
    /// A blocked Bloom filter: each key sets three bits of one word.
    words: Vec<u64>,
    /// Per bucket (one per filter word, ~4 items): where its items start in `items`; one
    /// extra at the end. (Eight buckets per word made this array 6 MB with 10k values, and
    /// filling it at start-up a cache miss per key.)
    starts: Vec<u32>,
    /// Which bytes occur in no indexed key (see [`Alphabet`]).
    alphabet: Alphabet,
    /// The fingerprint's top bits that fit above `fp_shift` ([`fp_field`]), then `form index
    /// << OFF_BITS | offset of the key in the form`, grouped by bucket. The key's fingerprint
    /// rejects a filter false positive without loading the form (a cache miss each, which
    /// made the comparisons a tenth of the 10k-value run). Eight bits do that for all but 1
    /// in 64 of a pass's ~4 items; 32 made this array twice the size (8.5 MB with 10k
    /// values), filled at start-up a cache miss and a page fault at a time.
    items: Vec<u32>,
    /// Where the fingerprint starts: above the largest form index, at bit 24 or higher, so
    /// that up to 2^19 forms (~50k values) keep all 8 bits and 2^27 forms none.
    fp_shift: u32,
    forms: Vec<Form>,
}

const SMALL_LIMIT: usize = 64;
/// Longest sampling stride (offsets are stored in [`OFF_BITS`] bits).
const MAX_STRIDE: usize = 16;
const OFF_BITS: u32 = 5;
const _: () = assert!(MAX_STRIDE <= 1 << OFF_BITS);
/// Forms per tier, so that `form << OFF_BITS` fits in a `u32`.
const TIER_FORMS: usize = 1 << (32 - OFF_BITS);
/// Bits of a fingerprint (see [`fingerprint`], [`Tier::items`]).
const FP_BITS: u32 = 8;
/// Forms shorter than this get their own tier with 4-byte keys (they would force a short
/// stride on all the others).
const LONG_FORM: usize = 15;
/// Filter bits per key (three set per key): 0.42% of the bench log's sampled positions pass
/// the test. With two bits set per key, 1.9% passed at 12 bits and 3.8% at 8. Each pass
/// costs two dependent loads that miss the cache (`starts`, then `items`; prefetched in
/// turn, see [`Tier::scan`]), while the larger filter's own loads are prefetched anyway.
const BITS_PER_KEY: usize = 16;

/// The key at the start of `b`: 8 bytes, or 4 for the short tier (single loads).
#[inline(always)]
fn key(b: &[u8], len: usize) -> u64 {
    if len == 8 {
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
    } else {
        u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as u64
    }
}

/// Where key `k` lives in a filter of `nwords` words: its word, the three bits it sets there,
/// and the hash for [`fingerprint`]. Several bits in one word (a blocked Bloom filter) give a
/// lower false-positive rate than one bit in a filter of the same size. This runs at every
/// sampled position, so it is one multiplication and shifts; the rest is computed only for
/// filter hits.
#[inline(always)]
fn probe(k: u64, nwords: u64) -> (usize, u64, u64) {
    place(hash(k), nwords)
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn hash(k: u64) -> u64 {
    k.wrapping_mul(MULTIPLIER)
}

/// [`probe`] from the key's hash: the sampling loop hashes a key once, when it prefetches its
/// word, and keeps the hash until it looks the word up.
#[inline(always)]
fn place(h: u64, nwords: u64) -> (usize, u64, u64) {
    // Range reduction by multiplication: any filter size, not only powers of two.
    let word = ((h >> 32) * nwords) >> 32;
    // (These bits of the product depend on the key's first four bytes only; the word on
    // all eight. Folding the high half in, `h ^ h >> 32`, raised the pass rate from 0.42% to
    // 0.55% on the bench log: it ties the bits to the word.)
    let bits = 1u64 << ((h >> 14) & 63) | 1u64 << ((h >> 20) & 63) | 1u64 << ((h >> 26) & 63);
    (word as usize, bits, h)
}

/// A key's fingerprint ([`FP_BITS`] bits), from its [`probe`] hash. (Its bucket is its
/// filter word.)
#[inline(always)]
fn fingerprint(h: u64) -> u32 {
    let g = (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (g >> (64 - FP_BITS)) as u32
}

/// The top bits of fingerprint `fp` that fit above bit `shift` of an item, in place.
#[inline(always)]
fn fp_field(fp: u32, shift: u32) -> u32 {
    ((fp as u64) >> (shift - (32 - FP_BITS)) << shift) as u32
}

/// The bytes no indexed key contains. A sampled position whose key holds one cannot start an
/// occurrence, so the eight-wide sampling loop neither prefetches nor tests its filter word:
/// masked values are tokens, and most of a log's 8-byte windows hold a space, a colon, a
/// bracket or a newline (70% of the bench log's, against the 10k bench values' keys).
#[derive(Clone, Debug)]
struct Alphabet {
    /// Per byte below 0x80: 0xFF when no key contains it, else 0.
    absent: [u8; 128],
    /// 0x80, the bit that marks the bytes from 0x80 up absent; 0 when nothing is skipped.
    high: u8,
    /// A hash that fails the filter: a skipped position's stand-in in the sampling loop's
    /// ring, so that the lookup side needs no test of its own. (Any such hash will do: a key
    /// that hashes to it is not in the filter.)
    skip: u64,
}

impl Alphabet {
    /// From the first `span` bytes of each form (those its keys cover) and the filled filter.
    fn new(forms: &[Form], span: usize, arena: &[u8], words: &[u64]) -> Alphabet {
        let mut seen = [false; 256];
        for f in forms {
            let form = f.bytes(arena);
            for &b in &form[..span.min(form.len())] {
                seen[b as usize] = true;
            }
        }
        let fails = |h: u64| {
            let (w, bits, _) = place(h, words.len() as u64);
            words[w] & bits != bits
        };
        let skip = (0..64u64).map(hash).find(|&h| fails(h));
        // Bytes from 0x80 up are looked up by their low seven bits: with one of them in a
        // key, the table would mistake other high bytes for it, or it for an absent low
        // byte; such sets (rare: masked values are ASCII) skip nothing, nor do filters so
        // full that no hash fails them.
        let (Some(skip), false) = (skip, seen[128..].iter().any(|&s| s)) else {
            return Alphabet {
                absent: [0; 128],
                high: 0,
                skip: 0,
            };
        };
        let mut absent = [0u8; 128];
        for (b, a) in absent.iter_mut().enumerate() {
            *a = if seen[b] { 0 } else { 0xFF };
        }
        Alphabet {
            absent,
            high: 0x80,
            skip,
        }
    }
}

impl Tier {
    fn new(forms: Vec<Form>, key_len: usize, arena: &[u8]) -> Tier {
        let min = forms
            .iter()
            .map(|f| (f.end - f.start) as usize)
            .min()
            .unwrap_or(key_len);
        let stride = (min + 1 - key_len).clamp(1, MAX_STRIDE);
        let nwords = (forms.len() * stride * BITS_PER_KEY / 64).max(1 << 10);
        let mut words = vec![0u64; nwords];
        // Items grouped by bucket with a counting sort: counts, then running ends, then each
        // item placed by decrementing its bucket's end, which leaves the starts behind.
        let mut starts = vec![0u32; nwords + 1];
        let hashes = |f: &Form| {
            let form = f.bytes(arena);
            (0..stride).map(move |off| probe(key(&form[off..], key_len), nwords as u64))
        };
        for f in &forms {
            for (w, bits, _) in hashes(f) {
                words[w] |= bits;
                starts[w] += 1;
            }
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        // Hashed again rather than kept: the keys' buckets and fingerprints would be a
        // temporary array as large as `items` at the start-up's peak.
        let mut items = vec![0u32; forms.len() * stride];
        let fp_shift =
            (OFF_BITS + usize::BITS - (forms.len().max(1) - 1).leading_zeros()).max(32 - FP_BITS);
        for (fi, f) in forms.iter().enumerate() {
            for (off, (w, _, h)) in hashes(f).enumerate() {
                starts[w] -= 1;
                items[starts[w] as usize] =
                    fp_field(fingerprint(h), fp_shift) | (fi as u32) << OFF_BITS | off as u32;
            }
        }
        let alphabet = Alphabet::new(&forms, stride - 1 + key_len, arena, &words);
        Tier {
            stride,
            key_len,
            words,
            starts,
            alphabet,
            items,
            fp_shift,
            forms,
        }
    }

    fn for_each(&self, hay: &[u8], large: &Large, f: &mut impl FnMut(usize, usize)) {
        #[cfg(target_arch = "x86_64")]
        if wide::available() {
            // SAFETY: the CPU has AVX-512 F, BW, DQ and VBMI (checked just above).
            unsafe {
                match self.key_len {
                    8 => self.scan_wide::<8>(hay, large, f),
                    _ => self.scan_wide::<4>(hay, large, f),
                }
            }
            return;
        }
        match self.key_len {
            8 => self.scan::<8, false>(hay, large, f),
            _ => self.scan::<4, false>(hay, large, f),
        }
    }

    /// [`Tier::scan`] hashing eight positions per instruction.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vbmi")]
    unsafe fn scan_wide<const K: usize>(
        &self,
        hay: &[u8],
        large: &Large,
        f: &mut impl FnMut(usize, usize),
    ) {
        self.scan::<K, true>(hay, large, f)
    }

    /// The sampling loop, with the key length a constant (one load per position).
    ///
    /// With 10k values the filter is larger than the L2 cache, and the loop stalled on each
    /// word's load. So it runs in steps of about [`STEP`] bytes: first the words of the positions
    /// up to [`AHEAD`] bytes past the step are prefetched, then the step's are looked up.
    ///
    /// `WIDE` (only from [`Tier::scan_wide`]): the keys of eight positions are picked out of
    /// 128 loaded bytes by one byte permutation and hashed, placed and tested eight at a time;
    /// only the filter words are loaded one by one. The loop's own instructions, not the
    /// filter's misses, were half its time (the same with 100 values and an L1-sized filter).
    /// Positions whose keys hold a byte that no key has are skipped there (see [`Alphabet`]):
    /// with the 10k bench values, 26% fewer of the loop's samples on the 64 MiB bench log.
    #[inline(always)]
    fn scan<const K: usize, const WIDE: bool>(
        &self,
        hay: &[u8],
        large: &Large,
        f: &mut impl FnMut(usize, usize),
    ) {
        #[cfg(target_arch = "x86_64")]
        debug_assert!(!WIDE || wide::available(), "WIDE only from `scan_wide`");
        let nwords = self.words.len() as u64;
        // Sampled positions before `last` have a whole key.
        let last = hay.len().saturating_sub(K - 1);
        let (mut look, mut fetch, mut end) = (0, 0, 0);
        // Positions that passed the filter are checked two steps later: by then their
        // bucket's start (prefetched when they passed) and its first items (prefetched a
        // step later, from that start) have arrived.
        let mut fresh = [(0usize, 0usize, 0u32); PASSED];
        let mut ready = [(0usize, 0usize, 0u32); PASSED];
        let (mut nf, mut nr) = (0, 0);
        // Position `p`, whose key's word `w` passed the filter, with fingerprint `fp`:
        // deferred, or checked at once when this step's deferral slots are full.
        macro_rules! passed {
            ($p:expr, $w:expr, $fp:expr) => {{
                let (p, w, fp) = ($p, $w, $fp);
                if nf < PASSED {
                    prefetch(&self.starts[w]);
                    fresh[nf] = (p, w, fp);
                    nf += 1;
                } else {
                    self.candidates(hay, p, w, fp, large, f);
                }
            }};
        }
        // Steps and look-ahead in whole groups of eight samples, so that the eight-wide loops
        // take every sample but the input's last few. (Steps of 256 bytes left 20% of the
        // samples at stride 13 to the one-at-a-time loops.)
        let group = 8 * self.stride;
        let step = STEP / group * group;
        let ahead = AHEAD.div_ceil(group) * group;
        // The hashes of the positions from `look` to `fetch`, by sample number.
        let mut ring = [0u64; RING];
        let (mut li, mut fi) = (0usize, 0usize);
        #[cfg(target_arch = "x86_64")]
        let picks = if WIDE {
            wide::picks(self.stride)
        } else {
            [0; 64]
        };
        while look < last {
            for &(p, w, fp) in &ready[..nr] {
                self.candidates(hay, p, w, fp, large, f);
            }
            for &(_, w, _) in &fresh[..nf] {
                if let Some(item) = self.items.get(self.starts[w] as usize) {
                    prefetch(item);
                }
            }
            ready[..nf].copy_from_slice(&fresh[..nf]);
            (nr, nf) = (nf, 0);
            end = (end + step).min(last);
            let fetch_end = (end + ahead).min(last);
            #[cfg(target_arch = "x86_64")]
            if WIDE {
                // Eight positions whose keys lie in the 128 bytes from `fetch`.
                while fetch + 7 * self.stride < fetch_end && fetch + 128 <= hay.len() {
                    // SAFETY: only `scan_wide` (AVX-512 F, BW, DQ, VBMI) passes WIDE, and
                    // the 128 bytes are in bounds (checked just above).
                    let words = unsafe {
                        wide::hash8::<K>(hay, fetch, &picks, &self.alphabet, nwords, &mut ring, fi)
                    };
                    for w in words {
                        prefetch(&self.words[w as usize]);
                    }
                    fetch += 8 * self.stride;
                    fi += 8;
                }
            }
            while fetch < fetch_end {
                let h = hash(key(&hay[fetch..], K));
                ring[fi % RING] = h;
                prefetch(&self.words[place(h, nwords).0]);
                fetch += self.stride;
                fi += 1;
            }
            #[cfg(target_arch = "x86_64")]
            if WIDE {
                while look + 7 * self.stride < end {
                    // SAFETY: as for `hash8`.
                    let (words, bits) = unsafe { wide::place8(&ring, li, nwords) };
                    for j in 0..8 {
                        let w = words[j] as usize;
                        if self.words[w] & bits[j] == bits[j] {
                            let fp = fingerprint(ring[(li + j) % RING]);
                            passed!(look + j * self.stride, w, fp);
                        }
                    }
                    look += 8 * self.stride;
                    li += 8;
                }
            }
            while look < end {
                let (w, bits, h) = place(ring[li % RING], nwords);
                if self.words[w] & bits == bits {
                    passed!(look, w, fingerprint(h));
                }
                look += self.stride;
                li += 1;
            }
        }
        for &(p, w, fp) in ready[..nr].iter().chain(&fresh[..nf]) {
            self.candidates(hay, p, w, fp, large, f);
        }
    }

    /// Checks the forms of `bucket` whose key may sit at `p`.
    #[inline(never)]
    fn candidates(
        &self,
        hay: &[u8],
        p: usize,
        bucket: usize,
        fp: u32,
        large: &Large,
        f: &mut impl FnMut(usize, usize),
    ) {
        let (lo, hi) = (
            self.starts[bucket] as usize,
            self.starts[bucket + 1] as usize,
        );
        let below = ((1u64 << self.fp_shift) - 1) as u32;
        let fp = fp_field(fp, self.fp_shift);
        for &item in &self.items[lo..hi] {
            if item & !below != fp {
                continue;
            }
            let item = item & below;
            let off = (item & ((1 << OFF_BITS) - 1)) as usize;
            let Some(start) = p.checked_sub(off) else {
                continue;
            };
            let form = &self.forms[(item >> OFF_BITS) as usize];
            let bytes = form.bytes(&large.arena);
            if !hay[start..].starts_with(bytes) {
                continue;
            }
            let end = start + bytes.len();
            f(start, end);
            for &(a, b) in &large.exts[form.ext.0 as usize..form.ext.1 as usize] {
                if hay[end..].starts_with(&large.arena[a as usize..b as usize]) {
                    f(start, end + (b - a) as usize);
                }
            }
        }
    }
}

/// The sampling loop's eight-wide steps (see [`Tier::scan`]): the same hashes, words and bits
/// as [`probe`].
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{Alphabet, MULTIPLIER, RING};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        has_avx512!("avx512dq", "avx512vbmi")
    }

    /// Byte indices into 128 loaded bytes: lane `j` takes the 8 bytes at `j × stride` (a
    /// 4-byte key's top four are zeroed by [`hash8`]).
    pub(super) fn picks(stride: usize) -> [u8; 64] {
        let mut v = [0u8; 64];
        assert!(stride <= super::MAX_STRIDE, "stride {stride}");
        for (i, x) in v.iter_mut().enumerate() {
            *x = ((i / 8) * stride + i % 8) as u8;
        }
        v
    }

    /// Hashes the keys at `at + j × stride` (j < 8) into `ring[(fi + j) % RING]`; returns their
    /// words. A key holding a byte absent from the `alphabet` gets its `skip` hash instead.
    /// The caller guarantees `at + 128 <= hay.len()`.
    #[inline(always)]
    pub(super) unsafe fn hash8<const K: usize>(
        hay: &[u8],
        at: usize,
        picks: &[u8; 64],
        alphabet: &Alphabet,
        nwords: u64,
        ring: &mut [u64; RING],
        fi: usize,
    ) -> [u64; 8] {
        let lo = _mm512_loadu_si512(hay.as_ptr().add(at) as *const _);
        let hi = _mm512_loadu_si512(hay.as_ptr().add(at + 64) as *const _);
        let idx = _mm512_loadu_si512(picks.as_ptr() as *const _);
        // All eight bytes of each lane for 8-byte keys, the low four for 4-byte ones.
        let keep: u64 = if K == 8 { !0 } else { 0x0F0F_0F0F_0F0F_0F0F };
        let k = _mm512_maskz_permutex2var_epi8(keep, lo, idx, hi);
        // Per key byte: 0xFF (or 0x80 for a high byte) when no key has it; the lanes with
        // such a byte are skipped.
        let absent = alphabet.absent.as_ptr();
        let low = _mm512_maskz_permutex2var_epi8(
            keep,
            _mm512_loadu_si512(absent as *const _),
            k,
            _mm512_loadu_si512(absent.add(64) as *const _),
        );
        let high = _mm512_and_si512(k, _mm512_set1_epi8(alphabet.high as i8));
        let skipped = _mm512_test_epi64_mask(_mm512_or_si512(low, high), _mm512_set1_epi64(-1));
        let h = _mm512_mask_mov_epi64(
            _mm512_mullo_epi64(k, _mm512_set1_epi64(MULTIPLIER as i64)),
            skipped,
            _mm512_set1_epi64(alphabet.skip as i64),
        );
        // (In bounds: see [`RING`]. The slice is checked all the same.)
        let at = fi % RING;
        _mm512_storeu_si512(ring[at..at + 8].as_mut_ptr() as *mut _, h);
        let mut words = [0u64; 8];
        _mm512_storeu_si512(words.as_mut_ptr() as *mut _, word_of(h, nwords));
        words
    }

    /// The words and bits of the eight hashes at `ring[li..]`.
    #[inline(always)]
    pub(super) unsafe fn place8(
        ring: &[u64; RING],
        li: usize,
        nwords: u64,
    ) -> ([u64; 8], [u64; 8]) {
        let at = li % RING;
        let h = _mm512_loadu_si512(ring[at..at + 8].as_ptr() as *const _);
        let one = _mm512_set1_epi64(1);
        let bit = |shift: u32| {
            let n = _mm512_and_si512(
                _mm512_srl_epi64(h, _mm_cvtsi32_si128(shift as i32)),
                _mm512_set1_epi64(63),
            );
            _mm512_sllv_epi64(one, n)
        };
        let bits = _mm512_or_si512(_mm512_or_si512(bit(14), bit(20)), bit(26));
        let (mut w, mut b) = ([0u64; 8], [0u64; 8]);
        _mm512_storeu_si512(w.as_mut_ptr() as *mut _, word_of(h, nwords));
        _mm512_storeu_si512(b.as_mut_ptr() as *mut _, bits);
        (w, b)
    }

    /// `((h >> 32) × nwords) >> 32` per lane, as in [`super::place`].
    #[inline(always)]
    unsafe fn word_of(h: __m512i, nwords: u64) -> __m512i {
        _mm512_srli_epi64::<32>(_mm512_mul_epu32(
            _mm512_srli_epi64::<32>(h),
            _mm512_set1_epi64(nwords as i64),
        ))
    }
}

/// How far ahead of its lookups the sampling loop prefetches filter words, and the steps it
/// takes (see [`Tier::scan`]). 128-1024 bytes ahead were all better than none (10k values,
/// 512 MiB), 512 the best within the noise.
const AHEAD: usize = 512;
/// Hashes kept between prefetch and lookup, by sample number modulo `RING`: more than the
/// samples in a step and its look-ahead (rounded up to whole groups of eight samples: fewer
/// than `STEP + AHEAD` bytes' worth and eight more). No eight-sample group wraps around the
/// ring: the eight-wide loops start groups only at sample numbers that are multiples of 8,
/// since `end` and `fetch_end` advance by whole groups until they stop at the input's end,
/// and after the one-at-a-time loops take a partial group no eight-wide group follows.
const RING: usize = 1024;
const _: () = assert!(RING >= STEP + AHEAD + 8 && RING.is_multiple_of(8));
// The eight-wide loop's keys lie within 128 loaded bytes; a step holds a group.
const _: () = assert!(7 * MAX_STRIDE + 8 <= 128 && 8 * MAX_STRIDE <= STEP);
const STEP: usize = 256;
/// Filter passes deferred per step (see [`Tier::scan`]); any more are checked at once. With
/// 10k values (stride 13, ~20 lookups per step) 0.42% of lookups pass, about one per 12
/// steps; a short tier's stride of 1-3 makes many more.
const PASSED: usize = 16;

#[inline(always)]
fn prefetch<T>(word: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no effect on memory, and SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            word as *const T as *const i8,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

impl KnownValues {
    /// Builds the matcher over `values` and all their encoded forms; `None` when empty.
    pub fn new<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<KnownValues> {
        let mut values: Vec<&[u8]> = values.collect();
        values.sort_unstable();
        values.dedup();
        let mut fb = FormBuf::default();
        // Sized for the usual forms up front (base64 in two alphabets and three alignments,
        // hex twice, URL escapes), so that 10k values do not copy these arrays as they grow;
        // untouched capacity costs no memory (but is reserved: ~14 bytes per value byte).
        let total: usize = values.iter().map(|v| v.len()).sum();
        let mut arena = Vec::with_capacity(total * 14);
        let mut forms: Vec<Form> = Vec::with_capacity(values.len() * 10);
        let mut exts: Vec<(u32, u32)> = Vec::with_capacity(values.len() * 3);
        // Per value: (indexed form, suffix range) pairs, grouped by form before storing.
        let mut pending: Vec<(usize, (u32, u32))> = Vec::new();
        for v in values {
            fb.fill(v);
            let first = forms.len();
            pending.clear();
            for &r in &fb.ranges {
                let bytes = fb.get(r);
                // (Forms shorter than 4 bytes are too short for the filters' keys.)
                if bytes.len() < 4 {
                    continue;
                }
                let start = arena.len() as u32;
                // (The first bytes compared inline: most forms differ there.)
                let prefix = (first..forms.len()).find(|&j| {
                    let f = forms[j].bytes(&arena);
                    f[0] == bytes[0] && bytes.starts_with(f)
                });
                match prefix {
                    Some(j) => {
                        let skip = (forms[j].end - forms[j].start) as usize;
                        arena.extend_from_slice(&bytes[skip..]);
                        pending.push((j, (start, arena.len() as u32)));
                    }
                    None => {
                        arena.extend_from_slice(bytes);
                        forms.push(Form {
                            start,
                            end: arena.len() as u32,
                            ext: (0, 0),
                        });
                    }
                }
            }
            pending.sort_unstable_by_key(|&(j, _)| j);
            for (j, group) in pending.chunk_by(|x, y| x.0 == y.0).map(|g| (g[0].0, g)) {
                let lo = exts.len() as u32;
                exts.extend(group.iter().map(|&(_, r)| r));
                forms[j].ext = (lo, exts.len() as u32);
            }
        }
        if forms.is_empty() {
            return None;
        }
        if forms.len() + exts.len() <= SMALL_LIMIT {
            let mut all: Vec<Vec<u8>> = Vec::new();
            for form in &forms {
                let bytes = form.bytes(&arena);
                all.push(bytes.to_vec());
                for &(a, b) in &exts[form.ext.0 as usize..form.ext.1 as usize] {
                    all.push([bytes, &arena[a as usize..b as usize]].concat());
                }
            }
            // A failed build (it cannot, for so few literals) falls through to the filter:
            // never to matching nothing.
            if let Ok(ac) = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&all)
            {
                return Some(KnownValues {
                    imp: KnownImp::Small(ac),
                });
            }
        }
        let is_long = |f: &Form| (f.end - f.start) as usize >= LONG_FORM;
        // (Without copying the forms when all are long, as with most tokens.)
        let (long, short): (Vec<Form>, Vec<Form>) = if forms.iter().all(is_long) {
            (forms, Vec::new())
        } else {
            forms.into_iter().partition(is_long)
        };
        let mut tiers = Vec::new();
        for (mut set, key_len) in [(short, 4), (long, 8)] {
            while !set.is_empty() {
                let rest = set.split_off(set.len().min(TIER_FORMS));
                tiers.push(Tier::new(set, key_len, &arena));
                set = rest;
            }
        }
        Some(KnownValues {
            imp: KnownImp::Large(Large { tiers, arena, exts }),
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
            KnownImp::Large(large) => {
                for t in &large.tiers {
                    t.for_each(hay, large, &mut f);
                }
            }
        }
    }
}

#[cfg(test)]
mod matcher_tests {
    use super::*;

    /// Bytes covered by every occurrence of every form of `values`, found naively.
    fn naive_cover(values: &[Vec<u8>], hay: &[u8]) -> Vec<bool> {
        let mut c = vec![false; hay.len()];
        for v in values {
            for f in encoded_forms(v).iter().filter(|f| f.len() >= 4) {
                for s in memchr::memmem::find_iter(hay, f) {
                    c[s..s + f.len()].iter_mut().for_each(|x| *x = true);
                }
            }
        }
        c
    }

    fn cover(k: &KnownValues, hay: &[u8]) -> Vec<bool> {
        let mut c = vec![false; hay.len()];
        k.for_each(hay, |a, b| c[a..b].iter_mut().for_each(|x| *x = true));
        c
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The filters (forms indexed by sampled keys, base64 tails checked as extensions of
        /// their aligned forms) cover exactly the bytes a naive search for every form does,
        /// with values of every length and with characters that URL, JSON and base64 change.
        #[test]
        fn filters_cover_what_a_naive_search_does(
            values in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(
                    b"aZ09+/=_-.~ %\"\\\n\x01".to_vec()), 6..40), 8..30),
            picks in proptest::collection::vec((0usize..1000, 0usize..1000, 0usize..6), 1..40),
        ) {
            let k = KnownValues::new(values.iter().map(|v| v.as_slice())).unwrap();
            proptest::prop_assert!(matches!(k.imp, KnownImp::Large(_)));
            // Forms of some values (whole or cut short), glued between filler of varying
            // length, so that every alignment against the stride turns up.
            let mut hay = Vec::new();
            for &(vi, fi, gap) in &picks {
                let forms = encoded_forms(&values[vi % values.len()]);
                let f = &forms[fi % forms.len()];
                let cut = if gap == 5 { f.len() - 1 } else { f.len() };
                hay.extend_from_slice(&f[..cut]);
                hay.extend(std::iter::repeat_n(b'.', gap));
            }
            proptest::prop_assert_eq!(cover(&k, &hay), naive_cover(&values, &hay));
        }
    }

    /// Values back to back, with a short stride: more positions pass the filter in one step
    /// than are deferred, so some are checked at once and the rest two steps later.
    #[test]
    fn dense_filter_passes_are_all_checked() {
        let values: Vec<Vec<u8>> = (0..300).map(|i| format!("t{i:05}").into_bytes()).collect();
        let k = KnownValues::new(values.iter().map(|v| v.as_slice())).unwrap();
        let KnownImp::Large(large) = &k.imp else {
            panic!("a small set")
        };
        assert!(large.tiers.iter().all(|t| t.stride * PASSED < STEP));
        let hay: Vec<u8> = values.iter().rev().flatten().copied().collect();
        assert_eq!(cover(&k, &hay), naive_cover(&values, &hay));
        assert!(cover(&k, &hay).iter().all(|&c| c));
    }

    /// Long inputs: the sampling loop's ring of hashes wraps many times, written and read in
    /// eight-wide and one-at-a-time steps, for the 4-byte and the 8-byte tier and several
    /// strides. The values are planted raw, their shortest form, so that exactly one sampled
    /// position can find each short one: one wrong hash in the ring loses a value.
    #[test]
    fn long_inputs_cover_what_a_naive_search_does() {
        // (Value lengths for the short tier and the long one: short-tier strides 3 to 9.)
        for (short, long) in [(6usize, 17usize), (7, 19), (9, 23), (10, 26), (12, 29)] {
            let (values, hay) = planted(short, long);
            let k = KnownValues::new(values.iter().map(|v| v.as_slice())).unwrap();
            for len in [hay.len(), hay.len() - 77, 70_001] {
                let h = &hay[..len];
                assert_eq!(
                    cover(&k, h),
                    naive_cover(&values, h),
                    "{short}/{long}, {len} bytes"
                );
            }
        }
    }

    /// 40 values, half `short` bytes long and half `long`, planted raw about every 20 bytes
    /// of 1 MiB of filler.
    fn planted(short: usize, long: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
        let values: Vec<Vec<u8>> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    format!("s{i:0w$}", w = short - 1).into_bytes()
                } else {
                    format!("L{i:0w$}", w = long - 1).into_bytes()
                }
            })
            .collect();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut hay = Vec::new();
        while hay.len() < 1 << 20 {
            for _ in 0..next(24) {
                hay.push(b"qrstuvwxyz ./"[next(13) as usize]);
            }
            hay.extend_from_slice(&values[next(values.len() as u64) as usize]);
        }
        (values, hay)
    }

    /// The eight-wide sampling loop reports what the one-at-a-time loop does, in the same
    /// order, tier by tier.
    #[test]
    fn wide_and_scalar_sampling_agree() {
        let (values, hay) = planted(8, 21);
        let k = KnownValues::new(values.iter().map(|v| v.as_slice())).unwrap();
        let KnownImp::Large(large) = &k.imp else {
            panic!("a small set")
        };
        assert_eq!(large.tiers.len(), 2);
        for t in &large.tiers {
            for h in [&hay[..], &hay[..hay.len() - 5], &hay[..1000], &hay[..130]] {
                let (mut wide, mut scalar) = (Vec::new(), Vec::new());
                t.for_each(h, large, &mut |a, b| wide.push((a, b)));
                match t.key_len {
                    8 => t.scan::<8, false>(h, large, &mut |a, b| scalar.push((a, b))),
                    _ => t.scan::<4, false>(h, large, &mut |a, b| scalar.push((a, b))),
                }
                assert_eq!(wide, scalar, "key {} stride {}", t.key_len, t.stride);
                assert!(h.len() < 1000 || !wide.is_empty());
            }
        }
    }

    /// The eight-wide loop gives a position whose key holds a byte no key has the tier's
    /// `skip` hash, which fails the filter, and every other position its key's hash; values
    /// with bytes from 0x80 up skip nothing (their table would alias other bytes).
    #[test]
    fn positions_with_absent_bytes_are_skipped() {
        for high in [false, true] {
            let values: Vec<Vec<u8>> = (0..100)
                .map(|i| {
                    let v = format!("value-{i:03}-abcdefghijkl");
                    (if high { v.replace('a', "ä") } else { v }).into_bytes()
                })
                .collect();
            let k = KnownValues::new(values.iter().map(|v| v.as_slice())).unwrap();
            let KnownImp::Large(large) = &k.imp else {
                panic!("a small set")
            };
            // The tables, on any CPU: blanks and colons absent, key bytes present; nothing
            // marked with a high byte in a key.
            let a = &large.tiers[0].alphabet;
            let marked = |b: u8| a.absent[b as usize] != 0;
            assert_eq!(
                (
                    marked(b' '),
                    marked(b':'),
                    marked(b'v'),
                    marked(b'-'),
                    a.high
                ),
                if high {
                    (false, false, false, false, 0)
                } else {
                    (true, true, false, false, 0x80)
                },
                "high bytes in keys: {high}"
            );
            #[cfg(target_arch = "x86_64")]
            if wide::available() {
                let t = &large.tiers[0];
                assert_eq!(t.key_len, 8);
                assert!(t.stride <= 16);
                // Keys at 0, S, 2S, ...: lane j's key holds an absent byte (or a high one)
                // for j = 1, 3, 6; the others are all key bytes.
                let mut hay = b"value-000-abcdefghijkl".repeat(8);
                hay.resize(128, b'v');
                let absent = [(1, b' '), (3, b':'), (6, 0xE9)];
                for &(j, b) in &absent {
                    hay[j * t.stride + 7] = b;
                }
                let mut ring = [0u64; RING];
                let picks = wide::picks(t.stride);
                let nwords = t.words.len() as u64;
                // SAFETY: the CPU has the features (checked above); 128 bytes are in bounds.
                unsafe { wide::hash8::<8>(&hay, 0, &picks, &t.alphabet, nwords, &mut ring, 5) };
                for j in 0..8 {
                    let p = j * t.stride;
                    let skipped = !high && absent.iter().any(|&(a, _)| a == j);
                    let want = if skipped {
                        t.alphabet.skip
                    } else {
                        hash(key(&hay[p..], 8))
                    };
                    assert_eq!(ring[5 + j], want, "lane {j}, high bytes in keys: {high}");
                }
                let (w, bits, _) = place(t.alphabet.skip, nwords);
                assert!(high || t.words[w] & bits != bits);
                // And the values are found, high bytes and all.
                let hay: Vec<u8> = [b"x: ", &values[42][..], b" \xe9\n"].concat();
                assert_eq!(cover(&k, &hay), naive_cover(&values, &hay));
                assert!(cover(&k, &hay)[3]);
            }
        }
    }

    /// A tier with more than 2^19 forms gives their indices the fingerprint's low bits and
    /// still finds its last form; the fingerprint keeps what fits above them.
    #[test]
    fn large_tiers_keep_what_fits_of_the_fingerprint() {
        assert_eq!(fp_field(0xAB, 24), 0xAB << 24);
        assert_eq!(fp_field(0xAB, 26), (0xAB >> 2) << 26);
        assert_eq!(fp_field(0xAB, 32), 0);
        let arena = b"aaaaaaaaZYXWVUTS".to_vec();
        let n = (1 << 20) + 3;
        let mut forms = vec![
            Form {
                start: 0,
                end: 8,
                ext: (0, 0)
            };
            n - 1
        ];
        forms.push(Form {
            start: 8,
            end: 16,
            ext: (0, 0),
        });
        let t = Tier::new(forms, 8, &arena);
        assert_eq!((t.stride, t.fp_shift), (1, OFF_BITS + 21));
        let large = Large {
            tiers: Vec::new(),
            arena,
            exts: Vec::new(),
        };
        let mut got = Vec::new();
        t.for_each(b"..ZYXWVUTS..", &large, &mut |a, b| got.push((a, b)));
        assert_eq!(got, [(2, 10)]);
    }

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
