/* test_vlookup: the virtual(5) search order and domain lists, over real
 * texthash and static maps in a temporary folder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlookup.h"

static char test_vlookup_dir[] = "/tmp/test_vlookup.XXXXXX";
static char test_vlookup_aliases[300], test_vlookup_domains[300],
            test_vlookup_list[300];
static struct map *test_vlookup_map;

static void test_vlookup_write(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static int test_vlookup_setup(void **st)
{
	char spec[400];
	struct err err;

	if (mkdtemp(test_vlookup_dir) == NULL)
		return -1;
	snprintf(test_vlookup_aliases, sizeof(test_vlookup_aliases), "%s/aliases",
	         test_vlookup_dir);
	snprintf(test_vlookup_domains, sizeof(test_vlookup_domains), "%s/domains",
	         test_vlookup_dir);
	snprintf(test_vlookup_list, sizeof(test_vlookup_list), "%s/list",
	         test_vlookup_dir);
	test_vlookup_write(test_vlookup_aliases,
	                   "alice+spam@example.test   spam@example.test\n"
	                   "alice@example.test        alice-box@example.test\n"
	                   "@example.test             catchall@example.test\n"
	                   "bob-x@dash.test           bobx@dash.test\n"
	                   "+lead@example.test        lead@example.test\n"
	                   "unqualified               local-target\n");
	test_vlookup_write(test_vlookup_domains,
	                   "example.test OK\nMixed.Test OK\n");
	test_vlookup_write(test_vlookup_list, "listed.test, also.test # comment\n"
	                   "# whole line\n  third.test\n");
	snprintf(spec, sizeof(spec), "texthash:%s", test_vlookup_aliases);
	test_vlookup_map = map_open(spec, &err);
	return test_vlookup_map != NULL ? 0 : -1;
}

static int test_vlookup_teardown(void **st)
{
	char cmd[300];

	map_free(test_vlookup_map);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_vlookup_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* want NULL: not found. want_step: the step that should hit. */
static void test_vlookup_expect(const char *addr, const char *delims, int flags,
                                const char *want, int want_step)
{
	struct err err;
	char *v = NULL;
	int step = 0;
	enum map_rc rc;

	err_clear(&err);
	rc = vlookup_addr(test_vlookup_map, addr, delims, flags, &v, &step, &err);
	if (want == NULL) {
		if (rc != MAP_NOTFOUND)
			fail_msg("%s: expected not found, got %d (%s)", addr, rc,
			         v != NULL ? v : err.msg);
		assert_null(v);
		return;
	}
	if (rc != MAP_FOUND)
		fail_msg("%s: expected %s, got %d (%s)", addr, want, rc, err.msg);
	assert_string_equal(v, want);
	assert_int_equal(step, want_step);
	free(v);
}

static void test_user_len(void **st)
{
	assert_int_equal(vlookup_user_len("alice+x", 7, "+"), 5);
	assert_int_equal(vlookup_user_len("alice+x", 7, NULL), 7);
	assert_int_equal(vlookup_user_len("alice+x", 7, ""), 7);
	assert_int_equal(vlookup_user_len("alice-x+y", 9, "+-"), 5);
	assert_int_equal(vlookup_user_len("+lead", 5, "+"), 5);
	assert_int_equal(vlookup_user_len("plain", 5, "+"), 5);
	/* only the bytes given count */
	assert_int_equal(vlookup_user_len("ab+c", 2, "+"), 2);
}

static void test_alias_order(void **st)
{
	/* The full address wins over user@domain and the catch-all. */
	test_vlookup_expect("alice+spam@example.test", "+", VLOOKUP_ALIAS,
	                    "spam@example.test", VLOOKUP_FULL);
	/* Unknown extension: user@domain. */
	test_vlookup_expect("alice+other@example.test", "+", VLOOKUP_ALIAS,
	                    "alice-box@example.test", VLOOKUP_NOEXT);
	/* The domain folds to lower case, the search still works. */
	test_vlookup_expect("alice+other@EXAMPLE.Test", "+", VLOOKUP_ALIAS,
	                    "alice-box@example.test", VLOOKUP_NOEXT);
	/* Without a delimiter "alice+other" is a user of its own: catch-all. */
	test_vlookup_expect("alice+other@example.test", "", VLOOKUP_ALIAS,
	                    "catchall@example.test", VLOOKUP_CATCHALL);
	test_vlookup_expect("nobody@example.test", "+", VLOOKUP_ALIAS,
	                    "catchall@example.test", VLOOKUP_CATCHALL);
	/* A set of delimiters: the first one present splits. */
	test_vlookup_expect("bob-x+y@dash.test", "+-", VLOOKUP_ALIAS, NULL, 0);
	test_vlookup_expect("bob-x+y@dash.test", "+", VLOOKUP_ALIAS,
	                    "bobx@dash.test", VLOOKUP_NOEXT);
	/* A leading delimiter is not an extension. */
	test_vlookup_expect("+lead@example.test", "+", VLOOKUP_ALIAS,
	                    "lead@example.test", VLOOKUP_FULL);
	test_vlookup_expect("nobody@other.test", "+", VLOOKUP_ALIAS, NULL, 0);
}

static void test_mailbox_steps(void **st)
{
	/* Mailbox maps never use the catch-all. */
	test_vlookup_expect("nobody@example.test", "+", VLOOKUP_MAILBOX, NULL, 0);
	test_vlookup_expect("alice+zzz@example.test", "+", VLOOKUP_MAILBOX,
	                    "alice-box@example.test", VLOOKUP_NOEXT);
	test_vlookup_expect("alice+zzz@example.test", "+", VLOOKUP_FULL, NULL, 0);
	test_vlookup_expect("alice@example.test", "+", VLOOKUP_CATCHALL,
	                    "catchall@example.test", VLOOKUP_CATCHALL);
	/* No '@': only the address itself, no catch-all. */
	test_vlookup_expect("unqualified", "+", VLOOKUP_ALIAS, "local-target",
	                    VLOOKUP_FULL);
	test_vlookup_expect("unqualified+x", "+", VLOOKUP_ALIAS, "local-target",
	                    VLOOKUP_NOEXT);
}

static void test_tempfail_stops(void **st)
{
	char spec[400];
	struct err err;
	struct map *m;
	char *v = NULL;

	snprintf(spec, sizeof(spec), "%s/flaky", test_vlookup_dir);
	test_vlookup_write(spec, "x@y.test z\n");
	snprintf(spec, sizeof(spec), "texthash:%s/flaky", test_vlookup_dir);
	m = map_open(spec, &err);
	assert_non_null(m);
	snprintf(spec, sizeof(spec), "%s/flaky", test_vlookup_dir);
	test_vlookup_write(spec, "x@y.test z\nbroken\n");
	sleep(2);
	assert_int_equal(vlookup_addr(m, "x@y.test", "+", VLOOKUP_ALIAS, &v, NULL,
	                              &err), MAP_TEMPFAIL);
	assert_null(v);
	assert_int_equal(err.temp, 1);
	map_free(m);
}

static void test_domain_names(void **st)
{
	struct err err;

	err_clear(&err);
	assert_int_equal(vlookup_domain_match("example.test, other.test", "other.test",
	                                      &err), MAP_FOUND);
	assert_int_equal(vlookup_domain_match("example.test other.test", "OTHER.Test.",
	                                      &err), MAP_FOUND);
	assert_int_equal(vlookup_domain_match("example.test", "sub.example.test",
	                                      &err), MAP_NOTFOUND);
	assert_int_equal(vlookup_domain_match(".example.test", "sub.example.test",
	                                      &err), MAP_FOUND);
	assert_int_equal(vlookup_domain_match(".example.test", "example.test",
	                                      &err), MAP_NOTFOUND);
	assert_int_equal(vlookup_domain_match(".example.test", "badexample.test",
	                                      &err), MAP_NOTFOUND);
	/* First match decides: the exclusion comes first. */
	assert_int_equal(vlookup_domain_match("!bad.example.test, .example.test",
	                                      "bad.example.test", &err), MAP_NOTFOUND);
	assert_int_equal(vlookup_domain_match("!bad.example.test, .example.test",
	                                      "ok.example.test", &err), MAP_FOUND);
	assert_int_equal(vlookup_domain_match("", "example.test", &err), MAP_NOTFOUND);
	assert_int_equal(vlookup_domain_match(NULL, "example.test", &err), MAP_NOTFOUND);
	assert_int_equal(vlookup_domain_match("example.test", "", &err), MAP_NOTFOUND);
}

static void test_domain_maps_and_files(void **st)
{
	struct vlookup_domains *d;
	char spec[700];
	struct err err;

	snprintf(spec, sizeof(spec), "plain.test, texthash:%s, %s",
	         test_vlookup_domains, test_vlookup_list);
	err_clear(&err);
	d = vlookup_domains_new(spec, &err);
	if (d == NULL)
		fail_msg("%s", err.msg);
	assert_int_equal(vlookup_domains_match(d, "plain.test", &err), MAP_FOUND);
	assert_int_equal(vlookup_domains_match(d, "example.test", &err), MAP_FOUND);
	assert_int_equal(vlookup_domains_match(d, "mixed.test", &err), MAP_FOUND);
	assert_int_equal(vlookup_domains_match(d, "MIXED.TEST", &err), MAP_FOUND);
	assert_int_equal(vlookup_domains_match(d, "listed.test", &err), MAP_FOUND);
	assert_int_equal(vlookup_domains_match(d, "also.test", &err), MAP_FOUND);
	assert_int_equal(vlookup_domains_match(d, "third.test", &err), MAP_FOUND);
	assert_int_equal(vlookup_domains_match(d, "comment", &err), MAP_NOTFOUND);
	assert_int_equal(vlookup_domains_match(d, "unknown.test", &err), MAP_NOTFOUND);
	/* names, a list file and a texthash: all answered from memory */
	assert_int_equal(vlookup_domains_in_memory(d), 1);
	vlookup_domains_free(d);
	vlookup_domains_free(NULL);

	assert_null(vlookup_domains_new("texthash:/nonexistent/x", &err));
	assert_non_null(strstr(err.msg, "/nonexistent/x"));
	assert_null(vlookup_domains_new("/nonexistent/list", &err));
	assert_int_equal(vlookup_domain_match("bogus:x", "a.test", &err),
	                 MAP_TEMPFAIL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_len),
		cmocka_unit_test(test_alias_order),
		cmocka_unit_test(test_mailbox_steps),
		cmocka_unit_test(test_tempfail_stops),
		cmocka_unit_test(test_domain_names),
		cmocka_unit_test(test_domain_maps_and_files),
	};

	return cmocka_run_group_tests(tests, test_vlookup_setup,
	                              test_vlookup_teardown);
}
