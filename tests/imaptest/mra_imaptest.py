"""Run Dovecot's imaptest against a private mra started the way the
integration tests start it (tests/it/mra_env.py: a temporary config,
texthash users, Maildirs, a throw-away certificate, free loopback ports,
stopped by PID), and judge its output.

    mra_imaptest.py compliance|stress BUILD_DIR IMAPTEST_BINARY

compliance: imaptest's scripted tests (src/tests beside the binary) over
IMAPS; prints its summary lines and fails when a test group or a single
command failed, or when the summary is missing.
stress: imaptest's random mode with its default.mbox, 10 clients on one
mailbox, then 10 clients spread over 10 users; prints each run's error
count and fails on any error. IMAPTEST_SECS: seconds per run (60)."""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
sys.path.insert(0, os.path.join(ROOT, "tests", "it"))

import servers                  # noqa: E402
from conftest import TlsCert    # noqa: E402
from mra_env import MraEnv      # noqa: E402

PASS = "imaptest-pw"
DOMAIN = "example.test"
STRESS_USERS = 10


def make_maildirs(env):
    for user in env.users:
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(env.maildir(user), sub), exist_ok=True)
    env.fix_owner()


def start_mra(build, tmp, users):
    env = MraEnv(build, tmp, TlsCert(tmp), servers.free_port,
                 users={u: PASS for u in users},
                 # many clients from one address and per user; no pacing
                 mra_client_connection_count_limit=0,
                 mail_max_userip_connections=0,
                 imap_max_commands_per_second=0)
    make_maildirs(env)
    return env.start()


def imaptest(binary, env, args, timeout):
    cmd = [binary, "host=127.0.0.1", "port=%d" % env.imaps_port,
           "ssl=any-cert", "pass=" + PASS] + args
    run_env = dict(os.environ, LD_LIBRARY_PATH="/usr/lib/dovecot")
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                       timeout=timeout, env=run_env)
    return p.returncode, p.stdout + p.stderr


# "N test groups: X failed, S skipped due to missing capabilities"
# "base protocol: A/B individual commands failed"
# "extensions: C/D individual commands failed"
SUMMARY = [
    ("groups", re.compile(r"^(\d+) test groups: (\d+) failed.*$", re.M)),
    ("base", re.compile(r"^base protocol: (\d+)/(\d+) individual commands failed", re.M)),
    ("ext", re.compile(r"^extensions: (\d+)/(\d+) individual commands failed", re.M)),
]


def judge_compliance(out):
    """(ok, summary lines, reasons)."""
    lines, why = [], []
    for name, rx in SUMMARY:
        m = rx.search(out)
        if m is None:
            why.append("no '%s' summary line" % name)
            continue
        lines.append(m.group(0))
        if name == "groups":
            if int(m.group(2)) > 0:
                why.append("%s of %s test groups failed" % (m.group(2), m.group(1)))
        elif int(m.group(1)) > 0:
            why.append("%s/%s %s commands failed" % (m.group(1), m.group(2), name))
    return not why, lines, why


def compliance(build, binary):
    tests = os.path.join(os.path.dirname(binary), "tests")
    user = "alice@" + DOMAIN
    tmp = tempfile.mkdtemp(prefix="imaptest-")
    env = start_mra(build, tmp, [user])
    try:
        rc, out = imaptest(binary, env, ["user=" + user, "test=" + tests], 900)
    finally:
        env.cleanup()
    ok, lines, why = judge_compliance(out)
    # each failed test's report, then the figures
    for block in re.findall(r"^\*\*\* Test .*?(?=^\*\*\* |\Z)", out, re.M | re.S):
        sys.stdout.write(block[:1500])
    for ln in lines:
        print("imaptest: " + ln)
    if not ok:
        if not lines:
            print(out[-3000:])
        print("imaptest: FAILED: " + "; ".join(why))
        return 1
    print("imaptest: compliance passed")
    return 0


ERROR = re.compile(r"^(Error|Panic|Fatal): ", re.M)


def stress_run(build, binary, title, users, args, secs):
    tmp = tempfile.mkdtemp(prefix="imaptest-")
    env = start_mra(build, tmp, users)
    try:
        rc, out = imaptest(binary, env, args + ["secs=%d" % secs], secs + 120)
    finally:
        log = env.read_log()
        env.cleanup()
    errors = ERROR.findall(out)
    shown = [ln for ln in out.splitlines() if ERROR.match(ln)][:20]
    for ln in shown:
        print("  " + ln)
    last = [ln for ln in out.splitlines() if ln.strip()][-3:]
    for ln in last:
        print("  " + ln)
    print("imaptest-stress: %s: %d errors (exit %d)" % (title, len(errors), rc))
    if rc != 0 and not errors:
        print(log[-2000:])
    return len(errors) == 0 and rc == 0


def stress(build, binary):
    tests = os.path.join(os.path.dirname(binary), "tests")
    mbox = os.path.join(tests, "default.mbox")
    secs = int(os.environ.get("IMAPTEST_SECS", "60"))
    one = "alice@" + DOMAIN
    ok = stress_run(build, binary, "10 clients, one mailbox", [one],
                    ["user=" + one, "mbox=" + mbox, "clients=10"], secs)
    many = ["user%d@%s" % (i, DOMAIN) for i in range(1, STRESS_USERS + 1)]
    ok = stress_run(build, binary, "10 clients, %d users" % STRESS_USERS, many,
                    ["user=user%d@" + DOMAIN, "users=%d" % STRESS_USERS,
                     "mbox=" + mbox, "clients=10"], secs) and ok
    if not ok:
        print("imaptest-stress: FAILED")
        return 1
    print("imaptest-stress: passed")
    return 0


def main(argv):
    if len(argv) != 4 or argv[1] not in ("compliance", "stress"):
        sys.stderr.write(__doc__)
        return 2
    build, binary = os.path.abspath(argv[2]), argv[3]
    if not os.path.exists(os.path.join(build, "mra")):
        print("imaptest: no %s/mra: build first" % build)
        return 1
    return compliance(build, binary) if argv[1] == "compliance" else stress(build, binary)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
