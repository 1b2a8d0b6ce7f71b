/* passdb: the password check every daemon uses: look up the user's stored
 * "{SCHEME}hash" in virtual_password_maps and verify it with pass.h.
 * Blocking (map I/O, crypt(3)): call from worker threads, never the loop.
 * Thread-safe; one passdb is shared by all workers. */
#ifndef PASSDB_H
#define PASSDB_H

#include "err.h"

struct passdb;

enum passdb_rc { PASSDB_OK, PASSDB_FAIL, PASSDB_TEMPFAIL };

/* password_maps: a map spec (map.h), e.g. "mysql:/etc/mailpair/mysql/
 * virtual_password_maps.cf" or "texthash:/etc/mailpair/passwd".
 * default_scheme: scheme for hashes stored without "{SCHEME}" and for the
 * dummy hash (NULL -> "SHA512-CRYPT"). NULL and fills err on failure. */
struct passdb *passdb_new(const char *password_maps, const char *default_scheme,
                          struct err *err);

/* user: "alice@example.test" (the domain is folded to lower case before the
 * lookup). An unknown user costs the same time as a wrong password (the
 * password is verified against a dummy hash of the default scheme), so
 * timing does not reveal which users exist. PASSDB_TEMPFAIL (map down, bad
 * stored hash) fills err; PASSDB_FAIL leaves err->msg with a reason for
 * the log ("unknown user", "password mismatch"), never the password. */
enum passdb_rc passdb_verify(struct passdb *p, const char *user,
                             const char *password, struct err *err);

void passdb_free(struct passdb *p);

#endif
