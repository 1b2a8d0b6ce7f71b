/* imap_list: the pure half of LIST and LSUB (RFC 3501 §6.3.8-9), with
 * LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and the SPECIAL-USE
 * options (RFC 6154): the command's arguments into a request, and which
 * of the user's mailboxes a request returns, with what attributes. No
 * I/O, no allocation; imap_cmd_mbox.c reads the store and writes. */
#ifndef IMAP_LIST_H
#define IMAP_LIST_H

#include <stddef.h>
#include "imap_parser.h"

#define IMAP_LIST_MAX_PATTERNS 16

/* selection options, RFC 5258 §3.1 and RFC 6154 §3 */
#define IMAP_LIST_SEL_SUBSCRIBED 0x01
#define IMAP_LIST_SEL_REMOTE     0x02
#define IMAP_LIST_SEL_RECURSIVE  0x04
#define IMAP_LIST_SEL_SPECIALUSE 0x08
/* return options, RFC 5258 §3.2, RFC 5819 §2 and RFC 6154 §5 */
#define IMAP_LIST_RET_SUBSCRIBED 0x01
#define IMAP_LIST_RET_CHILDREN   0x02
#define IMAP_LIST_RET_STATUS     0x04
#define IMAP_LIST_RET_SPECIALUSE 0x08

/* STATUS items (RFC 3501 §6.3.10; SIZE: RFC 8438), in reply order */
#define IMAP_STATUS_MESSAGES    0x01
#define IMAP_STATUS_RECENT      0x02
#define IMAP_STATUS_UIDNEXT     0x04
#define IMAP_STATUS_UIDVALIDITY 0x08
#define IMAP_STATUS_UNSEEN      0x10
#define IMAP_STATUS_SIZE        0x20
#define IMAP_STATUS_HIGHESTMODSEQ 0x40 /* RFC 7162 §3.1.6 */

struct imap_list_req {
	int lsub;
	int extended;          /* RFC 5258 syntax: options or a pattern list */
	unsigned sel;          /* IMAP_LIST_SEL_* */
	unsigned ret;          /* IMAP_LIST_RET_* */
	unsigned status;       /* IMAP_STATUS_* with IMAP_LIST_RET_STATUS */
	const struct imap_arg *ref;
	const struct imap_arg *pat[IMAP_LIST_MAX_PATTERNS];
	size_t npat;
};

/* LIST's (or, lsub=1, LSUB's) arguments after the command name into
 * *req (pointers into the arguments). 0, or -1 with a static reason for
 * a BAD: unknown options (RFC 5258 §3: refused, not ignored),
 * RECURSIVEMATCH without a base option, a misplaced RETURN. */
int imap_list_parse(const struct imap_arg *a, int lsub,
		    struct imap_list_req *req, const char **why_r);

/* A STATUS item list "(MESSAGES UIDNEXT ...)" into IMAP_STATUS_* bits.
 * 0, or -1 on an unknown item or an empty list. */
int imap_list_status_items(const struct imap_arg *list, unsigned *items_r);

/* Attributes of a mailbox and of what is sent for it. */
#define IMAP_LIST_A_NOSELECT      0x001
#define IMAP_LIST_A_NONEXISTENT   0x002
#define IMAP_LIST_A_HASCHILDREN   0x004
#define IMAP_LIST_A_HASNOCHILDREN 0x008
#define IMAP_LIST_A_SUBSCRIBED    0x010
#define IMAP_LIST_A_SENT          0x020
#define IMAP_LIST_A_DRAFTS        0x040
#define IMAP_LIST_A_TRASH         0x080
#define IMAP_LIST_A_JUNK          0x100
#define IMAP_LIST_A_CHILDINFO     0x200  /* ("CHILDINFO" ("SUBSCRIBED")) */
#define IMAP_LIST_A_SPECIAL (IMAP_LIST_A_SENT | IMAP_LIST_A_DRAFTS | \
			     IMAP_LIST_A_TRASH | IMAP_LIST_A_JUNK)

struct imap_list_entry {
	const char *name;      /* store name (UTF-8, "." separated) */
	unsigned attrs;        /* IMAP_LIST_A_*, of the mailbox */
	int match;             /* in: the name matches one of the patterns */
	int listed;            /* out: 1 when returned */
	unsigned out;          /* out: the attributes to send */
};

/* Which of e[0..n) req returns, and with what. Every name appears once;
 * subscribed names that do not exist are there with
 * NONEXISTENT|SUBSCRIBED, and so are (without SUBSCRIBED) their missing
 * parents; match says whether the name matches a pattern (joined with
 * the reference, RFC 3501 §6.3.8). sep is the hierarchy separator.
 * Children attributes are sent by LIST (RFC 3348 CHILDREN), never by
 * LSUB. Time O(n^2). */
void imap_list_select(const struct imap_list_req *req, char sep,
		      struct imap_list_entry *e, size_t n);

#endif
