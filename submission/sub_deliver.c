/* sub_deliver: local delivery into Maildir (maildir.c) or mbox. A
 * success means the bytes are fsynced under their final name. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "maildir.h"
#include "quota.h"
#include "sub_deliver.h"
#include "sub_policy.h"

#define SUB_DELIVER_LOCK_TRIES 100      /* x 100 ms */
#define SUB_DELIVER_LOCK_STALE 300      /* seconds: a dot-lock this old is stale */

static int sub_deliver_prefix(struct buf *b, const struct sub_target *t,
			      const char *sender)
{
	/* RFC 5321 §4.4: the delivering MTA adds Return-Path; Delivered-To
	 * is Postfix's loop marker, checked on the next pass. */
	return buf_printf(b, "Return-Path: <%s>\r\nDelivered-To: %s\r\n",
			  sender, t->addr);
}

/* virtual_domain_quota_maps: all the domain's mailboxes together. */
static int sub_deliver_over_domain(const struct sub_target *t, long long size,
				   struct err *err)
{
	long long bytes = 0;

	if (!t->local || t->domain_quota <= 0 || t->domain_dir == NULL)
		return 0;
	if (quota_domain_usage(t->domain_dir, &bytes, err) < 0)
		return -1;
	return quota_over(t->domain_quota, bytes, size) ? 2 : 0;
}

int sub_deliver_quota_io(const struct sub_target *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].fail == NULL && t[i].local &&
		    (t[i].quota > 0 || t[i].domain_quota > 0))
			return 1;
	return 0;
}

int sub_deliver_over_quota(const struct sub_target *t, long long size,
			   struct err *err)
{
	long long bytes = 0, files = 0;
	struct stat st;
	int rc = sub_deliver_over_domain(t, size, err);

	if (rc != 0)
		return rc;
	if (!t->local || t->quota <= 0)
		return 0;
	if (!t->maildir)
		return quota_over(t->quota, stat(t->path, &st) == 0 ?
				  (long long)st.st_size : 0, size);
	if (stat(t->path, &st) < 0)
		return quota_over(t->quota, 0, size);  /* no Maildir yet */
	if (quota_usage(t->path, &bytes, &files, err) < 0)
		return -1;
	return quota_over(t->quota, bytes, size);
}

static enum sub_deliver_rc sub_deliver_maildir(const struct sub_target *t,
					       const char *key, int scan,
					       const struct iovec *iov,
					       long long size, struct fsgroup *g,
					       char *name_r, size_t name_n,
					       struct err *err)
{
	char stem[40];
	struct err qerr;
	int rc, lockfd = -1;

	if (maildir_make(t->path, t->uid, t->gid, err) < 0)
		return SUB_DELIVER_TEMP;
	if (maildir_stem(key, t->addr, stem, sizeof(stem)) < 0) {
		err_set(err, 1, "4.3.0 cannot derive file name");
		return SUB_DELIVER_TEMP;
	}
	rc = scan ? maildir_has_stem(t->path, stem, err) : 0;
	if (rc < 0)
		return SUB_DELIVER_TEMP;
	if (rc == 1)
		return SUB_DELIVER_DUP;
	/* The check and the charge are one step under the quota lock, so
	 * parallel deliveries and mra's COPY/APPEND cannot overshoot. */
	if (t->quota > 0 || t->domain_quota > 0) {
		lockfd = quota_lock(t->path, t->uid, t->gid, err);
		if (lockfd < 0)
			return SUB_DELIVER_TEMP;
		rc = sub_deliver_over_quota(t, size, err);
		if (rc != 0) {
			quota_unlock(lockfd);
			if (rc < 0)
				return SUB_DELIVER_TEMP;
			/* RFC 3463 X.2.2: the recipient's storage is used up,
			 * whether its own or its domain's share */
			err_set(err, 0, rc == 2 ? "5.2.2 <%s>: Domain quota "
				"exceeded" : "5.2.2 <%s>: Mailbox full", t->addr);
			return SUB_DELIVER_PERM;
		}
	}
	rc = maildir_deliver_grouped(t->path, stem, iov, 2, "new", NULL, g,
				     name_r, name_n, err);
	if (rc != 0) {
		quota_unlock(lockfd);
		return rc < 0 ? SUB_DELIVER_TEMP : SUB_DELIVER_DUP;
	}
	/* The message is safe; a maildirsize that could not be updated is
	 * rebuilt by the next reader (Maildir++), so it does not fail this.
	 * A mailbox under no quota keeps the file only if it has one (a
	 * read, an append and, every few hundred messages, a scan of the
	 * whole Maildir: issue 12). */
	if (t->quota > 0 || t->domain_quota > 0)
		quota_add(t->path, t->quota, size, 1, t->uid, t->gid, &qerr);
	else
		quota_add_kept(t->path, 0, size, 1, t->uid, t->gid, &qerr);
	quota_unlock(lockfd);
	return SUB_DELIVER_OK;
}

/* Dot-file lock beside the mbox (path.lock), as mail readers expect. */
static int sub_deliver_dotlock(const char *lock, struct err *err)
{
	for (int i = 0; i < SUB_DELIVER_LOCK_TRIES; i++) {
		struct stat st;
		int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			      0600);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (errno != EEXIST)
			return err_set(err, 1, "4.2.0 lock %s: %s", lock,
				       strerror(errno));
		if (stat(lock, &st) == 0 &&
		    time(NULL) - st.st_mtime > SUB_DELIVER_LOCK_STALE)
			unlink(lock);
		usleep(100000);
	}
	return err_set(err, 1, "4.2.0 mailbox %s is locked", lock);
}

/* mbox: "From " line, LF line ends, ">From " quoting, blank line. */
static int sub_deliver_mbox_text(struct buf *b, const char *sender,
				 const struct iovec *iov)
{
	time_t now = time(NULL);
	char tbuf[64];
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(tbuf, sizeof(tbuf), "%a %b %e %H:%M:%S %Y", &tm);
	if (buf_printf(b, "From %s %s\n", *sender ? sender : "MAILER-DAEMON",
		       tbuf) < 0)
		return -1;
	for (int k = 0; k < 2; k++) {
		const char *p = iov[k].iov_base, *end = p + iov[k].iov_len;

		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);

			if (ll > 0 && p[ll - 1] == '\r')
				ll--;
			if (ll >= 5 && memcmp(p, "From ", 5) == 0 &&
			    buf_putc(b, '>') < 0)
				return -1;
			if (buf_append(b, p, ll) < 0 || buf_putc(b, '\n') < 0)
				return -1;
			p = nl ? nl + 1 : end;
		}
	}
	return buf_putc(b, '\n');
}

static int sub_deliver_mkparent(const char *path, const struct sub_target *t,
				struct err *err)
{
	char dir[4096];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return err_set(err, 0, "5.3.5 mailbox path too long");
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (access(dir, F_OK) == 0)
		return 0;
	/* maildir_make would add tmp/new/cur: create the parents only. */
	for (char *p = dir + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) == 0 && getuid() == 0)
			(void)!chown(dir, t->uid, t->gid);
		*p = '/';
	}
	if (mkdir(dir, 0700) == 0 && getuid() == 0)
		(void)!chown(dir, t->uid, t->gid);
	return 0;
}

static enum sub_deliver_rc sub_deliver_mbox(const struct sub_target *t,
					    const char *sender,
					    const struct iovec *iov,
					    long long size, struct err *err)
{
	char lock[4200];
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	struct buf b;
	struct stat st;
	int fd, rc = SUB_DELIVER_TEMP;

	if (t->quota > 0 && stat(t->path, &st) == 0 &&
	    quota_over(t->quota, (long long)st.st_size, size)) {
		err_set(err, 0, "5.2.2 <%s>: Mailbox full", t->addr);
		return SUB_DELIVER_PERM;
	}
	switch (sub_deliver_over_domain(t, size, err)) {
	case -1:
		return SUB_DELIVER_TEMP;
	case 2:
		err_set(err, 0, "5.2.2 <%s>: Domain quota exceeded", t->addr);
		return SUB_DELIVER_PERM;
	}
	buf_init(&b, 0);
	if (sub_deliver_mbox_text(&b, sender, iov) < 0) {
		buf_free(&b);
		err_set(err, 1, "4.3.0 out of memory");
		return SUB_DELIVER_TEMP;
	}
	sub_deliver_mkparent(t->path, t, err);
	snprintf(lock, sizeof(lock), "%s.lock", t->path);
	if (sub_deliver_dotlock(lock, err) < 0) {
		buf_free(&b);
		return SUB_DELIVER_TEMP;
	}
	fd = open(t->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		err_set(err, 1, "4.2.0 open %s: %s", t->path, strerror(errno));
	} else if (fcntl(fd, F_SETLKW, &fl) < 0 || fstat(fd, &st) < 0) {
		err_set(err, 1, "4.2.0 lock %s: %s", t->path, strerror(errno));
	} else if (write(fd, b.p, b.len) != (ssize_t)b.len || fsync(fd) < 0) {
		err_set(err, 1, "4.2.0 write %s: %s", t->path,
			strerror(errno));
		/* Take the partial message back out (Postfix mbox too). */
		(void)!ftruncate(fd, st.st_size);
	} else {
		rc = SUB_DELIVER_OK;
	}
	if (fd >= 0)
		close(fd);
	unlink(lock);
	buf_free(&b);
	return rc;
}

enum sub_deliver_rc sub_deliver_local(const struct sub_target *t,
				      const char *key, int scan,
				      const char *sender,
				      const char *data, size_t len,
				      struct fsgroup *g,
				      char *name_r, size_t name_n,
				      struct err *err)
{
	struct buf pre;
	struct iovec iov[2];
	enum sub_deliver_rc rc;

	if (sub_policy_delivered_to(data, len, t->addr)) {
		err_set(err, 0, "5.4.6 <%s>: mail forwarding loop", t->addr);
		return SUB_DELIVER_PERM;
	}
	buf_init(&pre, 0);
	if (sub_deliver_prefix(&pre, t, sender) < 0) {
		buf_free(&pre);
		err_set(err, 1, "4.3.0 out of memory");
		return SUB_DELIVER_TEMP;
	}
	iov[0].iov_base = pre.p;
	iov[0].iov_len = pre.len;
	iov[1].iov_base = (void *)data;
	iov[1].iov_len = len;
	if (t->maildir)
		rc = sub_deliver_maildir(t, key, scan, iov,
					 (long long)(pre.len + len), g,
					 name_r, name_n, err);
	else
		rc = sub_deliver_mbox(t, sender, iov,
				      (long long)(pre.len + len), err);
	buf_free(&pre);
	return rc;
}
