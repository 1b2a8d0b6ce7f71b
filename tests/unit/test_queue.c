/* Unit tests for shared/queue.c and shared/redisc.c against the real
 * redis-server the harness starts (TEST_REDIS_HOST / TEST_REDIS_PORT):
 * atomic put, claim with lease and take-over, per-recipient results,
 * hold/release/flush/delete, counts, rate counters, durability check. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>
#include "queue.h"
#include "redisc.h"

static char test_addr[128];
static char test_qname[32];

struct test_ctx {
	struct event_base *base;
	struct redisc *r;
	struct queue *q;
	redisContext *c;
};

static int test_setup(void **st)
{
	const char *h = getenv("TEST_REDIS_HOST"), *p = getenv("TEST_REDIS_PORT");
	struct test_ctx *t = calloc(1, sizeof(*t));
	struct err err;
	static int n;

	/* No skipping: the harness must provide Redis. */
	if (h == NULL || p == NULL) {
		fprintf(stderr, "TEST_REDIS_HOST/PORT not set: run under "
		    "tests/harness/servers.py\n");
		return -1;
	}
	snprintf(test_addr, sizeof(test_addr), "%s:%s", h, p);
	snprintf(test_qname, sizeof(test_qname), "t%d_%d", (int)getpid(), n++);
	t->base = event_base_new();
	t->r = redisc_new(t->base, test_addr, NULL, 0, &err);
	t->q = t->r != NULL ? queue_new(t->base, t->r, test_qname, &err) : NULL;
	t->c = redisc_connect_sync(test_addr, NULL, 0, 2000, &err);
	if (t->q == NULL || t->c == NULL) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return -1;
	}
	*st = t;
	return 0;
}

static int test_teardown(void **st)
{
	struct test_ctx *t = *st;

	queue_free(t->q);
	redisc_free(t->r);
	redisFree(t->c);
	event_base_free(t->base);
	free(t);
	return 0;
}

/* Run the loop until *flag is set (or 5 s pass). */
static void test_run_until(struct test_ctx *t, int *flag)
{
	int i;

	for (i = 0; i < 500 && !*flag; i++)
		event_base_loop(t->base, EVLOOP_ONCE | EVLOOP_NONBLOCK),
		    usleep(10000);
	assert_true(*flag);
}

struct test_put { int done, ok, temp; };

static void test_put_cb(void *arg, int ok, const struct err *err)
{
	struct test_put *p = arg;

	p->done = 1;
	p->ok = ok;
	p->temp = err != NULL ? err->temp : -1;
}

static struct queue_rcpt test_rcpts[] = {
	{ "bob@demo.test", "rfc822;bob@demo.test", 0, NULL, 0 },
	{ "carol@demo.test", NULL, 0, NULL, 0 },
};

static void test_env(struct queue_env *e)
{
	memset(e, 0, sizeof(*e));
	queue_qid_new(e->qid);
	e->sender = "alice@example.net";
	e->rcpts = test_rcpts;
	e->nrcpt = 2;
	e->client_name = "mail.example.net";
	e->client_addr = "192.0.2.7";
	e->helo = "mail.example.net";
	e->proto = "ESMTP";
	e->body8bit = 1;
}

static const char test_data[] = "Subject: t\r\n\r\nbin\0ary \xe9\xff\r\n.\r\n";

static void test_put_and_show(void **st)
{
	struct test_ctx *t = *st;
	struct queue_env e;
	struct test_put p = { 0, 0, 0 };
	struct queue_msg *m;
	struct err err;

	test_env(&e);
	queue_put(t->q, &e, test_data, sizeof(test_data) - 1, test_put_cb, &p);
	assert_int_equal(p.done, 0);   /* never called from inside queue_put */
	test_run_until(t, &p.done);
	assert_int_equal(p.ok, 1);
	assert_int_equal(queue_sync_show(t->c, test_qname, e.qid, &m, &err), 1);
	assert_string_equal(m->env.sender, "alice@example.net");
	assert_int_equal(m->env.nrcpt, 2);
	assert_string_equal(m->env.rcpts[0].addr, "bob@demo.test");
	assert_string_equal(m->env.rcpts[0].orcpt, "rfc822;bob@demo.test");
	assert_null(m->env.rcpts[1].orcpt);
	assert_string_equal(m->env.client_addr, "192.0.2.7");
	assert_int_equal(m->env.body8bit, 1);
	assert_int_equal(m->state, QUEUE_ST_ACTIVE);
	assert_int_equal(m->len, sizeof(test_data) - 1);
	assert_memory_equal(m->data, test_data, sizeof(test_data) - 1);
	queue_msg_free(m);
	/* the same queue id twice is refused */
	memset(&p, 0, sizeof(p));
	queue_put(t->q, &e, "x\r\n", 3, test_put_cb, &p);
	test_run_until(t, &p.done);
	assert_int_equal(p.ok, 0);
	assert_int_equal(p.temp, 1);
	assert_int_equal(queue_sync_show(t->c, test_qname, "NOSUCH", &m, &err), 0);
	assert_int_equal(queue_sync_show(t->c, test_qname, "../x", &m, &err), -1);
}

/* The daemons run the queue's scripts by EVALSHA. After an operator's
 * SCRIPT FLUSH the next put fails as a temporary error (the SMTP client
 * is told 4xx and sends again) and the scripts are loaded again, so the
 * put after it is stored; nothing half-written either way. */
static void test_script_flush(void **st)
{
	struct test_ctx *t = *st;
	struct test_put p = { 0, 0, 0 };
	struct queue_env e;
	struct queue_msg *m;
	struct err err;
	redisReply *rep;

	test_env(&e);
	queue_put(t->q, &e, test_data, sizeof(test_data) - 1, test_put_cb, &p);
	test_run_until(t, &p.done);
	assert_int_equal(p.ok, 1);
	rep = redisCommand(t->c, "SCRIPT FLUSH");
	assert_non_null(rep);
	freeReplyObject(rep);
	test_env(&e);
	memset(&p, 0, sizeof(p));
	queue_put(t->q, &e, test_data, sizeof(test_data) - 1, test_put_cb, &p);
	test_run_until(t, &p.done);
	assert_int_equal(p.ok, 0);
	assert_int_equal(p.temp, 1);
	assert_int_equal(queue_sync_show(t->c, test_qname, e.qid, &m, &err), 0);
	memset(&p, 0, sizeof(p));
	queue_put(t->q, &e, test_data, sizeof(test_data) - 1, test_put_cb, &p);
	test_run_until(t, &p.done);
	assert_int_equal(p.ok, 1);
	assert_int_equal(queue_sync_show(t->c, test_qname, e.qid, &m, &err), 1);
	queue_msg_free(m);
}

struct test_claim { int done; struct queue_msg **msgs; size_t n; };

static void test_claim_cb(void *arg, struct queue_msg **msgs, size_t n,
    const struct err *err)
{
	struct test_claim *c = arg;

	c->done = 1;
	c->msgs = msgs;
	c->n = n;
}

static struct queue_msg *test_claim_one(struct test_ctx *t, int lease,
    size_t expect)
{
	struct test_claim c = { 0, NULL, 0 };
	struct queue_msg *m = NULL;

	queue_claim(t->q, 10, lease, test_claim_cb, &c);
	test_run_until(t, &c.done);
	assert_int_equal(c.n, expect);
	if (c.n > 0) {
		m = c.msgs[0];
		c.msgs[0] = NULL;
	}
	queue_msgs_free(c.msgs, c.n);
	return m;
}

/* One claim of several messages: the lease comes from the script, each
 * envelope and data from their own HGETALL and GET; every message must get
 * its own, and a record whose data is gone is still handed out, empty. */
static void test_claim_batch_fetch(void **st)
{
	struct test_ctx *t = *st;
	struct queue_env e[3];
	struct test_claim c = { 0, NULL, 0 };
	const char *data[3] = { "one\r\n", "two two\r\n", "three three three\r\n" };
	struct err err;
	redisReply *rep;
	size_t i, k, seen = 0;

	for (i = 0; i < 3; i++) {
		test_env(&e[i]);
		assert_int_equal(queue_sync_put(t->c, test_qname, &e[i], data[i],
		    strlen(data[i]), &err), 0);
	}
	rep = redisCommand(t->c, "DEL mq:%s:d:%s", test_qname, e[1].qid);
	assert_non_null(rep);
	assert_int_equal(rep->integer, 1);
	freeReplyObject(rep);
	queue_claim(t->q, 10, 30, test_claim_cb, &c);
	test_run_until(t, &c.done);
	assert_int_equal(c.n, 3);
	for (k = 0; k < c.n; k++) {
		struct queue_msg *m = c.msgs[k];

		for (i = 0; i < 3 && strcmp(m->env.qid, e[i].qid) != 0; i++)
			;
		assert_true(i < 3);
		seen |= 1u << i;
		assert_true(m->lease > 0);
		assert_string_equal(m->env.rcpts[1].addr, "carol@demo.test");
		if (i == 1) {
			assert_int_equal(m->len, 0);
		} else {
			assert_int_equal(m->len, strlen(data[i]));
			assert_memory_equal(m->data, data[i], m->len);
		}
		for (size_t j = 0; j < k; j++)
			assert_true(c.msgs[j]->lease != m->lease);
	}
	assert_int_equal(seen, 7);
	queue_msgs_free(c.msgs, c.n);
}

static void test_claim_lease_takeover(void **st)
{
	struct test_ctx *t = *st;
	struct queue_env e;
	struct queue_msg *m1, *m2;
	struct err err;
	struct queue_counts qc;
	struct test_put p = { 0, 0, 0 };

	test_env(&e);
	assert_int_equal(queue_sync_put(t->c, test_qname, &e, "a\r\n", 3, &err), 0);
	m1 = test_claim_one(t, 1, 1);
	assert_string_equal(m1->env.qid, e.qid);
	assert_memory_equal(m1->data, "a\r\n", 3);
	/* leased: nobody else gets it */
	assert_null(test_claim_one(t, 1, 0));
	/* the worker "dies": after the lease another one takes over */
	usleep(1100 * 1000);
	m2 = test_claim_one(t, 30, 1);
	assert_true(m2->lease != m1->lease);
	/* the dead worker's late result is refused */
	m1->env.rcpts[0].state = QUEUE_RCPT_DONE;
	m1->env.rcpts[1].state = QUEUE_RCPT_DONE;
	queue_finish(t->q, m1, 0, test_put_cb, &p);
	test_run_until(t, &p.done);
	assert_int_equal(p.ok, 0);
	queue_msg_free(m1);
	assert_int_equal(queue_sync_show(t->c, test_qname, e.qid, &m1, &err), 1);
	assert_int_equal(m1->env.rcpts[0].state, QUEUE_RCPT_PENDING);
	queue_msg_free(m1);
	/* the new owner: one delivered, one deferred */
	m2->env.rcpts[0].state = QUEUE_RCPT_DONE;
	m2->env.rcpts[1].error = strdup("451 4.3.0 try later");
	m2->env.rcpts[1].attempts = 1;
	m2->attempts = 1;
	memset(&p, 0, sizeof(p));
	queue_finish(t->q, m2, 4102444800000LL, test_put_cb, &p);
	test_run_until(t, &p.done);
	assert_int_equal(p.ok, 1);
	queue_msg_free(m2);
	assert_int_equal(queue_sync_counts(t->c, test_qname, &qc, &err), 0);
	assert_int_equal(qc.deferred, 1);
	assert_int_equal(qc.active, 0);
	assert_null(test_claim_one(t, 30, 0));
	assert_int_equal(queue_sync_show(t->c, test_qname, e.qid, &m1, &err), 1);
	assert_int_equal(m1->state, QUEUE_ST_DEFERRED);
	assert_int_equal(m1->env.rcpts[0].state, QUEUE_RCPT_DONE);
	assert_int_equal(m1->env.rcpts[1].state, QUEUE_RCPT_PENDING);
	assert_string_equal(m1->env.rcpts[1].error, "451 4.3.0 try later");
	assert_int_equal(m1->next_ms, 4102444800000LL);
	queue_msg_free(m1);
	/* flush makes it due; delivering the rest deletes it */
	assert_int_equal(queue_sync_flush(t->c, test_qname, NULL, &err), 1);
	m2 = test_claim_one(t, 30, 1);
	assert_int_equal(m2->env.rcpts[0].state, QUEUE_RCPT_DONE);
	m2->env.rcpts[1].state = QUEUE_RCPT_DONE;
	memset(&p, 0, sizeof(p));
	queue_finish(t->q, m2, 0, test_put_cb, &p);
	test_run_until(t, &p.done);
	assert_int_equal(p.ok, 1);
	queue_msg_free(m2);
	assert_int_equal(queue_sync_show(t->c, test_qname, e.qid, &m1, &err), 0);
	assert_int_equal(queue_sync_counts(t->c, test_qname, &qc, &err), 0);
	assert_int_equal(qc.total, 0);
}

static void test_hold_release_delete(void **st)
{
	struct test_ctx *t = *st;
	struct queue_env e1, e2;
	struct queue_msg **msgs, *m;
	struct queue_counts qc;
	struct err err;
	size_t n;

	test_env(&e1);
	test_env(&e2);
	assert_int_equal(queue_sync_put(t->c, test_qname, &e1, "1\r\n", 3, &err), 0);
	assert_int_equal(queue_sync_put(t->c, test_qname, &e2, "22\r\n", 4, &err), 0);
	assert_int_equal(queue_sync_hold(t->c, test_qname, e1.qid, &err), 1);
	assert_int_equal(queue_sync_hold(t->c, test_qname, e1.qid, &err), 0);
	assert_int_equal(queue_sync_counts(t->c, test_qname, &qc, &err), 0);
	assert_int_equal(qc.hold, 1);
	assert_int_equal(qc.active, 1);
	/* a held message is never claimed */
	m = test_claim_one(t, 30, 1);
	assert_string_equal(m->env.qid, e2.qid);
	queue_msg_free(m);
	assert_int_equal(queue_sync_list(t->c, test_qname, &msgs, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(msgs[1]->env.qid, e1.qid);
	assert_int_equal(msgs[1]->state, QUEUE_ST_HOLD);
	assert_int_equal(msgs[1]->len, 3);
	assert_null(msgs[1]->data);
	queue_msgs_free(msgs, n);
	assert_int_equal(queue_sync_release(t->c, test_qname, e1.qid, &err), 1);
	m = test_claim_one(t, 30, 1);
	assert_string_equal(m->env.qid, e1.qid);
	queue_msg_free(m);
	assert_int_equal(queue_sync_delete(t->c, test_qname, e1.qid, &err), 1);
	assert_int_equal(queue_sync_delete(t->c, test_qname, e1.qid, &err), 0);
	assert_int_equal(queue_sync_delete(t->c, test_qname, e2.qid, &err), 1);
	assert_int_equal(queue_sync_counts(t->c, test_qname, &qc, &err), 0);
	assert_int_equal(qc.total, 0);
}

struct test_rate { int done; long n; };

static void test_rate_cb(void *arg, long n)
{
	struct test_rate *r = arg;

	r->done = 1;
	r->n = n;
}

static void test_rate_counter(void **st)
{
	struct test_ctx *t = *st;
	struct test_rate r;
	char key[64];
	redisReply *rep;
	int i;

	snprintf(key, sizeof(key), "rate:%s", test_qname);
	for (i = 1; i <= 3; i++) {
		memset(&r, 0, sizeof(r));
		redisc_rate_hit(t->r, key, 60, test_rate_cb, &r);
		test_run_until(t, &r.done);
		assert_int_equal(r.n, i);
	}
	rep = redisCommand(t->c, "TTL %s", key);
	assert_non_null(rep);
	assert_true(rep->integer > 0 && rep->integer <= 60);
	freeReplyObject(rep);
}

static void test_redis_down(void **st)
{
	struct test_ctx *t = *st;
	struct event_base *base = event_base_new();
	struct redisc *r;
	struct queue *q;
	struct queue_env e;
	struct test_put p = { 0, 0, 0 };
	struct test_rate rt = { 0, 0 };
	struct err err;
	int i;

	/* port 1 on loopback: nothing listens */
	r = redisc_new(base, "127.0.0.1:1", NULL, 0, &err);
	assert_non_null(r);
	q = queue_new(base, r, "down", &err);
	test_env(&e);
	for (i = 0; i < 20; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(5000);
	assert_int_equal(redisc_connected(r), 0);
	queue_put(q, &e, "x\r\n", 3, test_put_cb, &p);
	redisc_rate_hit(r, "k", 10, test_rate_cb, &rt);
	for (i = 0; i < 200 && !(p.done && rt.done); i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(5000);
	assert_int_equal(p.done, 1);
	assert_int_equal(p.ok, 0);
	assert_int_equal(p.temp, 1);
	assert_int_equal(rt.n, -1);
	queue_free(q);
	redisc_free(r);
	event_base_free(base);
	(void)t;
}

static void test_durable_check(void **st)
{
	struct test_ctx *t = *st;
	struct err err;
	redisReply *rep;

	/* the harness runs Redis with appendfsync always */
	assert_int_equal(redisc_check_durable(test_addr, NULL, &err), 0);
	rep = redisCommand(t->c, "CONFIG SET appendfsync everysec");
	freeReplyObject(rep);
	assert_int_equal(redisc_check_durable(test_addr, NULL, &err), -1);
	assert_int_equal(err.temp, 0);
	assert_non_null(strstr(err.msg, "appendfsync"));
	rep = redisCommand(t->c, "CONFIG SET appendfsync always");
	freeReplyObject(rep);
	assert_int_equal(redisc_check_durable("127.0.0.1:1", NULL, &err), -1);
	assert_int_equal(err.temp, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_and_show, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_claim_batch_fetch, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_claim_lease_takeover, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_hold_release_delete, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_rate_counter, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_redis_down, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_script_flush, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_durable_check, test_setup, test_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
