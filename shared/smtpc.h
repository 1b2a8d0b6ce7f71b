/* smtpc: asynchronous SMTP client on libevent bufferevents, one struct
 * smtpc per connection to one destination. It connects (trying the given
 * addresses in order), says EHLO (HELO as fallback), STARTTLS (RFC 3207)
 * per the TLS level, AUTH through sasl_glue (RFC 4954), XFORWARD
 * (Postfix), then MAIL/RCPT/DATA with PIPELINING when offered (RFC 2920),
 * and reports one result per recipient. After a message the connection
 * stays open for the next one (RSET in between) until smtpc_free().
 * Everything runs on the loop thread; nothing here blocks (the caller
 * resolves addresses and looks up credentials on the worker pool). */
#ifndef SMTPC_H
#define SMTPC_H

#include <stddef.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include "err.h"
#include "queue.h"

enum smtpc_tls {
	SMTPC_TLS_NONE,     /* never STARTTLS */
	SMTPC_TLS_MAY,      /* STARTTLS when offered; plaintext otherwise */
	SMTPC_TLS_ENCRYPT   /* STARTTLS required: no mail in plaintext */
};

struct smtpc_conf {
	const char *helo_name;        /* our myhostname */
	enum smtpc_tls tls_level;
	SSL_CTX *tls_ctx;             /* client ctx (tls_client_ctx), borrowed */
	int connect_timeout;          /* seconds */
	int cmd_timeout;              /* seconds, each reply */
	int data_timeout;             /* seconds, reply to the final "." */
	int xforward;                 /* send XFORWARD when offered */
};

struct smtpc_addr {
	struct sockaddr_storage sa;
	char host[256];               /* name for SNI, SASL and logs */
};

struct smtpc;

/* One recipient's outcome: code 250 delivered, 4xx try later, 5xx
 * failed for good. reply: the server's text (or our own reason), one
 * line, malloc'd. */
struct smtpc_rcpt_result {
	int code;
	char *reply;
};

struct smtpc_result {
	size_t n;                       /* = number of recipients sent */
	struct smtpc_rcpt_result *r;    /* in the order given */
	char relay[320];                /* "host[1.2.3.4]:25" or "none" */
	int tls;                        /* 1 when the session was TLS */
};

/* Called once per smtpc_send, on the loop. res is borrowed: valid during
 * the call. The connection can be used again (smtpc_send) afterwards when
 * smtpc_usable() says so, else free it. */
typedef void smtpc_done_cb(void *arg, struct smtpc *c,
    const struct smtpc_result *res);

/* addrs: tried in order until one gives a usable session (copied).
 * user/pass: SMTP AUTH credentials (copied), NULL for no AUTH. */
struct smtpc *smtpc_new(struct event_base *base,
    const struct smtpc_conf *conf, const struct smtpc_addr *addrs,
    size_t naddrs, const char *user, const char *pass, struct err *err);

/* Send one message to the recipients rcpt_idx[0..nidx) of env. data is
 * the queued message (dot-unstuffed, CRLF). env and data are borrowed
 * until cb runs. */
void smtpc_send(struct smtpc *c, const struct queue_env *env,
    const char *data, size_t len, const size_t *rcpt_idx, size_t nidx,
    smtpc_done_cb *cb, void *arg);

/* 1 when the session is up and idle (ready for another smtpc_send). */
int smtpc_usable(const struct smtpc *c);
/* Sends QUIT when idle, then closes (the loop finishes the QUIT after
 * this returns). Never calls a pending callback. */
void smtpc_free(struct smtpc *c);
/* Closes at once without QUIT: when nothing will run the loop again. */
void smtpc_abort(struct smtpc *c);
/* Connections given up with smtpc_free() still waiting for the reply to
 * their QUIT (at most a few seconds each). A daemon that stops runs its
 * loop until this is 0 so that the servers see a QUIT, not a lost
 * connection. */
unsigned smtpc_closing(void);
/* Closes those at once. */
void smtpc_closing_abort(void);
/* For a daemon that stops, after its queue managers are freed and before
 * event_base_free(): runs base until every QUIT is answered (a few seconds
 * at most), then closes whatever is left. Everything else on base runs
 * meanwhile too. */
void smtpc_closing_drain(struct event_base *base);

/* Pure helpers, exported for the tests. */
/* RFC 3461 §4 xtext for XFORWARD attribute values: "+" and "=" and
 * controls become +XX. Returns bytes written (always NUL-terminated). */
size_t smtpc_xtext(const char *in, char *out, size_t outsz);

#endif
