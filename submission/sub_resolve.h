/* sub_resolve: where a recipient goes, as Postfix's virtual(5) alias
 * expansion and virtual(8) mailbox lookups decide: alias maps (several
 * targets, catch-all @domain, "@other" domain aliases, recursion and loop
 * limits, extension propagation), then the mailbox path, uid, gid and
 * quota of each local final address, or "remote". Blocking (map lookups):
 * worker pool only. The struct sub_resolve borrows its maps. */
#ifndef SUB_RESOLVE_H
#define SUB_RESOLVE_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"
#include "map.h"
#include "vlookup.h"

struct sub_resolve {
	struct map *alias_maps;          /* virtual_alias_maps */
	struct map *mailbox_maps;        /* virtual_mailbox_maps */
	struct map *uid_maps, *gid_maps; /* virtual_uid_maps / _gid_maps */
	struct map *limit_maps;          /* virtual_mailbox_limit_maps */
	struct map *domain_quota_maps;   /* virtual_domain_quota_maps */
	struct vlookup_domains *domains; /* virtual_mailbox_domains */
	const char *delims;              /* recipient_delimiter */
	const char *base;                /* virtual_mailbox_base */
	long minimum_uid;                /* virtual_minimum_uid */
	int recursion_limit;             /* virtual_alias_recursion_limit */
	int expansion_limit;             /* virtual_alias_expansion_limit */
};

struct sub_target {
	char *addr;          /* final address (lower-case domain) */
	int local;           /* 1: our mailbox; 0: remote (outbound queue) */
	/* local only: */
	char *path;          /* base + mailbox map value */
	int maildir;         /* value ended in '/' */
	uid_t uid;
	gid_t gid;
	long long quota;     /* bytes, 0 = unlimited */
	/* virtual_domain_quota_maps: the domain's mailboxes together, in
	 * bytes (0 = unlimited), and the folder holding them (the parent of
	 * path: Postfix Admin's "domain/user/" layout); NULL when 0. */
	long long domain_quota;
	char *domain_dir;
	/* Not NULL: this member of an alias cannot be delivered (unknown or
	 * inactive mailbox); the reason, enhanced code first ("5.1.1 ...").
	 * It is bounced alone, the other members get the message (as
	 * Postfix's virtual(8) bounces one recipient of an expansion). */
	char *fail;
};

struct sub_resolve_res {
	struct sub_target *v;
	size_t n;
};

enum sub_resolve_rc {
	SUB_RESOLVE_OK,
	SUB_RESOLVE_UNKNOWN,   /* 550 5.1.1 user unknown */
	SUB_RESOLVE_PERM,      /* 5xx: loop, limits, bad configuration value */
	SUB_RESOLVE_TEMP,      /* 4xx: a map failed */
};

/* Expand rcpt ("user+ext@domain") into res (appended; duplicates across
 * calls are skipped, so one message reaches a mailbox once). err gets the
 * reason on anything but OK, with the enhanced status code first
 * ("5.1.1 ...", "5.4.6 ...", "4.3.0 ..."). An alias some of whose
 * members have no mailbox is OK: those members come with t->fail set.
 * When no member of rcpt can be delivered, the answer is UNKNOWN (with
 * the first member's reason) and nothing is added to res. */
enum sub_resolve_rc sub_resolve_rcpt(const struct sub_resolve *r,
				     const char *rcpt,
				     struct sub_resolve_res *res,
				     struct err *err);

/* 1 when every map r consults, and its domain list, answers from memory
 * (map_in_memory): resolution never waits on a server. */
int sub_resolve_in_memory(const struct sub_resolve *r);

/* Is domain one of virtual_mailbox_domains? MAP_FOUND / NOTFOUND /
 * TEMPFAIL. */
enum map_rc sub_resolve_local_domain(const struct sub_resolve *r,
				     const char *domain, struct err *err);

/* Mailbox details of one final local address into t (t->addr is set by
 * the caller). SUB_RESOLVE_UNKNOWN when no mailbox. */
enum sub_resolve_rc sub_resolve_mailbox(const struct sub_resolve *r,
					struct sub_target *t,
					struct err *err);

void sub_resolve_res_clear(struct sub_resolve_res *res);

#endif
