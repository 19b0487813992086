//! Forwarding under load and observation: the real agent, an `http` sink and an in-test HTTPS
//! receiver (hyper server on tokio-rustls) that can stall (503 for every request) or read
//! request bodies at a fixed rate. Covers `/metrics` and `/health`, spool encryption, a slow
//! receiver, and memory while a large input passes through a stalled sink.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::receiver::{pki, server_config, tls_server, Pki};
use crate::util::*;

/// Planted in the input; must never appear in what leaves the agent, its logs or metrics.
const SECRET: &str = "AKIAQ3EGRT5YJX7WZL2M";

/// What the receiver does and saw. Batches are counted once per seq (at-least-once delivery
/// may repeat one), by the `count` of the seal line that starts every NDJSON body.
#[derive(Default)]
struct Recv {
    /// Answer 503 (no Retry-After) to every request.
    stalled: AtomicBool,
    /// Read request bodies at this many bytes per second (0: as fast as they come).
    rate: AtomicU64,
    /// Requests answered 503 while stalled.
    refused: AtomicU64,
    /// Body bytes read (on the wire, before gunzip).
    wire_bytes: AtomicU64,
    /// A body held the planted secret.
    leaked: AtomicBool,
    /// A body whose event lines did not match its seal's count.
    malformed: AtomicBool,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    seqs: BTreeSet<u64>,
    lines: u64,
    /// Bodies taken: a batch sent again counts again.
    bodies: u64,
    /// The first body (gunzipped), kept for content checks.
    sample: Option<String>,
}

impl Recv {
    fn lines(&self) -> u64 {
        self.seen.lock().unwrap().lines
    }

    fn take(&self, data: &[u8]) {
        if memchr::memmem::find(data, SECRET.as_bytes()).is_some() {
            self.leaked.store(true, Ordering::Relaxed);
        }
        let nl = memchr::memchr(b'\n', data).unwrap_or(data.len());
        let seal: serde_json::Value = match serde_json::from_slice(&data[..nl]) {
            Ok(v) => v,
            Err(_) => {
                self.malformed.store(true, Ordering::Relaxed);
                return;
            }
        };
        let seq = seal["logveil_seal"]["seq"].as_u64();
        let count = seal["logveil_seal"]["header"]["count"].as_u64();
        let lines = memchr::memchr_iter(b'\n', data.get(nl + 1..).unwrap_or_default()).count();
        let (Some(seq), Some(count)) = (seq, count) else {
            self.malformed.store(true, Ordering::Relaxed);
            return;
        };
        if lines as u64 != count {
            self.malformed.store(true, Ordering::Relaxed);
        }
        let mut s = self.seen.lock().unwrap();
        s.bodies += 1;
        if s.seqs.insert(seq) {
            s.lines += count;
        }
        if s.sample.is_none() {
            s.sample = Some(String::from_utf8_lossy(data).into_owned());
        }
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    st: Arc<Recv>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    let gz = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let mut body = req.into_body();
    let mut wire = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(d) = frame.into_data() {
            wire.extend_from_slice(&d);
            st.wire_bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
            let rate = st.rate.load(Ordering::Relaxed);
            if rate > 0 {
                // Not reading fills the socket buffers: the agent can only send this fast.
                tokio::time::sleep(Duration::from_secs_f64(d.len() as f64 / rate as f64)).await;
            }
        }
    }
    let status = if st.stalled.load(Ordering::Relaxed) {
        st.refused.fetch_add(1, Ordering::Relaxed);
        503
    } else {
        let mut data = Vec::new();
        if gz {
            flate2::read::GzDecoder::new(&wire[..])
                .read_to_end(&mut data)
                .unwrap();
        } else {
            data = wire;
        }
        st.take(&data);
        200
    };
    Ok(hyper::Response::builder()
        .status(status)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap())
}

/// Starts the receiver on a free port; returns the port. It runs until the test process ends.
fn receiver(pki: &Pki, st: Arc<Recv>) -> u16 {
    tls_server(
        server_config(pki, false),
        || false,
        move |tls| {
            let st = st.clone();
            async move {
                let svc = hyper::service::service_fn(move |r| handle(r, st.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            }
        },
    )
}

/// A receiver (answering 503 to everything while `stalled`) and an agent directory holding
/// its CA: the receiver's state and port, the directory, the CA file.
fn receiver_and_setup(tag: &str, stalled: bool) -> (Arc<Recv>, u16, Setup, PathBuf) {
    let pki = pki(tag);
    let st = Arc::new(Recv::default());
    st.stalled.store(stalled, Ordering::Relaxed);
    let port = receiver(&pki, st.clone());
    // Large inputs: shutting down may take a while longer than elsewhere.
    let s = Setup::new(tag).stop_within(30);
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    (st, port, s, ca)
}

/// An `http` sink to the receiver; `extra` goes at the top level (before any table).
fn config(s: &Setup, port: u16, ca: &Path, gzip: bool, batch: &str, spool: &str, extra: &str) {
    s.write_config(
        &format!("{extra}\n"),
        &format!("max_age = \"200ms\"\n{batch}\n"),
        &format!("drain_timeout = \"1s\"\n{spool}\n"),
        &format!(
            r#"type = "http"
name = "siem"
url = "https://localhost:{port}/ingest"
ca_file = {ca:?}
gzip = {gzip}
retry_initial = "50ms"
retry_max = "400ms"
timeout = "20s"
"#
        ),
    );
}

/// Writes `n` lines of about `width` bytes, every 7th with the secret; returns the bytes.
fn write_lines(path: &Path, n: u64, width: usize) -> u64 {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let pad = "x".repeat(width.saturating_sub(60));
    let mut bytes = 0;
    for i in 0..n {
        let l = if i % 7 == 0 {
            format!("line {i} export AWS_ACCESS_KEY_ID={SECRET} {pad}\n")
        } else {
            format!("line {i} compiling crate number {i} {pad}\n")
        };
        bytes += l.len() as u64;
        w.write_all(l.as_bytes()).unwrap();
    }
    w.flush().unwrap();
    bytes
}

fn spool_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "lvs"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn metrics_add_up_health_follows_the_sink_and_no_secret_is_exposed() {
    let (st, port, mut s, ca) = receiver_and_setup("metrics", true);
    let mport = free_port();
    config(
        &s,
        port,
        &ca,
        true,
        "max_events = 100",
        "",
        &metrics_table(mport, Some("1s")),
    );
    const N: u64 = 3000;
    let bytes = write_lines(&s.p("logs/job.log"), N, 80);
    let agent = s.start();

    // The SIEM answers 503 to everything: after unhealthy_after, /health says so.
    wait_for("/health to report the failing sink", 20, || {
        get(mport, "/health").is_some_and(|(c, b)| c == 503 && b.contains("sink siem"))
    });
    let (_, scrape) = get(mport, "/metrics").unwrap();
    assert!(sample(&scrape, "logveil_sink_retries_total{sink=\"siem\"}").unwrap() > 0.0);
    assert!(sample(&scrape, "logveil_sink_failing_seconds{sink=\"siem\"}").unwrap() >= 1.0);
    assert!(
        sample(&scrape, "logveil_spool_oldest_undelivered_age_seconds").unwrap() > 0.0,
        "{scrape}"
    );
    let mut scrapes = vec![scrape];

    st.stalled.store(false, Ordering::Relaxed);
    wait_for("every line delivered", 30, || {
        let Some((200, m)) = get(mport, "/metrics") else {
            return false;
        };
        let done =
            sample(&m, "logveil_sink_lines_delivered_total{sink=\"siem\"}") == Some(N as f64);
        scrapes.push(m);
        done
    });
    let m = scrapes.last().unwrap().clone();
    let (code, health) = get(mport, "/health").unwrap();
    assert_eq!((code, health.as_str()), (200, r#"{"status":"ok"}"#));
    assert_eq!(get(mport, "/nope").unwrap().0, 404);

    // The counters add up: in = sealed = delivered = what the receiver counted.
    assert_eq!(st.lines(), N);
    let v = |name: &str| sample(&m, name).unwrap_or_else(|| panic!("{name} missing:\n{m}"));
    assert_eq!(v("logveil_lines_in_total"), N as f64);
    assert_eq!(v("logveil_bytes_in_total"), bytes as f64);
    assert_eq!(v("logveil_lines_sealed_total"), N as f64);
    let batches = st.seen.lock().unwrap().seqs.len() as f64;
    assert_eq!(v("logveil_batches_sealed_total"), batches);
    assert_eq!(
        v("logveil_sink_batches_delivered_total{sink=\"siem\"}"),
        batches
    );
    assert_eq!(
        v("logveil_masks_total{rule=\"aws-access-key-id\"}"),
        N.div_ceil(7) as f64
    );
    assert_eq!(v("logveil_sink_dead_lettered_total{sink=\"siem\"}"), 0.0);
    assert_eq!(v("logveil_sink_auth_failures_total{sink=\"siem\"}"), 0.0);
    assert_eq!(
        v("logveil_sink_bytes_sent_total{sink=\"siem\"}"),
        st.wire_bytes.load(Ordering::Relaxed) as f64
    );
    assert_eq!(v("logveil_spool_full"), 0.0);
    assert_eq!(v("logveil_sink_failing_seconds{sink=\"siem\"}"), 0.0);
    // Exposition format: every family announced with HELP and TYPE before its samples.
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        assert!(m.contains(&format!("# TYPE {name} ")), "{name}");
        assert!(m.contains(&format!("# HELP {name} ")), "{name}");
    }

    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert!(!st.leaked.load(Ordering::Relaxed));
    assert!(!st.malformed.load(Ordering::Relaxed));
    for m in &scrapes {
        assert!(!m.contains(SECRET) && !m.contains("compiling") && !m.contains("job.log"));
    }
    assert!(!log.contains(SECRET), "{log}");
    assert!(log.contains("serving /metrics and /health"), "{log}");
}

#[test]
fn metrics_address_in_use_is_an_error_naming_it() {
    let (_st, port, mut s, ca) = receiver_and_setup("metrics-busy", false);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mport = taken.local_addr().unwrap().port();
    config(&s, port, &ca, true, "", "", &metrics_table(mport, None));
    let (status, log) = s.start().wait(20);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("[metrics] address 127.0.0.1:{mport}")),
        "{log}"
    );
    // A malformed address is a config error (exit 2, file:line:col).
    config(
        &s,
        port,
        &ca,
        true,
        "",
        "",
        "[metrics]\naddress = \"localhost\"",
    );
    let out = logveil(&["check-config", s.p("config.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("config.toml:3:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn encrypted_spool_hides_the_text_replays_with_the_key_and_refuses_another() {
    let (st, port, mut s, ca) = receiver_and_setup("spoolkey", true);
    for k in ["keys/spool.key", "keys/other.key"] {
        let out = logveil(&["keygen", "--spool-key", s.p(k).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // Never over an existing key.
    let out = logveil(&[
        "keygen",
        "--spool-key",
        s.p("keys/spool.key").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));
    let keys = s.p("keys");
    let spool_cfg = |k: &str| format!("encryption_key_file = {:?}", keys.join(&k[5..]));
    // This test's config: only the spool key and the top-level `extra` vary.
    let configure = |s: &Setup, key: Option<&str>, extra: &str| {
        let spool = key.map(spool_cfg).unwrap_or_default();
        config(s, port, &ca, true, "max_events = 50", &spool, extra)
    };
    let mport = free_port();
    configure(&s, Some("keys/spool.key"), &metrics_table(mport, None));
    const N: u64 = 700;
    write_lines(&s.p("logs/job.log"), N, 80);
    let agent = s.start();
    wait_for("every line in the spool", 20, || {
        get(mport, "/metrics")
            .is_some_and(|(_, m)| sample(&m, "logveil_lines_sealed_total") == Some(N as f64))
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert_eq!(st.lines(), 0);
    let segs = spool_files(&s.p("state/spool"));
    assert!(!segs.is_empty());
    let mut total = 0;
    for seg in &segs {
        let data = fs::read(seg).unwrap();
        total += data.len();
        for marker in [
            "REDACTED",
            "compiling",
            "aws-access-key",
            "logveil.batch",
            SECRET,
        ] {
            assert!(
                memchr::memmem::find(&data, marker.as_bytes()).is_none(),
                "{marker} in {}",
                seg.display()
            );
        }
    }
    assert!(
        total > (N * 80) as usize,
        "the spool holds the batches ({total} bytes)"
    );

    // Another key: refused, naming the spool; nothing is sent.
    configure(&s, Some("keys/other.key"), "");
    let (status, log) = s.start().wait(20);
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("not the key this spool was written with"),
        "{log}"
    );
    // No key at all: refused too.
    configure(&s, None, "");
    let (status, log) = s.start().wait(20);
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("is encrypted but"), "{log}");
    // A key others can read: refused before anything starts, naming the setting.
    let key = s.p("keys/spool.key");
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    configure(&s, Some("keys/spool.key"), "");
    let (status, log) = s.start().wait(20);
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("encryption_key_file") && log.contains("chmod 600"),
        "{log}"
    );
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_eq!(st.lines(), 0);

    // The right key: everything replays and arrives.
    st.stalled.store(false, Ordering::Relaxed);
    let agent = s.start();
    wait_for("every line delivered after the restart", 30, || {
        st.lines() >= N
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert_eq!(st.lines(), N);
    assert!(!st.leaked.load(Ordering::Relaxed));
    let sample = st.seen.lock().unwrap().sample.clone().unwrap();
    assert!(sample.contains("[REDACTED:aws-access-key-id]"));
}

#[test]
fn slow_receiver_gets_everything() {
    let (st, port, mut s, ca) = receiver_and_setup("slow", false);
    // About 1 MB/s, body bytes as they come off the socket.
    st.rate.store(1_000_000, Ordering::Relaxed);
    // No gzip, so that the throttle applies to every event byte.
    config(&s, port, &ca, false, "max_bytes = \"512KiB\"", "", "");
    const N: u64 = 15_000;
    write_lines(&s.p("logs/job.log"), N, 120);
    let started = std::time::Instant::now();
    let agent = s.start();
    wait_for("every line through the slow receiver", 120, || {
        st.lines() >= N
    });
    let took = started.elapsed();
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert_eq!(st.lines(), N);
    assert!(!st.leaked.load(Ordering::Relaxed) && !st.malformed.load(Ordering::Relaxed));
    let wire = st.wire_bytes.load(Ordering::Relaxed);
    // The premise, not the agent: enough bytes that the throttle makes every body slow
    // (about 0.5 s for 512 KiB), and the receiver really did take them that slowly.
    assert!(wire > 3_000_000, "{wire}");
    assert!(
        took.as_secs_f64() >= wire as f64 / 1_000_000.0 * 0.9,
        "the receiver was not throttled: {wire} bytes in {took:?}"
    );
    // Slow is not failing: no attempt timed out or was retried, and every batch arrived once.
    assert!(!log.contains("delivery failed"), "{log}");
    let seen = st.seen.lock().unwrap();
    assert_eq!(seen.bodies, seen.seqs.len() as u64, "{log}");
    assert!(!log.contains("dead-letter"), "{log}");
}

/// Resident set of `pid` in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Memory ceiling of the agent while a large input passes through a stalled sink (README).
const RSS_CEILING_KB: u64 = 150 * 1024;

/// The issue's acceptance test: 1 GiB through a stalled sink with a 64 MiB spool. The spool
/// fills, the sources pause (the file waits on disk), RSS stays under the ceiling the whole
/// time; then the sink recovers and every line arrives. Input size: `LOGVEIL_STALL_MB`, by
/// default 1024 MiB in release builds (CI runs `cargo test --release`; about 20 s on two
/// cores) and 64 MiB in debug builds, where the unoptimised engine would take many minutes.
#[test]
fn large_input_through_a_stalled_sink_stays_bounded_and_arrives() {
    let mb: u64 = std::env::var("LOGVEIL_STALL_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 64 } else { 1024 })
        // Sealed events take about twice the input: below this the spool would not fill.
        .max(48);
    let (st, port, mut s, ca) = receiver_and_setup("stall", true);
    let mport = free_port();
    config(
        &s,
        port,
        &ca,
        true,
        "",
        "max_bytes = \"64MiB\"\nfsync = \"never\"",
        &metrics_table(mport, None),
    );
    const WIDTH: usize = 120;
    let n = (mb << 20) / WIDTH as u64;
    let bytes = write_lines(&s.p("logs/big.log"), n, WIDTH);
    let agent = s.start();
    let pid = agent.pid();
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !done.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };

    // Stalled: the spool fills to its cap and the sources pause.
    wait_for("the spool to fill", 300, || {
        get(mport, "/metrics").is_some_and(|(_, m)| sample(&m, "logveil_spool_full") == Some(1.0))
    });
    let (code, health) = get(mport, "/health").unwrap();
    assert_eq!(code, 503);
    assert!(health.contains("spool full"), "{health}");
    std::thread::sleep(Duration::from_secs(2));
    let (_, m) = get(mport, "/metrics").unwrap();
    let read = sample(&m, "logveil_bytes_in_total").unwrap();
    assert!(
        read < bytes as f64,
        "the sources paused: read {read} of {bytes}"
    );
    assert!(sample(&m, "logveil_spool_bytes").unwrap() <= (64 << 20) as f64);
    assert_eq!(st.lines(), 0);
    assert!(st.refused.load(Ordering::Relaxed) > 0);

    // Recovered: everything arrives.
    st.stalled.store(false, Ordering::Relaxed);
    wait_for("every line delivered", 900, || st.lines() >= n);
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    assert_eq!(st.lines(), n);
    assert!(!st.leaked.load(Ordering::Relaxed) && !st.malformed.load(Ordering::Relaxed));
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "stalled sink: {mb} MiB, {n} lines, peak RSS {} MiB over {samples} samples",
        peak / 1024
    );
    assert!(samples > 10, "{samples}");
    assert!(
        peak < RSS_CEILING_KB,
        "peak RSS {peak} kB over the {RSS_CEILING_KB} kB ceiling"
    );
    assert!(!log.contains(SECRET));
}
