"""Side by side with the incumbents, in one run, on loopback (issue 12).

    compare.py BUILD_DIR        (tests/bench/compare.sh; part of make bench)

1. MX acceptance while the pipeline delivers, and end to end to Maildir:
   Postfix's smtp-source (CMP_N messages of 4 KB, 20 sessions, one
   connection per message) against
     mailpair: mx-relay (forwarder on, STARTTLS + AUTH + XFORWARD) ->
               submission intake -> Maildir, Redis appendfsync always;
     Postfix:  a Postfix MX relaying (STARTTLS) to a second Postfix that
               delivers to Maildir (virtual(8)).
   msg/s accepted (smtp-source's run), msg/s end to end (until the last
   one is in the Maildir), CPU per message of every server process
   (mailpair: mx-relay + submission + redis-server; Postfix: both
   instances' masters and all their daemons).
2. IMAP: imaptest's stress mode over IMAPS for CMP_IMAP_SECS seconds, 10
   clients on one mailbox, then 10 clients over 10 users, against mra and
   a private Dovecot: commands/s, errors, CPU per command.
3. Memory per idle connection after TLS: CMP_IDLE IMAPS connections in
   IDLE on mra, and CMP_IDLE SMTP sessions after STARTTLS + EHLO on
   mx-relay: PSS increase / connections (target <= 8 KB), then OpenSSL's
   own heap per live server connection with our context, by allocation
   site (tests/bench/tls_floor.c, TLS 1.3 and 1.2): what a TLS 1.2
   connection still costs, and what a TLS 1.3 one no longer holds once
   shared/tls_srv.c has freed its SSL after the handshake. Dovecot and Postfix
   for CMP_IDLE_INC connections (they fork per connection).
4. mx-relay SIGKILLed under load (8 senders), restarted at once: seconds
   from the restart until every message it had accepted is in the Maildir,
   lost and duplicated counts (by Message-ID); the same for the Postfix
   pair (every process of the MX instance SIGKILLed).
5. MX acceptance with Rspamd in the path (issue 14): ONE private rspamd
   (3.4, its milter proxy scanning by itself, as tests/it/test_milter.py
   starts it) on a loopback port, then smtp-source (CMP_RSPAMD_N messages,
   same size and sessions as 1.) against the two pipelines of 1. with
   smtpd_milters = inet:127.0.0.1:PORT and milter_default_action =
   tempfail in mx-relay and in the Postfix MX (smtpd_peername_lookup = no
   in both: Rspamd gets "unknown" from both): msg/s accepted, messages
   delivered, CPU per message of every server process plus rspamd's.
CMP_ONLY=smtp,imap,mem,crash,rspamd picks sections (CMP_CRASH=mailpair,postfix);
CMP_PERF=DIR records the mailpair servers with perf during the SMTP and
IMAP runs and prints where their time went (and Redis's commands per
message); CMP_SUB=name=value,... adds settings to the mailpair's
submission (e.g. delivery_worker_threads=4). A run starts at least
CMP_SETTLE seconds (360) after the previous one removed its files (see
REMOVE_AT_EXIT; CMP_KEEP=1 keeps them, for back-to-back A/B runs).
Every server is private, on 127.0.0.1 free ports, and stopped by PID at
the end."""
import os
import re
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
sys.path.insert(0, os.path.join(ROOT, "tests", "it"))
sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))
import servers                                   # noqa: E402
from mx_env import MX                            # noqa: E402
from sub_env import SubEnv                       # noqa: E402
from mra_env import MraEnv                       # noqa: E402
from incumbents import (Postfix, Dovecot, Rspamd, proc_stat,  # noqa: E402
                        pss_of_sessions)

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
N = int(os.environ.get("CMP_N", "5000"))
SIZE = int(os.environ.get("CMP_SIZE", "4096"))
SESSIONS = int(os.environ.get("CMP_SESSIONS", "20"))
IMAP_SECS = int(os.environ.get("CMP_IMAP_SECS", "30"))
IDLE = int(os.environ.get("CMP_IDLE", "2000"))
IDLE_INC = int(os.environ.get("CMP_IDLE_INC", "50"))
ONLY = set(os.environ.get("CMP_ONLY", "smtp,imap,mem,crash,rspamd").split(","))
RSPAMD_N = int(os.environ.get("CMP_RSPAMD_N", "1000"))
# CMP_SMTP_PIPES=mailpair: the SMTP section without the Postfix pair (to
# compare changes of our own quickly; no ratio is printed)
SMTP_PIPES = os.environ.get("CMP_SMTP_PIPES", "both")
SUB_PARAMS = dict(kv.split("=", 1) for kv in os.environ.get("CMP_SUB", "").split(",") if kv)
RSPAMD_WARM = 20
PASS = "bench-pw"
SMTP_SOURCE = "/usr/sbin/smtp-source"
T = tempfile.mkdtemp(prefix="cmp-bench-", dir="/tmp")
os.chmod(T, 0o755)
CLEANUP = []
# Files the cases wrote are removed only when the whole run is over. On an
# ext4 without a journal (this machine's), creating a file scans past every
# inode of its block group freed in the last 60 s, 360 s while their inode
# table block is dirty (kernel recently_deleted()): a case run right after
# thousands of files were removed nearby is up to three times slower, in
# CPU per message, for reasons that are not its own.
REMOVE_AT_EXIT = []
SETTLE = int(os.environ.get("CMP_SETTLE", "360"))
# CMP_KEEP=1: leave the run's files in place (remove them yourself), so
# back-to-back runs of an A/B comparison need no settle.
KEEP = os.environ.get("CMP_KEEP", "") not in ("", "0")
LAST_REMOVAL = "/tmp/cmp-bench-last-removal"


class Cert:
    def __init__(self, d):
        self.cert = os.path.join(d, "cert.pem")
        self.key = os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        os.chmod(self.key, 0o644)


def say(*a):
    print(*a)
    sys.stdout.flush()


def cpu_of_pids(pids):
    return sum((proc_stat(p) or (0, 0.0))[1] for p in pids)


def ratio(a, b):
    return "%.2fx" % (a / b) if b else "n/a"


def count_files(d):
    try:
        return sum(1 for _ in os.scandir(d))
    except OSError:
        return 0


def wait_count(d, n, t0, limit=300.0):
    """Wait until directory d holds n files; returns (count, seconds since t0)."""
    deadline = time.time() + limit
    got = count_files(d)
    while got < n and time.time() < deadline:
        time.sleep(0.05)
        got = count_files(d)
    return got, time.time() - t0


def smtp_source(port, n, sessions, size):
    """Runs smtp-source; returns (seconds, its own CPU seconds)."""
    t0 = time.time()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-m", str(n), "-l", str(size),
                        "-f", "someone@example.net", "-t", "bob@demo.test",
                        "-M", "client.example.net", "127.0.0.1:%d" % port],
                       capture_output=True, text=True, timeout=1800)
    dt = time.time() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        say("  smtp-source exit %d: %s" % (r.returncode, (r.stderr or r.stdout)[-300:]))
    return dt, (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)


# ---- the two pipelines ---------------------------------------------------

class Mailpair:
    def __init__(self, cert, **mx_params):
        self.redis = servers.Redis(base=tempfile.mkdtemp(prefix="redis-", dir=T)).start()
        try:
            self._configure(cert, mx_params)
        except BaseException:
            self.redis.stop()
            raise
        CLEANUP.append(self)

    def _configure(self, cert, mx_params):
        self.sub = SubEnv(BUILD, self.redis, cert, params={
            "smtpd_timeout": "600s",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_connection_limit": "0", **SUB_PARAMS})
        maps = os.path.join(self.sub.etc, "relay_passwd")
        with open(maps, "w") as f:
            f.write("[127.0.0.1]:%d relay@mx.internal:relay-pw\n" % self.sub.intake_port)
        os.chmod(maps, 0o644)
        p = dict(mx_forward_enable="yes",
                 relayhost="[127.0.0.1]:%d" % self.sub.intake_port,
                 smtp_tls_security_level="encrypt", smtp_sasl_auth_enable="yes",
                 smtp_sasl_password_maps="texthash:" + maps,
                 smtp_send_xforward_command="yes", message_size_limit="10240000",
                 smtpd_client_connection_count_limit="0", smtpd_connection_limit="0")
        p.update(mx_params)
        self.mx = MX(BUILD, os.path.join(self.sub.dir, "mx"), self.redis,
                     servers.free_port(), tls=cert, users=["bob@demo.test"], **p)
        self.port = self.mx.port
        self.newdir = os.path.join(self.sub.maildir("bob@demo.test"), "new")

    def start(self):
        self.sub.start()
        self.mx.start()
        return self

    def cpu(self):
        return cpu_of_pids([self.mx.proc.pid, self.sub.proc.pid, self.redis.proc.pid])

    def cpu_by_process(self):
        return {"mx-relay": cpu_of_pids([self.mx.proc.pid]),
                "submission": cpu_of_pids([self.sub.proc.pid]),
                "redis-server": cpu_of_pids([self.redis.proc.pid])}

    def queued(self):
        return len(self.mx.qids())

    def kill_mx(self):
        self.mx.kill9()

    def restart_mx(self):
        self.mx.start()

    def cleanup(self):
        """Stops the servers; their files go at the end of the run."""
        self.mx.stop()
        self.sub.stop()
        self.redis.stop()
        REMOVE_AT_EXIT.extend([self.sub.dir, self.mx.mapdir, self.redis.dir])


class PostfixPair:
    def __init__(self, cert, tag, mx_params=None):
        base = os.path.join(T, "postfix-" + tag)
        os.makedirs(base)
        os.chmod(base, 0o755)
        self.port = servers.free_port()
        dport = servers.free_port()
        mail = os.path.join(base, "mail")
        os.makedirs(mail)
        os.chown(mail, 65534, 65534)
        vmap = os.path.join(base, "vmailbox")
        with open(vmap, "w") as f:
            f.write("bob@demo.test demo.test/bob/\n")
        os.chmod(vmap, 0o644)
        tls = {"smtpd_tls_cert_file": cert.cert, "smtpd_tls_key_file": cert.key,
               "smtpd_tls_security_level": "may"}
        self.deliver = Postfix(base, "deliver", dport, dict(tls, **{
            "myhostname": "sub.demo.test",
            "virtual_mailbox_domains": "demo.test",
            "virtual_mailbox_base": mail,
            "virtual_mailbox_maps": "texthash:" + vmap,
            "virtual_uid_maps": "static:65534", "virtual_gid_maps": "static:65534",
            "virtual_minimum_uid": "100"}))
        self.mx = Postfix(base, "mx", self.port, dict(tls, **{
            "myhostname": "mx.demo.test",
            "relay_domains": "demo.test",
            "relayhost": "[127.0.0.1]:%d" % dport,
            "smtp_tls_security_level": "encrypt"}, **(mx_params or {})))
        self.newdir = os.path.join(mail, "demo.test", "bob", "new")
        CLEANUP.append(self)

    def start(self):
        self.deliver.start()
        self.mx.start()
        return self

    def cpu(self):
        return self.mx.cpu() + self.deliver.cpu()

    def queued(self):
        r = subprocess.run(["/usr/sbin/postqueue", "-c", self.mx.etc, "-j"],
                           capture_output=True, text=True)
        return len([ln for ln in r.stdout.splitlines() if ln.strip()])

    def kill_mx(self):
        self.mx.kill9()

    def restart_mx(self):
        self.mx.start()

    def cleanup(self):
        self.mx.stop()
        self.deliver.stop()


PERF = os.environ.get("CMP_PERF", "")


def perf_start(name, pids):
    """CMP_PERF=DIR: perf record (call graphs) of the servers while a case
    runs; perf_stop() prints where their time went."""
    if not PERF or not pids:
        return None
    os.makedirs(PERF, exist_ok=True)
    out = os.path.join(PERF, name + ".data")
    return out, subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o", out,
                                  "-p", ",".join(str(p) for p in pids)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_stop(rec, top=25):
    if rec is None:
        return
    out, proc = rec
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    r = subprocess.run(["perf", "report", "-i", out, "--stdio", "--no-children",
                        "--sort", "comm,dso,sym", "-g", "none", "--percent-limit", "0.7"],
                       capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    by = subprocess.run(["perf", "report", "-i", out, "--stdio", "--no-children",
                         "--sort", "comm,dso", "-g", "none", "--percent-limit", "2"],
                        capture_output=True, text=True)
    say("  perf (%s), self time by process and library:" % out)
    for ln in [ln for ln in by.stdout.splitlines() if ln.strip() and not ln.startswith("#")][:12]:
        say("    " + ln.strip()[:150])
    say("  ... and by function:")
    for ln in lines[:top]:
        say("    " + ln.strip()[:150])


def server_pids(pipe):
    if isinstance(pipe, Mailpair):
        return [pipe.mx.proc.pid, pipe.sub.proc.pid, pipe.redis.proc.pid]
    return []


def smtp_case(name, pipe):
    pipe.start()
    c0 = pipe.cpu()
    by0 = pipe.cpu_by_process() if hasattr(pipe, "cpu_by_process") else {}
    t0 = time.time()
    rec = perf_start("smtp-" + name, server_pids(pipe))
    dt, load_cpu = smtp_source(pipe.port, N, SESSIONS, SIZE)
    got, de = wait_count(pipe.newdir, N, t0)
    perf_stop(rec)
    if PERF and isinstance(pipe, Mailpair):
        r = subprocess.run(["redis-cli", "-s", pipe.redis.socket, "INFO", "commandstats"],
                           capture_output=True, text=True)
        say("  Redis commands per message (calls, usec per call):")
        for ln in r.stdout.splitlines():
            m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", ln)
            if m and int(m.group(2)) >= N // 10:
                say("    %-10s %5.2f per msg, %7.1f us" % (m.group(1), int(m.group(2)) / N,
                                                       float(m.group(4))))
    cpu = pipe.cpu() - c0
    if by0:
        by1 = pipe.cpu_by_process()
        say("  %-9s CPU ms/msg by process: %s; smtp-source itself %.2f"
            % (name, ", ".join("%s %.2f" % (k, 1000 * (by1[k] - by0[k]) / N) for k in by0),
               1000 * load_cpu / N))
    say("  %-9s MX accepted %d in %6.2f s: %7.0f msg/s; end to end %d in %6.2f s: "
        "%7.0f msg/s; CPU %.2f ms/msg (all server processes)"
        % (name, N, dt, N / dt, got, de, got / de, 1000 * cpu / max(got, 1)))
    return N / dt, got / de, 1000 * cpu / max(got, 1)


def section_smtp(cert):
    """Mailpair first, then the Postfix pair, on the same load (their
    files stay until the run ends: see REMOVE_AT_EXIT)."""
    say("--- SMTP: smtp-source, %d msgs of %d bytes, %d sessions, one connection per message,"
        " MX relaying to a second daemon that delivers to Maildir" % (N, SIZE, SESSIONS))
    pipes = [Mailpair(cert)]
    mp = smtp_case("mailpair", pipes[0])
    if SMTP_PIPES == "mailpair":
        pipes[0].cleanup()
        CLEANUP.remove(pipes[0])
        return
    pipes.append(PostfixPair(cert, "smtp"))
    pf = smtp_case("postfix", pipes[1])
    for pipe in pipes:
        pipe.cleanup()
        CLEANUP.remove(pipe)
    say("  ratio mailpair/postfix: MX acceptance %s (target 5x), end to end %s (target 5x),"
        " CPU per message %s of Postfix's" % (ratio(mp[0], pf[0]), ratio(mp[1], pf[1]),
                                              ratio(mp[2], pf[2])))


# ---- MX acceptance with Rspamd in the path ---------------------------------

def rspamd_case(name, pipe, rsp):
    """Warm up (RSPAMD_WARM messages, delivered), then RSPAMD_N messages:
    acceptance rate over smtp-source's run; the messages delivered after it
    show that they were accepted, not refused or deferred by the milter."""
    pipe.start()
    smtp_source(pipe.port, RSPAMD_WARM, min(SESSIONS, RSPAMD_WARM), SIZE)
    warm, _ = wait_count(pipe.newdir, RSPAMD_WARM, time.time(), limit=60)
    rsp.quiet(limit=30)
    c0, r0 = pipe.cpu(), rsp.cpu()
    t0 = time.time()
    dt, _ = smtp_source(pipe.port, RSPAMD_N, SESSIONS, SIZE)
    got, de = wait_count(pipe.newdir, warm + RSPAMD_N, t0, limit=120)
    got -= warm
    cpu, rcpu = pipe.cpu() - c0, rsp.cpu() - r0
    per = 1000 * (cpu + rcpu) / max(got, 1)
    say("  %-9s MX accepted %d in %6.2f s: %7.1f msg/s; delivered %d (warm-up %d/%d); "
        "CPU %.2f ms/msg (servers %.2f + rspamd %.2f)"
        % (name, RSPAMD_N, dt, RSPAMD_N / dt, got, warm, RSPAMD_WARM, per,
           1000 * cpu / max(got, 1), 1000 * rcpu / max(got, 1)))
    if got < RSPAMD_N:
        say("    (only %d of %d delivered: refused or deferred by the milter?)"
            % (got, RSPAMD_N))
    # the milter was in the path: its headers are in what was delivered
    names = sorted(os.listdir(pipe.newdir)) if os.path.isdir(pipe.newdir) else []
    scanned = 0
    for n in names:
        with open(os.path.join(pipe.newdir, n), "rb") as f:
            head = f.read().split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
        scanned += b"\nX-Spamd-Result:" in head
    say("    %d of %d delivered messages carry Rspamd's X-Spamd-Result header"
        % (scanned, len(names)))
    pipe.cleanup()
    CLEANUP.remove(pipe)
    return RSPAMD_N / dt, per


def section_rspamd(cert):
    if not os.path.exists("/usr/bin/rspamd"):
        say("--- Rspamd: skipped (no /usr/bin/rspamd: deploy/deps.sh test)")
        return
    port = servers.free_port()
    rsp = Rspamd(T, port)
    CLEANUP.append(rsp)
    try:
        return rspamd_pairs(cert, rsp, port)
    finally:
        rsp.stop()
        CLEANUP.remove(rsp)


def rspamd_pairs(cert, rsp, port):
    t0 = time.time()
    rsp.start()
    rsp.quiet()
    say("--- MX with Rspamd in the path (milter proxy, self_scan, one worker; ready in %.0f s):"
        " smtp-source, %d msgs of %d bytes, %d sessions, one connection per message,"
        " smtpd_milters = inet:127.0.0.1:%d, milter_default_action = tempfail"
        % (time.time() - t0, RSPAMD_N, SIZE, SESSIONS, port))
    before = len(rsp.log().splitlines())
    milter = {"smtpd_milters": "inet:127.0.0.1:%d" % port,
              "milter_default_action": "tempfail"}
    # a client named "localhost" (127.0.0.1 resolved) makes Rspamd's rbl
    # module query DNS (6 queries to the dead resolver, about 4 s per
    # message): no name lookup in either MX, the same data for both
    milter["smtpd_peername_lookup"] = "no"
    mp = rspamd_case("mailpair", Mailpair(cert, **milter), rsp)
    pf = rspamd_case("postfix", PostfixPair(cert, "rspamd", milter), rsp)
    say("  ratio mailpair/postfix with the same Rspamd: MX acceptance %s, "
        "CPU per message %s of Postfix's (rspamd's included)"
        % (ratio(mp[0], pf[0]), ratio(mp[1], pf[1])))
    errs = [ln for ln in rsp.log().splitlines()[before:] if "error" in ln.lower()]
    say("  rspamd logged %d errors during the runs%s"
        % (len(errs), (", e.g. " + errs[0][:200]) if errs else ""))


# ---- IMAP ------------------------------------------------------------------

ERROR = re.compile(r"^(Error|Panic|Fatal): ", re.M)


def imaptest_bin():
    tool = os.path.join(ROOT, "..", "shared", "tools", "imaptest", "build.sh")
    if not os.path.exists(tool):
        return None
    r = subprocess.run(["bash", tool], capture_output=True, text=True)
    b = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    return b if os.path.exists(b) else None


def imaptest(binary, port, args, secs):
    cmd = [binary, "host=127.0.0.1", "port=%d" % port, "ssl=any-cert",
           "pass=" + PASS, "secs=%d" % secs, "clients=10",
           "mbox=" + os.path.join(os.path.dirname(binary), "tests", "default.mbox")] + args
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                       timeout=secs + 180,
                       env=dict(os.environ, LD_LIBRARY_PATH="/usr/lib/dovecot"))
    out = p.stdout + p.stderr
    ops = 0
    # "Totals:", the command names, two lines of probabilities, the counts
    if "\nTotals:\n" in out:
        last = [ln for ln in out.split("\nTotals:\n", 1)[1].splitlines()
                if ln.strip()][-1]
        if re.match(r"^[ \d]+$", last):
            ops = sum(int(x) for x in last.split())
    errs = [ln for ln in out.splitlines() if ERROR.match(ln)]
    return ops, errs


def retire_mra(mra):
    mra.stop()
    REMOVE_AT_EXIT.append(mra.dir)


def section_imap(cert):
    binary = imaptest_bin()
    if binary is None:
        say("--- IMAP: skipped (no imaptest: ../shared/tools/imaptest/build.sh)")
        return
    say("--- IMAP: imaptest stress mode, IMAPS, 10 clients, %d s per run" % IMAP_SECS)
    users = ["solo@example.test"] + ["user%d@example.test" % i for i in range(1, 11)]
    h = subprocess.run(["openssl", "passwd", "-6", PASS], check=True,
                       capture_output=True, text=True).stdout.strip()
    mra = MraEnv(BUILD, T, cert, servers.free_port, users={u: PASS for u in users},
                 mra_client_connection_count_limit=0, mra_connection_limit=0,
                 mail_max_userip_connections=0, imap_max_commands_per_second=0,
                 smtpd_client_auth_rate_limit=0)
    for u in users:
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(mra.maildir(u), sub), exist_ok=True)
    mra.fix_owner()
    mra.start()
    dov = Dovecot(T, users, h, servers.free_port(), servers.free_port(), cert.cert, cert.key)
    dov.start()
    try:
        runs = [("10 clients, one mailbox", ["user=solo@example.test"]),
                ("10 clients, 10 users", ["user=user%d@example.test", "users=10"])]
        for title, args in runs:
            res = {}
            for name, port, cpu in (
                    ("mailpair", mra.imaps_port, lambda: cpu_of_pids([mra.proc.pid])),
                    ("dovecot", dov.imaps_port, dov.cpu)):
                c0 = cpu()
                rec = perf_start("imap-%s-%s" % (name, title.split()[-1]),
                                 [mra.proc.pid] if name == "mailpair" else [])
                ops, errs = imaptest(binary, port, args, IMAP_SECS)
                perf_stop(rec)
                c = cpu() - c0
                res[name] = ops / IMAP_SECS
                say("  %-24s %-9s %6d commands: %7.1f /s, %d errors, CPU %.3f ms/command"
                    % (title, name, ops, ops / IMAP_SECS, len(errs),
                       1000 * c / max(ops, 1)))
                for ln in errs[:3]:
                    say("      " + ln[:200])
            say("  %-24s ratio mailpair/dovecot %s (target 2x, 0 errors)"
                % (title, ratio(res["mailpair"], res["dovecot"])))
    finally:
        dov.stop()
        retire_mra(mra)


# ---- memory per idle TLS connection -----------------------------------------

def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def readline(s):
    b = b""
    while not b.endswith(b"\n"):
        ch = s.recv(1)
        if not ch:
            raise OSError("closed")
        b += ch
    return b


def imaps_idle(port, user):
    s = ctx().wrap_socket(socket.create_connection(("127.0.0.1", port), 30))
    readline(s)
    s.sendall(b"a LOGIN %s %s\r\n" % (user.encode(), PASS.encode()))
    while not readline(s).startswith(b"a "):
        pass
    s.sendall(b"b SELECT INBOX\r\n")
    while not readline(s).startswith(b"b "):
        pass
    s.sendall(b"c IDLE\r\n")
    while not readline(s).startswith(b"+"):
        pass
    return s


def smtp_starttls(port):
    s = socket.create_connection(("127.0.0.1", port), 30)
    f = s.makefile("rb")

    def reply():
        while True:
            ln = f.readline()
            if not ln or ln[3:4] != b"-":
                return ln

    reply()
    s.sendall(b"EHLO client.example.net\r\n")
    reply()
    s.sendall(b"STARTTLS\r\n")
    if not reply().startswith(b"220"):
        raise OSError("no STARTTLS")
    t = ctx().wrap_socket(s)
    t.sendall(b"EHLO client.example.net\r\n")
    while True:
        ln = readline(t)
        if ln[3:4] != b"-":
            break
    return t


def idle_measure(title, n, opener, pss):
    before = pss()
    conns = []
    err = None
    for i in range(n):
        try:
            conns.append(opener(i))
        except OSError as e:
            err = e
            break
    time.sleep(2)
    after = pss()
    say("  %-44s %5d connections: PSS %7d KB -> %7d KB: %6.1f KB per connection%s"
        % (title, len(conns), before, after, (after - before) / max(len(conns), 1),
           ("  (stopped: %s)" % err) if err else ""))
    for c in conns:
        try:
            c.close()
        except OSError:
            pass
    return (after - before) / max(len(conns), 1)


def pss_pid(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def section_mem(cert):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    say("--- memory per idle connection after TLS (target <= 8 KB)")
    users = ["user%d@example.test" % i for i in range(10)]
    mra = MraEnv(BUILD, T, cert, servers.free_port, users={u: PASS for u in users},
                 mra_client_connection_count_limit=0, mra_connection_limit=0,
                 mail_max_userip_connections=0, imap_max_commands_per_second=0,
                 smtpd_client_auth_rate_limit=0)
    for u in users:
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(mra.maildir(u), sub), exist_ok=True)
    mra.fix_owner()
    mra.start()
    try:
        idle_measure("mra: IMAPS, logged in, SELECT, IDLE", IDLE,
                     lambda i: imaps_idle(mra.imaps_port, users[i % 10]),
                     lambda: pss_pid(mra.proc.pid))
    finally:
        retire_mra(mra)
    mp = Mailpair(cert).start()
    try:
        idle_measure("mx-relay: SMTP after STARTTLS + EHLO", IDLE,
                     lambda i: smtp_starttls(mp.port), lambda: pss_pid(mp.mx.proc.pid))
    finally:
        mp.cleanup()
        CLEANUP.remove(mp)
    # OpenSSL's own heap per live server connection with our context
    # (tests/bench/tls_floor.c): what a connection that keeps its SSL
    # (TLS 1.2) pays on top of the figures above, measured with TLS 1.3
    # clients whose SSL is freed after the handshake (shared/tls_srv.c).
    floor = subprocess.run([os.path.join(BUILD, "bench", "tls_floor"), cert.cert, cert.key],
                           capture_output=True, text=True, timeout=600)
    for line in floor.stdout.splitlines():
        say("  " + line)
    if floor.returncode != 0:
        say("  tls_floor failed (exit %d): %s" % (floor.returncode, floor.stderr.strip()))
    h = subprocess.run(["openssl", "passwd", "-6", PASS], check=True,
                       capture_output=True, text=True).stdout.strip()
    os.makedirs(os.path.join(T, "mem"))
    dov = Dovecot(os.path.join(T, "mem"), users, h, servers.free_port(),
                  servers.free_port(), cert.cert, cert.key)
    dov.start()
    try:
        idle_measure("dovecot: IMAPS, logged in, SELECT, IDLE", IDLE_INC,
                     lambda i: imaps_idle(dov.imaps_port, users[i % 10]),
                     lambda: pss_of_sessions([dov.proc.pid]))
    finally:
        dov.stop()
    pf = PostfixPair(cert, "mem").start()
    try:
        idle_measure("postfix: SMTP after STARTTLS + EHLO", IDLE_INC,
                     lambda i: smtp_starttls(pf.port),
                     lambda: pss_of_sessions([pf.mx.sid]))
    finally:
        pf.cleanup()
        CLEANUP.remove(pf)


# ---- SIGKILL under load -----------------------------------------------------

def crash_sender(port, n, accepted, unsure, stop):
    i = 0
    while not stop.is_set():
        try:
            s = smtplib.SMTP("127.0.0.1", port, timeout=10)
            s.ehlo("client.example.net")
        except (OSError, smtplib.SMTPException):
            time.sleep(0.05)
            continue
        try:
            while not stop.is_set():
                tag = "c%d-%d" % (n, i)
                i += 1
                unsure.add(tag)
                s.sendmail("someone@example.net", ["bob@demo.test"],
                           ("From: <someone@example.net>\r\nTo: <bob@demo.test>\r\n"
                            "Subject: crash\r\nMessage-ID: <%s@crash.bench>\r\n\r\n"
                            % tag).encode() + (b"y" * 76 + b"\r\n") * 50)
                unsure.discard(tag)
                accepted.add(tag)
            s.quit()
        except (OSError, smtplib.SMTPException):
            pass


def delivered(newdir):
    ids = {}
    for d in (newdir, os.path.join(os.path.dirname(newdir), "cur")):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(d, name), "rb") as f:
                    m = re.search(rb"^Message-I[dD]: <([^@>]+)@crash\.bench>", f.read(), re.M)
            except OSError:
                continue
            if m:
                k = m.group(1).decode()
                ids[k] = ids.get(k, 0) + 1
    return ids


def crash_case(name, pipe, run_secs=8.0, limit=400.0):
    pipe.start()
    accepted, unsure, stop = set(), set(), threading.Event()
    th = [threading.Thread(target=crash_sender, args=(pipe.port, i, accepted, unsure, stop))
          for i in range(8)]
    for t in th:
        t.start()
    time.sleep(run_secs)
    pipe.kill_mx()
    stop.set()
    for t in th:
        t.join(30)
    in_queue = pipe.queued()
    ids = delivered(pipe.newdir)
    pending = len(accepted - set(ids))
    t0 = time.time()
    pipe.restart_mx()
    while time.time() < t0 + limit:
        ids = delivered(pipe.newdir)
        if accepted <= set(ids):
            break
        time.sleep(0.2)
    dt = time.time() - t0
    ids = delivered(pipe.newdir)
    lost = len(accepted - set(ids))
    twice = sum(1 for c in ids.values() if c > 1)
    say("  %-9s accepted %d, in its queue at the kill %d (%d not yet delivered): all "
        "delivered %.1f s after the restart%s; lost %d, duplicated %d"
        % (name, len(accepted), in_queue, pending, dt,
           "" if lost == 0 else " (gave up after %d s)" % limit, lost, twice))
    pipe.cleanup()
    CLEANUP.remove(pipe)


def section_crash(cert):
    say("--- SIGKILL of the MX under load (8 senders for 8 s), restart at once "
        "(target: delivered within 60 s, none lost, none twice)")
    which = os.environ.get("CMP_CRASH", "mailpair,postfix")
    if "mailpair" in which:
        crash_case("mailpair", Mailpair(cert))
    if "postfix" in which:
        crash_case("postfix", PostfixPair(cert, "crash"))


def settle():
    """Wait until the previous run's removals no longer slow file creation
    (see REMOVE_AT_EXIT); a pytest run of tests/it records its end in the
    same file. CMP_SETTLE=0 skips the wait."""
    try:
        with open(LAST_REMOVAL) as f:
            age = time.time() - int(f.read())
    except (OSError, ValueError):
        return
    wait = min(SETTLE, SETTLE - age)
    if wait > 0:
        say("  (waiting %.0f s: the previous bench or test run removed its files %.0f s ago)"
            % (wait, age))
        time.sleep(wait)


def main():
    say("side by side (%d cores, loadavg %s; Redis appendfsync always; Postfix %s; Dovecot %s)"
        % (os.cpu_count(), open("/proc/loadavg").read().split()[0],
           subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"],
                          capture_output=True, text=True).stdout.strip() or "?",
           subprocess.run(["/usr/sbin/dovecot", "--version"],
                          capture_output=True, text=True).stdout.strip() or "?"))
    settle()
    cert = Cert(T)
    ok = True
    try:
        for name, fn in (("smtp", section_smtp), ("imap", section_imap),
                         ("mem", section_mem), ("crash", section_crash),
                         ("rspamd", section_rspamd)):
            if name in ONLY:
                try:
                    fn(cert)
                except Exception as e:  # noqa: BLE001 - report and go on
                    ok = False
                    say("  %s: FAILED: %r" % (name, e))
    finally:
        for c in list(CLEANUP):
            try:
                c.cleanup()
            except Exception:  # noqa: BLE001
                pass
        if KEEP:
            say("  kept (CMP_KEEP): %s" % " ".join(REMOVE_AT_EXIT + [T]))
        else:
            for d in REMOVE_AT_EXIT + [T]:
                shutil.rmtree(d, ignore_errors=True)
            with open(LAST_REMOVAL, "w") as f:
                f.write("%d\n" % time.time())
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    sys.exit(main())
