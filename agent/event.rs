//! One event per redacted line, and its canonical NDJSON form.
//!
//! ```json
//! {"ts":"2024-05-01T10:00:02.613Z","host":"runner-7","job":"4711","source":"/builds/job.log","offset":1234,"line":"export AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-key]"}
//! ```
//!
//! - `ts`: when the agent read the line (UTC, milliseconds); lines read together share it.
//! - `host`: the agent's host name (or `host` from the config).
//! - `job`: the CI job id when the agent runs with a runner's variables (`CI_JOB_ID`,
//!   `GITHUB_RUN_ID`, ...); absent otherwise.
//! - `source`: the file path when the line was read (or `-` for stdin); `offset`: byte offset
//!   of the line's first byte in that file (or stream).
//! - `line`: the redacted line without its `\n`. A line that is not valid UTF-8 is stored with
//!   each invalid sequence replaced by U+FFFD and `"lossy":true` added: JSON strings cannot
//!   carry raw bytes, and the replacement only ever removes bytes, so it cannot reveal
//!   anything the engine masked.
//!
//! Canonical form: keys in the order above, no whitespace, serde_json's escaping (`"`, `\`,
//! control characters), one event per line, each ending in `\n`. The payload hash in a batch
//! header is over exactly these bytes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Runner variables that carry a job id, first found wins.
pub const JOB_ID_VARS: &[&str] = &[
    "CI_JOB_ID",              // GitLab
    "GITHUB_RUN_ID",          // GitHub Actions
    "BUILDKITE_JOB_ID",       // Buildkite
    "CIRCLE_WORKFLOW_JOB_ID", // CircleCI
    "SYSTEM_JOBID",           // Azure Pipelines
    "TRAVIS_JOB_ID",          // Travis CI
    "BUILD_ID",               // Jenkins, Google Cloud Build
];

/// Who produced the events: host and CI job, fixed for the agent's lifetime.
#[derive(Clone, Debug)]
pub struct Origin {
    /// Host name.
    pub host: String,
    /// CI job id, when known.
    pub job: Option<String>,
}

impl Origin {
    /// From the machine and the environment; `host` overrides the machine's name.
    pub fn detect(host: Option<&str>) -> Origin {
        Origin {
            host: host.map_or_else(hostname, str::to_string),
            job: JOB_ID_VARS
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty())),
        }
    }
}

/// The machine's host name (`gethostname`), or `localhost`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success
    // when the name fits, and we look for the NUL within the buffer only.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => "localhost".into(),
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as RFC 3339 UTC with milliseconds, e.g. `2024-05-01T10:00:02.613Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Encodes events that share a timestamp, origin and source.
pub struct EventEncoder {
    prefix: Vec<u8>,
}

impl EventEncoder {
    /// Prepares the common prefix of the events.
    pub fn new(ts: &str, origin: &Origin, source: &str) -> EventEncoder {
        let mut prefix = Vec::with_capacity(128);
        prefix.extend_from_slice(b"{\"ts\":");
        json_str(ts, &mut prefix);
        prefix.extend_from_slice(b",\"host\":");
        json_str(&origin.host, &mut prefix);
        if let Some(job) = &origin.job {
            prefix.extend_from_slice(b",\"job\":");
            json_str(job, &mut prefix);
        }
        prefix.extend_from_slice(b",\"source\":");
        json_str(source, &mut prefix);
        prefix.extend_from_slice(b",\"offset\":");
        EventEncoder { prefix }
    }

    /// Appends one event (and its `\n`) to `out`.
    pub fn encode(&self, offset: u64, line: &[u8], out: &mut Vec<u8>) {
        match std::str::from_utf8(line) {
            Ok(s) => self.encode_text(offset, s, false, out),
            Err(_) => self.encode_text(offset, &String::from_utf8_lossy(line), true, out),
        }
    }

    /// Appends one event whose line is already text (`lossy`: it was not valid UTF-8 when
    /// read): how `verify --export` rebuilds a sealed event from a SIEM's fields.
    pub fn encode_text(&self, offset: u64, line: &str, lossy: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(offset.to_string().as_bytes());
        out.extend_from_slice(b",\"line\":");
        json_str(line, out);
        out.extend_from_slice(if lossy { b",\"lossy\":true}\n" } else { b"}\n" });
    }
}

pub(crate) fn json_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_714_557_602_613);
        assert_eq!(rfc3339(t), "2024-05-01T10:00:02.613Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn events_are_canonical_json() {
        let o = Origin {
            host: "h".into(),
            job: Some("42".into()),
        };
        let e = EventEncoder::new("T", &o, "/a \"b\".log");
        let mut out = Vec::new();
        e.encode(7, b"tab\there \x1b", &mut out);
        e.encode(9, b"bad \xff byte", &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"ts":"T","host":"h","job":"42","source":"/a \"b\".log","offset":7,"line":"tab\there \u001b"}"#
        );
        assert_eq!(
            lines[1],
            "{\"ts\":\"T\",\"host\":\"h\",\"job\":\"42\",\"source\":\"/a \\\"b\\\".log\",\"offset\":9,\"line\":\"bad \u{FFFD} byte\",\"lossy\":true}"
        );
        for l in lines {
            let _: serde_json::Value = serde_json::from_str(l).unwrap();
        }
    }
}
