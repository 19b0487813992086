//! Known secret values (CI masked variables) and the encoded forms they leak in.
//!
//! A value printed by a build rarely appears only raw: `echo $TOKEN | base64`, a URL query, a
//! JSON document or a hex dump all carry it too. Each value is expanded into every form below,
//! and all forms go into one exact Aho-Corasick automaton.

use base64::alphabet::{STANDARD, URL_SAFE};
use base64::engine::{general_purpose::NO_PAD, GeneralPurpose};
use base64::Engine;

/// Values shorter than this are refused: GitHub's runner once masked `{` everywhere because it
/// had no minimum.
pub const MIN_KNOWN_LEN: usize = 6;

/// Every form of `value` to mask: raw, base64 (standard and URL-safe alphabets, each at the
/// three alignments a value can take inside a longer base64 stream), URL-encoded, JSON-escaped
/// and hex (both cases). Duplicates and forms shorter than the minimum are dropped.
pub fn encoded_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms: Vec<Vec<u8>> = vec![value.to_vec()];
    for alphabet in [&STANDARD, &URL_SAFE] {
        let engine = GeneralPurpose::new(alphabet, NO_PAD);
        let padded = GeneralPurpose::new(alphabet, base64::engine::general_purpose::PAD);
        for k in 0..3usize {
            forms.push(base64_aligned(&engine, value, k));
            // The value at the very end of the encoded data: its last characters and the
            // padding are determined too (the usual `echo $SECRET | base64` case).
            forms.push(base64_tail(&padded, value, k));
        }
    }
    forms.push(url_encode(value, false));
    forms.push(url_encode(value, true));
    forms.push(json_escape(value, false));
    forms.push(json_escape(value, true));
    forms.push(hex(value, b"0123456789abcdef"));
    forms.push(hex(value, b"0123456789ABCDEF"));
    forms.retain(|f| f.len() >= MIN_KNOWN_LEN.min(value.len()) && !f.is_empty());
    forms.sort();
    forms.dedup();
    forms
}

/// The base64 characters that depend only on `value` when it sits `k` bytes past a 3-byte
/// group boundary: characters mixing in bits of the neighbouring bytes are cut off.
fn base64_aligned(engine: &GeneralPurpose, value: &[u8], k: usize) -> Vec<u8> {
    let mut buf = vec![0u8; k];
    buf.extend_from_slice(value);
    let enc = engine.encode(&buf).into_bytes();
    let n = buf.len();
    // Character i covers bits [6i, 6i+6) of the stream; the value occupies bits [8k, 8n).
    let start = (8 * k).div_ceil(6);
    let end = (8 * n) / 6;
    if start >= end {
        return Vec::new();
    }
    enc[start..end].to_vec()
}

/// Like [`base64_aligned`] but with the value ending the stream, so the final characters
/// and `=` padding belong to it as well.
fn base64_tail(engine: &GeneralPurpose, value: &[u8], k: usize) -> Vec<u8> {
    let mut buf = vec![0u8; k];
    buf.extend_from_slice(value);
    let enc = engine.encode(&buf).into_bytes();
    enc[(8 * k).div_ceil(6)..].to_vec()
}

fn url_encode(value: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(value.len() * 3);
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(digits[(b >> 4) as usize]);
            out.push(digits[(b & 15) as usize]);
        }
    }
    out
}

fn json_escape(value: &[u8], escape_slash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' if escape_slash => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

fn hex(value: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() * 2);
    for &b in value {
        out.push(digits[(b >> 4) as usize]);
        out.push(digits[(b & 15) as usize]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;

    #[test]
    fn every_alignment_is_found_inside_a_longer_base64_stream() {
        let value = b"s3cr3t-Value!";
        let forms = encoded_forms(value);
        for prefix_len in 0..6 {
            let mut plain = b"prefix".to_vec();
            plain.truncate(prefix_len);
            plain.extend_from_slice(value);
            plain.extend_from_slice(b"suffix");
            let enc = B64.encode(&plain).into_bytes();
            assert!(
                forms.iter().any(|f| enc.windows(f.len()).any(|w| w == f.as_slice())),
                "prefix {prefix_len}: {}",
                String::from_utf8_lossy(&enc)
            );
        }
    }

    #[test]
    fn url_json_hex_forms() {
        let forms = encoded_forms(b"p@ss w\"rd/1");
        let has = |s: &str| forms.iter().any(|f| f == s.as_bytes());
        assert!(has("p%40ss%20w%22rd%2F1"));
        assert!(has("p%40ss%20w%22rd%2f1"));
        assert!(has("p@ss w\\\"rd\\/1"));
        assert!(has(&"p@ss w\"rd/1".bytes().map(|b| format!("{b:02x}")).collect::<String>()));
    }
}
