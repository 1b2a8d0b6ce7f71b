/* Unit tests for shared/cfg.c (main.cf syntax, typed tables, expansion,
 * lists, the raw pair reader, daemon start-up) and shared/params.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>
#include "cfg.h"
#include "params.h"

static char *t_name, *t_domain, *t_list, *t_greeting;
static long t_timeout, t_limit, t_any;
static int t_flag;

static const struct cfg_param t_tab1[] = {
	{ "test_name", CFG_STR, "mx.$test_domain", &t_name, 0, 0 },
	{ "test_domain", CFG_STR, "example.org", &t_domain, 0, 0 },
	{ "test_list", CFG_STR, "$test_name, localhost.${test_domain}", &t_list, 0, 0 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};
static const struct cfg_param t_tab2[] = {
	{ "smtpd_timeout", CFG_TIME, "300s", &t_timeout, 1, 3600 },
	{ "test_limit", CFG_INT, "1000", &t_limit, 1, 0 },
	{ "test_any", CFG_INT, "-5", &t_any, 0, 0 },
	{ "test_flag", CFG_BOOL, "no", &t_flag, 0, 0 },
	{ "test_greeting", CFG_STR, "$test_name ESMTP", &t_greeting, 0, 0 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};
static const struct cfg_param *const t_tabs[] = { t_tab1, t_tab2, NULL };

static int t_load(const char *text, struct err *err)
{
	err_clear(err);
	return cfg_load_text(t_tabs, text, strlen(text), "t.cf", err);
}

static int t_teardown(void **st)
{
	cfg_free(t_tabs);
	return 0;
}

static void test_defaults(void **st)
{
	struct err err;

	assert_int_equal(cfg_load(t_tabs, NULL, &err), 0);
	assert_string_equal(t_name, "mx.example.org");
	assert_string_equal(t_domain, "example.org");
	assert_string_equal(t_list, "mx.example.org, localhost.example.org");
	assert_string_equal(t_greeting, "mx.example.org ESMTP");
	assert_int_equal(t_timeout, 300);
	assert_int_equal(t_limit, 1000);
	assert_int_equal(t_any, -5);
	assert_int_equal(t_flag, 0);
	assert_string_equal(cfg_get("test_list"), "mx.example.org, localhost.example.org");
	assert_null(cfg_get("no_such"));
}

static void test_file_values(void **st)
{
	struct err err;
	const char *text =
		"# a comment\n"
		"\n"
		"test_domain   =   demo.test   \n"
		"smtpd_timeout = 5m\n"
		"test_flag=yes\n"
		"   # indented comment\n"
		"test_limit = 42\r\n"
		"test_greeting = $test_name\n"
		"   says\n"
		"# comment inside a continued value\n"
		"\thello\n"
		"test_any = 7\n"
		"test_any = +8\n";

	assert_int_equal(t_load(text, &err), 0);
	assert_string_equal(t_domain, "demo.test");
	assert_string_equal(t_name, "mx.demo.test");     /* default follows the file */
	assert_int_equal(t_timeout, 300);
	assert_int_equal(t_flag, 1);
	assert_int_equal(t_limit, 42);
	assert_string_equal(t_greeting, "mx.demo.test says hello");
	assert_int_equal(t_any, 8);                      /* last one wins */
}

static void test_expansion_forms(void **st)
{
	struct err err;

	assert_int_equal(t_load("test_greeting = a${test_domain}b$(test_domain)c $test_domain.x\n", &err), 0);
	assert_string_equal(t_greeting, "aexample.orgbexample.orgc example.org.x");
	assert_int_equal(t_load("test_greeting = cost $$5 ${test_domain?set} ${test_domain:unset}\n", &err), 0);
	assert_string_equal(t_greeting, "cost $5 set ");
	assert_int_equal(t_load("test_domain =\ntest_greeting = [${test_domain?x$test_name}${test_domain:none}]\n", &err), 0);
	assert_string_equal(t_greeting, "[none]");
	assert_string_equal(t_name, "mx.");
	assert_int_equal(t_load("test_greeting = ${test_name?<$test_domain>}\n", &err), 0);
	assert_string_equal(t_greeting, "<example.org>");
	/* Expansion applies to typed values too. */
	assert_int_equal(t_load("test_greeting = 12\ntest_limit = $test_greeting\n", &err), 0);
	assert_int_equal(t_limit, 12);
}

static void test_expansion_errors(void **st)
{
	struct err err;

	assert_int_equal(t_load("test_name = $test_greeting\n", &err), -1);
	assert_non_null(strstr(err.msg, "expansion loop"));
	assert_int_equal(t_load("test_name = $test_name\n", &err), -1);
	assert_non_null(strstr(err.msg, "t.cf, line 1: expansion loop"));
	assert_int_equal(t_load("test_name = $nosuch\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: unknown parameter in expansion: $nosuch");
	assert_int_equal(t_load("\n\ntest_name = ${test_domain\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 3: bad ${...} in value");
	assert_int_equal(t_load("test_name = ${test_domain)\n", &err), -1);
	assert_int_equal(t_load("test_name = ${test_domain x}\n", &err), -1);
	assert_int_equal(t_load("test_name = a $ b\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: bad $ in value");
	assert_int_equal(t_load("test_name = a$\n", &err), -1);
}

static void test_unknown_parameter(void **st)
{
	struct err err;

	assert_int_equal(t_load("test_name = a\n\n# c\nfoo = bar\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 4: unknown parameter \"foo\"");
}

static void test_bad_values(void **st)
{
	struct err err;

	assert_int_equal(t_load("smtpd_timeout = x\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: bad value \"x\" for smtpd_timeout: expected a time like 300s");
	assert_int_equal(t_load("smtpd_timeout = 2h\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: bad value \"2h\" for smtpd_timeout: expected a time between 1s and 3600s");
	assert_int_equal(t_load("smtpd_timeout = 0\n", &err), -1);
	assert_int_equal(t_load("smtpd_timeout = 10x\n", &err), -1);
	assert_int_equal(t_load("smtpd_timeout = 10ss\n", &err), -1);
	assert_int_equal(t_load("smtpd_timeout = -5s\n", &err), -1);
	assert_int_equal(t_load("test_limit = 0\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: bad value \"0\" for test_limit: expected a number of at least 1");
	assert_int_equal(t_load("test_limit = 12abc\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: bad value \"12abc\" for test_limit: expected a number");
	assert_int_equal(t_load("test_limit = 99999999999999999999999\n", &err), -1);
	assert_int_equal(t_load("test_limit =\n", &err), -1);
	assert_int_equal(t_load("test_flag = maybe\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: bad value \"maybe\" for test_flag: expected yes or no");
}

static void test_syntax_errors(void **st)
{
	struct err err;
	static const char nul[] = "test_name = a\0b\n";

	assert_int_equal(t_load("test_name\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: syntax error: expected \"name = value\"");
	assert_int_equal(t_load("= value\n", &err), -1);
	assert_int_equal(t_load("test name = x\n", &err), -1);
	assert_int_equal(t_load("  test_name = x\n", &err), -1);
	assert_string_equal(err.msg, "t.cf, line 1: continuation line without a parameter before it");
	assert_int_equal(cfg_load_text(t_tabs, nul, sizeof(nul) - 1, "t.cf", &err), -1);
	assert_string_equal(err.msg, "t.cf: NUL byte in file");
}

/* A failed load changes nothing; a good one replaces (and frees) the old
 * strings. */
static void test_failed_load_keeps_values(void **st)
{
	struct err err;

	assert_int_equal(t_load("test_domain = one.test\ntest_limit = 5\n", &err), 0);
	assert_string_equal(t_domain, "one.test");
	assert_int_equal(t_load("test_domain = two.test\ntest_limit = 0\n", &err), -1);
	assert_string_equal(t_domain, "one.test");
	assert_int_equal(t_limit, 5);
	assert_int_equal(t_load("test_domain = three.test\n", &err), 0);
	assert_string_equal(t_domain, "three.test");
	assert_int_equal(t_limit, 1000);
	assert_string_equal(cfg_get("test_domain"), "three.test");
}

static void test_print_nondefault(void **st)
{
	struct err err;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	assert_int_equal(t_load("test_name = $test_domain\ntest_flag = yes\ntest_domain = a.test\n"
				"test_greeting = one\n two\n", &err), 0);
	f = open_memstream(&out, &len);
	assert_non_null(f);
	cfg_print_nondefault(t_tabs, f);
	fclose(f);
	assert_string_equal(out, "test_domain = a.test\ntest_flag = yes\n"
			    "test_greeting = one two\ntest_name = $test_domain\n");
	free(out);
}

static void test_parse_helpers(void **st)
{
	long v;
	int b;

	assert_int_equal(cfg_parse_time("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cfg_parse_time("90", &v), 0);
	assert_int_equal(v, 90);
	assert_int_equal(cfg_parse_time("90s", &v), 0);
	assert_int_equal(v, 90);
	assert_int_equal(cfg_parse_time("2m", &v), 0);
	assert_int_equal(v, 120);
	assert_int_equal(cfg_parse_time("3h", &v), 0);
	assert_int_equal(v, 10800);
	assert_int_equal(cfg_parse_time("5d", &v), 0);
	assert_int_equal(v, 432000);
	assert_int_equal(cfg_parse_time("1w", &v), 0);
	assert_int_equal(v, 604800);
	assert_int_equal(cfg_parse_time("", &v), -1);
	assert_int_equal(cfg_parse_time("s", &v), -1);
	assert_int_equal(cfg_parse_time("1H", &v), -1);
	assert_int_equal(cfg_parse_time(" 1", &v), -1);
	assert_int_equal(cfg_parse_time("99999999999999999w", &v), -1);
	assert_int_equal(cfg_parse_int("-12", &v), 0);
	assert_int_equal(v, -12);
	assert_int_equal(cfg_parse_int("9223372036854775807", &v), 0);
	assert_int_equal(cfg_parse_int("9223372036854775808", &v), -1);
	assert_int_equal(cfg_parse_int("-", &v), -1);
	assert_int_equal(cfg_parse_int("0x10", &v), -1);
	assert_int_equal(cfg_parse_int("1 ", &v), -1);
	assert_int_equal(cfg_parse_bool("YES", &b), 0);
	assert_int_equal(b, 1);
	assert_int_equal(cfg_parse_bool("true", &b), 0);
	assert_int_equal(b, 1);
	assert_int_equal(cfg_parse_bool("1", &b), 0);
	assert_int_equal(b, 1);
	assert_int_equal(cfg_parse_bool("No", &b), 0);
	assert_int_equal(b, 0);
	assert_int_equal(cfg_parse_bool("false", &b), 0);
	assert_int_equal(b, 0);
	assert_int_equal(cfg_parse_bool("0", &b), 0);
	assert_int_equal(b, 0);
	assert_int_equal(cfg_parse_bool("on", &b), -1);
	assert_int_equal(cfg_parse_bool("", &b), -1);
}

static void test_lists(void **st)
{
	char **v = cfg_list_split("a, b  c,,\td ,");

	assert_non_null(v);
	assert_string_equal(v[0], "a");
	assert_string_equal(v[1], "b");
	assert_string_equal(v[2], "c");
	assert_string_equal(v[3], "d");
	assert_null(v[4]);
	cfg_list_free(v);
	v = cfg_list_split(" , ");
	assert_non_null(v);
	assert_null(v[0]);
	cfg_list_free(v);
	cfg_list_free(NULL);
	assert_int_equal(cfg_list_contains("PLAIN, LOGIN cram-md5", "login"), 1);
	assert_int_equal(cfg_list_contains("PLAIN, LOGIN cram-md5", "CRAM-MD5"), 1);
	assert_int_equal(cfg_list_contains("PLAIN, LOGIN cram-md5", "LOG"), 0);
	assert_int_equal(cfg_list_contains("PLAIN, LOGIN cram-md5", "LOGINX"), 0);
	assert_int_equal(cfg_list_contains("", "a"), 0);
	assert_int_equal(cfg_list_contains("a", ""), 0);
	assert_int_equal(cfg_list_contains(NULL, "a"), 0);
}

struct t_pairs {
	char seen[512];
	int stop_at;
};

static int t_pair(void *arg, const char *name, const char *value, const char *file,
		  int line, struct err *err)
{
	struct t_pairs *p = arg;
	size_t l = strlen(p->seen);

	snprintf(p->seen + l, sizeof(p->seen) - l, "%s:%d:%s=[%s];", file, line, name, value);
	if (line == p->stop_at)
		return err_set(err, 0, "%s, line %d: stop", file, line);
	return 0;
}

static void test_read_pairs(void **st)
{
	char path[] = "/tmp/test_cfg_XXXXXX";
	const char *text = "# Postfix Admin style\nhosts = 127.0.0.1 db2\nuser = mail\npassword = p$ss word\n"
			   "query = SELECT goto FROM alias\n  WHERE address='%s' AND active = '1'\n";
	struct t_pairs p = { "", 0 };
	struct err err;
	char want[512];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(cfg_read_pairs(path, t_pair, &p, &err), 0);
	snprintf(want, sizeof(want),
		 "%s:2:hosts=[127.0.0.1 db2];%s:3:user=[mail];%s:4:password=[p$ss word];"
		 "%s:5:query=[SELECT goto FROM alias WHERE address='%%s' AND active = '1'];",
		 path, path, path, path);
	/* No $ expansion, continuation joined, values trimmed. */
	assert_string_equal(p.seen, want);
	/* The callback's error stops the reading. */
	p.stop_at = 3;
	p.seen[0] = '\0';
	assert_int_equal(cfg_read_pairs(path, t_pair, &p, &err), -1);
	assert_non_null(strstr(err.msg, ", line 3: stop"));
	assert_null(strstr(p.seen, "password"));
	unlink(path);
	assert_int_equal(cfg_read_pairs(path, t_pair, &p, &err), -1);
	assert_non_null(strstr(err.msg, "No such file"));
}

static void test_missing_file(void **st)
{
	struct err err;

	assert_int_equal(cfg_load(t_tabs, "/nonexistent/dir/x.cf", &err), -1);
	assert_string_equal(err.msg, "open /nonexistent/dir/x.cf: No such file or directory");
}

/* Runs cfg_daemon_init in a child; returns its exit status and output. */
static int t_daemon(const char *dir, const char *opt, char *out, size_t n)
{
	int fds[2], status;
	pid_t pid;
	ssize_t r;
	size_t got = 0;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = { "testd", "-c", (char *)dir, (char *)opt, NULL };

		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		cfg_daemon_init("testd", opt != NULL ? 4 : 3, argv, t_tabs, "usage: testd [-c dir]\n");
		printf("returned\n");
		exit(3);
	}
	close(fds[1]);
	while (got + 1 < n && (r = read(fds[0], out + got, n - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_daemon_init(void **st)
{
	char dir[] = "/tmp/test_cfg_dXXXXXX", path[256], out[1024];
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/testd.cf", dir);
	assert_int_equal(t_daemon(dir, NULL, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "testd: fatal: open "));
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("test_flag = yes\ntest_domain = d.test\n", f);
	fclose(f);
	assert_int_equal(t_daemon(dir, "-n", out, sizeof(out)), 0);
	assert_string_equal(out, "test_domain = d.test\ntest_flag = yes\n");
	assert_int_equal(t_daemon(dir, "-h", out, sizeof(out)), 0);
	assert_string_equal(out, "usage: testd [-c dir]\n");
	assert_int_equal(t_daemon(dir, NULL, out, sizeof(out)), 3);
	assert_string_equal(out, "returned\n");
	assert_int_equal(t_daemon(dir, "-x", out, sizeof(out)), 1);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("test_flag = yes\nbogus = 1\n", f);
	fclose(f);
	assert_int_equal(t_daemon(dir, NULL, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "testd: fatal: "));
	assert_non_null(strstr(out, "testd.cf, line 2: unknown parameter \"bogus\""));
	unlink(path);
	rmdir(dir);
}

/* params: computed defaults and the common table with another one. */
static void test_params(void **st)
{
	static const struct cfg_param *const tabs[] = { params_common, NULL };
	struct err err;
	const char *dot;
	const char *text = "myhostname = mail.example.com\n";

	assert_int_equal(cfg_load(tabs, NULL, &err), 0);
	assert_non_null(var_myhostname);
	dot = strchr(var_myhostname, '.');
	assert_non_null(dot);
	assert_string_equal(var_mydomain, dot + 1);
	assert_string_equal(var_myorigin, var_myhostname);
	assert_string_equal(var_inet_interfaces, "all");
	assert_string_equal(var_mail_owner, "vmail");
	assert_int_equal(var_syslog_enable, 1);
	assert_int_equal(var_debug, 0);
	assert_string_equal(var_default_pass_scheme, "SHA512-CRYPT");

	assert_int_equal(cfg_load_text(tabs, text, strlen(text), "p.cf", &err), 0);
	assert_string_equal(var_myhostname, "mail.example.com");
	assert_string_equal(var_mydomain, "example.com");
	assert_string_equal(var_myorigin, "mail.example.com");

	text = "myhostname = mx.a.test\nmydomain = b.test\nmyorigin = $mydomain\ndebug = yes\nsyslog_enable = no\n";
	assert_int_equal(cfg_load_text(tabs, text, strlen(text), "p.cf", &err), 0);
	assert_string_equal(var_mydomain, "b.test");
	assert_string_equal(var_myorigin, "b.test");
	assert_int_equal(var_debug, 1);
	assert_int_equal(var_syslog_enable, 0);

	text = "myhostname = localhost\n";
	assert_int_equal(cfg_load_text(tabs, text, strlen(text), "p.cf", &err), 0);
	assert_string_equal(var_mydomain, "localdomain");
	cfg_free(tabs);
	assert_null(var_myhostname);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test_teardown(test_defaults, t_teardown),
		cmocka_unit_test_teardown(test_file_values, t_teardown),
		cmocka_unit_test_teardown(test_expansion_forms, t_teardown),
		cmocka_unit_test_teardown(test_expansion_errors, t_teardown),
		cmocka_unit_test_teardown(test_unknown_parameter, t_teardown),
		cmocka_unit_test_teardown(test_bad_values, t_teardown),
		cmocka_unit_test_teardown(test_syntax_errors, t_teardown),
		cmocka_unit_test_teardown(test_failed_load_keeps_values, t_teardown),
		cmocka_unit_test_teardown(test_print_nondefault, t_teardown),
		cmocka_unit_test(test_parse_helpers),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_read_pairs),
		cmocka_unit_test_teardown(test_missing_file, t_teardown),
		cmocka_unit_test_teardown(test_daemon_init, t_teardown),
		cmocka_unit_test(test_params),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
