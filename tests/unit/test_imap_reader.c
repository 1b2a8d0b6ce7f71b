/* Unit tests for the IMAP command reader (mra/imap_parser.c
 * imap_reader_step): literals refused before their bytes (small ones only
 * before login), accepted with one "+", streamed out of memory for
 * APPEND, quota, bad lines skipped to their end and answered once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "../../mra/imap_parser.h"

/* before login: LOGIN and AUTHENTICATE only, 8 KiB literals */
static const struct imap_reader_policy test_prelogin = {
	.max_line = 1024, .max_literal = 8192, .max_command = 1024 + 8192,
	.max_stream = 0, .quota_left = UINT64_MAX,
};
/* after login: 16-byte literals in memory, APPEND streamed up to 1000 */
static const struct imap_reader_policy test_user = {
	.max_line = 1024, .max_literal = 16, .max_command = 1024 + 16,
	.max_stream = 1000, .quota_left = UINT64_MAX,
};

struct test_conn {
	struct imap_reader r;
	struct imap_arg args[32];
	char in[4096];
	size_t len;
	struct imap_reader_out o;
};

static void test_add(struct test_conn *c, const char *s, size_t n)
{
	memcpy(c->in + c->len, s, n);
	c->len += n;
}

static enum imap_reader_ev test_step(struct test_conn *c,
				     const struct imap_reader_policy *pol)
{
	return imap_reader_step(&c->r, pol, c->in, c->len, c->args, 32, &c->o);
}

static void test_drop(struct test_conn *c, size_t n)
{
	assert_true(n <= c->len);
	memmove(c->in, c->in + n, c->len - n);
	c->len -= n;
}

/* Issue #9: "a LOGIN {100000}" before login is refused at once: no "+",
 * no byte of it read, and the next command is served. */
static void test_prelogin_literal_refused(void **st)
{
	static struct test_conn c;
	const char *l = "a LOGIN {100000}\r\n";

	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_NO);
	assert_string_equal(c.o.tag, "a");
	assert_string_equal(c.o.code, "TOOBIG");
	assert_int_equal(c.o.used, strlen(l));
	test_drop(&c, c.o.used);
	test_add(&c, "b NOOP\r\n", 8);
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_COMMAND);
	assert_string_equal(c.o.tag, "b");
	test_drop(&c, c.o.used);
	/* RFC 7888 §4: a {n+} cannot be refused and stay in step */
	l = "c LOGIN {100000+}\r\n";
	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_FATAL);
	assert_string_equal(c.o.tag, "c");
	/* 8 KiB is fine */
	memset(&c, 0, sizeof(c));
	l = "d LOGIN {8192}\r\n";
	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_CONTINUE);
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_MORE);
}

static void test_literal_continue_once(void **st)
{
	static struct test_conn c;

	test_add(&c, "a LOGIN {5}\r\n", 13);
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_CONTINUE);
	assert_int_equal(c.o.literal_at, 13);
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_MORE);
	test_add(&c, "al", 2);
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_MORE);
	test_add(&c, "ice {0}\r\n", 9);
	/* a zero-length literal needs its "+" too, or the client waits */
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_CONTINUE);
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_MORE);
	test_add(&c, "\r\n", 2);
	assert_int_equal(test_step(&c, &test_prelogin), IMAP_RD_COMMAND);
	assert_int_equal(c.o.nargs, 3);
	assert_string_equal(c.args[1].s, "alice");
	assert_int_equal(c.args[2].len, 0);
	assert_int_equal(c.o.used, c.len);
	assert_int_equal(c.o.stream_at, 0);
}

/* A big APPEND message is streamed: the reader hands its bytes out as
 * they come, then parses the command with an empty literal in its place. */
static void test_append_streamed(void **st)
{
	static struct test_conn c;
	static const char msg[] = "Subject: x\r\n\r\n0123456789012345678\r\n";
	char line[64], kept[64];
	size_t at, got = 0, kl;

	snprintf(line, sizeof(line), "a APPEND INBOX (\\Seen) {%zu}\r\n",
		 strlen(msg));
	at = strlen(line);
	test_add(&c, line, at);
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_STREAM);
	assert_int_equal(c.o.used, at);
	assert_int_equal(c.o.cont, 1);
	assert_int_equal(c.o.literal_size, strlen(msg));
	assert_true(imap_reader_streaming(&c.r));
	memcpy(kept, c.in, at);
	kl = at;
	assert_non_null(strstr(kept, "{00}"));   /* same length, empty */
	test_drop(&c, at);
	test_add(&c, msg, 10);
	assert_int_equal(imap_reader_step(&c.r, NULL, NULL, c.len, NULL, 0,
					  &c.o), IMAP_RD_DATA);
	assert_int_equal(c.o.used, 10);
	assert_int_equal(c.o.last, 0);
	got += c.o.used;
	test_drop(&c, c.o.used);
	test_add(&c, msg + 10, strlen(msg) - 10);
	test_add(&c, "\r\nb NOOP\r\n", 10);
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_DATA);
	assert_int_equal(c.o.last, 1);
	got += c.o.used;
	assert_int_equal(got, strlen(msg));
	test_drop(&c, c.o.used);
	memmove(c.in + kl, c.in, c.len);
	memcpy(c.in, kept, kl);
	c.len += kl;
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_COMMAND);
	assert_int_equal(c.o.nargs, 4);
	assert_int_equal(c.o.stream_at, at);
	assert_int_equal(imap_arg_nth(c.args, 3)->type, IMAP_ARG_LITERAL);
	assert_ptr_equal(imap_arg_nth(c.args, 3)->s, c.in + at);
	assert_int_equal(imap_arg_nth(c.args, 3)->len, 0);
	test_drop(&c, c.o.used);
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_COMMAND);
	assert_string_equal(c.o.tag, "b");
}

static void test_append_limits(void **st)
{
	static struct test_conn c;
	struct imap_reader_policy q = test_user;
	const char *l;

	l = "a APPEND INBOX {1001}\r\n";
	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_NO);
	assert_string_equal(c.o.code, "TOOBIG");
	assert_string_equal(c.o.text, "Message too large");
	test_drop(&c, c.o.used);
	/* RFC 9208 §4.3: over quota, refused before it is sent */
	q.quota_left = 10;
	l = "b APPEND INBOX {11}\r\n";
	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &q), IMAP_RD_NO);
	assert_string_equal(c.o.code, "OVERQUOTA");
	test_drop(&c, c.o.used);
	/* not APPEND: literals stay small after login too */
	l = "c SEARCH TEXT {17}\r\n";
	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_NO);
	assert_string_equal(c.o.text, "Literal too big");
	test_drop(&c, c.o.used);
	/* one message per APPEND is streamed; a second big one is refused */
	memset(&c, 0, sizeof(c));
	l = "d APPEND INBOX {17}\r\n";
	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_STREAM);
	test_drop(&c, c.o.used);
	test_add(&c, "01234567890123456", 17);
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_DATA);
	assert_int_equal(c.o.last, 1);
	test_drop(&c, 17);
	l = "d APPEND INBOX {00}\r\n {17}\r\n";   /* with the kept part */
	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_NO);
	assert_string_equal(c.o.tag, "d");
}

/* A line over the limit gets one BAD when it ends, whether it came whole
 * or a byte at a time, and the next command is read normally. */
static void test_long_line_bytewise(void **st)
{
	static struct test_conn c;
	static char in[3000];
	size_t n, i, bad = 0, cmd = 0;

	n = (size_t)snprintf(in, sizeof(in), "a NOOP ");
	memset(in + n, 'x', 2000);
	n += 2000;
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\nb NOOP\r\n");
	for (i = 0; i < n; i++) {
		enum imap_reader_ev ev;

		test_add(&c, in + i, 1);
		while ((ev = test_step(&c, &test_user)) != IMAP_RD_MORE) {
			if (ev == IMAP_RD_BAD) {
				bad++;
				assert_string_equal(c.o.tag, "a");
				assert_int_equal(c.o.err,
						 IMAP_PERR_LINE_TOO_LONG);
			} else if (ev == IMAP_RD_COMMAND) {
				cmd++;
				assert_string_equal(c.o.tag, "b");
			} else {
				assert_int_equal(ev, IMAP_RD_DROP);
			}
			test_drop(&c, c.o.used);
			assert_true(c.len <= 1024 + 2);   /* bounded */
		}
	}
	assert_int_equal(bad, 1);
	assert_int_equal(cmd, 1);
	assert_int_equal(c.len, 0);
	/* fed whole: the same answer */
	memset(&c, 0, sizeof(c));
	test_add(&c, in, n);
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_BAD);
	assert_int_equal(c.o.err, IMAP_PERR_LINE_TOO_LONG);
	test_drop(&c, c.o.used);
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_COMMAND);
}

/* A bad line that ends in {n+}: its bytes would be read as commands. */
static void test_bad_line_nonsync_fatal(void **st)
{
	static struct test_conn c;
	const char *l = "a X ) {3+}\r\nabc\r\n";

	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_FATAL);
	memset(&c, 0, sizeof(c));
	l = "a X ) {3}\r\n";
	test_add(&c, l, strlen(l));
	assert_int_equal(test_step(&c, &test_user), IMAP_RD_BAD);
	assert_int_equal(c.o.used, strlen(l));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prelogin_literal_refused),
		cmocka_unit_test(test_literal_continue_once),
		cmocka_unit_test(test_append_streamed),
		cmocka_unit_test(test_append_limits),
		cmocka_unit_test(test_long_line_bytewise),
		cmocka_unit_test(test_bad_line_nonsync_fatal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
