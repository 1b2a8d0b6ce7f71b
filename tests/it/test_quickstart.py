"""deploy/quickstart.sh (`make run`) end to end, in a private network
namespace (`unshare -n`) so its fixed ports never meet a demo already
running on this machine: start, the generated demo password (no published
one), a message through the MX to alice read back over IMAPS, stop."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHECK = textwrap.dedent(r'''
    import imaplib, os, smtplib, ssl, sys, time
    top = sys.argv[1]
    pw = open(os.path.join(top, "run/etc/demo-password")).read().strip()
    assert len(pw) >= 12 and pw != "demo-password", pw
    vpasswd = open(os.path.join(top, "run/etc/vpasswd")).read()
    assert pw not in vpasswd
    with smtplib.SMTP("127.0.0.1", 2525, timeout=30) as s:
        s.ehlo("client.example")
        s.sendmail("someone@example.net", ["alice@example.test"],
                   b"Subject: quickstart\r\n\r\nthrough the MX\r\n")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.time() + 60
    while True:
        with imaplib.IMAP4_SSL("127.0.0.1", 5993, ssl_context=ctx) as m:
            m.login("alice@example.test", pw)
            m.select("INBOX")
            typ, data = m.search(None, "SUBJECT", "quickstart")
            if data[0].split():
                typ, msg = m.fetch(data[0].split()[0], "(BODY.PEEK[TEXT])")
                assert b"through the MX" in msg[0][1]
                break
        assert time.time() < deadline, "the message never reached alice"
        time.sleep(0.5)
    # a wrong password is refused
    with imaplib.IMAP4_SSL("127.0.0.1", 5993, ssl_context=ctx) as m:
        try:
            m.login("alice@example.test", "demo-password")
            raise AssertionError("the old published password works")
        except imaplib.IMAP4.error:
            pass
    print("quickstart ok")
''')


def test_quickstart_start_use_stop(build):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private network namespace")
    top = tempfile.mkdtemp(prefix="quickstart-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        shutil.copytree(os.path.join(ROOT, "deploy"), os.path.join(top, "deploy"))
        check = os.path.join(top, "check.py")
        with open(check, "w") as f:
            f.write(CHECK)
        qs = os.path.join(top, "deploy", "quickstart.sh")
        script = ("set -e; ip link set lo up; "
                  "trap 'sh %s stop' EXIT; "
                  "sh %s start %s; %s %s %s"
                  % (qs, qs, build, sys.executable, check, top))
        r = subprocess.run(["unshare", "-n", "sh", "-c", script],
                           capture_output=True, text=True, timeout=300)
        logs = ""
        for name in ("mx-relay", "submission", "mra"):
            p = os.path.join(top, "run", "log", name + ".log")
            if os.path.exists(p):
                logs += "\n--- %s\n%s" % (name, open(p).read()[-2000:])
        assert r.returncode == 0, r.stdout + r.stderr + logs
        assert "quickstart ok" in r.stdout
        assert "The demo site is up" in r.stdout
        # the password it printed is the generated one
        pw = open(os.path.join(top, "run", "etc", "demo-password")).read().strip()
        assert "password " + pw in r.stdout
        # stop left nothing running
        assert "stopped mx-relay" in r.stdout and "stopped redis" in r.stdout
        assert not [f for f in os.listdir(os.path.join(top, "run", "pid"))
                    if f.endswith(".pid")]
    finally:
        shutil.rmtree(top, ignore_errors=True)
