"""Milters (smtpd_milters, issue 14) with the real programs from Debian:
OpenDKIM signing on submission (checked by OpenDKIM in verify mode with the
public key from a local data set, no DNS), OpenDKIM verifying on the MX,
Rspamd's milter proxy refusing GTUBE at DATA and adding headers to a clean
message, OpenDMARC adding its result, and milter_default_action for a
milter that is down. Every milter listens on 127.0.0.1 or a unix socket in
a temporary folder; each is started here and stopped by PID."""
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

from mx_env import MX
from sub_env import SubEnv

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
GENKEY = shutil.which("opendkim-genkey") or "/usr/sbin/opendkim-genkey"
RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
OPENDMARC = shutil.which("opendmarc") or "/usr/sbin/opendmarc"

GTUBE = ("XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL"
         "*C.34X")


def need(path):
    if not os.path.exists(path):
        pytest.skip("%s is not installed (deploy/deps.sh test)" % path)


def wait_listen(port, proc, what, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s does not listen on %d" % (what, port))


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def message(sender, rcpt, subject, body="Hello.\r\n", extra=""):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
            "Date: Thu, 03 Dec 2026 02:00:00 +0000\r\n"
            "Message-ID: <%d.%s>\r\n%s\r\n%s" %
            (sender, rcpt, subject, time.time_ns(), sender, extra, body))


# ---- OpenDKIM --------------------------------------------------------------

class OpenDKIM:
    """opendkim in the foreground, its key in a local KeyTable."""

    def __init__(self, port, mode="sv", domain="demo.test", selector="test",
                 keydir=None):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="opendkim-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.keydir = keydir or self.dir
        if keydir is None:
            subprocess.run([GENKEY, "-D", self.dir, "-d", domain, "-s",
                            selector, "-b", "2048"], check=True,
                           capture_output=True)
        self.domain, self.selector = domain, selector
        key = os.path.join(self.keydir, selector + ".private")
        with open(os.path.join(self.dir, "keytable"), "w") as f:
            f.write("%s._domainkey.%s %s:%s:%s\n" %
                    (selector, domain, domain, selector, key))
        with open(os.path.join(self.dir, "signingtable"), "w") as f:
            f.write("*@%s %s._domainkey.%s\n" % (domain, selector, domain))
        # the public key as DNS would serve it, for verification
        with open(os.path.join(self.dir, "dnsdata"), "w") as f:
            f.write("%s._domainkey.%s %s\n" %
                    (selector, domain, self.txt_record()))
        # OpenDKIM signs for InternalHosts (default 127.0.0.1) and for
        # clients that logged in ({auth_authen}), and verifies the rest:
        # our test client must not count as internal, so that signing
        # on submission shows the macro arrived
        with open(os.path.join(self.dir, "internal"), "w") as f:
            f.write("192.0.2.250\n")
        self.conf = os.path.join(self.dir, "opendkim.conf")
        with open(self.conf, "w") as f:
            f.write("InternalHosts refile:%s/internal\n" % self.dir)
            f.write("Syslog no\n"
                    "Mode %s\n"
                    "Socket inet:%d@127.0.0.1\n"
                    "KeyTable file:%s/keytable\n"
                    "SigningTable refile:%s/signingtable\n"
                    "TestDNSData file:%s/dnsdata\n"
                    "RequireSafeKeys no\n"
                    "AuthservID mx.demo.test\n"
                    "PidFile %s/opendkim.pid\n" %
                    (mode, port, self.dir, self.dir, self.dir, self.dir))
        self.proc = None

    def txt_record(self):
        with open(os.path.join(self.keydir, self.selector + ".txt")) as f:
            text = f.read()
        # without the h=sha256 restriction: opendkim-testmsg signs with
        # rsa-sha1 (RFC 6376 §3.6.1: no h= allows every hash)
        return "".join(re.findall(r'"([^"]*)"', text)).replace(
            "h=sha256; ", "")

    def start(self):
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_listen(self.port, self.proc, "opendkim")
        return self

    def verify(self, data):
        """OpenDKIM's own test mode over a message file: 0 when every
        signature verifies with the key from the data set."""
        path = os.path.join(self.dir, "check.eml")
        with open(path, "wb") as f:
            f.write(data.replace(b"\r\n", b"\n"))
        conf = os.path.join(self.dir, "verify.conf")
        with open(conf, "w") as f:
            f.write("Syslog no\nMode v\nTestDNSData file:%s/dnsdata\n"
                    "AlwaysAddARHeader yes\n" % self.dir)
        return subprocess.run([OPENDKIM, "-x", conf, "-t", path],
                              capture_output=True, text=True)

    def cleanup(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def opendkim(free_port):
    need(OPENDKIM)
    d = OpenDKIM(free_port()).start()
    yield d
    d.cleanup()


@pytest.fixture
def sub_factory(build, redis, tls_cert):
    envs = []

    def make(**params):
        e = SubEnv(build, redis, tls_cert, params=params).start()
        envs.append(e)
        return e

    yield make
    for e in envs:
        e.cleanup()


# ---- Rspamd ----------------------------------------------------------------

# The compiled Hyperscan databases are a cache: kept across runs, the
# second start takes seconds instead of half a minute.
RSPAMD_HS_CACHE = "/tmp/mailpair-test-rspamd-hs"


class Rspamd:
    """rspamd 3.4 with only its milter proxy, scanning by itself
    (self_scan), no Redis, no DNS (a dead resolver answers at once)."""

    def __init__(self, port):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="rspamd-", dir="/tmp")
        os.makedirs(RSPAMD_HS_CACHE, exist_ok=True)
        local = os.path.join(self.dir, "local.d")
        os.makedirs(local)
        with open(os.path.join(local, "milter_headers.conf"), "w") as f:
            # headers on every message, local and authenticated too
            f.write('use = ["x-spamd-result", "x-rspamd-queue-id", '
                    '"x-spam-status"];\n'
                    "skip_local = false;\nskip_authenticated = false;\n")
        self.conf = os.path.join(self.dir, "rspamd.conf")
        with open(self.conf, "w") as f:
            f.write("""
.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    enable_test_patterns = true;
    hs_cache_dir = "%s";
    dns { nameserver = ["127.0.0.1:1"]; timeout = 0.5s; retransmits = 1; }
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%d";
    milter = yes;
    timeout = 120s;
    upstream "local" { default = yes; self_scan = yes; }
    count = 1;
}
""" % (RSPAMD_HS_CACHE, port))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [RSPAMD, "-f", "-i", "-c", self.conf,
             "--var=LOCAL_CONFDIR=" + self.dir, "--var=DBDIR=" + self.dir,
             "--var=RUNDIR=" + self.dir, "--var=LOGDIR=" + self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listen(self.port, self.proc, "rspamd", timeout=180)
        return self

    def log(self):
        try:
            with open(os.path.join(self.dir, "rspamd.log")) as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def rspamd():
    need(RSPAMD)
    sys_port = __import__("sub_env").free_port()
    r = Rspamd(sys_port).start()
    yield r
    r.cleanup()


@pytest.fixture
def mx_factory(build, redis, tls_cert, free_port, tmp_path):
    started = []

    def make(name="mx", **params):
        m = MX(build, tmp_path / name, redis, free_port(), tls=tls_cert,
               **params)
        m.start()
        started.append(m)
        return m

    yield make
    for m in started:
        m.cleanup()


def mx_send(mx, sender, rcpt, msg):
    with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as s:
        s.ehlo("client.example")
        return s.sendmail(sender, [rcpt], msg)


def test_rspamd_rejects_gtube_at_data(rspamd, mx_factory):
    mx = mx_factory(smtpd_milters="inet:127.0.0.1:%d" % rspamd.port)
    with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as s:
        s.ehlo("client.example")
        assert s.mail("someone@example.net")[0] == 250
        assert s.rcpt("alice@demo.test")[0] == 250
        code, text = s.data(message("someone@example.net", "alice@demo.test",
                                    "test", body=GTUBE + "\r\n"))
    assert 500 <= code < 600, (code, text, mx.logtext())
    assert mx.qids() == []
    assert "milter-reject: END-OF-MESSAGE" in mx.logtext()


def test_rspamd_adds_headers_to_clean_message(rspamd, mx_factory):
    mx = mx_factory(smtpd_milters="inet:127.0.0.1:%d" % rspamd.port)
    mx_send(mx, "someone@example.net", "alice@demo.test",
            message("someone@example.net", "alice@demo.test", "clean",
                    body="A plain and friendly note.\r\n"))
    qids = mx.qids()
    assert len(qids) == 1, mx.logtext()
    head = headers_of(mx.data(qids[0]))
    assert "X-Spamd-Result:" in head, head
    assert "X-Rspamd-Queue-Id: %s" % qids[0] in head, head
    # our own Received: stays first; the body is untouched
    assert head.startswith("Received: from client.example")
    assert mx.data(qids[0]).endswith(b"\r\n\r\nA plain and friendly note.\r\n")


def headers_of(data):
    head = data.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in data else \
        data.split(b"\n\n", 1)[0]
    return head.decode("utf-8", "replace")


def test_opendkim_signs_submission(opendkim, sub_factory):
    sub = sub_factory(smtpd_milters="inet:127.0.0.1:%d" % opendkim.port)
    with sub.smtp(login="alice@demo.test") as s:
        s.sendmail("alice@demo.test", ["bob@demo.test"],
                   message("alice@demo.test", "bob@demo.test", "signed"))
    msgs = sub.wait_messages("bob@demo.test", 1)
    assert len(msgs) == 1, sub.log()
    data = msgs[0][1]
    head = headers_of(data)
    assert "DKIM-Signature:" in head, head
    sig = re.search(r"DKIM-Signature:(.*?)\r?\n(?=\S)", head, re.S).group(1)
    assert "d=demo.test" in sig and "s=test" in sig
    r = opendkim.verify(data)
    assert r.returncode == 0 and "verification" in r.stdout and \
        "succeeded" in r.stdout and "failed" not in r.stdout, r.stdout
    # a changed body no longer verifies: the check is real
    bad = opendkim.verify(data.replace(b"Hello.", b"Hullo."))
    assert "failed" in bad.stdout and "succeeded" not in bad.stdout


# ---- verifying on the MX: OpenDKIM, then OpenDMARC -------------------------

TESTMSG = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"


def dkim_sign(d, msg):
    """A message signed the way a remote site would, with the test key."""
    r = subprocess.run([TESTMSG, "-C", "-d", d.domain, "-s", d.selector, "-k",
                        os.path.join(d.keydir, d.selector + ".private")],
                       input=msg.encode(), capture_output=True, check=True)
    return r.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture
def dkim_verifier(free_port):
    need(OPENDKIM)
    d = OpenDKIM(free_port(), mode="v").start()
    yield d
    d.cleanup()


def test_opendkim_verifies_on_mx(dkim_verifier, mx_factory):
    need(TESTMSG)
    mx = mx_factory(smtpd_milters="inet:127.0.0.1:%d" % dkim_verifier.port)
    good = dkim_sign(dkim_verifier, message("carol@demo.test",
                                            "alice@demo.test", "signed"))
    bad = good.replace(b"Hello.", b"Hullo.")
    for data in (good, bad):
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as s:
            s.ehlo("client.example")
            s.sendmail("carol@demo.test", ["alice@demo.test"], data)
    results = []
    for q in mx.qids():
        head = headers_of(mx.data(q))
        m = re.search(r"Authentication-Results: mx\.demo\.test;\s*dkim=(\w+)",
                      head)
        assert m, head
        results.append(m.group(1))
    assert sorted(results) == ["fail", "pass"], results


class OpenDMARC:
    def __init__(self, port):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="opendmarc-", dir="/tmp")
        # by default OpenDMARC ignores 127.0.0.1, where our test client is
        with open(os.path.join(self.dir, "ignore"), "w") as f:
            f.write("192.0.2.250\n")
        self.conf = os.path.join(self.dir, "opendmarc.conf")
        with open(self.conf, "w") as f:
            f.write("Syslog false\nSocket inet:%d@127.0.0.1\n"
                    "AuthservID mx.demo.test\n"
                    "TrustedAuthservIDs mx.demo.test\n"
                    "IgnoreHosts %s/ignore\n"
                    "PidFile %s/opendmarc.pid\n"
                    "DNSTimeout 1\nSPFIgnoreResults true\n" %
                    (port, self.dir, self.dir))
        self.proc = None

    def start(self):
        env = dict(os.environ, RES_OPTIONS="timeout:1 attempts:1")
        self.proc = subprocess.Popen([OPENDMARC, "-f", "-c", self.conf],
                                     env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_listen(self.port, self.proc, "opendmarc")
        return self

    def cleanup(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_opendmarc_adds_its_result(dkim_verifier, mx_factory, free_port):
    need(OPENDMARC)
    dmarc = OpenDMARC(free_port()).start()
    try:
        # OpenDKIM first: OpenDMARC reads the dkim= result it added
        mx = mx_factory(smtpd_milters="inet:127.0.0.1:%d, inet:127.0.0.1:%d"
                        % (dkim_verifier.port, dmarc.port))
        data = dkim_sign(dkim_verifier, message("carol@demo.test",
                                                "alice@demo.test", "dmarc"))
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as s:
            s.ehlo("client.example")
            s.sendmail("carol@demo.test", ["alice@demo.test"], data)
        qids = mx.qids()
        assert len(qids) == 1, mx.logtext()
        head = headers_of(mx.data(qids[0]))
        assert re.search(r"Authentication-Results: mx\.demo\.test;\s*dmarc=\w+"
                         r"[^\n]*header\.from=demo\.test", head), head
        assert re.search(r"dkim=pass", head), head
    finally:
        dmarc.cleanup()


# ---- milter_default_action ---------------------------------------------------

def dead_port(free_port):
    """A loopback port where nothing listens."""
    return free_port()


def test_milter_down_tempfails_and_loses_nothing(mx_factory, free_port):
    mx = mx_factory(smtpd_milters="inet:127.0.0.1:%d" % dead_port(free_port))
    with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as s:
        assert s.ehlo("client.example")[0] == 250
        code, text = s.mail("someone@example.net")
    assert code == 451 and b"4.7.1" in text, (code, text)
    assert mx.qids() == []
    assert "milter inet:127.0.0.1:" in mx.logtext()


def test_milter_down_default_accept(mx_factory, free_port):
    mx = mx_factory(smtpd_milters="inet:127.0.0.1:%d" % dead_port(free_port),
                    milter_default_action="accept")
    mx_send(mx, "someone@example.net", "alice@demo.test",
            message("someone@example.net", "alice@demo.test", "through"))
    assert len(mx.qids()) == 1


def test_milter_silent_times_out(mx_factory, free_port):
    """A milter that accepts the connection and never answers: after
    milter_command_timeout the default action (reject here)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    try:
        mx = mx_factory(smtpd_milters="inet:127.0.0.1:%d" %
                        lsock.getsockname()[1],
                        milter_command_timeout="1s",
                        milter_default_action="reject")
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as s:
            assert s.ehlo("client.example")[0] == 250
            code, text = s.mail("someone@example.net")
        assert code == 550 and b"5.7.1" in text, (code, text)
        assert "timeout" in mx.logtext()
    finally:
        lsock.close()


def test_bad_milter_spec_refused_at_start(build, redis, tls_cert, free_port,
                                          tmp_path):
    mx = MX(build, tmp_path / "bad", redis, free_port(), tls=tls_cert,
            smtpd_milters="tcp:127.0.0.1:1")
    with pytest.raises(RuntimeError) as e:
        mx.start()
    assert "smtpd_milters" in str(e.value)
    mx.cleanup()


# ---- every modification, from a scripted milter ------------------------------
# The Debian milters above add headers and refuse; the envelope changes, a
# new body, DISCARD and REPLYCODE at RCPT come from this small milter
# speaking protocol 6 as libmilter does (a test peer, not a mock of ours).

import struct  # noqa: E402
import threading  # noqa: E402


def mpkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


class ScriptedMilter:
    """eom: packets sent at end of message (modifications, then a final
    reply); rcpt: fn(rcpt) -> packet for a recipient, None to continue;
    data: the answers to the DATA commands in turn (then continue)."""

    def __init__(self, eom=(mpkt(b"c"),), rcpt=None, unix=False,
                 eom_for=None, data=()):
        self.eom = list(eom)
        self.data = list(data)
        self.eom_for = eom_for   # fn(headers of this message) -> packets
        self.rcpt = rcpt
        self.seen = []
        self.dir = None
        if unix:
            # the daemons run as nobody: a folder and socket they reach
            self.dir = tempfile.mkdtemp(prefix="milter-", dir="/tmp")
            os.chmod(self.dir, 0o755)
            path = os.path.join(self.dir, "milter.sock")
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(path)
            os.chmod(path, 0o666)
            self.spec = "unix:" + path
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.spec = "inet:127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(8)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,),
                             daemon=True).start()

    @staticmethod
    def read(c, n):
        b = b""
        while len(b) < n:
            more = c.recv(n - len(b))
            if not more:
                raise EOFError
            b += more
        return b

    def session(self, c):
        heads = []   # this transaction's header packets (name\0value\0)
        try:
            while True:
                n = struct.unpack(">I", self.read(c, 4))[0]
                p = self.read(c, n)
                cmd, data = p[:1], p[1:]
                self.seen.append((cmd, data))
                if cmd == b"M":
                    heads = []
                elif cmd == b"L":
                    heads.append(data)
                if cmd == b"O":
                    # every action, every step, answers to all
                    c.sendall(mpkt(b"O", struct.pack(">III", 6, 0x1ff, 0)))
                elif cmd in (b"D", b"A"):
                    continue
                elif cmd == b"Q":
                    return
                elif cmd == b"R" and self.rcpt is not None and \
                        self.rcpt(data.split(b"\0")[0]) is not None:
                    c.sendall(self.rcpt(data.split(b"\0")[0]))
                elif cmd == b"T" and self.data:
                    c.sendall(self.data.pop(0))
                elif cmd == b"E":
                    eom = self.eom_for(heads) if self.eom_for else \
                        self.eom
                    c.sendall(b"".join(eom))
                else:
                    c.sendall(mpkt(b"c"))
        except (EOFError, OSError):
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def macros(self, stage):
        """The macro packets for one stage (b"C", b"M", b"R", b"T"...),
        each as a dict name -> value."""
        out = []
        for c, d in self.seen:
            if c == b"D" and d[:1] == stage:
                f = d[1:].split(b"\0")
                out.append(dict(zip(f[0::2], f[1::2])))
        return out


def test_envelope_body_and_header_changes(mx_factory):
    m = ScriptedMilter(eom=[
        mpkt(b"e", b"<new@example.net>\0"),
        mpkt(b"+", b"<bob@demo.test>\0"),
        mpkt(b"-", b"<alice@demo.test>\0"),
        mpkt(b"h", b"X-Milter\0yes\0"),
        mpkt(b"m", struct.pack(">I", 1) + b"Subject\0changed\0"),
        mpkt(b"b", b"Replaced.\r\n"),
        mpkt(b"a"),
    ])
    try:
        mx = mx_factory(smtpd_milters=m.spec)
        mx_send(mx, "someone@example.net", "alice@demo.test",
                message("someone@example.net", "alice@demo.test", "orig"))
        qids = mx.qids()
        assert len(qids) == 1, mx.logtext()
        env = mx.envelope(qids[0])
        assert env["sender"] == "new@example.net"
        assert mx.recipients(qids[0]) == ["bob@demo.test"]
        data = mx.data(qids[0])
        head = headers_of(data)
        assert "\r\nX-Milter: yes" in head and "\r\nSubject: changed" in head
        assert "orig" not in head
        assert data.endswith(b"\r\n\r\nReplaced.\r\n")
        # what the milter was told: the macros Postfix sends, the queue id
        cmds = [c for c, d in m.seen]
        assert cmds[:1] == [b"O"] and b"C" in cmds and b"E" in cmds
        mail = [d for c, d in m.seen if c == b"M"][0]
        assert mail.startswith(b"<someone@example.net>\0")
        assert b"\0SIZE=" in mail
        macros = b"".join(d for c, d in m.seen if c == b"D")
        assert b"i\0" + qids[0].encode() in macros
        assert b"{daemon_name}\0" in macros
    finally:
        m.close()


def test_replycode_at_rcpt_and_discard(mx_factory):
    m = ScriptedMilter(
        eom=[mpkt(b"d")],
        rcpt=lambda r: mpkt(b"y", b"550 5.7.1 not this one\0")
        if b"bob" in r else None)
    try:
        mx = mx_factory(smtpd_milters=m.spec)
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as s:
            s.ehlo("client.example")
            assert s.mail("someone@example.net")[0] == 250
            code, text = s.rcpt("bob@demo.test")
            assert (code, text) == (550, b"5.7.1 not this one")
            assert s.rcpt("alice@demo.test")[0] == 250
            code, text = s.data(message("someone@example.net",
                                        "alice@demo.test", "dropped"))
        # DISCARD: the client hears 250, nothing is queued
        assert code == 250
        assert mx.qids() == []
        assert "milter-discard" in mx.logtext()
    finally:
        m.close()


def test_unix_socket_milter_on_submission(sub_factory):
    m = ScriptedMilter(unix=True, eom=[mpkt(b"h", b"X-Via\0unix\0"),
                                       mpkt(b"c")])
    try:
        sub = sub_factory(smtpd_milters=m.spec)
        with sub.smtps(login="alice@demo.test") as s:
            s.sendmail("alice@demo.test", ["bob@demo.test"],
                       message("alice@demo.test", "bob@demo.test", "unix"))
        msgs = sub.wait_messages("bob@demo.test", 1)
        assert len(msgs) == 1, sub.log()
        assert b"\r\nX-Via: unix\r\n\r\nHello." in msgs[0][1]
        # the login reached the milter as Postfix's macros
        macros = b"".join(d for c, d in m.seen if c == b"D")
        assert b"{auth_authen}\0alice@demo.test\0" in macros
        assert b"{auth_type}\0PLAIN\0" in macros
    finally:
        m.close()


# ---- QUARANTINE: Postfix's hold queue ---------------------------------------

def test_quarantine_holds_the_message(build, tmp_path, redis, free_port,
                                      tls_cert):
    """SMFIR_QUARANTINE: the client hears 250 (the message is durable), the
    message waits in the hold set, out of the schedule, so the forwarder
    never takes it while a clean one passes; mailq shows it held, and
    "mailq release" lets it go."""
    import json
    from sink import Sink

    def eom_for(heads):
        if any(h.startswith(b"Subject\0") and b"hold me" in h
               for h in heads):
            return [mpkt(b"q", b"looks odd\0"), mpkt(b"a")]
        return [mpkt(b"a")]

    m = ScriptedMilter(eom_for=eom_for)
    sink = Sink(free_port(), tmp_path / "sink", cert=tls_cert.cert,
                key=tls_cert.key, auth="mxrelay:pw").start()
    mapdir = tempfile.mkdtemp(prefix="mx-fwd-")
    try:
        os.chmod(mapdir, 0o755)
        pw = os.path.join(mapdir, "sasl_passwd")
        with open(pw, "w") as f:
            f.write("[127.0.0.1]:%d mxrelay:pw\n" % sink.port)
        os.chmod(pw, 0o644)
        mx = MX(build, tmp_path / "mx", redis, free_port(), tls=tls_cert,
                smtpd_milters=m.spec, mx_forward_enable="yes",
                relayhost="[127.0.0.1]:%d" % sink.port,
                smtp_tls_security_level="encrypt",
                smtp_sasl_auth_enable="yes",
                smtp_sasl_password_maps="texthash:" + pw,
                minimal_backoff_time="1s", maximal_backoff_time="2s",
                queue_run_delay="0s").start()
        try:
            with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as s:
                s.ehlo("client.example")
                s.sendmail("someone@example.net", ["alice@demo.test"],
                           message("someone@example.net", "alice@demo.test",
                                   "hold me"))
                s.sendmail("someone@example.net", ["bob@demo.test"],
                           message("someone@example.net", "bob@demo.test",
                                   "clean"))
            assert "milter-hold: END-OF-MESSAGE" in mx.logtext()
            # the clean one goes through the forwarder ...
            msgs = sink.wait_messages(1)
            assert len(msgs) == 1 and msgs[0][0]["rcpt_tos"] == \
                ["bob@demo.test"], msgs
            deadline = time.time() + 20
            while len(mx.qids()) > 1 and time.time() < deadline:
                time.sleep(0.1)
            # ... the held one stays, in the hold set, never scheduled
            qids = mx.qids()
            assert len(qids) == 1, mx.logtext()
            held = qids[0]
            assert mx.recipients(held) == ["alice@demo.test"]
            assert mx.envelope(held)["state"] == "hold"
            assert redis.command("ZSCORE", "mq:mx:sched", held) is None
            assert redis.command("SISMEMBER", "mq:mx:hold", held) == 1
            assert b"Subject: hold me" in mx.data(held)
            out = subprocess.run([str(build / "mailq"), "-c", mx.dir,
                                  "--json", "list"], capture_output=True,
                                 timeout=20)
            assert out.returncode == 0, out.stderr
            lst = [json.loads(x) for x in out.stdout.decode().splitlines()]
            assert [(x["queue_id"], x["state"]) for x in lst] == \
                [(held, "hold")]
            assert len(sink.messages()) == 1
            # released by the administrator, it is delivered
            out = subprocess.run([str(build / "mailq"), "-c", mx.dir,
                                  "--json", "release", held],
                                 capture_output=True, timeout=20)
            assert out.returncode == 0, out.stderr
            msgs = sink.wait_messages(2)
            assert sorted(x[0]["rcpt_tos"][0] for x in msgs) == \
                ["alice@demo.test", "bob@demo.test"]
        finally:
            mx.cleanup()
    finally:
        sink.stop()
        m.close()
        shutil.rmtree(mapdir, ignore_errors=True)


# ---- non_smtpd_milters: sendmail's mail and submission's smtpd_milters -------

def test_sendmail_mail_goes_through_submission_milters(build, sub_factory,
                                                       tmp_path):
    """Postfix runs non_smtpd_milters on mail from sendmail(1); ours submits
    to port 587, so submission's smtpd_milters see it, once, with the
    sendmail login as {auth_authen}. non_smtpd_milters is accepted, and a
    bad socket in it is a configuration error (EX_CONFIG)."""
    from test_sendmail import Sendmail

    m = ScriptedMilter(eom=[mpkt(b"h", b"X-Milter-Pass\0submission\0"),
                            mpkt(b"a")])
    try:
        sub = sub_factory(smtpd_milters=m.spec)
        sm = Sendmail(build, sub, tmp_path)
        cf = sm.etc / "sendmail.cf"
        base = cf.read_text()
        cf.write_text(base + "non_smtpd_milters = %s\n" % m.spec)
        r = sm.run(["-f", "alice@demo.test", "bob@demo.test"],
                   b"Subject: from cron\n\nnightly\n")
        assert r.returncode == 0, r.stderr
        msgs = sub.wait_messages("bob@demo.test", 1)
        assert len(msgs) == 1, sub.log()
        assert msgs[0][1].count(b"X-Milter-Pass: submission") == 1
        macros = b"".join(d for c, d in m.seen if c == b"D")
        assert b"{auth_authen}\0alice@demo.test\0" in macros
        cf.write_text(base + "non_smtpd_milters = tcp:127.0.0.1:1\n")
        r = sm.run(["-f", "alice@demo.test", "bob@demo.test"],
                   b"Subject: x\n\ny\n")
        assert r.returncode == 78, (r.returncode, r.stderr)
        assert b"non_smtpd_milters" in r.stderr
        assert sm.spooled() == []
    finally:
        m.close()


def test_quarantine_holds_outbound_copy_on_submission(sub_factory, redis):
    """On 587 a quarantined message's outbound copy waits in the hold set
    of the outbound queue, never scheduled for delivery."""
    m = ScriptedMilter(eom=[mpkt(b"q", b"outbound hold\0"), mpkt(b"a")])
    try:
        # nothing listens at the relayhost: a scheduled copy would be
        # tried and deferred, a held one is never tried
        sub = sub_factory(smtpd_milters=m.spec, relayhost="[127.0.0.1]:1")
        with sub.smtp(login="alice@demo.test") as s:
            assert s.sendmail("alice@demo.test", ["bob@remote.example"],
                              message("alice@demo.test", "bob@remote.example",
                                      "held out")) == {}
        keys = redis.command("KEYS", "mq:out:m:*")
        assert len(keys) == 1, sub.log()
        qid = keys[0][len("mq:out:m:"):]
        env = redis.command("HGETALL", keys[0])
        env = dict(zip(env[0::2], env[1::2]))
        assert env["state"] == "hold" and env["r0"] == "bob@remote.example"
        assert redis.command("ZSCORE", "mq:out:sched", qid) is None
        assert redis.command("SISMEMBER", "mq:out:hold", qid) == 1
        assert "milter-hold: END-OF-MESSAGE" in sub.log()
    finally:
        m.close()


# ---- the DATA stage, macros, the client's name (issue 14) -------------------

def smtp_lines(sock, n):
    """n complete replies (multi-line ones joined) from a raw socket."""
    buf, out = b"", []
    while len(out) < n:
        more = sock.recv(4096)
        if not more:
            break
        buf += more
        while b"\r\n" in buf and len(out) < n:
            line, buf = buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                out.append(line)
    return out, buf


def ehlo_session(port):
    """A raw socket to port, past the banner and EHLO."""
    c = socket.create_connection(("127.0.0.1", port), timeout=60)
    smtp_lines(c, 1)
    c.sendall(b"EHLO client.example\r\n")
    smtp_lines(c, 1)
    return c


def test_data_stage_refusal_answers_data_before_354(mx_factory):
    """Postfix sends the milters' DATA event when the client sends DATA:
    a REPLYCODE there is the answer to DATA (no 354), even with MAIL, RCPT
    and DATA pipelined; the transaction is gone (MAIL again), and the next
    one goes through with one DATA event per transaction."""
    m = ScriptedMilter(data=[mpkt(b"y", b"554 5.7.1 not now\0"),
                             mpkt(b"t")])
    try:
        mx = mx_factory(smtpd_milters=m.spec)
        with ehlo_session(mx.port) as c:
            c.sendall(b"MAIL FROM:<someone@example.net>\r\n"
                      b"RCPT TO:<alice@demo.test>\r\nDATA\r\n")
            r, rest = smtp_lines(c, 3)
            assert r[0].startswith(b"250") and r[1].startswith(b"250"), r
            assert r[2] == b"554 5.7.1 not now", r
            assert rest == b""
            # the transaction was reset, as Postfix does
            c.sendall(b"RCPT TO:<alice@demo.test>\r\n")
            r, _ = smtp_lines(c, 1)
            assert r[0].startswith(b"503"), r
            # a tempfail at DATA: 451, then a clean transaction
            c.sendall(b"MAIL FROM:<someone@example.net>\r\n"
                      b"RCPT TO:<alice@demo.test>\r\nDATA\r\n")
            r, _ = smtp_lines(c, 3)
            assert r[2].startswith(b"451 4.7.1"), r
            c.sendall(b"RSET\r\nMAIL FROM:<someone@example.net>\r\n"
                      b"RCPT TO:<alice@demo.test>\r\nDATA\r\n")
            r, _ = smtp_lines(c, 4)
            assert r[3].startswith(b"354"), r
            c.sendall(message("someone@example.net", "alice@demo.test",
                              "third").encode() + b".\r\n")
            r, _ = smtp_lines(c, 1)
            assert r[0].startswith(b"250 2.0.0 Ok: queued as"), r
            c.sendall(b"QUIT\r\n")
        log = mx.logtext()
        assert "milter-reject: DATA from" in log and "554 5.7.1 not now" \
            in log
        qids = mx.qids()
        assert len(qids) == 1, log
        # three transactions, three DATA events: the last one's was not
        # sent again at the end of data
        cmds = [c for c, d in m.seen]
        assert cmds.count(b"T") == 3 and cmds.count(b"E") == 1, cmds
        # milter_data_macros ("i") came with each DATA
        data_macros = m.macros(b"T")
        assert len(data_macros) == 3
        assert data_macros[2][b"i"] == qids[0].encode()
    finally:
        m.close()


def test_data_stage_refusal_at_first_bdat(mx_factory):
    """With CHUNKING the DATA event comes with the first BDAT: refused,
    its chunk is still read (RFC 3030 §3), then the milter's reply, and
    the transaction is gone; accepted, the message is queued with one
    DATA event."""
    m = ScriptedMilter(data=[mpkt(b"y", b"550 5.7.1 no chunks\0")])
    try:
        mx = mx_factory(smtpd_milters=m.spec)
        body = message("someone@example.net", "alice@demo.test",
                       "chunked").encode()
        with ehlo_session(mx.port) as c:
            c.sendall(b"MAIL FROM:<someone@example.net>\r\n"
                      b"RCPT TO:<alice@demo.test>\r\n"
                      b"BDAT %d LAST\r\n" % len(body) + body +
                      b"NOOP\r\n")
            r, _ = smtp_lines(c, 4)
            assert r[2] == b"550 5.7.1 no chunks", r
            # the chunk was read as data, not as commands
            assert r[3].startswith(b"250"), r
            c.sendall(b"MAIL FROM:<someone@example.net>\r\n"
                      b"RCPT TO:<alice@demo.test>\r\n"
                      b"BDAT %d LAST\r\n" % len(body) + body)
            r, _ = smtp_lines(c, 3)
            assert r[2].startswith(b"250 2.0.0 Ok: queued as"), r
            c.sendall(b"QUIT\r\n")
        assert "milter-reject: BDAT from" in mx.logtext()
        assert len(mx.qids()) == 1
        cmds = [c for c, d in m.seen]
        assert cmds.count(b"T") == 2 and cmds.count(b"E") == 1, cmds
    finally:
        m.close()


def test_client_name_is_forward_confirmed(mx_factory):
    """With milters, the client's PTR name, confirmed forward, is its
    name (127.0.0.1 is localhost in /etc/hosts): in the CONNECT event,
    {client_ptr}, the Received: header and the log."""
    m = ScriptedMilter()
    try:
        mx = mx_factory(smtpd_milters=m.spec,
                        milter_connect_macros="j _ {client_ptr} "
                        "{client_name} {client_connections}")
        mx_send(mx, "someone@example.net", "alice@demo.test",
                message("someone@example.net", "alice@demo.test", "named"))
        conn = [d for c, d in m.seen if c == b"C"]
        assert len(conn) == 1 and conn[0].startswith(b"localhost\0"), conn
        mc = m.macros(b"C")[0]
        assert mc[b"_"] == b"localhost [127.0.0.1]"
        assert mc[b"{client_ptr}"] == b"localhost"
        assert mc[b"{client_name}"] == b"localhost"
        assert int(mc[b"{client_connections}"]) >= 1
        qids = mx.qids()
        assert len(qids) == 1
        assert "(localhost [127.0.0.1])" in headers_of(mx.data(qids[0]))
        assert "client=localhost[127.0.0.1]" in mx.logtext()
    finally:
        m.close()


def test_peername_lookup_off_gives_unknown(mx_factory):
    """smtpd_peername_lookup = no (Postfix's parameter): no lookup, the
    milters hear "unknown", as Received: and the log say."""
    m = ScriptedMilter()
    try:
        mx = mx_factory(smtpd_milters=m.spec, smtpd_peername_lookup="no",
                        milter_connect_macros="_ {client_name}")
        mx_send(mx, "someone@example.net", "alice@demo.test",
                message("someone@example.net", "alice@demo.test", "anon"))
        conn = [d for c, d in m.seen if c == b"C"]
        assert len(conn) == 1 and conn[0].startswith(b"unknown\0"), conn
        assert m.macros(b"C")[0][b"{client_name}"] == b"unknown"
        qids = mx.qids()
        assert len(qids) == 1
        assert "(unknown [127.0.0.1])" in headers_of(mx.data(qids[0]))
    finally:
        m.close()


def test_mail_and_rcpt_macros_on_submission(sub_factory):
    """Postfix's default MAIL and RCPT macros: {auth_author} (MAIL AUTH=,
    from a logged-in client), {mail_host}/{mail_mailer}, and each
    recipient's resolved {rcpt_mailer}/{rcpt_host}: our mailbox
    "virtual", a remote one "smtp" to relayhost; a sender of ours is
    "virtual" too."""
    m = ScriptedMilter()
    try:
        sub = sub_factory(smtpd_milters=m.spec, relayhost="[127.0.0.1]:1")
        with sub.smtp(login="alice@demo.test") as s:
            assert s.mail("alice@demo.test",
                          ["AUTH=<alice@demo.test>"])[0] == 250
            assert s.rcpt("bob@demo.test")[0] == 250
            assert s.rcpt("carol@remote.example")[0] == 250
            code, _ = s.data(message("alice@demo.test", "bob@demo.test",
                                     "macros"))
            assert code == 250, sub.log()
        mail = m.macros(b"M")
        assert len(mail) == 1, m.seen
        assert mail[0][b"{auth_author}"] == b"<alice@demo.test>"
        assert mail[0][b"{auth_authen}"] == b"alice@demo.test"
        assert mail[0][b"{mail_mailer}"] == b"virtual"
        assert mail[0][b"{mail_host}"] == b"demo.test"
        rcpt = m.macros(b"R")
        assert [(r[b"{rcpt_addr}"], r[b"{rcpt_mailer}"], r[b"{rcpt_host}"])
                for r in rcpt] == [
            (b"bob@demo.test", b"virtual", b"demo.test"),
            (b"carol@remote.example", b"smtp", b"[127.0.0.1]:1")]
        # no client certificate: Postfix leaves the cert macros out
        helo = m.macros(b"H")
        assert helo and all(b"{cert_subject}" not in h for h in helo)
        assert any(h.get(b"{tls_version}") for h in helo)
    finally:
        m.close()


def test_quarantine_holds_local_copies_on_submission(build, sub_factory,
                                                     redis):
    """A quarantined message reaches no mailbox: the copy for our own
    mailbox waits on hold in the outbound queue with the remote one, and
    is delivered to the Maildir once "mailq --queue out release" lets it
    go (the remote copy stays deferred against a dead relayhost)."""
    m = ScriptedMilter(eom=[mpkt(b"q", b"hold all\0"), mpkt(b"a")])
    try:
        sub = sub_factory(smtpd_milters=m.spec, relayhost="[127.0.0.1]:1",
                          minimal_backoff_time="1s",
                          maximal_backoff_time="2s", queue_run_delay="0s")
        with sub.smtp(login="alice@demo.test") as s:
            assert s.sendmail("alice@demo.test",
                              ["alice@demo.test", "bob@remote.example"],
                              message("alice@demo.test", "alice@demo.test",
                                      "held local")) == {}
        assert "milter-hold: END-OF-MESSAGE" in sub.log()
        assert sub.messages("alice@demo.test") == []
        keys = redis.command("KEYS", "mq:out:m:*")
        assert len(keys) == 1, sub.log()
        qid = keys[0][len("mq:out:m:"):]
        env = redis.command("HGETALL", keys[0])
        env = dict(zip(env[0::2], env[1::2]))
        assert env["state"] == "hold"
        assert sorted(v for k, v in env.items()
                      if re.fullmatch(r"r\d+", k)) == \
            ["alice@demo.test", "bob@remote.example"]
        assert redis.command("SISMEMBER", "mq:out:hold", qid) == 1
        assert sub.messages("alice@demo.test") == []
        out = subprocess.run([str(build / "mailq"), "-c", sub.etc,
                              "--queue", "out", "release", qid],
                             capture_output=True, timeout=20)
        assert out.returncode == 0, out.stderr
        msgs = sub.wait_messages("alice@demo.test", 1, timeout=20)
        assert len(msgs) == 1, sub.log()
        assert b"Subject: held local" in msgs[0][1]
    finally:
        m.close()
