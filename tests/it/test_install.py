"""`make install` and `make uninstall` into a DESTDIR: binaries (sendmail
included), man pages that pass `mandoc -T lint`, systemd units, the
samples in /etc/mailpair never overwriting a file that exists and never
with a known password, the sendmail spool; uninstall keeps the
configuration. Also `--help` of every program, which the man pages back."""
import os
import pathlib
import re
import shutil
import stat
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRAMS = ["mx-relay", "submission", "mra", "mailq", "mailctl", "sendmail"]


def make(build, *args):
    r = subprocess.run(["make", "-s", "-C", str(ROOT), "B=" + str(build)] + list(args),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def dest(build, tmp_path_factory):
    d = tmp_path_factory.mktemp("destdir")
    make(build, "install", "DESTDIR=" + str(d))
    return d


def test_man_pages_lint_clean():
    if shutil.which("mandoc") is None:
        pytest.fail("mandoc is not installed (deploy/deps.sh test installs it)")
    pages = sorted((ROOT / "deploy" / "man").iterdir())
    names = {p.stem for p in pages}
    assert names == set(PROGRAMS)
    for p in pages:
        r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", str(p)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (p, r.stdout, r.stderr)
        # each page documents the options its program's --help names
        text = p.read_text()
        assert ".Sh SYNOPSIS" in text and ".Sh EXIT STATUS" in text


def test_help_everywhere(build):
    for prog in PROGRAMS:
        for flag in ("-h", "--help"):
            r = subprocess.run([str(build / prog), flag], capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0, (prog, flag, r.stderr)
            assert r.stdout.lower().startswith("usage: " + prog), (prog, flag, r.stdout[:80])


def test_install_layout(dest):
    sbin = dest / "usr" / "local" / "sbin"
    for prog in PROGRAMS:
        st = (sbin / prog).stat()
        assert stat.S_IMODE(st.st_mode) == 0o755, prog
    man = dest / "usr" / "local" / "share" / "man"
    assert (man / "man1" / "sendmail.1").is_file()
    for p in ("mx-relay", "submission", "mra", "mailq", "mailctl"):
        assert (man / "man8" / (p + ".8")).is_file()
    units = dest / "etc" / "systemd" / "system"
    for u in ("mx-relay", "submission", "mra"):
        text = (units / (u + ".service")).read_text()
        assert "ExecStart=/usr/local/sbin/" + u in text
    spool = dest / "var" / "spool" / "mailpair"
    assert stat.S_IMODE(spool.stat().st_mode) == 0o1733


def test_installed_config_has_no_known_password(dest):
    etc = dest / "etc" / "mailpair"
    # others may only open sendmail.cf (no password in it) by name
    assert stat.S_IMODE(etc.stat().st_mode) == 0o751
    assert stat.S_IMODE((etc / "sendmail.cf").stat().st_mode) == 0o644
    for f in ("mx-relay.cf", "submission.cf", "mra.cf", "relay_passwd",
              "texthash/vpasswd", "mysql/relay_recipient_maps.cf",
              "mysql/virtual_password_maps.cf"):
        assert stat.S_IMODE((etc / f).stat().st_mode) == 0o640, f
    vpasswd = (etc / "texthash" / "vpasswd").read_text()
    assert all(l.startswith("#") for l in vpasswd.splitlines() if l.strip())
    assert "{SHA512-CRYPT}$6$" not in vpasswd
    relay = [l for l in (etc / "relay_passwd").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert len(relay) == 1
    pw = relay[0].rsplit(":", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{48}", pw)
    shipped = (ROOT / "deploy" / "etc" / "mx" / "relay_passwd").read_text()
    assert pw not in shipped
    # no sample password anywhere; one generated password per database
    # account, the same in every file of that account
    for f in etc.rglob("*"):
        if f.is_file():
            assert "change-me" not in f.read_text(), f
    seen = {}
    for cf in (etc / "mysql").glob("*.cf"):
        kv = dict(l.split(" = ", 1) for l in cf.read_text().splitlines()
                  if " = " in l and not l.startswith("#"))
        seen.setdefault(kv["user"], set()).add(kv["password"])
    assert set(seen) == {"mailpair", "mailpair_mx"}
    assert all(len(v) == 1 for v in seen.values())
    assert seen["mailpair"] != seen["mailpair_mx"]
    assert all(re.fullmatch(r"[0-9a-f]{48}", next(iter(v))) for v in seen.values())


def test_reinstall_keeps_existing_files_then_uninstall(build, tmp_path):
    d = tmp_path / "dest"
    make(build, "install", "DESTDIR=" + str(d))
    cf = d / "etc" / "mailpair" / "submission.cf"
    cf.write_text("myhostname = mine.example\n")
    relay = (d / "etc" / "mailpair" / "relay_passwd").read_text()
    out = make(build, "install", "DESTDIR=" + str(d))
    assert "kept" in out
    assert cf.read_text() == "myhostname = mine.example\n"
    assert (d / "etc" / "mailpair" / "relay_passwd").read_text() == relay
    # a message waiting in the spool survives uninstall, as does the config
    (d / "var" / "spool" / "mailpair" / "Q.1.2.3").write_text("waiting")
    make(build, "uninstall", "DESTDIR=" + str(d))
    for prog in PROGRAMS:
        assert not (d / "usr" / "local" / "sbin" / prog).exists()
    assert not (d / "usr" / "local" / "share" / "man" / "man1" / "sendmail.1").exists()
    assert not (d / "etc" / "systemd" / "system" / "mra.service").exists()
    assert not (d / "usr" / "local" / "share" / "mailpair").exists()
    assert cf.read_text() == "myhostname = mine.example\n"
    assert (d / "var" / "spool" / "mailpair" / "Q.1.2.3").read_text() == "waiting"


def test_install_role_mx_only(build, tmp_path):
    d = tmp_path / "dest"
    make(build, "install", "DESTDIR=" + str(d), "ROLE=mx")
    etc = d / "etc" / "mailpair"
    assert (etc / "mx-relay.cf").is_file()
    assert not (etc / "submission.cf").exists() and not (etc / "mra.cf").exists()
    # the MX host gets no file with the read-write account
    for cf in (etc / "mysql").iterdir():
        assert "user = mailpair_mx" in cf.read_text(), cf
