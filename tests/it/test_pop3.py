"""POP3 / POP3S of the mra against real clients (poplib, imaplib, fetchmail):
STLS, implicit TLS, plaintext login refused before TLS, UIDL stability across
restarts and IMAP use, DELE committed only at QUIT, TOP, and a fetchmail run
that retrieves a message byte for byte."""
import imaplib
import os
import poplib
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from mra_env import MraEnv

USER, PASSWORD = "alice@example.test", "secret"

MSG1 = (b"From: Bob <bob@example.test>\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: first\r\n"
        b"\r\n"
        b"line one\r\n"
        b".dotted line\r\n"
        b"line three\r\n")
MSG2 = b"Subject: second\r\n\r\nhello\r\n"
MSG3 = b"Subject: third\r\n\r\n" + b"x" * 5000 + b"\r\n"


@pytest.fixture
def mra(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port)
    env.deliver(USER, MSG1)
    env.deliver(USER, MSG2)
    env.deliver(USER, MSG3)
    env.start()
    try:
        socket.create_connection(("127.0.0.1", env.pop3s_port), 2).close()
    except OSError:
        env.cleanup()
        pytest.fail("mra serves no POP3: mra/main.c must reference "
                    "pop3_listener_start strongly (a weak reference does not "
                    "pull pop3_session.o out of libmra.a)")
    yield env
    env.cleanup()


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def pop3s(env):
    p = poplib.POP3_SSL("127.0.0.1", env.pop3s_port, context=tls_ctx(), timeout=10)
    p.user(USER)
    p.pass_(PASSWORD)
    return p


def test_plaintext_login_refused_before_tls(mra):
    p = poplib.POP3("127.0.0.1", mra.pop3_port, timeout=10)
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    assert "STLS" in caps
    assert "USER" not in caps and "SASL" not in caps
    with pytest.raises(poplib.error_proto) as e:
        p.user(USER)
    assert b"Plaintext authentication disallowed" in e.value.args[0]
    with pytest.raises(poplib.error_proto):
        p._shortcmd("AUTH PLAIN " + "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=")
    # still not logged in: a transaction command is refused
    with pytest.raises(poplib.error_proto):
        p.stat()
    p.quit()


def test_plaintext_login_when_allowed(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port,
                 disable_plaintext_auth="no")
    try:
        env.deliver(USER, MSG2)
        env.start()
        p = poplib.POP3("127.0.0.1", env.pop3_port, timeout=10)
        assert "USER" in p.capa()
        p.user(USER)
        p.pass_(PASSWORD)
        assert p.stat() == (1, len(MSG2))
        p.quit()
    finally:
        env.cleanup()


def test_stls_then_login(mra):
    p = poplib.POP3("127.0.0.1", mra.pop3_port, timeout=10)
    p.stls(context=tls_ctx())
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps
    assert "PLAIN" in caps.get("SASL", [])
    p.user(USER)
    p.pass_(PASSWORD)
    count, size = p.stat()
    assert count == 3
    assert size == len(MSG1) + len(MSG2) + len(MSG3)
    p.quit()


def test_stls_drops_pipelined_plaintext(mra):
    s = socket.create_connection(("127.0.0.1", mra.pop3_port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"STLS\r\nUSER " + USER.encode() + b"\r\n")
    assert f.readline().startswith(b"+OK")
    # the pipelined USER must not survive into the TLS session
    t = tls_ctx().wrap_socket(s)
    t.sendall(b"PASS " + PASSWORD.encode() + b"\r\n")
    line = t.recv(200)
    assert line.startswith(b"-ERR"), line
    t.close()


def test_auth_plain_over_pop3s(mra):
    import base64
    ir = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode()
    p = poplib.POP3_SSL("127.0.0.1", mra.pop3s_port, context=tls_ctx(), timeout=10)
    assert "PLAIN" in p.capa()["SASL"]
    assert p._shortcmd("AUTH PLAIN " + ir).startswith(b"+OK")
    assert p.stat()[0] == 3
    p.quit()
    # without an initial response: an empty "+ " challenge first
    p = poplib.POP3_SSL("127.0.0.1", mra.pop3s_port, context=tls_ctx(), timeout=10)
    p._putcmd("AUTH PLAIN")
    assert p._getline()[0].startswith(b"+")
    assert p._shortcmd(ir).startswith(b"+OK")
    p.quit()
    # "*" cancels (RFC 5034 §4)
    p = poplib.POP3_SSL("127.0.0.1", mra.pop3s_port, context=tls_ctx(), timeout=10)
    p._putcmd("AUTH PLAIN")
    p._getline()
    with pytest.raises(poplib.error_proto):
        p._shortcmd("*")
    p.quit()


def test_idle_timeout(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port, pop3_timeout="1s")
    try:
        env.start()
        s = socket.create_connection(("127.0.0.1", env.pop3_port), timeout=10)
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        t0 = time.time()
        assert f.readline().startswith(b"-ERR Disconnected for inactivity")
        assert f.readline() == b""
        assert time.time() - t0 < 5
        s.close()
    finally:
        env.cleanup()


def test_wrong_password_delayed_and_logged(mra):
    """shared/loginfail: the delay grows with the failures of the (address,
    user) pair and is waited before the password is checked, so the first
    failure is answered at once and the next one after auth_failure_delay
    (1s in MraEnv); each failure is logged in the line fail2ban's dovecot
    filter reads, never with the password."""
    p = poplib.POP3_SSL("127.0.0.1", mra.pop3s_port, context=tls_ctx(), timeout=10)
    p.user(USER)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong")
    assert b"[AUTH]" in e.value.args[0]
    p.user(USER)
    t0 = time.time()
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong")
    assert time.time() - t0 >= 0.9
    assert b"[AUTH]" in e.value.args[0]
    p.quit()
    time.sleep(0.2)
    log = mra.read_log()
    assert ("pop3-login: passdb(%s,127.0.0.1): Invalid credentials, "
            "method=USER" % USER) in log
    assert "wrong" not in log


def test_retr_top_list(mra):
    p = pop3s(mra)
    resp, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == MSG1
    assert octets >= len(MSG1)
    resp, lines, octets = p.top(1, 1)
    assert lines == [b"From: Bob <bob@example.test>", b"To: alice@example.test",
                     b"Subject: first", b"", b"line one"]
    resp, lines, octets = p.top(3, 0)
    assert lines == [b"Subject: third", b""]
    assert p.list(2).split()[2] == str(len(MSG2)).encode()
    with pytest.raises(poplib.error_proto):
        p.retr(4)
    with pytest.raises(poplib.error_proto):
        p.retr("0")
    p.quit()


def test_dele_only_at_quit(mra):
    p = pop3s(mra)
    uidl_before = p.uidl()[1]
    p.dele(2)
    with pytest.raises(poplib.error_proto):
        p.retr(2)
    assert p.stat()[0] == 2
    # vanish without QUIT: nothing is deleted
    p.file.close()
    p.sock.close()
    time.sleep(0.3)
    assert "disconnect: lost connection, user=<%s>" % USER in mra.read_log()
    p = pop3s(mra)
    assert p.stat()[0] == 3
    p.dele(2)
    p.rset()
    assert p.stat()[0] == 3
    p.dele(2)
    assert p.quit().startswith(b"+OK")
    p = pop3s(mra)
    assert p.stat()[0] == 2
    uidl_after = p.uidl()[1]
    assert uidl_after[0].split()[1] == uidl_before[0].split()[1]
    assert uidl_after[1].split()[1] == uidl_before[2].split()[1]
    p.quit()
    files = os.listdir(os.path.join(mra.maildir(USER), "cur"))
    assert len(files) == 2


def test_uidl_stable_across_restart_and_imap(mra):
    p = pop3s(mra)
    first = p.uidl()[1]
    p.quit()
    assert len(first) == 3 and len(set(x.split()[1] for x in first)) == 3
    mra.restart()
    p = pop3s(mra)
    assert p.uidl()[1] == first
    p.quit()
    # IMAP reads and flags messages and sees the same UIDs
    im = imaplib.IMAP4_SSL("127.0.0.1", mra.imaps_port, ssl_context=tls_ctx())
    im.login(USER, PASSWORD)
    typ, data = im.select("INBOX")
    assert typ == "OK" and data[0] == b"3"
    typ, data = im.fetch("1:3", "(UID)")
    assert typ == "OK"
    imap_uids = [int(x.split(b"UID ")[1].split(b")")[0]) for x in data]
    # the POP3 UIDL is the IMAP UID, then UIDVALIDITY (8 hex digits each)
    assert imap_uids == [int(x.split()[1][:8], 16) for x in first]
    typ, data = im.status("INBOX", "(UIDVALIDITY)")
    uidvalidity = int(data[0].split(b"UIDVALIDITY ")[1].rstrip(b")"))
    assert all(int(x.split()[1][8:], 16) == uidvalidity for x in first)
    typ, data = im.store("2", "+FLAGS", "(\\Seen \\Flagged)")
    assert typ == "OK"
    im.logout()
    mra.deliver(USER, b"Subject: fourth\r\n\r\nnew\r\n")
    p = pop3s(mra)
    now = p.uidl()[1]
    assert now[:3] == first
    assert len(now) == 4
    # UIDL is UID then UIDVALIDITY, each 8 hex digits
    uid_hex = now[3].split()[1][:8]
    assert int(uid_hex, 16) == 4
    p.quit()


def test_pop3_dele_seen_by_imap(mra):
    p = pop3s(mra)
    p.dele(1)
    p.quit()
    im = imaplib.IMAP4_SSL("127.0.0.1", mra.imaps_port, ssl_context=tls_ctx())
    im.login(USER, PASSWORD)
    typ, data = im.select("INBOX")
    assert data[0] == b"2"
    typ, data = im.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"second" in data[0][1]
    im.logout()


def test_bad_input(mra):
    s = socket.create_connection(("127.0.0.1", mra.pop3_port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"FOO\r\n")
    assert f.readline().startswith(b"-ERR")
    s.sendall(b"RETR 1\r\n")          # not logged in
    assert f.readline().startswith(b"-ERR")
    s.sendall(b"USER " + b"a" * 300 + b"\r\n")
    assert f.readline().startswith(b"-ERR")
    s.sendall(b"A" * 20000)           # no line end at all
    assert f.readline().startswith(b"-ERR Line too long")
    # and the server hung up: shared/conn closes once the reply is sent,
    # without draining what the client still sends, so the kernel may
    # answer the unread bytes with a reset instead of a FIN
    try:
        assert f.readline() == b""
    except ConnectionResetError:
        pass
    s.close()


def test_fetchmail_pop3s_byte_exact(mra, tmp_path):
    if shutil.which("fetchmail") is None:
        pytest.skip("fetchmail not installed")
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "delivered"
    mda = tmp_path / "mda.sh"
    # fetchmail hands each message to the MDA on stdin
    mda.write_text("#!/bin/sh\ncat >> %s\n" % out)
    mda.chmod(0o755)
    rc = home / ".fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        "poll 127.0.0.1 service %d protocol pop3 uidl:\n"
        "  user \"%s\" there with password \"%s\" is tester here\n"
        "  ssl no sslcertck keep fetchall\n"
        "  mda \"%s\"\n" % (mra.pop3s_port, USER, PASSWORD, mda))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "-v",
                        "--nosslcertck"],
                       env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    got = out.read_bytes()
    # fetchmail adds its Received line on top; the messages follow intact
    # (LF line ends towards a local MDA)
    for m in (MSG1, MSG2, MSG3):
        assert m.replace(b"\r\n", b"\n") in got


# ---- issue #9: the POP3 line reader --------------------------------------

def _pop3_conn(env, tls):
    s = socket.create_connection(("127.0.0.1", env.pop3s_port if tls else env.pop3_port),
                                 timeout=10)
    if tls:
        s = tls_ctx().wrap_socket(s)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    return s, f


def _assert_pop3_served(env):
    for tls in (True, False):
        s, f = _pop3_conn(env, tls)
        s.sendall(b"CAPA\r\n")
        assert f.readline().startswith(b"+OK")
        s.close()


def _rss_kb(env):
    with open("/proc/%d/status" % env.proc.pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("tls", [True, False])
def test_line_of_8193_bytes_bare_lf(build, tmp_path, tls_cert, free_port, tls):
    """Issue #9: a line of exactly 8,193 bytes ending in a bare LF wrote one
    byte past the line buffer (ASan: stack-buffer-overflow). It is an
    ordinary line now, as a command and as a SASL response, and 8,194
    bytes are too long."""
    env = MraEnv(build, tmp_path, tls_cert, free_port,
                 disable_plaintext_auth="no")
    try:
        env.deliver(USER, MSG2)
        env.start()
        s, f = _pop3_conn(env, tls)
        s.sendall(b"A" * 8193 + b"\n")
        assert f.readline().startswith(b"-ERR")
        s.sendall(b"B" * 8192 + b"\r\n")
        assert f.readline().startswith(b"-ERR")
        s.sendall(b"AUTH PLAIN\r\n")
        assert f.readline().startswith(b"+ ")
        s.sendall(b"Q" * 8193 + b"\n")
        assert f.readline().startswith(b"-ERR")
        s.sendall(b"NOOP\r\nQUIT\r\n")
        assert f.readline().startswith(b"-ERR")   # NOOP: not logged in
        assert f.readline().startswith(b"+OK")
        s.close()
        s, f = _pop3_conn(env, tls)
        s.sendall(b"C" * 8194 + b"\n")
        assert f.readline().startswith(b"-ERR Line too long")
        s.close()
        _assert_pop3_served(env)
    finally:
        env.cleanup()


def test_sasl_response_with_nul_refused(mra):
    """A NUL or control byte in an AUTH continuation line ends the
    exchange with -ERR (it would have been cut off as a C string)."""
    s, f = _pop3_conn(mra, True)
    s.sendall(b"AUTH PLAIN\r\n")
    assert f.readline().startswith(b"+ ")
    s.sendall(b"AGFsaWNl\x00QGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n")
    assert f.readline().startswith(b"-ERR")
    s.sendall(b"STAT\r\n")
    assert f.readline().startswith(b"-ERR")   # not logged in
    s.close()
    _assert_pop3_served(mra)


@pytest.mark.parametrize("stls", [False, True])
def test_pipelined_retr_output_bounded(build, tmp_path, tls_cert, free_port, stls):
    """A client that pipelines RETRs and never reads: the daemon stops
    taking its commands once about 1 MB of output waits, instead of
    queuing every message in memory (POP3S, and STLS, whose TLS filter
    hands the output on to the socket's buffer)."""
    old = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = ((old + ":") if old else "") + \
        "quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
    env = MraEnv(build, tmp_path, tls_cert, free_port)
    try:
        env.deliver(USER, b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 25000)
        env.start()
        if old is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = old
        if stls:
            s, f = _pop3_conn(env, False)
            s.sendall(b"STLS\r\n")
            assert f.readline().startswith(b"+OK")
            s = tls_ctx().wrap_socket(s)
            f = s.makefile("rb")
        else:
            s, f = _pop3_conn(env, True)
        s.sendall(b"USER " + USER.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\n")
        assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"+OK")
        before = _rss_kb(env)
        s.sendall(b"RETR 1\r\n" * 60)     # 60 x 2 MB, never read
        time.sleep(1.5)
        grown = _rss_kb(env) - before
        assert grown < 24 * 1024, grown
        # reading resumes the rest: all 60 answers arrive
        n = 0
        while n < 60:
            ln = f.readline()
            assert ln, n
            if ln.startswith(b"+OK"):
                n += 1
        s.close()
        _assert_pop3_served(env)
    finally:
        if os.environ.get("ASAN_OPTIONS", "").endswith("thread_local_quarantine_size_kb=64"):
            if old is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = old
        env.cleanup()
