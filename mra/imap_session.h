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

/* The protocol states of RFC 3501 §3, in which a command may be valid
 * (struct imap_cmd_def.states). The session's own state machine, with
 * its finer states, is private to imap_session.c. */
enum imap_state {
	IMAP_ST_NOTAUTH,
	IMAP_ST_AUTH,
	IMAP_ST_SELECTED,
	IMAP_ST_LOGOUT,
};

/* The IMAP server: one conn_server for IMAP and IMAPS, the IDLE
 * notification state, the parser's scratch records. set is borrowed and
 * must outlive the server. The sessions are private to it. */
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

#endif
