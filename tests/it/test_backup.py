"""The backup and restore guide of README.md ("Backup and restore") on a
running site: the internal host's submission over Postfix Admin tables in
MariaDB with Maildirs, and an MX whose forward target (the intake) is down,
so its Redis queue holds mail. Back up the three stores the way the README
says (the MX Redis AOF folder, mariadb-dump, a tar of the Maildirs), wipe
them all, restore, and find every delivered message, every queued message
byte for byte, and then the queued ones delivered once the intake is back."""
import os
import pathlib
import shutil
import smtplib
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

from mx_env import MX
from sub_env import ALIASES, MySQLUsers, SubEnv, USERS

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "harness"))
import servers  # noqa: E402

RELAY_USER = "relay@mx.internal"


def wait_for(pred, timeout=30.0, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def maildir_snapshot(base):
    """relative path -> bytes of every message file under base."""
    out = {}
    for d, _, files in os.walk(base):
        for f in files:
            if os.path.basename(d) in ("new", "cur"):
                p = os.path.join(d, f)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, base)] = fh.read()
    return out


def redis_backup_aof(r, dest):
    """README: pause AOF rewrites, wait for none running, copy the AOF
    folder (appendfsync always: every write is on disk), resume."""
    r.command("CONFIG", "SET", "auto-aof-rewrite-percentage", "0")
    assert wait_for(lambda: "aof_rewrite_in_progress:0" in r.command("INFO", "persistence"))
    aof = os.path.join(r.dir, r.command("CONFIG", "GET", "appenddirname")[1])
    shutil.copytree(aof, dest)
    r.command("CONFIG", "SET", "auto-aof-rewrite-percentage", "100")
    return os.path.basename(aof)


@pytest.fixture
def site(build, redis, tls_cert, mariadb, free_port, tmp_path):
    users = MySQLUsers(mariadb)
    users.load(USERS, [a for a in ALIASES if not a[0].startswith("@alias")])
    sub = SubEnv(build, redis, tls_cert, mysql=users)
    mx_redis = servers.Redis(base=str(tmp_path / "mx-redis")).start()
    # read by the MX after it drops to nobody: not under pytest's 0700 tmp
    pw = pathlib.Path(tempfile.mkdtemp(prefix="backup-maps-", dir="/tmp"))
    os.chmod(pw, 0o755)
    (pw / "relay_passwd").write_text("[127.0.0.1]:%d %s:%s\n" % (
        sub.intake_port, RELAY_USER, USERS[RELAY_USER][0]))
    os.chmod(pw / "relay_passwd", 0o644)
    mx = MX(build, tmp_path / "mx", mx_redis, free_port(), tls=tls_cert,
            relayhost="[127.0.0.1]:%d" % sub.intake_port,
            smtp_tls_security_level="encrypt", smtp_sasl_auth_enable="yes",
            smtp_sasl_password_maps="texthash:%s" % (pw / "relay_passwd"),
            minimal_backoff_time="1s", maximal_backoff_time="2s",
            queue_run_delay="0s", mx_forward_enable="yes")
    yield sub, mx, mx_redis, mariadb
    mx.cleanup()
    mx_redis.cleanup()
    sub.cleanup()
    shutil.rmtree(pw, ignore_errors=True)


def test_backup_wipe_restore(site, tmp_path):
    sub, mx, mx_redis, db = site
    backup = tmp_path / "backup"
    backup.mkdir()

    # ---- a running site: mail delivered, mail queued on the MX --------
    sub.start()
    for i, rcpt in enumerate(["bob@demo.test", "carol@demo.test", "team@demo.test"]):
        with sub.smtp(login="alice@demo.test") as s:
            s.sendmail("alice@demo.test", [rcpt],
                       b"Subject: delivered %d\r\n\r\nbody %d\r\n" % (i, i))
    assert len(sub.wait_messages("bob@demo.test", 2)) == 2
    assert len(sub.wait_messages("alice@demo.test", 1)) == 1
    assert len(sub.wait_messages("carol@demo.test", 1)) == 1
    sub.stop()                          # the MX's forward target is down
    mx.start()
    queued = {}
    for i, rcpt in enumerate(["bob@demo.test", "alice@demo.test", "bob@demo.test"]):
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=30) as s:
            s.ehlo("client.example")
            s.sendmail("someone@example.net", [rcpt],
                       b"Subject: queued %d\r\n\r\nwaiting %d\r\n" % (i, i))
    assert wait_for(lambda: len(mx.qids()) == 3)
    for q in mx.qids():
        queued[q] = (mx.data(q), mx.recipients(q))
    mail_before = maildir_snapshot(sub.mail)
    assert len(mail_before) == 4
    rows_before = db.sql("SELECT username, password, maildir FROM mailbox ORDER BY username")

    # ---- back up, the site running ------------------------------------
    aofdir = redis_backup_aof(mx_redis, str(backup / "mx-redis-aof"))
    dump = backup / "mailpair.sql"
    with open(dump, "wb") as f:
        subprocess.run(["mariadb-dump", "--no-defaults", "--socket=" + db.socket, "-uroot",
                        "--single-transaction", "--databases", db.db],
                       stdout=f, check=True)
    with tarfile.open(backup / "maildirs.tar", "w") as t:
        t.add(sub.mail, arcname=".")

    # ---- lose everything -----------------------------------------------
    mx.stop()
    mx_redis.stop()
    shutil.rmtree(os.path.join(mx_redis.dir, aofdir))
    db.sql_root("DROP DATABASE %s" % db.db)
    shutil.rmtree(sub.mail)
    os.makedirs(sub.mail)
    mx_redis.start()
    assert mx.qids() == []
    mx_redis.stop()

    # ---- restore (Redis stopped: its fresh empty AOF makes way) ----------
    shutil.rmtree(os.path.join(mx_redis.dir, aofdir))
    shutil.copytree(backup / "mx-redis-aof", os.path.join(mx_redis.dir, aofdir))
    mx_redis.start()
    with open(dump, "rb") as f:
        subprocess.run(["mariadb", "--no-defaults", "--socket=" + db.socket, "-uroot"],
                       stdin=f, check=True)
    with tarfile.open(backup / "maildirs.tar") as t:
        t.extractall(sub.mail, numeric_owner=True)

    # every queued message, byte for byte, with its recipients
    assert sorted(mx.qids()) == sorted(queued)
    for q, (data, rcpts) in queued.items():
        assert mx.data(q) == data
        assert mx.recipients(q) == rcpts
    # every delivered message, and the accounts
    assert maildir_snapshot(sub.mail) == mail_before
    assert db.sql("SELECT username, password, maildir FROM mailbox ORDER BY username") \
        == rows_before
    for root, dirs, files in os.walk(sub.mail):
        assert os.stat(root).st_uid == sub.uid

    # ---- the restored site runs: the queue drains into the Maildirs ----
    sub.start()
    with sub.smtp(login="alice@demo.test") as s:      # logins from the restored DB
        s.sendmail("alice@demo.test", ["carol@demo.test"], b"Subject: after\r\n\r\nok\r\n")
    mx.start()
    assert wait_for(lambda: mx.qids() == [], timeout=60), mx.logtext()[-2000:]
    bob = [m for _, m in sub.wait_messages("bob@demo.test", 4)]
    assert len(bob) == 4
    assert sum(b"waiting 0\r\n" in m or b"waiting 2\r\n" in m for m in bob) == 2
    assert any(b"waiting 1\r\n" in m for _, m in sub.wait_messages("alice@demo.test", 2))
    assert len(sub.wait_messages("carol@demo.test", 2)) == 2
