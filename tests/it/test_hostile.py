"""Hostile clients (issue #9) against every listening port of the three
daemons, over plaintext, STARTTLS and implicit TLS: over-long lines and
literals, bare LF, a DATA end split at a read boundary, oversized messages,
XFORWARD edge values, exponential LIST patterns, NUL in mailbox names, a
100 KB Subject, COPY over quota, slow and idle clients.

Each case is one test id ATTACK-PORT-MODE. After the attack the test checks
that (a) the daemon is still the same live process, (b) a new normal client
gets its greeting and an answer to one command within 1 s, (c) the daemon's
resident memory is back within RSS_MARGIN_KB of what it was before (not
checked under AddressSanitizer), and (d) it is not left spinning on the
CPU (DESIGN.md guarantee 4).
The daemons are shared by the module; a case that kills or wedges one
fails, and the next case starts it again (Guard).
Combinations a port cannot reach (AUTH on the MX, login before TLS) are not
generated.
"""
import base64
import imaplib
import os
import re
import socket
import ssl
import time

import pytest

import servers
from hostile_env import (HANG, HEALTH_CHECK, RSS_MARGIN_KB, Conn, Guard,
                         Hang, client_ctx, imap_open,
                         pop3_multiline, pop3_open, rss_kb, rss_settle,
                         smtp_open, spinning)
from mra_env import MraEnv
from mx_env import MX
from sub_env import SubEnv

SIZE_LIMIT = 1000000            # message_size_limit of the MX and submission
BIG_BODY = 16 * 1024 * 1024     # the oversized DATA body

ALICE, ALICE_PW = "alice@example.test", "secret"
QUSER, QUSER_PW = "quota@example.test", "quota-pw"
QUOTA = 40000


# ---- the daemons, one of each per module -----------------------------------

@pytest.fixture(scope="module")
def hostile_redis(tmp_path_factory):
    r = servers.Redis(base=str(tmp_path_factory.mktemp("hostile-redis"))).start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def mx_guard(build, hostile_redis, tls_cert, free_port, tmp_path_factory):
    # every client here is 127.0.0.1: idle_50 and the health check after
    # it must fit under smtpd_client_connection_count_limit (default 50)
    mx = MX(build, tmp_path_factory.mktemp("hostile-mx"), hostile_redis,
            free_port(), tls=tls_cert, message_size_limit=SIZE_LIMIT,
            smtpd_client_connection_count_limit=100)
    mx.start()
    g = Guard("mx-relay", mx, {"mx": ("smtp", "port")}, mx.start, mx.logtext)
    g.warm_up()
    yield g
    g.close()


@pytest.fixture(scope="module")
def sub_guard(build, hostile_redis, tls_cert):
    sub = SubEnv(build, hostile_redis, tls_cert, params={
        "message_size_limit": SIZE_LIMIT,
        # failed AUTHs of one case must not lock out the next ones
        "auth_failure_delay": "0s",
        "smtpd_sasl_failure_limit": "0",
        "smtpd_client_auth_rate_limit": "0",
        # all clients are 127.0.0.1 (see mx_guard)
        "smtpd_client_connection_count_limit": "100",
    }).start()
    g = Guard("submission", sub, {"587": ("smtp", "submission_port"),
                                  "465": ("smtp", "smtps_port"),
                                  "intake": ("smtp", "intake_port")},
              sub.start, sub.log)
    g.warm_up()
    yield g
    g.close()


@pytest.fixture(scope="module")
def mra_guard(build, tls_cert, free_port):
    env = MraEnv(build, None, tls_cert, free_port,
                 users={ALICE: ALICE_PW, QUSER: QUSER_PW},
                 quota={QUSER: QUOTA},
                 smtpd_client_auth_rate_limit=0, auth_failure_delay="0s")

    def start():
        env.start()
        for p in (env.pop3_port, env.pop3s_port):
            servers.wait_port(p, proc=env.proc, timeout=10)

    start()
    g = Guard("mra", env, {"143": ("imap", "imap_port"),
                           "993": ("imap", "imaps_port"),
                           "110": ("pop3", "pop3_port"),
                           "995": ("pop3", "pop3s_port")},
              start, env.read_log)
    g.warm_up()
    yield g
    g.close()


# ---- one case: attack, then (a) alive, (b) served within 1 s, (c) memory ---

def run_case(g, port_name, mode, attack):
    g.ensure()
    pid = g.pid
    port = g.port(port_name)
    before = rss_kb(pid)
    errors = []
    try:
        attack(g, port_name, port, mode)
    except Hang as e:
        errors.append("hostile connection hung: %s" % e)
    except Exception as e:  # noqa: BLE001 -- every way the client saw it fail
        errors.append("hostile connection: %s: %s" % (type(e).__name__, e))

    def died():
        if g.proc is not None and g.proc.poll() is None and g.pid == pid:
            return False
        rc = g.proc.poll() if g.proc is not None else None
        errors.append("(a) %s died (exit status %s); log tail:\n%s"
                      % (g.name, rc, g.log_tail()))
        return True

    # (a) the same process is alive
    if died():
        pytest.fail("\n".join(errors))
    # (b) a new normal client is served within 1 s
    try:
        HEALTH_CHECK[g.proto(port_name)](port, mode)
    except (AssertionError, OSError, ssl.SSLError) as e:
        errors.append("(b) a new client on %s/%s was not served within 1 s: "
                      "%s: %s" % (port_name, mode, type(e).__name__, e))
    # (c) memory back after the hostile connection closed (not under
    # AddressSanitizer, whose quarantine keeps what was freed)
    after = None if g.sanitized else rss_settle(pid, before + RSS_MARGIN_KB)
    if after is not None and after > before + RSS_MARGIN_KB:
        errors.append("(c) %s RSS grew from %d kB to %d kB (margin %d kB)"
                      % (g.name, before, after, RSS_MARGIN_KB))
    # (d) idle again: no loop left spinning for a client that is gone
    busy = spinning(pid)
    if busy:
        errors.append("(d) %s is busy after the hostile connection closed: %s"
                      % (g.name, busy))
    if died():
        pytest.fail("\n".join(errors))
    if errors:
        if busy or any(e.startswith("(b)") for e in errors):
            g.restart()   # stop burning the shared CPU now
        pytest.fail("\n".join(errors))


def expect_closed_or(c, check):
    """After an error answer the daemon may close; if it does not, the
    session must still be in step: check() sends one more command (and
    accepts a close that comes meanwhile)."""
    if not c.buf:
        try:
            d = c._fill(0.05)
        except Hang:
            d = None            # open, nothing pending
        if d == b"":
            return              # closed
        if d:
            c.buf += d
    check()


# ---- SMTP --------------------------------------------------------------------

SMTP_PORTS = {
    "mx": ("mx_guard", ["plain", "starttls"]),
    "587": ("sub_guard", ["plain", "starttls"]),
    "465": ("sub_guard", ["tls"]),
    "intake": ("sub_guard", ["plain", "starttls"]),
}

LONG_NOOP = b"NOOP " + b"x" * 100000 + b"\r\n"


def smtp_auth(c, user, pw):
    tok = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode())
    code, text, lines = c.cmd(b"AUTH PLAIN " + tok + b"\r\n")
    assert code == 235, "AUTH as %s: %r" % (user, lines)


def smtp_txn(port_name, port, mode):
    """A session past RCPT: the MX takes mail for its domain; submission
    wants a login (a user on 587/465, the relay account on the intake)."""
    c = smtp_open(port, mode)
    try:
        if port_name == "mx":
            sender, rcpt = "sender@example.net", "alice@demo.test"
        elif port_name == "intake":
            smtp_auth(c, "relay@mx.internal", "relay-pw")
            sender, rcpt = "someone@remote.example", "bob@demo.test"
        else:
            smtp_auth(c, "alice@demo.test", "alice-pw")
            sender, rcpt = "alice@demo.test", "bob@demo.test"
        code, text, lines = c.cmd("MAIL FROM:<%s>" % sender)
        assert code == 250, "MAIL: %r" % lines
        code, text, lines = c.cmd("RCPT TO:<%s>" % rcpt)
        assert code == 250, "RCPT: %r" % lines
    except BaseException:
        c.close()
        raise
    return c


def smtp_still_serving(c, may_close=False):
    try:
        code, text, lines = c.cmd("NOOP")
    except (BrokenPipeError, ConnectionResetError):
        code, lines = None, []
    if code is None and may_close:
        return
    assert code == 250, "the next command after the error got %r" % lines


def smtp_noop_100k(g, pn, port, mode):
    with smtp_open(port, mode) as c:
        c.send_hostile(LONG_NOOP)
        code, text, lines = c.reply()
        assert code == 500 and text.startswith("5.5.2"), \
            "100 KB NOOP line: want 500 5.5.2, got %r" % lines
        smtp_still_serving(c)


# odd sizes, around the 2048-byte line limit, CR and LF in separate reads
CHUNKS = [1, 2, 2044, 1, 1, 3, 4093, 8191, 333, 65521]


def send_chunks(c, data, sizes, pause=0.02):
    pieces, at = [], 0
    for n in sizes:
        pieces.append(data[at:at + n])
        at += n
    pieces += [data[at:-1], data[-1:]]     # ... CR, then LF alone
    for p in pieces:
        if not c.send_hostile(p):
            return
        time.sleep(pause)


def smtp_noop_100k_chunks(g, pn, port, mode):
    with smtp_open(port, mode) as c:
        send_chunks(c, LONG_NOOP, CHUNKS)
        code, text, lines = c.reply()
        assert code == 500 and text.startswith("5.5.2"), \
            "100 KB NOOP line in chunks: want 500 5.5.2, got %r" % lines
        smtp_still_serving(c)


def smtp_auth_plain_100k(g, pn, port, mode):
    with smtp_open(port, mode) as c:
        code, text, lines = c.cmd("AUTH PLAIN")
        assert code == 334, "AUTH PLAIN: %r" % lines
        c.send_hostile(b"A" * 100000 + b"\r\n")
        code, text, lines = c.reply()
        if code is None:
            return  # closed: acceptable
        assert code in (500, 501) and text.startswith("5.5."), \
            "100 KB AUTH response: want 500/501 5.5.x (over the RFC 4954 " \
            "line limit), got %r" % lines
        expect_closed_or(c, lambda: smtp_still_serving(c, may_close=True))


def smtp_bare_lf(g, pn, port, mode):
    with smtp_open(port, mode) as c:
        c.send(b"NOOP\nRSET\r\n")
        code, text, lines = c.reply()
        assert code == 521, "bare LF in a command: want 521, got %r" % lines
        assert c.eof(), "connection left open after 521"


def smtp_data_dot_cr_boundary(g, pn, port, mode):
    with smtp_txn(pn, port, mode) as c:
        code, text, lines = c.cmd("DATA")
        assert code == 354, "DATA: %r" % lines
        c.send(b"Subject: boundary\r\n\r\nline one\r\n.\r")
        assert c.silent(0.5), \
            "answered after <CRLF>.<CR> alone (DATA ended early): %r" % c.buf
        c.send(b"XNOOP smuggled\r\nmore body\r\n.\r\n")
        code, text, lines = c.reply()
        assert code is not None, "closed instead of answering the DATA end"
        assert code == 550 and "5.5.2" in text, \
            "<CRLF>.<CR>X inside DATA: want 550 5.5.2 (bare <CR>), got %r" % lines
        # exactly one answer for the message: the next reply is NOOP's
        smtp_still_serving(c)


def smtp_data_over_size_limit(g, pn, port, mode):
    line = b"x" * 998 + b"\r\n"
    chunk = line * 64
    with smtp_txn(pn, port, mode) as c:
        code, text, lines = c.cmd("DATA")
        assert code == 354, "DATA: %r" % lines
        c.send(b"Subject: big\r\n\r\n")
        sent = 0
        while sent < BIG_BODY and c.send_hostile(chunk, timeout=10):
            sent += len(chunk)
        if sent >= BIG_BODY:
            c.send_hostile(b".\r\n")
        code, text, lines = c.reply(timeout=10)
        assert code == 552, \
            "%d-byte body over message_size_limit %d: want 552, got %r (after %d bytes)" \
            % (BIG_BODY, SIZE_LIMIT, lines, sent)
        expect_closed_or(c, lambda: smtp_still_serving(c, may_close=True))


def smtp_xforward(value):
    def attack(g, pn, port, mode):
        with smtp_open(port, mode) as c:
            code, text, lines = c.cmd(b"XFORWARD ADDR=" + value + b"\r\n")
            assert code is not None, "closed on XFORWARD"
            assert code == 250 or 500 <= code < 600, "XFORWARD: %r" % lines
            smtp_still_serving(c)
            if mode != "starttls":
                return
            # the relay login keeps the attributes: a message carries them
            smtp_auth(c, "relay@mx.internal", "relay-pw")
            code, text, lines = c.cmd("MAIL FROM:<someone@remote.example>")
            assert code == 250, "MAIL after XFORWARD: %r" % lines
            code, text, lines = c.cmd("RCPT TO:<bob@demo.test>")
            assert code == 250, "RCPT after XFORWARD: %r" % lines
            code, text, lines = c.cmd("DATA")
            assert code == 354, "DATA after XFORWARD: %r" % lines
            c.send(b"Subject: xforward\r\n\r\nbody\r\n.\r\n")
            code, text, lines = c.reply(timeout=10)
            assert code is not None and 200 <= code < 600, \
                "end of DATA after XFORWARD: %r" % lines
    return attack


def smtp_slow_client(g, pn, port, mode):
    """Connects and says nothing (no TLS ClientHello on 465; nothing after
    the STARTTLS go-ahead on starttls) while others are served."""
    s = socket.create_connection(("127.0.0.1", port), timeout=HANG)
    try:
        if mode == "starttls":
            c = Conn(port, sock=s)
            assert c.reply()[0] == 220
            assert c.cmd("EHLO slow.test")[0] == 250
            assert c.cmd("STARTTLS")[0] == 220
        HEALTH_CHECK["smtp"](port, mode)
        time.sleep(1.0)
        HEALTH_CHECK["smtp"](port, mode)
    finally:
        s.close()


def smtp_idle_50(g, pn, port, mode):
    conns = []
    try:
        for _ in range(50):
            conns.append(smtp_open(port, mode, ehlo=False))
        HEALTH_CHECK["smtp"](port, mode)
    finally:
        for c in conns:
            c.close()


SMTP_ATTACKS = {
    "noop_100k": (smtp_noop_100k, None),
    "noop_100k_chunks": (smtp_noop_100k_chunks, None),
    # AUTH only where it is offered: submission and intake, inside TLS
    "auth_plain_100k": (smtp_auth_plain_100k,
                        lambda p, m: p != "mx" and m != "plain"),
    "bare_lf": (smtp_bare_lf, None),
    # a transaction: the MX takes one from anyone, submission after a login
    "data_dot_cr_boundary": (smtp_data_dot_cr_boundary,
                             lambda p, m: p == "mx" or m != "plain"),
    "data_over_size_limit": (smtp_data_over_size_limit,
                             lambda p, m: p == "mx" or m != "plain"),
    # XFORWARD exists on the intake only
    "xforward_ipv6_long": (smtp_xforward(b"IPV6:" + b"0:" * 950 + b"1"),
                           lambda p, m: p == "intake"),
    "xforward_ipv6_empty": (smtp_xforward(b"IPV6:"),
                            lambda p, m: p == "intake"),
    "slow_client": (smtp_slow_client, None),
    "idle_50": (smtp_idle_50, None),
}


def cases(attacks, ports):
    out = []
    for a, (fn, reach) in attacks.items():
        for p, (fixture, modes) in ports.items():
            for m in modes:
                if reach is None or reach(p, m):
                    out.append(pytest.param(a, p, m, id="%s-%s-%s" % (a, p, m)))
    return out


@pytest.mark.parametrize("attack,port,mode", cases(SMTP_ATTACKS, SMTP_PORTS))
def test_smtp(request, attack, port, mode):
    g = request.getfixturevalue(SMTP_PORTS[port][0])
    run_case(g, port, mode, SMTP_ATTACKS[attack][0])


# ---- IMAP --------------------------------------------------------------------

IMAP_PORTS = {
    "143": ("mra_guard", ["plain", "starttls"]),
    "993": ("mra_guard", ["tls"]),
}

LONG_NAME = "L" + "o" * 199       # a 200-character folder name


def imap_login(c, user=ALICE, pw=ALICE_PW):
    r = c.cmd_imap("L", 'LOGIN "%s" "%s"' % (user, pw))
    assert r and r[-1].startswith(b"L OK"), "LOGIN: %r" % r


def tagged_is(r, tag, *kinds):
    return bool(r) and any(r[-1].startswith(("%s %s" % (tag, k)).encode())
                           for k in kinds)


def imap_still_serving(c):
    r = c.cmd_imap("N", "NOOP")
    assert tagged_is(r, "N", "OK"), "the next command after the error got %r" % r


def imap_long_line(g, pn, port, mode):
    with imap_open(port, mode) as c:
        c.send_hostile(b"a NOOP " + b"x" * 100000 + b"\r\n")
        r = c.tagged("a")
        assert r, "closed without an answer to a 100 KB command line"
        assert r[-1].startswith(b"a BAD") or any(
            ln.startswith(b"* BYE") for ln in r), \
            "100 KB command line: want BAD or BYE, got %r" % [ln[:80] for ln in r]
        if r[-1].startswith(b"a BAD"):
            imap_still_serving(c)
        else:
            assert c.eof(), "left open after BYE"


def imap_login_literal(g, pn, port, mode):
    with imap_open(port, mode) as c:
        c.send(b"a LOGIN {100000}\r\n")
        ln = c.line()
        assert ln is not None, "closed without an answer"
        assert not ln.startswith(b"+"), \
            "LOGIN {100000} before login got a continuation: %r" % ln
        assert ln.startswith((b"a NO", b"a BAD", b"* BYE")), \
            "LOGIN {100000}: want NO/BAD, got %r" % ln
        if not ln.startswith(b"* BYE"):
            # the refused literal is not read as data: the next line is
            # a command again
            imap_still_serving(c)


def imap_login_literal_plus(g, pn, port, mode):
    with imap_open(port, mode) as c:
        c.send(b"a LOGIN {100000+}\r\n")
        got = []
        if not c.silent(0.5):
            ln = c.line()
            if ln is not None:
                got.append(ln)
        c.send_hostile(b"x" * 100000 + b" pw\r\n")
        while True:
            try:
                ln = c.line()
            except Hang:
                raise Hang("LOGIN {100000+}: not closed; answers %r" % got)
            if ln is None:
                break
            got.append(ln)
        assert any(ln.startswith(b"a BAD") for ln in got), \
            "LOGIN {100000+}: want a tagged BAD before the close, got %r" % got


def imap_list(pattern, must_list):
    def attack(g, pn, port, mode):
        with imap_open(port, mode) as c:
            imap_login(c)
            r = c.cmd_imap("C", 'CREATE "%s"' % LONG_NAME)
            assert r and r[-1].startswith(b"C "), "CREATE: %r" % r
            if not tagged_is(r, "C", "OK") and b"ALREADYEXISTS" not in r[-1]:
                # the daemon will not create it: put it on disk the way
                # a Maildir++ folder is
                g.env.deliver(ALICE, b"Subject: f\r\n\r\nx\r\n", folder=LONG_NAME)
            c.send(b'T LIST "" "' + pattern + b'"\r\n')
            try:
                HEALTH_CHECK["imap"](port, mode)
            except (AssertionError, OSError, ssl.SSLError) as e:
                raise AssertionError("a second client was not served within "
                                     "1 s while LIST ran: %s" % e)
            r = c.tagged("T", timeout=5)
            assert r and r[-1].startswith(b"T "), "no answer to LIST: %r" % r
            assert tagged_is(r, "T", "OK", "NO", "BAD"), r
            if must_list and tagged_is(r, "T", "OK"):
                assert any(LONG_NAME.encode() in ln for ln in r), \
                    "LIST %s does not show the 200-character folder: %r" \
                    % (pattern, r)
            imap_still_serving(c)
    return attack


def imap_select_mutf7_nul(g, pn, port, mode):
    with imap_open(port, mode) as c:
        imap_login(c)
        r = c.cmd_imap("S", 'SELECT "&AAA-"')
        assert tagged_is(r, "S", "NO", "BAD"), \
            "SELECT of a name that decodes to NUL: want NO/BAD, got %r" % r
        imap_still_serving(c)


def imap_select_literal_nul(g, pn, port, mode):
    with imap_open(port, mode) as c:
        imap_login(c)
        c.send(b"S SELECT {6}\r\n")
        ln = c.line()
        assert ln is not None, "closed on SELECT {6}"
        if ln.startswith(b"+"):
            c.send(b"IN\x00BOX\r\n")
            r = c.tagged("S")
        else:
            r = [ln]
        assert tagged_is(r, "S", "NO", "BAD"), \
            "SELECT with a NUL in a literal: want NO/BAD, got %r" % r
        imap_still_serving(c)


def big_subject(n=100000):
    unit = b'word "quoted" (paren) back\\slash {brace} '
    return (unit * (n // len(unit) + 1))[:n].rstrip()


class Lit(bytes):
    pass


def imap_tree(data):
    """imaplib's FETCH data -> nested lists of atoms, strings, literals.
    Fails on unbalanced parentheses or a literal of the wrong length."""
    segs = []
    for item in data:
        if isinstance(item, tuple):
            head, lit = item
            m = re.search(rb"\{(\d+)\}$", head)
            assert m, "literal without {n}: %r" % head[-80:]
            assert int(m.group(1)) == len(lit), \
                "literal announced %s bytes, has %d" % (m.group(1), len(lit))
            segs.append(head[:m.start()])
            segs.append(Lit(lit))
        elif item is not None:
            segs.append(item)
    stack = [[]]
    for seg in segs:
        if isinstance(seg, Lit):
            stack[-1].append(seg)
            continue
        i = 0
        while i < len(seg):
            ch = seg[i:i + 1]
            if ch in b" \r\n":
                i += 1
            elif ch == b"(":
                stack.append([])
                i += 1
            elif ch == b")":
                assert len(stack) > 1, "')' without '(' in %r" % seg[max(0, i - 60):i + 20]
                done = stack.pop()
                stack[-1].append(done)
                i += 1
            elif ch == b'"':
                j, out = i + 1, bytearray()
                while True:
                    assert j < len(seg), "unterminated quoted string"
                    c = seg[j:j + 1]
                    if c == b"\\":
                        out += seg[j + 1:j + 2]
                        j += 2
                    elif c == b'"':
                        break
                    else:
                        out += c
                        j += 1
                stack[-1].append(bytes(out))
                i = j + 1
            else:
                m = re.compile(rb'[^ ()"\r\n]+').match(seg, i)
                stack[-1].append(m.group(0))
                i = m.end()
    assert len(stack) == 1, "%d unclosed '('" % (len(stack) - 1)
    return stack[0]


def imaplib_open(port, mode):
    if mode == "tls":
        return imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_ctx(),
                                 timeout=HANG)
    m = imaplib.IMAP4("127.0.0.1", port, timeout=HANG)
    m.starttls(client_ctx())
    return m


def imap_fetch_big_subject(g, pn, port, mode):
    subject = big_subject()
    g.env.deliver(ALICE, b"From: Sender <sender@example.net>\r\n"
                  b"To: alice@example.test\r\nSubject: " + subject +
                  b"\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
                  b"Message-ID: <big-subject@example.net>\r\n\r\nbody\r\n")
    m = imaplib_open(port, mode)
    try:
        m.login(ALICE, ALICE_PW)
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        typ, data = m.fetch("*", "(ENVELOPE)")
        assert typ == "OK", "FETCH ENVELOPE: %s %r" % (typ, data)
        try:
            tree = imap_tree(data)
        except AssertionError as e:
            raw = b"".join(x if isinstance(x, bytes) else x[0] + b"<literal>"
                           for x in data if x is not None)
            raise AssertionError("FETCH ENVELOPE answer does not parse (%s): "
                                 "%r" % (e, raw[:300]))
        att = tree[1] if len(tree) > 1 and isinstance(tree[1], list) else None
        assert att and att[0].upper() == b"ENVELOPE", "no ENVELOPE in %r" % tree[:2]
        env = att[1]
        assert isinstance(env, list) and len(env) == 10, \
            "ENVELOPE has %s fields" % (len(env) if isinstance(env, list) else env)
        subj = env[1]
        assert isinstance(subj, bytes) and subj and subject.startswith(subj), \
            "ENVELOPE subject is not the header's value (%r...)" % subj[:80]
        assert m.noop()[0] == "OK"
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def imap_copy_overquota(g, pn, port, mode):
    inbox = g.env.maildir(QUSER)
    if not any(os.listdir(os.path.join(inbox, d))
               for d in ("new", "cur") if os.path.isdir(os.path.join(inbox, d))):
        g.env.deliver(QUSER, b"Subject: q\r\n\r\n" + (b"y" * 76 + b"\r\n") * 128)
    m = imaplib_open(port, mode)
    try:
        m.login(QUSER, QUSER_PW)
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        m.create("Copies")
        for _ in range(30):
            typ, data = m.copy("1:*", "Copies")
            if typ == "NO":
                assert b"[OVERQUOTA]" in data[0], "COPY refused: %r" % data
                break
            assert typ == "OK", "COPY: %s %r" % (typ, data)
        else:
            raise AssertionError("30 COPYs of a 10 KB message with a quota of "
                                 "%d bytes and never NO [OVERQUOTA]" % QUOTA)
        assert m.noop()[0] == "OK"
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def after_login(p, m):
    return m != "plain"    # disable_plaintext_auth = yes


IMAP_ATTACKS = {
    "long_line": (imap_long_line, None),
    "login_literal_100k": (imap_login_literal, None),
    "login_literal_plus_100k": (imap_login_literal_plus, None),
    "list_wildcards_200": (imap_list(b"*%*%*%*%*%*%*%*%", True), after_login),
    "list_wildcards_200_nomatch": (imap_list(b"*%*%*%*%*%*%*%*%Z", False),
                                   after_login),
    "select_mutf7_nul": (imap_select_mutf7_nul, after_login),
    "select_literal_nul": (imap_select_literal_nul, after_login),
    "fetch_subject_100k": (imap_fetch_big_subject, after_login),
    "copy_overquota": (imap_copy_overquota, after_login),
}


@pytest.mark.parametrize("attack,port,mode", cases(IMAP_ATTACKS, IMAP_PORTS))
def test_imap(request, attack, port, mode):
    g = request.getfixturevalue(IMAP_PORTS[port][0])
    run_case(g, port, mode, IMAP_ATTACKS[attack][0])


# ---- POP3 --------------------------------------------------------------------

POP3_PORTS = {
    "110": ("mra_guard", ["plain", "starttls"]),
    "995": ("mra_guard", ["tls"]),
}


def pop3_still_serving(c):
    """CAPA answers, or the daemon has closed meanwhile."""
    try:
        c.send(b"CAPA\r\n")
    except (BrokenPipeError, ConnectionResetError):
        return
    first, body = pop3_multiline(c)
    assert first is None or body is not None, \
        "the next command after the error got %r" % first


def pop3_err_or_closed(c, what):
    ln = c.line()
    if ln is None:
        return False
    assert ln.startswith(b"-ERR"), "%s: want -ERR, got %r" % (what, ln[:120])
    return True


def pop3_line_8193_lf(g, pn, port, mode):
    line = b"NOOP " + b"x" * (8193 - 6) + b"\n"
    assert len(line) == 8193
    with pop3_open(port, mode) as c:
        c.send_hostile(line)
        pop3_err_or_closed(c, "8193-byte line ending in a bare LF")


def pop3_line_100k(g, pn, port, mode):
    with pop3_open(port, mode) as c:
        c.send_hostile(b"NOOP " + b"x" * (100000 - 7) + b"\r\n")
        if pop3_err_or_closed(c, "100000-byte line"):
            expect_closed_or(c, lambda: pop3_still_serving(c))


def pop3_auth_100k(g, pn, port, mode):
    with pop3_open(port, mode) as c:
        c.send(b"AUTH PLAIN\r\n")
        ln = c.line()
        assert ln is not None and ln.startswith(b"+"), "AUTH PLAIN: %r" % ln
        c.send_hostile(b"A" * 100000 + b"\r\n")
        if pop3_err_or_closed(c, "100000-character AUTH response"):
            expect_closed_or(c, lambda: pop3_still_serving(c))


POP3_ATTACKS = {
    "line_8193_bare_lf": (pop3_line_8193_lf, None),
    "line_100k": (pop3_line_100k, None),
    "auth_100k": (pop3_auth_100k, after_login),
}


@pytest.mark.parametrize("attack,port,mode", cases(POP3_ATTACKS, POP3_PORTS))
def test_pop3(request, attack, port, mode):
    g = request.getfixturevalue(POP3_PORTS[port][0])
    run_case(g, port, mode, POP3_ATTACKS[attack][0])
