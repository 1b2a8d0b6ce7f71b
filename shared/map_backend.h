/* map_backend: the private vtable between map.c and its backends (one file
 * per type, as OpenSMTPD's struct table_backend). Not for callers outside
 * the map_* files. */
#ifndef MAP_BACKEND_H
#define MAP_BACKEND_H

#include "err.h"
#include "map.h"

struct map_backend {
	const char *type;                       /* "texthash" */
	/* arg: the text after "type:"; returns the backend's handle or NULL
	 * with err filled. */
	void *(*open)(const char *arg, struct err *err);
	/* As map_lookup(); must be thread-safe. */
	enum map_rc (*lookup)(void *h, const char *key, char **value_r,
	                      struct err *err);
	void (*close)(void *h);
	/* SIGHUP: read the table's definition again (NULL: nothing to do).
	 * Lookups may run meanwhile on other threads; on failure the table
	 * keeps what it had and err says why. */
	int (*reload)(void *h, struct err *err);
	/* 1: lookups answer from memory, never waiting on a server (a
	 * texthash table stats its file once a second, no more), so an
	 * event loop may call them itself. */
	int in_memory;
};

extern const struct map_backend map_static_backend;
extern const struct map_backend map_file_backend;
extern const struct map_backend map_mysql_backend;

/* malloc'd copy of s folded to ASCII lower case (Postfix lowercase()). */
char *map_fold(const char *s);

#endif
