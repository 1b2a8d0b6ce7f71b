#!/bin/sh
# mx.sh: benchmark of mx-relay's intake. Starts a private redis-server
# (appendonly yes, appendfsync always) and mx-relay with a temporary
# config on 127.0.0.1, then:
#   - smtp_load: 4 KB messages, one connection each, over 20, 1 and 100
#     concurrent sessions, and 100 KB messages over 20 sessions: msg/s;
#   - redis-benchmark SET of the same size and client count: the physical
#     limit, and mx-relay's rate as a fraction of it;
#   - mx-relay's memory per idle session with 1,000 idle sessions;
#   - mx-relay's memory per DATA session: 200 sessions that each sent a
#     1 MB message but not its final dot (PSS from smaps_rollup).
# Usage: tests/bench/mx.sh BUILD_DIR   (run.sh passes the build folder)
# MX_BENCH_N (default 20000) messages per 4 KB case, MX_BENCH_N1 (5000)
# for the 1-session case, MX_BENCH_NBIG (5000) for the 100 KB case.
set -eu

B=$(cd "${1:-build}" && pwd)
N=${MX_BENCH_N:-20000}
N1=${MX_BENCH_N1:-5000}
NBIG=${MX_BENCH_NBIG:-5000}
IDLE=${MX_BENCH_IDLE:-1000}
NDATA=${MX_BENCH_DATA:-200}
DSIZE=${MX_BENCH_DATA_SIZE:-1048576}
LOAD="$B/bench/smtp_load"
[ -x "$LOAD" ] || { echo "mx.sh: $LOAD missing (make bench)" >&2; exit 1; }
[ -x "$B/mx-relay" ] || { echo "mx.sh: $B/mx-relay missing" >&2; exit 1; }

T=$(mktemp -d /tmp/mx-bench-XXXXXX)
chmod 755 "$T"
mkdir -p "$T/redis" "$T/etc"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(port)
MPORT=$(port)
RPID=""
MPID=""

cleanup() {
	[ -n "$MPID" ] && kill "$MPID" 2>/dev/null || true
	[ -n "$RPID" ] && kill "$RPID" 2>/dev/null || true
	sleep 0.3
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

cat > "$T/redis/redis.conf" <<EOF
bind 127.0.0.1
port $RPORT
dir $T/redis
appendonly yes
appendfsync always
save ""
daemonize no
logfile $T/redis/redis.log
EOF
redis-server "$T/redis/redis.conf" &
RPID=$!

echo "alice@demo.test OK" > "$T/etc/relay_recipients"
chmod 644 "$T/etc/relay_recipients"
cat > "$T/etc/mx-relay.cf" <<EOF
myhostname = mx.demo.test
mydomain = demo.test
mail_owner = nobody
syslog_enable = no
smtpd_listen = 127.0.0.1:$MPORT
relay_domains = demo.test
relay_recipient_maps = texthash:$T/etc/relay_recipients
redis_server = 127.0.0.1:$RPORT
message_size_limit = 10240000
mx_forward_enable = no
# every load client comes from 127.0.0.1: no per-address or total cap
smtpd_client_connection_count_limit = 0
smtpd_connection_limit = 0
EOF

ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
i=0
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 100 ] && { echo "mx.sh: redis did not start" >&2; exit 1; }
	sleep 0.1
done
"$B/mx-relay" -c "$T/etc" >"$T/mx.log" 2>&1 &
MPID=$!
i=0
until grep -q "daemon started" "$T/mx.log" 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 100 ] && { cat "$T/mx.log" >&2; exit 1; }
	sleep 0.1
done

rate_of() { sed -n 's/.* \([0-9][0-9]*\) msg\/s$/\1/p'; }
redis_rate() {  # clients size count
	redis-cli -p "$RPORT" flushall >/dev/null
	redis-benchmark -p "$RPORT" -c "$1" -n "$3" -d "$2" -t set -q 2>/dev/null |
	  tr '\r' '\n' | sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' | tail -1 |
	  cut -d. -f1
}
mx_rate() {  # clients size count
	redis-cli -p "$RPORT" flushall >/dev/null
	out=$("$LOAD" -p "$MPORT" -n "$3" -c "$1" -s "$2") || true
	echo "  smtp_load: $out" >&2
	echo "$out" | rate_of
}
cpu() { awk '{ print $14 + $15 }' "/proc/$MPID/stat"; }
row() {  # label clients size count
	c0=$(cpu)
	m=$(mx_rate "$2" "$3" "$4")
	c1=$(cpu)
	r=$(redis_rate "$2" "$3" "$4")
	f=$(awk -v m="${m:-0}" -v r="${r:-0}" 'BEGIN { if (r > 0) printf "%.2f", m / r; else print "n/a" }')
	u=$(awk -v a="$c0" -v b="$c1" -v n="$4" -v t="$(getconf CLK_TCK)" \
	  'BEGIN { printf "%.3f", (b - a) * 1000 / t / n }')
	printf "%-34s %8s msg/s   redis SET %8s/s   fraction %s   mx cpu %s ms/msg\n" \
	  "$1" "${m:-0}" "${r:-0}" "$f" "$u"
}

# idle sessions first, on a fresh process (freed heap would hide them)
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$MPID/status"; }
before=$(rss)
"$LOAD" -p "$MPORT" -i "$IDLE" -w 8 >"$T/idle.out" 2>&1 &
LPID=$!
i=0
until grep -q "idle sessions ready" "$T/idle.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 80 ] && break
	sleep 0.1
done
sleep 1
after=$(rss)
wait "$LPID" || true
awk -v b="$before" -v a="$after" -v n="$IDLE" 'BEGIN {
	printf "idle sessions: %d, mx-relay RSS %d KB -> %d KB: %.1f KB per idle session\n",
	       n, b, a, (a - b) / n }'
grep "idle sessions ready" "$T/idle.out" || true

# DATA sessions: each has sent DSIZE bytes of its message, not the final
# dot, so mx-relay holds them all at once. PSS counts what is really
# resident (shared pages split); VmRSS when smaps_rollup is unreadable.
pss() {
	awk '/^Pss:/ { print $2; f = 1 } END { if (!f) exit 1 }' \
	  "/proc/$MPID/smaps_rollup" 2>/dev/null || rss
}
before=$(pss)
"$LOAD" -p "$MPORT" -D "$NDATA" -s "$DSIZE" -w 20 >"$T/data.out" 2>&1 &
LPID=$!
i=0
until grep -q "data sessions ready" "$T/data.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 200 ] && break
	sleep 0.1
done
sleep 1
after=$(pss)
kill "$LPID" 2>/dev/null || true
wait "$LPID" 2>/dev/null || true
awk -v b="$before" -v a="$after" -v n="$NDATA" -v s="$DSIZE" 'BEGIN {
	printf "DATA sessions: %d x %d KB sent without the final dot, mx-relay PSS %d KB -> %d KB: %.0f KB per DATA session (%.2f x the message)\n",
	       n, s / 1024, b, a, (a - b) / n, (a - b) / n / (s / 1024) }'
grep "data sessions ready" "$T/data.out" || echo "  (not all data sessions got ready: $(tail -1 "$T/data.out"))"

echo "mx-relay benchmark ($(nproc) cores; Redis appendfsync always; one connection per message)"
row "4 KB, 20 sessions, $N msgs" 20 4096 "$N"
row "4 KB, 1 session, $N1 msgs" 1 4096 "$N1"
row "4 KB, 100 sessions, $N msgs" 100 4096 "$N"
row "100 KB, 20 sessions, $NBIG msgs" 20 102400 "$NBIG"
redis-cli -p "$RPORT" flushall >/dev/null
sleep 1
echo "mx-relay PSS after the runs above: $(pss) KB (what the heap kept)"

