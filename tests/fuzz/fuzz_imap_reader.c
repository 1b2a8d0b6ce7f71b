/* Fuzz target for the IMAP command reader (mra/imap_parser.c
 * imap_reader_step, as imap_session.c drives it): commands with literals,
 * refused, held or streamed literals, bad lines. The input is fed whole,
 * a byte at a time, and split in two at every byte position; the
 * transcript (commands with their arguments and streamed bytes, NO, BAD,
 * FATAL) must be the same every time. Only "+" continuations may differ:
 * they follow arrival by nature. The first 4 bytes pick the limits; at
 * most 2,048 bytes of input are used (every split costs a full replay). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../mra/imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 2048
#define FUZZ_MAX_ARGS  64

struct fuzz_out {
	char *p;
	size_t len, cap;
};

static void fuzz_put(struct fuzz_out *o, const void *d, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->p = realloc(o->p, o->cap);
		if (o->p == NULL)
			abort();
	}
	memcpy(o->p + o->len, d, n);
	o->len += n;
}

static void fuzz_puts(struct fuzz_out *o, const char *s)
{
	fuzz_put(o, s, strlen(s));
}

static void fuzz_args(struct fuzz_out *o, const struct imap_arg *a,
		      const char *streamed, const struct fuzz_out *spool)
{
	char n[32];

	for (; a != NULL; a = a->next) {
		snprintf(n, sizeof(n), " %d:%zu:", (int)a->type, a->len);
		fuzz_puts(o, n);
		if (a->type == IMAP_ARG_LIST) {
			fuzz_puts(o, "(");
			fuzz_args(o, a->child, streamed, spool);
			fuzz_puts(o, ")");
		} else if (a->s == streamed && a->type == IMAP_ARG_LITERAL) {
			fuzz_puts(o, "S=");
			fuzz_put(o, spool->p, spool->len);
		} else {
			fuzz_put(o, a->s, a->len);
		}
	}
}

struct fuzz_conn {
	const struct imap_reader_policy *pol;
	struct imap_reader r;
	struct imap_arg args[FUZZ_MAX_ARGS];
	char *in;             /* the session's input buffer */
	size_t len;
	char *kept;           /* the command's bytes while a literal streams */
	size_t kept_len;
	struct fuzz_out spool, log;
	int closed;
};

static void fuzz_drop(struct fuzz_conn *c, size_t n)
{
	if (n > c->len)
		abort();
	memmove(c->in, c->in + n, c->len - n);
	c->len -= n;
}

/* What imap_session_input_cmd() does, over a plain buffer. */
static void fuzz_run(struct fuzz_conn *c)
{
	struct imap_reader_out o;
	enum imap_reader_ev ev;
	int conts = 0;
	char n[32];

	while (!c->closed) {
		ev = imap_reader_step(&c->r, c->pol, c->in, c->len, c->args,
				      FUZZ_MAX_ARGS, &o);
		if (ev != IMAP_RD_MORE && ev != IMAP_RD_CONTINUE &&
		    (o.used == 0 && ev != IMAP_RD_STREAM))
			abort();   /* no progress: the session would spin */
		if (o.used > c->len)
			abort();
		conts = ev == IMAP_RD_CONTINUE ? conts + 1 : 0;
		if (conts > 1)
			abort();
		switch (ev) {
		case IMAP_RD_MORE:
			return;
		case IMAP_RD_CONTINUE:
		case IMAP_RD_DROP:
			fuzz_drop(c, ev == IMAP_RD_DROP ? o.used : 0);
			break;
		case IMAP_RD_COMMAND:
			snprintf(n, sizeof(n), "C%d ", o.nargs);
			fuzz_puts(&c->log, n);
			fuzz_puts(&c->log, o.tag);
			fuzz_args(&c->log, o.nargs > 0 ? c->args : NULL,
				  o.stream_at > 0 ? c->in + o.stream_at : NULL,
				  &c->spool);
			fuzz_puts(&c->log, "\n");
			c->spool.len = 0;
			fuzz_drop(c, o.used);
			break;
		case IMAP_RD_NO:
		case IMAP_RD_BAD:
		case IMAP_RD_FATAL:
			fuzz_puts(&c->log, ev == IMAP_RD_NO ? "NO " :
				  ev == IMAP_RD_BAD ? "BAD " : "FATAL ");
			fuzz_puts(&c->log, o.tag);
			fuzz_puts(&c->log, " ");
			fuzz_puts(&c->log, o.code != NULL ? o.code : "-");
			fuzz_puts(&c->log, " ");
			fuzz_puts(&c->log, o.text);
			fuzz_puts(&c->log, "\n");
			c->spool.len = 0;
			fuzz_drop(c, o.used);
			c->closed = ev == IMAP_RD_FATAL;
			break;
		case IMAP_RD_STREAM:
			snprintf(n, sizeof(n), "T%zu/%llu\n", o.literal_at,
				 (unsigned long long)o.literal_size);
			fuzz_puts(&c->log, n);
			c->kept = malloc(o.used + 1);
			if (c->kept == NULL)
				abort();
			memcpy(c->kept, c->in, o.used);
			c->kept_len = o.used;
			fuzz_drop(c, o.used);
			c->spool.len = 0;
			break;
		case IMAP_RD_DATA:
			fuzz_put(&c->spool, c->in, o.used);
			fuzz_drop(c, o.used);
			if (o.last) {
				memmove(c->in + c->kept_len, c->in, c->len);
				memcpy(c->in, c->kept, c->kept_len);
				c->len += c->kept_len;
				free(c->kept);
				c->kept = NULL;
			}
			break;
		}
	}
}

/* Feed input in pieces: cut[] holds the piece ends, ascending. */
static void fuzz_feed(const struct imap_reader_policy *pol, const char *in,
		      size_t size, const size_t *cut, size_t ncut,
		      struct fuzz_out *log)
{
	struct fuzz_conn *c = calloc(1, sizeof(*c));
	size_t i, from = 0;

	if (c == NULL || (c->in = malloc(size + 1)) == NULL)
		abort();
	c->pol = pol;
	for (i = 0; i <= ncut && !c->closed; i++) {
		size_t to = i < ncut ? cut[i] : size;

		memcpy(c->in + c->len, in + from, to - from);
		c->len += to - from;
		from = to;
		fuzz_run(c);
	}
	*log = c->log;
	free(c->kept);
	free(c->spool.p);
	free(c->in);
	free(c);
}

static void fuzz_same(const struct fuzz_out *a, const struct fuzz_out *b)
{
	if (a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0))
		return;
	if (getenv("FUZZ_PRINT") != NULL) {
		fputs("---- fed whole:\n", stdout);
		fwrite(a->p, 1, a->len, stdout);
		fputs("---- fed in pieces:\n", stdout);
		fwrite(b->p, 1, b->len, stdout);
		fflush(stdout);
	}
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_reader_policy pol;
	struct fuzz_out whole, part;
	size_t k, *cuts;
	const char *in;

	if (size < 4)
		return 0;
	memset(&pol, 0, sizeof(pol));
	pol.max_line = 8 + data[0] % 120;
	pol.max_literal = data[1] % 48;
	pol.max_command = pol.max_line + pol.max_literal;
	pol.max_stream = data[2] & 1 ? 64 + data[2] : 0;
	pol.quota_left = data[3] % 4 == 0 ? data[3] : UINT64_MAX;
	in = (const char *)data + 4;
	size -= 4;
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	fuzz_feed(&pol, in, size, NULL, 0, &whole);
	if (getenv("FUZZ_PRINT") != NULL && whole.len > 0)
		fwrite(whole.p, 1, whole.len, stdout);
	cuts = malloc((size + 1) * sizeof(*cuts));
	if (cuts == NULL)
		abort();
	for (k = 0; k < size; k++)
		cuts[k] = k + 1;
	fuzz_feed(&pol, in, size, cuts, size, &part);   /* a byte at a time */
	fuzz_same(&whole, &part);
	free(part.p);
	for (k = 1; k < size; k++) {
		fuzz_feed(&pol, in, size, &k, 1, &part);
		fuzz_same(&whole, &part);
		free(part.p);
	}
	free(cuts);
	free(whole.p);
	return 0;
}
