/* Unit tests for shared/mime_addr (RFC 5322 §3.4 address lists, item by
 * item) and shared/mime's mime_search_addr (the SEARCH FROM/TO/CC/BCC
 * text), including the expectations of Dovecot's imaptest script
 * search-addresses, rewritten here from its mbox. */
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "mime.h"
#include "mime_addr.h"

/* The items of list v, one per line: "M name|route|local|domain",
 * "G name" (group start), "E" (group end). */
static void test_items(const char *v, size_t len, struct buf *out)
{
	struct mime_addr_parser ap;
	struct mime_addr a;
	size_t calls = 0;
	int r;

	mime_addr_parser_init(&ap, v, len);
	mime_addr_init(&a);
	while ((r = mime_addr_next(&ap, &a)) > 0) {
		assert_true(++calls <= len + 2);
		if (a.kind == MIME_ADDR_GROUP_END)
			assert_int_equal(buf_puts(out, "E\n"), 0);
		else if (a.kind == MIME_ADDR_GROUP_START)
			assert_int_equal(buf_printf(out, "G %s\n",
			                            a.name.p ? a.name.p : ""), 0);
		else
			assert_int_equal(buf_printf(out, "M %s|%s|%s|%s\n",
			                            a.name.p ? a.name.p : "",
			                            a.route.p ? a.route.p : "",
			                            a.local.p ? a.local.p : "",
			                            a.domain.p ? a.domain.p : ""), 0);
	}
	assert_int_equal(r, 0);
	/* the end stays the end */
	assert_int_equal(mime_addr_next(&ap, &a), 0);
	mime_addr_free(&a);
}

static void test_list(const char *v, const char *want)
{
	struct buf b;

	buf_init(&b, 0);
	test_items(v, strlen(v), &b);
	if (strcmp(b.p ? b.p : "", want) != 0)
		fail_msg("list [%s]\n got:\n%s want:\n%s", v, b.p ? b.p : "", want);
	buf_free(&b);
}

static void test_mailboxes(void **st)
{
	test_list("\"Real Name\" <user@domain>", "M Real Name||user|domain\n");
	test_list("Real Name <user@domain>", "M Real Name||user|domain\n");
	test_list("From Real <fromuser@fromdomain.org>",
	          "M From Real||fromuser|fromdomain.org\n");
	test_list("user@domain", "M ||user|domain\n");
	/* RFC 822's "addr (Name)": the comment is the name */
	test_list("user@domain (Real Name)", "M Real Name||user|domain\n");
	test_list("user@domain (a) (b\\) (c)) ", "M b) (c)||user|domain\n");
	test_list("user@domain (\r\n Real\r\n Name )", "M Real Name||user|domain\n");
	/* but not the comments of a name-addr */
	test_list("<user-from (comment)@ (comment) domain.org>",
	          "M ||user-from|domain.org\n");
	test_list("Name <a@b> (comment)", "M Name||a|b\n");
	/* obs-route (RFC 5322 §4.4) */
	test_list("<@route:user@domain>", "M |@route|user|domain\n");
	test_list("x <@a, @b (c) :u@d>", "M x|@a,@b|u|d\n");
	test_list("<@only.domain>", "M |||only.domain\n");
	/* quoting, obs-phrase, obs-local-part, literals */
	test_list("\"Doe, John\" <john.doe@example.com>",
	          "M Doe, John||john.doe|example.com\n");
	test_list("John Q. Public <jqp@x>", "M John Q. Public||jqp|x\n");
	test_list("\"a \\\"q\\\" b\" <a@b>", "M a \"q\" b||a|b\n");
	test_list("\"john doe\"@example.com", "M ||john doe|example.com\n");
	test_list("a . b @ c . d", "M ||a.b|c.d\n");
	test_list("a@[1.2.3.4]", "M ||a|[1.2.3.4]\n");
	test_list("a@[ 1.2 \\] ]", "M ||a|[1.2]]\n");
	/* RFC 3501 §7.4.2: encoded words go to the client as sent */
	test_list("=?utf-8?q?J=C3=B6rg?= <j@x>", "M =?utf-8?q?J=C3=B6rg?=||j|x\n");
	test_list("\"=?utf-8?q?a?=\" (x) <j@x>", "M =?utf-8?q?a?=||j|x\n");
	test_list("J\xc3\xb6rg <j@x>", "M J\xc3\xb6rg||j|x\n");
	/* missing parts */
	test_list("user", "M ||user|\n");
	test_list("John Smith", "M ||John Smith|\n");
	test_list("<>", "M |||\n");
	test_list("a@", "M ||a|\n");
	test_list("@b", "M |||b\n");
	test_list("", "");
	test_list(" (only a comment) ", "");
	test_list(",,, ,", "");
	/* two and more */
	test_list("user-from1@domain.org, user-from2@domain.org",
	          "M ||user-from1|domain.org\nM ||user-from2|domain.org\n");
	test_list("\"x, y\" <a@b>,(c,d)e@f", "M x, y||a|b\nM c,d||e|f\n");
}

static void test_groups(void **st)
{
	test_list("group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;",
	          "G group\nM ||g1|d1.org\nM ||g2|d2.org\nE\n"
	          "G group2\nM ||g3|d3.org\nE\n");
	test_list("group:;, group2: (foo) ;", "G group\nE\nG group2\nE\n");
	test_list("undisclosed-recipients:;", "G undisclosed-recipients\nE\n");
	test_list("groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n"
	          "  groupname2: groupuser3@domain.org;",
	          "G groupname\nM ||groupuser1|domain.org\n"
	          "M ||groupuser2|domain.org\nE\n"
	          "G groupname2\nM ||groupuser3|domain.org\nE\n");
	test_list("\"The Team\": Ann <a@x>, b@x (Bob);",
	          "G The Team\nM Ann||a|x\nM Bob||b|x\nE\n");
	/* left open: closed at the end */
	test_list("g: a@b", "G g\nM ||a|b\nE\n");
	test_list("g:", "G g\nE\n");
	/* no nesting: the inner "h:" is junk */
	test_list("g: h: a@b; c@d", "G g\nM ||a|b\nE\nM ||c|d\n");
	/* a ';' outside a group separates, as a ',' does (Outlook writes it) */
	test_list("a@b; c@d", "M ||a|b\nM ||c|d\n");
	test_list(": a@b;", "G \nM ||a|b\nE\n");
}

static void test_malformed(void **st)
{
	/* a missing '>' ends at the next ',' */
	test_list("A <a@b, B <c@d>", "M A||a|b\nM B||c|d\n");
	test_list("<a@b", "M ||a|b\n");
	/* junk after an address is skipped to the next ',' */
	test_list("a@b junk \"q,\" (c,) , c@d", "M c,||a|b\nM ||c|d\n");
	test_list(">>, ]\\ <a@b>", "M ||a|b\n");
	test_list("x > y, <a@b>", "M ||y|\nM ||a|b\n");
	/* unterminated quotes and comments run to the end */
	test_list("\"abc <a@b>", "M ||abc <a@b>|\n");
	test_list("a@b (abc, <c@d>", "M abc, <c@d>||a|b\n");
	/* NUL is a stray special, never part of a name */
	{
		static const char v[] = "A\0B <a@b>";
		struct buf b;

		buf_init(&b, 0);
		test_items(v, sizeof(v) - 1, &b);
		assert_string_equal(b.p, "M B||a|b\n");
		buf_free(&b);
	}
}

/* Every prefix of a hard list, and the list cut at every byte from the
 * front: each ends (within len + 2 items) without error. */
static void test_prefixes(void **st)
{
	static const char v[] =
		"\"Doe, \\\"J\\\"\" <@r1,@r2:john.doe(c)@[1.2.3.4]>, g: a@b (A (n)),"
		" \"x\"@y;, =?utf-8?q?x?= <z@w> junk, <>, (c)u . v @ d . e";
	size_t i;
	struct buf b;

	buf_init(&b, 0);
	for (i = 0; i <= sizeof(v) - 1; i++) {
		buf_reset(&b);
		test_items(v, i, &b);
		buf_reset(&b);
		test_items(v + i, sizeof(v) - 1 - i, &b);
	}
	buf_reset(&b);
	test_items(v, sizeof(v) - 1, &b);
	assert_string_equal(b.p,
		"M Doe, \"J\"|@r1,@r2|john.doe|[1.2.3.4]\n"
		"G g\nM A (n)||a|b\nM ||x|y\nE\n"
		"M =?utf-8?q?x?=||z|w\nM |||\nM c||u.v|d.e\n");
	buf_free(&b);
}

/* Bounded work on hostile lists: deep comments, many commas, many
 * addresses, a long quote. Each is linear; a quadratic parser would take
 * minutes here. */
static void test_huge(void **st)
{
	size_t n = 1u << 20, i;
	char *v = malloc(n);
	struct mime_addr_parser ap;
	struct mime_addr a;
	unsigned long items = 0;
	int r;

	assert_non_null(v);
	memset(v, '(', n);
	mime_addr_parser_init(&ap, v, n);
	mime_addr_init(&a);
	assert_int_equal(mime_addr_next(&ap, &a), 0);
	memset(v, ',', n);
	mime_addr_parser_init(&ap, v, n);
	assert_int_equal(mime_addr_next(&ap, &a), 0);
	for (i = 0; i + 4 <= n; i += 4)
		memcpy(v + i, "a@b,", 4);
	mime_addr_parser_init(&ap, v, n);
	while ((r = mime_addr_next(&ap, &a)) > 0)
		items++;
	assert_int_equal(r, 0);
	assert_int_equal(items, n / 4);
	memset(v, 'x', n);
	v[0] = '"';
	v[n - 3] = '@';
	mime_addr_parser_init(&ap, v, n);
	assert_int_equal(mime_addr_next(&ap, &a), 1);
	assert_int_equal(a.local.len, n - 1);
	assert_int_equal(mime_addr_next(&ap, &a), 0);
	mime_addr_free(&a);
	free(v);
}

static void test_search_text_one(const char *v, const char *want)
{
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(buf_puts(&b, "x"), 0);
	assert_int_equal(mime_search_addr(v, strlen(v), &b), 0);
	assert_string_equal(b.p + 1, want);
	buf_free(&b);
}

static void test_search_text(void **st)
{
	test_search_text_one("<user-from (comment)@ (comment) domain.org>",
	                     "user-from@domain.org");
	test_search_text_one("user-from@domain.org (RealFrom)",
	                     "RealFrom <user-from@domain.org>");
	test_search_text_one("\"Real, From\" <a@b>, c@d",
	                     "Real, From <a@b>, c@d");
	test_search_text_one("g: a@b, c@d;, h:;, e@f",
	                     "g: a@b, c@d;, h:;, e@f");
	test_search_text_one("=?ISO-8859-1?Q?Andr=E9?= Pirard <ap@x>, <@r:u>",
	                     "Andr\xc3\xa9 Pirard <ap@x>, u");
	test_search_text_one("(nothing)", "");
	{
		struct buf b;

		/* out full: nothing appended */
		buf_init(&b, 8);
		assert_int_equal(buf_puts(&b, "x"), 0);
		assert_int_equal(mime_search_addr("Long Name <a@b>", 15, &b), -1);
		assert_int_equal(b.len, 1);
		assert_string_equal(b.p, "x");
		buf_free(&b);
	}
}

/* imaptest's search-addresses: its messages' address fields, and each
 * search with the messages it must find (1-based). FROM/TO/CC/BCC match
 * a case-insensitive substring of mime_search_addr's text. */
static const char *const test_sa_msgs[][4] = {
	/* From, To, Cc, Bcc */
	{ "user-from@domain.org", "user-to@domain.org", "user-cc@domain.org",
	  "user-bcc@domain.org" },
	{ "RealFrom <user-from@domain.org>", "RealTo <user-to@domain.org>",
	  "RealCc <user-cc@domain.org>", "RealBcc <user-bcc@domain.org>" },
	{ "<user-from (comment)@ (comment) domain.org>", "<user-to@domain.org>",
	  "<user-cc@domain.org>", "<user-bcc@domain.org>" },
	{ "user-from@domain.org (RealFrom)", "user-to@domain.org (RealTo)",
	  "user-cc@domain.org (RealCc)", "user-bcc@domain.org (RealBcc)" },
	{ "user-from1@domain.org, user-from2@domain.org", NULL,
	  "user-cc@domain.org", NULL },
	{ "RealFrom <user-from@domain.org>",
	  "groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n"
	  "  groupname2: groupuser3@domain.org;", NULL, NULL },
	{ "RealFrom <user-from@domain.org>", "groupname:;", NULL, NULL },
};

static const struct {
	int field;
	const char *needle, *want;
} test_sa_searches[] = {
	{ 0, "user-from@domain.org", "1 2 3 4 6 7" },
	{ 1, "user-to@domain.org", "1 2 3 4" },
	{ 2, "user-cc@domain.org", "1 2 3 4 5" },
	{ 3, "user-bcc@domain.org", "1 2 3 4" },
	{ 0, "realfrom", "2 4 6 7" },
	{ 1, "realto", "2 4" },
	{ 2, "realcc", "2 4" },
	{ 3, "realbcc", "2 4" },
	{ 0, "ser-fro", "1 2 3 4 5 6 7" },
	{ 1, "ser-t", "1 2 3 4" },
	{ 2, "ser-c", "1 2 3 4 5" },
	{ 3, "ser-bc", "1 2 3 4" },
	{ 0, "ealfro", "2 4 6 7" },
	{ 1, "ealt", "2 4" },
	{ 2, "ealc", "2 4" },
	{ 3, "ealbc", "2 4" },
	{ 0, "user-from1", "5" },
	{ 0, "user-from2", "5" },
	{ 1, "groupname", "6 7" },
	{ 1, "groupname2", "6" },
	{ 1, "groupuser1", "6" },
	{ 1, "groupuser2", "6" },
	{ 1, "groupuser3", "6" },
	{ 1, "groupuser4", "" },
	/* and what a raw substring test got wrong: the comment is not an
	 * address */
	{ 0, "comment", "" },
};

static void test_imaptest_search_addresses(void **st)
{
	size_t s, m, nm = sizeof(test_sa_msgs) / sizeof(test_sa_msgs[0]);
	struct buf text, got;

	buf_init(&text, 0);
	buf_init(&got, 0);
	for (s = 0; s < sizeof(test_sa_searches) / sizeof(test_sa_searches[0]); s++) {
		const char *needle = test_sa_searches[s].needle;

		buf_reset(&got);
		for (m = 0; m < nm; m++) {
			const char *v = test_sa_msgs[m][test_sa_searches[s].field];

			if (v == NULL)
				continue;
			buf_reset(&text);
			assert_int_equal(mime_search_addr(v, strlen(v), &text), 0);
			if (mime_contains(text.p ? text.p : "", text.len, needle,
			                  strlen(needle)))
				assert_int_equal(buf_printf(&got, "%s%zu",
				                            got.len ? " " : "", m + 1), 0);
		}
		if (strcmp(got.p ? got.p : "", test_sa_searches[s].want) != 0)
			fail_msg("search %s: got [%s], want [%s]", needle,
			         got.p ? got.p : "", test_sa_searches[s].want);
	}
	buf_free(&text);
	buf_free(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mailboxes),
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_search_text),
		cmocka_unit_test(test_imaptest_search_addresses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
