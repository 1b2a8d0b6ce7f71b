"""Moving a Postfix Admin site (issue 13): a database in Postfix Admin's
layout, with rows written by plain SQL the way Postfix Admin writes them
and by mailctl, read through the sample .cf files of deploy/etc/mysql/
(some named "proxy:mysql:", as Postfix Admin's POSTFIX_CONF.txt does).

Covered: an alias with inactive or unknown members delivers to the others
and bounces only those; virtual_password_maps.cf refuses inactive domains
and expired passwords (Postfix Admin's password_expiry rules); mailctl's
password_expiry and --quota in MB; Dovecot's {SCHEME.B64} hashes; the
domain quota (virtual_domain_quota_maps); mysql_table(5) TLS fields
against a MariaDB that requires TLS."""
import os
import imaplib
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile

import pytest

from mra_env import MraEnv
from sub_env import SubEnv, sha512_crypt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
import servers  # noqa: E402

DOMAINS = ["pfa.test", "off.test", "exp.test", "quota.test", "mx.internal",
           "mc.test"]
MB = 1024000  # Postfix Admin's default quota_multiplier

# address -> (password, maildir, quota bytes); the SubEnv logs in with these
USERS = {
    "alice@pfa.test": ("alice-pw", "pfa.test/alice/", 0),
    "bob@pfa.test": ("bob-pw", "pfa.test/bob/", 0),
    "frank@pfa.test": ("frank-pw", "pfa.test/frank/", 0),
    "md5@pfa.test": ("md5-pw", "pfa.test/md5/", 0),
    "b64@pfa.test": ("Secret1!", "pfa.test/b64/", 0),
    "carol@off.test": ("carol-pw", "off.test/carol/", 0),
    "dave@exp.test": ("dave-pw", "exp.test/dave/", 0),
    "erin@exp.test": ("erin-pw", "exp.test/erin/", 0),
    "q1@quota.test": ("q1-pw", "quota.test/q1/", 0),
    "q2@quota.test": ("q2-pw", "quota.test/q2/", 0),
    "relay@mx.internal": ("relay-pw", "mx.internal/relay/", 0),
}


def q(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def md5_crypt(pw):
    """Postfix Admin's old default, $CONF['encrypt'] = 'md5crypt': the bare
    crypt string, no {SCHEME} prefix."""
    return subprocess.run(["openssl", "passwd", "-1", pw], check=True,
                          capture_output=True, text=True).stdout.strip()


def pfa_rows(db):
    """The fixture database, as Postfix Admin 4 writes its rows."""
    sql = []
    for d in DOMAINS:
        sql += ["DELETE FROM alias WHERE domain=%s" % q(d),
                "DELETE FROM mailbox WHERE domain=%s" % q(d),
                "DELETE FROM alias_domain WHERE target_domain=%s" % q(d),
                "DELETE FROM domain WHERE domain=%s" % q(d)]
    # domain: description, aliases, mailboxes, maxquota (MB), quota (MB),
    # transport, backupmx, created, modified, active, password_expiry (days)
    for d, quota, active, expiry in [("pfa.test", 0, 1, 0), ("off.test", 0, 0, 0),
                                     ("exp.test", 0, 1, 30), ("quota.test", 1, 1, 0),
                                     ("mx.internal", 0, 1, 0)]:
        sql.append("INSERT INTO domain (domain, description, aliases, mailboxes, "
                   "maxquota, quota, transport, backupmx, created, modified, active,"
                   " password_expiry) VALUES (%s, 'fixture', 10, 10, 10, %d, "
                   "'virtual', 0, NOW(), NOW(), %d, %d)" % (q(d), quota, active, expiry))
    hashes = {"md5@pfa.test": md5_crypt("md5-pw"),
              # printf %s 'Secret1!' | openssl dgst -md5 -binary | base64
              "b64@pfa.test": "{PLAIN-MD5.B64}8137AYiFj2KS7Qq0C9hZew=="}
    # password_expiry: Postfix Admin writes now + 365 days with each
    # password; dave's and frank's have run out (frank's domain has no
    # expiry, so it does not matter for him)
    expired = {"dave@exp.test", "frank@pfa.test"}
    inactive = {"bob@pfa.test"}
    for u, (pw, md, quota) in USERS.items():
        local, dom = u.split("@")
        h = hashes.get(u) or sha512_crypt(pw)
        sql.append("INSERT INTO mailbox (username, password, name, maildir, quota, "
                   "local_part, domain, created, modified, active, password_expiry,"
                   " smtp_active) VALUES (%s, %s, '', %s, %d, %s, %s, NOW(), NOW(), "
                   "%d, NOW() %s INTERVAL 365 DAY, 1)"
                   % (q(u), q(h), q(md), quota, q(local), q(dom),
                      0 if u in inactive else 1, "-" if u in expired else "+"))
        # every mailbox is also an alias of itself; Postfix Admin turns
        # both rows off together
        sql.append("INSERT INTO alias (address, goto, domain, created, modified, "
                   "active) VALUES (%s, %s, %s, NOW(), NOW(), %d)"
                   % (q(u), q(u), q(dom), 0 if u in inactive else 1))
    for a, goto in [("sales@pfa.test", "alice@pfa.test,bob@pfa.test,ghost@pfa.test"),
                    ("nobody@pfa.test", "bob@pfa.test,ghost@pfa.test")]:
        sql.append("INSERT INTO alias (address, goto, domain, created, modified, "
                   "active) VALUES (%s, %s, 'pfa.test', NOW(), NOW(), 1)" % (q(a), q(goto)))
    db.sql(";\n".join(sql) + ";")


class SampleMaps:
    """deploy/etc/mysql/*.cf with this server's address and account."""

    def __init__(self, mariadb):
        self.db = mariadb

    def copy(self, etc):
        d = os.path.join(etc, "mysql")
        os.makedirs(d, exist_ok=True)
        src = os.path.join(ROOT, "deploy", "etc", "mysql")
        for name in os.listdir(src):
            text = open(os.path.join(src, name)).read()
            text = re.sub(r"(?m)^hosts = .*$", "hosts = 127.0.0.1:%d" % self.db.port, text)
            text = re.sub(r"(?m)^user = .*$", "user = %s" % self.db.user, text)
            text = re.sub(r"(?m)^password = .*$", "password = %s" % self.db.password, text)
            text = re.sub(r"(?m)^dbname = .*$", "dbname = %s" % self.db.db, text)
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(d, name), 0o644)
        os.chmod(d, 0o755)
        return d

    def submission_params(self, etc):
        d = self.copy(etc)
        m = lambda n: "mysql:%s/%s.cf" % (d, n)  # noqa: E731
        return {
            "virtual_mailbox_domains": m("virtual_domains_maps"),
            "virtual_mailbox_maps": "%s, proxy:%s" % (
                m("virtual_mailbox_maps"), m("virtual_alias_domain_mailbox_maps")),
            "virtual_alias_maps": "proxy:%s, proxy:%s, proxy:%s" % (
                m("virtual_alias_maps"), m("virtual_alias_domain_maps"),
                m("virtual_alias_domain_catchall_maps")),
            "virtual_password_maps": "proxy:" + m("virtual_password_maps"),
            "virtual_mailbox_limit_maps": m("virtual_mailbox_limit_maps"),
            "virtual_domain_quota_maps": m("virtual_domain_quota_maps"),
            "smtpd_sender_login_maps": m("sender_login_maps"),
        }


@pytest.fixture
def pfa(build, redis, tls_cert, mariadb):
    pfa_rows(mariadb)
    envs = []

    def make(**kw):
        e = SubEnv(build, redis, tls_cert, users=USERS, aliases=[],
                   mysql=SampleMaps(mariadb), **kw).start()
        envs.append(e)
        return e
    yield make
    for e in envs:
        e.cleanup()


def msg(subject, body="hello\r\n", frm="alice@pfa.test"):
    return ("From: <%s>\r\nTo: <sales@pfa.test>\r\nSubject: %s\r\n"
            "Message-ID: <%s@t>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            "\r\n%s" % (frm, subject, subject.replace(" ", "."), body)).encode()


def send_nosize(s, sender, rcpts, data):
    assert s.mail(sender)[0] == 250
    for r in rcpts:
        assert s.rcpt(r)[0] == 250
    return s.data(data)


def login_code(e, user, password):
    with e.smtp() as s:
        try:
            return s.login(user, password)[0]
        except smtplib.SMTPAuthenticationError as ex:
            return ex.smtp_code
        except smtplib.SMTPResponseException as ex:
            return ex.smtp_code


# ---- aliases with members that cannot take mail --------------------------

def test_alias_with_inactive_and_unknown_members(pfa):
    """sales@ -> alice, bob (mailbox and self-alias inactive), ghost
    (no mailbox): alice gets the message, the sender a report for the
    two others only."""
    e = pfa()
    with e.smtp(login="alice@pfa.test") as s:
        assert s.mail("alice@pfa.test", ["SIZE=300"])[0] == 250
        assert s.rcpt("sales@pfa.test")[0] == 250
        code, text = s.data(msg("to the team"))
        assert code == 250, text
    got = e.wait_messages("alice@pfa.test", 2)
    texts = [m for _, m in got]
    orig = [m for m in texts if b"Subject: to the team" in m.split(b"\r\n\r\n")[0]]
    assert len(orig) == 1, e.log()
    assert b"Delivered-To: alice@pfa.test" in orig[0]
    dsn = [m for m in texts if b"message/delivery-status" in m]
    assert len(dsn) == 1, e.log()
    assert b"Final-Recipient: rfc822; bob@pfa.test" in dsn[0]
    assert b"Final-Recipient: rfc822; ghost@pfa.test" in dsn[0]
    assert b"Final-Recipient: rfc822; alice@pfa.test" not in dsn[0]
    assert b"Status: 5.1.1" in dsn[0]
    assert e.messages("bob@pfa.test") == []
    log = e.log()
    assert re.search(r"to=<bob@pfa\.test>, orig_to=<sales@pfa\.test>.*status=bounced", log)
    assert re.search(r"to=<alice@pfa\.test>, orig_to=<sales@pfa\.test>.*status=sent", log)


def test_alias_from_the_mx_forwarder_is_not_lost(pfa):
    """The issue's case: the MX forwards to the intake; the intake used to
    refuse the whole recipient, and alice got nothing."""
    e = pfa()
    with e.smtp(port=e.intake_port, login="relay@mx.internal") as s:
        code, text = send_nosize(s, "someone@remote.example", ["sales@pfa.test"],
                                 msg("from outside", frm="someone@remote.example"))
        assert code == 250, text
    got = e.wait_messages("alice@pfa.test", 1)
    assert len(got) == 1 and b"Subject: from outside" in got[0][1]
    assert "sender non-delivery notification" in e.log()


def test_alias_whose_members_all_fail_is_refused_at_rcpt(pfa):
    e = pfa()
    with e.smtp(login="alice@pfa.test") as s:
        assert s.mail("alice@pfa.test")[0] == 250
        code, text = s.rcpt("nobody@pfa.test")
        assert code == 550 and b"5.1.1" in text, text
        # an inactive mailbox itself is unknown, as before
        code, text = s.rcpt("bob@pfa.test")
        assert code == 550 and b"5.1.1" in text, text
        assert s.rcpt("sales@pfa.test")[0] == 250


# ---- logins: virtual_password_maps.cf ------------------------------------

def test_password_map_sample_rules(pfa):
    e = pfa()
    # an active mailbox in an inactive domain: no login, so no sending
    assert login_code(e, "carol@off.test", "carol-pw") == 535
    with e.smtp() as s:
        code, _ = s.mail("carol@off.test")
        assert code == 530
    # the password ran out and the domain has an expiry: refused
    assert login_code(e, "dave@exp.test", "dave-pw") == 535
    assert login_code(e, "erin@exp.test", "erin-pw") == 235
    # ran out, but the domain has none (password_expiry = 0): fine
    assert login_code(e, "frank@pfa.test", "frank-pw") == 235
    # an inactive mailbox
    assert login_code(e, "bob@pfa.test", "bob-pw") == 535
    # Postfix Admin's md5crypt (no prefix) and Dovecot's {PLAIN-MD5.B64}
    assert login_code(e, "md5@pfa.test", "md5-pw") == 235
    assert login_code(e, "b64@pfa.test", "Secret1!") == 235
    assert login_code(e, "b64@pfa.test", "Secret1?") == 535


def test_password_map_sample_for_imap(build, tls_cert, free_port, mariadb,
                                      world_dir):
    """The mra reads the same virtual_password_maps.cf."""
    pfa_rows(mariadb)
    d = SampleMaps(mariadb).copy(world_dir)
    env = MraEnv(build, world_dir, tls_cert, free_port, users={},
                 virtual_mailbox_maps="proxy:mysql:%s/virtual_mailbox_maps.cf" % d,
                 virtual_password_maps="mysql:%s/virtual_password_maps.cf" % d).start()
    try:
        ctx = ssl.create_default_context(cafile=tls_cert.cert)
        ctx.check_hostname = False

        def login(user, pw):
            m = imaplib.IMAP4_SSL("127.0.0.1", env.imaps_port, ssl_context=ctx)
            try:
                return m.login(user, pw)[0]
            except imaplib.IMAP4.error:
                return "NO"
            finally:
                try:
                    m.logout()
                except (imaplib.IMAP4.error, OSError):
                    pass
        assert login("alice@pfa.test", "alice-pw") == "OK"
        assert login("carol@off.test", "carol-pw") == "NO"
        assert login("dave@exp.test", "dave-pw") == "NO"
        assert login("frank@pfa.test", "frank-pw") == "OK"
        assert login("b64@pfa.test", "Secret1!") == "OK"
    finally:
        env.cleanup()


# ---- mailctl in the Postfix Admin tables ---------------------------------

def mailctl(build, etc, *args, stdin=None):
    r = subprocess.run([str(build / "mailctl"), "-c", etc] + list(args),
                       input=stdin, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_mailctl_rows_pass_postfixadmin_rules(pfa, build, mariadb):
    e = pfa()
    mailctl(build, e.etc, "domain", "add", "mc.test")
    assert mariadb.sql("SELECT password_expiry FROM domain WHERE domain='mc.test'") == [["0"]]
    mailctl(build, e.etc, "mailbox", "add", "gina@mc.test", "--password", "gina-pw",
            "--quota", "2")
    rows = mariadb.sql("SELECT quota, password_expiry > NOW() + INTERVAL 364 DAY, "
                       "password_expiry < NOW() + INTERVAL 366 DAY FROM mailbox "
                       "WHERE username='gina@mc.test'")
    assert rows == [[str(2 * MB), "1", "1"]]
    assert login_code(e, "gina@mc.test", "gina-pw") == 235
    # a domain with an expiry: a new password lives that many days
    mariadb.sql("UPDATE domain SET password_expiry = 30 WHERE domain='mc.test'")
    mailctl(build, e.etc, "mailbox", "passwd", "gina@mc.test", "--password", "new-pw")
    rows = mariadb.sql("SELECT password_expiry > NOW() + INTERVAL 29 DAY, "
                       "password_expiry < NOW() + INTERVAL 31 DAY FROM mailbox "
                       "WHERE username='gina@mc.test'")
    assert rows == [["1", "1"]]
    assert login_code(e, "gina@mc.test", "new-pw") == 235
    mariadb.sql("UPDATE mailbox SET password_expiry = NOW() - INTERVAL 1 DAY "
                "WHERE username='gina@mc.test'")
    assert login_code(e, "gina@mc.test", "new-pw") == 535
    r = subprocess.run([str(build / "mailctl"), "-c", e.etc, "mailbox", "add",
                        "hank@mc.test", "--password", "x", "--quota", "1048576000000000"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "megabytes" in r.stderr


# ---- the domain quota -----------------------------------------------------

def test_domain_quota_counts_all_mailboxes(pfa):
    """quota.test may hold 1 MB (1024000 bytes) in all its mailboxes; q1
    and q2 have no quota of their own."""
    e = pfa()
    big = "x" * 998 + "\r\n"
    with e.smtp(login="q1@quota.test") as s:
        code, text = send_nosize(s, "q1@quota.test", ["q1@quota.test"],
                                 msg("first", big * 600, frm="q1@quota.test"))
        assert code == 250, text
        # q2's own Maildir is empty, but the domain has no room left
        code, text = send_nosize(s, "q1@quota.test", ["q2@quota.test"],
                                 msg("second", big * 600, frm="q1@quota.test"))
        assert code == 552 and b"5.2.2" in text and b"Domain quota" in text, text
        # known in advance (SIZE=): refused at RCPT
        assert s.mail("q1@quota.test", ["SIZE=600000"])[0] == 250
        code, text = s.rcpt("q2@quota.test")
        assert code == 552 and b"5.2.2" in text, text
        s.rset()
        # what fits still goes in
        code, text = send_nosize(s, "q1@quota.test", ["q2@quota.test"],
                                 msg("small", "hi\r\n", frm="q1@quota.test"))
        assert code == 250, text
    assert len(e.messages("q1@quota.test")) == 1
    got = e.messages("q2@quota.test")
    assert len(got) == 1 and b"Subject: small" in got[0][1]


# ---- mysql_table(5) TLS ---------------------------------------------------

class TlsMariaDB(servers.MariaDB):
    """The harness's MariaDB, started with a throw-away certificate and
    require_secure_transport (unix socket clients count as secure, so the
    harness's own mariadb client still works)."""

    def __init__(self, base, cert, key):
        super().__init__(base)
        self.tls_args = ["--ssl-cert=" + cert, "--ssl-key=" + key,
                         "--require-secure-transport=ON"]

    def start(self):
        real = subprocess.Popen
        extra = self.tls_args

        def popen(args, *a, **kw):
            if args and args[0] == "mariadbd":
                args = list(args) + extra
            return real(args, *a, **kw)
        subprocess.Popen = popen
        try:
            return super().start()
        finally:
            subprocess.Popen = real


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory, tls_cert):
    db = TlsMariaDB(str(tmp_path_factory.mktemp("mariadb-tls")), tls_cert.cert,
                    tls_cert.key).start()
    yield db
    db.cleanup()


@pytest.fixture
def world_dir():
    """A folder the daemon can still read after it drops to mail_owner
    (pytest's tmp_path is under a 0700 folder)."""
    d = tempfile.mkdtemp(prefix="pfa-tls-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_mysql_tls_fields(build, redis, tls_cert, tls_mariadb, world_dir):
    db = tls_mariadb
    tmp_path = world_dir
    db.sql("DELETE FROM mailbox; INSERT INTO mailbox (username, password, maildir,"
           " local_part, domain, active) VALUES ('alice@demo.test', %s, "
           "'demo.test/alice/', 'alice', 'demo.test', 1);" % q(sha512_crypt("alice-pw")))
    # a second certificate the server does not have: verification fails
    other = os.path.join(tmp_path, "other")
    os.makedirs(other)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", other + "/key.pem",
                    "-out", other + "/cert.pem"], check=True, capture_output=True)
    ca = os.path.join(tmp_path, "ca.pem")
    shutil.copy(tls_cert.cert, ca)
    os.chmod(other, 0o755)
    for p in (ca, other + "/cert.pem"):
        os.chmod(p, 0o644)

    def cf(name, extra):
        path = os.path.join(tmp_path, name + ".cf")
        with open(path, "w") as f:
            f.write("hosts = 127.0.0.1:%d\nuser = %s\npassword = %s\ndbname = %s\n"
                    "query = SELECT password FROM mailbox WHERE username='%%s' "
                    "AND active = '1'\n%s" % (db.port, db.user, db.password, db.db,
                                               extra))
        os.chmod(path, 0o644)
        return "mysql:" + path

    cases = [
        # TLS, the server's certificate checked against its CA: logs in
        (cf("verified", "tls_CAfile = %s\ntls_verify_cert = yes\n"
            "tls_ciphers = HIGH:!aNULL\n" % ca), 235, None),
        # TLS without verification (Postfix's default tls_verify_cert = no)
        (cf("unverified", "tls_ciphers = HIGH:!aNULL\n"), 235, None),
        # no TLS field: the server refuses cleartext (MariaDB says "Access
        # denied" for the same account that logs in over TLS above), a
        # temporary failure
        (cf("cleartext", ""), 454, "Access denied"),
        # the wrong CA with verification: no connection
        (cf("wrong_ca", "tls_CAfile = %s/cert.pem\ntls_verify_cert = yes\n"
            % other), 454, "connect to 127.0.0.1"),
    ]
    for spec, want, logged in cases:
        e = SubEnv(build, redis, tls_cert,
                   params={"virtual_password_maps": spec}).start()
        try:
            code = login_code(e, "alice@demo.test", "alice-pw")
            if code != want:
                print(e.log())
            assert code == want, spec
            if logged:
                assert logged in e.log(), e.log()
        finally:
            e.cleanup()


def test_mysql_tls_field_errors(build, redis, tls_cert, world_dir):
    tmp_path = world_dir
    path = os.path.join(tmp_path, "bad.cf")
    with open(path, "w") as f:
        f.write("hosts = 127.0.0.1:1\nquery = SELECT 1\ntls_verify_cert = maybe\n")
    os.chmod(path, 0o644)
    e = SubEnv(build, redis, tls_cert, params={"virtual_password_maps": "mysql:" + path})
    try:
        with pytest.raises(RuntimeError):
            e.start()
        assert re.search(r"bad\.cf, line 3: bad boolean \"maybe\"", e.log()), e.log()
    finally:
        e.cleanup()
