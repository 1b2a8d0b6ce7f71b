/* mx_session: mx-relay's policy on top of the smtpd engine: which
 * recipients it accepts (its domains, existing users), the per-client
 * connection and message rates in Redis, and the hand-off of each message
 * to the durable Redis queue before the 250. main.c owns struct mx_relay
 * and everything it points to. */
#ifndef MX_SESSION_H
#define MX_SESSION_H

#include "map.h"
#include "smtpd.h"
#include "vlookup.h"

struct redisc;
struct queue;
struct work_pool;

struct mx_relay {
	struct event_base *base;
	struct smtpd_server *smtpd;
	struct work_pool *pool;
	struct redisc *redis;                     /* rates; == redisv[0] */
	struct queue *queue;                      /* forwarder; == queuev[0] */
	/* Several connections for queue writes: Redis reads a bounded amount
	 * per client per event-loop turn, and with appendfsync always each
	 * turn costs one fsync, so one connection caps the batch that an fsync
	 * covers. Puts go round-robin over them. */
	struct redisc **redisv;
	struct queue **queuev;
	int nqueue, next_queue;
	struct vlookup_domains *relay_domains;    /* relay_domains */
	struct vlookup_domains *virtual_domains;  /* virtual_mailbox_domains */
	struct map *relay_rcpt;                   /* relay_recipient_maps */
	struct map *vmailbox;                     /* virtual_mailbox_maps */
	struct map *valias;                       /* virtual_alias_maps */
	const char *delims;                       /* recipient_delimiter */
	const char *mydomain;
	long conn_rate, msg_rate;                 /* 0: no limit */
	long rate_unit;                           /* anvil_rate_time_unit, s */
	int inline_lookups;   /* every table is in memory (texthash:,
	                         static:, plain domain lists): no worker hop */
	int stopping;
};

/* 1 when a map spec (or domain list) holds only tables that answer from
 * memory without blocking (texthash:, static:, names), so that lookups may
 * run on the loop; mysql: and anything unknown need the worker pool. */
int mx_session_spec_inline(const char *spec);

/* ctx for smtpd_server_new() is the struct mx_relay. */
extern const struct smtpd_hooks mx_session_hooks;

/* The recipient check, pure of I/O except the maps (blocking: run it on
 * the worker pool). Returns 0 (accept) or an SMTP code with its text in
 * text (e.g. 554 "5.7.1 <u@d>: Relay access denied"). Exposed for tests. */
int mx_session_check_rcpt(struct mx_relay *mx, const char *rcpt, char *text,
                          size_t n);

#endif
