/* work: worker threads for blocking jobs. Submitted jobs wait in `todo`;
 * a worker runs fn and moves the job to `done`, then writes one byte to a
 * pipe whose read end is an event on the loop, which runs the done
 * callbacks. The pool owns the list nodes; the caller owns the jobs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include "work.h"

struct work_item {
	struct work_item *next;
	work_fn *fn;
	work_done_fn *done;
	void *job;
};

struct work_list {
	struct work_item *head, *tail;
};

struct work_pool {
	pthread_mutex_t lock;
	pthread_cond_t wake;            /* todo not empty, or stopping */
	struct work_list todo, done;
	unsigned pending;               /* submitted, done not yet run */
	int stopping;
	int nthreads;
	pthread_t *threads;
	int pipe_r, pipe_w;
	int signalled;                  /* a byte is in the pipe */
	struct event *ev;
};

static void work_list_push(struct work_list *l, struct work_item *it)
{
	it->next = NULL;
	if (l->tail != NULL)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
}

static struct work_item *work_list_pop(struct work_list *l)
{
	struct work_item *it = l->head;

	if (it != NULL) {
		l->head = it->next;
		if (l->head == NULL)
			l->tail = NULL;
	}
	return it;
}

/* Called with the lock held: wake the loop once per batch of results. */
static void work_signal(struct work_pool *p)
{
	char c = 1;
	ssize_t r;

	if (p->signalled)
		return;
	do
		r = write(p->pipe_w, &c, 1);
	while (r < 0 && errno == EINTR);
	/* A full pipe already holds a wake-up byte, so EAGAIN is fine. */
	p->signalled = 1;
}

static void *work_thread(void *arg)
{
	struct work_pool *p = arg;
	struct work_item *it;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->todo.head == NULL && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
		it = work_list_pop(&p->todo);
		if (it == NULL)
			break;          /* stopping and nothing left to run */
		pthread_mutex_unlock(&p->lock);
		it->fn(it->job);
		pthread_mutex_lock(&p->lock);
		work_list_push(&p->done, it);
		work_signal(p);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Run the done callbacks of finished jobs on the calling (loop) thread. */
static void work_run_done(struct work_pool *p)
{
	struct work_list batch;
	struct work_item *it;
	char drain[64];

	pthread_mutex_lock(&p->lock);
	while (read(p->pipe_r, drain, sizeof(drain)) > 0)
		;
	p->signalled = 0;
	batch = p->done;
	p->done.head = p->done.tail = NULL;
	pthread_mutex_unlock(&p->lock);

	while ((it = work_list_pop(&batch)) != NULL) {
		if (it->done != NULL)
			it->done(it->job);
		free(it);
		pthread_mutex_lock(&p->lock);
		p->pending--;
		pthread_mutex_unlock(&p->lock);
	}
}

static void work_event_cb(evutil_socket_t fd, short what, void *arg)
{
	work_run_done(arg);
}

static int work_pool_pipe(struct work_pool *p, struct err *err)
{
	int fds[2];

	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return err_set(err, 1, "work: pipe: %s", strerror(errno));
	p->pipe_r = fds[0];
	p->pipe_w = fds[1];
	return 0;
}

static int work_pool_start(struct work_pool *p, int nthreads, struct err *err)
{
	int i, rc;

	p->threads = calloc(nthreads, sizeof(*p->threads));
	if (p->threads == NULL)
		return err_set(err, 1, "work: out of memory");
	for (i = 0; i < nthreads; i++) {
		rc = pthread_create(&p->threads[i], NULL, work_thread, p);
		if (rc != 0) {
			err_set(err, 1, "work: pthread_create: %s",
				strerror(rc));
			break;
		}
		p->nthreads++;
	}
	return p->nthreads == nthreads ? 0 : -1;
}

struct work_pool *work_pool_new(struct event_base *base, int nthreads,
				struct err *err)
{
	struct work_pool *p;

	if (base == NULL || nthreads < 1 || nthreads > 1024) {
		err_set(err, 0, "work: bad pool size %d", nthreads);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		err_set(err, 1, "work: out of memory");
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->pipe_r = p->pipe_w = -1;
	if (work_pool_pipe(p, err) < 0)
		goto fail;
	p->ev = event_new(base, p->pipe_r, EV_READ | EV_PERSIST,
			  work_event_cb, p);
	if (p->ev == NULL || event_add(p->ev, NULL) < 0) {
		err_set(err, 1, "work: cannot add the pool's event");
		goto fail;
	}
	if (work_pool_start(p, nthreads, err) < 0)
		goto fail;
	return p;
fail:
	work_pool_free(p);
	return NULL;
}

int work_submit(struct work_pool *p, work_fn *fn, work_done_fn *done,
		void *job)
{
	struct work_item *it;

	if (p == NULL || fn == NULL)
		return -1;
	it = malloc(sizeof(*it));
	if (it == NULL)
		return -1;
	it->fn = fn;
	it->done = done;
	it->job = job;
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		pthread_mutex_unlock(&p->lock);
		free(it);
		return -1;
	}
	work_list_push(&p->todo, it);
	p->pending++;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

unsigned work_pending(struct work_pool *p)
{
	unsigned n;

	if (p == NULL)
		return 0;
	pthread_mutex_lock(&p->lock);
	n = p->pending;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void work_pool_free(struct work_pool *p)
{
	int i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	/* Workers leave only once todo is empty, so every fn has run. */
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	if (p->pipe_r >= 0)
		work_run_done(p);
	if (p->ev != NULL)
		event_free(p->ev);
	if (p->pipe_r >= 0)
		close(p->pipe_r);
	if (p->pipe_w >= 0)
		close(p->pipe_w);
	free(p->threads);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
