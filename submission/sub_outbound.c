/* sub_outbound: submission's outbound delivery on the shared qmgr and
 * smtpc: the route is relayhost or the recipient domain (MX lookup with
 * fallback to the address record, RFC 5321 §5.1), STARTTLS per
 * smtp_tls_security_level, SASL client credentials per next hop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "map.h"
#include "qmgr.h"
#include "queue.h"
#include "sub_deliver.h"
#include "sub_outbound.h"
#include "sub_resolve.h"
#include "tls.h"
#include "work.h"

static char *var_relayhost, *var_smtp_tls_level, *var_smtp_sasl_maps;
static char *var_smtp_dns_resolver, *var_smtp_tls_cafile;
static int var_smtp_sasl_enable, var_smtp_xforward;
static long var_min_backoff, var_max_backoff, var_queue_lifetime;
static long var_queue_run_delay, var_connect_timeout, var_cmd_timeout;
static long var_data_timeout, var_dest_concurrency, var_max_active;
static long var_smtp_tcp_port;

const struct cfg_param sub_outbound_params[] = {
	{ "relayhost", CFG_STR, "", &var_relayhost, 0, 0 },
	{ "smtp_tls_security_level", CFG_STR, "may", &var_smtp_tls_level, 0, 0 },
	{ "smtp_tls_CAfile", CFG_STR, "", &var_smtp_tls_cafile, 0, 0 },
	{ "smtp_sasl_auth_enable", CFG_BOOL, "no", &var_smtp_sasl_enable, 0, 0 },
	{ "smtp_sasl_password_maps", CFG_STR, "", &var_smtp_sasl_maps, 0, 0 },
	{ "smtp_send_xforward_command", CFG_BOOL, "no", &var_smtp_xforward, 0, 0 },
	{ "smtp_dns_resolver", CFG_STR, "", &var_smtp_dns_resolver, 0, 0 },
	{ "minimal_backoff_time", CFG_TIME, "300s", &var_min_backoff, 1, 0 },
	{ "maximal_backoff_time", CFG_TIME, "4000s", &var_max_backoff, 1, 0 },
	{ "maximal_queue_lifetime", CFG_TIME, "5d", &var_queue_lifetime, 0, 0 },
	{ "queue_run_delay", CFG_TIME, "300s", &var_queue_run_delay, 0, 0 },
	{ "smtp_connect_timeout", CFG_TIME, "30s", &var_connect_timeout, 1, 0 },
	{ "smtp_helo_timeout", CFG_TIME, "300s", &var_cmd_timeout, 1, 0 },
	{ "smtp_data_done_timeout", CFG_TIME, "600s", &var_data_timeout, 1, 0 },
	{ "default_destination_concurrency_limit", CFG_INT, "20",
	  &var_dest_concurrency, 1, 1000 },
	{ "qmgr_message_active_limit", CFG_INT, "1000", &var_max_active, 1, 0 },
	{ "smtp_tcp_port", CFG_INT, "25", &var_smtp_tcp_port, 1, 65535 },
	{ NULL, 0, NULL, NULL, 0, 0 },
};

struct sub_outbound {
	struct qmgr *qmgr;
	struct queue *q;
	struct work_pool *pool;
	struct fsgroup *fsync_group;    /* borrowed from main.c */
	const struct sub_resolve *resolve;
	struct map *sasl_maps;
	SSL_CTX *tls;
	struct qmgr_conf conf;
};

char *sub_outbound_nexthop(const char *relayhost, const char *rcpt)
{
	const char *at;

	if (relayhost != NULL && *relayhost != '\0')
		return strdup(relayhost);
	at = rcpt != NULL ? strrchr(rcpt, '@') : NULL;
	if (at == NULL || at[1] == '\0')
		return NULL;
	return strdup(at + 1);
}

static int sub_outbound_route(void *arg, const char *rcpt, char **nexthop_r,
			      struct err *err)
{
	struct sub_outbound *o = arg;
	const char *at = strrchr(rcpt, '@');

	switch (sub_resolve_local_domain(o->resolve, at ? at + 1 : "", err)) {
	case MAP_TEMPFAIL:
		return -1;
	case MAP_FOUND:
		*nexthop_r = strdup("local:mda");
		return *nexthop_r != NULL ? 0 : err_set(err, 1, "out of memory");
	default:
		break;
	}
	*nexthop_r = sub_outbound_nexthop(var_relayhost, rcpt);
	if (*nexthop_r == NULL)
		return err_set(err, 0, "5.1.2 <%s>: no domain to deliver to",
			       rcpt);
	return 0;
}

/* smtp_sasl_password_maps: "nexthop user:password" as in Postfix; the
 * next hop is looked up as routed, then without [] and port. */
static int sub_outbound_creds(void *arg, const char *nexthop, char **user_r,
			      char **pass_r, struct err *err)
{
	struct sub_outbound *o = arg;
	char key[300], *v = NULL, *colon;
	enum map_rc rc;

	*user_r = *pass_r = NULL;
	if (!var_smtp_sasl_enable || o->sasl_maps == NULL)
		return 0;
	rc = map_lookup(o->sasl_maps, nexthop, &v, err);
	if (rc == MAP_NOTFOUND) {
		const char *h = nexthop + (nexthop[0] == '[');
		size_t n = strcspn(h, "]:");

		snprintf(key, sizeof(key), "%.*s", (int)n, h);
		rc = map_lookup(o->sasl_maps, key, &v, err);
	}
	if (rc == MAP_TEMPFAIL)
		return -1;
	if (rc == MAP_NOTFOUND)
		return 0;
	colon = strchr(v, ':');
	if (colon == NULL) {
		free(v);
		return 0;
	}
	*colon = '\0';
	*user_r = strdup(v);
	*pass_r = strdup(colon + 1);
	free(v);
	if (*user_r == NULL || *pass_r == NULL) {
		free(*user_r);
		free(*pass_r);
		*user_r = *pass_r = NULL;
		return err_set(err, 1, "out of memory");
	}
	return 1;
}

static int sub_outbound_tls_level(const char *s, enum smtpc_tls *lv)
{
	if (strcasecmp(s, "none") == 0)
		*lv = SMTPC_TLS_NONE;
	else if (strcasecmp(s, "may") == 0)
		*lv = SMTPC_TLS_MAY;
	else if (strcasecmp(s, "encrypt") == 0)
		*lv = SMTPC_TLS_ENCRYPT;
	else
		return -1;
	return 0;
}

/* ---- the "local" transport: queued mail for our own mailboxes ------- */

struct sub_outbound_ljob {
	struct sub_outbound *o;
	const struct queue_msg *m;       /* borrowed until done is called */
	size_t *idx, n;
	qmgr_done_fn *done;
	void *token;
	struct smtpc_result res;
	struct sub_resolve_res remote;   /* off-site alias targets */
	size_t *remote_of;               /* result slot of each remote */
	struct queue_rcpt *qr;
	char qid[QUEUE_QID_LEN];         /* of the re-queued copy */
};

static void sub_outbound_set(struct sub_outbound_ljob *j, size_t i, int code,
			     const char *text)
{
	if (j->res.r[i].code != 0 && j->res.r[i].code >= code)
		return;  /* keep the worst result of an expanded recipient */
	free(j->res.r[i].reply);
	j->res.r[i].code = code;
	if (asprintf(&j->res.r[i].reply, "%d %s", code, text) < 0)
		j->res.r[i].reply = NULL;
}

/* A queued message for an alias that forwards off-site: the remote
 * targets are queued again as a new message (see sub_outbound_local_done). */
static void sub_outbound_add_remote(struct sub_outbound_ljob *j, size_t i,
				    const char *addr)
{
	struct sub_target *nv;
	size_t *no;

	nv = realloc(j->remote.v, (j->remote.n + 1) * sizeof(*nv));
	if (nv != NULL)
		j->remote.v = nv;
	no = realloc(j->remote_of, (j->remote.n + 1) * sizeof(*no));
	if (no != NULL)
		j->remote_of = no;
	if (nv == NULL || no == NULL) {
		sub_outbound_set(j, i, 451, "4.3.0 out of memory");
		return;
	}
	memset(&nv[j->remote.n], 0, sizeof(*nv));
	nv[j->remote.n].addr = strdup(addr);
	if (nv[j->remote.n].addr == NULL) {
		sub_outbound_set(j, i, 451, "4.3.0 out of memory");
		return;
	}
	no[j->remote.n++] = i;
}

static void sub_outbound_local_one(struct sub_outbound_ljob *j, size_t i)
{
	const char *rcpt = j->m->env.rcpts[j->idx[i]].addr;
	struct sub_resolve_res res = { 0 };
	struct err err;
	enum sub_resolve_rc rc;

	rc = sub_resolve_rcpt(j->o->resolve, rcpt, &res, &err);
	if (rc != SUB_RESOLVE_OK) {
		sub_outbound_set(j, i, rc == SUB_RESOLVE_TEMP ? 451 : 550,
				 err.msg);
		sub_resolve_res_clear(&res);
		return;
	}
	sub_outbound_set(j, i, 250, "2.0.0 delivered");
	for (size_t k = 0; k < res.n; k++) {
		struct sub_target *t = &res.v[k];
		enum sub_deliver_rc d;

		if (!t->local) {
			sub_outbound_add_remote(j, i, t->addr);
			continue;
		}
		/* A queued message may be a retry after a crash: scan. */
		d = sub_deliver_local(t, j->m->env.qid, 1, j->m->env.sender,
				      j->m->data, j->m->len, j->o->fsync_group,
				      NULL, 0, &err);
		if (d == SUB_DELIVER_TEMP)
			sub_outbound_set(j, i, 451, err.msg);
		else if (d == SUB_DELIVER_PERM)
			sub_outbound_set(j, i, err.msg[0] == '5' &&
					 strncmp(err.msg, "5.2.2", 5) == 0 ?
					 552 : 550, err.msg);
	}
	sub_resolve_res_clear(&res);
}

static void sub_outbound_local_work(void *arg)
{
	struct sub_outbound_ljob *j = arg;

	for (size_t i = 0; i < j->n; i++)
		sub_outbound_local_one(j, i);
}

static void sub_outbound_local_finish(struct sub_outbound_ljob *j)
{
	j->done(j->token, &j->res);
	for (size_t i = 0; i < j->res.n; i++)
		free(j->res.r[i].reply);
	free(j->res.r);
	free(j->idx);
	free(j->remote_of);
	free(j->qr);
	sub_resolve_res_clear(&j->remote);
	free(j);
}

static void sub_outbound_requeued(void *arg, int ok, const struct err *err)
{
	struct sub_outbound_ljob *j = arg;

	if (ok)
		log_info("%s: forwarded off-site as %s", j->m->env.qid, j->qid);
	else
		for (size_t k = 0; k < j->remote.n; k++)
			sub_outbound_set(j, j->remote_of[k], 451,
					 "4.3.0 queue write failed");
	sub_outbound_local_finish(j);
}

static void sub_outbound_local_done(void *arg)
{
	struct sub_outbound_ljob *j = arg;
	struct queue_env env = { 0 };

	if (j->remote.n == 0) {
		sub_outbound_local_finish(j);
		return;
	}
	j->qr = calloc(j->remote.n, sizeof(*j->qr));
	if (j->qr == NULL) {
		sub_outbound_requeued(j, 0, NULL);
		return;
	}
	for (size_t k = 0; k < j->remote.n; k++)
		j->qr[k].addr = j->remote.v[k].addr;
	queue_qid_new(j->qid);
	memcpy(env.qid, j->qid, sizeof(env.qid));
	env.sender = j->m->env.sender;
	env.rcpts = j->qr;
	env.nrcpt = j->remote.n;
	env.arrival = j->m->env.arrival;
	queue_put(j->o->q, &env, j->m->data, j->m->len, sub_outbound_requeued,
		  j);
}

static void sub_outbound_local(void *arg, const struct queue_msg *m,
			       const char *nexthop_arg, const size_t *idx,
			       size_t n, qmgr_done_fn *done, void *token)
{
	struct sub_outbound_ljob *j = calloc(1, sizeof(*j));

	if (j == NULL || (j->idx = calloc(n, sizeof(*idx))) == NULL ||
	    (j->res.r = calloc(n, sizeof(*j->res.r))) == NULL) {
		struct smtpc_result none = { 0 };

		if (j != NULL)
			free(j->idx);
		free(j);
		done(token, &none);
		return;
	}
	memcpy(j->idx, idx, n * sizeof(*idx));
	j->o = arg;
	j->m = m;
	j->n = j->res.n = n;
	j->done = done;
	j->token = token;
	snprintf(j->res.relay, sizeof(j->res.relay), "local");
	if (work_submit(j->o->pool, sub_outbound_local_work,
			sub_outbound_local_done, j) < 0) {
		for (size_t i = 0; i < n; i++)
			sub_outbound_set(j, i, 451, "4.3.0 server busy");
		sub_outbound_local_finish(j);
	}
}

static void sub_outbound_wake(void *arg)
{
	qmgr_wake(arg);
}

struct sub_outbound *sub_outbound_new(struct event_base *base,
				      struct work_pool *pool,
				      struct fsgroup *fsync_group,
				      struct queue *q,
				      const struct sub_resolve *resolve,
				      const char *myhostname, struct err *err)
{
	struct sub_outbound *o = calloc(1, sizeof(*o));
	struct qmgr_conf *c;

	if (o == NULL)
		return err_set(err, 1, "out of memory"), NULL;
	o->q = q;
	o->pool = pool;
	o->fsync_group = fsync_group;
	o->resolve = resolve;
	c = &o->conf;
	if (sub_outbound_tls_level(var_smtp_tls_level, &c->smtpc.tls_level) < 0) {
		err_set(err, 0, "smtp_tls_security_level: expected none, may "
			"or encrypt, not \"%s\"", var_smtp_tls_level);
		goto fail;
	}
	if (*var_smtp_sasl_maps != '\0' &&
	    (o->sasl_maps = map_open(var_smtp_sasl_maps, err)) == NULL)
		goto fail;
	if (c->smtpc.tls_level != SMTPC_TLS_NONE &&
	    (o->tls = tls_client_ctx(*var_smtp_tls_cafile ? var_smtp_tls_cafile
				     : NULL, 0, err)) == NULL)
		goto fail;
	c->myhostname = myhostname;
	c->minimal_backoff = var_min_backoff;
	c->maximal_backoff = var_max_backoff;
	c->queue_lifetime = var_queue_lifetime;
	c->queue_run_delay = var_queue_run_delay;
	/* renewed every third while delivering (qmgr): short, so that a
	 * killed submission's outbound mail is taken over soon */
	c->lease_time = 30;
	c->scan_interval_ms = 1000;
	c->max_active = (int)var_max_active;
	c->dest_concurrency = (int)var_dest_concurrency;
	c->conn_idle_time = 10;
	c->default_port = (int)var_smtp_tcp_port;
	c->dns_resolver = *var_smtp_dns_resolver ? var_smtp_dns_resolver : NULL;
	c->smtpc.helo_name = myhostname;
	c->smtpc.tls_ctx = o->tls;
	c->smtpc.connect_timeout = (int)var_connect_timeout;
	c->smtpc.cmd_timeout = (int)var_cmd_timeout;
	c->smtpc.data_timeout = (int)var_data_timeout;
	c->smtpc.xforward = var_smtp_xforward;
	c->route = sub_outbound_route;
	c->creds = sub_outbound_creds;
	c->arg = o;
	o->qmgr = qmgr_new(base, pool, q, c, err);
	if (o->qmgr == NULL ||
	    qmgr_add_transport(o->qmgr, "local", sub_outbound_local, o) < 0)
		goto fail;
	queue_set_notify(q, sub_outbound_wake, o->qmgr);
	return o;
fail:
	sub_outbound_free(o);
	return NULL;
}

void sub_outbound_free(struct sub_outbound *o)
{
	if (o == NULL)
		return;
	qmgr_free(o->qmgr);
	map_free(o->sasl_maps);
	if (o->tls != NULL)
		SSL_CTX_free(o->tls);
	free(o);
}
