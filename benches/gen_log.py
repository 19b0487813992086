#!/usr/bin/env python3
"""Generate a large, realistic, seeded CI log for logveil's throughput benchmarks.

    python3 benches/gen_log.py OUT.log [--mb 512] [--seed 42]

The log mixes what CI jobs print (cargo/gcc/javac diagnostics, pytest/jest/JUnit
results, npm/pip/docker output, git SHAs, sha256 digests, UUIDs, versions, URLs,
JSON log lines, ANSI colour codes, GitHub Actions timestamps, the odd very long
line) with about one sensitive value per 2 KiB: AWS key ids, GitHub/Slack/Stripe
tokens, JWTs, password assignments, URL credentials, bearer headers, SSNs,
e-mail addresses, US phone numbers, Luhn-valid card numbers, MRNs, dates of birth
and valid NPIs.

Speed: clean lines are sampled from a pool of a few thousand rendered lines (a
slice of the pool is re-rendered every block so hex digests, UUIDs and numbers
keep changing); sensitive lines are rendered fresh every time, so every planted
secret is a new value. Output is written in ~1 MiB blocks.

Determinism: the output depends only on --seed and --mb. A smaller --mb gives a
prefix of a larger file with the same seed, except for the final padding line.
The file is exactly --mb MiB long and ends with a newline.

Standard library only. `import gen_log` gives `LineFactory` to other benches
(latency.py uses it to make its lines).
"""
import argparse
import base64
import itertools
import json
import os
import random
import string
import sys
import time

MIB = 1 << 20
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
LOWER = string.ascii_lowercase

ESC = "\x1b"
GREEN, RED, YELLOW, CYAN, BOLD, RESET, EL = (
    ESC + "[32m", ESC + "[31m", ESC + "[33m", ESC + "[36;1m", ESC + "[1m", ESC + "[0m", ESC + "[0K")

# ---------------------------------------------------------------------------
# vocabularies

WORDS = ("config parser buffer stream router handler session cache client server worker queue "
         "schema index token record batch event widget layout render format encode decode "
         "metrics tracing storage upload download account billing invoice payment patient "
         "report export import sync async retry backoff timeout channel socket frame").split()
CRATES = ("serde serde_json tokio hyper rand regex clap anyhow thiserror libc memchr bytes "
          "futures log tracing syn quote proc-macro2 itertools once_cell rayon crossbeam "
          "aho-corasick ring rustls base64 toml chrono uuid url http mio").split()
PYPKGS = ("numpy pandas requests urllib3 certifi idna charset-normalizer pytest pluggy "
          "packaging setuptools wheel six attrs click jinja2 markupsafe pyyaml boto3 botocore "
          "s3transfer jmespath python-dateutil pytz tzdata cython tables numexpr blosc2").split()
NPMPKGS = ("lodash react react-dom webpack babel-loader @babel/core typescript eslint jest "
           "chalk commander debug ms semver glob minimatch rimraf uuid axios express "
           "@types/node inflight ts-node vite rollup esbuild postcss").split()
JAVA_PKGS = "com.acme.billing com.acme.api org.example.core io.example.util net.corp.auth".split()
LANG_EXT = (("src", ".rs"), ("lib", ".c"), ("src", ".cpp"), ("pkg", ".go"), ("app", ".ts"))
HOSTS = ("github.com", "registry.npmjs.org", "files.pythonhosted.org", "repo1.maven.org",
         "crates.io", "static.crates.io", "ghcr.io", "docker.io", "objects.githubusercontent.com",
         "api.example.com", "internal.corp.example", "artifacts.example.net")
FIRST = "james mary john patricia robert jennifer michael linda david elizabeth maria wei ana".split()
LAST = "smith johnson williams brown jones garcia miller davis rodriguez martinez lee chen".split()
DOMAINS = ("example.com", "corp.example", "mail.example.org", "hospital.example", "users.noreply.github.com")


_TABLES = {}


class LineFactory:
    """Renders single log lines (without the trailing newline) from a seeded RNG."""

    def __init__(self, rng):
        self.r = rng
        self.clean_makers = [
            (self.cargo, 14), (self.gcc, 8), (self.javac, 6), (self.pytest, 14), (self.jest, 8),
            (self.junit, 6), (self.json_log, 8), (self.pip, 7), (self.npm, 7), (self.git, 5),
            (self.docker, 6), (self.actions, 6), (self.misc, 8), (self.negatives, 5),
        ]
        self.secret_makers = [
            (self.aws_key, 6), (self.github_token, 6), (self.slack_token, 4), (self.stripe_key, 4),
            (self.jwt, 5), (self.password_assign, 7), (self.url_creds, 6), (self.bearer, 6),
            (self.ssn, 6), (self.email, 8), (self.phone, 6), (self.card, 6), (self.mrn, 6),
            (self.dob, 6), (self.npi, 5),
        ]
        self._clean_fns, self._clean_w = zip(*self.clean_makers)
        self._secret_fns, self._secret_w = zip(*self.secret_makers)

    # -- small random helpers -------------------------------------------------
    def s(self, alphabet, n):
        """n random characters of `alphabet` (random bytes mapped through a 256-entry table)."""
        table = _TABLES.get(alphabet)
        if table is None:
            table = _TABLES[alphabet] = bytes(ord(alphabet[i % len(alphabet)]) for i in range(256))
        return self.r.randbytes(n).translate(table).decode("ascii")

    def word(self):
        return self.r.choice(WORDS)

    def ver(self):
        r = self.r.random()
        v = f"{self.r.randint(0, 4)}.{self.r.randint(0, 40)}.{self.r.randint(0, 30)}"
        if r < 0.1:
            v += f"-rc.{self.r.randint(1, 5)}"
        elif r < 0.15:
            v += f"-beta.{self.r.randint(1, 9)}+build.{self.r.randint(100, 9999)}"
        return v

    def sha(self):
        return self.s(HEX, 40)

    def sha256(self):
        return self.s(HEX, 64)

    def uuid(self):
        h = self.s(HEX, 32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{self.r.choice('89ab')}{h[17:20]}-{h[20:]}"

    def path(self, ext=None):
        d, e = self.r.choice(LANG_EXT)
        depth = self.r.randint(0, 3)
        parts = [d] + [self.word() for _ in range(depth)]
        return "/".join(parts) + "/" + self.word() + "_" + self.word() + (ext or e)

    def dur(self):
        return f"{self.r.random() * 10:.2f}s"

    def iso(self):
        return (f"2024-{self.r.randint(1, 12):02d}-{self.r.randint(1, 28):02d}T"
                f"{self.r.randint(0, 23):02d}:{self.r.randint(0, 59):02d}:{self.r.randint(0, 59):02d}."
                f"{self.r.randint(0, 999):03d}Z")

    def url(self):
        host = self.r.choice(HOSTS)
        p = "/".join(self.word() for _ in range(self.r.randint(1, 4)))
        q = f"?ref={self.sha()[:12]}&page={self.r.randint(1, 50)}" if self.r.random() < 0.3 else ""
        return f"https://{host}/{p}{q}"

    def name(self):
        return self.r.choice(FIRST), self.r.choice(LAST)

    def luhn_digit(self, digits):
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = ord(ch) - 48
            if i % 2 == 0:  # these are doubled once the check digit is appended
                d *= 2
                if d > 9:
                    d -= 9
            total += d
        return str((10 - total % 10) % 10)

    # -- clean line makers ------------------------------------------------------
    def cargo(self):
        r = self.r.random()
        if r < 0.35:
            return f"   {GREEN}{BOLD}Compiling{RESET} {self.r.choice(CRATES)} v{self.ver()}"
        if r < 0.5:
            return f"{YELLOW}{BOLD}warning{RESET}{BOLD}: unused variable: `{self.word()}_{self.word()}`{RESET}"
        if r < 0.65:
            return f"  {BOLD}-->{RESET} {self.path('.rs')}:{self.r.randint(1, 2000)}:{self.r.randint(1, 120)}"
        if r < 0.72:
            return f"{RED}{BOLD}error[E0{self.r.randint(100, 799)}]{RESET}{BOLD}: mismatched types{RESET}"
        if r < 0.8:
            return f"   {BOLD}|{RESET}     let {self.word()} = {self.word()}.{self.word()}({self.r.randint(0, 99)});"
        if r < 0.88:
            return f"test {self.word()}::{self.word()}::tests::{self.word()}_{self.word()} ... {self.r.choice(['ok', 'ok', 'ok', 'FAILED', 'ignored'])}"
        if r < 0.95:
            return f"    {GREEN}{BOLD}Finished{RESET} `release` profile [optimized + debuginfo] target(s) in {self.r.randint(1, 9)}m {self.r.randint(0, 59):02d}s"
        return f"   {GREEN}{BOLD}Downloaded{RESET} {self.r.choice(CRATES)} v{self.ver()}"

    def gcc(self):
        r = self.r.random()
        p = self.path(self.r.choice([".c", ".cc", ".cpp", ".h"]))
        if r < 0.4:
            flag = self.r.choice(["unused-variable", "sign-compare", "unused-parameter", "deprecated-declarations", "maybe-uninitialized"])
            return f"{BOLD}{p}:{self.r.randint(1, 4000)}:{self.r.randint(1, 80)}:{RESET} {YELLOW}warning:{RESET} '{self.word()}' may be used uninitialized [{YELLOW}-W{flag}{RESET}]"
        if r < 0.75:
            o = p.rsplit(".", 1)[0].replace("src/", "build/")
            return f"gcc -O2 -g -Wall -Wextra -fPIC -DNDEBUG -I/usr/include/python3.11 -Iinclude -c {p} -o {o}.o"
        if r < 0.9:
            return f"[{self.r.randint(1, 100):3d}%] Building CXX object CMakeFiles/{self.word()}.dir/{p}.o"
        return f"{p}:{self.r.randint(1, 4000)}:{self.r.randint(1, 80)}: note: in expansion of macro '{self.word().upper()}_CHECK'"

    def javac(self):
        r = self.r.random()
        pkg = self.r.choice(JAVA_PKGS)
        cls = self.word().capitalize() + self.word().capitalize()
        jp = "/home/runner/work/app/app/src/main/java/" + pkg.replace(".", "/") + f"/{cls}.java"
        if r < 0.35:
            return f"[WARNING] {jp}:[{self.r.randint(1, 900)},{self.r.randint(1, 80)}] unchecked conversion"
        if r < 0.55:
            return f"{jp}:{self.r.randint(1, 900)}: warning: [deprecation] {self.word()}() in {cls} has been deprecated"
        if r < 0.8:
            return f"[INFO] Downloaded from central: https://repo1.maven.org/maven2/org/{self.word()}/{self.word()}/{self.ver()}/{self.word()}-{self.ver()}.jar ({self.r.randint(1, 900)} kB at {self.r.randint(1, 9)}.{self.r.randint(0, 9)} MB/s)"
        return f"[INFO] --- maven-compiler-plugin:3.11.0:compile (default-compile) @ {self.word()}-{self.word()} ---"

    def pytest(self):
        r = self.r.random()
        if r < 0.7:
            status = self.r.choices(["PASSED", "FAILED", "SKIPPED", "XFAIL"], [90, 4, 5, 1])[0]
            col = GREEN if status == "PASSED" else RED if status == "FAILED" else YELLOW
            param = f"[{self.word()}-{self.r.randint(0, 64)}]" if self.r.random() < 0.3 else ""
            return (f"tests/test_{self.word()}.py::Test{self.word().capitalize()}::test_{self.word()}_{self.word()}{param} "
                    f"{col}{status}{RESET}{' ' * self.r.randint(1, 20)}[{self.r.randint(0, 100):3d}%]")
        if r < 0.8:
            return (f"{GREEN}==== {self.r.randint(10, 5000)} passed, {self.r.randint(0, 9)} skipped, "
                    f"{self.r.randint(0, 3)} warnings in {self.r.randint(1, 900)}.{self.r.randint(0, 99):02d}s ===={RESET}")
        if r < 0.9:
            return f"{self.dur()} call     tests/test_{self.word()}.py::test_{self.word()}"
        return f"E       AssertionError: assert {self.r.randint(0, 9999)} == {self.r.randint(0, 9999)}"

    def jest(self):
        r = self.r.random()
        if r < 0.5:
            ok = self.r.random() < 0.95
            mark = f"{GREEN}\u2713{RESET}" if ok else f"{RED}\u2715{RESET}"
            return f"      {mark} {self.word()}s the {self.word()} when {self.word()} is {self.word()} ({self.r.randint(1, 900)} ms)"
        if r < 0.8:
            tag = f"{ESC}[42m{ESC}[30m PASS {RESET}" if self.r.random() < 0.95 else f"{ESC}[41m{ESC}[30m FAIL {RESET}"
            return f"{tag} src/{self.word()}/{self.word().capitalize()}.test.tsx ({self.r.randint(1, 30)}.{self.r.randint(0, 999)} s)"
        return f"Tests:       {self.r.randint(0, 5)} failed, {self.r.randint(10, 3000)} passed, {self.r.randint(10, 3000)} total"

    def junit(self):
        t, f = self.r.randint(1, 300), self.r.randint(0, 2)
        cls = self.r.choice(JAVA_PKGS) + "." + self.word().capitalize() + "Test"
        if self.r.random() < 0.7:
            return f"[INFO] Tests run: {t}, Failures: {f}, Errors: 0, Skipped: {self.r.randint(0, 3)}, Time elapsed: {self.r.random() * 20:.3f} s - in {cls}"
        return f'    <testcase name="{self.word()}{self.word().capitalize()}" classname="{cls}" time="{self.r.random():.3f}"/>'

    def json_log(self):
        rec = {
            "level": self.r.choice(["info", "info", "info", "debug", "warn", "error"]),
            "ts": self.iso(),
            "msg": f"{self.word()} {self.word()} completed",
            "request_id": self.uuid(),
            "trace_id": self.s(HEX, 32),
            "duration_ms": self.r.randint(0, 5000),
            "status": self.r.choice([200, 200, 200, 201, 204, 304, 404, 500]),
            "path": f"/api/v{self.r.randint(1, 3)}/{self.word()}s/{self.r.randint(1, 99999)}",
        }
        if self.r.random() < 0.3:
            rec["commit"] = self.sha()
        if self.r.random() < 0.2:
            rec["image"] = f"ghcr.io/acme/{self.word()}@sha256:{self.sha256()}"
        return json.dumps(rec, separators=(",", ":"))

    def pip(self):
        r = self.r.random()
        pkg = self.r.choice(PYPKGS)
        v = self.ver()
        if r < 0.3:
            return f"Collecting {pkg}=={v}"
        if r < 0.55:
            return (f"  Downloading https://files.pythonhosted.org/packages/{self.s(HEX, 2)}/{self.s(HEX, 2)}/{self.s(HEX, 60)}/"
                    f"{pkg.replace('-', '_')}-{v}-py3-none-any.whl ({self.r.randint(10, 999)} kB)")
        if r < 0.7:
            return f"  Using cached {pkg.replace('-', '_')}-{v}-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl ({self.r.randint(1, 20)}.{self.r.randint(0, 9)} MB)"
        if r < 0.8:
            return f"Requirement already satisfied: {pkg}>={v} in /opt/hostedtoolcache/Python/3.11.9/x64/lib/python3.11/site-packages (from -r requirements.txt (line {self.r.randint(1, 40)}))"
        if r < 0.9:
            return "Successfully installed " + " ".join(f"{p}-{self.ver()}" for p in self.r.sample(PYPKGS, self.r.randint(2, 8)))
        return f"     {GREEN}\u2501\u2501\u2501\u2501\u2501\u2501\u2501\u2501\u2501\u2501{RESET} {self.r.randint(1, 20)}.{self.r.randint(0, 9)}/{self.r.randint(20, 40)}.0 MB {RED}{self.r.randint(1, 90)}.{self.r.randint(0, 9)} MB/s{RESET} eta {CYAN}0:00:0{self.r.randint(0, 9)}{RESET}"

    def npm(self):
        r = self.r.random()
        pkg = self.r.choice(NPMPKGS)
        if r < 0.4:
            return f"npm http fetch GET 200 https://registry.npmjs.org/{pkg} {self.r.randint(5, 900)}ms (cache {self.r.choice(['miss', 'hit', 'revalidated'])})"
        if r < 0.6:
            return f"npm {ESC}[30;43mWARN{RESET} deprecated {pkg}@{self.ver()}: This module is not supported, and leaks memory. Do not use it."
        if r < 0.75:
            return f"added {self.r.randint(1, 2000)} packages, and audited {self.r.randint(1, 2000)} packages in {self.r.randint(1, 90)}s"
        if r < 0.85:
            return f"npm timing reify:loadTrees Completed in {self.r.randint(10, 9000)}ms"
        return f'    "{pkg}": "^{self.ver()}",'

    def git(self):
        r = self.r.random()
        sha = self.sha()
        if r < 0.3:
            return f"HEAD is now at {sha[:7]} Merge pull request #{self.r.randint(1, 9999)} from acme/{self.word()}-{self.word()}"
        if r < 0.5:
            return f" * branch            {sha} -> FETCH_HEAD"
        if r < 0.7:
            return f"[command]/usr/bin/git -c protocol.version=2 fetch --no-tags --prune --no-recurse-submodules --depth=1 origin +{sha}:refs/remotes/origin/main"
        if r < 0.85:
            return f"Merge: {sha[:7]} {self.sha()[:7]}"  # (author lines carry e-mails: see email())
        return f"remote: Counting objects: {self.r.randint(0, 100)}% ({self.r.randint(1, 9000)}/{self.r.randint(1, 9000)}), done."

    def docker(self):
        r = self.r.random()
        if r < 0.35:
            return f"#{self.r.randint(1, 30)} sha256:{self.sha256()} {self.r.randint(1, 90)}.{self.r.randint(0, 9)}MB / {self.r.randint(90, 300)}.{self.r.randint(0, 9)}MB {self.r.randint(0, 30)}.{self.r.randint(0, 9)}s"
        if r < 0.55:
            return f"Digest: sha256:{self.sha256()}"
        if r < 0.7:
            return f"#{self.r.randint(1, 30)} [{self.r.randint(1, 9)}/{self.r.randint(9, 15)}] RUN apt-get update && apt-get install -y --no-install-recommends {self.word()}-dev"
        if r < 0.85:
            # a progress bar redrawn in place
            bars = "\r".join(f"{self.s(HEX, 12)}: Downloading [{'=' * k}>{' ' * (20 - k)}] {k * 5}%" for k in range(0, 20, 5))
            return bars
        return f"Status: Downloaded newer image for ghcr.io/acme/{self.word()}:{self.ver()}"

    def actions(self):
        r = self.r.random()
        if r < 0.25:
            return f"##[group]Run actions/{self.r.choice(['checkout', 'setup-python', 'cache', 'upload-artifact'])}@v{self.r.randint(2, 4)}"
        if r < 0.4:
            return "##[endgroup]"
        if r < 0.55:
            return f"{CYAN}{self.word()} --{self.word()} {self.path()}{RESET}"
        if r < 0.7:
            return f"{EL}section_start:{self.r.randint(1700000000, 1720000000)}:{self.word()}_{self.word()}\r{EL}{EL}{CYAN}Running {self.word()}{RESET}"
        if r < 0.8:
            return f"  {self.word().upper()}_{self.word().upper()}: {self.word()}"
        if r < 0.9:
            return f"Cache restored from key: {self.r.choice(['Linux', 'macOS', 'Windows'])}-cargo-{self.sha256()}"
        return f"##[warning]Node.js 16 actions are deprecated. Please update the following actions to use Node.js 20: actions/{self.word()}@v{self.r.randint(1, 3)}"

    def misc(self):
        r = self.r.random()
        if r < 0.2:
            return f"Downloading {self.url()}"
        if r < 0.35:
            return f"Run ID {self.r.randint(1000000000, 9999999999)} attempt {self.r.randint(1, 3)} job {self.uuid()}"
        if r < 0.5:
            return f"  {self.r.randint(1, 100):3d}  {self.r.randint(1, 99999):6d}  {self.word()}::{self.word()}  {self.r.random():.6f}"
        if r < 0.6:
            return ""
        if r < 0.7:
            return f"{self.iso()} DEBUG {self.word()}.{self.word()}: listening on 0.0.0.0:{self.r.randint(1024, 65535)} pid={self.r.randint(100, 99999)}"
        if r < 0.8:
            return f"{self.r.choice(['ok', 'PASS', 'ok'])}  \tgithub.com/acme/{self.word()}/{self.word()}\t{self.r.random() * 9:.3f}s\tcoverage: {self.r.random() * 100:.1f}% of statements"
        if r < 0.9:
            return "-" * self.r.randint(20, 100)
        return f"Uploaded artifact {self.word()}-{self.ver()}.tar.gz ({self.r.randint(1, 999)} MB) sha256={self.sha256()}"

    def negatives(self):
        """Look-alikes that must survive: invalid SSN shapes, Luhn-invalid numbers, build ids."""
        r = self.r.random()
        if r < 0.25:
            # invalid SSN areas; a 9xx area with a group below 50 is not a valid ITIN either
            area = self.r.choice(["000", "666", f"9{self.r.randint(0, 99):02d}"])
            group = self.r.randint(10, 49) if area[0] == "9" else self.r.randint(10, 99)
            return f"build-id {area}-{group}-{self.r.randint(1000, 9999)} finished in {self.dur()}"
        if r < 0.5:
            digits = "4" + self.s(string.digits, 14)
            bad = str((int(self.luhn_digit(digits)) + self.r.randint(1, 9)) % 10)
            return f"order number {digits}{bad} processed"
        if r < 0.75:
            return f"Version {self.ver()} ({self.sha()[:10]}) built {self.iso()} for x86_64-unknown-linux-gnu"
        return f"port {self.r.randint(1024, 65535)} pid {self.r.randint(100, 99999)} uid {self.r.randint(1000, 9999)} run #{self.r.randint(1, 99999)}"

    def long_line(self):
        """A minified JSON blob of 4-24 KiB (webpack stats, API dumps)."""
        items = []
        target = self.r.randint(4096, 24576)
        n = 0
        while n < target:
            it = f'{{"id":"{self.uuid()}","name":"{self.word()}-{self.word()}","hash":"{self.s(HEX, 20)}","size":{self.r.randint(0, 999999)}}}'
            items.append(it)
            n += len(it) + 1
        return '{"assets":[' + ",".join(items) + "]}"

    # -- sensitive line makers ----------------------------------------------
    def aws_key(self):
        k = self.r.choice(["AKIA", "AKIA", "AKIA", "ASIA"]) + self.s(B32, 16)
        return self._one([
            lambda: f"export AWS_ACCESS_KEY_ID={k}",
            lambda: f'  "AccessKeyId": "{k}",',
            lambda: f"aws_access_key_id = {k}",
            lambda: f"{self.iso()} INFO boto3: using credentials {k} from environment",
        ])

    def github_token(self):
        t = "gh" + self.r.choice("pousr") + "_" + self.s(ALNUM, 36)
        return self._one([
            lambda: f"[command]/usr/bin/git clone https://x-access-token:{t}@github.com/acme/{self.word()}.git",
            lambda: f"GITHUB_TOKEN={t}",
            lambda: f"  token: {t}",
            lambda: f"{CYAN}gh auth login --with-token <<< {t}{RESET}",
        ])

    def slack_token(self):
        t = f"xoxb-{self.s(string.digits, 12)}-{self.s(string.digits, 13)}-{self.s(ALNUM, 24)}"
        return self._one([
            lambda: f"SLACK_BOT_TOKEN={t}",
            lambda: f'curl -s -X POST -H "Content-type: application/json" -d \'{{"channel":"#ci","token":"{t}"}}\' https://slack.com/api/chat.postMessage',
        ])

    def stripe_key(self):
        t = "sk_live_" + self.s(ALNUM, self.r.choice([24, 32, 99]))
        return self._one([
            lambda: f"STRIPE_SECRET_KEY={t}",
            lambda: f"stripe.api_key = '{t}'",
            lambda: f'{{"level":"debug","msg":"stripe client init","key":"{t}"}}',
        ])

    def jwt(self):
        def b64(obj):
            return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()
        h = b64({"alg": self.r.choice(["HS256", "RS256"]), "typ": "JWT"})
        p = b64({"sub": self.uuid(), "iat": self.r.randint(1700000000, 1720000000), "role": self.word()})
        t = f"{h}.{p}.{self.s(B64URL, 43)}"
        return self._one([
            lambda: f"> Authorization: Bearer {t}",
            lambda: f"id_token={t}",
            lambda: f'{{"level":"info","msg":"login ok","jwt":"{t}"}}',
            lambda: f"Set-Cookie: session={t}; Path=/; HttpOnly",
        ])

    def password_assign(self):
        pw = self.s(ALNUM + "!#%^*", self.r.randint(10, 24))
        return self._one([
            lambda: f"password={pw}",
            lambda: f"DB_PASSWORD={pw}",
            lambda: f"mysql -h db.internal -u ci --password={pw} -e 'SELECT 1'",
            lambda: f"{YELLOW}[config]{RESET} admin password={pw} loaded",
            lambda: f'  "password": "{pw}",',
        ])

    def url_creds(self):
        user = self.r.choice(["deploy", "ci", "admin", self.word()])
        pw = self.s(ALNUM, self.r.randint(10, 20))
        scheme, host = self.r.choice([("https", "nexus.internal.corp.example"), ("postgres", "db.example.com:5432"),
                                      ("https", "pypi.corp.example/simple"), ("amqp", "mq.example.net")])
        return self._one([
            lambda: f"Connecting to {scheme}://{user}:{pw}@{host}/{self.word()}",
            lambda: f"DATABASE_URL={scheme}://{user}:{pw}@{host}/app_test",
            lambda: f"  Looking in indexes: {scheme}://{user}:{pw}@{host}",
        ])

    def bearer(self):
        t = self.s(ALNUM + "-._~", self.r.randint(32, 64))
        return self._one([
            lambda: f"> Authorization: Bearer {t}",
            lambda: f'curl -fsSL -H "Authorization: Bearer {t}" {self.url()}',
            lambda: f"{self.iso()} DEBUG http: request headers {{Authorization: Bearer {t}, Accept: */*}}",
        ])

    def _ssn(self):
        while True:
            area = self.r.randint(1, 899)
            if area != 666:
                break
        return f"{area:03d}-{self.r.randint(1, 99):02d}-{self.r.randint(1, 9999):04d}"

    def ssn(self):
        v = self._ssn()
        return self._one([
            lambda: f"patient ssn={v} loaded from fixture",
            lambda: f'{{"name":"{" ".join(self.name()).title()}","ssn":"{v}","plan":"{self.word()}"}}',
            lambda: f"AssertionError: expected SSN {v} to be masked",
            lambda: f"  social security number: {v}",
        ])

    def email(self):
        f, l = self.name()
        e = f"{f}.{l}{self.r.choice(['', str(self.r.randint(1, 99))])}@{self.r.choice(DOMAINS[:4])}"
        return self._one([
            lambda: f"Notification sent to {e}",
            lambda: f"Author: {f.title()} {l.title()} <{e}>",
            lambda: f'{{"level":"info","msg":"user created","email":"{e}"}}',
        ])

    def phone(self):
        p = f"({self.r.randint(2, 9)}{self.s(string.digits, 2)}) {self.r.randint(2, 9)}{self.s(string.digits, 2)}-{self.s(string.digits, 4)}"
        return self._one([
            lambda: f"contact phone: {p}",
            lambda: f"SMS to {p} queued (id={self.uuid()})",
            lambda: f'  "phone": "{p}",',
        ])

    def card(self):
        prefix, n = self.r.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)])
        body = prefix + self.s(string.digits, n - 1 - len(prefix))
        num = body + self.luhn_digit(body)
        if self.r.random() < 0.3:
            num = " ".join(num[i:i + 4] for i in range(0, len(num), 4))
        return self._one([
            lambda: f"charge card={num} amount=42.00 USD",
            lambda: f'{{"test":"payment","card_number":"{num}","cvv":"***"}}',
            lambda: f"FAILED tests/test_billing.py::test_charge - card {num} declined",
        ])

    def mrn(self):
        v = self.s(string.digits, 8)
        return self.r.choice([f"MRN: {v}", f"  patient record MRN: {v} synced", f'{{"mrn":"{v}","event":"admit"}}'])

    def dob(self):
        v = f"{self.r.randint(1930, 2010)}-{self.r.randint(1, 12):02d}-{self.r.randint(1, 28):02d}"
        return self.r.choice([f"DOB: {v}", f"  patient DOB: {v} MRN pending", f"date of birth: {v}"])

    def npi(self):
        body = self.r.choice("12") + self.s(string.digits, 8)
        v = body + self.luhn_digit("80840" + body)
        return self.r.choice([f"NPI: {v}", f"  referring provider NPI: {v}", f'{{"provider_npi":"{v}"}}'])

    def _one(self, makers):
        return self.r.choice(makers)()

    # -- dispatch --------------------------------------------------------------
    def clean(self):
        return self.r.choices(self._clean_fns, self._clean_w)[0]()

    def secret(self):
        return self.r.choices(self._secret_fns, self._secret_w)[0]()


def luhn_ok(num):
    """Check helper for tests: True if the digits of `num` pass Luhn."""
    digits = [int(c) for c in num if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class LogGenerator:
    """Yields ~1 MiB bytes blocks of log lines, each ending in a newline."""

    POOL = 4000          # clean lines kept rendered
    REFRESH = 48         # pool slots re-rendered per block
    BLOCK_LINES = 8192
    SECRET_EVERY = 2048  # bytes per sensitive line

    def __init__(self, seed=42):
        self.rng = random.Random(seed)
        self.f = LineFactory(self.rng)
        self.pool = [self._enc(self.f.clean()) for _ in range(self.POOL)]
        for i in range(4):  # a few very long lines in the pool
            self.pool[self.rng.randrange(self.POOL)] = self._enc(self.f.long_line())
        fracs = sorted(self.rng.randrange(10_000_000) for _ in range(self.BLOCK_LINES))
        self.fracs = [f".{x:07d}Z ".encode() for x in fracs]
        self.clock = 1714557600  # 2024-05-01T10:00:00Z
        self.timestamped = True

    @staticmethod
    def _enc(line):
        return (line + "\n").encode("utf-8")

    def blocks(self):
        rng, f, enc = self.rng, self.f, self._enc
        while True:
            # keep the pool changing: fresh digests, ids, numbers
            for _ in range(self.REFRESH):
                self.pool[rng.randrange(self.POOL)] = enc(f.clean())
            lines = rng.choices(self.pool, k=self.BLOCK_LINES)
            nbytes = sum(map(len, lines)) + (self.BLOCK_LINES * 29 if self.timestamped else 0)
            n_secret = max(1, round(nbytes / self.SECRET_EVERY * (0.8 + 0.4 * rng.random())))
            for pos in rng.sample(range(self.BLOCK_LINES), n_secret):
                lines[pos] = enc(f.secret())  # every sensitive value is fresh
            if self.timestamped:
                head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.clock)).encode()
                prefixes = [head + x for x in self.fracs]
                data = b"".join(itertools.chain.from_iterable(zip(prefixes, lines)))
                self.clock += 1
            else:
                data = b"".join(lines)
                self.clock += 3
            # runners differ: most blocks look like GitHub Actions, some like GitLab/Jenkins
            if rng.random() < 0.1:
                self.timestamped = not self.timestamped
            yield data


def generate(out, size, seed=42):
    """Write exactly `size` bytes of log (ending in a newline) to the binary stream `out`."""
    written = 0
    for data in LogGenerator(seed).blocks():
        left = size - written
        if len(data) < left:
            out.write(data)
            written += len(data)
            continue
        cut = data.rfind(b"\n", 0, left) + 1  # keep whole lines only
        out.write(data[:cut])
        gap = left - cut
        if gap:
            out.write(b"-" * (gap - 1) + b"\n")
        return


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output path ('-' for stdout)")
    ap.add_argument("--mb", type=float, default=512, help="size in MiB (default 512)")
    ap.add_argument("--seed", type=int, default=42, help="RNG seed (default 42)")
    a = ap.parse_args()
    size = int(a.mb * MIB)
    if size < 1:
        ap.error("--mb must be positive")
    t0 = time.perf_counter()
    if a.out == "-":
        generate(sys.stdout.buffer, size, a.seed)
    else:
        tmp = a.out + ".tmp"
        with open(tmp, "wb", buffering=4 * MIB) as fh:
            generate(fh, size, a.seed)
        os.replace(tmp, a.out)
    dt = time.perf_counter() - t0
    print(f"gen_log: {size / MIB:.0f} MiB, seed {a.seed}, {dt:.1f} s ({size / MIB / dt:.0f} MB/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
