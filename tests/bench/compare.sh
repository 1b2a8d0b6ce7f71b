#!/bin/sh
# compare.sh: mailpair side by side with Postfix and Dovecot in one run
# (tests/bench/compare.py says what and how). Needs postfix (smtp-source)
# and dovecot-imapd (make deps-test installs them); imaptest is built by
# ../shared/tools/imaptest/build.sh. Usage: tests/bench/compare.sh BUILD_DIR
# Env: CMP_N, CMP_SIZE, CMP_SESSIONS, CMP_IMAP_SECS, CMP_IDLE, CMP_IDLE_INC,
# CMP_RSPAMD_N (needs rspamd for the Rspamd section),
# CMP_ONLY=smtp,imap,mem,crash,rspamd.
B=${1:-build}
cd "$(dirname "$0")/../.." || exit 1
for t in /usr/sbin/smtp-source /usr/sbin/postfix /usr/sbin/dovecot; do
	[ -x "$t" ] || { echo "compare.sh: $t missing (make deps-test)" >&2; exit 1; }
done
exec /usr/bin/python3 tests/bench/compare.py "$B"
