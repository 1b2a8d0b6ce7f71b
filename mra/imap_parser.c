/* imap_parser: IMAP command syntax (RFC 3501 §9, RFC 7888 literals).
 * Pure: (buffer, length, limits) in, argument records pointing into the
 * buffer out. The whole command is re-scanned on each call; the command
 * reader at the end (imap_reader_step) calls it only when a line has
 * ended or a literal's bytes are in, and decides on each literal once. */
#include <string.h>
#include <strings.h>
#include "imap_parser.h"

#define IMAP_PARSER_STACK 64

struct imap_parser_st {
	const struct imap_parser_limits *lim;
	char *buf;
	size_t len, pos, line_start;
	size_t end;          /* len, or the end of the longest line allowed */
	struct imap_arg *args;
	size_t max_args, nargs;
	unsigned depth, top;
	struct imap_arg *parent[IMAP_PARSER_STACK];
	struct imap_arg **tail[IMAP_PARSER_STACK];
	struct imap_parse_need *need;
	enum imap_parse_err err;
};

enum imap_parser_step { IMAP_STEP_OK, IMAP_STEP_MORE, IMAP_STEP_ERR,
	IMAP_STEP_EOL };

static int imap_parser_is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c == 0x7f)
		return 0;
	return c != '(' && c != ')' && c != '"' && c != '{';
}

static enum imap_parser_step imap_parser_fail(struct imap_parser_st *st,
					      enum imap_parse_err e)
{
	st->err = e;
	return IMAP_STEP_ERR;
}

/* A text line is scanned only up to max_line bytes plus its CRLF, so a
 * verdict never depends on how much of a long line happens to be
 * buffered (fed whole or a byte at a time, the same error). */
static void imap_parser_line_begin(struct imap_parser_st *st, size_t at)
{
	size_t room = st->lim->max_line + 2;

	st->line_start = at;
	st->end = st->len - at > room ? at + room : st->len;
}

/* At the end of what may be scanned without a line end: wait, unless the
 * line is already over its limit (never wait for a newline without
 * bound). */
static enum imap_parser_step imap_parser_more(struct imap_parser_st *st)
{
	if (st->end < st->len ||
	    st->end - st->line_start > st->lim->max_line + 1)
		return imap_parser_fail(st, IMAP_PERR_LINE_TOO_LONG);
	return IMAP_STEP_MORE;
}

/* A line ends at eol (its CR or LF): its text must fit max_line. */
static int imap_parser_line_ok(struct imap_parser_st *st, size_t eol)
{
	return eol - st->line_start <= st->lim->max_line;
}

static struct imap_arg *imap_parser_add(struct imap_parser_st *st,
					enum imap_arg_type t, char *s,
					size_t len)
{
	struct imap_arg *a;

	if (st->nargs >= st->max_args)
		return NULL;
	a = &st->args[st->nargs++];
	a->type = t;
	a->s = s;
	a->len = len;
	a->child = NULL;
	a->next = NULL;
	*st->tail[st->depth] = a;
	st->tail[st->depth] = &a->next;
	if (st->depth > 0)
		st->parent[st->depth]->len++;
	else
		st->top++;
	return a;
}

static enum imap_parser_step imap_parser_quoted(struct imap_parser_st *st)
{
	size_t i = st->pos + 1;

	while (i < st->end) {
		unsigned char c = (unsigned char)st->buf[i];

		if (c == '"') {
			if (imap_parser_add(st, IMAP_ARG_QUOTED,
					    st->buf + st->pos + 1,
					    i - st->pos - 1) == NULL)
				return imap_parser_fail(st,
						IMAP_PERR_TOO_MANY_ARGS);
			st->pos = i + 1;
			return IMAP_STEP_OK;
		}
		if (c == '\r' || c == '\n')
			return imap_parser_fail(st, IMAP_PERR_SYNTAX);
		if (c == '\0')
			return imap_parser_fail(st, IMAP_PERR_NUL);
		if (c == '\\') {
			/* RFC 3501 §9 quoted-specials: only \" and \\ */
			if (i + 1 >= st->end)
				break;
			if (st->buf[i + 1] != '"' && st->buf[i + 1] != '\\')
				return imap_parser_fail(st, IMAP_PERR_SYNTAX);
			i++;
		}
		i++;
	}
	return imap_parser_more(st);
}

static enum imap_parser_step imap_parser_literal(struct imap_parser_st *st)
{
	size_t i = st->pos + 1, size = 0, at, eol;
	int digits = 0, nonsync = 0;

	while (i < st->end && st->buf[i] >= '0' && st->buf[i] <= '9') {
		if (size > (SIZE_MAX - 9) / 10 || digits >= 19)
			return imap_parser_fail(st,
						IMAP_PERR_LITERAL_TOO_BIG);
		size = size * 10 + (size_t)(st->buf[i] - '0');
		digits++;
		i++;
	}
	if (i < st->end && st->buf[i] == '+') {
		nonsync = 1;
		i++;
	}
	if (i >= st->end)
		return imap_parser_more(st);
	if (st->buf[i] != '}' || digits == 0)
		return imap_parser_fail(st, IMAP_PERR_SYNTAX);
	i++;
	eol = i;
	if (i < st->end && st->buf[i] == '\r')
		i++;
	if (i >= st->end)
		return imap_parser_more(st);
	if (st->buf[i] != '\n')
		return imap_parser_fail(st, IMAP_PERR_SYNTAX);
	if (!imap_parser_line_ok(st, eol))
		return imap_parser_fail(st, IMAP_PERR_LINE_TOO_LONG);
	at = i + 1;
	st->need->nonsync = nonsync;
	/* no room for it: refused now, not after its bytes were taken */
	if (st->nargs >= st->max_args)
		return imap_parser_fail(st, IMAP_PERR_TOO_MANY_ARGS);
	if (size > st->lim->max_literal)
		return imap_parser_fail(st, IMAP_PERR_LITERAL_TOO_BIG);
	if (st->len - at < size ||
	    (st->lim->literal_gate != 0 && at >= st->lim->literal_gate)) {
		st->need->literal = 1;
		st->need->literal_size = size;
		st->need->literal_at = at;
		return IMAP_STEP_MORE;
	}
	st->need->nonsync = 0;
	if (imap_parser_add(st, IMAP_ARG_LITERAL, st->buf + at, size) == NULL)
		return imap_parser_fail(st, IMAP_PERR_TOO_MANY_ARGS);
	st->pos = at + size;
	imap_parser_line_begin(st, st->pos);
	return IMAP_STEP_OK;
}

/* A plain atom from pos: up to the first non-ATOM-CHAR. */
static size_t imap_parser_atom_end(const struct imap_parser_st *st)
{
	size_t i = st->pos;

	while (i < st->end &&
	       imap_parser_is_atom_char((unsigned char)st->buf[i]))
		i++;
	return i;
}

/* An atom, with BODY[...] style brackets that may hold spaces and
 * parentheses (RFC 3501 §6.4.5 section-spec with header-list). A "["
 * not closed before the line end (or a control character) is an
 * ATOM-CHAR like any other (RFC 3501 §9: of the brackets only "]" is a
 * resp-special, and an astring may hold even that), so "a[}" is the
 * atom "a[}" and "a[ b" the atom "a[" and then "b": the line is scanned
 * again without the bracket. */
static enum imap_parser_step imap_parser_atom(struct imap_parser_st *st)
{
	size_t i = st->pos;
	int bracket = 0;

	while (i < st->end) {
		unsigned char c = (unsigned char)st->buf[i];

		if (c == '\0')
			return imap_parser_fail(st, IMAP_PERR_NUL);
		if (bracket) {
			if (c < 0x20) {
				i = imap_parser_atom_end(st);
				break;
			}
			if (c == ']')
				bracket = 0;
			i++;
			continue;
		}
		if (c == '[') {
			bracket = 1;
			i++;
			continue;
		}
		if (!imap_parser_is_atom_char(c))
			break;
		i++;
	}
	if (i >= st->end)
		return imap_parser_more(st);
	if (imap_parser_add(st, IMAP_ARG_ATOM, st->buf + st->pos,
			    i - st->pos) == NULL)
		return imap_parser_fail(st, IMAP_PERR_TOO_MANY_ARGS);
	st->pos = i;
	return IMAP_STEP_OK;
}

/* After an argument: a space, ')' or the line end must follow. */
static enum imap_parser_step imap_parser_after(struct imap_parser_st *st)
{
	char c;

	if (st->pos >= st->end)
		return imap_parser_more(st);
	c = st->buf[st->pos];
	if (c == ' ' || c == ')' || c == '\r' || c == '\n')
		return IMAP_STEP_OK;
	return imap_parser_fail(st, IMAP_PERR_SYNTAX);
}

static enum imap_parser_step imap_parser_open(struct imap_parser_st *st)
{
	struct imap_arg *a;

	if (st->depth + 1 >= st->lim->max_depth ||
	    st->depth + 1 >= IMAP_PARSER_STACK)
		return imap_parser_fail(st, IMAP_PERR_TOO_DEEP);
	a = imap_parser_add(st, IMAP_ARG_LIST, st->buf + st->pos, 0);
	if (a == NULL)
		return imap_parser_fail(st, IMAP_PERR_TOO_MANY_ARGS);
	st->depth++;
	st->parent[st->depth] = a;
	st->tail[st->depth] = &a->child;
	st->pos++;
	return IMAP_STEP_OK;
}

static enum imap_parser_step imap_parser_arg(struct imap_parser_st *st)
{
	unsigned char c;
	enum imap_parser_step r;

	if (st->pos >= st->end)
		return imap_parser_more(st);
	c = (unsigned char)st->buf[st->pos];
	switch (c) {
	case ' ':
		st->pos++;
		return IMAP_STEP_OK;
	case '\r':
		if (st->pos + 1 >= st->end)
			return imap_parser_more(st);
		if (st->buf[st->pos + 1] != '\n')
			return imap_parser_fail(st, IMAP_PERR_SYNTAX);
		st->pos++;
		/* fall through */
	case '\n':
		if (!imap_parser_line_ok(st, st->pos - (c == '\r')))
			return imap_parser_fail(st, IMAP_PERR_LINE_TOO_LONG);
		if (st->depth > 0)
			return imap_parser_fail(st, IMAP_PERR_SYNTAX);
		st->pos++;
		return IMAP_STEP_EOL;
	case '(':
		return imap_parser_open(st);
	case ')':
		if (st->depth == 0)
			return imap_parser_fail(st, IMAP_PERR_SYNTAX);
		st->depth--;
		st->pos++;
		return imap_parser_after(st);
	case '"':
		r = imap_parser_quoted(st);
		break;
	case '{':
		r = imap_parser_literal(st);
		break;
	case '\0':
		return imap_parser_fail(st, IMAP_PERR_NUL);
	default:
		if (c < 0x20 || c == 0x7f)
			return imap_parser_fail(st, IMAP_PERR_SYNTAX);
		r = imap_parser_atom(st);
		break;
	}
	if (r != IMAP_STEP_OK)
		return r;
	return imap_parser_after(st);
}

/* RFC 3501 §9: tag = 1*<any ASTRING-CHAR except "+"> */
static enum imap_parser_step imap_parser_tag(struct imap_parser_st *st)
{
	size_t i = 0;

	while (i < st->end) {
		unsigned char c = (unsigned char)st->buf[i];

		if (c == ' ')
			break;
		if (c == '\r' || c == '\n')
			return imap_parser_fail(st, IMAP_PERR_NO_TAG);
		if (!imap_parser_is_atom_char(c) || c == '+' || c == '%' ||
		    c == '*' || c == '\\')
			return imap_parser_fail(st, IMAP_PERR_NO_TAG);
		i++;
	}
	if (i >= st->end)
		return imap_parser_more(st);
	if (i == 0)
		return imap_parser_fail(st, IMAP_PERR_NO_TAG);
	st->pos = i + 1;
	return IMAP_STEP_OK;
}

/* Only once the command is complete: terminate strings in place. */
static void imap_parser_finish(struct imap_parser_st *st)
{
	size_t i, j, k;

	for (i = 0; i < st->nargs; i++) {
		struct imap_arg *a = &st->args[i];

		if (a->type == IMAP_ARG_QUOTED) {
			for (j = 0, k = 0; j < a->len; j++, k++) {
				if (a->s[j] == '\\')
					j++;
				a->s[k] = a->s[j];
			}
			a->len = k;
			a->s[k] = '\0';
		} else if (a->type != IMAP_ARG_LIST) {
			a->s[a->len] = '\0';
		}
	}
}

static size_t imap_parser_skip_line(struct imap_parser_st *st)
{
	const char *lf;
	size_t from = st->pos < st->len ? st->pos : st->len;

	lf = memchr(st->buf + from, '\n', st->len - from);
	if (lf == NULL)
		return 0;
	return (size_t)(lf - st->buf) + 1;
}

/* RFC 7888 §4: a line that ends in "{n+}" is followed by n bytes the
 * client sends without waiting; a server that refuses the line cannot
 * tell them from commands. */
int imap_parser_ends_nonsync(const char *line, size_t len)
{
	if (len >= 4 && memcmp(line + len - 4, "+}\r\n", 4) == 0)
		return 1;
	return len >= 3 && memcmp(line + len - 3, "+}\n", 3) == 0;
}

int imap_parser_parse(const struct imap_parser_limits *lim, char *buf,
		      size_t len, char **tag_r, struct imap_arg *args,
		      size_t max_args, size_t *used_r,
		      struct imap_parse_need *need_r,
		      enum imap_parse_err *err_r)
{
	struct imap_parser_st st;
	struct imap_arg *head = NULL;
	enum imap_parser_step r;

	memset(&st, 0, sizeof(st));
	memset(need_r, 0, sizeof(*need_r));
	st.lim = lim;
	st.buf = buf;
	st.len = len;
	st.args = args;
	st.max_args = max_args;
	st.need = need_r;
	st.tail[0] = &head;
	imap_parser_line_begin(&st, 0);
	*used_r = 0;
	*err_r = IMAP_PERR_NONE;

	r = imap_parser_tag(&st);
	while (r == IMAP_STEP_OK)
		r = imap_parser_arg(&st);
	if (r == IMAP_STEP_MORE) {
		need_r->line_start = st.line_start;
		return IMAP_PARSE_NEED_MORE;
	}
	if (r == IMAP_STEP_ERR) {
		*err_r = st.err;
		need_r->error_at = st.pos < len ? st.pos : len;
		if (st.err != IMAP_PERR_LITERAL_TOO_BIG)
			need_r->nonsync = 0;
		*used_r = imap_parser_skip_line(&st);
		if (imap_parser_ends_nonsync(buf, *used_r))
			need_r->nonsync = 1;
		return IMAP_PARSE_ERROR;
	}
	if (st.top == 0) {
		*err_r = IMAP_PERR_SYNTAX;
		*used_r = st.pos;
		return IMAP_PARSE_ERROR;
	}
	imap_parser_finish(&st);
	/* The tag's terminating space becomes its NUL. */
	buf[strcspn(buf, " ")] = '\0';
	*tag_r = buf;
	*used_r = st.pos;
	return (int)st.top;
}

const char *imap_parser_strerror(enum imap_parse_err e)
{
	switch (e) {
	case IMAP_PERR_NONE: return "no error";
	case IMAP_PERR_SYNTAX: return "Syntax error";
	case IMAP_PERR_NO_TAG: return "Missing or invalid tag";
	case IMAP_PERR_LINE_TOO_LONG: return "Command line too long";
	case IMAP_PERR_LITERAL_TOO_BIG: return "Literal too big";
	case IMAP_PERR_TOO_DEEP: return "Lists nested too deep";
	case IMAP_PERR_TOO_MANY_ARGS: return "Too many arguments";
	case IMAP_PERR_BARE_LF: return "Bare LF";
	case IMAP_PERR_NUL: return "NUL byte in command";
	}
	return "Unknown error";
}

int imap_parser_line(const char *buf, size_t len, size_t max,
		     size_t *linelen_r, size_t *used_r)
{
	size_t scan = len < max + 2 ? len : max + 2, n;
	const char *lf = scan > 0 ? memchr(buf, '\n', scan) : NULL;

	/* max bytes and a CRLF at most: past that no LF can save it */
	if (lf == NULL)
		return scan - (scan > 0 && buf[scan - 1] == '\r') > max ? -1 : 0;
	n = (size_t)(lf - buf);
	*used_r = n + 1;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	if (n > max)
		return -1;
	*linelen_r = n;
	return 1;
}

struct imap_arg *imap_arg_nth(struct imap_arg *first, unsigned i)
{
	while (first != NULL && i-- > 0)
		first = first->next;
	return first;
}

int imap_arg_is_string(const struct imap_arg *a)
{
	return a != NULL && a->type != IMAP_ARG_LIST;
}

const char *imap_arg_astring(const struct imap_arg *a)
{
	if (!imap_arg_is_string(a))
		return NULL;
	return a->s;
}

int imap_parser_number(const char *s, size_t len, uint32_t *n_r)
{
	uint64_t n = 0;
	size_t i;

	if (len == 0 || len > 10)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	if (n > UINT32_MAX)
		return -1;
	*n_r = (uint32_t)n;
	return 0;
}

static int imap_seqset_num(const char **sp, uint32_t *n_r)
{
	const char *s = *sp;
	size_t n = 0;

	if (*s == '*') {
		*n_r = IMAP_SEQ_STAR;
		*sp = s + 1;
		return 0;
	}
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	if (imap_parser_number(s, n, n_r) < 0 || *n_r == 0)
		return -1;
	*sp = s + n;
	return 0;
}

int imap_seqset_parse(const char *s, struct imap_seq_range *out, size_t max)
{
	size_t n = 0;
	uint32_t a, b;

	for (;;) {
		if (imap_seqset_num(&s, &a) < 0)
			return -1;
		b = a;
		if (*s == ':') {
			s++;
			if (imap_seqset_num(&s, &b) < 0)
				return -1;
		}
		if (n >= max)
			return -1;
		out[n].lo = a;
		out[n].hi = b;
		if (a != IMAP_SEQ_STAR && b != IMAP_SEQ_STAR && a > b) {
			out[n].lo = b;
			out[n].hi = a;
		}
		n++;
		if (*s == '\0')
			return (int)n;
		if (*s != ',')
			return -1;
		s++;
	}
}

/* ---- the command reader ---- */

enum imap_reader_mode { IMAP_RD_M_CMD, IMAP_RD_M_SKIP, IMAP_RD_M_DATA };

/* The tag of the command in buf, for replies to a refused or bad one:
 * only a tag that ended (in a space) within the first line's limit, so
 * that it does not depend on how much of the line had come; else "*". */
static void imap_reader_tag(struct imap_reader *r, const char *buf,
			    size_t len, size_t limit)
{
	const char *sp = memchr(buf, ' ', len < limit ? len : limit);
	size_t i = 0, n = sp != NULL ? (size_t)(sp - buf) : 0;

	while (i < n && i + 1 < sizeof(r->tag) &&
	       (unsigned char)buf[i] > 0x20 && (unsigned char)buf[i] < 0x7f)
		i++;
	if (i == 0 || i < n) {
		r->tag[0] = '*';
		i = 1;
	} else {
		memcpy(r->tag, buf, i);
	}
	r->tag[i] = '\0';
}

/* 1 when the command in buf is APPEND (the word after the tag). */
static int imap_reader_is_append(const char *buf, size_t len)
{
	const char *sp = memchr(buf, ' ', len);
	size_t i, n;

	if (sp == NULL)
		return 0;
	i = (size_t)(sp - buf) + 1;
	n = len - i;
	return n > 6 && strncasecmp(buf + i, "APPEND", 6) == 0 &&
		buf[i + 6] == ' ';
}

/* The command is done (taken, refused or skipped): start afresh; the
 * reply takes the tag along. */
static void imap_reader_reset(struct imap_reader *r,
			      struct imap_reader_out *out)
{
	if (out != NULL) {
		memcpy(out->tagbuf, r->tag, sizeof(out->tagbuf));
		out->tag = out->tagbuf;
	}
	memset(r, 0, sizeof(*r));
}

static enum imap_reader_ev imap_reader_refuse(struct imap_reader *r,
					      struct imap_reader_out *out,
					      const char *buf, size_t at,
					      int nonsync, const char *code,
					      const char *text)
{
	imap_reader_tag(r, buf, at, at);
	out->code = code;
	out->text = text;
	out->used = at;
	out->err = IMAP_PERR_LITERAL_TOO_BIG;
	imap_reader_reset(r, out);
	/* RFC 7888 §4: the bytes of a {n+} follow anyway; a tagged BAD, then
	 * the connection closes */
	return nonsync ? IMAP_RD_FATAL : IMAP_RD_NO;
}

/* A literal is announced (its data would start at need->literal_at):
 * refuse it, hold it in memory, or stream it. RFC 7888 §4 and RFC 9208
 * §4.3: a synchronizing literal is refused before the client sends it. */
static enum imap_reader_ev imap_reader_literal(struct imap_reader *r,
					       const struct imap_reader_policy *pol,
					       char *buf, size_t len,
					       const struct imap_parse_need *need,
					       struct imap_reader_out *out)
{
	size_t at = need->literal_at, i;
	uint64_t size = need->literal_size;
	int append = imap_reader_is_append(buf, at);
	int stream = append && pol->max_stream > 0 &&
		size > pol->max_literal && r->stream_at == 0;

	out->literal_at = at;
	out->literal_size = size;
	out->nonsync = need->nonsync;
	if (append && !need->nonsync && pol->quota_left != UINT64_MAX &&
	    size > pol->quota_left)
		return imap_reader_refuse(r, out, buf, at, 0, "OVERQUOTA",
					  "Quota exceeded");
	if (stream ? size > pol->max_stream || at > pol->max_command :
	    size > pol->max_literal || size > pol->max_command ||
	    at > pol->max_command - size)
		return imap_reader_refuse(r, out, buf, at, need->nonsync,
					  "TOOBIG", append ?
					  "Message too large" :
					  "Literal too big");
	r->vetted = at;
	r->parsed = 0;
	if (stream) {
		/* the command is parsed again with an empty literal in
		 * its place: "{123}" becomes "{000}", same length */
		for (i = at; i > 0 && buf[i - 1] != '{'; i--)
			if (buf[i - 1] >= '0' && buf[i - 1] <= '9')
				buf[i - 1] = '0';
		r->mode = IMAP_RD_M_DATA;
		r->stream_left = size;
		r->stream_at = at;
		out->used = at;
		out->cont = !need->nonsync;
		return IMAP_RD_STREAM;
	}
	r->need = at + size;
	/* a client waits for "+" before the bytes: unless they are here */
	if (!need->nonsync && (len < at + size || len == at))
		return IMAP_RD_CONTINUE;
	return IMAP_RD_MORE;   /* the caller's loop: step again */
}

/* The rest of a bad line: drop it, keeping the last bytes so that its
 * end can still be seen to announce a {n+} literal. */
static enum imap_reader_ev imap_reader_skip(struct imap_reader *r,
					    const char *buf, size_t len,
					    struct imap_reader_out *out)
{
	size_t from = r->skip_from < len ? r->skip_from : len;
	const char *lf = memchr(buf + from, '\n', len - from);

	if (lf == NULL) {
		if (len <= 3)
			return IMAP_RD_MORE;
		out->used = len - 3;
		r->skip_from = r->skip_from > out->used ?
			r->skip_from - out->used : 0;
		return IMAP_RD_DROP;
	}
	out->used = (size_t)(lf - buf) + 1;
	out->err = r->err;
	out->text = imap_parser_strerror(r->err);
	imap_reader_reset(r, out);
	return imap_parser_ends_nonsync(buf, out->used) ? IMAP_RD_FATAL :
		IMAP_RD_BAD;
}

static enum imap_reader_ev imap_reader_data(struct imap_reader *r,
					    size_t len,
					    struct imap_reader_out *out)
{
	if (len == 0)
		return IMAP_RD_MORE;
	out->used = (uint64_t)len < r->stream_left ? len :
		(size_t)r->stream_left;
	r->stream_left -= out->used;
	out->last = r->stream_left == 0;
	if (out->last) {
		r->mode = IMAP_RD_M_CMD;
		r->need = 0;
		r->parsed = 0;
	}
	return IMAP_RD_DATA;
}

/* Nothing can have changed since the last parse said "need more" unless
 * a line end came or the line grew past its limit: do not parse the
 * whole command again for every byte of a slow client. */
static int imap_reader_unchanged(struct imap_reader *r,
				 const struct imap_reader_policy *pol,
				 const char *buf, size_t len)
{
	if (!r->parsed || len < r->scanned)
		return 0;
	if (memchr(buf + r->scanned, '\n', len - r->scanned) != NULL ||
	    len - r->line_start > pol->max_line + 1)
		return 0;
	r->scanned = len;
	return 1;
}

/* A bad command: answer it when its line has ended (so that the answer
 * does not depend on how the line arrived), dropping the line as it
 * comes meanwhile. */
static enum imap_reader_ev imap_reader_error(struct imap_reader *r,
					     const struct imap_reader_policy *pol,
					     const char *buf, size_t len,
					     size_t used,
					     const struct imap_parse_need *need,
					     enum imap_parse_err perr,
					     struct imap_reader_out *out)
{
	/* a bad tag is answered untagged (RFC 3501 §7.1.3) */
	imap_reader_tag(r, buf, perr == IMAP_PERR_NO_TAG ? 0 : len,
			pol->max_line + 2);
	r->err = perr;
	if (used > 0) {
		out->used = used;
		out->err = perr;
		out->text = imap_parser_strerror(perr);
		imap_reader_reset(r, out);
		return need->nonsync ? IMAP_RD_FATAL : IMAP_RD_BAD;
	}
	/* a LF before error_at belongs to the command's earlier lines */
	r->mode = IMAP_RD_M_SKIP;
	r->skip_from = need->error_at;
	return imap_reader_skip(r, buf, len, out);
}

int imap_reader_streaming(const struct imap_reader *r)
{
	return r->mode == IMAP_RD_M_DATA;
}

enum imap_reader_ev imap_reader_step(struct imap_reader *r,
				     const struct imap_reader_policy *pol,
				     char *buf, size_t len,
				     struct imap_arg *args, size_t max_args,
				     struct imap_reader_out *out)
{
	struct imap_parser_limits lim;
	struct imap_parse_need need;
	enum imap_parse_err perr;
	enum imap_reader_ev ev;
	size_t used;
	char *tag;
	int n;

	memset(out, 0, sizeof(*out));
	if (r->mode == IMAP_RD_M_DATA)
		return imap_reader_data(r, len, out);
	if (r->mode == IMAP_RD_M_SKIP)
		return imap_reader_skip(r, buf, len, out);
	for (;;) {
		if (len == 0 || len < r->need ||
		    imap_reader_unchanged(r, pol, buf, len))
			return IMAP_RD_MORE;
		memset(&lim, 0, sizeof(lim));
		lim.max_line = pol->max_line;
		lim.max_literal = SIZE_MAX / 4;   /* judged here instead */
		lim.max_depth = 16;
		lim.literal_gate = r->vetted + 1;
		n = imap_parser_parse(&lim, buf, len, &tag, args, max_args,
				      &used, &need, &perr);
		if (n >= 0) {
			out->used = used;
			out->nargs = n;
			out->tag = tag;
			out->stream_at = r->stream_at;
			imap_reader_reset(r, NULL);
			return IMAP_RD_COMMAND;
		}
		if (n == IMAP_PARSE_ERROR)
			break;
		if (!need.literal || need.literal_at <= r->vetted) {
			if (need.literal)
				r->need = need.literal_at + need.literal_size;
			r->parsed = !need.literal;
			r->scanned = len;
			r->line_start = need.line_start;
			return IMAP_RD_MORE;
		}
		ev = imap_reader_literal(r, pol, buf, len, &need, out);
		if (ev != IMAP_RD_MORE)
			return ev;
	}
	return imap_reader_error(r, pol, buf, len, used, &need, perr, out);
}
