//! Forwarding sinks (`http`, `splunk_hec`): sealed batches from the spool to a SIEM over HTTPS.
//!
//! Each sink is one task with one connection and one request in flight, delivering batches
//! in seq order from the spool and acknowledging each once it is delivered (2xx) or
//! dead-lettered, so the spool can delete what every sink is done with.
//!
//! Responses: 2xx delivered; 429 and 5xx retried without limit (honouring `Retry-After`);
//! 401/403 retried with backoff and counted (a bad token must be seen, not silently dropped);
//! any other 4xx is permanent: the batch and the reason go to the dead-letter directory and
//! delivery moves on. Connection and TLS errors are retried. Backoff is capped exponential
//! with jitter.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::config::{ForwardConfig, ForwardKind};
use crate::durable;
use crate::seal::{file_name, Sealed};
use crate::sink::encode;
use crate::spool::Spool;

/// Longest `Retry-After` honoured as given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Bytes of a response body kept for a dead-letter reason.
const MAX_REASON_BODY: usize = 4096;

/// Counters of one sink: registered with [`crate::metrics`] under the sink's name.
pub use crate::metrics::SinkCounters as Counters;

/// What to do after a response.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Done,
    /// Try again after backoff (or after `Retry-After`).
    Retry,
    /// Retry, and count as an authentication failure.
    RetryAuth,
    /// Permanent: dead-letter.
    DeadLetter,
}

/// How a status code is handled.
pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Done,
        401 | 403 => Verdict::RetryAuth,
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::DeadLetter,
    }
}

/// `Retry-After` in seconds (an HTTP date is not honoured: backoff applies).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// Capped exponential backoff: attempt 0 waits about `initial`; `jitter` in [0, 1) takes up
/// to half of the delay away, so that many agents do not retry in step.
pub fn backoff(initial: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let d = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    d.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
}

fn jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration of a sink: TLS 1.2+, ring, system roots or `ca_file`.
pub fn tls_config(cfg: &ForwardConfig) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    if cfg.insecure_skip_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    match &cfg.ca_file {
        Some(p) => {
            for c in CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("ca_file {}: {e}", p.display()))?
            {
                let c = c.map_err(|e| format!("ca_file {}: {e}", p.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("ca_file {}: {e}", p.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", p.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no system CA certificates found; set ca_file to the SIEM's CA bundle".into(),
                );
            }
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// One HTTPS endpoint: connects on demand, one request at a time.
struct Client {
    host: String,
    port: u16,
    authority: String,
    path: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

/// A response, as far as delivery cares.
struct Response {
    status: u16,
    retry_after: Option<Duration>,
    body: String,
}

impl Client {
    fn new(cfg: &ForwardConfig, path: &str) -> Result<Client, String> {
        let uri: Uri = cfg
            .url
            .parse()
            .map_err(|e| format!("url {:?}: {e}", cfg.url))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("url {:?}: only https:// is supported", cfg.url));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("url {:?}: no host", cfg.url))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let name = cfg.server_name.clone().unwrap_or_else(|| host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| format!("server name {name:?} is not valid"))?;
        Ok(Client {
            authority: uri.authority().map(|a| a.to_string()).unwrap_or_default(),
            host,
            port,
            path: path.to_string(),
            server_name,
            connector: TlsConnector::from(Arc::new(tls_config(cfg)?)),
            timeout: cfg.timeout,
            conn: None,
        })
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", self.authority))?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP with {}: {e}", self.authority))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    async fn post(
        &mut self,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, String> {
        let timeout = self.timeout;
        let fut = async {
            let mut send = match self.conn.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            send.ready().await.map_err(|e| format!("connection: {e}"))?;
            let mut req = Request::post(self.path.as_str())
                .header(hyper::header::HOST, self.authority.as_str())
                .header(hyper::header::USER_AGENT, "logveil")
                .body(Full::new(body))
                .map_err(|e| format!("request: {e}"))?;
            for (k, v) in headers {
                req.headers_mut().insert(k.clone(), v.clone());
            }
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| format!("request to {}: {e}", self.authority))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&body[..body.len().min(MAX_REASON_BODY)]).into();
            self.conn = Some(send);
            Ok(Response {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                Err(format!(
                    "no response from {} in {timeout:?}",
                    self.authority
                ))
            }
        }
    }
}

/// A forwarding sink, ready to run.
pub struct Forwarder {
    cfg: ForwardConfig,
    client: Client,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Its counters.
    pub counters: Arc<Counters>,
}

impl Forwarder {
    /// Validates the endpoint, reads the token and builds the TLS configuration. Warns when
    /// certificate checks are off.
    pub fn open(cfg: &ForwardConfig, base: &Path) -> Result<Forwarder, String> {
        let name = &cfg.name;
        let path = match &cfg.kind {
            ForwardKind::SplunkHec { .. } => {
                let uri: Uri = cfg
                    .url
                    .parse()
                    .map_err(|e| format!("sink {name}: url: {e}"))?;
                match uri.path() {
                    "" | "/" => "/services/collector/event".to_string(),
                    p => p.to_string(),
                }
            }
            ForwardKind::Http { .. } => cfg
                .url
                .parse::<Uri>()
                .map_err(|e| format!("sink {name}: url: {e}"))?
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string()),
        };
        let client = Client::new(cfg, &path).map_err(|e| format!("sink {name}: {e}"))?;
        let mut headers = Vec::new();
        let header = |k: &str, v: &[u8]| -> Result<(HeaderName, HeaderValue), String> {
            Ok((
                HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("sink {name}: header name {k:?} is not valid"))?,
                HeaderValue::from_bytes(v)
                    .map_err(|_| format!("sink {name}: the value of header {k} is not valid"))?,
            ))
        };
        let secret = |r: &crate::config::SecretRef, what: &str| -> Result<Vec<u8>, String> {
            let v = r
                .read(base)
                .map_err(|e| format!("sink {name}: {what}: {e}"))?;
            let v = v.strip_suffix(b"\n").unwrap_or(&v).to_vec();
            let v = v.strip_suffix(b"\r").unwrap_or(&v).to_vec();
            if v.is_empty() {
                return Err(format!("sink {name}: {what} {r} is empty"));
            }
            Ok(v)
        };
        match &cfg.kind {
            ForwardKind::SplunkHec { token, .. } => {
                let mut v = b"Splunk ".to_vec();
                v.extend(secret(token, "token")?);
                headers.push(header("authorization", &v)?);
                headers.push(header("content-type", b"application/json")?);
            }
            ForwardKind::Http {
                headers: h,
                authorization,
            } => {
                headers.push(header("content-type", b"application/x-ndjson")?);
                for (k, v) in h {
                    headers.push(header(k, v.as_bytes())?);
                }
                if let Some(a) = authorization {
                    headers.push(header("authorization", &secret(a, "authorization")?)?);
                }
            }
        }
        if cfg.gzip {
            headers.push(header("content-encoding", b"gzip")?);
        }
        if cfg.insecure_skip_verify {
            tracing::warn!(
                sink = %name,
                "insecure_skip_verify = true: the server's certificate is NOT checked; anyone on the path can read and change what this sink sends"
            );
        }
        fs::create_dir_all(&cfg.dead_letter_dir)
            .map_err(|e| format!("sink {name}: {}: {e}", cfg.dead_letter_dir.display()))?;
        Ok(Forwarder {
            cfg: cfg.clone(),
            client,
            headers,
            counters: crate::metrics::sink(&cfg.name),
        })
    }

    /// Its name (the spool's key for its acknowledgements).
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    fn body(&self, batch: &Sealed) -> Result<Vec<u8>, String> {
        let body = match &self.cfg.kind {
            ForwardKind::SplunkHec { meta, .. } => encode::hec_body(batch, meta)?,
            ForwardKind::Http { .. } => encode::ndjson_body(batch)?,
        };
        Ok(if self.cfg.gzip {
            encode::gzip(&body)
        } else {
            body
        })
    }

    /// Delivers one batch: returns once it is delivered or dead-lettered; retries for as
    /// long as it takes otherwise. Returns `Err` only when `stop` turns true first.
    async fn deliver(
        &mut self,
        batch: &Sealed,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        let body = match self.body(batch) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                // A batch we cannot encode will never be accepted: keep it, move on.
                tokio::task::block_in_place(|| {
                    self.dead_letter(batch, &format!("cannot encode: {e}"))
                });
                return Ok(());
            }
        };
        let mut attempt = 0u32;
        loop {
            self.counters
                .bytes_sent
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            let (wait, why) = match self.client.post(&self.headers, body.clone()).await {
                Ok(r) => match classify(r.status) {
                    Verdict::Done => {
                        let lines = crate::seal::parse(&batch.bytes).map_or(0, |p| p.header.count);
                        self.counters.delivered(lines);
                        if attempt > 0 {
                            tracing::info!(sink = %self.cfg.name, seq = batch.seq, attempts = attempt + 1, "delivered after retries");
                        }
                        return Ok(());
                    }
                    Verdict::DeadLetter => {
                        self.counters.answered();
                        let status = StatusCode::from_u16(r.status)
                            .map_or(r.status.to_string(), |s| s.to_string());
                        tokio::task::block_in_place(|| {
                            self.dead_letter(batch, &format!("HTTP {status}: {}", r.body.trim()))
                        });
                        return Ok(());
                    }
                    v => {
                        if v == Verdict::RetryAuth {
                            let n = self.counters.auth_failures.fetch_add(1, Ordering::Relaxed) + 1;
                            tracing::error!(sink = %self.cfg.name, status = r.status, auth_failures = n, "the SIEM refuses our credentials; retrying (check the token)");
                        }
                        let wait = r.retry_after.unwrap_or_else(|| {
                            backoff(
                                self.cfg.retry_initial,
                                self.cfg.retry_max,
                                attempt,
                                jitter(),
                            )
                        });
                        (wait, format!("HTTP {}", r.status))
                    }
                },
                Err(e) => (
                    backoff(
                        self.cfg.retry_initial,
                        self.cfg.retry_max,
                        attempt,
                        jitter(),
                    ),
                    e,
                ),
            };
            self.counters.failure();
            tracing::warn!(sink = %self.cfg.name, seq = batch.seq, error = %why, retry_in = ?wait, "delivery failed; will retry");
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = crate::pipeline::stopped(stop) => return Err(()),
            }
        }
    }

    /// Writes the batch and the reason to the dead-letter directory. If that fails too the
    /// batch is kept: delivery retries it after a pause, never drops it.
    fn dead_letter(&self, batch: &Sealed, reason: &str) {
        let dir = &self.cfg.dead_letter_dir;
        let path = dir.join(file_name(batch.seq));
        let mut reason_path = path.clone().into_os_string();
        reason_path.push(".reason.json");
        let reason_json = serde_json::json!({
            "sink": self.cfg.name,
            "seq": batch.seq,
            "hash": batch.hash,
            "reason": reason,
            "at": crate::event::now_rfc3339(),
        });
        loop {
            let r = durable::atomic_write(&path, &batch.bytes, 0o640).and_then(|_| {
                durable::atomic_write(
                    Path::new(&reason_path),
                    &serde_json::to_vec_pretty(&reason_json).expect("json"),
                    0o640,
                )
            });
            match r {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(sink = %self.cfg.name, seq = batch.seq, error = %e, "cannot write to the dead-letter directory; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::error!(sink = %self.cfg.name, seq = batch.seq, file = %path.display(), "the SIEM rejected a batch permanently; it is in the dead-letter directory");
    }

    /// Delivers batches from the spool in seq order until `stop` (then returns at once; the
    /// spool keeps what is undelivered) or until `drain` is set and the spool has nothing
    /// more for this sink.
    pub async fn run(
        mut self,
        spool: Arc<Mutex<Spool>>,
        mut tip: watch::Receiver<u64>,
        mut drain: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let name = self.cfg.name.clone();
        loop {
            let next = tokio::task::block_in_place(|| -> io::Result<_> {
                let mut s = spool.lock().expect("spool lock");
                match s.next_after(s.acked(&name)) {
                    Some(seq) => Ok(s.read(seq)?.map(|b| (seq, b))),
                    None => Ok(None),
                }
            });
            let (seq, bytes) = match next {
                Ok(Some(x)) => x,
                Ok(None) => {
                    if *drain.borrow() && *tip.borrow() <= self.acked(&spool) {
                        return;
                    }
                    tokio::select! {
                        r = tip.changed() => if r.is_err() && *drain.borrow() { return },
                        _ = crate::pipeline::stopped(&mut drain) => {}
                        _ = crate::pipeline::stopped(&mut stop) => return,
                    }
                    // Re-check; also guards against a closed `tip` spinning.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(sink = %name, error = %e, "reading the spool failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = crate::pipeline::stopped(&mut stop) => return,
                    }
                }
            };
            let hash = crate::seal::parse(&bytes)
                .map(|p| crate::seal::header_hash(p.header_line))
                .unwrap_or_default();
            let batch = Sealed { seq, hash, bytes };
            if self.deliver(&batch, &mut stop).await.is_err() {
                return;
            }
            loop {
                let r = tokio::task::block_in_place(|| {
                    spool.lock().expect("spool lock").ack(&name, seq)
                });
                match r {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(sink = %name, error = %e, "recording delivery in the spool failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = crate::pipeline::stopped(&mut stop) => return,
                        }
                    }
                }
            }
        }
    }

    fn acked(&self, spool: &Mutex<Spool>) -> u64 {
        spool.lock().expect("spool lock").acked(&self.cfg.name)
    }
}

/// What `check-config` checks of a forwarding sink without touching the network or the
/// disk: the url, the TLS settings (CA file), and that its secrets can be read.
pub fn check(cfg: &ForwardConfig, base: &Path) -> Result<(), String> {
    let name = &cfg.name;
    Client::new(cfg, "/").map_err(|e| format!("sink {name}: {e}"))?;
    let secret = match &cfg.kind {
        ForwardKind::SplunkHec { token, .. } => Some((token, "token")),
        ForwardKind::Http { authorization, .. } => {
            authorization.as_ref().map(|a| (a, "authorization"))
        }
    };
    if let Some((r, what)) = secret {
        let v = r
            .read(base)
            .map_err(|e| format!("sink {name}: {what}: {e}"))?;
        if v.trim_ascii().is_empty() {
            return Err(format!("sink {name}: {what} {r} is empty"));
        }
    }
    Ok(())
}

/// Where a sink's dead letters go by default.
pub fn default_dead_letter_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("dead-letter").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(classify(200), Verdict::Done);
        assert_eq!(classify(204), Verdict::Done);
        assert_eq!(classify(429), Verdict::Retry);
        assert_eq!(classify(503), Verdict::Retry);
        assert_eq!(classify(500), Verdict::Retry);
        assert_eq!(classify(401), Verdict::RetryAuth);
        assert_eq!(classify(403), Verdict::RetryAuth);
        assert_eq!(classify(400), Verdict::DeadLetter);
        assert_eq!(classify(413), Verdict::DeadLetter);
        assert_eq!(classify(404), Verdict::DeadLetter);
    }

    #[test]
    fn retry_after_and_backoff() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("100000"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(backoff(i, m, 0, 0.0), i);
        assert_eq!(backoff(i, m, 3, 0.0), Duration::from_millis(800));
        assert_eq!(backoff(i, m, 30, 0.0), m);
        assert_eq!(backoff(i, m, 1, 1.0), Duration::from_millis(100));
        assert!(backoff(i, m, 40, 0.5) <= m);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
