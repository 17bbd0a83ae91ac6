#!/bin/sh
# images/kernel/boot-test.sh OUTDIR
#
# Boots the output of images/kernel/build.sh under plain QEMU (TCG, microvm
# with ACPI) with a busybox ext4 root disk and checks the serial console for,
# in this order:
#   1. the kernel banner           "Linux version <OUTDIR/version>"
#   2. the initramfs marker        "vserver-initramfs: modules loaded"
#   3. the guest's init marker     "guest-init-marker" (init=/bin/sh -c ...)
#   4. the guest's `uname -r`      a line equal to <OUTDIR/version>
# Exits 0 only if all four are seen within $TIMEOUT seconds (default 60);
# otherwise QEMU is killed (by its pid) and the console log is printed.
#
# Environment:
#   ROOT_IMG   an existing ext4 root image to use (it is not modified: the
#              disk is attached with snapshot=on); default: build one from
#              images/busybox/build.sh into a temp dir (needs mkfs.ext4 -d).
#   KERNEL     vmlinux (default, PVH ELF) or vmlinuz (the bzImage).
#   TSC_KHZ    the host TSC rate in kHz (see tsc_khz below).
#   QEMU       default qemu-system-x86_64.   TIMEOUT  default 60.
#   LOG        keep the console log at this path.
#
# Why tsc_early_khz: under TCG on microvm there is no PIT/HPET/PM timer to
# calibrate the TSC against, and the kernel hung in early calibration in 6 of
# 20 boots without it. QEMU's TCG guest TSC runs at the host's TSC rate, so the
# host's rate is the right value. It is taken from, in order:
# /sys/devices/system/cpu/cpu0/tsc_freq_khz (exists on some kernels), the
# kernel log ("tsc: Refined TSC clocksource calibration: X MHz", then
# "tsc: Detected X MHz processor"; the ring buffer may have been overwritten
# on a long-running host), then the first "cpu MHz" of /proc/cpuinfo (on a
# VM host that is the TSC rate; on bare metal with frequency scaling it can be
# the current clock, which is still close enough to skip the calibration).
set -eu

me=images/kernel/boot-test.sh
die() { echo "$me: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: boot-test.sh OUTDIR"
OUT=$(cd "$1" && pwd) || die "OUTDIR '$1' does not exist"
HERE=$(cd "$(dirname "$0")" && pwd)
QEMU=${QEMU:-qemu-system-x86_64}
TIMEOUT=${TIMEOUT:-60}
KERNEL=${KERNEL:-vmlinux}
for f in "$KERNEL" initrd.img version; do
    [ -f "$OUT/$f" ] || die "$OUT/$f missing: run images/kernel/build.sh $OUT first"
done
command -v "$QEMU" >/dev/null 2>&1 || die "$QEMU not found: install qemu-system-x86"
VERSION=$(cat "$OUT/version")

tsc_khz() {
    if [ -n "${TSC_KHZ:-}" ]; then echo "$TSC_KHZ"; return; fi
    if [ -r /sys/devices/system/cpu/cpu0/tsc_freq_khz ]; then
        cat /sys/devices/system/cpu/cpu0/tsc_freq_khz; return
    fi
    mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
    [ -n "$mhz" ] || mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz processor.*/\1/p' | tail -n 1)
    [ -n "$mhz" ] || mhz=$(sed -n 's/^cpu MHz[[:space:]]*:[[:space:]]*\([0-9.]*\).*/\1/p' /proc/cpuinfo | head -n 1)
    [ -n "$mhz" ] || return 1
    awk -v m="$mhz" 'BEGIN { printf "%d\n", m * 1000 + 0.5 }'
}
KHZ=$(tsc_khz) || die "cannot determine the host TSC rate: set TSC_KHZ"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vserver-boot-test.XXXXXX")
qpid=
cleanup() {
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill "$qpid" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${ROOT_IMG:-}" ]; then
    IMG=$ROOT_IMG
else
    mkdir "$TMP/rootfs"
    sh "$HERE/../busybox/build.sh" "$TMP/rootfs" >/dev/null
    IMG=$TMP/root.ext4
    mkfs.ext4 -q -d "$TMP/rootfs" "$IMG" 64M >/dev/null
fi

MARK=guest-init-marker
LOGF=$TMP/console.log
set -- -M microvm,acpi=on -accel tcg -cpu max -m 256 -smp 1 \
    -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
    -kernel "$OUT/$KERNEL" -initrd "$OUT/initrd.img" \
    -append "console=ttyS0 root=/dev/vda rw tsc_early_khz=$KHZ panic=-1 init=/bin/sh -c \"echo $MARK; uname -r; poweroff -f\"" \
    -drive "id=root,file=$IMG,format=raw,if=none,snapshot=on" \
    -device virtio-blk-device,drive=root
echo "$me: $QEMU $*" | sed 's/-append \(.*\) -drive/-append '"'"'\1'"'"' -drive/'
: > "$LOGF"
t0=$(date +%s.%N)
"$QEMU" "$@" </dev/null >"$LOGF" 2>&1 &
qpid=$!

# The markers must appear in order; each grep starts after the previous hit.
seen() {
    awk -v v="$VERSION" -v mk="$MARK" '
        { sub(/\r$/, "") }
        s == 0 && index($0, "Linux version " v " ")         { s = 1; next }
        s == 1 && $0 == "vserver-initramfs: modules loaded" { s = 2; next }
        s == 2 && $0 == mk                                  { s = 3; next }
        s == 3 && $0 == v                                   { s = 4; next }
        END { print s + 0 }' "$LOGF"
}
past_deadline() {
    awk -v t="$t0" -v d="$TIMEOUT" -v n="$(date +%s.%N)" 'BEGIN { exit !(n >= t + d) }'
}
state=0
while :; do
    state=$(seen)
    [ "$state" -eq 4 ] && break
    kill -0 "$qpid" 2>/dev/null || { state=$(seen); break; }
    past_deadline && break
    sleep 0.05
done
t1=$(date +%s.%N)
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
names="kernel-banner initramfs-marker guest-init-marker uname-r"

if [ "$state" -eq 4 ]; then
    # The guest powers off right after uname; give QEMU a moment to exit.
    n=0
    while kill -0 "$qpid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.05; n=$((n + 1)); done
    if kill -0 "$qpid" 2>/dev/null; then
        echo "$me: warning: QEMU did not exit after the guest's poweroff; killing pid $qpid"
        kill "$qpid" 2>/dev/null || true
    fi
    wait "$qpid" 2>/dev/null || true
    [ -z "${LOG:-}" ] || cp "$LOGF" "$LOG"
    echo "$me: OK: all markers seen in ${elapsed}s (kernel $VERSION, $KERNEL, tsc_early_khz=$KHZ)"
    exit 0
fi
missing=$(echo $names | cut -d' ' -f$((state + 1))-)
if kill -0 "$qpid" 2>/dev/null; then
    kill "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
    why="timed out after ${elapsed}s; killed QEMU pid $qpid"
else
    wait "$qpid" 2>/dev/null && rc=0 || rc=$?
    why="QEMU exited (status $rc) after ${elapsed}s"
fi
echo "----- console -----" >&2
cat "$LOGF" >&2
echo "-------------------" >&2
[ -z "${LOG:-}" ] || cp "$LOGF" "$LOG"
die "FAILED: $why; not seen: $missing"
