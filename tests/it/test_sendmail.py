"""build/sendmail against a real submission server (tests/it/sub_env.py)
with a configured login on 587 (STARTTLS + AUTH): -f, -t with Bcc:
removed, -F, the lone-dot rule and -i/-oi; and nothing lost when the server
is down: the message waits in the local spool until `sendmail -q` or the
next call that reaches the server; a refusal for good is reported and a
copy kept."""
import os
import pathlib
import subprocess

import pytest

from sub_env import SubEnv


class Sendmail:
    def __init__(self, build, sub, tmp_path):
        self.bin = os.path.join(str(build), "sendmail")
        self.sub = sub
        self.etc = tmp_path / "etc"
        self.spool = tmp_path / "spool"
        self.etc.mkdir()
        self.spool.mkdir()
        pw = self.etc / "sendmail_passwd"
        pw.write_text("[127.0.0.1]:%d alice@demo.test:%s\n"
                      % (sub.submission_port, sub.users["alice@demo.test"][0]))
        pw.chmod(0o600)
        (self.etc / "sendmail.cf").write_text(
            "relayhost = [127.0.0.1]:%d\n"
            "smtp_tls_security_level = encrypt\n"
            "smtp_sasl_password_maps = texthash:%s\n"
            "sendmail_spool_directory = %s\n"
            "smtp_connect_timeout = 5s\n"
            "syslog_enable = no\n"
            "myhostname = client.demo.test\n"
            "myorigin = demo.test\n" % (sub.submission_port, pw, self.spool))

    def run(self, args, data, **kw):
        return subprocess.run([self.bin, "-C", str(self.etc)] + args,
                              input=data, capture_output=True, timeout=120, **kw)

    def spooled(self, prefix="Q."):
        return sorted(p.name for p in self.spool.iterdir() if p.name.startswith(prefix))


@pytest.fixture
def sub(build, redis, tls_cert):
    s = SubEnv(build, redis, tls_cert).start()
    yield s
    s.cleanup()


@pytest.fixture
def sm(build, sub, tmp_path):
    return Sendmail(build, sub, tmp_path)


def test_submits_with_login(sm, sub):
    r = sm.run(["-f", "alice@demo.test", "bob@demo.test"],
               b"Subject: cron job\nFrom: alice@demo.test\n\nall done\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and r.stderr == b""     # quiet for cron
    msgs = sub.wait_messages("bob@demo.test", 1)
    assert len(msgs) == 1
    body = msgs[0][1]
    assert b"Subject: cron job\r\n" in body and b"\r\n\r\nall done\r\n" in body
    # what the message lacked is added: Date and Message-ID
    assert b"\r\nDate: " in body and b"\r\nMessage-ID: <" in body
    assert sm.spooled() == []


def test_default_sender_is_the_login(sm, sub):
    """PHP calls `sendmail -t -i` without -f: the envelope sender is the
    configured login, which the server's reject_sender_login_mismatch
    accepts (a Unix name @ myorigin would be refused)."""
    r = sm.run(["-t", "-i"], b"To: bob@demo.test\nSubject: php\n\nfrom mail()\n")
    assert r.returncode == 0, r.stderr
    got = sub.wait_messages("bob@demo.test", 1)
    assert len(got) == 1
    assert b"\r\nFrom: <alice@demo.test>\r\n" in got[0][1]
    assert b"Return-Path: <alice@demo.test>" in got[0][1]


def test_extract_recipients_bcc_removed_and_fullname(sm, sub):
    msg = (b"To: Bob <bob@demo.test>\n"
           b"Cc: \"Carol C.\" <carol@demo.test>,\n  alice\n"
           b"Bcc: small@demo.test\n"
           b"Subject: t\n\nhello\n")
    r = sm.run(["-t", "-f", "alice@demo.test", "-F", "Alice Example"], msg)
    assert r.returncode == 0, r.stderr
    # the folded Cc: line's bare "alice" got @myorigin
    for user in ("bob@demo.test", "carol@demo.test", "small@demo.test",
                 "alice@demo.test"):
        got = sub.wait_messages(user, 1)
        assert len(got) == 1, user
        head = got[0][1].split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in head and not head.startswith(b"Bcc:"), user
        assert b'\r\nFrom: "Alice Example" <alice@demo.test>\r\n' in head
        assert b'\r\nCc: "Carol C." <carol@demo.test>,\r\n  alice\r\n' in head


def test_lone_dot_and_i(sm, sub):
    msg = b"Subject: dots\n\nline one\n.\nafter the dot\n"
    assert sm.run(["-f", "alice@demo.test", "bob@demo.test"], msg).returncode == 0
    assert sm.run(["-oi", "-f", "alice@demo.test", "bob@demo.test"], msg).returncode == 0
    assert sm.run(["-i", "-f", "alice@demo.test", "bob@demo.test"], msg).returncode == 0
    got = sorted(m for _, m in sub.wait_messages("bob@demo.test", 3))
    assert len(got) == 3
    cut = [m for m in got if b"after the dot" not in m]
    kept = [m for m in got if b"line one\r\n.\r\nafter the dot\r\n" in m]
    assert len(cut) == 1 and len(kept) == 2


def test_server_down_spools_then_q_submits(sm, sub):
    sub.stop()
    for i in range(3):
        r = sm.run(["-f", "alice@demo.test", "bob@demo.test"],
                   b"Subject: while down %d\n\nqueued %d\n" % (i, i))
        assert r.returncode == 0, r.stderr          # safe in the spool
    assert len(sm.spooled()) == 3
    for name in sm.spooled():
        assert (sm.spool / name).stat().st_mode & 0o077 == 0
    # still down: -q keeps them
    assert sm.run(["-q"], b"").returncode == 0
    assert len(sm.spooled()) == 3
    sub.start()
    r = sm.run(["-q"], b"")
    assert r.returncode == 0, r.stderr
    assert sm.spooled() == []
    got = sub.wait_messages("bob@demo.test", 3)
    assert sorted(b"queued %d" % i in m for _, m in got for i in range(3)).count(True) == 3


def test_next_call_flushes_the_spool(sm, sub):
    sub.stop()
    assert sm.run(["-f", "alice@demo.test", "carol@demo.test"],
                  b"Subject: first\n\nspooled while down\n").returncode == 0
    assert len(sm.spooled()) == 1
    sub.start()
    assert sm.run(["-f", "alice@demo.test", "bob@demo.test"],
                  b"Subject: second\n\nserver back\n").returncode == 0
    assert sm.spooled() == []
    assert len(sub.wait_messages("carol@demo.test", 1)) == 1
    assert len(sub.wait_messages("bob@demo.test", 1)) == 1


def test_refused_for_good_is_reported_and_kept(sm, sub):
    r = sm.run(["-f", "alice@demo.test", "no-such-user@demo.test"],
               b"Subject: lost?\n\nnot lost\n")
    assert r.returncode == 69
    assert b"no-such-user@demo.test" in r.stderr and b"refused" in r.stderr
    kept = sm.spooled("F.")
    assert len(kept) == 1
    data = (sm.spool / kept[0]).read_bytes()
    assert b"R no-such-user@demo.test\n" in data and b"not lost" in data
    assert sm.spooled() == []            # never retried


def test_usage_errors(sm):
    r = sm.run([], b"Subject: x\n\nno rcpt\n")
    assert r.returncode == 64 and b"no recipients" in r.stderr
    r = sm.run(["-f", "alice@demo.test", "bad address@demo.test"], b"x\n")
    assert r.returncode == 64
    r = subprocess.run([sm.bin, "--help"], capture_output=True)
    assert r.returncode == 0 and b"-t" in r.stdout and b"-q" in r.stdout


def test_unprivileged_caller_spools_in_a_1733_spool(build, sub, tmp_path):
    """PHP or a cron job of another user: it may write the spool (mode
    1733, like Postfix's maildrop) but not read it; root's `sendmail -q`
    then submits its message."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run sendmail as another user")
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(prefix="sendmail-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        base = pathlib.Path(top)
        sm = Sendmail(build, sub, base)
        # nobody must reach the binary: a checkout under /root (0700) is
        # closed to it, so it runs a copy, as it would an installed one
        shutil.copy2(sm.bin, base / "sendmail")
        sm.bin = str(base / "sendmail")
        os.chmod(base / "etc", 0o755)
        # root:group-of-the-caller 0640 in a real site; here the caller is nobody
        os.chown(base / "etc" / "sendmail_passwd", 0, nobody.pw_gid)
        os.chmod(base / "etc" / "sendmail_passwd", 0o640)
        os.chmod(sm.spool, 0o1733)
        sub.stop()
        r = sm.run(["-f", "alice@demo.test", "bob@demo.test"],
                   b"Subject: from php\n\nqueued by nobody\n", user=nobody.pw_uid,
                   group=nobody.pw_gid, extra_groups=[])
        assert r.returncode == 0, r.stderr
        files = sm.spooled()
        assert len(files) == 1
        assert (sm.spool / files[0]).stat().st_uid == nobody.pw_uid
        sub.start()
        r = sm.run(["-q"], b"")
        assert r.returncode == 0, r.stderr
        assert sm.spooled() == []
        got = sub.wait_messages("bob@demo.test", 1)
        assert len(got) == 1 and b"queued by nobody" in got[0][1]
    finally:
        shutil.rmtree(top, ignore_errors=True)
