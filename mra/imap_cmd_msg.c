/* imap_cmd_msg: commands of the selected state (RFC 3501 §6.4) and their
 * extensions: NOOP/CHECK, CLOSE, UNSELECT (RFC 3691), EXPUNGE and UID
 * EXPUNGE (RFC 4315), SEARCH with ESEARCH's RETURN (RFC 4731), FETCH,
 * STORE, COPY with COPYUID, MOVE (RFC 6851), and CONDSTORE/QRESYNC's
 * CHANGEDSINCE, VANISHED, UNCHANGEDSINCE and MODSEQ (RFC 7162). They
 * address messages through the session's view (imap_view: the sequence
 * numbers and UIDs the client was told) and reach the store through
 * imap_selected_msg(). All run on the worker pool; the changes they and
 * others make are reported by imap_commands_run() around them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "imap_cmd.h"
#include "imap_fetch.h"
#include "imap_flags.h"
#include "imap_search.h"
#include "log.h"
#include "mstore.h"

#define IMAP_CMD_MSG_NAME 1024

/* What a client is told when some messages it named were expunged by
 * another session meanwhile (RFC 2180 §4.1.2, RFC 5530 EXPUNGEISSUED). */
#define IMAP_CMD_MSG_GONE "[EXPUNGEISSUED] Some of the requested messages " \
	"have been deleted meanwhile."

static int imap_cmd_msg_condstore(const struct imap_cmd *c)
{
	return (c->u->enabled & IMAP_VIEW_CONDSTORE) != 0;
}

/* RFC 7162 §3.1: a CONDSTORE-enabling command turns it on; when a
 * mailbox is selected, the first one also reports HIGHESTMODSEQ. */
static void imap_cmd_msg_enable_condstore(struct imap_cmd *c)
{
	struct imap_user *u = c->u;

	if (u->enabled & IMAP_VIEW_CONDSTORE)
		return;
	u->enabled |= IMAP_VIEW_CONDSTORE;
	u->view.opts = u->enabled;
	if (u->folder != NULL)
		buf_printf(&c->out, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			   (unsigned long long)u->folder->highestmodseq);
}

void imap_cmd_msg_noop(struct imap_cmd *c)
{
	/* the changes are reported around every command */
	imap_cmd_ok(c, "%s completed.", c->name);
}

void imap_cmd_msg_unselect(struct imap_cmd *c)
{
	imap_selected_unselect(c->u);
	c->new_state = IMAP_ST_AUTH;
	c->no_sync = 1;
	imap_cmd_ok(c, "Unselect completed.");
}

/* CLOSE expunges silently (RFC 3501 §6.4.2). */
void imap_cmd_msg_close(struct imap_cmd *c)
{
	struct imap_user *u = c->u;
	struct err err;

	if (!u->readonly && u->folder != NULL &&
	    mstore_expunge(u->folder, NULL, 0, 0, NULL, &err) < 0)
		log_warn("imap: user=<%s>: CLOSE expunge: %s", u->name,
			 err.msg);
	imap_selected_unselect(u);
	c->new_state = IMAP_ST_AUTH;
	c->no_sync = 1;
	imap_cmd_ok(c, "Close completed.");
}

/* The UIDs of view indexes (malloc'd; NULL when out of memory). */
static uint32_t *imap_cmd_msg_uids(const struct imap_user *u,
				   const size_t *idx, size_t n)
{
	uint32_t *uids = malloc((n ? n : 1) * sizeof(*uids));
	size_t i;

	for (i = 0; uids != NULL && i < n; i++)
		uids[i] = u->view.msgs[idx[i]].uid;
	return uids;
}

/* EXPUNGE, UID EXPUNGE (RFC 4315 §2.1): the EXPUNGE responses come from
 * the sync after the command, with those of other sessions. */
void imap_cmd_msg_expunge(struct imap_cmd *c)
{
	struct imap_user *u = c->u;
	uint32_t *uids = NULL;
	size_t *idx = NULL, n = 0;
	struct err err;

	if (u->readonly) {
		imap_cmd_no(c, "[READ-ONLY] Mailbox is read-only.");
		return;
	}
	if (c->uid) {
		if (c->nargs != 1 || !imap_arg_is_string(c->a) ||
		    imap_view_seqset(&u->view, c->a->s, IMAP_VIEW_SET_UID,
				     &idx, &n) < 0) {
			imap_cmd_bad(c, "Invalid UID set.");
			return;
		}
		if (n == 0) {
			imap_cmd_ok(c, "Expunge completed.");
			return;
		}
		uids = imap_cmd_msg_uids(u, idx, n);
		free(idx);
		if (uids == NULL) {
			imap_cmd_no(c, "[SERVERBUG] Out of memory.");
			return;
		}
	} else if (c->nargs != 0) {
		imap_cmd_bad(c, "EXPUNGE takes no arguments.");
		return;
	}
	if (mstore_expunge(u->folder, uids, n, 0, NULL, &err) < 0) {
		free(uids);
		imap_cmd_no(c, "[UNAVAILABLE] %s", err.msg);
		return;
	}
	free(uids);
	imap_cmd_ok(c, "Expunge completed.");
}

/* ---- SEARCH ---- */

/* RFC 4731 §3.1 RETURN options. */
#define IMAP_CMD_MSG_RET_MIN   0x01
#define IMAP_CMD_MSG_RET_MAX   0x02
#define IMAP_CMD_MSG_RET_ALL   0x04
#define IMAP_CMD_MSG_RET_COUNT 0x08

/* "RETURN (...)" before the keys: *ret (0: no ESEARCH). -1: bad. */
static int imap_cmd_msg_return(struct imap_arg **keys, unsigned *ret)
{
	struct imap_arg *a = *keys, *o;

	*ret = 0;
	if (a == NULL || a->type != IMAP_ARG_ATOM ||
	    strcasecmp(a->s, "RETURN") != 0)
		return 0;
	if (a->next == NULL || a->next->type != IMAP_ARG_LIST)
		return -1;
	for (o = a->next->child; o != NULL; o = o->next) {
		if (o->type != IMAP_ARG_ATOM)
			return -1;
		if (strcasecmp(o->s, "MIN") == 0)
			*ret |= IMAP_CMD_MSG_RET_MIN;
		else if (strcasecmp(o->s, "MAX") == 0)
			*ret |= IMAP_CMD_MSG_RET_MAX;
		else if (strcasecmp(o->s, "ALL") == 0)
			*ret |= IMAP_CMD_MSG_RET_ALL;
		else if (strcasecmp(o->s, "COUNT") == 0)
			*ret |= IMAP_CMD_MSG_RET_COUNT;
		else
			return -1;
	}
	/* "RETURN ()" means ALL (§3.1) */
	if (*ret == 0)
		*ret = IMAP_CMD_MSG_RET_ALL;
	*keys = a->next->next;
	return 1;
}

/* "* ESEARCH (TAG "t")[ UID][ MIN m][ MAX m][ ALL set][ COUNT n]
 * [ MODSEQ m]" (RFC 4731 §3.1, RFC 7162 §3.1.5). */
static int imap_cmd_msg_esearch(struct imap_cmd *c, unsigned ret,
				const uint32_t *hit, const uint64_t *mod,
				size_t n, int with_modseq)
{
	struct buf *out = &c->out;
	uint64_t top = 0;
	size_t i;
	int rc;

	rc = buf_puts(out, "* ESEARCH (TAG ");
	if (rc == 0)
		rc = imap_cmd_put_string(out, c->tag, strlen(c->tag));
	if (rc == 0)
		rc = buf_puts(out, c->uid ? ") UID" : ")");
	if (rc == 0 && n > 0 && (ret & IMAP_CMD_MSG_RET_MIN))
		rc = buf_printf(out, " MIN %u", hit[0]);
	if (rc == 0 && n > 0 && (ret & IMAP_CMD_MSG_RET_MAX))
		rc = buf_printf(out, " MAX %u", hit[n - 1]);
	if (rc == 0 && n > 0 && (ret & IMAP_CMD_MSG_RET_ALL)) {
		rc = buf_puts(out, " ALL ");
		if (rc == 0)
			rc = imap_view_put_uidset(out, hit, n);
	}
	if (rc == 0 && (ret & IMAP_CMD_MSG_RET_COUNT))
		rc = buf_printf(out, " COUNT %zu", n);
	if (rc == 0 && n > 0 && with_modseq) {
		/* RFC 7162 §3.1.5: of the one message MIN or MAX returns
		 * alone, else the highest of all matches */
		if (ret == IMAP_CMD_MSG_RET_MIN)
			top = mod[0];
		else if (ret == IMAP_CMD_MSG_RET_MAX)
			top = mod[n - 1];
		else
			for (i = 0; i < n; i++)
				if (mod[i] > top)
					top = mod[i];
		rc = buf_printf(out, " MODSEQ %llu", (unsigned long long)top);
	}
	if (rc == 0)
		rc = buf_puts(out, "\r\n");
	return rc;
}

void imap_cmd_msg_search(struct imap_cmd *c)
{
	struct imap_user *u = c->u;
	struct imap_search *se;
	struct imap_arg *keys = c->a;
	const char *why;
	uint32_t *hit = NULL;
	uint64_t *mod = NULL, top = 0;
	size_t i, n = 0, start = c->out.len;
	unsigned ret;
	int badcs, rc = 0, with_modseq;

	if (imap_cmd_msg_return(&keys, &ret) < 0) {
		imap_cmd_bad(c, "Invalid RETURN options.");
		return;
	}
	se = imap_search_new(c, keys, &why, &badcs);
	if (se == NULL) {
		if (badcs)
			imap_cmd_no(c, "[BADCHARSET (UTF-8 US-ASCII)] %s.",
				    why);
		else
			imap_cmd_bad(c, "%s.", why);
		return;
	}
	with_modseq = imap_search_uses_modseq(se);
	if (with_modseq)
		imap_cmd_msg_enable_condstore(c);
	hit = malloc((u->view.count ? u->view.count : 1) * sizeof(*hit));
	mod = malloc((u->view.count ? u->view.count : 1) * sizeof(*mod));
	if (hit == NULL || mod == NULL)
		rc = -1;
	for (i = 0; i < u->view.count && rc == 0; i++) {
		long fidx = imap_selected_msg(u, i);

		if (fidx < 0 || !imap_search_match(se, i, (size_t)fidx))
			continue;
		hit[n] = c->uid ? u->view.msgs[i].uid : (uint32_t)(i + 1);
		mod[n] = u->folder->msgs[fidx].modseq;
		if (mod[n] > top)
			top = mod[n];
		n++;
	}
	imap_search_free(se);
	if (rc == 0 && ret != 0) {
		rc = imap_cmd_msg_esearch(c, ret, hit, mod, n, with_modseq);
	} else if (rc == 0) {
		rc = buf_puts(&c->out, "* SEARCH");
		for (i = 0; i < n && rc == 0; i++)
			rc = buf_printf(&c->out, " %u", hit[i]);
		/* RFC 7162 §3.1.5 */
		if (rc == 0 && with_modseq && n > 0)
			rc = buf_printf(&c->out, " (MODSEQ %llu)",
					(unsigned long long)top);
		if (rc == 0)
			rc = buf_puts(&c->out, "\r\n");
	}
	free(hit);
	free(mod);
	if (rc < 0) {
		c->out.len = start;
		if (c->out.p != NULL)
			c->out.p[start] = '\0';
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		return;
	}
	imap_cmd_ok(c, "Search completed.");
}

/* ---- FETCH ---- */

/* RFC 7162 §3.1.4.1, §3.2.6: (CHANGEDSINCE n [VANISHED]). 0 or -1. */
static int imap_cmd_msg_fetch_mods(struct imap_cmd *c, struct imap_arg *m,
				   uint64_t *changedsince, int *vanished)
{
	struct imap_arg *e;

	*changedsince = 0;
	*vanished = 0;
	if (m == NULL)
		return 0;
	if (m->type != IMAP_ARG_LIST || m->next != NULL)
		return -1;
	for (e = m->child; e != NULL; e = e->next) {
		if (e->type != IMAP_ARG_ATOM)
			return -1;
		if (strcasecmp(e->s, "CHANGEDSINCE") == 0) {
			char *end;

			e = e->next;
			if (e == NULL || e->type != IMAP_ARG_ATOM ||
			    e->s[0] < '0' || e->s[0] > '9')
				return -1;
			*changedsince = strtoull(e->s, &end, 10);
			if (*end != '\0')
				return -1;
		} else if (strcasecmp(e->s, "VANISHED") == 0) {
			*vanished = 1;
		} else {
			return -1;
		}
	}
	/* VANISHED: UID FETCH with CHANGEDSINCE, QRESYNC enabled */
	if (*vanished && (!c->uid || *changedsince == 0 ||
			  !(c->u->enabled & IMAP_VIEW_QRESYNC)))
		return -1;
	return 0;
}

void imap_cmd_msg_fetch(struct imap_cmd *c)
{
	struct imap_user *u = c->u;
	struct imap_fetch *fe;
	struct imap_arg *items;
	size_t *idx = NULL, n = 0, gone = 0;
	uint64_t changedsince;
	int vanished, oom, rc;

	if (c->nargs < 2 || c->nargs > 3 || !imap_arg_is_string(c->a)) {
		imap_cmd_bad(c, "FETCH needs a set and items.");
		return;
	}
	items = c->a->next;
	if (imap_cmd_msg_fetch_mods(c, items->next, &changedsince,
				    &vanished) < 0) {
		imap_cmd_bad(c, "Invalid FETCH modifiers.");
		return;
	}
	/* the items end the command: take them on their own */
	items->next = NULL;
	fe = imap_fetch_parse(items, c->uid, &oom);
	if (fe == NULL) {
		if (oom)
			imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		else
			imap_cmd_bad(c, "Invalid FETCH items.");
		return;
	}
	if (imap_view_seqset(&u->view, c->a->s,
			     c->uid ? IMAP_VIEW_SET_UID : 0, &idx, &n) < 0) {
		imap_fetch_free(fe);
		imap_cmd_bad(c, "Invalid message set.");
		return;
	}
	if (changedsince > 0 || imap_fetch_has_modseq(fe)) {
		imap_cmd_msg_enable_condstore(c);
		if (imap_fetch_add_modseq(fe) < 0) {
			free(idx);
			imap_fetch_free(fe);
			imap_cmd_bad(c, "Too many FETCH items.");
			return;
		}
	}
	if (vanished && imap_view_put_vanished(&u->view, c->a->s,
					       &c->out) < 0) {
		free(idx);
		imap_fetch_free(fe);
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		return;
	}
	rc = imap_fetch_run(c, fe, idx, n, changedsince, &gone);
	free(idx);
	imap_fetch_free(fe);
	if (rc < 0)
		imap_cmd_no(c, "[LIMIT] FETCH response too large (or out of "
			    "memory); fetch fewer messages or items at once.");
	else if (gone > 0)
		imap_cmd_no(c, IMAP_CMD_MSG_GONE);
	else
		imap_cmd_ok(c, "Fetch completed.");
}

/* ---- STORE ---- */

/* RFC 7162 §3.1.3 (UNCHANGEDSINCE n). 0 (none: *since = UINT64_MAX) or
 * -1. */
static int imap_cmd_msg_store_mods(struct imap_arg **item, uint64_t *since)
{
	struct imap_arg *m = *item, *e;
	char *end;

	*since = UINT64_MAX;
	if (m == NULL || m->type != IMAP_ARG_LIST)
		return 0;
	e = m->child;
	if (e == NULL || e->type != IMAP_ARG_ATOM ||
	    strcasecmp(e->s, "UNCHANGEDSINCE") != 0 || e->next == NULL ||
	    e->next->type != IMAP_ARG_ATOM || e->next->next != NULL ||
	    e->next->s[0] < '0' || e->next->s[0] > '9')
		return -1;
	*since = strtoull(e->next->s, &end, 10);
	if (*end != '\0')
		return -1;
	*item = m->next;
	return 1;
}

struct imap_cmd_msg_store {
	enum mstore_flag_op op;
	unsigned flags;
	uint32_t kw;
	int silent;
	uint64_t since;              /* UNCHANGEDSINCE, UINT64_MAX: none */
};

/* The STORE arguments after the set: [(UNCHANGEDSINCE n)] item flags.
 * 0, or -1 with a BAD/NO reply. */
static int imap_cmd_msg_store_args(struct imap_cmd *c,
				   struct imap_cmd_msg_store *st)
{
	struct imap_arg *item = c->a->next;
	const char *kw[MSTORE_MAX_KEYWORDS], *it;
	struct err err;
	size_t nkw, j;
	int m;

	m = imap_cmd_msg_store_mods(&item, &st->since);
	if (m < 0 || item == NULL || item->type != IMAP_ARG_ATOM ||
	    item->next == NULL || item->next->next != NULL) {
		imap_cmd_bad(c, "STORE needs a set, an item and flags.");
		return -1;
	}
	it = item->s;
	st->op = MSTORE_FLAGS_REPLACE;
	if (*it == '+' || *it == '-')
		st->op = *it++ == '+' ? MSTORE_FLAGS_ADD : MSTORE_FLAGS_REMOVE;
	if (strncasecmp(it, "FLAGS", 5) != 0 ||
	    (it[5] != '\0' && strcasecmp(it + 5, ".SILENT") != 0)) {
		imap_cmd_bad(c, "Unknown STORE item.");
		return -1;
	}
	st->silent = it[5] != '\0';
	if (imap_flags_parse(item->next, &st->flags, kw, &nkw,
			     MSTORE_MAX_KEYWORDS) < 0) {
		imap_cmd_bad(c, "Invalid flags.");
		return -1;
	}
	if (c->u->readonly) {
		imap_cmd_no(c, "[READ-ONLY] Mailbox is read-only.");
		return -1;
	}
	st->kw = 0;
	for (j = 0; j < nkw; j++) {
		int k = mstore_keyword(c->u->folder, kw[j],
				       st->op != MSTORE_FLAGS_REMOVE, &err);

		if (k >= 0)
			st->kw |= 1u << k;
		else if (st->op != MSTORE_FLAGS_REMOVE) {
			imap_cmd_no(c, "[LIMIT] %s", err.msg);
			return -1;
		}
	}
	if (m > 0 || st->since != UINT64_MAX)
		imap_cmd_msg_enable_condstore(c);
	return 0;
}

/* STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags (RFC 3501
 * §6.4.6, RFC 7162 §3.1.3). Each change applies to the message's flags
 * as they are now (mstore_set_flags), so that two sessions changing
 * different flags of one message both win. The FETCH responses: the
 * sync after the changes reports the messages whose flags changed (with
 * FLAGS before any new keyword), this command those that did not. */
void imap_cmd_msg_store(struct imap_cmd *c)
{
	struct imap_user *u = c->u;
	struct imap_cmd_msg_store st;
	size_t *idx = NULL, n = 0, i, nmod = 0, gone = 0;
	unsigned char *changed = NULL;
	uint32_t *modified = NULL;
	struct err err;
	int condstore, lost = 0;

	if (c->nargs < 3 || !imap_arg_is_string(c->a)) {
		imap_cmd_bad(c, "STORE needs a set, an item and flags.");
		return;
	}
	if (imap_cmd_msg_store_args(c, &st) < 0)
		return;
	if (imap_view_seqset(&u->view, c->a->s,
			     c->uid ? IMAP_VIEW_SET_UID : 0, &idx, &n) < 0) {
		imap_cmd_bad(c, "Invalid message set.");
		return;
	}
	condstore = imap_cmd_msg_condstore(c);
	changed = calloc(n ? n : 1, 1);
	modified = malloc((n ? n : 1) * sizeof(*modified));
	if (changed == NULL || modified == NULL) {
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		goto out;
	}
	for (i = 0; i < n; i++) {
		long f = imap_selected_msg(u, idx[i]);
		struct mstore_msg *m;
		unsigned before;
		uint32_t kwbefore;

		if (f < 0) {
			gone++;
			continue;
		}
		m = &u->folder->msgs[f];
		/* RFC 7162 §3.1.3: changed since the client's value */
		if (m->modseq > st.since) {
			modified[nmod++] = c->uid ? m->uid :
				(uint32_t)(idx[i] + 1);
			continue;
		}
		before = m->flags;
		kwbefore = m->keywords;
		if (mstore_set_flags(u->folder, (size_t)f, st.op, st.flags,
				     st.kw, &err) < 0) {
			if (!err.temp)
				gone++;
			continue;
		}
		changed[i] = 1 + ((m->flags ^ before) & ~MSTORE_F_RECENT ||
				  m->keywords != kwbefore);
		if (st.silent && changed[i] == 2 && !condstore)
			/* the client knows what it asked for */
			imap_view_told(&u->view, idx[i], m->flags,
				       m->keywords, u->view.msgs[idx[i]].modseq);
	}
	/* the new flags, mod-sequences and keywords, reported now so that
	 * FLAGS comes before the keywords the responses below use */
	if (imap_selected_sync(u, c->uid ? IMAP_VIEW_EXPUNGE : 0, &c->out,
			       &err) < 0) {
		lost = 1;
	}
	for (i = 0; i < n && !lost; i++) {
		/* unchanged messages: still a FETCH (RFC 3501 §6.4.6) */
		if (changed[i] != 1 || st.silent ||
		    idx[i] >= u->view.count || u->view.msgs[idx[i]].gone)
			continue;
		if (imap_view_put_fetch(&u->view, idx[i],
					(const char *const *)u->folder->keywords,
					c->uid, condstore, &c->out) < 0)
			lost = 1;
	}
	if (lost) {
		imap_cmd_no(c, "[SERVERBUG] Out of memory for FETCH responses.");
	} else if (nmod > 0) {
		size_t start = c->tagged.len;

		/* RFC 7162 §3.1.3: the messages that were not stored */
		imap_cmd_ok(c, "x");
		c->tagged.len = start;
		if (buf_printf(&c->tagged, "%s OK [MODIFIED ", c->tag) < 0 ||
		    imap_view_put_uidset(&c->tagged, modified, nmod) < 0 ||
		    buf_puts(&c->tagged, "] Conditional STORE failed.\r\n") < 0)
			imap_cmd_no(c, "[SERVERBUG] Out of memory.");
	} else if (gone > 0) {
		imap_cmd_no(c, IMAP_CMD_MSG_GONE);
	} else {
		imap_cmd_ok(c, "Store completed.");
	}
out:
	free(idx);
	free(changed);
	free(modified);
}

/* ---- COPY, MOVE ---- */

/* RFC 4315 §3 "[COPYUID v src dst]" + text, tagged or (MOVE, RFC 6851
 * §4.3) untagged. The code is optional: out of memory, the plain reply
 * goes instead. */
static void imap_cmd_msg_copyuid(struct imap_cmd *c, int tagged,
				 uint32_t uidv, const uint32_t *src,
				 const uint32_t *dst, size_t n,
				 const char *text)
{
	struct buf *b = tagged ? &c->tagged : &c->out;
	size_t start;

	if (tagged)
		buf_reset(b);
	start = b->len;
	if (buf_printf(b, "%s OK [COPYUID %u ", tagged ? c->tag : "*",
		       uidv) == 0 &&
	    imap_view_put_uidset(b, src, n) == 0 &&
	    buf_putc(b, ' ') == 0 &&
	    imap_view_put_uidset(b, dst, n) == 0 &&
	    buf_printf(b, "] %s\r\n", text) == 0)
		return;
	b->len = start;
	if (b->p != NULL)
		b->p[start] = '\0';
	if (tagged)
		imap_cmd_ok(c, "%s", text);
}

/* Sort src ascending with dst alongside (COPYUID pairs them in order). */
static void imap_cmd_msg_sort_pairs(uint32_t *src, uint32_t *dst,
				    size_t *fidx, size_t n)
{
	size_t i, j;

	/* src comes from ascending view indexes, hence ascending UIDs:
	 * check, and fall back to insertion sort if ever not */
	for (i = 1; i < n; i++) {
		uint32_t s = src[i], d = dst[i];
		size_t f = fidx[i];

		for (j = i; j > 0 && src[j - 1] > s; j--) {
			src[j] = src[j - 1];
			dst[j] = dst[j - 1];
			fidx[j] = fidx[j - 1];
		}
		src[j] = s;
		dst[j] = d;
		fidx[j] = f;
	}
}

void imap_cmd_msg_copy(struct imap_cmd *c)
{
	struct imap_user *u = c->u;
	int move = strstr(c->name, "MOVE") != NULL, rc;
	char dest[IMAP_CMD_MSG_NAME];
	size_t *idx = NULL, *fidx = NULL, n = 0, i, k = 0, gone = 0;
	uint32_t *src = NULL, *dst = NULL, uidv = 0;
	uint64_t bytes = 0;
	struct err err;

	if (c->nargs != 2 || !imap_arg_is_string(c->a) ||
	    !imap_arg_is_string(c->a->next)) {
		imap_cmd_bad(c, "%s needs a set and a mailbox.", c->name);
		return;
	}
	if (imap_cmd_mailbox(c->a->next->s, dest, sizeof(dest), &err) < 0) {
		imap_cmd_no(c, "[CANNOT] %s", err.msg);
		return;
	}
	if (imap_view_seqset(&u->view, c->a->s,
			     c->uid ? IMAP_VIEW_SET_UID : 0, &idx, &n) < 0) {
		imap_cmd_bad(c, "Invalid message set.");
		return;
	}
	if (move && u->readonly) {
		free(idx);
		imap_cmd_no(c, "[READ-ONLY] Mailbox is read-only.");
		return;
	}
	src = malloc((n ? n : 1) * sizeof(*src));
	dst = malloc((n ? n : 1) * sizeof(*dst));
	fidx = malloc((n ? n : 1) * sizeof(*fidx));
	if (src == NULL || dst == NULL || fidx == NULL) {
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		goto out;
	}
	for (i = 0; i < n; i++) {
		long f = imap_selected_msg(u, idx[i]);

		if (f < 0) {
			gone++;
			continue;
		}
		fidx[k] = (size_t)f;
		src[k++] = u->folder->msgs[f].uid;
		bytes += u->folder->msgs[f].size;
	}
	if (gone > 0) {
		/* RFC 5530 EXPUNGEISSUED: nothing is copied */
		imap_cmd_no(c, IMAP_CMD_MSG_GONE);
		goto out;
	}
	if (k == 0) {
		imap_cmd_ok(c, "No messages.");
		goto out;
	}
	/* RFC 9208 §4.3: a COPY charges the quota like an APPEND; one
	 * user's MOVE does not change the usage (mstore_copy checks under
	 * the quota lock, so concurrent sessions cannot overshoot) */
	mstore_set_quota(u->ms, u->quota_limit);
	rc = mstore_copy(u->folder, fidx, k, dest, move ? MSTORE_COPY_MOVE : 0,
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
	imap_cmd_msg_sort_pairs(src, dst, fidx, k);
	if (!move) {
		u->quota_used += bytes;
		imap_cmd_msg_copyuid(c, 1, uidv, src, dst, k,
				     "Copy completed.");
		goto out;
	}
	imap_cmd_msg_copyuid(c, 0, uidv, src, dst, k, "Moved");
	/* RFC 6851 §3.3: the EXPUNGEs (or VANISHED) follow, from the sync
	 * after the command; a MOVE into the selected mailbox also brings
	 * its EXISTS from there */
	if (mstore_expunge(u->folder, src, k, 1, NULL, &err) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] %s", err.msg);
		goto out;
	}
	imap_cmd_ok(c, "Move completed.");
out:
	free(idx);
	free(fidx);
	free(src);
	free(dst);
}
