"""Bulk sync: a 10,000-message INBOX fetched by mbsync and by a pipelining
client that sends long bursts of commands without waiting, its writes cut
at odd byte positions, over plain TCP and TLS. Every command must be
answered once, OK and in order, and every message must arrive once with
its bytes intact (the report: mbsync stopped after about 1,000 messages
with "BAD Missing or invalid tag" on a pipelined UID FETCH).

Under make asan (SAN set, or a build folder named *asan*) the INBOX is
smaller; MRA_BULK_COUNT overrides the count."""
import hashlib
import os
import random
import re
import select
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from mra_env import MraEnv

ALICE = "alice@example.test"
# a server that sends nothing this long while commands wait has stalled
STALL_SECS = 20


def bulk_count():
    if os.environ.get("MRA_BULK_COUNT"):
        return int(os.environ["MRA_BULK_COUNT"])
    if os.environ.get("SAN") or "asan" in os.environ.get("BUILD", ""):
        return 2000
    return 10000


def bulk_message(i):
    """Distinct bytes and sizes: 200 bytes to about 9 KB, CRLF lines, and
    one in 500 of about 300 KB (the output outgrows the server's
    high-water mark: reading pauses and resumes)."""
    rnd = random.Random(i)
    n = rnd.randrange(1, 150) if i % 500 != 7 else 5000
    lines = ["line %d of message %d %s" % (k, i, "x" * rnd.randrange(0, 60))
             for k in range(n)]
    return ("From: Sender <sender@example.net>\r\n"
            "To: alice@example.test\r\n"
            "Subject: bulk %d\r\n"
            "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
            "Message-ID: <bulk.%d@example.net>\r\n"
            "\r\n%s\r\n" % (i, i, "\r\n".join(lines))).encode()


def message_id(data):
    m = re.search(rb"^Message-ID: <([^>]*)>", data, re.M | re.I)
    return m.group(1).decode() if m else None


def digest(data):
    """A hash of the message with line ends made uniform: mbsync stores
    LF lines in its Maildir."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def fill_inbox(env, count):
    """Write the messages straight into cur/ (as a delivery long ago
    would have left them): {Message-ID: digest}."""
    d = env.maildir(ALICE)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    want = {}
    now = int(time.time()) - count
    for i in range(count):
        data = bulk_message(i)
        name = "%d.M%dP%d.bulk,S=%d:2," % (now + i, i, os.getpid(), len(data))
        with open(os.path.join(d, "cur", name), "wb") as f:
            f.write(data)
        want["bulk.%d@example.net" % i] = digest(data)
    env.fix_owner()
    return want


def start_bulk(build, tmp_path, tls_cert, free_port, **params):
    env = MraEnv(build, tmp_path, tls_cert, free_port, **params)
    env.want = fill_inbox(env, bulk_count())
    return env.start()


@pytest.fixture
def bulk(build, tmp_path, tls_cert, free_port):
    env = start_bulk(build, tmp_path, tls_cert, free_port)
    yield env
    env.cleanup()


def tls_ctx(env):
    ctx = ssl.create_default_context(cafile=env.tls_cert.cert)
    ctx.check_hostname = False
    return ctx


# ---- mbsync -----------------------------------------------------------------

@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
@pytest.mark.parametrize("ssltype", ["IMAPS", "STARTTLS"])
def test_mbsync_bulk_inbox(bulk, tmp_path, ssltype):
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        "IMAPAccount bulk\n"
        "Host localhost\n"
        "Port %d\n"
        "User %s\n"
        "Pass secret\n"
        "SSLType %s\n"
        "CertificateFile %s\n"
        "PipelineDepth 100000\n"
        "\n"
        "IMAPStore remote\n"
        "Account bulk\n"
        "\n"
        "MaildirStore local\n"
        "Path %s/\n"
        "Inbox %s/INBOX\n"
        "\n"
        "Channel bulk\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns INBOX\n"
        "Create Near\n"
        "Sync Pull\n"
        "SyncState *\n" % (bulk.imaps_port if ssltype == "IMAPS" else bulk.imap_port,
                           ALICE, ssltype, bulk.tls_cert.cert, local, local))
    env = dict(os.environ, HOME=str(tmp_path))
    p = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:] + bulk.read_log()[-3000:]
    got = {}
    for sub in ("cur", "new"):
        d = local / "INBOX" / sub
        for name in os.listdir(d):
            # mbsync adds its transfer id header on the way in
            data = re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", (d / name).read_bytes(), 1)
            mid = message_id(data)
            assert mid not in got, "%s twice (%s)" % (mid, name)
            got[mid] = digest(data)
    assert len(got) == len(bulk.want)
    assert got == bulk.want


# ---- a pipelining client ----------------------------------------------------

class Pipe:
    """One connection that writes while it reads (a single thread over a
    non-blocking socket, TLS through memory BIOs), so that it never stops
    reading while the server holds its input back. Each queued chunk is
    one send (one TLS record): commands cut where the test says."""

    def __init__(self, env, implicit_tls):
        self.env = env
        self.sock = socket.create_connection(
            ("127.0.0.1", env.imaps_port if implicit_tls else env.imap_port), 10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.tls = None
        self.inbuf = b""      # plaintext received, not yet parsed
        self.raw_out = b""    # bytes for the socket
        self.chunks = []      # plaintext pieces still to send
        self.stall = None     # (random, odds, seconds): stop reading now and then
        self.heard = time.time()  # when the server last sent a byte
        if implicit_tls:
            self.start_tls()

    def start_tls(self):
        assert self.inbuf == b"" and not self.chunks
        self.rbio, self.wbio = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = tls_ctx(self.env).wrap_bio(self.rbio, self.wbio)
        self._handshake()

    def _handshake(self):
        deadline = time.time() + 10
        while True:
            try:
                self.tls.do_handshake()
                self._flush_bio()
                self._pump(0)
                return
            except ssl.SSLWantReadError:
                self._flush_bio()
                self._pump(0.1)
            assert time.time() < deadline, "TLS handshake timed out"

    def _flush_bio(self):
        if self.tls is not None:
            self.raw_out += self.wbio.read()

    def _pump(self, timeout):
        """Move bytes once: what is queued goes out, what came is read."""
        if self.stall is not None and self.stall[0].random() < self.stall[1]:
            # a slow reader: the server's output backs up while the
            # client goes on sending
            until = time.time() + self.stall[2]
            while time.time() < until:
                self._fill()
                if select.select([], [self.sock] if self.raw_out else [], [], 0.01)[1]:
                    self._send()
        self._fill()
        r, w, _ = select.select([self.sock], [self.sock] if self.raw_out else [],
                                [], timeout)
        if w:
            self._send()
        if r:
            self._recv()

    def _fill(self):
        if self.chunks and not self.raw_out:
            piece = self.chunks.pop(0)
            if self.tls is not None:
                self.tls.write(piece)
                self._flush_bio()
            else:
                self.raw_out = piece

    def _send(self):
        try:
            n = self.sock.send(self.raw_out)
            self.raw_out = self.raw_out[n:]
        except BlockingIOError:
            pass

    def _recv(self):
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        if data == b"":
            raise EOFError("server closed; got so far: %r" % self.inbuf[-500:])
        self.heard = time.time()
        if self.tls is None:
            self.inbuf += data
            return
        self.rbio.write(data)
        while True:
            try:
                self.inbuf += self.tls.read(1 << 20)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
        self._flush_bio()

    def queue(self, data, cut=None):
        """Queue data; cut: a list of offsets to split it at."""
        at = 0
        for c in sorted(set(cut or [])):
            if at < c < len(data):
                self.chunks.append(data[at:c])
                at = c
        self.chunks.append(data[at:])

    def _wait(self, deadline):
        """Pump once; fail when time is up or the server went silent
        while commands are outstanding (it stopped reading them)."""
        now = time.time()
        assert now < deadline, "timed out; last: %r" % self.inbuf[-300:]
        assert now - self.heard < STALL_SECS, \
            "no byte from the server for %ds; last: %r" % (STALL_SECS, self.inbuf[-300:])
        self._pump(0.2)

    def response(self, deadline):
        """One response line with its literals: (text, [literal bytes])."""
        text, lits = b"", []
        while True:
            while True:
                nl = self.inbuf.find(b"\r\n")
                if nl >= 0:
                    break
                self._wait(deadline)
            line, self.inbuf = self.inbuf[:nl], self.inbuf[nl + 2:]
            text += line
            m = re.search(rb"\{(\d+)\}$", line)
            if m is None:
                return text, lits
            n = int(m.group(1))
            while len(self.inbuf) < n:
                self._wait(deadline)
            lits.append(self.inbuf[:n])
            self.inbuf = self.inbuf[n:]

    def command(self, tag, text, deadline):
        self.queue(b"%s %s\r\n" % (tag, text))
        while True:
            t, lits = self.response(deadline)
            if t.startswith(tag + b" "):
                return t

    def close(self):
        self.sock.close()


def burst_script(uids, rnd):
    """The pipelined commands: a UID FETCH of each message's body, with a
    FLAGS fetch over a range and a NOOP now and then. [(tag, line)]."""
    cmds = []
    for k, uid in enumerate(uids):
        cmds.append(b"UID FETCH %d (BODY.PEEK[])" % uid)
        if k % 97 == 0:
            cmds.append(b"UID FETCH %d:%d (FLAGS)" % (uid, uid + 40))
        if k % 53 == 0:
            cmds.append(b"NOOP")
    return [(b"p%d" % n, c) for n, c in enumerate(cmds)]


def run_pipelined(env, mode, seed, stall=None):
    """mode: "plain", "imaps" or "starttls"; stall: (odds, seconds) of a
    pause in reading at each look at the socket."""
    rnd = random.Random(seed)
    deadline = time.time() + 120
    p = Pipe(env, mode == "imaps")
    try:
        greet, _ = p.response(deadline)
        assert greet.startswith(b"* OK"), greet
        if mode == "starttls":
            assert p.command(b"s", b"STARTTLS", deadline).startswith(b"s OK")
            p.start_tls()
        assert p.command(b"l", b'LOGIN "%s" "secret"' % ALICE.encode(),
                         deadline).startswith(b"l OK")
        sel = p.command(b"x", b"EXAMINE INBOX", deadline)
        assert sel.startswith(b"x OK"), sel
        if stall is not None:
            p.stall = (rnd, stall[0], stall[1])
        uids = list(range(1, len(env.want) + 1))
        rnd.shuffle(uids)
        script = burst_script(uids, rnd)
        # bursts of 50 to 400 commands in one go, cut at odd places
        i = 0
        while i < len(script):
            n = rnd.randrange(50, 400)
            blob = b"".join(b"%s %s\r\n" % tc for tc in script[i:i + n])
            cuts = [rnd.randrange(1, len(blob)) for _ in range(rnd.randrange(1, 12))]
            # and right after a tag, inside "UID FETCH", before a CRLF
            for at in (blob.find(b" UID FETCH"), blob.find(b"FETCH") + 2,
                       blob.find(b"\r\n")):
                if at > 0:
                    cuts.append(at)
            p.queue(blob, cuts)
            i += n
        answered = []
        bodies = {}
        while len(answered) < len(script):
            text, lits = p.response(deadline)
            if text.startswith(b"* "):
                m = re.match(rb"\* \d+ FETCH \(.*BODY\[\] \{\d+\}\)$", text)
                if m and lits:
                    mid = message_id(lits[0])
                    assert mid not in bodies, "%s twice" % mid
                    bodies[mid] = digest(lits[0])
                continue
            tag, _, rest = text.partition(b" ")
            answered.append(tag)
            assert rest.startswith(b"OK"), (tag, text, env.read_log()[-2000:])
        assert answered == [t for t, _ in script]
        assert bodies == env.want
        assert p.command(b"z", b"LOGOUT", deadline).startswith(b"z OK")
    finally:
        p.close()


@pytest.mark.parametrize("mode", ["imaps", "starttls", "plain"])
def test_pipelined_fetch(build, tmp_path, tls_cert, free_port, mode):
    env = start_bulk(build, tmp_path, tls_cert, free_port,
                     disable_plaintext_auth="no")
    try:
        run_pipelined(env, mode, 1, stall=(0.02, 0.1))
    finally:
        env.cleanup()


@pytest.mark.parametrize("mode", ["starttls", "imaps", "plain"])
def test_pipelined_fetch_short_reads(build, tmp_path, tls_cert, free_port, mode):
    """The server reads one line ahead at most (its read watermark is
    imap_max_line_length + 2): with the smallest limit, every burst stops
    and resumes reading many times. Over STARTTLS the TLS filter then
    read and handed over input from inside the drain of the command
    before: the next command ran while the first one did (two jobs at
    once, answers out of order, the folder freed under a FETCH)."""
    env = start_bulk(build, tmp_path, tls_cert, free_port,
                     disable_plaintext_auth="no", imap_max_line_length=1024)
    try:
        run_pipelined(env, mode, 2)
    finally:
        env.cleanup()
