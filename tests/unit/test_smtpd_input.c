/* smtpd_input: the session's framing over real libevent evbuffers laid
 * out as bufferevent_openssl can leave them (an empty chain in front),
 * where the old skip loop drained 0 bytes for ever (issue #9). alarm()
 * turns such a spin into a failure. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include "buf.h"
#include "smtpd_input.h"

/* in gets p[0..n) behind an empty first chain; checked by a peek. */
static void add_behind_empty(struct evbuffer *in, const char *p, size_t n)
{
	struct evbuffer_iovec v[2];
	size_t room;

	assert_int_equal(evbuffer_get_length(in), 0);
	assert_true(evbuffer_reserve_space(in, 16384, v, 1) >= 1);
	room = v[0].iov_len;
	v[0].iov_len = 0;
	evbuffer_commit_space(in, v, 1);
	assert_int_equal(evbuffer_reserve_space(in, (ev_ssize_t)(room + n), v,
	                                        2), 2);
	assert_true(v[1].iov_len >= n);
	v[0].iov_len = 0;
	memcpy(v[1].iov_base, p, n);
	v[1].iov_len = n;
	assert_int_equal(evbuffer_commit_space(in, v, 2), 0);
	assert_int_equal(evbuffer_peek(in, -1, NULL, v, 2), 2);
	assert_int_equal(v[0].iov_len, 0);
}

static void test_line_skip_behind_empty_chain(void **st)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_line_reader r;
	char line[512], *big = malloc(10000);
	size_t n;

	assert_non_null(big);
	memset(big, 'x', 10000);
	memcpy(big, "NOOP ", 5);
	smtp_line_reader_init(&r, 0);
	alarm(10);
	add_behind_empty(in, big, 10000);
	assert_int_equal(smtpd_input_line(in, &r, 512, line, &n),
	                 SMTP_ERR_TOO_LONG);
	/* the rest of the line: all dropped, none of it a command */
	assert_int_equal(smtpd_input_line(in, &r, 512, line, &n),
	                 SMTP_NEED_MORE);
	assert_int_equal(evbuffer_get_length(in), 0);
	/* more of the same line, again behind an empty chain */
	add_behind_empty(in, big, 3000);
	assert_int_equal(smtpd_input_line(in, &r, 512, line, &n),
	                 SMTP_NEED_MORE);
	assert_int_equal(evbuffer_get_length(in), 0);
	add_behind_empty(in, "xx\r\nNOOP\r\nRS", 12);
	assert_int_equal(smtpd_input_line(in, &r, 512, line, &n), SMTP_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(line, "NOOP", 4);
	assert_int_equal(smtpd_input_line(in, &r, 512, line, &n),
	                 SMTP_NEED_MORE);
	assert_int_equal(evbuffer_get_length(in), 2);
	alarm(0);
	evbuffer_free(in);
	free(big);
}

static void test_line_bare_lf_not_drained(void **st)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_line_reader r;
	char line[512];
	size_t n;

	smtp_line_reader_init(&r, 0);
	add_behind_empty(in, "NOOP\nQUIT\r\n", 11);
	assert_int_equal(smtpd_input_line(in, &r, 512, line, &n),
	                 SMTP_ERR_BARE_LF);
	assert_int_equal(evbuffer_get_length(in), 11);
	evbuffer_free(in);
}

static void test_data_behind_empty_chain(void **st)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_line_data d;
	struct buf msg;

	smtp_line_data_init(&d);
	buf_init(&msg, 0);
	alarm(10);
	add_behind_empty(in, "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", 29);
	assert_int_equal(smtpd_input_data(in, &d, &msg, 64), SMTP_OK);
	assert_int_equal(msg.len, 20);
	assert_string_equal(msg.p, "Subject: x\r\n\r\nbody\r\n");
	assert_int_equal(evbuffer_get_length(in), 6);
	alarm(0);
	buf_free(&msg);
	evbuffer_free(in);
}

/* The message buffer never grows past its max, even when a read ends in
 * "." CR and the next brings the held CR out; over it: TOO_LONG, then the
 * caller reads on without a buffer and stays in sync. */
static void test_data_capped(void **st)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_line_data d;
	struct buf msg;

	smtp_line_data_init(&d);
	/* a body limit of 8: max = limit + 1 + SMTP_LINE_DATA_HELD */
	buf_init(&msg, 8 + 1 + SMTP_LINE_DATA_HELD);
	evbuffer_add(in, "abcdef\r\n.\r", 10);
	assert_int_equal(smtpd_input_data(in, &d, &msg, 4), SMTP_NEED_MORE);
	assert_int_equal(msg.len, 8);
	evbuffer_add(in, "\n", 1);
	assert_int_equal(smtpd_input_data(in, &d, &msg, 4), SMTP_OK);
	assert_int_equal(msg.len, 8);   /* exactly the limit: taken */
	buf_free(&msg);

	smtp_line_data_init(&d);
	buf_init(&msg, 8 + 1 + SMTP_LINE_DATA_HELD);
	evbuffer_add(in, "abcdef\r\n.\r", 10);
	assert_int_equal(smtpd_input_data(in, &d, &msg, 4), SMTP_NEED_MORE);
	evbuffer_add(in, "xyz\r\n.\r\nNOOP\r\n", 14);
	assert_int_equal(smtpd_input_data(in, &d, &msg, 4), SMTP_ERR_TOO_LONG);
	assert_true(msg.len <= msg.max && msg.len > 8);
	assert_true(msg.cap <= msg.max + 1);
	buf_free(&msg);
	assert_int_equal(smtpd_input_data(in, &d, NULL, 0), SMTP_OK);
	assert_int_equal(evbuffer_get_length(in), 6);
	evbuffer_free(in);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_line_skip_behind_empty_chain),
		cmocka_unit_test(test_line_bare_lf_not_drained),
		cmocka_unit_test(test_data_behind_empty_chain),
		cmocka_unit_test(test_data_capped),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
