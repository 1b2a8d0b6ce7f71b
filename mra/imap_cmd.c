/* imap_cmd: the command object, its replies, and IMAP strings and
 * mailbox names on the wire. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "imap_cmd.h"
#include "mstore.h"

struct imap_cmd *imap_cmd_new(struct imap_session *s, uint64_t sid,
			      struct imap_user *u,
			      const struct imap_settings *set)
{
	struct imap_cmd *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->s = s;
	c->sid = sid;
	c->u = u;
	c->set = set;
	c->new_state = -1;
	c->lit_fd = -1;
	buf_init(&c->out, 0);
	buf_init(&c->tagged, 0);
	return c;
}

void imap_cmd_free(struct imap_cmd *c)
{
	if (c == NULL)
		return;
	if (c->priv_free != NULL)
		c->priv_free(c->priv);
	if (c->lit_arg != NULL && c->lit_fd >= 0)
		close(c->lit_fd);
	if (c->bytes != NULL) {
		/* it may have held a password */
		explicit_bzero(c->bytes, c->nbytes);
		free(c->bytes);
	}
	free(c->args);
	buf_free(&c->out);
	buf_free(&c->tagged);
	free(c);
}

static void imap_cmd_reply(struct imap_cmd *c, const char *what,
			   const char *fmt, va_list ap)
{
	buf_reset(&c->tagged);
	buf_printf(&c->tagged, "%s %s ", c->tag, what);
	buf_vprintf(&c->tagged, fmt, ap);
	buf_puts(&c->tagged, "\r\n");
}

void imap_cmd_ok(struct imap_cmd *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_cmd_reply(c, "OK", fmt, ap);
	va_end(ap);
}

void imap_cmd_no(struct imap_cmd *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_cmd_reply(c, "NO", fmt, ap);
	va_end(ap);
}

void imap_cmd_bad(struct imap_cmd *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_cmd_reply(c, "BAD", fmt, ap);
	va_end(ap);
}

int imap_cmd_put_string(struct buf *out, const char *s, size_t len)
{
	size_t i;

	/* RFC 3501 §4.3: no NUL, in a literal either (that would take
	 * BINARY's literal8): refuse rather than send one */
	if (memchr(s, '\0', len) != NULL)
		return -1;
	if (len <= 1024) {
		for (i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)s[i];

			if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
				break;
		}
		if (i == len) {
			if (buf_putc(out, '"') < 0 ||
			    buf_append(out, s, len) < 0 ||
			    buf_putc(out, '"') < 0)
				return -1;
			return 0;
		}
	}
	if (buf_printf(out, "{%zu}\r\n", len) < 0 ||
	    buf_append(out, s, len) < 0)
		return -1;
	return 0;
}

/* ---- modified UTF-7 (RFC 3501 §5.1.3) ---- */

static const char imap_cmd_b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int imap_cmd_put_utf8(uint32_t cp, char *out, size_t size, size_t *o)
{
	unsigned char b[4];
	size_t n, i;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp; n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f)); n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f)); n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f)); n = 4;
	}
	if (*o + n >= size)
		return -1;
	for (i = 0; i < n; i++)
		out[(*o)++] = (char)b[i];
	return 0;
}

/* RFC 3501 §5.1.3, strictly: printable US-ASCII but "&" stands for
 * itself and MUST NOT be base64-encoded, "&-" is "&", a base64 run ends
 * in "-" with fewer than 6 zero padding bits, surrogates come in pairs.
 * Control characters (C0 with NUL, DEL, C1) are refused however they are
 * written: a name is text, and an encoded NUL would cut it short. */
static int imap_cmd_mutf7_char_ok(uint32_t u)
{
	if (u < 0x20 || (u >= 0x7f && u <= 0x9f))
		return 0;
	return 1;
}

int imap_cmd_mutf7_decode(const char *in, char *out, size_t size)
{
	size_t o = 0;
	uint32_t bits, nbits, hi;
	const char *p;

	if (size == 0)
		return -1;
	while (*in != '\0') {
		unsigned char ch = (unsigned char)*in;

		if (ch < 0x20 || ch > 0x7e)
			return -1;
		if (ch != '&') {
			if (o + 1 >= size)
				return -1;
			out[o++] = (char)ch;
			in++;
			continue;
		}
		in++;
		if (*in == '-') {
			if (o + 1 >= size)
				return -1;
			out[o++] = '&';
			in++;
			continue;
		}
		bits = nbits = hi = 0;
		while (*in != '-') {
			p = *in != '\0' ? strchr(imap_cmd_b64, *in) : NULL;
			if (p == NULL)
				return -1;
			bits = ((bits << 6) | (uint32_t)(p - imap_cmd_b64)) &
				0xffffff;
			nbits += 6;
			in++;
			if (nbits < 16)
				continue;
			nbits -= 16;
			{
				uint32_t u = (bits >> nbits) & 0xffff;

				if (hi != 0) {
					if (u < 0xdc00 || u > 0xdfff)
						return -1;
					u = 0x10000 + ((hi - 0xd800) << 10) +
						(u - 0xdc00);
					hi = 0;
				} else if (u >= 0xd800 && u <= 0xdbff) {
					hi = u;
					continue;
				} else if (u >= 0xdc00 && u <= 0xdfff) {
					return -1;
				} else if (u >= 0x20 && u <= 0x7e) {
					/* it could have stood for itself */
					return -1;
				} else if (!imap_cmd_mutf7_char_ok(u)) {
					return -1;
				}
				if (imap_cmd_put_utf8(u, out, size, &o) < 0)
					return -1;
			}
		}
		in++;
		/* nothing but zero padding (under 6 bits) may be left over */
		if (hi != 0 || nbits >= 6 ||
		    (bits & ((1u << nbits) - 1)) != 0)
			return -1;
	}
	out[o] = '\0';
	return 0;
}

static void imap_cmd_b64_flush(char *out, size_t *o, uint32_t *bits,
			       unsigned *nbits)
{
	while (*nbits >= 6) {
		*nbits -= 6;
		out[(*o)++] = imap_cmd_b64[(*bits >> *nbits) & 0x3f];
	}
}

int imap_cmd_mutf7_encode(const char *in, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0;
	uint32_t bits = 0;
	unsigned nbits = 0;
	int b64 = 0;

	while (*p != '\0') {
		uint32_t cp;
		int n, i;

		if (o + 12 >= size)
			return -1;
		if (*p >= 0x20 && *p <= 0x7e) {
			if (b64) {
				if (nbits > 0) {
					bits <<= 6 - nbits;
					nbits = 6;
					imap_cmd_b64_flush(out, &o, &bits,
							   &nbits);
				}
				out[o++] = '-';
				b64 = 0;
			}
			out[o++] = (char)*p;
			if (*p == '&')
				out[o++] = '-';
			p++;
			continue;
		}
		if (*p < 0x80)
			return -1;
		n = *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 : *p >= 0xc0 ? 1 : -1;
		if (n < 0)
			return -1;
		cp = *p & (0x3f >> n);
		for (i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return -1;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		p += n + 1;
		if (!b64) {
			out[o++] = '&';
			b64 = 1;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			bits = (bits << 16) | (0xd800 | (cp >> 10));
			nbits += 16;
			imap_cmd_b64_flush(out, &o, &bits, &nbits);
			cp = 0xdc00 | (cp & 0x3ff);
		}
		bits = (bits << 16) | cp;
		nbits += 16;
		imap_cmd_b64_flush(out, &o, &bits, &nbits);
	}
	if (b64) {
		if (o + 3 >= size)
			return -1;
		if (nbits > 0) {
			bits <<= 6 - nbits;
			nbits = 6;
			imap_cmd_b64_flush(out, &o, &bits, &nbits);
		}
		out[o++] = '-';
	}
	out[o] = '\0';
	return 0;
}

int imap_cmd_mailbox(const char *wire, char *out, size_t size,
		     struct err *err)
{
	if (imap_cmd_mutf7_decode(wire, out, size) < 0)
		return err_set(err, 0, "Invalid mailbox name: not modified "
			       "UTF-7, or a control character");
	if (strcasecmp(out, "INBOX") == 0) {
		snprintf(out, size, "INBOX");
		return 0;
	}
	/* RFC 3501 §5.1: "INBOX" is case-insensitive, also as a parent */
	if (strncasecmp(out, "INBOX.", 6) == 0)
		memcpy(out, "INBOX", 5);
	return mstore_name_check(out, err);
}

int imap_cmd_mailbox_arg(const struct imap_arg *a, struct err *err)
{
	char tmp[2048];

	if (!imap_arg_is_string(a))
		return err_set(err, 0, "Missing mailbox name");
	/* RFC 3501 §9: literal is *CHAR8, which excludes NUL; as a C string
	 * the name would silently end at it */
	if (memchr(a->s, '\0', a->len) != NULL)
		return err_set(err, 0, "NUL character in mailbox name");
	if (a->len >= sizeof(tmp) ||
	    imap_cmd_mutf7_decode(a->s, tmp, sizeof(tmp)) < 0)
		return err_set(err, 0, "Invalid mailbox name: not modified "
			       "UTF-7, or a control character");
	return 0;
}

/* Mailbox arguments by position (IMAP_CMD_MBOX1/2 in the table), checked
 * before the handler runs, so that every command that names a mailbox
 * refuses a NUL, a control character or a broken encoding the same way:
 * a NUL is a syntax error (BAD), a bad name is NO [CANNOT]. */
int imap_cmd_check_mailboxes(struct imap_cmd *c)
{
	struct imap_arg *a[2] = { c->a, c->a != NULL ? c->a->next : NULL };
	unsigned flag[2] = { IMAP_CMD_MBOX1, IMAP_CMD_MBOX2 };
	struct err err;
	int i;

	for (i = 0; i < 2; i++) {
		if (!(c->def->flags & flag[i]) || !imap_arg_is_string(a[i]))
			continue;   /* missing: the handler says what it needs */
		if (imap_cmd_mailbox_arg(a[i], &err) == 0)
			continue;
		if (memchr(a[i]->s, '\0', a[i]->len) != NULL)
			imap_cmd_bad(c, "%s.", err.msg);
		else
			imap_cmd_no(c, "[CANNOT] %s.", err.msg);
		return -1;
	}
	return 0;
}
