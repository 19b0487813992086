//! mTLS on an HTTP sink: an in-test HTTPS receiver that requires a client certificate signed
//! by its CA accepts the agent with `client_cert`/`client_key` and refuses it without. (The
//! syslog sink's mTLS is tested against rsyslog in `syslog.rs`.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::receiver::{pki, read_request, server_config, tls_server, Pki};
use crate::util::*;

/// Starts an HTTPS receiver that requires client certificates from `pki`'s CA; answers 200 to
/// every request and counts the requests. Returns the port.
fn receiver(pki: &Pki, requests: Arc<AtomicUsize>) -> u16 {
    tls_server(
        server_config(pki, true),
        || false,
        move |mut s| {
            let requests = requests.clone();
            async move {
                let mut buf = Vec::new();
                while read_request(&mut s, &mut buf).await.is_some() {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                    if s.write_all(ok.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        },
    )
}

#[test]
fn http_sink_mtls_client_certificate_is_required_and_accepted() {
    let pki = pki("http-mtls");
    let requests = Arc::new(AtomicUsize::new(0));
    let port = receiver(&pki, requests.clone());
    let s = Setup::new("mtls-http");
    let dir = &s.dir;
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
