/* fsgroup: group commit of fsyncs. Worker threads that each need one file
 * or directory on stable storage queue its descriptor; the first of them
 * becomes the leader and makes the whole batch durable at once, while the
 * others wait for it. A batch of three or more on one file system costs one
 * syncfs(2) and one fsync(2), two cache flushes of the disk, where one
 * fsync each costs one flush per descriptor (issue 12: Maildir delivery).
 * Smaller batches are plain fsyncs. Blocks: worker threads only. The
 * price: syncfs also waits for whatever else is dirty on that file
 * system, so a big writer beside the mail store slows a batch down. */
#ifndef FSGROUP_H
#define FSGROUP_H

struct fsgroup;

/* NULL when out of memory. */
struct fsgroup *fsgroup_new(void);
/* For tests: the same with the leader's fsync(2) and syncfs(2) replaced
 * (NULL: the real call), to hold a leader while a batch queues, or to
 * make a sync fail. */
struct fsgroup *fsgroup_new_calls(int (*fsync_fn)(int fd),
				  int (*syncfs_fn)(int fd));
/* No thread may be inside fsgroup_sync any more. NULL is fine. */
void fsgroup_free(struct fsgroup *g);

/* Return once everything written to fd (its data and its inode; for a
 * directory, its entries) before the call is on stable storage, as
 * fsync(fd) would. g NULL: fsync(fd). 0, or -1 with errno set. */
int fsgroup_sync(struct fsgroup *g, int fd);

/* Batches that took the syncfs path, and descriptors they covered, since
 * fsgroup_new (for tests). */
void fsgroup_stats(struct fsgroup *g, unsigned long *batches,
		   unsigned long *covered);

#endif
