/* Unit tests for shared/quota.c's domain usage (virtual_domain_quota_maps):
 * the sum over the Maildirs in a domain's folder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quota.h"

static char test_dir[128];

static void test_put(const char *rel, const char *text)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", test_dir, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void test_mkdir(const char *rel)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/%s", test_dir, rel);
	assert_int_equal(mkdir(path, 0700), 0);
}

static void test_maildir(const char *rel)
{
	char sub[200];

	test_mkdir(rel);
	snprintf(sub, sizeof(sub), "%s/cur", rel);
	test_mkdir(sub);
	snprintf(sub, sizeof(sub), "%s/new", rel);
	test_mkdir(sub);
	snprintf(sub, sizeof(sub), "%s/tmp", rel);
	test_mkdir(sub);
}

static int test_setup(void **st)
{
	snprintf(test_dir, sizeof(test_dir), "/tmp/test_quota.XXXXXX");
	return mkdtemp(test_dir) != NULL ? 0 : -1;
}

static int test_teardown(void **st)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_domain_usage(void **st)
{
	char dom[300];
	long long bytes = -1;
	struct err err;

	snprintf(dom, sizeof(dom), "%s/example.test", test_dir);
	/* no mailbox written yet: the folder does not exist */
	assert_int_equal(quota_domain_usage(dom, &bytes, &err), 0);
	assert_int_equal(bytes, 0);

	test_mkdir("example.test");
	/* alice: Maildir++ maildirsize, with a quota line and changes */
	test_maildir("example.test/alice");
	test_put("example.test/alice/maildirsize", "5000S\n300 1\n200 1\n-100 -1\n");
	/* bob: no maildirsize, so his Maildir is scanned */
	test_maildir("example.test/bob");
	test_put("example.test/bob/new/1.M1P1.host", "0123456789");
	/* not mailboxes: an mbox file, a folder without cur/, a dot-name */
	test_put("example.test/carol.mbox", "From x\n1234567890123456789\n");
	test_mkdir("example.test/notes");
	test_put("example.test/notes/big", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	test_maildir("example.test/.trash");
	test_put("example.test/.trash/maildirsize", "0S\n999 1\n");
	assert_int_equal(quota_domain_usage(dom, &bytes, &err), 0);
	assert_int_equal(bytes, 400 + 10);

	/* a broken maildirsize is rebuilt from the scan, as for one user */
	test_put("example.test/alice/maildirsize", "garbage\n");
	assert_int_equal(quota_domain_usage(dom, &bytes, &err), 0);
	assert_int_equal(bytes, 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_domain_usage),
	};

	return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
