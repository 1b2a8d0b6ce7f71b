/* imap_fetch: FETCH item parsing and rendering. A message is read (CRLF
 * line ends, so sizes and offsets match RFC822.SIZE) only when an item
 * needs its bytes, and MIME-parsed only when an item needs structure.
 * Every response is built whole or not at all (STYLE §4: a full buffer is
 * reported, never a cut-off response). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "imap_fetch.h"
#include "imap_flags.h"
#include "log.h"
#include "mime.h"
#include "mstore.h"

#define IMAP_FETCH_MAX_ITEMS 64

enum imap_fetch_type {
	IMAP_FETCH_UID, IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE,
	IMAP_FETCH_SIZE, IMAP_FETCH_MODSEQ, IMAP_FETCH_ENVELOPE, IMAP_FETCH_BODY,
	IMAP_FETCH_BODYSTRUCTURE, IMAP_FETCH_SECTION, IMAP_FETCH_RFC822,
	IMAP_FETCH_RFC822_HEADER, IMAP_FETCH_RFC822_TEXT,
};

struct imap_fetch_item {
	enum imap_fetch_type type;
	int peek;
	const char *sect;        /* between the brackets (borrowed) */
	size_t sect_len;
	int partial;
	uint32_t origin, count;
};

struct imap_fetch {
	struct imap_fetch_item it[IMAP_FETCH_MAX_ITEMS];
	size_t n;
	int need_msg, need_mime, sets_seen;
	int need_body;            /* more than the header block */
};

/* imap_fetch_run's outcome for one message */
enum imap_fetch_rc {
	IMAP_FETCH_OK = 0,
	IMAP_FETCH_GONE = 1,      /* expunged meanwhile: nothing sent */
	IMAP_FETCH_LIMIT = -1,    /* past IMAP_FETCH_OUT_MAX (or memory) */
};

/* Take back a response begun at len (buf has no call for it). */
static void imap_fetch_truncate(struct buf *b, size_t len)
{
	b->len = len;
	if (b->p != NULL)
		b->p[len] = '\0';
}

/* Cut a message buffer after its header block (CRLF CRLF). */
static void imap_fetch_cut_header(struct buf *b, size_t from)
{
	size_t i;

	if (b->len >= 2 && from == 0 && b->p[0] == '\r' && b->p[1] == '\n') {
		b->len = 2;
		b->p[2] = '\0';
		return;
	}
	for (i = from >= 3 ? from - 3 : 0; i + 4 <= b->len; i++) {
		if (memcmp(b->p + i, "\r\n\r\n", 4) == 0) {
			b->len = i + 4;
			b->p[b->len] = '\0';
			return;
		}
	}
}

int imap_fetch_header(struct mstore_folder *f, size_t idx, struct buf *out)
{
	char path[4200], tmp[4096];
	size_t start = out->len, scanned;
	struct err err;
	ssize_t r, i, s;
	char prev = 0;
	int fd;

	if (mstore_msg_path(f, idx, path, sizeof(path)) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* renamed by another session: mstore finds it again */
		if (mstore_msg_read(f, idx, 1, out, &err) < 0)
			return -1;
		imap_fetch_cut_header(out, start);
		return 0;
	}
	for (;;) {
		r = read(fd, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		scanned = out->len;
		/* RFC 5322 §2.3: CRLF on the wire, as mstore_msg_read does */
		for (i = 0, s = 0; i < r; i++) {
			if (tmp[i] == '\n' && (i > 0 ? tmp[i - 1] : prev) != '\r') {
				if (buf_append(out, tmp + s, (size_t)(i - s)) < 0 ||
				    buf_putc(out, '\r') < 0)
					goto fail;
				s = i;
			}
		}
		if (buf_append(out, tmp + s, (size_t)(r - s)) < 0)
			goto fail;
		prev = tmp[r - 1];
		imap_fetch_cut_header(out, scanned > start ? scanned : start);
		if ((out->len >= start + 2 && out->len - start == 2 &&
		     out->p[start] == '\r') ||
		    (out->len >= start + 4 &&
		     memcmp(out->p + out->len - 4, "\r\n\r\n", 4) == 0))
			break;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

static int imap_fetch_add(struct imap_fetch *fe, enum imap_fetch_type t)
{
	size_t i;

	for (i = 0; i < fe->n; i++)
		if (fe->it[i].type == t && t != IMAP_FETCH_SECTION)
			return 0;
	if (fe->n >= IMAP_FETCH_MAX_ITEMS)
		return -1;
	memset(&fe->it[fe->n], 0, sizeof(fe->it[0]));
	fe->it[fe->n++].type = t;
	if (t >= IMAP_FETCH_ENVELOPE)
		fe->need_msg = 1;
	if (t == IMAP_FETCH_BODY || t == IMAP_FETCH_BODYSTRUCTURE ||
	    t == IMAP_FETCH_RFC822 || t == IMAP_FETCH_RFC822_TEXT)
		fe->need_body = 1;
	if (t == IMAP_FETCH_ENVELOPE || t == IMAP_FETCH_BODY ||
	    t == IMAP_FETCH_BODYSTRUCTURE)
		fe->need_mime = 1;
	if (t == IMAP_FETCH_RFC822 || t == IMAP_FETCH_RFC822_TEXT)
		fe->sets_seen = 1;
	if (t == IMAP_FETCH_RFC822_HEADER || t == IMAP_FETCH_RFC822_TEXT)
		fe->need_mime = 1;
	return 0;
}

/* Is the section text valid (RFC 3501 §9 section-spec)? mime_section's
 * syntax answer does not depend on the message: ask it about an empty
 * one. */
static int imap_fetch_sect_ok(const char *sect, size_t len)
{
	struct mime_part p0;
	struct mime_tree t0;
	struct mime_sect ms;
	size_t i;

	for (i = 0; i < len; i++)
		if (sect[i] == '\r' || sect[i] == '\n' || sect[i] == '\0' ||
		    sect[i] == '{' || sect[i] == '\\')
			return 0;   /* echoed in the response: nothing that
				     * reads as a literal or an escape */
	memset(&p0, 0, sizeof(p0));
	p0.parent = p0.child = p0.next = -1;
	t0.msg = "";
	t0.len = 0;
	t0.parts = &p0;
	t0.nparts = 1;
	return mime_section(&t0, sect, len, &ms) == MIME_SEC_OK;
}

/* BODY[section]<origin.count> or BODY.PEEK[...] */
static int imap_fetch_section(struct imap_fetch *fe, const char *s, int peek)
{
	const char *open = strchr(s, '['), *close = strrchr(s, ']');
	struct imap_fetch_item *it;

	if (open == NULL || close == NULL || close < open ||
	    !imap_fetch_sect_ok(open + 1, (size_t)(close - open - 1)) ||
	    imap_fetch_add(fe, IMAP_FETCH_SECTION) < 0)
		return -1;
	it = &fe->it[fe->n - 1];
	it->peek = peek;
	it->sect = open + 1;
	it->sect_len = (size_t)(close - open - 1);
	if (it->sect_len > 0)
		fe->need_mime = 1;
	/* only HEADER, HEADER.FIELDS (.NOT) of the message itself can be
	 * served from the header block */
	if (strncasecmp(it->sect, "HEADER", 6) != 0)
		fe->need_body = 1;
	if (!peek)
		fe->sets_seen = 1;
	close++;
	if (*close == '<') {
		const char *dot = strchr(close, '.'), *gt = strchr(close, '>');

		if (dot == NULL || gt == NULL || dot > gt || gt[1] != '\0' ||
		    imap_parser_number(close + 1, (size_t)(dot - close - 1),
				       &it->origin) < 0 ||
		    imap_parser_number(dot + 1, (size_t)(gt - dot - 1),
				       &it->count) < 0 || it->count == 0)
			return -1;
		it->partial = 1;
	} else if (*close != '\0') {
		return -1;
	}
	return 0;
}

static int imap_fetch_item(struct imap_fetch *fe, const char *s)
{
	static const struct { const char *name; enum imap_fetch_type t; }
	simple[] = {
		{ "UID", IMAP_FETCH_UID }, { "FLAGS", IMAP_FETCH_FLAGS },
		{ "INTERNALDATE", IMAP_FETCH_INTERNALDATE },
		{ "RFC822.SIZE", IMAP_FETCH_SIZE },
		{ "MODSEQ", IMAP_FETCH_MODSEQ },      /* RFC 7162 §3.1.4 */
		{ "ENVELOPE", IMAP_FETCH_ENVELOPE },
		{ "BODY", IMAP_FETCH_BODY },
		{ "BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE },
		{ "RFC822", IMAP_FETCH_RFC822 },
		{ "RFC822.HEADER", IMAP_FETCH_RFC822_HEADER },
		{ "RFC822.TEXT", IMAP_FETCH_RFC822_TEXT },
	};
	size_t i;

	if (strncasecmp(s, "BODY[", 5) == 0)
		return imap_fetch_section(fe, s, 0);
	if (strncasecmp(s, "BODY.PEEK[", 10) == 0)
		return imap_fetch_section(fe, s, 1);
	for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		if (strcasecmp(s, simple[i].name) == 0)
			return imap_fetch_add(fe, simple[i].t);
	return -1;
}

/* RFC 3501 §6.4.5 macros ALL, FAST, FULL, or one item, or a list. */
static int imap_fetch_parse_into(struct imap_fetch *fe, struct imap_arg *a,
				 int uid)
{
	struct imap_arg *e;

	if (uid && imap_fetch_add(fe, IMAP_FETCH_UID) < 0)
		return -1;
	if (a == NULL || a->next != NULL)
		return -1;
	if (a->type == IMAP_ARG_ATOM) {
		if (strcasecmp(a->s, "ALL") == 0 || strcasecmp(a->s, "FAST") == 0 ||
		    strcasecmp(a->s, "FULL") == 0) {
			/* at most 6 items after UID: well inside the table */
			imap_fetch_add(fe, IMAP_FETCH_FLAGS);
			imap_fetch_add(fe, IMAP_FETCH_INTERNALDATE);
			imap_fetch_add(fe, IMAP_FETCH_SIZE);
			if (strcasecmp(a->s, "FAST") != 0)
				imap_fetch_add(fe, IMAP_FETCH_ENVELOPE);
			if (strcasecmp(a->s, "FULL") == 0)
				imap_fetch_add(fe, IMAP_FETCH_BODY);
			return 0;
		}
		return imap_fetch_item(fe, a->s);
	}
	if (a->type != IMAP_ARG_LIST || a->child == NULL)
		return -1;
	for (e = a->child; e != NULL; e = e->next)
		if (e->type != IMAP_ARG_ATOM || imap_fetch_item(fe, e->s) < 0)
			return -1;
	return 0;
}

struct imap_fetch *imap_fetch_parse(struct imap_arg *items, int uid,
				    int *oom_r)
{
	struct imap_fetch *fe = calloc(1, sizeof(*fe));

	*oom_r = fe == NULL;
	if (fe != NULL && imap_fetch_parse_into(fe, items, uid) < 0) {
		free(fe);
		fe = NULL;
	}
	return fe;
}

void imap_fetch_free(struct imap_fetch *fe)
{
	free(fe);
}

int imap_fetch_add_modseq(struct imap_fetch *fe)
{
	return imap_fetch_add(fe, IMAP_FETCH_MODSEQ);
}

static int imap_fetch_has(const struct imap_fetch *fe, enum imap_fetch_type t)
{
	size_t i;

	for (i = 0; i < fe->n; i++)
		if (fe->it[i].type == t)
			return 1;
	return 0;
}

int imap_fetch_has_flags(const struct imap_fetch *fe)
{
	return imap_fetch_has(fe, IMAP_FETCH_FLAGS);
}

int imap_fetch_has_modseq(const struct imap_fetch *fe)
{
	return imap_fetch_has(fe, IMAP_FETCH_MODSEQ);
}

int imap_fetch_needs(const struct imap_fetch *fe)
{
	return !fe->need_msg ? 0 : fe->need_body ? 2 : 1;
}

int imap_fetch_sets_seen(const struct imap_fetch *fe)
{
	return fe->sets_seen;
}

/* ---- rendering ---- */

/* RFC 3501 §4.3: a literal is CHAR8, which has no NUL. Stored bytes are
 * served as they are otherwise, so a NUL goes out as 0x80 (as Dovecot
 * does): same length, offsets and partial fetches stay right. */
static int imap_fetch_put_bytes(struct buf *out, const char *p, size_t len)
{
	size_t start = out->len, i;

	if (buf_printf(out, "{%zu}\r\n", len) < 0)
		return -1;
	if (buf_append(out, p, len) < 0) {
		imap_fetch_truncate(out, start);
		return -1;
	}
	for (i = out->len - len; i < out->len; i++)
		if (out->p[i] == '\0')
			out->p[i] = (char)0x80;
	return 0;
}

/* The bytes of one BODY[section] (before the partial cut). */
static int imap_fetch_sect_bytes(const struct imap_fetch_item *it,
				 const struct mime_tree *t,
				 const struct imap_fetch_msg *m,
				 struct buf *tmp, const char **p_r,
				 size_t *len_r)
{
	struct mime_sect ms;

	if (it->sect_len == 0) {
		*p_r = m->data != NULL ? m->data : "";
		*len_r = m->len;
		return 0;
	}
	if (mime_section(t, it->sect, it->sect_len, &ms) != MIME_SEC_OK)
		return 1;   /* checked at parse time: cannot happen */
	if (ms.fields) {
		buf_reset(tmp);
		if (mime_header_fields(t->msg + ms.off, ms.len, ms.list,
				       ms.list_len, ms.fields == 2, tmp) < 0)
			return -1;
		*p_r = tmp->p != NULL ? tmp->p : "";
		*len_r = tmp->len;
		return 0;
	}
	*p_r = t->msg + ms.off;
	*len_r = ms.len;
	return 0;
}

static int imap_fetch_section_out(const struct imap_fetch_item *it,
				  const struct mime_tree *t,
				  const struct imap_fetch_msg *m,
				  struct buf *tmp, struct buf *out)
{
	const char *p;
	size_t n;
	int r;

	if (buf_puts(out, "BODY[") < 0 ||
	    buf_append(out, it->sect, it->sect_len) < 0 ||
	    buf_putc(out, ']') < 0)
		return -1;
	r = imap_fetch_sect_bytes(it, t, m, tmp, &p, &n);
	if (r < 0)
		return -1;
	if (r > 0)
		return buf_puts(out, " NIL");
	if (it->partial) {
		/* RFC 3501 §6.4.5: <origin> only in the response */
		if (buf_printf(out, "<%u> ", it->origin) < 0)
			return -1;
		if (it->origin >= n)
			return buf_puts(out, "\"\"");
		p += it->origin;
		n -= it->origin;
		if (n > it->count)
			n = it->count;
	} else if (buf_putc(out, ' ') < 0) {
		return -1;
	}
	return imap_fetch_put_bytes(out, p, n);
}

/* RFC 3501 §9 date-time has a 4-digit year: a file time outside years
 * 0..9999 (anyone can set an mtime) is shown as the epoch. */
static int imap_fetch_date(struct buf *out, time_t t)
{
	static const char *mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 ||
	    tm.tm_year > 9999 - 1900) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	return buf_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"",
			  tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900,
			  tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int imap_fetch_item_out(const struct imap_fetch_item *it,
			       const struct imap_fetch_msg *m,
			       const struct mime_tree *t, struct buf *tmp,
			       struct buf *out)
{
	const char *p;
	size_t n;

	switch (it->type) {
	case IMAP_FETCH_UID:
		return buf_printf(out, "UID %u", m->uid);
	case IMAP_FETCH_FLAGS:
		if (buf_puts(out, "FLAGS ") < 0)
			return -1;
		return imap_flags_put(out, m->kwnames, m->flags, m->keywords);
	case IMAP_FETCH_MODSEQ:
		return buf_printf(out, "MODSEQ (%llu)",
				  (unsigned long long)m->modseq);
	case IMAP_FETCH_INTERNALDATE:
		if (buf_puts(out, "INTERNALDATE ") < 0)
			return -1;
		return imap_fetch_date(out, m->internaldate);
	case IMAP_FETCH_SIZE:
		return buf_printf(out, "RFC822.SIZE %llu",
				  (unsigned long long)m->vsize);
	case IMAP_FETCH_ENVELOPE:
		if (buf_puts(out, "ENVELOPE ") < 0)
			return -1;
		return mime_envelope(t, 0, out);
	case IMAP_FETCH_BODY:
		if (buf_puts(out, "BODY ") < 0)
			return -1;
		return mime_bodystructure(t, 0, out);
	case IMAP_FETCH_BODYSTRUCTURE:
		if (buf_puts(out, "BODYSTRUCTURE ") < 0)
			return -1;
		return mime_bodystructure(t, 1, out);
	case IMAP_FETCH_SECTION:
		return imap_fetch_section_out(it, t, m, tmp, out);
	case IMAP_FETCH_RFC822:
		if (buf_puts(out, "RFC822 ") < 0)
			return -1;
		return imap_fetch_put_bytes(out, m->data != NULL ? m->data : "",
					    m->len);
	case IMAP_FETCH_RFC822_HEADER:
	case IMAP_FETCH_RFC822_TEXT:
		if (it->type == IMAP_FETCH_RFC822_HEADER) {
			p = t->msg + t->parts[0].hdr_off;
			n = t->parts[0].hdr_len;
		} else {
			p = t->msg + t->parts[0].body_off;
			n = t->parts[0].body_len;
		}
		if (buf_puts(out, it->type == IMAP_FETCH_RFC822_HEADER ?
			     "RFC822.HEADER " : "RFC822.TEXT ") < 0)
			return -1;
		return imap_fetch_put_bytes(out, p, n);
	}
	return -1;
}

int imap_fetch_render(const struct imap_fetch *fe,
		      const struct imap_fetch_msg *m, struct buf *out)
{
	struct mime_limits lim = { 0, 0 };
	struct mime_tree *t = NULL;
	size_t start = out->len, i;
	struct buf tmp;
	struct err err;
	int rc;

	if (fe->need_mime &&
	    mime_parse(m->data != NULL ? m->data : "", m->len, &lim, &t,
		       &err) < 0)
		return -1;
	buf_init(&tmp, 0);
	rc = buf_printf(out, "* %u FETCH (", m->seq);
	for (i = 0; rc == 0 && i < fe->n; i++) {
		if (i > 0)
			rc = buf_putc(out, ' ');
		if (rc == 0)
			rc = imap_fetch_item_out(&fe->it[i], m, t, &tmp, out);
	}
	if (rc == 0 && m->add_flags) {
		for (i = 0; i < fe->n && fe->it[i].type != IMAP_FETCH_FLAGS; i++)
			;
		if (i == fe->n) {
			rc = buf_puts(out, fe->n > 0 ? " FLAGS " : "FLAGS ");
			if (rc == 0)
				rc = imap_flags_put(out, m->kwnames, m->flags,
						    m->keywords);
		}
	}
	if (rc == 0)
		rc = buf_puts(out, ")\r\n");
	if (rc < 0)
		imap_fetch_truncate(out, start);
	buf_free(&tmp);
	mime_tree_free(t);
	return rc < 0 ? -1 : 0;
}

/* ---- from the store ---- */

/* Message vidx of the view (its store index fidx): read what the items
 * need, set \Seen when they do, render. */
static enum imap_fetch_rc imap_fetch_one(struct imap_cmd *c,
					 const struct imap_fetch *fe,
					 size_t vidx, long fidx, struct buf *msg)
{
	struct imap_user *u = c->u;
	struct mstore_folder *f = u->folder;
	struct imap_fetch_msg m;
	size_t idx = (size_t)fidx;
	unsigned old_flags = f->msgs[idx].flags;
	int need = imap_fetch_needs(fe), set_seen = 0;
	struct err err;

	buf_reset(msg);
	if (need == 2 && f->msgs[idx].vsize > msg->max)
		return IMAP_FETCH_LIMIT;
	/* nothing read: expunged by another session meanwhile; bytes read:
	 * msg is full (the file is bigger than the index said) */
	if ((need == 1 && imap_fetch_header(f, idx, msg) < 0) ||
	    (need == 2 && mstore_msg_read(f, idx, 1, msg, &err) < 0))
		return msg->len > 0 ? IMAP_FETCH_LIMIT : IMAP_FETCH_GONE;
	if (fe->sets_seen && !u->readonly && !(old_flags & MSTORE_F_SEEN)) {
		/* RFC 3501 §6.4.5: BODY[] and RFC822(.TEXT) set \Seen */
		if (mstore_set_flags(f, idx, MSTORE_FLAGS_ADD, MSTORE_F_SEEN,
				     0, &err) == 0)
			set_seen = 1;
	}
	memset(&m, 0, sizeof(m));
	m.seq = (uint32_t)(vidx + 1);
	m.uid = f->msgs[idx].uid;
	/* \Recent is the session's: the view's */
	m.flags = (f->msgs[idx].flags & ~MSTORE_F_RECENT) |
		(u->view.msgs[vidx].flags & MSTORE_F_RECENT);
	m.keywords = f->msgs[idx].keywords;
	m.kwnames = (const char *const *)f->keywords;
	m.internaldate = f->msgs[idx].internaldate;
	m.vsize = f->msgs[idx].vsize;
	m.modseq = f->msgs[idx].modseq;
	m.data = msg->p;
	m.len = msg->len;
	m.add_flags = set_seen;
	if (imap_fetch_render(fe, &m, &c->out) == 0) {
		/* the client now knows these flags */
		if (set_seen || imap_fetch_has_flags(fe))
			imap_view_told(&u->view, vidx, m.flags, m.keywords,
				       u->view.msgs[vidx].modseq);
		return IMAP_FETCH_OK;
	}
	/* the client never hears of this message's \Seen: take it back */
	if (set_seen && mstore_set_flags(f, idx, MSTORE_FLAGS_REMOVE,
					 MSTORE_F_SEEN, 0, &err) < 0)
		log_warn("imap: user=<%s>: FETCH: \\Seen kept: %s", u->name,
			 err.msg);
	return IMAP_FETCH_LIMIT;
}

int imap_fetch_run(struct imap_cmd *c, struct imap_fetch *fe,
		   const size_t *vidx, size_t n, uint64_t changedsince,
		   size_t *gone_r)
{
	size_t i, saved_max = c->out.max;
	enum imap_fetch_rc rc = IMAP_FETCH_OK;
	struct buf msg;
	long fidx;

	*gone_r = 0;
	/* the whole FETCH is built in memory before it is sent: bound it */
	if (saved_max == 0 || saved_max - c->out.len > IMAP_FETCH_OUT_MAX)
		c->out.max = c->out.len + IMAP_FETCH_OUT_MAX;
	buf_init(&msg, IMAP_FETCH_OUT_MAX);
	for (i = 0; i < n && rc >= 0; i++) {
		fidx = imap_selected_msg(c->u, vidx[i]);
		if (fidx < 0) {
			(*gone_r)++;
			continue;
		}
		/* RFC 7162 §3.1.4.1 CHANGEDSINCE: only what changed since */
		if (changedsince > 0 &&
		    c->u->folder->msgs[fidx].modseq <= changedsince)
			continue;
		rc = imap_fetch_one(c, fe, vidx[i], fidx, &msg);
		if (rc == IMAP_FETCH_GONE) {
			(*gone_r)++;
			rc = IMAP_FETCH_OK;
		}
	}
	buf_free(&msg);
	c->out.max = saved_max;
	/* RFC 5530 LIMIT: the responses written so far are whole */
	return rc == IMAP_FETCH_LIMIT ? -1 : 0;
}
