//! The agent's counters, and the optional `/metrics` + `/health` endpoint (`[metrics]
//! address`).
//!
//! Counters live in one process-wide registry ([`global`]) so that any stage (sources,
//! sealer, each kind of sink) can count without being handed a handle. Labels are only ever
//! a sink name (from the config) or a rule id (from the engine): never input text, file
//! paths, tokens or anything else read from logs, so a scrape cannot leak what the agent
//! redacts.
//!
//! `/metrics` is the Prometheus text exposition format 0.0.4. `/health` answers 200
//! `{"status":"ok"}` while the agent runs, and 503 with the reasons (sink names only) when a
//! forwarding sink has failed every attempt for longer than `unhealthy_after`, or when the
//! spool is full and the sources are paused.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::spool::Spool;

/// `[metrics]`, validated.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Where to listen (`127.0.0.1:9598`).
    pub address: SocketAddr,
    /// A sink failing continuously for longer than this makes `/health` answer 503.
    pub unhealthy_after: Duration,
}

/// Counters of one forwarding sink.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Batches delivered.
    pub delivered: AtomicU64,
    /// Attempts that will be retried.
    pub retried: AtomicU64,
    /// 401/403 responses.
    pub auth_failures: AtomicU64,
    /// Batches sent to the dead-letter directory.
    pub dead_lettered: AtomicU64,
    /// Lines (events) in the batches delivered.
    pub lines_delivered: AtomicU64,
    /// Request body bytes sent, every attempt counted (after gzip); for syslog the framed
    /// messages written (before TLS).
    pub bytes_sent: AtomicU64,
    /// Milliseconds since the registry's epoch, plus one, of the first failure of the
    /// current run of failures; 0 while the last attempt succeeded.
    failing_since: AtomicU64,
}

impl SinkCounters {
    /// An attempt failed (it will be retried).
    pub fn failure(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        let now = global().epoch.elapsed().as_millis() as u64 + 1;
        let _ = self
            .failing_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The sink answered for good (delivered, or a permanent rejection dead-lettered).
    pub fn answered(&self) {
        self.failing_since.store(0, Ordering::Relaxed);
    }

    /// A batch of `lines` lines was delivered.
    pub fn delivered(&self, lines: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.lines_delivered.fetch_add(lines, Ordering::Relaxed);
        self.answered();
    }

    /// How long every attempt has failed, if the last one did.
    pub fn failing_for(&self) -> Option<Duration> {
        match self.failing_since.load(Ordering::Relaxed) {
            0 => None,
            t => Some(
                global()
                    .epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(t - 1)),
            ),
        }
    }
}

/// The process-wide counters.
pub struct Metrics {
    epoch: Instant,
    /// Lines read by the sources (redacted before anything else sees them).
    pub lines_in: AtomicU64,
    /// Input bytes read by the sources.
    pub bytes_in: AtomicU64,
    /// Batches sealed.
    pub batches_sealed: AtomicU64,
    /// Lines in sealed batches.
    pub lines_sealed: AtomicU64,
    /// Payload bytes of sealed batches (redacted events).
    pub bytes_sealed: AtomicU64,
    /// 1 while the spool is full and the sources wait.
    pub spool_full: AtomicU64,
    masks: Mutex<BTreeMap<String, u64>>,
    sinks: Mutex<BTreeMap<String, Arc<SinkCounters>>>,
}

/// The registry.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        epoch: Instant::now(),
        lines_in: AtomicU64::new(0),
        bytes_in: AtomicU64::new(0),
        batches_sealed: AtomicU64::new(0),
        lines_sealed: AtomicU64::new(0),
        bytes_sealed: AtomicU64::new(0),
        spool_full: AtomicU64::new(0),
        masks: Mutex::new(BTreeMap::new()),
        sinks: Mutex::new(BTreeMap::new()),
    })
}

/// The counters of sink `name` (created on first use; the same ones on every call).
pub fn sink(name: &str) -> Arc<SinkCounters> {
    global()
        .sinks
        .lock()
        .expect("metrics lock")
        .entry(name.to_string())
        .or_default()
        .clone()
}

impl Metrics {
    /// A source read `bytes` bytes holding `lines` complete lines.
    pub fn read(&self, bytes: u64, lines: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.lines_in.fetch_add(lines, Ordering::Relaxed);
    }

    /// A batch was sealed.
    pub fn sealed(&self, lines: u64, bytes: u64, masks: &BTreeMap<String, u64>) {
        self.batches_sealed.fetch_add(1, Ordering::Relaxed);
        self.lines_sealed.fetch_add(lines, Ordering::Relaxed);
        self.bytes_sealed.fetch_add(bytes, Ordering::Relaxed);
        if !masks.is_empty() {
            let mut m = self.masks.lock().expect("metrics lock");
            for (rule, n) in masks {
                *m.entry(rule.clone()).or_default() += n;
            }
        }
    }

    /// Whether the sources are paused on a full spool.
    pub fn set_spool_full(&self, full: bool) {
        self.spool_full.store(full as u64, Ordering::Relaxed);
    }
}

/// A label value, escaped as the exposition format wants.
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: impl std::fmt::Display) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

/// A per-sink counter family: name, help, how to read it.
type PerSink = (&'static str, &'static str, fn(&SinkCounters) -> u64);

/// What the spool looks like now.
struct SpoolView {
    bytes: u64,
    batches: u64,
    oldest_age: f64,
}

fn spool_view(spool: Option<&Mutex<Spool>>) -> Option<SpoolView> {
    let s = spool?.lock().ok()?;
    let oldest_age = s.oldest_undelivered().map_or(0.0, |t| {
        SystemTime::now()
            .duration_since(t)
            .unwrap_or_default()
            .as_secs_f64()
    });
    Some(SpoolView {
        bytes: s.bytes(),
        batches: s.len() as u64,
        oldest_age,
    })
}

/// The `/metrics` page.
pub fn render(spool: Option<&Mutex<Spool>>) -> String {
    let m = global();
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut o = String::new();
    let totals: [(&str, &str, &AtomicU64); 5] = [
        (
            "logveil_lines_in_total",
            "Lines read by the sources.",
            &m.lines_in,
        ),
        (
            "logveil_bytes_in_total",
            "Input bytes read by the sources.",
            &m.bytes_in,
        ),
        (
            "logveil_batches_sealed_total",
            "Batches sealed into the hash chain.",
            &m.batches_sealed,
        ),
        (
            "logveil_lines_sealed_total",
            "Lines in sealed batches.",
            &m.lines_sealed,
        ),
        (
            "logveil_bytes_sealed_total",
            "Payload bytes (redacted events) of sealed batches.",
            &m.bytes_sealed,
        ),
    ];
    for (name, help, v) in totals {
        counter(&mut o, name, help, ld(v));
    }
    family(
        &mut o,
        "logveil_masks_total",
        "counter",
        "Values masked, by rule id.",
    );
    for (rule, n) in m.masks.lock().expect("metrics lock").iter() {
        let _ = writeln!(o, "logveil_masks_total{{rule=\"{}\"}} {n}", label(rule));
    }
    let sinks: Vec<(String, Arc<SinkCounters>)> = m
        .sinks
        .lock()
        .expect("metrics lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let per_sink: [PerSink; 6] = [
        (
            "logveil_sink_batches_delivered_total",
            "Batches the SIEM accepted.",
            |c| c.delivered.load(Ordering::Relaxed),
        ),
        (
            "logveil_sink_lines_delivered_total",
            "Lines in the batches the SIEM accepted.",
            |c| c.lines_delivered.load(Ordering::Relaxed),
        ),
        (
            "logveil_sink_retries_total",
            "Failed attempts that are retried.",
            |c| c.retried.load(Ordering::Relaxed),
        ),
        (
            "logveil_sink_dead_lettered_total",
            "Batches rejected for good, kept in the dead-letter directory.",
            |c| c.dead_lettered.load(Ordering::Relaxed),
        ),
        (
            "logveil_sink_auth_failures_total",
            "401 and 403 answers (retried).",
            |c| c.auth_failures.load(Ordering::Relaxed),
        ),
        (
            "logveil_sink_bytes_sent_total",
            "Request body bytes sent (after gzip), every attempt.",
            |c| c.bytes_sent.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in per_sink {
        family(&mut o, name, "counter", help);
        for (s, c) in &sinks {
            let _ = writeln!(o, "{name}{{sink=\"{}\"}} {}", label(s), get(c));
        }
    }
    family(
        &mut o,
        "logveil_sink_failing_seconds",
        "gauge",
        "How long every attempt of the sink has failed (0 when the last one succeeded).",
    );
    for (s, c) in &sinks {
        let f = c.failing_for().map_or(0.0, |d| d.as_secs_f64());
        let _ = writeln!(
            o,
            "logveil_sink_failing_seconds{{sink=\"{}\"}} {f:.3}",
            label(s)
        );
    }
    if let Some(v) = spool_view(spool) {
        gauge(
            &mut o,
            "logveil_spool_bytes",
            "Bytes of spool segments on disk.",
            v.bytes,
        );
        gauge(
            &mut o,
            "logveil_spool_batches",
            "Batches in the spool.",
            v.batches,
        );
        gauge(
            &mut o,
            "logveil_spool_oldest_undelivered_age_seconds",
            "Age of the oldest batch some sink has not acknowledged (0 when none).",
            format!("{:.3}", v.oldest_age),
        );
    }
    gauge(
        &mut o,
        "logveil_spool_full",
        "1 while the spool is full and the sources are paused.",
        ld(&m.spool_full),
    );
    o
}

/// The `/health` answer: status and a JSON body.
pub fn health(unhealthy_after: Duration) -> (StatusCode, String) {
    let m = global();
    let mut problems = Vec::new();
    for (name, c) in m.sinks.lock().expect("metrics lock").iter() {
        if let Some(d) = c.failing_for().filter(|d| *d > unhealthy_after) {
            problems.push(format!(
                "sink {name}: every attempt failed for {}s",
                d.as_secs()
            ));
        }
    }
    if m.spool_full.load(Ordering::Relaxed) == 1 {
        problems.push("spool full: sources paused".to_string());
    }
    if problems.is_empty() {
        (StatusCode::OK, r#"{"status":"ok"}"#.to_string())
    } else {
        let body = serde_json::json!({"status": "unhealthy", "problems": problems});
        (StatusCode::SERVICE_UNAVAILABLE, body.to_string())
    }
}

fn answer(
    req: &Request<hyper::body::Incoming>,
    spool: Option<&Mutex<Spool>>,
    unhealthy_after: Duration,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(spool),
        ),
        "/health" => {
            let (status, body) = health(unhealthy_after);
            reply(status, "application/json", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "/metrics or /health\n".into(),
        ),
    }
}

/// Serves `/metrics` and `/health` on `listener` until `stop` turns true.
pub async fn serve(
    listener: std::net::TcpListener,
    cfg: MetricsConfig,
    spool: Option<Arc<Mutex<Spool>>>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %cfg.address, error = %e, "metrics endpoint cannot listen");
            return;
        }
    };
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::pipeline::stopped(&mut stop) => return,
        };
        let spool = spool.clone();
        let after = cfg.unhealthy_after;
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = answer(&req, spool.as_deref(), after);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
            // A scraper that hangs does not keep a task forever.
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

/// Binds the endpoint's address now (before the pipeline starts), so that an address in use
/// is an error at start, naming the address.
pub fn bind(cfg: &MetricsConfig) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind(cfg.address)
        .map_err(|e| format!("[metrics] address {}: {e}", cfg.address))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("[metrics] address {}: {e}", cfg.address))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format_and_health() {
        let c = sink("unit-sink");
        c.delivered(7);
        c.bytes_sent.fetch_add(100, Ordering::Relaxed);
        let mut masks = BTreeMap::new();
        masks.insert("aws-access-key".to_string(), 2);
        global().sealed(7, 700, &masks);
        let page = render(None);
        for l in page.lines() {
            assert!(
                l.starts_with("# HELP logveil_")
                    || l.starts_with("# TYPE logveil_")
                    || l.starts_with("logveil_"),
                "{l}"
            );
        }
        assert!(page.contains("# TYPE logveil_masks_total counter"));
        assert!(page.contains("logveil_masks_total{rule=\"aws-access-key\"} "));
        assert!(page.contains("logveil_sink_lines_delivered_total{sink=\"unit-sink\"} "));
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");

        let h = sink("unit-health");
        h.failure();
        std::thread::sleep(Duration::from_millis(20));
        let (st, body) = health(Duration::from_millis(5));
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("unit-health"), "{body}");
        h.delivered(1);
        assert!(h.failing_for().is_none());
    }

    fn parse(extra: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::Config::parse(
            std::path::Path::new("/etc/lv/agent.toml"),
            &format!("{extra}[[source]]\ntype = \"stdin\"\n[seal]\nkey = \"env:K\"\n"),
        )
    }

    #[test]
    fn config_is_off_by_default_and_checked() {
        assert!(parse("").unwrap().metrics.is_none());
        let m = parse("[metrics]\naddress = \"127.0.0.1:9598\"\n")
            .unwrap()
            .metrics
            .unwrap();
        assert_eq!(m.address.to_string(), "127.0.0.1:9598");
        assert_eq!(m.unhealthy_after, Duration::from_secs(300));
        let m = parse("[metrics]\naddress = \"[::1]:1\"\nunhealthy_after = \"30s\"\n")
            .unwrap()
            .metrics
            .unwrap();
        assert_eq!(m.unhealthy_after, Duration::from_secs(30));
        for (bad, want) in [
            ("[metrics]\naddress = \"localhost:9598\"\n", "want IP:PORT"),
            ("[metrics]\nunhealthy_after = \"1s\"\n", "address"),
            (
                "[metrics]\naddress = \"127.0.0.1:1\"\nport = 3\n",
                "unknown field",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains(want), "{bad}: {e}");
            assert!(e.at.is_some(), "{bad}: {e}");
        }
    }
}
