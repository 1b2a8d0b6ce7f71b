/* Tests for work: jobs run on worker threads, their done callbacks on the
 * loop thread; freeing the pool runs every outstanding job to the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>
#include "work.h"

struct test_state {
	struct event_base *base;
	struct work_pool *pool;
	pthread_t loop_thread;
	pthread_mutex_t lock;
	pthread_t workers[64];
	int nworkers;
	int fn_on_loop;              /* fn ran on the loop thread: bad */
	int done_off_loop;           /* done ran elsewhere: bad */
	int dones, expected;
	int resubmit_rc;
};

struct test_job {
	struct test_state *st;
	int in, out;
	int resubmit;
	unsigned sid;                /* the session this job belongs to */
};

static void test_fn(void *arg)
{
	struct test_job *j = arg;
	struct test_state *st = j->st;
	int i, seen = 0;

	usleep(2000);
	j->out = j->in * j->in;
	pthread_mutex_lock(&st->lock);
	if (pthread_equal(pthread_self(), st->loop_thread))
		st->fn_on_loop++;
	for (i = 0; i < st->nworkers; i++)
		if (pthread_equal(st->workers[i], pthread_self()))
			seen = 1;
	if (!seen && st->nworkers < 64)
		st->workers[st->nworkers++] = pthread_self();
	pthread_mutex_unlock(&st->lock);
}

static void test_done(void *arg)
{
	struct test_job *j = arg;
	struct test_state *st = j->st;

	if (!pthread_equal(pthread_self(), st->loop_thread))
		st->done_off_loop++;
	assert_int_equal(j->out, j->in * j->in);
	if (j->resubmit)
		st->resubmit_rc = work_submit(st->pool, test_fn, test_done,
					      j);
	if (!j->resubmit || st->resubmit_rc < 0)
		free(j);
	if (++st->dones == st->expected && st->base != NULL)
		event_base_loopexit(st->base, NULL);
}

static struct test_job *test_job_new(struct test_state *st, int in)
{
	struct test_job *j = calloc(1, sizeof(*j));

	assert_non_null(j);
	j->st = st;
	j->in = in;
	return j;
}

static void test_state_init(struct test_state *st, int nthreads)
{
	struct err err;

	memset(st, 0, sizeof(*st));
	pthread_mutex_init(&st->lock, NULL);
	st->loop_thread = pthread_self();
	st->base = event_base_new();
	assert_non_null(st->base);
	st->pool = work_pool_new(st->base, nthreads, &err);
	assert_non_null(st->pool);
}

static void test_state_done(struct test_state *st)
{
	work_pool_free(st->pool);
	event_base_free(st->base);
	pthread_mutex_destroy(&st->lock);
}

static void test_many_jobs(void **unused)
{
	struct test_state st;
	struct timeval tv = { 10, 0 };
	int i;

	test_state_init(&st, 4);
	st.expected = 200;
	for (i = 0; i < st.expected; i++)
		assert_int_equal(work_submit(st.pool, test_fn, test_done,
					     test_job_new(&st, i)), 0);
	assert_true(work_pending(st.pool) > 0);
	event_base_loopexit(st.base, &tv);
	event_base_dispatch(st.base);
	assert_int_equal(st.dones, 200);
	assert_int_equal(work_pending(st.pool), 0);
	assert_int_equal(st.fn_on_loop, 0);
	assert_int_equal(st.done_off_loop, 0);
	/* 200 jobs of 2 ms on 4 threads: more than one thread took part. */
	assert_true(st.nworkers >= 2 && st.nworkers <= 4);
	test_state_done(&st);
}

static void test_free_runs_pending(void **unused)
{
	struct test_state st;
	int i;

	test_state_init(&st, 2);
	st.expected = 30;
	for (i = 0; i < st.expected; i++)
		assert_int_equal(work_submit(st.pool, test_fn, test_done,
					     test_job_new(&st, i)), 0);
	/* No dispatch at all: free must still run every fn and then every
	 * done, here, so each job is freed exactly once. */
	work_pool_free(st.pool);
	st.pool = NULL;
	assert_int_equal(st.dones, 30);
	assert_int_equal(st.done_off_loop, 0);
	assert_int_equal(st.fn_on_loop, 0);
	event_base_free(st.base);
}

static void test_submit_during_free(void **unused)
{
	struct test_state st;
	struct test_job *j;

	test_state_init(&st, 1);
	st.expected = 1;
	j = test_job_new(&st, 3);
	j->resubmit = 1;
	st.resubmit_rc = 1;
	assert_int_equal(work_submit(st.pool, test_fn, test_done, j), 0);
	work_pool_free(st.pool);
	/* The done callback ran inside free and its new submission was
	 * refused, so it freed the job itself. */
	assert_int_equal(st.resubmit_rc, -1);
	assert_int_equal(st.dones, 1);
	event_base_free(st.base);
}

/* The documented pattern: done finds the session by id, which may be gone. */
static unsigned test_live_sid;
static int test_orphans, test_delivered;
static struct event_base *test_session_base;

static void test_session_done(void *arg)
{
	struct test_job *j = arg;

	if (j->sid != test_live_sid)
		test_orphans++;
	else
		test_delivered++;
	free(j);
	if (test_orphans + test_delivered == 2)
		event_base_loopexit(test_session_base, NULL);
}

static void test_session_gone(void **unused)
{
	struct test_state st;
	struct test_job *a, *b;
	struct timeval tv = { 10, 0 };

	test_state_init(&st, 2);
	a = test_job_new(&st, 1);
	b = test_job_new(&st, 2);
	a->sid = 7;
	b->sid = 8;
	test_live_sid = 8;           /* session 7 closed while its job ran */
	test_session_base = st.base;
	assert_int_equal(work_submit(st.pool, test_fn, test_session_done, a),
			 0);
	assert_int_equal(work_submit(st.pool, test_fn, test_session_done, b),
			 0);
	event_base_loopexit(st.base, &tv);
	event_base_dispatch(st.base);
	assert_int_equal(test_orphans, 1);
	assert_int_equal(test_delivered, 1);
	test_state_done(&st);
}

static void test_null_done(void **unused)
{
	struct test_state st;
	struct test_job j;
	struct timeval tv = { 0, 100000 };

	test_state_init(&st, 1);
	memset(&j, 0, sizeof(j));
	j.st = &st;
	j.in = 5;
	assert_int_equal(work_submit(st.pool, test_fn, NULL, &j), 0);
	event_base_loopexit(st.base, &tv);
	event_base_dispatch(st.base);
	assert_int_equal(j.out, 25);
	assert_int_equal(work_pending(st.pool), 0);
	test_state_done(&st);
}

static void test_bad_args(void **unused)
{
	struct event_base *base = event_base_new();
	struct err err;

	err_clear(&err);
	assert_null(work_pool_new(base, 0, &err));
	assert_true(err.msg[0] != '\0');
	assert_null(work_pool_new(NULL, 2, &err));
	assert_int_equal(work_submit(NULL, test_fn, NULL, NULL), -1);
	work_pool_free(NULL);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_many_jobs),
		cmocka_unit_test(test_free_runs_pending),
		cmocka_unit_test(test_submit_during_free),
		cmocka_unit_test(test_session_gone),
		cmocka_unit_test(test_null_done),
		cmocka_unit_test(test_bad_args),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
