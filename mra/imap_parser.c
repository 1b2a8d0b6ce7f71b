/* imap_parser: IMAP command syntax (RFC 3501 §9, RFC 7888 literals).
 * Pure: (buffer, length, limits) in, argument records pointing into the
 * buffer out. The whole command is re-scanned on each call; the session
 * avoids rescans by waiting for a pending literal's bytes first. */
#include <string.h>
#include "imap_parser.h"

#define IMAP_PARSER_STACK 64

struct imap_parser_st {
	const struct imap_parser_limits *lim;
	char *buf;
	size_t len, pos, line_start;
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

/* At the end of the buffer without a line end: wait, unless the line is
 * already over its limit (never wait for a newline without bound). */
static enum imap_parser_step imap_parser_more(struct imap_parser_st *st)
{
	if (st->len - st->line_start > st->lim->max_line)
		return imap_parser_fail(st, IMAP_PERR_LINE_TOO_LONG);
	return IMAP_STEP_MORE;
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

	while (i < st->len) {
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
			if (i + 1 >= st->len)
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
	size_t i = st->pos + 1, size = 0, at;
	int digits = 0, nonsync = 0;

	while (i < st->len && st->buf[i] >= '0' && st->buf[i] <= '9') {
		if (size > (SIZE_MAX - 9) / 10 || digits >= 19)
			return imap_parser_fail(st,
						IMAP_PERR_LITERAL_TOO_BIG);
		size = size * 10 + (size_t)(st->buf[i] - '0');
		digits++;
		i++;
	}
	if (i < st->len && st->buf[i] == '+') {
		nonsync = 1;
		i++;
	}
	if (i >= st->len)
		return imap_parser_more(st);
	if (st->buf[i] != '}' || digits == 0)
		return imap_parser_fail(st, IMAP_PERR_SYNTAX);
	i++;
	if (i < st->len && st->buf[i] == '\r')
		i++;
	if (i >= st->len)
		return imap_parser_more(st);
	if (st->buf[i] != '\n')
		return imap_parser_fail(st, IMAP_PERR_SYNTAX);
	at = i + 1;
	st->need->nonsync = nonsync;
	if (size > st->lim->max_literal)
		return imap_parser_fail(st, IMAP_PERR_LITERAL_TOO_BIG);
	if (st->len - at < size) {
		st->need->literal = 1;
		st->need->literal_size = size;
		st->need->literal_at = at;
		return IMAP_STEP_MORE;
	}
	st->need->nonsync = 0;
	if (imap_parser_add(st, IMAP_ARG_LITERAL, st->buf + at, size) == NULL)
		return imap_parser_fail(st, IMAP_PERR_TOO_MANY_ARGS);
	st->pos = at + size;
	st->line_start = st->pos;
	return IMAP_STEP_OK;
}

/* An atom, with BODY[...] style brackets that may hold spaces and
 * parentheses (RFC 3501 §6.4.5 section-spec with header-list). */
static enum imap_parser_step imap_parser_atom(struct imap_parser_st *st)
{
	size_t i = st->pos;
	int bracket = 0;

	while (i < st->len) {
		unsigned char c = (unsigned char)st->buf[i];

		if (c == '\0')
			return imap_parser_fail(st, IMAP_PERR_NUL);
		if (bracket) {
			if (c == '\r' || c == '\n' || c < 0x20)
				return imap_parser_fail(st, IMAP_PERR_SYNTAX);
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
	if (i >= st->len)
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

	if (st->pos >= st->len)
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

	if (st->pos >= st->len)
		return imap_parser_more(st);
	c = (unsigned char)st->buf[st->pos];
	switch (c) {
	case ' ':
		st->pos++;
		return IMAP_STEP_OK;
	case '\r':
		if (st->pos + 1 >= st->len)
			return imap_parser_more(st);
		if (st->buf[st->pos + 1] != '\n')
			return imap_parser_fail(st, IMAP_PERR_SYNTAX);
		st->pos++;
		/* fall through */
	case '\n':
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

	while (i < st->len) {
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
	if (i >= st->len)
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
	*used_r = 0;
	*err_r = IMAP_PERR_NONE;

	r = imap_parser_tag(&st);
	while (r == IMAP_STEP_OK)
		r = imap_parser_arg(&st);
	if (r == IMAP_STEP_MORE)
		return IMAP_PARSE_NEED_MORE;
	if (r == IMAP_STEP_ERR) {
		*err_r = st.err;
		if (st.err != IMAP_PERR_LITERAL_TOO_BIG)
			need_r->nonsync = 0;
		*used_r = imap_parser_skip_line(&st);
		if (*used_r >= 4 && memcmp(buf + *used_r - 4, "+}\r\n", 4) == 0)
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
	const char *lf = memchr(buf, '\n', len);
	size_t n;

	if (lf == NULL)
		return len > max ? -1 : 0;
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
		out[n].lo = a < b ? a : b;
		out[n].hi = a < b ? b : a;
		n++;
		if (*s == '\0')
			return (int)n;
		if (*s != ',')
			return -1;
		s++;
	}
}
