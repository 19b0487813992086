//! Sealing: a batch of events becomes a signed link of a hash chain.
//!
//! A sealed batch is one file (`batch-<seq, 20 digits>.lvb`):
//!
//! ```text
//! {"format":"logveil-batch","version":1,"seq":7,"prev_hash":"…","payload_sha256":"…",…}\n   header: canonical JSON, the signed bytes
//! <base64 of the 64-byte Ed25519 signature of the header line>\n
//! <payload: canonical NDJSON of the events, exactly payload_bytes bytes>
//! ```
//!
//! The header's fields, in this order: `format`, `version`, `seq` (1, 2, …), `prev_hash`
//! (SHA-256 of the previous batch's header line, 64 zeros for seq 1), `payload_sha256`,
//! `payload_bytes`, `count` (events), `first_ts`/`last_ts`, `masks` (per-rule mask counts of
//! this batch, sorted by id, zeros left out), `key_id`, `host`, `sealed_at`. The header is
//! canonical — serde_json's compact form of these fields in this order — and a verifier checks
//! that it is, so one header has exactly one byte form. A batch's hash is the SHA-256 of its
//! header line (without the `\n`); the header binds the payload through its hash and the
//! previous batch through `prev_hash`, and the signature binds the header to the key. The model
//! is AWS CloudTrail's digest chain.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

use crate::keys::{hex, SealKey};

/// `format` of every header.
pub const FORMAT: &str = "logveil-batch";
/// The header version this agent writes and verifies.
pub const FORMAT_VERSION: u32 = 1;
/// `prev_hash` of the first batch.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Extension of batch files.
pub const EXTENSION: &str = "lvb";

/// The signed header of a batch.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`].
    pub version: u32,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Hash of the previous batch's header (hex).
    pub prev_hash: String,
    /// SHA-256 of the payload (hex).
    pub payload_sha256: String,
    /// Payload length.
    pub payload_bytes: u64,
    /// Events in the payload.
    pub count: u64,
    /// Timestamp of the first event.
    pub first_ts: String,
    /// Timestamp of the last event.
    pub last_ts: String,
    /// Masks per rule id in this batch (counts only, never values).
    pub masks: BTreeMap<String, u64>,
    /// Id of the signing key.
    pub key_id: String,
    /// Host of the agent that sealed it.
    pub host: String,
    /// When it was sealed.
    pub sealed_at: String,
}

/// What goes into a batch (from the batcher).
#[derive(Debug, Default)]
pub struct Content {
    /// Canonical NDJSON.
    pub payload: Vec<u8>,
    /// Events.
    pub count: u64,
    /// First event's timestamp.
    pub first_ts: String,
    /// Last event's timestamp.
    pub last_ts: String,
    /// Masks per rule id.
    pub masks: BTreeMap<String, u64>,
}

/// A sealed batch, ready for the sinks.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Its seq.
    pub seq: u64,
    /// Its hash (hex): the next batch's `prev_hash`.
    pub hash: String,
    /// The whole file.
    pub bytes: Vec<u8>,
}

/// The file name of batch `seq`.
pub fn file_name(seq: u64) -> String {
    format!("batch-{seq:020}.{EXTENSION}")
}

/// The seq in a batch file name.
pub fn seq_from_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("batch-")?.strip_suffix(".lvb")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// SHA-256 of a header line (hex).
pub fn header_hash(header_line: &[u8]) -> String {
    hex(digest(&SHA256, header_line).as_ref())
}

/// Seals `content` as batch `seq` after the batch whose hash is `prev_hash`.
pub fn seal(key: &SealKey, seq: u64, prev_hash: &str, host: &str, content: &Content) -> Sealed {
    let header = Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        seq,
        prev_hash: prev_hash.into(),
        payload_sha256: hex(digest(&SHA256, &content.payload).as_ref()),
        payload_bytes: content.payload.len() as u64,
        count: content.count,
        first_ts: content.first_ts.clone(),
        last_ts: content.last_ts.clone(),
        masks: content.masks.clone(),
        key_id: key.key_id().into(),
        host: host.into(),
        sealed_at: crate::event::now_rfc3339(),
    };
    let line = serde_json::to_vec(&header).expect("header serializes");
    let sig = STANDARD.encode(key.sign(&line));
    let mut bytes = Vec::with_capacity(line.len() + sig.len() + 2 + content.payload.len());
    bytes.extend_from_slice(&line);
    bytes.push(b'\n');
    bytes.extend_from_slice(sig.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&content.payload);
    Sealed {
        seq,
        hash: header_hash(&line),
        bytes,
    }
}

/// A batch file split into its parts (nothing verified but the shape).
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The signed header line.
    pub header_line: &'a [u8],
    /// The header.
    pub header: Header,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// The payload.
    pub payload: &'a [u8],
}

/// Splits a batch file; fails on a malformed or non-canonical header.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, String> {
    let nl = memchr::memchr(b'\n', bytes).ok_or("no header line")?;
    let header_line = &bytes[..nl];
    let header: Header =
        serde_json::from_slice(header_line).map_err(|e| format!("header is not valid: {e}"))?;
    if header.format != FORMAT || header.version != FORMAT_VERSION {
        return Err(format!(
            "unsupported format {:?} version {}",
            header.format, header.version
        ));
    }
    if serde_json::to_vec(&header).expect("header serializes") != header_line {
        return Err("header is not in canonical form".into());
    }
    let rest = &bytes[nl + 1..];
    let nl2 = memchr::memchr(b'\n', rest).ok_or("no signature line")?;
    let signature = STANDARD
        .decode(&rest[..nl2])
        .map_err(|_| "signature line is not base64".to_string())?;
    Ok(Parsed {
        header_line,
        header,
        signature,
        payload: &rest[nl2 + 1..],
    })
}

/// SHA-256 of a payload (hex).
pub fn payload_hash(payload: &[u8]) -> String {
    hex(digest(&SHA256, payload).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, PublicKey};

    #[test]
    fn seal_parse_round_trip() {
        let key = SealKey::from_pkcs8(&generate().unwrap()).unwrap();
        let content = Content {
            payload: b"{\"line\":\"a\"}\n".to_vec(),
            count: 1,
            first_ts: "t1".into(),
            last_ts: "t1".into(),
            masks: [("aws-access-key".to_string(), 2)].into_iter().collect(),
        };
        let s = seal(&key, 1, GENESIS_HASH, "h", &content);
        let p = parse(&s.bytes).unwrap();
        assert_eq!(p.header.seq, 1);
        assert_eq!(p.payload, &content.payload[..]);
        assert_eq!(header_hash(p.header_line), s.hash);
        assert_eq!(p.header.payload_sha256, payload_hash(p.payload));
        let public = PublicKey::from_raw(key.public()).unwrap();
        assert!(public.verify(p.header_line, &p.signature));
        assert_eq!(seq_from_file_name(&file_name(42)), Some(42));
        assert_eq!(seq_from_file_name("batch-42.lvb"), None);
        // A header with its fields reordered is refused as non-canonical.
        let text = String::from_utf8(s.bytes.clone()).unwrap();
        let swapped = text.replacen(
            "\"format\":\"logveil-batch\",\"version\":1",
            "\"version\":1,\"format\":\"logveil-batch\"",
            1,
        );
        assert!(parse(swapped.as_bytes()).unwrap_err().contains("canonical"));
    }
}
