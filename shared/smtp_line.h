/* smtp_line: pure framing of SMTP input (RFC 5321): command lines that end
 * in CRLF only, and the DATA body reader (dot-unstuffing, end of data).
 * No I/O, no allocation; the session feeds bytes and owns every buffer. */
#ifndef SMTP_LINE_H
#define SMTP_LINE_H

#include <stddef.h>

enum smtp_rc {
	SMTP_OK = 0,
	SMTP_NEED_MORE,       /* feed more bytes */
	SMTP_ERR_TOO_LONG,    /* no line end within max bytes */
	SMTP_ERR_BARE_LF,     /* LF not preceded by CR */
	SMTP_ERR_BARE_CR,     /* CR not followed by LF */
	SMTP_ERR_UNKNOWN,     /* command not recognised (500) */
	SMTP_ERR_SYNTAX,      /* bad arguments (501) */
	SMTP_ERR_PARAM,       /* unknown/unsupported ESMTP parameter (555) */
};

/* RFC 5321 §2.3.8: a line ends in CRLF only; a bare LF or bare CR is
 * refused, not repaired (SMTP smuggling). max counts the CRLF (RFC 5321
 * §4.5.3.1.4: 512 for a command line). On SMTP_OK the line is
 * buf[0..*linelen_r) without CRLF and *used_r bytes (with CRLF) are used.
 * Once max bytes hold no line end it returns SMTP_ERR_TOO_LONG, it never
 * waits for a newline without limit. */
enum smtp_rc smtp_line_next(const char *buf, size_t len, size_t max,
                            size_t *linelen_r, size_t *used_r);

/* Resynchronise after SMTP_ERR_TOO_LONG: discard up to and including the
 * next LF. SMTP_OK when found (*used_r bytes to drop), else SMTP_NEED_MORE
 * with *used_r = len (drop them all and call again with more). */
enum smtp_rc smtp_line_skip(const char *buf, size_t len, size_t *used_r);

/* DATA body reader (RFC 5321 §4.1.1.4, §4.5.2). The end of data is
 * CRLF "." CRLF only; a leading "." of a line is removed. A bare LF or bare
 * CR never ends a line here, so the reader cannot be desynchronised by
 * "<LF>.<LF>" or "<LF>.<CRLF>" (SMTP smuggling); it is kept in the output
 * and flagged, and the session decides (smtpd_forbid_bare_newline). */
#define SMTP_LINE_DATA_BARE_LF 0x01
#define SMTP_LINE_DATA_BARE_CR 0x02

struct smtp_line_data {
	int state;      /* private */
	int flags;      /* SMTP_LINE_DATA_BARE_* seen so far */
	size_t lines;   /* complete lines (CRLF) so far */
};

void smtp_line_data_init(struct smtp_line_data *d);

/* Feed in[0..len). Message bytes (unstuffed, CRLF kept) go to out, which
 * must hold at least len bytes (output never exceeds input), or out = NULL
 * to discard them while keeping sync. Returns SMTP_OK when the final
 * CRLF.CRLF was consumed (*used_r counts through it; the bytes after it
 * are the next command), else SMTP_NEED_MORE with *used_r = len. The
 * terminating CRLF of the last line is part of the output, the "."CRLF is
 * not. */
enum smtp_rc smtp_line_data_feed(struct smtp_line_data *d, const char *in,
                                 size_t len, char *out, size_t *outlen_r,
                                 size_t *used_r);

#endif
