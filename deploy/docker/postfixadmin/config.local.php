<?php
// Postfix Admin in deploy/compose.yaml: the same database as the mail
// daemons (the schema of deploy/sql/ is Postfix Admin's), passwords read
// from the container's Docker secrets, never written to disk.
function mailpair_secret($name) {
    $v = @file_get_contents('/run/secrets/' . $name);
    return $v === false ? '' : trim($v);
}
$CONF['configured'] = true;
$CONF['database_type'] = 'mysqli';
$CONF['database_host'] = 'mariadb';
$CONF['database_user'] = 'postfixadmin';
$CONF['database_password'] = mailpair_secret('postfixadmin_db_password');
$CONF['database_name'] = 'mailpair';
// setup.php asks for this password; Postfix Admin keeps its hash
$CONF['setup_password'] = password_hash(mailpair_secret('postfixadmin_setup_password'), PASSWORD_DEFAULT);
// the hashes the daemons read (virtual_password_maps, default_pass_scheme)
$CONF['encrypt'] = 'php_crypt:SHA512';
$CONF['dovecotpw'] = '';
// mailbox paths as virtual_mailbox_maps expects them: domain/user/
$CONF['domain_path'] = 'YES';
$CONF['domain_in_mailbox'] = 'NO';
$CONF['maildir_name_hook'] = 'NO';
// quotas in MB, stored in bytes as virtual_mailbox_limit_maps reads them
$CONF['quota'] = 'YES';
$CONF['quota_multiplier'] = '1048576';
$CONF['smtp_server'] = 'submission';
$CONF['smtp_port'] = '587';
