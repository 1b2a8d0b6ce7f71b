"""SIGHUP (systemctl reload) renews the TLS certificate without dropping a
session: the certificate is renewed on disk under live sessions (IMAP IDLE
over IMAPS and STARTTLS, an SMTP transaction after STARTTLS), the daemon
gets SIGHUP, the live sessions finish normally, and new handshakes see
the new certificate (compared by SHA-256 fingerprint). A renewal with a key
that does not match keeps the old certificate and the log says why."""
import hashlib
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from mra_env import MraEnv
from mx_env import MX
from sub_env import SubEnv


class RenewableCert:
    """A certificate and key in a folder the daemon (dropped to nobody)
    can read after start-up, renewed in place the way certbot's deploy
    hook copies files: new content, same paths."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="reload-tls-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.renew()

    def _make(self, cert, key):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        os.chmod(cert, 0o644)
        os.chmod(key, 0o644)

    def renew(self):
        """New key and certificate; returns the new certificate's
        fingerprint."""
        self._make(self.cert + ".new", self.key + ".new")
        os.rename(self.key + ".new", self.key)
        os.rename(self.cert + ".new", self.cert)
        return self.fingerprint()

    def renew_broken(self):
        """A new certificate whose key stays the old one (a renewal copied
        half-way)."""
        self._make(self.cert + ".new", self.key + ".unused")
        os.rename(self.cert + ".new", self.cert)
        os.unlink(self.key + ".unused")

    def fingerprint(self):
        with open(self.cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        return hashlib.sha256(der).hexdigest()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def fp_of(sock):
    return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()


def wait_log(read_log, text, count=1, timeout=20.0):
    """The log gets its count-th line with text (the daemon logs once the
    reload is done; nothing here depends on how long it takes)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = read_log()
        if log.count(text) >= count:
            return log
        time.sleep(0.05)
    raise AssertionError("no %r (x%d) in the log:\n%s" % (text, count, read_log()[-3000:]))


@pytest.fixture
def cert():
    c = RenewableCert()
    yield c
    c.cleanup()


# ---- a minimal IMAP client over a raw socket (imaplib has no IDLE) -------

class Imap:
    def __init__(self, port, implicit_tls):
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.s = client_ctx().wrap_socket(raw) if implicit_tls else raw
        self.f = self.s.makefile("rb")
        assert self.line().startswith(b"* OK")
        if not implicit_tls:
            self.cmd(b"s1 STARTTLS")
            self.f.close()
            self.s = client_ctx().wrap_socket(self.s)
            self.f = self.s.makefile("rb")

    def line(self):
        ln = self.f.readline()
        assert ln, "connection closed"
        return ln

    def cmd(self, text):
        tag = text.split(b" ", 1)[0]
        self.s.sendall(text + b"\r\n")
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                assert ln.startswith(tag + b" OK"), ln
                return ln

    def idle(self):
        self.s.sendall(b"i1 IDLE\r\n")
        while True:
            ln = self.line()
            if ln.startswith(b"+"):
                return

    def done(self):
        """DONE ends the IDLE: the tagged OK must come (RFC 2177 §3)."""
        self.s.sendall(b"DONE\r\n")
        while True:
            ln = self.line()
            if ln.startswith(b"i1 "):
                return ln

    def close(self):
        try:
            self.cmd(b"z9 LOGOUT")
        finally:
            self.s.close()


def test_mra_sighup_renews_certificate_under_idle(build, free_port, cert):
    env = MraEnv(build, None, cert, free_port).start()
    try:
        old_fp = cert.fingerprint()
        env.deliver("alice@example.test", b"Subject: one\r\n\r\nbody\r\n")
        sessions = []
        for implicit in (True, True, False):
            c = Imap(env.imaps_port if implicit else env.imap_port, implicit)
            assert fp_of(c.s) == old_fp
            c.cmd(b"a1 LOGIN alice@example.test secret")
            c.cmd(b"a2 SELECT INBOX")
            c.idle()
            sessions.append(c)

        new_fp = cert.renew()
        assert new_fp != old_fp
        env.proc.send_signal(signal.SIGHUP)
        log = wait_log(env.read_log, "reload: new TLS handshakes get")
        assert new_fp.upper() in log.replace(":", "")

        # new handshakes: IMAPS, IMAP STARTTLS, POP3S
        c = Imap(env.imaps_port, True)
        assert fp_of(c.s) == new_fp
        c.close()
        c = Imap(env.imap_port, False)
        assert fp_of(c.s) == new_fp
        c.close()
        with client_ctx().wrap_socket(socket.create_connection(
                ("127.0.0.1", env.pop3s_port), timeout=20)) as p:
            assert p.recv(512).startswith(b"+OK")
            assert fp_of(p) == new_fp

        # the sessions that were idling never noticed, and still work
        env.deliver("alice@example.test", b"Subject: two\r\n\r\nbody\r\n")
        for c in sessions:
            assert fp_of(c.s) == old_fp
            assert c.done().startswith(b"i1 OK")
            c.cmd(b"a3 NOOP")
            c.close()

        # a broken renewal: the key does not match; the last good
        # certificate stays in use and the log says why
        cert.renew_broken()
        env.proc.send_signal(signal.SIGHUP)
        log = wait_log(env.read_log, "reload: keeping the current certificate")
        assert "does not match" in log or "key values mismatch" in log
        c = Imap(env.imaps_port, True)
        assert fp_of(c.s) == new_fp
        c.cmd(b"a1 LOGIN alice@example.test secret")
        c.close()
        assert env.proc.poll() is None
    finally:
        env.cleanup()


def test_submission_sighup_renews_certificate_mid_transaction(build, redis, cert):
    env = SubEnv(build, redis, cert).start()
    try:
        old_fp = cert.fingerprint()
        live = env.smtp(login="alice@demo.test")
        assert fp_of(live.sock) == old_fp
        assert live.mail("alice@demo.test")[0] == 250

        new_fp = cert.renew()
        env.proc.send_signal(signal.SIGHUP)
        wait_log(env.log, "reload: new TLS handshakes get")

        # STARTTLS on 587, implicit TLS on 465, STARTTLS on the intake
        for port in (env.submission_port, env.intake_port):
            s = env.smtp(port=port)
            assert fp_of(s.sock) == new_fp
            s.quit()
        s = env.smtps()
        assert fp_of(s.sock) == new_fp
        s.quit()

        # the transaction begun before the reload completes on its session
        assert live.rcpt("bob@demo.test")[0] == 250
        assert live.data(b"Subject: across a reload\r\n\r\nbody\r\n")[0] == 250
        assert fp_of(live.sock) == old_fp
        live.quit()
        msgs = env.wait_messages("bob@demo.test", 1)
        assert any(b"across a reload" in m for _, m in msgs)

        cert.renew_broken()
        env.proc.send_signal(signal.SIGHUP)
        wait_log(env.log, "reload: keeping the current certificate")
        s = env.smtps()
        assert fp_of(s.sock) == new_fp
        s.quit()
        assert env.proc.poll() is None
    finally:
        env.cleanup()


def test_mx_relay_sighup_renews_certificate(build, redis, free_port, tmp_path, cert):
    mx = MX(build, tmp_path / "mx", redis, free_port(), tls=cert)
    mx.start()
    try:
        old_fp = cert.fingerprint()
        live = smtplib.SMTP("127.0.0.1", mx.port, timeout=20)
        live.starttls(context=client_ctx())
        live.ehlo("client.test")
        assert fp_of(live.sock) == old_fp
        assert live.mail("a@example.net")[0] == 250

        new_fp = cert.renew()
        mx.proc.send_signal(signal.SIGHUP)
        wait_log(mx.logtext, "reload: new TLS handshakes get")

        s = smtplib.SMTP("127.0.0.1", mx.port, timeout=20)
        s.starttls(context=client_ctx())
        assert fp_of(s.sock) == new_fp
        s.quit()

        assert live.rcpt("alice@demo.test")[0] == 250
        assert live.data(b"Subject: x\r\n\r\nbody\r\n")[0] == 250
        live.quit()
        assert len(mx.qids()) == 1
    finally:
        mx.cleanup()
