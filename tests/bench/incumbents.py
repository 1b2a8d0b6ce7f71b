"""Private instances of the incumbents for the side-by-side benchmark
(tests/bench/compare.py): Debian's Postfix, Dovecot and Rspamd, each with its own
configuration folder under a temporary directory, listening on 127.0.0.1
high ports only, started as processes this script owns and stopped by PID.
The system instances are never touched (/etc/postfix has no main.cf when
postfix is installed with "No configuration"; Dovecot gets -c).

Also the CPU accounting shared by the benchmark: cpu_of_sessions() sums
user+system time (own and reaped children) of every process in the given
session ids, so a forking server (Postfix's master and its daemons,
Dovecot's master, login and imap processes) is counted whole."""
import os
import pwd
import shutil
import signal
import subprocess
import time

CLK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    """(sid, cpu seconds incl. reaped children) or None."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields after ")": state ppid pgrp session ... utime(11) stime(12)
    # cutime(13) cstime(14)
    return int(v[3]), sum(int(x) for x in v[11:15]) / CLK


def cpu_of_sessions(sids):
    sids = set(sids)
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        st = proc_stat(pid)
        if st is not None and st[0] in sids:
            total += st[1]
    return total


def pss_of_sessions(sids):
    """Sum of PSS (KB) over the processes of the sessions."""
    sids = set(sids)
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        st = proc_stat(pid)
        if st is None or st[0] not in sids:
            continue
        try:
            with open("/proc/%s/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class Postfix:
    """One Postfix instance: config folder DIR/etc (main.cf, master.cf with
    every service unchrooted and smtpd on 127.0.0.1:port), its own queue
    and data directories, log in DIR/postfix.log (postlogd)."""

    def __init__(self, base, name, port, main):
        self.dir = os.path.join(base, name)
        self.etc = os.path.join(self.dir, "etc")
        self.port = port
        os.makedirs(self.etc)
        os.chmod(self.dir, 0o755)
        p = {
            "compatibility_level": "3.6",
            "queue_directory": os.path.join(self.dir, "queue"),
            "data_directory": os.path.join(self.dir, "data"),
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "maillog_file": os.path.join(self.dir, "postfix.log"),
            "maillog_file_prefixes": self.dir,
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "default_process_limit": "200",
            "smtputf8_enable": "no",
        }
        p.update(main)
        _write(os.path.join(self.etc, "main.cf"),
               "".join("%s = %s\n" % kv for kv in p.items()))
        out = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                if line.startswith("#") or not line.strip() or line[0].isspace():
                    out.append(line)
                    continue
                w = line.split()
                if w[0] == "smtp" and w[1] == "inet":
                    w[0] = "127.0.0.1:%d" % port
                if len(w) >= 8:
                    w[4] = "n"          # no chroot: a private queue dir
                out.append("  ".join(w) + "\n")
        _write(os.path.join(self.etc, "master.cf"), "".join(out))

    def postfix(self, *args):
        return subprocess.run(["/usr/sbin/postfix", "-c", self.etc] + list(args),
                              capture_output=True, text=True, timeout=120)

    def start(self):
        os.makedirs(os.path.join(self.dir, "queue"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(os.path.join(self.dir, "data"), pw.pw_uid, pw.pw_gid)
        # postsuper (run as mail_owner at a restart) logs there too
        logf = os.path.join(self.dir, "postfix.log")
        open(logf, "a").close()
        os.chown(logf, pw.pw_uid, pw.pw_gid)
        # the queue's subdirectories, owners and modes
        self.postfix("set-permissions", "create-missing")
        r = self.postfix("start")
        if r.returncode != 0:
            raise RuntimeError("postfix start: %s %s %s" % (r.stdout, r.stderr,
                                                           self.log()[-2000:]))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                    self.pid = int(f.read().strip())
                self.sid = proc_stat(self.pid)[0]
                return self
            except (OSError, ValueError, TypeError):
                time.sleep(0.1)
        raise RuntimeError("postfix master did not start: " + self.log()[-2000:])

    def stop(self):
        """postfix stop, then SIGKILL whatever of its session is left."""
        self.postfix("stop")
        self.kill9(graceful=True)

    def kill9(self, graceful=False):
        deadline = time.time() + (10 if graceful else 0)
        while True:
            left = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                    (proc_stat(p) or (None,))[0] == self.sid]
            if not left:
                return
            if time.time() >= deadline:
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                if not graceful:
                    graceful = True
                    deadline = time.time() + 5
                    continue
                return
            time.sleep(0.1)

    def cpu(self):
        return cpu_of_sessions([self.sid])

    def log(self):
        try:
            with open(os.path.join(self.dir, "postfix.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Dovecot:
    """A private Dovecot (IMAP only) in DIR: passwd-file users with
    SHA512-CRYPT, static userdb (nobody), Maildirs under DIR/mail, IMAP and
    IMAPS on 127.0.0.1. Run in the foreground (-F) in its own session."""

    def __init__(self, base, users, password_hash, imap_port, imaps_port,
                 cert, key):
        self.dir = os.path.join(base, "dovecot")
        os.makedirs(os.path.join(self.dir, "mail"))
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam("nobody")
        os.chown(os.path.join(self.dir, "mail"), pw.pw_uid, pw.pw_gid)
        self.imap_port, self.imaps_port = imap_port, imaps_port
        _write(os.path.join(self.dir, "passwd"),
               "".join("%s:{SHA512-CRYPT}%s\n" % (u, password_hash) for u in users))
        self.conf = os.path.join(self.dir, "dovecot.conf")
        _write(self.conf, """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%d/%n
}}
mail_location = maildir:{d}/mail/%d/%n
first_valid_uid = 1
default_process_limit = 10000
default_client_limit = 10000
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {p1}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {p2}
    ssl = yes
  }}
}}
service imap {{
  process_limit = 10000
}}
""".format(d=self.dir, cert=cert, key=key, p1=imap_port, p2=imaps_port))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "wb"),
                                     start_new_session=True)
        import socket
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited: " + self.log()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), 1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dovecot did not start: " + self.log()[-2000:])

    def cpu(self):
        return cpu_of_sessions([self.proc.pid])

    def pss(self):
        return pss_of_sessions([self.proc.pid])

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        for p in os.listdir("/proc"):
            if p.isdigit() and (proc_stat(p) or (None,))[0] == self.proc.pid:
                try:
                    os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass
        if self.proc.poll() is None:
            self.proc.wait()
        self.proc = None

    def log(self):
        out = ""
        for n in ("dovecot.log", "stderr"):
            try:
                with open(os.path.join(self.dir, n), errors="replace") as f:
                    out += f.read()
            except OSError:
                pass
        return out


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


# The compiled Hyperscan databases are a cache shared with the milter tests
# (tests/it/test_milter.py): kept across runs, a start takes seconds
# instead of about half a minute.
RSPAMD_HS_CACHE = "/tmp/mailpair-test-rspamd-hs"


class Rspamd:
    """A private rspamd (3.4) running only its milter proxy, which scans by
    itself (self_scan), configured as the milter tests start it: no Redis,
    no DNS (a dead resolver on 127.0.0.1:1 answers at once), log level
    "warning" here so the figures measure the scan and not the log. In the
    foreground in its own session, so that cpu() counts the main process
    and every worker; stopped by PID."""

    def __init__(self, base, port, workers=1):
        self.dir = os.path.join(base, "rspamd")
        self.port = port
        local = os.path.join(self.dir, "local.d")
        os.makedirs(local)
        os.chmod(self.dir, 0o755)
        os.makedirs(RSPAMD_HS_CACHE, exist_ok=True)
        _write(os.path.join(local, "milter_headers.conf"),
               'use = ["x-spamd-result", "x-rspamd-queue-id", "x-spam-status"];\n'
               "skip_local = false;\nskip_authenticated = false;\n")
        self.conf = os.path.join(self.dir, "rspamd.conf")
        _write(self.conf, """\
.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    hs_cache_dir = "%s";
    dns { nameserver = ["127.0.0.1:1"]; timeout = 0.5s; retransmits = 1; }
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "warning"; }
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%d";
    milter = yes;
    timeout = 120s;
    upstream "local" { default = yes; self_scan = yes; }
    count = %d;
}
""" % (RSPAMD_HS_CACHE, port, workers))
        self.proc = None

    def start(self, timeout=180):
        import socket
        self.proc = subprocess.Popen(
            ["/usr/bin/rspamd", "-f", "-i", "-c", self.conf,
             "--var=LOCAL_CONFDIR=" + self.dir, "--var=DBDIR=" + self.dir,
             "--var=RUNDIR=" + self.dir, "--var=LOGDIR=" + self.dir],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr"), "wb"),
            start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rspamd exited: " + self.log()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rspamd does not listen on %d: %s"
                           % (self.port, self.log()[-2000:]))

    def cpu(self):
        return cpu_of_sessions([self.proc.pid])

    def quiet(self, limit=120.0, idle=0.05):
        """Wait (at most limit s) until a second passes in which rspamd used
        less than idle CPU seconds: work left over from the start (it
        listens before it has loaded everything) must not count as
        scanning."""
        deadline = time.time() + limit
        c = self.cpu()
        while time.time() < deadline:
            time.sleep(1.0)
            n = self.cpu()
            if n - c < idle:
                return True
            c = n
        return False

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        for p in os.listdir("/proc"):
            if p.isdigit() and (proc_stat(p) or (None,))[0] == self.proc.pid:
                try:
                    os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass
        if self.proc.poll() is None:
            self.proc.wait()
        self.proc = None

    cleanup = stop

    def log(self):
        out = ""
        for n in ("rspamd.log", "stderr"):
            try:
                with open(os.path.join(self.dir, n), errors="replace") as f:
                    out += f.read()
            except OSError:
                pass
        return out
