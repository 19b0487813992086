//! `logveil run -- CMD ARGS...`: runs a command with its stdout and stderr redacted
//! separately (each its own stream, so a key block on stderr cannot swallow stdout lines),
//! and exits with the command's exit code.

use std::io;
use std::process::{Command, ExitStatus, Stdio};

use logveil_patterns::{Counts, Redactor};

use crate::filter::{self, FilterError, FilterSummary};

/// Why the command could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Spawning failed (not found, not executable...).
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// Waiting for the child failed.
    #[error("waiting for {program:?}: {source}")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
}

/// Outcome of a run: the child's status and what was masked on both streams.
pub struct RunOutcome {
    /// The child's exit status.
    pub status: ExitStatus,
    /// Masks on stdout and stderr together.
    pub counts: Counts,
    /// A read or write error on one of the streams, if any (first one).
    pub stream_error: Option<FilterError>,
}

/// Redacts one of the child's pipes. If our side of the output breaks, the child's output is
/// still drained (and dropped, never emitted unredacted) so the child cannot block on a full
/// pipe.
fn pump<R: io::Read + std::os::fd::AsRawFd, W: io::Write>(
    redactor: &Redactor,
    input: &mut R,
    output: W,
) -> Result<FilterSummary, FilterError> {
    let r = filter::run(redactor, input, output, 1);
    if let Err(FilterError::Write(_)) = &r {
        let _ = io::copy(input, &mut io::sink());
    }
    r
}

/// Runs `argv`, redacting its output into our stdout and stderr.
pub fn run(redactor: &Redactor, argv: &[String]) -> Result<RunOutcome, RunError> {
    let program = argv[0].clone();
    let mut child = Command::new(&program)
        .args(&argv[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: program.clone(),
            source,
        })?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let (r1, r2) = std::thread::scope(|s| {
        let h = s.spawn(|| pump(redactor, &mut err, io::stderr().lock()));
        let a = pump(redactor, &mut out, io::stdout().lock());
        (a, h.join().unwrap_or_else(|_| Ok(FilterSummary::default())))
    });
    let status = child
        .wait()
        .map_err(|source| RunError::Wait { program, source })?;
    let mut counts = Counts::default();
    let mut stream_error = None;
    for r in [r1, r2] {
        match r {
            Ok(s) => counts.add(&s.counts),
            Err(e) => {
                stream_error.get_or_insert(e);
            }
        }
    }
    Ok(RunOutcome {
        status,
        counts,
        stream_error,
    })
}
