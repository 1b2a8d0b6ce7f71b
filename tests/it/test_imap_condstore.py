"""CONDSTORE and QRESYNC (RFC 7162), ESEARCH (RFC 4731), \\Recent and the
per-session mailbox view under concurrent sessions, over IMAPS and
plaintext IMAP, against a real mra with real Maildirs."""
import re

import pytest

from mra_env import MraEnv
from test_imap import ALICE, Raw

MODES = ["tls", "plain"]


@pytest.fixture
def mra(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port,
                 disable_plaintext_auth="no").start()
    yield env
    env.cleanup()


def session(env, mode):
    return Raw(env, tls=(mode == "tls")).login()


def deliver(env, n, start=0):
    for i in range(start, start + n):
        env.deliver(ALICE, b"Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n"
                    % (i, i, i))


def num(lines, pattern):
    for ln in lines:
        m = re.search(pattern.encode(), ln)
        if m:
            return int(m.group(1))
    raise AssertionError("%s not in %r" % (pattern, lines))


def ok(r):
    assert r[-1].split(b" ")[1] == b"OK", r
    return r


@pytest.mark.parametrize("mode", MODES)
def test_condstore_modseq_changedsince_unchangedsince(mra, mode):
    deliver(mra, 3)
    a = session(mra, mode)
    r = ok(a.cmd("e", "ENABLE CONDSTORE"))
    assert b"* ENABLED CONDSTORE" in r
    r = ok(a.cmd("s", "SELECT INBOX"))
    hms0 = num(r, r"\[HIGHESTMODSEQ (\d+)\]")
    # a change raises the message's MODSEQ above HIGHESTMODSEQ before it
    r = ok(a.cmd("st", "STORE 2 +FLAGS (\\Flagged)"))
    m2 = num(r, r"\* 2 FETCH \(.*MODSEQ \((\d+)\)")
    assert m2 > hms0
    # CHANGEDSINCE: only what changed after the value
    r = ok(a.cmd("f", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % hms0))
    fetches = [ln for ln in r if b" FETCH " in ln]
    assert len(fetches) == 1 and fetches[0].startswith(b"* 2 FETCH"), r
    assert b"MODSEQ (%d)" % m2 in fetches[0]
    # UNCHANGEDSINCE older than the message: refused with MODIFIED
    r = ok(a.cmd("u", "STORE 2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % hms0))
    assert b"[MODIFIED 2]" in r[-1], r
    r = ok(a.cmd("g", "FETCH 2 (FLAGS)"))
    assert b"\\Seen" not in b"".join(r)
    r = ok(a.cmd("u2", "STORE 2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % m2))
    assert b"MODIFIED" not in r[-1]
    # another session's change comes with its MODSEQ (unsolicited)
    b = session(mra, mode)
    ok(b.cmd("s", "SELECT INBOX"))
    ok(b.cmd("st", "STORE 3 +FLAGS (\\Answered)"))
    r = ok(a.cmd("n", "NOOP"))
    assert any(ln.startswith(b"* 3 FETCH") and b"\\Answered" in ln and
               b"MODSEQ (" in ln and b"UID 3" in ln for ln in r), r
    # SEARCH MODSEQ and STATUS HIGHESTMODSEQ
    r = ok(a.cmd("se", "SEARCH MODSEQ %d" % (hms0 + 1)))
    assert re.search(rb"\* SEARCH 2 3 \(MODSEQ \d+\)", b"\r\n".join(r)), r
    r = ok(b.cmd("ss", "STATUS INBOX (HIGHESTMODSEQ MESSAGES)"))
    assert num(r, r"HIGHESTMODSEQ (\d+)") > m2
    a.close()
    b.close()


@pytest.mark.parametrize("mode", MODES)
def test_qresync_select_and_vanished(mra, mode):
    deliver(mra, 5)
    a = session(mra, mode)
    ok(a.cmd("e", "ENABLE QRESYNC"))
    r = ok(a.cmd("s", "SELECT INBOX"))
    uv = num(r, r"\[UIDVALIDITY (\d+)\]")
    hms = num(r, r"\[HIGHESTMODSEQ (\d+)\]")
    ok(a.cmd("l", "LOGOUT"))
    # offline: another client expunges 2 and 4 and flags 5
    b = session(mra, mode)
    ok(b.cmd("s", "SELECT INBOX"))
    ok(b.cmd("d", "STORE 2,4 +FLAGS.SILENT (\\Deleted)"))
    ok(b.cmd("x", "EXPUNGE"))
    ok(b.cmd("f", "UID STORE 5 +FLAGS.SILENT (\\Flagged)"))
    # resync in one round trip (RFC 7162 §3.2.5)
    c = session(mra, mode)
    ok(c.cmd("e", "ENABLE QRESYNC"))
    r = ok(c.cmd("s", "SELECT INBOX (QRESYNC (%d %d 1:5))" % (uv, hms)))
    text = b"\r\n".join(r)
    assert b"* VANISHED (EARLIER) 2,4" in text, r
    assert re.search(rb"\* 3 FETCH \(UID 5 FLAGS \([^)]*\\Flagged[^)]*\) "
                     rb"MODSEQ \(\d+\)\)", text), r
    assert not re.search(rb"\* \d+ FETCH \(UID [13] ", text), r
    # live expunges come as VANISHED, not EXPUNGE (§3.2.10)
    ok(b.cmd("d2", "UID STORE 3 +FLAGS.SILENT (\\Deleted)"))
    ok(b.cmd("x2", "UID EXPUNGE 3"))
    r = ok(c.cmd("n", "NOOP"))
    assert b"* VANISHED 3" in r, r
    assert not any(b"EXPUNGE" in ln for ln in r[:-1]), r
    # UID FETCH ... (CHANGEDSINCE n VANISHED)
    r = ok(c.cmd("v", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"))
    assert b"* VANISHED (EARLIER) 2:4" in r, r
    # a stale UIDVALIDITY: no VANISHED, the client starts over
    r = ok(c.cmd("s2", "SELECT INBOX (QRESYNC (%d %d))" % (uv + 1, hms)))
    assert not any(b"VANISHED" in ln for ln in r), r
    for s in (b, c):
        s.close()


@pytest.mark.parametrize("mode", MODES)
def test_esearch_return(mra, mode):
    deliver(mra, 4)
    a = session(mra, mode)
    ok(a.cmd("s", "SELECT INBOX"))
    ok(a.cmd("st", "STORE 2,4 +FLAGS (\\Seen)"))
    r = ok(a.cmd("A1", "SEARCH RETURN (MIN MAX COUNT ALL) SEEN"))
    assert b'* ESEARCH (TAG "A1") MIN 2 MAX 4 ALL 2,4 COUNT 2' in r, r
    r = ok(a.cmd("A2", "UID SEARCH RETURN () 1:*"))
    assert b'* ESEARCH (TAG "A2") UID ALL 1:4' in r, r
    r = ok(a.cmd("A3", "SEARCH RETURN (COUNT) 1000"))
    assert b'* ESEARCH (TAG "A3") COUNT 0' in r, r
    a.close()


@pytest.mark.parametrize("mode", MODES)
def test_recent_claimed_once(mra, mode):
    deliver(mra, 2)
    a = session(mra, mode)
    r = ok(a.cmd("x", "EXAMINE INBOX"))
    assert b"* 2 RECENT" in r, r          # EXAMINE does not claim
    b = session(mra, mode)
    r = ok(b.cmd("s", "SELECT INBOX"))
    assert b"* 2 RECENT" in r, r
    r = ok(b.cmd("f", "FETCH 1 FLAGS"))
    assert b"\\Recent" in r[0], r
    r = ok(b.cmd("n", "SEARCH NEW"))
    assert b"* SEARCH 1 2" in r, r
    c = session(mra, mode)
    r = ok(c.cmd("s", "SELECT INBOX"))
    assert b"* 0 RECENT" in r, r          # claimed by b
    ok(c.cmd("c", "CLOSE"))
    r = ok(c.cmd("st", "STATUS INBOX (RECENT)"))
    assert b"RECENT 0" in r[0], r
    # an APPEND is recent for the next session that syncs read-write
    r = ok(c.cmd("ap", "APPEND INBOX {12+}\r\nSubject: a\r\n"))
    deliver(mra, 1, start=9)
    r = ok(b.cmd("n", "NOOP"))
    assert b"* 4 EXISTS" in r and b"* 4 RECENT" in r, r
    for s in (a, b, c):
        s.close()


@pytest.mark.parametrize("mode", MODES)
def test_view_numbers_under_concurrent_expunge(mra, mode):
    """A session never hears of a sequence number it was not told, and
    FETCH/STORE/SEARCH bring no EXPUNGE (RFC 3501 §7.4.1)."""
    deliver(mra, 6)
    a = session(mra, mode)
    b = session(mra, mode)
    ok(a.cmd("s", "SELECT INBOX"))
    ok(b.cmd("s", "SELECT INBOX"))
    deliver(mra, 2, start=6)
    ok(b.cmd("d", "STORE 1,6 +FLAGS.SILENT (\\Deleted)"))
    ok(b.cmd("x", "EXPUNGE"))
    deliver(mra, 1, start=8)
    # FETCH: new messages may be announced, nothing expunged
    r = a.cmd("f", "FETCH 1:6 (UID)")
    assert not any(b"EXPUNGE" in ln for ln in r[:-1]), r
    assert b"* 9 EXISTS" in r, r
    assert r[-1].startswith(b"f NO [EXPUNGEISSUED]"), r
    assert sum(1 for ln in r if b" FETCH (UID" in ln) == 4
    # a command that may expunge: the numbers it sends are all known
    r = ok(a.cmd("n", "NOOP"))
    assert r[:2] == [b"* 6 EXPUNGE", b"* 1 EXPUNGE"], r
    r = ok(a.cmd("u", "FETCH 1:* (UID)"))
    uids = [int(x) for x in re.findall(rb"UID (\d+)", b" ".join(r))]
    assert uids == [2, 3, 4, 5, 7, 8, 9], r
    a.close()
    b.close()


@pytest.mark.parametrize("mode", MODES)
def test_keyword_announced_before_use(mra, mode):
    deliver(mra, 1)
    a = session(mra, mode)
    b = session(mra, mode)
    ok(a.cmd("s", "SELECT INBOX"))
    ok(b.cmd("s", "SELECT INBOX"))
    r = ok(b.cmd("k", "STORE 1 +FLAGS ($Label7)"))
    assert any(ln.startswith(b"* FLAGS (") and b"$Label7" in ln for ln in r)
    r = ok(a.cmd("n", "NOOP"))
    flags_at = [i for i, ln in enumerate(r) if ln.startswith(b"* FLAGS (")]
    fetch_at = [i for i, ln in enumerate(r) if b"FETCH" in ln and b"$Label7" in ln]
    assert flags_at and fetch_at and flags_at[0] < fetch_at[0], r
    a.close()
    b.close()
