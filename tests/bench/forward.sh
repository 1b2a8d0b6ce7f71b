#!/bin/sh
# forward.sh: benchmark of mx-relay's forwarder (mx_forward + qmgr +
# smtpc). Starts a private redis-server (appendonly yes, appendfsync
# always), preloads FWD_BENCH_N messages of FWD_BENCH_SIZE bytes into the
# "mx" queue (the format of shared/queue.c), starts the aiosmtpd sink
# (tests/it/sink.py) as the internal host and mx-relay with relayhost
# pointing at it, and times until the queue is empty: messages/s end to
# end, once in plaintext and once with STARTTLS + AUTH PLAIN.
# The sink is a single-threaded Python process and is usually the limit.
# Usage: tests/bench/forward.sh BUILD_DIR
set -eu

B=$(cd "${1:-build}" && pwd)
N=${FWD_BENCH_N:-3000}
SIZE=${FWD_BENCH_SIZE:-4096}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$B/mx-relay" ] || { echo "forward.sh: $B/mx-relay missing" >&2; exit 1; }

T=$(mktemp -d /tmp/fwd-bench-XXXXXX)
chmod 755 "$T"
mkdir -p "$T/redis" "$T/etc"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(port)
RPID="" MPID="" SPID=""

cleanup() {
	for p in $MPID $SPID $RPID; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

cat > "$T/redis/redis.conf" <<CONF
bind 127.0.0.1
port $RPORT
dir $T/redis
appendonly yes
appendfsync always
save ""
daemonize no
logfile $T/redis/redis.log
CONF
redis-server "$T/redis/redis.conf" &
RPID=$!
i=0
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 100 ] && { echo "forward.sh: redis did not start" >&2; exit 1; }
	sleep 0.1
done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
chmod 644 "$T/key.pem"
echo "alice@demo.test OK" > "$T/etc/relay_recipients"
chmod 644 "$T/etc/relay_recipients"

preload() {  # count size: one pipelined connection, as queue_put writes
	/usr/bin/python3 - "$RPORT" "$1" "$2" "$ROOT/tests/it" <<'PY'
import socket, sys, time
sys.path.insert(0, sys.argv[4])
import sink
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = b"Subject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * (size // 78)
def enc(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
class R:  # collects the command put_message would send
    def command(self, *a): buf.append(enc(a))
buf = []
for i in range(n):
    sink.put_message(R(), "bench@example.net", ["alice@demo.test"], body,
                     qid=sink.new_qid() + "%X" % (i % 16))
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"".join(buf))
f = s.makefile("rb")
for i in range(n):
    line = f.readline()
    if not line.startswith(b":"):
        sys.exit("preload failed: %r" % line)
PY
}

run_case() {  # label tls_level sink-args...
	label=$1 level=$2; shift 2
	SPORT=$(port) MPORT=$(port)
	rm -rf "$T/sink"
	/usr/bin/python3 "$ROOT/tests/it/sink.py" --port "$SPORT" --dir "$T/sink" \
		--pipelining --xforward "$@" >"$T/sink.log" 2>&1 &
	SPID=$!
	i=0
	until /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1',$SPORT),1)" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 100 ] && { echo "forward.sh: sink did not start" >&2; exit 1; }
		sleep 0.1
	done
	redis-cli -p "$RPORT" flushall >/dev/null
	preload "$N" "$SIZE"
	cat > "$T/etc/mx-relay.cf" <<CONF
myhostname = mx.demo.test
mydomain = demo.test
mail_owner = nobody
syslog_enable = no
smtpd_listen = 127.0.0.1:$MPORT
relay_domains = demo.test
relay_recipient_maps = texthash:$T/etc/relay_recipients
redis_server = 127.0.0.1:$RPORT
relayhost = [127.0.0.1]:$SPORT
smtp_tls_security_level = $level
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = static:bench:pw
smtp_destination_concurrency_limit = 20
qmgr_message_active_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_connection_limit = 0
CONF
	start=$(date +%s.%N)
	"$B/mx-relay" -c "$T/etc" >"$T/mx.log" 2>&1 &
	MPID=$!
	i=0
	while [ "$(redis-cli -p "$RPORT" zcard mq:mx:sched)" != 0 ]; do
		i=$((i + 1)); [ $i -gt 6000 ] && { tail "$T/mx.log" >&2; echo "forward.sh: timeout" >&2; exit 1; }
		sleep 0.05
	done
	end=$(date +%s.%N)
	kill "$MPID"; wait "$MPID" 2>/dev/null || true; MPID=""
	kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""
	got=$(ls "$T/sink" | grep -c '\.eml$' || true)
	sent=$(grep -c 'status=sent' "$T/mx.log" || true)
	awk -v l="$label" -v n="$N" -v s="$start" -v e="$end" -v g="$got" -v d="$sent" 'BEGIN {
		printf "%-40s %6d msgs in %6.2f s: %7.0f msg/s (sink got %d, status=sent %d)\n",
		       l, n, e - s, n / (e - s), g, d }'
}

echo "forwarder benchmark ($(nproc) cores; Redis appendfsync always; $SIZE-byte messages; sink: aiosmtpd)"
run_case "plaintext, 20 connections" none
run_case "STARTTLS + AUTH PLAIN, 20 connections" encrypt \
	--cert "$T/cert.pem" --key "$T/key.pem" --auth bench:pw
