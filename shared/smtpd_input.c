/* smtpd_input: command lines and DATA bodies out of a libevent evbuffer
 * (see smtpd_input.h). The parsers are the pure ones of smtp_line; this
 * file only finds them contiguous bytes and drains what they used. */
#include <string.h>
#include <event2/buffer.h>
#include "smtpd_input.h"

#define SMTPD_INPUT_IOV   8
#define SMTPD_INPUT_PIECE (64 * 1024)

enum smtp_rc smtpd_input_line(struct evbuffer *in, struct smtp_line_reader *r,
                              size_t max, char *line, size_t *len_r)
{
	enum smtp_rc rc;
	size_t len, take, used;
	const char *p;

	*len_r = 0;
	while ((len = evbuffer_get_length(in)) > 0) {
		take = len < max ? len : max;
		/* One contiguous view of take > 0 bytes, whatever the chains
		 * look like: a peek at the first chain may see 0 bytes. */
		p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
		if (p == NULL)
			return SMTP_NEED_MORE;   /* no memory: try on next read */
		rc = smtp_line_read(r, p, take, max, len_r, &used);
		if (rc == SMTP_OK)
			memcpy(line, p, *len_r);
		evbuffer_drain(in, used);
		/* a skip that used bytes goes on; anything else is an answer */
		if (rc != SMTP_NEED_MORE || used == 0)
			return rc;
	}
	return SMTP_NEED_MORE;
}

/* The non-empty pieces at the front of in: evbuffer_peek() also lists
 * empty chains; when the first SMTPD_INPUT_IOV are all empty, pull up. */
static int smtpd_input_pieces(struct evbuffer *in, struct evbuffer_iovec *v)
{
	size_t len = evbuffer_get_length(in);
	int n = evbuffer_peek(in, -1, NULL, v, SMTPD_INPUT_IOV), i, k = 0;
	void *p;

	if (n > SMTPD_INPUT_IOV)
		n = SMTPD_INPUT_IOV;
	for (i = 0; i < n; i++)
		if (v[i].iov_len > 0)
			v[k++] = v[i];
	if (k > 0 || len == 0)
		return k;
	if (len > SMTPD_INPUT_PIECE)
		len = SMTPD_INPUT_PIECE;
	p = evbuffer_pullup(in, (ev_ssize_t)len);
	if (p == NULL)
		return 0;
	v[0].iov_base = p;
	v[0].iov_len = len;
	return 1;
}

/* Feed as much of p[0..n) as msg can take; *used_r > 0 unless it returns
 * SMTP_ERR_TOO_LONG. */
static enum smtp_rc smtpd_input_feed(struct smtp_line_data *d, const char *p,
                                     size_t n, struct buf *msg, size_t step,
                                     size_t *used_r)
{
	size_t olen;
	char *out = NULL;
	enum smtp_rc rc;

	*used_r = 0;
	if (msg != NULL) {
		if (msg->max != 0) {
			size_t room = msg->max > msg->len ? msg->max - msg->len : 0;

			if (room <= SMTP_LINE_DATA_HELD)
				return SMTP_ERR_TOO_LONG;
			if (n > room - SMTP_LINE_DATA_HELD)
				n = room - SMTP_LINE_DATA_HELD;
		}
		if (buf_reserve_step(msg, n + SMTP_LINE_DATA_HELD, step) < 0)
			return SMTP_ERR_TOO_LONG;
		out = msg->p + msg->len;
	}
	rc = smtp_line_data_feed(d, p, n, out, &olen, used_r);
	if (msg != NULL) {
		msg->len += olen;
		msg->p[msg->len] = '\0';
	}
	return rc;
}

enum smtp_rc smtpd_input_data(struct evbuffer *in, struct smtp_line_data *d,
                              struct buf *msg, size_t step)
{
	struct evbuffer_iovec v[SMTPD_INPUT_IOV];
	enum smtp_rc rc = SMTP_NEED_MORE;
	size_t total, off, used;
	int n, i;

	while (rc == SMTP_NEED_MORE && (n = smtpd_input_pieces(in, v)) > 0) {
		total = 0;
		for (i = 0; i < n && rc == SMTP_NEED_MORE; i++)
			for (off = 0; off < v[i].iov_len && rc == SMTP_NEED_MORE;
			     off += used) {
				rc = smtpd_input_feed(d, (const char *)v[i].iov_base +
				                      off, v[i].iov_len - off, msg,
				                      step, &used);
				total += used;
			}
		evbuffer_drain(in, total);
		if (total == 0)
			break;
	}
	return rc;
}
