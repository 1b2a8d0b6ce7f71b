/* Tests for fsgroup: the group commit of Maildir delivery's fsyncs. Real
 * files on the disk the tests run on; many threads at once so that their
 * requests meet in batches, each batch's result reaching every member. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
 * instead, which must fail alone while the files in its batches do not. */
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

static void test_threads_share_batches(void **st)
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
	/* eleven writers against fsyncs of a millisecond or so: requests
	 * queue behind a leader, and later leaders take them as batches */
	fsgroup_stats(g, &batches, &covered);
	assert_true(batches >= 1);
	assert_true(covered >= 3 * batches);
	assert_true(covered <= (unsigned long)files);
	pthread_barrier_destroy(&start);
	close(p[0]);
	close(p[1]);
	fsgroup_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alone_is_fsync),
		cmocka_unit_test(test_error_reaches_caller),
		cmocka_unit_test(test_threads_share_batches),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
