/* qmgr: claim -> route and resolve (worker pool, or the loop when that
 * cannot block) -> deliver per next hop
 * (pooled smtpc connections, or a registered transport) -> write back
 * (queue_finish) with a bounce queued first when recipients failed. A
 * message is held by its lease from claim to write-back; the lease is
 * renewed while delivery takes long, and anything abandoned (crash,
 * qmgr_free) comes back after the lease. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include "buf.h"
#include "dns_mx.h"
#include "dsn.h"
#include "log.h"
#include "qmgr.h"
#include "work.h"

#define QMGR_MAX_ADDRS 16
#define QMGR_DSN_MAX (16 * 1024 * 1024)

struct qmgr_transport {
	char *name;
	qmgr_deliver_fn *fn;
	void *arg;
	struct qmgr_transport *next;
};

struct qmgr_conn;

struct qmgr_dest {
	char *key;                   /* nexthop (+ user) */
	int nconn;
	struct qmgr_conn *idle;
	struct qmgr_group *wait_head, *wait_tail;
	struct qmgr_dest *next;
};

struct qmgr_conn {
	struct qmgr *m;
	struct qmgr_dest *d;
	struct smtpc *c;
	struct event *idle_ev;
	struct qmgr_group *g;        /* being delivered */
	struct qmgr_conn *next;      /* in d->idle */
	struct qmgr_conn *all_prev, *all_next;   /* in m->conns */
};

struct qmgr_group {
	struct qmgr_msg *msg;
	char *nexthop;               /* as routed, without "smtp:" */
	char *transport;             /* NULL: smtp */
	size_t *idx, n;
	struct smtpc_addr *addrs;
	size_t naddrs;
	char *user, *pass;
	int fail_code;               /* routing/resolving failed: 4xx/5xx */
	char *fail_text;
	struct qmgr_group *next_wait;
};

struct qmgr_msg {
	struct qmgr *m;
	struct queue_msg *qm;
	struct qmgr_group *groups;
	size_t ngroups, pending;
	int *failed_now;             /* per rcpt: failed in this attempt
	                              * (1), or expired in the queue (2) */
	char **relay;                /* per rcpt: who answered */
	struct event *renew_ev;
	int ops;                     /* Redis or worker callbacks to come */
	struct qmgr_msg *prev, *next;
};

struct qmgr {
	struct event_base *base;
	struct work_pool *pool;
	struct queue *q;
	struct qmgr_conf conf;
	struct event *scan_ev;
	int claiming;
	int stopping;                /* qmgr_free ran; last callback frees */
	int active;
	struct qmgr_msg *msgs;
	struct qmgr_dest *dests;
	struct qmgr_conn *conns;
	struct qmgr_transport *transports;
};

static void qmgr_claim_now(struct qmgr *m);
static void qmgr_group_done(struct qmgr_group *g,
    const struct smtpc_result *res);
static void qmgr_dispatch(struct qmgr *m, struct qmgr_group *g);

static long long qmgr_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

long qmgr_backoff(const struct qmgr_conf *conf, int attempts)
{
	long d = conf->minimal_backoff > 0 ? conf->minimal_backoff : 1;
	int i;

	/* Postfix-like: the delay doubles per attempt, between the bounds. */
	for (i = 1; i < attempts && d < conf->maximal_backoff; i++)
		d *= 2;
	if (conf->maximal_backoff > 0 && d > conf->maximal_backoff)
		d = conf->maximal_backoff;
	if (d < conf->queue_run_delay)
		d = conf->queue_run_delay;
	return d;
}

/* ---- route and resolve, on a worker thread ------------------------------ */

struct qmgr_rjob {
	struct qmgr *m;              /* only read in done, on the loop */
	struct qmgr_msg *msg;
	/* inputs, copies */
	char **rcpts;
	size_t *ridx, nr;
	qmgr_route_fn *route;
	qmgr_creds_fn *creds;
	void *arg;
	int default_port;
	char *resolver;
	char *transports;            /* " local relay " registered names */
	/* outputs */
	struct qmgr_group *groups;
	size_t ngroups;
};

/* "[host]:port" -> host, port, mx=0; "host:port" -> mx=1. */
static int qmgr_parse_nexthop(const char *nh, char *host, size_t hostsz,
    int *port, int *mx, int defport)
{
	const char *p = nh, *end;
	char *e;
	long v;

	*port = defport;
	*mx = 1;
	if (*p == '[') {
		end = strchr(p, ']');
		if (end == NULL)
			return -1;
		snprintf(host, hostsz, "%.*s", (int)(end - p - 1), p + 1);
		*mx = 0;
		p = end + 1;
	} else {
		end = strrchr(p, ':');
		if (end == NULL)
			end = p + strlen(p);
		snprintf(host, hostsz, "%.*s", (int)(end - p), p);
		p = end;
	}
	if (*p == ':') {
		v = strtol(p + 1, &e, 10);
		if (*e != '\0' || v <= 0 || v > 65535)
			return -1;
		*port = (int)v;
	} else if (*p != '\0') {
		return -1;
	}
	return host[0] != '\0' ? 0 : -1;
}

static void qmgr_group_fail(struct qmgr_group *g, int code, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
static void qmgr_group_fail(struct qmgr_group *g, int code, const char *fmt,
    ...)
{
	va_list ap;
	char *t = NULL;

	va_start(ap, fmt);
	if (vasprintf(&t, fmt, ap) < 0)
		t = NULL;
	va_end(ap);
	g->fail_code = code;
	free(g->fail_text);
	g->fail_text = t;
}

int qmgr_nexthop_is_literal(const char *nh)
{
	char host[256];
	unsigned char a[sizeof(struct in6_addr)];
	int port, mx;

	if (nh == NULL || qmgr_parse_nexthop(nh, host, sizeof(host), &port,
	    &mx, 25) < 0 || mx)
		return 0;
	return inet_pton(AF_INET, host, a) == 1 ||
	    inet_pton(AF_INET6, host, a) == 1;
}

static void qmgr_resolve_smtp(struct qmgr_rjob *j, struct qmgr_group *g)
{
	char host[256];
	int port, mx, n;
	struct dns_mx_host *mxs = NULL;
	size_t nmx = 0, i;
	struct err err;

	if (qmgr_parse_nexthop(g->nexthop, host, sizeof(host), &port, &mx,
	    j->default_port) < 0) {
		qmgr_group_fail(g, 451, "451 4.3.5 bad next hop \"%s\"",
		    g->nexthop);
		return;
	}
	g->addrs = calloc(QMGR_MAX_ADDRS, sizeof(*g->addrs));
	if (g->addrs == NULL) {
		qmgr_group_fail(g, 451, "451 4.3.0 out of memory");
		return;
	}
	if (mx && dns_mx_lookup(host, j->resolver, &mxs, &nmx, &err) < 0) {
		qmgr_group_fail(g, err.temp ? 451 : 550, "%s %s Host or domain "
		    "name not found: %s", err.temp ? "451" : "550",
		    err.temp ? "4.4.3" : "5.4.4", err.msg);
		return;
	}
	for (i = 0; i < (mx ? nmx : 1) && g->naddrs < QMGR_MAX_ADDRS; i++) {
		const char *h = mx ? mxs[i].name : host;
		struct sockaddr_storage ss[QMGR_MAX_ADDRS];
		n = dns_mx_addrs(h, j->resolver, port, ss,
		    QMGR_MAX_ADDRS - g->naddrs, &err);
		for (int k = 0; k < n; k++) {
			g->addrs[g->naddrs].sa = ss[k];
			snprintf(g->addrs[g->naddrs].host,
			    sizeof(g->addrs[0].host), "%s", h);
			g->naddrs++;
		}
	}
	free(mxs);
	if (g->naddrs == 0) {
		qmgr_group_fail(g, err.temp ? 451 : 550, "%s %s Host or domain "
		    "name not found: %s", err.temp ? "451" : "550",
		    err.temp ? "4.4.3" : "5.4.4", err.msg);
		return;
	}
	if (j->creds != NULL) {
		int rc = j->creds(j->arg, g->nexthop, &g->user, &g->pass, &err);
		if (rc < 0)
			qmgr_group_fail(g, 451, "451 4.3.0 SASL password lookup "
			    "for %s failed: %s", g->nexthop, err.msg);
	}
}

static struct qmgr_group *qmgr_rjob_group(struct qmgr_rjob *j,
    const char *nexthop)
{
	struct qmgr_group *g;
	size_t i;

	for (i = 0; i < j->ngroups; i++)
		if (strcmp(j->groups[i].nexthop, nexthop) == 0)
			return &j->groups[i];
	g = &j->groups[j->ngroups];
	memset(g, 0, sizeof(*g));
	g->nexthop = strdup(nexthop);
	g->idx = calloc(j->nr, sizeof(*g->idx));
	if (g->nexthop == NULL || g->idx == NULL) {
		free(g->nexthop);
		free(g->idx);
		return NULL;
	}
	j->ngroups++;
	return g;
}

static int qmgr_is_transport(const struct qmgr_rjob *j, const char *name,
    size_t len)
{
	char w[64];

	if (len == 0 || len > 60)
		return 0;
	snprintf(w, sizeof(w), " %.*s ", (int)len, name);
	return strstr(j->transports, w) != NULL;
}

static void qmgr_rjob_run(void *arg)
{
	struct qmgr_rjob *j = arg;
	struct qmgr_group *g;
	struct err err;
	char *nh, *colon;
	size_t i;

	j->groups = calloc(j->nr + 1, sizeof(*j->groups));
	if (j->groups == NULL)
		return;
	for (i = 0; i < j->nr; i++) {
		nh = NULL;
		err_clear(&err);
		if (j->route(j->arg, j->rcpts[i], &nh, &err) < 0 || nh == NULL) {
			char key[240];
			/* one group per distinct failure */
			snprintf(key, sizeof(key), "!%d %s", err.temp, err.msg);
			g = qmgr_rjob_group(j, key);
			if (g == NULL) {
				free(nh);
				continue;
			}
			if (g->fail_code == 0)
				qmgr_group_fail(g, err.temp ? 451 : 550, "%s %s",
				    err.temp ? "451 4.3.0" : "550 5.1.1", err.msg);
			g->idx[g->n++] = j->ridx[i];
			free(nh);
			continue;
		}
		if (strncasecmp(nh, "smtp:", 5) == 0)
			memmove(nh, nh + 5, strlen(nh + 5) + 1);
		colon = strchr(nh, ':');
		g = qmgr_rjob_group(j, nh);
		if (g == NULL) {
			free(nh);
			continue;   /* out of memory: stays pending */
		}
		if (g->n == 0 && colon != NULL && nh[0] != '[' &&
		    qmgr_is_transport(j, nh, (size_t)(colon - nh)))
			g->transport = strndup(nh, (size_t)(colon - nh));
		g->idx[g->n++] = j->ridx[i];
		free(nh);
	}
	for (i = 0; i < j->ngroups; i++)
		if (j->groups[i].fail_code == 0 && j->groups[i].transport == NULL)
			qmgr_resolve_smtp(j, &j->groups[i]);
}

static void qmgr_rjob_free(struct qmgr_rjob *j)
{
	size_t i;

	for (i = 0; i < j->nr; i++)
		free(j->rcpts[i]);
	free(j->rcpts);
	free(j->ridx);
	free(j->resolver);
	free(j->transports);
	free(j);
}

/* ---- message life -------------------------------------------------------- */

static void qmgr_group_clear(struct qmgr_group *g)
{
	free(g->nexthop);
	free(g->transport);
	free(g->idx);
	free(g->addrs);
	free(g->user);
	if (g->pass != NULL)
		explicit_bzero(g->pass, strlen(g->pass));
	free(g->pass);
	free(g->fail_text);
}

static void qmgr_msg_free(struct qmgr_msg *msg)
{
	struct qmgr *m = msg->m;
	size_t i;

	if (msg->prev != NULL)
		msg->prev->next = msg->next;
	else if (m->msgs == msg)
		m->msgs = msg->next;
	if (msg->next != NULL)
		msg->next->prev = msg->prev;
	for (i = 0; i < msg->ngroups; i++)
		qmgr_group_clear(&msg->groups[i]);
	free(msg->groups);
	for (i = 0; msg->relay != NULL && i < msg->qm->env.nrcpt; i++)
		free(msg->relay[i]);
	free(msg->relay);
	free(msg->failed_now);
	if (msg->renew_ev != NULL)
		event_free(msg->renew_ev);
	queue_msg_free(msg->qm);
	m->active--;
	free(msg);
}

static void qmgr_transports_free(struct qmgr *m)
{
	struct qmgr_transport *t;

	while ((t = m->transports) != NULL) {
		m->transports = t->next;
		free(t->name);
		free(t);
	}
}

/* After qmgr_free, the last outstanding callback frees the qmgr. */
static int qmgr_gone(struct qmgr *m)
{
	if (!m->stopping)
		return 0;
	if (!m->claiming && m->msgs == NULL) {
		qmgr_transports_free(m);
		if (m->conf.on_free != NULL)
			m->conf.on_free(m->conf.arg);
		free(m);
	}
	return 1;
}

/* A callback for msg arrived: 1 when the qmgr is stopping (msg freed). */
static int qmgr_op_back(struct qmgr_msg *msg)
{
	struct qmgr *m = msg->m;

	msg->ops--;
	if (!m->stopping)
		return 0;
	if (msg->ops == 0)
		qmgr_msg_free(msg);
	qmgr_gone(m);
	return 1;
}

static void qmgr_finished(void *arg, int ok, const struct err *err)
{
	struct qmgr_msg *msg = arg;
	struct qmgr *m = msg->m;

	if (qmgr_op_back(msg))
		return;
	if (!ok)
		log_warn("%s: could not record delivery results: %s",
		    msg->qm->env.qid, err != NULL ? err->msg : "?");
	qmgr_msg_free(msg);
	qmgr_claim_now(m);
}

static void qmgr_write_back(struct qmgr_msg *msg)
{
	struct qmgr *m = msg->m;
	long long next = qmgr_now_ms() +
	    qmgr_backoff(&m->conf, msg->qm->attempts) * 1000LL;

	msg->ops++;
	queue_finish(m->q, msg->qm, next, qmgr_finished, msg);
}

static void qmgr_bounced(void *arg, int ok, const struct err *err)
{
	struct qmgr_msg *msg = arg;
	struct queue_msg *qm = msg->qm;
	size_t i;

	if (qmgr_op_back(msg))
		return;
	if (!ok) {
		/* No report queued: keep the recipients for the next
		 * attempt, which fails them again and retries the report. */
		log_warn("%s: could not queue the non-delivery report: %s",
		    qm->env.qid, err != NULL ? err->msg : "?");
		for (i = 0; i < qm->env.nrcpt; i++)
			if (msg->failed_now[i])
				qm->env.rcpts[i].state = QUEUE_RCPT_PENDING;
	}
	qmgr_write_back(msg);
}

/* RFC 3464 report to the sender for the recipients that failed now. */
static void qmgr_bounce(struct qmgr_msg *msg, size_t nfailed)
{
	struct qmgr *m = msg->m;
	struct queue_msg *qm = msg->qm;
	struct dsn_rcpt *dr = calloc(nfailed, sizeof(*dr));
	struct dsn_info info;
	struct queue_env env;
	struct queue_rcpt rc;
	struct buf b;
	struct err err;
	char (*mta)[256] = calloc(nfailed, sizeof(*mta));
	size_t i, k = 0;

	msg->ops++;   /* qmgr_bounced runs in every case */
	if (dr == NULL || mta == NULL) {
		free(dr);
		free(mta);
		err_set(&err, 1, "out of memory");
		qmgr_bounced(msg, 0, &err);
		return;
	}
	for (i = 0; i < qm->env.nrcpt; i++) {
		if (!msg->failed_now[i])
			continue;
		dr[k].addr = qm->env.rcpts[i].addr;
		dr[k].orcpt = qm->env.rcpts[i].orcpt;
		dr[k].action = "failed";
		/* RFC 3463: 4.4.7 delivery time expired */
		dr[k].status = msg->failed_now[i] == 2 ? "4.4.7" : NULL;
		if (msg->relay[i] != NULL) {
			/* "host[addr]:port" -> the host name (RFC 3464 §2.3.5) */
			snprintf(mta[k], sizeof(mta[k]), "%.*s",
			    (int)strcspn(msg->relay[i], "["), msg->relay[i]);
			dr[k].remote_mta = mta[k];
		}
		dr[k].diag = qm->env.rcpts[i].error;
		k++;
	}
	memset(&info, 0, sizeof(info));
	info.reporting_mta = m->conf.myhostname;
	info.qid = qm->env.qid;
	info.sender = qm->env.sender;
	info.arrival = qm->env.arrival;
	info.now = time(NULL);
	buf_init(&b, QMGR_DSN_MAX);
	if (dsn_build(&b, &info, dr, k, qm->data, qm->len, &err) < 0) {
		free(dr);
		free(mta);
		buf_free(&b);
		qmgr_bounced(msg, 0, &err);
		return;
	}
	free(dr);
	free(mta);
	memset(&env, 0, sizeof(env));
	memset(&rc, 0, sizeof(rc));
	queue_qid_new(env.qid);
	env.sender = "";
	rc.addr = qm->env.sender;
	env.rcpts = &rc;
	env.nrcpt = 1;
	env.proto = "ESMTP";
	env.client_name = "localhost";
	env.client_addr = "127.0.0.1";
	env.helo = (char *)m->conf.myhostname;
	env.body8bit = qm->env.body8bit;
	log_info("%s: sender non-delivery notification: %s", qm->env.qid,
	    env.qid);
	queue_put(m->q, &env, b.p, b.len, qmgr_bounced, msg);
	buf_free(&b);
}

/* All groups answered: expire what is too old, bounce what failed, then
 * write back. */
static void qmgr_msg_complete(struct qmgr_msg *msg)
{
	struct qmgr *m = msg->m;
	struct queue_msg *qm = msg->qm;
	long now = (long)time(NULL);
	size_t i, nfailed = 0;
	long life = qm->env.sender[0] != '\0' ? m->conf.queue_lifetime :
	    m->conf.bounce_lifetime;
	int expired = life > 0 && now - qm->env.arrival >= life;

	qm->attempts++;
	for (i = 0; i < qm->env.nrcpt; i++) {
		struct queue_rcpt *r = &qm->env.rcpts[i];
		if (r->state == QUEUE_RCPT_PENDING && expired) {
			char *t = NULL;
			if (asprintf(&t, "message expired after %lds in the "
			    "queue: %s", now - qm->env.arrival,
			    r->error != NULL ? r->error : "not delivered") < 0)
				t = NULL;
			r->state = QUEUE_RCPT_FAILED;
			msg->failed_now[i] = 2;
			free(r->error);
			r->error = t;
			log_info("%s: to=<%s>, status=expired, returned to sender",
			    qm->env.qid, r->addr);
		}
		if (msg->failed_now[i])
			nfailed++;
		if (r->state == QUEUE_RCPT_PENDING && r->error != NULL &&
		    qm->last_error == NULL)
			qm->last_error = strdup(r->error);
	}
	if (nfailed > 0 && qm->env.sender[0] != '\0') {
		qmgr_bounce(msg, nfailed);
		return;
	}
	if (nfailed > 0)
		log_info("%s: sender is the null sender: no non-delivery "
		    "notification", qm->env.qid);
	qmgr_write_back(msg);
}

static void qmgr_group_done(struct qmgr_group *g,
    const struct smtpc_result *res)
{
	struct qmgr_msg *msg = g->msg;
	struct queue_msg *qm = msg->qm;
	long delay = (long)time(NULL) - qm->env.arrival;
	size_t i;

	for (i = 0; i < g->n; i++) {
		size_t ri = g->idx[i];
		struct queue_rcpt *r = &qm->env.rcpts[ri];
		int code = i < res->n ? res->r[i].code : 451;
		const char *text = i < res->n && res->r[i].reply != NULL ?
		    res->r[i].reply : "451 4.3.0 no result";
		char st[16];
		const char *status;

		dsn_status_from_reply(text, st);
		r->attempts++;
		free(r->error);
		r->error = strdup(text);
		free(msg->relay[ri]);
		msg->relay[ri] = strcmp(res->relay, "none") != 0 ?
		    strdup(res->relay) : NULL;
		if (code / 100 == 2) {
			r->state = QUEUE_RCPT_DONE;
			status = "sent";
		} else if (code / 100 == 5) {
			r->state = QUEUE_RCPT_FAILED;
			msg->failed_now[ri] = 1;
			status = "bounced";
		} else {
			status = "deferred";
		}
		log_info("%s: to=<%s>, relay=%s, delay=%ld, dsn=%s, status=%s "
		    "(%s)", qm->env.qid, r->addr, res->relay, delay,
		    code / 100 == 2 ? (st[0] == '2' ? st : "2.0.0") : st,
		    status, text);
	}
	if (--msg->pending == 0)
		qmgr_msg_complete(msg);
}

/* ---- connections per next hop ------------------------------------------- */

static struct qmgr_dest *qmgr_dest_get(struct qmgr *m, const char *key)
{
	struct qmgr_dest *d;

	for (d = m->dests; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0)
			return d;
	d = calloc(1, sizeof(*d));
	if (d == NULL || (d->key = strdup(key)) == NULL) {
		free(d);
		return NULL;
	}
	d->next = m->dests;
	m->dests = d;
	return d;
}

static void qmgr_conn_close(struct qmgr_conn *cn, int quit)
{
	struct qmgr_conn **pp;

	for (pp = &cn->d->idle; *pp != NULL; pp = &(*pp)->next)
		if (*pp == cn) {
			*pp = cn->next;
			break;
		}
	cn->d->nconn--;
	if (cn->all_prev != NULL)
		cn->all_prev->all_next = cn->all_next;
	else
		cn->m->conns = cn->all_next;
	if (cn->all_next != NULL)
		cn->all_next->all_prev = cn->all_prev;
	if (quit)
		smtpc_free(cn->c);
	else
		smtpc_abort(cn->c);
	if (cn->idle_ev != NULL)
		event_free(cn->idle_ev);
	free(cn);
}

static void qmgr_conn_idle_expired(evutil_socket_t fd, short what, void *arg)
{
	qmgr_conn_close(arg, 1);
}

static void qmgr_conn_start(struct qmgr_conn *cn, struct qmgr_group *g);

static void qmgr_smtp_done(void *arg, struct smtpc *c,
    const struct smtpc_result *res)
{
	struct qmgr_conn *cn = arg;
	struct qmgr_dest *d = cn->d;
	struct qmgr_group *g = cn->g, *w;
	struct timeval tv = { cn->m->conf.conn_idle_time, 0 };

	cn->g = NULL;
	qmgr_group_done(g, res);
	if (!smtpc_usable(c)) {
		w = d->wait_head;
		qmgr_conn_close(cn, 1);
		if (w != NULL) {
			d->wait_head = w->next_wait;
			if (d->wait_head == NULL)
				d->wait_tail = NULL;
			qmgr_dispatch(w->msg->m, w);
		}
		return;
	}
	if ((w = d->wait_head) != NULL) {
		d->wait_head = w->next_wait;
		if (d->wait_head == NULL)
			d->wait_tail = NULL;
		qmgr_conn_start(cn, w);
		return;
	}
	cn->next = d->idle;
	d->idle = cn;
	evtimer_add(cn->idle_ev, &tv);
}

static void qmgr_conn_start(struct qmgr_conn *cn, struct qmgr_group *g)
{
	struct queue_msg *qm = g->msg->qm;

	cn->g = g;
	evtimer_del(cn->idle_ev);
	smtpc_send(cn->c, &qm->env, qm->data, qm->len, g->idx, g->n,
	    qmgr_smtp_done, cn);
}

static void qmgr_fail_group_now(struct qmgr_group *g, int code,
    const char *text)
{
	struct smtpc_result res;
	size_t i;

	memset(&res, 0, sizeof(res));
	res.n = g->n;
	res.r = calloc(g->n, sizeof(*res.r));
	snprintf(res.relay, sizeof(res.relay), "none");
	for (i = 0; res.r != NULL && i < g->n; i++) {
		res.r[i].code = code;
		res.r[i].reply = (char *)text;
	}
	if (res.r == NULL)
		res.n = 0;
	qmgr_group_done(g, &res);
	free(res.r);
}

static void qmgr_transport_done(void *token, const struct smtpc_result *res)
{
	qmgr_group_done(token, res);
}

static void qmgr_dispatch(struct qmgr *m, struct qmgr_group *g)
{
	struct qmgr_transport *t;
	struct qmgr_dest *d;
	struct qmgr_conn *cn;
	struct err err;
	char key[600];

	if (g->fail_code != 0) {
		qmgr_fail_group_now(g, g->fail_code, g->fail_text != NULL ?
		    g->fail_text : "451 4.3.0 routing failed");
		return;
	}
	if (g->transport != NULL) {
		for (t = m->transports; t != NULL; t = t->next)
			if (strcmp(t->name, g->transport) == 0) {
				t->fn(t->arg, g->msg->qm, g->nexthop +
				    strlen(g->transport) + 1, g->idx, g->n,
				    qmgr_transport_done, g);
				return;
			}
		qmgr_fail_group_now(g, 451, "451 4.3.5 unknown transport");
		return;
	}
	snprintf(key, sizeof(key), "%s|%s", g->nexthop,
	    g->user != NULL ? g->user : "");
	d = qmgr_dest_get(m, key);
	if (d == NULL) {
		qmgr_fail_group_now(g, 451, "451 4.3.0 out of memory");
		return;
	}
	if ((cn = d->idle) != NULL) {
		d->idle = cn->next;
		qmgr_conn_start(cn, g);
		return;
	}
	if (d->nconn >= m->conf.dest_concurrency) {
		g->next_wait = NULL;
		if (d->wait_tail != NULL)
			d->wait_tail->next_wait = g;
		else
			d->wait_head = g;
		d->wait_tail = g;
		return;
	}
	cn = calloc(1, sizeof(*cn));
	if (cn != NULL) {
		cn->m = m;
		cn->d = d;
		cn->idle_ev = evtimer_new(m->base, qmgr_conn_idle_expired, cn);
		cn->c = smtpc_new(m->base, &m->conf.smtpc, g->addrs, g->naddrs,
		    g->user, g->pass, &err);
	}
	if (cn == NULL || cn->idle_ev == NULL || cn->c == NULL) {
		if (cn != NULL && cn->idle_ev != NULL)
			event_free(cn->idle_ev);
		free(cn);
		qmgr_fail_group_now(g, 451, "451 4.3.0 cannot create a "
		    "connection");
		return;
	}
	d->nconn++;
	cn->all_next = m->conns;
	if (m->conns != NULL)
		m->conns->all_prev = cn;
	m->conns = cn;
	qmgr_conn_start(cn, g);
}

static void qmgr_rjob_done(void *arg)
{
	struct qmgr_rjob *j = arg;
	struct qmgr_msg *msg = j->msg;
	size_t i;

	if (qmgr_op_back(msg)) {
		for (i = 0; j->groups != NULL && i < j->ngroups; i++)
			qmgr_group_clear(&j->groups[i]);
		free(j->groups);
		qmgr_rjob_free(j);
		return;
	}
	if (j->groups == NULL || j->ngroups == 0) {
		qmgr_rjob_free(j);
		log_warn("%s: routing failed (out of memory)", msg->qm->env.qid);
		qmgr_write_back(msg);
		return;
	}
	msg->groups = j->groups;
	msg->ngroups = msg->pending = j->ngroups;
	for (i = 0; i < msg->ngroups; i++)
		msg->groups[i].msg = msg;
	j->groups = NULL;
	qmgr_rjob_free(j);
	/* dispatch may complete groups at once: count first */
	for (i = 0; i < msg->ngroups; i++)
		qmgr_dispatch(msg->m, &msg->groups[i]);
}

/* ---- claiming ------------------------------------------------------------ */

static void qmgr_renew_done(void *arg, int ok, const struct err *err)
{
	struct qmgr_msg *msg = arg;

	if (qmgr_op_back(msg))
		return;
	if (!ok && err != NULL && !err->temp)
		log_warn("%s: %s", msg->qm->env.qid, err->msg);
}

static void qmgr_renew(evutil_socket_t fd, short what, void *arg)
{
	struct qmgr_msg *msg = arg;

	msg->ops++;
	queue_renew(msg->m->q, msg->qm, msg->m->conf.lease_time,
	    qmgr_renew_done, msg);
}

static void qmgr_start_msg(struct qmgr *m, struct queue_msg *qm)
{
	struct qmgr_msg *msg = calloc(1, sizeof(*msg));
	struct qmgr_rjob *j = calloc(1, sizeof(*j));
	struct qmgr_transport *t;
	struct buf names;
	/* renew at a third of the lease: two renewals may be late (a slow
	 * Redis, a busy loop) before another process can take it over */
	long renew_ms = m->conf.lease_time * 1000L / 3;
	struct timeval tv = { renew_ms / 1000, (renew_ms % 1000) * 1000 };
	size_t i;

	if (msg == NULL || j == NULL) {
		free(msg);
		free(j);
		queue_msg_free(qm);  /* the lease brings it back */
		return;
	}
	msg->m = m;
	msg->qm = qm;
	msg->next = m->msgs;
	if (m->msgs != NULL)
		m->msgs->prev = msg;
	m->msgs = msg;
	m->active++;
	msg->failed_now = calloc(qm->env.nrcpt, sizeof(int));
	msg->relay = calloc(qm->env.nrcpt, sizeof(char *));
	msg->renew_ev = event_new(m->base, -1, EV_PERSIST, qmgr_renew, msg);
	j->m = m;
	j->msg = msg;
	j->rcpts = calloc(qm->env.nrcpt, sizeof(char *));
	j->ridx = calloc(qm->env.nrcpt, sizeof(size_t));
	j->route = m->conf.route;
	j->creds = m->conf.creds;
	j->arg = m->conf.arg;
	j->default_port = m->conf.default_port > 0 ? m->conf.default_port : 25;
	j->resolver = m->conf.dns_resolver != NULL ?
	    strdup(m->conf.dns_resolver) : NULL;
	buf_init(&names, 0);
	buf_puts(&names, " ");
	for (t = m->transports; t != NULL; t = t->next)
		buf_printf(&names, "%s ", t->name);
	j->transports = buf_steal(&names);
	if (msg->failed_now == NULL || msg->relay == NULL ||
	    msg->renew_ev == NULL || j->rcpts == NULL || j->ridx == NULL ||
	    j->transports == NULL)
		goto fail;
	for (i = 0; i < qm->env.nrcpt; i++) {
		if (qm->env.rcpts[i].state != QUEUE_RCPT_PENDING)
			continue;
		j->rcpts[j->nr] = strdup(qm->env.rcpts[i].addr);
		if (j->rcpts[j->nr] == NULL)
			goto fail;
		j->ridx[j->nr++] = i;
	}
	evtimer_add(msg->renew_ev, &tv);
	if (j->nr == 0) {
		/* nothing pending (a crash after the last result) */
		qmgr_rjob_free(j);
		msg->ngroups = 0;
		qmgr_write_back(msg);
		return;
	}
	msg->ops++;
	if (m->conf.route_inline) {
		qmgr_rjob_run(j);
		qmgr_rjob_done(j);
		return;
	}
	if (work_submit(m->pool, qmgr_rjob_run, qmgr_rjob_done, j) == 0)
		return;
	msg->ops--;
fail:
	qmgr_rjob_free(j);
	qmgr_msg_free(msg);
}

static void qmgr_claimed(void *arg, struct queue_msg **msgs, size_t n,
    const struct err *err)
{
	struct qmgr *m = arg;
	size_t i;

	m->claiming = 0;
	if (m->stopping) {
		/* not delivered: the leases bring them back */
		for (i = 0; i < n; i++)
			queue_msg_free(msgs[i]);
		free(msgs);
		qmgr_gone(m);
		return;
	}
	if (err != NULL) {
		log_warn("queue scan: %s", err->msg);
		free(msgs);
		return;
	}
	for (i = 0; i < n; i++)
		qmgr_start_msg(m, msgs[i]);
	free(msgs);
	if (n > 0)
		qmgr_claim_now(m);   /* more may be due */
}

static void qmgr_claim_now(struct qmgr *m)
{
	int room = m->conf.max_active - m->active;

	if (m->claiming || room <= 0 || m->stopping)
		return;
	m->claiming = 1;
	queue_claim(m->q, (size_t)(room > 20 ? 20 : room), m->conf.lease_time,
	    qmgr_claimed, m);
}

static void qmgr_scan(evutil_socket_t fd, short what, void *arg)
{
	qmgr_claim_now(arg);
}

void qmgr_wake(struct qmgr *m)
{
	qmgr_claim_now(m);
}

int qmgr_active(const struct qmgr *m)
{
	return m->active;
}

struct qmgr *qmgr_new(struct event_base *base, struct work_pool *pool,
    struct queue *q, const struct qmgr_conf *conf, struct err *err)
{
	struct qmgr *m = calloc(1, sizeof(*m));
	struct timeval tv;

	if (m == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	if (conf->route == NULL) {
		free(m);
		err_set(err, 0, "qmgr: no route function");
		return NULL;
	}
	m->base = base;
	m->pool = pool;
	m->q = q;
	m->conf = *conf;
	/* short, renewed every lease_time / 3 (qmgr_start_msg): a dead
	 * process's claims come back soon (issue 12) */
	if (m->conf.lease_time <= 0)
		m->conf.lease_time = 30;
	if (m->conf.scan_interval_ms <= 0)
		m->conf.scan_interval_ms = 1000;
	if (m->conf.max_active <= 0)
		m->conf.max_active = 100;
	if (m->conf.dest_concurrency <= 0)
		m->conf.dest_concurrency = 20;
	if (m->conf.conn_idle_time <= 0)
		m->conf.conn_idle_time = 5;
	if (m->conf.bounce_lifetime <= 0)
		m->conf.bounce_lifetime = m->conf.queue_lifetime;
	if (m->conf.myhostname == NULL)
		m->conf.myhostname = "localhost";
	m->scan_ev = event_new(base, -1, EV_PERSIST, qmgr_scan, m);
	if (m->scan_ev == NULL) {
		free(m);
		err_set(err, 1, "out of memory");
		return NULL;
	}
	tv.tv_sec = m->conf.scan_interval_ms / 1000;
	tv.tv_usec = (m->conf.scan_interval_ms % 1000) * 1000;
	evtimer_add(m->scan_ev, &tv);
	qmgr_claim_now(m);
	return m;
}

int qmgr_add_transport(struct qmgr *m, const char *name,
    qmgr_deliver_fn *fn, void *arg)
{
	struct qmgr_transport *t = calloc(1, sizeof(*t));

	if (t == NULL || (t->name = strdup(name)) == NULL) {
		free(t);
		return -1;
	}
	t->fn = fn;
	t->arg = arg;
	t->next = m->transports;
	m->transports = t;
	return 0;
}

void qmgr_free(struct qmgr *m)
{
	struct qmgr_dest *d;
	struct qmgr_msg *msg, *next;

	if (m == NULL)
		return;
	m->stopping = 1;
	event_free(m->scan_ev);
	m->scan_ev = NULL;
	/* smtpc_free never calls back either: busy connections are closed,
	 * idle ones get a QUIT, answered while the daemon runs
	 * smtpc_closing_drain() */
	while (m->conns != NULL)
		qmgr_conn_close(m->conns, 1);
	while ((d = m->dests) != NULL) {
		m->dests = d->next;
		free(d->key);
		free(d);
	}
	/* Messages waiting for Redis or a worker are freed by that callback;
	 * the rest now. Their leases bring them back to whoever runs next. */
	for (msg = m->msgs; msg != NULL; msg = next) {
		next = msg->next;
		if (msg->ops == 0)
			qmgr_msg_free(msg);
	}
	qmgr_gone(m);
}
