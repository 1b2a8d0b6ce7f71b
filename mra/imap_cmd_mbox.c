/* imap_cmd_mbox: mailbox-level commands (RFC 3501 §6.3): SELECT, EXAMINE,
 * CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST, LSUB, STATUS, APPEND, and
 * QUOTA (RFC 9208). All run on the worker pool over the session's mstore.
 * Names are modified UTF-7 on the wire, UTF-8 in the store. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/mman.h>
#include "imap_cmd.h"
#include "imap_flags.h"
#include "imap_list.h"
#include "mstore.h"
#include "quota.h"

#define IMAP_CMD_MBOX_NAME 1024

/* Mailbox argument -> store name; replies NO and returns -1 when bad. */
static int imap_cmd_mbox_arg(struct imap_cmd *c, struct imap_arg *a,
			     char *out, size_t n)
{
	struct err err;

	if (!imap_arg_is_string(a)) {
		imap_cmd_bad(c, "Missing mailbox name.");
		return -1;
	}
	if (imap_cmd_mailbox_arg(a, &err) < 0 ||
	    imap_cmd_mailbox(a->s, out, n, &err) < 0) {
		imap_cmd_no(c, "[CANNOT] %s", err.msg);
		return -1;
	}
	return 0;
}

static void imap_cmd_mbox_put_name(struct buf *out, const char *name)
{
	char wire[IMAP_CMD_MBOX_NAME * 2];

	if (imap_cmd_mutf7_encode(name, wire, sizeof(wire)) < 0)
		snprintf(wire, sizeof(wire), "%s", name);
	/* strlen: no NUL can reach the client */
	if (imap_cmd_put_string(out, wire, strlen(wire)) < 0)
		buf_puts(out, "\"\"");
}

/* RFC 7162 §3.2.5: SELECT name (QRESYNC (uidvalidity modseq [known-uids
 * [seq-match]])) or (CONDSTORE). -1: bad syntax. *qr_uv = 0: none. */
static int imap_cmd_mbox_select_params(struct imap_cmd *c, struct imap_arg *p,
				       uint32_t *qr_uv, uint64_t *qr_mod,
				       const char **qr_known)
{
	struct imap_arg *e, *q;
	char *end;

	*qr_uv = 0;
	*qr_mod = 0;
	*qr_known = NULL;
	if (p == NULL)
		return 0;
	if (p->type != IMAP_ARG_LIST || p->next != NULL)
		return -1;
	for (e = p->child; e != NULL; e = e->next) {
		if (e->type != IMAP_ARG_ATOM)
			return -1;
		if (strcasecmp(e->s, "CONDSTORE") == 0) {
			c->u->enabled |= IMAP_VIEW_CONDSTORE;
			continue;
		}
		if (strcasecmp(e->s, "QRESYNC") != 0 ||
		    !(c->u->enabled & IMAP_VIEW_QRESYNC) ||
		    e->next == NULL || e->next->type != IMAP_ARG_LIST)
			return -1;
		e = e->next;
		q = e->child;
		if (q == NULL || q->type != IMAP_ARG_ATOM ||
		    imap_parser_number(q->s, strlen(q->s), qr_uv) < 0 ||
		    q->next == NULL || q->next->type != IMAP_ARG_ATOM ||
		    q->next->s[0] < '0' || q->next->s[0] > '9')
			return -1;
		*qr_mod = strtoull(q->next->s, &end, 10);
		if (*end != '\0' || *qr_uv == 0)
			return -1;
		q = q->next->next;
		if (q != NULL) {
			/* known-uids; the optional seq-match data (a list)
			 * only narrows what we send anyway */
			if (q->type != IMAP_ARG_ATOM ||
			    (q->next != NULL && (q->next->type != IMAP_ARG_LIST ||
						 q->next->next != NULL)))
				return -1;
			*qr_known = q->s;
		}
	}
	return 0;
}

void imap_cmd_mbox_select(struct imap_cmd *c)
{
	struct imap_user *u = c->u;
	int examine = strcmp(c->name, "EXAMINE") == 0;
	char name[IMAP_CMD_MBOX_NAME];
	const char *known;
	uint32_t qr_uv;
	uint64_t qr_mod;
	struct err err;

	/* RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected */
	imap_selected_unselect(u);
	c->new_state = IMAP_ST_AUTH;
	c->no_sync = 1;
	if (c->nargs < 1 || c->nargs > 2)  {
		imap_cmd_bad(c, "%s needs a mailbox name.", c->name);
		return;
	}
	if (imap_cmd_mbox_select_params(c, c->a->next, &qr_uv, &qr_mod,
					&known) < 0) {
		imap_cmd_bad(c, "Invalid %s parameters.", c->name);
		return;
	}
	if (imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	if (imap_selected_select(u, name, examine, &c->out, &err) < 0) {
		imap_cmd_no(c, "%s%s", err.temp ? "[UNAVAILABLE] " :
			    "[NONEXISTENT] ", err.msg);
		return;
	}
	/* RFC 7162 §3.2.5.1: what changed since the client's state; with
	 * another UIDVALIDITY the client starts over from the OK above */
	if (qr_uv != 0 && qr_uv == u->view.uidvalidity &&
	    imap_view_qresync(&u->view, qr_mod, known,
			      (const char *const *)u->folder->keywords,
			      &c->out) < 0) {
		imap_selected_unselect(u);
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		return;
	}
	c->new_state = IMAP_ST_SELECTED;
	imap_cmd_ok(c, "[%s] %s completed.", u->readonly ? "READ-ONLY" :
		    "READ-WRITE", examine ? "Examine" : "Select");
}

void imap_cmd_mbox_create(struct imap_cmd *c)
{
	char name[IMAP_CMD_MBOX_NAME];
	size_t len;
	struct err err;

	if (c->nargs != 1 || !imap_arg_is_string(c->a)) {
		imap_cmd_bad(c, "CREATE needs a mailbox name.");
		return;
	}
	/* RFC 3501 §6.3.3: a trailing separator names a future parent */
	len = c->a->len;
	if (len > 1 && c->a->s[len - 1] == '.') {
		c->a->s[len - 1] = '\0';
		c->a->len = len - 1;   /* the name checks look at len bytes */
	}
	if (imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	if (strcmp(name, "INBOX") == 0) {
		imap_cmd_no(c, "[ALREADYEXISTS] INBOX always exists.");
		return;
	}
	if (mstore_create(c->u->ms, name, &err) < 0) {
		imap_cmd_no(c, "%s", err.msg);
		return;
	}
	imap_cmd_ok(c, "Create completed.");
}

void imap_cmd_mbox_delete(struct imap_cmd *c)
{
	char name[IMAP_CMD_MBOX_NAME];
	struct err err;

	if (c->nargs != 1) {
		imap_cmd_bad(c, "DELETE needs a mailbox name.");
		return;
	}
	if (imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	if (c->u->sel_name != NULL && strcmp(c->u->sel_name, name) == 0) {
		imap_cmd_no(c, "[INUSE] Mailbox is selected.");
		return;
	}
	if (mstore_delete(c->u->ms, name, &err) < 0) {
		imap_cmd_no(c, "%s", err.msg);
		return;
	}
	imap_cmd_ok(c, "Delete completed.");
}

void imap_cmd_mbox_rename(struct imap_cmd *c)
{
	char from[IMAP_CMD_MBOX_NAME], to[IMAP_CMD_MBOX_NAME];
	struct err err;

	if (c->nargs != 2) {
		imap_cmd_bad(c, "RENAME needs two mailbox names.");
		return;
	}
	if (imap_cmd_mbox_arg(c, c->a, from, sizeof(from)) < 0 ||
	    imap_cmd_mbox_arg(c, c->a->next, to, sizeof(to)) < 0)
		return;
	if (mstore_rename(c->u->ms, from, to, &err) < 0) {
		imap_cmd_no(c, "%s", err.msg);
		return;
	}
	imap_cmd_ok(c, "Rename completed.");
}

void imap_cmd_mbox_subscribe(struct imap_cmd *c)
{
	char name[IMAP_CMD_MBOX_NAME];
	int on = strcmp(c->name, "SUBSCRIBE") == 0;
	struct err err;

	if (c->nargs != 1) {
		imap_cmd_bad(c, "%s needs a mailbox name.", c->name);
		return;
	}
	if (imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	if (mstore_subscribe(c->u->ms, name, on, &err) < 0) {
		imap_cmd_no(c, "%s", err.msg);
		return;
	}
	imap_cmd_ok(c, "%s completed.", on ? "Subscribe" : "Unsubscribe");
}

/* RFC 3501 §6.3.8: "*" matches anything, "%" anything but the hierarchy
 * separator, every other character itself. A backtracking matcher is
 * exponential in the wildcards (seven of them against a 200-character
 * name held a worker for minutes); this is a dynamic program over the
 * name instead, one pass per pattern character: dp[j] says whether the
 * pattern so far matches name[0..j). O(pattern * name) time by
 * construction, no recursion, no allocation. */
int imap_cmd_mbox_match(const char *pat, const char *name, char sep)
{
	unsigned char dp[IMAP_CMD_MATCH_NAME_MAX + 1];
	size_t nlen = strlen(name), lit = 0, i, j;
	int any;

	if (nlen > IMAP_CMD_MATCH_NAME_MAX)
		return 0;
	/* each plain character consumes one of the name's */
	for (i = 0; pat[i] != '\0'; i++)
		if (pat[i] != '*' && pat[i] != '%' && ++lit > nlen)
			return 0;
	memset(dp, 0, nlen + 1);
	dp[0] = 1;
	for (i = 0; pat[i] != '\0'; i++) {
		char c = pat[i];

		if (c == '*') {
			for (j = 1; j <= nlen; j++)
				dp[j] |= dp[j - 1];
			continue;
		}
		if (c == '%') {
			for (j = 1; j <= nlen; j++)
				dp[j] |= dp[j - 1] & (name[j - 1] != sep);
			continue;
		}
		any = 0;
		for (j = nlen; j >= 1; j--) {
			dp[j] = dp[j - 1] & (name[j - 1] == c);
			any |= dp[j];
		}
		dp[0] = 0;
		if (!any)
			return 0;
	}
	return dp[nlen];
}

/* The store's attributes as imap_list's. */
static unsigned imap_cmd_mbox_attrs(unsigned ms)
{
	static const struct { unsigned ms, il; } map[] = {
		{ MSTORE_LIST_NOSELECT, IMAP_LIST_A_NOSELECT },
		{ MSTORE_LIST_NONEXISTENT, IMAP_LIST_A_NONEXISTENT },
		{ MSTORE_LIST_HASCHILDREN, IMAP_LIST_A_HASCHILDREN },
		{ MSTORE_LIST_HASNOCHILDREN, IMAP_LIST_A_HASNOCHILDREN },
		{ MSTORE_LIST_SUBSCRIBED, IMAP_LIST_A_SUBSCRIBED },
		{ MSTORE_LIST_SENT, IMAP_LIST_A_SENT },
		{ MSTORE_LIST_DRAFTS, IMAP_LIST_A_DRAFTS },
		{ MSTORE_LIST_TRASH, IMAP_LIST_A_TRASH },
		{ MSTORE_LIST_JUNK, IMAP_LIST_A_JUNK },
	};
	unsigned il = 0;
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (ms & map[i].ms)
			il |= map[i].il;
	return il;
}

static void imap_cmd_mbox_list_one(struct imap_cmd *c, int lsub,
				   const struct imap_list_entry *e)
{
	static const struct { unsigned bit; const char *name; } at[] = {
		{ IMAP_LIST_A_NOSELECT, "\\Noselect" },
		{ IMAP_LIST_A_NONEXISTENT, "\\NonExistent" },
		{ IMAP_LIST_A_HASCHILDREN, "\\HasChildren" },
		{ IMAP_LIST_A_HASNOCHILDREN, "\\HasNoChildren" },
		{ IMAP_LIST_A_SUBSCRIBED, "\\Subscribed" },
		{ IMAP_LIST_A_SENT, "\\Sent" },
		{ IMAP_LIST_A_DRAFTS, "\\Drafts" },
		{ IMAP_LIST_A_TRASH, "\\Trash" },
		{ IMAP_LIST_A_JUNK, "\\Junk" },
	};
	const char *sep = "";
	size_t i;

	buf_printf(&c->out, "* %s (", lsub ? "LSUB" : "LIST");
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		if (e->out & at[i].bit) {
			buf_printf(&c->out, "%s%s", sep, at[i].name);
			sep = " ";
		}
	}
	buf_puts(&c->out, ") \".\" ");
	imap_cmd_mbox_put_name(&c->out, e->name);
	/* RFC 5258 §3.5: the only extended data item we send */
	if (e->out & IMAP_LIST_A_CHILDINFO)
		buf_puts(&c->out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
	buf_puts(&c->out, "\r\n");
}

/* "* STATUS name (...)" with the IMAP_STATUS_* items asked for. */
static void imap_cmd_mbox_put_status(struct buf *out, const char *name,
				     unsigned items,
				     const struct mstore_status *st)
{
	const char *sep = "";

	buf_puts(out, "* STATUS ");
	imap_cmd_mbox_put_name(out, name);
	buf_puts(out, " (");
	if (items & IMAP_STATUS_MESSAGES) {
		buf_printf(out, "%sMESSAGES %u", sep, st->messages);
		sep = " ";
	}
	if (items & IMAP_STATUS_RECENT) {
		buf_printf(out, "%sRECENT %u", sep, st->recent);
		sep = " ";
	}
	if (items & IMAP_STATUS_UIDNEXT) {
		buf_printf(out, "%sUIDNEXT %u", sep, st->uidnext);
		sep = " ";
	}
	if (items & IMAP_STATUS_UIDVALIDITY) {
		buf_printf(out, "%sUIDVALIDITY %u", sep, st->uidvalidity);
		sep = " ";
	}
	if (items & IMAP_STATUS_UNSEEN) {
		buf_printf(out, "%sUNSEEN %u", sep, st->unseen);
		sep = " ";
	}
	if (items & IMAP_STATUS_SIZE) {
		buf_printf(out, "%sSIZE %llu", sep,
			   (unsigned long long)st->vsize);
		sep = " ";
	}
	if (items & IMAP_STATUS_HIGHESTMODSEQ)
		buf_printf(out, "%sHIGHESTMODSEQ %llu", sep,
			   (unsigned long long)st->highestmodseq);
	buf_puts(out, ")\r\n");
}

/* A name listed twice (INBOX as a mailbox and as the parent of
 * "INBOX.x"): one entry, selectable, with children. The other's name is
 * emptied. */
static void imap_cmd_mbox_list_merge(struct mstore_folder_info *list,
				     size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		for (j = i + 1; j < n; j++) {
			if (list[j].name[0] == '\0' ||
			    strcmp(list[i].name, list[j].name) != 0)
				continue;
			if ((list[i].attrs | list[j].attrs) &
			    MSTORE_LIST_HASCHILDREN)
				list[i].attrs = (list[i].attrs &
						 ~MSTORE_LIST_HASNOCHILDREN) |
					MSTORE_LIST_HASCHILDREN;
			if (!(list[j].attrs & MSTORE_LIST_NOSELECT))
				list[i].attrs &= ~MSTORE_LIST_NOSELECT;
			list[i].attrs |= list[j].attrs &
				MSTORE_LIST_SUBSCRIBED;
			list[j].name[0] = '\0';
		}
	}
}

/* Reference and pattern joined (RFC 3501 §6.3.8), decoded to a store
 * pattern. A "&" that starts no shift sequence (neither "-" nor a base64
 * character follows) stands for itself here: such a pattern names
 * nothing the store holds, and LIST answers it with no names (imaptest's
 * atoms script) where a name argument would be refused. */
static int imap_cmd_mbox_pattern(const struct imap_arg *ref,
				 const struct imap_arg *pat, char *dec,
				 size_t size)
{
	char joined[IMAP_CMD_MBOX_NAME * 2];
	const struct imap_arg *part[2] = { ref, pat };
	size_t o = 0, i, k;

	for (k = 0; k < 2; k++) {
		for (i = 0; i < part[k]->len; i++) {
			char ch = part[k]->s[i], nx = i + 1 < part[k]->len ?
				part[k]->s[i + 1] : '\0';

			if (o + 3 >= sizeof(joined))
				return -1;
			joined[o++] = ch;
			if (ch == '&' && nx != '-' && nx != '+' && nx != ',' &&
			    !isalnum((unsigned char)nx))
				joined[o++] = '-';
		}
	}
	joined[o] = '\0';
	if (imap_cmd_mutf7_decode(joined, dec, size) < 0)
		return -1;
	if (strncasecmp(dec, "INBOX", 5) == 0 &&
	    (dec[5] == '\0' || dec[5] == '.'))
		memcpy(dec, "INBOX", 5);
	return 0;
}

/* The entries LIST chooses from: the store's names, and the missing
 * parents of subscribed names that are gone (RFC 5258 §3.5 may return
 * them with CHILDINFO). *names_r holds what was allocated here. */
static int imap_cmd_mbox_entries(struct mstore_folder_info *list, size_t n,
				 struct imap_list_entry **e_r, size_t *ne_r,
				 char ***names_r, size_t *nnames_r)
{
	struct imap_list_entry *e;
	char **names;
	size_t cap = n, ne = 0, nn = 0, i, j, len;
	const char *p;

	for (i = 0; i < n; i++)
		if (list[i].attrs & MSTORE_LIST_NONEXISTENT)
			for (p = list[i].name; *p != '\0'; p++)
				cap += *p == '.';
	e = calloc(cap + 1, sizeof(*e));
	names = calloc(cap + 1, sizeof(*names));
	*e_r = e;
	*names_r = names;
	*ne_r = *nnames_r = 0;
	if (e == NULL || names == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		if (list[i].name[0] == '\0')
			continue;
		e[ne].name = list[i].name;
		e[ne++].attrs = imap_cmd_mbox_attrs(list[i].attrs);
	}
	for (i = 0; i < n; i++) {
		if (!(list[i].attrs & MSTORE_LIST_NONEXISTENT) ||
		    list[i].name[0] == '\0')
			continue;
		for (len = strlen(list[i].name); len > 0; len--) {
			if (list[i].name[len - 1] != '.')
				continue;
			for (j = 0; j < ne; j++)
				if (strncmp(e[j].name, list[i].name, len - 1) == 0 &&
				    e[j].name[len - 1] == '\0')
					break;
			if (j < ne)
				continue;
			names[nn] = strndup(list[i].name, len - 1);
			if (names[nn] == NULL) {
				*nnames_r = nn;
				return -1;
			}
			e[ne].name = names[nn++];
			e[ne++].attrs = IMAP_LIST_A_NONEXISTENT;
		}
	}
	*ne_r = ne;
	*nnames_r = nn;
	/* children of names that are gone: only names that exist count */
	for (i = 0; i < ne; i++) {
		if (!(e[i].attrs & IMAP_LIST_A_NONEXISTENT))
			continue;
		len = strlen(e[i].name);
		e[i].attrs &= ~(IMAP_LIST_A_HASCHILDREN |
				IMAP_LIST_A_HASNOCHILDREN);
		e[i].attrs |= IMAP_LIST_A_HASNOCHILDREN;
		for (j = 0; j < ne; j++) {
			if (!(e[j].attrs & IMAP_LIST_A_NONEXISTENT) &&
			    strncmp(e[j].name, e[i].name, len) == 0 &&
			    e[j].name[len] == '.') {
				e[i].attrs ^= IMAP_LIST_A_HASNOCHILDREN |
					IMAP_LIST_A_HASCHILDREN;
				break;
			}
		}
	}
	return 0;
}

static void imap_cmd_mbox_entries_free(struct imap_list_entry *e,
				       char **names, size_t nnames)
{
	size_t i;

	for (i = 0; i < nnames && names != NULL; i++)
		free(names[i]);
	free(names);
	free(e);
}

/* RFC 5819 §2: a STATUS after the LIST line of each selectable name;
 * none for \Noselect or \NonExistent, none when it cannot be had. */
static void imap_cmd_mbox_list_status(struct imap_cmd *c,
				      const struct imap_list_req *req,
				      const struct imap_list_entry *e)
{
	struct mstore_status st;
	struct err err;

	if (!(req->ret & IMAP_LIST_RET_STATUS) ||
	    (e->out & (IMAP_LIST_A_NOSELECT | IMAP_LIST_A_NONEXISTENT)) ||
	    mstore_status(c->u->ms, e->name, &st, &err) < 0)
		return;
	imap_cmd_mbox_put_status(&c->out, e->name, req->status, &st);
}

/* Decode the patterns; 0, or -1 after a BAD. */
static int imap_cmd_mbox_list_patterns(struct imap_cmd *c,
				       const struct imap_list_req *req,
				       char (*dec)[IMAP_CMD_MBOX_NAME * 2])
{
	size_t i;

	/* as for a name: no NUL (it would cut the C string short), no
	 * controls, literal or encoded (imap_cmd_mutf7_decode) */
	if (memchr(req->ref->s, '\0', req->ref->len) != NULL) {
		imap_cmd_bad(c, "NUL character in mailbox reference.");
		return -1;
	}
	for (i = 0; i < req->npat; i++) {
		if (memchr(req->pat[i]->s, '\0', req->pat[i]->len) != NULL) {
			imap_cmd_bad(c, "NUL character in mailbox pattern.");
			return -1;
		}
		if (imap_cmd_mbox_pattern(req->ref, req->pat[i], dec[i],
					  sizeof(dec[i])) < 0) {
			imap_cmd_bad(c, "Bad mailbox pattern encoding.");
			return -1;
		}
	}
	return 0;
}

void imap_cmd_mbox_list(struct imap_cmd *c)
{
	int lsub = strcmp(c->name, "LSUB") == 0;
	struct imap_list_req req;
	struct mstore_folder_info *list;
	struct imap_list_entry *e;
	char (*dec)[IMAP_CMD_MBOX_NAME * 2];
	char **names;
	const char *why;
	struct err err;
	size_t i, k, n, ne, nnames;

	if (imap_list_parse(c->a, lsub, &req, &why) < 0) {
		imap_cmd_bad(c, "%s.", why);
		return;
	}
	if (!req.extended && req.pat[0]->len == 0) {
		/* RFC 3501 §6.3.8: the separator and root */
		buf_puts(&c->out, "* LIST (\\Noselect) \".\" \"\"\r\n");
		imap_cmd_ok(c, "List completed.");
		return;
	}
	dec = malloc(req.npat * sizeof(*dec));
	if (dec == NULL) {
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		return;
	}
	if (imap_cmd_mbox_list_patterns(c, &req, dec) < 0) {
		free(dec);
		return;
	}
	if (mstore_list(c->u->ms, &list, &n, &err) < 0) {
		free(dec);
		imap_cmd_no(c, "[UNAVAILABLE] %s", err.msg);
		return;
	}
	imap_cmd_mbox_list_merge(list, n);
	if (imap_cmd_mbox_entries(list, n, &e, &ne, &names, &nnames) < 0) {
		imap_cmd_mbox_entries_free(e, names, nnames);
		mstore_list_free(list, n);
		free(dec);
		imap_cmd_no(c, "[SERVERBUG] Out of memory.");
		return;
	}
	for (i = 0; i < ne; i++)
		for (k = 0; k < req.npat && !e[i].match; k++)
			e[i].match = imap_cmd_mbox_match(dec[k], e[i].name,
							 '.');
	imap_list_select(&req, '.', e, ne);
	for (i = 0; i < ne; i++) {
		if (!e[i].listed)
			continue;
		imap_cmd_mbox_list_one(c, lsub, &e[i]);
		imap_cmd_mbox_list_status(c, &req, &e[i]);
	}
	imap_cmd_mbox_entries_free(e, names, nnames);
	mstore_list_free(list, n);
	free(dec);
	imap_cmd_ok(c, "%s completed.", lsub ? "Lsub" : "List");
}

void imap_cmd_mbox_status(struct imap_cmd *c)
{
	char name[IMAP_CMD_MBOX_NAME];
	struct mstore_status st;
	struct err err;
	unsigned items;

	if (c->nargs != 2 ||
	    imap_list_status_items(c->a->next, &items) < 0) {
		imap_cmd_bad(c, "STATUS needs a mailbox and a list of items.");
		return;
	}
	if (imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	if (mstore_status(c->u->ms, name, &st, &err) < 0) {
		imap_cmd_no(c, "%s%s", err.temp ? "[UNAVAILABLE] " :
			    "[NONEXISTENT] ", err.msg);
		return;
	}
	imap_cmd_mbox_put_status(&c->out, name, items, &st);
	imap_cmd_ok(c, "Status completed.");
}

/* RFC 3501 §9 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be
 * space-padded). Returns the time or -1. */
static time_t imap_cmd_mbox_date(const char *s)
{
	static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	struct tm tm;
	int day, y, hh, mm, ss, zh, zm, i, sign;
	const char *p;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	if (s[0] == ' ')
		s++;
	if (!isdigit((unsigned char)s[0]))
		return -1;
	day = s[0] - '0';
	s++;
	if (isdigit((unsigned char)s[0])) {
		day = day * 10 + (s[0] - '0');
		s++;
	}
	if (*s++ != '-' || strlen(s) != 23)
		return -1;
	p = NULL;
	for (i = 0; i < 12; i++)
		if (strncasecmp(s, mon + i * 3, 3) == 0)
			p = mon + i * 3;
	if (p == NULL || s[3] != '-')
		return -1;
	for (i = 4; i < 23; i++) {
		if (i == 8 || i == 17 || i == 11 || i == 14)
			continue;
		if (i == 18)
			continue;
		if (!isdigit((unsigned char)s[i]))
			return -1;
	}
	if (s[8] != ' ' || s[11] != ':' || s[14] != ':' || s[17] != ' ' ||
	    (s[18] != '+' && s[18] != '-'))
		return -1;
	y = (s[4] - '0') * 1000 + (s[5] - '0') * 100 + (s[6] - '0') * 10 +
		(s[7] - '0');
	hh = (s[9] - '0') * 10 + (s[10] - '0');
	mm = (s[12] - '0') * 10 + (s[13] - '0');
	ss = (s[15] - '0') * 10 + (s[16] - '0');
	sign = s[18] == '-' ? -1 : 1;
	zh = (s[19] - '0') * 10 + (s[20] - '0');
	zm = (s[21] - '0') * 10 + (s[22] - '0');
	if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
		return -1;
	tm.tm_mday = day;
	tm.tm_mon = (int)((p - mon) / 3);
	tm.tm_year = y - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	return t - sign * (zh * 3600 + zm * 60);
}

/* Store the message: from the command's bytes, or from the file the
 * session streamed it to (mapped, so that it is never copied into the
 * heap whole; the pages are the page cache's, released on unmap). */
static int imap_cmd_mbox_append_store(struct imap_cmd *c, const char *name,
				      const struct imap_arg *msg,
				      unsigned flags, const char **kw,
				      size_t nkw, time_t date, uint32_t *uid,
				      uint32_t *uidv, struct err *err)
{
	void *map;
	int rc;

	if (c->lit_arg == NULL)
		return mstore_append(c->u->ms, name, msg->s, msg->len, flags,
				     kw, nkw, date, uid, uidv, err);
	if (c->lit_size == 0 || c->lit_size > SIZE_MAX)
		return err_set(err, 0, "empty message");
	map = mmap(NULL, (size_t)c->lit_size, PROT_READ, MAP_SHARED,
		   c->lit_fd, 0);
	if (map == MAP_FAILED)
		return err_set(err, 1, "mmap: %s", strerror(errno));
	madvise(map, (size_t)c->lit_size, MADV_SEQUENTIAL);
	rc = mstore_append(c->u->ms, name, map, (size_t)c->lit_size, flags,
			   kw, nkw, date, uid, uidv, err);
	munmap(map, (size_t)c->lit_size);
	return rc;
}

void imap_cmd_mbox_append(struct imap_cmd *c)
{
	struct imap_user *s = c->u;
	char name[IMAP_CMD_MBOX_NAME];
	struct imap_arg *a = c->a ? c->a->next : NULL, *msg;
	const char *kw[MSTORE_MAX_KEYWORDS];
	size_t nkw = 0;
	unsigned flags = 0;
	time_t date = 0;
	uint32_t uid = 0, uidv = 0;
	uint64_t used = 0, count = 0, size;
	struct err err;
	int qlk = -1, rc;

	if (c->nargs < 2) {
		imap_cmd_bad(c, "APPEND needs a mailbox and a message.");
		return;
	}
	if (a != NULL && a->type == IMAP_ARG_LIST) {
		if (imap_flags_parse(a, &flags, kw, &nkw,
					 MSTORE_MAX_KEYWORDS) < 0) {
			imap_cmd_bad(c, "Invalid flags.");
			return;
		}
		a = a->next;
	}
	if (a != NULL && a->type == IMAP_ARG_QUOTED && a->next != NULL) {
		date = imap_cmd_mbox_date(a->s);
		if (date == (time_t)-1) {
			imap_cmd_bad(c, "Invalid date-time.");
			return;
		}
		a = a->next;
	}
	msg = a;
	if (msg == NULL || msg->type != IMAP_ARG_LITERAL || msg->next != NULL ||
	    (c->lit_arg != NULL && c->lit_arg != msg)) {
		imap_cmd_bad(c, "APPEND needs the message as a literal.");
		return;
	}
	if (imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	if (c->lit_arg != NULL && c->lit_err != 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Cannot store the message: %s.",
			    strerror(c->lit_err));
		return;
	}
	size = c->lit_arg != NULL ? c->lit_size : msg->len;
	/* RFC 9208 §4.3, shared/quota.h: check, append and the maildirsize
	 * update under quota_lock (taken before the folder's lock, as COPY
	 * and the MDA do), so concurrent APPENDs cannot overshoot */
	if (s->quota_limit > 0) {
		qlk = quota_lock(mstore_root(s->ms), (uid_t)-1, (gid_t)-1, &err);
		if (qlk < 0) {
			imap_cmd_no(c, "[UNAVAILABLE] %s", err.msg);
			return;
		}
		if (mstore_quota_usage(s->ms, &used, &count, &err) == 0) {
			s->quota_used = used;
			if (used + size > s->quota_limit) {
				quota_unlock(qlk);
				/* RFC 9208 §4.3: OVERQUOTA */
				imap_cmd_no(c, "[OVERQUOTA] Quota exceeded.");
				return;
			}
		}
	}
	rc = imap_cmd_mbox_append_store(c, name, msg, flags, kw, nkw, date,
					&uid, &uidv, &err);
	quota_unlock(qlk);
	if (rc < 0) {
		imap_cmd_no(c, "%s%s", err.temp ? "[UNAVAILABLE] " :
			    "[TRYCREATE] ", err.msg);
		return;
	}
	s->quota_used += size;
	/* an APPEND to the selected mailbox: its EXISTS comes from the sync
	 * after the command (RFC 3501 §6.3.11) */
	/* RFC 4315 §3: APPENDUID */
	imap_cmd_ok(c, "[APPENDUID %u %u] Append completed.", uidv, uid);
}

/* Limit from maildirsize's quota definition when no map gave one. */
static uint64_t imap_cmd_mbox_quota_limit(struct imap_user *s)
{
	char path[4200], text[512];
	long long limit = 0, b, f;
	FILE *fp;
	size_t n;

	if (s->quota_limit > 0)
		return s->quota_limit;
	snprintf(path, sizeof(path), "%s/maildirsize", mstore_root(s->ms));
	fp = fopen(path, "r");
	if (fp == NULL)
		return 0;
	n = fread(text, 1, sizeof(text) - 1, fp);
	fclose(fp);
	text[n] = '\0';
	if (quota_parse(text, n, &limit, &b, &f) < 0 || limit < 0)
		return 0;
	return (uint64_t)limit;
}

/* RFC 9208: one quota root "" for the whole mailbox, STORAGE in KiB. */
void imap_cmd_mbox_quota(struct imap_cmd *c)
{
	struct imap_user *s = c->u;
	int root = strcmp(c->name, "GETQUOTAROOT") == 0;
	char name[IMAP_CMD_MBOX_NAME];
	uint64_t used = 0, count = 0, limit;
	struct err err;

	if (c->nargs != 1 || !imap_arg_is_string(c->a)) {
		imap_cmd_bad(c, "%s needs one argument.", c->name);
		return;
	}
	if (root && imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	if (!root && c->a->len != 0) {
		imap_cmd_no(c, "[NONEXISTENT] No such quota root.");
		return;
	}
	limit = imap_cmd_mbox_quota_limit(s);
	if (root) {
		buf_puts(&c->out, "* QUOTAROOT ");
		imap_cmd_mbox_put_name(&c->out, name);
		buf_puts(&c->out, limit > 0 ? " \"\"\r\n" : "\r\n");
	}
	if (limit > 0) {
		if (mstore_quota_usage(s->ms, &used, &count, &err) < 0) {
			imap_cmd_no(c, "[UNAVAILABLE] %s", err.msg);
			return;
		}
		s->quota_used = used;
		buf_printf(&c->out, "* QUOTA \"\" (STORAGE %llu %llu)\r\n",
			   (unsigned long long)((used + 1023) / 1024),
			   (unsigned long long)(limit / 1024));
	} else if (!root) {
		imap_cmd_no(c, "[NONEXISTENT] No quota.");
		return;
	}
	imap_cmd_ok(c, "%s completed.", root ? "Getquotaroot" : "Getquota");
}
