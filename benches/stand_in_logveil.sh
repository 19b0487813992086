#!/bin/sh
# A stand-in for `logveil filter` that copies stdin to stdout, for dry runs of the bench
# harness before the engine exists:  LOGVEIL_BIN=benches/stand_in_logveil.sh benches/compare.sh --quick
# It accepts the flags the harness passes (and checks their files exist), then execs cat.
[ "$1" = filter ] || { echo "stand_in_logveil: only 'filter' is supported" >&2; exit 2; }
shift
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) [ -n "${2:-}" ] || { echo "stand_in_logveil: --threads needs a value" >&2; exit 2; }; shift 2 ;;
        --rules|--mask-file)
            [ -r "${2:-}" ] || { echo "stand_in_logveil: $1: cannot read '${2:-}'" >&2; exit 2; }; shift 2 ;;
        --stats) shift ;;
        *) echo "stand_in_logveil: unknown flag $1" >&2; exit 2 ;;
    esac
done
exec cat
