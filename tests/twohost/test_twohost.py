"""The two-host topology end to end, on one machine, with network
namespaces, each host configured by README.md's plain-host path (see
twohost_site.py: the README's own command blocks are run). The MX checks
recipients in the internal host's MariaDB over TLS with the server's
certificate verified (tls_CAfile + tls_verify_cert), and with a wrong CA
it fails closed (451, nothing queued). A client on the "Internet"
sends to the MX on port 25; the MX's forwarder hands the message to the
internal host over the inside link, in STARTTLS with SMTP AUTH as the
relay account; the client reads it over IMAPS and POP3S and submits mail
on 587. The internal host refuses the MX's address without credentials,
and with the inside link down the MX keeps the mail and delivers it, once,
when the link is back.

Run as root: /usr/bin/python3 -m pytest tests/twohost (env BUILD = the
build folder). Without permission for `ip netns add` the module is
skipped with the reason.
"""
import base64
import email.utils
import json
import imaplib
import os
import poplib
import re
import signal
import smtplib
import ssl
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from netns import NetnsUnavailable, wait_for  # noqa: E402
import twohost_site as S  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALICE, BOB = "alice@" + S.DOMAIN, "bob@" + S.DOMAIN


@pytest.fixture(scope="module")
def site():
    build = os.path.abspath(os.environ.get("BUILD", os.path.join(ROOT, "build")))
    tag = "th%04x" % (os.getpid() & 0xFFFF)
    s = S.Site(build, tag)

    # A run stopped with SIGTERM (a timeout wrapper) still tears down the
    # namespaces and the daemons: turn it into KeyboardInterrupt, which
    # pytest unwinds through the fixtures.
    def on_term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        s.start()
    except NetnsUnavailable as e:
        s.cleanup()
        signal.signal(signal.SIGTERM, old_term)
        pytest.skip("network namespaces are not available here: %s" % e)
    except BaseException:
        logs = s.all_logs()
        s.cleanup()
        signal.signal(signal.SIGTERM, old_term)
        print(logs)
        raise
    print("two-host site up in %.1fs" % s.startup_seconds)
    try:
        yield s
    finally:
        print(s.all_logs(tail=15))
        errors = s.cleanup()
        signal.signal(signal.SIGTERM, old_term)
    assert not errors, "teardown: %s" % errors


def client_ctx(site):
    ctx = ssl.create_default_context(cafile=site.ca)
    return ctx


def message(subject, msgid, to, body):
    return ("From: Someone <someone@remote.example>\r\n"
            "To: <%s>\r\n"
            "Subject: %s\r\n"
            "Date: %s\r\n"
            "Message-ID: <%s>\r\n"
            "\r\n%s" % (to, subject, email.utils.formatdate(), msgid, body)).encode()


def strip_trace(raw):
    """The message after the leading Return-Path:, Delivered-To: and
    Received: fields (with their continuation lines) the hosts added."""
    pos = 0
    while True:
        m = re.match(rb"(Return-Path|Delivered-To|Received):[^\r\n]*\r\n"
                     rb"([ \t][^\r\n]*\r\n)*", raw[pos:], re.I)
        if m is None:
            return raw[:pos], raw[pos:]
        pos += m.end()


def send_to_mx(site, sender, rcpts, data):
    def go():
        with smtplib.SMTP(S.MX_OUT, 25, local_hostname="client.remote.example",
                          timeout=20) as s:
            s.ehlo()
            assert s.has_extn("starttls"), "the MX offers no STARTTLS"
            s.starttls(context=client_ctx(site))
            s.ehlo()
            assert not s.has_extn("auth"), "the MX must never offer AUTH"
            refused = s.sendmail(sender, rcpts, data)
            return refused
    return site.topo.call(site.ns_client, go)


def test_mx_forwards_over_authenticated_tls(site):
    t0 = time.time()
    body = "Hello from the Internet.\r\n..a dot-stuffed line\r\n" + "x" * 900 + "\r\n"
    data = message("via the MX", "inbound-1@remote.example", ALICE, body)
    assert send_to_mx(site, "someone@remote.example", [ALICE], data) == {}
    got = wait_for(lambda: site.with_message_id(ALICE, "inbound-1@remote.example"),
                   20, what="the message in alice's Maildir")
    assert len(got) == 1, got
    trace, rest = strip_trace(got[0][1])
    assert rest == data, "the message changed on its way:\n%r\n%r" % (rest, data)
    # Two Received: fields: the MX's, then the internal host's, which says
    # the hop came in TLS with AUTH (RFC 3848 ESMTPSA).
    received = re.findall(rb"(?ms)^Received: .*?(?=^\S|\Z)", trace)
    assert len(received) == 2, trace
    inner, outer = received
    assert b"by " + S.MAIL_NAME.encode() in inner and b"ESMTPSA" in inner, inner
    assert b"using TLS" in inner, inner
    assert b"by " + S.MX_NAME.encode() in outer, outer
    assert b"[" + S.CLIENT_MX.encode() + b"]" in outer, outer
    # The internal host's log: the MX's inside address logged in as the
    # relay account (AUTH is offered only inside TLS: smtpd_tls_auth_only).
    log = site.log("submission.log")
    assert re.search(r"\[%s\]: sasl_method=\w+, sasl_username=%s"
                     % (re.escape(S.MX_IN), re.escape(S.RELAY_USER)), log), log
    # The MX's log: handed to the intake and accepted there.
    assert re.search(r"to=<%s>, relay=%s\[%s\]:%d, .*status=sent \(250 "
                     % (re.escape(ALICE), re.escape(S.MAIL_NAME),
                        re.escape(S.INTERNAL_IN), S.INTAKE_PORT),
                     site.log("mx-relay.log")), site.log("mx-relay.log")
    print("MX -> internal delivery took %.2fs" % (time.time() - t0))


def test_mx_refuses_unknown_and_foreign_recipients(site):
    """relay_domains and relay_recipient_maps are read from the internal
    host's MariaDB over the inside link, with the read-only account."""
    def go():
        with smtplib.SMTP(S.MX_OUT, 25, local_hostname="client.remote.example",
                          timeout=20) as s:
            s.ehlo()
            s.mail("someone@remote.example")
            return (s.rcpt("nobody@" + S.DOMAIN)[0], s.rcpt("x@elsewhere.example")[0],
                    s.rcpt("Alice+tag@" + S.DOMAIN.upper())[0])
    unknown, foreign, known = site.topo.call(site.ns_client, go)
    assert unknown == 550, unknown
    assert foreign == 554, foreign
    assert known == 250, known


def test_mx_accepts_alias_made_by_readme_step8(site):
    """postmaster@ (an alias row mailctl wrote, README step 8): the MX finds
    it in the alias table over TLS, the intake expands it to alice."""
    data = message("to the postmaster", "postmaster-1@remote.example",
                   "postmaster@" + S.DOMAIN, "hello postmaster\r\n")
    assert send_to_mx(site, "someone@remote.example", ["postmaster@" + S.DOMAIN],
                      data) == {}
    got = wait_for(lambda: site.with_message_id(ALICE, "postmaster-1@remote.example"),
                   20, what="the postmaster's message in alice's Maildir")
    assert len(got) == 1 and strip_trace(got[0][1])[1] == data


def test_client_reads_over_imaps(site):
    got = site.with_message_id(ALICE, "inbound-1@remote.example")
    assert len(got) == 1, "the first test's message is missing"
    stored = got[0][1]

    def imap():
        with imaplib.IMAP4_SSL(S.INTERNAL_OUT, 993, ssl_context=client_ctx(site),
                               timeout=20) as m:
            assert m.login(ALICE, S.USERS[ALICE])[0] == "OK"
            typ, n = m.select("INBOX", readonly=True)
            assert typ == "OK", n
            typ, ids = m.search(None, "HEADER", "Message-ID", "inbound-1@remote.example")
            assert typ == "OK" and len(ids[0].split()) == 1, ids
            typ, parts = m.fetch(ids[0].split()[0], "(RFC822)")
            assert typ == "OK", parts
            return parts[0][1]

    assert site.topo.call(site.ns_client, imap) == stored


def test_client_reads_over_pop3s(site):
    got = site.with_message_id(ALICE, "inbound-1@remote.example")
    assert len(got) == 1, "the first test's message is missing"
    stored = got[0][1]

    def pop3():
        p = poplib.POP3_SSL(S.INTERNAL_OUT, 995, context=client_ctx(site), timeout=20)
        try:
            p.user(ALICE)
            assert p.pass_(S.USERS[ALICE]).startswith(b"+OK")
            count, _ = p.stat()
            for i in range(1, count + 1):
                _, lines, _ = p.retr(i)
                raw = b"\r\n".join(lines) + b"\r\n"
                if b"Message-ID: <inbound-1@remote.example>" in raw:
                    return raw
            return None
        finally:
            p.quit()

    assert site.topo.call(site.ns_client, pop3) == stored


def test_submission_587_alice_to_bob(site):
    data = message("alice to bob", "sub-1@example.test", BOB, "over 587\r\n")

    def go():
        with smtplib.SMTP(S.INTERNAL_OUT, 587, local_hostname="laptop.example.test",
                          timeout=20) as s:
            s.ehlo()
            assert not s.has_extn("auth"), "AUTH offered before TLS"
            s.starttls(context=client_ctx(site))
            s.ehlo()
            s.login(ALICE, S.USERS[ALICE])
            return s.sendmail(ALICE, [BOB], data)

    assert site.topo.call(site.ns_client, go) == {}
    got = wait_for(lambda: site.with_message_id(BOB, "sub-1@example.test"), 15,
                   what="the message in bob's Maildir")
    assert len(got) == 1
    assert got[0][1].endswith(data)
    assert got[0][1].startswith(b"Return-Path: <%s>\r\n" % ALICE.encode())


def test_internal_refuses_mx_without_credentials(site):
    def go():
        out = {}
        # The intake: nothing before TLS, and nothing without AUTH after.
        with smtplib.SMTP(S.INTERNAL_IN, S.INTAKE_PORT, timeout=20) as s:
            s.ehlo("mx.example.test")
            out["intake_mail_plain"] = s.mail("someone@remote.example")[0]
        with smtplib.SMTP(S.INTERNAL_IN, S.INTAKE_PORT, timeout=20) as s:
            s.ehlo("mx.example.test")
            s.starttls(context=client_ctx(site))
            s.ehlo("mx.example.test")
            out["intake_mail_tls"] = s.mail("someone@remote.example")[0]
            out["intake_rcpt_tls"] = s.rcpt(ALICE)[0]
        # Port 587 from the MX's address is no different.
        with smtplib.SMTP(S.INTERNAL_IN, 587, timeout=20) as s:
            s.ehlo("mx.example.test")
            s.starttls(context=client_ctx(site))
            s.ehlo("mx.example.test")
            out["587_mail"] = s.mail("someone@remote.example")[0]
            out["587_rcpt"] = s.rcpt(ALICE)[0]
        # The relay login with a wrong password fails.
        with smtplib.SMTP(S.INTERNAL_IN, S.INTAKE_PORT, timeout=20) as s:
            s.ehlo("mx.example.test")
            s.starttls(context=client_ctx(site))
            s.ehlo("mx.example.test")
            try:
                s.login(S.RELAY_USER, "wrong-password")
                out["bad_login"] = 235
            except smtplib.SMTPAuthenticationError as e:
                out["bad_login"] = e.smtp_code
        return out

    before = len(site.messages(ALICE))
    r = site.topo.call(site.ns_mx, go)
    assert r["intake_mail_plain"] == 530, r
    assert r["intake_mail_tls"] == 530, r
    assert r["intake_rcpt_tls"] >= 500, r
    assert r["587_mail"] == 530 and r["587_rcpt"] >= 500, r
    assert r["bad_login"] == 535, r
    assert len(site.messages(ALICE)) == before


def mailq(site, *args):
    r = site.topo.run(site.ns_mx, [site.bin("mailq"), "-c", site.mx_etc, "--json"]
                      + list(args), timeout=20)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return [json.loads(l) for l in r.stdout.decode().splitlines() if l.startswith("{")]


def mx_queue(site):
    """Message-ID -> queue entry, of everything in the MX's queue, read
    with mailq (and cross-checked against the Redis keys)."""
    out = {}
    for entry in mailq(site, "list"):
        shown = mailq(site, "show", entry["queue_id"])
        assert len(shown) == 1, shown
        data = base64.b64decode(shown[0]["data_base64"])
        m = re.search(rb"\r\nMessage-ID: <([^>]+)>\r\n", data)
        out[m.group(1).decode() if m else entry["queue_id"]] = shown[0]
    keys = [k for k in site.redis(site.ns_mx, "KEYS", "mq:mx:m:*") if k]
    assert len(keys) == len(out), (keys, out)
    return out



# ---- README.md's plain-host path: what its steps must have produced -------

def test_readme_steps_configured_both_hosts(site):
    me, ie = site.mx_etc, site.int_etc
    # step 4: generated passwords (none of the samples' change-me), one per
    # database account; files 0640 root:vmail (here: nobody's group)
    mx_pw = S.cf_value(os.path.join(me, "mysql", "relay_recipient_maps.cf"), "password")
    int_pw = S.cf_value(os.path.join(ie, "mysql", "virtual_mailbox_maps.cf"), "password")
    assert mx_pw and int_pw and mx_pw != int_pw, (mx_pw, int_pw)
    assert "change-me" not in mx_pw + int_pw + site.relay_password
    for path in [os.path.join(me, "relay_passwd"), os.path.join(me, "mx-relay.cf"),
                 os.path.join(ie, "submission.cf"), os.path.join(me, "tls", "key.pem")] + \
            [os.path.join(me, "mysql", n) for n in os.listdir(os.path.join(me, "mysql"))]:
        st = os.stat(path)
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, site.gid), path
    # step 5: both Redis servers durable (the daemons' redis_require_durable
    # checked it too, or they would not have started)
    for ns in (site.ns_mx, site.ns_int):
        assert site.redis(ns, "CONFIG", "GET", "appendonly") == ["appendonly", "yes"]
        assert site.redis(ns, "CONFIG", "GET", "appendfsync") == ["appendfsync", "always"]
    # step 7: the values the README names
    assert S.cf_value(os.path.join(me, "mx-relay.cf"), "relayhost") == \
        "[%s]:%d" % (S.MAIL_NAME, S.INTAKE_PORT)
    assert S.cf_value(os.path.join(me, "mx-relay.cf"), "smtp_tls_security_level") == "verify"
    assert S.cf_value(os.path.join(me, "mx-relay.cf"), "redis_server") == "127.0.0.1:6379"
    assert S.cf_value(os.path.join(ie, "submission.cf"), "redis_server") == "127.0.0.1:6379"
    with open(os.path.join(me, "relay_passwd")) as f:
        assert re.search(r"(?m)^\[%s\]:%d %s:" % (re.escape(S.MAIL_NAME), S.INTAKE_PORT,
                                                  re.escape(S.RELAY_USER)), f.read())
    for n in os.listdir(os.path.join(me, "mysql")):
        p = os.path.join(me, "mysql", n)
        assert S.cf_value(p, "hosts") == S.MAIL_NAME, p
        assert S.cf_value(p, "tls_verify_cert") == "yes", p
        assert S.cf_value(p, "tls_CAfile") == site.mysql_ca, p
    for n in os.listdir(os.path.join(ie, "mysql")):
        assert S.cf_value(os.path.join(ie, "mysql", n), "hosts") == "localhost", n
    # step 8: the domain's postmaster@ and abuse@ go to alice
    listed = site.mailctl("alias", "list")
    for a in ("postmaster@", "abuse@"):
        assert re.search(r"%s%s\b.*%s" % (a, re.escape(S.DOMAIN), re.escape(ALICE)),
                         listed), listed


def mx_mariadb(site, *args):
    """The mariadb client on the MX host, to the internal host by name."""
    return site.topo.run(site.ns_mx, [
        "mariadb", "--no-defaults", "-h", S.MAIL_NAME, "-u", S.MX_DB_USER,
        "-p" + site.mx_db_password, "-N", "-B", "mailpair"] + list(args), timeout=30)


def test_mx_database_account_needs_tls_and_sees_no_passwords(site):
    """README step 6: the MX's account is REQUIRE SSL and column-restricted."""
    clear = mx_mariadb(site, "--skip-ssl", "-e", "SELECT 1")
    assert clear.returncode != 0 and b"Access denied" in clear.stderr, clear
    ok = mx_mariadb(site, "--ssl", "--ssl-ca=" + site.ca, "--ssl-verify-server-cert",
                    "-e", "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    assert ok.returncode == 0, ok.stderr
    name, cipher = ok.stdout.decode().strip().split("\t")
    assert name == "Ssl_cipher" and cipher, ok.stdout
    pw = mx_mariadb(site, "--ssl", "--ssl-ca=" + site.ca, "-e",
                    "SELECT password FROM mailbox")
    assert pw.returncode != 0 and b"denied" in pw.stderr, pw


def rcpt_codes(site, rcpts):
    def go():
        with smtplib.SMTP(S.MX_OUT, 25, local_hostname="client.remote.example",
                          timeout=60) as s:
            s.ehlo()
            s.mail("someone@remote.example")
            out = [s.rcpt(r) for r in rcpts]
            s.rset()
            return out
    return site.topo.call(site.ns_client, go, timeout=90)


def aborted_unauthenticated(site):
    return len(re.findall(r"Aborted connection \d+ to db: '\w+' user: 'unauthenticated' "
                          r"host: '%s'" % re.escape(S.MX_IN), site.log("mariadb.err")))


def test_mx_lookup_with_wrong_ca_fails_closed(site):
    """The MX's mysql/*.cf name a CA that did not sign MariaDB's certificate:
    no lookup can be checked, so every recipient gets 451 4.3.0 (the sender
    retries), never 250 and never 550, and nothing enters the queue."""
    assert rcpt_codes(site, [ALICE])[0][0] == 250
    aborted_before = aborted_unauthenticated(site)
    site.mx_mysql_ca(site.other_ca)
    try:
        got = rcpt_codes(site, [ALICE, "nobody@" + S.DOMAIN, "x@elsewhere.example"])
        for rcpt, (code, text) in zip([ALICE, "nobody@", "x@elsewhere"], got):
            assert code == 451 and b"4.3.0" in text, (rcpt, code, text)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send_to_mx(site, "someone@remote.example", [ALICE],
                       message("unchecked", "wrong-ca@remote.example", ALICE, "x\r\n"))
        assert mx_queue(site) == {}
        # MariaDB saw the MX's connections end before any login: the TLS
        # handshake comes first, so the MX never sent its password to a
        # server it could not verify
        wait_for(lambda: aborted_unauthenticated(site) > aborted_before, 20,
                 what="MariaDB to log the MX's unverified connection")
    finally:
        site.mx_mysql_ca(site.mysql_ca)
    # the right CA again: checked (over TLS: the account is REQUIRE SSL)
    codes = rcpt_codes(site, [ALICE, "nobody@" + S.DOMAIN])
    assert [c for c, _ in codes] == [250, 550], codes
    assert site.with_message_id(ALICE, "wrong-ca@remote.example") == []


def test_inside_link_down_mx_keeps_then_delivers_once(site):
    ids = ["down-%d@remote.example" % i for i in range(5)]
    msgs = {mid: message("while the link is down %d" % i, mid, ALICE,
                         "kept by the MX %d\r\n" % i) for i, mid in enumerate(ids)}
    # the MX's local copy of its recipients, refreshed over TLS while the
    # link is up (the README's cron command)
    copy = site.refresh_mx_recipients()
    for addr in (ALICE, BOB, "postmaster@" + S.DOMAIN, "abuse@" + S.DOMAIN):
        assert re.search(r"(?m)^%s\tOK$" % re.escape(addr), copy), copy
    site.inside_link(False)
    try:
        # 1. With the sample's tables, the MX checks recipients in the
        # internal host's MariaDB: with the inside link down it cannot,
        # and says 451 (try later), never 250 and never 550.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            send_to_mx(site, "someone@remote.example", [ALICE], msgs[ids[0]])
        code, text = exc.value.recipients[ALICE]
        assert code == 451, (code, text)
        assert mx_queue(site) == {}
        # 2. With a local copy of the recipient list (README.md (Deploying on two hosts): the MX
        # keeps accepting while the internal host is away), the MX takes
        # the mail and keeps it in its Redis.
        site.mx_local_recipients()
        for i, mid in enumerate(ids):
            rcpts = [ALICE, BOB] if i == 0 else [ALICE]
            assert send_to_mx(site, "someone@remote.example", rcpts, msgs[mid]) == {}
        time.sleep(3)   # several forwarder attempts fail meanwhile
        queued = mx_queue(site)
        assert sorted(queued) == sorted(ids), (queued, site.log("mx-relay.log")[-3000:])
        assert [r["address"] for r in queued[ids[0]]["recipients"]] == [ALICE, BOB]
        assert all(q["attempts"] >= 1 for q in queued.values()), queued
        for mid in ids:
            assert site.with_message_id(ALICE, mid) == [], mid
        # 3. kill -9 of the MX while it holds the mail loses nothing.
        site.restart_mx(kill=True)
        assert sorted(mx_queue(site)) == sorted(ids)
    finally:
        site.inside_link(True)
    t0 = time.time()
    wait_for(lambda: all(site.with_message_id(ALICE, m) for m in ids) and
             site.with_message_id(BOB, ids[0]), 40,
             what="the queued messages after the link came back")
    wait_for(lambda: mx_queue(site) == {}, 15, what="the MX queue to drain")
    print("link up -> all delivered in %.2fs" % (time.time() - t0))
    time.sleep(2)   # a duplicate would arrive now
    for mid in ids:
        got = site.with_message_id(ALICE, mid)
        assert len(got) == 1, (mid, [n for n, _ in got])
        assert strip_trace(got[0][1])[1] == msgs[mid]
    assert len(site.with_message_id(BOB, ids[0])) == 1
