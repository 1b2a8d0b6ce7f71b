/* smtp_reply: pure parser for SMTP server replies as a client reads them:
 * single and multi-line replies (RFC 5321 §4.2), their RFC 3463 enhanced
 * status codes and EHLO keywords. No I/O, no allocation: outputs point
 * into the caller's buffer. */
#ifndef SMTP_REPLY_H
#define SMTP_REPLY_H

#include <stddef.h>

enum smtp_reply_rc {
	SMTP_REPLY_OK,
	SMTP_REPLY_NEED_MORE,      /* the last line has not arrived yet */
	SMTP_REPLY_ERR_TOO_LONG,   /* no complete reply within max bytes */
	SMTP_REPLY_ERR_SYNTAX      /* not a reply: bad code, mixed codes... */
};

struct smtp_reply {
	int code;                  /* 250 */
	int enh_class, enh_subject, enh_detail;  /* 2.1.5, or 0.0.0 if none */
	const char *p;             /* the whole reply, all lines with CRLF */
	size_t len;
	size_t nlines;
	const char *last;          /* text of the last line (after "250 " and */
	size_t lastlen;            /* the enhanced code), no CRLF */
};

/* Parse one complete reply at the start of buf. max bounds the reply
 * (all its lines). On SMTP_REPLY_OK, *used_r is its length. Lines end in
 * CRLF; a bare LF is accepted as a line end, as servers in the wild send
 * it and a reply cannot smuggle anything into our own output. */
enum smtp_reply_rc smtp_reply_parse(const char *buf, size_t len, size_t max,
    struct smtp_reply *r, size_t *used_r);

/* Iterate over the lines of a parsed reply: *pos starts at 0. Returns 1
 * with the line's text (after the code and the separator, CRLF removed),
 * 0 after the last line. */
int smtp_reply_line(const struct smtp_reply *r, size_t *pos,
    const char **text_r, size_t *len_r);

/* RFC 3463 §2: class "." subject "." detail at the start of text, then
 * SP or end. Returns the bytes used (incl. one SP), 0 if there is none. */
size_t smtp_reply_enhanced(const char *text, size_t len, int *cls,
    int *subject, int *detail);

/* RFC 5321 §4.1.1.1: the lines after the first of an EHLO reply are
 * "keyword [params]". Returns 1 when kw (case-insensitive) is offered,
 * with its parameters (may be empty). */
int smtp_reply_ehlo_has(const struct smtp_reply *r, const char *kw,
    const char **params_r, size_t *plen_r);

#endif
