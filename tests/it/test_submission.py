"""submission: AUTH over TLS only (587 STARTTLS, 465 implicit TLS, intake),
restrictions, local delivery (aliases, catch-all, alias domains, plus
addresses, quota, mbox), the XFORWARD IDENT de-duplication, crash safety,
and the outbound queue. Real Redis, real MariaDB, real clients (smtplib,
swaks)."""
import base64
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from sub_env import SubEnv, MySQLUsers, USERS, ALIASES


@pytest.fixture
def sub(build, redis, tls_cert):
    envs = []

    def make(**kw):
        e = SubEnv(build, redis, tls_cert, **kw).start()
        envs.append(e)
        return e
    yield make
    for e in envs:
        e.cleanup()


def msg(subject, body="hello\r\n", extra=""):
    return ("From: <alice@demo.test>\r\nTo: <x@demo.test>\r\n%s"
            "Subject: %s\r\n\r\n%s" % (extra, subject, body)).encode()


def split_delivered(data):
    """The bytes we sent, after our Return-Path/Delivered-To/Received."""
    hdr_end = data.index(b"\r\n\r\n")
    return data[:hdr_end], data[hdr_end + 4:]


def send_nosize(s, sender, rcpts, data):
    """MAIL without SIZE= (smtplib's sendmail always adds it), so the
    server learns the size only after DATA."""
    assert s.mail(sender)[0] == 250
    for r in rcpts:
        assert s.rcpt(r)[0] == 250
    return s.data(data)


def swaks(*args, timeout=60):
    return subprocess.run(["swaks", "--timeout", "20"] + list(args),
                          capture_output=True, text=True, timeout=timeout)


# ---- AUTH and TLS ------------------------------------------------------

def test_auth_not_offered_or_accepted_before_tls(sub):
    e = sub()
    with smtplib.SMTP("127.0.0.1", e.submission_port) as s:
        code, caps = s.ehlo("t")
        assert code == 250
        assert b"STARTTLS" in caps and b"AUTH" not in caps
        code, text = s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdABhbGljZS1wdw==")
        assert code >= 500, text
        s.starttls(context=e.client_ctx())
        code, caps = s.ehlo("t")
        assert b"AUTH PLAIN LOGIN" in caps or b"AUTH LOGIN PLAIN" in caps


def test_auth_plain_starttls_delivers_byte_exact(sub):
    e = sub()
    body = "line one\r\n..dot line\r\n" + "x" * 998 + "\r\n"
    data = msg("plain over starttls", body, extra="Message-ID: <m1@c>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n")
    with e.smtp(login="alice@demo.test") as s:
        assert s.sendmail("alice@demo.test", ["bob@demo.test"], data) == {}
    got = e.wait_messages("bob@demo.test", 1)
    assert len(got) == 1
    name, raw = got[0]
    assert raw.startswith(b"Return-Path: <alice@demo.test>\r\nDelivered-To: bob@demo.test\r\nReceived: ")
    # the client's bytes follow the trace headers unchanged (no fixes needed)
    assert raw.endswith(data)  # smtplib stuffs the dot; we unstuff it
    assert raw.count(b"Message-ID:") == 1
    assert (",S=%d" % len(raw)).encode() in name.encode()
    assert "sasl_username=alice@demo.test" in e.log()


def test_msa_adds_message_id_and_date(sub):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        s.sendmail("alice@demo.test", ["bob@demo.test"], msg("no id"))
    raw = e.wait_messages("bob@demo.test", 1)[0][1]
    hdr, body = split_delivered(raw)
    assert re.search(rb"\r\nMessage-ID: <[^>]+@sub\.demo\.test>\r\n", hdr)
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n", hdr)
    # RFC 5321 §4.4: the trace fields stay on top
    assert hdr.index(b"Received:") < hdr.index(b"Date:")
    assert body == b"hello\r\n"


def test_auth_login_over_smtps_with_swaks(sub):
    e = sub()
    r = swaks("--server", "127.0.0.1", "--port", str(e.smtps_port), "--tlsc",
              "--auth", "LOGIN", "--auth-user", "carol@demo.test",
              "--auth-password", "carol-pw", "--from", "carol@demo.test",
              "--to", "alice@demo.test", "--header", "Subject: swaks-465")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0" in r.stdout
    got = e.wait_messages("alice@demo.test", 1)
    assert len(got) == 1 and b"Subject: swaks-465" in got[0][1]


def test_auth_plain_starttls_with_swaks(sub):
    e = sub()
    r = swaks("--server", "127.0.0.1", "--port", str(e.submission_port), "--tls",
              "--auth", "PLAIN", "--auth-user", "bob@demo.test",
              "--auth-password", "bob-pw", "--from", "bob@demo.test",
              "--to", "alice@demo.test", "--header", "Subject: swaks-587")
    assert r.returncode == 0, r.stdout + r.stderr
    got = e.wait_messages("alice@demo.test", 1)
    assert len(got) == 1 and b"Subject: swaks-587" in got[0][1]


def test_wrong_password_and_unknown_user_same_reply(sub):
    e = sub()
    with e.smtp() as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as bad_pw:
            s.login("alice@demo.test", "wrong")
    with e.smtp() as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as no_user:
            s.login("nobody@demo.test", "wrong")
    assert bad_pw.value.smtp_code == no_user.value.smtp_code == 535
    assert bad_pw.value.smtp_error == no_user.value.smtp_error
    assert b"5.7.8" in bad_pw.value.smtp_error
    log = e.log()
    assert re.search(r"warning: \S+\[127\.0\.0\.1\]: SASL (PLAIN|LOGIN) "
                     r"authentication failed", log), log


def test_auth_failure_log_names_address_and_user(sub):
    """fail2ban's postfix-sasl filter wants the address; the log also
    names the user tried (cleaned and bounded), never the password."""
    e = sub(params={"auth_failure_delay": "0"})
    with e.smtp() as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice@example.test", "Secret-Pw-1")
    # a name with control bytes and far too long
    evil = "ev\x01il\x1b[31m" + "x" * 600 + "@example.test"
    payload = base64.b64encode(b"\0" + evil.encode() + b"\0Secret-Pw-2").decode()
    with e.smtp() as s:
        assert s.docmd("AUTH PLAIN " + payload)[0] == 535
    # AUTH LOGIN: the name arrives in a step of its own
    with e.smtp() as s:
        assert s.docmd("AUTH LOGIN")[0] == 334
        assert s.docmd(base64.b64encode(b"bob@example.test").decode())[0] == 334
        assert s.docmd(base64.b64encode(b"Secret-Pw-3").decode())[0] == 535
    log = e.log()
    assert re.search(r"submission\[\d+\]: warning: unknown\[127\.0\.0\.1\]: "
                     r"SASL (PLAIN|LOGIN) "
                     r"authentication failed: authentication failure, "
                     r"sasl_username=alice@example\.test$", log, re.M), log
    assert re.search(r"SASL LOGIN authentication failed: authentication "
                     r"failure, sasl_username=bob@example\.test$", log, re.M), log
    assert "Secret-Pw" not in log
    assert "warning: warning:" not in log
    assert "\x01" not in log and "\x1b" not in log
    line = [l for l in log.splitlines()
            if "authentication failure, sasl_username=ev" in l]
    assert len(line) == 1, log
    name = line[0].split("sasl_username=", 1)[1]
    # fail2ban's delimiters ([ ] and the like) are cleaned too
    assert name.startswith("ev?il??31m") and len(name) <= 100, name


def test_broken_sasl_auth_clients(sub):
    """Postfix broken_sasl_auth_clients: the pre-RFC 2554 "AUTH=" form as
    well, only when asked for."""
    for value, want in (("yes", True), ("no", False)):
        e = sub(params={"broken_sasl_auth_clients": value})
        with e.smtp() as s:
            code, caps = s.ehlo("t")
            lines = caps.decode().splitlines()
            assert any(l.startswith("AUTH ") and "PLAIN" in l
                       for l in lines), lines
            assert any(l.startswith("AUTH=") and "PLAIN" in l
                       for l in lines) == want, lines
        # never before TLS, in either form
        with smtplib.SMTP("127.0.0.1", e.submission_port) as s:
            code, caps = s.ehlo("t")
            assert b"AUTH" not in caps


def test_auth_failures_delay_then_limit_per_connection(sub):
    e = sub(params={"smtpd_sasl_failure_limit": "3"})
    with e.smtp() as s:
        times = []
        for _ in range(3):
            t0 = time.time()
            code, _ = s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdAB4eHg=")
            times.append(time.time() - t0)
            assert code == 535
        # the pair's delay grows (auth_failure_delay 1s): 0, 1 s, 2 s
        assert times[1] >= 0.9 and times[2] >= 1.9, times
        code, text = s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdAB4eHg=")
        assert code == 421, text


def test_flooding_address_refuses_only_failed_names(sub, redis):
    """smtpd_client_auth_rate_limit: the names that failed from a flooding
    address get 454 (even with the right password: nothing is checked),
    a name that has not failed logs in."""
    e = sub(params={"smtpd_client_auth_rate_limit": "2",
                    "auth_failure_delay": "0"})
    for _ in range(2):
        with e.smtp() as s:
            assert s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdABub3Bl")[0] == 535
    assert int(redis.command("GET", "loginfail:r:127.0.0.1")) >= 2
    with e.smtp() as s:
        code, text = s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdABhbGljZS1wdw==")
        assert code == 454 and b"4.7.0 Too many failed" in text, text
    with e.smtp(login="bob@demo.test") as s:
        assert s.mail("bob@demo.test")[0] == 250
    log = e.log()
    assert re.search(r"warning: unknown\[127\.0\.0\.1\]: SASL authentication "
                     r"refused: too many failed logins from this address, "
                     r"sasl_username=alice@demo\.test", log), log
    # the refused attempt checked no password: no failure line for it
    assert len(re.findall(r"sasl_username=alice@demo\.test$", log, re.M)) == 2


def auth_plain(user, password):
    return "AUTH PLAIN " + base64.b64encode(
        b"\0" + user.encode() + b"\0" + password.encode()).decode()


def timed(s, cmd):
    t0 = time.time()
    code, text = s.docmd(cmd)
    return code, text, time.time() - t0


def test_unknown_user_waits_like_a_wrong_password(sub):
    """The failed-login delay is per (address, user) and waited before
    the answer whatever it is: an unknown name is not told apart by
    time."""
    e = sub()   # auth_failure_delay = 1s
    waits = {}
    for user in ("alice@demo.test", "nobody@demo.test"):
        with e.smtp() as s:
            assert timed(s, auth_plain(user, "wrong"))[0] == 535
            code, _, dt = timed(s, auth_plain(user, "wrong"))
            assert code == 535
            waits[user] = dt
    assert all(0.9 <= w < 3 for w in waits.values()), waits
    assert abs(waits["alice@demo.test"] - waits["nobody@demo.test"]) < 0.5, waits


# Issue 11, the NAT case: one office address, one phone with an old
# password retrying, everyone else logging in meanwhile. (The delays are
# whole seconds: CFG_TIME has no smaller unit.)
NAT_PARAMS = {"auth_failure_delay": "1s", "auth_failure_delay_max": "2s",
              "smtpd_client_auth_rate_limit": "5",
              "anvil_rate_time_unit": "3s"}


def test_nat_one_failing_client_locks_nobody_out(sub):
    e = sub(params=NAT_PARAMS)
    bad_cmd = auth_plain("alice@demo.test", "old-password")
    lock = threading.Lock()
    left = [40]
    bad, good, errors = [], [], []
    done = threading.Event()

    def bad_client():
        s = None
        try:
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                while True:
                    if s is None:
                        s = e.smtp()
                    code, text, dt = timed(s, bad_cmd)
                    if code != 421:       # smtpd_sasl_failure_limit
                        break
                    s.close()
                    s = None
                with lock:
                    bad.append((code, dt, time.time()))
        except Exception as x:            # noqa: BLE001
            errors.append(repr(x))
        finally:
            if s is not None:
                s.close()

    def good_clients():
        try:
            while not done.is_set():
                for user in ("bob@demo.test", "carol@demo.test"):
                    t0 = time.time()
                    with e.smtp() as s:
                        code, _ = s.docmd(auth_plain(user, USERS[user][0]))
                        good.append((user, code, time.time() - t0))
                time.sleep(0.2)
        except Exception as x:            # noqa: BLE001
            errors.append(repr(x))

    g = threading.Thread(target=good_clients)
    g.start()
    workers = [threading.Thread(target=bad_client) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    done.set()
    g.join(60)
    assert errors == [], errors
    assert len(bad) == 40
    codes = [c for c, _, _ in bad]
    assert set(codes) <= {535, 454}, codes
    assert 535 in codes and 454 in codes, codes
    # delayed, never past auth_failure_delay_max (2 s here, 15 s at most)
    assert any(c == 535 and dt >= 0.9 for c, dt, _ in bad), bad
    assert max(dt for _, dt, _ in bad) < 2 + 2, bad
    assert max(dt for _, dt, _ in bad) < 16
    # the others were never refused nor held
    assert len(good) >= 4, good
    assert all(code == 235 for _, code, _ in good), good
    assert max(dt for _, _, dt in good) < 5, good
    # the phone gets the new password: accepted within 60 s of its last
    # failure (once the flood's rate window is over)
    last = max(t for _, _, t in bad)
    seen = []
    while time.time() - last < 60:
        with e.smtp() as s:
            code, _ = s.docmd(auth_plain("alice@demo.test", "alice-pw"))
        seen.append(code)
        if code == 235:
            break
        time.sleep(0.5)
    assert seen[-1] == 235 and set(seen) <= {235, 454}, seen
    log = e.log()
    refused = re.findall(r"SASL authentication refused: .*sasl_username=(\S+),",
                         log)
    assert refused and set(refused) == {"alice@demo.test"}, refused
    assert len(re.findall(r"authentication failed: authentication failure, "
                          r"sasl_username=alice@demo\.test$", log, re.M)) == \
        codes.count(535)


def test_redis_killed_auth_answers_from_memory(sub, redis):
    """Redis gone mid-test: the failed-login counts are kept in memory as
    well, so AUTH still answers (and still waits for the failing pair);
    mail goes on as it does without Redis."""
    e = sub()   # auth_failure_delay = 1s
    bad = auth_plain("alice@demo.test", "wrong")
    with e.smtp() as s:
        assert s.docmd(bad)[0] == 535
    redis.kill()
    time.sleep(0.3)
    with e.smtp() as s:
        code, _, dt = timed(s, bad)
        assert code == 535 and 0.9 <= dt < 5, (code, dt)
    with e.smtp() as s:
        code, _, dt = timed(s, auth_plain("bob@demo.test", "bob-pw"))
        assert code == 235 and dt < 2, (code, dt)
        # local delivery needs no Redis
        assert s.sendmail("bob@demo.test", ["carol@demo.test"],
                          msg("local, Redis down")) == {}
        # the outbound queue does: 4xx
        code, text = send_nosize(s, "bob@demo.test", ["x@remote.example"],
                                 msg("remote, Redis down"))
        assert 400 <= code < 500, text
    assert len(e.wait_messages("carol@demo.test", 1)) == 1


def test_auth_never_waits_past_delay_max(sub, redis):
    """A Redis that stops answering (SIGSTOP: connected, silent until
    redisc's watchdog gives up) does not hold AUTH past
    auth_failure_delay_max."""
    e = sub(params={"auth_failure_delay_max": "2s"})
    with e.smtp(login="bob@demo.test"):
        pass   # Redis is connected and answers
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        with e.smtp() as s:
            code, _, dt = timed(s, auth_plain("bob@demo.test", "bob-pw"))
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    assert code == 235 and 1.9 <= dt < 2 + 1.5, (code, dt)
    assert "failed-login check did not answer within 2000 ms" in e.log()


# ---- restrictions ------------------------------------------------------

def test_unauthenticated_mail_refused_by_default(sub):
    e = sub()
    with e.smtp() as s:
        code, text = s.mail("alice@demo.test")
        assert code == 530 and b"5.7.0" in text


def test_unauthenticated_relay_refused(sub):
    e = sub(params={"smtpd_client_restrictions": "",
                    "smtpd_relay_restrictions":
                        "permit_sasl_authenticated, reject_unauth_destination"})
    with e.smtp() as s:
        assert s.mail("someone@remote.example")[0] == 250
        code, text = s.rcpt("victim@elsewhere.example")
        assert code == 554 and b"5.7.1" in text and b"Relay access denied" in text
        # mail for our own users is fine (reject_unauth_destination)
        assert s.rcpt("alice@demo.test")[0] == 250


# Issue #9: with the old defaults (permit_mynetworks first, mynetworks =
# 127.0.0.0/8) every local process had an open relay on 587/465. Postfix's
# submission service requires AUTH whatever the address; so do we, and the
# client here is 127.0.0.1, inside mynetworks.
LOOPBACK_NETS = {"mynetworks": "127.0.0.0/8 [::1]/128"}


def check_auth_required_then_allowed(s, login):
    code, text = s.mail("alice@demo.test")
    assert code == 530 and text.startswith(b"5.7.0 Authentication required"), text
    assert s.rcpt("victim@elsewhere.example")[0] >= 500
    assert s.rcpt("bob@demo.test")[0] >= 500
    s.rset()
    s.login(login, USERS[login][0])
    assert s.mail("alice@demo.test")[0] == 250
    assert s.rcpt("victim@elsewhere.example")[0] == 250
    assert s.rcpt("bob@demo.test")[0] == 250


def test_no_relay_by_address_on_587(sub):
    e = sub(params=LOOPBACK_NETS)
    with e.smtp() as s:
        check_auth_required_then_allowed(s, "alice@demo.test")


def test_no_relay_by_address_on_465(sub):
    e = sub(params=LOOPBACK_NETS)
    with e.smtps() as s:
        check_auth_required_then_allowed(s, "alice@demo.test")


def test_no_local_delivery_without_auth_on_587(sub):
    """Postfix submission requires AUTH for all mail, local too; also when
    an operator empties the client list, the relay list still asks for
    a login at RCPT."""
    e = sub(params=dict(LOOPBACK_NETS, smtpd_client_restrictions=""))
    with e.smtp() as s:
        assert s.mail("someone@example.net")[0] == 250
        code, text = s.rcpt("bob@demo.test")
        assert code == 530 and b"5.7.0" in text, text
        code, text = s.rcpt("victim@elsewhere.example")
        assert code == 530 and b"5.7.0" in text, text
    assert e.messages("bob@demo.test") == []


def test_permit_mynetworks_refused_on_submission_ports(build, redis, tls_cert):
    for name in ("smtpd_client_restrictions", "smtpd_relay_restrictions"):
        e = SubEnv(build, redis, tls_cert, params={
            name: "permit_mynetworks, permit_sasl_authenticated, reject"})
        try:
            with pytest.raises(RuntimeError):
                e.start()
            assert e.proc.wait(5) == 1
            log = e.log()
            assert name in log and "permit_mynetworks is not allowed" in log
            assert "intake_client_restrictions" in log
        finally:
            e.cleanup()


def test_intake_trusts_address_only_when_configured(sub):
    """On the intake a client in mynetworks may send without AUTH once
    intake_client_restrictions says so, to our domains only (the intake
    relay list); XFORWARD IDENT is honoured for it."""
    e = sub(params=dict(LOOPBACK_NETS, intake_client_restrictions=
                        "permit_mynetworks, permit_sasl_authenticated, reject"))
    with e.smtp(port=e.intake_port) as s:
        assert b"XFORWARD" in s.ehlo_resp
        assert s.docmd("XFORWARD IDENT=ADDR0001")[0] == 250
        assert s.mail("someone@example.net")[0] == 250
        code, text = s.rcpt("victim@elsewhere.example")
        assert code == 554 and b"Relay access denied" in text, text
        assert s.rcpt("carol@demo.test")[0] == 250
        assert s.data(msg("by address"))[0] == 250
    assert len(e.wait_messages("carol@demo.test", 1)) == 1
    assert "ident=ADDR0001" in e.log()
    # 587 is not the intake: no trust by address there
    with e.smtp() as s:
        assert s.mail("someone@example.net")[0] == 530


def test_authenticated_relay_allowed(sub, redis):
    # nothing listens at the relayhost: the message waits in the queue
    e = sub(params={"relayhost": "[127.0.0.1]:1"})
    with e.smtp(login="alice@demo.test") as s:
        assert s.sendmail("alice@demo.test", ["bob@remote.example"],
                          msg("outbound")) == {}
    keys = redis.command("KEYS", "mq:out:m:*")
    assert len(keys) == 1
    h = redis.command("HGETALL", keys[0])
    assert "bob@remote.example" in h
    data = redis.command("GET", keys[0].replace(":m:", ":d:"))
    assert "Subject: outbound" in data
    deadline = time.time() + 10
    while "relay=127.0.0.1" not in e.log() and time.time() < deadline:
        time.sleep(0.1)
    assert "status=deferred" in e.log()


def test_sender_login_mismatch_refused(sub):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        code, text = s.mail("bob@demo.test")
        assert code == 553 and b"5.7.1" in text
        s.rset()
        # an alias that points to alice may be used by alice
        assert s.mail("sales@demo.test")[0] == 250
        s.rset()
        assert s.mail("alice+list@demo.test")[0] == 250
        s.rset()
        assert s.mail("stranger@remote.example")[0] == 553


def test_unknown_recipient_refused_at_rcpt(sub):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        s.mail("alice@demo.test")
        code, text = s.rcpt("nobody@demo.test")
        assert code == 550 and b"5.1.1" in text


# ---- local delivery ----------------------------------------------------

def test_alias_catchall_aliasdomain_plus_delivery(sub):
    e = sub()
    cases = [("team@demo.test", ["alice@demo.test", "bob@demo.test"]),
             ("whoever@other.test", ["bob@demo.test"]),
             ("carol@alias.test", ["carol@demo.test"]),
             ("alice+tag@demo.test", ["alice@demo.test"]),
             ("chain1@demo.test", ["carol@demo.test"])]
    expect = {}
    with e.smtp(login="alice@demo.test") as s:
        for rcpt, boxes in cases:
            data = msg("to " + rcpt, "for %s\r\n" % rcpt)
            assert s.sendmail("alice@demo.test", [rcpt], data) == {}
            for b in boxes:
                expect.setdefault(b, []).append(data)
    for box, datas in expect.items():
        got = e.wait_messages(box, len(datas))
        assert len(got) == len(datas), (box, got)
        for d in datas:
            assert any(raw.endswith(d) for _, raw in got), (box, d)
    plus = [raw for _, raw in e.messages("alice@demo.test") if b"to alice+tag" in raw]
    assert plus and b"Delivered-To: alice+tag@demo.test\r\n" in plus[0]


def test_alias_loop_refused(sub):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        s.mail("alice@demo.test")
        code, text = s.rcpt("loop1@demo.test")
        assert code == 550 and b"5.4.6" in text


def test_delivered_to_loop_bounces(sub):
    e = sub()
    data = msg("looped", extra="Delivered-To: carol@demo.test\r\n")
    with e.smtp(login="alice@demo.test") as s:
        with pytest.raises(smtplib.SMTPDataError) as ex:
            s.sendmail("alice@demo.test", ["carol@demo.test"], data)
        assert ex.value.smtp_code == 550 and b"5.4.6" in ex.value.smtp_error
    assert e.messages("carol@demo.test") == []


def test_mbox_delivery(sub):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        s.sendmail("alice@demo.test", ["mboxer@demo.test"],
                   msg("mbox one", "From the start\r\nplain\r\n"))
        s.sendmail("alice@demo.test", ["mboxer@demo.test"], msg("mbox two"))
    with open(os.path.join(e.mail, "demo.test/mboxer.mbox"), "rb") as f:
        box = f.read()
    assert box.startswith(b"From alice@demo.test ")
    assert box.count(b"\nFrom alice@demo.test ") == 1
    assert b"\n>From the start\n" in box and b"\r\n" not in box
    assert not os.path.exists(os.path.join(e.mail, "demo.test/mboxer.mbox.lock"))


def test_quota_refused_at_rcpt_when_size_known(sub):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        assert s.mail("alice@demo.test", ["SIZE=5000"])[0] == 250
        code, text = s.rcpt("small@demo.test")
        assert code == 552 and b"5.2.2" in text


def test_quota_refused_after_data_and_maildirsize(sub):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        s.sendmail("alice@demo.test", ["small@demo.test"], msg("fits"))
        code, text = send_nosize(s, "alice@demo.test", ["small@demo.test"],
                                 msg("too big", "y" * 4000 + "\r\n"))
        assert code == 552 and b"5.2.2" in text
    got = e.messages("small@demo.test")
    assert len(got) == 1
    with open(os.path.join(e.maildir("small@demo.test"), "maildirsize")) as f:
        lines = f.read().splitlines()
    assert lines[0] == "3000S"
    assert sum(int(l.split()[0]) for l in lines[1:]) == len(got[0][1])


def test_partial_permanent_failure_bounces_to_sender(sub, redis):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        s.sendmail("alice@demo.test", ["small@demo.test"], msg("fill", "z" * 2000 + "\r\n"))
        # bob gets it, small is over quota: 250 and a DSN to alice
        code, text = send_nosize(s, "alice@demo.test",
                                 ["bob@demo.test", "small@demo.test"],
                                 msg("mixed", "w" * 2000 + "\r\n"))
        assert code == 250, text
    assert len(e.wait_messages("bob@demo.test", 1)) == 1
    # the report goes through the outbound queue to alice's own Maildir
    got = e.wait_messages("alice@demo.test", 1)
    assert len(got) == 1, e.log()
    dsn = got[0][1]
    assert b"Return-Path: <>" in dsn
    assert b"message/delivery-status" in dsn and b"Status: 5.2.2" in dsn, dsn
    assert b"Final-Recipient: rfc822; small@demo.test" in dsn


# ---- intake, XFORWARD, IDENT --------------------------------------------

def intake_send(e, ident, data, rcpt="carol@demo.test"):
    # the forwarder's order: EHLO, STARTTLS, EHLO, AUTH, XFORWARD, MAIL
    with e.smtp(port=e.intake_port) as s:
        assert b"XFORWARD" in s.ehlo_resp
        s.login("relay@mx.internal", e.users["relay@mx.internal"][0])
        code, text = s.docmd("XFORWARD NAME=mail.example.net ADDR=192.0.2.7 "
                             "PROTO=ESMTP HELO=mail.example.net IDENT=%s" % ident)
        assert code == 250, text
        s.mail("someone@example.net")
        assert s.rcpt(rcpt)[0] == 250
        return s.data(data)


@pytest.mark.parametrize("nets", ["", LOOPBACK_NETS["mynetworks"]])
def test_intake_requires_tls_and_auth(sub, nets):
    e = sub(params={"mynetworks": nets})
    with smtplib.SMTP("127.0.0.1", e.intake_port) as s:
        s.ehlo("mx")
        code, _ = s.mail("a@example.net")
        assert code >= 500
    with e.smtp(port=e.intake_port) as s:
        assert s.mail("a@example.net")[0] == 530


@pytest.mark.parametrize("nets", ["", LOOPBACK_NETS["mynetworks"]])
def test_xforward_only_for_relay_login(sub, nets):
    # a client in mynetworks gets no XFORWARD on 587 either (an IDENT
    # sent there could make the intake discard the MX's message later)
    e = sub(params={"mynetworks": nets})
    with e.smtp(port=e.submission_port, login="alice@demo.test") as s:
        code, caps = s.ehlo("x")
        assert b"XFORWARD" not in caps
        code, _ = s.docmd("XFORWARD IDENT=ABC")
        assert code >= 500
    # on the intake a user login may not send at all (XFORWARD is offered
    # there before AUTH, as the forwarder says EHLO only before AUTH)
    with e.smtp(port=e.intake_port, login="alice@demo.test") as s:
        code, caps = s.ehlo("x")
        assert b"XFORWARD" not in caps
        code, text = s.mail("alice@demo.test")
        assert code == 554 and b"5.7.1" in text


@pytest.mark.parametrize("nets", ["", LOOPBACK_NETS["mynetworks"]])
def test_intake_xforward_refused_after_user_login(sub, nets):
    """XFORWARD is offered on the intake before AUTH (the forwarder says
    EHLO only then), but the engine asks again at the command: a user
    login is refused, a relay login accepted; mynetworks alone (not
    named in intake_client_restrictions) changes nothing."""
    e = sub(params={"mynetworks": nets})
    with e.smtp(port=e.intake_port) as s:
        assert b"XFORWARD" in s.ehlo_resp
        s.login("alice@demo.test", e.users["alice@demo.test"][0])
        code, text = s.docmd("XFORWARD NAME=spoof.example ADDR=192.0.2.99")
        assert code == 550 and text == b"5.7.0 Error: insufficient authorization", text
        code, caps = s.ehlo("x")
        assert b"XFORWARD" not in caps
    # attributes sent before a user login are dropped with the offer
    with e.smtp(port=e.intake_port) as s:
        assert s.docmd("XFORWARD ADDR=192.0.2.98")[0] == 250
        s.login("alice@demo.test", e.users["alice@demo.test"][0])
        assert s.docmd("XFORWARD NAME=spoof.example")[0] == 550
    with e.smtp(port=e.intake_port) as s:
        s.login("relay@mx.internal", e.users["relay@mx.internal"][0])
        code, text = s.docmd("XFORWARD NAME=mail.example.net ADDR=192.0.2.7")
        assert code == 250, text
        code, caps = s.ehlo("x")
        assert b"XFORWARD" in caps


def test_xforward_ident_duplicate_not_delivered_twice(sub, redis):
    e = sub()
    data = msg("from the internet", "once only\r\n")
    code, text = intake_send(e, "4F2A9C01D3", data)
    assert code == 250, text
    code, text = intake_send(e, "4F2A9C01D3", data)
    assert code == 250, text
    got = e.wait_messages("carol@demo.test", 1)
    time.sleep(0.3)
    got = e.messages("carol@demo.test")
    assert len(got) == 1 and got[0][1].endswith(data)
    assert redis.command("GET", "sub:ident:4F2A9C01D3") is not None
    assert "already delivered" in e.log()
    # XFORWARD values end up in the Received: header
    assert b"192.0.2.7" in got[0][1]


def test_ident_retry_after_unfinished_attempt_finds_copy_in_cur(sub, redis):
    """A crash after the Maildir write left the IDENT marked pending, and
    the reader moved the message to cur/: the retry searches and finds it."""
    e = sub()
    data = msg("moved to cur")
    assert intake_send(e, "BEEF0002", data)[0] == 250
    md = e.maildir("carol@demo.test")
    (name, _), = e.messages("carol@demo.test")
    os.rename(os.path.join(md, "new", name), os.path.join(md, "cur", name + ":2,S"))
    redis.command("SET", "sub:ident:BEEF0002", "pending")
    assert intake_send(e, "BEEF0002", data)[0] == 250
    time.sleep(0.3)
    assert e.messages("carol@demo.test") == []
    assert len(e.messages("carol@demo.test", "cur")) == 1
    assert redis.command("GET", "sub:ident:BEEF0002") != "pending"


def test_ident_file_stem_closes_crash_window(sub, redis):
    """A crash after the Maildir rename but before the IDENT record: the
    retry finds the file by its stem and does not deliver again."""
    e = sub()
    data = msg("crash window")
    assert intake_send(e, "CAFE0001", data)[0] == 250
    redis.command("DEL", "sub:ident:CAFE0001")
    assert intake_send(e, "CAFE0001", data)[0] == 250
    time.sleep(0.3)
    assert len(e.messages("carol@demo.test")) == 1


# ---- crash safety --------------------------------------------------------

def test_kill9_loses_nothing_acknowledged(sub):
    e = sub()
    acked = []
    stop = threading.Event()
    lock = threading.Lock()

    def sender(n):
        try:
            with e.smtp(login="alice@demo.test") as s:
                i = 0
                while not stop.is_set():
                    data = msg("k9-%d-%d" % (n, i), ("payload %d %d\r\n" % (n, i)) * 200)
                    try:
                        s.sendmail("alice@demo.test", ["bob@demo.test"], data)
                    except Exception:
                        return
                    with lock:
                        acked.append(data)
                    i += 1
        except Exception:
            return

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    e.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 10
    got = [raw for _, raw in e.messages("bob@demo.test")]
    for d in acked:
        assert any(raw.endswith(d) for raw in got), "acknowledged message lost"
    # nothing half-written under new/: every file is a complete message
    for name, raw in e.messages("bob@demo.test"):
        size = int(re.search(r",S=(\d+)", name).group(1))
        assert size == len(raw)
        assert raw.endswith(b"\r\n") and b"Subject: k9-" in raw
        assert raw.split(b"\r\n\r\n", 1)[1].count(b"payload") == 200


# ---- MySQL (Postfix Admin schema) --------------------------------------

def test_mysql_postfixadmin_tables(build, redis, tls_cert, mariadb):
    users = MySQLUsers(mariadb)
    users.load(USERS, [a for a in ALIASES if not a[0].startswith("@alias")],
               alias_domains=[("alias.test", "demo.test")])
    e = SubEnv(build, redis, tls_cert, mysql=users).start()
    try:
        with e.smtp(login="alice@demo.test") as s:
            assert s.mail("bob@demo.test")[0] == 553
            s.rset()
            for rcpt in ["team@demo.test", "bob+x@demo.test", "x@other.test",
                         "bob@alias.test"]:
                assert s.sendmail("alice@demo.test", [rcpt], msg("sql " + rcpt)) == {}
            s.mail("alice@demo.test")
            assert s.rcpt("ghost@demo.test")[0] == 550
            s.rset()
            s.mail("alice@demo.test", ["SIZE=9000"])
            assert s.rcpt("small@demo.test")[0] == 552
        got = e.wait_messages("bob@demo.test", 4)
        subjects = sorted(re.search(rb"Subject: (\S+ \S+)", r).group(1) for _, r in got)
        assert subjects == [b"sql bob+x@demo.test", b"sql bob@alias.test",
                            b"sql team@demo.test", b"sql x@other.test"]
        assert len(e.wait_messages("alice@demo.test", 1)) == 1
        # a quote in the user name is data, not SQL
        with e.smtp() as s:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login("x' OR '1'='1", "x")
    finally:
        e.cleanup()


# ---- outbound: MX records from a local DNS server, a loopback sink ------

class Sink:
    """A small SMTP server on 127.0.0.1 that stores what it accepts and
    refuses recipients whose local part starts with "reject"."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        self.helos = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        f = c.makefile("rb")
        send = lambda s: c.sendall(s.encode() + b"\r\n")  # noqa: E731
        send("220 sink.remote.example ESMTP")
        sender, rcpts = None, []
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode("latin-1").strip()
                up = cmd.upper()
                if up.startswith("EHLO") or up.startswith("HELO"):
                    with self.lock:
                        self.helos.append(cmd)
                    send("250-sink.remote.example\r\n250 PIPELINING")
                elif up.startswith("MAIL FROM:"):
                    sender, rcpts = cmd[10:].strip(), []
                    send("250 2.1.0 Ok")
                elif up.startswith("RCPT TO:"):
                    addr = cmd[8:].strip().strip("<>")
                    if addr.startswith("reject"):
                        send("550 5.1.1 <%s>: no such user here" % addr)
                    else:
                        rcpts.append(addr)
                        send("250 2.1.5 Ok")
                elif up == "DATA" and not rcpts:
                    send("554 5.5.1 Error: no valid recipients")
                elif up == "DATA":
                    send("354 go ahead")
                    data = b""
                    while True:
                        l2 = f.readline()
                        if l2 in (b".\r\n", b""):
                            break
                        data += l2[1:] if l2.startswith(b"..") else l2
                    with self.lock:
                        self.messages.append((sender, rcpts, data))
                    send("250 2.0.0 Ok: stored")
                elif up == "RSET":
                    send("250 2.0.0 Ok")
                elif up == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.1 not here")
        except OSError:
            return
        finally:
            c.close()

    def wait(self, n, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.1)
        return list(self.messages)

    def close(self):
        self.sock.close()


@pytest.fixture
def dns(free_port, tmp_path):
    port = free_port()
    p = subprocess.Popen(
        ["dnsmasq", "--no-daemon", "--port=%d" % port, "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--pid-file=" + str(tmp_path / "dnsmasq.pid"), "--local=/example/",
         # remote.example: two MX hosts; the preferred one (5) is mx0
         "--mx-host=remote.example,mx1.remote.example,10",
         "--mx-host=remote.example,mx0.remote.example,5",
         "--host-record=mx0.remote.example,127.0.0.1",
         "--host-record=mx1.remote.example,127.0.0.1",
         # nomx.example: no MX, only an address record (RFC 5321 §5.1)
         "--host-record=nomx.example,127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    assert p.poll() is None, "dnsmasq did not start"
    yield "127.0.0.1:%d" % port
    p.terminate()
    p.wait(10)


def outbound_params(dns, sink):
    return {"smtp_dns_resolver": dns, "smtp_tcp_port": str(sink.port),
            "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
            "queue_run_delay": "1s"}


def test_outbound_via_mx_records(sub, dns, redis):
    sink = Sink()
    try:
        e = sub(params=outbound_params(dns, sink))
        with e.smtp(login="alice@demo.test") as s:
            assert s.sendmail("alice@demo.test", ["friend@remote.example"],
                              msg("to the world", "far away\r\n")) == {}
            assert s.sendmail("alice@demo.test", ["x@nomx.example"],
                              msg("no mx")) == {}
            # an alias that forwards off-site
            assert s.sendmail("alice@demo.test", ["fwd@demo.test"],
                              msg("forwarded")) == {}
        got = sink.wait(3, timeout=30)
        assert len(got) == 3, e.log()
        by_rcpt = {tuple(r): (snd, d) for snd, r, d in got}
        snd, data = by_rcpt[("friend@remote.example",)]
        assert snd == "<alice@demo.test>"
        assert data.endswith(b"far away\r\n") and b"Subject: to the world" in data
        assert ("someone@remote.example",) in by_rcpt
        assert len(e.wait_messages("carol@demo.test", 1)) == 1
        log = e.log()
        # MX preference order: mx0 (5) before mx1 (10); the address record
        # for a domain without MX
        assert "mx0.remote.example[127.0.0.1]" in log, log
        assert "nomx.example[127.0.0.1]" in log, log
        # the queue is empty again
        deadline = time.time() + 10
        while redis.command("KEYS", "mq:out:m:*") and time.time() < deadline:
            time.sleep(0.1)
        assert redis.command("KEYS", "mq:out:m:*") == []
    finally:
        sink.close()


def test_outbound_permanent_refusal_bounces(sub, dns):
    sink = Sink()
    try:
        e = sub(params=outbound_params(dns, sink))
        with e.smtp(login="alice@demo.test") as s:
            assert s.sendmail("alice@demo.test", ["reject-me@remote.example"],
                              msg("doomed")) == {}
        got = e.wait_messages("alice@demo.test", 1, timeout=20)
        assert len(got) == 1, e.log()
        raw = got[0][1]
        assert b"Return-Path: <>" in raw
        assert b"message/delivery-status" in raw
        assert b"Final-Recipient: rfc822; reject-me@remote.example" in raw
        assert b"Status: 5.1.1" in raw
        assert b"Subject: doomed" in raw
        assert sink.messages == []
    finally:
        sink.close()


# ---- end to end: MX port -> queue -> forwarder -> intake -> Maildir -----

def test_end_to_end_mx_forwarder_intake(sub, build, redis, tls_cert, free_port, tmp_path):
    from mx_env import MX
    e = sub()
    maps = os.path.join(e.etc, "relay_passwd")
    with open(maps, "w") as f:
        f.write("[127.0.0.1]:%d relay@mx.internal:relay-pw\n" % e.intake_port)
    os.chmod(maps, 0o644)
    mx_port = free_port()
    mx = MX(build, tmp_path / "mx", redis, mx_port, tls=tls_cert,
            users=["alice@demo.test", "team@demo.test"],
            mx_forward_enable="yes",
            relayhost="[127.0.0.1]:%d" % e.intake_port,
            smtp_tls_security_level="encrypt",
            smtp_sasl_auth_enable="yes",
            smtp_sasl_password_maps="texthash:" + maps,
            smtp_send_xforward_command="yes",
            minimal_backoff_time="1s", queue_run_delay="1s")
    mx.start()
    try:
        data = msg("across the hop", "from the internet\r\n")
        with smtplib.SMTP("127.0.0.1", mx_port, timeout=30) as s:
            s.ehlo("mail.example.net")
            assert s.sendmail("someone@example.net", ["team@demo.test"], data) == {}
        for box in ("alice@demo.test", "bob@demo.test"):
            got = e.wait_messages(box, 1, timeout=30)
            assert len(got) == 1, mx.logtext() + e.log()
            assert got[0][1].endswith(data)
        log = e.log()
        # the forwarder logged in, and its queue id came over as IDENT
        assert "sasl_username=relay@mx.internal" in log
        assert re.search(r"ident=[0-9A-F]+", log), log
        deadline = time.time() + 10
        while mx.qids() and time.time() < deadline:
            time.sleep(0.1)
        assert mx.qids() == []
    finally:
        mx.cleanup()


def test_bad_settings_refused_at_start(build, redis, tls_cert):
    for params, why in [({"smtpd_relay_restrictions": "permit_everything"},
                         "permit_everything"),
                        ({"mynetworks": "10.0.0.0/40"}, "mynetworks"),
                        ({"no_such_parameter": "1"}, "no_such_parameter")]:
        e = SubEnv(build, redis, tls_cert, params=params)
        try:
            with pytest.raises(RuntimeError):
                e.start()
            assert e.proc.wait(5) == 1
            assert why in e.log()
        finally:
            e.cleanup()


def test_redis_down_gives_4xx_never_a_lost_250(sub, redis):
    e = sub()
    redis.stop()
    time.sleep(0.3)
    with e.smtp(login="alice@demo.test") as s:
        # local delivery needs no Redis: fsynced into the Maildir
        assert s.sendmail("alice@demo.test", ["bob@demo.test"], msg("local")) == {}
        # the outbound queue is down: 4xx, not 250
        code, text = send_nosize(s, "alice@demo.test", ["x@remote.example"],
                                 msg("remote"))
        assert 400 <= code < 500, text
    assert len(e.wait_messages("bob@demo.test", 1)) == 1
    # a forwarded message whose IDENT cannot be checked: 4xx
    code, text = intake_send(e, "DEAD0001", msg("ident"))
    assert 400 <= code < 500, text
    redis.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        code, text = intake_send(e, "DEAD0001", msg("ident"))
        if code == 250:
            break
        time.sleep(0.5)
    assert code == 250, text
    assert len(e.wait_messages("carol@demo.test", 1)) == 1
