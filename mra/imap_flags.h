/* imap_flags: IMAP message flags on the wire (RFC 3501 §2.3.2, §9
 * flag-list): the writer of a FLAGS list and the parser of a STORE or
 * APPEND flag list. Pure. */
#ifndef IMAP_FLAGS_H
#define IMAP_FLAGS_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "imap_parser.h"

/* RFC 3501 §9 atom: may stand unquoted in a flag list. 1 or 0. */
int imap_flags_is_atom(const char *s);

/* "(\Seen ... kw ...)" for MSTORE_F_* flags (with \Recent) and keyword
 * bits (kwnames[i] names bit i; NULL or non-atom names are left out).
 * Whole or not at all: -1 leaves out as it was. */
int imap_flags_put(struct buf *out, const char *const *kwnames,
		   unsigned flags, uint32_t keywords);

/* FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6, §7.1): "* FLAGS (...)\r\n
 * * OK [PERMANENTFLAGS (...)] ...". kw_mask: the keyword bits to list.
 * perm: what PERMANENTFLAGS says. Whole or not at all. */
enum imap_flags_perm {
	IMAP_FLAGS_PERM_NONE,        /* read-only: () */
	IMAP_FLAGS_PERM_FIXED,       /* the flags, no new keywords */
	IMAP_FLAGS_PERM_CREATE,      /* the flags and \* */
};
int imap_flags_put_announce(struct buf *out, const char *const *kwnames,
			    uint32_t kw_mask, enum imap_flags_perm perm);

/* A flag list (or a single flag) into system flags and keyword names
 * (borrowed from the arguments, at most maxkw). \Recent is accepted and
 * ignored (it cannot be stored). 0, or -1 on bad syntax or too many. */
int imap_flags_parse(const struct imap_arg *a, unsigned *flags_r,
		     const char **kw, size_t *nkw, size_t maxkw);

#endif
