"""build/mailq (mx-relay/cmd_mailq.c) against a real Redis: list, show,
hold, release, flush, delete and count, in text and --json, reading
redis_server from the daemon's configuration file."""
import base64
import json
import subprocess
import time

import pytest

from sink import put_message


@pytest.fixture
def confdir(tmp_path, redis):
    (tmp_path / "mx-relay.cf").write_text(
        "# only redis_* matter to mailq\nmyhostname = mx.demo.test\n"
        "redis_server = %s\n" % redis.address)
    (tmp_path / "other.cf").write_text("redis_server = unix:%s\n" % redis.socket)
    return tmp_path


def run(build, confdir, *args, json_out=True):
    cmd = [str(build / "mailq"), "-c", str(confdir)]
    if json_out:
        cmd.append("--json")
    p = subprocess.run(cmd + list(args), capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode()


def listing(build, confdir, *extra):
    rc, out, err = run(build, confdir, *extra, "list")
    assert rc == 0, err
    return {m["queue_id"]: m for m in map(json.loads, out.splitlines())}


def test_list_show_count(build, confdir, redis):
    data = b"Subject: q\r\n\r\n\xe9t\xe9\r\n"
    q1 = put_message(redis, "alice@example.net", ["bob@demo.test", "carol@virt.test"], data)
    q2 = put_message(redis, "", ["dave@virt.test"], b"x\r\n")
    lst = listing(build, confdir)
    assert set(lst) == {q1, q2}
    m = lst[q1]
    assert m["sender"] == "alice@example.net"
    assert m["message_size"] == len(data)
    assert m["state"] == "active"
    assert [r["address"] for r in m["recipients"]] == ["bob@demo.test", "carol@virt.test"]
    assert all(r["state"] == "pending" for r in m["recipients"])
    assert m["client_address"] == "192.0.2.9"
    rc, out, _ = run(build, confdir, "show", q1)
    assert rc == 0
    shown = json.loads(out)
    assert base64.b64decode(shown["data_base64"]) == data
    rc, out, _ = run(build, confdir, "count")
    assert json.loads(out) == {"active": 2, "deferred": 0, "hold": 0, "total": 2}
    # text form, Postfix mailq style; the null sender is MAILER-DAEMON
    rc, out, _ = run(build, confdir, "list", json_out=False)
    assert rc == 0
    assert q1 + "*" in out and "MAILER-DAEMON" in out
    assert "in 2 Requests." in out
    # a unix socket address from another config file works the same
    assert set(listing(build, confdir, "--config-file",
                       str(confdir / "other.cf"))) == {q1, q2}


def test_hold_release_flush_delete(build, confdir, redis):
    qid = put_message(redis, "alice@example.net", ["bob@demo.test"], b"a\r\n")
    rc, out, _ = run(build, confdir, "hold", qid)
    assert rc == 0 and json.loads(out) == {"held": 1}
    assert listing(build, confdir)[qid]["state"] == "hold"
    assert redis.command("ZSCORE", "mq:mx:sched", qid) is None   # never claimed
    rc, _, err = run(build, confdir, "hold", qid)                 # already held
    assert rc == 1 and "no such message" in err
    rc, out, _ = run(build, confdir, "release", qid)
    assert rc == 0 and json.loads(out) == {"released": 1}
    m = listing(build, confdir)[qid]
    assert m["state"] == "deferred"
    # make it look like a message waiting for its retry, then flush it
    later = int(time.time() * 1000) + 3600 * 1000
    redis.command("ZADD", "mq:mx:sched", str(later), qid)
    rc, out, _ = run(build, confdir, "flush")
    assert rc == 0 and json.loads(out) == {"flushed": 1}
    assert int(redis.command("ZSCORE", "mq:mx:sched", qid)) <= int(time.time() * 1000)
    rc, out, _ = run(build, confdir, "delete", qid)
    assert rc == 0 and json.loads(out) == {"deleted": 1}
    assert listing(build, confdir) == {}
    assert redis.command("EXISTS", "mq:mx:d:" + qid) == 0
    rc, _, err = run(build, confdir, "delete", qid)
    assert rc == 1


def test_all_and_bad_ids(build, confdir, redis):
    ids = [put_message(redis, "a@example.net", ["bob@demo.test"], b"x\r\n") for _ in range(3)]
    rc, out, _ = run(build, confdir, "hold", "ALL")
    assert rc == 0 and json.loads(out) == {"held": 3}
    rc, out, _ = run(build, confdir, "count")
    assert json.loads(out)["hold"] == 3
    rc, _, err = run(build, confdir, "show", "../../etc")
    assert rc == 2 and "bad queue id" in err
    rc, _, err = run(build, confdir, "show", "NOSUCHID")
    assert rc == 1
    rc, out, _ = run(build, confdir, "delete", "ALL")
    assert rc == 0 and json.loads(out) == {"deleted": 3}
    assert listing(build, confdir) == {}
    # the other queue is separate
    put_message(redis, "a@example.net", ["x@example.org"], b"x\r\n", queue="out")
    assert listing(build, confdir) == {}
    assert len(listing(build, confdir, "--queue", "out", "--config-file",
                       str(confdir / "mx-relay.cf"))) == 1


def test_redis_down_is_an_error(build, confdir, redis):
    redis.stop()
    rc, _, err = run(build, confdir, "list")
    assert rc == 2 and "Redis" in err
