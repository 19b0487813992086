#!/usr/bin/env bash
# Sidecar throughput: a generated CI log from file to sealed archive (`logveil agent`),
# next to `logveil filter` on the same input in the same run.
#
#   benches/sidecar_bench.sh [--mb N] [--runs R] [--max-events E] [--seed S] [--no-build]
#
#   --mb N          input size in MiB (default 64)
#   --runs R        runs of each row; the table shows the median (default 3)
#   --max-events E  [batch] max_events of the agent (default 10000, the default config)
#   --seed S        generator seed (default 42)
#   --no-build      do not run `cargo build --release`
#
# Environment: LOGVEIL_BIN (default target/release/logveil), LOGVEIL_BENCH_DIR (default
# /tmp/logveil-bench: the input is shared with compare.sh when size and seed match),
# MAX_BYTES ([batch] max_bytes, default 1MiB).
#
# The agent row is timed from the agent's start to the modification time of the last batch
# file it wrote (every batch fsynced, chain and checkpoints persisted after each), so the
# idle wait that ends the run is not counted. Each run starts from an empty data_dir and
# archive; after the run, `logveil verify` must pass and hold one event per input line.
# Needs bash 5, python3, coreutils.
set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
MB=64 RUNS=3 MAX_EVENTS=10000 SEED=42 BUILD=1

SELF=sidecar_bench.sh
# shellcheck source=benches/common.sh
. "$HERE/common.sh"

while [ $# -gt 0 ]; do
    case "$1" in
        --mb) is_uint "${2:-}" || die "--mb needs a positive integer"; MB=$2; shift 2 ;;
        --runs) is_uint "${2:-}" || die "--runs needs a positive integer"; RUNS=$2; shift 2 ;;
        --max-events) is_uint "${2:-}" || die "--max-events needs a positive integer"; MAX_EVENTS=$2; shift 2 ;;
        --seed) [[ "${2:-}" =~ ^[0-9]+$ ]] || die "--seed needs an integer"; SEED=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "sidecar_bench.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done
((BASH_VERSINFO[0] >= 5)) || die "needs bash 5 (EPOCHREALTIME)"
command -v python3 >/dev/null || die "python3 is required"

DIR=${LOGVEIL_BENCH_DIR:-/tmp/logveil-bench}
BIN=${LOGVEIL_BIN:-$ROOT/target/release/logveil}
mkdir -p "$DIR" || die "cannot create $DIR"
if [ "$BUILD" = 1 ] && [ -z "${LOGVEIL_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -q) || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "$BIN is not built"

INPUT=$(bench_input "$DIR" "$MB" "$SEED") || exit 2
LINES=$(wc -l < "$INPUT")
BYTES=$(stat -c %s "$INPUT")

WORK=$DIR/sidecar
rm -rf "$WORK" && mkdir -p "$WORK/logs" || die "cannot create $WORK"
"$BIN" keygen --out "$WORK/keys" >/dev/null || die "keygen failed"
# The agent follows a hard link, so the input is not copied and keeps its inode.
ln "$INPUT" "$WORK/logs/input.log" 2>/dev/null || cp "$INPUT" "$WORK/logs/input.log"


run_filter() {
    local t0 t1
    t0=$EPOCHREALTIME
    "$BIN" filter < "$INPUT" > /dev/null || die "filter failed"
    t1=$EPOCHREALTIME
    python3 -c "print($t1 - $t0)"
}

run_agent() {
    local n=$1 t0 last
    rm -rf "$WORK/state" "$WORK/archive"
    cat > "$WORK/config.toml" <<EOF
data_dir = "state"
exit_after_idle = "1s"
log_level = "warn"

[[source]]
type = "file"
include = ["logs/input.log"]

[batch]
max_events = $MAX_EVENTS
max_bytes = "${MAX_BYTES:-1MiB}"

[seal]
key = "file:keys/seal.key"

[[sink]]
type = "archive"
path = "archive"
EOF
    t0=$EPOCHREALTIME
    "$BIN" agent --config "$WORK/config.toml" 2> "$WORK/agent-$n.log" || die "agent failed (see $WORK/agent-$n.log)"
    last=$(stat -c %.9Y "$WORK"/archive/batch-*.lvb | sort -g | tail -1)
    local out
    out=$("$BIN" verify "$WORK/archive" --pubkey "$WORK/keys/seal.pub") || die "verify failed: $out"
    grep -q " $LINES events," <<<"$out" || die "archive does not hold $LINES events: $out"
    python3 -c "print($last - $t0)"
}

declare -a F A
for ((r = 1; r <= RUNS; r++)); do
    F+=("$(run_filter)") || exit 2
    A+=("$(run_agent "$r")") || exit 2
done
FT=$(printf '%s\n' "${F[@]}" | median)
AT=$(printf '%s\n' "${A[@]}" | median)
BATCHES=$(ls "$WORK/archive" | grep -c '\.lvb$')
ABYTES=$(du -sb "$WORK/archive" | cut -f1)

python3 - "$LINES" "$BYTES" "$FT" "$AT" "$BATCHES" "$ABYTES" "$MAX_EVENTS" "$RUNS" <<'EOF'
import sys
lines, size, ft, at, batches, abytes, maxev, runs = sys.argv[1:]
lines, size, ft, at = int(lines), int(size), float(ft), float(at)
mib = size / (1 << 20)
print(f"input: {mib:.0f} MiB, {lines} lines; median of {runs} runs")
print()
print("| path | seconds | lines/s | MB/s |")
print("|---|---:|---:|---:|")
print(f"| `logveil filter` (stdin to /dev/null) | {ft:.2f} | {lines/ft:,.0f} | {size/ft/1e6:.1f} |")
print(f"| `logveil agent` (file to sealed archive) | {at:.2f} | {lines/at:,.0f} | {size/at/1e6:.1f} |")
print()
print(f"agent: max_events {maxev}; archive: {batches} batches, {int(abytes)/1e6:.1f} MB (events as NDJSON with metadata)")
EOF
