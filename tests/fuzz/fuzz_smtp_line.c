/* Fuzz target: smtp_line framing and the DATA reader. Checks the
 * contracts: used never exceeds the input, output never exceeds input,
 * and splitting the input anywhere gives the same DATA result. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "smtp_line.h"

static void fuzz_smtp_line_check(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_smtp_line_lines(const char *p, size_t len)
{
	size_t off = 0, n, used;

	while (off < len) {
		enum smtp_rc rc = smtp_line_next(p + off, len - off, 512, &n, &used);

		if (rc == SMTP_ERR_TOO_LONG) {
			rc = smtp_line_skip(p + off, len - off, &used);
			fuzz_smtp_line_check(used <= len - off);
			off += used;
			continue;
		}
		if (rc != SMTP_OK)
			break;
		fuzz_smtp_line_check(used == n + 2 && used <= len - off);
		fuzz_smtp_line_check(p[off + n] == '\r' && p[off + n + 1] == '\n');
		fuzz_smtp_line_check(memchr(p + off, '\n', n) == NULL);
		off += used;
	}
}

/* Returns the rc; *olen_r / *used_r: totals over pieces of step bytes. */
static enum smtp_rc fuzz_smtp_line_data(const char *p, size_t len,
                                        size_t step, char *out,
                                        size_t *olen_r, size_t *used_r)
{
	struct smtp_line_data d;
	size_t off = 0, o = 0;
	enum smtp_rc rc = SMTP_NEED_MORE;

	smtp_line_data_init(&d);
	while (off < len && rc == SMTP_NEED_MORE) {
		size_t n = len - off < step ? len - off : step, ol, used;

		rc = smtp_line_data_feed(&d, p + off, n, out + o, &ol, &used);
		fuzz_smtp_line_check(used <= n && ol <= used + 1);
		o += ol;
		off += used;
	}
	fuzz_smtp_line_check(o <= off);
	*olen_r = o;
	*used_r = off;
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *a = malloc(size + 1), *b = malloc(size + 1);
	size_t la, ua, lb, ub;
	enum smtp_rc ra, rb;

	if (a == NULL || b == NULL) {
		free(a);
		free(b);
		return 0;
	}
	fuzz_smtp_line_lines((const char *)data, size);
	ra = fuzz_smtp_line_data((const char *)data, size, size ? size : 1, a,
	                         &la, &ua);
	rb = fuzz_smtp_line_data((const char *)data, size, 1 + size % 7, b,
	                         &lb, &ub);
	fuzz_smtp_line_check(ra == rb && la == lb && ua == ub);
	fuzz_smtp_line_check(memcmp(a, b, la) == 0);
	free(a);
	free(b);
	return 0;
}
