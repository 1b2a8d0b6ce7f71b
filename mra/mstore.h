/* mstore: the Maildir++ message store behind IMAP and POP3. A user's
 * mailbox root is a Maildir (INBOX); folders are ".Name" Maildirs under it
 * (hierarchy separator "."). Each folder keeps persistent UIDs and its
 * keyword names in "mstore-uidlist", rewritten atomically (temp, fsync,
 * rename, fsync dir) under flock("mstore-uidlist.lock"), so several
 * processes agree. A lost index is rebuilt (new UIDVALIDITY); a torn one
 * keeps what parses. Flags live in file names (":2,DFPRST" + keywords a-z);
 * the index also keeps, per message, the flags last seen and their
 * CONDSTORE mod-sequence (RFC 7162), and per folder HIGHESTMODSEQ and the
 * first UID not yet claimed as \Recent.
 *
 * Calls are blocking file-system work. fsync happens in: mstore_append,
 * mstore_copy, and every index rewrite that changes UIDs, keywords or
 * UIDVALIDITY (sync that saw new or removed files, expunge, create).
 * Rewrites that only record mod-sequences or claim \Recent fsync the file
 * but not the folder, and flag changes are renames that are not fsynced:
 * flags are advisory. */
#ifndef MSTORE_H
#define MSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "buf.h"
#include "err.h"

struct event_base;

/* System flags (RFC 3501 §2.3.2); RECENT is per folder object, never in a
 * file name. */
#define MSTORE_F_SEEN     0x01   /* S */
#define MSTORE_F_ANSWERED 0x02   /* R */
#define MSTORE_F_FLAGGED  0x04   /* F */
#define MSTORE_F_DELETED  0x08   /* T */
#define MSTORE_F_DRAFT    0x10   /* D */
#define MSTORE_F_PASSED   0x20   /* P ($Forwarded), kept but not an IMAP flag */
#define MSTORE_F_RECENT   0x40

#define MSTORE_MAX_KEYWORDS 26   /* letters a-z */
#define MSTORE_NAME_MAX     255

struct mstore_msg {
	uint32_t uid;
	unsigned flags;          /* MSTORE_F_* */
	uint32_t keywords;       /* bit i: folder keyword i */
	uint64_t size;           /* bytes in the file */
	uint64_t vsize;          /* size with every line ending in CRLF
	                          * (RFC822.SIZE, POP3 LIST) */
	time_t internaldate;     /* file mtime */
	uint64_t modseq;         /* RFC 7162 mod-sequence, >= 1, as of the
	                          * last mstore_sync() */
	char *name;              /* file name in cur/ (owned) */
};

/* An open folder. Read the fields; change them only through the calls.
 * msgs[i] is message sequence number i+1. */
struct mstore_folder {
	struct mstore *ms;
	char *name;              /* IMAP name, "INBOX" for the root */
	char *path;              /* folder Maildir path */
	int readonly;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;  /* RFC 7162 §3.1.2.1, as of the last sync */
	struct mstore_msg *msgs;
	size_t count;
	char *keywords[MSTORE_MAX_KEYWORDS]; /* NULL: unused letter */
	unsigned nkeywords;
	/* internal: new/ and cur/ mtimes at the last full scan, so a sync
	 * of an unchanged folder costs two stat() calls */
	struct timespec stamp[2];
	int stamp_ok;
};

/* What a sync (or expunge) saw, for untagged EXPUNGE/EXISTS/FETCH. */
struct mstore_changes {
	uint32_t *expunged_seq;  /* send in this order (descending) */
	uint32_t *expunged_uid;
	size_t nexpunged;
	size_t nnew;             /* new messages: msgs[count-nnew .. count) */
	uint32_t *changed_seq;   /* flags or keywords differ from this
	                          * object's last view (current seqs); a change
	                          * undone before the sync shows only in
	                          * msgs[].modseq */
	size_t nchanged;
	int uidvalidity_changed; /* the index was rebuilt: the session must
	                          * end (IMAP: BYE) */
};
void mstore_changes_free(struct mstore_changes *ch); /* frees arrays, zeroes */

/* ---- the mailbox ---- */

/* Build "base/domain/local/" for user "local@domain" (lower-cased,
 * refused if either part could escape base). Returns 0 or -1. */
int mstore_user_root(const char *base, const char *user, char *out,
                     size_t out_size, struct err *err);

/* Open (creating if needed) the mailbox at root: the INBOX Maildir and,
 * when absent, the special-use folders Sent, Drafts, Trash, Junk
 * (first login), subscribed. */
struct mstore *mstore_open(const char *root, struct err *err);
void mstore_free(struct mstore *ms);
const char *mstore_root(const struct mstore *ms);  /* borrowed */

/* 0 if name is an acceptable folder name, else -1 with the reason:
 * empty, too long, "/" or "\\", control characters, leading/trailing or
 * doubled ".", a ".." component, a leading "~". */
int mstore_name_check(const char *name, struct err *err);

/* LIST: attributes */
#define MSTORE_LIST_HASCHILDREN   0x001
#define MSTORE_LIST_HASNOCHILDREN 0x002
#define MSTORE_LIST_NOSELECT      0x004 /* parent with no Maildir of its own */
#define MSTORE_LIST_SUBSCRIBED    0x008
#define MSTORE_LIST_SENT          0x010 /* RFC 6154 special use */
#define MSTORE_LIST_DRAFTS        0x020
#define MSTORE_LIST_TRASH         0x040
#define MSTORE_LIST_JUNK          0x080
#define MSTORE_LIST_NONEXISTENT   0x100 /* subscribed but gone */

struct mstore_folder_info {
	char *name;              /* "INBOX", "Sent", "Archive.2024" */
	unsigned attrs;          /* MSTORE_LIST_* */
};
/* Every folder (INBOX first, then sorted), with subscribed-but-missing
 * names marked NONEXISTENT. The caller matches LIST patterns. */
int mstore_list(struct mstore *ms, struct mstore_folder_info **list_r,
                size_t *n_r, struct err *err);
void mstore_list_free(struct mstore_folder_info *list, size_t n);

/* A created (or rebuilt) folder index gets a UIDVALIDITY above every one
 * this mailbox gave out before (RFC 3501 §2.3.1.1), even for a name
 * deleted in the same second: the last one is kept at the root
 * ("mstore-uidvalidity"). */
int mstore_create(struct mstore *ms, const char *name, struct err *err);
/* Deleting INBOX is refused. RFC 3501 §6.3.4: a folder with children
 * loses its messages and its own Maildir; the children stay and it lists
 * as \Noselect. Deleting a \Noselect parent is refused. */
int mstore_delete(struct mstore *ms, const char *name, struct err *err);
/* Renames the folder and its children. RENAME INBOX moves INBOX's
 * messages into the new folder (RFC 3501 §6.3.5). */
int mstore_rename(struct mstore *ms, const char *from, const char *to,
                  struct err *err);
int mstore_subscribe(struct mstore *ms, const char *name, int on,
                     struct err *err);

struct mstore_status {
	uint32_t messages, recent, uidnext, uidvalidity, unseen;
	uint64_t vsize;
	uint64_t highestmodseq;  /* RFC 7162 §3.1.2.1 */
};
/* STATUS without opening the folder for a session. RECENT counts the
 * messages no read-write open has claimed yet, and does not claim them. */
int mstore_status(struct mstore *ms, const char *name, struct mstore_status *st,
                  struct err *err);

/* The user's quota in bytes, from the user map (0: none there; then a
 * limit in maildirsize's definition line applies). Set after login. */
void mstore_set_quota(struct mstore *ms, uint64_t limit);

/* Quota usage of the whole mailbox: from Maildir++ maildirsize when
 * present, else a scan. */
int mstore_quota_usage(struct mstore *ms, uint64_t *bytes_r, uint64_t *count_r,
                       struct err *err);

/* ---- a folder ---- */

/* Open and sync a folder. Messages found in new/ move to cur/ (also when
 * readonly: EXAMINE).
 *
 * \Recent, the Dovecot way (RFC 3501 §2.3.2: exactly one session sees a
 * message as recent): the index keeps first_recent_uid. Each open or sync
 * gives MSTORE_F_RECENT, in this object, to every message with uid >=
 * first_recent_uid, and a read-write object then claims them by moving
 * first_recent_uid to uidnext (under the index lock), whether they came by
 * delivery, APPEND, COPY or MOVE. A readonly object (EXAMINE) marks them
 * without claiming. The bit stays for the object's life.
 * Returns NULL with err (err->temp = 0: no such folder / bad name). */
struct mstore_folder *mstore_folder_open(struct mstore *ms, const char *name,
                                         int readonly, struct err *err);
void mstore_folder_free(struct mstore_folder *f);

/* Re-read the folder; ch (may be NULL; zeroed by the caller, freed with
 * mstore_changes_free) receives what changed since the last sync. msgs
 * is rebuilt: pointers into it are invalidated. A folder whose new/ and
 * cur/ have not changed costs two stat() calls (a rename, this object's
 * own mstore_set_flags() included, changes cur/'s mtime, so it is never
 * skipped).
 *
 * Mod-sequences (RFC 7162) are given here, under the index lock, by
 * whichever object syncs first: a new message, a message whose file-name
 * flags differ from those the index recorded, and each removed message
 * take ++highestmodseq. So right after a sync that follows this object's
 * own mstore_set_flags(), msgs[i].modseq and highestmodseq include them. */
int mstore_sync(struct mstore_folder *f, struct mstore_changes *ch,
                struct err *err);

/* Change msgs[idx]'s flags and keywords. op applies flags/keywords to
 * the file's CURRENT name, not to this object's copy, so that two
 * sessions' changes never overwrite each other: the rename from the name
 * the change was computed on is atomic, and when another session renamed
 * the file first (ENOENT) it is found again by base name and the change
 * recomputed (a few tries). REPLACE sets exactly flags/keywords, except
 * MSTORE_F_PASSED (not an IMAP flag), which stays as the file has it.
 * MSTORE_F_RECENT is ignored in flags and kept in msgs[idx].
 * On success msgs[idx].flags/.keywords hold the result (the file's other
 * concurrent changes included). Returns 0, or -1 with err (err->temp = 0:
 * the message is gone, or the folder is readonly). */
enum mstore_flag_op { MSTORE_FLAGS_REPLACE, MSTORE_FLAGS_ADD, MSTORE_FLAGS_REMOVE };
int mstore_set_flags(struct mstore_folder *f, size_t idx, enum mstore_flag_op op,
                     unsigned flags, uint32_t keywords, struct err *err);

/* Keyword name -> index (0..25). create: add it to the folder if missing.
 * Returns the index, or -1 (not found, or the folder is full: err). */
int mstore_keyword(struct mstore_folder *f, const char *name, int create,
                   struct err *err);

/* Remove messages: uids == NULL: every message with \Deleted (EXPUNGE);
 * else those listed that have \Deleted (UID EXPUNGE, RFC 4315), or, with
 * force, those listed whatever their flags (POP3 UPDATE, MOVE). ch
 * receives the expunged seqs. */
int mstore_expunge(struct mstore_folder *f, const uint32_t *uids, size_t nuids,
                   int force, struct mstore_changes *ch, struct err *err);

/* Read message idx into out (appended). crlf: turn bare LF into CRLF, so
 * offsets and sizes match what IMAP/POP3 send. Copes with the file
 * being renamed by another session meanwhile. */
int mstore_msg_read(struct mstore_folder *f, size_t idx, int crlf,
                    struct buf *out, struct err *err);
/* Index of the message with this uid, or -1 (binary search). */
long mstore_find_uid(const struct mstore_folder *f, uint32_t uid);

/* Full path of msgs[idx] (may be stale if another session renamed it). */
int mstore_msg_path(const struct mstore_folder *f, size_t idx, char *out,
                    size_t out_size);

/* APPEND: store data (as given) into folder name with flags/keywords and
 * internaldate (0: now); fsynced. uid_r/uidvalidity_r (may be NULL) get
 * the UIDPLUS values. Open folders see it at their next sync. */
int mstore_append(struct mstore *ms, const char *name, const char *data,
                  size_t len, unsigned flags, const char *const *keywords,
                  size_t nkeywords, time_t internaldate, uint32_t *uid_r,
                  uint32_t *uidvalidity_r, struct err *err);

/* COPY msgs[idx[i]] into folder dest (hard link, else copy; fsynced),
 * keeping flags and keywords. uids_r (n entries, may be NULL) and
 * uidvalidity_r receive the new UIDs (COPYUID). MOVE = copy with
 * MSTORE_COPY_MOVE, then mstore_expunge(src, their uids, n, 1, ...).
 *
 * Quota (RFC 9208 §4.3): a COPY must fit, whole, in the mailbox's limit
 * (mstore_set_quota(), else the definition in maildirsize); the check and
 * the maildirsize update happen under quota_lock(), so concurrent copies
 * cannot both pass it. A MOVE stays inside the mailbox and is not
 * checked. Returns 0, -1 (err; err->temp = 0: no such folder), or
 * MSTORE_OVERQUOTA: nothing was copied. */
#define MSTORE_COPY_MOVE  0x01
#define MSTORE_OVERQUOTA  (-2)
int mstore_copy(struct mstore_folder *src, const size_t *idx, size_t n,
                const char *dest, unsigned flags, uint32_t *uids_r,
                uint32_t *uidvalidity_r, struct err *err);

/* ---- change notification (IDLE) ---- */

/* inotify on the folder's new/ and cur/; cb runs on base's loop (coalesced,
 * within about a second of a change). */
struct mstore_watch;
struct mstore_watch *mstore_watch_new(struct event_base *base,
                                      struct mstore *ms, const char *name,
                                      void (*cb)(void *arg), void *arg,
                                      struct err *err);
void mstore_watch_free(struct mstore_watch *w);

#endif
