//! The match view: the input with ANSI escape sequences blanked out.
//!
//! CI logs glue colour codes to words (`\x1b[0KPatient ID`), which defeats `\b` and was the
//! miss of every peer tool. Rules match on a copy where each escape sequence is replaced by
//! spaces of the same length, so offsets line up with the original and masks are applied to
//! the original bytes. Lines without ESC are matched in place (no copy).

const ESC: u8 = 0x1b;
/// Longest escape sequence we blank; longer runs are left as they are.
const MAX_SEQ: usize = 256;

/// Returns the view of `hay`: `hay` itself when it has no ESC byte, else `buf` filled with the
/// blanked copy.
pub(crate) fn view<'a>(hay: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    let Some(first) = memchr::memchr(ESC, hay) else {
        return hay;
    };
    buf.clear();
    buf.extend_from_slice(hay);
    // One pass over the ESC bytes of `hay` (read-only; the sequences are measured there),
    // skipping those inside a sequence already blanked (OSC's `ESC \`). Restarting a search
    // from each sequence's end, on the copy being blanked, spent most of its time on a
    // mispredicted test of the byte there (the bench log has an ESC every 125 bytes).
    let mut next = 0;
    for p in memchr::memchr_iter(ESC, &hay[first..]) {
        let p = p + first;
        if p < next {
            continue;
        }
        let len = seq_len(&hay[p..]);
        buf[p..p + len].fill(b' ');
        next = p + len;
    }
    buf
}

/// Length of the escape sequence at the start of `s` (which begins with ESC); at least 1.
fn seq_len(s: &[u8]) -> usize {
    let limit = s.len().min(MAX_SEQ);
    match s.get(1) {
        // CSI: ESC [ parameters intermediates final
        Some(b'[') => {
            let mut j = 2;
            while j < limit && (0x30..=0x3f).contains(&s[j]) {
                j += 1;
            }
            while j < limit && (0x20..=0x2f).contains(&s[j]) {
                j += 1;
            }
            if j < limit && (0x40..=0x7e).contains(&s[j]) {
                j + 1
            } else {
                j.min(limit).max(1)
            }
        }
        // OSC: ESC ] ... (BEL | ESC \)
        Some(b']') => {
            let mut j = 2;
            while j < limit && s[j] != 0x07 && s[j] != b'\n' {
                if s[j] == ESC && s.get(j + 1) == Some(&b'\\') {
                    return j + 2;
                }
                j += 1;
            }
            if j < limit && s[j] == 0x07 {
                j + 1
            } else {
                1
            }
        }
        Some(&c) if (0x40..=0x5f).contains(&c) || c == b'(' || c == b')' => {
            if (c == b'(' || c == b')') && s.len() > 2 {
                3
            } else {
                2
            }
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_csi_and_keeps_offsets() {
        let hay = b"\x1b[0KPatient ID \x1b[32mok\x1b[0m";
        let mut buf = Vec::new();
        let v = view(hay, &mut buf).to_vec();
        assert_eq!(v.len(), hay.len());
        assert_eq!(&v, b"    Patient ID      ok    ");
    }

    #[test]
    fn no_escape_no_copy() {
        let hay = b"plain line";
        let mut buf = Vec::new();
        assert_eq!(view(hay, &mut buf).as_ptr(), hay.as_ptr());
    }

    #[test]
    fn osc_ended_by_esc_backslash() {
        let mut buf = Vec::new();
        assert_eq!(view(b"\x1b]8;;u\x1b\\x\x1b[1m", &mut buf), b"        x    ");
    }

    #[test]
    fn truncated_sequence_and_newline() {
        let mut buf = Vec::new();
        assert_eq!(view(b"a\x1b[3", &mut buf), b"a   ");
        assert_eq!(view(b"a\x1b\nb", &mut buf), b"a \nb");
        assert_eq!(view(b"\x1b]0;title\x07x", &mut buf), b"          x");
    }
}
