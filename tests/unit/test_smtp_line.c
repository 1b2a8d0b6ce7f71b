/* smtp_line: CRLF framing and the DATA reader, fed whole and a byte at a
 * time (the session may see any split of the input). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "smtp_line.h"

static void test_line_ok(void **st)
{
	size_t n, used;

	assert_int_equal(smtp_line_next("NOOP\r\nQUIT\r\n", 12, 512, &n, &used),
	                 SMTP_OK);
	assert_int_equal(n, 4);
	assert_int_equal(used, 6);
	assert_int_equal(smtp_line_next("\r\n", 2, 512, &n, &used), SMTP_OK);
	assert_int_equal(n, 0);
	assert_int_equal(used, 2);
}

static void test_line_need_more(void **st)
{
	size_t n, used;

	assert_int_equal(smtp_line_next("NOOP", 4, 512, &n, &used), SMTP_NEED_MORE);
	assert_int_equal(smtp_line_next("NOOP\r", 5, 512, &n, &used), SMTP_NEED_MORE);
	assert_int_equal(smtp_line_next("", 0, 512, &n, &used), SMTP_NEED_MORE);
}

static void test_bare_lf_refused(void **st)
{
	size_t n, used;

	assert_int_equal(smtp_line_next("RSET\n", 5, 512, &n, &used), SMTP_ERR_BARE_LF);
	assert_int_equal(smtp_line_next("\n", 1, 512, &n, &used), SMTP_ERR_BARE_LF);
}

static void test_bare_cr_refused(void **st)
{
	size_t n, used;

	assert_int_equal(smtp_line_next("RS\rET\r\n", 7, 512, &n, &used),
	                 SMTP_ERR_BARE_CR);
	assert_int_equal(smtp_line_next("RSET\r\r\n", 7, 512, &n, &used),
	                 SMTP_ERR_BARE_CR);
}

static void test_too_long(void **st)
{
	char big[600];
	size_t n, used;

	memset(big, 'A', sizeof(big));
	assert_int_equal(smtp_line_next(big, sizeof(big), 512, &n, &used),
	                 SMTP_ERR_TOO_LONG);
	/* exactly max with CRLF is fine */
	big[510] = '\r';
	big[511] = '\n';
	assert_int_equal(smtp_line_next(big, sizeof(big), 512, &n, &used), SMTP_OK);
	assert_int_equal(n, 510);
	/* one more byte is not */
	big[510] = 'A';
	big[511] = '\r';
	big[512] = '\n';
	assert_int_equal(smtp_line_next(big, sizeof(big), 512, &n, &used),
	                 SMTP_ERR_TOO_LONG);
	/* and it does not wait for more once max bytes are there */
	assert_int_equal(smtp_line_next(big, 512, 512, &n, &used),
	                 SMTP_ERR_TOO_LONG);
}

/* Feed a stream a byte at a time: the verdict at each prefix must agree
 * with the one for the whole input. */
static void test_line_bytewise(void **st)
{
	const char *in = "EHLO x\r\nMAIL FROM:<a@b>\r\n";
	size_t len = strlen(in), i, n, used;

	for (i = 1; i < 8; i++)
		assert_int_equal(smtp_line_next(in, i, 512, &n, &used),
		                 SMTP_NEED_MORE);
	assert_int_equal(smtp_line_next(in, 8, 512, &n, &used), SMTP_OK);
	assert_int_equal(used, 8);
	for (i = 9; i < len; i++)
		assert_int_equal(smtp_line_next(in + 8, i - 8, 512, &n, &used),
		                 SMTP_NEED_MORE);
	assert_int_equal(smtp_line_next(in + 8, len - 8, 512, &n, &used), SMTP_OK);
	assert_int_equal(n, strlen("MAIL FROM:<a@b>"));
}

static void test_skip(void **st)
{
	size_t used;

	assert_int_equal(smtp_line_skip("xxxx", 4, &used), SMTP_NEED_MORE);
	assert_int_equal(used, 4);
	assert_int_equal(smtp_line_skip("xx\nNOOP", 7, &used), SMTP_OK);
	assert_int_equal(used, 3);
}

/* Run the DATA reader over in, split in pieces of step bytes. Returns the
 * rc of the last call; out gets the message, *used_r what was consumed. */
static enum smtp_rc data_run(const char *in, size_t len, size_t step,
                             char *out, size_t *outlen_r, size_t *used_r,
                             int *flags_r)
{
	struct smtp_line_data d;
	size_t off = 0, o = 0;
	enum smtp_rc rc = SMTP_NEED_MORE;

	smtp_line_data_init(&d);
	while (off < len && rc == SMTP_NEED_MORE) {
		size_t n = len - off < step ? len - off : step, ol, used;

		rc = smtp_line_data_feed(&d, in + off, n, out + o, &ol, &used);
		o += ol;
		off += used;
	}
	*outlen_r = o;
	*used_r = off;
	*flags_r = d.flags;
	return rc;
}

static void data_expect(const char *in, const char *want, size_t want_used,
                        int want_flags)
{
	size_t len = strlen(in), step;

	for (step = 1; step <= len; step++) {
		char out[1024];
		size_t olen, used;
		int flags;
		enum smtp_rc rc = data_run(in, len, step, out, &olen, &used, &flags);

		if (want == NULL) {
			assert_int_equal(rc, SMTP_NEED_MORE);
		} else {
			assert_int_equal(rc, SMTP_OK);
			assert_int_equal(olen, strlen(want));
			assert_memory_equal(out, want, olen);
			assert_int_equal(used, want_used);
		}
		assert_int_equal(flags, want_flags);
	}
}

static void test_data_simple(void **st)
{
	data_expect("Subject: x\r\n\r\nbody\r\n.\r\n",
	            "Subject: x\r\n\r\nbody\r\n", 23, 0);
	/* an empty message */
	data_expect(".\r\n", "", 3, 0);
	/* what follows the end is not consumed */
	data_expect("a\r\n.\r\nQUIT\r\n", "a\r\n", 6, 0);
}

static void test_data_unstuff(void **st)
{
	/* RFC 5321 §4.5.2 */
	data_expect("..\r\n...x\r\n.y\r\n.\r\n", ".\r\n..x\r\ny\r\n", 17, 0);
	/* a dot not at the start of a line stays */
	data_expect("a.\r\n.\r\n", "a.\r\n", 7, 0);
}

static void test_data_smuggling(void **st)
{
	/* "<LF>.<LF>", "<LF>.<CRLF>", "<CR>.<CR>" never end the data */
	data_expect("a\n.\nMAIL FROM:<x>\r\n", NULL, 0, SMTP_LINE_DATA_BARE_LF);
	data_expect("a\n.\r\nRCPT TO:<x>\r\n", NULL, 0, SMTP_LINE_DATA_BARE_LF);
	data_expect("a\r.\rb", NULL, 0, SMTP_LINE_DATA_BARE_CR);
	data_expect("a\r\n.\nb", NULL, 0, SMTP_LINE_DATA_BARE_LF);
	/* the real end still works after them, and keeps the bytes */
	data_expect("a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", 10,
	            SMTP_LINE_DATA_BARE_LF);
	data_expect("a\r\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", 11,
	            SMTP_LINE_DATA_BARE_CR);
}

static void test_data_8bit_binary(void **st)
{
	const char in[] = "\xc3\xa9t\xc3\xa9\x00\xff\r\n.\r\n";
	char out[32];
	size_t olen, used;
	int flags;

	assert_int_equal(data_run(in, sizeof(in) - 1, 1, out, &olen, &used,
	                          &flags), SMTP_OK);
	assert_int_equal(olen, 9);
	assert_memory_equal(out, "\xc3\xa9t\xc3\xa9\x00\xff\r\n", 9);
	assert_int_equal(flags, 0);
}

static void test_data_discard(void **st)
{
	struct smtp_line_data d;
	size_t ol, used;

	smtp_line_data_init(&d);
	assert_int_equal(smtp_line_data_feed(&d, "xxx\r\n..\r\n", 9, NULL, &ol,
	                                     &used), SMTP_NEED_MORE);
	assert_int_equal(used, 9);
	assert_int_equal(smtp_line_data_feed(&d, ".\r\nNOOP", 7, NULL, &ol,
	                                     &used), SMTP_OK);
	assert_int_equal(used, 3);
	assert_int_equal(d.lines, 2);
}

/* Issue #9: "<CRLF>.<CR>" ends one read, the next starts with a byte other
 * than LF. The held CR comes out with the second feed: one byte more than
 * that feed's input, which SMTP_LINE_DATA_HELD announces. */
static void test_data_held_cr_across_feeds(void **st)
{
	struct smtp_line_data d;
	size_t ol, used, total_in = 0, total_out = 0;
	char *out;

	smtp_line_data_init(&d);
	out = malloc(5 + SMTP_LINE_DATA_HELD);
	assert_non_null(out);
	assert_int_equal(smtp_line_data_feed(&d, "a\r\n.\r", 5, out, &ol,
	                                     &used), SMTP_NEED_MORE);
	assert_int_equal(used, 5);
	assert_int_equal(ol, 3);
	assert_memory_equal(out, "a\r\n", 3);
	total_in += used;
	total_out += ol;
	free(out);
	/* exactly what the contract asks for: ASan sees any byte more */
	out = malloc(1 + SMTP_LINE_DATA_HELD);
	assert_non_null(out);
	assert_int_equal(smtp_line_data_feed(&d, "x", 1, out, &ol, &used),
	                 SMTP_NEED_MORE);
	assert_int_equal(used, 1);
	assert_int_equal(ol, 2);
	assert_true(ol <= used + SMTP_LINE_DATA_HELD);
	assert_memory_equal(out, "\rx", 2);
	assert_int_equal(d.flags, SMTP_LINE_DATA_BARE_CR);
	total_in += used;
	total_out += ol;
	free(out);
	/* over the whole body, output never exceeds input */
	assert_true(total_out <= total_in);
	out = malloc(5 + SMTP_LINE_DATA_HELD);
	assert_non_null(out);
	assert_int_equal(smtp_line_data_feed(&d, "\r\n.\r\n", 5, out, &ol,
	                                     &used), SMTP_OK);
	assert_int_equal(ol, 2);
	assert_int_equal(used, 5);
	free(out);
}

/* "." CR then LF in the next feed: the end of data, nothing held comes
 * out; "." CR then CR: the first CR is bare, the second may end a line. */
static void test_data_held_cr_variants(void **st)
{
	struct smtp_line_data d;
	char out[16];
	size_t ol, used;

	smtp_line_data_init(&d);
	assert_int_equal(smtp_line_data_feed(&d, ".\r", 2, out, &ol, &used),
	                 SMTP_NEED_MORE);
	assert_int_equal(ol, 0);
	assert_int_equal(smtp_line_data_feed(&d, "\nX", 2, out, &ol, &used),
	                 SMTP_OK);
	assert_int_equal(ol, 0);
	assert_int_equal(used, 1);

	smtp_line_data_init(&d);
	assert_int_equal(smtp_line_data_feed(&d, ".\r", 2, out, &ol, &used),
	                 SMTP_NEED_MORE);
	assert_int_equal(smtp_line_data_feed(&d, "\r", 1, out, &ol, &used),
	                 SMTP_NEED_MORE);
	assert_int_equal(ol, 2);
	assert_memory_equal(out, "\r\r", 2);
	assert_int_equal(smtp_line_data_feed(&d, "\n.\r\n", 4, out, &ol,
	                                     &used), SMTP_OK);
	assert_int_equal(ol, 1);
	assert_int_equal(used, 4);
	assert_int_equal(d.flags, SMTP_LINE_DATA_BARE_CR);
}

/* The session's reader: progress on every step, whatever the pieces. */
static void test_reader_skip_progress(void **st)
{
	struct smtp_line_reader r;
	char big[1200];
	size_t n, used;

	smtp_line_reader_init(&r, 0);
	memset(big, 'x', sizeof(big));
	assert_int_equal(smtp_line_read(&r, big, sizeof(big), 512, &n, &used),
	                 SMTP_ERR_TOO_LONG);
	assert_int_equal(used, 512);
	/* the rest of the line goes in pieces, one byte at a time too */
	assert_int_equal(smtp_line_read(&r, big, 1, 512, &n, &used),
	                 SMTP_NEED_MORE);
	assert_int_equal(used, 1);
	assert_int_equal(smtp_line_read(&r, big, 600, 512, &n, &used),
	                 SMTP_NEED_MORE);
	assert_int_equal(used, 600);
	assert_int_equal(smtp_line_read(&r, "yy\r\nNOOP\r\n", 12, 512, &n,
	                                &used), SMTP_NEED_MORE);
	assert_int_equal(used, 4);
	assert_int_equal(smtp_line_read(&r, "NOOP\r\n", 6, 512, &n, &used),
	                 SMTP_OK);
	assert_int_equal(n, 4);
	assert_int_equal(used, 6);
	/* a partial line waits, without taking anything */
	assert_int_equal(smtp_line_read(&r, "NO", 2, 512, &n, &used),
	                 SMTP_NEED_MORE);
	assert_int_equal(used, 0);
	assert_int_equal(smtp_line_read(&r, "", 0, 512, &n, &used),
	                 SMTP_NEED_MORE);
	assert_int_equal(used, 0);
}

static void test_reader_bare_lf(void **st)
{
	struct smtp_line_reader r;
	size_t n, used;

	smtp_line_reader_init(&r, 0);
	assert_int_equal(smtp_line_read(&r, "NOOP\nX", 6, 512, &n, &used),
	                 SMTP_ERR_BARE_LF);
	assert_int_equal(used, 0);
	smtp_line_reader_init(&r, 1);
	assert_int_equal(smtp_line_read(&r, "NOOP\nX", 6, 512, &n, &used),
	                 SMTP_OK);
	assert_int_equal(n, 4);
	assert_int_equal(used, 5);
	/* a bare CR stays refused */
	assert_int_equal(smtp_line_read(&r, "NO\rOP\n", 7, 512, &n, &used),
	                 SMTP_ERR_BARE_CR);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_line_ok),
		cmocka_unit_test(test_line_need_more),
		cmocka_unit_test(test_bare_lf_refused),
		cmocka_unit_test(test_bare_cr_refused),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_line_bytewise),
		cmocka_unit_test(test_skip),
		cmocka_unit_test(test_data_simple),
		cmocka_unit_test(test_data_unstuff),
		cmocka_unit_test(test_data_smuggling),
		cmocka_unit_test(test_data_8bit_binary),
		cmocka_unit_test(test_data_discard),
		cmocka_unit_test(test_data_held_cr_across_feeds),
		cmocka_unit_test(test_data_held_cr_variants),
		cmocka_unit_test(test_reader_skip_progress),
		cmocka_unit_test(test_reader_bare_lf),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
