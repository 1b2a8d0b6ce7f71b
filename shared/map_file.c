/* map_file: "texthash:/path", a plain "key value" file read into memory
 * (Postfix dict_thash): '#' comment lines, blank lines, lines starting
 * with white space continue the previous entry. Keys fold to lower case.
 * The file is re-read when it changes (stat at most once a second), so an
 * edit by mailctl takes effect without a restart. */
#include <errno.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "map_backend.h"

struct map_file_entry {
	char *key;
	char *value;
	int line;
};

struct map_file_table {
	struct map_file_entry *ent;   /* sorted by key */
	size_t n;
};

struct map_file {
	char *path;
	pthread_rwlock_t lock;        /* guards tab, broken, why */
	pthread_mutex_t check_lock;   /* guards last_check and the stat id */
	struct map_file_table *tab;
	int broken;                   /* last reload failed: TEMPFAIL */
	char why[sizeof(((struct err *)0)->msg)];
	time_t last_check;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

static void map_file_table_free(struct map_file_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++) {
		free(t->ent[i].key);
		free(t->ent[i].value);
	}
	free(t->ent);
	free(t);
}

static int map_file_cmp(const void *a, const void *b)
{
	const struct map_file_entry *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c != 0 ? c : x->line - y->line;
}

static int map_file_cmp_key(const void *a, const void *b)
{
	const struct map_file_entry *x = a, *y = b;

	return strcmp(x->key, y->key);
}

/* One logical line: "key<white space>value". */
static int map_file_entry_add(struct map_file_table *t, const char *path,
                              int line, char *text, struct err *err)
{
	struct map_file_entry *ne;
	char *k = text, *v, *end;

	v = k;
	while (*v != '\0' && !isspace((unsigned char)*v))
		v++;
	if (*v != '\0')
		*v++ = '\0';
	while (isspace((unsigned char)*v))
		v++;
	end = v + strlen(v);
	while (end > v && isspace((unsigned char)end[-1]))
		*--end = '\0';
	if (*v == '\0')
		return err_set(err, 0, "%s, line %d: expected format: key "
		               "whitespace value", path, line);
	ne = realloc(t->ent, (t->n + 1) * sizeof(*ne));
	if (ne == NULL)
		return err_set(err, 1, "%s: out of memory", path);
	t->ent = ne;
	ne[t->n].key = map_fold(k);
	ne[t->n].value = strdup(v);
	ne[t->n].line = line;
	t->n++;
	if (ne[t->n - 1].key == NULL || ne[t->n - 1].value == NULL)
		return err_set(err, 1, "%s: out of memory", path);
	return 0;
}

static int map_file_flush(struct map_file_table *t, const char *path,
                          struct buf *lb, int *start, struct err *err)
{
	int rc = 0;

	if (lb->len > 0)
		rc = map_file_entry_add(t, path, *start, lb->p, err);
	buf_reset(lb);
	*start = 0;
	return rc;
}

/* Read the whole file in logical lines (Postfix readllines()). */
static int map_file_parse(FILE *fp, const char *path, struct map_file_table *t,
                          struct err *err)
{
	struct buf lb;
	char *line = NULL, *s;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, start = 0, rc = 0;

	buf_init(&lb, 0);
	while (rc == 0 && (n = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		for (s = line; isspace((unsigned char)*s); s++)
			;
		if (*s == '\0' || *s == '#')
			continue;
		if (s != line) {
			if (start == 0)
				rc = err_set(err, 0, "%s, line %d: logical line must "
				             "not start with white space", path, lineno);
			else if (buf_putc(&lb, ' ') < 0 || buf_puts(&lb, s) < 0)
				rc = err_set(err, 1, "%s: out of memory", path);
			continue;
		}
		rc = map_file_flush(t, path, &lb, &start, err);
		start = lineno;
		if (rc == 0 && buf_puts(&lb, line) < 0)
			rc = err_set(err, 1, "%s: out of memory", path);
	}
	if (rc == 0 && ferror(fp))
		rc = err_set(err, 1, "%s: read: %s", path, strerror(errno));
	if (rc == 0)
		rc = map_file_flush(t, path, &lb, &start, err);
	free(line);
	buf_free(&lb);
	return rc;
}

static int map_file_check_dups(struct map_file_table *t, const char *path,
                               struct err *err)
{
	size_t i;

	if (t->n > 1)
		qsort(t->ent, t->n, sizeof(*t->ent), map_file_cmp);
	for (i = 1; i < t->n; i++)
		if (strcmp(t->ent[i - 1].key, t->ent[i].key) == 0)
			return err_set(err, 0, "%s, line %d: duplicate key \"%s\" "
			               "(first at line %d)", path, t->ent[i].line,
			               t->ent[i].key, t->ent[i - 1].line);
	return 0;
}

/* Load path; on success *st_r identifies the version read. */
static struct map_file_table *map_file_load(const char *path, struct stat *st_r,
                                            struct err *err)
{
	struct map_file_table *t;
	FILE *fp;

	fp = fopen(path, "re");
	if (fp == NULL) {
		err_set(err, errno != ENOENT && errno != EACCES, "texthash:%s: "
		        "open: %s", path, strerror(errno));
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		fclose(fp);
		err_set(err, 1, "%s: out of memory", path);
		return NULL;
	}
	if (fstat(fileno(fp), st_r) < 0 || map_file_parse(fp, path, t, err) < 0 ||
	    map_file_check_dups(t, path, err) < 0) {
		if (err != NULL && err->msg[0] == '\0')
			err_set(err, 1, "%s: fstat: %s", path, strerror(errno));
		map_file_table_free(t);
		t = NULL;
	}
	fclose(fp);
	return t;
}

static void map_file_remember(struct map_file *f, const struct stat *st)
{
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->size = st->st_size;
	f->mtime = st->st_mtim;
}

static void *map_file_open(const char *arg, struct err *err)
{
	struct map_file *f;
	struct timespec now;
	struct stat st;

	if (arg[0] != '/') {
		err_set(err, 0, "texthash:%s: need an absolute path", arg);
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL || (f->path = strdup(arg)) == NULL) {
		free(f);
		err_set(err, 1, "texthash: out of memory");
		return NULL;
	}
	err_clear(err);
	f->tab = map_file_load(f->path, &st, err);
	if (f->tab == NULL) {
		free(f->path);
		free(f);
		return NULL;
	}
	map_file_remember(f, &st);
	clock_gettime(CLOCK_MONOTONIC, &now);
	f->last_check = now.tv_sec;
	pthread_rwlock_init(&f->lock, NULL);
	pthread_mutex_init(&f->check_lock, NULL);
	return f;
}

/* Swap in a new version of the file when it changed since the last look;
 * at most one stat a second. A failed reload makes lookups TEMPFAIL until
 * the file is fixed (serving stale data silently would hide the error). */
static void map_file_refresh(struct map_file *f)
{
	struct map_file_table *t, *old = NULL;
	struct timespec now;
	struct stat st;
	struct err e;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&f->check_lock);
	if (now.tv_sec == f->last_check) {
		pthread_mutex_unlock(&f->check_lock);
		return;
	}
	f->last_check = now.tv_sec;
	if (stat(f->path, &st) == 0 && st.st_dev == f->dev &&
	    st.st_ino == f->ino && st.st_size == f->size &&
	    st.st_mtim.tv_sec == f->mtime.tv_sec &&
	    st.st_mtim.tv_nsec == f->mtime.tv_nsec) {
		pthread_mutex_unlock(&f->check_lock);
		return;
	}
	err_clear(&e);
	t = map_file_load(f->path, &st, &e);
	if (t != NULL)
		map_file_remember(f, &st);
	else
		f->ino = 0;                 /* retry at the next check */
	pthread_rwlock_wrlock(&f->lock);
	if (t != NULL) {
		old = f->tab;
		f->tab = t;
		f->broken = 0;
	} else {
		f->broken = 1;
		snprintf(f->why, sizeof(f->why), "%s", e.msg);
	}
	pthread_rwlock_unlock(&f->lock);
	pthread_mutex_unlock(&f->check_lock);
	map_file_table_free(old);
}

/* SIGHUP: look at the file now (a change within the second of the last
 * check would otherwise wait for the next). */
static int map_file_reload(void *h, struct err *err)
{
	struct map_file *f = h;
	int rc = 0;

	pthread_mutex_lock(&f->check_lock);
	f->last_check = 0;
	f->ino = 0;
	pthread_mutex_unlock(&f->check_lock);
	map_file_refresh(f);
	pthread_rwlock_rdlock(&f->lock);
	if (f->broken)
		rc = err_set(err, 1, "%s", f->why);
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

static enum map_rc map_file_lookup(void *h, const char *key, char **value_r,
                                   struct err *err)
{
	struct map_file *f = h;
	struct map_file_entry probe, *hit;
	enum map_rc rc = MAP_NOTFOUND;

	map_file_refresh(f);
	probe.key = map_fold(key);
	probe.line = 0;
	if (probe.key == NULL) {
		err_set(err, 1, "texthash: out of memory");
		return MAP_TEMPFAIL;
	}
	pthread_rwlock_rdlock(&f->lock);
	if (f->broken) {
		err_set(err, 1, "%s", f->why);
		rc = MAP_TEMPFAIL;
	} else {
		hit = f->tab->n == 0 ? NULL :
		    bsearch(&probe, f->tab->ent, f->tab->n, sizeof(probe),
		            map_file_cmp_key);
		if (hit != NULL) {
			*value_r = strdup(hit->value);
			rc = *value_r != NULL ? MAP_FOUND : MAP_TEMPFAIL;
			if (rc == MAP_TEMPFAIL)
				err_set(err, 1, "texthash: out of memory");
		}
	}
	pthread_rwlock_unlock(&f->lock);
	free(probe.key);
	return rc;
}

static void map_file_close(void *h)
{
	struct map_file *f = h;

	pthread_rwlock_destroy(&f->lock);
	pthread_mutex_destroy(&f->check_lock);
	map_file_table_free(f->tab);
	free(f->path);
	free(f);
}

const struct map_backend map_file_backend = {
	"texthash", map_file_open, map_file_lookup, map_file_close,
	map_file_reload, 1,
};
