//! Every built-in rule carries at least five `match` and five `no_match` examples, and each
//! behaves as stated when the rule runs alone.

use logveil_patterns::rule::builtin_packs;

#[test]
fn every_builtin_rule_has_enough_examples() {
    let packs = builtin_packs().expect("built-in packs parse");
    let mut short = Vec::new();
    let mut n = 0;
    for p in &packs {
        for r in &p.rules {
            n += 1;
            if r.examples_match.len() < 5 || r.examples_no_match.len() < 5 {
                short.push(format!(
                    "{} ({}): {} match / {} no_match",
                    r.id,
                    r.origin,
                    r.examples_match.len(),
                    r.examples_no_match.len()
                ));
            }
        }
    }
    assert!(n >= 30, "only {n} built-in rules");
    assert!(
        short.is_empty(),
        "rules with too few examples:\n{}",
        short.join("\n")
    );
}

#[test]
fn every_builtin_example_behaves() {
    let packs = builtin_packs().expect("built-in packs parse");
    let defs: Vec<_> = packs.iter().flat_map(|p| p.rules.iter().cloned()).collect();
    let failures = logveil_patterns::check_examples(&defs).expect("rules compile");
    let report: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
    assert!(
        report.is_empty(),
        "{} failing examples:\n{}",
        report.len(),
        report.join("\n")
    );
}

/// Masks are placeholders no rule matches: redacting redacted output changes nothing, for
/// every mask style that keeps a marker.
#[test]
fn masked_output_is_a_fixed_point() {
    let packs = builtin_packs().expect("built-in packs parse");
    for style in ["rule-id", "fixed"] {
        let mut b = logveil_patterns::RedactorBuilder::new();
        b.enable_pack("network").unwrap();
        b.mask_style(logveil_patterns::MaskStyle::parse_simple(style).unwrap());
        let r = b.build().unwrap();
        for rule in packs.iter().flat_map(|p| &p.rules) {
            for ex in &rule.examples_match {
                let (once, _) = r.redact_all(ex.as_bytes());
                let (twice, _) = r.redact_all(&once);
                assert_eq!(
                    String::from_utf8_lossy(&twice),
                    String::from_utf8_lossy(&once),
                    "{style}: re-redacting the output of {} example {ex:?}",
                    rule.id
                );
            }
        }
    }
}
