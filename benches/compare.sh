#!/usr/bin/env bash
# Throughput of `logveil filter` against cat, a cross-core pipe and regex peers on one
# generated CI log. See benches/README.md for what each row means.
#
#   benches/compare.sh [--mb N] [--runs R] [--quick] [--slow-mb N] [--seed S] [--no-build]
#
#   --mb N       size of the input in MiB (default 512)
#   --runs R     timed runs per row; the table shows medians (default 3)
#   --quick      64 MiB for everything (same as --mb 64)
#   --slow-mb N  sed and ripgrep run on the first N MiB only (default 64; never more than --mb)
#   --seed S     generator seed (default 42)
#   --no-build   do not run `cargo build --release`
#
# Environment: LOGVEIL_BIN (default target/release/logveil; a non-default binary is never
# built), LOGVEIL_BENCH_DIR (default /tmp/logveil-bench: inputs, rules, logs, results),
# LOGVEIL_BENCH_NO_INSTALL=1 (never call apt-get).
#
# Needs bash, python3, coreutils, taskset (util-linux); installs `time` and `ripgrep` (and,
# when Debian has it, libhyperscan-dev for the optional Hyperscan peer) with apt-get if missing.
set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
MB=512 RUNS=3 SLOW_MB=64 SEED=42 BUILD=1

SELF=compare.sh
# shellcheck source=benches/common.sh
. "$HERE/common.sh"
note() { echo "compare.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --mb) is_uint "${2:-}" || die "--mb needs a positive integer"; MB=$2; shift 2 ;;
        --runs) is_uint "${2:-}" || die "--runs needs a positive integer"; RUNS=$2; shift 2 ;;
        --slow-mb) is_uint "${2:-}" || die "--slow-mb needs a positive integer"; SLOW_MB=$2; shift 2 ;;
        --seed) [[ "${2:-}" =~ ^[0-9]+$ ]] || die "--seed needs an integer"; SEED=$2; shift 2 ;;
        --quick) MB=64; SLOW_MB=64; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "compare.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done
[ "$SLOW_MB" -gt "$MB" ] && SLOW_MB=$MB
((BASH_VERSINFO[0] >= 5)) || die "needs bash 5 (EPOCHREALTIME)"

DIR=${LOGVEIL_BENCH_DIR:-/tmp/logveil-bench}
DEFAULT_BIN=$ROOT/target/release/logveil
BIN=${LOGVEIL_BIN:-$DEFAULT_BIN}
mkdir -p "$DIR" || die "cannot create $DIR"
command -v python3 >/dev/null || die "python3 is required"

# ---------------------------------------------------------------------------------------
# tools

APT_UPDATED=0
apt_install() {  # apt_install PKG...: best effort, quiet
    [ "${LOGVEIL_BENCH_NO_INSTALL:-0}" = 1 ] && return 1
    command -v apt-get >/dev/null || return 1
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    note "installing $* with apt-get"
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$DIR/apt.log" 2>&1; then
        if [ $APT_UPDATED = 0 ]; then
            APT_UPDATED=1
            $sudo apt-get update -qq >>"$DIR/apt.log" 2>&1
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$DIR/apt.log" 2>&1 && return 0
        fi
        note "apt-get install $* failed (see $DIR/apt.log)"
        return 1
    fi
}
[ -x /usr/bin/time ] || apt_install time || die "/usr/bin/time is required (apt-get install time)"
command -v rg >/dev/null || apt_install ripgrep || note "ripgrep unavailable: its row is skipped"
command -v taskset >/dev/null || die "taskset (util-linux) is required"
PIN0=(taskset -c 0) PIN1=(taskset -c 1)
if ! taskset -c 1 true 2>/dev/null; then
    note "cannot pin to cpu 1 (one cpu?): the pipe runs unpinned"
    PIN0=() PIN1=()
fi

HS_OK=0
if command -v gcc >/dev/null; then
    if [ ! -f /usr/include/hs/hs.h ] && command -v apt-cache >/dev/null &&
        apt-cache policy libhyperscan-dev 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt_install libhyperscan-dev
    fi
    if [ -f /usr/include/hs/hs.h ]; then
        HS_BIN=$DIR/hs_redact
        if [ ! -x "$HS_BIN" ] || [ "$HERE/peers/hs_redact.c" -nt "$HS_BIN" ]; then
            gcc -O2 -o "$HS_BIN" "$HERE/peers/hs_redact.c" -I/usr/include/hs -lhs 2>"$DIR/hs_build.log" ||
                note "hs_redact did not build (see $DIR/hs_build.log)"
        fi
        [ -x "$HS_BIN" ] && HS_OK=1
    fi
fi
[ $HS_OK = 1 ] || note "Hyperscan unavailable (libhyperscan-dev or gcc missing): its rows are skipped"

if [ $BUILD = 1 ] && [ "$BIN" = "$DEFAULT_BIN" ]; then
    if command -v cargo >/dev/null; then
        note "cargo build --release (log: $DIR/build.log)"
        (cd "$ROOT" && cargo build --release) >"$DIR/build.log" 2>&1 ||
            note "cargo build --release failed (see $DIR/build.log); measuring whatever binary exists"
    else
        note "cargo not found: not building"
    fi
fi

# Measure a private copy: a build in the shared target/ during the run must not swap the
# binary between rows.
RUN_BIN=$BIN
if [ -x "$BIN" ] && cp "$BIN" "$DIR/logveil-under-test.tmp" && mv "$DIR/logveil-under-test.tmp" "$DIR/logveil-under-test"; then
    RUN_BIN=$DIR/logveil-under-test
fi

# ---------------------------------------------------------------------------------------
# inputs (reused while the size, seed and generator are unchanged)

INPUT=$(bench_input "$DIR" "$MB" "$SEED") || exit 2
SLOW_INPUT=$INPUT
if [ "$SLOW_MB" -lt "$MB" ]; then SLOW_INPUT=$(bench_input "$DIR" "$SLOW_MB" "$SEED") || exit 2; fi
CHECK_INPUT=$(bench_input "$DIR" 4 "$SEED") || exit 2  # untimed output check of every row

RULES200=$DIR/200rules.toml PEER200=$DIR/peer_rules_200.txt KNOWN=$DIR/known10k.txt
want="$(stamp_of "$HERE/gen_rules.py" "$HERE/peer_rules.txt") $SEED"
if [ "$(cat "$DIR/rules.stamp" 2>/dev/null)" != "$want" ] || [ ! -f "$RULES200" ] ||
    [ ! -f "$PEER200" ] || [ ! -f "$KNOWN" ]; then
    python3 "$HERE/gen_rules.py" --seed "$SEED" --rules-out "$RULES200" --peer-out "$PEER200" \
        --known-out "$KNOWN" || die "gen_rules.py failed"
    echo "$want" >"$DIR/rules.stamp"
    rm -f "$DIR"/hs_*.db
fi
PEER=$HERE/peer_rules.txt
SED_SCRIPT=$DIR/peer_rules.sed
# one s///g per regex; '/' inside a regex is escaped for sed
sed 's|/|\\/|g; s|^|s/|; s|$|/[REDACTED]/g|' "$PEER" >"$SED_SCRIPT"

if [ $HS_OK = 1 ]; then  # compile the databases now so that compile time is not timed
    for p in "$PEER:$DIR/hs_peer.db" "$PEER200:$DIR/hs_peer200.db"; do
        t0=$EPOCHREALTIME
        if ! "$HS_BIN" "${p%%:*}" "${p#*:}" </dev/null 2>>"$DIR/hs_build.log"; then
            note "hs_redact cannot compile ${p%%:*} (see $DIR/hs_build.log)"
        else
            note "hyperscan database ${p#*:}: $(python3 -c "print(f'{$EPOCHREALTIME-$t0:.1f}')") s to compile or load (not timed)"
        fi
    done
fi

# ---------------------------------------------------------------------------------------
# rows: id|label|input size (full|slow)|stdin (file or -)|command...

ROWS=()
add_row() { ROWS+=("$1"); }
add_row "cat|\`cat F\`|full|-|cat @F"
command -v rg >/dev/null &&
    add_row "rg|ripgrep \`--passthru -r\`, $(grep -c . "$PEER") regexes|slow|-|rg --no-config --no-unicode -a --passthru --no-line-number --no-filename --color never -r [REDACTED] -f $PEER @F"
add_row "sed|\`sed -E\`, $(grep -c . "$PEER") s///g|slow|-|sed -E -f $SED_SCRIPT @F"
if [ $HS_OK = 1 ]; then
    [ -f "$DIR/hs_peer.db" ] && add_row "hs|Hyperscan peer, $(grep -c . "$PEER") regexes|full|@F|$HS_BIN $PEER $DIR/hs_peer.db"
    [ -f "$DIR/hs_peer200.db" ] && add_row "hs200|Hyperscan peer, +200 rules|full|@F|$HS_BIN $PEER200 $DIR/hs_peer200.db"
fi
add_row "lv1|\`logveil filter --threads 1\`|full|@F|$RUN_BIN filter --threads 1"
add_row "lvN|\`logveil filter\` ($(nproc) cpus)|full|@F|$RUN_BIN filter"
add_row "lv200|\`logveil filter --threads 1 --rules 200rules.toml\`|full|@F|$RUN_BIN filter --threads 1 --rules $RULES200"
add_row "lvmask|\`logveil filter --threads 1 --mask-file known10k.txt\`|full|@F|$RUN_BIN filter --threads 1 --mask-file $KNOWN"

RESULTS=$DIR/results.tsv
: >"$RESULTS"
declare -A FAILED=()

# (read -a, not a=($1): the fields hold glob characters such as [REDACTED])
row_field() { local a; IFS='|' read -r -a a <<<"$1"; echo "${a[$2]}"; }
row_cmd() {  # row_cmd ROW FILE -> sets CMD array and STDIN
    local a; IFS='|' read -r -a a <<<"$1"
    local c=${a[4]} s=${a[3]}
    IFS=' ' read -r -a CMD <<<"${c//@F/$2}"
    STDIN=${s//@F/$2}
    [ "$STDIN" = - ] && STDIN=/dev/null
}
secs_since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.6f}')" "$1" "$2"; }
first_err() { grep -v '^Command exited with non-zero status' "$1" | grep -m1 . | cut -c1-160; }

# Untimed check on 4 MiB: the row must exit 0 and keep the line count. Then its startup
# time on empty input.
check_lines=$(wc -l <"$CHECK_INPUT")
for row in "${ROWS[@]}"; do
    id=$(row_field "$row" 0)
    row_cmd "$row" "$CHECK_INPUT"
    if [ "${CMD[0]}" = "$RUN_BIN" ] && [ ! -x "$RUN_BIN" ]; then
        FAILED[$id]="not built: $BIN does not exist"
        continue
    fi
    "${CMD[@]}" <"$STDIN" >"$DIR/check.$id.out" 2>"$DIR/check.$id.err"
    rc=$?
    if [ $rc != 0 ]; then
        FAILED[$id]="exit $rc: $(first_err "$DIR/check.$id.err")"
        continue
    fi
    out_lines=$(wc -l <"$DIR/check.$id.out")
    if [ "$out_lines" != "$check_lines" ]; then
        FAILED[$id]="wrong output: $out_lines lines for $check_lines input lines"
        continue
    fi
    printf 'check\t%s\t%s\n' "$id" "$(grep -o '\[REDACTED' "$DIR/check.$id.out" | wc -l)" >>"$RESULTS"
    # startup: the same command on empty input (compiling rules, loading value lists)
    row_cmd "$row" /dev/null
    t0=$EPOCHREALTIME
    "${CMD[@]}" </dev/null >/dev/null 2>&1
    t1=$EPOCHREALTIME
    printf 'startup\t%s\t%s\n' "$id" "$(secs_since "$t0" "$t1")" >>"$RESULTS"
done
rm -f "$DIR"/check.*.out

# warm the page cache
cat "$INPUT" "$SLOW_INPUT" >/dev/null
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

note "$RUNS run(s) of ${#ROWS[@]} rows on $MB MiB (sed/rg: $SLOW_MB MiB)"
for ((run = 1; run <= RUNS; run++)); do
    for row in "${ROWS[@]}"; do
        id=$(row_field "$row" 0)
        [ -n "${FAILED[$id]:-}" ] && continue
        f=$INPUT
        [ "$(row_field "$row" 2)" = slow ] && f=$SLOW_INPUT
        row_cmd "$row" "$f"
        # the paired cross-core pipe, right before the tool
        t0=$EPOCHREALTIME
        "${PIN0[@]}" cat "$f" | "${PIN1[@]}" cat >/dev/null
        t1=$EPOCHREALTIME
        pipe=$(secs_since "$t0" "$t1")
        t0=$EPOCHREALTIME
        /usr/bin/time -f %M -o "$DIR/rss.txt" "${CMD[@]}" <"$STDIN" >/dev/null 2>"$DIR/err.$id.txt"
        rc=$?
        t1=$EPOCHREALTIME
        if [ $rc != 0 ]; then
            FAILED[$id]="exit $rc: $(first_err "$DIR/err.$id.txt")"
            continue
        fi
        rss=$(tail -n1 "$DIR/rss.txt")
        printf 'run\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$run" "$(stat -c %s "$f")" \
            "$(secs_since "$t0" "$t1")" "$pipe" "$rss" >>"$RESULTS"
        note "run $run: $id $(secs_since "$t0" "$t1") s (pipe $pipe s)"
    done
done

for row in "${ROWS[@]}"; do
    id=$(row_field "$row" 0)
    printf 'row\t%s\t%s\t%s\t%s\n' "$id" "$(row_field "$row" 1)" "${FAILED[$id]:-}" \
        "$(row_field "$row" 2)" >>"$RESULTS"
done

{
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
    git -C "$ROOT" diff --quiet HEAD -- agent patterns 2>/dev/null || rev="$rev+changes"
    echo "Machine: $(nproc) cpus ($cpu), load $LOAD_START at start; logveil $rev;" \
        "input $MB MiB, seed $SEED ($INPUT); $RUNS run(s)"
    echo
    python3 - "$RESULTS" "$MB" "$SLOW_MB" <<'PY'
import statistics, sys
path, mb, slow_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs, rows, masks, startup = {}, [], {}, {}
for line in open(path):
    f = line.rstrip("\n").split("\t")
    if f[0] == "run":
        runs.setdefault(f[1], []).append((int(f[3]), float(f[4]), float(f[5]), int(f[6])))
    elif f[0] == "row":
        rows.append(f[1:])
    elif f[0] == "check":
        masks[f[1]] = f[2]
    elif f[0] == "startup":
        startup[f[1]] = float(f[2])
MiB = 1 << 20
def mbps(rs):
    return rs[0][0] / MiB / statistics.median(r[1] for r in rs)
base = mbps(runs["lv1"]) if "lv1" in runs else None
print("| tool | input MB | median MB/s | × pipe time | × logveil-1-thread throughput | peak RSS MB | startup s | masks in 4 MiB check |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
pipes = {}
for rid, label, err, size in rows:
    rs = runs.get(rid)
    if not rs:
        print(f"| {label} | | error: {err.replace('|', '/') or 'no run'} | | | | | |")
        continue
    if err:
        label += f" (then failed: {err.replace('|', '/')})"
    for r in rs:
        pipes.setdefault(r[0], []).append(r[2])
    sp = mbps(rs)
    ratio = statistics.median(r[1] / r[2] for r in rs)
    rel = f"{sp / base:.2f}" if base else "n/a"
    rss = max(r[3] for r in rs) / 1024
    print(f"| {label} | {rs[0][0] / MiB:.0f} | {sp:.0f} | {ratio:.2f} | {rel} | {rss:.1f} | {startup.get(rid, float('nan')):.2f} | {masks.get(rid, '')} |")
print()
for size, ts in sorted(pipes.items()):
    print(f"Cross-core pipe `taskset -c 0 cat F | taskset -c 1 cat > /dev/null` on {size / MiB:.0f} MB: "
          f"median {size / MiB / statistics.median(ts):.0f} MB/s over {len(ts)} runs.")
print("MB = MiB. × pipe time = tool time / the pipe's time on the same input just before it "
      "(median of the per-run ratios); sed and ripgrep run on the first "
      f"{slow_mb} MB when the input is larger. startup s = the same command on empty input "
      "(included in the timed runs).")
PY
} | tee "$DIR/table.md"
