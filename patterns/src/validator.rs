//! Validators: cheap checks run on regex candidates so that build numbers, digests and
//! placeholders survive while real identifiers and secrets are masked.
//!
//! A validator sees the *candidate*: the rule's `secret` group, or the whole match when the
//! rule has none. Candidates are raw bytes (not necessarily UTF-8) and may carry separators.
//! Every check here is allocation-free (fixed-size stack buffers) and total: it returns
//! `false` rather than panicking on any input, whatever its length or content.
//!
//! | name           | accepts                                                                  |
//! |----------------|--------------------------------------------------------------------------|
//! | `none`         | everything                                                               |
//! | `ssn`          | 9 digits, SSA-issuable: area ∉ {000, 666, 900–999}, group ≠ 00, serial ≠ 0000, not a known advertising/sample number, not all one digit |
//! | `itin`         | 9 digits, area 9xx, group in 50–65, 70–88, 90–92, 94–99, serial ≠ 0000 |
//! | `luhn`         | ≥ 2 digits passing the Luhn checksum                                      |
//! | `card`         | 13–19 digits, Luhn, a known IIN range with a length valid for it, sane grouping |
//! | `npi`          | 10 digits starting 1 or 2, Luhn over `80840` + the 10 digits             |
//! | `dea`          | registrant letter + letter (or `9`) + 7 digits with the DEA checksum     |
//! | `mbi`          | Medicare Beneficiary Identifier, upper case, optional dashes after 4th and 7th char |
//! | `entropy>=X`   | not a placeholder, and Shannon entropy ≥ X bits per byte (see [`Validator::Entropy`]) |
//!
//! Separators: the digit validators (`ssn`, `itin`, `luhn`, `card`) skip `-`, ` ` and `.`
//! between digits; any other non-digit byte rejects the candidate. `npi` takes digits only.

/// A check applied to the masked text of a candidate match.
#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    /// No check: every candidate passes.
    None,
    /// US Social Security Number (9 digits, SSA issuance rules, no known fake numbers).
    Ssn,
    /// US Individual Taxpayer Identification Number (9xx-GG-SSSS with the IRS group ranges).
    Itin,
    /// Luhn (mod 10) checksum over the digits.
    Luhn,
    /// Payment card: length, Luhn, issuer (IIN) range and consistent grouping.
    Card,
    /// US National Provider Identifier (Luhn with the `80840` prefix).
    Npi,
    /// US DEA registration number (letter rules and checksum).
    Dea,
    /// Medicare Beneficiary Identifier (character classes per position).
    Mbi,
    /// Not a placeholder and Shannon entropy ≥ the given bits per byte.
    ///
    /// Placeholders rejected whatever the threshold: empty text; one repeated character;
    /// text made only of mask characters (`*`, `x`, `X`, `#`, `.`, `•`); text containing `***`;
    /// template or variable references (`${..}`, `$(..)`, `$VAR`, `{{ .. }}`, `%VAR%`, `<..>`,
    /// `[...]`, e.g. `[REDACTED:...]`, `[MASKED]`); well-known dummy values compared
    /// case-insensitively (`changeme`, `password`, `secret`, `redacted`, `example`, `null`,
    /// `true`, ...); anything containing `example` or `redacted`, or both `your` and `here`
    /// (`your_password_here`); filesystem paths (`/var/...`, `./x`, `~/x`, `C:\x`) and URLs;
    /// code and object dumps (`Token{a64f992`, `function(t){`, `pkg.Class@1a2b3c`, `x.test(y)`).
    ///
    /// With a threshold above zero, plain words and identifiers are rejected too: text made
    /// only of lower-case letters, or only of upper-case letters, plus `-`, `_`, `.`
    /// (`refresh_token`, `required`, `my-app-secret`, `NOT_SET`). Those are key names and
    /// enum values in configuration dumps, not random secrets. `entropy>=0` is therefore the
    /// pure placeholder check (used where any real value must go, e.g. URL passwords).
    Entropy(f32),
}

impl Validator {
    /// Parses the TOML `validator` string: "none","ssn","itin","luhn","card","npi","dea","mbi",
    /// "entropy>=3.5". Names are case-insensitive; surrounding blanks are ignored.
    pub fn parse(s: &str) -> Result<Validator, String> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "" | "none" => return Ok(Validator::None),
            "ssn" => return Ok(Validator::Ssn),
            "itin" => return Ok(Validator::Itin),
            "luhn" => return Ok(Validator::Luhn),
            "card" => return Ok(Validator::Card),
            "npi" => return Ok(Validator::Npi),
            "dea" => return Ok(Validator::Dea),
            "mbi" => return Ok(Validator::Mbi),
            _ => {}
        }
        if let Some(rest) = lower.strip_prefix("entropy") {
            let num = rest.trim_start();
            let num = num
                .strip_prefix(">=")
                .ok_or_else(|| format!("validator {t:?}: expected `entropy>=X` (bits per byte)"))?
                .trim();
            let x: f32 = num
                .parse()
                .map_err(|_| format!("validator {t:?}: `{num}` is not a number"))?;
            if !x.is_finite() || !(0.0..=8.0).contains(&x) {
                return Err(format!(
                    "validator {t:?}: entropy threshold must be between 0 and 8 bits per byte"
                ));
            }
            return Ok(Validator::Entropy(x));
        }
        Err(format!(
            "unknown validator {t:?} (expected none, ssn, itin, luhn, card, npi, dea, mbi or entropy>=X)"
        ))
    }

    /// True when `text` (the candidate: the rule's `secret` group or whole match, raw bytes,
    /// may contain separators like '-', ' ', '.') passes. Does not allocate; never panics.
    pub fn check(&self, text: &[u8]) -> bool {
        match self {
            Validator::None => true,
            Validator::Ssn => check_ssn(text),
            Validator::Itin => check_itin(text),
            Validator::Luhn => check_luhn(text),
            Validator::Card => check_card(text),
            Validator::Npi => check_npi(text),
            Validator::Dea => check_dea(text),
            Validator::Mbi => check_mbi(text),
            Validator::Entropy(x) => check_entropy(text, *x),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// digit helpers

#[inline]
fn is_sep(b: u8) -> bool {
    matches!(b, b'-' | b' ' | b'.')
}

/// Collects the digits of `text` (skipping separators) into `buf`. Returns the number of
/// digits, or `None` if another byte occurs or there are more digits than `buf` holds.
fn digits<const N: usize>(text: &[u8], buf: &mut [u8; N]) -> Option<usize> {
    let mut n = 0;
    for &b in text {
        if b.is_ascii_digit() {
            if n == N {
                return None;
            }
            buf[n] = b - b'0';
            n += 1;
        } else if !is_sep(b) {
            return None;
        }
    }
    Some(n)
}

/// Luhn over a digit slice (values 0..=9), the last digit being the check digit.
fn luhn_ok(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &v) in d.iter().rev().enumerate() {
        let mut v = u32::from(v);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn num(d: &[u8]) -> u32 {
    d.iter().fold(0u32, |acc, &v| acc * 10 + u32::from(v))
}

// ---------------------------------------------------------------------------------------------
// SSN / ITIN

/// Advertising, sample and textbook numbers that are SSN-valid in shape but never real.
const FAKE_SSNS: [u32; 3] = [
    78_051_120,  // Woolworth wallet card (078-05-1120)
    219_099_999, // Social Security Administration pamphlet (219-09-9999)
    123_456_789, // the universal textbook/sample number (123-45-6789)
];

fn nine_digits(text: &[u8]) -> Option<[u8; 9]> {
    let mut d = [0u8; 9];
    match digits(text, &mut d) {
        Some(9) => Some(d),
        _ => None,
    }
}

fn check_ssn(text: &[u8]) -> bool {
    let Some(d) = nine_digits(text) else {
        return false;
    };
    let area = num(&d[0..3]);
    let group = num(&d[3..5]);
    let serial = num(&d[5..9]);
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    if d.iter().all(|&v| v == d[0]) {
        return false;
    }
    !FAKE_SSNS.contains(&num(&d))
}

fn check_itin(text: &[u8]) -> bool {
    let Some(d) = nine_digits(text) else {
        return false;
    };
    if d[0] != 9 {
        return false;
    }
    let group = num(&d[3..5]);
    let serial = num(&d[5..9]);
    let group_ok = matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99);
    group_ok && serial != 0
}

// ---------------------------------------------------------------------------------------------
// Luhn / card / NPI

fn check_luhn(text: &[u8]) -> bool {
    let mut d = [0u8; 64];
    match digits(text, &mut d) {
        Some(n) if n >= 2 => luhn_ok(&d[..n]),
        _ => false,
    }
}

/// Issuer ranges: (prefix length, low, high, min length, max length).
const IIN: &[(usize, u32, u32, usize, usize)] = &[
    (1, 4, 4, 13, 19),           // Visa (13, 16, 19 in practice)
    (2, 51, 55, 16, 16),         // Mastercard
    (4, 2221, 2720, 16, 16),     // Mastercard 2-series
    (2, 34, 34, 15, 15),         // American Express
    (2, 37, 37, 15, 15),         // American Express
    (4, 6011, 6011, 16, 19),     // Discover
    (3, 644, 649, 16, 19),       // Discover
    (2, 65, 65, 16, 19),         // Discover
    (6, 622126, 622925, 16, 19), // Discover / China UnionPay co-brand
    (4, 3528, 3589, 16, 19),     // JCB
    (3, 300, 305, 14, 19),       // Diners Club Carte Blanche
    (2, 36, 36, 14, 19),         // Diners Club International
    (2, 38, 39, 16, 19),         // Diners Club (Discover network)
    (2, 62, 62, 16, 19),         // China UnionPay
    (2, 50, 50, 13, 19),         // Maestro
    (2, 56, 58, 13, 19),         // Maestro
    (4, 6304, 6304, 13, 19),     // Maestro (Laser)
    (4, 6759, 6759, 13, 19),     // Maestro UK
    (6, 676770, 676770, 13, 19), // Maestro UK
    (6, 676774, 676774, 13, 19), // Maestro UK
];

fn visa_len_ok(n: usize) -> bool {
    matches!(n, 13 | 16 | 19)
}

/// Grouping accepted for a card number written with separators:
/// * no separator at all, or
/// * one kind of separator (all `' '` or all `'-'`), single, between digits, and groups of
///   4-4-4-…-(1..4) (every group 4 digits but the last, which has 1–4), or 4-6-4 / 4-6-5
///   (American Express and Diners Club print style).
///
/// Dots are not a card separator (`4111.1111...` is a version or a number, not a card).
fn card_grouping_ok(text: &[u8]) -> bool {
    let mut sep: u8 = 0;
    let mut groups = [0usize; 8];
    let mut ng = 0usize;
    let mut cur = 0usize;
    for &b in text {
        if b.is_ascii_digit() {
            cur += 1;
        } else if b == b' ' || b == b'-' {
            if sep == 0 {
                sep = b;
            } else if sep != b {
                return false;
            }
            if cur == 0 || ng == groups.len() - 1 {
                return false; // leading or doubled separator, or too many groups
            }
            groups[ng] = cur;
            ng += 1;
            cur = 0;
        } else {
            return false;
        }
    }
    if cur == 0 {
        return false; // trailing separator or empty
    }
    groups[ng] = cur;
    ng += 1;
    if ng == 1 {
        return true;
    }
    let g = &groups[..ng];
    let by_fours = g[..ng - 1].iter().all(|&x| x == 4) && (1..=4).contains(&g[ng - 1]);
    let amex_style = ng == 3 && g[0] == 4 && g[1] == 6 && (g[2] == 4 || g[2] == 5);
    by_fours || amex_style
}

fn check_card(text: &[u8]) -> bool {
    if !card_grouping_ok(text) {
        return false;
    }
    let mut d = [0u8; 19];
    let n = match digits(text, &mut d) {
        Some(n) if (13..=19).contains(&n) => n,
        _ => return false,
    };
    let d = &d[..n];
    if !luhn_ok(d) {
        return false;
    }
    IIN.iter().any(|&(plen, lo, hi, min, max)| {
        let p = num(&d[..plen]);
        p >= lo && p <= hi && n >= min && n <= max && (lo != 4 || plen != 1 || visa_len_ok(n))
    })
}

fn check_npi(text: &[u8]) -> bool {
    if text.len() != 10 || !text.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if text[0] != b'1' && text[0] != b'2' {
        return false;
    }
    let mut d = [8u8, 0, 8, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for (slot, &b) in d[5..].iter_mut().zip(text) {
        *slot = b - b'0';
    }
    luhn_ok(&d)
}

// ---------------------------------------------------------------------------------------------
// DEA / MBI

/// First letter of a DEA number: the registrant type.
const DEA_REGISTRANT: &[u8] = b"ABCDEFGHJKLMPRSTUX";

fn check_dea(text: &[u8]) -> bool {
    if text.len() != 9 {
        return false;
    }
    if !DEA_REGISTRANT.contains(&text[0]) {
        return false;
    }
    // Second character: first letter of the registrant's last name (or business name),
    // or '9' for some business-activity registrations.
    if !(text[1].is_ascii_uppercase() || text[1] == b'9') {
        return false;
    }
    let ds = &text[2..];
    if !ds.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let d = |i: usize| u32::from(ds[i] - b'0');
    let sum = d(0) + d(2) + d(4) + 2 * (d(1) + d(3) + d(5));
    sum % 10 == d(6)
}

/// Letters allowed in an MBI: A–Z except S, L, O, I, B, Z.
#[inline]
fn mbi_alpha(b: u8) -> bool {
    b.is_ascii_uppercase() && !matches!(b, b'S' | b'L' | b'O' | b'I' | b'B' | b'Z')
}

fn check_mbi(text: &[u8]) -> bool {
    // Either 11 characters, or 13 with dashes exactly after the 4th and 7th character.
    let mut c = [0u8; 11];
    match text.len() {
        11 => c.copy_from_slice(text),
        13 => {
            if text[4] != b'-' || text[8] != b'-' {
                return false;
            }
            c[..4].copy_from_slice(&text[..4]);
            c[4..7].copy_from_slice(&text[5..8]);
            c[7..].copy_from_slice(&text[9..]);
        }
        _ => return false,
    }
    let digit = |b: u8| b.is_ascii_digit();
    let alnum = |b: u8| mbi_alpha(b) || b.is_ascii_digit();
    (b'1'..=b'9').contains(&c[0])
        && mbi_alpha(c[1])
        && alnum(c[2])
        && digit(c[3])
        && mbi_alpha(c[4])
        && alnum(c[5])
        && digit(c[6])
        && mbi_alpha(c[7])
        && mbi_alpha(c[8])
        && digit(c[9])
        && digit(c[10])
}

// ---------------------------------------------------------------------------------------------
// entropy / placeholders

/// Values that are documentation or configuration stand-ins, compared case-insensitively
/// with the whole candidate.
const PLACEHOLDERS: &[&[u8]] = &[
    b"changeme",
    b"changeit",
    b"change_me",
    b"change-me",
    b"password",
    b"passw0rd",
    b"secret",
    b"redacted",
    b"masked",
    b"hidden",
    b"filtered",
    b"removed",
    b"example",
    b"placeholder",
    b"dummy",
    b"sample",
    b"null",
    b"nil",
    b"none",
    b"true",
    b"false",
    b"undefined",
    b"notset",
    b"not_set",
    b"not-set",
    b"unset",
    b"empty",
    b"default",
    b"required",
    b"optional",
    b"todo",
    b"fixme",
    b"tbd",
];

/// Substrings that make any candidate a stand-in (case-insensitive).
const PLACEHOLDER_PARTS: &[&[u8]] = &[b"example", b"redacted", b"placeholder", b"***"];

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || (hay.len() >= needle.len()
            && hay
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle)))
}

/// Mask characters: asterisks, x's, hashes, dots, and the bullet `•` (UTF-8 E2 80 A2).
fn only_mask_chars(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'*' | b'x' | b'X' | b'#' | b'.' => i += 1,
            0xE2 if text.get(i + 1) == Some(&0x80) && text.get(i + 2) == Some(&0xA2) => i += 3,
            _ => return false,
        }
    }
    true
}

fn looks_like_path_or_url(text: &[u8]) -> bool {
    if contains_ci(text, b"://") {
        return true;
    }
    if text.starts_with(b"./") || text.starts_with(b"../") || text.starts_with(b"~/") {
        return true;
    }
    // A relative source path: identifier segments joined by '/', ending in a file name with
    // a short lower-case extension (`pkg/router/sync.go`, `src/lib.rs`).
    if text.contains(&b'/') {
        let segs_ok = text.split(|&b| b == b'/').all(|seg| {
            !seg.is_empty()
                && seg.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
                })
        });
        let ext_ok = text.rsplit(|&b| b == b'/').next().is_some_and(|last| {
            last.rsplit(|&b| b == b'.')
                .next()
                .is_some_and(|ext| (1..=5).contains(&ext.len()) && ext.len() < last.len())
        });
        if segs_ok && ext_ok {
            return true;
        }
    }
    // Windows drive path: C:\ or C:/
    if text.len() >= 3
        && text[0].is_ascii_alphabetic()
        && text[1] == b':'
        && (text[2] == b'\\' || text[2] == b'/')
    {
        return true;
    }
    // Absolute Unix path: "/" + a lower-case directory name (2+ chars) + "/" (/etc/, /home/,
    // /var/run/, /github/workspace). Base64 secrets may start with '/', but an all-lower-case
    // segment closed by another '/' is a path.
    if text.first() == Some(&b'/') {
        let rest = &text[1..];
        let seg = rest
            .iter()
            .take_while(|b| b.is_ascii_lowercase() || matches!(b, b'-' | b'_' | b'.'))
            .count();
        if seg >= 2 && rest.get(seg) == Some(&b'/') {
            return true;
        }
    }
    false
}

/// Source code or an object dump rather than a value: `Token{a64f992`, `function(t){...`,
/// `android.os.BinderProxy@2bd79ce` (Java identity string), or a call `name(...)` anywhere
/// (minified JavaScript such as `/.test(r.url))throw`).
fn looks_like_code(text: &[u8]) -> bool {
    let ident = text
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.'))
        .count();
    if ident >= 3 && text[0].is_ascii_alphabetic() {
        match text.get(ident) {
            Some(b'{') | Some(b'(') => return true,
            Some(b'@') => {
                let rest = &text[ident + 1..];
                if text[..ident].contains(&b'.')
                    && !rest.is_empty()
                    && rest.iter().all(u8::is_ascii_hexdigit)
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    (2..text.len()).any(|i| {
        text[i] == b'('
            && text[i - 1].is_ascii_alphabetic()
            && text[i - 2].is_ascii_alphabetic()
            && text[i + 1..].contains(&b')')
    })
}

/// True when the candidate is an obvious stand-in rather than a value.
fn is_placeholder(text: &[u8]) -> bool {
    let Some(&first) = text.first() else {
        return true;
    };
    if text.iter().all(|&b| b == first) || only_mask_chars(text) {
        return true;
    }
    // Template and variable references, masked or bracketed stand-ins.
    match first {
        b'<' | b'[' | b'(' => return true,
        // `%NAME%` (Windows variables) and format directives (`%s`, `%(name)s`); a value
        // that merely begins with `%` is still a value.
        b'%' if is_percent_placeholder(text) => return true,
        // A value never begins with its own separator: `TestToken::test_x`, `token::parser`.
        b':' => return true,
        b'{' if text.get(1) == Some(&b'{') => return true,
        b'$' => {
            if let Some(&n) = text.get(1) {
                if n == b'{' || n == b'(' || n == b'_' || n.is_ascii_alphabetic() {
                    return true;
                }
            }
        }
        _ => {}
    }
    if PLACEHOLDERS.iter().any(|p| text.eq_ignore_ascii_case(p)) {
        return true;
    }
    if PLACEHOLDER_PARTS.iter().any(|p| contains_ci(text, p)) {
        return true;
    }
    if contains_ci(text, b"your") && contains_ci(text, b"here") {
        return true;
    }
    looks_like_path_or_url(text) || looks_like_code(text) || looks_like_version(text)
}

fn is_percent_placeholder(text: &[u8]) -> bool {
    let inner = &text[1..];
    if let Some(name) = inner.strip_suffix(b"%") {
        if !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return true;
        }
    }
    if inner.first() == Some(&b'(') {
        return true;
    }
    let Some((&conv, flags)) = inner.split_last() else {
        return true;
    };
    matches!(conv, b's' | b'd' | b'i' | b'f' | b'v' | b'q' | b'x' | b'r')
        && flags
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'l'))
}

/// A version such as `3.14.12-rc.3` or `v1.2.3` (an image tag after `token:`).
fn looks_like_version(text: &[u8]) -> bool {
    let t = text.strip_prefix(b"v").unwrap_or(text);
    let core = t
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .count();
    let dots = t[..core].iter().filter(|&&b| b == b'.').count();
    core > 0
        && t[0].is_ascii_digit()
        && dots >= 1
        && (core == t.len()
            || (matches!(t[core], b'-' | b'+')
                && t[core + 1..]
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))))
}

/// A plain word or identifier: only lower-case letters, or only upper-case letters, plus the
/// word separators `-`, `_`, `.`.
fn is_plain_word(text: &[u8]) -> bool {
    let seps = |b: &u8| matches!(b, b'-' | b'_' | b'.');
    let lower = text.iter().all(|b| b.is_ascii_lowercase() || seps(b));
    let upper = text.iter().all(|b| b.is_ascii_uppercase() || seps(b));
    lower || upper
}

/// Shannon entropy of `text` in bits per byte (0 for empty text).
///
/// As `log2 n - (1/n) Σ c·log2 c` over the byte counts `c`, with `c·log2 c` from a table:
/// the per-byte `-p·log2 p` form took ~2k instructions per candidate (a log2 per distinct
/// byte and a walk over all 256 counts), 5% of a CI log's filtering.
pub(crate) fn shannon_entropy(text: &[u8]) -> f32 {
    static C_LOG2_C: std::sync::LazyLock<[f64; 256]> = std::sync::LazyLock::new(|| {
        std::array::from_fn(|c| {
            if c < 2 {
                0.0
            } else {
                c as f64 * (c as f64).log2()
            }
        })
    });
    if text.is_empty() {
        return 0.0;
    }
    let table = &*C_LOG2_C;
    let mut counts = [0u32; 256];
    for &b in text {
        counts[usize::from(b)] += 1;
    }
    let mut sum = 0.0f64;
    // Each distinct byte once, in the order it first occurs; its count is then cleared.
    for &b in text {
        let c = std::mem::take(&mut counts[usize::from(b)]) as usize;
        if c > 0 {
            sum += match table.get(c) {
                Some(&t) => t,
                None => c as f64 * (c as f64).log2(),
            };
        }
    }
    let n = text.len() as f64;
    (n.log2() - sum / n) as f32
}

fn check_entropy(text: &[u8], min_bits: f32) -> bool {
    if is_placeholder(text) {
        return false;
    }
    if min_bits > 0.0 && is_plain_word(text) {
        return false;
    }
    // Small tolerance so that e.g. 8 distinct bytes (exactly 3.0 bits) pass `entropy>=3`.
    shannon_entropy(text) + 1e-4 >= min_bits
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn table(v: Validator, pass: &[&str], fail: &[&str]) {
        for s in pass {
            assert!(v.check(s.as_bytes()), "{v:?} should accept {s:?}");
        }
        for s in fail {
            assert!(!v.check(s.as_bytes()), "{v:?} should reject {s:?}");
        }
    }

    #[test]
    fn parse_names() {
        let cases: &[(&str, Validator)] = &[
            ("none", Validator::None),
            ("", Validator::None),
            ("ssn", Validator::Ssn),
            ("SSN", Validator::Ssn),
            (" itin ", Validator::Itin),
            ("luhn", Validator::Luhn),
            ("card", Validator::Card),
            ("npi", Validator::Npi),
            ("dea", Validator::Dea),
            ("mbi", Validator::Mbi),
            ("entropy>=3.5", Validator::Entropy(3.5)),
            ("entropy >= 3", Validator::Entropy(3.0)),
            ("entropy>=0", Validator::Entropy(0.0)),
        ];
        for (s, want) in cases {
            assert_eq!(Validator::parse(s).as_ref(), Ok(want), "parse {s:?}");
        }
        for bad in [
            "ssnn",
            "entropy",
            "entropy>3",
            "entropy>=x",
            "entropy>=9",
            "entropy>=-1",
            "entropy>=NaN",
            "luhn10",
        ] {
            let err = Validator::parse(bad).expect_err(bad);
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn none_accepts_all() {
        table(Validator::None, &["", "anything", "\u{0}"], &[]);
    }

    #[test]
    fn ssn() {
        table(
            Validator::Ssn,
            &[
                "536-22-1849",
                "536 22 1849",
                "536221849",
                "001-01-0001",
                "665-99-9998",
                "899-12-3456",
                "772-10-4417",
            ],
            &[
                "000-12-3456", // area 000
                "666-12-3456", // area 666
                "900-12-3456", // 9xx (ITIN range)
                "987-65-4321",
                "536-00-1849", // group 00
                "536-22-0000", // serial 0000
                "078-05-1120", // Woolworth card
                "219-09-9999", // SSA pamphlet
                "123-45-6789", // textbook sample
                "111-11-1111",
                "555555555",
                "536-22-184", // 8 digits
                "536-22-18490",
                "536-22-184a",
                "536/22/1849",
                "",
                "---",
            ],
        );
    }

    #[test]
    fn itin() {
        table(
            Validator::Itin,
            &[
                "912-50-1234",
                "900-65-0001",
                "999-70-1234",
                "934-88-4321",
                "945-90-1111",
                "923-92-2222",
                "956-94-3333",
                "978-99-9999",
                "912 78 1234",
            ],
            &[
                "812-70-1234",
                "912-49-1234",
                "912-66-1234",
                "912-69-1234",
                "912-89-1234",
                "912-93-1234",
                "912-70-0000",
                "912-7-01234x",
                "91270123",
                "",
            ],
        );
    }

    #[test]
    fn luhn() {
        table(
            Validator::Luhn,
            &[
                "79927398713",
                "4111111111111111",
                "4111-1111-1111-1111",
                "18",
                "0000000000",
            ],
            &[
                "79927398710",
                "4111111111111112",
                "1",
                "",
                "4111x1111",
                "12",
            ],
        );
    }

    #[test]
    fn card() {
        table(
            Validator::Card,
            &[
                "4111111111111111", // Visa 16
                "4222222222222",    // Visa 13
                "4111 1111 1111 1111",
                "4111-1111-1111-1111",
                "5555555555554444",  // Mastercard
                "2223003122003222",  // Mastercard 2-series
                "378282246310005",   // Amex
                "3782 822463 10005", // Amex grouping
                "371449635398431",
                "6011111111111117", // Discover
                "6011000990139424",
                "3530111333300000", // JCB
                "3566002020360505",
                "30569309025904", // Diners 14
                "3056 930902 5904",
                "36227206271667",   // Diners 36, 14 digits
                "6200000000000005", // UnionPay
                "6759649826438453", // Maestro UK
            ],
            &[
                "4111111111111112",    // Luhn fails
                "4111 1111-1111 1111", // mixed separators
                "4111  1111 1111 1111",
                "4111.1111.1111.1111", // dots are not card separators
                "41 11111111 111111",  // odd grouping
                "-4111111111111111",
                "4111111111111111-",
                "1234567812345670", // Luhn ok, no issuer with prefix 1
                "7777777777777777",
                "1704456896123", // epoch millis
                "378282246310005 ",
                "37828224631000",       // Amex with 14 digits
                "5555555555554",        // Mastercard 13
                "411111111111",         // 12 digits
                "41111111111111111111", // 20 digits
                "9111111111111111",
                "",
            ],
        );
    }

    #[test]
    fn card_luhn_fixture_sanity() {
        // Visa 19 (4-4-4-4-3 grouping) with a computed check digit.
        let base = *b"411111111111111111";
        for c in b'0'..=b'9' {
            let mut s = [0u8; 19];
            s[..18].copy_from_slice(&base);
            s[18] = c;
            if check_luhn(&s) {
                assert!(Validator::Card.check(&s));
                let mut g = [0u8; 23];
                let mut j = 0;
                for (i, &b) in s.iter().enumerate() {
                    if i > 0 && i % 4 == 0 {
                        g[j] = b' ';
                        j += 1;
                    }
                    g[j] = b;
                    j += 1;
                }
                assert!(
                    Validator::Card.check(&g[..j]),
                    "{:?}",
                    std::str::from_utf8(&g[..j])
                );
                return;
            }
        }
        panic!("no Luhn digit found");
    }

    #[test]
    fn npi() {
        table(
            Validator::Npi,
            &["1234567893", "1245319599", "1003000126", "2000000002"],
            &[
                "1234567890",
                "1234567894",
                "3234567893",
                "0234567893",
                "123456789",
                "12345678933",
                "12345-7893",
                "123456789a",
                "",
            ],
        );
    }

    #[test]
    fn dea() {
        table(
            Validator::Dea,
            &[
                "AB1234563",
                "BJ6125341",
                "FN1234563",
                "M91234563",
                "XA0000000",
            ],
            &[
                "AB1234564",
                "IB1234563",
                "NB1234563",
                "ab1234563",
                "A11234563",
                "AB123456",
                "AB12345633",
                "AB12345-3",
                "1B1234563",
                "",
            ],
        );
    }

    #[test]
    fn mbi() {
        table(
            Validator::Mbi,
            &[
                "1EG4TE5MK73",
                "1EG4-TE5-MK73",
                "9AA0AA0AA00",
                "5C99D99EF12",
                "2KX7-P13-RW48",
            ],
            &[
                "1eg4-te5-mk73", // lower case
                "0EG4TE5MK73",   // first digit 0
                "1SG4TE5MK73",   // S not allowed
                "1EG4TE5ML73",   // L not allowed
                "1EGATE5MK73",   // pos 4 must be digit
                "1EG4-TE5MK73",  // one dash only
                "1EG-4TE5-MK73", // dash in wrong place
                "1EG4TE5MK7",
                "1EG4TE5MK733",
                "1EG4 TE5 MK73",
                "",
            ],
        );
    }

    #[test]
    fn entropy_values() {
        let v = Validator::Entropy(3.0);
        table(
            v,
            &[
                "hN7kQ2xP9vL4",
                "S3cr3t!Passw0rd#2024",
                "AbCdEfGh",
                "d41d8cd98f00b204e9800998ecf8427e",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCY4QwErTy",
                "/b8Hq2LmZp9Xc4R", // base64 starting with '/'
                "t0k3n-2f9a-77bc",
                "k9(Lm)2pQ#x7", // parens, but not a call
                "Secret@2024xyz",
                "%Ge1oKkXfy6ab*H", // begins with '%' but is no format directive
                "%%weAJTcydiNJ",
            ],
            &[
                "********",
                "xxxxxxxxxxxx",
                "XXXXXXXX",
                "########",
                "........",
                "••••••••",
                "aaaaaaaaaaaa",
                "${{ secrets.GITHUB_TOKEN }}",
                "${NPM_TOKEN}",
                "$(cat /run/secrets/token)",
                "$DB_PASSWORD",
                "{{ .Values.password }}",
                "%API_KEY%",
                "%(password)s",
                "%-12s",
                ":test_handler_upload", // `TestToken::test_handler_upload`
                "3.14.12-rc.3",         // an image tag: `.../token:3.14.12-rc.3`
                "v1.22.0",
                "pkg/router/sync_socket.go",
                "src/tracing_timeout.rs",
                "<redacted>",
                "<your-token>",
                "[REDACTED:github-token]",
                "[MASKED]",
                "[FILTERED]",
                "changeme",
                "CHANGEME",
                "changeit",
                "Password",
                "example-token-123",
                "AKIAIOSFODNN7EXAMPLE",
                "undefined",
                "your_password_here",
                "YourApiKeyHere123",
                "abc***def",
                "refresh_token",
                "production",
                "authentication",
                "my-app-secret",
                "NOT_SET_VALUE",
                "/home/runner/work/app",
                "/var/run/secrets/token",
                "./secrets/token.txt",
                "~/.ssh/id_rsa",
                "C:\\Users\\runner\\token",
                "https://vault.internal:8200",
                "AppWindowToken{9f4ef63",
                "function(t){const",
                "android.os.BinderProxy@2bd79ce",
                "/.test(r.url))throw",
                "([A-Za-z0-9+/=]+)",
                "aabbaabb", // too low entropy (1 bit)
                "",
            ],
        );
    }

    #[test]
    fn entropy_zero_is_placeholder_only() {
        table(
            Validator::Entropy(0.0),
            &["postgres", "hunter2", "s3cret", "p@ss:w0rd", "pw"],
            &[
                "***",
                "${DB_PASS}",
                "password",
                "<pass>",
                "[REDACTED:url-credentials]",
                "xxxx",
                "",
            ],
        );
    }

    #[test]
    fn entropy_thresholds() {
        assert!(shannon_entropy(b"") == 0.0);
        assert!((shannon_entropy(b"ab") - 1.0).abs() < 1e-6);
        assert!((shannon_entropy(b"abcdefgh") - 3.0).abs() < 1e-6);
        assert!(Validator::Entropy(3.0).check(b"Ab3dEf7h"));
        assert!(!Validator::Entropy(3.5).check(b"Ab3dEf7h")); // 8 bytes: at most 3 bits
        assert!(Validator::Entropy(4.5).check(b"Zq8/Lp3+Nw7xVb2kHs9mRt5yGd1cJf6e"));
    }

    proptest::proptest! {
        /// The table form equals the textbook `-Σ p·log2 p`, including counts past the table
        /// (a byte repeated 300 times).
        #[test]
        fn entropy_equals_the_textbook_formula(
            text in proptest::collection::vec(proptest::sample::select(b"aab0-Z\xff".to_vec()), 0..600)
        ) {
            let mut counts = [0u32; 256];
            text.iter().for_each(|&b| counts[b as usize] += 1);
            let n = text.len() as f64;
            let want: f64 = counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| -(c as f64 / n) * (c as f64 / n).log2())
                .sum();
            proptest::prop_assert!((shannon_entropy(&text) as f64 - want).abs() < 1e-5);
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let inputs: [&[u8]; 10] = [
            b"",
            b"\xff\xfe\x00",
            b"-",
            b"  ",
            &[b'9'; 200],
            &[b'-'; 200],
            &[0xE2; 5],
            b"\xE2\x80",
            b"$",
            b"{",
        ];
        let vs = [
            Validator::None,
            Validator::Ssn,
            Validator::Itin,
            Validator::Luhn,
            Validator::Card,
            Validator::Npi,
            Validator::Dea,
            Validator::Mbi,
            Validator::Entropy(0.0),
            Validator::Entropy(3.5),
        ];
        for v in &vs {
            for i in inputs {
                let _ = v.check(i);
            }
            // Every prefix of a long mixed buffer.
            let buf: Vec<u8> = (0u16..600).map(|i| (i * 37 % 256) as u8).collect();
            for n in 0..buf.len() {
                let _ = v.check(&buf[..n]);
            }
        }
    }
}
