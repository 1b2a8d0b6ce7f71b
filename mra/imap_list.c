/* imap_list: LIST/LSUB arguments and selection, pure (see imap_list.h).
 * The options are parsed strictly: RFC 5258 §3 makes an unknown option
 * a BAD, so that a client never takes an ignored option for a honoured
 * one. Selection works on a flat array of names because the store has
 * no tree: a parent is found by prefix and separator. */
#include <string.h>
#include <strings.h>
#include "imap_list.h"

static int imap_list_is(const struct imap_arg *a, const char *word)
{
	return a != NULL && a->type == IMAP_ARG_ATOM &&
		strcasecmp(a->s, word) == 0;
}

int imap_list_status_items(const struct imap_arg *list, unsigned *items_r)
{
	static const struct { const char *name; unsigned bit; } it[] = {
		{ "MESSAGES", IMAP_STATUS_MESSAGES },
		{ "RECENT", IMAP_STATUS_RECENT },
		{ "UIDNEXT", IMAP_STATUS_UIDNEXT },
		{ "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY },
		{ "UNSEEN", IMAP_STATUS_UNSEEN },
		{ "SIZE", IMAP_STATUS_SIZE },
		{ "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ },
	};
	const struct imap_arg *e;
	size_t i;

	*items_r = 0;
	/* RFC 3501 §9: status-att *(SP status-att), at least one */
	if (list == NULL || list->type != IMAP_ARG_LIST || list->child == NULL)
		return -1;
	for (e = list->child; e != NULL; e = e->next) {
		for (i = 0; i < sizeof(it) / sizeof(it[0]); i++)
			if (imap_list_is(e, it[i].name))
				break;
		if (i == sizeof(it) / sizeof(it[0]))
			return -1;
		*items_r |= it[i].bit;
	}
	return 0;
}

/* RFC 5258 §3.1 list-select-opts; RFC 6154 §3 adds SPECIAL-USE. */
static int imap_list_select_opts(const struct imap_arg *l,
				 struct imap_list_req *req, const char **why_r)
{
	const struct imap_arg *o;

	for (o = l->child; o != NULL; o = o->next) {
		if (imap_list_is(o, "SUBSCRIBED")) {
			/* RFC 5258 §3.1: implies the SUBSCRIBED return option */
			req->sel |= IMAP_LIST_SEL_SUBSCRIBED;
			req->ret |= IMAP_LIST_RET_SUBSCRIBED;
		} else if (imap_list_is(o, "REMOTE")) {
			req->sel |= IMAP_LIST_SEL_REMOTE;
		} else if (imap_list_is(o, "RECURSIVEMATCH")) {
			req->sel |= IMAP_LIST_SEL_RECURSIVE;
		} else if (imap_list_is(o, "SPECIAL-USE")) {
			req->sel |= IMAP_LIST_SEL_SPECIALUSE;
		} else {
			*why_r = "Unknown LIST selection option";
			return -1;
		}
	}
	/* RFC 5258 §3.1: RECURSIVEMATCH modifies a base option (REMOTE is
	 * not one) and MUST NOT come alone */
	if ((req->sel & IMAP_LIST_SEL_RECURSIVE) &&
	    !(req->sel & (IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_SPECIALUSE))) {
		*why_r = "RECURSIVEMATCH needs a base selection option";
		return -1;
	}
	return 0;
}

/* RFC 5258 §3.2 list-return-opts, RFC 5819 §2 STATUS, RFC 6154 §5. */
static int imap_list_return_opts(const struct imap_arg *l,
				 struct imap_list_req *req, const char **why_r)
{
	const struct imap_arg *o;

	for (o = l->child; o != NULL; o = o->next) {
		if (imap_list_is(o, "SUBSCRIBED")) {
			req->ret |= IMAP_LIST_RET_SUBSCRIBED;
		} else if (imap_list_is(o, "CHILDREN")) {
			req->ret |= IMAP_LIST_RET_CHILDREN;
		} else if (imap_list_is(o, "SPECIAL-USE")) {
			req->ret |= IMAP_LIST_RET_SPECIALUSE;
		} else if (imap_list_is(o, "STATUS")) {
			if (imap_list_status_items(o->next, &req->status) < 0) {
				*why_r = "Bad STATUS return option";
				return -1;
			}
			req->ret |= IMAP_LIST_RET_STATUS;
			o = o->next;
		} else {
			*why_r = "Unknown LIST return option";
			return -1;
		}
	}
	return 0;
}

/* RFC 5258 §6: "(" list-mailbox *(SP list-mailbox) ")" */
static int imap_list_patterns(const struct imap_arg *l,
			      struct imap_list_req *req, const char **why_r)
{
	const struct imap_arg *p;

	for (p = l->child; p != NULL; p = p->next) {
		if (!imap_arg_is_string(p)) {
			*why_r = "Bad LIST pattern";
			return -1;
		}
		if (req->npat >= IMAP_LIST_MAX_PATTERNS) {
			*why_r = "Too many LIST patterns";
			return -1;
		}
		req->pat[req->npat++] = p;
	}
	if (req->npat == 0) {
		*why_r = "Empty LIST pattern list";
		return -1;
	}
	return 0;
}

int imap_list_parse(const struct imap_arg *a, int lsub,
		    struct imap_list_req *req, const char **why_r)
{
	memset(req, 0, sizeof(*req));
	req->lsub = lsub;
	*why_r = lsub ? "LSUB needs a reference and a pattern" :
		"LIST needs a reference and a pattern";
	if (!lsub && a != NULL && a->type == IMAP_ARG_LIST) {
		req->extended = 1;
		if (imap_list_select_opts(a, req, why_r) < 0)
			return -1;
		a = a->next;
	}
	if (!imap_arg_is_string(a) || a->next == NULL)
		return -1;
	req->ref = a;
	a = a->next;
	if (!lsub && a->type == IMAP_ARG_LIST) {
		req->extended = 1;
		if (imap_list_patterns(a, req, why_r) < 0)
			return -1;
	} else if (imap_arg_is_string(a)) {
		req->pat[req->npat++] = a;
	} else {
		return -1;
	}
	a = a->next;
	if (a == NULL)
		return 0;
	if (lsub || !imap_list_is(a, "RETURN") || a->next == NULL ||
	    a->next->type != IMAP_ARG_LIST || a->next->next != NULL) {
		*why_r = "Unexpected LIST arguments";
		return -1;
	}
	req->extended = 1;
	return imap_list_return_opts(a->next, req, why_r);
}

/* 1 when e[i] has a subscribed descendant (unmatched: one that no
 * pattern matches). */
static int imap_list_sub_below(const struct imap_list_entry *e, size_t n,
			       size_t i, char sep, int unmatched)
{
	size_t len = strlen(e[i].name), j;

	for (j = 0; j < n; j++) {
		if (j == i || !(e[j].attrs & IMAP_LIST_A_SUBSCRIBED) ||
		    (unmatched && e[j].match))
			continue;
		if (strncmp(e[j].name, e[i].name, len) == 0 &&
		    e[j].name[len] == sep)
			return 1;
	}
	return 0;
}

/* RFC 3501 §6.3.9: the \Noselect parent is for a pattern whose "%"
 * stops at its level, i.e. one that ends in "%". */
static int imap_list_ends_percent(const struct imap_list_req *req)
{
	const struct imap_arg *p = req->pat[0];

	if (p->len > 0)
		return p->s[p->len - 1] == '%';
	return req->ref->len > 0 && req->ref->s[req->ref->len - 1] == '%';
}

static int imap_list_lsub_one(const struct imap_list_req *req, char sep,
			      struct imap_list_entry *e, size_t n, size_t i)
{
	unsigned a = e[i].attrs;

	if (a & IMAP_LIST_A_SUBSCRIBED) {
		e[i].out = a & ~(IMAP_LIST_A_HASCHILDREN |
				 IMAP_LIST_A_HASNOCHILDREN |
				 IMAP_LIST_A_SUBSCRIBED);
		/* RFC 3501 §6.3.9: a subscribed name that is gone */
		if (e[i].out & IMAP_LIST_A_NONEXISTENT)
			e[i].out = (e[i].out & ~IMAP_LIST_A_NONEXISTENT) |
				IMAP_LIST_A_NOSELECT;
		return 1;
	}
	if (imap_list_ends_percent(req) && imap_list_sub_below(e, n, i, sep, 0)) {
		e[i].out = IMAP_LIST_A_NOSELECT;
		return 1;
	}
	return 0;
}

/* RFC 5258 §3.1 SUBSCRIBED with §3.5 RECURSIVEMATCH. */
static int imap_list_subscribed_one(const struct imap_list_req *req,
				    char sep, struct imap_list_entry *e,
				    size_t n, size_t i)
{
	int childinfo = (req->sel & IMAP_LIST_SEL_RECURSIVE) &&
		imap_list_sub_below(e, n, i, sep, 1);

	if (!(e[i].attrs & IMAP_LIST_A_SUBSCRIBED) && !childinfo)
		return 0;
	e[i].out = e[i].attrs | (childinfo ? IMAP_LIST_A_CHILDINFO : 0);
	/* RFC 5258 §3: \NonExistent implies \Noselect, sent alone */
	if (e[i].out & IMAP_LIST_A_NONEXISTENT)
		e[i].out &= ~IMAP_LIST_A_NOSELECT;
	return 1;
}

void imap_list_select(const struct imap_list_req *req, char sep,
		      struct imap_list_entry *e, size_t n)
{
	size_t i;
	int on;

	for (i = 0; i < n; i++) {
		e[i].listed = 0;
		e[i].out = 0;
		if (!e[i].match)
			continue;
		if ((req->sel & IMAP_LIST_SEL_SPECIALUSE) &&
		    !(e[i].attrs & IMAP_LIST_A_SPECIAL))
			continue;
		if (req->lsub) {
			on = imap_list_lsub_one(req, sep, e, n, i);
		} else if (req->sel & IMAP_LIST_SEL_SUBSCRIBED) {
			on = imap_list_subscribed_one(req, sep, e, n, i);
		} else {
			/* only a subscription knows of a name that is gone */
			on = !(e[i].attrs & IMAP_LIST_A_NONEXISTENT);
			e[i].out = e[i].attrs;
		}
		if (!on) {
			e[i].out = 0;
			continue;
		}
		if (!(req->ret & IMAP_LIST_RET_SUBSCRIBED))
			e[i].out &= ~IMAP_LIST_A_SUBSCRIBED;
		e[i].listed = 1;
	}
}
