/* conn: the connection core under the SMTP, IMAP and POP3 servers. It
 * owns the plumbing they share: listeners and accept, implicit TLS and
 * STARTTLS, session ids, the connection's life as one explicit state,
 * back-pressure, command pacing per second, idle timeouts, connection caps
 * per client address and in total, and "close once the output is sent".
 * The protocol owns its session (returned by ops->open, freed in
 * ops->closed); the server owns every struct conn. */
#ifndef CONN_H
#define CONN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include "err.h"

struct event_base;
struct bufferevent;
struct tls_srv;
struct conn;
struct conn_server;

/* The one life state of a connection; only conn.c changes it. */
enum conn_state {
	CONN_ST_OPEN,      /* reading: ops->input runs when bytes arrive */
	CONN_ST_BUSY,      /* a job of the session runs elsewhere (worker
	                      pool, Redis, a delay): nothing is read, and the
	                      conn is not freed, until conn_ready() (but see
	                      conn_settings.busy_detached) */
	CONN_ST_CLOSING,   /* flushing the last reply; freed once sent */
};

/* Why a new connection is refused (ops->refuse writes the reply). */
enum conn_refusal {
	CONN_REFUSE_TOTAL,     /* max_total connections reached */
	CONN_REFUSE_ADDR,      /* max_per_addr from this address reached */
};

struct conn_settings {
	const char *service;     /* for log lines: "smtpd", "imap", "pop3" */
	SSL_CTX *tls;            /* NULL: no STARTTLS and no implicit TLS */
	unsigned max_total;      /* connections at once; 0: no cap */
	unsigned max_per_addr;   /* per client address; 0: no cap
	                            (Postfix smtpd_client_connection_count_limit,
	                            Dovecot mail_max_userip_connections) */
	unsigned max_cmds_per_sec; /* conn_pace(); 0: no pacing */
	int timeout;             /* seconds without input before
	                            ops->timeout; 0: none. It also ends a
	                            client that leaves output over
	                            write_hiwat unread this long */
	int busy_detached;       /* 1: the protocol's jobs find their
	                            session by id and expect it may be
	                            gone or CLOSING: a BUSY conn reads
	                            on into its buffer (nothing is handed
	                            to ops->input), so a client that
	                            leaves is seen and freed at once, and
	                            timeout runs while BUSY too (then the
	                            conn closes without conn_ready()).
	                            0: a BUSY conn lives until conn_ready() */
	size_t read_hiwat;       /* input buffered before TCP pushes back,
	                            and the most read at once; 0: 64 KiB */
	size_t write_hiwat;      /* output queued before input pauses until
	                            it drains to write_hiwat / 4; 0: 256 KiB */
	unsigned linger_ms;      /* longest wait to flush before a close;
	                            0: 5000 */
};

/* Listener flag: implicit TLS (465, 993, 995). */
#define CONN_LISTEN_TLS 0x01

/* Callbacks; ctx is the server's. None of them may free the conn: a close
 * is requested with conn_close() and happens once the callback returned. */
struct conn_ops {
	/* A new connection (under the caps): write the greeting and return
	 * the protocol's session, or NULL to drop the connection. */
	void *(*open)(struct conn *c, void *ctx);
	/* Write the polite refusal ("421 4.7.0 ...", "* BYE ...", "-ERR
	 * [IN-USE] ..."); the core closes after it. May be NULL. */
	void (*refuse)(struct conn *c, enum conn_refusal why, void *ctx);
	/* Input is waiting and the conn is OPEN: consume what can be. */
	void (*input)(struct conn *c, void *sess, void *ctx);
	/* No input for settings.timeout seconds while OPEN (or output left
	 * unread that long, or BUSY that long with busy_detached): write the
	 * farewell; the core then closes. May be NULL. */
	void (*timeout)(struct conn *c, void *sess, void *ctx);
	/* The conn is going away (close, client gone, TLS error): free sess.
	 * conn accessors still work; no more output is sent. gone is 1 when
	 * the client left or failed (why: "lost connection", a TLS error),
	 * 0 after conn_close(). */
	void (*closed)(struct conn *c, void *sess, int gone, const char *why,
	               void *ctx);
};

struct conn_server *conn_server_new(struct event_base *base,
    const struct conn_settings *set, const struct conn_ops *ops, void *ctx,
    struct err *err);
/* Accept on a bound, listening socket; the server owns fd from then on. */
int conn_server_listen(struct conn_server *srv, int fd, int flags,
                       struct err *err);
/* Serve a connected socket (a daemon that accepts by itself, tests). The
 * server owns fd, also on failure. */
int conn_server_accept(struct conn_server *srv, int fd,
                       const struct sockaddr *sa, socklen_t salen, int flags,
                       struct err *err);
void conn_server_stop_listening(struct conn_server *srv);
/* Closes every conn (ops->closed with gone 0 each) and frees. */
void conn_server_free(struct conn_server *srv);
unsigned conn_server_count(const struct conn_server *srv);
/* Connections from addr now. */
unsigned conn_server_count_addr(const struct conn_server *srv,
                                const char *addr);

/* A live conn by id (callbacks of jobs: the client may have gone), or
 * NULL. A BUSY conn stays findable until conn_ready() (unless
 * busy_detached), a CLOSING one until it is flushed. */
struct conn *conn_find(struct conn_server *srv, uint64_t id);

/* Accessors; strings are borrowed, valid while the conn lives. */
uint64_t conn_id(const struct conn *c);
struct conn_server *conn_server(const struct conn *c);
enum conn_state conn_state(const struct conn *c);
/* The bufferevent: it changes at conn_starttls(); NULL once the client
 * is gone (a BUSY conn whose client left). */
struct bufferevent *conn_bev(const struct conn *c);
/* The connection's TLS state (tls.h's tls_srv_* answer from it), NULL
 * while in plaintext or once the client is gone. */
struct tls_srv *conn_tls_srv(const struct conn *c);
const char *conn_addr(const struct conn *c);          /* "192.0.2.1" */
int conn_port(const struct conn *c);
const char *conn_local_ipport(const struct conn *c);  /* "a.b.c.d;port" */
const char *conn_remote_ipport(const struct conn *c); /* SASL form */
int conn_tls(const struct conn *c);                   /* 1: TLS is up */
int conn_implicit_tls(const struct conn *c);
void *conn_session(const struct conn *c);
/* 1 when the client has gone (only seen while BUSY, never with
 * busy_detached). */
int conn_gone(const struct conn *c);

/* Output. Dropped silently once the conn is CLOSING or the client gone.
 * Inside a protocol callback (ops->open, input, timeout) it is gathered
 * and handed to the bufferevent in one piece when the callback returns;
 * conn_flush() hands it over now (before adding to conn_bev()'s output
 * directly). Elsewhere it goes to the bufferevent at once. */
void conn_write(struct conn *c, const void *data, size_t len);
void conn_flush(struct conn *c);
/* Output written between conn_hold() and conn_release() is gathered as
 * inside a protocol callback and handed over at the release in one piece
 * (on a plain socket, sent at once: no write event, no loop turn). For
 * answers that arrive from elsewhere: a worker, Redis. Pairs nest; the
 * conn must not be freed in between (conn_close is fine). */
void conn_hold(struct conn *c);
void conn_release(struct conn *c);
void conn_printf(struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* fmt's text and CRLF, added as one piece. */
void conn_vline(struct conn *c, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
void conn_vprintf(struct conn *c, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Output not yet sent, on the bufferevent and, after STARTTLS, under
 * its TLS filter. */
size_t conn_output_len(const struct conn *c);

/* OPEN -> BUSY: no input is handed over until conn_ready(). */
void conn_busy(struct conn *c);
/* BUSY -> OPEN: reading resumes and pending input is handed to
 * ops->input from the loop (never from inside this call); after a
 * conn_close() asked meanwhile, the conn closes now. Returns 0; or -1
 * when the client was found gone meanwhile: the conn is then freed
 * (ops->closed called) before this returns, or at once after the
 * protocol callback on the stack, so the caller must not touch c or its
 * session afterwards. Reading is off while BUSY, so a client that just
 * closes is mostly seen after conn_ready(), by the read side. */
int conn_ready(struct conn *c);
/* Close once every queued byte has left (at most linger_ms). A BUSY conn
 * closes at its conn_ready(). Idempotent. */
void conn_close(struct conn *c);

/* RFC 3207 §4.2, RFC 2595 §3.1: forget every byte the client sent after
 * the STARTTLS command (the CVE-2011-0411 injection), then wrap the
 * connection in TLS. The caller has already queued its "go ahead" reply.
 * 0, or -1 with err (the conn is untouched, still plaintext). */
int conn_starttls(struct conn *c, struct err *err);

/* Call before each command. 0: go on (the command is counted against
 * max_cmds_per_sec). 1: not now, leave the command unread: the output is
 * over write_hiwat (a client that pipelines and never reads), or the rate
 * is; reading pauses until the output drains or the next second, then
 * ops->input is called again. */
int conn_pace(struct conn *c);

#endif
