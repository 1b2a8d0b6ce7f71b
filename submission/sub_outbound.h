/* sub_outbound: the delivery side of submission's outbound queue ("out"):
 * the shared queue manager (qmgr.h: retries with back-off, bounces) with
 * submission's route (relayhost, else the recipient domain's MX) and
 * relay credentials (smtp_sasl_password_maps). main.c owns the struct. */
#ifndef SUB_OUTBOUND_H
#define SUB_OUTBOUND_H

#include "cfg.h"
#include "err.h"

struct event_base;
struct queue;
struct sub_resolve;
struct work_pool;
struct fsgroup;
struct sub_outbound;

/* relayhost, smtp_tls_security_level, smtp_sasl_*, back-off times,
 * smtp_dns_resolver, ...: a cfg table for main's list. */
extern const struct cfg_param sub_outbound_params[];

/* Pure: the next hop for rcpt: relayhost when set, else the domain of
 * rcpt (MX lookup). NULL when rcpt has no domain. malloc'd. */
char *sub_outbound_nexthop(const char *relayhost, const char *rcpt);

/* Start delivering q. Recipients in our own domains (bounces to local
 * senders, mostly) go through the "local" transport: resolve (borrowed,
 * must outlive the struct) and the MDA. The pool must be freed before
 * the outbound side (qmgr.h). NULL + err on failure. */
struct sub_outbound *sub_outbound_new(struct event_base *base,
				      struct work_pool *pool,
				      struct fsgroup *fsync_group,
				      struct queue *q,
				      const struct sub_resolve *resolve,
				      const char *myhostname, struct err *err);
void sub_outbound_free(struct sub_outbound *o);

#endif
