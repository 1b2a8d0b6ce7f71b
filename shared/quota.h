/* quota: the Maildir++ "maildirsize" file, so readers (the mra) and the
 * MDA know a mailbox's usage without scanning it. Format (Maildir++):
 * first line the quota definition "<bytes>S" (0 or empty = none), then one
 * "<bytes> <files>" line per change. Blocking (file I/O): worker pool. */
#ifndef QUOTA_H
#define QUOTA_H

#include <sys/types.h>

#include "err.h"

/* Usage recorded in maildir/maildirsize; when the file is missing or
 * unreadable it is rebuilt by scanning new/ and cur/ of the Maildir and its
 * Maildir++ sub-folders (".name"). Returns 0 or -1 (err filled). */
int quota_usage(const char *maildir, long long *bytes_r, long long *files_r,
		struct err *err);

/* Record a change (bytes/files may be negative for expunges). The quota
 * definition line is rewritten when limit differs from the stored one
 * (limit 0 = unlimited); the file is rebuilt when it grows past 5120 bytes,
 * as the Maildir++ spec suggests. uid/gid own a newly created file
 * ((uid_t)-1 keeps ours). Returns 0 or -1 (err filled, temp=1). */
int quota_add(const char *maildir, long long limit, long long bytes,
	      long long files, uid_t uid, gid_t gid, struct err *err);

/* quota_add where maildir/maildirsize exists, nothing where it does not:
 * a mailbox with neither its own nor a domain quota needs no bookkeeping
 * (quota_usage scans a folder without the file, and quota_add starts one
 * when a quota appears). mra follows the same rule. */
int quota_add_kept(const char *maildir, long long limit, long long bytes,
		   long long files, uid_t uid, gid_t gid, struct err *err);

/* A domain's usage for its domain quota (virtual_domain_quota_maps): the
 * sum of quota_usage() over every Maildir directly inside domdir (a
 * folder with cur/; dot-names skipped). A missing domdir is 0 bytes.
 * Deliveries to different mailboxes do not lock each other out, so the
 * domain may overshoot by what is being delivered at that moment.
 * Returns 0 or -1 (err filled, temp=1). */
int quota_domain_usage(const char *domdir, long long *bytes_r, struct err *err);

/* Rescan the Maildir and rewrite maildirsize atomically. */
int quota_recalc(const char *maildir, long long limit, uid_t uid, gid_t gid,
		 struct err *err);

/* The limit recorded in maildirsize's first line (0: none, or no file)
 * and the usage as quota_usage() finds it. Returns 0 or -1 (err). */
int quota_get(const char *maildir, long long *limit_r, long long *bytes_r,
	      long long *files_r, struct err *err);

/* "Is there room?" then "add it" is not atomic in Maildir++ (only each
 * appended line is): writers that must not overshoot the limit together
 * (mra COPY, APPEND, the MDA) hold this lock from the check until their
 * quota_add(). flock(2) on maildir/quota.lock, created owned by uid/gid
 * ((uid_t)-1 keeps ours). Blocks while another holder works. Returns the
 * lock's fd, or -1 (err filled, temp=1). */
int quota_lock(const char *maildir, uid_t uid, gid_t gid, struct err *err);
void quota_unlock(int fd);                  /* -1 does nothing */

/* Pure: would bytes more exceed limit given usage? limit 0 = unlimited.
 * Returns 1 over, 0 fine. */
int quota_over(long long limit, long long used, long long bytes);

/* Pure: parse a maildirsize text. *limit_r gets the S= part of the first
 * line (0 when none), *bytes_r and *files_r the summed lines. Returns the
 * number of lines or -1 on a malformed file (sums that overflow too). */
int quota_parse(const char *text, size_t len, long long *limit_r,
		long long *bytes_r, long long *files_r);

#endif
