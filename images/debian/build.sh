#!/bin/sh
# images/debian/build.sh ROOTFS_DIR
#
# Builds a Debian bookworm vserver image with debootstrap: "minbase" plus
# systemd as init (systemd-sysv, dbus; udev for when it boots as a domain), iproute2, iputils-ping, procps,
# ca-certificates, less and an editor (vim-tiny), as LXC's and Incus's Debian
# images are.  The caller creates ROOTFS_DIR (empty) and later uses it
# read-only as the shared overlayfs lower layer.  The same image boots as a
# domain (its kernel's initramfs execs /sbin/init, systemd).
#
# The mirror is NOT hard-coded: it is the first enabled Debian source for the
# suite "bookworm" in this machine's apt configuration (/etc/apt/sources.list,
# /etc/apt/sources.list.d/*.list one-line format and *.sources deb822 format).
# Override with DEBIAN_MIRROR=URL if needed.
#
# INIT=shell (images/debian-shell, the smallest guests): no systemd; the
# host has already mounted /proc, /sys and /dev and configures the network, so
# /sbin/init is a tiny POSIX shell script (written below) that brings up lo,
# runs /etc/rc.local if it is executable, and then stays pid 1: it sleeps in
# `wait`, which also reaps orphaned processes re-parented to it.  On SIGTERM /
# SIGINT / SIGPWR / SIGUSR1 / SIGUSR2 it sends SIGTERM to every other process
# of the guest, waits at most ~1 s for them, and exits with status 0 (the
# kernel then SIGKILLs whatever is left in the pid namespace).
set -eu

SUITE=bookworm
VARIANT=minbase
INIT=${INIT:-systemd}
case $INIT in
    systemd) INCLUDE=systemd-sysv,dbus,udev,iproute2,iputils-ping,procps,ca-certificates,less,vim-tiny ;;
    shell) INCLUDE=iproute2,iputils-ping,procps ;;
    *) echo "images/debian/build.sh: INIT=$INIT: use systemd or shell" >&2; exit 1 ;;
esac

die() { echo "images/debian/build.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: build.sh ROOTFS_DIR"
ROOT=$1
[ -d "$ROOT" ] || die "ROOTFS_DIR '$ROOT' does not exist (the caller creates it)"
[ -z "$(ls -A "$ROOT")" ] || die "ROOTFS_DIR '$ROOT' is not empty"
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found: install debootstrap (apt-get install debootstrap)"

# --- find the mirror in the apt configuration ------------------------------
# Prints the first URI of an enabled "deb" source whose suites contain exactly
# "bookworm" (so bookworm-security / bookworm-updates do not count).
find_mirror() {
    files=""
    [ -f /etc/apt/sources.list ] && files="/etc/apt/sources.list"
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files="$files $f"
    done
    [ -n "$files" ] || return 0
    # shellcheck disable=SC2086
    awk -v suite="$SUITE" '
        function ok_uri(u) { return u ~ /^(https?|ftp|file):/ }
        function flush(   n, i, s, u) {
            if (found) return
            if (st_types ~ /(^| )deb( |$)/ && st_enabled !~ /^(no|false|0)$/) {
                n = split(st_suites, s, /[ \t]+/)
                for (i = 1; i <= n; i++) if (s[i] == suite) {
                    n = split(st_uris, u, /[ \t]+/)
                    for (i = 1; i <= n; i++) if (ok_uri(u[i])) { print u[i]; found = 1; exit }
                    break
                }
            }
            st_types = st_uris = st_suites = st_enabled = ""
        }
        FNR == 1 { if (deb822) flush(); deb822 = (FILENAME ~ /\.sources$/) }
        deb822 {
            if ($0 ~ /^[ \t]*#/) next
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            line = $0; sub(/^[ \t]+/, "", line)
            if (match(line, /^[A-Za-z-]+:/)) {
                key = tolower(substr(line, 1, RLENGTH - 1))
                val = substr(line, RLENGTH + 1)
                sub(/^[ \t]+/, "", val); sub(/[ \t]+$/, "", val)
                if (key == "types") st_types = val
                else if (key == "uris") st_uris = val
                else if (key == "suites") st_suites = val
                else if (key == "enabled") st_enabled = tolower(val)
                last = key
            } else if (last == "uris") st_uris = st_uris " " line
              else if (last == "suites") st_suites = st_suites " " line
            next
        }
        {   # one-line format: deb [opts] URI SUITE COMPONENT...
            sub(/#.*/, "")
            if ($1 != "deb") next
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite && ok_uri($i)) { print $i; found = 1; exit }
        }
        END { if (deb822) flush() }
    ' $files
}

MIRROR=${DEBIAN_MIRROR:-$(find_mirror)}
[ -n "$MIRROR" ] || die "no Debian '$SUITE' source found in /etc/apt/sources.list{,.d/*.list,.d/*.sources}; configure apt or set DEBIAN_MIRROR=URL"
MIRROR=${MIRROR%/}

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
set -- --variant="$VARIANT" --include="$INCLUDE"
if [ -r "$KEYRING" ]; then
    set -- "$@" --keyring="$KEYRING"
fi

echo "images/debian/build.sh: debootstrap $SUITE ($VARIANT) from $MIRROR into $ROOT" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! debootstrap "$@" "$SUITE" "$ROOT" "$MIRROR" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    [ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 20 "$ROOT/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (see above)"
fi

# --- per-guest state out, host-specific files out ---------------------------
# The host sets the hostname (UTS namespace) and provides DNS configuration.
rm -f "$ROOT/etc/hostname" "$ROOT/etc/resolv.conf"
# Each guest should get its own machine id; keep the file but empty.
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"

cat > "$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF

# Smaller image: no package lists, no cached .debs or apt binary caches,
# no build-time logs.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
       "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/archives/partial/* \
       "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old
mkdir -p "$ROOT/var/lib/apt/lists/partial"
rm -f "$ROOT"/var/log/bootstrap.log "$ROOT"/var/log/dpkg.log \
      "$ROOT"/var/log/alternatives.log "$ROOT"/var/log/apt/*.log \
      "$ROOT"/var/log/apt/eipp.log.xz
rm -rf "$ROOT/debootstrap"

# --- init ------------------------------------------------------------------
if [ "$INIT" = systemd ]; then
    # The same image boots as a vserver and as a domain, so nothing is masked: systemd's own conditions skip what a
    # container lacks (udev wants a writable /sys, the getty a /dev/tty0, module loading CAP_SYS_MODULE). The one unit
    # they let through is the trace file system, which a user namespace cannot mount: in a container it is skipped.
    mkdir -p "$ROOT/etc/systemd/system/sys-kernel-tracing.mount.d"
    printf '[Unit]\nConditionVirtualization=!container\n' > "$ROOT/etc/systemd/system/sys-kernel-tracing.mount.d/vserver.conf"
    [ -L "$ROOT/sbin/init" ] || die "systemd-sysv did not install /sbin/init"
    # A persistent journal (journald keeps it in /run unless this exists): a guest's log outlives its restarts, and
    # `journalctl -b -1` shows how the last stop went.
    mkdir -p "$ROOT/var/log/journal"
    exit 0
fi

# --- /sbin/init ------------------------------------------------------------
# /sbin is a merged-/usr symlink in bookworm, so this lands in /usr/sbin/init.
cat > "$ROOT/sbin/init" <<'EOF'
#!/bin/sh
# Minimal pid 1 for a Debian vserver guest (no systemd, no sysvinit).
# The host has already mounted /proc, /sys, /dev and set up the network.
#  - brings up lo, runs /etc/rc.local if executable;
#  - then idles in `wait`, which also reaps orphans re-parented to pid 1;
#  - SIGTERM/SIGINT/SIGPWR/SIGUSR1/SIGUSR2: runs /etc/rc.shutdown if
#    executable, SIGTERMs all other processes, waits up to ~1 s, exits 0.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

shutdown() {
    trap '' TERM INT PWR USR1 USR2
    [ -x /etc/rc.shutdown ] && /etc/rc.shutdown
    kill -TERM -1 2>/dev/null
    i=0
    while [ $i -lt 10 ] && kill -0 -1 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    exit 0
}
trap shutdown TERM INT PWR USR1 USR2

ip link set lo up 2>/dev/null || true
if [ -x /etc/rc.local ]; then
    /etc/rc.local
fi

while :; do
    sleep 3600 &
    wait $!
done
EOF
chmod 0755 "$ROOT/sbin/init"
