/* work: a small pool of threads for blocking work (MySQL queries, crypt(),
 * fsync, DNS, SASL steps) whose results are handed back to the libevent
 * loop thread. A job is an opaque pointer the caller owns: fn runs on a
 * worker thread, then done runs on the loop thread and frees it. */
#ifndef WORK_H
#define WORK_H

#include "err.h"

struct event_base;
struct work_pool;

typedef void work_fn(void *job);        /* runs on a worker thread */
typedef void work_done_fn(void *job);   /* runs later on the loop thread */

/* nthreads >= 1. The pool adds one internal event to base (a pipe read end);
 * it does not need evthread_use_pthreads(). NULL on failure (err filled). */
struct work_pool *work_pool_new(struct event_base *base, int nthreads,
				struct err *err);

/* Queue a job: fn(job) on some worker thread, then done(job) (done may be
 * NULL) on the loop thread during event_base_dispatch(). Jobs run in any
 * order and in parallel with each other; fn must touch nothing but the job
 * (no session, no bufferevent, no event_base).
 *
 * The job must own copies of what it needs and carry the session's id, not
 * a pointer to it: by the time done runs the client may have gone, so done
 * looks the session up by id and, when it is not found, just frees the job.
 *
 * Call from the loop thread. Returns 0, or -1 when out of memory or the
 * pool is being freed (then neither fn nor done will run: the caller still
 * owns job). */
int work_submit(struct work_pool *p, work_fn *fn, work_done_fn *done,
		void *job);

/* Jobs submitted and whose done has not run yet. */
unsigned work_pending(struct work_pool *p);

/* Stop the pool. Blocks until every job already submitted has run its fn
 * (queued jobs are NOT dropped), joins the threads, then runs every
 * outstanding done callback right here, on the calling (loop) thread, so
 * each job is freed exactly once and nothing leaks. A done that calls
 * work_submit() at that point gets -1. Call on the loop thread, never from
 * inside a done callback, and before event_base_free().
 * work_pool_free(NULL) does nothing. */
void work_pool_free(struct work_pool *p);

#endif
