/* Fuzz target for shared/mime: parse, render ENVELOPE/BODYSTRUCTURE,
 * resolve sections and decode, on arbitrary bytes. The first line of the
 * input, when it starts with "S:", is used as a section spec. */
#include <stdint.h>
#include <string.h>
#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *specs[] = { "", "1", "1.2", "2.1.MIME", "1.HEADER",
		"TEXT", "3.2.1.TEXT", "HEADER.FIELDS (From To)", "1.1.1.1" };
	const char *msg = (const char *)data;
	struct mime_limits lim = { 8, 64 };
	struct mime_tree *t = NULL;
	struct buf b;
	struct err e;
	size_t i;

	if (mime_parse(msg, size, &lim, &t, &e) < 0)
		return 0;
	buf_init(&b, 1 << 20);
	mime_bodystructure(t, 1, &b);
	buf_reset(&b);
	mime_envelope(t, 0, &b);
	for (i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		buf_reset(&b);
		mime_section_fetch(t, specs[i], strlen(specs[i]), &b);
	}
	buf_reset(&b);
	mime_body_text(t, 0, &b);
	buf_reset(&b);
	mime_decode_header(msg, size < 4096 ? size : 4096, &b);
	buf_free(&b);
	mime_tree_free(t);
	return 0;
}
