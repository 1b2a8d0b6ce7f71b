/* qmgr: the delivery scheduler over one queue (queue.h), shared by the MX
 * forwarder and the submission daemon's outbound side. It claims due
 * messages (with a lease), asks the daemon's route function where each
 * recipient goes, resolves the next hop (MX or A/AAAA) on the worker
 * pool, delivers through pooled smtpc connections (a concurrency limit per
 * next hop) or a daemon-registered transport, writes back per-recipient
 * results, retries with back-off and returns failures to the sender as an
 * RFC 3464 report. It logs one line per recipient and attempt, like
 * Postfix's smtp(8). Daemon policy stays in the daemon (route, creds). */
#ifndef QMGR_H
#define QMGR_H

#include <stddef.h>
#include <event2/event.h>
#include "err.h"
#include "queue.h"
#include "smtpc.h"

struct work_pool;
struct qmgr;

/* Where a recipient's mail goes, on a worker thread (may block on maps;
 * on the loop with route_inline).
 * *nexthop_r (malloc'd): "[host]:port" or "[host]" (that host, no MX
 * lookup), "host:port" or "host" (MX lookup, as Postfix's relayhost), each
 * optionally prefixed "smtp:"; or "NAME:arg" for a transport registered
 * with qmgr_add_transport. -1 with err: temp -> deferred, else bounced. */
typedef int qmgr_route_fn(void *arg, const char *rcpt, char **nexthop_r,
    struct err *err);
/* SASL credentials for a next hop (the route's nexthop without "smtp:"),
 * on a worker thread (the loop with route_inline): 1 with malloc'd user
 * and pass, 0 none, -1 temp. */
typedef int qmgr_creds_fn(void *arg, const char *nexthop, char **user_r,
    char **pass_r, struct err *err);

struct qmgr_conf {
	const char *myhostname;     /* Reporting-MTA, MAILER-DAEMON@ */
	long minimal_backoff;       /* seconds (Postfix minimal_backoff_time) */
	long maximal_backoff;       /* maximal_backoff_time */
	long queue_lifetime;        /* maximal_queue_lifetime */
	long bounce_lifetime;       /* bounce_queue_lifetime: null sender
	                             * (0: as queue_lifetime) */
	long queue_run_delay;       /* no retry sooner than this */
	int lease_time;             /* seconds a claim is held (renewed) */
	int scan_interval_ms;       /* how often to look for due mail (1000) */
	int max_active;             /* messages in delivery at once */
	int dest_concurrency;       /* connections per next hop */
	int conn_idle_time;         /* seconds to keep an idle connection */
	int default_port;           /* 25 */
	const char *dns_resolver;   /* NULL: system; "ip:port" */
	struct smtpc_conf smtpc;
	qmgr_route_fn *route;
	qmgr_creds_fn *creds;       /* may be NULL */
	/* 1: route and creds never block (maps in memory) and every next
	 * hop they give is an address literal (qmgr_nexthop_is_literal): a
	 * message is routed on the loop instead of a worker thread, which
	 * saves two thread switches per message. */
	int route_inline;
	void *arg;                  /* for route, creds and on_free */
	/* Called once the qmgr is really gone after qmgr_free (the last
	 * worker job has finished): free what route and creds use here. */
	void (*on_free)(void *arg);
};

/* A transport's outcome for recipients idx[0..n) of m: res->r[i] is the
 * result of idx[i] (code 2xx/4xx/5xx and text). Call done exactly once,
 * on the loop. */
typedef void qmgr_done_fn(void *token, const struct smtpc_result *res);
typedef void qmgr_deliver_fn(void *arg, const struct queue_msg *m,
    const char *nexthop_arg, const size_t *idx, size_t n,
    qmgr_done_fn *done, void *token);

/* 1 when next hop nh ("[address]" or "[address]:port") needs no DNS. */
int qmgr_nexthop_is_literal(const char *nh);

/* Starts claiming at once. conf's strings must outlive the qmgr. The
 * pool's done callbacks reference the qmgr: free the pool first. */
struct qmgr *qmgr_new(struct event_base *base, struct work_pool *pool,
    struct queue *q, const struct qmgr_conf *conf, struct err *err);
/* Route "name:arg" next hops to fn (e.g. submission's "local"). */
int qmgr_add_transport(struct qmgr *m, const char *name,
    qmgr_deliver_fn *fn, void *arg);
/* New mail was queued: look now rather than at the next scan. */
void qmgr_wake(struct qmgr *m);
/* Messages in delivery now. */
int qmgr_active(const struct qmgr *m);
/* Stops claiming; messages in flight are abandoned (their leases expire
 * and another worker takes them over). Callbacks still due from Redis or
 * the pool finish the job later, then conf.on_free runs. Call before
 * queue_free() and redisc_free(). */
void qmgr_free(struct qmgr *m);

/* Pure: the retry delay after `attempts` failed attempts (seconds). */
long qmgr_backoff(const struct qmgr_conf *conf, int attempts);

#endif
