/* pop3_session: the mra's POP3 server (RFC 1939, CAPA RFC 2449, AUTH RFC
 * 5034, STLS RFC 2595) over the INBOX of mstore. mra/main.c binds the
 * sockets (listen.h), drops privileges and calls pop3_listener_start()
 * once per listening fd; the sessions then live on the event loop, with
 * password checks, SASL steps and mailbox opening on the worker pool.
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
	int implicit_tls;              /* 1: this listener is POP3S */
	int disable_plaintext_auth;    /* Dovecot's; 1: USER/PASS/AUTH refused
	                                * before TLS */
	const char *mail_base;         /* virtual_mailbox_base: root of
	                                * base/<domain>/<local>/ when mailbox_fn
	                                * is NULL */
	pop3_mailbox_fn *mailbox_fn;   /* NULL: mstore_user_root(mail_base) */
	void *mailbox_arg;
	unsigned timeout;              /* idle seconds; 0: 600 (RFC 1939 §3) */
	unsigned auth_fail_delay_ms;   /* 0: 2000 */
	unsigned max_line;             /* 0: 512 (RFC 2449 §4: 255 + room) */
};

/* Serve POP3 (or POP3S when set->implicit_tls) on the listening socket fd
 * (non-blocking, already bound). set and what it points to are borrowed:
 * keep them alive while the loop runs. Returns 0, or -1 with err. */
int pop3_listener_start(struct event_base *base, struct work_pool *pool,
                        int fd, const struct pop3_settings *set,
                        struct err *err);

/* Stop accepting and close every session (shutdown before
 * work_pool_free). */
void pop3_shutdown(void);

#endif
