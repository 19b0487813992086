//! A SIMD scanner for the shapes of the built-in keywordless rules (SSN, ITIN, payment card,
//! US phone, DEA, MBI, Twilio SID) and of the AWS key id (whose eleven prefixes would take ten
//! keyword anchors).
//!
//! Those rules have no literal to anchor on, and CI logs are full of digits (every GitHub
//! Actions line starts with a timestamp), so a digit prefilter skips nothing and their lazy
//! DFA used to walk every byte. Here each 64-byte block is classified with AVX2 into one bit
//! per byte per class (digit, `-`, upper case...), and each rule's *core* — a short shape that
//! every match of the rule contains, such as "two digits, `-` or space, four digits" — is
//! found with shifts and ANDs over those bit masks, 64 positions at a time. The rules'
//! regexes then run only in a window around each core hit.
//!
//! Soundness rests on each core being implied by its rule's regex. That holds for the exact
//! built-in regexes only, so a rule is covered only when its id *and* regex are the built-in
//! pack's (a user rule with the same id but another pattern stays on the DFA path), and a
//! property test compares this path with the whole-buffer DFA on shape-rich random text.

/// "`-` or space, two digits, `-` or space, four digits": every SSN and ITIN
/// (`DDD-DD-DDDD`, `DDD DD DDDD`). (A looser "two digits, separator, four digits" core,
/// shared with cards and phones, fired on every UUID whose groups happen to be all digits:
/// 6.6k windows per 10 MB of a CI log.)
const SSN_SHAPE: u16 = 1;
/// "Two digits, `.`, four digits, then not a digit": phone numbers ending `DDD.DDDD\b`.
/// (Without the last condition every fractional timestamp `00.0000852` would be a hit.)
const DOT_DIGITS: u16 = 2;
/// `+1`: the international phone form, whose separators are all optional.
const PLUS_ONE: u16 = 4;
/// Thirteen digits in a row: ungrouped card numbers.
const RUN13: u16 = 8;
/// Upper-case letter, upper-case letter or digit, seven digits: a DEA number (`[A-Z9]` in the
/// second place, loosened to save a class).
const DEA: u16 = 16;
/// The end of an MBI: digit, optional `-` (loosened: or space), two upper-case letters, two
/// digits, not a word byte.
const MBI: u16 = 32;
/// Two upper-case letters and four lower-case hex digits: the start of a Twilio API key SID
/// (`SK…`, loosened to any two capitals to save two classes).
const TWILIO: u16 = 64;
/// Twenty characters of `[A-Z2-7]` in a row: an AWS key id (`AKIA` + 16 base32). Its eleven
/// 4-letter prefixes took ten keyword anchors, most of a Teddy pass.
const AWS: u16 = 128;
/// "Four digits, `-` or space, four digits, a separator or digit, a digit": every grouped
/// card number (`DDDD-DDDD-DDDD-D…`, `DDDD DDDDDD DDDD…`).
const CARD_GROUPS: u16 = 256;
/// "Not a digit, three digits, `-` or space, four digits": the end of every phone number
/// without `+1` whose last separator is `-` or a space (`(DDD) DDD-DDDD`, `DDD-DDD-DDDD`);
/// its middle group is always preceded by `)`, a separator or the line's start.
const PHONE_END: u16 = 512;
/// Every core (a core added later is included without editing this).
#[cfg(test)]
const ALL: u16 = u16::MAX;

/// Built-in rule ids the scanner covers and the cores that every one of their matches
/// contains (`ripgrep`-style: a necessary condition, not a match).
const COVERED: &[(&str, u16)] = &[
    ("ssn", SSN_SHAPE),
    ("itin", SSN_SHAPE),
    ("payment-card", CARD_GROUPS | RUN13),
    ("phone-us", PHONE_END | DOT_DIGITS | PLUS_ONE),
    ("dea-number", DEA),
    ("mbi", MBI),
    ("twilio-api-key", TWILIO),
    ("aws-access-key-id", AWS),
];

/// The regex of built-in rule `id`, read from its pack's text (`id = "…"`, then the rule's
/// `regex = '''…'''` line) rather than by parsing every pack again at start-up. A pack written
/// another way yields `None`: the rule stays on the DFA path, and the coverage test fails.
pub(crate) fn builtin_regex(id: &str) -> Option<&'static str> {
    let key = format!("\nid = \"{id}\"\n");
    crate::rule::BUILTIN_PACKS.iter().find_map(|(_, text)| {
        let at = text.find(&key)? + key.len();
        let rest = &text[at..];
        let rule_end = rest.find("[[rule]]").unwrap_or(rest.len());
        let start = rest[..rule_end].find("\nregex = '''")? + "\nregex = '''".len();
        let len = rest[start..].find("'''")?;
        Some(&rest[start..start + len])
    })
}

/// The cores for a rule, when it is a covered built-in rule and this CPU can run the scanner.
pub(crate) fn cores_for(id: &str, regex: &str) -> Option<u16> {
    if !available() {
        return None;
    }
    let &(_, cores) = COVERED.iter().find(|(i, _)| *i == id)?;
    (builtin_regex(id) == Some(regex)).then_some(cores)
}

/// Whether the SIMD scanner can run here (x86-64 with AVX2).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One bit per byte of a block, per class (the low [`BLOCK`] bits).
#[derive(Clone, Copy, Default)]
struct Classes {
    digit: u64,
    /// `-` or space.
    sep: u64,
    dot: u64,
    plus: u64,
    one: u64,
    upper: u64,
    /// `[0-9A-Za-z_]`.
    word: u64,
    /// `[0-9a-f]`.
    hex_lower: u64,
    /// `[A-Z2-7]` (base32).
    base32: u64,
}

/// Bytes per block: one bit per byte in a `u64` mask.
const BLOCK: usize = 64;

/// `hay` as blocks for the SIMD scanners' whole-block loads: the last (partial or empty)
/// block zero-padded, and one block of zeros after it.
#[cfg(target_arch = "x86_64")]
struct Blocks<'a> {
    hay: &'a [u8],
    whole: usize,
    tail: [u8; 2 * BLOCK],
}

#[cfg(target_arch = "x86_64")]
impl<'a> Blocks<'a> {
    fn new(hay: &'a [u8]) -> Self {
        let whole = hay.len() / BLOCK;
        let mut tail = [0u8; 2 * BLOCK];
        tail[..hay.len() - whole * BLOCK].copy_from_slice(&hay[whole * BLOCK..]);
        Blocks { hay, whole, tail }
    }

    /// The start of block `i`, for `i` up to one past the last block: `BLOCK` readable bytes.
    #[inline(always)]
    fn at(&self, i: usize) -> *const u8 {
        if i < self.whole {
            self.hay[i * BLOCK..].as_ptr()
        } else {
            self.tail[(i - self.whole) * BLOCK..].as_ptr()
        }
    }
}

/// A block's class masks joined with the next block's: shifting right brings the next
/// block's bytes in. `u128` for one block; eight blocks in AVX-512 lanes (`avx512::Lanes`).
trait Bits:
    Copy
    + std::ops::BitAnd<Output = Self>
    + std::ops::BitOr<Output = Self>
    + std::ops::Not<Output = Self>
{
    /// Shift right by `k` < 64 (all the cores' shifts are).
    fn shr(self, k: u32) -> Self;
    /// Shift left by `k` < 64.
    fn shl(self, k: u32) -> Self;
    /// Whether any bit is set (used only to skip work: may say true when none is).
    fn any(self) -> bool;
}

impl Bits for u128 {
    #[inline(always)]
    fn shr(self, k: u32) -> Self {
        self >> k
    }
    #[inline(always)]
    fn shl(self, k: u32) -> Self {
        self << k
    }
    #[inline(always)]
    fn any(self) -> bool {
        self != 0
    }
}

/// Per class, a block's bits joined with the next block's (see [`Bits`]).
#[derive(Clone, Copy)]
struct Joined<B> {
    digit: B,
    sep: B,
    dot: B,
    plus: B,
    one: B,
    upper: B,
    word: B,
    hex_lower: B,
    base32: B,
}

impl Joined<u128> {
    #[inline(always)]
    fn of(c: &Classes, n: &Classes) -> Self {
        let j = |a: u64, b: u64| (a as u128) | ((b as u128) << BLOCK);
        Joined {
            digit: j(c.digit, n.digit),
            sep: j(c.sep, n.sep),
            dot: j(c.dot, n.dot),
            plus: j(c.plus, n.plus),
            one: j(c.one, n.one),
            upper: j(c.upper, n.upper),
            word: j(c.word, n.word),
            hex_lower: j(c.hex_lower, n.hex_lower),
            base32: j(c.base32, n.base32),
        }
    }
}

/// Core hits starting in the block `c`, with `n` the classes of the block after it.
#[inline(always)]
fn core_hits(c: &Classes, n: &Classes, cores: u16) -> u64 {
    core_bits(&Joined::of(c, n), cores) as u64
}

/// Core hits as bits of the (joined) block: only the low [`BLOCK`] bits are meaningful.
#[inline(always)]
fn core_bits<B: Bits>(c: &Joined<B>, cores: u16) -> B {
    let d = c.digit;
    let d2 = d & d.shr(1);
    let d4 = d2 & d2.shr(2);
    // (Starts empty: `d & !d` is zero whatever the representation.)
    let mut hits = d & !d;
    let sep = c.sep;
    // The three cores below share "`-` or space, four digits", absent from most blocks.
    let sep_d4 = sep & d4.shr(1);
    if sep_d4.any() {
        if cores & SSN_SHAPE != 0 {
            hits = hits | (sep & d2.shr(1) & sep_d4.shr(3));
        }
        if cores & CARD_GROUPS != 0 {
            hits = hits | (d4 & sep_d4.shr(4) & (sep | d).shr(9) & d.shr(10));
        }
        if cores & PHONE_END != 0 {
            // Bit 0 of a block sees no digit before it: a hit there may be one too many,
            // never one too few.
            let d3 = d2 & d.shr(2);
            hits = hits | (!d.shl(1) & d3 & sep_d4.shr(3));
        }
    }
    if cores & DOT_DIGITS != 0 {
        hits = hits | (d2 & c.dot.shr(2) & d4.shr(3) & !d.shr(7));
    }
    if cores & PLUS_ONE != 0 {
        hits = hits | (c.plus & c.one.shr(1));
    }
    if cores & RUN13 != 0 {
        let d8 = d4 & d4.shr(4);
        hits = hits | (d8 & d8.shr(5));
    }
    let up = c.upper;
    if cores & DEA != 0 {
        let d7 = d4 & d4.shr(3);
        hits = hits | (up & (up | d).shr(1) & d7.shr(2));
    }
    if cores & MBI != 0 {
        let nw = !c.word;
        let up2 = up & up.shr(1);
        let dashed = sep.shr(1) & up2.shr(2) & d2.shr(4) & nw.shr(6);
        let plain = up2.shr(1) & d2.shr(3) & nw.shr(5);
        hits = hits | (d & (dashed | plain));
    }
    if cores & TWILIO != 0 {
        let h = c.hex_lower;
        let h2 = h & h.shr(1);
        let h4 = h2 & h2.shr(2);
        hits = hits | (up & up.shr(1) & h4.shr(2));
    }
    if cores & AWS != 0 {
        let b = c.base32;
        let b2 = b & b.shr(1);
        let b4 = b2 & b2.shr(2);
        let b8 = b4 & b4.shr(4);
        let b16 = b8 & b8.shr(8);
        hits = hits | (b16 & b4.shr(16));
    }
    hits
}

/// Calls `f` with the start of every core hit in `hay`, in increasing order. A byte past the
/// end counts as no class at all, so a shape cut by the end of `hay` is still reported when
/// the regex could match there.
pub(crate) fn for_each_hit(hay: &[u8], cores: u16, f: impl FnMut(usize)) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::available() {
            // SAFETY: AVX-512 F, BW and VBMI2 are present (checked just above).
            unsafe { avx512::for_each_hit(hay, cores, f) };
            return;
        }
        if available() {
            // SAFETY: AVX2 is present (checked just above).
            unsafe { avx2::for_each_hit(hay, cores, f) };
            return;
        }
    }
    scalar_for_each_hit(hay, cores, f)
}

/// The same as the AVX2 scanner, a byte at a time: used by tests on machines without AVX2
/// and as the reference the SIMD classification is checked against.
fn scalar_for_each_hit(hay: &[u8], cores: u16, mut f: impl FnMut(usize)) {
    let blocks = hay.len().div_ceil(BLOCK);
    let classes = |i: usize| {
        let mut block = [0u8; BLOCK];
        let part = &hay[(i * BLOCK).min(hay.len())..((i + 1) * BLOCK).min(hay.len())];
        block[..part.len()].copy_from_slice(part);
        classify_scalar(&block)
    };
    let mut cur = classes(0);
    for i in 0..blocks {
        let next = classes(i + 1);
        emit(core_hits(&cur, &next, cores), i * BLOCK, hay.len(), &mut f);
        cur = next;
    }
}

#[inline(always)]
fn emit(mut bits: u64, base: usize, len: usize, f: &mut impl FnMut(usize)) {
    while bits != 0 {
        let p = base + bits.trailing_zeros() as usize;
        if p >= len {
            return;
        }
        f(p);
        bits &= bits - 1;
    }
}

fn classify_scalar(block: &[u8; BLOCK]) -> Classes {
    let mut c = Classes::default();
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        let set = |m: &mut u64, yes: bool| {
            if yes {
                *m |= bit
            }
        };
        set(&mut c.digit, b.is_ascii_digit());
        set(&mut c.sep, b == b'-' || b == b' ');
        set(&mut c.dot, b == b'.');
        set(&mut c.plus, b == b'+');
        set(&mut c.one, b == b'1');
        set(&mut c.upper, b.is_ascii_uppercase());
        set(&mut c.word, b.is_ascii_alphanumeric() || b == b'_');
        set(
            &mut c.hex_lower,
            b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        );
        set(
            &mut c.base32,
            b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b),
        );
    }
    c
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{core_hits, emit, Blocks, Classes, BLOCK};
    use std::arch::x86_64::*;

    /// Classes of the 64 bytes at `$p`. A macro, so that everything is inlined into the one
    /// AVX2-enabled loop (closures defined inside it are compiled with AVX2 too).
    macro_rules! classify64 {
        ($p:expr) => {{
            let x = _mm256_loadu_si256($p as *const __m256i);
            let y = _mm256_loadu_si256(($p as *const __m256i).add(1));
            // `v - lo <= span` as unsigned bytes: min(t, span) == t.
            let within = |v: __m256i, lo: u8, span: u8| {
                let t = _mm256_sub_epi8(v, _mm256_set1_epi8(lo as i8));
                _mm256_cmpeq_epi8(_mm256_min_epu8(t, _mm256_set1_epi8(span as i8)), t)
            };
            let eq = |v: __m256i, b: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b as i8));
            let mm = |v: __m256i| _mm256_movemask_epi8(v) as u32 as u64;
            let half = |v: __m256i| {
                let digit = within(v, b'0', 9);
                let upper = within(v, b'A', 25);
                let lower = within(v, b'a', 25);
                let af = within(v, b'a', 5);
                let word = _mm256_or_si256(
                    _mm256_or_si256(digit, upper),
                    _mm256_or_si256(lower, eq(v, b'_')),
                );
                Classes {
                    digit: mm(digit),
                    sep: mm(_mm256_or_si256(eq(v, b'-'), eq(v, b' '))),
                    dot: mm(eq(v, b'.')),
                    plus: mm(eq(v, b'+')),
                    one: mm(eq(v, b'1')),
                    upper: mm(upper),
                    word: mm(word),
                    hex_lower: mm(_mm256_or_si256(digit, af)),
                    base32: mm(_mm256_or_si256(upper, within(v, b'2', 5))),
                }
            };
            let (a, b) = (half(x), half(y));
            Classes {
                digit: a.digit | (b.digit << 32),
                sep: a.sep | (b.sep << 32),
                dot: a.dot | (b.dot << 32),
                plus: a.plus | (b.plus << 32),
                one: a.one | (b.one << 32),
                upper: a.upper | (b.upper << 32),
                word: a.word | (b.word << 32),
                hex_lower: a.hex_lower | (b.hex_lower << 32),
                base32: a.base32 | (b.base32 << 32),
            }
        }};
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn for_each_hit(hay: &[u8], cores: u16, mut f: impl FnMut(usize)) {
        let blocks_of = Blocks::new(hay);
        let at = |i: usize| blocks_of.at(i);
        let mut cur = classify64!(at(0));
        for i in 0..hay.len().div_ceil(BLOCK) {
            let next = classify64!(at(i + 1));
            emit(core_hits(&cur, &next, cores), i * BLOCK, hay.len(), &mut f);
            cur = next;
        }
    }
}

/// Eight blocks at a time: each class mask of eight consecutive blocks in the lanes of one
/// register, so that [`core_bits`]' shifts and ANDs (most of the scanner's time with AVX2,
/// done there one block at a time on 128-bit integers) serve eight blocks per instruction.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{core_bits, emit, Bits, Blocks, Joined, BLOCK};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        has_avx512!("avx512vbmi2")
    }

    /// Per lane, a block's bits (`lo`) joined with the next block's (`hi`).
    #[derive(Clone, Copy)]
    pub(super) struct Lanes {
        lo: __m512i,
        hi: __m512i,
    }

    // SAFETY (all the operations below): `Lanes` values are made only inside `for_each_hit`
    // (its fields are private to this module), which runs only where `available()` said
    // AVX-512 F, BW and VBMI2 are present.
    /// `std::ops::$tr` for `Lanes`, one instruction per half.
    macro_rules! lanewise {
        ($tr:ident, $f:ident, $op:ident) => {
            impl std::ops::$tr for Lanes {
                type Output = Lanes;
                #[inline(always)]
                fn $f(self, o: Lanes) -> Lanes {
                    unsafe {
                        Lanes {
                            lo: $op(self.lo, o.lo),
                            hi: $op(self.hi, o.hi),
                        }
                    }
                }
            }
        };
    }
    lanewise!(BitAnd, bitand, _mm512_and_si512);
    lanewise!(BitOr, bitor, _mm512_or_si512);

    impl std::ops::Not for Lanes {
        type Output = Lanes;
        #[inline(always)]
        fn not(self) -> Lanes {
            unsafe {
                let ones = _mm512_set1_epi64(-1);
                Lanes {
                    lo: _mm512_xor_si512(self.lo, ones),
                    hi: _mm512_xor_si512(self.hi, ones),
                }
            }
        }
    }

    impl Bits for Lanes {
        #[inline(always)]
        fn shr(self, k: u32) -> Lanes {
            unsafe {
                let c = _mm512_set1_epi64(k as i64);
                Lanes {
                    // Low half of (hi:lo) >> k: the next block's bytes come in.
                    lo: _mm512_shrdv_epi64(self.lo, self.hi, c),
                    hi: _mm512_srlv_epi64(self.hi, c),
                }
            }
        }
        #[inline(always)]
        fn shl(self, k: u32) -> Lanes {
            unsafe {
                let c = _mm512_set1_epi64(k as i64);
                Lanes {
                    lo: _mm512_sllv_epi64(self.lo, c),
                    hi: _mm512_shldv_epi64(self.hi, self.lo, c),
                }
            }
        }
        #[inline(always)]
        fn any(self) -> bool {
            // Eight blocks rarely all lack a core's start; computing it costs little.
            true
        }
    }

    /// Class masks of the 64 bytes at `p`, in the order of [`Joined`]'s fields.
    #[inline(always)]
    unsafe fn classify(p: *const u8) -> [u64; 9] {
        let v = _mm512_loadu_si512(p as *const _);
        let within = |lo: u8, span: u8| {
            _mm512_cmple_epu8_mask(
                _mm512_sub_epi8(v, _mm512_set1_epi8(lo as i8)),
                _mm512_set1_epi8(span as i8),
            )
        };
        let eq = |b: u8| _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b as i8));
        let digit = within(b'0', 9);
        let upper = within(b'A', 25);
        [
            digit,
            eq(b'-') | eq(b' '),
            eq(b'.'),
            eq(b'+'),
            eq(b'1'),
            upper,
            digit | upper | within(b'a', 25) | eq(b'_'),
            digit | within(b'a', 5),
            upper | within(b'2', 5),
        ]
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi2")]
    pub(super) unsafe fn for_each_hit(hay: &[u8], cores: u16, mut f: impl FnMut(usize)) {
        let blocks = hay.len().div_ceil(BLOCK);
        let blocks_of = Blocks::new(hay);
        let at = |i: usize| blocks_of.at(i);
        // cls[class][k]: block i + k (k = 0..=8; block i + 8 is the last lane's next).
        let mut cls = [[0u64; 9]; 9];
        let put = |cls: &mut [[u64; 9]; 9], k: usize, c: [u64; 9]| {
            for (row, m) in cls.iter_mut().zip(c) {
                row[k] = m;
            }
        };
        put(&mut cls, 0, classify(at(0)));
        let mut i = 0;
        while i < blocks {
            let n = (blocks - i).min(8);
            for k in 1..=8 {
                let c = if k <= n { classify(at(i + k)) } else { [0; 9] };
                put(&mut cls, k, c);
            }
            let lanes = |row: &[u64; 9]| Lanes {
                lo: _mm512_loadu_si512(row.as_ptr() as *const _),
                hi: _mm512_loadu_si512(row.as_ptr().add(1) as *const _),
            };
            let joined = Joined {
                digit: lanes(&cls[0]),
                sep: lanes(&cls[1]),
                dot: lanes(&cls[2]),
                plus: lanes(&cls[3]),
                one: lanes(&cls[4]),
                upper: lanes(&cls[5]),
                word: lanes(&cls[6]),
                hex_lower: lanes(&cls[7]),
                base32: lanes(&cls[8]),
            };
            let mut hits = [0u64; 8];
            _mm512_storeu_si512(hits.as_mut_ptr() as *mut _, core_bits(&joined, cores).lo);
            for (k, &h) in hits.iter().enumerate().take(n) {
                emit(h, (i + k) * BLOCK, hay.len(), &mut f);
            }
            for row in cls.iter_mut() {
                row[0] = row[n];
            }
            i += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(hay: &[u8], cores: u16) -> Vec<usize> {
        let mut v = Vec::new();
        for_each_hit(hay, cores, |p| v.push(p));
        v
    }

    /// The AVX2 scanner's hits (where AVX-512 takes over in `for_each_hit`), for comparison.
    #[cfg(target_arch = "x86_64")]
    fn avx2_hits(hay: &[u8], cores: u16) -> Option<Vec<usize>> {
        if !available() {
            return None;
        }
        let mut v = Vec::new();
        // SAFETY: AVX2 is present (checked just above).
        unsafe { avx2::for_each_hit(hay, cores, |p| v.push(p)) };
        Some(v)
    }

    #[test]
    fn every_builtin_structural_rule_is_covered() {
        // Editing one of these regexes in its pack drops it from the scanner (it falls back
        // to the DFA, still correct); this test says so, so that its core is re-derived.
        if !available() {
            return;
        }
        let packs = crate::rule::builtin_packs().unwrap();
        for (id, _) in COVERED {
            let re = packs
                .iter()
                .flat_map(|p| &p.rules)
                .find(|r| r.id == *id)
                .map(|r| r.regex.as_str())
                .unwrap_or_else(|| panic!("no built-in rule {id}"));
            assert_eq!(builtin_regex(id), Some(re), "{id}");
            assert!(cores_for(id, re).is_some(), "{id}");
            assert!(
                cores_for(id, "[0-9]{3}").is_none(),
                "{id} with another regex"
            );
        }
    }

    #[test]
    fn cores_find_shapes_across_block_edges() {
        // (Pads from 500 put the shape across byte 512, where eight-block groups meet.)
        for pad in [
            0usize, 1, 50, 57, 60, 63, 64, 120, 500, 503, 505, 508, 511, 512, 570,
        ] {
            let mut hay = vec![b'x'; pad];
            hay.extend_from_slice(b" 715-26-5211 ");
            // The separator before "26-5211"; "15-2652" is not a core.
            assert_eq!(hits(&hay, ALL), vec![pad + 4], "pad {pad}");
        }
        assert_eq!(
            hits(b"2024-05-01T10:00:00.0000852Z", ALL),
            Vec::<usize>::new()
        );
        // UUID groups that happen to be all digits (`4d43-8089`) are none of the cores.
        assert_eq!(
            hits(b"id f916bf49-df77-4d43-8089-61e5cd7ca3fc x", ALL),
            Vec::<usize>::new()
        );
        assert_eq!(hits(b"4111-1111-1111-1111", CARD_GROUPS), vec![0, 5]);
        assert_eq!(hits(b"3782-822463-10005", CARD_GROUPS), vec![0]);
        assert_eq!(hits(b"(574) 460-5846", PHONE_END), vec![6]);
        assert_eq!(hits(b"574-460-5846", PHONE_END), vec![4]);
        // The start of the input counts as "not a digit".
        assert_eq!(hits(b"460-5846", PHONE_END), vec![0]);
        assert_eq!(hits(b"call 555.123.4567 now", DOT_DIGITS), vec![10]);
        assert_eq!(hits(b"+1 555", PLUS_ONE), vec![0]);
        assert_eq!(hits(b"4111111111111111", RUN13), vec![0, 1, 2, 3]);
        assert_eq!(hits(b"dea=AB1234563", DEA), vec![4]);
        assert_eq!(hits(b"1EG4-TE5-MK73 x", MBI), vec![7]);
        assert_eq!(hits(b"1EG4TE5MK73", MBI), vec![6]);
        assert_eq!(hits(b"1EG4TE5MK73A", MBI), Vec::<usize>::new());
        assert_eq!(hits(b"SK7599a2a9", TWILIO), vec![0]);
        assert_eq!(hits(b"id=AKIAYTZWH2NUO6OXQBF6 ", AWS), vec![3]);
        assert_eq!(hits(b"id=AKIAYTZWH2NUO6OXQBF", AWS), Vec::<usize>::new());
        // The end of the input is not a word byte.
        assert_eq!(hits(b"00.1234", DOT_DIGITS), vec![0]);
    }

    #[test]
    fn simd_classes_equal_scalar_classes() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"0123456789-. +_SKabcfgAZ9xy\n\x1b\x80\xff";
        for len in [0usize, 1, 63, 64, 65, 200, 600, 1000, 1100] {
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            for cores in [
                SSN_SHAPE,
                DOT_DIGITS,
                PLUS_ONE,
                RUN13,
                DEA,
                MBI,
                TWILIO,
                AWS,
                CARD_GROUPS,
                PHONE_END,
                ALL,
            ] {
                let mut scalar = Vec::new();
                scalar_for_each_hit(&hay, cores, |p| scalar.push(p));
                assert_eq!(hits(&hay, cores), scalar, "len {len} cores {cores}");
                #[cfg(target_arch = "x86_64")]
                if let Some(v) = avx2_hits(&hay, cores) {
                    assert_eq!(v, scalar, "AVX2, len {len} cores {cores}");
                }
            }
        }
    }

    /// Fragments: real values of every shaped rule (valid checksums), near misses, and the
    /// bytes their cores are made of, so random concatenations put shapes across block
    /// edges, next to each other and inside longer runs.
    const PIECES: &[&str] = &[
        "715-26-5211",
        "502 96 1848",
        "912-70-1234",
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "3782-822463-10005",
        "(574) 460-5846",
        "445.632.0378",
        "+1 212 555 0147",
        "+12125550147",
        "1-212-555-0147",
        "AB1234563",
        "MM5717698",
        "1EG4-TE5-MK73",
        "4XU9N09RU01",
        "SK7599a2a9302f8edf545707d9877d856e",
        // The same values set off by blanks, so that they match wherever they land.
        " 715-26-5211 ",
        " 912-70-1234 ",
        " 4111 1111 1111 1111 ",
        " 4111-1111-1111-1111 ",
        " 3782-822463-10005 ",
        " (574) 460-5846 ",
        " 445.632.0378 ",
        " 1-212-555-0147 ",
        " 212-555-0147 ",
        "0",
        "1",
        "9",
        "12",
        "-",
        " ",
        ".",
        "+",
        "(",
        ")",
        "_",
        "S",
        "K",
        "A",
        "x",
        "a",
        "\n",
        "ssn=",
        "2024",
        "00.0000852",
        "-5211",
        "EG",
        "MK73",
        "99",
        "7599a2a9",
        "AKIAYTZWH2NUO6OXQBF6",
        "ASIAWUE6DPOHOC5KA66P",
        "AKIA",
        "QBF6",
        "Z",
    ];

    fn pieces() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop::collection::vec(prop::sample::select(PIECES), 0..80)
            .prop_map(|v| v.concat().into_bytes())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        /// The shape scanner finds exactly what the whole-buffer DFA over the same rules finds.
        #[test]
        fn shape_scan_equals_dfa(hay in pieces()) {
            if !available() {
                return Ok(());
            }
            let with = crate::RedactorBuilder::new().build().unwrap();
            let mut b = crate::RedactorBuilder::new();
            b.shapes = false;
            let without = b.build().unwrap();
            assert!(with.inner.shaped.is_some() && without.inner.shaped.is_none());
            let (a, ca) = with.redact_all(&hay);
            let (b, cb) = without.redact_all(&hay);
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "input {:?}",
                String::from_utf8_lossy(&hay)
            );
            proptest::prop_assert_eq!(ca, cb);
        }
    }
}
