/* sendmail_msg: the pure parts of the sendmail(1) program (cmd_sendmail.c):
 * the message read on stdin made into SMTP message data, the header fields
 * -t takes recipients from, and the local spool file that keeps a message
 * while the submission server is down. No I/O; out buffers are the
 * caller's. */
#ifndef SENDMAIL_MSG_H
#define SENDMAIL_MSG_H

#include <stddef.h>
#include "buf.h"

/* in[0..len) with LF or CRLF line ends -> CRLF lines appended to out (a
 * last line without a newline gets one). dot_ends (sendmail without -i or
 * -oi): a line holding only "." ends the message there, as sendmail(8)
 * reads standard input. Returns 0, or -1 when out is full. */
int sendmail_msg_crlf(const char *in, size_t len, int dot_ends,
		      struct buf *out);

/* The header section of CRLF data: the offset of the empty line that ends
 * it (len when there is none). A message whose first line is no header
 * field (no "name:" of printable ASCII) has an empty header section: 0. */
size_t sendmail_msg_header_end(const char *data, size_t len);

struct sendmail_field {
	const char *name;   size_t name_len;     /* points into data */
	const char *value;  size_t value_len;    /* folded, CRLF kept inside */
	size_t start, end;  /* the whole field, its last CRLF included */
};

/* Next header field at *pos (start at 0) before hdr_end: 1 with f filled
 * and *pos moved past it, 0 at the end. Folded lines (RFC 5322 §2.2.3)
 * belong to their field. */
int sendmail_msg_field_next(const char *data, size_t hdr_end, size_t *pos,
			    struct sendmail_field *f);

/* 1 when the field's name is name (ASCII case-insensitive). */
int sendmail_msg_field_is(const struct sendmail_field *f, const char *name);

/* An envelope address from the command line or the spool: 1 when it is
 * safe to put in a spool line and an SMTP command (no white space, no
 * control characters, no <>, not empty, at most 998 bytes). */
int sendmail_msg_addr_ok(const char *a, size_t len);

/* Spool file:
 *   "MAILPAIR-SPOOL 1\n" "F sender\n" "R rcpt\n"... "\n" then the data.
 * sendmail_spool_head appends the head to out (0 or -1 when full or an
 * address is not sendmail_msg_addr_ok; sender "" is the null sender). */
int sendmail_spool_head(struct buf *out, const char *sender,
			char *const *rcpts, size_t nrcpt);

enum sendmail_spool_item { SENDMAIL_SPOOL_SENDER, SENDMAIL_SPOOL_RCPT };

/* Reads the head one item at a time: *pos starts at 0. 1 with *kind and
 * the value (pointing into buf) filled; 0 at the end of the head, *pos
 * then the offset of the data; -1 when the file is not a spool file or a
 * line is malformed (*pos unchanged). */
int sendmail_spool_next(const char *buf, size_t len, size_t *pos,
			enum sendmail_spool_item *kind, const char **val,
			size_t *val_len);

#endif
