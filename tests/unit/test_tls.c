/* Tests for tls: real OpenSSL handshakes through libevent over socket
 * pairs, with a throw-away CA, server certificate and untrusted certificate
 * made by the test itself in a temporary folder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "tls.h"

static char test_dir[64];
static char test_ca[128], test_chain[128], test_key[128];
static char test_bad_cert[128], test_bad_key[128];

/* ---- throw-away certificates ---- */

static void test_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A certificate for key, named cn, signed by ca_key (itself when NULL). */
static X509 *test_cert(EVP_PKEY *key, const char *cn, X509 *ca,
		       EVP_PKEY *ca_key, int is_ca)
{
	X509 *x = X509_new();
	X509_NAME *name;
	static long serial = 1;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 2 * 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name);
	if (is_ca) {
		test_add_ext(x, ca ? ca : x, NID_basic_constraints,
			     "critical,CA:TRUE");
		test_add_ext(x, ca ? ca : x, NID_key_usage,
			     "critical,keyCertSign,cRLSign");
	} else {
		test_add_ext(x, ca ? ca : x, NID_subject_alt_name,
			     "DNS:localhost,IP:127.0.0.1");
	}
	assert_true(X509_sign(x, ca_key ? ca_key : key, EVP_sha256()) > 0);
	return x;
}

static void test_write(const char *path, X509 *x1, X509 *x2, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	if (x1 != NULL)
		assert_int_equal(PEM_write_X509(f, x1), 1);
	if (x2 != NULL)
		assert_int_equal(PEM_write_X509(f, x2), 1);
	if (key != NULL)
		assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0,
						      NULL, NULL), 1);
	fclose(f);
}

static int test_setup(void **st)
{
	EVP_PKEY *ca_key, *key, *bad_key;
	X509 *ca, *leaf, *bad;

	/* As in the daemons: a peer that vanished is an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);

	snprintf(test_dir, sizeof(test_dir), "/tmp/test_tls.XXXXXX");
	if (mkdtemp(test_dir) == NULL)
		return -1;
	snprintf(test_ca, sizeof(test_ca), "%s/ca.pem", test_dir);
	snprintf(test_chain, sizeof(test_chain), "%s/chain.pem", test_dir);
	snprintf(test_key, sizeof(test_key), "%s/key.pem", test_dir);
	snprintf(test_bad_cert, sizeof(test_bad_cert), "%s/bad.pem", test_dir);
	snprintf(test_bad_key, sizeof(test_bad_key), "%s/badkey.pem",
		 test_dir);
	ca_key = EVP_EC_gen("P-256");
	key = EVP_EC_gen("P-256");
	bad_key = EVP_EC_gen("P-256");
	if (ca_key == NULL || key == NULL || bad_key == NULL)
		return -1;
	ca = test_cert(ca_key, "Test CA", NULL, NULL, 1);
	leaf = test_cert(key, "localhost", ca, ca_key, 0);
	bad = test_cert(bad_key, "localhost", NULL, NULL, 0);
	test_write(test_ca, ca, NULL, NULL);
	/* Leaf then intermediate/CA: the usual smtpd_tls_cert_file. */
	test_write(test_chain, leaf, ca, NULL);
	test_write(test_key, NULL, NULL, key);
	test_write(test_bad_cert, bad, NULL, NULL);
	test_write(test_bad_key, NULL, NULL, bad_key);
	X509_free(ca);
	X509_free(leaf);
	X509_free(bad);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
	EVP_PKEY_free(bad_key);
	return 0;
}

static int test_teardown(void **st)
{
	unlink(test_ca);
	unlink(test_chain);
	unlink(test_key);
	unlink(test_bad_cert);
	unlink(test_bad_key);
	rmdir(test_dir);
	return 0;
}

/* ---- a tiny two-ended conversation on one event loop ---- */

#define TEST_BULK 200000

struct test_end {
	struct test_conv *conv;
	struct bufferevent *bev;
	struct tls_srv *ts;          /* server end in TLS, else NULL */
	int offloaded;               /* tls_srv_offloaded() when connected */
	char version[16];            /* tls_srv_version() when connected */
	int connected, error, eof;
	char errtext[256];
	char describe[128];
	int ssf;
	size_t bulk;                 /* bytes of bulk data received */
	char line[256];              /* last line received */
};

struct test_conv {
	struct event_base *base;
	SSL_CTX *sctx, *cctx;
	const char *sni;
	struct test_end server, client;
	int starttls;                /* plain first, then STARTTLS */
	int done;
	size_t server_high;          /* watermark seen after the switch */
	int saw_injection;
};

static void test_fail_timeout(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static int test_readline(struct bufferevent *bev, char *out, size_t n)
{
	char *l = evbuffer_readln(bufferevent_get_input(bev), NULL,
				  EVBUFFER_EOL_CRLF_STRICT);

	if (l == NULL)
		return 0;
	snprintf(out, n, "%s", l);
	free(l);
	return 1;
}

static void test_event(struct bufferevent *bev, short what, void *arg)
{
	struct test_end *e = arg;

	if (what & BEV_EVENT_CONNECTED) {
		e->connected = 1;
		if (e->ts != NULL) {
			e->ssf = tls_srv_ssf(e->ts);
			tls_srv_describe(e->ts, e->describe,
					 sizeof(e->describe));
			e->offloaded = tls_srv_offloaded(e->ts);
			snprintf(e->version, sizeof(e->version), "%s",
				 tls_srv_version(e->ts));
		} else {
			e->ssf = tls_ssf(bev);
		}
		if (e == &e->conv->client)
			bufferevent_write(bev, "EHLO client.test\r\n", 18);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		e->error = 1;
		if (e->ts != NULL)
			tls_srv_error(e->ts, e->errtext, sizeof(e->errtext));
		else
			tls_bev_error(bev, e->errtext, sizeof(e->errtext));
	}
	if (what & BEV_EVENT_EOF)
		e->eof = 1;
	if (e->conv->client.error || e->conv->server.error)
		event_base_loopexit(e->conv->base, NULL);
}

static void test_server_read(struct bufferevent *bev, void *arg)
{
	struct test_end *e = arg;
	struct test_conv *c = e->conv;
	struct err err;
	size_t low;

	e->bev = bev;
	while (test_readline(bev, e->line, sizeof(e->line))) {
		if (strcmp(e->line, "STARTTLS") == 0 && e->ts == NULL) {
			bufferevent_write(bev, "220 2.0.0 Ready\r\n", 17);
			e->bev = tls_bev_starttls_server(bev, c->sctx, &e->ts,
							 &err);
			assert_non_null(e->bev);
			bufferevent_getwatermark(e->bev, EV_READ, &low,
						 &c->server_high);
			return;
		}
		if (strncmp(e->line, "MAIL", 4) == 0)
			c->saw_injection = 1;
		if (strncmp(e->line, "EHLO", 4) == 0) {
			char *bulk = malloc(TEST_BULK);

			assert_non_null(bulk);
			memset(bulk, 'x', TEST_BULK);
			bufferevent_write(bev, "250 hello\r\n", 11);
			bufferevent_write(bev, bulk, TEST_BULK);
			free(bulk);
		}
	}
}

static void test_client_read(struct bufferevent *bev, void *arg)
{
	struct test_end *e = arg;
	struct test_conv *c = e->conv;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct err err;

	e->bev = bev;
	if (e->line[0] == '\0' || strncmp(e->line, "220", 3) == 0) {
		if (!test_readline(bev, e->line, sizeof(e->line)))
			return;
		if (strncmp(e->line, "220", 3) == 0 && c->starttls &&
		    !tls_bev_is_tls(bev)) {
			e->bev = tls_bev_starttls_client(bev, c->cctx, c->sni,
							 &err);
			assert_non_null(e->bev);
			return;
		}
	}
	e->bulk += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (e->bulk >= TEST_BULK) {
		c->done = 1;
		event_base_loopexit(c->base, NULL);
	}
}

/* Run one conversation; returns after success, an error, or 10 s. */
static void test_run(struct test_conv *c)
{
	int sv[2];
	struct err err;
	struct timeval tv = { 10, 0 };
	struct event *timeout;

	c->base = event_base_new();
	assert_non_null(c->base);
	c->server.conv = c->client.conv = c;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	if (c->starttls) {
		c->server.bev = bufferevent_socket_new(c->base, sv[0],
						       BEV_OPT_CLOSE_ON_FREE);
		c->client.bev = bufferevent_socket_new(c->base, sv[1],
						       BEV_OPT_CLOSE_ON_FREE);
	} else {
		c->server.bev = tls_bev_accept(c->base, sv[0], c->sctx,
					       &c->server.ts, &err);
		c->client.bev = tls_bev_connect(c->base, sv[1], c->cctx,
						c->sni, &err);
	}
	assert_non_null(c->server.bev);
	assert_non_null(c->client.bev);
	bufferevent_setcb(c->server.bev, test_server_read, NULL, test_event,
			  &c->server);
	bufferevent_setcb(c->client.bev, test_client_read, NULL, test_event,
			  &c->client);
	bufferevent_setwatermark(c->server.bev, EV_READ, 0, 4096);
	bufferevent_enable(c->server.bev, EV_READ | EV_WRITE);
	bufferevent_enable(c->client.bev, EV_READ | EV_WRITE);
	if (c->starttls) {
		/* Plaintext pipelined after STARTTLS must never be obeyed
		 * (RFC 3207 §4.2). */
		bufferevent_write(c->client.bev,
				  "STARTTLS\r\nMAIL FROM:<evil@x>\r\n", 30);
	}
	timeout = evtimer_new(c->base, test_fail_timeout, c->base);
	evtimer_add(timeout, &tv);
	event_base_dispatch(c->base);
	event_free(timeout);
	bufferevent_free(c->server.bev);
	bufferevent_free(c->client.bev);
	event_base_free(c->base);
}

static SSL_CTX *test_server_ctx(void)
{
	struct err err;
	SSL_CTX *ctx = tls_server_ctx(test_chain, test_key, &err);

	if (ctx == NULL)
		assert_non_null(ctx);
	return ctx;
}

static SSL_CTX *test_client_ctx(int verify)
{
	struct err err;
	SSL_CTX *ctx = tls_client_ctx(test_ca, verify, &err);

	assert_non_null(ctx);
	return ctx;
}

static void test_implicit_tls(void **st)
{
	struct test_conv c;

	memset(&c, 0, sizeof(c));
	c.sctx = test_server_ctx();
	c.cctx = test_client_ctx(1);
	c.sni = "localhost";
	test_run(&c);
	assert_true(c.done);
	assert_true(c.server.connected && c.client.connected);
	assert_false(c.server.error || c.client.error);
	assert_string_equal(c.client.line, "250 hello");
	assert_int_equal(c.client.bulk, TEST_BULK);
	assert_non_null(strstr(c.server.describe, "TLSv1.3 with cipher "));
	assert_non_null(strstr(c.server.describe, "bits)"));
	assert_true(c.server.ssf >= 128);
	assert_true(c.client.ssf >= 128);
	/* TLS 1.3: the records are tls13_rec's, the SSL is gone */
	assert_true(c.server.offloaded);
	assert_string_equal(c.server.version, "TLSv1.3");
	SSL_CTX_free(c.sctx);
	SSL_CTX_free(c.cctx);
}

static void test_starttls(void **st)
{
	struct test_conv c;

	memset(&c, 0, sizeof(c));
	c.sctx = test_server_ctx();
	c.cctx = test_client_ctx(1);
	c.sni = "localhost";
	c.starttls = 1;
	test_run(&c);
	assert_true(c.done);
	assert_false(c.server.error || c.client.error);
	/* The EHLO arrived over TLS, and the pipelined MAIL never did. */
	assert_string_equal(c.server.line, "EHLO client.test");
	assert_false(c.saw_injection);
	assert_int_equal(c.client.bulk, TEST_BULK);
	assert_non_null(strstr(c.server.describe, " with cipher "));
	assert_true(c.server.ssf >= 128);
	/* The session's watermark moved to the TLS bufferevent. */
	assert_int_equal(c.server_high, 4096);
	assert_true(c.server.offloaded);
	SSL_CTX_free(c.sctx);
	SSL_CTX_free(c.cctx);
}

static void test_untrusted_refused(void **st)
{
	struct test_conv c;
	struct err err;

	memset(&c, 0, sizeof(c));
	c.sctx = tls_server_ctx(test_bad_cert, test_bad_key, &err);
	assert_non_null(c.sctx);
	c.cctx = test_client_ctx(1);
	c.sni = "localhost";
	test_run(&c);
	assert_false(c.done);
	assert_true(c.client.error);
	assert_false(c.client.connected);
	assert_non_null(strstr(c.client.errtext, "certificate verify failed"));
	SSL_CTX_free(c.sctx);
	SSL_CTX_free(c.cctx);
}

static void test_wrong_name_refused(void **st)
{
	struct test_conv c;

	memset(&c, 0, sizeof(c));
	c.sctx = test_server_ctx();
	c.cctx = test_client_ctx(1);
	c.sni = "mail.example.org";
	c.starttls = 1;
	test_run(&c);
	assert_false(c.done);
	assert_true(c.client.error);
	assert_false(c.saw_injection);
	SSL_CTX_free(c.sctx);
	SSL_CTX_free(c.cctx);
}

static void test_untrusted_opportunistic(void **st)
{
	struct test_conv c;
	struct err err;

	/* verify=0 (smtp_tls_security_level = may): it works, encrypted,
	 * but the peer is not reported as verified. */
	memset(&c, 0, sizeof(c));
	c.sctx = tls_server_ctx(test_bad_cert, test_bad_key, &err);
	assert_non_null(c.sctx);
	c.cctx = test_client_ctx(0);
	c.sni = "localhost";
	test_run(&c);
	assert_true(c.done);
	assert_true(c.client.ssf >= 128);
	SSL_CTX_free(c.sctx);
	SSL_CTX_free(c.cctx);
}

static void test_verified_flag(void **st)
{
	int sv[2];
	struct event_base *base = event_base_new();
	struct bufferevent *s, *cl;
	struct tls_srv *ts = NULL;
	SSL_CTX *sctx = test_server_ctx(), *cctx = test_client_ctx(0);
	struct err err;
	int i;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	s = tls_bev_accept(base, sv[0], sctx, &ts, &err);
	cl = tls_bev_connect(base, sv[1], cctx, "localhost", &err);
	assert_non_null(s);
	assert_non_null(cl);
	bufferevent_enable(s, EV_READ | EV_WRITE);
	bufferevent_enable(cl, EV_READ | EV_WRITE);
	for (i = 0; i < 100 && !tls_peer_verified(cl); i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_true(tls_peer_verified(cl));
	assert_true(tls_bev_is_tls(cl));
	assert_false(tls_bev_is_tls(s));        /* a server filter */
	assert_non_null(ts);
	bufferevent_free(s);
	bufferevent_free(cl);
	event_base_free(base);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

static void test_eof_event(struct bufferevent *bev, short what, void *arg)
{
	short *seen = arg;

	*seen |= what;
}

/* A client that just drops the connection (no close_notify) is an EOF
 * for the session, not a TLS error to log. */
static void test_dirty_close_is_eof(void **st)
{
	int sv[2], i;
	struct event_base *base = event_base_new();
	struct bufferevent *s, *cl;
	SSL_CTX *sctx = test_server_ctx(), *cctx = test_client_ctx(1);
	struct err err;
	struct tls_srv *ts = NULL;
	short seen = 0, cseen = 0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	s = tls_bev_accept(base, sv[0], sctx, &ts, &err);
	cl = tls_bev_connect(base, sv[1], cctx, "localhost", &err);
	assert_non_null(s);
	assert_non_null(cl);
	bufferevent_setcb(s, NULL, NULL, test_eof_event, &seen);
	bufferevent_setcb(cl, NULL, NULL, test_eof_event, &cseen);
	bufferevent_enable(s, EV_READ | EV_WRITE);
	bufferevent_enable(cl, EV_READ | EV_WRITE);
	/* connected, and the server's session tickets have left (a write
	 * to a closed peer would be a socket error, not this case) */
	for (i = 0; i < 200 && (!((seen & cseen) & BEV_EVENT_CONNECTED) ||
	     evbuffer_get_length(bufferevent_get_output(
		     bufferevent_get_underlying(s))) > 0); i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_true(seen & BEV_EVENT_CONNECTED);
	shutdown(sv[1], SHUT_RDWR);
	for (i = 0; i < 200 && !(seen & (BEV_EVENT_EOF | BEV_EVENT_ERROR));
	     i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (!(seen & BEV_EVENT_EOF))
		fprintf(stderr, "seen=%#x\n", seen);
	assert_true(seen & BEV_EVENT_EOF);
	assert_false(seen & BEV_EVENT_ERROR);
	bufferevent_free(s);
	bufferevent_free(cl);
	event_base_free(base);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

/* ---- the server side against a raw OpenSSL client -------------------- */

/* An echo server on tls_bev_accept, driven by hand from the test. */
struct test_echo {
	struct event_base *base;
	struct bufferevent *bev;
	struct tls_srv *ts;
	SSL_CTX *sctx, *cctx;
	SSL *cl;                     /* the client, non-blocking */
	int fd;                      /* the client's socket */
	short seen;                  /* events the server got */
};

static void test_echo_read(struct bufferevent *bev, void *arg)
{
	bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

static void test_echo_event(struct bufferevent *bev, short what, void *arg)
{
	struct test_echo *t = arg;

	t->seen |= what;
}

/* With from != NULL: the contexts of from, and the client resumes
 * sess (a session of an earlier connection on them). */
static void test_echo_start_on(struct test_echo *t, int max_version,
			       const struct test_echo *from,
			       SSL_SESSION *sess)
{
	int sv[2], i, r = 0;
	struct err err;

	memset(t, 0, sizeof(*t));
	t->base = event_base_new();
	assert_non_null(t->base);
	if (from != NULL) {
		t->sctx = from->sctx;
		t->cctx = from->cctx;
		SSL_CTX_up_ref(t->sctx);
		SSL_CTX_up_ref(t->cctx);
	} else {
		t->sctx = test_server_ctx();
		t->cctx = test_client_ctx(0);
	}
	if (max_version != 0)
		SSL_CTX_set_max_proto_version(t->cctx, max_version);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	t->bev = tls_bev_accept(t->base, sv[0], t->sctx, &t->ts, &err);
	assert_non_null(t->bev);
	bufferevent_setcb(t->bev, test_echo_read, NULL, test_echo_event, t);
	bufferevent_enable(t->bev, EV_READ | EV_WRITE);
	t->fd = sv[1];
	t->cl = SSL_new(t->cctx);
	assert_non_null(t->cl);
	SSL_set_fd(t->cl, t->fd);
	if (sess != NULL)
		assert_int_equal(SSL_set_session(t->cl, sess), 1);
	SSL_set_connect_state(t->cl);
	for (i = 0; i < 400; i++) {
		r = SSL_do_handshake(t->cl);
		if (r == 1 && tls_srv_done(t->ts))
			break;
		event_base_loop(t->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	assert_int_equal(r, 1);
	assert_true(t->seen & BEV_EVENT_CONNECTED);
}

static void test_echo_start(struct test_echo *t, int max_version)
{
	test_echo_start_on(t, max_version, NULL, NULL);
}

static void test_echo_stop(struct test_echo *t)
{
	SSL_free(t->cl);
	close(t->fd);
	bufferevent_free(t->bev);
	event_base_free(t->base);
	SSL_CTX_free(t->sctx);
	SSL_CTX_free(t->cctx);
}

/* Write n bytes, read them back through the echo server. */
static void test_echo_roundtrip(struct test_echo *t, const unsigned char *p,
				size_t n)
{
	unsigned char *back = malloc(n);
	size_t sent = 0, got = 0;
	int i, r;

	assert_non_null(back);
	for (i = 0; i < 20000 && got < n; i++) {
		if (sent < n) {
			r = SSL_write(t->cl, p + sent, (int)(n - sent > 16384 ?
							    16384 : n - sent));
			if (r > 0)
				sent += (size_t)r;
		}
		r = SSL_read(t->cl, back + got, (int)(n - got));
		if (r > 0)
			got += (size_t)r;
		else
			assert_int_equal(SSL_get_error(t->cl, r),
					 SSL_ERROR_WANT_READ);
		event_base_loop(t->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	assert_int_equal(got, n);
	assert_memory_equal(back, p, n);
	free(back);
}

static void test_echo_bulk(void **st)
{
	struct test_echo t;
	unsigned char *p = malloc(300000);

	assert_non_null(p);
	for (size_t i = 0; i < 300000; i++)
		p[i] = (unsigned char)(i * 7 + (i >> 9));
	test_echo_start(&t, 0);
	assert_true(tls_srv_offloaded(t.ts));
	test_echo_roundtrip(&t, (const unsigned char *)"a", 1);
	test_echo_roundtrip(&t, p, 300000);
	test_echo_roundtrip(&t, (const unsigned char *)"b\r\n", 3);
	assert_false(t.seen & (BEV_EVENT_ERROR | BEV_EVENT_EOF));
	test_echo_stop(&t);
	free(p);
}

/* RFC 8446 §4.6.3: the client updates its key and asks for ours. */
static void test_key_update(void **st)
{
	struct test_echo t;

	test_echo_start(&t, 0);
	assert_true(tls_srv_offloaded(t.ts));
	test_echo_roundtrip(&t, (const unsigned char *)"one\r\n", 5);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(SSL_key_update(t.cl, k == 1 ?
			SSL_KEY_UPDATE_NOT_REQUESTED :
			SSL_KEY_UPDATE_REQUESTED), 1);
		test_echo_roundtrip(&t, (const unsigned char *)"two\r\n", 5);
	}
	assert_false(t.seen & (BEV_EVENT_ERROR | BEV_EVENT_EOF));
	test_echo_stop(&t);
}

/* KeyUpdates without data, endlessly: refused after 32. */
static void test_key_update_flood(void **st)
{
	struct test_echo t;
	char e[128];

	test_echo_start(&t, 0);
	test_echo_roundtrip(&t, (const unsigned char *)"x", 1);
	for (int k = 0; k < 40; k++) {
		assert_int_equal(SSL_key_update(t.cl,
			SSL_KEY_UPDATE_NOT_REQUESTED), 1);
		assert_int_equal(SSL_do_handshake(t.cl), 1);
	}
	for (int i = 0; i < 200 && !(t.seen & BEV_EVENT_ERROR); i++)
		event_base_loop(t.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_true(t.seen & BEV_EVENT_ERROR);
	assert_non_null(strstr(tls_srv_error(t.ts, e, sizeof(e)),
			       "unexpected_message"));
	test_echo_stop(&t);
}

/* A resumed TLS 1.3 session (RFC 8446 §2.2: PSK from a ticket of the
 * first connection) is handed over the same way; so is a resumed 1.2
 * one kept with OpenSSL. */
static void test_resumed(void **st)
{
	for (int v = 0; v < 2; v++) {
		struct test_echo a, b;
		SSL_SESSION *sess;

		test_echo_start(&a, v ? TLS1_2_VERSION : 0);
		/* the round trip reads the tickets too */
		test_echo_roundtrip(&a, (const unsigned char *)"one\r\n", 5);
		sess = SSL_get1_session(a.cl);
		assert_non_null(sess);
		assert_true(SSL_SESSION_is_resumable(sess));
		test_echo_start_on(&b, v ? TLS1_2_VERSION : 0, &a, sess);
		assert_true(SSL_session_reused(b.cl));
		assert_int_equal(tls_srv_offloaded(b.ts), v == 0);
		test_echo_roundtrip(&b, (const unsigned char *)"two\r\n", 5);
		assert_false(b.seen & (BEV_EVENT_ERROR | BEV_EVENT_EOF));
		SSL_SESSION_free(sess);
		test_echo_stop(&b);
		test_echo_stop(&a);
	}
}

/* TLS 1.2 stays with OpenSSL's records. */
static void test_tls12_kept(void **st)
{
	struct test_echo t;
	char d[128];

	test_echo_start(&t, TLS1_2_VERSION);
	assert_false(tls_srv_offloaded(t.ts));
	assert_string_equal(tls_srv_version(t.ts), "TLSv1.2");
	assert_true(tls_srv_describe(t.ts, d, sizeof(d)) > 0);
	assert_non_null(strstr(d, "TLSv1.2 with cipher ECDHE-"));
	test_echo_roundtrip(&t, (const unsigned char *)"hello\r\n", 7);
	test_echo_stop(&t);
}

/* close_notify from the client is its EOF, not an error. */
static void test_close_notify_eof(void **st)
{
	struct test_echo t;

	for (int v = 0; v < 2; v++) {
		test_echo_start(&t, v ? TLS1_2_VERSION : 0);
		test_echo_roundtrip(&t, (const unsigned char *)"x", 1);
		SSL_shutdown(t.cl);
		for (int i = 0; i < 200 && !(t.seen & BEV_EVENT_EOF); i++)
			event_base_loop(t.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		assert_true(t.seen & BEV_EVENT_EOF);
		assert_false(t.seen & BEV_EVENT_ERROR);
		test_echo_stop(&t);
	}
}

/* A forged record: the server sends bad_record_mac and reports the
 * error; a record header announcing too much: record_overflow. */
static void test_bad_records(void **st)
{
	static const unsigned char forged[5 + 20] = { 23, 3, 3, 0, 20, 1, 2 };
	static const unsigned char huge[5] = { 23, 3, 3, 0x41, 0x01 };
	static const unsigned char plain_alert[7] = { 21, 3, 3, 0, 2, 2, 40 };
	const unsigned char *bad[3] = { forged, huge, plain_alert };
	const size_t len[3] = { sizeof(forged), sizeof(huge),
				sizeof(plain_alert) };
	const char *why[3] = { "bad record mac", "record overflow",
			       "unexpected_message" };
	char e[128];

	for (int k = 0; k < 3; k++) {
		struct test_echo t;

		test_echo_start(&t, 0);
		test_echo_roundtrip(&t, (const unsigned char *)"x", 1);
		assert_int_equal(write(t.fd, bad[k], len[k]), (ssize_t)len[k]);
		for (int i = 0; i < 200 && !(t.seen & BEV_EVENT_ERROR); i++)
			event_base_loop(t.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		assert_true(t.seen & BEV_EVENT_ERROR);
		tls_srv_error(t.ts, e, sizeof(e));
		if (strstr(e, why[k]) == NULL)
			fprintf(stderr, "case %d: \"%s\"\n", k, e);
		assert_non_null(strstr(e, why[k]));
		test_echo_stop(&t);
	}
}

static void test_plain_describe(void **st)
{
	int sv[2];
	struct event_base *base = event_base_new();
	struct bufferevent *bev;
	char out[64] = "junk";

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_int_equal(tls_bev_is_tls(bev), 0);
	assert_int_equal(tls_ssf(bev), 0);
	assert_int_equal(tls_peer_verified(bev), 0);
	assert_int_equal(tls_srv_describe(NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(tls_srv_ssf(NULL), 0);
	assert_null(tls_srv_version(NULL));
	bufferevent_free(bev);
	close(sv[1]);
	event_base_free(base);
}

static void test_ctx_errors(void **st)
{
	struct err err;

	/* The key of another certificate. */
	err_clear(&err);
	assert_null(tls_server_ctx(test_chain, test_bad_key, &err));
	assert_non_null(strstr(err.msg, "does not match"));
	assert_null(tls_server_ctx("/nonexistent/cert.pem", test_key, &err));
	assert_non_null(strstr(err.msg, "/nonexistent/cert.pem"));
	assert_null(tls_client_ctx("/nonexistent/ca.pem", 1, &err));
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_implicit_tls),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_untrusted_refused),
		cmocka_unit_test(test_wrong_name_refused),
		cmocka_unit_test(test_untrusted_opportunistic),
		cmocka_unit_test(test_verified_flag),
		cmocka_unit_test(test_dirty_close_is_eof),
		cmocka_unit_test(test_echo_bulk),
		cmocka_unit_test(test_key_update),
		cmocka_unit_test(test_key_update_flood),
		cmocka_unit_test(test_tls12_kept),
		cmocka_unit_test(test_resumed),
		cmocka_unit_test(test_close_notify_eof),
		cmocka_unit_test(test_bad_records),
		cmocka_unit_test(test_plain_describe),
		cmocka_unit_test(test_ctx_errors),
	};
	return cmocka_run_group_tests(t, test_setup, test_teardown);
}
