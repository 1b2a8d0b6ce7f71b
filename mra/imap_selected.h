/* imap_selected: the logged-in user's mailbox state and its selected
 * mailbox: the open store folder (mstore) and what the client has been
 * told of it (imap_view), kept in step by imap_selected_sync(). While a
 * session idles the folder is closed ("parked": only the compact view
 * stays) and the next use reopens it. Blocking file-system work: worker
 * threads only. */
#ifndef IMAP_SELECTED_H
#define IMAP_SELECTED_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "err.h"
#include "imap_view.h"

struct mstore;
struct mstore_folder;

/* Owned by the session; only the thread running the session's current
 * command touches it. */
struct imap_user {
	char *name;                  /* login name (owned) */
	struct mstore *ms;           /* owned */
	char *sel_name;              /* selected mailbox (owned); NULL: none */
	char *sel_path;              /* its Maildir (owned; IDLE watches it) */
	struct mstore_folder *folder;/* the selected mailbox, open; NULL also
				      * while parked */
	struct imap_view view;       /* what the client was told of it */
	int readonly;                /* EXAMINE, or a read-only folder */
	unsigned enabled;            /* IMAP_VIEW_CONDSTORE | _QRESYNC */
	uint64_t quota_limit;        /* bytes, 0: none */
	uint64_t quota_used;         /* bytes, as last seen */
};

/* SELECT/EXAMINE name: unselect, open, and write the untagged part of
 * the reply (imap_view_open). 0, or -1 with err (err->temp 0: no such
 * mailbox); nothing is selected then (RFC 3501 §6.3.1). */
int imap_selected_select(struct imap_user *u, const char *name, int readonly,
			 struct buf *out, struct err *err);
/* No mailbox selected any more (CLOSE, UNSELECT, logout). */
void imap_selected_unselect(struct imap_user *u);
/* Close the folder, keep the view (IDLE). */
void imap_selected_park(struct imap_user *u);
/* The folder is open (reopened after park). 0, or -1 with err: the
 * mailbox is gone or was rebuilt (a new UIDVALIDITY): the session must
 * end (RFC 3501 §2.3.1.1). */
int imap_selected_open(struct imap_user *u, struct err *err);

/* Re-read the store and report the changes into out (imap_view_sync;
 * flags IMAP_VIEW_EXPUNGE when the command may send EXPUNGE). 0; 1 when
 * the store could not be read now (err; nothing reported, try later); or
 * -1 with err when the session must end (as imap_selected_open, or out
 * of memory). Nothing to do without a selected mailbox. */
int imap_selected_sync(struct imap_user *u, unsigned flags, struct buf *out,
		       struct err *err);

/* The store index of view message vidx, or -1 when it was expunged. */
long imap_selected_msg(const struct imap_user *u, size_t vidx);

#endif
