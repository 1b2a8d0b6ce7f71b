/* smtp_line: CRLF framing of command lines and the DATA body reader.
 * Pure functions over the caller's bytes (see smtp_line.h). */
#include <string.h>
#include "smtp_line.h"

enum smtp_line_dstate {
	SMTP_LINE_D_BOL = 0,     /* at the start of a line */
	SMTP_LINE_D_TEXT,        /* inside a line */
	SMTP_LINE_D_CR,          /* after a CR inside a line */
	SMTP_LINE_D_DOT,         /* after a "." at the start of a line */
	SMTP_LINE_D_DOTCR,       /* after "." CR at the start of a line */
};

enum smtp_rc smtp_line_next(const char *buf, size_t len, size_t max,
                            size_t *linelen_r, size_t *used_r)
{
	size_t scan = len < max ? len : max;
	const char *lf = memchr(buf, '\n', scan);
	const char *cr = memchr(buf, '\r', lf != NULL ? (size_t)(lf - buf) : scan);

	*linelen_r = *used_r = 0;
	/* A CR that is not the one right before the LF is a bare CR; one at
	 * the very end of the data may still be followed by its LF. */
	if (cr != NULL && (lf == NULL || cr + 1 != lf)) {
		if ((size_t)(cr - buf) + 1 < scan)
			return SMTP_ERR_BARE_CR;
		return len >= max ? SMTP_ERR_TOO_LONG : SMTP_NEED_MORE;
	}
	if (lf == NULL)
		return len >= max ? SMTP_ERR_TOO_LONG : SMTP_NEED_MORE;
	if (lf == buf || lf[-1] != '\r')
		return SMTP_ERR_BARE_LF;
	*linelen_r = (size_t)(lf - buf) - 1;
	*used_r = (size_t)(lf - buf) + 1;
	return SMTP_OK;
}

enum smtp_rc smtp_line_skip(const char *buf, size_t len, size_t *used_r)
{
	const char *lf = memchr(buf, '\n', len);

	if (lf == NULL) {
		*used_r = len;
		return SMTP_NEED_MORE;
	}
	*used_r = (size_t)(lf - buf) + 1;
	return SMTP_OK;
}

void smtp_line_reader_init(struct smtp_line_reader *r, int bare_lf_ok)
{
	r->skipping = 0;
	r->bare_lf_ok = bare_lf_ok;
}

enum smtp_rc smtp_line_read(struct smtp_line_reader *r, const char *buf,
                            size_t len, size_t max, size_t *linelen_r,
                            size_t *used_r)
{
	enum smtp_rc rc;
	const char *lf;

	*linelen_r = *used_r = 0;
	if (r->skipping) {
		/* Postfix's "resync at LF": the tail of the refused line is
		 * dropped in pieces; any piece is progress. */
		if (smtp_line_skip(buf, len, used_r) == SMTP_OK)
			r->skipping = 0;
		return SMTP_NEED_MORE;
	}
	if (len > max)
		len = max;
	rc = smtp_line_next(buf, len, max, linelen_r, used_r);
	if (rc == SMTP_ERR_TOO_LONG) {
		*used_r = len;
		r->skipping = 1;
	} else if (rc == SMTP_ERR_BARE_LF && r->bare_lf_ok) {
		/* no CR before this LF, or smtp_line_next would have said so */
		lf = memchr(buf, '\n', len);
		*linelen_r = (size_t)(lf - buf);
		*used_r = *linelen_r + 1;
		rc = SMTP_OK;
	}
	return rc;
}

void smtp_line_data_init(struct smtp_line_data *d)
{
	d->state = SMTP_LINE_D_BOL;
	d->flags = 0;
	d->lines = 0;
}

/* Copy a run of plain text (no CR, no LF) in one go: the common case. */
static size_t smtp_line_data_run(const char *in, size_t len, char *out,
                                 size_t *o)
{
	size_t n = 0;

	while (n < len && in[n] != '\r' && in[n] != '\n')
		n++;
	if (out != NULL && n > 0)
		memcpy(out + *o, in, n);
	*o += n;
	return n;
}

static void smtp_line_data_put(char *out, size_t *o, char c)
{
	if (out != NULL)
		out[*o] = c;
	(*o)++;
}

/* One byte in the TEXT state (also used to re-process a byte after a
 * bare CR or a removed leading dot). */
static void smtp_line_data_text(struct smtp_line_data *d, char c, char *out,
                                size_t *o)
{
	if (c == '\r') {
		d->state = SMTP_LINE_D_CR;
	} else {
		if (c == '\n')
			d->flags |= SMTP_LINE_DATA_BARE_LF;
		d->state = SMTP_LINE_D_TEXT;
	}
	smtp_line_data_put(out, o, c);
}

enum smtp_rc smtp_line_data_feed(struct smtp_line_data *d, const char *in,
                                 size_t len, char *out, size_t *outlen_r,
                                 size_t *used_r)
{
	size_t i = 0, o = 0;

	while (i < len) {
		char c = in[i];

		switch (d->state) {
		case SMTP_LINE_D_TEXT:
			i += smtp_line_data_run(in + i, len - i, out, &o);
			if (i < len)
				smtp_line_data_text(d, in[i++], out, &o);
			continue;
		case SMTP_LINE_D_BOL:
			i++;
			if (c == '.')
				d->state = SMTP_LINE_D_DOT;
			else
				smtp_line_data_text(d, c, out, &o);
			continue;
		case SMTP_LINE_D_CR:
			i++;
			if (c == '\n') {
				smtp_line_data_put(out, &o, c);
				d->state = SMTP_LINE_D_BOL;
				d->lines++;
			} else {
				/* CR then not LF: the CR is bare; the byte is
				 * ordinary text (or another CR). */
				d->flags |= SMTP_LINE_DATA_BARE_CR;
				smtp_line_data_text(d, c, out, &o);
			}
			continue;
		case SMTP_LINE_D_DOT:
			i++;
			if (c == '\r') {
				d->state = SMTP_LINE_D_DOTCR;
			} else if (c == '.') {
				/* RFC 5321 §4.5.2: the leading dot of a line
				 * with more text is dropped ("..x" -> ".x"). */
				smtp_line_data_put(out, &o, c);
				d->state = SMTP_LINE_D_TEXT;
			} else {
				smtp_line_data_text(d, c, out, &o);
			}
			continue;
		case SMTP_LINE_D_DOTCR:
			i++;
			if (c == '\n') {
				d->state = SMTP_LINE_D_BOL;
				*outlen_r = o;
				*used_r = i;
				return SMTP_OK;
			}
			/* "." CR x: a line ".<CR>x" whose dot is dropped;
			 * the CR is bare. */
			d->flags |= SMTP_LINE_DATA_BARE_CR;
			smtp_line_data_put(out, &o, '\r');
			smtp_line_data_text(d, c, out, &o);
			continue;
		}
	}
	*outlen_r = o;
	*used_r = len;
	return SMTP_NEED_MORE;
}
