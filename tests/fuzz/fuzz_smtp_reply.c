/* Fuzz target for the SMTP reply parser: parse replies back to back as a
 * client would, walk their lines and EHLO keywords, and check that every
 * output stays inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0, used, pos, tl, pl;
	struct smtp_reply r;
	const char *t, *p;

	while (off < size) {
		if (smtp_reply_parse(buf + off, size - off, 2048, &r, &used) !=
		    SMTP_REPLY_OK)
			break;
		if (used == 0 || used > size - off || r.last < buf + off ||
		    r.last + r.lastlen > buf + off + used)
			abort();
		pos = 0;
		while (smtp_reply_line(&r, &pos, &t, &tl))
			if (t < buf + off || t + tl > buf + off + used)
				abort();
		if (smtp_reply_ehlo_has(&r, "AUTH", &p, &pl) &&
		    (p < buf + off || p + pl > buf + off + used))
			abort();
		off += used;
	}
	return 0;
}
