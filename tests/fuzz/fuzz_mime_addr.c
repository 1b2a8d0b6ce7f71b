/* Fuzz target for shared/mime_addr (RFC 5322 §3.4 address lists, item by
 * item) and mime_search_addr: on any bytes the parser ends within len + 2
 * items, groups open and close in turn and never nest, no part holds CR
 * or LF (they are unfolded away), and the SEARCH text under a bound that
 * cuts it fails leaving the buffer as it was. Aborts otherwise. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mime.h"
#include "mime_addr.h"

static void fuzz_mime_addr_part(const struct buf *b)
{
	if (b->len > 0 && (memchr(b->p, '\r', b->len) != NULL ||
	                   memchr(b->p, '\n', b->len) != NULL))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *v = (const char *)data;
	struct mime_addr_parser ap;
	struct mime_addr a;
	struct buf full, b;
	size_t items = 0, bound;
	int r, in_group = 0;

	mime_addr_parser_init(&ap, v, size);
	mime_addr_init(&a);
	while ((r = mime_addr_next(&ap, &a)) > 0) {
		if (++items > size + 2)
			abort();
		if (a.kind == MIME_ADDR_GROUP_START) {
			if (in_group)
				abort();
			in_group = 1;
		} else if (a.kind == MIME_ADDR_GROUP_END) {
			if (!in_group)
				abort();
			in_group = 0;
		}
		fuzz_mime_addr_part(&a.name);
		fuzz_mime_addr_part(&a.route);
		fuzz_mime_addr_part(&a.local);
		fuzz_mime_addr_part(&a.domain);
	}
	if (r != 0 || in_group || mime_addr_next(&ap, &a) != 0)
		abort();
	mime_addr_free(&a);

	buf_init(&full, 0);
	if (mime_search_addr(v, size, &full) != 0)
		abort();
	bound = size > 0 ? 1 + (data[size - 1] * (full.len + 8)) / 128 : 1;
	buf_init(&b, bound);
	r = mime_search_addr(v, size, &b);
	if (r == 0 ? b.len != full.len || memcmp(b.p, full.p, full.len) != 0 :
	    b.len != 0)
		abort();
	buf_free(&b);
	buf_free(&full);
	return 0;
}
