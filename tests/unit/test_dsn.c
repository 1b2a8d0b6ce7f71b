/* Unit tests for shared/dsn.c: the RFC 3464 report's structure, fields,
 * the original headers part, status derivation and the refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "dsn.h"

static const char test_orig[] =
    "From: alice@example.net\r\nTo: bob@demo.test\r\nSubject: hi\r\n"
    "\r\nbody line that must not appear\r\n";

static void test_report_fields(void **st)
{
	struct buf b;
	struct err err;
	struct dsn_info info = { "mx.demo.test", "ABC123", "alice@example.net",
	    1764153981, 1764154081 };
	struct dsn_rcpt r[2] = {
		{ "bob@demo.test", "rfc822;bob@demo.test", "failed", NULL,
		  "internal.demo.test", "550 5.1.1 <bob@demo.test>: unknown" },
		{ "eve@demo.test", NULL, "failed", "4.4.7", NULL,
		  "message expired\r\nInjected: header" },
	};

	buf_init(&b, 1 << 20);
	assert_int_equal(dsn_build(&b, &info, r, 2, test_orig,
	    sizeof(test_orig) - 1, &err), 0);
	assert_non_null(strstr(b.p, "From: MAILER-DAEMON@mx.demo.test"));
	assert_non_null(strstr(b.p, "\r\nTo: alice@example.net\r\n"));
	assert_non_null(strstr(b.p, "Auto-Submitted: auto-replied\r\n"));
	assert_non_null(strstr(b.p, "Content-Type: multipart/report; "
	    "report-type=delivery-status;"));
	assert_non_null(strstr(b.p, "Content-Type: message/delivery-status"));
	assert_non_null(strstr(b.p, "Reporting-MTA: dns; mx.demo.test\r\n"));
	assert_non_null(strstr(b.p, "Arrival-Date: Wed, 26 Nov 2025 10:46:21 +0000"));
	assert_non_null(strstr(b.p, "Final-Recipient: rfc822; bob@demo.test\r\n"
	    "Original-Recipient: rfc822;bob@demo.test\r\nAction: failed\r\n"
	    "Status: 5.1.1\r\nRemote-MTA: dns; internal.demo.test\r\n"
	    "Diagnostic-Code: smtp; 550 5.1.1 <bob@demo.test>: unknown\r\n"));
	assert_non_null(strstr(b.p, "Status: 4.4.7\r\n"));
	/* a CR/LF in a reason cannot forge a field */
	assert_null(strstr(b.p, "\r\nInjected:"));
	assert_non_null(strstr(b.p, "Content-Type: text/rfc822-headers\r\n\r\n"
	    "From: alice@example.net\r\nTo: bob@demo.test\r\nSubject: hi\r\n"));
	assert_null(strstr(b.p, "body line"));
	/* closing boundary at the end */
	assert_non_null(strstr(b.p, "\r\n--ABC123.1764154081/mx.demo.test--\r\n"));
	buf_free(&b);
}

static void test_refusals(void **st)
{
	struct buf b;
	struct err err;
	struct dsn_info info = { "mx", "Q", "", 0, 0 };
	struct dsn_rcpt r = { "a@b", NULL, "failed", NULL, NULL, "x" };

	buf_init(&b, 1 << 16);
	/* never to the null sender: that is how bounce loops start */
	assert_int_equal(dsn_build(&b, &info, &r, 1, "", 0, &err), -1);
	info.sender = "a@b";
	assert_int_equal(dsn_build(&b, &info, &r, 0, "", 0, &err), -1);
	buf_free(&b);
	/* a bounded buffer: too large is an error, not a truncation */
	buf_init(&b, 100);
	assert_int_equal(dsn_build(&b, &info, &r, 1, test_orig,
	    sizeof(test_orig) - 1, &err), -1);
	buf_free(&b);
}

static void test_status_from_reply(void **st)
{
	char s[16];

	dsn_status_from_reply("550 5.7.1 relaying denied", s);
	assert_string_equal(s, "5.7.1");
	dsn_status_from_reply("554 no service", s);
	assert_string_equal(s, "5.0.0");
	dsn_status_from_reply("452-4.2.2 full", s);
	assert_string_equal(s, "4.2.2");
	dsn_status_from_reply("connection refused", s);
	assert_string_equal(s, "5.0.0");
	dsn_status_from_reply(NULL, s);
	assert_string_equal(s, "5.0.0");
}

static void test_headers_bare_lf_and_no_body(void **st)
{
	struct buf b;
	struct err err;
	struct dsn_info info = { "mx", "Q", "a@b", 0, 0 };
	struct dsn_rcpt r = { "c@d", NULL, "failed", "5.0.0", NULL, NULL };

	buf_init(&b, 1 << 16);
	assert_int_equal(dsn_build(&b, &info, &r, 1, "X: 1\nY: 2", 9, &err), 0);
	assert_non_null(strstr(b.p, "\r\n\r\nX: 1\r\nY: 2\r\n"));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_report_fields),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_status_from_reply),
		cmocka_unit_test(test_headers_bare_lf_and_no_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
