"""mailctl against a texthash configuration in a temporary folder and
against the Postfix Admin tables in the session's MariaDB."""
import os
import re
import stat
import subprocess
import uuid
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # only to check the stored hashes


def run(build, cfdir, *args, stdin=None):
    return subprocess.run([str(build / "mailctl"), "-c", str(cfdir)] + list(args),
                          input=stdin, capture_output=True, text=True, timeout=30)


def ok(build, cfdir, *args, stdin=None):
    r = run(build, cfdir, *args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    return r.stdout


def refused(build, cfdir, *args, code=1, stdin=None):
    r = run(build, cfdir, *args, stdin=stdin)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert r.stderr.strip(), "a refusal says why on stderr"
    return r.stderr


def read_map(path):
    """texthash file -> dict (the map syntax, without continuation lines)."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                k, v = line.split(None, 1)
                out[k] = v.strip()
    return out


def hash_ok(stored, password):
    m = re.fullmatch(r"\{SHA512-CRYPT\}(\$6\$.+)", stored)
    assert m, stored
    return crypt.crypt(password, m.group(1)) == m.group(1)


@pytest.fixture
def text_cf(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "aliases").write_text("# site aliases, kept by mailctl\n")
    (tmp_path / "submission.cf").write_text(
        "myhostname = mx.example.test\n"
        "virtual_mailbox_domains = texthash:%(m)s/domains\n"
        "virtual_mailbox_base = %(t)s/mail\n"
        "virtual_mailbox_maps = texthash:%(m)s/mailboxes\n"
        "virtual_alias_maps = texthash:%(m)s/aliases\n"
        "virtual_password_maps = texthash:%(m)s/passwd\n"
        "virtual_mailbox_limit_maps = texthash:%(m)s/quota\n"
        "virtual_uid_maps = static:%(uid)d\n"
        "virtual_gid_maps = static:%(gid)d\n"
        "smtpd_tls_cert_file = /nonexistent\n"
        % {"m": maps, "t": tmp_path, "uid": os.getuid(), "gid": os.getgid()})
    return tmp_path


def test_usage(build, text_cf):
    assert run(build, text_cf).returncode == 2
    assert run(build, text_cf, "domain").returncode == 2
    assert run(build, text_cf, "frobnicate", "add", "x").returncode == 2
    assert run(build, text_cf, "domain", "add").returncode == 2
    assert run(build, text_cf, "mailbox", "add", "a@b.test", "--bogus").returncode == 2
    r = run(build, text_cf, "-h")
    assert r.returncode == 0 and "aliasdomain add" in r.stdout


def test_missing_config(build, tmp_path):
    err = refused(build, tmp_path / "nope", "domain", "list")
    assert "submission.cf" in err


def test_text_domains(build, text_cf):
    ok(build, text_cf, "domain", "add", "Example.TEST")
    ok(build, text_cf, "domain", "add", "other.test", "--description", "Other one")
    assert "already exists" in refused(build, text_cf, "domain", "add", "example.test")
    assert "malformed" in refused(build, text_cf, "domain", "add", "bad..domain")
    assert "malformed" in refused(build, text_cf, "domain", "add", "../etc")
    assert ok(build, text_cf, "domain", "list").split() == ["example.test", "other.test"]
    doms = read_map(text_cf / "maps" / "domains")
    assert doms == {"example.test": "OK", "other.test": "Other one"}
    ok(build, text_cf, "domain", "del", "other.test")
    assert "no such domain" in refused(build, text_cf, "domain", "del", "other.test")
    assert ok(build, text_cf, "domain", "list").split() == ["example.test"]
    # no temporary files left behind by the atomic rewrite
    assert not [n for n in os.listdir(text_cf / "maps") if "mailctl-" in n]


def test_text_mailbox_lifecycle(build, text_cf):
    ok(build, text_cf, "domain", "add", "example.test")
    ok(build, text_cf, "mailbox", "add", "Alice@Example.test", "--password", "s3cret",
       "--quota", "1", "--name", "Alice A")
    ok(build, text_cf, "mailbox", "add", "bob@example.test", "--password-stdin",
       stdin="bob pw\n")
    maps = text_cf / "maps"
    assert read_map(maps / "mailboxes") == {"alice@example.test": "example.test/alice/",
                                            "bob@example.test": "example.test/bob/"}
    pw = read_map(maps / "passwd")
    assert hash_ok(pw["alice@example.test"], "s3cret")
    assert hash_ok(pw["bob@example.test"], "bob pw")
    assert not hash_ok(pw["bob@example.test"], "bob p")
    assert stat.S_IMODE(os.stat(maps / "passwd").st_mode) == 0o600
    # --quota is in MB as Postfix Admin shows it (its quota_multiplier)
    assert read_map(maps / "quota") == {"alice@example.test": "1024000"}
    # each mailbox is an alias of itself, so a catch-all cannot swallow it
    al = read_map(maps / "aliases")
    assert al["alice@example.test"] == "alice@example.test"
    assert (maps / "aliases").read_text().startswith("# site aliases, kept by mailctl\n")
    for sub in ("cur", "new", "tmp"):
        d = text_cf / "mail" / "example.test" / "alice" / sub
        assert d.is_dir()
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert ok(build, text_cf, "mailbox", "list").split() == ["alice@example.test",
                                                              "bob@example.test"]
    assert ok(build, text_cf, "mailbox", "list", "other.test").split() == []

    assert "already exists" in refused(build, text_cf, "mailbox", "add",
                                       "alice@example.test", "--password", "x")
    assert "unknown domain" in refused(build, text_cf, "mailbox", "add",
                                       "carol@nowhere.test", "--password", "x")
    for bad in ("../../etc@example.test", "a/b@example.test", ".hidden@example.test",
                "no-domain", "x@[127.0.0.1]", "x y@example.test"):
        assert "malformed" in refused(build, text_cf, "mailbox", "add", bad,
                                      "--password", "x"), bad
    refused(build, text_cf, "mailbox", "add", "carol@example.test", code=2)
    assert "empty password" in refused(build, text_cf, "mailbox", "add",
                                       "carol@example.test", "--password-stdin",
                                       stdin="\n")
    assert "bytes" in refused(build, text_cf, "mailbox", "add", "carol@example.test",
                              "--password", "x", "--quota", "-5")
    assert "carol@example.test" not in read_map(maps / "mailboxes")

    ok(build, text_cf, "mailbox", "passwd", "alice@example.test", "--password", "new pw")
    assert hash_ok(read_map(maps / "passwd")["alice@example.test"], "new pw")
    assert "no such mailbox" in refused(build, text_cf, "mailbox", "passwd",
                                        "zed@example.test", "--password", "x")
    assert "still has" in refused(build, text_cf, "domain", "del", "example.test")

    ok(build, text_cf, "mailbox", "del", "alice@example.test")
    assert "alice@example.test" not in read_map(maps / "mailboxes")
    assert "alice@example.test" not in read_map(maps / "passwd")
    assert "alice@example.test" not in read_map(maps / "quota")
    assert "alice@example.test" not in read_map(maps / "aliases")
    # the mail itself stays (as Postfix Admin leaves it)
    assert (text_cf / "mail" / "example.test" / "alice" / "new").is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership needs root")
def test_text_maildir_owner_as_root(build, text_cf):
    cf = text_cf / "submission.cf"
    cf.write_text(cf.read_text().replace("static:0\n", "static:4321\n", 2))
    ok(build, text_cf, "domain", "add", "example.test")
    ok(build, text_cf, "mailbox", "add", "own@example.test", "--password", "x")
    st = os.stat(text_cf / "mail" / "example.test" / "own" / "cur")
    assert (st.st_uid, st.st_gid) == (4321, 4321)
    cf.write_text(cf.read_text().replace("virtual_uid_maps = static:4321\n", ""))
    assert "static:NUMBER" in refused(build, text_cf, "mailbox", "add",
                                      "two@example.test", "--password", "x")


def test_text_aliases(build, text_cf):
    ok(build, text_cf, "domain", "add", "example.test")
    ok(build, text_cf, "mailbox", "add", "alice@example.test", "--password", "x")
    ok(build, text_cf, "alias", "add", "info@example.test",
       "alice@example.test, someone@remote.test")
    assert "leads nowhere" in refused(build, text_cf, "alias", "add",
                                      "sales@example.test", "ghost@example.test")
    assert "at least one target" in refused(build, text_cf, "alias", "add",
                                            "sales@example.test")
    assert "malformed" in refused(build, text_cf, "alias", "add", "sales@example.test",
                                  "not an address")
    assert "already exists" in refused(build, text_cf, "alias", "add",
                                       "info@example.test", "alice@example.test")
    assert "is a mailbox" in refused(build, text_cf, "alias", "add",
                                     "alice@example.test", "info@example.test")
    assert "unknown domain" in refused(build, text_cf, "alias", "add",
                                       "x@nowhere.test", "alice@example.test")
    # an alias to an alias is fine; so is a catch-all
    ok(build, text_cf, "alias", "add", "sales@example.test", "info@example.test")
    ok(build, text_cf, "alias", "add", "@example.test", "alice@example.test")
    # with a catch-all, any address of the domain leads somewhere
    ok(build, text_cf, "alias", "add", "help@example.test", "whoever@example.test")
    al = read_map(text_cf / "maps" / "aliases")
    assert al["info@example.test"] == "alice@example.test,someone@remote.test"
    assert al["@example.test"] == "alice@example.test"
    assert ok(build, text_cf, "alias", "list").splitlines() == [
        "@example.test -> alice@example.test",
        "help@example.test -> whoever@example.test",
        "info@example.test -> alice@example.test,someone@remote.test",
        "sales@example.test -> info@example.test"]
    ok(build, text_cf, "alias", "del", "sales@example.test")
    assert "no such alias" in refused(build, text_cf, "alias", "del", "sales@example.test")
    assert "is a mailbox" in refused(build, text_cf, "alias", "del", "alice@example.test")
    assert "sales@example.test" not in read_map(text_cf / "maps" / "aliases")


def test_text_alias_domains(build, text_cf):
    ok(build, text_cf, "domain", "add", "example.test")
    ok(build, text_cf, "mailbox", "add", "alice@example.test", "--password", "x")
    ok(build, text_cf, "aliasdomain", "add", "Alias.test", "example.test")
    assert read_map(text_cf / "maps" / "aliases")["@alias.test"] == "@example.test"
    assert "alias.test" in read_map(text_cf / "maps" / "domains")
    assert ok(build, text_cf, "aliasdomain", "list").splitlines() == [
        "alias.test -> example.test"]
    assert "@alias.test" not in ok(build, text_cf, "alias", "list")
    assert "unknown domain" in refused(build, text_cf, "aliasdomain", "add",
                                       "x.test", "nowhere.test")
    assert "already an alias domain" in refused(build, text_cf, "aliasdomain", "add",
                                                "alias.test", "example.test")
    assert "alias domain" in refused(build, text_cf, "mailbox", "add",
                                     "bob@alias.test", "--password", "x")
    # targets through the alias domain are checked on the target domain
    ok(build, text_cf, "alias", "add", "info@example.test", "alice@alias.test")
    assert "leads nowhere" in refused(build, text_cf, "alias", "add",
                                      "x@example.test", "ghost@alias.test")
    assert "aliasdomain del" in refused(build, text_cf, "domain", "del", "alias.test")
    ok(build, text_cf, "aliasdomain", "del", "alias.test")
    assert "@alias.test" not in read_map(text_cf / "maps" / "aliases")
    assert "alias.test" not in read_map(text_cf / "maps" / "domains")
    assert "no such alias domain" in refused(build, text_cf, "aliasdomain", "del",
                                             "alias.test")


# ---- MySQL ---------------------------------------------------------------

@pytest.fixture
def sql_cf(tmp_path, mariadb):
    mdir = tmp_path / "mysql"
    mdir.mkdir()
    # The sample files from deploy/, with this server's credentials.
    for name in os.listdir(os.path.join(ROOT, "deploy", "etc", "mysql")):
        text = open(os.path.join(ROOT, "deploy", "etc", "mysql", name)).read()
        text = re.sub(r"(?m)^hosts = .*$", "hosts = unix:%s" % mariadb.socket, text)
        text = re.sub(r"(?m)^user = .*$", "user = %s" % mariadb.user, text)
        text = re.sub(r"(?m)^password = .*$", "password = %s" % mariadb.password, text)
        text = re.sub(r"(?m)^dbname = .*$", "dbname = %s" % mariadb.db, text)
        (mdir / name).write_text(text)
    (tmp_path / "submission.cf").write_text(
        "virtual_mailbox_domains = mysql:%(d)s/virtual_domains_maps.cf\n"
        "virtual_mailbox_base = %(t)s/mail\n"
        "virtual_mailbox_maps = mysql:%(d)s/virtual_mailbox_maps.cf\n"
        "virtual_alias_maps = mysql:%(d)s/virtual_alias_maps.cf\n"
        "virtual_password_maps = mysql:%(d)s/virtual_password_maps.cf\n"
        "virtual_mailbox_limit_maps = mysql:%(d)s/virtual_mailbox_limit_maps.cf\n"
        "virtual_uid_maps = static:%(uid)d\n"
        "virtual_gid_maps = static:%(gid)d\n"
        "default_pass_scheme = SHA512-CRYPT\n"
        % {"d": mdir, "t": tmp_path, "uid": os.getuid(), "gid": os.getgid()})
    return tmp_path


def uniq():
    return "mc%s.test" % uuid.uuid4().hex[:10]


def test_sql_domain_and_mailbox(build, sql_cf, mariadb):
    d = uniq()
    ok(build, sql_cf, "domain", "add", d.upper(), "--description", "Test it")
    assert mariadb.sql("SELECT domain, description, active FROM domain "
                       "WHERE domain='%s'" % d) == [[d, "Test it", "1"]]
    assert "already exists" in refused(build, sql_cf, "domain", "add", d)
    assert d in ok(build, sql_cf, "domain", "list").split()

    name = "O'Brien\"); DROP TABLE mailbox; --"
    ok(build, sql_cf, "mailbox", "add", "Alice@" + d, "--password", "pw'1",
       "--quota", "5", "--name", name)
    rows = mariadb.sql("SELECT username, password, name, maildir, quota, local_part, "
                       "domain, active FROM mailbox WHERE domain='%s'" % d)
    assert len(rows) == 1
    u, pw, nm, md, q, lp, dom, act = rows[0]
    assert (u, nm, md, q, lp, dom, act) == ("alice@" + d, name, d + "/alice/", "5120000",
                                            "alice", d, "1")
    assert hash_ok(pw, "pw'1")
    assert mariadb.sql("SELECT goto FROM alias WHERE address='alice@%s'" % d) == [
        ["alice@" + d]]
    assert (sql_cf / "mail" / d / "alice" / "new").is_dir()

    assert "already exists" in refused(build, sql_cf, "mailbox", "add", "alice@" + d,
                                       "--password", "x")
    assert "unknown domain" in refused(build, sql_cf, "mailbox", "add",
                                       "bob@" + uniq(), "--password", "x")
    assert "malformed" in refused(build, sql_cf, "mailbox", "add",
                                  "x'or'1'='1@" + d + "'", "--password", "x")
    assert ok(build, sql_cf, "mailbox", "list", d).split() == ["alice@" + d]

    ok(build, sql_cf, "mailbox", "passwd", "alice@" + d, "--password-stdin",
       stdin="changed\n")
    pw = mariadb.sql("SELECT password FROM mailbox WHERE username='alice@%s'" % d)[0][0]
    assert hash_ok(pw, "changed")

    assert "still has" in refused(build, sql_cf, "domain", "del", d)
    ok(build, sql_cf, "mailbox", "del", "alice@" + d)
    assert mariadb.sql("SELECT COUNT(*) FROM mailbox WHERE domain='%s'" % d) == [["0"]]
    assert mariadb.sql("SELECT COUNT(*) FROM alias WHERE domain='%s'" % d) == [["0"]]
    ok(build, sql_cf, "domain", "del", d)
    assert mariadb.sql("SELECT COUNT(*) FROM domain WHERE domain='%s'" % d) == [["0"]]


def test_sql_aliases_and_alias_domains(build, sql_cf, mariadb):
    d, a = uniq(), uniq()
    ok(build, sql_cf, "domain", "add", d)
    ok(build, sql_cf, "mailbox", "add", "alice@" + d, "--password", "x")
    ok(build, sql_cf, "alias", "add", "info@" + d, "alice@" + d, "ext@remote.test")
    assert mariadb.sql("SELECT goto, domain FROM alias WHERE address='info@%s'" % d) == [
        ["alice@%s,ext@remote.test" % d, d]]
    assert "leads nowhere" in refused(build, sql_cf, "alias", "add", "x@" + d,
                                      "ghost@" + d)
    assert "is a mailbox" in refused(build, sql_cf, "alias", "add", "alice@" + d,
                                     "ext@remote.test")
    assert ok(build, sql_cf, "alias", "list", d).splitlines() == [
        "info@%s -> alice@%s,ext@remote.test" % (d, d)]

    ok(build, sql_cf, "aliasdomain", "add", a, d)
    assert mariadb.sql("SELECT target_domain, active FROM alias_domain "
                       "WHERE alias_domain='%s'" % a) == [[d, "1"]]
    assert mariadb.sql("SELECT COUNT(*) FROM domain WHERE domain='%s'" % a) == [["1"]]
    assert "%s -> %s" % (a, d) in ok(build, sql_cf, "aliasdomain", "list")
    # The Postfix Admin alias-domain queries resolve through the new rows.
    assert mariadb.sql(
        "SELECT maildir FROM mailbox,alias_domain WHERE alias_domain.alias_domain = "
        "'%s' AND mailbox.username = CONCAT('alice', '@', alias_domain.target_domain) "
        "AND mailbox.active = 1 AND alias_domain.active = '1'" % a) == [[d + "/alice/"]]
    ok(build, sql_cf, "aliasdomain", "del", a)
    assert mariadb.sql("SELECT COUNT(*) FROM alias_domain WHERE alias_domain='%s'"
                       % a) == [["0"]]
    assert mariadb.sql("SELECT COUNT(*) FROM domain WHERE domain='%s'" % a) == [["0"]]
    ok(build, sql_cf, "alias", "del", "info@" + d)
    assert mariadb.sql("SELECT COUNT(*) FROM alias WHERE address='info@%s'" % d) == [["0"]]


def test_sql_refused_change_leaves_no_trace(build, sql_cf, mariadb):
    d = uniq()
    ok(build, sql_cf, "domain", "add", d)
    refused(build, sql_cf, "alias", "add", "a@" + d, "b@" + d)
    assert mariadb.sql("SELECT COUNT(*) FROM alias WHERE domain='%s'" % d) == [["0"]]


def test_sql_database_down(build, tmp_path):
    (tmp_path / "db.cf").write_text("hosts = 127.0.0.1:1\nuser = x\npassword = y\n"
                                    "dbname = z\nquery = SELECT 1\n")
    (tmp_path / "submission.cf").write_text(
        "virtual_mailbox_maps = mysql:%s/db.cf\n" % tmp_path)
    assert "127.0.0.1:1" in refused(build, tmp_path, "domain", "list")


def test_deploy_queries_run_on_schema(mariadb):
    """Every sample .cf query is valid SQL against deploy/sql/schema.sql."""
    mdir = os.path.join(ROOT, "deploy", "etc", "mysql")
    names = sorted(os.listdir(mdir))
    assert "virtual_password_maps.cf" in names and "virtual_mailbox_maps.cf" in names
    for name in names:
        fields = {}
        for line in open(os.path.join(mdir, name)):
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                fields[k.strip()] = v.strip()
        assert set(("hosts", "user", "password", "dbname", "query")) <= set(fields), name
        q = (fields["query"].replace("%s", "u@d.test").replace("%u", "u")
             .replace("%d", "d.test"))
        mariadb.sql(q)  # raises on an SQL error
