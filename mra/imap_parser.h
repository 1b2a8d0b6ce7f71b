/* imap_parser: pure parser for IMAP4rev1 commands (RFC 3501 §9) with
 * literals {n} and non-synchronizing {n+} (RFC 7888). The caller owns the
 * buffer holding the command (lines and literal bytes); the parser writes
 * argument records into a caller-supplied array that point into it. */
#ifndef IMAP_PARSER_H
#define IMAP_PARSER_H

#include <stddef.h>
#include <stdint.h>

struct imap_parser_limits {
	size_t max_line;      /* bytes of one text line (between literals) */
	size_t max_literal;   /* bytes of one literal */
	unsigned max_depth;   /* nesting of parenthesised lists */
};

enum imap_arg_type {
	IMAP_ARG_ATOM,        /* also NIL, numbers, flags, BODY[...]<..> */
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL,
	IMAP_ARG_LIST,
};

struct imap_arg {
	enum imap_arg_type type;
	char *s;              /* NUL-terminated after a complete parse */
	size_t len;           /* string length; for a list, child count */
	struct imap_arg *child;  /* first element of a list, or NULL */
	struct imap_arg *next;   /* next sibling, or NULL */
};

enum imap_parse_err {
	IMAP_PERR_NONE,
	IMAP_PERR_SYNTAX,
	IMAP_PERR_NO_TAG,
	IMAP_PERR_LINE_TOO_LONG,
	IMAP_PERR_LITERAL_TOO_BIG,
	IMAP_PERR_TOO_DEEP,
	IMAP_PERR_TOO_MANY_ARGS,
	IMAP_PERR_BARE_LF,
	IMAP_PERR_NUL,
};

/* What the parser is waiting for when it returns IMAP_PARSE_NEED_MORE. */
struct imap_parse_need {
	int literal;          /* 1: a literal's bytes are awaited */
	int nonsync;          /* 1: {n+}, the client sends without "+" */
	size_t literal_size;
	size_t literal_at;    /* offset of the literal's first byte */
};

#define IMAP_PARSE_NEED_MORE (-2)
#define IMAP_PARSE_ERROR     (-1)

/* Parse one command from buf[0..len). Returns the number of arguments
 * after the tag (>= 0) once the whole command with its CRLF is present;
 * args[0] is then the command name and *tag_r points at the NUL-terminated
 * tag. Returns IMAP_PARSE_NEED_MORE with *need_r filled when more bytes are
 * needed, or IMAP_PARSE_ERROR with *err_r set. *used_r is the length of
 * the command including its final CRLF (on an error, the length up to and
 * including the CRLF of the offending line if present, else 0).
 * Quoted strings are unescaped and all strings are NUL-terminated in
 * place, only when the result is complete. args[0] is the first
 * top-level argument; siblings are linked by next, list elements hang off
 * child. On an error, need_r->nonsync is 1 when the offending line ended
 * in a {n+} literal whose bytes the client sends anyway (RFC 7888 §4):
 * the session then cannot resynchronise and closes. */
int imap_parser_parse(const struct imap_parser_limits *lim, char *buf,
		      size_t len, char **tag_r, struct imap_arg *args,
		      size_t max_args, size_t *used_r,
		      struct imap_parse_need *need_r,
		      enum imap_parse_err *err_r);

const char *imap_parser_strerror(enum imap_parse_err e);

/* One raw line (AUTHENTICATE continuation, IDLE's DONE). Returns 1 with
 * *linelen_r (without CRLF) and *used_r (with it), 0 when the line is not
 * complete yet, -1 when it is longer than max. A bare LF ends a line too
 * (clients send it after AUTHENTICATE). */
int imap_parser_line(const char *buf, size_t len, size_t max,
		     size_t *linelen_r, size_t *used_r);

/* Top-level argument i (0-based), or NULL. */
struct imap_arg *imap_arg_nth(struct imap_arg *first, unsigned i);
/* 1 when arg is a string (atom, quoted or literal). */
int imap_arg_is_string(const struct imap_arg *a);
/* astring: atom, quoted or literal; nstring accepts NIL (returns NULL). */
const char *imap_arg_astring(const struct imap_arg *a);

/* Sequence sets (RFC 3501 §9 sequence-set). '*' is IMAP_SEQ_STAR; ranges
 * are ordered lo <= hi after the caller replaces '*'. */
#define IMAP_SEQ_STAR UINT32_MAX
struct imap_seq_range {
	uint32_t lo, hi;
};
/* Returns the number of ranges (>= 1) or -1 on a syntax error or more
 * than max ranges. 0 is not a valid number. "$" (RFC 5182) is refused. */
int imap_seqset_parse(const char *s, struct imap_seq_range *out,
		      size_t max);

/* Parse a decimal number < 2^32 (no sign, no leading junk). */
int imap_parser_number(const char *s, size_t len, uint32_t *n_r);

#endif
