/* mime: MIME structure of a message held in memory (RFC 5322 headers,
 * RFC 2045-2049 bodies), as a tree of parts with byte offsets, plus the
 * IMAP renderers (ENVELOPE, BODY, BODYSTRUCTURE: RFC 3501 §7.4.2), section
 * lookup for BODY[...] and decoders for SEARCH. No I/O. The tree borrows
 * the message bytes: they must outlive it. Lines may end in CRLF or LF. */
#ifndef MIME_H
#define MIME_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "err.h"

#define MIME_DEFAULT_MAX_DEPTH 20
#define MIME_DEFAULT_MAX_PARTS 1000

struct mime_limits {
	unsigned max_depth;      /* nesting of multipart/message; 0: default */
	unsigned max_parts;      /* parts in the whole tree; 0: default */
};

/* Part flags. */
#define MIME_PART_MULTIPART 0x01 /* children are the body parts */
#define MIME_PART_MESSAGE   0x02 /* message/rfc822 (or global): one child,
                                  * the encapsulated message */
#define MIME_PART_TRUNCATED 0x04 /* a limit stopped parsing below here:
                                  * served as an opaque leaf */
#define MIME_PART_IN_DIGEST 0x08 /* child of multipart/digest: default
                                  * type message/rfc822 (RFC 2046 §5.1.5) */

struct mime_part {
	int parent, child, next;  /* indexes into tree->parts; -1: none */
	unsigned nchild;
	unsigned depth;           /* 0 for the message itself */
	unsigned flags;           /* MIME_PART_* */
	size_t hdr_off, hdr_len;  /* header block, incl. the blank line */
	size_t body_off, body_len;
	size_t hdr_lines, body_lines;
};

struct mime_tree {
	const char *msg;          /* borrowed */
	size_t len;
	struct mime_part *parts;  /* parts[0]: the message */
	unsigned nparts;
};

/* Parse msg into a tree. A malformed message still yields a tree (MIME
 * is parsed leniently, as IMAP servers must serve whatever arrived);
 * limits make deeper structure opaque. Fails (-1, err) only when memory
 * runs out. */
int mime_parse(const char *msg, size_t len, const struct mime_limits *lim,
               struct mime_tree **tree_r, struct err *err);
void mime_tree_free(struct mime_tree *t);

/* IMAP renderers: append the parenthesised list (no leading keyword) to
 * out. Return 0, or -1 when out's bound is reached. */
int mime_envelope(const struct mime_tree *t, int part, struct buf *out);
int mime_bodystructure(const struct mime_tree *t, int extended, struct buf *out);

/* BODY[section] lookup. spec is the text between the brackets, e.g. "",
 * "TEXT", "1.2", "1.2.HEADER", "2.MIME", "3.HEADER.FIELDS (From To)".
 * On MIME_SEC_OK the bytes to serve are msg[off, off+len) unless
 * fields_r is set: then they are the header block msg[off, off+len)
 * filtered by mime_header_fields(). A part number that does not exist
 * gives MIME_SEC_OK with len 0 (served as ""). */
enum mime_sec_rc { MIME_SEC_OK = 0, MIME_SEC_BAD = -1 };
struct mime_sect {
	size_t off, len;
	int fields;                /* 0, 1: HEADER.FIELDS, 2: HEADER.FIELDS.NOT */
	const char *list;          /* points into spec: "From To" (no parens) */
	size_t list_len;
};
enum mime_sec_rc mime_section(const struct mime_tree *t, const char *spec,
                              size_t spec_len, struct mime_sect *s_r);
/* Append the fields of header block hdr named (or, not=1, not named) in
 * the space-separated list, then the blank line (RFC 3501 §6.4.5). */
int mime_header_fields(const char *hdr, size_t hdr_len, const char *list,
                       size_t list_len, int not, struct buf *out);
/* Convenience: resolve spec and append the section's bytes to out. */
int mime_section_fetch(const struct mime_tree *t, const char *spec,
                       size_t spec_len, struct buf *out);

/* First header field named name in hdr, unfolded (CRLF + WSP -> WSP),
 * leading/trailing white space removed, appended to out. Returns 1 if
 * found, 0 if not, -1 when out is full. */
int mime_header_get(const char *hdr, size_t hdr_len, const char *name,
                    struct buf *out);

/* Walk header fields: *pos starts at 0. Returns 1 with name/value
 * (raw, folded, value without the leading colon) or 0 at the end. */
int mime_header_next(const char *hdr, size_t hdr_len, size_t *pos,
                     const char **name_r, size_t *name_len_r,
                     const char **val_r, size_t *val_len_r);

/* RFC 2047: decode encoded words in a header value to UTF-8 (unknown
 * charsets keep the raw word). Unfolds. Returns 0 or -1 (out full). */
int mime_decode_header(const char *in, size_t len, struct buf *out);

/* SEARCH FROM/TO/CC/BCC (RFC 3501 §6.4.4) match the addresses, not the
 * raw field: the address list in v as text with comments and routes
 * dropped, quotes resolved, each mailbox "Name <local@domain>" (the name
 * RFC 2047-decoded to UTF-8; a bare addr-spec's comment is its name) or
 * "local@domain", a group "name: a, b;", all joined by ", ". Appended
 * to out. Returns 0, or -1 when out is full (out unchanged). */
int mime_search_addr(const char *v, size_t len, struct buf *out);

/* Decode a body by Content-Transfer-Encoding ("base64",
 * "quoted-printable", anything else: as is). Returns 0 or -1. */
int mime_decode_body(const char *in, size_t len, const char *cte,
                     struct buf *out);

/* SEARCH TEXT/BODY helper: the decoded (CTE), UTF-8 converted text of
 * every text/ * and message/ * leaf under part (0: whole message), joined
 * by newlines. Returns 0 or -1. */
int mime_body_text(const struct mime_tree *t, int part, struct buf *out);

/* Case-insensitive (ASCII and simple UTF-8 byte) substring test, as
 * SEARCH needs (RFC 3501 §6.4.4). */
int mime_contains(const char *hay, size_t hay_len, const char *needle,
                  size_t needle_len);

#endif
