/* Fuzz target for the POP3 line reader (mra/pop3_cmd.c pop3_cmd_line, as
 * pop3_session.c drives it): the input is fed whole, then split in two at
 * every byte position, and must give the same lines and the same
 * too-long verdict; every line must fit a buffer of max bytes with its
 * NUL (the 8,193-byte bare-LF overflow). The first byte picks max. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../mra/pop3_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_pop3_run {
	char *out;          /* the lines, each followed by '\n' */
	size_t olen;
	int too_long;
};

/* The session's loop over what is buffered: returns 0 to wait for more,
 * -1 once the reader gave up on the connection. */
static int fuzz_pop3_drain(char *buf, size_t *len, size_t max,
			   struct fuzz_pop3_run *r)
{
	for (;;) {
		size_t n = *len < max ? *len : max, ll = 0, used = 0;
		enum pop3_rc rc;
		char *line;

		if (*len == 0)
			return 0;
		rc = pop3_cmd_line(buf, n, max, &ll, &used);
		if (rc == POP3_NEED_MORE)
			return 0;
		if (rc != POP3_OK) {
			r->too_long = 1;
			return -1;
		}
		if (ll >= max || used > n || used == 0 || ll >= used)
			abort();
		line = malloc(max);   /* exactly the session's buffer */
		if (line == NULL)
			abort();
		memcpy(line, buf, ll);
		line[ll] = '\0';
		memcpy(r->out + r->olen, line, ll);
		r->olen += ll;
		r->out[r->olen++] = '\n';
		free(line);
		memmove(buf, buf + used, *len - used);
		*len -= used;
	}
}

static void fuzz_pop3_feed(const char *in, size_t size, size_t split,
			   size_t max, struct fuzz_pop3_run *r)
{
	char *buf = malloc(size + 1);
	size_t len = 0;

	r->out = malloc(2 * size + 1);
	r->olen = 0;
	r->too_long = 0;
	if (buf == NULL || r->out == NULL)
		abort();
	memcpy(buf, in, split);
	len = split;
	if (fuzz_pop3_drain(buf, &len, max, r) == 0) {
		memcpy(buf + len, in + split, size - split);
		len += size - split;
		fuzz_pop3_drain(buf, &len, max, r);
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_pop3_run whole, part;
	size_t max, k;

	if (size < 1)
		return 0;
	max = 1 + data[0] % 64;
	data++;
	size--;
	fuzz_pop3_feed((const char *)data, size, size, max, &whole);
	for (k = 0; k < size; k++) {
		fuzz_pop3_feed((const char *)data, size, k, max, &part);
		if (part.too_long != whole.too_long || part.olen != whole.olen ||
		    memcmp(part.out, whole.out, whole.olen) != 0)
			abort();
		free(part.out);
	}
	free(whole.out);
	return 0;
}
