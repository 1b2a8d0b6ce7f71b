/* mx_forward: the MX host's forwarder. It runs the shared scheduler
 * (qmgr) over the "mx" queue and hands every message to the internal host
 * (relayhost, or per-domain transport_maps) with STARTTLS and SMTP AUTH,
 * Postfix smtp(8) parameters. One forwarder per process. */
#ifndef MX_FORWARD_H
#define MX_FORWARD_H

#include "cfg.h"
#include "err.h"

struct event_base;
struct work_pool;
struct queue;

extern const struct cfg_param mx_forward_params[];

/* Call after the configuration is loaded. Opens the maps, the TLS client
 * context and starts delivering. 0, or -1 with err. */
int mx_forward_start(struct event_base *base, struct work_pool *pool,
    struct queue *q, struct err *err);
/* Stop delivering (messages in flight come back after their lease). Call
 * before queue_free()/redisc_free(); harmless when not started. */
void mx_forward_stop(void);

#endif
