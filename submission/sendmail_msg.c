/* sendmail_msg: message data, header fields and the spool format of the
 * sendmail(1) program. Pure: input in, results into the caller's buffer or
 * pointers into the input. */
#include <string.h>
#include <strings.h>

#include "sendmail_msg.h"

#define SENDMAIL_SPOOL_MAGIC "MAILPAIR-SPOOL 1\n"
/* RFC 5321 §4.5.3.1.3: a path is at most 256 octets; allow quoted local
 * parts up to the line limit of §4.5.3.1.6 and let the server judge. */
#define SENDMAIL_ADDR_MAX 998

int sendmail_msg_crlf(const char *in, size_t len, int dot_ends,
		      struct buf *out)
{
	size_t pos = 0, n;
	const char *nl;

	while (pos < len) {
		nl = memchr(in + pos, '\n', len - pos);
		n = (nl != NULL ? (size_t)(nl - (in + pos)) : len - pos);
		if (n > 0 && in[pos + n - 1] == '\r')
			n--;
		if (dot_ends && n == 1 && in[pos] == '.')
			return 0;
		if (buf_append(out, in + pos, n) < 0 || buf_append(out, "\r\n", 2) < 0)
			return -1;
		if (nl == NULL)
			break;
		pos = (size_t)(nl - in) + 1;
	}
	return 0;
}

/* RFC 5322 §2.2: a field name is printable ASCII but ":", then ":". */
static size_t sendmail_msg_name_len(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == ':')
			return i;
		if ((unsigned char)p[i] < 33 || (unsigned char)p[i] > 126)
			return 0;
	}
	return 0;
}

size_t sendmail_msg_header_end(const char *data, size_t len)
{
	size_t pos = 0;
	const char *nl;

	while (pos < len) {
		if (len - pos >= 2 && data[pos] == '\r' && data[pos + 1] == '\n')
			return pos;
		if (pos == 0 && sendmail_msg_name_len(data, len) == 0)
			return 0;
		nl = memchr(data + pos, '\n', len - pos);
		if (nl == NULL)
			return len;
		pos = (size_t)(nl - data) + 1;
		/* a line that is neither a field, a continuation nor the
		 * empty line ends the header section (the body starts) */
		if (pos < len && data[pos] != ' ' && data[pos] != '\t' &&
		    data[pos] != '\r' && sendmail_msg_name_len(data + pos, len - pos) == 0)
			return pos;
	}
	return len;
}

int sendmail_msg_field_next(const char *data, size_t hdr_end, size_t *pos,
			    struct sendmail_field *f)
{
	size_t p = *pos, n;
	const char *nl;

	if (p >= hdr_end)
		return 0;
	n = sendmail_msg_name_len(data + p, hdr_end - p);
	if (n == 0)
		return 0;
	f->start = p;
	f->name = data + p;
	f->name_len = n;
	f->value = data + p + n + 1;
	for (;;) {
		nl = memchr(data + p, '\n', hdr_end - p);
		p = nl != NULL ? (size_t)(nl - data) + 1 : hdr_end;
		if (p >= hdr_end || (data[p] != ' ' && data[p] != '\t'))
			break;
	}
	f->end = p;
	n = p - (size_t)(f->value - data);
	/* the value without the field's final line end */
	if (n > 0 && f->value[n - 1] == '\n')
		n--;
	if (n > 0 && f->value[n - 1] == '\r')
		n--;
	f->value_len = n;
	*pos = p;
	return 1;
}

int sendmail_msg_field_is(const struct sendmail_field *f, const char *name)
{
	return strlen(name) == f->name_len &&
	    strncasecmp(f->name, name, f->name_len) == 0;
}

int sendmail_msg_addr_ok(const char *a, size_t len)
{
	size_t i;

	if (len == 0 || len > SENDMAIL_ADDR_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c <= ' ' || c == 127 || c == '<' || c == '>')
			return 0;
	}
	return 1;
}

int sendmail_spool_head(struct buf *out, const char *sender,
			char *const *rcpts, size_t nrcpt)
{
	size_t i, mark = out->len;

	if (*sender != '\0' && !sendmail_msg_addr_ok(sender, strlen(sender)))
		return -1;
	if (buf_puts(out, SENDMAIL_SPOOL_MAGIC) < 0 ||
	    buf_printf(out, "F %s\n", sender) < 0)
		goto fail;
	for (i = 0; i < nrcpt; i++) {
		if (!sendmail_msg_addr_ok(rcpts[i], strlen(rcpts[i])) ||
		    buf_printf(out, "R %s\n", rcpts[i]) < 0)
			goto fail;
	}
	if (buf_putc(out, '\n') < 0)
		goto fail;
	return 0;
fail:
	out->len = mark;
	if (out->p != NULL)
		out->p[mark] = '\0';
	return -1;
}

int sendmail_spool_next(const char *buf, size_t len, size_t *pos,
			enum sendmail_spool_item *kind, const char **val,
			size_t *val_len)
{
	size_t p = *pos, magic = strlen(SENDMAIL_SPOOL_MAGIC), n;
	const char *nl;

	if (p == 0) {
		if (len < magic || memcmp(buf, SENDMAIL_SPOOL_MAGIC, magic) != 0)
			return -1;
		p = magic;
	}
	if (p >= len)
		return -1;
	if (buf[p] == '\n') {
		*pos = p + 1;
		return 0;
	}
	nl = memchr(buf + p, '\n', len - p);
	if (nl == NULL || (size_t)(nl - (buf + p)) < 2 || buf[p + 1] != ' ')
		return -1;
	n = (size_t)(nl - (buf + p)) - 2;
	if (buf[p] == 'F' && (n == 0 || sendmail_msg_addr_ok(buf + p + 2, n)))
		*kind = SENDMAIL_SPOOL_SENDER;
	else if (buf[p] == 'R' && sendmail_msg_addr_ok(buf + p + 2, n))
		*kind = SENDMAIL_SPOOL_RCPT;
	else
		return -1;
	*val = buf + p + 2;
	*val_len = n;
	*pos = (size_t)(nl - buf) + 1;
	return 1;
}
