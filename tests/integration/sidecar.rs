//! The runner sidecar (`agent --config`, `keygen`, `verify`, `check-config`) on real files,
//! real processes and real signals.
//!
//! Waits poll with generous deadlines; nothing depends on a fixed sleep being long enough.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::util::*;

const SECRETS: [&str; 3] = [
    "AKIAQ3EGRT5YJX7WZL2M",
    "ghp_Zk3Xw9Qm2Rt7Yp4Lb8Nc1Vd6Hf0Js5Ga2Ue9",
    "hunter2hunter2",
];

/// A line with a secret in it, and an id to find it by.
fn secret_line(id: &str, i: usize) -> String {
    match i % 3 {
        0 => format!("{id} export AWS_ACCESS_KEY_ID={}\n", SECRETS[0]),
        1 => format!("{id} using token {} for the push\n", SECRETS[1]),
        _ => format!("{id} login password={}\n", SECRETS[2]),
    }
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[derive(Deserialize, Debug, Clone)]
struct Ev {
    #[serde(skip)]
    seq: u64,
    host: String,
    job: Option<String>,
    source: String,
    offset: u64,
    line: String,
}

/// Reads batch files as they appear (each file is written once, atomically).
#[derive(Default)]
struct ArchiveReader {
    batches: BTreeMap<u64, Vec<Ev>>,
}

fn batch_seqs(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("batch-")?
                    .strip_suffix(".lvb")?
                    .parse()
                    .ok()
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl ArchiveReader {
    fn refresh(&mut self, dir: &Path) -> &Self {
        for seq in batch_seqs(dir) {
            if self.batches.contains_key(&seq) {
                continue;
            }
            let bytes = fs::read(dir.join(format!("batch-{seq:020}.lvb"))).unwrap();
            let text = String::from_utf8(bytes).expect("archive is UTF-8");
            let evs = text
                .lines()
                .skip(2)
                .map(|l| {
                    let mut e: Ev = serde_json::from_str(l).expect("event is JSON");
                    e.seq = seq;
                    e
                })
                .collect();
            self.batches.insert(seq, evs);
        }
        self
    }

    fn events(&self) -> impl Iterator<Item = &Ev> {
        self.batches.values().flatten()
    }

    fn count(&self) -> usize {
        self.batches.values().map(Vec::len).sum()
    }
}

/// The first word of each event's line, counted.
fn ids(events: &[&Ev]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in events {
        let id = e.line.split(' ').next().unwrap_or("").to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

/// Every file under `dir`, recursively (or `dir` itself when it is a file).
fn all_files(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

fn assert_absent(dir: &Path, needles: &[&str]) {
    for f in all_files(dir) {
        let data = fs::read(&f).unwrap();
        for n in needles {
            assert!(
                memchr::memmem::find(&data, n.as_bytes()).is_none(),
                "{} holds raw bytes {n:?}",
                f.display()
            );
        }
    }
}

struct Running {
    child: Option<Child>,
    log: PathBuf,
}

impl Running {
    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&mut self, secs: u64) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not exit within {secs}s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status and the agent's stderr.
    fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let s = self.wait(30);
        (s, self.log())
    }

    fn kill9(mut self) -> String {
        self.signal(libc::SIGKILL);
        self.wait(10);
        self.log()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A temp directory with a key pair, an archive and a data dir.
struct Sidecar {
    dir: TempDir,
    runs: std::cell::Cell<u32>,
}

impl Sidecar {
    fn new(tag: &str) -> Sidecar {
        let s = Sidecar {
            dir: TempDir::new(tag),
            runs: std::cell::Cell::new(0),
        };
        let out = logveil(&["keygen", "--out", s.p("keys").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        fs::create_dir_all(s.p("logs")).unwrap();
        s
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.p(rel).to_str().unwrap().to_string()
    }

    fn archive(&self) -> PathBuf {
        self.p("archive")
    }

    /// Writes `config.toml`: `sources` are [[source]] tables; `batch` the [batch] body.
    fn config(&self, sources: &str, batch: &str) -> PathBuf {
        let text = format!(
            "data_dir = {:?}\nlog_level = \"info\"\n\n{sources}\n[batch]\n{batch}\n\n[seal]\nkey = \"file:{}\"\n\n[[sink]]\ntype = \"archive\"\npath = {:?}\n",
            self.s("state"),
            self.s("keys/seal.key"),
            self.s("archive"),
        );
        self.dir.write("config.toml", text.as_bytes())
    }

    fn file_source(&self, include: &str) -> String {
        format!(
            "[[source]]\ntype = \"file\"\ninclude = [{:?}]\npoll_interval = \"50ms\"\nrotate_wait = \"500ms\"\n",
            self.s(include)
        )
    }

    fn command(&self) -> (Command, PathBuf) {
        let n = self.runs.get();
        self.runs.set(n + 1);
        let log = self.p(&format!("agent-{n}.log"));
        let mut c = logveil(&["agent", "--config", self.s("config.toml").as_str()]);
        c.env("CI_JOB_ID", "4711")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        (c, log)
    }

    fn start(&self) -> Running {
        let (mut c, log) = self.command();
        let child = c.stdin(Stdio::null()).spawn().expect("spawn agent");
        Running {
            child: Some(child),
            log,
        }
    }

    fn verify(&self) -> Output {
        logveil(&[
            "verify",
            self.s("archive").as_str(),
            "--pubkey",
            self.s("keys/seal.pub").as_str(),
        ])
        .output()
        .unwrap()
    }

    fn assert_verifies(&self) {
        let out = self.verify();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).ends_with("OK\n"), "{}", text(&out.stdout));
    }

    fn checkpoint(&self, path: &Path) -> u64 {
        let Ok(bytes) = fs::read(self.p("state/state.json")) else {
            return 0;
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("state is JSON");
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["path"].as_str() == path.to_str())
            .map(|f| f["offset"].as_u64().unwrap())
            .max()
            .unwrap_or(0)
    }
}

fn append(path: &Path, data: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data.as_bytes()).unwrap();
}

/// Offsets of each line (by id) in a file's content.
fn offsets(content: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    let mut off = 0u64;
    for l in content.split_inclusive('\n') {
        m.insert(l.split(' ').next().unwrap().to_string(), off);
        off += l.len() as u64;
    }
    m
}

#[test]
fn lines_appended_to_two_files_arrive_redacted_once_and_verify() {
    let sc = Sidecar::new("sc-two");
    let (a, b, c) = (sc.p("logs/a.log"), sc.p("logs/b.log"), sc.p("logs/c.log"));
    append(&a, "a-0-0 job started\n");
    append(&b, "b-0-0 job started\n");
    sc.config(
        &sc.file_source("logs/*.log"),
        "max_events = 7\nmax_age = \"100ms\"",
    );
    let agent = sc.start();
    let mut expected = 2;
    for round in 1..=5 {
        for (f, tag) in [(&a, "a"), (&b, "b")] {
            let mut chunk = String::new();
            for i in 0..6 {
                let id = format!("{tag}-{round}-{i}");
                if i % 2 == 0 {
                    chunk.push_str(&secret_line(&id, round + i));
                } else {
                    chunk.push_str(&format!("{id} compiling crate {i} of 6\n"));
                }
            }
            append(f, &chunk);
            expected += 6;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    // A file created while running is discovered.
    append(
        &c,
        "c-0-0 late file\nc-0-1 with a token ghp_Zk3Xw9Qm2Rt7Yp4Lb8Nc1Vd6Hf0Js5Ga2Ue9\n",
    );
    expected += 2;
    let mut ar = ArchiveReader::default();
    wait_for("every line in the archive", 30, || {
        ar.refresh(&sc.archive()).count() >= expected
    });
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // A restart resumes at the checkpoints: new lines once, old lines never again.
    let agent = sc.start();
    append(&a, "a-9-0 after restart\na-9-1 password=hunter2hunter2\n");
    expected += 2;
    wait_for("lines after the restart", 30, || {
        ar.refresh(&sc.archive()).count() >= expected
    });
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let evs: Vec<&Ev> = ar.refresh(&sc.archive()).events().collect();
    assert_eq!(evs.len(), expected, "no line twice");
    let counts = ids(&evs);
    assert_eq!(counts.len(), expected);
    assert!(counts.values().all(|&n| n == 1));

    let mut want_offsets = HashMap::new();
    for f in [&a, &b, &c] {
        let content = fs::read_to_string(f).unwrap();
        for (id, off) in offsets(&content) {
            want_offsets.insert(id, (f.to_str().unwrap().to_string(), off));
        }
    }
    let mut masked = 0;
    for e in &evs {
        let id = e.line.split(' ').next().unwrap();
        let (src, off) = &want_offsets[id];
        assert_eq!((&e.source, e.offset), (src, *off), "{e:?}");
        assert_eq!(e.job.as_deref(), Some("4711"));
        assert!(!e.host.is_empty());
        masked += usize::from(e.line.contains("[REDACTED:"));
        assert!(SECRETS.iter().all(|s| !e.line.contains(s)), "{e:?}");
    }
    assert_eq!(masked, 1 + 5 * 2 * 3 + 1, "every secret line is masked");
    assert_absent(&sc.archive(), &SECRETS);
    assert_absent(&sc.p("state"), &SECRETS);
    for run in 0..2 {
        assert_absent(&sc.p(&format!("agent-{run}.log")), &SECRETS);
    }
    assert!(
        batch_seqs(&sc.archive()).len() >= 6,
        "max_events = 7 splits batches"
    );
    sc.assert_verifies();
}

/// Writes `n` numbered lines to `app.log`, rotating every `every` lines with `rotate`
/// (called with the number of the generation that begins).
fn write_rotating(
    dir: &Path,
    n: usize,
    every: usize,
    tag: &str,
    mut rotate: impl FnMut(&Path, usize),
) {
    let path = dir.join("app.log");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let mut gen = 0;
    for i in 0..n {
        if i > 0 && i % every == 0 {
            gen += 1;
            rotate(&path, gen);
            f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
        }
        writeln!(f, "{tag}{i:05} gen {gen} step {i} of the build, with some padding to make lines long enough").unwrap();
        if i % 40 == 0 {
            std::thread::sleep(Duration::from_millis(4));
        }
    }
}

#[test]
fn rename_rotation_mid_stream_loses_and_repeats_nothing() {
    let sc = Sidecar::new("sc-rename");
    sc.config(
        &sc.file_source("logs/app.log"),
        "max_events = 100\nmax_age = \"100ms\"",
    );
    let agent = sc.start();
    let n = 3000;
    let mut ar = ArchiveReader::default();
    write_rotating(&sc.p("logs"), n, 700, "r", |path, gen| {
        // The rotated name is not followed, so a generation renamed away before the agent
        // ever saw it would be out of reach: rotate once some of its lines are archived
        // (most are typically not yet, so the rotation happens mid-stream).
        let seen = format!(" gen {} ", gen - 1);
        wait_for("the generation to be seen", 20, || {
            ar.refresh(&sc.archive())
                .events()
                .any(|e| e.line.contains(&seen))
        });
        fs::rename(path, path.with_extension(format!("log.{gen}"))).unwrap();
    });
    wait_for("every line", 40, || ar.refresh(&sc.archive()).count() >= n);
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let evs: Vec<&Ev> = ar.refresh(&sc.archive()).events().collect();
    let counts = ids(&evs);
    let dups: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(dups.is_empty(), "lines twice: {dups:?}");
    assert_eq!(evs.len(), n, "{log}");
    // The old file is finished before the new one starts.
    let gen_of = |e: &Ev| e.line.split(' ').nth(2).unwrap().parse::<u32>().unwrap();
    let mut last_gen = 0;
    for e in &evs {
        let g = gen_of(e);
        assert!(
            g >= last_gen,
            "a line of generation {g} after generation {last_gen}"
        );
        last_gen = g;
    }
    assert_eq!(last_gen, 4);
    sc.assert_verifies();
}

#[test]
fn copytruncate_rotation_mid_stream_loses_and_repeats_nothing() {
    let sc = Sidecar::new("sc-copytrunc");
    // The copies match the glob too: a copy continues the lines the agent had not read yet.
    sc.config(
        &sc.file_source("logs/app.log*"),
        "max_events = 100\nmax_age = \"100ms\"",
    );
    let agent = sc.start();
    let n = 3000;
    let mut ar = ArchiveReader::default();
    write_rotating(&sc.p("logs"), n, 700, "t", |path, gen| {
        // Rotate once the agent has read at least `fingerprint_bytes` (256) of this
        // generation: the truncation then happens mid-stream (a loaded machine must not let
        // the writer finish before the agent looks), and the agent knows enough of the content
        // to recognise its copy. With less, the copy is read from its start by design (see
        // the next test).
        let seen = format!(" gen {} ", gen - 1);
        wait_for("256 bytes of the generation to be read", 20, || {
            ar.refresh(&sc.archive())
                .events()
                .filter(|e| e.line.contains(&seen))
                .map(|e| e.line.len() + 1)
                .sum::<usize>()
                >= 256
        });
        fs::copy(path, path.with_extension(format!("log.{gen}"))).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(0)
            .unwrap();
    });
    wait_for("every line", 40, || ar.refresh(&sc.archive()).count() >= n);
    // Give a wrongly re-read copy time to show up before counting.
    std::thread::sleep(Duration::from_millis(800));
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let evs: Vec<&Ev> = ar.refresh(&sc.archive()).events().collect();
    let counts = ids(&evs);
    let dups: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).take(5).collect();
    assert!(dups.is_empty(), "lines twice: {dups:?}\n{log}");
    assert_eq!(counts.len(), n, "{log}");
    assert!(log.contains("truncated"), "{log}");
    sc.assert_verifies();
}

/// Copytruncate when the agent has read less than `fingerprint_bytes` of the content: that
/// is too little to tell the copy from a new log that starts the same way, so the copy is
/// read from its start. Lines may come twice; none may be missing.
#[test]
fn copytruncate_before_a_full_fingerprint_repeats_rather_than_loses() {
    let sc = Sidecar::new("sc-copytrunc-short");
    sc.config(
        &sc.file_source("logs/app.log*"),
        "max_events = 100\nmax_age = \"100ms\"",
    );
    let agent = sc.start();
    let path = sc.p("logs/app.log");
    let line = |i: usize, gen: u32| {
        format!("s{i:05} gen {gen} step {i} of the build, with some padding to make lines long enough\n")
    };
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(line(0, 0).as_bytes()).unwrap();
    let mut ar = ArchiveReader::default();
    wait_for("the first line", 20, || {
        ar.refresh(&sc.archive()).count() >= 1
    });
    // The rest of the generation, the copy and the truncation, all within one poll_interval
    // as a rule (the test holds either way).
    let rest: String = (1..700).map(|i| line(i, 0)).collect();
    f.write_all(rest.as_bytes()).unwrap();
    fs::copy(&path, sc.p("logs/app.log.1")).unwrap();
    f.set_len(0).unwrap();
    let next: String = (700..710).map(|i| line(i, 1)).collect();
    f.write_all(next.as_bytes()).unwrap();
    wait_for("every line", 40, || {
        ids(&ar.refresh(&sc.archive()).events().collect::<Vec<_>>()).len() >= 710
    });
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let evs: Vec<&Ev> = ar.refresh(&sc.archive()).events().collect();
    let counts = ids(&evs);
    assert_eq!(counts.len(), 710, "{log}");
    // Only what the agent can have read before the truncation without a full fingerprint
    // (lines starting in the first 256 bytes) may come again, and only once more.
    let twice: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(
        twice
            .iter()
            .all(
                |(id, &c)| ["s00000", "s00001", "s00002", "s00003"].contains(&id.as_str())
                    && c == 2
            ),
        "{twice:?}\n{log}"
    );
    sc.assert_verifies();
}

#[test]
fn kill_9_during_a_200k_line_stream_five_times_loses_nothing() {
    const N: usize = 200_000;
    let sc = Sidecar::new("sc-kill9");
    let file = sc.p("logs/stream.log");
    sc.config(
        &sc.file_source("logs/stream.log"),
        "max_events = 500\nmax_age = \"100ms\"",
    );
    let writer = {
        let file = file.clone();
        std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .unwrap();
            let mut chunk = String::new();
            for i in 0..N {
                chunk.push_str(&format!(
                    "k{i:06} building module {} of the monorepo; cache miss\n",
                    i % 977
                ));
                if i % 2000 == 1999 {
                    f.write_all(chunk.as_bytes()).unwrap();
                    chunk.clear();
                    std::thread::sleep(Duration::from_millis(15));
                }
            }
            f.write_all(chunk.as_bytes()).unwrap();
        })
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill -9 test seed {seed}");
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // (checkpoint offset, highest seq) after each kill.
    let mut kills = Vec::new();
    let mut during_stream = 0;
    for _ in 0..5 {
        let before = batch_seqs(&sc.archive()).last().copied().unwrap_or(0);
        let agent = sc.start();
        // Kill while it is working: after it sealed something new (or gave up waiting).
        let deadline = Instant::now() + Duration::from_secs(10);
        while batch_seqs(&sc.archive()).last().copied().unwrap_or(0) <= before
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rand(150)));
        during_stream += usize::from(!writer.is_finished());
        let log = agent.kill9();
        assert!(!log.contains("panicked"), "{log}");
        let ckpt = sc.checkpoint(&file);
        let top = batch_seqs(&sc.archive()).last().copied().unwrap_or(0);
        kills.push((ckpt, top));
    }
    eprintln!("kills (checkpoint, top seq): {kills:?}; {during_stream} while the writer ran");
    let agent = sc.start();
    writer.join().unwrap();
    let mut ar = ArchiveReader::default();
    wait_for("all 200k lines", 60, || {
        ar.refresh(&sc.archive()).count() >= N && ids(&ar.events().collect::<Vec<_>>()).len() >= N
    });
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let evs: Vec<&Ev> = ar.refresh(&sc.archive()).events().collect();
    let counts = ids(&evs);
    assert_eq!(counts.len(), N, "every line at least once");
    let content = fs::read_to_string(&file).unwrap();
    let want = offsets(&content);
    for e in &evs {
        let id = e.line.split(' ').next().unwrap();
        assert_eq!(e.offset, want[id], "offset of {id}");
    }
    let mut first_seq: HashMap<u64, u64> = HashMap::new();
    for e in &evs {
        let s = first_seq.entry(e.offset).or_insert(e.seq);
        *s = (*s).min(e.seq);
    }
    for (k, &(ckpt, top)) in kills.iter().enumerate() {
        let next_top = kills.get(k + 1).map_or(u64::MAX, |x| x.1);
        // Checkpoints never run ahead of the archive...
        for (&offset, &first) in first_seq.iter().filter(|(&o, _)| o < ckpt) {
            assert!(
                first <= top,
                "line at {offset} checkpointed before it was archived"
            );
        }
        // ...and a restart re-reads only lines after the last checkpoint.
        for e in evs.iter().filter(|e| e.seq > top && e.seq <= next_top) {
            assert!(
                e.offset >= ckpt,
                "after kill {k}: line at {} re-read although the checkpoint was {ckpt}",
                e.offset
            );
        }
    }
    let dups = counts.values().filter(|&&c| c > 1).count();
    eprintln!("{dups} lines arrived twice (all after a checkpoint)");
    sc.assert_verifies();
}

/// An archive of 5 batches (10 events each) made from stdin.
fn small_archive(sc: &Sidecar) {
    sc.config(
        "[[source]]\ntype = \"stdin\"\n",
        "max_events = 10\nmax_age = \"1m\"",
    );
    let input: String = (0..50).map(|i| format!("s{i:03} line {i}\n")).collect();
    let (c, _log) = sc.command();
    let out = run_with_input(c, input.as_bytes());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(batch_seqs(&sc.archive()), vec![1, 2, 3, 4, 5]);
}

fn batch_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(logveil::seal::file_name(seq))
}

#[test]
fn tampering_is_detected_and_names_the_first_bad_seq() {
    let sc = Sidecar::new("sc-tamper");
    small_archive(&sc);
    sc.assert_verifies();
    let other = sc.p("other");
    assert!(logveil(&["keygen", "--out", other.to_str().unwrap()])
        .output()
        .unwrap()
        .status
        .success());
    let other_key =
        logveil::keys::SealKey::from_pem(&fs::read(other.join("seal.key")).unwrap()).unwrap();
    let resign = |bytes: &[u8], payload: Vec<u8>| -> Vec<u8> {
        let p = logveil::seal::parse(bytes).unwrap();
        let content = logveil::seal::Content {
            payload,
            count: p.header.count,
            first_ts: p.header.first_ts.clone(),
            last_ts: p.header.last_ts.clone(),
            masks: p.header.masks.clone(),
        };
        logveil::seal::seal(
            &other_key,
            p.header.seq,
            &p.header.prev_hash,
            "evil",
            &content,
        )
        .bytes
    };

    type Tamper<'a> = (&'a str, u64, &'a str, Box<dyn Fn(&Path) + 'a>);
    let cases: Vec<Tamper> = vec![
        (
            "flip a payload byte",
            3,
            "modified",
            Box::new(|d| {
                let p = batch_path(d, 3);
                let mut b = fs::read(&p).unwrap();
                let at = b.len() - 10;
                b[at] ^= 0x01;
                fs::write(&p, b).unwrap();
            }),
        ),
        (
            "delete a batch",
            3,
            "dropped",
            Box::new(|d| fs::remove_file(batch_path(d, 3)).unwrap()),
        ),
        (
            "delete the first batch",
            1,
            "dropped",
            Box::new(|d| fs::remove_file(batch_path(d, 1)).unwrap()),
        ),
        (
            "swap two batches",
            2,
            "reordered",
            Box::new(|d| {
                let tmp = d.join("x");
                fs::rename(batch_path(d, 2), &tmp).unwrap();
                fs::rename(batch_path(d, 4), batch_path(d, 2)).unwrap();
                fs::rename(&tmp, batch_path(d, 4)).unwrap();
            }),
        ),
        (
            "insert a forged batch",
            3,
            "bad signature",
            Box::new(|d| {
                for seq in (3..=5).rev() {
                    fs::rename(batch_path(d, seq), batch_path(d, seq + 1)).unwrap();
                }
                let prev = fs::read(batch_path(d, 2)).unwrap();
                let p = logveil::seal::parse(&prev).unwrap();
                let content = logveil::seal::Content {
                    payload: b"{\"line\":\"forged\"}\n".to_vec(),
                    count: 1,
                    first_ts: p.header.last_ts.clone(),
                    last_ts: p.header.last_ts.clone(),
                    masks: Default::default(),
                };
                let hash = logveil::seal::header_hash(p.header_line);
                let forged = logveil::seal::seal(&other_key, 3, &hash, "evil", &content);
                fs::write(batch_path(d, 3), forged.bytes).unwrap();
            }),
        ),
        (
            "re-sign a modified batch with another key",
            3,
            "bad signature",
            Box::new(|d| {
                let p = batch_path(d, 3);
                let b = fs::read(&p).unwrap();
                let parsed = logveil::seal::parse(&b).unwrap();
                let payload = String::from_utf8(parsed.payload.to_vec())
                    .unwrap()
                    .replace("line 2", "line X");
                fs::write(&p, resign(&b, payload.into_bytes())).unwrap();
            }),
        ),
    ];
    for (what, seq, kind, tamper) in cases {
        let copy = sc.p(&format!("tampered-{}", what.replace(' ', "-")));
        fs::create_dir_all(&copy).unwrap();
        for s in 1..=5 {
            fs::copy(batch_path(&sc.archive(), s), batch_path(&copy, s)).unwrap();
        }
        tamper(&copy);
        let out = logveil(&[
            "verify",
            copy.to_str().unwrap(),
            "--pubkey",
            sc.s("keys/seal.pub").as_str(),
        ])
        .output()
        .unwrap();
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{what}: {stdout}");
        assert!(
            stdout.contains(&format!("FAILED: first bad seq {seq} ({kind}")),
            "{what}: {stdout}"
        );
    }
    // The wrong public key fails at the first batch.
    let out = logveil(&[
        "verify",
        sc.s("archive").as_str(),
        "--pubkey",
        other.join("seal.pub").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("FAILED: first bad seq 1 (bad signature"));
    // Options of the other verify modes are usage errors with an archive, never ignored.
    let archive = sc.s("archive");
    let pubkey = sc.s("keys/seal.pub");
    for extra in [
        &["--dead-letter", archive.as_str()][..],
        &["--syslog", "--export", archive.as_str()][..],
    ] {
        let mut args = vec!["verify", archive.as_str(), "--pubkey", pubkey.as_str()];
        args.extend_from_slice(extra);
        let out = logveil(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn unknown_config_key_and_inline_secret_exit_2_with_location() {
    let sc = Sidecar::new("sc-badcfg");
    let cfg = sc.config(
        &sc.file_source("logs/*.log"),
        "max_events = 10\nmax_evnts = 3",
    );
    let line = fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("max_evnts"))
        .unwrap()
        + 1;
    for cmd in [vec!["agent", "--config"], vec!["check-config"]] {
        let mut args = cmd.clone();
        args.push(cfg.to_str().unwrap());
        let out = logveil(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "{}:{line}:1: unknown field `max_evnts`",
                cfg.display()
            )),
            "{err}"
        );
    }
    // Secrets are references, and a refused inline value is never echoed.
    let text_cfg = fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_evnts = 3", "")
        .replace(
            "[seal]",
            "[redact]\nknown_values = [\"s3cr3t-inline-value\"]\n\n[seal]",
        );
    fs::write(&cfg, text_cfg).unwrap();
    let out = logveil(&["check-config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("env:NAME") && err.contains("config.toml:"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    // A valid config checks clean.
    sc.config(&sc.file_source("logs/*.log"), "max_events = 10");
    let out = logveil(&["check-config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn missing_or_exposed_key_file_is_refused() {
    let sc = Sidecar::new("sc-key");
    let cfg = sc.config(&sc.file_source("logs/*.log"), "max_events = 10");
    let key = sc.p("keys/seal.key");
    fs::rename(&key, sc.p("keys/elsewhere.key")).unwrap();
    let out = logveil(&["agent", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&key.display().to_string()) && err.contains("keygen"),
        "{err}"
    );
    assert!(err.contains("config.toml:"), "{err}");

    fs::rename(sc.p("keys/elsewhere.key"), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let out = logveil(&["agent", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(
        !sc.archive().exists(),
        "nothing is written with a refused key"
    );
    // keygen never overwrites a key.
    let out = logveil(&["keygen", "--out", sc.s("keys").as_str()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"));
}

#[test]
fn unreadable_files_are_reported_and_skipped() {
    let sc = Sidecar::new("sc-unreadable");
    let logs = sc.p("logs");
    std::os::unix::fs::symlink("/nonexistent/logveil/target.log", logs.join("dangling.log"))
        .unwrap();
    fs::create_dir(logs.join("dir.log")).unwrap();
    let fifo = std::ffi::CString::new(logs.join("fifo.log").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let noperm = logs.join("noperm.log");
    fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o000)
        .open(&noperm)
        .unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    append(
        &logs.join("good.log"),
        "g1 fine\ng2 token ghp_Zk3Xw9Qm2Rt7Yp4Lb8Nc1Vd6Hf0Js5Ga2Ue9\n",
    );
    sc.config(
        &sc.file_source("logs/*.log"),
        "max_events = 10\nmax_age = \"100ms\"",
    );
    let agent = sc.start();
    let mut ar = ArchiveReader::default();
    wait_for("the readable file", 20, || {
        ar.refresh(&sc.archive()).count() >= 2
    });
    wait_for("warnings", 20, || {
        let log = agent.log();
        log.contains("dangling.log") && log.contains("dir.log") && log.contains("fifo.log")
    });
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    for name in ["dangling.log", "dir.log", "fifo.log"] {
        let l = log.lines().find(|l| l.contains(name)).unwrap();
        assert!(l.contains("WARN") && l.contains("skipping"), "{l}");
    }
    if !root {
        assert!(
            log.contains("noperm.log") && log.contains("ermission denied"),
            "{log}"
        );
    }
    assert_absent(&sc.archive(), &SECRETS);
    sc.assert_verifies();
}

#[test]
fn fifty_megabyte_line_fails_closed_without_raw_bytes_on_disk() {
    let sc = Sidecar::new("sc-bigline");
    let path = sc.p("logs/big.log");
    let mut f = fs::File::create(&path).unwrap();
    let mut written = 0u64;
    let mut put = |b: &[u8]| {
        f.write_all(b).unwrap();
        written += b.len() as u64;
        written
    };
    put(b"b0 before\nb1 huge ");
    let filler: Vec<u8> = (0..1 << 20)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz "[i % 27])
        .collect();
    for i in 0..50 {
        put(&filler);
        if i == 40 {
            // Past the limit: these bytes must never reach the disk in any form.
            put(b" RAW-TAIL-7f3a9c2e password=hunter2hunter2 ");
        }
    }
    let b2_offset = put(b" RAW-TAIL-7f3a9c2e\n");
    put(b"b2 after the long line\n");
    drop(f);
    sc.config(
        &sc.file_source("logs/*.log"),
        "max_events = 10\nmax_age = \"100ms\"",
    );
    let agent = sc.start();
    let mut ar = ArchiveReader::default();
    wait_for("the line after the long one", 60, || {
        ar.refresh(&sc.archive())
            .events()
            .any(|e| e.line.starts_with("b2 "))
    });
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let evs: Vec<&Ev> = ar.refresh(&sc.archive()).events().collect();
    assert_eq!(evs.len(), 3);
    let big = evs.iter().find(|e| e.line.starts_with("b1 ")).unwrap();
    assert!(
        big.line.ends_with("[REDACTED:line-too-long]"),
        "{}",
        &big.line[big.line.len() - 80..]
    );
    assert!(big.line.len() <= (1 << 20) + 64, "{}", big.line.len());
    assert_eq!(
        evs.iter()
            .find(|e| e.line.starts_with("b2 "))
            .unwrap()
            .offset,
        b2_offset
    );
    assert_absent(&sc.archive(), &["RAW-TAIL-7f3a9c2e", "hunter2hunter2"]);
    assert_absent(&sc.p("state"), &["RAW-TAIL-7f3a9c2e", "hunter2hunter2"]);
    assert!(!log.contains("RAW-TAIL"));
    let total: u64 = all_files(&sc.archive())
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(total < 3 << 20, "archive holds {total} bytes");
    let counted = batch_seqs(&sc.archive()).iter().any(|&seq| {
        let b = fs::read_to_string(batch_path(&sc.archive(), seq)).unwrap();
        b.lines().next().unwrap().contains("\"line-too-long\":1")
    });
    assert!(counted, "the cut is counted in a batch header");
    sc.assert_verifies();
}

#[test]
fn sink_failure_holds_checkpoints_until_the_batch_is_written() {
    let sc = Sidecar::new("sc-sinkfail");
    let file = sc.p("logs/app.log");
    let content = "f1 one\nf2 two\nf3 three\n";
    append(&file, content);
    sc.config(
        &sc.file_source("logs/*.log"),
        "max_events = 10\nmax_age = \"100ms\"",
    );
    // A directory where batch 1's temporary file must go: every write of it fails.
    let blocker = sc
        .archive()
        .join(format!("{}.tmp", logveil::seal::file_name(1)));
    fs::create_dir_all(&blocker).unwrap();
    let agent = sc.start();
    wait_for("the write error", 20, || {
        agent.log().contains("writing batch 1")
    });
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(1), "{log}");
    assert_eq!(
        sc.checkpoint(&file),
        0,
        "no checkpoint for lines not written"
    );
    fs::remove_dir(&blocker).unwrap();
    let agent = sc.start();
    let mut ar = ArchiveReader::default();
    wait_for("the lines", 20, || ar.refresh(&sc.archive()).count() >= 3);
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(ar.refresh(&sc.archive()).count(), 3);
    assert_eq!(sc.checkpoint(&file), content.len() as u64);
    sc.assert_verifies();
}

#[test]
fn stdin_source_reads_to_the_end_and_exits() {
    let sc = Sidecar::new("sc-stdin");
    sc.config("[[source]]\ntype = \"stdin\"\n", "max_events = 4");
    let (c, _log) = sc.command();
    let input = "i1 first\ni2 password=hunter2hunter2\ni3 third\ni4 no newline at the end";
    let out = run_with_input(c, input.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut ar = ArchiveReader::default();
    let evs: Vec<&Ev> = ar.refresh(&sc.archive()).events().collect();
    let lines: Vec<&str> = evs.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "i1 first",
            "i2 password=[REDACTED:generic-secret]",
            "i3 third",
            "i4 no newline at the end"
        ]
    );
    assert!(evs.iter().all(|e| e.source == "-"));
    assert_eq!(evs[1].offset, 9);
    sc.assert_verifies();
}

#[test]
fn example_config_runs_the_demo_and_verifies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("config.example.toml");
    // Checking the example in place writes nothing (its key would be generated on start).
    let out = logveil(&["check-config", example.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Run it in a copy of the tree, so the demo's ./out lands in a temp directory.
    let dir = TempDir::new("sc-demo");
    fs::create_dir_all(dir.path().join("tests/data/demo")).unwrap();
    let demo: Vec<PathBuf> = fs::read_dir(root.join("tests/data/demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!demo.is_empty());
    for p in &demo {
        fs::copy(
            p,
            dir.path()
                .join("tests/data/demo")
                .join(p.file_name().unwrap()),
        )
        .unwrap();
    }
    let cfg = dir.path().join("config.example.toml");
    fs::copy(&example, &cfg).unwrap();
    let out = logveil(&["agent", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        fs::metadata(dir.path().join("out/keys/seal.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let out = logveil(&[
        "verify",
        dir.path().join("out/archive").to_str().unwrap(),
        "--pubkey",
        dir.path().join("out/keys/seal.pub").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let lines: usize = demo
        .iter()
        .map(|p| fs::read_to_string(p).unwrap().lines().count())
        .sum();
    assert!(
        text(&out.stdout).contains(&format!(" {lines} events")),
        "{}",
        text(&out.stdout)
    );
    assert_absent(&dir.path().join("out"), &SECRETS[..2]);
}

#[test]
fn start_at_end_skips_existing_lines_but_not_new_files() {
    let sc = Sidecar::new("sc-end");
    let old = sc.p("logs/old.log");
    append(&old, "e1 before the agent\ne2 before the agent\ne3 partial");
    let source = sc
        .file_source("logs/*.log")
        .replace("type = \"file\"", "type = \"file\"\nstart_at = \"end\"");
    sc.config(&source, "max_age = \"100ms\"");
    let agent = sc.start();
    wait_for("the file to be followed", 20, || {
        agent.log().contains("following file")
    });
    append(&old, " line\ne4 appended\n");
    append(
        &sc.p("logs/new.log"),
        "n1 a file that appears later is read from its start\n",
    );
    let mut ar = ArchiveReader::default();
    wait_for("the new lines", 20, || {
        ar.refresh(&sc.archive()).count() >= 3
    });
    let (status, log) = agent.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let mut lines: Vec<String> = ar
        .refresh(&sc.archive())
        .events()
        .map(|e| e.line.clone())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "e3 partial line",
            "e4 appended",
            "n1 a file that appears later is read from its start"
        ]
    );
    sc.assert_verifies();
}
