"""The MX forwarder (mx-relay/mx_forward.c over shared/qmgr.c and
shared/smtpc.c) against a real Redis and an aiosmtpd sink standing in for
the internal host (tests/it/sink.py): STARTTLS required, AUTH, XFORWARD,
byte-exact bodies, retries, per-recipient results, bounces, and a
forwarder killed mid-delivery."""
import json
import os
import smtplib
import subprocess
import tempfile
import time

import pytest

from mx_env import MX
from sink import Sink, put_message

SASL_USER, SASL_PASS = "mxrelay", "s3cret-pw"


@pytest.fixture
def env(tmp_path, redis, free_port, build, tls_cert):
    """Factory: env.sink(...) and env.mx(...), all stopped at the end."""
    class Env:
        sinks, mxs = [], []

        def sink(self, port=None, **kw):
            kw.setdefault("cert", tls_cert.cert)
            kw.setdefault("key", tls_cert.key)
            kw.setdefault("auth", "%s:%s" % (SASL_USER, SASL_PASS))
            s = Sink(port or free_port(), tmp_path / ("sink%d" % len(self.sinks)),
                     **kw)
            self.sinks.append(s)
            return s

        def mx(self, sink_port, **params):
            mapdir = tempfile.mkdtemp(prefix="mx-fwd-")
            os.chmod(mapdir, 0o755)
            pw = os.path.join(mapdir, "sasl_passwd")
            with open(pw, "w") as f:
                f.write("[127.0.0.1]:%d %s:%s\n" % (sink_port, SASL_USER, SASL_PASS))
            os.chmod(pw, 0o644)
            conf = {
                "relayhost": "[127.0.0.1]:%d" % sink_port,
                "smtp_tls_security_level": "encrypt",
                "smtp_sasl_auth_enable": "yes",
                "smtp_sasl_password_maps": "texthash:" + pw,
                "minimal_backoff_time": "1s",
                "maximal_backoff_time": "2s",
                "queue_run_delay": "0s",
                "smtp_connection_cache_time_limit": "1s",
                "smtp_helo_timeout": "10s",
                "smtp_data_done_timeout": "10s",
                "mx_forward_enable": "yes",
            }
            conf.update(params)
            m = MX(build, tmp_path / ("mx%d" % len(self.mxs)), redis,
                   free_port(), tls=tls_cert, **conf)
            self.mxs.append(m)
            return m

    e = Env()
    yield e
    for m in e.mxs:
        m.cleanup()
    for s in e.sinks:
        s.stop()


def send(mx, sender, rcpts, body):
    with smtplib.SMTP("127.0.0.1", mx.port, timeout=30) as s:
        s.ehlo("client.example")
        code, reply = s.docmd("MAIL FROM:<%s> BODY=8BITMIME" % sender)
        assert code == 250, reply
        for r in rcpts:
            code, reply = s.docmd("RCPT TO:<%s>" % r)
            assert code == 250, reply
        code, reply = s.data(body)
        assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[-1]


def wait_for(pred, timeout=20.0, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def mailq(build, mx, *args):
    out = subprocess.run([str(build / "mailq"), "-c", mx.dir, "--json"] + list(args),
                         capture_output=True, timeout=20)
    return out.returncode, out.stdout.decode(), out.stderr.decode()


def mailq_list(build, mx):
    rc, out, err = mailq(build, mx, "list")
    assert rc == 0, err
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def test_forward_with_starttls_auth_and_xforward(env, build):
    sink = env.sink().start()
    mx = env.mx(sink.port).start()
    qid = send(mx, "alice@example.net", ["bob@demo.test"],
               b"Subject: hello\r\n\r\nhi bob\r\n")
    msgs = sink.wait_messages(1)
    assert len(msgs) == 1
    meta, content = msgs[0]
    assert meta["tls"] is True
    assert meta["auth_user"] == SASL_USER
    assert meta["mail_from"] == "alice@example.net"
    assert meta["rcpt_tos"] == ["bob@demo.test"]
    # XFORWARD: the internal host sees the real client and our queue id
    assert meta["xforward"]["IDENT"] == qid
    assert meta["xforward"]["ADDR"] == "127.0.0.1"
    assert meta["xforward"]["HELO"] == "client.example"
    assert content.endswith(b"Subject: hello\r\n\r\nhi bob\r\n")
    assert wait_for(lambda: mx.qids() == [])
    assert "status=sent" in mx.logtext()


def test_starttls_required_keeps_mail_queued(env, build):
    sink = env.sink(cert=None, key=None, auth=None).start()   # no STARTTLS
    mx = env.mx(sink.port, smtp_sasl_auth_enable="no").start()
    qid = send(mx, "alice@example.net", ["bob@demo.test"], b"Subject: x\r\n\r\nx\r\n")
    assert wait_for(lambda: "TLS is required" in mx.logtext())
    time.sleep(1.5)
    assert sink.messages() == []
    q = mailq_list(build, mx)
    assert [m["queue_id"] for m in q] == [qid]
    assert "TLS is required" in q[0]["recipients"][0]["delay_reason"]
    assert q[0]["recipients"][0]["state"] == "pending"


def test_byte_exact_1mb_and_8bit(env, redis, build):
    sink = env.sink().start()
    body = bytearray(b"Subject: big\r\nMIME-Version: 1.0\r\n"
                     b"Content-Transfer-Encoding: 8bit\r\n\r\n")
    i = 0
    while len(body) < 1024 * 1024:
        # dots at line starts, 8-bit bytes, a lone dot line
        body += b".leading dot %d \xe9\xe8\xff\x80 caf\xc3\xa9\r\n" % i
        if i % 1000 == 0:
            body += b".\r\n..\r\n"
        i += 1
    body = bytes(body)
    qid = put_message(redis, "alice@example.net", ["bob@demo.test"], body,
                      body8bit=1)
    mx = env.mx(sink.port).start()
    msgs = sink.wait_messages(1, timeout=30)
    assert len(msgs) == 1
    meta, content = msgs[0]
    assert content == body
    assert "BODY=8BITMIME" in meta["mail_options"]
    assert meta["xforward"]["IDENT"] == qid
    assert wait_for(lambda: mx.qids() == [])


def test_internal_host_down_then_up_delivers_once(env, free_port, build):
    port = free_port()
    mx = env.mx(port).start()
    qid = send(mx, "alice@example.net", ["bob@demo.test"], b"Subject: d\r\n\r\nd\r\n")
    assert wait_for(lambda: "status=deferred" in mx.logtext())
    q = mailq_list(build, mx)
    assert q[0]["queue_id"] == qid and q[0]["attempts"] >= 1
    assert "connect to" in q[0]["recipients"][0]["delay_reason"]
    sink = env.sink(port=port).start()
    msgs = sink.wait_messages(1, timeout=20)
    assert len(msgs) == 1
    assert wait_for(lambda: mx.qids() == [])
    time.sleep(3)
    assert len(sink.messages()) == 1


def test_temporary_and_permanent_results_and_dsn(env, build):
    sink = env.sink(reject={"carol@virt.test": "450 4.2.1 Mailbox busy",
                            "dave@virt.test": "550 5.1.1 No such user"}).start()
    mx = env.mx(sink.port, minimal_backoff_time="1h",
                maximal_backoff_time="2h").start()
    qid = send(mx, "alice@example.net",
               ["bob@demo.test", "carol@virt.test", "dave@virt.test"],
               b"Subject: three\r\nMessage-ID: <m1@example.net>\r\n\r\nthree\r\n")
    msgs = sink.wait_messages(2)
    assert len(msgs) == 2
    # aiosmtpd reports the null sender as "<>"
    by_from = {m[0]["mail_from"].strip("<>"): m for m in msgs}
    assert by_from["alice@example.net"][0]["rcpt_tos"] == ["bob@demo.test"]
    # the bounce: null sender, to the sender, RFC 3464
    meta, report = by_from[""]
    assert meta["rcpt_tos"] == ["alice@example.net"]
    text = report.decode("utf-8", "replace")
    assert "report-type=delivery-status" in text
    assert "Final-Recipient: rfc822; dave@virt.test" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user" in text
    assert "Message-ID: <m1@example.net>" in text       # original headers
    assert "carol@virt.test" not in text.split("message/delivery-status")[1]
    # carol stays queued, deferred, with the temporary reason
    q = wait_for(lambda: [m for m in mailq_list(build, mx)
                          if m["state"] == "deferred"])
    assert [m["queue_id"] for m in q] == [qid]
    st = {r["address"]: r for r in q[0]["recipients"]}
    assert st["bob@demo.test"]["state"] == "done"
    assert st["dave@virt.test"]["state"] == "failed"
    assert st["carol@virt.test"]["state"] == "pending"
    assert "450 4.2.1" in st["carol@virt.test"]["delay_reason"]


def test_no_dsn_for_null_sender(env, build):
    sink = env.sink(reject={"dave@virt.test": "550 5.1.1 No such user"}).start()
    mx = env.mx(sink.port).start()
    send(mx, "", ["dave@virt.test"], b"Subject: bounce\r\n\r\nx\r\n")
    assert wait_for(lambda: "null sender" in mx.logtext())
    assert wait_for(lambda: mx.qids() == [])
    time.sleep(1.5)
    assert sink.messages() == []


def test_forwarder_killed_mid_delivery_is_taken_over(env, build):
    sink = env.sink(hang=1).start()     # the first DATA never gets a reply
    mx = env.mx(sink.port, queue_lease_time="3s").start()
    qid = send(mx, "alice@example.net", ["bob@demo.test"], b"Subject: k\r\n\r\nk\r\n")
    time.sleep(1.5)                      # the forwarder is inside DATA now
    assert sink.messages() == []
    mx.kill9()
    assert mx.qids() == [qid]            # still queued, leased by a dead process
    mx.start()
    msgs = sink.wait_messages(1, timeout=20)
    assert len(msgs) == 1
    assert msgs[0][0]["xforward"]["IDENT"] == qid
    assert wait_for(lambda: mx.qids() == [])
    time.sleep(1)
    assert len(sink.messages()) == 1


@pytest.fixture
def dnsmasq(tmp_path, free_port):
    """A private dnsmasq on a loopback port, authoritative for .test:
    demo.test MX 10 mx1.demo.test; mx1.demo.test and plain.test (no MX)
    A 127.0.0.1; anything else under .test NXDOMAIN. dnsmasq binds the
    port for both UDP and TCP: free_port() checks both."""
    port = free_port()
    p = subprocess.Popen(["/usr/sbin/dnsmasq", "--keep-in-foreground",
                          "--no-resolv", "--no-hosts", "--port=%d" % port,
                          "--listen-address=127.0.0.1", "--bind-interfaces",
                          "--local=/test/", "--pid-file=", "--user=root",
                          "--mx-host=demo.test,mx1.demo.test,10",
                          "--host-record=mx1.demo.test,127.0.0.1",
                          "--host-record=plain.test,127.0.0.1",
                          "--log-facility=%s" % (tmp_path / "dnsmasq.log")])
    time.sleep(0.3)
    assert p.poll() is None
    yield "127.0.0.1:%d" % port
    p.terminate()
    p.wait(10)


def test_mx_lookup_and_transport_maps_through_resolver(env, dnsmasq, tmp_path):
    sink = env.sink().start()
    d = tempfile.mkdtemp(prefix="mx-fwd-")     # readable after the drop
    os.chmod(d, 0o755)
    tm = os.path.join(d, "transport")
    with open(tm, "w") as f:
        f.write("virt.test smtp:plain.test:%d\n" % sink.port)
    os.chmod(tm, 0o644)
    mx = env.mx(sink.port, relayhost="demo.test:%d" % sink.port,
                smtp_dns_resolver=dnsmasq, transport_maps="texthash:%s" % tm,
                smtp_sasl_password_maps="static:%s:%s" % (SASL_USER, SASL_PASS))
    mx.start()
    # demo.test: relayhost without [] -> MX lookup -> mx1.demo.test
    send(mx, "alice@example.net", ["bob@demo.test"], b"Subject: mx\r\n\r\nmx\r\n")
    # virt.test: transport_maps -> plain.test, no MX -> its A record
    send(mx, "alice@example.net", ["carol@virt.test"], b"Subject: a\r\n\r\na\r\n")
    msgs = sink.wait_messages(2)
    assert sorted(m[0]["rcpt_tos"][0] for m in msgs) == ["bob@demo.test", "carol@virt.test"]
    log = mx.logtext()
    assert "relay=mx1.demo.test[127.0.0.1]:%d" % sink.port in log
    assert "relay=plain.test[127.0.0.1]:%d" % sink.port in log


def test_redis_down_at_start_then_up(env, redis):
    """The forwarder keeps reconnecting to Redis (shared/redisc.c) and
    delivers what was queued before Redis went away (AOF on disk)."""
    sink = env.sink().start()
    qid = put_message(redis, "alice@example.net", ["bob@demo.test"], b"Subject: r\r\n\r\nr\r\n")
    redis.stop()
    mx = env.mx(sink.port).start()
    time.sleep(1.5)
    assert sink.messages() == []
    redis.start()
    msgs = sink.wait_messages(1, timeout=20)
    assert len(msgs) == 1 and msgs[0][0]["xforward"]["IDENT"] == qid
    assert wait_for(lambda: mx.qids() == [])


def test_expired_message_is_returned(env, free_port, build):
    """maximal_queue_lifetime: after the last failed attempt the sender
    gets an RFC 3464 report (status 4.4.7), and the message leaves."""
    port = free_port()                   # the internal host stays down
    mx = env.mx(port, maximal_queue_lifetime="2s").start()
    qid = send(mx, "alice@example.net", ["bob@demo.test"], b"Subject: old\r\n\r\nold\r\n")
    assert wait_for(lambda: "status=expired" in mx.logtext(), timeout=20)
    assert wait_for(lambda: "sender non-delivery notification" in mx.logtext())
    q = wait_for(lambda: [m for m in mailq_list(build, mx) if m["sender"] == ""])
    assert q and q[0]["recipients"][0]["address"] == "alice@example.net"
    assert qid not in [m["queue_id"] for m in mailq_list(build, mx)]
    rc, out, _ = mailq(build, mx, "show", q[0]["queue_id"])
    import base64
    report = base64.b64decode(json.loads(out)["data_base64"]).decode()
    assert "Status: 4.4.7" in report and "Action: failed" in report
    assert "Final-Recipient: rfc822; bob@demo.test" in report


def test_wrong_sasl_password_defers(env, build):
    sink = env.sink(auth="%s:other-password" % SASL_USER).start()
    mx = env.mx(sink.port).start()
    qid = send(mx, "alice@example.net", ["bob@demo.test"], b"Subject: p\r\n\r\np\r\n")
    assert wait_for(lambda: "SASL authentication failed" in mx.logtext())
    assert sink.messages() == []
    q = mailq_list(build, mx)
    assert [m["queue_id"] for m in q] == [qid]
    assert "SASL authentication failed" in q[0]["recipients"][0]["delay_reason"]
    assert SASL_PASS not in mx.logtext()       # never logged
