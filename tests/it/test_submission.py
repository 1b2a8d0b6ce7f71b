"""submission: AUTH over TLS only (587 STARTTLS, 465 implicit TLS, intake),
restrictions, local delivery (aliases, catch-all, alias domains, plus
addresses, quota, mbox), the XFORWARD IDENT de-duplication, crash safety,
and the outbound queue. Real Redis, real MariaDB, real clients (smtplib,
swaks)."""
import os
import re
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


def test_auth_failures_delay_then_limit_per_connection(sub):
    e = sub(params={"smtpd_sasl_failure_limit": "3"})
    with e.smtp() as s:
        times = []
        for _ in range(3):
            t0 = time.time()
            code, _ = s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdAB4eHg=")
            times.append(time.time() - t0)
            assert code == 535
        # growing delay: 0, 1 s, 2 s
        assert times[1] >= 0.9 and times[2] >= 1.9, times
        code, text = s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdAB4eHg=")
        assert code == 421, text


def test_auth_failures_limited_per_client_address(sub, redis):
    e = sub(params={"smtpd_sasl_client_failure_limit": "2",
                    "smtpd_sasl_failure_delay": "0"})
    for _ in range(2):
        with e.smtp() as s:
            assert s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdABub3Bl")[0] == 535
    assert int(redis.command("GET", "sub:authfail:127.0.0.1")) >= 2
    with e.smtp() as s:
        code, text = s.docmd("AUTH PLAIN AGFsaWNlQGRlbW8udGVzdABhbGljZS1wdw==")
        assert code == 421, text


# ---- restrictions ------------------------------------------------------

def test_unauthenticated_mail_refused_by_default(sub):
    e = sub()
    with e.smtp() as s:
        code, text = s.mail("alice@demo.test")
        assert code == 530 and b"5.7.0" in text


def test_unauthenticated_relay_refused(sub):
    e = sub(params={"smtpd_client_restrictions": ""})
    with e.smtp() as s:
        assert s.mail("someone@remote.example")[0] == 250
        code, text = s.rcpt("victim@elsewhere.example")
        assert code == 554 and b"5.7.1" in text and b"Relay access denied" in text
        # mail for our own users is fine (reject_unauth_destination)
        assert s.rcpt("alice@demo.test")[0] == 250


def test_authenticated_relay_allowed(sub, redis):
    e = sub()
    with e.smtp(login="alice@demo.test") as s:
        assert s.sendmail("alice@demo.test", ["bob@remote.example"],
                          msg("outbound")) == {}
    keys = redis.command("KEYS", "mq:out:m:*")
    assert len(keys) == 1
    h = redis.command("HGETALL", keys[0])
    assert "bob@remote.example" in h
    data = redis.command("GET", keys[0].replace(":m:", ":d:"))
    assert "Subject: outbound" in data


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
    keys = redis.command("KEYS", "mq:out:m:*")
    assert len(keys) == 1
    h = redis.command("HGETALL", keys[0])
    assert "alice@demo.test" in h
    dsn = redis.command("GET", keys[0].replace(":m:", ":d:"))
    assert "message/delivery-status" in dsn and "Status: 5.2.2" in dsn, dsn


# ---- intake, XFORWARD, IDENT --------------------------------------------

def intake_send(e, ident, data, rcpt="carol@demo.test"):
    with e.smtp(port=e.intake_port, login="relay@mx.internal") as s:
        code, caps = s.ehlo("mx.demo.test")
        assert b"XFORWARD" in caps
        code, text = s.docmd("XFORWARD NAME=mail.example.net ADDR=192.0.2.7 "
                             "PROTO=ESMTP HELO=mail.example.net IDENT=%s" % ident)
        assert code == 250, text
        s.mail("someone@example.net")
        assert s.rcpt(rcpt)[0] == 250
        return s.data(data)


def test_intake_requires_tls_and_auth(sub):
    e = sub()
    with smtplib.SMTP("127.0.0.1", e.intake_port) as s:
        s.ehlo("mx")
        code, _ = s.mail("a@example.net")
        assert code >= 500
    with e.smtp(port=e.intake_port) as s:
        code, caps = s.ehlo("mx")
        assert b"XFORWARD" not in caps
        assert s.mail("a@example.net")[0] == 530


def test_xforward_only_for_relay_login(sub):
    e = sub()
    with e.smtp(port=e.intake_port, login="alice@demo.test") as s:
        code, caps = s.ehlo("x")
        assert b"XFORWARD" not in caps
        code, _ = s.docmd("XFORWARD IDENT=ABC")
        assert code >= 500


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
