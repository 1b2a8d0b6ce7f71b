/* imap_fetch: FETCH (RFC 3501 §6.4.5, §7.4.2): parsing the item list and
 * rendering each message's data items, with BODY[section]<partial> from
 * shared/mime and \Seen set by non-PEEK body fetches. The renderer is
 * pure (message bytes and index data in, one response out) so it is unit
 * tested and fuzzed on its own; imap_fetch_run() feeds it from the store
 * on the worker pool. */
#ifndef IMAP_FETCH_H
#define IMAP_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "imap_cmd.h"

struct mstore_folder;
struct imap_fetch;

/* One FETCH response at most this big, and one FETCH's responses
 * together: past it the FETCH ends with NO [LIMIT] (what was rendered
 * before stays: whole responses only). */
#define IMAP_FETCH_OUT_MAX (256u << 20)

/* Fetch the items fe of the selected mailbox's view messages
 * vidx[0..n) into c->out (with changedsince > 0: only those whose
 * MODSEQ is above it, RFC 7162 §3.1.4.1). Messages expunged meanwhile
 * are counted in *gone_r, not sent (RFC 2180 §4.1.2). FLAGS sent are
 * told to the view. 0, or -1: past IMAP_FETCH_OUT_MAX or out of memory
 * (what was written is whole). */
int imap_fetch_run(struct imap_cmd *c, struct imap_fetch *fe,
		   const size_t *vidx, size_t n, uint64_t changedsince,
		   size_t *gone_r);

/* Read only the header block of msgs[idx] (CRLF line ends, with the
 * blank line) into out, appended: SEARCH and FETCH of headers need no
 * more. Falls back to the whole message when the file moved. 0 or -1. */
int imap_fetch_header(struct mstore_folder *f, size_t idx, struct buf *out);

/* ---- the pure part ---- */

struct imap_fetch;

/* The item list of a FETCH (an atom, a macro or a parenthesised list;
 * uid adds UID). NULL on bad syntax (or out of memory: *oom_r = 1). */
struct imap_fetch *imap_fetch_parse(struct imap_arg *items, int uid,
				    int *oom_r);
void imap_fetch_free(struct imap_fetch *fe);
/* Add the MODSEQ item (CHANGEDSINCE implies it). 0 or -1 (full). */
int imap_fetch_add_modseq(struct imap_fetch *fe);
/* 1 when the items include FLAGS, MODSEQ. */
int imap_fetch_has_flags(const struct imap_fetch *fe);
int imap_fetch_has_modseq(const struct imap_fetch *fe);
/* What rendering needs: 0 index only, 1 the header block, 2 the whole
 * message. */
int imap_fetch_needs(const struct imap_fetch *fe);
/* 1 when the items set \Seen (BODY[...] without PEEK, RFC822(.TEXT)). */
int imap_fetch_sets_seen(const struct imap_fetch *fe);

struct imap_fetch_msg {
	uint32_t seq, uid;
	unsigned flags;              /* MSTORE_F_* */
	uint32_t keywords;
	const char *const *kwnames;  /* MSTORE_MAX_KEYWORDS names or NULLs */
	time_t internaldate;
	uint64_t vsize;
	uint64_t modseq;
	const char *data;            /* as imap_fetch_needs() says (CRLF) */
	size_t len;
	int add_flags;               /* \Seen was just set: send FLAGS too */
};

/* Append "* seq FETCH (...)\r\n" to out. Strings that cannot be quoted
 * (CR, LF, 8-bit, long) go as literals; NUL bytes, which no IMAP string
 * may hold, are sent as 0x80. Returns 0, or -1 when out's bound or
 * memory ran out: out is then exactly as it was. */
int imap_fetch_render(const struct imap_fetch *fe,
		      const struct imap_fetch_msg *m, struct buf *out);


#endif
