/* imap_search: SEARCH (RFC 3501 §6.4.4): the search program is compiled
 * from the parsed arguments, then evaluated per message; message text is
 * read only for keys that need it. CHARSET UTF-8 and US-ASCII, MODSEQ
 * (RFC 7162). Runs on the pool. */
#ifndef IMAP_SEARCH_H
#define IMAP_SEARCH_H

#include <stddef.h>
#include "imap_cmd.h"

struct imap_search;

/* Compile keys (from the first argument after SEARCH). NULL with a reason
 * in *why_r (and *badcharset_r = 1 for an unsupported charset). */
struct imap_search *imap_search_new(struct imap_cmd *c, struct imap_arg *keys,
				    const char **why_r, int *badcharset_r);
/* 1 when the selected mailbox's view message vidx, which is the store's
 * msgs[idx], matches; 0 when not. */
int imap_search_match(struct imap_search *se, size_t vidx, size_t idx);
/* 1 when the program has a MODSEQ key (RFC 7162 §3.1.5: the response
 * then gives the highest MODSEQ of the matches). */
int imap_search_uses_modseq(const struct imap_search *se);
void imap_search_free(struct imap_search *se);

/* RFC 3501 date "1-Feb-1994" -> midnight UTC of that day, or -1. */
long long imap_search_date(const char *s);

#endif
