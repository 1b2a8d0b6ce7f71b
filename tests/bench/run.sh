#!/bin/sh
# make bench: run every benchmark script tests/bench/*.sh (except this one)
# with the build folder as $1; each prints its own figures.
B=${1:-build}
cd "$(dirname "$0")/../.."
status=0
for s in tests/bench/*.sh; do
  [ "$s" = tests/bench/run.sh ] && continue
  echo "=== ${s##*/}"
  sh "$s" "$B" || { echo "bench ${s##*/} failed"; status=1; }
done
exit $status
