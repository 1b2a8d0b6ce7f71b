/* map: opening a list of "type:argument" tables and searching them in
 * order, first hit wins, as Postfix maps_find(). The backends live in
 * map_static.c, map_file.c (texthash) and map_mysql.c. */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "map.h"
#include "map_backend.h"

struct map_table {
	const struct map_backend *be;
	void *h;
};

struct map {
	char *spec;
	struct map_table *tab;
	size_t ntab;
	struct map *reg_next, *reg_prev;
};

/* Every open map, for map_reload_all() on SIGHUP: part of the loaded
 * configuration (DESIGN: no other global state). */
static pthread_mutex_t map_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct map *map_reg;

static const struct map_backend *map_backends[] = {
	&map_static_backend,
	&map_file_backend,
	&map_mysql_backend,
};

char *map_fold(const char *s)
{
	char *r = strdup(s);
	char *p;

	if (r == NULL)
		return NULL;
	for (p = r; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

/* Length of the next list element at s: up to a comma or white space, but
 * a "{...}" group (Postfix 3.0 "static:{text}") may hold either. Returns
 * (size_t)-1 for an unbalanced brace. */
static size_t map_token_len(const char *s)
{
	size_t i = 0;
	int depth = 0;

	for (; s[i] != '\0'; i++) {
		if (s[i] == '{')
			depth++;
		else if (s[i] == '}' && depth > 0)
			depth--;
		else if (depth == 0 && (s[i] == ',' || isspace((unsigned char)s[i])))
			break;
	}
	return depth == 0 ? i : (size_t)-1;
}

static const struct map_backend *map_find_backend(const char *type, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(map_backends) / sizeof(map_backends[0]); i++)
		if (strlen(map_backends[i]->type) == len &&
		    strncmp(map_backends[i]->type, type, len) == 0)
			return map_backends[i];
	return NULL;
}

static int map_add(struct map *m, const char *tok, size_t len, struct err *err)
{
	const char *colon = memchr(tok, ':', len);
	const struct map_backend *be;
	struct map_table *nt;
	char *arg;
	void *h;

	/* Postfix's "proxy:" hands the table to proxymap(8) to share its
	 * connections between processes; a mysql: table here already keeps
	 * one pool per process, so "proxy:mysql:/f.cf" is "mysql:/f.cf"
	 * (Postfix Admin's POSTFIX_CONF.txt writes it so). */
	if (len > 6 && strncmp(tok, "proxy:", 6) == 0) {
		tok += 6;
		len -= 6;
		colon = memchr(tok, ':', len);
	}
	if (colon == NULL || colon == tok)
		return err_set(err, 0, "map \"%.*s\": expected type:name", (int)len, tok);
	be = map_find_backend(tok, (size_t)(colon - tok));
	if (be == NULL)
		return err_set(err, 0, "map \"%.*s\": unsupported map type \"%.*s\""
		               " (use static, texthash or mysql)", (int)len, tok,
		               (int)(colon - tok), tok);
	arg = strndup(colon + 1, len - (size_t)(colon + 1 - tok));
	if (arg == NULL)
		return err_set(err, 1, "map: out of memory");
	h = be->open(arg, err);
	free(arg);
	if (h == NULL)
		return -1;
	nt = realloc(m->tab, (m->ntab + 1) * sizeof(*nt));
	if (nt == NULL) {
		be->close(h);
		return err_set(err, 1, "map: out of memory");
	}
	m->tab = nt;
	m->tab[m->ntab].be = be;
	m->tab[m->ntab].h = h;
	m->ntab++;
	return 0;
}

struct map *map_open(const char *spec, struct err *err)
{
	struct map *m;
	const char *p;
	size_t len;

	m = calloc(1, sizeof(*m));
	if (m == NULL || (m->spec = strdup(spec != NULL ? spec : "")) == NULL) {
		free(m);
		err_set(err, 1, "map: out of memory");
		return NULL;
	}
	for (p = m->spec; *p != '\0'; p += len) {
		if (*p == ',' || isspace((unsigned char)*p)) {
			len = 1;
			continue;
		}
		len = map_token_len(p);
		if (len == (size_t)-1) {
			err_set(err, 0, "map \"%s\": unbalanced '{'", m->spec);
			map_free(m);
			return NULL;
		}
		if (map_add(m, p, len, err) < 0) {
			map_free(m);
			return NULL;
		}
	}
	pthread_mutex_lock(&map_reg_lock);
	m->reg_next = map_reg;
	if (map_reg != NULL)
		map_reg->reg_prev = m;
	map_reg = m;
	pthread_mutex_unlock(&map_reg_lock);
	return m;
}

enum map_rc map_lookup(struct map *m, const char *key, char **value_r,
                       struct err *err)
{
	enum map_rc rc;
	size_t i;

	*value_r = NULL;
	if (m == NULL || key == NULL)
		return MAP_NOTFOUND;
	for (i = 0; i < m->ntab; i++) {
		rc = m->tab[i].be->lookup(m->tab[i].h, key, value_r, err);
		if (rc != MAP_NOTFOUND)
			return rc;
	}
	return MAP_NOTFOUND;
}

int map_reload(struct map *m, struct err *err)
{
	struct err e;
	size_t i;
	int rc = 0;

	for (i = 0; m != NULL && i < m->ntab; i++) {
		if (m->tab[i].be->reload == NULL ||
		    m->tab[i].be->reload(m->tab[i].h, &e) == 0)
			continue;
		if (rc == 0)
			*err = e;   /* the first failure; the others still try */
		rc = -1;
	}
	return rc;
}

int map_reload_all(unsigned *n_r, struct err *err)
{
	struct map *m;
	struct err e;
	int rc = 0;

	*n_r = 0;
	/* the loop thread only opens and frees maps: held throughout */
	pthread_mutex_lock(&map_reg_lock);
	for (m = map_reg; m != NULL; m = m->reg_next) {
		(*n_r)++;
		if (map_reload(m, &e) < 0 && rc == 0) {
			*err = e;
			rc = -1;
		}
	}
	pthread_mutex_unlock(&map_reg_lock);
	return rc;
}

void map_main_reload(const char *who)
{
	struct err err;
	unsigned n;

	if (map_reload_all(&n, &err) < 0)
		log_warn("%s: maps: %s (that table keeps what it had)", who,
		         err.msg);
	else
		log_info("%s: %u maps read again", who, n);
}

int map_is_empty(const struct map *m)
{
	return m == NULL || m->ntab == 0;
}

int map_in_memory(const struct map *m)
{
	for (size_t i = 0; m != NULL && i < m->ntab; i++)
		if (!m->tab[i].be->in_memory)
			return 0;
	return 1;
}

const char *map_spec(const struct map *m)
{
	return m != NULL ? m->spec : "";
}

void map_free(struct map *m)
{
	size_t i;

	if (m == NULL)
		return;
	pthread_mutex_lock(&map_reg_lock);
	if (m->reg_prev != NULL)
		m->reg_prev->reg_next = m->reg_next;
	else if (map_reg == m)
		map_reg = m->reg_next;
	if (m->reg_next != NULL)
		m->reg_next->reg_prev = m->reg_prev;
	pthread_mutex_unlock(&map_reg_lock);
	for (i = 0; i < m->ntab; i++)
		m->tab[i].be->close(m->tab[i].h);
	free(m->tab);
	free(m->spec);
	free(m);
}
