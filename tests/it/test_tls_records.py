"""The server side of TLS (shared/tls_srv.c) with real clients: after a
TLS 1.3 handshake the records are done by tls13_rec and OpenSSL's SSL is
freed; TLS 1.2 keeps the SSL. Both must carry whole sessions the same way:
implicit TLS and STARTTLS, large literals both ways, input split into one
record per byte, the client's close_notify, and a forged record, after
which a new client is still served."""
import imaplib
import os
import poplib
import socket
import ssl
import time

import pytest

from hostile_env import HANG, Conn, imap_health, pop3_health
from mra_env import MraEnv

ALICE, ALICE_PW = "alice@example.test", "secret"
VERSIONS = {"tls12": ssl.TLSVersion.TLSv1_2, "tls13": ssl.TLSVersion.TLSv1_3}


def ctx_for(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    return ctx


@pytest.fixture(scope="module")
def mra(build, tls_cert, free_port):
    env = MraEnv(build, None, tls_cert, free_port, users={ALICE: ALICE_PW},
                 smtpd_client_auth_rate_limit=0, auth_failure_delay="0s")
    env.start()
    yield env
    env.stop()


def imap_connect(env, version, mode):
    ctx = ctx_for(version)
    if mode == "tls":
        m = imaplib.IMAP4_SSL("127.0.0.1", env.imaps_port, ssl_context=ctx,
                              timeout=10)
    else:
        m = imaplib.IMAP4("127.0.0.1", env.imap_port, timeout=10)
        m.starttls(ctx)
    assert m.sock.version() == {"tls12": "TLSv1.2", "tls13": "TLSv1.3"}[version]
    return m


@pytest.mark.parametrize("version", ["tls12", "tls13"])
@pytest.mark.parametrize("mode", ["tls", "starttls"])
def test_imap_bulk_both_ways(mra, version, mode):
    """A 600 KB message up as one literal and back in one FETCH: many
    full-size records each way, and records split across reads."""
    body = b"".join(b"%06d %s\r\n" % (i, b"abcdefghij" * 7)
                    for i in range(8000))
    msg = b"Subject: big %s %s\r\n\r\n" % (version.encode(), mode.encode()) + body
    m = imap_connect(mra, version, mode)
    try:
        assert m.login(ALICE, ALICE_PW)[0] == "OK"
        typ, data = m.append("INBOX", None, None, msg)
        assert typ == "OK", data
        assert m.select("INBOX")[0] == "OK"
        typ, data = m.search(None, "SUBJECT", '"big %s %s"' % (version, mode))
        assert typ == "OK" and data[0], data
        n = data[0].split()[-1]
        typ, data = m.fetch(n, "(BODY.PEEK[])")
        assert typ == "OK"
        assert data[0][1] == msg
        assert m.logout()[0] == "BYE"
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


@pytest.mark.parametrize("version", ["tls12", "tls13"])
def test_imap_one_record_per_byte(mra, version):
    """Every byte of a LOGIN and a pipelined NOOP in a record of its own."""
    c = Conn(mra.imaps_port, HANG)
    c.s = ctx_for(version).wrap_socket(c.s)
    try:
        assert c.line().startswith(b"* OK")
        cmds = b'a LOGIN "%s" "%s"\r\nb NOOP\r\n' % (ALICE.encode(),
                                                  ALICE_PW.encode())
        for i in range(len(cmds)):
            c.s.sendall(cmds[i:i + 1])
        r = c.tagged("a")
        assert r[-1].startswith(b"a OK"), r
        r = c.tagged("b")
        assert r[-1].startswith(b"b OK"), r
    finally:
        c.close()
    imap_health(mra.imaps_port, "tls")


@pytest.mark.parametrize("version", ["tls12", "tls13"])
def test_close_notify(mra, version):
    """The client's close_notify ends the session cleanly: the server
    reads it as the end of input, and goes on serving others."""
    c = Conn(mra.imaps_port, HANG)
    c.s = ctx_for(version).wrap_socket(c.s)
    assert c.line().startswith(b"* OK")
    r = c.cmd_imap("a", "NOOP")
    assert r[-1].startswith(b"a OK")
    try:
        # sends close_notify, then reads until the server's or its close
        raw = c.s.unwrap()
    except (ssl.SSLError, OSError):
        raw = None                  # the server closed without its own
    if raw is not None:
        raw.settimeout(HANG)
        try:
            assert raw.recv(4096) == b"", "data after close_notify"
        except ConnectionResetError:
            pass
        raw.close()
    c.s.close()
    imap_health(mra.imaps_port, "tls")
    pop3_health(mra.pop3s_port, "tls")


@pytest.mark.parametrize("version", ["tls12", "tls13"])
def test_forged_record(mra, version):
    """A record that does not decrypt: the server answers with an alert
    (bad_record_mac, RFC 8446 §5.2), closes, and serves the next client."""
    c = Conn(mra.imaps_port, HANG)
    c.s = ctx_for(version).wrap_socket(c.s)
    try:
        assert c.line().startswith(b"* OK")
        raw = socket.socket(fileno=os.dup(c.s.fileno()))
        raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x55" * 32)
        raw.close()
        with pytest.raises(ssl.SSLError) as e:
            c.s.settimeout(HANG)
            while c.s.recv(4096):
                pass
        assert "BAD_RECORD_MAC" in str(e.value).upper(), e.value
    finally:
        c.close()
    imap_health(mra.imaps_port, "tls")


@pytest.mark.parametrize("version", ["tls12", "tls13"])
def test_pop3s(mra, version):
    m = poplib.POP3_SSL("127.0.0.1", mra.pop3s_port, context=ctx_for(version),
                        timeout=10)
    try:
        m.user(ALICE)
        assert m.pass_(ALICE_PW).startswith(b"+OK")
        count, size = m.stat()
        assert count >= 0
        assert m.quit().startswith(b"+OK")
    finally:
        m.close()
