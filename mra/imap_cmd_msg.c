/* imap_cmd_msg: commands of the selected state (RFC 3501 §6.4) and their
 * extensions: NOOP/CHECK, CLOSE, UNSELECT (RFC 3691), EXPUNGE and UID
 * EXPUNGE (RFC 4315), SEARCH, FETCH, STORE, COPY with COPYUID, MOVE (RFC
 * 6851), and IDLE's syncs (RFC 2177). All run on the worker pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "imap_cmd.h"
#include "imap_fetch.h"
#include "imap_search.h"
#include "log.h"
#include "mstore.h"

#define IMAP_CMD_MSG_NAME 1024

/* Take back a response line begun at len: responses go out whole or not
 * at all (STYLE §4). */
static void imap_cmd_msg_truncate(struct buf *b, size_t len)
{
	b->len = len;
	if (b->p != NULL)
		b->p[len] = '\0';
}

/* An EXPUNGE/EXISTS/RECENT that cannot be written (out of memory) would
 * leave the client with wrong sequence numbers: end the session instead
 * (RFC 3501 §7.1.5 lets the server BYE at any time). */
static void imap_cmd_msg_lost(struct imap_cmd *c, size_t len)
{
	imap_cmd_msg_truncate(&c->out, len);
	log_warn("imap: user=<%s>: out of memory for untagged responses",
		 c->s->user);
	/* the session closes after c->out, BYE or not (a failed append
	 * leaves c->out as it was) */
	(void)buf_puts(&c->out, "* BYE Server out of memory.\r\n");
	c->logout = 1;
}

void imap_cmd_msg_noop(struct imap_cmd *c)
{
	imap_cmd_sync(c, 1);
	imap_cmd_ok(c, "%s completed.", c->name);
}

int imap_cmd_msg_snapshot(struct imap_session *s)
{
	struct mstore_folder *f = s->folder;
	size_t i;

	if (f == NULL)
		return 0;
	s->snap = malloc((f->count ? f->count : 1) * sizeof(*s->snap));
	s->snap_name = strdup(f->name);
	s->snap_path = strdup(f->path);
	if (s->snap == NULL || s->snap_name == NULL || s->snap_path == NULL) {
		imap_cmd_msg_snapshot_free(s);
		return -1;
	}
	for (i = 0; i < f->count; i++) {
		s->snap[i].uid = f->msgs[i].uid;
		s->snap[i].kw = f->msgs[i].keywords;
		s->snap[i].flags = (unsigned char)f->msgs[i].flags;
	}
	s->nsnap = f->count;
	s->snap_readonly = f->readonly;
	mstore_folder_free(f);
	s->folder = NULL;
	return 0;
}

void imap_cmd_msg_snapshot_free(struct imap_session *s)
{
	free(s->snap);
	free(s->snap_name);
	free(s->snap_path);
	s->snap = NULL;
	s->snap_name = NULL;
	s->snap_path = NULL;
	s->nsnap = 0;
}

/* "* seq FETCH ([UID u ]FLAGS (...))" for msgs[idx]; whole or not at
 * all. */
static int imap_cmd_msg_put_fetch_flags(struct imap_cmd *c, size_t idx,
					int with_uid)
{
	const struct mstore_folder *f = c->s->folder;
	const struct mstore_msg *m = &f->msgs[idx];
	size_t start = c->out.len;
	int rc;

	rc = buf_printf(&c->out, "* %zu FETCH (", idx + 1);
	if (rc == 0 && with_uid)
		rc = buf_printf(&c->out, "UID %u ", m->uid);
	if (rc == 0)
		rc = buf_puts(&c->out, "FLAGS ");
	if (rc == 0)
		rc = imap_fetch_put_flags(&c->out,
					  (const char *const *)f->keywords,
					  m->flags, m->keywords);
	if (rc == 0)
		rc = buf_puts(&c->out, ")\r\n");
	if (rc < 0)
		imap_cmd_msg_truncate(&c->out, start);
	return rc;
}

/* Reopen the folder behind a snapshot and report the difference: EXPUNGE
 * (highest first, RFC 3501 §7.4.1), EXISTS/RECENT, FETCH FLAGS. */
static int imap_cmd_msg_restore(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct mstore_folder *f;
	struct err err;
	size_t i, j, nexp = 0, recent = 0, nnew = 0, start;
	size_t *exp;
	int rc = 0;

	f = mstore_folder_open(s->ms, s->snap_name, s->snap_readonly, &err);
	if (f == NULL) {
		log_warn("imap: user=<%s>: reopen %s: %s", s->user,
			 s->snap_name, err.msg);
		return -1;
	}
	exp = malloc((s->nsnap ? s->nsnap : 1) * sizeof(*exp));
	if (exp == NULL) {
		mstore_folder_free(f);
		return -1;
	}
	for (i = 0, j = 0; i < s->nsnap; i++) {
		while (j < f->count && f->msgs[j].uid < s->snap[i].uid)
			j++;
		if (j < f->count && f->msgs[j].uid == s->snap[i].uid) {
			/* \Recent stays with this session */
			f->msgs[j].flags |= s->snap[i].flags & MSTORE_F_RECENT;
			j++;
		} else {
			exp[nexp++] = i;
		}
	}
	start = c->out.len;
	for (i = nexp; i > 0 && rc == 0; i--)
		rc = buf_printf(&c->out, "* %zu EXPUNGE\r\n", exp[i - 1] + 1);
	free(exp);
	s->folder = f;
	for (i = 0, j = 0; j < f->count && rc == 0; j++) {
		while (i < s->nsnap && s->snap[i].uid < f->msgs[j].uid)
			i++;
		if (i < s->nsnap && s->snap[i].uid == f->msgs[j].uid) {
			if ((s->snap[i].flags & ~MSTORE_F_RECENT) !=
			    (f->msgs[j].flags & 0xff & ~MSTORE_F_RECENT) ||
			    s->snap[i].kw != f->msgs[j].keywords)
				rc = imap_cmd_msg_put_fetch_flags(c, j, 1);
		} else {
			nnew++;
		}
		if (f->msgs[j].flags & MSTORE_F_RECENT)
			recent++;
	}
	if (rc == 0 && (nnew > 0 || nexp > 0))
		rc = buf_printf(&c->out, "* %zu EXISTS\r\n", f->count);
	if (rc == 0 && nnew > 0)
		rc = buf_printf(&c->out, "* %zu RECENT\r\n", recent);
	if (rc < 0)
		imap_cmd_msg_lost(c, start);
	imap_cmd_msg_snapshot_free(s);
	return 0;
}

/* IDLE (RFC 2177): report what changed; the first call enters IDLE. While
 * idling the folder is kept as a snapshot only. */
void imap_cmd_msg_idle_sync(struct imap_cmd *c)
{
	struct imap_session *s = c->s;

	if (s->snap_name != NULL) {
		if (imap_cmd_msg_restore(c) < 0 && c->idle_restore) {
			c->new_state = IMAP_ST_AUTH;
			imap_cmd_msg_snapshot_free(s);
			/* the session closes after c->out, BYE or not */
			(void)buf_puts(&c->out, "* BYE Selected mailbox is gone.\r\n");
			c->logout = 1;
			return;
		}
	} else {
		imap_cmd_sync(c, 1);
	}
	if (!c->no_tagged)
		c->idle_enter = 1;
	if (!c->idle_restore && imap_cmd_msg_snapshot(s) < 0)
		log_warn("imap: user=<%s>: IDLE snapshot: out of memory",
			 s->user);
}

/* CLOSE expunges silently (RFC 3501 §6.4.2); UNSELECT does not. */
void imap_cmd_msg_close(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct err err;

	if (strcmp(c->name, "CLOSE") == 0 && !s->readonly &&
	    mstore_expunge(s->folder, NULL, 0, 0, NULL, &err) < 0)
		log_warn("imap: user=<%s>: CLOSE expunge: %s", s->user,
			 err.msg);
	mstore_folder_free(s->folder);
	s->folder = NULL;
	c->new_state = IMAP_ST_AUTH;
	imap_cmd_ok(c, "%s completed.", c->name);
}

static void imap_cmd_msg_put_expunged(struct imap_cmd *c,
				      struct mstore_changes *ch)
{
	size_t i, start = c->out.len;

	for (i = 0; i < ch->nexpunged; i++)
		if (buf_printf(&c->out, "* %u EXPUNGE\r\n",
			       ch->expunged_seq[i]) < 0) {
			imap_cmd_msg_lost(c, start);
			return;
		}
}

void imap_cmd_msg_expunge(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct mstore_changes ch;
	uint32_t *uids = NULL;
	size_t *idx = NULL, n = 0, i;
	struct err err;

	if (s->readonly) {
		imap_cmd_no(c, "[READ-ONLY] Mailbox is read-only.");
		return;
	}
	imap_cmd_sync(c, 1);
	if (c->uid) {
		if (c->nargs != 1 || !imap_arg_is_string(c->a) ||
		    imap_cmd_seqset(c, c->a->s, 1, &idx, &n) < 0) {
			imap_cmd_bad(c, "Invalid UID set.");
			return;
		}
		if (n == 0) {
			imap_cmd_ok(c, "Expunge completed.");
			return;
		}
		uids = malloc(n * sizeof(*uids));
		if (uids == NULL) {
			free(idx);
			imap_cmd_no(c, "[SERVERBUG] Out of memory.");
			return;
		}
		for (i = 0; i < n; i++)
			uids[i] = s->folder->msgs[idx[i]].uid;
		free(idx);
	}
	memset(&ch, 0, sizeof(ch));
	if (mstore_expunge(s->folder, uids, n, 0, &ch, &err) < 0) {
		free(uids);
		imap_cmd_no(c, "[UNAVAILABLE] %s", err.msg);
		return;
	}
	free(uids);
	imap_cmd_msg_put_expunged(c, &ch);
	mstore_changes_free(&ch);
	imap_cmd_ok(c, "Expunge completed.");
}

void imap_cmd_msg_search(struct imap_cmd *c)
{
	struct mstore_folder *f;
	struct imap_search *se;
	const char *why;
	int badcs, rc;
	size_t i, start;

	if (c->uid)
		imap_cmd_sync(c, 1);
	f = c->s->folder;
	se = imap_search_new(c, c->a, &why, &badcs);
	if (se == NULL) {
		if (badcs)
			imap_cmd_no(c, "[BADCHARSET (UTF-8 US-ASCII)] %s.",
				    why);
		else
			imap_cmd_bad(c, "%s.", why);
		return;
	}
	start = c->out.len;
	rc = buf_puts(&c->out, "* SEARCH");
	for (i = 0; i < f->count && rc == 0; i++)
		if (imap_search_match(se, i))
			rc = buf_printf(&c->out, " %u", c->uid ? f->msgs[i].uid :
					(uint32_t)(i + 1));
	if (rc == 0)
		rc = buf_puts(&c->out, "\r\n");
	imap_search_free(se);
	if (rc < 0) {
		imap_cmd_msg_truncate(&c->out, start);
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		return;
	}
	imap_cmd_ok(c, "Search completed.");
}

void imap_cmd_msg_fetch(struct imap_cmd *c)
{
	size_t *idx = NULL, n = 0;

	if (c->uid)
		imap_cmd_sync(c, 1);
	if (c->nargs != 2 || !imap_arg_is_string(c->a) ||
	    imap_cmd_seqset(c, c->a->s, c->uid, &idx, &n) < 0) {
		imap_cmd_bad(c, "Invalid message set.");
		return;
	}
	if (imap_fetch_run(c, idx, n, c->a->next) == 0)
		imap_cmd_ok(c, "Fetch completed.");
	free(idx);
}

/* STORE set [+-]FLAGS[.SILENT] flags (RFC 3501 §6.4.6) */
void imap_cmd_msg_store(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct mstore_folder *f;
	struct imap_arg *item;
	const char *kw[MSTORE_MAX_KEYWORDS], *it;
	size_t *idx = NULL, n = 0, nkw, i, j;
	unsigned flags, nf;
	uint32_t kwbits = 0, nk;
	int mode = 0, silent, lost = 0;
	struct err err;

	if (c->uid)
		imap_cmd_sync(c, 1);
	f = s->folder;
	item = c->a != NULL ? c->a->next : NULL;
	if (c->nargs != 3 || item->type != IMAP_ARG_ATOM) {
		imap_cmd_bad(c, "STORE needs a set, an item and flags.");
		return;
	}
	it = item->s;
	if (*it == '+' || *it == '-')
		mode = *it++;
	if (strncasecmp(it, "FLAGS", 5) != 0 ||
	    (it[5] != '\0' && strcasecmp(it + 5, ".SILENT") != 0)) {
		imap_cmd_bad(c, "Unknown STORE item.");
		return;
	}
	silent = it[5] != '\0';
	if (imap_cmd_parse_flags(item->next, &flags, kw, &nkw,
				 MSTORE_MAX_KEYWORDS) < 0) {
		imap_cmd_bad(c, "Invalid flags.");
		return;
	}
	if (imap_cmd_seqset(c, c->a->s, c->uid, &idx, &n) < 0) {
		imap_cmd_bad(c, "Invalid message set.");
		return;
	}
	if (s->readonly) {
		free(idx);
		imap_cmd_no(c, "[READ-ONLY] Mailbox is read-only.");
		return;
	}
	for (j = 0; j < nkw; j++) {
		int k = mstore_keyword(f, kw[j], mode != '-', &err);

		if (k >= 0)
			kwbits |= 1u << k;
		else if (mode != '-') {
			free(idx);
			imap_cmd_no(c, "[LIMIT] %s", err.msg);
			return;
		}
	}
	for (i = 0; i < n; i++) {
		struct mstore_msg *m = &f->msgs[idx[i]];

		nf = flags;
		nk = kwbits;
		if (mode == '+') {
			nf = m->flags | flags;
			nk = m->keywords | kwbits;
		} else if (mode == '-') {
			nf = m->flags & ~flags;
			nk = m->keywords & ~kwbits;
		} else {
			nf |= m->flags & (MSTORE_F_RECENT | MSTORE_F_PASSED);
		}
		if ((nf != m->flags || nk != m->keywords) &&
		    mstore_set_flags(f, idx[i], nf, nk, &err) < 0)
			continue;
		if (silent)
			continue;
		if (imap_cmd_msg_put_fetch_flags(c, idx[i], c->uid) < 0)
			lost = 1;
	}
	free(idx);
	if (lost)   /* stored; only the report is missing */
		imap_cmd_no(c, "[SERVERBUG] Out of memory for FETCH responses.");
	else
		imap_cmd_ok(c, "Store completed.");
}

/* RFC 4315 uid-set: runs of consecutive UIDs as ranges. */
static int imap_cmd_msg_uidset(struct buf *out, const uint32_t *u, size_t n)
{
	size_t i = 0, j;
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
	return rc;
}

/* RFC 4315 §3 "[COPYUID v src dst]" + text, tagged or (MOVE, RFC 6851
 * §4.3) untagged. The code is optional: out of memory, the plain reply
 * goes instead. */
static void imap_cmd_msg_copyuid(struct imap_cmd *c, int tagged,
				 uint32_t uidv, const uint32_t *src,
				 const uint32_t *dst, size_t n,
				 const char *text)
{
	size_t start = c->out.len;

	if (buf_printf(&c->out, "%s OK [COPYUID %u ", tagged ? c->tag : "*",
		       uidv) == 0 &&
	    imap_cmd_msg_uidset(&c->out, src, n) == 0 &&
	    buf_putc(&c->out, ' ') == 0 &&
	    imap_cmd_msg_uidset(&c->out, dst, n) == 0 &&
	    buf_printf(&c->out, "] %s\r\n", text) == 0)
		return;
	imap_cmd_msg_truncate(&c->out, start);
	if (tagged)
		imap_cmd_ok(c, "%s", text);
}

void imap_cmd_msg_copy(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	int move = strstr(c->name, "MOVE") != NULL, rc;
	char dest[IMAP_CMD_MSG_NAME];
	size_t *idx = NULL, n = 0, i;
	uint32_t *src = NULL, *dst = NULL, uidv = 0;
	uint64_t bytes = 0;
	struct mstore_changes ch;
	struct err err;

	if (c->uid)
		imap_cmd_sync(c, 1);
	if (c->nargs != 2 || !imap_arg_is_string(c->a) ||
	    !imap_arg_is_string(c->a->next)) {
		imap_cmd_bad(c, "%s needs a set and a mailbox.", c->name);
		return;
	}
	if (imap_cmd_mailbox(c->a->next->s, dest, sizeof(dest), &err) < 0) {
		imap_cmd_no(c, "[CANNOT] %s", err.msg);
		return;
	}
	if (imap_cmd_seqset(c, c->a->s, c->uid, &idx, &n) < 0) {
		imap_cmd_bad(c, "Invalid message set.");
		return;
	}
	if (move && s->readonly) {
		free(idx);
		imap_cmd_no(c, "[READ-ONLY] Mailbox is read-only.");
		return;
	}
	if (n == 0) {
		free(idx);
		imap_cmd_ok(c, "No messages.");
		return;
	}
	src = malloc(n * sizeof(*src));
	dst = malloc(n * sizeof(*dst));
	if (src == NULL || dst == NULL) {
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		goto out;
	}
	for (i = 0; i < n; i++) {
		src[i] = s->folder->msgs[idx[i]].uid;
		bytes += s->folder->msgs[idx[i]].size;
	}
	/* RFC 9208 §4.3: a COPY charges the quota like an APPEND; one
	 * user's MOVE does not change the usage (mstore_copy checks under
	 * the quota lock, so concurrent sessions cannot overshoot) */
	mstore_set_quota(s->ms, s->quota_limit);
	rc = mstore_copy(s->folder, idx, n, dest, move ? MSTORE_COPY_MOVE : 0,
			 dst, &uidv, &err);
	if (rc == MSTORE_OVERQUOTA) {
		imap_cmd_no(c, "[OVERQUOTA] Quota exceeded.");
		goto out;
	}
	if (rc < 0) {
		imap_cmd_no(c, "%s%s", err.temp ? "[UNAVAILABLE] " :
			    "[TRYCREATE] ", err.msg);
		goto out;
	}
	if (!move) {
		s->quota_used += bytes;
		imap_cmd_msg_copyuid(c, 1, uidv, src, dst, n,
				     "Copy completed.");
		goto out;
	}
	imap_cmd_msg_copyuid(c, 0, uidv, src, dst, n, "Moved");
	memset(&ch, 0, sizeof(ch));
	if (mstore_expunge(s->folder, src, n, 1, &ch, &err) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] %s", err.msg);
		goto out;
	}
	imap_cmd_msg_put_expunged(c, &ch);
	mstore_changes_free(&ch);
	imap_cmd_ok(c, "Move completed.");
out:
	free(idx);
	free(src);
	free(dst);
}
