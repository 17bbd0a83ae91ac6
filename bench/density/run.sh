#!/usr/bin/env bash
# bench/density/run.sh: how many idle guests fit in this machine's memory?
# In one run, side by side:
#   N vservers        `vsctl create vI` + `vsctl start vI` through a private agent
#                     (unprivileged, the default), busybox /sbin/init of the busybox image
#   N lxc containers  lxc-create -t none -f CONF + lxc-start -d, privileged, the same
#                     busybox init and rcS, rootfs = an overlay of their own over the SAME
#                     lower dir as the vservers' (the agent's images/busybox/rootfs), a veth
#                     on a bridge this script creates (vservers have one on the agent's)
#   N_DOMAINS domains `vsctl create dI --kind domain --memory DOMAIN_MEMORY` + start
# then, when every guest's rcS has run and its processes sleep, SETTLE seconds of idle, and
# the PSS of each guest from /proc/PID/smaps_rollup (never from the agent's own numbers):
#   vserver  init (`vsctl list -f json` initPid) and its descendants; monitor: init's parent,
#            the `vsinit start` process
#   lxc      init (`lxc-info -pH`) and its descendants; monitor: init's parent,
#            the `[lxc monitor]` process
#   domain   its QEMU process (initPid of a domain); no monitor of its own
# The table: per kind the median PSS of the guest's processes, of its monitor and of both, the
# private part of both (Private_Clean + Private_Dirty), guests per GiB (of both), and the ratios
# vserver/lxc and domain/vserver.
# Then the LXC containers and domains go, the N vservers are measured alone, more vservers
# are started up to N_LARGE and measured again (does memory per vserver stay flat?), and
# the largest N of idle vservers within the pool's capacity is printed, with the limits
# other than memory that come first.
#
# needs: lxc iproute2 curl util-linux + qemu-system-x86 (N_DOMAINS > 0) + bin/vserverd
#        bin/vsctl bin/vsinit (make build).  Root.  Packages come from the Makefile.
#
# Environment: N (10), N_DOMAINS (3), N_LARGE (200), SETTLE (seconds idle before a
# measurement, 5), TIMEOUT (seconds for each wait, 180), JOBS (vsctl calls in parallel for the
# large batch, 2), DOMAIN_MEMORY (256M).
set -eEuo pipefail
trap 'echo "bench/density/run.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

N=${N:-10}
N_DOMAINS=${N_DOMAINS:-3}
N_LARGE=${N_LARGE:-200}
SETTLE=${SETTLE:-5}
TIMEOUT=${TIMEOUT:-180}
JOBS=${JOBS:-2}
DOMAIN_MEMORY=${DOMAIN_MEMORY:-256M}
MARKER="busybox init: /etc/init.d/rcS starting on"
# A Linux bridge has BR_MAX_PORTS = 1024 port numbers and never hands out port 0
# (net/bridge/br_private.h, br_if.c); the 1024th port is refused with EXFULL.
BRIDGE_PORTS=1023

BENCH=bench/density
. "$(dirname "$0")/../preamble.sh"
case $N$N_DOMAINS$N_LARGE$SETTLE$TIMEOUT$JOBS in *[!0-9]*) die "N, N_DOMAINS, N_LARGE, SETTLE, TIMEOUT and JOBS must be whole numbers" ;; esac
[ "$N" -ge 1 ] && [ "$JOBS" -ge 1 ] || die "N and JOBS must be 1 or more"
[ "$N_LARGE" -le 65000 ] || die "N_LARGE must be at most 65000 (the bench agent's /16 subnet)"
need=(lxc-create lxc-start lxc-stop lxc-destroy lxc-info ip curl awk mountpoint)
[ "$N_DOMAINS" = 0 ] || need+=(qemu-system-x86_64)
bench_require "vservers, lxc containers, domains, bridges, cgroups" "${need[@]}"

# --- work dir and cleanup ---------------------------------------------------
WORK=$(mktemp -d /tmp/vsdensity.XXXXXX)
ID=vsdensity-$$                  # cgroup parent; lxc names start with it
BRIDGE=vsdn$$                    # the agent's bridge (<= 15 chars)
LXC_BRIDGE=vsdnl$$               # the lxc containers' bridge, made by this script
AGENT_PID=""
# A /16: room for N_LARGE vservers and the domains (the default /24s of the other benches hold 253).
export VSERVER_ROOT=$WORK/root VSERVER_RUN=$WORK/run VSERVER_BRIDGE=$BRIDGE \
       VSERVER_SUBNET=10.253.0.0/16 VSERVER_CGROUP_PARENT=$ID
# vsctl must never start an agent of its own (one we would not know to kill).
export VSCTL_NO_AUTOSTART=1
SOCK=$VSERVER_RUN/agent.sock
LXC_P=$WORK/lxc                  # lxc-create -P: the containers' config dirs
LXC_NAMES=()                     # every lxc container created
BATCH=()                         # the pids of the large batch's background vsctl calls
mkdir -p "$LXC_P" "$WORK/ct" "$WORK/m"

vsctl() { "$BIN/vsctl" "$@"; }
api() { curl -sf --max-time 60 --unix-socket "$SOCK" -X "$1" "http://localhost$2"; }
# Every guest the private agent knows: all of them are this script's.
agent_guests() { api GET /v1/guests 2>/dev/null | grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'; }

# Stops and removes one lxc container: its own overlay is unmounted first, so that
# lxc-destroy (which deletes a dir rootfs) only ever sees the empty mount point.
lxc_remove() {  # NAME
    local root=$WORK/ct/$1/rootfs
    lxc-stop -n "$1" -P "$LXC_P" -k >/dev/null 2>&1
    if mountpoint -q "$root"; then umount "$root" || umount -l "$root"; fi
    mountpoint -q "$root" || lxc-destroy -n "$1" -P "$LXC_P" >/dev/null 2>&1
}

cleanup() {
    local rc=$? g m i p
    trap - EXIT INT TERM ERR
    set +e
    # The large batch's background calls first (each a subshell running vsctl), so that no guest is created
    # after the agent's guests are listed below.
    for p in "${BATCH[@]}"; do
        for i in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do kill -TERM "$i" 2>/dev/null; done
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${BATCH[@]}"; do wait "$p" 2>/dev/null; done
    if [ "$rc" != 0 ] && [ -s "$WORK/agent.log" ]; then
        echo "--- last lines of the agent's log ($WORK/agent.log):" >&2
        tail -n 15 "$WORK/agent.log" >&2
    fi
    [ "${#LXC_NAMES[@]}" = 0 ] || log "removing ${#LXC_NAMES[@]} lxc containers"
    for g in "${LXC_NAMES[@]}"; do lxc_remove "$g"; done
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        # Four DELETEs at a time; a second round for a create that was still in flight when the first listed.
        for i in 1 2; do
            g=$(agent_guests | wc -l)
            [ "$g" != 0 ] || break
            log "destroying $g guests"
            agent_guests | xargs -r -P 4 -I{} curl -s --max-time 60 --unix-socket "$SOCK" -X DELETE \
                "http://localhost/v1/guests/{}?force=true" -o /dev/null
        done
        kill -TERM "$AGENT_PID" 2>/dev/null
        for i in $(seq 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$AGENT_PID" 2>/dev/null
        wait "$AGENT_PID" 2>/dev/null
    fi
    # Whatever the agent could not destroy: vsinit monitors and QEMUs whose command line names our work dir
    # are guests of our agent; SIGKILL to a monitor's child (a guest's init) ends its whole pid namespace.
    for p in $(grep -l -F "$WORK/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
        case $(tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline") in
            *"vsinit start $WORK/"*)
                for i in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do kill -KILL "$i" 2>/dev/null; done
                kill -KILL "$p" 2>/dev/null ;;
            qemu-system*) kill -KILL "$p" 2>/dev/null ;;
        esac
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
    ip link show "$LXC_BRIDGE" >/dev/null 2>&1 && ip link del "$LXC_BRIDGE"
    # cgroup v1 hierarchies (/sys/fs/cgroup/*/ID) and a v2-only host (/sys/fs/cgroup/ID)
    for g in /sys/fs/cgroup/*/"$ID" /sys/fs/cgroup/"$ID"; do
        [ -d "$g" ] && find "$g" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    awk -v w="$WORK" '$2 == w || index($2, w "/") == 1 { print $2 }' /proc/self/mounts |
        sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$WORK"
    exit "$rc"
}
bench_on_exit cleanup

# --- the agent, the image, the kernel ---------------------------------------
log "starting a private vserverd (root $WORK, bridge $BRIDGE, subnet $VSERVER_SUBNET, cgroup parent $ID)"
mkdir -p "$VSERVER_ROOT" "$VSERVER_RUN"
"$BIN/vserverd" > "$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for i in $(seq 300); do
    [ -S "$SOCK" ] && api GET /v1/host >/dev/null 2>&1 && break
    kill -0 "$AGENT_PID" 2>/dev/null || die "vserverd exited during startup"
    sleep 0.1
done
[ -S "$SOCK" ] || die "vserverd did not open $SOCK within 30 s"
vsctl image build busybox >&2
# The image store keeps each image's tree at ROOT/images/NAME/rootfs: the vservers' lower layer.
LOWER=$VSERVER_ROOT/images/busybox/rootfs
[ -L "$LOWER/sbin/init" ] && [ -x "$LOWER/etc/init.d/rcS" ] || die "no busybox image tree at $LOWER"
if [ "$N_DOMAINS" -gt 0 ]; then
    log "building the domain kernel"
    vsctl kernel build default >&2
fi

# --- one guest's processes ----------------------------------------------------
# ps_table: "PID PPID STATE COMM" of every process (COMM with blanks as _).
ps_table() {
    # (a process may end between the glob and cat: not an error)
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
        rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
        comm = $0; sub(/^[0-9]+ \(/, "", comm); sub(/\) [^)]*$/, "", comm); gsub(/[ \t]/, "_", comm)
        print $1, f[2], f[1], comm }'
}
# guest_procs PSTABLE GUESTS: for each "KIND NAME INITPID" of GUESTS, one line
#   KIND NAME INITPID PARENT STATE NPROCS PID,PID,...
# with init and all its descendants; STATE is idle when all of them sleep and none is the rcS script
# (busybox init runs rcS as sysinit and waits for it), busy otherwise, gone when init is not there.
guest_procs() {
    awk 'NR == FNR { ppid[$1] = $2; st[$1] = $3; comm[$1] = $4; kids[$2] = kids[$2] " " $1; next }
        {
            if (!($3 in ppid)) { print $1, $2, $3, "-", "gone", 0, "-"; next }
            n = 1; q[1] = $3; idle = 1; list = ""
            for (i = 1; i <= n; i++) {
                p = q[i]; list = list (i > 1 ? "," : "") p
                if (st[p] != "S" || comm[p] == "rcS") idle = 0
                m = split(kids[p], c, " "); for (j = 1; j <= m; j++) q[++n] = c[j]
            }
            print $1, $2, $3, ppid[$3], (idle ? "idle" : "busy"), n, list
        }' "$1" "$2"
}
# mem_kb PID...: "PSS PRIVATE" in KiB, summed over them (private: Private_Clean + Private_Dirty, the pages
# only this process maps; PSS adds its share of every page it shares).
mem_kb() {
    local p files=()
    for p in "$@"; do files+=("/proc/$p/smaps_rollup"); done
    { cat "${files[@]}" 2>/dev/null || true; } |
        awk '$1 == "Pss:" { s += $2 } $1 ~ /^Private_(Clean|Dirty):$/ { q += $2 } END { print s + 0, q + 0 }'
}
cmdline() { tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline"; }
# prune_batch: keeps in BATCH only the calls that still run.
prune_batch() {
    local p live=()
    for p in "${BATCH[@]}"; do kill -0 "$p" 2>/dev/null && live+=("$p"); done
    BATCH=("${live[@]}")
}
console_of() {  # KIND NAME
    case $1 in
        lxc) echo "$WORK/ct/$2/console.log" ;;
        *) echo "$VSERVER_ROOT/guests/$2/console.log" ;;
    esac
}
hostname_of() { case $1 in lxc) echo "${2##*-}" ;; *) echo "$2" ;; esac; }

# guests_file FILE KIND...: "KIND NAME INITPID" of the running guests of those kinds.
guests_file() {
    local f=$1; shift
    : > "$f"
    local k
    for k in "$@"; do
        case $k in
            vserver|domain)
                # vsctl's JSON is indented: one member per line.
                vsctl list -f json | awk -v kind="$k" -F: '
                    /^    "name":/ { gsub(/[ ",]/, "", $2); name = $2 }
                    /^    "kind":/ { gsub(/[ ",]/, "", $2); gkind = $2 }
                    /^    "initPid":/ { gsub(/[ ,]/, "", $2); if (gkind == kind && $2 ~ /^[0-9]+$/) print kind, name, $2 }' >> "$f" ;;
            lxc)
                local g
                for g in "${LXC_NAMES[@]}"; do
                    echo "lxc $g $(lxc-info -n "$g" -P "$LXC_P" -pH)" >> "$f"
                done ;;
        esac
    done
}

# wait_idle FILE: until every guest of FILE has printed the rcS marker on its console and all its
# processes sleep (domains: the marker only; QEMU's vCPU threads never sleep under TCG), then SETTLE s.
wait_idle() {
    local f=$1 deadline=$((SECONDS + TIMEOUT)) kind name rest busy
    declare -A seen=()
    while :; do
        busy=""
        ps_table > "$WORK/ps"
        while read -r kind name _ _ state _; do
            if [ -z "${seen[$name]:-}" ]; then
                grep -qF "$MARKER $(hostname_of "$kind" "$name")" "$(console_of "$kind" "$name")" 2>/dev/null && seen[$name]=1
            fi
            [ -n "${seen[$name]:-}" ] || { busy="$busy $name(no marker)"; continue; }
            [ "$kind" = domain ] || [ "$state" = idle ] || busy="$busy $name($state)"
        done < <(guest_procs "$WORK/ps" "$f")
        [ -n "$busy" ] || break
        [ "$SECONDS" -lt "$deadline" ] || die "not idle after ${TIMEOUT}s:$(echo "$busy" | cut -c1-400)"
        sleep 0.5
    done
    sleep "$SETTLE"
}

# measure PHASE KIND...: one line per guest in $WORK/m/PHASE:
#   KIND NAME NPROCS GUEST_PSS GUEST_PRIVATE MONITOR_PSS MONITOR_PRIVATE   (KiB; a domain's monitor "- -")
# A vserver's monitor must be a `vsinit start`, an lxc container's an `[lxc monitor]`: anything else
# means the process tree is not what this bench assumes.
measure() {
    local phase=$1 kind name init parent state n list mon mkb; shift
    guests_file "$WORK/m/$phase.guests" "$@"
    wait_idle "$WORK/m/$phase.guests"
    ps_table > "$WORK/ps"
    : > "$WORK/m/$phase"
    while read -r kind name init parent state n list; do
        [ "$state" != gone ] || die "$kind $name: its init $init is gone"
        mon="" mkb="- -"
        case $kind in
            vserver) mon=$parent; case $(cmdline "$mon") in *"vsinit start "*) ;; *) die "$name: init's parent $mon is not vsinit: $(cmdline "$mon")" ;; esac ;;
            lxc) mon=$parent; case $(cmdline "$mon") in "[lxc monitor]"*) ;; *) die "$name: init's parent $mon is not lxc's monitor: $(cmdline "$mon")" ;; esac ;;
        esac
        [ -z "$mon" ] || mkb=$(mem_kb "$mon")
        # shellcheck disable=SC2086
        echo "$kind $name $n $(mem_kb ${list//,/ }) $mkb" >> "$WORK/m/$phase"
    done < <(guest_procs "$WORK/ps" "$WORK/m/$phase.guests")
}

# --- N vservers, N lxc containers, N_DOMAINS domains, side by side ---------------
# Domains first: their TCG boots (seconds each) overlap the rest.
for i in $(seq "$N_DOMAINS"); do
    vsctl create "d$i" --kind domain --memory "$DOMAIN_MEMORY" >&2 || die "vsctl create d$i failed"
    vsctl start "d$i" >&2 || die "vsctl start d$i failed"
done
log "$N vservers"
for i in $(seq "$N"); do
    vsctl create "v$i" >/dev/null || die "vsctl create v$i failed"
    vsctl start "v$i" >/dev/null || die "vsctl start v$i failed"
done

# LXC: privileged (no lxc.idmap: the image's lower dir is root-owned and would show as nobody's inside;
# a user namespace adds kernel objects, not pages of any process, so PSS does not see it).  The same init
# and rcS: lxc.init.cmd /sbin/init; CONSOLE=/dev/console makes busybox init (and so rcS's marker) write to
# the console LXC logs, as a vserver's console goes to its console.log.
log "$N lxc containers (bridge $LXC_BRIDGE)"
ip link add "$LXC_BRIDGE" type bridge
ip link set "$LXC_BRIDGE" up
for i in $(seq "$N"); do
    name=$ID-l$i d=$WORK/ct/$ID-l$i
    mkdir -p "$d/upper" "$d/work" "$d/rootfs"
    mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$d/upper,workdir=$d/work" "$d/rootfs"
    cat > "$d/config" <<EOF
lxc.uts.name = l$i
lxc.rootfs.path = dir:$d/rootfs
lxc.init.cmd = /sbin/init
lxc.environment = CONSOLE=/dev/console
lxc.net.0.type = veth
lxc.net.0.link = $LXC_BRIDGE
lxc.net.0.flags = up
lxc.mount.auto = proc:mixed sys:ro
lxc.autodev = 1
lxc.console.logfile = $d/console.log
lxc.log.file = $d/lxc.log
lxc.log.level = WARN
EOF
    LXC_NAMES+=("$name")
    lxc-create -n "$name" -P "$LXC_P" -t none -f "$d/config" >/dev/null
    lxc-start -n "$name" -P "$LXC_P" -d || { cat "$d/lxc.log" >&2; die "lxc-start $name failed"; }
done
KINDS=(vserver lxc)
[ "$N_DOMAINS" = 0 ] || KINDS+=(domain)
log "waiting until every guest is idle, then ${SETTLE}s"
measure side "${KINDS[@]}"

# --- the vservers alone, at N and at N_LARGE --------------------------------------
log "removing the lxc containers and domains"
for g in "${LXC_NAMES[@]}"; do lxc_remove "$g"; done
LXC_NAMES=()
for i in $(seq "$N_DOMAINS"); do vsctl destroy --force "d$i" >/dev/null; done
measure alone vserver

LARGE_NOTE=""
STARTED=$N
# meminfo: "MemAvailable KERNEL" in KiB; KERNEL = Slab + KernelStack + PageTables + Percpu, the kernel's own
# memory, which no process's PSS shows (namespaces, veths, cgroups, overlay mounts, page tables).
meminfo() {
    awk '$1 == "MemAvailable:" { a = $2 } $1 ~ /^(Slab|KernelStack|PageTables|Percpu):$/ { k += $2 }
         END { print a, k }' /proc/meminfo
}
if [ "$N_LARGE" -gt "$N" ]; then
    log "starting vservers $((N + 1))..$N_LARGE ($JOBS at a time)"
    AGENT_FDS_BEFORE=$(ls "/proc/$AGENT_PID/fd" | wc -l)
    read -r AVAIL_BEFORE KERNEL_BEFORE < <(meminfo)
    : > "$WORK/failed"
    for i in $(seq $((N + 1)) "$N_LARGE"); do
        [ ! -s "$WORK/failed" ] || break
        ( { vsctl create "v$i" && vsctl start "v$i"; } >/dev/null 2>"$WORK/err.$i" || echo "v$i" >> "$WORK/failed" ) &
        BATCH+=($!)
        # (not `jobs`: the agent is a job of this shell too)
        while prune_batch; [ "${#BATCH[@]}" -ge "$JOBS" ]; do wait -n "${BATCH[@]}" 2>/dev/null || true; done
    done
    for p in "${BATCH[@]}"; do wait "$p" 2>/dev/null || true; done
    BATCH=()
    if [ -s "$WORK/failed" ]; then
        f=$(head -n 1 "$WORK/failed")
        LARGE_NOTE="stopped adding vservers: $f failed: $(tr '\n' ' ' < "$WORK/err.${f#v}")"
        echo "bench/density: $LARGE_NOTE" >&2
    fi
    measure large vserver
    STARTED=$(wc -l < "$WORK/m/large")
    read -r AVAIL_AFTER KERNEL_AFTER < <(meminfo)
    AGENT_FDS_AFTER=$(ls "/proc/$AGENT_PID/fd" | wc -l)
fi
HOST_JSON=$(vsctl host -f json)

# --- table --------------------------------------------------------------------
# median PHASE KIND WHAT: the median over that phase's guests of a kind
median() {
    awk -v k="$2" -v w="$3" '$1 != k { next }
        w == "procs" { print $3 } w == "guest" { print $4 } w == "monitor" && $6 != "-" { print $6 }
        w == "total" { print $4 + $6 } w == "private" { print $5 + $7 }' "$WORK/m/$1" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
count() { awk -v k="$2" '$1 == k' "$WORK/m/$1" | wc -l; }
per_gib() { awk -v kb="$1" 'BEGIN { if (kb > 0) printf "%d", 1048576 / kb; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
verdict() {  # VALUE OP LIMIT
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { ok = (op == "<=" ? v <= l : v >= l); print (ok ? "met" : "NOT met") }'
}
FMT='%-42s %5s %5s %9s %8s %9s %8s %8s\n'
header() { printf "$FMT" "$1" N procs guest monitor total private "per GiB"; }
row() {  # LABEL PHASE KIND
    local t
    t=$(median "$2" "$3" total)
    printf "$FMT" "$1" "$(count "$2" "$3")" "$(median "$2" "$3" procs)" "$(median "$2" "$3" guest)" \
        "$(median "$2" "$3" monitor)" "$t" "$(median "$2" "$3" private)" "$(per_gib "$t")"
}

MEMTOTAL_KB=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
echo
echo "host: $(uname -r), $(nproc) cpus, MemTotal $((MEMTOTAL_KB / 1024)) MiB, load $(cut -d' ' -f1-3 /proc/loadavg);" \
     "lxc $(lxc-start --version 2>&1);$( [ "$N_DOMAINS" = 0 ] || echo " $(qemu-system-x86_64 --version | head -n1), $(printf '%s\n' "$HOST_JSON" | sed -n 's/.*"accelerator": *"\([a-z]*\).*/\1/p'),") commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
header "idle guests side by side, median (KiB)"
row "vserver (busybox init, unprivileged)" side vserver
row "lxc container (busybox init, privileged)" side lxc
[ "$N_DOMAINS" = 0 ] || row "domain (QEMU microvm, $DOMAIN_MEMORY, 1 vcpu)" side domain
echo "(PSS from /proc/PID/smaps_rollup. guest: init and its descendants (procs of them); monitor: init's parent,"
echo " vsinit or [lxc monitor]; total = guest + monitor; private: Private_Clean + Private_Dirty of both;"
echo " per GiB = 1 GiB / total)"
echo
VG=$(median side vserver guest) VT=$(median side vserver total) LG=$(median side lxc guest) LT=$(median side lxc total)
printf '%-42s %9s %9s\n' "ratios of the medians (PSS)" ratio target
r=$(ratio "$VG" "$LG"); printf '%-42s %9s %9s  %s\n' "vserver / lxc, guest processes" "$r" "<= 1.2" "$(verdict "$r" "<=" 1.2)"
r=$(ratio "$VT" "$LT"); printf '%-42s %9s %9s  %s\n' "vserver / lxc, guest + monitor" "$r" "<= 1.2" "$(verdict "$r" "<=" 1.2)"
if [ "$N_DOMAINS" != 0 ]; then
    DT=$(median side domain total)
    r=$(ratio "$DT" "$VT"); printf '%-42s %9s %9s  %s\n' "domain / vserver, guest + monitor" "$r" ">= 50" "$(verdict "$r" ">=" 50)"
    r=$(ratio "$DT" "$VG"); printf '%-42s %9s %9s  %s\n' "domain / vserver, guest processes" "$r" ">= 50" "$(verdict "$r" ">=" 50)"
fi

echo
header "vservers, median (KiB)"
row "beside the lxc containers and domains" side vserver
row "alone" alone vserver
[ ! -s "$WORK/m/large" ] || row "alone, large batch" large vserver
PER_VSERVER=$VT
if [ -s "$WORK/m/large" ]; then
    PER_VSERVER=$(median large vserver total)
    change() { awk -v a="$(median alone vserver "$1")" -v b="$(median large vserver "$1")" 'BEGIN { printf "%+.1f%%", (b - a) * 100 / a }'; }
    echo "from N=$N to N=$STARTED alone: PSS per vserver $(change total), private $(change private)"
    echo " (PSS splits each shared page among all that map it: it falls as N grows, towards the private part)"
    added=$((STARTED - N))
    KERNEL_KB=$(( (KERNEL_AFTER - KERNEL_BEFORE) / added ))
    echo "per added vserver, host-wide ($added added; other work on the host shows here too):"
    printf ' kernel memory (Slab + KernelStack + PageTables + Percpu) %+d KiB, MemAvailable %+d KiB\n' \
        "$KERNEL_KB" $(( (AVAIL_AFTER - AVAIL_BEFORE) / added ))
fi
[ -z "$LARGE_NOTE" ] || echo "$LARGE_NOTE"

echo
CAP=$(printf '%s\n' "$HOST_JSON" | awk -F: '/"pool": *\{/ { p = 1 } p && /"capacityBytes":/ { gsub(/[^0-9]/, "", $2); print $2; exit }')
if [ -n "$CAP" ]; then
    CAP_FROM="pool.capacityBytes of vsctl host -f json"
else
    CAP=$(( MEMTOTAL_KB * 1024 - (1 << 30) ))
    CAP_FROM="MemTotal - 1 GiB: this agent's vsctl host -f json has no pool.capacityBytes"
fi
CAP_KB=$((CAP / 1024))
PER=${PER_VSERVER%.*}
BY_PSS=$(( CAP_KB / PER ))
echo "pool capacity: $(awk -v b="$CAP" 'BEGIN { printf "%.2f GiB", b / 1073741824 }') ($CAP_FROM)"
echo "largest N of idle vservers within it, by PSS: $BY_PSS = floor(capacity / $PER KiB per vserver with its monitor, at N=$STARTED)"
if [ -n "${KERNEL_KB:-}" ] && [ "$KERNEL_KB" -gt 0 ]; then
    echo "  with the kernel memory each added vserver took as well: $(( CAP_KB / (PER + KERNEL_KB) )) = floor(capacity / $((PER + KERNEL_KB)) KiB)"
fi
# Limits other than memory, for vservers as this agent makes them (one veth on one bridge, one address,
# 65536 host ids each, a monitor beside the guest's processes).
PREFIX=${VSERVER_SUBNET#*/}
ADDRS=$(( (1 << (32 - PREFIX)) - 3 ))     # network, broadcast, the bridge's own
IDMAP=${VSERVER_IDMAP:-1000000:1000000000}
IDS=$(( ${IDMAP#*:} / 65536 ))
PROCS=$(awk -v m="$(median "$( [ -s "$WORK/m/large" ] && echo large || echo alone)" vserver procs)" 'BEGIN { printf "%d", m + 1 }')
PID_MAX=$(cat /proc/sys/kernel/pid_max)
FIRST=$BY_PSS FIRST_WHY="memory, by PSS"
limit() {  # N WHY: remembers the smallest
    [ "$1" -ge "$FIRST" ] || { FIRST=$1; FIRST_WHY=$2; }
}
limit "$BRIDGE_PORTS" "bridge ports"; limit "$ADDRS" "subnet addresses"; limit "$IDS" "host id ranges"
limit $((PID_MAX / PROCS)) "pids"
echo "limits other than memory (per agent, as it makes vservers):"
echo "  bridge ports:         $BRIDGE_PORTS (one veth per guest on the agent's one bridge; the kernel's BR_MAX_PORTS)"
echo "  subnet addresses:     $ADDRS ($VSERVER_SUBNET here; the agent's default 10.88.0.0/16 holds as many)"
echo "  host id ranges:       $IDS (VSERVER_IDMAP ${IDMAP}, 65536 ids each)"
echo "  pids:                 $(( PID_MAX / PROCS )) (kernel.pid_max $PID_MAX / $PROCS processes per vserver with its monitor)"
if [ -n "${AGENT_FDS_AFTER:-}" ]; then
    fds=$(awk -v a="$AGENT_FDS_BEFORE" -v b="$AGENT_FDS_AFTER" -v n="$((STARTED - N))" 'BEGIN { printf "%.1f", (b - a) / n }')
    nofile=$(awk '/^Max open files/ { print $4 }' "/proc/$AGENT_PID/limits")
    echo "  agent's open files:   $(awk -v f="$fds" -v l="$nofile" 'BEGIN { if (f > 0) printf "%d", l / f; else print "-" }')" \
         "($fds more fds in vserverd per vserver, its RLIMIT_NOFILE $nofile)"
    awk -v f="$fds" 'BEGIN { exit !(f > 0) }' && limit "$(awk -v f="$fds" -v l="$nofile" 'BEGIN { printf "%d", l / f }')" "the agent's open files"
fi
echo "largest N of idle vservers one agent reaches here: $FIRST ($FIRST_WHY comes first)"
