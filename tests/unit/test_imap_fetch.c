/* Unit tests for mra/imap_fetch's pure part: FETCH item parsing and one
 * message's response, for hostile messages too (issue #9): every
 * response is well-formed (tests/fuzz/imap_syntax.h), and under a bound
 * that cuts it the render fails leaving the buffer as it was. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "imap_fetch.h"
#include "mstore.h"
#include "../fuzz/imap_syntax.h"

#define TEST_MAX_ITEMS 80

struct test_items {
	struct imap_arg a[TEST_MAX_ITEMS + 1];
	char s[TEST_MAX_ITEMS][64];
};

/* "(name name ...)" as the parser would hand it over. */
static struct imap_arg *test_list(struct test_items *ti, const char *const *names,
                                  size_t n)
{
	size_t i;

	memset(ti, 0, sizeof(*ti));
	ti->a[0].type = IMAP_ARG_LIST;
	ti->a[0].len = n;
	ti->a[0].child = n > 0 ? &ti->a[1] : NULL;
	for (i = 0; i < n; i++) {
		snprintf(ti->s[i], sizeof(ti->s[i]), "%s", names[i]);
		ti->a[i + 1].type = IMAP_ARG_ATOM;
		ti->a[i + 1].s = ti->s[i];
		ti->a[i + 1].len = strlen(ti->s[i]);
		ti->a[i + 1].next = i + 1 < n ? &ti->a[i + 2] : NULL;
	}
	return &ti->a[0];
}

static struct imap_fetch *test_parse(struct test_items *ti,
                                     const char *const *names, size_t n)
{
	int oom;

	return imap_fetch_parse(test_list(ti, names, n), 0, &oom);
}

static const char *const test_all[] = {
	"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY",
	"BODYSTRUCTURE", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
	"BODY.PEEK[HEADER.FIELDS.NOT (\"Subject\" From)]", "BODY.PEEK[1.MIME]",
	"BODY.PEEK[TEXT]<0.10>", "BODY.PEEK[]<100000000.5>", "RFC822.HEADER",
	"RFC822.TEXT", "RFC822",
};
static const char *test_kw[MSTORE_MAX_KEYWORDS] = { "$Junk", "bad name", "(x" };

static void test_msg(struct imap_fetch_msg *m, const char *data, size_t len)
{
	memset(m, 0, sizeof(*m));
	m->seq = 7;
	m->uid = 42;
	m->flags = MSTORE_F_SEEN | MSTORE_F_RECENT;
	m->keywords = 7;
	m->kwnames = test_kw;
	m->internaldate = 760000000;
	m->vsize = len;
	m->data = data;
	m->len = len;
}

/* Render unbounded (well-formed), then under bounds across its size:
 * the same bytes or nothing. */
static void test_render_all(const char *data, size_t len, struct buf *out_r)
{
	struct test_items ti;
	struct imap_fetch *fe = test_parse(&ti, test_all, sizeof(test_all) / sizeof(test_all[0]));
	struct imap_fetch_msg m;
	struct buf full, b;
	size_t max, step;
	int rc;

	assert_non_null(fe);
	test_msg(&m, data, len);
	buf_init(&full, 0);
	assert_int_equal(imap_fetch_render(fe, &m, &full), 0);
	if (imap_syntax_fetch(full.p, full.len) != 0)
		fail_msg("malformed: %.400s", full.p);
	step = full.len / 29 + 1;
	for (max = 1; max < full.len + 8; max += step) {
		buf_init(&b, max);
		assert_int_equal(buf_append(&b, "x", 1), 0);
		rc = imap_fetch_render(fe, &m, &b);
		if (rc == 0) {
			assert_int_equal(b.len, full.len + 1);
			assert_memory_equal(b.p + 1, full.p, full.len);
		} else {
			assert_int_equal(b.len, 1);
		}
		buf_free(&b);
	}
	imap_fetch_free(fe);
	if (out_r != NULL)
		*out_r = full;
	else
		buf_free(&full);
}

static void test_plain_message(void **st)
{
	static const char m[] = "From: Fred <f@example.net>\r\nSubject: hi\r\n"
	                        "Content-Type: text/plain\r\n\r\nbody\r\n";
	struct buf out;

	test_render_all(m, sizeof(m) - 1, &out);
	assert_non_null(strstr(out.p, "* 7 FETCH (UID 42 FLAGS (\\Seen \\Recent $Junk) "
	                       "INTERNALDATE \"31-Jan-1994 07:06:40 +0000\" "
	                       "RFC822.SIZE 75 ENVELOPE (NIL \"hi\" "));
	assert_non_null(strstr(out.p, "BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: hi\r\n\r\n"));
	assert_non_null(strstr(out.p, "BODY[TEXT]<0> {6}\r\nbody\r\n"));
	assert_non_null(strstr(out.p, "BODY[]<100000000> \"\""));
	assert_int_equal(out.len >= 3 && memcmp(out.p + out.len - 3, ")\r\n", 3) == 0, 1);
	buf_free(&out);
}

static void test_hostile_messages(void **st)
{
	struct buf m;
	int i;

	buf_init(&m, 0);
	assert_int_equal(buf_puts(&m, "Subject: "), 0);
	for (i = 0; i < 100000; i++)
		assert_int_equal(buf_putc(&m, 'S'), 0);
	assert_int_equal(buf_puts(&m, "\r\nFrom: "), 0);
	for (i = 0; i < 3000; i++)
		assert_int_equal(buf_printf(&m, "%su%d@example.net", i ? ", " : "", i), 0);
	assert_int_equal(buf_puts(&m, "\r\nMessage-ID: <"), 0);
	for (i = 0; i < 70000; i++)
		assert_int_equal(buf_putc(&m, 'x'), 0);
	assert_int_equal(buf_puts(&m, ">\r\n\r\nbody\r\n"), 0);
	test_render_all(m.p, m.len, NULL);
	buf_reset(&m);
	for (i = 0; i < 40; i++)
		assert_int_equal(buf_printf(&m, "Content-Type: multipart/mixed; "
		                            "boundary=b%d\r\n\r\n--b%d\r\n", i, i), 0);
	assert_int_equal(buf_puts(&m, "\r\nleaf\r\n"), 0);
	test_render_all(m.p, m.len, NULL);
	buf_free(&m);
}

/* RFC 3501 §4.3: a literal holds no NUL; 0x80 stands in, same length. */
static void test_nul_bytes(void **st)
{
	static const char m[] = "Subject: a\0b\r\n\r\nx\0y\r\n";
	struct buf out;

	test_render_all(m, sizeof(m) - 1, &out);
	assert_null(memchr(out.p, '\0', out.len));
	assert_non_null(memmem(out.p, out.len, "RFC822 {21}\r\nSubject: a\x80" "b\r\n\r\nx\x80y\r\n", 34));
	buf_free(&out);
}

static void test_date_and_flags(void **st)
{
	static const char *const items[] = { "INTERNALDATE" };
	struct test_items ti;
	struct imap_fetch *fe = test_parse(&ti, items, 1);
	struct imap_fetch_msg m;
	struct buf out;

	assert_non_null(fe);
	test_msg(&m, NULL, 0);
	/* RFC 3501 §9 date-time has four year digits: an absurd mtime
	 * shows as the epoch, not a five-digit year */
	m.internaldate = (time_t)INT64_MAX / 4;
	m.add_flags = 1;
	buf_init(&out, 0);
	assert_int_equal(imap_fetch_render(fe, &m, &out), 0);
	assert_string_equal(out.p, "* 7 FETCH (INTERNALDATE \"01-Jan-1970 00:00:00 +0000\" "
	                    "FLAGS (\\Seen \\Recent $Junk))\r\n");
	buf_free(&out);
	imap_fetch_free(fe);
}

static void test_parse_items(void **st)
{
	static const char *const bad[] = { "BODY[FOO]", "BODY[1.2.BAR]",
		"BODY[HEADER.FIELDS (A{3})]", "BODY[]<1>", "BODY[]<1.0>", "NOPE" };
	static const char *const good[] = { "BODY[HEADER.FIELDS (\"Subject\")]",
		"BODY.PEEK[2.1.MIME]", "BODY[]<0.1>", "rfc822.size" };
	const char *many[TEST_MAX_ITEMS];
	struct test_items ti;
	struct imap_fetch *fe;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(test_parse(&ti, &bad[i], 1));
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		fe = test_parse(&ti, &good[i], 1);
		assert_non_null(fe);
		imap_fetch_free(fe);
	}
	for (i = 0; i < TEST_MAX_ITEMS; i++)
		many[i] = "BODY.PEEK[]";
	assert_null(test_parse(&ti, many, TEST_MAX_ITEMS));
	fe = test_parse(&ti, good, 2);
	assert_int_equal(imap_fetch_needs(fe), 2);
	assert_int_equal(imap_fetch_sets_seen(fe), 1);
	imap_fetch_free(fe);
	imap_fetch_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_message),
		cmocka_unit_test(test_hostile_messages),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_date_and_flags),
		cmocka_unit_test(test_parse_items),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
