//! Rules, `run --`, exit codes.

use crate::util::*;

#[test]
fn broken_rule_file_exits_2_naming_file_line_and_rule() {
    let dir = TempDir::new("badrule");
    let f = dir.write(
        "bad.toml",
        b"[[rule]]\nid = \"ok-rule\"\ncategory = \"secret\"\nregex = 'abc[0-9]{3}'\nkeywords = [\"abc\"]\n\n[[rule]]\nid = \"broken-rule\"\ncategory = \"secret\"\nregex = 'abc(['\nkeywords = [\"abc\"]\n",
    );
    for args in [vec!["filter", "--rules"], vec!["rules", "test"]] {
        let mut a = args.clone();
        a.push(f.to_str().unwrap());
        let out = run_with_input(logveil(&a), b"abc123\n");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("bad.toml:7") && err.contains("broken-rule"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    let f2 = dir.write(
        "syntax.toml",
        b"[[rule]]\nid = \"x\"\ncategory = \"secret\"\nregex = 'a'\nbogus = 1\n",
    );
    let out = run_with_input(logveil(&["filter", "--rules", f2.to_str().unwrap()]), b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("syntax.toml:5"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn user_rules_mask_and_rules_test_reports() {
    let dir = TempDir::new("userrule");
    let f = dir.write(
        "acme.toml",
        br#"[[rule]]
id = "acme-token"
category = "secret"
regex = '''\bacme_[a-z0-9]{16}\b'''
keywords = ["acme_"]
[rule.examples]
match = ["acme_0123456789abcdef", "x acme_aaaaaaaaaaaaaaaa y", "k=acme_0000000000000000", "acme_zzzzzzzzzzzzzzzz.", "(acme_abcdefabcdefabcd)"]
no_match = ["acme_short", "acme_0123456789abcdefg", "acme", "xacme_0123456789abcdef", "ACME"]
"#,
    );
    let out = run_with_input(logveil(&["rules", "test", f.to_str().unwrap()]), b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("10 passed, 0 failed"));
    let out = run_with_input(
        logveil(&["filter", "--rules", f.to_str().unwrap()]),
        b"key acme_0123456789abcdef\n",
    );
    assert_eq!(text(&out.stdout), "key [REDACTED:acme-token]\n");
    let out = run_with_input(
        logveil(&[
            "filter",
            "--rules",
            f.to_str().unwrap(),
            "--disable",
            "acme-token",
        ]),
        b"key acme_0123456789abcdef\n",
    );
    assert_eq!(text(&out.stdout), "key acme_0123456789abcdef\n");
    let out = run_with_input(logveil(&["filter", "--disable", "no-such-rule"]), b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no-such-rule"));
    // A failing example is reported with exit 1.
    let bad = dir.write(
        "wrong.toml",
        b"[[rule]]\nid = \"w\"\ncategory = \"secret\"\nregex = 'zz[0-9]{4}'\nkeywords = [\"zz\"]\n[rule.examples]\nmatch = [\"zz12\"]\nno_match = []\n",
    );
    let out = run_with_input(logveil(&["rules", "test", bad.to_str().unwrap()]), b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("FAIL w"));
}

#[test]
fn rules_list_shows_every_pack() {
    let out = run_with_input(logveil(&["rules", "list"]), b"");
    assert!(out.status.success());
    let t = text(&out.stdout);
    for pack in [" secrets ", " pii ", " phi ", " network "] {
        assert!(t.contains(pack), "pack{pack}missing:\n{t}");
    }
    assert!(
        t.lines()
            .any(|l| l.contains(" network ") && l.contains(" no ")),
        "network is opt-in"
    );
}

#[test]
fn run_keeps_exit_code_and_redacts_both_streams() {
    let token = "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3h5J";
    let out = logveil(&[
        "run",
        "--",
        "sh",
        "-c",
        &format!("echo out {token}; echo err {token} >&2; exit 7"),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(o.starts_with("out [REDACTED:") && !o.contains(token), "{o}");
    assert!(e.starts_with("err [REDACTED:") && !e.contains(token), "{e}");
    let out = logveil(&["run", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = logveil(&["run", "--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("/nonexistent/program"));
}

#[test]
fn usage_errors_exit_2() {
    let out = logveil(&["filter", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = logveil(&["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = logveil(&["filter", "--mask-style", "weird"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
