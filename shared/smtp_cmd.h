/* smtp_cmd: pure parser of one SMTP command line (RFC 5321 §4.1 and the
 * ESMTP extensions we offer) into a verb and its arguments. Outputs point
 * into the caller's line; nothing is allocated. The path inside <> is
 * returned raw: addr_parse_path() judges it. */
#ifndef SMTP_CMD_H
#define SMTP_CMD_H

#include <stddef.h>
#include <stdint.h>
#include "smtp_line.h"

enum smtp_verb {
	SMTP_CMD_NONE = 0,
	SMTP_CMD_EHLO, SMTP_CMD_HELO, SMTP_CMD_MAIL, SMTP_CMD_RCPT,
	SMTP_CMD_DATA, SMTP_CMD_BDAT, SMTP_CMD_RSET, SMTP_CMD_NOOP,
	SMTP_CMD_QUIT, SMTP_CMD_HELP, SMTP_CMD_VRFY, SMTP_CMD_EXPN,
	SMTP_CMD_STARTTLS, SMTP_CMD_AUTH, SMTP_CMD_XFORWARD,
	/* recognised so that they get a clean refusal, not "unknown" */
	SMTP_CMD_ETRN, SMTP_CMD_TURN,
	/* HTTP verbs: a proxy abuse attempt, answered and closed (Postfix) */
	SMTP_CMD_HTTP,
};

/* MAIL BODY= (RFC 6152, RFC 3030) */
#define SMTP_BODY_7BIT        1
#define SMTP_BODY_8BITMIME    2
#define SMTP_BODY_BINARYMIME  3
/* MAIL RET= (RFC 3461 §4.3) */
#define SMTP_RET_FULL 1
#define SMTP_RET_HDRS 2
/* RCPT NOTIFY= (RFC 3461 §4.1) */
#define SMTP_NOTIFY_NEVER   0x01
#define SMTP_NOTIFY_SUCCESS 0x02
#define SMTP_NOTIFY_FAILURE 0x04
#define SMTP_NOTIFY_DELAY   0x08

#define SMTP_CMD_MAX_XATTR 8

struct smtp_cmd_xattr {
	const char *name, *value;    /* XFORWARD NAME=value, value raw xtext */
	size_t name_len, value_len;
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg;             /* after the verb, spaces trimmed */
	size_t arg_len;
	/* MAIL / RCPT: the path between < and >, without them */
	const char *path;
	size_t path_len;
	/* MAIL parameters */
	int has_size;
	uint64_t size;
	int body;                    /* SMTP_BODY_* or 0 */
	int smtputf8;
	int ret;                     /* SMTP_RET_* or 0 */
	const char *auth, *envid;    /* raw xtext (or NULL) */
	size_t auth_len, envid_len;
	/* RCPT parameters */
	int notify;                  /* SMTP_NOTIFY_* or 0 */
	const char *orcpt;           /* raw "addr-type;xtext" (or NULL) */
	size_t orcpt_len;
	/* BDAT */
	uint64_t chunk_size;
	int last;
	/* AUTH mech [initial-response] */
	const char *mech, *initial;
	size_t mech_len, initial_len;
	/* XFORWARD */
	struct smtp_cmd_xattr xattr[SMTP_CMD_MAX_XATTR];
	int nxattr;
	/* on an error: static reply text with enhanced status code */
	const char *why;
};

/* line: one command without CRLF. Returns SMTP_OK, SMTP_ERR_UNKNOWN,
 * SMTP_ERR_SYNTAX or SMTP_ERR_PARAM; cmd->why explains an error (e.g.
 * "5.5.4 Syntax: MAIL FROM:<address>"). */
enum smtp_rc smtp_cmd_parse(const char *line, size_t len,
                            struct smtp_cmd *cmd);

/* Decode RFC 3461 §4 xtext ("+HH" escapes) into out (outcap bytes, NUL
 * terminated). Returns the decoded length or -1 on bad syntax/space. */
long smtp_cmd_xtext_decode(const char *in, size_t len, char *out,
                           size_t outcap);

/* "EHLO", "MAIL", ... for logs and counters. */
const char *smtp_cmd_name(enum smtp_verb verb);

#endif
