/* imap_session_int: the session layer's private parts, shared by
 * imap_session.c (connections, input, the state machine, IDLE) and
 * imap_login.c (STARTTLS, LOGIN, AUTHENTICATE). Nothing in the command
 * layer (imap_commands.c and below) includes this. */
#ifndef IMAP_SESSION_INT_H
#define IMAP_SESSION_INT_H

#include <stdint.h>
#include <time.h>
#include "imap_cmd.h"
#include "imap_parser.h"
#include "imap_session.h"

#define IMAP_MAX_ARGS 512

/* The session's state machine; every change goes through
 * imap_session_enter(), which checks it against this diagram:
 *
 *   NOTAUTH --LOGIN / AUTHENTICATE succeeds------------------> AUTH
 *   NOTAUTH --AUTHENTICATE wants a client line--> SASL --line--> NOTAUTH
 *   AUTH --SELECT / EXAMINE succeeds--> SELECTED
 *   SELECTED --CLOSE, UNSELECT, a failed SELECT--> AUTH
 *   AUTH, SELECTED --IDLE--> IDLE --DONE--> AUTH or SELECTED
 *   any --LOGOUT, BYE, timeout, fatal error--> LOGOUT (nothing more read)
 *
 * (SASL goes back to NOTAUTH and the command's reply, success or not,
 * moves on from there.) Independently, conn says whether a job of the
 * session is running (BUSY: nothing is read, the session is not freed). */
enum imap_sstate {
	IMAP_SS_NOTAUTH,
	IMAP_SS_SASL,
	IMAP_SS_AUTH,
	IMAP_SS_SELECTED,
	IMAP_SS_IDLE,
	IMAP_SS_LOGOUT,
};

struct imap_session {
	uint64_t id;                 /* conn_id() */
	struct conn *conn;
	struct imap_server *srv;
	const struct imap_settings *set;
	struct event_base *base;
	struct work_pool *pool;
	const char *addr;            /* conn_addr(), valid while conn lives */
	enum imap_sstate st;
	unsigned auth_fails;
	unsigned bad_cmds;
	struct imap_user *u;         /* after login (owned) */
	int userip_held;             /* counted in set->userip */
	struct imap_cmd *auth_cmd;   /* AUTHENTICATE awaiting a line (SASL) */
	struct imap_cmd *lf_cmd;     /* LOGIN/AUTHENTICATE awaiting the
				      * loginfail check (conn BUSY) */
	struct imap_reader rd;       /* the command being read */
	/* An APPEND message streamed to an unlinked file in the user's
	 * Maildir tmp/ while it arrives (never held in memory whole); the
	 * command's bytes before it wait in lit_prefix. Handed to the
	 * command (imap_cmd.lit_fd) once it is complete. */
	int lit_fd;                  /* -1: none */
	int lit_err;                 /* errno of a failed write, else 0 */
	uint64_t lit_size;
	char *lit_prefix;
	size_t lit_prefix_len;
	/* IDLE (RFC 2177) */
	char *idle_tag;              /* the IDLE command's tag (owned) */
	int idle_dirty;              /* a change came while a sync ran */
	struct mstore_watch *watch;  /* fallback watch */
	int wd[2];                   /* shared inotify: new/, cur/ */
	struct imap_session *next, *prev;
};

/* ---- imap_session.c, for imap_login.c ---- */
void imap_session_send(struct imap_session *s, const char *data, size_t len);
void imap_session_printf(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The one place the state changes (asserts the diagram above). */
void imap_session_enter(struct imap_session *s, enum imap_sstate st);
/* 1 when plaintext authentication is refused on this connection now. */
int imap_session_plain_disabled(const struct imap_session *s);
/* Capability text for this session's state, without "* CAPABILITY ". */
void imap_session_capability_text(const struct imap_session *s,
				  struct buf *out);
/* Command c is complete: send its output and tagged reply, free it,
 * apply its state change and go on reading. */
void imap_session_cmd_done(struct imap_cmd *c);
/* LOGOUT, BYE: close once the output is sent (conn_close). */
void imap_session_close(struct imap_session *s);
/* Find a live session by id (callbacks of jobs and of loginfail), else
 * NULL. A BUSY session is found until its conn_ready(). */
struct imap_session *imap_session_find(struct imap_server *srv, uint64_t id);

/* ---- imap_login.c ---- */
void imap_login_starttls(struct imap_cmd *c);
void imap_login_login(struct imap_cmd *c);
void imap_login_authenticate(struct imap_cmd *c);
/* AUTHENTICATE: the client line for c (s->auth_cmd) arrived. */
void imap_login_auth_line(struct imap_cmd *c, const char *line, size_t len);

#endif
