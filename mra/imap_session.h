/* imap_session: the mra's IMAP4rev1 server connections (RFC 3501). The
 * session owns its bufferevent, the parsed command and, after login, the
 * user's mstore and the selected folder. Commands that touch the store run
 * on the worker pool (the session is "busy" meanwhile and reads nothing),
 * the rest on the loop. mra/main.c binds the sockets and calls
 * imap_listener_start() once per listening fd. */
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
	unsigned max_cmds_per_sec;   /* beyond: reading pauses */
	unsigned max_auth_fails;     /* per connection, then BYE */
	unsigned max_auth_fails_ip;  /* per client address per window */
	unsigned auth_fail_window;   /* seconds */
	unsigned auth_fail_delay_ms; /* first delay, doubles each time */
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

struct imap_session {
	uint64_t id;
	const struct imap_settings *set;
	struct event_base *base;
	struct work_pool *pool;
	struct bufferevent *bev;
	char addr[64];               /* client address */
	char local_ipport[80], remote_ipport[80];
	int tls;                     /* 1 once TLS is up */
	int implicit_tls;
	enum imap_state state;
	enum imap_mode mode;
	int busy;                    /* a job is on the pool */
	int closing;                 /* free when the job comes back */
	int paused;                  /* reading paused (rate, output) */
	unsigned auth_fails;
	unsigned cmd_count;          /* commands this second */
	long cmd_second;
	struct event *timer;         /* delays: failed auth, rate limit */
	char *user;
	struct imap_cmd *auth_cmd;   /* AUTHENTICATE awaiting a line */
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
	int logout_pending;
	unsigned linger;
	int out_paused;
	int in_input;
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

/* Serve IMAP (implicit_tls 0) or IMAPS (1) on the listening socket fd.
 * set is borrowed and must live while the loop runs. */
int imap_listener_start(struct event_base *base, struct work_pool *pool,
			int fd, const struct imap_settings *set,
			int implicit_tls, struct err *err);
/* Stop accepting; close every session (before work_pool_free). */
void imap_shutdown(void);
/* Number of live sessions (for tests and logs). */
unsigned imap_session_count(void);

/* Used by the command handlers (imap_cmd*.c). */
void imap_session_send(struct imap_session *s, const char *data, size_t len);
void imap_session_printf(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imap_session_set_state(struct imap_session *s, enum imap_state st);
/* 1 when plaintext authentication is refused on this connection now. */
int imap_session_plain_disabled(const struct imap_session *s);
/* Record a failed login for command c (log line, counters), then after a
 * growing delay send "tag NO reply" and finish c (or BYE after too many). */
void imap_session_auth_failed(struct imap_cmd *c, const char *user,
			      const char *mech, const char *reason,
			      const char *reply);
/* 1 when this client address has failed too often lately. */
int imap_session_addr_blocked(const struct imap_session *s);
/* Command c is complete: send its output, free it, apply its state
 * change and go on reading. Loop handlers call it (at once or from their
 * own job's done callback); pool commands get it automatically. */
void imap_session_cmd_done(struct imap_cmd *c);
/* Run c->def->fn on the pool, then imap_session_cmd_done(). */
int imap_session_cmd_submit(struct imap_cmd *c);
void imap_session_close(struct imap_session *s);
/* Find a live session by id (pool callbacks), else NULL. */
struct imap_session *imap_session_find(uint64_t id);

#endif
