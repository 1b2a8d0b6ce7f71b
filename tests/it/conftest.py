"""Shared pytest fixtures: real servers started in temporary directories on
127.0.0.1 and stopped by PID (see tests/harness/servers.py).

  build      Path of the build folder (env BUILD, default ./build)
  free_port  function returning a free loopback TCP port
  redis      a fresh private redis-server per test (AOF, appendfsync always);
             .host .port .address .socket .command(...) .stop() .start() .kill()
  mariadb    one MariaDB server per test session with the Postfix Admin schema;
             .socket .port .user .password .db .sql(text) -> rows
  tls_cert   a throw-away self-signed certificate: .cert .key (CN=localhost)
"""
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
sys.path.insert(0, str(ROOT / "tests" / "it"))

import servers  # noqa: E402


@pytest.fixture(scope="session")
def build():
    return pathlib.Path(os.environ.get("BUILD", ROOT / "build")).resolve()


@pytest.fixture(scope="session")
def free_port():
    return servers.free_port


@pytest.fixture
def redis(tmp_path):
    r = servers.Redis(base=str(tmp_path / "redis")).start()
    yield r
    r.cleanup()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    db = servers.MariaDB(base=str(tmp_path_factory.mktemp("mariadb"))).start()
    yield db
    db.cleanup()


class TlsCert:
    def __init__(self, d):
        self.dir = d
        self.cert = os.path.join(d, "cert.pem")
        self.key = os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    return TlsCert(str(tmp_path_factory.mktemp("tls")))
