/* mra_userip: a chained hash of (user, address) -> logged-in sessions.
 * An entry lives while its count is above zero, so the table holds no
 * more than the sessions logged in now. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "mra_userip.h"

#define MRA_USERIP_BUCKETS 1024

struct mra_userip_ent {
	struct mra_userip_ent *next;
	unsigned count;
	char *user;
	char *addr;
};

struct mra_userip {
	unsigned max;
	struct mra_userip_ent *b[MRA_USERIP_BUCKETS];
};

struct mra_userip *mra_userip_new(unsigned max)
{
	struct mra_userip *u = calloc(1, sizeof(*u));

	if (u != NULL)
		u->max = max;
	return u;
}

void mra_userip_free(struct mra_userip *u)
{
	struct mra_userip_ent *e, *n;
	size_t i;

	if (u == NULL)
		return;
	for (i = 0; i < MRA_USERIP_BUCKETS; i++)
		for (e = u->b[i]; e != NULL; e = n) {
			n = e->next;
			free(e->user);
			free(e->addr);
			free(e);
		}
	free(u);
}

unsigned mra_userip_max(const struct mra_userip *u)
{
	return u->max;
}

static unsigned mra_userip_hash(const char *user, const char *addr)
{
	unsigned h = 5381;
	const char *p;

	for (p = user; *p != '\0'; p++)
		h = h * 33 + (unsigned)tolower((unsigned char)*p);
	h = h * 33;
	for (p = addr; *p != '\0'; p++)
		h = h * 33 + (unsigned char)*p;
	return h % MRA_USERIP_BUCKETS;
}

static struct mra_userip_ent **mra_userip_find(const struct mra_userip *u,
					       const char *user,
					       const char *addr)
{
	struct mra_userip_ent *const *pe = &u->b[mra_userip_hash(user, addr)];

	for (; *pe != NULL; pe = &(*pe)->next)
		if (strcasecmp((*pe)->user, user) == 0 &&
		    strcmp((*pe)->addr, addr) == 0)
			break;
	return (struct mra_userip_ent **)pe;
}

unsigned mra_userip_count(const struct mra_userip *u, const char *user,
			  const char *addr)
{
	struct mra_userip_ent **pe = mra_userip_find(u, user, addr);

	return *pe != NULL ? (*pe)->count : 0;
}

int mra_userip_acquire(struct mra_userip *u, const char *user,
		       const char *addr)
{
	struct mra_userip_ent **pe = mra_userip_find(u, user, addr), *e;

	if (*pe != NULL) {
		if (u->max > 0 && (*pe)->count >= u->max)
			return 1;
		(*pe)->count++;
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -1;
	e->user = strdup(user);
	e->addr = strdup(addr);
	if (e->user == NULL || e->addr == NULL) {
		free(e->user);
		free(e->addr);
		free(e);
		return -1;
	}
	e->count = 1;
	e->next = u->b[mra_userip_hash(user, addr)];
	u->b[mra_userip_hash(user, addr)] = e;
	return 0;
}

void mra_userip_release(struct mra_userip *u, const char *user,
			const char *addr)
{
	struct mra_userip_ent **pe = mra_userip_find(u, user, addr), *e = *pe;

	if (e == NULL)
		return;
	if (--e->count > 0)
		return;
	*pe = e->next;
	free(e->user);
	free(e->addr);
	free(e);
}
