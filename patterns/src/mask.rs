//! How a masked span is written out.

use ring::hmac;

/// The text that replaces a sensitive span.
#[derive(Clone, Debug, Default)]
pub enum MaskStyle {
    /// `[REDACTED:<rule-id>]`: says what was there without saying what it was.
    #[default]
    RuleId,
    /// `[REDACTED]` for every rule.
    Fixed,
    /// `*` repeated to the masked length, so column layouts survive.
    Length,
    /// `[<rule-id>:<8 hex>]`, the tag being HMAC-SHA256(key, value) truncated: the same
    /// identifier gets the same tag across runs and hosts, so analysts can correlate one
    /// patient across logs without seeing the identifier. Needs an operator key.
    Pseudonym(PseudonymKey),
}

/// An HMAC key for pseudonyms (kept opaque so it is never printed).
#[derive(Clone)]
pub struct PseudonymKey(hmac::Key);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// Minimum key length in bytes.
    pub const MIN_LEN: usize = 16;

    /// Wraps raw key bytes; refuses keys shorter than 16 bytes.
    pub fn new(key: &[u8]) -> Result<Self, crate::Error> {
        if key.len() < Self::MIN_LEN {
            return Err(crate::Error::PseudonymKey(key.len()));
        }
        Ok(PseudonymKey(hmac::Key::new(hmac::HMAC_SHA256, key)))
    }
}

impl MaskStyle {
    /// Parses `rule-id|fixed|length` (pseudonym needs a key and is built separately).
    pub fn parse_simple(s: &str) -> Option<MaskStyle> {
        match s {
            "rule-id" | "rule" | "default" => Some(MaskStyle::RuleId),
            "fixed" => Some(MaskStyle::Fixed),
            "length" => Some(MaskStyle::Length),
            _ => None,
        }
    }

    /// Appends the mask for `value` matched by rule `id` to `out`.
    pub(crate) fn write(&self, id: &str, value: &[u8], out: &mut Vec<u8>) {
        match self {
            MaskStyle::RuleId => {
                out.extend_from_slice(b"[REDACTED:");
                out.extend_from_slice(id.as_bytes());
                out.push(b']');
            }
            MaskStyle::Fixed => out.extend_from_slice(b"[REDACTED]"),
            MaskStyle::Length => out.resize(out.len() + value.len(), b'*'),
            MaskStyle::Pseudonym(key) => {
                let tag = hmac::sign(&key.0, value);
                out.push(b'[');
                out.extend_from_slice(id.as_bytes());
                out.push(b':');
                for b in &tag.as_ref()[..4] {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.push(b']');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(style: &MaskStyle, v: &[u8]) -> String {
        let mut out = Vec::new();
        style.write("mrn", v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn styles() {
        assert_eq!(render(&MaskStyle::RuleId, b"12345"), "[REDACTED:mrn]");
        assert_eq!(render(&MaskStyle::Fixed, b"12345"), "[REDACTED]");
        assert_eq!(render(&MaskStyle::Length, b"12345"), "*****");
        let k = MaskStyle::Pseudonym(PseudonymKey::new(b"0123456789abcdef").unwrap());
        let a = render(&k, b"MRN12345");
        assert_eq!(a, render(&k, b"MRN12345"), "stable across calls");
        assert_ne!(a, render(&k, b"MRN12346"));
        assert!(
            a.starts_with("[mrn:") && a.len() == "[mrn:".len() + 9,
            "{a}"
        );
        assert!(PseudonymKey::new(b"short").is_err());
    }
}
