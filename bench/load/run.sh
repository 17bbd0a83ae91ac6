#!/usr/bin/env bash
# bench/load/run.sh: does the agent stay responsive, correct and clean while many clients create and destroy guests
# at once, and how fast is `vsctl list` with many guests?
#
# Side by side in one run:
#
#   loop      CLIENTS (16) concurrent clients, each looping over guests of its own names for DURATION (180) s:
#               vserver (vsctl): vsctl create N; vsctl start N; vsctl exec N -- hostname (must print N);
#                                vsctl stop N; vsctl destroy N
#               vserver (API):   the same through the REST API with curl (POST /v1/guests, .../start, .../stop,
#                                DELETE), exec still with vsctl exec (curl speaks no WebSocket): the agent without
#                                most of vsctl's .NET start-up, which the first leg pays five times per cycle
#               lxc:             overlay over the same image tree + lxc-create -t none; lxc-start -d;
#                                lxc-attach -- hostname (must print N); lxc-stop; umount + lxc-destroy
#             Each leg has a lister beside the clients: one list every 0.5 s (API with curl; lxc-ls --fancy).
#             Prints ops/s, p50/p99 per verb, the errors (any non-zero exit that is not a documented refusal, and
#             any wrong exec answer) and the leak check of each side (bench/load/leaks.sh for the agent).
#   list      LIST_COUNTS (100 500) running busybox guests: the median of LIST_RUNS (20) `vsctl list` (and of the
#             bare API call, curl GET /v1/guests, to tell the agent's share from vsctl's start-up) against
#             `lxc-ls --fancy` over as many running LXC containers.
#
# Ratios are "lxc / vserver" for times and "vserver / lxc" for ops/s: above 1, vserver is the faster.
#
# needs: lxc iproute2 util-linux curl + bin/vserverd bin/vsctl bin/vsinit (make build). Root.
# Environment: CLIENTS (16), DURATION (180 s per side), LIST_COUNTS ("100 500"), LIST_RUNS (20), PARALLEL (4, for
# vsctl apply of the list guests), SKIP_LXC=1 (vserver only), SKIP_API=1 (no API leg), SKIP_LIST=1 (loops only).
set -uo pipefail

CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-180}
LIST_COUNTS=${LIST_COUNTS:-"100 500"}
LIST_RUNS=${LIST_RUNS:-20}
PARALLEL=${PARALLEL:-4}
SKIP_LXC=${SKIP_LXC:-0}
SKIP_API=${SKIP_API:-0}
SKIP_LIST=${SKIP_LIST:-0}

BENCH=bench/load
. "$(dirname "$0")/../preamble.sh"
bench_require "vservers, lxc containers, bridges, cgroups" \
    lxc-create lxc-start lxc-attach lxc-stop lxc-destroy lxc-ls ip awk curl losetup mountpoint sha256sum
case $CLIENTS$DURATION$LIST_RUNS$PARALLEL${LIST_COUNTS// /} in *[!0-9]*) die "CLIENTS, DURATION, LIST_COUNTS, LIST_RUNS and PARALLEL must be whole numbers" ;; esac
for n in $LIST_COUNTS; do [ "$n" -ge 1 ] && [ "$n" -le 1000 ] || die "LIST_COUNTS must be 1 to 1000 (one /22 of addresses)"; done
[ "$CLIENTS" -ge 1 ] && [ "$LIST_RUNS" -ge 1 ] || die "CLIENTS and LIST_RUNS must be at least 1"

# --- networks, work dir and cleanup ------------------------------------------------------------------------------
# A /22 each (up to 1000 guests at list time), outside the 10.200-10.249 that the tests pick /24s from. Nothing routes
# beyond the bridges, and the lxc bridge has no address.
SUBNET=10.196.0.0/22
LXC_NET=10.197
for net in "$SUBNET" "$LXC_NET.0.0/22"; do
    [ -z "$(ip route show root "$net")" ] || die "something on this host already routes into $net: $(ip route show root "$net" | head -n 1)"
done
WORK=$(mktemp -d /tmp/vsload.XXXXXX)
ID=vsload-$$
BRIDGE=vsld$$
LXC_BRIDGE=vsll$$
LXC_P=$WORK/lxc
. "$REPO/bench/lib.sh"
. "$HERE/leaks.sh"
mkdir -p "$LXC_P" "$WORK/ct" "$WORK/vs" "$WORK/api" "$WORK/lxcl"
CLIENT_PIDS=()

lxc_names() { lxc-ls -P "$LXC_P" -1 2>/dev/null; }

lxc_remove() {  # NAME: stopped hard (nothing is measured), its overlay unmounted, so lxc-destroy only sees a mount point
    local root=$WORK/ct/$1/rootfs
    lxc-stop -n "$1" -P "$LXC_P" -k >/dev/null 2>&1
    if mountpoint -q "$root"; then umount "$root" || umount -l "$root"; fi
    mountpoint -q "$root" || lxc-destroy -n "$1" -P "$LXC_P" >/dev/null 2>&1
    rm -rf "${WORK:?}/ct/$1"
}

cleanup() {
    local rc=$? p g
    trap - EXIT INT TERM
    set +e
    for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${CLIENT_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    bench_agent_log "$rc"
    for g in $(lxc_names); do lxc_remove "$g"; done
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        printf 'plans: {}\nservers: []\n' > "$WORK/empty.yaml"
        vsctl apply "$WORK/empty.yaml" --prune --parallel "$PARALLEL" >/dev/null 2>&1
        for g in $(vsctl list 2>/dev/null | awk 'NR > 1 { print $1 }'); do vsctl destroy --force "$g" >/dev/null 2>&1; done
    fi
    bench_stop_agent
    bench_remove_work "$BRIDGE" "$LXC_BRIDGE"
    exit "$rc"
}
bench_on_exit cleanup

# --- the agent, the image, the lxc side's tree --------------------------------------------------------------------
log "starting a private vserverd (root $WORK, bridge $BRIDGE, subnet $SUBNET, cgroup parent $ID)"
bench_start_agent
vsctl image build busybox >/dev/null || die "vsctl image build busybox failed"
LOWER=$VSERVER_ROOT/images/busybox/rootfs
[ -L "$LOWER/sbin/init" ] || die "no busybox image tree at $LOWER"
ip link add "$LXC_BRIDGE" type bridge && ip link set "$LXC_BRIDGE" up || die "cannot make bridge $LXC_BRIDGE"

# The refusals the README documents for create and start (admission, a full subnet or id range): not errors.
REFUSAL='does not fit the memory pool|would bring the guests. limits to|the guest subnet .* is full|all [0-9]+ id ranges of'

usec() { echo "${EPOCHREALTIME/./}"; }

# One timed command of a client: "VERB USEC RC" to its latency file; its stdout in $OUTF, stderr in $ERRF. A failure
# goes to the client's refusal or error file with its first line of stderr.
op() {  # SIDE VERB NAME CMD...
    local side=$1 verb=$2 name=$3 t0 t1 rc
    shift 3
    t0=$EPOCHREALTIME
    "$@" > "$OUTF" 2> "$ERRF"
    rc=$?
    t1=$EPOCHREALTIME
    echo "$verb $(( ${t1/./} - ${t0/./} )) $rc" >> "$LAT"
    [ "$rc" = 0 ] && return 0
    if grep -Eq "$REFUSAL" "$ERRF"; then
        echo "$side $name $verb: refused: $(head -n 1 "$ERRF")" >> "$REFUSED"
    else
        echo "$side $name $verb: exit $rc: $(head -c 300 "$ERRF" | tr '\n' ' ')" >> "$ERRORS"
    fi
    return "$rc"
}

# exec must answer with the guest's own name.
check_exec() {  # SIDE NAME
    local got
    got=$(< "$OUTF")
    [ "$got" = "$2" ] && return 0
    echo "$1 $2 exec: answered '${got:0:100}' instead of its name" >> "$ERRORS"
    return 1
}

# Client K's files: latencies, errors, refusals, names used, and its scratch output.
client_files() {  # DIR K
    LAT=$1/lat.$2 ERRORS=$1/errors.$2 REFUSED=$1/refused.$2 NAMES=$1/names.$2 OUTF=$1/out.$2 ERRF=$1/err.$2
    : > "$LAT"; : > "$ERRORS"; : > "$REFUSED"; : > "$NAMES"
}

# One call of the REST API: the answer on stdout; an error answer (the agent's JSON, one line) on stderr and exit 1.
api() {  # METHOD PATH [JSON]
    local out
    if out=$(curl -sS --fail-with-body --unix-socket "$SOCK" -X "$1" ${3:+-H 'Content-Type: application/json' --data "$3"} \
        "http://vserverd/v1/$2"); then
        printf '%s\n' "$out"
    else
        printf '%s\n' "$out" >&2
        return 1
    fi
}

# The agent's verbs as each side gives them: vsctl, or the REST API with curl (exec is vsctl's on both: curl speaks no
# WebSocket).
vserver_verb() {  # VERB NAME
    case $1 in
        create | start | stop | destroy) vsctl "$1" "$2" ;;
        destroy-force) vsctl destroy --force "$2" ;;
        exec) vsctl exec "$2" -- hostname ;;
    esac
}
api_verb() {  # VERB NAME
    case $1 in
        create) api POST guests "{\"name\":\"$2\"}" ;;
        start | stop) api POST "guests/$2/$1" ;;
        destroy) api DELETE "guests/$2" ;;
        destroy-force) api DELETE "guests/$2?force=true" ;;
        exec) vsctl exec "$2" -- hostname ;;
    esac
}

guest_client() {  # SIDE (vserver or api) NAME_PREFIX DIR K END_USEC
    local side=$1 prefix=$2 k=$4 end=$5 i=0 n ok
    client_files "$3" "$k"
    while [ "$(usec)" -lt "$end" ]; do
        # Each name twice in a row: a new guest takes the name (veth, cgroup, dirs) the last one just gave up.
        i=$((i + 1)) n=$prefix$k-$(( (i + 1) / 2 )) ok=1
        [ $((i % 2)) = 1 ] && echo "$n" >> "$NAMES"
        op "$side" create "$n" "${side}_verb" create "$n" || continue
        if op "$side" start "$n" "${side}_verb" start "$n"; then
            op "$side" exec "$n" "${side}_verb" exec "$n" && check_exec "$side" "$n"
            op "$side" stop "$n" "${side}_verb" stop "$n" || ok=0
        fi
        if [ "$ok" = 1 ]; then op "$side" destroy "$n" "${side}_verb" destroy "$n"
        else op "$side" destroy "$n" "${side}_verb" destroy-force "$n"; fi
    done
}
vs_client() { guest_client vserver l "$WORK/vs" "$@"; }  # K END_USEC
api_client() { guest_client api a "$WORK/api" "$@"; }  # K END_USEC

# What an operator does for one LXC container with its own writable layer over the shared image tree, a veth on a
# bridge with an address, the same /proc and /sys as a vserver.
lxc_create() {  # NAME ADDRESS
    local d=$WORK/ct/$1
    mkdir -p "$d/upper" "$d/work" "$d/rootfs" || return 1
    mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$d/upper,workdir=$d/work" "$d/rootfs" || return 1
    cat > "$d/config" <<EOF || return 1
lxc.uts.name = $1
lxc.rootfs.path = dir:$d/rootfs
lxc.init.cmd = /sbin/init
lxc.net.0.type = veth
lxc.net.0.link = $LXC_BRIDGE
lxc.net.0.flags = up
lxc.net.0.ipv4.address = $2/22
lxc.mount.auto = proc:mixed sys:ro
lxc.autodev = 1
lxc.log.file = $d/lxc.log
lxc.log.level = WARN
EOF
    lxc-create -n "$1" -P "$LXC_P" -t none -f "$d/config"
}

lxc_destroy() {  # NAME
    local d=$WORK/ct/$1
    umount "$d/rootfs" && lxc-destroy -n "$1" -P "$LXC_P" && rm -rf "$d"
}

lxc_address() { echo "$LXC_NET.$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; }  # INDEX (0..999)

lxc_client() {  # K END_USEC
    local k=$1 end=$2 i=0 n ok addr
    client_files "$WORK/lxcl" "$k"
    addr=$(lxc_address "$k")
    while [ "$(usec)" -lt "$end" ]; do
        i=$((i + 1)) n=$ID-l$k-$(( (i + 1) / 2 )) ok=1
        [ $((i % 2)) = 1 ] && echo "$n" >> "$NAMES"
        if ! op lxc create "$n" lxc_create "$n" "$addr"; then lxc_remove "$n"; continue; fi
        if op lxc start "$n" lxc-start -n "$n" -P "$LXC_P" -d; then
            op lxc exec "$n" lxc-attach -n "$n" -P "$LXC_P" -- hostname && check_exec lxc "$n"
            op lxc stop "$n" lxc-stop -n "$n" -P "$LXC_P" || ok=0
        fi
        [ "$ok" = 1 ] || lxc-stop -n "$n" -P "$LXC_P" -k >/dev/null 2>&1
        op lxc destroy "$n" lxc_destroy "$n" || lxc_remove "$n"
    done
}

# While the clients run: one list every half second, timed ("USEC RC" lines in DIR/listlat).
lister() {  # DIR END_USEC CMD...
    local dir=$1 end=$2 t0 t1 rc
    shift 2
    : > "$dir/listlat"
    while [ "$(usec)" -lt "$end" ]; do
        t0=$EPOCHREALTIME
        "$@" > /dev/null 2>&1
        rc=$?
        t1=$EPOCHREALTIME
        echo "$(( ${t1/./} - ${t0/./} )) $rc" >> "$dir/listlat"
        sleep 0.5
    done
}

# Runs CLIENTS clients of one side, and the lister, until DURATION has passed (each client finishes its current
# cycle); prints the wall time in microseconds.
run_clients() {  # FUNCTION DIR LIST_CMD...
    local f=$1 dir=$2 k t0 end
    shift 2
    t0=$(usec)
    end=$(( t0 + DURATION * 1000000 ))
    CLIENT_PIDS=()
    for k in $(seq "$CLIENTS"); do
        "$f" "$k" "$end" &
        CLIENT_PIDS+=($!)
    done
    lister "$dir" "$end" "$@" &
    CLIENT_PIDS+=($!)
    for k in "${CLIENT_PIDS[@]}"; do wait "$k"; done
    CLIENT_PIDS=()
    echo $(( $(usec) - t0 ))
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }  # PID: user + system, in clock ticks

# "VERB COUNT P50_MS P99_MS" for every verb of one side's latency files (successful operations only), nearest rank.
verb_stats() {  # DIR
    cat "$1"/lat.* | awk '$3 == 0 { print $1, $2 }' | sort -k1,1 -k2,2n | awk '
        function flush() { if (n) printf "%s %d %.1f %.1f\n", v, n, a[int((n * 50 + 99) / 100)] / 1000, a[int((n * 99 + 99) / 100)] / 1000 }
        $1 != v { flush(); v = $1; n = 0 }
        { a[++n] = $2 }
        END { flush() }'
}

stat_of() { awk -v v="$2" -v f="$3" '$1 == v { print $f; found = 1 } END { if (!found) print "-" }' "$1"; }  # FILE VERB FIELD
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
ops_per_s() { awk -v n="$1" -v us="$2" 'BEGIN { printf "%.1f", n / (us / 1e6) }'; }
median_ms() { sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.1f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) / 1000; else print "-" }'; }

# --- the loops ------------------------------------------------------------------------------------------------------
# One vserver leg: its wall time, the agent's CPU time (ms) during it, and the leak check after it.
vs_leg() {  # CLIENT_FUNCTION DIR
    local t0
    t0=$(cpu_ticks "$AGENT_PID")
    run_clients "$1" "$2" curl -sf --unix-socket "$SOCK" -o /dev/null http://vserverd/v1/guests > "$2/wall"
    echo $(( ($(cpu_ticks "$AGENT_PID") - t0) * 1000 / $(getconf CLK_TCK) )) > "$2/agent_cpu_ms"
    cat "$2"/names.* > "$2/names"
    bench_leaks "$2/names" > "$2/leaks"
}
log "vserver loop (vsctl): $CLIENTS clients x create/start/exec/stop/destroy for $DURATION s"
vs_leg vs_client "$WORK/vs"
VS_LEAK_RC=0
[ -s "$WORK/vs/leaks" ] && VS_LEAK_RC=1
if [ "$SKIP_API" != 1 ]; then
    log "vserver loop (API with curl, exec with vsctl): $CLIENTS clients for $DURATION s"
    vs_leg api_client "$WORK/api"
    [ -s "$WORK/api/leaks" ] && VS_LEAK_RC=1
fi

LXC_LEAK_RC=0 LXC_LEAKS=""
if [ "$SKIP_LXC" != 1 ]; then
    log "lxc loop: $CLIENTS clients x create/start/attach/stop/destroy for $DURATION s"
    run_clients lxc_client "$WORK/lxcl" lxc-ls -P "$LXC_P" --fancy > "$WORK/lxcl/wall"
    cat "$WORK"/lxcl/names.* > "$WORK/lxcl/names"
    # The same questions of the lxc side: containers, overlay mounts, interfaces on its bridge, lxc's cgroups of them.
    LXC_LEAKS=$(
        lxc_names | sed 's/^/leak: container /'
        awk -v w="$WORK/ct/" 'index($5, w) == 1 { print "leak: mount " $5 }' /proc/self/mountinfo
        ip -o link show master "$LXC_BRIDGE" 2>/dev/null | awk -F': ' '{ print "leak: link on bridge: " $2 }'
        find /sys/fs/cgroup -maxdepth 3 -type d -name "*$ID-l*" 2>/dev/null | sed 's/^/leak: cgroup /'
        find "$WORK/ct" -mindepth 1 -maxdepth 1 | sed 's/^/leak: directory /')
    [ -z "$LXC_LEAKS" ] || LXC_LEAK_RC=1
fi

# --- list latency ---------------------------------------------------------------------------------------------------
LIST_LINES=()
if [ "$SKIP_LIST" != 1 ]; then
    {
        echo "plans:"
        echo "  load: { memory: 64M, pids: 100 }"
        echo "servers:"
    } > "$WORK/hosting.head"
    made=0
    for n in $LIST_COUNTS; do
        log "vserver list: vsctl apply of $n running guests (--parallel $PARALLEL)"
        { cat "$WORK/hosting.head"; for i in $(seq "$n"); do echo "  - { name: g$i, plan: load }"; done; } > "$WORK/hosting.yaml"
        vsctl apply "$WORK/hosting.yaml" --prune --parallel "$PARALLEL" > "$WORK/apply.out" 2>&1 \
            || { tail -n 5 "$WORK/apply.out" >&2; die "vsctl apply of $n guests failed"; }
        running=$(vsctl list | awk '$3 == "running"' | wc -l)
        [ "$running" = "$n" ] || die "$running of $n guests run after apply"
        for i in $(seq "$LIST_RUNS"); do
            t0=$EPOCHREALTIME; vsctl list > /dev/null; t1=$EPOCHREALTIME
            echo $(( ${t1/./} - ${t0/./} )) >> "$WORK/list.vsctl.$n"
            t0=$EPOCHREALTIME; curl -sf --unix-socket "$SOCK" -o /dev/null http://vserverd/v1/guests; t1=$EPOCHREALTIME
            echo $(( ${t1/./} - ${t0/./} )) >> "$WORK/list.api.$n"
        done
        made=$n
    done
    log "removing the $made list guests (apply --prune of an empty file)"
    printf 'plans: {}\nservers: []\n' > "$WORK/empty.yaml"
    vsctl apply "$WORK/empty.yaml" --prune --parallel "$PARALLEL" > /dev/null 2>&1 || die "removing the list guests failed"
    for i in $(seq "$made"); do echo "g$i"; done > "$WORK/list.names"
    bench_leaks "$WORK/list.names" > "$WORK/list.leaks" || VS_LEAK_RC=1

    if [ "$SKIP_LXC" != 1 ]; then
        made=0
        for n in $LIST_COUNTS; do
            log "lxc list: $n running containers"
            for i in $(seq $((made + 1)) "$n"); do
                name=$ID-g$i
                lxc_create "$name" "$(lxc_address $((i - 1)))" > /dev/null 2> "$WORK/lxc-create.err" \
                    || { cat "$WORK/lxc-create.err" >&2; die "lxc-create $name failed"; }
                lxc-start -n "$name" -P "$LXC_P" -d || { cat "$WORK/ct/$name/lxc.log" >&2; die "lxc-start $name failed"; }
            done
            made=$n
            running=$(lxc-ls -P "$LXC_P" --running -1 | wc -l)
            [ "$running" = "$n" ] || die "$running of $n lxc containers run"
            for i in $(seq "$LIST_RUNS"); do
                t0=$EPOCHREALTIME; lxc-ls -P "$LXC_P" --fancy > /dev/null; t1=$EPOCHREALTIME
                echo $(( ${t1/./} - ${t0/./} )) >> "$WORK/list.lxc.$n"
            done
        done
        log "removing the $made lxc containers"
        for g in $(lxc_names); do lxc_remove "$g"; done
    fi
fi

# --- report ---------------------------------------------------------------------------------------------------------
SIDES="vs" LABEL_vs="vserver (vsctl)" LABEL_api="vserver (API)" LABEL_lxcl="lxc"
[ "$SKIP_API" = 1 ] || SIDES+=" api"
[ "$SKIP_LXC" = 1 ] || SIDES+=" lxcl"
for d in vs api lxcl; do
    [ -d "$WORK/$d" ] || continue
    verb_stats "$WORK/$d" > "$WORK/$d.stats" 2>/dev/null
    cat "$WORK/$d"/errors.* 2>/dev/null >> "$WORK/errors"
    cat "$WORK/$d"/refused.* 2>/dev/null >> "$WORK/refused"
    # A list that failed during the loop is an error of that side too.
    [ -s "$WORK/$d/listlat" ] && awk -v s="$d" '$2 != 0 { print s " list during the loop: exit " $2 }' "$WORK/$d/listlat" >> "$WORK/errors"
done
touch "$WORK/errors" "$WORK/refused"
ops_of() { awk '{ s += $2 } END { print s + 0 }' "$WORK/$1.stats"; }
wall_of() { cat "$WORK/$1/wall" 2>/dev/null || echo 0; }
rate_of() { ops_per_s "$(ops_of "$1")" "$(wall_of "$1")"; }
list_during() {
    [ -s "$1" ] || { echo -; return; }
    awk '$2 == 0 { print $1 }' "$1" | sort -n |
        awk '{ a[NR] = $1 } END { if (NR) printf "p50 %.1f ms, p99 %.1f ms (%d lists)", a[int((NR * 50 + 99) / 100)] / 1000, a[int((NR * 99 + 99) / 100)] / 1000, NR }'
}

echo
echo "bench/load: $CLIENTS clients, $DURATION s per leg, on $(nproc) CPUs, $(uname -r), $(lxc-start --version 2>&1 | sed 's/^/lxc /'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
line1=$(printf '%-8s' "") line2=$(printf '%-8s' "verb")
for d in $SIDES; do
    eval "label=\$LABEL_$d"
    line1+=$(printf ' %22s  ' "$label") line2+=$(printf ' %6s %7s %7s  ' "ops" "p50 ms" "p99 ms")
done
[ "$SKIP_LXC" = 1 ] || { line1+=$(printf '  %s' "p50 lxc / vserver"); line2+=$(printf '  %8s %8s' "vsctl" "API"); }
echo "$line1"
echo "$line2"
for v in create start exec stop destroy; do
    row=$(printf '%-8s' "$v")
    for d in $SIDES; do
        row+=$(printf ' %6s %7s %7s  ' "$(stat_of "$WORK/$d.stats" "$v" 2)" "$(stat_of "$WORK/$d.stats" "$v" 3)" "$(stat_of "$WORK/$d.stats" "$v" 4)")
    done
    if [ "$SKIP_LXC" != 1 ]; then
        b=$(stat_of "$WORK/lxcl.stats" "$v" 3) api50=-
        [ "$SKIP_API" = 1 ] || api50=$(ratio "$b" "$(stat_of "$WORK/api.stats" "$v" 3)")
        row+=$(printf '  %8s %8s' "$(ratio "$b" "$(stat_of "$WORK/vs.stats" "$v" 3)")" "$api50")
    fi
    echo "$row"
done
for d in $SIDES; do
    eval "label=\$LABEL_$d"
    printf 'ops/s %-16s %6s (%d operations in %.0f s)' "$label" "$(rate_of "$d")" "$(ops_of "$d")" "$(awk -v u="$(wall_of "$d")" 'BEGIN { print u / 1e6 }')"
    [ "$d" != lxcl ] && [ "$SKIP_LXC" != 1 ] && printf '; vserver / lxc: %s' "$(ratio "$(rate_of "$d")" "$(rate_of lxcl)")"
    echo
done
for d in vs api; do
    [ -s "$WORK/$d/agent_cpu_ms" ] || continue
    eval "label=\$LABEL_$d"
    awk -v l="$label" -v c="$(cat "$WORK/$d/agent_cpu_ms")" -v u="$(wall_of "$d")" -v n="$(ops_of "$d")" \
        'BEGIN { printf "agent CPU, %s leg: %.1f s in %.0f s (%.0f%% of one core), %.1f ms per operation\n", l, c / 1000, u / 1e6, c * 1000 / u * 100, n ? c / n : 0 }'
done
echo "list during the loop, every 0.5 s:"
for d in $SIDES; do
    eval "label=\$LABEL_$d"
    printf '  %-16s %-22s %s\n' "$label" "$([ "$d" = lxcl ] && echo "lxc-ls --fancy" || echo "curl GET /v1/guests")" "$(list_during "$WORK/$d/listlat")"
done
VS_ERRORS=$(grep -Ec '^(vs|api|vserver) ' "$WORK/errors")
LXC_ERRORS=$(grep -Ec '^(lxc|lxcl) ' "$WORK/errors")
echo "errors: vserver $VS_ERRORS, lxc $LXC_ERRORS; documented refusals: $(wc -l < "$WORK/refused")"
[ -s "$WORK/errors" ] && sed 's/^/  /' "$WORK/errors" | head -n 50
[ -s "$WORK/refused" ] && sed 's/^/  /' "$WORK/refused" | head -n 10
echo "leak check, vserver (after each loop$([ "$SKIP_LIST" = 1 ] || echo " and after the list guests")): $([ "$VS_LEAK_RC" = 0 ] && echo clean || echo LEAKS)"
cat "$WORK"/vs/leaks "$WORK"/api/leaks "$WORK"/list.leaks 2>/dev/null | sed 's/^/  /' | head -n 50
[ "$SKIP_LXC" = 1 ] || echo "leak check, lxc (after the loop): $([ "$LXC_LEAK_RC" = 0 ] && echo clean || echo LEAKS)"
[ -n "$LXC_LEAKS" ] && echo "$LXC_LEAKS" | sed 's/^/  /' | head -n 50
if [ "$SKIP_LIST" != 1 ]; then
    echo
    printf '%-10s %12s %12s %16s %12s\n' "list, ms" "vsctl list" "API (curl)" "lxc-ls --fancy" "lxc / vsctl"
    for n in $LIST_COUNTS; do
        a=$(median_ms < "$WORK/list.vsctl.$n") api=$(median_ms < "$WORK/list.api.$n") b=-
        [ -s "$WORK/list.lxc.$n" ] && b=$(median_ms < "$WORK/list.lxc.$n")
        printf '%-10s %12s %12s %16s %12s\n' "$n guests" "$a" "$api" "$b" "$(ratio "$b" "$a")"
    done
    echo "(median of $LIST_RUNS; every guest running)"
fi
[ "$VS_ERRORS" = 0 ] && [ "$VS_LEAK_RC" = 0 ] && [ "$LXC_ERRORS" = 0 ] && [ "$LXC_LEAK_RC" = 0 ]
