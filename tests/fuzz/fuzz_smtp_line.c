/* Fuzz target: smtp_line framing and the DATA reader. Checks the
 * contracts: used never exceeds the input, a feed's output never exceeds
 * its input plus SMTP_LINE_DATA_HELD (each feed writes into a buffer of
 * exactly that size, so ASan sees one byte more), a whole body's output
 * never exceeds its input, and feeding the input in two pieces split at
 * every byte position, or a byte at a time, gives the one-piece result. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "smtp_line.h"

struct fuzz_smtp_line_res {
	enum smtp_rc rc;
	size_t olen, used;
	int flags;
	size_t lines;
};

static void fuzz_smtp_line_check(int cond)
{
	if (!cond)
		abort();
}

/* The session's reader over the whole input: every step progresses. */
static void fuzz_smtp_line_lines(const char *p, size_t len, size_t max,
                                 int bare_lf_ok)
{
	struct smtp_line_reader r;
	size_t off = 0, n, used;

	smtp_line_reader_init(&r, bare_lf_ok);
	while (off < len) {
		size_t take = len - off < max ? len - off : max;
		enum smtp_rc rc = smtp_line_read(&r, p + off, take, max, &n,
		                                 &used);

		fuzz_smtp_line_check(used <= take);
		if (rc == SMTP_OK) {
			fuzz_smtp_line_check(n < used && memchr(p + off, '\n', n) == NULL);
			fuzz_smtp_line_check(p[off + used - 1] == '\n');
			if (!bare_lf_ok)
				fuzz_smtp_line_check(used == n + 2 &&
				                     p[off + n] == '\r');
		} else if (rc == SMTP_ERR_TOO_LONG) {
			fuzz_smtp_line_check(used == max);
		} else if (rc == SMTP_NEED_MORE && used == 0) {
			/* only a partial line may wait */
			fuzz_smtp_line_check(take < max);
			break;
		} else if (rc != SMTP_NEED_MORE) {
			fuzz_smtp_line_check(used == 0);
			break;
		}
		off += used;
	}
}

/* One feed into an output buffer of exactly the size the contract asks. */
static enum smtp_rc fuzz_smtp_line_feed(struct smtp_line_data *d,
                                        const char *p, size_t n, char *acc,
                                        size_t *o, size_t *used_r)
{
	char *out = malloc(n + SMTP_LINE_DATA_HELD);
	size_t ol;
	enum smtp_rc rc;

	if (out == NULL)
		abort();
	rc = smtp_line_data_feed(d, p, n, out, &ol, used_r);
	fuzz_smtp_line_check(*used_r <= n && ol <= n + SMTP_LINE_DATA_HELD);
	fuzz_smtp_line_check(n == 0 || *used_r > 0);
	fuzz_smtp_line_check(rc == SMTP_OK || *used_r == n);
	memcpy(acc + *o, out, ol);
	*o += ol;
	free(out);
	return rc;
}

/* Feed p[0..len) in pieces: cut first (0: none), then step bytes. */
static void fuzz_smtp_line_data(const char *p, size_t len, size_t cut,
                                size_t step, char *acc,
                                struct fuzz_smtp_line_res *res)
{
	struct smtp_line_data d;
	size_t off = 0, o = 0, used;
	enum smtp_rc rc = SMTP_NEED_MORE;

	smtp_line_data_init(&d);
	if (cut > 0 && cut < len) {
		rc = fuzz_smtp_line_feed(&d, p, cut, acc, &o, &used);
		off = used;
	}
	while (off < len && rc == SMTP_NEED_MORE) {
		size_t n = len - off < step ? len - off : step;

		rc = fuzz_smtp_line_feed(&d, p + off, n, acc, &o, &used);
		off += used;
		fuzz_smtp_line_check(o <= off);   /* the whole body so far */
	}
	res->rc = rc;
	res->olen = o;
	res->used = off;
	res->flags = d.flags;
	res->lines = d.lines;
}

static void fuzz_smtp_line_same(const struct fuzz_smtp_line_res *a,
                                const char *ao,
                                const struct fuzz_smtp_line_res *b,
                                const char *bo)
{
	fuzz_smtp_line_check(a->rc == b->rc && a->olen == b->olen &&
	                     a->used == b->used && a->flags == b->flags &&
	                     a->lines == b->lines);
	fuzz_smtp_line_check(memcmp(ao, bo, a->olen) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	char *a = malloc(size + 1), *b = malloc(size + 1);
	struct fuzz_smtp_line_res ra, rb;
	size_t cut;

	if (a == NULL || b == NULL)
		abort();
	fuzz_smtp_line_lines(p, size, 512, 0);
	fuzz_smtp_line_lines(p, size, 512, 1);
	fuzz_smtp_line_lines(p, size, 64, 0);
	fuzz_smtp_line_data(p, size, 0, size ? size : 1, a, &ra);
	fuzz_smtp_line_data(p, size, 0, 1, b, &rb);
	fuzz_smtp_line_same(&ra, a, &rb, b);
	for (cut = 1; cut < size; cut++) {
		fuzz_smtp_line_data(p, size, cut, size, b, &rb);
		fuzz_smtp_line_same(&ra, a, &rb, b);
	}
	free(a);
	free(b);
	return 0;
}
