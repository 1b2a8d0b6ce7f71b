/* test_passdb: password checks over texthash and over the Postfix Admin
 * mailbox table in the harness's MariaDB (TEST_MYSQL_*; missing -> fail). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql.h>

#include "pass.h"
#include "passdb.h"

static char test_passdb_dir[] = "/tmp/test_passdb.XXXXXX";
static char test_passdb_file[300];

static char *test_passdb_hash(const char *scheme, const char *pw)
{
	struct err err;
	char *h = pass_hash(scheme, pw, &err);

	if (h == NULL)
		fail_msg("pass_hash(%s): %s", scheme, err.msg);
	return h;
}

static int test_passdb_setup(void **st)
{
	char *h1 = test_passdb_hash("SHA512-CRYPT", "alice-secret");
	char *h2 = test_passdb_hash("SHA256-CRYPT", "bob pass");
	FILE *fp;

	if (mkdtemp(test_passdb_dir) == NULL)
		return -1;
	snprintf(test_passdb_file, sizeof(test_passdb_file), "%s/passwd",
	         test_passdb_dir);
	fp = fopen(test_passdb_file, "w");
	if (fp == NULL)
		return -1;
	fprintf(fp, "alice@example.test %s\n"
	        "Bob@Example.test %s\n"
	        "plain@example.test {PLAIN}clear-text\n"
	        "weird@example.test {NO-SUCH-SCHEME}abc\n",
	        h1, h2);
	free(h1);
	free(h2);
	return fclose(fp) == 0 ? 0 : -1;
}

static int test_passdb_teardown(void **st)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_passdb_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct passdb *test_passdb_open(const char *scheme)
{
	char spec[400];
	struct passdb *p;
	struct err err;

	snprintf(spec, sizeof(spec), "texthash:%s", test_passdb_file);
	p = passdb_new(spec, scheme, &err);
	if (p == NULL)
		fail_msg("passdb_new: %s", err.msg);
	return p;
}

static void test_texthash_verify(void **st)
{
	struct passdb *p = test_passdb_open(NULL);
	struct err err;

	assert_int_equal(passdb_verify(p, "alice@example.test", "alice-secret", &err),
	                 PASSDB_OK);
	assert_int_equal(passdb_verify(p, "alice@EXAMPLE.TEST", "alice-secret", &err),
	                 PASSDB_OK);
	assert_int_equal(passdb_verify(p, "alice@example.test", "alice-secreT", &err),
	                 PASSDB_FAIL);
	assert_string_equal(err.msg, "password mismatch");
	assert_int_equal(passdb_verify(p, "alice@example.test", "", &err), PASSDB_FAIL);
	assert_int_equal(passdb_verify(p, "alice@example.test", NULL, &err), PASSDB_FAIL);
	assert_int_equal(passdb_verify(p, "bob@example.test", "bob pass", &err),
	                 PASSDB_OK);
	assert_int_equal(passdb_verify(p, "plain@example.test", "clear-text", &err),
	                 PASSDB_OK);
	assert_int_equal(passdb_verify(p, "plain@example.test", "clear-tex", &err),
	                 PASSDB_FAIL);
	assert_int_equal(passdb_verify(p, "nobody@example.test", "alice-secret", &err),
	                 PASSDB_FAIL);
	assert_string_equal(err.msg, "unknown user");
	assert_int_equal(passdb_verify(p, "", "x", &err), PASSDB_FAIL);
	assert_int_equal(passdb_verify(p, NULL, "x", &err), PASSDB_FAIL);
	assert_int_equal(passdb_verify(p, "alice@example.test\r\nx", "alice-secret",
	                               &err), PASSDB_FAIL);
	/* A stored value nobody can check is the admin's problem: 4xx. */
	assert_int_equal(passdb_verify(p, "weird@example.test", "abc", &err),
	                 PASSDB_TEMPFAIL);
	assert_int_equal(err.temp, 1);
	passdb_free(p);
	passdb_free(NULL);
}

static void test_bad_config(void **st)
{
	struct err err;

	err_clear(&err);
	assert_null(passdb_new("texthash:/nonexistent/passwd", NULL, &err));
	assert_non_null(strstr(err.msg, "/nonexistent/passwd"));
	assert_null(passdb_new("", "NO-SUCH", &err));
	assert_non_null(strstr(err.msg, "NO-SUCH"));
}

static double test_passdb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Time of one check of user with a wrong password. */
static double test_passdb_time(struct passdb *p, const char *user)
{
	struct err err;
	double t0 = test_passdb_now();

	assert_int_equal(passdb_verify(p, user, "wrong password", &err), PASSDB_FAIL);
	return test_passdb_now() - t0;
}

/* An unknown user must cost a hash computation like a wrong password.
 * The fastest of many interleaved runs is compared: other load on the
 * machine only ever adds time. A skipped hash is some hundred times
 * faster, so a factor of 3 either way still catches it on a busy
 * machine (a factor of 2 failed there by a hair). */
static void test_unknown_user_timing(void **st)
{
	struct passdb *p = test_passdb_open("SHA512-CRYPT");
	double known = 1e9, unknown = 1e9, t;
	int i;

	for (i = 0; i < 40; i++) {
		t = test_passdb_time(p, "alice@example.test");
		known = t < known ? t : known;
		t = test_passdb_time(p, "nobody@example.test");
		unknown = t < unknown ? t : unknown;
	}
	if (unknown < known / 3 || unknown > known * 3)
		fail_msg("wrong password %.6fs vs unknown user %.6fs", known, unknown);
	passdb_free(p);
}

static const char *test_passdb_env(const char *name)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0')
		fail_msg("%s is not set: run under tests/harness/servers.py", name);
	return v;
}

/* Postfix Admin's mailbox table; inactive users cannot log in. */
static void test_mysql_postfixadmin(void **st)
{
	char q[1024], cf[400], spec[420];
	char *h = test_passdb_hash("SHA512-CRYPT", "db-secret");
	struct passdb *p;
	struct err err;
	MYSQL *db = mysql_init(NULL);
	FILE *fp;

	if (mysql_real_connect(db, NULL, test_passdb_env("TEST_MYSQL_USER"),
	                       test_passdb_env("TEST_MYSQL_PASSWORD"),
	                       test_passdb_env("TEST_MYSQL_DB"), 0,
	                       test_passdb_env("TEST_MYSQL_SOCKET"), 0) == NULL)
		fail_msg("connect: %s", mysql_error(db));
	assert_int_equal(mysql_query(db, "DELETE FROM mailbox WHERE domain = "
	                             "'passdb.test'"), 0);
	snprintf(q, sizeof(q), "INSERT INTO mailbox (username, password, name, "
	         "maildir, local_part, domain, active) VALUES "
	         "('on@passdb.test', '%s', 'On', 'passdb.test/on/', 'on', "
	         "'passdb.test', 1), ('off@passdb.test', '%s', 'Off', "
	         "'passdb.test/off/', 'off', 'passdb.test', 0)", h, h);
	if (mysql_query(db, q) != 0)
		fail_msg("%s", mysql_error(db));
	mysql_close(db);
	free(h);

	snprintf(cf, sizeof(cf), "%s/pw.cf", test_passdb_dir);
	fp = fopen(cf, "w");
	assert_non_null(fp);
	fprintf(fp, "hosts = inet:127.0.0.1:%s\nuser = %s\npassword = %s\n"
	        "dbname = %s\n"
	        "query = SELECT password FROM mailbox WHERE username='%%s' AND "
	        "active='1'\n", test_passdb_env("TEST_MYSQL_PORT"),
	        test_passdb_env("TEST_MYSQL_USER"),
	        test_passdb_env("TEST_MYSQL_PASSWORD"),
	        test_passdb_env("TEST_MYSQL_DB"));
	assert_int_equal(fclose(fp), 0);
	snprintf(spec, sizeof(spec), "mysql:%s", cf);
	p = passdb_new(spec, NULL, &err);
	if (p == NULL)
		fail_msg("%s", err.msg);
	assert_int_equal(passdb_verify(p, "on@passdb.test", "db-secret", &err),
	                 PASSDB_OK);
	assert_int_equal(passdb_verify(p, "ON@PassDB.test", "db-secret", &err),
	                 PASSDB_OK);
	assert_int_equal(passdb_verify(p, "on@passdb.test", "db-secreT", &err),
	                 PASSDB_FAIL);
	assert_int_equal(passdb_verify(p, "off@passdb.test", "db-secret", &err),
	                 PASSDB_FAIL);
	assert_int_equal(passdb_verify(p, "x' OR '1'='1", "db-secret", &err),
	                 PASSDB_FAIL);
	assert_int_equal(passdb_verify(p, "on@passdb.test' -- ", "db-secret", &err),
	                 PASSDB_FAIL);
	passdb_free(p);

	/* Database down: a temporary failure, not a wrong password. */
	fp = fopen(cf, "w");
	assert_non_null(fp);
	fprintf(fp, "hosts = 127.0.0.1:1\nquery = SELECT '%%s'\n");
	assert_int_equal(fclose(fp), 0);
	snprintf(spec, sizeof(spec), "mysql:%s", cf);
	p = passdb_new(spec, NULL, &err);
	assert_non_null(p);
	assert_int_equal(passdb_verify(p, "on@passdb.test", "db-secret", &err),
	                 PASSDB_TEMPFAIL);
	assert_int_equal(err.temp, 1);
	passdb_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_texthash_verify),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_unknown_user_timing),
		cmocka_unit_test(test_mysql_postfixadmin),
	};

	return cmocka_run_group_tests(tests, test_passdb_setup, test_passdb_teardown);
}
