"""The two-host site of deploy/compose.yaml, built on this machine out of
network namespaces (see netns.py):

  client 10.200.1.2 --- 10.200.1.1 MX host  10.200.2.1 --- 10.200.2.2 internal
     |                  (mx-relay, redis)       inside link   (submission, mra,
     +-- 10.200.3.2 ------------------------------------ 10.200.3.1  redis, mariadb)

The daemons' configurations are the deploy samples themselves
(deploy/etc/mx/mx-relay.cf, deploy/etc/internal/{submission,mra}.cf and
their mysql .cf files) with paths rewritten to a temporary folder and a
few test values appended at the end (a later line wins, as in Postfix).
Users are created with build/mailctl in a MariaDB that runs inside the
internal namespace; the MX reads it over the inside link with the
read-only, column-restricted account README.md (Deploying on two hosts) describes.
"""
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

from netns import Topology, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")

DOMAIN = "example.test"
MX_NAME = "mx." + DOMAIN
MAIL_NAME = "mail." + DOMAIN
CLIENT_MX, MX_OUT = "10.200.1.2", "10.200.1.1"
MX_IN, INTERNAL_IN = "10.200.2.1", "10.200.2.2"
CLIENT_INT, INTERNAL_OUT = "10.200.3.2", "10.200.3.1"
INTAKE_PORT = 5526
RELAY_USER = "relay@" + DOMAIN
USERS = {"alice@" + DOMAIN: "alice-Secret-1", "bob@" + DOMAIN: "bob-Secret-2"}
DB_USER, DB_PASSWORD = "mailpair", "twohost-db-pw"
MX_DB_USER, MX_DB_PASSWORD = "mailpair_mx", "twohost-mx-pw"



def forward_params(etc, ca):
    """The MX forwarder's parameters for this test (the sample's
    smtp_sasl_* stay): the intake by address, the certificate verified
    against the test CA (it names 10.200.2.2), and retry times short
    enough for the link-down case to finish in seconds."""
    return {
        "relayhost": "[%s]:%d" % (INTERNAL_IN, INTAKE_PORT),
        "smtp_tls_security_level": "verify",
        "smtp_tls_CAfile": ca,
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
        "queue_run_delay": "1s",
        "smtp_connect_timeout": "3s",
        "smtp_helo_timeout": "10s",
        "smtp_data_done_timeout": "10s",
    }


def _sh(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r.stdout


def derive_cf(sample, etc, overrides, subst=()):
    """The sample's text with /etc/mailpair pointing at etc, then the
    overrides appended (the last setting of a name wins)."""
    with open(sample) as f:
        text = f.read()
    text = text.replace("/etc/mailpair/", etc + "/")
    for a, b in subst:
        text = text.replace(a, b)
    text += "\n# ---- two-host test overrides ----\n"
    text += "".join("%s = %s\n" % kv for kv in overrides.items())
    return text


def derive_mysql_cf(sample, host, user, password):
    with open(sample) as f:
        text = f.read()
    text = re.sub(r"(?m)^hosts = .*$", "hosts = " + host, text)
    text = re.sub(r"(?m)^user = .*$", "user = " + user, text)
    text = re.sub(r"(?m)^password = .*$", "password = " + password, text)
    return text


class Site:
    def __init__(self, build, tag):
        self.build = build
        self.topo = Topology(tag)
        self.dir = tempfile.mkdtemp(prefix="twohost-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam("nobody")
        self.owner, self.uid, self.gid = "nobody", pw.pw_uid, pw.pw_gid
        self.mx_etc = os.path.join(self.dir, "mx", "etc")
        self.int_etc = os.path.join(self.dir, "internal", "etc")
        self.mail = os.path.join(self.dir, "internal", "mail")
        self.tls = os.path.join(self.dir, "tls")
        self.logs = os.path.join(self.dir, "log")
        for d in (self.mx_etc + "/mysql", self.int_etc + "/mysql", self.mail,
                  self.tls, self.logs, self.dir + "/mx/redis",
                  self.dir + "/internal/redis"):
            os.makedirs(d)
            os.chmod(d, 0o755)
        self.procs = {}
        self.relay_password = "relay-" + os.urandom(8).hex()

    # ---- binaries --------------------------------------------------------
    def bin(self, name):
        path = os.path.join(self.build, name)
        if not os.access(path, os.X_OK):
            raise RuntimeError("%s is not built (run make B=... bins)" % path)
        return path

    # ---- network ---------------------------------------------------------
    def build_network(self):
        t = self.topo
        self.ns_client = t.add_ns("client")
        self.ns_mx = t.add_ns("mx")
        self.ns_int = t.add_ns("int")
        tag = t.tag
        self.if_mx_in, self.if_int_in = tag + "m2", tag + "i2"
        t.link(self.ns_client, tag + "c1", CLIENT_MX + "/24",
               self.ns_mx, tag + "m1", MX_OUT + "/24")
        t.link(self.ns_mx, self.if_mx_in, MX_IN + "/24",
               self.ns_int, self.if_int_in, INTERNAL_IN + "/24")
        t.link(self.ns_client, tag + "c3", CLIENT_INT + "/24",
               self.ns_int, tag + "i3", INTERNAL_OUT + "/24")

    def inside_link(self, up):
        self.topo.set_link(self.ns_mx, self.if_mx_in, up)
        self.topo.set_link(self.ns_int, self.if_int_in, up)

    # ---- TLS: a throw-away CA and one certificate per host ---------------
    def make_tls(self):
        d = self.tls
        self.ca = os.path.join(d, "ca.pem")
        _sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=twohost test CA", "-keyout", d + "/ca.key",
             "-out", self.ca])
        for host, sans in ((MX_NAME, [MX_OUT, MX_IN]),
                           (MAIL_NAME, [INTERNAL_IN, INTERNAL_OUT])):
            key, csr, crt = ["%s/%s.%s" % (d, host, x) for x in ("key", "csr", "pem")]
            ext = "%s/%s.ext" % (d, host)
            with open(ext, "w") as f:
                f.write("subjectAltName=DNS:%s,%s\n"
                        % (host, ",".join("IP:" + a for a in sans)))
            _sh(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + host,
                 "-keyout", key, "-out", csr])
            _sh(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca,
                 "-CAkey", d + "/ca.key", "-CAcreateserial", "-days", "2",
                 "-extfile", ext, "-out", crt])
            os.chmod(key, 0o600)   # read as root, before the privilege drop
        os.chmod(self.ca, 0o644)

    # ---- Redis, one per host ----------------------------------------------
    def start_redis(self, ns, role):
        d = os.path.join(self.dir, role, "redis")
        conf = os.path.join(d, "redis.conf")
        with open(conf, "w") as f:
            f.write("bind 127.0.0.1\nport 6379\ndir %s\nappendonly yes\n"
                    "appendfsync always\nsave \"\"\ndaemonize no\n"
                    "logfile %s/redis-%s.log\n" % (d, self.logs, role))
        self.procs["redis-" + role] = self.topo.spawn(
            ns, "redis-" + role, ["redis-server", conf],
            os.path.join(self.logs, "redis-%s.out" % role))

    def redis(self, ns, *args):
        r = self.topo.run(ns, ["redis-cli", "-h", "127.0.0.1", "-p", "6379",
                               "--raw"] + list(args), timeout=10)
        if r.returncode != 0:
            raise RuntimeError("redis-cli %s: %s" % (args, r.stderr))
        return r.stdout.decode().splitlines()

    def wait_redis(self, ns):
        wait_for(lambda: self._ping(ns), 15, what="redis in " + ns)

    def _ping(self, ns):
        try:
            return self.redis(ns, "PING") == ["PONG"]
        except RuntimeError:
            return False

    # ---- MariaDB inside the internal namespace ----------------------------
    def start_mariadb(self):
        d = os.path.join(self.dir, "internal", "mariadb")
        os.makedirs(d)
        self.db_socket = os.path.join(d, "mysql.sock")
        _sh(["mariadb-install-db", "--no-defaults", "--datadir=" + d + "/data",
             "--auth-root-authentication-method=socket", "--skip-test-db",
             "--user=root"])
        self.procs["mariadb"] = self.topo.spawn(
            self.ns_int, "mariadb",
            ["mariadbd", "--no-defaults", "--datadir=" + d + "/data",
             "--socket=" + self.db_socket, "--port=3306",
             "--bind-address=0.0.0.0", "--pid-file=" + d + "/mysqld.pid",
             "--log-error=" + self.logs + "/mariadb.err",
             "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
             "--innodb-flush-log-at-trx-commit=2", "--skip-name-resolve",
             "--character-set-server=utf8mb4", "--user=root"],
            os.path.join(self.logs, "mariadb.out"))

    def wait_mariadb(self):
        p = self.procs["mariadb"]
        wait_for(lambda: p.poll() is not None or os.path.exists(self.db_socket),
                 60, what="mariadbd socket")
        if p.poll() is not None:
            raise RuntimeError("mariadbd exited: " + self.log("mariadb.err"))
        self.tcp_open(self.ns_int, "127.0.0.1", 3306, 30)

    def sql(self, text, user=None, password=None, db=None):
        cmd = ["mariadb", "--no-defaults", "--socket=" + self.db_socket, "-N", "-B"]
        cmd += ["-u" + user, "-p" + password] if user else ["-uroot"]
        if db:
            cmd.append(db)
        r = subprocess.run(cmd, input=text, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("mariadb: " + r.stderr.strip())
        return [l.split("\t") for l in r.stdout.splitlines()]

    def setup_database(self):
        self.sql("CREATE DATABASE mailpair CHARACTER SET utf8mb4;"
                 "CREATE USER '%s'@'localhost' IDENTIFIED BY '%s';"
                 "CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s';"
                 "GRANT ALL ON mailpair.* TO '%s'@'localhost';"
                 "GRANT ALL ON mailpair.* TO '%s'@'127.0.0.1';"
                 % (DB_USER, DB_PASSWORD, DB_USER, DB_PASSWORD, DB_USER, DB_USER))
        with open(os.path.join(DEPLOY, "sql", "schema.sql")) as f:
            self.sql(f.read(), DB_USER, DB_PASSWORD, "mailpair")
        # The MX's read-only account, as README.md (Deploying on two hosts) grants it: SELECT only,
        # and no access to mailbox.password.
        self.sql("CREATE USER '{u}'@'{h}' IDENTIFIED BY '{p}';"
                 "GRANT SELECT ON mailpair.domain TO '{u}'@'{h}';"
                 "GRANT SELECT ON mailpair.alias TO '{u}'@'{h}';"
                 "GRANT SELECT ON mailpair.alias_domain TO '{u}'@'{h}';"
                 "GRANT SELECT (username, active) ON mailpair.mailbox TO '{u}'@'{h}';"
                 .format(u=MX_DB_USER, h=MX_IN, p=MX_DB_PASSWORD))

    # ---- configurations from the deploy samples ----------------------------
    def write_configs(self):
        ie, me = self.int_etc, self.mx_etc
        for name in os.listdir(os.path.join(DEPLOY, "etc", "internal", "mysql")):
            self._put(os.path.join(ie, "mysql", name), derive_mysql_cf(
                os.path.join(DEPLOY, "etc", "internal", "mysql", name),
                "127.0.0.1:3306", DB_USER, DB_PASSWORD))
        for name in os.listdir(os.path.join(DEPLOY, "etc", "mx", "mysql")):
            self._put(os.path.join(me, "mysql", name), derive_mysql_cf(
                os.path.join(DEPLOY, "etc", "mx", "mysql", name),
                "%s:3306" % INTERNAL_IN, MX_DB_USER, MX_DB_PASSWORD))
        common = {
            "mydomain": DOMAIN,
            "mail_owner": self.owner,
            "syslog_enable": "no",
        }
        sub = dict(common, **{
            "myhostname": MAIL_NAME,
            "intake_relay_logins": RELAY_USER,
            "smtpd_tls_cert_file": "%s/%s.pem" % (self.tls, MAIL_NAME),
            "smtpd_tls_key_file": "%s/%s.key" % (self.tls, MAIL_NAME),
            "redis_server": "127.0.0.1:6379",
            "virtual_mailbox_base": self.mail,
            "virtual_uid_maps": "static:%d" % self.uid,
            "virtual_gid_maps": "static:%d" % self.gid,
        })
        self._put(os.path.join(ie, "submission.cf"), derive_cf(
            os.path.join(DEPLOY, "etc", "internal", "submission.cf"), ie, sub))
        mra = dict(common, **{
            "myhostname": MAIL_NAME,
            "ssl_cert": "<%s/%s.pem" % (self.tls, MAIL_NAME),
            "ssl_key": "<%s/%s.key" % (self.tls, MAIL_NAME),
            "virtual_mailbox_base": self.mail,
            "auth_failure_delay": "1s",
        })
        self._put(os.path.join(ie, "mra.cf"), derive_cf(
            os.path.join(DEPLOY, "etc", "internal", "mra.cf"), ie, mra))
        mx = dict(common, **{
            "myhostname": MX_NAME,
            "smtpd_tls_cert_file": "%s/%s.pem" % (self.tls, MX_NAME),
            "smtpd_tls_key_file": "%s/%s.key" % (self.tls, MX_NAME),
            "redis_server": "127.0.0.1:6379",
            "postscreen_greet_wait": "0s",
        })
        mx.update(forward_params(me, self.ca))
        self._put(os.path.join(me, "mx-relay.cf"), derive_cf(
            os.path.join(DEPLOY, "etc", "mx", "mx-relay.cf"), me, mx))
        # smtp_sasl_password_maps: next hop -> user:password (Postfix form)
        self._put(os.path.join(me, "relay_passwd"), "[%s]:%d %s:%s\n" % (
            INTERNAL_IN, INTAKE_PORT, RELAY_USER, self.relay_password),
            mode=0o640)
        # root:vmail 0640, as the sample says: read after the privilege drop
        os.chown(os.path.join(me, "relay_passwd"), 0, self.gid)

    def _put(self, path, text, mode=0o644):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    # ---- users, with mailctl ------------------------------------------------
    def mailctl(self, *args, password=None):
        argv = [self.bin("mailctl"), "-c", self.int_etc] + list(args)
        r = self.topo.run(self.ns_int, argv,
                          input=(password + "\n").encode() if password else None)
        if r.returncode != 0:
            raise RuntimeError("mailctl %s: exit %d: %s%s" % (
                " ".join(args), r.returncode, r.stdout.decode(), r.stderr.decode()))
        return r.stdout.decode()

    def create_users(self):
        self.mailctl("domain", "add", DOMAIN)
        for user, pw in list(USERS.items()) + [(RELAY_USER, self.relay_password)]:
            self.mailctl("mailbox", "add", user, "--password-stdin", password=pw)

    # ---- daemons -----------------------------------------------------------
    def start_daemon(self, ns, name, etc, ports):
        p = self.topo.spawn(ns, name, [self.bin(name), "-c", etc],
                            os.path.join(self.logs, name + ".log"))
        self.procs[name] = p
        for host, port in ports:
            try:
                self.tcp_open(ns, host, port, 15, proc=p)
            except Exception as e:
                raise RuntimeError("%s did not come up (%s):\n%s"
                                   % (name, e, self.log(name + ".log")))
        return p

    def restart_mx(self, kill=False, extra=None):
        """Stop mx-relay (SIGKILL when kill, else SIGTERM), append extra
        parameters to its configuration, start it again."""
        p = self.procs["mx-relay"]
        if kill:
            os.killpg(p.pid, 9)
            p.wait()
        else:
            self.topo.stop(p)
        if extra:
            with open(os.path.join(self.mx_etc, "mx-relay.cf"), "a") as f:
                f.write("".join("%s = %s\n" % kv for kv in extra.items()))
        self.start_daemon(self.ns_mx, "mx-relay", self.mx_etc, [(MX_OUT, 25)])

    def mx_local_recipients(self, users):
        """The MX's tables without the database (the texthash alternative
        of deploy/etc/mx/texthash/relay_recipients)."""
        d = os.path.join(self.mx_etc, "texthash")
        os.makedirs(d, exist_ok=True)
        self._put(os.path.join(d, "relay_recipients"),
                  "".join("%s OK\n" % u for u in users))
        self.restart_mx(extra={
            "relay_domains": DOMAIN,
            "relay_recipient_maps": "texthash:" + os.path.join(d, "relay_recipients"),
        })

    def tcp_open(self, ns, host, port, timeout, proc=None):
        def probe():
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("exited with status %s" % proc.returncode)
            try:
                socket.create_connection((host, port), timeout=0.5).close()
                return True
            except OSError:
                return False
        self.topo.call(ns, wait_for, probe, timeout,
                       what="%s:%d in %s" % (host, port, ns),
                       timeout=timeout + 5)

    def log(self, name):
        try:
            with open(os.path.join(self.logs, name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no log: %s)" % e

    def all_logs(self, tail=40):
        out = []
        for name in sorted(os.listdir(self.logs)):
            lines = self.log(name).splitlines()[-tail:]
            out.append("==== %s (last %d lines)\n%s" % (name, len(lines), "\n".join(lines)))
        return "\n".join(out)

    # ---- Maildirs ------------------------------------------------------------
    def maildir(self, user):
        local, domain = user.split("@")
        return os.path.join(self.mail, domain, local)

    def messages(self, user):
        """(name, bytes) of every message in new/ and cur/."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir(user), sub)
            if os.path.isdir(d):
                for n in sorted(os.listdir(d)):
                    with open(os.path.join(d, n), "rb") as f:
                        out.append((sub + "/" + n, f.read()))
        return out

    def with_message_id(self, user, msgid):
        needle = b"\r\nMessage-ID: <%s>\r\n" % msgid.encode()
        return [m for m in self.messages(user) if needle in m[1]]

    # ---- bring up / tear down --------------------------------------------------
    def start(self):
        t0 = time.time()
        self.build_network()     # first: without permission, nothing else runs
        os.chown(self.mail, self.uid, self.gid)
        self.make_tls()
        self.start_mariadb()
        self.start_redis(self.ns_mx, "mx")
        self.start_redis(self.ns_int, "internal")
        self.write_configs()
        self.wait_mariadb()
        self.setup_database()
        self.wait_redis(self.ns_mx)
        self.wait_redis(self.ns_int)
        self.create_users()
        self.start_daemon(self.ns_int, "submission", self.int_etc,
                          [(INTERNAL_IN, INTAKE_PORT), (INTERNAL_OUT, 587)])
        self.start_daemon(self.ns_int, "mra", self.int_etc,
                          [(INTERNAL_OUT, 993)])
        self.start_daemon(self.ns_mx, "mx-relay", self.mx_etc, [(MX_OUT, 25)])
        self.startup_seconds = time.time() - t0
        return self

    def cleanup(self):
        errors = self.topo.cleanup()
        keep = os.environ.get("TWOHOST_KEEP")
        if keep:
            print("two-host files kept in", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return errors
