#!/usr/bin/env bash
# A short tour of vserver: build the default image, create two vservers, use them, change a limit live,
# watch a memory limit bite, boot a domain (a VM with its own kernel) beside them, and remove everything again. Run as root after `make build` (make demo does both).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vsctl="$here/bin/vsctl"
export VSERVER_ROOT=${VSERVER_ROOT:-/var/lib/vserver} VSERVER_RUN=${VSERVER_RUN:-/run/vserver}
[ -x "$vsctl" ] || { echo "tour: $vsctl missing; run make build first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "tour: run as root (vservers need namespaces and cgroups)" >&2; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

started_agent=""
bridge_existed=""
cleanup() {
  "$vsctl" destroy tour-web --force >/dev/null 2>&1 || true
  "$vsctl" destroy tour-db --force >/dev/null 2>&1 || true
  "$vsctl" destroy tour-vm --force >/dev/null 2>&1 || true
  "$vsctl" destroy tour-deb --force >/dev/null 2>&1 || true
  if [ -n "$started_agent" ] && [ -f "$VSERVER_RUN/agent.lock" ]; then
    pid=$(cat "$VSERVER_RUN/agent.lock")
    if [ -z "$bridge_existed" ]; then
      # The guests' network (rules, resolver, bridge) goes with the agent this tour started; teardown stops the agent.
      VSCTL_NO_AUTOSTART=1 "$vsctl" host teardown >/dev/null 2>&1 || true
    fi
    kill "$pid" 2>/dev/null && while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    parent=${VSERVER_CGROUP_PARENT:-vserver}
    rmdir /sys/fs/cgroup/*/"$parent" /sys/fs/cgroup/"$parent" 2>/dev/null || true
  fi
}
trap cleanup EXIT

[ -d "/sys/class/net/${VSERVER_BRIDGE:-vsbr0}" ] && bridge_existed=1
if ! VSCTL_NO_AUTOSTART=1 "$vsctl" info >/dev/null 2>&1; then started_agent=1; fi

step "The host agent (vsctl starts vserverd when none runs)"
run "$vsctl" info

step "The default image: Debian's busybox-static as a small complete system"
"$vsctl" image list | grep -q '^busybox ' || run "$vsctl" image build busybox
run "$vsctl" image list

step "Two vservers from the same read-only image, each with its own writable layer and address"
run "$vsctl" create tour-web --memory 64M --cpus 0.5 --pids 100
run "$vsctl" create tour-db --memory 128M
run "$vsctl" start tour-web
run "$vsctl" start tour-db
run "$vsctl" list

step "Inside a vserver: its own hostname, process list and network"
run "$vsctl" exec tour-web -- hostname
run "$vsctl" exec tour-web -- ps -o pid,comm
db_ip=$("$vsctl" status tour-db -f json | sed -n 's/.*"ipv4": *"\([0-9.]*\)".*/\1/p')
# Root inside is an unprivileged id on the host, yet may serve on port 80 of its own network namespace.
run "$vsctl" exec tour-db -- id
run "$vsctl" exec tour-db -- sh -c 'nc -ll -p 80 -e echo "hello from tour-db" </dev/null >/dev/null 2>&1 &'
for _ in 1 2 3 4 5 6 7 8 9 10; do
	"$vsctl" exec tour-web -- nc -w 2 "$db_ip" 80 >/dev/null 2>&1 && break
	sleep 0.2
done
run "$vsctl" exec tour-web -- nc -w 2 "$db_ip" 80

step "Guests reach the world: outbound NAT and the resolver on the bridge (names of guests: NAME.vserver)"
run "$vsctl" exec tour-web -- cat /etc/resolv.conf
run "$vsctl" exec tour-web -- nslookup tour-db.vserver
"$vsctl" image list | grep -q '^debian ' || run "$vsctl" image build debian
run "$vsctl" create tour-deb --image debian --memory 384M
run "$vsctl" start tour-deb

step "A customer's day in a Debian vserver: its own systemd, apt from the mirror, nginx as a service"
for _ in $(seq 1 100); do
	case $("$vsctl" exec tour-deb -- systemctl is-system-running 2>/dev/null) in running|degraded) break ;; esac
	sleep 0.2
done
run "$vsctl" exec tour-deb -- systemctl is-system-running
# The image's sources.list names the mirror this machine's own apt configuration uses.
run "$vsctl" exec tour-deb -- cat /etc/apt/sources.list
run "$vsctl" exec tour-deb -- apt-get update
run "$vsctl" exec tour-deb -- env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx
run "$vsctl" exec tour-deb -- systemctl is-active nginx
run "$vsctl" port add tour-deb 18080:80
printf '$ curl -s http://127.0.0.1:18080/ | grep title\n'; curl -s -m 5 http://127.0.0.1:18080/ | grep title
run "$vsctl" exec tour-deb -- systemctl restart nginx
run "$vsctl" exec tour-deb -- journalctl -u nginx --no-pager -n 3
run "$vsctl" stop tour-deb
run "$vsctl" start tour-deb
sleep 3
printf '$ curl -s http://127.0.0.1:18080/ | grep title    # nginx is back after stop and start\n'; curl -s -m 5 http://127.0.0.1:18080/ | grep title
run "$vsctl" exec tour-deb -- journalctl -b -1 --no-pager -n 3
run "$vsctl" destroy tour-deb --force

step "Writes stay in the vserver that made them"
run "$vsctl" exec tour-web -- sh -c 'echo hello > /root/note && cat /root/note'
printf '$ %s\n' "$vsctl exec tour-db -- cat /root/note"
"$vsctl" exec tour-db -- cat /root/note || echo "(not there: tour-db has its own layer)"

step "Limits: raise memory live, then let a hog hit the limit"
run "$vsctl" set tour-web --memory 96M
run "$vsctl" status tour-web
printf '$ %s\n' "$vsctl exec tour-web -- dd if=/dev/zero of=/dev/null bs=256M count=1"
set +e; "$vsctl" exec tour-web -- dd if=/dev/zero of=/dev/null bs=256M count=1; code=$?; set -e
echo "(exit code $code: the kernel's OOM killer ended the hog)"
run "$vsctl" exec tour-web -- echo "tour-web is still running"

step "The shared memory pool: each vserver sees its own memory, the host sees who uses what"
run "$vsctl" set tour-db --memory-min 32M
run "$vsctl" exec tour-db -- free
run "$vsctl" exec tour-db -- head -3 /proc/meminfo
run "$vsctl" stat

step "A domain beside them: a VM with its own kernel, on the same bridge"
"$vsctl" kernel list | grep -q '^default ' || run "$vsctl" kernel build
run "$vsctl" host
run "$vsctl" create tour-vm --kind domain --memory 128M
run "$vsctl" start tour-vm
run "$vsctl" exec tour-vm -- uname -r
printf '$ uname -r    # the host'"'"'s kernel, for comparison\n'; uname -r
run "$vsctl" exec tour-vm -- nc -w 2 "$db_ip" 80
run "$vsctl" list
run "$vsctl" stat
run "$vsctl" stop tour-vm
run "$vsctl" destroy tour-vm

step "Stop and remove everything"
run "$vsctl" stop tour-web
run "$vsctl" destroy tour-web
run "$vsctl" destroy tour-db --force
run "$vsctl" list
step "Tour done"
