/* Fuzz target for mra/imap_fetch's renderer: one message's FETCH
 * response with every kind of item, for arbitrary message bytes. It must
 * be whole FETCH syntax (tests/fuzz/imap_syntax.h), and under a bound
 * that cuts it the render fails leaving the buffer as it was (issue #9).
 * Aborts otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "imap_fetch.h"
#include "mstore.h"
#include "imap_syntax.h"

static const char *const fuzz_items[] = {
	"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY",
	"BODYSTRUCTURE", "BODY.PEEK[HEADER.FIELDS (SUBJECT From)]",
	"BODY.PEEK[HEADER.FIELDS.NOT (\"To\")]", "BODY.PEEK[1.MIME]",
	"BODY.PEEK[1.2.HEADER]", "BODY.PEEK[2.TEXT]<3.40>", "BODY.PEEK[1]",
	"RFC822.HEADER", "RFC822.TEXT", "RFC822",
};
#define FUZZ_NITEMS (sizeof(fuzz_items) / sizeof(fuzz_items[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *kw[MSTORE_MAX_KEYWORDS] = { "$Junk", "a b", "(" };
	struct imap_arg a[FUZZ_NITEMS + 1];
	char s[FUZZ_NITEMS][64];
	struct imap_fetch *fe;
	struct imap_fetch_msg m;
	struct buf full, b;
	size_t i;
	int oom, rc;

	memset(a, 0, sizeof(a));
	a[0].type = IMAP_ARG_LIST;
	a[0].child = &a[1];
	for (i = 0; i < FUZZ_NITEMS; i++) {
		snprintf(s[i], sizeof(s[i]), "%s", fuzz_items[i]);
		a[i + 1].type = IMAP_ARG_ATOM;
		a[i + 1].s = s[i];
		a[i + 1].len = strlen(s[i]);
		a[i + 1].next = i + 1 < FUZZ_NITEMS ? &a[i + 2] : NULL;
	}
	fe = imap_fetch_parse(&a[0], 1, &oom);
	if (fe == NULL)
		abort();
	memset(&m, 0, sizeof(m));
	m.seq = 1;
	m.uid = 9;
	m.flags = size > 0 ? data[0] & 0x7f : 0;
	m.keywords = 7;
	m.kwnames = kw;
	m.internaldate = size > 8 ? (time_t)((uint64_t)data[1] << 56 | data[2]) : 0;
	m.vsize = size;
	m.data = (const char *)data;
	m.len = size;
	m.add_flags = 1;
	buf_init(&full, 0);
	if (imap_fetch_render(fe, &m, &full) != 0 ||
	    imap_syntax_fetch(full.p, full.len) != 0)
		abort();
	buf_init(&b, size > 0 ? 1 + (data[size - 1] * (full.len + 8)) / 256 : 1);
	rc = imap_fetch_render(fe, &m, &b);
	if (rc == 0 ? b.len != full.len || memcmp(b.p, full.p, full.len) != 0 :
	    b.len != 0)
		abort();
	buf_free(&b);
	buf_free(&full);
	imap_fetch_free(fe);
	return 0;
}
