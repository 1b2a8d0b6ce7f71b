/* redisc: one asynchronous Redis connection on the libevent loop (hiredis
 * async + its libevent adapter). It reconnects with back-off after a
 * failure, sends AUTH and SELECT first, and offers the synchronous helpers
 * the tools and the start-up durability check need. The caller owns the
 * struct redisc; replies handed to callbacks are borrowed. */
#ifndef REDISC_H
#define REDISC_H

#include <stddef.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include "err.h"
#include "cfg.h"

struct redisc;

/* The Redis parameters every daemon shares (HACKING.md): put redisc_params
 * in the daemon's table list. redis_server = 127.0.0.1:6379,
 * redis_password = (empty), redis_database = 0,
 * redis_require_durable = yes. */
extern const struct cfg_param redisc_params[];
extern char *var_redis_server;
extern char *var_redis_password;
extern long var_redis_database;
extern int var_redis_require_durable;

/* reply: borrowed, valid during the call only. NULL when Redis is down or
 * the connection broke before the reply came (then the command may or may
 * not have run). A reply of type REDIS_REPLY_ERROR is passed as is. Called
 * exactly once per command, always from the loop, never from inside
 * redisc_command*(). */
typedef void redisc_cb(struct redisc *r, struct redisReply *reply, void *arg);

/* addr: "host:port", "host" (port 6379) or "unix:/path". password may be
 * NULL or "" (no AUTH); db: SELECT index (0: none sent). Connecting starts
 * at once and goes on in the background; commands sent while it is down
 * fail (cb with NULL) rather than wait. */
struct redisc *redisc_new(struct event_base *base, const char *addr,
    const char *password, int db, struct err *err);
void redisc_free(struct redisc *r);           /* pending callbacks get NULL */
int redisc_connected(const struct redisc *r);  /* 1 after AUTH/SELECT passed */
/* Called (if set) each time the connection becomes ready (up=1) or is lost
 * (up=0), e.g. so a scheduler can rescan after Redis came back. */
void redisc_set_state_cb(struct redisc *r, void (*cb)(void *arg, int up),
    void *arg);

int redisc_command(struct redisc *r, redisc_cb *cb, void *arg,
    const char *fmt, ...);
int redisc_command_argv(struct redisc *r, redisc_cb *cb, void *arg,
    int argc, const char **argv, const size_t *argvlen);

/* Lua scripts run with EVALSHA. redisc_script_add registers body (a
 * string that outlives r) and writes its SHA-1 in hex to sha_r. The script
 * is loaded (SCRIPT LOAD) now and on every new connection before any other
 * command, so "EVALSHA sha ..." finds it; sending the script's text with
 * every EVAL cost Redis a hash of it each time (issue 12). A NOSCRIPT
 * answer (an operator's SCRIPT FLUSH) reaches the caller as the error it
 * is, and the scripts are loaded again. 0, or -1 when out of memory. */
#define REDISC_SHA_HEX 41
int redisc_script_add(struct redisc *r, const char *body,
    char sha_r[REDISC_SHA_HEX]);

/* Rate counter shared by every host on the same Redis: INCR key, with
 * EXPIRE window_seconds set when the key is new, atomically (Lua). cb gets
 * the count in this window, or -1 when Redis is down. */
typedef void redisc_rate_cb(void *arg, long count);
void redisc_rate_hit(struct redisc *r, const char *key, int window_seconds,
    redisc_rate_cb *cb, void *arg);

/* Synchronous connection for tools, tests and start-up checks (blocking;
 * never on a daemon's loop once it runs). timeout_ms bounds connect and
 * each command. Returns NULL and fills err on failure. */
redisContext *redisc_connect_sync(const char *addr, const char *password,
    int db, int timeout_ms, struct err *err);
/* Start-up check: CONFIG GET appendonly / appendfsync; 0 when they are
 * yes / always, else -1 with the reason (err->temp = 0 for a setting that
 * is wrong, 1 when Redis could not be asked). */
int redisc_check_durable(const char *addr, const char *password,
    struct err *err);
/* Copy a reply's error text (or "connection lost" for NULL) into err,
 * temp=1. Returns -1. */
int redisc_reply_err(const struct redisReply *reply, const char *what,
    struct err *err);

#endif
