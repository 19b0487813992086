//! `RedactorBuilder` → `Redactor`: rule selection and compilation into shared automata.
//!
//! Compilation decides how each rule runs: keyword-anchored rules hang off one
//! ASCII-case-insensitive Aho-Corasick automaton (SIMD prefilter) and run their own regex only
//! near a keyword hit; keywordless structural rules share one multi-pattern regex; known
//! values and their encodings form one exact automaton. Nothing here runs per input byte.

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use regex_automata::meta;
use regex_automata::util::syntax;
use regex_syntax::hir::{Class, ClassBytesRange, Hir, HirKind, Repetition};

use crate::error::Error;
use crate::known::{longest_form, KnownValues, MIN_KNOWN_LEN};
use crate::mask::MaskStyle;
use crate::rule::{builtin_packs, parse_pack, Category, Pack, RuleDef};
use crate::validator::Validator;

/// Match-length cap for rules whose regex is unbounded, used only on lines processed in
/// windows. Keep rules bounded.
pub const UNBOUNDED_MAX_LEN: usize = 1024;
/// Default window for over-long lines.
pub const DEFAULT_WINDOW: usize = 1 << 20;
/// Default hard line limit: past it the rest of the line is replaced by a marker.
pub const DEFAULT_MAX_LINE: usize = 128 << 20;

/// Id of masks of operator-supplied known values.
pub const KNOWN_VALUE_ID: &str = "known-value";
/// Id of masks of multi-line private key bodies.
pub const PRIVATE_KEY_BLOCK_ID: &str = "private-key-block";
/// Id of the fail-closed marker for lines past the hard limit.
pub const LINE_TOO_LONG_ID: &str = "line-too-long";
/// Most bytes of known values in one redactor (64 MiB: a million 64-byte secrets). Their
/// encoded forms, about 30 bytes per value byte, must stay within 32-bit offsets.
pub const MAX_KNOWN_BYTES: usize = 64 << 20;

/// Whether `bytes` of values fit in one known-value set ([`MAX_KNOWN_BYTES`]): the builder
/// and in-band `::add-mask::` values both check their totals here.
pub(crate) fn known_bytes_fit(bytes: usize) -> bool {
    bytes <= MAX_KNOWN_BYTES
}

/// Collects packs, rules, known values and options; `build` compiles them once.
#[derive(Clone, Debug)]
pub struct RedactorBuilder {
    packs: Vec<Pack>,
    enabled_packs: Vec<String>,
    disabled: Vec<String>,
    known: Vec<Vec<u8>>,
    mask: MaskStyle,
    window: usize,
    max_line: usize,
    builtins_error: Option<String>,
    /// Off only in tests that compare the shape scanner with the DFA it replaces.
    pub(crate) shapes: bool,
    /// The `email` rule's check around each `@` (see [`crate::at_sign`]); off only in tests
    /// that compare with searching around every `@`.
    pub(crate) at_sign: bool,
    /// Take the `secret` group's span from the match's edges where the pattern allows
    /// (see [`crate::frame`]); off only in tests that compare with the capture engine.
    pub(crate) frames: bool,
    /// The one-pass anchor search where the CPU has it; off only in tests that compare it
    /// with the Teddy passes.
    pub(crate) one_pass: bool,
}

impl Default for RedactorBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RedactorBuilder {
    /// A builder with the built-in packs loaded (default-on packs enabled).
    pub fn new() -> Self {
        let (packs, builtins_error) = match builtin_packs() {
            Ok(p) => (p, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        RedactorBuilder {
            packs,
            enabled_packs: Vec::new(),
            disabled: Vec::new(),
            known: Vec::new(),
            mask: MaskStyle::RuleId,
            window: DEFAULT_WINDOW,
            max_line: DEFAULT_MAX_LINE,
            builtins_error,
            shapes: true,
            at_sign: true,
            frames: true,
            one_pass: true,
        }
    }

    /// A builder with no packs at all (tests, `rules test` of a single file).
    pub fn empty() -> Self {
        RedactorBuilder {
            packs: Vec::new(),
            ..Self::new()
        }
    }

    /// Adds a user rule pack; its rules are always on. `file` names it in errors.
    pub fn add_rules_toml(&mut self, file: &str, text: &str) -> Result<&mut Self, Error> {
        let mut pack = parse_pack(file, file, text)?;
        pack.default = true;
        self.packs.push(pack);
        Ok(self)
    }

    /// Turns on an opt-in built-in pack (e.g. `network`).
    pub fn enable_pack(&mut self, name: &str) -> Result<&mut Self, Error> {
        if !self.packs.iter().any(|p| p.name == name) {
            return Err(Error::UnknownPack(name.to_string()));
        }
        self.enabled_packs.push(name.to_string());
        Ok(self)
    }

    /// Turns off a rule (or every rule of a pack) by id; checked at `build`.
    pub fn disable(&mut self, id: &str) -> &mut Self {
        self.disabled.push(id.to_string());
        self
    }

    /// Adds an exact value to mask everywhere, with its encoded forms. `origin` names where it
    /// came from in errors (never the value itself); it is formatted only for an error, so a
    /// caller adding 10k values from a file can pass `format_args!` at no cost.
    pub fn known_value(
        &mut self,
        value: &[u8],
        origin: impl std::fmt::Display,
    ) -> Result<&mut Self, Error> {
        if value.len() < MIN_KNOWN_LEN {
            return Err(Error::KnownValueTooShort {
                origin: origin.to_string(),
                len: value.len(),
                min: MIN_KNOWN_LEN,
            });
        }
        self.known.push(value.to_vec());
        Ok(self)
    }

    /// How masks are written.
    pub fn mask_style(&mut self, style: MaskStyle) -> &mut Self {
        self.mask = style;
        self
    }

    /// Window size for over-long lines (bytes; at least 1 KiB, and at least four overlaps).
    pub fn window(&mut self, bytes: usize) -> &mut Self {
        self.window = bytes.max(1 << 10);
        self
    }

    /// Hard line limit in bytes; the rest of a longer line is replaced by a marker.
    pub fn max_line_bytes(&mut self, bytes: usize) -> &mut Self {
        self.max_line = bytes.max(1);
        self
    }

    /// The rules `build` would compile, in order.
    pub fn selected_rules(&self) -> Result<Vec<RuleDef>, Error> {
        if let Some(e) = &self.builtins_error {
            return Err(Error::Compile {
                what: "built-in packs".into(),
                message: e.clone(),
            });
        }
        for d in &self.disabled {
            let known = self
                .packs
                .iter()
                .any(|p| p.name == *d || p.rules.iter().any(|r| r.id == *d));
            if !known {
                return Err(Error::UnknownRule(d.clone()));
            }
        }
        let mut out: Vec<RuleDef> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for pack in &self.packs {
            if !pack.default && !self.enabled_packs.contains(&pack.name) {
                continue;
            }
            if self.disabled.contains(&pack.name) {
                continue;
            }
            for r in &pack.rules {
                if let Some(first) = seen.get(&r.id) {
                    return Err(Error::DuplicateId {
                        origin: r.origin.clone(),
                        id: r.id.clone(),
                        first: first.clone(),
                    });
                }
                seen.insert(r.id.clone(), r.origin.clone());
                if self.disabled.contains(&r.id) {
                    continue;
                }
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    /// All packs known to the builder (for listings).
    pub fn packs(&self) -> &[Pack] {
        &self.packs
    }

    /// Compiles everything into an immutable redactor.
    pub fn build(&self) -> Result<Redactor, Error> {
        let defs = self.selected_rules()?;
        let mut rules = Vec::with_capacity(defs.len());
        for def in defs {
            let mut rule = CompiledRule::compile(def)?;
            if !self.frames {
                rule.frame = None;
            }
            rules.push(rule);
        }
        let mut ids: Vec<String> = rules.iter().map(|r| r.def.id.clone()).collect();
        let mut special = |name: &str| -> usize {
            ids.iter().position(|i| i == name).unwrap_or_else(|| {
                ids.push(name.to_string());
                ids.len() - 1
            })
        };
        let known_id = special(KNOWN_VALUE_ID);
        let pem_id = special(PRIVATE_KEY_BLOCK_ID);
        let too_long_id = special(LINE_TOO_LONG_ID);

        // Keyword automaton.
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut structural_rules: Vec<u32> = Vec::new();
        let mut shaped_rules: Vec<u32> = Vec::new();
        let (mut shape_cores, mut shape_reach) = (0u16, 0usize);
        let mut byte_rules = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            // Built-in rules with a shape core are found by the shape scanner, keywords or not.
            let cores = crate::shape::cores_for(&r.def.id, &r.def.regex);
            if let Some(cores) = cores.filter(|_| self.shapes) {
                shaped_rules.push(i as u32);
                shape_cores |= cores;
                shape_reach = shape_reach.max(r.max_len + 1);
                continue;
            }
            if r.def.keywords.is_empty() {
                if let Some(b) = r.rare_byte {
                    let check = crate::at_sign::check_for(b, &r.def.id, &r.def.regex)
                        .filter(|_| self.at_sign);
                    byte_rules.push((b, i as u32, check));
                    continue;
                }
                structural_rules.push(i as u32);
                continue;
            }
            for (ki, k) in r.def.keywords.iter().enumerate() {
                let k = k.to_ascii_lowercase();
                let entry = (i as u32, ki as u32);
                match keywords.iter().position(|x| *x == k) {
                    Some(p) => {
                        if !keyword_rules[p].iter().any(|e| e.0 == entry.0) {
                            keyword_rules[p].push(entry)
                        }
                    }
                    None => {
                        keywords.push(k);
                        keyword_rules.push(vec![entry]);
                    }
                }
            }
        }
        let one_pass = self.one_pass && crate::permute::available();
        let anchors = crate::anchor::choose(&keywords, one_pass);
        let anchor_search =
            crate::anchor::AnchorSearch::new(&anchors.anchors, one_pass).map_err(|message| {
                Error::Compile {
                    what: "keyword automaton".into(),
                    message,
                }
            })?;
        let structural = RuleSet::new(&rules, structural_rules, "structural rules")?;
        let shaped = RuleSet::new(&rules, shaped_rules, "shaped rules")?.map(|set| Shaped {
            set,
            cores: shape_cores,
            reach: shape_reach,
        });
        let total: usize = self.known.iter().map(Vec::len).sum();
        if !known_bytes_fit(total) {
            return Err(Error::Compile {
                what: "known values".into(),
                message: format!(
                    "{total} bytes of values to mask; at most {MAX_KNOWN_BYTES} (their encoded \
                     forms are indexed with 32-bit offsets)"
                ),
            });
        }
        let known = KnownValues::new(self.known.iter().map(|v| v.as_slice()));
        let overlap = rules
            .iter()
            .map(|r| r.max_len + r.context.as_ref().map_or(0, |c| c.1))
            .max()
            .unwrap_or(0)
            .max(
                self.known
                    .iter()
                    .map(|v| longest_form(v.len()))
                    .max()
                    .unwrap_or(0),
            )
            + 8;
        let window = self.window.max(overlap * 4);
        let keyword_heads: Vec<(u64, u64)> = keywords
            .iter()
            .map(|k| {
                let n = k.len().min(8);
                let mut b = [0u8; 8];
                b[..n].copy_from_slice(&k.as_bytes()[..n]);
                let mask = if n == 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * n)) - 1
                };
                (u64::from_le_bytes(b), mask)
            })
            .collect();
        Ok(Redactor {
            inner: Arc::new(Inner {
                rules,
                ids,
                anchor_search,
                keyword_rules,
                keywords,
                anchor_keywords: anchors.keywords,
                keyword_heads,
                anchor_overlaps: anchors.overlaps,
                anchors: anchors.anchors,
                structural,
                shaped,
                byte_rules,
                known,
                mask: self.mask.clone(),
                known_id,
                pem_id,
                too_long_id,
                window,
                overlap,
                max_line: self.max_line.max(window),
            }),
        })
    }
}

fn regex_config() -> meta::Config {
    meta::Config::new()
        .match_kind(regex_automata::MatchKind::LeftmostFirst)
        .utf8_empty(false)
}

/// Parses a rule's regex as the engine matches it ([`syntax_config`]), for code that reads
/// the HIR. The error is the parser's message (its error type is large to return by value).
pub(crate) fn parse_regex(re: &str) -> Result<Hir, String> {
    syntax::parse_with(re, &syntax_config()).map_err(|e| e.to_string())
}

fn syntax_config() -> syntax::Config {
    syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .multi_line(true)
        .crlf(false)
}

/// One rule, compiled.
pub(crate) struct CompiledRule {
    pub(crate) def: RuleDef,
    pub(crate) regex: meta::Regex,
    hir: Hir,
    /// Capture group index of `secret`, when the rule masks only part of its match.
    pub(crate) secret_group: Option<usize>,
    /// Where the secret group lies without a capture search, when the pattern fixes it.
    pub(crate) frame: Option<crate::frame::Frame>,
    /// Longest match, or the cap for unbounded rules.
    pub(crate) max_len: usize,
    /// Context words automaton and window.
    pub(crate) context: Option<(AhoCorasick, usize)>,
    /// Every match starts with a keyword: search anchored at each keyword hit.
    pub(crate) anchored: bool,
    /// For anchored rules, per keyword (in `def.keywords` order): the bytes that can follow
    /// it in a match. Any other byte after a hit rules the hit out without running the regex.
    pub(crate) follow: Vec<crate::prefix::ByteSet>,
    /// A rare byte every match contains (`@` for email and URL credentials): a memchr for it
    /// near a hit is cheaper than a regex search that fails.
    pub(crate) rare_byte: Option<u8>,
    /// The most bytes a match has before its first `rare_byte` (else `max_len`).
    pub(crate) before_rare: usize,
}

impl CompiledRule {
    fn compile(mut def: RuleDef) -> Result<CompiledRule, Error> {
        // A keyword that contains another keyword of the same rule adds nothing: every
        // occurrence of it is an occurrence of the shorter one.
        let lower: Vec<String> = def
            .keywords
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect();
        let mut kept: Vec<String> = Vec::new();
        for (i, k) in lower.iter().enumerate() {
            let redundant = lower
                .iter()
                .enumerate()
                .any(|(j, o)| j != i && k.contains(o.as_str()) && (o.len() < k.len() || j < i));
            if !redundant && !kept.contains(k) {
                kept.push(k.clone());
            }
        }
        def.keywords = kept;
        let err = |message: String| Error::Rule {
            origin: def.origin.clone(),
            id: def.id.clone(),
            message,
        };
        // (Also checked when a pack is parsed; a `RuleDef` built in code gets here directly.)
        if !def.keywords.iter().all(|k| crate::rule::keyword_ok(k)) {
            return Err(err(crate::rule::KEYWORD_RULE.into()));
        }
        let hir = parse_regex(&def.regex).map_err(|e| err(format!("regex: {}", one_line(&e))))?;
        if hir.properties().minimum_len() == Some(0) {
            return Err(err("regex can match the empty string".into()));
        }
        // The declared bounds give the longest match (for windows over long lines)...
        let max_len = hir
            .properties()
            .maximum_len()
            .unwrap_or(def.max_len.unwrap_or(UNBOUNDED_MAX_LEN))
            .min(def.max_len.unwrap_or(usize::MAX));
        let hir = without_newline(hir);
        // No prefilter: a rule's regex only ever runs anchored at a keyword hit or on a short
        // region around a hit, never over a whole buffer, and extracting literals and
        // building Teddy for every rule was a third of the start-up.
        let regex = meta::Builder::new()
            .configure(regex_config().auto_prefilter(false))
            .syntax(syntax_config())
            .build_from_hir(&hir)
            .map_err(|e| err(format!("regex: {}", one_line(&e.to_string()))))?;
        let secret_group = regex
            .group_info()
            .to_index(regex_automata::PatternID::ZERO, "secret");
        let context = match &def.context {
            None => None,
            Some(c) => Some((
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&c.words)
                    .map_err(|e| err(format!("context: {e}")))?,
                c.window,
            )),
        };
        if let Validator::Entropy(x) = def.validator {
            if !(0.0..=8.0).contains(&x) {
                return Err(err("entropy threshold must be within 0..=8".into()));
            }
        }
        let follow = crate::prefix::anchored_follow(&hir, &def.keywords);
        let rare_byte = crate::prefix::rare_required_byte(&hir);
        let before_rare = rare_byte
            .and_then(|b| crate::prefix::max_before(&hir, b))
            .map_or(max_len, |n| n.min(max_len));
        let anchored = follow.is_some();
        let frame = secret_group.and_then(|g| crate::frame::secret_frame(&hir, g as u32));
        Ok(CompiledRule {
            def,
            regex,
            hir,
            secret_group,
            frame,
            max_len,
            context,
            anchored,
            follow: follow.unwrap_or_default(),
            rare_byte,
            before_rare,
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Repetition bounds above this are opened (see `without_newline`).
const LARGE_REPETITION: u32 = 64;

/// Rewrites a pattern so that no match can span a line: every class loses `\n` and literals
/// containing it can never match. Buffers of many lines can then be searched in one pass with
/// exactly the matches a line-by-line search would give.
fn without_newline(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(lit) => {
            if lit.0.contains(&b'\n') {
                Hir::fail()
            } else {
                Hir::literal(lit.0)
            }
        }
        HirKind::Class(Class::Bytes(mut c)) => {
            let nl = regex_syntax::hir::ClassBytes::new([ClassBytesRange::new(b'\n', b'\n')]);
            c.difference(&nl);
            Hir::class(Class::Bytes(c))
        }
        HirKind::Class(Class::Unicode(mut c)) => {
            let nl =
                regex_syntax::hir::ClassUnicode::new([regex_syntax::hir::ClassUnicodeRange::new(
                    '\n', '\n',
                )]);
            c.difference(&nl);
            Hir::class(Class::Unicode(c))
        }
        HirKind::Look(l) => Hir::look(l),
        // ...but a large upper bound like `{8,4096}` becomes thousands of NFA states, which
        // the capture engine pays for at every match (time and memory per searched byte). An
        // open bound matches the same values, and lines are bounded anyway.
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            min: r.min,
            max: r.max.filter(|&m| m <= LARGE_REPETITION || m == r.min),
            greedy: r.greedy,
            sub: Box::new(without_newline(*r.sub)),
        }),
        HirKind::Capture(mut c) => {
            c.sub = Box::new(without_newline(*c.sub));
            Hir::capture(c)
        }
        HirKind::Concat(subs) => Hir::concat(subs.into_iter().map(without_newline).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.into_iter().map(without_newline).collect())
        }
    }
}

/// The compiled, immutable redactor. Cheap to clone (an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct Redactor {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) rules: Vec<CompiledRule>,
    /// Rule ids, then the special ids (known values, key blocks, line-too-long).
    pub(crate) ids: Vec<String>,
    /// The SIMD search for anchors.
    pub(crate) anchor_search: crate::anchor::AnchorSearch,
    /// Per keyword: (rule, index of the keyword in the rule's list).
    pub(crate) keyword_rules: Vec<Vec<(u32, u32)>>,
    /// Lowercased keywords, indexed like the automaton's patterns.
    pub(crate) keywords: Vec<String>,
    /// Anchor literals searched for (see [`crate::anchor`]); `keyword_ac` is over these.
    pub(crate) anchors: Vec<Vec<u8>>,
    /// Per anchor, the keywords it stands for and its offset in each.
    pub(crate) anchor_keywords: Vec<Vec<(u32, u32)>>,
    /// Per keyword: its first (up to) eight bytes as a little-endian integer, and the mask of
    /// the bytes that count.
    pub(crate) keyword_heads: Vec<(u64, u64)>,
    /// Per anchor, the anchors that may start inside one of its occurrences.
    pub(crate) anchor_overlaps: Vec<Vec<(u32, u32)>>,
    /// Keywordless rules without a rare byte or a shape: one DFA over every byte.
    pub(crate) structural: Option<RuleSet>,
    /// Built-in rules searched only around their shapes (see [`crate::shape`]), keywords or
    /// not.
    pub(crate) shaped: Option<Shaped>,
    /// Keywordless rules whose every match contains a rare byte: searched only around it,
    /// where the rule's check (see [`crate::at_sign`]), if any, passes.
    pub(crate) byte_rules: Vec<(u8, u32, Option<crate::at_sign::RareCheck>)>,
    pub(crate) known: Option<KnownValues>,
    pub(crate) mask: MaskStyle,
    pub(crate) known_id: usize,
    pub(crate) pem_id: usize,
    pub(crate) too_long_id: usize,
    pub(crate) window: usize,
    pub(crate) overlap: usize,
    pub(crate) max_line: usize,
}

/// Rules searched together with one multi-pattern regex (pattern `i` is rule `rules[i]`).
pub(crate) struct RuleSet {
    pub(crate) regex: meta::Regex,
    pub(crate) rules: Vec<u32>,
}

impl RuleSet {
    /// The set of `all[i]` for each `i` in `rules`; `None` when `rules` is empty.
    fn new(all: &[CompiledRule], rules: Vec<u32>, what: &str) -> Result<Option<RuleSet>, Error> {
        if rules.is_empty() {
            return Ok(None);
        }
        let hirs: Vec<&Hir> = rules.iter().map(|&i| &all[i as usize].hir).collect();
        let regex = meta::Builder::new()
            .configure(regex_config())
            .build_many_from_hir(&hirs)
            .map_err(|e| Error::Compile {
                what: what.into(),
                message: e.to_string(),
            })?;
        Ok(Some(RuleSet { regex, rules }))
    }
}

/// The shape-scanned rules, the union of their cores, and how far a match can reach from a
/// core hit on either side.
pub(crate) struct Shaped {
    pub(crate) set: RuleSet,
    pub(crate) cores: u16,
    pub(crate) reach: usize,
}

/// A rule as seen from outside (listings, stats).
#[derive(Clone, Debug)]
pub struct RuleInfo {
    /// Id.
    pub id: String,
    /// Category.
    pub category: Category,
    /// Pack name.
    pub pack: String,
    /// Description.
    pub description: String,
}

impl Redactor {
    /// Every id a mask can carry, indexed like [`crate::Counts`].
    pub fn ids(&self) -> &[String] {
        &self.inner.ids
    }

    /// The compiled rules.
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.inner
            .rules
            .iter()
            .map(|r| RuleInfo {
                id: r.def.id.clone(),
                category: r.def.category,
                pack: r.def.pack.clone(),
                description: r.def.description.clone(),
            })
            .collect()
    }

    /// Bytes of overlap between windows of an over-long line (longest bounded match).
    pub fn overlap(&self) -> usize {
        self.inner.overlap
    }

    /// Window size for over-long lines.
    pub fn window(&self) -> usize {
        self.inner.window
    }

    /// The hard line limit.
    pub fn max_line_bytes(&self) -> usize {
        self.inner.max_line
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("rules", &self.inner.rules.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_is_removed_from_classes() {
        let hir = parse_regex(r"a\sb").unwrap();
        let re = meta::Builder::new()
            .syntax(syntax_config())
            .build_from_hir(&without_newline(hir))
            .unwrap();
        assert!(re.is_match("a b"));
        assert!(!re.is_match("a\nb"));
    }

    /// A rule built in code (not parsed from a pack) with a line break in a keyword is refused
    /// too, naming the rule.
    #[test]
    fn keywords_with_line_breaks_are_refused_at_build() {
        let mut def = crate::rule::builtin_packs().unwrap()[0].rules[0].clone();
        def.keywords = vec!["pass\nword".into()];
        let e = check_examples(&[def.clone()]).unwrap_err().to_string();
        assert!(e.contains("line breaks") && e.contains(&def.id), "{e}");
    }

    /// A large known-value set (sampled through filters, in steps with prefetches) masks
    /// every planted value, at varied offsets, with the built-in rules and without any.
    #[test]
    fn large_known_sets_mask_every_planted_value() {
        let values: Vec<String> = (0..300)
            .map(|i| format!("Kv{i:03}x{}", "q".repeat(14 + i % 9)))
            .collect();
        let mut input = String::new();
        let mut planted = 0;
        for (i, v) in values.iter().enumerate().step_by(3) {
            input.push_str(&"ab ".repeat(i % 41));
            input.push_str(v);
            input.push_str(if i % 5 == 0 { "\n" } else { " " });
            planted += 1;
        }
        for (mut b, rules) in [
            (RedactorBuilder::new(), true),
            (RedactorBuilder::empty(), false),
        ] {
            for v in &values {
                b.known_value(v.as_bytes(), "test").unwrap();
            }
            let r = b.build().unwrap();
            let (out, counts) = r.redact_all(input.as_bytes());
            let out = String::from_utf8(out).unwrap();
            for v in values.iter().step_by(3) {
                assert!(
                    !out.contains(v.as_str()),
                    "rules {rules}: {v} left in {out}"
                );
            }
            let known: u64 = counts
                .nonzero(&r)
                .filter(|(id, _)| *id == "known-value")
                .map(|(_, n)| n)
                .sum();
            assert_eq!(known, planted, "rules {rules}");
        }
    }

    #[test]
    fn too_many_known_bytes_are_refused() {
        let mut b = RedactorBuilder::empty();
        let value = vec![b'k'; 1 << 20];
        for _ in 0..=MAX_KNOWN_BYTES >> 20 {
            b.known_value(&value, "test").unwrap();
        }
        let Err(e) = b.build() else {
            panic!("64 MiB and one more of known values were accepted");
        };
        let e = e.to_string();
        assert!(e.contains("known values"), "{e}");
    }

    /// Keyword rules should start with their keyword so they run anchored at each hit; the few
    /// that cannot are listed here so that a rule edit that loses anchoring is noticed.
    #[test]
    fn builtin_keyword_rules_are_anchored() {
        let mut b = RedactorBuilder::new();
        b.enable_pack("network").unwrap();
        let r = b.build().unwrap();
        let unanchored: Vec<&str> = r
            .inner
            .rules
            .iter()
            .filter(|c| !c.def.keywords.is_empty() && !c.anchored)
            .map(|c| c.def.id.as_str())
            .collect();
        // Rare keywords (cheap to search around), or a keyword that cannot come first
        // (`--db-password VALUE`, `"private_key": "`, `-----BEGIN ... PRIVATE KEY`).
        assert_eq!(
            unanchored,
            [
                "gcp-service-account-key",
                "azure-sas-signature",
                "npmrc-auth-token",
                "private-key",
                "cli-credential-flag",
                "docker-config-auth",
            ]
        );
    }

    #[test]
    fn redactor_is_send_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Redactor>();
    }
}

/// A rule example that did not behave as its rule says.
#[derive(Clone, Debug)]
pub struct ExampleFailure {
    /// Rule id.
    pub id: String,
    /// `file:line` of the rule.
    pub origin: String,
    /// True for a `match` example that was not masked, false for a `no_match` one that was.
    pub expected_match: bool,
    /// The example text.
    pub example: String,
    /// What came out.
    pub output: String,
}

impl std::fmt::Display for ExampleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let want = if self.expected_match {
            "a mask"
        } else {
            "no mask"
        };
        write!(
            f,
            "{} ({}): expected {want} in {:?}, got {:?}",
            self.id, self.origin, self.example, self.output
        )
    }
}

/// Runs every rule's own examples through a redactor holding only that rule. Returns the
/// failures (empty when all pass); a rule that does not compile is an error.
pub fn check_examples(defs: &[RuleDef]) -> Result<Vec<ExampleFailure>, Error> {
    let mut failures = Vec::new();
    for def in defs {
        let mut b = RedactorBuilder::empty();
        b.packs.push(Pack {
            name: def.pack.clone(),
            default: true,
            description: None,
            rules: vec![def.clone()],
        });
        let r = b.build()?;
        let idx = r.ids().iter().position(|i| *i == def.id).unwrap_or(0);
        let cases = def
            .examples_match
            .iter()
            .map(|e| (true, e))
            .chain(def.examples_no_match.iter().map(|e| (false, e)));
        for (expected_match, example) in cases {
            let (out, counts) = r.redact_all(example.as_bytes());
            let masked = counts.0.get(idx).copied().unwrap_or(0) > 0;
            if masked != expected_match {
                failures.push(ExampleFailure {
                    id: def.id.clone(),
                    origin: def.origin.clone(),
                    expected_match,
                    example: example.clone(),
                    output: String::from_utf8_lossy(&out).into_owned(),
                });
            }
        }
    }
    Ok(failures)
}
