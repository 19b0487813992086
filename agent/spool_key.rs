//! The optional spool encryption key (`[spool] encryption_key_file`): AES-256-GCM over each
//! spool record, so that batches waiting for a SIEM are unreadable to someone who copies the
//! disk but not the key. The spool only ever holds redacted data; this protects what a
//! redaction rule missed and the metadata (hosts, jobs, file names) of the logs.
//!
//! A record is `nonce (12 bytes) || ciphertext || tag (16 bytes)`. The nonce is random per
//! record (ring's `SystemRandom`); at 2^32 records per key the collision chance stays below
//! 2^-32, far past what a spool of sealed batches holds before its segments are deleted. The
//! associated data is the segment's first seq and the record's seq, so a record moved to
//! another place in the spool (or another segment) fails authentication like a changed byte.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Bytes an encrypted record adds to its batch: nonce and tag.
pub const OVERHEAD: usize = NONCE_LEN + 16;

/// A loaded spool key. Cheap to clone; never printed.
#[derive(Clone)]
pub struct SpoolKey {
    key: Arc<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SpoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpoolKey(AES-256-GCM, redacted)")
    }
}

fn aad(segment: u64, seq: u64) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&segment.to_le_bytes());
    a[8..].copy_from_slice(&seq.to_le_bytes());
    a
}

impl SpoolKey {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<SpoolKey, String> {
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "a spool key is {KEY_LEN} raw bytes, this one has {} (create one with `logveil keygen --spool-key PATH`)",
                bytes.len()
            ));
        }
        let k = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| "not an AES-256 key")?;
        Ok(SpoolKey {
            key: Arc::new(LessSafeKey::new(k)),
            rng: SystemRandom::new(),
        })
    }

    /// Reads a key file, refusing one that group or others can access.
    pub fn load(path: &Path) -> Result<SpoolKey, String> {
        crate::keys::refuse_shared(path, "spool key")?;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        SpoolKey::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Encrypts batch `seq` for segment `segment`: nonce || ciphertext || tag.
    pub fn seal(&self, segment: u64, seq: u64, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "the system random generator failed")?;
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(segment, seq)),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| "encryption failed")?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts a record written by [`SpoolKey::seal`] at the same place. `None` when it does
    /// not authenticate: a different key, a changed byte, or a record moved elsewhere.
    pub fn open(&self, segment: u64, seq: u64, record: &[u8]) -> Option<Vec<u8>> {
        if record.len() < OVERHEAD {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&record[..NONCE_LEN]).ok()?;
        let mut buf = record[NONCE_LEN..].to_vec();
        let n = self
            .key
            .open_in_place(nonce, Aad::from(aad(segment, seq)), &mut buf)
            .ok()?
            .len();
        buf.truncate(n);
        Some(buf)
    }
}

/// `logveil keygen --spool-key PATH`: 32 random bytes, mode 0600, never over an existing file.
pub fn keygen_main(path: &Path) -> ExitCode {
    let mut key = [0u8; KEY_LEN];
    if SystemRandom::new().fill(&mut key).is_err() {
        eprintln!("logveil: the system random generator failed");
        return ExitCode::from(1);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("logveil: {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    }
    match crate::keys::write_new_file(path, 0o600, &key) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = crate::durable::sync_dir(dir);
            }
            println!("spool key: {} (mode 0600, 32 bytes)", path.display());
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "logveil: {}: already exists; not overwritten",
                path.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("logveil: {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_every_kind_of_tamper_fails() {
        let k = SpoolKey::from_bytes(&[7u8; 32]).unwrap();
        let rec = k.seal(1, 5, b"batch [REDACTED:x]").unwrap();
        assert_eq!(rec.len(), 18 + OVERHEAD);
        assert!(!rec.windows(8).any(|w| w == b"REDACTED"));
        assert_eq!(k.open(1, 5, &rec).unwrap(), b"batch [REDACTED:x]");
        // Moved to another seq or another segment.
        assert!(k.open(1, 6, &rec).is_none());
        assert!(k.open(2, 5, &rec).is_none());
        // A flipped byte anywhere.
        for i in 0..rec.len() {
            let mut t = rec.clone();
            t[i] ^= 1;
            assert!(k.open(1, 5, &t).is_none(), "byte {i}");
        }
        // Another key.
        let other = SpoolKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open(1, 5, &rec).is_none());
        // Fresh nonce per record.
        assert_ne!(k.seal(1, 5, b"x").unwrap(), k.seal(1, 5, b"x").unwrap());
        assert!(SpoolKey::from_bytes(&[0u8; 16]).is_err());
    }

    #[test]
    fn config_loads_the_key_and_refuses_bad_files() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("spool.key");
        assert_eq!(keygen_main(&key), ExitCode::SUCCESS);
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&key).unwrap().len(), KEY_LEN);
        assert_eq!(keygen_main(&key), ExitCode::from(1), "never overwrites");
        let cfg = |p: &Path| {
            crate::config::Config::parse(
                &d.path().join("agent.toml"),
                &format!(
                    "[[source]]\ntype = \"stdin\"\n[seal]\nkey = \"env:K\"\n[spool]\nencryption_key_file = {:?}\n",
                    p.file_name().unwrap()
                ),
            )
        };
        assert!(cfg(&key).unwrap().spool.key.is_some());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = cfg(&key).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert_eq!(e.at.map(|a| a.0), Some(6), "{e}");
        let short = d.path().join("short.key");
        std::fs::write(&short, [1u8; 16]).unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(cfg(&short)
            .unwrap_err()
            .to_string()
            .contains("32 raw bytes"));
        assert!(cfg(&d.path().join("missing.key")).is_err());
    }
}
