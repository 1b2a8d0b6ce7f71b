"""deploy/compose.yaml as docker-compose renders it: each service sees only
its own secrets (the Internet-facing mx-relay only the read-only database
account and its relay login), hardening on every service, mounts Docker
accepts, a Postfix Admin service inside; and the container helpers of
deploy/docker/ run for real: make-secrets.sh, the entrypoint that writes a
service's secrets into its config, and the protocol-level health check
against the real daemons."""
import os
import pathlib
import shutil
import stat
import subprocess

import pytest
import yaml

from mra_env import MraEnv
from mx_env import MX
from sub_env import SubEnv

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
SECRETS = {"mariadb_root_password", "db_password", "mx_db_password",
           "relay_password", "postfixadmin_db_password",
           "postfixadmin_setup_password"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = tmp_path_factory.mktemp("compose") / "deploy"
    shutil.copytree(ROOT / "deploy", d)
    r = subprocess.run(["docker-compose", "-f", str(d / "compose.yaml"), "config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def secrets_of(svc):
    return {s["source"] if isinstance(s, dict) else s for s in svc.get("secrets", [])}


def test_secrets_split(rendered):
    svcs = rendered["services"]
    assert set(rendered["secrets"]) == SECRETS
    # the root password: the database server only
    for name, svc in svcs.items():
        env = svc.get("environment") or {}
        assert "env_file" not in svc, name
        assert "MARIADB_ROOT_PASSWORD" not in env, name
        if name != "mariadb":
            assert "mariadb_root_password" not in secrets_of(svc), name
            assert not any("ROOT_PASSWORD" in k for k in env), name
        # no password as a plain value anywhere: only *_FILE pointers
        for k, v in env.items():
            if "PASSWORD" in k:
                assert k.endswith("_FILE") and str(v).startswith("/run/secrets/"), (name, k)
    # the MX: the read-only account and its relay login, nothing else
    assert secrets_of(svcs["mx-relay"]) == {"mx_db_password", "relay_password"}
    assert svcs["mx-relay"]["environment"]["MAILPAIR_DB_SECRET"] == "mx_db_password"
    assert secrets_of(svcs["submission"]) == {"db_password"}
    assert secrets_of(svcs["mra"]) == {"db_password"}
    assert secrets_of(svcs["postfixadmin"]) == {"postfixadmin_db_password",
                                                "postfixadmin_setup_password"}
    assert secrets_of(svcs["mx-redis"]) == set() and secrets_of(svcs["redis"]) == set()
    assert svcs["mariadb"]["environment"]["MARIADB_ROOT_PASSWORD_FILE"] == \
        "/run/secrets/mariadb_root_password"
    # the read-only account the MX uses is the one the database creates
    # with SELECT only, and no column with a password hash
    init = (DOCKER / "initdb" / "20-accounts.sh").read_text()
    grants = [l for l in init.splitlines() if "mailpair_mx" in l and "GRANT" in l]
    assert grants and all(l.startswith("GRANT SELECT ") for l in grants)
    assert "GRANT SELECT (username, active) ON mailpair.mailbox" in init
    for cf in (ROOT / "deploy" / "etc" / "mx" / "mysql").glob("*.cf"):
        assert "user = mailpair_mx" in cf.read_text().splitlines(), cf


def test_hardening(rendered):
    for name, svc in rendered["services"].items():
        assert svc.get("read_only") is True, name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert svc.get("cap_drop") == ["ALL"], name
        assert set(svc.get("cap_add", [])) <= {"NET_BIND_SERVICE", "SETUID", "SETGID"}, name
    for name in ("redis", "mx-redis", "mariadb", "rspamd", "rspamd-redis"):
        # (Compose v2 leaves profile services out unless asked for)
        assert "cap_add" not in rendered["services"].get(name, {}), name


def test_health_checks_speak_the_protocol(rendered):
    svcs = rendered["services"]
    tests = {n: " ".join(s["healthcheck"]["test"]) for n, s in svcs.items()}
    for name, test in tests.items():
        assert "nc -z" not in test, name
    assert tests["mx-relay"].endswith("healthcheck smtp 25")
    assert tests["submission"].endswith("healthcheck smtp 587")
    assert tests["mra"].endswith("healthcheck imap 143")
    assert "redis-cli ping" in tests["redis"] and "PONG" in tests["redis"]
    assert "redis-cli ping" in tests["mx-redis"]


def bind_of(v):
    """{"source", "target"} of a bind mount in either syntax, else None."""
    if isinstance(v, str):
        parts = v.split(":")
        if len(parts) < 2 or not parts[0].startswith("/"):
            return None
        return {"source": parts[0], "target": parts[1]}
    return v if v.get("type") == "bind" else None


def test_mounts_docker_accepts(rendered):
    """No bind mount inside another bind of the same container (Docker
    cannot make the mount point in a read-only bind), and every bind
    source the project ships exists."""
    checked = 0
    for name, svc in rendered["services"].items():
        binds = [bind_of(v) for v in svc.get("volumes", [])]
        binds = [v for v in binds if v is not None]
        targets = [v["target"] for v in binds]
        for a in targets:
            for b in targets:
                assert a == b or not b.startswith(a.rstrip("/") + "/"), (name, a, b)
        for v in binds:
            rel = v["source"].rsplit("/compose0/deploy/", 1)[-1]
            if rel == "tls":
                continue      # the site's own certificate, never shipped
            assert (ROOT / "deploy" / rel).exists(), (name, v["source"])
            checked += 1
    assert checked >= 6


def test_postfixadmin_inside_over_same_database(rendered):
    pfa = rendered["services"]["postfixadmin"]
    assert pfa["image"].startswith("postfixadmin")
    assert list(pfa["networks"]) == ["inside"]
    assert "ports" not in pfa
    assert "inside" in rendered["services"]["mariadb"]["networks"]
    conf = (DOCKER / "postfixadmin" / "config.local.php").read_text()
    assert "$CONF['database_host'] = 'mariadb';" in conf
    assert "$CONF['database_name'] = 'mailpair';" in conf
    assert "/run/secrets/" in conf


def test_rspamd_profile(tmp_path):
    """The optional Rspamd service: rendered only with --profile rspamd
    where the engine honours profiles, on the inside network with its own
    Redis on a network of its own, no secrets, not published; and the
    sample configs name its milter socket."""
    d = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", d)
    r = subprocess.run(["docker-compose", "-f", str(d / "compose.yaml"),
                        "--profile", "rspamd", "config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    svcs = yaml.safe_load(r.stdout)["services"]
    rs, rr = svcs["rspamd"], svcs["rspamd-redis"]
    assert rs["profiles"] == ["rspamd"] and rr["profiles"] == ["rspamd"]
    assert rs["image"].startswith("rspamd/rspamd:")
    assert set(rs["networks"]) == {"inside", "rspamd"}
    assert list(rr["networks"]) == ["rspamd"]
    # both mail hosts reach it; the MX's and the internal Redis do not
    # share its network
    for name in ("mx-relay", "submission"):
        assert "inside" in svcs[name]["networks"], name
    for name in ("redis", "mx-redis", "mx-relay", "submission"):
        assert "rspamd" not in svcs[name]["networks"], name
    assert "ports" not in rs and "ports" not in rr
    assert secrets_of(rs) == set() and secrets_of(rr) == set()
    assert rs["depends_on"]["rspamd-redis"]["condition"] == "service_healthy"
    assert "redis-cli ping" in " ".join(rr["healthcheck"]["test"])
    # its configuration: the milter proxy on 11332, its own Redis
    local = ROOT / "deploy" / "etc" / "rspamd" / "local.d"
    proxy = (local / "worker-proxy.inc").read_text()
    assert 'bind_socket = "*:11332";' in proxy and "milter = yes;" in proxy
    assert 'servers = "rspamd-redis:6379";' in (local / "redis.conf").read_text()
    assert any(v.endswith(":/etc/rspamd:ro") or
               (isinstance(v, dict) and v.get("target") == "/etc/rspamd" and
                v.get("read_only")) for v in rs["volumes"]), rs["volumes"]
    # the sample configs wire it, commented
    for cf in ("mx/mx-relay.cf", "internal/submission.cf"):
        lines = (ROOT / "deploy" / "etc" / cf).read_text().splitlines()
        assert "#smtpd_milters = inet:rspamd:11332" in lines, cf
        assert not any(l.startswith("smtpd_milters") for l in lines), cf


def test_make_secrets_generates_and_keeps(tmp_path):
    d = tmp_path / "secrets"
    subprocess.run(["sh", str(DOCKER / "make-secrets.sh"), str(d)], check=True,
                   capture_output=True)
    assert {p.name for p in d.iterdir()} == SECRETS
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    values = {p.name: p.read_text().strip() for p in d.iterdir()}
    assert len(set(values.values())) == len(SECRETS)
    assert all(len(v) >= 32 for v in values.values())
    subprocess.run(["sh", str(DOCKER / "make-secrets.sh"), str(d)], check=True,
                   capture_output=True)
    assert {p.name: p.read_text().strip() for p in d.iterdir()} == values


def test_entrypoint_writes_only_the_services_secrets(tmp_path):
    src = ROOT / "deploy" / "etc" / "mx"
    dst = tmp_path / "etc"
    dst.mkdir()
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    (secrets / "mx_db_password").write_text("mx-db-s3cret\n")
    (secrets / "relay_password").write_text("relay-s3cret\n")
    env = dict(os.environ, MAILPAIR_SRC=str(src), MAILPAIR_DST=str(dst),
               MAILPAIR_TLS=str(tmp_path / "tls"), MAILPAIR_SECRETS=str(secrets),
               MAILPAIR_DB_SECRET="mx_db_password",
               MAILPAIR_RELAY_SECRET="relay_password")
    r = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "sh", "-c", "echo started"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "started"
    for cf in (dst / "mysql").glob("*.cf"):
        lines = cf.read_text().splitlines()
        assert "password = mx-db-s3cret" in lines, cf
        assert not any("change-me" in l for l in lines), cf
    relay = [l for l in (dst / "relay_passwd").read_text().splitlines()
             if l and not l.startswith("#")]
    assert relay and all(l.endswith(":relay-s3cret") for l in relay)
    assert stat.S_IMODE((dst / "relay_passwd").stat().st_mode) & 0o007 == 0
    # a missing secret stops the container instead of starting with a
    # sample password
    (secrets / "mx_db_password").unlink()
    r = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "true"], env=env,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "mx_db_password" in r.stderr


def health(proto, port):
    return subprocess.run(["bash", str(DOCKER / "healthcheck.sh"), proto, str(port)],
                          capture_output=True, text=True, timeout=30)


def test_healthcheck_against_the_daemons(build, redis, tls_cert, free_port, tmp_path):
    sub = SubEnv(build, redis, tls_cert).start()
    mra = MraEnv(build, None, tls_cert, free_port).start()
    # the MX sample holds its greeting (postscreen_greet_wait): the check
    # must wait for it, never talk first
    mx = MX(build, tmp_path / "mx", redis, free_port(), tls=tls_cert,
            postscreen_greet_wait="1s").start()
    try:
        r = health("smtp", mx.port)
        assert r.returncode == 0, r.stderr
        assert "PREGREET" not in mx.logtext()
        assert health("smtp", sub.submission_port).returncode == 0
        assert health("smtp", sub.intake_port).returncode == 0
        assert health("imap", mra.imap_port).returncode == 0
        assert health("pop3", mra.pop3_port).returncode == 0
        # the wrong protocol on a port is unhealthy, as is a closed port
        assert health("imap", sub.submission_port).returncode != 0
        assert health("smtp", mra.imap_port).returncode != 0
        closed = free_port()
        assert health("smtp", closed).returncode != 0
    finally:
        mx.cleanup()
        mra.cleanup()
        sub.cleanup()
