/* mime_addr: RFC 5322 §3.4 address lists for IMAP (see mime_addr.h).
 * Lenient, as a server must be with mail that has already arrived: a
 * malformed list yields the addresses that can be read and skips the
 * rest, never an error. Linear in the input: every step of the lexer
 * consumes at least one byte, and nothing is read twice. */
#include <string.h>
#include "mime_addr.h"

void mime_addr_init(struct mime_addr *a)
{
	memset(a, 0, sizeof(*a));
	buf_init(&a->name, 0);
	buf_init(&a->route, 0);
	buf_init(&a->local, 0);
	buf_init(&a->domain, 0);
	buf_init(&a->comment, 0);
}

void mime_addr_free(struct mime_addr *a)
{
	buf_free(&a->name);
	buf_free(&a->route);
	buf_free(&a->local);
	buf_free(&a->domain);
	buf_free(&a->comment);
}

void mime_addr_parser_init(struct mime_addr_parser *ap, const char *v,
                           size_t len)
{
	ap->p = v;
	ap->end = v + len;
	ap->in_group = 0;
}

static void mime_addr_reset(struct mime_addr *a)
{
	a->kind = MIME_ADDR_MAILBOX;
	buf_reset(&a->name);
	buf_reset(&a->route);
	buf_reset(&a->local);
	buf_reset(&a->domain);
	buf_reset(&a->comment);
}

static void mime_addr_cut(struct buf *b, size_t len)
{
	b->len = len;
	if (b->p != NULL)
		b->p[len] = '\0';
}

static int mime_addr_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* atext (RFC 5322 §3.2.3), read leniently: anything but white space and
 * the specials that delimit addresses. '.' is taken into atoms, which
 * covers dot-atom and obs-phrase ("John Q. Public"); 8-bit bytes are
 * RFC 6532 UTF-8. NUL is a special here (strchr finds the terminator). */
static int mime_addr_atext(char c)
{
	return !mime_addr_ws(c) && strchr("()<>@,;:\\\"[]", c) == NULL;
}

/* RFC 5322 §3.2.2 CFWS: white space and comments, which nest and hold
 * quoted-pairs. Each comment's text (unfolded, trimmed, inner
 * parentheses kept) replaces the previous one in cmt. Returns 1 when
 * something was skipped, 0 when not, -1 when memory ran out. */
static int mime_addr_cfws(struct mime_addr_parser *ap, struct buf *cmt)
{
	const char *start = ap->p;
	int depth;

	for (;;) {
		while (ap->p < ap->end && mime_addr_ws(*ap->p))
			ap->p++;
		if (ap->p >= ap->end || *ap->p != '(')
			return ap->p != start;
		buf_reset(cmt);
		ap->p++;
		depth = 1;
		while (ap->p < ap->end) {
			char c = *ap->p++;

			if (c == '\\' && ap->p < ap->end)
				c = *ap->p++;
			else if (c == '(')
				depth++;
			else if (c == ')' && --depth == 0)
				break;
			if (c == '\r' || c == '\n' ||
			    ((c == ' ' || c == '\t') && cmt->len == 0))
				continue;
			if (buf_putc(cmt, c) < 0)
				return -1;
		}
		while (cmt->len > 0 && (cmt->p[cmt->len - 1] == ' ' ||
		                        cmt->p[cmt->len - 1] == '\t'))
			mime_addr_cut(cmt, cmt->len - 1);
	}
}

/* RFC 5322 §3.2.4 quoted-string at ap->p ('"'): its content, with
 * quoted-pairs resolved and CRLF unfolded, to b (NULL: skip it). An
 * unterminated one runs to the end. */
static int mime_addr_qstring(struct mime_addr_parser *ap, struct buf *b)
{
	ap->p++;
	while (ap->p < ap->end && *ap->p != '"') {
		if (*ap->p == '\\' && ap->p + 1 < ap->end)
			ap->p++;
		if (b != NULL && *ap->p != '\r' && *ap->p != '\n' &&
		    buf_putc(b, *ap->p) < 0)
			return -1;
		ap->p++;
	}
	if (ap->p < ap->end)
		ap->p++;
	return 0;
}

/* One word at ap->p (an atom or a quoted string) to b. */
static int mime_addr_word(struct mime_addr_parser *ap, struct buf *b)
{
	const char *s = ap->p;

	if (*ap->p == '"')
		return mime_addr_qstring(ap, b);
	while (ap->p < ap->end && mime_addr_atext(*ap->p))
		ap->p++;
	return buf_append(b, s, (size_t)(ap->p - s));
}

/* A run of words with CFWS between them, in two forms: phrase, joined by
 * one space wherever CFWS separated them (a display name), and local,
 * where a dot absorbs the space around it (obs-local-part and obs-domain
 * allow CFWS around dots: "a . b" is "a.b"). phrase may be NULL. With
 * dotted, words must join by dots (a domain: "b junk" is "b"). Leaves
 * ap->p past any CFWS, on the first byte it does not take. Returns the
 * number of words, or -1 when memory ran out. */
static int mime_addr_words(struct mime_addr_parser *ap, struct buf *phrase,
                           struct buf *local, struct buf *cmt, int dotted)
{
	int n = 0, ws, lsp;
	size_t at;
	char c;

	for (;;) {
		ws = mime_addr_cfws(ap, cmt);
		if (ws < 0)
			return -1;
		if (ap->p >= ap->end)
			break;
		c = *ap->p;
		if (c != '"' && !mime_addr_atext(c))
			break;
		ws = ws && n > 0;
		lsp = ws && c != '.' && local->len > 0 &&
		      local->p[local->len - 1] != '.';
		if (lsp && dotted)
			break;
		if (lsp && buf_putc(local, ' ') < 0)
			return -1;
		if (phrase == NULL) {
			if (mime_addr_word(ap, local) < 0)
				return -1;
		} else {
			if (ws && buf_putc(phrase, ' ') < 0)
				return -1;
			at = phrase->len;
			if (mime_addr_word(ap, phrase) < 0 ||
			    buf_append(local, phrase->p + at, phrase->len - at) < 0)
				return -1;
		}
		n++;
	}
	return n;
}

/* RFC 5322 §3.4.1 domain: dot-atom (obs-domain: with CFWS around the
 * dots) or a domain-literal, kept with its brackets. */
static int mime_addr_domain(struct mime_addr_parser *ap, struct buf *b,
                            struct buf *cmt)
{
	if (mime_addr_cfws(ap, cmt) < 0)
		return -1;
	if (ap->p >= ap->end || *ap->p != '[')
		return mime_addr_words(ap, NULL, b, cmt, 1) < 0 ? -1 : 0;
	while (ap->p < ap->end && *ap->p != ']') {
		if (*ap->p == '\\' && ap->p + 1 < ap->end)
			ap->p++;   /* obs-dtext quoted-pair */
		if (!mime_addr_ws(*ap->p) && buf_putc(b, *ap->p) < 0)
			return -1;
		ap->p++;
	}
	if (ap->p >= ap->end)
		return 0;
	ap->p++;
	if (buf_putc(b, ']') < 0)
		return -1;
	return mime_addr_cfws(ap, cmt) < 0 ? -1 : 0;
}

/* angle-addr after its '<' (RFC 5322 §3.4, obs-route §4.4): route, local
 * part and domain, then up to and past '>'. A missing '>' ends at the
 * next ',' or ';' so that the following addresses survive. */
static int mime_addr_angle(struct mime_addr_parser *ap, struct mime_addr *a)
{
	if (mime_addr_cfws(ap, &a->comment) < 0)
		return -1;
	/* obs-route = *(CFWS / ",") "@" domain *("," [CFWS] ["@" domain]) ":" */
	while (ap->p < ap->end && (*ap->p == '@' || *ap->p == ',')) {
		char c = *ap->p++;

		if (buf_putc(&a->route, c) < 0 ||
		    (c == '@' && mime_addr_domain(ap, &a->route, &a->comment) < 0) ||
		    mime_addr_cfws(ap, &a->comment) < 0)
			return -1;
	}
	if (a->route.len > 0 && ap->p < ap->end && *ap->p == ':') {
		ap->p++;
	} else if (a->route.len > 0) {
		/* "<@domain>": no route after all, and no local part */
		const char *d = memchr(a->route.p, '@', a->route.len), *e;

		if (d != NULL) {
			e = memchr(d, ',', a->route.len - (size_t)(d - a->route.p));
			if (e == NULL)
				e = a->route.p + a->route.len;
			if (buf_append(&a->domain, d + 1, (size_t)(e - d - 1)) < 0)
				return -1;
		}
		buf_reset(&a->route);
		goto close;
	}
	if (mime_addr_words(ap, NULL, &a->local, &a->comment, 0) < 0)
		return -1;
	if (ap->p < ap->end && *ap->p == '@') {
		ap->p++;
		if (mime_addr_domain(ap, &a->domain, &a->comment) < 0)
			return -1;
	}
close:
	while (ap->p < ap->end && *ap->p != '>' && *ap->p != ',' && *ap->p != ';')
		ap->p++;
	if (ap->p < ap->end && *ap->p == '>')
		ap->p++;
	return 0;
}

/* After an address: skip to the next ',' or ';' (which ends the group we
 * are in, or outside one separates as ',' does: Outlook writes lists so),
 * quoted strings and comments whole. */
static int mime_addr_skip(struct mime_addr_parser *ap, struct buf *cmt)
{
	for (;;) {
		if (mime_addr_cfws(ap, cmt) < 0)
			return -1;
		if (ap->p >= ap->end || *ap->p == ',' || *ap->p == ';')
			return 0;
		if (*ap->p == '"')
			mime_addr_qstring(ap, NULL);
		else
			ap->p++;
	}
}

int mime_addr_next(struct mime_addr_parser *ap, struct mime_addr *a)
{
	int n;

	for (;;) {
		mime_addr_reset(a);
		if (mime_addr_cfws(ap, &a->comment) < 0)
			return -1;
		if (ap->p >= ap->end) {
			if (!ap->in_group)
				return 0;
			ap->in_group = 0;   /* a group left open: close it */
			a->kind = MIME_ADDR_GROUP_END;
			return 1;
		}
		if (*ap->p == ',' || *ap->p == ';') {
			if (*ap->p++ == ';' && ap->in_group) {
				ap->in_group = 0;
				a->kind = MIME_ADDR_GROUP_END;
				return 1;
			}
			continue;   /* obs-addr-list: empty elements */
		}
		n = mime_addr_words(ap, &a->name, &a->local, &a->comment, 0);
		if (n < 0)
			return -1;
		if (ap->p < ap->end && *ap->p == '<') {
			ap->p++;
			buf_reset(&a->local);
			if (mime_addr_angle(ap, a) < 0 ||
			    mime_addr_skip(ap, &a->comment) < 0)
				return -1;
			return 1;
		}
		if (ap->p < ap->end && *ap->p == ':' && !ap->in_group) {
			/* RFC 5322 §3.4: group = display-name ":" [group-list] ";"
			 * (groups do not nest: a ':' inside one is junk) */
			ap->p++;
			ap->in_group = 1;
			buf_reset(&a->local);
			a->kind = MIME_ADDR_GROUP_START;
			return 1;
		}
		if (ap->p < ap->end && *ap->p == '@') {
			ap->p++;
			if (mime_addr_domain(ap, &a->domain, &a->comment) < 0)
				return -1;
		} else if (n == 0 || (ap->p < ap->end && *ap->p != ',' &&
		                      *ap->p != ';')) {
			/* a stray special ('>', ']', ')', '\\', NUL, ':' in a
			 * group): drop it and the words before it */
			if (ap->p < ap->end)
				ap->p++;
			continue;
		}
		/* an addr-spec, or a local part alone (its domain missing) */
		if (mime_addr_skip(ap, &a->comment) < 0)
			return -1;
		/* RFC 822's "user@host (Real Name)": the comment names the
		 * mailbox, as clients (and Dovecot) show it */
		buf_reset(&a->name);
		if (a->comment.len > 0 &&
		    buf_append(&a->name, a->comment.p, a->comment.len) < 0)
			return -1;
		return 1;
	}
}
