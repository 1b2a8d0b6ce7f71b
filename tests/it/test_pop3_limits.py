"""POP3 and POP3S under the limits shared with IMAP and SMTP (issue 11):
shared/loginfail (failed logins counted per address and per (address,
user); a flood gets a temporary refusal that ends with the rate window; a
NAT's good users are neither refused nor delayed by one bad client), and
the connection caps of shared/conn (mra_client_connection_count_limit,
mra_connection_limit), POP3 and POP3S counted together.

The parameters are small so that the tests run in seconds. CFG_TIME
values are whole seconds, so the delay is 0 or 1s here (not 100ms)."""
import poplib
import socket
import ssl
import threading
import time

import pytest

from mra_env import MraEnv, USERS

ALL_USERS = dict(USERS, **{"carol@example.test": "carolpw"})
BAD_USER = "carol@example.test"

LOGINFAIL = {
    "anvil_rate_time_unit": "3s",
    "smtpd_client_auth_rate_limit": "10",
    "auth_failure_window": "1m",
}


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def make_env(build, tmp_path, tls_cert, free_port):
    envs = []

    def make(**params):
        env = MraEnv(build, tmp_path, tls_cert, free_port, users=ALL_USERS,
                     **params)
        envs.append(env)
        return env.start()
    yield make
    for env in envs:
        env.cleanup()


def login(env, user, password, tls=True):
    """One connection, USER/PASS, QUIT: (ok, reply, seconds of PASS)."""
    if tls:
        p = poplib.POP3_SSL("127.0.0.1", env.pop3s_port, context=tls_ctx(),
                            timeout=30)
    else:
        p = poplib.POP3("127.0.0.1", env.pop3_port, timeout=30)
    try:
        p.user(user)
        t0 = time.time()
        try:
            r = p.pass_(password)
            ok = True
        except poplib.error_proto as e:
            r = e.args[0]
            ok = False
        took = time.time() - t0
        try:
            p.quit()
        except (poplib.error_proto, OSError):
            pass
        return ok, r, took
    finally:
        p.close()


def test_nat_bad_client_does_not_lock_out_others(make_env):
    """One address (a NAT), one client failing 30 times (a phone with a
    stale password): the other users of that address log in meanwhile,
    without a refusal and without the bad client's delay."""
    env = make_env(auth_failure_delay="1s", auth_failure_delay_max="1s",
                   **LOGINFAIL)
    fails = []

    def bad(n):
        for _ in range(n):
            ok, r, _ = login(env, BAD_USER, "stale")
            assert not ok
            fails.append(r)

    threads = [threading.Thread(target=bad, args=(6,)) for _ in range(5)]
    for t in threads:
        t.start()
    good = []
    try:
        while any(t.is_alive() for t in threads):
            for user in ("alice@example.test", "bob@example.test"):
                good.append((user,) + login(env, user, ALL_USERS[user]))
            time.sleep(0.1)
    finally:
        for t in threads:
            t.join(120)
    assert len(fails) == 30
    # the bad client was refused or told its password is wrong, nothing else
    assert all(b"[AUTH]" in r or b"[SYS/TEMP] Too many failed logins" in r
               for r in fails), fails
    assert any(b"[SYS/TEMP] Too many failed logins" in r for r in fails)
    assert len(good) >= 4
    for user, ok, r, took in good:
        assert ok, (user, r)
        assert took < 0.9, (user, took)
    log = env.read_log()
    assert "pop3-login: passdb(%s,127.0.0.1): Invalid credentials" % BAD_USER \
        in log
    assert "stale" not in log


@pytest.mark.parametrize("tls", [True, False], ids=["pop3s", "pop3"])
def test_flood_refused_then_right_password_works(make_env, tls):
    """A flood of wrong passwords from one address gets the temporary
    refusal (RFC 3206 SYS/TEMP, no password checked); the right password
    works again within 60s after the last failure (the rate window is
    3s here)."""
    params = dict(LOGINFAIL, auth_failure_delay="0")
    if not tls:
        params["disable_plaintext_auth"] = "no"
    env = make_env(**params)
    refused = None
    for i in range(40):
        ok, r, _ = login(env, BAD_USER, "guess%d" % i, tls)
        assert not ok
        if b"[SYS/TEMP] Too many failed logins" in r:
            refused = i
            break
        assert b"[AUTH]" in r, r
    assert refused is not None and refused >= 10, refused
    # the refusal holds for the right password too while the window lasts
    # (a guesser learns nothing), then ends with it
    last = time.time()
    while True:
        ok, r, _ = login(env, BAD_USER, ALL_USERS[BAD_USER], tls)
        if ok:
            break
        assert b"[SYS/TEMP] Too many failed logins" in r, r
        assert time.time() - last < 60, "still refused after 60s"
        time.sleep(0.5)
    log = env.read_log()
    assert "pop3-login: login refused" in log


def _greet(env, tls):
    s = socket.create_connection(
        ("127.0.0.1", env.pop3s_port if tls else env.pop3_port), timeout=10)
    if tls:
        s = tls_ctx().wrap_socket(s)
    f = s.makefile("rb")
    return s, f, f.readline()


def _closed(s, f):
    try:
        return f.readline() == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def _served_again(env, tls, timeout=10):
    deadline = time.time() + timeout
    while True:
        s, f, line = _greet(env, tls)
        if line.startswith(b"+OK") or time.time() > deadline:
            return s, f, line
        s.close()
        time.sleep(0.1)


def test_per_address_cap_pop3_and_pop3s(make_env):
    """mra_client_connection_count_limit counts POP3 and POP3S together;
    the one over it gets the RFC 3206 SYS/TEMP refusal and is closed, and
    once one leaves the next is served."""
    env = make_env(mra_client_connection_count_limit="2")
    held = []
    try:
        s, f, line = _served_again(env, False)
        assert line.startswith(b"+OK"), line
        held.append(s)
        s, f, line = _served_again(env, True)
        assert line.startswith(b"+OK"), line
        held.append(s)
        for tls in (False, True):
            s, f, line = _greet(env, tls)
            assert line == b"-ERR [SYS/TEMP] Too many connections from your " \
                b"address\r\n", line
            assert _closed(s, f)
            s.close()
        held.pop().close()
        s, f, line = _served_again(env, True)
        assert line.startswith(b"+OK"), line
        held.append(s)
        s.sendall(b"CAPA\r\n")
        assert f.readline().startswith(b"+OK")
    finally:
        for s in held:
            s.close()


def test_total_cap(make_env):
    env = make_env(mra_connection_limit="2",
                   mra_client_connection_count_limit="0")
    held = []
    try:
        for tls in (True, False):
            s, f, line = _served_again(env, tls)
            assert line.startswith(b"+OK"), line
            held.append(s)
        s, f, line = _greet(env, False)
        assert line == b"-ERR [SYS/TEMP] Too many connections\r\n", line
        assert _closed(s, f)
        s.close()
    finally:
        for s in held:
            s.close()


def test_userip_limit(make_env):
    """mail_max_userip_connections (mra_userip, shared with IMAP): a second
    POP3 session of one user from one address is refused with IN-USE (RFC
    2449 §8.1.2: the password was right), another user is not; once the
    first leaves, the next login works."""
    env = make_env(mail_max_userip_connections="1")
    p = poplib.POP3_SSL("127.0.0.1", env.pop3s_port, context=tls_ctx(),
                        timeout=10)
    p.user("alice@example.test")
    p.pass_(ALL_USERS["alice@example.test"])
    try:
        ok, r, _ = login(env, "alice@example.test",
                         ALL_USERS["alice@example.test"])
        assert not ok and r.startswith(b"-ERR [IN-USE]"), r
        ok, r, _ = login(env, "bob@example.test", ALL_USERS["bob@example.test"])
        assert ok, r
    finally:
        p.quit()
    deadline = time.time() + 10
    while True:
        ok, r, _ = login(env, "alice@example.test",
                         ALL_USERS["alice@example.test"])
        if ok or time.time() > deadline:
            break
        time.sleep(0.1)
    assert ok, r


def test_sasl_failures_counted_and_delayed(make_env):
    """AUTH PLAIN: the result is revealed after loginfail's delay (asked
    once the exchange is over), failures are logged with the mechanism,
    and the flood refusal applies as for USER/PASS."""
    import base64
    env = make_env(auth_failure_delay="1s", auth_failure_delay_max="1s",
                   **LOGINFAIL)

    def auth(pw):
        ir = base64.b64encode(b"\0" + BAD_USER.encode() + b"\0" +
                              pw.encode()).decode()
        p = poplib.POP3_SSL("127.0.0.1", env.pop3s_port, context=tls_ctx(),
                            timeout=30)
        t0 = time.time()
        try:
            r = p._shortcmd("AUTH PLAIN " + ir)
        except poplib.error_proto as e:
            r = e.args[0]
        took = time.time() - t0
        p.close()
        return r, took

    r, took = auth("wrong1")
    assert r.startswith(b"-ERR [AUTH]"), r
    assert took < 0.9, took
    r, took = auth("wrong2")
    assert r.startswith(b"-ERR [AUTH]"), r
    assert took >= 0.9, took
    r, took = auth(ALL_USERS[BAD_USER])
    assert r.startswith(b"+OK"), r
    assert took >= 0.9, took      # the delay does not depend on the result
    log = env.read_log()
    assert ("pop3-login: passdb(%s,127.0.0.1): Invalid credentials, "
            "method=PLAIN" % BAD_USER) in log
    assert "wrong1" not in log
