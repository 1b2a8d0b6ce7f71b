"""IMAP mailbox listing: atoms with "[" (RFC 3501 §9), LSUB's \\Noselect
parents (RFC 3501 §6.3.9), LIST-EXTENDED (RFC 5258) and LIST-STATUS
(RFC 5819), over STARTTLS/IMAPS with imaplib and raw lines over
plaintext and TLS. Every test starts its own daemon (mra_env.py)."""
import imaplib
import re
import socket
import ssl

import pytest

from mra_env import MraEnv

ALICE = "alice@example.test"
ATOM = "!#$&'+,-.0123456789:;<=>?@^_`|[}"


@pytest.fixture
def mra(build, tmp_path, tls_cert, free_port):
    env = MraEnv(build, tmp_path, tls_cert, free_port,
                 disable_plaintext_auth="no").start()
    yield env
    env.cleanup()


def tls_ctx(env):
    ctx = ssl.create_default_context(cafile=env.tls_cert.cert)
    ctx.check_hostname = False
    return ctx


class Raw:
    """Line-level IMAP, plaintext or implicit TLS."""

    def __init__(self, env, tls):
        s = socket.create_connection(
            ("127.0.0.1", env.imaps_port if tls else env.imap_port), 5)
        self.s = tls_ctx(env).wrap_socket(s) if tls else s
        self.buf = b""
        assert self.line().startswith(b"* OK")

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def cmd(self, tag, text):
        self.s.sendall(("%s %s\r\n" % (tag, text)).encode())
        out = []
        while True:
            ln = self.line()
            out.append(ln)
            if ln.startswith(tag.encode() + b" "):
                return out

    def close(self):
        self.s.close()


def login(env, tls):
    r = Raw(env, tls)
    assert r.cmd("l", "LOGIN %s secret" % ALICE)[-1].startswith(b"l OK")
    return r


def names(out, kind=b"LIST"):
    """{name: line} of the untagged LIST/LSUB lines."""
    got = {}
    for ln in out:
        if ln.startswith(b"* " + kind + b" "):
            m = re.search(rb'"\." "?([^"\s]*)"?( \(.*\))?$', ln)
            got[m.group(1).decode()] = ln
    return got


@pytest.mark.parametrize("tls", [False, True])
def test_atoms_with_brackets(mra, tls):
    """imaptest atoms: "[" and "}" are ATOM-CHARs. SELECT of such a name
    was BAD (the parser waited for a "]"), LIST of such a pattern too."""
    r = login(mra, tls)
    out = r.cmd("a", "SELECT " + ATOM)
    assert out[-1].startswith(b"a NO"), out
    out = r.cmd("b", 'LIST "" %s%%*' % ATOM)
    assert out == [b"b OK List completed."], out
    out = r.cmd("c", 'LIST "" ~foo')
    assert out[-1].startswith(b"c OK")
    assert r.cmd("d", "SELECT ~foo")[-1].startswith(b"d NO")
    # an unclosed "[" ends at a space; a closed one still holds spaces
    out = r.cmd("e", 'LIST "" a[b "x"')
    assert out[-1].startswith(b"e BAD"), out     # three arguments
    assert r.cmd("f", "CREATE x[y")[-1].startswith(b"f OK")
    out = r.cmd("g", 'LIST "" x[*')
    assert list(names(out)) == ["x[y"], out
    # the session is still in step
    assert r.cmd("h", "NOOP")[-1].startswith(b"h OK")
    r.close()


@pytest.mark.parametrize("tls", [False, True])
def test_lsub_noselect_parents(mra, tls):
    """RFC 3501 §6.3.9: LSUB "" m.% returns an unsubscribed parent of a
    subscribed name as \\Noselect (imaptest subscribe)."""
    r = login(mra, tls)
    for n in ("m.t", "m.t2.x", "m.t3.t3", "m.t4"):
        assert r.cmd("c", "CREATE " + n)[-1].startswith(b"c OK")
    for n in ("m.t", "m.t2.x", "m.t3.t3"):
        assert r.cmd("s", "SUBSCRIBE " + n)[-1].startswith(b"s OK")
    got = names(r.cmd("a", 'LSUB "" m.%'), b"LSUB")
    assert set(got) == {"m.t", "m.t2", "m.t3"}, got
    assert got["m.t"].startswith(b"* LSUB () ")
    assert got["m.t2"].startswith(b"* LSUB (\\Noselect) ")
    assert got["m.t3"].startswith(b"* LSUB (\\Noselect) ")
    # "*" returns the subscribed names only
    got = names(r.cmd("b", 'LSUB "" m.*'), b"LSUB")
    assert set(got) == {"m.t", "m.t2.x", "m.t3.t3"}, got
    # unsubscribing the child takes the parent away
    assert r.cmd("u", "UNSUBSCRIBE m.t2.x")[-1].startswith(b"u OK")
    got = names(r.cmd("d", 'LSUB "" m.%'), b"LSUB")
    assert set(got) == {"m.t", "m.t3"}, got
    r.close()


def test_list_extended_imaplib(mra):
    """RFC 5258 over STARTTLS with imaplib: advertised, SUBSCRIBED
    selection with \\NonExistent, RECURSIVEMATCH with CHILDINFO, several
    patterns, RETURN (CHILDREN SUBSCRIBED), and BAD for what is unknown."""
    m = imaplib.IMAP4("127.0.0.1", mra.imap_port)
    m.starttls(tls_ctx(mra))
    m.login(ALICE, "secret")
    typ, data = m.capability()
    assert typ == "OK"
    assert b"LIST-EXTENDED" in data[0].split() and b"LIST-STATUS" in data[0].split()
    for n in ("p.a", "p.b.c", "p.d", "p.e.e", "p.f.f", "p.f.g"):
        assert m.create(n)[0] == "OK"
    for n in ("p.a", "p.b.c", "p.d", "p.e.e", "p.f.f", "p.f.g"):
        assert m.subscribe(n)[0] == "OK"
    assert m.delete("p.d")[0] == "OK"

    def ext(*args):
        typ, data = m._simple_command("LIST", *args)
        assert typ == "OK", (args, data)
        lines = [b"* LIST " + d for d in m.untagged_responses.pop("LIST", [])
                 if isinstance(d, bytes)]
        return names(lines)

    got = ext("(SUBSCRIBED)", '""', '"p.*"')
    assert set(got) == {"p.a", "p.b.c", "p.d", "p.e.e", "p.f.f", "p.f.g"}
    assert all(b"\\Subscribed" in v for v in got.values())
    assert b"\\NonExistent" in got["p.d"] and b"\\Noselect" not in got["p.d"]
    got = ext("(SUBSCRIBED RECURSIVEMATCH)", '""', '"p.%"')
    assert set(got) == {"p.a", "p.b", "p.d", "p.e", "p.f"}, got
    assert got["p.b"].endswith(b'("CHILDINFO" ("SUBSCRIBED"))')
    assert b"\\Subscribed" not in got["p.b"]
    # CHILDINFO only for subscribed descendants that are not returned
    got = ext("(SUBSCRIBED RECURSIVEMATCH)", '""', '"p*f"')
    assert set(got) == {"p.f", "p.f.f"}, got
    got = ext("(SUBSCRIBED RECURSIVEMATCH)", '""', '"p*e"')
    assert set(got) == {"p.e.e"}, got
    got = ext('""', '("p.a" "p.b*")', "RETURN", "(CHILDREN SUBSCRIBED)")
    assert set(got) == {"p.a", "p.b", "p.b.c"}, got
    assert b"\\Subscribed" in got["p.a"] and b"\\HasNoChildren" in got["p.a"]
    assert b"\\HasChildren" in got["p.b"] and b"\\Subscribed" not in got["p.b"]
    # plain LIST is unchanged: no \Subscribed, no names that are gone
    got = ext('""', '"p.*"')
    assert "p.d" not in got and all(b"\\Subscribed" not in v
                                    for v in got.values())
    got = ext("(REMOTE)", '""', "%")
    assert "INBOX" in got
    for bad in [("(IMAPTEST)", '""', '""'), ("(RECURSIVEMATCH)", '""', '""'),
                ("(RECURSIVEMATCH REMOTE)", '""', '""'),
                ('""', '""', "RETURN", "(IMAPTEST)")]:
        with pytest.raises(imaplib.IMAP4.error):
            m._simple_command("LIST", *bad)
    m.logout()


@pytest.mark.parametrize("tls", [False, True])
def test_list_status(mra, tls):
    """RFC 5819: a STATUS line after the LIST line of each selectable
    mailbox, none for \\Noselect or \\NonExistent ones."""
    mra.deliver(ALICE, b"Subject: one\r\n\r\nbody\r\n", folder="q.box")
    mra.deliver(ALICE, b"Subject: two\r\n\r\nbody\r\n", folder="q.box")
    r = login(mra, tls)
    assert r.cmd("s", "SUBSCRIBE q.gone")[-1].startswith(b"s OK")
    out = r.cmd("a", 'LIST "" "q*" RETURN (STATUS (MESSAGES UNSEEN '
                'UIDVALIDITY))')
    assert out[-1].startswith(b"a OK"), out
    lines = [ln for ln in out if ln.startswith(b"* ")]
    assert lines[0].startswith(b"* LIST (\\Noselect") and lines[0].endswith(b'"q"')
    assert lines[1].endswith(b'"q.box"')
    assert re.match(rb'\* STATUS "q\.box" \(MESSAGES 2 UIDVALIDITY \d+ UNSEEN 2\)$',
                    lines[2]), lines
    assert len(lines) == 3, lines
    # with SUBSCRIBED: the gone name is listed, without a STATUS
    out = r.cmd("b", 'LIST (SUBSCRIBED) "" "q*" RETURN (STATUS (MESSAGES))')
    assert [ln for ln in out if b"q.gone" in ln] == \
        [b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "." "q.gone"']
    assert not any(ln.startswith(b"* STATUS") for ln in out)
    # STATUS itself shares the items; an empty or unknown list is BAD
    out = r.cmd("c", "STATUS q.box (MESSAGES SIZE)")
    assert re.match(rb'\* STATUS "q\.box" \(MESSAGES 2 SIZE \d+\)$', out[0])
    assert r.cmd("d", "STATUS q.box ()")[-1].startswith(b"d BAD")
    assert r.cmd("e", "STATUS q.box (BOGUS)")[-1].startswith(b"e BAD")
    r.close()
