/* vlookup: the virtual(5) address search (user+ext@domain, user@domain,
 * @domain) over one map, and Postfix match_list-style domain lists for
 * virtual_mailbox_domains (names, .parent, !negation, /file, type:table). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "vlookup.h"

#define VLOOKUP_FILE_DEPTH 4

static char *vlookup_fold(const char *s)
{
	char *r = strdup(s), *p;

	for (p = r; p != NULL && *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

size_t vlookup_user_len(const char *local, size_t len, const char *delims)
{
	size_t i;

	if (delims == NULL || *delims == '\0')
		return len;
	/* A delimiter as the first character does not start an extension
	 * (Postfix: "+foo@domain" is a user named "+foo"). */
	for (i = 1; i < len; i++)
		if (local[i] != '\0' && strchr(delims, local[i]) != NULL)
			return i;
	return len;
}

static enum map_rc vlookup_try(struct map *m, struct buf *key, int step,
                               char **value_r, int *step_r, struct err *err)
{
	enum map_rc rc;

	if (key->p == NULL)
		return MAP_NOTFOUND;
	rc = map_lookup(m, key->p, value_r, err);
	if (rc == MAP_FOUND && step_r != NULL)
		*step_r = step;
	return rc;
}

enum map_rc vlookup_addr(struct map *m, const char *addr, const char *delims,
                         int flags, char **value_r, int *step_r,
                         struct err *err)
{
	const char *at = strrchr(addr, '@');
	size_t llen = at != NULL ? (size_t)(at - addr) : strlen(addr);
	size_t ulen = vlookup_user_len(addr, llen, delims);
	struct buf dom, key;
	enum map_rc rc = MAP_NOTFOUND;
	int step;

	*value_r = NULL;
	buf_init(&dom, 0);
	buf_init(&key, 0);
	if (at != NULL) {
		for (at++; *at != '\0'; at++)
			if (buf_putc(&dom, (char)tolower((unsigned char)*at)) < 0)
				goto nomem;
		if (dom.p == NULL && buf_puts(&dom, "") < 0)
			goto nomem;
	}
	for (step = VLOOKUP_FULL; step <= VLOOKUP_CATCHALL && rc == MAP_NOTFOUND;
	     step <<= 1) {
		if (!(flags & step) || (step == VLOOKUP_NOEXT && ulen == llen) ||
		    (step == VLOOKUP_CATCHALL && dom.p == NULL))
			continue;
		buf_reset(&key);
		if (step != VLOOKUP_CATCHALL &&
		    buf_append(&key, addr, step == VLOOKUP_FULL ? llen : ulen) < 0)
			goto nomem;
		if (dom.p != NULL &&
		    (buf_putc(&key, '@') < 0 || buf_puts(&key, dom.p) < 0))
			goto nomem;
		rc = vlookup_try(m, &key, step, value_r, step_r, err);
	}
	buf_free(&dom);
	buf_free(&key);
	return rc;
nomem:
	buf_free(&dom);
	buf_free(&key);
	err_set(err, 1, "vlookup: out of memory");
	return MAP_TEMPFAIL;
}

/* ---- domain lists ------------------------------------------------------- */

enum vlookup_kind { VLOOKUP_NAME, VLOOKUP_PARENT, VLOOKUP_MAP };

struct vlookup_entry {
	enum vlookup_kind kind;
	int neg;
	char *name;              /* lower case, without '.' for PARENT */
	struct map *map;
};

struct vlookup_domains {
	struct vlookup_entry *ent;
	size_t n;
};

static int vlookup_list_add(struct vlookup_domains *d, const char *s,
                            size_t len, int depth, struct err *err);

static int vlookup_file_add(struct vlookup_domains *d, const char *path,
                            int depth, struct err *err)
{
	char *line = NULL, *p;
	size_t cap = 0, len;
	FILE *fp;
	int rc = 0;

	if (depth >= VLOOKUP_FILE_DEPTH)
		return err_set(err, 0, "%s: files nested too deeply", path);
	if ((fp = fopen(path, "re")) == NULL)
		return err_set(err, 0, "open %s: %s", path, strerror(errno));
	while (rc == 0 && getline(&line, &cap, fp) >= 0) {
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		for (p = line; *p != '\0' && rc == 0; p += len) {
			len = strcspn(p, ", \t\r\n");
			if (len == 0)
				len = 1;
			else
				rc = vlookup_list_add(d, p, len, depth + 1, err);
		}
	}
	free(line);
	fclose(fp);
	return rc;
}

static int vlookup_list_add(struct vlookup_domains *d, const char *s,
                            size_t len, int depth, struct err *err)
{
	struct vlookup_entry *ne, e;
	char *text;
	int neg = 0, rc;

	while (len > 0 && *s == '!') {
		neg = !neg;
		s++;
		len--;
	}
	if (len == 0)
		return err_set(err, 0, "domain list: empty entry after '!'");
	if (*s == '/' && !neg) {
		if ((text = strndup(s, len)) == NULL)
			return err_set(err, 1, "out of memory");
		rc = vlookup_file_add(d, text, depth, err);
		free(text);
		return rc;
	}
	memset(&e, 0, sizeof(e));
	e.neg = neg;
	if ((text = strndup(s, len)) == NULL)
		return err_set(err, 1, "out of memory");
	if (strchr(text, ':') != NULL) {
		e.kind = VLOOKUP_MAP;
		e.map = map_open(text, err);
		free(text);
		if (e.map == NULL)
			return -1;
	} else {
		e.kind = *text == '.' ? VLOOKUP_PARENT : VLOOKUP_NAME;
		e.name = vlookup_fold(text + (*text == '.'));
		free(text);
		if (e.name == NULL)
			return err_set(err, 1, "out of memory");
	}
	ne = realloc(d->ent, (d->n + 1) * sizeof(*ne));
	if (ne == NULL) {
		map_free(e.map);
		free(e.name);
		return err_set(err, 1, "out of memory");
	}
	d->ent = ne;
	d->ent[d->n++] = e;
	return 0;
}

struct vlookup_domains *vlookup_domains_new(const char *list, struct err *err)
{
	struct vlookup_domains *d = calloc(1, sizeof(*d));
	const char *p;
	size_t len;

	if (d == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	for (p = list != NULL ? list : ""; *p != '\0'; p += len) {
		len = strcspn(p, ", \t\r\n");
		if (len == 0) {
			len = 1;
			continue;
		}
		if (vlookup_list_add(d, p, len, 0, err) < 0) {
			vlookup_domains_free(d);
			return NULL;
		}
	}
	return d;
}

/* Does name (lower case) equal parent or end in ".parent"? */
static int vlookup_is_sub(const char *name, const char *parent)
{
	size_t n = strlen(name), p = strlen(parent);

	return n > p && name[n - p - 1] == '.' && strcmp(name + n - p, parent) == 0;
}

enum map_rc vlookup_domains_match(struct vlookup_domains *d, const char *domain,
                                  struct err *err)
{
	struct vlookup_entry *e;
	enum map_rc rc = MAP_NOTFOUND;
	char *key, *v = NULL;
	size_t i, n;

	if (d == NULL || domain == NULL || (key = vlookup_fold(domain)) == NULL)
		return MAP_NOTFOUND;
	n = strlen(key);
	if (n > 0 && key[n - 1] == '.')
		key[n - 1] = '\0';          /* "example.com." is example.com */
	for (i = 0; i < d->n && *key != '\0'; i++) {
		e = &d->ent[i];
		if (e->kind == VLOOKUP_NAME)
			rc = strcmp(key, e->name) == 0 ? MAP_FOUND : MAP_NOTFOUND;
		else if (e->kind == VLOOKUP_PARENT)
			rc = vlookup_is_sub(key, e->name) ? MAP_FOUND : MAP_NOTFOUND;
		else {
			rc = map_lookup(e->map, key, &v, err);
			free(v);
			v = NULL;
		}
		if (rc == MAP_TEMPFAIL)
			break;
		if (rc == MAP_FOUND) {
			/* match_list: the first matching entry decides. */
			rc = e->neg ? MAP_NOTFOUND : MAP_FOUND;
			break;
		}
	}
	free(key);
	return rc;
}

int vlookup_domains_in_memory(const struct vlookup_domains *d)
{
	for (size_t i = 0; d != NULL && i < d->n; i++)
		if (d->ent[i].kind == VLOOKUP_MAP &&
		    !map_in_memory(d->ent[i].map))
			return 0;
	return 1;
}

void vlookup_domains_free(struct vlookup_domains *d)
{
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->n; i++) {
		map_free(d->ent[i].map);
		free(d->ent[i].name);
	}
	free(d->ent);
	free(d);
}

enum map_rc vlookup_domain_match(const char *list_or_maps, const char *domain,
                                 struct err *err)
{
	struct vlookup_domains *d = vlookup_domains_new(list_or_maps, err);
	enum map_rc rc;

	if (d == NULL)
		return MAP_TEMPFAIL;
	rc = vlookup_domains_match(d, domain, err);
	vlookup_domains_free(d);
	return rc;
}
