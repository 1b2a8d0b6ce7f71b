#!/bin/sh
# Run each cmocka unit test binary given; report a summary and fail if any
# binary fails. Runs inside servers.py, so TEST_REDIS_* / TEST_MYSQL_* are set.
failed=0; passed=0
for t in "$@"; do
  if "$t" >"$t.log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   ${t##*/}: $(grep -c '^\[       OK \]' "$t.log") cases"
  else
    failed=$((failed + 1))
    echo "FAIL ${t##*/}"; tail -30 "$t.log"
  fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
