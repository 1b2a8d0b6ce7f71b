#!/bin/sh
# `make install`'s part for /etc/mailpair: the sample configuration of
# both hosts (deploy/etc/mx and deploy/etc/internal, whose file names do not
# overlap) plus sendmail.cf, never overwriting a file that exists, and
# with no known password: the sample vpasswd is installed without its
# entries, relay_passwd and the mysql/*.cf files with generated passwords
# (one per database account), which the README's steps then use.
#   install-etc.sh DEST_DIR [ROLE]   (DEST_DIR = $(DESTDIR)/etc/mailpair)
# ROLE: mx (the MX host's files), internal (the internal host's), or
# both (default: one host for both, or decide later).
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
DEST=$1
case ${2:-both} in
mx) ROLES=mx ;;
internal) ROLES=internal ;;
both) ROLES="internal mx" ;;
*) echo "install-etc.sh: ROLE is mx, internal or both" >&2; exit 2 ;;
esac
umask 027
mkdir -p "$DEST"
# 0751: every user may open sendmail.cf (mode 0644, no password) by its
# name, as sendmail(1) run by PHP or cron must; nobody but root and the
# group lists the folder or reads the other files (0640)
chmod 751 "$DEST"

# group of the daemons (mail_owner) when it exists here: they read these
GROUP=
if [ "$(id -u)" = 0 ] && getent group vmail >/dev/null 2>&1; then GROUP=vmail; fi

DBPW=$(openssl rand -hex 24)     # the internal host's account (mailpair)
MXDBPW=$(openssl rand -hex 24)   # the MX's read-only account (mailpair_mx)

put() {   # put SRC REL: copy unless DEST/REL exists
	dst=$DEST/$2
	if [ -e "$dst" ]; then echo "kept      $dst"; return 0; fi
	mkdir -p "$(dirname "$dst")"
	case $2 in
	*/vpasswd)
		# comments only: hashes of a published password never go live
		grep '^#' "$1" | grep -v 'change-me' > "$dst"
		printf '# (sample entries left out by make install: add users with mailctl)\n' >> "$dst" ;;
	relay_passwd)
		pw=$(openssl rand -hex 24)
		awk -v pw="$pw" '/^[ \t]*(#|$)/ { print; next }
		     { i = index($2, ":"); print $1 " " substr($2, 1, i - 1) ":" pw }' "$1" > "$dst"
		echo "generated the relay password in $dst: set the same on the internal host" \
		     "(mailctl mailbox passwd relay@... --password-stdin)" ;;
	mysql/*.cf)
		case $(sed -n 's/^user *= *//p' "$1") in
		mailpair_mx) pw=$MXDBPW ;;
		*) pw=$DBPW ;;
		esac
		awk -v pw="$pw" '/^[ \t]*password[ \t]*=/ { print "password = " pw; next } { print }' \
		  "$1" > "$dst" ;;
	*)
		cp "$1" "$dst" ;;
	esac
	case $2 in sendmail.cf) chmod 644 "$dst" ;; *) chmod 640 "$dst" ;; esac
	[ -n "$GROUP" ] && chgrp "$GROUP" "$dst" "$(dirname "$dst")"
	echo "installed $dst"
}

for role in $ROLES; do
	(cd "$TOP/deploy/etc/$role" && find . -type f | sed 's|^\./||' | sort) |
	while read -r rel; do
		put "$TOP/deploy/etc/$role/$rel" "$rel"
	done
done
[ "$ROLES" = mx ] || put "$TOP/deploy/sendmail.cf" sendmail.cf
[ -n "$GROUP" ] && chgrp "$GROUP" "$DEST"
echo "the database passwords in $DEST/mysql/*.cf are generated: README.md, \"The database\" uses them"
exit 0
