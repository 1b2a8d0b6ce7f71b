/* sasl_glue: Cyrus SASL for our servers (submission AUTH, IMAP
 * AUTHENTICATE, POP3 AUTH) and for our SMTP AUTH client (the mx-relay
 * forwarder, outbound relayhost). Passwords are checked by the daemon's own
 * function (its password maps), never by sasldb or saslauthd. Everything on
 * the wire is base64 text exactly as the protocols carry it. */
#ifndef SASL_GLUE_H
#define SASL_GLUE_H

#include <stddef.h>
#include <sys/socket.h>
#include "err.h"

/* 1: password good, 0: bad (or no such user), -1: temporary failure (the
 * map could not be read). user is exactly what the client sent as its
 * authentication id (user@domain kept whole: no realm added or split).
 * Called synchronously inside sasl_glue_server_start/_step, so those run on
 * a worker thread (work.h); fn must be thread-safe. */
typedef int sasl_glue_checkpass_fn(void *arg, const char *user,
				   const char *pass);

/* Once per process, before any thread uses SASL. appname names Cyrus's
 * config (it is never read: all options come from us). mech_list NULL
 * means "PLAIN LOGIN". Calling it again returns 0 without changing
 * anything. */
int sasl_glue_server_init(const char *appname, const char *mech_list,
			  sasl_glue_checkpass_fn *fn, void *arg,
			  struct err *err);

enum sasl_glue_rc {
	SASL_GLUE_OK,        /* authenticated: see sasl_glue_server_user() */
	SASL_GLUE_CONTINUE,  /* send *out_r as a challenge ("334 ", "+ ") */
	SASL_GLUE_FAIL,      /* bad credentials: 535 5.7.8 / NO / -ERR */
	SASL_GLUE_TEMPFAIL,  /* checkpass said -1, or out of memory: 454 4.7.0 */
	SASL_GLUE_BADPROT,   /* bad base64, "*" cancel, protocol misuse: 501 / BAD */
	SASL_GLUE_NOMECH     /* mechanism not offered: 504 5.5.4 / NO */
};

struct sasl_glue_server;

/* One per authentication attempt (make a new one after a failure, as the
 * state of a failed exchange cannot be reused). service: "smtp", "imap",
 * "pop". fqdn: our myhostname (never NULL: Cyrus would then resolve the
 * local host name, a blocking DNS lookup). *_ipport: "192.0.2.7;25" (Cyrus's form,
 * see sasl_glue_ipport()) or NULL. ssf: the TLS strength (tls_ssf()), 0
 * in plaintext. Security options default to Postfix's
 * smtpd_sasl_security_options = noanonymous. */
struct sasl_glue_server *sasl_glue_server_new(const char *service,
					      const char *fqdn,
					      const char *local_ipport,
					      const char *remote_ipport,
					      int ssf, struct err *err);

/* Postfix smtpd_sasl_security_options words, comma or space separated:
 * noanonymous, noplaintext, nodictionary, noactive, mutual_auth,
 * forward_secrecy. Replaces the default; call before _mechs/_start.
 * 0, or -1 for an unknown word. */
int sasl_glue_server_set_options(struct sasl_glue_server *s,
				 const char *options, struct err *err);

/* "PLAIN LOGIN": the mechanisms usable on this connection, space
 * separated, possibly "" (then do not offer AUTH). Borrowed: valid until
 * sasl_glue_server_free(). */
const char *sasl_glue_server_mechs(struct sasl_glue_server *s);

/* in: base64 as on the wire. NULL: no initial response; "=": an empty
 * initial response (RFC 4954 §4); "*" (step only): the client cancels
 * (SASL_GLUE_BADPROT). On CONTINUE *out_r is a malloc'd base64 challenge
 * (may be ""); on OK *out_r is NULL or malloc'd base64 "additional data
 * with success"; otherwise NULL. The caller frees *out_r. These may call
 * the checkpass function, so run them on a worker thread; one connection
 * is used by one thread at a time. */
enum sasl_glue_rc sasl_glue_server_start(struct sasl_glue_server *s,
					 const char *mech, const char *in,
					 char **out_r);
enum sasl_glue_rc sasl_glue_server_step(struct sasl_glue_server *s,
					const char *in, char **out_r);

/* The authenticated (authorization) identity after OK, else NULL.
 * Borrowed: valid until sasl_glue_server_free(). */
const char *sasl_glue_server_user(struct sasl_glue_server *s);
/* The authentication id the client tried in this exchange, as it sent it
 * (success or not), else NULL: for failure logs only, never an identity
 * to trust. Raw client bytes up to 255 (no NUL): the caller cleans it
 * before logging. Borrowed: valid until the next start/step or free. */
const char *sasl_glue_server_attempted_user(struct sasl_glue_server *s);
/* The mechanism of the last start, for logs ("sasl_method=PLAIN"). */
const char *sasl_glue_server_mech(struct sasl_glue_server *s);
/* Short reason for the last failure, for logs; never holds a password. */
const char *sasl_glue_server_error(struct sasl_glue_server *s);
void sasl_glue_server_free(struct sasl_glue_server *s);

/* ---- client ---- */

/* Once per process before any client is made. mech_list NULL means
 * "PLAIN LOGIN" (never a mechanism that needs more than user and password,
 * such as GSSAPI). Optional: sasl_glue_client_new() calls it with the
 * defaults when nobody did. */
int sasl_glue_client_init(const char *appname, const char *mech_list,
			  struct err *err);

struct sasl_glue_client;

/* service "smtp"; server_fqdn: the name of the host we talk to; user and
 * pass are copied. ssf: tls_ssf() of the connection (0: plaintext: then
 * no PLAIN or LOGIN is ever chosen, so the password never goes out in the
 * clear). Note: Cyrus resolves the local host name here (getaddrinfo of
 * gethostname()), which can block on DNS when the name is not in
 * /etc/hosts: create clients on a worker thread or at start-up. */
struct sasl_glue_client *sasl_glue_client_new(const char *service,
					      const char *server_fqdn,
					      const char *user,
					      const char *pass, int ssf,
					      struct err *err);

/* server_mechs: the server's list ("PLAIN LOGIN CRAM-MD5", the EHLO AUTH
 * keyword's value). Picks one: *mech_r (borrowed, valid until free) and
 * *out_r, the malloc'd base64 initial response, "=" for an empty one, or
 * NULL for none (then send "AUTH LOGIN" alone). Returns CONTINUE (or OK
 * when the mechanism has nothing more to say), NOMECH when no common
 * mechanism, FAIL/TEMPFAIL otherwise. */
enum sasl_glue_rc sasl_glue_client_start(struct sasl_glue_client *c,
					 const char *server_mechs,
					 const char **mech_r, char **out_r);
/* in_b64: the server's challenge (the text after "334 "). *out_r: the
 * malloc'd base64 response (may be ""). CONTINUE, or BADPROT for a
 * challenge that is not base64. */
enum sasl_glue_rc sasl_glue_client_step(struct sasl_glue_client *c,
					const char *in_b64, char **out_r);
/* Last error text for logs (never the password). */
const char *sasl_glue_client_error(struct sasl_glue_client *c);
void sasl_glue_client_free(struct sasl_glue_client *c);

/* "192.0.2.7;25" / "2001:db8::1;587": the ipport form Cyrus wants. */
void sasl_glue_ipport(const struct sockaddr *sa, char *out, size_t n);

#endif
