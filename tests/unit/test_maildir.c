/* Unit tests for shared/maildir and shared/quota (Maildir++ maildirsize),
 * on a real temporary folder. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsgroup.h"
#include "maildir.h"
#include "quota.h"

static char test_root[256];

static int test_setup(void **st)
{
	snprintf(test_root, sizeof(test_root), "/tmp/test_maildir.XXXXXX");
	assert_non_null(mkdtemp(test_root));
	return 0;
}

static int test_teardown(void **st)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_root);
	return system(cmd) == 0 ? 0 : -1;
}

static int test_count(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_read_file(const char *path, char *out, size_t n)
{
	int fd = open(path, O_RDONLY);
	ssize_t r;

	assert_true(fd >= 0);
	r = read(fd, out, n - 1);
	close(fd);
	assert_true(r >= 0);
	out[r] = '\0';
}

static void test_make_creates_parents(void **st)
{
	char md[400], sub[450];
	struct err err;
	struct stat s;

	snprintf(md, sizeof(md), "%s/a/b/c/Maildir", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	snprintf(sub, sizeof(sub), "%s/new", md);
	assert_int_equal(stat(sub, &s), 0);
	assert_true(S_ISDIR(s.st_mode));
	assert_int_equal(s.st_mode & 0777, 0700);
	/* a second call on a complete Maildir is fine */
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
}

static void test_make_refuses_dotdot(void **st)
{
	char md[400];
	struct err err;

	snprintf(md, sizeof(md), "%s/x/../y", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), -1);
}

static void test_deliver_bytes_and_name(void **st)
{
	char md[400], name[MAILDIR_NAME_MAX], path[800], got[64];
	struct iovec iov[2] = { { "Subject: x\r\n", 12 }, { "\r\nbody\r\n", 8 } };
	struct err err;

	snprintf(md, sizeof(md), "%s/d1", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	assert_int_equal(maildir_deliver(md, NULL, iov, 2, "new", NULL,
					 name, sizeof(name), &err), 0);
	assert_non_null(strstr(name, ",S=20"));
	assert_int_equal(maildir_name_size(name), 20);
	snprintf(path, sizeof(path), "%s/new/%s", md, name);
	test_read_file(path, got, sizeof(got));
	assert_string_equal(got, "Subject: x\r\n\r\nbody\r\n");
	snprintf(path, sizeof(path), "%s/tmp", md);
	assert_int_equal(test_count(path), 0);
}

static void test_deliver_unique_names(void **st)
{
	char md[400], a[MAILDIR_NAME_MAX], b[MAILDIR_NAME_MAX], nd[450];
	struct iovec iov = { "x\r\n", 3 };
	struct err err;

	snprintf(md, sizeof(md), "%s/d2", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	assert_int_equal(maildir_deliver(md, NULL, &iov, 1, "new", NULL, a,
					 sizeof(a), &err), 0);
	assert_int_equal(maildir_deliver(md, NULL, &iov, 1, "new", NULL, b,
					 sizeof(b), &err), 0);
	assert_string_not_equal(a, b);
	snprintf(nd, sizeof(nd), "%s/new", md);
	assert_int_equal(test_count(nd), 2);
}

static void test_deliver_stem_once(void **st)
{
	char md[400], stem[40], a[MAILDIR_NAME_MAX], b[MAILDIR_NAME_MAX];
	char nd[450];
	struct iovec iov = { "y\r\n", 3 };
	struct err err;

	snprintf(md, sizeof(md), "%s/d3", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	assert_int_equal(maildir_stem("QID1", "bob@x.test", stem,
				      sizeof(stem)), 0);
	assert_int_equal(maildir_has_stem(md, stem, &err), 0);
	assert_int_equal(maildir_deliver(md, stem, &iov, 1, "new", NULL, a,
					 sizeof(a), &err), 0);
	assert_int_equal(maildir_has_stem(md, stem, &err), 1);
	assert_int_equal(maildir_deliver(md, stem, &iov, 1, "new", NULL, b,
					 sizeof(b), &err), 1);
	assert_string_equal(a, b);
	snprintf(nd, sizeof(nd), "%s/new", md);
	assert_int_equal(test_count(nd), 1);
}

/* A reader moved the copy to cur/ with flags: the exact-name check of
 * maildir_deliver() no longer sees it, maildir_has_stem() does. */
static void test_stem_found_in_cur(void **st)
{
	char md[400], stem[40], a[MAILDIR_NAME_MAX], from[900], to[900];
	struct iovec iov = { "w\r\n", 3 };
	struct err err;

	snprintf(md, sizeof(md), "%s/d5", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	assert_int_equal(maildir_stem("QID2", "c@x.test", stem, sizeof(stem)),
			 0);
	assert_int_equal(maildir_deliver(md, stem, &iov, 1, "new", NULL, a,
					 sizeof(a), &err), 0);
	snprintf(from, sizeof(from), "%s/new/%s", md, a);
	snprintf(to, sizeof(to), "%s/cur/%s:2,S", md, a);
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(maildir_has_stem(md, stem, &err), 1);
	assert_int_equal(maildir_has_stem(md, "0123abcd", &err), 0);
	assert_int_equal(maildir_has_stem(md, "../x", &err), -1);
}

static void test_deliver_cur_info(void **st)
{
	char md[400], name[MAILDIR_NAME_MAX];
	struct iovec iov = { "z\r\n", 3 };
	struct err err;

	snprintf(md, sizeof(md), "%s/d4", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	assert_int_equal(maildir_deliver(md, NULL, &iov, 1, "cur", ":2,S",
					 name, sizeof(name), &err), 0);
	assert_non_null(strstr(name, ",S=3:2,S"));
	assert_int_equal(maildir_name_size(name), 3);
	assert_int_equal(maildir_deliver(md, NULL, &iov, 1, "bad", NULL,
					 name, sizeof(name), &err), -1);
	assert_int_equal(maildir_deliver(md, "../evil", &iov, 1, "new", NULL,
					 name, sizeof(name), &err), -1);
}

static void test_deliver_missing_folder_is_temp(void **st)
{
	char md[400];
	struct iovec iov = { "z\r\n", 3 };
	struct err err;

	snprintf(md, sizeof(md), "%s/absent", test_root);
	assert_int_equal(maildir_deliver(md, NULL, &iov, 1, "new", NULL,
					 NULL, 0, &err), -1);
	assert_int_equal(err.temp, 1);
}

static void test_name_size(void **st)
{
	assert_int_equal(maildir_name_size("1.M2P3.h,S=1234"), 1234);
	assert_int_equal(maildir_name_size("1.M2P3.h,S=1234,W=1300:2,S"), 1234);
	assert_int_equal(maildir_name_size("1.M2P3.h:2,S=5"), -1);
	assert_int_equal(maildir_name_size("1.M2P3.h"), -1);
	assert_int_equal(maildir_name_size("1.h,S="), -1);
	assert_int_equal(maildir_name_size("1.h,S=99999999999999999999999"), -1);
}

static void test_stem_safe(void **st)
{
	char a[40], b[40], small[8];

	assert_int_equal(maildir_stem("Q", "a@b", a, sizeof(a)), 0);
	assert_int_equal(maildir_stem("Q", "c@b", b, sizeof(b)), 0);
	assert_int_equal(strlen(a), 32);
	assert_string_not_equal(a, b);
	assert_int_equal(strspn(a, "0123456789abcdef"), 32);
	assert_int_equal(maildir_stem("Q", "a@b", small, sizeof(small)), -1);
}

static void test_quota_parse(void **st)
{
	const char *t = "1000S,10C\n100 1\n-40 -1\n  7 2\n";
	long long l, b, f;

	assert_int_equal(quota_parse(t, strlen(t), &l, &b, &f), 4);
	assert_int_equal(l, 1000);
	assert_int_equal(b, 67);
	assert_int_equal(f, 2);
	assert_int_equal(quota_parse("0S\n12 1", 7, &l, &b, &f), -1);
	assert_int_equal(quota_parse("xS\n", 3, &l, &b, &f), -1);
	assert_int_equal(quota_parse("5S\n1 x\n", 7, &l, &b, &f), -1);
}

static void test_quota_over(void **st)
{
	assert_int_equal(quota_over(0, 1000000, 1000000), 0);
	assert_int_equal(quota_over(100, 50, 50), 0);
	assert_int_equal(quota_over(100, 50, 51), 1);
}

static void test_quota_add_and_recalc(void **st)
{
	char md[400], path[450], text[256];
	struct iovec iov = { "0123456789", 10 };
	long long b, f;
	struct err err;

	snprintf(md, sizeof(md), "%s/q1", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	assert_int_equal(maildir_deliver(md, NULL, &iov, 1, "new", NULL,
					 NULL, 0, &err), 0);
	/* missing file: rebuilt from the folder */
	assert_int_equal(quota_add(md, 500, 10, 1, (uid_t)-1, (gid_t)-1,
				   &err), 0);
	assert_int_equal(quota_usage(md, &b, &f, &err), 0);
	assert_int_equal(b, 10);
	assert_int_equal(f, 1);
	assert_int_equal(maildir_deliver(md, NULL, &iov, 1, "new", NULL,
					 NULL, 0, &err), 0);
	assert_int_equal(quota_add(md, 500, 10, 1, (uid_t)-1, (gid_t)-1,
				   &err), 0);
	snprintf(path, sizeof(path), "%s/maildirsize", md);
	test_read_file(path, text, sizeof(text));
	assert_string_equal(text, "500S\n10 1\n10 1\n");
	assert_int_equal(quota_usage(md, &b, &f, &err), 0);
	assert_int_equal(b, 20);
	assert_int_equal(f, 2);
	/* a changed limit rewrites the definition line */
	assert_int_equal(quota_add(md, 0, 0, 0, (uid_t)-1, (gid_t)-1, &err), 0);
	test_read_file(path, text, sizeof(text));
	assert_string_equal(text, "0S\n20 2\n");
}

/* A mailbox under no quota gets no maildirsize from deliveries, but one
 * that has the file keeps it up to date. */
static void test_quota_add_kept(void **st)
{
	char md[400], path[450], text[256];
	struct err err;
	long long b, f;
	FILE *fp;

	snprintf(md, sizeof(md), "%s/q2", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	snprintf(path, sizeof(path), "%s/maildirsize", md);
	assert_int_equal(quota_add_kept(md, 0, 10, 1, (uid_t)-1, (gid_t)-1,
					&err), 0);
	assert_int_equal(access(path, F_OK), -1);
	/* the usage of a folder without the file is found by a scan */
	assert_int_equal(quota_usage(md, &b, &f, &err), 0);
	assert_int_equal(b, 0);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("0S\n0 0\n", fp);
	fclose(fp);
	assert_int_equal(quota_add_kept(md, 0, 10, 1, (uid_t)-1, (gid_t)-1,
					&err), 0);
	test_read_file(path, text, sizeof(text));
	assert_string_equal(text, "0S\n0 0\n10 1\n");
}

/* Deliveries through a group commit land like plain ones. */
static void test_deliver_grouped(void **st)
{
	char md[400], name[MAILDIR_NAME_MAX], path[700], text[64];
	struct iovec iov[2] = { { "Subject: g\r\n", 12 }, { "\r\nbody\r\n", 8 } };
	struct fsgroup *g = fsgroup_new();
	struct err err;

	assert_non_null(g);
	snprintf(md, sizeof(md), "%s/g1", test_root);
	assert_int_equal(maildir_make(md, (uid_t)-1, (gid_t)-1, &err), 0);
	assert_int_equal(maildir_deliver_grouped(md, NULL, iov, 2, "new", NULL,
						 g, name, sizeof(name), &err),
			 0);
	assert_int_equal(maildir_name_size(name), 20);
	snprintf(path, sizeof(path), "%s/new/%s", md, name);
	test_read_file(path, text, sizeof(text));
	assert_string_equal(text, "Subject: g\r\n\r\nbody\r\n");
	fsgroup_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_make_creates_parents),
		cmocka_unit_test(test_make_refuses_dotdot),
		cmocka_unit_test(test_deliver_bytes_and_name),
		cmocka_unit_test(test_deliver_unique_names),
		cmocka_unit_test(test_deliver_stem_once),
		cmocka_unit_test(test_stem_found_in_cur),
		cmocka_unit_test(test_deliver_cur_info),
		cmocka_unit_test(test_deliver_missing_folder_is_temp),
		cmocka_unit_test(test_name_size),
		cmocka_unit_test(test_stem_safe),
		cmocka_unit_test(test_quota_parse),
		cmocka_unit_test(test_quota_over),
		cmocka_unit_test(test_quota_add_and_recalc),
		cmocka_unit_test(test_quota_add_kept),
		cmocka_unit_test(test_deliver_grouped),
	};

	return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
