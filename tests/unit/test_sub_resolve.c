/* Unit tests for submission/sub_resolve and sub_deliver over real
 * texthash maps and a temporary mail folder. */
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

#include "map.h"
#include "vlookup.h"
#include "../../submission/sub_deliver.h"
#include "../../submission/sub_resolve.h"

static char test_dir[128];
static struct sub_resolve test_r;

static void test_write(const char *name, const char *text, char *spec,
		       size_t n)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", test_dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(spec, n, "texthash:%s", path);
}

static int test_setup(void **st)
{
	char spec[300], uid[32];
	struct err err;

	snprintf(test_dir, sizeof(test_dir), "/tmp/test_sub_resolve.XXXXXX");
	if (mkdtemp(test_dir) == NULL)
		return -1;
	test_write("aliases",
		   "alice@demo.test alice@demo.test\n"
		   "team@demo.test alice@demo.test, bob@demo.test\n"
		   "fwd@demo.test carol@demo.test someone@remote.example\n"
		   "list@demo.test team@demo.test, alice@demo.test\n"
		   "loop1@demo.test loop2@demo.test\n"
		   "loop2@demo.test loop1@demo.test\n"
		   "deep1@demo.test deep2@demo.test\n"
		   "deep2@demo.test deep3@demo.test\n"
		   "deep3@demo.test carol@demo.test\n"
		   "sales@demo.test bob@demo.test\n"
		   "mixed@demo.test alice@demo.test, ghost@demo.test, "
		   "someone@remote.example\n"
		   "ghosts@demo.test ghost@demo.test, ghost2@demo.test\n"
		   "@other.test bob@demo.test\n"
		   "@alias.test @demo.test\n", spec, sizeof(spec));
	test_r.alias_maps = map_open(spec, &err);
	test_write("mailboxes",
		   "alice@demo.test demo.test/alice/\n"
		   "bob@demo.test demo.test/bob/\n"
		   "carol@demo.test demo.test/carol/\n"
		   "mbox@demo.test demo.test/mbox\n"
		   "evil@demo.test ../../etc/\n", spec, sizeof(spec));
	test_r.mailbox_maps = map_open(spec, &err);
	test_write("quota", "bob@demo.test 100\n", spec, sizeof(spec));
	test_r.limit_maps = map_open(spec, &err);
	snprintf(uid, sizeof(uid), "static:%d", (int)getuid() + 5000);
	test_r.uid_maps = map_open(uid, &err);
	test_r.gid_maps = map_open("static:5000", &err);
	test_r.domains = vlookup_domains_new("demo.test other.test alias.test",
					     &err);
	test_r.delims = "+";
	test_r.base = test_dir;
	test_r.minimum_uid = 100;
	test_r.recursion_limit = 1000;
	test_r.expansion_limit = 1000;
	if (!test_r.alias_maps || !test_r.mailbox_maps || !test_r.limit_maps ||
	    !test_r.uid_maps || !test_r.gid_maps || !test_r.domains)
		return -1;
	return 0;
}

static int test_teardown(void **st)
{
	char cmd[200];

	map_free(test_r.alias_maps);
	map_free(test_r.mailbox_maps);
	map_free(test_r.limit_maps);
	map_free(test_r.uid_maps);
	map_free(test_r.gid_maps);
	vlookup_domains_free(test_r.domains);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_expect(const char *rcpt, const char *const *want, size_t n)
{
	struct sub_resolve_res res = { 0 };
	struct err err;

	assert_int_equal(sub_resolve_rcpt(&test_r, rcpt, &res, &err),
			 SUB_RESOLVE_OK);
	assert_int_equal(res.n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(res.v[i].addr, want[i]);
	sub_resolve_res_clear(&res);
}

static void test_aliases(void **st)
{
	static const char *const team[] = { "alice@demo.test",
					    "bob@demo.test" };
	static const char *const fwd[] = { "carol@demo.test",
					   "someone@remote.example" };
	static const char *const other[] = { "bob@demo.test" };
	static const char *const aliasdom[] = { "carol@demo.test" };
	static const char *const plus[] = { "alice+tag@demo.test" };
	static const char *const deep[] = { "carol@demo.test" };

	test_expect("team@demo.test", team, 2);
	/* nested alias with a duplicate target: each mailbox once */
	test_expect("list@demo.test", team, 2);
	test_expect("fwd@demo.test", fwd, 2);
	test_expect("anyone@other.test", other, 1);
	test_expect("carol@alias.test", aliasdom, 1);
	test_expect("alice+tag@demo.test", plus, 1);
	test_expect("deep1@demo.test", deep, 1);
}

static void test_targets(void **st)
{
	struct sub_resolve_res res = { 0 };
	struct err err;

	assert_int_equal(sub_resolve_rcpt(&test_r, "fwd@demo.test", &res,
					  &err), SUB_RESOLVE_OK);
	assert_int_equal(res.v[0].local, 1);
	assert_true(res.v[0].maildir);
	assert_int_equal(res.v[0].uid, getuid() + 5000);
	assert_int_equal(res.v[0].gid, 5000);
	assert_non_null(strstr(res.v[0].path, "/demo.test/carol/"));
	assert_int_equal(res.v[1].local, 0);
	assert_null(res.v[1].path);
	sub_resolve_res_clear(&res);
	assert_int_equal(sub_resolve_rcpt(&test_r, "sales@demo.test", &res,
					  &err), SUB_RESOLVE_OK);
	assert_int_equal(res.v[0].quota, 100);
	sub_resolve_res_clear(&res);
	assert_int_equal(sub_resolve_rcpt(&test_r, "mbox@demo.test", &res,
					  &err), SUB_RESOLVE_OK);
	assert_false(res.v[0].maildir);
	sub_resolve_res_clear(&res);
	sub_resolve_res_clear(NULL);
}

static void test_failures(void **st)
{
	struct sub_resolve_res res = { 0 };
	struct err err;

	assert_int_equal(sub_resolve_rcpt(&test_r, "ghost@demo.test", &res,
					  &err), SUB_RESOLVE_UNKNOWN);
	assert_memory_equal(err.msg, "5.1.1", 5);
	sub_resolve_res_clear(&res);
	assert_int_equal(sub_resolve_rcpt(&test_r, "loop1@demo.test", &res,
					  &err), SUB_RESOLVE_PERM);
	assert_memory_equal(err.msg, "5.4.6", 5);
	sub_resolve_res_clear(&res);
	/* a path leaving the mailbox base is refused (4xx: operator error) */
	assert_int_equal(sub_resolve_rcpt(&test_r, "evil@demo.test", &res,
					  &err), SUB_RESOLVE_TEMP);
	sub_resolve_res_clear(&res);
	test_r.recursion_limit = 2;
	assert_int_equal(sub_resolve_rcpt(&test_r, "deep1@demo.test", &res,
					  &err), SUB_RESOLVE_PERM);
	test_r.recursion_limit = 1000;
	sub_resolve_res_clear(&res);
	test_r.minimum_uid = (long)getuid() + 6000;
	assert_int_equal(sub_resolve_rcpt(&test_r, "alice@demo.test", &res,
					  &err), SUB_RESOLVE_TEMP);
	test_r.minimum_uid = 100;
	sub_resolve_res_clear(&res);
}

/* Postfix bounces the members of an alias that have no mailbox and
 * delivers to the others; only when none has one is the address
 * itself unknown. */
static void test_alias_member_unknown(void **st)
{
	struct sub_resolve_res res = { 0 };
	struct err err;

	assert_int_equal(sub_resolve_rcpt(&test_r, "mixed@demo.test", &res,
					  &err), SUB_RESOLVE_OK);
	assert_int_equal(res.n, 3);
	assert_string_equal(res.v[0].addr, "alice@demo.test");
	assert_null(res.v[0].fail);
	assert_non_null(res.v[0].path);
	assert_string_equal(res.v[1].addr, "ghost@demo.test");
	assert_non_null(res.v[1].fail);
	assert_memory_equal(res.v[1].fail, "5.1.1", 5);
	assert_null(res.v[1].path);
	assert_string_equal(res.v[2].addr, "someone@remote.example");
	assert_null(res.v[2].fail);
	assert_int_equal(res.v[2].local, 0);
	sub_resolve_res_clear(&res);

	assert_int_equal(sub_resolve_rcpt(&test_r, "ghosts@demo.test", &res,
					  &err), SUB_RESOLVE_UNKNOWN);
	assert_memory_equal(err.msg, "5.1.1", 5);
	assert_non_null(strstr(err.msg, "ghost@demo.test"));
	assert_int_equal(res.n, 0);
	sub_resolve_res_clear(&res);
}

static int test_count(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_deliver_maildir_once(void **st)
{
	const char data[] = "Received: x\r\nSubject: t\r\n\r\nbody\r\n";
	struct sub_target t = { .addr = "carol@demo.test", .local = 1,
				.maildir = 1, .uid = (uid_t)-1,
				.gid = (gid_t)-1 };
	char path[300], nd[320], name[300];
	struct err err;

	snprintf(path, sizeof(path), "%s/x/carol/", test_dir);
	t.path = path;
	assert_int_equal(sub_deliver_local(&t, "IDENT1", 1, "a@b", data,
					   strlen(data), NULL, name, sizeof(name),
					   &err), SUB_DELIVER_OK);
	assert_int_equal(sub_deliver_local(&t, "IDENT1", 1, "a@b", data,
					   strlen(data), NULL, NULL, 0, &err),
			 SUB_DELIVER_DUP);
	assert_int_equal(sub_deliver_local(&t, "IDENT2", 0, "a@b", data,
					   strlen(data), NULL, NULL, 0, &err),
			 SUB_DELIVER_OK);
	snprintf(nd, sizeof(nd), "%snew", path);
	assert_int_equal(test_count(nd), 2);
}

static void test_deliver_loop_and_quota(void **st)
{
	const char looped[] = "Delivered-To: carol@demo.test\r\n\r\nx\r\n";
	const char big[] = "Subject: big\r\n\r\n0123456789012345678901234"
			   "5678901234567890123456789\r\n";
	struct sub_target t = { .addr = "carol@demo.test", .local = 1,
				.maildir = 1, .uid = (uid_t)-1,
				.gid = (gid_t)-1, .quota = 100 };
	char path[300];
	struct err err;

	snprintf(path, sizeof(path), "%s/q/carol/", test_dir);
	t.path = path;
	assert_int_equal(sub_deliver_local(&t, "K1", 0, "", looped,
					   strlen(looped), NULL, NULL, 0, &err),
			 SUB_DELIVER_PERM);
	assert_memory_equal(err.msg, "5.4.6", 5);
	assert_int_equal(sub_deliver_over_quota(&t, 101, &err), 1);
	assert_int_equal(sub_deliver_over_quota(&t, 99, &err), 0);
	assert_int_equal(sub_deliver_local(&t, "K2", 0, "", big, strlen(big),
					   NULL, NULL, 0, &err), SUB_DELIVER_PERM);
	assert_memory_equal(err.msg, "5.2.2", 5);
}

static void test_deliver_mbox(void **st)
{
	const char data[] = "Subject: m\r\n\r\nFrom me\r\nline\r\n";
	struct sub_target t = { .addr = "m@demo.test", .local = 1,
				.uid = (uid_t)-1, .gid = (gid_t)-1 };
	char path[300], text[1024];
	struct err err;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/mb/sub/m.mbox", test_dir);
	t.path = path;
	assert_int_equal(sub_deliver_local(&t, "K", 0, "s@x", data, strlen(data),
					   NULL, NULL, 0, &err), SUB_DELIVER_OK);
	assert_int_equal(sub_deliver_local(&t, "K", 0, "", data, strlen(data),
					   NULL, NULL, 0, &err), SUB_DELIVER_OK);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	assert_true(n > 0);
	text[n] = '\0';
	assert_memory_equal(text, "From s@x ", 9);
	assert_non_null(strstr(text, "\nReturn-Path: <s@x>\nDelivered-To: "
				     "m@demo.test\nSubject: m\n\n>From me\n"
				     "line\n\nFrom MAILER-DAEMON "));
	assert_null(strchr(text, '\r'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_targets),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_alias_member_unknown),
		cmocka_unit_test(test_deliver_maildir_once),
		cmocka_unit_test(test_deliver_loop_and_quota),
		cmocka_unit_test(test_deliver_mbox),
	};

	return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
