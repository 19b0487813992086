//! The `syslog` sink: RFC 5424 messages over one TCP connection, TLS by default (RFC 5425),
//! octet-counting framing (`LEN SP MSG`, RFC 6587 3.4.1), messages built in `rfc5424`.
//!
//! Syslog has no application-level acknowledgement. A batch counts as delivered once all of
//! its messages are written and flushed to the connection; what the receiver does with the
//! bytes after that is not known. To narrow the gap:
//! - before each batch the connection is polled once: a receiver that closed it (restart,
//!   idle timeout) is noticed and the batch goes on a new connection;
//! - after a new connection is set up, the agent waits briefly for the receiver to close it
//!   again: with TLS 1.3 the client finishes its handshake before the server has checked the
//!   client's certificate, and a refusal only shows as an alert or a close right after;
//! - on any error the connection is dropped and the whole batch is sent again on a new one
//!   (at-least-once: a receiver may get some messages twice; `i` in the structured data tells
//!   the copies apart, and `logveil verify --syslog` keeps one).
//!
//! A receiver that crashes after the agent's flush loses what was in flight, as with any
//! syslog sender; a SIEM that must not lose lines wants an HTTP sink (a 2xx is an answer).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{ForwardConfig, SyslogConfig};
use crate::seal::Sealed;
use crate::sink::forward::{tls_config, Counters, Retries};
use crate::sink::rfc5424;

/// How long a new connection must stay open before a batch is written on it.
const SETTLE: Duration = Duration::from_millis(300);

/// How a delivery ended.
#[derive(Debug)]
pub enum Outcome {
    /// Written and flushed.
    Delivered,
    /// The batch cannot be turned into messages: dead-letter it.
    Unencodable(String),
    /// Stopped before it was delivered.
    Stopped,
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Conn {
    fn io(&mut self) -> &mut dyn Stream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.as_mut(),
        }
    }

    /// Whether the receiver has closed (or reset) the connection, from one poll: a syslog
    /// receiver sends nothing, so end-of-stream or an error is the only thing to see.
    async fn closed_by_peer(&mut self) -> Option<String> {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::ZERO, self.io().read(&mut buf)).await {
            Err(_) => None,
            Ok(Ok(0)) => Some("the receiver closed the connection".into()),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("the connection failed: {e}")),
        }
    }
}

impl Drop for Conn {
    /// Closes politely where it can without waiting: a TLS close_notify, and the socket's
    /// unread bytes drained first, so the kernel ends with FIN rather than RST (an RST can make
    /// the receiver drop data it has not read yet).
    fn drop(&mut self) {
        struct TryWrite<'a>(&'a TcpStream);
        impl io::Write for TryWrite<'_> {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.try_write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let tcp = match self {
            Conn::Plain(s) => &*s,
            Conn::Tls(s) => {
                let (tcp, tls) = s.get_mut();
                tls.send_close_notify();
                while tls.wants_write() {
                    if tls.write_tls(&mut TryWrite(tcp)).is_err() {
                        break;
                    }
                }
                &*tcp
            }
        };
        let mut buf = [0u8; 4096];
        while matches!(tcp.try_read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// A syslog receiver and the connection to it.
pub struct SyslogSink {
    name: String,
    endpoint: String,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    pri: u8,
    timeout: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    conn: Option<Conn>,
}

impl SyslogSink {
    /// Builds the TLS configuration (reading CA and client certificate files); warns when
    /// TLS or certificate checks are off. Connects only when there is something to send.
    pub fn open(cfg: &ForwardConfig, s: &SyslogConfig) -> Result<SyslogSink, String> {
        let name = &cfg.name;
        let tls = if s.tls {
            let server = cfg.server_name.clone().unwrap_or_else(|| s.host.clone());
            let server_name = ServerName::try_from(server.clone())
                .map_err(|_| format!("sink {name}: server name {server:?} is not valid"))?;
            let config = tls_config(cfg).map_err(|e| format!("sink {name}: {e}"))?;
            Some((TlsConnector::from(Arc::new(config)), server_name))
        } else {
            tracing::warn!(
                sink = %name,
                endpoint = %cfg.url,
                "tls = false: syslog messages travel in clear text; anyone on the path can read and change them"
            );
            None
        };
        Ok(SyslogSink {
            name: name.clone(),
            endpoint: cfg.url.clone(),
            host: s.host.clone(),
            port: s.port,
            tls,
            pri: s.pri,
            timeout: cfg.timeout,
            retry_initial: cfg.retry_initial,
            retry_max: cfg.retry_max,
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Conn, String> {
        let ep = &self.endpoint;
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect {ep}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut conn = match &self.tls {
            None => Conn::Plain(tcp),
            Some((connector, server_name)) => Conn::Tls(Box::new(
                connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {ep}: {e}"))?,
            )),
        };
        // A refusal after the handshake (client certificate, access list) shows now.
        let mut buf = [0u8; 512];
        match tokio::time::timeout(SETTLE, conn.io().read(&mut buf)).await {
            Err(_) | Ok(Ok(1..)) => Ok(conn),
            Ok(Ok(0)) => Err(format!(
                "{ep} closed the connection right after it was set up; does it require a client certificate, or refuse this host?"
            )),
            Ok(Err(e)) => Err(format!(
                "{ep} ended the session right after the handshake ({e}); does it require a client certificate, or refuse this host?"
            )),
        }
    }

    /// One attempt: (re)connect when needed, write every frame, flush.
    async fn send(&mut self, frames: &[u8]) -> Result<(), String> {
        let ep = self.endpoint.clone();
        let timeout = self.timeout;
        let attempt = async {
            if let Some(c) = &mut self.conn {
                if let Some(why) = c.closed_by_peer().await {
                    tracing::info!(sink = %self.name, endpoint = %ep, reason = %why, "reconnecting");
                    self.conn = None;
                }
            }
            if self.conn.is_none() {
                self.conn = Some(self.connect().await?);
            }
            let io = self.conn.as_mut().expect("connected").io();
            io.write_all(frames)
                .await
                .map_err(|e| format!("writing to {ep}: {e}"))?;
            io.flush()
                .await
                .map_err(|e| format!("writing to {ep}: {e}"))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("{ep} did not take the batch within {timeout:?}")),
        }
    }

    /// Delivers one batch: returns once it is written and flushed, retrying on a new
    /// connection (the whole batch) with capped backoff and jitter for as long as it takes.
    pub async fn deliver(
        &mut self,
        batch: &Sealed,
        stop: &mut watch::Receiver<bool>,
        counters: &Counters,
    ) -> Outcome {
        let frames = match rfc5424::batch_frames(batch, self.pri) {
            Ok(f) => f,
            Err(e) => return Outcome::Unencodable(e),
        };
        let mut retries = Retries::new(self.retry_initial, self.retry_max);
        loop {
            // A stalled receiver must not hold up a shutdown for `timeout`: a batch cut off
            // here is not acknowledged, and the next start sends it again.
            // Bytes handed to the connection (before TLS), every attempt.
            counters
                .bytes_sent
                .fetch_add(frames.len() as u64, Ordering::Relaxed);
            let sent = tokio::select! {
                r = self.send(&frames) => r,
                _ = crate::pipeline::stopped(stop) => {
                    self.conn = None;
                    return Outcome::Stopped;
                }
            };
            match sent {
                Ok(()) => {
                    counters.delivered(crate::sink::forward::lines(batch));
                    if let Some(attempts) = retries.retried() {
                        tracing::info!(sink = %self.name, endpoint = %self.endpoint, seq = batch.seq, attempts, "delivered after retries");
                    }
                    return Outcome::Delivered;
                }
                Err(e) => {
                    self.conn = None;
                    let wait = retries.failed(None);
                    counters.failure();
                    tracing::warn!(sink = %self.name, endpoint = %self.endpoint, seq = batch.seq, error = %e, retry_in = ?wait, "delivery failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = crate::pipeline::stopped(stop) => return Outcome::Stopped,
                    }
                }
            }
        }
    }
}
