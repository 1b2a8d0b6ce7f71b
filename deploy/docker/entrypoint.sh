#!/bin/sh
# Container entrypoint of the three daemons (deploy/compose.yaml).
# The site's config is bound read-only at /srv/mailpair/etc and holds no
# password; this copies it into the tmpfs /etc/mailpair and writes the
# service's own Docker secrets into it:
#   MAILPAIR_DB_SECRET=NAME     the "password =" line of every mysql/*.cf
#   MAILPAIR_RELAY_SECRET=NAME  the password part of every relay_passwd line
# then runs the daemon, which drops to vmail after binding.
# (MAILPAIR_SRC, MAILPAIR_TLS, MAILPAIR_DST and MAILPAIR_SECRETS move the
# folders, for the tests.)
set -eu
SRC=${MAILPAIR_SRC:-/srv/mailpair/etc}
TLS=${MAILPAIR_TLS:-/srv/mailpair/tls}
DST=${MAILPAIR_DST:-/etc/mailpair}
SECRETS=${MAILPAIR_SECRETS:-/run/secrets}

secret() {
	f=$SECRETS/$1
	[ -r "$f" ] || { echo "entrypoint: secret $1 is not in $SECRETS" >&2; exit 1; }
	tr -d '\r\n' < "$f"
}

if [ -d "$SRC" ]; then
	cp -R "$SRC"/. "$DST"/
	if [ -d "$TLS" ]; then ln -sfn "$TLS" "$DST/tls"; fi
	if [ -n "${MAILPAIR_DB_SECRET:-}" ] && [ -d "$DST/mysql" ]; then
		PW=$(secret "$MAILPAIR_DB_SECRET"); export PW
		for f in "$DST"/mysql/*.cf; do
			[ -e "$f" ] || continue
			# ENVIRON, not -v: awk would read backslashes in -v values
			awk '/^[ \t]*password[ \t]*=/ { print "password = " ENVIRON["PW"]; next } { print }' \
			  "$f" > "$f.new" && mv "$f.new" "$f"
		done
	fi
	if [ -n "${MAILPAIR_RELAY_SECRET:-}" ] && [ -f "$DST/relay_passwd" ]; then
		PW=$(secret "$MAILPAIR_RELAY_SECRET"); export PW
		# NEXTHOP USER:PASSWORD -> NEXTHOP USER:<secret>
		awk '/^[ \t]*(#|$)/ { print; next }
		     { i = index($2, ":"); u = (i ? substr($2, 1, i - 1) : $2);
		       print $1 " " u ":" ENVIRON["PW"] }' \
		  "$DST/relay_passwd" > "$DST/relay_passwd.new" && mv "$DST/relay_passwd.new" "$DST/relay_passwd"
	fi
	unset PW
	# group vmail comes from the setgid tmpfs; nobody else reads it
	chmod -R u=rwX,g=rX,o= "$DST"
fi
exec "$@"
