/* Fuzz target for the milter reply side (shared/milter_proto.c and
 * shared/milter_edit.c): a milter's bytes are untrusted. Packets are
 * framed back to back, each parsed as a reply (and as an OPTNEG answer);
 * every output must stay inside its packet, and header edits taken from
 * the replies are applied to a message, whose header walk must stay
 * inside it too. The input is also walked as a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "milter_edit.h"
#include "milter_proto.h"

static void fuzz_in(const char *p, size_t n, const char *lo, const char *hi)
{
	if (n > 0 && (p < lo || p + n > hi))
		abort();
}

static const char fuzz_msg[] =
	"Received: from a\r\n\tby b\r\nSubject: x\r\nX-A: 1\r\n\r\nbody\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data, *d;
	struct milter_edit edits[8];
	struct milter_reply r;
	struct milter_optneg o;
	struct milter_hdr h;
	size_t off = 0, used, dl, ne = 0, i, ho = 0;
	struct buf out, v;
	char cmd;

	while (off < size && milter_packet_next(buf + off, size - off, 4096,
	                                        &cmd, &d, &dl, &used) == MILTER_OK) {
		if (used > size - off || d + dl > buf + off + used)
			abort();
		if (milter_reply_parse(cmd, d, dl, &r) == MILTER_OK) {
			fuzz_in(r.name, r.name_len, d, d + dl);
			fuzz_in(r.value, r.value_len, d, d + dl);
			fuzz_in(r.addr, r.addr_len, d, d + dl);
			fuzz_in(r.args, r.args_len, d, d + dl);
			fuzz_in(r.text, r.text_len, d, d + dl);
			if (r.type == MILTER_R_REPLYCODE &&
			    (r.code < 400 || r.code > 599))
				abort();
			if ((r.type == 'h' || r.type == 'i' || r.type == 'm') &&
			    ne < 8) {
				edits[ne].op = r.type == 'h' ? MILTER_E_ADD :
				    r.type == 'i' ? MILTER_E_INSERT : MILTER_E_CHANGE;
				edits[ne].index = r.index;
				edits[ne].name = strndup(r.name, r.name_len);
				edits[ne].value = strndup(r.value, r.value_len);
				edits[ne].leadspc = (int)(r.index & 1);
				ne++;
			}
		}
		if (milter_optneg_parse(d, dl, &o) == MILTER_OK)
			for (i = 0; i < MILTER_NSTAGES; i++)
				fuzz_in(o.macros[i], o.macro_len[i], d, d + dl);
		off += used;
	}
	buf_init(&out, 1 << 20);
	if (milter_edit_apply(fuzz_msg, sizeof(fuzz_msg) - 1, edits, ne,
	                      NULL, 0, &out) == 0) {
		/* the result is a message whose fields are all well formed */
		size_t mo = 0;

		while (milter_hdr_next(out.p, out.len, &mo, &h) == 1)
			fuzz_in(h.p, h.len, out.p, out.p + out.len);
		if (mo > out.len)
			abort();
	}
	buf_free(&out);
	for (i = 0; i < ne; i++) {
		free(edits[i].name);
		free(edits[i].value);
	}
	buf_init(&v, 0);
	while (milter_hdr_next(buf, size, &ho, &h) == 1) {
		fuzz_in(h.p, h.len, buf, buf + size);
		fuzz_in(h.value, h.value_len, buf, buf + size);
		buf_reset(&v);
		(void)milter_hdr_value(&h, 0, &v);
	}
	if (ho > size)
		abort();
	buf_free(&v);
	return 0;
}
