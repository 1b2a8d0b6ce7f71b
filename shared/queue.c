/* queue: the Redis queue shared by mx-relay and submission. The layout and
 * the claim protocol are described in queue.h; the why is here.
 *
 * Why a sorted set with a Lua lease rather than a stream + consumer group:
 * a mail queue needs per-message retry times (back-off), hold/release and
 * flush. A stream delivers each entry once to a group and only knows
 * "pending since"; a deferred message would have to be re-added (new id)
 * or left pending and re-claimed by idle time, which conflates "worker
 * died" with "retry later". One zset scored by next-attempt time expresses
 * both: a claim moves the score to now + lease, so a dead worker's message
 * is simply due again when the lease runs out, and a deferral moves it to
 * the retry time. Every transition is one Lua script, so it is atomic on
 * the server and safe for any number of processes and hosts. Each claim
 * stamps a fresh token (mq:N:seq); a late worker whose lease was taken over
 * cannot overwrite the newer owner's result. */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "queue.h"
#include "redisc.h"

long var_queue_wait_replicas;
long var_queue_wait_timeout = 1;

const struct cfg_param queue_params[] = {
	{ "queue_wait_replicas", CFG_INT, "0", &var_queue_wait_replicas, 0, 100 },
	{ "queue_wait_timeout", CFG_TIME, "1s", &var_queue_wait_timeout, 1, 3600 },
	{ NULL, 0, NULL, NULL, 0, 0 },
};

struct queue {
	struct event_base *base;
	struct redisc *r;
	char prefix[64];          /* "mq:NAME:" */
	/* the scripts the loop runs per message, by EVALSHA */
	char sha_put[REDISC_SHA_HEX], sha_claim[REDISC_SHA_HEX];
	char sha_finish[REDISC_SHA_HEX];
	int wait_replicas, wait_timeout_ms;
	void (*notify)(void *arg);
	void *notify_arg;
};

/* ---- Lua scripts -------------------------------------------------------- */

/* KEYS: msg, data, sched, hold. ARGV: qid, score, data, field, value,
 * ... (set in one HSET per 200 pairs: every redis.call has a cost of
 * its own, and one per field was most of the script's calls). A message
 * put with state "hold" (a milter's QUARANTINE) goes into the hold set
 * instead of the schedule, as "postsuper -h" would leave it. */
static const char queue_lua_put[] =
	"if redis.call('EXISTS', KEYS[1]) == 1 then "
	"  return redis.error_reply('EXISTS queue id already queued') end "
	"for i = 4, #ARGV, 400 do redis.call('HSET', KEYS[1], "
	"  unpack(ARGV, i, math.min(i + 399, #ARGV))) end "
	"redis.call('SET', KEYS[2], ARGV[3]) "
	"if redis.call('HGET', KEYS[1], 'state') == 'hold' then "
	"  redis.call('SADD', KEYS[4], ARGV[1]) "
	"else redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1]) end "
	"return 1";

/* ARGV: prefix, now_ms, lease_until_ms, max. Returns { qid, token, qid,
 * token, ... }: only the lease is taken here. The envelope and the data
 * are read afterwards with plain HGETALL and GET (queue_claim_done):
 * turning them into Lua values and back was most of the claim's time in
 * Redis (issue 12), for no gain in safety, since the lease is what keeps
 * other workers off the message. */
static const char queue_lua_claim[] =
	"local p = ARGV[1] "
	"local ids = redis.call('ZRANGEBYSCORE', p..'sched', '-inf', ARGV[2], "
	"  'LIMIT', 0, tonumber(ARGV[4])) "
	"local out = {} "
	"for _, id in ipairs(ids) do "
	"  local mk = p..'m:'..id "
	"  if redis.call('EXISTS', mk) == 0 then "
	"    redis.call('ZREM', p..'sched', id) "
	"  else "
	"    local tok = tostring(redis.call('INCR', p..'seq')) "
	"    redis.call('ZADD', p..'sched', ARGV[3], id) "
	"    redis.call('HSET', mk, 'state', 'active', 'lease', tok, "
	"      'lease_until', ARGV[3]) "
	"    out[#out+1] = id "
	"    out[#out+1] = tok "
	"  end "
	"end "
	"return out";

/* KEYS: msg, sched. ARGV: token, until, qid. */
static const char queue_lua_renew[] =
	"if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end "
	"redis.call('HSET', KEYS[1], 'lease_until', ARGV[2]) "
	"if redis.call('HGET', KEYS[1], 'state') ~= 'hold' then "
	"  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) end "
	"return 1";

/* KEYS: msg, data, sched, hold. ARGV: token, qid, next_ms, alldone,
 * field, value, ... A message held meanwhile keeps its results and stays
 * held. */
static const char queue_lua_finish[] =
	"if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end "
	"if ARGV[4] == '1' then "
	"  redis.call('DEL', KEYS[1], KEYS[2]) "
	"  redis.call('ZREM', KEYS[3], ARGV[2]) "
	"  redis.call('SREM', KEYS[4], ARGV[2]) "
	"  return 1 end "
	"for i = 5, #ARGV, 400 do redis.call('HSET', KEYS[1], "
	"  unpack(ARGV, i, math.min(i + 399, #ARGV))) end "
	"redis.call('HSET', KEYS[1], 'lease', '0', 'next', ARGV[3]) "
	"if redis.call('HGET', KEYS[1], 'state') == 'hold' then return 1 end "
	"redis.call('HSET', KEYS[1], 'state', 'deferred') "
	"redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2]) "
	"return 1";

/* KEYS: msg, data, sched, hold. ARGV: qid. */
static const char queue_lua_delete[] =
	"local n = redis.call('DEL', KEYS[1], KEYS[2]) "
	"redis.call('ZREM', KEYS[3], ARGV[1]) "
	"redis.call('SREM', KEYS[4], ARGV[1]) "
	"if n > 0 then return 1 end return 0";

/* KEYS: msg, sched, hold. ARGV: qid. */
static const char queue_lua_hold[] =
	"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
	"if redis.call('HGET', KEYS[1], 'state') == 'hold' then return 0 end "
	"redis.call('HSET', KEYS[1], 'state', 'hold') "
	"redis.call('ZREM', KEYS[2], ARGV[1]) "
	"redis.call('SADD', KEYS[3], ARGV[1]) "
	"return 1";

/* KEYS: msg, sched, hold. ARGV: qid, now_ms. A worker may still hold a
 * lease on it: then it becomes due when that lease ends, not before, so
 * it is not delivered twice in parallel. */
static const char queue_lua_release[] =
	"if redis.call('HGET', KEYS[1], 'state') ~= 'hold' then return 0 end "
	"local due = ARGV[2] "
	"local lu = redis.call('HGET', KEYS[1], 'lease_until') "
	"if redis.call('HGET', KEYS[1], 'lease') ~= '0' and lu and "
	"  tonumber(lu) > tonumber(due) then due = lu end "
	"redis.call('SREM', KEYS[3], ARGV[1]) "
	"redis.call('HSET', KEYS[1], 'state', 'deferred', 'next', due) "
	"redis.call('ZADD', KEYS[2], due, ARGV[1]) "
	"return 1";

/* ARGV: prefix, now_ms, qid or ''. Only deferred messages: an active one
 * is leased (or already due). */
static const char queue_lua_flush[] =
	"local p = ARGV[1] "
	"local ids "
	"if ARGV[3] ~= '' then ids = {ARGV[3]} else "
	"  ids = redis.call('ZRANGEBYSCORE', p..'sched', '('..ARGV[2], '+inf') end "
	"local n = 0 "
	"for _, id in ipairs(ids) do "
	"  local mk = p..'m:'..id "
	"  if redis.call('HGET', mk, 'state') == 'deferred' and "
	"     redis.call('ZSCORE', p..'sched', id) then "
	"    redis.call('ZADD', p..'sched', ARGV[2], id) "
	"    redis.call('HSET', mk, 'next', ARGV[2]) "
	"    n = n + 1 end "
	"end "
	"return n";

/* ARGV: prefix. Returns {active, deferred, hold}. */
static const char queue_lua_counts[] =
	"local p = ARGV[1] "
	"local a, d = 0, 0 "
	"for _, id in ipairs(redis.call('ZRANGE', p..'sched', 0, -1)) do "
	"  if redis.call('HGET', p..'m:'..id, 'state') == 'deferred' then "
	"    d = d + 1 else a = a + 1 end "
	"end "
	"return {a, d, redis.call('SCARD', p..'hold')}";

/* ---- small helpers ------------------------------------------------------ */

static long long queue_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static uint32_t queue_qid_rnd;

static void queue_qid_seed(void)
{
	if (getrandom(&queue_qid_rnd, sizeof(queue_qid_rnd), 0) !=
	    (ssize_t)sizeof(queue_qid_rnd))
		queue_qid_rnd = (uint32_t)getpid() * 2654435761u ^
		                (uint32_t)time(NULL);
}

/* Seconds and microseconds make ids sort by arrival (as Postfix's long
 * ids do); a per-process random value plus a counter keeps processes and
 * hosts sharing one Redis apart. 20 upper-case hex digits. The one queue
 * id generator: the SMTP engine, qmgr and submission all call it, from
 * the loop or from workers (the counter is atomic). */
void queue_qid_new(char qid[QUEUE_QID_LEN])
{
	static uint32_t counter;
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct timeval tv;
	uint32_t n;

	pthread_once(&once, queue_qid_seed);
	n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
	gettimeofday(&tv, NULL);
	snprintf(qid, QUEUE_QID_LEN, "%08X%05X%07X",
	         (unsigned)tv.tv_sec, (unsigned)tv.tv_usec & 0xFFFFF,
	         (unsigned)((queue_qid_rnd + n * 2654435761u) & 0xFFFFFFF));
}

int queue_qid_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		    (c >= 'a' && c <= 'z')))
			return 0;
	}
	return i > 0 && i < QUEUE_QID_LEN;
}

static int queue_prefix(char *out, size_t outsz, const char *name,
    struct err *err)
{
	size_t i;

	if (name == NULL || *name == '\0' || strlen(name) > 32)
		return err_set(err, 0, "bad queue name");
	for (i = 0; name[i] != '\0'; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		    (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
		    name[i] == '-'))
			return err_set(err, 0, "bad queue name \"%s\"", name);
	snprintf(out, outsz, "mq:%s:", name);
	return 0;
}

static void queue_key(char *out, size_t outsz, const char *prefix,
    const char *kind, const char *qid)
{
	snprintf(out, outsz, "%s%s%s", prefix, kind, qid != NULL ? qid : "");
}

/* An argument vector for EVAL; strings are copied unless borrowed. */
struct queue_argv {
	int n, cap;
	const char **v;
	size_t *len;
	char **own;
	int oom;
};

static void queue_argv_addn(struct queue_argv *a, const char *s, size_t len,
    int copy)
{
	char *c = NULL;

	if (a->oom)
		return;
	if (a->n == a->cap) {
		int cap = a->cap ? a->cap * 2 : 32;
		const char **v = realloc(a->v, cap * sizeof(*v));
		size_t *l = v ? realloc(a->len, cap * sizeof(*l)) : NULL;
		char **o = l ? realloc(a->own, cap * sizeof(*o)) : NULL;
		if (v != NULL)
			a->v = v;
		if (l != NULL)
			a->len = l;
		if (o == NULL) {
			a->oom = 1;
			return;
		}
		a->own = o;
		a->cap = cap;
	}
	if (copy) {
		c = malloc(len + 1);
		if (c == NULL) {
			a->oom = 1;
			return;
		}
		memcpy(c, s, len);
		c[len] = '\0';
		s = c;
	}
	a->v[a->n] = s;
	a->len[a->n] = len;
	a->own[a->n] = c;
	a->n++;
}

static void queue_argv_add(struct queue_argv *a, const char *s)
{
	queue_argv_addn(a, s != NULL ? s : "", s != NULL ? strlen(s) : 0, 1);
}

static void queue_argv_addf(struct queue_argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void queue_argv_addf(struct queue_argv *a, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	queue_argv_add(a, tmp);
}

static void queue_argv_free(struct queue_argv *a)
{
	int i;

	for (i = 0; i < a->n; i++)
		free(a->own[i]);
	free(a->v);
	free(a->len);
	free(a->own);
	memset(a, 0, sizeof(*a));
}

/* EVAL script nkeys keys... ; EVALSHA sha ... when sha is not NULL
 * (the daemons' connections, which load the scripts: redisc_script_add). */
static void queue_argv_script(struct queue_argv *a, const char *script,
    const char *sha, int nkeys)
{
	if (sha != NULL) {
		queue_argv_addn(a, "EVALSHA", 7, 0);
		queue_argv_addn(a, sha, strlen(sha), 0);
	} else {
		queue_argv_addn(a, "EVAL", 4, 0);
		queue_argv_addn(a, script, strlen(script), 0);
	}
	queue_argv_addf(a, "%d", nkeys);
}

static void queue_argv_eval(struct queue_argv *a, const char *script,
    int nkeys)
{
	queue_argv_script(a, script, NULL, nkeys);
}

static void queue_argv_pair(struct queue_argv *a, const char *field,
    const char *value)
{
	queue_argv_add(a, field);
	queue_argv_add(a, value);
}

static void queue_argv_pairf(struct queue_argv *a, const char *field,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void queue_argv_pairf(struct queue_argv *a, const char *field,
    const char *fmt, ...)
{
	char tmp[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	queue_argv_pair(a, field, tmp);
}

/* The put command: one EVAL, so the envelope, the data and the schedule
 * entry appear together or not at all. */
static int queue_build_put(struct queue_argv *a, const char *prefix,
    const char *sha, const struct queue_env *env, const char *data,
    size_t len, struct err *err)
{
	char k[128], f[32];
	long arrival = env->arrival ? env->arrival : (long)time(NULL);
	size_t i;

	if (!queue_qid_valid(env->qid))
		return err_set(err, 0, "queue_put: bad queue id");
	if (env->sender == NULL || env->nrcpt == 0)
		return err_set(err, 0, "queue_put: no sender or no recipients");
	queue_argv_script(a, queue_lua_put, sha, 4);
	queue_key(k, sizeof(k), prefix, "m:", env->qid);
	queue_argv_add(a, k);
	queue_key(k, sizeof(k), prefix, "d:", env->qid);
	queue_argv_add(a, k);
	queue_key(k, sizeof(k), prefix, "sched", NULL);
	queue_argv_add(a, k);
	queue_key(k, sizeof(k), prefix, "hold", NULL);
	queue_argv_add(a, k);
	queue_argv_add(a, env->qid);
	queue_argv_addf(a, "%lld", queue_now_ms());
	queue_argv_addn(a, data, len, 0);
	queue_argv_pair(a, "qid", env->qid);
	queue_argv_pair(a, "sender", env->sender);
	queue_argv_pair(a, "client_name", env->client_name);
	queue_argv_pair(a, "client_addr", env->client_addr);
	queue_argv_pair(a, "helo", env->helo);
	queue_argv_pair(a, "proto", env->proto);
	queue_argv_pairf(a, "arrival", "%ld", arrival);
	queue_argv_pairf(a, "size", "%zu", len);
	queue_argv_pairf(a, "smtputf8", "%d", env->smtputf8 ? 1 : 0);
	queue_argv_pairf(a, "body8bit", "%d", env->body8bit ? 1 : 0);
	queue_argv_pair(a, "state", env->hold ? "hold" : "active");
	queue_argv_pairf(a, "next", "%lld", queue_now_ms());
	queue_argv_pair(a, "attempts", "0");
	queue_argv_pair(a, "lease", "0");
	queue_argv_pairf(a, "nrcpt", "%zu", env->nrcpt);
	for (i = 0; i < env->nrcpt; i++) {
		if (env->rcpts[i].addr == NULL)
			return err_set(err, 0, "queue_put: recipient without address");
		snprintf(f, sizeof(f), "r%zu", i);
		queue_argv_pair(a, f, env->rcpts[i].addr);
		if (env->rcpts[i].orcpt != NULL) {
			snprintf(f, sizeof(f), "o%zu", i);
			queue_argv_pair(a, f, env->rcpts[i].orcpt);
		}
		snprintf(f, sizeof(f), "s%zu", i);
		queue_argv_pairf(a, f, "%d", env->rcpts[i].state);
	}
	if (a->oom)
		return err_set(err, 1, "queue_put: out of memory");
	return 0;
}

/* ---- message decoding --------------------------------------------------- */

/* Copy exactly n bytes, NUL-terminated: unlike strndup(), a NUL inside
 * message data does not cut it short. */
static char *queue_dupn(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

void queue_msg_free(struct queue_msg *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->env.nrcpt && m->env.rcpts != NULL; i++) {
		free(m->env.rcpts[i].addr);
		free(m->env.rcpts[i].orcpt);
		free(m->env.rcpts[i].error);
	}
	free(m->env.rcpts);
	free(m->env.sender);
	free(m->env.client_name);
	free(m->env.client_addr);
	free(m->env.helo);
	free(m->env.proto);
	free(m->data);
	free(m->last_error);
	free(m);
}

void queue_msgs_free(struct queue_msg **msgs, size_t n)
{
	size_t i;

	for (i = 0; msgs != NULL && i < n; i++)
		queue_msg_free(msgs[i]);
	free(msgs);
}

static long long queue_num(const char *s)
{
	return s != NULL ? strtoll(s, NULL, 10) : 0;
}

/* Fill one recipient field ("r3", "s3", ...) if the index is in range. */
static int queue_msg_rcpt_field(struct queue_msg *m, const char *f,
    const char *v, size_t vl)
{
	char *end;
	unsigned long i = strtoul(f + 1, &end, 10);
	struct queue_rcpt *r;
	char **slot = NULL;

	if (*end != '\0' || end == f + 1 || i >= m->env.nrcpt)
		return 0;
	r = &m->env.rcpts[i];
	switch (f[0]) {
	case 'r': slot = &r->addr; break;
	case 'o': slot = &r->orcpt; break;
	case 'e': slot = &r->error; break;
	case 's': r->state = (int)queue_num(v); return 0;
	case 'a': r->attempts = (int)queue_num(v); return 0;
	default: return 0;
	}
	free(*slot);
	*slot = queue_dupn(v, vl);
	return *slot == NULL ? -1 : 0;
}

static int queue_msg_field(struct queue_msg *m, const char *f, const char *v,
    size_t vl)
{
	char **slot = NULL;

	if (strcmp(f, "qid") == 0)
		snprintf(m->env.qid, sizeof(m->env.qid), "%s", v);
	else if (strcmp(f, "sender") == 0)
		slot = &m->env.sender;
	else if (strcmp(f, "client_name") == 0)
		slot = &m->env.client_name;
	else if (strcmp(f, "client_addr") == 0)
		slot = &m->env.client_addr;
	else if (strcmp(f, "helo") == 0)
		slot = &m->env.helo;
	else if (strcmp(f, "proto") == 0)
		slot = &m->env.proto;
	else if (strcmp(f, "last_error") == 0)
		slot = &m->last_error;
	else if (strcmp(f, "arrival") == 0)
		m->env.arrival = (long)queue_num(v);
	else if (strcmp(f, "size") == 0)
		m->len = (size_t)queue_num(v);
	else if (strcmp(f, "smtputf8") == 0)
		m->env.smtputf8 = (int)queue_num(v);
	else if (strcmp(f, "body8bit") == 0)
		m->env.body8bit = (int)queue_num(v);
	else if (strcmp(f, "next") == 0)
		m->next_ms = queue_num(v);
	else if (strcmp(f, "attempts") == 0)
		m->attempts = (int)queue_num(v);
	else if (strcmp(f, "state") == 0)
		m->state = strcmp(v, "hold") == 0 ? QUEUE_ST_HOLD :
		    strcmp(v, "deferred") == 0 ? QUEUE_ST_DEFERRED :
		    QUEUE_ST_ACTIVE;
	else if (f[0] != '\0' && strchr("roesa", f[0]) != NULL &&
	    f[1] >= '0' && f[1] <= '9')
		return queue_msg_rcpt_field(m, f, v, vl);
	if (slot == NULL)
		return 0;
	free(*slot);
	*slot = queue_dupn(v, vl);
	return *slot == NULL ? -1 : 0;
}

/* Decode an HGETALL reply. nrcpt first, so the recipient array exists
 * before its fields arrive in whatever order. */
static struct queue_msg *queue_msg_decode(const redisReply *h,
    struct err *err)
{
	struct queue_msg *m;
	size_t i, n = 0;

	if (h == NULL || h->type != REDIS_REPLY_ARRAY || h->elements % 2) {
		err_set(err, 1, "queue: malformed message record");
		return NULL;
	}
	for (i = 0; i + 1 < h->elements; i += 2)
		if (strcmp(h->element[i]->str, "nrcpt") == 0)
			n = (size_t)queue_num(h->element[i + 1]->str);
	if (n == 0 || n > 100000) {
		err_set(err, 1, "queue: message record without recipients");
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL || (m->env.rcpts = calloc(n, sizeof(*m->env.rcpts))) == NULL)
		goto oom;
	m->env.nrcpt = n;
	for (i = 0; i + 1 < h->elements; i += 2)
		if (queue_msg_field(m, h->element[i]->str,
		    h->element[i + 1]->str, h->element[i + 1]->len) < 0)
			goto oom;
	for (i = 0; i < n; i++)
		if (m->env.rcpts[i].addr == NULL) {
			err_set(err, 1, "queue %s: recipient %zu missing",
			    m->env.qid, i);
			queue_msg_free(m);
			return NULL;
		}
	if (m->env.sender == NULL && (m->env.sender = strdup("")) == NULL)
		goto oom;
	return m;
oom:
	queue_msg_free(m);
	err_set(err, 1, "out of memory");
	return NULL;
}

/* ---- asynchronous side -------------------------------------------------- */

struct queue *queue_new(struct event_base *base, struct redisc *r,
    const char *name, struct err *err)
{
	struct queue *q;
	char prefix[64];

	if (queue_prefix(prefix, sizeof(prefix), name, err) < 0)
		return NULL;
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	q->base = base;
	q->r = r;
	memcpy(q->prefix, prefix, sizeof(prefix));
	q->wait_replicas = (int)var_queue_wait_replicas;
	q->wait_timeout_ms = (int)var_queue_wait_timeout * 1000;
	if (redisc_script_add(r, queue_lua_put, q->sha_put) < 0 ||
	    redisc_script_add(r, queue_lua_claim, q->sha_claim) < 0 ||
	    redisc_script_add(r, queue_lua_finish, q->sha_finish) < 0) {
		free(q);
		err_set(err, 1, "out of memory");
		return NULL;
	}
	return q;
}

void queue_free(struct queue *q)
{
	free(q);
}

void queue_set_wait_replicas(struct queue *q, int n, int timeout_ms)
{
	q->wait_replicas = n;
	q->wait_timeout_ms = timeout_ms;
}

void queue_set_notify(struct queue *q, void (*fn)(void *arg), void *arg)
{
	q->notify = fn;
	q->notify_arg = arg;
}

struct queue_op {
	struct queue *q;
	queue_put_cb *cb;
	void *arg;
	queue_claim_cb *claim_cb;
	char qid[QUEUE_QID_LEN];
};

static struct queue_op *queue_op_new(struct queue *q, queue_put_cb *cb,
    void *arg)
{
	struct queue_op *op = calloc(1, sizeof(*op));

	if (op != NULL) {
		op->q = q;
		op->cb = cb;
		op->arg = arg;
	}
	return op;
}

/* Report a failure found before anything was sent, from the loop. */
struct queue_fail {
	queue_put_cb *cb;
	void *arg;
	struct err err;
};

static void queue_fail_run(evutil_socket_t fd, short what, void *arg)
{
	struct queue_fail *f = arg;

	f->cb(f->arg, 0, &f->err);
	free(f);
}

static void queue_fail_later(struct queue *q, queue_put_cb *cb, void *arg,
    const struct err *err)
{
	struct queue_fail *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return;   /* no memory to even report; nothing better to do */
	f->cb = cb;
	f->arg = arg;
	f->err = *err;
	f->err.temp = 1;
	event_base_once(q->base, -1, EV_TIMEOUT, queue_fail_run, f, NULL);
}

static void queue_put_finish(struct queue_op *op, int ok,
    const struct err *err)
{
	struct queue *q = op->q;

	op->cb(op->arg, ok, err);
	if (ok && q->notify != NULL)
		q->notify(q->notify_arg);
	free(op);
}

static void queue_put_unwound(struct redisc *r, struct redisReply *reply,
    void *arg)
{
	free(arg);
}

static void queue_put_waited(struct redisc *r, struct redisReply *reply,
    void *arg)
{
	struct queue_op *op = arg;
	struct queue *q = op->q;
	struct err err;
	char k1[128], k2[128], k3[128], k4[128];
	const char *argv[8];

	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER &&
	    reply->integer >= q->wait_replicas) {
		queue_put_finish(op, 1, NULL);
		return;
	}
	err_set(&err, 1, "queue %s: only %lld of %d replicas confirmed",
	    op->qid, reply != NULL && reply->type == REDIS_REPLY_INTEGER ?
	    reply->integer : -1LL, q->wait_replicas);
	/* The client will be told 4xx and send again: take this copy back
	 * so the retry does not make a duplicate. */
	queue_key(k1, sizeof(k1), q->prefix, "m:", op->qid);
	queue_key(k2, sizeof(k2), q->prefix, "d:", op->qid);
	queue_key(k3, sizeof(k3), q->prefix, "sched", NULL);
	argv[0] = "EVAL"; argv[1] = queue_lua_delete; argv[2] = "4";
	argv[3] = k1; argv[4] = k2; argv[5] = k3;
	queue_key(k4, sizeof(k4), q->prefix, "hold", NULL);
	argv[6] = k4; argv[7] = op->qid;
	redisc_command_argv(q->r, queue_put_unwound, NULL, 8, argv, NULL);
	queue_put_finish(op, 0, &err);
}

static void queue_put_done(struct redisc *r, struct redisReply *reply,
    void *arg)
{
	struct queue_op *op = arg;
	struct queue *q = op->q;
	struct err err;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		redisc_reply_err(reply, "queue_put", &err);
		queue_put_finish(op, 0, &err);
		return;
	}
	if (q->wait_replicas > 0) {
		if (redisc_command(q->r, queue_put_waited, op, "WAIT %d %d",
		    q->wait_replicas, q->wait_timeout_ms) < 0)
			return;   /* queue_put_waited runs with NULL */
		return;
	}
	queue_put_finish(op, 1, NULL);
}

void queue_put(struct queue *q, const struct queue_env *env,
    const char *data, size_t len, queue_put_cb *cb, void *arg)
{
	struct queue_argv a;
	struct queue_op *op;
	struct err err;

	memset(&a, 0, sizeof(a));
	op = queue_op_new(q, cb, arg);
	if (op == NULL) {
		err_set(&err, 1, "out of memory");
		queue_fail_later(q, cb, arg, &err);
		return;
	}
	if (queue_build_put(&a, q->prefix, q->sha_put, env, data, len, &err) < 0) {
		queue_argv_free(&a);
		free(op);
		queue_fail_later(q, cb, arg, &err);
		return;
	}
	snprintf(op->qid, sizeof(op->qid), "%s", env->qid);
	/* On failure to send, redisc calls queue_put_done with NULL later. */
	redisc_command_argv(q->r, queue_put_done, op, a.n, a.v, a.len);
	queue_argv_free(&a);
}

/* claim: the Lua script leases, then each leased message is read with
 * HGETALL and GET, sent together on the same connection. A message whose
 * record is gone by then (deleted meanwhile), does not decode, or carries
 * another lease is left out: what is still leased comes back after the
 * lease, as after a crash, and mailq shows it. */

struct queue_claim_op;

struct queue_claim_slot {
	struct queue_claim_op *op;
	char qid[QUEUE_QID_LEN];
	char tok[24];
	struct queue_msg *m;    /* from HGETALL; NULL: left out */
	char *data;             /* from GET */
	size_t len;
	int data_ok;
};

struct queue_claim_op {
	queue_claim_cb *cb;
	void *arg;
	char prefix[64];                 /* the queue's "mq:NAME:" */
	size_t n, pending;
	struct queue_claim_slot *slot;   /* n of them */
};

static void queue_claim_op_done(struct queue_claim_op *op)
{
	struct queue_msg **msgs = NULL;
	size_t i, k = 0;

	if (op->n > 0)
		msgs = calloc(op->n, sizeof(*msgs));
	for (i = 0; i < op->n; i++) {
		struct queue_claim_slot *sl = &op->slot[i];

		if (msgs != NULL && sl->m != NULL && sl->data_ok) {
			sl->m->lease = queue_num(sl->tok);
			sl->m->data = sl->data;
			sl->m->len = sl->len;
			msgs[k++] = sl->m;
		} else {
			queue_msg_free(sl->m);
			free(sl->data);
		}
	}
	op->cb(op->arg, msgs, k, NULL);
	free(op->slot);
	free(op);
}

static void queue_claim_fetched(struct queue_claim_op *op)
{
	if (--op->pending == 0)
		queue_claim_op_done(op);
}

static void queue_claim_hash_done(struct redisc *r, struct redisReply *reply,
    void *arg)
{
	struct queue_claim_slot *sl = arg;
	const char *lease = NULL;
	struct err err;
	size_t i;

	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
	    reply->elements > 0) {
		for (i = 0; i + 1 < reply->elements; i += 2)
			if (reply->element[i]->type == REDIS_REPLY_STRING &&
			    strcmp(reply->element[i]->str, "lease") == 0 &&
			    reply->element[i + 1]->type == REDIS_REPLY_STRING)
				lease = reply->element[i + 1]->str;
		/* taken over already (a lease shorter than this round trip)
		 * or released and claimed again: not ours */
		if (lease != NULL && strcmp(lease, sl->tok) == 0)
			sl->m = queue_msg_decode(reply, &err);
	}
	queue_claim_fetched(sl->op);
}

static void queue_claim_data_done(struct redisc *r, struct redisReply *reply,
    void *arg)
{
	struct queue_claim_slot *sl = arg;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
		sl->data = queue_dupn(reply->str, reply->len);
		sl->len = reply->len;
		sl->data_ok = sl->data != NULL;
	} else if (reply != NULL && reply->type == REDIS_REPLY_NIL) {
		/* as the Lua claim had it: a record without data is sent
		 * empty rather than left leased for ever */
		sl->data = queue_dupn("", 0);
		sl->data_ok = sl->data != NULL;
	}
	queue_claim_fetched(sl->op);
}

static void queue_claim_done(struct redisc *r, struct redisReply *reply,
    void *arg)
{
	struct queue_claim_op *op = arg;
	struct err err;
	size_t i;

	err_clear(&err);
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements % 2 != 0) {
		if (reply != NULL && reply->type == REDIS_REPLY_ARRAY)
			err_set(&err, 1, "queue: malformed claim reply");
		else
			redisc_reply_err(reply, "queue claim", &err);
		op->cb(op->arg, NULL, 0, &err);
		free(op);
		return;
	}
	op->n = reply->elements / 2;
	if (op->n == 0) {
		queue_claim_op_done(op);
		return;
	}
	op->slot = calloc(op->n, sizeof(*op->slot));
	if (op->slot == NULL) {
		/* the leases bring them back */
		op->n = 0;
		queue_claim_op_done(op);
		return;
	}
	for (i = 0; i < op->n; i++) {
		const redisReply *id = reply->element[2 * i];
		const redisReply *tok = reply->element[2 * i + 1];
		struct queue_claim_slot *sl = &op->slot[i];

		sl->op = op;
		if (id->type != REDIS_REPLY_STRING || !queue_qid_valid(id->str) ||
		    id->len >= sizeof(sl->qid) || tok->type != REDIS_REPLY_STRING ||
		    tok->len >= sizeof(sl->tok))
			continue;   /* left out: m stays NULL */
		memcpy(sl->qid, id->str, id->len + 1);
		memcpy(sl->tok, tok->str, tok->len + 1);
	}
	/* one count for this loop, so that no completion can come before
	 * every fetch is sent (callbacks never run inside redisc_command*,
	 * but a slot left out completes here) */
	op->pending = 1;
	for (i = 0; i < op->n; i++) {
		struct queue_claim_slot *sl = &op->slot[i];
		char mk[sizeof(op->prefix) + QUEUE_QID_LEN + 2];
		char dk[sizeof(mk)];
		const char *hv[2] = { "HGETALL", mk };
		const char *gv[2] = { "GET", dk };

		if (sl->qid[0] == '\0')
			continue;
		snprintf(mk, sizeof(mk), "%sm:%s", op->prefix, sl->qid);
		snprintf(dk, sizeof(dk), "%sd:%s", op->prefix, sl->qid);
		op->pending += 2;
		/* -1: out of memory, and no callback will come */
		if (redisc_command_argv(r, queue_claim_hash_done, sl, 2, hv,
		    NULL) < 0)
			queue_claim_fetched(op);
		if (redisc_command_argv(r, queue_claim_data_done, sl, 2, gv,
		    NULL) < 0)
			queue_claim_fetched(op);
	}
	queue_claim_fetched(op);
}

void queue_claim(struct queue *q, size_t max, int lease_seconds,
    queue_claim_cb *cb, void *arg)
{
	struct queue_claim_op *op = calloc(1, sizeof(*op));
	char now[32], until[32], maxs[32];
	long long t = queue_now_ms();
	const char *argv[7] = { "EVALSHA", q->sha_claim, "0", q->prefix, now,
	    until, maxs };

	if (op == NULL) {
		struct err err;
		err_set(&err, 1, "out of memory");
		cb(arg, NULL, 0, &err);
		return;
	}
	op->cb = cb;
	op->arg = arg;
	memcpy(op->prefix, q->prefix, sizeof(op->prefix));
	snprintf(now, sizeof(now), "%lld", t);
	snprintf(until, sizeof(until), "%lld", t + lease_seconds * 1000LL);
	snprintf(maxs, sizeof(maxs), "%zu", max > 0 ? max : 1);
	redisc_command_argv(q->r, queue_claim_done, op, 7, argv, NULL);
}

/* renew / finish: integer 1 = ok, 0 = lease lost */

static void queue_lease_done(struct redisc *r, struct redisReply *reply,
    void *arg)
{
	struct queue_op *op = arg;
	struct err err;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		redisc_reply_err(reply, "queue update", &err);
		op->cb(op->arg, 0, &err);
	} else if (reply->integer != 1) {
		err_set(&err, 0, "queue %s: lease lost (taken over, held or "
		    "deleted)", op->qid);
		op->cb(op->arg, 0, &err);
	} else {
		op->cb(op->arg, 1, NULL);
	}
	free(op);
}

void queue_renew(struct queue *q, const struct queue_msg *m,
    int lease_seconds, queue_put_cb *cb, void *arg)
{
	struct queue_op *op = queue_op_new(q, cb, arg);
	char k1[128], k2[128], tok[32], until[32];
	const char *argv[8] = { "EVAL", queue_lua_renew, "2", k1, k2, tok,
	    until, m->env.qid };
	struct err err;

	if (op == NULL) {
		err_set(&err, 1, "out of memory");
		queue_fail_later(q, cb, arg, &err);
		return;
	}
	snprintf(op->qid, sizeof(op->qid), "%s", m->env.qid);
	queue_key(k1, sizeof(k1), q->prefix, "m:", m->env.qid);
	queue_key(k2, sizeof(k2), q->prefix, "sched", NULL);
	snprintf(tok, sizeof(tok), "%lld", m->lease);
	snprintf(until, sizeof(until), "%lld",
	    queue_now_ms() + lease_seconds * 1000LL);
	redisc_command_argv(q->r, queue_lease_done, op, 8, argv, NULL);
}

void queue_finish(struct queue *q, const struct queue_msg *m,
    long long next_ms, queue_put_cb *cb, void *arg)
{
	struct queue_op *op = queue_op_new(q, cb, arg);
	struct queue_argv a;
	struct err err;
	char k[128], f[32];
	size_t i;
	int alldone = 1;

	memset(&a, 0, sizeof(a));
	if (op == NULL) {
		err_set(&err, 1, "out of memory");
		queue_fail_later(q, cb, arg, &err);
		return;
	}
	snprintf(op->qid, sizeof(op->qid), "%s", m->env.qid);
	for (i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpts[i].state == QUEUE_RCPT_PENDING)
			alldone = 0;
	queue_argv_script(&a, queue_lua_finish, q->sha_finish, 4);
	queue_key(k, sizeof(k), q->prefix, "m:", m->env.qid);
	queue_argv_add(&a, k);
	queue_key(k, sizeof(k), q->prefix, "d:", m->env.qid);
	queue_argv_add(&a, k);
	queue_key(k, sizeof(k), q->prefix, "sched", NULL);
	queue_argv_add(&a, k);
	queue_key(k, sizeof(k), q->prefix, "hold", NULL);
	queue_argv_add(&a, k);
	queue_argv_addf(&a, "%lld", m->lease);
	queue_argv_add(&a, m->env.qid);
	queue_argv_addf(&a, "%lld", next_ms);
	queue_argv_add(&a, alldone ? "1" : "0");
	queue_argv_pairf(&a, "attempts", "%d", m->attempts);
	queue_argv_pair(&a, "last_error", m->last_error);
	for (i = 0; !alldone && i < m->env.nrcpt; i++) {
		const struct queue_rcpt *rc = &m->env.rcpts[i];
		snprintf(f, sizeof(f), "s%zu", i);
		queue_argv_pairf(&a, f, "%d", rc->state);
		snprintf(f, sizeof(f), "a%zu", i);
		queue_argv_pairf(&a, f, "%d", rc->attempts);
		snprintf(f, sizeof(f), "e%zu", i);
		queue_argv_pair(&a, f, rc->error);
	}
	if (a.oom) {
		queue_argv_free(&a);
		free(op);
		err_set(&err, 1, "out of memory");
		queue_fail_later(q, cb, arg, &err);
		return;
	}
	redisc_command_argv(q->r, queue_lease_done, op, a.n, a.v, a.len);
	queue_argv_free(&a);
}

/* ---- synchronous administration ---------------------------------------- */

static int queue_sync_int(redisContext *c, struct queue_argv *a,
    const char *what, struct err *err)
{
	redisReply *rep;
	long long v;

	if (a->oom) {
		queue_argv_free(a);
		return err_set(err, 1, "out of memory");
	}
	rep = redisCommandArgv(c, a->n, a->v, a->len);
	queue_argv_free(a);
	if (rep == NULL)
		return err_set(err, 1, "%s: Redis: %s", what, c->errstr);
	if (rep->type != REDIS_REPLY_INTEGER) {
		redisc_reply_err(rep, what, err);
		freeReplyObject(rep);
		return -1;
	}
	v = rep->integer;
	freeReplyObject(rep);
	return (int)v;
}

int queue_sync_put(redisContext *c, const char *name,
    const struct queue_env *env, const char *data, size_t len,
    struct err *err)
{
	struct queue_argv a;
	char prefix[64];

	memset(&a, 0, sizeof(a));
	if (queue_prefix(prefix, sizeof(prefix), name, err) < 0)
		return -1;
	if (queue_build_put(&a, prefix, NULL, env, data, len, err) < 0) {
		queue_argv_free(&a);
		return -1;
	}
	return queue_sync_int(c, &a, "queue put", err) < 0 ? -1 : 0;
}

/* EVAL script with the usual message keys (msg, data, sched, hold, as
 * many as nkeys) and the given ARGV. */
static int queue_sync_script(redisContext *c, const char *name,
    const char *qid, const char *script, const char *const *keys, int nkeys,
    const char *argv1, const char *what, struct err *err)
{
	struct queue_argv a;
	char prefix[64], k[128];
	int i;

	memset(&a, 0, sizeof(a));
	if (queue_prefix(prefix, sizeof(prefix), name, err) < 0)
		return -1;
	if (!queue_qid_valid(qid))
		return err_set(err, 0, "bad queue id");
	queue_argv_eval(&a, script, nkeys);
	for (i = 0; i < nkeys; i++) {
		queue_key(k, sizeof(k), prefix, keys[i],
		    keys[i][strlen(keys[i]) - 1] == ':' ? qid : NULL);
		queue_argv_add(&a, k);
	}
	queue_argv_add(&a, qid);
	if (argv1 != NULL)
		queue_argv_add(&a, argv1);
	return queue_sync_int(c, &a, what, err);
}

int queue_sync_delete(redisContext *c, const char *name, const char *qid,
    struct err *err)
{
	static const char *const keys[] = { "m:", "d:", "sched", "hold" };

	return queue_sync_script(c, name, qid, queue_lua_delete, keys, 4,
	    NULL, "queue delete", err);
}

int queue_sync_hold(redisContext *c, const char *name, const char *qid,
    struct err *err)
{
	static const char *const keys[] = { "m:", "sched", "hold" };

	return queue_sync_script(c, name, qid, queue_lua_hold, keys, 3,
	    NULL, "queue hold", err);
}

int queue_sync_release(redisContext *c, const char *name, const char *qid,
    struct err *err)
{
	static const char *const keys[] = { "m:", "sched", "hold" };
	char now[32];

	snprintf(now, sizeof(now), "%lld", queue_now_ms());
	return queue_sync_script(c, name, qid, queue_lua_release, keys, 3,
	    now, "queue release", err);
}

int queue_sync_flush(redisContext *c, const char *name, const char *qid,
    struct err *err)
{
	struct queue_argv a;
	char prefix[64];

	memset(&a, 0, sizeof(a));
	if (queue_prefix(prefix, sizeof(prefix), name, err) < 0)
		return -1;
	if (qid != NULL && !queue_qid_valid(qid))
		return err_set(err, 0, "bad queue id");
	queue_argv_eval(&a, queue_lua_flush, 0);
	queue_argv_add(&a, prefix);
	queue_argv_addf(&a, "%lld", queue_now_ms());
	queue_argv_add(&a, qid != NULL ? qid : "");
	return queue_sync_int(c, &a, "queue flush", err);
}

int queue_sync_counts(redisContext *c, const char *name,
    struct queue_counts *r, struct err *err)
{
	char prefix[64];
	redisReply *rep;

	memset(r, 0, sizeof(*r));
	if (queue_prefix(prefix, sizeof(prefix), name, err) < 0)
		return -1;
	rep = redisCommand(c, "EVAL %s 0 %s", queue_lua_counts, prefix);
	if (rep == NULL)
		return err_set(err, 1, "queue counts: Redis: %s", c->errstr);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
		redisc_reply_err(rep, "queue counts", err);
		freeReplyObject(rep);
		return -1;
	}
	r->active = (long)rep->element[0]->integer;
	r->deferred = (long)rep->element[1]->integer;
	r->hold = (long)rep->element[2]->integer;
	r->total = r->active + r->deferred + r->hold;
	freeReplyObject(rep);
	return 0;
}

/* Read one message's hash (and data when want_data) through a pipeline
 * already sent: HGETALL then GET or STRLEN. 1, 0 (gone), -1. */
static int queue_sync_read_msg(redisContext *c, int want_data,
    struct queue_msg **m_r, struct err *err)
{
	redisReply *h = NULL, *d = NULL;
	int rc = -1;

	*m_r = NULL;
	if (redisGetReply(c, (void **)&h) != REDIS_OK ||
	    redisGetReply(c, (void **)&d) != REDIS_OK) {
		err_set(err, 1, "queue read: Redis: %s", c->errstr);
		goto out;
	}
	if (h->type == REDIS_REPLY_ARRAY && h->elements == 0) {
		rc = 0;
		goto out;
	}
	*m_r = queue_msg_decode(h, err);
	if (*m_r == NULL)
		goto out;
	if (want_data && d->type == REDIS_REPLY_STRING) {
		(*m_r)->data = queue_dupn(d->str, d->len);
		(*m_r)->len = d->len;
	} else if (!want_data && d->type == REDIS_REPLY_INTEGER) {
		(*m_r)->len = (size_t)d->integer;
	}
	rc = 1;
out:
	freeReplyObject(h);
	freeReplyObject(d);
	return rc;
}

int queue_sync_show(redisContext *c, const char *name, const char *qid,
    struct queue_msg **m_r, struct err *err)
{
	char prefix[64];

	*m_r = NULL;
	if (queue_prefix(prefix, sizeof(prefix), name, err) < 0)
		return -1;
	if (!queue_qid_valid(qid))
		return err_set(err, 0, "bad queue id");
	redisAppendCommand(c, "HGETALL %sm:%s", prefix, qid);
	redisAppendCommand(c, "GET %sd:%s", prefix, qid);
	return queue_sync_read_msg(c, 1, m_r, err);
}

static int queue_sync_ids(redisContext *c, const char *prefix,
    redisReply **sched_r, redisReply **hold_r, struct err *err)
{
	*sched_r = redisCommand(c, "ZRANGE %ssched 0 -1", prefix);
	*hold_r = *sched_r != NULL ?
	    redisCommand(c, "SMEMBERS %shold", prefix) : NULL;
	if (*sched_r == NULL || *hold_r == NULL)
		return err_set(err, 1, "queue list: Redis: %s", c->errstr);
	if ((*sched_r)->type != REDIS_REPLY_ARRAY ||
	    (*hold_r)->type != REDIS_REPLY_ARRAY)
		return redisc_reply_err((*sched_r)->type != REDIS_REPLY_ARRAY ?
		    *sched_r : *hold_r, "queue list", err);
	return 0;
}

int queue_sync_list(redisContext *c, const char *name,
    struct queue_msg ***msgs_r, size_t *n_r, struct err *err)
{
	char prefix[64];
	redisReply *sched = NULL, *hold = NULL, *ids[2];
	struct queue_msg **msgs = NULL;
	size_t i, j, total, n = 0;
	int rc = -1, k;

	*msgs_r = NULL;
	*n_r = 0;
	if (queue_prefix(prefix, sizeof(prefix), name, err) < 0)
		return -1;
	if (queue_sync_ids(c, prefix, &sched, &hold, err) < 0)
		goto out;
	ids[0] = sched;
	ids[1] = hold;
	total = sched->elements + hold->elements;
	msgs = calloc(total ? total : 1, sizeof(*msgs));
	if (msgs == NULL) {
		err_set(err, 1, "out of memory");
		goto out;
	}
	for (k = 0; k < 2; k++)
		for (j = 0; j < ids[k]->elements; j++) {
			redisAppendCommand(c, "HGETALL %sm:%b", prefix,
			    ids[k]->element[j]->str, ids[k]->element[j]->len);
			redisAppendCommand(c, "STRLEN %sd:%b", prefix,
			    ids[k]->element[j]->str, ids[k]->element[j]->len);
		}
	for (i = 0; i < total; i++) {
		struct queue_msg *m;
		int r = queue_sync_read_msg(c, 0, &m, err);
		if (r < 0 && m == NULL && c->err)
			goto out;
		if (r == 1)
			msgs[n++] = m;
	}
	rc = 0;
out:
	freeReplyObject(sched);
	freeReplyObject(hold);
	if (rc < 0) {
		queue_msgs_free(msgs, n);
		return -1;
	}
	*msgs_r = msgs;
	*n_r = n;
	return 0;
}

const char *queue_state_name(enum queue_state s)
{
	switch (s) {
	case QUEUE_ST_ACTIVE: return "active";
	case QUEUE_ST_DEFERRED: return "deferred";
	case QUEUE_ST_HOLD: return "hold";
	}
	return "?";
}

const char *queue_rcpt_state_name(int state)
{
	switch (state) {
	case QUEUE_RCPT_PENDING: return "pending";
	case QUEUE_RCPT_DONE: return "done";
	case QUEUE_RCPT_FAILED: return "failed";
	}
	return "?";
}
