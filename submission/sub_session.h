/* sub_session: submission's policy on top of the shared SMTP engine
 * (smtpd.h hooks): client/relay/sender restrictions, the failed-login
 * policy (shared/loginfail: delays, refusal of a flooding address's
 * failing names, the fail2ban line), XFORWARD trust, IDENT de-duplication,
 * MSA header fixes (RFC 6409 §8), and the hand-off of each message to
 * local delivery (worker pool) and the outbound queue. main.c owns the
 * struct sub_server and everything it points to. */
#ifndef SUB_SESSION_H
#define SUB_SESSION_H

#include <stdint.h>

#include "err.h"
#include "smtpd.h"
#include "sub_policy.h"
#include "sub_resolve.h"

struct event_base;
struct work_pool;
struct fsgroup;
struct redisc;
struct queue;
struct map;
struct loginfail;

enum sub_kind { SUB_KIND_SUBMISSION, SUB_KIND_SMTPS, SUB_KIND_INTAKE };

struct sub_server {
	struct event_base *base;
	struct work_pool *pool;
	struct fsgroup *fsync_group;     /* the pool's Maildir deliveries */
	int rcpt_inline;                 /* RCPT's maps are all in memory:
	                                    the loop resolves, no worker */
	struct redisc *redis;
	struct queue *outq;              /* "out" queue, NULL: none */
	struct sub_resolve resolve;
	struct map *sender_login_maps;   /* may be NULL */
	struct sub_policy_net *mynetworks;  /* consulted on the intake only */
	/* client (MAIL) and relay (RCPT) lists: on 587/465, on the intake */
	struct sub_policy_restr client_restr, relay_restr;
	struct sub_policy_restr intake_client_restr, intake_relay_restr;
	struct sub_policy_restr sender_restr;
	const char *relay_logins;        /* intake_relay_logins list */
	const char *myhostname;
	const char *name;                /* "submission" (logs) */
	long auth_fail_limit;            /* per connection */
	struct loginfail *loginfail;     /* across connections and hosts */
	unsigned auth_wait_max_ms;       /* auth_failure_delay_max: the
	                                    longest an AUTH answer waits */
	long ident_lifetime;             /* seconds */
	const char *bounce_sender;       /* notices come from <> */
};

/* One per listener kind; ctx of its smtpd_server. */
struct sub_listener {
	struct sub_server *srv;
	enum sub_kind kind;
	struct smtpd_server *smtpd;
};

/* The hook table every listener uses (ctx = struct sub_listener *). */
extern const struct smtpd_hooks sub_session_hooks;

/* Sessions in flight (for the benchmark and tests' logs). */
unsigned sub_session_count(void);

#endif
