/* Tests for tls_server_ctx_reload (SIGHUP): real TLS handshakes over
 * memory BIOs against the daemon's one server context, with throw-away
 * self-signed certificates written by the test. New handshakes get the
 * renewed certificate, a session made before keeps its own, and a renewal
 * whose key does not match leaves the last good certificate in use. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include "tls.h"

static char test_dir[64];
static char test_cert_a[128], test_key_a[128], test_cert_b[128],
	test_key_b[128];

static X509 *test_self_signed(EVP_PKEY *key, const char *cn)
{
	X509 *x = X509_new();
	X509_NAME *name;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

static void test_pair(const char *cert, const char *keyf, const char *cn)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x;
	FILE *f;

	assert_non_null(key);
	x = test_self_signed(key, cn);
	f = fopen(cert, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	f = fopen(keyf, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL,
					      NULL), 1);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(key);
}

static int test_setup(void **st)
{
	snprintf(test_dir, sizeof(test_dir), "/tmp/test_tls_reload.XXXXXX");
	if (mkdtemp(test_dir) == NULL)
		return -1;
	snprintf(test_cert_a, sizeof(test_cert_a), "%s/a.pem", test_dir);
	snprintf(test_key_a, sizeof(test_key_a), "%s/a.key", test_dir);
	snprintf(test_cert_b, sizeof(test_cert_b), "%s/b.pem", test_dir);
	snprintf(test_key_b, sizeof(test_key_b), "%s/b.key", test_dir);
	test_pair(test_cert_a, test_key_a, "old.example");
	test_pair(test_cert_b, test_key_b, "new.example");
	return 0;
}

static int test_teardown(void **st)
{
	unlink(test_cert_a);
	unlink(test_key_a);
	unlink(test_cert_b);
	unlink(test_key_b);
	rmdir(test_dir);
	return 0;
}

/* A client and a server SSL joined by a BIO pair; the handshake runs to
 * its end. Returns the server SSL (the client is freed); the peer
 * certificate's CN the client saw goes to cn. */
static SSL *test_handshake(SSL_CTX *sctx, char *cn, size_t n)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *c, *s;
	BIO *cb, *sb;
	X509 *peer;
	int i, cdone = 0, sdone = 0;

	assert_non_null(cctx);
	c = SSL_new(cctx);
	s = SSL_new(sctx);
	assert_true(c != NULL && s != NULL);
	assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	for (i = 0; i < 100 && !(cdone && sdone); i++) {
		if (!cdone) {
			int r = SSL_do_handshake(c);

			cdone = r == 1;
			assert_true(r == 1 ||
				    SSL_get_error(c, r) == SSL_ERROR_WANT_READ);
		}
		if (!sdone) {
			int r = SSL_do_handshake(s);

			sdone = r == 1;
			assert_true(r == 1 ||
				    SSL_get_error(s, r) == SSL_ERROR_WANT_READ);
		}
	}
	assert_true(cdone && sdone);
	peer = SSL_get1_peer_certificate(c);
	assert_non_null(peer);
	X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
				  cn, (int)n);
	X509_free(peer);
	SSL_free(c);
	SSL_CTX_free(cctx);
	return s;
}

/* CN of the certificate a finished server SSL presented */
static const char *test_served(SSL *s, char *cn, size_t n)
{
	X509 *x = SSL_get_certificate(s);

	assert_non_null(x);
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
				  cn, (int)n);
	return cn;
}

static void test_reload_serves_new_cert(void **st)
{
	struct err err;
	char cn[64], desc[512], desc_old[512];
	SSL_CTX *ctx = tls_server_ctx(test_cert_a, test_key_a, &err);
	SSL *before, *after;

	assert_non_null(ctx);
	assert_true(tls_server_ctx_describe(ctx, desc_old, sizeof(desc_old)) > 0);
	assert_non_null(strstr(desc_old, "CN=old.example"));
	before = test_handshake(ctx, cn, sizeof(cn));
	assert_string_equal(cn, "old.example");

	assert_int_equal(tls_server_ctx_reload(ctx, test_cert_b, test_key_b,
					       &err), 0);
	assert_true(tls_server_ctx_describe(ctx, desc, sizeof(desc)) > 0);
	assert_non_null(strstr(desc, "CN=new.example"));
	assert_string_not_equal(desc, desc_old);

	after = test_handshake(ctx, cn, sizeof(cn));
	assert_string_equal(cn, "new.example");
	/* the session made before the reload keeps what it had */
	assert_string_equal(test_served(before, cn, sizeof(cn)), "old.example");
	assert_string_equal(test_served(after, cn, sizeof(cn)), "new.example");

	/* a second reload replaces (and releases) the first one's context;
	 * after still holds its own reference */
	assert_int_equal(tls_server_ctx_reload(ctx, test_cert_a, test_key_a,
					       &err), 0);
	SSL_free(before);
	before = test_handshake(ctx, cn, sizeof(cn));
	assert_string_equal(cn, "old.example");
	assert_string_equal(test_served(after, cn, sizeof(cn)), "new.example");
	SSL_free(before);
	SSL_free(after);
	SSL_CTX_free(ctx);
}

static void test_bad_reload_keeps_old(void **st)
{
	struct err err;
	char cn[64], desc[512], desc2[512];
	SSL_CTX *ctx = tls_server_ctx(test_cert_a, test_key_a, &err);
	SSL *s;

	assert_non_null(ctx);
	tls_server_ctx_describe(ctx, desc, sizeof(desc));
	/* new certificate, old key: refused, with the reason */
	err_clear(&err);
	assert_int_equal(tls_server_ctx_reload(ctx, test_cert_b, test_key_a,
					       &err), -1);
	assert_non_null(strstr(err.msg, "does not match"));
	/* a file that is not there */
	err_clear(&err);
	assert_int_equal(tls_server_ctx_reload(ctx, "/nonexistent/cert.pem",
					       test_key_a, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/cert.pem"));
	tls_server_ctx_describe(ctx, desc2, sizeof(desc2));
	assert_string_equal(desc, desc2);
	s = test_handshake(ctx, cn, sizeof(cn));
	assert_string_equal(cn, "old.example");
	SSL_free(s);
	SSL_CTX_free(ctx);
}

static void test_reload_needs_server_ctx(void **st)
{
	struct err err;
	char out[16] = "x";

	assert_int_equal(tls_server_ctx_reload(NULL, test_cert_a, test_key_a,
					       &err), -1);
	assert_int_equal(tls_server_ctx_describe(NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reload_serves_new_cert),
		cmocka_unit_test(test_bad_reload_keeps_old),
		cmocka_unit_test(test_reload_needs_server_ctx),
	};

	return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
