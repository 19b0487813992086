//! Forwarding sinks (`http`, `splunk_hec`; `syslog` in `syslog.rs`): sealed batches from the
//! spool to a SIEM over HTTPS.
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
//!
//! `elasticsearch` reads the per-item results of `_bulk`: items refused with 429 or 5xx are
//! sent again (alone), other refusals are dead-lettered with their error, and the batch is
//! done once every item is in the index or dead-lettered. `splunk_hec` with `indexer_ack`
//! keeps up to `max_pending_acks` batches sent but not yet indexed, polls
//! `/services/collector/ack`, acknowledges a batch in the spool only once Splunk reports it
//! indexed, and sends it again when no acknowledgement comes within `ack_timeout`.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::config::{EsAuth, ForwardConfig, ForwardKind, HecAck};
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

/// `Retry-After` as seconds or as an HTTP date (RFC 9110: IMF-fixdate, or the obsolete
/// RFC 850 and asctime forms), capped at `MAX_RETRY_AFTER` (five minutes).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    parse_retry_after_at(v, SystemTime::now())
}

/// [`parse_retry_after`] as seen at `now`. A date already past (often clock skew) gives
/// `None`, so the backoff applies rather than an immediate retry loop.
pub fn parse_retry_after_at(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = match v.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => httpdate::parse_http_date(v)
            .ok()?
            .duration_since(now)
            .ok()
            .filter(|d| !d.is_zero())?,
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// Capped exponential backoff: attempt 0 waits about `initial`; `jitter` in [0, 1) takes up
/// to half of the delay away, so that many agents do not retry in step.
fn backoff(initial: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let d = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    d.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
}

fn jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
}

/// The failed attempts at one batch and the pause before the next: [`backoff`] with
/// [`jitter`] from `retry_initial` up to `retry_max`, unless the receiver named a pause. Used
/// by the HTTP sinks and by `syslog`; what an attempt sends (the body, the refused `_bulk`
/// items, the whole batch on a new connection) stays with each.
pub(crate) struct Retries {
    initial: Duration,
    max: Duration,
    failed: u32,
}

impl Retries {
    /// No attempt has failed yet.
    pub(crate) fn new(initial: Duration, max: Duration) -> Retries {
        Retries {
            initial,
            max,
            failed: 0,
        }
    }

    /// Counts a failed attempt and returns the pause before the next one: `named` (a
    /// `Retry-After`) when given, else the backoff. A named pause counts too, so the backoff
    /// after it is no shorter than without it.
    pub(crate) fn failed(&mut self, named: Option<Duration>) -> Duration {
        let wait = named.unwrap_or_else(|| backoff(self.initial, self.max, self.failed, jitter()));
        self.failed = self.failed.saturating_add(1);
        wait
    }

    /// All attempts, the one that just succeeded included, when there was more than one.
    pub(crate) fn retried(&self) -> Option<u32> {
        (self.failed > 0).then(|| self.failed.saturating_add(1))
    }
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

/// The TLS client configuration of a sink: TLS 1.2+, ring, system roots or `ca_file`, and a
/// client certificate when `client_cert`/`client_key` are set (mTLS).
pub fn tls_config(cfg: &ForwardConfig) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let client_auth = client_identity(cfg)?;
    let finish =
        |b: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>| match client_auth
        {
            Some((certs, key)) => b.with_client_auth_cert(certs, key).map_err(|e| {
                format!(
                    "client_cert {}: {e}",
                    cfg.client_cert
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                )
            }),
            None => Ok(b.with_no_client_auth()),
        };
    if cfg.insecure_skip_verify {
        return finish(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider))),
        );
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
    finish(builder.with_root_certificates(roots))
}

/// The client certificate chain and key for mTLS. The key file is refused when group or
/// others can access it, as the signing key is: a readable key lets anyone pose as this
/// agent to the SIEM.
fn client_identity(
    cfg: &ForwardConfig,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
    let (Some(cert), Some(key)) = (&cfg.client_cert, &cfg.client_key) else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("client_cert {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "client_cert {}: no certificate in it",
            cert.display()
        ));
    }
    crate::keys::refuse_shared(key, "private key").map_err(|e| format!("client_key {e}"))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("client_key {}: {e}", key.display()))?;
    Ok(Some((certs, key_der)))
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
    /// Longest response body read (a `_bulk` response answers every item).
    max_response: usize,
    conn: Option<SendRequest<Full<Bytes>>>,
}

/// A response, as far as delivery cares.
struct Response {
    status: u16,
    retry_after: Option<Duration>,
    /// The start of the body, for logs and dead-letter reasons.
    body: String,
    /// The whole body (up to the client's `max_response`).
    raw: Bytes,
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
            max_response: match cfg.kind {
                ForwardKind::Elasticsearch { .. } => 64 << 20,
                _ => 1 << 20,
            },
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
        let path = self.path.clone();
        self.post_to(&path, headers, body).await
    }

    async fn post_to(
        &mut self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, String> {
        let timeout = self.timeout;
        let max_response = self.max_response;
        let fut = async {
            let mut send = match self.conn.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            send.ready().await.map_err(|e| format!("connection: {e}"))?;
            let mut req = Request::post(path)
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
                .map_err(|e| format!("request to {}: {}", self.authority, with_causes(&e)))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let raw = Limited::new(resp.into_body(), max_response)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&raw[..raw.len().min(MAX_REASON_BODY)]).into();
            self.conn = Some(send);
            Ok(Response {
                status,
                retry_after,
                body,
                raw,
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
    /// The HTTPS client; `None` for a syslog sink.
    client: Option<Client>,
    /// The syslog transport of a `syslog` sink.
    syslog: Option<crate::sink::syslog::SyslogSink>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `splunk_hec` with indexer acknowledgement: the ack endpoint's path and headers.
    ack: Option<(String, Vec<(HeaderName, HeaderValue)>)>,
    /// Its counters.
    pub counters: Arc<Counters>,
}

/// The `_bulk` path under an Elasticsearch URL. `filter_path` keeps the response to what is
/// read (status and error of each item), a few bytes per item instead of a few hundred.
fn bulk_path(uri: &Uri) -> String {
    let base = uri.path().trim_end_matches('/');
    let base = base.strip_suffix("/_bulk").unwrap_or(base);
    let filter = "filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason";
    match uri.query() {
        Some(q) if !q.is_empty() => format!("{base}/_bulk?{q}&{filter}"),
        _ => format!("{base}/_bulk?{filter}"),
    }
}

/// The ack endpoint beside a HEC event endpoint (keeping any proxy prefix before
/// `/services/collector`).
fn hec_ack_path(event_path: &str) -> String {
    match event_path.find("/services/collector") {
        Some(i) => format!("{}/services/collector/ack", &event_path[..i]),
        None => "/services/collector/ack".into(),
    }
}

/// A random (version 4) UUID: the HEC channel of one sink instance.
fn channel_uuid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::keys::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Forwarder {
    /// Validates the endpoint, reads the token and builds the TLS configuration. Warns when
    /// certificate checks are off.
    pub fn open(cfg: &ForwardConfig, base: &Path) -> Result<Forwarder, String> {
        let name = &cfg.name;
        if let ForwardKind::Syslog(s) = &cfg.kind {
            return Forwarder::open_syslog(cfg, s);
        }
        let path = match &cfg.kind {
            ForwardKind::Syslog(_) => unreachable!("opened above"),
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
            ForwardKind::Elasticsearch { .. } => bulk_path(
                &cfg.url
                    .parse::<Uri>()
                    .map_err(|e| format!("sink {name}: url: {e}"))?,
            ),
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
        let mut ack = None;
        match &cfg.kind {
            ForwardKind::SplunkHec { token, ack: a, .. } => {
                let mut v = b"Splunk ".to_vec();
                v.extend(secret(token, "token")?);
                headers.push(header("authorization", &v)?);
                headers.push(header("content-type", b"application/json")?);
                if a.is_some() {
                    headers.push(header(
                        "x-splunk-request-channel",
                        channel_uuid().as_bytes(),
                    )?);
                    // The ack request is small JSON: no gzip.
                    ack = Some((hec_ack_path(&path), headers.clone()));
                }
            }
            ForwardKind::Elasticsearch { auth, .. } => {
                headers.push(header("content-type", b"application/x-ndjson")?);
                match auth {
                    Some(EsAuth::ApiKey(k)) => {
                        let mut v = b"ApiKey ".to_vec();
                        v.extend(secret(k, "api_key")?);
                        headers.push(header("authorization", &v)?);
                    }
                    Some(EsAuth::Basic { username, password }) => {
                        use base64::Engine;
                        let mut up = format!("{username}:").into_bytes();
                        up.extend(secret(password, "password")?);
                        let v = format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(&up)
                        );
                        headers.push(header("authorization", v.as_bytes())?);
                    }
                    None => {}
                }
            }
            ForwardKind::Syslog(_) => unreachable!("opened above"),
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
            client: Some(client),
            syslog: None,
            headers,
            ack,
            counters: crate::metrics::sink(&cfg.name),
        })
    }

    fn open_syslog(
        cfg: &ForwardConfig,
        s: &crate::config::SyslogConfig,
    ) -> Result<Forwarder, String> {
        let syslog = crate::sink::syslog::SyslogSink::open(cfg, s)?;
        if cfg.insecure_skip_verify {
            tracing::warn!(
                sink = %cfg.name,
                "insecure_skip_verify = true: the server's certificate is NOT checked; anyone on the path can read and change what this sink sends"
            );
        }
        fs::create_dir_all(&cfg.dead_letter_dir)
            .map_err(|e| format!("sink {}: {}: {e}", cfg.name, cfg.dead_letter_dir.display()))?;
        Ok(Forwarder {
            cfg: cfg.clone(),
            client: None,
            syslog: Some(syslog),
            headers: Vec::new(),
            ack: None,
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
            ForwardKind::Elasticsearch { meta, .. } => encode::bulk_items(batch, meta)?
                .into_iter()
                .flat_map(|i| i.lines)
                .collect(),
            ForwardKind::Syslog(_) => unreachable!("syslog sinks do not send bodies"),
        };
        Ok(if self.cfg.gzip {
            encode::gzip(&body)
        } else {
            body
        })
    }

    /// Delivers one batch: returns once it is delivered (with the response body; empty for
    /// syslog) or dead-lettered (`None`); retries for as long as it takes otherwise. Returns `Err` only
    /// when `stop` turns true first.
    async fn deliver(
        &mut self,
        batch: &Sealed,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<String>, ()> {
        if let Some(s) = self.syslog.as_mut() {
            return match s.deliver(batch, stop, &self.counters).await {
                // Syslog has no response: an empty body.
                crate::sink::syslog::Outcome::Delivered => Ok(Some(String::new())),
                crate::sink::syslog::Outcome::Stopped => Err(()),
                crate::sink::syslog::Outcome::Unencodable(e) => {
                    tokio::task::block_in_place(|| {
                        self.dead_letter(batch, &format!("cannot encode: {e}"))
                    });
                    Ok(None)
                }
            };
        }
        let body = match self.body(batch) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                // A batch we cannot encode will never be accepted: keep it, move on.
                tokio::task::block_in_place(|| {
                    self.dead_letter(batch, &format!("cannot encode: {e}"))
                });
                return Ok(None);
            }
        };
        let mut retries = self.retries();
        loop {
            self.counters
                .bytes_sent
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            let client = self.client.as_mut().expect("an HTTP sink has a client");
            let (named, why) = match client.post(&self.headers, body.clone()).await {
                Ok(r) => match classify(r.status) {
                    Verdict::Done => {
                        // With indexer acknowledgement, delivered means indexed: counted
                        // when Splunk says so.
                        if self.ack.is_none() {
                            self.counters.delivered(lines(batch));
                        }
                        if let Some(attempts) = retries.retried() {
                            tracing::info!(sink = %self.cfg.name, seq = batch.seq, attempts, "delivered after retries");
                        }
                        return Ok(Some(r.body));
                    }
                    Verdict::DeadLetter => {
                        let status = StatusCode::from_u16(r.status)
                            .map_or(r.status.to_string(), |s| s.to_string());
                        tokio::task::block_in_place(|| {
                            self.dead_letter(batch, &format!("HTTP {status}: {}", r.body.trim()))
                        });
                        return Ok(None);
                    }
                    v => {
                        if v == Verdict::RetryAuth {
                            let n = self.counters.auth_failures.fetch_add(1, Ordering::Relaxed) + 1;
                            tracing::error!(sink = %self.cfg.name, status = r.status, auth_failures = n, "the SIEM refuses our credentials; retrying (check the token)");
                        }
                        (r.retry_after, format!("HTTP {}", r.status))
                    }
                },
                Err(e) => (None, e),
            };
            let wait = retries.failed(named);
            self.failed_attempt(batch.seq, &why, wait, stop).await?;
        }
    }

    /// Delivers one batch to Elasticsearch `_bulk`: sends the items not yet in the index
    /// until each is in (2xx, or 409 on `create`: an earlier attempt wrote that id) or
    /// refused for good; refused items are dead-lettered together, with their errors.
    /// Returns `Err` only when `stop` turns true first.
    async fn deliver_bulk(
        &mut self,
        batch: &Sealed,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        let ForwardKind::Elasticsearch { meta, .. } = &self.cfg.kind else {
            unreachable!("deliver_bulk is for elasticsearch sinks")
        };
        let meta = meta.clone();
        let items = match encode::bulk_items(batch, &meta) {
            Ok(i) => i,
            Err(e) => {
                tokio::task::block_in_place(|| {
                    self.dead_letter(batch, &format!("cannot encode: {e}"))
                });
                return Ok(());
            }
        };
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut refused: Vec<serde_json::Value> = Vec::new();
        let refusal = |item: &encode::BulkItem, status: u16, error: &str| {
            serde_json::json!({
                "event": item.event,
                "offset": item.offset,
                "id": encode::bulk_id(&batch.hash, item.event),
                "status": status,
                "error": error,
            })
        };
        let mut retries = self.retries();
        loop {
            let mut body = Vec::new();
            for &i in &pending {
                body.extend_from_slice(&items[i].lines);
            }
            if self.cfg.gzip {
                body = encode::gzip(&body);
            }
            self.counters
                .bytes_sent
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            let client = self.client.as_mut().expect("an HTTP sink has a client");
            let (named, why) = match client.post(&self.headers, Bytes::from(body)).await {
                Err(e) => (None, e),
                Ok(r) => match classify(r.status) {
                    Verdict::Done => match encode::parse_bulk_response(&r.raw, pending.len()) {
                        // `errors: false`: every item is in.
                        Ok(None) => break,
                        Ok(Some(results)) => {
                            let mut retry = Vec::new();
                            let mut first_retry = None;
                            for (&i, res) in pending.iter().zip(&results) {
                                match encode::item_verdict(meta.action, res.status) {
                                    encode::ItemVerdict::Done => {}
                                    encode::ItemVerdict::Retry => {
                                        first_retry.get_or_insert_with(|| {
                                            format!(
                                                "HTTP {}: {}",
                                                res.status,
                                                res.error.as_deref().unwrap_or("")
                                            )
                                        });
                                        retry.push(i);
                                    }
                                    encode::ItemVerdict::DeadLetter => refused.push(refusal(
                                        &items[i],
                                        res.status,
                                        res.error.as_deref().unwrap_or(""),
                                    )),
                                }
                            }
                            if retry.is_empty() {
                                break;
                            }
                            let why = format!(
                                "{} of {} items refused for now, first: {}",
                                retry.len(),
                                pending.len(),
                                first_retry.unwrap_or_default()
                            );
                            pending = retry;
                            (r.retry_after, why)
                        }
                        // Unreadable: send every pending item again; ids make that safe.
                        Err(e) => (None, e),
                    },
                    Verdict::DeadLetter => {
                        let status = StatusCode::from_u16(r.status)
                            .map_or(r.status.to_string(), |s| s.to_string());
                        let why = format!("HTTP {status}: {}", r.body.trim());
                        for &i in &pending {
                            refused.push(refusal(&items[i], r.status, &why));
                        }
                        break;
                    }
                    v => {
                        if v == Verdict::RetryAuth {
                            let n = self.counters.auth_failures.fetch_add(1, Ordering::Relaxed) + 1;
                            tracing::error!(sink = %self.cfg.name, status = r.status, auth_failures = n, "the SIEM refuses our credentials; retrying (check api_key or username/password)");
                        }
                        (r.retry_after, format!("HTTP {}", r.status))
                    }
                },
            };
            let wait = retries.failed(named);
            self.failed_attempt(batch.seq, &why, wait, stop).await?;
        }
        if refused.is_empty() {
            self.counters.delivered(lines(batch));
            if let Some(attempts) = retries.retried() {
                tracing::info!(sink = %self.cfg.name, seq = batch.seq, attempts, "delivered after retries");
            }
        } else {
            // The batch is dead-lettered, but the events that are in the index were
            // delivered: lines out must add up to the lines the SIEM holds.
            let refused_events = refused.iter().filter(|r| !r["event"].is_null()).count();
            self.counters.lines_delivered.fetch_add(
                lines(batch).saturating_sub(refused_events as u64),
                Ordering::Relaxed,
            );
            let reason = format!(
                "{} of {} bulk items refused: {}",
                refused.len(),
                items.len(),
                refused[0]["error"].as_str().unwrap_or("")
            );
            let refused = serde_json::Value::Array(refused);
            tokio::task::block_in_place(|| self.dead_letter_items(batch, &reason, Some(refused)));
        }
        Ok(())
    }

    /// Writes the batch and the reason to the dead-letter directory. If that fails too the
    /// batch is kept: delivery retries it after a pause, never drops it.
    fn dead_letter(&self, batch: &Sealed, reason: &str) {
        self.dead_letter_items(batch, reason, None)
    }

    /// [`Self::dead_letter`] for a batch of which only `items` were refused (the batch file
    /// is kept whole, so the refused events can be checked against its seal).
    fn dead_letter_items(&self, batch: &Sealed, reason: &str, items: Option<serde_json::Value>) {
        let dir = &self.cfg.dead_letter_dir;
        let path = dir.join(file_name(batch.seq));
        let mut reason_path = path.clone().into_os_string();
        reason_path.push(".reason.json");
        let mut reason_json = serde_json::json!({
            "sink": self.cfg.name,
            "seq": batch.seq,
            "hash": batch.hash,
            "reason": reason,
            "at": crate::event::now_rfc3339(),
        });
        if let Some(items) = items {
            reason_json["items"] = items;
        }
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
        // A permanent refusal is an answer: the sink is not failing, it moves on.
        self.counters.answered();
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
        if let ForwardKind::SplunkHec { ack: Some(ack), .. } = &self.cfg.kind {
            let ack = ack.clone();
            return self.run_acked(spool, tip, drain, stop, ack).await;
        }
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
                    if self.idle(&spool, &mut tip, &mut drain, &mut stop).await {
                        continue;
                    }
                    return;
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
            let delivered = match self.cfg.kind {
                ForwardKind::Elasticsearch { .. } => self.deliver_bulk(&batch, &mut stop).await,
                _ => self.deliver(&batch, &mut stop).await.map(drop),
            };
            if delivered.is_err() {
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

    /// [`Self::run`] for `splunk_hec` with indexer acknowledgement: up to `max_pending`
    /// batches sent and awaiting indexing; the spool is acknowledged in seq order, each batch
    /// only once Splunk reports it indexed (or it was dead-lettered). A batch whose
    /// acknowledgement does not come within `ack.timeout` is sent again (at least once: it
    /// may be indexed twice). After a restart the channel is new and every batch the spool
    /// holds unacknowledged is sent again.
    async fn run_acked(
        mut self,
        spool: Arc<Mutex<Spool>>,
        mut tip: watch::Receiver<u64>,
        mut drain: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
        ack: HecAck,
    ) {
        struct InFlight {
            batch: Sealed,
            /// `None` once indexed or dead-lettered.
            ack_id: Option<u64>,
            sent: Instant,
        }
        let name = self.cfg.name.clone();
        let (ack_path, ack_headers) = self.ack.clone().expect("indexer_ack has an ack endpoint");
        let mut flight: VecDeque<InFlight> = VecDeque::new();
        let mut sent_to = self.acked(&spool);
        let mut warned = false;
        loop {
            while flight.len() < ack.max_pending {
                match tokio::task::block_in_place(|| read_after(&spool, sent_to)) {
                    Ok(Some(batch)) => {
                        let Ok(ack_id) = self.send_for_ack(&batch, &mut stop, &mut warned).await
                        else {
                            return;
                        };
                        sent_to = batch.seq;
                        flight.push_back(InFlight {
                            batch,
                            ack_id,
                            sent: Instant::now(),
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(sink = %name, error = %e, "reading the spool failed; retrying");
                        break;
                    }
                }
            }
            while flight.front().is_some_and(|f| f.ack_id.is_none()) {
                let seq = flight.pop_front().expect("front").batch.seq;
                if self.ack_spool(&spool, seq, &mut stop).await.is_err() {
                    return;
                }
            }
            if flight.is_empty() {
                let more = tokio::task::block_in_place(|| {
                    spool
                        .lock()
                        .expect("spool lock")
                        .next_after(sent_to)
                        .is_some()
                });
                if more || self.idle(&spool, &mut tip, &mut drain, &mut stop).await {
                    continue;
                }
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(ack.interval) => {}
                _ = crate::pipeline::stopped(&mut stop) => return,
            }
            let ids: Vec<u64> = flight.iter().filter_map(|f| f.ack_id).collect();
            let body = serde_json::json!({ "acks": ids }).to_string();
            self.counters
                .bytes_sent
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            match self
                .client
                .as_mut()
                .expect("an HTTP sink has a client")
                .post_to(&ack_path, &ack_headers, Bytes::from(body))
                .await
            {
                Ok(r) if r.status == 200 => {
                    let acks = serde_json::from_slice::<serde_json::Value>(&r.raw)
                        .map(|mut v| v["acks"].take())
                        .unwrap_or_default();
                    for f in flight.iter_mut() {
                        if let Some(id) = f.ack_id {
                            if acks[id.to_string()] == serde_json::Value::Bool(true) {
                                f.ack_id = None;
                                self.counters.delivered(lines(&f.batch));
                            }
                        }
                    }
                }
                Ok(r) => {
                    if matches!(classify(r.status), Verdict::RetryAuth) {
                        self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    // Nothing gets acknowledged while polls fail: a failure for /health.
                    self.counters.failure();
                    tracing::warn!(sink = %name, status = r.status, response = %r.body.trim(), "polling indexer acknowledgements failed; will poll again");
                }
                Err(e) => {
                    self.counters.failure();
                    tracing::warn!(sink = %name, error = %e, "polling indexer acknowledgements failed; will poll again")
                }
            }
            for f in flight.iter_mut() {
                if f.ack_id.is_some() && f.sent.elapsed() >= ack.timeout {
                    self.counters.failure();
                    tracing::warn!(sink = %name, seq = f.batch.seq, ack_timeout = ?ack.timeout, "no indexer acknowledgement within ack_timeout; sending the batch again");
                    let Ok(ack_id) = self.send_for_ack(&f.batch, &mut stop, &mut warned).await
                    else {
                        return;
                    };
                    f.ack_id = ack_id;
                    f.sent = Instant::now();
                }
            }
        }
    }

    /// Sends a batch for indexer acknowledgement: its `ackId`, or `None` when there is
    /// nothing to wait for (dead-lettered, or the token has acknowledgement off).
    async fn send_for_ack(
        &mut self,
        batch: &Sealed,
        stop: &mut watch::Receiver<bool>,
        warned: &mut bool,
    ) -> Result<Option<u64>, ()> {
        let Some(body) = self.deliver(batch, stop).await? else {
            return Ok(None);
        };
        let id = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["ackId"].as_u64());
        if id.is_none() {
            self.counters.delivered(lines(batch));
        }
        if id.is_none() && !*warned {
            *warned = true;
            tracing::warn!(sink = %self.cfg.name, "indexer_ack = true but Splunk sent no ackId (acknowledgement is off for this token): batches count as delivered when accepted");
        }
        Ok(id)
    }

    /// Records in the spool that this sink has every batch up to `seq`; retries until it
    /// can, or until `stop`.
    async fn ack_spool(
        &self,
        spool: &Mutex<Spool>,
        seq: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        loop {
            let r = tokio::task::block_in_place(|| {
                spool.lock().expect("spool lock").ack(&self.cfg.name, seq)
            });
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::error!(sink = %self.cfg.name, error = %e, "recording delivery in the spool failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = crate::pipeline::stopped(stop) => return Err(()),
                    }
                }
            }
        }
    }

    /// The retries of one batch, with this sink's `retry_initial` and `retry_max`.
    fn retries(&self) -> Retries {
        Retries::new(self.cfg.retry_initial, self.cfg.retry_max)
    }

    /// After a failed attempt: counts and logs it, then waits `wait`. `Err` when `stop`
    /// turns true first.
    async fn failed_attempt(
        &self,
        seq: u64,
        why: &str,
        wait: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        self.counters.failure();
        tracing::warn!(sink = %self.cfg.name, seq, error = %why, retry_in = ?wait, "delivery failed; will retry");
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = crate::pipeline::stopped(stop) => Err(()),
        }
    }

    /// Waits while the spool has nothing more for this sink. `false` when the loop is over:
    /// `stop`, or `drain` with everything acknowledged (or `tip` closed while draining).
    async fn idle(
        &self,
        spool: &Mutex<Spool>,
        tip: &mut watch::Receiver<u64>,
        drain: &mut watch::Receiver<bool>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if *drain.borrow() && *tip.borrow() <= self.acked(spool) {
            return false;
        }
        tokio::select! {
            r = tip.changed() => if r.is_err() && *drain.borrow() { return false },
            _ = crate::pipeline::stopped(drain) => {}
            _ = crate::pipeline::stopped(stop) => return false,
        }
        // Re-check; also guards against a closed `tip` spinning.
        tokio::time::sleep(Duration::from_millis(1)).await;
        true
    }

    fn acked(&self, spool: &Mutex<Spool>) -> u64 {
        spool.lock().expect("spool lock").acked(&self.cfg.name)
    }
}

/// What `check-config` checks of a forwarding sink without touching the network or the
/// disk: the url, the TLS settings (CA file), and that its secrets can be read.
pub fn check(cfg: &ForwardConfig, base: &Path) -> Result<(), String> {
    let name = &cfg.name;
    if let ForwardKind::Syslog(s) = &cfg.kind {
        if s.tls {
            tls_config(cfg).map_err(|e| format!("sink {name}: {e}"))?;
        }
        return Ok(());
    }
    Client::new(cfg, "/").map_err(|e| format!("sink {name}: {e}"))?;
    let secret = match &cfg.kind {
        ForwardKind::Syslog(_) => None,
        ForwardKind::SplunkHec { token, .. } => Some((token, "token")),
        ForwardKind::Http { authorization, .. } => {
            authorization.as_ref().map(|a| (a, "authorization"))
        }
        ForwardKind::Elasticsearch { auth, .. } => match auth {
            Some(EsAuth::ApiKey(k)) => Some((k, "api_key")),
            Some(EsAuth::Basic { password, .. }) => Some((password, "password")),
            None => None,
        },
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

/// Lines (events) in a batch, for the lines-delivered counter.
pub(crate) fn lines(batch: &Sealed) -> u64 {
    crate::seal::parse(&batch.bytes).map_or(0, |p| p.header.count)
}

/// The first batch after `after` that the spool holds.
fn read_after(spool: &Mutex<Spool>, after: u64) -> io::Result<Option<Sealed>> {
    let mut s = spool.lock().expect("spool lock");
    let Some(seq) = s.next_after(after) else {
        return Ok(None);
    };
    Ok(s.read(seq)?.map(|bytes| {
        let hash = crate::seal::parse(&bytes)
            .map(|p| crate::seal::header_hash(p.header_line))
            .unwrap_or_default();
        Sealed { seq, hash, bytes }
    }))
}

/// An error and its causes: hyper's own message ("connection error") hides the TLS alert
/// that says why (a missing client certificate, say).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
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
    fn endpoints_and_channel() {
        let u: Uri = "https://es:9200".parse().unwrap();
        assert!(bulk_path(&u).starts_with("/_bulk?filter_path=errors,"));
        let u: Uri = "https://es:9200/proxy/_bulk/?pipeline=ci".parse().unwrap();
        assert!(
            bulk_path(&u).starts_with("/proxy/_bulk?pipeline=ci&filter_path="),
            "{}",
            bulk_path(&u)
        );
        assert_eq!(
            hec_ack_path("/services/collector/event"),
            "/services/collector/ack"
        );
        assert_eq!(
            hec_ack_path("/splunk/services/collector/event/1.0"),
            "/splunk/services/collector/ack"
        );
        let (a, b) = (channel_uuid(), channel_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn retry_after_and_backoff() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("100000"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon"), None);
        // An HTTP date: the time from now until then; a past date leaves it to the backoff.
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:27:00 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:00 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after_at("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            parse_retry_after_at("Wednesday, 21-Oct-15 07:28:02 GMT", now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after_at("Wed Oct 21 07:28:03 2015", now),
            Some(Duration::from_secs(3))
        );
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(backoff(i, m, 0, 0.0), i);
        assert_eq!(backoff(i, m, 3, 0.0), Duration::from_millis(800));
        assert_eq!(backoff(i, m, 30, 0.0), m);
        assert_eq!(backoff(i, m, 1, 1.0), Duration::from_millis(100));
        assert!(backoff(i, m, 40, 0.5) <= m);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn retries_back_off_count_and_take_a_named_pause() {
        let ms = Duration::from_millis;
        let mut r = Retries::new(ms(100), ms(400));
        assert_eq!(r.retried(), None);
        // Jitter takes up to half away: each pause is in (d/2, d].
        for d in [100, 200, 400, 400] {
            let w = r.failed(None);
            assert!(w > ms(d / 2) && w <= ms(d), "{w:?} for {d} ms");
        }
        assert_eq!(r.retried(), Some(5));
        // A Retry-After is taken as it is, and counted: the backoff goes on from there.
        let mut r = Retries::new(ms(100), ms(10_000));
        assert_eq!(
            r.failed(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(r.failed(Some(ms(1))), ms(1));
        let w = r.failed(None);
        assert!(w > ms(200) && w <= ms(400), "{w:?}");
        assert_eq!(r.retried(), Some(4));
    }
}
