#!/usr/bin/env bash
# bench/promotion/run.sh: how long is a customer's server away while vsctl promote
# makes it a domain?
#
# A busybox vserver (--memory 256M) with DATA_MB of data in its files (default
# 100: the "100 MB rootfs") serves a page with httpd, started by its own init
# (/etc/rc.local). A prober on the host asks http://ADDRESS/ every ~20 ms
# (curl, 0.2 s timeout) and logs each answer's time (CLOCK_BOOTTIME, /proc/uptime).
# Downtime = the gap between the last answer before the change and the first
# answer after it, on the same address, as a customer would see it. Side by
# side in one run, RUNS times each (median, min, max):
#
#   vsctl restart          the vserver stopped and started again (the floor: its
#                          own init's stop and start; no kernel boot)
#   promote (virtiofs)     vsctl promote NAME: stop, virtiofsd on the vserver's
#                          files, the domain's kernel boots (TCG here), its init
#                          starts httpd
#   promote --copy         the same with the files copied into an ext4 image first
#   demote                 vsctl demote NAME back (after each promotion)
#
# then promote --copy once more at each size of GROW_MB (default "200 400"), to
# show how the copy grows with the files (the shared mode copies nothing).
#
# needs: curl iproute2 qemu-system-x86 qemu-utils (virtiofsd) + bin/vserverd
#        bin/vsctl (make build). Root. Packages come from the Makefile.
# Environment: RUNS (5), DATA_MB (100), GROW_MB ("200 400"), TIMEOUT (120 s per wait),
# KEEP_PROBES=DIR (copy each prober log there).
set -euo pipefail

RUNS=${RUNS:-5}
DATA_MB=${DATA_MB:-100}
GROW_MB=${GROW_MB:-200 400}
TIMEOUT=${TIMEOUT:-120}

BENCH=bench/promotion
. "$(dirname "$0")/../preamble.sh"
bench_require "vservers, domains, taps, bridge, cgroups" curl ip awk qemu-system-x86_64
[ -x /usr/lib/qemu/virtiofsd ] || die "missing /usr/lib/qemu/virtiofsd (qemu-system-common; make deps)"
case $RUNS$DATA_MB$TIMEOUT${GROW_MB// /} in *[!0-9]*) die "RUNS, DATA_MB, GROW_MB and TIMEOUT must be whole numbers" ;; esac
[ "$RUNS" -ge 1 ] || die "RUNS must be 1 or more"

# --- work dir and cleanup ---------------------------------------------------
WORK=$(mktemp -d /tmp/vspromo.XXXXXX)
ID=vspromo-$$
BRIDGE=vspr$$
PROBE_PID=""
SUBNET=10.251.0.0/24
. "$REPO/bench/lib.sh"
G=web

stop_probe() {
    if [ -n "$PROBE_PID" ]; then
        kill "$PROBE_PID" 2>/dev/null || true
        wait "$PROBE_PID" 2>/dev/null || true
        PROBE_PID=""
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_probe
    bench_agent_log "$rc"
    [ -n "$AGENT_PID" ] && vsctl destroy --force "$G" >/dev/null 2>&1
    bench_stop_agent
    bench_remove_work "$BRIDGE"
    exit "$rc"
}
bench_on_exit cleanup

# --- the agent, the kernel, the image, the web server ------------------------
log "starting a private vserverd (root $WORK, bridge $BRIDGE, cgroup parent $ID)"
bench_start_agent
log "building the domain kernel and the busybox image"
vsctl kernel build default >/dev/null
vsctl image build busybox >/dev/null

# A vserver serving a page, with DATA_MB of files (incompressible) beside it.
make_web() {  # DATA_MB
    vsctl create "$G" --memory 256M >/dev/null
    vsctl start "$G" >/dev/null
    # (one line: an exec argument may not hold a newline)
    vsctl exec "$G" -- sh -c "mkdir -p /srv/www && echo 'page of $G' > /srv/www/index.html && printf '#!/bin/sh\nhttpd -p 80 -h /srv/www\n' > /etc/rc.local && chmod 755 /etc/rc.local && dd if=/dev/urandom of=/srv/data bs=1M count=$1 2>/dev/null && httpd -p 80 -h /srv/www"
    IP=$(vsctl status "$G" -f json | sed -n 's/.*"ipv4": *"\([^"]*\)".*/\1/p')
    [ -n "$IP" ] || die "no address for $G"
    wait_page
}

wait_page() {
    local n=0
    until curl -sf --max-time 0.5 -o /dev/null "http://$IP/"; do
        n=$((n + 1)); [ "$n" -lt $((TIMEOUT * 10)) ] || die "http://$IP/ never answered"
        sleep 0.1
    done
}

# probe FILE: one line per request, "MS ok|fail", MS taken when the answer (or the timeout) came.
start_probe() {
    : > "$1"
    (
        while :; do
            # A short timeout: an in-flight request to a station that is not there yet must not hide its return.
            if curl -sf --max-time 0.2 -o /dev/null "http://$IP/"; then r=ok; else r=fail; fi
            echo "$(now_ms) $r"
            sleep 0.01
        done
    ) >> "$1" 2>/dev/null &
    PROBE_PID=$!
}

# gap FILE: ms between the last ok before the first fail and the first ok after it.
gap() {
    awk '$2 == "ok" && !down { last = $1 } $2 == "fail" && last { down = 1 }
         $2 == "ok" && down { print $1 - last; found = 1; exit } END { if (!found) print "NA" }' "$1"
}

# measure NAME COMMAND...: runs the command under the prober, waits for the page, prints the gap in ms.
measure() {
    local name=$1 t0 t1; shift
    local f=$WORK/probe.$name.$(now_ms)
    start_probe "$f"
    sleep 0.5
    t0=$(now_ms)
    "$@" > "$WORK/last.out" 2>&1 || { cat "$WORK/last.out" >&2; die "$* failed"; }
    t1=$(now_ms)
    wait_page
    sleep 1
    stop_probe
    echo "$name $(gap "$f") $((t1 - t0))" | tee -a "$WORK/results" >&2
    if [ -n "${KEEP_PROBES:-}" ]; then mkdir -p "$KEEP_PROBES" && cp "$f" "$KEEP_PROBES/"; fi
}

make_web "$DATA_MB"
log "data: $DATA_MB MiB in /srv/data of $G ($IP); $RUNS runs per leg"
: > "$WORK/results"
for run in $(seq "$RUNS"); do
    log "run $run/$RUNS"
    measure restart vsctl restart "$G"
    measure promote-virtiofs vsctl promote "$G"
    measure demote-virtiofs vsctl demote "$G"
    measure promote-copy vsctl promote --copy "$G"
    measure demote-copy vsctl demote "$G"
done
for mb in $GROW_MB; do
    log "promote --copy with $mb MiB of data"
    vsctl destroy --force "$G" >/dev/null
    make_web "$mb"
    measure "promote-copy-${mb}M" vsctl promote --copy "$G"
    measure "demote-copy-${mb}M" vsctl demote "$G"
done

# --- report --------------------------------------------------------------------
stats() {  # LEG -> "median min max" of the gaps, and the median command time
    awk -v leg="$1" 'BEGIN { n = 0 } $1 == leg && $2 != "NA" { g[n] = $2 + 0; c[n] = $3 + 0; n++ }
        END {
            if (!n) { print "NA NA NA NA"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) { if (g[j] < g[i]) { t = g[i]; g[i] = g[j]; g[j] = t } if (c[j] < c[i]) { t = c[i]; c[i] = c[j]; c[j] = t } }
            m = n % 2 ? g[(n - 1) / 2] : (g[n / 2 - 1] + g[n / 2]) / 2
            mc = n % 2 ? c[(n - 1) / 2] : (c[n / 2 - 1] + c[n / 2]) / 2
            printf "%d %d %d %d\n", m, g[0], g[n - 1], mc
        }' "$WORK/results"
}
read -r base _ _ _ < <(stats restart)
echo
echo "downtime on $IP seen from the host: gap between answers, ms ($RUNS runs, $DATA_MB MiB of data, TCG)"
printf '%-22s %8s %8s %8s %14s %10s\n' leg median min max "command (med)" "x restart"
for leg in restart promote-virtiofs demote-virtiofs promote-copy demote-copy; do
    read -r m lo hi c < <(stats "$leg")
    ratio=$(awk -v m="$m" -v b="$base" 'BEGIN { if (m == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", m / b }')
    printf '%-22s %8s %8s %8s %14s %10s\n' "$leg" "$m" "$lo" "$hi" "$c" "$ratio"
done
echo
echo "promote --copy as the files grow (one run each; the shared mode copies nothing):"
printf '%-10s %14s %14s\n' data "promote gap" "demote gap"
read -r m _ _ _ < <(stats promote-copy); read -r d _ _ _ < <(stats demote-copy)
printf '%-10s %14s %14s\n' "${DATA_MB}M" "$m" "$d"
for mb in $GROW_MB; do
    read -r m _ _ _ < <(stats "promote-copy-${mb}M"); read -r d _ _ _ < <(stats "demote-copy-${mb}M")
    printf '%-10s %14s %14s\n' "${mb}M" "$m" "$d"
done
read -r shared _ _ _ < <(stats promote-virtiofs)
echo
echo "target: shared (virtiofs) promotion under 3000 ms under emulation: median $shared ms"
