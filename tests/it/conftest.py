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
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
sys.path.insert(0, str(ROOT / "tests" / "it"))

import servers  # noqa: E402

# tests/bench/compare.py waits CMP_SETTLE seconds after the last mass
# removal of files it knows of: on an ext4 without a journal, creating
# files right after thousands were removed is much slower (see its
# REMOVE_AT_EXIT). A test run removes as many, so it records its end there
# too, and a `make bench` right after `make test` waits instead of
# measuring submission a third too slow.
BENCH_LAST_REMOVAL = "/tmp/cmp-bench-last-removal"


def pytest_sessionfinish(session, exitstatus):
    try:
        with open(BENCH_LAST_REMOVAL, "w") as f:
            f.write("%d\n" % time.time())
    except OSError:
        pass


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
