//! A necessary condition for the built-in `email` rule around each `@`, checked outward from
//! the `@` before the rule's regex searches the region around it.
//!
//! Most `@` in a CI log are not in an address: action refs (`actions/checkout@v4`), image
//! digests (`node@sha256:...`), package specs (`lodash@4.17.21`, `@types/node`). Searching
//! the ~100 bytes around each of them ran the DFA forwards and then backwards to find where a
//! match starts. On the bench log 85% of the `@` fail the byte-class tests below, so their
//! search is skipped.

/// A check of a rule's rare byte at `v[at]`, the region searched around it ending at `end`:
/// false when no match of the rule can hold that byte.
pub(crate) type RareCheck = fn(v: &[u8], at: usize, end: usize) -> bool;

/// The check for rule `id` (regex `regex`, rare byte `rare`): [`email_may_match`] when this
/// is the built-in `email` rule it was derived from around its `@` (a user's rule of the same
/// name, or a changed pack, is searched around every rare byte as before).
pub(crate) fn check_for(rare: u8, id: &str, regex: &str) -> Option<RareCheck> {
    (rare == b'@' && applies(id, regex)).then_some(email_may_match as RareCheck)
}

fn applies(id: &str, regex: &str) -> bool {
    id == "email" && crate::shape::builtin_regex(id) == Some(regex)
}

/// Whether an `email` match can hold the `@` at `v[at]`, its domain ending by `v[..end]`.
///
/// Every match is `LOCAL@DOMAIN`. Each alternative of the local part ends in a byte of
/// `[A-Za-z0-9._%+-]`; the domain starts with a letter or digit, continues in
/// `[A-Za-z0-9.-]` and ends in `\.[A-Za-z]{2,24}`. So the byte before the `@` is a
/// local-part byte, the byte after is alphanumeric, and the run of domain bytes after the
/// `@` holds a dot followed by two letters.
pub(crate) fn email_may_match(v: &[u8], at: usize, end: usize) -> bool {
    let end = end.min(v.len());
    let local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    if at == 0 || !local(v[at - 1]) || !v.get(at + 1).is_some_and(u8::is_ascii_alphanumeric) {
        return false;
    }
    let run = &v[at + 1..end];
    let len = run
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        .unwrap_or(run.len());
    run[..len]
        .windows(3)
        .any(|w| w[0] == b'.' && w[1].is_ascii_alphabetic() && w[2].is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_holds_for_addresses_and_fails_for_refs_and_digests() {
        let yes = [
            "Author: Jane Roe <jane.roe@example.com>",
            "ops+alerts@mail.example.co.uk",
            "x@a-b.io",
            "JOHN.DOE@EXAMPLE.COM",
            "9@2x.png",
            "100%@ex.io a_@ex.io",
            "a.@ex.io",
            "+@ex.io",
            "-@ex.io",
        ];
        let no = [
            "uses: actions/checkout@v4.1.1",
            "FROM node@sha256:daaa2055ecd86fd422d31616c771011ffbdf62dbae50748e4c0db406c202f554",
            "npm install lodash@4.17.21 @types/node@20.1.0",
            "user@localhost",
            "<@example.com>",
            "a@.example.com",
            "a@b.c",
            "a@b.c1",
        ];
        for s in yes {
            let at = s.find('@').unwrap();
            assert!(email_may_match(s.as_bytes(), at, s.len()), "{s}");
        }
        for s in no {
            for (at, _) in s.match_indices('@') {
                assert!(!email_may_match(s.as_bytes(), at, s.len()), "{s} at {at}");
            }
        }
        // The domain must end by `end`.
        let s = b"x@example.com";
        assert!(!email_may_match(s, 1, 11) && email_may_match(s, 1, 12));
        let builtin = crate::shape::builtin_regex("email").unwrap();
        assert!(check_for(b'@', "email", builtin).is_some());
        assert!(check_for(b'.', "email", builtin).is_none());
        assert!(check_for(b'@', "email", "[a-z]+@[a-z]+").is_none());
        assert!(check_for(b'@', "mail", builtin).is_none());
    }

    /// Fragments of addresses and of the `@` texts a CI log holds, glued at random.
    const PIECES: &[&str] = &[
        "jane.roe@example.com",
        "ops+alerts@mail.example.co.uk",
        "a@b.io",
        "git@github.com:acme/app.git",
        "checkout@v4",
        "node@sha256:daaa2055",
        "lodash@4.17.21",
        "@types/node",
        "logo@2x.png",
        "plugin@org.eclipse.ui",
        "user@localhost",
        "JOHN.DOE@EXAMPLE.COM",
        "x%y@Mail.Example.Io",
        "a%@ex.io",
        "a.@ex.io",
        "u@123mail.com",
        "@",
        ".",
        "-",
        "_",
        "%",
        "+",
        "/",
        " ",
        "\n",
        "<",
        ">",
        "a",
        "Z",
        "0",
        "io",
        "com",
        "COM",
        "Io",
        "9",
        "x.",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        /// With the check the engine redacts exactly what it does searching around every `@`.
        #[test]
        fn checked_and_unchecked_searches_agree(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..60)
        ) {
            let hay = pieces.concat();
            static PAIR: std::sync::OnceLock<(crate::Redactor, crate::Redactor)> =
                std::sync::OnceLock::new();
            let (with, without) = PAIR.get_or_init(|| {
                let mut b = crate::RedactorBuilder::new();
                b.at_sign = false;
                let pair = (crate::RedactorBuilder::new().build().unwrap(), b.build().unwrap());
                let checked = |r: &crate::Redactor| r.inner.byte_rules.iter().any(|x| x.2.is_some());
                assert!(checked(&pair.0) && !checked(&pair.1));
                pair
            });
            let (a, ca) = with.redact_all(hay.as_bytes());
            let (b, cb) = without.redact_all(hay.as_bytes());
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "input {:?}",
                hay
            );
            proptest::prop_assert_eq!(ca, cb);
        }
    }
}
