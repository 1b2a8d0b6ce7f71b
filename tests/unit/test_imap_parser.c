/* Unit tests for mra/imap_parser: tags, atoms, quoted strings, literals
 * (sync and LITERAL+), lists, limits; every complete command is also fed
 * a byte at a time and must report need-more until its last byte. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../../mra/imap_parser.h"
#include "../../mra/imap_cmd.h"
#include "../../mra/imap_search.h"

static const struct imap_parser_limits test_lim = {
	.max_line = 1024, .max_literal = 4096, .max_depth = 8
};

struct test_res {
	char buf[8192];
	char *tag;
	struct imap_arg args[64];
	size_t used;
	struct imap_parse_need need;
	enum imap_parse_err err;
	int rc;
};

static int test_parse(struct test_res *r, const char *in, size_t len)
{
	memcpy(r->buf, in, len);
	r->rc = imap_parser_parse(&test_lim, r->buf, len, &r->tag, r->args,
				  64, &r->used, &r->need, &r->err);
	return r->rc;
}

/* Every proper prefix needs more; the whole parses to the same count. */
static int test_bytewise(const char *in)
{
	static struct test_res r;
	size_t len = strlen(in), i;

	for (i = 0; i < len; i++)
		assert_int_equal(test_parse(&r, in, i), IMAP_PARSE_NEED_MORE);
	return test_parse(&r, in, len);
}

static void test_simple(void **st)
{
	static struct test_res r;

	assert_int_equal(test_parse(&r, "a1 NOOP\r\n", 9), 1);
	assert_string_equal(r.tag, "a1");
	assert_string_equal(r.args[0].s, "NOOP");
	assert_int_equal(r.used, 9);
	assert_int_equal(test_bytewise("a1 NOOP\r\n"), 1);
}

static void test_quoted_and_list(void **st)
{
	static struct test_res r;
	const char *in = "t2 LOGIN \"al\\\"ice\" (x (y z) \"\") \"p\\\\w\"\r\n";
	struct imap_arg *l;

	assert_int_equal(test_parse(&r, in, strlen(in)), 4);
	assert_string_equal(imap_arg_nth(r.args, 1)->s, "al\"ice");
	l = imap_arg_nth(r.args, 2);
	assert_int_equal(l->type, IMAP_ARG_LIST);
	assert_int_equal(l->len, 3);
	assert_string_equal(l->child->s, "x");
	assert_int_equal(l->child->next->type, IMAP_ARG_LIST);
	assert_string_equal(l->child->next->child->next->s, "z");
	assert_int_equal(l->child->next->next->len, 0);
	assert_string_equal(imap_arg_nth(r.args, 3)->s, "p\\w");
	assert_int_equal(test_bytewise(in), 4);
}

static void test_literal_sync(void **st)
{
	static struct test_res r;
	const char *in = "a LOGIN {5}\r\nal ce {3+}\r\npw!\r\n";

	assert_int_equal(test_parse(&r, in, 13), IMAP_PARSE_NEED_MORE);
	assert_int_equal(r.need.literal, 1);
	assert_int_equal(r.need.nonsync, 0);
	assert_int_equal(r.need.literal_size, 5);
	assert_int_equal(r.need.literal_at, 13);
	assert_int_equal(test_parse(&r, in, 26), IMAP_PARSE_NEED_MORE);
	assert_int_equal(r.need.nonsync, 1);
	assert_int_equal(test_parse(&r, in, strlen(in)), 3);
	assert_string_equal(imap_arg_nth(r.args, 1)->s, "al ce");
	assert_int_equal(imap_arg_nth(r.args, 2)->type, IMAP_ARG_LITERAL);
	assert_string_equal(imap_arg_nth(r.args, 2)->s, "pw!");
	assert_int_equal(test_bytewise(in), 3);
}

static void test_body_section(void **st)
{
	static struct test_res r;
	const char *in = "f UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n";
	struct imap_arg *l;

	assert_int_equal(test_parse(&r, in, strlen(in)), 4);
	l = imap_arg_nth(r.args, 3);
	assert_int_equal(l->len, 2);
	assert_string_equal(l->child->next->s,
			    "BODY.PEEK[HEADER.FIELDS (From To)]<0.100>");
}

static void test_errors(void **st)
{
	static struct test_res r;
	static char big[2000];

	assert_int_equal(test_parse(&r, "\r\n", 2), IMAP_PARSE_ERROR);
	assert_int_equal(r.err, IMAP_PERR_NO_TAG);
	assert_int_equal(r.used, 2);
	assert_int_equal(test_parse(&r, "+ x\r\n", 5), IMAP_PARSE_ERROR);
	assert_int_equal(test_parse(&r, "a (x\r\nb NOOP\r\n", 14),
			 IMAP_PARSE_ERROR);
	assert_int_equal(r.used, 6);
	assert_int_equal(test_parse(&r, "a x)\r\n", 6), IMAP_PARSE_ERROR);
	assert_int_equal(test_parse(&r, "a \"x\\n\"\r\n", 9), IMAP_PARSE_ERROR);
	assert_int_equal(test_parse(&r, "a x\0y\r\n", 7), IMAP_PARSE_ERROR);
	assert_int_equal(r.err, IMAP_PERR_NUL);
	assert_int_equal(test_parse(&r, "a X {99999}\r\n", 13),
			 IMAP_PARSE_ERROR);
	assert_int_equal(r.err, IMAP_PERR_LITERAL_TOO_BIG);
	assert_int_equal(r.need.nonsync, 0);
	assert_int_equal(test_parse(&r, "a X {99999+}\r\n", 14),
			 IMAP_PARSE_ERROR);
	assert_int_equal(r.need.nonsync, 1);
	/* a bare LF ends a {n+} announcement too */
	assert_int_equal(test_parse(&r, "a X ) {5+}\nhello\r\n", 19),
			 IMAP_PARSE_ERROR);
	assert_int_equal(r.need.nonsync, 1);
	assert_int_equal(test_parse(&r, "a X (((((((((x)))))))))\r\n", 25),
			 IMAP_PARSE_ERROR);
	assert_int_equal(r.err, IMAP_PERR_TOO_DEEP);
	memset(big, 'a', sizeof(big));
	assert_int_equal(test_parse(&r, big, sizeof(big)), IMAP_PARSE_ERROR);
	assert_int_equal(r.err, IMAP_PERR_LINE_TOO_LONG);
	assert_int_equal(test_parse(&r, "a {x}\r\n", 7), IMAP_PARSE_ERROR);
	assert_int_equal(test_parse(&r, "a\r\n", 3), IMAP_PARSE_ERROR);
}

/* A line over max_line is an error however it arrives: before, a long
 * line fed whole parsed, and only a slow client got "too long". */
static void test_line_limit_whole_or_bytewise(void **st)
{
	static struct test_res r;
	static char in[1100];
	size_t n, i;

	n = (size_t)snprintf(in, sizeof(in), "a NOOP ");
	memset(in + n, 'x', 1024 - n);
	n = 1024;
	memcpy(in + n, "\r\n", 2);
	/* exactly max_line bytes: fine, whole and a byte at a time */
	assert_int_equal(test_bytewise(in), 2);
	in[n] = 'x';
	memcpy(in + n + 1, "\r\n", 3);
	assert_int_equal(test_parse(&r, in, n + 3), IMAP_PARSE_ERROR);
	assert_int_equal(r.err, IMAP_PERR_LINE_TOO_LONG);
	assert_int_equal(r.used, n + 3);
	for (i = 1; i < n + 3; i++) {
		int rc = test_parse(&r, in, i);

		assert_true(rc == IMAP_PARSE_NEED_MORE ||
			    (rc == IMAP_PARSE_ERROR &&
			     r.err == IMAP_PERR_LINE_TOO_LONG));
	}
	/* a bare LF line end counts the same */
	memcpy(in + n + 1, "\n", 2);
	assert_int_equal(test_parse(&r, in, n + 2), IMAP_PARSE_ERROR);
	assert_int_equal(r.err, IMAP_PERR_LINE_TOO_LONG);
}

/* literal_gate: every literal is reported once, even when its bytes are
 * already there (a client that did not wait for "+"), so the caller
 * judges it whatever the timing. */
static void test_literal_gate(void **st)
{
	static struct test_res r;
	struct imap_parser_limits lim = test_lim;
	const char *in = "a LOGIN {5}\r\nalice {3+}\r\npw!\r\n";

	memcpy(r.buf, in, strlen(in));
	lim.literal_gate = 1;
	assert_int_equal(imap_parser_parse(&lim, r.buf, strlen(in), &r.tag,
					   r.args, 64, &r.used, &r.need,
					   &r.err), IMAP_PARSE_NEED_MORE);
	assert_int_equal(r.need.literal, 1);
	assert_int_equal(r.need.literal_at, 13);
	lim.literal_gate = 13 + 1;
	assert_int_equal(imap_parser_parse(&lim, r.buf, strlen(in), &r.tag,
					   r.args, 64, &r.used, &r.need,
					   &r.err), IMAP_PARSE_NEED_MORE);
	assert_int_equal(r.need.literal_at, 25);
	assert_int_equal(r.need.nonsync, 1);
	lim.literal_gate = 25 + 1;
	assert_int_equal(imap_parser_parse(&lim, r.buf, strlen(in), &r.tag,
					   r.args, 64, &r.used, &r.need,
					   &r.err), 3);
}

static void test_too_many_args(void **st)
{
	static struct test_res r;
	char in[400];
	size_t n = 0;
	int i;

	n += (size_t)snprintf(in, sizeof(in), "a X");
	for (i = 0; i < 70; i++)
		n += (size_t)snprintf(in + n, sizeof(in) - n, " %d", i);
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\n");
	assert_int_equal(test_parse(&r, in, n), IMAP_PARSE_ERROR);
	assert_int_equal(r.err, IMAP_PERR_TOO_MANY_ARGS);
	assert_int_equal(r.used, n);
}

static void test_seqset(void **st)
{
	struct imap_seq_range s[4];

	assert_int_equal(imap_seqset_parse("1", s, 4), 1);
	assert_int_equal(imap_seqset_parse("1:3,7,9:*", s, 4), 3);
	assert_int_equal(s[0].lo, 1);
	assert_int_equal(s[0].hi, 3);
	assert_int_equal(s[2].lo, 9);
	assert_int_equal(s[2].hi, IMAP_SEQ_STAR);
	/* the largest number is a number, not '*' */
	assert_int_equal(imap_seqset_parse("7:4294967295", s, 4), 1);
	assert_int_equal(s[0].lo, 7);
	assert_int_equal(s[0].hi, 4294967295u);
	assert_int_not_equal(s[0].hi, IMAP_SEQ_STAR);
	assert_int_equal(imap_seqset_parse("5:2", s, 4), 1);
	assert_int_equal(s[0].lo, 2);
	assert_int_equal(imap_seqset_parse("0", s, 4), -1);
	assert_int_equal(imap_seqset_parse("1,", s, 4), -1);
	assert_int_equal(imap_seqset_parse("1,2,3,4,5", s, 4), -1);
	assert_int_equal(imap_seqset_parse("a", s, 4), -1);
	assert_int_equal(imap_seqset_parse("4294967296", s, 4), -1);
}

static void test_line(void **st)
{
	size_t n, used;

	assert_int_equal(imap_parser_line("DONE\r\nx", 7, 100, &n, &used), 1);
	assert_int_equal(n, 4);
	assert_int_equal(used, 6);
	assert_int_equal(imap_parser_line("DON", 3, 100, &n, &used), 0);
	assert_int_equal(imap_parser_line("DONE", 4, 3, &n, &used), -1);
}

/* RFC 3501 §5.1.3 modified UTF-7 */
static void test_mutf7(void **st)
{
	char out[128], back[128];

	assert_int_equal(imap_cmd_mutf7_decode("Entw&APw-rfe", out,
					       sizeof(out)), 0);
	assert_string_equal(out, "Entw\xc3\xbc" "rfe");
	assert_int_equal(imap_cmd_mutf7_encode(out, back, sizeof(back)), 0);
	assert_string_equal(back, "Entw&APw-rfe");
	assert_int_equal(imap_cmd_mutf7_decode("A&-B", out, sizeof(out)), 0);
	assert_string_equal(out, "A&B");
	assert_int_equal(imap_cmd_mutf7_encode("A&B", back, sizeof(back)), 0);
	assert_string_equal(back, "A&-B");
	/* RFC 3501's example: ~peter/mail/台北/日本語 */
	assert_int_equal(imap_cmd_mutf7_decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-",
					       out, sizeof(out)), 0);
	assert_int_equal(imap_cmd_mutf7_encode(out, back, sizeof(back)), 0);
	assert_string_equal(back, "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	/* a supplementary-plane character goes through a surrogate pair */
	assert_int_equal(imap_cmd_mutf7_encode("\xf0\x9f\x93\xa7", back,
					       sizeof(back)), 0);
	assert_int_equal(imap_cmd_mutf7_decode(back, out, sizeof(out)), 0);
	assert_string_equal(out, "\xf0\x9f\x93\xa7");
	assert_int_equal(imap_cmd_mutf7_decode("&Jjo", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("&2D0-", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_decode("a\x01", out, sizeof(out)), -1);
	assert_int_equal(imap_cmd_mutf7_encode("\xff", back, sizeof(back)), -1);
}

static void test_search_date(void **st)
{
	assert_true(imap_search_date("1-Feb-1994") == 760060800LL);
	assert_true(imap_search_date("07-feb-1994") == 760579200LL);
	assert_true(imap_search_date("1-Foo-1994") < 0);
	assert_true(imap_search_date("32-Jan-1994") < 0);
	assert_true(imap_search_date("1-Jan-94") < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_quoted_and_list),
		cmocka_unit_test(test_literal_sync),
		cmocka_unit_test(test_body_section),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_line_limit_whole_or_bytewise),
		cmocka_unit_test(test_literal_gate),
		cmocka_unit_test(test_too_many_args),
		cmocka_unit_test(test_seqset),
		cmocka_unit_test(test_line),
		cmocka_unit_test(test_mutf7),
		cmocka_unit_test(test_search_date),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
