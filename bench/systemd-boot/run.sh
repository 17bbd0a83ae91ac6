#!/usr/bin/env bash
# bench/systemd-boot/run.sh: how long does the same Debian root file system (systemd as init) take to reach
# `running`, and to stop, as an LXC container, as a vserver and as a domain, and how much memory does an idle one
# take? In one run, side by side:
#
#   lxc                   lxc-start -d of a plain container (lxc.include common.conf, lxc.init.cmd /sbin/init,
#                         privileged), its rootfs an overlay of its own over the agent's image tree
#                         (ROOT/images/debian/rootfs, read-only as the vservers' lower layer); polled with
#                         `lxc-attach -- systemctl is-system-running`; stopped with lxc-stop (SIGRTMIN+3)
#   vserver               POST /v1/guests/NAME/start (curl on the agent's socket: no vsctl start-up), unprivileged
#                         (the default); polled with `nsenter -t INITPID -a systemctl is-system-running`;
#                         POST .../stop
#   vserver --privileged  the same, created with --privileged (SKIP_PRIVILEGED=1 leaves it out)
#   domain                the same image as a domain (--memory 512M --disk 2G, TCG here); polled with
#                         `vsctl exec NAME -- systemctl is-system-running` (DOMAIN_RUNS, 0 leaves it out)
#
# Every guest boots once unmeasured first (its first boot: machine id, journal, page cache), then RUNS times each,
# the container legs interleaved (each round in another order). Times are from the start command, CLOCK_MONOTONIC
# (/proc/timer_list on the host; the guests' systemd shares the clock, no time namespace), and besides the first poll
# answering `running` the script reads systemd's own timestamps inside (pid 1 started, generators, units loaded,
# startup finished), which no poll interval blurs. Then the container legs boot side by side, idle SETTLE s, and the
# PSS of each guest's processes (its cgroup) and of its monitor is read from /proc/PID/smaps_rollup.
#
# needs: lxc util-linux (nsenter, mountpoint) iproute2 curl + qemu-system-x86 (DOMAIN_RUNS > 0) + bin/vserverd
#        bin/vsctl bin/vsinit (make build); debootstrap and a Debian mirror for `vsctl image build debian`. Root.
# Environment: RUNS (5), DOMAIN_RUNS (2), SETTLE (5 s idle before the memory reading), TIMEOUT (120 s per wait),
# POLL_MS (20: pause between polls of the containers; the domain's 250), SKIP_PRIVILEGED=1,
# IMAGE_TAR=FILE (import this tarball of the image, e.g. from `vsctl image export debian`, instead of building it),
# KEEP=DIR (copy the per-run results and each leg's systemd-analyze output there).
set -eEuo pipefail
trap 'echo "bench/systemd-boot/run.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

RUNS=${RUNS:-5}
DOMAIN_RUNS=${DOMAIN_RUNS:-2}
SETTLE=${SETTLE:-5}
TIMEOUT=${TIMEOUT:-120}
POLL_MS=${POLL_MS:-20}
SKIP_PRIVILEGED=${SKIP_PRIVILEGED:-}
IMAGE_TAR=${IMAGE_TAR:-}
KEEP=${KEEP:-}

BENCH=bench/systemd-boot
. "$(dirname "$0")/../preamble.sh"
case $RUNS$DOMAIN_RUNS$SETTLE$TIMEOUT$POLL_MS in *[!0-9]*) die "RUNS, DOMAIN_RUNS, SETTLE, TIMEOUT and POLL_MS must be whole numbers" ;; esac
[ "$RUNS" -ge 1 ] || die "RUNS must be 1 or more"
[ -z "$IMAGE_TAR" ] || [ -r "$IMAGE_TAR" ] || die "IMAGE_TAR=$IMAGE_TAR: no such file"
need=(lxc-start lxc-attach lxc-stop lxc-info nsenter mountpoint ip curl awk)
[ "$DOMAIN_RUNS" = 0 ] || need+=(qemu-system-x86_64)
bench_require "vservers, an lxc container, a domain, bridges, cgroups" "${need[@]}"
grep -q '^now at ' /proc/timer_list 2>/dev/null || die "no 'now at' line in /proc/timer_list (the host's CLOCK_MONOTONIC)"

# --- networks, work dir and cleanup ----------------------------------------------------------------------------
# A /24 outside the 10.200-10.249 the tests pick theirs from and the other benches' subnets. Nothing routes beyond
# the bridges; the lxc bridge has no address.
SUBNET=10.254.0.0/24
[ -z "$(ip route show root "$SUBNET")" ] || die "something on this host already routes into $SUBNET: $(ip route show root "$SUBNET" | head -n 1)"
WORK=$(mktemp -d /tmp/vssdboot.XXXXXX)
# The agent's resolver (dnsmasq, as user dnsmasq) must reach its hosts file under the run root, as it does under
# /run/vserver; with mktemp's 0700 it would not start and the guests would be set up differently from production.
chmod 711 "$WORK"
ID=vssdboot-$$                   # cgroup parent of the agent's guests and of the lxc container
BRIDGE=vssb$$                    # the agent's bridge (<= 15 chars)
LXC_BRIDGE=vssbl$$               # the lxc container's bridge, made by this script
. "$REPO/bench/lib.sh"
LXC_P=$WORK/lxc                  # lxc -P: the container's directory
LXC_NAME=sdlxc
LXC_DIR=$LXC_P/$LXC_NAME
VS=sdvs VSP=sdvsp DOM=sddom      # the agent's guests
CREATED=()                       # the agent's guests this script created
mkdir -p "$WORK/res" "$WORK/analyze"

api() {  # METHOD PATH: the agent's answer on stdout; an error answer on stderr and exit 22
    curl -sS --fail-with-body --max-time "$TIMEOUT" --unix-socket "$SOCK" -X "$1" "http://localhost$2"
}

# A zombie answers kill -0 too: the agent is gone once its pid is a zombie or not there.
agent_gone() {
    local s
    s=$(sed 's/.*) //' "/proc/$AGENT_PID/stat" 2>/dev/null | cut -d' ' -f1)
    [ -z "$s" ] || [ "$s" = Z ]
}

cleanup() {
    local rc=$? g p i
    trap - EXIT INT TERM ERR
    set +e
    bench_agent_log "$rc"
    if [ -d "$LXC_DIR" ]; then
        [ "$(lxc-info -n "$LXC_NAME" -P "$LXC_P" -sH 2>/dev/null)" = STOPPED ] ||
            lxc-stop -n "$LXC_NAME" -P "$LXC_P" -k >/dev/null 2>&1
        if mountpoint -q "$LXC_DIR/rootfs"; then umount "$LXC_DIR/rootfs" || umount -l "$LXC_DIR/rootfs"; fi
    fi
    if [ -n "$AGENT_PID" ] && ! agent_gone; then
        for g in "${CREATED[@]}"; do api DELETE "/v1/guests/$g?force=true" >/dev/null 2>&1; done
        # The agent's nftables table, resolver and bridge go with it (refused if a guest were left).
        if vsctl host teardown >/dev/null 2> "$WORK/teardown.err"; then
            for i in $(seq 100); do agent_gone && break; sleep 0.1; done
            agent_gone && { wait "$AGENT_PID" 2>/dev/null; AGENT_PID=""; }
        else
            echo "$BENCH: vsctl host teardown failed: $(head -c 300 "$WORK/teardown.err")" >&2
        fi
    fi
    bench_stop_agent
    # What an agent that did not tear down left: vsinit monitors, QEMUs and the resolver naming our work dir are
    # ours (SIGKILL to a monitor's child, a guest's init, ends its whole pid namespace); its nftables table.
    for p in $(grep -l -F "$WORK/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
        case $(tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline") in
            *"vsinit start $WORK/"*)
                for i in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do kill -KILL "$i" 2>/dev/null; done
                kill -KILL "$p" 2>/dev/null ;;
            qemu-system*|*dnsmasq*) kill -KILL "$p" 2>/dev/null ;;
        esac
    done
    nft list table ip "vserver_$BRIDGE" >/dev/null 2>&1 && nft delete table ip "vserver_$BRIDGE"
    bench_remove_work "$BRIDGE" "$LXC_BRIDGE"
    exit "$rc"
}
bench_on_exit cleanup

# MONO: the host's CLOCK_MONOTONIC in microseconds (ktime_get, the "now at" line of /proc/timer_list), read without
# a fork; systemd's *TimestampMonotonic values inside a container are on the same clock.
mono() {
    local a b c r
    while read -r a b c r; do
        if [ "$a $b" = "now at" ]; then MONO=$((c / 1000)); return 0; fi
    done < /proc/timer_list
    die "no 'now at' line in /proc/timer_list"
}

# --- the agent, the image, the kernel, the guests ---------------------------------------------------------------
log "starting a private vserverd (root $WORK, bridge $BRIDGE, subnet $SUBNET, cgroup parent $ID)"
bench_start_agent
if [ -n "$IMAGE_TAR" ]; then
    log "importing the debian image from $IMAGE_TAR"
    vsctl image import "$IMAGE_TAR" --as debian >&2
else
    log "building the debian image (debootstrap, about 2 minutes)"
    vsctl image build debian >&2
fi
# The image store keeps each image's tree at ROOT/images/NAME/rootfs: the vservers' lower layer, and the lxc
# container's.
LOWER=$VSERVER_ROOT/images/debian/rootfs
[ -e "$LOWER/lib/systemd/systemd" ] && [ -L "$LOWER/sbin/init" ] || die "no debian image tree with systemd at $LOWER"
LEGS=(lxc vserver)
CREATED+=("$VS")
vsctl create "$VS" --image debian >&2
if [ -z "$SKIP_PRIVILEGED" ]; then
    LEGS+=(privileged)
    CREATED+=("$VSP")
    vsctl create "$VSP" --image debian --privileged >&2
fi
if [ "$DOMAIN_RUNS" -gt 0 ]; then
    log "building the domain kernel"
    vsctl kernel build default >&2
    CREATED+=("$DOM")
    vsctl create "$DOM" --kind domain --image debian --memory 512M --disk 2G >&2
fi

# The lxc container: an overlay of its own over the image's tree (lxc never writes into the image), a veth on a bridge
# of this script's (never lxcbr0), its cgroups under the same parent as the vservers' (lxc.cgroup.dir.*), so that
# the cleanup finds them where it finds the agent's.
ip link add "$LXC_BRIDGE" type bridge
ip link set "$LXC_BRIDGE" up
mkdir -p "$LXC_DIR/upper" "$LXC_DIR/work" "$LXC_DIR/rootfs"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$LXC_DIR/upper,workdir=$LXC_DIR/work" "$LXC_DIR/rootfs"
cat > "$LXC_DIR/config" <<EOF
lxc.include = /usr/share/lxc/config/common.conf
lxc.uts.name = $LXC_NAME
lxc.rootfs.path = dir:$LXC_DIR/rootfs
lxc.init.cmd = /sbin/init
lxc.net.0.type = veth
lxc.net.0.link = $LXC_BRIDGE
lxc.net.0.flags = up
lxc.cgroup.dir.monitor = $ID/lxc.monitor.$LXC_NAME
lxc.cgroup.dir.container = $ID/lxc.payload.$LXC_NAME
lxc.console.logfile = $LXC_DIR/console.log
lxc.log.file = $LXC_DIR/lxc.log
lxc.log.level = WARN
EOF

# --- one boot, one stop ------------------------------------------------------------------------------------------
guest_of() { case $1 in vserver) echo "$VS" ;; privileged) echo "$VSP" ;; domain) echo "$DOM" ;; lxc) echo "$LXC_NAME" ;; esac; }

# in_guest LEG: sets IN, the command prefix that runs a command in the leg's running guest (a vserver's by INIT_PID):
# lxc-attach; for a vserver nsenter into all of its init's namespaces (what lxc-attach does, without .NET's start-up
# that each vsctl exec pays); for a domain vsctl exec (its guest agent is the only way in).
in_guest() {
    case $1 in
        lxc) IN=(lxc-attach -n "$LXC_NAME" -P "$LXC_P" --) ;;
        vserver|privileged) IN=(nsenter -t "$INIT_PID" -a) ;;
        domain) IN=("$BIN/vsctl" exec "$DOM" --) ;;
    esac
}

# poll_cost LEG: one line "LEG US" in res/polls: the median of 5 polls of the running, idle guest (INIT_PID).
poll_cost() {
    local i t0 v=()
    in_guest "$1"
    for i in 1 2 3 4 5; do
        mono; t0=$MONO
        "${IN[@]}" systemctl is-system-running >/dev/null 2>&1 || true
        mono; v+=($((MONO - t0)))
    done
    echo "$1 $(printf '%s\n' "${v[@]}" | sort -n | sed -n 3p)" >> "$WORK/res/polls"
}

# boot LEG: starts the leg's guest and polls until systemd answers `running`. Sets IN (see in_guest), INIT_PID,
# B_CALL and B_RUNNING (us from the start command: the call returned, the first poll answered running), POLLS, and
# for the containers B_PID1 B_GEN0 B_GEN B_LOADED B_FINISH (us from the start command: systemd's pid 1 started, its
# generators started and done, its units loaded, its startup finished).
boot() {
    local leg=$1 t0 out state deadline=$((SECONDS + TIMEOUT)) pause k v
    mono; t0=$MONO
    case $leg in
        lxc) lxc-start -n "$LXC_NAME" -P "$LXC_P" -d || { tail -n 20 "$LXC_DIR/lxc.log" >&2; die "lxc-start failed"; } ;;
        *) out=$(api POST "/v1/guests/$(guest_of "$leg")/start") || die "starting $(guest_of "$leg") failed: $out" ;;
    esac
    mono; B_CALL=$((MONO - t0))
    pause=0.$(printf '%03d' "$POLL_MS")
    case $leg in
        vserver|privileged)
            INIT_PID=$(printf '%s' "$out" | sed -n 's/.*"initPid": *\([0-9]*\).*/\1/p')
            [ -n "$INIT_PID" ] || die "no initPid in the agent's answer: $out" ;;
        domain) pause=0.25 ;;
    esac
    in_guest "$leg"
    POLLS=0
    while :; do
        # (a domain's guest agent answers "offline" from its initramfs on, before systemd runs)
        state=$("${IN[@]}" systemctl is-system-running 2>/dev/null) || true
        POLLS=$((POLLS + 1))
        [ "$state" != running ] || break
        case $state in
            degraded|maintenance|stopping)
                "${IN[@]}" systemctl --failed --no-pager >&2 || true
                die "$leg: systemd says $state" ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || die "$leg: not running after ${TIMEOUT}s (last answer: ${state:-none})"
        sleep "$pause"
    done
    mono; B_RUNNING=$((MONO - t0))
    [ "$leg" = lxc ] && INIT_PID=$(lxc-info -n "$LXC_NAME" -P "$LXC_P" -pH)
    [ "$leg" = domain ] && INIT_PID=$(api GET "/v1/guests/$DOM" | sed -n 's/.*"initPid": *\([0-9]*\).*/\1/p')
    B_PID1=- B_GEN0=- B_GEN=- B_LOADED=- B_FINISH=-
    [ "$leg" != domain ] || return 0
    while IFS='=' read -r k v; do
        case $k in
            UserspaceTimestampMonotonic) B_PID1=$((v - t0)) ;;
            GeneratorsStartTimestampMonotonic) B_GEN0=$((v - t0)) ;;
            GeneratorsFinishTimestampMonotonic) B_GEN=$((v - t0)) ;;
            UnitsLoadFinishTimestampMonotonic) B_LOADED=$((v - t0)) ;;
            FinishTimestampMonotonic) B_FINISH=$((v - t0)) ;;
        esac
    done < <("${IN[@]}" systemctl show -p UserspaceTimestampMonotonic -p GeneratorsStartTimestampMonotonic \
                 -p GeneratorsFinishTimestampMonotonic \
                 -p UnitsLoadFinishTimestampMonotonic -p FinishTimestampMonotonic)
}

# stop LEG: sets S_STOP (us the stop command took; it returns once the guest is gone).
stop() {
    local leg=$1 t0 out
    mono; t0=$MONO
    case $leg in
        lxc) lxc-stop -n "$LXC_NAME" -P "$LXC_P" || die "lxc-stop failed" ;;
        *) out=$(api POST "/v1/guests/$(guest_of "$leg")/stop") || die "stopping $(guest_of "$leg") failed: $out" ;;
    esac
    mono; S_STOP=$((MONO - t0))
    case $leg in
        lxc) [ "$(lxc-info -n "$LXC_NAME" -P "$LXC_P" -sH)" = STOPPED ] || die "lxc container not stopped after lxc-stop" ;;
        *) case $out in *'"state":"stopped"'*) ;; *) die "$(guest_of "$leg") not stopped after its stop: $out" ;; esac ;;
    esac
}

# analyze LEG: what systemd did in the last boot, for the report (and KEEP).
analyze() {
    "${IN[@]}" systemd-analyze blame --no-pager > "$WORK/analyze/$1.blame" 2>&1 || true
    "${IN[@]}" systemd-analyze critical-chain --no-pager > "$WORK/analyze/$1.chain" 2>&1 || true
    "${IN[@]}" systemd-analyze time --no-pager > "$WORK/analyze/$1.time" 2>&1 || true
    "${IN[@]}" ps -e -o pid,args > "$WORK/analyze/$1.ps" 2>&1 || true
    grep -E '^Cap(Bnd|Eff):' "/proc/$INIT_PID/status" > "$WORK/analyze/$1.caps" 2>/dev/null || true
    "${IN[@]}" systemctl --version > "$WORK/analyze/$1.version" 2>&1 || true
    "${IN[@]}" cat /proc/meminfo > "$WORK/analyze/$1.meminfo" 2>&1 || true
}

record() {  # LEG RUN: one line of the results
    echo "$1 $2 $B_CALL $B_PID1 $B_GEN0 $B_GEN $B_LOADED $B_FINISH $B_RUNNING $POLLS $S_STOP" >> "$WORK/res/runs"
    printf '%-11s run %s: running at %6d ms (%d polls), stop %5d ms\n' "$1" "$2" $((B_RUNNING / 1000)) "$POLLS" $((S_STOP / 1000)) >&2
}

# --- time to running and to stop -------------------------------------------------------------------------------
: > "$WORK/res/runs"
log "first boot of each guest (unmeasured: machine id, journal, page cache)"
for leg in "${LEGS[@]}"; do
    boot "$leg"; stop "$leg"; record "$leg" 0
done
for run in $(seq "$RUNS"); do
    log "round $run/$RUNS"
    n=${#LEGS[@]}
    for i in $(seq 0 $((n - 1))); do
        leg=${LEGS[$(( (i + run) % n ))]}
        boot "$leg"
        [ "$run" != "$RUNS" ] || analyze "$leg"
        stop "$leg"
        record "$leg" "$run"
    done
done

# --- memory of idle guests, side by side ----------------------------------------------------------------------------
# mem_kb PID...: "PSS RSS PRIVATE" in KiB summed over them (private: Private_Clean + Private_Dirty).
mem_kb() {
    local p files=()
    for p in "$@"; do files+=("/proc/$p/smaps_rollup"); done
    { cat "${files[@]}" 2>/dev/null || true; } |
        awk '$1 == "Pss:" { s += $2 } $1 == "Rss:" { r += $2 } $1 ~ /^Private_(Clean|Dirty):$/ { q += $2 }
             END { print s + 0, r + 0, q + 0 }'
}
cmdline() { tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline"; }
# cgroup_pids DIR...: every process in those cgroups and below (the v1 hierarchies hold the same processes; systemd
# inside makes its own sub-cgroups in some of them).
cgroup_pids() {
    local d
    for d in "$@"; do
        if [ -d "$d" ]; then find "$d" -name cgroup.procs -exec cat {} +; fi
    done | sort -un
}
# measure LEG: one line "LEG NPROCS PSS RSS PRIVATE MONITOR_PSS" (KiB) in res/memory. A container's guest processes
# are those of its cgroup (which lxc-attach and nsenter have left by now); its monitor is init's parent, outside it:
# `vsinit start` for a vserver, `[lxc monitor]` for lxc. A domain is its QEMU process, with no monitor of its own.
measure() {
    local leg=$1 name pids mon=- mkb=- p
    name=$(guest_of "$leg")
    case $leg in
        lxc) pids=$(cgroup_pids /sys/fs/cgroup/*/"$ID/lxc.payload.$name" "/sys/fs/cgroup/$ID/lxc.payload.$name") ;;
        vserver|privileged) pids=$(cgroup_pids /sys/fs/cgroup/*/"$ID/$name" "/sys/fs/cgroup/$ID/$name") ;;
        domain)
            pids=$INIT_PID
            # The guest's RAM is one anonymous mapping of exactly its memory size; the rest of QEMU's RSS is QEMU
            # itself and, under TCG, its translation buffer.
            awk '$1 == "Size:" { size = $2 } $1 == "Rss:" && size == 512 * 1024 { r += $2 } END { print r + 0 }' \
                "/proc/$INIT_PID/smaps" > "$WORK/res/domain.ram"
            # QEMU's three largest mappings by RSS: "PERMS SIZE_KB RSS_KB NAME"
            awk '$1 ~ /^[0-9a-f]+-[0-9a-f]+$/ { perms = $2; name = ($6 == "" ? "[anon]" : $6) }
                 $1 == "Size:" { size = $2 } $1 == "Rss:" { print perms, size, $2, name }' "/proc/$INIT_PID/smaps" |
                sort -k3,3nr | head -n 3 > "$WORK/res/domain.maps" ;;
    esac
    grep -qx "$INIT_PID" <<< "$pids" || die "$leg: init $INIT_PID is not among its cgroup's processes: $(echo $pids)"
    if [ "$leg" != domain ]; then
        mon=$(sed 's/.*) //' "/proc/$INIT_PID/stat" | cut -d' ' -f2)
        case $leg:$(cmdline "$mon") in
            lxc:"[lxc monitor]"*|vserver:*"vsinit start "*|privileged:*"vsinit start "*) ;;
            *) die "$leg: init's parent $mon is not its monitor: $(cmdline "$mon")" ;;
        esac
        pids=$(grep -vx "$mon" <<< "$pids") || true
        mkb=$(mem_kb "$mon" | cut -d' ' -f1)
    fi
    # shellcheck disable=SC2086
    echo "$leg $(wc -l <<< "$pids") $(mem_kb $pids) $mkb" >> "$WORK/res/memory"
    for p in $pids; do echo "$leg $p $(mem_kb "$p" | cut -d' ' -f1) $(cat "/proc/$p/comm" 2>/dev/null)"; done >> "$WORK/res/memory.procs"
}

: > "$WORK/res/memory"
log "memory: ${LEGS[*]} booted side by side, then ${SETTLE}s idle"
declare -A MEM_INIT
for leg in "${LEGS[@]}"; do boot "$leg"; MEM_INIT[$leg]=$INIT_PID; done
sleep "$SETTLE"
for leg in "${LEGS[@]}"; do INIT_PID=${MEM_INIT[$leg]}; measure "$leg"; done
: > "$WORK/res/polls"
for leg in "${LEGS[@]}"; do INIT_PID=${MEM_INIT[$leg]}; poll_cost "$leg"; done
for leg in "${LEGS[@]}"; do stop "$leg"; done

# --- the domain ---------------------------------------------------------------------------------------------------
if [ "$DOMAIN_RUNS" -gt 0 ]; then
    for run in $(seq "$DOMAIN_RUNS"); do
        log "domain boot $run/$DOMAIN_RUNS (TCG)"
        boot domain
        if [ "$run" = "$DOMAIN_RUNS" ]; then
            analyze domain
            sleep "$SETTLE"
            measure domain
            poll_cost domain
        fi
        stop domain
        record domain "$run"
    done
fi
[ -z "$KEEP" ] || { mkdir -p "$KEEP" && cp -r "$WORK/res" "$WORK/analyze" "$KEEP/"; }

# --- report ---------------------------------------------------------------------------------------------------------
# Columns of res/runs: 1 leg, 2 run (0: the first boot), 3 call, 4 pid 1, 5 generators start, 6 generators done,
# 7 units loaded, 8 finished, 9 running, 10 polls, 11 stop; microseconds from the start command ("-": not known).
# median LEG EXPR: the median in ms over the leg's measured runs of EXPR, an awk expression of those columns.
median() {
    local inner=0
    case $2 in *'$'[4-8]*) inner=1 ;; esac
    awk -v leg="$1" -v inner="$inner" '$1 == leg && $2 > 0 && !(inner && $4 == "-") { print ('"$2"') / 1000 }' "$WORK/res/runs" |
        sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2];
                                               else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
first() { awk -v leg="$1" '$1 == leg && $2 == 0 { printf "%.0f\n", $9 / 1000; f = 1 } END { if (!f) print "-" }' "$WORK/res/runs"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b <= 0) print "-"; else printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.0f", a }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.1f", k / 1024 }'; }
verdict() { awk -v r="$1" 'BEGIN { print (r != "-" && r <= 1.0) ? "met" : "NOT met" }'; }
label() {
    case $1 in
        lxc) echo "lxc (privileged)" ;;
        vserver) echo "vserver (unprivileged)" ;;
        privileged) echo "vserver --privileged" ;;
        domain) echo "domain (TCG, 512M)" ;;
    esac
}
ALL=("${LEGS[@]}")
[ "$DOMAIN_RUNS" = 0 ] || ALL+=(domain)

GUEST_SYSTEMD=$(head -n 1 "$WORK/analyze/vserver.version" 2>/dev/null) || true
echo
echo "host: $(uname -r), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); lxc $(lxc-start --version 2>&1);" \
     "guest: Debian 12, ${GUEST_SYSTEMD:-systemd ?}; commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "time to running and to stop (ms from the start command), median of $RUNS boots after one unmeasured first boot;"
echo "the domain: median of $DOMAIN_RUNS boot(s)"
LXC_RUN=$(median lxc '$9') LXC_FIN=$(median lxc '$8') LXC_STOP=$(median lxc '$11')
FMT='%-24s %5s %6s %9s %8s %7s %7s %6s %7s %6s\n'
printf "$FMT" leg call "pid 1" finished running "vs lxc" "poll" stop "vs lxc" first
for leg in "${ALL[@]}"; do
    r=$(median "$leg" '$9') st=$(median "$leg" '$11')
    pc=$(awk -v l="$leg" '$1 == l { printf "%.0f", $2 / 1000 }' "$WORK/res/polls")
    printf "$FMT" "$(label "$leg")" "$(ms "$(median "$leg" '$3')")" "$(ms "$(median "$leg" '$4')")" \
        "$(ms "$(median "$leg" '$8')")" "$(ms "$r")" "$(ratio "$r" "$LXC_RUN")" "${pc:--}" "$(ms "$st")" \
        "$(ratio "$st" "$LXC_STOP")" "$(first "$leg")"
done
echo "(call: lxc-start -d or the API's start returned; pid 1: systemd started (UserspaceTimestampMonotonic); finished:"
echo " its startup finished (FinishTimestampMonotonic), when it turns running; running: the first poll answering"
echo " running, polls ${POLL_MS} ms apart (lxc-attach, nsenter; the domain vsctl exec, 250 ms apart); poll: what one such"
echo " poll of the idle guest takes; stop: lxc-stop or the API's stop, until the guest is gone; first: running at the"
echo " unmeasured first boot)"
r=$(ratio "$(median vserver '$9')" "$LXC_RUN") st=$(ratio "$(median vserver '$11')" "$LXC_STOP")
echo "target (vserver, unprivileged, at most lxc's): running $(verdict "$r") ($r), stop $(verdict "$st") ($st);" \
     "systemd finished: $(ratio "$(median vserver '$8')" "$LXC_FIN")"

echo
echo "inside the containers (ms, median of the per-boot differences): where the boot goes"
FMT2='%-24s %8s %9s %11s %11s %6s %10s %7s\n'
printf "$FMT2" leg "to pid 1" "pid 1 up" generators "units load" jobs "userspace" "vs lxc"
LXC_US=$(median lxc '$8 - $4')
for leg in "${LEGS[@]}"; do
    us=$(median "$leg" '$8 - $4')
    printf "$FMT2" "$(label "$leg")" "$(ms "$(median "$leg" '$4')")" "$(ms "$(median "$leg" '$5 - $4')")" \
        "$(ms "$(median "$leg" '$6 - $5')")" "$(ms "$(median "$leg" '$7 - $6')")" "$(ms "$(median "$leg" '$8 - $7')")" \
        "$(ms "$us")" "$(ratio "$us" "$LXC_US")"
done
echo "(to pid 1: the start command until systemd runs, the container's set-up; pid 1 up: systemd's own start-up until it"
echo " runs its generators; generators: the 12 generators; units load: loading the units; jobs: the boot transaction until"
echo " startup finished; userspace: pid 1 until finished, what systemd-analyze time calls userspace)"
for leg in "${LEGS[@]}"; do
    [ "$leg" != lxc ] || continue
    only=$(awk 'NR == FNR { if ($2 ~ /\./) seen[$2] = 1; next } $2 ~ /\./ && !($2 in seen) { printf "%s%s", s, $2; s = " " }' \
        "$WORK/analyze/lxc.blame" "$WORK/analyze/$leg.blame")
    none=$(awk 'NR == FNR { if ($2 ~ /\./) seen[$2] = 1; next } $2 ~ /\./ && !($2 in seen) { printf "%s%s", s, $2; s = " " }' \
        "$WORK/analyze/$leg.blame" "$WORK/analyze/lxc.blame")
    echo "units that ran (systemd-analyze blame, last boot) in $(label "$leg") only: ${only:-none}; in lxc only: ${none:-none}"
done
for leg in "${LEGS[@]}"; do
    printf '%s%s %s' "${sep:-capability bounding set of pid 1: }" "$(label "$leg")" "$(awk '/^CapBnd:/ { print $2 }' "$WORK/analyze/$leg.caps")"
    sep="; "
done
echo
if [ "$DOMAIN_RUNS" != 0 ]; then
    echo "domain, last boot, on its own clock: $(head -n 1 "$WORK/analyze/domain.time")"
    echo "domain's own /proc/meminfo, idle after boot:" \
        "$(awk '$1 ~ /^(MemTotal|MemFree|MemAvailable|Cached):$/ { printf "%s%s %.0f MiB", s, $1, $2 / 1024; s = ", " }' "$WORK/analyze/domain.meminfo")"
fi

echo
echo "memory of idle guests (MiB), ${SETTLE}s after running; the containers side by side, the domain alone"
FMT3='%-24s %5s %7s %7s %8s %8s %7s %7s %8s\n'
printf "$FMT3" leg procs PSS RSS private monitor total "PSS vs" "total vs"
read -r _ _ LXC_PSS _ _ LXC_MON < <(awk '$1 == "lxc"' "$WORK/res/memory")
LXC_TOTAL=$((LXC_PSS + LXC_MON))
for leg in "${ALL[@]}"; do
    read -r _ n pss rss priv mon < <(awk -v l="$leg" '$1 == l' "$WORK/res/memory")
    total=$pss; [ "$mon" = - ] || total=$((pss + mon))
    printf "$FMT3" "$(label "$leg")" "$n" "$(mib "$pss")" "$(mib "$rss")" "$(mib "$priv")" "$(mib "$mon")" "$(mib "$total")" \
        "$(ratio "$pss" "$LXC_PSS")" "$(ratio "$total" "$LXC_TOTAL")"
done
if [ "$DOMAIN_RUNS" != 0 ]; then
    echo "of the domain's RSS, its 512M of guest RAM (QEMU's mapping of that size): $(mib "$(cat "$WORK/res/domain.ram")") MiB;" \
         "QEMU's largest mappings by RSS: $(awk '{ printf "%s%s %s %.0f MiB, RSS %.1f MiB", s, $4, $1, $2 / 1024, $3 / 1024; s = "; " }' "$WORK/res/domain.maps")"
fi
echo "(PSS, RSS, private: sums over the guest's processes, those of its cgroup, from /proc/PID/smaps_rollup; private:"
echo " Private_Clean + Private_Dirty. monitor: PSS of init's parent, outside the cgroup: vsinit for a vserver, [lxc monitor]"
echo " for lxc; a domain is its one QEMU process. total: PSS + monitor. vs: ratio to lxc's)"
echo "PSS per process (MiB):"
for leg in "${ALL[@]}"; do
    echo "  $(label "$leg"): $(awk -v l="$leg" '$1 == l { printf "%s%s %.1f", s, $4, $3 / 1024; s = ", " }' "$WORK/res/memory.procs")"
done
