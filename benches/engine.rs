//! Criterion benchmarks of the redaction engine (`logveil-patterns`).
//!
//! ```sh
//! cargo bench --bench engine                 # all groups (about 2-3 minutes on 2 cores)
//! cargo bench --bench engine -- dirty_lines  # one group
//! cargo bench --bench engine -- --test       # run every bench once (smoke test)
//! ```
//!
//! Every input is generated here, deterministically (fixed seeds, no files): about 8 MiB of
//! CI log lines (GitHub Actions timestamps, cargo/gcc/javac diagnostics, pytest/jest/JUnit
//! results, JSON log lines, URLs, SHAs and sha256 digests, UUIDs, versions, ANSI colour, `\r`
//! progress bars, a few 4-24 KiB minified JSON lines, hard negatives such as invalid SSNs and
//! Luhn-invalid numbers), with or without about one sensitive value per 2 KiB; one 100 MiB
//! line; 200 vendor-token rules built like `benches/gen_rules.py`'s; 10,000 known values.
//! Throughput is input bytes (criterion prints MiB/s).
//!
//! Groups:
//! - `clean_lines`: lines with nothing to mask, `redact_lines` over ~1 MiB newline-aligned blocks.
//! - `dirty_lines`: the same with ~1 sensitive value per 2 KiB.
//! - `long_line`: one 100 MiB line (minified JSON) ending with a GitHub token, `redact_all`.
//! - `rules_default_vs_200`: dirty lines, default packs vs default packs + 200 user rules.
//! - `known_values`: dirty lines, default packs with 0 vs 10,000 known values.
//!
//! Before measuring, each input is redacted once and the number of masks is printed to stderr
//! (`clean_lines` should print 0).

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use logveil_patterns::{check_examples, Counts, Redactor, RedactorBuilder};

/// Size of the line inputs.
const LINES_BYTES: usize = 8 << 20;
/// Size of the blocks given to `redact_lines` (cut after the last newline before it).
const BLOCK_BYTES: usize = 1 << 20;
/// Size of the single long line (newline included).
const LONG_LINE_BYTES: usize = 100 << 20;
const EXTRA_RULES: usize = 200;
const KNOWN_VALUES: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness (SplitMix64: no extra dependency, same bytes on every machine).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 11) as u128 * n as u128) >> 53) as usize
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T: ?Sized>(&mut self, xs: &[&'a T]) -> &'a T {
        xs[self.below(xs.len())]
    }
    fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
    fn hex(&mut self, n: usize) -> String {
        self.chars(b"0123456789abcdef", n)
    }
    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(4),
            self.hex(12)
        )
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LOWER_DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// ---------------------------------------------------------------------------------------------
// CI log lines.

const WORDS: &[&str] = &[
    "parser",
    "client",
    "server",
    "config",
    "handler",
    "cache",
    "router",
    "schema",
    "worker",
    "session",
    "metrics",
    "upload",
    "render",
    "index",
    "storage",
    "queue",
    "billing",
    "report",
    "auth",
    "widget",
    "layout",
    "codec",
    "buffer",
    "stream",
    "planner",
    "registry",
    "ledger",
    "scheduler",
    "invoice",
    "catalog",
    "search",
    "profile",
    "gateway",
    "export",
    "import",
];
const CRATES: &[&str] = &[
    "serde",
    "tokio",
    "regex",
    "hyper",
    "clap",
    "anyhow",
    "rayon",
    "memchr",
    "syn",
    "quote",
    "proc-macro2",
    "libc",
    "bytes",
    "futures-util",
    "tracing",
    "itoa",
    "ryu",
    "smallvec",
    "once_cell",
    "aho-corasick",
    "mio",
    "socket2",
    "http",
    "h2",
    "indexmap",
    "hashbrown",
];
const PY_PKGS: &[&str] = &[
    "requests",
    "urllib3",
    "numpy",
    "pandas",
    "pytest",
    "attrs",
    "certifi",
    "idna",
    "six",
    "packaging",
    "pluggy",
    "iniconfig",
    "charset_normalizer",
    "pyyaml",
    "jinja2",
    "click",
];
const NPM_PKGS: &[&str] = &[
    "inflight",
    "glob",
    "rimraf",
    "uuid",
    "querystring",
    "har-validator",
    "request",
    "debug",
    "source-map-resolve",
    "urix",
    "resolve-url",
    "stable",
    "w3c-hr-time",
    "domexception",
];
const COMMIT_MSGS: &[&str] = &[
    "Merge pull request #4821 from feature/retry-backoff",
    "fix: handle empty response bodies",
    "chore(deps): bump actions/checkout from 3 to 4",
    "refactor scheduler loop",
    "docs: update install notes",
    "feat: add export to parquet",
];

struct LogGen {
    r: Rng,
    secs: u64,
    dirty: bool,
    until_secret: usize,
}

impl LogGen {
    fn new(seed: u64, dirty: bool) -> Self {
        let mut r = Rng::new(seed);
        let until_secret = r.range(1024, 3072);
        LogGen {
            r,
            secs: 36_000,
            dirty,
            until_secret,
        }
    }

    fn word(&mut self) -> &'static str {
        self.r.pick(WORDS)
    }

    fn version(&mut self) -> String {
        format!(
            "{}.{}.{}",
            self.r.below(4),
            self.r.below(40),
            self.r.below(20)
        )
    }

    /// GitHub Actions timestamp prefix.
    fn stamp(&mut self, s: &mut String) {
        self.secs += self.r.below(2) as u64;
        let (h, m, sec) = (self.secs / 3600 % 24, self.secs / 60 % 60, self.secs % 60);
        let _ = write!(
            s,
            "2024-05-01T{h:02}:{m:02}:{sec:02}.{:07}Z ",
            self.r.below(10_000_000)
        );
    }

    /// Appends one line (with its newline) to `out`.
    fn line(&mut self, out: &mut String) {
        let start = out.len();
        if self.dirty && self.until_secret == 0 {
            if self.r.chance(0.8) {
                self.stamp(out);
            }
            self.secret_line(out);
            self.until_secret = self.r.range(1024, 3072);
        } else {
            if self.r.chance(0.7) {
                self.stamp(out);
            }
            self.clean_line(out);
        }
        out.push('\n');
        self.until_secret = self.until_secret.saturating_sub(out.len() - start);
    }

    fn clean_line(&mut self, s: &mut String) {
        let w = self.word();
        match self.r.below(24) {
            0 => {
                let (c, v) = (self.r.pick(CRATES), self.version());
                let _ = write!(s, "   Compiling {c} v{v}");
            }
            1 => {
                let w2 = self.word();
                let _ = write!(s, "warning: unused variable: `{w}_{w2}`");
            }
            2 => {
                let (l, c) = (self.r.range(1, 2000), self.r.range(1, 80));
                let _ = write!(s, "  --> src/{w}/mod.rs:{l}:{c}");
            }
            3 => {
                let (l, w2, w3) = (self.r.range(1, 999), self.word(), self.word());
                let _ = write!(s, "{l:>4} |     let {w} = self.{w2}.{w3}(&ctx)?;");
            }
            4 => {
                let (l, c) = (self.r.range(1, 3000), self.r.range(1, 80));
                let _ = write!(
                    s,
                    "src/{w}.c:{l}:{c}: warning: implicit conversion loses integer precision: 'long' to 'int' [-Wshorten-64-to-32]"
                );
            }
            5 => {
                let (w2, p) = (self.word(), self.r.below(101));
                let res = if self.r.chance(0.95) {
                    "PASSED"
                } else {
                    "SKIPPED"
                };
                let _ = write!(s, "tests/test_{w}.py::test_{w}_{w2} {res}                               [{p:>3}%]");
            }
            6 => {
                let (w2, ms) = (self.word(), self.r.range(1, 900));
                let _ = write!(s, "    \u{2713} renders the {w} {w2} correctly ({ms} ms)");
            }
            7 | 8 => {
                let (id, st, ms, rid) = (
                    self.r.below(100_000),
                    self.r.pick(&["200", "201", "204", "304", "404"]),
                    self.r.range(1, 9999),
                    self.r.uuid(),
                );
                let (m, ss, frac) = (self.r.below(60), self.r.below(60), self.r.below(1000));
                let _ = write!(
                    s,
                    r#"{{"level":"info","time":"2024-05-01T10:{m:02}:{ss:02}.{frac:03}Z","msg":"request completed","method":"GET","path":"/api/v2/{w}/{id}","status":{st},"duration_ms":{}.{},"request_id":"{rid}"}}"#,
                    ms / 10,
                    ms % 10
                );
            }
            9 => {
                let (a, b, h, p, v, kb) = (
                    self.r.hex(2),
                    self.r.hex(2),
                    self.r.hex(60),
                    self.r.pick(PY_PKGS),
                    self.version(),
                    self.r.range(5, 9000),
                );
                let _ = write!(s, "  Downloading https://files.pythonhosted.org/packages/{a}/{b}/{h}/{p}-{v}-py3-none-any.whl ({kb} kB)");
            }
            10 => {
                let (p, v) = (self.r.pick(NPM_PKGS), self.version());
                let _ = write!(s, "npm WARN deprecated {p}@{v}: This module is not supported, and leaks memory. Do not use it.");
            }
            11 => {
                let (n, h, a, b, t) = (
                    self.r.range(1, 40),
                    self.r.hex(64),
                    self.r.range(1, 90),
                    self.r.range(90, 400),
                    self.r.range(1, 99),
                );
                let _ = write!(
                    s,
                    "#{n} sha256:{h} {a}.{}MB / {b}.{}MB {}.{t}s done",
                    self.r.below(10),
                    self.r.below(10),
                    self.r.below(30)
                );
            }
            12 => {
                let (n, k, m) = (self.r.range(1, 40), self.r.range(1, 12), 12);
                let _ = write!(
                    s,
                    "#{n} [builder {k}/{m}] RUN pip install --no-cache-dir -r requirements.txt"
                );
            }
            13 => {
                let (h, msg) = (self.r.hex(40), self.r.pick(COMMIT_MSGS));
                let _ = write!(s, "commit {h} ({msg})");
            }
            14 => {
                let (h, msg) = (self.r.hex(7), self.r.pick(COMMIT_MSGS));
                let _ = write!(s, "HEAD is now at {h} {msg}");
            }
            15 => {
                let n = self.r.range(1, 400);
                let _ = write!(
                    s,
                    "\x1b[32m\u{2714}\x1b[0m {w} suite: \x1b[1m{n} passed\x1b[0m, 0 failed"
                );
            }
            16 => {
                let c = self.r.pick(CRATES);
                let _ = write!(s, "\x1b[0m\x1b[1m\x1b[33mwarning\x1b[0m\x1b[1m: `{c}` (lib) generated 3 warnings\x1b[0m");
            }
            17 => {
                let _ = write!(
                    s,
                    "\x1b[0K\x1b[36;1mRun cargo test --workspace --locked\x1b[0m"
                );
            }
            18 => {
                let (n, sk, t) = (self.r.range(1, 300), self.r.below(5), self.r.range(1, 9999));
                let cls = format!("{}{}", &w[..1].to_ascii_uppercase(), &w[1..]);
                let _ = write!(
                    s,
                    "[INFO] Tests run: {n}, Failures: 0, Errors: 0, Skipped: {sk}, Time elapsed: {}.{:03} s - in com.example.{w}.{cls}ServiceTest",
                    t / 1000,
                    t % 1000
                );
            }
            19 => {
                let p = self.r.below(101);
                let _ = write!(
                    s,
                    "[{p:3}%] Building CXX object src/CMakeFiles/{w}.dir/{w}_impl.cpp.o"
                );
            }
            20 => {
                // Progress bar redrawn with carriage returns.
                let mut p = 0;
                while p <= 100 {
                    let bar = "=".repeat(p / 5);
                    let _ = write!(s, "\r{p:3}% [{bar:<20}] {}/{} files", p * 3, 300);
                    p += self.r.range(10, 40);
                }
            }
            21 => {
                let (u, v) = (self.r.uuid(), self.version());
                let _ = write!(s, "Resolved artifact {w}-{v}.tar.gz id={u} from https://artifacts.example.com/repo/{w}/{v}/");
            }
            22 => {
                // Hard negatives: invalid SSN areas, Luhn-invalid numbers, version quads.
                let n = self.r.range(10, 99);
                match self.r.below(3) {
                    0 => {
                        let _ = write!(
                            s,
                            "fixture record 000-{n}-{:04} rejected (invalid area)",
                            self.r.below(10_000)
                        );
                    }
                    1 => {
                        let _ = write!(
                            s,
                            "order id {} checksum mismatch",
                            luhn_invalid(&mut self.r)
                        );
                    }
                    _ => {
                        let _ = write!(
                            s,
                            "toolchain 10.{n}.{}.{} selected",
                            self.r.below(100),
                            self.r.below(100)
                        );
                    }
                }
            }
            _ => {
                if self.r.chance(0.02) {
                    self.minified_json(s);
                } else {
                    let _ = write!(
                        s,
                        "##[group]Run actions/cache@v4 key={w}-{}",
                        self.r.hex(16)
                    );
                }
            }
        }
    }

    /// A 4-24 KiB minified JSON line (coverage reports, API dumps).
    fn minified_json(&mut self, s: &mut String) {
        let target = s.len() + self.r.range(4 << 10, 24 << 10);
        s.push_str(r#"{"coverage":{"files":["#);
        while s.len() < target {
            let (w, w2, l, h) = (
                self.word(),
                self.word(),
                self.r.range(10, 3000),
                self.r.hex(12),
            );
            let _ = write!(
                s,
                r#"{{"path":"src/{w}/{w2}.ts","lines":{l},"covered":{},"hash":"{h}"}},"#,
                l / 2
            );
        }
        s.pop();
        s.push_str("]}}");
    }

    fn secret_line(&mut self, s: &mut String) {
        match self.r.below(9) {
            0 => {
                let k = self.r.chars(BASE32, 16);
                let _ = write!(s, "export AWS_ACCESS_KEY_ID=AKIA{k}");
            }
            1 => {
                let k = self.r.chars(ALNUM, 36);
                let _ = write!(s, "git remote set-url origin https://github.com/acme/app.git # GITHUB_TOKEN ghp_{k}");
            }
            2 => {
                let p = self.r.chars(
                    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789#%+",
                    14,
                );
                let _ = write!(
                    s,
                    "connecting to postgres host=db.internal user=app password={p} sslmode=require"
                );
            }
            3 => {
                let v = ssn(&mut self.r);
                let _ = write!(s, "patient ssn={v} loaded from fixture");
            }
            4 => {
                let (a, b) = (self.word(), self.word());
                let _ = write!(s, "notify: sent build report to {a}.{b}@example.com");
            }
            5 => {
                let v = format!(
                    "{}{}",
                    (b'A' + self.r.below(26) as u8) as char,
                    self.r.range(1_000_000, 9_999_999)
                );
                let _ = write!(s, "  patient record MRN: {v} synced");
            }
            6 => {
                let (a, b, c) = (
                    self.r.range(200, 999),
                    self.r.range(200, 999),
                    self.r.below(10_000),
                );
                let _ = write!(s, "contact phone: ({a}) {b}-{c:04}");
            }
            7 => {
                let c = luhn_valid(&mut self.r);
                let _ = write!(
                    s,
                    "charging card {} {} {} {} for order {}",
                    &c[0..4],
                    &c[4..8],
                    &c[8..12],
                    &c[12..16],
                    self.r.range(1000, 99999)
                );
            }
            _ => {
                let (w, k) = (self.word(), self.r.chars(ALNUM, 24));
                let _ = write!(
                    s,
                    r#"{{"level":"debug","msg":"stripe client ready","module":"{w}","key":"sk_live_{k}"}}"#
                );
            }
        }
    }
}

/// A valid SSN (area 001-899 except 666, group 01-99, serial 0001-9999).
fn ssn(r: &mut Rng) -> String {
    let mut area = r.range(1, 899);
    if area == 666 {
        area = 536;
    }
    format!("{area:03}-{:02}-{:04}", r.range(1, 99), r.range(1, 9999))
}

fn luhn_check_digit(digits: &[u8]) -> u8 {
    // Check digit for `digits` (the number without its last digit).
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - sum % 10) % 10) as u8
}

/// A 16-digit Visa-like number that passes Luhn.
fn luhn_valid(r: &mut Rng) -> String {
    let mut d: Vec<u8> = vec![4];
    d.extend((0..14).map(|_| r.below(10) as u8));
    d.push(luhn_check_digit(&d));
    d.iter().map(|x| (b'0' + x) as char).collect()
}

/// A 16-digit number that fails Luhn.
fn luhn_invalid(r: &mut Rng) -> String {
    let mut d: Vec<u8> = vec![4];
    d.extend((0..14).map(|_| r.below(10) as u8));
    d.push((luhn_check_digit(&d) + 1 + r.below(9) as u8) % 10);
    d.iter().map(|x| (b'0' + x) as char).collect()
}

/// About `LINES_BYTES` of whole lines.
fn gen_lines(seed: u64, dirty: bool) -> Vec<u8> {
    let mut g = LogGen::new(seed, dirty);
    let mut s = String::with_capacity(LINES_BYTES + (64 << 10));
    while s.len() < LINES_BYTES {
        g.line(&mut s);
    }
    s.into_bytes()
}

/// Splits `input` into blocks of about `BLOCK_BYTES`, each ending with a newline.
fn blocks(input: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let limit = (pos + BLOCK_BYTES).min(input.len());
        let end = if limit == input.len() {
            limit
        } else {
            match memchr_rev(&input[pos..limit]) {
                Some(i) => pos + i + 1,
                None => limit,
            }
        };
        out.push(&input[pos..end]);
        pos = end;
    }
    out
}

fn memchr_rev(hay: &[u8]) -> Option<usize> {
    hay.iter().rposition(|&b| b == b'\n')
}

/// One line of exactly `LONG_LINE_BYTES` (newline included): a minified JSON array of build
/// records, ending with a GitHub token.
fn gen_long_line() -> Vec<u8> {
    let mut r = Rng::new(7);
    // A pool of records, sampled (rendering 100 MiB of fresh records would dominate setup).
    let pool: Vec<String> = (0..4096)
        .map(|i| {
            let w = WORDS[r.below(WORDS.len())];
            let c = CRATES[r.below(CRATES.len())];
            format!(
                r#"{{"id":{i},"job":"{w}","crate":"{c}","version":"{}.{}.{}","sha":"{}","digest":"sha256:{}","url":"https://ci.example.com/{w}/builds/{i}","ok":true}},"#,
                r.below(4),
                r.below(40),
                r.below(20),
                r.hex(40),
                r.hex(64)
            )
        })
        .collect();
    let tail = format!(
        r#"{{"id":-1,"job":"deploy","token":"ghp_{}"}}]"#,
        r.chars(ALNUM, 36)
    );
    let mut s = String::with_capacity(LONG_LINE_BYTES);
    s.push('[');
    let body_end = LONG_LINE_BYTES - tail.len() - 1;
    while s.len() < body_end {
        let rec = &pool[r.below(pool.len())];
        if s.len() + rec.len() > body_end {
            // Pad with spaces (valid JSON whitespace) to the exact size.
            let pad = body_end - s.len();
            s.extend(std::iter::repeat_n(' ', pad));
            break;
        }
        s.push_str(rec);
    }
    s.push_str(&tail);
    s.push('\n');
    assert_eq!(s.len(), LONG_LINE_BYTES);
    s.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// 200 vendor-token rules (the recipe of benches/gen_rules.py) and 10,000 known values.

const SYLL: &[&str] = &[
    "ba", "be", "bo", "bu", "ka", "ke", "ko", "ku", "da", "de", "do", "za", "zo", "zu", "ra", "ri",
    "ro", "ru", "ta", "te", "to", "tu", "na", "ne", "no", "nu", "vi", "vo", "lu", "la", "le", "mi",
    "mo", "pe", "po", "qu", "xa", "xe", "yo", "fi", "fu", "gri", "plo", "stra", "vex", "zor",
    "kin", "tal",
];
/// Prefixes of built-in rules (and their keywords) that a vendor name must not start with.
const RESERVED: &[&str] = &[
    "sk", "rk", "gh", "xox", "npm", "akia", "asia", "glpat", "gldt", "glrt", "hvs", "hvb", "dckr",
    "pypi", "aiza", "sg", "eyj", "github",
];
const PREFIX_STYLES: &[&str] = &[
    "{v}_",
    "{v}_pat_",
    "{v}_sk_",
    "{v}_live_",
    "{v}-",
    "{v}k_",
    "{v}.",
    "{V}-",
    "{v}_api_",
];
/// (name, regex class, alphabet, a character outside it, all characters are word characters)
const CHARSETS: &[(&str, &str, &[u8], char, bool)] = &[
    ("alnum", "[A-Za-z0-9]", ALNUM, '#', true),
    ("hex", "[0-9a-f]", HEX, 'g', true),
    ("upper", "[A-Z0-9]", UPPER_DIGITS, 'a', true),
    ("lower", "[a-z0-9]", LOWER_DIGITS, 'Q', true),
    ("b64url", "[A-Za-z0-9_-]", B64URL, '+', false),
];

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    let mut s = String::from("[\n");
    for i in items {
        let _ = writeln!(s, "  {},", toml_str(i));
    }
    s.push(']');
    s
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// A user rule file with `n` `bench-<vendor>-token` rules (category "secret", a prefix
/// keyword, 5 match and 5 no_match examples each).
fn gen_rules_toml(n: usize) -> String {
    let mut r = Rng::new(42);
    let mut vendors: Vec<String> = Vec::new();
    while vendors.len() < n {
        let k = r.range(2, 3);
        let v: String = (0..k).map(|_| r.pick(SYLL)).collect();
        if v.len() < 4 || RESERVED.iter().any(|p| v.starts_with(p)) || vendors.contains(&v) {
            continue;
        }
        vendors.push(v);
    }
    let mut out = format!("# {n} vendor-token rules generated by benches/engine.rs (recipe of benches/gen_rules.py).\n\n");
    for vendor in &vendors {
        let style = r.pick(PREFIX_STYLES);
        let prefix = style
            .replace("{v}", vendor)
            .replace("{V}", &vendor.to_ascii_uppercase());
        let (cs_name, cls, alphabet, outsider, wordy) = CHARSETS[r.below(CHARSETS.len())];
        let len = r.pick(&[&20usize, &24, &30, &32, &36, &40, &43, &48, &56, &64][..]);
        let len = *len;
        let esc = prefix.replace('.', "\\.");
        let regex = format!("\\b{esc}{cls}{{{len}}}{}", if wordy { "\\b" } else { "" });
        let env = vendor.to_ascii_uppercase();
        let mut body = |k: usize| r.chars(alphabet, k);
        let matches = vec![
            format!("{prefix}{}", body(len)),
            format!("export {env}_TOKEN={prefix}{}", body(len)),
            format!(
                r#"{{"{vendor}_key":"{prefix}{}","region":"us-east-1"}}"#,
                body(len)
            ),
            format!(
                "curl -H 'X-{}-Token: {prefix}{}' https://api.{vendor}.example/v1/ping",
                capitalize(vendor),
                body(len)
            ),
            format!(
                "2024-05-01T10:00:00.1234567Z {vendor}: authenticated with {prefix}{} (scope=ci)",
                body(len)
            ),
        ];
        let b = body(len);
        let other_case = if prefix != prefix.to_ascii_uppercase() {
            prefix.to_ascii_uppercase()
        } else {
            prefix.to_ascii_lowercase()
        };
        let no_match = vec![
            format!("{vendor} sample id {prefix}{} (docs)", &b[..len - 4]),
            format!("{other_case}{}", body(len)),
            format!("{prefix}{}{outsider}{}", &b[..len / 2], &b[len / 2 + 1..]),
            format!("x{prefix}{}", body(len)),
            if wordy {
                format!("{prefix}{}", body(len + 3))
            } else {
                format!("the {prefix} prefix marks {vendor} tokens")
            },
        ];
        let _ = writeln!(out, "[[rule]]");
        let _ = writeln!(out, "id = {}", toml_str(&format!("bench-{vendor}-token")));
        let _ = writeln!(out, "category = \"secret\"");
        let _ = writeln!(
            out,
            "description = {}",
            toml_str(&format!(
                "{} API token ({cs_name}, {len} chars after '{prefix}')",
                capitalize(vendor)
            ))
        );
        let _ = writeln!(out, "regex = '''{regex}'''");
        let _ = writeln!(
            out,
            "keywords = [{}]",
            toml_str(&prefix.to_ascii_lowercase())
        );
        let _ = writeln!(out, "\n[rule.examples]");
        let _ = writeln!(out, "match = {}", toml_list(&matches));
        let _ = writeln!(out, "no_match = {}\n", toml_list(&no_match));
    }
    out
}

fn gen_known_values(n: usize) -> Vec<String> {
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!@#%^*+=";
    let mut r = Rng::new(43);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let k = r.range(20, 40);
        let v = r.chars(ALPHABET, k);
        if seen.insert(v.clone()) {
            out.push(v);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Shared inputs and redactors (built on first use, so a filtered run skips what it doesn't need).

fn clean_input() -> &'static [u8] {
    static V: OnceLock<Vec<u8>> = OnceLock::new();
    V.get_or_init(|| gen_lines(1, false))
}

fn dirty_input() -> &'static [u8] {
    static V: OnceLock<Vec<u8>> = OnceLock::new();
    V.get_or_init(|| gen_lines(2, true))
}

fn long_line_input() -> &'static [u8] {
    static V: OnceLock<Vec<u8>> = OnceLock::new();
    V.get_or_init(gen_long_line)
}

fn default_redactor() -> &'static Redactor {
    static V: OnceLock<Redactor> = OnceLock::new();
    V.get_or_init(|| RedactorBuilder::new().build().expect("default packs build"))
}

fn redactor_200_rules() -> &'static Redactor {
    static V: OnceLock<Redactor> = OnceLock::new();
    V.get_or_init(|| {
        let toml = gen_rules_toml(EXTRA_RULES);
        // The generated examples must hold, as `logveil rules test` would check them.
        let mut only = RedactorBuilder::empty();
        only.add_rules_toml("200rules.toml", &toml)
            .expect("generated rules parse");
        let defs = only.selected_rules().expect("generated rules");
        assert_eq!(defs.len(), EXTRA_RULES);
        let failures = check_examples(&defs).expect("generated rules compile");
        assert!(
            failures.is_empty(),
            "generated rule examples fail: {:?}",
            &failures[..failures.len().min(3)]
        );
        let mut b = RedactorBuilder::new();
        b.add_rules_toml("200rules.toml", &toml)
            .expect("generated rules parse");
        b.build().expect("default + 200 rules build")
    })
}

fn redactor_10k_known() -> &'static Redactor {
    static V: OnceLock<Redactor> = OnceLock::new();
    V.get_or_init(|| {
        let mut b = RedactorBuilder::new();
        for v in gen_known_values(KNOWN_VALUES) {
            b.known_value(v.as_bytes(), "bench").expect("known value");
        }
        b.build().expect("default + 10k known values build")
    })
}

/// The hot path: `redact_lines` over newline-aligned blocks, output buffer reused.
fn redact_blocks(r: &Redactor, blocks: &[&[u8]], out: &mut Vec<u8>, counts: &mut Counts) {
    let mut scratch = r.scratch();
    for block in blocks {
        out.clear();
        r.redact_lines(&mut scratch, block, &[], out, counts);
        black_box(&*out);
    }
}

/// Redacts once (untimed) and prints the masks per rule, so a wrong input shows.
fn report(label: &str, input: &[u8], r: &Redactor) {
    let mut counts = Counts::default();
    redact_blocks(r, &blocks(input), &mut Vec::new(), &mut counts);
    let per_rule: Vec<String> = r
        .ids()
        .iter()
        .zip(&counts.0)
        .filter(|(_, &n)| n > 0)
        .map(|(id, n)| format!("{id} {n}"))
        .collect();
    eprintln!(
        "{label}: {:.1} MiB, {} lines, {} masks ({})",
        input.len() as f64 / (1 << 20) as f64,
        input.iter().filter(|&&b| b == b'\n').count(),
        counts.total(),
        per_rule.join(", ")
    );
}

/// A bench of a group: name, input, redactor (built on first use).
type LinesCase = (&'static str, &'static [u8], fn() -> &'static Redactor);

fn bench_lines(c: &mut Criterion, group: &str, cases: &[LinesCase]) {
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    for &(name, input, redactor) in cases {
        g.throughput(Throughput::Bytes(input.len() as u64));
        let mut reported = false;
        let mut out = Vec::with_capacity(BLOCK_BYTES * 2);
        let bl = blocks(input);
        g.bench_function(name, |b| {
            let r = redactor();
            if !reported {
                report(&format!("{group}/{name}"), input, r);
                reported = true;
            }
            b.iter(|| {
                let mut counts = Counts::default();
                redact_blocks(r, &bl, &mut out, &mut counts);
                counts
            })
        });
    }
    g.finish();
}

fn clean_lines(c: &mut Criterion) {
    bench_lines(
        c,
        "clean_lines",
        &[("default", clean_input(), default_redactor)],
    );
}

fn dirty_lines(c: &mut Criterion) {
    bench_lines(
        c,
        "dirty_lines",
        &[("default", dirty_input(), default_redactor)],
    );
}

fn rules_default_vs_200(c: &mut Criterion) {
    bench_lines(
        c,
        "rules_default_vs_200",
        &[
            ("default", dirty_input(), default_redactor),
            ("plus_200_rules", dirty_input(), redactor_200_rules),
        ],
    );
}

fn known_values(c: &mut Criterion) {
    bench_lines(
        c,
        "known_values",
        &[
            ("0_known", dirty_input(), default_redactor),
            ("10k_known", dirty_input(), redactor_10k_known),
        ],
    );
}

fn long_line(c: &mut Criterion) {
    let mut g = c.benchmark_group("long_line");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(LONG_LINE_BYTES as u64));
    let mut reported = false;
    g.bench_function("redact_all_100mib", |b| {
        let (input, r) = (long_line_input(), default_redactor());
        if !reported {
            let (out, counts) = r.redact_all(input);
            let tail = String::from_utf8_lossy(&out[out.len().saturating_sub(80)..]).into_owned();
            eprintln!(
                "long_line: {} MiB, {} masks, ends with {tail:?}",
                input.len() >> 20,
                counts.total()
            );
            reported = true;
        }
        b.iter(|| {
            let (out, counts) = r.redact_all(black_box(input));
            black_box(out.len()) as u64 + counts.total()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    clean_lines,
    dirty_lines,
    long_line,
    rules_default_vs_200,
    known_values
);
criterion_main!(benches);
