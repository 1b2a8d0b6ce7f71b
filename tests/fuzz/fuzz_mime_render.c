/* Fuzz target for the IMAP renderers of shared/mime (ENVELOPE, BODY,
 * BODYSTRUCTURE; RFC 3501 §7.4.2) on arbitrary MIME input: the output is
 * one well-formed IMAP value (tests/fuzz/imap_syntax.h: parentheses
 * balanced outside quoted strings and literals, literal lengths right, no
 * NUL), and under a bound that cuts it the renderer fails leaving the
 * buffer as it was, never a cut-off list (issue #9). Aborts otherwise. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mime.h"
#include "imap_syntax.h"

static void fuzz_mime_render_one(const struct mime_tree *t, int what,
                                 size_t bound)
{
	struct buf full, b;
	int rc;

	buf_init(&full, 0);
	rc = what < 0 ? mime_envelope(t, 0, &full) :
	     mime_bodystructure(t, what, &full);
	if (rc != 0 || imap_syntax_one(full.p, full.len) != 0)
		abort();
	buf_init(&b, bound);
	rc = what < 0 ? mime_envelope(t, 0, &b) : mime_bodystructure(t, what, &b);
	if (rc == 0 ? b.len != full.len || memcmp(b.p, full.p, full.len) != 0 :
	    b.len != 0)
		abort();
	buf_free(&b);
	buf_free(&full);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_limits lim = { 8, 64 };
	struct mime_tree *t = NULL;
	struct err e;
	size_t bound;
	unsigned i;

	if (mime_parse((const char *)data, size, &lim, &t, &e) < 0)
		return 0;
	/* a bound from the input, somewhere around the output's size */
	bound = size > 0 ? 1 + (data[size - 1] * (size + 64)) / 128 : 1;
	fuzz_mime_render_one(t, -1, bound);
	fuzz_mime_render_one(t, 0, bound);
	fuzz_mime_render_one(t, 1, bound);
	/* every encapsulated message's own envelope too */
	for (i = 0; i < t->nparts; i++) {
		struct buf b;

		buf_init(&b, 0);
		if (mime_envelope(t, (int)i, &b) != 0 ||
		    imap_syntax_one(b.p, b.len) != 0)
			abort();
		buf_free(&b);
	}
	mime_tree_free(t);
	return 0;
}
