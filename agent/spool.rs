//! The durable spool: sealed (already redacted) batches wait here until every forwarding sink
//! has acknowledged them, so a SIEM that is down, slow or rejecting loses nothing.
//!
//! On disk, a directory of append-only segment files `seg-<first seq, 20 digits>.lvs` and
//! `acks.json` (the highest seq each sink acknowledged, written atomically; with
//! `fsync = "always"` also synced, file and directory). A segment is a
//! sequence of records:
//!
//! ```text
//! u32 LE  length of the batch bytes; the top bit set means they are encrypted
//! u32 LE  CRC32 (IEEE) of the seq bytes followed by the batch bytes
//! u64 LE  seq
//! ...     the sealed batch, exactly `length` bytes
//! ```
//!
//! With `[spool] encryption_key_file`, the batch bytes are `nonce || AES-256-GCM ciphertext
//! || tag` (see [`crate::spool_key`]), authenticated with the segment's first seq and the
//! record's seq, inside the same CRC frame: the CRC still finds torn writes, the tag finds
//! a wrong key or a changed or moved record. Fail closed: an encrypted record that does not
//! authenticate is never forwarded. At start, if no encrypted record authenticates the key
//! is wrong and the spool refuses to open (the agent does not start); a few failing among
//! good ones are skipped with an error naming the segment and seq, like CRC failures.
//! Encrypted records with no key configured also refuse the start. Plaintext records
//! written before encryption was turned on are still replayed.
//!
//! A record is appended (and, with `fsync = "always"`, synced) before the checkpoints of its
//! lines advance. At start every segment is replayed: a record whose CRC does not match is
//! skipped with a warning; a last record cut short (a crash mid-write) is detected, skipped
//! with a warning and truncated away so appends continue on a clean boundary. A segment is
//! deleted once every sink has acknowledged all of its batches. When the spool holds
//! `max_bytes`, [`Spool::append`] reports [`Full`] and the caller waits: the bounded queues
//! behind it then hold the sources back (files wait on disk), nothing is dropped.
//!
//! Only sealed batches are written here, and those hold redacted lines only.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::spool_key::{SpoolKey, OVERHEAD};

/// Bytes before a record's batch bytes.
pub const RECORD_HEADER: usize = 16;
/// Largest record accepted on replay (a corrupt length past it ends the segment).
const MAX_RECORD: u32 = 1 << 30;
/// Flag in a record's length word: the batch bytes are encrypted.
const ENCRYPTED: u32 = 1 << 31;
const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".lvs";
const ACKS_FILE: &str = "acks.json";

/// When appended records are synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After every append, before checkpoints advance (survives power loss).
    #[default]
    Always,
    /// Left to the operating system (survives a crash of the agent, not of the machine).
    Never,
}

/// Spool limits.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The directory.
    pub dir: PathBuf,
    /// Total bytes of segments at which appends wait.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Sync policy.
    pub fsync: FsyncPolicy,
    /// Encrypt records with this key (`encryption_key_file`).
    pub key: Option<SpoolKey>,
}

/// The spool holds `max_bytes`: wait for the sinks to catch up, then append again.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes of valid records.
    len: u64,
    /// Highest seq in it (0 when empty).
    last_seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
    encrypted: bool,
    /// When it was appended (for a replayed record: its segment's last write, so the age of
    /// the oldest undelivered batch is never overstated).
    at: SystemTime,
}

#[derive(Serialize, Deserialize, Default)]
struct Acks {
    version: u32,
    acked: BTreeMap<String, u64>,
}

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Records replayed.
    pub records: u64,
    /// Records skipped for a CRC mismatch.
    pub corrupt: u64,
    /// A torn last record was cut away.
    pub torn: bool,
    /// Encrypted records skipped because they did not authenticate.
    pub unauthenticated: u64,
}

/// An open spool.
#[derive(Debug)]
pub struct Spool {
    opts: SpoolOptions,
    /// Segments by first seq; the last one is the one appended to.
    segments: BTreeMap<u64, Segment>,
    index: BTreeMap<u64, Loc>,
    /// Sink name → highest seq acknowledged (every seq up to it is delivered).
    acked: BTreeMap<String, u64>,
    append: Option<File>,
    readers: HashMap<u64, File>,
    bytes: u64,
    /// What the last open found.
    pub replay: Replay,
}

fn segment_name(first: u64) -> String {
    format!("{SEGMENT_PREFIX}{first:020}{SEGMENT_SUFFIX}")
}

fn segment_first(name: &str) -> Option<u64> {
    let d = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    (d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn crc(seq: u64, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(data);
    h.finalize()
}

/// Encodes one record (header and batch bytes).
pub fn encode_record(seq: u64, data: &[u8]) -> Vec<u8> {
    encode_record_flagged(seq, data, false)
}

fn encode_record_flagged(seq: u64, data: &[u8], encrypted: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER + data.len());
    let flag = if encrypted { ENCRYPTED } else { 0 };
    v.extend_from_slice(&(data.len() as u32 | flag).to_le_bytes());
    v.extend_from_slice(&crc(seq, data).to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(data);
    v
}

impl Spool {
    /// Opens (creating) the spool for the sinks `sinks` and replays its segments. Sinks that
    /// were acknowledged before but are no longer configured are forgotten; a new sink starts
    /// at the oldest batch still in the spool.
    pub fn open(opts: SpoolOptions, sinks: &[String]) -> io::Result<Spool> {
        fs::create_dir_all(&opts.dir)?;
        durable::remove_stale_temps(&opts.dir)?;
        let acks: Acks = match fs::read(opts.dir.join(ACKS_FILE)) {
            // Unreadable acknowledgements only cost duplicates: everything still in the
            // spool is sent again.
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "spool: acks.json is unreadable; undelivered and delivered batches still in the spool are sent again");
                Acks::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Acks::default(),
            Err(e) => return Err(e),
        };
        let mut firsts: Vec<u64> = Vec::new();
        for e in fs::read_dir(&opts.dir)? {
            if let Some(f) = e?.file_name().to_str().and_then(segment_first) {
                firsts.push(f);
            }
        }
        firsts.sort_unstable();
        let mut spool = Spool {
            segments: BTreeMap::new(),
            index: BTreeMap::new(),
            acked: BTreeMap::new(),
            append: None,
            readers: HashMap::new(),
            bytes: 0,
            replay: Replay::default(),
            opts,
        };
        let n = firsts.len();
        let mut authenticated = 0u64;
        for (i, first) in firsts.into_iter().enumerate() {
            authenticated += spool.replay_segment(first, i + 1 == n)?;
        }
        if spool.replay.unauthenticated > 0 && authenticated == 0 {
            return Err(bad_data(format!(
                "{}: no encrypted record authenticates with [spool] encryption_key_file: it is not the key this spool was written with; refusing to start (use the original key, or move the spool away)",
                spool.opts.dir.display()
            )));
        }
        let oldest = spool.index.keys().next().copied();
        for s in sinks {
            let a = acks.acked.get(s).copied();
            let a = match (a, oldest) {
                (Some(a), _) => a,
                (None, Some(o)) => o - 1,
                (None, None) => 0,
            };
            spool.acked.insert(s.clone(), a);
        }
        spool.collect()?;
        Ok(spool)
    }

    /// Replays one segment; returns how many encrypted records authenticated.
    fn replay_segment(&mut self, first: u64, last: bool) -> io::Result<u64> {
        let path = self.opts.dir.join(segment_name(first));
        let mut data = Vec::new();
        let mut file = File::open(&path)?;
        let at = file
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        file.read_to_end(&mut data)?;
        let mut off = 0usize;
        let mut last_seq = 0;
        let mut authenticated = 0;
        while off < data.len() {
            let rest = &data[off..];
            let torn = rest.len() < RECORD_HEADER || {
                let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) & !ENCRYPTED;
                len > MAX_RECORD || rest.len() < RECORD_HEADER + len as usize
            };
            if torn {
                tracing::warn!(
                    segment = %path.display(),
                    offset = off,
                    bytes = rest.len(),
                    "spool: the last record is incomplete (interrupted write); skipping it"
                );
                self.replay.torn = true;
                break;
            }
            let word = u32::from_le_bytes(rest[0..4].try_into().unwrap());
            let (len, encrypted) = (word & !ENCRYPTED, word & ENCRYPTED != 0);
            let want = u32::from_le_bytes(rest[4..8].try_into().unwrap());
            let seq = u64::from_le_bytes(rest[8..16].try_into().unwrap());
            let body = &rest[RECORD_HEADER..RECORD_HEADER + len as usize];
            if crc(seq, body) == want {
                let usable = match (encrypted, &self.opts.key) {
                    (false, _) => true,
                    (true, None) => {
                        return Err(bad_data(format!(
                            "{}: record seq {seq} is encrypted but [spool] encryption_key_file is not set; refusing to start",
                            path.display()
                        )))
                    }
                    (true, Some(k)) => {
                        let ok = k.open(first, seq, body).is_some();
                        if ok {
                            authenticated += 1;
                        } else {
                            tracing::error!(
                                segment = %path.display(),
                                seq,
                                "spool: encrypted record does not authenticate (wrong key, or changed on disk); not forwarding it"
                            );
                            self.replay.unauthenticated += 1;
                        }
                        ok
                    }
                };
                if usable {
                    self.index.insert(
                        seq,
                        Loc {
                            segment: first,
                            offset: (off + RECORD_HEADER) as u64,
                            len,
                            encrypted,
                            at,
                        },
                    );
                    self.replay.records += 1;
                }
                last_seq = last_seq.max(seq);
            } else {
                tracing::warn!(
                    segment = %path.display(),
                    offset = off,
                    "spool: record fails its CRC check; skipping it"
                );
                self.replay.corrupt += 1;
            }
            off += RECORD_HEADER + len as usize;
        }
        if off < data.len() {
            // Cut the torn tail so that the next append starts on a record boundary.
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(off as u64)?;
            f.sync_all()?;
        }
        self.bytes += off as u64;
        self.segments.insert(
            first,
            Segment {
                path: path.clone(),
                len: off as u64,
                last_seq,
            },
        );
        if last {
            self.append = Some(OpenOptions::new().append(true).open(&path)?);
        }
        Ok(authenticated)
    }

    /// Appends sealed batch `seq` (seqs must increase). With `fsync = "always"` it is on disk
    /// when this returns. [`Full`] when the spool holds `max_bytes` already.
    pub fn append(&mut self, seq: u64, data: &[u8]) -> io::Result<Result<(), Full>> {
        if self.index.contains_key(&seq) {
            return Ok(Ok(()));
        }
        // One batch is always accepted into an empty spool, whatever its size.
        let overhead = if self.opts.key.is_some() { OVERHEAD } else { 0 };
        if self.bytes > 0
            && self.bytes + (RECORD_HEADER + overhead + data.len()) as u64 > self.opts.max_bytes
        {
            return Ok(Err(Full));
        }
        let roll = match self.segments.values().next_back() {
            None => true,
            Some(s) => s.len > 0 && s.len >= self.opts.segment_bytes,
        };
        if roll {
            let path = self.opts.dir.join(segment_name(seq));
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            if self.opts.fsync == FsyncPolicy::Always {
                durable::sync_dir(&self.opts.dir)?;
            }
            self.segments.insert(
                seq,
                Segment {
                    path,
                    len: 0,
                    last_seq: 0,
                },
            );
            self.append = Some(f);
        }
        let (&first, seg) = self.segments.iter_mut().next_back().expect("a segment");
        let f = self.append.as_mut().expect("an open segment");
        let stored;
        let (data, encrypted) = match &self.opts.key {
            Some(k) => {
                stored = k.seal(first, seq, data).map_err(io::Error::other)?;
                (&stored[..], true)
            }
            None => (data, false),
        };
        let rec = encode_record_flagged(seq, data, encrypted);
        f.write_all(&rec)?;
        if self.opts.fsync == FsyncPolicy::Always {
            f.sync_data()?;
        }
        self.index.insert(
            seq,
            Loc {
                segment: first,
                offset: seg.len + RECORD_HEADER as u64,
                len: data.len() as u32,
                encrypted,
                at: SystemTime::now(),
            },
        );
        seg.len += rec.len() as u64;
        seg.last_seq = seg.last_seq.max(seq);
        self.bytes += rec.len() as u64;
        if roll {
            // The previous segment may be delivered already.
            self.collect()?;
        }
        Ok(Ok(()))
    }

    /// The bytes of batch `seq`, if the spool holds it.
    pub fn read(&mut self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(loc) = self.index.get(&seq).copied() else {
            return Ok(None);
        };
        if !self.readers.contains_key(&loc.segment) {
            let path = &self.segments[&loc.segment].path;
            self.readers.insert(loc.segment, File::open(path)?);
        }
        let mut buf = vec![0; loc.len as usize];
        self.readers[&loc.segment].read_exact_at(&mut buf, loc.offset)?;
        if !loc.encrypted {
            return Ok(Some(buf));
        }
        let key = self.opts.key.as_ref().expect("checked at open");
        match key.open(loc.segment, seq, &buf) {
            Some(plain) => Ok(Some(plain)),
            None => Err(bad_data(format!(
                "{}: record seq {seq} no longer authenticates (changed on disk?); not forwarding it",
                self.segments[&loc.segment].path.display()
            ))),
        }
    }

    /// When the oldest batch that some sink has not acknowledged was appended.
    pub fn oldest_undelivered(&self) -> Option<SystemTime> {
        let done = self.acked.values().copied().min()?;
        self.index.range(done + 1..).next().map(|(_, l)| l.at)
    }

    /// The first seq after `after` that the spool holds.
    pub fn next_after(&self, after: u64) -> Option<u64> {
        self.index.range(after + 1..).next().map(|(&s, _)| s)
    }

    /// The highest seq in the spool.
    pub fn highest_seq(&self) -> Option<u64> {
        self.index.keys().next_back().copied()
    }

    /// The highest seq `sink` acknowledged.
    pub fn acked(&self, sink: &str) -> u64 {
        self.acked.get(sink).copied().unwrap_or(0)
    }

    /// Bytes of segments on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Batches in the spool.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the spool holds no batch.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// `sink` has every batch up to `seq` (delivered or dead-lettered). Persists the
    /// acknowledgement and deletes segments every sink is done with.
    pub fn ack(&mut self, sink: &str, seq: u64) -> io::Result<()> {
        let a = self.acked.entry(sink.to_string()).or_insert(0);
        if seq <= *a {
            return Ok(());
        }
        *a = seq;
        let acks = Acks {
            version: 1,
            acked: self.acked.clone(),
        };
        let path = self.opts.dir.join(ACKS_FILE);
        let json = serde_json::to_vec(&acks).expect("acks serialize");
        if self.opts.fsync == FsyncPolicy::Always {
            // Temp file, fsync, rename, fsync the directory: after a power loss the file is
            // the old or the new acknowledgements, never empty or torn.
            durable::atomic_write(&path, &json, 0o600)?;
        } else {
            // A lost acknowledgement only means a batch is sent again (at least once).
            let tmp = durable::temp_path(&path);
            fs::write(&tmp, json)?;
            fs::rename(&tmp, &path)?;
        }
        self.collect()
    }

    /// Whether every sink has acknowledged `seq`.
    pub fn delivered_by_all(&self, seq: u64) -> bool {
        self.acked.values().all(|&a| a >= seq)
    }

    /// Batches in the spool that `sink` has not acknowledged.
    pub fn pending(&self, sink: &str) -> usize {
        self.index.range(self.acked(sink) + 1..).count()
    }

    /// Deletes the segments that every sink is done with (the one appended to is kept).
    fn collect(&mut self) -> io::Result<()> {
        let done = self.acked.values().copied().min().unwrap_or(0);
        let active = self.segments.keys().next_back().copied();
        let gone: Vec<u64> = self
            .segments
            .iter()
            .filter(|(&f, s)| Some(f) != active && s.last_seq <= done)
            .map(|(&f, _)| f)
            .collect();
        for f in gone {
            let seg = self.segments.remove(&f).expect("listed");
            self.readers.remove(&f);
            fs::remove_file(&seg.path)?;
            self.bytes -= seg.len;
            self.index.retain(|_, l| l.segment != f);
        }
        // The active segment stays even when delivered: it holds the newest batch, which the
        // next start needs to continue the chain if the agent stopped before persisting it.
        Ok(())
    }

    /// The segment files on disk (for tests and logs).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.values().map(|s| s.path.clone()).collect()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, segment_bytes: u64, max_bytes: u64) -> SpoolOptions {
        SpoolOptions {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            fsync: FsyncPolicy::Always,
            key: None,
        }
    }

    fn batch(seq: u64) -> Vec<u8> {
        format!("batch {seq} [REDACTED:x]\n").repeat(3).into_bytes()
    }

    fn sinks() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn append_replay_read() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(opts(d.path(), 1 << 20, 1 << 30), &sinks()).unwrap();
        for seq in 1..=5 {
            s.append(seq, &batch(seq)).unwrap().unwrap();
        }
        assert_eq!(s.read(3).unwrap().unwrap(), batch(3));
        drop(s);
        let mut s = Spool::open(opts(d.path(), 1 << 20, 1 << 30), &sinks()).unwrap();
        assert_eq!(s.replay.records, 5);
        assert_eq!(s.len(), 5);
        assert_eq!(s.next_after(0), Some(1));
        assert_eq!(s.read(5).unwrap().unwrap(), batch(5));
        s.append(6, &batch(6)).unwrap().unwrap();
        assert_eq!(s.highest_seq(), Some(6));
    }

    #[test]
    fn segment_deleted_only_when_every_sink_acked() {
        let d = tempfile::tempdir().unwrap();
        // Tiny segments: one record each.
        let mut s = Spool::open(opts(d.path(), 1, 1 << 30), &sinks()).unwrap();
        for seq in 1..=4 {
            s.append(seq, &batch(seq)).unwrap().unwrap();
        }
        assert_eq!(s.segment_paths().len(), 4);
        s.ack("a", 3).unwrap();
        assert_eq!(s.segment_paths().len(), 4, "sink b has acked nothing");
        s.ack("b", 2).unwrap();
        assert_eq!(s.segment_paths().len(), 2);
        assert!(s.read(1).unwrap().is_none());
        assert_eq!(s.read(3).unwrap().unwrap(), batch(3));
        drop(s);
        // Acknowledgements survive a restart.
        let mut s = Spool::open(opts(d.path(), 1, 1 << 30), &sinks()).unwrap();
        assert_eq!((s.acked("a"), s.acked("b")), (3, 2));
        s.ack("b", 4).unwrap();
        assert_eq!(s.pending("a"), 1);
        s.ack("a", 4).unwrap();
        assert!(s.delivered_by_all(4));
        assert_eq!(s.pending("a"), 0);
        // The segment being appended to stays (it holds the newest batch).
        assert_eq!(s.segment_paths().len(), 1);
        assert_eq!(s.next_after(4), None);
        s.append(5, &batch(5)).unwrap().unwrap();
        assert_eq!(s.next_after(4), Some(5));
        assert_eq!(s.segment_paths().len(), 1, "the delivered segment is gone");
    }

    /// A closed spool in `dir` holding batches 1, 2 and 3 in one segment; returns its path.
    fn segment_of_three(dir: &Path) -> PathBuf {
        let mut s = Spool::open(opts(dir, 1 << 20, 1 << 30), &sinks()).unwrap();
        for seq in 1..=3 {
            s.append(seq, &batch(seq)).unwrap().unwrap();
        }
        s.segment_paths().pop().unwrap()
    }

    #[test]
    fn torn_last_record_is_skipped_and_the_rest_replayed() {
        let d = tempfile::tempdir().unwrap();
        let seg = segment_of_three(d.path());
        let full = fs::metadata(&seg).unwrap().len();
        // Cut the last record in the middle of its batch bytes.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(full - 7).unwrap();
        drop(f);
        let mut s = Spool::open(opts(d.path(), 1 << 20, 1 << 30), &sinks()).unwrap();
        assert!(s.replay.torn);
        assert_eq!(s.replay.records, 2);
        assert_eq!(s.read(2).unwrap().unwrap(), batch(2));
        assert!(s.read(3).unwrap().is_none());
        // The torn tail was cut: a new append lands on a record boundary and replays.
        s.append(3, &batch(3)).unwrap().unwrap();
        drop(s);
        let mut s = Spool::open(opts(d.path(), 1 << 20, 1 << 30), &sinks()).unwrap();
        assert!(!s.replay.torn);
        assert_eq!(s.replay.records, 3);
        assert_eq!(s.read(3).unwrap().unwrap(), batch(3));

        // A tear inside the record header is found too.
        let seg = s.segment_paths().pop().unwrap();
        drop(s);
        let len = fs::metadata(&seg).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&encode_record(4, &batch(4))[..5]).unwrap();
        drop(f);
        let s = Spool::open(opts(d.path(), 1 << 20, 1 << 30), &sinks()).unwrap();
        assert!(s.replay.torn);
        assert_eq!(s.replay.records, 3);
        assert_eq!(fs::metadata(&seg).unwrap().len(), len);
    }

    #[test]
    fn crc_mismatch_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let seg = segment_of_three(d.path());
        let mut data = fs::read(&seg).unwrap();
        let rec = RECORD_HEADER + batch(1).len();
        data[rec + RECORD_HEADER + 2] ^= 0x20; // a byte of batch 2
        fs::write(&seg, &data).unwrap();
        let mut s = Spool::open(opts(d.path(), 1 << 20, 1 << 30), &sinks()).unwrap();
        assert_eq!(s.replay.corrupt, 1);
        assert_eq!(s.replay.records, 2);
        assert!(s.read(2).unwrap().is_none());
        assert_eq!(s.read(3).unwrap().unwrap(), batch(3));
    }

    #[test]
    fn size_cap_reports_full_until_acked() {
        let d = tempfile::tempdir().unwrap();
        let rec = (RECORD_HEADER + batch(1).len()) as u64;
        let mut s = Spool::open(opts(d.path(), rec, 3 * rec), &["a".to_string()]).unwrap();
        for seq in 1..=3 {
            s.append(seq, &batch(seq)).unwrap().unwrap();
        }
        assert_eq!(s.append(4, &batch(4)).unwrap(), Err(Full));
        s.ack("a", 1).unwrap();
        s.append(4, &batch(4)).unwrap().unwrap();
        assert_eq!(s.bytes(), 3 * rec);
    }

    #[test]
    fn new_sink_starts_at_the_oldest_batch() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(opts(d.path(), 1, 1 << 30), &["a".to_string()]).unwrap();
        for seq in 1..=3 {
            s.append(seq, &batch(seq)).unwrap().unwrap();
        }
        s.ack("a", 1).unwrap();
        drop(s);
        let s = Spool::open(opts(d.path(), 1, 1 << 30), &sinks()).unwrap();
        assert_eq!(s.acked("b"), 1);
        assert_eq!(s.next_after(s.acked("b")), Some(2));
    }

    #[test]
    fn fsync_never_still_replays_after_a_clean_close() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path(), 1 << 20, 1 << 30);
        o.fsync = FsyncPolicy::Never;
        let mut s = Spool::open(o.clone(), &sinks()).unwrap();
        s.append(1, &batch(1)).unwrap().unwrap();
        drop(s);
        assert_eq!(Spool::open(o, &sinks()).unwrap().replay.records, 1);
    }

    fn key(b: u8) -> SpoolKey {
        SpoolKey::from_bytes(&[b; 32]).unwrap()
    }

    #[test]
    fn encrypted_records_hide_the_text_replay_with_the_key_and_refuse_another() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path(), 1 << 20, 1 << 30);
        o.key = Some(key(1));
        let mut s = Spool::open(o.clone(), &sinks()).unwrap();
        for seq in 1..=3 {
            s.append(seq, &batch(seq)).unwrap().unwrap();
        }
        assert_eq!(s.read(2).unwrap().unwrap(), batch(2));
        let seg = s.segment_paths().pop().unwrap();
        drop(s);
        let raw = fs::read(&seg).unwrap();
        assert!(!raw.windows(8).any(|w| w == b"REDACTED"));
        assert_eq!(raw.len(), 3 * (RECORD_HEADER + OVERHEAD + batch(1).len()));

        let mut s = Spool::open(o.clone(), &sinks()).unwrap();
        assert_eq!((s.replay.records, s.replay.unauthenticated), (3, 0));
        assert_eq!(s.read(3).unwrap().unwrap(), batch(3));
        drop(s);

        let mut wrong = o.clone();
        wrong.key = Some(key(2));
        let e = Spool::open(wrong, &sinks()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("not the key"), "{e}");
        let mut none = o.clone();
        none.key = None;
        let e = Spool::open(none, &sinks()).unwrap_err();
        assert!(e.to_string().contains("seq 1 is encrypted"), "{e}");

        // A record changed on disk with a recomputed CRC: skipped, never returned.
        let mut data = raw.clone();
        let rec = RECORD_HEADER + OVERHEAD + batch(1).len();
        let body = rec + RECORD_HEADER..2 * rec;
        data[body.start + 20] ^= 1;
        let c = crc(2, &data[body.clone()]);
        data[rec + 4..rec + 8].copy_from_slice(&c.to_le_bytes());
        fs::write(&seg, &data).unwrap();
        let mut s = Spool::open(o.clone(), &sinks()).unwrap();
        assert_eq!((s.replay.records, s.replay.unauthenticated), (2, 1));
        assert!(s.read(2).unwrap().is_none());
        assert_eq!(s.next_after(1), Some(3));
        drop(s);
        // Batch 1's ciphertext put under seq 2 (CRC recomputed): the tag binds it to seq 1.
        let mut data = raw.clone();
        let one = raw[RECORD_HEADER..rec].to_vec();
        data[rec + RECORD_HEADER..2 * rec].copy_from_slice(&one);
        let c = crc(2, &one);
        data[rec + 4..rec + 8].copy_from_slice(&c.to_le_bytes());
        fs::write(&seg, &data).unwrap();
        let s = Spool::open(o.clone(), &sinks()).unwrap();
        assert_eq!(s.replay.unauthenticated, 1);
        drop(s);
        fs::write(&seg, &raw).unwrap();
        // The same record copied into another segment does not authenticate there.
        let other = d.path().join(segment_name(100));
        fs::write(&other, &raw[..rec]).unwrap();
        let s = Spool::open(o, &sinks()).unwrap();
        assert_eq!(s.replay.unauthenticated, 1);
    }

    #[test]
    fn plaintext_records_still_replay_once_a_key_is_set() {
        let d = tempfile::tempdir().unwrap();
        let o = opts(d.path(), 1 << 20, 1 << 30);
        let mut s = Spool::open(o.clone(), &sinks()).unwrap();
        s.append(1, &batch(1)).unwrap().unwrap();
        drop(s);
        let mut k = o;
        k.key = Some(key(1));
        let mut s = Spool::open(k, &sinks()).unwrap();
        s.append(2, &batch(2)).unwrap().unwrap();
        assert_eq!(s.read(1).unwrap().unwrap(), batch(1));
        assert_eq!(s.read(2).unwrap().unwrap(), batch(2));
    }

    #[test]
    fn oldest_undelivered_follows_the_slowest_sink() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(opts(d.path(), 1 << 20, 1 << 30), &sinks()).unwrap();
        assert!(s.oldest_undelivered().is_none());
        s.append(1, &batch(1)).unwrap().unwrap();
        let t1 = s.oldest_undelivered().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.append(2, &batch(2)).unwrap().unwrap();
        s.ack("a", 2).unwrap();
        assert_eq!(s.oldest_undelivered(), Some(t1));
        s.ack("b", 1).unwrap();
        assert!(s.oldest_undelivered().unwrap() > t1);
        s.ack("b", 2).unwrap();
        assert!(s.oldest_undelivered().is_none());
    }
}
