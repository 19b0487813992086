#!/usr/bin/env bash
# End-to-end forwarding throughput: a generated CI log from file → redact → seal → spool →
# gzip → HTTPS to a local receiver (`examples/bench_receiver.rs`), next to `logveil filter`
# on the same input in the same run.
#
#   benches/forward_bench.sh [--mb N] [--runs R] [--seed S] [--no-build]
#
#   --mb N      input size in MiB (default 64)
#   --runs R    runs of each row; the table shows the median (default 3)
#   --seed S    generator seed (default 42)
#   --no-build  do not run `cargo build --release` (binary and example)
#
# Environment: LOGVEIL_BIN (default target/release/logveil), RECEIVER_BIN (default
# target/release/examples/bench_receiver), LOGVEIL_BENCH_DIR (default /tmp/logveil-bench;
# the input is shared with compare.sh and sidecar_bench.sh when size and seed match).
#
# An agent row is timed from the agent's start to the moment the receiver has counted every
# input line (it writes that time to a file; batches are counted once per seq), so the idle
# wait that ends the agent is not counted. `[batch] max_age = "250ms"` (default 5s) so that
# the last, partial batch is sealed 250 ms after its first line rather than at the idle
# shutdown; under load batches still fill by size (1 MiB) long before that. Rows: the default spool (fsync = "always"), the
# spool with fsync = "never", and the spool encrypted with AES-256-GCM. The receiver runs on
# the same two cores (TLS, gunzip, counting), as a SIEM's collector would not.
# Needs bash 5, python3, coreutils.
set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
MB=64 RUNS=3 SEED=42 BUILD=1

SELF=forward_bench.sh
# shellcheck source=benches/common.sh
. "$HERE/common.sh"

while [ $# -gt 0 ]; do
    case "$1" in
        --mb) is_uint "${2:-}" || die "--mb needs a positive integer"; MB=$2; shift 2 ;;
        --runs) is_uint "${2:-}" || die "--runs needs a positive integer"; RUNS=$2; shift 2 ;;
        --seed) [[ "${2:-}" =~ ^[0-9]+$ ]] || die "--seed needs an integer"; SEED=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "forward_bench.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done
((BASH_VERSINFO[0] >= 5)) || die "needs bash 5 (EPOCHREALTIME)"
command -v python3 >/dev/null || die "python3 is required"

DIR=${LOGVEIL_BENCH_DIR:-/tmp/logveil-bench}
BIN=${LOGVEIL_BIN:-$ROOT/target/release/logveil}
RECV=${RECEIVER_BIN:-$ROOT/target/release/examples/bench_receiver}
mkdir -p "$DIR" || die "cannot create $DIR"
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q && cargo build --release -q --example bench_receiver) \
        || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "$BIN is not built"
[ -x "$RECV" ] || die "$RECV is not built (cargo build --release --example bench_receiver)"

INPUT=$(bench_input "$DIR" "$MB" "$SEED") || exit 2
LINES=$(wc -l < "$INPUT")
BYTES=$(stat -c %s "$INPUT")

WORK=$DIR/forward
rm -rf "$WORK" && mkdir -p "$WORK/logs" || die "cannot create $WORK"
"$BIN" keygen --out "$WORK/keys" >/dev/null || die "keygen failed"
"$BIN" keygen --spool-key "$WORK/keys/spool.key" >/dev/null || die "keygen --spool-key failed"
ln "$INPUT" "$WORK/logs/input.log" 2>/dev/null || cp "$INPUT" "$WORK/logs/input.log"


run_filter() {
    local t0 t1
    t0=$EPOCHREALTIME
    "$BIN" filter < "$INPUT" > /dev/null || die "filter failed"
    t1=$EPOCHREALTIME
    python3 -c "print($t1 - $t0)"
}

RECV_PID=
cleanup() { [ -n "$RECV_PID" ] && kill "$RECV_PID" 2>/dev/null; }

# run_agent NAME SPOOL_SETTINGS: seconds from agent start to the last line received.
run_agent() {
    local name=$1 spool=$2 rdir=$WORK/recv t0 port
    rm -rf "$WORK/state" "$rdir" && mkdir -p "$rdir"
    "$RECV" "$rdir" "$LINES" 2> "$WORK/receiver-$name.log" &
    RECV_PID=$!
    # run_agent runs in a $(...) subshell: the trap must be set here to see RECV_PID.
    trap cleanup EXIT
    for _ in $(seq 200); do [ -s "$rdir/port" ] && break; sleep 0.05; done
    [ -s "$rdir/port" ] || die "receiver did not start (see $WORK/receiver-$name.log)"
    port=$(cat "$rdir/port")
    cat > "$WORK/config.toml" <<EOF
data_dir = "state"
exit_after_idle = "2s"
log_level = "warn"

[[source]]
type = "file"
include = ["logs/input.log"]

[batch]
max_age = "250ms"

[seal]
key = "file:keys/seal.key"

[spool]
drain_timeout = "60s"
$spool

[[sink]]
type = "http"
name = "bench"
url = "https://localhost:$port/ingest"
ca_file = "recv/ca.pem"
EOF
    t0=$EPOCHREALTIME
    "$BIN" agent --config "$WORK/config.toml" 2> "$WORK/agent-$name.log" || die "agent failed (see $WORK/agent-$name.log)"
    [ -s "$rdir/done" ] || die "the receiver did not get all $LINES lines (see $WORK/agent-$name.log)"
    kill "$RECV_PID" 2>/dev/null; wait "$RECV_PID" 2>/dev/null; RECV_PID=
    python3 -c "print($(cat "$rdir/done") - $t0)"
}

declare -a F A N E
for ((r = 1; r <= RUNS; r++)); do
    F+=("$(run_filter)") || exit 2
    A+=("$(run_agent "always-$r" 'fsync = "always"')") || exit 2
    N+=("$(run_agent "never-$r" 'fsync = "never"')") || exit 2
    E+=("$(run_agent "encrypted-$r" 'encryption_key_file = "keys/spool.key"')") || exit 2
done
FT=$(printf '%s\n' "${F[@]}" | median)
AT=$(printf '%s\n' "${A[@]}" | median)
NT=$(printf '%s\n' "${N[@]}" | median)
ET=$(printf '%s\n' "${E[@]}" | median)

python3 - "$LINES" "$BYTES" "$FT" "$AT" "$NT" "$ET" "$RUNS" <<'EOF'
import sys
lines, size, ft, at, nt, et, runs = sys.argv[1:]
lines, size = int(lines), int(size)
mib = size / (1 << 20)
print(f"input: {mib:.0f} MiB, {lines} lines; median of {runs} runs")
print()
print("| path | seconds | lines/s | MB/s |")
print("|---|---:|---:|---:|")
for name, t in [
    ("`logveil filter` (stdin to /dev/null)", ft),
    ("agent → HTTPS, spool fsync always (default)", at),
    ("agent → HTTPS, spool fsync never", nt),
    ("agent → HTTPS, spool encrypted (AES-256-GCM)", et),
]:
    t = float(t)
    print(f"| {name} | {t:.2f} | {lines/t:,.0f} | {size/t/1e6:.1f} |")
EOF
