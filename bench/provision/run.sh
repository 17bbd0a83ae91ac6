#!/usr/bin/env bash
# bench/provision/run.sh: how fast does `vsctl apply` provision a hosting plan?
#
# Side by side in one run, N (200) guests from nothing, then the same again when
# nothing has to change:
#
#   vsctl apply FILE       a hosting file of N busybox vservers in 3 plans (memory
#                          limit and guarantee, CPU limit, process limit), created
#                          and started by the agent, --parallel P (4)
#   vsctl apply FILE       again, unchanged: the converge check alone
#   lxc loop               a shell loop doing what an operator would without us:
#                          per container an overlay over the same image tree,
#                          lxc-create -t none -f CONF (the same limits as
#                          lxc.cgroup keys, a veth on a bridge with an address)
#                          and lxc-start -d; privileged, busybox init
#   lxc loop again         the loop's own "is it there and running" check
#                          (lxc-info -s) for each container, nothing to do
#
# Prints the total and per-server milliseconds of each and the ratio lxc/vsctl
# (> 1: vsctl apply is faster). Target: apply faster than the LXC loop.
#
# needs: lxc iproute2 util-linux + bin/vserverd bin/vsctl (make build). Root.
# Environment: N (200), PARALLEL (4).
set -euo pipefail

N=${N:-200}
PARALLEL=${PARALLEL:-4}

BENCH=bench/provision
. "$(dirname "$0")/../preamble.sh"
bench_require "vservers, lxc containers, bridges, cgroups" lxc-create lxc-start lxc-stop lxc-destroy lxc-info ip awk mountpoint
case $N$PARALLEL in *[!0-9]*) die "N and PARALLEL must be whole numbers" ;; esac
[ "$N" -ge 3 ] && [ "$N" -le 250 ] || die "N must be 3 to 250 (one /24 of addresses for each side)"

# --- work dir and cleanup ---------------------------------------------------
WORK=$(mktemp -d /tmp/vsprov.XXXXXX)
ID=vsprov-$$
BRIDGE=vspv$$
LXC_BRIDGE=vspl$$
LXC_P=$WORK/lxc
LXC_NAMES=()
SUBNET=10.249.0.0/24
. "$REPO/bench/lib.sh"
mkdir -p "$LXC_P" "$WORK/ct"

lxc_remove() {  # NAME: its own overlay unmounted first, so lxc-destroy only sees an empty mount point
    local root=$WORK/ct/$1/rootfs
    lxc-stop -n "$1" -P "$LXC_P" -k >/dev/null 2>&1
    if mountpoint -q "$root"; then umount "$root" || umount -l "$root"; fi
    mountpoint -q "$root" || lxc-destroy -n "$1" -P "$LXC_P" >/dev/null 2>&1
}

cleanup() {
    local rc=$? g
    trap - EXIT INT TERM
    set +e
    bench_agent_log "$rc"
    [ "${#LXC_NAMES[@]}" = 0 ] || log "removing ${#LXC_NAMES[@]} lxc containers"
    for g in "${LXC_NAMES[@]}"; do lxc_remove "$g"; done
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        log "removing the vservers (apply --prune of an empty file)"
        printf 'plans: {}\nservers: []\n' > "$WORK/empty.yaml"
        vsctl apply "$WORK/empty.yaml" --prune --parallel "$PARALLEL" >/dev/null 2>&1
    fi
    bench_stop_agent
    bench_remove_work "$BRIDGE" "$LXC_BRIDGE"
    exit "$rc"
}
bench_on_exit cleanup

# --- the agent and the image ---------------------------------------------------
log "starting a private vserverd (root $WORK, bridge $BRIDGE, cgroup parent $ID)"
bench_start_agent
vsctl image build busybox >/dev/null
LOWER=$VSERVER_ROOT/images/busybox/rootfs
[ -L "$LOWER/sbin/init" ] || die "no busybox image tree at $LOWER"

# Three plans, servers spread over them in turn.
plan_of() { case $(( $1 % 3 )) in 0) echo small ;; 1) echo medium ;; *) echo large ;; esac; }
mem_of() { case $1 in small) echo 64 ;; medium) echo 128 ;; *) echo 256 ;; esac; }
cpu_of() { case $1 in small) echo 0.5 ;; medium) echo 1 ;; *) echo 1.5 ;; esac; }
pids_of() { case $1 in small) echo 100 ;; medium) echo 200 ;; *) echo 400 ;; esac; }
{
    echo "plans:"
    for p in small medium large; do
        echo "  $p: { memory: $(mem_of $p)M, memory-min: 16M, cpus: $(cpu_of $p), pids: $(pids_of $p) }"
    done
    echo "servers:"
    for i in $(seq "$N"); do echo "  - { name: s$i, plan: $(plan_of "$i") }"; done
} > "$WORK/hosting.yaml"

# --- vsctl apply ----------------------------------------------------------------
log "vsctl apply: $N vservers in 3 plans, --parallel $PARALLEL"
t0=$(now_ms)
vsctl apply "$WORK/hosting.yaml" --parallel "$PARALLEL" > "$WORK/apply.out" || { tail -n 5 "$WORK/apply.out" >&2; die "vsctl apply failed"; }
t1=$(now_ms)
grep -q "$N created, 0 changed, 0 unchanged, 0 removed, 0 failed" "$WORK/apply.out" || { tail -n 3 "$WORK/apply.out" >&2; die "apply did not create $N"; }
vsctl apply "$WORK/hosting.yaml" --parallel "$PARALLEL" > "$WORK/reapply.out" || die "vsctl apply (again) failed"
t2=$(now_ms)
grep -q "0 created, 0 changed, $N unchanged" "$WORK/reapply.out" || { tail -n 3 "$WORK/reapply.out" >&2; die "re-apply changed something"; }
APPLY=$((t1 - t0)) REAPPLY=$((t2 - t1))
RUNNING=$(vsctl list | awk '$3 == "running"' | wc -l)
[ "$RUNNING" = "$N" ] || die "$RUNNING of $N vservers run after apply"

# --- the lxc loop ---------------------------------------------------------------
cgroup_keys() {  # PLAN: the same limits in lxc's words, for this host's cgroup version
    local p=$1 mem cpu quota
    mem=$(( $(mem_of "$p") * 1048576 )) cpu=$(cpu_of "$p")
    quota=$(awk -v c="$cpu" 'BEGIN { printf "%d", c * 100000 }')
    if [ -d /sys/fs/cgroup/memory ]; then
        echo "lxc.cgroup.memory.limit_in_bytes = $mem"
        echo "lxc.cgroup.memory.soft_limit_in_bytes = 16777216"
        echo "lxc.cgroup.cpu.cfs_period_us = 100000"
        echo "lxc.cgroup.cpu.cfs_quota_us = $quota"
        echo "lxc.cgroup.pids.max = $(pids_of "$p")"
    else
        echo "lxc.cgroup2.memory.max = $mem"
        echo "lxc.cgroup2.memory.low = 16777216"
        echo "lxc.cgroup2.cpu.max = $quota 100000"
        echo "lxc.cgroup2.pids.max = $(pids_of "$p")"
    fi
}
ip link add "$LXC_BRIDGE" type bridge
ip link set "$LXC_BRIDGE" up
log "lxc loop: $N containers (overlay + lxc-create + lxc-start -d)"
t0=$(now_ms)
for i in $(seq "$N"); do
    name=$ID-l$i d=$WORK/ct/$ID-l$i p=$(plan_of "$i")
    mkdir -p "$d/upper" "$d/work" "$d/rootfs"
    mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$d/upper,workdir=$d/work" "$d/rootfs"
    {
        echo "lxc.uts.name = l$i"
        echo "lxc.rootfs.path = dir:$d/rootfs"
        echo "lxc.init.cmd = /sbin/init"
        echo "lxc.net.0.type = veth"
        echo "lxc.net.0.link = $LXC_BRIDGE"
        echo "lxc.net.0.flags = up"
        echo "lxc.net.0.ipv4.address = 10.248.0.$i/24"
        echo "lxc.mount.auto = proc:mixed sys:ro"
        echo "lxc.autodev = 1"
        echo "lxc.log.file = $d/lxc.log"
        echo "lxc.log.level = WARN"
        cgroup_keys "$p"
    } > "$d/config"
    LXC_NAMES+=("$name")
    lxc-create -n "$name" -P "$LXC_P" -t none -f "$d/config" >/dev/null
    lxc-start -n "$name" -P "$LXC_P" -d || { cat "$d/lxc.log" >&2; die "lxc-start $name failed"; }
done
t1=$(now_ms)
for i in $(seq "$N"); do
    name=$ID-l$i
    [ "$(lxc-info -n "$name" -P "$LXC_P" -sH)" = RUNNING ] || die "$name is not running"
done
t2=$(now_ms)
LXC=$((t1 - t0)) LXC_AGAIN=$((t2 - t1))

# --- report ---------------------------------------------------------------------
per() { awk -v t="$1" -v n="$N" 'BEGIN { printf "%.1f", t / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "NA"; else printf "%.2f", a / b }'; }
echo
echo "bench/provision: $N busybox guests in 3 plans on $(nproc) CPUs, $(uname -r), lxc $(lxc-start --version 2>&1), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
printf '%-34s %10s %12s\n' "" "total ms" "ms / server"
printf '%-34s %10s %12s\n' "vsctl apply (from nothing)" "$APPLY" "$(per "$APPLY")"
printf '%-34s %10s %12s\n' "lxc loop (create + start)" "$LXC" "$(per "$LXC")"
printf '%-34s %10s %12s\n' "vsctl apply (again, unchanged)" "$REAPPLY" "$(per "$REAPPLY")"
printf '%-34s %10s %12s\n' "lxc loop (again: lxc-info -s)" "$LXC_AGAIN" "$(per "$LXC_AGAIN")"
echo
r=$(ratio "$LXC" "$APPLY"); r2=$(ratio "$LXC_AGAIN" "$REAPPLY")
echo "lxc / vsctl apply, from nothing: $r (> 1: apply is faster; target > 1: $(awk -v r="$r" 'BEGIN { print (r > 1 ? "met" : "NOT met") }'))"
echo "lxc / vsctl apply, unchanged:    $r2"
