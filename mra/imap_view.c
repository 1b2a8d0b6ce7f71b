/* imap_view: a session's view of its selected mailbox and the untagged
 * responses that keep the client's copy in step with the store. */
#include <stdlib.h>
#include <string.h>
#include "imap_flags.h"
#include "imap_parser.h"
#include "imap_view.h"

/* The flags a client sees and may change (no \Recent, no P). */
#define IMAP_VIEW_FLAGS (MSTORE_F_SEEN | MSTORE_F_ANSWERED | \
			 MSTORE_F_FLAGGED | MSTORE_F_DELETED | MSTORE_F_DRAFT)

void imap_view_src_of(struct imap_view_src *src, const struct mstore_folder *f)
{
	src->msgs = f->msgs;
	src->count = f->count;
	src->kwnames = (const char *const *)f->keywords;
	src->uidvalidity = f->uidvalidity;
	src->uidnext = f->uidnext;
	src->highestmodseq = f->highestmodseq;
}

void imap_view_init(struct imap_view *v)
{
	memset(v, 0, sizeof(*v));
}

void imap_view_free(struct imap_view *v)
{
	free(v->msgs);
	imap_view_init(v);
}

static int imap_view_reserve(struct imap_view *v, size_t n)
{
	struct imap_view_msg *m;
	size_t cap;

	if (n <= v->cap)
		return 0;
	cap = v->cap ? v->cap : 64;
	while (cap < n)
		cap *= 2;
	m = realloc(v->msgs, cap * sizeof(*m));
	if (m == NULL)
		return -1;
	v->msgs = m;
	v->cap = cap;
	return 0;
}

static void imap_view_take(struct imap_view_msg *vm, const struct mstore_msg *m)
{
	vm->uid = m->uid;
	vm->keywords = m->keywords;
	vm->modseq = m->modseq;
	vm->flags = (unsigned char)(m->flags & (IMAP_VIEW_FLAGS |
						 MSTORE_F_RECENT));
	vm->gone = 0;
}

/* Keyword bits that have a name a client can be given. */
static uint32_t imap_view_kw_defined(const char *const *kwnames)
{
	uint32_t mask = 0;
	unsigned i;

	for (i = 0; kwnames != NULL && i < MSTORE_MAX_KEYWORDS; i++)
		if (kwnames[i] != NULL && imap_flags_is_atom(kwnames[i]))
			mask |= 1u << i;
	return mask;
}

/* FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6: before any keyword that is
 * new to the client). Read-only: no permanent flags (§7.1). */
static int imap_view_announce(struct imap_view *v, const char *const *kwnames,
			      uint32_t mask, struct buf *out)
{
	unsigned i, n = 0;

	for (i = 0; kwnames != NULL && i < MSTORE_MAX_KEYWORDS; i++)
		if (kwnames[i] != NULL)
			n++;
	if (imap_flags_put_announce(out, kwnames, mask,
				    v->readonly ? IMAP_FLAGS_PERM_NONE :
				    n < MSTORE_MAX_KEYWORDS ?
				    IMAP_FLAGS_PERM_CREATE :
				    IMAP_FLAGS_PERM_FIXED) < 0)
		return -1;
	v->kw_told = mask;
	return 0;
}

size_t imap_view_recent(const struct imap_view *v)
{
	size_t i, n = 0;

	for (i = 0; i < v->count; i++)
		if (v->msgs[i].flags & MSTORE_F_RECENT)
			n++;
	return n;
}

int imap_view_open(struct imap_view *v, const struct imap_view_src *src,
		   int readonly, struct buf *out)
{
	size_t i, unseen = 0, start = out->len;
	unsigned opts = v->opts;
	int rc;

	imap_view_free(v);
	v->opts = opts;
	v->readonly = readonly;
	if (imap_view_reserve(v, src->count) < 0)
		return -1;
	for (i = 0; i < src->count; i++) {
		imap_view_take(&v->msgs[i], &src->msgs[i]);
		if (unseen == 0 && !(src->msgs[i].flags & MSTORE_F_SEEN))
			unseen = i + 1;
	}
	v->count = src->count;
	v->uidvalidity = src->uidvalidity;
	v->uidnext = src->uidnext;
	v->highestmodseq = src->highestmodseq;
	rc = imap_view_announce(v, src->kwnames,
				imap_view_kw_defined(src->kwnames), out);
	if (rc == 0)
		rc = buf_printf(out, "* %zu EXISTS\r\n* %zu RECENT\r\n",
				v->count, imap_view_recent(v));
	if (rc == 0 && unseen > 0)
		rc = buf_printf(out, "* OK [UNSEEN %zu] First unseen.\r\n",
				unseen);
	if (rc == 0)
		rc = buf_printf(out, "* OK [UIDVALIDITY %u] UIDs valid\r\n"
				"* OK [UIDNEXT %u] Predicted next UID\r\n"
				"* OK [HIGHESTMODSEQ %llu] Highest\r\n",
				v->uidvalidity, v->uidnext,
				(unsigned long long)v->highestmodseq);
	if (rc < 0) {
		out->len = start;
		if (out->p != NULL)
			out->p[start] = '\0';
		imap_view_free(v);
		v->opts = opts;
	}
	return rc;
}

int imap_view_put_uidset(struct buf *out, const uint32_t *u, size_t n)
{
	size_t i = 0, j, start = out->len;
	int rc = 0;

	while (i < n && rc == 0) {
		j = i;
		while (j + 1 < n && u[j + 1] == u[j] + 1)
			j++;
		if (i > 0)
			rc = buf_putc(out, ',');
		if (rc == 0 && j > i)
			rc = buf_printf(out, "%u:%u", u[i], u[j]);
		else if (rc == 0)
			rc = buf_printf(out, "%u", u[i]);
		i = j + 1;
	}
	if (rc < 0) {
		out->len = start;
		if (out->p != NULL)
			out->p[start] = '\0';
	}
	return rc;
}

int imap_view_put_fetch(const struct imap_view *v, size_t idx,
			const char *const *kwnames, int with_uid,
			int with_modseq, struct buf *out)
{
	const struct imap_view_msg *m = &v->msgs[idx];
	size_t start = out->len;
	int rc;

	rc = buf_printf(out, "* %zu FETCH (", idx + 1);
	if (rc == 0 && with_uid)
		rc = buf_printf(out, "UID %u ", m->uid);
	if (rc == 0)
		rc = buf_puts(out, "FLAGS ");
	if (rc == 0)
		rc = imap_flags_put(out, kwnames, m->flags, m->keywords);
	if (rc == 0 && with_modseq)
		rc = buf_printf(out, " MODSEQ (%llu)",
				(unsigned long long)m->modseq);
	if (rc == 0)
		rc = buf_puts(out, ")\r\n");
	if (rc < 0) {
		out->len = start;
		if (out->p != NULL)
			out->p[start] = '\0';
	}
	return rc;
}

/* Drop the gone messages and tell the client: EXPUNGE highest first, so
 * that each number is still valid when it is read (RFC 3501 §7.4.1), or
 * one VANISHED (RFC 7162 §3.2.10). */
static int imap_view_expunge(struct imap_view *v, struct buf *out)
{
	size_t i, j, n = 0;
	uint32_t *uids;
	int rc = 0;

	for (i = 0; i < v->count; i++)
		n += v->msgs[i].gone;
	if (n == 0)
		return 0;
	if (v->opts & IMAP_VIEW_QRESYNC) {
		uids = malloc(n * sizeof(*uids));
		if (uids == NULL)
			return -1;
		for (i = 0, j = 0; i < v->count; i++)
			if (v->msgs[i].gone)
				uids[j++] = v->msgs[i].uid;
		rc = buf_puts(out, "* VANISHED ");
		if (rc == 0)
			rc = imap_view_put_uidset(out, uids, n);
		if (rc == 0)
			rc = buf_puts(out, "\r\n");
		free(uids);
		if (rc < 0)
			return -1;
	} else {
		for (i = v->count; i > 0; i--)
			if (v->msgs[i - 1].gone &&
			    buf_printf(out, "* %zu EXPUNGE\r\n", i) < 0)
				return -1;
	}
	for (i = 0, j = 0; i < v->count; i++)
		if (!v->msgs[i].gone)
			v->msgs[j++] = v->msgs[i];
	v->count = j;
	return 0;
}

int imap_view_sync(struct imap_view *v, const struct imap_view_src *src,
		   unsigned flags, struct buf *out)
{
	size_t i, j, nnew = 0;
	uint32_t last, defined;
	int condstore = (v->opts & (IMAP_VIEW_CONDSTORE | IMAP_VIEW_QRESYNC))
		!= 0;

	/* what the store no longer has */
	for (i = 0, j = 0; i < v->count; i++) {
		while (j < src->count && src->msgs[j].uid < v->msgs[i].uid)
			j++;
		if (j >= src->count || src->msgs[j].uid != v->msgs[i].uid)
			v->msgs[i].gone = 1;
	}
	if ((flags & IMAP_VIEW_EXPUNGE) && imap_view_expunge(v, out) < 0)
		return -1;
	defined = imap_view_kw_defined(src->kwnames);
	if ((defined & ~v->kw_told) != 0 &&
	    imap_view_announce(v, src->kwnames, defined, out) < 0)
		return -1;
	/* flag changes of the messages the client knows */
	for (i = 0, j = 0; i < v->count; i++) {
		struct imap_view_msg *vm = &v->msgs[i];
		const struct mstore_msg *m;
		unsigned nf;

		if (vm->gone)
			continue;
		while (j < src->count && src->msgs[j].uid < vm->uid)
			j++;
		if (j >= src->count)
			break;
		m = &src->msgs[j];
		nf = (m->flags & IMAP_VIEW_FLAGS) | (vm->flags & MSTORE_F_RECENT);
		if (nf == vm->flags && m->keywords == vm->keywords &&
		    (!condstore || m->modseq == vm->modseq)) {
			vm->modseq = m->modseq;
			continue;
		}
		vm->flags = (unsigned char)nf;
		vm->keywords = m->keywords;
		vm->modseq = m->modseq;
		/* RFC 7162 §3.2.4: UID in every unsolicited FETCH once
		 * QRESYNC is on; we always give it */
		if (imap_view_put_fetch(v, i, src->kwnames, 1, condstore,
					out) < 0)
			return -1;
	}
	/* new messages: UIDs only grow, so they follow the last one */
	last = v->count > 0 ? v->msgs[v->count - 1].uid : 0;
	for (j = 0; j < src->count; j++)
		if (src->msgs[j].uid > last)
			nnew++;
	if (nnew > 0) {
		if (imap_view_reserve(v, v->count + nnew) < 0)
			return -1;
		for (j = src->count - nnew; j < src->count; j++)
			imap_view_take(&v->msgs[v->count++], &src->msgs[j]);
		if (buf_printf(out, "* %zu EXISTS\r\n* %zu RECENT\r\n",
			       v->count, imap_view_recent(v)) < 0)
			return -1;
	}
	v->uidnext = src->uidnext;
	v->highestmodseq = src->highestmodseq;
	return 0;
}

long imap_view_find_uid(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v->msgs[mid].uid == uid)
			return (long)mid;
		if (v->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* First view index whose uid >= uid. */
static size_t imap_view_lower(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Parsed ranges of set with '*' replaced by star and lo <= hi. */
static struct imap_seq_range *imap_view_ranges(const char *set, uint32_t star,
					       size_t *n_r)
{
	struct imap_seq_range *r;
	size_t i, nr = 1;
	int k;

	for (i = 0; set[i] != '\0'; i++)
		if (set[i] == ',')
			nr++;
	r = malloc(nr * sizeof(*r));
	if (r == NULL)
		return NULL;
	k = imap_seqset_parse(set, r, nr);
	if (k < 0) {
		free(r);
		return NULL;
	}
	for (i = 0; i < (size_t)k; i++) {
		if (r[i].lo == IMAP_SEQ_STAR)
			r[i].lo = star;
		if (r[i].hi == IMAP_SEQ_STAR)
			r[i].hi = star;
		if (r[i].lo > r[i].hi) {
			uint32_t t = r[i].lo;

			r[i].lo = r[i].hi;
			r[i].hi = t;
		}
	}
	*n_r = (size_t)k;
	return r;
}

int imap_view_seqset(const struct imap_view *v, const char *set,
		     unsigned how, size_t **idx_r, size_t *n_r)
{
	int uid = (how & IMAP_VIEW_SET_UID) != 0;
	struct imap_seq_range *r;
	unsigned char *mark;
	size_t nr, i, k, n = 0;
	uint32_t star;

	*idx_r = NULL;
	*n_r = 0;
	/* '*' is the last message; in an empty mailbox nothing (UID), or
	 * an error (a sequence number names no message) */
	star = v->count == 0 ? 0 : uid ? v->msgs[v->count - 1].uid :
		(uint32_t)v->count;
	r = imap_view_ranges(set, star, &nr);
	if (r == NULL)
		return -1;
	if (v->count == 0) {
		free(r);
		return uid || (how & IMAP_VIEW_SET_LENIENT) ? 0 : -1;
	}
	mark = calloc(v->count, 1);
	if (mark == NULL) {
		free(r);
		return -1;
	}
	for (k = 0; k < nr; k++) {
		if (!uid) {
			if (r[k].lo == 0 || (r[k].hi > v->count &&
					     !(how & IMAP_VIEW_SET_LENIENT))) {
				free(r);
				free(mark);
				return -1;
			}
			if (r[k].lo > v->count)
				continue;
			if (r[k].hi > v->count)
				r[k].hi = (uint32_t)v->count;
			memset(mark + r[k].lo - 1, 1, r[k].hi - r[k].lo + 1);
			continue;
		}
		for (i = imap_view_lower(v, r[k].lo);
		     i < v->count && v->msgs[i].uid <= r[k].hi; i++)
			mark[i] = 1;
	}
	free(r);
	for (i = 0; i < v->count; i++)
		n += mark[i];
	if (n > 0 && (*idx_r = malloc(n * sizeof(**idx_r))) == NULL) {
		free(mark);
		return -1;
	}
	for (i = 0, k = 0; i < v->count; i++)
		if (mark[i])
			(*idx_r)[k++] = i;
	free(mark);
	*n_r = n;
	return 0;
}

static int imap_view_range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* One gap [lo, hi] of a uid-set being written ("," between pieces). */
static int imap_view_put_gap(struct buf *out, uint32_t lo, uint32_t hi,
			     int *first)
{
	int rc = *first ? buf_puts(out, "* VANISHED (EARLIER) ") :
		buf_putc(out, ',');

	*first = 0;
	if (rc == 0)
		rc = lo == hi ? buf_printf(out, "%u", lo) :
			buf_printf(out, "%u:%u", lo, hi);
	return rc;
}

int imap_view_put_vanished(const struct imap_view *v, const char *set,
			   struct buf *out)
{
	struct imap_seq_range *r;
	uint32_t top = v->uidnext > 0 ? v->uidnext - 1 : 0;
	size_t nr, k, m = 0, i, start = out->len;
	int rc = 0, first = 1;

	r = imap_view_ranges(set, top, &nr);
	if (r == NULL)
		return -1;
	/* a client's ranges, clipped to what the mailbox ever held (UIDs
	 * below UIDNEXT), sorted and merged: the work is bounded by the
	 * ranges and the view's messages, not by how wide they are */
	for (k = 0; k < nr; k++) {
		if (r[k].lo == 0)
			r[k].lo = 1;
		if (r[k].hi > top)
			r[k].hi = top;
		if (r[k].lo <= r[k].hi)
			r[m++] = r[k];
	}
	qsort(r, m, sizeof(*r), imap_view_range_cmp);
	for (k = 0, nr = 0; k < m; k++) {
		if (nr > 0 && (uint64_t)r[k].lo <= (uint64_t)r[nr - 1].hi + 1) {
			if (r[k].hi > r[nr - 1].hi)
				r[nr - 1].hi = r[k].hi;
		} else {
			r[nr++] = r[k];
		}
	}
	for (k = 0; k < nr && rc == 0; k++) {
		uint64_t next = r[k].lo;   /* first UID not yet accounted */

		for (i = imap_view_lower(v, r[k].lo);
		     i < v->count && v->msgs[i].uid <= r[k].hi && rc == 0;
		     i++) {
			if (v->msgs[i].uid > next)
				rc = imap_view_put_gap(out, (uint32_t)next,
						       v->msgs[i].uid - 1,
						       &first);
			next = (uint64_t)v->msgs[i].uid + 1;
		}
		if (rc == 0 && next <= r[k].hi)
			rc = imap_view_put_gap(out, (uint32_t)next, r[k].hi,
					       &first);
	}
	free(r);
	if (rc == 0 && !first)
		rc = buf_puts(out, "\r\n");
	if (rc < 0) {
		out->len = start;
		if (out->p != NULL)
			out->p[start] = '\0';
	}
	return rc;
}

int imap_view_qresync(const struct imap_view *v, uint64_t modseq,
		      const char *known, const char *const *kwnames,
		      struct buf *out)
{
	size_t *idx = NULL, n = 0, i;
	int rc;

	rc = imap_view_put_vanished(v, known != NULL ? known : "1:*", out);
	if (rc == 0 && known != NULL)
		rc = imap_view_seqset(v, known, IMAP_VIEW_SET_UID, &idx, &n);
	if (rc < 0)
		return -1;
	if (known == NULL) {
		for (i = 0; i < v->count && rc == 0; i++)
			if (v->msgs[i].modseq > modseq)
				rc = imap_view_put_fetch(v, i, kwnames, 1, 1,
							 out);
	} else {
		for (i = 0; i < n && rc == 0; i++)
			if (v->msgs[idx[i]].modseq > modseq)
				rc = imap_view_put_fetch(v, idx[i], kwnames, 1,
							 1, out);
	}
	free(idx);
	return rc;
}

void imap_view_told(struct imap_view *v, size_t idx, unsigned flags,
		    uint32_t keywords, uint64_t modseq)
{
	struct imap_view_msg *vm = &v->msgs[idx];

	vm->flags = (unsigned char)((flags & IMAP_VIEW_FLAGS) |
				    (vm->flags & MSTORE_F_RECENT));
	vm->keywords = keywords;
	vm->modseq = modseq;
}
