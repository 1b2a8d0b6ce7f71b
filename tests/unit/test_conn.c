/* Tests for conn, the connection core: over socketpairs served by a real
 * libevent loop. Greeting and close after flush, caps per address and in
 * total with the polite refusal, a client that leaves while its session
 * is BUSY (the conn lives until conn_ready; with busy_detached it goes at
 * once), the timeout while BUSY (busy_detached), output back-pressure and
 * a client that never reads it, and command pacing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "conn.h"

struct test_sess {
	uint64_t id;
	int lines;
};

struct test_ctx {
	struct event_base *base;
	struct conn_server *srv;
	int opened, closed, closed_gone, refused, inputs, timeouts;
	int busy_on_line;            /* go BUSY when this line arrives */
	struct conn *busy;
	size_t echo_bytes;           /* bytes written per line */
	size_t staged;               /* conn_output_len() growth in STAGE */
};

static void *test_open(struct conn *c, void *arg)
{
	struct test_ctx *t = arg;
	struct test_sess *s = calloc(1, sizeof(*s));

	t->opened++;
	s->id = conn_id(c);
	conn_printf(c, "HELLO %s\n", conn_addr(c));
	return s;
}

static void test_refuse(struct conn *c, enum conn_refusal why, void *arg)
{
	struct test_ctx *t = arg;

	t->refused++;
	conn_printf(c, "BUSY %s\n", why == CONN_REFUSE_ADDR ? "addr" : "total");
}

static void test_input(struct conn *c, void *sess, void *arg)
{
	struct test_ctx *t = arg;
	struct test_sess *s = sess;
	struct evbuffer *in = bufferevent_get_input(conn_bev(c));
	char *line;
	size_t n;

	t->inputs++;
	while (conn_state(c) == CONN_ST_OPEN) {
		if (evbuffer_search_eol(in, NULL, &n, EVBUFFER_EOL_LF).pos < 0)
			return;
		if (conn_pace(c))
			return;
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
		s->lines++;
		if (strcmp(line, "STAGE") == 0) {
			/* output gathered in the callback counts as queued;
			 * conn_flush() puts it before what is added to the
			 * bufferevent directly (pop3's RETR body) */
			size_t before = conn_output_len(c);

			conn_printf(c, "A");
			t->staged = conn_output_len(c) - before;
			conn_flush(c);
			evbuffer_add(bufferevent_get_output(conn_bev(c)), "B", 1);
			conn_write(c, "C\n", 2);
		} else if (strcmp(line, "QUIT") == 0) {
			conn_printf(c, "BYE\n");
			conn_close(c);
		} else if (t->busy_on_line == s->lines) {
			conn_busy(c);
			t->busy = c;
		} else if (t->echo_bytes > 0) {
			char *big = malloc(t->echo_bytes);

			memset(big, 'x', t->echo_bytes);
			conn_write(c, big, t->echo_bytes);
			free(big);
		} else {
			conn_printf(c, "OK %s\n", line);
		}
		free(line);
	}
}

static void test_closed(struct conn *c, void *sess, int gone,
                        const char *why, void *arg)
{
	struct test_ctx *t = arg;

	t->closed++;
	t->closed_gone += gone;
	free(sess);
}

static void test_timeout(struct conn *c, void *sess, void *arg)
{
	struct test_ctx *t = arg;

	t->timeouts++;
	conn_printf(c, "TIMEOUT\n");
}

static const struct conn_ops test_ops = {
	.open = test_open, .refuse = test_refuse, .input = test_input,
	.timeout = test_timeout, .closed = test_closed,
};

static void test_setup_srv(struct test_ctx *t, const struct conn_settings *set)
{
	struct err err;

	memset(t, 0, sizeof(*t));
	t->base = event_base_new();
	assert_non_null(t->base);
	t->srv = conn_server_new(t->base, set, &test_ops, t, &err);
	assert_non_null(t->srv);
}

static void test_teardown_srv(struct test_ctx *t)
{
	conn_server_free(t->srv);
	event_base_free(t->base);
}

/* A client end; the server end is served as if from addr. */
static int test_connect(struct test_ctx *t, const char *addr)
{
	struct sockaddr_in sa;
	struct err err;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(40000);
	inet_pton(AF_INET, addr, &sa.sin_addr);
	assert_int_equal(conn_server_accept(t->srv, sv[1],
	    (struct sockaddr *)&sa, sizeof(sa), 0, &err), 0);
	return sv[0];
}

static void test_pump(struct test_ctx *t, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(t->base, &tv);
	event_base_dispatch(t->base);
}

/* Everything the server sent so far; *eof set when it closed. */
static size_t test_read(int fd, char *out, size_t n, int *eof)
{
	size_t got = 0;
	ssize_t r;

	*eof = 0;
	while (got + 1 < n) {
		r = read(fd, out + got, n - 1 - got);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0)
			*eof = 1;
		break;
	}
	out[got] = '\0';
	return got;
}

static void test_greet_echo_close(void **st)
{
	struct conn_settings set = { .service = "test" };
	struct test_ctx t;
	char buf[256];
	int fd, eof;

	test_setup_srv(&t, &set);
	fd = test_connect(&t, "192.0.2.1");
	assert_int_equal(write(fd, "a\nSTAGE\nb\nQUIT\nafter\n", 21), 21);
	test_pump(&t, 50);
	test_read(fd, buf, sizeof(buf), &eof);
	/* STAGE's three pieces in order (conn_flush() before the direct
	 * add), and what it gathered counted as queued meanwhile */
	assert_string_equal(buf, "HELLO 192.0.2.1\nOK a\nABC\nOK b\nBYE\n");
	assert_int_equal(t.staged, 1);
	/* the reply is out and the write side shut (FIN), the pipelined
	 * "after" is read and dropped until the client closes: no reset */
	assert_int_equal(eof, 1);
	assert_int_equal(t.closed, 0);
	close(fd);
	test_pump(&t, 50);
	assert_int_equal(t.closed, 1);
	assert_int_equal(t.closed_gone, 0);
	assert_int_equal(conn_server_count(t.srv), 0);
	test_teardown_srv(&t);
}

/* A client that never closes after the last reply is dropped once the
 * drain time (2 s) has passed. */
static void test_drain_bounded(void **st)
{
	struct conn_settings set = { .service = "test" };
	struct test_ctx t;
	char buf[256];
	int fd, eof;

	test_setup_srv(&t, &set);
	fd = test_connect(&t, "192.0.2.1");
	assert_int_equal(write(fd, "QUIT\n", 5), 5);
	test_pump(&t, 100);
	test_read(fd, buf, sizeof(buf), &eof);
	assert_int_equal(eof, 1);
	assert_int_equal(write(fd, "more\n", 5), 5);
	test_pump(&t, 1000);
	assert_int_equal(t.closed, 0);
	test_pump(&t, 1500);
	assert_int_equal(t.closed, 1);
	assert_int_equal(conn_server_count(t.srv), 0);
	close(fd);
	test_teardown_srv(&t);
}

static void test_caps(void **st)
{
	struct conn_settings set = { .service = "test", .max_per_addr = 2,
	                             .max_total = 3 };
	struct test_ctx t;
	char buf[256];
	int a1, a2, a3, b1, c1, eof;

	test_setup_srv(&t, &set);
	a1 = test_connect(&t, "192.0.2.1");
	a2 = test_connect(&t, "192.0.2.1");
	a3 = test_connect(&t, "192.0.2.1");
	test_pump(&t, 30);
	test_read(a3, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "BUSY addr\n");
	assert_int_equal(eof, 1);
	assert_int_equal(conn_server_count_addr(t.srv, "192.0.2.1"), 2);
	b1 = test_connect(&t, "192.0.2.2");
	c1 = test_connect(&t, "192.0.2.3");
	test_pump(&t, 30);
	test_read(b1, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "HELLO 192.0.2.2\n");
	test_read(c1, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "BUSY total\n");
	assert_int_equal(t.opened, 3);
	assert_int_equal(t.refused, 2);
	/* one leaves: its address may come back */
	close(a1);
	test_pump(&t, 30);
	assert_int_equal(conn_server_count_addr(t.srv, "192.0.2.1"), 1);
	close(a3);
	a3 = test_connect(&t, "192.0.2.1");
	test_pump(&t, 30);
	test_read(a3, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "HELLO 192.0.2.1\n");
	close(a2);
	close(a3);
	close(b1);
	close(c1);
	test_pump(&t, 30);
	assert_int_equal(conn_server_count(t.srv), 0);
	test_teardown_srv(&t);
}

static void test_busy_client_gone(void **st)
{
	struct conn_settings set = { .service = "test" };
	struct test_ctx t;
	uint64_t id;
	int fd;

	test_setup_srv(&t, &set);
	t.busy_on_line = 1;
	fd = test_connect(&t, "192.0.2.1");
	assert_int_equal(write(fd, "job\nnext\n", 9), 9);
	test_pump(&t, 30);
	assert_non_null(t.busy);
	id = conn_id(t.busy);
	close(fd);
	test_pump(&t, 30);
	/* BUSY: nothing read, nothing freed while the job is out */
	assert_int_equal(t.closed, 0);
	assert_ptr_equal(conn_find(t.srv, id), t.busy);
	assert_int_equal(conn_state(t.busy), CONN_ST_BUSY);
	/* the job comes back; reading resumes and finds the client gone */
	assert_int_equal(conn_ready(t.busy), 0);
	test_pump(&t, 30);
	assert_int_equal(t.closed, 1);
	assert_int_equal(t.closed_gone, 1);
	assert_null(conn_find(t.srv, id));
	test_teardown_srv(&t);
}

/* A client whose first line puts its conn BUSY (t->busy); what it sends
 * is `lines`. Returns its end once the greeting was read. */
static int test_busy_client(struct test_ctx *t, const char *lines)
{
	char buf[256];
	int fd, eof;

	t->busy_on_line = 1;
	fd = test_connect(t, "192.0.2.1");
	assert_int_equal(write(fd, lines, strlen(lines)), (ssize_t)strlen(lines));
	test_pump(t, 30);
	test_read(fd, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "HELLO 192.0.2.1\n");
	return fd;
}

static void test_busy_resumes_input(void **st)
{
	struct conn_settings set = { .service = "test" };
	struct test_ctx t;
	char buf[256];
	int fd, eof;

	test_setup_srv(&t, &set);
	fd = test_busy_client(&t, "job\nnext\n");
	/* pipelined "next" waits for the job, then runs */
	assert_int_equal(conn_ready(t.busy), 0);
	test_pump(&t, 30);
	test_read(fd, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "OK next\n");
	close(fd);
	test_pump(&t, 30);
	assert_int_equal(t.closed, 1);
	test_teardown_srv(&t);
}

/* An answer from outside the callbacks (a worker's, Redis's): between
 * conn_hold and conn_release output is gathered, and the release sends it
 * on the plain socket at once, without a loop turn; without the pair it
 * waits in the bufferevent for the loop. */
static void test_hold_sends_at_release(void **st)
{
	struct conn_settings set = { .service = "test" };
	struct test_ctx t;
	char buf[256];
	int fd, eof;

	test_setup_srv(&t, &set);
	fd = test_busy_client(&t, "job\n");
	conn_hold(t.busy);
	conn_printf(t.busy, "ONE\n");
	conn_hold(t.busy);              /* pairs nest */
	conn_printf(t.busy, "TWO\n");
	conn_release(t.busy);
	test_read(fd, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "");   /* still held by the outer pair */
	conn_release(t.busy);
	test_read(fd, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "ONE\nTWO\n");
	conn_printf(t.busy, "THREE\n");
	test_read(fd, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "");   /* the bufferevent waits for the loop */
	test_pump(&t, 30);
	test_read(fd, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "THREE\n");
	assert_int_equal(conn_ready(t.busy), 0);
	close(fd);
	test_pump(&t, 30);
	assert_int_equal(t.closed, 1);
	test_teardown_srv(&t);
}

static void test_output_backpressure(void **st)
{
	struct conn_settings set = { .service = "test", .write_hiwat = 4096 };
	struct test_ctx t;
	char buf[65536];
	int fd, eof, i, before;
	size_t got = 0;

	test_setup_srv(&t, &set);
	t.echo_bytes = 1 << 20;    /* each line asks for 1 MiB */
	fd = test_connect(&t, "192.0.2.1");
	for (i = 0; i < 4; i++)
		assert_int_equal(write(fd, "x\n", 2), 2);
	test_pump(&t, 50);
	/* the first answer is queued; the other three wait for it to drain */
	assert_int_equal(t.inputs, 1);
	before = t.inputs;
	for (i = 0; i < 200 && got < 4u << 20; i++) {
		got += test_read(fd, buf, sizeof(buf), &eof);
		test_pump(&t, 5);
	}
	assert_true(t.inputs > before);
	assert_int_equal((int)(got >> 20), 4);
	close(fd);
	test_pump(&t, 30);
	test_teardown_srv(&t);
}

/* Output over write_hiwat gathered in one callback pauses input; when
 * the socket takes all of it at once, nothing is left for the
 * bufferevent to drain, and input must still resume. */
static void test_backpressure_sent_at_once(void **st)
{
	struct conn_settings set = { .service = "test", .write_hiwat = 4096 };
	struct test_ctx t;
	char buf[65536];
	int fd, eof, i;
	size_t got = 0;

	test_setup_srv(&t, &set);
	t.echo_bytes = 8192;       /* over the mark, under the socket buffer */
	fd = test_connect(&t, "192.0.2.1");
	assert_int_equal(write(fd, "x\nx\n", 4), 4);
	for (i = 0; i < 20 && got < 2 * 8192 + 16; i++) {
		test_pump(&t, 20);
		got += test_read(fd, buf, sizeof(buf), &eof);
	}
	/* the greeting and both answers */
	assert_int_equal(got, strlen("HELLO 192.0.2.1\n") + 2 * 8192);
	assert_int_equal(t.inputs, 2);
	close(fd);
	test_pump(&t, 30);
	test_teardown_srv(&t);
}

static void test_pacing(void **st)
{
	struct conn_settings set = { .service = "test", .max_cmds_per_sec = 3 };
	struct test_ctx t;
	char buf[256];
	int fd, eof, n;

	test_setup_srv(&t, &set);
	fd = test_connect(&t, "192.0.2.1");
	assert_int_equal(write(fd, "1\n2\n3\n4\n5\n", 10), 10);
	test_pump(&t, 50);
	test_read(fd, buf, sizeof(buf), &eof);
	/* at most three commands in this second (four if it just turned) */
	n = (int)(strstr(buf, "OK 4") != NULL) + (int)(strstr(buf, "OK 3") != NULL);
	assert_non_null(strstr(buf, "OK 1"));
	assert_null(strstr(buf, "OK 5"));
	assert_true(n <= 2);
	test_pump(&t, 2100);
	test_read(fd, buf + strlen(buf), sizeof(buf) - strlen(buf), &eof);
	assert_non_null(strstr(buf, "OK 5"));
	close(fd);
	test_pump(&t, 30);
	test_teardown_srv(&t);
}

static void test_timeout_farewell(void **st)
{
	struct conn_settings set = { .service = "test", .timeout = 1 };
	struct test_ctx t;
	char buf[256];
	int fd, eof;

	test_setup_srv(&t, &set);
	fd = test_connect(&t, "192.0.2.1");
	test_pump(&t, 1300);
	test_read(fd, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "HELLO 192.0.2.1\nTIMEOUT\n");
	assert_int_equal(eof, 1);
	assert_int_equal(t.timeouts, 1);
	close(fd);
	test_pump(&t, 50);
	assert_int_equal(t.closed, 1);
	test_teardown_srv(&t);
}

/* busy_detached: a job that keeps the client waiting past the timeout
 * does not keep the conn; the farewell goes out, the id finds nothing. */
static void test_busy_detached_timeout(void **st)
{
	struct conn_settings set = { .service = "test", .timeout = 1,
	                             .busy_detached = 1 };
	struct test_ctx t;
	char buf[256];
	uint64_t id;
	int fd, eof;

	test_setup_srv(&t, &set);
	t.busy_on_line = 1;
	fd = test_connect(&t, "192.0.2.1");
	assert_int_equal(write(fd, "job\n", 4), 4);
	test_pump(&t, 30);
	assert_non_null(t.busy);
	id = conn_id(t.busy);
	assert_int_equal(conn_state(t.busy), CONN_ST_BUSY);
	test_pump(&t, 600);
	assert_int_equal(t.timeouts, 0);
	assert_ptr_equal(conn_find(t.srv, id), t.busy);
	test_pump(&t, 800);
	test_read(fd, buf, sizeof(buf), &eof);
	assert_string_equal(buf, "HELLO 192.0.2.1\nTIMEOUT\n");
	assert_int_equal(eof, 1);
	assert_int_equal(t.timeouts, 1);
	close(fd);
	test_pump(&t, 50);
	assert_int_equal(t.closed, 1);
	assert_int_equal(t.closed_gone, 0);
	assert_null(conn_find(t.srv, id));
	test_teardown_srv(&t);
}

/* busy_detached: the conn reads on while BUSY (nothing handed over), so
 * a client that leaves is seen and freed without waiting for the job. */
static void test_busy_detached_client_gone(void **st)
{
	struct conn_settings set = { .service = "test", .busy_detached = 1 };
	struct test_ctx t;
	uint64_t id;
	int fd;

	test_setup_srv(&t, &set);
	t.busy_on_line = 1;
	fd = test_connect(&t, "192.0.2.1");
	assert_int_equal(write(fd, "job\nnext\n", 9), 9);
	test_pump(&t, 30);
	assert_non_null(t.busy);
	id = conn_id(t.busy);
	/* "next" is read into the buffer but not handed over */
	assert_int_equal(t.inputs, 1);
	close(fd);
	test_pump(&t, 30);
	assert_int_equal(t.closed, 1);
	assert_int_equal(t.closed_gone, 1);
	assert_null(conn_find(t.srv, id));
	assert_int_equal(conn_server_count(t.srv), 0);
	test_teardown_srv(&t);
}

/* A client that pipelines and never reads: input stops at write_hiwat,
 * and after the timeout the conn goes (its read timeout cannot strike
 * while reading is off). */
static void test_unread_output_timeout(void **st)
{
	struct conn_settings set = { .service = "test", .timeout = 1,
	                             .write_hiwat = 4096, .linger_ms = 100 };
	struct test_ctx t;
	int fd, i, inputs;

	test_setup_srv(&t, &set);
	t.echo_bytes = 1 << 20;
	fd = test_connect(&t, "192.0.2.1");
	for (i = 0; i < 4; i++)
		assert_int_equal(write(fd, "x\n", 2), 2);
	test_pump(&t, 50);
	inputs = t.inputs;
	assert_int_equal(inputs, 1);
	test_pump(&t, 600);
	assert_int_equal(t.closed, 0);
	assert_int_equal(t.inputs, inputs);
	test_pump(&t, 900);
	assert_int_equal(t.timeouts, 1);
	assert_int_equal(t.closed, 1);
	assert_int_equal(conn_server_count(t.srv), 0);
	close(fd);
	test_teardown_srv(&t);
}

static void test_free_with_live_conns(void **st)
{
	struct conn_settings set = { .service = "test" };
	struct test_ctx t;
	int fd1, fd2;

	test_setup_srv(&t, &set);
	fd1 = test_connect(&t, "192.0.2.1");
	fd2 = test_connect(&t, "192.0.2.2");
	test_pump(&t, 20);
	conn_server_free(t.srv);
	assert_int_equal(t.closed, 2);
	event_base_free(t.base);
	close(fd1);
	close(fd2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greet_echo_close),
		cmocka_unit_test(test_drain_bounded),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_busy_client_gone),
		cmocka_unit_test(test_busy_resumes_input),
		cmocka_unit_test(test_hold_sends_at_release),
		cmocka_unit_test(test_output_backpressure),
		cmocka_unit_test(test_backpressure_sent_at_once),
		cmocka_unit_test(test_pacing),
		cmocka_unit_test(test_timeout_farewell),
		cmocka_unit_test(test_busy_detached_timeout),
		cmocka_unit_test(test_busy_detached_client_gone),
		cmocka_unit_test(test_unread_output_timeout),
		cmocka_unit_test(test_free_with_live_conns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
