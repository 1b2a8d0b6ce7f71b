"""deploy/: the compose file validates with Debian's docker-compose, and the
systemd units carry the hardening the README promises."""
import configparser
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# the integration fixtures (build, redis, tls_cert, free_port) come from
# conftest.py beside this file


def test_compose_file_validates(tmp_path):
    d = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", d)
    shutil.copy(d / "compose.env.sample", d / "compose.env")
    r = subprocess.run(["docker-compose", "-f", str(d / "compose.yaml"), "config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Only the MX's 25 and the internal host's client ports are published.
    published = sorted(l.split(":")[-1].strip().strip("'\"")
                       for l in r.stdout.splitlines() if "published" in l)
    assert published == sorted(["25", "587", "465", "993", "995", "143", "110"]), published


def test_compose_inside_network_is_internal(tmp_path):
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    inside = text[text.index("\nnetworks:\n"):]
    assert "inside:\n    internal: true" in inside


def test_systemd_units_hardened():
    for name in ("mx-relay", "submission", "mra"):
        cp = configparser.ConfigParser(strict=False)
        cp.optionxform = str
        cp.read(ROOT / "deploy" / "systemd" / (name + ".service"))
        svc = cp["Service"]
        assert svc["NoNewPrivileges"] == "yes"
        assert svc["ProtectSystem"] == "strict"
        assert "CAP_NET_BIND_SERVICE" in svc["CapabilityBoundingSet"]
        assert svc["ExecStart"].startswith("/usr/local/sbin/" + name)
        # systemctl enable needs an [Install] section; After= on
        # network-online.target does nothing without Wants= on it
        assert cp["Install"]["WantedBy"] == "multi-user.target"
        assert "network-online.target" in cp["Unit"]["Wants"].split()
        assert "network-online.target" in cp["Unit"]["After"].split()


UNITS = ("mx-relay", "submission", "mra")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
BUILD = pathlib.Path(os.environ.get("BUILD", ROOT / "build"))


def _units_with_built_binaries(tmp_path):
    """The units as shipped, ExecStart pointed at the built daemons: verify
    refuses a unit whose command does not exist (nothing is installed
    under /usr/local/sbin here)."""
    out = []
    for name in UNITS:
        text = (ROOT / "deploy" / "systemd" / (name + ".service")).read_text()
        text = text.replace("/usr/local/sbin/", str(BUILD) + "/")
        p = tmp_path / (name + ".service")
        p.write_text(text)
        out.append(p)
    return out


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="systemd-analyze is not installed (apt-get install systemd)")
def test_systemd_units_verify(tmp_path):
    for name in UNITS:
        assert (BUILD / name).exists(), "build the daemons first: " + str(BUILD / name)
    units = _units_with_built_binaries(tmp_path)
    r = subprocess.run([SYSTEMD_ANALYZE, "verify"] + [str(u) for u in units],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # verify prints every problem it finds, even the ones it does not fail on
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def _exposure(unit):
    r = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true",
                        "--no-pager", str(unit)],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="systemd-analyze is not installed (apt-get install systemd)")
def test_systemd_units_security_score():
    for name in UNITS:
        score = _exposure(ROOT / "deploy" / "systemd" / (name + ".service"))
        assert score <= 2.0, (name, score)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="systemd-analyze is not installed (apt-get install systemd)")
def test_systemd_security_score_sees_weak_units(tmp_path):
    """The score parsed above is the real one: the same unit stripped of its
    hardening rates far worse."""
    text = (ROOT / "deploy" / "systemd" / "mx-relay.service").read_text()
    keep = ("[", "Description", "Exec", "Type", "After", "Wants", "WantedBy",
            "Restart")
    weak = "\n".join(l for l in text.splitlines() if l.startswith(keep))
    p = tmp_path / "weak.service"
    p.write_text(weak + "\n")
    assert _exposure(p) > 5.0


def test_systemd_units_reload_and_run_unprivileged():
    for name in UNITS:
        cp = configparser.ConfigParser(strict=False, interpolation=None)
        cp.optionxform = str
        cp.read(ROOT / "deploy" / "systemd" / (name + ".service"))
        svc = cp["Service"]
        # systemctl reload sends SIGHUP: certificates and maps re-read
        assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
        assert svc["User"] == "vmail"
        # binding a port below 1024 is the one capability left
        assert svc["CapabilityBoundingSet"].split() == ["CAP_NET_BIND_SERVICE"]
        assert svc["AmbientCapabilities"].split() == ["CAP_NET_BIND_SERVICE"]
        assert svc["PrivateTmp"] == "yes"
        assert svc["MemoryDenyWriteExecute"] == "yes"
        if name != "mx-relay":
            assert "/var/mail/vhosts" in svc["ReadWritePaths"].split()


@pytest.mark.skipif(shutil.which("systemctl") is None,
                    reason="systemctl is not installed (apt-get install systemd)")
def test_systemctl_enable_accepts_units(tmp_path):
    unitdir = tmp_path / "etc" / "systemd" / "system"
    unitdir.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(ROOT / "deploy" / "systemd" / (name + ".service"), unitdir)
    r = subprocess.run(["systemctl", "--root=" + str(tmp_path), "enable"] +
                       [n + ".service" for n in UNITS],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in UNITS:
        link = unitdir / "multi-user.target.wants" / (name + ".service")
        assert link.is_symlink(), r.stderr


# ---- the forwarder closes its cached connections with QUIT ---------------

def _forwarding_pair(build, redis, tls_cert, tmp_path, free_port, **mxparams):
    sys.path.insert(0, str(ROOT / "tests" / "it"))
    from mx_env import MX
    from sub_env import SubEnv
    sub = SubEnv(build, redis, tls_cert)
    maps = os.path.join(sub.etc, "relay_passwd")
    with open(maps, "w") as f:
        f.write("[127.0.0.1]:%d relay@mx.internal:relay-pw\n" % sub.intake_port)
    os.chmod(maps, 0o644)
    params = dict(users=["bob@demo.test"], mx_forward_enable="yes",
                  relayhost="[127.0.0.1]:%d" % sub.intake_port,
                  smtp_tls_security_level="encrypt", smtp_sasl_auth_enable="yes",
                  smtp_sasl_password_maps="texthash:" + maps,
                  queue_run_delay="0s")
    params.update(mxparams)
    mx = MX(build, tmp_path / "mx", redis, free_port(), tls=tls_cert, **params)
    return sub, mx


def _send_one(mx, subject):
    import smtplib
    with smtplib.SMTP("127.0.0.1", mx.port, timeout=30) as s:
        s.ehlo("client.example.net")
        s.sendmail("someone@example.net", ["bob@demo.test"],
                   ("Subject: %s\r\n\r\nbody\r\n" % subject).encode())


def _wait_for(pred, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def _intake_sessions(sub):
    """The intake's log lines about the forwarder's sessions ending (not
    the start-up probes that connect and close without a command)."""
    return [l for l in sub.log().splitlines()
            if ("disconnect from" in l or "lost connection" in l) and
            "commands=0" not in l and "after unknown from" not in l]


def test_forwarder_quits_cached_connection_after_idle(build, redis, tls_cert,
                                                      tmp_path, free_port):
    sub, mx = _forwarding_pair(build, redis, tls_cert, tmp_path, free_port,
                               smtp_connection_cache_time_limit="1s")
    try:
        sub.start()
        mx.start()
        _send_one(mx, "cached then idle")
        assert len(sub.wait_messages("bob@demo.test", 1, timeout=30)) == 1
        # the cached connection is closed when its idle time runs out;
        # the intake logs the end of that session
        ends = _wait_for(lambda: _intake_sessions(sub))
        assert ends, sub.log()[-3000:]
        assert not [l for l in ends if "lost connection" in l], ends
        assert [l for l in ends if "quit=1" in l], ends
    finally:
        mx.cleanup()
        sub.cleanup()


def test_forwarder_quits_cached_connection_at_shutdown(build, redis, tls_cert,
                                                       tmp_path, free_port):
    sub, mx = _forwarding_pair(build, redis, tls_cert, tmp_path, free_port,
                               smtp_connection_cache_time_limit="600s")
    try:
        sub.start()
        mx.start()
        _send_one(mx, "cached at shutdown")
        assert len(sub.wait_messages("bob@demo.test", 1, timeout=30)) == 1
        assert _wait_for(lambda: mx.qids() == [])
        assert _intake_sessions(sub) == []      # still cached
        mx.stop()
        ends = _wait_for(lambda: _intake_sessions(sub))
        assert ends, sub.log()[-3000:]
        assert not [l for l in ends if "lost connection" in l], ends
        assert [l for l in ends if "quit=1" in l], ends
    finally:
        mx.cleanup()
        sub.cleanup()


# ---- --help everywhere -----------------------------------------------------

@pytest.mark.parametrize("prog", ["mx-relay", "submission", "mra", "mailq", "mailctl"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_usage(prog, flag):
    exe = BUILD / prog
    assert exe.exists(), "build first: " + str(exe)
    # no config folder is read for help: it works on a fresh install
    r = subprocess.run([str(exe), flag], capture_output=True, text=True,
                       timeout=20, cwd="/")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.startswith("Usage: " + prog), r.stdout
    assert r.stderr == ""
    assert "-c DIR" in r.stdout and "/etc/mailpair" in r.stdout
    assert "--help" in r.stdout
    # a real usage text: what the program does and where the rest is
    assert len(r.stdout.splitlines()) >= 8, r.stdout
    assert "(8)" in r.stdout


@pytest.mark.parametrize("prog", ["mx-relay", "submission", "mra", "mailq", "mailctl"])
def test_bad_option_is_a_usage_error(prog):
    r = subprocess.run([str(BUILD / prog), "--no-such-option"],
                       capture_output=True, text=True, timeout=20, cwd="/")
    assert r.returncode not in (0, None)
    assert r.stdout == ""
