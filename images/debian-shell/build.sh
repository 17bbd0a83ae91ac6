#!/bin/sh
# images/debian-shell/build.sh ROOTFS_DIR
#
# Debian bookworm minbase with a shell script as /sbin/init instead of systemd:
# for the smallest guests, which run one service and need no service manager.
# The Debian recipe with INIT=shell (see images/debian/build.sh).
set -eu
INIT=shell exec sh "$(dirname "$0")/../debian/build.sh" "$@"
