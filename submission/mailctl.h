/* mailctl: the admin tool's storage backends. cmd_mailctl.c parses the
 * command line, validates, and calls one backend: mailctl_text.c (texthash
 * files, rewritten atomically) or mailctl_sql.c (Postfix Admin tables).
 * Every change happens between open and commit; close without commit
 * discards it. */
#ifndef MAILCTL_H
#define MAILCTL_H

#include <stdio.h>
#include "err.h"

/* The submission.cf parameters mailctl reads (raw, unexpanded). */
struct mailctl_conf {
	char *virtual_mailbox_domains, *virtual_mailbox_base;
	char *virtual_mailbox_maps, *virtual_alias_maps, *virtual_password_maps;
	char *virtual_mailbox_limit_maps, *virtual_uid_maps, *virtual_gid_maps;
	char *default_pass_scheme;
};

struct mailctl_mailbox {
	const char *addr, *local, *domain;
	const char *maildir;          /* "domain/local/" */
	const char *hash;             /* "{SCHEME}..." */
	const char *name;
	long long quota;              /* bytes, 0 = none */
};

enum mailctl_list { MAILCTL_DOMAINS, MAILCTL_MAILBOXES, MAILCTL_ALIASES,
                    MAILCTL_ALIASDOMAINS };

struct mailctl_ops {
	/* 1 yes, 0 no, -1 error */
	int (*domain_exists)(void *h, const char *domain, struct err *err);
	int (*mailbox_exists)(void *h, const char *addr, struct err *err);
	/* *goto_r malloc'd when 1 */
	int (*alias_get)(void *h, const char *addr, char **goto_r, struct err *err);
	int (*aliasdomain_get)(void *h, const char *alias, char **target_r,
	                       struct err *err);
	/* mailboxes and aliases (other than mailboxes' own) in domain */
	int (*domain_usage)(void *h, const char *domain, long *mailboxes_r,
	                    long *aliases_r, struct err *err);
	int (*domain_add)(void *h, const char *domain, const char *desc,
	                  struct err *err);
	int (*domain_del)(void *h, const char *domain, struct err *err);
	int (*mailbox_add)(void *h, const struct mailctl_mailbox *mb,
	                   struct err *err);
	int (*mailbox_del)(void *h, const char *addr, struct err *err);
	int (*mailbox_passwd)(void *h, const char *addr, const char *hash,
	                      struct err *err);
	int (*alias_add)(void *h, const char *addr, const char *domain,
	                 const char *gotos, struct err *err);
	int (*alias_del)(void *h, const char *addr, struct err *err);
	int (*aliasdomain_add)(void *h, const char *alias, const char *target,
	                       struct err *err);
	int (*aliasdomain_del)(void *h, const char *alias, struct err *err);
	/* one line per item, sorted; domain NULL = all */
	int (*list)(void *h, enum mailctl_list what, const char *domain,
	            FILE *out, struct err *err);
	int (*commit)(void *h, struct err *err);
	void (*close)(void *h);
};

extern const struct mailctl_ops mailctl_text_ops;
extern const struct mailctl_ops mailctl_sql_ops;

/* NULL and err filled on failure. */
void *mailctl_text_open(const struct mailctl_conf *conf, struct err *err);
void *mailctl_sql_open(const struct mailctl_conf *conf, struct err *err);

/* The path after "type:" of the first "type:..." entry in a map list,
 * malloc'd, or NULL. */
char *mailctl_map_arg(const char *spec, const char *type);

#endif
