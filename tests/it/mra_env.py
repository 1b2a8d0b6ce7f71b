"""Test environment for the mra: a temporary config folder with mra.cf,
texthash password / mailbox / quota maps, Maildirs under a private
virtual_mailbox_base, and the daemon started on free 127.0.0.1 ports and
stopped by PID.

    env = MraEnv(build, tmp_path, tls_cert, free_port).start()
    env.imap_port, env.imaps_port, env.maildir("alice@example.test")
    env.deliver("alice@example.test", b"Subject: x\\r\\n\\r\\nbody\\r\\n")
    env.stop()
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

USERS = {
    "alice@example.test": "secret",
    "bob@example.test": "hunter2",
}


def _hash(pw):
    out = subprocess.run(["openssl", "passwd", "-6", pw], check=True,
                         capture_output=True, text=True).stdout.strip()
    return "{SHA512-CRYPT}" + out


def _open_server_sockets(ports):
    """TCP sockets whose local port is one of ports and that the server
    has not closed yet, accepted or not: ESTABLISHED, SYN_RECV and
    CLOSE_WAIT (/proc/net/tcp: 01, 03, 08)."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    port = int(parts[1].rsplit(":", 1)[1], 16)
                    if port in ports and parts[3] in ("01", "03", "08"):
                        n += 1
        except OSError:
            continue
    return n


class MraEnv:
    def __init__(self, build, tmp, tls_cert, free_port, users=None,
                 quota=None, **params):
        self.build = str(build)
        # the daemon drops to nobody when run as root: a folder it can
        # reach (pytest's tmp_path is private to root)
        self.dir = tempfile.mkdtemp(prefix="mraenv-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            self.uid, self.gid, self.owner = pw.pw_uid, pw.pw_gid, "nobody"
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            self.owner = pwd.getpwuid(self.uid).pw_name
        self.tls_cert = tls_cert
        self.free_port = free_port
        self.users = dict(users or USERS)
        self.quota = quota or {}
        self.params = params
        self.proc = None
        self.base = os.path.join(self.dir, "mail")
        self.etc = os.path.join(self.dir, "etc")
        self.log = os.path.join(self.dir, "mra.log")
        os.makedirs(self.base, exist_ok=True)
        os.makedirs(self.etc, exist_ok=True)
        os.chown(self.base, self.uid, self.gid)
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        self._write_config()

    def _write_config(self):
        with open(os.path.join(self.etc, "passwd"), "w") as f:
            for u, pw in self.users.items():
                f.write("%s %s\n" % (u, _hash(pw)))
        with open(os.path.join(self.etc, "mailboxes"), "w") as f:
            for u in self.users:
                local, domain = u.split("@")
                f.write("%s %s/%s/\n" % (u, domain, local))
        with open(os.path.join(self.etc, "quota"), "w") as f:
            for u, q in self.quota.items():
                f.write("%s %d\n" % (u, q))
        conf = {
            "myhostname": "mra.example.test",
            "inet_interfaces": "127.0.0.1",
            "syslog_enable": "no",
            "imap_listen": str(self.imap_port),
            "imaps_listen": str(self.imaps_port),
            "pop3_listen": str(self.pop3_port),
            "pop3s_listen": str(self.pop3s_port),
            "ssl": "yes",
            "ssl_cert": "<" + self.tls_cert.cert,
            "ssl_key": "<" + self.tls_cert.key,
            "disable_plaintext_auth": "yes",
            "virtual_mailbox_base": self.base,
            "virtual_mailbox_maps": "texthash:" + os.path.join(self.etc, "mailboxes"),
            "virtual_password_maps": "texthash:" + os.path.join(self.etc, "passwd"),
            "virtual_mailbox_limit_maps": ("texthash:" + os.path.join(self.etc, "quota")
                                           if self.quota else ""),
            "auth_failure_delay": "1s",
            "mail_owner": self.owner,
        }
        conf.update({k: str(v) for k, v in self.params.items()})
        with open(os.path.join(self.etc, "mra.cf"), "w") as f:
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))

    def maildir(self, user):
        local, domain = user.split("@")
        return os.path.join(self.base, domain, local)

    def deliver(self, user, data, folder=None, seq=[0]):
        """Write a message into new/ the way an MDA does (tmp, rename)."""
        d = self.maildir(user)
        if folder:
            d = os.path.join(d, "." + folder)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        self.fix_owner()
        seq[0] += 1
        name = "%d.M%dP%dQ%d.test,S=%d" % (time.time(), seq[0], os.getpid(),
                                           seq[0], len(data))
        tmp = os.path.join(d, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.chown(tmp, self.uid, self.gid)
        os.rename(tmp, os.path.join(d, "new", name))
        return name

    def fix_owner(self):
        """Give what the test wrote to the user the daemon runs as."""
        for root, dirs, files in os.walk(self.base):
            for n in dirs + files:
                os.chown(os.path.join(root, n), self.uid, self.gid)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        # free_port() only says a port was free a moment ago: another test's
        # server may take it first. Then pick new ports and try again.
        for attempt in range(3):
            try:
                return self._start_once()
            except RuntimeError as e:
                if "in use" not in str(e) or attempt == 2:
                    raise
                self.imap_port = self.free_port()
                self.imaps_port = self.free_port()
                self.pop3_port = self.free_port()
                self.pop3s_port = self.free_port()
                self._write_config()

    def _start_once(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(self.build, "mra"), "-c", self.etc],
            stdout=logf, stderr=logf)
        logf.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.proc = None   # a failed start, not a crash
                raise RuntimeError("mra exited: " + self.read_log())
            try:
                socket.create_connection(("127.0.0.1", self.imap_port), 0.2).close()
                socket.create_connection(("127.0.0.1", self.imaps_port), 0.2).close()
            except OSError:
                time.sleep(0.05)
                continue
            self._wait_probes_gone(deadline)
            return self
        raise RuntimeError("mra did not start: " + self.read_log())

    def _wait_probes_gone(self, deadline):
        """The probes above count against the per-address connection caps
        until mra has seen them close: a test of those caps must not find
        them still there (a slow, sanitized daemon may take a while)."""
        ports = {self.imap_port, self.imaps_port}
        while time.time() < deadline and _open_server_sockets(ports):
            time.sleep(0.02)

    def stop(self):
        # a daemon that left by itself (not killed by a test with SIGKILL)
        # failed whatever test was running: say so, with its log
        died = None
        if self.proc is not None and self.proc.poll() is not None and \
                self.proc.returncode != -signal.SIGKILL:
            died = self.proc.returncode
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        log = self.read_log()
        # under make asan: a sanitizer report fails the test that caused it
        for mark in ("ERROR: AddressSanitizer", "runtime error:",
                     "ERROR: LeakSanitizer"):
            if mark in log:
                at = log.index(mark)
                raise AssertionError("mra: %s\n%s" % (mark, log[max(0, at - 2000):at + 4000]))
        if died is not None:
            raise AssertionError("mra exited by itself with status %s:\n%s"
                                 % (died, log[-4000:]))

    def restart(self):
        self.stop()
        return self.start()

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""
