/* tls: OpenSSL contexts, and libevent's bufferevent_openssl for the client
 * side of implicit TLS and STARTTLS (the server side is tls_srv.c). A
 * context is built once per daemon at start-up; each bufferevent made here
 * owns its SSL. A server context can be reloaded (SIGHUP): it then hands
 * new handshakes to a newer context that it owns (see
 * tls_server_ctx_reload). Loop thread only. */
#include <pthread.h>
#include <string.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include "tls.h"

/* TLS 1.2 suites: forward secrecy and AEAD only (RFC 7525 §4.2). */
#define TLS_CIPHERS_12 "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:" \
	"!aNULL:!eNULL:!PSK:!SRP"

/* TLS 1.3 suites of a server: OpenSSL's defaults, in its order */
#define TLS_SUITES_13 "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:" \
	"TLS_AES_128_GCM_SHA256"

static int tls_ssl_err(struct err *err, const char *what, const char *arg)
{
	char buf[160];
	unsigned long e = ERR_get_error();

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "unknown error");
	ERR_clear_error();
	return err_set(err, 0, "tls: %s%s%s: %s", what, arg ? " " : "",
		       arg ? arg : "", buf);
}

static SSL_CTX *tls_ctx_common(const SSL_METHOD *method, struct err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (ctx == NULL) {
		tls_ssl_err(err, "SSL_CTX_new", NULL);
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1) {
		tls_ssl_err(err, "protocol settings", NULL);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* OpenSSL 3 reports a peer that closes without close_notify as a
	 * protocol error, which libevent then cannot treat as the dirty
	 * shutdown it allows below: ask for the plain EOF instead. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
			    SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* idle connections keep no record buffers (about 34 KB each) */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

/* Reload. The daemon's context (the "front" one) has been handed to every
 * listener and session core at start-up, so it stays; a reload builds a
 * whole new context and keeps it in the front one's ex_data. At each
 * ClientHello the front context's servername callback (OpenSSL calls it
 * whether or not the client sent SNI) moves the new SSL onto the newest
 * context with SSL_set_SSL_CTX(), before the certificate is chosen. An SSL
 * holds a reference on its context and its own copy of the certificate
 * and key, so sessions already in TLS keep theirs; the replaced context is
 * freed when the last of them ends. */
static pthread_once_t tls_ex_once = PTHREAD_ONCE_INIT;
static int tls_ex_idx = -1;

static void tls_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			int idx, long argl, void *argp)
{
	SSL_CTX_free(ptr);
}

static void tls_ex_init(void)
{
	tls_ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
					      tls_ex_free);
}

/* borrowed: the context new handshakes on front use (front itself until
 * the first reload) */
static SSL_CTX *tls_ctx_current(SSL_CTX *front)
{
	SSL_CTX *cur = tls_ex_idx >= 0 ?
		       SSL_CTX_get_ex_data(front, tls_ex_idx) : NULL;

	return cur != NULL ? cur : front;
}

static int tls_servername_cb(SSL *ssl, int *alert, void *arg)
{
	SSL_CTX *cur = tls_ctx_current(arg);

	if (cur != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, cur) == NULL)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file,
			struct err *err)
{
	static const unsigned char sid_ctx[] = "mailpair";
	SSL_CTX *ctx;

	if (cert_file == NULL || key_file == NULL) {
		err_set(err, 0, "tls: no certificate or key file");
		return NULL;
	}
	ctx = tls_ctx_common(TLS_server_method(), err);
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_dh_auto(ctx, 1);
	/* OpenSSL's default TLS 1.3 suites, named so that a changed default
	 * cannot bring one tls13_rec does not do (tls_srv.c); the key log
	 * is how tls_srv gets the traffic secrets */
	if (SSL_CTX_set_ciphersuites(ctx, TLS_SUITES_13) != 1) {
		tls_ssl_err(err, "TLS 1.3 suites", NULL);
		goto fail;
	}
	SSL_CTX_set_keylog_callback(ctx, tls_srv_keylog);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		tls_ssl_err(err, "certificate", cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) ==
		    X509_R_KEY_VALUES_MISMATCH)
			tls_ssl_err(err, "key does not match certificate",
				    key_file);
		else
			tls_ssl_err(err, "private key", key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_ssl_err(err, "key does not match certificate", cert_file);
		goto fail;
	}
	if (pthread_once(&tls_ex_once, tls_ex_init) != 0 || tls_ex_idx < 0) {
		tls_ssl_err(err, "ex_data index", NULL);
		goto fail;
	}
	SSL_CTX_set_tlsext_servername_callback(ctx, tls_servername_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, ctx);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_server_ctx_reload(SSL_CTX *ctx, const char *cert_file,
			  const char *key_file, struct err *err)
{
	SSL_CTX *next, *old;

	if (ctx == NULL || tls_ex_idx < 0)
		return err_set(err, 0, "tls: no server context to reload");
	next = tls_server_ctx(cert_file, key_file, err);
	if (next == NULL)
		return -1;
	/* what the daemon set on its context after tls_server_ctx() */
	SSL_CTX_set_mode(next, SSL_CTX_get_mode(ctx));
	old = SSL_CTX_get_ex_data(ctx, tls_ex_idx);
	if (SSL_CTX_set_ex_data(ctx, tls_ex_idx, next) != 1) {
		SSL_CTX_free(next);
		return tls_ssl_err(err, "ex_data", NULL);
	}
	/* set_ex_data does not release what it replaces (only freeing ctx
	 * runs tls_ex_free); SSLs still on old hold their own reference */
	SSL_CTX_free(old);
	return 0;
}

int tls_server_ctx_describe(SSL_CTX *ctx, char *out, size_t n)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	char subj[256] = "", hex[2 * EVP_MAX_MD_SIZE + 1];
	X509 *x;
	int len;

	if (n == 0)
		return 0;
	out[0] = '\0';
	x = ctx != NULL ? SSL_CTX_get0_certificate(tls_ctx_current(ctx)) : NULL;
	if (x == NULL || X509_digest(x, EVP_sha256(), md, &mdlen) != 1)
		return 0;
	for (i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02X", md[i]);
	X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
	len = snprintf(out, n, "subject=%s, sha256=%s", subj, hex);
	if (len < 0) {
		out[0] = '\0';
		return 0;
	}
	return (size_t)len < n ? len : (int)n - 1;
}

SSL_CTX *tls_client_ctx(const char *ca_file, int verify, struct err *err)
{
	SSL_CTX *ctx = tls_ctx_common(TLS_client_method(), err);
	int ok;

	if (ctx == NULL)
		return NULL;
	/* The trust store is loaded even without verify, so that
	 * tls_peer_verified() can tell a trusted peer from an untrusted one. */
	if (ca_file != NULL)
		ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
	else
		ok = SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		tls_ssl_err(err, "CA file", ca_file ? ca_file : "(system)");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
			   NULL);
	return ctx;
}

/* Client side: SNI (host names only, RFC 6066 §3) and the name the
 * certificate must match (RFC 6125). */
static int tls_ssl_set_peer(SSL *ssl, const char *sni, struct err *err)
{
	unsigned char ip[16];
	int is_ip;

	if (sni == NULL || sni[0] == '\0')
		return 0;
	is_ip = inet_pton(AF_INET, sni, ip) == 1 ||
		inet_pton(AF_INET6, sni, ip) == 1;
	if (is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
						  sni) != 1)
			return tls_ssl_err(err, "peer address", sni);
		return 0;
	}
	if (SSL_set_tlsext_host_name(ssl, sni) != 1 ||
	    SSL_set1_host(ssl, sni) != 1)
		return tls_ssl_err(err, "peer name", sni);
	return 0;
}

static SSL *tls_ssl_new(SSL_CTX *ctx, const char *sni, struct err *err)
{
	SSL *ssl;

	if (ctx == NULL) {
		err_set(err, 0, "tls: no context");
		return NULL;
	}
	ssl = SSL_new(ctx);
	if (ssl == NULL) {
		tls_ssl_err(err, "SSL_new", NULL);
		return NULL;
	}
	if (tls_ssl_set_peer(ssl, sni, err) < 0) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

struct bufferevent *tls_bev_connect(struct event_base *base,
				    evutil_socket_t fd, SSL_CTX *ctx,
				    const char *sni, struct err *err)
{
	struct bufferevent *bev;
	SSL *ssl = tls_ssl_new(ctx, sni, err);

	if (ssl == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, fd, ssl,
					     BUFFEREVENT_SSL_CONNECTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		err_set(err, 1, "tls: cannot make a TLS bufferevent");
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

void tls_bev_state_get(struct bufferevent *bev, struct tls_bev_state *st)
{
	memset(st, 0, sizeof(*st));
	bufferevent_getcb(bev, &st->rcb, &st->wcb, &st->ecb, &st->arg);
	bufferevent_getwatermark(bev, EV_READ, &st->rlow, &st->rhigh);
	bufferevent_getwatermark(bev, EV_WRITE, &st->wlow, &st->whigh);
	st->tr = bev->timeout_read;
	st->tw = bev->timeout_write;
	st->enabled = bufferevent_get_enabled(bev);
}

void tls_bev_state_set(struct bufferevent *bev,
		       const struct tls_bev_state *st)
{
	bufferevent_setcb(bev, st->rcb, st->wcb, st->ecb, st->arg);
	bufferevent_setwatermark(bev, EV_READ, st->rlow, st->rhigh);
	bufferevent_setwatermark(bev, EV_WRITE, st->wlow, st->whigh);
	bufferevent_set_timeouts(bev, timerisset(&st->tr) ? &st->tr : NULL,
				 timerisset(&st->tw) ? &st->tw : NULL);
	bufferevent_enable(bev, st->enabled);
}

static struct bufferevent *tls_bev_filter(struct bufferevent *plain,
					  SSL_CTX *ctx, const char *sni,
					  struct err *err)
{
	struct tls_bev_state st;
	struct bufferevent *bev;
	SSL *ssl;

	if (plain == NULL || tls_bev_is_tls(plain)) {
		err_set(err, 0, "tls: STARTTLS on a connection already in TLS");
		return NULL;
	}
	ssl = tls_ssl_new(ctx, sni, err);
	if (ssl == NULL)
		return NULL;
	tls_bev_state_get(plain, &st);
	/* plain now carries ciphertext for the filter, which installs its
	 * own callbacks on it; the session's thresholds and timeouts belong
	 * to the clear text, on the new bufferevent. */
	bufferevent_setwatermark(plain, EV_READ | EV_WRITE, 0, 0);
	bufferevent_set_timeouts(plain, NULL, NULL);
	bev = bufferevent_openssl_filter_new(bufferevent_get_base(plain),
					     plain, ssl,
					     BUFFEREVENT_SSL_CONNECTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		tls_bev_state_set(plain, &st);
		err_set(err, 1, "tls: cannot make a TLS filter");
		return NULL;
	}
	tls_bev_state_set(bev, &st);
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

struct bufferevent *tls_bev_starttls_client(struct bufferevent *plain,
					    SSL_CTX *ctx, const char *sni,
					    struct err *err)
{
	/* RFC 3207 §4.2 holds for the client too: a server that sent more
	 * than its 220 before the handshake is not trusted with it. */
	if (plain != NULL)
		evbuffer_drain(bufferevent_get_input(plain),
			       evbuffer_get_length(
				       bufferevent_get_input(plain)));
	return tls_bev_filter(plain, ctx, sni, err);
}

int tls_bev_is_tls(struct bufferevent *bev)
{
	return bev != NULL && bufferevent_openssl_get_ssl(bev) != NULL;
}

/* The SSL of bev once its handshake is done, else NULL. */
static SSL *tls_bev_ssl_ready(struct bufferevent *bev)
{
	SSL *ssl;

	if (bev == NULL)
		return NULL;
	ssl = bufferevent_openssl_get_ssl(bev);
	if (ssl == NULL || !SSL_is_init_finished(ssl))
		return NULL;
	return ssl;
}

int tls_ssf(struct bufferevent *bev)
{
	SSL *ssl = tls_bev_ssl_ready(bev);

	return ssl == NULL ? 0 : SSL_get_cipher_bits(ssl, NULL);
}

int tls_peer_verified(struct bufferevent *bev)
{
	SSL *ssl = tls_bev_ssl_ready(bev);

	return ssl != NULL && SSL_get0_peer_certificate(ssl) != NULL &&
	       SSL_get_verify_result(ssl) == X509_V_OK;
}

const char *tls_bev_error(struct bufferevent *bev, char *out, size_t n)
{
	char first[160] = "";
	unsigned long e;
	long vr;
	SSL *ssl;

	if (n == 0)
		return out;
	out[0] = '\0';
	if (bev == NULL || (ssl = bufferevent_openssl_get_ssl(bev)) == NULL)
		return out;
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (first[0] == '\0')
			ERR_error_string_n(e, first, sizeof(first));
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK && SSL_get0_peer_certificate(ssl) != NULL)
		snprintf(out, n, "%s%s%s", first, first[0] ? ": " : "",
			 X509_verify_cert_error_string(vr));
	else
		snprintf(out, n, "%s", first);
	return out;
}
