//! `logveil filter`: known values, in-band masks, odd bytes, huge lines, pipes, latency.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

const TOKEN: &str = "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3h5J";

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn known_values_and_every_encoding_are_masked() {
    let dir = TempDir::new("known");
    let value = "Sup3r/Secret+Value\"42";
    let file = dir.write(
        "known.txt",
        format!("{value}\r\nanother-value-7\n\n").as_bytes(),
    );
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    let mut lines = vec![
        format!("raw {value} end"),
        format!("url Sup3r%2FSecret%2BValue%2242 end"),
        format!("json {{\"k\":\"Sup3r/Secret+Value\\\"42\"}}"),
        format!("json-slash \"Sup3r\\/Secret+Value\\\"42\""),
        format!("hex {hex} HEX {}", hex.to_uppercase()),
        "second another-value-7".to_string(),
    ];
    for prefix in ["", "a", "ab"] {
        lines.push(format!(
            "b64 {}",
            b64(format!("{prefix}{value}").as_bytes())
        ));
        lines.push(format!(
            "b64-mid {}",
            b64(format!("{prefix}{value}trailing").as_bytes())
        ));
    }
    let input = lines.join("\n") + "\n";
    let out = run_with_input(
        logveil(&["filter", "--mask-file", file.to_str().unwrap()]),
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = text(&out.stdout);
    assert_eq!(got.lines().count(), lines.len());
    for (i, line) in got.lines().enumerate() {
        assert!(
            line.contains("[REDACTED:known-value]"),
            "line {i} not masked: {line}"
        );
    }
    assert!(!got.contains(value) && !got.contains(&hex) && !got.contains("another-value-7"));
    // No 12-char piece of any encoded form survives.
    for l in &lines {
        let enc = l.split_whitespace().last().unwrap();
        if enc.len() >= 24 {
            assert!(!got.contains(&enc[6..18]), "piece of {enc} survived: {got}");
        }
    }
}

#[test]
fn mask_env_and_logveil_mask_prefix() {
    let out = run_with_input(
        {
            let mut c = logveil(&["filter", "--mask-env", "MY_TOKEN"]);
            c.env("MY_TOKEN", "env-secret-123")
                .env("LOGVEIL_MASK_DB", "db-pass-456");
            c
        },
        b"a env-secret-123 b db-pass-456 c\n",
    );
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "a [REDACTED:known-value] b [REDACTED:known-value] c\n"
    );
}

#[test]
fn short_known_value_is_refused_with_exit_2() {
    let dir = TempDir::new("short");
    let file = dir.write("k.txt", b"long-enough-value\n{\n");
    let out = run_with_input(
        logveil(&["filter", "--mask-file", file.to_str().unwrap()]),
        b"x\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("k.txt:2") && err.contains("shorter than"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = run_with_input(
        {
            let mut c = logveil(&["filter", "--mask-env", "UNSET_VAR_X"]);
            c.env_remove("UNSET_VAR_X");
            c
        },
        b"x\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("UNSET_VAR_X"));
}

#[test]
fn add_mask_line_registers_value() {
    let input = b"early in-band-secret-1\n::add-mask::in-band-secret-1\nlate in-band-secret-1\n";
    let out = run_with_input(logveil(&["filter"]), input);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "early in-band-secret-1\n::add-mask::[REDACTED:known-value]\nlate [REDACTED:known-value]\n"
    );
}

#[test]
fn invalid_utf8_nul_cr_and_ansi_pass_through() {
    let input: &[u8] = b"\xff\xfe bytes \x00 nul\r\n\x1b[31mred\x1b[0m\n\xc3\x28 end\n";
    let out = run_with_input(logveil(&["filter"]), input);
    assert!(out.status.success());
    assert_eq!(out.stdout, input);
    let mut input = b"\xff\x00 token=".to_vec();
    input.extend_from_slice(TOKEN.as_bytes());
    input.extend_from_slice(b" \xfe\n");
    let out = run_with_input(logveil(&["filter"]), &input);
    let got = out.stdout;
    assert!(
        got.starts_with(b"\xff\x00 token=[REDACTED:") && got.ends_with(b"] \xfe\n"),
        "{}",
        text(&got)
    );
}

#[test]
fn unterminated_last_line_is_redacted_without_adding_a_newline() {
    let input = format!("first\nlast {TOKEN}");
    let out = run_with_input(logveil(&["filter"]), input.as_bytes());
    assert!(out.status.success());
    let got = text(&out.stdout);
    assert!(
        got.starts_with("first\nlast [REDACTED:") && got.ends_with(']'),
        "{got}"
    );
}

#[test]
fn hundred_megabyte_line_with_token_at_end() {
    let mut input = vec![b'x'; 100 << 20];
    input.push(b' ');
    input.extend_from_slice(TOKEN.as_bytes());
    input.extend_from_slice(b"\nafter\n");
    let out = run_with_input(logveil(&["filter"]), &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = &out.stdout;
    assert!(
        !got.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "token leaked"
    );
    assert_eq!(got.iter().filter(|&&b| b == b'\n').count(), 2);
    assert!(got[..100 << 20].iter().all(|&b| b == b'x'));
    assert!(got.ends_with(b"]\nafter\n"));
}

#[test]
fn line_past_hard_limit_fails_closed() {
    let mut input = vec![b'y'; 3 << 20];
    input.extend_from_slice(TOKEN.as_bytes());
    input.extend_from_slice(b"\nnext\n");
    let out = run_with_input(
        logveil(&["filter", "--max-line-bytes", "2097152", "--stats"]),
        &input,
    );
    assert!(out.status.success());
    let got = &out.stdout;
    assert!(got.ends_with(b"[REDACTED:line-too-long]\nnext\n"));
    assert!(got.len() < (2 << 20) + 100);
    assert!(!text(got).contains("ghp_"));
    assert!(text(&out.stderr).contains("line-too-long"));
}

#[test]
fn head_closing_the_pipe_exits_zero_quietly() {
    let mut input = String::new();
    for i in 0..200_000 {
        input.push_str(&format!("line {i} with some ordinary build output\n"));
    }
    let dir = TempDir::new("head");
    let f = dir.write("in.log", input.as_bytes());
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} filter < {} | head -1",
            bin(),
            f.display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "line 0 with some ordinary build output\n"
    );
    assert!(
        !text(&out.stderr).contains("panic"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_line_comes_out_before_stdin_closes() {
    let mut child = logveil(&["filter"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    for i in 0..3 {
        let t0 = Instant::now();
        writeln!(stdin, "step {i}: token {TOKEN}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(
            line.starts_with(&format!("step {i}: token [REDACTED:")),
            "{line}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// A burst big enough to be redacted on two threads (while the filter reads ahead), then
/// one more line with stdin left open: that line must still come out at once, and every
/// line of the burst exactly once, in order.
#[test]
fn after_a_parallel_burst_the_next_line_is_not_held_back() {
    let mut child = logveil(&["filter", "--threads", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    const BURST: usize = 120_000;
    let (tx, rx) = std::sync::mpsc::channel();
    let read = std::thread::spawn(move || {
        let mut n = 0usize;
        for line in reader.lines() {
            let line = line.unwrap();
            if line.starts_with("tail: token") {
                tx.send((n, line)).unwrap();
                continue;
            }
            assert_eq!(
                line,
                format!("{n:08} build step ok, token [REDACTED:github-token] done"),
                "line {n}"
            );
            n += 1;
        }
        n
    });
    let mut burst = String::new();
    for i in 0..BURST {
        burst.push_str(&format!("{i:08} build step ok, token {TOKEN} done\n"));
    }
    stdin.write_all(burst.as_bytes()).unwrap();
    writeln!(stdin, "tail: token {TOKEN}").unwrap();
    stdin.flush().unwrap();
    let (before, tail) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the last line stayed in the filter while stdin was open");
    assert_eq!(before, BURST);
    assert!(tail.starts_with("tail: token [REDACTED:"), "{tail}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(read.join().unwrap(), BURST);
}

#[test]
fn mask_styles() {
    let dir = TempDir::new("styles");
    let key = dir.write("key", b"0123456789abcdef0123456789abcdef\n");
    let known = dir.write("k", b"patient-42-value\n");
    let input = b"x patient-42-value y\n";
    let run = |extra: &[&str]| {
        let mut args = vec!["filter", "--mask-file", known.to_str().unwrap()];
        args.extend_from_slice(extra);
        text(&run_with_input(logveil(&args), input).stdout)
    };
    assert_eq!(run(&[]), "x [REDACTED:known-value] y\n");
    assert_eq!(run(&["--mask-style", "fixed"]), "x [REDACTED] y\n");
    assert_eq!(run(&["--mask-style", "length"]), "x **************** y\n");
    let p1 = run(&[
        "--mask-style",
        "pseudonym",
        "--pseudonym-key-file",
        key.to_str().unwrap(),
    ]);
    let p2 = run(&[
        "--mask-style",
        "pseudonym",
        "--pseudonym-key-file",
        key.to_str().unwrap(),
    ]);
    assert_eq!(p1, p2, "pseudonyms are stable across runs");
    assert!(
        p1.starts_with("x [known-value:") && !p1.contains("patient-42"),
        "{p1}"
    );
    let out = run_with_input(logveil(&["filter", "--mask-style", "pseudonym"]), input);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn parallel_and_single_thread_agree() {
    // Over three 4 MiB blocks and a last round: the first block is redacted in parallel up to
    // the chunk holding the mask command and by the stream from there; the second in
    // parallel with the value registered in-band; the third likewise up to the chunk
    // holding the key block; the last round always goes through the stream.
    let mut input = String::new();
    for i in 0..600_000 {
        input.push_str(&format!(
            "{i} build step ok {}\n",
            if i % 97 == 0 { TOKEN } else { "-" }
        ));
        if i == 30_000 {
            input.push_str("::add-mask::late-registered-secret\n");
        }
        if i == 500_000 {
            input.push_str("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n");
        }
        if i > 30_000 && i % 1000 == 0 {
            input.push_str("echo late-registered-secret\n");
        }
    }
    // The premise above, against the filter's 4 MiB blocks (agent/filter.rs `BLOCK`).
    let block = |s: &str| input.find(s).unwrap() >> 22;
    assert_eq!(block("::add-mask::"), 0);
    assert_eq!(block("-----BEGIN OPENSSH"), 2);
    assert!(input.len() > 3 << 22);
    let dir = TempDir::new("par");
    let f = dir.write("in.log", input.as_bytes());
    let one = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{} filter --threads 1 < {}", bin(), f.display()))
        .output()
        .unwrap();
    let two = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{} filter --threads 2 < {}", bin(), f.display()))
        .output()
        .unwrap();
    assert!(one.status.success() && two.status.success());
    assert_eq!(one.stdout, two.stdout);
    for out in [&one.stdout, &two.stdout] {
        let out = text(out);
        assert!(!out.contains(TOKEN) && !out.contains("late-registered-secret"));
        assert!(!out.contains("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"));
    }
}

/// Many blocks, read ahead while workers run: each block's unfinished last line moves in
/// front of what was read ahead (buffers are swapped, not copied), and lines longer than a
/// block go through the windowed stream. File and pipe, one and two threads: the same bytes.
#[test]
fn parallel_blocks_with_read_ahead_agree() {
    let mut input = Vec::new();
    let mut x: u64 = 42;
    let mut i = 0u64;
    while input.len() < 24 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let pad = if x.is_multiple_of(5000) {
            5 << 20 // longer than a 4 MiB block
        } else {
            (x % 700) as usize
        };
        input.extend_from_slice(format!("{i} step {} ssn=715-26-5211 ", TOKEN).as_bytes());
        input.extend(std::iter::repeat_n(b'y', pad));
        input.push(b'\n');
        i += 1;
    }
    let dir = TempDir::new("par-blocks");
    let f = dir.write("in.log", &input);
    let run = |cmd: String| {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(cmd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        out.stdout
    };
    let one = run(format!("{} filter --threads 1 < {}", bin(), f.display()));
    assert_eq!(one.iter().filter(|&&b| b == b'\n').count() as u64, i);
    assert!(!text(&one).contains(TOKEN) && !text(&one).contains("715-26-5211"));
    for cmd in [
        format!("{} filter --threads 2 < {}", bin(), f.display()),
        format!("cat {} | {} filter --threads 2", f.display(), bin()),
    ] {
        assert!(run(cmd.clone()) == one, "{cmd}");
    }
}

/// The README's first command: the shipped sample log comes out with every planted value
/// masked and every look-alike (build number, digest, UUID, version) untouched.
#[test]
fn sample_ci_log_end_to_end() {
    let input = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sample-ci.log"
    ))
    .unwrap();
    let out = run_with_input(logveil(&["filter", "--stats"]), &input);
    assert!(out.status.success());
    let got = text(&out.stdout);
    assert_eq!(got.lines().count(), text(&input).lines().count());
    for secret in [
        "AKIAQ3EGRT5YJX7WZL2M",
        "9xK2mP7qR4sT1vW8yZ3bC6dF0gH5jL2nQ7rS4tU1",
        "Gx7pQ2mZ9rT4vK1s",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        "npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "ghp_Zk3Xw9Qm2Rt7Yp4Lb8Nc1Vd6Hf0Js5Ga2Ue9",
        "tR7#kL2@pQ9!mZ4x",
        "A7734921",
        "03/14/1985",
        "536-22-1849",
        "1234567893",
        "AB1234563",
        "1EG4-TE5-MK73",
        "jane.doe@example.com",
        "(555) 234-5678",
        "4111 1111 1111 1111",
        "PX-88213",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
        "QyNTUxOQAAACDk3Vq8x9Ql0YzJ4mT2sR7pN1wK6bH5cF8dG3aE0uV9iQAAAJgm5pXhJuaV",
    ] {
        assert!(!got.contains(secret), "{secret} leaked:\n{got}");
    }
    for kept in [
        "build 123-45-6789 of job 998877665 took 00:01:23.456",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "550e8400-e29b-41d4-a716-446655440000",
        "Deployed claims-service 2.3.1 to staging in 4.2s",
        "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
        "@git.example.org/acme/claims.git",
        "2024-05-01T10:00:23.1500000Z -----END OPENSSH PRIVATE KEY-----",
    ] {
        assert!(got.contains(kept), "{kept} was changed:\n{got}");
    }
    assert!(
        text(&out.stderr).contains("37 lines"),
        "{}",
        text(&out.stderr)
    );
}
