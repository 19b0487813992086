//! Errors of building a redactor. Each names where the problem is (file, line, rule id) and
//! never includes a secret value.

/// Why a pack, rule or known value was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TOML itself is malformed or has unknown keys.
    #[error("{file}:{line}:{col}: {message}")]
    Toml {
        /// File name or `builtin:NAME.toml`.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// Parser message.
        message: String,
    },
    /// A rule is well-formed TOML but cannot be used.
    #[error("{origin}: rule {id}: {message}")]
    Rule {
        /// `file:line` of the rule.
        origin: String,
        /// Rule id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// Two rules share an id.
    #[error("{origin}: rule {id}: duplicate id (first defined at {first})")]
    DuplicateId {
        /// Where the second definition is.
        origin: String,
        /// The id.
        id: String,
        /// Where the first one is.
        first: String,
    },
    /// `--disable` named a rule that does not exist.
    #[error("unknown rule id {0:?} (see `logveil rules list`)")]
    UnknownRule(String),
    /// `--enable-pack` named a pack that does not exist.
    #[error("unknown rule pack {0:?}")]
    UnknownPack(String),
    /// A known value is too short to mask safely (it would mask ordinary text everywhere).
    #[error("{origin}: known value of {len} bytes is shorter than the minimum of {min} bytes")]
    KnownValueTooShort {
        /// Where it came from (file:line or env var name), never the value.
        origin: String,
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The pseudonym mask style needs a key.
    #[error("pseudonym key must be at least 16 bytes (got {0})")]
    PseudonymKey(usize),
    /// The compiled automata exceeded a size limit.
    #[error("could not compile {what}: {message}")]
    Compile {
        /// Which automaton.
        what: String,
        /// Library message.
        message: String,
    },
}
