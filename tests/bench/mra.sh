#!/bin/sh
# mra benchmark: (1) 10 concurrent clients run imap_load's mixed IMAP
# workload for 30 s over 10 realistic mailboxes (300 messages each, plain
# and multipart, 1-40 KB) and the tool prints operations per second per
# command; (2) 5,000 logged-in connections sit in IDLE and the mra's PSS
# is divided by 5,000. Everything on 127.0.0.1; the daemon is stopped by
# PID. Usage: tests/bench/mra.sh [build-dir]   (BENCH_SECONDS, IDLE_CONNS)
set -e
B=${1:-build}
case "$B" in /*) ;; *) B="$(pwd)/$B" ;; esac
SECONDS_MIX=${BENCH_SECONDS:-30}
NIDLE=${IDLE_CONNS:-5000}
cd "$(dirname "$0")/../.."
[ -x "$B/mra" ] && [ -x "$B/bench/imap_load" ] || { echo "build $B/mra and $B/bench/imap_load first" >&2; exit 1; }

T=$(mktemp -d /tmp/mrabench.XXXXXX)
chmod 755 "$T"
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT INT TERM

OWNER=$(id -un)
[ "$(id -u)" = 0 ] && OWNER=nobody
PORTS=$(/usr/bin/python3 -c '
import socket
ss=[socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
IMAP_PORT=${PORTS% *}
IMAPS_PORT=${PORTS#* }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
HASH=$(openssl passwd -6 secret)
mkdir -p "$T/mail" "$T/etc"
: > "$T/etc/passwd"
i=0
while [ $i -lt 10 ]; do
  echo "user$i@example.test {SHA512-CRYPT}$HASH" >> "$T/etc/passwd"
  i=$((i + 1))
done

# realistic mailboxes: mixed sizes, some multipart with attachments
/usr/bin/python3 - "$T/mail" <<'EOF'
import base64, os, random, sys, time
base = sys.argv[1]
rnd = random.Random(42)
words = ("meeting report budget invoice alice project update review release "
         "server mail quarterly draft agenda minutes travel deploy").split()
for u in range(10):
    d = os.path.join(base, "example.test", "user%d" % u)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(d, sub))
    for n in range(300):
        subj = " ".join(rnd.choice(words) for _ in range(5))
        frm = rnd.choice(["Alice <alice@example.net>", "Bob <bob@example.org>",
                          "Carol <carol@example.com>", "Dave <dave@example.net>"])
        text = "\r\n".join(" ".join(rnd.choice(words) for _ in range(12))
                           for _ in range(rnd.randint(5, 400))) + "\r\n"
        hdr = ("Return-Path: <x@example.net>\r\nReceived: from mx.example.net by mail.example.test; "
               "Mon, 1 Jan 2024 10:00:00 +0000\r\nFrom: %s\r\nTo: user%d@example.test\r\n"
               "Subject: %s\r\nDate: Mon, 1 Jan 2024 10:%02d:00 +0000\r\n"
               "Message-ID: <%d.%d@example.net>\r\nMIME-Version: 1.0\r\n" % (frm, u, subj, n % 60, u, n))
        if n % 4 == 0:
            att = base64.encodebytes(os.urandom(rnd.randint(500, 20000))).decode().replace("\n", "\r\n")
            body = ("Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\n%s--b%d\r\n"
                    "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n%s--b%d--\r\n" % (n, n, text, n, att, n))
        else:
            body = "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text
        data = (hdr + body).encode()
        name = "%d.M%dP1Q%d.bench,S=%d:2,%s" % (1700000000 + n, n, n, len(data), "S" if n % 3 else "")
        with open(os.path.join(d, "cur", name), "wb") as f:
            f.write(data)
EOF
[ "$OWNER" = nobody ] && chown -R nobody: "$T/mail"

cat > "$T/etc/mra.cf" <<EOF
myhostname = bench.example.test
inet_interfaces = 127.0.0.1
syslog_enable = no
mail_owner = $OWNER
imap_listen = $IMAP_PORT
imaps_listen = $IMAPS_PORT
pop3_listen = 0
pop3s_listen = 0
ssl = yes
ssl_cert = <$T/cert.pem
ssl_key = <$T/key.pem
disable_plaintext_auth = no
virtual_mailbox_base = $T/mail
virtual_password_maps = texthash:$T/etc/passwd
imap_max_commands_per_second = 0
smtpd_client_auth_rate_limit = 0
# thousands of load clients, one address, one user: no caps
mra_client_connection_count_limit = 0
mra_connection_limit = 0
mail_max_userip_connections = 0
mra_worker_threads = ${MRA_THREADS:-8}
EOF

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$B/mra" -c "$T/etc" 2> "$T/mra.log" &
PID=$!
n=0
until /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$IMAP_PORT),1)" 2>/dev/null; do
  n=$((n + 1)); [ $n -gt 100 ] && { cat "$T/mra.log"; exit 1; }
  sleep 0.1
done

echo "--- mixed workload: 10 clients, ${SECONDS_MIX} s (Dovecot reference ~1580 commands/s; target 2370)"
# PERF=file: profile the daemon for 5 s of the mixed run
[ -n "$PERF" ] && (sleep 3; perf record -g -o "$PERF" -p $PID sleep 5 >/dev/null 2>&1) &
"$B/bench/imap_load" -m mix -c 10 -d "$SECONDS_MIX" -p "$IMAP_PORT" -u 10

pss() { awk '/^Pss:/ {print $2}' /proc/$PID/smaps_rollup; }
echo "--- memory: $NIDLE logged-in connections in IDLE (target < 16 KB each)"
BEFORE=$(pss)
"$B/bench/imap_load" -m idle -c "$NIDLE" -d 600 -p "$IMAP_PORT" -u 10 > "$T/idle.out" 2>&1 &
LPID=$!
n=0
until grep -q READY "$T/idle.out" 2>/dev/null; do
  n=$((n + 1))
  if [ $n -gt 3000 ] || ! kill -0 $LPID 2>/dev/null; then cat "$T/idle.out"; break; fi
  sleep 0.1
done
sleep 2
AFTER=$(pss)
READY=$(awk '/READY/ {print $2}' "$T/idle.out")
kill $LPID 2>/dev/null || true
wait $LPID 2>/dev/null || true
echo "connections in IDLE: ${READY:-0}"
echo "mra PSS before: ${BEFORE} KB, with connections: ${AFTER} KB"
if [ -n "$READY" ] && [ "$READY" -gt 0 ]; then
  awk -v a="$AFTER" -v b="$BEFORE" -v n="$READY" 'BEGIN {
    printf "PSS per connection: %.1f KB total/n, %.1f KB increase/n\n", a / n, (a - b) / n }'
fi
grep -c "IDLE watch" "$T/mra.log" | awk '{ if ($1 > 0) print "IDLE watches refused (inotify limit):", $1 }'
