"""Helper for the submission integration tests and benchmark: lays out a
config folder (submission.cf + texthash maps, or MySQL .cf files in Postfix
Admin's style), a Maildir base owned by the virtual user, starts
build/submission and stops it by PID.

Everything lives under one folder in /tmp with mode 0755, because the
daemon drops to mail_owner (nobody when the tests run as root) and must
still read its maps and write the Maildirs.
"""
import os
import sys
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
    import servers
    return servers.free_port()


def sha512_crypt(password):
    out = subprocess.run(["openssl", "passwd", "-6", password], check=True,
                         capture_output=True, text=True).stdout.strip()
    return "{SHA512-CRYPT}" + out


def wait_port(port, proc, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("submission exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("submission does not listen on %d" % port)


# Default users: address -> (password, maildir relative to the base, quota)
USERS = {
    "alice@demo.test": ("alice-pw", "demo.test/alice/", 0),
    "bob@demo.test": ("bob-pw", "demo.test/bob/", 0),
    "carol@demo.test": ("carol-pw", "demo.test/carol/", 0),
    "small@demo.test": ("small-pw", "demo.test/small/", 3000),
    "mboxer@demo.test": ("mboxer-pw", "demo.test/mboxer.mbox", 0),
    "relay@mx.internal": ("relay-pw", None, 0),
}

# virtual_alias_maps as texthash lines (Postfix Admin keeps a self-alias for
# every mailbox; the catch-all of other.test catches the rest).
ALIASES = [
    ("alice@demo.test", "alice@demo.test"),
    ("bob@demo.test", "bob@demo.test"),
    ("carol@demo.test", "carol@demo.test"),
    ("small@demo.test", "small@demo.test"),
    ("mboxer@demo.test", "mboxer@demo.test"),
    ("team@demo.test", "alice@demo.test, bob@demo.test"),
    ("sales@demo.test", "alice@demo.test"),
    ("fwd@demo.test", "carol@demo.test, someone@remote.example"),
    ("chain1@demo.test", "chain2@demo.test"),
    ("chain2@demo.test", "carol@demo.test"),
    ("loop1@demo.test", "loop2@demo.test"),
    ("loop2@demo.test", "loop1@demo.test"),
    ("@other.test", "bob@demo.test"),
    ("@alias.test", "@demo.test"),
]

DOMAINS = ["demo.test", "other.test", "alias.test"]


class SubEnv:
    def __init__(self, build, redis, tls_cert, params=None, users=None,
                 aliases=None, mysql=None):
        self.build = str(build)
        self.redis = redis
        self.tls = tls_cert
        self.dir = tempfile.mkdtemp(prefix="subenv-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.mail = os.path.join(self.dir, "mail")
        os.makedirs(self.etc)
        os.makedirs(self.mail)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            self.uid, self.gid, self.owner = pw.pw_uid, pw.pw_gid, "nobody"
            os.chown(self.mail, self.uid, self.gid)
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            self.owner = pwd.getpwuid(self.uid).pw_name
        self.submission_port = free_port()
        self.smtps_port = free_port()
        self.intake_port = free_port()
        self.users = dict(USERS if users is None else users)
        self.aliases = list(ALIASES if aliases is None else aliases)
        self.mysql = mysql
        self.params = params or {}
        self.proc = None
        self.log_path = os.path.join(self.dir, "submission.log")
        # the TLS key must be readable before the drop only
        self.write_config()

    # ---- config -------------------------------------------------------
    def _texthash(self, name, rows):
        path = os.path.join(self.etc, name)
        with open(path, "w") as f:
            for k, v in rows:
                f.write("%s %s\n" % (k, v))
        os.chmod(path, 0o644)
        return "texthash:" + path

    def write_config(self):
        p = {
            "myhostname": "sub.demo.test",
            "mail_owner": self.owner,
            "syslog_enable": "no",
            "inet_interfaces": "127.0.0.1",
            "submission_listen": "127.0.0.1:%d" % self.submission_port,
            "smtps_listen": "127.0.0.1:%d" % self.smtps_port,
            "intake_listen": "127.0.0.1:%d" % self.intake_port,
            "intake_relay_logins": "relay@mx.internal",
            "mynetworks": "",
            "smtpd_tls_cert_file": self.tls.cert,
            "smtpd_tls_key_file": self.tls.key,
            "redis_server": self.redis.address,
            "virtual_mailbox_base": self.mail,
            "virtual_uid_maps": "static:%d" % self.uid,
            "virtual_gid_maps": "static:%d" % self.gid,
            "virtual_minimum_uid": "1" if self.uid >= 1 else "0",
            "recipient_delimiter": "+",
            # shared/loginfail: 1 s, 2 s, 4 s ... for a failing pair
            "auth_failure_delay": "1s",
        }
        if self.mysql is None:
            p["virtual_mailbox_domains"] = " ".join(DOMAINS)
            p["virtual_mailbox_maps"] = self._texthash(
                "mailboxes", [(u, d) for u, (pw, d, q) in self.users.items() if d])
            p["virtual_alias_maps"] = self._texthash("aliases", self.aliases)
            p["virtual_password_maps"] = self._texthash(
                "passwd", [(u, sha512_crypt(pw) if i % 2 else "{PLAIN}" + pw)
                           for i, (u, (pw, d, q)) in enumerate(self.users.items())])
            p["virtual_mailbox_limit_maps"] = self._texthash(
                "quota", [(u, q) for u, (pw, d, q) in self.users.items() if q])
            p["smtpd_sender_login_maps"] = p["virtual_alias_maps"]
        else:
            p.update(self.mysql.submission_params(self.etc))
        p.update(self.params)
        with open(os.path.join(self.etc, "submission.cf"), "w") as f:
            for k, v in p.items():
                f.write("%s = %s\n" % (k, v))

    # ---- process ------------------------------------------------------
    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(self.build, "submission"),
                                      "-c", self.etc],
                                     stdout=self.logf, stderr=self.logf)
        for port in (self.submission_port, self.smtps_port, self.intake_port):
            wait_port(port, self.proc)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def cleanup(self):
        self.stop()
        try:
            self.logf.close()
        except AttributeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    # ---- clients ------------------------------------------------------
    @staticmethod
    def client_ctx():
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def smtp(self, port=None, starttls=True, login=None, timeout=30):
        s = smtplib.SMTP("127.0.0.1", port or self.submission_port,
                         timeout=timeout)
        s.ehlo("client.test")
        if starttls:
            s.starttls(context=self.client_ctx())
            s.ehlo("client.test")
        if login:
            s.login(login, self.users[login][0])
        return s

    def smtps(self, login=None, timeout=30):
        s = smtplib.SMTP_SSL("127.0.0.1", self.smtps_port, timeout=timeout,
                             context=self.client_ctx())
        s.ehlo("client.test")
        if login:
            s.login(login, self.users[login][0])
        return s

    # ---- mailboxes ----------------------------------------------------
    def maildir(self, user):
        return os.path.join(self.mail, self.users[user][1])

    def messages(self, user, sub="new"):
        d = os.path.join(self.maildir(user), sub)
        if not os.path.isdir(d):
            return []
        out = []
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out.append((name, f.read()))
        return out

    def wait_messages(self, user, n, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.messages(user)
            if len(m) >= n:
                return m
            time.sleep(0.05)
        return self.messages(user)


class MySQLUsers:
    """Postfix Admin rows in the session's MariaDB plus the .cf files
    submission reads (the queries Postfix Admin documents)."""

    def __init__(self, mariadb):
        self.db = mariadb

    def load(self, users, aliases, alias_domains=()):
        sql = ["DELETE FROM mailbox", "DELETE FROM alias",
               "DELETE FROM alias_domain", "DELETE FROM domain"]
        for d in ["demo.test", "other.test", "alias.test"]:
            sql.append("INSERT INTO domain (domain, description, aliases, "
                       "mailboxes, maxquota, quota, transport, backupmx, "
                       "created, modified, active) VALUES ('%s', '', 0, 0, "
                       "0, 0, 'virtual', 0, NOW(), NOW(), 1)" % d)
        for u, (pw, md, q) in users.items():
            if md is None:
                md = ""
            local, dom = u.split("@")
            sql.append("INSERT INTO mailbox (username, password, name, "
                       "maildir, quota, local_part, domain, created, modified,"
                       " active) VALUES ('%s', '%s', '', '%s', %d, '%s', '%s',"
                       " NOW(), NOW(), 1)" % (u, sha512_crypt(pw).replace("'", "''"),
                                              md, q, local, dom))
        for a, goto in aliases:
            if a.startswith("@alias.test"):
                continue
            dom = a.split("@")[1]
            sql.append("INSERT INTO alias (address, goto, domain, created, "
                       "modified, active) VALUES ('%s', '%s', '%s', NOW(), "
                       "NOW(), 1)" % (a, goto.replace(" ", ""), dom))
        for src, dst in alias_domains:
            sql.append("INSERT INTO alias_domain (alias_domain, target_domain,"
                       " created, modified, active) VALUES ('%s', '%s', NOW(),"
                       " NOW(), 1)" % (src, dst))
        self.db.sql(";\n".join(sql) + ";")

    def _cf(self, etc, name, query):
        path = os.path.join(etc, name + ".cf")
        with open(path, "w") as f:
            f.write("hosts = 127.0.0.1:%d\nuser = %s\npassword = %s\n"
                    "dbname = %s\nquery = %s\n" % (self.db.port, self.db.user,
                                                    self.db.password, self.db.db,
                                                    query))
        os.chmod(path, 0o644)
        return "mysql:" + path

    def submission_params(self, etc):
        cf = lambda n, q: self._cf(etc, n, q)  # noqa: E731
        return {
            "virtual_mailbox_domains": cf(
                "domains", "SELECT domain FROM domain WHERE domain='%s' AND active = '1'"),
            "virtual_mailbox_maps": " ".join([
                cf("mailbox", "SELECT maildir FROM mailbox WHERE username='%s' AND active = '1'"),
                cf("mailbox_ad", "SELECT maildir FROM mailbox,alias_domain WHERE "
                   "alias_domain.alias_domain = '%d' AND mailbox.username = "
                   "CONCAT('%u', '@', alias_domain.target_domain) AND mailbox.active = 1 "
                   "AND alias_domain.active='1'")]),
            "virtual_alias_maps": " ".join([
                cf("alias", "SELECT goto FROM alias WHERE address='%s' AND active = '1'"),
                cf("alias_ad", "SELECT goto FROM alias,alias_domain WHERE "
                   "alias_domain.alias_domain = '%d' AND alias.address = "
                   "CONCAT('%u', '@', alias_domain.target_domain) AND alias.active = 1 "
                   "AND alias_domain.active='1'"),
                cf("alias_ad_catchall", "SELECT goto FROM alias,alias_domain WHERE "
                   "alias_domain.alias_domain = '%d' AND alias.address = "
                   "CONCAT('@', alias_domain.target_domain) AND alias.active = 1 "
                   "AND alias_domain.active='1'")]),
            "virtual_password_maps": cf(
                "passwd", "SELECT password FROM mailbox WHERE username='%s' AND active = '1'"),
            "virtual_mailbox_limit_maps": cf(
                "quota", "SELECT quota FROM mailbox WHERE username='%s' AND active = '1'"),
            "smtpd_sender_login_maps": cf(
                "login", "SELECT goto FROM alias WHERE address='%s' AND active = '1'"),
        }
