//! The streaming contract: output is identical to whole-input redaction for every chunking,
//! newlines are never added or removed, and nothing planted survives.

use logveil_patterns::{Counts, Plan, Redactor, RedactorBuilder};
use proptest::prelude::*;

const TEST_RULES: &str = r#"
[[rule]]
id = "gh-token"
category = "secret"
regex = '''\bgh[pousr]_[A-Za-z0-9]{36}\b'''
keywords = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]

[[rule]]
id = "ssn-test"
category = "pii"
regex = '''\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b'''
validator = "ssn"

[[rule]]
id = "mrn-test"
category = "phi"
regex = '''(?i)\bMRN[:# ]{1,3}(?P<secret>[A-Z0-9]{5,15})\b'''
keywords = ["mrn"]

[[rule]]
id = "pw-test"
category = "secret"
regex = '''(?i)\bpassword\s{0,3}[=:]\s{0,3}(?P<secret>[^\s'"]{8,128})'''
keywords = ["password"]
validator = "entropy>=2.5"
"#;

const TOKEN: &str = "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3h5J";
const KNOWN: &str = "Kn0wnS3cretValue!";
const SSN: &str = "536-22-1849";
const KEY_LINES: [&str; 3] = [
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
    "MkvjR3Y1r1uL8jH2cF+NvT5bG0aXyZ/9qW3eR7tU1iO2pA4sD6fG8hJ0kL3mN5oP",
    "Zw==",
];

fn redactor(window: usize) -> Redactor {
    let mut b = RedactorBuilder::empty();
    b.add_rules_toml("test.toml", TEST_RULES).unwrap();
    b.known_value(KNOWN.as_bytes(), "test").unwrap();
    b.window(window);
    b.max_line_bytes(1 << 20);
    b.build().unwrap()
}

fn chunked(r: &Redactor, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut s = r.stream();
    let mut out = Vec::new();
    let mut pos = 0;
    for &c in cuts {
        let c = c.min(input.len()).max(pos);
        s.push(&input[pos..c], &mut out);
        pos = c;
    }
    s.push(&input[pos..], &mut out);
    s.finish(&mut out);
    out
}

fn assert_clean(out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    for v in [
        TOKEN,
        KNOWN,
        SSN,
        KEY_LINES[0],
        KEY_LINES[1],
        "s3cr3tPassw0rdXYZ",
        "Inband-Secret-42",
    ] {
        assert!(!text.contains(v), "{v} leaked");
    }
    assert!(!text.contains("Zw=="), "key tail leaked");
}

/// One piece of a generated log.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[ -~]{0,80}".prop_map(|s| format!("{s}\n").into_bytes()),
        1 => Just(format!("2024-05-01T10:00:00Z export GITHUB_TOKEN={TOKEN}\n").into_bytes()),
        1 => Just(format!("\x1b[32mpatient ssn {SSN}\x1b[0m\r\n").into_bytes()),
        1 => Just(format!("value={KNOWN} and b64 {}\n", "S24wd25TM2NyZXRWYWx1ZSE=").into_bytes()),
        1 => Just(b"\x1b[0KMRN: AB12345 seen\n".to_vec()),
        1 => Just(b"db password = s3cr3tPassw0rdXYZ ok\n".to_vec()),
        1 => Just(b"::add-mask::Inband-Secret-42\nlater Inband-Secret-42 again\n".to_vec()),
        1 => Just(b"bad utf8 \xff\xfe\x00 nul\n".to_vec()),
        1 => Just(format!("-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n{}\n-----END RSA PRIVATE KEY-----\n",
            KEY_LINES[0], KEY_LINES[1], KEY_LINES[2]).into_bytes()),
        1 => Just(format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n{}\nBuild finished\n",
            KEY_LINES[0], KEY_LINES[1]).into_bytes()),
        1 => (0usize..3000, 0usize..4).prop_map(|(n, k)| {
            // A long line (windowed at the small test window) with secrets inside.
            let mut l = "x".repeat(n).into_bytes();
            for _ in 0..k { l.extend_from_slice(format!(" {TOKEN} {SSN} ").as_bytes()); l.extend(std::iter::repeat_n(b'y', n / 2)); }
            l.push(b'\n');
            l
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn chunking_never_changes_output(
        segs in prop::collection::vec(segment(), 1..40),
        tail in "[ -~]{0,20}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let r = redactor(1024);
        let mut input: Vec<u8> = segs.concat();
        input.extend_from_slice(tail.as_bytes());
        let (whole, _) = r.redact_all(&input);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort();
        let streamed = chunked(&r, &input, &cuts);
        prop_assert_eq!(String::from_utf8_lossy(&streamed), String::from_utf8_lossy(&whole));
        prop_assert_eq!(
            input.iter().filter(|&&b| b == b'\n').count(),
            whole.iter().filter(|&&b| b == b'\n').count()
        );
        assert_clean(&whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    /// The same contract with the built-in packs (every structural, keyword and context rule).
    #[test]
    fn builtin_packs_chunking_never_changes_output(
        segs in prop::collection::vec(segment(), 1..30),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut b = RedactorBuilder::new();
        b.window(2048);
        b.known_value(KNOWN.as_bytes(), "test").unwrap();
        let r = b.build().unwrap();
        let input: Vec<u8> = segs.concat();
        let (whole, _) = r.redact_all(&input);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort();
        let streamed = chunked(&r, &input, &cuts);
        prop_assert_eq!(String::from_utf8_lossy(&streamed), String::from_utf8_lossy(&whole));
        assert_clean(&whole);
        // The stateless block API, as bytes and as a plan of pieces (the parallel filter's
        // zero-copy output), agree on the whole lines of the input. (Their counts are not
        // compared: both come from the same walk over the same spans, so they cannot differ.)
        let lines = &input[..input.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)];
        let mut scratch = r.scratch();
        let mut counts = Counts::default();
        let mut bytes = Vec::new();
        r.redact_lines(&mut scratch, lines, &[], &mut bytes, &mut counts);
        let mut plan = Plan::default();
        r.redact_lines_plan(&mut scratch, lines, &[], &mut plan, &mut counts);
        let pieced: Vec<u8> = plan.slices(lines).flatten().copied().collect();
        prop_assert_eq!(String::from_utf8_lossy(&pieced), String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn secret_across_byte_65536_every_chunk_size() {
    let r = redactor(1 << 20);
    let mut input = Vec::new();
    while input.len() < 65_536 - 20 {
        input.extend_from_slice(b"ordinary build output line with nothing in it\n");
    }
    input.truncate(65_536 - 20);
    input.extend_from_slice(format!("token {TOKEN} ssn {SSN} known {KNOWN}\nend\n").as_bytes());
    let (whole, _) = r.redact_all(&input);
    assert_clean(&whole);
    for size in [1, 2, 7, 4096, 65_536] {
        let cuts: Vec<usize> = (size..input.len()).step_by(size).collect();
        assert_eq!(chunked(&r, &input, &cuts), whole, "chunk size {size}");
    }
}

#[test]
fn clean_lines_are_byte_identical() {
    let r = redactor(1 << 20);
    let input = b"cargo build --release\n\x1b[1m\x1b[32m   Compiling\x1b[0m foo v0.1.0\r\n\xff\x00\n\nno newline";
    assert_eq!(r.redact_all(input).0, input.to_vec());
}

#[test]
fn long_line_is_windowed_and_token_at_end_is_masked() {
    let r = redactor(4096);
    let mut input = vec![b'a'; 200_000];
    input.extend_from_slice(format!(" {TOKEN}\n").as_bytes());
    let (out, counts) = r.redact_all(&input);
    assert_eq!(out.len(), 200_000 + " [REDACTED:gh-token]\n".len());
    assert_eq!(counts.total(), 1);
    assert_clean(&out);
}

#[test]
fn past_the_hard_limit_the_rest_is_never_emitted() {
    let mut b = RedactorBuilder::empty();
    b.add_rules_toml("test.toml", TEST_RULES).unwrap();
    b.window(4096).max_line_bytes(10_000);
    let r = b.build().unwrap();
    let mut input = vec![b'a'; 9_990];
    input.extend_from_slice(TOKEN.as_bytes());
    input.extend_from_slice(b"\nnext line\n");
    let (out, counts) = r.redact_all(&input);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.ends_with("[REDACTED:line-too-long]\nnext line\n"),
        "{}",
        &text[text.len() - 60..]
    );
    assert!(!text.contains("ghp_"));
    let too_long = r.ids().iter().position(|i| i == "line-too-long").unwrap();
    assert_eq!(counts.0[too_long], 1);
}

#[test]
fn cut_off_key_block_masks_body_then_resumes() {
    let r = redactor(1 << 20);
    let input = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n2024-01-01T00:00:00Z {}\nBuild finished\nplain\n",
        KEY_LINES[0], KEY_LINES[1]
    );
    let (out, _) = r.redact_all(input.as_bytes());
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "-----BEGIN OPENSSH PRIVATE KEY-----\n[REDACTED:private-key-block]\n2024-01-01T00:00:00Z [REDACTED:private-key-block]\nBuild finished\nplain\n"
    );
}

#[test]
fn timestamp_prefix_of_the_end_line_is_not_key_material() {
    let r = redactor(1 << 20);
    let input = format!(
        "2024-05-01T10:00:23.1100000Z -----BEGIN OPENSSH PRIVATE KEY-----\n2024-05-01T10:00:23.1200000Z {}\n2024-05-01T10:00:23.1500000Z -----END OPENSSH PRIVATE KEY-----\nnext\n",
        KEY_LINES[0]
    );
    let (out, _) = r.redact_all(input.as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "2024-05-01T10:00:23.1100000Z -----BEGIN OPENSSH PRIVATE KEY-----\n2024-05-01T10:00:23.1200000Z [REDACTED:private-key-block]\n2024-05-01T10:00:23.1500000Z -----END OPENSSH PRIVATE KEY-----\nnext\n"
    );
    let (out, _) = r.redact_all(
        b"-----BEGIN RSA PRIVATE KEY-----\nMIIEvQIBADAN\nZw==-----END RSA PRIVATE KEY-----\n",
    );
    assert!(!String::from_utf8_lossy(&out).contains("Zw=="));
}

#[test]
fn add_mask_registers_from_that_line_on() {
    let r = redactor(1 << 20);
    let input = b"before Inband-Secret-42\n::add-mask::Inband-Secret-42\nafter Inband-Secret-42 SW5iYW5kLVNlY3JldC00Mg==\n::add-mask::abc\n";
    let (out, _) = r.redact_all(input);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "before Inband-Secret-42\n::add-mask::[REDACTED:known-value]\nafter [REDACTED:known-value] [REDACTED:known-value]\n::add-mask::[REDACTED:known-value]\n"
    );
}

/// Two rules masking the same bytes (`GITHUB_TOKEN=ghp_...` is both a GitHub token and a
/// generic secret assignment): the rule named in the mask must not depend on how the input
/// was cut, nor on how many other masks share its block.
#[test]
fn rule_named_for_a_shared_span_does_not_depend_on_chunking() {
    let r = RedactorBuilder::new().build().unwrap();
    let mut input = String::new();
    for i in 0..3000 {
        input.push_str(&format!(
            "{i} GITHUB_TOKEN={TOKEN} STRIPE_SECRET_KEY=sk_live_{:024} ssn {SSN} mail a{i}@example.com\n",
            i
        ));
    }
    let (whole, _) = r.redact_all(input.as_bytes());
    for size in [1usize, 97, 4096, 100_000] {
        let cuts: Vec<usize> = (size..input.len()).step_by(size).collect();
        assert!(
            chunked(&r, input.as_bytes(), &cuts) == whole,
            "chunk size {size}"
        );
    }
    let mut by_line = Vec::new();
    let mut s = r.stream();
    for line in input.split_inclusive('\n') {
        s.push(line.as_bytes(), &mut by_line);
    }
    s.finish(&mut by_line);
    assert!(by_line == whole);
}

/// A known value of control bytes leaks in JSON as `\u00XX`, six bytes per byte: windows over
/// a long line overlap by that much, so the form is found wherever a window boundary falls
/// (with an overlap of three bytes per byte, forms across a boundary were missed).
#[test]
fn long_json_escaped_known_value_is_masked_across_windows() {
    let value: Vec<u8> = (0..200).map(|i| [1u8, 2, 3, 0x1f][i % 4]).collect();
    let json: String = value.iter().map(|b| format!("\\u{b:04x}")).collect();
    let mut b = RedactorBuilder::empty();
    b.known_value(&value, "test").unwrap();
    b.window(1024).max_line_bytes(1 << 20);
    let r = b.build().unwrap();
    for pad in (0..6000).step_by(97) {
        let mut input = vec![b'a'; pad];
        input.extend_from_slice(json.as_bytes());
        input.extend(std::iter::repeat_n(b'b', 20_000));
        input.push(b'\n');
        let (out, _) = r.redact_all(&input);
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("\\u0001"), "pad {pad}");
    }
}
