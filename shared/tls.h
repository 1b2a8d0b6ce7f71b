/* tls: OpenSSL contexts and libevent bufferevents for implicit TLS
 * (465/993/995) and STARTTLS (RFC 3207, RFC 2595). A context is shared by
 * every connection of a daemon; each returned bufferevent owns its SSL.
 * All functions run on the loop thread. */
#ifndef TLS_H
#define TLS_H

#include <stddef.h>
#include <openssl/ssl.h>
#include <sys/time.h>
#include <event2/bufferevent.h>
#include <event2/util.h>
#include "err.h"

struct event_base;
struct bufferevent;

/* Server context: TLS 1.2 or later, forward-secret AEAD ciphers for 1.2,
 * server cipher preference, no compression, no renegotiation.
 * cert_file is PEM and may hold the chain after the leaf; key_file may
 * equal cert_file. Fails when the key does not match the certificate.
 * The context's servername (SNI) callback is ours, for the reload below:
 * do not replace it. Free with SSL_CTX_free(). */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file,
			struct err *err);

/* SIGHUP: read cert_file and key_file again, with every check of
 * tls_server_ctx(), into a new context that new handshakes on ctx (one made
 * by tls_server_ctx) use from now on; the previous one is kept alive by
 * the sessions still using it, which keep their certificate. ctx keeps its
 * address, so whoever holds it needs no update. On failure (missing file,
 * key not matching the certificate) -1, err says why, and ctx goes on
 * serving the certificate it had. ctx's own SSL_CTX_free() releases the
 * newest context. */
int tls_server_ctx_reload(SSL_CTX *ctx, const char *cert_file,
			  const char *key_file, struct err *err);

/* For the log: "subject=/CN=mail.example.org, sha256=AB01..." of the
 * certificate new handshakes on ctx get; returns the length, 0 and "" when
 * there is none. */
int tls_server_ctx_describe(SSL_CTX *ctx, char *out, size_t n);

/* Client context: TLS 1.2 or later. ca_file NULL uses the system trust
 * store. verify=1: the handshake fails unless the peer's chain verifies
 * and (when an sni name is given to tls_bev_*_client) the certificate
 * matches that name. verify=0: opportunistic (Postfix "may"/"encrypt"). */
SSL_CTX *tls_client_ctx(const char *ca_file, int verify, struct err *err);

/* Every bufferevent returned below:
 *  - owns its TLS state (its SSL; on the server side, after a TLS 1.3
 *    handshake, tls13_rec's keys instead) and closes/frees what it wraps
 *    when freed (BEV_OPT_CLOSE_ON_FREE);
 *  - reports an EOF without close_notify as BEV_EVENT_EOF (dirty shutdown
 *    allowed: many mail clients just close; the mail protocols carry their
 *    own end markers);
 *  - reports a failed handshake as BEV_EVENT_ERROR (see tls_bev_error(),
 *    tls_srv_error());
 *  - signals BEV_EVENT_CONNECTED when the handshake completes.
 * On failure they return NULL with err filled. */

/* The server side of a connection in TLS (tls_srv.c). A struct tls_srv
 * belongs to the bufferevent it was made with and is freed with it. */
struct tls_srv;

/* Implicit TLS, server side: handshake as server on an accepted fd. On
 * failure the fd is NOT closed (the caller still owns it). The caller sets
 * callbacks, watermarks and timeouts and enables EV_READ. *ts is set to
 * the connection's TLS state (borrowed: valid while the bufferevent is). */
struct bufferevent *tls_bev_accept(struct event_base *base,
				   evutil_socket_t fd, SSL_CTX *ctx,
				   struct tls_srv **ts, struct err *err);

/* Implicit TLS, client side, on a connected (or connecting) fd; sni NULL:
 * no SNI and no name check. On failure the fd is NOT closed. */
struct bufferevent *tls_bev_connect(struct event_base *base,
				    evutil_socket_t fd, SSL_CTX *ctx,
				    const char *sni, struct err *err);

/* STARTTLS: wrap an existing plain bufferevent in a TLS filter.
 *
 * State hand-over: the new bufferevent takes plain's callbacks (same
 * cbarg), read/write watermarks, timeouts and enabled events; plain's own
 * callbacks are replaced by the filter's. From this call on the caller
 * must use ONLY the returned bufferevent (store it in the session before
 * returning to the loop), never plain again: plain is freed when the new
 * one is freed. On failure NULL is returned and plain is untouched and
 * still the caller's.
 *
 * Server: first write the "220 Ready to start TLS" (IMAP: "OK Begin TLS",
 * POP3: "+OK") reply to plain, then call this at once: bytes already queued
 * on plain's output are sent before the handshake. RFC 3207 §4.2 / RFC
 * 2595 §3.1: anything the client pipelined after STARTTLS is discarded:
 * plain's input buffer is drained here (the caller should already have
 * done so), and bytes still unread in the socket break the handshake.
 *
 * Server: *ts as for tls_bev_accept(). Client: call after reading the
 * server's 220 to STARTTLS. sni as for tls_bev_connect(). */
struct bufferevent *tls_bev_starttls_server(struct bufferevent *plain,
					    SSL_CTX *ctx,
					    struct tls_srv **ts,
					    struct err *err);
struct bufferevent *tls_bev_starttls_client(struct bufferevent *plain,
					    SSL_CTX *ctx, const char *sni,
					    struct err *err);

/* The client side (tls_bev_connect, tls_bev_starttls_client). */

/* 1 when bev is a client TLS bufferevent, 0 otherwise. */
int tls_bev_is_tls(struct bufferevent *bev);

/* Cipher strength in bits (the SASL external SSF); 0 when not TLS. */
int tls_ssf(struct bufferevent *bev);

/* 1 when the peer presented a certificate that verified against ctx's
 * trust store (for client-side logging: "Verified" vs "Untrusted"). */
int tls_peer_verified(struct bufferevent *bev);

/* Text of the last TLS error on bev for logs ("certificate verify failed",
 * "wrong version number", ...); "" when none. Call from the event
 * callback that got BEV_EVENT_ERROR. Returns out. */
const char *tls_bev_error(struct bufferevent *bev, char *out, size_t n);

/* The server side: the same questions about a struct tls_srv (NULL is
 * "not TLS"). Before the handshake ends they answer as for no TLS. */
int tls_srv_done(const struct tls_srv *ts);            /* handshake over */
/* e.g. "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
 * (Postfix's Received header text); returns its length, 0 and "" before
 * the handshake ends */
int tls_srv_describe(const struct tls_srv *ts, char *out, size_t n);
int tls_srv_ssf(const struct tls_srv *ts);
const char *tls_srv_version(const struct tls_srv *ts); /* "TLSv1.3" */
const char *tls_srv_cipher(const struct tls_srv *ts);  /* OpenSSL's name */
const char *tls_srv_error(const struct tls_srv *ts, char *out, size_t n);
/* 1 once TLS 1.3 records are done without OpenSSL's SSL object (see
 * tls_srv.c); 0 while OpenSSL does them (TLS 1.2). */
int tls_srv_offloaded(const struct tls_srv *ts);

/* Internal to tls.c and tls_srv.c. */

/* What a session set on its plain bufferevent, moved to the TLS one at
 * STARTTLS. */
struct tls_bev_state {
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	void *arg;
	size_t rlow, rhigh, wlow, whigh;
	struct timeval tr, tw;
	short enabled;
};
void tls_bev_state_get(struct bufferevent *bev, struct tls_bev_state *st);
void tls_bev_state_set(struct bufferevent *bev,
		       const struct tls_bev_state *st);

/* The server context's key log callback: it hands the TLS 1.3 traffic
 * secrets to the connection's tls_srv (and writes no file). */
void tls_srv_keylog(const SSL *ssl, const char *line);

#endif
