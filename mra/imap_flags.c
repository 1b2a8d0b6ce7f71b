/* imap_flags: FLAGS lists on the wire, both ways. */
#include <string.h>
#include <strings.h>
#include "imap_flags.h"
#include "mstore.h"

static const struct {
	unsigned bit;
	const char *name;
} imap_flags_sys[] = {
	{ MSTORE_F_SEEN, "\\Seen" }, { MSTORE_F_ANSWERED, "\\Answered" },
	{ MSTORE_F_FLAGGED, "\\Flagged" }, { MSTORE_F_DELETED, "\\Deleted" },
	{ MSTORE_F_DRAFT, "\\Draft" }, { MSTORE_F_RECENT, "\\Recent" },
};
#define IMAP_FLAGS_NSYS (sizeof(imap_flags_sys) / sizeof(imap_flags_sys[0]))

int imap_flags_is_atom(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
		    strchr("(){%*\"\\]", *s) != NULL)
			return 0;
	return 1;
}

static void imap_flags_undo(struct buf *out, size_t len)
{
	out->len = len;
	if (out->p != NULL)
		out->p[len] = '\0';
}

/* The names inside the parentheses, space separated. */
static int imap_flags_names(struct buf *out, const char *const *kwnames,
			    unsigned flags, uint32_t keywords)
{
	const char *sep = "";
	size_t i;
	int rc = 0;

	for (i = 0; rc == 0 && i < IMAP_FLAGS_NSYS; i++) {
		if (flags & imap_flags_sys[i].bit) {
			rc = buf_printf(out, "%s%s", sep, imap_flags_sys[i].name);
			sep = " ";
		}
	}
	/* the index file is data on disk: a name that is not an atom
	 * must never break the list */
	for (i = 0; rc == 0 && kwnames != NULL && i < MSTORE_MAX_KEYWORDS; i++) {
		if ((keywords & (1u << i)) && kwnames[i] != NULL &&
		    imap_flags_is_atom(kwnames[i])) {
			rc = buf_printf(out, "%s%s", sep, kwnames[i]);
			sep = " ";
		}
	}
	return rc;
}

int imap_flags_put(struct buf *out, const char *const *kwnames,
		   unsigned flags, uint32_t keywords)
{
	size_t start = out->len;

	if (buf_putc(out, '(') < 0 ||
	    imap_flags_names(out, kwnames, flags, keywords) < 0 ||
	    buf_putc(out, ')') < 0) {
		imap_flags_undo(out, start);
		return -1;
	}
	return 0;
}

int imap_flags_put_announce(struct buf *out, const char *const *kwnames,
			    uint32_t kw_mask, enum imap_flags_perm perm)
{
	const unsigned sys = MSTORE_F_ANSWERED | MSTORE_F_FLAGGED |
		MSTORE_F_DELETED | MSTORE_F_SEEN | MSTORE_F_DRAFT;
	size_t start = out->len;
	int rc;

	rc = buf_puts(out, "* FLAGS (");
	if (rc == 0)
		rc = imap_flags_names(out, kwnames, sys, kw_mask);
	if (rc == 0)
		rc = buf_puts(out, ")\r\n* OK [PERMANENTFLAGS (");
	if (rc == 0 && perm != IMAP_FLAGS_PERM_NONE)
		rc = imap_flags_names(out, kwnames, sys, kw_mask);
	if (rc == 0)
		rc = buf_puts(out, perm == IMAP_FLAGS_PERM_NONE ?
			      ")] Read-only mailbox.\r\n" :
			      perm == IMAP_FLAGS_PERM_CREATE ?
			      " \\*)] Flags permitted.\r\n" :
			      ")] Flags permitted.\r\n");
	if (rc < 0)
		imap_flags_undo(out, start);
	return rc;
}

static int imap_flags_one(const char *s, unsigned *flags, const char **kw,
			  size_t *nkw, size_t maxkw)
{
	size_t i;

	if (s[0] == '\\') {
		for (i = 0; i < IMAP_FLAGS_NSYS; i++) {
			if (strcasecmp(s, imap_flags_sys[i].name) == 0) {
				/* \Recent is the server's (RFC 3501 §2.3.2) */
				if (imap_flags_sys[i].bit != MSTORE_F_RECENT)
					*flags |= imap_flags_sys[i].bit;
				return 0;
			}
		}
		return -1;
	}
	/* RFC 3501 §9: flag-keyword = atom */
	if (!imap_flags_is_atom(s) || *nkw >= maxkw)
		return -1;
	for (i = 0; i < *nkw; i++)
		if (strcasecmp(kw[i], s) == 0)
			return 0;
	kw[(*nkw)++] = s;
	return 0;
}

int imap_flags_parse(const struct imap_arg *a, unsigned *flags_r,
		     const char **kw, size_t *nkw, size_t maxkw)
{
	const struct imap_arg *e;

	*flags_r = 0;
	*nkw = 0;
	if (a == NULL)
		return -1;
	if (a->type == IMAP_ARG_ATOM)
		return imap_flags_one(a->s, flags_r, kw, nkw, maxkw);
	if (a->type != IMAP_ARG_LIST)
		return -1;
	for (e = a->child; e != NULL; e = e->next)
		if (e->type != IMAP_ARG_ATOM ||
		    imap_flags_one(e->s, flags_r, kw, nkw, maxkw) < 0)
			return -1;
	return 0;
}
