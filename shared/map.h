/* map: Postfix-style lookup tables named "type:argument" (static:, texthash:,
 * mysql:), opened from a list and searched first-hit-wins. Each backend is
 * one file behind a vtable (map_backend.h), as OpenSMTPD's table backends.
 * A map is shared by threads: lookups are thread-safe; open/free are not. */
#ifndef MAP_H
#define MAP_H

#include "err.h"

enum map_rc { MAP_FOUND, MAP_NOTFOUND, MAP_TEMPFAIL };

struct map;

/* spec: "static:VALUE", "texthash:/path", "mysql:/path/file.cf", or a list
 * of these separated by commas and/or white space
 * ("texthash:/a, mysql:/b"). The first table that finds the key wins; a
 * TEMPFAIL in an earlier table stops the search with TEMPFAIL (Postfix
 * DICT_ERR_RETRY). "static:{a value with spaces}" keeps its braces' text.
 * An empty or NULL spec gives a map that finds nothing. Postfix's
 * "proxy:" prefix is accepted and dropped ("proxy:mysql:/f.cf").
 * Returns NULL and fills err on a bad spec or an unreadable/invalid table
 * (texthash and mysql .cf errors name the file and line). */
struct map *map_open(const char *spec, struct err *err);

/* Exact-key lookup (texthash and mysql fold the key to lower case, as
 * Postfix does). Thread-safe. On MAP_FOUND *value_r is malloc'd and the
 * caller frees it; otherwise *value_r is NULL. Several result rows (mysql)
 * are joined with ", ". MAP_TEMPFAIL fills err (err->temp = 1). */
enum map_rc map_lookup(struct map *m, const char *key, char **value_r,
                       struct err *err);

/* SIGHUP: each table reads its definition again (texthash: the file now,
 * not at the next once-a-second check; mysql: the .cf, for new
 * connections and queries, while lookups in progress finish with the old
 * one). Thread-safe against lookups. A table that fails keeps what it
 * had; -1 with the first failure's reason. NULL m: nothing, 0. */
int map_reload(struct map *m, struct err *err);

/* map_reload() of every map the process has open (the daemons' SIGHUP);
 * *n_r: how many. -1 with the first failure's reason (the others are
 * reloaded all the same). */
int map_reload_all(unsigned *n_r, struct err *err);

/* The daemons' SIGHUP: map_reload_all() and a log line saying what it
 * did, prefixed with who. */
void map_main_reload(const char *who);

/* 1 when the map has no tables (empty spec): callers may treat the
 * parameter as unset. */
int map_is_empty(const struct map *m);

/* 1 when every table of m (none, for NULL or empty) answers from memory
 * (static:, texthash:): a lookup never waits on a server, so the event
 * loop may make it instead of a worker thread. */
int map_in_memory(const struct map *m);

/* borrowed: the spec given to map_open (for log lines). */
const char *map_spec(const struct map *m);

void map_free(struct map *m);

#endif
