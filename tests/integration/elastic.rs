//! Elasticsearch `_bulk` (per-item results: 429 items retried alone, a 400 item
//! dead-lettered, `verify --export` on what the index holds) and Splunk HEC indexer
//! acknowledgement (the spool is acknowledged only once Splunk says indexed). The receiver and
//! set-up are the parent module's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::*;

const ES_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";

/// Answers a `_bulk` request as Elasticsearch does: one result per item, in order; `create`
/// of an existing `_id` is a 409 version conflict.
pub(super) fn bulk(r: &mut Recv, headers: &str, text: &str) -> (u16, Vec<u8>) {
    let auth_ok = r.es_auth.as_ref().is_none_or(|a| {
        headers
            .lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("authorization: {a}")))
    });
    if !auth_ok {
        return (
            401,
            br#"{"error":{"type":"security_exception","reason":"unable to authenticate"},"status":401}"#.to_vec(),
        );
    }
    if r.busy > 0 {
        r.busy -= 1;
        return (
            503,
            br#"{"error":{"type":"unavailable_shards_exception"},"status":503}"#.to_vec(),
        );
    }
    r.bodies.push((headers.to_string(), text.to_string()));
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let mut items = Vec::new();
    let mut errors = false;
    while let Some(action) = lines.next() {
        let action: Value = serde_json::from_str(action).unwrap();
        let doc: Value = serde_json::from_str(lines.next().expect("a document")).unwrap();
        let (kind, meta) = action.as_object().unwrap().iter().next().unwrap();
        let id = meta["_id"].as_str().unwrap().to_string();
        let poisoned = r
            .item_reject
            .as_deref()
            .is_some_and(|m| doc["message"].as_str().is_some_and(|s| s.contains(m)));
        let (status, error) = if poisoned {
            (
                400,
                json!({"type":"mapper_parsing_exception","reason":"failed to parse field [message] of type [long]"}),
            )
        } else if kind == "create" && r.docs.contains_key(&id) {
            (
                409,
                json!({"type":"version_conflict_engine_exception","reason":"document already exists"}),
            )
        } else if r.item_busy > 0 {
            r.item_busy -= 1;
            (
                429,
                json!({"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}),
            )
        } else {
            r.docs.insert(id.clone(), doc);
            (201, Value::Null)
        };
        errors |= status >= 300;
        r.items.push((kind.clone(), status));
        let mut item = json!({"_index": meta["_index"], "_id": id, "status": status});
        if !error.is_null() {
            item["error"] = error;
        }
        let mut m = Map::new();
        m.insert(kind.clone(), item);
        items.push(Value::Object(m));
    }
    let body = json!({"took": 1, "errors": errors, "items": items});
    (200, body.to_string().into_bytes())
}

/// Answers `/services/collector/ack`: `false` for every id while acks are held, then for
/// `ack_false` more polls, then `true` for every id it handed out.
pub(super) fn hec_ack_poll(r: &mut Recv, headers: &str, text: &str) -> (u16, Vec<u8>) {
    let token_ok = headers
        .lines()
        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Splunk {TOKEN}")));
    let channel = headers.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("x-splunk-request-channel:")
    });
    if !token_ok {
        return (401, br#"{"text":"Invalid token","code":4}"#.to_vec());
    }
    if !channel {
        return (
            400,
            br#"{"text":"Data channel is missing","code":10}"#.to_vec(),
        );
    }
    r.ack_polls.push((headers.to_string(), text.to_string()));
    let ids: Vec<u64> = serde_json::from_str::<Value>(text).unwrap()["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let indexed = if r.acks_held {
        false
    } else if r.ack_false > 0 {
        r.ack_false -= 1;
        false
    } else {
        true
    };
    let acks: Map<String, Value> = ids
        .iter()
        .map(|id| (id.to_string(), Value::Bool(indexed && *id < r.next_ack)))
        .collect();
    (200, json!({ "acks": acks }).to_string().into_bytes())
}

fn header_value<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Offsets of the documents in the index, each with how many documents hold it.
fn indexed_offsets(r: &Recv) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for d in r.docs.values() {
        if let Some(o) = d["log"]["offset"].as_u64() {
            *m.entry(o).or_insert(0) += 1;
        }
    }
    m
}

/// Offsets of the dead-lettered items named in the reason files of `dir`.
fn dead_item_offsets(dir: &Path) -> BTreeSet<u64> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".reason.json"))
                .flat_map(|e| {
                    let v: Value =
                        serde_json::from_str(&fs::read_to_string(e.path()).unwrap()).unwrap();
                    v["items"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|i| i["offset"].as_u64())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn verify_export(s: &Setup, export: &Path, dead_letter: Option<&Path>) -> std::process::Output {
    let mut args = vec![
        "verify".to_string(),
        "--export".into(),
        export.display().to_string(),
        "--pubkey".into(),
        s.p("keys/seal.pub").display().to_string(),
    ];
    if let Some(d) = dead_letter {
        args.extend(["--dead-letter".into(), d.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    logveil(&args).output().unwrap()
}

#[test]
fn bulk_retries_only_refused_items_dead_letters_a_400_item_and_verifies() {
    let pki = pki("es");
    let state = Arc::new(Mutex::new(Recv {
        es_auth: Some(format!("ApiKey {ES_KEY}")),
        // One whole-request 503 whose Retry-After is an HTTP date.
        busy: 1,
        retry_after_date: Some(2),
        item_busy: 7,
        item_reject: Some("POISON-PILL".into()),
        ..Recv::default()
    }));
    let port = receiver(&pki, state.clone());
    let mut s = setup("fwd-es");
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    s.dir.write("es.key", format!("{ES_KEY}\n").as_bytes());
    let mport = free_port();
    config_spool(&s,
        &format!(
            "type = \"elasticsearch\"\nname = \"es\"\nurl = \"https://localhost:{port}\"\nindex = \"ci-logs\"\napi_key = \"file:es.key\"\nca_file = {ca:?}\n"
        ),
        &metrics_table(mport, None),
    );
    let (offsets, poisoned) = write_lines(&s.p("logs/job.log"), 300, Some(123));
    let poisoned = poisoned.unwrap();
    let dead_dir = s.p("state/dead-letter/es");
    let agent = s.start();
    wait_for("every line indexed or dead-lettered", 25, || {
        let got = indexed_offsets(&state.lock().unwrap());
        let dead = dead_item_offsets(&dead_dir);
        offsets
            .iter()
            .all(|o| got.contains_key(o) || dead.contains(o))
    });
    // Lines delivered are the lines in the index: all but the dead-lettered one.
    wait_for("lines delivered to add up", 10, || {
        metric(mport, r#"logveil_sink_lines_delivered_total{sink="es"}"#) == Some(299.0)
    });
    assert_eq!(metric(mport, "logveil_lines_in_total"), Some(300.0));
    assert_eq!(
        metric(mport, r#"logveil_sink_dead_lettered_total{sink="es"}"#),
        Some(1.0)
    );
    // The whole-request 503 and the 429 items: retried attempts.
    assert!(metric(mport, r#"logveil_sink_retries_total{sink="es"}"#) >= Some(2.0));
    assert!(metric(mport, r#"logveil_sink_bytes_sent_total{sink="es"}"#) > Some(0.0));
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");

    let st = state.lock().unwrap();
    // Exactly once in the index: one document per line, the refused one excepted.
    let got = indexed_offsets(&st);
    for o in &offsets {
        if *o == poisoned {
            assert!(!got.contains_key(o));
        } else {
            assert_eq!(got.get(o), Some(&1), "offset {o}");
        }
    }
    // The 429 items were sent again alone: no item that went in was sent again (no 409),
    // and some request carried only refused items.
    let statuses: Vec<u16> = st.items.iter().map(|i| i.1).collect();
    assert_eq!(statuses.iter().filter(|&&c| c == 429).count(), 7);
    assert_eq!(statuses.iter().filter(|&&c| c == 400).count(), 1);
    assert!(!statuses.contains(&409), "{statuses:?}");
    assert!(st.items.iter().all(|i| i.0 == "create"));
    let sizes: Vec<usize> = st
        .bodies
        .iter()
        .map(|(_, b)| b.lines().filter(|l| !l.is_empty()).count() / 2)
        .collect();
    assert!(sizes.iter().any(|&n| n <= 7), "{sizes:?}");
    assert!(log.contains("items refused for now"), "{log}");
    // The whole-request 503 was followed by a pause of its Retry-After date (2 s ahead,
    // whole seconds: at least 1 s), longer than retry_max (400 ms) would allow.
    let i = st.log.iter().position(|l| l.1 == 503).expect("a 503");
    let gap = st.log[i + 1].0 - st.log[i].0;
    assert!(
        gap >= Duration::from_millis(900),
        "Retry-After date not honoured: {gap:?}"
    );
    // Requests: gzip NDJSON with the API key, to _bulk with filter_path.
    for (h, _) in &st.bodies {
        assert!(h.starts_with("POST /_bulk?filter_path="), "{h}");
        assert_eq!(header_value(h, "content-encoding"), Some("gzip"));
        assert_eq!(
            header_value(h, "content-type"),
            Some("application/x-ndjson")
        );
    }
    // Documents: ECS fields and the seal; never the planted secret.
    let doc = st.docs.values().find(|d| d["log"]["offset"] == 0).unwrap();
    assert!(doc["@timestamp"].as_str().unwrap().ends_with('Z'));
    let message = doc["message"].as_str().unwrap();
    assert!(
        message.contains("line 0 export AWS_ACCESS_KEY_ID=[REDACTED:"),
        "{message}"
    );
    assert!(doc["host"]["name"].is_string());
    assert!(doc["log"]["file"]["path"]
        .as_str()
        .unwrap()
        .ends_with("job.log"));
    assert_eq!(doc["logveil"]["batch"].as_str().unwrap().len(), 64);
    let seals = st
        .docs
        .values()
        .filter(|d| d["logveil"]["seal"].is_object())
        .count();
    assert!(seals >= 2, "one seal document per batch");
    let all = serde_json::to_string(&st.docs).unwrap();
    assert!(!all.contains(SECRET));
    assert!(!log.contains(SECRET) && !log.contains(ES_KEY));

    // The refused item is in the dead-letter directory: its sealed batch and the reason.
    let dead: Vec<PathBuf> = fs::read_dir(&dead_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reason = dead
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".reason.json"))
        .unwrap();
    let reason: Value = serde_json::from_str(&fs::read_to_string(reason).unwrap()).unwrap();
    let items = reason["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{reason}");
    assert_eq!(items[0]["offset"], poisoned);
    assert_eq!(items[0]["status"], 400);
    assert!(items[0]["error"]
        .as_str()
        .unwrap()
        .contains("mapper_parsing_exception"));
    assert!(reason["reason"].as_str().unwrap().contains("1 of "));
    for p in &dead {
        assert!(!fs::read_to_string(p).unwrap().contains(SECRET));
    }

    // An export of the index (search hits) verifies against the chain once the refused
    // event is taken from the dead-letter directory; without it, the gap is named.
    let mut export = String::new();
    for (id, d) in &st.docs {
        export.push_str(&json!({"_index": "ci-logs", "_id": id, "_source": d}).to_string());
        export.push('\n');
    }
    let file = s.dir.write("export.ndjson", export.as_bytes());
    let out = verify_export(&s, &file, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("not in the export"),
        "{}",
        text(&out.stdout)
    );
    let out = verify_export(&s, &file, Some(&dead_dir));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("note:"), "{}", text(&out.stdout));
    // A changed document is caught.
    let tampered = export.replacen("compiling crate number", "compiling crate numbr", 1);
    let file = s.dir.write("tampered.ndjson", tampered.as_bytes());
    let out = verify_export(&s, &file, Some(&dead_dir));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("modified"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bulk_with_basic_auth_and_index_action() {
    let pki = pki("es");
    let state = Arc::new(Mutex::new(Recv {
        es_auth: Some("Basic bG9ndmVpbDpzM2NyM3QtcHc=".into()), // logveil:s3cr3t-pw
        ..Recv::default()
    }));
    let port = receiver(&pki, state.clone());
    let mut s = setup("fwd-es-basic");
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    s.dir.write("es.pw", b"s3cr3t-pw\n");
    config_with(&s, &format!(
        "type = \"elasticsearch\"\nurl = \"https://localhost:{port}/\"\nindex = \"logs-ci-default\"\naction = \"index\"\nusername = \"logveil\"\npassword = \"file:es.pw\"\ngzip = false\nca_file = {ca:?}\n"
    ));
    let (offsets, _) = write_lines(&s.p("logs/job.log"), 50, None);
    let agent = s.start();
    wait_for("every line", 20, || {
        indexed_offsets(&state.lock().unwrap())
            .keys()
            .copied()
            .collect::<BTreeSet<_>>()
            == offsets
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    let st = state.lock().unwrap();
    assert!(st.items.iter().all(|i| i.0 == "index" && i.1 == 201));
    assert!(st
        .bodies
        .iter()
        .all(|(h, _)| header_value(h, "content-encoding").is_none()));
    assert!(st.bodies[0].1.contains("\"_index\":\"logs-ci-default\""));
    assert!(!log.contains("s3cr3t-pw"));
}

/// `acked` of sink `hec` in the spool's acks.json (0 when there is none).
fn spool_acked(s: &Setup) -> u64 {
    fs::read_to_string(s.p("state/spool/acks.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["acked"]["hec"].as_u64())
        .unwrap_or(0)
}

/// Events received per batch seq.
fn events_per_seq(state: &Mutex<Recv>) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for e in &state.lock().unwrap().events {
        if e["sourcetype"] == "logveil" {
            *m.entry(e["fields"]["logveil_seq"].as_u64().unwrap())
                .or_insert(0) += 1;
        }
    }
    m
}

/// Whether every event of batch `seq` was received at least twice.
fn sent_twice(state: &Mutex<Recv>, seq: u64) -> bool {
    let mut per_offset: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &state.lock().unwrap().events {
        if e["sourcetype"] == "logveil" && e["fields"]["logveil_seq"] == seq {
            *per_offset
                .entry(e["fields"]["offset"].as_u64().unwrap())
                .or_insert(0) += 1;
        }
    }
    !per_offset.is_empty() && per_offset.values().all(|&n| n >= 2)
}

#[test]
fn hec_indexer_ack_holds_the_spool_until_indexed_and_resends() {
    let pki = pki("es");
    let state = Arc::new(Mutex::new(Recv {
        hec_ack: true,
        acks_held: true,
        ..Recv::default()
    }));
    let port = receiver(&pki, state.clone());
    let mut s = setup("fwd-hec-ack");
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    let mport = free_port();
    config_spool(&s,
        &format!(
            "type = \"splunk_hec\"\nname = \"hec\"\nurl = \"https://localhost:{port}\"\ntoken = \"env:HEC_TOKEN\"\nca_file = {ca:?}\nindexer_ack = true\nack_interval = \"100ms\"\nack_timeout = \"1s\"\nmax_pending_acks = 2\n"
        ),
        &metrics_table(mport, Some("1s")),
    );
    // 100 lines, at most 40 per batch: at least three batches.
    let (offsets, _) = write_lines(&s.p("logs/job.log"), 100, None);
    let agent = s.start();
    // Splunk never says "indexed": the two batches in flight are sent again after
    // ack_timeout; the third waits (bounded in flight); nothing is acknowledged in the spool.
    wait_for("batches 1 and 2 sent twice", 20, || {
        sent_twice(&state, 1) && sent_twice(&state, 2)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        events_per_seq(&state).keys().copied().collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(spool_acked(&s), 0);
    // Accepted with a 200 but never indexed: nothing delivered, and /health says the sink
    // is failing once the resends have gone on for longer than unhealthy_after.
    assert_eq!(
        metric(mport, r#"logveil_sink_lines_delivered_total{sink="hec"}"#),
        Some(0.0)
    );
    wait_for("/health to report the sink", 15, || {
        get(mport, "/health").is_some_and(|(code, b)| code == 503 && b.contains("sink hec"))
    });
    assert!(
        agent
            .log()
            .contains("no indexer acknowledgement within ack_timeout"),
        "{}",
        agent.log()
    );
    let channel = {
        let st = state.lock().unwrap();
        assert!(!st.ack_polls.is_empty());
        let (h, b) = &st.ack_polls[0];
        let v: Value = serde_json::from_str(b).unwrap();
        assert!(!v["acks"].as_array().unwrap().is_empty(), "{b}");
        let c = header_value(h, "x-splunk-request-channel")
            .unwrap()
            .to_string();
        assert_eq!(c.len(), 36);
        for (eh, _) in &st.bodies {
            assert_eq!(header_value(eh, "x-splunk-request-channel"), Some(&*c));
        }
        c
    };
    // kill -9 before Splunk acknowledged: the spool still holds everything.
    let mut agent = agent;
    agent.kill_9();
    assert_eq!(spool_acked(&s), 0);

    // Splunk indexes now, after three more "not yet" answers; the restarted agent (on a
    // channel of its own) sends every unacknowledged batch again and acknowledges them all.
    let before = events_per_seq(&state);
    let (bodies_before, polls_before) = {
        let mut st = state.lock().unwrap();
        st.acks_held = false;
        st.ack_false = 3;
        (st.bodies.len(), st.ack_polls.len())
    };
    let agent = s.start();
    wait_for("all batches acknowledged in the spool", 20, || {
        received_offsets(&state) == offsets
            && events_per_seq(&state)
                .keys()
                .max()
                .is_some_and(|&tip| spool_acked(&s) == tip)
    });
    // This run read no new lines (the first one spooled them all) and delivered every
    // line once Splunk said indexed; the sink is healthy again.
    wait_for("every line counted as delivered", 10, || {
        metric(mport, r#"logveil_sink_lines_delivered_total{sink="hec"}"#)
            == Some(offsets.len() as f64)
    });
    assert_eq!(get(mport, "/health").map(|r| r.0), Some(200));
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    let after = events_per_seq(&state);
    assert!(
        after[&1] > before[&1],
        "batch 1 sent again: {before:?} {after:?}"
    );
    assert!(after.len() >= 3, "{after:?}");
    let st = state.lock().unwrap();
    assert_eq!(st.ack_false, 0, "the 'not yet' answers were polled through");
    // Splunk counts ackIds per channel: the restarted agent sends its batches again and
    // polls for their ackIds on one channel of its own, not the killed agent's (whose last
    // requests may still be recorded after the counts above were taken).
    let mut second: BTreeSet<&str> = st.bodies[bodies_before..]
        .iter()
        .chain(&st.ack_polls[polls_before..])
        .map(|(h, _)| header_value(h, "x-splunk-request-channel").unwrap())
        .collect();
    second.remove(channel.as_str());
    assert_eq!(second.len(), 1, "first run {channel}, then {second:?}");
    let all = serde_json::to_string(&st.events).unwrap();
    assert!(!all.contains(SECRET));
}
