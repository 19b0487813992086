//! The archive sink: one file per sealed batch in a directory, written atomically (temp +
//! fsync + rename + directory fsync). This is the audit evidence an operator keeps;
//! `logveil verify DIR --pubkey FILE` checks it offline.

use std::io;
use std::path::{Path, PathBuf};

use crate::durable;
use crate::seal::{file_name, seq_from_file_name, Sealed};

/// A directory of `batch-<seq>.lvb` files.
#[derive(Debug)]
pub struct ArchiveSink {
    dir: PathBuf,
}

impl ArchiveSink {
    /// Creates the directory if needed and removes temporary files a crash left.
    pub fn open(dir: &Path) -> Result<ArchiveSink, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("archive {}: {e}", dir.display()))?;
        let stale = durable::remove_stale_temps(dir)
            .map_err(|e| format!("archive {}: {e}", dir.display()))?;
        if stale > 0 {
            tracing::info!(archive = %dir.display(), files = stale, "removed unfinished temporary files");
        }
        Ok(ArchiveSink {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a batch. Rewriting the same bytes (a retry) is fine; a different batch under
    /// an existing seq is refused, so the chain never forks silently.
    pub fn write(&self, batch: &Sealed) -> io::Result<()> {
        let path = self.dir.join(file_name(batch.seq));
        match std::fs::read(&path) {
            Ok(existing) if existing == batch.bytes => return Ok(()),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} already holds a different batch {}; refusing to overwrite",
                        path.display(),
                        batch.seq
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        durable::atomic_write(&path, &batch.bytes, 0o644)
    }

    /// The bytes of batch `seq`.
    pub fn read(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.dir.join(file_name(seq))) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The highest seq among the batch files.
    pub fn highest_seq(&self) -> io::Result<Option<u64>> {
        let mut best = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(seq) = name.to_str().and_then(seq_from_file_name) {
                best = best.max(Some(seq));
            }
        }
        Ok(best)
    }
}
