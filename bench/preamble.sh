# bench/preamble.sh: what every whole-command benchmark does first. Sourced (bash) right after the script has set
# BENCH (its name in messages, e.g. bench/load); then the script checks its knobs and sources bench/lib.sh.

die() { echo "$BENCH: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/bin

# bench_require WHY COMMAND...: root (for WHY), every COMMAND on the PATH (all missing ones named at once) and the
# built vserverd, vsctl and vsinit.
bench_require() {
    local why=$1 c missing=""
    shift
    [ "$(id -u)" = 0 ] || die "must run as root ($why)"
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing="$missing $c"; done
    [ -z "$missing" ] || die "missing:$missing (make deps installs them)"
    [ -x "$BIN/vserverd" ] && [ -x "$BIN/vsctl" ] && [ -x "$BIN/vsinit" ] ||
        die "$BIN/vserverd, $BIN/vsctl or $BIN/vsinit missing: run make build first"
}

# bench_on_exit FUNC: FUNC runs at every exit, also after Ctrl-C or a TERM (which exit 130 and 143 as a shell would).
bench_on_exit() {
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
