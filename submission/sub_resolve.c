/* sub_resolve: virtual alias expansion and mailbox lookup for the MDA.
 * Runs on worker threads; everything it keeps lives in the caller's
 * struct sub_resolve_res. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "sub_resolve.h"

#define SUB_RESOLVE_ADDR_MAX 1024

struct sub_resolve_walk {
	const struct sub_resolve *r;
	struct sub_resolve_res *res;
	const char *stack[128];   /* ancestors, for loop detection */
	int depth;
	int expansions;
};

static void sub_resolve_target_free(struct sub_target *t)
{
	free(t->addr);
	free(t->path);
	free(t->domain_dir);
	free(t->fail);
}

void sub_resolve_res_clear(struct sub_resolve_res *res)
{
	if (res == NULL)
		return;
	for (size_t i = 0; i < res->n; i++)
		sub_resolve_target_free(&res->v[i]);
	free(res->v);
	res->v = NULL;
	res->n = 0;
}

static const char *sub_resolve_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

enum map_rc sub_resolve_local_domain(const struct sub_resolve *r,
				     const char *domain, struct err *err)
{
	if (r->domains == NULL || domain == NULL || *domain == '\0')
		return MAP_NOTFOUND;
	return vlookup_domains_match(r->domains, domain, err);
}

static int sub_resolve_seen(const struct sub_resolve_res *res,
			    const char *addr)
{
	for (size_t i = 0; i < res->n; i++)
		if (strcasecmp(res->v[i].addr, addr) == 0)
			return 1;
	return 0;
}

/* A map value as a number within [lo, hi]. */
static int sub_resolve_num(const char *v, long lo, long hi, long *out)
{
	long n;

	if (cfg_parse_int(v, &n) < 0 || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

/* Look addr up in m (virtual(5) mailbox order); NOTFOUND -> *v_r NULL. */
static enum sub_resolve_rc sub_resolve_get(const struct sub_resolve *r,
					   struct map *m, const char *addr,
					   char **v_r, struct err *err)
{
	*v_r = NULL;
	if (m == NULL)
		return SUB_RESOLVE_OK;
	if (vlookup_addr(m, addr, r->delims, VLOOKUP_MAILBOX, v_r, NULL,
			 err) == MAP_TEMPFAIL) {
		struct err e = *err;

		err_set(err, 1, "4.3.0 lookup of <%s> failed: %s", addr,
			e.msg);
		return SUB_RESOLVE_TEMP;
	}
	return SUB_RESOLVE_OK;
}

static int sub_resolve_path_ok(const char *v)
{
	if (*v == '\0' || strstr(v, "..") != NULL)
		return 0;
	for (; *v != '\0'; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return 0;
	return 1;
}

static enum sub_resolve_rc sub_resolve_ids(const struct sub_resolve *r,
					   struct sub_target *t,
					   struct err *err)
{
	char *v = NULL;
	long n;

	if (sub_resolve_get(r, r->uid_maps, t->addr, &v, err) != 0)
		return SUB_RESOLVE_TEMP;
	/* virtual(8): a uid below virtual_minimum_uid is a configuration
	 * error; defer rather than write as a system account. */
	if (v == NULL || sub_resolve_num(v, r->minimum_uid, INT_MAX, &n) < 0) {
		free(v);
		err_set(err, 1, "4.3.5 bad or missing virtual uid for <%s>",
			t->addr);
		return SUB_RESOLVE_TEMP;
	}
	free(v);
	t->uid = (uid_t)n;
	if (sub_resolve_get(r, r->gid_maps, t->addr, &v, err) != 0)
		return SUB_RESOLVE_TEMP;
	if (v == NULL || sub_resolve_num(v, 1, INT_MAX, &n) < 0) {
		free(v);
		err_set(err, 1, "4.3.5 bad or missing virtual gid for <%s>",
			t->addr);
		return SUB_RESOLVE_TEMP;
	}
	free(v);
	t->gid = (gid_t)n;
	return SUB_RESOLVE_OK;
}

/* virtual_domain_quota_maps, keyed by the address's domain. The domain's
 * mailboxes are the Maildirs beside this one (Postfix Admin's
 * "domain/user/" layout under virtual_mailbox_base). */
static enum sub_resolve_rc sub_resolve_domain_quota(const struct sub_resolve *r,
						    struct sub_target *t,
						    struct err *err)
{
	char *v = NULL, *slash;
	enum map_rc mrc;
	long q;
	size_t n;

	t->domain_quota = 0;
	if (r->domain_quota_maps == NULL)
		return SUB_RESOLVE_OK;
	mrc = map_lookup(r->domain_quota_maps, sub_resolve_domain(t->addr), &v,
			 err);
	if (mrc == MAP_TEMPFAIL) {
		struct err e = *err;

		err_set(err, 1, "4.3.0 domain quota lookup for <%s> failed: %s",
			t->addr, e.msg);
		return SUB_RESOLVE_TEMP;
	}
	if (v == NULL || sub_resolve_num(v, 0, LONG_MAX, &q) < 0 || q == 0) {
		free(v);
		return SUB_RESOLVE_OK;
	}
	free(v);
	t->domain_dir = strdup(t->path);
	if (t->domain_dir == NULL) {
		err_set(err, 1, "4.3.0 out of memory");
		return SUB_RESOLVE_TEMP;
	}
	n = strlen(t->domain_dir);
	while (n > 1 && t->domain_dir[n - 1] == '/')
		t->domain_dir[--n] = '\0';
	slash = strrchr(t->domain_dir, '/');
	if (slash == NULL || slash == t->domain_dir) {
		err_set(err, 1, "4.3.5 no domain folder above the mailbox of "
			"<%s> for its domain quota", t->addr);
		return SUB_RESOLVE_TEMP;
	}
	*slash = '\0';
	t->domain_quota = q;
	return SUB_RESOLVE_OK;
}

enum sub_resolve_rc sub_resolve_mailbox(const struct sub_resolve *r,
					struct sub_target *t,
					struct err *err)
{
	char *v = NULL;
	long q;
	size_t bl, vl;

	if (sub_resolve_get(r, r->mailbox_maps, t->addr, &v, err) != 0)
		return SUB_RESOLVE_TEMP;
	if (v == NULL) {
		err_set(err, 0, "5.1.1 <%s>: Recipient address rejected: "
			"User unknown in virtual mailbox table", t->addr);
		return SUB_RESOLVE_UNKNOWN;
	}
	if (!sub_resolve_path_ok(v)) {
		free(v);
		err_set(err, 1, "4.3.5 bad mailbox path for <%s>", t->addr);
		return SUB_RESOLVE_TEMP;
	}
	bl = strlen(r->base ? r->base : "");
	vl = strlen(v);
	t->maildir = v[vl - 1] == '/';
	t->path = malloc(bl + vl + 2);
	if (t->path == NULL) {
		free(v);
		err_set(err, 1, "4.3.0 out of memory");
		return SUB_RESOLVE_TEMP;
	}
	snprintf(t->path, bl + vl + 2, "%s%s%s", bl ? r->base : "",
		 bl && r->base[bl - 1] != '/' && v[0] != '/' ? "/" : "", v);
	free(v);
	if (sub_resolve_ids(r, t, err) != SUB_RESOLVE_OK)
		return SUB_RESOLVE_TEMP;
	if (sub_resolve_get(r, r->limit_maps, t->addr, &v, err) != 0)
		return SUB_RESOLVE_TEMP;
	t->quota = 0;
	if (v != NULL && sub_resolve_num(v, 0, LONG_MAX, &q) == 0)
		t->quota = q;
	free(v);
	return sub_resolve_domain_quota(r, t, err);
}

static enum sub_resolve_rc sub_resolve_final(struct sub_resolve_walk *w,
					     const char *addr,
					     struct err *err)
{
	struct sub_target t = { 0 };
	enum map_rc dom;
	enum sub_resolve_rc rc;
	struct sub_target *nv;

	if (sub_resolve_seen(w->res, addr))
		return SUB_RESOLVE_OK;
	t.addr = strdup(addr);
	if (t.addr == NULL) {
		err_set(err, 1, "4.3.0 out of memory");
		return SUB_RESOLVE_TEMP;
	}
	dom = sub_resolve_local_domain(w->r, sub_resolve_domain(addr), err);
	if (dom == MAP_TEMPFAIL) {
		free(t.addr);
		err_set(err, 1, "4.3.0 domain lookup failed");
		return SUB_RESOLVE_TEMP;
	}
	if (dom == MAP_FOUND) {
		t.local = 1;
		rc = sub_resolve_mailbox(w->r, &t, err);
		if (rc == SUB_RESOLVE_UNKNOWN && w->depth > 0) {
			/* A member of an alias: bounce it alone. */
			free(t.path);
			free(t.domain_dir);
			t.path = t.domain_dir = NULL;
			t.fail = strdup(err->msg);
			rc = t.fail != NULL ? SUB_RESOLVE_OK : SUB_RESOLVE_TEMP;
			if (rc != SUB_RESOLVE_OK)
				err_set(err, 1, "4.3.0 out of memory");
		}
		if (rc != SUB_RESOLVE_OK) {
			sub_resolve_target_free(&t);
			return rc;
		}
	}
	nv = realloc(w->res->v, (w->res->n + 1) * sizeof(*nv));
	if (nv == NULL) {
		sub_resolve_target_free(&t);
		err_set(err, 1, "4.3.0 out of memory");
		return SUB_RESOLVE_TEMP;
	}
	w->res->v = nv;
	nv[w->res->n++] = t;
	return SUB_RESOLVE_OK;
}

/* One alias result item made concrete: "@other" keeps the local part
 * (virtual(5) ADDRESS REWRITING), and an extension the lookup dropped is
 * put back (Postfix propagate_unmatched_extensions). */
static int sub_resolve_target(const char *addr, const char *item, int step,
			      const char *delims, char *out, size_t n)
{
	const char *at = strrchr(addr, '@');
	size_t ll = at ? (size_t)(at - addr) : strlen(addr);
	const char *ext = NULL;
	size_t ul = ll;

	if (delims != NULL && *delims != '\0') {
		for (size_t i = 1; i < ll; i++) {
			if (strchr(delims, addr[i]) != NULL) {
				ext = addr + i;  /* includes the delimiter */
				ul = i;
				break;
			}
		}
	}
	if (item[0] == '@') {
		if ((size_t)snprintf(out, n, "%.*s%s", (int)ll, addr, item) >= n)
			return -1;
		return 0;
	}
	if (step == VLOOKUP_NOEXT && ext != NULL && strchr(item, '@') != NULL) {
		const char *iat = strrchr(item, '@');

		if ((size_t)snprintf(out, n, "%.*s%.*s%s", (int)(iat - item),
				     item, (int)(ll - ul), ext, iat) >= n)
			return -1;
		return 0;
	}
	if ((size_t)snprintf(out, n, "%s", item) >= n)
		return -1;
	return 0;
}

static enum sub_resolve_rc sub_resolve_walk(struct sub_resolve_walk *w,
					    const char *addr,
					    struct err *err);

static enum sub_resolve_rc sub_resolve_expand(struct sub_resolve_walk *w,
					      const char *addr,
					      const char *value, int step,
					      struct err *err)
{
	char **items = cfg_list_split(value);
	char next[SUB_RESOLVE_ADDR_MAX];
	enum sub_resolve_rc rc = SUB_RESOLVE_OK;

	if (items == NULL) {
		err_set(err, 1, "4.3.0 out of memory");
		return SUB_RESOLVE_TEMP;
	}
	for (size_t i = 0; items[i] != NULL && rc == SUB_RESOLVE_OK; i++) {
		if (++w->expansions > w->r->expansion_limit) {
			err_set(err, 0, "5.4.6 <%s>: alias expansion limit "
				"exceeded", addr);
			rc = SUB_RESOLVE_PERM;
		} else if (sub_resolve_target(addr, items[i], step,
					      w->r->delims, next,
					      sizeof(next)) < 0) {
			err_set(err, 0, "5.1.3 <%s>: alias target too long",
				addr);
			rc = SUB_RESOLVE_PERM;
		} else if (strcasecmp(next, addr) == 0) {
			/* An address that aliases to itself is final
			 * (Postfix Admin keeps such rows for every mailbox). */
			rc = sub_resolve_final(w, next, err);
		} else {
			rc = sub_resolve_walk(w, next, err);
		}
	}
	cfg_list_free(items);
	return rc;
}

static enum sub_resolve_rc sub_resolve_walk(struct sub_resolve_walk *w,
					    const char *addr,
					    struct err *err)
{
	char *value = NULL;
	int step = 0;
	enum map_rc mrc;
	enum sub_resolve_rc rc;

	for (int i = 0; i < w->depth; i++) {
		if (strcasecmp(w->stack[i], addr) == 0) {
			err_set(err, 0, "5.4.6 <%s>: mail forwarding loop",
				addr);
			return SUB_RESOLVE_PERM;
		}
	}
	if (w->depth >= w->r->recursion_limit ||
	    w->depth >= (int)(sizeof(w->stack) / sizeof(w->stack[0]))) {
		err_set(err, 0, "5.4.6 <%s>: alias recursion limit exceeded",
			addr);
		return SUB_RESOLVE_PERM;
	}
	mrc = w->r->alias_maps == NULL ? MAP_NOTFOUND :
	      vlookup_addr(w->r->alias_maps, addr, w->r->delims,
			   VLOOKUP_ALIAS, &value, &step, err);
	if (mrc == MAP_TEMPFAIL) {
		struct err e = *err;

		err_set(err, 1, "4.3.0 alias lookup of <%s> failed: %s", addr,
			e.msg);
		return SUB_RESOLVE_TEMP;
	}
	if (mrc == MAP_NOTFOUND)
		return sub_resolve_final(w, addr, err);
	w->stack[w->depth++] = addr;
	rc = sub_resolve_expand(w, addr, value, step, err);
	w->depth--;
	free(value);
	return rc;
}

enum sub_resolve_rc sub_resolve_rcpt(const struct sub_resolve *r,
				     const char *rcpt,
				     struct sub_resolve_res *res,
				     struct err *err)
{
	struct sub_resolve_walk w = { .r = r, .res = res };
	size_t first = res->n, i;
	enum sub_resolve_rc rc;

	err_clear(err);
	if (strlen(rcpt) >= SUB_RESOLVE_ADDR_MAX) {
		err_set(err, 0, "5.1.3 <%s>: address too long", rcpt);
		return SUB_RESOLVE_PERM;
	}
	rc = sub_resolve_walk(&w, rcpt, err);
	if (rc != SUB_RESOLVE_OK || res->n == first)
		return rc;
	for (i = first; i < res->n; i++)
		if (res->v[i].fail == NULL)
			return SUB_RESOLVE_OK;
	/* Not one member has a mailbox: refuse the recipient itself, as
	 * for an unknown address (no bounce to make later). */
	err_set(err, 0, "%s", res->v[first].fail);
	for (i = first; i < res->n; i++)
		sub_resolve_target_free(&res->v[i]);
	res->n = first;
	return SUB_RESOLVE_UNKNOWN;
}

int sub_resolve_in_memory(const struct sub_resolve *r)
{
	const struct map *maps[] = { r->alias_maps, r->mailbox_maps,
				     r->uid_maps, r->gid_maps, r->limit_maps,
				     r->domain_quota_maps };

	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		if (!map_in_memory(maps[i]))
			return 0;
	return vlookup_domains_in_memory(r->domains);
}
