/* test_map: lookup tables. static and texthash need nothing; the mysql
 * cases run against the real MariaDB the harness starts (TEST_MYSQL_*)
 * and fail when it is missing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mysql.h>

#include "map.h"

static char test_map_dir[] = "/tmp/test_map.XXXXXX";

static char *test_map_path(const char *name)
{
	static char path[4][256];
	static int slot;

	slot = (slot + 1) % 4;
	snprintf(path[slot], sizeof(path[slot]), "%s/%s", test_map_dir, name);
	return path[slot];
}

/* Replace a file atomically, as mailctl does. */
static void test_map_write(const char *name, const char *text)
{
	char tmp[300];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", test_map_path(name));
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, test_map_path(name)), 0);
}

static struct map *test_map_open(const char *fmt, ...)
{
	char spec[512];
	struct err err;
	struct map *m;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(spec, sizeof(spec), fmt, ap);
	va_end(ap);
	err_clear(&err);
	m = map_open(spec, &err);
	if (m == NULL)
		fail_msg("map_open(%s): %s", spec, err.msg);
	return m;
}

/* Look key up and compare: want NULL means "not found". */
static void test_map_expect(struct map *m, const char *key, const char *want)
{
	struct err err;
	char *v = (char *)1;
	enum map_rc rc;

	err_clear(&err);
	rc = map_lookup(m, key, &v, &err);
	if (want == NULL) {
		if (rc != MAP_NOTFOUND)
			fail_msg("%s: expected not found, got rc=%d %s (%s)", key, rc,
			         v != NULL ? v : "", err.msg);
		assert_null(v);
		return;
	}
	if (rc != MAP_FOUND)
		fail_msg("%s: expected \"%s\", got rc=%d (%s)", key, want, rc, err.msg);
	assert_string_equal(v, want);
	free(v);
}

static enum map_rc test_map_rc(struct map *m, const char *key, struct err *err)
{
	char *v = NULL;
	enum map_rc rc;

	err_clear(err);
	rc = map_lookup(m, key, &v, err);
	free(v);
	return rc;
}

static int test_map_setup(void **st)
{
	assert_non_null(mkdtemp(test_map_dir));
	return 0;
}

static int test_map_teardown(void **st)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_map_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- static, lists, specs ------------------------------------------------ */

static void test_static(void **st)
{
	struct map *m = test_map_open("static:5000");

	test_map_expect(m, "anything", "5000");
	test_map_expect(m, "", "5000");
	map_free(m);
	m = test_map_open("static:{ a value, with commas }");
	test_map_expect(m, "x", "a value, with commas");
	map_free(m);
}

static void test_empty_spec(void **st)
{
	struct map *m = test_map_open("");

	assert_true(map_is_empty(m));
	assert_int_equal(map_in_memory(m), 1);
	assert_int_equal(map_in_memory(NULL), 1);
	test_map_expect(m, "x", NULL);
	map_free(m);
	m = map_open(NULL, NULL);
	assert_non_null(m);
	test_map_expect(m, "x", NULL);
	map_free(m);
	map_free(NULL);
}

static void test_bad_specs(void **st)
{
	struct err err;

	err_clear(&err);
	assert_null(map_open("hash:/etc/aliases", &err));
	assert_non_null(strstr(err.msg, "unsupported map type \"hash\""));
	assert_null(map_open("nocolon", &err));
	assert_non_null(strstr(err.msg, "type:name"));
	assert_null(map_open("static:{unbalanced", &err));
	assert_null(map_open("texthash:relative/path", &err));
	assert_null(map_open("texthash:/nonexistent/test_map/file", &err));
	assert_non_null(strstr(err.msg, "/nonexistent/test_map/file"));
}

/* Postfix's "proxy:" prefix (proxymap(8)) names the same table, as
 * Postfix Admin's POSTFIX_CONF.txt writes virtual_alias_maps. */
static void test_proxy_prefix(void **st)
{
	struct err err;
	struct map *m;

	test_map_write("proxied", "alice@x.test alice@x.test\n");
	m = test_map_open("proxy:texthash:%s, proxy:static:fallback",
	                  test_map_path("proxied"));
	test_map_expect(m, "Alice@X.test", "alice@x.test");
	test_map_expect(m, "other@x.test", "fallback");
	assert_int_equal(strncmp(map_spec(m), "proxy:texthash:", 15), 0);
	map_free(m);
	err_clear(&err);
	assert_null(map_open("proxy:", &err));
	assert_null(map_open("proxy:nocolon", &err));
	assert_non_null(strstr(err.msg, "type:name"));
	assert_null(map_open("proxy:hash:/etc/aliases", &err));
	assert_non_null(strstr(err.msg, "unsupported map type \"hash\""));
	assert_null(map_open("proxy:proxy:static:x", &err));
}

/* ---- texthash ------------------------------------------------------------ */

static void test_texthash_syntax(void **st)
{
	struct map *m;

	test_map_write("syntax",
	               "# a comment\n"
	               "\n"
	               "Alice@Example.TEST   example.test/alice/\n"
	               "list@example.test    a@example.test,\n"
	               "    b@example.test,\n"
	               "\t# an indented comment is skipped\n"
	               "\tc@example.test   \n"
	               "@catch.test\tcatchall@example.test\n"
	               "spaced  value with  inner   spaces  \r\n");
	m = test_map_open("texthash:%s", test_map_path("syntax"));
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	test_map_expect(m, "ALICE@EXAMPLE.TEST", "example.test/alice/");
	test_map_expect(m, "list@example.test",
	                "a@example.test, b@example.test, c@example.test");
	test_map_expect(m, "@catch.test", "catchall@example.test");
	test_map_expect(m, "spaced", "value with  inner   spaces");
	test_map_expect(m, "#", NULL);
	test_map_expect(m, "a@example.test", NULL);
	test_map_expect(m, "alice", NULL);
	map_free(m);
}

static void test_texthash_errors(void **st)
{
	char spec[300];
	struct err err;

	snprintf(spec, sizeof(spec), "texthash:%s", test_map_path("bad"));
	test_map_write("bad", "a 1\n# c\nb 2\nlonely\n");
	err_clear(&err);
	assert_null(map_open(spec, &err));
	assert_non_null(strstr(err.msg, test_map_path("bad")));
	assert_non_null(strstr(err.msg, "line 4"));

	test_map_write("bad", "  starts with white space\n");
	assert_null(map_open(spec, &err));
	assert_non_null(strstr(err.msg, "line 1"));

	test_map_write("bad", "a 1\nb 2\n\nA 3\n");
	assert_null(map_open(spec, &err));
	assert_non_null(strstr(err.msg, "line 4"));
	assert_non_null(strstr(err.msg, "duplicate"));
}

static void test_texthash_reload(void **st)
{
	struct err err;
	struct map *m;

	test_map_write("reload", "bob@example.test old\n");
	m = test_map_open("texthash:%s", test_map_path("reload"));
	test_map_expect(m, "bob@example.test", "old");
	test_map_write("reload", "bob@example.test new\ncarol@example.test c\n");
	sleep(2);    /* the file is looked at no more than once a second */
	test_map_expect(m, "bob@example.test", "new");
	test_map_expect(m, "carol@example.test", "c");

	/* A broken edit makes lookups fail temporarily, naming the line... */
	test_map_write("reload", "ok 1\nbroken\n");
	sleep(2);
	assert_int_equal(test_map_rc(m, "ok", &err), MAP_TEMPFAIL);
	assert_int_equal(err.temp, 1);
	assert_non_null(strstr(err.msg, "line 2"));
	/* ...until it is fixed. */
	test_map_write("reload", "ok 1\n");
	sleep(2);
	test_map_expect(m, "ok", "1");
	test_map_expect(m, "bob@example.test", NULL);
	map_free(m);
}

/* SIGHUP: map_reload() reads a texthash file at once (no wait for the
 * once-a-second check), and map_reload_all() reaches every open map. */
static void test_texthash_reload_now(void **st)
{
	struct err err;
	struct map *m, *other;
	unsigned n;

	test_map_write("now", "k v1\n");
	m = test_map_open("texthash:%s", test_map_path("now"));
	other = test_map_open("static:x");
	test_map_expect(m, "k", "v1");
	test_map_write("now", "k v2-longer\n");
	assert_int_equal(map_reload(m, &err), 0);
	test_map_expect(m, "k", "v2-longer");
	test_map_write("now", "k v3-longer-still\n");
	assert_int_equal(map_reload_all(&n, &err), 0);
	assert_true(n >= 2);
	test_map_expect(m, "k", "v3-longer-still");
	/* a broken file: reload says so */
	test_map_write("now", "broken\n");
	assert_int_equal(map_reload(m, &err), -1);
	assert_non_null(strstr(err.msg, "line 1"));
	map_free(other);
	map_free(m);
}

static void test_list_order(void **st)
{
	struct err err;
	struct map *m;

	test_map_write("first", "a@x.test from-first\n");
	test_map_write("second", "a@x.test from-second\nb@x.test b2\n");
	m = test_map_open("texthash:%s, texthash:%s static:fallback",
	                  test_map_path("first"), test_map_path("second"));
	test_map_expect(m, "a@x.test", "from-first");
	test_map_expect(m, "b@x.test", "b2");
	test_map_expect(m, "c@x.test", "fallback");
	assert_false(map_is_empty(m));
	map_free(m);

	/* A TEMPFAIL in an earlier table ends the search (no fallback). */
	test_map_write("flaky", "k v\n");
	m = test_map_open("texthash:%s static:fallback", test_map_path("flaky"));
	test_map_write("flaky", "k\n");
	sleep(2);
	assert_int_equal(test_map_rc(m, "zzz", &err), MAP_TEMPFAIL);
	map_free(m);
}

/* ---- mysql ---------------------------------------------------------------- */

static const char *test_map_env(const char *name)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0')
		fail_msg("%s is not set: run under tests/harness/servers.py "
		         "(make unit)", name);
	return v;
}

static MYSQL *test_map_db(void)
{
	MYSQL *db = mysql_init(NULL);

	assert_non_null(db);
	if (mysql_real_connect(db, NULL, test_map_env("TEST_MYSQL_USER"),
	                       test_map_env("TEST_MYSQL_PASSWORD"),
	                       test_map_env("TEST_MYSQL_DB"), 0,
	                       test_map_env("TEST_MYSQL_SOCKET"), 0) == NULL)
		fail_msg("connect: %s", mysql_error(db));
	return db;
}

static void test_map_sql(MYSQL *db, const char *q)
{
	if (mysql_query(db, q) != 0)
		fail_msg("%s: %s", q, mysql_error(db));
}

/* A .cf file named name whose hosts line is hosts. */
static char *test_map_cf(const char *name, const char *hosts, const char *extra)
{
	char text[2048];

	snprintf(text, sizeof(text),
	         "# test map\n"
	         "hosts = %s\n"
	         "user = %s\npassword = %s\ndbname = %s\n%s\n",
	         hosts, test_map_env("TEST_MYSQL_USER"),
	         test_map_env("TEST_MYSQL_PASSWORD"),
	         test_map_env("TEST_MYSQL_DB"), extra);
	test_map_write(name, text);
	return test_map_path(name);
}

static char *test_map_unix_hosts(void)
{
	static char h[300];

	snprintf(h, sizeof(h), "unix:%s", test_map_env("TEST_MYSQL_SOCKET"));
	return h;
}

static int test_mysql_setup(void **st)
{
	MYSQL *db = test_map_db();

	test_map_sql(db, "DROP TABLE IF EXISTS test_map_kv");
	test_map_sql(db, "CREATE TABLE test_map_kv (k varchar(255), lp varchar(255),"
	             " dom varchar(255), v varchar(255))");
	test_map_sql(db, "INSERT INTO test_map_kv VALUES "
	             "('alice@example.test','alice','example.test','example.test/alice/'),"
	             "('multi@example.test','multi','example.test','one@example.test'),"
	             "('multi@example.test','multi','example.test','two@example.test'),"
	             "('plain','plain','','plain-value'),"
	             "('empty@example.test','empty','example.test',NULL)");
	mysql_close(db);
	return 0;
}

static void test_mysql_basic(void **st)
{
	struct map *m;

	test_mysql_setup(st);
	m = test_map_open("mysql:%s", test_map_cf("basic.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'"));
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	test_map_expect(m, "ALICE@Example.Test", "example.test/alice/");
	test_map_expect(m, "nobody@example.test", NULL);
	test_map_expect(m, "multi@example.test", "one@example.test, two@example.test");
	test_map_expect(m, "empty@example.test", NULL);
	test_map_expect(m, "plain", "plain-value");
	/* RFC-irrelevant but SQL-relevant: the key is data, never SQL. */
	test_map_expect(m, "x' OR '1'='1", NULL);
	test_map_expect(m, "x\\' OR 1=1 -- ", NULL);
	test_map_expect(m, "alice@example.test' OR '1'='1", NULL);
	map_free(m);
}

/* SIGHUP: a mysql table reads its .cf again (a new query here); a .cf
 * that no longer parses keeps the old definition. */
static void test_mysql_reload(void **st)
{
	struct err err;
	struct map *m;
	char *cf;

	test_mysql_setup(st);
	cf = test_map_cf("reload.cf", test_map_unix_hosts(),
	                 "query = SELECT v FROM test_map_kv WHERE k='%s'");
	m = test_map_open("mysql:%s", cf);
	test_map_expect(m, "plain", "plain-value");
	test_map_cf("reload.cf", test_map_unix_hosts(),
	            "query = SELECT lp FROM test_map_kv WHERE k='%s'");
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	assert_int_equal(map_reload(m, &err), 0);
	test_map_expect(m, "alice@example.test", "alice");
	test_map_write("reload.cf", "hosts = x\n");   /* no query */
	assert_int_equal(map_reload(m, &err), -1);
	assert_non_null(strstr(err.msg, "query"));
	test_map_expect(m, "alice@example.test", "alice");
	map_free(m);
}

static void test_mysql_expansions(void **st)
{
	struct map *m;

	test_mysql_setup(st);
	m = test_map_open("mysql:%s", test_map_cf("ud.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE lp='%u' AND dom='%d'"));
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	test_map_expect(m, "alice", NULL);        /* no domain: %d suppresses */
	test_map_expect(m, "@example.test", NULL); /* empty local part */
	test_map_expect(m, "x' OR '1'='1@example.test", NULL);
	map_free(m);

	/* %1 is the top-level label, %2 the next; result_format reshapes. */
	m = test_map_open("mysql:%s", test_map_cf("fmt.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE lp='%u' AND "
	                  "dom=CONCAT('%2', '.', '%1')\n"
	                  "result_format = <%u> at <%d> for %S, 100%%"));
	test_map_expect(m, "multi@example.test",
	                "<one> at <example.test> for multi@example.test, 100%, "
	                "<two> at <example.test> for multi@example.test, 100%");
	test_map_expect(m, "alice@test", NULL);   /* only one label: %2 suppresses */
	map_free(m);

	/* domain: only keys of listed domains reach the database. */
	m = test_map_open("mysql:%s", test_map_cf("dom.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'\n"
	                  "domain = other.test, example.test"));
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	test_map_expect(m, "plain", NULL);
	map_free(m);
	m = test_map_open("mysql:%s", test_map_cf("dom2.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'\n"
	                  "domain = other.test"));
	test_map_expect(m, "alice@example.test", NULL);
	map_free(m);
}

/* mysql_table(5) TLS fields: parsed, refused when malformed, and a
 * table that asks for TLS never falls back to cleartext (the harness's
 * server offers no TLS; tests/it/test_postfixadmin.py has one that does). */
static void test_mysql_tls_fields(void **st)
{
	char spec[300];
	struct err err;
	struct map *m;

	test_mysql_setup(st);
	m = test_map_open("mysql:%s", test_map_cf("tls.cf", "127.0.0.1:1",
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'\n"
	                  "tls_cert_file = /nonexistent/cert.pem\n"
	                  "tls_key_file = /nonexistent/key.pem\n"
	                  "tls_CAfile = /nonexistent/ca.pem\n"
	                  "tls_CApath = /nonexistent\n"
	                  "tls_verify_cert = yes\n"
	                  "tls_ciphers = HIGH:!aNULL"));
	map_free(m);
	/* no TLS on this server: TEMPFAIL, not a cleartext answer */
	m = test_map_open("mysql:%s", test_map_cf("tls2.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'\n"
	                  "tls_ciphers = HIGH:!aNULL"));
	assert_int_equal(test_map_rc(m, "alice@example.test", &err), MAP_TEMPFAIL);
	assert_int_equal(err.temp, 1);
	map_free(m);
	/* the same table without the field answers */
	m = test_map_open("mysql:%s", test_map_cf("tls3.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'\n"
	                  "tls_verify_cert = no"));
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	map_free(m);
	test_map_cf("tls4.cf", "localhost", "query = x\ntls_verify_cert = maybe");
	snprintf(spec, sizeof(spec), "mysql:%s", test_map_path("tls4.cf"));
	err_clear(&err);
	assert_null(map_open(spec, &err));
	assert_non_null(strstr(err.msg, "bad boolean"));
	assert_non_null(strstr(err.msg, "line 7"));
}

static void test_mysql_limits_and_errors(void **st)
{
	struct err err;
	struct map *m;

	test_mysql_setup(st);
	m = test_map_open("mysql:%s", test_map_cf("lim.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'\n"
	                  "expansion_limit = 1"));
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	assert_int_equal(test_map_rc(m, "multi@example.test", &err), MAP_TEMPFAIL);
	assert_non_null(strstr(err.msg, "expansion_limit"));
	map_free(m);

	/* A bad query is a temporary failure, with the server's reason. */
	m = test_map_open("mysql:%s", test_map_cf("badq.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM no_such_table WHERE k='%s'"));
	assert_int_equal(test_map_rc(m, "a@b.test", &err), MAP_TEMPFAIL);
	assert_int_equal(err.temp, 1);
	assert_non_null(strstr(err.msg, "no_such_table"));
	map_free(m);

	err_clear(&err);
	assert_null(map_open(test_map_cf("noq.cf", "localhost", ""), &err));
	assert_null(map_open("mysql:/nonexistent/x.cf", &err));
	test_map_cf("bad.cf", "localhost", "query = SELECT '%x'");
	assert_null(map_open("mysql:/nonexistent/x.cf", &err));
	{
		char spec[300];

		snprintf(spec, sizeof(spec), "mysql:%s", test_map_path("bad.cf"));
		assert_null(map_open(spec, &err));
		assert_non_null(strstr(err.msg, "%x"));
		test_map_cf("bad.cf", "localhost", "query = x\nselect_field = y");
		assert_null(map_open(spec, &err));
		assert_non_null(strstr(err.msg, "line 7"));
		test_map_cf("bad.cf", "127.0.0.1:99999", "query = x");
		assert_null(map_open(spec, &err));
		assert_non_null(strstr(err.msg, "port"));
	}
}

static void test_mysql_failover(void **st)
{
	char hosts[600];
	struct err err;
	struct map *m;

	test_mysql_setup(st);
	/* A closed port and a missing socket come first: the lookup goes on
	 * to the live server. */
	snprintf(hosts, sizeof(hosts), "inet:127.0.0.1:1, unix:%s/nosuch.sock "
	         "127.0.0.1:%s", test_map_dir, test_map_env("TEST_MYSQL_PORT"));
	m = test_map_open("mysql:%s", test_map_cf("fo.cf", hosts,
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'"));
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	test_map_expect(m, "plain", "plain-value");
	map_free(m);

	/* Only dead hosts: a temporary failure, never "not found". */
	m = test_map_open("mysql:%s", test_map_cf("dead.cf", "127.0.0.1:1",
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'"));
	assert_int_equal(test_map_rc(m, "alice@example.test", &err), MAP_TEMPFAIL);
	assert_int_equal(err.temp, 1);
	assert_non_null(strstr(err.msg, "127.0.0.1:1"));
	/* ...and the dead host is not retried at once (retry_interval). */
	assert_int_equal(test_map_rc(m, "alice@example.test", &err), MAP_TEMPFAIL);
	assert_non_null(strstr(err.msg, "no usable host"));
	map_free(m);
}

/* The server drops the map's idle connection: the next lookup reconnects
 * once and succeeds. */
static void test_mysql_reconnect(void **st)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	char q[100];
	struct map *m;
	MYSQL *db;
	int killed = 0;

	test_mysql_setup(st);
	m = test_map_open("mysql:%s", test_map_cf("rc.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'"));
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	db = test_map_db();
	test_map_sql(db, "SELECT id FROM information_schema.processlist WHERE "
	             "id <> CONNECTION_ID() AND db = DATABASE() AND "
	             "user = SUBSTRING_INDEX(USER(), '@', 1)");
	res = mysql_store_result(db);
	assert_non_null(res);
	while ((row = mysql_fetch_row(res)) != NULL) {
		snprintf(q, sizeof(q), "KILL %s", row[0]);
		if (mysql_query(db, q) == 0)
			killed++;
	}
	mysql_free_result(res);
	mysql_close(db);
	assert_true(killed >= 1);
	test_map_expect(m, "alice@example.test", "example.test/alice/");
	test_map_expect(m, "plain", "plain-value");
	map_free(m);
}

struct test_map_thread {
	struct map *m;
	int ok;
};

static void *test_map_worker(void *arg)
{
	struct test_map_thread *t = arg;
	struct err err;
	char *v;
	int i;

	for (i = 0; i < 200; i++) {
		v = NULL;
		if (map_lookup(t->m, i % 2 ? "alice@example.test" : "plain", &v,
		               &err) == MAP_FOUND &&
		    strcmp(v, i % 2 ? "example.test/alice/" : "plain-value") == 0)
			t->ok++;
		free(v);
	}
	return NULL;
}

static void test_mysql_threads(void **st)
{
	struct test_map_thread t[8];
	pthread_t tid[8];
	struct map *m;
	int i;

	test_mysql_setup(st);
	m = test_map_open("mysql:%s", test_map_cf("thr.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'"));
	for (i = 0; i < 8; i++) {
		t[i].m = m;
		t[i].ok = 0;
		assert_int_equal(pthread_create(&tid[i], NULL, test_map_worker, &t[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(t[i].ok, 200);
	}
	map_free(m);
}

static void test_mysql_and_texthash(void **st)
{
	struct map *m;

	test_mysql_setup(st);
	test_map_write("front", "alice@example.test overridden\n");
	m = test_map_open("texthash:%s, mysql:%s", test_map_path("front"),
	                  test_map_cf("mix.cf", test_map_unix_hosts(),
	                  "query = SELECT v FROM test_map_kv WHERE k='%s'"));
	test_map_expect(m, "alice@example.test", "overridden");
	test_map_expect(m, "plain", "plain-value");
	/* one server-backed table is enough to keep lookups off the loop */
	assert_int_equal(map_in_memory(m), 0);
	map_free(m);
	m = test_map_open("texthash:%s, static:x", test_map_path("front"));
	assert_int_equal(map_in_memory(m), 1);
	map_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_static),
		cmocka_unit_test(test_empty_spec),
		cmocka_unit_test(test_bad_specs),
		cmocka_unit_test(test_proxy_prefix),
		cmocka_unit_test(test_texthash_syntax),
		cmocka_unit_test(test_texthash_errors),
		cmocka_unit_test(test_texthash_reload),
		cmocka_unit_test(test_texthash_reload_now),
		cmocka_unit_test(test_list_order),
		cmocka_unit_test(test_mysql_basic),
		cmocka_unit_test(test_mysql_reload),
		cmocka_unit_test(test_mysql_expansions),
		cmocka_unit_test(test_mysql_limits_and_errors),
		cmocka_unit_test(test_mysql_tls_fields),
		cmocka_unit_test(test_mysql_failover),
		cmocka_unit_test(test_mysql_reconnect),
		cmocka_unit_test(test_mysql_threads),
		cmocka_unit_test(test_mysql_and_texthash),
	};

	return cmocka_run_group_tests(tests, test_map_setup, test_map_teardown);
}
