/* map_mysql: "mysql:/path/file.cf", Postfix mysql_table(5) over MariaDB
 * Connector/C. The .cf file has Postfix's fields (hosts, user, password,
 * dbname, query, result_format, domain, expansion_limit, retry_interval,
 * and the client TLS fields tls_cert_file, tls_key_file, tls_CAfile,
 * tls_CApath, tls_verify_cert, tls_ciphers), so the files Postfix Admin
 * documents work unchanged. Connections live in a mutex-guarded pool of
 * idle handles; each lookup borrows one. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql.h>
#include <errmsg.h>

#include "buf.h"
#include "cfg.h"
#include "map_backend.h"

#define MAP_MYSQL_CONNECT_TIMEOUT 5
#define MAP_MYSQL_RW_TIMEOUT      10
#define MAP_MYSQL_QUERY_MAX       (64 * 1024)
#define MAP_MYSQL_RESULT_MAX      (1024 * 1024)

struct map_mysql_host {
	char *name;            /* as written, for messages */
	char *host;            /* NULL for a unix socket */
	char *sock;
	unsigned int port;
	time_t dead_until;     /* guarded by map_mysql.lock */
};

struct map_mysql_conn {
	MYSQL *db;
	struct map_mysql_conn *next;
};

struct map_mysql {
	char *path;
	struct map_mysql_host *hosts;
	size_t nhosts;
	char *user, *password, *dbname, *query, *result_format;
	char *domain;               /* list spec or NULL */
	struct map *domain_map;     /* type:table entries of domain */
	unsigned long expansion_limit;
	long retry_interval;
	/* mysql_table(5) TLS: any of these set means TLS, and then TLS is
	 * required (no silent fall-back to cleartext) */
	char *tls_cert_file, *tls_key_file, *tls_CAfile, *tls_CApath;
	char *tls_ciphers;
	int tls_verify_cert;        /* Postfix default: no */
	pthread_mutex_t lock;
	struct map_mysql_conn *idle;
	unsigned refs;              /* the handle's, and each lookup's on it
				     * (under the handle's lock) */
};

/* The backend's handle: the current definition. SIGHUP (reload) reads
 * the .cf into a new struct map_mysql and swaps it in; lookups that had
 * taken the old one finish with it, and the last of them frees it (with
 * its pooled connections). */
struct map_mysql_h {
	pthread_mutex_t lock;
	struct map_mysql *cur;
};

/* The pieces of a key the expansions use (Postfix db_common_expand()). */
struct map_mysql_key {
	const char *s;              /* whole key */
	const char *local;          /* NULL when there is no '@' */
	size_t local_len;
	const char *domain;         /* NULL when there is no '@' */
};

static pthread_once_t map_mysql_once = PTHREAD_ONCE_INIT;
static pthread_key_t map_mysql_thread_key;
static int map_mysql_init_failed;
static __thread int map_mysql_thread_ready;

static void map_mysql_thread_end(void *unused)
{
	mysql_thread_end();
}

static void map_mysql_library_init(void)
{
	if (mysql_library_init(0, NULL, NULL) != 0 ||
	    pthread_key_create(&map_mysql_thread_key, map_mysql_thread_end) != 0)
		map_mysql_init_failed = 1;
}

/* Connector/C wants mysql_thread_init() in each thread that uses it and
 * mysql_thread_end() when the thread exits (the key's destructor). */
static int map_mysql_thread_init(struct err *err)
{
	pthread_once(&map_mysql_once, map_mysql_library_init);
	if (map_mysql_init_failed)
		return err_set(err, 1, "mysql: library initialisation failed");
	if (map_mysql_thread_ready)
		return 0;
	if (mysql_thread_init() != 0)
		return err_set(err, 1, "mysql: thread initialisation failed");
	pthread_setspecific(map_mysql_thread_key, (void *)1);
	map_mysql_thread_ready = 1;
	return 0;
}

/* ---- configuration ------------------------------------------------------ */

/* One hosts entry: "host", "host:port", "[v6]:port", "inet:host:port",
 * "unix:/path" (mysql_table(5) "hosts"). */
static int map_mysql_host_parse(struct map_mysql_host *h, const char *s,
                                size_t len, struct err *err)
{
	const char *colon, *end = s + len;
	char *e;
	unsigned long port;

	memset(h, 0, sizeof(*h));
	if ((h->name = strndup(s, len)) == NULL)
		return err_set(err, 1, "mysql: out of memory");
	if (len > 5 && strncmp(s, "unix:", 5) == 0) {
		h->sock = strndup(s + 5, len - 5);
		return h->sock != NULL ? 0 : err_set(err, 1, "mysql: out of memory");
	}
	if (len > 5 && strncmp(s, "inet:", 5) == 0)
		s += 5;
	if (*s == '[') {
		colon = memchr(s, ']', (size_t)(end - s));
		if (colon == NULL)
			return err_set(err, 0, "bad host \"%s\"", h->name);
		h->host = strndup(s + 1, (size_t)(colon - s - 1));
		colon = colon + 1 < end && colon[1] == ':' ? colon + 1 : NULL;
	} else {
		colon = memchr(s, ':', (size_t)(end - s));
		h->host = strndup(s, (size_t)((colon != NULL ? colon : end) - s));
	}
	if (h->host == NULL)
		return err_set(err, 1, "mysql: out of memory");
	if (h->host[0] == '\0')
		return err_set(err, 0, "bad host \"%s\"", h->name);
	if (colon == NULL)
		return 0;
	errno = 0;
	port = strtoul(colon + 1, &e, 10);
	if (e != end || e == colon + 1 || port == 0 || port > 65535 || errno != 0)
		return err_set(err, 0, "bad port in host \"%s\"", h->name);
	h->port = (unsigned int)port;
	return 0;
}

static int map_mysql_hosts_parse(struct map_mysql *m, const char *v,
                                 struct err *err)
{
	struct map_mysql_host *nh;
	size_t len;

	for (; *v != '\0'; v += len) {
		len = strcspn(v, ", \t\r\n");
		if (len == 0) {
			len = 1;
			continue;
		}
		nh = realloc(m->hosts, (m->nhosts + 1) * sizeof(*nh));
		if (nh == NULL)
			return err_set(err, 1, "mysql: out of memory");
		m->hosts = nh;
		m->nhosts++;
		if (map_mysql_host_parse(&m->hosts[m->nhosts - 1], v, len, err) < 0)
			return -1;
	}
	return 0;
}

/* Refuse an expansion the key side cannot fill (Postfix
 * db_common_check_expansion()). */
static int map_mysql_check_format(const char *fmt, const char *what,
                                  struct err *err)
{
	const char *p;

	for (p = strchr(fmt, '%'); p != NULL; p = strchr(p + 2, '%')) {
		if (p[1] == '\0' || strchr("%sudSUD123456789", p[1]) == NULL)
			return err_set(err, 0, "%s: invalid expansion \"%%%c\"", what,
			               p[1] != '\0' ? p[1] : ' ');
	}
	return 0;
}

static int map_mysql_set_str(char **slot, const char *value, struct err *err)
{
	free(*slot);
	*slot = strdup(value);
	return *slot != NULL ? 0 : err_set(err, 1, "mysql: out of memory");
}

static int map_mysql_set_ulong(unsigned long *slot, const char *value,
                               struct err *err)
{
	char *e;

	errno = 0;
	*slot = strtoul(value, &e, 10);
	if (!isdigit((unsigned char)*value) || *e != '\0' || errno != 0)
		return err_set(err, 0, "bad number \"%s\"", value);
	return 0;
}

static int map_mysql_pair(void *arg, const char *name, const char *value,
                          const char *file, int line, struct err *err)
{
	struct map_mysql *m = arg;
	unsigned long n;
	int rc;

	if (strcmp(name, "hosts") == 0)
		rc = map_mysql_hosts_parse(m, value, err);
	else if (strcmp(name, "user") == 0)
		rc = map_mysql_set_str(&m->user, value, err);
	else if (strcmp(name, "password") == 0)
		rc = map_mysql_set_str(&m->password, value, err);
	else if (strcmp(name, "dbname") == 0)
		rc = map_mysql_set_str(&m->dbname, value, err);
	else if (strcmp(name, "query") == 0)
		rc = map_mysql_set_str(&m->query, value, err);
	else if (strcmp(name, "result_format") == 0)
		rc = map_mysql_set_str(&m->result_format, value, err);
	else if (strcmp(name, "domain") == 0)
		rc = map_mysql_set_str(&m->domain, value, err);
	else if (strcmp(name, "tls_cert_file") == 0)
		rc = map_mysql_set_str(&m->tls_cert_file, value, err);
	else if (strcmp(name, "tls_key_file") == 0)
		rc = map_mysql_set_str(&m->tls_key_file, value, err);
	else if (strcmp(name, "tls_CAfile") == 0)
		rc = map_mysql_set_str(&m->tls_CAfile, value, err);
	else if (strcmp(name, "tls_CApath") == 0)
		rc = map_mysql_set_str(&m->tls_CApath, value, err);
	else if (strcmp(name, "tls_ciphers") == 0)
		rc = map_mysql_set_str(&m->tls_ciphers, value, err);
	else if (strcmp(name, "tls_verify_cert") == 0)
		rc = cfg_parse_bool(value, &m->tls_verify_cert) < 0 ?
		     err_set(err, 0, "bad boolean \"%s\" (yes or no)", value) : 0;
	else if (strcmp(name, "expansion_limit") == 0)
		rc = map_mysql_set_ulong(&m->expansion_limit, value, err);
	else if (strcmp(name, "retry_interval") == 0) {
		rc = map_mysql_set_ulong(&n, value, err);
		m->retry_interval = n > 86400 ? 86400 : (long)n;
	} else if (strcmp(name, "idle_interval") == 0)
		rc = map_mysql_set_ulong(&n, value, err);
	else
		rc = err_set(err, 0, "unknown parameter \"%s\" (mysql_table(5)"
		             " fields: hosts, user, password, dbname, query, "
		             "result_format, domain, expansion_limit, "
		             "retry_interval, idle_interval, tls_cert_file, "
		             "tls_key_file, tls_CAfile, tls_CApath, "
		             "tls_verify_cert, tls_ciphers)", name);
	if (rc < 0 && err != NULL) {
		char why[sizeof(err->msg)];

		memcpy(why, err->msg, sizeof(why));
		err_set(err, err->temp, "%s, line %d: %s", file, line, why);
	}
	return rc;
}

static void map_mysql_conf_free(struct map_mysql *m);

static int map_mysql_domain_setup(struct map_mysql *m, struct err *err)
{
	struct buf maps;
	const char *p;
	size_t len;
	int rc = 0;

	buf_init(&maps, 0);
	for (p = m->domain; *p != '\0' && rc == 0; p += len) {
		len = strcspn(p, ", \t\r\n");
		if (len == 0) {
			len = 1;
			continue;
		}
		if (memchr(p, ':', len) != NULL &&
		    (buf_append(&maps, p, len) < 0 || buf_putc(&maps, ' ') < 0))
			rc = err_set(err, 1, "mysql: out of memory");
	}
	if (rc == 0 && maps.len > 0 &&
	    (m->domain_map = map_open(maps.p, err)) == NULL)
		rc = -1;
	buf_free(&maps);
	return rc;
}

static struct map_mysql *map_mysql_conf_open(const char *arg,
                                              struct err *err)
{
	struct map_mysql *m;

	if (map_mysql_thread_init(err) < 0)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL || (m->path = strdup(arg)) == NULL) {
		free(m);
		err_set(err, 1, "mysql: out of memory");
		return NULL;
	}
	m->retry_interval = 60;
	pthread_mutex_init(&m->lock, NULL);
	if (cfg_read_pairs(m->path, map_mysql_pair, m, err) < 0)
		goto fail;
	if (m->query == NULL) {
		err_set(err, 0, "%s: missing \"query\"", m->path);
		goto fail;
	}
	if (m->result_format == NULL &&
	    map_mysql_set_str(&m->result_format, "%s", err) < 0)
		goto fail;
	if (m->nhosts == 0 && map_mysql_hosts_parse(m, "localhost", err) < 0)
		goto fail;
	if (map_mysql_check_format(m->query, m->path, err) < 0 ||
	    map_mysql_check_format(m->result_format, m->path, err) < 0)
		goto fail;
	if (m->domain != NULL && map_mysql_domain_setup(m, err) < 0)
		goto fail;
	m->refs = 1;
	return m;
fail:
	map_mysql_conf_free(m);
	return NULL;
}

/* ---- expansion ---------------------------------------------------------- */

static void map_mysql_key_split(struct map_mysql_key *k, const char *s)
{
	const char *at = strrchr(s, '@');

	k->s = s;
	k->local = at != NULL ? s : NULL;
	k->local_len = at != NULL ? (size_t)(at - s) : 0;
	k->domain = at != NULL ? at + 1 : NULL;
}

/* The text for expansion c over k, as mysql_table(5) defines it. Returns
 * 1 when the expansion cannot be done and the query must be suppressed
 * (no result): %d or %1..%9 of an unqualified key, %u of "@domain". */
static int map_mysql_part(const struct map_mysql_key *k, int c,
                          const char **p_r, size_t *len_r)
{
	const char *d, *end;
	int want, i;

	switch (tolower(c)) {
	case 's':
		*p_r = k->s;
		*len_r = strlen(k->s);
		return 0;
	case 'u':
		if (k->local == NULL) {
			*p_r = k->s;
			*len_r = strlen(k->s);
			return 0;
		}
		*p_r = k->local;
		*len_r = k->local_len;
		return k->local_len == 0;
	case 'd':
		if (k->domain == NULL || *k->domain == '\0')
			return 1;
		*p_r = k->domain;
		*len_r = strlen(k->domain);
		return 0;
	}
	/* %1 is the most significant label: "com" of user@mail.example.com */
	if (k->domain == NULL || *k->domain == '\0')
		return 1;
	want = c - '0';
	end = k->domain + strlen(k->domain);
	for (i = 1;; i++) {
		for (d = end; d > k->domain && d[-1] != '.'; d--)
			;
		if (i == want) {
			*p_r = d;
			*len_r = (size_t)(end - d);
			return *len_r == 0;
		}
		if (d == k->domain)
			return 1;
		end = d - 1;
	}
}

static int map_mysql_put(struct buf *out, MYSQL *db, const char *p, size_t len)
{
	unsigned long n;

	if (db == NULL)
		return buf_append(out, p, len);
	if (buf_reserve(out, 2 * len + 1) < 0)
		return -1;
	n = mysql_real_escape_string(db, out->p + out->len, p, (unsigned long)len);
	if (n == (unsigned long)-1)
		return -1;
	out->len += n;
	out->p[out->len] = '\0';
	return 0;
}

/* Expand fmt into out. key: the lookup key; val: the result value for
 * result_format (lower-case %s %u %d then mean the value, upper-case and
 * digits the key), NULL for the query. db: escape each expansion on this
 * connection (mysql_real_escape_string knows its character set).
 * Returns 0, 1 (suppressed), -1 (too long). */
static int map_mysql_expand(struct buf *out, const char *fmt,
                            const struct map_mysql_key *key,
                            const struct map_mysql_key *val, MYSQL *db)
{
	const struct map_mysql_key *k;
	const char *p, *part;
	size_t plen;

	for (p = fmt; *p != '\0'; p++) {
		if (*p != '%') {
			if (buf_putc(out, *p) < 0)
				return -1;
			continue;
		}
		p++;
		if (*p == '%') {
			if (buf_putc(out, '%') < 0)
				return -1;
			continue;
		}
		k = val != NULL && islower((unsigned char)*p) ? val : key;
		if (map_mysql_part(k, *p, &part, &plen))
			return 1;
		if (map_mysql_put(out, db, part, plen) < 0)
			return -1;
	}
	return 0;
}

/* mysql_table(5) "domain": only user@domain keys with a listed domain. */
static enum map_rc map_mysql_domain_ok(struct map_mysql *m,
                                       const struct map_mysql_key *k,
                                       struct err *err)
{
	enum map_rc rc;
	char *v = NULL;

	if (m->domain == NULL)
		return MAP_FOUND;
	if (k->domain == NULL || k->local_len == 0 || *k->domain == '\0')
		return MAP_NOTFOUND;
	if (cfg_list_contains(m->domain, k->domain))
		return MAP_FOUND;
	if (m->domain_map == NULL)
		return MAP_NOTFOUND;
	rc = map_lookup(m->domain_map, k->domain, &v, err);
	free(v);
	return rc;
}

/* ---- connections -------------------------------------------------------- */

static int map_mysql_tls_wanted(const struct map_mysql *m)
{
	return m->tls_cert_file != NULL || m->tls_key_file != NULL ||
	       m->tls_CAfile != NULL || m->tls_CApath != NULL ||
	       m->tls_ciphers != NULL || m->tls_verify_cert;
}

/* mysql_table(5) TLS fields as Connector/C options. A key without a
 * certificate (or the reverse) is Connector/C's business: it reads the
 * other from the same file. */
static void map_mysql_tls_options(const struct map_mysql *m, MYSQL *db)
{
	my_bool on = 1, verify = m->tls_verify_cert ? 1 : 0;

	if (!map_mysql_tls_wanted(m))
		return;
	if (m->tls_key_file != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_KEY, m->tls_key_file);
	if (m->tls_cert_file != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_CERT, m->tls_cert_file);
	if (m->tls_CAfile != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_CA, m->tls_CAfile);
	if (m->tls_CApath != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_CAPATH, m->tls_CApath);
	if (m->tls_ciphers != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_CIPHER, m->tls_ciphers);
	/* the server's certificate: its chain to tls_CAfile/tls_CApath and
	 * its name against the host (Postfix's tls_verify_cert) */
	mysql_optionsv(db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
	/* the operator asked for TLS: a server that does not offer it is a
	 * failed connection, not a cleartext one */
	mysql_optionsv(db, MYSQL_OPT_SSL_ENFORCE, &on);
}

static MYSQL *map_mysql_connect_host(struct map_mysql *m,
                                     struct map_mysql_host *h, struct err *err)
{
	unsigned int ct = MAP_MYSQL_CONNECT_TIMEOUT, rw = MAP_MYSQL_RW_TIMEOUT;
	unsigned int proto = h->sock != NULL ? MYSQL_PROTOCOL_SOCKET
	                                     : MYSQL_PROTOCOL_TCP;
	my_bool off = 0;
	MYSQL *db;

	db = mysql_init(NULL);
	if (db == NULL) {
		err_set(err, 1, "mysql: out of memory");
		return NULL;
	}
	mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
	mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &rw);
	mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &rw);
	mysql_options(db, MYSQL_OPT_RECONNECT, &off);
	mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* "localhost" would silently mean the default socket; the operator
	 * named a TCP host (or port), so use TCP. */
	if (h->sock != NULL || h->port != 0)
		mysql_options(db, MYSQL_OPT_PROTOCOL, &proto);
	map_mysql_tls_options(m, db);
	if (mysql_real_connect(db, h->host, m->user, m->password, m->dbname,
	                       h->port, h->sock, 0) == NULL) {
		err_set(err, 1, "mysql:%s: connect to %s: %s", m->path, h->name,
		        mysql_error(db));
		mysql_close(db);
		return NULL;
	}
	if (map_mysql_tls_wanted(m) && mysql_get_ssl_cipher(db) == NULL) {
		err_set(err, 1, "mysql:%s: connect to %s: no TLS although the "
		        "tls_* fields ask for it", m->path, h->name);
		mysql_close(db);
		return NULL;
	}
	return db;
}

/* Try the hosts in order, skipping those that failed less than
 * retry_interval ago (Postfix's dead-host delay). */
static MYSQL *map_mysql_connect(struct map_mysql *m, struct err *err)
{
	struct map_mysql_host *h;
	time_t now = time(NULL);
	int tried = 0;
	size_t i;
	MYSQL *db;

	for (i = 0; i < m->nhosts; i++) {
		h = &m->hosts[i];
		pthread_mutex_lock(&m->lock);
		if (h->dead_until > now) {
			pthread_mutex_unlock(&m->lock);
			continue;
		}
		pthread_mutex_unlock(&m->lock);
		tried = 1;
		db = map_mysql_connect_host(m, h, err);
		pthread_mutex_lock(&m->lock);
		h->dead_until = db == NULL ? now + m->retry_interval : 0;
		pthread_mutex_unlock(&m->lock);
		if (db != NULL)
			return db;
	}
	if (!tried)
		err_set(err, 1, "mysql:%s: no usable host (all failed within "
		        "the last %lds)", m->path, m->retry_interval);
	return NULL;
}

static MYSQL *map_mysql_get(struct map_mysql *m, struct err *err)
{
	struct map_mysql_conn *c;
	MYSQL *db = NULL;

	pthread_mutex_lock(&m->lock);
	c = m->idle;
	if (c != NULL)
		m->idle = c->next;
	pthread_mutex_unlock(&m->lock);
	if (c != NULL) {
		db = c->db;
		free(c);
		return db;
	}
	return map_mysql_connect(m, err);
}

static void map_mysql_put_back(struct map_mysql *m, MYSQL *db)
{
	struct map_mysql_conn *c = malloc(sizeof(*c));

	if (c == NULL) {
		mysql_close(db);
		return;
	}
	c->db = db;
	pthread_mutex_lock(&m->lock);
	c->next = m->idle;
	m->idle = c;
	pthread_mutex_unlock(&m->lock);
}

/* ---- lookup ------------------------------------------------------------- */

/* Every non-empty field of every row, through result_format, joined with
 * ", " (Postfix joins multiple results into one comma-separated list). */
static enum map_rc map_mysql_collect(struct map_mysql *m, MYSQL_RES *res,
                                     const struct map_mysql_key *key,
                                     struct buf *out, struct err *err)
{
	unsigned int nf = mysql_num_fields(res), j;
	unsigned long count = 0;
	struct map_mysql_key vk;
	struct buf one;
	MYSQL_ROW row;
	int rc;

	buf_init(&one, MAP_MYSQL_RESULT_MAX);
	while ((row = mysql_fetch_row(res)) != NULL) {
		for (j = 0; j < nf; j++) {
			if (row[j] == NULL || row[j][0] == '\0')
				continue;
			map_mysql_key_split(&vk, row[j]);
			buf_reset(&one);
			rc = map_mysql_expand(&one, m->result_format, key, &vk, NULL);
			if (rc == 1 || one.len == 0)
				continue;
			if (rc < 0 || (out->len > 0 && buf_puts(out, ", ") < 0) ||
			    buf_append(out, one.p, one.len) < 0) {
				buf_free(&one);
				err_set(err, 1, "mysql:%s: result too large", m->path);
				return MAP_TEMPFAIL;
			}
			if (m->expansion_limit > 0 && ++count > m->expansion_limit) {
				buf_free(&one);
				err_set(err, 1, "mysql:%s: more than expansion_limit=%lu "
				        "results for \"%s\"", m->path,
				        m->expansion_limit, key->s);
				return MAP_TEMPFAIL;
			}
		}
	}
	buf_free(&one);
	return out->len > 0 ? MAP_FOUND : MAP_NOTFOUND;
}

/* One query on db. *lost_r = 1 when the connection went away, so the
 * caller may reconnect once. */
static enum map_rc map_mysql_query(struct map_mysql *m, MYSQL *db,
                                   const struct map_mysql_key *k,
                                   char **value_r, int *lost_r,
                                   struct err *err)
{
	struct buf q, out;
	MYSQL_RES *res;
	enum map_rc rc;
	unsigned int e;

	*lost_r = 0;
	buf_init(&q, MAP_MYSQL_QUERY_MAX);
	rc = map_mysql_expand(&q, m->query, k, NULL, db) == 0 ? MAP_FOUND
	                                                      : MAP_TEMPFAIL;
	if (rc == MAP_TEMPFAIL) {
		buf_free(&q);
		err_set(err, 1, "mysql:%s: query too long", m->path);
		return MAP_TEMPFAIL;
	}
	if (mysql_real_query(db, q.p, q.len) != 0 ||
	    ((res = mysql_store_result(db)) == NULL && mysql_errno(db) != 0)) {
		e = mysql_errno(db);
		*lost_r = e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST;
		err_set(err, 1, "mysql:%s: query: %s", m->path, mysql_error(db));
		buf_free(&q);
		return MAP_TEMPFAIL;
	}
	buf_free(&q);
	if (res == NULL)
		return MAP_NOTFOUND;
	buf_init(&out, MAP_MYSQL_RESULT_MAX);
	rc = map_mysql_collect(m, res, k, &out, err);
	mysql_free_result(res);
	if (rc == MAP_FOUND)
		*value_r = buf_steal(&out);
	buf_free(&out);
	return rc;
}

static enum map_rc map_mysql_conf_lookup(struct map_mysql *m, const char *key,
                                         char **value_r, struct err *err)
{
	struct map_mysql_key k;
	struct buf probe;
	enum map_rc rc;
	char *folded;
	MYSQL *db;
	int lost, supp;

	if (map_mysql_thread_init(err) < 0)
		return MAP_TEMPFAIL;
	if ((folded = map_fold(key)) == NULL) {
		err_set(err, 1, "mysql: out of memory");
		return MAP_TEMPFAIL;
	}
	map_mysql_key_split(&k, folded);
	/* Suppressed expansions answer "not found" without a connection. */
	buf_init(&probe, MAP_MYSQL_QUERY_MAX);
	supp = map_mysql_expand(&probe, m->query, &k, NULL, NULL);
	buf_free(&probe);
	rc = supp == 1 || *folded == '\0' ? MAP_NOTFOUND
	                                  : map_mysql_domain_ok(m, &k, err);
	if (rc != MAP_FOUND) {
		free(folded);
		return rc;
	}
	db = map_mysql_get(m, err);
	rc = db != NULL ? map_mysql_query(m, db, &k, value_r, &lost, err)
	                : MAP_TEMPFAIL;
	if (rc == MAP_TEMPFAIL && db != NULL && lost) {
		/* One reconnect: the server restarted or dropped an idle link. */
		mysql_close(db);
		db = map_mysql_connect(m, err);
		rc = db != NULL ? map_mysql_query(m, db, &k, value_r, &lost, err)
		                : MAP_TEMPFAIL;
	}
	if (db != NULL && rc == MAP_TEMPFAIL)
		mysql_close(db);
	else if (db != NULL)
		map_mysql_put_back(m, db);
	free(folded);
	return rc;
}

static void map_mysql_conf_free(struct map_mysql *m)
{
	struct map_mysql_conn *c;
	size_t i;

	if (m == NULL)
		return;
	while ((c = m->idle) != NULL) {
		m->idle = c->next;
		mysql_close(c->db);
		free(c);
	}
	for (i = 0; i < m->nhosts; i++) {
		free(m->hosts[i].name);
		free(m->hosts[i].host);
		free(m->hosts[i].sock);
	}
	free(m->hosts);
	free(m->user);
	free(m->password);
	free(m->dbname);
	free(m->query);
	free(m->result_format);
	free(m->domain);
	free(m->tls_cert_file);
	free(m->tls_key_file);
	free(m->tls_CAfile);
	free(m->tls_CApath);
	free(m->tls_ciphers);
	map_free(m->domain_map);
	pthread_mutex_destroy(&m->lock);
	free(m->path);
	free(m);
}

/* ---- the handle ---------------------------------------------------------- */

static void *map_mysql_open(const char *arg, struct err *err)
{
	struct map_mysql_h *h = calloc(1, sizeof(*h));

	if (h == NULL) {
		err_set(err, 1, "mysql: out of memory");
		return NULL;
	}
	h->cur = map_mysql_conf_open(arg, err);
	if (h->cur == NULL) {
		free(h);
		return NULL;
	}
	pthread_mutex_init(&h->lock, NULL);
	return h;
}

static void map_mysql_unref(struct map_mysql_h *h, struct map_mysql *m)
{
	unsigned left;

	pthread_mutex_lock(&h->lock);
	left = --m->refs;
	pthread_mutex_unlock(&h->lock);
	if (left == 0)
		map_mysql_conf_free(m);
}

static enum map_rc map_mysql_lookup(void *hv, const char *key, char **value_r,
                                    struct err *err)
{
	struct map_mysql_h *h = hv;
	struct map_mysql *m;
	enum map_rc rc;

	pthread_mutex_lock(&h->lock);
	m = h->cur;
	m->refs++;
	pthread_mutex_unlock(&h->lock);
	rc = map_mysql_conf_lookup(m, key, value_r, err);
	map_mysql_unref(h, m);
	return rc;
}

static int map_mysql_reload(void *hv, struct err *err)
{
	struct map_mysql_h *h = hv;
	struct map_mysql *nm, *old;

	nm = map_mysql_conf_open(h->cur->path, err);
	if (nm == NULL)
		return -1;   /* the old definition stays */
	pthread_mutex_lock(&h->lock);
	old = h->cur;
	h->cur = nm;
	pthread_mutex_unlock(&h->lock);
	map_mysql_unref(h, old);
	return 0;
}

static void map_mysql_close(void *hv)
{
	struct map_mysql_h *h = hv;

	if (h == NULL)
		return;
	map_mysql_conf_free(h->cur);   /* no lookup runs any more */
	pthread_mutex_destroy(&h->lock);
	free(h);
}

const struct map_backend map_mysql_backend = {
	"mysql", map_mysql_open, map_mysql_lookup, map_mysql_close,
	map_mysql_reload, 0,
};
