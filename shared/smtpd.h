/* smtpd: the SMTP server session engine (RFC 5321) shared by mx-relay and
 * submission, on the connection core (conn.h: listeners, TLS, caps,
 * back-pressure, timeouts, close after flush). The engine owns the protocol:
 * greeting, EHLO capabilities, PIPELINING, STARTTLS, AUTH (sasl_glue on the
 * worker pool), MAIL/RCPT/DATA/BDAT, limits, Received: header, queue ids,
 * logging. The daemon owns policy, through hooks; asynchronous hooks answer
 * later with smtpd_resume(), by session id, since the client may be gone. */
#ifndef SMTPD_H
#define SMTPD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include "err.h"
#include "smtp_cmd.h"

struct work_pool;
struct milter_conf;
struct smtpd_server;
struct smtpd_session;

/* A queue id (made by queue_qid_new(): hex upper case, unique across
 * hosts and processes); the size matches QUEUE_QID_LEN. */
#define SMTPD_QID_SIZE 24     /* 20 characters + NUL, with room */

/* Settings: copied at smtpd_server_new(); strings and pointers are borrowed
 * and must outlive the server. 0 / NULL gives the default noted. */
struct smtpd_settings {
	const char *name;            /* log/service name ("mx-relay"); Received */
	const char *myhostname;      /* greeting, EHLO, Received: by */
	const char *banner;          /* after "220 myhostname "; "ESMTP" */
	size_t message_size_limit;   /* body bytes (without our Received:);
	                                the message buffer never grows past
	                                it; 0: unlimited */
	int recipient_limit;         /* RCPTs per transaction; 0: 1000 */
	int timeout;                 /* seconds idle, waiting for the client
	                                to read its replies, or for a hook
	                                or SASL job; 0: 300 */
	int hard_error_limit;        /* errors before 421 + close; 0: 20 */
	int greet_wait_ms;           /* delay before 220, to catch talkers */
	size_t line_limit;           /* command line incl. CRLF; 0: 2048 */
	int allow_bare_newline;      /* 0 (default): bare LF/CR refused */
	SSL_CTX *tls_ctx;            /* NULL: no STARTTLS */
	int tls_required;            /* MAIL/AUTH refused before STARTTLS
	                                (smtpd_tls_security_level = encrypt) */
	int auth_enable;             /* offer AUTH (smtpd_sasl_auth_enable);
	                                the daemon calls sasl_glue_server_init()
	                                first; steps run on pool */
	int tls_auth_only;           /* AUTH only after TLS (default in ours) */
	int auth_broken_clients;     /* also "AUTH=PLAIN LOGIN" in EHLO, for
	                                pre-RFC 2554 Outlook (Postfix's
	                                broken_sasl_auth_clients) */
	const char *sasl_service;    /* Cyrus service name; NULL: "smtp" */
	const char *sasl_options;    /* smtpd_sasl_security_options; NULL ok */
	struct work_pool *pool;      /* for SASL steps (needed if auth_enable) */
	int no_chunking;             /* 1: do not offer CHUNKING/BDAT */
	int no_received;             /* 1: do not prepend Received: */
	unsigned connection_limit;   /* connections at once (Postfix's
	                                process limit; our
	                                smtpd_connection_limit); 0: none */
	unsigned client_connection_limit; /* at once per client address
	                                (smtpd_client_connection_count_limit);
	                                0: none. Over either: 421 4.7.0,
	                                close. Counted per server (port), as
	                                Postfix counts per service */
	const struct milter_conf *milters; /* smtpd_milters (milter.h);
	                                NULL or none listed: no milters. The
	                                engine talks to them at HELO, MAIL,
	                                RCPT, DATA (before 354) and end of
	                                data, after the
	                                daemon's hook said yes, on a pool of
	                                its own (milter_worker_threads), and
	                                hands the message hook the message
	                                as the milters changed it */
};

/* Listener flags */
#define SMTPD_LISTEN_TLS 0x01        /* implicit TLS (port 465) */

/* A message handed to the message hook. It belongs to the hook, which
 * frees it with smtpd_msg_free() (at once is fine once the data was
 * copied, e.g. into a Redis command). */
struct smtpd_msg {
	char qid[SMTPD_QID_SIZE];
	char *sender;                /* "" for the null sender <> */
	char **rcpts;                /* nrcpt mailboxes, no angle brackets */
	char **orcpts;               /* ORCPT= (xtext decoded) or NULL each */
	int *notify;                 /* SMTP_NOTIFY_* bits per rcpt (or 0) */
	int nrcpt;
	char *data;                  /* Received: + message, CRLF lines, */
	size_t len;                  /*   dot-unstuffed; len bytes          */
	int body;                    /* SMTP_BODY_* from MAIL BODY= */
	int smtputf8;                /* MAIL ... SMTPUTF8 */
	char *envid;                 /* ENVID= (xtext decoded) or NULL */
	int ret;                     /* SMTP_RET_* or 0 */
	/* who sent it (XFORWARD values when the client used XFORWARD) */
	char *client_name, *client_addr, *helo, *auth_user;
	char *xforward_ident;        /* XFORWARD IDENT= (the upstream qid) */
	char *protocol;              /* "ESMTP", "ESMTPS", "ESMTPSA", ... */
	char *quarantine;            /* a milter's QUARANTINE reason: keep the
	                                message on hold; NULL: deliver */
};
void smtpd_msg_free(struct smtpd_msg *m);

/* Replies the engine writes itself (Postfix-like, RFC 3463 codes):
 *   pre-greeting talker   554 5.5.1 ... talking too early (then close)
 *   line too long         500 5.5.2 Error: line too long (resync at LF)
 *   bare LF/CR in command 521 5.5.2 ... bare <LF> received (then close)
 *   bare LF/CR in DATA    550 5.5.2 after the end of data (message dropped)
 *   SIZE= over the limit  552 5.3.4; body over it: 552 5.3.4 after DATA
 *   too many recipients   452 4.5.3      idle: 421 4.4.2 (then close)
 *   smtpd_hard_error_limit reached: 421 4.7.0 (then close)
 *   over a connection limit: 421 4.7.0 <host> Error: too many connections
 *       [from <addr>] (then close)
 *   STARTTLS: 220 2.0.0, pipelined plaintext discarded, all state reset
 *   replies left unread past 64 KB: no more input is read until they go;
 *   after the timeout the session closes ("replies not read"); so it does
 *   when a hook or SASL job keeps the client waiting past the timeout
 *   XFORWARD: all attributes or none (501 5.5.4 for a bad one)
 * Logs: "connect from", "QID: client=", "QID: reject: ...",
 * "QID: from=<>, size=, nrcpt=", "disconnect from ... commands=". */

/* Hooks. Each may be NULL (then: accept). ctx is the server's hook ctx.
 * Asynchronous hooks ("answer with smtpd_resume") leave the session
 * waiting: it reads no further command until smtpd_resume() is called,
 * which may also happen from inside the hook itself. */
struct smtpd_hooks {
	/* Before the greeting (rate limits, ...). Answer with smtpd_resume:
	 * code 0 sends the 220 greeting; a 4xx/5xx is sent and the
	 * connection closed (e.g. 421 4.7.0 too many connections). */
	void (*connect)(struct smtpd_session *s, void *ctx);
	/* sender: "" for <>. Answer: 0 -> "250 2.1.0 Ok". */
	void (*mail)(struct smtpd_session *s, const char *sender, void *ctx);
	/* rcpt: the parsed mailbox. Answer: 0 -> "250 2.1.5 Ok". */
	void (*rcpt)(struct smtpd_session *s, const char *rcpt, void *ctx);
	/* The whole message (owned by the hook). Answer: 0 ->
	 * "250 2.0.0 Ok: queued as QID"; or 4xx/5xx with text. An answer for
	 * a client that has left is dropped (and logged). */
	void (*message)(struct smtpd_session *s, struct smtpd_msg *m,
	                void *ctx);
	/* Before an AUTH exchange starts (e.g. refuse a client with too many
	 * failures). Answer: 0 -> go on; else that reply. */
	void (*auth_check)(struct smtpd_session *s, const char *mech,
	                   void *ctx);
	/* The SASL exchange ended in a yes (ok 1, user: the authorized
	 * identity) or a no (ok 0, user: the name tried, raw client bytes,
	 * or NULL), before any reply and before the login is committed: the
	 * time to wait a failed-login delay and to refuse a flooding
	 * address. user is borrowed for the call. Answer: 0 -> as without
	 * the hook (235 or 535, then auth_result); else that reply (e.g. 454
	 * 4.7.0), with no login and no auth_result. */
	void (*auth_verdict)(struct smtpd_session *s, const char *mech,
	                     const char *user, int ok, void *ctx);
	/* Synchronous notices and questions: */
	/* ok 1: user is the authorized identity. ok 0 (bad credentials):
	 * user is the authentication id the client tried, raw client bytes
	 * (clean before logging), or NULL when none was learnt. */
	void (*auth_result)(struct smtpd_session *s, const char *mech,
	                    const char *user, int ok, void *ctx);
	/* 1: XFORWARD allowed. Asked at EHLO (offer it or not), again when
	 * XFORWARD arrives and after a successful AUTH (its answer may
	 * change with the login); 0 refuses with 550 5.7.0. */
	int (*xforward_ok)(struct smtpd_session *s, void *ctx);
	void (*disconnect)(struct smtpd_session *s, void *ctx); /* free data */
};

/* base: the loop; settings and hooks are copied. NULL + err on failure. */
struct smtpd_server *smtpd_server_new(struct event_base *base,
    const struct smtpd_settings *set, const struct smtpd_hooks *hooks,
    void *ctx, struct err *err);
/* Accept on a bound, listening socket (from listen_inet); flags
 * SMTPD_LISTEN_*. The server owns fd from then on. */
int smtpd_server_listen(struct smtpd_server *srv, int fd, int flags,
    struct err *err);
/* Start a session on a connected socket (when the daemon accepts). The
 * server owns fd, also on failure. */
int smtpd_server_accept(struct smtpd_server *srv, int fd,
    const struct sockaddr *sa, int salen, int flags, struct err *err);
/* Stop accepting; sessions go on. */
void smtpd_server_stop_listening(struct smtpd_server *srv);
/* Closes every session and frees. SASL jobs still on the worker pool are
 * safe: the last one to finish frees what is left of the server. Callers
 * of smtpd_resume() (Redis callbacks, ...) must be gone before this. */
void smtpd_server_free(struct smtpd_server *srv);
unsigned smtpd_server_sessions(const struct smtpd_server *srv);

/* The session of sid, for a daemon's callback that needs more than
 * smtpd_resume() (its data, its client); NULL once it is gone or
 * closing. Borrowed: valid until the callback returns. */
struct smtpd_session *smtpd_session_find(struct smtpd_server *srv,
    uint64_t sid);

/* Answer an asynchronous hook. code 0: the default success; a 2xx: success
 * with that reply (MAIL, RCPT, message); otherwise an
 * SMTP code (250, 421, 450, 451, 452, 550, 552, 554, ...) with text that
 * starts with the enhanced status code ("5.1.1 <u@d>: Recipient address
 * rejected: User unknown"), text may be NULL for a generic one. A 421
 * closes the session after the reply. Unknown or gone sid: ignored, returns
 * -1 (the caller may log). */
int smtpd_resume(struct smtpd_server *srv, uint64_t sid, int code,
    const char *text);

/* Before answering the mail or rcpt hook: the transport and next hop the
 * sender (recipient) resolves to, for the milters' {mail_mailer} and
 * {mail_host} ({rcpt_mailer}, {rcpt_host}), as Postfix's resolver gives
 * them ("smtp" and "[relay.example]:587", "virtual" and "demo.test").
 * Without it: "smtp" and the address's domain. Copied; a no-op without
 * milters or for a sid that waits for neither hook. */
void smtpd_set_route(struct smtpd_server *srv, uint64_t sid,
    const char *mailer, const char *host);
/* 1 when the server talks to milters (to skip work only they need). */
int smtpd_server_milters(const struct smtpd_server *srv);

/* Session accessors (all borrowed, valid while the session lives). */
uint64_t smtpd_session_id(const struct smtpd_session *s);
struct smtpd_server *smtpd_session_server(const struct smtpd_session *s);
const char *smtpd_session_qid(const struct smtpd_session *s); /* "" none */
const char *smtpd_session_client_addr(const struct smtpd_session *s);
const char *smtpd_session_client_name(const struct smtpd_session *s);
int smtpd_session_client_port(const struct smtpd_session *s);
const char *smtpd_session_helo(const struct smtpd_session *s); /* or NULL */
const char *smtpd_session_sender(const struct smtpd_session *s);
const char *smtpd_session_auth_user(const struct smtpd_session *s);
int smtpd_session_tls(const struct smtpd_session *s);  /* 1 when active */
int smtpd_session_nrcpt(const struct smtpd_session *s);
/* MAIL FROM SIZE= value, 0 when not given. */
size_t smtpd_session_declared_size(const struct smtpd_session *s);
void smtpd_session_set_data(struct smtpd_session *s, void *data);
void *smtpd_session_data(const struct smtpd_session *s);

#endif
