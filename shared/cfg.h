/* cfg: configuration files in Postfix main.cf syntax, loaded into typed
 * parameter tables (the VAR_/DEF_/var_ triples of Postfix's mail_conf).
 * The tables and the variables they point to belong to the caller; string
 * values are malloc'd by cfg and freed by cfg on reload or cfg_free(). */
#ifndef CFG_H
#define CFG_H

#include <stddef.h>
#include <stdio.h>
#include "err.h"

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL, CFG_TIME };

struct cfg_param {
	const char *name;
	enum cfg_type type;
	const char *def;   /* default as text, may contain $name */
	void *var;         /* CFG_STR: char ** (malloc'd, expanded); CFG_INT and CFG_TIME: long * (TIME in seconds); CFG_BOOL: int * */
	long min, max;     /* bounds for INT/TIME; both 0 = unbounded; max 0 alone = no upper bound */
};  /* a table ends with an entry whose name is NULL */

/* tabs: NULL-terminated array of tables. Unknown parameter or bad value ->
 * -1 with err->msg "FILE, line N: unknown parameter \"foo\"" /
 * "...: bad value \"x\" for smtpd_timeout: expected a time like 300s".
 * A missing file is an error. path NULL = defaults only. On error no
 * variable is changed; on success the previous string values are freed. */
int cfg_load(const struct cfg_param *const *tabs, const char *path, struct err *err);
/* The same over text already in memory (no I/O; what the fuzz target and
 * the tests use). filename only names the text in messages. */
int cfg_load_text(const struct cfg_param *const *tabs, const char *text,
		  size_t len, const char *filename, struct err *err);
/* Free the string values of the tables and set them to NULL. */
void cfg_free(const struct cfg_param *const *tabs);
/* Like postconf -n: "name = value" (as written in the file, unexpanded,
 * sorted by name) for the parameters set in the last loaded file. */
void cfg_print_nondefault(const struct cfg_param *const *tabs, FILE *out);
/* Postfix-style function defaults (e.g. mydomain from myhostname): while
 * fn is registered for name, the text it returns at load time replaces
 * the table's def (and is expanded like def). fn may call cfg_get() for
 * parameters listed before it. Register before cfg_load (params.c does it
 * from a constructor). Up to 16 names. */
void cfg_default_fn(const char *name, const char *(*fn)(void));
/* Expanded value of a parameter: during a load (from a default function)
 * the value being loaded, otherwise the last loaded one. NULL if unknown.
 * borrowed: valid until the next load. */
const char *cfg_get(const char *name);

/* Postfix lists: items separated by commas and/or white space. */
char **cfg_list_split(const char *value);   /* "a, b  c" -> {"a","b","c",NULL}, malloc'd; NULL if out of memory */
void cfg_list_free(char **v);
int cfg_list_contains(const char *list, const char *word); /* case-insensitive; 1 or 0 */

/* Value converters used by cfg_load (0 ok, -1 bad). TIME: a decimal
 * number with an optional unit s m h d w (none = seconds). BOOL: yes/no,
 * true/false, 1/0 (case-insensitive). INT: decimal with optional sign. */
int cfg_parse_int(const char *s, long *val_r);
int cfg_parse_time(const char *s, long *val_r);
int cfg_parse_bool(const char *s, int *val_r);

/* Raw name = value reader (same line syntax, no expansion, no table);
 * used for mysql: .cf map files. fn returns 0 to go on, -1 to stop (it
 * fills err); cfg_read_pairs then returns -1. */
typedef int cfg_pair_fn(void *arg, const char *name, const char *value, const char *file, int line, struct err *err);
int cfg_read_pairs(const char *path, cfg_pair_fn *fn, void *arg, struct err *err);
int cfg_read_pairs_text(const char *text, size_t len, const char *filename,
			cfg_pair_fn *fn, void *arg, struct err *err);

/* Daemon start-up: parses -c DIR (default /etc/mailpair), -n (print
 * non-default settings and exit 0), -h (print help text and exit 0);
 * loads DIR/<name>.cf; on error prints "name: fatal: <err>" to stderr and
 * exits 1. Returns the config dir. */
const char *cfg_daemon_init(const char *name, int argc, char **argv, const struct cfg_param *const *tabs, const char *help);

#endif
