/* milter_edit: the message as milters see it and as they change it, pure
 * (no I/O): walking the header section of a CRLF message, a header's value
 * as the milter protocol sends it (CRLF folded lines joined by LF), and
 * applying header and body modifications to make the new message. The
 * caller (milter.c) owns the edit list and the result. */
#ifndef MILTER_EDIT_H
#define MILTER_EDIT_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

/* One header field in a message: [p, p+len) is the whole field with its
 * final CRLF; the name is [p, p+name_len); the value follows the colon. */
struct milter_hdr {
	const char *p;
	size_t len;
	size_t name_len;
	const char *value;     /* after the colon (leading space kept) */
	size_t value_len;      /* up to, not with, the final CRLF */
};

/* The next header field at msg[*off]: 1 and *h, *off past it; 0 at the
 * end of the header section, *off then at the body (past the empty line;
 * a line that is not a field also ends the section, RFC 5322 §2.1, and
 * then starts the body). */
int milter_hdr_next(const char *msg, size_t len, size_t *off,
                    struct milter_hdr *h);

/* The value as milters get it: CRLF inside it becomes LF (Sendmail and
 * Postfix keep lines LF-ended), one leading space dropped unless
 * leadspc. Into out (NUL-ended); -1 when out is full. */
int milter_hdr_value(const struct milter_hdr *h, int leadspc, struct buf *out);

/* Header modifications, in the order milters sent them. */
enum milter_edit_op { MILTER_E_ADD, MILTER_E_INSERT, MILTER_E_CHANGE };
struct milter_edit {
	enum milter_edit_op op;
	uint32_t index;        /* INSERT: position (0: first); CHANGE: the
	                          index-th field of that name, from 1 */
	char *name;
	char *value;           /* as the milter sent it: LF folding; "" with
	                          CHANGE deletes */
	int leadspc;           /* the milter negotiated HDR_LEADSPC: the
	                          value carries its own leading space */
};

/* The new message: the header section of msg with edits applied, then the
 * body: newbody when not NULL (its line ends made CRLF), else msg's own.
 * Sendmail's rules: CHANGE past the last field of that name adds it at
 * the end (a delete of one that is not there does nothing); INSERT past
 * the end appends. Values get CRLF line ends. out is appended to; -1 when
 * it is full (out->max) or out of memory. */
int milter_edit_apply(const char *msg, size_t len,
                      const struct milter_edit *edits, size_t nedits,
                      const char *newbody, size_t newbody_len,
                      struct buf *out);

#endif
