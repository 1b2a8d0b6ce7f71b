/* imap_cmd: the command table, response helpers and the commands of the
 * not-authenticated state and of any state (CAPABILITY, LOGOUT, STARTTLS,
 * LOGIN, AUTHENTICATE, ID, ENABLE, NAMESPACE). Password checks and SASL
 * steps run on the worker pool. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "conn.h"
#include "imap_cmd.h"
#include "imap_fetch.h"
#include "log.h"
#include "loginfail.h"
#include "mra_userip.h"
#include "mstore.h"
#include "passdb.h"
#include "sasl_glue.h"
#include "work.h"

static void imap_cmd_capability(struct imap_cmd *c);
static void imap_cmd_logout(struct imap_cmd *c);
static void imap_cmd_starttls(struct imap_cmd *c);
static void imap_cmd_login(struct imap_cmd *c);
static void imap_cmd_authenticate(struct imap_cmd *c);
static void imap_cmd_id(struct imap_cmd *c);
static void imap_cmd_enable(struct imap_cmd *c);
static void imap_cmd_namespace(struct imap_cmd *c);
static void imap_cmd_sasl_checked(void *ctx, uint64_t id,
				  const struct loginfail_answer *ans);

#define P IMAP_CMD_POOL
#define NE IMAP_CMD_NOEXPUNGE
#define SY IMAP_CMD_SYNC
#define M1 IMAP_CMD_MBOX1
#define M2 IMAP_CMD_MBOX2
static const struct imap_cmd_def imap_cmd_table[] = {
	{ "CAPABILITY", IMAP_CMD_S_ANY, 0, imap_cmd_capability },
	{ "NOOP", IMAP_CMD_S_ANY, P, imap_cmd_msg_noop },
	{ "LOGOUT", IMAP_CMD_S_ANY, 0, imap_cmd_logout },
	{ "ID", IMAP_CMD_S_ANY, 0, imap_cmd_id },
	{ "STARTTLS", IMAP_CMD_S_NOTAUTH, 0, imap_cmd_starttls },
	{ "LOGIN", IMAP_CMD_S_NOTAUTH, 0, imap_cmd_login },
	{ "AUTHENTICATE", IMAP_CMD_S_NOTAUTH, 0, imap_cmd_authenticate },
	{ "ENABLE", IMAP_CMD_S_LOGGEDIN, 0, imap_cmd_enable },
	{ "NAMESPACE", IMAP_CMD_S_LOGGEDIN, 0, imap_cmd_namespace },
	{ "IDLE", IMAP_CMD_S_LOGGEDIN, P, imap_cmd_msg_idle_sync },
	{ "SELECT", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_select },
	{ "EXAMINE", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_select },
	{ "CREATE", IMAP_CMD_S_LOGGEDIN, P | SY | M1, imap_cmd_mbox_create },
	{ "DELETE", IMAP_CMD_S_LOGGEDIN, P | SY | M1, imap_cmd_mbox_delete },
	{ "RENAME", IMAP_CMD_S_LOGGEDIN, P | SY | M1 | M2,
	  imap_cmd_mbox_rename },
	{ "SUBSCRIBE", IMAP_CMD_S_LOGGEDIN, P | SY | M1,
	  imap_cmd_mbox_subscribe },
	{ "UNSUBSCRIBE", IMAP_CMD_S_LOGGEDIN, P | SY | M1,
	  imap_cmd_mbox_subscribe },
	{ "LIST", IMAP_CMD_S_LOGGEDIN, P | SY, imap_cmd_mbox_list },
	{ "LSUB", IMAP_CMD_S_LOGGEDIN, P | SY, imap_cmd_mbox_list },
	{ "STATUS", IMAP_CMD_S_LOGGEDIN, P | SY | M1, imap_cmd_mbox_status },
	{ "APPEND", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_append },
	{ "GETQUOTAROOT", IMAP_CMD_S_LOGGEDIN, P | SY | M1, imap_cmd_mbox_quota },
	{ "GETQUOTA", IMAP_CMD_S_LOGGEDIN, P | SY, imap_cmd_mbox_quota },
	{ "CHECK", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_noop },
	{ "CLOSE", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_close },
	{ "UNSELECT", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_close },
	{ "EXPUNGE", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_expunge },
	{ "UID EXPUNGE", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_expunge },
	{ "SEARCH", IMAP_CMD_S_SELECTED, P | NE, imap_cmd_msg_search },
	{ "UID SEARCH", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_search },
	{ "FETCH", IMAP_CMD_S_SELECTED, P | NE, imap_cmd_msg_fetch },
	{ "UID FETCH", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_fetch },
	{ "STORE", IMAP_CMD_S_SELECTED, P | NE, imap_cmd_msg_store },
	{ "UID STORE", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_store },
	{ "COPY", IMAP_CMD_S_SELECTED, P | NE | M2, imap_cmd_msg_copy },
	{ "UID COPY", IMAP_CMD_S_SELECTED, P | M2, imap_cmd_msg_copy },
	{ "MOVE", IMAP_CMD_S_SELECTED, P | NE | M2, imap_cmd_msg_copy },
	{ "UID MOVE", IMAP_CMD_S_SELECTED, P | M2, imap_cmd_msg_copy },
};
#undef P
#undef NE
#undef SY
#undef M1
#undef M2

const struct imap_cmd_def imap_cmd_idle_sync_def = {
	"IDLE", IMAP_CMD_S_LOGGEDIN, IMAP_CMD_POOL, imap_cmd_msg_idle_sync
};

const struct imap_cmd_def *imap_cmd_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(imap_cmd_table) / sizeof(imap_cmd_table[0]);
	     i++)
		if (strcmp(imap_cmd_table[i].name, name) == 0)
			return &imap_cmd_table[i];
	return NULL;
}

void imap_cmd_free(struct imap_cmd *c)
{
	if (c == NULL)
		return;
	if (c->priv_free != NULL)
		c->priv_free(c->priv);
	if (c->lit_arg != NULL && c->lit_fd >= 0)
		close(c->lit_fd);
	if (c->bytes != NULL) {
		/* it may have held a password */
		explicit_bzero(c->bytes, c->nbytes);
		free(c->bytes);
	}
	free(c->args);
	buf_free(&c->out);
	free(c);
}

static void imap_cmd_reply(struct imap_cmd *c, const char *what,
			   const char *fmt, va_list ap)
{
	buf_printf(&c->out, "%s %s ", c->tag, what);
	buf_vprintf(&c->out, fmt, ap);
	buf_puts(&c->out, "\r\n");
}

void imap_cmd_ok(struct imap_cmd *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_cmd_reply(c, "OK", fmt, ap);
	va_end(ap);
}

void imap_cmd_no(struct imap_cmd *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_cmd_reply(c, "NO", fmt, ap);
	va_end(ap);
}

void imap_cmd_bad(struct imap_cmd *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_cmd_reply(c, "BAD", fmt, ap);
	va_end(ap);
}

int imap_cmd_put_string(struct buf *out, const char *s, size_t len)
{
	size_t i;

	/* RFC 3501 §4.3: no NUL, in a literal either (that would take
	 * BINARY's literal8): refuse rather than send one */
	if (memchr(s, '\0', len) != NULL)
		return -1;
	if (len <= 1024) {
		for (i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)s[i];

			if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
				break;
		}
		if (i == len) {
			if (buf_putc(out, '"') < 0 ||
			    buf_append(out, s, len) < 0 ||
			    buf_putc(out, '"') < 0)
				return -1;
			return 0;
		}
	}
	if (buf_printf(out, "{%zu}\r\n", len) < 0 ||
	    buf_append(out, s, len) < 0)
		return -1;
	return 0;
}

void imap_cmd_sync(struct imap_cmd *c, int allow_expunge)
{
	struct mstore_folder *f = c->s->folder;
	struct mstore_changes ch;
	struct err err;
	size_t i, recent = 0, start;

	if (f == NULL || !allow_expunge)
		return;
	memset(&ch, 0, sizeof(ch));
	if (mstore_sync(f, &ch, &err) < 0) {
		log_warn("imap: user=<%s>: sync %s: %s", c->s->user, f->name,
			 err.msg);
		return;
	}
	for (i = 0; i < ch.nexpunged; i++)
		buf_printf(&c->out, "* %u EXPUNGE\r\n", ch.expunged_seq[i]);
	if (ch.nnew > 0 || ch.nexpunged > 0)
		buf_printf(&c->out, "* %zu EXISTS\r\n", f->count);
	if (ch.nnew > 0) {
		for (i = 0; i < f->count; i++)
			if (f->msgs[i].flags & MSTORE_F_RECENT)
				recent++;
		buf_printf(&c->out, "* %zu RECENT\r\n", recent);
	}
	for (i = 0; i < ch.nchanged; i++) {
		uint32_t seq = ch.changed_seq[i];

		if (seq == 0 || seq > f->count)
			continue;
		start = c->out.len;
		/* the checked writer of imap_fetch (keywords that are not
		 * atoms are left out); a line that does not fit is dropped
		 * whole, never sent cut */
		if (buf_printf(&c->out, "* %u FETCH (UID %u FLAGS ", seq,
			       f->msgs[seq - 1].uid) < 0 ||
		    imap_fetch_put_flags(&c->out,
					 (const char *const *)f->keywords,
					 f->msgs[seq - 1].flags,
					 f->msgs[seq - 1].keywords) < 0 ||
		    buf_puts(&c->out, ")\r\n") < 0)
			c->out.len = start;
	}
	mstore_changes_free(&ch);
}

void imap_cmd_capability_text(struct imap_session *s, struct buf *out)
{
	buf_puts(out, "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE");
	if (s->state == IMAP_ST_NOTAUTH) {
		if (s->set->tls != NULL && !conn_tls(s->conn))
			buf_puts(out, " STARTTLS");
		if (imap_session_plain_disabled(s))
			buf_puts(out, " LOGINDISABLED");
		else if (s->set->sasl)
			buf_puts(out, " AUTH=PLAIN AUTH=LOGIN");
		return;
	}
	buf_printf(out, " NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE"
		   " QUOTA QUOTA=RES-STORAGE APPENDLIMIT=%zu",
		   s->set->max_append);
}

static void imap_cmd_capability(struct imap_cmd *c)
{
	buf_puts(&c->out, "* CAPABILITY ");
	imap_cmd_capability_text(c->s, &c->out);
	buf_puts(&c->out, "\r\n");
	imap_cmd_ok(c, "Capability completed.");
	imap_session_cmd_done(c);
}

static void imap_cmd_logout(struct imap_cmd *c)
{
	buf_puts(&c->out, "* BYE Logging out.\r\n");
	imap_cmd_ok(c, "Logout completed.");
	c->logout = 1;
	imap_session_cmd_done(c);
}

/* RFC 2971 */
static void imap_cmd_id(struct imap_cmd *c)
{
	buf_puts(&c->out, "* ID (\"name\" \"mra\" \"vendor\" \"mailpair\")\r\n");
	imap_cmd_ok(c, "ID completed.");
	imap_session_cmd_done(c);
}

/* RFC 5161: nothing we offer can be enabled; the reply lists none. */
static void imap_cmd_enable(struct imap_cmd *c)
{
	if (c->a == NULL) {
		imap_cmd_bad(c, "ENABLE needs capability names.");
	} else {
		buf_puts(&c->out, "* ENABLED\r\n");
		imap_cmd_ok(c, "Enabled.");
	}
	imap_session_cmd_done(c);
}

/* RFC 2342: one personal namespace, no prefix, "." separator. */
static void imap_cmd_namespace(struct imap_cmd *c)
{
	buf_puts(&c->out, "* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
	imap_cmd_ok(c, "Namespace completed.");
	imap_session_cmd_done(c);
}

static void imap_cmd_starttls(struct imap_cmd *c)
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
		imap_session_set_state(s, s->state);
	}
	imap_session_cmd_done(c);
}

/* ---- LOGIN and AUTHENTICATE ---- */

struct imap_cmd_auth {
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

static void imap_cmd_auth_free(void *p)
{
	struct imap_cmd_auth *a = p;

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
static int imap_cmd_auth_open(struct imap_cmd_auth *a)
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

static void imap_cmd_login_run(void *job)
{
	struct imap_cmd *c = job;
	struct imap_cmd_auth *a = c->priv;

	err_clear(&a->err);
	a->rc = passdb_verify(a->set->passdb, a->user, a->pass, &a->err);
	if (a->rc == PASSDB_OK && imap_cmd_auth_open(a) < 0)
		a->rc = PASSDB_TEMPFAIL;
}

/* Logged in: the session takes the mailbox. */
static void imap_cmd_auth_success(struct imap_cmd *c, const char *method)
{
	struct imap_session *s = c->s;
	struct imap_cmd_auth *a = c->priv;
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
	s->userip_held = s->set->userip != NULL;
	s->user = a->user;
	a->user = NULL;
	s->ms = a->ms;
	a->ms = NULL;
	s->quota_limit = a->quota;
	s->quota_used = a->quota_used;
	/* the map's limit, for COPY's and APPEND's checks under quota_lock
	 * and for maildirsize's definition line */
	mstore_set_quota(s->ms, s->quota_limit);
	s->auth_fails = 0;
	log_info("imap: login: client=%s, user=<%s>, method=%s%s", s->addr,
		 s->user, method, conn_tls(s->conn) ? ", TLS" : "");
	imap_session_set_state(s, IMAP_ST_AUTH);
	buf_printf(&c->out, "%s OK [CAPABILITY ", c->tag);
	imap_cmd_capability_text(s, &c->out);
	buf_puts(&c->out, "] Logged in\r\n");
	imap_session_cmd_done(c);
}

static void imap_cmd_login_done(void *job)
{
	struct imap_cmd *c = job;
	struct imap_cmd_auth *a = c->priv;

	if (conn_gone(c->s->conn)) {
		imap_session_cmd_done(c);
		return;
	}
	if (a->rc == PASSDB_OK) {
		imap_cmd_auth_success(c, "LOGIN");
	} else if (a->rc == PASSDB_FAIL) {
		/* no extra delay: loginfail_check() waited already */
		imap_session_auth_failed(c, a->user, "LOGIN",
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
static struct imap_cmd *imap_cmd_loginfail_take(void *ctx, uint64_t id,
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
static void imap_cmd_login_checked(void *ctx, uint64_t id,
				   const struct loginfail_answer *ans)
{
	struct imap_session *s = imap_session_find(ctx, id);
	struct imap_cmd *c;

	if (s == NULL || s->lf_cmd == NULL)
		return;
	c = imap_cmd_loginfail_take(ctx, id, ans,
		((struct imap_cmd_auth *)s->lf_cmd->priv)->user);
	if (c == NULL)
		return;
	if (work_submit(c->s->pool, imap_cmd_login_run, imap_cmd_login_done,
			c) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
		imap_session_cmd_done(c);
	}
}

/* Ask loginfail about (address, user) for c; cb runs from the loop with
 * c in s->lf_cmd. No loginfail configured: cb at once. -1: out of
 * memory (nothing pending). */
static int imap_cmd_loginfail_check(struct imap_cmd *c, const char *user,
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
static int imap_cmd_auth_check(struct imap_cmd *c)
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

static void imap_cmd_login(struct imap_cmd *c)
{
	struct imap_arg *u = c->a, *p = u != NULL ? u->next : NULL;
	struct imap_cmd_auth *a;

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
	if (imap_cmd_auth_check(c) < 0)
		return;
	a = calloc(1, sizeof(*a));
	if (a != NULL) {
		a->user = strdup(u->s);
		a->pass = strdup(p->s);
		a->set = c->s->set;
	}
	c->priv = a;
	c->priv_free = imap_cmd_auth_free;
	if (a == NULL || a->user == NULL || a->pass == NULL ||
	    imap_cmd_loginfail_check(c, a->user, imap_cmd_login_checked) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
		imap_session_cmd_done(c);
	}
}

static void imap_cmd_sasl_run(void *job)
{
	struct imap_cmd *c = job;
	struct imap_cmd_auth *a = c->priv;
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
	if (a->user == NULL || imap_cmd_auth_open(a) < 0)
		a->rc = SASL_GLUE_TEMPFAIL;
}

static void imap_cmd_sasl_done(void *job)
{
	struct imap_cmd *c = job;
	struct imap_cmd_auth *a = c->priv;
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
		    imap_cmd_loginfail_check(c, a->user,
					     imap_cmd_sasl_checked) < 0) {
			imap_cmd_no(c, "[UNAVAILABLE] Temporary "
				    "authentication failure.");
			break;
		}
		return;
	case SASL_GLUE_CONTINUE:
		/* RFC 3501 §6.2.2: "+ " challenge, then one client line */
		imap_session_printf(s, "+ %s\r\n", a->out != NULL ? a->out : "");
		s->auth_cmd = c;
		s->mode = IMAP_MODE_AUTH;
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
static void imap_cmd_sasl_checked(void *ctx, uint64_t id,
				  const struct loginfail_answer *ans)
{
	struct imap_session *s = imap_session_find(ctx, id);
	struct imap_cmd_auth *a;
	struct imap_cmd *c;

	if (s == NULL || s->lf_cmd == NULL)
		return;
	a = s->lf_cmd->priv;
	c = imap_cmd_loginfail_take(ctx, id, ans, a->user);
	if (c == NULL)
		return;
	if (a->rc == SASL_GLUE_OK)
		imap_cmd_auth_success(c, a->mech);
	else
		imap_session_auth_failed(c, a->user, a->mech,
			"[AUTHENTICATIONFAILED] Authentication failed.");
}

void imap_cmd_auth_line(struct imap_cmd *c, const char *line, size_t len)
{
	struct imap_cmd_auth *a = c->priv;

	conn_busy(c->s->conn);
	if (len == 1 && line[0] == '*') {
		/* RFC 3501 §6.2.2: the client cancels */
		imap_cmd_bad(c, "AUTHENTICATE cancelled.");
		imap_session_cmd_done(c);
		return;
	}
	free(a->in);
	a->in = strndup(line, len);
	if (a->in == NULL || work_submit(c->s->pool, imap_cmd_sasl_run,
					 imap_cmd_sasl_done, c) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
		imap_session_cmd_done(c);
	}
}

static void imap_cmd_authenticate(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct imap_arg *m = c->a, *ir = m != NULL ? m->next : NULL;
	struct imap_cmd_auth *a;
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
	if (imap_cmd_auth_check(c) < 0)
		return;
	a = calloc(1, sizeof(*a));
	c->priv = a;
	c->priv_free = imap_cmd_auth_free;
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
	    work_submit(s->pool, imap_cmd_sasl_run, imap_cmd_sasl_done,
			c) < 0) {
		imap_cmd_no(c, "[UNAVAILABLE] Authentication unavailable.");
		imap_session_cmd_done(c);
	}
}

/* ---- helpers for the message commands ---- */

int imap_cmd_seqset(struct imap_cmd *c, const char *set, int uid,
		    size_t **idx_r, size_t *n_r)
{
	struct mstore_folder *f = c->s->folder;
	struct imap_seq_range *r;
	unsigned char *mark = NULL;
	size_t i, j, nr = 1, n = 0, count = f != NULL ? f->count : 0;
	uint32_t star, lo, hi;
	int k;

	*idx_r = NULL;
	*n_r = 0;
	for (i = 0; set[i] != '\0'; i++)
		if (set[i] == ',')
			nr++;
	r = malloc(nr * sizeof(*r));
	if (r == NULL)
		return -1;
	k = imap_seqset_parse(set, r, nr);
	if (k < 0 || count == 0) {
		free(r);
		/* an empty mailbox: a valid set matches nothing */
		return k < 0 ? -1 : (uid ? 0 : -1);
	}
	mark = calloc(count, 1);
	if (mark == NULL) {
		free(r);
		return -1;
	}
	star = uid ? f->msgs[count - 1].uid : (uint32_t)count;
	for (j = 0; j < (size_t)k; j++) {
		lo = r[j].lo == IMAP_SEQ_STAR ? star : r[j].lo;
		hi = r[j].hi == IMAP_SEQ_STAR ? star : r[j].hi;
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (!uid) {
			if (hi > count) {
				free(r);
				free(mark);
				return -1;
			}
			for (i = lo; i <= hi; i++)
				mark[i - 1] = 1;
			continue;
		}
		for (i = 0; i < count; i++)
			if (f->msgs[i].uid >= lo && f->msgs[i].uid <= hi)
				mark[i] = 1;
	}
	free(r);
	for (i = 0; i < count; i++)
		n += mark[i];
	if (n > 0) {
		*idx_r = malloc(n * sizeof(**idx_r));
		if (*idx_r == NULL) {
			free(mark);
			return -1;
		}
		for (i = 0, j = 0; i < count; i++)
			if (mark[i])
				(*idx_r)[j++] = i;
	}
	*n_r = n;
	free(mark);
	return 0;
}

static int imap_cmd_one_flag(const char *s, unsigned *flags,
			     const char **kw, size_t *nkw, size_t maxkw)
{
	static const struct { const char *name; unsigned bit; } sys[] = {
		{ "\\Seen", MSTORE_F_SEEN }, { "\\Answered", MSTORE_F_ANSWERED },
		{ "\\Flagged", MSTORE_F_FLAGGED },
		{ "\\Deleted", MSTORE_F_DELETED }, { "\\Draft", MSTORE_F_DRAFT },
		{ "\\Recent", 0 },
	};
	size_t i;

	if (s[0] == '\\') {
		for (i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
			if (strcasecmp(s, sys[i].name) == 0) {
				*flags |= sys[i].bit;
				return 0;
			}
		}
		return -1;
	}
	/* RFC 3501 §9: flag-keyword = atom */
	for (i = 0; s[i] != '\0'; i++)
		if (strchr("(){ %*\"]\\", s[i]) != NULL ||
		    (unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return -1;
	if (i == 0 || *nkw >= maxkw)
		return -1;
	kw[(*nkw)++] = s;
	return 0;
}

int imap_cmd_parse_flags(struct imap_arg *a, unsigned *flags_r,
			 const char **kw, size_t *nkw, size_t maxkw)
{
	struct imap_arg *e;

	*flags_r = 0;
	*nkw = 0;
	if (a == NULL)
		return -1;
	if (a->type == IMAP_ARG_ATOM)
		return imap_cmd_one_flag(a->s, flags_r, kw, nkw, maxkw);
	if (a->type != IMAP_ARG_LIST)
		return -1;
	for (e = a->child; e != NULL; e = e->next)
		if (e->type != IMAP_ARG_ATOM ||
		    imap_cmd_one_flag(e->s, flags_r, kw, nkw, maxkw) < 0)
			return -1;
	return 0;
}

/* ---- modified UTF-7 (RFC 3501 §5.1.3) ---- */

static const char imap_cmd_b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int imap_cmd_put_utf8(uint32_t cp, char *out, size_t size, size_t *o)
{
	unsigned char b[4];
	size_t n, i;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp; n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f)); n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f)); n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f)); n = 4;
	}
	if (*o + n >= size)
		return -1;
	for (i = 0; i < n; i++)
		out[(*o)++] = (char)b[i];
	return 0;
}

/* RFC 3501 §5.1.3, strictly: printable US-ASCII but "&" stands for
 * itself and MUST NOT be base64-encoded, "&-" is "&", a base64 run ends
 * in "-" with fewer than 6 zero padding bits, surrogates come in pairs.
 * Control characters (C0 with NUL, DEL, C1) are refused however they are
 * written: a name is text, and an encoded NUL would cut it short. */
static int imap_cmd_mutf7_char_ok(uint32_t u)
{
	if (u < 0x20 || (u >= 0x7f && u <= 0x9f))
		return 0;
	return 1;
}

int imap_cmd_mutf7_decode(const char *in, char *out, size_t size)
{
	size_t o = 0;
	uint32_t bits, nbits, hi;
	const char *p;

	if (size == 0)
		return -1;
	while (*in != '\0') {
		unsigned char ch = (unsigned char)*in;

		if (ch < 0x20 || ch > 0x7e)
			return -1;
		if (ch != '&') {
			if (o + 1 >= size)
				return -1;
			out[o++] = (char)ch;
			in++;
			continue;
		}
		in++;
		if (*in == '-') {
			if (o + 1 >= size)
				return -1;
			out[o++] = '&';
			in++;
			continue;
		}
		bits = nbits = hi = 0;
		while (*in != '-') {
			p = *in != '\0' ? strchr(imap_cmd_b64, *in) : NULL;
			if (p == NULL)
				return -1;
			bits = ((bits << 6) | (uint32_t)(p - imap_cmd_b64)) &
				0xffffff;
			nbits += 6;
			in++;
			if (nbits < 16)
				continue;
			nbits -= 16;
			{
				uint32_t u = (bits >> nbits) & 0xffff;

				if (hi != 0) {
					if (u < 0xdc00 || u > 0xdfff)
						return -1;
					u = 0x10000 + ((hi - 0xd800) << 10) +
						(u - 0xdc00);
					hi = 0;
				} else if (u >= 0xd800 && u <= 0xdbff) {
					hi = u;
					continue;
				} else if (u >= 0xdc00 && u <= 0xdfff) {
					return -1;
				} else if (u >= 0x20 && u <= 0x7e) {
					/* it could have stood for itself */
					return -1;
				} else if (!imap_cmd_mutf7_char_ok(u)) {
					return -1;
				}
				if (imap_cmd_put_utf8(u, out, size, &o) < 0)
					return -1;
			}
		}
		in++;
		/* nothing but zero padding (under 6 bits) may be left over */
		if (hi != 0 || nbits >= 6 ||
		    (bits & ((1u << nbits) - 1)) != 0)
			return -1;
	}
	out[o] = '\0';
	return 0;
}

static void imap_cmd_b64_flush(char *out, size_t *o, uint32_t *bits,
			       unsigned *nbits)
{
	while (*nbits >= 6) {
		*nbits -= 6;
		out[(*o)++] = imap_cmd_b64[(*bits >> *nbits) & 0x3f];
	}
}

int imap_cmd_mutf7_encode(const char *in, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0;
	uint32_t bits = 0;
	unsigned nbits = 0;
	int b64 = 0;

	while (*p != '\0') {
		uint32_t cp;
		int n, i;

		if (o + 12 >= size)
			return -1;
		if (*p >= 0x20 && *p <= 0x7e) {
			if (b64) {
				if (nbits > 0) {
					bits <<= 6 - nbits;
					nbits = 6;
					imap_cmd_b64_flush(out, &o, &bits,
							   &nbits);
				}
				out[o++] = '-';
				b64 = 0;
			}
			out[o++] = (char)*p;
			if (*p == '&')
				out[o++] = '-';
			p++;
			continue;
		}
		if (*p < 0x80)
			return -1;
		n = *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 : *p >= 0xc0 ? 1 : -1;
		if (n < 0)
			return -1;
		cp = *p & (0x3f >> n);
		for (i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return -1;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		p += n + 1;
		if (!b64) {
			out[o++] = '&';
			b64 = 1;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			bits = (bits << 16) | (0xd800 | (cp >> 10));
			nbits += 16;
			imap_cmd_b64_flush(out, &o, &bits, &nbits);
			cp = 0xdc00 | (cp & 0x3ff);
		}
		bits = (bits << 16) | cp;
		nbits += 16;
		imap_cmd_b64_flush(out, &o, &bits, &nbits);
	}
	if (b64) {
		if (o + 3 >= size)
			return -1;
		if (nbits > 0) {
			bits <<= 6 - nbits;
			nbits = 6;
			imap_cmd_b64_flush(out, &o, &bits, &nbits);
		}
		out[o++] = '-';
	}
	out[o] = '\0';
	return 0;
}

int imap_cmd_mailbox(const char *wire, char *out, size_t size,
		     struct err *err)
{
	if (imap_cmd_mutf7_decode(wire, out, size) < 0)
		return err_set(err, 0, "Invalid mailbox name: not modified "
			       "UTF-7, or a control character");
	if (strcasecmp(out, "INBOX") == 0) {
		snprintf(out, size, "INBOX");
		return 0;
	}
	/* RFC 3501 §5.1: "INBOX" is case-insensitive, also as a parent */
	if (strncasecmp(out, "INBOX.", 6) == 0)
		memcpy(out, "INBOX", 5);
	return mstore_name_check(out, err);
}

int imap_cmd_mailbox_arg(const struct imap_arg *a, struct err *err)
{
	char tmp[2048];

	if (!imap_arg_is_string(a))
		return err_set(err, 0, "Missing mailbox name");
	/* RFC 3501 §9: literal is *CHAR8, which excludes NUL; as a C string
	 * the name would silently end at it */
	if (memchr(a->s, '\0', a->len) != NULL)
		return err_set(err, 0, "NUL character in mailbox name");
	if (a->len >= sizeof(tmp) ||
	    imap_cmd_mutf7_decode(a->s, tmp, sizeof(tmp)) < 0)
		return err_set(err, 0, "Invalid mailbox name: not modified "
			       "UTF-7, or a control character");
	return 0;
}

/* Mailbox arguments by position (IMAP_CMD_MBOX1/2 in the table), checked
 * before the handler runs, so that every command that names a mailbox
 * refuses a NUL, a control character or a broken encoding the same way:
 * a NUL is a syntax error (BAD), a bad name is NO [CANNOT]. */
int imap_cmd_check_mailboxes(struct imap_cmd *c)
{
	struct imap_arg *a[2] = { c->a, c->a != NULL ? c->a->next : NULL };
	unsigned flag[2] = { IMAP_CMD_MBOX1, IMAP_CMD_MBOX2 };
	struct err err;
	int i;

	for (i = 0; i < 2; i++) {
		if (!(c->def->flags & flag[i]) || !imap_arg_is_string(a[i]))
			continue;   /* missing: the handler says what it needs */
		if (imap_cmd_mailbox_arg(a[i], &err) == 0)
			continue;
		if (memchr(a[i]->s, '\0', a[i]->len) != NULL)
			imap_cmd_bad(c, "%s.", err.msg);
		else
			imap_cmd_no(c, "[CANNOT] %s.", err.msg);
		return -1;
	}
	return 0;
}
