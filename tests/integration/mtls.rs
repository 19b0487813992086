//! mTLS on an HTTP sink: an in-test HTTPS receiver that requires a client certificate signed
//! by its CA accepts the agent with `client_cert`/`client_key` and refuses it without. (The
//! syslog sink's mTLS is tested against rsyslog in `syslog.rs`.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::syslog::pki;
use crate::util::*;

/// Starts an HTTPS receiver that requires client certificates from `ca_pem`; answers 200 to
/// every request and counts the requests. Returns the port.
fn receiver(pki: &crate::syslog::Pki, requests: Arc<AtomicUsize>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, requests) = (acceptor.clone(), requests.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0u8; 8192];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < end + 4 + len {
                            let mut chunk = [0u8; 65536];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + len);
                        requests.fetch_add(1, Ordering::SeqCst);
                        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                        if s.write_all(ok.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    port
}

#[test]
fn http_sink_mtls_client_certificate_is_required_and_accepted() {
    let pki = pki("http-mtls");
    let requests = Arc::new(AtomicUsize::new(0));
    let port = receiver(&pki, requests.clone());
    let dir = TempDir::new("mtls-http");
    let out = logveil(&["keygen", "--out", dir.path().join("keys").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ca = dir.write("ca.pem", pki.ca_pem.as_bytes());
    let cert = dir.write("client.pem", pki.client_cert.as_bytes());
    let key = dir.write("client.key", pki.client_key.as_bytes());
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let config = |client: &str| {
        let text = format!(
            r#"data_dir = {data:?}
[[source]]
type = "stdin"
[seal]
key = "file:{key}"
[spool]
drain_timeout = "1s"
[[sink]]
type = "http"
url = "https://localhost:{port}/ingest"
ca_file = {ca:?}
gzip = false
retry_initial = "50ms"
retry_max = "200ms"
{client}"#,
            data = dir.path().join("state"),
            key = dir.path().join("keys/seal.key").display(),
        );
        dir.write("config.toml", text.as_bytes())
    };
    let run = |cfg: &std::path::Path| {
        run_with_input(
            {
                let mut c = logveil(&["agent", "--config", cfg.to_str().unwrap()]);
                c.stdin(Stdio::piped());
                c
            },
            b"line one\nline two\n",
        )
    };

    // Without a client certificate: refused, nothing accepted, the spool keeps the batch.
    let out = run(&config(""));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    let refusal = log
        .lines()
        .find(|l| l.contains("delivery failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        refusal.contains(&format!("localhost:{port}")) && refusal.contains("CertificateRequired"),
        "{refusal}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0);

    // With it: the spooled batch and the new one are delivered.
    let out = run(&config(&format!(
        "client_cert = {cert:?}\nclient_key = {key:?}\n"
    )));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        requests.load(Ordering::SeqCst) >= 2,
        "{}",
        text(&out.stderr)
    );
}
