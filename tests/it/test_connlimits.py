"""Connection caps of the two SMTP daemons (shared/conn under
shared/smtpd): smtpd_client_connection_count_limit (connections at once
from one client address, Postfix's name and meaning) and
smtpd_connection_limit (at once in all). The connection over a cap gets
Postfix's "421 4.7.0 <myhostname> Error: too many connections [from
<addr>]" and is closed; once one closes, the next is served again. All
clients here are 127.0.0.1, so the total is tested with no per-address
cap."""
import socket
import ssl
import time

import pytest

from mx_env import MX
from sub_env import SubEnv


def greet(port, tls=False, timeout=10):
    """Connect and read the first reply line; (socket, line)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        s = SubEnv.client_ctx().wrap_socket(s)
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return s, buf.decode("ascii", "replace").strip()


def closed_by_server(s, timeout=5):
    s.settimeout(timeout)
    try:
        return s.recv(4096) == b""
    except (ssl.SSLError, ConnectionResetError):
        return True


def served_again(port, tls=False, timeout=10):
    """A new connection gets its 220 once the server saw the last one
    leave (retried until then)."""
    deadline = time.time() + timeout
    while True:
        s, line = greet(port, tls)
        if line.startswith("220 ") or time.time() > deadline:
            return s, line
        s.close()
        time.sleep(0.1)


def check_cap(port, host, n, want, tls=False):
    held = []
    try:
        for _ in range(n):
            # the start-up probe's connection may still be counted
            s, line = served_again(port, tls)
            held.append(s)
            assert line.startswith("220 " + host), line
        s, line = greet(port, tls)
        assert line == want, line
        assert closed_by_server(s)
        s.close()
        # one leaves: the next is served
        held.pop().close()
        s, line = served_again(port, tls)
        held.append(s)
        assert line.startswith("220 " + host), line
        # and the one after that is over the cap again
        s, line = greet(port, tls)
        assert line == want, line
        s.close()
    finally:
        for s in held:
            s.close()


@pytest.fixture
def mx(build, redis, tls_cert, free_port, tmp_path):
    envs = []

    def make(**params):
        m = MX(build, tmp_path / ("mx%d" % len(envs)), redis, free_port(),
               tls=tls_cert, **params)
        envs.append(m)
        return m.start()
    yield make
    for m in envs:
        m.cleanup()


@pytest.fixture
def sub(build, redis, tls_cert):
    envs = []

    def make(**params):
        e = SubEnv(build, redis, tls_cert, params=params)
        envs.append(e)
        return e.start()
    yield make
    for e in envs:
        e.cleanup()


def test_mx_per_address_cap(mx):
    m = mx(smtpd_client_connection_count_limit=3, smtpd_connection_limit=0)
    check_cap(m.port, "mx.demo.test", 3, "421 4.7.0 mx.demo.test Error: too "
              "many connections from 127.0.0.1")
    assert "refused connection from 127.0.0.1" in m.logtext()


def test_mx_total_cap(mx):
    m = mx(smtpd_client_connection_count_limit=0, smtpd_connection_limit=4)
    check_cap(m.port, "mx.demo.test", 4,
              "421 4.7.0 mx.demo.test Error: too many connections")


def test_mx_default_caps(mx):
    """50 per address by default (Postfix's default)."""
    m = mx()
    check_cap(m.port, "mx.demo.test", 50, "421 4.7.0 mx.demo.test Error: too "
              "many connections from 127.0.0.1")


def test_submission_per_address_cap(sub):
    e = sub(smtpd_client_connection_count_limit=2, smtpd_connection_limit=0)
    check_cap(e.submission_port, "sub.demo.test", 2, "421 4.7.0 sub.demo.test "
              "Error: too many connections from 127.0.0.1")
    # counted per port, as Postfix counts per service: 465 is not full
    s, line = greet(e.smtps_port, tls=True)
    assert line.startswith("220 "), line
    s.close()


def test_submission_total_cap(sub):
    e = sub(smtpd_client_connection_count_limit=0, smtpd_connection_limit=3)
    check_cap(e.submission_port, "sub.demo.test", 3,
              "421 4.7.0 sub.demo.test Error: too many connections")


def test_smtps_cap_answers_inside_tls(sub):
    e = sub(smtpd_client_connection_count_limit=1)
    check_cap(e.smtps_port, "sub.demo.test", 1, "421 4.7.0 sub.demo.test "
              "Error: too many connections from 127.0.0.1", tls=True)


def test_refused_connections_do_not_count(sub):
    """A refused connection holds no place: hammering a full port does
    not keep it full once the holders leave."""
    e = sub(smtpd_client_connection_count_limit=1)
    s, line = served_again(e.submission_port)
    assert line.startswith("220 ")
    for _ in range(20):
        r, line = greet(e.submission_port)
        assert line.startswith("421 4.7.0"), line
        r.close()
    s.close()
    s, line = served_again(e.submission_port)
    assert line.startswith("220 "), line
    s.close()
