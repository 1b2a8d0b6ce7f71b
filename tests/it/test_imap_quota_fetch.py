"""Issue #9: COPY/MOVE charge the mailbox quota (RFC 9208 §4.3 OVERQUOTA,
Maildir++ maildirsize kept in step), and FETCH stays well-formed for
hostile messages (huge header fields, many addresses, deep and wide
multiparts, NUL and 8-bit bytes, LF-only lines): every response must
parse, parentheses balanced outside quoted strings and literals, literal
lengths right, and the session must go on."""
import imaplib
import os
import re
import socket
import ssl
import threading

import pytest

from mra_env import MraEnv

ALICE = "alice@example.test"


def tls_ctx(env):
    ctx = ssl.create_default_context(cafile=env.tls_cert.cert)
    ctx.check_hostname = False
    return ctx


def imaps(env, user=ALICE, pw="secret"):
    m = imaplib.IMAP4_SSL("127.0.0.1", env.imaps_port, ssl_context=tls_ctx(env))
    m.login(user, pw)
    return m


def message(subject, size=1000):
    body = ("x" * 76 + "\r\n") * (size // 78 + 1)
    return ("From: a@example.net\r\nTo: alice@example.test\r\n"
            "Subject: %s\r\n\r\n%s" % (subject, body)).encode()


def maildirsize(env, user=ALICE):
    """(limit, bytes, files) summed from Maildir++ maildirsize, or None."""
    p = os.path.join(env.maildir(user), "maildirsize")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        lines = f.read().splitlines()
    limit = int(re.match(r"(\d+)S", lines[0]).group(1)) if lines[0] else 0
    b = f = 0
    for ln in lines[1:]:
        x, y = ln.split()
        b += int(x)
        f += int(y)
    return limit, b, f


def disk_usage(env, user=ALICE):
    """What is really in the Maildir (new/ and cur/ of every folder)."""
    root = env.maildir(user)
    total = files = 0
    for d in [root] + [os.path.join(root, n) for n in os.listdir(root)
                       if n.startswith(".") and n not in (".", "..")]:
        for sub in ("new", "cur"):
            p = os.path.join(d, sub)
            if os.path.isdir(p):
                for n in os.listdir(p):
                    total += os.path.getsize(os.path.join(p, n))
                    files += 1
    return total, files


def count(m, folder):
    typ, data = m.status(folder, "(MESSAGES)")
    assert typ == "OK", data
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


@pytest.fixture
def quota_env(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port, quota={ALICE: 20000}).start()
    yield env
    env.cleanup()


# ---- COPY / MOVE and the quota -----------------------------------------

def test_copy_over_quota_refused_whole(quota_env):
    env = quota_env
    for i in range(4):
        env.deliver(ALICE, message("q%d" % i))   # 4 x ~1.1 KB
    m = imaps(env)
    m.create("Archive")
    m.select("INBOX")
    refused = 0
    last = None
    for _ in range(8):
        before = count(m, "Archive")
        typ, data = m.copy("1:*", "Archive")
        if typ == "NO":
            assert b"[OVERQUOTA]" in data[0], data
            refused += 1
            # RFC 3501 §6.4.7: a failed COPY copies nothing
            assert count(m, "Archive") == before
            q = maildirsize(env)
            if last is not None:
                assert q[1] == last[1], (q, last)
            last = q
        else:
            assert typ == "OK", data
    assert refused >= 2
    used, files = disk_usage(env)
    assert used <= 20000
    q = maildirsize(env)
    assert q is not None and q[0] == 20000
    assert (q[1], q[2]) == (used, files)
    # the quota stops APPEND too, and GETQUOTA tells the truth
    typ, data = m.getquota('""')
    assert typ == "OK"
    st = re.search(rb"STORAGE (\d+) (\d+)", data[0])
    assert int(st.group(1)) == (used + 1023) // 1024
    m.logout()


def test_move_within_mailbox_at_quota_keeps_usage(quota_env):
    env = quota_env
    for i in range(16):
        env.deliver(ALICE, message("m%d" % i))   # ~18 KB of 20 KB
    m = imaps(env)
    m.create("Keep")
    m.select("INBOX")
    typ, data = m.copy("1:*", "Keep")
    assert typ == "NO" and b"[OVERQUOTA]" in data[0], data
    before = disk_usage(env)
    typ, data = m._simple_command("MOVE", "1:*", "Keep")
    assert typ == "OK", data
    assert count(m, "Keep") == 16
    assert count(m, "INBOX") == 0
    after = disk_usage(env)
    assert after == before
    q = maildirsize(env)
    assert q is None or (q[1], q[2]) == after
    m.logout()


def test_concurrent_copies_do_not_overshoot(quota_env):
    env = quota_env
    for i in range(2):
        env.deliver(ALICE, message("c%d" % i))   # 2 x ~1.1 KB
    size = len(message("c0"))
    errors = []

    def worker():
        try:
            m = imaps(env)
            m.select("INBOX")
            for _ in range(12):
                typ, data = m.copy("1:2", "Trash")
                assert typ == "OK" or b"[OVERQUOTA]" in data[0], data
            m.logout()
        except Exception as e:   # noqa: BLE001 -- reported below
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    used, files = disk_usage(env)
    assert used <= 20000 + size
    q = maildirsize(env)
    assert q is not None and (q[1], q[2]) == (used, files)


# ---- FETCH of hostile messages ------------------------------------------

class Conn:
    """IMAP over TLS that reads whole responses (lines and literals) and
    checks their syntax strictly, which imaplib does not."""

    def __init__(self, env):
        s = socket.create_connection(("127.0.0.1", env.imaps_port), 10)
        self.s = tls_ctx(env).wrap_socket(s)
        self.buf = b""
        self.response()

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError(self.buf[:200])
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln + b"\r\n"

    def _bytes(self, n):
        while len(self.buf) < n:
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError("literal cut short")
            self.buf += d
        b, self.buf = self.buf[:n], self.buf[n:]
        return b

    def response(self):
        """One response: a line, plus literals and their continuations."""
        out = b""
        while True:
            ln = self._line()
            out += ln
            lit = re.search(rb"\{(\d+)\}\r\n$", ln)
            if not lit:
                return out
            out += self._bytes(int(lit.group(1)))

    def cmd(self, tag, text, timeout=30):
        self.s.settimeout(timeout)
        self.s.sendall(("%s %s\r\n" % (tag, text)).encode())
        out = []
        while True:
            r = self.response()
            out.append(r)
            if r.startswith(tag.encode() + b" "):
                return out

    def close(self):
        self.s.close()


def parse_response(resp):
    """Parse one response strictly into nested lists of bytes (atoms,
    quoted strings and literals alike): parentheses must balance outside
    quoted strings and literals, quoted strings hold no CR, LF, NUL or
    8-bit byte, literals no NUL and exactly their length, and CRLF comes
    only at the end and after a literal's {n}."""
    pos = [0]
    n = len(resp)

    def ctx():
        i = pos[0]
        return resp[max(0, i - 80):i + 40]

    def value():
        i = pos[0]
        c = resp[i:i + 1]
        if c == b'"':
            i += 1
            s = b""
            while resp[i:i + 1] != b'"':
                assert i < n, "unterminated quoted string"
                ch = resp[i]
                assert ch not in (0, 10, 13) and ch < 0x80, ctx()
                if ch == 0x5c:
                    i += 1
                s += resp[i:i + 1]
                i += 1
            pos[0] = i + 1
            return s
        if c == b"{":
            m = re.compile(rb"\{(\d+)\}\r\n").match(resp, i)
            assert m, ctx()
            ln = int(m.group(1))
            s = resp[m.end():m.end() + ln]
            assert len(s) == ln, "literal runs past the response"
            assert b"\0" not in s
            pos[0] = m.end() + ln
            return s
        if c == b"(":
            pos[0] = i + 1
            out = []
            while resp[pos[0]:pos[0] + 1] != b")":
                assert pos[0] < n, "unbalanced: list not closed"
                if out:
                    assert resp[pos[0]:pos[0] + 1] == b" " or \
                        resp[pos[0] - 1:pos[0]] == b")", ctx()
                    if resp[pos[0]:pos[0] + 1] == b" ":
                        pos[0] += 1
                out.append(value())
            pos[0] += 1
            return out
        m = re.compile(rb"[^ ()\r\n\0{\"\[\]]+(\[[^\]\r\n]*\](<\d+>)?)?").match(resp, i)
        assert m and m.end() > i, ctx()
        pos[0] = m.end()
        return m.group(0)

    words = []
    while pos[0] < n:
        if resp[pos[0]:] == b"\r\n":
            break
        if words:
            assert resp[pos[0]:pos[0] + 1] == b" ", ctx()
            pos[0] += 1
        if not isinstance(words[-1] if words else None, list) and len(words) >= 2 \
                and words[0] != b"*":
            return words   # tagged reply: free text follows
        if len(words) >= 3 and words[0] == b"*" and words[2] != b"FETCH":
            return words
        words.append(value())
    assert resp[pos[0]:] == b"\r\n", ctx()
    return words


def check_fetch(resp):
    """A FETCH response: * n FETCH (name value ...), each value the shape
    RFC 3501 §7.4.2 gives it."""
    w = parse_response(resp)
    if len(w) < 3 or w[0] != b"*" or w[2] != b"FETCH":
        return
    assert len(w) == 4 and isinstance(w[3], list), w[:3]
    att = w[3]
    assert len(att) % 2 == 0, [a if not isinstance(a, bytes) else a[:40] for a in att]
    for name, val in zip(att[0::2], att[1::2]):
        assert isinstance(name, bytes)
        if name == b"ENVELOPE":
            assert isinstance(val, list) and len(val) == 10, val
        elif name in (b"BODY", b"BODYSTRUCTURE", b"FLAGS"):
            assert isinstance(val, list), (name, val)
        elif name in (b"UID", b"RFC822.SIZE"):
            assert val.isdigit()
        else:
            assert isinstance(val, bytes)


def check_syntax(resp):
    parse_response(resp)
    check_fetch(resp)


def nested_multipart(depth):
    m = b"Subject: deep\r\n"
    for d in range(depth):
        m += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (d, d)
    m += b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for d in reversed(range(depth)):
        m += b"--b%d--\r\n" % d
    return m


def wide_multipart(parts):
    m = b"Subject: wide\r\nContent-Type: multipart/mixed; boundary=w\r\n\r\n"
    for i in range(parts):
        m += (b"--w\r\nContent-Type: text/plain; name=\"p%d\"\r\n"
              b"Content-Description: " + b"d" * 200 + b"\r\n\r\nbody %d\r\n") % (i, i)
    return m + b"--w--\r\n"


HOSTILE = {
    "subject": b"From: a@example.net\r\nSubject: " + b"S" * 100000 + b"\r\n\r\nbody\r\n",
    "subject_quotes": (b"From: a@example.net\r\nSubject: " + b'"\\' * 40000 +
                       b"\r\n\r\nbody\r\n"),
    "subject_folded": (b"From: a@example.net\r\nSubject: " +
                       b"\r\n ".join([b"w" * 70] * 1500) + b"\r\n\r\nbody\r\n"),
    "from": (b"From: " + b",\r\n ".join(b'"Name %d" <user%d@example.net>' % (i, i)
                                        for i in range(4000)) +
             b"\r\nSubject: many\r\n\r\nbody\r\n"),
    "from_one": (b"From: \"" + b"N" * 100000 + b"\" <" + b"l" * 100000 + b"@" +
                 b"d" * 100000 + b">\r\nSubject: one\r\n\r\nbody\r\n"),
    "msgid": (b"From: a@example.net\r\nMessage-ID: <" + b"x" * 100000 +
              b"@example.net>\r\nIn-Reply-To: <" + b"y" * 100000 +
              b"@example.net>\r\n\r\nbody\r\n"),
    "ctype": (b"From: a@example.net\r\nContent-Type: text/plain; charset=" + b"c" * 100000 +
              b"; name=\"" + b"n" * 100000 + b"\"\r\nContent-Transfer-Encoding: " +
              b"e" * 70000 + b"\r\nContent-ID: <" + b"i" * 70000 + b">\r\n"
              b"Content-Disposition: attachment; filename=\"" + b"f" * 70000 + b"\"\r\n"
              b"Content-Language: " + b"l" * 70000 + b"\r\n\r\nbody\r\n"),
    "deep": nested_multipart(60),
    "wide": wide_multipart(1500),
    "binary": (b"From: \xff\xfe <a@example.net>\r\nSubject: nul\0here \x80\x81\r\n"
               b"Message-ID: <\0@x>\r\n\r\nbo\0dy\r\n"),
    "lf_only": b"From: a@example.net\nSubject: lf\nX: " + b"y" * 70000 + b"\n\nbody\n",
    "no_eol": b"Subject: " + b"z" * 70000,
    "many_fields": b"".join(b"X-F%d: v\r\n" % i for i in range(20000)) + b"Subject: mf\r\n\r\nb\r\n",
}


@pytest.fixture
def hostile(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port).start()
    for name in sorted(HOSTILE):
        env.deliver(ALICE, HOSTILE[name])
    yield env
    env.cleanup()


@pytest.mark.parametrize("items", [
    "ENVELOPE", "BODYSTRUCTURE", "BODY", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
    "FLAGS", "(FLAGS UID ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE)",
    "BODY.PEEK[HEADER]", "BODY.PEEK[1.MIME]", "RFC822.HEADER",
])
def test_fetch_hostile_messages_well_formed(hostile, items):
    c = Conn(hostile)
    r = c.cmd("a", 'LOGIN "%s" "secret"' % ALICE)
    assert r[-1].startswith(b"a OK"), r
    r = c.cmd("s", "SELECT INBOX")
    assert r[-1].startswith(b"s OK"), r
    n = len(HOSTILE)
    r = c.cmd("f", "FETCH 1:* %s" % items)
    fetches = [x for x in r if re.match(rb"\* \d+ FETCH ", x)]
    assert r[-1].startswith(b"f OK"), r[-1][:300]
    assert len(fetches) == n, [x[:80] for x in r]
    for x in r:
        check_syntax(x)
    r = c.cmd("n", "NOOP")
    assert r[-1].startswith(b"n OK")
    c.close()
    # and a stock client copes with the same responses
    m = imaps(hostile)
    m.select("INBOX")
    typ, data = m.fetch("1:*", items)
    assert typ == "OK"
    assert m.noop()[0] == "OK"
    m.logout()


def test_fetch_repeated_bodies_bounded(hostile):
    """64 copies of BODY[] of every message either fit or fail the FETCH
    with NO; never a cut-off response."""
    c = Conn(hostile)
    assert c.cmd("a", 'LOGIN "%s" "secret"' % ALICE)[-1].startswith(b"a OK")
    assert c.cmd("s", "SELECT INBOX")[-1].startswith(b"s OK")
    r = c.cmd("f", "FETCH 1:* (" + " ".join(["BODY.PEEK[]"] * 60) + ")", timeout=120)
    assert r[-1].startswith(b"f OK") or r[-1].startswith(b"f NO"), r[-1][:200]
    for x in r:
        check_syntax(x)
    assert c.cmd("n", "NOOP")[-1].startswith(b"n OK")
    c.close()


def test_search_long_needle_is_linear(build, tmp_path, tls_cert, free_port):
    """SEARCH's substring test was hay x needle: a 2 MB message and a
    20 KB search string held a worker for a minute."""
    env = MraEnv(build, tmp_path, tls_cert, free_port).start()
    try:
        env.deliver(ALICE, b"Subject: big\r\n\r\n" + (b"a" * 998 + b"\r\n") * 2000)
        m = imaps(env)
        m.select("INBOX")
        m.sock.settimeout(15)
        needle = b"a" * 20000 + b"b"
        m.literal = needle
        typ, data = m.search(None, "BODY")
        assert typ == "OK" and data == [b""]
        m.literal = b"a" * 900
        typ, data = m.search(None, "TEXT")
        assert typ == "OK" and data == [b"1"]
        m.logout()
    finally:
        env.cleanup()
