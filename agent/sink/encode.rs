//! Request bodies of the forwarding sinks: pure functions from a sealed batch to bytes, tested
//! without sockets.
//!
//! The seal travels with the data, so an export of the SIEM's events can be checked too:
//! - `http`: the body is NDJSON; its first line is the seal,
//!   `{"logveil_seal":{"seq":7,"hash":"…","header":{…},"signature":"<base64>"}}`, then the
//!   batch's events exactly as sealed (the canonical payload, so its hash can be recomputed).
//! - `splunk_hec`: one HEC event per log event, with `logveil_seq` and `logveil_batch` (the
//!   batch hash) as indexed fields, then one event of sourcetype `logveil:seal` carrying the
//!   header and signature.

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::seal::{self, Sealed};

/// One event of a batch payload (see `event.rs`).
#[derive(Deserialize, Debug)]
struct Event<'a> {
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    host: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    job: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
    offset: u64,
    #[serde(borrow)]
    line: std::borrow::Cow<'a, str>,
    #[serde(default)]
    lossy: bool,
}

/// HEC metadata from the sink's configuration.
#[derive(Debug, Clone, Default)]
pub struct HecMeta {
    /// `index`; the token's default index when not set.
    pub index: Option<String>,
    /// `source`; the event's file path when not set.
    pub source: Option<String>,
    /// `sourcetype`.
    pub sourcetype: String,
}

/// `{"seq":…,"hash":"…","header":<the signed header line, byte for byte>,"signature":"…"}`:
/// the header is embedded as signed (canonical JSON), so a verifier can cut it out and check
/// the signature without re-encoding anything.
fn seal_json(batch: &Sealed, p: &seal::Parsed<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "{{\"seq\":{},\"hash\":\"{}\",\"header\":",
            batch.seq, batch.hash
        )
        .as_bytes(),
    );
    out.extend_from_slice(p.header_line);
    out.extend_from_slice(b",\"signature\":\"");
    out.extend_from_slice(STANDARD.encode(&p.signature).as_bytes());
    out.extend_from_slice(b"\"}");
}

/// The `http` sink's body: the seal line, then the payload as sealed.
pub fn ndjson_body(batch: &Sealed) -> Result<Vec<u8>, String> {
    let p = seal::parse(&batch.bytes)?;
    let mut out = b"{\"logveil_seal\":".to_vec();
    seal_json(batch, &p, &mut out);
    out.extend_from_slice(b"}\n");
    out.extend_from_slice(p.payload);
    Ok(out)
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp as the agent writes them
/// (`2024-05-01T10:00:02.613Z`).
pub fn epoch_seconds(ts: &str) -> Option<f64> {
    let b = ts.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !ts.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac: f64 = match ts.get(19..ts.len() - 1)? {
        "" => 0.0,
        f if f.starts_with('.') => format!("0{f}").parse().ok()?,
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

/// The `splunk_hec` body for `/services/collector/event`: concatenated HEC event objects.
pub fn hec_body(batch: &Sealed, meta: &HecMeta) -> Result<Vec<u8>, String> {
    let p = seal::parse(&batch.bytes)?;
    let mut out = Vec::with_capacity(p.payload.len() * 2);
    let mut host = String::new();
    let mut last_time = 0.0;
    for (i, line) in p.payload.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let ev: Event<'_> = serde_json::from_slice(line)
            .map_err(|e| format!("batch {} event {}: {e}", batch.seq, i + 1))?;
        let time = epoch_seconds(&ev.ts).unwrap_or(0.0);
        last_time = time;
        host.clear();
        host.push_str(&ev.host);
        let mut fields = Map::new();
        fields.insert("logveil_seq".into(), json!(batch.seq));
        fields.insert("logveil_batch".into(), json!(batch.hash));
        fields.insert("offset".into(), json!(ev.offset));
        if let Some(job) = &ev.job {
            fields.insert("job".into(), json!(job));
        }
        if ev.lossy {
            fields.insert("lossy".into(), json!(true));
        }
        let mut obj = Map::new();
        obj.insert("time".into(), json!(time));
        obj.insert("host".into(), json!(ev.host));
        obj.insert(
            "source".into(),
            json!(meta.source.as_deref().unwrap_or(&ev.source)),
        );
        obj.insert("sourcetype".into(), json!(meta.sourcetype));
        if let Some(i) = &meta.index {
            obj.insert("index".into(), json!(i));
        }
        obj.insert("event".into(), json!(ev.line));
        obj.insert("fields".into(), Value::Object(fields));
        serde_json::to_writer(&mut out, &obj).expect("json serializes");
        out.push(b'\n');
    }
    let mut seal_ev = Map::new();
    seal_ev.insert("time".into(), json!(last_time));
    seal_ev.insert(
        "host".into(),
        json!(if host.is_empty() {
            &p.header.host
        } else {
            &host
        }),
    );
    seal_ev.insert("source".into(), json!("logveil"));
    seal_ev.insert("sourcetype".into(), json!("logveil:seal"));
    if let Some(i) = &meta.index {
        seal_ev.insert("index".into(), json!(i));
    }
    seal_ev.insert(
        "fields".into(),
        json!({"logveil_seq": batch.seq, "logveil_batch": batch.hash}),
    );
    // `event` last and written by hand, so the signed header stays byte for byte.
    let mut ev = serde_json::to_vec(&Value::Object(seal_ev)).expect("json serializes");
    ev.pop();
    out.extend_from_slice(&ev);
    out.extend_from_slice(b",\"event\":");
    seal_json(batch, &p, &mut out);
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// Gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::fast());
    enc.write_all(data).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, SealKey};
    use crate::seal::{seal, Content, GENESIS_HASH};

    fn batch() -> Sealed {
        let key = SealKey::from_pkcs8(&generate().unwrap()).unwrap();
        let payload = concat!(
            "{\"ts\":\"2024-05-01T10:00:02.613Z\",\"host\":\"r7\",\"job\":\"4711\",\"source\":\"/b/job.log\",\"offset\":0,\"line\":\"token [REDACTED:github-pat]\"}\n",
            "{\"ts\":\"2024-05-01T10:00:02.613Z\",\"host\":\"r7\",\"source\":\"/b/job.log\",\"offset\":28,\"line\":\"done \\\"ok\\\"\",\"lossy\":true}\n",
        );
        seal(
            &key,
            3,
            GENESIS_HASH,
            "r7",
            &Content {
                payload: payload.as_bytes().to_vec(),
                count: 2,
                first_ts: "2024-05-01T10:00:02.613Z".into(),
                last_ts: "2024-05-01T10:00:02.613Z".into(),
                masks: Default::default(),
            },
        )
    }

    #[test]
    fn epoch_seconds_of_agent_timestamps() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00.000Z"), Some(0.0));
        assert_eq!(
            epoch_seconds("2024-05-01T10:00:02.613Z"),
            Some(1_714_557_602.613)
        );
        assert_eq!(epoch_seconds("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(epoch_seconds("yesterday"), None);
    }

    #[test]
    fn ndjson_body_is_seal_line_then_payload() {
        let b = batch();
        let body = ndjson_body(&b).unwrap();
        let p = seal::parse(&b.bytes).unwrap();
        let nl = body.iter().position(|&c| c == b'\n').unwrap();
        let first: Value = serde_json::from_slice(&body[..nl]).unwrap();
        assert_eq!(first["logveil_seal"]["seq"], 3);
        assert_eq!(first["logveil_seal"]["hash"], b.hash.as_str());
        assert_eq!(
            STANDARD
                .decode(first["logveil_seal"]["signature"].as_str().unwrap())
                .unwrap(),
            p.signature
        );
        assert_eq!(&body[nl + 1..], p.payload);
        // The signed header is embedded byte for byte.
        let line = std::str::from_utf8(&body[..nl]).unwrap();
        let header = line
            .split_once("\"header\":")
            .unwrap()
            .1
            .split_once(",\"signature\":\"")
            .unwrap()
            .0;
        assert_eq!(header.as_bytes(), p.header_line);
    }

    #[test]
    fn hec_body_has_one_event_per_line_and_a_seal_event() {
        let b = batch();
        let meta = HecMeta {
            index: Some("ci".into()),
            source: None,
            sourcetype: "logveil".into(),
        };
        let body = hec_body(&b, &meta).unwrap();
        let evs: Vec<Value> = serde_json::Deserializer::from_slice(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0]["event"], "token [REDACTED:github-pat]");
        assert_eq!(evs[0]["time"], 1_714_557_602.613);
        assert_eq!(evs[0]["host"], "r7");
        assert_eq!(evs[0]["source"], "/b/job.log");
        assert_eq!(evs[0]["sourcetype"], "logveil");
        assert_eq!(evs[0]["index"], "ci");
        assert_eq!(evs[0]["fields"]["logveil_seq"], 3);
        assert_eq!(evs[0]["fields"]["logveil_batch"], b.hash.as_str());
        assert_eq!(evs[0]["fields"]["job"], "4711");
        assert_eq!(evs[1]["fields"]["offset"], 28);
        assert_eq!(evs[1]["fields"]["lossy"], true);
        assert_eq!(evs[1]["event"], "done \"ok\"");
        assert_eq!(evs[2]["sourcetype"], "logveil:seal");
        assert_eq!(evs[2]["event"]["header"]["seq"], 3);
        // A fixed source overrides the file path; no index means the token's default.
        let meta = HecMeta {
            index: None,
            source: Some("ci-logs".into()),
            sourcetype: "x".into(),
        };
        let body = String::from_utf8(hec_body(&b, &meta).unwrap()).unwrap();
        assert!(body.contains("\"source\":\"ci-logs\""));
        assert!(!body.contains("\"index\""));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let data = b"{\"a\":1}\n".repeat(100);
        let z = gzip(&data);
        assert!(z.len() < data.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
