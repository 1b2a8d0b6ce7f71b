/* mime: message structure (RFC 2045/2046 over RFC 5322) as a tree of byte
 * offsets, IMAP ENVELOPE/BODYSTRUCTURE renderers (RFC 3501 §7.4.2, with
 * RFC 2231 parameters joined), BODY[section] lookup and SEARCH decoders.
 * Address lists are read by shared/mime_addr. Pure: no I/O; besides the
 * tree and the output buffers, only scratch copies of the input are
 * allocated. */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include "mime.h"
#include "mime_addr.h"

#define MIME_TYPE_MAX 64
#define MIME_BOUNDARY_MAX 70   /* RFC 2046 §5.1.1 */
#define MIME_EW_MAX 1024       /* longest encoded word we decode */
#define MIME_QUOTED_MAX 1024   /* longer IMAP strings go as literals */
#define MIME_CONTAINS_CHUNK 65536

/* ---- lines and header blocks ---- */

/* End of the line starting at p (just past its LF, or end). */
static size_t mime_line_end(const char *m, size_t p, size_t end)
{
	const char *nl = memchr(m + p, '\n', end - p);

	return nl == NULL ? end : (size_t)(nl - m) + 1;
}

static int mime_line_empty(const char *m, size_t p, size_t end)
{
	if (p < end && m[p] == '\n')
		return 1;
	return p + 1 < end && m[p] == '\r' && m[p + 1] == '\n';
}

static size_t mime_count_lines(const char *m, size_t off, size_t len)
{
	size_t n = 0, i;

	for (i = 0; i < len; i++)
		if (m[off + i] == '\n')
			n++;
	if (len > 0 && m[off + len - 1] != '\n')
		n++;
	return n;
}

/* RFC 5322 §2.1: the header ends at the first empty line, which belongs
 * to it here (IMAP's BODY[HEADER] includes it). No empty line: all header. */
static size_t mime_header_block_end(const char *m, size_t off, size_t end)
{
	size_t p = off;

	while (p < end) {
		if (mime_line_empty(m, p, end))
			return mime_line_end(m, p, end);
		p = mime_line_end(m, p, end);
	}
	return end;
}

int mime_header_next(const char *hdr, size_t hdr_len, size_t *pos,
                     const char **name_r, size_t *name_len_r,
                     const char **val_r, size_t *val_len_r)
{
	size_t p = *pos, e, colon, vend;

	while (p < hdr_len) {
		if (mime_line_empty(hdr, p, hdr_len)) {
			*pos = hdr_len;
			return 0;
		}
		e = mime_line_end(hdr, p, hdr_len);
		/* folded continuation lines belong to this field */
		vend = e;
		while (vend < hdr_len && (hdr[vend] == ' ' || hdr[vend] == '\t'))
			vend = mime_line_end(hdr, vend, hdr_len);
		for (colon = p; colon < e && hdr[colon] != ':'; colon++)
			if (hdr[colon] == ' ' || hdr[colon] == '\t' ||
			    (unsigned char)hdr[colon] < 33)
				break;
		if (colon < e && hdr[colon] == ':' && colon > p) {
			size_t ve = vend;

			while (ve > colon + 1 && (hdr[ve - 1] == '\n' ||
			                          hdr[ve - 1] == '\r'))
				ve--;
			*name_r = hdr + p;
			*name_len_r = colon - p;
			*val_r = hdr + colon + 1;
			*val_len_r = ve - (colon + 1);
			*pos = vend;
			return 1;
		}
		p = vend;   /* not a field (RFC 5322 §3.6 obs junk): skip */
	}
	*pos = hdr_len;
	return 0;
}

/* Unfold (drop CR and LF), trim, append. */
static int mime_unfold(const char *v, size_t len, struct buf *out)
{
	size_t i, s = 0, e = len;

	while (s < e && (v[s] == ' ' || v[s] == '\t' || v[s] == '\r' || v[s] == '\n'))
		s++;
	while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t' || v[e - 1] == '\r' ||
	                 v[e - 1] == '\n'))
		e--;
	for (i = s; i < e; i++)
		if (v[i] != '\r' && v[i] != '\n' && buf_putc(out, v[i]) < 0)
			return -1;
	return 0;
}

static int mime_header_find(const char *hdr, size_t hdr_len, const char *name,
                            const char **val_r, size_t *len_r)
{
	size_t pos = 0, nl, n = strlen(name);
	const char *nm;

	while (mime_header_next(hdr, hdr_len, &pos, &nm, &nl, val_r, len_r))
		if (nl == n && strncasecmp(nm, name, n) == 0)
			return 1;
	return 0;
}

int mime_header_get(const char *hdr, size_t hdr_len, const char *name,
                    struct buf *out)
{
	const char *v;
	size_t vl;

	if (!mime_header_find(hdr, hdr_len, name, &v, &vl))
		return 0;
	return mime_unfold(v, vl, out) < 0 ? -1 : 1;
}

/* ---- RFC 2045 §5.1 / RFC 5322 §3.2 lexer ---- */

struct mime_lex {
	const char *p, *end;
};

static void mime_lex_cfws(struct mime_lex *lx)
{
	int depth;

	for (;;) {
		while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' ||
		                           *lx->p == '\r' || *lx->p == '\n'))
			lx->p++;
		if (lx->p >= lx->end || *lx->p != '(')
			return;
		/* RFC 5322 §3.2.2: comments nest and may hold quoted-pairs */
		depth = 0;
		while (lx->p < lx->end) {
			if (*lx->p == '\\' && lx->p + 1 < lx->end)
				lx->p++;
			else if (*lx->p == '(')
				depth++;
			else if (*lx->p == ')' && --depth == 0) {
				lx->p++;
				break;
			}
			lx->p++;
		}
	}
}

/* RFC 2045 §5.1 token: any CHAR except SPACE, CTLs and tspecials. */
static int mime_tokenchar(unsigned char c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static int mime_lex_token(struct mime_lex *lx, const char **tok, size_t *len)
{
	const char *s;

	mime_lex_cfws(lx);
	s = lx->p;
	while (lx->p < lx->end && mime_tokenchar((unsigned char)*lx->p))
		lx->p++;
	*tok = s;
	*len = (size_t)(lx->p - s);
	return *len > 0;
}

/* Quoted string at lx->p (which is '"'): its decoded content to out. */
static int mime_lex_qstring(struct mime_lex *lx, struct buf *out)
{
	lx->p++;
	while (lx->p < lx->end && *lx->p != '"') {
		if (*lx->p == '\\' && lx->p + 1 < lx->end)
			lx->p++;
		if (*lx->p != '\r' && *lx->p != '\n' && buf_putc(out, *lx->p) < 0)
			return -1;
		lx->p++;
	}
	if (lx->p < lx->end)
		lx->p++;
	return 0;
}

static int mime_lex_special(struct mime_lex *lx, char c)
{
	mime_lex_cfws(lx);
	if (lx->p < lx->end && *lx->p == c) {
		lx->p++;
		return 1;
	}
	return 0;
}

/* A parameter value: token or quoted-string, decoded into out. */
static int mime_lex_value(struct mime_lex *lx, struct buf *out)
{
	const char *t;
	size_t n;

	mime_lex_cfws(lx);
	if (lx->p < lx->end && *lx->p == '"')
		return mime_lex_qstring(lx, out);
	/* be lenient: take anything up to ';' or white space */
	t = lx->p;
	while (lx->p < lx->end && *lx->p != ';' && *lx->p != ' ' &&
	       *lx->p != '\t' && *lx->p != '\r' && *lx->p != '\n' && *lx->p != '(')
		lx->p++;
	n = (size_t)(lx->p - t);
	return buf_append(out, t, n);
}

/* ---- Content-Type and friends ---- */

struct mime_ctype {
	char type[MIME_TYPE_MAX], subtype[MIME_TYPE_MAX];
	const char *params;        /* the text after type/subtype */
	size_t params_len;
	int present;
};

static void mime_copy_lower(char *dst, size_t n, const char *s, size_t len)
{
	size_t i;

	if (len >= n)
		len = n - 1;
	for (i = 0; i < len; i++)
		dst[i] = (char)tolower((unsigned char)s[i]);
	dst[len] = '\0';
}

/* RFC 2045 §5.2: a missing or unparsable Content-Type means text/plain
 * (message/rfc822 inside multipart/digest, RFC 2046 §5.1.5). */
static void mime_ctype_get(const char *hdr, size_t hdr_len, int in_digest,
                           struct mime_ctype *ct)
{
	struct mime_lex lx;
	const char *v, *t, *st;
	size_t vl, tl, stl;

	memset(ct, 0, sizeof(*ct));
	strcpy(ct->type, in_digest ? "message" : "text");
	strcpy(ct->subtype, in_digest ? "rfc822" : "plain");
	ct->params = "";
	if (!mime_header_find(hdr, hdr_len, "Content-Type", &v, &vl))
		return;
	lx.p = v;
	lx.end = v + vl;
	if (!mime_lex_token(&lx, &t, &tl) || !mime_lex_special(&lx, '/') ||
	    !mime_lex_token(&lx, &st, &stl))
		return;
	mime_copy_lower(ct->type, sizeof(ct->type), t, tl);
	mime_copy_lower(ct->subtype, sizeof(ct->subtype), st, stl);
	ct->params = lx.p;
	ct->params_len = (size_t)(lx.end - lx.p);
	ct->present = 1;
}

/* ---- parameters: RFC 2045 §5.1, RFC 2231 §3-4 ---- */

#define MIME_PARAMS_MAX 128         /* parameters of one field we read */
#define MIME_PARAM_SECTION_MAX 999  /* RFC 2231 §3 section numbers */

struct mime_param {
	const char *name;       /* base name (no "*N*"), in the field, any case */
	size_t name_len;
	int section;            /* RFC 2231 §3 section; -1: plain parameter */
	int ext;                /* RFC 2231 §4 "*": %XX-encoded value */
	size_t voff, vlen;      /* the value, quotes resolved, in vals */
};

struct mime_params {
	struct mime_param p[MIME_PARAMS_MAX];
	unsigned n;
	struct buf vals;
};

/* A parameter's value, resolved (see mime_param_value). */
struct mime_pval {
	struct buf v;           /* the bytes, %XX decoded */
	const char *cs, *lang;  /* RFC 2231 §4 charset and language */
	size_t cs_len, lang_len;
	int ext;                /* some section was %XX encoded */
};

static int mime_hexval(char c);

/* RFC 2231 names: "n*" (encoded, RFC 2231 §4), "n*0", "n*1*" (sections,
 * §3 and §4.1). A section number we do not take (more than three
 * digits, a leading zero) leaves the name as written: a plain parameter
 * that nothing joins. */
static void mime_param_name(struct mime_param *pp, const char *n, size_t nl)
{
	size_t e = nl, d, i;
	int sec = 0;

	pp->name = n;
	pp->name_len = nl;
	pp->section = -1;
	pp->ext = 0;
	if (e > 1 && n[e - 1] == '*')
		e--;
	for (d = e; d > 0 && n[d - 1] >= '0' && n[d - 1] <= '9'; d--)
		;
	if (d < e && d > 1 && n[d - 1] == '*') {
		if (e - d > 3 || (n[d] == '0' && e - d > 1))
			return;
		for (i = d; i < e; i++)
			sec = sec * 10 + (n[i] - '0');
		pp->section = sec;
		pp->ext = e < nl;
		pp->name_len = d - 1;
	} else if (e < nl) {
		pp->section = 0;   /* "n*" alone: its own section 0 */
		pp->ext = 1;
		pp->name_len = e;
	}
}

/* Read the "; name=value" list after a type/subtype or a disposition
 * type into ps (vals initialised here: buf_free it), stopping at junk and
 * after MIME_PARAMS_MAX. Returns 0, or -1 when memory ran out. */
static int mime_params_read(const char *params, size_t len,
                            struct mime_params *ps)
{
	struct mime_lex lx = { params, params + len };
	const char *n;
	size_t nl, off;

	ps->n = 0;
	buf_init(&ps->vals, 0);
	while (ps->n < MIME_PARAMS_MAX) {
		if (!mime_lex_special(&lx, ';'))
			break;
		if (!mime_lex_token(&lx, &n, &nl))
			continue;   /* "; ;" or a trailing ';' */
		if (!mime_lex_special(&lx, '='))
			break;
		off = ps->vals.len;
		if (mime_lex_value(&lx, &ps->vals) < 0)
			return -1;
		mime_param_name(&ps->p[ps->n], n, nl);
		ps->p[ps->n].voff = off;
		ps->p[ps->n].vlen = ps->vals.len - off;
		ps->n++;
	}
	return 0;
}

static int mime_param_same(const struct mime_param *a,
                           const struct mime_param *b)
{
	return a->name_len == b->name_len &&
	       strncasecmp(a->name, b->name, a->name_len) == 0;
}

/* RFC 2231 §4: in an encoded section "%" and two hex digits is a byte; a
 * '%' without them stays as it is. */
static int mime_param_pct(const char *v, size_t vl, int ext, struct buf *out)
{
	size_t i;

	if (!ext)
		return buf_append(out, v, vl);
	for (i = 0; i < vl; i++) {
		if (v[i] == '%' && i + 2 < vl && mime_hexval(v[i + 1]) >= 0 &&
		    mime_hexval(v[i + 2]) >= 0) {
			if (buf_putc(out, (char)(mime_hexval(v[i + 1]) * 16 +
			                         mime_hexval(v[i + 2]))) < 0)
				return -1;
			i += 2;
		} else if (buf_putc(out, v[i]) < 0) {
			return -1;
		}
	}
	return 0;
}

static void mime_pval_init(struct mime_pval *pv)
{
	memset(pv, 0, sizeof(*pv));
	buf_init(&pv->v, 0);
}

/* The value of the parameter first seen at ps->p[first] (its earlier
 * namesakes do not exist), appended to pv (initialised by the caller).
 * RFC 2231 §3: sections 0, 1, ... join in number order, whatever their
 * order in the field; a gap ends the value (what follows it cannot be
 * placed) and a repeated section counts once (the first). Sections win
 * over a plain parameter of the same name: a sender writing both means
 * the sections (the plain one is for readers without RFC 2231).
 * Returns 1, 0 when there is no value (no plain one and no section 0),
 * -1 when memory ran out. Work: at most (sections + 1) * ps->n steps. */
static int mime_param_value(const struct mime_params *ps, unsigned first,
                            struct mime_pval *pv)
{
	const char *base = ps->vals.p != NULL ? ps->vals.p : "", *v, *q1, *q2;
	const struct mime_param *pp;
	size_t vl;
	unsigned j;
	int k;

	for (k = 0; k <= MIME_PARAM_SECTION_MAX; k++) {
		for (j = first; j < ps->n; j++)
			if (ps->p[j].section == k &&
			    mime_param_same(&ps->p[j], &ps->p[first]))
				break;
		if (j == ps->n)
			break;
		pp = &ps->p[j];
		v = base + pp->voff;
		vl = pp->vlen;
		q2 = NULL;
		if (k == 0 && pp->ext && (q1 = memchr(v, '\'', vl)) != NULL)
			q2 = memchr(q1 + 1, '\'', vl - (size_t)(q1 + 1 - v));
		if (q2 != NULL) {
			/* RFC 2231 §4: charset'language'value (only section 0
			 * has them; without both quotes it is all value) */
			pv->cs = v;
			pv->cs_len = (size_t)(q1 - v);
			pv->lang = q1 + 1;
			pv->lang_len = (size_t)(q2 - q1 - 1);
			vl -= (size_t)(q2 + 1 - v);
			v = q2 + 1;
		}
		pv->ext |= pp->ext;
		if (mime_param_pct(v, vl, pp->ext, &pv->v) < 0)
			return -1;
	}
	if (k > 0)
		return 1;
	for (j = first; j < ps->n; j++)
		if (ps->p[j].section < 0 && mime_param_same(&ps->p[j], &ps->p[first]))
			return buf_append(&pv->v, base + ps->p[j].voff,
			                  ps->p[j].vlen) < 0 ? -1 : 1;
	return 0;
}

/* Value of parameter name (lower case) in a params text, RFC 2231
 * sections joined and decoded, into out. 1 found, 0 not. */
static int mime_param_get(const char *params, size_t len, const char *name,
                          struct buf *out)
{
	struct mime_params ps;
	struct mime_pval pv;
	size_t nl = strlen(name);
	unsigned i;
	int found = 0;

	if (mime_params_read(params, len, &ps) == 0) {
		for (i = 0; i < ps.n; i++)
			if (ps.p[i].name_len == nl &&
			    strncasecmp(ps.p[i].name, name, nl) == 0)
				break;
		if (i < ps.n) {
			mime_pval_init(&pv);
			found = mime_param_value(&ps, i, &pv) > 0 &&
			        buf_append(out, pv.v.p ? pv.v.p : "", pv.v.len) == 0;
			buf_free(&pv.v);
		}
	}
	buf_free(&ps.vals);
	return found;
}

/* ---- the tree ---- */

struct mime_parser {
	struct mime_tree *t;
	unsigned cap, max_depth, max_parts;
	int oom;
};

static int mime_part_add(struct mime_parser *mp, int parent, unsigned depth)
{
	struct mime_tree *t = mp->t;
	struct mime_part *np;

	if (t->nparts >= mp->max_parts)
		return -1;
	if (t->nparts == mp->cap) {
		unsigned ncap = mp->cap ? mp->cap * 2 : 8;

		np = realloc(t->parts, ncap * sizeof(*np));
		if (np == NULL) {
			mp->oom = 1;
			return -1;
		}
		t->parts = np;
		mp->cap = ncap;
	}
	np = &t->parts[t->nparts];
	memset(np, 0, sizeof(*np));
	np->parent = parent;
	np->child = np->next = -1;
	np->depth = depth;
	if (parent >= 0) {
		struct mime_part *pp = &t->parts[parent];
		int last = pp->child;

		if (last < 0)
			pp->child = (int)t->nparts;
		else {
			while (t->parts[last].next >= 0)
				last = t->parts[last].next;
			t->parts[last].next = (int)t->nparts;
		}
		pp->nchild++;
	}
	return (int)t->nparts++;
}

/* RFC 2046 §5.1.1: a delimiter line is "--" boundary, then "--" for the
 * close delimiter, then optional white space. 0 no, 1 delimiter, 2 close. */
static int mime_boundary_line(const char *m, size_t p, size_t end,
                              const char *b, size_t bl)
{
	size_t q;
	int kind = 1;

	if (end - p < bl + 2 || m[p] != '-' || m[p + 1] != '-' ||
	    memcmp(m + p + 2, b, bl) != 0)
		return 0;
	q = p + 2 + bl;
	if (q + 1 < end && m[q] == '-' && m[q + 1] == '-') {
		kind = 2;
		q += 2;
	}
	while (q < end && (m[q] == ' ' || m[q] == '\t'))
		q++;
	if (q == end || m[q] == '\n' || (m[q] == '\r' && q + 1 < end && m[q + 1] == '\n'))
		return kind;
	return 0;
}

static void mime_parse_entity(struct mime_parser *mp, size_t off, size_t end,
                              int parent, unsigned depth, int in_digest);

/* The line break before a delimiter belongs to it (RFC 2046 §5.1.1). */
static size_t mime_part_end(const char *m, size_t start, size_t dline)
{
	if (dline > start && m[dline - 1] == '\n') {
		dline--;
		if (dline > start && m[dline - 1] == '\r')
			dline--;
	}
	return dline;
}

static void mime_parse_multipart(struct mime_parser *mp, int idx,
                                 const char *b, size_t bl, int digest)
{
	const char *m = mp->t->msg;
	struct mime_part *pt = &mp->t->parts[idx];
	size_t p = pt->body_off, end = pt->body_off + pt->body_len, start = 0;
	unsigned depth = pt->depth;
	int in_part = 0, k;

	while (p < end) {
		size_t le = mime_line_end(m, p, end);

		k = mime_boundary_line(m, p, end, b, bl);
		if (k != 0) {
			if (in_part)
				mime_parse_entity(mp, start, mime_part_end(m, start, p),
				                  idx, depth + 1, digest);
			if (k == 2 || mp->oom)
				return;
			in_part = 1;
			start = le;
		}
		p = le;
	}
	if (in_part)   /* no close delimiter: the last part runs to the end */
		mime_parse_entity(mp, start, end, idx, depth + 1, digest);
}

static void mime_parse_entity(struct mime_parser *mp, size_t off, size_t end,
                              int parent, unsigned depth, int in_digest)
{
	const char *m = mp->t->msg;
	struct mime_ctype ct;
	struct mime_part *pt;
	size_t he;
	int idx;

	idx = mime_part_add(mp, parent, depth);
	if (idx < 0) {
		if (parent >= 0)
			mp->t->parts[parent].flags |= MIME_PART_TRUNCATED;
		return;
	}
	pt = &mp->t->parts[idx];
	he = mime_header_block_end(m, off, end);
	pt->hdr_off = off;
	pt->hdr_len = he - off;
	pt->body_off = he;
	pt->body_len = end - he;
	pt->hdr_lines = mime_count_lines(m, off, he - off);
	pt->body_lines = mime_count_lines(m, he, end - he);
	if (in_digest)
		pt->flags |= MIME_PART_IN_DIGEST;
	mime_ctype_get(m + off, he - off, in_digest, &ct);
	if (strcmp(ct.type, "multipart") == 0) {
		struct buf b;

		buf_init(&b, 0);
		if (mime_param_get(ct.params, ct.params_len, "boundary", &b) &&
		    b.len > 0 && b.len <= MIME_BOUNDARY_MAX) {
			if (depth + 1 >= mp->max_depth) {
				pt->flags |= MIME_PART_TRUNCATED;
			} else {
				pt->flags |= MIME_PART_MULTIPART;
				mime_parse_multipart(mp, idx, b.p, b.len,
				                     strcmp(ct.subtype, "digest") == 0);
			}
		} else {
			pt->flags |= MIME_PART_TRUNCATED;
		}
		buf_free(&b);
	} else if (strcmp(ct.type, "message") == 0 &&
	           (strcmp(ct.subtype, "rfc822") == 0 ||
	            strcmp(ct.subtype, "global") == 0)) {
		if (depth + 1 >= mp->max_depth) {
			pt->flags |= MIME_PART_TRUNCATED;
		} else {
			size_t bo = pt->body_off, bl = pt->body_len;

			pt->flags |= MIME_PART_MESSAGE;
			mime_parse_entity(mp, bo, bo + bl, idx, depth + 1, 0);
			pt = &mp->t->parts[idx];
			if (pt->child < 0)
				pt->flags = (pt->flags & ~MIME_PART_MESSAGE) |
				            MIME_PART_TRUNCATED;
		}
	}
}

int mime_parse(const char *msg, size_t len, const struct mime_limits *lim,
               struct mime_tree **tree_r, struct err *err)
{
	struct mime_parser mp;
	struct mime_tree *t;

	*tree_r = NULL;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return err_set(err, 1, "mime: out of memory");
	t->msg = msg;
	t->len = len;
	memset(&mp, 0, sizeof(mp));
	mp.t = t;
	mp.max_depth = lim != NULL && lim->max_depth ? lim->max_depth :
	               MIME_DEFAULT_MAX_DEPTH;
	mp.max_parts = lim != NULL && lim->max_parts ? lim->max_parts :
	               MIME_DEFAULT_MAX_PARTS;
	mime_parse_entity(&mp, 0, len, -1, 0, 0);
	if (mp.oom || t->nparts == 0) {
		mime_tree_free(t);
		return err_set(err, 1, "mime: out of memory");
	}
	*tree_r = t;
	return 0;
}

void mime_tree_free(struct mime_tree *t)
{
	if (t == NULL)
		return;
	free(t->parts);
	free(t);
}

/* ---- IMAP output (RFC 3501 §4.3, §9 string / nstring) ----
 *
 * Scratch buffers here have no bound of their own: each holds a copy of
 * part of the message (a field value, a parameter), so the message's size
 * bounds it. The output buffer's bound is the caller's: a renderer that
 * reaches it returns -1 and takes back all it appended, so a response is
 * whole or absent, never cut off inside a list. */

static void mime_truncate(struct buf *out, size_t len)
{
	out->len = len;
	if (out->p != NULL)
		out->p[len] = '\0';
}

/* A quoted string is 7-bit text without CR and LF (RFC 3501 §9
 * TEXT-CHAR); anything else, or anything long (one header field may be
 * megabytes: clients cap line lengths, not literals), is a literal. A
 * literal is CHAR8, which has no NUL: a NUL goes as 0x80, keeping the
 * length. */
static int mime_imap_string(struct buf *out, const char *s, size_t len)
{
	size_t i, start = out->len;
	int literal = len > MIME_QUOTED_MAX, rc;

	for (i = 0; i < len && !literal; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r' || c == '\n' || c >= 0x80 || c == 0)
			literal = 1;
	}
	if (literal) {
		if (buf_printf(out, "{%zu}\r\n", len) < 0)
			return -1;
		if (buf_append(out, s, len) < 0) {
			mime_truncate(out, start);
			return -1;
		}
		for (i = out->len - len; i < out->len; i++)
			if (out->p[i] == '\0')
				out->p[i] = (char)0x80;
		return 0;
	}
	if (buf_reserve(out, 2 * len + 2) < 0)
		return -1;
	rc = buf_putc(out, '"');
	for (i = 0; rc == 0 && i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			rc = buf_putc(out, '\\');
		if (rc == 0)
			rc = buf_putc(out, s[i]);
	}
	if (rc == 0)
		rc = buf_putc(out, '"');
	if (rc < 0)
		mime_truncate(out, start);
	return rc;
}

static int mime_imap_nstring(struct buf *out, const char *s, size_t len, int nil)
{
	if (nil)
		return buf_puts(out, "NIL");
	return mime_imap_string(out, s, len);
}

/* nstring of an unfolded header field; NIL when absent (or empty, when
 * empty_nil). */
static int mime_imap_header(struct buf *out, const char *hdr, size_t hdr_len,
                            const char *name, int empty_nil)
{
	struct buf v;
	int rc, found;

	buf_init(&v, 0);
	found = mime_header_get(hdr, hdr_len, name, &v);
	if (found < 0) {
		buf_free(&v);
		return -1;
	}
	rc = mime_imap_nstring(out, v.p, v.len, !found || (empty_nil && v.len == 0));
	buf_free(&v);
	return rc;
}

/* ---- RFC 5322 §3.4 address lists -> ENVELOPE address structures ---- */

/* RFC 3501 §7.4.2 address: (name adl mailbox host). A group is
 * (NIL NIL "name" NIL), its members, then (NIL NIL NIL NIL). A mailbox
 * without a local part or a domain gets the placeholders a client can
 * show (Dovecot's), never a NIL that would read as a group marker. */
static int mime_env_addr(struct buf *o, const struct mime_addr *a)
{
	const struct buf *l = &a->local, *d = &a->domain;

	if (a->kind == MIME_ADDR_GROUP_END)
		return buf_puts(o, "(NIL NIL NIL NIL)");
	if (a->kind == MIME_ADDR_GROUP_START) {
		if (buf_puts(o, "(NIL NIL ") < 0 ||
		    mime_imap_string(o, a->name.p ? a->name.p : "", a->name.len) < 0)
			return -1;
		return buf_puts(o, " NIL)");
	}
	if (buf_putc(o, '(') < 0 ||
	    mime_imap_nstring(o, a->name.p, a->name.len, a->name.len == 0) < 0 ||
	    buf_putc(o, ' ') < 0 ||
	    mime_imap_nstring(o, a->route.p, a->route.len, a->route.len == 0) < 0 ||
	    buf_putc(o, ' ') < 0 ||
	    (l->len == 0 ? buf_puts(o, "\"MISSING_MAILBOX\"") :
	     mime_imap_string(o, l->p, l->len)) < 0 ||
	    buf_putc(o, ' ') < 0 ||
	    (d->len == 0 ? buf_puts(o, "\"MISSING_DOMAIN\"") :
	     mime_imap_string(o, d->p, d->len)) < 0)
		return -1;
	return buf_putc(o, ')');
}

/* The list of one field: 1 when rendered, 0 when the field holds no
 * address (out unchanged), -1 when out is full (out unchanged). */
static int mime_env_addr_list(struct buf *out, const char *v, size_t vl)
{
	struct mime_addr_parser ap;
	struct mime_addr a;
	size_t start = out->len;
	int r, any = 0;

	mime_addr_parser_init(&ap, v, vl);
	mime_addr_init(&a);
	while ((r = mime_addr_next(&ap, &a)) > 0) {
		if ((!any && buf_putc(out, '(') < 0) || mime_env_addr(out, &a) < 0) {
			r = -1;
			break;
		}
		any = 1;
	}
	mime_addr_free(&a);
	if (r == 0 && any)
		r = buf_putc(out, ')') < 0 ? -1 : 1;
	if (r < 0)
		mime_truncate(out, start);
	return r;
}

/* RFC 3501 §7.4.2: sender and reply-to default to from when absent or
 * empty; a field that holds no address at all counts as empty. */
static int mime_env_addrs(struct buf *out, const char *hdr, size_t hl,
                          const char *name, const char *fallback)
{
	const char *v;
	size_t vl;
	int r = 0;

	if (mime_header_find(hdr, hl, name, &v, &vl))
		r = mime_env_addr_list(out, v, vl);
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (fallback != NULL)
		return mime_env_addrs(out, hdr, hl, fallback, NULL);
	return buf_puts(out, "NIL");
}

static int mime_env(const struct mime_tree *t, int part, struct buf *out)
{
	const struct mime_part *p;
	const char *h;
	size_t hl;

	if (part < 0 || (unsigned)part >= t->nparts)
		return -1;
	p = &t->parts[part];
	h = t->msg + p->hdr_off;
	hl = p->hdr_len;
	if (buf_putc(out, '(') < 0 ||
	    mime_imap_header(out, h, hl, "Date", 1) < 0 || buf_putc(out, ' ') < 0 ||
	    mime_imap_header(out, h, hl, "Subject", 0) < 0 || buf_putc(out, ' ') < 0 ||
	    mime_env_addrs(out, h, hl, "From", NULL) < 0 || buf_putc(out, ' ') < 0 ||
	    mime_env_addrs(out, h, hl, "Sender", "From") < 0 || buf_putc(out, ' ') < 0 ||
	    mime_env_addrs(out, h, hl, "Reply-To", "From") < 0 || buf_putc(out, ' ') < 0 ||
	    mime_env_addrs(out, h, hl, "To", NULL) < 0 || buf_putc(out, ' ') < 0 ||
	    mime_env_addrs(out, h, hl, "Cc", NULL) < 0 || buf_putc(out, ' ') < 0 ||
	    mime_env_addrs(out, h, hl, "Bcc", NULL) < 0 || buf_putc(out, ' ') < 0 ||
	    mime_imap_header(out, h, hl, "In-Reply-To", 1) < 0 || buf_putc(out, ' ') < 0 ||
	    mime_imap_header(out, h, hl, "Message-ID", 1) < 0)
		return -1;
	return buf_putc(out, ')');
}

int mime_envelope(const struct mime_tree *t, int part, struct buf *out)
{
	size_t start = out->len;

	if (mime_env(t, part, out) < 0) {
		mime_truncate(out, start);
		return -1;
	}
	return 0;
}

/* ---- BODY / BODYSTRUCTURE (RFC 3501 §7.4.2) ---- */

/* RFC 2231 §7 attribute-char: what an encoded value keeps unescaped. */
static int mime_attr_char(unsigned char c)
{
	return c > 32 && c < 127 && strchr("*'%()<>@,;:\\\"/[]?=", c) == NULL;
}

/* One parameter as "name" "value". RFC 3501 §7.4.2 gives parameters as
 * attribute/value pairs and RFC 2231 values come joined and decoded
 * ("name*0*=us-ascii'en'a%20b; name*1*=%20c" is "name" "a b c"), as long
 * as the bytes are printable US-ASCII. Other bytes could only go as a
 * literal in a charset the client is not told, so such a value stays
 * RFC 2231 encoded, in the one-section form of §4 ("name*"
 * "utf-8'de'%E2%82%AC"), as Dovecot sends it and clients read it.
 * Returns 1 when it went encoded, 0 when not, -1 when out is full. */
static int mime_bs_param(struct buf *out, const struct mime_param *pp,
                         const struct mime_pval *pv, struct buf *tmp)
{
	size_t i;
	int enc = 0;

	for (i = 0; pv->ext && i < pv->v.len; i++)
		if ((unsigned char)pv->v.p[i] < 32 || (unsigned char)pv->v.p[i] > 126)
			enc = 1;
	buf_reset(tmp);
	for (i = 0; i < pp->name_len; i++)
		if (buf_putc(tmp, (char)tolower((unsigned char)pp->name[i])) < 0)
			return -1;
	if ((enc && buf_putc(tmp, '*') < 0) ||
	    mime_imap_string(out, tmp->p ? tmp->p : "", tmp->len) < 0 ||
	    buf_putc(out, ' ') < 0)
		return -1;
	if (!enc)
		return mime_imap_string(out, pv->v.p ? pv->v.p : "", pv->v.len);
	buf_reset(tmp);
	if (buf_append(tmp, pv->cs ? pv->cs : "", pv->cs_len) < 0 ||
	    buf_putc(tmp, '\'') < 0 ||
	    buf_append(tmp, pv->lang ? pv->lang : "", pv->lang_len) < 0 ||
	    buf_putc(tmp, '\'') < 0)
		return -1;
	for (i = 0; i < pv->v.len; i++) {
		unsigned char c = (unsigned char)pv->v.p[i];

		if (mime_attr_char(c) ? buf_putc(tmp, (char)c) < 0 :
		    buf_printf(tmp, "%%%02X", c) < 0)
			return -1;
	}
	return mime_imap_string(out, tmp->p, tmp->len) < 0 ? -1 : 1;
}

/* body-fld-param: each parameter once (the first of a name), RFC 2231
 * sections joined; NIL when there is none. A value left encoded is
 * followed by the plain parameter of its name, if the sender wrote one
 * for readers without RFC 2231. */
static int mime_bs_params(struct buf *out, const char *params, size_t len,
                          int text_default)
{
	struct mime_params ps;
	struct mime_pval pv;
	struct buf tmp;
	unsigned i, j;
	int any = 0, rc, r;

	rc = mime_params_read(params, len, &ps);
	mime_pval_init(&pv);
	buf_init(&tmp, 0);
	for (i = 0; rc == 0 && i < ps.n; i++) {
		for (j = 0; j < i; j++)
			if (mime_param_same(&ps.p[j], &ps.p[i]))
				break;
		if (j < i)
			continue;   /* a repeated name, or a later section */
		buf_reset(&pv.v);
		pv.cs = pv.lang = NULL;
		pv.cs_len = pv.lang_len = 0;
		pv.ext = 0;
		r = mime_param_value(&ps, i, &pv);
		if (r <= 0) {
			rc = r;
			continue;
		}
		rc = buf_puts(out, any ? " " : "(");
		any = 1;
		if (rc == 0)
			rc = mime_bs_param(out, &ps.p[i], &pv, &tmp);
		if (rc <= 0)
			continue;
		rc = 0;
		for (j = i; j < ps.n; j++)
			if (ps.p[j].section < 0 && mime_param_same(&ps.p[j], &ps.p[i]))
				break;
		if (j == ps.n)
			continue;
		buf_reset(&pv.v);
		pv.ext = 0;
		if (buf_append(&pv.v, (ps.vals.p ? ps.vals.p : "") + ps.p[j].voff,
		               ps.p[j].vlen) < 0 ||
		    buf_putc(out, ' ') < 0 ||
		    mime_bs_param(out, &ps.p[j], &pv, &tmp) < 0)
			rc = -1;
	}
	buf_free(&ps.vals);
	buf_free(&pv.v);
	buf_free(&tmp);
	if (rc < 0)
		return -1;
	if (any)
		return buf_putc(out, ')');
	/* RFC 2045 §5.2: plain US-ASCII text is the default */
	return buf_puts(out, text_default ? "(\"charset\" \"us-ascii\")" : "NIL");
}

/* body-fld-dsp: ("type" (params)) or NIL */
static int mime_bs_disposition(struct buf *out, const char *h, size_t hl)
{
	struct mime_lex lx;
	const char *v, *t;
	size_t vl, tl;
	char type[MIME_TYPE_MAX];

	if (!mime_header_find(h, hl, "Content-Disposition", &v, &vl))
		return buf_puts(out, "NIL");
	lx.p = v;
	lx.end = v + vl;
	if (!mime_lex_token(&lx, &t, &tl))
		return buf_puts(out, "NIL");
	mime_copy_lower(type, sizeof(type), t, tl);
	if (buf_putc(out, '(') < 0 || mime_imap_string(out, type, strlen(type)) < 0 ||
	    buf_putc(out, ' ') < 0 ||
	    mime_bs_params(out, lx.p, (size_t)(lx.end - lx.p), 0) < 0)
		return -1;
	return buf_putc(out, ')');
}

/* body-fld-lang: one string, a list of them, or NIL */
static int mime_bs_language(struct buf *out, const char *h, size_t hl)
{
	struct mime_lex lx;
	const char *v, *tags[16], *t;
	size_t vl, lens[16], tl;
	unsigned n = 0, i;

	if (mime_header_find(h, hl, "Content-Language", &v, &vl)) {
		lx.p = v;
		lx.end = v + vl;
		while (n < 16 && mime_lex_token(&lx, &t, &tl)) {
			tags[n] = t;
			lens[n++] = tl;
			if (!mime_lex_special(&lx, ','))
				break;
		}
	}
	if (n == 0)
		return buf_puts(out, "NIL");
	if (n == 1)
		return mime_imap_string(out, tags[0], lens[0]);
	for (i = 0; i < n; i++)
		if (buf_puts(out, i ? " " : "(") < 0 ||
		    mime_imap_string(out, tags[i], lens[i]) < 0)
			return -1;
	return buf_putc(out, ')');
}

static int mime_bs_ext_common(struct buf *out, const char *h, size_t hl)
{
	if (buf_putc(out, ' ') < 0 || mime_bs_disposition(out, h, hl) < 0 ||
	    buf_putc(out, ' ') < 0 || mime_bs_language(out, h, hl) < 0 ||
	    buf_putc(out, ' ') < 0)
		return -1;
	return mime_imap_header(out, h, hl, "Content-Location", 1);
}

static int mime_bs_part(const struct mime_tree *t, int idx, int ext,
                        struct buf *out);

static int mime_bs_multipart(const struct mime_tree *t, int idx, int ext,
                             const struct mime_ctype *ct, struct buf *out)
{
	const struct mime_part *p = &t->parts[idx];
	const char *h = t->msg + p->hdr_off;
	int c;

	if (buf_putc(out, '(') < 0)
		return -1;
	/* body-type-mpart needs a part: an empty multipart shows an empty
	 * text/plain one */
	if (p->child < 0 && buf_puts(out, ext ?
	    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)" :
	    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)") < 0)
		return -1;
	for (c = p->child; c >= 0; c = t->parts[c].next)
		if (mime_bs_part(t, c, ext, out) < 0)
			return -1;
	if (buf_putc(out, ' ') < 0 ||
	    mime_imap_string(out, ct->subtype, strlen(ct->subtype)) < 0)
		return -1;
	if (ext && (buf_putc(out, ' ') < 0 ||
	            mime_bs_params(out, ct->params, ct->params_len, 0) < 0 ||
	            mime_bs_ext_common(out, h, p->hdr_len) < 0))
		return -1;
	return buf_putc(out, ')');
}

static int mime_bs_part(const struct mime_tree *t, int idx, int ext,
                        struct buf *out)
{
	const struct mime_part *p = &t->parts[idx];
	const char *h = t->msg + p->hdr_off;
	size_t hl = p->hdr_len;
	struct mime_ctype ct;
	struct buf enc;
	int is_text, rc;

	mime_ctype_get(h, hl, (p->flags & MIME_PART_IN_DIGEST) != 0, &ct);
	if (p->flags & MIME_PART_MULTIPART)
		return mime_bs_multipart(t, idx, ext, &ct, out);
	if ((p->flags & MIME_PART_TRUNCATED) ||
	    (strcmp(ct.type, "multipart") == 0) ||
	    (strcmp(ct.type, "message") == 0 && !(p->flags & MIME_PART_MESSAGE) &&
	     (strcmp(ct.subtype, "rfc822") == 0 || strcmp(ct.subtype, "global") == 0))) {
		/* structure we did not parse (limits, no boundary): opaque */
		strcpy(ct.type, "application");
		strcpy(ct.subtype, "octet-stream");
	}
	is_text = strcmp(ct.type, "text") == 0;
	buf_init(&enc, 0);
	if (mime_header_get(h, hl, "Content-Transfer-Encoding", &enc) < 0 ||
	    buf_putc(out, '(') < 0 ||
	    mime_imap_string(out, ct.type, strlen(ct.type)) < 0 ||
	    buf_putc(out, ' ') < 0 ||
	    mime_imap_string(out, ct.subtype, strlen(ct.subtype)) < 0 ||
	    buf_putc(out, ' ') < 0 ||
	    mime_bs_params(out, ct.params, ct.params_len, is_text && !ct.present) < 0 ||
	    buf_putc(out, ' ') < 0 ||
	    mime_imap_header(out, h, hl, "Content-ID", 1) < 0 || buf_putc(out, ' ') < 0 ||
	    mime_imap_header(out, h, hl, "Content-Description", 0) < 0 ||
	    buf_putc(out, ' ') < 0 ||
	    (enc.len == 0 ? buf_puts(out, "\"7bit\"") :
	     mime_imap_string(out, enc.p, enc.len)) < 0 ||
	    buf_printf(out, " %zu", p->body_len) < 0) {
		buf_free(&enc);
		return -1;
	}
	buf_free(&enc);
	if (p->flags & MIME_PART_MESSAGE) {
		if (buf_putc(out, ' ') < 0 || mime_env(t, p->child, out) < 0 ||
		    buf_putc(out, ' ') < 0 || mime_bs_part(t, p->child, ext, out) < 0 ||
		    buf_printf(out, " %zu", p->body_lines) < 0)
			return -1;
	} else if (is_text && buf_printf(out, " %zu", p->body_lines) < 0) {
		return -1;
	}
	if (ext) {
		rc = buf_putc(out, ' ');
		if (rc == 0)
			rc = mime_imap_header(out, h, hl, "Content-MD5", 1);
		if (rc == 0)
			rc = mime_bs_ext_common(out, h, hl);
		if (rc < 0)
			return -1;
	}
	return buf_putc(out, ')');
}

int mime_bodystructure(const struct mime_tree *t, int extended, struct buf *out)
{
	size_t start = out->len;

	if (mime_bs_part(t, 0, extended, out) < 0) {
		mime_truncate(out, start);
		return -1;
	}
	return 0;
}

/* ---- BODY[section] (RFC 3501 §6.4.5) ---- */

static int mime_nth_child(const struct mime_tree *t, int node, unsigned long n)
{
	int c = t->parts[node].child;

	while (c >= 0 && --n > 0)
		c = t->parts[c].next;
	return c;
}

static int mime_spec_word(const char *s, size_t len, size_t *pos, const char *w)
{
	size_t n = strlen(w);

	if (len - *pos < n || strncasecmp(s + *pos, w, n) != 0)
		return 0;
	*pos += n;
	return 1;
}

enum mime_sec_rc mime_section(const struct mime_tree *t, const char *spec,
                              size_t len, struct mime_sect *s)
{
	size_t pos = 0;
	int node = 0, in_msg = 1, have_path = 0, gone = 0;
	const struct mime_part *p;

	memset(s, 0, sizeof(*s));
	while (pos < len && spec[pos] >= '0' && spec[pos] <= '9') {
		unsigned long n = 0;

		if (spec[pos] == '0')
			return MIME_SEC_BAD;   /* nz-number */
		while (pos < len && spec[pos] >= '0' && spec[pos] <= '9') {
			n = n * 10 + (unsigned long)(spec[pos++] - '0');
			if (n > 1000000)
				return MIME_SEC_BAD;
		}
		have_path = 1;
		if (!gone) {
			p = &t->parts[node];
			if (p->flags & MIME_PART_MULTIPART) {
				node = mime_nth_child(t, node, n);
				gone = node < 0;
			} else if (!(in_msg && n == 1)) {
				gone = 1;
			}
			in_msg = 0;
		}
		if (pos < len && spec[pos] != '.')
			return MIME_SEC_BAD;
		if (pos < len)
			pos++;
		if (pos < len && spec[pos] >= '0' && spec[pos] <= '9' && !gone) {
			p = &t->parts[node];
			if (p->flags & MIME_PART_MESSAGE) {
				node = p->child;
				in_msg = 1;
			} else if (!(p->flags & MIME_PART_MULTIPART)) {
				gone = 1;
			}
		}
		if (pos == len && spec[pos - 1] == '.')
			return MIME_SEC_BAD;
	}
	if (gone)
		node = -1;
	if (pos == len) {
		if (!have_path) {
			s->off = 0;
			s->len = t->len;
		} else if (node >= 0) {
			s->off = t->parts[node].body_off;
			s->len = t->parts[node].body_len;
		}
		return MIME_SEC_OK;
	}
	if (mime_spec_word(spec, len, &pos, "MIME")) {
		if (!have_path || pos != len)
			return MIME_SEC_BAD;
		if (node >= 0) {
			s->off = t->parts[node].hdr_off;
			s->len = t->parts[node].hdr_len;
		}
		return MIME_SEC_OK;
	}
	/* HEADER and TEXT of a part address the message/rfc822 it holds */
	if (have_path && node >= 0) {
		node = (t->parts[node].flags & MIME_PART_MESSAGE) ?
		       t->parts[node].child : -1;
	}
	if (mime_spec_word(spec, len, &pos, "TEXT")) {
		if (pos != len)
			return MIME_SEC_BAD;
		if (node >= 0) {
			s->off = t->parts[node].body_off;
			s->len = t->parts[node].body_len;
		}
		return MIME_SEC_OK;
	}
	if (!mime_spec_word(spec, len, &pos, "HEADER"))
		return MIME_SEC_BAD;
	if (node >= 0) {
		s->off = t->parts[node].hdr_off;
		s->len = t->parts[node].hdr_len;
	}
	if (pos == len)
		return MIME_SEC_OK;
	if (!mime_spec_word(spec, len, &pos, ".FIELDS"))
		return MIME_SEC_BAD;
	s->fields = 1;
	if (mime_spec_word(spec, len, &pos, ".NOT"))
		s->fields = 2;
	while (pos < len && spec[pos] == ' ')
		pos++;
	if (pos >= len || spec[pos] != '(' || spec[len - 1] != ')')
		return MIME_SEC_BAD;
	s->list = spec + pos + 1;
	s->list_len = len - pos - 2;
	return MIME_SEC_OK;
}

/* Is the field name in the header-list (astrings separated by spaces)? */
static int mime_list_has(const char *list, size_t ll, const char *name, size_t nl)
{
	size_t p = 0, s, e;

	while (p < ll) {
		while (p < ll && list[p] == ' ')
			p++;
		if (p >= ll)
			break;
		if (list[p] == '"') {
			s = ++p;
			while (p < ll && list[p] != '"')
				p++;
			e = p;
			if (p < ll)
				p++;
		} else {
			s = p;
			while (p < ll && list[p] != ' ')
				p++;
			e = p;
		}
		if (e - s == nl && strncasecmp(list + s, name, nl) == 0)
			return 1;
	}
	return 0;
}

int mime_header_fields(const char *hdr, size_t hdr_len, const char *list,
                       size_t list_len, int not, struct buf *out)
{
	size_t pos = 0, start = 0, nl, vl;
	const char *nm, *v;

	while (start = pos, mime_header_next(hdr, hdr_len, &pos, &nm, &nl, &v, &vl)) {
		size_t fs = (size_t)(nm - hdr), fe = pos;

		(void)start;
		if (mime_list_has(list, list_len, nm, nl) == !not) {
			if (buf_append(out, hdr + fs, fe - fs) < 0)
				return -1;
			if (fe > fs && hdr[fe - 1] != '\n' && buf_puts(out, "\r\n") < 0)
				return -1;
		}
	}
	return buf_puts(out, "\r\n");
}

int mime_section_fetch(const struct mime_tree *t, const char *spec,
                       size_t spec_len, struct buf *out)
{
	struct mime_sect s;

	if (mime_section(t, spec, spec_len, &s) != MIME_SEC_OK)
		return -1;
	if (s.fields)
		return mime_header_fields(t->msg + s.off, s.len, s.list, s.list_len,
		                          s.fields == 2, out);
	return buf_append(out, t->msg + s.off, s.len);
}

/* ---- decoders for SEARCH ---- */

static int mime_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int mime_b64char(unsigned char c)
{
	return isalnum(c) || c == '+' || c == '/';
}

/* RFC 2045 §6.8: characters outside the alphabet are ignored. */
static int mime_decode_base64(const char *in, size_t len, struct buf *out)
{
	unsigned char quad[4], res[3];
	size_t i;
	int q = 0, n;

	for (i = 0; i < len; i++) {
		if (in[i] == '=')
			break;
		if (!mime_b64char((unsigned char)in[i]))
			continue;
		quad[q++] = (unsigned char)in[i];
		if (q == 4) {
			if (EVP_DecodeBlock(res, quad, 4) != 3 ||
			    buf_append(out, res, 3) < 0)
				return -1;
			q = 0;
		}
	}
	if (q >= 2) {   /* pad the tail and keep only the real bytes */
		n = q - 1;
		while (q < 4)
			quad[q++] = 'A';
		if (EVP_DecodeBlock(res, quad, 4) != 3 ||
		    buf_append(out, res, (size_t)n) < 0)
			return -1;
	}
	return 0;
}

/* RFC 2045 §6.7; q_underscore: RFC 2047 §4.2 "_" is a space. */
static int mime_decode_qp(const char *in, size_t len, int q_underscore,
                          struct buf *out)
{
	size_t i;

	for (i = 0; i < len; i++) {
		char c = in[i];

		if (c == '=') {
			int hi, lo;
			size_t j = i + 1;

			while (j < len && (in[j] == ' ' || in[j] == '\t'))
				j++;
			if (j < len && (in[j] == '\r' || in[j] == '\n')) {
				if (in[j] == '\r' && j + 1 < len && in[j + 1] == '\n')
					j++;
				i = j;   /* soft line break */
				continue;
			}
			if (j == len) {
				i = j;
				continue;
			}
			hi = i + 1 < len ? mime_hexval(in[i + 1]) : -1;
			lo = i + 2 < len ? mime_hexval(in[i + 2]) : -1;
			if (hi >= 0 && lo >= 0) {
				if (buf_putc(out, (char)(hi * 16 + lo)) < 0)
					return -1;
				i += 2;
				continue;
			}
		} else if (c == '_' && q_underscore) {
			c = ' ';
		}
		if (buf_putc(out, c) < 0)
			return -1;
	}
	return 0;
}

int mime_decode_body(const char *in, size_t len, const char *cte,
                     struct buf *out)
{
	if (cte != NULL && strcasecmp(cte, "base64") == 0)
		return mime_decode_base64(in, len, out);
	if (cte != NULL && strcasecmp(cte, "quoted-printable") == 0)
		return mime_decode_qp(in, len, 0, out);
	return buf_append(out, in, len);
}

static int mime_is_utf8_charset(const char *cs)
{
	return cs[0] == '\0' || strcasecmp(cs, "utf-8") == 0 ||
	       strcasecmp(cs, "utf8") == 0 || strcasecmp(cs, "us-ascii") == 0;
}

/* Convert to UTF-8 with iconv; an unknown charset keeps the bytes.
 * Returns 0, or -1 when out is full. */
static int mime_to_utf8(const char *cs, const char *in, size_t len,
                        struct buf *out)
{
	iconv_t cd;
	char *ip = (char *)in, tmp[1024];
	size_t il = len;

	if (mime_is_utf8_charset(cs))
		return buf_append(out, in, len);
	cd = iconv_open("UTF-8", cs);
	if (cd == (iconv_t)-1)
		return buf_append(out, in, len);
	while (il > 0) {
		char *op = tmp;
		size_t ol = sizeof(tmp), r;

		r = iconv(cd, &ip, &il, &op, &ol);
		if (buf_append(out, tmp, sizeof(tmp) - ol) < 0) {
			iconv_close(cd);
			return -1;
		}
		if (r == (size_t)-1 && errno != E2BIG) {
			/* invalid or truncated input: skip a byte, go on */
			ip++;
			il--;
			if (buf_putc(out, '?') < 0) {
				iconv_close(cd);
				return -1;
			}
		}
	}
	iconv_close(cd);
	return 0;
}

/* One RFC 2047 §2 encoded word "=?cs?E?text?=" at in (len left): its
 * length, or 0 when it is not one. */
static size_t mime_ew_parse(const char *in, size_t len, char *cs, size_t cs_n,
                            char *enc, const char **txt, size_t *txt_len)
{
	size_t i = 2, s;

	if (len < 8 || in[0] != '=' || in[1] != '?')
		return 0;
	/* RFC 2047 §2: at most 75 characters; we allow more, but bound the
	 * look-ahead so that a header full of "=?" stays linear */
	if (len > MIME_EW_MAX)
		len = MIME_EW_MAX;
	s = i;
	while (i < len && in[i] != '?' && in[i] > ' ' && (unsigned char)in[i] < 127)
		i++;
	if (i >= len || in[i] != '?' || i == s || i - s >= cs_n)
		return 0;
	memcpy(cs, in + s, i - s);
	cs[i - s] = '\0';
	if (strchr(cs, '*') != NULL)   /* RFC 2231 §5 language suffix */
		*strchr(cs, '*') = '\0';
	i++;
	if (i + 1 >= len || in[i + 1] != '?')
		return 0;
	*enc = (char)toupper((unsigned char)in[i]);
	if (*enc != 'B' && *enc != 'Q')
		return 0;
	i += 2;
	s = i;
	while (i + 1 < len && !(in[i] == '?' && in[i + 1] == '=')) {
		if (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n')
			return 0;
		i++;
	}
	if (i + 1 >= len)
		return 0;
	*txt = in + s;
	*txt_len = i - s;
	return i + 2;
}

int mime_decode_header(const char *in, size_t len, struct buf *out)
{
	size_t i = 0, ws_start = 0, n, tl;
	int last_ew = 0;
	char cs[64], enc;
	const char *txt;
	struct buf raw;

	buf_init(&raw, 0);
	while (i < len) {
		n = mime_ew_parse(in + i, len - i, cs, sizeof(cs), &enc, &txt, &tl);
		if (n > 0) {
			/* RFC 2047 §6.2: white space between two encoded words
			 * is dropped; it was not appended yet */
			if (!last_ew && ws_start < i) {
				size_t k;

				for (k = ws_start; k < i; k++)
					if (in[k] != '\r' && in[k] != '\n' &&
					    buf_putc(out, in[k]) < 0)
						goto full;
			}
			buf_reset(&raw);
			if ((enc == 'B' ? mime_decode_base64(txt, tl, &raw) :
			     mime_decode_qp(txt, tl, 1, &raw)) < 0 ||
			    mime_to_utf8(cs, raw.p ? raw.p : "", raw.len, out) < 0)
				goto full;
			i += n;
			ws_start = i;
			last_ew = 1;
			continue;
		}
		if (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n') {
			i++;   /* held until we know what follows */
			continue;
		}
		/* ordinary text: flush held white space, copy a char */
		{
			size_t k;

			for (k = ws_start; k < i; k++)
				if (in[k] != '\r' && in[k] != '\n' &&
				    buf_putc(out, in[k]) < 0)
					goto full;
		}
		if (buf_putc(out, in[i]) < 0)
			goto full;
		i++;
		ws_start = i;
		last_ew = 0;
	}
	if (!last_ew) {
		size_t k;

		for (k = ws_start; k < len; k++)
			if (in[k] != '\r' && in[k] != '\n' && buf_putc(out, in[k]) < 0)
				goto full;
	}
	buf_free(&raw);
	return 0;
full:
	buf_free(&raw);
	return -1;
}

int mime_search_addr(const char *v, size_t len, struct buf *out)
{
	struct mime_addr_parser ap;
	struct mime_addr a;
	size_t start = out->len;
	int r, rc = 0, sep = 0;   /* sep: 1 ", " and 2 " " before the next */

	mime_addr_parser_init(&ap, v, len);
	mime_addr_init(&a);
	while (rc == 0 && (r = mime_addr_next(&ap, &a)) != 0) {
		if (r < 0 || (a.kind == MIME_ADDR_GROUP_END ?
		              buf_putc(out, ';') : buf_puts(out, sep == 1 ? ", " :
		                                            sep == 2 ? " " : "")) < 0) {
			rc = -1;
			break;
		}
		sep = 1;
		if (a.kind == MIME_ADDR_GROUP_END)
			continue;
		if (a.name.len > 0 &&
		    mime_decode_header(a.name.p, a.name.len, out) < 0)
			rc = -1;
		if (rc == 0 && a.kind == MIME_ADDR_GROUP_START) {
			rc = buf_putc(out, ':');
			sep = 2;
			continue;
		}
		if (rc == 0 && a.name.len > 0)
			rc = buf_puts(out, " <");
		if (rc == 0)
			rc = buf_append(out, a.local.p ? a.local.p : "", a.local.len);
		if (rc == 0 && a.domain.len > 0)
			rc = buf_putc(out, '@') < 0 ? -1 :
			     buf_append(out, a.domain.p, a.domain.len);
		if (rc == 0 && a.name.len > 0)
			rc = buf_putc(out, '>');
	}
	mime_addr_free(&a);
	if (rc < 0)
		mime_truncate(out, start);
	return rc;
}

static int mime_body_text_part(const struct mime_tree *t, int idx,
                               struct buf *out)
{
	const struct mime_part *p = &t->parts[idx];
	const char *h = t->msg + p->hdr_off;
	struct mime_ctype ct;
	struct buf cte, cs, dec;
	int c, rc = 0;

	if (p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)) {
		for (c = p->child; c >= 0 && rc == 0; c = t->parts[c].next)
			rc = mime_body_text_part(t, c, out);
		return rc;
	}
	mime_ctype_get(h, p->hdr_len, (p->flags & MIME_PART_IN_DIGEST) != 0, &ct);
	if (strcmp(ct.type, "text") != 0 && strcmp(ct.type, "message") != 0)
		return 0;
	buf_init(&cte, 0);
	buf_init(&cs, 0);
	buf_init(&dec, 0);
	if (mime_header_get(h, p->hdr_len, "Content-Transfer-Encoding", &cte) < 0 ||
	    mime_decode_body(t->msg + p->body_off, p->body_len, cte.p, &dec) < 0)
		rc = -1;
	if (rc == 0) {
		mime_param_get(ct.params, ct.params_len, "charset", &cs);
		rc = mime_to_utf8(cs.p ? cs.p : "", dec.p ? dec.p : "", dec.len, out);
	}
	if (rc == 0)
		rc = buf_putc(out, '\n');
	buf_free(&cte);
	buf_free(&cs);
	buf_free(&dec);
	return rc;
}

int mime_body_text(const struct mime_tree *t, int part, struct buf *out)
{
	if (part < 0 || (unsigned)part >= t->nparts)
		return -1;
	if (part == 0 && !(t->parts[0].flags & (MIME_PART_MULTIPART |
	                                         MIME_PART_MESSAGE))) {
		/* the message itself is the one text leaf */
		return mime_body_text_part(t, 0, out);
	}
	return mime_body_text_part(t, part, out);
}

static int mime_contains_naive(const char *hay, size_t hay_len,
                               const char *needle, size_t needle_len)
{
	size_t i, j;

	for (i = 0; i + needle_len <= hay_len; i++) {
		for (j = 0; j < needle_len; j++)
			if (tolower((unsigned char)hay[i + j]) !=
			    tolower((unsigned char)needle[j]))
				break;
		if (j == needle_len)
			return 1;
	}
	return 0;
}

/* A naive scan costs hay x needle: a 50 MB message and a 64 KB SEARCH
 * string would hold a worker for hours. Fold the case of the needle and
 * of the haystack window by window (windows overlap by needle - 1 bytes,
 * so no match straddles unseen) and let memmem(3), which is linear in
 * glibc (two-way), do the search. */
int mime_contains(const char *hay, size_t hay_len, const char *needle,
                  size_t needle_len)
{
	size_t chunk, pos, i, n;
	char *nl, *win;
	int found = 0;

	if (needle_len == 0)
		return 1;
	if (needle_len > hay_len)
		return 0;
	chunk = needle_len > MIME_CONTAINS_CHUNK / 4 ? 4 * needle_len :
	        MIME_CONTAINS_CHUNK;
	nl = malloc(needle_len);
	win = malloc(chunk + needle_len);
	if (nl == NULL || win == NULL) {
		free(nl);
		free(win);
		return mime_contains_naive(hay, hay_len, needle, needle_len);
	}
	for (i = 0; i < needle_len; i++)
		nl[i] = (char)tolower((unsigned char)needle[i]);
	for (pos = 0; pos < hay_len && !found; pos += chunk) {
		n = hay_len - pos;
		if (n > chunk + needle_len - 1)
			n = chunk + needle_len - 1;
		for (i = 0; i < n; i++)
			win[i] = (char)tolower((unsigned char)hay[pos + i]);
		found = memmem(win, n, nl, needle_len) != NULL;
		if (pos + n >= hay_len)
			break;
	}
	free(nl);
	free(win);
	return found;
}
