#!/bin/sh
# Install the Debian packages the build, the tests and `make run` need,
# only those missing. Usage: deploy/deps.sh [build|test|run|bench]
set -e
BUILD="gcc make pkg-config libc6-dev libssl-dev libevent-dev libhiredis-dev
libsasl2-dev libsasl2-modules libmariadb-dev libcrypt-dev libcmocka-dev openssl"
RUN="redis-server swaks libnet-ssleay-perl curl openssl"
# systemd: test_deploy.py checks the units with systemd-analyze (a container has none)
TEST="redis-server mariadb-server mariadb-client python3 python3-pytest
python3-aiosmtpd swaks apache2-utils isync fetchmail dnsmasq-base iproute2
opendkim opendkim-tools opendmarc rspamd
clang libclang-rt-14-dev docker-compose sasl2-bin fail2ban mandoc systemd"
# make bench: the incumbents it runs side by side (private instances only)
BENCH="postfix dovecot-imapd"
case "${1:-build}" in
  build) want="$BUILD" ;;
  run)   want="$BUILD $RUN" ;;
  test)  want="$BUILD $RUN $TEST" ;;
  bench) want="$BUILD $RUN $TEST $BENCH" ;;
  *) echo "usage: $0 build|run|test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' \
    || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
if [ "$(id -u)" != 0 ]; then
  # a minimal Debian has no sudo: say what to run instead of "not found"
  command -v sudo >/dev/null 2>&1 ||
    { echo "deps: not root and no sudo; as root run: apt-get install$missing" >&2; exit 1; }
  SUDO=sudo
else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the packages' own services (redis, mariadb) from starting:
# the project starts private instances only.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# postfix: "No configuration", so the system instance has no main.cf and
# never starts; make bench runs its own instances with postfix -c DIR
case " $missing " in *" postfix "*)
  echo "postfix postfix/main_mailer_type select No configuration" |
    $SUDO debconf-set-selections ;;
esac
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
