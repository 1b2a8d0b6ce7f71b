/* pop3_session: the mra's POP3 server (RFC 1939, CAPA RFC 2449, AUTH RFC
 * 5034, STLS RFC 2595, response codes RFC 2449 §8 and RFC 3206) over the
 * INBOX of mstore, on the shared connection core (shared/conn.h: accept,
 * TLS, STLS, caps per address and in total, pacing, idle timeout, close
 * after flush). mra/main.c binds the sockets (listen.h), drops privileges,
 * makes one pop3_server and gives it every POP3 and POP3S socket; the
 * sessions then live on the event loop, with password checks, SASL steps,
 * mailbox opening, reads and the UPDATE expunge on the worker pool. Failed
 * logins go through shared/loginfail (per address and per (address,
 * user), shared with IMAP and submission).
 *
 * Choices: RETR/TOP do not set \Seen (as Dovecot's default); DELE only
 * marks, the messages are expunged at QUIT (UPDATE state, RFC 1939 §6);
 * UIDL is "%08X%08X" of the store's UID and UIDVALIDITY, so it is stable
 * and the same whatever IMAP did meanwhile. */
#ifndef POP3_SESSION_H
#define POP3_SESSION_H

#include <openssl/ssl.h>
#include "err.h"

struct event_base;
struct work_pool;
struct passdb;
struct loginfail;
struct mra_userip;
struct pop3_server;

/* Maps a login name to its Maildir root; runs on a worker thread.
 * Returns 0, or -1 with err (temp=1: try later). */
typedef int pop3_mailbox_fn(void *arg, const char *user, char *out,
                            size_t out_size, struct err *err);

struct pop3_settings {
	const char *hostname;          /* greeting and SASL fqdn */
	struct passdb *passdb;         /* USER/PASS (passdb_verify on the pool) */
	int sasl;                      /* offer AUTH: main.c has called
	                                * sasl_glue_server_init() */
	SSL_CTX *tls;                  /* NULL: no STLS (and no POP3S) */
	int disable_plaintext_auth;    /* Dovecot's; 1: USER/PASS/AUTH refused
	                                * before TLS */
	const char *mail_base;         /* virtual_mailbox_base: root of
	                                * base/<domain>/<local>/ when mailbox_fn
	                                * is NULL */
	pop3_mailbox_fn *mailbox_fn;   /* NULL: mstore_user_root(mail_base) */
	void *mailbox_arg;
	unsigned timeout;              /* idle seconds; 0: 600 (RFC 1939 §3) */
	unsigned max_line;             /* 0: 512 (RFC 2449 §4: 255 + room) */
	struct loginfail *loginfail;   /* failed-login policy (shared/
	                                * loginfail.h); NULL: none */
	unsigned max_conns;            /* connections at once, POP3 and POP3S
	                                * together; 0: no cap */
	unsigned max_conns_per_addr;   /* per client address; 0: no cap */
	struct mra_userip *userip;     /* logged-in sessions per (user,
	                                * address) (mra_userip.h); NULL: none */
};

/* One server for every POP3 and POP3S socket (the caps count them
 * together). set and what it points to are borrowed: keep them alive
 * until pop3_server_free(). NULL + err when out of memory. */
struct pop3_server *pop3_server_new(struct event_base *base,
                                    struct work_pool *pool,
                                    const struct pop3_settings *set,
                                    struct err *err);

/* Serve POP3, or POP3S when implicit_tls, on the listening socket fd
 * (non-blocking, already bound); the server owns fd from then on.
 * Returns 0, or -1 with err. */
int pop3_server_listen(struct pop3_server *srv, int fd, int implicit_tls,
                       struct err *err);

/* Stop accepting (the sessions go on). */
void pop3_server_stop_listening(struct pop3_server *srv);

/* Connections now, POP3 and POP3S (tests, logs). */
unsigned pop3_server_count(const struct pop3_server *srv);

/* Stop accepting, close every session and free (before work_pool_free:
 * jobs still out free what they hold when their results come back). */
void pop3_server_free(struct pop3_server *srv);

#endif
