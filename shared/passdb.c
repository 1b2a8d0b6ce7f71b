/* passdb: user + password -> OK / FAIL / TEMPFAIL, over
 * virtual_password_maps and pass.h. The map returns Dovecot-style
 * "{SCHEME}hash" (Postfix Admin mailbox.password). Unknown users are
 * verified against a dummy hash so the answer takes the same time. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "pass.h"
#include "passdb.h"

#define PASSDB_USER_MAX 512

struct passdb {
	struct map *map;
	char *scheme;
	char *dummy;      /* {scheme}hash of a password nobody types */
};

struct passdb *passdb_new(const char *password_maps, const char *default_scheme,
                          struct err *err)
{
	struct passdb *p;

	if (default_scheme == NULL || *default_scheme == '\0')
		default_scheme = "SHA512-CRYPT";
	if (!pass_scheme_known(default_scheme)) {
		err_set(err, 0, "default_pass_scheme: unknown scheme \"%s\"",
		        default_scheme);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL || (p->scheme = strdup(default_scheme)) == NULL) {
		free(p);
		err_set(err, 1, "passdb: out of memory");
		return NULL;
	}
	p->map = map_open(password_maps, err);
	if (p->map != NULL)
		p->dummy = pass_hash(p->scheme, "passdb dummy: no such user", err);
	if (p->map == NULL || p->dummy == NULL) {
		passdb_free(p);
		return NULL;
	}
	return p;
}

/* The lookup key: user as given with the domain folded to lower case
 * (RFC 5321 §2.4: domains are case-insensitive, local parts are not, but
 * texthash and mysql maps fold the whole key anyway). NULL for a name that
 * cannot be a user: empty, too long, control characters. */
static char *passdb_key(const char *user)
{
	char *k, *at;
	size_t n = strlen(user), i;

	if (n == 0 || n > PASSDB_USER_MAX)
		return NULL;
	for (i = 0; i < n; i++)
		if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f)
			return NULL;
	if ((k = strdup(user)) == NULL)
		return NULL;
	if ((at = strrchr(k, '@')) != NULL)
		for (; *at != '\0'; at++)
			*at = (char)tolower((unsigned char)*at);
	return k;
}

/* Wipe a secret before freeing it. */
static void passdb_wipe(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

enum passdb_rc passdb_verify(struct passdb *p, const char *user,
                             const char *password, struct err *err)
{
	enum passdb_rc rc;
	enum map_rc mrc;
	char *key, *stored = NULL;
	int v;

	err_clear(err);
	if (password == NULL)
		password = "";
	key = user != NULL ? passdb_key(user) : NULL;
	mrc = key != NULL ? map_lookup(p->map, key, &stored, err) : MAP_NOTFOUND;
	free(key);
	if (mrc == MAP_TEMPFAIL)
		return PASSDB_TEMPFAIL;
	if (mrc == MAP_NOTFOUND || stored[0] == '\0') {
		/* Same work as a real check: timing must not tell who exists. */
		(void)pass_verify(p->dummy, password, p->scheme);
		passdb_wipe(stored);
		err_set(err, 0, mrc == MAP_NOTFOUND ? "unknown user"
		                                    : "no password set");
		return PASSDB_FAIL;
	}
	v = pass_verify(stored, password, p->scheme);
	passdb_wipe(stored);
	if (v == 1) {
		rc = PASSDB_OK;
	} else if (v == 0) {
		rc = PASSDB_FAIL;
		err_set(err, 0, "password mismatch");
	} else {
		rc = PASSDB_TEMPFAIL;
		err_set(err, 1, "stored password hash is malformed or of an "
		        "unknown scheme");
	}
	return rc;
}

void passdb_free(struct passdb *p)
{
	if (p == NULL)
		return;
	map_free(p->map);
	free(p->scheme);
	free(p->dummy);
	free(p);
}
