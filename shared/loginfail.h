/* loginfail: the failed-login penalty shared by submission (SMTP AUTH),
 * IMAP and POP3, after Dovecot's auth penalty and Postfix's anvil: a delay
 * that doubles with the failures of the (address, user) pair, a temporary
 * refusal for an address that floods, never a refusal of a user who has
 * not failed. Counters live in Redis (shared by daemons and hosts) and in a
 * bounded in-memory table, which answers while Redis is down. The daemon
 * owns struct loginfail and the redisc it borrows. */
#ifndef LOGINFAIL_H
#define LOGINFAIL_H

#include <stdint.h>
#include "cfg.h"
#include "err.h"

struct event_base;
struct redisc;
struct loginfail;

/* Parameters, the same names in every daemon: put loginfail_params in the
 * daemon's table list, then loginfail_settings_from_params().
 *   auth_failure_delay = 2s           first step of the delay (Dovecot)
 *   auth_failure_delay_max = 15s      cap (Dovecot's penalty maximum)
 *   auth_failure_window = 10m         a failure is forgotten this long
 *                                     after the last one of its key
 *   auth_failure_address_users = 3    user names that may fail from one
 *                                     address (new in one window) before
 *                                     every login from it is delayed too
 *                                     (a NAT's stale phones are not)
 *   smtpd_client_auth_rate_limit = 30 failures from one address per
 *                                     anvil_rate_time_unit before the
 *                                     users that failed there are refused
 *                                     (4xx) until the unit ends; 0: never
 *   anvil_rate_time_unit = 60s        that unit (Postfix anvil)
 *   auth_failure_table_size = 10000   entries of the in-memory table */
extern const struct cfg_param loginfail_params[];

struct loginfail_settings {
	unsigned delay_ms;        /* first step; 0: no delay at all */
	unsigned delay_max_ms;    /* cap; below every client timeout */
	unsigned window_ms;       /* pair memory (sliding), user count
	                             (fixed window) */
	unsigned address_users;   /* distinct failing users tolerated */
	unsigned rate_limit;      /* failures per rate_ms; 0: no refusal */
	unsigned rate_ms;         /* fixed window of the flood count */
	unsigned table_size;      /* memory entries (fixed, oldest evicted) */
};
void loginfail_settings_from_params(struct loginfail_settings *set);

enum loginfail_verdict {
	LOGINFAIL_OK,             /* go on: check the password, answer */
	LOGINFAIL_TEMP_REFUSE     /* answer a temporary failure; check no
	                             password (or ignore the result of one
	                             already checked); record nothing */
};

struct loginfail_answer {
	enum loginfail_verdict verdict;
	unsigned delay_ms;        /* already waited when the callback runs */
	unsigned pair_fails;      /* counts the answer was made from */
	unsigned address_users;
	unsigned address_rate;
	int from_redis;           /* 0: the in-memory table answered */
};

/* The rule, pure (no I/O). pair_fails: failures of (address, user) with
 * no more than window_ms between them; address_users: user names that
 * failed for the first time from the address in its current window_ms;
 * address_rate: failures from the address in its current rate_ms.
 *   delay = min(delay_max, max(pair part, address part))
 *   pair part    = pair_fails ? delay << (pair_fails - 1) : 0
 *   address part = address_users > set->address_users ?
 *                  delay << (address_users - set->address_users - 1) : 0
 *   TEMP_REFUSE  iff rate_limit > 0 && address_rate >= rate_limit &&
 *                pair_fails > 0
 * A user with no failure is never refused and, behind a NAT with up to
 * address_users bad clients, not delayed either; a refusal ends with the
 * rate window (rate_ms after the address's first failure in it). */
void loginfail_decide(const struct loginfail_settings *set,
    unsigned pair_fails, unsigned address_users, unsigned address_rate,
    struct loginfail_answer *a_r);

/* base: the loop. redis may be NULL (memory only); it is borrowed and must
 * outlive the loginfail (free the loginfail first). set is copied. NULL +
 * err when out of memory. */
struct loginfail *loginfail_new(struct event_base *base, struct redisc *redis,
    const struct loginfail_settings *set, struct err *err);
/* Pending checks are dropped: their callbacks never run. */
void loginfail_free(struct loginfail *lf);

/* ctx: long-lived (the server or listener, never the session); id: the
 * session's id, to find it again (it may be gone: then do nothing). a is
 * borrowed for the call. */
typedef void loginfail_cb(void *ctx, uint64_t id,
    const struct loginfail_answer *a);

/* Once the user name is known and before the result of the password
 * check is revealed (before the check itself where the name comes first:
 * IMAP LOGIN, POP3 PASS; after the SASL exchange otherwise; the delay does
 * not depend on the result, so it tells nothing): counts for (addr, user)
 * are read (Redis when connected, else memory; a Redis failure
 * falls back to memory), the delay is waited, then cb runs, always from
 * the loop, never from inside this call. addr: the client's IP address as
 * text (IPv6 counts per /64); user: the login name as the client gave it
 * (case-folded here), NULL or "" when none was learnt. Returns 0, or -1
 * when out of memory (then cb never runs: answer a temporary failure). */
int loginfail_check(struct loginfail *lf, const char *addr, const char *user,
    loginfail_cb *cb, void *ctx, uint64_t id);

/* After the password check (not after a TEMP_REFUSE): ok 0 counts a
 * failure of the pair and of the address; ok 1 clears the pair's count and
 * keeps the address's (Dovecot). Written to memory always and to Redis
 * when connected; nothing to wait for. */
void loginfail_record(struct loginfail *lf, const char *addr,
    const char *user, int ok);

/* Entries in the memory table now (never above table_size; tests). */
unsigned loginfail_mem_entries(const struct loginfail *lf);

/* ---- log lines (through log.c), one per failed login ----------------
 * user, mech and client_name are client bytes, cleaned here: white
 * space, controls, non-ASCII and the characters the filters use as
 * delimiters ( ) < > [ ] , ; : " \ become '?', at most 100 are kept, so no
 * user name can move the address fail2ban reads.
 *
 * submission, syslog tag "submission" (log_open("submission", ...)),
 * fail2ban filter postfix[mode=auth, _daemon=submission]:
 *   submission[PID]: warning: NAME[ADDR]: SASL MECH authentication failed:
 *       authentication failure, sasl_username=USER
 * mra, syslog tag "mra", filter dovecot[_daemon=mra]; PROTO imap or pop3:
 *   mra[PID]: PROTO-login: passdb(USER,ADDR): Invalid credentials,
 *       method=MECH
 * (each one line). The refusal lines match neither filter: a refused
 * attempt checked no password. */
void loginfail_log_smtp(const char *client_name, const char *addr,
    const char *mech, const char *user);
void loginfail_log_smtp_refused(const char *client_name, const char *addr,
    const char *user, const struct loginfail_answer *a);
void loginfail_log_mra(const char *proto, const char *addr,
    const char *mech, const char *user);
void loginfail_log_mra_refused(const char *proto, const char *addr,
    const char *user, const struct loginfail_answer *a);

#endif
