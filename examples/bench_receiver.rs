//! A minimal HTTPS receiver for `benches/forward_bench.sh`: accepts `http` sink bodies
//! (NDJSON, optionally gzip), answers 200, and counts lines by the seal line that starts each
//! body (each batch seq counted once).
//!
//! ```text
//! bench_receiver DIR EXPECT_LINES
//! ```
//!
//! Makes a throwaway CA and a `localhost` certificate (rcgen), writes `DIR/ca.pem`, listens on
//! a free loopback port and writes it to `DIR/port`; once EXPECT_LINES lines have arrived it
//! writes the Unix time (seconds, fractional) to `DIR/done` and keeps serving until killed.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio_rustls::rustls;

struct State {
    dir: PathBuf,
    expect: u64,
    lines: AtomicU64,
    seqs: Mutex<std::collections::HashSet<u64>>,
    done: AtomicBool,
}

fn count(st: &State, data: &[u8]) {
    let nl = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let Ok(seal) = serde_json::from_slice::<serde_json::Value>(&data[..nl]) else {
        eprintln!("bench_receiver: body without a seal line");
        return;
    };
    let seq = seal["logveil_seal"]["seq"].as_u64().unwrap_or(0);
    let n = seal["logveil_seal"]["header"]["count"]
        .as_u64()
        .unwrap_or(0);
    if !st.seqs.lock().unwrap().insert(seq) {
        return;
    }
    let total = st.lines.fetch_add(n, Ordering::Relaxed) + n;
    if total >= st.expect && !st.done.swap(true, Ordering::Relaxed) {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        std::fs::write(st.dir.join("done"), format!("{:.6}\n", t.as_secs_f64())).unwrap();
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    st: Arc<State>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let gz = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let data = if gz {
        let mut d = Vec::with_capacity(body.len() * 4);
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut d)
            .is_err()
        {
            return Ok(hyper::Response::builder()
                .status(400)
                .body(Full::new(Bytes::from_static(b"bad gzip")))
                .unwrap());
        }
        d
    } else {
        body.to_vec()
    };
    count(&st, &data);
    Ok(hyper::Response::new(Full::new(Bytes::from_static(b"{}"))))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(expect)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("usage: bench_receiver DIR EXPECT_LINES");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let st = Arc::new(State {
        dir: dir.clone(),
        expect,
        lines: AtomicU64::new(0),
        seqs: Mutex::new(Default::default()),
        done: AtomicBool::new(false),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        std::fs::write(dir.join("port"), format!("{port}\n")).unwrap();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, st) = (acceptor.clone(), st.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |r| handle(r, st.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
}
