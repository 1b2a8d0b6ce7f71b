#!/usr/bin/python3
"""Real test servers in temporary directories, stopped by PID.

Redis: a private redis-server on 127.0.0.1 (AOF on, appendfsync always).
MariaDB: mariadb-install-db into a temporary datadir, mariadbd on a private
unix socket and a loopback port, database `mailpair` with the schema from
deploy/sql/*.sql and a user with a password.

Used by tests/it/conftest.py, and as a command:
    servers.py run -- CMD ARGS...
starts both, runs CMD with TEST_REDIS_* and TEST_MYSQL_* in its
environment, stops both and exits with CMD's status.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bind_free(port):
    """True when PORT binds on 127.0.0.1 for both TCP and UDP: dnsmasq
    fixtures take a UDP port and also bind TCP on it, and the daemons bind
    TCP, so a port is free only when both are."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port():
    """A port on 127.0.0.1 free for both TCP and UDP a moment ago. It is
    drawn below the kernel's ephemeral range, so the tests' own outgoing
    connections (which take ephemeral ports) cannot grab it before a server
    binds it."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(200):
        port = random.randint(max(1024, low - 12000), low - 1)
        if _bind_free(port):
            return port
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if _bind_free(port):
            return port
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


def wait_port(port, host="127.0.0.1", timeout=20.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d"
                               % (proc.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %s:%d after %.0fs" % (host, port, timeout))


def _stop_pid(proc, timeout=10.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Redis:
    """A private redis-server. stop()/start() keep the data directory, so a
    test can restart Redis and see what was persisted."""

    def __init__(self, base=None, port=None, appendfsync="always", appendonly="yes"):
        self.dir = base or tempfile.mkdtemp(prefix="redis-")
        os.makedirs(self.dir, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc = None
        self.conf = os.path.join(self.dir, "redis.conf")
        with open(self.conf, "w") as f:
            f.write("bind 127.0.0.1\nport %d\ndir %s\nappendonly %s\n"
                    "appendfsync %s\nsave \"\"\ndaemonize no\nprotected-mode yes\n"
                    "logfile %s\nunixsocket %s\nunixsocketperm 700\n"
                    % (self.port, self.dir, appendonly, appendfsync,
                       os.path.join(self.dir, "redis.log"),
                       os.path.join(self.dir, "redis.sock")))
        self.socket = os.path.join(self.dir, "redis.sock")

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def start(self):
        """A server that does not come up is stopped before the error is
        raised (it must not outlive the test that started it)."""
        self.proc = subprocess.Popen(["redis-server", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            except RuntimeError as e:
                # "-LOADING": a restart still reading its AOF
                if not str(e).startswith("LOADING"):
                    raise
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: see %s/redis.log" % self.dir)
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self):
        _stop_pid(self.proc)
        self.proc = None

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def command(self, *args):
        """One Redis command over RESP; returns str, int, list or None."""
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                if isinstance(a, str):
                    a = a.encode()
                elif isinstance(a, int):
                    a = str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return _resp_read(f)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise OSError("bad RESP reply %r" % line)


class MariaDB:
    """A private MariaDB server with the Postfix Admin schema loaded into
    database `mailpair`, reachable as user `mailpair` (password below) over
    the unix socket or 127.0.0.1:port."""

    user = "mailpair"
    password = "mailpair-test-pw"
    db = "mailpair"

    def __init__(self, base=None):
        self.dir = base or tempfile.mkdtemp(prefix="mariadb-")
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysql.sock")
        self.port = free_port()
        self.proc = None

    def _run_as(self):
        return ["--user=root"] if os.geteuid() == 0 else []

    def start(self):
        if not os.path.isdir(os.path.join(self.datadir, "mysql")):
            r = subprocess.run(["mariadb-install-db", "--no-defaults",
                                "--datadir=" + self.datadir,
                                "--auth-root-authentication-method=socket",
                                # --force: no host name lookup (resolveip), which
                                # fails in a chroot without /etc/hosts; the users
                                # here are socket/localhost ones anyway
                                "--skip-test-db", "--force"] + self._run_as(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if r.returncode != 0:
                raise RuntimeError("mariadb-install-db failed (exit %d):\n%s"
                                   % (r.returncode, r.stderr.decode(errors="replace")[-2000:]))
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--datadir=" + self.datadir,
             "--socket=" + self.socket, "--port=%d" % self.port,
             "--bind-address=127.0.0.1", "--pid-file=" + os.path.join(self.dir, "mysqld.pid"),
             "--log-error=" + os.path.join(self.dir, "error.log"),
             "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
             "--innodb-flush-log-at-trx-commit=2", "--skip-name-resolve",
             "--character-set-server=utf8mb4"] + self._run_as(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("mariadbd did not start: see %s/error.log" % self.dir)
            time.sleep(0.1)
        wait_port(self.port, proc=self.proc)
        self.sql_root(
            "CREATE DATABASE IF NOT EXISTS %s CHARACTER SET utf8mb4;"
            "CREATE USER IF NOT EXISTS '%s'@'localhost' IDENTIFIED BY '%s';"
            "CREATE USER IF NOT EXISTS '%s'@'127.0.0.1' IDENTIFIED BY '%s';"
            "GRANT ALL ON %s.* TO '%s'@'localhost';"
            "GRANT ALL ON %s.* TO '%s'@'127.0.0.1';"
            % (self.db, self.user, self.password, self.user, self.password,
               self.db, self.user, self.db, self.user))
        for name in sorted(os.listdir(os.path.join(ROOT, "deploy", "sql"))
                           if os.path.isdir(os.path.join(ROOT, "deploy", "sql")) else []):
            if name.endswith(".sql"):
                with open(os.path.join(ROOT, "deploy", "sql", name)) as f:
                    self.sql(f.read())
        return self

    def sql_root(self, text):
        return self._client(["-uroot"], None, text)

    def sql(self, text):
        """Run SQL as the test user in database mailpair; returns the output
        rows as lists of strings (tab separated, no header)."""
        return self._client(["-u" + self.user, "-p" + self.password], self.db, text)

    def _client(self, auth, db, text):
        cmd = ["mariadb", "--no-defaults", "--socket=" + self.socket, "-N", "-B"] + auth
        if db:
            cmd.append(db)
        out = subprocess.run(cmd, input=text, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("mariadb: " + out.stderr.strip())
        return [line.split("\t") for line in out.stdout.splitlines()]

    def stop(self):
        _stop_pid(self.proc, timeout=30)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def env(self):
        return {"TEST_MYSQL_SOCKET": self.socket, "TEST_MYSQL_PORT": str(self.port),
                "TEST_MYSQL_USER": self.user, "TEST_MYSQL_PASSWORD": self.password,
                "TEST_MYSQL_DB": self.db}


def main(argv):
    if len(argv) < 3 or argv[1] != "run" or "--" not in argv:
        print("usage: servers.py run -- CMD [ARGS...]", file=sys.stderr)
        return 2
    cmd = argv[argv.index("--") + 1:]
    redis = Redis().start()
    db = None
    try:
        db = MariaDB().start()
        env = dict(os.environ)
        env.update(db.env())
        env.update({"TEST_REDIS_HOST": redis.host, "TEST_REDIS_PORT": str(redis.port),
                    "TEST_REDIS_SOCKET": redis.socket})
        return subprocess.call(cmd, env=env)
    finally:
        if db is not None:
            db.cleanup()
        redis.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
