#!/usr/bin/env python3
"""Trickle latency of `logveil filter`: how long a line waits before it comes out.

    python3 benches/latency.py [--lines 2000] [--interval-ms 5] [--secret-every 10] [-- EXTRA_ARGS]

Starts `cat` (the reference) and then `$LOGVEIL_BIN filter EXTRA_ARGS` (default
target/release/logveil) as subprocesses, writes one line every --interval-ms into each one's
stdin (every --secret-every-th line carries a secret; lines come from gen_log.LineFactory),
reads stdout in a thread, and records for each line the time from writing it (its newline
included, in one write) to reading the corresponding output line. Prints p50/p90/p99/max in
ms for both. Exits 1 if a command's output line count differs from its input's, 2 if a
command cannot be started or does not finish within --timeout seconds after stdin closes.

Standard library only.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_log  # noqa: E402


def make_lines(n, secret_every, seed):
    f = gen_log.LineFactory(random.Random(seed))
    lines, secret = [], []
    for i in range(n):
        is_secret = secret_every > 0 and i % secret_every == secret_every - 1
        line = (f.secret() if is_secret else f.clean()).replace("\n", " ")
        lines.append((line + "\n").encode())
        secret.append(is_secret)
    return lines, secret


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def trickle(cmd, lines, interval, timeout):
    """Feed `lines` to `cmd` one per `interval` seconds; return (latencies_s, outputs, rc, err)."""
    err = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, bufsize=0)
    except OSError as e:
        return None, [], None, f"cannot start {cmd[0]}: {e}"
    sent = [None] * len(lines)
    recv = []
    chunks = []

    def reader():
        fd = proc.stdout.fileno()
        while True:
            data = os.read(fd, 1 << 16)
            if not data:
                return
            now = time.perf_counter()
            chunks.append(data)
            recv.extend([now] * data.count(b"\n"))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    fd = proc.stdin.fileno()
    start = time.perf_counter()
    broken = False
    for i, line in enumerate(lines):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            view = memoryview(line)
            while len(view) > 1:  # all but the newline
                view = view[os.write(fd, view[:-1]):]
            sent[i] = time.perf_counter()
            while len(view):
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            broken = True
            break
    try:
        proc.stdin.close()
    except BrokenPipeError:
        broken = True
    t.join(timeout)
    if t.is_alive():
        proc.kill()
        proc.wait()
        return None, [], proc.returncode, f"no end of output {timeout:.0f} s after stdin closed (killed)"
    rc = proc.wait()
    err.seek(0)
    msg = err.read().decode(errors="replace").strip().splitlines()
    first = msg[0] if msg else ""
    if broken and not first:
        first = "closed its stdin early (broken pipe)"
    out = b"".join(chunks).split(b"\n")
    if out and out[-1] == b"":
        out.pop()
    lat = [r - s for r, s in zip(recv, sent) if s is not None]
    return lat, out, rc, first


def report(name, lat, n_in, out, rc, err, lines, secret):
    ok = True
    if lat is None:
        print(f"{name}: error: {err}")
        return False, True
    n_out = len(out)
    v = sorted(lat)
    ms = [x * 1000 for x in (pct(v, 50), pct(v, 90), pct(v, 99), v[-1] if v else float("nan"))]
    masked = sum(1 for i, s in enumerate(secret) if s and i < n_out and out[i] + b"\n" != lines[i])
    changed_clean = sum(1 for i, s in enumerate(secret) if not s and i < n_out and out[i] + b"\n" != lines[i])
    print(f"{name}: lines in {n_in} out {n_out}  p50 {ms[0]:.2f} ms  p90 {ms[1]:.2f} ms  "
          f"p99 {ms[2]:.2f} ms  max {ms[3]:.2f} ms  (secret lines changed {masked}/{sum(secret)}, "
          f"clean lines changed {changed_clean})")
    if rc not in (0, None):
        print(f"{name}: exit status {rc}: {err}")
        ok = False
    if n_out != n_in:
        print(f"{name}: line count differs: {n_out} out for {n_in} in")
        ok = False
    return ok, False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=2000, help="lines to send (default 2000)")
    ap.add_argument("--interval-ms", type=float, default=5.0, help="ms between lines (default 5)")
    ap.add_argument("--secret-every", type=int, default=10, help="every Nth line has a secret (default 10; 0: none)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--timeout", type=float, default=30.0, help="s to wait for the output after stdin closes")
    ap.add_argument("--bin", default=os.environ.get("LOGVEIL_BIN", os.path.join(os.path.dirname(HERE), "target", "release", "logveil")),
                    help="logveil binary (default $LOGVEIL_BIN or target/release/logveil)")
    ap.add_argument("--no-cat", action="store_true", help="skip the cat reference")
    ap.add_argument("extra", nargs="*", help="extra arguments for `logveil filter` (after --)")
    a = ap.parse_args()
    if a.lines < 1 or a.interval_ms < 0:
        ap.error("--lines must be >= 1 and --interval-ms >= 0")
    lines, secret = make_lines(a.lines, a.secret_every, a.seed)
    interval = a.interval_ms / 1000
    print(f"latency: {a.lines} lines, one every {a.interval_ms:g} ms, {sum(secret)} with a secret "
          f"(~{a.lines * interval:.1f} s per command)")
    runs = [] if a.no_cat else [("cat", ["cat"])]
    runs.append(("logveil filter" + "".join(" " + x for x in a.extra), [a.bin, "filter", *a.extra]))
    status = 0
    for name, cmd in runs:
        lat, out, rc, err = trickle(cmd, lines, interval, a.timeout)
        ok, fatal = report(name, lat, len(lines), out, rc, err, lines, secret)
        if fatal:
            status = 2
        elif not ok and status == 0:
            status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
