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

/* The session's command-line reader: smtp_line_next() plus the resync
 * after an over-long line, so that every step makes progress. bare_lf_ok
 * (Postfix smtpd_forbid_bare_newline = no): a bare LF ends the line. */
struct smtp_line_reader {
	int skipping;   /* private: dropping the rest of an over-long line */
	int bare_lf_ok;
};

void smtp_line_reader_init(struct smtp_line_reader *r, int bare_lf_ok);

/* Look at buf[0..len) (the caller passes at most max bytes, the start of
 * its input) and drop *used_r bytes afterwards, whatever the result:
 *   SMTP_OK            a line buf[0..*linelen_r), without its line end;
 *   SMTP_NEED_MORE     no complete line: wait for input once *used_r is 0
 *                      (while skipping, *used_r > 0: call again);
 *   SMTP_ERR_TOO_LONG  max bytes without a line end: answer 500 once; the
 *                      reader then skips through the next LF;
 *   SMTP_ERR_BARE_LF / SMTP_ERR_BARE_CR: refused, end the session.
 * Progress: with len > 0, *used_r is 0 only for SMTP_NEED_MORE with
 * len < max (a partial line) and for the bare LF/CR errors. */
enum smtp_rc smtp_line_read(struct smtp_line_reader *r, const char *buf,
                            size_t len, size_t max, size_t *linelen_r,
                            size_t *used_r);

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

/* Bytes of output a feed may produce beyond its own input: a "." CR at the
 * end of one feed is held back (it may be the final ".<CRLF>"); when the
 * next feed shows it is not, that CR comes out with the next feed's bytes.
 * The dropped dot pays for it, so over a whole body output never exceeds
 * input. */
#define SMTP_LINE_DATA_HELD 1

/* Feed in[0..len). Message bytes (unstuffed, CRLF kept) go to out, which
 * must hold len + SMTP_LINE_DATA_HELD bytes, or out = NULL to discard them
 * while keeping sync. Returns SMTP_OK when the final CRLF.CRLF was
 * consumed (*used_r counts through it; the bytes after it are the next
 * command), else SMTP_NEED_MORE with *used_r = len. With len > 0, *used_r
 * is never 0. The terminating CRLF of the last line is part of the output,
 * the "."CRLF is not. */
enum smtp_rc smtp_line_data_feed(struct smtp_line_data *d, const char *in,
                                 size_t len, char *out, size_t *outlen_r,
                                 size_t *used_r);

#endif
