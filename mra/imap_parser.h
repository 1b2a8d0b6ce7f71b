/* imap_parser: pure parser for IMAP4rev1 commands (RFC 3501 §9) with
 * literals {n} and non-synchronizing {n+} (RFC 7888). The caller owns the
 * buffer holding the command (lines and literal bytes); the parser writes
 * argument records into a caller-supplied array that point into it. */
#ifndef IMAP_PARSER_H
#define IMAP_PARSER_H

#include <stddef.h>
#include <stdint.h>

struct imap_parser_limits {
	size_t max_line;      /* bytes of one text line (between literals),
	                       * without its CRLF; a longer line is an error
	                       * however much of it is buffered */
	size_t max_literal;   /* bytes of one literal */
	unsigned max_depth;   /* nesting of parenthesised lists */
	size_t literal_gate;  /* 0: off. Else a literal whose data starts at
	                       * an offset >= literal_gate stops the parse
	                       * (NEED_MORE with need->literal) even when its
	                       * bytes are buffered, so that the caller judges
	                       * every literal, however the input arrived */
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
	size_t line_start;    /* offset where the unfinished line begins */
	size_t error_at;      /* IMAP_PARSE_ERROR: no line end lies between
	                       * here and the offending byte */
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

/* 1 when line[0..len) (a whole line with its LF) announces a
 * non-synchronizing literal "{n+}" (RFC 7888). */
int imap_parser_ends_nonsync(const char *line, size_t len);

/* One raw line (AUTHENTICATE continuation, IDLE's DONE). Returns 1 with
 * *linelen_r (without CRLF) and *used_r (with it), 0 when the line is not
 * complete yet, -1 when it is longer than max. A bare LF ends a line too
 * (clients send it after AUTHENTICATE). */
int imap_parser_line(const char *buf, size_t len, size_t max,
		     size_t *linelen_r, size_t *used_r);

/* ---- the command reader ----
 * What a session does with the bytes of the command state, as a pure
 * step function over the caller's input buffer: frame commands with the
 * parser above, judge every literal once when it is announced (refuse it
 * before a byte of it is read, hold it in memory, or stream an APPEND
 * message out of memory), and skip what is left of a bad line. The
 * caller acts on each event and steps again; the outcome for a given
 * input does not depend on how it was split into reads (fuzzed so), except
 * for the "+" continuation requests, which follow arrival by nature. */

struct imap_reader_policy {
	size_t max_line;         /* a text line, without its CRLF */
	size_t max_literal;      /* one literal held in memory */
	size_t max_command;      /* all the bytes of a command held in memory */
	uint64_t max_stream;     /* 0: none. Else an APPEND literal over
	                          * max_literal and up to this is streamed */
	uint64_t quota_left;     /* UINT64_MAX: none. A synchronizing APPEND
	                          * literal over it is refused [OVERQUOTA] */
};

enum imap_reader_ev {
	IMAP_RD_MORE,       /* wait for more bytes */
	IMAP_RD_COMMAND,    /* buf[0..used) is a command: nargs, tag, args
	                     * (as imap_parser_parse); stream_at: offset in buf
	                     * of the streamed literal's argument, 0: none */
	IMAP_RD_CONTINUE,   /* send "+ OK", step again */
	IMAP_RD_NO,         /* literal refused before its bytes: reply
	                     * "tag NO [code] text", drop used bytes */
	IMAP_RD_BAD,        /* bad command: reply "tag BAD text", drop used */
	IMAP_RD_FATAL,      /* cannot resynchronise (a refused {n+}): reply
	                     * "tag BAD text", then BYE and close */
	IMAP_RD_DROP,       /* inside a bad line: drop used bytes silently */
	IMAP_RD_STREAM,     /* an APPEND literal of literal_size bytes is
	                     * streamed: take buf[0..used) (the command so far)
	                     * out of the input and keep it aside; send "+ OK"
	                     * when cont */
	IMAP_RD_DATA,       /* buf[0..used) are bytes of the streamed literal:
	                     * write them out and drop them; when last, put the
	                     * kept bytes back in front of the input */
};

#define IMAP_READER_TAG 64

/* Zero it (memset) before the first step; the caller does not touch it. */
struct imap_reader {
	int mode;
	size_t vetted;           /* data offset of the last literal judged */
	size_t need;             /* parse again once this many bytes are in */
	size_t scanned;          /* looked at for a LF up to here */
	size_t line_start;       /* of the unfinished line */
	int parsed;              /* scanned/line_start are valid */
	uint64_t stream_left;
	size_t stream_at;
	enum imap_parse_err err;   /* of the line being skipped */
	size_t skip_from;          /* its end is not before this offset */
	char tag[IMAP_READER_TAG]; /* of the command refused or skipped */
};

struct imap_reader_out {
	size_t used;
	int nargs;               /* COMMAND: arguments after the tag */
	char *tag;               /* COMMAND: in buf; NO/BAD/FATAL: tagbuf */
	char tagbuf[IMAP_READER_TAG];
	size_t stream_at;        /* COMMAND */
	size_t literal_at;       /* CONTINUE, NO, STREAM: the literal's data */
	uint64_t literal_size;
	int nonsync;
	int cont;                /* STREAM: send "+ OK" */
	int last;                /* DATA: the literal is complete */
	const char *code;        /* NO: "TOOBIG" or "OVERQUOTA" */
	const char *text;        /* NO, BAD, FATAL: the reply text */
	enum imap_parse_err err; /* BAD, FATAL */
};

/* One step over buf[0..len), the input not yet dropped. The caller acts
 * on the event (dropping out->used bytes where it says so) and steps
 * again until IMAP_RD_MORE. While imap_reader_streaming(), only len is
 * read: buf, pol and args may be NULL. The caller may read r->need and
 * r->stream_at: the bytes the command holds so far. */
enum imap_reader_ev imap_reader_step(struct imap_reader *r,
				     const struct imap_reader_policy *pol,
				     char *buf, size_t len,
				     struct imap_arg *args, size_t max_args,
				     struct imap_reader_out *out);
/* 1 while the bytes are those of a streamed literal (IMAP_RD_DATA). */
int imap_reader_streaming(const struct imap_reader *r);

/* Top-level argument i (0-based), or NULL. */
struct imap_arg *imap_arg_nth(struct imap_arg *first, unsigned i);
/* 1 when arg is a string (atom, quoted or literal). */
int imap_arg_is_string(const struct imap_arg *a);
/* astring: atom, quoted or literal; nstring accepts NIL (returns NULL). */
const char *imap_arg_astring(const struct imap_arg *a);

/* Sequence sets (RFC 3501 §9 sequence-set). '*' is IMAP_SEQ_STAR: 0,
 * which no number can be (nz-number), so that 4294967295 stays a number
 * and not "the last message" (RFC 3501 §6.4.8). A range's ends are as
 * given (numbers ordered lo <= hi); the caller replaces '*' and orders
 * again. */
#define IMAP_SEQ_STAR 0u
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
