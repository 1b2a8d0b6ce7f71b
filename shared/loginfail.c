/* loginfail: failed-login counters and the penalty rule (see loginfail.h).
 *
 * Why delays and not a ban of the address: behind one NAT a single phone
 * with an old password would lock out everyone (issue 11). So a delay grows
 * with the failures of the (address, user) pair, as Dovecot's auth penalty
 * does; the address as a whole is slowed only when many different names
 * fail there (password spraying), and refused only for the names that
 * failed, and only while it floods (Postfix anvil's per-time-unit rate).
 * Bans are fail2ban's job, from the log lines written here.
 *
 * Three counters per address, the same in Redis and in memory:
 *   loginfail:p:ADDR|user  failures of the pair; the expiry slides (each
 *                          failure restarts window_ms); a success deletes it
 *   loginfail:u:ADDR       pairs that failed for the first time, in a fixed
 *                          window_ms from the first one
 *   loginfail:r:ADDR       failures in a fixed rate_ms window (anvil)
 * Fixed windows end by themselves, so a refusal never outlives rate_ms,
 * and a stale client that keeps failing cannot keep the user count up.
 * Every write is one Lua script: a crash between INCR and PEXPIRE could
 * otherwise leave a counter that never expires. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include "log.h"
#include "loginfail.h"
#include "redisc.h"

#define LOGINFAIL_KEY_SIZE   160   /* memory key; longer user names are cut */
#define LOGINFAIL_RKEY_SIZE  400   /* Redis key */
#define LOGINFAIL_USER_MAX   256   /* bytes of a user name that count */
#define LOGINFAIL_ADDR_SIZE  64
#define LOGINFAIL_LOG_MAX    100   /* characters of a client string logged */
#define LOGINFAIL_PREFIX     "loginfail:"

static long var_auth_failure_delay = 2, var_auth_failure_delay_max = 15,
	var_auth_failure_window = 600, var_auth_failure_address_users = 3,
	var_smtpd_client_auth_rate_limit = 30, var_anvil_rate_time_unit = 60,
	var_auth_failure_table_size = 10000;

const struct cfg_param loginfail_params[] = {
	{ "auth_failure_delay", CFG_TIME, "2s", &var_auth_failure_delay,
	  0, 60 },
	{ "auth_failure_delay_max", CFG_TIME, "15s",
	  &var_auth_failure_delay_max, 0, 60 },
	{ "auth_failure_window", CFG_TIME, "10m", &var_auth_failure_window,
	  1, 86400 },
	{ "auth_failure_address_users", CFG_INT, "3",
	  &var_auth_failure_address_users, 0, 1000 },
	{ "smtpd_client_auth_rate_limit", CFG_INT, "30",
	  &var_smtpd_client_auth_rate_limit, 0, 1000000 },
	{ "anvil_rate_time_unit", CFG_TIME, "60s", &var_anvil_rate_time_unit,
	  1, 3600 },
	{ "auth_failure_table_size", CFG_INT, "10000",
	  &var_auth_failure_table_size, 16, 1000000 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};

void loginfail_settings_from_params(struct loginfail_settings *set)
{
	set->delay_ms = (unsigned)var_auth_failure_delay * 1000;
	set->delay_max_ms = (unsigned)var_auth_failure_delay_max * 1000;
	set->window_ms = (unsigned)var_auth_failure_window * 1000;
	set->address_users = (unsigned)var_auth_failure_address_users;
	set->rate_limit = (unsigned)var_smtpd_client_auth_rate_limit;
	set->rate_ms = (unsigned)var_anvil_rate_time_unit * 1000;
	set->table_size = (unsigned)var_auth_failure_table_size;
}

/* ---- the rule ----------------------------------------------------------- */

/* step << (n - 1), capped, without overflow. */
static unsigned loginfail_doubled(unsigned step, unsigned n, unsigned cap)
{
	unsigned long long d = step;

	if (n == 0 || step == 0)
		return 0;
	while (--n > 0 && d < cap)
		d *= 2;
	return d > cap ? cap : (unsigned)d;
}

void loginfail_decide(const struct loginfail_settings *set,
    unsigned pair_fails, unsigned address_users, unsigned address_rate,
    struct loginfail_answer *a_r)
{
	unsigned pair, addr = 0;

	memset(a_r, 0, sizeof(*a_r));
	a_r->pair_fails = pair_fails;
	a_r->address_users = address_users;
	a_r->address_rate = address_rate;
	pair = loginfail_doubled(set->delay_ms, pair_fails, set->delay_max_ms);
	if (address_users > set->address_users)
		addr = loginfail_doubled(set->delay_ms,
		    address_users - set->address_users, set->delay_max_ms);
	a_r->delay_ms = pair > addr ? pair : addr;
	a_r->verdict = set->rate_limit > 0 && address_rate >= set->rate_limit &&
	    pair_fails > 0 ? LOGINFAIL_TEMP_REFUSE : LOGINFAIL_OK;
}

/* ---- keys --------------------------------------------------------------- */

/* The counting unit of an address: IPv4 as is, IPv4-mapped IPv6 as IPv4,
 * other IPv6 per /64 (one site or one phone gets a whole /64, so counting
 * single addresses would let it rotate them). Anything else is cleaned. */
static void loginfail_addr_norm(const char *addr, char *out, size_t n)
{
	struct in6_addr a6;
	struct in_addr a4;
	size_t i, o = 0;

	if (addr == NULL)
		addr = "";
	if (inet_pton(AF_INET, addr, &a4) == 1 &&
	    inet_ntop(AF_INET, &a4, out, (socklen_t)n) != NULL)
		return;
	if (inet_pton(AF_INET6, addr, &a6) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			memcpy(&a4, &a6.s6_addr[12], 4);
			if (inet_ntop(AF_INET, &a4, out, (socklen_t)n) != NULL)
				return;
		}
		memset(&a6.s6_addr[8], 0, 8);
		if (inet_ntop(AF_INET6, &a6, out, (socklen_t)n) != NULL &&
		    strlen(out) + 4 <= n) {
			memcpy(out + strlen(out), "/64", 4);
			return;
		}
	}
	for (i = 0; addr[i] != '\0' && o + 1 < n && o < 48; i++) {
		char c = addr[i];

		out[o++] = ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || c == '.' || c == ':' ||
		    c == '-' || c == '_') ? c : '?';
	}
	out[o] = '\0';
}

struct loginfail_keys {
	char addr[LOGINFAIL_ADDR_SIZE];
	char p[LOGINFAIL_RKEY_SIZE], u[LOGINFAIL_RKEY_SIZE],
	     r[LOGINFAIL_RKEY_SIZE];
	size_t plen;              /* the pair key may hold any byte but NUL */
};

/* User names fold to lower case (texthash keys do too): "Alice" and
 * "alice" are one pair. */
static void loginfail_keys_make(struct loginfail_keys *k, const char *addr,
    const char *user)
{
	size_t i, n;

	loginfail_addr_norm(addr, k->addr, sizeof(k->addr));
	n = (size_t)snprintf(k->p, sizeof(k->p), LOGINFAIL_PREFIX "p:%s|",
	    k->addr);
	for (i = 0; user != NULL && user[i] != '\0' &&
	    i < LOGINFAIL_USER_MAX && n + 1 < sizeof(k->p); i++) {
		char c = user[i];

		k->p[n++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	k->p[n] = '\0';
	k->plen = n;
	snprintf(k->u, sizeof(k->u), LOGINFAIL_PREFIX "u:%s", k->addr);
	snprintf(k->r, sizeof(k->r), LOGINFAIL_PREFIX "r:%s", k->addr);
}

/* The pair key cut to the memory table's size: user names that long
 * share a count, which no real one is. */
static void loginfail_mem_key(const struct loginfail_keys *k,
    char out[LOGINFAIL_KEY_SIZE])
{
	size_t n = k->plen < LOGINFAIL_KEY_SIZE - 1 ? k->plen :
	    LOGINFAIL_KEY_SIZE - 1;

	memcpy(out, k->p, n);
	out[n] = '\0';
}

static uint64_t loginfail_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the memory table ----------------------------------------------------
 * A fixed array allocated once, a hash index and a list ordered by last
 * write; when full, the entry written longest ago goes. Nothing grows
 * under an attack from random addresses. The hash is SipHash-2-4 with a
 * random key, so a client cannot choose user names that pile up in one
 * bucket. Links are index + 1 (0: none). */

struct loginfail_ent {
	uint64_t expires_ms;
	uint32_t count;
	uint32_t hnext, newer, older;
	uint32_t bucket;
	char key[LOGINFAIL_KEY_SIZE];
};

struct loginfail_mem {
	struct loginfail_ent *ent;
	uint32_t *bucket;
	uint32_t cap, nbucket, used;
	uint32_t newest, oldest, free;
	uint8_t seed[16];
};

#define LOGINFAIL_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define LOGINFAIL_SIPROUND(v0, v1, v2, v3)                                \
	do {                                                              \
		v0 += v1; v1 = LOGINFAIL_ROTL(v1, 13); v1 ^= v0;          \
		v0 = LOGINFAIL_ROTL(v0, 32);                              \
		v2 += v3; v3 = LOGINFAIL_ROTL(v3, 16); v3 ^= v2;          \
		v0 += v3; v3 = LOGINFAIL_ROTL(v3, 21); v3 ^= v0;          \
		v2 += v1; v1 = LOGINFAIL_ROTL(v1, 17); v1 ^= v2;          \
		v2 = LOGINFAIL_ROTL(v2, 32);                              \
	} while (0)

static uint64_t loginfail_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t loginfail_siphash(const uint8_t seed[16], const char *in,
    size_t len)
{
	uint64_t k0 = loginfail_le64(seed), k1 = loginfail_le64(seed + 8);
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
	uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
	uint64_t v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t m, b = (uint64_t)len << 56;
	const uint8_t *p = (const uint8_t *)in;
	size_t i, left = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		m = loginfail_le64(p + i);
		v3 ^= m;
		LOGINFAIL_SIPROUND(v0, v1, v2, v3);
		LOGINFAIL_SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	for (i = 0; i < left; i++)
		b |= (uint64_t)p[len - left + i] << (8 * i);
	v3 ^= b;
	LOGINFAIL_SIPROUND(v0, v1, v2, v3);
	LOGINFAIL_SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (i = 0; i < 4; i++)
		LOGINFAIL_SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

static int loginfail_mem_init(struct loginfail_mem *m, unsigned cap)
{
	uint32_t i;

	memset(m, 0, sizeof(*m));
	m->cap = cap < 16 ? 16 : cap;
	for (m->nbucket = 16; m->nbucket < m->cap; m->nbucket *= 2)
		;
	m->ent = calloc(m->cap, sizeof(*m->ent));
	m->bucket = calloc(m->nbucket, sizeof(*m->bucket));
	if (m->ent == NULL || m->bucket == NULL)
		return -1;
	for (i = 0; i < m->cap; i++)
		m->ent[i].hnext = i + 2 <= m->cap ? i + 2 : 0;
	m->free = 1;
	if (getrandom(m->seed, sizeof(m->seed), 0) != sizeof(m->seed)) {
		uint64_t t = loginfail_now_ms() ^ (uint64_t)(uintptr_t)m;

		memcpy(m->seed, &t, sizeof(t));
	}
	return 0;
}

static void loginfail_mem_fini(struct loginfail_mem *m)
{
	free(m->ent);
	free(m->bucket);
	memset(m, 0, sizeof(*m));
}

static struct loginfail_ent *loginfail_mem_at(struct loginfail_mem *m,
    uint32_t link)
{
	return link != 0 ? &m->ent[link - 1] : NULL;
}

static void loginfail_mem_list_unlink(struct loginfail_mem *m, uint32_t i)
{
	struct loginfail_ent *e = loginfail_mem_at(m, i);

	if (e->newer != 0)
		loginfail_mem_at(m, e->newer)->older = e->older;
	else
		m->newest = e->older;
	if (e->older != 0)
		loginfail_mem_at(m, e->older)->newer = e->newer;
	else
		m->oldest = e->newer;
	e->newer = e->older = 0;
}

static void loginfail_mem_list_push(struct loginfail_mem *m, uint32_t i)
{
	struct loginfail_ent *e = loginfail_mem_at(m, i);

	e->older = m->newest;
	e->newer = 0;
	if (m->newest != 0)
		loginfail_mem_at(m, m->newest)->newer = i;
	m->newest = i;
	if (m->oldest == 0)
		m->oldest = i;
}

static void loginfail_mem_remove(struct loginfail_mem *m, uint32_t i)
{
	struct loginfail_ent *e = loginfail_mem_at(m, i);
	uint32_t *link = &m->bucket[e->bucket];

	while (*link != i)
		link = &loginfail_mem_at(m, *link)->hnext;
	*link = e->hnext;
	loginfail_mem_list_unlink(m, i);
	e->key[0] = '\0';
	e->hnext = m->free;
	m->free = i;
	m->used--;
}

/* The live entry for key, or 0 (an expired one is removed on the way). */
static uint32_t loginfail_mem_find(struct loginfail_mem *m, const char *key,
    uint64_t now, uint32_t *bucket_r)
{
	uint32_t b, i;
	struct loginfail_ent *e;

	b = (uint32_t)(loginfail_siphash(m->seed, key, strlen(key)) &
	    (m->nbucket - 1));
	*bucket_r = b;
	for (i = m->bucket[b]; i != 0; i = e->hnext) {
		e = loginfail_mem_at(m, i);
		if (strcmp(e->key, key) != 0)
			continue;
		if (e->expires_ms > now)
			return i;
		loginfail_mem_remove(m, i);
		return 0;
	}
	return 0;
}

static unsigned loginfail_mem_get(struct loginfail_mem *m, const char *key,
    uint64_t now)
{
	uint32_t b, i = loginfail_mem_find(m, key, now, &b);

	return i != 0 ? loginfail_mem_at(m, i)->count : 0;
}

/* A new entry: a free one, else the one written longest ago. */
static uint32_t loginfail_mem_alloc(struct loginfail_mem *m, const char *key,
    uint32_t b)
{
	struct loginfail_ent *e;
	uint32_t i;

	if (m->free == 0)
		loginfail_mem_remove(m, m->oldest);
	i = m->free;
	e = loginfail_mem_at(m, i);
	m->free = e->hnext;
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->count = 0;
	e->bucket = b;
	e->hnext = m->bucket[b];
	m->bucket[b] = i;
	loginfail_mem_list_push(m, i);
	m->used++;
	return i;
}

/* INCR with PEXPIRE ttl_ms: on every write when sliding, else only when
 * the entry is created (a fixed window). Returns the new count. */
static unsigned loginfail_mem_incr(struct loginfail_mem *m, const char *key,
    unsigned ttl_ms, int sliding, uint64_t now)
{
	uint32_t b, i = loginfail_mem_find(m, key, now, &b);
	struct loginfail_ent *e;

	if (i == 0) {
		i = loginfail_mem_alloc(m, key, b);
		loginfail_mem_at(m, i)->expires_ms = now + ttl_ms;
	} else {
		loginfail_mem_list_unlink(m, i);
		loginfail_mem_list_push(m, i);
	}
	e = loginfail_mem_at(m, i);
	if (sliding)
		e->expires_ms = now + ttl_ms;
	if (e->count < UINT32_MAX)
		e->count++;
	return e->count;
}

static void loginfail_mem_del(struct loginfail_mem *m, const char *key,
    uint64_t now)
{
	uint32_t b, i = loginfail_mem_find(m, key, now, &b);

	if (i != 0)
		loginfail_mem_remove(m, i);
}

/* ---- the module --------------------------------------------------------- */

struct loginfail_req {
	struct loginfail *lf;         /* NULL: orphaned while Redis has it */
	loginfail_cb *cb;
	void *ctx;
	uint64_t id;
	int in_redis;
	struct event *timer;
	struct loginfail_answer a;
	struct loginfail_keys k;
	struct loginfail_req *prev, *next;
};

struct loginfail {
	struct event_base *base;
	struct redisc *redis;
	struct loginfail_settings set;
	struct loginfail_mem mem;
	struct loginfail_req *reqs;
};

/* KEYS: pair, users, rate. ARGV: window_ms, rate_ms. A counter found
 * without expiry (only an operator could make one) gets it here. */
static const char loginfail_lua_fail[] =
	"local n = redis.call('INCR', KEYS[1]) "
	"redis.call('PEXPIRE', KEYS[1], ARGV[1]) "
	"if n == 1 then "
	"  local u = redis.call('INCR', KEYS[2]) "
	"  if u == 1 or redis.call('PTTL', KEYS[2]) < 0 then "
	"    redis.call('PEXPIRE', KEYS[2], ARGV[1]) end "
	"end "
	"local r = redis.call('INCR', KEYS[3]) "
	"if r == 1 or redis.call('PTTL', KEYS[3]) < 0 then "
	"  redis.call('PEXPIRE', KEYS[3], ARGV[2]) end "
	"return n";

struct loginfail *loginfail_new(struct event_base *base, struct redisc *redis,
    const struct loginfail_settings *set, struct err *err)
{
	struct loginfail *lf = calloc(1, sizeof(*lf));

	if (lf == NULL) {
		err_set(err, 1, "loginfail: out of memory");
		return NULL;
	}
	lf->base = base;
	lf->redis = redis;
	lf->set = *set;
	if (lf->set.delay_max_ms < lf->set.delay_ms)
		lf->set.delay_max_ms = lf->set.delay_ms;
	if (lf->set.window_ms == 0)
		lf->set.window_ms = 1;
	if (lf->set.rate_ms == 0)
		lf->set.rate_ms = 1;
	if (loginfail_mem_init(&lf->mem, set->table_size) < 0) {
		loginfail_mem_fini(&lf->mem);
		free(lf);
		err_set(err, 1, "loginfail: out of memory for %u entries",
		    set->table_size);
		return NULL;
	}
	return lf;
}

static void loginfail_req_unlink(struct loginfail_req *q)
{
	if (q->prev != NULL)
		q->prev->next = q->next;
	else if (q->lf != NULL)
		q->lf->reqs = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
}

static void loginfail_req_free(struct loginfail_req *q)
{
	if (q->timer != NULL)
		event_free(q->timer);
	free(q);
}

void loginfail_free(struct loginfail *lf)
{
	struct loginfail_req *q, *next;

	if (lf == NULL)
		return;
	for (q = lf->reqs; q != NULL; q = next) {
		next = q->next;
		q->prev = q->next = NULL;
		q->lf = NULL;
		if (q->in_redis) {
			/* redisc still holds q: its callback frees it. */
			if (q->timer != NULL)
				event_free(q->timer);
			q->timer = NULL;
		} else {
			loginfail_req_free(q);
		}
	}
	loginfail_mem_fini(&lf->mem);
	free(lf);
}

unsigned loginfail_mem_entries(const struct loginfail *lf)
{
	return lf->mem.used;
}

/* The delay is over: hand the answer over and forget the request. */
static void loginfail_fire(evutil_socket_t fd, short what, void *arg)
{
	struct loginfail_req *q = arg;
	struct loginfail_answer a = q->a;
	loginfail_cb *cb = q->cb;
	void *ctx = q->ctx;
	uint64_t id = q->id;

	loginfail_req_unlink(q);
	loginfail_req_free(q);
	cb(ctx, id, &a);
}

static void loginfail_answer(struct loginfail_req *q, unsigned pf,
    unsigned users, unsigned rate, int from_redis)
{
	struct timeval tv;

	loginfail_decide(&q->lf->set, pf, users, rate, &q->a);
	q->a.from_redis = from_redis;
	tv.tv_sec = q->a.delay_ms / 1000;
	tv.tv_usec = (q->a.delay_ms % 1000) * 1000;
	evtimer_add(q->timer, &tv);
}

static void loginfail_answer_mem(struct loginfail_req *q)
{
	struct loginfail_mem *m = &q->lf->mem;
	uint64_t now = loginfail_now_ms();
	char pkey[LOGINFAIL_KEY_SIZE];

	loginfail_mem_key(&q->k, pkey);
	loginfail_answer(q, loginfail_mem_get(m, pkey, now),
	    loginfail_mem_get(m, q->k.u, now),
	    loginfail_mem_get(m, q->k.r, now), 0);
}

static unsigned loginfail_reply_uint(const redisReply *e)
{
	unsigned long v;
	char *end;

	if (e == NULL || e->type != REDIS_REPLY_STRING || e->len == 0)
		return 0;
	v = strtoul(e->str, &end, 10);
	return *end != '\0' ? 0 : v > UINT32_MAX ? UINT32_MAX : (unsigned)v;
}

static void loginfail_redis_done(struct redisc *r, struct redisReply *rep,
    void *arg)
{
	struct loginfail_req *q = arg;

	q->in_redis = 0;
	if (q->lf == NULL) {
		loginfail_req_free(q);
		return;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    rep->elements != 3) {
		loginfail_answer_mem(q);   /* Redis down or broken: memory */
		return;
	}
	loginfail_answer(q, loginfail_reply_uint(rep->element[0]),
	    loginfail_reply_uint(rep->element[1]),
	    loginfail_reply_uint(rep->element[2]), 1);
}

int loginfail_check(struct loginfail *lf, const char *addr, const char *user,
    loginfail_cb *cb, void *ctx, uint64_t id)
{
	struct loginfail_req *q = calloc(1, sizeof(*q));
	const char *argv[4];
	size_t len[4];

	if (q != NULL)
		q->timer = evtimer_new(lf->base, loginfail_fire, q);
	if (q == NULL || q->timer == NULL) {
		free(q);
		return -1;
	}
	q->lf = lf;
	q->cb = cb;
	q->ctx = ctx;
	q->id = id;
	loginfail_keys_make(&q->k, addr, user);
	q->next = lf->reqs;
	if (lf->reqs != NULL)
		lf->reqs->prev = q;
	lf->reqs = q;
	if (lf->redis == NULL || !redisc_connected(lf->redis)) {
		loginfail_answer_mem(q);
		return 0;
	}
	argv[0] = "MGET";
	argv[1] = q->k.p;
	argv[2] = q->k.u;
	argv[3] = q->k.r;
	len[0] = 4;
	len[1] = q->k.plen;
	len[2] = strlen(q->k.u);
	len[3] = strlen(q->k.r);
	/* redisc calls back exactly once, with NULL when the command could
	 * not be sent, and never from inside this call (its -1 does not say
	 * whether a callback follows; only its own out-of-memory has none,
	 * and then this check waits for the session's timeout). */
	q->in_redis = 1;
	redisc_command_argv(lf->redis, loginfail_redis_done, q, 4, argv, len);
	return 0;
}

static void loginfail_record_mem(struct loginfail *lf,
    const struct loginfail_keys *k, int ok)
{
	uint64_t now = loginfail_now_ms();
	char pkey[LOGINFAIL_KEY_SIZE];

	loginfail_mem_key(k, pkey);
	if (ok) {
		loginfail_mem_del(&lf->mem, pkey, now);
		return;
	}
	if (loginfail_mem_incr(&lf->mem, pkey, lf->set.window_ms, 1, now) == 1)
		loginfail_mem_incr(&lf->mem, k->u, lf->set.window_ms, 0, now);
	loginfail_mem_incr(&lf->mem, k->r, lf->set.rate_ms, 0, now);
}

void loginfail_record(struct loginfail *lf, const char *addr,
    const char *user, int ok)
{
	struct loginfail_keys k;
	char win[24], rate[24];
	const char *argv[8];
	size_t len[8];
	int i;

	loginfail_keys_make(&k, addr, user);
	/* Memory always: when Redis goes, this host still knows its own. */
	loginfail_record_mem(lf, &k, ok);
	if (lf->redis == NULL || !redisc_connected(lf->redis))
		return;
	if (ok) {
		argv[0] = "DEL";
		argv[1] = k.p;
		len[0] = 3;
		len[1] = k.plen;
		redisc_command_argv(lf->redis, NULL, NULL, 2, argv, len);
		return;
	}
	snprintf(win, sizeof(win), "%u", lf->set.window_ms);
	snprintf(rate, sizeof(rate), "%u", lf->set.rate_ms);
	argv[0] = "EVAL";
	argv[1] = loginfail_lua_fail;
	argv[2] = "3";
	argv[3] = k.p;
	argv[4] = k.u;
	argv[5] = k.r;
	argv[6] = win;
	argv[7] = rate;
	for (i = 0; i < 8; i++)
		len[i] = strlen(argv[i]);
	len[3] = k.plen;
	redisc_command_argv(lf->redis, NULL, NULL, 8, argv, len);
}

/* ---- log lines ---------------------------------------------------------- */

/* Keep what a mail address or host name may hold; the delimiters the
 * fail2ban filters parse by, white space, controls and non-ASCII become
 * '?'. */
static const char *loginfail_clean(const char *in, char *out, size_t n)
{
	static const char bad[] = "()<>[],;:\"\\";
	size_t o = 0;

	for (; in != NULL && *in != '\0' && o + 1 < n &&
	    o < LOGINFAIL_LOG_MAX; in++) {
		unsigned char c = (unsigned char)*in;

		out[o++] = c > 0x20 && c < 0x7f && strchr(bad, c) == NULL ?
		    (char)c : '?';
	}
	out[o] = '\0';
	return out;
}

/* An address as fail2ban will read it: hex digits, '.', ':' only. */
static const char *loginfail_clean_addr(const char *in, char *out, size_t n)
{
	size_t o = 0;

	for (; in != NULL && *in != '\0' && o + 1 < n; in++) {
		char c = *in;

		out[o++] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		    (c >= 'A' && c <= 'F') || c == '.' || c == ':' ? c : '?';
	}
	out[o] = '\0';
	return out;
}

void loginfail_log_smtp(const char *client_name, const char *addr,
    const char *mech, const char *user)
{
	char n[LOGINFAIL_LOG_MAX + 1], a[LOGINFAIL_ADDR_SIZE];
	char m[LOGINFAIL_LOG_MAX + 1], u[LOGINFAIL_LOG_MAX + 1];

	/* Postfix's own wording (smtpd_sasl_glue.c): the stock filter
	 * postfix[mode=auth] counts these lines. */
	log_warn("%s[%s]: SASL %s authentication failed: authentication "
	    "failure, sasl_username=%s",
	    loginfail_clean(client_name != NULL && *client_name != '\0' ?
	    client_name : "unknown", n, sizeof(n)),
	    loginfail_clean_addr(addr, a, sizeof(a)),
	    loginfail_clean(mech, m, sizeof(m)),
	    loginfail_clean(user, u, sizeof(u)));
}

void loginfail_log_smtp_refused(const char *client_name, const char *addr,
    const char *user, const struct loginfail_answer *ans)
{
	char n[LOGINFAIL_LOG_MAX + 1], a[LOGINFAIL_ADDR_SIZE];
	char u[LOGINFAIL_LOG_MAX + 1];

	log_warn("%s[%s]: SASL authentication refused: too many failed "
	    "logins from this address, sasl_username=%s, failures=%u, "
	    "recent=%u",
	    loginfail_clean(client_name != NULL && *client_name != '\0' ?
	    client_name : "unknown", n, sizeof(n)),
	    loginfail_clean_addr(addr, a, sizeof(a)),
	    loginfail_clean(user, u, sizeof(u)), ans->pair_fails,
	    ans->address_rate);
}

void loginfail_log_mra(const char *proto, const char *addr,
    const char *mech, const char *user)
{
	char p[16], a[LOGINFAIL_ADDR_SIZE];
	char m[LOGINFAIL_LOG_MAX + 1], u[LOGINFAIL_LOG_MAX + 1];

	/* Dovecot's auth line ("passwd-file(user,rip): Password mismatch")
	 * that the stock dovecot filter counts; "Invalid credentials" since
	 * the passdb does not say whether the name or the password was
	 * wrong. */
	log_info("%s-login: passdb(%s,%s): Invalid credentials, method=%s",
	    loginfail_clean(proto, p, sizeof(p)), loginfail_clean(user, u,
	    sizeof(u)), loginfail_clean_addr(addr, a, sizeof(a)),
	    loginfail_clean(mech, m, sizeof(m)));
}

void loginfail_log_mra_refused(const char *proto, const char *addr,
    const char *user, const struct loginfail_answer *ans)
{
	char p[16], a[LOGINFAIL_ADDR_SIZE], u[LOGINFAIL_LOG_MAX + 1];

	log_info("%s-login: login refused: too many failed logins from this "
	    "address: user=<%s>, rip=%s, failures=%u, recent=%u",
	    loginfail_clean(proto, p, sizeof(p)),
	    loginfail_clean(user, u, sizeof(u)),
	    loginfail_clean_addr(addr, a, sizeof(a)), ans->pair_fails,
	    ans->address_rate);
}
