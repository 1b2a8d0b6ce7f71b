/* imap_cmd: one IMAP command in flight, the logged-in user's mailbox
 * state it works on, and the reply helpers. This is the bottom of the
 * IMAP command layer: the handlers (imap_cmd_mbox.c, imap_cmd_msg.c,
 * with imap_fetch, imap_search, imap_selected, imap_view below them) see
 * only struct imap_cmd and struct imap_user, never the session; they fill
 * the command's output and result fields and return, and the session
 * (imap_session.c, above imap_commands.c) sends and acts on them. A
 * command owns a copy of its bytes (the parsed arguments point into it). */
#ifndef IMAP_CMD_H
#define IMAP_CMD_H

#include <stdint.h>
#include "buf.h"
#include "imap_parser.h"
#include "imap_session.h"
#include "imap_selected.h"

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
#define IMAP_CMD_MBOX1    0x08   /* the first argument is a mailbox name */
#define IMAP_CMD_MBOX2    0x10   /* the second argument is a mailbox name */

struct imap_cmd_def {
	const char *name;
	unsigned states;
	unsigned flags;
	imap_cmd_fn *fn;
};

struct imap_cmd {
	struct imap_session *s;      /* the session layer's, opaque here */
	struct imap_user *u;         /* NULL before login */
	const struct imap_settings *set;
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
	struct buf out;              /* untagged responses */
	struct buf tagged;           /* the tagged reply (imap_cmd_ok...) */
	int new_state;               /* -1: unchanged */
	int logout;                  /* close after sending out */
	int no_sync;                 /* no view sync after the handler */
	struct imap_arg *lit_arg;    /* APPEND: the message argument whose
				      * bytes are in lit_fd, not in bytes */
	int lit_fd;                  /* -1 unless lit_arg; closed with c */
	int lit_err;                 /* the stream failed (errno) */
	uint64_t lit_size;
	void *priv;                  /* handler's own */
	void (*priv_free)(void *);   /* frees priv with the command */
};

/* A new command for session s (opaque here), user u (NULL before
 * login). NULL when out of memory. */
struct imap_cmd *imap_cmd_new(struct imap_session *s, uint64_t sid,
			      struct imap_user *u,
			      const struct imap_settings *set);
void imap_cmd_free(struct imap_cmd *c);

/* The tagged reply, into c->tagged (replacing one written before). */
void imap_cmd_ok(struct imap_cmd *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imap_cmd_no(struct imap_cmd *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imap_cmd_bad(struct imap_cmd *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Append an IMAP string: atom-safe text as quoted, else a literal.
 * -1 (out may hold part of it) when s holds a NUL, which IMAP4rev1
 * cannot carry, or the buffer is full. (FLAGS lists: imap_flags.h.) */
int imap_cmd_put_string(struct buf *out, const char *s, size_t len);
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
void imap_cmd_msg_unselect(struct imap_cmd *c);
void imap_cmd_msg_close(struct imap_cmd *c);
void imap_cmd_msg_expunge(struct imap_cmd *c);
void imap_cmd_msg_store(struct imap_cmd *c);
void imap_cmd_msg_copy(struct imap_cmd *c);
void imap_cmd_msg_fetch(struct imap_cmd *c);
void imap_cmd_msg_search(struct imap_cmd *c);

#endif
