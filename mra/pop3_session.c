/* pop3_session: POP3 sessions on the connection core (shared/conn.h), in
 * the RFC 1939 states AUTHORIZATION -> TRANSACTION -> UPDATE. The core
 * owns the connection's life (open, BUSY while a job is out, CLOSING while
 * the last reply flushes); this file owns the protocol state and the
 * session. Password checks, SASL steps, mailbox opening, message reads and
 * the UPDATE expunge run on the worker pool; the session is BUSY
 * meanwhile (it reads no commands and is not freed before conn_ready()),
 * and the job's result finds its session again by id. A job out when the
 * server stops takes over what it borrowed from the session and frees it
 * when it is back. Failed logins are counted and delayed by
 * shared/loginfail, per address and per (address, user). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include "buf.h"
#include "conn.h"
#include "log.h"
#include "loginfail.h"
#include "mstore.h"
#include "mra_userip.h"
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

/* RFC 1939 §3 */
enum pop3_state {
	POP3_ST_AUTHORIZATION,
	POP3_ST_TRANSACTION,
	POP3_ST_UPDATE
};

struct pop3_server {
	struct event_base *base;
	struct work_pool *pool;
	const struct pop3_settings *set;
	struct conn_server *cs;
};

struct pop3_job;

struct pop3_session {
	uint64_t id;
	struct pop3_server *srv;
	struct conn *c;
	enum pop3_state state;
	const char *end_why;      /* why we close: for the disconnect log */
	char *user;               /* USER name, then the logged-in user */
	unsigned auth_fails;
	/* an AUTH exchange is under way (lines are SASL responses) while
	 * this is set and no job is out */
	struct sasl_glue_server *sasl;
	/* the job out on the pool or waiting for loginfail's verdict */
	struct pop3_job *job;
	struct mstore *ms;
	struct mstore_folder *f;
	size_t nmsgs;             /* the maildrop as it was at login */
	unsigned char *deleted;
	unsigned long retr_count, dele_count;
	uint64_t retr_bytes;
};

enum pop3_job_kind { POP3_JOB_PASS, POP3_JOB_SASL_START, POP3_JOB_SASL_STEP,
                     POP3_JOB_READ, POP3_JOB_UPDATE };

struct pop3_job {
	uint64_t sid;
	enum pop3_job_kind kind;
	struct pop3_server *srv;  /* not used once orphan */
	const struct pop3_settings *set;
	/* the session's (borrowed) until orphan; owned after */
	struct sasl_glue_server *sasl;
	int orphan;               /* its session is gone: free all when back */
	int on_pool;              /* submitted (else waiting for loginfail) */
	char *user, *pass, *mech, *in, *out;
	char *tried;              /* SASL: the authentication id tried */
	enum sasl_glue_rc src;
	enum passdb_rc prc;
	int rc;                   /* 0, -1: see err */
	struct err err;
	struct mstore *ms;
	struct mstore_folder *f;  /* READ/UPDATE: the session's, borrowed
	                             until orphan (then ms and f are owned) */
	int owns_f;
	size_t idx;
	long top;                 /* -1: RETR */
	struct buf data;
	uint32_t *uids;
	size_t nuids;
};

static void pop3_input(struct conn *c, void *sess, void *ctx);

/* ---- session plumbing ---- */

static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_vline(s->c, fmt, ap);
	va_end(ap);
}

/* Hang up once the last reply is out (the core flushes, then closes). */
static void pop3_hangup(struct pop3_session *s, const char *why)
{
	if (s->end_why == NULL)
		s->end_why = why;
	conn_close(s->c);
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
	free(j->tried);
	free(j->mech);
	free(j->out);
	free(j->uids);
	buf_free(&j->data);
	if (j->orphan)
		sasl_glue_server_free(j->sasl);
	if (j->kind == POP3_JOB_READ || j->kind == POP3_JOB_UPDATE) {
		if (!j->owns_f) {
			j->f = NULL;
			j->ms = NULL;
		}
	}
	mstore_folder_free(j->f);
	mstore_free(j->ms);
	free(j);
}

/* Run a job on the pool; the conn is BUSY until pop3_resume(). */
static int pop3_submit(struct pop3_session *s, struct pop3_job *j,
                       void (*fn)(void *), void (*done)(void *))
{
	j->sid = s->id;
	j->srv = s->srv;
	j->set = s->srv->set;
	if (work_submit(s->srv->pool, fn, done, j) < 0)
		return -1;
	j->on_pool = 1;
	s->job = j;
	conn_busy(s->c);
	return 0;
}

/* The session of a job that is back, or NULL (the job is then freed):
 * the session may be gone (server stopping). */
static struct pop3_session *pop3_job_session(struct pop3_job *j)
{
	struct conn *c;
	struct pop3_session *s;

	if (j->orphan) {
		pop3_job_free(j);
		return NULL;
	}
	c = conn_find(j->srv->cs, j->sid);
	s = c != NULL ? conn_session(c) : NULL;
	if (s == NULL || s->job != j) {
		pop3_job_free(j);   /* cannot happen: closed() orphans it */
		return NULL;
	}
	s->job = NULL;
	return s;
}

/* Back from a job or a wait: go on with what the client pipelined (the
 * core hands it to pop3_input() from the loop). s may be freed here. */
static void pop3_resume(struct pop3_session *s)
{
	(void)conn_ready(s->c);
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
		u = sasl_glue_server_attempted_user(j->sasl);
		if (u != NULL)
			j->tried = strndup(u, 255);
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

/* Back to AUTHORIZATION with no mailbox. */
static void pop3_drop_mailbox(struct pop3_session *s)
{
	mstore_folder_free(s->f);
	mstore_free(s->ms);
	s->f = NULL;
	s->ms = NULL;
	free(s->deleted);
	s->deleted = NULL;
	s->nmsgs = 0;
	free(s->user);
	s->user = NULL;
}

static void pop3_login_ok(struct pop3_session *s, struct pop3_job *j,
                          const char *method)
{
	const struct pop3_settings *set = s->srv->set;
	int rc;

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
	/* Dovecot's mail_max_userip_connections; held while the state is
	 * TRANSACTION or UPDATE, released in pop3_closed() */
	if (set->userip != NULL &&
	    (rc = mra_userip_acquire(set->userip, s->user,
	                             conn_addr(s->c))) != 0) {
		log_info("pop3: login refused: user=<%s>, rip=%s: %s", s->user,
		         conn_addr(s->c), rc > 0 ? "too many sessions from this "
		         "address" : "out of memory");
		/* RFC 2449 §8.1.2: the login was right, the maildrop is in
		 * use (by too many sessions) */
		pop3_reply(s, rc > 0 ? "-ERR [IN-USE] Maximum number of "
		           "connections from user+IP exceeded." :
		           "-ERR [SYS/TEMP] Out of memory.");
		pop3_drop_mailbox(s);
		return;
	}
	s->state = POP3_ST_TRANSACTION;
	log_info("pop3: login: user=<%s>, rip=%s, method=%s, tls=%s, msgs=%zu",
	         s->user, conn_addr(s->c), method,
	         conn_tls(s->c) ? "yes" : "no", s->nmsgs);
	pop3_reply(s, "+OK Logged in.");
}

/* The user name a job's attempt counts for. */
static const char *pop3_job_login(const struct pop3_job *j)
{
	if (j->kind == POP3_JOB_PASS)
		return j->user;
	return j->tried != NULL ? j->tried : j->user;
}

static const char *pop3_job_mech(const struct pop3_job *j)
{
	const char *m;

	if (j->kind == POP3_JOB_PASS)
		return "USER";
	m = j->sasl != NULL ? sasl_glue_server_mech(j->sasl) : NULL;
	return m != NULL ? m : "SASL";
}

/* A failed login: counted and logged (loginfail), answered at once: the
 * delay was waited before (loginfail_check). */
static void pop3_auth_failed(struct pop3_session *s, struct pop3_job *j)
{
	const struct pop3_settings *set = s->srv->set;
	const char *user = pop3_job_login(j);

	s->auth_fails++;
	if (set->loginfail != NULL)
		loginfail_record(set->loginfail, conn_addr(s->c), user, 0);
	loginfail_log_mra("pop3", conn_addr(s->c), pop3_job_mech(j), user);
	free(s->user);
	s->user = NULL;
	pop3_reply(s, "-ERR [AUTH] Authentication failed.");
	if (s->auth_fails >= POP3_MAX_AUTH_FAILS)
		pop3_hangup(s, "too many authentication failures");
}

/* The end of a login attempt whose delay (if any) is waited: reply. The
 * job is freed; the session's SASL exchange, if any, has ended. */
static void pop3_auth_finish(struct pop3_session *s, struct pop3_job *j)
{
	const struct pop3_settings *set = s->srv->set;
	int ok = -1;   /* -1: nothing to record */

	if (j->kind == POP3_JOB_PASS) {
		if (j->prc == PASSDB_FAIL) {
			ok = 0;
		} else if (j->prc == PASSDB_TEMPFAIL) {
			log_warn("pop3: auth tempfail: user=<%s>, rip=%s: %s",
			         j->user, conn_addr(s->c), j->err.msg);
			pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication "
			           "failure.");
		} else {
			ok = 1;
		}
	} else {
		ok = j->src == SASL_GLUE_OK ? 1 : 0;
	}
	if (ok == 0) {
		pop3_auth_failed(s, j);
	} else if (ok == 1) {
		if (set->loginfail != NULL)
			loginfail_record(set->loginfail, conn_addr(s->c),
			                 pop3_job_login(j), 1);
		if (j->rc < 0) {
			log_warn("pop3: mailbox: user=<%s>, rip=%s: %s", j->user,
			         conn_addr(s->c), j->err.msg);
			pop3_reply(s, "-ERR [SYS/TEMP] Mailbox unavailable.");
		} else {
			pop3_login_ok(s, j, pop3_job_mech(j));
		}
	}
	if (j->kind != POP3_JOB_PASS) {
		sasl_glue_server_free(s->sasl);
		s->sasl = NULL;
		j->sasl = NULL;
	}
	pop3_job_free(j);
}

static void pop3_auth_done(void *arg);

/* loginfail answered (its delay waited): refuse, run the password job
 * (PASS), or reveal the SASL result (AUTH). */
static void pop3_loginfail_cb(void *ctx, uint64_t id,
                              const struct loginfail_answer *a)
{
	struct pop3_server *srv = ctx;
	struct conn *c = conn_find(srv->cs, id);
	struct pop3_session *s = c != NULL ? conn_session(c) : NULL;
	struct pop3_job *j;

	if (s == NULL || s->job == NULL || s->job->on_pool)
		return;   /* gone: closed() freed the job */
	j = s->job;
	s->job = NULL;
	if (a->verdict == LOGINFAIL_TEMP_REFUSE) {
		/* RFC 3206 §4: SYS/TEMP, a temporary condition, try later;
		 * AUTH would tell the client that its password is wrong
		 * (none was checked) and to stop retrying, IN-USE (RFC 2449
		 * §8.1.1) that the login succeeded and the maildrop is
		 * locked */
		loginfail_log_mra_refused("pop3", conn_addr(c),
		                          pop3_job_login(j), a);
		s->auth_fails++;
		free(s->user);
		s->user = NULL;
		if (j->kind != POP3_JOB_PASS) {
			sasl_glue_server_free(s->sasl);
			s->sasl = NULL;
			j->sasl = NULL;
		}
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Too many failed logins, "
		           "try later.");
		if (s->auth_fails >= POP3_MAX_AUTH_FAILS)
			pop3_hangup(s, "too many authentication failures");
		pop3_resume(s);
		return;
	}
	if (j->kind == POP3_JOB_PASS) {
		if (conn_gone(c)) {
			pop3_job_free(j);
		} else if (work_submit(srv->pool, pop3_auth_work, pop3_auth_done,
		                       j) < 0) {
			pop3_job_free(j);
			pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		} else {
			j->on_pool = 1;
			s->job = j;   /* the conn stays BUSY */
			return;
		}
		pop3_resume(s);
		return;
	}
	pop3_auth_finish(s, j);
	pop3_resume(s);
}

/* Ask loginfail, keeping j in the session (the conn BUSY) until its
 * callback. 0, or -1 (out of memory; j untouched). */
static int pop3_loginfail_wait(struct pop3_session *s, struct pop3_job *j)
{
	if (loginfail_check(s->srv->set->loginfail, conn_addr(s->c),
	                    pop3_job_login(j), pop3_loginfail_cb, s->srv,
	                    s->id) < 0)
		return -1;
	j->on_pool = 0;
	s->job = j;
	conn_busy(s->c);   /* no-op when BUSY already (after a SASL job) */
	return 0;
}

static void pop3_auth_done(void *arg)
{
	struct pop3_job *j = arg;
	struct pop3_session *s = pop3_job_session(j);

	if (s == NULL)
		return;
	if (j->kind == POP3_JOB_PASS) {
		pop3_auth_finish(s, j);   /* loginfail was asked before */
		pop3_resume(s);
		return;
	}
	switch (j->src) {
	case SASL_GLUE_CONTINUE:
		pop3_reply(s, "+ %s", j->out ? j->out : "");
		j->sasl = NULL;
		pop3_job_free(j);
		pop3_resume(s);
		return;
	case SASL_GLUE_OK:
	case SASL_GLUE_FAIL:
		/* the result is revealed after loginfail's delay, which does
		 * not depend on it */
		if (s->srv->set->loginfail == NULL || conn_gone(s->c)) {
			pop3_auth_finish(s, j);
		} else if (pop3_loginfail_wait(s, j) < 0) {
			pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication "
			           "failure.");
			sasl_glue_server_free(s->sasl);
			s->sasl = NULL;
			j->sasl = NULL;
			pop3_job_free(j);
		} else {
			return;   /* pop3_loginfail_cb() goes on */
		}
		pop3_resume(s);
		return;
	case SASL_GLUE_TEMPFAIL:
		pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication failure.");
		break;
	case SASL_GLUE_NOMECH:
		pop3_reply(s, "-ERR Unsupported authentication mechanism.");
		break;
	default:
		pop3_reply(s, "-ERR Authentication aborted.");
		break;
	}
	sasl_glue_server_free(s->sasl);
	s->sasl = NULL;
	j->sasl = NULL;
	pop3_job_free(j);
	pop3_resume(s);
}

/* RFC 2595 §2 / Dovecot disable_plaintext_auth: no passwords in clear. */
static int pop3_plain_ok(struct pop3_session *s)
{
	return conn_tls(s->c) || !s->srv->set->disable_plaintext_auth;
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
	int rc;

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
	    (j->pass = strndup(c->arg[0], c->arg_len[0])) == NULL) {
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		return;
	}
	j->sid = s->id;
	j->srv = s->srv;
	j->set = s->srv->set;
	/* the delay is waited before the password is checked (the name
	 * comes first): the job, with the password, waits in the session */
	if (s->srv->set->loginfail != NULL)
		rc = pop3_loginfail_wait(s, j);
	else
		rc = pop3_submit(s, j, pop3_auth_work, pop3_auth_done);
	if (rc < 0) {
		pop3_job_free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
	}
}

static struct sasl_glue_server *pop3_sasl_new(struct pop3_session *s)
{
	struct err err;
	int ssf = tls_srv_ssf(conn_tls_srv(s->c));

	return sasl_glue_server_new("pop", s->srv->set->hostname,
	                            conn_local_ipport(s->c),
	                            conn_remote_ipport(s->c), ssf, &err);
}

static void pop3_cmd_auth(struct pop3_session *s, const struct pop3_cmd *c)
{
	struct pop3_job *j;

	if (!s->srv->set->sasl || !pop3_plain_ok(s)) {
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
		sasl_glue_server_free(s->sasl);
		s->sasl = NULL;
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
		return;
	}
	j->sasl = s->sasl;
	if (pop3_submit(s, j, pop3_auth_work, pop3_auth_done) < 0) {
		j->sasl = NULL;
		pop3_job_free(j);
		sasl_glue_server_free(s->sasl);
		s->sasl = NULL;
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory.");
	}
}

static void pop3_sasl_end(struct pop3_session *s, const char *reply)
{
	sasl_glue_server_free(s->sasl);
	s->sasl = NULL;
	pop3_reply(s, "%s", reply);
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
			pop3_sasl_end(s, "-ERR Invalid authentication response.");
			return;
		}
	j = pop3_job_new(POP3_JOB_SASL_STEP);
	if (j == NULL || (j->in = strndup(line, len)) == NULL) {
		pop3_job_free(j);
		pop3_sasl_end(s, "-ERR [SYS/TEMP] Out of memory.");
		return;
	}
	j->sasl = s->sasl;
	if (pop3_submit(s, j, pop3_auth_work, pop3_auth_done) < 0) {
		j->sasl = NULL;
		pop3_job_free(j);
		pop3_sasl_end(s, "-ERR [SYS/TEMP] Out of memory.");
	}
}

static void pop3_cmd_capa(struct pop3_session *s)
{
	const struct pop3_settings *set = s->srv->set;

	pop3_reply(s, "+OK Capability list follows");
	pop3_reply(s, "CAPA");
	pop3_reply(s, "TOP");
	pop3_reply(s, "UIDL");
	pop3_reply(s, "RESP-CODES");
	pop3_reply(s, "AUTH-RESP-CODE");
	pop3_reply(s, "PIPELINING");
	if (s->state == POP3_ST_AUTHORIZATION) {
		if (pop3_plain_ok(s))
			pop3_reply(s, "USER");
		if (set->sasl && pop3_plain_ok(s)) {
			struct sasl_glue_server *g = pop3_sasl_new(s);

			if (g != NULL && sasl_glue_server_mechs(g)[0] != '\0')
				pop3_reply(s, "SASL %s", sasl_glue_server_mechs(g));
			sasl_glue_server_free(g);
		}
		if (set->tls != NULL && !conn_tls(s->c))
			pop3_reply(s, "STLS");
	}
	pop3_reply(s, "IMPLEMENTATION mailpair-mra");
	pop3_reply(s, ".");
}

static void pop3_cmd_stls(struct pop3_session *s)
{
	struct err err;

	if (s->srv->set->tls == NULL || conn_tls(s->c)) {
		pop3_reply(s, "-ERR TLS not available.");
		return;
	}
	pop3_reply(s, "+OK Begin TLS negotiation now.");
	/* RFC 2595 §4: conn drops what the client sent after STLS */
	if (conn_starttls(s->c, &err) < 0) {
		log_warn("pop3: STLS failed: rip=%s: %s", conn_addr(s->c), err.msg);
		pop3_hangup(s, "STLS failed");
		return;
	}
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
	struct pop3_session *s = pop3_job_session(j);
	struct bufferevent *bev;

	if (s == NULL)
		return;
	if (j->rc < 0) {
		log_warn("pop3: read: user=<%s>, uid=%u: %s", s->user,
		         s->f->msgs[j->idx].uid, j->err.msg);
		pop3_reply(s, j->err.temp ? "-ERR [SYS/TEMP] Cannot read the message." :
		           "-ERR Message was deleted by another session.");
	} else {
		pop3_reply(s, "+OK %llu octets",
		           (unsigned long long)s->f->msgs[j->idx].vsize);
		bev = conn_bev(s->c);
		if (bev != NULL && conn_state(s->c) != CONN_ST_CLOSING &&
		    j->data.len > 0) {
			/* hand the bytes over instead of copying a large message
			 * (conn_write() would copy) */
			size_t n = j->data.len;
			char *p = buf_steal(&j->data);

			conn_flush(s->c);   /* the +OK line first */
			if (evbuffer_add_reference(bufferevent_get_output(bev), p, n,
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
	struct pop3_session *s = pop3_job_session(j);

	if (s == NULL)
		return;
	if (j->rc < 0) {
		log_warn("pop3: update: user=<%s>: %s", s->user, j->err.msg);
		/* RFC 1939 §6: -ERR when some deleted messages stay */
		pop3_reply(s, "-ERR [SYS/TEMP] Some deleted messages were not removed.");
	} else {
		s->dele_count = j->nuids;
		pop3_reply(s, "+OK Logging out, messages deleted.");
	}
	pop3_job_free(j);
	pop3_hangup(s, "logout");
	pop3_resume(s);
}

static void pop3_cmd_quit(struct pop3_session *s)
{
	struct pop3_job *j;
	size_t i, n = 0;

	if (s->state == POP3_ST_TRANSACTION)
		for (i = 0; i < s->nmsgs; i++)
			n += s->deleted[i];
	if (n == 0) {
		pop3_reply(s, "+OK Logging out.");
		pop3_hangup(s, "logout");
		return;
	}
	/* RFC 1939 §6: DELE takes effect here, in the UPDATE state only */
	s->state = POP3_ST_UPDATE;
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
	if (pop3_submit(s, j, pop3_update_work, pop3_update_done) < 0) {
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

	if (s->sasl != NULL) {
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
	if (s->state == POP3_ST_AUTHORIZATION) {
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

/* ---- conn callbacks ---- */

/* Run the complete lines buffered while the conn is OPEN (a job makes it
 * BUSY, a hang-up CLOSING). The line is copied out (and the input
 * drained) before it runs: STLS replaces the bufferevent. The line buffer
 * is what pop3_cmd_line() is told the limit is, so the copy and its NUL
 * always fit. */
static void pop3_input(struct conn *c, void *sess, void *ctx)
{
	struct pop3_session *s = sess;
	char line[POP3_LINE_BUF];

	while (conn_state(c) == CONN_ST_OPEN && s->state != POP3_ST_UPDATE) {
		struct bufferevent *bev = conn_bev(c);
		struct evbuffer *in;
		size_t len, n, ll, used;
		const char *p;
		enum pop3_rc rc;

		if (bev == NULL)
			return;
		in = bufferevent_get_input(bev);
		len = evbuffer_get_length(in);
		if (len == 0)
			return;
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
		/* output over the mark (pipelined RETRs never read) or the
		 * command rate: the core calls again later */
		if (conn_pace(c))
			return;
		memcpy(line, p, ll);
		line[ll] = '\0';
		evbuffer_drain(in, used);
		pop3_dispatch(s, line, ll);
		explicit_bzero(line, ll);
	}
}

static void *pop3_open(struct conn *c, void *ctx)
{
	struct pop3_server *srv = ctx;
	struct pop3_session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		log_warn("pop3: cannot start session: rip=%s: out of memory",
		         conn_addr(c));
		return NULL;
	}
	s->srv = srv;
	s->c = c;
	s->id = conn_id(c);
	s->state = POP3_ST_AUTHORIZATION;
	log_info("pop3: connect from %s%s", conn_addr(c),
	         conn_tls(c) ? " (TLS)" : "");
	pop3_reply(s, "+OK %s POP3 ready.",
	           srv->set->hostname ? srv->set->hostname : "mra");
	return s;
}

/* RFC 2449 §8, RFC 3206 §4: a temporary condition, try again later. */
static void pop3_refuse(struct conn *c, enum conn_refusal why, void *ctx)
{
	conn_printf(c, "%s\r\n", why == CONN_REFUSE_ADDR ?
	            "-ERR [SYS/TEMP] Too many connections from your address" :
	            "-ERR [SYS/TEMP] Too many connections");
}

static void pop3_timeout(struct conn *c, void *sess, void *ctx)
{
	struct pop3_session *s = sess;

	pop3_reply(s, "-ERR Disconnected for inactivity.");
	if (s->end_why == NULL)
		s->end_why = "timeout";
}

static void pop3_closed(struct conn *c, void *sess, int gone, const char *why,
                        void *ctx)
{
	struct pop3_session *s = sess;
	struct pop3_job *j = s->job;
	const char *end = gone || s->end_why == NULL ? why : s->end_why;

	if (s->state == POP3_ST_AUTHORIZATION && s->f == NULL)
		log_info("pop3: disconnect: %s, rip=%s", end, conn_addr(c));
	else
		log_info("pop3: disconnect: %s, user=<%s>, rip=%s, retr=%lu/%llu, "
		         "del=%lu/%zu", end, s->user ? s->user : "", conn_addr(c),
		         s->retr_count, (unsigned long long)s->retr_bytes,
		         s->dele_count, s->nmsgs);
	if (j != NULL && !j->on_pool) {
		/* waiting for loginfail, whose callback will not find us */
		if (j->sasl == s->sasl)
			j->sasl = NULL;
		pop3_job_free(j);
	} else if (j != NULL) {
		/* on the pool (the server stops): the job takes over what
		 * it borrowed and frees it when back */
		j->orphan = 1;
		if (j->sasl != NULL && j->sasl == s->sasl)
			s->sasl = NULL;
		if (j->kind == POP3_JOB_READ || j->kind == POP3_JOB_UPDATE) {
			j->owns_f = 1;
			j->ms = s->ms;
			s->f = NULL;
			s->ms = NULL;
		}
	}
	if (s->state != POP3_ST_AUTHORIZATION && s->srv->set->userip != NULL)
		mra_userip_release(s->srv->set->userip, s->user, conn_addr(c));
	sasl_glue_server_free(s->sasl);
	mstore_folder_free(s->f);
	mstore_free(s->ms);
	free(s->deleted);
	free(s->user);
	free(s);
}

static const struct conn_ops pop3_conn_ops = {
	.open = pop3_open,
	.refuse = pop3_refuse,
	.input = pop3_input,
	.timeout = pop3_timeout,
	.closed = pop3_closed,
};

/* ---- server ---- */

struct pop3_server *pop3_server_new(struct event_base *base,
                                    struct work_pool *pool,
                                    const struct pop3_settings *set,
                                    struct err *err)
{
	struct pop3_server *srv = calloc(1, sizeof(*srv));
	struct conn_settings cs;

	if (srv == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	srv->base = base;
	srv->pool = pool;
	srv->set = set;
	memset(&cs, 0, sizeof(cs));
	cs.service = "pop3";
	cs.tls = set->tls;
	cs.max_total = set->max_conns;
	cs.max_per_addr = set->max_conns_per_addr;
	cs.timeout = (int)(set->timeout ? set->timeout : 600);
	cs.busy_detached = 0;   /* jobs borrow the session's folder */
	cs.read_hiwat = POP3_READ_HIGH;
	srv->cs = conn_server_new(base, &cs, &pop3_conn_ops, srv, err);
	if (srv->cs == NULL) {
		free(srv);
		return NULL;
	}
	return srv;
}

int pop3_server_listen(struct pop3_server *srv, int fd, int implicit_tls,
                       struct err *err)
{
	if (implicit_tls && srv->set->tls == NULL)
		return err_set(err, 0, "POP3S needs a TLS context");
	return conn_server_listen(srv->cs, fd,
	                          implicit_tls ? CONN_LISTEN_TLS : 0, err);
}

void pop3_server_stop_listening(struct pop3_server *srv)
{
	conn_server_stop_listening(srv->cs);
}

unsigned pop3_server_count(const struct pop3_server *srv)
{
	return conn_server_count(srv->cs);
}

void pop3_server_free(struct pop3_server *srv)
{
	if (srv == NULL)
		return;
	conn_server_free(srv->cs);
	free(srv);
}
