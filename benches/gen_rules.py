#!/usr/bin/env python3
"""Generate the extra inputs of logveil's benchmarks: many user rules and many known values.

    python3 benches/gen_rules.py --rules-out R.toml [--peer-out P.txt] [--count 200]
    python3 benches/gen_rules.py --known-out K.txt [--known-count 10000]

--rules-out  a user rule file in logveil's TOML format (patterns/rules/README.md) with
             --count vendor-token rules (`bench-<vendor>-token`, category "secret"): a
             distinctive vendor prefix + a body of a declared charset and length, a keyword
             (the prefix), and 5 match / 5 no_match examples made from the same recipe and
             checked here with Python's `re` before they are written.
--peer-out   benches/peer_rules.txt followed by the same --count regexes (POSIX ERE that
             sed -E, rg and Hyperscan accept), for peers measured with the same extra load.
--known-out  --known-count random 20-40 character values, one per line (a `--mask-file`).

Everything is derived from --seed (default 42). Standard library only.
"""
import argparse
import os
import random
import re
import string
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CHARSETS = {
    # name: (regex class, alphabet, a character outside the set, all chars are word chars)
    "alnum": ("[A-Za-z0-9]", string.ascii_letters + string.digits, "#", True),
    "hex": ("[0-9a-f]", "0123456789abcdef", "g", True),
    "upper": ("[A-Z0-9]", string.ascii_uppercase + string.digits, "a", True),
    "lower": ("[a-z0-9]", string.ascii_lowercase + string.digits, "Q", True),
    "b64url": ("[A-Za-z0-9_-]", string.ascii_letters + string.digits + "_-", "+", False),
}
PREFIX_STYLES = ["{v}_", "{v}_pat_", "{v}_sk_", "{v}_live_", "{v}-", "{v}k_", "{v}.", "{V}-", "{v}_api_"]
SYLL = ("ba be bo bu ka ke ko ku da de do za zo zu ra ri ro ru ta te to tu na ne no nu "
        "vi vo lu la le mi mo pe po qu xa xe yo fi fu gri plo stra vex zor kin tal").split()
# prefixes of built-in rules that a vendor prefix must not start with
RESERVED = ("sk", "rk", "gh", "xox", "npm", "akia", "asia", "glpat", "gldt", "glrt", "hvs", "hvb",
            "dckr", "pypi", "aiza", "sg", "eyj", "github")


def toml_str(s):
    """A TOML basic string (double quotes, escapes for \\, \" and control characters)."""
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def vendor_names(rng, n):
    names, seen = [], set()
    while len(names) < n:
        v = "".join(rng.choice(SYLL) for _ in range(rng.randint(2, 3)))
        if v in seen or v.startswith(RESERVED) or len(v) < 4:
            continue
        seen.add(v)
        names.append(v)
    return names


def make_rule(rng, vendor):
    style = rng.choice(PREFIX_STYLES)
    prefix = style.format(v=vendor, V=vendor.upper())
    cs_name = rng.choice(list(CHARSETS))
    cls, alphabet, outsider, wordy = CHARSETS[cs_name]
    n = rng.choice([20, 24, 30, 32, 36, 40, 43, 48, 56, 64])
    esc = re.escape(prefix)  # only '.' and '-' need it; both are valid ERE escapes
    esc = esc.replace("\\-", "-").replace("\\_", "_")
    regex = rf"\b{esc}{cls}{{{n}}}" + (r"\b" if wordy else "")

    def body(k=n):
        return "".join(rng.choice(alphabet) for _ in range(k))

    env = vendor.upper()
    matches = [
        prefix + body(),
        f"export {env}_TOKEN={prefix}{body()}",
        f'{{"{vendor}_key":"{prefix}{body()}","region":"us-east-1"}}',
        f"curl -H 'X-{vendor.capitalize()}-Token: {prefix}{body()}' https://api.{vendor}.example/v1/ping",
        f"2024-05-01T10:00:00.1234567Z {vendor}: authenticated with {prefix}{body()} (scope=ci)",
    ]
    b = body()
    # no_match lines avoid what built-in rules catch (`token=`, auth headers...), in case
    # logveil checks examples against the whole rule set rather than the rule alone.
    no_match = [
        f"{vendor} sample id {prefix}{b[: n - 4]} (docs)",        # body too short
        f"{prefix.upper() if prefix != prefix.upper() else prefix.lower()}{body()}",  # prefix case
        f"{prefix}{b[: n // 2]}{outsider}{b[n // 2 + 1:]}",       # char outside the charset
        f"x{prefix}{body()}",                                     # glued to a word: no \b
        (f"{prefix}{body(n + 3)}" if wordy                         # too long for the trailing \b
         else f"the {prefix} prefix marks {vendor} tokens"),      # prefix without a body
    ]
    py = re.compile(regex, re.ASCII)
    for m in matches:
        assert py.search(m), (regex, m)
    for m in no_match:
        assert not py.search(m), (regex, m)
    rule = {
        "id": f"bench-{vendor}-token",
        "description": f"{vendor.capitalize()} API token ({cs_name}, {n} chars after {prefix!r})",
        "regex": regex,
        "keywords": [prefix.lower()],
        "match": matches,
        "no_match": no_match,
    }
    return rule


def write_rules(path, rules, seed):
    with open(path, "w") as f:
        f.write(f"# {len(rules)} vendor-token rules for logveil's benchmarks (benches/gen_rules.py, seed {seed}).\n")
        f.write("# Generated: do not edit. Each regex is also valid POSIX ERE (see --peer-out).\n\n")
        for r in rules:
            assert "'''" not in r["regex"]
            f.write("[[rule]]\n")
            f.write(f"id = {toml_str(r['id'])}\n")
            f.write('category = "secret"\n')
            f.write(f"description = {toml_str(r['description'])}\n")
            f.write(f"regex = '''{r['regex']}'''\n")
            f.write("keywords = [" + ", ".join(toml_str(k) for k in r["keywords"]) + "]\n")
            f.write("\n[rule.examples]\n")
            f.write("match = [\n" + "".join(f"  {toml_str(m)},\n" for m in r["match"]) + "]\n")
            f.write("no_match = [\n" + "".join(f"  {toml_str(m)},\n" for m in r["no_match"]) + "]\n\n")


def write_known(path, rng, count):
    alphabet = string.ascii_letters + string.digits + "-_.~!@#%^*+="
    seen = set()
    with open(path, "w") as f:
        while len(seen) < count:
            v = "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 40)))
            if v not in seen:
                seen.add(v)
                f.write(v + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules-out", help="write the TOML rule file here")
    ap.add_argument("--peer-out", help="write peer_rules.txt + the rule regexes here")
    ap.add_argument("--peer-base", default=os.path.join(HERE, "peer_rules.txt"),
                    help="peer regex file to start from (default benches/peer_rules.txt)")
    ap.add_argument("--count", type=int, default=200, help="number of rules (default 200)")
    ap.add_argument("--known-out", help="write the known-values file here")
    ap.add_argument("--known-count", type=int, default=10000, help="number of known values (default 10000)")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if not (a.rules_out or a.peer_out or a.known_out):
        ap.error("nothing to do: give --rules-out, --peer-out and/or --known-out")
    if a.rules_out or a.peer_out:
        rng = random.Random(a.seed)
        rules = [make_rule(rng, v) for v in vendor_names(rng, a.count)]
        if a.rules_out:
            write_rules(a.rules_out, rules, a.seed)
        if a.peer_out:
            with open(a.peer_base) as f:
                base = [l for l in f.read().splitlines() if l.strip()]
            with open(a.peer_out, "w") as f:
                f.write("\n".join(base + [r["regex"] for r in rules]) + "\n")
    if a.known_out:
        write_known(a.known_out, random.Random(a.seed + 1), a.known_count)
    print("gen_rules: wrote " + ", ".join(p for p in (a.rules_out, a.peer_out, a.known_out) if p), file=sys.stderr)


if __name__ == "__main__":
    main()
