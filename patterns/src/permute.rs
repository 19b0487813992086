//! The anchor search in one pass on CPUs with AVX-512 VBMI.
//!
//! Teddy (aho-corasick's SIMD prefilter) looks bytes up by nibble in 16-entry tables, so each
//! pass holds few literals before its false hits swamp it, and the built-in packs took four
//! passes over every block (seven with 200 user rules): a fifth of the filter's time. VBMI's
//! `vpermi2b` looks a byte up in a 128-entry table, so a table can say exactly which ASCII
//! bytes begin an anchor in each bucket. Four lookups (anchor bytes 0 to 3) and three ANDs
//! give, for 64 positions at once, the buckets whose anchors may start there; one pass
//! covers all anchors, and its candidates are confirmed by a compare. (Over the 512 MiB bench
//! log, CPU time, medians of five interleaved runs, the first version with three tables and
//! 3-byte anchors: 1.87 → 1.62 s with the built-in packs, 2.10 → 1.89 s with 200 more rules.
//! Since an anchor no longer costs a share of a pass, anchors are now four bytes: 81 rather
//! than 61 for the built-in packs, with a quarter fewer hits to confirm; four tables and
//! 4-byte anchors measured the same within the noise, 1.59-1.68 s against 1.63 s.)
//!
//! Bytes from 0x80 share a table entry with the byte 0x80 lower (the instruction reads seven
//! index bits): a non-ASCII byte can only raise a candidate, which the compare rejects.

/// Anchor bytes looked up per position (one table each).
const WIDTH: usize = 4;

/// Buckets per table set: the bits of one table byte.
const BITS: usize = 8;

/// Anchors per bucket the set count aims for. More sets cost [`WIDTH`] lookups each per 64
/// bytes; more anchors per bucket let cross-combinations of their bytes pass the tables
/// (with the built-in packs' 81 anchors: 1.0 M candidates per 64 MiB at two sets, 0.56 M at
/// four, 0.39 M at eight, for 0.37 M hits; three to six sets were the fastest).
const PER_BUCKET: usize = 3;

/// Table sets at most (8 registers each; past four, some tables are read from memory): more
/// anchors share buckets.
const MAX_SETS: usize = 8;

/// The compiled tables and buckets.
pub(crate) struct Permute {
    /// Per set of 8 buckets: byte tables for anchor offsets 0 to `WIDTH - 1` (bit `b` of entry
    /// `x`: some anchor of bucket `b` has byte `x` (mod 128) there, or ends before it).
    sets: Vec<[[u8; 128]; WIDTH]>,
    /// Anchors per bucket (bucket = set × 8 + bit).
    buckets: Vec<Vec<u32>>,
    /// Per anchor: its bytes, and the first four as a little-endian word with its mask.
    anchors: Vec<(Vec<u8>, u32, u32)>,
}

/// Whether the one-pass search can run here (x86-64 with AVX-512 F, BW and VBMI).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx512!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Permute {
    /// Tables for `anchors` (non-empty literals). Anchors sharing leading bytes go to the same
    /// bucket, so a bucket's tables admit few byte combinations that no anchor has.
    pub(crate) fn new(anchors: &[Vec<u8>]) -> Permute {
        let sets = anchors.len().div_ceil(BITS * PER_BUCKET).clamp(1, MAX_SETS);
        let nb = sets * BITS;
        let mut order: Vec<u32> = (0..anchors.len() as u32).collect();
        order.sort_by(|&a, &b| anchors[a as usize].cmp(&anchors[b as usize]));
        let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); nb];
        // Contiguous runs of the sorted anchors, sizes as even as possible.
        let mut base = 0;
        for (bi, bucket) in buckets.iter_mut().enumerate() {
            let size = (order.len() - base).div_ceil(nb - bi);
            bucket.extend_from_slice(&order[base..base + size]);
            base += size;
        }
        let mut tables = vec![[[0u8; 128]; WIDTH]; sets];
        for (bi, bucket) in buckets.iter().enumerate() {
            let (set, bit) = (bi / BITS, 1u8 << (bi % BITS));
            for &a in bucket {
                let lit = &anchors[a as usize];
                for (off, table) in tables[set].iter_mut().enumerate() {
                    match lit.get(off) {
                        Some(&x) => table[(x & 0x7f) as usize] |= bit,
                        // Shorter than the tables: any byte may follow.
                        None => table.iter_mut().for_each(|e| *e |= bit),
                    }
                }
            }
        }
        let anchors = anchors
            .iter()
            .map(|lit| {
                let n = lit.len().min(4);
                let mut word = [0u8; 4];
                word[..n].copy_from_slice(&lit[..n]);
                let mask = if n == 4 { !0 } else { (1u32 << (8 * n)) - 1 };
                (lit.clone(), u32::from_le_bytes(word), mask)
            })
            .collect();
        Permute {
            sets: tables,
            buckets,
            anchors,
        }
    }

    /// Calls `f(anchor, start)` for every occurrence of every anchor (overlapping ones too),
    /// 64-byte block by block (in no particular order within a block).
    pub(crate) fn for_each(&self, hay: &[u8], f: impl FnMut(usize, usize)) {
        #[cfg(target_arch = "x86_64")]
        {
            if available() {
                // SAFETY: the CPU has AVX-512 F, BW and VBMI (checked just above).
                unsafe {
                    match self.sets.len() {
                        1 => avx512::for_each::<1>(self, hay, f),
                        2 => avx512::for_each::<2>(self, hay, f),
                        3 => avx512::for_each::<3>(self, hay, f),
                        4 => avx512::for_each::<4>(self, hay, f),
                        5 => avx512::for_each::<5>(self, hay, f),
                        6 => avx512::for_each::<6>(self, hay, f),
                        7 => avx512::for_each::<7>(self, hay, f),
                        _ => avx512::for_each::<MAX_SETS>(self, hay, f),
                    }
                }
                return;
            }
        }
        self.scalar_for_each(hay, f)
    }

    /// The same search a byte at a time, through the same tables (for CPUs without VBMI,
    /// which normally use Teddy passes instead, and as the tests' reference).
    fn scalar_for_each(&self, hay: &[u8], mut f: impl FnMut(usize, usize)) {
        let at = |i: usize| hay.get(i).map_or(0, |&x| (x & 0x7f) as usize);
        for p in 0..hay.len() {
            for (s, t) in self.sets.iter().enumerate() {
                let bits = (0..WIDTH).fold(!0u8, |b, k| b & t[k][at(p + k)]);
                self.confirm(hay, p, s, bits, &mut f);
            }
        }
    }

    /// Reports the anchors of set `s`'s buckets in `bits` that occur at `p`.
    #[inline(always)]
    fn confirm(
        &self,
        hay: &[u8],
        p: usize,
        s: usize,
        mut bits: u8,
        f: &mut impl FnMut(usize, usize),
    ) {
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            for &a in &self.buckets[s * BITS + b] {
                let (lit, word, mask) = &self.anchors[a as usize];
                let found = match hay.get(p..p + 4) {
                    Some(w) => {
                        let w = u32::from_le_bytes(w.try_into().expect("4 bytes"));
                        w & mask == *word && (lit.len() <= 4 || hay[p..].starts_with(lit))
                    }
                    None => hay[p..].starts_with(lit),
                };
                if found {
                    f(a as usize, p);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Permute, WIDTH};
    use std::arch::x86_64::*;

    /// `S` table sets, loaded once for the whole search (up to four stay in registers).
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn for_each<const S: usize>(
        p: &Permute,
        hay: &[u8],
        mut f: impl FnMut(usize, usize),
    ) {
        let mut t = [[_mm512_setzero_si512(); 2 * WIDTH]; S];
        for (s, set) in p.sets.iter().enumerate().take(S) {
            for (k, table) in set.iter().enumerate() {
                t[s][2 * k] = _mm512_loadu_si512(table.as_ptr() as *const _);
                t[s][2 * k + 1] = _mm512_loadu_si512(table.as_ptr().add(64) as *const _);
            }
        }
        let n = hay.len();
        let ptr = hay.as_ptr();
        let mut hits = [0u8; 64];
        let mut i = 0;
        while i < n {
            // Bytes i+k.. for each table k (zeros past the end: no table admits more than
            // it should, and the compare checks bounds).
            let mut x = [_mm512_setzero_si512(); WIDTH];
            let valid = if i + 64 + WIDTH - 1 <= n {
                for (k, xk) in x.iter_mut().enumerate() {
                    *xk = _mm512_loadu_si512(ptr.add(i + k) as *const _);
                }
                !0u64
            } else {
                let upto = |from: usize| -> u64 {
                    let left = n.saturating_sub(from);
                    if left >= 64 {
                        !0
                    } else {
                        (1u64 << left) - 1
                    }
                };
                for (k, xk) in x.iter_mut().enumerate() {
                    // (`wrapping_add`: the address may lie past the end; the mask then
                    // loads nothing from it.)
                    *xk =
                        _mm512_maskz_loadu_epi8(upto(i + k), ptr.wrapping_add(i + k) as *const i8);
                }
                upto(i)
            };
            let mut rs = [_mm512_setzero_si512(); S];
            let mut ks = [0u64; S];
            let mut any = 0u64;
            for s in 0..S {
                let ts = &t[s];
                let mut r = _mm512_permutex2var_epi8(ts[0], x[0], ts[1]);
                for k in 1..WIDTH {
                    r = _mm512_and_si512(
                        r,
                        _mm512_permutex2var_epi8(ts[2 * k], x[k], ts[2 * k + 1]),
                    );
                }
                rs[s] = r;
                ks[s] = _mm512_test_epi8_mask(r, r) & valid;
                any |= ks[s];
            }
            if any != 0 {
                // Set by set: a candidate position rarely passes more than one set's tables.
                for s in 0..S {
                    let mut k = ks[s];
                    if k == 0 {
                        continue;
                    }
                    _mm512_storeu_si512(hits.as_mut_ptr() as *mut _, rs[s]);
                    while k != 0 {
                        let j = k.trailing_zeros() as usize;
                        k &= k - 1;
                        p.confirm(hay, i + j, s, hits[j], &mut f);
                    }
                }
            }
            i += 64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every occurrence of every anchor, by brute force.
    fn naive(anchors: &[Vec<u8>], hay: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for p in 0..hay.len() {
            for (a, lit) in anchors.iter().enumerate() {
                if hay[p..].starts_with(lit) {
                    v.push((a, p));
                }
            }
        }
        v
    }

    fn found(p: &Permute, hay: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut last = 0;
        p.for_each(hay, |a, at| {
            assert!(at / 64 >= last / 64, "out of order: {at} after {last}");
            last = at;
            v.push((a, at));
        });
        v.sort();
        v
    }

    fn anchors(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn every_occurrence_of_every_anchor_is_reported() {
        let a = anchors(&["pas", "ssw", "://", "key", "keys", "x", "ab", "sk_l", "aaa"]);
        let p = Permute::new(&a);
        // Overlaps, adjacency, anchors cut by the end, non-ASCII bytes aliasing ASCII ones.
        let mut hay = b"password passwd key=keys://x aaaa ab sk_live_ \xe1\xf3\xf3 ".repeat(5);
        hay.extend_from_slice(b"... sk_l");
        for end in [hay.len(), hay.len() - 1, 63, 64, 65, 66, 67, 130, 0, 1, 2] {
            let h = &hay[..end.min(hay.len())];
            let mut want = naive(&a, h);
            want.sort();
            assert_eq!(found(&p, h), want, "prefix of {end} bytes");
            let mut scalar = Vec::new();
            p.scalar_for_each(h, |a, at| scalar.push((a, at)));
            scalar.sort();
            assert_eq!(scalar, want, "scalar, prefix of {end} bytes");
        }
    }

    #[test]
    fn many_anchors_fill_every_table_set() {
        // `PER_BUCKET` anchors per bucket, eight buckets per set: 1, 1, 2, 3, 5, 6, 7 and
        // 8 sets.
        for count in [3usize, 20, 40, 50, 100, 130, 160, 300] {
            let a: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    format!(
                        "{}{}{}",
                        (b'a' + (i % 26) as u8) as char,
                        i % 7,
                        (b'a' + (i / 26) as u8) as char
                    )
                    .into_bytes()
                })
                .collect();
            let p = Permute::new(&a);
            let mut hay = Vec::new();
            for (i, lit) in a.iter().enumerate().rev() {
                hay.extend_from_slice(lit);
                hay.extend_from_slice(&b"-.. "[..i % 4]);
            }
            let mut want = naive(&a, &hay);
            want.sort();
            assert_eq!(found(&p, &hay), want, "{count} anchors");
            assert!(want.len() >= count);
        }
    }

    /// A builder with every built-in pack on.
    fn all_packs() -> crate::RedactorBuilder {
        let mut b = crate::RedactorBuilder::new();
        let names: Vec<String> = b.packs().iter().map(|p| p.name.clone()).collect();
        for n in &names {
            b.enable_pack(n).unwrap();
        }
        b
    }

    /// Every built-in rule's examples, and a few glued anchors.
    fn example_pieces() -> Vec<String> {
        let mut v: Vec<String> = all_packs()
            .selected_rules()
            .unwrap()
            .into_iter()
            .flat_map(|r| r.examples_match.into_iter().chain(r.examples_no_match))
            .collect();
        v.extend(
            [
                " ",
                "\n",
                "=",
                "\x1b[0K",
                "passpassword",
                "TOKENtoken",
                "\u{e9}",
                ":",
                "\"",
            ]
            .map(String::from),
        );
        v
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// The one-pass search masks exactly what the Teddy passes mask.
        #[test]
        fn one_pass_redacts_as_the_teddy_passes(
            picks in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..40),
            upper in proptest::prelude::any::<u64>(),
        ) {
            if !available() {
                return Ok(());
            }
            let pieces = example_pieces();
            let mut hay = String::new();
            for (i, p) in picks.iter().enumerate() {
                let piece = p.get(&pieces);
                // Some pieces upper-cased: keywords match in any case.
                if upper >> (i % 64) & 1 == 1 {
                    hay.push_str(&piece.to_ascii_uppercase());
                } else {
                    hay.push_str(piece);
                }
                hay.push(if i % 3 == 0 { '\n' } else { ' ' });
            }
            let build = |one_pass: bool| {
                let mut b = all_packs();
                b.one_pass = one_pass;
                b.build().unwrap()
            };
            let (one, passes) = (build(true), build(false));
            assert!(one.inner.anchor_search.reports_every_occurrence());
            assert!(!passes.inner.anchor_search.reports_every_occurrence());
            let (a, ca) = one.redact_all(hay.as_bytes());
            let (b, cb) = passes.redact_all(hay.as_bytes());
            proptest::prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "input {:?}", hay);
            proptest::prop_assert_eq!(ca, cb);
        }
    }
}
