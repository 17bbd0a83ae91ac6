#!/bin/sh
# images/kernel/build.sh OUTDIR
#
# Builds what a vserver domain (a full VM under QEMU) boots: Debian's "cloud"
# kernel plus a tiny busybox initramfs that loads the virtio drivers and
# switches to the domain's root disk.
#
# Steps:
#   1. Pick the kernel package from the machine's apt configuration:
#      $KERNEL_PACKAGE if set, else the dependency of the metapackage
#      linux-image-cloud-amd64 (its "-unsigned" twin when that exists; the
#      content is the same minus the Secure Boot signature), else the newest
#      linux-image-*-cloud-amd64-unsigned by version. `apt-get update` runs
#      only when none is found. $KERNEL_DEB=/path/to.deb skips apt entirely.
#      The .deb is fetched with `apt-get download` and unpacked with
#      `dpkg-deb -x` into a temporary tree: it is never installed.
#   2. Extract the uncompressed kernel ELF from the bzImage. The boot
#      protocol header gives the payload's place (setup_sects at 0x1f1,
#      payload_offset/payload_length at 0x248/0x24c, relative to the end of
#      the real-mode setup); the payload's magic bytes tell the compressor
#      (Debian 12's cloud kernel: LZ4 legacy frames). The kernel build
#      appends the uncompressed size as a little-endian u32; it is cut off
#      before decompressing and then compared with the result. The result
#      must be an ELF carrying the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY,
#      type 0x12), which is what lets QEMU's -kernel boot it directly
#      (microvm, or pc/q35) without the bzImage's real-mode decompressor.
#   3. Build a newc cpio initramfs (gzip -n) from the static busybox, the
#      modules listed in $MODULES with their dependencies in load order
#      (`depmod -b` + `modprobe --show-depends -d`, built-ins are skipped),
#      and an /init script (see init below).
#
# Output (OUTDIR is created if needed, files in it are overwritten):
#   vmlinux       uncompressed ELF kernel with the PVH note (boot this)
#   vmlinuz       the original bzImage (for machines/loaders that want it)
#   config-VER    the kernel's .config
#   version       the kernel release string (`uname -r` in the guest)
#   package       "<package> <version>" of the .deb used
#   modules       the modules in the initramfs, in load order
#   features      what the initramfs can do beyond booting ("hold dns routed")
#   initrd.img    the initramfs
#
# The initramfs' /init understands these kernel command line parameters:
#   root=DEV|TAG      /dev/vda, LABEL=x, UUID=x, or a virtiofs tag
#   rootfstype=TYPE   default ext4
#   rootflags=OPTS    extra mount options
#   ro | rw           default ro, like the kernel
#   rootwait=SECONDS  how long to wait for a /dev/* root to appear (default 10)
#   init=PATH         default /sbin/init; arguments the kernel passes to
#                     /init (words of the command line without '=') are
#                     passed on, e.g. init=/bin/sh -c "echo hi; poweroff -f"
#   vserver.debug     drop to a shell instead of powering off on failure
#   vserver.hostname=NAME         the guest's hostname
#   vserver.ip=A.B.C.D/PREFIX     address of eth0 (virtio-net); lo is always up
#   vserver.gw=A.B.C.D            default route via eth0 (needs vserver.ip); with
#                                 a /32 address (a public address the host routes
#                                 to the guest) the gateway first gets a link route
#                                 on eth0 and the default route says src A.B.C.D
#   vserver.dns=A,B,...           write the root's /etc/resolv.conf: the header
#                                 line, "nameserver A" for each (none if empty),
#                                 then "search D1 D2" from vserver.search=D1,D2;
#                                 an old /etc/resolv.conf (file or symlink) is
#                                 removed first, never written through, and /etc
#                                 may not be a symlink. Without vserver.dns the
#                                 guest's own file is left alone
#   vserver.hold                  after the modules, say "ready" on the virtio-serial
#                                 port org.vserver.hold.0 and wait for "go" there
#                                 before the hostname, network and root (a
#                                 promotion boots the domain while the vserver
#                                 it replaces still serves)
# It mounts /proc, /sys and /dev (devtmpfs), insmods the modules, prints
# "vserver-initramfs: modules loaded", mounts devpts on /dev/pts and tmpfs on
# /dev/shm, sets the hostname and network ("vserver-initramfs: network eth0
# ..."), mounts the root on /newroot, writes its /etc/resolv.conf
# ("vserver-initramfs: resolv.conf ..."), moves /proc /sys /dev there, starts the
# guest agent /bin/vsguest (vsguest.c, compiled static here) chrooted into
# /newroot ("vserver-initramfs: guest agent started") and execs
# `switch_root /newroot INIT ARGS...`.
# On any failure it prints "vserver-initramfs: ERROR: ..." and powers off.
#
# Reproducibility: file times are clamped to SOURCE_DATE_EPOCH (default 0),
# owners are 0:0, the archive is sorted and gzip stores no name/time, so the
# same .deb and busybox give the same initrd.img.
#
# Needs: apt-get, dpkg-deb, kmod (depmod, modprobe), lz4/xz/zstd/gzip (as the
# kernel needs), readelf (binutils), busybox-static, cpio (GNU, for
# --reproducible; busybox cpio is the fallback), gcc + libc6-dev (static glibc)
# for the guest agent ($CC overrides gcc).
set -eu

BUSYBOX=${BUSYBOX:-/bin/busybox}
# button: the ACPI power button (microvm's GED notifies it on QMP system_powerdown); evdev: its /dev/input/event*
# node, which the guest agent watches for KEY_POWER.
MODULES=${MODULES:-"virtio_mmio virtio_pci virtio_blk virtio_net virtio_console virtio_balloon virtio_rng vmw_vsock_virtio_transport ext4 overlay fuse virtiofs button evdev"}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export PATH="$PATH:/usr/sbin:/sbin"

me=images/kernel/build.sh
die() { echo "$me: $*" >&2; exit 1; }
say() { echo "$me: $*"; }

[ $# -eq 1 ] || die "usage: build.sh OUTDIR"
OUT=$1
for t in apt-cache apt-get dpkg-deb depmod modprobe readelf od gzip; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' not found (make deps installs it)"
done
CC=${CC:-gcc}
command -v "$CC" >/dev/null 2>&1 || die "'$CC' not found: the guest agent (vsguest.c) is compiled with it (make deps installs gcc and libc6-dev)"
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install busybox-static"
if command -v ldd >/dev/null 2>&1 && ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked: install busybox-static"
fi

start=$(date +%s.%N)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/vserver-kernel.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

# --- 1. the package --------------------------------------------------------
# Prints the package name to use, or nothing.
pick_package() {
    if [ -n "${KERNEL_PACKAGE:-}" ]; then
        apt-cache show "$KERNEL_PACKAGE" >/dev/null 2>&1 && echo "$KERNEL_PACKAGE"
        return 0
    fi
    dep=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
          sed -n 's/^ *Depends: *\(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -n 1)
    if [ -n "$dep" ]; then
        for p in "$dep-unsigned" "$dep"; do
            if apt-cache show "$p" >/dev/null 2>&1; then echo "$p"; return 0; fi
        done
    fi
    apt-cache pkgnames linux-image- 2>/dev/null |
        grep -E '^linux-image-[0-9].*-cloud-amd64-unsigned$' | sort -V | tail -n 1
}

mkdir "$TMP/deb" "$TMP/tree"
if [ -n "${KERNEL_DEB:-}" ]; then
    [ -f "$KERNEL_DEB" ] || die "KERNEL_DEB '$KERNEL_DEB' does not exist"
    deb=$KERNEL_DEB
    say "using $deb"
else
    pkg=$(pick_package)
    if [ -z "$pkg" ]; then
        say "no cloud kernel package in the apt cache; running apt-get update"
        apt-get update -q >/dev/null 2>&1 || true
        pkg=$(pick_package)
    fi
    [ -n "$pkg" ] || die "no kernel package found in the apt configuration (wanted ${KERNEL_PACKAGE:-linux-image-cloud-amd64's dependency or linux-image-*-cloud-amd64-unsigned})"
    say "downloading $pkg ($(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: *//p'))"
    # The download dir belongs to root (mktemp -d); let apt fetch as root
    # instead of the _apt sandbox user rather than print a warning.
    (cd "$TMP/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null) ||
        die "apt-get download $pkg failed"
    deb=$(ls "$TMP"/deb/*.deb)
fi
dpkg-deb -x "$deb" "$TMP/tree"
pkgline="$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
say "unpacked $pkgline"

set -- "$TMP"/tree/boot/vmlinuz-*
[ $# -eq 1 ] && [ -f "$1" ] || die "expected exactly one boot/vmlinuz-* in the package"
VMLINUZ=$1
VERSION=${VMLINUZ##*/vmlinuz-}
[ -d "$TMP/tree/lib/modules/$VERSION" ] || die "no lib/modules/$VERSION in the package"

# --- 2. vmlinux out of the bzImage ----------------------------------------
u8()  { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
[ "$(od -An -c -j $((0x202)) -N4 "$VMLINUZ" | tr -d ' ')" = HdrS ] ||
    die "$VMLINUZ is not a bzImage (no HdrS boot header)"
setup_sects=$(u8 "$VMLINUZ" $((0x1f1)))
[ "$setup_sects" -ne 0 ] || setup_sects=4
payload_offset=$(u32 "$VMLINUZ" $((0x248)))
payload_length=$(u32 "$VMLINUZ" $((0x24c)))
start_byte=$(( (setup_sects + 1) * 512 + payload_offset ))
tail -c +$((start_byte + 1)) "$VMLINUZ" | head -c "$payload_length" > "$TMP/payload"
[ "$(wc -c < "$TMP/payload")" -eq "$payload_length" ] || die "bzImage payload is truncated"
# Last 4 bytes: the uncompressed size, appended by the kernel's build.
want_size=$(u32 "$TMP/payload" $((payload_length - 4)))
head -c $((payload_length - 4)) "$TMP/payload" > "$TMP/payload.z"
magic=$(od -An -tx1 -N6 "$TMP/payload.z" | tr -d ' \n')
case $magic in
    1f8b*)         comp=gzip;  decomp="gzip -dc" ;;
    fd377a585a00)  comp=xz;    decomp="xz -dc" ;;
    28b52ffd*)     comp=zstd;  decomp="zstd -dcq" ;;
    02214c18*)     comp=lz4;   decomp="lz4 -dcq" ;;
    5d0000*)       comp=lzma;  decomp="xz -dc --format=lzma" ;;
    425a68*)       comp=bzip2; decomp="bzip2 -dc" ;;
    *) die "unknown bzImage payload compression (magic $magic)" ;;
esac
command -v "${decomp%% *}" >/dev/null 2>&1 || die "the kernel is $comp-compressed: install ${decomp%% *}"
$decomp < "$TMP/payload.z" > "$TMP/vmlinux" || die "$comp decompression of the bzImage payload failed"
got_size=$(wc -c < "$TMP/vmlinux")
[ "$got_size" -eq "$want_size" ] || die "vmlinux is $got_size bytes, the bzImage says $want_size"
[ "$(od -An -c -N4 "$TMP/vmlinux" | tr -d ' ')" = 177ELF ] || die "decompressed payload is not an ELF"
# readelf prints the Xen notes as "Xen  0x... Unknown note type: (0x00000012)"
# (older/newer binutils may name it); PHYS32_ENTRY is the PVH entry point.
readelf -n "$TMP/vmlinux" |
    grep -Eq '^ *Xen .*(0x00000012|PHYS32_ENTRY)' || die "vmlinux has no Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY): it cannot be booted with -kernel as an ELF"
say "vmlinux: $comp payload, $got_size bytes, PVH entry note present"

# --- 3. initramfs ------------------------------------------------------------
depmod -b "$TMP/tree" "$VERSION"
mkdir "$TMP/empty.d"
: > "$TMP/order"
for m in $MODULES; do
    # -C: ignore the host's modprobe.d (options, blacklists, install hooks).
    modprobe -C "$TMP/empty.d" --show-depends -d "$TMP/tree" -S "$VERSION" "$m" > "$TMP/dep" ||
        die "modprobe cannot resolve module '$m' in $pkgline"
    while read -r kind path _; do
        case $kind in
            insmod) grep -qxF "$path" "$TMP/order" || echo "$path" >> "$TMP/order" ;;
            builtin) ;;
            *) die "unexpected modprobe output for '$m': $kind $path" ;;
        esac
    done < "$TMP/dep"
done

IR=$TMP/initramfs
mkdir -p "$IR/bin" "$IR/dev" "$IR/proc" "$IR/sys" "$IR/newroot" "$IR/lib/modules"
cp "$BUSYBOX" "$IR/bin/busybox"
"$CC" -static -Os -Wall -Wextra -Werror -o "$IR/bin/vsguest" "$HERE/vsguest.c" ||
    die "compiling the guest agent $HERE/vsguest.c failed (static glibc: install libc6-dev)"
strip "$IR/bin/vsguest" 2>/dev/null || true
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || [ -e "$IR/bin/$a" ] || ln -s busybox "$IR/bin/$a"
done
ln -s bin "$IR/sbin"
: > "$TMP/names"
while read -r path; do
    name=${path##*/}
    case $name in
        *.ko)     cp "$path" "$IR/lib/modules/$name" ;;
        *.ko.xz)  name=${name%.xz};  xz -dc "$path" > "$IR/lib/modules/$name" ;;
        *.ko.zst) name=${name%.zst}; zstd -dcq "$path" > "$IR/lib/modules/$name" ;;
        *.ko.gz)  name=${name%.gz};  gzip -dc "$path" > "$IR/lib/modules/$name" ;;
        *) die "unexpected module file $path" ;;
    esac
    echo "$name" >> "$IR/lib/modules/load-order"
    echo "${name%.ko}" >> "$TMP/names"
done < "$TMP/order"
echo "$VERSION" > "$IR/lib/modules/version"

cat > "$IR/init" <<'EOF'
#!/bin/sh
# vserver initramfs /init (written by images/kernel/build.sh).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

NL='
'
debug=
fail() {
    echo "vserver-initramfs: ERROR: $*"
    if [ -n "$debug" ]; then echo "vserver-initramfs: vserver.debug: starting a shell"; exec sh; fi
    echo "vserver-initramfs: powering off"
    sync
    poweroff -f
    sleep 5
    exit 1
}

root= fstype=ext4 flags= mode=ro wait=10 init=/sbin/init ip= gw= hostname= hold= resolv= dns= search=
set -f
for arg in $(cat /proc/cmdline); do
    case $arg in
        --) break ;;
        root=*) root=${arg#root=} ;;
        rootfstype=*) fstype=${arg#rootfstype=} ;;
        rootflags=*) flags=${arg#rootflags=} ;;
        rootwait=*) wait=${arg#rootwait=} ;;
        ro) mode=ro ;;
        rw) mode=rw ;;
        init=*) init=${arg#init=} ;;
        vserver.debug) debug=1 ;;
        vserver.hold) hold=1 ;;
        vserver.ip=*) ip=${arg#vserver.ip=} ;;
        vserver.gw=*) gw=${arg#vserver.gw=} ;;
        vserver.hostname=*) hostname=${arg#vserver.hostname=} ;;
        vserver.dns=*) resolv=1 dns=${arg#vserver.dns=} ;;
        vserver.search=*) search=${arg#vserver.search=} ;;
    esac
done
set +f

while read -r m; do
    insmod "/lib/modules/$m" || fail "insmod $m failed"
done < /lib/modules/load-order
echo "vserver-initramfs: modules loaded"

# /dev/pts (for the guest agent's tty sessions and anything else) and /dev/shm ride along when /dev is moved.
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts || fail "cannot mount devpts on /dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || fail "cannot mount tmpfs on /dev/shm"

# vserver.hold (a promotion's cut-over): the kernel is up and the modules are in while the vserver this domain
# replaces still serves; say so on the virtio-serial port org.vserver.hold.0 and wait there for the host's "go" before
# taking the vserver's address and files. While no host is connected the port reads end of file: say it again.
if [ -n "$hold" ]; then
    port=
    n=0
    while [ -z "$port" ]; do
        for f in /sys/class/virtio-ports/*/name; do
            [ "$(cat "$f" 2>/dev/null)" = org.vserver.hold.0 ] || continue
            port=${f%/name}
            port=/dev/${port##*/}
        done
        [ -n "$port" ] && [ -e "$port" ] && break
        port=
        [ "$n" -lt 100 ] || fail "vserver.hold: no virtio-serial port org.vserver.hold.0 within 10s"
        sleep 0.1
        n=$((n + 1))
    done
    echo "vserver-initramfs: held: waiting for the host's go on $port"
    word=
    until [ "$word" = go ]; do
        word=
        exec 3<>"$port" || fail "vserver.hold: cannot open $port"
        if echo ready >&3 2>/dev/null; then read -r word <&3 || word=; fi
        exec 3<&-
        [ "$word" = go ] || sleep 0.05
    done
    echo "vserver-initramfs: released"
fi

if [ -n "$hostname" ]; then hostname "$hostname" || fail "vserver.hostname=$hostname: cannot set it"; fi
ip link set lo up || fail "cannot bring up lo"
if [ -n "$ip" ]; then
    case $ip in
        *.*.*.*/*) ;;
        *) fail "vserver.ip=$ip: expected A.B.C.D/PREFIX" ;;
    esac
    n=0
    while [ ! -e /sys/class/net/eth0 ]; do
        [ "$n" -lt 50 ] || fail "vserver.ip=$ip: no eth0 (virtio-net device) within 5s"
        sleep 0.1
        n=$((n + 1))
    done
    ip addr add "$ip" dev eth0 || fail "vserver.ip=$ip: cannot add the address to eth0"
    ip link set eth0 up || fail "cannot bring up eth0"
    if [ -n "$gw" ]; then
        case $ip in
            # A public address the host routes here: the gateway lies on no prefix of eth0, and the kernel refuses a
            # default route through a gateway no route says is on-link.
            */32)
                ip route add "$gw" dev eth0 || fail "vserver.gw=$gw: cannot add the link route to the gateway"
                ip route add default via "$gw" dev eth0 src "${ip%/32}" || fail "vserver.gw=$gw: cannot add the default route" ;;
            *)
                ip route add default via "$gw" dev eth0 || fail "vserver.gw=$gw: cannot add the default route" ;;
        esac
    fi
    echo "vserver-initramfs: network eth0 $ip${gw:+ via $gw}"
elif [ -n "$gw" ]; then
    fail "vserver.gw=$gw without vserver.ip"
fi

[ -n "$root" ] || fail "no root= on the kernel command line"
case $root in
    /dev/*)
        n=0
        while [ ! -b "$root" ]; do
            [ "$n" -lt $((wait * 10)) ] || fail "root device $root did not appear within ${wait}s"
            sleep 0.1
            n=$((n + 1))
        done ;;
esac
opts=$mode${flags:+,$flags}
mount -t "$fstype" -o "$opts" "$root" /newroot ||
    fail "cannot mount root=$root (rootfstype=$fstype, options $opts)"
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || fail "init $init not found on root=$root"
# vserver.dns: the same text as a vserver's (ResolvConf.Render in src/Vserver.Isolation/Network/ResolvConf.cs). The
# guest owns its root: an old resolv.conf, maybe a symlink (to systemd-resolved's stub, or anywhere), is removed, never
# written through, and /etc may not be a symlink, which would resolve here, in the initramfs.
if [ -n "$resolv" ]; then
    conf=/newroot/etc/resolv.conf
    [ ! -L /newroot/etc ] || fail "vserver.dns: /etc on root=$root is a symbolic link; not writing resolv.conf through it"
    [ -d /newroot/etc ] || mkdir -m 0755 /newroot/etc || fail "vserver.dns: cannot create /etc on root=$root"
    rm -f "$conf" || fail "vserver.dns: cannot remove the old /etc/resolv.conf on root=$root"
    # Built whole first, so one write's status says whether all of it reached the disk.
    text="# written by vserver at each start; create the guest with --dns none to keep your own"
    set -f
    for s in $(echo "$dns" | tr , ' '); do text="$text${NL}nameserver $s"; done
    set +f
    [ -z "$search" ] || text="$text${NL}search $(echo "$search" | tr , ' ')"
    printf '%s\n' "$text" > "$conf" || fail "vserver.dns: cannot write /etc/resolv.conf on root=$root"
    chmod 0644 "$conf" || fail "vserver.dns: cannot chmod /etc/resolv.conf on root=$root"
    echo "vserver-initramfs: resolv.conf nameservers ${dns:-none}${search:+ search $search}"
fi
for d in dev proc sys; do
    if [ -d "/newroot/$d" ]; then mount --move "/$d" "/newroot/$d"; else umount -l "/$d"; fi
done
# The agent chroots into /newroot before it returns, so it stays in the guest's root when switch_root moves that
# mount onto / and empties the initramfs; it is a daemon of its own (double fork, setsid), not a child of init.
if /bin/vsguest /newroot; then
    echo "vserver-initramfs: guest agent started"
else
    echo "vserver-initramfs: WARNING: the guest agent did not start"
fi
echo "vserver-initramfs: switching to $root ($fstype, $opts), init $init"
exec switch_root /newroot "$init" "$@"
EOF
chmod 0755 "$IR/init"

find "$IR" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
# GNU cpio's --reproducible renumbers inodes and zeroes device numbers; busybox
# cpio writes the staging tree's real inode numbers (fine, not byte-identical).
if command -v cpio >/dev/null 2>&1 && cpio --help 2>/dev/null | grep -q -- --reproducible; then
    set -- cpio -o -H newc -R 0:0 --reproducible --quiet
else
    say "GNU cpio not found: using busybox cpio (initrd.img will not be byte-reproducible)"
    set -- "$BUSYBOX" cpio -o -H newc -R 0:0
fi
(cd "$IR" && find . -mindepth 1 | LC_ALL=C sort | "$@" 2>/dev/null) |
    gzip -n -9 > "$TMP/initrd.img"

# --- output ------------------------------------------------------------------
cp "$TMP/vmlinux" "$OUT/vmlinux"
cp "$VMLINUZ" "$OUT/vmlinuz"
for c in "$TMP"/tree/boot/config-*; do [ -f "$c" ] && cp "$c" "$OUT/"; done
echo "$VERSION" > "$OUT/version"
echo "$pkgline" > "$OUT/package"
cp "$TMP/names" "$OUT/modules"
# What this initramfs can do beyond booting; the agent reads it (hold: vserver.hold; dns: vserver.dns and
# vserver.search; routed: a /32 vserver.ip with its gateway on-link). An older initramfs ignores vserver.dns and
# fails to boot with a /32 address (its default route has no on-link gateway).
echo hold dns routed > "$OUT/features"
mv "$TMP/initrd.img" "$OUT/initrd.img"
end=$(date +%s.%N)
say "kernel $VERSION from $pkgline"
say "modules (load order): $(tr '\n' ' ' < "$TMP/names")"
say "wrote $OUT: vmlinux ($(wc -c < "$OUT/vmlinux") B), vmlinuz, initrd.img ($(wc -c < "$OUT/initrd.img") B), version, package, modules"
say "done in $(awk "BEGIN{printf \"%.1f\", $end - $start}") s"
