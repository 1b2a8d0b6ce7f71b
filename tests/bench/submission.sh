#!/bin/sh
# Benchmark of the submission daemon: messages per second into Maildir,
# every message fsynced (file, then directory) before its 250.
#   auth   : 587 + STARTTLS, one AUTH PLAIN per connection, many messages
#   intake : the MX forwarder's path (intake port, STARTTLS, AUTH as the
#            relay login, XFORWARD IDENT per message -> Redis dedupe record)
#   e2e    : end to end: clients -> mx-relay port -> Redis queue ->
#            forwarder (STARTTLS + AUTH) -> intake -> Maildir; counted when
#            the message is in the Maildir
# for 4 KB and 100 KB messages, 1 and 20 sessions. A private redis-server
# (appendfsync always) and the daemon run on 127.0.0.1.
# usage: tests/bench/submission.sh [BUILD_DIR] (env BENCH_SECONDS, default 5)
B=${1:-build}
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 - "$B" <<'EOF'
import os, sys, time, threading, smtplib, ssl, subprocess
sys.path.insert(0, "tests/harness")
sys.path.insert(0, "tests/it")
import servers
from sub_env import SubEnv

build = os.path.abspath(sys.argv[1])
seconds = float(os.environ.get("BENCH_SECONDS", "5"))

class Cert:
    pass

cert = Cert()
cert.dir = os.path.join("/tmp", "subbench-tls-%d" % os.getpid())
os.makedirs(cert.dir, exist_ok=True)
cert.cert = os.path.join(cert.dir, "cert.pem")
cert.key = os.path.join(cert.dir, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                "/CN=localhost", "-keyout", cert.key, "-out", cert.cert],
               check=True, capture_output=True)

def message(size, tag):
    head = ("From: <alice@demo.test>\r\nTo: <bob@demo.test>\r\n"
            "Subject: bench %s\r\nMessage-ID: <%s@bench>\r\n"
            "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n" % (tag, tag))
    line = "x" * 76 + "\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()

def daemon_cpu(env):
    """user+system seconds of the daemon (all threads)."""
    with open("/proc/%d/stat" % env.proc.pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def run(env, mode, size, sessions):
    stop = time.time() + seconds
    counts = [0] * sessions
    errors = []
    ctx = env.client_ctx()

    def worker(n):
        try:
            if mode == "auth":
                s = smtplib.SMTP("127.0.0.1", env.submission_port, timeout=60)
                s.ehlo("bench"); s.starttls(context=ctx); s.ehlo("bench")
                s.login("alice@demo.test", env.users["alice@demo.test"][0])
            else:
                s = smtplib.SMTP("127.0.0.1", env.intake_port, timeout=60)
                s.ehlo("mx"); s.starttls(context=ctx); s.ehlo("mx")
                s.login("relay@mx.internal", env.users["relay@mx.internal"][0])
            i = 0
            while time.time() < stop:
                tag = "%s%d-%d-%d-%d" % (mode, size, sessions, n, i)
                data = message(size, tag)
                if mode == "intake":
                    code, _ = s.docmd("XFORWARD NAME=mail.example.net "
                                      "ADDR=192.0.2.7 PROTO=ESMTP "
                                      "IDENT=B%sX%dX%dX%dX%d" %
                                      (tag[:1], size, sessions, n, i))
                    assert code == 250
                    s.sendmail("someone@example.net", ["bob@demo.test"], data)
                else:
                    s.sendmail("alice@demo.test", ["bob@demo.test"], data)
                counts[n] += 1
                i += 1
            s.quit()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    cpu0 = daemon_cpu(env)
    t0 = time.time()
    ts = [threading.Thread(target=worker, args=(n,)) for n in range(sessions)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.time() - t0
    cpu = daemon_cpu(env) - cpu0
    total = sum(counts)
    print("submission %-6s size=%3dKB sessions=%2d: %6d msgs in %.1fs = %7.1f msg/s"
          " (daemon CPU %.2f ms/msg)%s"
          % (mode, size // 1024, sessions, total, dt, total / dt,
             1000.0 * cpu / max(total, 1),
             ("  ERRORS: %s" % errors[:2]) if errors else ""))
    sys.stdout.flush()
    return not errors

def run_e2e(env, mx_port, size, sessions):
    """Send for `seconds` to the MX, then wait until every accepted
    message is in bob's Maildir; rate = delivered / (last delivery - start)."""
    newdir = os.path.join(env.maildir("bob@demo.test"), "new")
    before = len(os.listdir(newdir)) if os.path.isdir(newdir) else 0
    stop = time.time() + seconds
    counts = [0] * sessions
    errors = []

    def worker(n):
        try:
            s = smtplib.SMTP("127.0.0.1", mx_port, timeout=60)
            s.ehlo("client.example.net")
            i = 0
            while time.time() < stop:
                s.sendmail("someone@example.net", ["bob@demo.test"],
                           message(size, "e2e%d-%d-%d-%d" % (size, sessions, n, i)))
                counts[n] += 1
                i += 1
            s.quit()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    t0 = time.time()
    ts = [threading.Thread(target=worker, args=(n,)) for n in range(sessions)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    sent = sum(counts)
    deadline = time.time() + 120
    got = 0
    while time.time() < deadline:
        got = len(os.listdir(newdir)) - before
        if got >= sent:
            break
        time.sleep(0.05)
    dt = time.time() - t0
    print("submission e2e    size=%3dKB sessions=%2d: %6d msgs in %.1fs = %7.1f msg/s"
          " (MX accepted %d)%s" % (size // 1024, sessions, got, dt, got / dt, sent,
                                   ("  ERRORS: %s" % errors[:2]) if errors else ""))
    sys.stdout.flush()
    return not errors and got == sent


redis = servers.Redis().start()
env = SubEnv(build, redis, cert, params={"smtpd_timeout": "600s",
             "smtpd_client_connection_count_limit": "0",
             "smtpd_connection_limit": "0"})
ok = True
try:
    env.start()
    for mode in ("auth", "intake"):
        for size in (4096, 102400):
            for sessions in (1, 20):
                ok = run(env, mode, size, sessions) and ok
    if os.path.exists(os.path.join(build, "mx-relay")):
        from mx_env import MX
        maps = os.path.join(env.etc, "relay_passwd")
        with open(maps, "w") as f:
            f.write("[127.0.0.1]:%d relay@mx.internal:relay-pw\n" % env.intake_port)
        os.chmod(maps, 0o644)
        mx_port = servers.free_port()
        mx = MX(build, os.path.join(env.dir, "mx"), redis, mx_port, tls=cert,
                users=["bob@demo.test"], mx_forward_enable="yes",
                relayhost="[127.0.0.1]:%d" % env.intake_port,
                smtp_tls_security_level="encrypt", smtp_sasl_auth_enable="yes",
                smtp_sasl_password_maps="texthash:" + maps,
                smtp_send_xforward_command="yes", message_size_limit="10240000")
        try:
            mx.start()
            for size in (4096, 102400):
                for sessions in (1, 20):
                    ok = run_e2e(env, mx_port, size, sessions) and ok
        finally:
            mx.cleanup()
    n = len(os.listdir(os.path.join(env.maildir("bob@demo.test"), "new")))
    print("submission: %d messages in bob's Maildir/new" % n)
finally:
    env.cleanup()
    redis.cleanup()
    subprocess.run(["rm", "-rf", cert.dir])
sys.exit(0 if ok else 1)
EOF
