/* imap_login: the commands that take a session from a connection to a
 * logged-in user (RFC 3501 §6.2): STARTTLS, LOGIN and AUTHENTICATE (Cyrus
 * SASL, RFC 4959 initial responses), with the failed-login policy
 * (loginfail, checked before any result is revealed) and
 * mail_max_userip_connections. Password checks and SASL steps run on the
 * worker pool. Part of the session layer (imap_session_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conn.h"
#include "imap_session_int.h"
#include "log.h"
#include "loginfail.h"
#include "mra_userip.h"
#include "mstore.h"
#include "passdb.h"
#include "sasl_glue.h"
#include "work.h"

static void imap_login_sasl_checked(void *ctx, uint64_t id,
				    const struct loginfail_answer *ans);

/* A failed login for command c (the loginfail check already waited):
 * log line for fail2ban, loginfail_record(), "tag NO reply" and finish c
 * (with BYE after max_auth_fails on this connection). */
static void imap_login_failed(struct imap_cmd *c, const char *user,
			      const char *mech, const char *reply)
{
	struct imap_session *s = c->s;

	loginfail_log_mra("imap", s->addr, mech, user);
	if (s->set->loginfail != NULL)
		loginfail_record(s->set->loginfail, s->addr, user, 0);
	s->auth_fails++;
	imap_cmd_no(c, "%s", reply);
	if (s->set->max_auth_fails > 0 &&
	    s->auth_fails >= s->set->max_auth_fails) {
		/* the NO first, then the BYE that ends the connection:
		 * both in order in out, no separate tagged reply */
		buf_append(&c->out, c->tagged.p, c->tagged.len);
		buf_reset(&c->tagged);
		buf_puts(&c->out, "* BYE Too many invalid authentication "
			 "attempts\r\n");
		c->logout = 1;
	}
	imap_session_cmd_done(c);
}

void imap_login_starttls(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct err err;

	if (s->set->tls == NULL || conn_tls(s->conn)) {
		imap_cmd_bad(c, conn_tls(s->conn) ? "TLS is already active." :
			     "STARTTLS is not available.");
		imap_session_cmd_done(c);
		return;
	}
	imap_session_printf(s, "%s OK Begin TLS negotiation now.\r\n", c->tag);
	/* RFC 3501 §6.2.1 / RFC 2595 §3.1: conn_starttls() discards
	 * anything pipelined after STARTTLS in plaintext (CVE-2011-0411).
	 * The output under the TLS filter counts in conn_output_len(), so
	 * conn_pace() holds back a client that does not read, as before. */
	if (conn_starttls(s->conn, &err) < 0) {
		log_warn("imap: client=%s: STARTTLS: %s", s->addr, err.msg);
		c->logout = 1;
	} else {
		/* the new bufferevent: the state's timeout again */
		imap_session_enter(s, s->st);
	}
	imap_session_cmd_done(c);
}

/* ---- LOGIN and AUTHENTICATE ---- */

struct imap_login_auth {
	struct sasl_glue_server *sasl;
	char mech[32];
	char *user;
	char *pass;                  /* LOGIN only */
	char *in;                    /* SASL response (base64) */
	char *out;                   /* SASL challenge (base64) */
	int started;
	int rc;                      /* passdb_rc or sasl_glue_rc */
	struct err err;
	struct mstore *ms;
	uint64_t quota, quota_used;
	const struct imap_settings *set;
};

static void imap_login_auth_free(void *p)
{
	struct imap_login_auth *a = p;

	if (a == NULL)
		return;
	sasl_glue_server_free(a->sasl);
	free(a->user);
	if (a->pass != NULL) {
		explicit_bzero(a->pass, strlen(a->pass));
		free(a->pass);
	}
	if (a->in != NULL) {
		explicit_bzero(a->in, strlen(a->in));
		free(a->in);
	}
	free(a->out);
	mstore_free(a->ms);
	free(a);
}

/* Worker: open the authenticated user's mailbox. */
static int imap_login_auth_open(struct imap_login_auth *a)
{
	char root[4096];

	if (a->set->mailbox_fn(a->set->mailbox_arg, a->user, root,
			       sizeof(root), &a->err) < 0)
		return -1;
	a->ms = mstore_open(root, &a->err);
	if (a->ms == NULL)
		return -1;
	if (a->set->quota_fn != NULL &&
	    a->set->quota_fn(a->set->quota_arg, a->user, &a->quota,
			     &a->err) < 0)
		a->quota = 0;
	if (a->quota > 0) {
		uint64_t count;
		struct err err;

		if (mstore_quota_usage(a->ms, &a->quota_used, &count, &err) < 0)
			a->quota_used = 0;
	}
	return 0;
}

static void imap_login_login_run(void *job)
{
	struct imap_cmd *c = job;
	struct imap_login_auth *a = c->priv;

	err_clear(&a->err);
	a->rc = passdb_verify(a->set->passdb, a->user, a->pass, &a->err);
	if (a->rc == PASSDB_OK && imap_login_auth_open(a) < 0)
		a->rc = PASSDB_TEMPFAIL;
}

/* Logged in: the session takes the mailbox. */
static void imap_login_success(struct imap_cmd *c, const char *method)
{
	struct imap_session *s = c->s;
	struct imap_login_auth *a = c->priv;
	struct imap_user *u;
	int r = 0;

	if (s->set->loginfail != NULL)
		loginfail_record(s->set->loginfail, s->addr, a->user, 1);
	/* Dovecot's mail_max_userip_connections, checked once the user is
	 * known to be who they say */
	if (s->set->userip != NULL &&
	    (r = mra_userip_acquire(s->set->userip, a->user, s->addr)) != 0) {
		if (r > 0) {
			log_info("imap: client=%s, user=<%s>: refused, "
				 "mail_max_userip_connections=%u", s->addr,
				 a->user, mra_userip_max(s->set->userip));
			imap_cmd_no(c, "[UNAVAILABLE] Maximum number of "
				    "connections from user+IP exceeded "
				    "(mail_max_userip_connections=%u)",
				    mra_userip_max(s->set->userip));
		} else {
			imap_cmd_no(c, "[UNAVAILABLE] Out of memory.");
		}
		imap_session_cmd_done(c);
		return;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL) {
		if (s->set->userip != NULL)
			mra_userip_release(s->set->userip, a->user, s->addr);
		imap_cmd_no(c, "[UNAVAILABLE] Out of memory.");
		imap_session_cmd_done(c);
		return;
	}
	s->userip_held = s->set->userip != NULL;
	u->name = a->user;
	a->user = NULL;
	u->ms = a->ms;
	a->ms = NULL;
	u->quota_limit = a->quota;
	u->quota_used = a->quota_used;
	s->u = u;
	c->u = u;
	/* the map's limit, for COPY's and APPEND's checks under quota_lock
	 * and for maildirsize's definition line */
	mstore_set_quota(u->ms, u->quota_limit);
	s->auth_fails = 0;
	log_info("imap: login: client=%s, user=<%s>, method=%s%s", s->addr,
		 u->name, method, conn_tls(s->conn) ? ", TLS" : "");
	imap_session_enter(s, IMAP_SS_AUTH);
	buf_printf(&c->tagged, "%s OK [CAPABILITY ", c->tag);
	imap_session_capability_text(s, &c->tagged);
	buf_puts(&c->tagged, "] Logged in\r\n");
	imap_session_cmd_done(c);
}

static void imap_login_login_done(void *job)
{
	struct imap_cmd *c = job;
	struct imap_login_auth *a = c->priv;

	if (conn_gone(c->s->conn)) {
		imap_session_cmd_done(c);
		return;
	}
	if (a->rc == PASSDB_OK) {
		imap_login_success(c, "LOGIN");
	} else if (a->rc == PASSDB_FAIL) {
		/* no extra delay: loginfail_check() waited already */
		imap_login_failed(c, a->user, "LOGIN",
			"[AUTHENTICATIONFAILED] Authentication failed.");
	} else {
		log_warn("imap: client=%s, user=<%s>: login: %s",
			 c->s->addr, a->user, a->err.msg);
		imap_cmd_no(c, "[UNAVAILABLE] Temporary authentication "
			    "failure.");
		imap_session_cmd_done(c);
	}
}

/* The loginfail verdict for the command waiting in s->lf_cmd (the conn
 * is BUSY meanwhile, so the session is found unless the server goes);
 * NULL when there is none. A TEMP_REFUSE is answered here. */
static struct imap_cmd *imap_login_loginfail_take(void *ctx, uint64_t id,
					       const struct loginfail_answer *ans,
					       const char *user)
{
	struct imap_session *s = imap_session_find(ctx, id);
	struct imap_cmd *c;

	if (s == NULL || (c = s->lf_cmd) == NULL)
		return NULL;
	s->lf_cmd = NULL;
	if (conn_gone(s->conn)) {
		imap_session_cmd_done(c);
		return NULL;
	}
	if (ans->verdict == LOGINFAIL_TEMP_REFUSE) {
		loginfail_log_mra_refused("imap", s->addr,
			user != NULL ? user : "", ans);
		imap_cmd_no(c, "[UNAVAILABLE] Too many failed logins, try "
			    "later.");
		imap_session_cmd_done(c);
		return NULL;
	}
	return c;
}

/* LOGIN: the verdict came; now the password job. */
static void imap_login_login_checked(void *ctx, uint64_t id,
				   const struct loginfail_answer *ans)
{
	struct imap_session *s = imap_session_find(ctx, id);
	struct imap_cmd *c;

	if (s == NULL || s->lf_cmd == NULL)
		return;
	c = imap_login_loginfail_take(ctx, id, ans,
		((struct imap_login_auth *)s->lf_cmd->priv)->user);
	if (c == NULL)
		return;
	if (work_submit(c->s->pool, imap_login_login_run, imap_login_login_done,
			c) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
		imap_session_cmd_done(c);
	}
}

/* Ask loginfail about (address, user) for c; cb runs from the loop with
 * c in s->lf_cmd. No loginfail configured: cb at once. -1: out of
 * memory (nothing pending). */
static int imap_login_loginfail_check(struct imap_cmd *c, const char *user,
				    loginfail_cb *cb)
{
	struct imap_session *s = c->s;
	static const struct loginfail_answer ok = { LOGINFAIL_OK, 0, 0, 0, 0,
						    0 };

	s->lf_cmd = c;
	if (s->set->loginfail == NULL) {
		cb(s->srv, s->id, &ok);
		return 0;
	}
	if (loginfail_check(s->set->loginfail, s->addr, user, cb, s->srv,
			    s->id) < 0) {
		s->lf_cmd = NULL;
		return -1;
	}
	return 0;
}

/* Common checks before a login attempt; replies and returns -1 on refusal. */
static int imap_login_auth_check(struct imap_cmd *c)
{
	if (imap_session_plain_disabled(c->s)) {
		/* RFC 3501 §6.2.3, RFC 5530 PRIVACYREQUIRED */
		imap_cmd_no(c, "[PRIVACYREQUIRED] Plaintext authentication "
			    "disallowed on non-secure connections.");
	} else {
		return 0;
	}
	imap_session_cmd_done(c);
	return -1;
}

void imap_login_login(struct imap_cmd *c)
{
	struct imap_arg *u = c->a, *p = u != NULL ? u->next : NULL;
	struct imap_login_auth *a;

	if (c->nargs != 2 || !imap_arg_is_string(u) ||
	    !imap_arg_is_string(p)) {
		imap_cmd_bad(c, "LOGIN needs user name and password.");
		imap_session_cmd_done(c);
		return;
	}
	/* RFC 3501 §9: no NUL in a string; as a C string it would log in
	 * "alice\0x" as "alice" */
	if (memchr(u->s, '\0', u->len) != NULL ||
	    memchr(p->s, '\0', p->len) != NULL) {
		imap_cmd_bad(c, "NUL character in user name or password.");
		imap_session_cmd_done(c);
		return;
	}
	if (imap_login_auth_check(c) < 0)
		return;
	a = calloc(1, sizeof(*a));
	if (a != NULL) {
		a->user = strdup(u->s);
		a->pass = strdup(p->s);
		a->set = c->s->set;
	}
	c->priv = a;
	c->priv_free = imap_login_auth_free;
	if (a == NULL || a->user == NULL || a->pass == NULL ||
	    imap_login_loginfail_check(c, a->user, imap_login_login_checked) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
		imap_session_cmd_done(c);
	}
}

static void imap_login_sasl_run(void *job)
{
	struct imap_cmd *c = job;
	struct imap_login_auth *a = c->priv;
	const char *u;

	free(a->out);
	a->out = NULL;
	err_clear(&a->err);
	if (!a->started) {
		a->started = 1;
		a->rc = sasl_glue_server_start(a->sasl, a->mech, a->in,
					       &a->out);
	} else {
		a->rc = sasl_glue_server_step(a->sasl, a->in, &a->out);
	}
	if (a->rc != SASL_GLUE_OK)
		return;
	u = sasl_glue_server_user(a->sasl);
	a->user = strdup(u != NULL ? u : "");
	if (a->user == NULL || imap_login_auth_open(a) < 0)
		a->rc = SASL_GLUE_TEMPFAIL;
}

static void imap_login_sasl_done(void *job)
{
	struct imap_cmd *c = job;
	struct imap_login_auth *a = c->priv;
	struct imap_session *s = c->s;
	const char *u;

	if (conn_gone(s->conn)) {
		imap_session_cmd_done(c);
		return;
	}
	switch (a->rc) {
	case SASL_GLUE_OK:
	case SASL_GLUE_FAIL:
		/* the exchange is over and the user known: the loginfail
		 * verdict before the result is revealed */
		if (a->rc == SASL_GLUE_FAIL) {
			u = sasl_glue_server_attempted_user(a->sasl);
			free(a->user);
			a->user = strdup(u != NULL ? u : "");
		}
		if (a->user == NULL ||
		    imap_login_loginfail_check(c, a->user,
					     imap_login_sasl_checked) < 0) {
			imap_cmd_no(c, "[UNAVAILABLE] Temporary "
				    "authentication failure.");
			break;
		}
		return;
	case SASL_GLUE_CONTINUE:
		/* RFC 3501 §6.2.2: "+ " challenge, then one client line */
		imap_session_printf(s, "+ %s\r\n", a->out != NULL ? a->out : "");
		s->auth_cmd = c;
		imap_session_enter(s, IMAP_SS_SASL);
		(void)conn_ready(s->conn);   /* -1: closed() freed c */
		return;
	case SASL_GLUE_BADPROT:
		imap_cmd_bad(c, "AUTHENTICATE aborted or malformed.");
		break;
	case SASL_GLUE_NOMECH:
		imap_cmd_no(c, "Unsupported authentication mechanism.");
		break;
	default:
		log_warn("imap: client=%s: AUTHENTICATE %s: %s", s->addr,
			 a->mech, a->err.msg[0] != '\0' ? a->err.msg :
			 sasl_glue_server_error(a->sasl));
		imap_cmd_no(c, "[UNAVAILABLE] Temporary authentication "
			    "failure.");
		break;
	}
	imap_session_cmd_done(c);
}

/* AUTHENTICATE: the verdict came after the exchange. */
static void imap_login_sasl_checked(void *ctx, uint64_t id,
				  const struct loginfail_answer *ans)
{
	struct imap_session *s = imap_session_find(ctx, id);
	struct imap_login_auth *a;
	struct imap_cmd *c;

	if (s == NULL || s->lf_cmd == NULL)
		return;
	a = s->lf_cmd->priv;
	c = imap_login_loginfail_take(ctx, id, ans, a->user);
	if (c == NULL)
		return;
	if (a->rc == SASL_GLUE_OK)
		imap_login_success(c, a->mech);
	else
		imap_login_failed(c, a->user, a->mech,
			"[AUTHENTICATIONFAILED] Authentication failed.");
}

void imap_login_auth_line(struct imap_cmd *c, const char *line, size_t len)
{
	struct imap_login_auth *a = c->priv;

	conn_busy(c->s->conn);
	if (len == 1 && line[0] == '*') {
		/* RFC 3501 §6.2.2: the client cancels */
		imap_cmd_bad(c, "AUTHENTICATE cancelled.");
		imap_session_cmd_done(c);
		return;
	}
	free(a->in);
	a->in = strndup(line, len);
	if (a->in == NULL || work_submit(c->s->pool, imap_login_sasl_run,
					 imap_login_sasl_done, c) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
		imap_session_cmd_done(c);
	}
}

void imap_login_authenticate(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct imap_arg *m = c->a, *ir = m != NULL ? m->next : NULL;
	struct imap_login_auth *a;
	struct err err;
	size_t i;

	if (m == NULL || m->type != IMAP_ARG_ATOM || c->nargs > 2 ||
	    (ir != NULL && !imap_arg_is_string(ir)) || m->len >= 32) {
		imap_cmd_bad(c, "AUTHENTICATE needs a mechanism.");
		imap_session_cmd_done(c);
		return;
	}
	if (!s->set->sasl) {
		imap_cmd_no(c, "Authentication is not available.");
		imap_session_cmd_done(c);
		return;
	}
	if (imap_login_auth_check(c) < 0)
		return;
	a = calloc(1, sizeof(*a));
	c->priv = a;
	c->priv_free = imap_login_auth_free;
	if (a == NULL) {
		imap_cmd_no(c, "[UNAVAILABLE] Out of memory.");
		imap_session_cmd_done(c);
		return;
	}
	a->set = s->set;
	for (i = 0; i < m->len; i++)
		a->mech[i] = (char)(m->s[i] >= 'a' && m->s[i] <= 'z' ?
				    m->s[i] - 32 : m->s[i]);
	a->sasl = sasl_glue_server_new("imap", s->set->hostname,
				       conn_local_ipport(s->conn),
				       conn_remote_ipport(s->conn),
				       conn_tls(s->conn) ? 256 : 0, &err);
	/* RFC 4959: "=" is an empty initial response, as in SMTP */
	if (ir != NULL)
		a->in = strdup(ir->s);
	if (a->sasl == NULL || (ir != NULL && a->in == NULL) ||
	    work_submit(s->pool, imap_login_sasl_run, imap_login_sasl_done,
			c) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Authentication unavailable.");
		imap_session_cmd_done(c);
	}
}


