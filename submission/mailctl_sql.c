/* mailctl_sql: mailctl's MySQL backend, writing Postfix Admin's tables in
 * the database the virtual_mailbox_maps .cf file names (same hosts, user,
 * password, dbname). Every value goes through mysql_real_escape_string on
 * the connection; all changes of one command are one transaction. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "buf.h"
#include "cfg.h"
#include "mailctl.h"

struct mailctl_sql {
	MYSQL *db;
	char *path, *hosts, *user, *password, *dbname;
};

static int mailctl_sql_pair(void *arg, const char *name, const char *value,
                            const char *file, int line, struct err *err)
{
	struct mailctl_sql *s = arg;
	char **slot = strcmp(name, "hosts") == 0 ? &s->hosts :
	              strcmp(name, "user") == 0 ? &s->user :
	              strcmp(name, "password") == 0 ? &s->password :
	              strcmp(name, "dbname") == 0 ? &s->dbname : NULL;

	if (slot == NULL)
		return 0;       /* query and the rest are the daemons' business */
	free(*slot);
	*slot = strdup(value);
	return *slot != NULL ? 0 : err_set(err, 1, "out of memory");
}

/* One hosts entry as mysql_table(5): host, host:port, inet:host:port,
 * unix:/path. */
static MYSQL *mailctl_sql_try(struct mailctl_sql *s, const char *h, size_t len,
                              struct err *err)
{
	unsigned int proto, ct = 5;
	char *e, *host = strndup(h, len), *port_s = NULL;
	const char *sock = NULL, *name = host;
	unsigned long port = 0;
	MYSQL *db = mysql_init(NULL);

	if (host == NULL || db == NULL) {
		free(host);
		mysql_close(db);
		err_set(err, 1, "out of memory");
		return NULL;
	}
	if (strncmp(host, "unix:", 5) == 0) {
		sock = host + 5;
		name = NULL;
	} else {
		if (strncmp(host, "inet:", 5) == 0)
			name = host + 5;
		if ((port_s = strrchr(name, ':')) != NULL) {
			*port_s++ = '\0';
			port = strtoul(port_s, &e, 10);
			if (*e != '\0' || port > 65535)
				port = 0;
		}
	}
	proto = sock != NULL ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
	if (sock != NULL || port != 0)
		mysql_options(db, MYSQL_OPT_PROTOCOL, &proto);
	mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
	mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (mysql_real_connect(db, name, s->user, s->password, s->dbname,
	                       (unsigned int)port, sock, 0) == NULL) {
		err_set(err, 1, "%s: connect to %.*s: %s", s->path, (int)len, h,
		        mysql_error(db));
		mysql_close(db);
		db = NULL;
	}
	free(host);
	return db;
}

/* Expand fmt: each '?' becomes the next string argument, quoted and
 * escaped on this connection. */
static int mailctl_sql_vbuild(MYSQL *db, struct buf *q, const char *fmt,
                              va_list ap)
{
	const char *a;
	unsigned long n;
	size_t len;

	for (; *fmt != '\0'; fmt++) {
		if (*fmt != '?') {
			if (buf_putc(q, *fmt) < 0)
				return -1;
			continue;
		}
		a = va_arg(ap, const char *);
		len = strlen(a);
		if (buf_reserve(q, 2 * len + 3) < 0)
			return -1;
		q->p[q->len++] = '\'';
		n = mysql_real_escape_string(db, q->p + q->len, a, (unsigned long)len);
		q->len += n;
		q->p[q->len++] = '\'';
		q->p[q->len] = '\0';
	}
	return 0;
}

/* Run a statement; with res_r, keep its result set. */
static int mailctl_sql_run(struct mailctl_sql *s, MYSQL_RES **res_r,
                           struct err *err, const char *fmt, va_list ap)
{
	struct buf q;
	int rc = 0;

	buf_init(&q, 0);
	if (mailctl_sql_vbuild(s->db, &q, fmt, ap) < 0)
		rc = err_set(err, 1, "out of memory");
	else if (mysql_real_query(s->db, q.p, q.len) != 0)
		rc = err_set(err, 1, "%s: %s", s->path, mysql_error(s->db));
	else if (res_r != NULL && (*res_r = mysql_store_result(s->db)) == NULL)
		rc = err_set(err, 1, "%s: %s", s->path, mysql_error(s->db));
	buf_free(&q);
	return rc;
}

static int mailctl_sql_exec(struct mailctl_sql *s, struct err *err,
                            const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = mailctl_sql_run(s, NULL, err, fmt, ap);
	va_end(ap);
	return rc;
}

/* The whole result set (the caller frees it). */
static int mailctl_sql_all(struct mailctl_sql *s, MYSQL_RES **res_r,
                           struct err *err, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = mailctl_sql_run(s, res_r, err, fmt, ap);
	va_end(ap);
	return rc;
}

/* First column of the first row: 1 (val_r malloc'd if not NULL), 0 no row,
 * -1 error. */
static int mailctl_sql_get(struct mailctl_sql *s, char **val_r, struct err *err,
                           const char *fmt, ...)
{
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = mailctl_sql_run(s, &res, err, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	row = mysql_fetch_row(res);
	rc = row != NULL;
	if (rc && val_r != NULL &&
	    (*val_r = strdup(row[0] != NULL ? row[0] : "")) == NULL)
		rc = err_set(err, 1, "out of memory");
	mysql_free_result(res);
	return rc;
}

static int mailctl_sql_domain_exists(void *h, const char *domain, struct err *err)
{
	return mailctl_sql_get(h, NULL, err,
	                       "SELECT 1 FROM domain WHERE domain = ?", domain);
}

static int mailctl_sql_mailbox_exists(void *h, const char *addr, struct err *err)
{
	return mailctl_sql_get(h, NULL, err,
	                       "SELECT 1 FROM mailbox WHERE username = ?", addr);
}

static int mailctl_sql_alias_get(void *h, const char *addr, char **goto_r,
                                 struct err *err)
{
	return mailctl_sql_get(h, goto_r, err,
	                       "SELECT goto FROM alias WHERE address = ?", addr);
}

static int mailctl_sql_aliasdomain_get(void *h, const char *alias,
                                       char **target_r, struct err *err)
{
	return mailctl_sql_get(h, target_r, err, "SELECT target_domain FROM "
	                       "alias_domain WHERE alias_domain = ?", alias);
}

static int mailctl_sql_domain_usage(void *h, const char *domain, long *mb_r,
                                    long *al_r, struct err *err)
{
	char *a = NULL, *b = NULL;
	int rc;

	rc = mailctl_sql_get(h, &a, err, "SELECT COUNT(*) FROM mailbox WHERE "
	                     "domain = ?", domain);
	if (rc > 0)
		rc = mailctl_sql_get(h, &b, err, "SELECT COUNT(*) FROM alias WHERE "
		                     "domain = ? AND address NOT IN (SELECT username "
		                     "FROM mailbox)", domain);
	*mb_r = a != NULL ? strtol(a, NULL, 10) : 0;
	*al_r = b != NULL ? strtol(b, NULL, 10) : 0;
	free(a);
	free(b);
	return rc < 0 ? -1 : 0;
}

static int mailctl_sql_domain_add(void *h, const char *domain, const char *desc,
                                  struct err *err)
{
	/* password_expiry 0: no expiry for the domain's passwords, which
	 * Postfix Admin's expiry query ("m.password_expiry > now() or
	 * d.password_expiry = 0") lets through */
	return mailctl_sql_exec(h, err, "INSERT INTO domain (domain, description,"
	                        " transport, created, modified, active, "
	                        "password_expiry) VALUES (?, ?, 'virtual', NOW(),"
	                        " NOW(), 1, 0)", domain,
	                        desc != NULL ? desc : "");
}

static int mailctl_sql_domain_del(void *h, const char *domain, struct err *err)
{
	return mailctl_sql_exec(h, err, "DELETE FROM domain WHERE domain = ?",
	                        domain);
}

/* Postfix Admin (MailboxHandler) sets mailbox.password_expiry with each
 * new password: now + the domain's password_expiry days, or + 365 days
 * when the domain has none. */
#define MAILCTL_SQL_EXPIRY(dom) "NOW() + INTERVAL COALESCE((SELECT CASE WHEN " \
	"d.password_expiry > 0 THEN d.password_expiry END FROM domain d " \
	"WHERE d.domain = " dom "), 365) DAY"

static int mailctl_sql_mailbox_add(void *h, const struct mailctl_mailbox *mb,
                                   struct err *err)
{
	char quota[32];

	snprintf(quota, sizeof(quota), "%lld", mb->quota);
	if (mailctl_sql_exec(h, err, "INSERT INTO mailbox (username, password, "
	                     "name, maildir, quota, local_part, domain, created,"
	                     " modified, active, password_expiry) VALUES (?, ?, "
	                     "?, ?, ?, ?, ?, NOW(), NOW(), 1, "
	                     MAILCTL_SQL_EXPIRY("?") ")", mb->addr, mb->hash,
	                     mb->name != NULL ? mb->name : "", mb->maildir, quota,
	                     mb->local, mb->domain, mb->domain) < 0)
		return -1;
	/* Postfix Admin: every mailbox is also an alias of itself. */
	return mailctl_sql_exec(h, err, "INSERT INTO alias (address, goto, domain,"
	                        " created, modified, active) VALUES (?, ?, ?, "
	                        "NOW(), NOW(), 1)", mb->addr, mb->addr, mb->domain);
}

static int mailctl_sql_mailbox_del(void *h, const char *addr, struct err *err)
{
	if (mailctl_sql_exec(h, err, "DELETE FROM mailbox WHERE username = ?",
	                     addr) < 0 ||
	    mailctl_sql_exec(h, err, "DELETE FROM quota2 WHERE username = ?",
	                     addr) < 0)
		return -1;
	return mailctl_sql_exec(h, err, "DELETE FROM alias WHERE address = ?", addr);
}

static int mailctl_sql_mailbox_passwd(void *h, const char *addr,
                                      const char *hash, struct err *err)
{
	return mailctl_sql_exec(h, err, "UPDATE mailbox SET password = ?, "
	                        "modified = NOW(), password_expiry = "
	                        MAILCTL_SQL_EXPIRY("mailbox.domain")
	                        " WHERE username = ?", hash, addr);
}

static int mailctl_sql_alias_add(void *h, const char *addr, const char *domain,
                                 const char *gotos, struct err *err)
{
	return mailctl_sql_exec(h, err, "INSERT INTO alias (address, goto, domain,"
	                        " created, modified, active) VALUES (?, ?, ?, "
	                        "NOW(), NOW(), 1)", addr, gotos, domain);
}

static int mailctl_sql_alias_del(void *h, const char *addr, struct err *err)
{
	return mailctl_sql_exec(h, err, "DELETE FROM alias WHERE address = ?", addr);
}

static int mailctl_sql_aliasdomain_add(void *h, const char *alias,
                                       const char *target, struct err *err)
{
	return mailctl_sql_exec(h, err, "INSERT INTO alias_domain (alias_domain, "
	                        "target_domain, created, modified, active) VALUES "
	                        "(?, ?, NOW(), NOW(), 1)", alias, target);
}

static int mailctl_sql_aliasdomain_del(void *h, const char *alias,
                                       struct err *err)
{
	return mailctl_sql_exec(h, err, "DELETE FROM alias_domain WHERE "
	                        "alias_domain = ?", alias);
}

static int mailctl_sql_list(void *h, enum mailctl_list what, const char *domain,
                            FILE *out, struct err *err)
{
	static const char *const q[][2] = {
		{ "SELECT domain FROM domain ORDER BY domain",
		  "SELECT domain FROM domain WHERE domain = ?" },
		{ "SELECT username FROM mailbox ORDER BY username",
		  "SELECT username FROM mailbox WHERE domain = ? ORDER BY username" },
		{ "SELECT CONCAT(address, ' -> ', goto) FROM alias WHERE address "
		  "NOT IN (SELECT username FROM mailbox) ORDER BY address",
		  "SELECT CONCAT(address, ' -> ', goto) FROM alias WHERE address "
		  "NOT IN (SELECT username FROM mailbox) AND domain = ? ORDER BY "
		  "address" },
		{ "SELECT CONCAT(alias_domain, ' -> ', target_domain) FROM "
		  "alias_domain ORDER BY alias_domain",
		  "SELECT CONCAT(alias_domain, ' -> ', target_domain) FROM "
		  "alias_domain WHERE target_domain = ? ORDER BY alias_domain" },
	};
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;

	if (mailctl_sql_all(h, &res, err, q[what][domain != NULL], domain) < 0)
		return -1;
	while ((row = mysql_fetch_row(res)) != NULL)
		fprintf(out, "%s\n", row[0] != NULL ? row[0] : "");
	mysql_free_result(res);
	return 0;
}

static int mailctl_sql_commit(void *h, struct err *err)
{
	struct mailctl_sql *s = h;

	if (mysql_commit(s->db) != 0)
		return err_set(err, 1, "%s: commit: %s", s->path, mysql_error(s->db));
	return 0;
}

static void mailctl_sql_close(void *h)
{
	struct mailctl_sql *s = h;

	if (s == NULL)
		return;
	if (s->db != NULL)
		mysql_close(s->db);     /* without commit: rolled back */
	free(s->path);
	free(s->hosts);
	free(s->user);
	if (s->password != NULL)
		explicit_bzero(s->password, strlen(s->password));
	free(s->password);
	free(s->dbname);
	free(s);
	mysql_library_end();
}

void *mailctl_sql_open(const struct mailctl_conf *conf, struct err *err)
{
	struct mailctl_sql *s = calloc(1, sizeof(*s));
	const char *h;
	size_t len;

	if (s == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	s->path = mailctl_map_arg(conf->virtual_mailbox_maps, "mysql");
	if (s->path == NULL) {
		err_set(err, 0, "virtual_mailbox_maps names no mysql: table");
		goto fail;
	}
	if (cfg_read_pairs(s->path, mailctl_sql_pair, s, err) < 0)
		goto fail;
	for (h = s->hosts != NULL ? s->hosts : "localhost";
	     *h != '\0' && s->db == NULL; h += len) {
		len = strcspn(h, ", \t");
		if (len == 0)
			len = 1;
		else
			s->db = mailctl_sql_try(s, h, len, err);
	}
	if (s->db == NULL)
		goto fail;
	if (mysql_autocommit(s->db, 0) != 0) {
		err_set(err, 1, "%s: %s", s->path, mysql_error(s->db));
		goto fail;
	}
	return s;
fail:
	mailctl_sql_close(s);
	return NULL;
}

const struct mailctl_ops mailctl_sql_ops = {
	mailctl_sql_domain_exists, mailctl_sql_mailbox_exists,
	mailctl_sql_alias_get, mailctl_sql_aliasdomain_get,
	mailctl_sql_domain_usage, mailctl_sql_domain_add,
	mailctl_sql_domain_del, mailctl_sql_mailbox_add,
	mailctl_sql_mailbox_del, mailctl_sql_mailbox_passwd,
	mailctl_sql_alias_add, mailctl_sql_alias_del,
	mailctl_sql_aliasdomain_add, mailctl_sql_aliasdomain_del,
	mailctl_sql_list, mailctl_sql_commit, mailctl_sql_close,
};
