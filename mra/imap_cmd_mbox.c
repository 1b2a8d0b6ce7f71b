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

void imap_cmd_mbox_select(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	int examine = strcmp(c->name, "EXAMINE") == 0;
	char name[IMAP_CMD_MBOX_NAME];
	struct mstore_folder *f;
	struct err err;
	size_t i, recent = 0, unseen = 0;

	/* RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected */
	mstore_folder_free(s->folder);
	s->folder = NULL;
	c->new_state = IMAP_ST_AUTH;
	if (c->nargs < 1 || imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	f = mstore_folder_open(s->ms, name, examine, &err);
	if (f == NULL) {
		imap_cmd_no(c, "%s%s", err.temp ? "[UNAVAILABLE] " :
			    "[NONEXISTENT] ", err.msg);
		return;
	}
	s->folder = f;
	s->readonly = examine || f->readonly;
	buf_puts(&c->out, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen "
		 "\\Draft");
	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++)
		if (f->keywords[i] != NULL)
			buf_printf(&c->out, " %s", f->keywords[i]);
	buf_puts(&c->out, ")\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged "
		 "\\Deleted \\Seen \\Draft");
	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++)
		if (f->keywords[i] != NULL)
			buf_printf(&c->out, " %s", f->keywords[i]);
	buf_printf(&c->out, " \\*)] Flags permitted.\r\n");
	for (i = 0; i < f->count; i++) {
		if (f->msgs[i].flags & MSTORE_F_RECENT)
			recent++;
		if (unseen == 0 && !(f->msgs[i].flags & MSTORE_F_SEEN))
			unseen = i + 1;
	}
	buf_printf(&c->out, "* %zu EXISTS\r\n* %zu RECENT\r\n", f->count,
		   recent);
	if (unseen > 0)
		buf_printf(&c->out, "* OK [UNSEEN %zu] First unseen.\r\n",
			   unseen);
	buf_printf(&c->out, "* OK [UIDVALIDITY %u] UIDs valid\r\n"
		   "* OK [UIDNEXT %u] Predicted next UID\r\n",
		   f->uidvalidity, f->uidnext);
	c->new_state = IMAP_ST_SELECTED;
	imap_cmd_ok(c, "[%s] %s completed.", s->readonly ? "READ-ONLY" :
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
	if (mstore_create(c->s->ms, name, &err) < 0) {
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
	if (c->s->folder != NULL && strcmp(c->s->folder->name, name) == 0) {
		imap_cmd_no(c, "[INUSE] Mailbox is selected.");
		return;
	}
	if (mstore_delete(c->s->ms, name, &err) < 0) {
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
	if (mstore_rename(c->s->ms, from, to, &err) < 0) {
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
	if (mstore_subscribe(c->s->ms, name, on, &err) < 0) {
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

static void imap_cmd_mbox_list_one(struct imap_cmd *c, int lsub,
				   const struct mstore_folder_info *fi)
{
	static const struct { unsigned bit; const char *name; } at[] = {
		{ MSTORE_LIST_NOSELECT, "\\Noselect" },
		{ MSTORE_LIST_NONEXISTENT, "\\NonExistent" },
		{ MSTORE_LIST_HASCHILDREN, "\\HasChildren" },
		{ MSTORE_LIST_HASNOCHILDREN, "\\HasNoChildren" },
		{ MSTORE_LIST_SENT, "\\Sent" },
		{ MSTORE_LIST_DRAFTS, "\\Drafts" },
		{ MSTORE_LIST_TRASH, "\\Trash" },
		{ MSTORE_LIST_JUNK, "\\Junk" },
	};
	const char *sep = "";
	unsigned attrs = fi->attrs;
	size_t i;

	if (lsub) {
		/* RFC 3501 §6.3.9: a subscribed name that is gone is
		 * \Noselect in LSUB */
		if (attrs & MSTORE_LIST_NONEXISTENT)
			attrs = MSTORE_LIST_NOSELECT;
		attrs &= ~(MSTORE_LIST_HASCHILDREN | MSTORE_LIST_HASNOCHILDREN);
	} else if (attrs & MSTORE_LIST_NONEXISTENT) {
		return;
	}
	buf_printf(&c->out, "* %s (", lsub ? "LSUB" : "LIST");
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		if (attrs & at[i].bit) {
			buf_printf(&c->out, "%s%s", sep, at[i].name);
			sep = " ";
		}
	}
	buf_puts(&c->out, ") \".\" ");
	imap_cmd_mbox_put_name(&c->out, fi->name);
	buf_puts(&c->out, "\r\n");
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

void imap_cmd_mbox_list(struct imap_cmd *c)
{
	int lsub = strcmp(c->name, "LSUB") == 0;
	struct imap_arg *ref = c->a, *pat;
	struct mstore_folder_info *list;
	char pattern[IMAP_CMD_MBOX_NAME * 2], dec[IMAP_CMD_MBOX_NAME * 2];
	struct err err;
	struct imap_arg *o;
	size_t i, n;
	int special = 0;

	/* RFC 5258 selection options before the reference; of them we act
	 * on SPECIAL-USE (RFC 6154 §3): only special-use mailboxes */
	if (ref != NULL && ref->type == IMAP_ARG_LIST && !lsub) {
		for (o = ref->child; o != NULL; o = o->next)
			if (imap_arg_is_string(o) &&
			    strcasecmp(o->s, "SPECIAL-USE") == 0)
				special = 1;
		ref = ref->next;
	}
	pat = ref != NULL ? ref->next : NULL;
	if (!imap_arg_is_string(ref) || !imap_arg_is_string(pat)) {
		imap_cmd_bad(c, "%s needs a reference and a pattern.", c->name);
		return;
	}
	/* the same rules as for a name: no NUL, no controls, valid mUTF-7 */
	if (imap_cmd_mailbox_arg(ref, &err) < 0 ||
	    imap_cmd_mailbox_arg(pat, &err) < 0) {
		imap_cmd_bad(c, "%s.", err.msg);
		return;
	}
	if (pat->len == 0) {
		/* RFC 3501 §6.3.8: the separator and root */
		buf_puts(&c->out, "* LIST (\\Noselect) \".\" \"\"\r\n");
		imap_cmd_ok(c, "List completed.");
		return;
	}
	if ((size_t)snprintf(pattern, sizeof(pattern), "%s%s", ref->s,
			     pat->s) >= sizeof(pattern) ||
	    imap_cmd_mutf7_decode(pattern, dec, sizeof(dec)) < 0) {
		imap_cmd_bad(c, "Bad mailbox pattern encoding.");
		return;
	}
	if (strncasecmp(dec, "INBOX", 5) == 0 &&
	    (dec[5] == '\0' || dec[5] == '.'))
		memcpy(dec, "INBOX", 5);
	if (mstore_list(c->s->ms, &list, &n, &err) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] %s", err.msg);
		return;
	}
	imap_cmd_mbox_list_merge(list, n);
	for (i = 0; i < n; i++) {
		if (list[i].name[0] == '\0')
			continue;
		if (lsub && !(list[i].attrs & MSTORE_LIST_SUBSCRIBED))
			continue;
		if (special && !(list[i].attrs & (MSTORE_LIST_SENT |
			MSTORE_LIST_DRAFTS | MSTORE_LIST_TRASH |
			MSTORE_LIST_JUNK)))
			continue;
		if (imap_cmd_mbox_match(dec, list[i].name, '.'))
			imap_cmd_mbox_list_one(c, lsub, &list[i]);
	}
	mstore_list_free(list, n);
	imap_cmd_ok(c, "%s completed.", lsub ? "Lsub" : "List");
}

void imap_cmd_mbox_status(struct imap_cmd *c)
{
	char name[IMAP_CMD_MBOX_NAME];
	struct mstore_status st;
	struct imap_arg *items, *e;
	struct err err;
	const char *sep = "";

	if (c->nargs != 2 || c->a->next->type != IMAP_ARG_LIST) {
		imap_cmd_bad(c, "STATUS needs a mailbox and a list of items.");
		return;
	}
	items = c->a->next;
	if (imap_cmd_mbox_arg(c, c->a, name, sizeof(name)) < 0)
		return;
	for (e = items->child; e != NULL; e = e->next) {
		if (e->type != IMAP_ARG_ATOM ||
		    (strcasecmp(e->s, "MESSAGES") != 0 &&
		     strcasecmp(e->s, "RECENT") != 0 &&
		     strcasecmp(e->s, "UIDNEXT") != 0 &&
		     strcasecmp(e->s, "UIDVALIDITY") != 0 &&
		     strcasecmp(e->s, "UNSEEN") != 0 &&
		     strcasecmp(e->s, "SIZE") != 0)) {
			imap_cmd_bad(c, "Unknown STATUS item.");
			return;
		}
	}
	if (mstore_status(c->s->ms, name, &st, &err) < 0) {
		imap_cmd_no(c, "%s%s", err.temp ? "[UNAVAILABLE] " :
			    "[NONEXISTENT] ", err.msg);
		return;
	}
	buf_puts(&c->out, "* STATUS ");
	imap_cmd_mbox_put_name(&c->out, name);
	buf_puts(&c->out, " (");
	for (e = items->child; e != NULL; e = e->next) {
		char up[16];
		size_t i;

		for (i = 0; i + 1 < sizeof(up) && e->s[i] != '\0'; i++)
			up[i] = (char)toupper((unsigned char)e->s[i]);
		up[i] = '\0';
		if (strcmp(up, "MESSAGES") == 0)
			buf_printf(&c->out, "%sMESSAGES %u", sep, st.messages);
		else if (strcmp(up, "RECENT") == 0)
			buf_printf(&c->out, "%sRECENT %u", sep, st.recent);
		else if (strcmp(up, "UIDNEXT") == 0)
			buf_printf(&c->out, "%sUIDNEXT %u", sep, st.uidnext);
		else if (strcmp(up, "UIDVALIDITY") == 0)
			buf_printf(&c->out, "%sUIDVALIDITY %u", sep,
				   st.uidvalidity);
		else if (strcmp(up, "UNSEEN") == 0)
			buf_printf(&c->out, "%sUNSEEN %u", sep, st.unseen);
		else
			buf_printf(&c->out, "%sSIZE %llu", sep,
				   (unsigned long long)st.vsize);
		sep = " ";
	}
	buf_puts(&c->out, ")\r\n");
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
		return mstore_append(c->s->ms, name, msg->s, msg->len, flags,
				     kw, nkw, date, uid, uidv, err);
	if (c->lit_size == 0 || c->lit_size > SIZE_MAX)
		return err_set(err, 0, "empty message");
	map = mmap(NULL, (size_t)c->lit_size, PROT_READ, MAP_SHARED,
		   c->lit_fd, 0);
	if (map == MAP_FAILED)
		return err_set(err, 1, "mmap: %s", strerror(errno));
	madvise(map, (size_t)c->lit_size, MADV_SEQUENTIAL);
	rc = mstore_append(c->s->ms, name, map, (size_t)c->lit_size, flags,
			   kw, nkw, date, uid, uidv, err);
	munmap(map, (size_t)c->lit_size);
	return rc;
}

void imap_cmd_mbox_append(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
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
		if (imap_cmd_parse_flags(a, &flags, kw, &nkw,
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
	if (s->folder != NULL && strcmp(s->folder->name, name) == 0)
		imap_cmd_sync(c, 1);
	/* RFC 4315 §3: APPENDUID */
	imap_cmd_ok(c, "[APPENDUID %u %u] Append completed.", uidv, uid);
}

/* Limit from maildirsize's quota definition when no map gave one. */
static uint64_t imap_cmd_mbox_quota_limit(struct imap_session *s)
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
	struct imap_session *s = c->s;
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
