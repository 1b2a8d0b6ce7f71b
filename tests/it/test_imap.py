"""IMAP integration tests for the mra: imaplib over STARTTLS and IMAPS,
raw protocol where imaplib cannot say it, and mbsync as a real client.
Every test starts its own daemon (tests/it/mra_env.py)."""
import base64
import imaplib
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from mra_env import MraEnv

imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
imaplib.Commands.setdefault("MOVE", ("SELECTED",))
imaplib.Commands.setdefault("UNSELECT", ("SELECTED",))

ALICE = "alice@example.test"
BOB = "bob@example.test"


@pytest.fixture
def mra(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port).start()
    yield env
    env.cleanup()


def tls_ctx(env):
    ctx = ssl.create_default_context(cafile=env.tls_cert.cert)
    ctx.check_hostname = False
    return ctx


def imaps(env, user=ALICE, pw="secret"):
    m = imaplib.IMAP4_SSL("127.0.0.1", env.imaps_port, ssl_context=tls_ctx(env))
    if user:
        m.login(user, pw)
    return m


def starttls(env, user=ALICE, pw="secret"):
    m = imaplib.IMAP4("127.0.0.1", env.imap_port)
    m.starttls(tls_ctx(env))
    if user:
        m.login(user, pw)
    return m


class Raw:
    """Line-level IMAP over implicit TLS, for what imaplib cannot send."""

    def __init__(self, env, tls=True):
        s = socket.create_connection(("127.0.0.1", env.imaps_port if tls else env.imap_port), 5)
        self.s = tls_ctx(env).wrap_socket(s) if tls else s
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self, timeout=5):
        self.s.settimeout(timeout)
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def cmd(self, tag, text, timeout=5):
        """Send one command line, collect lines up to the tagged reply."""
        self.send("%s %s\r\n" % (tag, text))
        return self.until(tag, timeout)

    def until(self, tag, timeout=5):
        out = []
        while True:
            ln = self.line(timeout)
            out.append(ln)
            if ln.startswith(tag.encode() + b" "):
                return out

    def login(self, user=ALICE, pw="secret"):
        r = self.cmd("L", 'LOGIN "%s" "%s"' % (user, pw))
        assert r[-1].startswith(b"L OK"), r
        return self

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def assert_served(env):
    """After a hostile client: a new one is still served, both ways."""
    for tls in (True, False):
        r = Raw(env, tls=tls)
        assert r.greeting.startswith(b"* OK")
        assert r.cmd("z", "NOOP")[-1].startswith(b"z OK")
        r.close()


def rss_kb(env):
    with open("/proc/%d/status" % env.proc.pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise AssertionError("no VmRSS")


def lean_env(build, tmp_path, tls_cert, free_port, **params):
    """A daemon whose RSS means something: under ASan, freed memory sits in
    the allocator's quarantine (256 MB by default); keep that small."""
    old = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = ((old + ":") if old else "") + \
        "quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
    try:
        return MraEnv(build, tmp_path, tls_cert, free_port, **params).start()
    finally:
        if old is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = old


def lit_cmd(r, tag, head, data, tail=b""):
    """tag head {n} ... data tail: waits for the "+" of the literal."""
    r.send(b"%s %s {%d}\r\n" % (tag.encode(), head, len(data)))
    ln = r.line()
    if not ln.startswith(b"+"):
        return [ln]
    r.send(data + tail + b"\r\n")
    return r.until(tag)


def msg(subject, body="hello\r\n", frm="Sender <sender@example.net>",
        to="alice@example.test", extra=""):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
            "Message-ID: <%s@example.net>\r\n%s\r\n%s" % (frm, to, subject, subject.replace(" ", "."),
                                                       extra, body)).encode()


# ---- authentication -----------------------------------------------------

def test_logindisabled_before_tls(mra):
    m = imaplib.IMAP4("127.0.0.1", mra.imap_port)
    assert "LOGINDISABLED" in m.capabilities
    assert "STARTTLS" in m.capabilities
    assert not any(c.startswith("AUTH=") for c in m.capabilities)
    typ, data = m._simple_command("LOGIN", ALICE, "secret")
    assert typ == "NO" and b"PRIVACYREQUIRED" in data[0]
    m.starttls(tls_ctx(mra))
    assert "LOGINDISABLED" not in m.capabilities
    assert "AUTH=PLAIN" in m.capabilities
    assert m.login(ALICE, "secret")[0] == "OK"
    m.logout()


def test_starttls_discards_pipelined_plaintext(mra):
    s = socket.create_connection(("127.0.0.1", mra.imap_port), 5)
    s.recv(1024)
    s.sendall(b"a STARTTLS\r\nb LOGIN alice@example.test secret\r\n")
    time.sleep(0.3)
    data = b""
    while b"a OK" not in data:
        data += s.recv(1024)
    assert b"b " not in data
    t = tls_ctx(mra).wrap_socket(s)
    t.sendall(b"c CAPABILITY\r\n")
    got = b""
    while b"c OK" not in got:
        got += t.recv(4096)
    assert b"LOGINDISABLED" not in got and b"b OK" not in got
    t.close()


def test_login_good_and_bad_imaps(mra):
    m = imaps(mra, user=None)
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login(ALICE, "wrong")
    assert "AUTHENTICATIONFAILED" in str(e.value)
    assert m.login(ALICE, "secret")[0] == "OK"
    m.logout()
    log = mra.read_log()
    # shared/loginfail's line (fail2ban's dovecot filter reads it)
    assert ("imap-login: passdb(alice@example.test,127.0.0.1): "
            "Invalid credentials, method=LOGIN") in log
    assert "wrong" not in log


def test_unknown_user_refused(mra):
    m = imaps(mra, user=None)
    with pytest.raises(imaplib.IMAP4.error):
        m.login("nobody@example.test", "secret")


def test_authenticate_plain_and_sasl_ir(mra):
    m = imaps(mra, user=None)
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0alice@example.test\0secret")
    assert typ == "OK"
    m.logout()
    r = Raw(mra)
    ir = base64.b64encode(b"\0bob@example.test\0hunter2").decode()
    out = r.cmd("a", "AUTHENTICATE PLAIN " + ir)
    assert out[-1].startswith(b"a OK"), out
    r.close()
    r = Raw(mra)
    r.send("b AUTHENTICATE LOGIN\r\n")
    assert r.line().startswith(b"+ ")
    r.send(base64.b64encode(ALICE.encode()) + b"\r\n")
    assert r.line().startswith(b"+ ")
    r.send(base64.b64encode(b"secret") + b"\r\n")
    assert r.until("b")[-1].startswith(b"b OK")
    r.close()
    r = Raw(mra)
    r.send("c AUTHENTICATE PLAIN\r\n")
    assert r.line().startswith(b"+")
    r.send("*\r\n")
    assert r.until("c")[-1].startswith(b"c BAD")
    r.close()


def test_plaintext_login_allowed_when_configured(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port, disable_plaintext_auth="no").start()
    try:
        m = imaplib.IMAP4("127.0.0.1", env.imap_port)
        assert "LOGINDISABLED" not in m.capabilities
        assert m.login(ALICE, "secret")[0] == "OK"
        m.logout()
    finally:
        env.cleanup()


def test_failed_logins_delay_and_disconnect(mra):
    r = Raw(mra)
    t0 = time.time()
    for i in range(3):
        out = r.cmd("f%d" % i, 'LOGIN "%s" "bad%d"' % (ALICE, i), timeout=20)
        assert out[-1].startswith(b"f%d NO" % i)
    # shared/loginfail waits before each check: 0 s, 1 s, 2 s (it grows
    # with the failures of the (address, user) pair)
    assert time.time() - t0 >= 2.9
    assert r.line().startswith(b"* BYE")
    with pytest.raises((EOFError, OSError)):
        r.cmd("x", "NOOP")


# ---- mailbox basics -----------------------------------------------------

def test_special_use_folders_and_namespace(mra):
    m = starttls(mra)
    typ, data = m.list()
    names = {re.search(rb'"\." "?([^"]*)"?$', d).group(1): d for d in data}
    for n, attr in ((b"Sent", b"\\Sent"), (b"Drafts", b"\\Drafts"),
                    (b"Trash", b"\\Trash"), (b"Junk", b"\\Junk")):
        assert attr in names[n]
    assert b"INBOX" in names
    # RFC 6154 §3: the SPECIAL-USE selection option lists only those
    typ, data = m._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    assert typ == "OK"
    got = sorted(re.search(rb'"\." "?([^"]*)"?$', d).group(1)
                 for d in m.untagged_responses.pop("LIST"))
    assert got == [b"Drafts", b"Junk", b"Sent", b"Trash"]
    typ, data = m._simple_command("NAMESPACE")
    assert typ == "OK"
    assert m.untagged_responses["NAMESPACE"][0] == b'(("" ".")) NIL NIL'
    typ, data = m._simple_command("ID", "NIL")
    assert typ == "OK"
    m.logout()


def test_create_rename_delete_subscribe_utf7(mra):
    m = imaps(mra)
    assert m.create("Projects")[0] == "OK"
    # RFC 3501 §6.3.3: a trailing separator declares a future parent
    assert m.create("Later.")[0] == "OK"
    typ, data = m.list('""', "Later")
    assert typ == "OK" and data[0] is not None and b'"Later"' in data[0]
    assert m.create("Projects.2024")[0] == "OK"
    assert m.create("Entw&APw-rfe")[0] == "OK"
    typ, data = m.list('""', "*")
    text = b"\n".join(data)
    assert b'"Entw&APw-rfe"' in text
    assert re.search(rb'\(\\HasChildren\) "\." "Projects"', text)
    typ, data = m.list('""', "Projects.%")
    assert len(data) == 1 and b"Projects.2024" in data[0]
    assert m.rename("Projects.2024", "Projects.2025")[0] == "OK"
    assert m.subscribe("Projects.2025")[0] == "OK"
    typ, data = m.lsub('""', "*")
    assert any(b"Projects.2025" in d for d in data)
    assert m.delete("Projects.2025")[0] == "OK"
    typ, data = m.list('""', "Projects.*")
    assert data == [None]
    # INBOX with a child is listed once, selectable, with children
    assert m.create("INBOX.sub")[0] == "OK"
    typ, data = m.list('""', "*")
    inbox = [d for d in data if d.endswith(b'"INBOX"')]
    assert inbox == [b'(\\HasChildren) "." "INBOX"'], data
    # stored the Maildir++ way, UTF-8 on disk
    assert os.path.isdir(os.path.join(mra.maildir(ALICE), ".Projects"))
    m.logout()


@pytest.mark.parametrize("name", ["../evil", "..", "a/b", "/etc", "x..y", ".hidden",
                                  "~root", "INBOX/../../x", "a\\b"])
def test_folder_traversal_refused(mra, name):
    m = imaps(mra)
    typ, data = m._simple_command("CREATE", '"%s"' % name.replace("\\", "\\\\"))
    assert typ == "NO", (name, data)
    typ, data = m._simple_command("SELECT", '"%s"' % name.replace("\\", "\\\\"))
    assert typ == "NO"
    m.logout()
    base = os.path.dirname(os.path.dirname(mra.maildir(ALICE)))
    assert sorted(os.listdir(base)) == ["example.test"]
    assert not os.path.exists(os.path.join(mra.dir, "evil"))


def test_status_and_quota(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port, quota={ALICE: 20000}).start()
    try:
        env.deliver(ALICE, msg("one"))
        m = imaps(env)
        typ, data = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)")
        assert typ == "OK"
        assert b"MESSAGES 1" in data[0] and b"UNSEEN 1" in data[0]
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK"
        q = data[1][0]
        assert re.match(rb'"" \(STORAGE \d+ 19\)', q), q
        # too big for the quota: refused (OVERQUOTA) with the bytes unread
        big = b"Subject: big\r\n\r\n" + b"x" * 30000 + b"\r\n"
        typ, data = m.append("INBOX", None, None, big)
        assert typ == "NO" and b"OVERQUOTA" in data[0]
        typ, data = m.append("INBOX", None, None, msg("small"))
        assert typ == "OK"
        m.logout()
    finally:
        env.cleanup()


# ---- messages -----------------------------------------------------------

def test_append_uidplus_flags_date(mra):
    m = imaps(mra)
    date = imaplib.Time2Internaldate(time.mktime((2020, 3, 4, 5, 6, 7, 0, 0, -1)))
    typ, data = m.append("INBOX", r"(\Flagged $Label1)", date, msg("appended"))
    assert typ == "OK"
    mm = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert mm
    uidv, uid = mm.groups()
    m.select("INBOX")
    typ, data = m.uid("FETCH", uid, "(FLAGS INTERNALDATE)")
    assert b"\\Flagged" in data[0] and b"$Label1" in data[0]
    assert imaplib.Internaldate2tuple(data[0])[:3] == time.localtime(
        time.mktime((2020, 3, 4, 5, 6, 7, 0, 0, -1)))[:3]
    typ, data = m.response("UIDVALIDITY")
    m.logout()


def test_uid_stability_and_flags_across_restart(mra):
    for i in range(3):
        mra.deliver(ALICE, msg("m%d" % i))
    m = imaps(mra)
    m.select("INBOX")
    uidv1 = m.untagged_responses["UIDVALIDITY"][0]
    typ, data = m.fetch("1:*", "(UID)")
    uids1 = [re.search(rb"UID (\d+)", d).group(1) for d in data]
    assert len(uids1) == 3
    m.store("2", "+FLAGS", r"(\Flagged \Answered)")
    m.logout()
    mra.restart()
    mra.deliver(ALICE, msg("m3"))
    m = imaps(mra)
    typ, data = m.select("INBOX")
    assert data == [b"4"]
    assert m.untagged_responses["UIDVALIDITY"][0] == uidv1
    typ, data = m.fetch("1:*", "(UID FLAGS)")
    uids2 = [re.search(rb"UID (\d+)", d).group(1) for d in data]
    assert uids2[:3] == uids1
    assert int(uids2[3]) > int(uids1[2])
    assert b"\\Flagged" in data[1] and b"\\Answered" in data[1]
    assert b"\\Flagged" not in data[0]
    m.logout()


def test_body_fetch_byte_exact_and_seen(mra):
    raw = msg("exact", body="line one\r\nline two\r\n\r\n  trailing \r\n")
    mra.deliver(ALICE, raw)
    m = imaps(mra)
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == raw
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert data[0][1] == b"Subject: exact\r\n\r\n"
    typ, data = m.fetch("1", "(BODY.PEEK[TEXT]<5.8>)")
    assert b"BODY[TEXT]<5>" in data[0][0]
    assert data[0][1] == raw.split(b"\r\n\r\n", 1)[1][5:13]
    typ, data = m.fetch("1", "(RFC822.SIZE BODY[])")
    assert data[0][1] == raw
    assert b"RFC822.SIZE %d" % len(raw) in data[0][0]
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    m.logout()


def test_bare_lf_message_served_with_crlf(mra):
    mra.deliver(ALICE, b"Subject: lf\n\nbody\n")
    m = imaps(mra)
    m.select("INBOX")
    typ, data = m.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    assert data[0][1] == b"Subject: lf\r\n\r\nbody\r\n"
    assert b"RFC822.SIZE 21" in data[0][0]
    m.logout()


NESTED = (
    b"From: a@example.net\r\nTo: b@example.test\r\nSubject: nested\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"plain text\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<p>html</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
    b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAw==\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n\r\n"
    b"From: c@example.org\r\nSubject: inner msg\r\n\r\n"
    b"inner body\r\n"
    b"--outer--\r\n"
)


def test_bodystructure_nested_multipart(mra):
    mra.deliver(ALICE, NESTED)
    m = imaps(mra)
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODY)")
    # RFC 3501 §7.4.2, worked out by hand: the CRLF before a boundary
    # belongs to the boundary (RFC 2046 §5.1.1), so "plain text" is 10
    # bytes; the encapsulated message is 21 + 20 + 2 + 10 = 53 bytes and
    # 4 lines, with its own envelope and body.
    inner_env = (b'(NIL "inner msg" ((NIL NIL "c" "example.org")) '
                 b'((NIL NIL "c" "example.org")) ((NIL NIL "c" "example.org")) '
                 b'NIL NIL NIL NIL NIL)')
    expected = (b'1 (BODY ((("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 1)'
                b'("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 11 1) "alternative")'
                b'("application" "octet-stream" ("name" "a.bin") NIL NIL "base64" 8)'
                b'("message" "rfc822" NIL NIL NIL "7bit" 53 ' + inner_env +
                b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1) 4) "mixed"))')
    assert data[0] == expected
    typ, data = m.fetch("1", "(BODYSTRUCTURE)")
    expected = (b'1 (BODYSTRUCTURE ((("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 1 NIL NIL NIL NIL)'
                b'("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 11 1 NIL NIL NIL NIL)'
                b' "alternative" ("boundary" "inner") NIL NIL NIL)'
                b'("application" "octet-stream" ("name" "a.bin") NIL NIL "base64" 8 NIL'
                b' ("attachment" ("filename" "a.bin")) NIL NIL)'
                b'("message" "rfc822" NIL NIL NIL "7bit" 53 ' + inner_env +
                b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL)'
                b' "mixed" ("boundary" "outer") NIL NIL NIL))')
    assert data[0] == expected
    # sections of the nested parts
    typ, data = m.fetch("1", "(BODY.PEEK[1.1] BODY.PEEK[1.2.MIME] BODY.PEEK[3.HEADER] BODY.PEEK[2])")
    parts = {re.search(rb"BODY\[([^\]]*)\]", d[0]).group(1): d[1]
             for d in data if isinstance(d, tuple)}
    assert parts[b"1.1"] == b"plain text"
    assert parts[b"1.2.MIME"].startswith(b"Content-Type: text/html")
    assert parts[b"3.HEADER"] == b"From: c@example.org\r\nSubject: inner msg\r\n\r\n"
    assert parts[b"2"] == b"AAECAw=="
    m.logout()


def test_store_and_expunge_seen_by_other_session(mra):
    for i in range(3):
        mra.deliver(ALICE, msg("s%d" % i))
    a = imaps(mra)
    b = imaps(mra)
    a.select("INBOX")
    b.select("INBOX")
    typ, data = a.store("1", "+FLAGS", r"(\Deleted)")
    assert b"\\Deleted" in data[0]
    a.store("3", "+FLAGS", r"(\Flagged)")
    typ, data = b.noop()
    fetches = b.untagged_responses.get("FETCH", [])
    assert any(b"\\Flagged" in f for f in fetches), b.untagged_responses
    typ, data = a.expunge()
    assert data == [b"1"]
    b.untagged_responses.clear()
    b.noop()
    assert b.untagged_responses.get("EXPUNGE") == [b"1"]
    # an APPEND in a, and a delivery by the MDA, both show up in b
    a.append("INBOX", None, None, msg("new one"))
    mra.deliver(ALICE, msg("delivered"))
    b.untagged_responses.clear()
    b.noop()
    assert b.untagged_responses.get("EXISTS") == [b"4"]
    a.logout()
    b.logout()


def test_copy_move_uidplus_two_sessions(mra):
    for i in range(4):
        mra.deliver(ALICE, msg("c%d" % i))
    a = imaps(mra)
    b = imaps(mra)
    a.select("INBOX")
    b.select("INBOX")
    typ, data = a.copy("1:2", "Trash")
    assert typ == "OK"
    assert re.search(rb"\[COPYUID \d+ 1:2 1:2\]", data[0]), data
    typ, data = a._simple_command("UID", "MOVE", "3", "Archive")
    assert typ == "NO" and b"TRYCREATE" in data[0]
    a.create("Archive")
    typ, data = a._simple_command("UID", "MOVE", "3", "Archive")
    assert typ == "OK"
    assert a.untagged_responses.get("EXPUNGE") == [b"3"]
    a.untagged_responses.clear()
    typ, data = a._simple_command("MOVE", "1", "Archive")
    assert typ == "OK"
    b.noop()
    assert sorted(b.untagged_responses.get("EXPUNGE")) == [b"1", b"3"]
    typ, data = a.status("Archive", "(MESSAGES)")
    assert b"MESSAGES 2" in data[0]
    typ, data = a.status("Trash", "(MESSAGES)")
    assert b"MESSAGES 2" in data[0]
    a.select("Archive")
    typ, data = a.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = sorted(d[1].strip() for d in data if isinstance(d, tuple))
    assert subjects == [b"Subject: c0", b"Subject: c2"]
    a.logout()
    b.logout()


def test_close_expunges_unselect_does_not(mra):
    for i in range(2):
        mra.deliver(ALICE, msg("x%d" % i))
    m = imaps(mra)
    m.select("INBOX")
    m.store("1", "+FLAGS", r"(\Deleted)")
    typ, _ = m._simple_command("UNSELECT")
    assert typ == "OK"
    typ, data = m.select("INBOX")
    assert data == [b"2"]
    m.close()
    typ, data = m.select("INBOX")
    assert data == [b"1"]
    m.logout()


def test_examine_is_read_only(mra):
    mra.deliver(ALICE, msg("ro"))
    m = imaps(mra)
    typ, data = m.select("INBOX", readonly=True)
    assert typ == "OK"
    typ, data = m.store("1", "+FLAGS", r"(\Deleted)")
    assert typ == "NO"
    typ, data = m.fetch("1", "(BODY[])")
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    m.logout()


def test_search_keys(mra):
    mra.deliver(ALICE, msg("apple pie", body="crust and filling\r\n", frm="Ann <ann@example.net>"))
    mra.deliver(ALICE, msg("banana split", body="ice cream\r\n" * 50, frm="Bob <bob@example.org>",
                           extra="X-Priority: 1\r\n"))
    mra.deliver(ALICE, msg("=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Berlin", body="Schöne Grüße\r\n",
                           extra="Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"))
    m = imaps(mra)
    m.select("INBOX")
    m.store("2", "+FLAGS", r"(\Flagged)")
    m.store("1", "+FLAGS", r"(\Seen)")

    def s(*crit, uid=False):
        if uid:
            typ, data = m.uid("SEARCH", *crit)
        else:
            typ, data = m.search(None, *crit)
        assert typ == "OK", data
        return data[0].split()

    assert s("ALL") == [b"1", b"2", b"3"]
    assert s("FROM", "ann") == [b"1"]
    assert s("SUBJECT", '"banana"') == [b"2"]
    assert s("BODY", "filling") == [b"1"]
    assert s("TEXT", "ann@example") == [b"1"]
    assert s("HEADER", "X-Priority", "1") == [b"2"]
    assert s("FLAGGED") == [b"2"]
    assert s("UNSEEN") == [b"2", b"3"]
    assert s("SEEN", "NOT", "FLAGGED") == [b"1"]
    assert s("OR", "FROM", "ann", "FROM", "bob") == [b"1", b"2"]
    assert s("LARGER", "400") == [b"2"]
    assert s("SMALLER", "400") == [b"1", b"3"]
    assert s("2:3", "UNFLAGGED") == [b"3"]
    assert s("UID", "1,3") == [b"1", b"3"]
    assert s("SENTON", "7-Feb-1994") == [b"1", b"2", b"3"]
    assert s("SENTBEFORE", "7-Feb-1994") == []
    assert s("SINCE", "1-Jan-2000") == [b"1", b"2", b"3"]
    assert s("BEFORE", "1-Jan-2000") == []
    assert s("NEW") == [b"2", b"3"]
    assert s("(FROM ann) (SUBJECT apple)") == [b"1"]
    assert s("FLAGGED", uid=True) == [b"2"]
    # UTF-8 through a literal: the RFC 2047 subject and the 8bit body
    m.literal = "grü".encode()
    typ, data = m.search("UTF-8", "SUBJECT")
    assert typ == "OK" and data[0].split() == [b"3"], data
    m.literal = "Grüße".encode()
    typ, data = m.search("UTF-8", "BODY")
    assert typ == "OK" and data[0].split() == [b"3"], data
    typ, data = m.search("US-ASCII", "SUBJECT", "apple")
    assert data[0].split() == [b"1"]
    typ, data = m.search("KOI8-R", "ALL")
    assert typ == "NO"
    assert b"BADCHARSET" in data[0]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        m._simple_command("SEARCH", "FOO")
    m.logout()


# ---- IDLE ---------------------------------------------------------------

def test_idle_woken_by_delivery(mra):
    mra.deliver(ALICE, msg("before"))
    r = Raw(mra).login()
    out = r.cmd("s", "SELECT INBOX")
    assert b"* 1 EXISTS" in out
    r.send("i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    time.sleep(0.2)
    t0 = time.time()
    mra.deliver(ALICE, msg("during idle"))
    ln = r.line(timeout=3)
    assert ln == b"* 2 EXISTS", ln
    assert time.time() - t0 < 1.5
    r.send("DONE\r\n")
    out = r.until("i")
    assert out[-1].startswith(b"i OK")
    # the other session's flag change is reported too
    other = imaps(mra)
    other.select("INBOX")
    r.send("j IDLE\r\n")
    assert r.line().startswith(b"+ ")
    other.store("1", "+FLAGS", r"(\Flagged)")
    ln = r.line(timeout=3)
    assert re.match(rb"\* 1 FETCH \(.*\\Flagged", ln), ln
    r.send("DONE\r\n")
    assert r.until("j")[-1].startswith(b"j OK")
    other.logout()
    r.close()


# ---- bad input ----------------------------------------------------------

def test_huge_literal_refused_without_reading(mra):
    r = Raw(mra).login()
    t0 = time.time()
    out = r.cmd("a", "APPEND INBOX {999999999}")
    assert out[-1].startswith(b"a NO") and b"TOOBIG" in out[-1]
    assert time.time() - t0 < 2
    out = r.cmd("b", "LOGIN {99999999}")
    assert out[-1].startswith(b"b ")
    assert r.cmd("c", "NOOP")[-1].startswith(b"c ")
    # RFC 7888 §4: a non-synchronizing literal cannot be refused and the
    # session kept in step: tagged BAD, then BYE and close
    r.send("d APPEND INBOX {999999999+}\r\n")
    assert r.line().startswith(b"d BAD [TOOBIG]")
    assert r.line().startswith(b"* BYE")
    with pytest.raises((EOFError, OSError)):
        r.line()
    assert_served(mra)


def test_literal_plus_and_sync_literal(mra):
    r = Raw(mra)
    r.send("a LOGIN {18+}\r\nalice@example.test {6+}\r\nsecret\r\n")
    assert r.until("a")[-1].startswith(b"a OK")
    data = msg("via literal")
    r.send(b"b APPEND INBOX {%d}\r\n" % len(data))
    assert r.line().startswith(b"+")
    r.send(data + b"\r\n")
    out = r.until("b")
    assert b"APPENDUID" in out[-1]
    r.close()


@pytest.mark.parametrize("line", [
    b"\r\n", b"a\r\n", b"* NOOP\r\n", b"a FROB\r\n", b"a SELECT\r\n",
    b"a FETCH 1 FLAGS\r\n", b"a LOGIN (\r\n", b"a NOOP \"unterminated\r\n",
    b"a UID\r\n", b"a STATUS INBOX MESSAGES\r\n",
    b"a " + b"(" * 100 + b"\r\n", b"a LIST \"\" \x00\r\n",
    b"+ NOOP\r\n", b"a CREATE {abc}\r\n", b"a NOOP\x01\r\n",
])
def test_malformed_commands_get_bad(mra, line):
    r = Raw(mra)
    r.send(line)
    ln = r.line()
    assert b" BAD " in ln or b" NO " in ln, ln
    assert r.cmd("z", "NOOP")[-1] == b"z OK NOOP completed."
    r.close()


def test_overlong_line_refused(mra):
    r = Raw(mra)
    r.send(b"a NOOP " + b"x" * 200000 + b"\r\n")
    ln = r.line()
    assert b"BAD" in ln
    assert r.cmd("z", "NOOP")[-1].startswith(b"z OK")
    r.close()


def test_selected_commands_need_selection(mra):
    r = Raw(mra)
    assert r.cmd("a", "SELECT INBOX")[-1].startswith(b"a BAD")
    r.login()
    assert r.cmd("b", "FETCH 1 FLAGS")[-1].startswith(b"b BAD")
    assert r.cmd("c", "SELECT NoSuchFolder")[-1].startswith(b"c NO")
    assert r.cmd("d", "EXPUNGE")[-1].startswith(b"d BAD")
    r.close()


# ---- a real client ------------------------------------------------------

@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_over_imaps(mra, tmp_path):
    for i in range(5):
        mra.deliver(ALICE, msg("sync %d" % i))
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        "IMAPAccount test\n"
        "Host localhost\n"
        "Port %d\n"
        "User %s\n"
        "Pass secret\n"
        "SSLType IMAPS\n"
        "CertificateFile %s\n"
        "\n"
        "IMAPStore remote\n"
        "Account test\n"
        "\n"
        "MaildirStore local\n"
        "Path %s/\n"
        "Inbox %s/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        "Channel test\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns INBOX Sent\n"
        "Create Both\n"
        "SyncState *\n" % (mra.imaps_port, ALICE, mra.tls_cert.cert, local, local))
    env = dict(os.environ, HOME=str(tmp_path))
    p = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stdout + p.stderr + mra.read_log()
    got = os.listdir(local / "INBOX" / "cur") + os.listdir(local / "INBOX" / "new")
    assert len(got) == 5
    # push one message from the near side back to the server
    name = "%d.1.local" % time.time()
    (local / "INBOX" / "new" / name).write_bytes(msg("from mbsync"))
    p = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    m = imaps(mra)
    typ, data = m.select("INBOX")
    assert data == [b"6"]
    typ, data = m.search(None, "SUBJECT", '"from mbsync"')
    assert data[0] == b"6"
    m.logout()


# ---- Postfix Admin users in MariaDB ---------------------------------------

def _mysql_cf(env, db, name, query):
    path = os.path.join(env.etc, name + ".cf")
    with open(path, "w") as f:
        f.write("hosts = 127.0.0.1:%d\nuser = %s\npassword = %s\ndbname = %s\n"
                "query = %s\n" % (db.port, db.user, db.password, db.db, query))
    os.chmod(path, 0o644)
    return "mysql:" + path


def test_mysql_users_and_inactive_mailbox(build, tmp_path, tls_cert, free_port, mariadb):
    hashed = subprocess.run(["openssl", "passwd", "-6", "s3cret"], check=True,
                            capture_output=True, text=True).stdout.strip()
    rows = ["DELETE FROM mailbox WHERE domain = 'imap.test'",
            "DELETE FROM domain WHERE domain = 'imap.test'",
            "INSERT INTO domain (domain, description, aliases, mailboxes, maxquota, quota, "
            "transport, backupmx, created, modified, active) VALUES ('imap.test', '', 0, 0, 0, 0, "
            "'virtual', 0, NOW(), NOW(), 1)"]
    for user, active in (("dora", 1), ("carol", 0)):
        rows.append("INSERT INTO mailbox (username, password, name, maildir, quota, local_part, "
                    "domain, created, modified, active) VALUES ('%s@imap.test', '{SHA512-CRYPT}%s', '', "
                    "'imap.test/%s/', 0, '%s', 'imap.test', NOW(), NOW(), %d)"
                    % (user, hashed, user, user, active))
    mariadb.sql(";\n".join(rows) + ";")
    env = MraEnv(build, tmp_path, tls_cert, free_port)
    env.params["virtual_password_maps"] = _mysql_cf(
        env, mariadb, "passwd", "SELECT password FROM mailbox WHERE username='%s' AND active = '1'")
    env.params["virtual_mailbox_maps"] = _mysql_cf(
        env, mariadb, "mailbox", "SELECT maildir FROM mailbox WHERE username='%s' AND active = '1'")
    env._write_config()
    env.start()
    try:
        m = imaps(env, user="dora@imap.test", pw="s3cret")
        assert m.select("INBOX")[0] == "OK"
        m.logout()
        assert os.path.isdir(os.path.join(env.base, "imap.test", "dora", "cur"))
        m = imaps(env, user=None)
        with pytest.raises(imaplib.IMAP4.error):
            m.login("carol@imap.test", "s3cret")
        # SQL metacharacters in the user name are data, not SQL
        with pytest.raises(imaplib.IMAP4.error):
            m.login("x' OR '1'='1", "s3cret")
        m.logout()
    finally:
        env.cleanup()


def test_idle_many_sessions_all_woken(build, tmp_path, tls_cert, free_port):
    """More IDLE clients than inotify instances allowed per user (128):
    every one of them hears of a delivery within a second."""
    # one user from one address 160 times: above Dovecot's
    # mail_max_userip_connections default (10)
    env = MraEnv(build, tmp_path, tls_cert, free_port, disable_plaintext_auth="no",
                 mail_max_userip_connections="0",
                 mra_client_connection_count_limit="0").start()
    conns = []
    try:
        for i in range(160):
            r = Raw(env, tls=False)
            r.login(BOB, "hunter2")
            r.cmd("s", "SELECT INBOX")
            r.send("i IDLE\r\n")
            assert r.line().startswith(b"+ ")
            conns.append(r)
        t0 = time.time()
        env.deliver(BOB, msg("wake up", to=BOB))
        for r in conns:
            assert r.line(timeout=3) == b"* 1 EXISTS"
        assert time.time() - t0 < 1.5
        for r in conns[:5]:
            r.send("DONE\r\n")
            out = r.until("i")
            assert out[-1].startswith(b"i OK")
            assert r.cmd("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[-1].startswith(b"f OK")
    finally:
        for r in conns:
            r.close()
        env.cleanup()


def test_pipelined_commands_all_answered(mra):
    r = Raw(mra).login()
    r.cmd("s", "SELECT INBOX")
    r.send(b"".join(b"p%d NOOP\r\n" % i for i in range(500)) + b"q CAPABILITY\r\n")
    out = r.until("q", timeout=20)
    tagged = [ln for ln in out if ln.startswith(b"p")]
    assert len(tagged) == 500 and all(b" OK " in ln for ln in tagged)
    r.close()


def test_login_timeout_before_auth(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port, login_timeout="2s").start()
    try:
        r = Raw(env)
        t0 = time.time()
        ln = r.line(timeout=10)
        assert ln.startswith(b"* BYE"), ln
        assert 1.5 < time.time() - t0 < 6
        with pytest.raises((EOFError, OSError)):
            r.line(timeout=5)
        # after login the longer (30 min) timeout applies
        r = Raw(env).login()
        time.sleep(3)
        assert r.cmd("n", "NOOP")[-1].startswith(b"n OK")
        r.close()
    finally:
        env.cleanup()


def test_mail_location_dovecot_style(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port, virtual_mailbox_maps="")
    env.params["mail_location"] = "maildir:%s/%%d/users/%%n" % env.base
    env._write_config()
    env.start()
    try:
        m = imaps(env)
        assert m.select("INBOX")[0] == "OK"
        assert m.append("INBOX", None, None, msg("located"))[0] == "OK"
        m.logout()
        cur = os.path.join(env.base, "example.test", "users", "alice", "cur")
        assert len(os.listdir(cur)) == 1
    finally:
        env.cleanup()


def test_failed_logins_limited_per_address(build, tmp_path, tls_cert, free_port):
    # shared/loginfail: after smtpd_client_auth_rate_limit failures from
    # the address in anvil_rate_time_unit, the users that failed are refused
    env = MraEnv(build, tmp_path, tls_cert, free_port, auth_failure_delay="0",
                 smtpd_client_auth_rate_limit="2").start()
    try:
        for i in range(2):
            m = imaps(env, user=None)
            with pytest.raises(imaplib.IMAP4.error):
                m.login(ALICE, "wrong%d" % i)
            m.logout()
        m = imaps(env, user=None)
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            m.login(ALICE, "secret")
        m.logout()
        assert "imap-login: login refused: too many failed logins" in env.read_log()
    finally:
        env.cleanup()


def test_authenticate_refused_before_tls(mra):
    r = Raw(mra, tls=False)
    ir = base64.b64encode(b"\0alice@example.test\0secret").decode()
    out = r.cmd("a", "AUTHENTICATE PLAIN " + ir)
    assert out[-1].startswith(b"a NO [PRIVACYREQUIRED]")
    r.close()


def test_daemon_serves_pop3_and_pop3s(mra):
    """mra/main.c starts the POP3 listeners beside IMAP (one process)."""
    import poplib
    mra.deliver(ALICE, msg("for pop"))
    p = poplib.POP3_SSL("127.0.0.1", mra.pop3s_port, context=tls_ctx(mra))
    p.user(ALICE)
    assert p.pass_("secret").startswith(b"+OK")
    assert p.stat()[0] == 1
    p.quit()
    p = poplib.POP3("127.0.0.1", mra.pop3_port)
    assert "STLS" in p.capa()
    p.quit()


# ---- issue #9: input parsing and the literal path ------------------------

def test_prelogin_literals_small_and_memory_flat(build, tmp_path, tls_cert, free_port):
    """Before login only small literals (LOGIN, AUTHENTICATE) are taken: a
    big one is refused before any of it is read, with no "+"; clients that
    never log in cannot make the daemon hold their bytes."""
    env = lean_env(build, tmp_path, tls_cert, free_port)
    try:
        before = rss_kb(env)
        conns = []
        for i in range(3):
            for tls in (False, True):
                r = Raw(env, tls=tls)
                conns.append(r)
                r.send("a LOGIN {100000}\r\n")
                ln = r.line()
                assert ln.startswith(b"a NO [TOOBIG]"), ln
                # APPEND is not even valid yet: its literal is refused too
                r.send("b APPEND INBOX {20000000}\r\n")
                ln = r.line()
                assert ln.startswith(b"b NO [TOOBIG]"), ln
                # a hostile client sends the bytes anyway
                r.s.sendall(b"x" * 1000000)
        time.sleep(0.5)
        assert rss_kb(env) - before < 8 * 1024
        # 8 KiB literals are fine before login
        r = Raw(env)
        out = lit_cmd(r, "c", b"LOGIN", ALICE.encode(), b' "secret"')
        assert out[-1].startswith(b"c OK"), out
        r.close()
        r = Raw(env)
        r.send("d LOGIN {8193+}\r\n")
        assert r.line().startswith(b"d BAD [TOOBIG]")
        assert r.line().startswith(b"* BYE")
        for c in conns:
            c.close()
        assert_served(env)
    finally:
        env.cleanup()


def test_append_20mb_streamed_not_held(build, tmp_path, tls_cert, free_port):
    """An APPEND message is streamed to the Maildir's tmp/, not held in
    memory: the daemon's RSS stays far below the message size."""
    env = lean_env(build, tmp_path, tls_cert, free_port,
                   message_size_limit=str(40 * 1024 * 1024))
    try:
        r = Raw(env).login()
        assert r.cmd("s", "SELECT INBOX")[-1].startswith(b"s OK")
        body = (b"0123456789abcdef" * 4 + b"\r\n") * 310000
        data = msg("big one", body=body.decode())
        assert len(data) > 20 * 1000 * 1000
        before = rss_kb(env)
        r.send(b"a APPEND INBOX (\\Seen) {%d}\r\n" % len(data))
        assert r.line().startswith(b"+")
        half = len(data) // 2
        r.s.sendall(data[:half])
        time.sleep(0.3)
        mid = rss_kb(env)
        r.s.sendall(data[half:] + b"\r\n")
        out = r.until("a", timeout=60)
        assert out[-1].startswith(b"a OK [APPENDUID"), out
        after = rss_kb(env)
        assert mid - before < 6 * 1024, (before, mid)
        assert after - before < 6 * 1024, (before, after)
        out = r.cmd("f", "FETCH * (RFC822.SIZE FLAGS)")
        assert b"RFC822.SIZE %d" % len(data) in out[0] and b"\\Seen" in out[0]
        # the bytes are the message, exactly
        cur = os.path.join(env.maildir(ALICE), "cur")
        names = os.listdir(cur)
        assert len(names) == 1
        with open(os.path.join(cur, names[0]), "rb") as f:
            assert f.read() == data
        # nothing left over in tmp/
        assert os.listdir(os.path.join(env.maildir(ALICE), "tmp")) == []
        r.close()
        assert_served(env)
    finally:
        env.cleanup()


def test_append_streamed_plaintext_literal_plus_pipelined(build, tmp_path, tls_cert, free_port):
    """{n+} messages over plaintext, pipelined in one write with the commands
    around them: every one stored, in order, whatever the buffer borders."""
    env = MraEnv(build, tmp_path, tls_cert, free_port,
                 disable_plaintext_auth="no").start()
    try:
        r = Raw(env, tls=False).login()
        parts = []
        sizes = []
        for i in range(8):
            data = msg("piped %d" % i, body="y" * (100000 + 4099 * i) + "\r\n")
            sizes.append(len(data))
            parts.append(b"a%d APPEND INBOX {%d+}\r\n" % (i, len(data)) + data +
                         b"\r\nn%d NOOP\r\n" % i)
        r.s.sendall(b"".join(parts) + b"q SELECT INBOX\r\n")
        out = r.until("q", timeout=30)
        oks = [ln for ln in out if re.match(rb"a\d OK \[APPENDUID", ln)]
        assert len(oks) == 8, out
        assert out[-1].startswith(b"q OK")
        out = r.cmd("f", "FETCH 1:* RFC822.SIZE")
        got = [int(re.search(rb"RFC822.SIZE (\d+)", ln).group(1))
               for ln in out if b"FETCH" in ln]
        assert got == sizes
        # the quota-less size limit still holds for streamed messages
        r.send("b APPEND INBOX {999999999+}\r\n")
        assert r.line().startswith(b"b BAD [TOOBIG]")
        r.close()
        assert_served(env)
    finally:
        env.cleanup()


NUL_NAME = b"INBOX\x00junk"


@pytest.mark.parametrize("tls", [True, False])
def test_nul_and_controls_in_mailbox_names_refused(build, tmp_path, tls_cert, free_port, tls):
    """A NUL in a literal or an encoded NUL (&AAA-) silently shortened the
    name ("INBOX\\0junk" selected INBOX): refused in every command that
    takes a mailbox name, and so are controls and broken modified UTF-7."""
    env = MraEnv(build, tmp_path, tls_cert, free_port,
                 disable_plaintext_auth="no").start()
    try:
        env.deliver(ALICE, msg("one"))
        r = Raw(env, tls=tls).login()
        assert r.cmd("c", 'CREATE "Junk2"')[-1].startswith(b"c OK")

        def refused(out, how=(b" BAD ", b" NO ")):
            last = out[-1]
            assert any(h in last for h in how), out
            return last

        # a NUL in a literal: BAD, in each position a name can take
        for tag, head, tail in [
                ("s1", b"SELECT", b""), ("s2", b"EXAMINE", b""),
                ("s3", b"CREATE", b""), ("s4", b"DELETE", b""),
                ("s5", b"RENAME", b' "New"'), ("s6", b'RENAME "Junk2"', b""),
                ("s7", b"SUBSCRIBE", b""), ("s8", b"UNSUBSCRIBE", b""),
                ("s9", b"STATUS", b" (MESSAGES)"),
                ("sa", b"APPEND", b" {5}"),
                ("sb", b'LIST ""', b""), ("sc", b"LIST", b' "*"'),
                ("sd", b'LSUB ""', b""),
                ("se", b"GETQUOTAROOT", b"")]:
            if tag == "sa":
                r.send(b"sa APPEND {%d}\r\n" % len(NUL_NAME))
                assert r.line().startswith(b"+")
                r.send(NUL_NAME + b" {5}\r\n")
                ln = r.line()
                if ln.startswith(b"+"):
                    r.send(b"hello\r\n")
                    ln = r.until("sa")[-1]
                out = [ln]
            else:
                out = lit_cmd(r, tag, head, NUL_NAME, tail)
            last = refused(out)
            assert b"NUL" in last, out
        assert r.cmd("t", "SELECT INBOX")[-1].startswith(b"t OK")
        for tag, head in [("u1", b"COPY 1"), ("u2", b"MOVE 1"),
                          ("u3", b"UID COPY 1"), ("u4", b"UID MOVE 1")]:
            last = refused(lit_cmd(r, tag, head, NUL_NAME))
            assert b"NUL" in last
        # an encoded NUL, other controls, broken modified UTF-7
        for name in ['"x&AAA-y"', '"&AAA-"', '"x\x01y"', '"x\x7fy"',
                     '"&AGE-"', '"&APx-"', '"&Jjo"', '"&2D0-"']:
            for tag, cmd in [("v1", "CREATE %s"), ("v2", "SELECT %s"),
                             ("v3", "RENAME Junk2 %s"), ("v4", "COPY 1 %s"),
                             ("v5", "STATUS %s (MESSAGES)"),
                             ("v6", "SUBSCRIBE %s"), ("v7", 'LIST "" %s'),
                             ("v8", "DELETE %s")]:
                refused(r.cmd(tag, cmd % name))
        # none of it left a trace: INBOX is whole, no folder was made
        out = r.cmd("l", 'LIST "" "*"')
        assert not any(b"junk" in ln or b"New" in ln for ln in out), out
        assert r.cmd("e", "EXAMINE INBOX")[-1].startswith(b"e OK")
        out = r.cmd("f", "FETCH 1:* FLAGS")
        assert len([ln for ln in out if b"FETCH" in ln]) == 1
        # and correct names still work
        assert r.cmd("g", 'CREATE "Entw&APw-rfe"')[-1].startswith(b"g OK")
        assert r.cmd("h", 'STATUS "Entw&APw-rfe" (MESSAGES)')[-1].startswith(b"h OK")
        r.close()
        assert_served(env)
    finally:
        env.cleanup()


def test_list_many_wildcards_returns(mra):
    """Issue #9: LIST with many wildcards against long names backtracked
    without limit; eight such stopped IMAP and POP3 for everyone."""
    r = Raw(mra).login()
    long_name = "a" * 200
    assert r.cmd("c", 'CREATE "%s"' % long_name)[-1].startswith(b"c OK")
    assert r.cmd("d", 'CREATE "%s.%s"' % ("a" * 100, "a" * 99))[-1].startswith(b"d OK")
    pat = "*a" * 15 + "%a" * 15 + "b"
    conns = []
    for i in range(8):
        c = Raw(mra).login()
        c.send('l LIST "" "%s"\r\n' % pat)
        conns.append(c)
    for c in conns:
        out = c.until("l", timeout=20)
        assert out[-1].startswith(b"l OK")
        assert not any(ln.startswith(b"* LIST") for ln in out)
        c.close()
    out = r.cmd("m", 'LIST "" "%s"' % ("*a" * 15 + "%a" * 14 + "*"), timeout=20)
    listed = [ln for ln in out if ln.startswith(b"* LIST")]
    assert len(listed) == 3, out     # the two and the \\Noselect parent
    out = r.cmd("n", 'LIST "" "%s"' % ("%a" * 30), timeout=20)
    listed = [ln for ln in out if ln.startswith(b"* LIST")]
    assert len(listed) == 2 and not any(b"." in ln[-50:] for ln in listed), out
    r.close()
    assert_served(mra)


@pytest.mark.parametrize("tls", [True, False])
def test_hostile_input_paths(build, tmp_path, tls_cert, free_port, tls):
    """Over-long lines in each input mode, bad lines with and without
    literals, AUTHENTICATE and IDLE continuation lines, bytes a byte at a
    time: a clear error, never a hang, and the next client is served."""
    env = MraEnv(build, tmp_path, tls_cert, free_port,
                 disable_plaintext_auth="no").start()
    try:
        # a command line over the limit, sent in many small pieces
        r = Raw(env, tls=tls)
        r.send(b"a NOOP ")
        for i in range(70):
            r.send(b"x" * 1000)
        r.send(b"\r\nb NOOP\r\n")
        assert r.line().startswith(b"a BAD")
        assert r.until("b")[-1].startswith(b"b OK")
        # a bad line that announces {n+}: the bytes cannot be told apart
        r.send(b"c FROB ) {5+}\r\nhello\r\n")
        assert r.line().startswith(b"c BAD")
        assert r.line().startswith(b"* BYE")
        r.close()
        # a byte at a time, with a literal
        r = Raw(env, tls=tls)
        for b in b"d LOGIN {18}\r\n":
            r.send(bytes([b]))
        assert r.line().startswith(b"+")
        for b in ALICE.encode() + b" secret\r\n":
            r.send(bytes([b]))
        assert r.until("d")[-1].startswith(b"d OK")
        # IDLE: a long line instead of DONE ends the session; junk is BAD
        r.send(b"i IDLE\r\n")
        assert r.line().startswith(b"+")
        r.send(b"NOT DONE\r\n")
        assert r.until("i")[-1].startswith(b"i BAD")
        r.send(b"j IDLE\r\n")
        assert r.line().startswith(b"+")
        r.send(b"y" * 70000)
        ln = r.line()
        assert ln.startswith(b"* BYE"), ln
        r.close()
        # AUTHENTICATE: the continuation line has the same limit
        r = Raw(env, tls=tls)
        r.send(b"k AUTHENTICATE PLAIN\r\n")
        assert r.line().startswith(b"+")
        r.send(b"Q" * 70000 + b"\r\n")
        assert r.line().startswith(b"* BYE")
        r.close()
        # and a NUL where the name of a command should be
        r = Raw(env, tls=tls)
        r.send(b"m NO\x00OP\r\n")
        assert b" BAD " in r.line()
        # or in a user name: "alice\0x" is not alice
        out = lit_cmd(r, "n", b"LOGIN", ALICE.encode() + b"\x00x", b' "secret"')
        assert out[-1].startswith(b"n BAD"), out
        r.close()
        assert_served(env)
    finally:
        env.cleanup()


def test_fetch_flood_without_reading_bounded(build, tmp_path, tls_cert, free_port):
    """Pipelined FETCHes from a client that does not read, over STARTTLS
    (whose TLS filter passes output on to the socket's buffer at once):
    the session stops taking commands once its output backs up."""
    env = lean_env(build, tmp_path, tls_cert, free_port)
    try:
        env.deliver(ALICE, msg("big", body="w" * 2000000 + "\r\n"))
        s = socket.create_connection(("127.0.0.1", env.imap_port), 10)
        s.recv(4096)
        s.sendall(b"a STARTTLS\r\n")
        got = b""
        while b"a OK" not in got:
            got += s.recv(4096)
        t = tls_ctx(env).wrap_socket(s)
        t.sendall(b'b LOGIN "%s" "secret"\r\nc SELECT INBOX\r\n' % ALICE.encode())
        got = b""
        while b"c OK" not in got:
            got += t.recv(65536)
        before = rss_kb(env)
        t.sendall(b"".join(b"f%d FETCH 1 BODY.PEEK[]\r\n" % i for i in range(60)))
        time.sleep(1.5)
        grown = rss_kb(env) - before
        assert grown < 24 * 1024, grown
        t.close()
        assert_served(env)
    finally:
        env.cleanup()
