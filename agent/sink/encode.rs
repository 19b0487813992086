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
//! - `elasticsearch`: a `_bulk` body, one action line and one document per log event, then
//!   one seal document; see [`bulk_items`].

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
pub(crate) fn seal_json(batch: &Sealed, p: &seal::Parsed<'_>, out: &mut Vec<u8>) {
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

/// The `_bulk` action of an `elasticsearch` sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Fails with 409 when the id exists: with our deterministic ids that means "already
    /// delivered by an earlier attempt". The only action data streams accept.
    #[default]
    Create,
    /// Overwrites a document with the same id.
    Index,
}

impl BulkAction {
    fn as_str(self) -> &'static str {
        match self {
            BulkAction::Create => "create",
            BulkAction::Index => "index",
        }
    }
}

/// Where an `elasticsearch` sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsMeta {
    /// Index, alias or data stream.
    pub index: String,
    /// The bulk action.
    pub action: BulkAction,
}

/// One `_bulk` item: its action line and document, each ending in `\n`.
#[derive(Debug, Clone)]
pub struct BulkItem {
    /// The two NDJSON lines.
    pub lines: Vec<u8>,
    /// The event's position in its batch; `None` for the seal document.
    pub event: Option<u64>,
    /// The event's offset in its source.
    pub offset: Option<u64>,
}

/// The `_id` of event `i` of a batch: the batch hash makes it unique across batches and
/// agents, the position within the batch; a retry writes the same ids, so it cannot
/// duplicate a document.
pub fn bulk_id(hash: &str, event: Option<u64>) -> String {
    match event {
        Some(i) => format!("{hash}-{i}"),
        None => format!("{hash}-seal"),
    }
}

/// The `_bulk` items of a batch: one per event, then the seal document.
///
/// An event document holds ECS fields and `logveil.*`:
/// `{"@timestamp":ts,"message":line,"host":{"name":..},"log":{"file":{"path":source},"offset":n},
/// "logveil":{"seq":7,"batch":hash,"event":i[,"job":..][,"lossy":true]}}`, so the sealed
/// event can be rebuilt byte for byte (`logveil verify --export`). The seal document holds
/// `logveil.seal.header` (the signed header line, as a string) and `logveil.seal.signature`.
pub fn bulk_items(batch: &Sealed, meta: &EsMeta) -> Result<Vec<BulkItem>, String> {
    let p = seal::parse(&batch.bytes)?;
    let mut items = Vec::with_capacity(p.header.count as usize + 1);
    let action = |out: &mut Vec<u8>, event: Option<u64>| {
        let mut a = Map::new();
        a.insert(
            meta.action.as_str().into(),
            json!({"_index": meta.index, "_id": bulk_id(&batch.hash, event)}),
        );
        serde_json::to_writer(&mut *out, &a).expect("json serializes");
        out.push(b'\n');
    };
    let mut i = 0u64;
    for line in p.payload.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let ev: Event<'_> = serde_json::from_slice(line)
            .map_err(|e| format!("batch {} event {}: {e}", batch.seq, i + 1))?;
        let mut lv = Map::new();
        lv.insert("seq".into(), json!(batch.seq));
        lv.insert("batch".into(), json!(batch.hash));
        lv.insert("event".into(), json!(i));
        if let Some(job) = &ev.job {
            lv.insert("job".into(), json!(job));
        }
        if ev.lossy {
            lv.insert("lossy".into(), json!(true));
        }
        let doc = json!({
            "@timestamp": ev.ts,
            "message": ev.line,
            "host": {"name": ev.host},
            "log": {"file": {"path": ev.source}, "offset": ev.offset},
            "logveil": lv,
        });
        let mut lines = Vec::with_capacity(line.len() + 256);
        action(&mut lines, Some(i));
        serde_json::to_writer(&mut lines, &doc).expect("json serializes");
        lines.push(b'\n');
        items.push(BulkItem {
            lines,
            event: Some(i),
            offset: Some(ev.offset),
        });
        i += 1;
    }
    let header = std::str::from_utf8(p.header_line).map_err(|_| "header is not UTF-8")?;
    let doc = json!({
        "@timestamp": p.header.last_ts,
        "message": format!("logveil seal of batch {} ({} events)", batch.seq, p.header.count),
        "host": {"name": p.header.host},
        "logveil": {
            "seq": batch.seq,
            "batch": batch.hash,
            "seal": {"header": header, "signature": STANDARD.encode(&p.signature)},
        },
    });
    let mut lines = Vec::new();
    action(&mut lines, None);
    serde_json::to_writer(&mut lines, &doc).expect("json serializes");
    lines.push(b'\n');
    items.push(BulkItem {
        lines,
        event: None,
        offset: None,
    });
    Ok(items)
}

/// The outcome of one `_bulk` item, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    /// Its HTTP status.
    pub status: u16,
    /// `error.type: error.reason`, when it failed.
    pub error: Option<String>,
}

/// Parses a `_bulk` response (also one cut down by `filter_path`). `None` when `errors` is
/// false (every item went in); the per-item results otherwise. Fails when the response does
/// not answer exactly `sent` items.
pub fn parse_bulk_response(body: &[u8], sent: usize) -> Result<Option<Vec<ItemResult>>, String> {
    #[derive(Deserialize)]
    struct Resp {
        errors: bool,
        #[serde(default)]
        items: Vec<std::collections::HashMap<String, Item>>,
    }
    #[derive(Deserialize)]
    struct Item {
        status: u16,
        #[serde(default)]
        error: Option<Value>,
    }
    let r: Resp = serde_json::from_slice(body).map_err(|e| format!("bulk response: {e}"))?;
    if !r.errors {
        return Ok(None);
    }
    if r.items.len() != sent {
        return Err(format!(
            "bulk response: {} items for {sent} sent",
            r.items.len()
        ));
    }
    r.items
        .into_iter()
        .map(|m| {
            let it = m
                .into_values()
                .next()
                .ok_or("bulk response: an empty item")?;
            let error = it.error.map(|e| match (&e["type"], &e["reason"]) {
                (Value::String(t), Value::String(r)) => format!("{t}: {r}"),
                (Value::String(t), _) => t.clone(),
                _ => e.to_string(),
            });
            Ok(ItemResult {
                status: it.status,
                error,
            })
        })
        .collect::<Result<Vec<_>, &str>>()
        .map(Some)
        .map_err(str::to_string)
}

/// What to do with one `_bulk` item after its result.
#[derive(Debug, PartialEq, Eq)]
pub enum ItemVerdict {
    /// In the index.
    Done,
    /// Send again (429, 5xx).
    Retry,
    /// Permanent: dead-letter.
    DeadLetter,
}

/// How an item's status is handled: 409 on `create` means the deterministic id is taken,
/// i.e. an earlier attempt wrote it.
pub fn item_verdict(action: BulkAction, status: u16) -> ItemVerdict {
    match status {
        200..=299 => ItemVerdict::Done,
        409 if action == BulkAction::Create => ItemVerdict::Done,
        429 | 500..=599 => ItemVerdict::Retry,
        _ => ItemVerdict::DeadLetter,
    }
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
    fn bulk_items_are_action_and_document_pairs_then_the_seal() {
        let b = batch();
        let meta = EsMeta {
            index: "ci-logs".into(),
            action: BulkAction::Create,
        };
        let items = bulk_items(&b, &meta).unwrap();
        assert_eq!(items.len(), 3);
        let pair = |i: usize| -> (Value, Value) {
            let text = std::str::from_utf8(&items[i].lines).unwrap();
            assert!(text.ends_with('\n') && text.matches('\n').count() == 2);
            let (a, d) = text.split_once('\n').unwrap();
            (
                serde_json::from_str(a).unwrap(),
                serde_json::from_str(d).unwrap(),
            )
        };
        let (a, d) = pair(0);
        assert_eq!(a["create"]["_index"], "ci-logs");
        assert_eq!(a["create"]["_id"], format!("{}-0", b.hash));
        assert_eq!(d["@timestamp"], "2024-05-01T10:00:02.613Z");
        assert_eq!(d["message"], "token [REDACTED:github-pat]");
        assert_eq!(d["host"]["name"], "r7");
        assert_eq!(d["log"]["file"]["path"], "/b/job.log");
        assert_eq!(d["log"]["offset"], 0);
        assert_eq!(d["logveil"]["seq"], 3);
        assert_eq!(d["logveil"]["batch"], b.hash.as_str());
        assert_eq!(d["logveil"]["job"], "4711");
        assert_eq!(items[1].offset, Some(28));
        let (_, d) = pair(1);
        assert_eq!(d["logveil"]["lossy"], true);
        assert_eq!(d["logveil"]["event"], 1);
        assert_eq!(d["message"], "done \"ok\"");
        let (a, d) = pair(2);
        assert_eq!(items[2].event, None);
        assert_eq!(a["create"]["_id"], format!("{}-seal", b.hash));
        let p = seal::parse(&b.bytes).unwrap();
        assert_eq!(
            d["logveil"]["seal"]["header"].as_str().unwrap().as_bytes(),
            p.header_line
        );
        // Ids are the same every time the batch is encoded: retries are idempotent.
        let again = bulk_items(&b, &meta).unwrap();
        assert_eq!(again[1].lines, items[1].lines);
        let index = bulk_items(
            &b,
            &EsMeta {
                action: BulkAction::Index,
                ..meta
            },
        )
        .unwrap();
        assert!(std::str::from_utf8(&index[0].lines)
            .unwrap()
            .starts_with("{\"index\":"));
    }

    #[test]
    fn bulk_responses_and_item_verdicts() {
        assert_eq!(
            parse_bulk_response(br#"{"took":3,"errors":false,"items":[]}"#, 5),
            Ok(None)
        );
        let body = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},{"create":{"_id":"x","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [message]"}}}]}"#;
        let r = parse_bulk_response(body, 3).unwrap().unwrap();
        assert_eq!(r[0].status, 201);
        assert_eq!(r[0].error, None);
        assert_eq!(
            r[1].error.as_deref(),
            Some("es_rejected_execution_exception: queue full")
        );
        assert_eq!(r[2].status, 400);
        assert!(parse_bulk_response(body, 4)
            .unwrap_err()
            .contains("3 items for 4"));
        assert!(parse_bulk_response(b"<html>", 1).is_err());
        use BulkAction::*;
        assert_eq!(item_verdict(Create, 201), ItemVerdict::Done);
        assert_eq!(item_verdict(Index, 200), ItemVerdict::Done);
        assert_eq!(item_verdict(Create, 409), ItemVerdict::Done);
        assert_eq!(item_verdict(Index, 409), ItemVerdict::DeadLetter);
        assert_eq!(item_verdict(Create, 429), ItemVerdict::Retry);
        assert_eq!(item_verdict(Create, 503), ItemVerdict::Retry);
        assert_eq!(item_verdict(Create, 400), ItemVerdict::DeadLetter);
        assert_eq!(item_verdict(Create, 403), ItemVerdict::DeadLetter);
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
