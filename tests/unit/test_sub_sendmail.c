/* Unit tests for submission/sendmail_msg: stdin to CRLF data and the
 * lone-dot rule, header fields (folding, the end of the header section),
 * envelope addresses and the spool file format, also fed a byte at a time
 * where a prefix must never be taken for a whole. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../submission/sendmail_msg.h"

static void crlf(const char *in, int dot_ends, const char *want)
{
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(sendmail_msg_crlf(in, strlen(in), dot_ends, &b), 0);
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.p != NULL ? b.p : "", want, b.len);
	buf_free(&b);
}

static void test_crlf(void **st)
{
	crlf("a\nb\n", 1, "a\r\nb\r\n");
	crlf("a\r\nb", 1, "a\r\nb\r\n");
	crlf("", 1, "");
	/* a bare CR inside a line is data, not a line end */
	crlf("a\rb\n", 1, "a\rb\r\n");
	/* without -i a lone dot ends the message; with -i it is data */
	crlf("a\n.\nafter\n", 1, "a\r\n");
	crlf("a\r\n.\r\nafter\n", 1, "a\r\n");
	crlf("a\n.\nafter\n", 0, "a\r\n.\r\nafter\r\n");
	crlf("a\n..\n.x\n", 1, "a\r\n..\r\n.x\r\n");
}

static void test_crlf_full(void **st)
{
	struct buf b;

	buf_init(&b, 4);
	assert_int_equal(sendmail_msg_crlf("abcdef\n", 7, 1, &b), -1);
	buf_free(&b);
}

static void test_header_end(void **st)
{
	const char *m = "From: a@b\r\nSubject: x\r\n y\r\n\r\nbody\r\n";

	assert_int_equal(sendmail_msg_header_end(m, strlen(m)), 27);
	/* no header section at all */
	assert_int_equal(sendmail_msg_header_end("hello world\r\n", 13), 0);
	assert_int_equal(sendmail_msg_header_end("\r\nbody\r\n", 8), 0);
	/* no empty line: the body starts at the first line that is no field */
	m = "Subject: x\r\nnot a field\r\n";
	assert_int_equal(sendmail_msg_header_end(m, strlen(m)), 12);
	m = "Subject: x\r\n";
	assert_int_equal(sendmail_msg_header_end(m, strlen(m)), strlen(m));
}

static void test_fields(void **st)
{
	const char *m = "To: a@x.test,\r\n  b@x.test\r\nBcc: c@x.test\r\nX-A:\r\n\r\nTo: body@x\r\n";
	size_t hend = sendmail_msg_header_end(m, strlen(m)), pos = 0;
	struct sendmail_field f;

	assert_int_equal(sendmail_msg_field_next(m, hend, &pos, &f), 1);
	assert_true(sendmail_msg_field_is(&f, "to"));
	assert_false(sendmail_msg_field_is(&f, "t"));
	assert_int_equal(f.value_len, strlen(" a@x.test,\r\n  b@x.test"));
	assert_memory_equal(f.value, " a@x.test,\r\n  b@x.test", f.value_len);
	assert_int_equal(f.start, 0);
	assert_int_equal(f.end, 27);
	assert_int_equal(sendmail_msg_field_next(m, hend, &pos, &f), 1);
	assert_true(sendmail_msg_field_is(&f, "BCC"));
	assert_int_equal(f.end - f.start, strlen("Bcc: c@x.test\r\n"));
	assert_int_equal(sendmail_msg_field_next(m, hend, &pos, &f), 1);
	assert_true(sendmail_msg_field_is(&f, "X-A"));
	assert_int_equal(f.value_len, 0);
	/* the To: of the body is never a field */
	assert_int_equal(sendmail_msg_field_next(m, hend, &pos, &f), 0);
}

static void test_addr_ok(void **st)
{
	assert_true(sendmail_msg_addr_ok("a@b.test", 8));
	assert_false(sendmail_msg_addr_ok("", 0));
	assert_false(sendmail_msg_addr_ok("a b@c", 5));
	assert_false(sendmail_msg_addr_ok("a@b\r\nRCPT", 9));
	assert_false(sendmail_msg_addr_ok("<a@b>", 5));
	assert_false(sendmail_msg_addr_ok("a\n@b", 4));
}

static void test_spool_roundtrip(void **st)
{
	char *rcpts[] = { "a@x.test", "b@x.test" };
	struct buf b;
	size_t pos = 0, len, i;
	enum sendmail_spool_item kind;
	const char *v;
	size_t vl;

	buf_init(&b, 0);
	assert_int_equal(sendmail_spool_head(&b, "s@x.test", rcpts, 2), 0);
	assert_int_equal(buf_puts(&b, "Subject: x\r\n\r\nR not@head\r\n"), 0);
	assert_int_equal(sendmail_spool_next(b.p, b.len, &pos, &kind, &v, &vl), 1);
	assert_int_equal(kind, SENDMAIL_SPOOL_SENDER);
	assert_memory_equal(v, "s@x.test", vl);
	assert_int_equal(sendmail_spool_next(b.p, b.len, &pos, &kind, &v, &vl), 1);
	assert_int_equal(kind, SENDMAIL_SPOOL_RCPT);
	assert_memory_equal(v, "a@x.test", vl);
	assert_int_equal(sendmail_spool_next(b.p, b.len, &pos, &kind, &v, &vl), 1);
	assert_memory_equal(v, "b@x.test", vl);
	assert_int_equal(sendmail_spool_next(b.p, b.len, &pos, &kind, &v, &vl), 0);
	assert_string_equal(b.p + pos, "Subject: x\r\n\r\nR not@head\r\n");
	/* any prefix that stops inside the head is refused, never read as a
	 * shorter head */
	len = pos;
	for (i = 0; i < len; i++) {
		int rc;
		pos = 0;
		while ((rc = sendmail_spool_next(b.p, i, &pos, &kind, &v, &vl)) == 1)
			;
		assert_int_equal(rc, -1);
	}
	buf_free(&b);
}

static void test_spool_null_sender_and_bad(void **st)
{
	char *bad[] = { "a@x\nR evil@x" };
	struct buf b;
	size_t pos = 0;
	enum sendmail_spool_item kind;
	const char *v;
	size_t vl;
	const char *junk = "MAILPAIR-SPOOL 1\nX what\n\n";

	buf_init(&b, 0);
	assert_int_equal(sendmail_spool_head(&b, "", NULL, 0), 0);
	assert_int_equal(sendmail_spool_next(b.p, b.len, &pos, &kind, &v, &vl), 1);
	assert_int_equal(kind, SENDMAIL_SPOOL_SENDER);
	assert_int_equal(vl, 0);
	buf_reset(&b);
	assert_int_equal(sendmail_spool_head(&b, "s@x", bad, 1), -1);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	pos = 0;
	assert_int_equal(sendmail_spool_next("From x\n", 7, &pos, &kind, &v, &vl), -1);
	pos = 0;
	assert_int_equal(sendmail_spool_next(junk, strlen(junk), &pos, &kind, &v, &vl), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_crlf_full),
		cmocka_unit_test(test_header_end),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_addr_ok),
		cmocka_unit_test(test_spool_roundtrip),
		cmocka_unit_test(test_spool_null_sender_and_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
