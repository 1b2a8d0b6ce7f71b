/* maildir: crash-safe Maildir delivery (tmp -> fsync -> rename -> fsync
 * dir), folder creation with the virtual uid/gid, and the Maildir++ S=
 * size in file names. Blocking; callers run it on the worker pool. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fsgroup.h"
#include "maildir.h"

static unsigned long maildir_seq;

static int maildir_mkdir_one(const char *path, uid_t uid, gid_t gid,
			     struct err *err)
{
	if (mkdir(path, 0700) == 0) {
		if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
		    (uid != geteuid() || gid != getegid()) &&
		    chown(path, uid, gid) < 0)
			return err_set(err, 1, "chown %s: %s", path,
				       strerror(errno));
		return 0;
	}
	if (errno == EEXIST) {
		struct stat st;

		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		return err_set(err, 1, "%s exists and is not a directory",
			       path);
	}
	/* Even a missing or unwritable path is answered 4xx: an operator
	 * error should defer mail, not bounce it (Postfix does the same). */
	return err_set(err, 1, "mkdir %s: %s", path,
		       strerror(errno));
}

/* mkdir -p: create each missing component from the left. */
static int maildir_mkdir_p(const char *path, uid_t uid, gid_t gid,
			   struct err *err)
{
	char tmp[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(tmp))
		return err_set(err, 0, "bad maildir path length");
	memcpy(tmp, path, n + 1);
	while (n > 1 && tmp[n - 1] == '/')
		tmp[--n] = '\0';
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (maildir_mkdir_one(tmp, uid, gid, err) < 0)
			return -1;
		*p = '/';
	}
	return maildir_mkdir_one(tmp, uid, gid, err);
}

/* 1 when path/tmp, path/new and path/cur are all directories. */
static int maildir_complete(const char *path)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char sub[4096];
	struct stat st;

	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, subs[i])
		    >= sizeof(sub) || stat(sub, &st) < 0 || !S_ISDIR(st.st_mode))
			return 0;
	return 1;
}

int maildir_make(const char *path, uid_t uid, gid_t gid, struct err *err)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char sub[4096];

	if (path == NULL || strstr(path, "/../") != NULL)
		return err_set(err, 0, "bad maildir path");
	/* The usual case, a complete Maildir, costs three lookups: mkdir(2)
	 * on each existing component took each parent's lock in turn, and
	 * every delivery paid it (issue 12). */
	if (maildir_complete(path))
		return 0;
	if (maildir_mkdir_p(path, uid, gid, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, subs[i])
		    >= sizeof(sub))
			return err_set(err, 0, "maildir path too long");
		if (maildir_mkdir_one(sub, uid, gid, err) < 0)
			return -1;
	}
	return 0;
}

static int maildir_stem_ok(const char *s)
{
	if (*s == '\0' || *s == '.')
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' ||
		      *s == '.'))
			return 0;
	return 1;
}

/* Host part of the name: '/' and ':' are replaced as maildir(5) says
 * (\057 and \072), and ',' too since Maildir++ uses it for fields. */
static char maildir_host_name[200];     /* written once, then read-only */
static pthread_once_t maildir_host_once = PTHREAD_ONCE_INIT;

static void maildir_host_init(void)
{
	char h[256];
	size_t o = 0, n = sizeof(maildir_host_name);

	if (gethostname(h, sizeof(h)) < 0)
		strcpy(h, "localhost");
	h[sizeof(h) - 1] = '\0';
	for (const char *p = h; *p != '\0' && o + 5 < n; p++) {
		if (*p == '/' || *p == ':' || *p == ',') {
			o += (size_t)snprintf(maildir_host_name + o, n - o,
					      "\\%03o", (unsigned char)*p);
		} else {
			maildir_host_name[o++] = *p;
		}
	}
	maildir_host_name[o] = '\0';
}

/* The host part, looked up once per process: a delivery paid a uname(2)
 * for it each time (issue 12). */
static const char *maildir_host(void)
{
	pthread_once(&maildir_host_once, maildir_host_init);
	return maildir_host_name;
}

static int maildir_scan(const char *dir, const char *stem, char *name_r,
			size_t name_n, struct err *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t sl = strlen(stem);
	int found = 0;

	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, 1, "opendir %s: %s", dir, strerror(errno));
	}
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, stem, sl) == 0 &&
		    de->d_name[sl] == '.') {
			found = 1;
			if (name_r != NULL && name_n > 0)
				snprintf(name_r, name_n, "%s", de->d_name);
			break;
		}
	}
	closedir(d);
	return found;
}

static int maildir_find_stem(const char *maildir, const char *stem,
			     char *name_r, size_t name_n, struct err *err)
{
	static const char *const subs[] = { "new", "cur" };
	char dir[4096];

	for (size_t i = 0; i < 2; i++) {
		int rc;

		if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", maildir,
				     subs[i]) >= sizeof(dir))
			return err_set(err, 0, "maildir path too long");
		rc = maildir_scan(dir, stem, name_r, name_n, err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int maildir_has_stem(const char *maildir, const char *stem, struct err *err)
{
	if (maildir == NULL || stem == NULL || !maildir_stem_ok(stem))
		return err_set(err, 0, "bad maildir stem");
	return maildir_find_stem(maildir, stem, NULL, 0, err);
}

/* All of iov, in as few writev(2) calls as the kernel allows. */
static int maildir_write_all(int fd, const struct iovec *iov, int iovcnt,
			     struct err *err)
{
	struct iovec v[8];
	int n = 0;

	if (iovcnt > (int)(sizeof(v) / sizeof(v[0])))
		return err_set(err, 0, "too many pieces");
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len > 0)
			v[n++] = iov[i];
	for (int first = 0; first < n;) {
		ssize_t w = writev(fd, v + first, n - first);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return err_set(err, 1, "write: %s", strerror(errno));
		}
		while (first < n && (size_t)w >= v[first].iov_len)
			w -= (ssize_t)v[first++].iov_len;
		if (first < n) {
			v[first].iov_base = (char *)v[first].iov_base + w;
			v[first].iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int maildir_fsync_dir(const char *dir, struct fsgroup *g,
			     struct err *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return err_set(err, 1, "open %s: %s", dir, strerror(errno));
	if (fsgroup_sync(g, fd) < 0) {
		int e = errno;

		close(fd);
		return err_set(err, 1, "fsync %s: %s", dir, strerror(e));
	}
	close(fd);
	return 0;
}

static int maildir_check_args(const char *maildir, const char *stem,
			      const char *subdir, const char *info,
			      struct err *err)
{
	if (maildir == NULL || subdir == NULL ||
	    (strcmp(subdir, "new") != 0 && strcmp(subdir, "cur") != 0))
		return err_set(err, 0, "bad maildir arguments");
	if (stem != NULL && !maildir_stem_ok(stem))
		return err_set(err, 0, "bad maildir stem");
	if (info != NULL && (info[0] != ':' || strchr(info, '/') != NULL))
		return err_set(err, 0, "bad maildir info");
	return 0;
}

/* tmp/<name>: unique by time, microseconds, pid and a counter
 * (maildir(5)); or derived from the caller's stem. */
static void maildir_make_name(const char *stem, size_t size, char *out,
			      size_t n)
{
	const char *host = maildir_host();
	struct timeval tv;

	if (stem != NULL) {
		snprintf(out, n, "%s.%s,S=%zu", stem, host, size);
		return;
	}
	gettimeofday(&tv, NULL);
	snprintf(out, n, "%lld.M%ldP%ldQ%lu.%s,S=%zu", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (long)getpid(),
		 __atomic_add_fetch(&maildir_seq, 1, __ATOMIC_RELAXED), host,
		 size);
}

static int maildir_write_tmp(const char *tmppath, const struct iovec *iov,
			     int iovcnt, struct fsgroup *g, struct err *err)
{
	int fd = open(tmppath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		return err_set(err, 1, "open %s: %s", tmppath,
			       strerror(errno));
	if (maildir_write_all(fd, iov, iovcnt, err) < 0)
		goto fail;
	if (fsgroup_sync(g, fd) < 0) {
		err_set(err, 1, "fsync: %s", strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		err_set(err, 1, "close: %s", strerror(errno));
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmppath);
	return -1;
}

int maildir_deliver(const char *maildir, const char *stem,
		    const struct iovec *iov, int iovcnt,
		    const char *subdir, const char *info,
		    char *name_r, size_t name_n, struct err *err)
{
	return maildir_deliver_grouped(maildir, stem, iov, iovcnt, subdir,
				       info, NULL, name_r, name_n, err);
}

int maildir_deliver_grouped(const char *maildir, const char *stem,
			    const struct iovec *iov, int iovcnt,
			    const char *subdir, const char *info,
			    struct fsgroup *g, char *name_r, size_t name_n,
			    struct err *err)
{
	char name[MAILDIR_NAME_MAX], tmppath[4096], dst[4096], dir[4096];
	size_t size = 0;

	if (maildir_check_args(maildir, stem, subdir, info, err) < 0)
		return -1;
	for (int i = 0; i < iovcnt; i++)
		size += iov[i].iov_len;
	maildir_make_name(stem, size, name, sizeof(name));
	if (stem != NULL) {
		struct stat st;

		if ((size_t)snprintf(dst, sizeof(dst), "%s/new/%s", maildir,
				     name) >= sizeof(dst))
			return err_set(err, 0, "maildir path too long");
		if (lstat(dst, &st) == 0) {
			if (name_r != NULL && name_n > 0)
				snprintf(name_r, name_n, "%s", name);
			return 1;
		}
	}
	/* The tmp name is unique even for a stem, so two concurrent
	 * redeliveries never write into one file; both renames then land on
	 * the same final name with the same bytes. */
	if ((size_t)snprintf(tmppath, sizeof(tmppath), "%s/tmp/%s%s%ld.%lu",
			     maildir, name, stem != NULL ? ".P" : ".",
			     (long)getpid(),
			     __atomic_add_fetch(&maildir_seq, 1,
						__ATOMIC_RELAXED))
	    >= sizeof(tmppath) ||
	    (size_t)snprintf(dir, sizeof(dir), "%s/%s", maildir, subdir)
	    >= sizeof(dir) ||
	    (size_t)snprintf(dst, sizeof(dst), "%s/%s%s", dir, name,
			     strcmp(subdir, "cur") == 0 && info != NULL ?
			     info : "") >= sizeof(dst))
		return err_set(err, 0, "maildir path too long");
	if (maildir_write_tmp(tmppath, iov, iovcnt, g, err) < 0)
		return -1;
	if (rename(tmppath, dst) < 0) {
		err_set(err, 1, "rename %s: %s", dst, strerror(errno));
		unlink(tmppath);
		return -1;
	}
	if (maildir_fsync_dir(dir, g, err) < 0)
		return -1;
	if (name_r != NULL && name_n > 0)
		snprintf(name_r, name_n, "%s", strrchr(dst, '/') + 1);
	return 0;
}

long long maildir_name_size(const char *name)
{
	const char *p, *end;
	long long v = 0;

	if (name == NULL)
		return -1;
	end = strchr(name, ':');
	if (end == NULL)
		end = name + strlen(name);
	for (p = name; p + 3 <= end; p++) {
		const char *q;

		if (p[0] != ',' || p[1] != 'S' || p[2] != '=')
			continue;
		q = p + 3;
		if (q >= end || *q < '0' || *q > '9')
			continue;
		for (v = 0; q < end && *q >= '0' && *q <= '9'; q++) {
			if (v > (INT64_MAX - 9) / 10)
				return -1;
			v = v * 10 + (*q - '0');
		}
		if (q == end || *q == ',')
			return v;
	}
	return -1;
}

int maildir_stem(const char *a, const char *b, char *out, size_t out_n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;

	if (out_n < 33)
		return -1;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return -1;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, a ? a : "", a ? strlen(a) : 0) != 1 ||
	    EVP_DigestUpdate(ctx, "\n", 1) != 1 ||
	    EVP_DigestUpdate(ctx, b ? b : "", b ? strlen(b) : 0) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen < 16) {
		EVP_MD_CTX_free(ctx);
		return -1;
	}
	EVP_MD_CTX_free(ctx);
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[32] = '\0';
	return 0;
}
