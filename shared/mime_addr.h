/* mime_addr: RFC 5322 §3.4 address lists (and the obsolete forms of §4.4)
 * read one item at a time: a mailbox, the start of a group or its end.
 * shared/mime builds IMAP ENVELOPE address structures (RFC 3501 §7.4.2)
 * and the SEARCH FROM/TO/CC/BCC text from it. Pure: no I/O; the parts
 * are copied, decoded, into the caller's struct mime_addr. */
#ifndef MIME_ADDR_H
#define MIME_ADDR_H

#include <stddef.h>
#include "buf.h"

enum mime_addr_kind {
	MIME_ADDR_MAILBOX,      /* name, route, local, domain */
	MIME_ADDR_GROUP_START,  /* name: the group's display name */
	MIME_ADDR_GROUP_END,
};

struct mime_addr {
	enum mime_addr_kind kind;
	/* Display name as sent: quotes and quoted-pairs resolved, words
	 * joined by one space, RFC 2047 encoded words kept (RFC 3501
	 * §7.4.2 hands them to the client as they are). For a bare
	 * addr-spec, its last comment ("user@host (Real Name)"). */
	struct buf name;
	struct buf route;    /* obs-route without the colon: "@a,@b" */
	struct buf local;    /* local part, unquoted; empty: none */
	struct buf domain;   /* domain, "[literal]" kept; empty: none */
	struct buf comment;  /* scratch: the last comment seen */
};

struct mime_addr_parser {
	const char *p, *end;
	int in_group;
};

void mime_addr_init(struct mime_addr *a);
void mime_addr_free(struct mime_addr *a);
void mime_addr_parser_init(struct mime_addr_parser *ap, const char *v,
                           size_t len);

/* Next item of the list (a header field's value, folded or not): 1 with
 * *a filled, 0 at the end, -1 when memory ran out. Anything that is not
 * an address is skipped; a group left open is closed at the end. Each
 * call but the closing one consumes input: a list of n bytes takes at
 * most n + 2 calls. */
int mime_addr_next(struct mime_addr_parser *ap, struct mime_addr *a);

#endif
