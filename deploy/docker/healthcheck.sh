#!/bin/bash
# Protocol-level health check for the containers (compose.yaml):
#   healthcheck smtp PORT   greeting 220, EHLO answered 250, QUIT
#   healthcheck imap PORT   greeting * OK, CAPABILITY answered OK, LOGOUT
#   healthcheck pop3 PORT   greeting +OK, CAPA answered +OK, QUIT
# bash's /dev/tcp: the image needs no client program. Exit 0 healthy.
set -u
proto=${1:-}; port=${2:-}
[ -n "$proto" ] && [ -n "$port" ] || { echo "usage: healthcheck smtp|imap|pop3 PORT" >&2; exit 2; }
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1

# reads one reply line into $line (CR removed), 5 s at most
get() { IFS= read -r -t 5 line <&3 || { echo "healthcheck: no answer on $port" >&2; exit 1; }; line=${line%$'\r'}; }
# RFC 5321 §4.2.1: a multi-line reply is "NNN-" lines, then "NNN " last
smtp_reply() {
	while get; do
		case $line in
		"$1 "*|"$1") return 0 ;;
		"$1-"*) ;;
		*) echo "healthcheck: $line" >&2; exit 1 ;;
		esac
	done
}

case $proto in
smtp)
	smtp_reply 220
	printf 'EHLO healthcheck.invalid\r\n' >&3; smtp_reply 250
	printf 'QUIT\r\n' >&3 ;;
imap)
	get; case $line in "* OK"*|"* PREAUTH"*) ;; *) echo "healthcheck: $line" >&2; exit 1 ;; esac
	printf 'h1 CAPABILITY\r\n' >&3
	# RFC 3501 §6.1.1: untagged CAPABILITY, then the tagged OK
	while get; do
		case $line in "h1 OK"*) break ;; "h1 "*) echo "healthcheck: $line" >&2; exit 1 ;; esac
	done
	printf 'h2 LOGOUT\r\n' >&3 ;;
pop3)
	get; case $line in "+OK"*) ;; *) echo "healthcheck: $line" >&2; exit 1 ;; esac
	printf 'CAPA\r\n' >&3; get
	case $line in "+OK"*) ;; *) echo "healthcheck: $line" >&2; exit 1 ;; esac
	# RFC 2449 §5: the list ends with a line holding a single dot
	while get; do [ "$line" = "." ] && break; done
	printf 'QUIT\r\n' >&3 ;;
*) echo "healthcheck: unknown protocol $proto" >&2; exit 2 ;;
esac
exit 0
