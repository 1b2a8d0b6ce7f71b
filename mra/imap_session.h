/* imap_session: the mra's IMAP4rev1 server connections (RFC 3501), on
 * the shared connection core (shared/conn.h): conn owns the socket, TLS,
 * ids, caps, pacing and "close once sent"; the session owns the parsed
 * command and, after login, the user's mstore and the selected folder.
 * Commands that touch the store run on the worker pool (the conn is BUSY
 * meanwhile: nothing is read and it is not freed until conn_ready()), the
 * rest on the loop. mra/main.c owns the struct imap_server (no global
 * state here), binds the sockets and calls imap_server_listen() once per
 * listening fd. */
#ifndef IMAP_SESSION_H
#define IMAP_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include "buf.h"
#include "err.h"
#include "imap_parser.h"

struct event_base;
struct work_pool;
struct passdb;
struct map;
struct mstore;
struct mstore_folder;
struct mstore_watch;
struct bufferevent;
struct event;
struct imap_cmd;
struct sasl_glue_server;
struct conn;
struct loginfail;
struct mra_userip;
struct imap_server;

/* Login name -> Maildir root; runs on a worker thread (may block). */
typedef int imap_mailbox_fn(void *arg, const char *user, char *out,
			    size_t out_size, struct err *err);
/* Login name -> quota in bytes (0: none); worker thread. */
typedef int imap_quota_fn(void *arg, const char *user, uint64_t *bytes_r,
			  struct err *err);

struct imap_settings {
	const char *hostname;
	struct passdb *passdb;
	int sasl;                    /* sasl_glue_server_init() was called */
	SSL_CTX *tls;                /* NULL: no STARTTLS, no IMAPS */
	int ssl_required;            /* ssl = required: no login before TLS */
	int disable_plaintext_auth;  /* LOGINDISABLED before TLS */
	imap_mailbox_fn *mailbox_fn;
	void *mailbox_arg;
	imap_quota_fn *quota_fn;     /* NULL: quota from maildirsize only */
	void *quota_arg;
	unsigned login_timeout;      /* seconds before login */
	unsigned idle_timeout;       /* seconds after login (RFC 3501 §5.4) */
	size_t max_line;             /* bytes per command line */
	size_t max_login_literal;    /* a literal before login (LOGIN,
				      * AUTHENTICATE): small, so that
				      * strangers cannot make us hold much */
	size_t max_literal;          /* a literal after login, held in
				      * memory; a bigger APPEND message is
				      * streamed to a file */
	size_t max_append;           /* APPEND message size limit */
	unsigned max_cmds_per_sec;   /* conn_pace(): beyond, reading pauses */
	unsigned max_auth_fails;     /* per connection, then BYE */
	unsigned max_conns;          /* mra_connection_limit; 0: none */
	unsigned max_conns_per_addr; /* mra_client_connection_count_limit */
	struct loginfail *loginfail; /* failed-login policy (borrowed) */
	struct mra_userip *userip;   /* mail_max_userip_connections (borrowed;
				      * NULL: no limit) */
};

/* While idling, the selected folder is closed and only this compact copy
 * of its view is kept (small per-connection state). */
struct imap_session_snap {
	uint32_t uid, kw;
	unsigned char flags;
};

enum imap_state {
	IMAP_ST_NOTAUTH,
	IMAP_ST_AUTH,
	IMAP_ST_SELECTED,
	IMAP_ST_LOGOUT,
};

/* What the input side is doing. */
enum imap_mode {
	IMAP_MODE_CMD,       /* reading commands (struct imap_reader) */
	IMAP_MODE_AUTH,      /* AUTHENTICATE continuation lines */
	IMAP_MODE_IDLE,      /* waiting for DONE (RFC 2177) */
};

#define IMAP_MAX_ARGS 512

/* The session's life is conn's state (OPEN, BUSY while a job of it runs,
 * CLOSING) plus the protocol state below (enum imap_state) and what the
 * input side reads (enum imap_mode). */
struct imap_session {
	uint64_t id;                 /* conn_id() */
	struct conn *conn;
	struct imap_server *srv;
	const struct imap_settings *set;
	struct event_base *base;
	struct work_pool *pool;
	const char *addr;            /* conn_addr(), valid while conn lives */
	enum imap_state state;
	enum imap_mode mode;
	unsigned auth_fails;
	char *user;
	int userip_held;             /* counted in set->userip */
	struct imap_cmd *auth_cmd;   /* AUTHENTICATE awaiting a line */
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
	unsigned bad_cmds;
	int idle_done_pending;
	/* Owned by whichever thread runs the current command. */
	struct mstore *ms;
	struct mstore_folder *folder;
	int readonly;
	uint64_t quota_limit;        /* bytes, 0: none */
	uint64_t quota_used;         /* bytes, as last seen */
	struct mstore_watch *watch;  /* while in IDLE (fallback) */
	int wd[2];                   /* shared inotify: new/, cur/ */
	char *idle_tag;
	int idle_dirty;
	struct imap_session_snap *snap;  /* the closed folder's view */
	size_t nsnap;
	char *snap_name;
	char *snap_path;
	int snap_readonly;
	struct imap_session *next, *prev;
};

/* The IMAP server: one conn_server for IMAP and IMAPS, the IDLE
 * notification state, the parser's scratch records. set is borrowed and
 * must outlive the server. */
struct imap_server *imap_server_new(struct event_base *base,
				    struct work_pool *pool,
				    const struct imap_settings *set,
				    struct err *err);
/* Serve IMAP (implicit_tls 0) or IMAPS (1) on the listening socket fd. */
int imap_server_listen(struct imap_server *srv, int fd, int implicit_tls,
		       struct err *err);
void imap_server_stop_listening(struct imap_server *srv);
/* Close every session and free (after work_pool_free, whose outstanding
 * done callbacks still find their sessions). */
void imap_server_free(struct imap_server *srv);
/* Number of live sessions (for tests and logs). */
unsigned imap_server_count(const struct imap_server *srv);

/* Used by the command handlers (imap_cmd*.c). */
void imap_session_send(struct imap_session *s, const char *data, size_t len);
void imap_session_printf(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imap_session_set_state(struct imap_session *s, enum imap_state st);
/* 1 when plaintext authentication is refused on this connection now. */
int imap_session_plain_disabled(const struct imap_session *s);
/* A failed login for command c (the loginfail check already waited):
 * log line for fail2ban, loginfail_record(), "tag NO reply" at once and
 * finish c (with BYE after max_auth_fails on this connection). */
void imap_session_auth_failed(struct imap_cmd *c, const char *user,
			      const char *mech, const char *reply);
/* Command c is complete: send its output, free it, apply its state
 * change and go on reading. Loop handlers call it (at once or from their
 * own job's done callback); pool commands get it automatically. */
void imap_session_cmd_done(struct imap_cmd *c);
/* Run c->def->fn on the pool, then imap_session_cmd_done(). */
int imap_session_cmd_submit(struct imap_cmd *c);
/* LOGOUT, BYE: close once the output is sent (conn_close). */
void imap_session_close(struct imap_session *s);
/* Find a live session by id (callbacks of jobs and of loginfail), else
 * NULL. A BUSY session is found until its conn_ready(). */
struct imap_session *imap_session_find(struct imap_server *srv, uint64_t id);

#endif
