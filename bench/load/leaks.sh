# bench/load/leaks.sh: what a private agent (bench/lib.sh) must not leave on the host once all its guests are gone.
# Sourced after bench/lib.sh (uses WORK, ID, BRIDGE, VSERVER_ROOT, VSERVER_RUN and vsctl).

# The host interface names the agent derives for a guest: veth "vs" and tap "vt" + 11 hex digits of
# sha256(state root NUL name) (GuestStore; TestHost.HostVeth does the same).
bench_guest_links() {  # NAME
    local h
    h=$(printf '%s\0%s' "$VSERVER_ROOT" "$1" | sha256sum)
    echo "vs${h:0:11} vt${h:0:11}"
}

# Prints one line per leak ("leak: WHAT") and returns 1 if there was any. NAMES_FILE (optional) lists every guest
# name the caller used, one per line: their veths and taps must be gone even if they left the bridge.
bench_leaks() {  # [NAMES_FILE]
    local names=${1:-} leaks=0 line g p cmd link
    leak() { echo "leak: $*"; leaks=$((leaks + 1)); }

    # Guests the agent still knows (the table's header is the only line of an empty list).
    while read -r line; do leak "guest still listed: $line"; done < <(vsctl list 2>&1 | awk 'NR > 1')
    # Cgroups under the agent's parent, in every v1 hierarchy or the v2 tree; the parent itself may stay.
    for g in /sys/fs/cgroup/*/"$ID" /sys/fs/cgroup/"$ID"; do
        [ -d "$g" ] || continue
        while read -r line; do leak "cgroup $line"; done < <(find "$g" -mindepth 1 -type d)
    done
    # Anything still plugged into the agent's bridge, and every veth or tap named after one of the guests.
    while read -r line; do leak "link on $BRIDGE: $line"; done < <(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }')
    if [ -n "$names" ] && [ -s "$names" ]; then
        while read -r g; do
            for link in $(bench_guest_links "$g"); do
                [ -e "/sys/class/net/$link" ] && leak "interface $link of guest $g"
            done
        done < "$names"
    fi
    # Mounts under the state or run root, in this (the agent's) mount namespace.
    while read -r line; do leak "mount $line"; done < <(
        awk -v r="$VSERVER_ROOT/" -v u="$VSERVER_RUN/" 'index($5, r) == 1 || index($5, u) == 1 { print $5 " (" $9 ")" }' /proc/self/mountinfo)
    # vsinit (monitors, exec helpers), QEMU and virtiofsd processes whose command line names one of the roots.
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null < "$p/cmdline") || continue
        case $cmd in
            *vsinit*"$WORK/"* | *qemu-system*"$WORK/"* | *virtiofsd*"$WORK/"*) leak "process ${p#/proc/}: $cmd" ;;
        esac
    done
    # Loop devices backing a file under the work dir (disk quota images).
    while read -r line; do leak "loop device $line"; done < <(losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v w="$WORK/" 'index($2, w) == 1')
    # Guest directories, dot-named ones (half-destroyed) included.
    for g in "$VSERVER_ROOT/guests" "$VSERVER_RUN/guests"; do
        [ -d "$g" ] || continue
        while read -r line; do leak "directory $line"; done < <(find "$g" -mindepth 1 -maxdepth 1)
    done
    [ "$leaks" = 0 ]
}
