#!/bin/sh
# The single-host quickstart behind `make run` / `make stop`.
#   quickstart.sh start BUILD_DIR   lay out run/, start Redis and the daemons
#   quickstart.sh stop              stop exactly what start started (by PID)
# Everything lives under run/ at the top of the checkout.
set -e
TOP=$(cd "$(dirname "$0")/.." && pwd)
RUN=$TOP/run
PIDS=$RUN/pid
DOMAIN=example.test
REDIS_PORT=5379

stop_all() {
	[ -d "$PIDS" ] || { echo "nothing to stop (no run/pid)"; return 0; }
	for f in "$PIDS"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f"); name=$(basename "$f" .pid)
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" && echo "stopped $name (pid $pid)"
			i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
			kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$f"
	done
}

# As root the daemons drop to $OWNER (nobody) once bound, and only then open
# the maps, the Maildirs and the TLS reloads under run/. In a checkout that
# nobody cannot reach (root's clone in /root, mode 0700, on a fresh Debian)
# they would fail, so run/ becomes a link to a folder under /var/lib that it
# can reach; the files keep their run/... names through the link.
place_run() {
	[ "$(id -u)" = 0 ] || return 0
	if [ -L "$TOP/run" ]; then RUN=$(cd "$TOP/run" && pwd -P); PIDS=$RUN/pid; return 0; fi
	setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups test -x "$TOP" \
	  2>/dev/null && return 0
	alt=/var/lib/mailpair-quickstart/$(printf '%s' "$TOP" | cksum | cut -d' ' -f1)
	mkdir -p /var/lib/mailpair-quickstart && chmod 755 /var/lib/mailpair-quickstart
	# a state left by an earlier checkout at this path is not ours: start anew
	rm -rf "$alt"
	# run/ as a folder: a first attempt stopped above; keep what it made
	if [ -d "$TOP/run" ]; then mv "$TOP/run" "$alt"; else mkdir -m 755 "$alt"; fi
	chmod 755 "$alt"
	ln -s "$alt" "$TOP/run"
	RUN=$alt; PIDS=$RUN/pid
}

layout() {
	mkdir -p "$RUN/etc" "$RUN/mail" "$RUN/log" "$RUN/redis" "$RUN/tls" "$PIDS"
	if [ "$(id -u)" = 0 ]; then OWNER=nobody; GROUP=$(id -gn nobody); else OWNER=$(id -un); GROUP=$(id -gn); fi
	UID_=$(id -u "$OWNER"); GID_=$(id -g "$OWNER")
	if [ ! -f "$RUN/tls/cert.pem" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		  -days 365 -subj "/CN=localhost" \
		  -addext "subjectAltName=DNS:localhost,DNS:mail.$DOMAIN,IP:127.0.0.1" \
		  -keyout "$RUN/tls/key.pem" -out "$RUN/tls/cert.pem" 2>/dev/null
		chmod 600 "$RUN/tls/key.pem"
	fi
	for t in "$TOP"/deploy/etc/quickstart/*.cf.in; do
		sed -e "s|@RUN@|$RUN|g" -e "s|@OWNER@|$OWNER|g" -e "s|@UID@|$UID_|g" \
		    -e "s|@GID@|$GID_|g" -e "s|@DOMAIN@|$DOMAIN|g" -e "s|@REDIS_PORT@|$REDIS_PORT|g" \
		    "$t" > "$RUN/etc/$(basename "$t" .in)"
	done
	if [ ! -f "$RUN/etc/vmailbox" ]; then
		# no published password, even for the demo: one is made here and
		# kept (mode 0600) for the next start and the summary below
		PASSWORD=$(openssl rand -base64 12 | tr -d '/+=')
		( umask 077; printf '%s\n' "$PASSWORD" > "$RUN/etc/demo-password" )
		# texthash maps: the embedded backend that needs no database.
		# mailctl (the admin command) fills them, as an administrator would.
		printf '# virtual_mailbox_domains: domain -> anything (mailctl domain ...)\n' > "$RUN/etc/vdomains"
		printf '# virtual_mailbox_maps: address -> Maildir under virtual_mailbox_base\n' > "$RUN/etc/vmailbox"
		printf '# virtual_password_maps: address -> {SCHEME}hash\n' > "$RUN/etc/vpasswd"
		printf '# virtual_alias_maps: address -> targets (mailctl alias ...)\n' > "$RUN/etc/valias"
		printf '# virtual_mailbox_limit_maps: address -> quota bytes (0 = none)\n' > "$RUN/etc/vquota"
		M="$BUILD/mailctl -c $RUN/etc"
		$M domain add "$DOMAIN" --description "demo domain"
		for u in alice bob; do
			printf '%s\n' "$PASSWORD" | $M mailbox add "$u@$DOMAIN" --password-stdin --name "$u"
		done
		$M alias add "postmaster@$DOMAIN" "alice@$DOMAIN"
		# The MX host's own login on the internal host's intake port.
		RELAYPW=$(openssl rand -hex 16)
		printf '%s\n' "$RELAYPW" | $M mailbox add "relay@$DOMAIN" --password-stdin --name "MX relay login"
		printf '# smtp_sasl_password_maps: nexthop -> user:password\n[127.0.0.1]:5526 relay@%s:%s\n' \
		  "$DOMAIN" "$RELAYPW" > "$RUN/etc/relay_passwd"
		chmod 600 "$RUN/etc/relay_passwd"
	fi
	PASSWORD=$(cat "$RUN/etc/demo-password" 2>/dev/null || echo "(the one set when run/ was laid out)")
	chown -R "$OWNER:$GROUP" "$RUN/mail"
	chgrp "$GROUP" "$RUN/etc/vpasswd" && chmod 640 "$RUN/etc/vpasswd"
	chown "$OWNER" "$RUN/etc/relay_passwd"
}

start_redis() {
	cat > "$RUN/redis/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
dir $RUN/redis
appendonly yes
appendfsync always
save ""
daemonize no
logfile $RUN/log/redis.log
EOF
	setsid redis-server "$RUN/redis/redis.conf" </dev/null >/dev/null 2>&1 &
	echo $! > "$PIDS/redis.pid"
	i=0; until redis-cli -p $REDIS_PORT ping >/dev/null 2>&1; do
		i=$((i+1)); [ $i -gt 100 ] && { echo "redis did not start: see run/log/redis.log"; exit 1; }
		sleep 0.1
	done
	echo "started redis on 127.0.0.1:$REDIS_PORT (AOF, appendfsync always)"
}

start_daemon() {
	name=$1
	if [ ! -x "$BUILD/$name" ]; then
		echo "skipped $name (not built yet)"
		return 0
	fi
	setsid "$BUILD/$name" -c "$RUN/etc" </dev/null >> "$RUN/log/$name.log" 2>&1 &
	pid=$!
	sleep 0.3
	if ! kill -0 $pid 2>/dev/null; then
		echo "$name failed to start:"; tail -5 "$RUN/log/$name.log"; return 1
	fi
	echo $pid > "$PIDS/$name.pid"
	echo "started $name (pid $pid, log run/log/$name.log)"
}

case "$1" in
start)
	BUILD=${2:-$TOP/build}
	stop_all >/dev/null
	place_run
	layout
	start_redis
	start_daemon submission
	start_daemon mra
	start_daemon mx-relay
	cat <<EOF

The demo site is up, on loopback:
  MX SMTP (mx-relay)          127.0.0.1:2525
  submission STARTTLS / TLS   127.0.0.1:5587 / 127.0.0.1:5465
  intake for the MX forwarder 127.0.0.1:5526
  IMAP / IMAPS                127.0.0.1:5143 / 127.0.0.1:5993
  POP3 / POP3S                127.0.0.1:5110 / 127.0.0.1:5995
Demo users: alice@$DOMAIN and bob@$DOMAIN, password $PASSWORD
  (generated at the first start, kept in run/etc/demo-password)
Configs: run/etc/   Maildirs: run/mail/$DOMAIN/<user>/   Logs: run/log/
EOF
	if [ -L "$TOP/run" ]; then
		echo "  (run/ links to $RUN: $TOP is closed to $OWNER, the daemons' user)"
	fi
	cat <<EOF

Send a message through the MX:
  swaks --server 127.0.0.1:2525 --from someone@example.net --to alice@$DOMAIN --body 'hello from the MX'
Read it over IMAPS:
  curl -sk 'imaps://127.0.0.1:5993/INBOX;UID=1' -u alice@$DOMAIN:$PASSWORD
Stop everything: make stop
EOF
	;;
stop)
	stop_all
	;;
*)
	echo "usage: $0 start BUILD_DIR | stop" >&2; exit 2 ;;
esac
