/* quota: Maildir++ maildirsize bookkeeping. Updates are single O_APPEND
 * writes (the Maildir++ rule that lets several writers share the file);
 * rebuilds write a temp file and rename it over; quota.lock makes a check
 * and its charge one step for writers that enforce the limit. Blocking:
 * worker pool. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"
#include "quota.h"

#define QUOTA_FILE_MAX 5120   /* Maildir++: recalculate past this size */
#define QUOTA_READ_MAX 65536
#define QUOTA_LOCK_FILE "quota.lock"

int quota_over(long long limit, long long used, long long bytes)
{
	long long sum;

	if (limit <= 0)
		return 0;
	/* used comes from the maildirsize file: near the range's end the
	 * sum would overflow; the only way out of range is far over. */
	if (__builtin_add_overflow(used, bytes, &sum))
		return bytes > 0;
	return sum > limit;
}

/* Parse a signed decimal within [p, end); returns the new position or NULL. */
static const char *quota_num(const char *p, const char *end, long long *v_r)
{
	int neg = 0;
	long long v = 0;

	if (p < end && *p == '-') {
		neg = 1;
		p++;
	}
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - 9) / 10)
			return NULL;
		v = v * 10 + (*p - '0');
	}
	*v_r = neg ? -v : v;
	return p;
}

/* First line: comma-separated "<n>S" and "<n>C" parts; only S matters. */
static int quota_parse_def(const char *p, const char *end, long long *limit_r)
{
	*limit_r = 0;
	while (p < end) {
		long long v;
		const char *q = quota_num(p, end, &v);

		if (q == NULL || q >= end)
			return -1;
		if (*q == 'S')
			*limit_r = v;
		else if (*q != 'C')
			return -1;
		p = q + 1;
		if (p < end && *p == ',')
			p++;
	}
	return 0;
}

int quota_parse(const char *text, size_t len, long long *limit_r,
		long long *bytes_r, long long *files_r)
{
	const char *p = text, *end = text + len;
	int lines = 0;

	*limit_r = *bytes_r = *files_r = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		long long b, f;
		const char *q;

		if (nl == NULL)
			return -1;  /* a torn last line: caller rebuilds */
		if (lines == 0) {
			if (quota_parse_def(p, nl, limit_r) < 0)
				return -1;
		} else {
			while (p < nl && *p == ' ')
				p++;
			q = quota_num(p, nl, &b);
			if (q == NULL)
				return -1;
			while (q < nl && *q == ' ')
				q++;
			q = quota_num(q, nl, &f);
			if (q == NULL)
				return -1;
			while (q < nl && *q == ' ')
				q++;
			if (q != nl)
				return -1;
			/* Sums past the range of long long are a corrupt
			 * file (signed overflow is undefined): rebuild. */
			if (__builtin_add_overflow(*bytes_r, b, bytes_r) ||
			    __builtin_add_overflow(*files_r, f, files_r))
				return -1;
		}
		lines++;
		p = nl + 1;
	}
	return lines;
}

static int quota_scan_dir(const char *dir, long long *bytes, long long *files)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d)) != NULL) {
		long long sz;

		if (de->d_name[0] == '.')
			continue;
		sz = maildir_name_size(de->d_name);
		if (sz < 0) {
			struct stat st;

			if (fstatat(dirfd(d), de->d_name, &st, 0) < 0)
				continue;  /* expunged meanwhile */
			sz = (long long)st.st_size;
		}
		*bytes += sz;
		(*files)++;
	}
	closedir(d);
	return 0;
}

static int quota_scan_folder(const char *folder, long long *bytes,
			     long long *files)
{
	char p[4096];

	snprintf(p, sizeof(p), "%s/new", folder);
	if (quota_scan_dir(p, bytes, files) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/cur", folder);
	return quota_scan_dir(p, bytes, files);
}

static int quota_scan(const char *maildir, long long *bytes, long long *files,
		      struct err *err)
{
	DIR *d;
	struct dirent *de;
	char sub[4096];

	*bytes = *files = 0;
	if (quota_scan_folder(maildir, bytes, files) < 0)
		return err_set(err, 1, "scan %s: %s", maildir,
			       strerror(errno));
	d = opendir(maildir);
	if (d == NULL)
		return err_set(err, 1, "opendir %s: %s", maildir,
			       strerror(errno));
	/* Maildir++ sub-folders are ".name" directories. */
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", maildir, de->d_name);
		quota_scan_folder(sub, bytes, files);
	}
	closedir(d);
	return 0;
}

static int quota_write_file(const char *path, const char *text, size_t len,
			    uid_t uid, gid_t gid, struct err *err)
{
	char tmp[4200];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, 1, "open %s: %s", tmp, strerror(errno));
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return err_set(err, 1, "write %s: %s", tmp, strerror(e));
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    (uid != geteuid() || gid != getegid()) &&
	    fchown(fd, uid, gid) < 0) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return err_set(err, 1, "chown %s: %s", tmp, strerror(e));
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;

		unlink(tmp);
		return err_set(err, 1, "rename %s: %s", path, strerror(e));
	}
	return 0;
}

int quota_recalc(const char *maildir, long long limit, uid_t uid, gid_t gid,
		 struct err *err)
{
	char path[4096], text[128];
	long long bytes, files;
	int n;

	if (quota_scan(maildir, &bytes, &files, err) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/maildirsize", maildir);
	n = snprintf(text, sizeof(text), "%lldS\n%lld %lld\n",
		     limit > 0 ? limit : 0, bytes, files);
	return quota_write_file(path, text, (size_t)n, uid, gid, err);
}

/* Read maildirsize; returns its size, or -1 if missing/malformed. */
static long quota_read(const char *path, long long *limit,
		       long long *bytes, long long *files)
{
	char buf[QUOTA_READ_MAX];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(buf))
		return -1;
	if (quota_parse(buf, (size_t)n, limit, bytes, files) < 1)
		return -1;
	return (long)n;
}

int quota_usage(const char *maildir, long long *bytes_r, long long *files_r,
		struct err *err)
{
	char path[4096];
	long long limit;

	snprintf(path, sizeof(path), "%s/maildirsize", maildir);
	if (quota_read(path, &limit, bytes_r, files_r) >= 0)
		return 0;
	if (quota_scan(maildir, bytes_r, files_r, err) < 0)
		return -1;
	return 0;
}

int quota_domain_usage(const char *domdir, long long *bytes_r, struct err *err)
{
	char path[4096], sub[4200];
	long long b, f, sum = 0;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int rc = 0, n;

	*bytes_r = 0;
	snprintf(path, sizeof(path), "%s", domdir);
	if ((d = opendir(path)) == NULL) {
		if (errno == ENOENT)
			return 0;  /* no mailbox has been written yet */
		return err_set(err, 1, "opendir %s: %s", path, strerror(errno));
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		/* a Maildir is a folder with cur/; mbox files and the rest
		 * are not the domain's mailboxes */
		n = snprintf(sub, sizeof(sub), "%s/%s/cur", path, de->d_name);
		if (n < 0 || (size_t)n >= sizeof(sub) || stat(sub, &st) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		sub[n - 4] = '\0';   /* drop "/cur" */
		if (quota_usage(sub, &b, &f, err) < 0)
			rc = -1;
		else if (b > 0 && sum > INT64_MAX - b)
			rc = err_set(err, 1, "%s: usage overflows", path);
		else
			sum += b > 0 ? b : 0;
	}
	closedir(d);
	*bytes_r = sum;
	return rc;
}

int quota_get(const char *maildir, long long *limit_r, long long *bytes_r,
	      long long *files_r, struct err *err)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/maildirsize", maildir);
	if (quota_read(path, limit_r, bytes_r, files_r) >= 0)
		return 0;
	*limit_r = 0;
	return quota_scan(maildir, bytes_r, files_r, err);
}

int quota_lock(const char *maildir, uid_t uid, gid_t gid, struct err *err)
{
	char path[4096];
	int fd, n;

	n = snprintf(path, sizeof(path), "%s/" QUOTA_LOCK_FILE, maildir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return err_set(err, 1, "quota lock: path too long");
	/* flock(2) needs no write access: read-only suits any writer */
	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, 1, "open %s: %s", path, strerror(errno));
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    (uid != geteuid() || gid != getegid()) &&
	    fchown(fd, uid, gid) < 0 && errno != EPERM) {
		int e = errno;

		close(fd);
		return err_set(err, 1, "chown %s: %s", path, strerror(e));
	}
	while (flock(fd, LOCK_EX) < 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		close(fd);
		return err_set(err, 1, "lock %s: %s", path, strerror(e));
	}
	return fd;
}

void quota_unlock(int fd)
{
	if (fd >= 0)
		close(fd);   /* releases the flock */
}

int quota_add(const char *maildir, long long limit, long long bytes,
	      long long files, uid_t uid, gid_t gid, struct err *err)
{
	char path[4096], line[64];
	long long old_limit, b, f;
	long size;
	int fd, n;

	snprintf(path, sizeof(path), "%s/maildirsize", maildir);
	size = quota_read(path, &old_limit, &b, &f);
	if (size < 0 || size + 64 > QUOTA_FILE_MAX ||
	    old_limit != (limit > 0 ? limit : 0))
		return quota_recalc(maildir, limit, uid, gid, err);
	n = snprintf(line, sizeof(line), "%lld %lld\n", bytes, files);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return quota_recalc(maildir, limit, uid, gid, err);
	/* One write(2) per line: O_APPEND keeps concurrent writers' lines
	 * whole. */
	if (write(fd, line, (size_t)n) != n) {
		int e = errno;

		close(fd);
		return err_set(err, 1, "append %s: %s", path, strerror(e));
	}
	close(fd);
	return 0;
}

int quota_add_kept(const char *maildir, long long limit, long long bytes,
		   long long files, uid_t uid, gid_t gid, struct err *err)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/maildirsize", maildir)
	    >= sizeof(path))
		return err_set(err, 0, "maildirsize path too long");
	if (access(path, F_OK) < 0 && errno == ENOENT)
		return 0;
	return quota_add(maildir, limit, bytes, files, uid, gid, err);
}
