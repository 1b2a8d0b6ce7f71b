/* Unit tests for the SMTP reply parser (shared/smtp_reply.c): single and
 * multi-line replies, enhanced codes, EHLO keywords, limits, and every
 * input fed one byte at a time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "smtp_reply.h"

static enum smtp_reply_rc parse(const char *s, struct smtp_reply *r,
    size_t *used)
{
	return smtp_reply_parse(s, strlen(s), 4096, r, used);
}

static void test_single_line(void **st)
{
	struct smtp_reply r;
	size_t used;
	const char *s = "250 2.1.5 Ok\r\nNEXT";

	assert_int_equal(parse(s, &r, &used), SMTP_REPLY_OK);
	assert_int_equal(r.code, 250);
	assert_int_equal(used, 14);
	assert_int_equal(r.nlines, 1);
	assert_int_equal(r.enh_class, 2);
	assert_int_equal(r.enh_subject, 1);
	assert_int_equal(r.enh_detail, 5);
	assert_int_equal(r.lastlen, 2);
	assert_memory_equal(r.last, "Ok", 2);
}

static void test_multi_line_and_ehlo(void **st)
{
	struct smtp_reply r;
	size_t used, pl, pos = 0, tl, n = 0;
	const char *p, *t;
	const char *s = "250-mx.example Hello\r\n250-PIPELINING\r\n"
	    "250-AUTH PLAIN LOGIN\r\n250-size 1000\r\n250 STARTTLS\r\n";

	assert_int_equal(parse(s, &r, &used), SMTP_REPLY_OK);
	assert_int_equal(used, strlen(s));
	assert_int_equal(r.nlines, 5);
	assert_int_equal(smtp_reply_ehlo_has(&r, "pipelining", &p, &pl), 1);
	assert_int_equal(pl, 0);
	assert_int_equal(smtp_reply_ehlo_has(&r, "AUTH", &p, &pl), 1);
	assert_int_equal(pl, 11);
	assert_memory_equal(p, "PLAIN LOGIN", 11);
	assert_int_equal(smtp_reply_ehlo_has(&r, "SIZE", &p, &pl), 1);
	assert_memory_equal(p, "1000", 4);
	assert_int_equal(smtp_reply_ehlo_has(&r, "STARTTLS", NULL, NULL), 1);
	/* the greeting line's domain is not a keyword */
	assert_int_equal(smtp_reply_ehlo_has(&r, "mx.example", NULL, NULL), 0);
	assert_int_equal(smtp_reply_ehlo_has(&r, "STARTTL", NULL, NULL), 0);
	while (smtp_reply_line(&r, &pos, &t, &tl))
		n++;
	assert_int_equal(n, 5);
}

static void test_code_only_and_bare_lf(void **st)
{
	struct smtp_reply r;
	size_t used;

	assert_int_equal(parse("354\r\n", &r, &used), SMTP_REPLY_OK);
	assert_int_equal(r.code, 354);
	assert_int_equal(r.lastlen, 0);
	assert_int_equal(parse("221 bye\n", &r, &used), SMTP_REPLY_OK);
	assert_int_equal(used, 8);
	assert_int_equal(r.enh_class, 0);
}

static void test_syntax_errors(void **st)
{
	struct smtp_reply r;
	size_t used;

	assert_int_equal(parse("25\r\n", &r, &used), SMTP_REPLY_ERR_SYNTAX);
	assert_int_equal(parse("abc def\r\n", &r, &used), SMTP_REPLY_ERR_SYNTAX);
	assert_int_equal(parse("650 x\r\n", &r, &used), SMTP_REPLY_ERR_SYNTAX);
	assert_int_equal(parse("250x\r\n", &r, &used), SMTP_REPLY_ERR_SYNTAX);
	/* RFC 5321 §4.2.1: one code for all lines */
	assert_int_equal(parse("250-a\r\n550 b\r\n", &r, &used),
	    SMTP_REPLY_ERR_SYNTAX);
}

static void test_enhanced(void **st)
{
	int c, s, d;
	struct smtp_reply r;
	size_t used;

	assert_int_equal(smtp_reply_enhanced("5.7.139 no", 10, &c, &s, &d), 8);
	assert_int_equal(c * 10000 + s * 1000 + d, 5 * 10000 + 7 * 1000 + 139);
	assert_int_equal(smtp_reply_enhanced("5.7.1390 x", 10, &c, &s, &d), 0);
	assert_int_equal(smtp_reply_enhanced("55.1.1 x", 8, &c, &s, &d), 0);
	assert_int_equal(smtp_reply_enhanced("3.1.1 x", 7, &c, &s, &d), 0);
	assert_int_equal(smtp_reply_enhanced("4.2.0", 5, &c, &s, &d), 5);
	/* a 5xx code with a 2.x.x enhanced code: kept as text */
	assert_int_equal(parse("550 2.0.0 odd\r\n", &r, &used), SMTP_REPLY_OK);
	assert_int_equal(r.enh_class, 0);
	assert_int_equal(r.lastlen, 9);
}

static void test_limits(void **st)
{
	struct smtp_reply r;
	size_t used;
	char big[300];

	memset(big, 'x', sizeof(big));
	memcpy(big, "250-", 4);
	assert_int_equal(smtp_reply_parse(big, sizeof(big), 100, &r, &used),
	    SMTP_REPLY_ERR_TOO_LONG);
	assert_int_equal(smtp_reply_parse(big, 50, 100, &r, &used),
	    SMTP_REPLY_NEED_MORE);
	/* complete reply but longer than max in total */
	assert_int_equal(smtp_reply_parse("250-aaaa\r\n250 b\r\n", 17, 12, &r,
	    &used), SMTP_REPLY_ERR_TOO_LONG);
}

/* Every prefix of a valid reply needs more; the whole gives the same
 * result as parsing at once. */
static void test_byte_at_a_time(void **st)
{
	const char *s = "250-mx Hello\r\n250-8BITMIME\r\n250 2.0.0 OK\r\n";
	size_t n = strlen(s), i, used;
	struct smtp_reply r;

	for (i = 0; i < n; i++)
		assert_int_equal(smtp_reply_parse(s, i, 4096, &r, &used),
		    SMTP_REPLY_NEED_MORE);
	assert_int_equal(smtp_reply_parse(s, n, 4096, &r, &used),
	    SMTP_REPLY_OK);
	assert_int_equal(used, n);
	assert_int_equal(r.nlines, 3);
	assert_memory_equal(r.last, "OK", 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_multi_line_and_ehlo),
		cmocka_unit_test(test_code_only_and_bare_lf),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_enhanced),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_byte_at_a_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
