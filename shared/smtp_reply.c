/* smtp_reply: the client side's reply parser. Pure: every output points
 * into the caller's buffer, and nothing past max bytes is ever waited
 * for. */
#include <string.h>
#include <strings.h>
#include "smtp_reply.h"

static int smtp_reply_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39. */
static int smtp_reply_code(const char *p)
{
	if (p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '5' ||
	    !smtp_reply_digit(p[2]))
		return -1;
	return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* Find the end of the line starting at off: returns the index of LF, or
 * len when there is none yet. */
static size_t smtp_reply_eol(const char *buf, size_t off, size_t len)
{
	const char *lf = memchr(buf + off, '\n', len - off);

	return lf != NULL ? (size_t)(lf - buf) : len;
}

size_t smtp_reply_enhanced(const char *text, size_t len, int *cls,
    int *subject, int *detail)
{
	int v[3] = { 0, 0, 0 };
	size_t i = 0, part, nd;

	if (len < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5'))
		return 0;
	for (part = 0; part < 3; part++) {
		nd = 0;
		while (i < len && smtp_reply_digit(text[i]) && nd < 3) {
			v[part] = v[part] * 10 + (text[i] - '0');
			i++;
			nd++;
		}
		/* class is one digit; subject and detail 1*3digit */
		if (nd == 0 || (part == 0 && nd != 1))
			return 0;
		if (part < 2) {
			if (i >= len || text[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && text[i] != ' ')
		return 0;
	*cls = v[0];
	*subject = v[1];
	*detail = v[2];
	return i < len ? i + 1 : i;
}

enum smtp_reply_rc smtp_reply_parse(const char *buf, size_t len, size_t max,
    struct smtp_reply *r, size_t *used_r)
{
	size_t off = 0, eol, end, n = 0;
	int code = -1, c;
	char sep;

	memset(r, 0, sizeof(*r));
	for (;;) {
		size_t lim = len < max ? len : max;
		eol = smtp_reply_eol(buf, off, lim);
		if (eol == lim)
			return len >= max ? SMTP_REPLY_ERR_TOO_LONG :
			    SMTP_REPLY_NEED_MORE;
		end = eol > off && buf[eol - 1] == '\r' ? eol - 1 : eol;
		if (end - off < 3 || (c = smtp_reply_code(buf + off)) < 0)
			return SMTP_REPLY_ERR_SYNTAX;
		/* RFC 5321 §4.2.1: every line of a reply has the same code. */
		if (code >= 0 && c != code)
			return SMTP_REPLY_ERR_SYNTAX;
		code = c;
		sep = end - off > 3 ? buf[off + 3] : ' ';
		if (sep != '-' && sep != ' ')
			return SMTP_REPLY_ERR_SYNTAX;
		n++;
		if (sep == ' ') {
			r->last = buf + off + (end - off > 3 ? 4 : 3);
			r->lastlen = (size_t)(buf + end - r->last);
			break;
		}
		off = eol + 1;
	}
	r->code = code;
	r->p = buf;
	r->len = eol + 1;
	r->nlines = n;
	c = (int)smtp_reply_enhanced(r->last, r->lastlen, &r->enh_class,
	    &r->enh_subject, &r->enh_detail);
	/* An enhanced code must agree with the reply's class (RFC 3463 §3);
	 * one that does not is treated as text. */
	if (c > 0 && r->enh_class != code / 100) {
		r->enh_class = r->enh_subject = r->enh_detail = 0;
		c = 0;
	}
	r->last += c;
	r->lastlen -= (size_t)c;
	*used_r = r->len;
	return SMTP_REPLY_OK;
}

int smtp_reply_line(const struct smtp_reply *r, size_t *pos,
    const char **text_r, size_t *len_r)
{
	size_t off = *pos, eol, end;

	if (r->p == NULL || off >= r->len)
		return 0;
	eol = smtp_reply_eol(r->p, off, r->len);
	end = eol > off && r->p[eol - 1] == '\r' ? eol - 1 : eol;
	if (end - off > 3) {
		*text_r = r->p + off + 4;
		*len_r = end - off - 4;
	} else {
		*text_r = r->p + end;
		*len_r = 0;
	}
	*pos = eol + 1;
	return 1;
}

int smtp_reply_ehlo_has(const struct smtp_reply *r, const char *kw,
    const char **params_r, size_t *plen_r)
{
	size_t pos = 0, tl, kl = strlen(kw), i = 0;
	const char *t;

	while (smtp_reply_line(r, &pos, &t, &tl)) {
		if (i++ == 0)
			continue;  /* the greeting line: domain and text */
		if (tl < kl || strncasecmp(t, kw, kl) != 0)
			continue;
		if (tl > kl && t[kl] != ' ' && t[kl] != '=')
			continue;  /* "AUTH=" is the old Outlook form */
		if (params_r != NULL) {
			*params_r = tl > kl ? t + kl + 1 : t + tl;
			*plen_r = tl > kl ? tl - kl - 1 : 0;
		}
		return 1;
	}
	return 0;
}
