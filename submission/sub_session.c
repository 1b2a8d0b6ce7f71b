/* sub_session: submission's hooks on the shared SMTP engine. Policy that
 * needs a map or the disk runs on the worker pool; Redis goes through the
 * asynchronous client; answers go back with smtpd_resume() by session id.
 * A struct sub_sess is reference-counted: the engine's session holds one
 * reference until disconnect, every job or Redis request in flight one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "buf.h"
#include "cfg.h"
#include "log.h"
#include "loginfail.h"
#include "maildir.h"
#include "queue.h"
#include "redisc.h"
#include "dsn.h"
#include "sub_deliver.h"
#include "sub_session.h"
#include "work.h"

#define SUB_SESSION_PENDING "pending"  /* IDENT record of an unfinished attempt */

struct sub_sess {
	uint64_t sid;
	struct sub_listener *l;
	int refs;
	int gone;
	int mynet;              /* trusted by address (intake only) */
	int auth_fails;         /* this session's (smtpd_sasl_failure_limit) */
	int verdict_wait;       /* auth_verdict awaits loginfail */
	int verdict_checks;     /* loginfail checks whose answer is to come */
	struct event *guard;    /* auth_failure_delay_max for that answer */
	char addr[64];          /* the peer's, not XFORWARD's */
	char name[256];
	char tried[256];        /* the name of the AUTH being judged */
};

static unsigned sub_session_live;

unsigned sub_session_count(void)
{
	return sub_session_live;
}

static struct sub_sess *sub_session_ref(struct sub_sess *ss)
{
	ss->refs++;
	return ss;
}

static void sub_session_unref(struct sub_sess *ss)
{
	if (ss == NULL || --ss->refs > 0)
		return;
	if (ss->guard != NULL)
		event_free(ss->guard);
	free(ss);
}

static int sub_session_resume(struct sub_sess *ss, int code, const char *text)
{
	if (ss->gone)
		return -1;
	return smtpd_resume(ss->l->smtpd, ss->sid, code, text);
}

/* A client-chosen string made safe for one log line. */
static void sub_session_clean(const char *in, char *out, size_t n)
{
	size_t o = 0;

	for (; in != NULL && *in != '\0' && o + 1 < n; in++)
		out[o++] = (*in > 0x20 && *in < 0x7f) ? *in : '?';
	out[o] = '\0';
}

static int sub_session_is_relay_login(const struct sub_server *srv,
				      const char *user)
{
	return user != NULL && *user != '\0' && srv->relay_logins != NULL &&
	       cfg_list_contains(srv->relay_logins, user);
}

static const char *sub_session_user(struct smtpd_session *s)
{
	const char *u = smtpd_session_auth_user(s);

	return u != NULL && *u != '\0' ? u : NULL;
}

/* ---- connect / disconnect ------------------------------------------- */

static void sub_session_connect(struct smtpd_session *s, void *ctx)
{
	struct sub_listener *l = ctx;
	struct sub_sess *ss = calloc(1, sizeof(*ss));

	if (ss == NULL) {
		smtpd_resume(l->smtpd, smtpd_session_id(s), 421,
			     "4.3.0 Out of memory");
		return;
	}
	ss->sid = smtpd_session_id(s);
	ss->l = l;
	ss->refs = 1;
	snprintf(ss->addr, sizeof(ss->addr), "%s",
		 smtpd_session_client_addr(s));
	snprintf(ss->name, sizeof(ss->name), "%s",
		 smtpd_session_client_name(s));
	/* Trust by address exists on the intake only, and only when
	 * intake_client_restrictions says permit_mynetworks (the default
	 * does not); on 587/465 every client logs in, as in Postfix's
	 * submission service. The flag also gates XFORWARD and IDENT. */
	ss->mynet = l->kind == SUB_KIND_INTAKE &&
		    sub_policy_restr_has(&l->srv->intake_client_restr,
					 SUB_R_PERMIT_MYNETWORKS) &&
		    sub_policy_net_match(l->srv->mynetworks, ss->addr);
	smtpd_session_set_data(s, ss);
	sub_session_live++;
	smtpd_resume(l->smtpd, ss->sid, 0, NULL);
}

static void sub_session_disconnect(struct smtpd_session *s, void *ctx)
{
	struct sub_sess *ss = smtpd_session_data(s);

	if (ss == NULL)
		return;
	smtpd_session_set_data(s, NULL);
	ss->gone = 1;
	if (ss->guard != NULL)
		event_del(ss->guard);
	sub_session_live--;
	sub_session_unref(ss);
}

/* ---- AUTH: per-session limit, the shared failed-login policy ---------- */

/* smtpd_sasl_failure_limit: a session that keeps failing is closed. */
static void sub_session_auth_check(struct smtpd_session *s, const char *mech,
				   void *ctx)
{
	struct sub_sess *ss = smtpd_session_data(s);
	struct sub_server *srv = ss->l->srv;

	if (srv->auth_fail_limit > 0 && ss->auth_fails >= srv->auth_fail_limit) {
		sub_session_resume(ss, 421, "4.7.0 Too many failed "
				   "authentication attempts");
		return;
	}
	sub_session_resume(ss, 0, NULL);
}

/* The verdict is in (or the guard gave up waiting for it). */
static void sub_session_verdict_answer(struct sub_sess *ss, int refuse)
{
	ss->verdict_wait = 0;
	if (ss->guard != NULL)
		evtimer_del(ss->guard);
	if (refuse) {
		ss->auth_fails++;
		sub_session_resume(ss, 454, "4.7.0 Too many failed "
				   "authentication attempts, try later");
		return;
	}
	sub_session_resume(ss, 0, NULL);
}

/* loginfail waited the delay: the session may have gone meanwhile. */
static void sub_session_verdict_done(void *ctx, uint64_t sid,
				     const struct loginfail_answer *a)
{
	struct sub_listener *l = ctx;
	struct smtpd_session *s = smtpd_session_find(l->smtpd, sid);
	struct sub_sess *ss = s != NULL ? smtpd_session_data(s) : NULL;

	if (ss == NULL)
		return;
	ss->verdict_checks--;
	if (!ss->verdict_wait)
		return;   /* the guard answered already */
	if (a->verdict == LOGINFAIL_TEMP_REFUSE)
		loginfail_log_smtp_refused(ss->name, ss->addr, ss->tried, a);
	sub_session_verdict_answer(ss, a->verdict == LOGINFAIL_TEMP_REFUSE);
}

/* A check that outlives auth_failure_delay_max (a Redis that stalls
 * until redisc's watchdog gives up) does not hold the client longer:
 * having waited the longest delay there is, the AUTH is answered as
 * without a verdict (235 or 535). */
static void sub_session_verdict_guard(evutil_socket_t fd, short what,
				      void *arg)
{
	struct sub_sess *ss = arg;

	if (ss->gone || !ss->verdict_wait)
		return;
	log_warn("%s[%s]: failed-login check did not answer within %u ms",
		 ss->name, ss->addr, ss->l->srv->auth_wait_max_ms);
	sub_session_verdict_answer(ss, 0);
}

/* After the SASL exchange, before its result is revealed or committed:
 * the delay of this (address, user) is waited whatever the result (so it
 * tells nothing, and an unknown user takes as long as a wrong password),
 * and a flooding address's failing names are refused. */
static void sub_session_auth_verdict(struct smtpd_session *s,
				     const char *mech, const char *user,
				     int ok, void *ctx)
{
	struct sub_listener *l = ctx;
	struct sub_sess *ss = smtpd_session_data(s);
	struct sub_server *srv = l->srv;
	struct timeval tv;

	if (srv->loginfail == NULL) {
		sub_session_resume(ss, 0, NULL);
		return;
	}
	/* one check at a time: one the guard gave up on is still out only
	 * while Redis stalls, and then this attempt is not judged */
	if (ss->verdict_checks > 0) {
		sub_session_resume(ss, 454, "4.7.0 Temporary authentication "
				   "failure");
		return;
	}
	snprintf(ss->tried, sizeof(ss->tried), "%s", user != NULL ? user : "");
	if (ss->guard == NULL)
		ss->guard = evtimer_new(srv->base, sub_session_verdict_guard,
					ss);
	if (ss->guard == NULL ||
	    loginfail_check(srv->loginfail, ss->addr, user,
			    sub_session_verdict_done, l, ss->sid) < 0) {
		sub_session_resume(ss, 454, "4.7.0 Temporary authentication "
				   "failure");
		return;
	}
	ss->verdict_checks++;
	ss->verdict_wait = 1;
	tv.tv_sec = (srv->auth_wait_max_ms + 500) / 1000;
	tv.tv_usec = (srv->auth_wait_max_ms + 500) % 1000 * 1000;
	evtimer_add(ss->guard, &tv);
}

/* The answer went out (235 or 535): count it, and log the failure in
 * Postfix's words for fail2ban. */
static void sub_session_auth_result(struct smtpd_session *s, const char *mech,
				    const char *user, int ok, void *ctx)
{
	struct sub_sess *ss = smtpd_session_data(s);
	struct sub_server *srv = ss->l->srv;

	if (srv->loginfail != NULL)
		loginfail_record(srv->loginfail, ss->addr, user, ok);
	if (ok)
		return;  /* the engine logs sasl_method/sasl_username */
	ss->auth_fails++;
	/* user is the name the client tried, raw: loginfail cleans it; the
	 * password never reaches this hook */
	loginfail_log_smtp(ss->name, ss->addr, mech, user);
}

/* Asked at EHLO, after AUTH and again at XFORWARD. The forwarder says
 * EHLO after STARTTLS and before AUTH and never again (as Postfix's smtp
 * client does), so the intake offers XFORWARD to a TLS client that has
 * not logged in yet; once logged in, only a relay login keeps it (the
 * engine asks again), a login other than a relay login cannot send mail
 * there (sub_session_mail), and IDENT is honoured only for relay logins
 * and intake clients in mynetworks that intake_client_restrictions let
 * send (sub_session_message). */
static int sub_session_xforward_ok(struct smtpd_session *s, void *ctx)
{
	struct sub_sess *ss = smtpd_session_data(s);
	const char *user = sub_session_user(s);

	if (ss->mynet || sub_session_is_relay_login(ss->l->srv, user))
		return 1;
	return ss->l->kind == SUB_KIND_INTAKE && user == NULL &&
	       smtpd_session_tls(s);
}

/* ---- MAIL: client and sender restrictions ---------------------------- */

struct sub_mjob {
	struct sub_sess *ss;
	char *sender, *login;
	int mismatch, temp;
	int milters;            /* find the sender's route for them */
	int local_sender;       /* ... the sender's domain is ours */
	struct err err;
};

static void sub_session_mail_work(void *arg)
{
	struct sub_mjob *j = arg;
	struct sub_server *srv = j->ss->l->srv;
	char *owners = NULL;
	const char *at = strrchr(j->sender, '@');
	struct err derr;
	enum map_rc rc;

	/* the milters' {mail_mailer}: Postfix resolves a sender in one of
	 * our mailbox domains to the virtual transport */
	if (j->milters && at != NULL &&
	    sub_resolve_local_domain(&srv->resolve, at + 1, &derr) ==
	    MAP_FOUND)
		j->local_sender = 1;
	if (strcasecmp(j->sender, j->login) == 0)
		return;
	if (srv->sender_login_maps == NULL) {
		j->mismatch = 1;
		return;
	}
	rc = vlookup_addr(srv->sender_login_maps, j->sender,
			  srv->resolve.delims, VLOOKUP_ALIAS, &owners, NULL,
			  &j->err);
	if (rc == MAP_TEMPFAIL)
		j->temp = 1;
	else
		j->mismatch = rc != MAP_FOUND ||
			      !sub_policy_owner_match(owners, j->login);
	free(owners);
}

static void sub_session_mail_done(void *arg)
{
	struct sub_mjob *j = arg;
	struct sub_sess *ss = j->ss;
	struct sub_policy_facts f = { .mynetworks = ss->mynet,
				      .authenticated = 1, .local_dest = 1,
				      .login_mismatch = j->mismatch };
	char text[600];

	if (j->temp) {
		log_warn("%s[%s]: sender login lookup failed: %s", ss->name,
			 ss->addr, j->err.msg);
		sub_session_resume(ss, 451, "4.3.0 Temporary lookup failure");
	} else if (sub_policy_eval(&ss->l->srv->sender_restr, &f) ==
		   SUB_V_REJECT_LOGIN) {
		char u[128], snd[300];

		sub_session_clean(j->login, u, sizeof(u));
		sub_session_clean(j->sender, snd, sizeof(snd));
		log_info("reject: MAIL from %s[%s]: 553 5.7.1 <%s>: Sender "
			 "address rejected: not owned by user %s", ss->name,
			 ss->addr, snd, u);
		snprintf(text, sizeof(text), "5.7.1 <%s>: Sender address "
			 "rejected: not owned by user %s", snd, u);
		sub_session_resume(ss, 553, text);
	} else {
		const char *at = strrchr(j->sender, '@');

		if (j->local_sender && !ss->gone)
			smtpd_set_route(ss->l->smtpd, ss->sid, "virtual",
					at != NULL ? at + 1 : NULL);
		sub_session_resume(ss, 0, NULL);
	}
	free(j->sender);
	free(j->login);
	sub_session_unref(ss);
	free(j);
}

/* The client (MAIL) and relay (RCPT) lists of the session's port. */
static const struct sub_policy_restr *sub_session_client_restr(
	const struct sub_sess *ss)
{
	const struct sub_server *srv = ss->l->srv;

	return ss->l->kind == SUB_KIND_INTAKE ? &srv->intake_client_restr :
						&srv->client_restr;
}

static const struct sub_policy_restr *sub_session_relay_restr(
	const struct sub_sess *ss)
{
	const struct sub_server *srv = ss->l->srv;

	return ss->l->kind == SUB_KIND_INTAKE ? &srv->intake_relay_restr :
						&srv->relay_restr;
}

/* Facts of the client side; rcpt-dependent ones are filled later. */
static void sub_session_facts(struct smtpd_session *s, struct sub_sess *ss,
			      struct sub_policy_facts *f)
{
	memset(f, 0, sizeof(*f));
	f->mynetworks = ss->mynet;
	f->authenticated = sub_session_user(s) != NULL;
	f->local_dest = 1;
}

static void sub_session_mail(struct smtpd_session *s, const char *sender,
			     void *ctx)
{
	struct sub_sess *ss = smtpd_session_data(s);
	struct sub_server *srv = ss->l->srv;
	const char *user = sub_session_user(s);
	struct sub_policy_facts f;
	enum sub_policy_verdict v;
	struct sub_mjob *j;

	sub_session_facts(s, ss, &f);
	/* The intake is for the MX forwarder: AUTH is required (or a
	 * client in mynetworks, if intake_client_restrictions trust it),
	 * whatever that list says otherwise. */
	if (ss->l->kind == SUB_KIND_INTAKE && !f.authenticated && !f.mynetworks)
		v = SUB_V_REJECT;
	else if (ss->l->kind == SUB_KIND_INTAKE && f.authenticated &&
		 !sub_session_is_relay_login(srv, user)) {
		sub_session_resume(ss, 554, "5.7.1 This port is for the relay "
				   "login; submit on the submission port");
		return;
	} else
		v = sub_policy_eval(sub_session_client_restr(ss), &f);
	/* RFC 4954 §6: 530 when policy wants a login first. */
	if (v == SUB_V_REJECT || v == SUB_V_REJECT_RELAY) {
		if (!f.authenticated)
			sub_session_resume(ss, 530, "5.7.0 Authentication "
					   "required");
		else
			sub_session_resume(ss, 554, "5.7.1 Access denied");
		return;
	}
	/* reject_sender_login_mismatch, for logins other than the relay's
	 * (the MX forwarder carries Internet senders). The null sender is
	 * not checked (Postfix neither). */
	if (user == NULL || *sender == '\0' ||
	    sub_session_is_relay_login(srv, user)) {
		sub_session_resume(ss, 0, NULL);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL || (j->sender = strdup(sender)) == NULL ||
	    (j->login = strdup(user)) == NULL) {
		if (j != NULL)
			free(j->sender);
		free(j);
		sub_session_resume(ss, 451, "4.3.0 Out of memory");
		return;
	}
	j->ss = sub_session_ref(ss);
	j->milters = smtpd_server_milters(ss->l->smtpd);
	if (work_submit(srv->pool, sub_session_mail_work,
			sub_session_mail_done, j) < 0) {
		j->temp = 1;
		sub_session_mail_done(j);
	}
}

/* ---- RCPT: relay restrictions, recipient resolution, quota ----------- */

struct sub_rjob {
	struct sub_sess *ss;
	const struct sub_policy_restr *relay_restr;
	char *rcpt;
	struct sub_policy_facts f;
	long long size;
	int code;
	char text[400];
	struct err err;
};

/* may_block 0 (the loop, srv->rcpt_inline): returns 1 before anything
 * that touches the disk, a quota test, for the worker to do it all again;
 * else 0 with j->code and j->text set. */
static int sub_session_rcpt_check(struct sub_rjob *j,
				  const struct sub_server *srv, int may_block)
{
	struct sub_resolve_res res = { 0 };
	const char *at = strrchr(j->rcpt, '@');
	enum map_rc dom;
	enum sub_resolve_rc rc;

	dom = sub_resolve_local_domain(&srv->resolve, at ? at + 1 : "",
				       &j->err);
	if (dom == MAP_TEMPFAIL) {
		j->code = 451;
		snprintf(j->text, sizeof(j->text), "4.3.0 <%s>: Temporary "
			 "lookup failure", j->rcpt);
		return 0;
	}
	j->f.local_dest = dom == MAP_FOUND;
	switch (sub_policy_eval(j->relay_restr, &j->f)) {
	case SUB_V_REJECT:
		if (!j->f.authenticated) {
			/* RFC 4954 §6, as at MAIL */
			j->code = 530;
			snprintf(j->text, sizeof(j->text), "5.7.0 "
				 "Authentication required");
			return 0;
		}
		/* fall through */
	case SUB_V_REJECT_RELAY:
	case SUB_V_REJECT_LOGIN:
		j->code = 554;
		snprintf(j->text, sizeof(j->text), "5.7.1 <%s>: Relay access "
			 "denied", j->rcpt);
		return 0;
	default:
		break;
	}
	if (!j->f.local_dest)
		return 0;
	rc = sub_resolve_rcpt(&srv->resolve, j->rcpt, &res, &j->err);
	if (rc != SUB_RESOLVE_OK) {
		j->code = rc == SUB_RESOLVE_TEMP ? 451 : 550;
		snprintf(j->text, sizeof(j->text), "%s", j->err.msg);
	} else if (j->size > 0 && !may_block &&
		   sub_deliver_quota_io(res.v, res.n)) {
		sub_resolve_res_clear(&res);
		return 1;
	} else if (j->size > 0) {
		/* The size is known (MAIL SIZE=): refuse now rather than
		 * bounce later (RFC 1870 §6.1), when no member of the
		 * recipient has room; those with room get it, the others
		 * bounce at delivery. */
		size_t room = 0, full = 0;

		for (size_t i = 0; i < res.n; i++) {
			if (res.v[i].fail != NULL)
				continue;
			if (sub_deliver_over_quota(&res.v[i], j->size,
						   &j->err) > 0)
				full++;
			else
				room++;
		}
		if (full > 0 && room == 0) {
			j->code = 552;
			snprintf(j->text, sizeof(j->text), "5.2.2 <%s>:"
				 " Mailbox full", j->rcpt);
		}
	}
	sub_resolve_res_clear(&res);
	return 0;
}

static void sub_session_rcpt_work(void *arg)
{
	struct sub_rjob *j = arg;

	sub_session_rcpt_check(j, j->ss->l->srv, 1);
}

static void sub_session_rcpt_done(void *arg)
{
	struct sub_rjob *j = arg;
	struct sub_sess *ss = j->ss;

	if (j->code == 0 && !ss->gone && smtpd_server_milters(ss->l->smtpd)) {
		/* the milters' {rcpt_mailer} {rcpt_host}, as Postfix's
		 * resolver: our mailboxes "virtual" (next hop the domain),
		 * the rest "smtp" to relayhost or the domain */
		const char *at = strrchr(j->rcpt, '@');
		const char *rh = cfg_get("relayhost");

		smtpd_set_route(ss->l->smtpd, ss->sid, j->f.local_dest ?
				"virtual" : "smtp", !j->f.local_dest &&
				rh != NULL && *rh != '\0' ? rh :
				at != NULL ? at + 1 : NULL);
	}
	if (j->code != 0 && !ss->gone) {
		char r[300];

		sub_session_clean(j->rcpt, r, sizeof(r));
		log_info("reject: RCPT from %s[%s]: %d %s; to=<%s>", ss->name,
			 ss->addr, j->code, j->text, r);
	}
	sub_session_resume(ss, j->code, j->code ? j->text : NULL);
	free(j->rcpt);
	sub_session_unref(ss);
	free(j);
}

static void sub_session_rcpt(struct smtpd_session *s, const char *rcpt,
			     void *ctx)
{
	struct sub_sess *ss = smtpd_session_data(s);
	struct sub_rjob *j = calloc(1, sizeof(*j));

	if (j == NULL || (j->rcpt = strdup(rcpt)) == NULL) {
		free(j);
		sub_session_resume(ss, 451, "4.3.0 Out of memory");
		return;
	}
	sub_session_facts(s, ss, &j->f);
	j->relay_restr = sub_session_relay_restr(ss);
	j->size = (long long)smtpd_session_declared_size(s);
	j->ss = sub_session_ref(ss);
	/* Maps in memory: answered here, saving two thread switches per
	 * recipient (issue 12); a mailbox with a quota still goes to a
	 * worker, which reads its maildirsize. */
	if (ss->l->srv->rcpt_inline &&
	    sub_session_rcpt_check(j, ss->l->srv, 0) == 0) {
		sub_session_rcpt_done(j);
		return;
	}
	if (work_submit(ss->l->srv->pool, sub_session_rcpt_work,
			sub_session_rcpt_done, j) < 0) {
		j->code = 451;
		snprintf(j->text, sizeof(j->text), "4.3.0 Server busy");
		sub_session_rcpt_done(j);
	}
}

/* ---- DATA: dedupe, delivery, outbound queue, IDENT record ------------ */

enum sub_st { SUB_ST_OK, SUB_ST_PERM, SUB_ST_TEMP };

struct sub_djob {
	struct sub_sess *ss;
	struct smtpd_msg *m;
	char key[80];           /* IDENT or our qid: names the Maildir files */
	char *ident;            /* trusted XFORWARD IDENT, or NULL */
	int scan;               /* an earlier attempt may have delivered */
	int msa;                /* add Message-ID/Date (RFC 6409 §8) */
	char *data;             /* the message as delivered */
	size_t len;
	struct sub_resolve_res remote;
	struct dsn_rcpt *failed;
	size_t nfailed;
	int nok, ntemp;
	char why[300];          /* first temporary/permanent reason */
	char outqid[QUEUE_QID_LEN];
	struct buf bounce;
	int step;
};

static void sub_session_djob_free(struct sub_djob *j)
{
	for (size_t i = 0; i < j->nfailed; i++) {
		free((char *)j->failed[i].addr);
		free((char *)j->failed[i].diag);
	}
	free(j->failed);
	sub_resolve_res_clear(&j->remote);
	if (j->data != j->m->data)
		free(j->data);
	smtpd_msg_free(j->m);
	free(j->ident);
	buf_free(&j->bounce);
	sub_session_unref(j->ss);
	free(j);
}

/* RFC 6409 §8.2, §8.3: an MSA may add a missing Date and Message-ID. */
static void sub_session_fix_headers(struct sub_djob *j, const char *host)
{
	const char *d = j->m->data;
	size_t len = j->m->len, at;
	struct buf b;
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	int need_id = !sub_policy_hdr_has(d, len, "Message-ID");
	int need_date = !sub_policy_hdr_has(d, len, "Date");

	j->data = j->m->data;
	j->len = len;
	if (!need_id && !need_date)
		return;
	at = sub_policy_insert_at(d, len);
	buf_init(&b, 0);
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (buf_append(&b, d, at) < 0 ||
	    (need_date && buf_printf(&b, "Date: %s\r\n", date) < 0) ||
	    (need_id && buf_printf(&b, "Message-ID: <%lld.%s@%s>\r\n",
				   (long long)now, j->m->qid, host) < 0) ||
	    buf_append(&b, d + at, len - at) < 0) {
		buf_free(&b);
		return;  /* out of memory: deliver unchanged */
	}
	j->len = b.len;
	j->data = buf_steal(&b);
}

static void sub_session_note(struct sub_djob *j, enum sub_st st,
			     const char *addr, const char *why)
{
	struct dsn_rcpt *nf;

	if (st == SUB_ST_OK) {
		j->nok++;
		return;
	}
	if (j->why[0] == '\0' || (st == SUB_ST_TEMP && j->ntemp == 0))
		snprintf(j->why, sizeof(j->why), "%s", why);
	if (st == SUB_ST_TEMP) {
		j->ntemp++;
		return;
	}
	nf = realloc(j->failed, (j->nfailed + 1) * sizeof(*nf));
	if (nf == NULL) {
		j->ntemp++;
		return;
	}
	j->failed = nf;
	memset(&nf[j->nfailed], 0, sizeof(*nf));
	nf[j->nfailed].action = "failed";
	nf[j->nfailed].addr = strdup(addr);
	/* RFC 3464 §2.3.6: the diagnostic is the SMTP reply we would
	 * have given had we known before DATA. */
	if (asprintf((char **)&nf[j->nfailed].diag, "%d %s",
		     strncmp(why, "5.2.2", 5) == 0 ? 552 : 550, why) < 0)
		nf[j->nfailed].diag = NULL;
	if (nf[j->nfailed].addr == NULL || nf[j->nfailed].diag == NULL) {
		free((char *)nf[j->nfailed].addr);
		free((char *)nf[j->nfailed].diag);
		j->ntemp++;
		return;
	}
	j->nfailed++;
}

/* Keep remote targets once each, whatever alias path led there. */
static int sub_session_add_remote(struct sub_djob *j, const char *addr)
{
	struct sub_target *nv;

	for (size_t i = 0; i < j->remote.n; i++)
		if (strcasecmp(j->remote.v[i].addr, addr) == 0)
			return 0;
	nv = realloc(j->remote.v, (j->remote.n + 1) * sizeof(*nv));
	if (nv == NULL)
		return -1;
	j->remote.v = nv;
	memset(&nv[j->remote.n], 0, sizeof(*nv));
	nv[j->remote.n].addr = strdup(addr);
	if (nv[j->remote.n].addr == NULL)
		return -1;
	j->remote.n++;
	return 0;
}

static void sub_session_deliver_one(struct sub_djob *j, const char *rcpt,
				    const struct sub_server *srv)
{
	struct sub_resolve_res res = { 0 };
	char name[MAILDIR_NAME_MAX];
	struct err err;
	enum sub_resolve_rc rc;

	rc = sub_resolve_rcpt(&srv->resolve, rcpt, &res, &err);
	if (rc != SUB_RESOLVE_OK) {
		sub_session_note(j, rc == SUB_RESOLVE_TEMP ? SUB_ST_TEMP :
				 SUB_ST_PERM, rcpt, err.msg);
		sub_resolve_res_clear(&res);
		return;
	}
	for (size_t i = 0; i < res.n; i++) {
		struct sub_target *t = &res.v[i];
		enum sub_deliver_rc drc;

		if (t->fail != NULL) {
			/* an alias member without a mailbox: it alone
			 * bounces (Postfix virtual(8)), the others deliver */
			log_info("%s: to=<%s>, orig_to=<%s>, relay=local, "
				 "status=bounced (%s)", j->m->qid, t->addr,
				 rcpt, t->fail);
			sub_session_note(j, SUB_ST_PERM, t->addr, t->fail);
			continue;
		}
		/* A milter's QUARANTINE holds every copy, our mailboxes'
		 * too: they wait on hold in the outbound queue, whose
		 * "local" transport delivers them once released. */
		if (!t->local || j->m->quarantine != NULL) {
			if (sub_session_add_remote(j, t->addr) < 0)
				sub_session_note(j, SUB_ST_TEMP, t->addr,
						 "4.3.0 Out of memory");
			continue;
		}
		drc = sub_deliver_local(t, j->key, j->scan, j->m->sender,
					j->data, j->len, srv->fsync_group,
					name, sizeof(name), &err);
		if (drc == SUB_DELIVER_OK || drc == SUB_DELIVER_DUP) {
			log_info("%s: to=<%s>, orig_to=<%s>, relay=local, "
				 "dsn=2.0.0, status=sent (%s %s)", j->m->qid,
				 t->addr, rcpt, drc == SUB_DELIVER_DUP ?
				 "already delivered as" : "delivered to",
				 t->maildir ? name : "mailbox");
			sub_session_note(j, SUB_ST_OK, t->addr, NULL);
		} else {
			log_info("%s: to=<%s>, orig_to=<%s>, relay=local, "
				 "status=%s (%s)", j->m->qid, t->addr, rcpt,
				 drc == SUB_DELIVER_TEMP ? "deferred" :
				 "bounced", err.msg);
			sub_session_note(j, drc == SUB_DELIVER_TEMP ?
					 SUB_ST_TEMP : SUB_ST_PERM, t->addr,
					 err.msg);
		}
	}
	sub_resolve_res_clear(&res);
}

static void sub_session_deliver_work(void *arg)
{
	struct sub_djob *j = arg;
	const struct sub_server *srv = j->ss->l->srv;

	if (j->msa)
		sub_session_fix_headers(j, srv->myhostname);
	else {
		j->data = j->m->data;
		j->len = j->m->len;
	}
	for (int i = 0; i < j->m->nrcpt; i++)
		sub_session_deliver_one(j, j->m->rcpts[i], srv);
}

static void sub_session_step(struct sub_djob *j);

static void sub_session_reply(struct sub_djob *j, int code, const char *text)
{
	sub_session_resume(j->ss, code, text);
	sub_session_djob_free(j);
}

static void sub_session_ident_set(struct redisc *r, struct redisReply *rep,
				  void *arg)
{
	struct sub_djob *j = arg;
	char text[120];

	if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
		log_warn("%s: warning: could not record ident=%s: %s",
			 j->m->qid, j->ident, rep ? rep->str : "Redis down");
	snprintf(text, sizeof(text), "2.0.0 Ok: queued as %s", j->m->qid);
	sub_session_reply(j, 250, text);
}

static void sub_session_queued(void *arg, int ok, const struct err *err)
{
	struct sub_djob *j = arg;

	if (!ok) {
		log_warn("%s: outbound queue write failed: %s", j->m->qid,
			 err ? err->msg : "?");
		sub_session_reply(j, 451, "4.3.0 Queue write failed, try "
				  "again later");
		return;
	}
	sub_session_step(j);
}

/* A queue id derived from the IDENT, so the forwarder's retry after a
 * crash cannot queue the remote part twice under two ids. */
static void sub_session_outqid(struct sub_djob *j, const char *salt)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	static const char hex[] = "0123456789ABCDEF";
	char in[200];

	if (j->ident == NULL) {
		queue_qid_new(j->outqid);
		return;
	}
	snprintf(in, sizeof(in), "%s/%s", j->ident, salt);
	if (EVP_Digest(in, strlen(in), md, &n, EVP_sha256(), NULL) != 1) {
		queue_qid_new(j->outqid);
		return;
	}
	for (int i = 0; i < 10; i++) {
		j->outqid[2 * i] = hex[md[i] >> 4];
		j->outqid[2 * i + 1] = hex[md[i] & 15];
	}
	j->outqid[20] = '\0';
}

static void sub_session_put(struct sub_djob *j, const char *sender,
			    struct sub_target *v, size_t n, const char *data,
			    size_t len, int hold)
{
	struct queue_env env = { 0 };
	struct queue_rcpt *r = calloc(n, sizeof(*r));

	if (r == NULL) {
		sub_session_reply(j, 451, "4.3.0 Out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++)
		r[i].addr = v[i].addr;
	snprintf(env.qid, sizeof(env.qid), "%s", j->outqid);
	env.sender = (char *)sender;
	env.rcpts = r;
	env.nrcpt = n;
	env.client_name = j->m->client_name;
	env.client_addr = j->m->client_addr;
	env.helo = j->m->helo;
	env.proto = j->m->protocol;
	env.smtputf8 = j->m->smtputf8;
	env.body8bit = j->m->body == SMTP_BODY_8BITMIME;
	env.hold = hold;
	queue_put(j->ss->l->srv->outq, &env, data, len, sub_session_queued, j);
	free(r);
}

static void sub_session_step_remote(struct sub_djob *j)
{
	sub_session_outqid(j, "out");
	for (size_t i = 0; i < j->remote.n; i++)
		log_info("%s: to=<%s>, relay=outbound, status=queued as %s",
			 j->m->qid, j->remote.v[i].addr, j->outqid);
	/* a milter's QUARANTINE holds the copies in the queue */
	sub_session_put(j, j->m->sender, j->remote.v, j->remote.n, j->data,
			j->len, j->m->quarantine != NULL);
}

static void sub_session_step_bounce(struct sub_djob *j)
{
	const struct sub_server *srv = j->ss->l->srv;
	struct sub_target t = { .addr = j->m->sender };

	struct dsn_info info = { .reporting_mta = srv->myhostname,
				 .qid = j->m->qid, .sender = j->m->sender,
				 .arrival = time(NULL), .now = time(NULL) };
	struct err err;

	buf_init(&j->bounce, 0);
	if (dsn_build(&j->bounce, &info, j->failed, j->nfailed, j->data,
		      j->len, &err) < 0) {
		log_warn("%s: cannot build bounce: %s", j->m->qid, err.msg);
		sub_session_reply(j, 451, "4.3.0 Cannot build bounce");
		return;
	}
	sub_session_outqid(j, "bounce");
	log_info("%s: sender non-delivery notification: %s", j->m->qid,
		 j->outqid);
	sub_session_put(j, "", &t, 1, j->bounce.p, j->bounce.len, 0);
}

/* After the local copies: the remote part, a bounce for recipients that
 * failed for good, the IDENT record, then the reply. Each step is
 * durable before the next starts, and 250 comes last. */
static void sub_session_step(struct sub_djob *j)
{
	struct sub_server *srv = j->ss->l->srv;
	char key[128];

	switch (j->step++) {
	case 0:
		if (j->remote.n > 0 && srv->outq != NULL) {
			sub_session_step_remote(j);
			return;
		}
		if (j->remote.n > 0) {
			sub_session_reply(j, 451, "4.3.0 No outbound queue");
			return;
		}
		/* fall through */
	case 1:
		j->step = 2;
		if (j->nfailed > 0 && *j->m->sender != '\0' &&
		    srv->outq != NULL) {
			sub_session_step_bounce(j);
			return;
		}
		/* fall through */
	default:
		if (j->ident == NULL) {
			char text[120];

			snprintf(text, sizeof(text), "2.0.0 Ok: queued as %s",
				 j->m->qid);
			sub_session_reply(j, 250, text);
			return;
		}
		snprintf(key, sizeof(key), "sub:ident:%s", j->ident);
		(void)redisc_command(srv->redis, sub_session_ident_set, j,
				     "SET %s %s EX %ld", key, j->m->qid,
				     srv->ident_lifetime);
		return;
	}
}

static void sub_session_deliver_done(void *arg)
{
	struct sub_djob *j = arg;
	char text[400];

	if (j->ntemp > 0) {
		/* RFC 5321 §4.2.5: nothing is acknowledged unless every copy
		 * is safe; the client retries (our files' stems make the
		 * forwarder's retry idempotent). */
		log_warn("%s: delivery deferred: %s", j->m->qid, j->why);
		snprintf(text, sizeof(text), "4.3.0 Temporary local delivery "
			 "failure, try again later");
		sub_session_reply(j, 451, text);
		return;
	}
	if (j->nok == 0 && j->remote.n == 0 && j->nfailed > 0) {
		int code = strncmp(j->why, "5.2.2", 5) == 0 ? 552 : 550;

		sub_session_reply(j, code, j->why);
		return;
	}
	j->step = 0;
	sub_session_step(j);
}

static void sub_session_deliver_start(struct sub_djob *j)
{
	if (work_submit(j->ss->l->srv->pool, sub_session_deliver_work,
			sub_session_deliver_done, j) < 0)
		sub_session_reply(j, 451, "4.3.0 Server busy");
}

static void sub_session_ident_got(struct redisc *r, struct redisReply *rep,
				  void *arg)
{
	struct sub_djob *j = arg;
	char text[200];

	if (rep != NULL && rep->type == REDIS_REPLY_ERROR && !j->scan) {
		/* SET ... NX GET needs Redis 7; an older one refuses it: ask
		 * with GET and take the careful path (scan before writing). */
		char key[128];

		j->scan = 1;
		snprintf(key, sizeof(key), "sub:ident:%s", j->ident);
		(void)redisc_command(r, sub_session_ident_got, j, "GET %s",
				     key);
		return;
	}
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		sub_session_reply(j, 451, "4.3.0 Temporary failure, try again");
		return;
	}
	if (rep->type == REDIS_REPLY_STRING &&
	    strcmp(rep->str, SUB_SESSION_PENDING) == 0) {
		/* An attempt started and never finished (a crash, a 4xx):
		 * its copies may exist; look before writing. */
		j->scan = 1;
	} else if (rep->type == REDIS_REPLY_STRING) {
		log_info("%s: ident=%s already delivered as %.*s, discarded",
			 j->m->qid, j->ident, (int)rep->len, rep->str);
		snprintf(text, sizeof(text), "2.0.0 Ok: already delivered as "
			 "%.*s", (int)(rep->len > 40 ? 40 : rep->len), rep->str);
		sub_session_reply(j, 250, text);
		return;
	}
	sub_session_deliver_start(j);
}

static void sub_session_message(struct smtpd_session *s, struct smtpd_msg *m,
				void *ctx)
{
	struct sub_sess *ss = smtpd_session_data(s);
	struct sub_server *srv = ss->l->srv;
	const char *user = sub_session_user(s);
	struct sub_djob *j = calloc(1, sizeof(*j));
	int relay = sub_session_is_relay_login(srv, user);

	if (j == NULL) {
		smtpd_msg_free(m);
		sub_session_resume(ss, 451, "4.3.0 Out of memory");
		return;
	}
	j->ss = sub_session_ref(ss);
	j->m = m;
	if (m->xforward_ident != NULL && (relay || ss->mynet) &&
	    sub_policy_token_ok(m->xforward_ident))
		j->ident = strdup(m->xforward_ident);
	snprintf(j->key, sizeof(j->key), "%s", j->ident ? j->ident : m->qid);
	j->msa = !relay && m->xforward_ident == NULL;
	if (j->ident != NULL) {
		char key[128];

		log_info("%s: ident=%s", m->qid, j->ident);
		snprintf(key, sizeof(key), "sub:ident:%s", j->ident);
		/* DESIGN.md "exactly once over the hop": mark the attempt
		 * before delivering; a retry that finds the mark searches the
		 * Maildirs for the copies, the first attempt needs no scan. */
		(void)redisc_command(srv->redis, sub_session_ident_got, j,
				     "SET %s %s NX GET EX %ld", key,
				     SUB_SESSION_PENDING, srv->ident_lifetime);
		return;
	}
	sub_session_deliver_start(j);
}

const struct smtpd_hooks sub_session_hooks = {
	.connect = sub_session_connect,
	.mail = sub_session_mail,
	.rcpt = sub_session_rcpt,
	.message = sub_session_message,
	.auth_check = sub_session_auth_check,
	.auth_verdict = sub_session_auth_verdict,
	.auth_result = sub_session_auth_result,
	.xforward_ok = sub_session_xforward_ok,
	.disconnect = sub_session_disconnect,
};
