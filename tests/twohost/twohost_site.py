"""The two-host site of README.md's plain-host path ("Deploying on two
hosts"), built on this machine out of network namespaces (see netns.py):

  client 10.200.1.2 --- 10.200.1.1 MX host  10.200.2.1 --- 10.200.2.2 internal
     |                  (mx-relay, redis)       inside link   (submission, mra,
     +-- 10.200.3.2 ------------------------------------ 10.200.3.1  redis, mariadb)

Each host gets its /etc/mailpair the way the README builds it, and the
README's own shell blocks are run to do it (readme_block(): a change to
those commands changes what this test runs):
  step 4  deploy/install-etc.sh (what `make install ROLE=...` runs: the
          samples, generated passwords), then the block that sets the
          group and modes (0640);
  step 3  each host's certificate as cert.pem/key.pem, root:group 0640;
  step 5  the block that makes Debian's redis.conf durable (appendonly
          yes, appendfsync always), then a Redis started from that file;
  step 6  the block that creates the database and the two accounts, the
          MX's read-only one REQUIRE SSL, MariaDB with a certificate for
          mail.example.test, listening on the inside address;
  step 7  the two blocks that edit the samples (host names, relayhost,
          verify, the MX's mysql_table(5) tls_CAfile + tls_verify_cert);
  step 8  the block that adds the domain and alice (generated password);
  step 9  the relay account, with the password install-etc.sh generated.
"example.org" is replaced by "example.test" everywhere, as the README
asks. What only a test needs is appended at the end of each daemon's
file (a later line wins, as in Postfix): temporary paths, mail_owner
nobody (the group nogroup stands for vmail; the test creates no system
user), short retry times, and the test CA as smtp_tls_CAfile. The
internal host's `hosts = localhost` reaches the private MariaDB through
MYSQL_UNIX_PORT, MariaDB Connector/C's default socket.
"""
import os
import pwd
import grp
import re
import shutil
import socket
import subprocess
import tempfile
import time

from netns import Topology, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
README = os.path.join(ROOT, "README.md")

DOMAIN = "example.test"
MX_NAME = "mx." + DOMAIN
MAIL_NAME = "mail." + DOMAIN
CLIENT_MX, MX_OUT = "10.200.1.2", "10.200.1.1"
MX_IN, INTERNAL_IN = "10.200.2.1", "10.200.2.2"
CLIENT_INT, INTERNAL_OUT = "10.200.3.2", "10.200.3.1"
INTAKE_PORT = 5526
RELAY_USER = "relay@" + DOMAIN
ALICE, BOB = "alice@" + DOMAIN, "bob@" + DOMAIN
# passwords: all generated at start() (alice's by README step 8)
USERS = {}
MX_DB_USER = "mailpair_mx"

# Debian's /etc/redis/redis.conf lines that step 5 edits, for a machine
# without redis-server's own file
REDIS_CONF_FALLBACK = ("bind 127.0.0.1 -::1\nport 6379\nappendonly no\n"
                       "# appendfsync always\nappendfsync everysec\n"
                       "# appendfsync no\n")


def readme_block(after):
    """The first ``` block after the first README.md line holding after."""
    with open(README) as f:
        text = f.read()
    i = text.find(after)
    if i < 0:
        raise RuntimeError("README.md no longer has %r" % after)
    m = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S).search(text, i)
    if m is None:
        raise RuntimeError("README.md: no command block after %r" % after)
    return m.group(1)


def forward_params(ca):
    """The MX forwarder's test values: the test CA (the README: "system
    trust store, or smtp_tls_CAfile"), and retry times short enough for
    the link-down case to finish in seconds."""
    return {
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


def cf_value(path, name):
    """The last `name = value` of a main.cf-style file (README step 6 reads
    passwords with sed -n 's/^password = //p')."""
    v = None
    with open(path) as f:
        for line in f:
            m = re.match(r"%s\s*=\s*(.*?)\s*$" % re.escape(name), line)
            if m:
                v = m.group(1)
    return v


class Site:
    def __init__(self, build, tag):
        self.build = build
        self.topo = Topology(tag)
        self.dir = tempfile.mkdtemp(prefix="twohost-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam("nobody")
        self.owner, self.uid = "nobody", pw.pw_uid
        self.gid = pw.pw_gid
        self.group = grp.getgrgid(self.gid).gr_name   # stands for vmail
        self.mx_etc = os.path.join(self.dir, "mx", "etc")
        self.int_etc = os.path.join(self.dir, "internal", "etc")
        self.mail = os.path.join(self.dir, "internal", "mail")
        self.tls = os.path.join(self.dir, "tls")
        self.logs = os.path.join(self.dir, "log")
        for d in (self.tls, self.logs, self.dir + "/mx/redis",
                  self.dir + "/internal/redis"):
            os.makedirs(d)
            os.chmod(d, 0o755)
        self.procs = {}
        self.db_socket = os.path.join(self.dir, "internal", "mariadb", "mysql.sock")
        # the internal host's `hosts = localhost` (README step 7) is this socket
        self.int_env = dict(os.environ, MYSQL_UNIX_PORT=self.db_socket)

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
        # README step 2's names, as each host sees its neighbour (the MX
        # reaches mail.example.test over the inside link)
        t.hosts_file(self.ns_mx, [(MX_OUT, [MX_NAME]), (INTERNAL_IN, [MAIL_NAME])])
        t.hosts_file(self.ns_int, [(INTERNAL_OUT, [MAIL_NAME]), (MX_IN, [MX_NAME])])

    def inside_link(self, up):
        self.topo.set_link(self.ns_mx, self.if_mx_in, up)
        self.topo.set_link(self.ns_int, self.if_int_in, up)

    # ---- TLS: a throw-away CA and one certificate per host ---------------
    def make_ca(self, name):
        key, crt = ["%s/%s.%s" % (self.tls, name, x) for x in ("key", "pem")]
        _sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=twohost %s" % name, "-keyout", key, "-out", crt])
        os.chmod(crt, 0o644)
        return crt

    def make_tls(self):
        d = self.tls
        self.ca = self.make_ca("ca")
        # a CA that signed nothing here: the wrong tls_CAfile
        self.other_ca = self.make_ca("other-ca")
        self.certs = {}
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
            os.chmod(key, 0o600)
            self.certs[host] = (crt, key)

    def install_certs(self, etc, host):
        """README step 3's deploy hook: install -o root -g vmail -m 0640."""
        crt, key = self.certs[host]
        for src, name in ((crt, "cert.pem"), (key, "key.pem")):
            _sh(["install", "-o", "root", "-g", self.group, "-m", "0640",
                 src, os.path.join(etc, "tls", name)])

    # ---- README.md's command blocks ----------------------------------------
    def readme_run(self, ns, etc, after, subst=(), drop=(), env=None,
                   db_root=True):
        """Run the README block after `after` with bash -e inside ns, for the
        host whose /etc/mailpair is etc. Commands that install packages,
        manage services or create system users are no-ops; the programs
        are this build's; paths and names become the test's."""
        script = readme_block(after)
        for pat in drop:
            script = "\n".join(l for l in script.splitlines() if not re.search(pat, l))
        for a, b in list(subst) + [
                ("/etc/mailpair", etc), ("/var/mail/vhosts", self.mail),
                ("example.org", DOMAIN), ("vmail:vmail", "%s:%s" % (self.owner, self.group)),
                ("chgrp -R vmail", "chgrp -R " + self.group)]:
            script = script.replace(a, b)
        prelude = "".join("%s() { :; }\n" % c for c in (
            "apt-get", "systemctl", "groupadd", "useradd", "redis-cli"))
        prelude += "".join('%s() { "%s" -c "%s" "$@"; }\n' % (n, self.bin(n), etc)
                           for n in ("mailctl",))
        prelude += "".join('%s() { "%s" "$@"; }\n' % (n, self.bin(n))
                           for n in ("mx-relay", "submission", "mra"))
        if db_root:   # the internal host's `mariadb` (root, on the socket)
            prelude += ('mariadb() { command mariadb --no-defaults --socket="%s" '
                        '-uroot "$@"; }\n' % self.db_socket)
        else:         # a client elsewhere: no option file of this machine
            prelude += 'mariadb() { command mariadb --no-defaults "$@"; }\n'
        name = ns.split("-")[-1] + "-" + re.sub(r"\W+", "-", after)[:40].strip("-")
        with open(os.path.join(self.logs, "readme-%s.sh" % name), "w") as f:
            f.write(script)
        r = self.topo.run(ns, ["bash", "-e", "-c", prelude + script],
                          env=env, cwd=ROOT, timeout=120)
        out = r.stdout.decode() + r.stderr.decode()
        with open(os.path.join(self.logs, "readme-%s.out" % name), "w") as f:
            f.write(out)
        if r.returncode != 0:
            raise RuntimeError("README block after %r failed (exit %d):\n%s\n---\n%s"
                               % (after, r.returncode, script, out))
        return r.stdout.decode()

    # ---- step 4: the samples, as make install puts them ---------------------
    def install_etc(self, etc, role):
        _sh(["sh", os.path.join(DEPLOY, "install-etc.sh"), etc, role])
        # "Replace example.org everywhere"; the temporary folder stands for
        # /etc/mailpair (the file is rewritten in place: owner and mode stay)
        for top, _, files in os.walk(etc):
            for n in files:
                p = os.path.join(top, n)
                with open(p) as f:
                    text = f.read()
                new = text.replace("example.org", DOMAIN).replace("/etc/mailpair/", etc + "/")
                if new != text:
                    with open(p, "r+") as f:
                        f.write(new)
                        f.truncate()

    def append_test_values(self, path, values):
        with open(path, "a") as f:
            f.write("\n# ---- two-host test values (not in the README) ----\n")
            f.write("".join("%s = %s\n" % kv for kv in values.items()))

    def write_configs(self):
        """README steps 4 and 3 on both hosts (before Redis and MariaDB)."""
        ie, me = self.int_etc, self.mx_etc
        self.install_etc(me, "mx")
        self.install_etc(ie, "internal")
        common = {"mail_owner": self.owner, "syslog_enable": "no"}
        self.append_test_values(os.path.join(ie, "submission.cf"), dict(common, **{
            "virtual_mailbox_base": self.mail,
            "virtual_uid_maps": "static:%d" % self.uid,
            "virtual_gid_maps": "static:%d" % self.gid,
        }))
        self.append_test_values(os.path.join(ie, "mra.cf"), dict(common, **{
            "virtual_mailbox_base": self.mail,
            "auth_failure_delay": "1s",
        }))
        self.append_test_values(os.path.join(me, "mx-relay.cf"), dict(
            common, postscreen_greet_wait="0s", **forward_params(self.ca)))
        step4 = "never world-readable):"
        self.readme_run(self.ns_int, ie, step4)
        self.readme_run(self.ns_mx, me, step4, drop=[r"sendmail\.cf"])
        self.install_certs(ie, MAIL_NAME)
        self.install_certs(me, MX_NAME)
        # the MX's CA for MariaDB's certificate, where the samples'
        # commented tls_CAfile names it
        self.mysql_ca = os.path.join(me, "tls", "mysql-ca.pem")
        _sh(["install", "-o", "root", "-g", self.group, "-m", "0640",
             self.ca, self.mysql_ca])

    def edit_configs(self):
        """README step 7, the two example blocks (after step 6 read the
        passwords)."""
        self.readme_run(self.ns_mx, self.mx_etc, "For example, on the MX:",
                        subst=[("/etc/ssl/certs/ca-certificates.crt", self.mysql_ca)])
        self.readme_run(self.ns_int, self.int_etc, "and on the internal host:",
                        env=self.int_env)

    # ---- Redis, one per host (step 5) ---------------------------------------
    def start_redis(self, ns, role):
        d = os.path.join(self.dir, role, "redis")
        conf = os.path.join(d, "redis.conf")
        try:
            shutil.copyfile("/etc/redis/redis.conf", conf)
        except OSError:
            with open(conf, "w") as f:
                f.write(REDIS_CONF_FALLBACK)
        self.readme_run(ns, self.mx_etc if role == "mx" else self.int_etc,
                        "Set that before Redis holds any mail:",
                        subst=[("/etc/redis/redis.conf", conf)])
        # where Debian's file says /var/lib/redis, /var/log/redis, /run/redis
        # and daemonize yes: this run's folders, in the foreground
        self.procs["redis-" + role] = self.topo.spawn(
            ns, "redis-" + role,
            ["redis-server", conf, "--dir", d, "--daemonize", "no",
             "--supervised", "no", "--pidfile", d + "/redis.pid",
             "--logfile", "%s/redis-%s.log" % (self.logs, role),
             "--unixsocket", "", "--save", ""],
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

    # ---- MariaDB inside the internal namespace (step 6) ---------------------
    def start_mariadb(self):
        d = os.path.dirname(self.db_socket)
        os.makedirs(d)
        crt, key = self.certs[MAIL_NAME]
        _sh(["mariadb-install-db", "--no-defaults", "--datadir=" + d + "/data",
             "--auth-root-authentication-method=socket", "--skip-test-db",
             "--user=root"])
        # README step 6: bind-address the inside address, ssl_cert/ssl_key
        # a certificate for the internal host's name
        self.procs["mariadb"] = self.topo.spawn(
            self.ns_int, "mariadb",
            ["mariadbd", "--no-defaults", "--datadir=" + d + "/data",
             "--socket=" + self.db_socket, "--port=3306",
             "--bind-address=" + INTERNAL_IN, "--pid-file=" + d + "/mysqld.pid",
             "--log-error=" + self.logs + "/mariadb.err",
             "--ssl-cert=" + crt, "--ssl-key=" + key,
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
        self.tcp_open(self.ns_int, INTERNAL_IN, 3306, 30)

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
        """README step 6's block, on the internal host; its MXDBPW line
        runs the command its comment gives, on the MX's file."""
        mx_cf = os.path.join(self.mx_etc, "mysql", "relay_recipient_maps.cf")
        self.readme_run(self.ns_int, self.int_etc, "is the MX host's address as the internal",
                        subst=[(r"MXDBPW=...   # on the MX host: sed -n 's/^password = //p' "
                                "/etc/mailpair/mysql/relay_recipient_maps.cf",
                                "MXDBPW=$(sed -n 's/^password = //p' %s)" % mx_cf),
                               ("MX-ADDRESS", MX_IN)])
        self.mx_db_password = cf_value(mx_cf, "password")

    # ---- users (steps 8 and 9) ------------------------------------------------
    def mailctl(self, *args, password=None):
        argv = [self.bin("mailctl"), "-c", self.int_etc] + list(args)
        r = self.topo.run(self.ns_int, argv, env=self.int_env,
                          input=(password + "\n").encode() if password else None)
        if r.returncode != 0:
            raise RuntimeError("mailctl %s: exit %d: %s%s" % (
                " ".join(args), r.returncode, r.stdout.decode(), r.stderr.decode()))
        return r.stdout.decode()

    def create_users(self):
        out = self.readme_run(self.ns_int, self.int_etc,
                              "Passwords are generated, never invented:",
                              env=self.int_env)
        m = re.search(r"(?m)^alice: (\S+)$", out)
        if m is None:
            raise RuntimeError("README step 8 printed no password: " + out)
        USERS[ALICE] = m.group(1)
        USERS[BOB] = "bob-" + os.urandom(9).hex()
        self.mailctl("mailbox", "add", BOB, "--password-stdin", password=USERS[BOB])
        # step 9: the password make install generated in the MX's
        # relay_passwd, read with the README's command
        m = re.search(r"On the MX host, read it: `(sed [^`]*)`", open(README).read())
        if m is None:
            raise RuntimeError("README.md step 9 no longer reads the relay password with sed")
        cmd = m.group(1).replace("/etc/mailpair", self.mx_etc)
        self.relay_password = _sh(["sh", "-c", cmd]).strip()
        if not self.relay_password:
            raise RuntimeError("README step 9: %s printed nothing" % cmd)
        self.mailctl("mailbox", "add", RELAY_USER, "--password-stdin",
                     password=self.relay_password)

    # ---- daemons -----------------------------------------------------------
    def start_daemon(self, ns, name, etc, ports):
        p = self.topo.spawn(ns, name, [self.bin(name), "-c", etc],
                            os.path.join(self.logs, name + ".log"),
                            env=self.int_env if etc == self.int_etc else None)
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

    def mx_mysql_ca(self, ca):
        """Point every tls_CAfile of the MX's mysql/*.cf at ca, restart."""
        d = os.path.join(self.mx_etc, "mysql")
        for n in os.listdir(d):
            p = os.path.join(d, n)
            with open(p) as f:
                text = f.read()
            with open(p, "r+") as f:
                f.write(re.sub(r"(?m)^tls_CAfile = .*$", "tls_CAfile = " + ca, text))
                f.truncate()
        self.restart_mx()

    def refresh_mx_recipients(self):
        """README ("When the internal host is unreachable"): the MX's local
        copy of its recipients, made by the README's cron command over the
        inside link (TLS, the server's certificate verified)."""
        self.readme_run(self.ns_mx, self.mx_etc, "refresh that file from the database",
                        subst=[("/etc/ssl/certs/ca-certificates.crt", self.mysql_ca)],
                        env=dict(os.environ, MXDBPW=self.mx_db_password),
                        db_root=False)
        with open(os.path.join(self.mx_etc, "texthash", "relay_recipients")) as f:
            return f.read()

    def mx_local_recipients(self):
        """Switch the MX to that copy (relay_domains, relay_recipient_maps
        as the README gives them), restart it."""
        d = os.path.join(self.mx_etc, "texthash")
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
        self.make_tls()
        self.write_configs()     # steps 4 and 3
        self.start_mariadb()
        self.start_redis(self.ns_mx, "mx")          # step 5
        self.start_redis(self.ns_int, "internal")
        self.wait_mariadb()
        self.setup_database()    # step 6
        self.edit_configs()      # step 7
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
