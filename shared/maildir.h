/* maildir: crash-safe delivery into Maildir / Maildir++ folders, shared by
 * the submission MDA and the mra (IMAP APPEND). Every call here blocks on
 * the file system (mkdir, fsync, rename): run it on the worker pool, never
 * on the event loop. Library code: fills struct err, does not log. */
#ifndef MAILDIR_H
#define MAILDIR_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "err.h"

/* Room for a file name produced by maildir_deliver() (without folder). */
#define MAILDIR_NAME_MAX 256

/* Create path (and its missing parents) plus path/tmp, path/new, path/cur,
 * mode 0700, owned by uid:gid (chown is tried only when running as root, or
 * when uid/gid differ from ours; uid (uid_t)-1 keeps the owner). An
 * existing complete Maildir is fine. Returns 0 or -1 (err filled; temp=1). */
int maildir_make(const char *path, uid_t uid, gid_t gid, struct err *err);

/* Deliver one message: open tmp/<name> (O_EXCL), write iov, fsync, rename to
 * subdir/<name><info>, fsync subdir. Never leaves a partial file in new/ or
 * cur/; on failure the tmp file is removed.
 *
 * name: "<sec>.M<usec>P<pid>Q<n>.<host>,S=<size>" (Maildir++ S= is the byte
 * size, so readers get sizes without stat). When stem is non-NULL the
 * unique part is replaced by the stem: "<stem>.<host>,S=<size>" -- stem must
 * be a safe token ([A-Za-z0-9_.-], no '/', ':' or ',') derived by the caller
 * from (queue id, recipient) so a redelivery can be detected: if new/ holds
 * a file of exactly that name, nothing is written and 1 is returned (name_r
 * gets the name). This check is one stat(); a reader may have moved the
 * file to cur/ meanwhile, so a caller that suspects a redelivery (a retry
 * after an unfinished attempt) first calls maildir_has_stem(), which
 * scans new/ and cur/.
 *
 * subdir: "new" or "cur"; info: NULL or e.g. ":2,S" (appended only for cur).
 * name_r (may be NULL): receives the final file name, without folder.
 * Returns 0 delivered, 1 already present (stem case), -1 error (err filled:
 * temp=1 for EDQUOT/ENOSPC/EIO and the like, temp=0 for a bad argument). */
int maildir_deliver(const char *maildir, const char *stem,
		    const struct iovec *iov, int iovcnt,
		    const char *subdir, const char *info,
		    char *name_r, size_t name_n, struct err *err);

/* The same, with both fsyncs done through g (fsgroup.h): concurrent
 * deliveries share their disk flushes. g NULL: maildir_deliver. */
struct fsgroup;
int maildir_deliver_grouped(const char *maildir, const char *stem,
			    const struct iovec *iov, int iovcnt,
			    const char *subdir, const char *info,
			    struct fsgroup *g, char *name_r, size_t name_n,
			    struct err *err);

/* 1 when new/ or cur/ of maildir holds a file named "<stem>.*", 0 when not,
 * -1 on error (err filled). */
int maildir_has_stem(const char *maildir, const char *stem, struct err *err);

/* Pure: the Maildir++ size of a file name (",S=<n>" before ':' or the end),
 * or -1 when the name carries none. */
long long maildir_name_size(const char *name);

/* Pure: write into out a stem safe for maildir_deliver() from arbitrary
 * parts (e.g. queue id and recipient): a hex digest-like token made of
 * [A-Za-z0-9] only. out_n >= 33. Returns 0, or -1 if out_n is too small. */
int maildir_stem(const char *a, const char *b, char *out, size_t out_n);

#endif
