/* fsgroup: group commit of fsyncs (see fsgroup.h). The requests live on
 * their callers' stacks; the group only links them while they wait. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsgroup.h"

/* Below this many descriptors on one file system, a batch is cheaper as
 * plain fsyncs: syncfs + fsync is two flushes already. */
#define FSGROUP_MIN_SYNCFS 3

struct fsgroup_req {
	struct fsgroup_req *next;
	int fd;
	dev_t dev;
	int done;
	int err;              /* errno of the sync, 0 for success */
	int via_syncfs;       /* made durable by the batch's syncfs */
	pthread_cond_t wake;  /* done, or time to lead the next batch */
};

struct fsgroup {
	pthread_mutex_t lock;
	struct fsgroup_req *pending;  /* queued, not yet taken by a leader */
	int busy;                     /* a leader is syncing a batch */
	unsigned long batches, covered;
	int (*fsync_fn)(int fd);
	int (*syncfs_fn)(int fd);
};

struct fsgroup *fsgroup_new_calls(int (*fsync_fn)(int fd),
				  int (*syncfs_fn)(int fd))
{
	struct fsgroup *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	pthread_mutex_init(&g->lock, NULL);
	g->fsync_fn = fsync_fn != NULL ? fsync_fn : fsync;
	g->syncfs_fn = syncfs_fn != NULL ? syncfs_fn : syncfs;
	return g;
}

struct fsgroup *fsgroup_new(void)
{
	return fsgroup_new_calls(NULL, NULL);
}

void fsgroup_free(struct fsgroup *g)
{
	if (g == NULL)
		return;
	pthread_mutex_destroy(&g->lock);
	free(g);
}

static int fsgroup_fsync(const struct fsgroup *g, int fd)
{
	return g->fsync_fn(fd) < 0 ? errno : 0;
}

/* All requests of one device from `first` on. syncfs(2) writes back and
 * waits for every dirty inode and buffer of the file system. On ext4
 * without a journal its own cache flush comes before its last wait on the
 * block device's buffers (inode tables, directory blocks), so the fsync
 * that follows is what flushes those: after it, all of them are durable.
 * With a journal, syncfs commits it and the fsync adds little. */
static void fsgroup_sync_dev(struct fsgroup *g, struct fsgroup_req *first,
			     int n)
{
	int err;

	if (n < FSGROUP_MIN_SYNCFS) {
		for (struct fsgroup_req *r = first; r != NULL; r = r->next)
			if (r->dev == first->dev)
				r->err = fsgroup_fsync(g, r->fd);
		return;
	}
	err = g->syncfs_fn(first->fd) < 0 ? errno :
	      fsgroup_fsync(g, first->fd);
	for (struct fsgroup_req *r = first; r != NULL; r = r->next) {
		if (r->dev != first->dev)
			continue;
		r->err = err;
		r->via_syncfs = (err == 0 && r != first);
	}
	pthread_mutex_lock(&g->lock);
	g->batches++;
	g->covered += (unsigned long)n;
	pthread_mutex_unlock(&g->lock);
}

/* The leader's work, without the lock: each device once. */
static void fsgroup_run(struct fsgroup *g, struct fsgroup_req *batch)
{
	for (struct fsgroup_req *r = batch; r != NULL; r = r->next) {
		struct fsgroup_req *q;
		int n = 0, seen = 0;

		for (q = batch; q != r && !seen; q = q->next)
			seen = (q->dev == r->dev);
		if (seen)
			continue;
		for (q = r; q != NULL; q = q->next)
			n += (q->dev == r->dev);
		fsgroup_sync_dev(g, r, n);
	}
}

int fsgroup_sync(struct fsgroup *g, int fd)
{
	struct fsgroup_req req = { .fd = fd };
	struct stat st;

	if (g == NULL)
		return fsync(fd);
	if (fstat(fd, &st) < 0)
		return -1;
	req.dev = st.st_dev;
	pthread_cond_init(&req.wake, NULL);
	pthread_mutex_lock(&g->lock);
	req.next = g->pending;
	g->pending = &req;
	while (!req.done) {
		struct fsgroup_req *batch, *r;

		if (g->busy) {
			pthread_cond_wait(&req.wake, &g->lock);
			continue;
		}
		/* Lead: everything queued so far was written before now. */
		batch = g->pending;
		g->pending = NULL;
		g->busy = 1;
		pthread_mutex_unlock(&g->lock);
		fsgroup_run(g, batch);
		pthread_mutex_lock(&g->lock);
		/* Wake each member once, and one of those queued meanwhile to
		 * lead them: no thread wakes only to sleep again. */
		for (r = batch; r != NULL; r = r->next) {
			r->done = 1;
			if (r != &req)
				pthread_cond_signal(&r->wake);
		}
		g->busy = 0;
		if (g->pending != NULL)
			pthread_cond_signal(&g->pending->wake);
	}
	pthread_mutex_unlock(&g->lock);
	pthread_cond_destroy(&req.wake);
	/* syncfs reports the file system's write-back errors only from the
	 * leader's point of view; this file's own (a failed write-back of its
	 * pages) shows here, without another flush: nothing is dirty. */
	if (req.err == 0 && req.via_syncfs &&
	    sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE |
			    SYNC_FILE_RANGE_WRITE |
			    SYNC_FILE_RANGE_WAIT_AFTER) < 0)
		req.err = errno;
	if (req.err != 0) {
		errno = req.err;
		return -1;
	}
	return 0;
}

void fsgroup_stats(struct fsgroup *g, unsigned long *batches,
		   unsigned long *covered)
{
	pthread_mutex_lock(&g->lock);
	*batches = g->batches;
	*covered = g->covered;
	pthread_mutex_unlock(&g->lock);
}
