/* Unit tests for shared/loginfail.c, each run twice: against the real
 * redis-server the harness starts (TEST_REDIS_HOST / TEST_REDIS_PORT) and
 * with the memory table alone. Delay growth and cap, success clearing, the
 * NAT case, spraying, flood refusal and its end, Redis down at start and
 * killed under load, the table bounded under 100,000 addresses, callbacks
 * after free, the log lines. `test_loginfail --log-sample` writes sample
 * log lines to stderr and their manifest to stdout (tests/it/
 * test_fail2ban.py runs fail2ban-regex over them). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <cmocka.h>
#include <event2/event.h>
#include "cfg.h"
#include "log.h"
#include "loginfail.h"
#include "redisc.h"

struct test_ctx {
	struct event_base *base;
	struct redisc *r;             /* NULL: memory only */
	struct loginfail *lf;
	struct loginfail_settings set;
	int redis;                    /* answers must come from Redis */
	char net[32];                 /* "10.A.B." unique per test */
};

struct test_ans {
	int done, calls;
	uint64_t id;
	struct loginfail_answer a;
};

static long test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void test_settings(struct loginfail_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->delay_ms = 20;
	set->delay_max_ms = 160;
	set->window_ms = 60000;
	set->address_users = 1;
	set->rate_limit = 10;
	set->rate_ms = 60000;
	set->table_size = 1000;
}

/* Run the loop until *flag or ms pass. */
static void test_loop(struct event_base *base, int *flag, long ms)
{
	long end = test_now_ms() + ms;

	while ((flag == NULL || !*flag) && test_now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK),
		    usleep(1000);
}

static int test_wait_connected(struct event_base *base, struct redisc *r,
    long ms)
{
	long end = test_now_ms() + ms;

	while (!redisc_connected(r) && test_now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK),
		    usleep(2000);
	return redisc_connected(r);
}

static int test_setup_common(void **st, int redis)
{
	const char *h = getenv("TEST_REDIS_HOST"), *p = getenv("TEST_REDIS_PORT");
	struct test_ctx *t = calloc(1, sizeof(*t));
	char addr[128];
	struct err err;
	struct event_config *cfg;
	static unsigned n;

	if (t == NULL)
		return -1;
	/* The waits are timed with CLOCK_MONOTONIC; libevent's timers by
	 * default run on the coarse clock, a jiffy (up to 10 ms) behind it,
	 * so a 20 ms delay could look a few ms short. */
	cfg = event_config_new();
	if (cfg == NULL)
		return -1;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	t->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	t->redis = redis;
	test_settings(&t->set);
	if (redis) {
		/* No skipping: the harness must provide Redis. */
		if (h == NULL || p == NULL) {
			fprintf(stderr, "TEST_REDIS_HOST/PORT not set: run under "
			    "tests/harness/servers.py\n");
			return -1;
		}
		snprintf(addr, sizeof(addr), "%s:%s", h, p);
		t->r = redisc_new(t->base, addr, NULL, 0, &err);
		if (t->r == NULL || !test_wait_connected(t->base, t->r, 3000)) {
			fprintf(stderr, "setup: Redis %s not reachable\n", addr);
			return -1;
		}
	}
	t->lf = loginfail_new(t->base, t->r, &t->set, &err);
	if (t->lf == NULL)
		return -1;
	/* Fresh addresses per test: the Redis counters outlive a test. */
	n++;
	snprintf(t->net, sizeof(t->net), "10.%u.%u.",
	    (unsigned)(getpid() % 250), (n * 7 + (unsigned)time(NULL)) % 250);
	*st = t;
	return 0;
}

static int test_setup_redis(void **st) { return test_setup_common(st, 1); }
static int test_setup_mem(void **st) { return test_setup_common(st, 0); }

static int test_teardown(void **st)
{
	struct test_ctx *t = *st;

	loginfail_free(t->lf);
	redisc_free(t->r);
	event_base_free(t->base);
	free(t);
	return 0;
}

/* A new loginfail with other settings (same Redis). */
static void test_reset(struct test_ctx *t, const struct loginfail_settings *set)
{
	struct err err;

	loginfail_free(t->lf);
	t->set = *set;
	t->lf = loginfail_new(t->base, t->r, set, &err);
	assert_non_null(t->lf);
}

static const char *test_addr(struct test_ctx *t, unsigned host)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "%s%u", t->net, host);
	return buf;
}

static void test_cb(void *ctx, uint64_t id, const struct loginfail_answer *a)
{
	struct test_ans *r = ctx;

	r->done = 1;
	r->calls++;
	r->id = id;
	r->a = *a;
}

/* loginfail_check, waited for; *elapsed_r: ms until the callback. */
static struct loginfail_answer test_check_on(struct test_ctx *t,
    struct loginfail *lf, const char *addr, const char *user,
    long *elapsed_r)
{
	struct test_ans r;
	long start = test_now_ms();

	memset(&r, 0, sizeof(r));
	assert_int_equal(loginfail_check(lf, addr, user, test_cb, &r, 4242), 0);
	assert_int_equal(r.done, 0);   /* never from inside the call */
	while (!r.done && test_now_ms() - start < 5000)
		event_base_loop(t->base, EVLOOP_ONCE);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.id, 4242);
	if (elapsed_r != NULL)
		*elapsed_r = test_now_ms() - start;
	return r.a;
}

static struct loginfail_answer test_check(struct test_ctx *t,
    const char *addr, const char *user, long *elapsed_r)
{
	struct loginfail_answer a = test_check_on(t, t->lf, addr, user,
	    elapsed_r);

	assert_int_equal(a.from_redis, t->redis);
	return a;
}

static unsigned test_expect_delay(const struct loginfail_settings *set,
    unsigned fails)
{
	unsigned long d = set->delay_ms;

	if (fails == 0)
		return 0;
	while (--fails > 0 && d < set->delay_max_ms)
		d *= 2;
	return d > set->delay_max_ms ? set->delay_max_ms : (unsigned)d;
}

/* ---- the rule alone ------------------------------------------------------ */

static void test_decide(void **st)
{
	struct loginfail_settings set;
	struct loginfail_answer a;
	static const unsigned want[] = { 0, 2000, 4000, 8000, 15000, 15000,
					 15000 };
	unsigned i;

	memset(&set, 0, sizeof(set));
	set.delay_ms = 2000;         /* the defaults */
	set.delay_max_ms = 15000;
	set.address_users = 3;
	set.rate_limit = 30;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		loginfail_decide(&set, i, 1, i, &a);
		assert_int_equal(a.delay_ms, want[i]);
		assert_int_equal(a.verdict, LOGINFAIL_OK);
	}
	loginfail_decide(&set, 100000, 0, 0, &a);   /* no overflow */
	assert_int_equal(a.delay_ms, 15000);
	/* address part: only past address_users distinct names */
	loginfail_decide(&set, 0, 3, 0, &a);
	assert_int_equal(a.delay_ms, 0);
	loginfail_decide(&set, 0, 4, 0, &a);
	assert_int_equal(a.delay_ms, 2000);
	loginfail_decide(&set, 0, 6, 0, &a);
	assert_int_equal(a.delay_ms, 8000);
	loginfail_decide(&set, 0, 1000, 0, &a);
	assert_int_equal(a.delay_ms, 15000);
	loginfail_decide(&set, 1, 5, 0, &a);        /* the larger part */
	assert_int_equal(a.delay_ms, 4000);
	/* flood: refused only with failures of its own */
	loginfail_decide(&set, 1, 1, 30, &a);
	assert_int_equal(a.verdict, LOGINFAIL_TEMP_REFUSE);
	loginfail_decide(&set, 0, 1, 1000, &a);
	assert_int_equal(a.verdict, LOGINFAIL_OK);
	assert_int_equal(a.delay_ms, 0);
	loginfail_decide(&set, 1, 1, 29, &a);
	assert_int_equal(a.verdict, LOGINFAIL_OK);
	set.rate_limit = 0;                         /* 0: never refused */
	loginfail_decide(&set, 9, 1, 1000000, &a);
	assert_int_equal(a.verdict, LOGINFAIL_OK);
	set.delay_ms = 0;                           /* 0: no delay at all */
	loginfail_decide(&set, 9, 100, 0, &a);
	assert_int_equal(a.delay_ms, 0);
	(void)st;
}

static void test_params(void **st)
{
	static const struct cfg_param *const tabs[] = { loginfail_params, NULL };
	struct loginfail_settings set;
	const char *text;
	struct err err;

	assert_int_equal(cfg_load_text(tabs, "", 0, "t.cf", &err), 0);
	loginfail_settings_from_params(&set);
	assert_int_equal(set.delay_ms, 2000);
	assert_int_equal(set.delay_max_ms, 15000);
	assert_int_equal(set.window_ms, 600000);
	assert_int_equal(set.address_users, 3);
	assert_int_equal(set.rate_limit, 30);
	assert_int_equal(set.rate_ms, 60000);
	assert_int_equal(set.table_size, 10000);
	text = "auth_failure_delay = 1s\nauth_failure_delay_max = 30s\n"
	    "smtpd_client_auth_rate_limit = 0\nanvil_rate_time_unit = 2m\n";
	assert_int_equal(cfg_load_text(tabs, text, strlen(text), "t.cf", &err), 0);
	loginfail_settings_from_params(&set);
	assert_int_equal(set.delay_ms, 1000);
	assert_int_equal(set.delay_max_ms, 30000);
	assert_int_equal(set.rate_limit, 0);
	assert_int_equal(set.rate_ms, 120000);
	/* the cap stays below client timeouts */
	text = "auth_failure_delay_max = 5m\n";
	assert_int_equal(cfg_load_text(tabs, text, strlen(text), "t.cf", &err), -1);
	assert_non_null(strstr(err.msg, "auth_failure_delay_max"));
	cfg_free(tabs);
	(void)st;
}

/* ---- counters, Redis and memory ------------------------------------------ */

static void test_growth_and_cap(void **st)
{
	struct test_ctx *t = *st;
	const char *addr = test_addr(t, 1);
	struct loginfail_answer a;
	unsigned k, want;
	long ms;

	for (k = 0; k <= 7; k++) {
		a = test_check(t, addr, "alice@demo.test", &ms);
		want = test_expect_delay(&t->set, k);
		assert_int_equal(a.verdict, LOGINFAIL_OK);
		assert_int_equal(a.pair_fails, k);
		assert_int_equal(a.delay_ms, want);
		assert_true(a.delay_ms <= t->set.delay_max_ms);
		assert_true(ms + 2 >= (long)want);      /* it was waited */
		assert_true(ms < (long)want + 1000);
		loginfail_record(t->lf, addr, "alice@demo.test", 0);
	}
	/* another user at the same address: no delay (one bad name) */
	a = test_check(t, addr, "bob@demo.test", NULL);
	assert_int_equal(a.delay_ms, 0);
	assert_int_equal(a.address_users, 1);
	assert_int_equal(a.address_rate, 8);
	/* user names fold to lower case */
	a = test_check(t, addr, "ALICE@Demo.Test", NULL);
	assert_int_equal(a.pair_fails, 8);
}

static void test_success_clears_pair(void **st)
{
	struct test_ctx *t = *st;
	const char *addr = test_addr(t, 2);
	struct loginfail_answer a;
	int i;

	for (i = 0; i < 3; i++)
		loginfail_record(t->lf, addr, "alice@demo.test", 0);
	a = test_check(t, addr, "alice@demo.test", NULL);
	assert_int_equal(a.pair_fails, 3);
	assert_int_equal(a.delay_ms, 80);
	loginfail_record(t->lf, addr, "alice@demo.test", 1);
	a = test_check(t, addr, "alice@demo.test", NULL);
	assert_int_equal(a.pair_fails, 0);
	assert_int_equal(a.delay_ms, 0);
	/* the address keeps its counts (Dovecot) */
	assert_int_equal(a.address_rate, 3);
	assert_int_equal(a.address_users, 1);
	/* a failure after that starts again at the first step */
	loginfail_record(t->lf, addr, "alice@demo.test", 0);
	a = test_check(t, addr, "alice@demo.test", NULL);
	assert_int_equal(a.delay_ms, t->set.delay_ms);
}

/* Many users behind one NAT address, one phone with an old password that
 * floods: the phone is refused, everyone else logs in at once. */
static void test_nat(void **st)
{
	struct test_ctx *t = *st;
	const char *addr = test_addr(t, 3);
	struct loginfail_answer a;
	char user[64];
	long ms;
	int i;

	for (i = 0; i < 40; i++)
		loginfail_record(t->lf, addr, "phone@demo.test", 0);
	a = test_check(t, addr, "phone@demo.test", NULL);
	assert_int_equal(a.verdict, LOGINFAIL_TEMP_REFUSE);
	assert_int_equal(a.delay_ms, t->set.delay_max_ms);
	for (i = 0; i < 50; i++) {
		snprintf(user, sizeof(user), "user%d@demo.test", i);
		a = test_check(t, addr, user, &ms);
		assert_int_equal(a.verdict, LOGINFAIL_OK);
		assert_true(a.delay_ms <= t->set.delay_ms);
		assert_true(ms < (long)t->set.delay_ms + 500);
		loginfail_record(t->lf, addr, user, 1);
	}
	assert_int_equal(a.address_rate, 40);
	/* the phone's owner with the new password: still refused while the
	 * address floods (the answer names no password check) */
	a = test_check(t, addr, "phone@demo.test", NULL);
	assert_int_equal(a.verdict, LOGINFAIL_TEMP_REFUSE);
}

/* One address trying many names (password spraying): every new login from
 * it is delayed, doubling with the names that failed, up to the cap. */
static void test_spraying(void **st)
{
	struct test_ctx *t = *st;
	const char *addr = test_addr(t, 4);
	struct loginfail_answer a;
	char user[64];
	unsigned i, want;

	for (i = 1; i <= 8; i++) {
		snprintf(user, sizeof(user), "victim%u", i);
		loginfail_record(t->lf, addr, user, 0);
		a = test_check(t, addr, "fresh@demo.test", NULL);
		want = i > t->set.address_users ? test_expect_delay(&t->set,
		    i - t->set.address_users) : 0;
		assert_int_equal(a.address_users, i);
		assert_int_equal(a.delay_ms, want);
		assert_int_equal(a.verdict, LOGINFAIL_OK);
	}
	assert_int_equal(a.delay_ms, t->set.delay_max_ms);
	/* the same name again does not count twice */
	loginfail_record(t->lf, addr, "victim1", 0);
	a = test_check(t, addr, "fresh@demo.test", NULL);
	assert_int_equal(a.address_users, 8);
	/* another address is untouched */
	a = test_check(t, test_addr(t, 5), "fresh@demo.test", NULL);
	assert_int_equal(a.delay_ms, 0);
	assert_int_equal(a.address_users, 0);
}

static void test_flood_expires(void **st)
{
	struct test_ctx *t = *st;
	struct loginfail_settings set = t->set;
	const char *addr;
	struct loginfail_answer a;
	long start;
	int i;

	set.rate_limit = 5;
	set.rate_ms = 400;
	test_reset(t, &set);
	addr = test_addr(t, 6);
	start = test_now_ms();
	for (i = 0; i < 5; i++)
		loginfail_record(t->lf, addr, "alice@demo.test", 0);
	a = test_check(t, addr, "alice@demo.test", NULL);
	assert_int_equal(a.verdict, LOGINFAIL_TEMP_REFUSE);
	a = test_check(t, addr, "bob@demo.test", NULL);
	assert_int_equal(a.verdict, LOGINFAIL_OK);
	assert_int_equal(a.delay_ms, 0);
	/* the refusal ends with the rate window; the pair's delay stays */
	test_loop(t->base, NULL, 450 - (test_now_ms() - start));
	a = test_check(t, addr, "alice@demo.test", NULL);
	assert_int_equal(a.verdict, LOGINFAIL_OK);
	assert_int_equal(a.address_rate, 0);
	assert_int_equal(a.pair_fails, 5);
	assert_int_equal(a.delay_ms, test_expect_delay(&set, 5));
}

/* IPv6 counts per /64; IPv4-mapped IPv6 is the IPv4 address. */
static void test_ipv6_prefix(void **st)
{
	struct test_ctx *t = *st;
	struct loginfail_answer a;
	char a1[64], a2[64], a3[64], v4[64], mapped[80];

	snprintf(a1, sizeof(a1), "2001:db8:%x:%x::1", (unsigned)getpid() & 0xffff,
	    (unsigned)time(NULL) & 0xffff);
	snprintf(a2, sizeof(a2), "2001:db8:%x:%x:ffff:1:2:3",
	    (unsigned)getpid() & 0xffff, (unsigned)time(NULL) & 0xffff);
	snprintf(a3, sizeof(a3), "2001:db8:%x:%x::1",
	    (unsigned)getpid() & 0xffff, ((unsigned)time(NULL) + 1) & 0xffff);
	loginfail_record(t->lf, a1, "alice", 0);
	loginfail_record(t->lf, a1, "alice", 0);
	a = test_check(t, a2, "alice", NULL);
	assert_int_equal(a.pair_fails, 2);
	a = test_check(t, a3, "alice", NULL);
	assert_int_equal(a.pair_fails, 0);
	snprintf(v4, sizeof(v4), "%s", test_addr(t, 7));
	snprintf(mapped, sizeof(mapped), "::ffff:%s", v4);
	loginfail_record(t->lf, mapped, "alice", 0);
	a = test_check(t, v4, "alice", NULL);
	assert_int_equal(a.pair_fails, 1);
	/* no user learnt: a pair of its own */
	loginfail_record(t->lf, v4, NULL, 0);
	a = test_check(t, v4, "", NULL);
	assert_int_equal(a.pair_fails, 1);
}

/* Pending checks die with the loginfail: no callback, no crash. */
static void test_free_pending(void **st)
{
	struct test_ctx *t = *st;
	const char *addr = test_addr(t, 8);
	struct test_ans r1, r2;
	int i;

	for (i = 0; i < 3; i++)
		loginfail_record(t->lf, addr, "alice", 0);
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	assert_int_equal(loginfail_check(t->lf, addr, "alice", test_cb, &r1, 1), 0);
	test_loop(t->base, NULL, 20);    /* r1: waiting out its delay */
	assert_int_equal(loginfail_check(t->lf, addr, "alice", test_cb, &r2, 2), 0);
	loginfail_free(t->lf);           /* r2: in Redis, or on a timer */
	t->lf = NULL;
	test_loop(t->base, NULL, 300);
	assert_int_equal(r1.calls, 0);
	assert_int_equal(r2.calls, 0);
}

/* ---- Redis down ---------------------------------------------------------- */

static void test_redis_never_up(void **st)
{
	struct test_ctx *t = *st;
	struct redisc *r;
	struct loginfail *lf;
	struct loginfail_answer a;
	const char *addr = test_addr(t, 9);
	struct err err;
	int i;

	/* port 1 on loopback: nothing listens */
	r = redisc_new(t->base, "127.0.0.1:1", NULL, 0, &err);
	assert_non_null(r);
	lf = loginfail_new(t->base, r, &t->set, &err);
	assert_non_null(lf);
	test_loop(t->base, NULL, 50);
	assert_int_equal(redisc_connected(r), 0);
	for (i = 1; i <= 4; i++) {
		loginfail_record(lf, addr, "alice", 0);
		a = test_check_on(t, lf, addr, "alice", NULL);
		assert_int_equal(a.from_redis, 0);
		assert_int_equal(a.pair_fails, i);
		assert_int_equal(a.delay_ms, test_expect_delay(&t->set, i));
	}
	loginfail_record(lf, addr, "alice", 1);
	a = test_check_on(t, lf, addr, "alice", NULL);
	assert_int_equal(a.pair_fails, 0);
	loginfail_free(lf);
	redisc_free(r);
}

static int test_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* A private redis-server of this test (the harness's must stay up). */
static pid_t test_redis_start(int port)
{
	char ports[16];
	pid_t pid;
	int fd;

	snprintf(ports, sizeof(ports), "%d", port);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fd = open("/dev/null", O_WRONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("redis-server", "redis-server", "--port", ports,
		    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		    "--daemonize", "no", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void test_redis_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Redis killed while in use: the next checks fall back to memory, which
 * kept this host's counts; when Redis is back, it answers again. */
static void test_redis_killed(void **st)
{
	struct test_ctx *t = *st;
	struct redisc *r;
	struct loginfail *lf;
	struct loginfail_answer a;
	const char *addr = test_addr(t, 10);
	char raddr[32];
	struct err err;
	int port = test_free_port();
	pid_t pid = test_redis_start(port);

	snprintf(raddr, sizeof(raddr), "127.0.0.1:%d", port);
	r = redisc_new(t->base, raddr, NULL, 0, &err);
	assert_non_null(r);
	if (!test_wait_connected(t->base, r, 8000)) {
		test_redis_stop(pid);
		fail_msg("private redis-server on port %d did not come up", port);
	}
	lf = loginfail_new(t->base, r, &t->set, &err);
	assert_non_null(lf);
	loginfail_record(lf, addr, "alice", 0);
	loginfail_record(lf, addr, "alice", 0);
	a = test_check_on(t, lf, addr, "alice", NULL);
	assert_int_equal(a.from_redis, 1);
	assert_int_equal(a.pair_fails, 2);

	test_redis_stop(pid);
	/* at once, before the loop saw the EOF: the MGET is sent and fails */
	assert_int_equal(redisc_connected(r), 1);
	a = test_check_on(t, lf, addr, "alice", NULL);
	assert_int_equal(a.from_redis, 0);
	assert_int_equal(a.pair_fails, 2);
	assert_int_equal(a.delay_ms, test_expect_delay(&t->set, 2));
	loginfail_record(lf, addr, "alice", 0);
	a = test_check_on(t, lf, addr, "alice", NULL);
	assert_int_equal(a.from_redis, 0);
	assert_int_equal(a.pair_fails, 3);
	assert_int_equal(redisc_connected(r), 0);

	pid = test_redis_start(port);
	if (!test_wait_connected(t->base, r, 10000)) {
		test_redis_stop(pid);
		fail_msg("redisc did not reconnect");
	}
	a = test_check_on(t, lf, addr, "alice", NULL);
	assert_int_equal(a.from_redis, 1);
	assert_int_equal(a.pair_fails, 0);    /* a new, empty Redis */
	loginfail_free(lf);
	redisc_free(r);
	test_redis_stop(pid);
}

/* ---- the memory table ---------------------------------------------------- */

static void test_mem_bounded(void **st)
{
	struct test_ctx *t = *st;
	struct loginfail_settings set = t->set;
	struct loginfail_answer a;
	struct loginfail *lf;
	char addr[64], first[64];
	struct err err;
	unsigned i, x;
	long start = test_now_ms();

	set.table_size = 1000;
	lf = loginfail_new(t->base, NULL, &set, &err);
	assert_non_null(lf);
	srandom((unsigned)getpid());
	for (i = 0; i < 100000; i++) {
		x = (unsigned)random();
		if (i % 4 == 3)
			snprintf(addr, sizeof(addr), "2001:db8:%x:%x::1",
			    x & 0xffff, x >> 16);
		else
			snprintf(addr, sizeof(addr), "%u.%u.%u.%u", 1 + x % 223,
			    (x >> 8) & 255, (x >> 16) & 255, i & 255);
		if (i == 0)
			snprintf(first, sizeof(first), "%s", addr);
		loginfail_record(lf, addr, "root", 0);
		if (i % 1000 == 0)
			assert_true(loginfail_mem_entries(lf) <= 1000);
	}
	assert_int_equal(loginfail_mem_entries(lf), 1000);
	/* the newest is there, the oldest was evicted */
	a = test_check_on(t, lf, addr, "root", NULL);
	assert_int_equal(a.pair_fails, 1);
	a = test_check_on(t, lf, first, "root", NULL);
	assert_int_equal(a.pair_fails, 0);
	/* still counting right after all that */
	loginfail_record(lf, addr, "root", 0);
	a = test_check_on(t, lf, addr, "root", NULL);
	assert_int_equal(a.pair_fails, 2);
	assert_int_equal(a.delay_ms, test_expect_delay(&set, 2));
	assert_true(loginfail_mem_entries(lf) <= 1000);
	assert_true(test_now_ms() - start < 10000);
	loginfail_free(lf);
}

/* ---- log lines ----------------------------------------------------------- */

static void test_log_lines(void **st)
{
	char path[] = "/tmp/test_loginfail_XXXXXX", text[4096];
	int fd = mkstemp(path), saved = dup(2);
	struct loginfail_answer ans;
	ssize_t n;
	int lines;

	assert_true(fd >= 0 && saved >= 0);
	memset(&ans, 0, sizeof(ans));
	ans.pair_fails = 7;
	ans.address_rate = 31;
	fflush(stderr);
	dup2(fd, 2);
	log_open("submission", 0, 1);
	loginfail_log_smtp("unknown", "192.0.2.7", "PLAIN", "alice@demo.test");
	loginfail_log_smtp("evil[6.6.6.6] x", "192.0.2.8", "LOGIN",
	    "a b\r\nsubmission[1]: warning: unknown[6.6.6.6]: x");
	loginfail_log_smtp_refused("unknown", "192.0.2.9", "bob", &ans);
	log_open("mra", 0, 1);
	loginfail_log_mra("imap", "2001:db8::7", "PLAIN", "x,6.6.6.6): Invalid");
	loginfail_log_mra("pop3", "192.0.2.10", "USER", NULL);
	loginfail_log_mra_refused("imap", "192.0.2.11", "carol", &ans);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	unlink(path);
	assert_true(n > 0);
	text[n] = '\0';
	assert_non_null(strstr(text, " submission["));
	assert_non_null(strstr(text, "]: warning: unknown[192.0.2.7]: SASL "
	    "PLAIN authentication failed: authentication failure, "
	    "sasl_username=alice@demo.test\n"));
	assert_non_null(strstr(text, "]: warning: evil?6.6.6.6??x[192.0.2.8]: "
	    "SASL LOGIN authentication failed: authentication failure, "
	    "sasl_username=a?b??submission?1???warning??unknown?6.6.6.6???x\n"));
	assert_non_null(strstr(text, "]: warning: unknown[192.0.2.9]: SASL "
	    "authentication refused: too many failed logins from this address, "
	    "sasl_username=bob, failures=7, recent=31\n"));
	assert_non_null(strstr(text, " mra["));
	assert_non_null(strstr(text, "]: imap-login: passdb(x?6.6.6.6???Invalid,"
	    "2001:db8::7): Invalid credentials, method=PLAIN\n"));
	assert_non_null(strstr(text, "]: pop3-login: passdb(,192.0.2.10): "
	    "Invalid credentials, method=USER\n"));
	assert_non_null(strstr(text, "]: imap-login: login refused: too many "
	    "failed logins from this address: user=<carol>, rip=192.0.2.11, "
	    "failures=7, recent=31\n"));
	/* one line per event: 6 calls, 6 lines */
	for (n = 0, lines = 0; text[n] != '\0'; n++)
		lines += text[n] == '\n';
	assert_int_equal(lines, 6);
	log_open("test_loginfail", 0, 0);
	(void)st;
}

/* ---- sample for tests/it/test_fail2ban.py ------------------------------- */

struct test_sample {
	const char *tag, *kind;       /* kind: fail or other */
	const char *proto, *name, *addr, *mech, *user;
};

static const struct test_sample test_samples[] = {
	{ "submission", "fail", NULL, "unknown", "192.0.2.7", "PLAIN",
	  "alice@demo.test" },
	{ "submission", "fail", NULL, "mail.example.net", "198.51.100.23",
	  "LOGIN", "bob" },
	{ "submission", "fail", NULL, "unknown", "2001:db8::25", "plain",
	  "Carol@Demo.Test" },
	{ "submission", "fail", NULL, "unknown", "203.0.113.9", "CRAM-MD5",
	  NULL },
	{ "submission", "fail", NULL, "unknown", "203.0.113.10", "LOGIN",
	  "x]: SASL PLAIN authentication failed: [6.6.6.6]" },
	{ "submission", "fail", NULL, "evil[6.6.6.6] ", "203.0.113.11",
	  "DIGEST-MD5", "a" },
	{ "submission", "other", "success", "unknown", "192.0.2.7", "PLAIN",
	  "alice@demo.test" },
	{ "submission", "other", "refused", "unknown", "192.0.2.7", NULL,
	  "alice@demo.test" },
	{ "mra", "fail", "imap", NULL, "192.0.2.8", "PLAIN", "alice@demo.test" },
	{ "mra", "fail", "pop3", NULL, "198.51.100.24", "USER", "bob" },
	{ "mra", "fail", "imap", NULL, "2001:db8::26", "LOGIN", "dave" },
	{ "mra", "fail", "imap", NULL, "203.0.113.12", "PLAIN",
	  "x,6.6.6.6): Invalid credentials" },
	{ "mra", "fail", "pop3", NULL, "203.0.113.13", "PLAIN", "" },
	{ "mra", "fail", "imap", NULL, "203.0.113.14", "LOGIN", "a b c" },
	{ "mra", "other", "imap-success", NULL, "192.0.2.8", "PLAIN",
	  "alice@demo.test" },
	{ "mra", "other", "pop3-success", NULL, "198.51.100.24", "USER", "bob" },
	{ "mra", "other", "imap-refused", NULL, "192.0.2.8", NULL, "alice" },
	{ "mra", "other", "pop3-refused", NULL, "198.51.100.24", NULL, "bob" },
};

/* Log lines to stderr through log.c, one manifest line per log line to
 * stdout: "KIND TAG ADDR". Success lines use the formats the daemons write
 * themselves (smtpd.c, imap_cmd.c, pop3_session.c) until the test reads
 * daemon logs. */
static int test_log_sample(void)
{
	struct loginfail_answer ans;
	const struct test_sample *s;
	size_t i;

	memset(&ans, 0, sizeof(ans));
	ans.pair_fails = 12;
	ans.address_rate = 30;
	for (i = 0; i < sizeof(test_samples) / sizeof(test_samples[0]); i++) {
		s = &test_samples[i];
		log_open(s->tag, 0, 1);
		if (strcmp(s->tag, "submission") == 0 && s->proto == NULL)
			loginfail_log_smtp(s->name, s->addr, s->mech, s->user);
		else if (strcmp(s->tag, "mra") == 0 &&
		    strcmp(s->kind, "fail") == 0)
			loginfail_log_mra(s->proto, s->addr, s->mech, s->user);
		else if (strcmp(s->proto, "success") == 0)
			log_info("%s[%s]: sasl_method=%s, sasl_username=%s",
			    s->name, s->addr, s->mech, s->user);
		else if (strcmp(s->proto, "refused") == 0)
			loginfail_log_smtp_refused(s->name, s->addr, s->user,
			    &ans);
		else if (strcmp(s->proto, "imap-success") == 0)
			log_info("imap: login: client=%s, user=<%s>, "
			    "method=%s, TLS", s->addr, s->user, s->mech);
		else if (strcmp(s->proto, "pop3-success") == 0)
			log_info("pop3: login: user=<%s>, rip=%s, method=%s, "
			    "tls=yes, msgs=3", s->user, s->addr, s->mech);
		else
			loginfail_log_mra_refused(strncmp(s->proto, "imap",
			    4) == 0 ? "imap" : "pop3", s->addr, s->user, &ans);
		fflush(stderr);
		printf("%s %s %s\n", s->kind, s->tag, s->addr);
	}
	return 0;
}

/* Each counter test twice, named after its store. */
#define TEST_ONE(f, store) \
	{ #f "/" #store, f, test_setup_##store, test_teardown, NULL }
#define TEST_BOTH(f) TEST_ONE(f, redis), TEST_ONE(f, mem)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_log_lines),
		TEST_BOTH(test_growth_and_cap),
		TEST_BOTH(test_success_clears_pair),
		TEST_BOTH(test_nat),
		TEST_BOTH(test_spraying),
		TEST_BOTH(test_flood_expires),
		TEST_BOTH(test_ipv6_prefix),
		TEST_BOTH(test_free_pending),
		cmocka_unit_test_setup_teardown(test_redis_never_up, test_setup_mem, test_teardown),
		cmocka_unit_test_setup_teardown(test_redis_killed, test_setup_mem, test_teardown),
		cmocka_unit_test_setup_teardown(test_mem_bounded, test_setup_mem, test_teardown),
	};

	if (argc == 2 && strcmp(argv[1], "--log-sample") == 0)
		return test_log_sample();
	log_open("test_loginfail", 0, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
