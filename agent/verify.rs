//! `logveil verify DIR --pubkey FILE`: checks an archive offline.
//!
//! Batch files are taken in file-name order (`batch-<seq>.lvb`); the chain must start at
//! seq 1 and continue without gaps. For each batch: the header parses and is canonical; its
//! signature verifies with the given public key (and names that key); the seq in the header
//! is the seq in the file name; `prev_hash` is the hash of the previous batch's header; the
//! payload has the sealed length, SHA-256 and event count. Every problem is reported with its
//! seq and what it means (modified, dropped, inserted, reordered, re-signed); the exit status
//! is 1 and the last line names the first bad seq.
//!
//! `logveil verify FILE --syslog --pubkey FILE` checks what a syslog receiver wrote instead:
//! the batches are rebuilt from the event and seal messages (see `sink/rfc5424.rs`; copies
//! resent after a reconnect count once) and checked the same way; a batch whose events or
//! seal message are not all in the export is reported as incomplete.
//!
//! `logveil verify --export FILE [--dead-letter DIR] --pubkey FILE` does the same for batches
//! rebuilt from an Elasticsearch export (see `export.rs`).
//!
//! Limit: removing the newest batches leaves a valid shorter chain. Compare the printed tip
//! (seq and hash) with one recorded elsewhere (the agent logs it at every stop; the chain
//! state is in `data_dir/state.json`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::keys::{load_public, PublicKey};
use crate::seal::{self, GENESIS_HASH};

/// What is wrong with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The file cannot be parsed.
    Malformed,
    /// The signature does not verify with the given key.
    Signature,
    /// Batches are missing.
    Dropped,
    /// The seq in the header is not the one in the file name.
    Reordered,
    /// `prev_hash` does not match the previous batch.
    Link,
    /// Payload hash, length or count differ from the header.
    Modified,
    /// Events or the seal of a batch are not in a syslog export.
    Incomplete,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Malformed => "malformed",
            Kind::Signature => "bad signature",
            Kind::Dropped => "dropped",
            Kind::Reordered => "reordered",
            Kind::Link => "broken link",
            Kind::Modified => "modified",
            Kind::Incomplete => "incomplete",
        }
    }
}

/// One finding.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The seq it concerns (by file name).
    pub seq: u64,
    /// Its kind.
    pub kind: Kind,
    /// Explanation.
    pub detail: String,
}

/// The result of checking an archive.
#[derive(Debug, Default)]
pub struct Report {
    /// Batch files checked.
    pub batches: u64,
    /// Events in them (per their headers).
    pub events: u64,
    /// Findings, in seq order.
    pub problems: Vec<Problem>,
    /// Last batch: seq and hash.
    pub tip: Option<(u64, String)>,
    /// Files that are not batches (ignored).
    pub ignored: Vec<PathBuf>,
    /// Remarks that are not problems (resent copies, foreign lines, events taken from the
    /// dead-letter directory).
    pub notes: Vec<String>,
}

/// Checks every batch file in `dir` against `key`.
pub fn verify_dir(dir: &Path, key: &PublicKey) -> Result<Report, String> {
    let mut files = Vec::new();
    let mut report = Report::default();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name();
        match name.to_str().and_then(seal::seq_from_file_name) {
            Some(seq) => files.push((seq, entry.path())),
            None => report.ignored.push(entry.path()),
        }
    }
    files.sort();
    let batches = files.into_iter().map(|(seq, path)| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&path).map_err(|e| (Kind::Malformed, e.to_string()));
        (seq, name, bytes)
    });
    check_chain(batches, key, &mut report);
    Ok(report)
}

/// Rebuilds the batches in a syslog receiver's file (one message per line) and checks them.
pub fn verify_syslog(file: &Path, key: &PublicKey) -> Result<Report, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let rebuilt = crate::sink::rfc5424::rebuild(text.lines());
    let mut report = Report::default();
    if rebuilt.duplicates > 0 {
        report.notes.push(format!(
            "{} message(s) arrived more than once (resent after a reconnect); each counted once",
            rebuilt.duplicates
        ));
    }
    if rebuilt.other_lines > 0 {
        report.notes.push(format!(
            "{} line(s) of {} are not logveil messages; ignored",
            rebuilt.other_lines,
            file.display()
        ));
    }
    let batches = rebuilt.batches.into_iter().map(|(seq, b)| {
        use crate::sink::rfc5424::Gap;
        let b = b.map_err(|g| match g {
            Gap::Incomplete(m) => (Kind::Incomplete, m),
            Gap::Malformed(m) => (Kind::Malformed, m),
        });
        (seq, format!("batch {seq}"), b)
    });
    check_chain(batches, key, &mut report);
    Ok(report)
}

/// Checks batches rebuilt from a SIEM export; `dead_letter` supplies events it refused.
pub fn verify_export(
    export: &Path,
    dead_letter: Option<&Path>,
    key: &PublicKey,
) -> Result<Report, String> {
    let rebuilt = crate::export::rebuild(export, dead_letter)?;
    let mut report = Report {
        notes: rebuilt.notes,
        ..Report::default()
    };
    if rebuilt.foreign > 0 {
        report.notes.push(format!(
            "{} document(s) without logveil fields; not checked",
            rebuilt.foreign
        ));
    }
    let batches = rebuilt
        .batches
        .into_iter()
        .map(|b| (b.seq, b.name, b.bytes.map_err(|e| (Kind::Malformed, e))));
    check_chain(batches, key, &mut report);
    Ok(report)
}

/// Checks batches given in seq order as (seq, name for messages, the batch file's bytes).
fn check_chain(
    batches: impl Iterator<Item = (u64, String, Result<Vec<u8>, (Kind, String)>)>,
    key: &PublicKey,
    report: &mut Report,
) {
    let mut expected = 1u64;
    let mut prev: Option<String> = Some(GENESIS_HASH.to_string());
    for (seq, name, bytes) in batches {
        report.batches += 1;
        if seq > expected {
            let missing = if seq - expected == 1 {
                format!("batch {expected} is missing")
            } else {
                format!("batches {expected}..{} are missing", seq - 1)
            };
            report.problems.push(Problem {
                seq: expected,
                kind: Kind::Dropped,
                detail: format!("{missing} (deleted from the archive)"),
            });
            prev = None;
        }
        expected = seq + 1;
        let mut problem = |kind, detail: String| {
            report.problems.push(Problem { seq, kind, detail });
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err((kind, e)) => {
                problem(kind, format!("{name}: {e}"));
                prev = None;
                continue;
            }
        };
        let p = match seal::parse(&bytes) {
            Ok(p) => p,
            Err(e) => {
                problem(Kind::Malformed, format!("{name}: {e}"));
                prev = None;
                continue;
            }
        };
        let h = &p.header;
        report.events += h.count;
        let hash = seal::header_hash(p.header_line);
        if !key.verify(p.header_line, &p.signature) {
            let why = if h.key_id != key.key_id() {
                format!(
                    "{name}: signed by key {}, not {} (re-signed with another key, or forged)",
                    h.key_id,
                    key.key_id()
                )
            } else {
                format!("{name}: the signature does not match the header (header modified)")
            };
            problem(Kind::Signature, why);
        }
        if h.seq != seq {
            problem(
                Kind::Reordered,
                format!(
                    "{name} holds batch {} (batches reordered, renamed or replaced)",
                    h.seq
                ),
            );
        }
        if let Some(prev_hash) = &prev {
            if &h.prev_hash != prev_hash {
                problem(
                    Kind::Link,
                    format!(
                        "{name}: prev_hash does not match batch {} (a batch was inserted, replaced or reordered)",
                        seq - 1
                    ),
                );
            }
        }
        let count = memchr::memchr_iter(b'\n', p.payload).count() as u64;
        if p.payload.len() as u64 != h.payload_bytes
            || seal::payload_hash(p.payload) != h.payload_sha256
        {
            problem(
                Kind::Modified,
                format!("{name}: payload does not match its sealed SHA-256 (events modified)"),
            );
        } else if count != h.count || p.payload.last().is_some_and(|&b| b != b'\n') {
            problem(
                Kind::Modified,
                format!("{name}: {count} events, header says {}", h.count),
            );
        }
        prev = Some(hash.clone());
        report.tip = Some((seq, hash));
    }
}

/// `logveil verify DIR --pubkey FILE` (or `FILE --syslog`): 0 when the chain is intact, 1
/// when it is not (or is empty), 2 when the directory, file or key cannot be read.
pub fn verify_main(dir: &Path, pubkey: &Path, syslog: bool) -> ExitCode {
    let what = if syslog {
        format!("logveil messages in {}", dir.display())
    } else {
        format!("batch files in {}", dir.display())
    };
    verify_with(pubkey, &what, |key| {
        if syslog {
            verify_syslog(dir, key)
        } else {
            verify_dir(dir, key)
        }
    })
}

/// `logveil verify --export FILE [--dead-letter DIR] --pubkey FILE`: as [`verify_main`] for
/// batches rebuilt from a SIEM export; 2 also when a line of the export is not JSON.
pub fn verify_export_main(export: &Path, dead_letter: Option<&Path>, pubkey: &Path) -> ExitCode {
    verify_with(pubkey, &format!("batches in {}", export.display()), |key| {
        verify_export(export, dead_letter, key)
    })
}

/// Loads the key, runs `check` and prints the report; `what` names what was looked for
/// when nothing was found.
fn verify_with(
    pubkey: &Path,
    what: &str,
    check: impl FnOnce(&PublicKey) -> Result<Report, String>,
) -> ExitCode {
    let key = match load_public(pubkey) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match check(&key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    for p in &report.ignored {
        eprintln!(
            "logveil: note: {} is not a batch file; ignored",
            p.display()
        );
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    for p in &report.problems {
        println!("seq {}: {}: {}", p.seq, p.kind.as_str(), p.detail);
    }
    let tip = report
        .tip
        .as_ref()
        .map_or("none".to_string(), |(s, h)| format!("seq {s} hash {h}"));
    println!(
        "{} batches, {} events, key {}, tip {tip}",
        report.batches,
        report.events,
        key.key_id()
    );
    if let Some(first) = report.problems.first() {
        println!(
            "FAILED: first bad seq {} ({}; {} problem(s))",
            first.seq,
            first.kind.as_str(),
            report.problems.len()
        );
        ExitCode::from(1)
    } else if report.batches == 0 {
        println!("FAILED: no {what}");
        ExitCode::from(1)
    } else {
        println!("OK");
        ExitCode::SUCCESS
    }
}
