/* smtp_xforward: the attributes of Postfix's XFORWARD command
 * (XFORWARD_README): which one a name is, and the value a server keeps
 * for it. Pure: no I/O, no allocation; the caller owns every buffer. */
#ifndef SMTP_XFORWARD_H
#define SMTP_XFORWARD_H

#include <stddef.h>

enum smtp_xforward_attr {
	SMTP_XFORWARD_NAME,      /* client host name */
	SMTP_XFORWARD_ADDR,      /* client address ("IPV6:" prefix removed) */
	SMTP_XFORWARD_HELO,      /* its HELO/EHLO argument */
	SMTP_XFORWARD_IDENT,     /* the upstream queue id */
	SMTP_XFORWARD_PROTO,     /* SMTP, ESMTP, ... */
	SMTP_XFORWARD_NKEPT,     /* the ones above are kept; below: not */
	SMTP_XFORWARD_PORT = SMTP_XFORWARD_NKEPT,
	SMTP_XFORWARD_SOURCE,
	SMTP_XFORWARD_UNKNOWN,
};

/* Values are at most this many bytes plus the NUL. */
#define SMTP_XFORWARD_VALUE_MAX 255

/* Which attribute name[0..len) is (case-insensitive). */
enum smtp_xforward_attr smtp_xforward_attr(const char *name, size_t len);

/* raw[0..len): the xtext value as sent (RFC 3461 §4 "+HH"). Writes the
 * value to keep into out (outsize bytes, at least
 * SMTP_XFORWARD_VALUE_MAX + 1), NUL-terminated: printable ASCII only,
 * with anything that would break a Received: comment or a log line
 * ("(", ")", "\", controls, NUL, 8-bit) replaced by "?". Returns 1: keep
 * out (possibly ""); 0: [UNAVAILABLE] or [TEMPUNAVAIL], forget the
 * attribute (out ""); -1: bad xtext, a value longer than the maximum, or
 * an ADDR that is only "IPV6:". */
int smtp_xforward_value(enum smtp_xforward_attr a, const char *raw,
                        size_t len, char *out, size_t outsize);

#endif
