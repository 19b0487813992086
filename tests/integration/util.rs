//! Running the binary with a clean environment in a temporary directory, and watching an
//! agent run (its log, its `/metrics`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_logveil")
}

/// A command for the binary, environment cleared except PATH.
pub fn logveil(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c
}

/// Runs with `input` on stdin; returns the output.
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logveil");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait logveil");
    writer.join().unwrap();
    out
}

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "logveil-it-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    #[allow(dead_code)]
    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` until it holds; fails the test naming `what` after `secs`.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn sigterm(child: &Child) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// A running `logveil agent`, its stderr in a file. Killed if the test ends without `stop`.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
    stop_within: Duration,
}

impl Agent {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits for the exit; fails the test if it takes longer than the
    /// set-up's `stop_within`.
    pub fn stop(self) -> (ExitStatus, String) {
        sigterm(self.child.as_ref().unwrap());
        let within = self.stop_within;
        self.exit_within(within, "stop")
    }

    /// Waits for the agent to exit by itself.
    pub fn wait(self, secs: u64) -> (ExitStatus, String) {
        self.exit_within(Duration::from_secs(secs), "exit")
    }

    /// Waits for the exit; past `within`, kills the agent and fails the test ("agent did
    /// not `what`") with its log.
    fn exit_within(mut self, within: Duration, what: &str) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return (s, self.log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not {what}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown at all; the log stays readable.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An agent's directory: a seal key pair in `keys/`, a `logs/` directory its file source
/// tails, its state in `state/`.
pub struct Setup {
    pub dir: TempDir,
    runs: u32,
    env: Vec<(String, String)>,
    stop_within: Duration,
}

impl Setup {
    pub fn new(tag: &str) -> Setup {
        let dir = TempDir::new(tag);
        let out = logveil(&["keygen", "--out", dir.path().join("keys").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        Setup {
            dir,
            runs: 0,
            env: Vec::new(),
            stop_within: Duration::from_secs(20),
        }
    }

    /// Sets `key` in the environment of every agent started from here.
    pub fn env(mut self, key: &str, value: &str) -> Setup {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long `Agent::stop` waits (20 s unless set).
    pub fn stop_within(mut self, secs: u64) -> Setup {
        self.stop_within = Duration::from_secs(secs);
        self
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `config.toml`: `data_dir`, a file source on `logs/*.log`, the seal key, one
    /// sink. `top` goes before the first table; `batch`, `spool` and `sink` are the bodies of
    /// those tables (each ends with a newline, or is empty).
    pub fn write_config(&self, top: &str, batch: &str, spool: &str, sink: &str) {
        let text = format!(
            r#"data_dir = {data:?}
{top}[[source]]
type = "file"
include = [{logs:?}]
poll_interval = "50ms"
[batch]
{batch}[seal]
key = "file:{key}"
[spool]
{spool}[[sink]]
{sink}"#,
            data = self.p("state"),
            logs = self.p("logs/*.log"),
            key = self.p("keys/seal.key").display(),
        );
        self.dir.write("config.toml", text.as_bytes());
    }

    /// Starts `logveil agent` on `config.toml`; each run logs to its own `agent-N.log`.
    pub fn start(&mut self) -> Agent {
        let log = self.p(&format!("agent-{}.log", self.runs));
        self.runs += 1;
        let child = logveil(&["agent", "--config", self.p("config.toml").to_str().unwrap()])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent {
            child: Some(child),
            log,
            stop_within: self.stop_within,
        }
    }
}

/// A `[metrics]` table serving `/metrics` and `/health` on 127.0.0.1:`port`, with
/// `unhealthy_after` when given (a duration, e.g. `"1s"`). Ends with a newline.
pub fn metrics_table(port: u16, unhealthy_after: Option<&str>) -> String {
    let mut t = format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n");
    if let Some(d) = unhealthy_after {
        t.push_str(&format!("unhealthy_after = {d:?}\n"));
    }
    t
}

/// `GET path` on the agent's metrics endpoint: (status, body).
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The value of one sample line of a scrape (`name` includes the labels).
pub fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// One sample of the agent's `/metrics` on `port`.
pub fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, m) = get(port, "/metrics")?;
    sample(&m, name)
}
