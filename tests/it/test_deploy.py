"""deploy/: the compose file validates with Debian's docker-compose, and the
systemd units carry the hardening the README promises."""
import configparser
import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


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
