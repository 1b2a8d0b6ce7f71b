#!/bin/sh
# Generates the compose secrets (deploy/secrets/NAME, random, never
# overwritten): nothing ships with a known password.
#   sh deploy/docker/make-secrets.sh [DIR]    (default: deploy/secrets)
# The folder is 0700 so no other host user reads them; the files are 0644
# so the containers they are handed to can read them under their own uid.
set -eu
DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/secrets}
umask 077
mkdir -p "$DIR"
chmod 700 "$DIR"
for name in mariadb_root_password db_password mx_db_password relay_password \
            postfixadmin_db_password postfixadmin_setup_password; do
	f=$DIR/$name
	if [ -s "$f" ]; then echo "kept      $f"; continue; fi
	openssl rand -hex 24 > "$f"
	chmod 644 "$f"
	echo "generated $f"
done
