/* imap_search: SEARCH keys (RFC 3501 §6.4.4) compiled into a small tree
 * of nodes, evaluated per message. Flag, size, date and set keys use the
 * index only; header and text keys read and MIME-parse the message once
 * per message, and compare case-insensitively after RFC 2047 / transfer
 * decoding (shared/mime). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "imap_fetch.h"
#include "imap_search.h"
#include "mime.h"
#include "mstore.h"

enum imap_search_op {
	IMAP_SE_ALL, IMAP_SE_AND, IMAP_SE_OR, IMAP_SE_NOT,
	IMAP_SE_FLAG, IMAP_SE_UNFLAG, IMAP_SE_KEYWORD, IMAP_SE_UNKEYWORD,
	IMAP_SE_NEW, IMAP_SE_OLD, IMAP_SE_LARGER, IMAP_SE_SMALLER,
	IMAP_SE_BEFORE, IMAP_SE_ON, IMAP_SE_SINCE,
	IMAP_SE_SENTBEFORE, IMAP_SE_SENTON, IMAP_SE_SENTSINCE,
	IMAP_SE_HEADER, IMAP_SE_BODY, IMAP_SE_TEXT,
	IMAP_SE_SEQSET, IMAP_SE_UIDSET, IMAP_SE_MODSEQ,
};

struct imap_search_node {
	enum imap_search_op op;
	int a, b;                   /* children (AND: a = first, b = next) */
	unsigned flag;
	int kw;                     /* keyword index or -1 (never matches) */
	long long num;              /* size, date */
	const char *field, *str;
	int addr;                   /* FROM/TO/CC/BCC: match the addresses */
	size_t *set;                /* sorted indexes for set keys */
	size_t nset;
};

struct imap_search {
	struct imap_cmd *c;
	struct imap_search_node *n;
	size_t nn, cap;
	int root;
	struct buf msg, tmp, hdr;
	struct mime_tree *tree;
	size_t loaded;              /* idx + 1 of the loaded message */
	int load_failed;
	size_t hdr_loaded;          /* idx + 1 of the loaded header */
	int hdr_failed;
	int uses_modseq;            /* a MODSEQ key (RFC 7162 §3.1.5) */
};

long long imap_search_date(const char *s)
{
	static const char mon[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	struct tm tm;
	const char *p;
	int day = 0, y = 0, i;

	memset(&tm, 0, sizeof(tm));
	for (i = 0; i < 2 && isdigit((unsigned char)*s); i++)
		day = day * 10 + (*s++ - '0');
	if (i == 0 || *s++ != '-')
		return -1;
	for (p = mon; *p != '\0'; p += 3)
		if (strncasecmp(s, p, 3) == 0)
			break;
	if (*p == '\0' || s[3] != '-')
		return -1;
	s += 4;
	for (i = 0; i < 4; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		y = y * 10 + (s[i] - '0');
	}
	if (s[4] != '\0' || day < 1 || day > 31)
		return -1;
	tm.tm_mday = day;
	tm.tm_mon = (int)((p - mon) / 3);
	tm.tm_year = y - 1900;
	return (long long)timegm(&tm);
}

static int imap_search_node(struct imap_search *se, enum imap_search_op op)
{
	if (se->nn == se->cap) {
		size_t ncap = se->cap ? se->cap * 2 : 16;
		struct imap_search_node *nn;

		if (ncap > 4096)
			return -1;
		nn = realloc(se->n, ncap * sizeof(*nn));
		if (nn == NULL)
			return -1;
		se->n = nn;
		se->cap = ncap;
	}
	memset(&se->n[se->nn], 0, sizeof(se->n[0]));
	se->n[se->nn].op = op;
	se->n[se->nn].a = se->n[se->nn].b = -1;
	return (int)se->nn++;
}

static int imap_search_key(struct imap_search *se, struct imap_arg **ap,
			   unsigned depth, const char **why);

/* A sequence of keys ANDed: returns the first node of a chain. */
static int imap_search_and(struct imap_search *se, struct imap_arg *a,
			   unsigned depth, const char **why)
{
	int head, k;

	head = imap_search_node(se, IMAP_SE_AND);
	if (head < 0)
		return -1;
	k = head;
	while (a != NULL) {
		int child = imap_search_key(se, &a, depth + 1, why);
		int link;

		if (child < 0)
			return -1;
		if (se->n[k].a < 0) {
			se->n[k].a = child;
			continue;
		}
		link = imap_search_node(se, IMAP_SE_AND);
		if (link < 0)
			return -1;
		se->n[link].a = child;
		se->n[k].b = link;
		k = link;
	}
	if (se->n[head].a < 0) {
		*why = "Missing search key";
		return -1;
	}
	return head;
}

static const char *imap_search_str(struct imap_arg **ap)
{
	struct imap_arg *a = *ap;

	if (!imap_arg_is_string(a))
		return NULL;
	*ap = a->next;
	return a->s;
}

static int imap_search_set(struct imap_search *se, int node, const char *s,
			   int uid)
{
	/* RFC 3501 §6.4.4: a set names the view's messages; SEARCH of
	 * numbers past the end finds nothing (no error) */
	return imap_view_seqset(&se->c->u->view, s,
				uid ? IMAP_VIEW_SET_UID : IMAP_VIEW_SET_LENIENT,
				&se->n[node].set, &se->n[node].nset);
}

static int imap_search_key(struct imap_search *se, struct imap_arg **ap,
			   unsigned depth, const char **why)
{
	static const struct { const char *name; enum imap_search_op op;
		unsigned flag; } simple[] = {
		{ "ALL", IMAP_SE_ALL, 0 },
		{ "ANSWERED", IMAP_SE_FLAG, MSTORE_F_ANSWERED },
		{ "DELETED", IMAP_SE_FLAG, MSTORE_F_DELETED },
		{ "DRAFT", IMAP_SE_FLAG, MSTORE_F_DRAFT },
		{ "FLAGGED", IMAP_SE_FLAG, MSTORE_F_FLAGGED },
		{ "RECENT", IMAP_SE_FLAG, MSTORE_F_RECENT },
		{ "SEEN", IMAP_SE_FLAG, MSTORE_F_SEEN },
		{ "UNANSWERED", IMAP_SE_UNFLAG, MSTORE_F_ANSWERED },
		{ "UNDELETED", IMAP_SE_UNFLAG, MSTORE_F_DELETED },
		{ "UNDRAFT", IMAP_SE_UNFLAG, MSTORE_F_DRAFT },
		{ "UNFLAGGED", IMAP_SE_UNFLAG, MSTORE_F_FLAGGED },
		{ "UNSEEN", IMAP_SE_UNFLAG, MSTORE_F_SEEN },
		{ "NEW", IMAP_SE_NEW, 0 },
		{ "OLD", IMAP_SE_UNFLAG, MSTORE_F_RECENT },
	};
	static const struct { const char *name, *field; int addr; } hdr[] = {
		{ "BCC", "Bcc", 1 }, { "CC", "Cc", 1 }, { "FROM", "From", 1 },
		{ "SUBJECT", "Subject", 0 }, { "TO", "To", 1 },
	};
	static const struct { const char *name; enum imap_search_op op; }
	dates[] = {
		{ "BEFORE", IMAP_SE_BEFORE }, { "ON", IMAP_SE_ON },
		{ "SINCE", IMAP_SE_SINCE }, { "SENTBEFORE", IMAP_SE_SENTBEFORE },
		{ "SENTON", IMAP_SE_SENTON }, { "SENTSINCE", IMAP_SE_SENTSINCE },
	};
	struct imap_arg *a = *ap;
	const char *k, *s;
	size_t i;
	int n;

	if (depth > 32) {
		*why = "Search program nested too deep";
		return -1;
	}
	*why = "Invalid search key";
	if (a->type == IMAP_ARG_LIST) {
		*ap = a->next;
		return imap_search_and(se, a->child, depth, why);
	}
	if (a->type != IMAP_ARG_ATOM)
		return -1;
	k = a->s;
	*ap = a->next;
	for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (strcasecmp(k, simple[i].name) == 0) {
			n = imap_search_node(se, simple[i].op);
			if (n >= 0)
				se->n[n].flag = simple[i].flag;
			return n;
		}
	}
	for (i = 0; i < sizeof(hdr) / sizeof(hdr[0]); i++) {
		if (strcasecmp(k, hdr[i].name) == 0) {
			if ((s = imap_search_str(ap)) == NULL ||
			    (n = imap_search_node(se, IMAP_SE_HEADER)) < 0)
				return -1;
			se->n[n].field = hdr[i].field;
			se->n[n].addr = hdr[i].addr;
			se->n[n].str = s;
			return n;
		}
	}
	for (i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		if (strcasecmp(k, dates[i].name) == 0) {
			long long d;

			if ((s = imap_search_str(ap)) == NULL ||
			    (d = imap_search_date(s)) < 0 ||
			    (n = imap_search_node(se, dates[i].op)) < 0)
				return -1;
			se->n[n].num = d;
			return n;
		}
	}
	if (strcasecmp(k, "HEADER") == 0) {
		const char *fld = imap_search_str(ap);

		if (fld == NULL || (s = imap_search_str(ap)) == NULL ||
		    (n = imap_search_node(se, IMAP_SE_HEADER)) < 0)
			return -1;
		se->n[n].field = fld;
		se->n[n].str = s;
		return n;
	}
	if (strcasecmp(k, "BODY") == 0 || strcasecmp(k, "TEXT") == 0) {
		if ((s = imap_search_str(ap)) == NULL ||
		    (n = imap_search_node(se, strcasecmp(k, "BODY") == 0 ?
					  IMAP_SE_BODY : IMAP_SE_TEXT)) < 0)
			return -1;
		se->n[n].str = s;
		return n;
	}
	if (strcasecmp(k, "KEYWORD") == 0 || strcasecmp(k, "UNKEYWORD") == 0) {
		if ((s = imap_search_str(ap)) == NULL ||
		    (n = imap_search_node(se, toupper((unsigned char)k[0]) ==
					  'K' ? IMAP_SE_KEYWORD :
					  IMAP_SE_UNKEYWORD)) < 0)
			return -1;
		{
			struct err err;

			se->n[n].kw = mstore_keyword(se->c->u->folder, s, 0,
						     &err);
		}
		return n;
	}
	if (strcasecmp(k, "LARGER") == 0 || strcasecmp(k, "SMALLER") == 0) {
		uint32_t v;

		if ((s = imap_search_str(ap)) == NULL ||
		    imap_parser_number(s, strlen(s), &v) < 0 ||
		    (n = imap_search_node(se, toupper((unsigned char)k[0]) ==
					  'L' ? IMAP_SE_LARGER :
					  IMAP_SE_SMALLER)) < 0)
			return -1;
		se->n[n].num = v;
		return n;
	}
	if (strcasecmp(k, "NOT") == 0) {
		int child;

		if (*ap == NULL || (n = imap_search_node(se, IMAP_SE_NOT)) < 0)
			return -1;
		child = imap_search_key(se, ap, depth + 1, why);
		if (child < 0)
			return -1;
		se->n[n].a = child;
		return n;
	}
	if (strcasecmp(k, "OR") == 0) {
		int x, y;

		if (*ap == NULL || (n = imap_search_node(se, IMAP_SE_OR)) < 0)
			return -1;
		x = imap_search_key(se, ap, depth + 1, why);
		if (x < 0 || *ap == NULL)
			return -1;
		y = imap_search_key(se, ap, depth + 1, why);
		if (y < 0)
			return -1;
		se->n[n].a = x;
		se->n[n].b = y;
		return n;
	}
	if (strcasecmp(k, "MODSEQ") == 0) {
		/* RFC 7162 §3.1.5: MODSEQ [entry-name entry-type] value;
		 * flags have one mod-sequence here, whatever the entry */
		char *end;

		if ((s = imap_search_str(ap)) != NULL && s[0] == '/') {
			if ((s = imap_search_str(ap)) == NULL ||
			    (strcasecmp(s, "priv") != 0 &&
			     strcasecmp(s, "shared") != 0 &&
			     strcasecmp(s, "all") != 0) ||
			    (s = imap_search_str(ap)) == NULL)
				return -1;
		}
		if (s == NULL || s[0] < '0' || s[0] > '9' ||
		    (n = imap_search_node(se, IMAP_SE_MODSEQ)) < 0)
			return -1;
		se->n[n].num = (long long)strtoull(s, &end, 10);
		if (*end != '\0' || se->n[n].num < 0)
			return -1;
		se->uses_modseq = 1;
		return n;
	}
	if (strcasecmp(k, "UID") == 0) {
		if ((s = imap_search_str(ap)) == NULL ||
		    (n = imap_search_node(se, IMAP_SE_UIDSET)) < 0 ||
		    imap_search_set(se, n, s, 1) < 0)
			return -1;
		return n;
	}
	if ((k[0] >= '0' && k[0] <= '9') || k[0] == '*') {
		n = imap_search_node(se, IMAP_SE_SEQSET);
		if (n < 0 || imap_search_set(se, n, k, 0) < 0) {
			*why = "Invalid message set";
			return -1;
		}
		return n;
	}
	return -1;
}

struct imap_search *imap_search_new(struct imap_cmd *c, struct imap_arg *keys,
				    const char **why_r, int *badcharset_r)
{
	struct imap_search *se = calloc(1, sizeof(*se));

	*badcharset_r = 0;
	*why_r = "Out of memory";
	if (se == NULL)
		return NULL;
	se->c = c;
	buf_init(&se->msg, 0);
	buf_init(&se->tmp, 0);
	buf_init(&se->hdr, 0);
	/* RFC 3501 §6.4.4: [CHARSET name]; we search in UTF-8, which
	 * US-ASCII is a subset of. */
	if (keys != NULL && keys->type == IMAP_ARG_ATOM &&
	    strcasecmp(keys->s, "CHARSET") == 0) {
		keys = keys->next;
		if (!imap_arg_is_string(keys)) {
			*why_r = "CHARSET needs a name";
			imap_search_free(se);
			return NULL;
		}
		if (strcasecmp(keys->s, "UTF-8") != 0 &&
		    strcasecmp(keys->s, "US-ASCII") != 0) {
			*badcharset_r = 1;
			*why_r = "Unsupported charset";
			imap_search_free(se);
			return NULL;
		}
		keys = keys->next;
	}
	if (keys == NULL) {
		*why_r = "Missing search key";
		imap_search_free(se);
		return NULL;
	}
	se->root = imap_search_and(se, keys, 0, why_r);
	if (se->root < 0) {
		imap_search_free(se);
		return NULL;
	}
	return se;
}

void imap_search_free(struct imap_search *se)
{
	size_t i;

	if (se == NULL)
		return;
	for (i = 0; i < se->nn; i++)
		free(se->n[i].set);
	free(se->n);
	mime_tree_free(se->tree);
	buf_free(&se->msg);
	buf_free(&se->tmp);
	buf_free(&se->hdr);
	free(se);
}

static int imap_search_load(struct imap_search *se, size_t idx)
{
	struct mime_limits lim = { 0, 0 };
	struct err err;

	if (se->loaded == idx + 1)
		return se->load_failed ? -1 : 0;
	se->loaded = idx + 1;
	se->load_failed = 1;
	mime_tree_free(se->tree);
	se->tree = NULL;
	buf_reset(&se->msg);
	if (mstore_msg_read(se->c->u->folder, idx, 1, &se->msg, &err) < 0 ||
	    mime_parse(se->msg.p != NULL ? se->msg.p : "", se->msg.len, &lim,
		       &se->tree, &err) < 0)
		return -1;
	se->load_failed = 0;
	return 0;
}

/* Header keys read only the header block (no MIME parse). */
static int imap_search_load_hdr(struct imap_search *se, size_t idx)
{
	if (se->hdr_loaded == idx + 1)
		return se->hdr_failed ? -1 : 0;
	se->hdr_loaded = idx + 1;
	buf_reset(&se->hdr);
	se->hdr_failed = imap_fetch_header(se->c->u->folder, idx, &se->hdr) < 0;
	if (se->hdr.p == NULL)
		se->hdr_failed = 1;
	return se->hdr_failed ? -1 : 0;
}

/* RFC 2822 §3.3 date of the Date: header -> midnight UTC of its day
 * (RFC 3501: SENT* disregard time and timezone), or -1. */
static long long imap_search_sent(struct imap_search *se)
{
	char d[8], m[8], y[8], txt[32];
	const char *s;
	size_t i, j;

	buf_reset(&se->tmp);
	if (mime_header_get(se->hdr.p, se->hdr.len, "Date", &se->tmp) != 1)
		return -1;
	s = se->tmp.p;
	if (strchr(s, ',') != NULL)
		s = strchr(s, ',') + 1;
	while (*s == ' ')
		s++;
	for (i = 0; i < 3; i++) {
		char *out = i == 0 ? d : i == 1 ? m : y;

		for (j = 0; *s != '\0' && *s != ' ' && j + 1 < 8; j++)
			out[j] = *s++;
		out[j] = '\0';
		while (*s == ' ')
			s++;
	}
	if (strlen(y) == 2)
		snprintf(txt, sizeof(txt), "%s-%s-%s%s", d, m,
			 y[0] < '5' ? "20" : "19", y);
	else
		snprintf(txt, sizeof(txt), "%s-%s-%s", d, m, y);
	return imap_search_date(txt);
}

static int imap_search_header(struct imap_search *se,
			      const struct imap_search_node *n)
{
	const char *hdr = se->hdr.p;
	const char *name, *val;
	size_t nlen, vlen, pos = 0, flen = strlen(n->field);

	while (mime_header_next(hdr, se->hdr.len, &pos, &name, &nlen, &val,
				&vlen) == 1) {
		if (nlen != flen || strncasecmp(name, n->field, flen) != 0)
			continue;
		if (n->str[0] == '\0')
			return 1;
		buf_reset(&se->tmp);
		/* FROM/TO/CC/BCC match the parsed addresses (display name and
		 * addr-spec, comments dropped: "<a (x)@ (y) b>" is "a@b"), as
		 * Dovecot does; HEADER matches the decoded field text */
		if ((n->addr ? mime_search_addr(val, vlen, &se->tmp) :
		     mime_decode_header(val, vlen, &se->tmp)) < 0)
			continue;
		if (mime_contains(se->tmp.p != NULL ? se->tmp.p : "",
				  se->tmp.len, n->str, strlen(n->str)))
			return 1;
	}
	return 0;
}

static int imap_search_text(struct imap_search *se,
			    const struct imap_search_node *n)
{
	const struct mime_part *p = &se->tree->parts[0];

	if (n->op == IMAP_SE_TEXT) {
		buf_reset(&se->tmp);
		if (mime_decode_header(se->tree->msg + p->hdr_off, p->hdr_len,
				       &se->tmp) == 0 &&
		    mime_contains(se->tmp.p != NULL ? se->tmp.p : "",
				  se->tmp.len, n->str, strlen(n->str)))
			return 1;
	}
	buf_reset(&se->tmp);
	if (mime_body_text(se->tree, 0, &se->tmp) < 0)
		return 0;
	return mime_contains(se->tmp.p != NULL ? se->tmp.p : "", se->tmp.len,
			     n->str, strlen(n->str));
}

static int imap_search_inset(const struct imap_search_node *n, size_t idx)
{
	size_t lo = 0, hi = n->nset;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (n->set[mid] == idx)
			return 1;
		if (n->set[mid] < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Node i for view message vidx, which is store message idx. */
static int imap_search_eval(struct imap_search *se, int i, size_t vidx,
			    size_t idx)
{
	const struct imap_search_node *n = &se->n[i];
	const struct mstore_msg *m = &se->c->u->folder->msgs[idx];
	/* \Recent is the session's: the view's (RFC 3501 §2.3.2) */
	unsigned flags = (m->flags & ~MSTORE_F_RECENT) |
		(se->c->u->view.msgs[vidx].flags & MSTORE_F_RECENT);
	long long day = (long long)m->internaldate -
		((long long)m->internaldate % 86400);
	long long sent;

	switch (n->op) {
	case IMAP_SE_ALL:
		return 1;
	case IMAP_SE_AND:
		for (; i >= 0; i = se->n[i].b)
			if (!imap_search_eval(se, se->n[i].a, vidx, idx))
				return 0;
		return 1;
	case IMAP_SE_OR:
		return imap_search_eval(se, n->a, vidx, idx) ||
			imap_search_eval(se, n->b, vidx, idx);
	case IMAP_SE_NOT:
		return !imap_search_eval(se, n->a, vidx, idx);
	case IMAP_SE_FLAG:
		return (flags & n->flag) != 0;
	case IMAP_SE_UNFLAG:
		return (flags & n->flag) == 0;
	case IMAP_SE_NEW:
		return (flags & MSTORE_F_RECENT) && !(flags & MSTORE_F_SEEN);
	case IMAP_SE_MODSEQ:
		return m->modseq >= (uint64_t)n->num;
	case IMAP_SE_KEYWORD:
		return n->kw >= 0 && (m->keywords & (1u << n->kw));
	case IMAP_SE_UNKEYWORD:
		return n->kw < 0 || !(m->keywords & (1u << n->kw));
	case IMAP_SE_LARGER:
		return (long long)m->vsize > n->num;
	case IMAP_SE_SMALLER:
		return (long long)m->vsize < n->num;
	case IMAP_SE_BEFORE:
		return day < n->num;
	case IMAP_SE_ON:
		return day == n->num;
	case IMAP_SE_SINCE:
		return day >= n->num;
	case IMAP_SE_SEQSET:
	case IMAP_SE_UIDSET:
		return imap_search_inset(n, vidx);
	default:
		break;
	}
	if (n->op == IMAP_SE_BODY || n->op == IMAP_SE_TEXT)
		return imap_search_load(se, idx) < 0 ? 0 :
			imap_search_text(se, n);
	if (imap_search_load_hdr(se, idx) < 0)
		return 0;
	switch (n->op) {
	case IMAP_SE_SENTBEFORE:
	case IMAP_SE_SENTON:
	case IMAP_SE_SENTSINCE:
		sent = imap_search_sent(se);
		if (sent < 0)
			return 0;
		return n->op == IMAP_SE_SENTBEFORE ? sent < n->num :
			n->op == IMAP_SE_SENTON ? sent == n->num :
			sent >= n->num;
	case IMAP_SE_HEADER:
		return imap_search_header(se, n);
	case IMAP_SE_BODY:
	case IMAP_SE_TEXT:
		return imap_search_text(se, n);
	default:
		return 0;
	}
}

int imap_search_match(struct imap_search *se, size_t vidx, size_t idx)
{
	return imap_search_eval(se, se->root, vidx, idx);
}

int imap_search_uses_modseq(const struct imap_search *se)
{
	return se->uses_modseq;
}
