/* vlookup: the virtual(5) search order over a map, and the domain test for
 * virtual_mailbox_domains (a list of names or of map specs, as Postfix
 * accepts both). Callers own the maps; nothing here keeps state except
 * struct vlookup_domains. */
#ifndef VLOOKUP_H
#define VLOOKUP_H

#include "err.h"
#include "map.h"

/* Which steps of the virtual(5) search apply, in this order: */
#define VLOOKUP_FULL     0x01  /* user+ext@domain, the address as given */
#define VLOOKUP_NOEXT    0x02  /* user@domain, extension removed */
#define VLOOKUP_CATCHALL 0x04  /* @domain */
/* virtual_mailbox_maps: full address forms only. */
#define VLOOKUP_MAILBOX  (VLOOKUP_FULL | VLOOKUP_NOEXT)
/* virtual_alias_maps: all three. */
#define VLOOKUP_ALIAS    (VLOOKUP_FULL | VLOOKUP_NOEXT | VLOOKUP_CATCHALL)

/* Search m for addr ("user+ext@domain"; the domain is folded to lower case,
 * the local part is kept). delims: recipient_delimiter, a set of
 * characters (NULL or "" = no extensions); the extension starts at the
 * first of them in the local part (Postfix 2.11+ semantics). The NOEXT
 * step is skipped when there is no extension. An address without '@'
 * gets only the FULL and NOEXT steps.
 * On MAP_FOUND *value_r is malloc'd (caller frees) and, when step_r is not
 * NULL, *step_r says which step hit (VLOOKUP_FULL/NOEXT/CATCHALL).
 * The first TEMPFAIL ends the search with TEMPFAIL. */
enum map_rc vlookup_addr(struct map *m, const char *addr, const char *delims,
                         int flags, char **value_r, int *step_r,
                         struct err *err);

/* Split a local part at the recipient delimiter: returns the length of the
 * user part (== len when there is no extension). Pure. */
size_t vlookup_user_len(const char *local, size_t len, const char *delims);

/* virtual_mailbox_domains and the like: a list of entries separated by
 * commas/white space. An entry "type:name" is a map looked up with the
 * domain as key (any value matches); "/path" is a file of more entries
 * (one or more per line, '#' comments); ".example.com" matches subdomains
 * of example.com; "!entry" excludes (Postfix match_list: the first
 * matching entry decides); anything else is a domain name compared
 * without case. */
struct vlookup_domains;
struct vlookup_domains *vlookup_domains_new(const char *list_or_maps,
                                            struct err *err);
/* MAP_FOUND when domain belongs to the list, MAP_NOTFOUND when not,
 * MAP_TEMPFAIL (err filled) when a map failed. Thread-safe. */
enum map_rc vlookup_domains_match(struct vlookup_domains *d, const char *domain,
                                  struct err *err);
/* 1 when matching never waits on a server: names, and maps that
 * answer from memory only (map_in_memory). */
int vlookup_domains_in_memory(const struct vlookup_domains *d);
void vlookup_domains_free(struct vlookup_domains *d);

/* One-shot convenience: opens the list, matches, frees. For tools and
 * tests; daemons keep a struct vlookup_domains instead. */
enum map_rc vlookup_domain_match(const char *list_or_maps, const char *domain,
                                 struct err *err);

#endif
