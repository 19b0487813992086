//! The `syslog` sink against a real rsyslog (Debian's `rsyslog` + `rsyslog-gnutls`, installed
//! by `.ci/run`): the test starts `rsyslogd` itself on a free port with its own config, a TLS
//! listener (gtls) holding a certificate from a CA made here, and a file action that writes
//! each message as received (`%rawmsg%`). rsyslog keeps its default escaping of control
//! characters, as most installations do.
//!
//! Without rsyslogd these tests fail when `CI=true` and are skipped with a warning otherwise.

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::receiver::{pki, Pki};
use crate::util::*;

const SECRET: &str = "AKIAQ3EGRT5YJX7WZL2M";

/// Where rsyslogd is, or `None` (and a warning) when it is missing outside CI.
fn rsyslogd() -> Option<PathBuf> {
    let found = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("rsyslogd"))
                    .find(|p| p.exists())
            })
        });
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("rsyslogd is not installed: the syslog tests need a real rsyslog (apt-get install rsyslog rsyslog-gnutls; .ci/run does this)");
        }
        eprintln!("WARNING: rsyslogd is not installed; skipping the syslog test (CI=true makes this a failure)");
    }
    found
}

/// An rsyslogd of this test: TLS listener on 127.0.0.1:`port`, messages to `received`.
struct Rsyslog {
    child: Option<Child>,
    dir: PathBuf,
    received: PathBuf,
}

impl Rsyslog {
    /// Starts rsyslogd and waits until it accepts connections. `auth_mode` is gtls's
    /// `StreamDriver.AuthMode`: `anon` (no client certificate) or `x509/certvalid` (a client
    /// certificate signed by the CA is required).
    fn start(bin: &Path, dir: &Path, port: u16, pki: &Pki, auth_mode: &str) -> Rsyslog {
        fs::create_dir_all(dir.join("work")).unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        let ca = file("ca.pem", &pki.ca_pem);
        let cert = file("server.pem", &pki.server_cert);
        let key = file("server.key", &pki.server_key);
        let received = dir.join("received.log");
        let conf = format!(
            r#"global(
  workDirectory="{work}"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
  maxMessageSize="64k"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{auth_mode}")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="agent")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="agent") {{
  action(type="omfile" file="{received}" template="raw")
  action(type="omfile" file="{protocol23}" template="RSYSLOG_SyslogProtocol23Format")
}}
*.* action(type="omfile" file="{internal}")
"#,
            work = dir.join("work").display(),
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
            received = received.display(),
            protocol23 = dir.join("protocol23.log").display(),
            internal = dir.join("rsyslog-internal.log").display(),
        );
        let conf_path = file("rsyslog.conf", &conf);
        let mut child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("rsyslogd.out")).unwrap())
            .stderr(fs::File::create(dir.join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = child.try_wait().unwrap() {
                panic!(
                    "rsyslogd exited ({s}) before listening on {port}:\n{}{}",
                    fs::read_to_string(dir.join("rsyslogd.err")).unwrap_or_default(),
                    fs::read_to_string(dir.join("rsyslogd.out")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd does not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Rsyslog {
            child: Some(child),
            dir: dir.to_path_buf(),
            received,
        }
    }

    fn received(&self) -> String {
        fs::read_to_string(&self.received).unwrap_or_default()
    }

    fn internal_log(&self) -> String {
        fs::read_to_string(self.dir.join("rsyslog-internal.log")).unwrap_or_default()
    }

    /// Stops rsyslogd (it flushes its files on SIGTERM).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm(&c);
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A config with one syslog sink whose extra keys are `sink`.
fn config(s: &Setup, sink: &str) {
    s.write_config(
        "",
        "max_events = 40\nmax_age = \"200ms\"\n",
        "drain_timeout = \"2s\"\n",
        &format!(
            r#"type = "syslog"
name = "rsyslog"
retry_initial = "50ms"
retry_max = "500ms"
timeout = "5s"
{sink}"#
        ),
    );
}

fn verify_syslog(s: &Setup, file: &Path) -> (bool, String) {
    let out = logveil(&[
        "verify",
        file.to_str().unwrap(),
        "--syslog",
        "--pubkey",
        s.p("keys/seal.pub").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// Appends `n` lines, from line number `first`: every 7th holds a secret, every 5th ANSI
/// colour, a tab and a carriage return (which rsyslog rewrites), every 11th quotes, a
/// backslash and a `]`. Returns the offsets of the lines.
fn append_lines(path: &Path, first: usize, n: usize) -> BTreeSet<u64> {
    let mut text = fs::read(path).unwrap_or_default();
    let mut offsets = BTreeSet::new();
    for i in first..first + n {
        offsets.insert(text.len() as u64);
        let line = if i % 7 == 0 {
            format!("line {i} export AWS_ACCESS_KEY_ID={SECRET}\n")
        } else if i % 5 == 0 {
            format!("line {i} \x1b[0;32mok\x1b[0m\ttook 3s\rprogress 100%\n")
        } else if i % 11 == 0 {
            format!("line {i} say \"hi\" C:\\temp [x] ]\n")
        } else {
            format!("line {i} compiling crate number {i}\n")
        };
        text.extend_from_slice(line.as_bytes());
    }
    fs::write(path, text).unwrap();
    offsets
}

/// Offsets of the event messages rsyslog wrote, each checked to be one RFC 5424 message
/// with the configured PRI and APP-NAME (so framing kept message boundaries).
fn received_offsets(received: &str, pri: &str) -> BTreeSet<u64> {
    let mut got = BTreeSet::new();
    for line in received.lines() {
        assert!(
            line.starts_with(&format!("{pri}1 ")),
            "not one whole RFC 5424 message with {pri}: {line:?}"
        );
        let fields: Vec<&str> = line.splitn(7, ' ').collect();
        assert_eq!(fields[3], "logveil", "{line:?}");
        match fields[5] {
            "line" => {
                let off = line
                    .split_once(" offset=\"")
                    .and_then(|(_, r)| r.split_once('"'))
                    .and_then(|(v, _)| v.parse().ok())
                    .unwrap_or_else(|| panic!("no offset in {line:?}"));
                got.insert(off);
            }
            "seal" => assert!(line.contains("[logveil-seal@32473 seq=\""), "{line:?}"),
            other => panic!("unexpected MSGID {other:?} in {line:?}"),
        }
    }
    got
}

#[test]
fn syslog_over_tls_to_rsyslog_delivers_every_line_and_verifies() {
    let Some(bin) = rsyslogd() else { return };
    let pki = pki("main");
    let mut s = Setup::new("syslog-tls");
    let port = free_port();
    let mport = free_port();
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    config(&s, &format!(
        "address = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\nca_file = {ca:?}\nfacility = \"local3\"\nseverity = \"notice\"\n{}",
        metrics_table(mport, None)
    ));
    let log = s.p("logs/job.log");
    let mut offsets = append_lines(&log, 0, 300);

    // The receiver is not up yet: the agent retries with backoff, naming the endpoint.
    let agent = s.start();
    wait_for("a refused connection", 15, || {
        agent.log().contains("delivery failed")
    });
    assert!(
        agent.log().contains(&format!("127.0.0.1:{port}")),
        "{}",
        agent.log()
    );
    let rdir = s.p("rsyslog");
    let mut rs = Rsyslog::start(&bin, &rdir, port, &pki, "anon");
    wait_for("every line at rsyslog", 30, || {
        received_offsets(&rs.received(), "<157>").is_superset(&offsets)
    });

    // rsyslog restarts: the agent notices the closed connection, reconnects and resends.
    rs.stop();
    offsets.extend(append_lines(&log, 300, 100));
    std::thread::sleep(Duration::from_millis(600));
    let mut rs = Rsyslog::start(&bin, &rdir, port, &pki, "anon");
    wait_for("every line after rsyslog restarted", 30, || {
        received_offsets(&rs.received(), "<157>").is_superset(&offsets)
    });
    // The syslog sink counts what it delivered: lines out equal lines in, and the
    // refused connections before rsyslog was up are counted as retries.
    let metric = |name: &str| metric(mport, name);
    wait_for("lines delivered to add up to lines in", 10, || {
        metric(r#"logveil_sink_lines_delivered_total{sink="rsyslog"}"#) == Some(400.0)
    });
    assert_eq!(metric("logveil_lines_in_total"), Some(400.0));
    assert!(metric(r#"logveil_sink_retries_total{sink="rsyslog"}"#) >= Some(1.0));
    assert!(metric(r#"logveil_sink_bytes_sent_total{sink="rsyslog"}"#) > Some(0.0));
    let (status, agent_log) = agent.stop();
    assert!(status.success(), "{agent_log}");
    rs.stop();

    let received = rs.received();
    assert_eq!(received_offsets(&received, "<157>"), offsets);
    assert!(
        !received.contains(SECRET),
        "a planted secret reached rsyslog"
    );
    assert!(
        received.contains("[REDACTED:"),
        "masked lines arrive masked"
    );
    // rsyslog's default escaping rewrote control characters in MSG; the exact line
    // travels in the structured data, so the batches still rebuild.
    assert!(
        received.contains("#033[0;32mok"),
        "{}",
        &received[..2000.min(received.len())]
    );
    assert!(!agent_log.contains(SECRET));
    assert!(agent_log.contains("reconnecting"), "{agent_log}");

    let (ok, out) = verify_syslog(&s, &rs.received);
    assert!(ok, "{out}");
    assert!(out.contains("OK"), "{out}");
    // rsyslog's RFC 5424 output template (reformatted header, structured data kept) too.
    let (ok, out) = verify_syslog(&s, &rdir.join("protocol23.log"));
    assert!(ok, "{out}");

    // The check can fail: a changed line, and a lost one, are caught.
    let target = received
        .lines()
        .find(|l| l.contains("compiling crate number 41"))
        .unwrap();
    let changed = received.replace(target, &target.replace("number 41", "number 43"));
    let tampered = s.dir.write("tampered.log", changed.as_bytes());
    let (ok, out) = verify_syslog(&s, &tampered);
    assert!(!ok && out.contains("modified"), "{out}");
    let without: String = received
        .lines()
        .filter(|l| *l != target)
        .map(|l| format!("{l}\n"))
        .collect();
    let lost = s.dir.write("lost.log", without.as_bytes());
    let (ok, out) = verify_syslog(&s, &lost);
    assert!(!ok && out.contains("incomplete"), "{out}");
}

#[test]
fn syslog_wrong_ca_or_server_name_is_refused() {
    let Some(bin) = rsyslogd() else { return };
    let pki = pki("real");
    let other = crate::receiver::pki("other");
    let port = free_port();
    let mut s = Setup::new("syslog-refused");
    let mut rs = Rsyslog::start(&bin, &s.p("rsyslog"), port, &pki, "anon");
    append_lines(&s.p("logs/job.log"), 0, 50);
    let wrong_ca = s.dir.write("other-ca.pem", other.ca_pem.as_bytes());
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    let cases = [
        (
            format!("address = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\nca_file = {wrong_ca:?}\n"),
            "UnknownIssuer",
        ),
        (
            format!("address = \"127.0.0.1:{port}\"\nserver_name = \"siem.example.org\"\nca_file = {ca:?}\n"),
            "not valid for name",
        ),
    ];
    for (sink, why) in cases {
        config(&s, &sink);
        let agent = s.start();
        wait_for("a refused TLS handshake", 15, || {
            agent.log().contains("delivery failed")
        });
        let (status, log) = agent.stop();
        assert!(status.success(), "{log}");
        let refusal = log.lines().find(|l| l.contains("delivery failed")).unwrap();
        assert!(
            refusal.contains(&format!("127.0.0.1:{port}")) && refusal.contains(why),
            "{refusal}"
        );
    }
    rs.stop();
    assert_eq!(rs.received(), "", "nothing may be delivered");
}

#[test]
fn syslog_mtls_client_certificate_is_required_and_accepted() {
    let Some(bin) = rsyslogd() else { return };
    let pki = pki("mtls");
    let port = free_port();
    let mut s = Setup::new("syslog-mtls");
    let mut rs = Rsyslog::start(&bin, &s.p("rsyslog"), port, &pki, "x509/certvalid");
    let offsets = append_lines(&s.p("logs/job.log"), 0, 120);
    let ca = s.dir.write("ca.pem", pki.ca_pem.as_bytes());
    let base =
        format!("address = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\nca_file = {ca:?}\n");

    // Without a client certificate rsyslog refuses the session; nothing is delivered.
    config(&s, &base);
    let agent = s.start();
    wait_for("a refused session", 15, || {
        agent.log().contains("delivery failed")
    });
    std::thread::sleep(Duration::from_millis(500));
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    let refusal = log.lines().find(|l| l.contains("delivery failed")).unwrap();
    assert!(
        refusal.contains(&format!("127.0.0.1:{port}")) && refusal.contains("client certificate"),
        "{refusal}"
    );
    assert_eq!(rs.received(), "", "delivered without a client certificate");

    // A client key others can read is refused before anything is sent.
    let cert = s.dir.write("client.pem", pki.client_cert.as_bytes());
    let key = s.dir.write("client.key", pki.client_key.as_bytes());
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    config(
        &s,
        &format!("{base}client_cert = {cert:?}\nclient_key = {key:?}\n"),
    );
    let out = logveil(&["agent", "--config", s.p("config.toml").to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("chmod 600") && text(&out.stderr).contains("client.key"),
        "{}",
        text(&out.stderr)
    );

    // With the certificate, the spooled batches arrive.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let agent = s.start();
    wait_for("every line with a client certificate", 30, || {
        received_offsets(&rs.received(), "<134>").is_superset(&offsets)
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
    rs.stop();
    let (ok, out) = verify_syslog(&s, &rs.received);
    assert!(ok, "{out}\n{}", rs.internal_log());
}

/// The commented-out syslog section of config.example.toml, uncommented, is a valid sink.
#[test]
fn example_config_syslog_section_is_valid() {
    let example =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"))
            .unwrap();
    let start = example
        .find("# [[sink]]\n# \"syslog\"")
        .expect("a syslog section");
    let section: String = example[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.starts_with("[[sink]]")
                || l.split_once(" = ")
                    .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(section.contains("type = \"syslog\""), "{section}");
    let s = Setup::new("syslog-example");
    let pki = pki("example");
    fs::create_dir_all(s.p("etc")).unwrap();
    s.dir.write("etc/syslog-ca.pem", pki.ca_pem.as_bytes());
    s.dir
        .write("etc/agent-cert.pem", pki.client_cert.as_bytes());
    let key = s.dir.write("etc/agent-key.pem", pki.client_key.as_bytes());
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let section = section.replace("/etc/logveil/", &format!("{}/", s.p("etc").display()));
    let cfg = s.dir.write(
        "example.toml",
        format!(
            "data_dir = {:?}\n[[source]]\ntype = \"stdin\"\n[seal]\nkey = \"file:keys/seal.key\"\n{section}",
            s.p("state")
        )
        .as_bytes(),
    );
    let out = logveil(&["check-config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{section}",
        text(&out.stderr)
    );
}
