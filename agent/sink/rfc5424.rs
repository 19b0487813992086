//! The `syslog` sink's messages: RFC 5424 with RFC 6587/5425 octet-counting framing, and the
//! way back from what a syslog receiver wrote to sealed batch files (`logveil verify --syslog`).
//! Pure functions, tested without sockets.
//!
//! One message per log event, then one seal message per batch:
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME logveil - line [logveil@32473 seq="7" batch="<hash>" i="0" ts="…" host="…" job="…" source="…" offset="1234"] <the redacted line>
//! <PRI>1 TIMESTAMP HOSTNAME logveil - seal [logveil-seal@32473 seq="7" batch="<hash>" count="40"] {"seq":7,"hash":"…","header":{…},"signature":"…"}
//! ```
//!
//! Why the structured data repeats the header's timestamp and host: receivers reformat
//! TIMESTAMP and HOSTNAME at will, and the batch can only be rebuilt (and its SHA-256
//! checked) from the exact values. SD values are written JSON-string-escaped (identical for
//! ordinary text), then SD-escaped (`"`, `\`, `]`), so any value survives byte for byte.
//! Receivers also rewrite control characters in MSG (rsyslog turns ESC into `#033`, CR into
//! a space, NUL into `#000`), so a line holding any control character also carries a `line`
//! parameter with its exact, escaped text; MSG stays the line as it is, for people and
//! searches. `i` is the event's index in its batch: a batch resent after a reconnect arrives
//! twice, and the rebuild keeps one copy of each index.
//!
//! 32473 is the private enterprise number RFC 5612 sets aside for examples: logveil has no
//! IANA number of its own, and the SD-ID only has to be unique among what a receiver sees.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Deserialize;

use crate::seal::{self, Sealed};

/// SD-ID of an event message.
pub const SD_EVENT: &str = "logveil@32473";
/// SD-ID of a seal message.
pub const SD_SEAL: &str = "logveil-seal@32473";
/// APP-NAME of every message.
pub const APP_NAME: &str = "logveil";

/// Facility names (RFC 5424 table 1, in code order; `security`/`console`/`solaris-cron` are
/// the common names of 13, 14 and 15).
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];
/// Severity names (RFC 5424 table 2, in code order).
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The code of a facility name (`local0`, `user`, ...).
pub fn facility_code(name: &str) -> Option<u8> {
    FACILITIES.iter().position(|f| *f == name).map(|i| i as u8)
}

/// The code of a severity name (`info`, `warning`, ...).
pub fn severity_code(name: &str) -> Option<u8> {
    SEVERITIES.iter().position(|s| *s == name).map(|i| i as u8)
}

/// Names accepted for `facility`, for error messages.
pub fn facility_names() -> String {
    FACILITIES.join(", ")
}

/// Names accepted for `severity`, for error messages.
pub fn severity_names() -> String {
    SEVERITIES.join(", ")
}

/// One event of a batch payload (see `event.rs`).
#[derive(Deserialize, Debug)]
struct Event {
    ts: String,
    host: String,
    #[serde(default)]
    job: Option<String>,
    source: String,
    offset: u64,
    line: String,
    #[serde(default)]
    lossy: bool,
}

/// A valid RFC 5424 TIMESTAMP as the agent writes them (UTC, at most 6 fraction digits),
/// else the NILVALUE.
fn timestamp(ts: &str) -> &str {
    let frac_ok = match ts.get(19..ts.len().saturating_sub(1)) {
        Some("") => true,
        Some(f) => {
            f.len() >= 2
                && f.len() <= 7
                && f.starts_with('.')
                && f[1..].bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    };
    if frac_ok && crate::sink::encode::epoch_seconds(ts).is_some() {
        ts
    } else {
        "-"
    }
}

/// HOSTNAME: printable US-ASCII without spaces, at most 255 bytes; anything else becomes `_`
/// (the exact host is in the structured data).
fn hostname(host: &str, out: &mut Vec<u8>) {
    if host.is_empty() {
        out.push(b'-');
        return;
    }
    for b in host.bytes().take(255) {
        out.push(if (33..=126).contains(&b) { b } else { b'_' });
    }
}

/// ` name="value"` with the value JSON-string-escaped, then SD-escaped (`"`, `\`, `]` get a
/// backslash). Written in place, without a String per value: the JSON string's quotes are the
/// parameter's, and the few values that need SD escapes are widened from the back.
fn param(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    let open = out.len();
    crate::event::json_str(value, out);
    let close = out.len() - 1;
    let sd_special = |b: u8| matches!(b, b'"' | b'\\' | b']');
    let extra = out[open + 1..close]
        .iter()
        .filter(|&&b| sd_special(b))
        .count();
    if extra == 0 {
        return;
    }
    out.resize(out.len() + extra, 0);
    // Each byte moves once, right to left; `w` stays at or ahead of what is still unread.
    let mut w = out.len() - 1;
    out[w] = b'"';
    for r in (open + 1..close).rev() {
        let b = out[r];
        w -= 1;
        out[w] = b;
        if sd_special(b) {
            w -= 1;
            out[w] = b'\\';
        }
    }
    debug_assert_eq!(w, open + 1);
}

/// ` name="digits"`.
fn param_num(out: &mut Vec<u8>, name: &str, value: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, " {name}=\"{value}\"");
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID ` (PROCID is the NILVALUE). `pri` is the
/// batch's `<PRI>1 `, formatted once per batch.
fn header(out: &mut Vec<u8>, pri: &[u8], ts: &str, host: &str, msgid: &str) {
    out.extend_from_slice(pri);
    out.extend_from_slice(timestamp(ts).as_bytes());
    out.push(b' ');
    hostname(host, out);
    out.push(b' ');
    out.extend_from_slice(APP_NAME.as_bytes());
    out.extend_from_slice(b" - ");
    out.extend_from_slice(msgid.as_bytes());
    out.push(b' ');
}

/// Appends `msg` as one octet-counted frame: `LEN SP MSG`.
fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{} ", msg.len());
    out.extend_from_slice(msg);
}

/// The whole batch as octet-counted frames: one message per event, then the seal message.
/// `pri` is `facility * 8 + severity`.
pub fn batch_frames(batch: &Sealed, pri: u8) -> Result<Vec<u8>, String> {
    let p = seal::parse(&batch.bytes)?;
    let mut out = Vec::with_capacity(p.payload.len() * 2 + 1024);
    let mut msg = Vec::with_capacity(1024);
    let pri = format!("<{pri}>1 ");
    let pri = pri.as_bytes();
    // The same for every event of the batch: built once, not per line.
    let mut batch_sd = Vec::with_capacity(128);
    batch_sd.push(b'[');
    batch_sd.extend_from_slice(SD_EVENT.as_bytes());
    param_num(&mut batch_sd, "seq", batch.seq);
    param(&mut batch_sd, "batch", &batch.hash);
    let mut count = 0u64;
    for line in p.payload.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let ev: Event = serde_json::from_slice(line)
            .map_err(|e| format!("batch {} event {}: {e}", batch.seq, count + 1))?;
        msg.clear();
        header(&mut msg, pri, &ev.ts, &ev.host, "line");
        msg.extend_from_slice(&batch_sd);
        param_num(&mut msg, "i", count);
        param(&mut msg, "ts", &ev.ts);
        param(&mut msg, "host", &ev.host);
        if let Some(job) = &ev.job {
            param(&mut msg, "job", job);
        }
        param(&mut msg, "source", &ev.source);
        param_num(&mut msg, "offset", ev.offset);
        if ev.lossy {
            msg.extend_from_slice(b" lossy=\"true\"");
        }
        if ev.line.chars().any(char::is_control) {
            param(&mut msg, "line", &ev.line);
        }
        msg.push(b']');
        if !ev.line.is_empty() {
            msg.push(b' ');
            msg.extend_from_slice(ev.line.as_bytes());
        }
        frame(&mut out, &msg);
        count += 1;
    }
    msg.clear();
    let ts = if p.header.last_ts.is_empty() {
        &p.header.sealed_at
    } else {
        &p.header.last_ts
    };
    header(&mut msg, pri, ts, &p.header.host, "seal");
    msg.extend_from_slice(b"[");
    msg.extend_from_slice(SD_SEAL.as_bytes());
    param_num(&mut msg, "seq", batch.seq);
    param(&mut msg, "batch", &batch.hash);
    param_num(&mut msg, "count", count);
    msg.extend_from_slice(b"] ");
    // The signed header byte for byte, as in the other sinks' seal events.
    crate::sink::encode::seal_json(batch, &p, &mut msg);
    frame(&mut out, &msg);
    Ok(out)
}

/// A parsed RFC 5424 message, as far as the rebuild needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// MSGID.
    pub msgid: &'a str,
    /// Structured data elements: SD-ID and its (unescaped) parameters, in order.
    pub sd: Vec<(&'a str, Vec<(&'a str, String)>)>,
    /// MSG (empty when absent).
    pub msg: &'a str,
}

/// Parses one RFC 5424 message, which may follow a prefix a receiver's template added.
pub fn parse_message(line: &str) -> Option<Parsed<'_>> {
    // Find `<PRI>1 `.
    let b = line.as_bytes();
    let mut start = None;
    for (i, _) in line.match_indices('<') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if (1..=3).contains(&digits) && line[i + 1 + digits..].starts_with(">1 ") {
            start = Some(i + 1 + digits + 3);
            break;
        }
    }
    let mut rest = &line[start?..];
    let mut fields = [""; 5];
    for f in &mut fields {
        let (v, r) = rest.split_once(' ')?;
        *f = v;
        rest = r;
    }
    let msgid = fields[4];
    let mut sd = Vec::new();
    if let Some(r) = rest.strip_prefix('-') {
        rest = r;
    } else {
        while let Some(r) = rest.strip_prefix('[') {
            let id_end = r.find([' ', ']'])?;
            let id = &r[..id_end];
            let mut r = &r[id_end..];
            let mut params = Vec::new();
            loop {
                if let Some(after) = r.strip_prefix(']') {
                    r = after;
                    break;
                }
                let after = r.strip_prefix(' ')?;
                let eq = after.find("=\"")?;
                let name = &after[..eq];
                let mut value = String::new();
                let mut chars = after[eq + 2..].char_indices();
                let end = loop {
                    let (i, c) = chars.next()?;
                    match c {
                        '\\' => {
                            let (_, n) = chars.next()?;
                            if !matches!(n, '"' | '\\' | ']') {
                                value.push('\\');
                            }
                            value.push(n);
                        }
                        '"' => break eq + 2 + i + 1,
                        c => value.push(c),
                    }
                };
                params.push((name, value));
                r = &after[end..];
            }
            sd.push((id, params));
            rest = r;
        }
    }
    let msg = match rest.strip_prefix(' ') {
        Some(m) => m,
        None if rest.is_empty() => "",
        None => return None,
    };
    Some(Parsed { msgid, sd, msg })
}

/// Why a batch could not be rebuilt from an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// Events or the seal message are not in the export.
    Incomplete(String),
    /// Messages that contradict each other or cannot be read.
    Malformed(String),
}

#[derive(Default)]
struct Partial {
    hash: String,
    seal: Option<(String, String)>,
    count: Option<u64>,
    events: BTreeMap<u64, Vec<u8>>,
    problem: Option<Gap>,
}

/// What an export held.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Batch files (header, signature, payload) by seq, or why one cannot be rebuilt.
    pub batches: BTreeMap<u64, Result<Vec<u8>, Gap>>,
    /// logveil messages seen more than once (resent after a reconnect).
    pub duplicates: u64,
    /// Lines that are not logveil messages.
    pub other_lines: u64,
}

fn json_unescape(v: &str) -> Option<String> {
    serde_json::from_str(&format!("\"{v}\"")).ok()
}

/// The canonical NDJSON event (see `event.rs`) from an event message.
fn event_line(params: &[(&str, String)], msg: &str) -> Result<Vec<u8>, String> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_str())
    };
    let text = |k: &str| -> Result<Option<String>, String> {
        get(k)
            .map(|v| json_unescape(v).ok_or(format!("parameter {k} is not valid")))
            .transpose()
    };
    let need = |k: &str| text(k)?.ok_or(format!("parameter {k} is missing"));
    let offset: u64 = get("offset")
        .and_then(|v| v.parse().ok())
        .ok_or("parameter offset is missing or not a number")?;
    let line = text("line")?.unwrap_or_else(|| msg.to_string());
    let mut out = Vec::with_capacity(msg.len() + 160);
    let s = |v: &str, out: &mut Vec<u8>| serde_json::to_writer(out, v).expect("json");
    out.extend_from_slice(b"{\"ts\":");
    s(&need("ts")?, &mut out);
    out.extend_from_slice(b",\"host\":");
    s(&need("host")?, &mut out);
    if let Some(job) = text("job")? {
        out.extend_from_slice(b",\"job\":");
        s(&job, &mut out);
    }
    out.extend_from_slice(b",\"source\":");
    s(&need("source")?, &mut out);
    out.extend_from_slice(format!(",\"offset\":{offset},\"line\":").as_bytes());
    s(&line, &mut out);
    if get("lossy") == Some("true") {
        out.extend_from_slice(b",\"lossy\":true");
    }
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// Rebuilds batch files from the lines a syslog receiver wrote (one message per line, as
/// with rsyslog's `%rawmsg%` or `RSYSLOG_SyslogProtocol23Format`). Holds the export's
/// logveil events in memory.
pub fn rebuild<'a>(lines: impl Iterator<Item = &'a str>) -> Rebuilt {
    let mut parts: BTreeMap<u64, Partial> = BTreeMap::new();
    let mut out = Rebuilt::default();
    for line in lines {
        let Some(m) = parse_message(line.trim_end_matches(['\n', '\r'])) else {
            out.other_lines += 1;
            continue;
        };
        let Some((id, params)) =
            m.sd.iter()
                .find(|(id, _)| *id == SD_EVENT || *id == SD_SEAL)
        else {
            out.other_lines += 1;
            continue;
        };
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        let Some(seq) = get("seq").and_then(|v| v.parse::<u64>().ok()) else {
            out.other_lines += 1;
            continue;
        };
        let hash = get("batch").unwrap_or_default();
        let p = parts.entry(seq).or_insert_with(|| Partial {
            hash: hash.to_string(),
            ..Partial::default()
        });
        if p.problem.is_some() {
            continue;
        }
        if p.hash != hash {
            p.problem = Some(Gap::Malformed(format!(
                "two different batches claim seq {seq} ({} and {hash})",
                p.hash
            )));
            continue;
        }
        if *id == SD_SEAL {
            let Some(count) = get("count").and_then(|v| v.parse::<u64>().ok()) else {
                p.problem = Some(Gap::Malformed("a seal message without count".into()));
                continue;
            };
            let Some((header, sig)) = m
                .msg
                .split_once("\"header\":")
                .and_then(|(_, r)| r.rsplit_once(",\"signature\":\""))
                .and_then(|(h, s)| Some((h, s.strip_suffix("\"}")?)))
            else {
                p.problem = Some(Gap::Malformed("a seal message that cannot be read".into()));
                continue;
            };
            let seal = (header.to_string(), sig.to_string());
            match &p.seal {
                Some(prev) if *prev != seal => {
                    p.problem = Some(Gap::Malformed(
                        "two different seal messages for one batch".into(),
                    ));
                }
                Some(_) => out.duplicates += 1,
                None => {
                    p.seal = Some(seal);
                    p.count = Some(count);
                }
            }
        } else {
            let Some(i) = get("i").and_then(|v| v.parse::<u64>().ok()) else {
                p.problem = Some(Gap::Malformed("an event message without i".into()));
                continue;
            };
            let ev = match event_line(params, m.msg) {
                Ok(ev) => ev,
                Err(e) => {
                    p.problem = Some(Gap::Malformed(format!("event {i}: {e}")));
                    continue;
                }
            };
            match p.events.get(&i) {
                Some(prev) if *prev != ev => {
                    p.problem = Some(Gap::Malformed(format!(
                        "event {i} arrived twice with different content"
                    )));
                }
                Some(_) => out.duplicates += 1,
                None => {
                    p.events.insert(i, ev);
                }
            }
        }
    }
    for (seq, p) in parts {
        let r = match (p.problem, p.seal, p.count) {
            (Some(g), _, _) => Err(g),
            (None, None, _) | (None, _, None) => Err(Gap::Incomplete(format!(
                "the seal message is not in the export ({} event(s) are)",
                p.events.len()
            ))),
            (None, Some((header, sig)), Some(count)) => {
                let missing: Vec<u64> = (0..count).filter(|i| !p.events.contains_key(i)).collect();
                let extra = p.events.keys().filter(|&&i| i >= count).count();
                if !missing.is_empty() {
                    let shown: Vec<String> =
                        missing.iter().take(10).map(|i| i.to_string()).collect();
                    Err(Gap::Incomplete(format!(
                        "{} of {count} events are not in the export (i = {}{})",
                        missing.len(),
                        shown.join(", "),
                        if missing.len() > 10 { ", ..." } else { "" }
                    )))
                } else if extra > 0 {
                    Err(Gap::Malformed(format!(
                        "{extra} event(s) beyond the sealed count {count}"
                    )))
                } else {
                    let mut bytes = header.into_bytes();
                    bytes.push(b'\n');
                    bytes.extend_from_slice(sig.as_bytes());
                    bytes.push(b'\n');
                    for ev in p.events.into_values() {
                        bytes.extend_from_slice(&ev);
                    }
                    Ok(bytes)
                }
            }
        };
        out.batches.insert(seq, r);
    }
    out
}

/// Splits octet-counted frames (for tests and diagnostics); `None` on a broken frame.
pub fn split_frames(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        let msg = data.get(sp + 1..sp + 1 + len)?;
        out.push(msg);
        data = &data[sp + 1 + len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventEncoder, Origin};
    use crate::keys::{generate, SealKey};
    use crate::seal::{seal, Content, GENESIS_HASH};

    fn batch(lines: &[&[u8]], job: Option<&str>) -> Sealed {
        batch_at("2024-05-01T10:00:02.613Z", "runner 7", lines, job)
    }

    /// A batch of `lines` read at `ts` on `host`, sealed as seq 3.
    fn batch_at(ts: &str, host: &str, lines: &[&[u8]], job: Option<&str>) -> Sealed {
        let key = SealKey::from_pkcs8(&generate().unwrap()).unwrap();
        let origin = Origin {
            host: host.into(),
            job: job.map(str::to_string),
        };
        let enc = EventEncoder::new(ts, &origin, "/b/a \"q\"]\\.log");
        let mut payload = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            enc.encode(i as u64 * 10, l, &mut payload);
        }
        seal(
            &key,
            3,
            GENESIS_HASH,
            host,
            &Content {
                payload,
                count: lines.len() as u64,
                first_ts: ts.into(),
                last_ts: ts.into(),
                masks: Default::default(),
            },
        )
    }

    const TRICKY: &[&[u8]] = &[
        b"plain [REDACTED:github-pat] line",
        b"",
        b"  leading and trailing spaces  ",
        b"tab\there \x1b[0;32mgreen\x1b[0m cr\rprogress nul\x00",
        b"quote \" backslash \\ bracket ] equals = \\u0041",
        "unicode \u{e9}\u{1F600}".as_bytes(),
        b"bad \xff byte",
    ];

    #[test]
    fn names_and_codes() {
        assert_eq!(facility_code("kern"), Some(0));
        assert_eq!(facility_code("local0"), Some(16));
        assert_eq!(facility_code("local7"), Some(23));
        assert_eq!(facility_code("local8"), None);
        assert_eq!(severity_code("emerg"), Some(0));
        assert_eq!(severity_code("info"), Some(6));
        assert_eq!(severity_code("debug"), Some(7));
        assert_eq!(severity_code("information"), None);
    }

    #[test]
    fn frames_are_octet_counted_rfc5424() {
        let b = batch(TRICKY, Some("4711"));
        let data = batch_frames(&b, 16 * 8 + 6).unwrap();
        let frames = split_frames(&data).unwrap();
        assert_eq!(frames.len(), TRICKY.len() + 1);
        let first = std::str::from_utf8(frames[0]).unwrap();
        assert_eq!(
            first,
            format!(
                r#"<134>1 2024-05-01T10:00:02.613Z runner_7 logveil - line [logveil@32473 seq="3" batch="{}" i="0" ts="2024-05-01T10:00:02.613Z" host="runner 7" job="4711" source="/b/a \\\"q\\\"\]\\\\.log" offset="0"] plain [REDACTED:github-pat] line"#,
                b.hash
            )
        );
        // An empty line has no MSG; a line with control characters carries them escaped.
        assert!(frames[1].ends_with(b"offset=\"10\"]"));
        let cc = std::str::from_utf8(frames[3]).unwrap();
        assert!(cc.contains(" line=\"tab\\\\there \\\\u001b[0;32mgreen\\\\u001b[0m cr\\\\rprogress nul\\\\u0000\"]"), "{cc}");
        assert!(cc.ends_with("] tab\there \x1b[0;32mgreen\x1b[0m cr\rprogress nul\x00"));
        assert!(std::str::from_utf8(frames[6])
            .unwrap()
            .contains(" lossy=\"true\"]"));
        let seal_msg = std::str::from_utf8(frames[7]).unwrap();
        assert!(seal_msg.starts_with("<134>1 2024-05-01T10:00:02.613Z runner_7 logveil - seal [logveil-seal@32473 seq=\"3\""), "{seal_msg}");
        assert!(seal_msg.contains(&format!("count=\"{}\"] {{\"seq\":3,", TRICKY.len())));
        // PRI follows facility and severity.
        let data = batch_frames(&b, 19 * 8 + 5).unwrap();
        assert!(data.starts_with(format!("{} <157>1 ", frames[0].len()).as_bytes()));
    }

    /// The frames of `messages`, the last one followed by the seal JSON of `b` (signed at
    /// seal time, so not a constant).
    fn expected_frames(b: &Sealed, messages: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, m) in messages.iter().enumerate() {
            let mut m = m.clone().into_bytes();
            if n == messages.len() - 1 {
                crate::sink::encode::seal_json(b, &seal::parse(&b.bytes).unwrap(), &mut m);
            }
            out.extend_from_slice(format!("{} ", m.len()).as_bytes());
            out.extend_from_slice(&m);
        }
        out
    }

    /// Every byte of a batch's frames: headers, every parameter and its escaping, `lossy`
    /// and `line`, MSG, the seal message and the octet counts.
    #[test]
    fn batch_frames_byte_for_byte() {
        let b = batch(TRICKY, Some("4711"));
        let h = &b.hash;
        let sd = |i: u32, offset: u32| {
            format!(
                r#"<134>1 2024-05-01T10:00:02.613Z runner_7 logveil - line [logveil@32473 seq="3" batch="{h}" i="{i}" ts="2024-05-01T10:00:02.613Z" host="runner 7" job="4711" source="/b/a \\\"q\\\"\]\\\\.log" offset="{offset}""#
            )
        };
        let messages = [
            format!(r#"{}] plain [REDACTED:github-pat] line"#, sd(0, 0)),
            format!(r#"{}]"#, sd(1, 10)),
            format!(r#"{}]   leading and trailing spaces  "#, sd(2, 20)),
            format!(
                "{} line=\"tab\\\\there \\\\u001b[0;32mgreen\\\\u001b[0m cr\\\\rprogress nul\\\\u0000\"] tab\there \x1b[0;32mgreen\x1b[0m cr\rprogress nul\x00",
                sd(3, 30)
            ),
            format!(
                r#"{}] quote " backslash \ bracket ] equals = \u0041"#,
                sd(4, 40)
            ),
            format!("{}] unicode \u{e9}\u{1F600}", sd(5, 50)),
            format!("{} lossy=\"true\"] bad \u{FFFD} byte", sd(6, 60)),
            format!(
                r#"<134>1 2024-05-01T10:00:02.613Z runner_7 logveil - seal [logveil-seal@32473 seq="3" batch="{h}" count="7"] "#
            ),
        ];
        let got = batch_frames(&b, 134).unwrap();
        let want = expected_frames(&b, &messages);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(got, want);

        // NILVALUE for a timestamp RFC 5424 does not allow and for an empty host; no job.
        let b = batch_at("yesterday", "", &[b"x"], None);
        let h = &b.hash;
        let messages = [
            format!(
                r#"<0>1 - - logveil - line [logveil@32473 seq="3" batch="{h}" i="0" ts="yesterday" host="" source="/b/a \\\"q\\\"\]\\\\.log" offset="0"] x"#
            ),
            format!(
                r#"<0>1 - - logveil - seal [logveil-seal@32473 seq="3" batch="{h}" count="1"] "#
            ),
        ];
        assert_eq!(batch_frames(&b, 0).unwrap(), expected_frames(&b, &messages));
    }

    #[test]
    fn params_are_json_then_sd_escaped() {
        for v in [
            "",
            "plain",
            "]",
            "\"",
            "\\",
            "]]\\\"x\"\\]]",
            "a\u{0}b\u{1b}[0m\r\n\t\u{7f}",
            "\u{e9}\u{1F600}]",
        ] {
            let json = serde_json::to_string(v).unwrap();
            let mut want = b" p=\"".to_vec();
            for &b in &json.as_bytes()[1..json.len() - 1] {
                if matches!(b, b'"' | b'\\' | b']') {
                    want.push(b'\\');
                }
                want.push(b);
            }
            want.push(b'"');
            // After other bytes, as in a message.
            let mut got = b"[x@1".to_vec();
            param(&mut got, "p", v);
            assert_eq!(&got[4..], &want[..], "{v:?}");
            let text = format!(
                "<1>1 - - - - - [x@1{}]",
                std::str::from_utf8(&want).unwrap()
            );
            let back = parse_message(&text).unwrap();
            assert_eq!(json_unescape(&back.sd[0].1[0].1).as_deref(), Some(v));
        }
    }

    #[test]
    fn messages_parse_back() {
        let p =
            parse_message("Nov 22 host <13>1 - - app - id [a@1 x=\"1\\\"\\]\\\\\"][b@2] the msg ")
                .unwrap();
        assert_eq!(p.msgid, "id");
        assert_eq!(p.sd.len(), 2);
        assert_eq!(p.sd[0], ("a@1", vec![("x", "1\"]\\".to_string())]));
        assert_eq!(p.msg, "the msg ");
        let p = parse_message("<13>1 - - - - - -").unwrap();
        assert!(p.sd.is_empty() && p.msg.is_empty());
        assert_eq!(parse_message("<13>1 - - - - - [a@1 x=\"1"), None);
        assert_eq!(parse_message("no syslog here"), None);
    }

    /// As a receiver that keeps the raw message writes it: one message per line.
    fn export(data: &[u8]) -> String {
        let mut s = String::new();
        for f in split_frames(data).unwrap() {
            s.push_str(std::str::from_utf8(f).unwrap());
            s.push('\n');
        }
        s
    }

    #[test]
    fn an_export_rebuilds_the_batch_byte_for_byte() {
        for job in [None, Some("4711")] {
            let b = batch(TRICKY, job);
            let data = batch_frames(&b, 134).unwrap();
            // Control characters rewritten in MSG (as rsyslog does), a resent copy, and
            // a line from someone else: the rebuild is still exact.
            let text = export(&data)
                .replace('\x1b', "#033")
                .replace('\r', " ")
                .replace('\0', "#000");
            let text = format!("<14>1 - other app - - - hello\n{text}{text}");
            let r = rebuild(text.lines());
            assert_eq!(r.other_lines, 1);
            assert_eq!(r.duplicates, TRICKY.len() as u64 + 1);
            assert_eq!(r.batches.len(), 1);
            assert_eq!(r.batches[&3].as_ref().unwrap(), &b.bytes);
        }
    }

    #[test]
    fn incomplete_and_conflicting_exports_are_named() {
        let b = batch(TRICKY, None);
        let text = export(&batch_frames(&b, 134).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        // An event lost.
        let r = rebuild(
            lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, l)| *l),
        );
        assert_eq!(
            r.batches[&3],
            Err(Gap::Incomplete(format!(
                "1 of {} events are not in the export (i = 2)",
                TRICKY.len()
            )))
        );
        // The seal lost.
        let r = rebuild(lines[..lines.len() - 1].iter().copied());
        assert!(matches!(&r.batches[&3], Err(Gap::Incomplete(m)) if m.contains("seal")));
        // One event changed in a resent copy.
        let changed = lines[0].replace("plain", "plane");
        let r = rebuild(lines.iter().copied().chain([changed.as_str()]));
        assert!(matches!(&r.batches[&3], Err(Gap::Malformed(m)) if m.contains("event 0")));
        // A changed event alone is not caught here; its batch's hash is (by verify).
        let r = rebuild(lines.iter().skip(1).copied().chain([changed.as_str()]));
        assert_ne!(r.batches[&3].as_ref().unwrap(), &b.bytes);
    }

    #[test]
    fn timestamps_and_hostnames_are_valid_rfc5424() {
        assert_eq!(
            timestamp("2024-05-01T10:00:02.613Z"),
            "2024-05-01T10:00:02.613Z"
        );
        assert_eq!(timestamp("2024-05-01T10:00:02Z"), "2024-05-01T10:00:02Z");
        assert_eq!(timestamp("2024-05-01T10:00:02.1234567Z"), "-");
        assert_eq!(timestamp("yesterday"), "-");
        let mut h = Vec::new();
        hostname("", &mut h);
        hostname(" r\u{e9}", &mut h);
        assert_eq!(h, b"-_r__");
    }
}
