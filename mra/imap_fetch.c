/* imap_fetch: FETCH item parsing and rendering. A message is read (CRLF
 * line ends, so sizes and offsets match RFC822.SIZE) only when an item
 * needs its bytes, and MIME-parsed only when an item needs structure. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "imap_fetch.h"
#include "mime.h"
#include "mstore.h"

#define IMAP_FETCH_MAX_ITEMS 64

enum imap_fetch_type {
	IMAP_FETCH_UID, IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE,
	IMAP_FETCH_SIZE, IMAP_FETCH_ENVELOPE, IMAP_FETCH_BODY,
	IMAP_FETCH_BODYSTRUCTURE, IMAP_FETCH_SECTION, IMAP_FETCH_RFC822,
	IMAP_FETCH_RFC822_HEADER, IMAP_FETCH_RFC822_TEXT,
};

struct imap_fetch_item {
	enum imap_fetch_type type;
	int peek;
	const char *sect;        /* between the brackets */
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

/* BODY[section]<origin.count> or BODY.PEEK[...] */
static int imap_fetch_section(struct imap_fetch *fe, const char *s, int peek)
{
	const char *open = strchr(s, '['), *close = strrchr(s, ']');
	struct imap_fetch_item *it;

	if (open == NULL || close == NULL || close < open ||
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
static int imap_fetch_parse(struct imap_fetch *fe, struct imap_arg *a,
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

static void imap_fetch_put_bytes(struct buf *out, const char *p, size_t len)
{
	buf_printf(out, "{%zu}\r\n", len);
	buf_append(out, p, len);
}

/* The bytes of one BODY[section] (before the partial cut). */
static int imap_fetch_sect_bytes(const struct imap_fetch_item *it,
				 const struct mime_tree *t, const char *msg,
				 size_t len, struct buf *tmp,
				 const char **p_r, size_t *len_r)
{
	struct mime_sect ms;

	if (it->sect_len == 0) {
		*p_r = msg;
		*len_r = len;
		return 0;
	}
	if (mime_section(t, it->sect, it->sect_len, &ms) != MIME_SEC_OK)
		return -1;
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

static void imap_fetch_section_out(struct imap_cmd *c,
				   const struct imap_fetch_item *it,
				   const struct mime_tree *t, const char *msg,
				   size_t len, struct buf *tmp)
{
	const char *p;
	size_t n;

	buf_puts(&c->out, "BODY[");
	buf_append(&c->out, it->sect, it->sect_len);
	buf_putc(&c->out, ']');
	if (imap_fetch_sect_bytes(it, t, msg, len, tmp, &p, &n) < 0) {
		buf_puts(&c->out, " NIL");
		return;
	}
	if (it->partial) {
		/* RFC 3501 §6.4.5: <origin> only in the response */
		buf_printf(&c->out, "<%u> ", it->origin);
		if (it->origin >= n) {
			buf_puts(&c->out, "\"\"");
			return;
		}
		p += it->origin;
		n -= it->origin;
		if (n > it->count)
			n = it->count;
	} else {
		buf_putc(&c->out, ' ');
	}
	imap_fetch_put_bytes(&c->out, p, n);
}

static void imap_fetch_date(struct buf *out, time_t t)
{
	static const char *mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	gmtime_r(&t, &tm);
	buf_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
		   mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		   tm.tm_sec);
}

static void imap_fetch_one(struct imap_cmd *c, struct imap_fetch *fe,
			   size_t idx, struct buf *msg, struct buf *tmp)
{
	struct mstore_folder *f = c->s->folder;
	struct mime_tree *t = NULL;
	struct mime_limits lim = { 0, 0 };
	const char *sp = "";
	size_t i;
	struct err err;
	int set_seen = 0, flags_sent = 0;

	buf_reset(msg);
	if (fe->need_msg && !fe->need_body) {
		if (imap_fetch_header(f, idx, msg) < 0)
			return;
	} else if (fe->need_msg && mstore_msg_read(f, idx, 1, msg, &err) < 0) {
		/* expunged by another session meanwhile: RFC 3501 allows
		 * NO; send what is known and go on */
		return;
	}
	if (fe->need_mime &&
	    mime_parse(msg->p != NULL ? msg->p : "", msg->len, &lim, &t,
		       &err) < 0)
		return;
	if (fe->sets_seen && !c->s->readonly &&
	    !(f->msgs[idx].flags & MSTORE_F_SEEN)) {
		/* RFC 3501 §6.4.5: BODY[] and RFC822(.TEXT) set \Seen */
		if (mstore_set_flags(f, idx, f->msgs[idx].flags | MSTORE_F_SEEN,
				     f->msgs[idx].keywords, &err) == 0)
			set_seen = 1;
	}
	buf_printf(&c->out, "* %zu FETCH (", idx + 1);
	for (i = 0; i < fe->n; i++) {
		const struct imap_fetch_item *it = &fe->it[i];
		const char *p;
		size_t n;

		buf_puts(&c->out, sp);
		sp = " ";
		switch (it->type) {
		case IMAP_FETCH_UID:
			buf_printf(&c->out, "UID %u", f->msgs[idx].uid);
			break;
		case IMAP_FETCH_FLAGS:
			buf_puts(&c->out, "FLAGS ");
			imap_cmd_put_flags(c, f->msgs[idx].flags,
					   f->msgs[idx].keywords);
			flags_sent = 1;
			break;
		case IMAP_FETCH_INTERNALDATE:
			buf_puts(&c->out, "INTERNALDATE ");
			imap_fetch_date(&c->out, f->msgs[idx].internaldate);
			break;
		case IMAP_FETCH_SIZE:
			buf_printf(&c->out, "RFC822.SIZE %llu",
				   (unsigned long long)f->msgs[idx].vsize);
			break;
		case IMAP_FETCH_ENVELOPE:
			buf_puts(&c->out, "ENVELOPE ");
			mime_envelope(t, 0, &c->out);
			break;
		case IMAP_FETCH_BODY:
			buf_puts(&c->out, "BODY ");
			mime_bodystructure(t, 0, &c->out);
			break;
		case IMAP_FETCH_BODYSTRUCTURE:
			buf_puts(&c->out, "BODYSTRUCTURE ");
			mime_bodystructure(t, 1, &c->out);
			break;
		case IMAP_FETCH_SECTION:
			imap_fetch_section_out(c, it, t, msg->p, msg->len, tmp);
			break;
		case IMAP_FETCH_RFC822:
			buf_puts(&c->out, "RFC822 ");
			imap_fetch_put_bytes(&c->out, msg->p, msg->len);
			break;
		case IMAP_FETCH_RFC822_HEADER:
		case IMAP_FETCH_RFC822_TEXT:
			p = msg->p;
			n = msg->len;
			if (t->nparts > 0 && it->type == IMAP_FETCH_RFC822_HEADER) {
				p = t->msg + t->parts[0].hdr_off;
				n = t->parts[0].hdr_len;
			} else if (t->nparts > 0) {
				p = t->msg + t->parts[0].body_off;
				n = t->parts[0].body_len;
			}
			buf_puts(&c->out, it->type == IMAP_FETCH_RFC822_HEADER ?
				 "RFC822.HEADER " : "RFC822.TEXT ");
			imap_fetch_put_bytes(&c->out, p, n);
			break;
		}
	}
	if (set_seen && !flags_sent) {
		buf_puts(&c->out, " FLAGS ");
		imap_cmd_put_flags(c, f->msgs[idx].flags, f->msgs[idx].keywords);
	}
	buf_puts(&c->out, ")\r\n");
	mime_tree_free(t);
}

int imap_fetch_run(struct imap_cmd *c, const size_t *idx, size_t n,
		   struct imap_arg *items)
{
	struct imap_fetch *fe = calloc(1, sizeof(*fe));
	struct buf msg, tmp;
	size_t i;

	if (fe == NULL) {
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		return -1;
	}
	if (imap_fetch_parse(fe, items, c->uid) < 0) {
		free(fe);
		imap_cmd_bad(c, "Invalid FETCH items.");
		return -1;
	}
	buf_init(&msg, 0);
	buf_init(&tmp, 0);
	for (i = 0; i < n; i++)
		imap_fetch_one(c, fe, idx[i], &msg, &tmp);
	buf_free(&msg);
	buf_free(&tmp);
	free(fe);
	return 0;
}
