//! Command line: flags are parsed and validated first, then turned into built objects
//! (redactor, filter loop). Exit codes: 0 success or broken pipe, 1 runtime error, 2 usage or
//! configuration error.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use logveil_patterns::{rule::parse_pack, Counts, Redactor, RedactorBuilder};

use crate::filter::{self, FilterError};
use crate::redact_opts::RedactOpts;
use crate::run_cmd;

/// Stops secrets and patient data from leaving CI/CD logs.
#[derive(Parser, Debug)]
#[command(name = "logveil", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Redact stdin to stdout, line by line.
    Filter {
        #[command(flatten)]
        redact: RedactOpts,
        /// Worker threads for large inputs (default: all cores).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Print per-rule mask counts to stderr at the end (never values).
        #[arg(long)]
        stats: bool,
    },
    /// Run a command with its stdout and stderr redacted; exit with its exit code.
    Run {
        #[command(flatten)]
        redact: RedactOpts,
        /// Print per-rule mask counts to stderr at the end.
        #[arg(long)]
        stats: bool,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        argv: Vec<String>,
    },
    /// List or test rules.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Runner sidecar: tail log files, redact, seal batches into a hash chain, archive them.
    Agent {
        /// The TOML config (see config.example.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a sidecar config: exit 0, or 2 with `file:line:col: message`.
    CheckConfig {
        /// The TOML config.
        file: PathBuf,
    },
    /// Create an Ed25519 key pair for sealing: DIR/seal.key (mode 0600) and DIR/seal.pub;
    /// or, with --spool-key, a 32-byte AES-256 key for `[spool] encryption_key_file`.
    Keygen {
        /// Directory for the key files (created if missing).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "spool_key",
            conflicts_with = "spool_key"
        )]
        out: Option<PathBuf>,
        /// Write a spool encryption key (32 random bytes, mode 0600) to this file.
        #[arg(long, value_name = "PATH")]
        spool_key: Option<PathBuf>,
    },
    /// Verify an archive of sealed batches (or a SIEM export); exit 1 naming the first bad seq.
    Verify {
        /// The archive directory (with --syslog: a file of RFC 5424 messages).
        #[arg(required_unless_present = "export", conflicts_with = "export")]
        dir: Option<PathBuf>,
        /// Instead of an archive: an NDJSON export of what an elasticsearch sink wrote
        /// (documents or search hits).
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// With --export: the sink's dead-letter directory, for events the SIEM refused.
        #[arg(long, value_name = "DIR", requires = "export")]
        dead_letter: Option<PathBuf>,
        /// The public key (seal.pub).
        #[arg(long, value_name = "FILE")]
        pubkey: PathBuf,
        /// DIR is a syslog receiver's file, one message per line (rsyslog `%rawmsg%`):
        /// rebuild the batches from the syslog sink's messages and check them.
        #[arg(long, conflicts_with = "export")]
        syslog: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RulesCmd {
    /// List every rule: id, category, pack, whether it is on by default.
    List {
        #[command(flatten)]
        redact: RedactOpts,
    },
    /// Check a rule file: it parses, compiles, and each rule's examples behave.
    Test {
        /// The TOML rule pack.
        file: PathBuf,
    },
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Cmd::Filter {
            redact,
            threads,
            stats,
        } => cmd_filter(&redact, threads, stats),
        Cmd::Run {
            redact,
            stats,
            argv,
        } => cmd_run(&redact, &argv, stats),
        Cmd::Rules {
            cmd: RulesCmd::List { redact },
        } => cmd_rules_list(&redact),
        Cmd::Rules {
            cmd: RulesCmd::Test { file },
        } => cmd_rules_test(&file),
        Cmd::Agent { config } => crate::pipeline::agent_main(&config),
        Cmd::CheckConfig { file } => crate::config::check_config_main(&file),
        Cmd::Keygen {
            spool_key: Some(p), ..
        } => crate::spool_key::keygen_main(&p),
        Cmd::Keygen { out, .. } => crate::keys::keygen_main(&out.expect("required by clap")),
        Cmd::Verify {
            dir,
            export,
            dead_letter,
            pubkey,
            syslog,
        } => match (dir, export) {
            (_, Some(export)) => {
                crate::verify::verify_export_main(&export, dead_letter.as_deref(), &pubkey)
            }
            // clap's `requires` on --dead-letter is not enforced once DIR (which conflicts
            // with --export) is given: refuse it here rather than ignore it.
            (Some(_), None) if dead_letter.is_some() => {
                eprintln!("logveil: verify: --dead-letter goes with --export, not with DIR");
                ExitCode::from(2)
            }
            (Some(dir), None) => crate::verify::verify_main(&dir, &pubkey, syslog),
            (None, None) => unreachable!("clap requires DIR or --export"),
        },
    }
}

fn build(redact: &RedactOpts) -> Result<Redactor, ExitCode> {
    redact.build().map_err(|e| {
        eprintln!("logveil: {e}");
        ExitCode::from(2)
    })
}

fn print_stats(r: &Redactor, counts: &Counts, lines: Option<u64>) {
    let mut err = io::stderr().lock();
    if let Some(l) = lines {
        let _ = writeln!(err, "logveil: {l} lines, {} masks", counts.total());
    } else {
        let _ = writeln!(err, "logveil: {} masks", counts.total());
    }
    let mut rows: Vec<(&str, u64)> = counts.nonzero(r).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (id, n) in rows {
        let _ = writeln!(err, "  {id:<32} {n}");
    }
}

fn cmd_filter(redact: &RedactOpts, threads: Option<usize>, stats: bool) -> ExitCode {
    let r = match build(redact) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Raw stdout: our own buffering decides when bytes leave (after every read); std's
    // `Stdout` is line-buffered, which would add a copy and a syscall per line. A `File` on a
    // duplicate of the descriptor writes (and `writev`s) it directly.
    let stdout = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("logveil: stdout: {e}");
            return ExitCode::from(1);
        }
    };
    let result = filter::run(&r, &mut io::stdin().lock(), stdout, threads);
    match result {
        Ok(s) => {
            if stats {
                print_stats(&r, &s.counts, Some(s.lines));
                if s.inband_refused > 0 {
                    eprintln!(
                        "logveil: {} ::add-mask:: values shorter than {} bytes (or past {} values or {} MiB of values) were masked on their line but not registered",
                        s.inband_refused,
                        logveil_patterns::MIN_KNOWN_LEN,
                        logveil_patterns::MAX_INBAND_VALUES,
                        logveil_patterns::MAX_KNOWN_BYTES >> 20
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(FilterError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logveil: {e}");
            ExitCode::from(1)
        }
    }
}

fn cmd_run(redact: &RedactOpts, argv: &[String], stats: bool) -> ExitCode {
    let r = match build(redact) {
        Ok(r) => r,
        Err(c) => return c,
    };
    match run_cmd::run(&r, argv) {
        Ok(o) => {
            if stats {
                print_stats(&r, &o.counts, None);
            }
            if let Some(e) = &o.stream_error {
                if !matches!(e, FilterError::Write(w) if w.kind() == io::ErrorKind::BrokenPipe) {
                    eprintln!("logveil: {e}");
                }
            }
            use std::os::unix::process::ExitStatusExt;
            let code = match (o.status.code(), o.status.signal()) {
                (Some(c), _) => c,
                (None, Some(sig)) => 128 + sig,
                _ => 1,
            };
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Err(e) => {
            eprintln!("logveil: {e}");
            ExitCode::from(127)
        }
    }
}

fn cmd_rules_list(redact: &RedactOpts) -> ExitCode {
    let r = match build(redact) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let active: Vec<String> = r.rules().into_iter().map(|i| i.id).collect();
    let mut b = RedactorBuilder::new();
    for p in &redact.rules {
        if let Ok(t) = std::fs::read_to_string(p) {
            let _ = b.add_rules_toml(&p.display().to_string(), &t);
        }
    }
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<28} {:<7} {:<10} {:<4} description",
        "id", "cat", "pack", "on"
    );
    for pack in b.packs() {
        for rule in &pack.rules {
            let on = if active.contains(&rule.id) {
                "yes"
            } else {
                "no"
            };
            if writeln!(
                out,
                "{:<28} {:<7} {:<10} {:<4} {}",
                rule.id,
                rule.category.as_str(),
                pack.name,
                on,
                rule.description
            )
            .is_err()
            {
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

fn cmd_rules_test(file: &PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("logveil: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let name = file.display().to_string();
    let pack = match parse_pack(&name, &name, &text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    let failures = match logveil_patterns::check_examples(&pack.rules) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    let n: usize = pack
        .rules
        .iter()
        .map(|r| r.examples_match.len() + r.examples_no_match.len())
        .sum();
    for f in &failures {
        println!("FAIL {f}");
    }
    println!(
        "{} rules, {} examples: {} passed, {} failed",
        pack.rules.len(),
        n,
        n - failures.len(),
        failures.len()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
