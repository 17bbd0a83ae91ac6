# bench/lib.sh: what the whole-command benchmarks with a private vserverd share. Sourced (bash) after the script
# has set WORK (its temporary directory), ID (cgroup parent), BRIDGE, SUBNET and BIN (the built binaries).

now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

vsctl() { "$BIN/vsctl" "$@"; }

# The private agent's environment: its own state and run roots, bridge, subnet and cgroup parent under WORK.
export VSERVER_ROOT=$WORK/root VSERVER_RUN=$WORK/run VSERVER_BRIDGE=$BRIDGE VSERVER_SUBNET=$SUBNET VSERVER_CGROUP_PARENT=$ID
# vsctl must never start an agent of its own (one we would not know to kill).
export VSCTL_NO_AUTOSTART=1
SOCK=$VSERVER_RUN/agent.sock
AGENT_PID=""

# Starts vserverd (log in WORK/agent.log) and waits until it answers.
bench_start_agent() {
    local i
    mkdir -p "$VSERVER_ROOT" "$VSERVER_RUN"
    "$BIN/vserverd" > "$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    for i in $(seq 300); do
        [ -S "$SOCK" ] && vsctl host >/dev/null 2>&1 && return 0
        kill -0 "$AGENT_PID" 2>/dev/null || die "vserverd exited during startup"
        sleep 0.1
    done
    die "vserverd did not answer on $SOCK within 30 s"
}

# The agent's last lines after a failure (RC != 0).
bench_agent_log() {  # RC
    if [ "$1" != 0 ] && [ -s "$WORK/agent.log" ]; then
        echo "--- last lines of the agent's log ($WORK/agent.log):" >&2
        tail -n 15 "$WORK/agent.log" >&2
    fi
}

# SIGTERM to the agent, SIGKILL after 10 s.
bench_stop_agent() {
    local i
    [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null || return 0
    kill -TERM "$AGENT_PID" 2>/dev/null
    for i in $(seq 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
    AGENT_PID=""
}

# Whatever is left: the given bridges, the cgroup parent ID (v1 hierarchies and a v2-only host), mounts under WORK,
# WORK itself.
bench_remove_work() {  # BRIDGE...
    local b g
    for b in "$@"; do ip link show "$b" >/dev/null 2>&1 && ip link del "$b"; done
    for g in /sys/fs/cgroup/*/"$ID" /sys/fs/cgroup/"$ID"; do
        [ -d "$g" ] && find "$g" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    awk -v w="$WORK" '$2 == w || index($2, w "/") == 1 { print $2 }' /proc/self/mounts |
        sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$WORK"
}
