//! Rule packs: the TOML schema and its parsing into checked rule definitions.
//!
//! Parsing is separate from compiling so that `logveil rules test` and the builder share one
//! reader, and so that every error can name the file, the line and the rule id.

use serde::Deserialize;
use toml::Spanned;

use crate::error::Error;
use crate::validator::Validator;

/// What kind of data a rule protects; reported in stats and used by operators to pick packs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Credentials, tokens, keys.
    Secret,
    /// Protected health information (patient identifiers).
    Phi,
    /// Other personal data (SSN, email, phone, card).
    Pii,
}

impl Category {
    /// The lowercase name used in TOML and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Phi => "phi",
            Category::Pii => "pii",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    #[serde(default = "yes")]
    default: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    category: Category,
    #[serde(default)]
    description: String,
    regex: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    validator: Option<String>,
    #[serde(default)]
    context: Option<RawContext>,
    #[serde(default)]
    max_len: Option<usize>,
    #[serde(default)]
    examples: RawExamples,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    words: Vec<String>,
    #[serde(default = "default_context_window")]
    window: usize,
}

fn default_context_window() -> usize {
    48
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExamples {
    #[serde(default, rename = "match")]
    matches: Vec<String>,
    #[serde(default)]
    no_match: Vec<String>,
}

/// Words that must occur near a match for it to count (MRN, bare SSN, bare NPI...).
#[derive(Clone, Debug)]
pub struct Context {
    /// ASCII case-insensitive literals.
    pub words: Vec<String>,
    /// How many bytes before the match start and after its end are searched.
    pub window: usize,
}

/// One checked rule definition, not yet compiled.
#[derive(Clone, Debug)]
pub struct RuleDef {
    /// Unique id, shown in masks and stats.
    pub id: String,
    /// What the rule protects.
    pub category: Category,
    /// Human description.
    pub description: String,
    /// The pattern (regex-automata syntax, ASCII).
    pub regex: String,
    /// Literal anchors; empty means a structural rule.
    pub keywords: Vec<String>,
    /// Check run on each candidate.
    pub validator: Validator,
    /// Required nearby words, if any.
    pub context: Option<Context>,
    /// Cap on match length used when a line is processed in windows.
    pub max_len: Option<usize>,
    /// Texts the rule must mask something in.
    pub examples_match: Vec<String>,
    /// Texts the rule must leave alone.
    pub examples_no_match: Vec<String>,
    /// Pack the rule came from.
    pub pack: String,
    /// Where the rule is defined, for error messages: `file:line`.
    pub origin: String,
}

/// A parsed pack file.
#[derive(Clone, Debug)]
pub struct Pack {
    /// Pack name (file stem for built-ins).
    pub name: String,
    /// On unless enabled explicitly when false.
    pub default: bool,
    /// Optional description.
    pub description: Option<String>,
    /// Its rules, in file order.
    pub rules: Vec<RuleDef>,
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

/// Parses one pack. `file` names it in errors (a path, or `builtin:NAME`).
pub fn parse_pack(name: &str, file: &str, text: &str) -> Result<Pack, Error> {
    let raw: PackFile = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        Error::Toml {
            file: file.to_string(),
            line,
            col,
            message: e.message().to_string(),
        }
    })?;
    let mut rules = Vec::with_capacity(raw.rule.len());
    // Rules come in file order: count newlines from the previous rule on, not from the top
    // (a 200-rule file spent 85 M instructions recounting).
    let (mut line, mut counted) = (1usize, 0usize);
    for spanned in raw.rule {
        let start = spanned.span().start.clamp(counted, text.len());
        line += memchr::memchr_iter(b'\n', &text.as_bytes()[counted..start]).count();
        counted = start;
        let origin = format!("{file}:{line}");
        let r = spanned.into_inner();
        let rule_err = |message: String| Error::Rule {
            origin: origin.clone(),
            id: r.id.clone(),
            message,
        };
        if r.id.is_empty()
            || !r
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(rule_err("id must be non-empty [a-z0-9-]".into()));
        }
        let validator = match &r.validator {
            None => Validator::None,
            Some(v) => Validator::parse(v).map_err(|m| rule_err(format!("validator: {m}")))?,
        };
        if !r.keywords.iter().all(|k| keyword_ok(k)) {
            return Err(rule_err(KEYWORD_RULE.into()));
        }
        let context = match r.context {
            None => None,
            Some(c) => {
                if c.words.is_empty() || c.words.iter().any(|w| w.is_empty() || !w.is_ascii()) {
                    return Err(rule_err(
                        "context.words must be non-empty ASCII words".into(),
                    ));
                }
                Some(Context {
                    words: c.words,
                    window: c.window,
                })
            }
        };
        rules.push(RuleDef {
            id: r.id.clone(),
            category: r.category,
            description: r.description,
            regex: r.regex,
            keywords: r.keywords,
            validator,
            context,
            max_len: r.max_len,
            examples_match: r.examples.matches,
            examples_no_match: r.examples.no_match,
            pack: name.to_string(),
            origin,
        });
    }
    Ok(Pack {
        name: name.to_string(),
        default: raw.default,
        description: raw.description,
        rules,
    })
}

/// The packs compiled into the binary, as (name, TOML text).
pub const BUILTIN_PACKS: &[(&str, &str)] = &[
    ("secrets", include_str!("../rules/secrets.toml")),
    ("pii", include_str!("../rules/pii.toml")),
    ("phi", include_str!("../rules/phi.toml")),
    ("network", include_str!("../rules/network.toml")),
];

/// Parses every built-in pack.
pub fn builtin_packs() -> Result<Vec<Pack>, Error> {
    BUILTIN_PACKS
        .iter()
        .map(|(name, text)| parse_pack(name, &format!("builtin:{name}.toml"), text))
        .collect()
}

/// What a keyword must be: matched ASCII case-insensitively, and the keyword search takes a
/// found keyword to lie within one line.
pub(crate) const KEYWORD_RULE: &str = "keywords must be non-empty ASCII without line breaks";

/// Whether `k` is a usable keyword (see [`KEYWORD_RULE`]).
pub(crate) fn keyword_ok(k: &str) -> bool {
    !k.is_empty() && k.is_ascii() && !k.contains(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\n", 0), (1, 1));
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
    }

    #[test]
    fn bad_toml_names_file_and_line() {
        let e = parse_pack(
            "x",
            "x.toml",
            "[[rule]]\nid = \"a\"\ncategory = \"nope\"\nregex='a'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("x.toml:3:"), "{e}");
    }

    #[test]
    fn bad_id_names_rule_and_line() {
        let e = parse_pack(
            "x",
            "x.toml",
            "\n[[rule]]\nid = \"Bad Id\"\ncategory = \"secret\"\nregex='a'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("x.toml:2") && e.contains("Bad Id"), "{e}");
    }

    /// The keyword search takes a found keyword to lie within one line.
    #[test]
    fn keywords_with_line_breaks_are_refused() {
        for kw in ["a\\nb", "ab\\r"] {
            let text = format!(
                "[[rule]]\nid = \"k\"\ncategory = \"secret\"\nregex = 'ab'\nkeywords = [\"{kw}\"]\n"
            );
            let e = parse_pack("x", "x.toml", &text).unwrap_err().to_string();
            assert!(e.contains("line breaks") && e.contains("x.toml:1"), "{e}");
        }
    }
}
