/* queue: the durable mail queue in Redis, one module for the MX inbound
 * queue ("mx") and the submission outbound queue ("out"). Each message is
 * a hash (envelope, per-recipient state) plus a data string; a sorted set
 * of next-attempt times schedules it. Claiming is an atomic Lua "claim with
 * lease": the claim moves the score to now + lease and stamps a lease
 * token, so a worker that dies leaves the message due again once the lease
 * runs out; a worker's result is applied only while it still holds the
 * token. The caller owns every struct it passes in; queue_put copies.
 *
 * Keys, for queue name N (see queue.c for the reasons):
 *   mq:N:m:QID   hash   envelope, rcpt fields, state, lease token
 *   mq:N:d:QID   string message data: header and body as received, CRLF
 *                       line ends, dot-unstuffed, without the final "."
 *                       line (the SMTP client stuffs and terminates it)
 *   mq:N:sched   zset   QID -> next attempt (unix ms); held QIDs are absent
 *   mq:N:hold    set    QIDs on hold
 *   mq:N:seq     string lease token counter */
#ifndef QUEUE_H
#define QUEUE_H

#include <stddef.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include "err.h"
#include "cfg.h"

struct redisc;

/* queue_wait_replicas (0: do not WAIT) and queue_wait_timeout (1s): a
 * put is confirmed only once that many replicas have it. queue_new()
 * applies them; put queue_params in the table list of a daemon that
 * accepts mail. */
extern const struct cfg_param queue_params[];
extern long var_queue_wait_replicas;
extern long var_queue_wait_timeout;
struct queue;  /* one per daemon and queue name, on the event loop */

#define QUEUE_RCPT_PENDING 0
#define QUEUE_RCPT_DONE    1
#define QUEUE_RCPT_FAILED  2

#define QUEUE_QID_LEN 24   /* size of qid[] including the NUL */

struct queue_rcpt {
	char *addr;
	char *orcpt;     /* RFC 3461 ORCPT as received, or NULL */
	int state;       /* QUEUE_RCPT_PENDING/DONE/FAILED */
	/* Filled by queue_claim/queue_sync_show; ignored by queue_put: */
	char *error;     /* last result text ("550 5.1.1 ..."), or NULL */
	int attempts;
};

struct queue_env {
	char qid[QUEUE_QID_LEN];   /* set by the caller: queue_qid_new() */
	char *sender;              /* "" for the null sender */
	struct queue_rcpt *rcpts;
	size_t nrcpt;
	char *client_name, *client_addr, *helo, *proto;   /* may be NULL */
	long arrival;              /* unix seconds; 0: now */
	int smtputf8, body8bit;
	int hold;                  /* put on hold (milter QUARANTINE), not
	                              scheduled: mailq shows it held until
	                              released */
};

typedef void queue_put_cb(void *arg, int ok, const struct err *err);

struct queue *queue_new(struct event_base *base, struct redisc *r,
    const char *name, struct err *err);
/* Takes copies; calls cb exactly once (on the loop) after Redis confirmed
 * the atomic write (ok=1) or failed (ok=0, err->temp=1). A queue id that
 * is already queued fails (ok=0). */
void queue_put(struct queue *q, const struct queue_env *env,
    const char *data, size_t len, queue_put_cb *cb, void *arg);
void queue_free(struct queue *q);

/* A fresh queue id: 20 upper-case hex digits (time + random), unique
 * across processes and hosts sharing one Redis in practice. */
void queue_qid_new(char qid[QUEUE_QID_LEN]);
/* 1 when s looks like a queue id (hex/alnum, 1..23 chars): mailq checks
 * ids before using them in key names. */
int queue_qid_valid(const char *s);

/* After a put has been stored, require n replicas to have it (WAIT n
 * timeout_ms) before cb reports ok=1; 0 (default) skips WAIT. */
void queue_set_wait_replicas(struct queue *q, int n, int timeout_ms);
/* Called after each successful local queue_put (e.g. to wake qmgr). */
void queue_set_notify(struct queue *q, void (*fn)(void *arg), void *arg);

/* ---- delivery side (qmgr) --------------------------------------------- */

enum queue_state { QUEUE_ST_ACTIVE, QUEUE_ST_DEFERRED, QUEUE_ST_HOLD };

struct queue_msg {
	struct queue_env env;
	char *data;             /* NULL in queue_sync_list() results */
	size_t len;             /* data size in bytes */
	enum queue_state state;
	long long lease;        /* lease token held by this claim */
	long long next_ms;      /* next attempt (unix ms) */
	int attempts;           /* delivery attempts of the message */
	char *last_error;       /* or NULL */
};

void queue_msg_free(struct queue_msg *m);

/* Claim up to max due messages (score <= now), each leased for
 * lease_seconds. msgs (array and messages) belongs to the callback: free
 * each with queue_msg_free and the array with free(). n = 0 with err NULL:
 * nothing due. err set: Redis down or failed. */
typedef void queue_claim_cb(void *arg, struct queue_msg **msgs, size_t n,
    const struct err *err);
void queue_claim(struct queue *q, size_t max, int lease_seconds,
    queue_claim_cb *cb, void *arg);
/* Extend a held lease (long deliveries). ok=0 when the lease was lost. */
void queue_renew(struct queue *q, const struct queue_msg *m,
    int lease_seconds, queue_put_cb *cb, void *arg);
/* Write back the result of a delivery attempt: each rcpt's state, error
 * and attempts from m->env.rcpts, m->attempts and m->last_error. When no
 * recipient is PENDING the message is deleted, else it becomes deferred
 * until next_ms (unix ms). ok=0 with err->temp=0 when the lease was lost
 * (another worker took over; nothing was written). */
void queue_finish(struct queue *q, const struct queue_msg *m,
    long long next_ms, queue_put_cb *cb, void *arg);

/* ---- administration (mailq, tests): synchronous hiredis --------------- */

struct queue_counts { long active, deferred, hold, total; };

/* Put through a blocking connection (tests, tools). 0 or -1. */
int queue_sync_put(redisContext *c, const char *name,
    const struct queue_env *env, const char *data, size_t len,
    struct err *err);
/* All messages, envelope only (data NULL, len set), ordered by next
 * attempt then held ones. *msgs_r is an array to free with
 * queue_msgs_free(). 0 or -1. */
int queue_sync_list(redisContext *c, const char *name,
    struct queue_msg ***msgs_r, size_t *n_r, struct err *err);
void queue_msgs_free(struct queue_msg **msgs, size_t n);
/* One message with its data. 1 found, 0 not found, -1 error. */
int queue_sync_show(redisContext *c, const char *name, const char *qid,
    struct queue_msg **m_r, struct err *err);
/* 1 done, 0 no such message (or not in a state that allows it), -1 error. */
int queue_sync_delete(redisContext *c, const char *name, const char *qid,
    struct err *err);
int queue_sync_hold(redisContext *c, const char *name, const char *qid,
    struct err *err);
int queue_sync_release(redisContext *c, const char *name, const char *qid,
    struct err *err);
/* Make deferred messages (one, or all when qid is NULL) due now. Returns
 * the number changed, or -1. */
int queue_sync_flush(redisContext *c, const char *name, const char *qid,
    struct err *err);
int queue_sync_counts(redisContext *c, const char *name,
    struct queue_counts *r, struct err *err);

const char *queue_state_name(enum queue_state s);
const char *queue_rcpt_state_name(int state);

#endif
