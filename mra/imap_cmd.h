/* imap_cmd: one IMAP command in flight and the table of handlers. A
 * command owns a copy of its bytes (the parsed arguments point into it)
 * and an output buffer; handlers marked IMAP_CMD_POOL run on a worker
 * thread and may touch only the command and the session's store fields
 * (ms, folder, readonly, quota_limit, user). */
#ifndef IMAP_CMD_H
#define IMAP_CMD_H

#include <stdint.h>
#include "buf.h"
#include "imap_parser.h"
#include "imap_session.h"

struct imap_cmd;
typedef void imap_cmd_fn(struct imap_cmd *c);

/* States a command is valid in (bit 1 << enum imap_state). */
#define IMAP_CMD_S_NOTAUTH  (1u << IMAP_ST_NOTAUTH)
#define IMAP_CMD_S_AUTH     (1u << IMAP_ST_AUTH)
#define IMAP_CMD_S_SELECTED (1u << IMAP_ST_SELECTED)
#define IMAP_CMD_S_ANY      (IMAP_CMD_S_NOTAUTH | IMAP_CMD_S_AUTH | \
			     IMAP_CMD_S_SELECTED)
#define IMAP_CMD_S_LOGGEDIN (IMAP_CMD_S_AUTH | IMAP_CMD_S_SELECTED)

#define IMAP_CMD_POOL     0x01   /* run on the worker pool */
#define IMAP_CMD_NOEXPUNGE 0x02  /* RFC 3501 §7.4.1: no EXPUNGE during */
#define IMAP_CMD_SYNC     0x04   /* report the selected folder's changes
				  * before running */
#define IMAP_CMD_MBOX1    0x08   /* the first argument is a mailbox name */
#define IMAP_CMD_MBOX2    0x10   /* the second argument is a mailbox name */

struct imap_cmd_def {
	const char *name;
	unsigned states;
	unsigned flags;
	imap_cmd_fn *fn;
};

struct imap_cmd {
	struct imap_session *s;
	uint64_t sid;
	const struct imap_cmd_def *def;
	char *bytes;                 /* owned copy of the command */
	size_t nbytes;
	char *tag;
	char name[24];               /* upper case; "UID FETCH" for UID */
	int uid;                     /* UID prefix */
	struct imap_arg *args;       /* owned array */
	struct imap_arg *a;          /* first argument after the name */
	unsigned nargs;              /* top-level arguments from a */
	struct buf out;              /* response (untagged + tagged) */
	int new_state;               /* -1: unchanged */
	int logout;                  /* close after sending out */
	int idle_enter;              /* enter IDLE after sending out */
	int no_tagged;               /* internal sync: no tagged reply */
	int idle_restore;            /* DONE: reopen the folder for good */
	struct imap_arg *lit_arg;    /* APPEND: the message argument whose
				      * bytes are in lit_fd, not in bytes */
	int lit_fd;                  /* -1 unless lit_arg; closed with c */
	int lit_err;                 /* the stream failed (errno) */
	uint64_t lit_size;
	void *priv;                  /* handler's own */
	void (*priv_free)(void *);   /* frees priv with the command */
};

/* AUTHENTICATE: a client line arrived for c (s->auth_cmd). */
void imap_cmd_auth_line(struct imap_cmd *c, const char *line, size_t len);
/* The definition used for IDLE's background syncs. */
extern const struct imap_cmd_def imap_cmd_idle_sync_def;

/* Look up a command by upper-case name. NULL when unknown. */
const struct imap_cmd_def *imap_cmd_find(const char *name);
void imap_cmd_free(struct imap_cmd *c);

/* Response helpers. */
void imap_cmd_ok(struct imap_cmd *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imap_cmd_no(struct imap_cmd *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imap_cmd_bad(struct imap_cmd *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Append an IMAP string: atom-safe text as quoted, else a literal.
 * -1 (out may hold part of it) when s holds a NUL, which IMAP4rev1
 * cannot carry, or the buffer is full. (FLAGS lists:
 * imap_fetch_put_flags.) */
int imap_cmd_put_string(struct buf *out, const char *s, size_t len);
/* Sync the selected folder and append untagged EXPUNGE/EXISTS/RECENT/FETCH.
 * allow_expunge 0 keeps the view (no EXPUNGE may be sent now). */
void imap_cmd_sync(struct imap_cmd *c, int allow_expunge);

/* Capability text for this session's state, without "* CAPABILITY ". */
void imap_cmd_capability_text(struct imap_session *s, struct buf *out);

/* Sequence set -> 0-based indexes into the selected folder's msgs
 * (uid=1: the set holds UIDs). *idx_r is malloc'd (may be NULL when
 * *n_r is 0). Returns 0, or -1 on bad syntax. */
int imap_cmd_seqset(struct imap_cmd *c, const char *set, int uid,
		    size_t **idx_r, size_t *n_r);

/* Flags: parse a flag list (or single flag) into system flags and
 * keyword names (borrowed from args). Returns 0 or -1. */
int imap_cmd_parse_flags(struct imap_arg *a, unsigned *flags_r,
			 const char **kw, size_t *nkw, size_t maxkw);

/* Modified UTF-7 (RFC 3501 §5.1.3) <-> UTF-8 mailbox names. Return 0, or
 * -1 on an invalid encoding / no room. */
int imap_cmd_mutf7_decode(const char *in, char *out, size_t out_size);
int imap_cmd_mutf7_encode(const char *in, char *out, size_t out_size);
/* Wire mailbox name -> store name: decodes mUTF-7, folds "inbox" to
 * "INBOX", checks with mstore_name_check(). 0 or -1 with a reason. */
int imap_cmd_mailbox(const char *wire, char *out, size_t out_size,
		     struct err *err);
/* A mailbox (or LIST pattern) argument as sent: a string without a NUL
 * (an embedded NUL would silently shorten the name), in valid modified
 * UTF-7 without control characters. 0, or -1 with the reason. */
int imap_cmd_mailbox_arg(const struct imap_arg *a, struct err *err);
/* Check c's mailbox arguments (IMAP_CMD_MBOX1/2 of its definition); on a
 * bad one, put the BAD/NO reply in c->out and return -1. */
int imap_cmd_check_mailboxes(struct imap_cmd *c);

/* RFC 3501 §6.3.8 LIST/LSUB pattern match of a store name: "*" matches
 * any characters, "%" any but the hierarchy separator sep. Pure; time
 * O(strlen(pat) * strlen(name)) whatever the wildcards; a name longer
 * than IMAP_CMD_MATCH_NAME_MAX never matches. Returns 1 or 0. */
#define IMAP_CMD_MATCH_NAME_MAX 1024
int imap_cmd_mbox_match(const char *pat, const char *name, char sep);

/* Handlers by file. */
void imap_cmd_mbox_select(struct imap_cmd *c);
void imap_cmd_mbox_create(struct imap_cmd *c);
void imap_cmd_mbox_delete(struct imap_cmd *c);
void imap_cmd_mbox_rename(struct imap_cmd *c);
void imap_cmd_mbox_subscribe(struct imap_cmd *c);
void imap_cmd_mbox_list(struct imap_cmd *c);
void imap_cmd_mbox_status(struct imap_cmd *c);
void imap_cmd_mbox_append(struct imap_cmd *c);
void imap_cmd_mbox_quota(struct imap_cmd *c);
void imap_cmd_msg_noop(struct imap_cmd *c);
void imap_cmd_msg_close(struct imap_cmd *c);
void imap_cmd_msg_expunge(struct imap_cmd *c);
void imap_cmd_msg_store(struct imap_cmd *c);
void imap_cmd_msg_copy(struct imap_cmd *c);
void imap_cmd_msg_fetch(struct imap_cmd *c);
void imap_cmd_msg_search(struct imap_cmd *c);
void imap_cmd_msg_idle_sync(struct imap_cmd *c);
/* IDLE: replace the open folder by a compact snapshot (0), or keep it
 * (-1, out of memory). Any thread that owns the session's store. */
int imap_cmd_msg_snapshot(struct imap_session *s);
void imap_cmd_msg_snapshot_free(struct imap_session *s);

#endif
