//! Durable agent state in `data_dir/state.json`: file checkpoints and the chain tip.
//!
//! ```json
//! {"version":1,"chain":{"seq":42,"hash":"…64 hex…","key_id":"…16 hex…"},
//!  "files":[{"dev":2049,"ino":1311,"head_len":256,"head_sha256":"…","path":"/builds/job.log","offset":81920,"updated":1714557602}]}
//! ```
//!
//! A file is known by its device and inode plus the SHA-256 of its first `head_len` bytes
//! (its fingerprint), never by its path: the path is informational. `offset` is the byte just
//! after the last line that is inside a batch every sink has durably written; the agent
//! resumes there. The file is rewritten (temp + fsync + rename + directory fsync) after every
//! sealed batch, after the batch itself: a crash in between re-reads some lines (duplicates
//! after the checkpoint), never skips one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::durable;

/// The state file's name in `data_dir`.
pub const STATE_FILE: &str = "state.json";
/// The state format version this agent reads and writes.
pub const STATE_VERSION: u32 = 1;
/// Checkpoints of files not seen for this long are dropped at start-up.
pub const FORGET_AFTER_SECS: u64 = 30 * 24 * 3600;

/// A file's identity and the offset to resume at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// How many head bytes the hash covers (the file's first `fingerprint_bytes`, fewer
    /// while the file was shorter).
    pub head_len: u64,
    /// SHA-256 of those bytes (hex).
    pub head_sha256: String,
    /// The path it was last read under (informational).
    pub path: String,
    /// Resume offset.
    pub offset: u64,
}

/// The tip of the hash chain: the last sealed batch every sink holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChainState {
    /// Its seq.
    pub seq: u64,
    /// SHA-256 of its header (hex): the next batch's `prev_hash`.
    pub hash: String,
    /// The key that sealed it.
    pub key_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredEntry {
    #[serde(flatten)]
    entry: FileEntry,
    updated: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDoc {
    version: u32,
    chain: Option<ChainState>,
    files: Vec<StoredEntry>,
}

/// In-memory state; [`StateStore::persist`] makes it durable.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    /// The chain tip, once a batch was sealed.
    pub chain: Option<ChainState>,
    files: BTreeMap<u64, (FileEntry, u64)>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl StateStore {
    /// Loads `data_dir/state.json` (an empty state when there is none). Checkpoints get
    /// lineage ids `1..=n`, returned for the file sources to match files against.
    pub fn open(data_dir: &Path) -> Result<(StateStore, Vec<(u64, FileEntry)>), String> {
        let path = data_dir.join(STATE_FILE);
        let doc = match std::fs::read(&path) {
            Ok(bytes) => {
                let doc: StateDoc = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{}: unreadable state ({e}); move it away to start over (files are then re-read)",
                        path.display()
                    )
                })?;
                if doc.version != STATE_VERSION {
                    return Err(format!(
                        "{}: state version {} is not supported (expected {STATE_VERSION})",
                        path.display(),
                        doc.version
                    ));
                }
                doc
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateDoc {
                version: STATE_VERSION,
                chain: None,
                files: Vec::new(),
            },
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let cutoff = now_secs().saturating_sub(FORGET_AFTER_SECS);
        let mut files = BTreeMap::new();
        let mut list = Vec::new();
        for (i, s) in doc
            .files
            .into_iter()
            .filter(|s| s.updated >= cutoff)
            .enumerate()
        {
            let lineage = i as u64 + 1;
            list.push((lineage, s.entry.clone()));
            files.insert(lineage, (s.entry, s.updated));
        }
        Ok((
            StateStore {
                path,
                chain: doc.chain,
                files,
            },
            list,
        ))
    }

    /// The first lineage id not used by a loaded checkpoint.
    pub fn next_lineage(&self) -> u64 {
        self.files.keys().next_back().map_or(1, |k| k + 1)
    }

    /// Records a position that is now durable.
    pub fn advance(&mut self, lineage: u64, entry: &FileEntry) {
        self.files.insert(lineage, (entry.clone(), now_secs()));
    }

    /// Drops a finished file's checkpoint.
    pub fn forget(&mut self, lineage: u64) {
        self.files.remove(&lineage);
    }

    /// The checkpoint of a lineage.
    pub fn get(&self, lineage: u64) -> Option<&FileEntry> {
        self.files.get(&lineage).map(|(e, _)| e)
    }

    /// Writes the state durably.
    pub fn persist(&self) -> std::io::Result<()> {
        let doc = StateDoc {
            version: STATE_VERSION,
            chain: self.chain.clone(),
            files: self
                .files
                .values()
                .map(|(e, u)| StoredEntry {
                    entry: e.clone(),
                    updated: *u,
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec(&doc).expect("state serializes");
        bytes.push(b'\n');
        durable::atomic_write(&self.path, &bytes, 0o600)
    }
}

/// Holds an exclusive lock on `data_dir` for the agent's lifetime (released by the kernel
/// when the process dies, even by `kill -9`).
pub struct DataDirLock {
    _file: File,
}

/// Creates `data_dir` and locks it; fails when another agent holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("data_dir {}: {e}", dir.display()))?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(format!(
            "data_dir {} is in use by another logveil agent (lock {})",
            dir.display(),
            path.display()
        ));
    }
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip() {
        let dir = std::env::temp_dir().join(format!("logveil-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut s, list) = StateStore::open(&dir).unwrap();
        assert!(list.is_empty() && s.chain.is_none());
        let e = FileEntry {
            dev: 1,
            ino: 2,
            head_len: 3,
            head_sha256: "ab".into(),
            path: "/x".into(),
            offset: 99,
        };
        s.advance(s.next_lineage(), &e);
        s.chain = Some(ChainState {
            seq: 5,
            hash: "00".into(),
            key_id: "k".into(),
        });
        s.persist().unwrap();
        let (s2, list) = StateStore::open(&dir).unwrap();
        assert_eq!(list, vec![(1, e)]);
        assert_eq!(s2.chain.unwrap().seq, 5);
        let _lock = lock_data_dir(&dir).unwrap();
        // flock locks belong to open file descriptions: a second open conflicts, even here.
        assert!(lock_data_dir(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
