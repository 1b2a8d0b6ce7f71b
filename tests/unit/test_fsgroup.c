/* Tests for fsgroup: the group commit of Maildir delivery's fsyncs. Real
 * files; many threads at once on the real disk, and one batch made to
 * form by holding the first leader in its fsync, so the batch's syncs
 * and results can be counted whatever the disk's speed. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "fsgroup.h"

#define THREADS 12
#define FILES_EACH 40

static char dir[64];

static int setup(void **st)
{
	snprintf(dir, sizeof(dir), "/tmp/test-fsgroup.XXXXXX");
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **st)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int write_file(const char *name, size_t len)
{
	char path[160], block[4096];
	int fd;

	memset(block, 'x', sizeof(block));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, block, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_alone_is_fsync(void **st)
{
	struct fsgroup *g = fsgroup_new();
	unsigned long batches = 9, covered = 9;
	int fd = write_file("one", 100);

	assert_non_null(g);
	assert_true(fd >= 0);
	assert_int_equal(fsgroup_sync(g, fd), 0);
	assert_int_equal(fsgroup_sync(NULL, fd), 0);
	/* one request is a batch of one: a plain fsync, no syncfs */
	fsgroup_stats(g, &batches, &covered);
	assert_int_equal(batches, 0);
	assert_int_equal(covered, 0);
	close(fd);
	fsgroup_free(g);
	fsgroup_free(NULL);
}

static void test_error_reaches_caller(void **st)
{
	struct fsgroup *g = fsgroup_new();
	int p[2];

	assert_int_equal(pipe(p), 0);
	/* fsync(2) of a pipe is EINVAL: the caller gets it, as from fsync */
	errno = 0;
	assert_int_equal(fsgroup_sync(g, p[0]), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(fsgroup_sync(NULL, p[0]), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(fsgroup_sync(g, -1), -1);
	assert_int_equal(errno, EBADF);
	close(p[0]);
	close(p[1]);
	fsgroup_free(g);
}

struct worker {
	struct fsgroup *g;
	pthread_barrier_t *start;
	int id, ok, bad, pipe_fd;
};

/* Each worker writes and syncs its files; one of them syncs a pipe
 * instead, which must fail alone while the files do not. */
static void *worker_run(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(w->start);
	for (int i = 0; i < FILES_EACH; i++) {
		char name[32];
		int fd;

		if (w->pipe_fd >= 0) {
			if (fsgroup_sync(w->g, w->pipe_fd) < 0 &&
			    errno == EINVAL)
				w->bad++;
			continue;
		}
		snprintf(name, sizeof(name), "w%d.%d", w->id, i);
		fd = write_file(name, 4096);
		if (fd < 0)
			continue;
		if (fsgroup_sync(w->g, fd) == 0)
			w->ok++;
		close(fd);
	}
	return NULL;
}

/* Many threads at once on the real disk: every file is synced, the
 * pipe's error reaches its own thread only, and what batches formed
 * covered files only (how many form depends on the disk's speed). */
static void test_threads_at_once(void **st)
{
	struct fsgroup *g = fsgroup_new();
	pthread_barrier_t start;
	pthread_t t[THREADS];
	struct worker w[THREADS];
	unsigned long batches = 0, covered = 0;
	int p[2], files = 0;

	assert_int_equal(pipe(p), 0);
	pthread_barrier_init(&start, NULL, THREADS);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .g = g, .start = &start, .id = i,
					.pipe_fd = i == 0 ? p[0] : -1 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_run,
						&w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		files += w[i].ok;
	}
	assert_int_equal(w[0].bad, FILES_EACH);
	assert_int_equal(files, (THREADS - 1) * FILES_EACH);
	fsgroup_stats(g, &batches, &covered);
	assert_true(covered >= 3 * batches);
	assert_true(covered <= (unsigned long)files);
	pthread_barrier_destroy(&start);
	close(p[0]);
	close(p[1]);
	fsgroup_free(g);
}

/* ---- one batch, made to happen: the first fsync (the first leader's)
 * waits until the others have queued behind it ---- */

#define QUEUED 5

static sem_t leader_in, leader_go, queuing;
static int fsyncs, syncfses, syncfs_errno;

static int held_fsync(int fd)
{
	if (__atomic_add_fetch(&fsyncs, 1, __ATOMIC_SEQ_CST) == 1) {
		sem_post(&leader_in);
		sem_wait(&leader_go);
	}
	return fsync(fd);
}

static int failing_syncfs(int fd)
{
	__atomic_add_fetch(&syncfses, 1, __ATOMIC_SEQ_CST);
	if (syncfs_errno != 0) {
		errno = syncfs_errno;
		return -1;
	}
	return syncfs(fd);
}

struct one {
	struct fsgroup *g;
	int fd, rc, err;
	int signal;           /* post `queuing` first */
};

static void *one_sync(void *arg)
{
	struct one *o = arg;

	if (o->signal)
		sem_post(&queuing);
	errno = 0;
	o->rc = fsgroup_sync(o->g, o->fd);
	o->err = errno;
	return NULL;
}

/* The first leader syncs its own file alone; the five files and the pipe
 * queued meanwhile are the next batch: one syncfs and one fsync for the
 * files, the pipe (another file system) on its own. A failed syncfs
 * reaches each of the five. */
static void run_batch(int fail, struct one *lead, struct one *q,
		      struct one *pipe_one)
{
	struct fsgroup *g = fsgroup_new_calls(held_fsync, failing_syncfs);
	pthread_t tl, tq[QUEUED + 1];
	unsigned long batches, covered;
	int p[2];

	fsyncs = syncfses = 0;
	syncfs_errno = fail;
	sem_init(&leader_in, 0, 0);
	sem_init(&leader_go, 0, 0);
	sem_init(&queuing, 0, 0);
	assert_int_equal(pipe(p), 0);
	*lead = (struct one){ .g = g, .fd = write_file("lead", 100) };
	assert_int_equal(pthread_create(&tl, NULL, one_sync, lead), 0);
	sem_wait(&leader_in);
	for (int i = 0; i < QUEUED + 1; i++) {
		char name[16];
		struct one *o = i < QUEUED ? &q[i] : pipe_one;

		snprintf(name, sizeof(name), "q%d", i);
		*o = (struct one){ .g = g, .signal = 1,
				   .fd = i < QUEUED ? write_file(name, 4096) :
					 p[0] };
		assert_true(o->fd >= 0);
		assert_int_equal(pthread_create(&tq[i], NULL, one_sync, o), 0);
	}
	for (int i = 0; i < QUEUED + 1; i++)
		sem_wait(&queuing);
	usleep(200 * 1000);     /* from the post to the queue: an fstat */
	sem_post(&leader_go);
	pthread_join(tl, NULL);
	for (int i = 0; i < QUEUED + 1; i++)
		pthread_join(tq[i], NULL);
	/* the leader's fsync, the batch's syncfs and fsync, the pipe's */
	assert_int_equal(syncfses, 1);
	assert_int_equal(fsyncs, fail ? 2 : 3);
	fsgroup_stats(g, &batches, &covered);
	assert_int_equal(batches, 1);
	assert_int_equal(covered, QUEUED);
	close(lead->fd);
	for (int i = 0; i < QUEUED; i++)
		close(q[i].fd);
	close(p[0]);
	close(p[1]);
	fsgroup_free(g);
}

static void test_batch_syncs_once(void **st)
{
	struct one lead, q[QUEUED], pipe_one;

	run_batch(0, &lead, q, &pipe_one);
	assert_int_equal(lead.rc, 0);
	for (int i = 0; i < QUEUED; i++)
		assert_int_equal(q[i].rc, 0);
	assert_int_equal(pipe_one.rc, -1);
	assert_int_equal(pipe_one.err, EINVAL);
}

static void test_batch_error_reaches_all(void **st)
{
	struct one lead, q[QUEUED], pipe_one;

	run_batch(EIO, &lead, q, &pipe_one);
	assert_int_equal(lead.rc, 0);
	for (int i = 0; i < QUEUED; i++) {
		assert_int_equal(q[i].rc, -1);
		assert_int_equal(q[i].err, EIO);
	}
	assert_int_equal(pipe_one.err, EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alone_is_fsync),
		cmocka_unit_test(test_error_reaches_caller),
		cmocka_unit_test(test_threads_at_once),
		cmocka_unit_test(test_batch_syncs_once),
		cmocka_unit_test(test_batch_error_reaches_all),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
