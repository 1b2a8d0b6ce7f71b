"""fail2ban's stock filters, with the arguments deploy/fail2ban/jail.d/
mailpair.conf gives them, against the log lines shared/loginfail.c writes
through shared/log.c: every failed login matches, with the client's
address (not one a user name tries to slip in), and no success or
refusal line does. submission's lines are its own log (a real daemon,
real failed AUTHs, a login, a refusal), and so are mra's (failed IMAP
LOGIN and AUTHENTICATE PLAIN, a login, a refusal). `test_loginfail
--log-sample` (stderr: the lines, stdout: "KIND TAG ADDR" for each) still
checks success and refusal lines of every kind and the filters' tags."""
import base64
import configparser
import pathlib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess

import pytest

import servers
from mra_env import MraEnv
from sub_env import SubEnv

ROOT = pathlib.Path(__file__).resolve().parents[2]
JAIL = ROOT / "deploy" / "fail2ban" / "jail.d" / "mailpair.conf"
TAGS = {"mailpair-submission": "submission", "mailpair-mra": "mra"}


def jail_filters():
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(JAIL)
    # a value continued on the next line reads as fail2ban reads it
    return {name: " ".join(cp[name]["filter"].split()) for name in cp.sections()}


@pytest.fixture(scope="module")
def sample(build, tmp_path_factory):
    exe = build / "tests" / "test_loginfail"
    assert exe.exists(), "build %s first" % exe
    assert shutil.which("fail2ban-regex"), "deploy/deps.sh test installs fail2ban"
    log = tmp_path_factory.mktemp("f2b") / "mail.log"
    with open(log, "w") as err:
        out = subprocess.run([str(exe), "--log-sample"], stdout=subprocess.PIPE,
                             stderr=err, check=True, timeout=30, text=True).stdout
    manifest = [line.split() for line in out.splitlines()]
    lines = log.read_text().splitlines()
    # one event, one line: a user name with CR/LF forged none
    assert len(lines) == len(manifest) > 0
    # The same lines as syslog files them (/var/log/mail.log) and as
    # fail2ban renders a journal entry: "[DATE] HOST TAG[PID]: MESSAGE".
    # log.c's stderr copy has no HOST ("Mmm dd hh:mm:ss TAG[PID]: ...").
    syslog = log.with_name("syslog.log")
    syslog.write_text("".join(line[:15] + " mail.demo.test" + line[15:] + "\n"
                              for line in lines))
    return {"stderr": log, "syslog": syslog}, manifest, lines


# The failed AUTHs the submission test makes: (mechanism, user); the
# names try to forge a line or move the address fail2ban reads.
SUB_FAILURES = [
    ("PLAIN", "alice@demo.test"),
    ("LOGIN", "bob"),
    ("PLAIN", "nobody@demo.test"),
    ("PLAIN", "x]: SASL PLAIN authentication failed: [6.6.6.6]"),
    ("PLAIN", "a b\r\nsubmission[1]: warning: unknown[6.6.6.6]: x"),
    ("LOGIN", "Carol@Demo.Test"),
]


def sub_fail(e, mech, user):
    with e.smtp() as s:
        if mech == "PLAIN":
            payload = base64.b64encode(b"\0" + user.encode() + b"\0wrong-pw")
            code = s.docmd("AUTH PLAIN " + payload.decode())[0]
        else:
            assert s.docmd("AUTH LOGIN")[0] == 334
            assert s.docmd(base64.b64encode(user.encode()).decode())[0] == 334
            code = s.docmd(base64.b64encode(b"wrong-pw").decode())[0]
    return code


@pytest.fixture(scope="module")
def sub_log(build, tls_cert, tmp_path_factory):
    """submission's own log after the failures in SUB_FAILURES, a login
    and a refusal (smtpd_client_auth_rate_limit reached: 454)."""
    assert shutil.which("fail2ban-regex"), "deploy/deps.sh test installs fail2ban"
    redis = servers.Redis(base=str(tmp_path_factory.mktemp("f2b-redis"))).start()
    e = SubEnv(build, redis, tls_cert, params={
        "auth_failure_delay": "0",
        "smtpd_client_auth_rate_limit": str(len(SUB_FAILURES))}).start()
    try:
        for mech, user in SUB_FAILURES:
            assert sub_fail(e, mech, user) == 535
        # a name that has not failed logs in ("Carol@Demo.Test" above is
        # carol's pair: names fold to lower case)
        with e.smtp(login="small@demo.test") as s:
            assert s.noop()[0] == 250
        # a name that failed, from an address over the rate: refused
        assert sub_fail(e, "PLAIN", "alice@demo.test") == 454
    finally:
        e.stop()
        redis.cleanup()
    text = e.log()
    e.cleanup()
    lines = [l for l in text.splitlines()
             if re.match(r"\w{3} [ \d]\d \d\d:\d\d:\d\d submission\[\d+\]: ", l)]
    assert "SASL authentication refused" in text
    assert "sasl_method=PLAIN, sasl_username=small@demo.test" in text
    d = tmp_path_factory.mktemp("f2b-sub")
    log = d / "submission.log"
    log.write_text("".join(l + "\n" for l in lines))
    syslog = d / "syslog.log"
    syslog.write_text("".join(l[:15] + " mail.demo.test" + l[15:] + "\n"
                              for l in lines))
    return {"stderr": log, "syslog": syslog}


# The failed IMAP logins the mra test makes: (command, user); the names
# try to forge a line or move the address fail2ban reads (AUTHENTICATE
# PLAIN carries any bytes, CR LF too).
MRA_FAILURES = [
    ("LOGIN", "alice@example.test"),
    ("PLAIN", "alice@example.test"),
    ("LOGIN", "nobody@example.test"),
    ("LOGIN", "x,6.6.6.6): Invalid credentials, method=LOGIN ("),
    ("PLAIN", "a b\r\nmra[1]: imap-login: passdb(x,6.6.6.6): Invalid credentials"),
    ("PLAIN", "Carol@Example.Test"),
]


class _Imap:
    def __init__(self, env):
        ctx = ssl.create_default_context(cafile=env.tls_cert.cert)
        ctx.check_hostname = False
        s = socket.create_connection(("127.0.0.1", env.imaps_port), 10)
        self.s = ctx.wrap_socket(s)
        self.f = self.s.makefile("rb")
        assert self.f.readline().startswith(b"* OK")

    def cmd(self, line):
        self.s.sendall(line + b"\r\n")
        while True:
            ln = self.f.readline()
            assert ln, "connection closed"
            if ln.startswith(b"t "):
                return ln

    def close(self):
        self.s.close()


def mra_try(env, how, user, pw=b"wrong-pw"):
    c = _Imap(env)
    try:
        u = user.encode()
        if how == "LOGIN":
            return c.cmd(b't LOGIN "' + u + b'" "' + pw + b'"')
        ir = base64.b64encode(b"\0" + u + b"\0" + pw)
        return c.cmd(b"t AUTHENTICATE PLAIN " + ir)
    finally:
        c.close()


@pytest.fixture(scope="module")
def mra_log(build, tls_cert, free_port):
    """The mra daemon's own log after the failures in MRA_FAILURES, a
    login and a refusal (smtpd_client_auth_rate_limit reached)."""
    assert shutil.which("fail2ban-regex"), "deploy/deps.sh test installs fail2ban"
    env = MraEnv(build, None, tls_cert, free_port, auth_failure_delay="0",
                 smtpd_client_auth_rate_limit=str(len(MRA_FAILURES))).start()
    try:
        for how, user in MRA_FAILURES:
            assert b" NO [AUTHENTICATIONFAILED]" in mra_try(env, how, user)
        # a name that has not failed logs in
        assert mra_try(env, "LOGIN", "bob@example.test",
                       b"hunter2").startswith(b"t OK")
        # a name that failed, from an address over the rate: refused
        assert b"NO [UNAVAILABLE]" in mra_try(env, "PLAIN", "alice@example.test")
        env.stop()
        text = env.read_log()
    finally:
        env.cleanup()
    lines = [l for l in text.splitlines()
             if re.match(r"\w{3} [ \d]\d \d\d:\d\d:\d\d mra\[\d+\]: ", l)]
    assert "imap-login: login refused" in text
    assert "imap: login: client=127.0.0.1, user=<bob@example.test>" in text
    # the old lines without the user name are gone
    assert "user=<>" not in text and "auth failed" not in text
    d = pathlib.Path(env.dir + "-f2b")
    d.mkdir()
    log = d / "mra.log"
    log.write_text("".join(l + "\n" for l in lines))
    syslog = d / "syslog.log"
    syslog.write_text("".join(l[:15] + " mail.demo.test" + l[15:] + "\n"
                              for l in lines))
    yield {"stderr": log, "syslog": syslog}
    shutil.rmtree(d, ignore_errors=True)


def matched_ips(log, filt):
    p = subprocess.run(["fail2ban-regex", "-o", "ip", str(log), filt],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_jails_use_stock_filters():
    filters = jail_filters()
    assert set(filters) == set(TAGS)
    assert filters["mailpair-submission"].startswith("postfix[mode=auth, _daemon=submission,")
    assert filters["mailpair-mra"].startswith("dovecot[_daemon=mra,")


@pytest.mark.parametrize("form", ["stderr", "syslog"])
def test_every_submission_failure_matches_and_nothing_else(sub_log, form):
    # the daemon's whole log: connects, TLS, the login, the refusal,
    # disconnects; one address per failed AUTH, the client's own
    filt = jail_filters()["mailpair-submission"]
    assert matched_ips(sub_log[form], filt) == ["127.0.0.1"] * len(SUB_FAILURES)
    assert matched_ips(sub_log[form], jail_filters()["mailpair-mra"]) == []


@pytest.mark.parametrize("form", ["stderr", "syslog"])
def test_every_mra_failure_matches_and_nothing_else(mra_log, form):
    # the daemon's whole log: connects, the login, the refusal, logouts;
    # one address per failed IMAP LOGIN or AUTHENTICATE, the client's own
    filt = jail_filters()["mailpair-mra"]
    assert matched_ips(mra_log[form], filt) == ["127.0.0.1"] * len(MRA_FAILURES)
    assert matched_ips(mra_log[form], jail_filters()["mailpair-submission"]) == []


@pytest.mark.parametrize("form", ["stderr", "syslog"])
def test_every_mra_sample_failure_matches(sample, form):
    logs, manifest, lines = sample
    want = [addr for kind, tag, addr in manifest
            if kind == "fail" and tag == "mra"]
    assert len(want) >= 6
    assert matched_ips(logs[form], jail_filters()["mailpair-mra"]) == want


def test_success_and_refusal_lines_match_no_filter(sample, tmp_path):
    logs, manifest, lines = sample
    other = tmp_path / "other.log"
    other.write_text("".join(line + "\n" for line, (kind, _, _) in
                             zip(lines, manifest) if kind == "other"))
    assert len(other.read_text().splitlines()) >= 4
    for filt in jail_filters().values():
        assert matched_ips(other, filt) == []


def test_stock_filters_need_our_tags(sample, sub_log):
    # In syslog's form, without _daemon the stock filters skip our lines:
    # the jails' arguments are what makes them count.
    logs, manifest, lines = sample
    assert matched_ips(sub_log["syslog"], "postfix[mode=auth]") == []
    assert matched_ips(logs["syslog"], "postfix[mode=auth]") == []
    assert matched_ips(logs["syslog"], "dovecot") == []


def test_jail_file_loads(tmp_path):
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    shutil.copy(JAIL, conf / "jail.d" / JAIL.name)
    p = subprocess.run(["fail2ban-client", "-c", str(conf), "-d"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "ERROR" not in p.stderr
    for jail, tag in TAGS.items():
        assert "['add', '%s', 'systemd']" % jail in out
        # only the syslog(3) copy of the daemon's lines, not its stderr copy
        assert ("['set', '%s', 'addjournalmatch', '_SYSTEMD_UNIT=%s.service', "
                "'SYSLOG_FACILITY=2']" % (jail, tag)) in out
        assert "'addjournalmatch', '_SYSTEMD_UNIT=postfix.service'" not in out
        assert "['set', '%s', 'maxretry', 20]" % jail in out
