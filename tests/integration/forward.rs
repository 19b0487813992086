//! Forwarding to a SIEM: the real agent against an in-test HTTPS receiver that speaks Splunk
//! HEC status codes, gunzips bodies and injects faults (down, 503 + Retry-After, 400 for one
//! batch, a CA the agent does not trust).

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::receiver::{pki, read_request, server_config, tls_server, Pki};
use crate::util::*;

// Elasticsearch `_bulk` and HEC indexer acknowledgement; a child module, so it shares this
// receiver and set-up.
#[path = "elastic.rs"]
mod elastic;

const TOKEN: &str = "hec-token-0123456789";
const SECRET: &str = "AKIAQ3EGRT5YJX7WZL2M";

/// What the receiver does and saw.
#[derive(Default)]
struct Recv {
    /// Until then, connections are dropped at once (the SIEM is down).
    down_until: Option<Instant>,
    /// This many requests get 503 with `Retry-After: 1`.
    busy: u32,
    /// A body containing this is refused with 400.
    reject: Option<String>,
    /// Accepted HEC events.
    events: Vec<Value>,
    /// (when, status) of every request.
    log: Vec<(Instant, u16)>,
    /// Accepted bodies (gunzipped) and their request headers.
    bodies: Vec<(String, String)>,
    /// `Retry-After` of the 503s as an HTTP date this many seconds ahead (default: `1`).
    retry_after_date: Option<u64>,
    /// `_bulk`: the expected `Authorization` value.
    es_auth: Option<String>,
    /// `_bulk`: this many items that would be created get 429 instead.
    item_busy: u32,
    /// `_bulk`: a document whose message holds this is refused with 400.
    item_reject: Option<String>,
    /// `_bulk`: the index, by `_id`.
    docs: std::collections::BTreeMap<String, Value>,
    /// `_bulk`: (action, status) of every item answered.
    items: Vec<(String, u16)>,
    /// HEC: answer with an `ackId` (needs `X-Splunk-Request-Channel`).
    hec_ack: bool,
    /// HEC acks: answer every ack poll `false` while set.
    acks_held: bool,
    /// HEC acks: then answer this many polls `false`.
    ack_false: u32,
    /// HEC acks: the next `ackId`.
    next_ack: u64,
    /// HEC acks: bodies of the ack polls and their request headers.
    ack_polls: Vec<(String, String)>,
}

fn respond(r: &mut Recv, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let token_ok = headers
        .lines()
        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Splunk {TOKEN}")));
    let gz = headers
        .lines()
        .any(|l| l.eq_ignore_ascii_case("content-encoding: gzip"));
    let mut data = Vec::new();
    if gz {
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut data)
            .unwrap();
    } else {
        data = body.to_vec();
    }
    let text = String::from_utf8_lossy(&data).into_owned();
    let path = headers
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("");
    if path.starts_with("/_bulk") {
        let (status, msg) = elastic::bulk(r, headers, &text);
        r.log.push((Instant::now(), status));
        return (status, msg);
    }
    if path == "/services/collector/ack" {
        let (status, msg) = elastic::hec_ack_poll(r, headers, &text);
        r.log.push((Instant::now(), status));
        return (status, msg);
    }
    let channel = headers.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("x-splunk-request-channel:")
    });
    let mut ack_msg = String::new();
    let (status, msg) = if !token_ok {
        (401, r#"{"text":"Invalid token","code":4}"#)
    } else if r.busy > 0 {
        r.busy -= 1;
        (503, r#"{"text":"Server is busy","code":9}"#)
    } else if r.reject.as_deref().is_some_and(|m| text.contains(m)) {
        (400, r#"{"text":"Invalid data format","code":6}"#)
    } else if r.hec_ack && !channel {
        (400, r#"{"text":"Data channel is missing","code":10}"#)
    } else {
        for ev in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
            r.events.push(ev.unwrap());
        }
        r.bodies.push((headers.to_string(), text.clone()));
        if r.hec_ack {
            ack_msg = format!(r#"{{"text":"Success","code":0,"ackId":{}}}"#, r.next_ack);
            r.next_ack += 1;
        }
        (200, r#"{"text":"Success","code":0}"#)
    };
    r.log.push((Instant::now(), status));
    if !ack_msg.is_empty() {
        return (status, ack_msg.into_bytes());
    }
    (status, msg.as_bytes().to_vec())
}

async fn serve_conn<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    state: Arc<Mutex<Recv>>,
) {
    let mut buf = Vec::new();
    while let Some((headers, body)) = read_request(&mut s, &mut buf).await {
        let (status, msg, retry_after) = {
            let mut st = state.lock().unwrap();
            let (status, msg) = respond(&mut st, &headers, &body);
            (status, msg, st.retry_after_date)
        };
        let extra = if status == 503 {
            let v = retry_after.map_or("1".to_string(), |s| {
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(s))
            });
            format!("Retry-After: {v}\r\n")
        } else {
            String::new()
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            msg.len()
        );
        if s.write_all(head.as_bytes()).await.is_err() || s.write_all(&msg).await.is_err() {
            return;
        }
    }
}

/// Starts the receiver on a free port; returns the port. It runs until the test process ends.
fn receiver(pki: &Pki, state: Arc<Mutex<Recv>>) -> u16 {
    let down = {
        let state = state.clone();
        move || {
            state
                .lock()
                .unwrap()
                .down_until
                .is_some_and(|t| Instant::now() < t)
        }
    };
    tls_server(server_config(pki, false), down, move |tls| {
        serve_conn(tls, state.clone())
    })
}

/// An agent directory whose agents have the HEC token and the `http` sink's authorization
/// in their environment.
fn setup(tag: &str) -> Setup {
    Setup::new(tag)
        .env("HEC_TOKEN", TOKEN)
        .env("HTTP_AUTH", &format!("Splunk {TOKEN}"))
}

fn config(s: &Setup, port: u16, ca: &Path) {
    config_with(s, &format!(
        "type = \"splunk_hec\"\nname = \"hec\"\nurl = \"https://localhost:{port}\"\ntoken = \"env:HEC_TOKEN\"\nindex = \"ci\"\nca_file = {ca:?}\n"
    ));
}

fn config_with(s: &Setup, sink: &str) {
    config_spool(s, sink, "");
}

fn config_spool(s: &Setup, sink: &str, spool: &str) {
    s.write_config(
        "",
        "max_events = 40\nmax_age = \"200ms\"\n",
        &format!("drain_timeout = \"1s\"\n{spool}\n"),
        &format!("{sink}retry_initial = \"50ms\"\nretry_max = \"400ms\"\ntimeout = \"5s\"\n"),
    );
}

fn dead_letters(s: &Setup) -> Vec<PathBuf> {
    let dir = s.p("state/dead-letter/hec");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes `n` lines (every 7th with a secret, line `poison` with a marker); returns the
/// offsets of all lines and of the poisoned one.
fn write_lines(path: &Path, n: usize, poison: Option<usize>) -> (BTreeSet<u64>, Option<u64>) {
    let mut text = String::new();
    let mut offsets = BTreeSet::new();
    let mut poisoned = None;
    for i in 0..n {
        offsets.insert(text.len() as u64);
        if Some(i) == poison {
            poisoned = Some(text.len() as u64);
            text.push_str("line POISON-PILL here\n");
        } else if i % 7 == 0 {
            text.push_str(&format!("line {i} export AWS_ACCESS_KEY_ID={SECRET}\n"));
        } else {
            text.push_str(&format!("line {i} compiling crate number {i}\n"));
        }
    }
    fs::write(path, text).unwrap();
    (offsets, poisoned)
}

fn received_offsets(state: &Mutex<Recv>) -> BTreeSet<u64> {
    state
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| e["sourcetype"] == "logveil")
        .map(|e| e["fields"]["offset"].as_u64().unwrap())
        .collect()
}

/// Offsets of the events in a dead-lettered batch file.
fn batch_offsets(path: &Path) -> BTreeSet<u64> {
    let bytes = fs::read(path).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    text.lines()
        .skip(2)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn hec_down_busy_and_one_rejected_batch_lose_nothing() {
    let pki = pki("fwd");
    // The SIEM is down for the first 30 s (connections dropped), as in the issue.
    let state = Arc::new(Mutex::new(Recv {
        down_until: Some(Instant::now() + Duration::from_secs(30)),
        busy: 2,
        reject: Some("POISON-PILL".into()),
        ..Recv::default()
    }));
    let port = receiver(&pki, state.clone());
    let mut s = setup("fwd-hec");
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    config(&s, port, &ca);
    let (offsets, poisoned) = write_lines(&s.p("logs/job.log"), 400, Some(123));
    let poisoned = poisoned.unwrap();
    let agent = s.start();

    wait_for("every line delivered or dead-lettered", 75, || {
        let got = received_offsets(&state);
        let dead: BTreeSet<u64> = dead_letters(&s)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "lvb"))
            .flat_map(|p| batch_offsets(p))
            .collect();
        offsets.iter().all(|o| got.contains(o) || dead.contains(o))
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");

    // The rejected batch is in the dead-letter directory with its reason, and nowhere else.
    let dead = dead_letters(&s);
    let batches: Vec<&PathBuf> = dead
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "lvb"))
        .collect();
    assert_eq!(batches.len(), 1, "{dead:?}\n{log}");
    assert!(batch_offsets(batches[0]).contains(&poisoned));
    let reason = fs::read_to_string(format!("{}.reason.json", batches[0].display())).unwrap();
    assert!(reason.contains("400"), "{reason}");
    assert!(!received_offsets(&state).contains(&poisoned));

    let st = state.lock().unwrap();
    // Faults happened as planned: 503s, each followed by a pause of Retry-After (1s).
    let statuses: Vec<u16> = st.log.iter().map(|l| l.1).collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 503).count(),
        2,
        "{statuses:?}"
    );
    assert!(statuses.contains(&400), "{statuses:?}");
    for w in st.log.windows(2) {
        if w[0].1 == 503 {
            assert!(
                w[1].0 - w[0].0 >= Duration::from_millis(900),
                "Retry-After not honoured: {:?}",
                w[1].0 - w[0].0
            );
        }
    }
    assert!(log.contains("delivery failed; will retry"), "{log}");
    // HEC events carry what a SIEM search needs, and never the planted secret.
    let ev = st
        .events
        .iter()
        .find(|e| e["sourcetype"] == "logveil")
        .unwrap();
    assert_eq!(ev["index"], "ci");
    assert!(ev["time"].as_f64().unwrap() > 1.6e9);
    assert!(ev["fields"]["logveil_seq"].as_u64().unwrap() >= 1);
    assert_eq!(ev["fields"]["logveil_batch"].as_str().unwrap().len(), 64);
    let seals = st
        .events
        .iter()
        .filter(|e| e["sourcetype"] == "logveil:seal")
        .count();
    assert!(seals >= 2, "one seal event per delivered batch");
    let all = serde_json::to_string(&st.events).unwrap();
    assert!(!all.contains(SECRET));
    assert!(all.contains("[REDACTED:"), "masked lines arrive masked");
    for p in &dead {
        assert!(!fs::read_to_string(p).unwrap().contains(SECRET));
    }
    assert!(!log.contains(SECRET));
}

#[test]
fn untrusted_ca_is_refused_and_the_spool_delivers_after_restart() {
    let pki = pki("fwd");
    let other = crate::receiver::pki("other");
    let state = Arc::new(Mutex::new(Recv::default()));
    let port = receiver(&pki, state.clone());
    let mut s = setup("fwd-ca");
    let wrong = s.dir.write("wrong-ca.pem", other.ca_pem.as_bytes());
    config(&s, port, &wrong);
    let (offsets, _) = write_lines(&s.p("logs/job.log"), 100, None);
    let agent = s.start();
    wait_for("a refused TLS handshake", 15, || {
        agent.log().contains("delivery failed")
    });
    // Lines are in the spool (checkpoints advanced), none reached the receiver.
    wait_for("the spool to hold the lines", 15, || {
        fs::read_to_string(s.p("state/state.json")).is_ok_and(|t| t.contains("job.log"))
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("certificate") || log.contains("UnknownIssuer"),
        "{log}"
    );
    assert!(state.lock().unwrap().log.is_empty());
    assert!(
        log.contains("did not catch up within drain_timeout"),
        "{log}"
    );

    // With the right CA, the spooled batches are delivered without re-reading the file.
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    config(&s, port, &ca);
    let agent = s.start();
    wait_for("the spooled lines", 15, || {
        received_offsets(&state) == offsets
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("spool replayed"), "{log}");
}

#[test]
fn http_ndjson_bodies_carry_the_seal_and_verify() {
    let pki = pki("fwd");
    let state = Arc::new(Mutex::new(Recv {
        busy: 1,
        ..Recv::default()
    }));
    let port = receiver(&pki, state.clone());
    let mut s = setup("fwd-http");
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    config_with(&s, &format!(
        "type = \"http\"\nurl = \"https://127.0.0.1:{port}/ingest?team=ci\"\nserver_name = \"localhost\"\nca_file = {ca:?}\nheaders = {{ \"X-Team\" = \"ci\" }}\nauthorization = \"env:HTTP_AUTH\"\ngzip = false\n"
    ));
    let (offsets, _) = write_lines(&s.p("logs/job.log"), 300, None);
    let agent = s.start();
    let received = || -> BTreeSet<u64> {
        state
            .lock()
            .unwrap()
            .events
            .iter()
            .filter_map(|e| e["offset"].as_u64())
            .collect()
    };
    wait_for("every line", 20, || received() == offsets);
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");

    // Rebuild batch files from the bodies: the seal line holds the signed header byte for
    // byte and the signature; the rest is the payload as sealed. `verify` checks the chain.
    let out = s.p("received");
    fs::create_dir_all(&out).unwrap();
    let st = state.lock().unwrap();
    for (headers, body) in &st.bodies {
        assert!(
            headers.contains("POST /ingest?team=ci HTTP/1.1"),
            "{headers}"
        );
        assert!(
            headers.to_ascii_lowercase().contains("x-team: ci"),
            "{headers}"
        );
        assert!(!headers.to_ascii_lowercase().contains("content-encoding"));
        let (seal, payload) = body.split_once('\n').unwrap();
        let v: Value = serde_json::from_str(seal).unwrap();
        let seq = v["logveil_seal"]["seq"].as_u64().unwrap();
        let header = seal
            .split_once("\"header\":")
            .unwrap()
            .1
            .split_once(",\"signature\":\"")
            .unwrap()
            .0;
        let sig = v["logveil_seal"]["signature"].as_str().unwrap();
        fs::write(
            out.join(format!("batch-{seq:020}.lvb")),
            format!("{header}\n{sig}\n{payload}"),
        )
        .unwrap();
        assert!(!body.contains(SECRET));
    }
    let v = logveil(&[
        "verify",
        out.to_str().unwrap(),
        "--pubkey",
        s.p("keys/seal.pub").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(v.status.success(), "{}{}", text(&v.stdout), text(&v.stderr));
}

fn spool_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".lvs"))
                .map(|e| e.metadata().unwrap().len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn full_spool_pauses_sources_and_kill_9_mid_delivery_loses_nothing() {
    let pki = pki("fwd");
    let state = Arc::new(Mutex::new(Recv {
        down_until: Some(Instant::now() + Duration::from_secs(3600)),
        ..Recv::default()
    }));
    let port = receiver(&pki, state.clone());
    let mut s = setup("fwd-full");
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    config_spool(&s,
        &format!(
            "type = \"splunk_hec\"\nname = \"hec\"\nurl = \"https://localhost:{port}\"\ntoken = \"env:HEC_TOKEN\"\nca_file = {ca:?}\n"
        ),
        "max_bytes = \"1MiB\"\nsegment_bytes = \"64KiB\"\n",
    );
    // About 1.5 MB of sealed batches: more than the spool may hold.
    let (offsets, _) = write_lines(&s.p("logs/job.log"), 8_000, None);
    let agent = s.start();
    wait_for("the spool to fill", 20, || {
        agent.log().contains("spool is full")
    });
    std::thread::sleep(Duration::from_millis(300));
    // Paused, not dropping: the spool stays within its cap (plus at most one batch).
    let held = spool_bytes(&s.p("state/spool"));
    assert!(held <= (1 << 20) + (64 << 10), "{held}");
    // The SIEM comes back: the sources resume; kill -9 while batches are being delivered.
    state.lock().unwrap().down_until = None;
    wait_for("sources to resume", 20, || {
        agent.log().contains("spool has room again")
    });
    wait_for("some deliveries", 20, || {
        state.lock().unwrap().events.len() > 500
    });
    let mut agent = agent;
    agent.kill_9();
    assert!(!agent.log().contains(SECRET));

    let agent = s.start();
    wait_for("every line after the restart", 25, || {
        let got = received_offsets(&state);
        offsets.iter().all(|o| got.contains(o))
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("spool replayed"), "{log}");
    let all = serde_json::to_string(&state.lock().unwrap().events).unwrap();
    assert!(!all.contains(SECRET));
}

#[test]
fn check_config_reads_the_token_reference_without_echoing_values() {
    let s = setup("fwd-check");
    let ca = s.dir.write("ca.pem", pki("fwd").ca_pem.as_bytes());
    config(&s, 4443, &ca);
    let cfg = s.p("config.toml");
    let out = logveil(&["check-config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("env:HEC_TOKEN"),
        "{}",
        text(&out.stderr)
    );
    let out = logveil(&["check-config", cfg.to_str().unwrap()])
        .env("HEC_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 sink(s)"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains(TOKEN) && !text(&out.stderr).contains(TOKEN));
}

#[test]
fn wrong_server_name_is_refused() {
    let pki = pki("fwd");
    let state = Arc::new(Mutex::new(Recv::default()));
    let port = receiver(&pki, state.clone());
    let mut s = setup("fwd-name");
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    config_with(&s, &format!(
        "type = \"splunk_hec\"\nurl = \"https://localhost:{port}\"\nserver_name = \"siem.example.org\"\ntoken = \"env:HEC_TOKEN\"\nca_file = {ca:?}\n"
    ));
    write_lines(&s.p("logs/job.log"), 20, None);
    let agent = s.start();
    wait_for("a refused TLS handshake", 15, || {
        agent.log().contains("delivery failed")
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("certificate"), "{log}");
    assert!(state.lock().unwrap().log.is_empty());
}
