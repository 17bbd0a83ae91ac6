#!/usr/bin/env bash
# bench/cli-latency/run.sh: are vsctl's short verbs as fast as a C tool's?  One hyperfine run (-N, median of RUNS
# each), with a private agent holding GUESTS (20) running vservers (busybox /sbin/init) and one LXC container of the
# same busybox tree running beside them:
#
#   list     vsctl list                 curl GET /v1/guests (the same request)     lxc-ls -f
#   status   vsctl status NAME          curl GET /v1/guests/NAME                   lxc-info -n NAME
#   exec     vsctl exec NAME -- true                                               lxc-attach -n NAME -- true
#   start    a vserver whose command is /bin/true, started and seen to exit:
#              vsctl start NAME + curl POST /v1/guests/NAME/wait   (sh -c; vsctl start has no way to wait)
#              vsctl start NAME alone (returns once init runs; --prepare waits for the exit, unmeasured)
#              curl POST /v1/guests/NAME/start?wait=true (one call, as bench/start-latency)
#            against crun run of a copy of the same tree (OCI bundle from `crun spec`, args /bin/true)
#   floors   a NativeAOT hello world (built here, cached), curl file:///dev/null, vsctl --version (no agent call)
#
# Targets (issue "vsctl as a native program, and short verbs at the speed of a C tool"): vsctl list and status at or
# below curl's same request; vsctl exec at most 1.2x lxc-attach; vsctl start (to the exit) at or below crun run.
#
# needs: hyperfine crun lxc curl iproute2 util-linux (file, optional) + bin/vserverd bin/vsctl bin/vsinit (make build), and the
# .NET SDK with clang for the hello world (skipped with a note when it cannot be built).  Root.
#
# Environment: RUNS (30), WARMUP (3), GUESTS (20), KEEP_JSON=DIR (hyperfine's JSON), AOT_HELLO=PATH (a prebuilt
# hello world to use), AOT_CACHE (/var/cache/vserver-bench; empty: build in the work dir, keep nothing),
# SKIP_AOT=1 (no hello world leg).
set -euo pipefail

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
GUESTS=${GUESTS:-20}
AOT_CACHE=${AOT_CACHE-/var/cache/vserver-bench}
SKIP_AOT=${SKIP_AOT:-0}

BENCH=bench/cli-latency
. "$(dirname "$0")/../preamble.sh"
case $RUNS$WARMUP$GUESTS in *[!0-9]*) die "RUNS, WARMUP and GUESTS must be whole numbers" ;; esac
[ "$RUNS" -ge 2 ] && [ "$GUESTS" -ge 1 ] && [ "$GUESTS" -le 250 ] || die "RUNS must be 2 or more, GUESTS 1 to 250"
bench_require "vservers, an lxc container, crun, bridges, cgroups" \
    hyperfine crun lxc-create lxc-start lxc-stop lxc-destroy lxc-ls lxc-info lxc-attach lxc-wait curl ip awk \
    mountpoint unshare

# --- networks, work dir and cleanup ------------------------------------------------------------------------------
# The agent's /24 is outside the 10.200-10.249 the tests pick from and the other benches' nets; the lxc bridge has no
# address and no uplink.
SUBNET=10.198.0.0/24
[ -z "$(ip route show root "$SUBNET")" ] || die "something on this host already routes into $SUBNET: $(ip route show root "$SUBNET" | head -n 1)"
WORK=$(mktemp -d /tmp/vscli.XXXXXX)
ID=vscli-$$                      # cgroup parent; the lxc and crun names start with it
BRIDGE=vscl$$                    # the agent's bridge (<= 15 chars)
LXC_BRIDGE=vscll$$               # the lxc container's bridge, made by this script
. "$REPO/bench/lib.sh"
LXC_P=$WORK/lxc
LXC_NAME=$ID-c1
CRUN_ID=$ID-crun
LXC_MADE=0
mkdir -p "$LXC_P" "$WORK/ct" "$WORK/json" "$WORK/state/crun"

api() { curl -sf --max-time 60 --unix-socket "$SOCK" -X "$1" "http://localhost$2"; }
# Every guest the private agent knows: all of them are this script's.
agent_guests() { api GET /v1/guests 2>/dev/null | grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'; }

cleanup() {
    local rc=$? g
    trap - EXIT INT TERM
    set +e
    bench_agent_log "$rc"
    # A crun run cut short (Ctrl-C in the middle of hyperfine) leaves its container; `run` deletes it otherwise.
    [ -d "$WORK/state/crun/$CRUN_ID" ] && crun --root "$WORK/state/crun" delete -f "$CRUN_ID" >/dev/null 2>&1
    if [ "$LXC_MADE" = 1 ]; then
        lxc-stop -n "$LXC_NAME" -P "$LXC_P" -k >/dev/null 2>&1
        # its own overlay first, so that lxc-destroy (which deletes a dir rootfs) only ever sees the empty mount point
        mountpoint -q "$WORK/ct/rootfs" && { umount "$WORK/ct/rootfs" || umount -l "$WORK/ct/rootfs"; }
        mountpoint -q "$WORK/ct/rootfs" || lxc-destroy -n "$LXC_NAME" -P "$LXC_P" >/dev/null 2>&1
    fi
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        g=$(agent_guests | wc -l)
        [ "$g" = 0 ] || log "destroying $g guests"
        agent_guests | xargs -r -P 4 -I{} curl -s --max-time 60 --unix-socket "$SOCK" -X DELETE \
            "http://localhost/v1/guests/{}?force=true" -o /dev/null
        # The agent's nftables table, resolver and bridge outlive it by design: teardown removes them (and stops it).
        vsctl host teardown >/dev/null 2>&1
    fi
    bench_stop_agent
    nft list table ip "vserver_$BRIDGE" >/dev/null 2>&1 && nft delete table ip "vserver_$BRIDGE"
    for g in /sys/fs/cgroup/*/"$CRUN_ID" /sys/fs/cgroup/"$CRUN_ID"; do [ -d "$g" ] && rmdir "$g" 2>/dev/null; done
    bench_remove_work "$BRIDGE" "$LXC_BRIDGE"
    exit "$rc"
}
bench_on_exit cleanup

# --- the NativeAOT hello world (the floor of a .NET program that starts, writes a line and exits) -----------------
# Built once per SDK version and kept under AOT_CACHE; a failed build only drops that leg.
AOT_NOTE=""
build_hello() {
    local dir=$WORK/aot rid out
    case $(uname -m) in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) AOT_NOTE="no RID for $(uname -m)"; return 1 ;; esac
    command -v dotnet >/dev/null 2>&1 || { AOT_NOTE="no dotnet on the PATH"; return 1; }
    out=$WORK/aot/out
    if [ -n "$AOT_CACHE" ]; then
        out=$AOT_CACHE/aot-hello-$(dotnet --version 2>/dev/null)-$rid
        [ -x "$out/hello" ] && { HELLO=$out/hello; return 0; }
    fi
    mkdir -p "$dir"
    cat > "$dir/hello.csproj" <<'EOF'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <PublishAot>true</PublishAot>
    <InvariantGlobalization>true</InvariantGlobalization>
    <ImplicitUsings>disable</ImplicitUsings>
  </PropertyGroup>
</Project>
EOF
    echo 'System.Console.WriteLine("hello");' > "$dir/Program.cs"
    log "building the NativeAOT hello world (dotnet publish, once per SDK; cached in ${AOT_CACHE:-nothing})"
    # No build servers that would outlive this script.
    if ! ( cd "$dir" && DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_CLI_USE_MSBUILD_SERVER=0 \
            MSBUILDDISABLENODEREUSE=1 timeout 900 dotnet publish -c Release -r "$rid" -o "$dir/out" \
            -nodeReuse:false -p:UseSharedCompilation=false ) > "$WORK/aot.log" 2>&1 ||
            [ "$("$dir/out/hello" 2>/dev/null)" != hello ]; then
        tail -n 5 "$WORK/aot.log" >&2
        AOT_NOTE="dotnet publish of the hello world failed (output above)"
        return 1
    fi
    if [ -n "$AOT_CACHE" ] && mkdir -p "$out" 2>/dev/null && cp "$dir/out/hello" "$out/hello.tmp" 2>/dev/null; then
        mv "$out/hello.tmp" "$out/hello"
    else
        out=$dir/out
    fi
    HELLO=$out/hello
}
HELLO=${AOT_HELLO:-}
if [ "$SKIP_AOT" = 1 ]; then
    AOT_NOTE="SKIP_AOT=1"
elif [ -n "$HELLO" ]; then
    [ -x "$HELLO" ] || die "AOT_HELLO=$HELLO is not an executable"
else
    build_hello || HELLO=""
fi

# --- the agent, the image, the guests ---------------------------------------------------------------------------
log "starting a private vserverd (root $WORK, bridge $BRIDGE, subnet $SUBNET, cgroup parent $ID)"
bench_start_agent
vsctl image build busybox >/dev/null || die "vsctl image build busybox failed"
# The image store keeps the image's tree here: the lower layer of every vserver, and of the lxc container below.
LOWER=$VSERVER_ROOT/images/busybox/rootfs
[ -L "$LOWER/sbin/init" ] && [ -x "$LOWER/etc/init.d/rcS" ] || die "no busybox image tree at $LOWER"
log "$GUESTS vservers (busybox init) and one with --cmd /bin/true --restart no"
for i in $(seq "$GUESTS"); do
    vsctl create "v$i" >/dev/null || die "vsctl create v$i failed"
    vsctl start "v$i" >/dev/null || die "vsctl start v$i failed"
done
vsctl create t1 --cmd /bin/true --restart no >/dev/null || die "vsctl create t1 failed"

# LXC: one container over the same tree, as bench/density makes them: privileged (no id map), its own overlay over
# the agent's image tree, the same busybox init and rcS, a veth on a bridge with no address.
ip link add "$LXC_BRIDGE" type bridge && ip link set "$LXC_BRIDGE" up || die "cannot make bridge $LXC_BRIDGE"
mkdir -p "$WORK/ct/upper" "$WORK/ct/work" "$WORK/ct/rootfs"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$WORK/ct/upper,workdir=$WORK/ct/work" "$WORK/ct/rootfs"
cat > "$WORK/ct/config" <<EOF
lxc.uts.name = c1
lxc.rootfs.path = dir:$WORK/ct/rootfs
lxc.init.cmd = /sbin/init
lxc.environment = CONSOLE=/dev/console
lxc.net.0.type = veth
lxc.net.0.link = $LXC_BRIDGE
lxc.net.0.flags = up
lxc.mount.auto = proc:mixed sys:ro
lxc.autodev = 1
lxc.console.logfile = $WORK/ct/console.log
lxc.log.file = $WORK/ct/lxc.log
lxc.log.level = WARN
EOF
LXC_MADE=1
lxc-create -n "$LXC_NAME" -P "$LXC_P" -t none -f "$WORK/ct/config" >/dev/null || die "lxc-create failed"
lxc-start -n "$LXC_NAME" -P "$LXC_P" -d || { cat "$WORK/ct/lxc.log" >&2; die "lxc-start failed"; }
lxc-wait -n "$LXC_NAME" -P "$LXC_P" -s RUNNING -t 60 || die "the lxc container is not RUNNING after 60 s"

# Every guest's rcS has run (its marker on the console) before anything is measured.
MARKER="busybox init: /etc/init.d/rcS starting on"
deadline=$((SECONDS + 120))
while :; do
    waiting=""
    for i in $(seq "$GUESTS"); do
        grep -qF "$MARKER v$i" "$VSERVER_ROOT/guests/v$i/console.log" 2>/dev/null || waiting="$waiting v$i"
    done
    grep -qF "$MARKER c1" "$WORK/ct/console.log" 2>/dev/null || waiting="$waiting $LXC_NAME"
    [ -n "$waiting" ] || break
    [ "$SECONDS" -lt "$deadline" ] || die "no rcS marker after 120 s from:$waiting"
    sleep 0.2
done
RUNNING=$(vsctl list | awk 'NR > 1 && / running /' | wc -l)
[ "$RUNNING" = "$GUESTS" ] || die "vsctl list shows $RUNNING running guests, not $GUESTS"

# --- crun: an OCI bundle over a copy of the same tree ------------------------------------------------------------
# (a copy, so that crun's mount points never touch the agent's image layer); the bundle as bench/start-latency
# makes it: `crun spec` defaults, args /bin/true, no terminal, read-only root.
mkdir -p "$WORK/bundle"
cp -a "$LOWER" "$WORK/bundle/rootfs"
( cd "$WORK/bundle" && crun spec )
awk '
    /"terminal":/ { sub(/true/, "false") }
    /"args": \[/  { print; getline; sub(/"[^"]*"/, "\"/bin/true\"") }
    /"readonly":/ { sub(/false/, "true") }
    { print }
' "$WORK/bundle/config.json" > "$WORK/bundle/config.json.new"
mv "$WORK/bundle/config.json.new" "$WORK/bundle/config.json"
grep -q '"/bin/true"' "$WORK/bundle/config.json" && grep -q '"terminal": false' "$WORK/bundle/config.json" ||
    die "could not edit the config.json written by crun spec"

# crun 1.8 refuses a hybrid cgroup host while /sys/fs/cgroup/unified is mounted (see bench/README.md,
# start-latency): the hyperfine run and every trial run happen in a private mount namespace without it.  The agent
# and the lxc container run outside; the clients only talk to them over sockets.
in_cgroup_ns() {
    unshare -m --propagation private sh -c '
        if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 1; fi
        exec "$@"' sh "$@"
}

# --- the legs ---------------------------------------------------------------------------------------------------
# leg KEY LABEL COMMAND [PREPARE]: COMMAND (and PREPARE, run unmeasured before each run) are split into words as
# hyperfine -N does (quotes work; no other shell syntax).  One unmeasured trial run first: a failing leg shows its
# output, is left out of the hyperfine run and shows as "failed" (exit status 1).
LEGS=() RUN_LEGS=()
FAILED=0
declare -A LABEL CMD PREP STATUS MS USER_MS SYS_MS
leg() {
    local key=$1 label=$2 cmd=$3 prep=${4:-true} out
    LEGS+=("$key"); LABEL[$key]=$label; CMD[$key]=$cmd; PREP[$key]=$prep; STATUS[$key]=failed
    if ! out=$(eval "in_cgroup_ns $prep" 2>&1 && eval "in_cgroup_ns $cmd" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "$BENCH: $label: the command failed (output above); leg skipped" >&2
        FAILED=1; return 0
    fi
    RUN_LEGS+=("$key")
}
skipped_leg() {  # KEY LABEL WHY: not an error (the hello world may not build here)
    LEGS+=("$1"); LABEL[$1]=$2; STATUS[$1]="skipped"
    echo "$BENCH: $2: $3; leg skipped" >&2
}

CURL="curl -sf -o /dev/null --unix-socket $SOCK"
leg vslist "vsctl list" "$BIN/vsctl list"
leg curllist "curl GET /v1/guests" "$CURL http://localhost/v1/guests"
leg lxcls "lxc-ls -f" "lxc-ls -P $LXC_P -f"
leg vsstatus "vsctl status NAME" "$BIN/vsctl status v1"
leg curlstatus "curl GET /v1/guests/NAME" "$CURL http://localhost/v1/guests/v1"
leg lxcinfo "lxc-info -n NAME" "lxc-info -n $LXC_NAME -P $LXC_P"
leg vsexec "vsctl exec NAME -- true" "$BIN/vsctl exec v1 -- true"
leg lxcattach "lxc-attach -n NAME -- true" "lxc-attach -n $LXC_NAME -P $LXC_P -- true"
WAIT="$CURL -X POST http://localhost/v1/guests/t1/wait"
# The three legs of t1 all prepare with the wait (unmeasured; it answers at once when t1 has exited): after a run of
# "vsctl start" alone, t1 may still be running when the next leg's first run starts it.
leg vsstartwait "vsctl start + curl .../wait (sh -c)" "sh -c '$BIN/vsctl start t1 >/dev/null && exec $WAIT'" "$WAIT"
leg vsstart "vsctl start (returns at running)" "$BIN/vsctl start t1" "$WAIT"
leg apistart "curl POST .../start?wait=true" "$CURL -X POST 'http://localhost/v1/guests/t1/start?wait=true'" "$WAIT"
leg crun "crun run" "crun --root $WORK/state/crun run --bundle $WORK/bundle $CRUN_ID"
if [ -n "$HELLO" ]; then
    leg hello "NativeAOT hello world" "$HELLO"
else
    skipped_leg hello "NativeAOT hello world" "$AOT_NOTE"
fi
leg curlfile "curl file:///dev/null" "curl -sf -o /dev/null file:///dev/null"
leg vsversion "vsctl --version (no agent call)" "$BIN/vsctl --version"

# --- the one hyperfine run --------------------------------------------------------------------------------------
if [ "${#RUN_LEGS[@]}" -gt 0 ]; then
    args=()
    for key in "${RUN_LEGS[@]}"; do args+=(--command-name "${LABEL[$key]}" --prepare "${PREP[$key]}" "${CMD[$key]}"); done
    log "hyperfine: ${#RUN_LEGS[@]} commands, --warmup $WARMUP --runs $RUNS each"
    if in_cgroup_ns hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic \
            --export-json "$WORK/json/all.json" "${args[@]}" >&2; then
        for key in "${RUN_LEGS[@]}"; do STATUS[$key]=ok; done
    else
        echo "$BENCH: hyperfine failed" >&2
        FAILED=1
    fi
fi
[ -z "${KEEP_JSON:-}" ] || { mkdir -p "$KEEP_JSON" && cp "$WORK"/json/*.json "$KEEP_JSON"/ 2>/dev/null || true; }

# Median, mean user and mean system CPU time (ms) from the JSON, in the order hyperfine ran the commands.
if [ -s "$WORK/json/all.json" ]; then
    i=0
    while read -r ms user sys; do
        MS[${RUN_LEGS[$i]}]=$ms USER_MS[${RUN_LEGS[$i]}]=$user SYS_MS[${RUN_LEGS[$i]}]=$sys; i=$((i + 1))
    done < <(awk -F: '$1 ~ /^ *"(median|user|system)"$/ { k = $1; gsub(/[ "]/, "", k); v = $2; gsub(/[ ,]/, "", v); x[k] = v * 1000 }
                      $1 ~ /^ *"system"$/ { printf "%.2f %.2f %.2f\n", x["median"], x["user"], x["system"] }' "$WORK/json/all.json")
fi

# --- tables -----------------------------------------------------------------------------------------------------
ok() { [ "${STATUS[$1]:-}" = ok ] && [ -n "${MS[$1]:-}" ]; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v l="$2" 'BEGIN { print (r <= l ? "met" : "NOT met") }'; }
row() {  # KEY
    if ok "$1"; then printf '  %-42s %8s %8s %8s\n' "${LABEL[$1]}" "${MS[$1]}" "${USER_MS[$1]}" "${SYS_MS[$1]}"
    else printf '  %-42s %8s\n' "${LABEL[$1]}" "${STATUS[$1]}"; fi
}
# ratio_row LABEL KEY BASEKEY [TARGET]: KEY's median over BASEKEY's, and "<= TARGET met/NOT met" when given
ratio_row() {
    local r="-" t="" v=""
    if ok "$2" && ok "$3"; then r=$(ratio "${MS[$2]}" "${MS[$3]}"); fi
    if [ -n "${4:-}" ]; then t="<= $4"; [ "$r" = - ] || v=$(verdict "$r" "$4"); fi
    printf '%-52s %6s %8s  %s\n' "$1" "$r" "$t" "$v"
}
diff_row() {  # LABEL KEY BASEKEY
    local d="-"
    if ok "$2" && ok "$3"; then d=$(awk -v a="${MS[$2]}" -v b="${MS[$3]}" 'BEGIN { printf "%+.2f", a - b }'); fi
    printf '%-52s %6s\n' "$1" "$d"
}

VSCTL_SIZE=$(stat -c %s "$BIN/vsctl")
# (file(1) is not in the Makefile's package list: without it, the ELF magic alone)
VSCTL_FILE=$(file -b "$BIN/vsctl" 2>/dev/null) || VSCTL_FILE="(no file(1) here)"
[ "$(head -c 4 "$BIN/vsctl" | tail -c 3)" = ELF ] && VSCTL_ELF=ELF || VSCTL_ELF=""
case $VSCTL_ELF in
    ELF) if grep -qa libhostfxr "$BIN/vsctl"; then VSCTL_KIND="not native: a .NET apphost (needs the runtime)"
          else VSCTL_KIND="native (NativeAOT: no hostfxr, libc and libm only)"; fi ;;
    *) VSCTL_KIND="not native" ;;
esac
HELLO_SIZE=""
[ -z "$HELLO" ] || HELLO_SIZE=$(stat -c %s "$HELLO")

echo
echo "host: $(uname -r), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); $(hyperfine --version);" \
     "$(crun --version | head -n1); lxc $(lxc-start --version 2>&1); $(curl --version | head -n1 | cut -d' ' -f1-2);" \
     "commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ changes)')"
echo "bin/vsctl: $VSCTL_SIZE bytes ($(awk -v b="$VSCTL_SIZE" 'BEGIN { printf "%.1f MiB", b / 1048576 }')), $VSCTL_KIND"
echo "  file: $VSCTL_FILE"
[ -z "$HELLO" ] || echo "NativeAOT hello world: $HELLO_SIZE bytes ($(awk -v b="$HELLO_SIZE" 'BEGIN { printf "%.1f MiB", b / 1048576 }')), $HELLO"
[ -z "$AOT_NOTE" ] || echo "NativeAOT hello world: not measured: $AOT_NOTE"
echo
printf '%-44s %8s %8s %8s\n' "$RUNS runs (ms)" median user sys
echo "list ($((GUESTS + 1)) guests, $GUESTS running / 1 lxc container)"
row vslist; row curllist; row lxcls
echo "status of one running guest"
row vsstatus; row curlstatus; row lxcinfo
echo "exec true in it"
row vsexec; row lxcattach
echo "start /bin/true and see it exit"
row vsstartwait; row vsstart; row apistart; row crun
echo "floors: start a process, print, exit"
row hello; row curlfile; row vsversion
echo "(median: of the wall-clock times; user, sys: the mean CPU time of the process and its children)"
echo
printf '%-52s %6s %8s\n' "ratios of the medians" ratio target
ratio_row "vsctl list / curl GET /v1/guests" vslist curllist 1.00
ratio_row "vsctl list / lxc-ls -f" vslist lxcls
ratio_row "vsctl status / curl GET /v1/guests/NAME" vsstatus curlstatus 1.00
ratio_row "vsctl status / lxc-info -n NAME" vsstatus lxcinfo
ratio_row "vsctl exec / lxc-attach" vsexec lxcattach 1.20
ratio_row "vsctl start + curl .../wait / crun run" vsstartwait crun 1.00
ratio_row "vsctl start (returns at running) / crun run" vsstart crun
ratio_row "curl POST .../start?wait=true / crun run" apistart crun
ratio_row "NativeAOT hello world / curl file:///dev/null" hello curlfile
ratio_row "vsctl --version / NativeAOT hello world" vsversion hello
echo
printf '%-52s %6s\n' "where the time goes (difference of medians)" "+ms"
diff_row "vsctl's own start-up: --version over hello world" vsversion hello
diff_row "vsctl list over vsctl --version" vslist vsversion
diff_row "curl GET /v1/guests over curl file:///dev/null" curllist curlfile
diff_row "vsctl status over vsctl --version" vsstatus vsversion
diff_row "curl GET /v1/guests/NAME over curl file:///dev/null" curlstatus curlfile
diff_row "vsctl exec over vsctl --version" vsexec vsversion
diff_row "vsctl start + wait over vsctl start alone" vsstartwait vsstart
exit "$FAILED"
