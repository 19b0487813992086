//! The file source: discovers files by glob, follows appends, survives rotation.
//!
//! **Identity.** A file is its device and inode plus its *head*, the first
//! `fingerprint_bytes` bytes (fewer while the file is shorter), never its path. A *lineage*
//! is one logical content history; its checkpoint is the offset after its last durable line.
//!
//! **Discovery** runs every `poll_interval`: include globs minus exclude globs; anything that
//! is not a readable regular file is reported once (path and error, never content) and
//! skipped. A file is matched against the checkpoints at start-up by inode and head; a file
//! whose inode holds different content than its checkpoint says was truncated and rewritten.
//!
//! **Rename rotation** (`mv job.log job.log.1`, new `job.log`): the old inode is still
//! followed through its open descriptor when its new name no longer matches; once it is
//! *gone* from the globs and has shown no new data for `rotate_wait`, its unterminated last
//! line (if any) is emitted and the tailer ends. The file that took its path waits for it to
//! end, then is read from the beginning.
//!
//! **Copytruncate** (`cp job.log job.log.1; truncate job.log`): the tailer sees the file
//! shrink (or its head change) and starts again at 0 as a new lineage; the old lineage is
//! *retired* with its head, the last bytes it read, and the offset after its last complete
//! line. A new file under another path (the copy, when the globs match it) takes that
//! lineage over and continues at that offset when it has the same head *and* the same bytes
//! where the reading stopped, so the lines the agent had not read before the truncation are
//! read from the copy, and none twice. A copy that shows up before the original's truncation
//! was noticed waits for it (until the original was read again and `rotate_wait` passed); a
//! copy still being written (shorter than the head, and a prefix of it) is looked at again
//! on the next pass. Only files at least `fingerprint_bytes` long are matched by content, and
//! only lineages of which the last read saw that much are retired: a file truncated before
//! the agent read `fingerprint_bytes` of it leaves its copy to be read from the start (the
//! lines already read come twice). The tail check means a new log that merely starts like an
//! old one (the same runner banner) is never skipped into: in doubt a file is read from its
//! start (duplicates, never a gap).
//!
//! Reads happen on the blocking pool, 64 KiB (and at most `max_events` lines) at a time, and
//! are redacted there before anything else sees them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logveil_patterns::Redactor;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{nth_newline, redact_block, Block, Ctx, LineRedactor, Position, READ_CHUNK};
use crate::checkpoint::FileEntry;
use crate::config::{FileSourceConfig, StartAt};
use crate::event::Origin;
use crate::keys::hex;
use crate::pipeline::stopped;

/// Retired lineages are claimable by a copy for this long.
const RETIRED_TTL: Duration = Duration::from_secs(600);

type Key = (u64, u64);

struct Info {
    path: PathBuf,
    lineage: u64,
    head: Vec<u8>,
}

/// A file being followed.
struct Tracked {
    gone: AtomicBool,
    info: Mutex<Info>,
    /// Completed reads (whatever their outcome): a copy waiting for this file's truncation
    /// uses it to know that the file was looked at after the copy appeared.
    checks: AtomicU64,
    finished: watch::Sender<bool>,
}

/// A lineage whose content left its inode (truncated); its copy may continue it.
struct Retired {
    lineage: u64,
    /// The first `fingerprint_bytes` bytes of the content.
    head: Vec<u8>,
    /// The last bytes read before `tail_end`: a copy must hold exactly these there.
    tail: Vec<u8>,
    tail_end: u64,
    path: PathBuf,
    /// Where the copy continues: after the last complete line read.
    offset: u64,
    at: Instant,
}

impl Retired {
    /// True when `file` (at `path`, starting with `head`) holds this content up to where it
    /// was read: same head, same bytes before `tail_end`, another path. A new log that merely
    /// starts like an old one (the same runner banner) fails the tail check.
    fn continued_by(&self, file: &File, path: &PathBuf, head: &[u8]) -> bool {
        if &self.path == path || head != self.head.as_slice() || self.tail.is_empty() {
            return false;
        }
        let start = self.tail_end - self.tail.len() as u64;
        let mut buf = vec![0; self.tail.len()];
        matches!(read_at_full(file, &mut buf, start), Ok(n) if n == buf.len()) && buf == self.tail
    }
}

#[derive(Default)]
struct Registry {
    live: HashMap<Key, Arc<Tracked>>,
    retired: Vec<Retired>,
    loaded: Vec<(u64, FileEntry)>,
    warned: HashMap<PathBuf, String>,
    /// Files put off as possible copies in progress, and since when.
    deferred: HashMap<Key, Instant>,
}

impl Registry {
    /// True when `head` (shorter than `full`) could be the beginning of a copy of a file we
    /// know, still being written: such a file is looked at again on the next pass.
    fn maybe_partial_copy(&self, path: &PathBuf, head: &[u8], full: usize) -> bool {
        head.len() < full
            && (self.live.values().any(|t| {
                let i = t.info.lock().unwrap();
                i.head.len() == full && i.head.starts_with(head) && &i.path != path
            }) || self
                .retired
                .iter()
                .any(|r| r.head.len() == full && r.head.starts_with(head) && &r.path != path))
    }

    /// Takes over the retired lineage that `file` is a copy of (only `lineage`, if given).
    fn claim(
        &mut self,
        file: &File,
        path: &PathBuf,
        head: &[u8],
        full: usize,
        lineage: Option<u64>,
    ) -> Option<(u64, u64)> {
        if head.len() < full {
            return None;
        }
        let i = self.retired.iter().position(|r| {
            lineage.is_none_or(|l| l == r.lineage) && r.continued_by(file, path, head)
        })?;
        let r = self.retired.remove(i);
        Some((r.lineage, r.offset))
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

struct NewFile {
    path: PathBuf,
    key: Key,
    file: File,
    head: Vec<u8>,
    size: u64,
}

#[derive(Default)]
struct Scan {
    seen: Vec<(PathBuf, Key)>,
    new: Vec<NewFile>,
    problems: Vec<(PathBuf, String)>,
    ok: Vec<PathBuf>,
}

fn read_head(file: &File, n: usize, size: u64) -> io::Result<Vec<u8>> {
    let want = (size.min(n as u64)) as usize;
    let mut head = vec![0; want];
    let got = read_at_full(file, &mut head, 0)?;
    head.truncate(got);
    Ok(head)
}

fn read_at_full(file: &File, buf: &mut [u8], mut off: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn scan(cfg: &FileSourceConfig, known: &HashSet<Key>) -> Scan {
    let mut s = Scan::default();
    let mut paths = BTreeSet::new();
    for pat in &cfg.include {
        match glob::glob(pat) {
            Ok(it) => {
                for entry in it {
                    match entry {
                        Ok(p) => {
                            paths.insert(p);
                        }
                        Err(e) => s
                            .problems
                            .push((e.path().to_path_buf(), e.error().to_string())),
                    }
                }
            }
            Err(e) => s.problems.push((PathBuf::from(pat), e.msg.to_string())),
        }
    }
    let mut new_keys = HashSet::new();
    for p in paths {
        if cfg.exclude.iter().any(|x| x.matches_path(&p)) {
            continue;
        }
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                s.problems.push((p, e.to_string()));
                continue;
            }
        };
        if !meta.is_file() {
            s.problems.push((p, "not a regular file; skipped".into()));
            continue;
        }
        let key = (meta.dev(), meta.ino());
        s.seen.push((p.clone(), key));
        if known.contains(&key) || !new_keys.insert(key) {
            s.ok.push(p);
            continue;
        }
        let opened = File::open(&p).and_then(|f| {
            let size = f.metadata()?.len();
            let head = read_head(&f, cfg.fingerprint_bytes, size)?;
            Ok((f, head, size))
        });
        match opened {
            Ok((file, head, size)) => {
                s.ok.push(p.clone());
                s.new.push(NewFile {
                    path: p,
                    key,
                    file,
                    head,
                    size,
                });
            }
            Err(e) => {
                new_keys.remove(&key);
                s.problems.push((p, e.to_string()));
            }
        }
    }
    s
}

/// Offset just after the last newline of the file (for `start_at = "end"`).
fn end_line_boundary(file: &File, size: u64) -> u64 {
    let from = size.saturating_sub(READ_CHUNK as u64);
    let mut buf = vec![0; (size - from) as usize];
    match read_at_full(file, &mut buf, from) {
        Ok(n) => match memchr::memrchr(b'\n', &buf[..n]) {
            Some(i) => from + i as u64 + 1,
            None => size,
        },
        Err(_) => size,
    }
}

enum Read {
    Data(Block),
    Eof,
    Truncated,
    Failed(io::Error),
}

/// One followed file: descriptor, redaction state, head.
struct Tail {
    file: File,
    key: Key,
    path: PathBuf,
    lineage: u64,
    head: Vec<u8>,
    fp: usize,
    lr: LineRedactor,
    /// The last bytes pushed into `lr` (at most `fp`, ending at `lr.pos()`).
    recent: Vec<u8>,
    buf: Vec<u8>,
    max_events: u64,
}

impl Tail {
    fn entry(&self) -> FileEntry {
        FileEntry {
            dev: self.key.0,
            ino: self.key.1,
            head_len: self.head.len() as u64,
            head_sha256: sha256_hex(&self.head),
            path: self.path.to_string_lossy().into_owned(),
            offset: self.lr.line_start(),
        }
    }

    fn read_once(&mut self, origin: &Origin) -> Read {
        match self.try_read(origin) {
            Ok(r) => r,
            Err(e) => Read::Failed(e),
        }
    }

    fn try_read(&mut self, origin: &Origin) -> io::Result<Read> {
        let size = self.file.metadata()?.len();
        let pos = self.lr.pos();
        if size < pos {
            return Ok(Read::Truncated);
        }
        if size == pos {
            return Ok(Read::Eof);
        }
        let want = (size - pos).min(READ_CHUNK as u64) as usize;
        self.buf.resize(want, 0);
        let got = read_at_full(&self.file, &mut self.buf, pos)?;
        self.buf.truncate(got);
        // The head is checked after the read: a truncation that happened before it is seen
        // here, so bytes of new content are never taken for the old content's continuation.
        let head = read_head(&self.file, self.fp, size)?;
        if head.len() < self.head.len() || !head.starts_with(&self.head) {
            return Ok(Read::Truncated);
        }
        self.head = head;
        if got == 0 {
            return Ok(Read::Eof);
        }
        let cut = nth_newline(&self.buf, self.max_events).map_or(got, |i| i + 1);
        let source = self.path.to_string_lossy();
        let mut block = redact_block(&mut self.lr, &self.buf[..cut], origin, &source, false);
        let pushed = &self.buf[..cut];
        if pushed.len() >= self.fp {
            self.recent.clear();
            self.recent
                .extend_from_slice(&pushed[pushed.len() - self.fp..]);
        } else {
            self.recent.extend_from_slice(pushed);
            let extra = self.recent.len().saturating_sub(self.fp);
            self.recent.drain(..extra);
        }
        block.position = Some(Position {
            lineage: self.lineage,
            entry: self.entry(),
        });
        Ok(Read::Data(block))
    }

    fn finish(&mut self, origin: &Origin) -> Block {
        let source = self.path.to_string_lossy().into_owned();
        let mut block = redact_block(&mut self.lr, b"", origin, &source, true);
        block.position = Some(Position {
            lineage: self.lineage,
            entry: self.entry(),
        });
        block
    }

    fn restart(&mut self, redactor: &Redactor, lineage: u64, offset: u64) {
        self.lineage = lineage;
        self.lr = LineRedactor::new(redactor, offset);
        self.recent.clear();
        if offset == 0 {
            self.head.clear();
        }
    }

    fn deleted(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.nlink() == 0)
    }
}

/// How a new tailer begins.
enum Begin {
    At(u64, u64),
    /// A copy of a live file: wait for that file's lineage to retire, then continue it.
    AfterRetire(AfterRetire),
}

/// A copy waiting for its original's truncation.
struct AfterRetire {
    lineage: u64,
    original: Arc<Tracked>,
    checks: u64,
    since: Instant,
}

/// Runs one file source until told to stop; returns when every tailer has ended.
pub async fn run(cfg: FileSourceConfig, ctx: Ctx, loaded: Vec<(u64, FileEntry)>) {
    let reg = Arc::new(Mutex::new(Registry {
        loaded,
        ..Registry::default()
    }));
    let mut stop = ctx.stop.clone();
    let mut tasks = JoinSet::new();
    let mut first = true;
    loop {
        if *stop.borrow() {
            break;
        }
        let known: HashSet<Key> = reg.lock().unwrap().live.keys().copied().collect();
        let cfg2 = cfg.clone();
        let found = match tokio::task::spawn_blocking(move || scan(&cfg2, &known)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "file discovery failed");
                Scan::default()
            }
        };
        discover(&cfg, &ctx, &reg, found, first, &mut tasks);
        first = false;
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll_interval) => {}
            _ = stopped(&mut stop) => break,
        }
    }
    while tasks.join_next().await.is_some() {}
}

fn discover(
    cfg: &FileSourceConfig,
    ctx: &Ctx,
    reg: &Arc<Mutex<Registry>>,
    found: Scan,
    first: bool,
    tasks: &mut JoinSet<()>,
) {
    let mut r = reg.lock().unwrap();
    for p in &found.ok {
        r.warned.remove(p);
    }
    for (path, msg) in found.problems {
        if r.warned.get(&path) != Some(&msg) {
            tracing::warn!(path = %path.display(), error = %msg, "cannot read a file matched by include; skipping it");
            r.warned.insert(path, msg);
        }
    }
    // Mark what disappeared from the globs; follow renames within them.
    let seen: HashMap<Key, &PathBuf> = found.seen.iter().map(|(p, k)| (*k, p)).collect();
    for (key, t) in &r.live {
        match seen.get(key) {
            Some(p) => {
                t.gone.store(false, Ordering::Relaxed);
                let mut info = t.info.lock().unwrap();
                if &info.path != *p {
                    tracing::info!(from = %info.path.display(), to = %p.display(), "file renamed");
                    info.path = (*p).clone();
                }
            }
            None => t.gone.store(true, Ordering::Relaxed),
        }
    }
    r.retired.retain(|x| x.at.elapsed() < RETIRED_TTL);
    // Checkpoints by inode first (so a truncated file's old lineage retires before its copy
    // looks for it), then everything else.
    let mut new = found.new;
    new.sort_by_key(|n| !r.loaded.iter().any(|(_, e)| (e.dev, e.ino) == n.key));
    for n in new {
        let mut begin = None;
        if let Some(i) = r.loaded.iter().position(|(_, e)| (e.dev, e.ino) == n.key) {
            let (lineage, e) = r.loaded.remove(i);
            let hl = e.head_len as usize;
            if n.head.len() >= hl
                && sha256_hex(&n.head[..hl]) == e.head_sha256
                && n.size >= e.offset
            {
                tracing::info!(path = %n.path.display(), offset = e.offset, "resuming at checkpoint");
                begin = Some(Begin::At(lineage, e.offset));
            } else {
                // A copy made meanwhile cannot be checked against content that is gone: it
                // is read from its start (duplicates rather than a gap).
                tracing::info!(path = %n.path.display(), "file was truncated or replaced since its checkpoint; reading it from the start");
            }
        }
        if begin.is_none() {
            let claimed = r.claim(&n.file, &n.path, &n.head, cfg.fingerprint_bytes, None);
            if let Some((lineage, offset)) = claimed {
                tracing::info!(path = %n.path.display(), offset, "file is a copy of a rotated file; continuing it");
                begin = Some(Begin::At(lineage, offset));
            }
        }
        if begin.is_none() && n.head.len() == cfg.fingerprint_bytes {
            let original = r.live.values().find(|t| {
                let i = t.info.lock().unwrap();
                i.head == n.head && i.path != n.path
            });
            if let Some(t) = original {
                begin = Some(Begin::AfterRetire(AfterRetire {
                    lineage: t.info.lock().unwrap().lineage,
                    original: t.clone(),
                    checks: t.checks.load(Ordering::Acquire),
                    since: Instant::now(),
                }));
            }
        }
        if begin.is_none() && r.maybe_partial_copy(&n.path, &n.head, cfg.fingerprint_bytes) {
            let since = *r.deferred.entry(n.key).or_insert_with(Instant::now);
            if since.elapsed() < cfg.rotate_wait {
                // Looked at again on the next pass, with more bytes.
                continue;
            }
        }
        r.deferred.remove(&n.key);
        let begin = begin.unwrap_or_else(|| {
            let offset = if first && cfg.start_at == StartAt::End {
                end_line_boundary(&n.file, n.size)
            } else {
                0
            };
            Begin::At(ctx.new_lineage(), offset)
        });
        // A file that took the path of ones still being drained waits for them to end.
        let after: Vec<watch::Receiver<bool>> = r
            .live
            .values()
            .filter(|t| t.gone.load(Ordering::Relaxed) && t.info.lock().unwrap().path == n.path)
            .map(|t| t.finished.subscribe())
            .collect();
        let (lineage, offset) = match begin {
            Begin::At(l, o) => (l, o),
            Begin::AfterRetire(_) => (ctx.new_lineage(), 0),
        };
        let tracked = Arc::new(Tracked {
            gone: AtomicBool::new(false),
            info: Mutex::new(Info {
                path: n.path.clone(),
                lineage,
                head: n.head.clone(),
            }),
            checks: AtomicU64::new(0),
            finished: watch::channel(false).0,
        });
        r.live.insert(n.key, tracked.clone());
        tracing::info!(path = %n.path.display(), offset, "following file");
        let tail = Tail {
            file: n.file,
            key: n.key,
            path: n.path,
            lineage,
            head: n.head,
            fp: cfg.fingerprint_bytes,
            lr: LineRedactor::new(&ctx.redactor, offset),
            recent: Vec::new(),
            buf: Vec::new(),
            max_events: ctx.max_block_events,
        };
        let wait = match begin {
            Begin::AfterRetire(w) => Some(w),
            Begin::At(..) => None,
        };
        tasks.spawn(follow(
            tail,
            tracked,
            ctx.clone(),
            cfg.clone(),
            reg.clone(),
            after,
            wait,
        ));
    }
}

async fn follow(
    mut t: Tail,
    tracked: Arc<Tracked>,
    ctx: Ctx,
    cfg: FileSourceConfig,
    reg: Arc<Mutex<Registry>>,
    after: Vec<watch::Receiver<bool>>,
    wait: Option<AfterRetire>,
) {
    let mut stop = ctx.stop.clone();
    for mut done in after {
        tokio::select! {
            _ = done.wait_for(|&d| d) => {}
            _ = stopped(&mut stop) => return,
        }
    }
    if let Some(w) = wait {
        let lineage = w.lineage;
        loop {
            let claimed = reg
                .lock()
                .unwrap()
                .claim(&t.file, &t.path, &t.head, t.fp, Some(lineage));
            if let Some((l, offset)) = claimed {
                tracing::info!(path = %t.path.display(), offset, "file is a copy of a truncated file; continuing it");
                t.restart(&ctx.redactor, l, offset);
                tracked.info.lock().unwrap().lineage = l;
                break;
            }
            // Not a truncation copy after all (a plain copy): once the original was read
            // again after the copy appeared, and `rotate_wait` passed (logrotate copies, then
            // truncates), or once the original ended.
            let looked = w.original.checks.load(Ordering::Acquire) >= w.checks + 2;
            if (looked && w.since.elapsed() >= cfg.rotate_wait) || *w.original.finished.borrow() {
                let claimed = reg
                    .lock()
                    .unwrap()
                    .claim(&t.file, &t.path, &t.head, t.fp, None);
                if let Some((l, offset)) = claimed {
                    t.restart(&ctx.redactor, l, offset);
                    tracked.info.lock().unwrap().lineage = l;
                }
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.poll_interval) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }
    let mut gone_since: Option<Instant> = None;
    let mut failing: Option<String> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        t.path.clone_from(&tracked.info.lock().unwrap().path);
        let origin = ctx.origin.clone();
        let (back, res) = tokio::task::spawn_blocking(move || {
            let r = t.read_once(&origin);
            (t, r)
        })
        .await
        .expect("file read task panicked");
        t = back;
        tracked.checks.fetch_add(1, Ordering::Release);
        match res {
            Read::Data(block) => {
                failing = None;
                gone_since = None;
                {
                    let mut i = tracked.info.lock().unwrap();
                    i.head.clone_from(&t.head);
                }
                ctx.activity.touch();
                if block.events > 0 && !ctx.send(block).await {
                    return;
                }
                continue;
            }
            Read::Truncated => {
                let old = t.entry();
                tracing::info!(path = %t.path.display(), "file was truncated (copytruncate?): reading it from the start");
                if t.head.len() == t.fp && !t.recent.is_empty() {
                    reg.lock().unwrap().retired.push(Retired {
                        lineage: t.lineage,
                        head: t.head.clone(),
                        tail: t.recent.clone(),
                        tail_end: t.lr.pos(),
                        path: t.path.clone(),
                        offset: old.offset,
                        at: Instant::now(),
                    });
                }
                let lineage = ctx.new_lineage();
                t.restart(&ctx.redactor, lineage, 0);
                let mut i = tracked.info.lock().unwrap();
                i.lineage = lineage;
                i.head.clear();
                continue;
            }
            Read::Failed(e) => {
                let msg = e.to_string();
                if failing.as_ref() != Some(&msg) {
                    tracing::warn!(path = %t.path.display(), error = %msg, "read failed; retrying");
                    failing = Some(msg);
                }
            }
            Read::Eof => {
                if tracked.gone.load(Ordering::Relaxed) {
                    let since = *gone_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= cfg.rotate_wait {
                        finish(t, &tracked, &ctx, &reg).await;
                        return;
                    }
                } else {
                    gone_since = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll_interval) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// The file left the globs and stayed quiet: emit its last unterminated line, and drop its
/// checkpoint once the file is deleted (a file renamed out of the globs keeps it, in case
/// it comes back).
async fn finish(mut t: Tail, tracked: &Tracked, ctx: &Ctx, reg: &Mutex<Registry>) {
    let origin = ctx.origin.clone();
    let (t, mut block) = tokio::task::spawn_blocking(move || {
        let b = t.finish(&origin);
        (t, b)
    })
    .await
    .expect("file finish task panicked");
    let deleted = t.deleted();
    if deleted {
        block.forget = Some(t.lineage);
    }
    tracing::info!(path = %t.path.display(), deleted, "finished a rotated-away file");
    if block.events > 0 || block.forget.is_some() {
        ctx.activity.touch();
        ctx.send(block).await;
    }
    reg.lock().unwrap().live.remove(&t.key);
    let _ = tracked.finished.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_true_copy_continues_a_retired_lineage() {
        let dir = std::env::temp_dir().join(format!("logveil-retired-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let banner = "Running with gitlab-runner 16.11.0 on build-runner-07\n".repeat(8);
        let a = format!("{banner}job A line 1\njob A line 2\njob A line 3\n");
        let b = format!("{banner}job B line 1\njob B line 2\njob B line 3 and more\n");
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            (File::open(&p).unwrap(), p)
        };
        let (_, orig) = write("a.log", &a);
        let read_to = a.len() as u64 - 13; // the agent read into the last line
        let r = Retired {
            lineage: 7,
            head: a.as_bytes()[..256].to_vec(),
            tail: a.as_bytes()[read_to as usize - 256..read_to as usize].to_vec(),
            tail_end: read_to,
            path: orig.clone(),
            offset: a.len() as u64 - 13 - 13,
            at: Instant::now(),
        };
        let head = |t: &str| t.as_bytes()[..256].to_vec();
        let (copy, copy_path) = write("a.log.1", &a);
        assert!(r.continued_by(&copy, &copy_path, &head(&a)));
        // Same banner (same head), other content: not a copy.
        let (other, other_path) = write("b.log", &b);
        assert_eq!(head(&a), head(&b));
        assert!(!r.continued_by(&other, &other_path, &head(&b)));
        // The original's own path is never a copy of itself.
        let (same, _) = write("a.log", &a);
        assert!(!r.continued_by(&same, &orig, &head(&a)));
        // A copy cut short before the point of reading is not taken either.
        let (short, short_path) = write("a.log.2", &a[..read_to as usize - 1]);
        assert!(!r.continued_by(&short, &short_path, &head(&a)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nth_newline_finds_the_cut() {
        assert_eq!(nth_newline(b"a\nb\nc\n", 2), Some(3));
        assert_eq!(nth_newline(b"a\nb", 2), None);
        assert_eq!(nth_newline(b"a\n", 0), None);
    }
}
