# Sourced by the mariadb image's entrypoint on the first start (empty data
# volume), after 10-schema.sql: the read-only account of the MX host and
# Postfix Admin's account, with passwords from the Docker secrets. The
# read-write account "mailpair" is the image's MARIADB_USER.
mx_pw=$(tr -d '\r\n' < /run/secrets/mx_db_password)
pfa_pw=$(tr -d '\r\n' < /run/secrets/postfixadmin_db_password)
# the secrets are hex (make-secrets.sh); quote for SQL all the same
mx_pw=$(printf '%s' "$mx_pw" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")
pfa_pw=$(printf '%s' "$pfa_pw" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")
docker_process_sql --database=mysql <<EOSQL
CREATE USER IF NOT EXISTS 'mailpair_mx'@'%' IDENTIFIED BY '$mx_pw';
-- the MX reads which recipients exist, never a password hash
GRANT SELECT ON mailpair.domain       TO 'mailpair_mx'@'%';
GRANT SELECT ON mailpair.alias        TO 'mailpair_mx'@'%';
GRANT SELECT ON mailpair.alias_domain TO 'mailpair_mx'@'%';
GRANT SELECT (username, active) ON mailpair.mailbox TO 'mailpair_mx'@'%';
CREATE USER IF NOT EXISTS 'postfixadmin'@'%' IDENTIFIED BY '$pfa_pw';
GRANT ALL ON mailpair.* TO 'postfixadmin'@'%';
FLUSH PRIVILEGES;
EOSQL
unset mx_pw pfa_pw
