/* pop3_cmd: the pure POP3 command parser (RFC 1939 §3, RFC 2449 §4,
 * RFC 5034, RFC 2595). Buffers in, a result code out; outputs point into
 * the caller's buffer; no I/O, no allocation. */
#ifndef POP3_CMD_H
#define POP3_CMD_H

#include <stddef.h>

/* RFC 2449 §4: a command line is at most 255 octets with its CRLF. An
 * AUTH initial response may be longer (RFC 5034 §4): callers pass their
 * own max. */
#define POP3_CMD_MAX_LINE 255
#define POP3_CMD_MAX_ARG  40     /* RFC 1939 §3 */

enum pop3_rc {
	POP3_OK = 0,
	POP3_NEED_MORE,          /* no line end yet, still under max */
	POP3_ERR_TOO_LONG,       /* no line end within max */
	POP3_ERR_SYNTAX,         /* known command, bad arguments */
	POP3_ERR_UNKNOWN         /* not a command we know */
};

enum pop3_cmd_id {
	POP3_CMD_USER, POP3_CMD_PASS, POP3_CMD_QUIT, POP3_CMD_STAT,
	POP3_CMD_LIST, POP3_CMD_RETR, POP3_CMD_DELE, POP3_CMD_NOOP,
	POP3_CMD_RSET, POP3_CMD_TOP, POP3_CMD_UIDL, POP3_CMD_CAPA,
	POP3_CMD_STLS, POP3_CMD_AUTH
};

struct pop3_cmd {
	enum pop3_cmd_id id;
	unsigned narg;
	const char *arg[2];      /* PASS: arg[0] is the rest of the line,
	                          * spaces included (RFC 1939 §7 note) */
	size_t arg_len[2];
};

/* Find the next line in buf[0..len): *linelen_r excludes the line end
 * (CRLF, or a lone LF, which POP3 clients do send), *used_r includes it.
 * max is the most bytes a line may take with its line end, so on POP3_OK
 * *linelen_r < max and *used_r <= max: a caller's buffer of max bytes
 * holds the line and a NUL. Once max bytes hold no LF the result is
 * POP3_ERR_TOO_LONG (never a wait without bound). Bytes past max are not
 * looked at, so any len may be passed. */
enum pop3_rc pop3_cmd_line(const char *buf, size_t len, size_t max,
                           size_t *linelen_r, size_t *used_r);

/* Parse one line (without its line end). */
enum pop3_rc pop3_cmd_parse(const char *line, size_t len, struct pop3_cmd *cmd);

/* A message number or line count: decimal digits only, fits in an
 * unsigned long below 2^31. Returns 0 or -1. */
int pop3_cmd_number(const char *s, size_t len, unsigned long *v_r);

#endif
