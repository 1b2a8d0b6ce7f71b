#!/bin/sh
# Dovecot's imaptest against a private mra (real TLS, loopback, test users).
# Usage: tests/imaptest/run.sh compliance|stress BUILD_DIR
#   compliance: the scripted tests of imaptest's src/tests; fails when any
#               test group or command failed.
#   stress:     imaptest's random stress mode, 10 clients on one mailbox,
#               then 10 clients over 10 users; fails on any error.
#               IMAPTEST_SECS sets each run's length (default 60).
# imaptest is built by ../shared/tools/imaptest/build.sh (beside the
# checkout); without it this prints one line and succeeds.
set -e
mode=${1:?usage: $0 compliance|stress BUILD_DIR}
build=${2:?usage: $0 compliance|stress BUILD_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
tool="$root/../shared/tools/imaptest/build.sh"
if [ ! -f "$tool" ]; then
  echo "imaptest: skipped: no ../shared"
  exit 0
fi
bin=$(bash "$tool" | tail -1)
if [ ! -x "$bin" ]; then
  echo "imaptest: build failed (build.sh printed: $bin)" >&2
  exit 1
fi
exec /usr/bin/python3 "$root/tests/imaptest/mra_imaptest.py" "$mode" "$build" "$bin"
