#!/bin/sh
# images/busybox/build.sh ROOTFS_DIR
#
# Builds the default vserver image: a complete, small system made only of
# Debian's statically linked busybox (package busybox-static, /bin/busybox).
#
# The caller creates ROOTFS_DIR (empty), runs this script, then makes the tree
# read-only and uses it as the shared overlayfs lower layer of many vservers.
# Therefore the image contains no per-guest state: no /etc/hostname (the host
# sets the UTS name), no device nodes (the host mounts /proc, /sys, /dev,
# /dev/pts, /dev/shm), and nothing that depends on the build time (all
# timestamps are clamped to SOURCE_DATE_EPOCH, default 0), so two builds from
# the same busybox binary are identical.
#
# Boot inside a vserver: /sbin/init (busybox init, pid 1 of the guest's pid
# namespace) -> /etc/inittab -> /etc/init.d/rcS (lo up, syslogd, rc.local).
# There are no ttys: no getty / askfirst shells; a vserver is entered with
# `vsctl enter`.
#
# Busybox 1.35 init as pid 1 of a pid namespace (measured):
#   SIGTERM          reboot:   runs ::shutdown:, SIGTERM to all, 1 s, SIGKILL
#                    to all, 1 s, reboot(2) -> the kernel kills init with
#                    SIGHUP; the parent sees "killed by SIGHUP" ~2.0 s later.
#   SIGUSR1, SIGPWR  halt:     same sequence, init killed by SIGINT, ~2.0 s.
#   SIGUSR2          poweroff: same sequence, init killed by SIGINT, ~2.0 s.
#   SIGINT           runs the ::ctrlaltdel: action only; init keeps running.
#   SIGQUIT          runs ::restart: (none here); SIGHUP re-reads inittab.
# init never exits with a status of its own on these paths.
set -eu

BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "images/busybox/build.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: build.sh ROOTFS_DIR"
ROOT=$1
[ -d "$ROOT" ] || die "ROOTFS_DIR '$ROOT' does not exist (the caller creates it)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install busybox-static (apt-get install busybox-static)"
# Debian's dynamically linked 'busybox' package also installs /bin/busybox;
# the image has no libc, so it must be the static one.
if ! "$BUSYBOX" --list-full >/dev/null 2>&1; then
    die "$BUSYBOX does not run: install busybox-static (apt-get install busybox-static)"
fi
if command -v ldd >/dev/null 2>&1 && ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked: install busybox-static (apt-get install busybox-static)"
fi
if [ -n "$(ls -A "$ROOT")" ]; then
    die "ROOTFS_DIR '$ROOT' is not empty"
fi

umask 022
cd "$ROOT"

# --- FHS skeleton --------------------------------------------------------
mkdir -p bin sbin usr/bin usr/sbin usr/share etc etc/init.d \
         proc sys dev run home mnt opt srv media root tmp \
         var/log var/lib var/spool var/cache var/tmp
chmod 0700 root
chmod 1777 tmp var/tmp
# /var/run and /var/lock are the usual compatibility links into /run.
ln -s ../run var/run
ln -s ../run/lock var/lock
# mount/df/umount read the mount table from here.
ln -s ../proc/self/mounts etc/mtab

# --- busybox and its applets ---------------------------------------------
cp "$BUSYBOX" bin/busybox
chmod 0755 bin/busybox
# `busybox --list-full` prints each applet at its canonical path
# (bin/ls, sbin/ip, usr/bin/which, ...).  Links are relative so the tree can
# also be inspected from the host.  "linuxrc" (initrd-only) is skipped.
"$BUSYBOX" --list-full | sort | while IFS= read -r applet; do
    case $applet in
        ""|bin/busybox|linuxrc|*/) continue ;;
        */*) ;;
        *) continue ;;
    esac
    dir=${applet%/*}
    case $dir in
        bin|sbin) target=../bin/busybox ;;
        usr/bin|usr/sbin) target=../../bin/busybox ;;
        *) die "unexpected applet path $applet" ;;
    esac
    [ -e "$applet" ] || [ -L "$applet" ] || ln -s "$target" "$applet"
done
[ -L sbin/init ] || die "busybox has no init applet"

# --- /etc ----------------------------------------------------------------
cat > etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > etc/group <<'EOF'
root:x:0:
daemon:x:1:
adm:x:4:
tty:x:5:
wheel:x:10:root
users:x:100:
nogroup:x:65534:
EOF
# '*' = no password: password login is impossible; `vsctl enter` does not
# need one.
cat > etc/shadow <<'EOF'
root:*:0:0:99999:7:::
daemon:*:0:0:99999:7:::
nobody:*:0:0:99999:7:::
EOF
chmod 0640 etc/shadow

cat > etc/hosts <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF

cat > etc/shells <<'EOF'
/bin/sh
/bin/ash
EOF

bbver=$("$BUSYBOX" 2>/dev/null | sed -n '1s/^BusyBox v\([^ ]*\).*/\1/p')
cat > etc/os-release <<EOF
NAME="BusyBox"
ID=busybox
VERSION_ID="${bbver:-unknown}"
PRETTY_NAME="BusyBox ${bbver:-} vserver image"
EOF

cat > etc/profile <<'EOF'
# /etc/profile: login shell setup (busybox ash)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=${HOME:-/root}
export PAGER=${PAGER:-less}
[ -n "${TERM:-}" ] || export TERM=linux
if [ "$(id -u)" = 0 ]; then
    PS1='\u@\h:\w# '
else
    PS1='\u@\h:\w$ '
fi
export PS1
umask 022
for f in /etc/profile.d/*.sh; do
    [ -r "$f" ] && . "$f"
done
unset f
EOF
mkdir -p etc/profile.d

# inittab for a server container: no ttys, no respawning shells.
cat > etc/inittab <<'EOF'
# /etc/inittab (busybox init) for a vserver guest.
# No getty/askfirst lines: a vserver has no ttys, it is entered with
# `vsctl enter`.
::sysinit:/etc/init.d/rcS
# SIGINT to init (ctrl-alt-del) does nothing harmful: it only logs.
::ctrlaltdel:/usr/bin/logger -p daemon.notice "ctrl-alt-del ignored"
# Runs before init sends SIGTERM (then SIGKILL) to everything; keep it quick.
::shutdown:/etc/init.d/rcK
EOF

cat > etc/init.d/rcS <<'EOF'
#!/bin/sh
# Guest boot script (run once by busybox init).  The host has already
# mounted /proc, /sys and /dev (incl. /dev/pts, /dev/shm); mount nothing here.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
# One line on the console (a domain's serial console, a vserver's console.log):
# the guest's own init has taken over.
echo "busybox init: /etc/init.d/rcS starting on $(hostname)"
ip link set lo up 2>/dev/null || true
# A running daemon; logs to /var/log/messages (in the guest's upper layer).
syslogd 2>/dev/null || true
if [ -x /etc/rc.local ]; then
    /etc/rc.local
fi
exit 0
EOF
chmod 0755 etc/init.d/rcS

cat > etc/init.d/rcK <<'EOF'
#!/bin/sh
# Guest shutdown script (busybox init ::shutdown:).  Must stay quick: init
# sends SIGTERM, waits 1 s, then SIGKILL to all processes right after it.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
if [ -x /etc/rc.shutdown ]; then
    /etc/rc.shutdown
fi
exit 0
EOF
chmod 0755 etc/init.d/rcK

# --- determinism ---------------------------------------------------------
# Clamp all timestamps (files, dirs and symlinks themselves).
epoch=${SOURCE_DATE_EPOCH:-0}
find . -depth -exec touch -h -d "@$epoch" {} +
