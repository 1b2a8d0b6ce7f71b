/* imap_view: what one IMAP session has been told about its selected
 * mailbox (RFC 3501 §5.2, §7.3-7.4; RFC 7162). The store (mstore) says
 * what the folder holds now; the view says what the client believes:
 * which UIDs its sequence numbers stand for, their flags and keywords,
 * which keywords FLAGS announced and the mod-sequences it saw.
 * imap_view_sync() turns the difference into untagged responses in an
 * order whose every number is valid when the client reads it: EXPUNGE
 * (or VANISHED) of what is gone, when the command allows it, FLAGS
 * before any keyword it did not announce, EXISTS/RECENT for new
 * messages, FETCH for flag changes. A message expunged while EXPUNGE may
 * not be sent (FETCH, STORE, SEARCH: RFC 3501 §7.4.1) stays in the view,
 * marked gone, until a later command may report it.
 *
 * Pure: no I/O, no session. The caller owns the view. */
#ifndef IMAP_VIEW_H
#define IMAP_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "mstore.h"

struct imap_view_msg {
	uint32_t uid;
	uint32_t keywords;       /* bit i: folder keyword i */
	uint64_t modseq;         /* as last told (RFC 7162) */
	unsigned char flags;     /* MSTORE_F_* as last told, with RECENT */
	unsigned char gone;      /* expunged from the store, not yet told */
};

/* Enabled extensions that change what sync reports. */
#define IMAP_VIEW_CONDSTORE 0x01 /* MODSEQ in FETCH (RFC 7162 §3.1) */
#define IMAP_VIEW_QRESYNC   0x02 /* VANISHED, not EXPUNGE (§3.2.10) */

struct imap_view {
	struct imap_view_msg *msgs;  /* owned; msgs[i] is sequence i + 1 */
	size_t count, cap;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	uint32_t kw_told;            /* keyword bits FLAGS announced */
	unsigned opts;               /* IMAP_VIEW_* */
	int readonly;
};

/* The store's side: an open folder's state. */
struct imap_view_src {
	const struct mstore_msg *msgs;   /* sorted by uid */
	size_t count;
	const char *const *kwnames;      /* MSTORE_MAX_KEYWORDS entries */
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
};
/* The src of an open folder (borrows from it). */
void imap_view_src_of(struct imap_view_src *src, const struct mstore_folder *f);

void imap_view_init(struct imap_view *v);
void imap_view_free(struct imap_view *v);  /* and init again */

/* SELECT/EXAMINE (RFC 3501 §6.3.1, RFC 7162 §3.1.2.1): take the whole
 * folder and write FLAGS, EXISTS, RECENT, UNSEEN, PERMANENTFLAGS,
 * UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ. 0, or -1 (out of memory; the view
 * is then empty and out as it was). */
int imap_view_open(struct imap_view *v, const struct imap_view_src *src,
		   int readonly, struct buf *out);

/* Report the store's changes and take them into the view. expunge: the
 * command in progress may send EXPUNGE/VANISHED. 0, or -1 when out of
 * memory (what was written is consistent with the view; the caller
 * should end the session: the client may have missed changes). */
#define IMAP_VIEW_EXPUNGE 0x01
int imap_view_sync(struct imap_view *v, const struct imap_view_src *src,
		   unsigned flags, struct buf *out);

/* RFC 7162 §3.2.5 SELECT ... (QRESYNC (uidvalidity modseq [known]))
 * after imap_view_open(): "* VANISHED (EARLIER) ..." for UIDs in known
 * (NULL: 1:uidnext-1) that are not in the mailbox, then FETCH (UID
 * FLAGS MODSEQ) of those in known changed since modseq. 0 or -1. */
int imap_view_qresync(const struct imap_view *v, uint64_t modseq,
		      const char *known, const char *const *kwnames,
		      struct buf *out);

/* The view index of uid, or -1. */
long imap_view_find_uid(const struct imap_view *v, uint32_t uid);

/* A sequence set or UID set (how: IMAP_VIEW_SET_*) into view indexes,
 * ascending
 * and without repeats (*idx_r malloc'd; NULL when *n_r is 0). '*' is
 * the last message; a UID range matches only the UIDs it names (RFC
 * 3501 §6.4.8: "n:4294967295" above the last UID matches nothing, but
 * "n:*" matches the last message). A sequence number past the end is an
 * error. Returns 0, or -1 (syntax, out of range, out of memory). */
#define IMAP_VIEW_SET_UID     0x01 /* the set holds UIDs */
#define IMAP_VIEW_SET_LENIENT 0x02 /* sequence numbers past the end match
				    * nothing (SEARCH), not an error */
int imap_view_seqset(const struct imap_view *v, const char *set,
		     unsigned how, size_t **idx_r, size_t *n_r);

/* The UIDs of a UID set that are absent from the view and below uidnext,
 * as "* VANISHED (EARLIER) set" (RFC 7162 §3.2.6), nothing when none.
 * 0 or -1. */
int imap_view_put_vanished(const struct imap_view *v, const char *set,
			   struct buf *out);

/* The session itself changed message idx (STORE) and reports it: the
 * view takes the new state so sync does not report it again. */
void imap_view_told(struct imap_view *v, size_t idx, unsigned flags,
		    uint32_t keywords, uint64_t modseq);

/* "* seq FETCH ([UID u ]FLAGS (...)[ MODSEQ (m)])" for view message idx
 * as told (with_uid: UID first; modseq: MODSEQ). Whole or not at all. */
int imap_view_put_fetch(const struct imap_view *v, size_t idx,
			const char *const *kwnames, int with_uid,
			int with_modseq, struct buf *out);

/* RFC 4315 uid-set of n ascending UIDs: "1:3,7". Whole or not at all. */
int imap_view_put_uidset(struct buf *out, const uint32_t *uids, size_t n);

/* Count of messages with \Recent in the view. */
size_t imap_view_recent(const struct imap_view *v);

#endif
