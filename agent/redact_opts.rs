//! Redaction options shared by `filter` and `run`, and building the engine from them.

use std::path::{Path, PathBuf};

use clap::Args;
use logveil_patterns::{MaskStyle, PseudonymKey, Redactor, RedactorBuilder};

/// Why the redactor could not be built: always a usage/config error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum OptsError {
    /// Reading a file named on the command line failed.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `--mask-env` variable is missing.
    #[error("--mask-env {0}: environment variable is not set")]
    MissingEnv(String),
    /// Invalid option value.
    #[error("{0}")]
    Invalid(String),
    /// The engine refused a rule, pack or value.
    #[error(transparent)]
    Engine(#[from] logveil_patterns::Error),
}

/// Options that decide what is masked and how.
#[derive(Args, Debug, Clone, Default)]
pub struct RedactOpts {
    /// Extra rule pack (TOML); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Disable a rule (or a whole pack) by id; repeatable.
    #[arg(long = "disable", value_name = "ID")]
    pub disable: Vec<String>,
    /// Enable an opt-in built-in pack (e.g. `network` for IPv4/IPv6); repeatable.
    #[arg(long = "enable-pack", value_name = "NAME")]
    pub enable_pack: Vec<String>,
    /// File of exact values to mask, one per line (with their base64, URL, JSON and hex forms).
    #[arg(long = "mask-file", value_name = "FILE")]
    pub mask_file: Vec<PathBuf>,
    /// Environment variable whose value is masked; repeatable. Variables named
    /// `LOGVEIL_MASK_*` are always masked.
    #[arg(long = "mask-env", value_name = "NAME")]
    pub mask_env: Vec<String>,
    /// How masks look: rule-id (`[REDACTED:<rule-id>]`), fixed, length, pseudonym.
    #[arg(long = "mask-style", value_name = "STYLE", default_value = "rule-id")]
    pub mask_style: String,
    /// Key for `--mask-style pseudonym` (at least 16 bytes): HMAC-SHA256 tags are stable
    /// across runs that share the key.
    #[arg(long = "pseudonym-key-file", value_name = "FILE")]
    pub pseudonym_key_file: Option<PathBuf>,
    /// Hard line limit in bytes; past it the rest of the line is replaced by
    /// `[REDACTED:line-too-long]`.
    #[arg(long = "max-line-bytes", value_name = "BYTES")]
    pub max_line_bytes: Option<usize>,
}

fn read(path: &Path) -> Result<Vec<u8>, OptsError> {
    std::fs::read(path).map_err(|source| OptsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl RedactOpts {
    /// Builds the redactor; every error names the file, line, rule or variable.
    pub fn build(&self) -> Result<Redactor, OptsError> {
        let mut b = RedactorBuilder::new();
        for p in &self.enable_pack {
            b.enable_pack(p)?;
        }
        for path in &self.rules {
            let text = read(path)?;
            let text = String::from_utf8(text).map_err(|_| {
                OptsError::Invalid(format!("{}: rule file is not UTF-8", path.display()))
            })?;
            b.add_rules_toml(&path.display().to_string(), &text)?;
        }
        for id in &self.disable {
            b.disable(id);
        }
        for path in &self.mask_file {
            let data = read(path)?;
            for (i, line) in data.split(|&c| c == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    continue;
                }
                b.known_value(line, format_args!("{}:{}", path.display(), i + 1))?;
            }
        }
        let mut env_names: Vec<String> = self.mask_env.clone();
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str() {
                if k.starts_with("LOGVEIL_MASK_") && !env_names.iter().any(|n| n == k) {
                    env_names.push(k.to_string());
                }
            }
        }
        for name in &env_names {
            let v = std::env::var_os(name).ok_or_else(|| OptsError::MissingEnv(name.clone()))?;
            use std::os::unix::ffi::OsStrExt;
            b.known_value(v.as_bytes(), format_args!("environment variable {name}"))?;
        }
        let style = match self.mask_style.as_str() {
            "pseudonym" => {
                let path = self.pseudonym_key_file.as_ref().ok_or_else(|| {
                    OptsError::Invalid("--mask-style pseudonym needs --pseudonym-key-file".into())
                })?;
                let key = read(path)?;
                let key = key.strip_suffix(b"\n").unwrap_or(&key);
                MaskStyle::Pseudonym(
                    PseudonymKey::new(key)
                        .map_err(|e| OptsError::Invalid(format!("{}: {e}", path.display())))?,
                )
            }
            s => MaskStyle::parse_simple(s).ok_or_else(|| {
                OptsError::Invalid(format!(
                    "--mask-style {s:?}: expected rule-id, fixed, length or pseudonym"
                ))
            })?,
        };
        b.mask_style(style);
        if let Some(n) = self.max_line_bytes {
            b.max_line_bytes(n);
        }
        Ok(b.build()?)
    }
}
