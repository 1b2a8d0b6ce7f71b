/* mstore: Maildir++ store with persistent UIDs for IMAP and POP3. Each
 * folder's "mstore-uidlist" maps file base names (the name before ":2,")
 * to UIDs, and records the flags last seen in each name with their
 * CONDSTORE mod-sequence; it is only rewritten whole (temp, fsync, rename,
 * fsync dir) while flock() is held on "mstore-uidlist.lock". Flags stay in
 * the file names (so other Maildir readers see them); the index only
 * notices their changes. Library code: fills struct err, never logs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include "maildir.h"
#include "quota.h"
#include "mstore.h"

#define MSTORE_UIDLIST      "mstore-uidlist"
#define MSTORE_UIDLIST_TMP  "mstore-uidlist.tmp"
#define MSTORE_LOCK         "mstore-uidlist.lock"
#define MSTORE_UVFILE       "mstore-uidvalidity"   /* at the root only */
#define MSTORE_SUBS         "subscriptions"
#define MSTORE_INDEX_MAX    (64u << 20)
#define MSTORE_PATH_MAX     4096

struct mstore {
	char *root;
	uint64_t quota_limit;     /* bytes from the user map; 0: maildirsize's */
};

/* The index file, version 2:
 *   M2 <uidvalidity> <uidnext> <highestmodseq> <first_recent_uid>
 *   K <letter index> <keyword name>                  (any number)
 *   <uid> <size> <vsize> <mtime> <modseq> <info> <base>
 * <info> is the flag part of the file name last seen, in canonical order
 * ("-" when empty). Version 1 ("M1 <uidvalidity> <uidnext>", entries
 * without <modseq> <info>) is read and upgraded: modseq 1, info taken from
 * the file names then. */
struct mstore_ient {
	uint32_t uid;
	uint64_t size, vsize;
	int64_t mtime;
	uint64_t modseq;
	unsigned flags;           /* info: MSTORE_F_* */
	uint32_t kw;
	int known;                /* info read from an M2 line (or set) */
	char *base;
};

enum mstore_idx_state {
	MSTORE_IDX_OK, MSTORE_IDX_MISSING, MSTORE_IDX_TORN, MSTORE_IDX_OLD
};

/* What a rewrite must make durable: UIDs, keywords and UIDVALIDITY must
 * survive a crash (losing them renumbers messages); mod-sequences, recorded
 * flags and the \Recent claim may be lost with the rename (flags are
 * advisory: the next sync sees the names again and re-bumps). */
#define MSTORE_DIRTY_SOFT 0x1
#define MSTORE_DIRTY_HARD 0x2

struct mstore_index {
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	uint32_t first_recent_uid;
	struct mstore_ient *e;
	size_t n, cap;
	char *kw[MSTORE_MAX_KEYWORDS];
	enum mstore_idx_state state;
	int dirty;                /* MSTORE_DIRTY_* */
};

/* A file found in new/ or cur/. */
struct mstore_dent {
	char *name;               /* file name (in cur/ unless in_new) */
	char *base;
	unsigned flags;
	uint32_t kw;
	int in_new;
	struct mstore_ient *ie;   /* matched index entry */
};

static const char mstore_flag_letters[] = "DFPRST";
static const unsigned mstore_flag_bits[] = {
	MSTORE_F_DRAFT, MSTORE_F_FLAGGED, MSTORE_F_PASSED,
	MSTORE_F_ANSWERED, MSTORE_F_SEEN, MSTORE_F_DELETED
};
static const char *const mstore_specials[] = { "Sent", "Drafts", "Trash", "Junk" };

/* ---- small helpers ---- */

/* snprintf for paths and names; callers that care check the result. */
static int mstore_fmt(char *out, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int mstore_fmt(char *out, size_t n, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(out, n, fmt, ap);
	va_end(ap);
	return r;
}

static int mstore_errno(struct err *err, const char *what, const char *path)
{
	return err_set(err, 1, "%s %s: %s", what, path, strerror(errno));
}

static int mstore_fsync_dir(const char *path, struct err *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return mstore_errno(err, "open", path);
	if (fsync(fd) < 0) {
		close(fd);
		return mstore_errno(err, "fsync", path);
	}
	close(fd);
	return 0;
}

static int mstore_is_inbox(const char *name)
{
	return strcasecmp(name, "INBOX") == 0;
}

static int mstore_folder_path(const struct mstore *ms, const char *name,
                              char *out, size_t n, struct err *err)
{
	int r;

	if (mstore_is_inbox(name))
		r = mstore_fmt(out, n, "%s", ms->root);
	else if (mstore_name_check(name, err) < 0)
		return -1;
	else
		r = mstore_fmt(out, n, "%s/.%s", ms->root, name);
	if (r < 0 || (size_t)r >= n)
		return err_set(err, 0, "folder path too long");
	return 0;
}

/* Maildir info letters (up to the end or a space) -> flags and keyword
 * bits; unknown letters are ignored. */
static void mstore_parse_letters(const char *i, unsigned *flags, uint32_t *kw)
{
	*flags = 0;
	*kw = 0;
	for (; *i != '\0' && *i != ' '; i++) {
		const char *l = strchr(mstore_flag_letters, *i);

		if (l != NULL)
			*flags |= mstore_flag_bits[l - mstore_flag_letters];
		else if (*i >= 'a' && *i <= 'z')
			*kw |= 1u << (*i - 'a');
	}
}

/* "<base>:2,<info>" -> flags and keyword bits (Maildir "info" semantics) */
static void mstore_parse_info(const char *name, unsigned *flags, uint32_t *kw)
{
	const char *i = strstr(name, ":2,");

	if (i == NULL) {
		*flags = 0;
		*kw = 0;
		return;
	}
	mstore_parse_letters(i + 3, flags, kw);
}

/* base + ":2," + sorted flag letters + keyword letters */
static int mstore_make_name(const char *base, unsigned flags, uint32_t kw,
                            char *out, size_t n)
{
	size_t len;
	int i, r;

	r = mstore_fmt(out, n, "%s:2,", base);
	if (r < 0 || (size_t)r + 6 + MSTORE_MAX_KEYWORDS >= n)
		return -1;
	len = (size_t)r;
	for (i = 0; i < 6; i++)
		if (flags & mstore_flag_bits[i])
			out[len++] = mstore_flag_letters[i];
	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++)
		if (kw & (1u << i))
			out[len++] = (char)('a' + i);
	out[len] = '\0';
	return 0;
}

static char *mstore_base_of(const char *name)
{
	const char *c = strchr(name, ':');

	return c == NULL ? strdup(name) : strndup(name, (size_t)(c - name));
}

/* A unique Maildir base name for copies ("time.MusecPpidQn.host"). */
static void mstore_unique_base(char *out, size_t n, uint64_t size, uint64_t vsize)
{
	static unsigned long counter;
	struct timeval tv;
	char host[256];
	unsigned long q = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	size_t i;

	gettimeofday(&tv, NULL);
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	for (i = 0; host[i] != '\0'; i++)   /* Maildir: no '/' or ':' */
		if (host[i] == '/' || host[i] == ':' || host[i] == ',')
			host[i] = '_';
	mstore_fmt(out, n, "%lld.M%ldP%ldQ%lu.%s,S=%llu,W=%llu", (long long)tv.tv_sec,
	         (long)tv.tv_usec, (long)getpid(), q, host,
	         (unsigned long long)size, (unsigned long long)vsize);
}

/* Size with CRLF line ends: ",W=" from the name, else count bare LFs. */
static int mstore_measure(const char *path, const char *name, uint64_t *size,
                          uint64_t *vsize, int64_t *mtime)
{
	const char *w = strstr(name, ",W=");
	struct stat st;
	char buf[65536];
	ssize_t r;
	uint64_t extra = 0;
	char prev = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	*size = (uint64_t)st.st_size;
	*mtime = (int64_t)st.st_mtime;
	if (w != NULL) {
		*vsize = strtoull(w + 3, NULL, 10);
		close(fd);
		return 0;
	}
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		ssize_t i;

		for (i = 0; i < r; i++) {
			if (buf[i] == '\n' && prev != '\r')
				extra++;
			prev = buf[i];
		}
	}
	close(fd);
	*vsize = *size + extra;
	return 0;
}

/* ---- locking ---- */

static int mstore_lock(const char *folder, struct err *err)
{
	char p[MSTORE_PATH_MAX];
	int fd;

	mstore_fmt(p, sizeof(p), "%s/%s", folder, MSTORE_LOCK);
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return mstore_errno(err, "open", p);
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			close(fd);
			return mstore_errno(err, "flock", p);
		}
	}
	return fd;
}

static void mstore_unlock(int fd)
{
	if (fd >= 0)
		close(fd);   /* releases the flock */
}

/* ---- the index file ---- */

static void mstore_index_clear(struct mstore_index *ix)
{
	size_t i;

	for (i = 0; i < ix->n; i++)
		free(ix->e[i].base);
	free(ix->e);
	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++)
		free(ix->kw[i]);
	memset(ix, 0, sizeof(*ix));
}

static struct mstore_ient *mstore_index_add(struct mstore_index *ix)
{
	if (ix->n == ix->cap) {
		size_t nc = ix->cap ? ix->cap * 2 : 64;
		struct mstore_ient *ne = realloc(ix->e, nc * sizeof(*ne));

		if (ne == NULL)
			return NULL;
		ix->e = ne;
		ix->cap = nc;
	}
	memset(&ix->e[ix->n], 0, sizeof(ix->e[0]));
	return &ix->e[ix->n++];
}

static int mstore_u64(const char **p, uint64_t *v)
{
	char *e;

	if (**p < '0' || **p > '9')
		return -1;
	errno = 0;
	*v = strtoull(*p, &e, 10);
	if (errno != 0 || *e != ' ')
		return -1;
	*p = e + 1;
	return 0;
}

/* The last number of a line: digits up to the end. */
static int mstore_u64_last(const char *p, uint64_t *v)
{
	char *e;

	if (*p < '0' || *p > '9')
		return -1;
	errno = 0;
	*v = strtoull(p, &e, 10);
	return errno != 0 || *e != '\0' ? -1 : 0;
}

/* "<modseq> <info> " of an M2 entry line; -1 when malformed. */
static int mstore_index_info(const char **l, struct mstore_ient *ie)
{
	const char *sp;

	if (mstore_u64(l, &ie->modseq) < 0 || ie->modseq == 0)
		return -1;
	sp = strchr(*l, ' ');
	if (sp == NULL || sp == *l)
		return -1;
	if (**l == '-' && sp == *l + 1) {
		ie->flags = 0;
		ie->kw = 0;
	} else {
		mstore_parse_letters(*l, &ie->flags, &ie->kw);
	}
	ie->known = 1;
	*l = sp + 1;
	return 0;
}

/* One line (without '\n') of an index of version ver; -1 when malformed. */
static int mstore_index_line(struct mstore_index *ix, int ver, const char *l)
{
	uint64_t uid, size, vsize, mtime;
	struct mstore_ient ent, *ie;

	if (l[0] == 'K' && l[1] == ' ') {
		uint64_t k;

		l += 2;
		if (mstore_u64(&l, &k) < 0 || k >= MSTORE_MAX_KEYWORDS || *l == '\0' ||
		    ix->kw[k] != NULL)
			return -1;
		ix->kw[k] = strdup(l);
		return ix->kw[k] == NULL ? -1 : 0;
	}
	memset(&ent, 0, sizeof(ent));
	ent.modseq = 1;
	if (mstore_u64(&l, &uid) < 0 || mstore_u64(&l, &size) < 0 ||
	    mstore_u64(&l, &vsize) < 0 || mstore_u64(&l, &mtime) < 0 ||
	    (ver >= 2 && mstore_index_info(&l, &ent) < 0) ||
	    *l == '\0' || strchr(l, '/') != NULL || uid == 0 || uid > UINT32_MAX ||
	    (ix->n > 0 && uid <= ix->e[ix->n - 1].uid))
		return -1;
	ie = mstore_index_add(ix);
	if (ie == NULL)
		return -1;
	*ie = ent;
	if ((ie->base = strdup(l)) == NULL) {
		ix->n--;
		return -1;
	}
	ie->uid = (uint32_t)uid;
	ie->size = size;
	ie->vsize = vsize;
	ie->mtime = (int64_t)mtime;
	return 0;
}

/* "M1 <uv> <uidnext>" or "M2 <uv> <uidnext> <hms> <first_recent>" (h
 * without '\n') into ix; the version, or -1 when unusable. */
static int mstore_index_header(struct mstore_index *ix, const char *h)
{
	uint64_t uv, next, hms = 1, fr = 0;
	int ver;

	if (strncmp(h, "M1 ", 3) == 0)
		ver = 1;
	else if (strncmp(h, "M2 ", 3) == 0)
		ver = 2;
	else
		return -1;
	h += 3;
	if (mstore_u64(&h, &uv) < 0 || uv == 0 || uv > UINT32_MAX)
		return -1;
	if (ver == 1 ? mstore_u64_last(h, &next) < 0 :
	    (mstore_u64(&h, &next) < 0 || mstore_u64(&h, &hms) < 0 ||
	     mstore_u64_last(h, &fr) < 0))
		return -1;
	if (next == 0 || next > UINT32_MAX || hms == 0 || hms >= INT64_MAX)
		return -1;
	ix->uidvalidity = (uint32_t)uv;
	ix->uidnext = (uint32_t)next;
	ix->highestmodseq = hms;
	/* M1 knew nothing of claims: what it holds is not recent any more */
	ix->first_recent_uid = ver == 1 || fr > next || fr == 0 ?
	                       (uint32_t)next : (uint32_t)fr;
	return ver;
}

/* Read the index. A missing or headerless file: MISSING; a bad line or a
 * last line without '\n' (torn write, disk damage): TORN, keeping the
 * lines before it. */
static int mstore_index_read(const char *folder, struct mstore_index *ix,
                             struct err *err)
{
	char p[MSTORE_PATH_MAX];
	struct stat st;
	char *data, *l, *nl;
	uint64_t n;
	int fd, ver;

	memset(ix, 0, sizeof(*ix));
	ix->state = MSTORE_IDX_MISSING;
	mstore_fmt(p, sizeof(p), "%s/%s", folder, MSTORE_UIDLIST);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : mstore_errno(err, "open", p);
	if (fstat(fd, &st) < 0 || st.st_size > (off_t)MSTORE_INDEX_MAX) {
		close(fd);
		return 0;   /* unusable: rebuilt */
	}
	data = malloc((size_t)st.st_size + 1);
	if (data == NULL) {
		close(fd);
		return err_set(err, 1, "out of memory");
	}
	n = 0;
	while (n < (uint64_t)st.st_size) {
		ssize_t r = read(fd, data + n, (size_t)st.st_size - n);

		if (r <= 0)
			break;
		n += (uint64_t)r;
	}
	close(fd);
	data[n] = '\0';
	nl = memchr(data, '\n', n);
	if (nl == NULL) {
		free(data);
		return 0;
	}
	*nl = '\0';
	ver = mstore_index_header(ix, data);
	if (ver < 0) {
		memset(ix, 0, sizeof(*ix));
		ix->state = MSTORE_IDX_MISSING;
		free(data);
		return 0;
	}
	ix->state = ver == 1 ? MSTORE_IDX_OLD : MSTORE_IDX_OK;
	for (l = nl + 1; l < data + n; l = nl + 1) {
		nl = memchr(l, '\n', (size_t)(data + n - l));
		if (nl == NULL) {
			ix->state = MSTORE_IDX_TORN;
			break;
		}
		*nl = '\0';
		if (mstore_index_line(ix, ver, l) < 0) {
			ix->state = MSTORE_IDX_TORN;
			break;
		}
	}
	if (ix->n > 0 && ix->uidnext <= ix->e[ix->n - 1].uid) {
		ix->uidnext = ix->e[ix->n - 1].uid + 1;
		ix->state = MSTORE_IDX_TORN;
	}
	if (ix->first_recent_uid > ix->uidnext)
		ix->first_recent_uid = ix->uidnext;
	/* HIGHESTMODSEQ never goes below a message's (RFC 7162 §3.1.2.1) */
	for (n = 0; n < ix->n; n++)
		if (ix->e[n].modseq > ix->highestmodseq)
			ix->highestmodseq = ix->e[n].modseq;
	free(data);
	return 0;
}

/* The canonical info letters of flags/kw, "-" when none. */
static void mstore_info_letters(unsigned flags, uint32_t kw, char *out, size_t n)
{
	char tmp[64];

	if (mstore_make_name("", flags & ~MSTORE_F_RECENT, kw, tmp,
	                     sizeof(tmp)) < 0 || tmp[3] == '\0')
		mstore_fmt(out, n, "-");
	else
		mstore_fmt(out, n, "%s", tmp + 3);
}

/* Write the index: temp file, fsync, rename, then (durable) fsync the
 * folder. The temp file is always fsynced, so that a crash leaves the old
 * index or the new one whole, never an empty one (which would be rebuilt
 * under a new UIDVALIDITY). Without durable the rename itself may be lost
 * in a crash (until the file system commits it, seconds): only for
 * rewrites that change nothing but mod-sequences, recorded flags or the
 * \Recent claim. Flags are advisory and live in the file names anyway;
 * the price is that after such a crash HIGHESTMODSEQ may step back a few
 * values, and messages may show as \Recent once more. */
static int mstore_index_write(const char *folder, const struct mstore_index *ix,
                              int durable, struct err *err)
{
	char tmp[MSTORE_PATH_MAX], dst[MSTORE_PATH_MAX], info[40];
	struct buf b;
	size_t i, off;
	int fd, rc = 0;

	buf_init(&b, 0);
	buf_printf(&b, "M2 %u %u %llu %u\n", ix->uidvalidity, ix->uidnext,
	           (unsigned long long)ix->highestmodseq, ix->first_recent_uid);
	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++)
		if (ix->kw[i] != NULL)
			buf_printf(&b, "K %zu %s\n", i, ix->kw[i]);
	for (i = 0; i < ix->n; i++) {
		mstore_info_letters(ix->e[i].flags, ix->e[i].kw, info, sizeof(info));
		if (buf_printf(&b, "%u %llu %llu %lld %llu %s %s\n", ix->e[i].uid,
		               (unsigned long long)ix->e[i].size,
		               (unsigned long long)ix->e[i].vsize,
		               (long long)ix->e[i].mtime,
		               (unsigned long long)ix->e[i].modseq, info,
		               ix->e[i].base) < 0)
			rc = -1;
	}
	if (rc < 0 || b.p == NULL) {
		buf_free(&b);
		return err_set(err, 1, "out of memory");
	}
	mstore_fmt(tmp, sizeof(tmp), "%s/%s", folder, MSTORE_UIDLIST_TMP);
	mstore_fmt(dst, sizeof(dst), "%s/%s", folder, MSTORE_UIDLIST);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		buf_free(&b);
		return mstore_errno(err, "open", tmp);
	}
	for (off = 0; off < b.len && rc == 0;) {
		ssize_t w = write(fd, b.p + off, b.len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = mstore_errno(err, "write", tmp);
		else
			off += (size_t)w;
	}
	buf_free(&b);
	if (rc == 0 && fsync(fd) < 0)
		rc = mstore_errno(err, "fsync", tmp);
	if (close(fd) < 0 && rc == 0)
		rc = mstore_errno(err, "close", tmp);
	if (rc == 0 && rename(tmp, dst) < 0)
		rc = mstore_errno(err, "rename", tmp);
	if (rc == 0 && durable)
		rc = mstore_fsync_dir(folder, err);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* Write ix when a sync or claim changed it; durable only when UIDs,
 * keywords or UIDVALIDITY changed. */
static int mstore_index_flush(const char *folder, struct mstore_index *ix,
                              struct err *err)
{
	if (ix->dirty &&
	    mstore_index_write(folder, ix, (ix->dirty & MSTORE_DIRTY_HARD) != 0,
	                       err) < 0)
		return -1;
	ix->dirty = 0;
	ix->state = MSTORE_IDX_OK;
	return 0;
}

/* A number at the start of an open file (0 when none). */
static uint32_t mstore_uv_read(int fd)
{
	char b[16];
	ssize_t n = pread(fd, b, sizeof(b) - 1, 0);

	if (n <= 0)
		return 0;
	b[n] = '\0';
	return (uint32_t)strtoul(b, NULL, 10);
}

/* A fresh UIDVALIDITY for a new or rebuilt index of folder: max(now,
 * last + 1), where last is the highest this mailbox gave out. RFC 3501
 * §2.3.1.1: UIDs of an old index must never be valid under the new one,
 * also when a folder is deleted and created again within one second. The
 * last value lives at the root ("mstore-uidvalidity", never removed: a
 * folder's own files go with DELETE), updated under its own flock (the
 * root's index lock may already be ours: this is INBOX). Older versions
 * kept it in the folder's lock file: still read. Called under folder's
 * index lock. */
static uint32_t mstore_new_uidvalidity(const char *root, const char *folder)
{
	char p[MSTORE_PATH_MAX], b[16];
	uint32_t v = (uint32_t)time(NULL), last = 0, old = 0;
	int fd, n;

	mstore_fmt(p, sizeof(p), "%s/%s", folder, MSTORE_LOCK);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		old = mstore_uv_read(fd);
		close(fd);
	}
	mstore_fmt(p, sizeof(p), "%s/%s", root, MSTORE_UVFILE);
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	while (fd >= 0 && flock(fd, LOCK_EX) < 0 && errno == EINTR)
		;
	if (fd >= 0)
		last = mstore_uv_read(fd);
	if (old > last)
		last = old;
	if (v <= last)
		v = last + 1;
	if (v == 0)
		v = 1;
	if (fd >= 0) {
		n = mstore_fmt(b, sizeof(b), "%u\n", v);
		/* best effort: losing it costs only the same-second guarantee */
		if (pwrite(fd, b, (size_t)n, 0) == n && ftruncate(fd, n) == 0)
			(void)fsync(fd);
		close(fd);   /* releases the flock */
	}
	return v;
}

/* ---- scanning new/ and cur/ ---- */

struct mstore_scan {
	struct mstore_dent *d;
	size_t n, cap;
};

static void mstore_scan_free(struct mstore_scan *sc)
{
	size_t i;

	for (i = 0; i < sc->n; i++) {
		free(sc->d[i].name);
		free(sc->d[i].base);
	}
	free(sc->d);
	memset(sc, 0, sizeof(*sc));
}

static int mstore_scan_add(struct mstore_scan *sc, const char *name, int in_new)
{
	struct mstore_dent *d;

	if (sc->n == sc->cap) {
		size_t nc = sc->cap ? sc->cap * 2 : 64;

		d = realloc(sc->d, nc * sizeof(*d));
		if (d == NULL)
			return -1;
		sc->d = d;
		sc->cap = nc;
	}
	d = &sc->d[sc->n];
	memset(d, 0, sizeof(*d));
	d->name = strdup(name);
	d->base = mstore_base_of(name);
	if (d->name == NULL || d->base == NULL) {
		free(d->name);
		free(d->base);
		return -1;
	}
	d->in_new = in_new;
	mstore_parse_info(name, &d->flags, &d->kw);
	sc->n++;
	return 0;
}

static int mstore_dent_cmp(const void *a, const void *b)
{
	const struct mstore_dent *x = a, *y = b;
	int c = strcmp(x->base, y->base);

	/* the cur/ copy wins over a stale new/ one */
	return c != 0 ? c : x->in_new - y->in_new;
}

/* List new/ (moving each file to cur/ when move_new) and cur/, sorted by
 * base name, one entry per base. */
static int mstore_scan_dirs(const char *folder, int move_new,
                            struct mstore_scan *sc, struct err *err)
{
	char p[MSTORE_PATH_MAX], from[MSTORE_PATH_MAX], to[MSTORE_PATH_MAX];
	struct dirent *de;
	DIR *d;
	size_t i, j;
	int pass;

	memset(sc, 0, sizeof(*sc));
	for (pass = 0; pass < 2; pass++) {
		mstore_fmt(p, sizeof(p), "%s/%s", folder, pass == 0 ? "new" : "cur");
		d = opendir(p);
		if (d == NULL) {
			mstore_scan_free(sc);
			return mstore_errno(err, "opendir", p);
		}
		while ((de = readdir(d)) != NULL) {
			int in_new = pass == 0;
			const char *name = de->d_name;
			char moved[MAILDIR_NAME_MAX + 8];

			if (name[0] == '.' || strlen(name) > MAILDIR_NAME_MAX)
				continue;
			if (in_new && move_new) {
				mstore_fmt(moved, sizeof(moved), "%s%s", name,
				         strchr(name, ':') ? "" : ":2,");
				mstore_fmt(from, sizeof(from), "%s/new/%s", folder, name);
				mstore_fmt(to, sizeof(to), "%s/cur/%s", folder, moved);
				if (rename(from, to) < 0)
					continue;   /* another session took it */
				name = moved;
				in_new = 0;
			}
			if (mstore_scan_add(sc, name, in_new) < 0) {
				closedir(d);
				mstore_scan_free(sc);
				return err_set(err, 1, "out of memory");
			}
		}
		closedir(d);
	}
	if (sc->n > 1)
		qsort(sc->d, sc->n, sizeof(sc->d[0]), mstore_dent_cmp);
	/* a file moved by us may also be seen in cur/: keep one */
	for (i = 0, j = 0; i < sc->n; i++) {
		if (j > 0 && strcmp(sc->d[j - 1].base, sc->d[i].base) == 0) {
			free(sc->d[i].name);
			free(sc->d[i].base);
			continue;
		}
		sc->d[j++] = sc->d[i];
	}
	sc->n = j;
	return 0;
}

static struct mstore_dent *mstore_scan_find(struct mstore_scan *sc,
                                            const char *base)
{
	size_t lo = 0, hi = sc->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(sc->d[mid].base, base);

		if (c == 0)
			return &sc->d[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Under the lock: a new file takes the next UID (in base-name order,
 * which is delivery order) and a mod-sequence. */
static int mstore_index_sync_new(const char *folder, struct mstore_index *ix,
                                 struct mstore_dent *d, struct err *err)
{
	char p[MSTORE_PATH_MAX];
	struct mstore_ient *ie;

	mstore_fmt(p, sizeof(p), "%s/%s/%s", folder, d->in_new ? "new" : "cur",
	           d->name);
	ie = mstore_index_add(ix);
	if (ie == NULL)
		return err_set(err, 1, "out of memory");
	if (mstore_measure(p, d->name, &ie->size, &ie->vsize, &ie->mtime) < 0) {
		ix->n--;   /* vanished meanwhile */
		return 0;
	}
	ie->base = strdup(d->base);
	if (ie->base == NULL) {
		ix->n--;
		return err_set(err, 1, "out of memory");
	}
	ie->uid = ix->uidnext++;
	ie->modseq = ++ix->highestmodseq;
	ie->flags = d->flags;
	ie->kw = d->kw;
	ie->known = 1;
	ix->dirty |= MSTORE_DIRTY_HARD;
	return 0;
}

/* Under the lock: a known file's name against the flags the index last
 * recorded. RFC 7162 §3.1: a change of flags or keywords takes a new
 * mod-sequence; an entry from an M1 index takes the name as it is. */
static void mstore_index_sync_flags(struct mstore_index *ix,
                                    struct mstore_ient *ie,
                                    const struct mstore_dent *d)
{
	if (ie->known && ie->flags == d->flags && ie->kw == d->kw)
		return;
	if (ie->known)
		ie->modseq = ++ix->highestmodseq;
	ie->flags = d->flags;
	ie->kw = d->kw;
	ie->known = 1;
	ix->dirty |= MSTORE_DIRTY_SOFT;
}

/* Match files with the index under the lock: drop entries whose file is
 * gone, give new files the next UIDs, note flag changes, rebuild a lost
 * index (new UIDVALIDITY, HIGHESTMODSEQ restarts). The caller writes it
 * (mstore_index_flush). */
static int mstore_index_sync(const char *root, const char *folder,
                             struct mstore_index *ix, struct mstore_scan *sc,
                             struct err *err)
{
	size_t i, j;
	struct mstore_dent *d;

	if (ix->state == MSTORE_IDX_MISSING) {
		ix->uidvalidity = mstore_new_uidvalidity(root, folder);
		ix->uidnext = 1;
		ix->highestmodseq = 1;
		ix->first_recent_uid = 1;
		ix->dirty |= MSTORE_DIRTY_HARD;
	} else if (ix->state != MSTORE_IDX_OK) {
		ix->dirty |= MSTORE_DIRTY_HARD;   /* torn, or the M1 format */
	}
	for (i = 0, j = 0; i < ix->n; i++) {
		d = mstore_scan_find(sc, ix->e[i].base);
		if (d == NULL || d->ie != NULL) {
			/* RFC 7162 §3.1.2.1: an expunge changes HIGHESTMODSEQ */
			free(ix->e[i].base);
			ix->highestmodseq++;
			ix->dirty |= MSTORE_DIRTY_HARD;
			continue;
		}
		ix->e[j] = ix->e[i];
		mstore_index_sync_flags(ix, &ix->e[j], d);
		d->ie = &ix->e[j];
		j++;
	}
	ix->n = j;
	for (i = 0; i < sc->n; i++)
		if (sc->d[i].ie == NULL &&
		    mstore_index_sync_new(folder, ix, &sc->d[i], err) < 0)
			return -1;
	/* index_add may have moved the array: re-point the matches */
	for (i = 0; i < sc->n; i++)
		sc->d[i].ie = NULL;
	for (i = 0; i < ix->n; i++) {
		d = mstore_scan_find(sc, ix->e[i].base);
		if (d != NULL)
			d->ie = &ix->e[i];
	}
	return 0;
}

/* Lock, read, scan, sync, claim \Recent when claim, write, unlock.
 * *recent_from_r (may be NULL) gets first_recent_uid as it was before the
 * claim: the messages this caller may call recent. */
/* An indexed message the scan did not see: expunged, or renamed by
 * another session (flags) while readdir() ran, which POSIX lets readdir
 * miss. Dropping it would give the message a new UID at the next scan
 * (the client sees it expunged and downloads it again): look once more
 * and keep what either scan saw. 0 or -1 (out of memory). */
static int mstore_scan_recheck(const char *folder, const struct mstore_index *ix,
                               struct mstore_scan *sc, struct err *err)
{
	struct mstore_scan again, both;
	size_t i, j, k;
	int missing = 0;

	for (i = 0; i < ix->n && !missing; i++)
		missing = mstore_scan_find(sc, ix->e[i].base) == NULL;
	if (!missing)
		return 0;
	if (mstore_scan_dirs(folder, 0, &again, err) < 0)
		return -1;
	memset(&both, 0, sizeof(both));
	both.cap = sc->n + again.n;
	both.d = calloc(both.cap ? both.cap : 1, sizeof(*both.d));
	if (both.d == NULL) {
		mstore_scan_free(&again);
		return err_set(err, 1, "out of memory");
	}
	/* both lists are sorted by base: merge, the first scan's entry wins */
	for (i = 0, j = 0; i < sc->n || j < again.n;) {
		int c = i >= sc->n ? 1 : j >= again.n ? -1 :
			strcmp(sc->d[i].base, again.d[j].base);

		if (c <= 0) {
			both.d[both.n++] = sc->d[i++];
			if (c == 0) {
				free(again.d[j].name);
				free(again.d[j].base);
				j++;
			}
		} else {
			both.d[both.n++] = again.d[j++];
		}
	}
	for (k = 0; k < both.n; k++)
		both.d[k].ie = NULL;
	free(sc->d);
	free(again.d);
	*sc = both;
	return 0;
}

static int mstore_load(const char *root, const char *folder, int move_new,
                       int claim, struct mstore_index *ix,
                       struct mstore_scan *sc, uint32_t *recent_from_r,
                       struct err *err)
{
	int lk = mstore_lock(folder, err), rc;

	if (lk < 0)
		return -1;
	rc = mstore_index_read(folder, ix, err);
	if (rc == 0)
		rc = mstore_scan_dirs(folder, move_new, sc, err);
	if (rc == 0 && ix->state == MSTORE_IDX_OK)
		rc = mstore_scan_recheck(folder, ix, sc, err);
	if (rc == 0)
		rc = mstore_index_sync(root, folder, ix, sc, err);
	if (rc == 0 && recent_from_r != NULL)
		*recent_from_r = ix->first_recent_uid;
	if (rc == 0 && claim && ix->first_recent_uid != ix->uidnext) {
		/* RFC 3501 §2.3.2: recent to this session only */
		ix->first_recent_uid = ix->uidnext;
		ix->dirty |= MSTORE_DIRTY_SOFT;
	}
	if (rc == 0)
		rc = mstore_index_flush(folder, ix, err);
	mstore_unlock(lk);
	if (rc < 0) {
		mstore_scan_free(sc);
		mstore_index_clear(ix);
	}
	return rc;
}

/* ---- open folders ---- */

static void mstore_msgs_free(struct mstore_msg *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(m[i].name);
	free(m);
}

static void mstore_folder_set_keywords(struct mstore_folder *f,
                                       struct mstore_index *ix)
{
	unsigned i;

	f->nkeywords = 0;
	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++) {
		free(f->keywords[i]);
		f->keywords[i] = ix->kw[i];
		ix->kw[i] = NULL;
		if (f->keywords[i] != NULL)
			f->nkeywords = i + 1;
	}
}

static int mstore_u32_push(uint32_t **a, size_t *n, uint32_t v)
{
	uint32_t *na = realloc(*a, (*n + 1) * sizeof(**a));

	if (na == NULL)
		return -1;
	na[(*n)++] = v;
	*a = na;
	return 0;
}

/* Compare the old view with the new one (both sorted by uid). */
static int mstore_diff(const struct mstore_msg *old, size_t on,
                       struct mstore_msg *nw, size_t nn,
                       struct mstore_changes *ch)
{
	size_t i = 0, j = 0, matched = 0, k;

	while (i < on || j < nn) {
		if (j >= nn || (i < on && old[i].uid < nw[j].uid)) {
			if (ch != NULL) {
				k = ch->nexpunged;
				if (mstore_u32_push(&ch->expunged_uid, &k, old[i].uid) < 0 ||
				    mstore_u32_push(&ch->expunged_seq, &ch->nexpunged,
				                    (uint32_t)(i + 1)) < 0)
					return -1;
			}
			i++;
		} else if (i >= on || nw[j].uid < old[i].uid) {
			j++;
		} else {
			nw[j].flags |= old[i].flags & MSTORE_F_RECENT;
			if (ch != NULL &&
			    ((nw[j].flags ^ old[i].flags) & ~MSTORE_F_RECENT ||
			     nw[j].keywords != old[i].keywords) &&
			    mstore_u32_push(&ch->changed_seq, &ch->nchanged,
			                    (uint32_t)(j + 1)) < 0)
				return -1;
			matched++;
			i++;
			j++;
		}
	}
	if (ch != NULL) {
		/* RFC 3501 §7.4.1: send them highest first so that each number
		 * is still valid when it is read */
		for (k = 0; k < ch->nexpunged / 2; k++) {
			uint32_t t = ch->expunged_seq[k];

			ch->expunged_seq[k] = ch->expunged_seq[ch->nexpunged - 1 - k];
			ch->expunged_seq[ch->nexpunged - 1 - k] = t;
			t = ch->expunged_uid[k];
			ch->expunged_uid[k] = ch->expunged_uid[ch->nexpunged - 1 - k];
			ch->expunged_uid[ch->nexpunged - 1 - k] = t;
		}
		ch->nnew += nn - matched;
	}
	return 0;
}

/* mtimes of new/ and cur/; 0 or -1 */
static int mstore_dir_stamps(const char *folder, struct timespec st[2])
{
	char p[MSTORE_PATH_MAX];
	struct stat sb;

	mstore_fmt(p, sizeof(p), "%s/new", folder);
	if (stat(p, &sb) < 0)
		return -1;
	st[0] = sb.st_mtim;
	mstore_fmt(p, sizeof(p), "%s/cur", folder);
	if (stat(p, &sb) < 0)
		return -1;
	st[1] = sb.st_mtim;
	return 0;
}

static int mstore_ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

int mstore_sync(struct mstore_folder *f, struct mstore_changes *ch,
                struct err *err)
{
	struct mstore_index ix;
	struct mstore_scan sc;
	struct mstore_msg *nw;
	struct timespec before[2];
	size_t i, n = 0;
	uint32_t recent_from = 0;
	int have_stamps;
	time_t t0;

	/* Nothing renamed, added or removed since the last scan: the
	 * directories' mtimes say so, once they are old enough that a change
	 * within the same clock tick cannot hide behind them. */
	have_stamps = mstore_dir_stamps(f->path, before) == 0;
	if (have_stamps && f->stamp_ok && mstore_ts_eq(before[0], f->stamp[0]) &&
	    mstore_ts_eq(before[1], f->stamp[1]))
		return 0;
	t0 = time(NULL);
	if (mstore_load(f->ms->root, f->path, 1, !f->readonly, &ix, &sc,
	                &recent_from, err) < 0)
		return -1;
	/* the scan saw everything up to the mtimes only if they predate it
	 * (re-stat: our own new/ -> cur/ moves changed them) */
	f->stamp_ok = 0;
	if (have_stamps && mstore_dir_stamps(f->path, f->stamp) == 0)
		f->stamp_ok = f->stamp[0].tv_sec < t0 - 1 &&
		              f->stamp[1].tv_sec < t0 - 1;
	nw = calloc(ix.n + 1, sizeof(*nw));
	if (nw == NULL)
		goto oom;
	for (i = 0; i < ix.n; i++) {
		struct mstore_dent *d = mstore_scan_find(&sc, ix.e[i].base);
		struct mstore_msg *m = &nw[n];

		if (d == NULL || d->in_new)
			continue;
		m->uid = ix.e[i].uid;
		m->flags = d->flags |
		           (m->uid >= recent_from ? MSTORE_F_RECENT : 0);
		m->keywords = d->kw;
		m->modseq = ix.e[i].modseq;
		m->size = ix.e[i].size;
		m->vsize = ix.e[i].vsize;
		m->internaldate = (time_t)ix.e[i].mtime;
		m->name = d->name;
		d->name = NULL;
		n++;
	}
	if (ch != NULL && f->uidvalidity != 0 && f->uidvalidity != ix.uidvalidity)
		ch->uidvalidity_changed = 1;
	if (mstore_diff(f->msgs, f->count, nw, n, ch) < 0) {
		mstore_msgs_free(nw, n);
		goto oom;
	}
	mstore_msgs_free(f->msgs, f->count);
	f->msgs = nw;
	f->count = n;
	f->uidvalidity = ix.uidvalidity;
	f->uidnext = ix.uidnext;
	f->highestmodseq = ix.highestmodseq;
	mstore_folder_set_keywords(f, &ix);
	mstore_scan_free(&sc);
	mstore_index_clear(&ix);
	return 0;
oom:
	mstore_scan_free(&sc);
	mstore_index_clear(&ix);
	return err_set(err, 1, "out of memory");
}

void mstore_changes_free(struct mstore_changes *ch)
{
	if (ch == NULL)
		return;
	free(ch->expunged_seq);
	free(ch->expunged_uid);
	free(ch->changed_seq);
	memset(ch, 0, sizeof(*ch));
}

struct mstore_folder *mstore_folder_open(struct mstore *ms, const char *name,
                                         int readonly, struct err *err)
{
	char p[MSTORE_PATH_MAX], cur[MSTORE_PATH_MAX];
	struct mstore_folder *f;
	struct stat st;

	if (mstore_folder_path(ms, name, p, sizeof(p), err) < 0)
		return NULL;
	mstore_fmt(cur, sizeof(cur), "%s/cur", p);
	if (stat(cur, &st) < 0 || !S_ISDIR(st.st_mode)) {
		err_set(err, errno == ENOENT || errno == ENOTDIR ? 0 : 1,
		        "no such folder: %s", name);
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	f->ms = ms;
	f->readonly = readonly;
	f->name = strdup(mstore_is_inbox(name) ? "INBOX" : name);
	f->path = strdup(p);
	if (f->name == NULL || f->path == NULL) {
		err_set(err, 1, "out of memory");
		mstore_folder_free(f);
		return NULL;
	}
	if (mstore_sync(f, NULL, err) < 0) {
		mstore_folder_free(f);
		return NULL;
	}
	return f;
}

void mstore_folder_free(struct mstore_folder *f)
{
	unsigned i;

	if (f == NULL)
		return;
	mstore_msgs_free(f->msgs, f->count);
	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++)
		free(f->keywords[i]);
	free(f->name);
	free(f->path);
	free(f);
}

long mstore_find_uid(const struct mstore_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->count;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (f->msgs[mid].uid == uid)
			return (long)mid;
		if (f->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int mstore_msg_path(const struct mstore_folder *f, size_t idx, char *out,
                    size_t out_size)
{
	int r;

	if (idx >= f->count)
		return -1;
	r = mstore_fmt(out, out_size, "%s/cur/%s", f->path, f->msgs[idx].name);
	return r < 0 || (size_t)r >= out_size ? -1 : 0;
}

/* The file was renamed by another session (flags): find it by base. */
static int mstore_refind(struct mstore_folder *f, size_t idx, struct err *err)
{
	char p[MSTORE_PATH_MAX];
	struct mstore_msg *m = &f->msgs[idx];
	char *base = mstore_base_of(m->name);
	size_t bl;
	struct dirent *de;
	DIR *d;
	int rc = -1;

	if (base == NULL)
		return err_set(err, 1, "out of memory");
	bl = strlen(base);
	mstore_fmt(p, sizeof(p), "%s/cur", f->path);
	d = opendir(p);
	if (d == NULL) {
		rc = mstore_errno(err, "opendir", p);
		free(base);
		return rc;
	}
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, base, bl) == 0 &&
		    (de->d_name[bl] == ':' || de->d_name[bl] == '\0')) {
			char *nn = strdup(de->d_name);

			rc = nn == NULL ? 1 : 0;
			if (nn != NULL) {
				free(m->name);
				m->name = nn;
			}
			break;
		}
	}
	closedir(d);
	free(base);
	if (rc == 1)
		return err_set(err, 1, "out of memory");
	if (rc < 0)
		err_set(err, 0, "message uid %u was expunged", m->uid);
	return rc;
}

#define MSTORE_FLAG_TRIES 12

/* Between retries of a contended flag change: a short, growing, jittered
 * pause, so that sessions racing on one message stop colliding (we run on
 * a worker thread: blocking is allowed). */
static void mstore_flag_backoff(int tries)
{
	struct timeval tv;
	struct timespec ts;
	unsigned long us;

	if (tries < 2)
		return;
	gettimeofday(&tv, NULL);
	us = ((unsigned long)tv.tv_usec * 2654435761u ^ (unsigned long)getpid()) %
	     1000u * (unsigned long)tries;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)us * 1000;
	nanosleep(&ts, NULL);
}

/* op on the flags of file name name -> the new name (base kept). */
static int mstore_flags_apply(const char *name, enum mstore_flag_op op,
                              unsigned flags, uint32_t kw, char *out, size_t n,
                              unsigned *flags_r, uint32_t *kw_r)
{
	unsigned cf;
	uint32_t ck;
	char *base;
	int rc;

	mstore_parse_info(name, &cf, &ck);
	flags &= ~MSTORE_F_RECENT;
	if (op == MSTORE_FLAGS_ADD) {
		*flags_r = cf | flags;
		*kw_r = ck | kw;
	} else if (op == MSTORE_FLAGS_REMOVE) {
		*flags_r = cf & ~flags;
		*kw_r = ck & ~kw;
	} else {
		*flags_r = (flags & ~MSTORE_F_PASSED) | (cf & MSTORE_F_PASSED);
		*kw_r = kw;
	}
	base = mstore_base_of(name);
	if (base == NULL)
		return -1;
	rc = mstore_make_name(base, *flags_r, *kw_r, out, n);
	free(base);
	return rc;
}

int mstore_set_flags(struct mstore_folder *f, size_t idx, enum mstore_flag_op op,
                     unsigned flags, uint32_t keywords, struct err *err)
{
	char from[MSTORE_PATH_MAX], to[MSTORE_PATH_MAX], nn[MAILDIR_NAME_MAX + 40];
	struct mstore_msg *m;
	struct stat st;
	unsigned nf = 0;
	uint32_t nk = 0;
	char *dup;
	int tries;

	if (idx >= f->count)
		return err_set(err, 0, "no such message");
	if (f->readonly)
		return err_set(err, 0, "folder is read-only");
	m = &f->msgs[idx];
	/* The change is computed on the name we know and applied by a rename
	 * from exactly that name, which fails if another session renamed the
	 * file meanwhile: then its name is read again and the change redone,
	 * so both sessions' changes stay (a compare-and-swap on the name). */
	for (tries = 0; tries < MSTORE_FLAG_TRIES; tries++) {
		if (mstore_flags_apply(m->name, op, flags, keywords, nn, sizeof(nn),
		                       &nf, &nk) < 0)
			return err_set(err, 1, "cannot make the new name of %u",
			               m->uid);
		mstore_fmt(from, sizeof(from), "%s/cur/%s", f->path, m->name);
		if (strcmp(nn, m->name) == 0) {
			/* nothing to rename, if the name we know is still the
			 * file's: a stale one may hide another session's change */
			if (lstat(from, &st) == 0)
				break;
		} else {
			mstore_fmt(to, sizeof(to), "%s/cur/%s", f->path, nn);
			if (rename(from, to) == 0)
				break;
		}
		if (errno != ENOENT)
			return mstore_errno(err, "rename", from);
		mstore_flag_backoff(tries);
		if (mstore_refind(f, idx, err) < 0)
			return -1;
	}
	if (tries == MSTORE_FLAG_TRIES)
		return err_set(err, 1, "message %u keeps moving", m->uid);
	if (strcmp(nn, m->name) != 0) {
		dup = strdup(nn);
		if (dup == NULL)
			return err_set(err, 1, "out of memory");
		free(m->name);
		m->name = dup;
	}
	m->flags = nf | (m->flags & MSTORE_F_RECENT);
	m->keywords = nk;
	return 0;
}

int mstore_keyword(struct mstore_folder *f, const char *name, int create,
                   struct err *err)
{
	struct mstore_index ix;
	unsigned i;
	int lk, k = -1, rc = 0;

	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++)
		if (f->keywords[i] != NULL && strcasecmp(f->keywords[i], name) == 0)
			return (int)i;
	if (!create)
		return err_set(err, 0, "no such keyword");
	/* RFC 3501 §9 flag-keyword is an atom: no space, no controls */
	for (i = 0; name[i] != '\0'; i++)
		if ((unsigned char)name[i] <= ' ' || (unsigned char)name[i] >= 127 ||
		    strchr("(){%*\"\\]", name[i]) != NULL)
			return err_set(err, 0, "bad keyword");
	if (i == 0 || i > 100)
		return err_set(err, 0, "bad keyword");
	lk = mstore_lock(f->path, err);
	if (lk < 0)
		return -1;
	rc = mstore_index_read(f->path, &ix, err);
	if (rc == 0 && ix.state != MSTORE_IDX_OK) {
		/* let a sync rebuild it first */
		mstore_unlock(lk);
		mstore_index_clear(&ix);
		if (mstore_sync(f, NULL, err) < 0)
			return -1;
		return mstore_keyword(f, name, create, err);
	}
	for (i = 0; rc == 0 && i < MSTORE_MAX_KEYWORDS; i++)
		if (ix.kw[i] != NULL && strcasecmp(ix.kw[i], name) == 0)
			k = (int)i;
	for (i = 0; rc == 0 && k < 0 && i < MSTORE_MAX_KEYWORDS; i++)
		if (ix.kw[i] == NULL) {
			ix.kw[i] = strdup(name);
			if (ix.kw[i] == NULL)
				rc = err_set(err, 1, "out of memory");
			else if ((rc = mstore_index_write(f->path, &ix, 1, err)) == 0)
				k = (int)i;
		}
	if (rc == 0 && k < 0)
		rc = err_set(err, 0, "too many keywords in this folder");
	mstore_unlock(lk);
	if (rc == 0) {
		free(f->keywords[k]);
		f->keywords[k] = strdup(ix.kw[k]);
		if ((unsigned)k >= f->nkeywords)
			f->nkeywords = (unsigned)k + 1;
	}
	mstore_index_clear(&ix);
	return rc < 0 ? -1 : k;
}

int mstore_msg_read(struct mstore_folder *f, size_t idx, int crlf,
                    struct buf *out, struct err *err)
{
	char p[MSTORE_PATH_MAX], tmp[65536];
	int fd = -1, tries;
	ssize_t r;
	char prev = 0;

	if (idx >= f->count)
		return err_set(err, 0, "no such message");
	for (tries = 0; tries < 3 && fd < 0; tries++) {
		mstore_msg_path(f, idx, p, sizeof(p));
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno != ENOENT)
			return mstore_errno(err, "open", p);
		if (fd < 0 && mstore_refind(f, idx, err) < 0)
			return -1;
	}
	if (fd < 0)
		return err_set(err, 1, "message %u keeps moving", f->msgs[idx].uid);
	while ((r = read(fd, tmp, sizeof(tmp))) != 0) {
		ssize_t i, s = 0;

		if (r < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return mstore_errno(err, "read", p);
		}
		for (i = 0; crlf && i < r; i++) {
			/* RFC 5322 §2.3: lines end in CRLF on the wire */
			if (tmp[i] == '\n' && (i > 0 ? tmp[i - 1] : prev) != '\r') {
				if (buf_append(out, tmp + s, (size_t)(i - s)) < 0 ||
				    buf_putc(out, '\r') < 0)
					goto full;
				s = i;
			}
		}
		if (buf_append(out, tmp + s, (size_t)(r - s)) < 0)
			goto full;
		prev = tmp[r - 1];
	}
	close(fd);
	return 0;
full:
	close(fd);
	return err_set(err, 0, "message too large");
}

/* The quota definition in maildirsize (Maildir++: "<bytes>S"). Returns 0
 * with *limit_r (0: none), or -1 when there is no readable file. */
static int mstore_quota_file_limit(const struct mstore *ms, long long *limit_r)
{
	char p[MSTORE_PATH_MAX], text[8192];
	long long b, n;
	ssize_t r;
	int fd;

	*limit_r = 0;
	mstore_fmt(p, sizeof(p), "%s/maildirsize", ms->root);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (r < 0)
		return -1;
	text[r] = '\0';
	if (quota_parse(text, (size_t)r, limit_r, &b, &n) < 0)
		*limit_r = 0;
	return 0;
}

/* The limit that applies: the user map's, else maildirsize's own. */
static long long mstore_quota_limit(const struct mstore *ms)
{
	long long limit;

	if (ms->quota_limit > 0)
		return ms->quota_limit > (uint64_t)INT64_MAX ? INT64_MAX :
		       (long long)ms->quota_limit;
	mstore_quota_file_limit(ms, &limit);
	return limit;
}

/* Maildir++ maildirsize bookkeeping, only when the file exists (quota.h
 * rebuilds it by scanning otherwise). */
static void mstore_quota_note(struct mstore *ms, long long bytes, long long files)
{
	long long limit;
	struct err e;

	if (mstore_quota_file_limit(ms, &limit) < 0)
		return;
	if (ms->quota_limit > 0)
		limit = mstore_quota_limit(ms);
	quota_add(ms->root, limit, bytes, files, (uid_t)-1, (gid_t)-1, &e);
}

void mstore_set_quota(struct mstore *ms, uint64_t limit)
{
	ms->quota_limit = limit;
}

static int mstore_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int mstore_expunge(struct mstore_folder *f, const uint32_t *uids, size_t nuids,
                   int force, struct mstore_changes *ch, struct err *err)
{
	uint32_t *sorted = NULL;
	char p[MSTORE_PATH_MAX];
	long long bytes = 0, files = 0;
	size_t i;

	if (f->readonly)
		return err_set(err, 0, "folder is read-only");
	if (uids != NULL) {
		sorted = malloc((nuids + 1) * sizeof(*sorted));
		if (sorted == NULL)
			return err_set(err, 1, "out of memory");
		memcpy(sorted, uids, nuids * sizeof(*sorted));
		qsort(sorted, nuids, sizeof(*sorted), mstore_u32_cmp);
	}
	for (i = 0; i < f->count; i++) {
		struct mstore_msg *m = &f->msgs[i];
		int want;

		if (uids == NULL)
			want = (m->flags & MSTORE_F_DELETED) != 0;
		else
			want = bsearch(&m->uid, sorted, nuids, sizeof(*sorted),
			               mstore_u32_cmp) != NULL &&
			       (force || (m->flags & MSTORE_F_DELETED));
		if (!want)
			continue;
		mstore_msg_path(f, i, p, sizeof(p));
		if (unlink(p) < 0) {
			if (errno != ENOENT) {
				free(sorted);
				return mstore_errno(err, "unlink", p);
			}
			if (mstore_refind(f, i, NULL) < 0)
				continue;   /* someone else expunged it */
			mstore_msg_path(f, i, p, sizeof(p));
			if (unlink(p) < 0 && errno != ENOENT) {
				free(sorted);
				return mstore_errno(err, "unlink", p);
			}
		}
		bytes -= (long long)m->size;
		files--;
	}
	free(sorted);
	if (files != 0)
		mstore_quota_note(f->ms, bytes, files);
	return mstore_sync(f, ch, err);
}

/* Lock folder name and load its index (rebuilt first if need be), for
 * adding messages. Returns the lock fd, or -1. */
static int mstore_index_begin(struct mstore *ms, const char *name, char *path,
                              size_t path_n, struct mstore_index *ix,
                              struct err *err)
{
	char cur[MSTORE_PATH_MAX];
	struct mstore_scan sc;
	struct stat st;
	int lk;

	if (mstore_folder_path(ms, name, path, path_n, err) < 0)
		return -1;
	mstore_fmt(cur, sizeof(cur), "%s/cur", path);
	if (stat(cur, &st) < 0)
		return err_set(err, errno == ENOENT ? 0 : 1, "no such folder: %s", name);
	lk = mstore_lock(path, err);
	if (lk < 0)
		return -1;
	if (mstore_index_read(path, ix, err) < 0) {
		mstore_unlock(lk);
		return -1;
	}
	if (ix->state != MSTORE_IDX_OK) {
		if (mstore_scan_dirs(path, 0, &sc, err) < 0 ||
		    mstore_index_sync(ms->root, path, ix, &sc, err) < 0 ||
		    mstore_index_flush(path, ix, err) < 0) {
			mstore_index_clear(ix);
			mstore_unlock(lk);
			return -1;
		}
		mstore_scan_free(&sc);
	}
	return lk;
}

/* Keyword name -> letter in ix, adding it. -1 when the folder is full. */
static int mstore_index_keyword(struct mstore_index *ix, const char *name)
{
	int i, free_i = -1;

	for (i = 0; i < MSTORE_MAX_KEYWORDS; i++) {
		if (ix->kw[i] != NULL && strcasecmp(ix->kw[i], name) == 0)
			return i;
		if (ix->kw[i] == NULL && free_i < 0)
			free_i = i;
	}
	if (free_i < 0 || (ix->kw[free_i] = strdup(name)) == NULL)
		return -1;
	ix->dirty |= MSTORE_DIRTY_HARD;
	return free_i;
}

static uint64_t mstore_vsize_of(const char *data, size_t len)
{
	uint64_t v = len;
	size_t i;

	for (i = 0; i < len; i++)
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			v++;
	return v;
}

/* A message added under the lock (APPEND, COPY): the next UID and
 * mod-sequence; \Recent for the next read-write open (first_recent_uid
 * stays). */
static int mstore_index_push(struct mstore_index *ix, const char *name,
                             uint64_t size, uint64_t vsize, int64_t mtime,
                             unsigned flags, uint32_t kw, uint32_t *uid_r)
{
	struct mstore_ient *ie = mstore_index_add(ix);

	if (ie == NULL)
		return -1;
	ie->base = mstore_base_of(name);
	if (ie->base == NULL) {
		ix->n--;
		return -1;
	}
	ie->uid = ix->uidnext++;
	ie->size = size;
	ie->vsize = vsize;
	ie->mtime = mtime;
	ie->modseq = ++ix->highestmodseq;
	ie->flags = flags & ~MSTORE_F_RECENT;
	ie->kw = kw;
	ie->known = 1;
	if (uid_r != NULL)
		*uid_r = ie->uid;
	return 0;
}

int mstore_append(struct mstore *ms, const char *name, const char *data,
                  size_t len, unsigned flags, const char *const *keywords,
                  size_t nkeywords, time_t internaldate, uint32_t *uid_r,
                  uint32_t *uidvalidity_r, struct err *err)
{
	char path[MSTORE_PATH_MAX], fname[MAILDIR_NAME_MAX + 40], info[64];
	char p[MSTORE_PATH_MAX + MAILDIR_NAME_MAX + 8];
	struct mstore_index ix;
	struct iovec iov;
	uint32_t kw = 0;
	size_t i;
	int lk, rc = 0, k;

	lk = mstore_index_begin(ms, name, path, sizeof(path), &ix, err);
	if (lk < 0)
		return -1;
	for (i = 0; i < nkeywords && rc == 0; i++) {
		k = mstore_index_keyword(&ix, keywords[i]);
		if (k < 0)
			rc = err_set(err, 0, "too many keywords in this folder");
		else
			kw |= 1u << k;
	}
	/* info = ":2," + letters; the base is made by maildir_deliver */
	if (rc == 0 && mstore_make_name("", flags & ~MSTORE_F_RECENT, kw, info,
	                                sizeof(info)) < 0)
		rc = err_set(err, 0, "bad flags");
	iov.iov_base = (void *)data;
	iov.iov_len = len;
	if (rc == 0)
		rc = maildir_deliver(path, NULL, &iov, 1, "cur", info, fname,
		                     sizeof(fname), err);
	if (rc == 0 && internaldate > 0) {
		struct timespec ts[2] = { { internaldate, 0 }, { internaldate, 0 } };

		mstore_fmt(p, sizeof(p), "%s/cur/%s", path, fname);
		utimensat(AT_FDCWD, p, ts, 0);
	}
	if (rc == 0 && mstore_index_push(&ix, fname, len, mstore_vsize_of(data, len),
	                                 internaldate > 0 ? internaldate : time(NULL),
	                                 flags, kw, uid_r) < 0)
		rc = err_set(err, 1, "out of memory");
	if (rc == 0)
		rc = mstore_index_write(path, &ix, 1, err);
	if (rc == 0 && uidvalidity_r != NULL)
		*uidvalidity_r = ix.uidvalidity;
	mstore_unlock(lk);
	mstore_index_clear(&ix);
	if (rc == 0)
		mstore_quota_note(ms, (long long)len, 1);
	return rc < 0 ? -1 : 0;
}

/* Copy one file when a hard link is impossible (other file system). */
static int mstore_copy_file(const char *from, const char *dest_folder,
                            char *fname, size_t fname_n, const char *info,
                            struct err *err)
{
	struct buf b;
	struct iovec iov;
	struct stat st;
	char p[MSTORE_PATH_MAX];
	char tmp[65536];
	ssize_t r;
	int fd, rc;

	fd = open(from, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mstore_errno(err, "open", from);
	buf_init(&b, 0);
	fstat(fd, &st);
	while ((r = read(fd, tmp, sizeof(tmp))) > 0)
		if (buf_append(&b, tmp, (size_t)r) < 0)
			break;
	close(fd);
	if (r != 0) {
		buf_free(&b);
		return err_set(err, 1, "read %s failed", from);
	}
	iov.iov_base = b.p ? b.p : tmp;
	iov.iov_len = b.len;
	rc = maildir_deliver(dest_folder, NULL, &iov, 1, "cur", info, fname,
	                     fname_n, err);
	buf_free(&b);
	if (rc == 0) {
		struct timespec ts[2] = { st.st_mtim, st.st_mtim };

		mstore_fmt(p, sizeof(p), "%s/cur/%s", dest_folder, fname);
		utimensat(AT_FDCWD, p, ts, 0);
	}
	return rc;
}

/* COPY's quota check (RFC 9208 §4.3): under quota_lock, which the caller
 * keeps until the copy is recorded, so two sessions cannot both pass it.
 * Returns 0 (room; *lock_r is the lock or -1 when no quota applies), -1
 * (err) or MSTORE_OVERQUOTA (nothing locked). */
static int mstore_copy_quota(struct mstore_folder *src, const size_t *idx,
                             size_t n, long long *limit_r, int *lock_r,
                             struct err *err)
{
	long long flimit, used, files, want = 0;
	size_t i;
	int lk;

	*lock_r = -1;
	*limit_r = mstore_quota_limit(src->ms);
	if (*limit_r <= 0)
		return 0;
	for (i = 0; i < n; i++) {
		if (idx[i] >= src->count)
			return err_set(err, 0, "no such message");
		if (__builtin_add_overflow(want, (long long)src->msgs[idx[i]].size,
		                           &want))
			want = INT64_MAX;
	}
	lk = quota_lock(src->ms->root, (uid_t)-1, (gid_t)-1, err);
	if (lk < 0)
		return -1;
	if (quota_get(src->ms->root, &flimit, &used, &files, err) < 0) {
		quota_unlock(lk);
		return -1;
	}
	if (quota_over(*limit_r, used, want)) {
		quota_unlock(lk);
		err_set(err, 0, "quota exceeded");
		return MSTORE_OVERQUOTA;
	}
	*lock_r = lk;
	return 0;
}

int mstore_copy(struct mstore_folder *src, const size_t *idx, size_t n,
                const char *dest, unsigned flags, uint32_t *uids_r,
                uint32_t *uidvalidity_r, struct err *err)
{
	char path[MSTORE_PATH_MAX], from[MSTORE_PATH_MAX], to[MSTORE_PATH_MAX];
	char base[MAILDIR_NAME_MAX], fname[MAILDIR_NAME_MAX + 40], info[64];
	struct mstore_index ix;
	long long bytes = 0, limit = 0;
	char **made;
	size_t i, nmade = 0;
	int lk, qlk = -1, rc = 0;

	/* MOVE inside the mailbox takes nothing from the quota: the
	 * messages leave the source right after */
	if (!(flags & MSTORE_COPY_MOVE)) {
		rc = mstore_copy_quota(src, idx, n, &limit, &qlk, err);
		if (rc < 0)
			return rc;
	}
	made = calloc(n + 1, sizeof(*made));
	if (made == NULL) {
		quota_unlock(qlk);
		return err_set(err, 1, "out of memory");
	}
	/* lock order: quota.lock, then the folder's index lock */
	lk = mstore_index_begin(src->ms, dest, path, sizeof(path), &ix, err);
	if (lk < 0) {
		quota_unlock(qlk);
		free(made);
		return -1;
	}
	for (i = 0; i < n && rc == 0; i++) {
		struct mstore_msg *m;
		uint32_t kw = 0;
		int b, tries;

		if (idx[i] >= src->count) {
			rc = err_set(err, 0, "no such message");
			break;
		}
		m = &src->msgs[idx[i]];
		for (b = 0; b < MSTORE_MAX_KEYWORDS; b++) {
			int k;

			if (!(m->keywords & (1u << b)) || src->keywords[b] == NULL)
				continue;
			k = mstore_index_keyword(&ix, src->keywords[b]);
			if (k >= 0)
				kw |= 1u << k;
		}
		mstore_unique_base(base, sizeof(base), m->size, m->vsize);
		mstore_make_name("", m->flags & ~MSTORE_F_RECENT, kw, info, sizeof(info));
		mstore_fmt(fname, sizeof(fname), "%s%s", base, info);
		mstore_fmt(to, sizeof(to), "%s/cur/%s", path, fname);
		for (tries = 0; tries < 3; tries++) {
			mstore_msg_path(src, idx[i], from, sizeof(from));
			if (link(from, to) == 0)
				break;
			if (errno == ENOENT) {
				if (mstore_refind(src, idx[i], err) < 0) {
					rc = -1;
					break;
				}
				continue;
			}
			/* other file system or no hard links: copy the bytes */
			rc = mstore_copy_file(from, path, fname, sizeof(fname), info, err);
			break;
		}
		if (rc == 0 && tries == 3)
			rc = err_set(err, 1, "message %u keeps moving", m->uid);
		if (rc == 0 && (made[nmade] = strdup(fname)) == NULL) {
			/* untracked, it could not be taken back: remove it now */
			mstore_fmt(to, sizeof(to), "%s/cur/%s", path, fname);
			unlink(to);
			rc = err_set(err, 1, "out of memory");
		} else if (rc == 0) {
			nmade++;
		}
		if (rc == 0 && mstore_index_push(&ix, fname, m->size, m->vsize,
		                                 (int64_t)m->internaldate, m->flags,
		                                 kw, uids_r ? &uids_r[i] : NULL) < 0)
			rc = err_set(err, 1, "out of memory");
		bytes += (long long)m->size;
	}
	/* the links must be durable before the index names them */
	mstore_fmt(to, sizeof(to), "%s/cur", path);
	if (rc == 0)
		rc = mstore_fsync_dir(to, err);
	if (rc == 0)
		rc = mstore_index_write(path, &ix, 1, err);
	if (rc < 0) {
		/* RFC 3501 §6.4.7: a failed COPY leaves the destination as it was */
		for (i = 0; i < nmade; i++) {
			mstore_fmt(to, sizeof(to), "%s/cur/%s", path, made[i]);
			unlink(to);
		}
	}
	if (rc == 0 && uidvalidity_r != NULL)
		*uidvalidity_r = ix.uidvalidity;
	mstore_unlock(lk);
	mstore_index_clear(&ix);
	for (i = 0; i < nmade; i++)
		free(made[i]);
	free(made);
	if (rc == 0 && n > 0 && qlk >= 0) {
		struct err e;

		/* still under quota.lock; a missing maildirsize is created
		 * from a scan that already sees the copies */
		quota_add(src->ms->root, limit, bytes, (long long)n, (uid_t)-1,
		          (gid_t)-1, &e);
	} else if (rc == 0 && n > 0) {
		mstore_quota_note(src->ms, bytes, (long long)n);
	}
	quota_unlock(qlk);
	return rc < 0 ? -1 : 0;
}

/* ---- the mailbox ---- */

/* One path component from a login name: no separators, no dot files,
 * no controls (a user name must never lead out of base). */
static int mstore_component_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 200 || s[0] == '.')
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || s[i] == '/' || s[i] == '\\' ||
		    s[i] == 0x7f)
			return 0;
	return 1;
}

int mstore_user_root(const char *base, const char *user, char *out,
                     size_t out_size, struct err *err)
{
	const char *at = strrchr(user, '@');
	size_t ll, dl, i;
	int r;
	char *q;

	if (at == NULL)
		return err_set(err, 0, "user name without a domain");
	ll = (size_t)(at - user);
	dl = strlen(at + 1);
	if (!mstore_component_ok(user, ll) || !mstore_component_ok(at + 1, dl))
		return err_set(err, 0, "user name not usable as a mailbox path");
	r = mstore_fmt(out, out_size, "%s/%s/%.*s", base, at + 1, (int)ll, user);
	if (r < 0 || (size_t)r >= out_size)
		return err_set(err, 0, "mailbox path too long");
	/* as submission stores it: lower-case domain and local part */
	q = out + strlen(base);
	for (i = 0; q[i] != '\0'; i++)
		if (q[i] >= 'A' && q[i] <= 'Z')
			q[i] = (char)(q[i] - 'A' + 'a');
	return 0;
}

int mstore_name_check(const char *name, struct err *err)
{
	size_t i, n = strlen(name);

	if (n == 0)
		return err_set(err, 0, "empty folder name");
	if (n > MSTORE_NAME_MAX)
		return err_set(err, 0, "folder name too long");
	if (name[0] == '.' || name[n - 1] == '.' || strstr(name, "..") != NULL)
		return err_set(err, 0, "bad use of the hierarchy separator");
	if (name[0] == '~')
		return err_set(err, 0, "folder name may not start with ~");
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f)
			return err_set(err, 0, "control character in folder name");
		if (c == '/' || c == '\\')
			return err_set(err, 0, "folder name may not contain / or \\");
	}
	return 0;
}

/* Maildir++: a sub-folder is a Maildir holding a "maildirfolder" file. */
static int mstore_make_folder(const char *path, struct err *err)
{
	char p[MSTORE_PATH_MAX];
	int fd;

	if (maildir_make(path, (uid_t)-1, (gid_t)-1, err) < 0)
		return -1;
	mstore_fmt(p, sizeof(p), "%s/maildirfolder", path);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	return 0;
}

static int mstore_subs_read(struct mstore *ms, char ***list_r, size_t *n_r)
{
	char p[MSTORE_PATH_MAX], line[MSTORE_NAME_MAX + 2];
	char **list = NULL, **nl;
	size_t n = 0;
	FILE *f;

	*list_r = NULL;
	*n_r = 0;
	mstore_fmt(p, sizeof(p), "%s/%s", ms->root, MSTORE_SUBS);
	f = fopen(p, "re");
	if (f == NULL)
		return errno == ENOENT ? 0 : -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		nl = realloc(list, (n + 1) * sizeof(*list));
		if (nl == NULL || (nl[n] = strdup(line)) == NULL) {
			list = nl ? nl : list;
			break;
		}
		list = nl;
		n++;
	}
	fclose(f);
	*list_r = list;
	*n_r = n;
	return 0;
}

static void mstore_strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int mstore_subscribe(struct mstore *ms, const char *name, int on,
                     struct err *err)
{
	char p[MSTORE_PATH_MAX], tmp[MSTORE_PATH_MAX];
	char **list;
	size_t n, i;
	FILE *f;
	int found = 0, rc = 0, lk;

	if (!mstore_is_inbox(name) && mstore_name_check(name, err) < 0)
		return -1;
	if (mstore_is_inbox(name))
		name = "INBOX";
	lk = mstore_lock(ms->root, err);
	if (lk < 0)
		return -1;
	if (mstore_subs_read(ms, &list, &n) < 0) {
		mstore_unlock(lk);
		return err_set(err, 1, "cannot read subscriptions");
	}
	for (i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			found = 1;
	if (found != on) {
		mstore_fmt(p, sizeof(p), "%s/%s", ms->root, MSTORE_SUBS);
		mstore_fmt(tmp, sizeof(tmp), "%s/%s.tmp", ms->root, MSTORE_SUBS);
		f = fopen(tmp, "we");
		if (f == NULL) {
			rc = mstore_errno(err, "open", tmp);
		} else {
			for (i = 0; i < n; i++)
				if (strcmp(list[i], name) != 0)
					fprintf(f, "%s\n", list[i]);
			if (on)
				fprintf(f, "%s\n", name);
			if (fflush(f) != 0 || fsync(fileno(f)) < 0)
				rc = mstore_errno(err, "write", tmp);
			if (fclose(f) != 0 && rc == 0)
				rc = mstore_errno(err, "close", tmp);
			if (rc == 0 && rename(tmp, p) < 0)
				rc = mstore_errno(err, "rename", tmp);
		}
	}
	mstore_unlock(lk);
	mstore_strv_free(list, n);
	return rc;
}

struct mstore *mstore_open(const char *root, struct err *err)
{
	char p[MSTORE_PATH_MAX];
	struct mstore *ms;
	struct stat st;
	int first;
	size_t i;

	if (root == NULL || root[0] == '\0' || strlen(root) > MSTORE_PATH_MAX - 600) {
		err_set(err, 0, "bad mailbox root");
		return NULL;
	}
	ms = calloc(1, sizeof(*ms));
	if (ms == NULL || (ms->root = strdup(root)) == NULL) {
		free(ms);
		err_set(err, 1, "out of memory");
		return NULL;
	}
	i = strlen(ms->root);
	while (i > 1 && ms->root[i - 1] == '/')
		ms->root[--i] = '\0';
	mstore_fmt(p, sizeof(p), "%s/cur", ms->root);
	first = stat(p, &st) < 0;
	if (maildir_make(ms->root, (uid_t)-1, (gid_t)-1, err) < 0) {
		mstore_free(ms);
		return NULL;
	}
	/* first login: the RFC 6154 special-use folders, subscribed. All
	 * of them exist before the subscriptions file does: a second
	 * client logging in at the same moment sees the file and takes the
	 * folders as made, and its COPY to Trash must find Trash. */
	mstore_fmt(p, sizeof(p), "%s/%s", ms->root, MSTORE_SUBS);
	if (first || stat(p, &st) < 0) {
		int made[sizeof(mstore_specials) / sizeof(mstore_specials[0])];

		for (i = 0; i < sizeof(mstore_specials) / sizeof(mstore_specials[0]); i++) {
			mstore_fmt(p, sizeof(p), "%s/.%s", ms->root, mstore_specials[i]);
			made[i] = stat(p, &st) < 0;
			if (made[i] && mstore_make_folder(p, err) < 0) {
				mstore_free(ms);
				return NULL;
			}
		}
		for (i = 0; i < sizeof(mstore_specials) / sizeof(mstore_specials[0]); i++) {
			if (made[i] &&
			    mstore_subscribe(ms, mstore_specials[i], 1, err) < 0) {
				mstore_free(ms);
				return NULL;
			}
		}
		if (mstore_subscribe(ms, "INBOX", 1, err) < 0) {
			mstore_free(ms);
			return NULL;
		}
	}
	return ms;
}

void mstore_free(struct mstore *ms)
{
	if (ms == NULL)
		return;
	free(ms->root);
	free(ms);
}

const char *mstore_root(const struct mstore *ms)
{
	return ms->root;
}

static int mstore_info_cmp(const void *a, const void *b)
{
	const struct mstore_folder_info *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static int mstore_info_push(struct mstore_folder_info **l, size_t *n,
                            size_t *cap, const char *name, unsigned attrs)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct mstore_folder_info *nl = realloc(*l, nc * sizeof(**l));

		if (nl == NULL)
			return -1;
		*l = nl;
		*cap = nc;
	}
	(*l)[*n].name = strdup(name);
	if ((*l)[*n].name == NULL)
		return -1;
	(*l)[*n].attrs = attrs;
	(*n)++;
	return 0;
}

static long mstore_info_find(struct mstore_folder_info *l, size_t n,
                             const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(l[i].name, name) == 0)
			return (long)i;
	return -1;
}

int mstore_list(struct mstore *ms, struct mstore_folder_info **list_r,
                size_t *n_r, struct err *err)
{
	struct mstore_folder_info *l = NULL;
	size_t n = 0, cap = 0, i, j, nsubs;
	char p[MSTORE_PATH_MAX], **subs;
	struct dirent *de;
	struct stat st;
	DIR *d;

	*list_r = NULL;
	*n_r = 0;
	d = opendir(ms->root);
	if (d == NULL)
		return mstore_errno(err, "opendir", ms->root);
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name + 1;

		if (de->d_name[0] != '.' || mstore_name_check(nm, NULL) < 0)
			continue;
		mstore_fmt(p, sizeof(p), "%s/%s/cur", ms->root, de->d_name);
		if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (mstore_info_push(&l, &n, &cap, nm, 0) < 0)
			goto oom;
	}
	closedir(d);
	d = NULL;
	/* parents that only exist as a prefix ("A" of ".A.B"): \Noselect */
	for (i = 0; i < n; i++) {
		char *dot, tmp[MSTORE_NAME_MAX + 1];

		mstore_fmt(tmp, sizeof(tmp), "%s", l[i].name);
		while ((dot = strrchr(tmp, '.')) != NULL) {
			*dot = '\0';
			if (mstore_info_find(l, n, tmp) < 0 &&
			    mstore_info_push(&l, &n, &cap, tmp, MSTORE_LIST_NOSELECT) < 0)
				goto oom;
		}
	}
	if (n > 1)
		qsort(l, n, sizeof(*l), mstore_info_cmp);
	for (i = 0; i < n; i++) {
		size_t len = strlen(l[i].name);
		int kids = 0;

		for (j = 0; j < n && !kids; j++)
			kids = strncmp(l[j].name, l[i].name, len) == 0 &&
			       l[j].name[len] == '.';
		l[i].attrs |= kids ? MSTORE_LIST_HASCHILDREN : MSTORE_LIST_HASNOCHILDREN;
		for (j = 0; j < sizeof(mstore_specials) / sizeof(mstore_specials[0]); j++)
			if (strcmp(l[i].name, mstore_specials[j]) == 0)
				l[i].attrs |= MSTORE_LIST_SENT << j;
	}
	/* INBOX first */
	if (mstore_info_push(&l, &n, &cap, "INBOX", MSTORE_LIST_HASNOCHILDREN) < 0)
		goto oom;
	{
		struct mstore_folder_info inbox = l[n - 1];

		memmove(l + 1, l, (n - 1) * sizeof(*l));
		l[0] = inbox;
	}
	if (mstore_subs_read(ms, &subs, &nsubs) == 0) {
		for (i = 0; i < nsubs; i++) {
			long k = mstore_info_find(l, n, subs[i]);

			if (k >= 0)
				l[k].attrs |= MSTORE_LIST_SUBSCRIBED;
			else if (mstore_info_push(&l, &n, &cap, subs[i],
			                          MSTORE_LIST_SUBSCRIBED |
			                          MSTORE_LIST_NONEXISTENT) < 0) {
				mstore_strv_free(subs, nsubs);
				goto oom;
			}
		}
		mstore_strv_free(subs, nsubs);
	}
	*list_r = l;
	*n_r = n;
	return 0;
oom:
	if (d != NULL)
		closedir(d);
	mstore_list_free(l, n);
	return err_set(err, 1, "out of memory");
}

void mstore_list_free(struct mstore_folder_info *list, size_t n)
{
	size_t i;

	for (i = 0; i < n && list != NULL; i++)
		free(list[i].name);
	free(list);
}

int mstore_create(struct mstore *ms, const char *name, struct err *err)
{
	char p[MSTORE_PATH_MAX];
	struct mstore_index ix;
	struct mstore_scan sc;
	struct stat st;
	int lk, rc;

	if (mstore_is_inbox(name))
		return err_set(err, 0, "INBOX already exists");
	if (mstore_folder_path(ms, name, p, sizeof(p), err) < 0)
		return -1;
	if (stat(p, &st) == 0)
		return err_set(err, 0, "folder already exists");
	if (mstore_make_folder(p, err) < 0)
		return -1;
	/* give it its UIDVALIDITY now */
	lk = mstore_lock(p, err);
	if (lk < 0)
		return -1;
	rc = mstore_index_read(p, &ix, err);
	if (rc == 0)
		rc = mstore_scan_dirs(p, 0, &sc, err);
	if (rc == 0) {
		rc = mstore_index_sync(ms->root, p, &ix, &sc, err);
		if (rc == 0)
			rc = mstore_index_flush(p, &ix, err);
		mstore_scan_free(&sc);
	}
	mstore_index_clear(&ix);
	mstore_unlock(lk);
	return rc;
}

/* Remove a folder Maildir: its files and tmp/new/cur, not sub-folders
 * (those are siblings ".A.B" in Maildir++). */
static void mstore_rmtree(const char *path, int depth)
{
	char p[MSTORE_PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(path);

	while (d != NULL && (de = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		mstore_fmt(p, sizeof(p), "%s/%s", path, de->d_name);
		if (lstat(p, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < 2)
			mstore_rmtree(p, depth + 1);
		else
			unlink(p);
	}
	if (d != NULL)
		closedir(d);
	rmdir(path);
}

int mstore_delete(struct mstore *ms, const char *name, struct err *err)
{
	char p[MSTORE_PATH_MAX], gone[MSTORE_PATH_MAX];
	struct stat st;

	if (mstore_is_inbox(name))
		return err_set(err, 0, "INBOX cannot be deleted");
	if (mstore_folder_path(ms, name, p, sizeof(p), err) < 0)
		return -1;
	if (stat(p, &st) < 0)
		return err_set(err, 0, "no such folder");
	/* rename away first so that no reader sees it half deleted */
	mstore_fmt(gone, sizeof(gone), "%s/..deleted.%ld.%ld", ms->root,
	         (long)getpid(), (long)time(NULL));
	if (rename(p, gone) < 0)
		return mstore_errno(err, "rename", p);
	mstore_rmtree(gone, 0);
	return 0;
}

int mstore_rename(struct mstore *ms, const char *from, const char *to,
                  struct err *err)
{
	char pf[MSTORE_PATH_MAX], pt[MSTORE_PATH_MAX];
	struct mstore_folder_info *l;
	struct stat st;
	size_t n, i, fl = strlen(from);

	if (mstore_is_inbox(to))
		return err_set(err, 0, "cannot rename to INBOX");
	if (mstore_folder_path(ms, to, pt, sizeof(pt), err) < 0 ||
	    mstore_folder_path(ms, from, pf, sizeof(pf), err) < 0)
		return -1;
	if (stat(pt, &st) == 0)
		return err_set(err, 0, "folder already exists");
	if (mstore_is_inbox(from)) {
		/* RFC 3501 §6.3.5: move INBOX's messages, INBOX stays */
		struct mstore_folder *f;
		size_t *idx;
		uint32_t *uids;
		int rc;

		if (mstore_create(ms, to, err) < 0)
			return -1;
		f = mstore_folder_open(ms, "INBOX", 0, err);
		if (f == NULL)
			return -1;
		idx = calloc(f->count + 1, sizeof(*idx));
		uids = calloc(f->count + 1, sizeof(*uids));
		rc = idx && uids ? 0 : err_set(err, 1, "out of memory");
		for (i = 0; rc == 0 && i < f->count; i++) {
			idx[i] = i;
			uids[i] = f->msgs[i].uid;
		}
		if (rc == 0)
			rc = mstore_copy(f, idx, f->count, to, MSTORE_COPY_MOVE,
			                 NULL, NULL, err);
		if (rc == 0)
			rc = mstore_expunge(f, uids, f->count, 1, NULL, err);
		free(idx);
		free(uids);
		mstore_folder_free(f);
		return rc;
	}
	if (stat(pf, &st) < 0)
		return err_set(err, 0, "no such folder");
	if (strncmp(to, from, fl) == 0 && to[fl] == '.')
		return err_set(err, 0, "cannot move a folder into itself");
	if (mstore_list(ms, &l, &n, err) < 0)
		return -1;
	/* children first: ".from.X" -> ".to.X" */
	for (i = 0; i < n; i++) {
		char cf[MSTORE_PATH_MAX], ct[MSTORE_PATH_MAX];

		if (strncmp(l[i].name, from, fl) != 0 || l[i].name[fl] != '.' ||
		    (l[i].attrs & (MSTORE_LIST_NOSELECT | MSTORE_LIST_NONEXISTENT)))
			continue;
		mstore_fmt(cf, sizeof(cf), "%s/.%s", ms->root, l[i].name);
		mstore_fmt(ct, sizeof(ct), "%s/.%s%s", ms->root, to, l[i].name + fl);
		if (strlen(to) + strlen(l[i].name + fl) > MSTORE_NAME_MAX ||
		    rename(cf, ct) < 0) {
			mstore_list_free(l, n);
			return mstore_errno(err, "rename", cf);
		}
	}
	mstore_list_free(l, n);
	if (rename(pf, pt) < 0)
		return mstore_errno(err, "rename", pf);
	return 0;
}

int mstore_status(struct mstore *ms, const char *name, struct mstore_status *st,
                  struct err *err)
{
	char p[MSTORE_PATH_MAX], cur[MSTORE_PATH_MAX];
	struct mstore_index ix;
	struct mstore_scan sc;
	struct stat sb;
	size_t i;

	memset(st, 0, sizeof(*st));
	if (mstore_folder_path(ms, name, p, sizeof(p), err) < 0)
		return -1;
	mstore_fmt(cur, sizeof(cur), "%s/cur", p);
	if (stat(cur, &sb) < 0)
		return err_set(err, errno == ENOENT ? 0 : 1, "no such folder: %s", name);
	/* new/ stays where it is, and nothing is claimed: RFC 3501 §6.3.10
	 * RECENT counts what the next SELECT will see as \Recent */
	if (mstore_load(ms->root, p, 0, 0, &ix, &sc, NULL, err) < 0)
		return -1;
	for (i = 0; i < sc.n; i++) {
		st->messages++;
		if (sc.d[i].ie != NULL && sc.d[i].ie->uid >= ix.first_recent_uid)
			st->recent++;
		if (!(sc.d[i].flags & MSTORE_F_SEEN))
			st->unseen++;
		if (sc.d[i].ie != NULL)
			st->vsize += sc.d[i].ie->vsize;
	}
	st->uidnext = ix.uidnext;
	st->uidvalidity = ix.uidvalidity;
	st->highestmodseq = ix.highestmodseq;
	mstore_scan_free(&sc);
	mstore_index_clear(&ix);
	return 0;
}

int mstore_quota_usage(struct mstore *ms, uint64_t *bytes_r, uint64_t *count_r,
                       struct err *err)
{
	long long b = 0, f = 0;

	if (quota_usage(ms->root, &b, &f, err) < 0)
		return -1;
	*bytes_r = b > 0 ? (uint64_t)b : 0;
	*count_r = f > 0 ? (uint64_t)f : 0;
	return 0;
}
