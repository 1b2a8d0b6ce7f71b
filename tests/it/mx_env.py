"""mx-relay for the integration tests and the benchmark: writes a config
folder (mx-relay.cf plus a texthash recipient table), starts the daemon on
127.0.0.1 and stops it by PID. Reads the queue the way the queue module
writes it (mq:mx:m:QID hash, mq:mx:d:QID data).

    mx = MX(build, tmpdir, redis, port, tls=tls_cert, message_size_limit=...)
    mx.start(); ...; mx.stop()
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

USERS = ["alice@demo.test", "bob@demo.test", "postmaster@demo.test",
         "carol@virt.test", "dave@virt.test"]


class MX:
    def __init__(self, build, tmpdir, redis, port, tls=None, users=USERS,
                 **params):
        self.build = str(build)
        self.dir = str(tmpdir)
        self.redis = redis
        self.port = port
        self.proc = None
        self.logfile = os.path.join(self.dir, "mx-relay.log")
        os.makedirs(self.dir, exist_ok=True)
        # the daemon drops to nobody and re-reads changed tables: keep
        # them where nobody can read (pytest's tmp folders are 0700)
        self.mapdir = tempfile.mkdtemp(prefix="mx-maps-")
        os.chmod(self.mapdir, 0o755)
        maps = os.path.join(self.mapdir, "relay_recipients")
        with open(maps, "w") as f:
            for u in users:
                f.write("%s OK\n" % u)
        os.chmod(maps, 0o644)
        conf = {
            "myhostname": "mx.demo.test",
            "mydomain": "demo.test",
            "mail_owner": "nobody",
            "syslog_enable": "no",
            "smtpd_listen": "127.0.0.1:%d" % port,
            "relay_domains": "demo.test",
            "virtual_mailbox_domains": "virt.test",
            "relay_recipient_maps": "texthash:%s" % maps,
            "redis_server": redis.address,
            "message_size_limit": "2000000",
            # intake only: the forwarder's own tests cover delivery
            "mx_forward_enable": "no",
        }
        if tls is not None:
            conf["smtpd_tls_cert_file"] = tls.cert
            conf["smtpd_tls_key_file"] = tls.key
        for k, v in params.items():
            conf[k] = str(v)
        self.conf = conf
        with open(os.path.join(self.dir, "mx-relay.cf"), "w") as f:
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))

    def start(self, wait=True):
        self.log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(self.build, "mx-relay"), "-c", self.dir],
            stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            try:
                self.wait_listening()
            except RuntimeError:
                self.stop()   # no daemon outlives a failed start
                raise
        return self

    def wait_listening(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mx-relay exited %s: %s" %
                                   (self.proc.returncode, self.logtext()))
            if "daemon started" in self.logtext():
                # the probe outwaits a postscreen_greet_wait (1s in the
                # tests that set one): an equal timeout raced the banner
                try:
                    with socket.create_connection(("127.0.0.1", self.port),
                                                  timeout=5) as s:
                        s.recv(512)
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("mx-relay did not start: " + self.logtext())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.mapdir, ignore_errors=True)

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def logtext(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- the queue, as shared/queue.c stores it --------------------------

    def qids(self):
        keys = self.redis.command("KEYS", "mq:mx:m:*") or []
        return sorted(k[len("mq:mx:m:"):] for k in keys)

    def envelope(self, qid):
        flat = self.redis.command("HGETALL", "mq:mx:m:" + qid) or []
        return dict(zip(flat[0::2], flat[1::2]))

    def data(self, qid):
        d = self.redis.command("GET", "mq:mx:d:" + qid)
        if d is None:
            return None
        return d.encode("utf-8") if isinstance(d, str) else d

    def recipients(self, qid):
        env = self.envelope(qid)
        return [env["r%d" % i] for i in range(int(env.get("nrcpt", 0)))]
