/* mx_session: mx-relay's hooks for the smtpd engine (see mx_session.h).
 * RCPT checks run on the worker pool (maps may be MySQL); rate counters and
 * the queue go through Redis asynchronously. Every callback finds its
 * session by id, since the client may have left meanwhile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cfg.h"
#include "log.h"
#include "queue.h"
#include "redisc.h"
#include "smtp_cmd.h"
#include "mx_session.h"
#include "work.h"

struct mx_session_job {
	struct mx_relay *mx;
	uint64_t sid;
	char qid[SMTPD_QID_SIZE];
	char *rcpt;
	int code;
	char text[300];
};

static struct mx_session_job *mx_session_job_new(struct smtpd_session *s,
                                                 void *ctx)
{
	struct mx_session_job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return NULL;
	j->mx = ctx;
	j->sid = smtpd_session_id(s);
	snprintf(j->qid, sizeof(j->qid), "%s", smtpd_session_qid(s));
	return j;
}

static void mx_session_job_free(struct mx_session_job *j)
{
	if (j == NULL)
		return;
	free(j->rcpt);
	free(j);
}

static void mx_session_answer(struct mx_session_job *j, int code,
                              const char *text)
{
	if (!j->mx->stopping)
		smtpd_resume(j->mx->smtpd, j->sid, code, text);
	mx_session_job_free(j);
}

/* ---- connection and message rates (Postfix anvil, in Redis) ---------- */

static void mx_session_conn_rated(void *arg, long count)
{
	struct mx_session_job *j = arg;
	char text[200];

	if (count < 0 || count <= j->mx->conn_rate)
		return mx_session_answer(j, 0, NULL);
	snprintf(text, sizeof(text), "4.7.0 Error: too many connections "
	         "from %s", j->rcpt);
	log_warn("Connection rate limit exceeded: %ld from %s for service "
	         "smtp", count, j->rcpt);
	mx_session_answer(j, 421, text);
}

/* Count one event for the client's address in Redis (shared by every MX
 * host) and let rated() answer; without a limit or Redis, accept. */
static void mx_session_rate(struct smtpd_session *s, struct mx_relay *mx,
                            long limit, const char *kind,
                            void (*rated)(void *arg, long count))
{
	struct mx_session_job *j;
	char key[128];

	if (limit <= 0 || mx->redis == NULL) {
		smtpd_resume(mx->smtpd, smtpd_session_id(s), 0, NULL);
		return;
	}
	j = mx_session_job_new(s, mx);
	if (j == NULL || (j->rcpt = strdup(smtpd_session_client_addr(s))) == NULL) {
		mx_session_job_free(j);
		smtpd_resume(mx->smtpd, smtpd_session_id(s), 0, NULL);
		return;
	}
	snprintf(key, sizeof(key), "mx:rate:%s:%s", kind, j->rcpt);
	redisc_rate_hit(mx->redis, key, (int)mx->rate_unit, rated, j);
}

static void mx_session_connect(struct smtpd_session *s, void *ctx)
{
	struct mx_relay *mx = ctx;

	mx_session_rate(s, mx, mx->conn_rate, "conn", mx_session_conn_rated);
}

static void mx_session_msg_rated(void *arg, long count)
{
	struct mx_session_job *j = arg;
	char text[200];

	if (count < 0 || count <= j->mx->msg_rate)
		return mx_session_answer(j, 0, NULL);
	snprintf(text, sizeof(text), "4.7.0 Error: too many messages from %s",
	         j->rcpt);
	log_warn("Message delivery request rate limit exceeded: %ld from %s "
	         "for service smtp", count, j->rcpt);
	mx_session_answer(j, 450, text);
}

static void mx_session_mail(struct smtpd_session *s, const char *sender,
                            void *ctx)
{
	struct mx_relay *mx = ctx;

	mx_session_rate(s, mx, mx->msg_rate, "msg", mx_session_msg_rated);
}

/* ---- recipients ------------------------------------------------------ */

static enum map_rc mx_session_lookup(struct mx_relay *mx, struct map *m,
                                     const char *rcpt, int flags,
                                     struct err *err)
{
	char *value = NULL;
	enum map_rc rc;

	if (m == NULL || map_is_empty(m))
		return MAP_NOTFOUND;
	rc = vlookup_addr(m, rcpt, mx->delims, flags, &value, NULL, err);
	free(value);
	return rc;
}

/* Which of our domain lists holds domain: 1 relay, 2 virtual, 0 none. */
static int mx_session_domain(struct mx_relay *mx, const char *domain,
                             struct err *err, int *temp_r)
{
	enum map_rc rc;

	*temp_r = 0;
	rc = mx->relay_domains != NULL ?
	     vlookup_domains_match(mx->relay_domains, domain, err) : MAP_NOTFOUND;
	if (rc == MAP_FOUND)
		return 1;
	if (rc == MAP_TEMPFAIL)
		*temp_r = 1;
	rc = mx->virtual_domains != NULL ?
	     vlookup_domains_match(mx->virtual_domains, domain, err) : MAP_NOTFOUND;
	if (rc == MAP_FOUND)
		return 2;
	if (rc == MAP_TEMPFAIL)
		*temp_r = 1;
	return 0;
}

int mx_session_check_rcpt(struct mx_relay *mx, const char *rcpt, char *text,
                          size_t n)
{
	char full[600];
	const char *at = strrchr(rcpt, '@');
	struct err err = { 0, "" };
	int kind, temp;
	enum map_rc rc;

	/* RFC 5321 §4.1.1.3: <postmaster> without a domain is ours */
	if (at == NULL) {
		snprintf(full, sizeof(full), "%s@%s", rcpt, mx->mydomain);
		rcpt = full;
		at = strrchr(rcpt, '@');
	}
	kind = mx_session_domain(mx, at + 1, &err, &temp);
	if (kind == 0 && temp) {
		log_warn("warning: %s: domain lookup failed: %s", at + 1,
			 err.msg);
		snprintf(text, n, "4.3.0 <%s>: Temporary lookup failure", rcpt);
		return 451;
	}
	if (kind == 0) {
		snprintf(text, n, "5.7.1 <%s>: Relay access denied", rcpt);
		return 554;
	}
	if ((mx->relay_rcpt == NULL || map_is_empty(mx->relay_rcpt)) &&
	    (mx->vmailbox == NULL || map_is_empty(mx->vmailbox)) &&
	    (mx->valias == NULL || map_is_empty(mx->valias)))
		return 0;   /* no tables: Postfix accepts every user */
	rc = mx_session_lookup(mx, mx->relay_rcpt, rcpt, VLOOKUP_ALIAS, &err);
	if (rc == MAP_NOTFOUND)
		rc = mx_session_lookup(mx, mx->vmailbox, rcpt, VLOOKUP_MAILBOX, &err);
	if (rc == MAP_NOTFOUND)
		rc = mx_session_lookup(mx, mx->valias, rcpt, VLOOKUP_ALIAS, &err);
	if (rc == MAP_FOUND)
		return 0;
	if (rc == MAP_TEMPFAIL) {
		log_warn("warning: <%s>: recipient lookup failed: %s", rcpt,
			 err.msg);
		snprintf(text, n, "4.3.0 <%s>: Temporary lookup failure", rcpt);
		return 451;
	}
	snprintf(text, n, "5.1.1 <%s>: Recipient address rejected: User "
	         "unknown in %s recipient table", rcpt,
	         kind == 1 ? "relay" : "virtual mailbox");
	return 550;
}

/* The milters' {rcpt_mailer} {rcpt_host} for an accepted recipient: the
 * MX forwards everything with SMTP to relayhost (the internal host), or
 * without one to the recipient's domain (transport_maps are not looked
 * at here). */
static void mx_session_route(struct mx_relay *mx, uint64_t sid,
                             const char *rcpt)
{
	const char *rh, *at;

	if (!smtpd_server_milters(mx->smtpd))
		return;
	rh = cfg_get("relayhost");
	at = strrchr(rcpt, '@');
	smtpd_set_route(mx->smtpd, sid, "smtp", rh != NULL && *rh != '\0' ?
	                rh : at != NULL ? at + 1 : mx->mydomain);
}

static void mx_session_rcpt_work(void *arg)
{
	struct mx_session_job *j = arg;

	j->code = mx_session_check_rcpt(j->mx, j->rcpt, j->text,
	                                sizeof(j->text));
}

static void mx_session_rcpt_done(void *arg)
{
	struct mx_session_job *j = arg;

	if (j->code == 0 && !j->mx->stopping)
		mx_session_route(j->mx, j->sid, j->rcpt);
	mx_session_answer(j, j->code, j->code != 0 ? j->text : NULL);
}

int mx_session_spec_inline(const char *spec)
{
	const char *p = spec;

	if (spec == NULL)
		return 1;
	while (*p != '\0') {
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',' || *p == '!')
			p++;
		n = strcspn(p, " \t,");
		if (n > 0 && memchr(p, ':', n) != NULL &&
		    strncmp(p, "texthash:", 9) != 0 &&
		    strncmp(p, "static:", 7) != 0)
			return 0;
		if (n > 0 && p[0] == '/')
			return 0;   /* a file of entries: may name maps */
		p += n;
	}
	return 1;
}

static void mx_session_rcpt(struct smtpd_session *s, const char *rcpt,
                            void *ctx)
{
	struct mx_relay *mx = ctx;
	struct mx_session_job *j;
	char text[300];
	int code;

	if (mx->inline_lookups) {
		code = mx_session_check_rcpt(mx, rcpt, text, sizeof(text));
		if (code == 0)
			mx_session_route(mx, smtpd_session_id(s), rcpt);
		smtpd_resume(mx->smtpd, smtpd_session_id(s), code,
		             code != 0 ? text : NULL);
		return;
	}
	j = mx_session_job_new(s, ctx);

	if (j == NULL || (j->rcpt = strdup(rcpt)) == NULL ||
	    work_submit(mx->pool, mx_session_rcpt_work, mx_session_rcpt_done,
	                j) < 0) {
		mx_session_job_free(j);
		smtpd_resume(mx->smtpd, smtpd_session_id(s), 451,
		             "4.3.0 Error: temporary failure, try again later");
	}
}

/* ---- the message: durable in Redis before the 250 -------------------- */

static void mx_session_queued(void *arg, int ok, const struct err *err)
{
	struct mx_session_job *j = arg;

	if (!ok) {
		log_warn("%s: queue write failed: %s", j->qid,
		         err != NULL ? err->msg : "unknown error");
		return mx_session_answer(j, 451,
		                         "4.3.0 Error: queue file write error");
	}
	log_info("%s: queued", j->qid);
	if (j->mx->stopping ||
	    smtpd_resume(j->mx->smtpd, j->sid, 0, NULL) < 0)
		log_info("%s: queued, but the client left before the reply "
		         "(it may send the message again)", j->qid);
	mx_session_job_free(j);
}

static void mx_session_message(struct smtpd_session *s, struct smtpd_msg *m,
                               void *ctx)
{
	struct mx_relay *mx = ctx;
	struct mx_session_job *j = mx_session_job_new(s, ctx);
	struct queue_rcpt *r = calloc((size_t)m->nrcpt, sizeof(*r));
	struct queue_env env;
	struct queue *q = mx->nqueue > 0 ? mx->queuev[mx->next_queue++ %
	                                             mx->nqueue] : mx->queue;
	int i;

	if (j == NULL || r == NULL || q == NULL) {
		free(r);
		mx_session_job_free(j);
		smtpd_msg_free(m);
		smtpd_resume(mx->smtpd, smtpd_session_id(s), 451,
		             "4.3.0 Error: queue file write error");
		return;
	}
	memset(&env, 0, sizeof(env));
	snprintf(env.qid, sizeof(env.qid), "%s", m->qid);
	snprintf(j->qid, sizeof(j->qid), "%s", m->qid);
	env.sender = m->sender;
	for (i = 0; i < m->nrcpt; i++) {
		r[i].addr = m->rcpts[i];
		r[i].orcpt = m->orcpts[i];
		r[i].state = QUEUE_RCPT_PENDING;
	}
	env.rcpts = r;
	env.nrcpt = (size_t)m->nrcpt;
	env.client_name = m->client_name;
	env.client_addr = m->client_addr;
	env.helo = m->helo;
	env.proto = m->protocol;
	env.smtputf8 = m->smtputf8;
	env.body8bit = m->body == SMTP_BODY_8BITMIME;
	/* a milter's QUARANTINE: keep it on hold (Postfix's hold queue)
	 * until "mailq release QID"; 250 still means durable */
	env.hold = m->quarantine != NULL;
	/* queue_put copies everything before it returns */
	queue_put(q, &env, m->data, m->len, mx_session_queued, j);
	free(r);
	smtpd_msg_free(m);
}

const struct smtpd_hooks mx_session_hooks = {
	.connect = mx_session_connect,
	.mail = mx_session_mail,
	.rcpt = mx_session_rcpt,
	.message = mx_session_message,
};
