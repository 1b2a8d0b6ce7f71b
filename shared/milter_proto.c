/* milter_proto: packet framing, command encoders and reply parsers of the
 * milter protocol version 6 (see milter_proto.h). There is no RFC; the
 * reference is Sendmail's libmilter (mfdef.h, its docs) and what Postfix's
 * milter8 client sends. Everything a milter sends is checked here before
 * milter.c or smtpd.c trust it. */
#include <string.h>
#include "milter_proto.h"

/* ---- framing ---------------------------------------------------------- */

static uint32_t milter_get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) |
	       ((uint32_t)u[2] << 8) | (uint32_t)u[3];
}

enum milter_rc milter_packet_next(const char *buf, size_t len, size_t max,
    char *cmd_r, const char **data_r, size_t *datalen_r, size_t *used_r)
{
	uint32_t n;

	if (len < 4)
		return MILTER_NEED_MORE;
	n = milter_get32(buf);
	if (n == 0)
		return MILTER_ERR_SYNTAX;
	if (n > max)
		return MILTER_ERR_TOO_LONG;
	if (len - 4 < n)
		return MILTER_NEED_MORE;
	*cmd_r = buf[4];
	*data_r = buf + 5;
	*datalen_r = n - 1;
	*used_r = 4 + (size_t)n;
	return MILTER_OK;
}

/* ---- replies ----------------------------------------------------------- */

/* A NUL-ended string at data[*off]; its length, and *off moves past it. */
static int milter_str(const char *data, size_t len, size_t *off,
                      const char **s_r, size_t *slen_r)
{
	const char *nul;

	if (*off >= len)
		return -1;
	nul = memchr(data + *off, '\0', len - *off);
	if (nul == NULL)
		return -1;
	*s_r = data + *off;
	*slen_r = (size_t)(nul - (data + *off));
	*off += *slen_r + 1;
	return 0;
}

/* RFC 5322 §3.6.8: a field name is printable ASCII but the colon. */
static int milter_hdr_name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 32 || (unsigned char)s[i] >= 127 ||
		    s[i] == ':')
			return 0;
	return 1;
}

/* A value may be folded (CRLF or LF, each followed by SP or HTAB,
 * RFC 5322 §2.2.3); any other line break would forge a new header. */
static int milter_hdr_value_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\r') {
			if (i + 1 >= n || s[i + 1] != '\n')
				return 0;
			continue;
		}
		if (s[i] == '\n' &&
		    (i + 1 >= n || (s[i + 1] != ' ' && s[i + 1] != '\t')))
			return 0;
	}
	return 1;
}

/* A line of text (reply text, reason, address): no control characters,
 * tab aside. */
static int milter_text_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] < 32 && s[i] != '\t') ||
		    (unsigned char)s[i] == 127)
			return 0;
	return 1;
}

/* name\0value\0, after an optional 4-byte index */
static enum milter_rc milter_parse_header(const char *data, size_t len,
    int indexed, struct milter_reply *r)
{
	size_t off = 0;

	if (indexed) {
		if (len < 4)
			return MILTER_ERR_SYNTAX;
		r->index = milter_get32(data);
		off = 4;
	}
	if (milter_str(data, len, &off, &r->name, &r->name_len) < 0 ||
	    milter_str(data, len, &off, &r->value, &r->value_len) < 0 ||
	    off != len || !milter_hdr_name_ok(r->name, r->name_len) ||
	    !milter_hdr_value_ok(r->value, r->value_len))
		return MILTER_ERR_SYNTAX;
	return MILTER_OK;
}

/* addr\0 [args\0] */
static enum milter_rc milter_parse_addr(const char *data, size_t len,
    int with_args, struct milter_reply *r)
{
	size_t off = 0;

	if (milter_str(data, len, &off, &r->addr, &r->addr_len) < 0 ||
	    r->addr_len == 0 || !milter_text_ok(r->addr, r->addr_len))
		return MILTER_ERR_SYNTAX;
	if (with_args && off < len) {
		if (milter_str(data, len, &off, &r->args, &r->args_len) < 0 ||
		    !milter_text_ok(r->args, r->args_len))
			return MILTER_ERR_SYNTAX;
	}
	return off == len ? MILTER_OK : MILTER_ERR_SYNTAX;
}

/* "4xx text" or "5xx text" (RFC 5321 §4.2: a 3-digit code, then SP or,
 * in a multi-line reply, '-'); libmilter sends multi-line replies joined
 * with CRLF, which we allow only between whole reply lines. */
static enum milter_rc milter_parse_replycode(const char *data, size_t len,
                                             struct milter_reply *r)
{
	size_t off = 0, i;

	if (milter_str(data, len, &off, &r->text, &r->text_len) < 0 ||
	    off != len || r->text_len < 3)
		return MILTER_ERR_SYNTAX;
	if ((r->text[0] != '4' && r->text[0] != '5') ||
	    r->text[1] < '0' || r->text[1] > '9' ||
	    r->text[2] < '0' || r->text[2] > '9')
		return MILTER_ERR_SYNTAX;
	if (r->text_len > 3 && r->text[3] != ' ' && r->text[3] != '-')
		return MILTER_ERR_SYNTAX;
	for (i = 0; i < r->text_len; i++) {
		unsigned char c = (unsigned char)r->text[i];

		if (c == '\r' && i + 1 < r->text_len && r->text[i + 1] == '\n' &&
		    i + 5 < r->text_len &&
		    memcmp(r->text + i + 2, r->text, 3) == 0) {
			i++;
			continue;
		}
		if ((c < 32 && c != '\t') || c == 127)
			return MILTER_ERR_SYNTAX;
	}
	r->code = (r->text[0] - '0') * 100 + (r->text[1] - '0') * 10 +
	          (r->text[2] - '0');
	return MILTER_OK;
}

enum milter_rc milter_reply_parse(char type, const char *data, size_t len,
                                  struct milter_reply *r)
{
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	r->type = type;
	switch (type) {
	case MILTER_R_ACCEPT:
	case MILTER_R_CONTINUE:
	case MILTER_R_DISCARD:
	case MILTER_R_REJECT:
	case MILTER_R_TEMPFAIL:
	case MILTER_R_PROGRESS:
	case MILTER_R_SKIP:
	case MILTER_R_SHUTDOWN:
	case MILTER_R_CONN_FAIL:
		/* no data; Sendmail ignores any, so do we */
		return MILTER_OK;
	case MILTER_R_ADDHEADER:
		return milter_parse_header(data, len, 0, r);
	case MILTER_R_INSHEADER:
	case MILTER_R_CHGHEADER:
		return milter_parse_header(data, len, 1, r);
	case MILTER_R_ADDRCPT:
	case MILTER_R_DELRCPT:
		return milter_parse_addr(data, len, 0, r);
	case MILTER_R_ADDRCPT_PAR:
	case MILTER_R_CHGFROM:
		return milter_parse_addr(data, len, 1, r);
	case MILTER_R_REPLBODY:
		r->text = data;
		r->text_len = len;
		return MILTER_OK;
	case MILTER_R_QUARANTINE:
		if (milter_str(data, len, &off, &r->text, &r->text_len) < 0 ||
		    off != len || !milter_text_ok(r->text, r->text_len))
			return MILTER_ERR_SYNTAX;
		return MILTER_OK;
	case MILTER_R_REPLYCODE:
		return milter_parse_replycode(data, len, r);
	default:
		return MILTER_ERR_SYNTAX;
	}
}

enum milter_rc milter_optneg_parse(const char *data, size_t len,
                                   struct milter_optneg *o)
{
	size_t off = 12;

	memset(o, 0, sizeof(*o));
	if (len < 12)
		return MILTER_ERR_SYNTAX;
	o->version = milter_get32(data);
	o->actions = milter_get32(data + 4);
	o->protocol = milter_get32(data + 8);
	if (o->version < 2 || o->version > MILTER_VERSION)
		return MILTER_ERR_SYNTAX;
	while (off < len) {
		uint32_t stage;
		const char *s;
		size_t n;

		if (len - off < 4)
			return MILTER_ERR_SYNTAX;
		stage = milter_get32(data + off);
		off += 4;
		if (stage >= MILTER_NSTAGES || o->macros[stage] != NULL ||
		    milter_str(data, len, &off, &s, &n) < 0 ||
		    !milter_text_ok(s, n))
			return MILTER_ERR_SYNTAX;
		o->macros[stage] = s;
		o->macro_len[stage] = n;
	}
	return MILTER_OK;
}

/* ---- commands ----------------------------------------------------------- */

/* A packet is built in place: its length is written once the data is. */
static int milter_begin(struct buf *b, char cmd, size_t *start_r)
{
	char h[5] = { 0, 0, 0, 0, cmd };

	*start_r = b->len;
	return buf_append(b, h, sizeof(h));
}

static int milter_end(struct buf *b, size_t start)
{
	size_t n = b->len - start - 4;
	unsigned char *p = (unsigned char *)b->p + start;

	if (n > MILTER_PKT_MAX) {
		b->len = start;
		return MILTER_ERR_BUF;
	}
	p[0] = (unsigned char)(n >> 24);
	p[1] = (unsigned char)(n >> 16);
	p[2] = (unsigned char)(n >> 8);
	p[3] = (unsigned char)n;
	return MILTER_OK;
}

/* A failed step leaves b as it was before the packet began. */
static int milter_fail(struct buf *b, size_t start)
{
	b->len = start;
	if (b->p != NULL)
		b->p[start] = '\0';
	return MILTER_ERR_BUF;
}

static int milter_put32(struct buf *b, uint32_t v)
{
	char p[4] = { (char)(v >> 24), (char)(v >> 16), (char)(v >> 8),
	              (char)v };

	return buf_append(b, p, 4);
}

static int milter_putstr(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s) + 1);
}

int milter_put_optneg(struct buf *b, uint32_t version, uint32_t actions,
                      uint32_t protocol)
{
	size_t st;

	if (milter_begin(b, MILTER_C_OPTNEG, &st) < 0)
		return MILTER_ERR_BUF;
	if (milter_put32(b, version) < 0 || milter_put32(b, actions) < 0 ||
	    milter_put32(b, protocol) < 0)
		return milter_fail(b, st);
	return milter_end(b, st);
}

int milter_put_macros(struct buf *b, char cmd, const char *const *names,
                      const char *const *values, size_t n)
{
	size_t st, i;

	if (milter_begin(b, MILTER_C_MACRO, &st) < 0)
		return MILTER_ERR_BUF;
	if (buf_append(b, &cmd, 1) < 0)
		return milter_fail(b, st);
	for (i = 0; i < n; i++)
		if (milter_putstr(b, names[i]) < 0 ||
		    milter_putstr(b, values[i]) < 0)
			return milter_fail(b, st);
	return milter_end(b, st);
}

int milter_put_connect(struct buf *b, const char *host, char family,
                       uint16_t port, const char *addr)
{
	size_t st;
	char pb[2] = { (char)(port >> 8), (char)port };

	if (milter_begin(b, MILTER_C_CONNECT, &st) < 0)
		return MILTER_ERR_BUF;
	if (milter_putstr(b, host) < 0 || buf_append(b, &family, 1) < 0)
		return milter_fail(b, st);
	if (family != 'U' && (buf_append(b, pb, 2) < 0 ||
	                      milter_putstr(b, addr) < 0))
		return milter_fail(b, st);
	return milter_end(b, st);
}

int milter_put_helo(struct buf *b, const char *helo)
{
	size_t st;

	if (milter_begin(b, MILTER_C_HELO, &st) < 0)
		return MILTER_ERR_BUF;
	if (milter_putstr(b, helo) < 0)
		return milter_fail(b, st);
	return milter_end(b, st);
}

int milter_put_envelope(struct buf *b, char cmd, const char *addr,
                        const char *const *args, size_t nargs)
{
	size_t st, i;

	if (milter_begin(b, cmd, &st) < 0)
		return MILTER_ERR_BUF;
	if (buf_putc(b, '<') < 0 || buf_puts(b, addr) < 0 ||
	    milter_putstr(b, ">") < 0)
		return milter_fail(b, st);
	for (i = 0; i < nargs; i++)
		if (milter_putstr(b, args[i]) < 0)
			return milter_fail(b, st);
	return milter_end(b, st);
}

int milter_put_header(struct buf *b, const char *name, size_t name_len,
                      const char *value, size_t value_len)
{
	size_t st;

	if (milter_begin(b, MILTER_C_HEADER, &st) < 0)
		return MILTER_ERR_BUF;
	if (buf_append(b, name, name_len) < 0 || buf_putc(b, '\0') < 0 ||
	    buf_append(b, value, value_len) < 0 || buf_putc(b, '\0') < 0)
		return milter_fail(b, st);
	return milter_end(b, st);
}

int milter_put_body(struct buf *b, const char *data, size_t len)
{
	size_t st;

	if (len > MILTER_CHUNK_MAX)
		return MILTER_ERR_BUF;
	if (milter_begin(b, MILTER_C_BODY, &st) < 0)
		return MILTER_ERR_BUF;
	if (buf_append(b, data, len) < 0)
		return milter_fail(b, st);
	return milter_end(b, st);
}

int milter_put_simple(struct buf *b, char cmd)
{
	size_t st;

	if (milter_begin(b, cmd, &st) < 0)
		return MILTER_ERR_BUF;
	return milter_end(b, st);
}
