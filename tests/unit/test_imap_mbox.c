/* Unit tests for mailbox names and LIST patterns in mra/imap_cmd*.c:
 * the linear-time LIST matcher (RFC 3501 §6.3.8) and its worst case,
 * strict modified UTF-7 (RFC 3501 §5.1.3) that refuses encoded NUL and
 * control characters, and mailbox arguments with a NUL in a literal. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "../../mra/imap_cmd.h"

static void test_match_rfc3501(void **st)
{
	/* "*" matches everything, "%" stops at the separator */
	assert_true(imap_cmd_mbox_match("*", "INBOX", '.'));
	assert_true(imap_cmd_mbox_match("*", "Archive.2024.Q1", '.'));
	assert_true(imap_cmd_mbox_match("%", "Archive", '.'));
	assert_false(imap_cmd_mbox_match("%", "Archive.2024", '.'));
	assert_true(imap_cmd_mbox_match("Archive.%", "Archive.2024", '.'));
	assert_false(imap_cmd_mbox_match("Archive.%", "Archive.2024.Q1", '.'));
	assert_true(imap_cmd_mbox_match("Archive.*", "Archive.2024.Q1", '.'));
	assert_false(imap_cmd_mbox_match("Archive.*", "Archive", '.'));
	assert_true(imap_cmd_mbox_match("%.%", "Archive.2024", '.'));
	assert_true(imap_cmd_mbox_match("A%e", "Archive", '.'));
	assert_false(imap_cmd_mbox_match("A%e", "Arc.hive", '.'));
	assert_true(imap_cmd_mbox_match("A*e", "Arc.hive", '.'));
	assert_true(imap_cmd_mbox_match("%*%", "a.b", '.'));
	assert_true(imap_cmd_mbox_match("INBOX", "INBOX", '.'));
	assert_false(imap_cmd_mbox_match("INBOX", "INBOX.Sent", '.'));
	assert_false(imap_cmd_mbox_match("Sent", "Sen", '.'));
	assert_false(imap_cmd_mbox_match("Se", "Sent", '.'));
	assert_true(imap_cmd_mbox_match("", "", '.'));
	assert_false(imap_cmd_mbox_match("", "x", '.'));
	assert_true(imap_cmd_mbox_match("**%%", "", '.'));
	assert_true(imap_cmd_mbox_match("*.", "a.b.", '.'));
}

/* Issue #9: 7 wildcards against a 200-character name held a worker for
 * more than 30 s. With 30 wildcards this returns at once (the matcher is
 * O(pattern * name) by construction; no timing is asserted). */
static void test_match_worst_case(void **st)
{
	char name[201], pat[128];
	size_t i, n = 0;

	memset(name, 'a', 200);
	name[200] = '\0';
	for (i = 0; i < 30; i++) {
		pat[n++] = i % 2 ? '%' : '*';
		pat[n++] = 'a';
	}
	pat[n++] = 'b';
	pat[n] = '\0';
	assert_false(imap_cmd_mbox_match(pat, name, '.'));
	pat[n - 1] = '*';
	assert_true(imap_cmd_mbox_match(pat, name, '.'));
	/* the same with separators in the way of "%" */
	for (i = 1; i < 200; i += 2)
		name[i] = '.';
	for (i = 0, n = 0; i < 30; i++) {
		pat[n++] = '%';
		pat[n++] = 'a';
	}
	pat[n] = '\0';
	assert_false(imap_cmd_mbox_match(pat, name, '.'));
	pat[0] = '*';
	assert_false(imap_cmd_mbox_match(pat, name, '.'));
}

static void test_mutf7_strict(void **st)
{
	char out[128];

	/* issue #9: an encoded NUL silently cut the name short */
	assert_int_equal(imap_cmd_mutf7_decode("a&AAA-b", out, sizeof(out)), -1);
	/* encoded C0, DEL and C1 controls */
	assert_int_equal(imap_cmd_mutf7_decode("&AAE-", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("&AH8-", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("&AIA-", out, sizeof(out)), -1);
	/* a printable character MUST represent itself */
	assert_int_equal(imap_cmd_mutf7_decode("&AGE-", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("&ACY-", out, sizeof(out)), -1);
	/* leftover bits: a whole extra base64 character, or non-zero pad */
	assert_int_equal(imap_cmd_mutf7_decode("&APwA-", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("&APx-", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("&A-", out, sizeof(out)), -1);
	/* raw controls and 8-bit bytes */
	assert_int_equal(imap_cmd_mutf7_decode("a\tb", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("a\x7f", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("\xc3\xbc", out, sizeof(out)), -1);
	/* and what is right still is */
	assert_int_equal(imap_cmd_mutf7_decode("Entw&APw-rfe", out,
					       sizeof(out)), 0);
	assert_string_equal(out, "Entw\xc3\xbc" "rfe");
	assert_int_equal(imap_cmd_mutf7_decode("&-&ZeVnLIqe-", out,
					       sizeof(out)), 0);
	assert_string_equal(out, "&\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
}

static void test_mailbox_arg(void **st)
{
	char lit[] = "INBOX\0junk", ok[] = "Sent", enc[] = "x&AAA-";
	struct imap_arg a;
	struct err err;
	char out[256];

	memset(&a, 0, sizeof(a));
	a.type = IMAP_ARG_LITERAL;
	a.s = lit;
	a.len = sizeof(lit) - 1;
	assert_int_equal(imap_cmd_mailbox_arg(&a, &err), -1);
	assert_non_null(strstr(err.msg, "NUL"));
	a.s = ok;
	a.len = strlen(ok);
	assert_int_equal(imap_cmd_mailbox_arg(&a, &err), 0);
	a.type = IMAP_ARG_QUOTED;
	a.s = enc;
	a.len = strlen(enc);
	assert_int_equal(imap_cmd_mailbox_arg(&a, &err), -1);
	a.type = IMAP_ARG_LIST;
	assert_int_equal(imap_cmd_mailbox_arg(&a, &err), -1);
	/* the store name: decoded, INBOX folded, checked */
	assert_int_equal(imap_cmd_mailbox("inbox", out, sizeof(out), &err), 0);
	assert_string_equal(out, "INBOX");
	assert_int_equal(imap_cmd_mailbox("a&AAo-b", out, sizeof(out), &err),
			 -1);
	assert_int_equal(imap_cmd_mailbox("../x", out, sizeof(out), &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_rfc3501),
		cmocka_unit_test(test_match_worst_case),
		cmocka_unit_test(test_mutf7_strict),
		cmocka_unit_test(test_mailbox_arg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
