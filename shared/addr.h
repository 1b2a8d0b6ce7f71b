/* addr: RFC 5321 mail addresses. A pure parser of the <path> argument of
 * MAIL FROM / RCPT TO and of bare addresses (config, maps, command line),
 * plus the canonical text form and recipient_delimiter splitting. No I/O,
 * no allocation: results go into the caller's struct addr. */
#ifndef ADDR_H
#define ADDR_H

#include <stddef.h>

/* RFC 5321 §4.5.3.1.1 sets 64 octets for the local part, but §4.5.3.1
 * asks for no limits where possible; we allow 256 (as written, quotes
 * included). §4.5.3.1.2: a domain is at most 255 octets. */
#define ADDR_LOCAL_MAX  256
#define ADDR_DOMAIN_MAX 255
#define ADDR_TEXT_MAX   (ADDR_LOCAL_MAX * 2 + 2 + 1 + ADDR_DOMAIN_MAX + 1) /* addr_format output incl. NUL */

/* flags */
#define ADDR_NULL_OK        0x01  /* <> allowed (MAIL FROM) */
#define ADDR_UTF8           0x02  /* SMTPUTF8 given: UTF-8 in local part and domain (RFC 6531 §3.3) */
#define ADDR_RELAY_CHARS_OK 0x04  /* allow % and ! in the local part */
#define ADDR_POSTMASTER_OK  0x08  /* <postmaster> without domain (RCPT TO, RFC 5321 §4.1.1.3) */
#define ADDR_NO_DOMAIN_OK   0x10  /* a bare local part is fine (addr_parse_plain of a user name) */

enum addr_rc {
	ADDR_OK = 0,
	ADDR_ERR_SYNTAX,     /* not <path>, missing >, bad local part */
	ADDR_ERR_DOMAIN,     /* bad domain or address literal */
	ADDR_ERR_TOO_LONG,   /* local part or domain over the limits above */
	ADDR_ERR_NULL,       /* <> without ADDR_NULL_OK */
	ADDR_ERR_ROUTE,      /* source route <@a,@b:u@d> (RFC 5321 §4.1.1.3 MAY ignore; we refuse) */
	ADDR_ERR_RELAY_CHAR, /* % or ! in the local part */
	ADDR_ERR_8BIT,       /* non-ASCII byte without ADDR_UTF8 */
	ADDR_ERR_UTF8,       /* invalid UTF-8 (with ADDR_UTF8) */
	ADDR_ERR_NO_DOMAIN,  /* local part only */
};

struct addr {
	int is_null;                      /* <> */
	int literal;                      /* domain is an address literal [..] */
	char local[ADDR_LOCAL_MAX + 1];   /* unquoted: quotes and quoted-pairs resolved */
	char domain[ADDR_DOMAIN_MAX + 1]; /* ASCII letters folded to lower case; "" for <> and bare local parts */
};

/* s points at '<' (after "MAIL FROM:" / "RCPT TO:"). On ADDR_OK, *used_r
 * is the number of bytes up to and including '>'; the rest (parameters)
 * is the caller's. Other results leave *a unspecified. */
enum addr_rc addr_parse_path(const char *s, size_t len, unsigned flags,
			     struct addr *a, size_t *used_r);
/* A bare address "local@domain" that must fill all len bytes. */
enum addr_rc addr_parse_plain(const char *s, size_t len, unsigned flags,
			      struct addr *a);
/* Text for a result code ("source route not allowed", ...). */
const char *addr_rc_str(enum addr_rc rc);

/* Canonical "local@domain" (no brackets), the local part quoted only when
 * it is not a dot-atom; "" for <>. Returns the length, or -1 if it does
 * not fit in n bytes (out is then ""). */
int addr_format(const struct addr *a, char *out, size_t n);

/* recipient_delimiter: split local at the first of the delims characters
 * ("+" or a set like "+-"). A delimiter at the very start does not split.
 * Writes the part before it to base and points *ext_r just after it
 * (into local). Returns 1 split, 0 no extension (base = local,
 * *ext_r = NULL), -1 base too small. */
int addr_split_ext(const char *local, const char *delims, char *base,
		   size_t n, const char **ext_r);

#endif
