/* mailctl: add, remove and list domains, mailboxes, aliases and alias
 * domains in the tables the daemons read: texthash files (rewritten
 * atomically) or Postfix Admin's MySQL tables, whichever submission.cf's
 * virtual_mailbox_maps names. Exit 0 done, 1 refused or failed, 2 usage. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "cfg.h"
#include "mailctl.h"
#include "pass.h"

#define MAILCTL_PW_MAX 1024
#define MAILCTL_QUOTA_MB 1024000LL   /* Postfix Admin's quota_multiplier */

static const char mailctl_usage_text[] =
"Usage: mailctl [-c DIR] OBJECT ACTION ARGS\n"
"       mailctl -h | --help\n"
"Manages domains, mailboxes and aliases where submission's maps keep them:\n"
"the Postfix Admin tables (mysql: maps) or texthash files.\n"
"  -c DIR  configuration folder (default /etc/mailpair): DIR/submission.cf\n"
"          names the maps (virtual_mailbox_maps, virtual_alias_maps, ...)\n"
"  -h, --help  this help\n"
"Objects and actions:\n"
"  domain add NAME [--description TEXT]\n"
"  domain del NAME\n"
"  domain list\n"
"  mailbox add ADDR (--password PW | --password-stdin) [--quota MB] [--name NAME]\n"
"  mailbox del ADDR\n"
"  mailbox list [DOMAIN]\n"
"  mailbox passwd ADDR (--password PW | --password-stdin)\n"
"  alias add ADDR|@DOMAIN GOTO[,GOTO...]\n"
"  alias del ADDR|@DOMAIN\n"
"  alias list [DOMAIN]\n"
"  aliasdomain add ALIAS TARGET\n"
"  aliasdomain del ALIAS\n"
"  aliasdomain list\n"
"Exit status: 0 done, 1 refused or failed, 2 usage. See mailctl(8).\n"
"--quota is in MB as Postfix Admin shows it (1 MB = 1024000 bytes, Postfix\n"
"Admin's quota_multiplier); 0 = no limit.\n";

struct mailctl_cmd {
	const char *object, *action;
	const char *pos[8];
	int npos;
	const char *password, *name, *description, *quota;
	int password_stdin;
	struct mailctl_conf conf;
	const struct mailctl_ops *ops;
	void *h;
};

static void mailctl_usage(const char *why)
{
	if (why != NULL)
		fprintf(stderr, "mailctl: %s\n", why);
	fputs(mailctl_usage_text, stderr);
	exit(2);
}

static int mailctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int mailctl_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("mailctl: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* ---- configuration ------------------------------------------------------ */

static int mailctl_conf_pair(void *arg, const char *name, const char *value,
                             const char *file, int line, struct err *err)
{
	struct mailctl_conf *c = arg;
	char **slot =
	    strcmp(name, "virtual_mailbox_domains") == 0 ? &c->virtual_mailbox_domains :
	    strcmp(name, "virtual_mailbox_base") == 0 ? &c->virtual_mailbox_base :
	    strcmp(name, "virtual_mailbox_maps") == 0 ? &c->virtual_mailbox_maps :
	    strcmp(name, "virtual_alias_maps") == 0 ? &c->virtual_alias_maps :
	    strcmp(name, "virtual_password_maps") == 0 ? &c->virtual_password_maps :
	    strcmp(name, "virtual_mailbox_limit_maps") == 0 ? &c->virtual_mailbox_limit_maps :
	    strcmp(name, "virtual_uid_maps") == 0 ? &c->virtual_uid_maps :
	    strcmp(name, "virtual_gid_maps") == 0 ? &c->virtual_gid_maps :
	    strcmp(name, "default_pass_scheme") == 0 ? &c->default_pass_scheme : NULL;

	if (slot == NULL)
		return 0;      /* the daemons' parameters: not ours to check */
	free(*slot);
	*slot = strdup(value);
	return *slot != NULL ? 0 : err_set(err, 1, "out of memory");
}

static void mailctl_conf_free(struct mailctl_conf *c)
{
	free(c->virtual_mailbox_domains);
	free(c->virtual_mailbox_base);
	free(c->virtual_mailbox_maps);
	free(c->virtual_alias_maps);
	free(c->virtual_password_maps);
	free(c->virtual_mailbox_limit_maps);
	free(c->virtual_uid_maps);
	free(c->virtual_gid_maps);
	free(c->default_pass_scheme);
}

/* ---- input checks ------------------------------------------------------- */

/* Lower-case a domain name after checking it as RFC 5321 §4.1.2 Domain
 * (via addr_parse_plain). out holds ADDR_DOMAIN_MAX + 1 bytes. */
static int mailctl_domain_norm(const char *in, char *out)
{
	char probe[ADDR_DOMAIN_MAX + 8];
	struct addr a;

	if (strlen(in) > ADDR_DOMAIN_MAX)
		return -1;
	snprintf(probe, sizeof(probe), "x@%s", in);
	if (addr_parse_plain(probe, strlen(probe), 0, &a) != ADDR_OK || a.literal ||
	    strchr(a.domain, '.') == NULL)
		return -1;
	snprintf(out, ADDR_DOMAIN_MAX + 1, "%s", a.domain);
	return 0;
}

/* A mailbox or alias address, lower-cased. The local part becomes a
 * folder name under virtual_mailbox_base, so besides RFC 5321 syntax it
 * must not hold '/', start with '.', or need quoting. catchall: "@domain"
 * is allowed (local_r empty). */
static int mailctl_addr_norm(const char *in, int catchall, char *addr_r,
                             char *local_r, char *domain_r)
{
	struct addr a;
	const char *p;

	if (catchall && in[0] == '@') {
		if (mailctl_domain_norm(in + 1, domain_r) < 0)
			return -1;
		local_r[0] = '\0';
		sprintf(addr_r, "@%s", domain_r);
		return 0;
	}
	if (addr_parse_plain(in, strlen(in), 0, &a) != ADDR_OK || a.literal ||
	    a.local[0] == '.' || strchr(a.domain, '.') == NULL)
		return -1;
	for (p = a.local; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-=?^_`{|}~.", *p) == NULL)
			return -1;
	for (p = a.local; *p != '\0'; p++)
		local_r[p - a.local] = (char)tolower((unsigned char)*p);
	local_r[p - a.local] = '\0';
	strcpy(domain_r, a.domain);
	sprintf(addr_r, "%s@%s", local_r, domain_r);
	return 0;
}

static int mailctl_check(int rc, struct err *err);

/* A target in one of our domains must lead somewhere: a mailbox, an alias,
 * or the domain's catch-all (through an alias domain to its target).
 * Targets elsewhere are the remote side's business. 0 or 1 (told). */
static int mailctl_goto_exists(struct mailctl_cmd *c, const struct addr *a,
                               struct err *err)
{
	char key[ADDR_TEXT_MAX], *t = NULL, *g = NULL;
	const char *dom = a->domain;
	int found;

	if (!mailctl_check(c->ops->domain_exists(c->h, dom, err), err))
		return 0;
	if (mailctl_check(c->ops->aliasdomain_get(c->h, dom, &t, err), err))
		dom = t;
	snprintf(key, sizeof(key), "%s@%s", a->local, dom);
	for (g = key; *g != '\0'; g++)
		*g = (char)tolower((unsigned char)*g);
	g = NULL;
	found = mailctl_check(c->ops->mailbox_exists(c->h, key, err), err) ||
	        mailctl_check(c->ops->alias_get(c->h, key, &g, err), err);
	free(g);
	g = NULL;
	snprintf(key, sizeof(key), "@%s", dom);
	found = found || mailctl_check(c->ops->alias_get(c->h, key, &g, err), err);
	free(g);
	free(t);
	if (!found)
		return mailctl_fail("alias target %s@%s leads nowhere: no such "
		                    "mailbox or alias", a->local, a->domain);
	return 0;
}

/* GOTO list: addresses separated by commas/white space, stored joined by
 * "," as Postfix Admin does. */
static int mailctl_gotos(struct mailctl_cmd *c, int from, char **out_r,
                         struct err *err)
{
	char one[ADDR_TEXT_MAX], *list = NULL, *tok, *save, *copy, *nl;
	struct addr a;
	int i;

	for (i = from; i < c->npos; i++) {
		if ((copy = strdup(c->pos[i])) == NULL)
			return -1;
		for (tok = strtok_r(copy, ", \t", &save); tok != NULL;
		     tok = strtok_r(NULL, ", \t", &save)) {
			if (addr_parse_plain(tok, strlen(tok), 0, &a) != ADDR_OK ||
			    addr_format(&a, one, sizeof(one)) < 0) {
				mailctl_fail("malformed target address \"%s\"", tok);
				free(copy);
				free(list);
				return -1;
			}
			if (mailctl_goto_exists(c, &a, err) != 0) {
				free(copy);
				free(list);
				return -1;
			}
			if (asprintf(&nl, "%s%s%s", list != NULL ? list : "",
			             list != NULL ? "," : "", one) < 0)
				nl = NULL;
			free(list);
			if ((list = nl) == NULL) {
				free(copy);
				return -1;
			}
		}
		free(copy);
	}
	if (list == NULL) {
		mailctl_fail("an alias needs at least one target address");
		return -1;
	}
	*out_r = list;
	return 0;
}

/* 0, or 1 (told the user) */
static int mailctl_read_password(struct mailctl_cmd *c, char *pw, size_t n)
{
	size_t len;

	if (c->password_stdin) {
		if (fgets(pw, (int)n, stdin) == NULL)
			return mailctl_fail("no password on standard input");
		pw[strcspn(pw, "\r\n")] = '\0';
	} else if (c->password != NULL) {
		snprintf(pw, n, "%s", c->password);
	} else {
		mailctl_usage("give --password PW or --password-stdin");
	}
	len = strlen(pw);
	if (len == 0)
		return mailctl_fail("empty password refused");
	return 0;
}

/* ---- Maildir -------------------------------------------------------------- */

/* "static:N" of virtual_uid_maps / virtual_gid_maps, or -1. */
static long mailctl_static_id(const char *spec)
{
	char *arg = mailctl_map_arg(spec, "static"), *e;
	long v = -1;

	if (arg != NULL) {
		errno = 0;
		v = strtol(arg, &e, 10);
		if (*e != '\0' || e == arg || v < 0 || errno != 0)
			v = -1;
	}
	free(arg);
	return v;
}

static int mailctl_mkdir(const char *path, long uid, long gid)
{
	if (mkdir(path, 0700) < 0) {
		if (errno == EEXIST)
			return 0;
		return mailctl_fail("mkdir %s: %s", path, strerror(errno));
	}
	if (uid >= 0 && chown(path, (uid_t)uid, (gid_t)gid) < 0)
		return mailctl_fail("chown %s: %s", path, strerror(errno));
	return 0;
}

/* base/domain/local/{cur,new,tmp}, owned by the virtual uid/gid when run
 * as root (the daemons deliver as that user). */
static int mailctl_maildir(struct mailctl_cmd *c, const char *maildir)
{
	static const char *const sub[] = { "", "cur", "new", "tmp" };
	const char *base = c->conf.virtual_mailbox_base;
	long uid = -1, gid = -1;
	char path[4096], *slash;
	size_t i;

	if (base == NULL || *base == '\0')
		return 0;
	if (geteuid() == 0) {
		uid = mailctl_static_id(c->conf.virtual_uid_maps);
		gid = mailctl_static_id(c->conf.virtual_gid_maps);
		if (uid < 0 || gid < 0)
			return mailctl_fail("as root, virtual_uid_maps and "
			                    "virtual_gid_maps must be static:NUMBER");
	}
	if (mkdir(base, 0755) < 0 && errno != EEXIST)
		return mailctl_fail("mkdir %s: %s", base, strerror(errno));
	snprintf(path, sizeof(path), "%s/%s", base, maildir);
	slash = strchr(path + strlen(base) + 1, '/');
	*slash = '\0';
	if (mailctl_mkdir(path, uid, gid) != 0)
		return 1;
	for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s%s", base, maildir, sub[i]);
		if (mailctl_mkdir(path, uid, gid) != 0)
			return 1;
	}
	return 0;
}

/* ---- commands ------------------------------------------------------------- */

/* Exits with 1 on a backend error. */
static int mailctl_check(int rc, struct err *err)
{
	if (rc < 0) {
		mailctl_fail("%s", err->msg);
		exit(1);
	}
	return rc;
}

static void mailctl_need(struct mailctl_cmd *c, int min, int max)
{
	if (c->npos < min || c->npos > max)
		mailctl_usage("wrong number of arguments");
}

static int mailctl_domain(struct mailctl_cmd *c, struct err *err)
{
	char d[ADDR_DOMAIN_MAX + 1], *t = NULL;
	long mb, al;

	if (strcmp(c->action, "list") == 0) {
		mailctl_need(c, 0, 0);
		return mailctl_check(c->ops->list(c->h, MAILCTL_DOMAINS, NULL,
		                                  stdout, err), err);
	}
	mailctl_need(c, 1, 1);
	if (mailctl_domain_norm(c->pos[0], d) < 0)
		return mailctl_fail("malformed domain name \"%s\"", c->pos[0]);
	if (strcmp(c->action, "add") == 0) {
		if (mailctl_check(c->ops->domain_exists(c->h, d, err), err))
			return mailctl_fail("domain %s already exists", d);
		return mailctl_check(c->ops->domain_add(c->h, d, c->description, err), err);
	}
	if (strcmp(c->action, "del") != 0)
		mailctl_usage("domain: unknown action");
	if (!mailctl_check(c->ops->domain_exists(c->h, d, err), err))
		return mailctl_fail("no such domain: %s", d);
	if (mailctl_check(c->ops->aliasdomain_get(c->h, d, &t, err), err)) {
		free(t);
		return mailctl_fail("%s is an alias domain: use aliasdomain del", d);
	}
	mailctl_check(c->ops->domain_usage(c->h, d, &mb, &al, err), err);
	if (mb > 0 || al > 0)
		return mailctl_fail("domain %s still has %ld mailboxes and %ld "
		                    "aliases: delete them first", d, mb, al);
	return mailctl_check(c->ops->domain_del(c->h, d, err), err);
}

/* The domain of a new mailbox or alias must be ours and not an alias
 * domain (its addresses follow the target domain's). 0 or 1 (told). */
static int mailctl_own_domain(struct mailctl_cmd *c, const char *d,
                              struct err *err)
{
	char *t = NULL;

	if (!mailctl_check(c->ops->domain_exists(c->h, d, err), err))
		return mailctl_fail("unknown domain %s (add it with: mailctl "
		                    "domain add %s)", d, d);
	if (mailctl_check(c->ops->aliasdomain_get(c->h, d, &t, err), err)) {
		mailctl_fail("%s is an alias domain of %s: add addresses to %s",
		             d, t, t);
		free(t);
		return 1;
	}
	return 0;
}

static int mailctl_mailbox_add(struct mailctl_cmd *c, const char *addr,
                               const char *local, const char *d,
                               struct err *err)
{
	char pw[MAILCTL_PW_MAX], maildir[600], *hash, *e, *g = NULL;
	struct mailctl_mailbox mb;
	long long quota = 0;
	int rc;

	if (mailctl_own_domain(c, d, err) != 0)
		return 1;
	if (mailctl_check(c->ops->mailbox_exists(c->h, addr, err), err))
		return mailctl_fail("mailbox %s already exists", addr);
	if (mailctl_check(c->ops->alias_get(c->h, addr, &g, err), err)) {
		free(g);
		return mailctl_fail("%s is already an alias", addr);
	}
	if (c->quota != NULL) {
		/* MB as Postfix Admin shows and takes it: mailbox.quota holds
		 * bytes, MB times its quota_multiplier (1024000 by default) */
		errno = 0;
		quota = strtoll(c->quota, &e, 10);
		if (!isdigit((unsigned char)*c->quota) || *e != '\0' || errno != 0 ||
		    quota > LLONG_MAX / MAILCTL_QUOTA_MB)
			return mailctl_fail("bad --quota \"%s\": megabytes expected "
			                    "(as Postfix Admin shows them)", c->quota);
		quota *= MAILCTL_QUOTA_MB;
	}
	if (mailctl_read_password(c, pw, sizeof(pw)) != 0)
		return 1;
	hash = pass_hash(c->conf.default_pass_scheme != NULL ?
	                 c->conf.default_pass_scheme : "SHA512-CRYPT", pw, err);
	explicit_bzero(pw, sizeof(pw));
	if (hash == NULL)
		return mailctl_fail("%s", err->msg);
	snprintf(maildir, sizeof(maildir), "%s/%s/", d, local);
	mb.addr = addr;
	mb.local = local;
	mb.domain = d;
	mb.maildir = maildir;
	mb.hash = hash;
	mb.name = c->name;
	mb.quota = quota;
	rc = mailctl_maildir(c, maildir);
	if (rc == 0)
		rc = mailctl_check(c->ops->mailbox_add(c->h, &mb, err), err);
	free(hash);
	return rc;
}

static int mailctl_mailbox(struct mailctl_cmd *c, struct err *err)
{
	char addr[ADDR_TEXT_MAX], local[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];
	char pw[MAILCTL_PW_MAX], *hash;

	if (strcmp(c->action, "list") == 0) {
		mailctl_need(c, 0, 1);
		if (c->npos == 1 && mailctl_domain_norm(c->pos[0], d) < 0)
			return mailctl_fail("malformed domain name \"%s\"", c->pos[0]);
		return mailctl_check(c->ops->list(c->h, MAILCTL_MAILBOXES,
		                     c->npos == 1 ? d : NULL, stdout, err), err);
	}
	mailctl_need(c, 1, 1);
	if (mailctl_addr_norm(c->pos[0], 0, addr, local, d) < 0)
		return mailctl_fail("malformed address \"%s\"", c->pos[0]);
	if (strcmp(c->action, "add") == 0)
		return mailctl_mailbox_add(c, addr, local, d, err);
	if (strcmp(c->action, "del") != 0 && strcmp(c->action, "passwd") != 0)
		mailctl_usage("mailbox: unknown action");
	if (!mailctl_check(c->ops->mailbox_exists(c->h, addr, err), err))
		return mailctl_fail("no such mailbox: %s", addr);
	if (strcmp(c->action, "del") == 0)
		return mailctl_check(c->ops->mailbox_del(c->h, addr, err), err);
	if (mailctl_read_password(c, pw, sizeof(pw)) != 0)
		return 1;
	hash = pass_hash(c->conf.default_pass_scheme != NULL ?
	                 c->conf.default_pass_scheme : "SHA512-CRYPT", pw, err);
	explicit_bzero(pw, sizeof(pw));
	if (hash == NULL)
		return mailctl_fail("%s", err->msg);
	mailctl_check(c->ops->mailbox_passwd(c->h, addr, hash, err), err);
	free(hash);
	return 0;
}

static int mailctl_alias(struct mailctl_cmd *c, struct err *err)
{
	char addr[ADDR_TEXT_MAX], local[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];
	char *g = NULL;
	int rc;

	if (strcmp(c->action, "list") == 0) {
		mailctl_need(c, 0, 1);
		if (c->npos == 1 && mailctl_domain_norm(c->pos[0], d) < 0)
			return mailctl_fail("malformed domain name \"%s\"", c->pos[0]);
		return mailctl_check(c->ops->list(c->h, MAILCTL_ALIASES,
		                     c->npos == 1 ? d : NULL, stdout, err), err);
	}
	if (strcmp(c->action, "add") == 0)
		mailctl_need(c, 1, 8);
	else if (strcmp(c->action, "del") == 0)
		mailctl_need(c, 1, 1);
	else
		mailctl_usage("alias: unknown action");
	if (mailctl_addr_norm(c->pos[0], 1, addr, local, d) < 0)
		return mailctl_fail("malformed address \"%s\"", c->pos[0]);
	if (mailctl_check(c->ops->mailbox_exists(c->h, addr, err), err))
		return mailctl_fail("%s is a mailbox", addr);
	rc = mailctl_check(c->ops->alias_get(c->h, addr, &g, err), err);
	free(g);
	if (strcmp(c->action, "del") == 0)
		return rc ? mailctl_check(c->ops->alias_del(c->h, addr, err), err)
		          : mailctl_fail("no such alias: %s", addr);
	if (rc)
		return mailctl_fail("alias %s already exists", addr);
	if (mailctl_own_domain(c, d, err) != 0 || mailctl_gotos(c, 1, &g, err) < 0)
		return 1;
	rc = mailctl_check(c->ops->alias_add(c->h, addr, d, g, err), err);
	free(g);
	return rc;
}

static int mailctl_aliasdomain_add(struct mailctl_cmd *c, const char *a,
                                   const char *t, struct err *err)
{
	char *x = NULL;
	long mb, al;

	if (strcmp(a, t) == 0)
		return mailctl_fail("a domain cannot be an alias of itself");
	if (mailctl_own_domain(c, t, err) != 0)
		return 1;
	if (mailctl_check(c->ops->aliasdomain_get(c->h, a, &x, err), err)) {
		mailctl_fail("%s is already an alias domain of %s", a, x);
		free(x);
		return 1;
	}
	if (mailctl_check(c->ops->domain_exists(c->h, a, err), err)) {
		mailctl_check(c->ops->domain_usage(c->h, a, &mb, &al, err), err);
		if (mb > 0 || al > 0)
			return mailctl_fail("domain %s has mailboxes or aliases of "
			                    "its own", a);
	} else {
		/* The alias domain is one we receive mail for: it goes into the
		 * domain table too (Postfix Admin keeps it there as well). */
		char desc[300];

		snprintf(desc, sizeof(desc), "alias of %s", t);
		mailctl_check(c->ops->domain_add(c->h, a, desc, err), err);
	}
	return mailctl_check(c->ops->aliasdomain_add(c->h, a, t, err), err);
}

static int mailctl_aliasdomain(struct mailctl_cmd *c, struct err *err)
{
	char a[ADDR_DOMAIN_MAX + 1], t[ADDR_DOMAIN_MAX + 1], *x = NULL;
	long mb, al;

	if (strcmp(c->action, "list") == 0) {
		mailctl_need(c, 0, 0);
		return mailctl_check(c->ops->list(c->h, MAILCTL_ALIASDOMAINS, NULL,
		                                  stdout, err), err);
	}
	mailctl_need(c, strcmp(c->action, "add") == 0 ? 2 : 1,
	             strcmp(c->action, "add") == 0 ? 2 : 1);
	if (mailctl_domain_norm(c->pos[0], a) < 0)
		return mailctl_fail("malformed domain name \"%s\"", c->pos[0]);
	if (strcmp(c->action, "add") == 0) {
		if (mailctl_domain_norm(c->pos[1], t) < 0)
			return mailctl_fail("malformed domain name \"%s\"", c->pos[1]);
		return mailctl_aliasdomain_add(c, a, t, err);
	}
	if (strcmp(c->action, "del") != 0)
		mailctl_usage("aliasdomain: unknown action");
	if (!mailctl_check(c->ops->aliasdomain_get(c->h, a, &x, err), err))
		return mailctl_fail("no such alias domain: %s", a);
	free(x);
	mailctl_check(c->ops->aliasdomain_del(c->h, a, err), err);
	mailctl_check(c->ops->domain_usage(c->h, a, &mb, &al, err), err);
	if (mb == 0 && al == 0)
		mailctl_check(c->ops->domain_del(c->h, a, err), err);
	return 0;
}

/* ---- main ----------------------------------------------------------------- */

static void mailctl_args(struct mailctl_cmd *c, int argc, char **argv)
{
	int i;

	if (argc < 2)
		mailctl_usage(NULL);
	c->object = argv[0];
	c->action = argv[1];
	for (i = 2; i < argc; i++) {
		const char **slot = strcmp(argv[i], "--password") == 0 ? &c->password :
		                    strcmp(argv[i], "--name") == 0 ? &c->name :
		                    strcmp(argv[i], "--quota") == 0 ? &c->quota :
		                    strcmp(argv[i], "--description") == 0 ? &c->description :
		                    NULL;

		if (strcmp(argv[i], "--password-stdin") == 0)
			c->password_stdin = 1;
		else if (slot != NULL && i + 1 < argc)
			*slot = argv[++i];
		else if (slot != NULL || strncmp(argv[i], "--", 2) == 0)
			mailctl_usage("bad option");
		else if (c->npos < (int)(sizeof(c->pos) / sizeof(c->pos[0])))
			c->pos[c->npos++] = argv[i];
		else
			mailctl_usage("too many arguments");
	}
	if (c->password != NULL && c->password_stdin)
		mailctl_usage("--password and --password-stdin exclude each other");
}

int main(int argc, char **argv)
{
	const char *dir = "/etc/mailpair";
	struct mailctl_cmd c;
	struct err err;
	char path[4096];
	int opt, rc;

	memset(&c, 0, sizeof(c));
	err_clear(&err);
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	while ((opt = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		if (opt == 'c')
			dir = optarg;
		else if (opt == 'h') {
			fputs(mailctl_usage_text, stdout);
			return 0;
		} else
			mailctl_usage(NULL);
	}
	mailctl_args(&c, argc - optind, argv + optind);
	snprintf(path, sizeof(path), "%s/submission.cf", dir);
	if (cfg_read_pairs(path, mailctl_conf_pair, &c.conf, &err) < 0)
		return mailctl_fail("%s", err.msg);
	if (c.conf.default_pass_scheme != NULL &&
	    !pass_scheme_known(c.conf.default_pass_scheme))
		return mailctl_fail("%s: default_pass_scheme: unknown scheme \"%s\"",
		                    path, c.conf.default_pass_scheme);
	if (strcmp(c.object, "domain") != 0 && strcmp(c.object, "mailbox") != 0 &&
	    strcmp(c.object, "alias") != 0 && strcmp(c.object, "aliasdomain") != 0)
		mailctl_usage("unknown object");
	c.ops = strstr(c.conf.virtual_mailbox_maps != NULL ?
	               c.conf.virtual_mailbox_maps : "", "mysql:") != NULL ?
	        &mailctl_sql_ops : &mailctl_text_ops;
	c.h = c.ops == &mailctl_sql_ops ? mailctl_sql_open(&c.conf, &err)
	                                : mailctl_text_open(&c.conf, &err);
	if (c.h == NULL)
		return mailctl_fail("%s", err.msg);
	rc = strcmp(c.object, "domain") == 0 ? mailctl_domain(&c, &err) :
	     strcmp(c.object, "mailbox") == 0 ? mailctl_mailbox(&c, &err) :
	     strcmp(c.object, "alias") == 0 ? mailctl_alias(&c, &err) :
	     mailctl_aliasdomain(&c, &err);
	if (rc == 0 && c.ops->commit(c.h, &err) < 0)
		rc = mailctl_fail("%s", err.msg);
	c.ops->close(c.h);
	mailctl_conf_free(&c.conf);
	return rc;
}
