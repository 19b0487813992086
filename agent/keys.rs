//! Ed25519 signing keys for sealed batches (ring).
//!
//! Files are PEM, readable by OpenSSL: the private key is PKCS#8 (`BEGIN PRIVATE KEY`, mode
//! 0600), the public key SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`). A key's id is the first 16
//! hex digits of the SHA-256 of its 32 public key bytes; every batch header names it.
//! A private key file that its group or others may read or write is refused.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::config::{Config, ConfigError, SecretRef};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const PRIVATE_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";
/// File names `keygen` writes.
pub const PRIVATE_FILE: &str = "seal.key";
/// See [`PRIVATE_FILE`].
pub const PUBLIC_FILE: &str = "seal.pub";

/// The id of a public key: 16 hex digits of its SHA-256.
pub fn key_id(public: &[u8]) -> String {
    hex(&ring::digest::digest(&ring::digest::SHA256, public).as_ref()[..8])
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A private signing key.
pub struct SealKey {
    pair: Ed25519KeyPair,
    id: String,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.id)
    }
}

impl SealKey {
    /// Parses a PKCS#8 document (as `keygen` writes it).
    pub fn from_pkcs8(der: &[u8]) -> Result<SealKey, String> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(der))
            .map_err(|e| format!("not an Ed25519 PKCS#8 private key ({e})"))?;
        let id = key_id(pair.public_key().as_ref());
        Ok(SealKey { pair, id })
    }

    /// Parses PEM (or bare base64) text.
    pub fn from_pem(text: &[u8]) -> Result<SealKey, String> {
        SealKey::from_pkcs8(&pem_decode(text, PRIVATE_LABEL)?)
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The 32 public key bytes.
    pub fn public(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}

/// A public key for `verify`.
#[derive(Clone, Debug)]
pub struct PublicKey {
    bytes: Vec<u8>,
    id: String,
}

impl PublicKey {
    /// From the 32 raw bytes.
    pub fn from_raw(bytes: &[u8]) -> Result<PublicKey, String> {
        if bytes.len() != 32 {
            return Err(format!(
                "an Ed25519 public key has 32 bytes, not {}",
                bytes.len()
            ));
        }
        Ok(PublicKey {
            bytes: bytes.to_vec(),
            id: key_id(bytes),
        })
    }

    /// From PEM SubjectPublicKeyInfo (or bare base64 of it or of the raw 32 bytes).
    pub fn from_pem(text: &[u8]) -> Result<PublicKey, String> {
        let der = pem_decode(text, PUBLIC_LABEL)?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(raw) => PublicKey::from_raw(raw),
            None if der.len() == 32 => PublicKey::from_raw(&der),
            None => Err("not an Ed25519 public key".into()),
        }
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// True when `sig` is this key's signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(msg, sig)
            .is_ok()
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn pem_decode(text: &[u8], label: &str) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "key is not PEM text".to_string())?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if b < e => &text[b + begin.len()..e],
        (None, None) if !text.contains("-----") => text,
        _ => return Err(format!("expected a PEM block `{begin}`")),
    };
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(b64)
        .map_err(|_| "key is not valid base64".to_string())
}

/// Creates a new key pair; returns the PKCS#8 document.
pub fn generate() -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng)
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| "the system random generator failed".to_string())
}

/// Creates `path` with exactly `mode` (never over an existing file: `AlreadyExists`), writes
/// `bytes` and syncs the file. The caller syncs the directory.
pub fn write_new_file(path: &Path, mode: u32, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have cleared bits but never adds any; set exactly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes a new key pair: the private key with mode 0600, never over an existing file.
/// Returns the key id.
pub fn write_pair(private: &Path, public: &Path) -> Result<SealKey, String> {
    for p in [private, public] {
        if p.exists() {
            return Err(format!("{}: already exists; not overwritten", p.display()));
        }
    }
    let pkcs8 = generate()?;
    let key = SealKey::from_pkcs8(&pkcs8)?;
    let write = |path: &Path, mode: u32, text: &str| -> Result<(), String> {
        write_new_file(path, mode, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(private, 0o600, &pem_encode(PRIVATE_LABEL, &pkcs8))?;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(key.public());
    write(public, 0o644, &pem_encode(PUBLIC_LABEL, &spki))?;
    if let Some(dir) = private.parent() {
        let _ = crate::durable::sync_dir(dir);
    }
    Ok(key)
}

/// Refuses a key file that group or others can access: its mode is all that guards the key.
/// `what` names the key in the message ("private key", "spool key").
pub fn refuse_shared(path: &Path, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: {what} is accessible by group or others (mode {mode:04o}); refusing to use it: run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Reads a private key file, refusing one that group or others can access.
pub fn load_private_file(path: &Path) -> Result<SealKey, String> {
    refuse_shared(path, "private key")?;
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    SealKey::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a public key file.
pub fn load_public(path: &Path) -> Result<PublicKey, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    PublicKey::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The public key file written next to a generated private key.
pub fn public_path_for(private: &Path) -> PathBuf {
    private.with_extension("pub")
}

/// Loads the `[seal] key`. With `generate` and `generate_if_missing`, a missing `file:` key
/// is created (with its `.pub` next to it). Without `generate`, a key that would be generated
/// gives `Ok(None)` (for `check-config`).
pub fn load_for_config(cfg: &Config, generate: bool) -> Result<Option<SealKey>, ConfigError> {
    match &cfg.seal.key {
        SecretRef::Env(name) => {
            let v = std::env::var_os(name).ok_or_else(|| {
                cfg.seal_error(format!("env:{name}: environment variable is not set"))
            })?;
            use std::os::unix::ffi::OsStrExt;
            SealKey::from_pem(v.as_bytes())
                .map(Some)
                .map_err(|e| cfg.seal_error(format!("env:{name}: {e}")))
        }
        r @ SecretRef::File(_) => {
            let path = r.path(&cfg.base).expect("file reference");
            if !path.exists() && cfg.seal.generate_if_missing {
                if !generate {
                    return Ok(None);
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| cfg.seal_error(format!("{}: {e}", dir.display())))?;
                }
                let key =
                    write_pair(&path, &public_path_for(&path)).map_err(|e| cfg.seal_error(e))?;
                tracing::info!(
                    key_id = key.key_id(),
                    public_key = %public_path_for(&path).display(),
                    "generated a new sealing key pair"
                );
                return Ok(Some(key));
            }
            if !path.exists() {
                return Err(cfg.seal_error(format!(
                    "{}: no such key file (create one with `logveil keygen --out DIR`, or set generate_if_missing = true)",
                    path.display()
                )));
            }
            load_private_file(&path)
                .map(Some)
                .map_err(|e| cfg.seal_error(e))
        }
    }
}

/// `logveil keygen --out DIR`.
pub fn keygen_main(out: &Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("logveil: {}: {e}", out.display());
        return ExitCode::from(1);
    }
    let private = out.join(PRIVATE_FILE);
    let public = out.join(PUBLIC_FILE);
    match write_pair(&private, &public) {
        Ok(key) => {
            println!("private key: {} (mode 0600)", private.display());
            println!("public key:  {}", public.display());
            println!("key id:      {}", key.key_id());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logveil: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_signatures() {
        let pkcs8 = generate().unwrap();
        let k = SealKey::from_pem(pem_encode(PRIVATE_LABEL, &pkcs8).as_bytes()).unwrap();
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(k.public());
        let p = PublicKey::from_pem(pem_encode(PUBLIC_LABEL, &spki).as_bytes()).unwrap();
        assert_eq!(p.key_id(), k.key_id());
        let sig = k.sign(b"header");
        assert!(p.verify(b"header", &sig));
        assert!(!p.verify(b"headeR", &sig));
        let other = SealKey::from_pkcs8(&generate().unwrap()).unwrap();
        assert!(!p.verify(b"header", &other.sign(b"header")));
    }
}
