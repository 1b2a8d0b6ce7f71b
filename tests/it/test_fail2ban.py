"""fail2ban's stock filters, with the arguments deploy/fail2ban/jail.d/
mailpair.conf gives them, against the log lines shared/loginfail.c really
writes through shared/log.c: every failed login matches, with the client's
address (not one a user name tries to slip in), and no success or
refusal line does. The lines come from `test_loginfail --log-sample`
(stderr: the lines, stdout: "KIND TAG ADDR" for each); once the daemons
call loginfail, this reads their logs instead."""
import configparser
import pathlib
import shutil
import subprocess

import pytest

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
@pytest.mark.parametrize("jail", sorted(TAGS))
def test_every_failure_matches_and_nothing_else(sample, jail, form):
    logs, manifest, lines = sample
    log = logs[form]
    want = [addr for kind, tag, addr in manifest
            if kind == "fail" and tag == TAGS[jail]]
    assert len(want) >= 6
    # in log order: one address per failure line, the client's own; any
    # success or refusal line, or the other daemon's, would add one
    assert matched_ips(log, jail_filters()[jail]) == want


def test_success_and_refusal_lines_match_no_filter(sample, tmp_path):
    logs, manifest, lines = sample
    other = tmp_path / "other.log"
    other.write_text("".join(line + "\n" for line, (kind, _, _) in
                             zip(lines, manifest) if kind == "other"))
    assert len(other.read_text().splitlines()) >= 4
    for filt in jail_filters().values():
        assert matched_ips(other, filt) == []


def test_stock_filters_need_our_tags(sample):
    # In syslog's form, without _daemon the stock filters skip our lines:
    # the jails' arguments are what makes them count.
    logs, manifest, lines = sample
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
