//! The sidecar's configuration file (`agent --config`, `check-config`).
//!
//! One TOML file, every table `deny_unknown_fields`, every error reported as
//! `file:line:col: message` (exit 2). Relative paths are resolved against the directory of the
//! config file, so a config and the files it names can move together. Secrets are never
//! written inline: a key, known value or pseudonym key is a reference, `env:NAME` or
//! `file:PATH`. `config.example.toml` at the repository root documents every key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use logveil_patterns::{MaskStyle, PseudonymKey, Redactor, RedactorBuilder};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Where checkpoints and the chain state live when `data_dir` is not given.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/logveil";
/// Default hard line limit of the sidecar: past it a line is cut and ends with
/// `[REDACTED:line-too-long]`.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;
/// The smallest `max_line_bytes` accepted.
pub const MIN_MAX_LINE_BYTES: u64 = 64 << 10;

/// A configuration error, located in the file when the parser knows where.
#[derive(Debug)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line and column.
    pub at: Option<(usize, usize)>,
    /// What is wrong (never a secret's value).
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.msg),
            None => write!(f, "{}: {}", self.file.display(), self.msg),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The parsed file, before paths are resolved and defaults filled in.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<String>,
    host: Option<String>,
    exit_after_idle: Option<Dur>,
    #[serde(default)]
    log_level: LogLevel,
    #[serde(default, rename = "source")]
    sources: Vec<Spanned<RawSource>>,
    redact: Option<Spanned<RawRedact>>,
    #[serde(default)]
    batch: RawBatch,
    seal: Option<Spanned<RawSeal>>,
    #[serde(default, rename = "sink")]
    sinks: Vec<Spanned<RawSink>>,
    spool: Option<Spanned<RawSpool>>,
    metrics: Option<Spanned<RawMetrics>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    address: Spanned<String>,
    unhealthy_after: Option<Dur>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    path: Option<String>,
    max_bytes: Option<Spanned<ByteSize>>,
    segment_bytes: Option<Spanned<ByteSize>>,
    #[serde(default)]
    fsync: crate::spool::FsyncPolicy,
    drain_timeout: Option<Dur>,
    encryption_key_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: SourceKind,
    include: Option<Vec<Spanned<String>>>,
    exclude: Option<Vec<Spanned<String>>>,
    start_at: Option<StartAt>,
    poll_interval: Option<Dur>,
    rotate_wait: Option<Dur>,
    fingerprint_bytes: Option<Spanned<u64>>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    File,
    Stdin,
}

/// Where a file source starts in a file it has no checkpoint for.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Read files from their first byte.
    #[default]
    Beginning,
    /// Files present at start-up are read from their end (new files from the beginning).
    End,
}

/// The agent's own log level (stderr).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Start-up, rotation, shutdown.
    #[default]
    Info,
    /// Per-batch detail.
    Debug,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawRedact {
    #[serde(default)]
    packs: Vec<Spanned<String>>,
    #[serde(default)]
    rules: Vec<Spanned<String>>,
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    mask_style: MaskStyleName,
    pseudonym_key: Option<Spanned<SecretRef>>,
    #[serde(default)]
    known_values: Vec<Spanned<SecretRef>>,
    max_line_bytes: Option<Spanned<ByteSize>>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
enum MaskStyleName {
    #[default]
    RuleId,
    Fixed,
    Length,
    Pseudonym,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    max_events: Option<Spanned<u64>>,
    max_bytes: Option<Spanned<ByteSize>>,
    max_age: Option<Dur>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawSeal {
    key: Option<Spanned<SecretRef>>,
    #[serde(default)]
    generate_if_missing: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: SinkKind,
    path: Option<Spanned<String>>,
    // Forwarding sinks (http, splunk_hec, elasticsearch, syslog).
    name: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    token: Option<Spanned<SecretRef>>,
    index: Option<String>,
    source: Option<String>,
    sourcetype: Option<String>,
    headers: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    authorization: Option<Spanned<SecretRef>>,
    gzip: Option<bool>,
    ca_file: Option<String>,
    server_name: Option<String>,
    insecure_skip_verify: Option<bool>,
    timeout: Option<Dur>,
    retry_initial: Option<Dur>,
    retry_max: Option<Dur>,
    dead_letter_dir: Option<String>,
    // splunk_hec indexer acknowledgement.
    indexer_ack: Option<bool>,
    ack_timeout: Option<Dur>,
    ack_interval: Option<Dur>,
    max_pending_acks: Option<usize>,
    // elasticsearch.
    action: Option<crate::sink::encode::BulkAction>,
    api_key: Option<Spanned<SecretRef>>,
    username: Option<String>,
    password: Option<Spanned<SecretRef>>,
    // mTLS, every TLS sink.
    client_cert: Option<String>,
    client_key: Option<String>,
    // syslog.
    address: Option<Spanned<String>>,
    tls: Option<bool>,
    facility: Option<Spanned<String>>,
    severity: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum SinkKind {
    Archive,
    Http,
    SplunkHec,
    Elasticsearch,
    Syslog,
}

/// A duration written as `250ms`, `5s`, `2m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string like \"250ms\", \"5s\", \"2m\" or \"1h\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).ok_or_else(|| {
                    E::custom(format!(
                        "invalid duration {s:?}: expected a number and a unit (ms, s, m, h), like \"5s\""
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Parses `250ms`, `5s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (0.0..1e9)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// A size in bytes: an integer, or a string like `"64KiB"`, `"1MiB"`, `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: bytes as an integer, or a string like \"1MiB\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                parse_size(s).map(ByteSize).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size {s:?}: expected bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `4096`, `64KiB`, `1MiB`, `1GiB`, `10MB`, `512B`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mul)
}

const INLINE_SECRET: &str =
    "secrets are referenced as \"env:NAME\" or \"file:PATH\", never written inline";

/// A reference to a secret: `env:NAME` or `file:PATH`. Inline values are refused, and no
/// error message ever repeats what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the agent.
    Env(String),
    /// A file (relative paths are relative to the config file).
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a secret reference \"env:NAME\" or \"file:PATH\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SecretRef, E> {
                if let Some(name) = s.strip_prefix("env:") {
                    if name.is_empty() || name.contains('=') || name.contains('\0') {
                        return Err(E::custom(
                            "env: needs a variable name, like env:DEPLOY_TOKEN",
                        ));
                    }
                    Ok(SecretRef::Env(name.to_string()))
                } else if let Some(p) = s.strip_prefix("file:") {
                    if p.is_empty() {
                        return Err(E::custom(
                            "file: needs a path, like file:/run/secrets/token",
                        ));
                    }
                    Ok(SecretRef::File(PathBuf::from(p)))
                } else {
                    // Never echo `s`: it may be the secret itself.
                    Err(E::custom(INLINE_SECRET))
                }
            }
            // Other types get the same message: serde's default would quote the value.
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl SecretRef {
    /// The file a `file:` reference names, resolved against `base`.
    pub fn path(&self, base: &Path) -> Option<PathBuf> {
        match self {
            SecretRef::File(p) => Some(base.join(p)),
            SecretRef::Env(_) => None,
        }
    }

    /// Reads the secret's bytes. Errors name the reference, never the value.
    pub fn read(&self, base: &Path) -> Result<Vec<u8>, String> {
        match self {
            SecretRef::Env(name) => {
                use std::os::unix::ffi::OsStringExt;
                std::env::var_os(name)
                    .map(|v| v.into_vec())
                    .ok_or_else(|| format!("env:{name}: environment variable is not set"))
            }
            SecretRef::File(p) => {
                let p = base.join(p);
                std::fs::read(&p).map_err(|e| format!("file:{}: {e}", p.display()))
            }
        }
    }
}

/// A validated file source.
#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// Glob patterns (absolute after resolution).
    pub include: Vec<String>,
    /// Glob patterns of paths to skip.
    pub exclude: Vec<glob::Pattern>,
    /// Where to start in files without a checkpoint found at start-up.
    pub start_at: StartAt,
    /// How often to look for new files and new data.
    pub poll_interval: Duration,
    /// How long a rotated-away or deleted file is still watched for late writes.
    pub rotate_wait: Duration,
    /// Bytes at the head of a file that identify its content.
    pub fingerprint_bytes: usize,
}

/// A validated source.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Tail files.
    File(FileSourceConfig),
    /// Read standard input to its end.
    Stdin,
}

/// A validated sink.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// One file per sealed batch in a directory.
    Archive {
        /// The directory.
        path: PathBuf,
    },
}

/// What a forwarding sink sends.
#[derive(Debug, Clone)]
pub enum ForwardKind {
    /// NDJSON POST: a seal line, then the batch's events.
    Http {
        /// Extra headers (not secret).
        headers: Vec<(String, String)>,
        /// The `Authorization` header's value, by reference.
        authorization: Option<SecretRef>,
    },
    /// Splunk HTTP Event Collector, `/services/collector/event`.
    SplunkHec {
        /// The HEC token, by reference.
        token: SecretRef,
        /// index, source, sourcetype.
        meta: crate::sink::encode::HecMeta,
        /// Indexer acknowledgement, when on.
        ack: Option<HecAck>,
    },
    /// Elasticsearch `_bulk`.
    Elasticsearch {
        /// Index (or data stream) and bulk action.
        meta: crate::sink::encode::EsMeta,
        /// API key or basic credentials; none when a proxy or mTLS authenticates.
        auth: Option<EsAuth>,
    },
    /// RFC 5424 over TCP, octet-counted, TLS unless turned off.
    Syslog(SyslogConfig),
}

/// Splunk indexer acknowledgement: a batch is delivered only once Splunk says it is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HecAck {
    /// Resend a batch whose acknowledgement has not come by then (at least once).
    pub timeout: Duration,
    /// Pause between polls of `/services/collector/ack`.
    pub interval: Duration,
    /// Batches sent and not yet acknowledged, at most.
    pub max_pending: usize,
}

/// How an `elasticsearch` sink authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsAuth {
    /// `Authorization: ApiKey <value>` (the base64 `id:api_key` Elasticsearch hands out).
    ApiKey(SecretRef),
    /// HTTP basic.
    Basic {
        /// The user name (not secret).
        username: String,
        /// The password, by reference.
        password: SecretRef,
    },
}

/// Where and how a `syslog` sink sends.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// Host name or address of the receiver.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// TLS (RFC 5425); plain TCP only when turned off explicitly.
    pub tls: bool,
    /// PRI: `facility * 8 + severity`.
    pub pri: u8,
}

/// A validated forwarding sink (`http`, `splunk_hec`, `elasticsearch`, `syslog`).
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Unique name: the spool's key for its acknowledgements and the dead-letter directory.
    pub name: String,
    /// What it sends.
    pub kind: ForwardKind,
    /// `https://host[:port][/path]`; `host:port` for syslog.
    pub url: String,
    /// Gzip request bodies.
    pub gzip: bool,
    /// CA bundle (PEM) instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// TLS server name when it differs from the URL's host.
    pub server_name: Option<String>,
    /// Do not check the server certificate (warned at every start).
    pub insecure_skip_verify: bool,
    /// Client certificate chain (PEM) for mTLS.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM; no group or other access).
    pub client_key: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Where permanently rejected batches go.
    pub dead_letter_dir: PathBuf,
}

/// Batch limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Seal when this many events are in a batch.
    pub max_events: u64,
    /// Seal before the payload would pass this many bytes.
    pub max_bytes: u64,
    /// Seal when the oldest event of a batch is this old.
    pub max_age: Duration,
}

/// The `[redact]` section, validated; [`Config::build_redactor`] turns it into the engine.
#[derive(Debug, Clone)]
pub struct RedactConfig {
    packs: Vec<Spanned<String>>,
    rules: Vec<Spanned<String>>,
    disable: Vec<String>,
    mask_style: MaskStyleName,
    pseudonym_key: Option<Spanned<SecretRef>>,
    known_values: Vec<Spanned<SecretRef>>,
    /// Hard line limit.
    pub max_line_bytes: u64,
    span: Option<Range<usize>>,
}

/// The `[seal]` section.
#[derive(Debug, Clone)]
pub struct SealConfig {
    /// The private key.
    pub key: SecretRef,
    /// Create the key pair (next to a `file:` key) when it does not exist yet.
    pub generate_if_missing: bool,
    span: Range<usize>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file.
    pub file: PathBuf,
    /// Its directory: relative paths are resolved against it.
    pub base: PathBuf,
    /// Checkpoints, chain state, lock.
    pub data_dir: PathBuf,
    /// Host name written into events (default: the machine's).
    pub host: Option<String>,
    /// Shut down by itself after this long with nothing read and nothing pending.
    pub exit_after_idle: Option<Duration>,
    /// The agent's own log level.
    pub log_level: LogLevel,
    /// Inputs.
    pub sources: Vec<SourceConfig>,
    /// Engine options.
    pub redact: RedactConfig,
    /// Batch limits.
    pub batch: BatchConfig,
    /// Signing key.
    pub seal: SealConfig,
    /// Outputs (an archive under `data_dir/archive` when none is given).
    pub sinks: Vec<SinkConfig>,
    /// Forwarding sinks (through the spool).
    pub forwards: Vec<ForwardConfig>,
    /// The spool (used when there is a forwarding sink).
    pub spool: crate::spool::SpoolOptions,
    /// How long a shutdown waits for the forwarding sinks to catch up.
    pub drain_timeout: Duration,
    /// The `/metrics` and `/health` endpoint (off when `[metrics]` is absent).
    pub metrics: Option<crate::metrics::MetricsConfig>,
    text: String,
}

/// Splits `host:port` / `[v6]:port`.
pub fn split_host_port(a: &str) -> Option<(String, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    if host.is_empty() || host.contains(['/', ' ']) || (host.contains(':') && !a.starts_with('[')) {
        return None;
    }
    Some((host.to_string(), port))
}

/// A syslog sink's endpoint (`host:port`, `[v6]:port` for an IPv6 address, as written) and
/// settings. There is no default port: 6514 (TLS) and 514 (plain) are both common and a wrong
/// guess fails late.
fn syslog_config(
    s: &RawSink,
    span: &Range<usize>,
    err_at: &dyn Fn(Option<Range<usize>>, String) -> ConfigError,
) -> Result<(String, SyslogConfig), ConfigError> {
    let Some(a) = &s.address else {
        return Err(err_at(
            Some(span.clone()),
            "a syslog sink needs `address` (host:port, e.g. \"siem.example.com:6514\")".into(),
        ));
    };
    let Some((host, port)) = split_host_port(a.get_ref()) else {
        return Err(err_at(
            Some(a.span()),
            format!("address {:?}: expected host:port", a.get_ref()),
        ));
    };
    let tls = s.tls.unwrap_or(true);
    if !tls {
        for (k, set) in [
            ("ca_file", s.ca_file.is_some()),
            ("server_name", s.server_name.is_some()),
            ("insecure_skip_verify", s.insecure_skip_verify.is_some()),
            ("client_cert", s.client_cert.is_some()),
            ("client_key", s.client_key.is_some()),
        ] {
            if set {
                return Err(err_at(
                    Some(span.clone()),
                    format!("`{k}` needs tls = true (this sink is plain TCP)"),
                ));
            }
        }
    }
    let code = |v: &Option<Spanned<String>>, default: u8, what: &str| match v {
        None => Ok(default),
        Some(v) => {
            let (c, names) = if what == "facility" {
                (
                    crate::sink::rfc5424::facility_code(v.get_ref()),
                    crate::sink::rfc5424::facility_names(),
                )
            } else {
                (
                    crate::sink::rfc5424::severity_code(v.get_ref()),
                    crate::sink::rfc5424::severity_names(),
                )
            };
            c.ok_or_else(|| {
                err_at(
                    Some(v.span()),
                    format!("{what} {:?}: expected one of {names}", v.get_ref()),
                )
            })
        }
    };
    let facility = code(&s.facility, 16, "facility")?;
    let severity = code(&s.severity, 6, "severity")?;
    Ok((
        a.get_ref().clone(),
        SyslogConfig {
            host,
            port,
            tls,
            pri: facility * 8 + severity,
        },
    ))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before, |i| &before[i + 1..])
        .chars()
        .count()
        + 1;
    (line, col)
}

/// The `elasticsearch` part of a sink: an index and at most one way to authenticate.
fn es_kind(s: &RawSink, span: Range<usize>) -> Result<ForwardKind, (Range<usize>, String)> {
    let index = match &s.index {
        Some(i) if !i.is_empty() => i.clone(),
        _ => {
            return Err((
                span,
                "an elasticsearch sink needs `index` (an index, alias or data stream)".into(),
            ))
        }
    };
    // Index names may not hold these (Elasticsearch refuses them); the name goes into JSON.
    if index.starts_with(['-', '_', '+'])
        || index
            .chars()
            .any(|c| c.is_ascii_uppercase() || "\\/*?\"<>| ,#:".contains(c))
    {
        return Err((
            span,
            format!("index {index:?}: lowercase, without \\ / * ? \" < > | , # : or spaces, not starting with - _ +"),
        ));
    }
    let auth = match (&s.api_key, &s.username, &s.password) {
        (Some(k), None, None) => Some(EsAuth::ApiKey(k.get_ref().clone())),
        (None, Some(u), Some(p)) => Some(EsAuth::Basic {
            username: u.clone(),
            password: p.get_ref().clone(),
        }),
        (None, None, None) => None,
        (Some(k), _, _) => {
            return Err((
                k.span(),
                "use either api_key or username and password, not both".into(),
            ))
        }
        (None, Some(_), None) => {
            return Err((
                span,
                "username needs password = \"env:NAME\" or \"file:PATH\"".into(),
            ))
        }
        (None, None, Some(p)) => return Err((p.span(), "password needs username".into())),
    };
    if let Some(EsAuth::Basic { username, .. }) = &auth {
        if username.is_empty() || username.contains(':') {
            return Err((span, "username: not empty, and without `:`".into()));
        }
    }
    Ok(ForwardKind::Elasticsearch {
        meta: crate::sink::encode::EsMeta {
            index,
            action: s.action.unwrap_or_default(),
        },
        auth,
    })
}

/// The indexer acknowledgement settings of a `splunk_hec` sink, when `indexer_ack = true`.
fn hec_ack(s: &RawSink, span: Range<usize>) -> Result<Option<HecAck>, (Range<usize>, String)> {
    if !s.indexer_ack.unwrap_or(false) {
        for (k, set) in [
            ("ack_timeout", s.ack_timeout.is_some()),
            ("ack_interval", s.ack_interval.is_some()),
            ("max_pending_acks", s.max_pending_acks.is_some()),
        ] {
            if set {
                return Err((span, format!("`{k}` needs indexer_ack = true")));
            }
        }
        return Ok(None);
    }
    let ack = HecAck {
        timeout: s.ack_timeout.map_or(Duration::from_secs(300), |d| d.0),
        interval: s.ack_interval.map_or(Duration::from_secs(1), |d| d.0),
        max_pending: s.max_pending_acks.unwrap_or(8),
    };
    if ack.interval.is_zero() || ack.timeout <= ack.interval || ack.max_pending == 0 {
        return Err((
            span,
            "ack_interval must be more than 0, ack_timeout more than ack_interval, max_pending_acks at least 1".into(),
        ));
    }
    Ok(Some(ack))
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            at: None,
            msg: e.to_string(),
        })?;
        Config::parse(path, &text)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err_at = |span: Option<Range<usize>>, msg: String| ConfigError {
            file: path.to_path_buf(),
            at: span.map(|s| line_col(text, s.start)),
            msg,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| err_at(e.span(), e.message().to_string()))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Absolute, so events and logs name files unambiguously.
        let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
        let resolve = |p: &str| base.join(p);

        let data_dir = resolve(raw.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR));
        if raw.sources.is_empty() {
            return Err(err_at(
                None,
                "no [[source]]: add one, e.g. [[source]] type = \"file\" include = [\"/builds/*.log\"]"
                    .into(),
            ));
        }
        let mut sources = Vec::new();
        let mut stdin_seen = false;
        for s in &raw.sources {
            let span = Some(s.span());
            let s = s.get_ref();
            match s.kind {
                SourceKind::Stdin => {
                    let file_only = [
                        ("include", s.include.is_some()),
                        ("exclude", s.exclude.is_some()),
                        ("start_at", s.start_at.is_some()),
                        ("poll_interval", s.poll_interval.is_some()),
                        ("rotate_wait", s.rotate_wait.is_some()),
                        ("fingerprint_bytes", s.fingerprint_bytes.is_some()),
                    ];
                    if let Some((k, _)) = file_only.iter().find(|(_, set)| *set) {
                        return Err(err_at(
                            span,
                            format!("`{k}` applies to type = \"file\" sources only"),
                        ));
                    }
                    if stdin_seen {
                        return Err(err_at(span, "only one stdin source is allowed".into()));
                    }
                    stdin_seen = true;
                    sources.push(SourceConfig::Stdin);
                }
                SourceKind::File => {
                    let include = s.include.as_deref().unwrap_or_default();
                    if include.is_empty() {
                        return Err(err_at(
                            span,
                            "a file source needs `include` (glob patterns of the files to tail)"
                                .into(),
                        ));
                    }
                    let mut inc = Vec::new();
                    for p in include {
                        let full = resolve(p.get_ref());
                        let full = full.to_string_lossy().into_owned();
                        glob::Pattern::new(&full).map_err(|e| {
                            err_at(Some(p.span()), format!("bad glob pattern: {}", e.msg))
                        })?;
                        inc.push(full);
                    }
                    let mut exc = Vec::new();
                    for p in s.exclude.as_deref().unwrap_or_default() {
                        let full = resolve(p.get_ref());
                        exc.push(glob::Pattern::new(&full.to_string_lossy()).map_err(|e| {
                            err_at(Some(p.span()), format!("bad glob pattern: {}", e.msg))
                        })?);
                    }
                    let poll = s.poll_interval.map_or(Duration::from_millis(250), |d| d.0);
                    if poll.is_zero() {
                        return Err(err_at(span, "poll_interval must be more than 0".into()));
                    }
                    let fp = match &s.fingerprint_bytes {
                        None => 256,
                        Some(v) if (16..=65536).contains(v.get_ref()) => *v.get_ref() as usize,
                        Some(v) => {
                            return Err(err_at(
                                Some(v.span()),
                                "fingerprint_bytes must be between 16 and 65536".into(),
                            ))
                        }
                    };
                    sources.push(SourceConfig::File(FileSourceConfig {
                        include: inc,
                        exclude: exc,
                        start_at: s.start_at.unwrap_or_default(),
                        poll_interval: poll,
                        rotate_wait: s.rotate_wait.map_or(Duration::from_secs(2), |d| d.0),
                        fingerprint_bytes: fp,
                    }));
                }
            }
        }

        let (redact_span, rr) = match raw.redact {
            Some(r) => (Some(r.span()), r.into_inner()),
            None => (None, RawRedact::default()),
        };
        if (rr.mask_style == MaskStyleName::Pseudonym) != rr.pseudonym_key.is_some() {
            let span = rr
                .pseudonym_key
                .as_ref()
                .map(|k| k.span())
                .or(redact_span.clone());
            return Err(err_at(
                span,
                "mask_style = \"pseudonym\" and pseudonym_key go together".into(),
            ));
        }
        let max_line_bytes = match &rr.max_line_bytes {
            None => DEFAULT_MAX_LINE_BYTES,
            Some(v) if v.get_ref().0 >= MIN_MAX_LINE_BYTES => v.get_ref().0,
            Some(v) => {
                return Err(err_at(
                    Some(v.span()),
                    format!("max_line_bytes must be at least {MIN_MAX_LINE_BYTES} (64KiB)"),
                ))
            }
        };
        let redact = RedactConfig {
            packs: rr.packs,
            rules: rr.rules,
            disable: rr.disable,
            mask_style: rr.mask_style,
            pseudonym_key: rr.pseudonym_key,
            known_values: rr.known_values,
            max_line_bytes,
            span: redact_span,
        };

        let b = raw.batch;
        let max_events = match &b.max_events {
            None => 10_000,
            Some(v) if *v.get_ref() >= 1 => *v.get_ref(),
            Some(v) => {
                return Err(err_at(
                    Some(v.span()),
                    "max_events must be at least 1".into(),
                ))
            }
        };
        let max_bytes = match &b.max_bytes {
            None => 1 << 20,
            Some(v) if v.get_ref().0 >= 1 => v.get_ref().0,
            Some(v) => {
                return Err(err_at(
                    Some(v.span()),
                    "max_bytes must be at least 1".into(),
                ))
            }
        };
        let max_age = b.max_age.map_or(Duration::from_secs(5), |d| d.0);
        if max_age.is_zero() {
            return Err(err_at(None, "[batch] max_age must be more than 0".into()));
        }

        let Some(seal) = raw.seal else {
            return Err(err_at(
                None,
                "missing [seal] with key = \"file:PATH\" (create a key with `logveil keygen --out DIR`)"
                    .into(),
            ));
        };
        let seal_span = seal.span();
        let seal = seal.into_inner();
        let Some(key) = seal.key else {
            return Err(err_at(
                Some(seal_span),
                "[seal] needs key = \"file:PATH\" or \"env:NAME\"".into(),
            ));
        };
        if seal.generate_if_missing && matches!(key.get_ref(), SecretRef::Env(_)) {
            return Err(err_at(
                Some(key.span()),
                "generate_if_missing needs a file: key".into(),
            ));
        }
        let seal = SealConfig {
            key: key.get_ref().clone(),
            generate_if_missing: seal.generate_if_missing,
            span: key.span(),
        };

        let mut sinks = Vec::new();
        let mut forwards: Vec<ForwardConfig> = Vec::new();
        for (i, s) in raw.sinks.iter().enumerate() {
            let span = s.span();
            let s = s.get_ref();
            // The keys of the HTTP sinks (http, splunk_hec, elasticsearch): a syslog sink
            // refuses them all.
            let http_keys = [
                ("url", s.url.is_some()),
                ("token", s.token.is_some()),
                ("index", s.index.is_some()),
                ("source", s.source.is_some()),
                ("sourcetype", s.sourcetype.is_some()),
                ("headers", s.headers.is_some()),
                ("authorization", s.authorization.is_some()),
                ("gzip", s.gzip.is_some()),
            ];
            let mut forward_keys = [("name", s.name.is_some())]
                .into_iter()
                .chain(http_keys)
                .chain([
                    ("ca_file", s.ca_file.is_some()),
                    ("server_name", s.server_name.is_some()),
                    ("insecure_skip_verify", s.insecure_skip_verify.is_some()),
                    ("timeout", s.timeout.is_some()),
                    ("retry_initial", s.retry_initial.is_some()),
                    ("retry_max", s.retry_max.is_some()),
                    ("dead_letter_dir", s.dead_letter_dir.is_some()),
                    ("indexer_ack", s.indexer_ack.is_some()),
                    ("ack_timeout", s.ack_timeout.is_some()),
                    ("ack_interval", s.ack_interval.is_some()),
                    ("max_pending_acks", s.max_pending_acks.is_some()),
                    ("action", s.action.is_some()),
                    ("api_key", s.api_key.is_some()),
                    ("username", s.username.is_some()),
                    ("password", s.password.is_some()),
                    ("client_cert", s.client_cert.is_some()),
                    ("client_key", s.client_key.is_some()),
                    ("address", s.address.is_some()),
                    ("tls", s.tls.is_some()),
                    ("facility", s.facility.is_some()),
                    ("severity", s.severity.is_some()),
                ]);
            if s.kind == SinkKind::Archive {
                if let Some((k, _)) = forward_keys.find(|(_, set)| *set) {
                    return Err(err_at(
                        Some(span),
                        format!(
                            "`{k}` applies to forwarding sinks (http, splunk_hec, elasticsearch, syslog) only"
                        ),
                    ));
                }
            }
            if s.kind != SinkKind::Archive {
                let kind_name = match s.kind {
                    SinkKind::Http => "http",
                    SinkKind::Elasticsearch => "elasticsearch",
                    SinkKind::Syslog => "syslog",
                    _ => "splunk_hec",
                };
                let only = |k: &str, set: bool, kind: &str| {
                    if set {
                        Err(err_at(
                            Some(span.clone()),
                            format!("`{k}` applies to {kind} sinks only"),
                        ))
                    } else {
                        Ok(())
                    }
                };
                only("path", s.path.is_some(), "archive")?;
                if s.kind == SinkKind::Http {
                    only("token", s.token.is_some(), "splunk_hec")?;
                    only("index", s.index.is_some(), "splunk_hec and elasticsearch")?;
                    only("source", s.source.is_some(), "splunk_hec")?;
                    only("sourcetype", s.sourcetype.is_some(), "splunk_hec")?;
                } else if s.kind != SinkKind::Syslog {
                    // splunk_hec and elasticsearch; syslog refuses every HTTP key below.
                    only("headers", s.headers.is_some(), "http")?;
                    only("authorization", s.authorization.is_some(), "http")?;
                }
                if s.kind == SinkKind::Elasticsearch {
                    only("token", s.token.is_some(), "splunk_hec")?;
                    only("source", s.source.is_some(), "splunk_hec")?;
                    only("sourcetype", s.sourcetype.is_some(), "splunk_hec")?;
                }
                if s.kind != SinkKind::SplunkHec {
                    only("indexer_ack", s.indexer_ack.is_some(), "splunk_hec")?;
                    only("ack_timeout", s.ack_timeout.is_some(), "splunk_hec")?;
                    only("ack_interval", s.ack_interval.is_some(), "splunk_hec")?;
                    only(
                        "max_pending_acks",
                        s.max_pending_acks.is_some(),
                        "splunk_hec",
                    )?;
                }
                if s.kind != SinkKind::Elasticsearch {
                    only("action", s.action.is_some(), "elasticsearch")?;
                    only("api_key", s.api_key.is_some(), "elasticsearch")?;
                    only("username", s.username.is_some(), "elasticsearch")?;
                    only("password", s.password.is_some(), "elasticsearch")?;
                }
                if s.kind == SinkKind::Syslog {
                    for (k, set) in http_keys {
                        only(k, set, "HTTP")?;
                    }
                } else {
                    only("address", s.address.is_some(), "syslog")?;
                    only("tls", s.tls.is_some(), "syslog")?;
                    only("facility", s.facility.is_some(), "syslog")?;
                    only("severity", s.severity.is_some(), "syslog")?;
                }
                if s.client_cert.is_some() != s.client_key.is_some() {
                    return Err(err_at(
                        Some(span),
                        "client_cert and client_key go together (PEM files for mTLS)".into(),
                    ));
                }
                let (url, syslog) = if s.kind == SinkKind::Syslog {
                    let (endpoint, config) = syslog_config(s, &span, &err_at)?;
                    (endpoint, Some(config))
                } else {
                    let Some(url) = &s.url else {
                        return Err(err_at(
                            Some(span),
                            format!("a {kind_name} sink needs `url` (https://host:port)"),
                        ));
                    };
                    if !url.get_ref().starts_with("https://") {
                        return Err(err_at(
                            Some(url.span()),
                            "url must start with https:// (plain HTTP is not supported)".into(),
                        ));
                    }
                    (url.get_ref().clone(), None)
                };
                let name = match &s.name {
                    Some(n) => {
                        let ok = !n.get_ref().is_empty()
                            && n.get_ref()
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        if !ok {
                            return Err(err_at(
                                Some(n.span()),
                                "name: letters, digits, - and _ only".into(),
                            ));
                        }
                        n.get_ref().clone()
                    }
                    None => format!("{kind_name}-{}", i + 1),
                };
                if forwards.iter().any(|f| f.name == name) {
                    return Err(err_at(
                        Some(span),
                        format!("two sinks are named {name:?}; give each a unique `name`"),
                    ));
                }
                let kind = if s.kind == SinkKind::Elasticsearch {
                    es_kind(s, span.clone()).map_err(|(sp, m)| err_at(Some(sp), m))?
                } else if let Some(config) = syslog {
                    ForwardKind::Syslog(config)
                } else if s.kind == SinkKind::Http {
                    let mut headers = Vec::new();
                    if let Some(h) = &s.headers {
                        for (k, v) in h.get_ref() {
                            if k.eq_ignore_ascii_case("authorization") {
                                return Err(err_at(
                                    Some(h.span()),
                                    "set the Authorization header with authorization = \"env:NAME\" or \"file:PATH\", never inline".into(),
                                ));
                            }
                            headers.push((k.clone(), v.clone()));
                        }
                    }
                    ForwardKind::Http {
                        headers,
                        authorization: s.authorization.as_ref().map(|a| a.get_ref().clone()),
                    }
                } else {
                    let Some(token) = &s.token else {
                        return Err(err_at(
                            Some(span),
                            "a splunk_hec sink needs token = \"env:NAME\" or \"file:PATH\"".into(),
                        ));
                    };
                    ForwardKind::SplunkHec {
                        token: token.get_ref().clone(),
                        meta: crate::sink::encode::HecMeta {
                            index: s.index.clone(),
                            source: s.source.clone(),
                            sourcetype: s.sourcetype.clone().unwrap_or_else(|| "logveil".into()),
                        },
                        ack: hec_ack(s, span.clone()).map_err(|(sp, m)| err_at(Some(sp), m))?,
                    }
                };
                let retry_initial = s.retry_initial.map_or(Duration::from_millis(250), |d| d.0);
                let retry_max = s.retry_max.map_or(Duration::from_secs(30), |d| d.0);
                let timeout = s.timeout.map_or(Duration::from_secs(30), |d| d.0);
                if retry_initial.is_zero() || retry_max < retry_initial || timeout.is_zero() {
                    return Err(err_at(
                        Some(span),
                        "timeout and retry_initial must be more than 0, retry_max at least retry_initial".into(),
                    ));
                }
                forwards.push(ForwardConfig {
                    dead_letter_dir: s.dead_letter_dir.as_deref().map_or_else(
                        || crate::sink::forward::default_dead_letter_dir(&data_dir, &name),
                        resolve,
                    ),
                    name,
                    kind,
                    url,
                    gzip: s.gzip.unwrap_or(s.kind != SinkKind::Syslog),
                    ca_file: s.ca_file.as_deref().map(resolve),
                    server_name: s.server_name.clone(),
                    insecure_skip_verify: s.insecure_skip_verify.unwrap_or(false),
                    client_cert: s.client_cert.as_deref().map(resolve),
                    client_key: s.client_key.as_deref().map(resolve),
                    timeout,
                    retry_initial,
                    retry_max,
                });
                continue;
            }
            match s.kind {
                SinkKind::Http
                | SinkKind::SplunkHec
                | SinkKind::Elasticsearch
                | SinkKind::Syslog => {
                    unreachable!("handled above")
                }
                SinkKind::Archive => {
                    let Some(p) = &s.path else {
                        return Err(err_at(
                            Some(span),
                            "an archive sink needs `path` (a directory)".into(),
                        ));
                    };
                    sinks.push(SinkConfig::Archive {
                        path: resolve(p.get_ref()),
                    });
                }
            }
        }
        let rs = raw.spool.map(|s| s.into_inner()).unwrap_or_default();
        let size = |v: &Option<Spanned<ByteSize>>, default: u64, min: u64, what: &str| match v {
            None => Ok(default),
            Some(v) if v.get_ref().0 >= min => Ok(v.get_ref().0),
            Some(v) => Err(err_at(
                Some(v.span()),
                format!("[spool] {what} must be at least {min}"),
            )),
        };
        let spool = crate::spool::SpoolOptions {
            dir: rs
                .path
                .as_deref()
                .map_or_else(|| data_dir.join("spool"), resolve),
            max_bytes: size(&rs.max_bytes, 1 << 30, 1 << 20, "max_bytes")?,
            segment_bytes: size(&rs.segment_bytes, 16 << 20, 4096, "segment_bytes")?,
            fsync: rs.fsync,
            key: match &rs.encryption_key_file {
                None => None,
                Some(p) => Some(
                    crate::spool_key::SpoolKey::load(&resolve(p.get_ref())).map_err(|e| {
                        err_at(Some(p.span()), format!("[spool] encryption_key_file: {e}"))
                    })?,
                ),
            },
        };
        let metrics = match raw.metrics {
            None => None,
            Some(m) => {
                let m = m.into_inner();
                let address = m.address.get_ref().parse().map_err(|e| {
                    err_at(
                        Some(m.address.span()),
                        format!(
                            "[metrics] address {:?}: {e} (want IP:PORT, like \"127.0.0.1:9598\")",
                            m.address.get_ref()
                        ),
                    )
                })?;
                Some(crate::metrics::MetricsConfig {
                    address,
                    unhealthy_after: m.unhealthy_after.map_or(Duration::from_secs(300), |d| d.0),
                })
            }
        };
        let drain_timeout = rs.drain_timeout.map_or(Duration::from_secs(5), |d| d.0);
        if sinks.is_empty() && forwards.is_empty() {
            sinks.push(SinkConfig::Archive {
                path: data_dir.join("archive"),
            });
        }

        Ok(Config {
            file: path.to_path_buf(),
            base,
            data_dir,
            host: raw.host,
            exit_after_idle: raw.exit_after_idle.map(|d| d.0).filter(|d| !d.is_zero()),
            log_level: raw.log_level,
            sources,
            redact,
            batch: BatchConfig {
                max_events,
                max_bytes,
                max_age,
            },
            seal,
            sinks,
            forwards,
            spool,
            drain_timeout,
            metrics,
            text: text.to_string(),
        })
    }

    /// An error located at a span of this file.
    pub fn error_at(&self, span: Option<Range<usize>>, msg: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            at: span.map(|s| line_col(&self.text, s.start)),
            msg,
        }
    }

    /// An error about the `[seal] key` setting.
    pub fn seal_error(&self, msg: String) -> ConfigError {
        self.error_at(Some(self.seal.span.clone()), format!("[seal] key: {msg}"))
    }

    /// Builds the engine from `[redact]`. Secrets are read here; errors name the setting.
    pub fn build_redactor(&self) -> Result<Redactor, ConfigError> {
        let r = &self.redact;
        let engine = |e: logveil_patterns::Error, span: Option<Range<usize>>| {
            self.error_at(span.or(r.span.clone()), format!("[redact]: {e}"))
        };
        let mut b = RedactorBuilder::new();
        for p in &r.packs {
            b.enable_pack(p.get_ref())
                .map_err(|e| engine(e, Some(p.span())))?;
        }
        for p in &r.rules {
            let path = self.base.join(p.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.error_at(Some(p.span()), format!("rules: {}: {e}", path.display()))
            })?;
            b.add_rules_toml(&path.display().to_string(), &text)
                .map_err(|e| self.error_at(Some(p.span()), e.to_string()))?;
        }
        for id in &r.disable {
            b.disable(id);
        }
        for v in &r.known_values {
            let data = v
                .get_ref()
                .read(&self.base)
                .map_err(|m| self.error_at(Some(v.span()), format!("known_values: {m}")))?;
            let origin = v.get_ref().to_string();
            match v.get_ref() {
                SecretRef::Env(_) => {
                    let val = data.strip_suffix(b"\n").unwrap_or(&data);
                    b.known_value(val, &origin)
                        .map_err(|e| engine(e, Some(v.span())))?;
                }
                SecretRef::File(_) => {
                    for (i, line) in data.split(|&c| c == b'\n').enumerate() {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        if !line.is_empty() {
                            b.known_value(line, format_args!("{origin}:{}", i + 1))
                                .map_err(|e| engine(e, Some(v.span())))?;
                        }
                    }
                }
            }
        }
        // Same convention as `filter`: variables named LOGVEIL_MASK_* are always masked.
        for (k, v) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("LOGVEIL_MASK_")) {
                use std::os::unix::ffi::OsStrExt;
                b.known_value(
                    v.as_bytes(),
                    format_args!("environment variable {}", k.to_string_lossy()),
                )
                .map_err(|e| engine(e, None))?;
            }
        }
        let style =
            match r.mask_style {
                MaskStyleName::RuleId => MaskStyle::RuleId,
                MaskStyleName::Fixed => MaskStyle::Fixed,
                MaskStyleName::Length => MaskStyle::Length,
                MaskStyleName::Pseudonym => {
                    let k = r.pseudonym_key.as_ref().expect("checked when parsing");
                    let data = k.get_ref().read(&self.base).map_err(|m| {
                        self.error_at(Some(k.span()), format!("pseudonym_key: {m}"))
                    })?;
                    let data = data.strip_suffix(b"\n").unwrap_or(&data);
                    MaskStyle::Pseudonym(PseudonymKey::new(data).map_err(|e| {
                        self.error_at(Some(k.span()), format!("pseudonym_key: {e}"))
                    })?)
                }
            };
        b.mask_style(style);
        let max_line = usize::try_from(r.max_line_bytes).unwrap_or(usize::MAX);
        // The engine never cuts a line inside its first window: keep the window within the
        // limit so the limit holds as written.
        b.window(max_line.min(logveil_patterns::DEFAULT_WINDOW));
        b.max_line_bytes(max_line);
        b.build().map_err(|e| engine(e, None))
    }
}

/// `logveil check-config FILE`: parses, builds the engine, reads every secret reference and
/// the signing key; prints a summary. Exit 0, or 2 with `file:line:col: message`.
pub fn check_config_main(path: &Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match cfg.build_redactor() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    let key = match crate::keys::load_for_config(&cfg, false) {
        Ok(Some(k)) => format!("key {}", k.key_id()),
        Ok(None) => "key will be generated on first start".to_string(),
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    for f in &cfg.forwards {
        if let Err(e) = crate::sink::forward::check(f, &cfg.base) {
            eprintln!("logveil: {}: {e}", cfg.file.display());
            return ExitCode::from(2);
        }
        if f.insecure_skip_verify {
            eprintln!(
                "logveil: warning: sink {}: insecure_skip_verify = true: the server's certificate is not checked",
                f.name
            );
        }
        if matches!(&f.kind, ForwardKind::Syslog(s) if !s.tls) {
            eprintln!(
                "logveil: warning: sink {}: tls = false: syslog messages travel in clear text",
                f.name
            );
        }
    }
    let files = cfg
        .sources
        .iter()
        .filter(|s| matches!(s, SourceConfig::File(_)))
        .count();
    let stdin = cfg.sources.iter().any(|s| matches!(s, SourceConfig::Stdin));
    println!(
        "{}: OK: {} file source(s){}, {} rules, {} sink(s), data_dir {}, {}",
        path.display(),
        files,
        if stdin { " + stdin" } else { "" },
        r.rules().len(),
        cfg.sinks.len() + cfg.forwards.len(),
        cfg.data_dir.display(),
        key
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        "[[source]]\ntype = \"file\"\ninclude = [\"/tmp/*.log\"]\n[seal]\nkey = \"file:k\"\n";

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/lv/agent.toml"), s)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.batch.max_events, 10_000);
        assert_eq!(c.batch.max_bytes, 1 << 20);
        assert_eq!(c.data_dir, Path::new(DEFAULT_DATA_DIR));
        match &c.sinks[..] {
            [SinkConfig::Archive { path }] => assert_eq!(path, &c.data_dir.join("archive")),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.seal.key, SecretRef::File("k".into()));
    }

    #[test]
    fn unknown_key_is_located() {
        let e = parse(&format!("{MIN}[batch]\nmax_evnts = 3\n")).unwrap_err();
        assert_eq!(e.at, Some((7, 1)), "{e}");
        assert!(e.to_string().starts_with("/etc/lv/agent.toml:7:1: "), "{e}");
        assert!(e.msg.contains("max_evnts"), "{e}");
    }

    #[test]
    fn inline_secret_is_refused_without_echo() {
        let e = parse(&format!(
            "{MIN}[redact]\nknown_values = [\"hunter2hunter2\"]\n"
        ))
        .unwrap_err();
        assert!(e.msg.contains("env:NAME"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(e.at.map(|a| a.0), Some(7));
    }

    #[test]
    fn numeric_secret_is_not_echoed_either() {
        let e = parse(&format!(
            "{MIN}[redact]\npseudonym_key = 918273645\nmask_style = \"pseudonym\"\n"
        ))
        .unwrap_err();
        assert!(e.msg.contains("env:NAME"), "{e}");
        assert!(!e.to_string().contains("918273645"), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("1 parsec"), None);
        let e = parse(&format!("{MIN}[batch]\nmax_age = \"soon\"\n")).unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(7), "{e}");
    }

    #[test]
    fn forwarding_sinks_and_spool_get_defaults() {
        let c = parse(&format!(
            "{MIN}[[sink]]\ntype = \"splunk_hec\"\nurl = \"https://splunk:8088\"\ntoken = \"env:HEC\"\n[[sink]]\ntype = \"http\"\nurl = \"https://collector/ingest?x=1\"\nheaders = {{ \"X-Team\" = \"ci\" }}\nauthorization = \"file:auth\"\n"
        ))
        .unwrap();
        assert!(
            c.sinks.is_empty(),
            "no default archive when a sink is given"
        );
        let [hec, http] = &c.forwards[..] else {
            panic!("{:?}", c.forwards)
        };
        assert_eq!(hec.name, "splunk_hec-1");
        assert_eq!(http.name, "http-2");
        assert!(hec.gzip && !hec.insecure_skip_verify);
        assert_eq!(hec.retry_max, Duration::from_secs(30));
        assert_eq!(
            hec.dead_letter_dir,
            Path::new(DEFAULT_DATA_DIR).join("dead-letter/splunk_hec-1")
        );
        match &hec.kind {
            ForwardKind::SplunkHec { token, meta, ack } => {
                assert_eq!(token, &SecretRef::Env("HEC".into()));
                assert_eq!(ack, &None);
                assert_eq!(meta.sourcetype, "logveil");
            }
            other => panic!("{other:?}"),
        }
        match &http.kind {
            ForwardKind::Http {
                headers,
                authorization,
            } => {
                assert_eq!(headers, &[("X-Team".to_string(), "ci".to_string())]);
                assert_eq!(authorization, &Some(SecretRef::File("auth".into())));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.spool.dir, Path::new(DEFAULT_DATA_DIR).join("spool"));
        assert_eq!(c.spool.max_bytes, 1 << 30);
        assert_eq!(c.spool.fsync, crate::spool::FsyncPolicy::Always);
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn elasticsearch_and_hec_ack_settings() {
        let c = parse(&format!(
            "{MIN}[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"ci-logs\"\napi_key = \"env:ES_KEY\"\n[[sink]]\ntype = \"elasticsearch\"\nname = \"es2\"\nurl = \"https://es:9200\"\nindex = \"logs-ci-default\"\naction = \"index\"\nusername = \"logveil\"\npassword = \"file:es.pw\"\n[[sink]]\ntype = \"splunk_hec\"\nurl = \"https://splunk:8088\"\ntoken = \"env:HEC\"\nindexer_ack = true\nack_interval = \"250ms\"\n"
        ))
        .unwrap();
        let [es, es2, hec] = &c.forwards[..] else {
            panic!("{:?}", c.forwards)
        };
        assert_eq!(es.name, "elasticsearch-1");
        match &es.kind {
            ForwardKind::Elasticsearch { meta, auth } => {
                assert_eq!(meta.index, "ci-logs");
                assert_eq!(meta.action, crate::sink::encode::BulkAction::Create);
                assert_eq!(auth, &Some(EsAuth::ApiKey(SecretRef::Env("ES_KEY".into()))));
            }
            other => panic!("{other:?}"),
        }
        match &es2.kind {
            ForwardKind::Elasticsearch { meta, auth } => {
                assert_eq!(meta.action, crate::sink::encode::BulkAction::Index);
                assert_eq!(
                    auth,
                    &Some(EsAuth::Basic {
                        username: "logveil".into(),
                        password: SecretRef::File("es.pw".into())
                    })
                );
            }
            other => panic!("{other:?}"),
        }
        match &hec.kind {
            ForwardKind::SplunkHec { ack, .. } => assert_eq!(
                ack,
                &Some(HecAck {
                    timeout: Duration::from_secs(300),
                    interval: Duration::from_millis(250),
                    max_pending: 8,
                })
            ),
            other => panic!("{other:?}"),
        }
    }

    /// The commented-out `[[sink]]` tables of config.example.toml, uncommented, parse: the
    /// documentation names real keys with valid values.
    #[test]
    fn example_forwarding_sinks_parse() {
        let text = include_str!("../config.example.toml");
        let mut blocks = Vec::new();
        for block in text.split("\n\n") {
            if !block.contains("\n# [[sink]]") && !block.starts_with("# [[sink]]") {
                continue;
            }
            let keys: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("# "))
                .filter(|l| {
                    *l == "[[sink]]"
                        || l.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        })
                })
                .collect();
            blocks.push(keys);
        }
        assert!(blocks.len() >= 3, "{blocks:?}");
        let mut kinds = Vec::new();
        for keys in blocks {
            // api_key and username/password are alternatives: try each.
            let variants: Vec<Vec<&str>> = if keys.iter().any(|k| k.starts_with("api_key")) {
                vec![
                    keys.iter()
                        .filter(|k| !k.starts_with("username") && !k.starts_with("password"))
                        .copied()
                        .collect(),
                    keys.iter()
                        .filter(|k| !k.starts_with("api_key"))
                        .copied()
                        .collect(),
                ]
            } else {
                vec![keys]
            };
            for v in variants {
                let toml = v.join("\n");
                let c = parse(&format!("{MIN}{toml}\n")).unwrap_or_else(|e| panic!("{toml}\n{e}"));
                kinds.push(format!("{:?}", c.forwards[0].kind));
            }
        }
        assert!(kinds.iter().any(|k| k.starts_with("Elasticsearch")));
        assert!(kinds.iter().any(|k| k.contains("ack: Some")));
        assert!(kinds.iter().any(|k| k.starts_with("Syslog")));
    }

    #[test]
    fn forwarding_sink_mistakes_are_located() {
        let hec = "[[sink]]\ntype = \"splunk_hec\"\nurl = \"https://s:8088\"\n";
        let cases = [
            (format!("{hec}token = \"s3cr3t-token-value\"\n"), "env:NAME"),
            (hec.to_string(), "needs token"),
            (format!("{hec}token = \"env:T\"\npath = \"x\"\n"), "archive"),
            (
                "[[sink]]\ntype = \"http\"\nurl = \"http://s/\"\n".to_string(),
                "https://",
            ),
            (
                "[[sink]]\ntype = \"http\"\nurl = \"https://s/\"\nheaders = { Authorization = \"Bearer x\" }\n".to_string(),
                "never inline",
            ),
            (
                "[[sink]]\ntype = \"archive\"\npath = \"a\"\nurl = \"https://s\"\n".to_string(),
                "forwarding sinks (http, splunk_hec, elasticsearch, syslog)",
            ),
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\n".to_string(),
                "needs `index`",
            ),
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"CI\"\n".to_string(),
                "lowercase",
            ),
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"ci\"\napi_key = \"s3cr3t-key\"\n".to_string(),
                "env:NAME",
            ),
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"ci\"\nusername = \"u\"\n".to_string(),
                "needs password",
            ),
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"ci\"\napi_key = \"env:K\"\nusername = \"u\"\npassword = \"env:P\"\n".to_string(),
                "not both",
            ),
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"ci\"\ntoken = \"env:T\"\n".to_string(),
                "splunk_hec",
            ),
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"ci\"\naction = \"upsert\"\n".to_string(),
                "upsert",
            ),
            (format!("{hec}token = \"env:T\"\napi_key = \"env:K\"\n"), "elasticsearch"),
            (format!("{hec}token = \"env:T\"\nack_timeout = \"5s\"\n"), "indexer_ack = true"),
            (
                format!("{hec}token = \"env:T\"\nindexer_ack = true\nack_timeout = \"1s\"\nack_interval = \"2s\"\n"),
                "ack_timeout more than ack_interval",
            ),
            (
                "[[sink]]\ntype = \"http\"\nurl = \"https://s/\"\nindexer_ack = true\n".to_string(),
                "splunk_hec",
            ),
            // Keys of one kind refused on the others (the elasticsearch and syslog sinks
            // were added side by side).
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"ci\"\naddress = \"h:6514\"\n".to_string(),
                "applies to syslog sinks",
            ),
            (
                "[[sink]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nindex = \"ci\"\nheaders = { X = \"y\" }\n".to_string(),
                "applies to http sinks",
            ),
            (
                "[[sink]]\ntype = \"syslog\"\naddress = \"h:6514\"\napi_key = \"env:K\"\n".to_string(),
                "applies to elasticsearch sinks",
            ),
            (
                "[[sink]]\ntype = \"syslog\"\naddress = \"h:6514\"\nindexer_ack = true\n".to_string(),
                "applies to splunk_hec sinks",
            ),
            (
                format!("{hec}token = \"env:T\"\nname = \"a\"\n{hec}token = \"env:T\"\nname = \"a\"\n"),
                "unique",
            ),
            ("[spool]\nfsync = \"sometimes\"\n".to_string(), "sometimes"),
            ("[spool]\nmax_bytes = 10\n".to_string(), "at least"),
        ];
        for (extra, want) in cases {
            let e = parse(&format!("{MIN}{extra}")).unwrap_err();
            assert!(e.msg.contains(want), "{extra}: {e}");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
            assert!(e.at.is_some(), "{extra}: {e}");
        }
    }

    #[test]
    fn syslog_sinks_and_client_certificates() {
        let c = parse(&format!(
            "{MIN}[[sink]]\ntype = \"syslog\"\naddress = \"siem.example.com:6514\"\nfacility = \"local3\"\nseverity = \"notice\"\nca_file = \"ca.pem\"\nclient_cert = \"agent.pem\"\nclient_key = \"agent.key\"\n[[sink]]\ntype = \"syslog\"\nname = \"plain\"\naddress = \"[::1]:514\"\ntls = false\n"
        ))
        .unwrap();
        let [tls, plain] = &c.forwards[..] else {
            panic!("{:?}", c.forwards)
        };
        assert_eq!(tls.name, "syslog-1");
        assert_eq!(tls.url, "siem.example.com:6514");
        assert!(!tls.gzip);
        assert_eq!(tls.client_key, Some(PathBuf::from("/etc/lv/agent.key")));
        match (&tls.kind, &plain.kind) {
            (ForwardKind::Syslog(a), ForwardKind::Syslog(b)) => {
                assert_eq!(
                    (a.host.as_str(), a.port, a.tls, a.pri),
                    ("siem.example.com", 6514, true, 19 * 8 + 5)
                );
                assert_eq!(
                    (b.host.as_str(), b.port, b.tls, b.pri),
                    ("::1", 514, false, 16 * 8 + 6)
                );
            }
            other => panic!("{other:?}"),
        }
        let syslog = "[[sink]]\ntype = \"syslog\"\n";
        let cases = [
            (syslog.to_string(), "needs `address`"),
            (format!("{syslog}address = \"siem\"\n"), "host:port"),
            (format!("{syslog}address = \"siem:0\"\n"), "host:port"),
            (
                format!("{syslog}address = \"s:1\"\nurl = \"https://s\"\n"),
                "`url` applies to HTTP",
            ),
            (
                format!("{syslog}address = \"s:1\"\ngzip = true\n"),
                "`gzip`",
            ),
            (
                format!("{syslog}address = \"s:1\"\nfacility = \"local9\"\n"),
                "local7",
            ),
            (
                format!("{syslog}address = \"s:1\"\nseverity = \"loud\"\n"),
                "warning",
            ),
            (
                format!("{syslog}address = \"s:1\"\ntls = false\nca_file = \"ca\"\n"),
                "needs tls = true",
            ),
            (
                format!("{syslog}address = \"s:1\"\nclient_cert = \"c.pem\"\n"),
                "go together",
            ),
            (
                "[[sink]]\ntype = \"http\"\nurl = \"https://s/\"\naddress = \"s:1\"\n".to_string(),
                "syslog sinks only",
            ),
            (
                "[[sink]]\ntype = \"archive\"\npath = \"a\"\nclient_key = \"k\"\n".to_string(),
                "forwarding sinks",
            ),
        ];
        for (extra, want) in cases {
            let e = parse(&format!("{MIN}{extra}")).unwrap_err();
            assert!(e.msg.contains(want), "{extra}: {e}");
            assert!(e.at.is_some(), "{extra}: {e}");
        }
    }

    #[test]
    fn stdin_rejects_file_keys() {
        let e =
            parse("[[source]]\ntype = \"stdin\"\nstart_at = \"end\"\n[seal]\nkey = \"env:K\"\n")
                .unwrap_err();
        assert!(e.msg.contains("start_at"), "{e}");
    }
}
