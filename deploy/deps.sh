#!/bin/sh
# Install the Debian packages the build, the tests and `make run` need,
# only those missing. Usage: deploy/deps.sh [build|test|run]
set -e
BUILD="gcc make pkg-config libc6-dev libssl-dev libevent-dev libhiredis-dev
libsasl2-dev libsasl2-modules libmariadb-dev libcrypt-dev libcmocka-dev openssl"
RUN="redis-server swaks libnet-ssleay-perl curl openssl"
TEST="redis-server mariadb-server mariadb-client python3 python3-pytest
python3-aiosmtpd swaks apache2-utils isync fetchmail dnsmasq-base iproute2
clang libclang-rt-14-dev docker-compose sasl2-bin fail2ban"
case "${1:-build}" in
  build) want="$BUILD" ;;
  run)   want="$BUILD $RUN" ;;
  test)  want="$BUILD $RUN $TEST" ;;
  *) echo "usage: $0 build|run|test" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' \
    || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the packages' own services (redis, mariadb) from starting:
# the project starts private instances only.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
