/* milter_edit: header walking and the header/body modifications milters
 * ask for (see milter_edit.h). Pure: the message is read, a new one is
 * written to the caller's buffer. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "milter_edit.h"

/* End of the line starting at off: the index past its LF, or len. */
static size_t milter_edit_eol(const char *msg, size_t len, size_t off)
{
	const char *lf = memchr(msg + off, '\n', len - off);

	return lf != NULL ? (size_t)(lf - msg) + 1 : len;
}

int milter_hdr_next(const char *msg, size_t len, size_t *off,
                    struct milter_hdr *h)
{
	size_t o = *off, end, i;

	if (o >= len)
		return 0;
	end = milter_edit_eol(msg, len, o);
	if (end - o <= 2 && (msg[o] == '\r' || msg[o] == '\n')) {
		*off = end;                  /* the empty line */
		return 0;
	}
	/* RFC 5322 §2.2: name, optional WSP (obsolete syntax), colon */
	for (i = o; i < end; i++)
		if (msg[i] == ':' || (unsigned char)msg[i] <= 32 ||
		    (unsigned char)msg[i] >= 127)
			break;
	if (i == o)
		return 0;
	h->name_len = i - o;
	while (i < end && (msg[i] == ' ' || msg[i] == '\t'))
		i++;
	if (i >= end || msg[i] != ':')
		return 0;
	/* folded lines: continuation lines start with WSP */
	while (end < len && (msg[end] == ' ' || msg[end] == '\t'))
		end = milter_edit_eol(msg, len, end);
	h->p = msg + o;
	h->len = end - o;
	h->value = msg + i + 1;
	h->value_len = end - (i + 1);
	if (h->value_len > 0 && h->value[h->value_len - 1] == '\n')
		h->value_len--;
	if (h->value_len > 0 && h->value[h->value_len - 1] == '\r')
		h->value_len--;
	*off = end;
	return 1;
}

int milter_hdr_value(const struct milter_hdr *h, int leadspc, struct buf *out)
{
	const char *v = h->value;
	size_t n = h->value_len, i;

	if (!leadspc && n > 0 && v[0] == ' ') {
		v++;
		n--;
	}
	for (i = 0; i < n; i++) {
		if (v[i] == '\r' && i + 1 < n && v[i + 1] == '\n')
			continue;
		if (buf_putc(out, v[i]) < 0)
			return -1;
	}
	return buf_reserve(out, 1);
}

/* "Name: value" + CRLF, with the value's LF (or CRLF) line ends as CRLF. */
static int milter_edit_put_field(struct buf *out, const char *name,
                                 size_t name_len, const char *value,
                                 int leadspc)
{
	size_t i;

	if (buf_append(out, name, name_len) < 0 || buf_putc(out, ':') < 0)
		return -1;
	if (!leadspc && buf_putc(out, ' ') < 0)
		return -1;
	for (i = 0; value[i] != '\0'; i++) {
		if (value[i] == '\r')
			continue;
		if (value[i] == '\n' && buf_putc(out, '\r') < 0)
			return -1;
		if (buf_putc(out, value[i]) < 0)
			return -1;
	}
	return buf_append(out, "\r\n", 2);
}

/* The header section as a list of fields, each either a span of the
 * original message or an edit's name and value. */
struct milter_edit_field {
	const char *p;                 /* original bytes, or NULL */
	size_t len, name_len;
	const struct milter_edit *e;   /* when p is NULL */
	const char *keep;              /* a changed field keeps its name */
	size_t keep_len;
};

struct milter_edit_list {
	struct milter_edit_field *v;
	size_t n, cap;
};

static int milter_edit_insert(struct milter_edit_list *l, size_t at,
                              const struct milter_edit_field *f)
{
	if (l->n == l->cap) {
		size_t cap = l->cap == 0 ? 32 : l->cap * 2;
		struct milter_edit_field *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	if (at > l->n)
		at = l->n;
	memmove(l->v + at + 1, l->v + at, (l->n - at) * sizeof(*l->v));
	l->v[at] = *f;
	l->n++;
	return 0;
}

static int milter_edit_name_is(const struct milter_edit_field *f,
                               const char *name)
{
	size_t n = strlen(name);

	if (f->p == NULL)
		return strcasecmp(f->e->name, name) == 0;
	return f->name_len == n && strncasecmp(f->p, name, n) == 0;
}

static int milter_edit_one(struct milter_edit_list *l,
                           const struct milter_edit *e)
{
	struct milter_edit_field f = { NULL, 0, 0, e, NULL, 0 };
	uint32_t seen = 0;
	size_t i;

	if (e->op == MILTER_E_ADD)
		return milter_edit_insert(l, l->n, &f);
	if (e->op == MILTER_E_INSERT)
		return milter_edit_insert(l, e->index, &f);
	for (i = 0; i < l->n; i++) {
		if (!milter_edit_name_is(&l->v[i], e->name) ||
		    ++seen != e->index)
			continue;
		if (e->value[0] == '\0') {
			memmove(l->v + i, l->v + i + 1,
			        (l->n - i - 1) * sizeof(*l->v));
			l->n--;
		} else {
			/* Sendmail changes the value; the name stays as
			 * it was written */
			f.keep = l->v[i].p != NULL ? l->v[i].p : l->v[i].keep;
			f.keep_len = l->v[i].p != NULL ? l->v[i].name_len :
			             l->v[i].keep_len;
			l->v[i] = f;
		}
		return 0;
	}
	if (e->value[0] == '\0')
		return 0;
	return milter_edit_insert(l, l->n, &f);
}

static int milter_edit_put_body(struct buf *out, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r') &&
		    buf_putc(out, '\r') < 0)
			return -1;
		if (b[i] == '\r' && (i + 1 >= n || b[i + 1] != '\n'))
			continue;             /* a bare CR goes */
		if (buf_putc(out, b[i]) < 0)
			return -1;
	}
	return 0;
}

int milter_edit_apply(const char *msg, size_t len,
                      const struct milter_edit *edits, size_t nedits,
                      const char *newbody, size_t newbody_len,
                      struct buf *out)
{
	struct milter_edit_list l = { NULL, 0, 0 };
	struct milter_edit_field f;
	struct milter_hdr h;
	size_t off = 0, i;
	int rc = -1;

	while (milter_hdr_next(msg, len, &off, &h) == 1) {
		f.p = h.p;
		f.len = h.len;
		f.name_len = h.name_len;
		f.e = NULL;
		f.keep = NULL;
		f.keep_len = 0;
		if (milter_edit_insert(&l, l.n, &f) < 0)
			goto out;
	}
	for (i = 0; i < nedits; i++)
		if (milter_edit_one(&l, &edits[i]) < 0)
			goto out;
	for (i = 0; i < l.n; i++) {
		const struct milter_edit_field *x = &l.v[i];

		if (x->p != NULL ? buf_append(out, x->p, x->len) < 0 :
		    milter_edit_put_field(out, x->keep != NULL ? x->keep :
		                          x->e->name, x->keep != NULL ?
		                          x->keep_len : strlen(x->e->name),
		                          x->e->value, x->e->leadspc) < 0)
			goto out;
	}
	if (buf_append(out, "\r\n", 2) < 0)
		goto out;
	if (newbody != NULL)
		rc = milter_edit_put_body(out, newbody, newbody_len);
	else
		rc = buf_append(out, msg + off, len - off);
out:
	free(l.v);
	return rc;
}
