/* redisc: hiredis async context on the libevent loop, with reconnect and
 * a watchdog. hiredis 0.14 has no command timeout for async contexts, so a
 * Redis that stops answering would hang every caller: the watchdog drops
 * the connection (all pending callbacks get NULL) and reconnects. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <openssl/evp.h>
#include "redisc.h"

#define REDISC_BACKOFF_MIN_MS 100
#define REDISC_BACKOFF_MAX_MS 5000
#define REDISC_CMD_TIMEOUT_MS 10000

char *var_redis_server;
char *var_redis_password;
long var_redis_database;
int var_redis_require_durable = 1;

const struct cfg_param redisc_params[] = {
	{ "redis_server", CFG_STR, "127.0.0.1:6379", &var_redis_server, 0, 0 },
	{ "redis_password", CFG_STR, "", &var_redis_password, 0, 0 },
	{ "redis_database", CFG_INT, "0", &var_redis_database, 0, 15 },
	{ "redis_require_durable", CFG_BOOL, "yes", &var_redis_require_durable, 0, 0 },
	{ NULL, 0, NULL, NULL, 0, 0 },
};

struct redisc_req {
	struct redisc *r;
	redisc_cb *cb;
	void *arg;
	struct redisc_req *next;      /* in r->failed (deferred failures) */
};

struct redisc {
	struct event_base *base;
	char *host, *path, *password;
	int port, db;
	redisAsyncContext *ac;
	int ready;                    /* AUTH/SELECT answered */
	int freeing;
	int backoff_ms;
	long inflight;
	struct timeval last_progress;
	struct event *retry_ev, *watch_ev, *fail_ev;
	struct event *flush_ev;       /* activated: write what is queued */
	int flush_pending;
	const char **scripts;         /* borrowed bodies, for SCRIPT LOAD */
	size_t nscripts;
	struct redisc_req *failed, **failed_tail;
	void (*state_cb)(void *arg, int up);
	void *state_arg;
};

static void redisc_connect(struct redisc *r);

/* Runs once the callbacks of this loop pass are done, so the commands
 * they queued leave in one write. hiredis's libevent adapter would
 * instead arm a write event: two epoll_ctl and one more pass per batch
 * (issue 12). Only on a connected context: hiredis takes a first write
 * call as the end of a non-blocking connect. */
static void redisc_flush(evutil_socket_t fd, short what, void *arg)
{
	struct redisc *r = arg;

	r->flush_pending = 0;
	if (r->ac != NULL && (r->ac->c.flags & REDIS_CONNECTED))
		redisAsyncHandleWrite(r->ac);
}

static long redisc_ms_since(const struct timeval *t)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (now.tv_sec - t->tv_sec) * 1000L + (now.tv_usec - t->tv_usec) / 1000;
}

/* Split "host:port", "host", "[v6]:port" or "unix:/path". */
static int redisc_parse_addr(struct redisc *r, const char *addr, struct err *err)
{
	const char *colon, *h = addr;
	size_t hl;
	char *end;
	long port = 6379;

	if (addr == NULL || *addr == '\0')
		return err_set(err, 0, "redis_server: empty address");
	if (strncmp(addr, "unix:", 5) == 0) {
		if (addr[5] != '/')
			return err_set(err, 0, "redis_server: unix: needs an absolute path");
		r->path = strdup(addr + 5);
		return r->path == NULL ? err_set(err, 1, "out of memory") : 0;
	}
	if (*h == '[') {
		colon = strchr(h, ']');
		if (colon == NULL)
			return err_set(err, 0, "redis_server: bad address %s", addr);
		h++;
		hl = (size_t)(colon - h);
		colon = colon[1] == ':' ? colon + 1 : NULL;
	} else {
		colon = strrchr(h, ':');
		hl = colon != NULL ? (size_t)(colon - h) : strlen(h);
	}
	if (colon != NULL) {
		port = strtol(colon + 1, &end, 10);
		if (*end != '\0' || port <= 0 || port > 65535)
			return err_set(err, 0, "redis_server: bad port in %s", addr);
	}
	r->host = strndup(h, hl);
	r->port = (int)port;
	return r->host == NULL ? err_set(err, 1, "out of memory") : 0;
}

static void redisc_set_ready(struct redisc *r, int up)
{
	if (r->ready == up)
		return;
	r->ready = up;
	if (r->state_cb != NULL)
		r->state_cb(r->state_arg, up);
}

static void redisc_schedule_retry(struct redisc *r)
{
	struct timeval tv;

	if (r->freeing)
		return;
	tv.tv_sec = r->backoff_ms / 1000;
	tv.tv_usec = (r->backoff_ms % 1000) * 1000;
	r->backoff_ms *= 2;
	if (r->backoff_ms > REDISC_BACKOFF_MAX_MS)
		r->backoff_ms = REDISC_BACKOFF_MAX_MS;
	evtimer_add(r->retry_ev, &tv);
}

static void redisc_on_connect(const redisAsyncContext *ac, int status)
{
	struct redisc *r = ac->data;

	if (status == REDIS_OK)
		return;  /* ready once AUTH/SELECT (or a PING) answer */
	/* hiredis frees ac after this callback. */
	r->ac = NULL;
	r->inflight = 0;
	redisc_set_ready(r, 0);
	redisc_schedule_retry(r);
}

static void redisc_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redisc *r = ac->data;

	r->ac = NULL;
	r->inflight = 0;
	if (r->freeing)
		return;
	redisc_set_ready(r, 0);
	redisc_schedule_retry(r);
}

static void redisc_on_hello(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redisc *r = priv;
	redisReply *rep = reply;

	if (r->freeing || ac != r->ac)
		return;
	r->inflight--;
	gettimeofday(&r->last_progress, NULL);
	if (rep == NULL)
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		/* Wrong password or database: drop and retry later; the
		 * operator sees commands fail meanwhile. */
		redisAsyncDisconnect(ac);
		return;
	}
	r->backoff_ms = REDISC_BACKOFF_MIN_MS;
	redisc_set_ready(r, 1);
}

static void redisc_on_loaded(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redisc *r = priv;

	if (r->freeing || ac != r->ac)
		return;
	r->inflight--;
	gettimeofday(&r->last_progress, NULL);
}

static void redisc_load_script(struct redisc *r, const char *body)
{
	if (r->ac != NULL && redisAsyncCommand(r->ac, redisc_on_loaded, r,
	    "SCRIPT LOAD %s", body) == REDIS_OK)
		r->inflight++;
}

int redisc_script_add(struct redisc *r, const char *body,
    char sha_r[REDISC_SHA_HEX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	const char **v;

	if (EVP_Digest(body, strlen(body), md, &n, EVP_sha1(), NULL) != 1 ||
	    n != 20)
		return -1;
	for (unsigned i = 0; i < n; i++)
		snprintf(sha_r + 2 * i, 3, "%02x", md[i]);
	for (size_t i = 0; i < r->nscripts; i++)
		if (r->scripts[i] == body)
			return 0;       /* another queue on this connection */
	v = realloc(r->scripts, (r->nscripts + 1) * sizeof(*v));
	if (v == NULL)
		return -1;
	r->scripts = v;
	r->scripts[r->nscripts++] = body;
	redisc_load_script(r, body);
	return 0;
}

static void redisc_connect(struct redisc *r)
{
	redisAsyncContext *ac;
	char dbs[16];

	if (r->path != NULL)
		ac = redisAsyncConnectUnix(r->path);
	else
		ac = redisAsyncConnect(r->host, r->port);
	if (ac == NULL || ac->err) {
		if (ac != NULL)
			redisAsyncFree(ac);
		redisc_schedule_retry(r);
		return;
	}
	ac->data = r;
	if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
		redisAsyncFree(ac);
		redisc_schedule_retry(r);
		return;
	}
	redisAsyncSetConnectCallback(ac, redisc_on_connect);
	redisAsyncSetDisconnectCallback(ac, redisc_on_disconnect);
	r->ac = ac;
	r->inflight = 0;
	gettimeofday(&r->last_progress, NULL);
	/* hiredis buffers these until the socket connects; commands sent
	 * meanwhile queue up behind them. */
	if (r->password != NULL && *r->password != '\0') {
		if (redisAsyncCommand(ac, redisc_on_hello, r, "AUTH %s",
		    r->password) == REDIS_OK)
			r->inflight++;
	}
	snprintf(dbs, sizeof(dbs), "%d", r->db);
	if (redisAsyncCommand(ac, redisc_on_hello, r, r->db > 0 ?
	    "SELECT %s" : "PING", dbs) == REDIS_OK)
		r->inflight++;
	for (size_t i = 0; i < r->nscripts; i++)
		redisc_load_script(r, r->scripts[i]);
}

static void redisc_retry(evutil_socket_t fd, short what, void *arg)
{
	redisc_connect(arg);
}

/* Run the callbacks of commands that could not even be sent. */
static void redisc_run_failed(evutil_socket_t fd, short what, void *arg)
{
	struct redisc *r = arg;
	struct redisc_req *q;

	while ((q = r->failed) != NULL) {
		r->failed = q->next;
		if (r->failed == NULL)
			r->failed_tail = &r->failed;
		if (q->cb != NULL)
			q->cb(r, NULL, q->arg);
		free(q);
	}
}

static void redisc_watch(evutil_socket_t fd, short what, void *arg)
{
	struct redisc *r = arg;
	redisAsyncContext *ac = r->ac;

	if (ac == NULL || r->inflight <= 0)
		return;
	if (redisc_ms_since(&r->last_progress) < REDISC_CMD_TIMEOUT_MS)
		return;
	/* Redis stopped answering: fail everything pending, reconnect. */
	redisAsyncFree(ac);
	r->ac = NULL;
	r->inflight = 0;
	redisc_set_ready(r, 0);
	if (!evtimer_pending(r->retry_ev, NULL))
		redisc_schedule_retry(r);
}

struct redisc *redisc_new(struct event_base *base, const char *addr,
    const char *password, int db, struct err *err)
{
	struct redisc *r = calloc(1, sizeof(*r));
	struct timeval sec = { 1, 0 };

	if (r == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	r->base = base;
	r->db = db;
	r->backoff_ms = REDISC_BACKOFF_MIN_MS;
	r->failed_tail = &r->failed;
	if (redisc_parse_addr(r, addr, err) < 0)
		goto fail;
	if (password != NULL && (r->password = strdup(password)) == NULL)
		goto oom;
	r->retry_ev = evtimer_new(base, redisc_retry, r);
	r->watch_ev = event_new(base, -1, EV_PERSIST, redisc_watch, r);
	r->fail_ev = evtimer_new(base, redisc_run_failed, r);
	r->flush_ev = event_new(base, -1, 0, redisc_flush, r);
	if (r->retry_ev == NULL || r->watch_ev == NULL || r->fail_ev == NULL ||
	    r->flush_ev == NULL)
		goto oom;
	evtimer_add(r->watch_ev, &sec);
	redisc_connect(r);
	return r;
oom:
	err_set(err, 1, "out of memory");
fail:
	redisc_free(r);
	return NULL;
}

void redisc_free(struct redisc *r)
{
	if (r == NULL)
		return;
	r->freeing = 1;
	if (r->ac != NULL)
		redisAsyncFree(r->ac);
	r->ac = NULL;
	redisc_run_failed(-1, 0, r);
	if (r->retry_ev != NULL)
		event_free(r->retry_ev);
	if (r->watch_ev != NULL)
		event_free(r->watch_ev);
	if (r->fail_ev != NULL)
		event_free(r->fail_ev);
	if (r->flush_ev != NULL)
		event_free(r->flush_ev);
	free(r->scripts);
	free(r->host);
	free(r->path);
	free(r->password);
	free(r);
}

int redisc_connected(const struct redisc *r)
{
	return r != NULL && r->ready;
}

void redisc_set_state_cb(struct redisc *r, void (*cb)(void *arg, int up),
    void *arg)
{
	r->state_cb = cb;
	r->state_arg = arg;
}

static void redisc_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redisc_req *q = priv;
	struct redisc *r = q->r;

	if (r->ac == ac) {
		r->inflight--;
		gettimeofday(&r->last_progress, NULL);
		if (reply != NULL &&
		    ((redisReply *)reply)->type == REDIS_REPLY_ERROR &&
		    strncmp(((redisReply *)reply)->str, "NOSCRIPT", 8) == 0)
			for (size_t i = 0; i < r->nscripts; i++)
				redisc_load_script(r, r->scripts[i]);
	}
	if (q->cb != NULL)
		q->cb(r, reply, q->arg);
	free(q);
}

static struct redisc_req *redisc_req_new(struct redisc *r, redisc_cb *cb,
    void *arg)
{
	struct redisc_req *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->r = r;
	q->cb = cb;
	q->arg = arg;
	return q;
}

/* The command could not be sent: report NULL from the loop, not from
 * inside the caller's call. */
static int redisc_fail_later(struct redisc *r, struct redisc_req *q)
{
	struct timeval zero = { 0, 0 };

	q->next = NULL;
	*r->failed_tail = q;
	r->failed_tail = &q->next;
	evtimer_add(r->fail_ev, &zero);
	return -1;
}

static int redisc_sent(struct redisc *r, struct redisc_req *q, int rc)
{
	if (rc != REDIS_OK)
		return redisc_fail_later(r, q);
	if (r->inflight++ == 0)
		gettimeofday(&r->last_progress, NULL);
	if (!r->flush_pending) {
		r->flush_pending = 1;
		event_active(r->flush_ev, EV_WRITE, 1);
	}
	return 0;
}

int redisc_command_argv(struct redisc *r, redisc_cb *cb, void *arg,
    int argc, const char **argv, const size_t *argvlen)
{
	struct redisc_req *q = redisc_req_new(r, cb, arg);

	if (q == NULL)
		return -1;
	if (r->ac == NULL)
		return redisc_fail_later(r, q);
	return redisc_sent(r, q, redisAsyncCommandArgv(r->ac, redisc_on_reply,
	    q, argc, argv, argvlen));
}

int redisc_command(struct redisc *r, redisc_cb *cb, void *arg,
    const char *fmt, ...)
{
	struct redisc_req *q = redisc_req_new(r, cb, arg);
	va_list ap;
	int rc;

	if (q == NULL)
		return -1;
	if (r->ac == NULL)
		return redisc_fail_later(r, q);
	va_start(ap, fmt);
	rc = redisvAsyncCommand(r->ac, redisc_on_reply, q, fmt, ap);
	va_end(ap);
	return redisc_sent(r, q, rc);
}

/* ---- rate counters ------------------------------------------------------ */

/* INCR and the first EXPIRE in one script, so a crash between them can
 * never leave a counter without expiry (it would block the client for
 * good). */
static const char redisc_rate_lua[] =
	"local n = redis.call('INCR', KEYS[1]) "
	"if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
	"return n";

struct redisc_rate {
	redisc_rate_cb *cb;
	void *arg;
};

static void redisc_rate_done(struct redisc *r, struct redisReply *reply,
    void *arg)
{
	struct redisc_rate *rt = arg;
	long n = -1;

	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
		n = (long)reply->integer;
	rt->cb(rt->arg, n);
	free(rt);
}

void redisc_rate_hit(struct redisc *r, const char *key, int window_seconds,
    redisc_rate_cb *cb, void *arg)
{
	struct redisc_rate *rt = malloc(sizeof(*rt));
	char win[16];
	const char *argv[5] = { "EVAL", redisc_rate_lua, "1", key, win };

	if (rt == NULL) {
		cb(arg, -1);
		return;
	}
	rt->cb = cb;
	rt->arg = arg;
	snprintf(win, sizeof(win), "%d", window_seconds > 0 ? window_seconds : 1);
	redisc_command_argv(r, redisc_rate_done, rt, 5, argv, NULL);
}

/* ---- synchronous helpers ------------------------------------------------ */

int redisc_reply_err(const struct redisReply *reply, const char *what,
    struct err *err)
{
	if (reply == NULL)
		return err_set(err, 1, "%s: Redis connection lost", what);
	if (reply->type == REDIS_REPLY_ERROR)
		return err_set(err, 1, "%s: Redis: %.*s", what,
		    (int)(reply->len > 150 ? 150 : reply->len), reply->str);
	return err_set(err, 1, "%s: unexpected Redis reply type %d", what,
	    reply->type);
}

static int redisc_sync_ok(redisContext *c, redisReply *rep, const char *what,
    struct err *err)
{
	int rc = 0;

	if (rep == NULL)
		return err_set(err, 1, "%s: Redis: %s", what, c->errstr);
	if (rep->type == REDIS_REPLY_ERROR)
		rc = redisc_reply_err(rep, what, err);
	freeReplyObject(rep);
	return rc;
}

redisContext *redisc_connect_sync(const char *addr, const char *password,
    int db, int timeout_ms, struct err *err)
{
	struct redisc a;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	redisContext *c;

	memset(&a, 0, sizeof(a));
	if (redisc_parse_addr(&a, addr, err) < 0)
		return NULL;
	if (a.path != NULL)
		c = redisConnectUnixWithTimeout(a.path, tv);
	else
		c = redisConnectWithTimeout(a.host, a.port, tv);
	free(a.host);
	free(a.path);
	if (c == NULL || c->err) {
		err_set(err, 1, "connect to Redis %s: %s", addr,
		    c != NULL ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (password != NULL && *password != '\0' &&
	    redisc_sync_ok(c, redisCommand(c, "AUTH %s", password), "AUTH",
	    err) < 0)
		goto fail;
	if (db > 0 && redisc_sync_ok(c, redisCommand(c, "SELECT %d", db),
	    "SELECT", err) < 0)
		goto fail;
	return c;
fail:
	redisFree(c);
	return NULL;
}

static int redisc_config_get(redisContext *c, const char *name, char *out,
    size_t outsz, struct err *err)
{
	redisReply *rep = redisCommand(c, "CONFIG GET %s", name);

	if (rep == NULL)
		return err_set(err, 1, "CONFIG GET %s: %s", name, c->errstr);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[1]->type != REDIS_REPLY_STRING) {
		redisc_reply_err(rep, "CONFIG GET", err);
		freeReplyObject(rep);
		return -1;
	}
	snprintf(out, outsz, "%s", rep->element[1]->str);
	freeReplyObject(rep);
	return 0;
}

int redisc_check_durable(const char *addr, const char *password,
    struct err *err)
{
	redisContext *c = redisc_connect_sync(addr, password, 0, 3000, err);
	char aof[16], fsync[16];
	int rc = -1;

	if (c == NULL)
		return -1;
	if (redisc_config_get(c, "appendonly", aof, sizeof(aof), err) < 0 ||
	    redisc_config_get(c, "appendfsync", fsync, sizeof(fsync), err) < 0)
		goto out;
	if (strcasecmp(aof, "yes") != 0)
		err_set(err, 0, "Redis %s: appendonly is %s, not yes: an "
		    "acknowledged message could be lost", addr, aof);
	else if (strcasecmp(fsync, "always") != 0)
		err_set(err, 0, "Redis %s: appendfsync is %s, not always: an "
		    "acknowledged message could be lost", addr, fsync);
	else
		rc = 0;
out:
	redisFree(c);
	return rc;
}
