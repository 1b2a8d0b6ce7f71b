/* mailctl_text: mailctl's texthash backend. Each map file is read whole
 * (comments kept), edited in memory, and on commit replaced atomically:
 * temporary file in the same folder, fsync, rename, fsync of the folder,
 * so a crash leaves the old or the new file, never half of one. The daemons
 * notice the new file by its mtime (map_file.c). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "mailctl.h"

struct mailctl_text_rec {
	char *key;       /* NULL: a comment or blank line kept as raw */
	char *value;
};

struct mailctl_text_file {
	const char *role;
	char *path;      /* NULL: that map is not a texthash: table */
	struct mailctl_text_rec *rec;
	size_t n;
	int dirty, exists;
	struct stat st;
};

enum { MAILCTL_T_DOMAINS, MAILCTL_T_MAILBOX, MAILCTL_T_PASSWORD,
       MAILCTL_T_ALIAS, MAILCTL_T_LIMIT, MAILCTL_T_N };

struct mailctl_text {
	struct mailctl_text_file f[MAILCTL_T_N];
	int lockfd;
};

char *mailctl_map_arg(const char *spec, const char *type)
{
	size_t tl = strlen(type), len;
	const char *p;

	for (p = spec != NULL ? spec : ""; *p != '\0'; p += len) {
		len = strcspn(p, ", \t\r\n");
		if (len == 0) {
			len = 1;
			continue;
		}
		/* "proxy:mysql:/f.cf" is "mysql:/f.cf", as for the daemons */
		if (len > 6 && strncmp(p, "proxy:", 6) == 0 &&
		    len - 6 > tl + 1 && strncmp(p + 6, type, tl) == 0 &&
		    p[6 + tl] == ':')
			return strndup(p + 6 + tl + 1, len - 6 - tl - 1);
		if (len > tl + 1 && strncmp(p, type, tl) == 0 && p[tl] == ':')
			return strndup(p + tl + 1, len - tl - 1);
	}
	return NULL;
}

static char *mailctl_text_fold(const char *s, size_t len)
{
	char *r = strndup(s, len), *p;

	for (p = r; p != NULL && *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

static int mailctl_text_push(struct mailctl_text_file *f, char *key, char *value)
{
	struct mailctl_text_rec *nr = realloc(f->rec, (f->n + 1) * sizeof(*nr));

	if (nr == NULL || value == NULL) {
		free(key);
		free(value);
		return -1;
	}
	f->rec = nr;
	f->rec[f->n].key = key;
	f->rec[f->n].value = value;
	f->n++;
	return 0;
}

/* Same syntax as map_file.c: comments, blank lines, continuation lines. */
static int mailctl_text_parse_line(struct mailctl_text_file *f, char *line,
                                   int lineno, struct err *err)
{
	struct mailctl_text_rec *last = f->n > 0 ? &f->rec[f->n - 1] : NULL;
	char *s = line, *v, *nv;
	size_t kl;

	line[strcspn(line, "\r\n")] = '\0';
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == '#')
		return mailctl_text_push(f, NULL, strdup(line)) < 0 ?
		       err_set(err, 1, "out of memory") : 0;
	if (s != line) {
		if (last == NULL || last->key == NULL)
			return err_set(err, 0, "%s, line %d: logical line must not "
			               "start with white space", f->path, lineno);
		if (asprintf(&nv, "%s %s", last->value, s) < 0)
			return err_set(err, 1, "out of memory");
		free(last->value);
		last->value = nv;
		return 0;
	}
	kl = strcspn(s, " \t");
	for (v = s + kl; isspace((unsigned char)*v); v++)
		;
	if (*v == '\0')
		return err_set(err, 0, "%s, line %d: expected format: key "
		               "whitespace value", f->path, lineno);
	return mailctl_text_push(f, mailctl_text_fold(s, kl), strdup(v)) < 0 ?
	       err_set(err, 1, "out of memory") : 0;
}

static int mailctl_text_load(struct mailctl_text_file *f, struct err *err)
{
	char *line = NULL;
	size_t cap = 0, i;
	FILE *fp;
	int lineno = 0, rc = 0;

	if (f->path == NULL)
		return 0;
	if ((fp = fopen(f->path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, 0, "open %s: %s", f->path, strerror(errno));
	}
	f->exists = fstat(fileno(fp), &f->st) == 0;
	while (rc == 0 && getline(&line, &cap, fp) >= 0)
		rc = mailctl_text_parse_line(f, line, ++lineno, err);
	free(line);
	fclose(fp);
	for (i = 0; rc == 0 && i < f->n; i++)
		if (f->rec[i].key != NULL) {
			char *v = f->rec[i].value + strlen(f->rec[i].value);

			while (v > f->rec[i].value && isspace((unsigned char)v[-1]))
				*--v = '\0';
		}
	return rc;
}

static struct mailctl_text_rec *mailctl_text_find(struct mailctl_text_file *f,
                                                  const char *key)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (f->rec[i].key != NULL && strcasecmp(f->rec[i].key, key) == 0)
			return &f->rec[i];
	return NULL;
}

static int mailctl_text_need(struct mailctl_text_file *f, struct err *err)
{
	if (f->path != NULL)
		return 0;
	return err_set(err, 0, "%s is not a texthash: table in submission.cf",
	               f->role);
}

static int mailctl_text_set(struct mailctl_text_file *f, const char *key,
                            const char *value, struct err *err)
{
	struct mailctl_text_rec *r;
	char *v;

	if (mailctl_text_need(f, err) < 0)
		return -1;
	if ((v = strdup(value)) == NULL)
		return err_set(err, 1, "out of memory");
	f->dirty = 1;
	if ((r = mailctl_text_find(f, key)) != NULL) {
		free(r->value);
		r->value = v;
		return 0;
	}
	return mailctl_text_push(f, mailctl_text_fold(key, strlen(key)), v) < 0 ?
	       err_set(err, 1, "out of memory") : 0;
}

static void mailctl_text_del(struct mailctl_text_file *f, const char *key)
{
	struct mailctl_text_rec *r;

	if (f->path == NULL || (r = mailctl_text_find(f, key)) == NULL)
		return;
	free(r->key);
	free(r->value);
	memmove(r, r + 1, (size_t)(&f->rec[f->n] - (r + 1)) * sizeof(*r));
	f->n--;
	f->dirty = 1;
}

/* Write f next to itself and rename it into place; keep the old file's
 * mode and owner (the password file stays private). */
static int mailctl_text_save(struct mailctl_text_file *f, struct err *err)
{
	char *tmp = NULL, *dcopy = NULL;
	struct buf b;
	size_t i;
	int fd = -1, dfd = -1, rc = -1;
	mode_t mode = f->exists ? (f->st.st_mode & 07777)
	                        : (strcmp(f->role, "virtual_password_maps") == 0 ?
	                           0600 : 0644);

	buf_init(&b, 0);
	for (i = 0; i < f->n; i++)
		if ((f->rec[i].key != NULL ?
		     buf_printf(&b, "%s %s\n", f->rec[i].key, f->rec[i].value) :
		     buf_printf(&b, "%s\n", f->rec[i].value)) < 0)
			goto out;
	if (asprintf(&tmp, "%s.mailctl-XXXXXX", f->path) < 0) {
		tmp = NULL;
		goto out;
	}
	if ((fd = mkstemp(tmp)) < 0) {
		err_set(err, 0, "create %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, mode) < 0 ||
	    (f->exists && geteuid() == 0 && fchown(fd, f->st.st_uid, f->st.st_gid) < 0) ||
	    (b.len > 0 && write(fd, b.p, b.len) != (ssize_t)b.len) || fsync(fd) < 0) {
		err_set(err, 0, "write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0 || (fd = -1, rename(tmp, f->path) < 0)) {
		err_set(err, 0, "rename %s: %s", f->path, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	if ((dcopy = strdup(f->path)) == NULL ||
	    (dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fsync(dfd) < 0) {
		err_set(err, 0, "fsync folder of %s: %s", f->path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (rc < 0 && err != NULL && err->msg[0] == '\0')
		err_set(err, 1, "out of memory");
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (tmp != NULL)
		unlink(tmp);
	free(tmp);
	free(dcopy);
	buf_free(&b);
	return rc;
}

static int mailctl_text_has(struct mailctl_text *t, int which, const char *key)
{
	return mailctl_text_find(&t->f[which], key) != NULL;
}

static int mailctl_text_domain_exists(void *h, const char *domain, struct err *err)
{
	return mailctl_text_has(h, MAILCTL_T_DOMAINS, domain);
}

static int mailctl_text_mailbox_exists(void *h, const char *addr, struct err *err)
{
	return mailctl_text_has(h, MAILCTL_T_MAILBOX, addr);
}

static int mailctl_text_alias_get(void *h, const char *addr, char **goto_r,
                                  struct err *err)
{
	struct mailctl_text *t = h;
	struct mailctl_text_rec *r = mailctl_text_find(&t->f[MAILCTL_T_ALIAS], addr);

	if (r == NULL)
		return 0;
	*goto_r = strdup(r->value);
	return *goto_r != NULL ? 1 : err_set(err, 1, "out of memory");
}

/* Alias domains are "@alias.test @target.test" lines of the alias file. */
static int mailctl_text_aliasdomain_get(void *h, const char *alias,
                                        char **target_r, struct err *err)
{
	struct mailctl_text *t = h;
	struct mailctl_text_rec *r;
	char key[300];

	snprintf(key, sizeof(key), "@%s", alias);
	r = mailctl_text_find(&t->f[MAILCTL_T_ALIAS], key);
	if (r == NULL || r->value[0] != '@' || strpbrk(r->value, ", \t") != NULL)
		return 0;
	*target_r = strdup(r->value + 1);
	return *target_r != NULL ? 1 : err_set(err, 1, "out of memory");
}

/* Does key ("user@domain" or "@domain") belong to domain? */
static int mailctl_text_in_domain(const char *key, const char *domain)
{
	const char *at = strrchr(key, '@');

	return at != NULL && strcasecmp(at + 1, domain) == 0;
}

static int mailctl_text_domain_usage(void *h, const char *domain, long *mb_r,
                                     long *al_r, struct err *err)
{
	struct mailctl_text *t = h;
	struct mailctl_text_file *f;
	size_t i;

	*mb_r = *al_r = 0;
	f = &t->f[MAILCTL_T_MAILBOX];
	for (i = 0; i < f->n; i++)
		if (f->rec[i].key != NULL && mailctl_text_in_domain(f->rec[i].key, domain))
			(*mb_r)++;
	f = &t->f[MAILCTL_T_ALIAS];
	for (i = 0; i < f->n; i++)
		if (f->rec[i].key != NULL && f->rec[i].key[0] != '@' &&
		    mailctl_text_in_domain(f->rec[i].key, domain) &&
		    !mailctl_text_has(t, MAILCTL_T_MAILBOX, f->rec[i].key))
			(*al_r)++;
		else if (f->rec[i].key != NULL && f->rec[i].key[0] == '@' &&
		         strcasecmp(f->rec[i].key + 1, domain) == 0 &&
		         f->rec[i].value[0] != '@')
			(*al_r)++;      /* a catch-all */
	return 0;
}

static int mailctl_text_domain_add(void *h, const char *domain, const char *desc,
                                   struct err *err)
{
	struct mailctl_text *t = h;

	return mailctl_text_set(&t->f[MAILCTL_T_DOMAINS], domain,
	                        desc != NULL && *desc != '\0' ? desc : "OK", err);
}

static int mailctl_text_domain_del(void *h, const char *domain, struct err *err)
{
	struct mailctl_text *t = h;

	mailctl_text_del(&t->f[MAILCTL_T_DOMAINS], domain);
	return 0;
}

static int mailctl_text_mailbox_add(void *h, const struct mailctl_mailbox *mb,
                                    struct err *err)
{
	struct mailctl_text *t = h;
	char q[32];

	if (mailctl_text_set(&t->f[MAILCTL_T_MAILBOX], mb->addr, mb->maildir, err) < 0 ||
	    mailctl_text_set(&t->f[MAILCTL_T_PASSWORD], mb->addr, mb->hash, err) < 0)
		return -1;
	/* The mailbox's own alias keeps a catch-all from swallowing it
	 * (virtual_alias_maps is searched before the mailboxes). */
	if (t->f[MAILCTL_T_ALIAS].path != NULL &&
	    mailctl_text_set(&t->f[MAILCTL_T_ALIAS], mb->addr, mb->addr, err) < 0)
		return -1;
	if (mb->quota > 0) {
		snprintf(q, sizeof(q), "%lld", mb->quota);
		if (mailctl_text_set(&t->f[MAILCTL_T_LIMIT], mb->addr, q, err) < 0)
			return -1;
	}
	return 0;
}

static int mailctl_text_mailbox_del(void *h, const char *addr, struct err *err)
{
	struct mailctl_text *t = h;
	struct mailctl_text_rec *r = mailctl_text_find(&t->f[MAILCTL_T_ALIAS], addr);

	mailctl_text_del(&t->f[MAILCTL_T_MAILBOX], addr);
	mailctl_text_del(&t->f[MAILCTL_T_PASSWORD], addr);
	mailctl_text_del(&t->f[MAILCTL_T_LIMIT], addr);
	if (r != NULL && strcasecmp(r->value, addr) == 0)
		mailctl_text_del(&t->f[MAILCTL_T_ALIAS], addr);
	return 0;
}

static int mailctl_text_mailbox_passwd(void *h, const char *addr,
                                       const char *hash, struct err *err)
{
	struct mailctl_text *t = h;

	return mailctl_text_set(&t->f[MAILCTL_T_PASSWORD], addr, hash, err);
}

static int mailctl_text_alias_add(void *h, const char *addr, const char *domain,
                                  const char *gotos, struct err *err)
{
	struct mailctl_text *t = h;

	return mailctl_text_set(&t->f[MAILCTL_T_ALIAS], addr, gotos, err);
}

static int mailctl_text_alias_del(void *h, const char *addr, struct err *err)
{
	struct mailctl_text *t = h;

	mailctl_text_del(&t->f[MAILCTL_T_ALIAS], addr);
	return 0;
}

static int mailctl_text_aliasdomain_add(void *h, const char *alias,
                                        const char *target, struct err *err)
{
	struct mailctl_text *t = h;
	char k[300], v[300];

	snprintf(k, sizeof(k), "@%s", alias);
	snprintf(v, sizeof(v), "@%s", target);
	return mailctl_text_set(&t->f[MAILCTL_T_ALIAS], k, v, err);
}

static int mailctl_text_aliasdomain_del(void *h, const char *alias,
                                        struct err *err)
{
	struct mailctl_text *t = h;
	char k[300];

	snprintf(k, sizeof(k), "@%s", alias);
	mailctl_text_del(&t->f[MAILCTL_T_ALIAS], k);
	return 0;
}

static int mailctl_text_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int mailctl_text_list(void *h, enum mailctl_list what, const char *domain,
                             FILE *out, struct err *err)
{
	struct mailctl_text *t = h;
	struct mailctl_text_file *f;
	struct mailctl_text_rec *r;
	char **lines;
	size_t i, n = 0;
	int adom, rc = 0;

	f = &t->f[what == MAILCTL_DOMAINS ? MAILCTL_T_DOMAINS :
	          what == MAILCTL_MAILBOXES ? MAILCTL_T_MAILBOX : MAILCTL_T_ALIAS];
	if ((lines = calloc(f->n + 1, sizeof(*lines))) == NULL)
		return err_set(err, 1, "out of memory");
	for (i = 0; i < f->n && rc == 0; i++) {
		r = &f->rec[i];
		if (r->key == NULL || (domain != NULL && what != MAILCTL_DOMAINS &&
		                       !mailctl_text_in_domain(r->key, domain)))
			continue;
		adom = r->key[0] == '@' && r->value[0] == '@' &&
		       strpbrk(r->value, ", \t") == NULL;
		if (what == MAILCTL_ALIASES &&
		    (adom || mailctl_text_has(t, MAILCTL_T_MAILBOX, r->key)))
			continue;
		if (what == MAILCTL_ALIASDOMAINS && !adom)
			continue;
		if ((what == MAILCTL_DOMAINS || what == MAILCTL_MAILBOXES ?
		     asprintf(&lines[n], "%s", r->key) :
		     asprintf(&lines[n], "%s -> %s", r->key + (what ==
		              MAILCTL_ALIASDOMAINS), r->value + (what ==
		              MAILCTL_ALIASDOMAINS))) < 0)
			rc = err_set(err, 1, "out of memory");
		else
			n++;
	}
	qsort(lines, n, sizeof(*lines), mailctl_text_cmp);
	for (i = 0; i < n; i++) {
		fprintf(out, "%s\n", lines[i]);
		free(lines[i]);
	}
	free(lines);
	return rc;
}

static int mailctl_text_commit(void *h, struct err *err)
{
	struct mailctl_text *t = h;
	int i;

	for (i = 0; i < MAILCTL_T_N; i++)
		if (t->f[i].dirty && mailctl_text_save(&t->f[i], err) < 0)
			return -1;
	return 0;
}

static void mailctl_text_close(void *h)
{
	struct mailctl_text *t = h;
	size_t i, j;

	if (t == NULL)
		return;
	for (i = 0; i < MAILCTL_T_N; i++) {
		for (j = 0; j < t->f[i].n; j++) {
			free(t->f[i].rec[j].key);
			free(t->f[i].rec[j].value);
		}
		free(t->f[i].rec);
		free(t->f[i].path);
	}
	if (t->lockfd >= 0)
		close(t->lockfd);
	free(t);
}

void *mailctl_text_open(const struct mailctl_conf *conf, struct err *err)
{
	const char *specs[MAILCTL_T_N] = {
		conf->virtual_mailbox_domains, conf->virtual_mailbox_maps,
		conf->virtual_password_maps, conf->virtual_alias_maps,
		conf->virtual_mailbox_limit_maps,
	};
	const char *roles[MAILCTL_T_N] = {
		"virtual_mailbox_domains", "virtual_mailbox_maps",
		"virtual_password_maps", "virtual_alias_maps",
		"virtual_mailbox_limit_maps",
	};
	struct mailctl_text *t = calloc(1, sizeof(*t));
	char *lock = NULL;
	int i;

	if (t == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	t->lockfd = -1;
	for (i = 0; i < MAILCTL_T_N; i++) {
		t->f[i].role = roles[i];
		t->f[i].path = mailctl_map_arg(specs[i], "texthash");
	}
	if (t->f[MAILCTL_T_MAILBOX].path == NULL ||
	    t->f[MAILCTL_T_DOMAINS].path == NULL) {
		err_set(err, 0, "virtual_mailbox_maps and virtual_mailbox_domains "
		        "must name texthash: (or mysql:) tables");
		goto fail;
	}
	/* One mailctl at a time edits these files. */
	if (asprintf(&lock, "%s.lock", t->f[MAILCTL_T_MAILBOX].path) < 0 ||
	    (t->lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
	    flock(t->lockfd, LOCK_EX) < 0) {
		err_set(err, 0, "lock %s: %s", lock != NULL ? lock : "",
		        strerror(errno));
		goto fail;
	}
	free(lock);
	lock = NULL;
	for (i = 0; i < MAILCTL_T_N; i++)
		if (mailctl_text_load(&t->f[i], err) < 0)
			goto fail;
	return t;
fail:
	free(lock);
	mailctl_text_close(t);
	return NULL;
}

const struct mailctl_ops mailctl_text_ops = {
	mailctl_text_domain_exists, mailctl_text_mailbox_exists,
	mailctl_text_alias_get, mailctl_text_aliasdomain_get,
	mailctl_text_domain_usage, mailctl_text_domain_add,
	mailctl_text_domain_del, mailctl_text_mailbox_add,
	mailctl_text_mailbox_del, mailctl_text_mailbox_passwd,
	mailctl_text_alias_add, mailctl_text_alias_del,
	mailctl_text_aliasdomain_add, mailctl_text_aliasdomain_del,
	mailctl_text_list, mailctl_text_commit, mailctl_text_close,
};
