/* Fuzz target: the session's input framing (smtpd_input) over real
 * libevent evbuffers, fed the way the network delivers bytes: in one
 * piece, in 16384-byte pieces (a TLS record), at random split points, a
 * byte at a time, and behind an empty first chain (as bufferevent_openssl
 * can leave it). Each way must give the same transcript of lines, errors
 * and message bodies, and every call must make progress: the number of
 * calls is bounded by the bytes fed.
 * Input: byte 0 seeds the split points, byte 1 picks the line and message
 * limits, the rest is what the client sends ("DATA" switches to a body). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include "buf.h"
#include "smtp_line.h"
#include "smtpd_input.h"

enum fuzz_smtpd_input_how {
	FUZZ_IN_WHOLE, FUZZ_IN_TLS, FUZZ_IN_RANDOM, FUZZ_IN_BYTES,
	FUZZ_IN_EMPTY_TLS, FUZZ_IN_EMPTY_RANDOM, FUZZ_IN_N,
};

struct fuzz_smtpd_input {
	struct evbuffer *in;
	struct smtp_line_reader r;
	struct smtp_line_data d;
	struct buf msg, log;
	size_t max, limit;
	int data, too_big, closed;
	unsigned long calls, budget;
	char line[8192];
};

static void fuzz_smtpd_input_check(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_smtpd_input_log(struct fuzz_smtpd_input *f, char tag,
                                 const char *p, size_t n)
{
	char len[sizeof(size_t)];

	memcpy(len, &n, sizeof(n));
	if (buf_putc(&f->log, tag) < 0 || buf_append(&f->log, len,
	                                             sizeof(len)) < 0 ||
	    buf_append(&f->log, p, n) < 0)
		abort();
}

/* What smtpd_read_line / smtpd_read_data do with the bytes so far. */
static void fuzz_smtpd_input_run(struct fuzz_smtpd_input *f)
{
	enum smtp_rc rc;
	size_t n;

	while (!f->closed) {
		fuzz_smtpd_input_check(++f->calls <= f->budget);
		if (!f->data) {
			rc = smtpd_input_line(f->in, &f->r, f->max, f->line, &n);
			if (rc == SMTP_NEED_MORE)
				return;
			if (rc == SMTP_ERR_TOO_LONG) {
				fuzz_smtpd_input_log(f, 'T', NULL, 0);
				continue;
			}
			if (rc != SMTP_OK) {
				fuzz_smtpd_input_log(f, 'B', NULL, 0);
				f->closed = 1;
				return;
			}
			fuzz_smtpd_input_check(n < f->max);
			fuzz_smtpd_input_log(f, 'L', f->line, n);
			if (n == 4 && strncasecmp(f->line, "DATA", 4) == 0) {
				f->data = 1;
				f->too_big = 0;
				smtp_line_data_init(&f->d);
				buf_init(&f->msg, f->limit ? f->limit + 1 +
				         SMTP_LINE_DATA_HELD : 0);
			}
			continue;
		}
		rc = smtpd_input_data(f->in, &f->d, f->too_big ? NULL : &f->msg,
		                      256);
		if (rc == SMTP_NEED_MORE) {
			fuzz_smtpd_input_check(evbuffer_get_length(f->in) == 0);
			return;
		}
		if (rc == SMTP_ERR_TOO_LONG) {
			fuzz_smtpd_input_check(!f->too_big && f->limit > 0);
			f->too_big = 1;
			buf_free(&f->msg);
			continue;
		}
		fuzz_smtpd_input_check(f->msg.max == 0 ||
		                       f->msg.len <= f->msg.max);
		if (f->limit > 0 && f->msg.len > f->limit)
			f->too_big = 1;
		if (f->too_big)
			fuzz_smtpd_input_log(f, 'X', NULL, 0);
		else
			fuzz_smtpd_input_log(f, 'D', f->msg.p, f->msg.len);
		buf_free(&f->msg);
		f->data = 0;
	}
}

/* Add p[0..n) to in; with empty: behind an empty chain, as
 * bufferevent_openssl leaves it when it reserved space and the first of
 * its two vectors got no bytes. */
static void fuzz_smtpd_input_add(struct evbuffer *in, const char *p, size_t n,
                                 int empty)
{
	struct evbuffer_iovec v[2];
	size_t room;

	if (empty && evbuffer_get_length(in) == 0) {
		if (evbuffer_reserve_space(in, 16384, v, 1) < 1)
			abort();
		room = v[0].iov_len;
		v[0].iov_len = 0;
		evbuffer_commit_space(in, v, 1);
		if (evbuffer_reserve_space(in, (ev_ssize_t)(room + n), v, 2) == 2 &&
		    v[1].iov_len >= n) {
			v[0].iov_len = 0;
			memcpy(v[1].iov_base, p, n);
			v[1].iov_len = n;
			evbuffer_commit_space(in, v, 2);
			return;
		}
		evbuffer_commit_space(in, v, 0);
	}
	if (evbuffer_add(in, p, n) < 0)
		abort();
}

static uint32_t fuzz_smtpd_input_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void fuzz_smtpd_input_feed(struct fuzz_smtpd_input *f, const char *p,
                                  size_t len, enum fuzz_smtpd_input_how how,
                                  uint8_t seed)
{
	uint32_t x = 0x9e3779b9u ^ seed;
	size_t off = 0, n;
	int empty = how == FUZZ_IN_EMPTY_TLS || how == FUZZ_IN_EMPTY_RANDOM;

	while (off < len) {
		switch (how) {
		case FUZZ_IN_WHOLE:
			n = len;
			break;
		case FUZZ_IN_TLS:
		case FUZZ_IN_EMPTY_TLS:
			n = 16384;
			break;
		case FUZZ_IN_BYTES:
			n = 1;
			break;
		default:
			n = 1 + fuzz_smtpd_input_rand(&x) % 1500;
			break;
		}
		if (n > len - off)
			n = len - off;
		fuzz_smtpd_input_add(f->in, p + off, n, empty);
		off += n;
		/* per piece: a few calls that end it, one per byte used */
		f->budget += 2 * n + 4;
		fuzz_smtpd_input_run(f);
	}
}

static void fuzz_smtpd_input_once(const char *p, size_t len, size_t max,
                                  size_t limit, enum fuzz_smtpd_input_how how,
                                  uint8_t seed, struct buf *log_r,
                                  size_t *left_r)
{
	struct fuzz_smtpd_input *f = calloc(1, sizeof(*f));

	if (f == NULL || (f->in = evbuffer_new()) == NULL)
		abort();
	f->max = max;
	f->limit = limit;
	smtp_line_reader_init(&f->r, 0);
	buf_init(&f->msg, 0);
	buf_init(&f->log, 0);
	fuzz_smtpd_input_feed(f, p, len, how, seed);
	*left_r = f->closed ? 0 : evbuffer_get_length(f->in);
	*log_r = f->log;
	buf_free(&f->msg);
	evbuffer_free(f->in);
	free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t maxes[4] = { 512, 64, 2048, 8192 };
	static const size_t limits[4] = { 0, 16, 300, 5000 };
	struct buf want, got;
	size_t want_left, got_left, max, limit;
	int how;

	if (size < 2)
		return 0;
	max = maxes[data[1] & 3];
	limit = limits[(data[1] >> 2) & 3];
	fuzz_smtpd_input_once((const char *)data + 2, size - 2, max, limit,
	                      FUZZ_IN_WHOLE, data[0], &want, &want_left);
	for (how = FUZZ_IN_TLS; how < FUZZ_IN_N; how++) {
		fuzz_smtpd_input_once((const char *)data + 2, size - 2, max,
		                      limit, how, data[0], &got, &got_left);
		fuzz_smtpd_input_check(got.len == want.len && got_left == want_left);
		fuzz_smtpd_input_check(got.len == 0 ||
		                       memcmp(got.p, want.p, got.len) == 0);
		buf_free(&got);
	}
	buf_free(&want);
	return 0;
}
