# Shared by the benches (sourced, not run): error exit, help text, argument check, median, and
# the seeded input that compare.sh, sidecar_bench.sh and forward_bench.sh share.
# The sourcing script sets SELF (its name for messages) and HERE (the benches directory).

die() { echo "$SELF: $*" >&2; exit 2; }
# usage [CODE]: prints the script's leading comment block (its help) and exits.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
is_uint() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# stamp_of FILE...: a short digest of the files' contents.
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

# bench_input DIR MB SEED: prints the path of the generated CI log of MB MiB, generated
# again with gen_log.py when missing, of another size, or made by another version of
# gen_log.py (the stamp file beside it records which).
bench_input() {
    local f="$1/ci-${2}mb-seed$3.log"
    local want
    want="$(stamp_of "$HERE/gen_log.py") $(($2 << 20))"
    if [ -f "$f" ] && [ "$(cat "$f.stamp" 2>/dev/null)" = "$want" ] &&
        [ "$(stat -c %s "$f")" = $(($2 << 20)) ]; then
        echo "$f"
        return
    fi
    echo "$SELF: generating $2 MiB of CI log (seed $3) into $f" >&2
    python3 "$HERE/gen_log.py" "$f" --mb "$2" --seed "$3" >&2 || die "gen_log.py failed"
    echo "$want" >"$f.stamp"
    echo "$f"
}
