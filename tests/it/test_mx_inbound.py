"""mx-relay inbound SMTP: what it accepts, what it refuses, limits, and
that a 250 means the message is in Redis. Real redis-server (AOF,
appendfsync always), real mx-relay, Python's smtplib and raw sockets."""
import os
import random
import re
import smtplib
import socket
import ssl
import threading
import time

import pytest

from mx_env import MX


@pytest.fixture
def mx_factory(build, redis, tls_cert, free_port, tmp_path):
    started = []

    def make(name="mx", tls=True, **params):
        m = MX(build, tmp_path / name, redis, free_port(),
               tls=tls_cert if tls else None, **params)
        m.start()
        started.append(m)
        return m

    yield make
    for m in started:
        m.cleanup()


@pytest.fixture
def mx(mx_factory):
    return mx_factory()


def smtp(mx, timeout=10):
    s = smtplib.SMTP("127.0.0.1", mx.port, timeout=timeout)
    s.ehlo("client.example")
    return s


class Raw:
    """A raw SMTP client socket: send bytes, read whole replies."""

    def __init__(self, port, greet=True, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.buf = b""
        if greet:
            code, _ = self.reply()
            assert code == 220

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), b"\n".join(l[4:] for l in lines)

    def closed(self):
        try:
            self.sock.settimeout(5)
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.sock.close()


def wait_for(pred, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def queued_id(reply_text):
    m = re.search(rb"queued as ([0-9A-F]+)", reply_text)
    assert m, reply_text
    return m.group(1).decode()


# ---- capabilities and the happy path -------------------------------------

def test_ehlo_capabilities_no_auth(mx):
    with smtp(mx) as s:
        for ext in ("pipelining", "size", "8bitmime", "smtputf8",
                    "enhancedstatuscodes", "starttls", "chunking"):
            assert s.has_extn(ext), ext
        assert s.esmtp_features["size"] == "2000000"
        assert not s.has_extn("auth")
        s.starttls()
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        assert not s.has_extn("auth")
        assert s.docmd("AUTH PLAIN AGEAYg==")[0] == 503


def test_accepts_known_user_and_queues(mx):
    with smtp(mx) as s:
        assert s.mail("sender@example.net")[0] == 250
        assert s.rcpt("alice@demo.test")[0] == 250
        code, text = s.data(b"Subject: hello\r\n\r\nHi Alice\r\n")
        assert code == 250
    qid = queued_id(text)
    assert len(qid) >= 10
    env = mx.envelope(qid)
    assert env["sender"] == "sender@example.net"
    assert mx.recipients(qid) == ["alice@demo.test"]
    data = mx.data(qid)
    assert data.startswith(b"Received: from client.example (unknown [127.0.0.1])\r\n")
    assert b"by mx.demo.test (mx-relay) with ESMTP id " + qid.encode() in data
    assert b"for <alice@demo.test>;" in data
    assert data.endswith(b"Subject: hello\r\n\r\nHi Alice\r\n")
    log = mx.logtext()
    assert "%s: client=unknown[127.0.0.1]" % qid in log
    assert "%s: from=<sender@example.net>, size=%d, nrcpt=1" % (qid, len(data)) in log


def test_queue_wait_replicas_accepted_and_applied(mx_factory):
    """queue_params are in mx-relay's tables: the daemon starts with them,
    and a put no replica confirms (this Redis has none) is a 4xx with the
    copy taken back, never a 250."""
    m = mx_factory("waitrep", queue_wait_replicas="1", queue_wait_timeout="1s")
    with smtp(m) as s:
        assert s.mail("sender@example.net")[0] == 250
        assert s.rcpt("alice@demo.test")[0] == 250
        code, text = s.data(b"Subject: wait\r\n\r\nreplicas\r\n")
        assert 400 <= code < 500, text
    assert wait_for(lambda: m.qids() == [])
    assert "replicas confirmed" in m.logtext()


def test_virtual_domain_and_postmaster(mx):
    with smtp(mx) as s:
        assert s.mail("")[0] == 250
        assert s.docmd("RCPT TO:<carol@virt.test>")[0] == 250
        assert s.docmd("RCPT TO:<Postmaster>")[0] == 250
        assert s.docmd("RCPT TO:<nobody@virt.test>")[0] == 550
        code, text = s.data(b"Subject: x\r\n\r\nx\r\n")
        assert code == 250
    qid = queued_id(text)
    assert mx.envelope(qid)["sender"] == ""
    assert mx.recipients(qid) == ["carol@virt.test", "Postmaster"]


# ---- no open relay ---------------------------------------------------------

RELAY_TRICKS = [
    "victim@other.example",
    "victim%other.example@demo.test",
    "other.example!victim@demo.test",
    "@demo.test:victim@other.example",
    "@other.example,@demo.test:alice@demo.test",
    "\"victim@other.example\"@demo.test",
    "\"victim%other.example\"@demo.test",
    "alice@demo.test.",
    "alice@demo.test.other.example",
    "alice@sub.demo.test",
    "alice@[127.0.0.1]",
    "alice@[IPv6:::1]",
    "alice@demo.test@other.example",
    "alice",
]


@pytest.mark.parametrize("rcpt", RELAY_TRICKS)
def test_open_relay_refused(mx, rcpt):
    with smtp(mx) as s:
        assert s.mail("spammer@example.net")[0] == 250
        code, text = s.docmd("RCPT TO:<%s>" % rcpt)
        assert code in (501, 550, 553, 554), (rcpt, code, text)
        assert s.docmd("DATA")[0] == 554      # no valid recipients
    assert mx.qids() == []


def test_other_domain_is_relay_denied(mx):
    with smtp(mx) as s:
        s.mail("a@example.net")
        code, text = s.docmd("RCPT TO:<victim@other.example>")
        assert code == 554 and text.startswith(b"5.7.1 ")
        assert b"Relay access denied" in text
        code, text = s.docmd("RCPT TO:<victim%other.example@demo.test>")
        assert code == 554 and b"Relay access denied" in text


def test_unknown_user_550_511(mx):
    with smtp(mx) as s:
        s.mail("a@example.net")
        code, text = s.rcpt("nobody@demo.test")
        assert code == 550 and text.startswith(b"5.1.1 <nobody@demo.test>")
        assert s.rcpt("bob@demo.test")[0] == 250


def test_vrfy_never_discloses_expn_refused(mx):
    with smtp(mx) as s:
        known = s.verify("alice@demo.test")
        unknown = s.verify("nobody@demo.test")
        assert known[0] == unknown[0] == 252
        assert known[1] == unknown[1]
        assert s.expn("staff")[0] == 502
        assert s.help().startswith(b"2.0.0")
        assert s.noop()[0] == 250
        assert s.rset()[0] == 250


# ---- sizes -------------------------------------------------------------------

def test_size_refused_at_mail(mx):
    with smtp(mx) as s:
        code, text = s.mail("a@example.net", ["SIZE=2000001"])
        assert code == 552 and text.startswith(b"5.3.4")
        assert s.mail("a@example.net", ["SIZE=1000"])[0] == 250


def test_size_enforced_in_data(mx):
    body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 2100
    with smtp(mx) as s:
        s.mail("a@example.net")
        s.rcpt("alice@demo.test")
        code, text = s.data(body)
        assert code == 552 and text.startswith(b"5.3.4")
        # the session is still in sync and usable
        assert s.noop()[0] == 250
        s.mail("a@example.net")
        s.rcpt("alice@demo.test")
        assert s.data(b"Subject: small\r\n\r\nok\r\n")[0] == 250
    assert len(mx.qids()) == 1


def test_8bit_body_byte_exact(mx):
    rnd = random.Random(7)
    lines = []
    for _ in range(300):
        n = rnd.randint(0, 200)
        line = bytes(rnd.choice([c for c in range(1, 256) if c not in (10, 13)])
                     for _ in range(n))
        lines.append(line)
    body = b"Subject: 8bit\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    with smtp(mx) as s:
        s.mail("a@example.net", ["BODY=8BITMIME"])
        s.rcpt("alice@demo.test")
        code, text = s.data(body)
        assert code == 250
    data = mx.data(queued_id(text))
    assert data.endswith(body)
    assert mx.envelope(queued_id(text))["body8bit"] == "1"


def test_1mb_body_byte_exact(mx):
    rnd = random.Random(1)
    chunk = bytes(rnd.randrange(32, 127) for _ in range(76))
    body = b"Subject: 1MB\r\n\r\n" + b"".join(
        (b"." if i % 5 == 0 else b"") + chunk + b"\r\n" for i in range(13000))
    assert len(body) > 1000000
    with smtp(mx) as s:
        s.mail("a@example.net", ["SIZE=%d" % len(body)])
        s.rcpt("bob@demo.test")
        code, text = s.data(body)
        assert code == 250
    data = mx.data(queued_id(text))
    assert data.endswith(body)
    assert len(data) - len(body) < 400   # only our Received: in front


def test_smtputf8_address(mx):
    r = Raw(mx.port)
    r.send(b"EHLO c\r\n")
    assert r.reply()[0] == 250
    addr = "jos\u00e9@\u00e9xample.net".encode("utf-8")
    r.send(b"MAIL FROM:<" + addr + b">\r\n")
    assert r.reply()[0] == 501            # 8-bit without SMTPUTF8
    r.send(b"MAIL FROM:<" + addr + b"> SMTPUTF8\r\n")
    assert r.reply()[0] == 250
    r.send(b"RCPT TO:<alice@demo.test>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(2)] == [250, 354]
    r.send(b"Subject: utf8\r\n\r\nx\r\n.\r\n")
    code, text = r.reply()
    assert code == 250
    qid = queued_id(text)
    assert mx.envelope(qid)["sender"] == addr.decode("utf-8")
    assert mx.envelope(qid)["smtputf8"] == "1"
    assert b" with UTF8SMTP id " in mx.data(qid)


# ---- PIPELINING and CHUNKING --------------------------------------------------

def test_pipelining_in_one_write(mx):
    r = Raw(mx.port)
    r.send(b"EHLO client.example\r\n"
           b"MAIL FROM:<a@example.net>\r\n"
           b"RCPT TO:<alice@demo.test>\r\n"
           b"RCPT TO:<nobody@demo.test>\r\n"
           b"RCPT TO:<x@other.example>\r\n"
           b"RCPT TO:<bob@demo.test>\r\n"
           b"DATA\r\n")
    codes = [r.reply()[0] for _ in range(7)]
    assert codes == [250, 250, 250, 550, 554, 250, 354]
    r.send(b"Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
    code, text = r.reply()
    assert code == 250
    assert [r.reply()[0] for _ in range(2)] == [250, 221]
    assert mx.recipients(queued_id(text)) == ["alice@demo.test", "bob@demo.test"]


def test_bdat_chunks(mx):
    r = Raw(mx.port)
    r.send(b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<alice@demo.test>\r\n")
    assert [r.reply()[0] for _ in range(3)] == [250, 250, 250]
    one, two = b"Subject: b\r\n\r\nhello", b" world\r\n\r\n"
    r.send(b"BDAT %d\r\n%s" % (len(one), one))
    assert r.reply()[0] == 250
    r.send(b"BDAT %d LAST\r\n%s" % (len(two), two))
    code, text = r.reply()
    assert code == 250
    assert mx.data(queued_id(text)).endswith(b"Subject: b\r\n\r\nhello world\r\n\r\n")
    # BDAT without a transaction: the chunk is eaten, the reply is an error
    r.send(b"BDAT 4 LAST\r\nNOOPNOOP\r\n")
    assert r.reply()[0] == 503
    assert r.reply()[0] == 250


# ---- SMTP smuggling ----------------------------------------------------------

SMUGGLE = [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r"]


@pytest.mark.parametrize("end", SMUGGLE, ids=[repr(e) for e in SMUGGLE])
def test_bare_lf_cr_smuggling_refused(mx, end):
    r = Raw(mx.port)
    r.send(b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<alice@demo.test>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    r.send(b"Subject: first\r\n\r\nfirst" + end +
           b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@demo.test>\r\n"
           b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
    code, text = r.reply()
    assert code == 550 and text.startswith(b"5.5.2"), (code, text)
    # in sync: the next command is answered as a command
    r.send(b"NOOP\r\n")
    assert r.reply()[0] == 250
    assert mx.qids() == []
    assert "bare <" in mx.logtext()


def test_bare_lf_in_command_closes(mx):
    r = Raw(mx.port)
    r.send(b"EHLO c\nMAIL FROM:<a@example.net>\n")
    code, text = r.reply()
    assert code == 521 and b"5.5.2" in text
    assert r.closed()


def test_bare_lf_allowed_when_configured(mx_factory):
    m = mx_factory("lax", smtpd_forbid_bare_newline="no")
    r = Raw(m.port)
    r.send(b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<alice@demo.test>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    r.send(b"Subject: lf\r\n\r\nline\n.\nMAIL FROM:<evil@example.net>\r\n.\r\n")
    code, text = r.reply()
    assert code == 250
    # even then, "<LF>.<LF>" did not end the message: it is inside it
    assert mx_data_has(m, queued_id(text), b"line\n.\nMAIL FROM:<evil@example.net>\r\n")


def mx_data_has(m, qid, needle):
    return needle in m.data(qid)


# ---- STARTTLS ----------------------------------------------------------------

def test_starttls_plaintext_injection_discarded(mx):
    r = Raw(mx.port)
    r.send(b"EHLO c\r\n")
    assert r.reply()[0] == 250
    r.send(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@demo.test>\r\n")
    code, _ = r.reply()
    assert code == 220
    assert r.buf == b""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(r.sock, server_hostname="localhost")
    f = tls.makefile("rb")
    # the injected MAIL must not have run: RCPT without MAIL is 503, and
    # MAIL (needs EHLO again after TLS) is refused for lack of EHLO
    tls.sendall(b"RCPT TO:<alice@demo.test>\r\n")
    assert f.readline().startswith(b"503 5.5.1")
    tls.sendall(b"MAIL FROM:<a@example.net>\r\n")
    assert f.readline().startswith(b"503 5.5.1")
    tls.sendall(b"EHLO c\r\n")
    lines = []
    while True:
        line = f.readline()
        lines.append(line)
        if line[3:4] == b" ":
            break
    assert not any(b"STARTTLS" in l for l in lines)
    assert "discarding" in mx.logtext() and "after STARTTLS" in mx.logtext()
    tls.close()


def test_received_header_has_tls_details(mx):
    with smtp(mx) as s:
        s.starttls()
        s.ehlo("client.example")
        s.mail("a@example.net")
        s.rcpt("alice@demo.test")
        code, text = s.data(b"Subject: tls\r\n\r\nx\r\n")
        assert code == 250
    data = mx.data(queued_id(text))
    head = data.split(b"Subject:")[0]
    assert b"(using TLSv1." in head and b" with cipher " in head
    assert b" with ESMTPS id " in head


# ---- limits --------------------------------------------------------------------

def test_pregreet_talker_refused(mx_factory):
    m = mx_factory("pregreet", postscreen_greet_wait="1s")
    r = Raw(m.port, greet=False)
    r.send(b"EHLO early.example\r\nMAIL FROM:<a@example.net>\r\n")
    code, text = r.reply()
    assert code == 554 and b"5.5.1" in text
    assert r.closed()
    assert "PREGREET" in m.logtext()
    # a patient client is served
    p = Raw(m.port)
    p.send(b"EHLO patient.example\r\n")
    assert p.reply()[0] == 250


def test_timeout_421(mx_factory):
    m = mx_factory("timeout", smtpd_timeout="1s")
    r = Raw(m.port)
    t0 = time.time()
    code, text = r.reply()
    assert code == 421 and text.startswith(b"4.4.2")
    assert time.time() - t0 < 5
    assert r.closed()


def test_hard_error_limit(mx_factory):
    m = mx_factory("errors", smtpd_hard_error_limit="3")
    r = Raw(m.port)
    r.send(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    assert [r.reply()[0] for _ in range(4)] == [500, 500, 500, 421]
    assert r.closed()


def test_recipient_limit(mx_factory):
    m = mx_factory("rcptlimit", smtpd_recipient_limit="2")
    with smtp(m) as s:
        s.mail("a@example.net")
        assert s.rcpt("alice@demo.test")[0] == 250
        assert s.rcpt("bob@demo.test")[0] == 250
        code, text = s.rcpt("carol@virt.test")
        assert code == 452 and text.startswith(b"4.5.3")
        assert s.data(b"Subject: two\r\n\r\nx\r\n")[0] == 250


def test_line_too_long_then_in_sync(mx):
    r = Raw(mx.port)
    r.send(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
    code, text = r.reply()
    assert code == 500 and text.startswith(b"5.5.2")
    assert r.reply()[0] == 250


def test_connection_rate_limit_in_redis(mx_factory, redis):
    m = mx_factory("connrate", smtpd_client_connection_rate_limit="3")
    redis.command("DEL", "mx:rate:conn:127.0.0.1")   # start-up probes
    for _ in range(3):
        r = Raw(m.port)
        r.close()
    r = Raw(m.port, greet=False)
    code, text = r.reply()
    assert code == 421 and text.startswith(b"4.7.0")
    assert int(redis.command("GET", "mx:rate:conn:127.0.0.1")) >= 4


def test_message_rate_limit(mx_factory):
    m = mx_factory("msgrate", smtpd_client_message_rate_limit="2")
    with smtp(m) as s:
        for i in range(2):
            assert s.mail("a@example.net")[0] == 250
            s.rset()
        code, text = s.mail("a@example.net")
        assert code == 450 and text.startswith(b"4.7.0")


def test_two_processes_share_the_port(build, redis, tls_cert, free_port, tmp_path):
    port = free_port()
    a = MX(build, tmp_path / "a", redis, port).start()
    b = MX(build, tmp_path / "b", redis, port).start()
    assert a.proc.poll() is None and b.proc.poll() is None
    try:
        for _ in range(6):
            with smtp(a) as s:
                assert s.noop()[0] == 250
    finally:
        a.cleanup()
        b.cleanup()


# ---- durability ---------------------------------------------------------------------

def send_one(m, n=0):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=10) as s:
        s.ehlo("c")
        s.mail("a@example.net")
        s.rcpt("alice@demo.test")
        return s.data(b"Subject: n%d\r\n\r\nbody %d\r\n" % (n, n))


def test_redis_down_451_then_recovery(mx, redis):
    assert send_one(mx)[0] == 250
    redis.stop()
    code, text = send_one(mx, 1)
    assert code == 451 and text.startswith(b"4.3.0")
    redis.start()

    def ok():
        try:
            return send_one(mx, 2)[0] == 250
        except (smtplib.SMTPException, OSError):
            return False
    assert wait_for(ok, 20)
    assert len(mx.qids()) == 2


def test_kill9_under_load_loses_nothing_acknowledged(mx):
    acked = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(k):
        i = 0
        while not stop.is_set():
            try:
                code, text = send_one(mx, k * 100000 + i)
            except (smtplib.SMTPException, OSError):
                continue
            i += 1
            if code == 250:
                with lock:
                    acked.append(queued_id(text))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(acked) >= 50, 30)
    mx.kill9()
    stop.set()
    for t in threads:
        t.join(15)
    have = set(mx.qids())
    assert acked and set(acked) <= have
    for qid in acked[:20]:
        assert mx.data(qid).endswith(b"\r\n")


# ---- hostile input: no spin, no stall (issue #9) -----------------------------

def tls_wrap(r):
    """STARTTLS on a Raw client after EHLO; the Raw keeps working over TLS."""
    r.send(b"STARTTLS\r\n")
    assert r.reply()[0] == 220
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    r.sock = ctx.wrap_socket(r.sock, server_hostname="localhost")
    r.send(b"EHLO c\r\n")
    assert r.reply()[0] == 250


def greeting_within(port, seconds):
    t0 = time.time()
    r = Raw(port, greet=False, timeout=seconds)
    try:
        code, _ = r.reply()
    finally:
        r.close()
    return code == 220 and time.time() - t0 < seconds


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_overlong_line_no_spin(mx, tls):
    """A 100,000-byte command line (after STARTTLS, bufferevent_openssl
    can hand over an input buffer whose first chain is empty): one 500,
    back in sync, and the loop still serves others."""
    r = Raw(mx.port)
    r.send(b"EHLO c\r\n")
    assert r.reply()[0] == 250
    if tls:
        tls_wrap(r)
    r.send(b"NOOP " + b"x" * 100000 + b"\r\n")
    code, text = r.reply()
    assert code == 500 and text.startswith(b"5.5.2")
    assert greeting_within(mx.port, 1.0)
    r.send(b"NOOP\r\n")
    assert r.reply()[0] == 250
    r.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_overlong_line_in_pieces_no_spin(mx, tls):
    """The same line sent in 1,000-byte pieces with pauses: the skip goes
    on across reads, whatever the TLS record boundaries."""
    r = Raw(mx.port)
    r.send(b"EHLO c\r\n")
    assert r.reply()[0] == 250
    if tls:
        tls_wrap(r)
    r.send(b"NOOP ")
    for _ in range(100):
        r.send(b"y" * 1000)
    time.sleep(0.1)
    assert greeting_within(mx.port, 1.0)
    r.send(b"\r\nNOOP\r\n")
    code, text = r.reply()
    assert code == 500 and text.startswith(b"5.5.2")
    assert r.reply()[0] == 250
    r.close()


def body_of(n):
    """n bytes of message: CRLF lines, ending in CRLF, no leading dots."""
    head = b"Subject: edge\r\n\r\n"
    line = b"y" * 98 + b"\r\n"
    body = head + line * ((n - len(head) - 2) // len(line))
    return body + b"z" * (n - len(body) - 2) + b"\r\n"


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_size_limit_exact_edge(mx, tls):
    """message_size_limit bytes of body are taken, one more is not: the
    buffer is capped at the limit, so the edge must still be exact."""
    limit = int(mx.conf["message_size_limit"])
    for n, want in ((limit, 250), (limit + 1, 552)):
        r = Raw(mx.port)
        r.send(b"EHLO c\r\n")
        assert r.reply()[0] == 250
        if tls:
            tls_wrap(r)
        r.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<alice@demo.test>\r\nDATA\r\n")
        assert [r.reply()[0] for _ in range(3)] == [250, 250, 354]
        body = body_of(n)
        assert len(body) == n
        r.send(body + b".\r\n")
        code, text = r.reply()
        assert code == want, text
        if code == 250:
            assert mx.data(queued_id(text)).endswith(body)
        r.send(b"QUIT\r\n")
        assert r.reply()[0] == 221
        r.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_data_dot_cr_split_across_reads(mx_factory, tls):
    """A read that ends in <CRLF>.<CR>, the next starting with another
    byte: the held CR comes out in the right place and the message is
    refused for its bare CR (or kept whole where bare newlines are
    allowed), never written past its buffer."""
    m = mx_factory("dotcr", smtpd_forbid_bare_newline="no")
    r = Raw(m.port)
    r.send(b"EHLO c\r\n")
    assert r.reply()[0] == 250
    if tls:
        tls_wrap(r)
    r.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<alice@demo.test>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(3)] == [250, 250, 354]
    r.send(b"Subject: cr\r\n\r\na\r\n.\r")
    time.sleep(0.2)
    r.send(b"x\r\n.\r\n")
    code, text = r.reply()
    assert code == 250, text
    assert m.data(queued_id(text)).endswith(b"\r\n\r\na\r\n\rx\r\n")
    r.close()
