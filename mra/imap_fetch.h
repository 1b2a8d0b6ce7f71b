/* imap_fetch: FETCH (RFC 3501 §6.4.5, §7.4.2): parsing the item list and
 * rendering each message's data items, with BODY[section]<partial> from
 * shared/mime and \Seen set by non-PEEK body fetches. Runs on the pool. */
#ifndef IMAP_FETCH_H
#define IMAP_FETCH_H

#include <stddef.h>
#include "imap_cmd.h"

struct mstore_folder;

/* Fetch items of the selected folder's msgs[idx[0..n)] into c->out.
 * Returns 0, or -1 after putting a tagged BAD/NO into c->out. */
int imap_fetch_run(struct imap_cmd *c, const size_t *idx, size_t n,
		   struct imap_arg *items);

/* Read only the header block of msgs[idx] (CRLF line ends, with the
 * blank line) into out, appended: SEARCH and FETCH of headers need no
 * more. Falls back to the whole message when the file moved. 0 or -1. */
int imap_fetch_header(struct mstore_folder *f, size_t idx, struct buf *out);

#endif
