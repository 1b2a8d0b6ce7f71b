/* pop3_session: POP3 sessions on the event loop (RFC 1939 states
 * AUTHORIZATION -> TRANSACTION -> UPDATE). Authentication, mailbox opening,
 * message reads and the UPDATE expunge run on the worker pool; a session
 * with a job out reads no commands, and is only freed once its job is
 * back (jobs use the session's folder). Sessions own their mstore. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include "buf.h"
#include "listen.h"
#include "log.h"
#include "mstore.h"
#include "passdb.h"
#include "sasl_glue.h"
#include "tls.h"
#include "work.h"
#include "pop3_cmd.h"
#include "pop3_session.h"

#define POP3_AUTH_LINE_MAX  8192   /* RFC 5034 §4: SASL lines may be long */
/* a line with its CRLF (or lone LF): the size of the line buffer, which
 * pop3_cmd_line() never fills past (line < max, room for the NUL) */
#define POP3_LINE_BUF       (POP3_AUTH_LINE_MAX + 2)
#define POP3_MAX_AUTH_FAILS 3
#define POP3_READ_HIGH      (64 * 1024)
/* Pipelined RETRs to a client that does not read: stop taking commands
 * while this much output is queued, go on below POP3_OUT_LOW. */
#define POP3_OUT_HIGH       (1024 * 1024)
#define POP3_OUT_LOW        (128 * 1024)

enum pop3_state { POP3_ST_AUTH, POP3_ST_TRANS, POP3_ST_UPDATE, POP3_ST_CLOSING };

struct pop3_listener {
	struct evconnlistener *lev;
	struct event_base *base;
	struct work_pool *pool;
	const struct pop3_settings *set;
	struct pop3_listener *next;
};

struct pop3_session {
	uint64_t id;
	struct pop3_listener *l;
	struct bufferevent *bev;
	enum pop3_state state;
	int busy;                 /* a job or a delay is out */
	int flushed;              /* closing: the last reply is out */
	struct event *closer;     /* closing: flush re-check, linger limit */
	int dead;                 /* client gone while busy: free when back */
	int in_sasl;              /* lines are SASL responses */
	int tls;
	char addr[64];
	char local_ipport[80], remote_ipport[80];
	char *user;               /* USER name, then the logged-in user */
	unsigned auth_fails;
	struct sasl_glue_server *sasl;
	struct event *delay;
	char *delayed_reply;
	struct mstore *ms;
	struct mstore_folder *f;
	size_t nmsgs;             /* the maildrop as it was at login */
	unsigned char *deleted;
	unsigned long retr_count, dele_count;
	uint64_t retr_bytes;
	struct pop3_session *next;
};

enum pop3_job_kind { POP3_JOB_PASS, POP3_JOB_SASL_START, POP3_JOB_SASL_STEP,
                     POP3_JOB_READ, POP3_JOB_UPDATE };

struct pop3_job {
	uint64_t sid;
	enum pop3_job_kind kind;
	const struct pop3_settings *set;
	struct sasl_glue_server *sasl;   /* the session's; untouched meanwhile */
	char *user, *pass, *mech, *in, *out;
	enum sasl_glue_rc src;
	enum passdb_rc prc;
	int rc;                   /* 0, -1: see err */
	struct err err;
	struct mstore *ms;
	struct mstore_folder *f;
	size_t idx;
	long top;                 /* -1: RETR */
	struct buf data;
	uint32_t *uids;
	size_t nuids;
};

static struct pop3_listener *pop3_listeners;
static struct pop3_session *pop3_sessions;
static uint64_t pop3_next_id = 1;

static void pop3_read_cb(struct bufferevent *bev, void *arg);
static void pop3_process(struct pop3_session *s);

/* ---- session plumbing ---- */

static struct pop3_session *pop3_session_find(uint64_t id)
{
	struct pop3_session *s;

	for (s = pop3_sessions; s != NULL; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void pop3_session_free(struct pop3_session *s)
{
	struct pop3_session **pp;

	for (pp = &pop3_sessions; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->delay != NULL)
		event_free(s->delay);
	if (s->closer != NULL)
		event_free(s->closer);
	sasl_glue_server_free(s->sasl);
	mstore_folder_free(s->f);
	mstore_free(s->ms);
	free(s->delayed_reply);
	free(s->deleted);
	free(s->user);
	free(s);
}

static void pop3_session_close(struct pop3_session *s);

static void pop3_closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		pop3_session_close(arg);
}

static void pop3_log_end(struct pop3_session *s, const char *why)
{
	if (s->state == POP3_ST_AUTH && s->f == NULL)
		log_info("pop3: disconnect: %s, rip=%s", why, s->addr);
	else
		log_info("pop3: disconnect: %s, user=<%s>, rip=%s, retr=%lu/%llu, "
		         "del=%lu/%zu", why, s->user ? s->user : "", s->addr,
		         s->retr_count, (unsigned long long)s->retr_bytes,
		         s->dele_count, s->nmsgs);
}

/* The client is gone or we hung up: free now, or when the job is back. */
static void pop3_session_close(struct pop3_session *s)
{
	if (s->busy) {
		s->dead = 1;
		if (s->bev != NULL) {
			bufferevent_free(s->bev);
			s->bev = NULL;
		}
		return;
	}
	pop3_session_free(s);
}

/* Bytes not yet on the wire: a STLS filter keeps some in the socket
 * bufferevent below it. */
static size_t pop3_pending_out(struct bufferevent *bev)
{
	struct bufferevent *u = bufferevent_get_underlying(bev);
	size_t n = evbuffer_get_length(bufferevent_get_output(bev));

	if (u != NULL)
		n += evbuffer_get_length(bufferevent_get_output(u));
	return n;
}

static void pop3_write_done_cb(struct bufferevent *bev, void *arg);

static void pop3_closer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;

	if (!s->flushed && s->bev != NULL)
		pop3_write_done_cb(s->bev, s);
	else
		pop3_session_close(s);
}

static void pop3_closer_arm(struct pop3_session *s, long usec)
{
	struct timeval tv = { usec / 1000000, usec % 1000000 };

	if (s->closer == NULL)
		s->closer = evtimer_new(s->l->base, pop3_closer_cb, s);
	if (s->closer == NULL || evtimer_add(s->closer, &tv) < 0)
		pop3_session_close(s);
}

/* Whatever the client still sends after our last word is dropped. */
static void pop3_linger_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	evbuffer_drain(in, evbuffer_get_length(in));
}

/* Once the last reply is out, close; a plain connection first half-closes
 * and drains for a moment, so that unread client bytes do not turn our
 * close into a reset that destroys the reply in flight. */
static void pop3_write_done_cb(struct bufferevent *bev, void *arg)
{
	struct pop3_session *s = arg;

	if (s->flushed)
		return;
	if (pop3_pending_out(bev) > 0) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			pop3_closer_arm(s, 20000);   /* below the filter */
		return;
	}
	s->flushed = 1;
	if (s->tls || bufferevent_getfd(bev) < 0) {
		pop3_session_close(s);
		return;
	}
	shutdown(bufferevent_getfd(bev), SHUT_WR);
	bufferevent_setcb(bev, pop3_linger_read_cb, NULL, pop3_closing_event_cb, s);
	bufferevent_enable(bev, EV_READ);
	pop3_closer_arm(s, 2000000);
}

static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->bev == NULL)
		return;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(s->bev), "\r\n", 2);
}

/* Send the last reply, then hang up once it is written. */
static void pop3_hangup(struct pop3_session *s, const char *why)
{
	pop3_log_end(s, why);
	s->state = POP3_ST_CLOSING;
	if (s->bev == NULL) {
		pop3_session_close(s);
		return;
	}
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setcb(s->bev, NULL, pop3_write_done_cb, pop3_closing_event_cb, s);
	bufferevent_enable(s->bev, EV_WRITE);
	/* from the loop, not here: callers still hold s */
	pop3_closer_arm(s, 0);
}

static void pop3_set_state(struct pop3_session *s, enum pop3_state st)
{
	s->state = st;
}

static int pop3_submit(struct pop3_session *s, struct pop3_job *j,
                       void (*fn)(void *), void (*done)(void *))
{
	j->sid = s->id;
	j->set = s->l->set;
	if (work_submit(s->l->pool, fn, done, j) < 0)
		return -1;
	s->busy = 1;
	return 0;
}

/* Back from a job: go on with what the client pipelined. */
static void pop3_resume(struct pop3_session *s)
{
	s->busy = 0;
	if (s->dead) {
		pop3_session_free(s);
		return;
	}
	if (s->state != POP3_ST_CLOSING)
		pop3_process(s);
}

static struct pop3_job *pop3_job_new(enum pop3_job_kind kind)
{
	struct pop3_job *j = calloc(1, sizeof(*j));

	if (j != NULL) {
		j->kind = kind;
		buf_init(&j->data, 0);
	}
	return j;
}

static void pop3_job_free(struct pop3_job *j)
{
	if (j == NULL)
		return;
	if (j->pass != NULL) {
		explicit_bzero(j->pass, strlen(j->pass));
		free(j->pass);
	}
	if (j->in != NULL) {
		explicit_bzero(j->in, strlen(j->in));
		free(j->in);
	}
	free(j->user);
	free(j->mech);
	free(j->out);
	free(j->uids);
	buf_free(&j->data);
	mstore_folder_free(j->f);
	mstore_free(j->ms);
	free(j);
}

/* ---- AUTHORIZATION ---- */

/* Worker: the mailbox of a user who just authenticated. */
static void pop3_job_open_mailbox(struct pop3_job *j, const char *user)
{
	char root[4096];
	const struct pop3_settings *set = j->set;

	if (set->mailbox_fn != NULL)
		j->rc = set->mailbox_fn(set->mailbox_arg, user, root, sizeof(root),
		                        &j->err);
	else
		j->rc = mstore_user_root(set->mail_base ? set->mail_base : "",
		                         user, root, sizeof(root), &j->err);
	if (j->rc < 0)
		return;
	j->ms = mstore_open(root, &j->err);
	if (j->ms != NULL)
		j->f = mstore_folder_open(j->ms, "INBOX", 0, &j->err);
	j->rc = j->f != NULL ? 0 : -1;
}

static void pop3_auth_work(void *arg)
{
	struct pop3_job *j = arg;
	const char *u;

	switch (j->kind) {
	case POP3_JOB_PASS:
		j->prc = passdb_verify(j->set->passdb, j->user, j->pass, &j->err);
		if (j->prc == PASSDB_OK)
			pop3_job_open_mailbox(j, j->user);
		return;
	case POP3_JOB_SASL_START:
	case POP3_JOB_SASL_STEP:
		j->src = j->kind == POP3_JOB_SASL_START ?
		         sasl_glue_server_start(j->sasl, j->mech, j->in, &j->out) :
		         sasl_glue_server_step(j->sasl, j->in, &j->out);
		if (j->src != SASL_GLUE_OK)
			return;
		u = sasl_glue_server_user(j->sasl);
		j->user = strdup(u != NULL ? u : "");
		if (j->user == NULL) {
			j->src = SASL_GLUE_TEMPFAIL;
			return;
		}
		pop3_job_open_mailbox(j, j->user);
		return;
	default:
		return;
	}
}

static void pop3_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;

	if (s->dead) {
		s->busy = 0;
		pop3_session_free(s);
		return;
	}
	if (s->delayed_reply != NULL)
		pop3_reply(s, "%s", s->delayed_reply);
	free(s->delayed_reply);
	s->delayed_reply = NULL;
	if (s->auth_fails >= POP3_MAX_AUTH_FAILS) {
		s->busy = 0;
		pop3_hangup(s, "too many authentication failures");
		return;
	}
	pop3_resume(s);
}

/* A failed login: log it, answer after a delay (slows down guessing). */
static void pop3_auth_failed(struct pop3_session *s, const char *user,
                             const char *method, const char *reason)
{
	unsigned ms = s->l->set->auth_fail_delay_ms ? s->l->set->auth_fail_delay_ms
	                                            : 2000;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	s->auth_fails++;
	log_info("pop3: auth failed: user=<%s>, rip=%s, method=%s, reason=%s",
	         user ? user : "", s->addr, method, reason);
	free(s->user);
	s->user = NULL;
	free(s->delayed_reply);
	s->delayed_reply = strdup("-ERR [AUTH] Authentication failed.");
	if (s->delay == NULL)
		s->delay = evtimer_new(s->l->base, pop3_delay_cb, s);
	if (s->delay == NULL || evtimer_add(s->delay, &tv) < 0) {
		pop3_reply(s, "-ERR [AUTH] Authentication failed.");
		pop3_resume(s);
		return;
	}
	s->busy = 1;
}

static void pop3_login_ok(struct pop3_session *s, struct pop3_job *j,
                          const char *method)
{
	free(s->user);
	s->user = j->user;
	j->user = NULL;
	s->ms = j->ms;
	s->f = j->f;
	j->ms = NULL;
	j->f = NULL;
	s->nmsgs = s->f->count;
	s->deleted = calloc(s->nmsgs + 1, 1);
	if (s->deleted == NULL) {
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		pop3_hangup(s, "out of memory");
		return;
	}
	pop3_set_state(s, POP3_ST_TRANS);
	log_info("pop3: login: user=<%s>, rip=%s, method=%s, tls=%s, msgs=%zu",
	         s->user, s->addr, method, s->tls ? "yes" : "no", s->nmsgs);
	pop3_reply(s, "+OK Logged in.");
}

static void pop3_auth_done(void *arg)
{
	struct pop3_job *j = arg;
	struct pop3_session *s = pop3_session_find(j->sid);
	const char *method = j->kind == POP3_JOB_PASS ? "USER" :
	                     sasl_glue_server_mech(j->sasl);

	if (s == NULL || s->dead || s->state == POP3_ST_CLOSING) {
		pop3_job_free(j);
		if (s != NULL)
			pop3_resume(s);
		return;
	}
	s->busy = 0;
	if (j->kind == POP3_JOB_PASS) {
		if (j->prc == PASSDB_FAIL) {
			pop3_auth_failed(s, j->user, method, j->err.msg);
		} else if (j->prc == PASSDB_TEMPFAIL) {
			log_warn("pop3: auth tempfail: user=<%s>, rip=%s: %s",
			         j->user, s->addr, j->err.msg);
			pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication failure.");
		} else if (j->rc < 0) {
			log_warn("pop3: mailbox: user=<%s>, rip=%s: %s", j->user,
			         s->addr, j->err.msg);
			pop3_reply(s, "-ERR [SYS/TEMP] Mailbox unavailable.");
		} else {
			pop3_login_ok(s, j, method);
		}
		pop3_job_free(j);
		if (!s->busy && s->state != POP3_ST_CLOSING)
			pop3_resume(s);
		return;
	}
	/* SASL */
	switch (j->src) {
	case SASL_GLUE_CONTINUE:
		s->in_sasl = 1;
		pop3_reply(s, "+ %s", j->out ? j->out : "");
		break;
	case SASL_GLUE_OK:
		s->in_sasl = 0;
		if (j->rc < 0) {
			log_warn("pop3: mailbox: user=<%s>, rip=%s: %s", j->user,
			         s->addr, j->err.msg);
			pop3_reply(s, "-ERR [SYS/TEMP] Mailbox unavailable.");
		} else {
			pop3_login_ok(s, j, method);
		}
		break;
	case SASL_GLUE_FAIL:
		s->in_sasl = 0;
		pop3_auth_failed(s, j->user, method, sasl_glue_server_error(j->sasl));
		break;
	case SASL_GLUE_TEMPFAIL:
		s->in_sasl = 0;
		pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication failure.");
		break;
	case SASL_GLUE_NOMECH:
		s->in_sasl = 0;
		pop3_reply(s, "-ERR Unsupported authentication mechanism.");
		break;
	default:
		s->in_sasl = 0;
		pop3_reply(s, "-ERR Authentication aborted.");
		break;
	}
	if (!s->in_sasl) {
		sasl_glue_server_free(s->sasl);
		s->sasl = NULL;
	}
	pop3_job_free(j);
	if (!s->busy && s->state != POP3_ST_CLOSING)
		pop3_resume(s);
}

/* RFC 2595 §2 / Dovecot disable_plaintext_auth: no passwords in clear. */
static int pop3_plain_ok(struct pop3_session *s)
{
	return s->tls || !s->l->set->disable_plaintext_auth;
}

static void pop3_cmd_user(struct pop3_session *s, const struct pop3_cmd *c)
{
	if (!pop3_plain_ok(s)) {
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication disallowed on "
		           "non-secure (SSL/TLS) connections.");
		return;
	}
	free(s->user);
	s->user = strndup(c->arg[0], c->arg_len[0]);
	pop3_reply(s, s->user ? "+OK" : "-ERR [SYS/TEMP] Out of memory.");
}

static void pop3_cmd_pass(struct pop3_session *s, const struct pop3_cmd *c)
{
	struct pop3_job *j;

	if (!pop3_plain_ok(s)) {
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication disallowed on "
		           "non-secure (SSL/TLS) connections.");
		return;
	}
	if (s->user == NULL) {
		pop3_reply(s, "-ERR No username given.");
		return;
	}
	j = pop3_job_new(POP3_JOB_PASS);
	if (j == NULL || (j->user = strdup(s->user)) == NULL ||
	    (j->pass = strndup(c->arg[0], c->arg_len[0])) == NULL ||
	    pop3_submit(s, j, pop3_auth_work, pop3_auth_done) < 0) {
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
	}
}

static struct sasl_glue_server *pop3_sasl_new(struct pop3_session *s)
{
	struct err err;
	int ssf = s->tls && s->bev != NULL ? tls_ssf(s->bev) : 0;

	return sasl_glue_server_new("pop", s->l->set->hostname, s->local_ipport,
	                            s->remote_ipport, ssf, &err);
}

static void pop3_cmd_auth(struct pop3_session *s, const struct pop3_cmd *c)
{
	struct pop3_job *j;

	if (!s->l->set->sasl || !pop3_plain_ok(s)) {
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication disallowed on "
		           "non-secure (SSL/TLS) connections.");
		return;
	}
	sasl_glue_server_free(s->sasl);
	s->sasl = pop3_sasl_new(s);
	if (s->sasl == NULL) {
		pop3_reply(s, "-ERR [SYS/TEMP] Authentication unavailable.");
		return;
	}
	if (c->narg == 0) {
		/* the pre-RFC 5034 listing many clients still ask for */
		const char *m = sasl_glue_server_mechs(s->sasl), *e;

		pop3_reply(s, "+OK");
		while (*m != '\0') {
			e = strchr(m, ' ');
			if (e == NULL)
				e = m + strlen(m);
			if (e > m)
				pop3_reply(s, "%.*s", (int)(e - m), m);
			m = *e == ' ' ? e + 1 : e;
		}
		pop3_reply(s, ".");
		sasl_glue_server_free(s->sasl);
		s->sasl = NULL;
		return;
	}
	j = pop3_job_new(POP3_JOB_SASL_START);
	if (j == NULL || (j->mech = strndup(c->arg[0], c->arg_len[0])) == NULL ||
	    (c->narg == 2 && (j->in = strndup(c->arg[1], c->arg_len[1])) == NULL)) {
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		return;
	}
	j->sasl = s->sasl;
	if (pop3_submit(s, j, pop3_auth_work, pop3_auth_done) < 0) {
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
	}
}

static void pop3_sasl_response(struct pop3_session *s, const char *line,
                               size_t len)
{
	struct pop3_job *j;
	size_t i;

	/* RFC 5034 §4: a response is base64 or "*"; a NUL or control would
	 * be cut off by the C strings below, so refuse it */
	for (i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f) {
			s->in_sasl = 0;
			sasl_glue_server_free(s->sasl);
			s->sasl = NULL;
			pop3_reply(s, "-ERR Invalid authentication response.");
			return;
		}
	j = pop3_job_new(POP3_JOB_SASL_STEP);
	if (j == NULL || (j->in = strndup(line, len)) == NULL) {
		pop3_job_free(j);
		s->in_sasl = 0;
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		return;
	}
	j->sasl = s->sasl;
	if (pop3_submit(s, j, pop3_auth_work, pop3_auth_done) < 0) {
		pop3_job_free(j);
		s->in_sasl = 0;
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
	}
}

static void pop3_cmd_capa(struct pop3_session *s)
{
	const struct pop3_settings *set = s->l->set;

	pop3_reply(s, "+OK Capability list follows");
	pop3_reply(s, "CAPA");
	pop3_reply(s, "TOP");
	pop3_reply(s, "UIDL");
	pop3_reply(s, "RESP-CODES");
	pop3_reply(s, "AUTH-RESP-CODE");
	pop3_reply(s, "PIPELINING");
	if (s->state == POP3_ST_AUTH) {
		if (pop3_plain_ok(s))
			pop3_reply(s, "USER");
		if (set->sasl && pop3_plain_ok(s)) {
			struct sasl_glue_server *g = pop3_sasl_new(s);

			if (g != NULL && sasl_glue_server_mechs(g)[0] != '\0')
				pop3_reply(s, "SASL %s", sasl_glue_server_mechs(g));
			sasl_glue_server_free(g);
		}
		if (set->tls != NULL && !s->tls)
			pop3_reply(s, "STLS");
	}
	pop3_reply(s, "IMPLEMENTATION mailpair-mra");
	pop3_reply(s, ".");
}

static void pop3_cmd_stls(struct pop3_session *s)
{
	struct bufferevent *nb;
	struct err err;

	if (s->l->set->tls == NULL || s->tls) {
		pop3_reply(s, "-ERR TLS not available.");
		return;
	}
	pop3_reply(s, "+OK Begin TLS negotiation now.");
	/* RFC 2595 §4: nothing the client sent before the handshake counts */
	evbuffer_drain(bufferevent_get_input(s->bev),
	               evbuffer_get_length(bufferevent_get_input(s->bev)));
	nb = tls_bev_starttls_server(s->bev, s->l->set->tls, &err);
	if (nb == NULL) {
		log_warn("pop3: STLS failed: rip=%s: %s", s->addr, err.msg);
		pop3_hangup(s, "STLS failed");
		return;
	}
	s->bev = nb;
	s->tls = 1;
	/* the filter writes its ciphertext to the socket bufferevent; bound
	 * it, so that POP3_OUT_HIGH still holds back a client that does not
	 * read */
	bufferevent_setwatermark(bufferevent_get_underlying(nb), EV_WRITE, 0,
	                         POP3_OUT_LOW);
	free(s->user);
	s->user = NULL;
}

/* ---- TRANSACTION ---- */

/* A message number the client may use: 1..n and not deleted. */
static int pop3_msgno(struct pop3_session *s, const char *a, size_t len,
                      size_t *idx_r)
{
	unsigned long n;

	if (pop3_cmd_number(a, len, &n) < 0 || n == 0 || n > s->nmsgs) {
		pop3_reply(s, "-ERR There's no message %.*s.",
		           (int)(len > 20 ? 20 : len), a);
		return -1;
	}
	if (s->deleted[n - 1]) {
		pop3_reply(s, "-ERR Message is deleted.");
		return -1;
	}
	*idx_r = n - 1;
	return 0;
}

static void pop3_cmd_stat(struct pop3_session *s)
{
	uint64_t size = 0;
	size_t i, n = 0;

	for (i = 0; i < s->nmsgs; i++)
		if (!s->deleted[i]) {
			n++;
			size += s->f->msgs[i].vsize;
		}
	pop3_reply(s, "+OK %zu %llu", n, (unsigned long long)size);
}

/* LIST and UIDL: one line or the scan listing (RFC 1939 §5, §7). */
static void pop3_cmd_listing(struct pop3_session *s, const struct pop3_cmd *c,
                             int uidl)
{
	const struct mstore_msg *m;
	size_t i;

	if (c->narg == 1) {
		if (pop3_msgno(s, c->arg[0], c->arg_len[0], &i) < 0)
			return;
		m = &s->f->msgs[i];
		if (uidl)
			pop3_reply(s, "+OK %zu %08X%08X", i + 1, m->uid,
			           s->f->uidvalidity);
		else
			pop3_reply(s, "+OK %zu %llu", i + 1,
			           (unsigned long long)m->vsize);
		return;
	}
	pop3_reply(s, "+OK");
	for (i = 0; i < s->nmsgs; i++) {
		if (s->deleted[i])
			continue;
		m = &s->f->msgs[i];
		if (uidl)
			pop3_reply(s, "%zu %08X%08X", i + 1, m->uid, s->f->uidvalidity);
		else
			pop3_reply(s, "%zu %llu", i + 1, (unsigned long long)m->vsize);
	}
	pop3_reply(s, ".");
}

static void pop3_cmd_dele(struct pop3_session *s, const struct pop3_cmd *c)
{
	size_t i;

	if (pop3_msgno(s, c->arg[0], c->arg_len[0], &i) < 0)
		return;
	s->deleted[i] = 1;
	pop3_reply(s, "+OK Marked to be deleted.");
}

static void pop3_cmd_rset(struct pop3_session *s)
{
	memset(s->deleted, 0, s->nmsgs);
	pop3_reply(s, "+OK");
}

/* Worker: read the message with CRLF line ends, keep the header and top
 * lines of the body for TOP, and dot-stuff it (RFC 1939 §3). */
static void pop3_read_work(void *arg)
{
	struct pop3_job *j = arg;
	struct buf raw;
	size_t p = 0, body_lines = 0;
	int in_body = 0;

	buf_init(&raw, 0);
	j->rc = mstore_msg_read(j->f, j->idx, 1, &raw, &j->err);
	if (j->rc < 0) {
		buf_free(&raw);
		return;
	}
	while (p < raw.len) {
		const char *nl = memchr(raw.p + p, '\n', raw.len - p);
		size_t e = nl ? (size_t)(nl - raw.p) + 1 : raw.len;

		if (in_body && j->top >= 0 && body_lines >= (size_t)j->top)
			break;
		if (raw.p[p] == '.' && buf_putc(&j->data, '.') < 0)
			goto oom;
		if (buf_append(&j->data, raw.p + p, e - p) < 0)
			goto oom;
		if (in_body)
			body_lines++;
		else if (e - p <= 2 && (raw.p[p] == '\r' || raw.p[p] == '\n'))
			in_body = 1;
		p = e;
	}
	if (j->data.len > 0 && j->data.p[j->data.len - 1] != '\n' &&
	    buf_puts(&j->data, "\r\n") < 0)
		goto oom;
	if (buf_puts(&j->data, ".\r\n") < 0)
		goto oom;
	buf_free(&raw);
	return;
oom:
	buf_free(&raw);
	j->rc = err_set(&j->err, 1, "out of memory");
}

static void pop3_free_cleanup(const void *data, size_t len, void *arg)
{
	free((void *)data);
}

static void pop3_read_done(void *arg)
{
	struct pop3_job *j = arg;
	struct pop3_session *s = pop3_session_find(j->sid);

	j->f = NULL;   /* borrowed from the session */
	if (s == NULL || s->dead) {
		pop3_job_free(j);
		if (s != NULL)
			pop3_resume(s);
		return;
	}
	if (j->rc < 0) {
		log_warn("pop3: read: user=<%s>, uid=%u: %s", s->user,
		         s->f->msgs[j->idx].uid, j->err.msg);
		pop3_reply(s, j->err.temp ? "-ERR [SYS/TEMP] Cannot read the message." :
		           "-ERR Message was deleted by another session.");
	} else {
		pop3_reply(s, "+OK %llu octets",
		           (unsigned long long)s->f->msgs[j->idx].vsize);
		if (s->bev != NULL && j->data.len > 0) {
			/* hand the bytes over instead of copying a large message */
			size_t n = j->data.len;
			char *p = buf_steal(&j->data);

			if (evbuffer_add_reference(bufferevent_get_output(s->bev), p, n,
			                           pop3_free_cleanup, NULL) < 0)
				free(p);
		}
		if (j->top < 0) {
			s->retr_count++;
			s->retr_bytes += s->f->msgs[j->idx].vsize;
		}
	}
	pop3_job_free(j);
	pop3_resume(s);
}

static void pop3_cmd_retr(struct pop3_session *s, const struct pop3_cmd *c)
{
	struct pop3_job *j;
	unsigned long lines = 0;
	size_t i;

	if (pop3_msgno(s, c->arg[0], c->arg_len[0], &i) < 0)
		return;
	if (c->id == POP3_CMD_TOP &&
	    pop3_cmd_number(c->arg[1], c->arg_len[1], &lines) < 0) {
		pop3_reply(s, "-ERR Invalid number of lines.");
		return;
	}
	j = pop3_job_new(POP3_JOB_READ);
	if (j == NULL) {
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		return;
	}
	j->f = s->f;
	j->idx = i;
	j->top = c->id == POP3_CMD_TOP ? (long)lines : -1;
	if (pop3_submit(s, j, pop3_read_work, pop3_read_done) < 0) {
		j->f = NULL;
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
	}
}

/* ---- UPDATE ---- */

static void pop3_update_work(void *arg)
{
	struct pop3_job *j = arg;

	j->rc = mstore_expunge(j->f, j->uids, j->nuids, 1, NULL, &j->err);
}

static void pop3_update_done(void *arg)
{
	struct pop3_job *j = arg;
	struct pop3_session *s = pop3_session_find(j->sid);

	j->f = NULL;
	if (s == NULL) {
		pop3_job_free(j);
		return;
	}
	s->busy = 0;
	if (j->rc < 0) {
		log_warn("pop3: update: user=<%s>: %s", s->user, j->err.msg);
		/* RFC 1939 §6: -ERR when some deleted messages stay */
		pop3_reply(s, "-ERR [SYS/TEMP] Some deleted messages were not removed.");
	} else {
		s->dele_count = j->nuids;
		pop3_reply(s, "+OK Logging out, messages deleted.");
	}
	pop3_job_free(j);
	if (s->dead) {
		pop3_log_end(s, "update");
		pop3_session_free(s);
		return;
	}
	pop3_hangup(s, "logout");
}

static void pop3_cmd_quit(struct pop3_session *s)
{
	struct pop3_job *j;
	size_t i, n = 0;

	if (s->state == POP3_ST_AUTH) {
		pop3_reply(s, "+OK Logging out.");
		pop3_hangup(s, "logout");
		return;
	}
	for (i = 0; i < s->nmsgs; i++)
		n += s->deleted[i];
	if (n == 0) {
		pop3_reply(s, "+OK Logging out.");
		pop3_hangup(s, "logout");
		return;
	}
	/* RFC 1939 §6: DELE takes effect here, in the UPDATE state only */
	pop3_set_state(s, POP3_ST_UPDATE);
	j = pop3_job_new(POP3_JOB_UPDATE);
	if (j != NULL)
		j->uids = calloc(n, sizeof(*j->uids));
	if (j == NULL || j->uids == NULL) {
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		pop3_hangup(s, "out of memory");
		return;
	}
	for (i = 0; i < s->nmsgs; i++)
		if (s->deleted[i])
			j->uids[j->nuids++] = s->f->msgs[i].uid;
	j->f = s->f;
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ);
	if (pop3_submit(s, j, pop3_update_work, pop3_update_done) < 0) {
		j->f = NULL;
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		pop3_hangup(s, "out of memory");
	}
}

/* ---- commands ---- */

static void pop3_dispatch(struct pop3_session *s, const char *line, size_t len)
{
	struct pop3_cmd c;
	enum pop3_rc rc;

	if (s->in_sasl) {
		pop3_sasl_response(s, line, len);
		return;
	}
	rc = pop3_cmd_parse(line, len, &c);
	if (rc == POP3_ERR_UNKNOWN) {
		pop3_reply(s, "-ERR Unknown command.");
		return;
	}
	if (rc != POP3_OK) {
		pop3_reply(s, "-ERR Invalid arguments.");
		return;
	}
	/* RFC 2449 §4: commands are at most 255 octets; only an AUTH
	 * initial response may be longer (RFC 5034 §4) */
	if (len > POP3_CMD_MAX_LINE - 2 && c.id != POP3_CMD_AUTH) {
		pop3_reply(s, "-ERR Line too long.");
		return;
	}
	switch (c.id) {
	case POP3_CMD_CAPA:
		pop3_cmd_capa(s);
		return;
	case POP3_CMD_QUIT:
		pop3_cmd_quit(s);
		return;
	default:
		break;
	}
	if (s->state == POP3_ST_AUTH) {
		switch (c.id) {
		case POP3_CMD_USER: pop3_cmd_user(s, &c); return;
		case POP3_CMD_PASS: pop3_cmd_pass(s, &c); return;
		case POP3_CMD_AUTH: pop3_cmd_auth(s, &c); return;
		case POP3_CMD_STLS: pop3_cmd_stls(s); return;
		default:
			pop3_reply(s, "-ERR Unknown command in AUTHORIZATION state.");
			return;
		}
	}
	switch (c.id) {
	case POP3_CMD_STAT: pop3_cmd_stat(s); return;
	case POP3_CMD_LIST: pop3_cmd_listing(s, &c, 0); return;
	case POP3_CMD_UIDL: pop3_cmd_listing(s, &c, 1); return;
	case POP3_CMD_RETR:
	case POP3_CMD_TOP:  pop3_cmd_retr(s, &c); return;
	case POP3_CMD_DELE: pop3_cmd_dele(s, &c); return;
	case POP3_CMD_RSET: pop3_cmd_rset(s); return;
	case POP3_CMD_NOOP: pop3_reply(s, "+OK"); return;
	default:
		pop3_reply(s, "-ERR Unknown command in TRANSACTION state.");
		return;
	}
}

/* Run the complete lines buffered, until a job is out. The line is
 * copied out (and the input drained) before it runs: STLS drops the input
 * and replaces the bufferevent. The line buffer is what pop3_cmd_line()
 * is told the limit is, so the copy and its NUL always fit. */
static void pop3_process(struct pop3_session *s)
{
	char line[POP3_LINE_BUF];

	while (!s->busy && s->bev != NULL && s->state != POP3_ST_CLOSING &&
	       s->state != POP3_ST_UPDATE) {
		struct evbuffer *in = bufferevent_get_input(s->bev);
		size_t len = evbuffer_get_length(in), n, ll, used;
		const char *p;
		enum pop3_rc rc;

		if (len == 0)
			return;
		if (pop3_pending_out(s->bev) > POP3_OUT_HIGH)
			return;   /* pop3_write_cb() resumes */
		n = len < sizeof(line) ? len : sizeof(line);
		p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
		if (p == NULL) {
			pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
			pop3_hangup(s, "out of memory");
			return;
		}
		rc = pop3_cmd_line(p, n, sizeof(line), &ll, &used);
		if (rc == POP3_NEED_MORE)
			return;
		if (rc != POP3_OK || ll >= sizeof(line) || used > n) {
			pop3_reply(s, "-ERR Line too long.");
			pop3_hangup(s, "line too long");
			return;
		}
		memcpy(line, p, ll);
		line[ll] = '\0';
		evbuffer_drain(in, used);
		pop3_dispatch(s, line, ll);
		explicit_bzero(line, ll);
	}
}

static void pop3_read_cb(struct bufferevent *bev, void *arg)
{
	pop3_process(arg);
}

/* The output fell below POP3_OUT_LOW: take the commands that waited. */
static void pop3_write_cb(struct bufferevent *bev, void *arg)
{
	struct pop3_session *s = arg;

	if (!s->busy && s->state != POP3_ST_CLOSING)
		pop3_process(s);
}

static void pop3_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct pop3_session *s = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT) {
		pop3_reply(s, "-ERR Disconnected for inactivity.");
		pop3_hangup(s, "timeout");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		char e[128];

		if (tls_bev_is_tls(bev) && tls_bev_error(bev, e, sizeof(e))[0] != '\0')
			log_info("pop3: TLS error: rip=%s: %s", s->addr, e);
	}
	pop3_log_end(s, "connection closed");
	s->state = POP3_ST_CLOSING;
	pop3_session_close(s);
}

static void pop3_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
                           struct sockaddr *sa, int salen, void *arg)
{
	struct pop3_listener *l = arg;
	const struct pop3_settings *set = l->set;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct pop3_session *s;
	struct timeval tv = { set->timeout ? set->timeout : 600, 0 };
	struct err err;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		evutil_closesocket(fd);
		return;
	}
	s->id = pop3_next_id++;
	s->l = l;
	listen_addr_string(sa, s->addr, sizeof(s->addr));
	sasl_glue_ipport(sa, s->remote_ipport, sizeof(s->remote_ipport));
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		sasl_glue_ipport((struct sockaddr *)&ss, s->local_ipport,
		                 sizeof(s->local_ipport));
	if (set->implicit_tls) {
		s->bev = tls_bev_accept(l->base, fd, set->tls, &err);
		s->tls = 1;
	} else {
		s->bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (s->bev == NULL) {
		log_warn("pop3: cannot start session: rip=%s", s->addr);
		evutil_closesocket(fd);
		free(s);
		return;
	}
	s->next = pop3_sessions;
	pop3_sessions = s;
	bufferevent_setcb(s->bev, pop3_read_cb, pop3_write_cb, pop3_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, POP3_READ_HIGH);
	bufferevent_setwatermark(s->bev, EV_WRITE, POP3_OUT_LOW, 0);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_info("pop3: connect from %s%s", s->addr, s->tls ? " (TLS)" : "");
	pop3_reply(s, "+OK %s POP3 ready.", set->hostname ? set->hostname : "mra");
}

int pop3_listener_start(struct event_base *base, struct work_pool *pool,
                        int fd, const struct pop3_settings *set,
                        struct err *err)
{
	struct pop3_listener *l;

	if (set->implicit_tls && set->tls == NULL)
		return err_set(err, 0, "POP3S needs a TLS context");
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return err_set(err, 1, "out of memory");
	l->base = base;
	l->pool = pool;
	l->set = set;
	l->lev = evconnlistener_new(base, pop3_accept_cb, l, LEV_OPT_CLOSE_ON_FREE,
	                            -1, fd);
	if (l->lev == NULL) {
		free(l);
		return err_set(err, 1, "evconnlistener_new failed");
	}
	l->next = pop3_listeners;
	pop3_listeners = l;
	return 0;
}

void pop3_shutdown(void)
{
	struct pop3_session *s, *next;

	while (pop3_listeners != NULL) {
		struct pop3_listener *l = pop3_listeners;

		pop3_listeners = l->next;
		evconnlistener_free(l->lev);
		free(l);
	}
	for (s = pop3_sessions; s != NULL; s = next) {
		next = s->next;
		if (s->busy) {
			/* its job's done frees it (work_pool_free runs them) */
			s->dead = 1;
			if (s->bev != NULL) {
				bufferevent_free(s->bev);
				s->bev = NULL;
			}
			continue;
		}
		pop3_session_free(s);
	}
}
