/* tls13_rec: known answers from RFC 8448 §3 (keys, the application data
 * and close_notify records of both sides, a NewSessionTicket), the same
 * against OpenSSL itself (a real handshake over a socket pair for each
 * suite, secrets from the key log, records read and written raw on the
 * server's socket), then round trips, tampering, header and size limits,
 * padding, alerts and KeyUpdate, record by record. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "tls13_rec.h"

#define TEST_REC_MAX (TLS13_REC_HDR + TLS13_REC_MAX_BODY)
#define U(s) ((const unsigned char *)(s))

static const unsigned test_suites[] = { 0x1301, 0x1302, 0x1303 };

/* hex (spaces allowed) into out; the byte count */
static size_t test_unhex(const char *hex, unsigned char *out)
{
	size_t n = 0;
	unsigned v;

	while (*hex != '\0') {
		if (*hex == ' ') {
			hex++;
			continue;
		}
		assert_int_equal(sscanf(hex, "%2x", &v), 1);
		out[n++] = (unsigned char)v;
		hex += 2;
	}
	return n;
}

static size_t test_hash_len(unsigned suite)
{
	return suite == 0x1302 ? 48 : 32;
}

/* ---- a client (a) and a server (b) with swapped secrets ---- */

struct test_pair {
	struct tls13_rec a, b;
	EVP_CIPHER_CTX *aw, *ar, *bw, *br;
};

static void test_ctx(EVP_CIPHER_CTX **c, const struct tls13_rec *r, int enc)
{
	EVP_CIPHER_CTX_free(*c);
	*c = tls13_rec_cipher_ctx(r, enc);
	assert_non_null(*c);
}

/* fresh cipher contexts for all four directions (after a key change) */
static void test_pair_ctx(struct test_pair *p)
{
	test_ctx(&p->aw, &p->a, 1);
	test_ctx(&p->ar, &p->a, 0);
	test_ctx(&p->bw, &p->b, 1);
	test_ctx(&p->br, &p->b, 0);
}

static void test_pair_init(struct test_pair *p, unsigned suite)
{
	unsigned char cs[TLS13_REC_MAX_SECRET], ss[TLS13_REC_MAX_SECRET];
	size_t len = test_hash_len(suite);

	for (size_t i = 0; i < len; i++) {
		cs[i] = (unsigned char)(7 + 31 * i);
		ss[i] = (unsigned char)(200 - 17 * i);
	}
	memset(p, 0, sizeof(*p));
	assert_int_equal(tls13_rec_init(&p->a, suite, ss, cs, len, 0, 0), 0);
	assert_int_equal(tls13_rec_init(&p->b, suite, cs, ss, len, 0, 0), 0);
	test_pair_ctx(p);
}

static void test_pair_free(struct test_pair *p)
{
	EVP_CIPHER_CTX_free(p->aw);
	EVP_CIPHER_CTX_free(p->ar);
	EVP_CIPHER_CTX_free(p->bw);
	EVP_CIPHER_CTX_free(p->br);
	tls13_rec_clear(&p->a);
	tls13_rec_clear(&p->b);
}

/* Seal any inner plaintext (content, type, padding) with r's write key,
 * by hand with EVP: tls13_rec_seal always puts the type last. */
static size_t test_seal_inner(struct tls13_rec *r, const unsigned char *inner,
			      size_t n, unsigned char *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	unsigned char nonce[12];
	size_t body = n + TLS13_REC_TAG;
	int l;

	assert_non_null(c);
	memcpy(nonce, r->wr.iv, sizeof(nonce));
	for (int i = 0; i < 8; i++)
		nonce[11 - i] ^= (unsigned char)(r->wr.seq >> (8 * i));
	out[0] = TLS13_CT_APPDATA;
	out[1] = 3;
	out[2] = 3;
	out[3] = (unsigned char)(body >> 8);
	out[4] = (unsigned char)body;
	assert_int_equal(EVP_EncryptInit_ex2(c, r->cipher, r->wr.key, nonce,
					     NULL), 1);
	assert_int_equal(EVP_EncryptUpdate(c, NULL, &l, out, TLS13_REC_HDR), 1);
	if (n > 0)
		assert_int_equal(EVP_EncryptUpdate(c, out + TLS13_REC_HDR, &l,
						   inner, (int)n), 1);
	assert_int_equal(EVP_EncryptFinal_ex(c, out + TLS13_REC_HDR + n, &l),
			 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG,
					     TLS13_REC_TAG,
					     out + TLS13_REC_HDR + n), 1);
	EVP_CIPHER_CTX_free(c);
	r->wr.seq++;
	return TLS13_REC_HDR + body;
}

/* a seals (type, in) with tls13_rec_seal; b opens it */
static enum tls13_open test_send(struct test_pair *p, int type,
				 const void *in, size_t n, unsigned char *out,
				 size_t *outlen, int *alert)
{
	static unsigned char rec[TEST_REC_MAX];
	long len = tls13_rec_seal(&p->a, p->aw, type, in, n, rec);

	assert_int_equal(len, n + TLS13_REC_OVERHEAD);
	*alert = -1;
	return tls13_rec_open(&p->b, p->br, rec, (size_t)len, out, outlen,
			      alert);
}

/* a seals the inner plaintext by hand; b opens it */
static enum tls13_open test_send_inner(struct test_pair *p,
				       const unsigned char *inner, size_t n,
				       unsigned char *out, size_t *outlen,
				       int *alert)
{
	static unsigned char rec[TEST_REC_MAX + 64];
	size_t len = test_seal_inner(&p->a, inner, n, rec);

	*alert = -1;
	return tls13_rec_open(&p->b, p->br, rec, len, out, outlen, alert);
}

/* b seals data, a opens it: it must come back as it went */
static void test_back(struct test_pair *p, const char *s)
{
	unsigned char rec[256], out[256];
	size_t n = strlen(s), outlen;
	long len = tls13_rec_seal(&p->b, p->bw, TLS13_CT_APPDATA, U(s), n, rec);
	int alert = -1;

	assert_int_equal(len, n + TLS13_REC_OVERHEAD);
	assert_int_equal(tls13_rec_open(&p->a, p->ar, rec, (size_t)len, out,
					&outlen, &alert), TLS13_OPEN_DATA);
	assert_int_equal(outlen, n);
	assert_memory_equal(out, s, n);
}

/* a sends data, b must read it */
static void test_forth(struct test_pair *p, const char *s)
{
	unsigned char out[256];
	size_t n = strlen(s), outlen;
	int alert;

	assert_int_equal(test_send(p, TLS13_CT_APPDATA, s, n, out, &outlen,
				   &alert), TLS13_OPEN_DATA);
	assert_int_equal(outlen, n);
	assert_memory_equal(out, s, n);
}

/* a's write side after its own KeyUpdate: tls13_rec_key_update, its
 * record thrown away (used where a sealed the KeyUpdate by hand) */
static void test_advance_write(struct test_pair *p)
{
	unsigned char rec[64];

	assert_int_equal(tls13_rec_key_update(&p->a, p->aw, rec),
			 TLS13_REC_OVERHEAD + 5);
	test_ctx(&p->aw, &p->a, 1);
}

/* ---- RFC 8448 §3, Simple 1-RTT Handshake (TLS_AES_128_GCM_SHA256) ---- */

static const char test_c_ap[] =
	"9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52"
	"87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5";
static const char test_s_ap[] =
	"a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32"
	"82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43";
static const char test_c_key[] =
	"17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51";
static const char test_c_iv[] = "5b 78 92 3d ee 08 57 90 33 e5 23 d9";
static const char test_s_key[] =
	"9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56";
static const char test_s_iv[] = "cf 78 2b 88 dd 83 54 9a ad f1 e9 84";
/* the application data both send: octets 0x00..0x31 */
static const char test_c_app_rec[] =
	"17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef"
	"ac ea 42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a"
	"20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee"
	"bb 21 69 49 15 e4";
/* the server's is its second record (the first is the ticket) */
static const char test_s_app_rec[] =
	"17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69"
	"32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb"
	"50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0"
	"32 e1 67 c2 95 5d";
/* close_notify: the client's second record, the server's third */
static const char test_c_alert_rec[] =
	"17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0"
	"b0 e3";
static const char test_s_alert_rec[] =
	"17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88"
	"64 a9";
/* the server's NewSessionTicket, its first record */
static const char test_s_ticket_rec[] =
	"17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a"
	"2b 24 0e 6c ff ac 11 6e 95 d4 1d 6a f8 f6 b5 80 dc f3 d1 1d 63 c7"
	"58 db 28 9a 01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 91 a3 8e fb"
	"cf 57 53 ad 8e f1 70 ad 3c 73 53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1"
	"b6 c0 d4 a3 d0 3f 75 e0 9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be"
	"63 43 9b 29 99 ce 13 06 46 15 13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1"
	"81 a7 7c a4 75 84 00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13 46 75"
	"5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3 47 d1 43 f9 60 5d 64 f6"
	"50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12 1c 74 bc 26 97 68 7e 24"
	"87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b 3b 6c 67 79"
	"b3 7b f1 59 85 68 4f";
/* application_traffic_secret_1 (§7.2): not in RFC 8448; Botan's test
 * suite has these, and `openssl kdf` HKDF-Expand-Label "traffic upd"
 * of the secrets above gives the same */
static const char test_c_ap1[] =
	"fc df cc 72 72 5a ae e4 8b f6 4e 4f d8 b7 49 cd"
	"bd ba b3 9d 90 da 0b 26 e2 24 5c a6 ea 16 72 07";
static const char test_s_ap1[] =
	"51 92 1b 8a a3 00 19 76 eb 40 1d 0a 43 19 a8 51"
	"64 16 a6 c5 60 01 a3 57 e5 d1 62 03 1e 84 f9 16";

/* as the RFC's server: read the client, write as the server, the
 * write sequence at wseq (the ticket went first) */
static void test_rfc_server(struct tls13_rec *r, uint64_t rseq, uint64_t wseq)
{
	unsigned char c[32], s[32];

	assert_int_equal(test_unhex(test_c_ap, c), 32);
	assert_int_equal(test_unhex(test_s_ap, s), 32);
	assert_int_equal(tls13_rec_init(r, 0x1301, c, s, 32, rseq, wseq), 0);
}

static void test_rfc_client(struct tls13_rec *r, uint64_t rseq, uint64_t wseq)
{
	unsigned char c[32], s[32];

	assert_int_equal(test_unhex(test_c_ap, c), 32);
	assert_int_equal(test_unhex(test_s_ap, s), 32);
	assert_int_equal(tls13_rec_init(r, 0x1301, s, c, 32, rseq, wseq), 0);
}

static void test_rfc8448_keys(void **st)
{
	struct tls13_rec r;
	unsigned char want[32];

	test_rfc_server(&r, 0, 0);
	assert_int_equal(test_unhex(test_s_key, want), 16);
	assert_memory_equal(r.wr.key, want, 16);
	assert_int_equal(test_unhex(test_s_iv, want), 12);
	assert_memory_equal(r.wr.iv, want, 12);
	assert_int_equal(test_unhex(test_c_key, want), 16);
	assert_memory_equal(r.rd.key, want, 16);
	assert_int_equal(test_unhex(test_c_iv, want), 12);
	assert_memory_equal(r.rd.iv, want, 12);
	tls13_rec_clear(&r);
}

static void test_rfc8448_records(void **st)
{
	struct tls13_rec r;
	EVP_CIPHER_CTX *w, *rd;
	unsigned char data[50], want[256], rec[256], out[256];
	size_t n, outlen;
	long len;
	int alert;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)i;

	/* the server: its data record (seq 1) and close_notify (seq 2) */
	test_rfc_server(&r, 0, 1);
	w = tls13_rec_cipher_ctx(&r, 1);
	rd = tls13_rec_cipher_ctx(&r, 0);
	assert_non_null(w);
	assert_non_null(rd);
	n = test_unhex(test_s_app_rec, want);
	assert_int_equal(n, 72);
	len = tls13_rec_seal(&r, w, TLS13_CT_APPDATA, data, sizeof(data), rec);
	assert_int_equal(len, n);
	assert_memory_equal(rec, want, n);
	n = test_unhex(test_s_alert_rec, want);
	len = tls13_rec_seal(&r, w, TLS13_CT_ALERT,
			     (const unsigned char *)"\1\0", 2, rec);
	assert_int_equal(len, n);
	assert_memory_equal(rec, want, n);
	assert_int_equal(r.wr.seq, 3);
	/* ... reading the client's data (seq 0) and close_notify (seq 1) */
	n = test_unhex(test_c_app_rec, rec);
	assert_int_equal(tls13_rec_open(&r, rd, rec, n, out, &outlen, &alert),
			 TLS13_OPEN_DATA);
	assert_int_equal(outlen, sizeof(data));
	assert_memory_equal(out, data, sizeof(data));
	n = test_unhex(test_c_alert_rec, rec);
	assert_int_equal(tls13_rec_open(&r, rd, rec, n, out, &outlen, &alert),
			 TLS13_OPEN_CLOSE);
	assert_int_equal(outlen, 0);
	assert_int_equal(r.rd.seq, 2);
	EVP_CIPHER_CTX_free(w);
	EVP_CIPHER_CTX_free(rd);
	tls13_rec_clear(&r);

	/* the client: its data record and close_notify, byte for byte */
	test_rfc_client(&r, 1, 0);
	w = tls13_rec_cipher_ctx(&r, 1);
	rd = tls13_rec_cipher_ctx(&r, 0);
	assert_non_null(w);
	assert_non_null(rd);
	n = test_unhex(test_c_app_rec, want);
	len = tls13_rec_seal(&r, w, TLS13_CT_APPDATA, data, sizeof(data), rec);
	assert_int_equal(len, n);
	assert_memory_equal(rec, want, n);
	n = test_unhex(test_c_alert_rec, want);
	len = tls13_rec_seal(&r, w, TLS13_CT_ALERT,
			     (const unsigned char *)"\1\0", 2, rec);
	assert_int_equal(len, n);
	assert_memory_equal(rec, want, n);
	/* ... reading the server's data (seq 1) and close_notify (seq 2) */
	n = test_unhex(test_s_app_rec, rec);
	assert_int_equal(tls13_rec_open(&r, rd, rec, n, out, &outlen, &alert),
			 TLS13_OPEN_DATA);
	assert_int_equal(outlen, sizeof(data));
	assert_memory_equal(out, data, sizeof(data));
	n = test_unhex(test_s_alert_rec, rec);
	assert_int_equal(tls13_rec_open(&r, rd, rec, n, out, &outlen, &alert),
			 TLS13_OPEN_CLOSE);
	/* the same record again: the sequence moved on */
	alert = -1;
	assert_int_equal(tls13_rec_open(&r, rd, rec, n, out, &outlen, &alert),
			 TLS13_OPEN_ERROR);
	assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
	EVP_CIPHER_CTX_free(w);
	EVP_CIPHER_CTX_free(rd);
	tls13_rec_clear(&r);
}

/* A real record that decrypts (seq 0 of the server) but holds a
 * NewSessionTicket: not a message a client may send to a server. */
static void test_rfc8448_ticket_refused(void **st)
{
	struct tls13_rec r;
	EVP_CIPHER_CTX *rd;
	unsigned char rec[256], out[256];
	size_t n = test_unhex(test_s_ticket_rec, rec), outlen;
	int alert = -1;

	assert_int_equal(n, 227);
	test_rfc_client(&r, 0, 0);
	rd = tls13_rec_cipher_ctx(&r, 0);
	assert_non_null(rd);
	assert_int_equal(tls13_rec_open(&r, rd, rec, n, out, &outlen, &alert),
			 TLS13_OPEN_ERROR);
	assert_int_equal(alert, TLS13_AL_UNEXPECTED_MESSAGE);
	/* it did decrypt: the MAC was good, the sequence moved */
	assert_int_equal(r.rd.seq, 1);
	assert_int_equal(out[0], 4);
	EVP_CIPHER_CTX_free(rd);
	tls13_rec_clear(&r);
}

/* KeyUpdate from the RFC's secrets: both directions reach
 * application_traffic_secret_1 and keep talking */
static void test_rfc8448_key_update(void **st)
{
	struct test_pair p;
	unsigned char want[32], out[64];
	size_t outlen;
	int alert;

	memset(&p, 0, sizeof(p));
	test_rfc_client(&p.a, 0, 0);
	test_rfc_server(&p.b, 0, 0);
	test_pair_ctx(&p);
	test_forth(&p, "before");
	test_back(&p, "before");

	/* the client's KeyUpdate: its write secret, the server's read */
	{
		unsigned char rec[64];
		long len = tls13_rec_key_update(&p.a, p.aw, rec);

		assert_int_equal(len, TLS13_REC_OVERHEAD + 5);
		assert_int_equal(tls13_rec_open(&p.b, p.br, rec, (size_t)len,
						out, &outlen, &alert),
				 TLS13_OPEN_KEY_CHANGED);
		assert_int_equal(outlen, 0);
	}
	assert_int_equal(test_unhex(test_c_ap1, want), 32);
	assert_memory_equal(p.a.wr.secret, want, 32);
	assert_memory_equal(p.b.rd.secret, want, 32);
	assert_int_equal(p.a.wr.seq, 0);
	assert_int_equal(p.b.rd.seq, 0);
	test_pair_ctx(&p);

	/* the server's */
	{
		unsigned char rec[64];
		long len = tls13_rec_key_update(&p.b, p.bw, rec);

		assert_int_equal(len, TLS13_REC_OVERHEAD + 5);
		assert_int_equal(tls13_rec_open(&p.a, p.ar, rec, (size_t)len,
						out, &outlen, &alert),
				 TLS13_OPEN_KEY_CHANGED);
	}
	assert_int_equal(test_unhex(test_s_ap1, want), 32);
	assert_memory_equal(p.b.wr.secret, want, 32);
	assert_memory_equal(p.a.rd.secret, want, 32);
	test_pair_ctx(&p);
	test_forth(&p, "after");
	test_back(&p, "after");
	test_pair_free(&p);
}

/* ---- against OpenSSL: a real handshake, then raw records ---- */

static char test_kl_client[2 * TLS13_REC_MAX_SECRET + 1];
static char test_kl_server[2 * TLS13_REC_MAX_SECRET + 1];

static void test_keylog(const SSL *ssl, const char *line)
{
	const char *sec = strrchr(line, ' ');
	char *to = NULL;

	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		to = test_kl_client;
	else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		to = test_kl_server;
	if (to != NULL && sec != NULL)
		snprintf(to, sizeof(test_kl_client), "%s", sec + 1);
}

static void test_self_signed(SSL_CTX *ctx)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();

	assert_non_null(key);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
				   MBSTRING_ASC,
				   (const unsigned char *)"localhost", -1, -1,
				   0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
	X509_free(x);
	EVP_PKEY_free(key);
}

static void test_fd_wait(int fd, short ev)
{
	struct pollfd pfd = { .fd = fd, .events = ev };

	assert_int_equal(poll(&pfd, 1, 5000), 1);
}

static void test_fd_read(int fd, unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t k;

		test_fd_wait(fd, POLLIN);
		k = read(fd, p, n);
		assert_true(k > 0);
		p += k;
		n -= (size_t)k;
	}
}

static void test_fd_write(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t k;

		test_fd_wait(fd, POLLOUT);
		k = write(fd, p, n);
		assert_true(k > 0);
		p += k;
		n -= (size_t)k;
	}
}

/* one whole record off the server's socket, as OpenSSL's client sent it */
static size_t test_fd_record(int fd, unsigned char *rec)
{
	int alert = -1;
	long body;

	test_fd_read(fd, rec, TLS13_REC_HDR);
	body = tls13_rec_header(rec, &alert);
	assert_true(body >= 0);
	test_fd_read(fd, rec + TLS13_REC_HDR, (size_t)body);
	return TLS13_REC_HDR + (size_t)body;
}

static void test_fd_empty(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&pfd, 1, 0), 0);
}

static void test_ssl_write(SSL *c, int fd, const void *p, size_t n)
{
	int k;

	while ((k = SSL_write(c, p, (int)n)) <= 0) {
		assert_int_equal(SSL_get_error(c, k), SSL_ERROR_WANT_WRITE);
		test_fd_wait(fd, POLLOUT);
	}
	assert_int_equal(k, n);
}

static void test_ssl_read(SSL *c, int fd, unsigned char *p, size_t n)
{
	while (n > 0) {
		int k = SSL_read(c, p, (int)n);

		if (k <= 0) {
			assert_int_equal(SSL_get_error(c, k),
					 SSL_ERROR_WANT_READ);
			test_fd_wait(fd, POLLIN);
			continue;
		}
		p += k;
		n -= (size_t)k;
	}
}

/* our record, raw onto the server's socket */
static void test_raw_seal(struct tls13_rec *r, EVP_CIPHER_CTX *w, int fd,
			  int type, const void *in, size_t n)
{
	static unsigned char rec[TEST_REC_MAX];
	long len = tls13_rec_seal(r, w, type, in, n, rec);

	assert_int_equal(len, n + TLS13_REC_OVERHEAD);
	test_fd_write(fd, rec, (size_t)len);
}

static enum tls13_open test_raw_open(struct tls13_rec *r, EVP_CIPHER_CTX *rd,
				     int fd, unsigned char *out,
				     size_t *outlen)
{
	static unsigned char rec[TEST_REC_MAX];
	size_t len = test_fd_record(fd, rec);
	int alert = -1;
	enum tls13_open rc = tls13_rec_open(r, rd, rec, len, out, outlen,
					    &alert);

	assert_int_not_equal(rc, TLS13_OPEN_ERROR);
	return rc;
}

static void test_openssl(unsigned suite, const char *name)
{
	static unsigned char big[TLS13_REC_MAX_PLAIN], out[TEST_REC_MAX];
	unsigned char cs[TLS13_REC_MAX_SECRET], ss[TLS13_REC_MAX_SECRET];
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *s, *c;
	struct tls13_rec r;
	EVP_CIPHER_CTX *w, *rd;
	size_t outlen, len = test_hash_len(suite);
	int sv[2], sdone = 0, cdone = 0;

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 7 + i / 256);
	assert_non_null(sctx);
	assert_non_null(cctx);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);
	SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
	assert_int_equal(SSL_CTX_set_ciphersuites(sctx, name), 1);
	assert_int_equal(SSL_CTX_set_ciphersuites(cctx, name), 1);
	/* no ticket: the server's first application record is ours, seq 0 */
	assert_int_equal(SSL_CTX_set_num_tickets(sctx, 0), 1);
	SSL_CTX_set_keylog_callback(sctx, test_keylog);
	test_self_signed(sctx);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	s = SSL_new(sctx);
	c = SSL_new(cctx);
	assert_non_null(s);
	assert_non_null(c);
	SSL_set_fd(s, sv[0]);
	SSL_set_fd(c, sv[1]);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	test_kl_client[0] = test_kl_server[0] = '\0';
	for (int i = 0; i < 100 && !(sdone && cdone); i++) {
		int k;

		if (!cdone && (k = SSL_do_handshake(c)) != 1)
			assert_int_equal(SSL_get_error(c, k),
					 SSL_ERROR_WANT_READ);
		else
			cdone = 1;
		if (!sdone && (k = SSL_do_handshake(s)) != 1)
			assert_int_equal(SSL_get_error(s, k),
					 SSL_ERROR_WANT_READ);
		else
			sdone = 1;
	}
	assert_true(sdone && cdone);
	assert_int_equal(SSL_version(s), TLS1_3_VERSION);
	assert_int_equal(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(s)),
			 suite);
	assert_int_equal(strlen(test_kl_client), 2 * len);
	assert_int_equal(strlen(test_kl_server), 2 * len);
	assert_int_equal(test_unhex(test_kl_client, cs), len);
	assert_int_equal(test_unhex(test_kl_server, ss), len);
	/* the server's SSL is done with: from here on we are the server */
	test_fd_empty(sv[0]);
	assert_int_equal(tls13_rec_init(&r, suite, cs, ss, len, 0, 0), 0);
	w = tls13_rec_cipher_ctx(&r, 1);
	rd = tls13_rec_cipher_ctx(&r, 0);
	assert_non_null(w);
	assert_non_null(rd);

	/* OpenSSL's records open */
	test_ssl_write(c, sv[1], "EHLO client\r\n", 13);
	assert_int_equal(test_raw_open(&r, rd, sv[0], out, &outlen),
			 TLS13_OPEN_DATA);
	assert_int_equal(outlen, 13);
	assert_memory_equal(out, "EHLO client\r\n", 13);
	test_ssl_write(c, sv[1], big, sizeof(big));
	assert_int_equal(test_raw_open(&r, rd, sv[0], out, &outlen),
			 TLS13_OPEN_DATA);
	assert_int_equal(outlen, sizeof(big));
	assert_memory_equal(out, big, sizeof(big));

	/* ours read in OpenSSL */
	test_raw_seal(&r, w, sv[0], TLS13_CT_APPDATA, "250 ok\r\n", 8);
	test_raw_seal(&r, w, sv[0], TLS13_CT_APPDATA, "", 0);
	test_raw_seal(&r, w, sv[0], TLS13_CT_APPDATA, big, sizeof(big));
	test_ssl_read(c, sv[1], out, 8);
	assert_memory_equal(out, "250 ok\r\n", 8);
	test_ssl_read(c, sv[1], out, sizeof(big));
	assert_memory_equal(out, big, sizeof(big));

	/* OpenSSL's padding */
	assert_int_equal(SSL_set_block_padding(c, 256), 1);
	test_ssl_write(c, sv[1], "padded", 6);
	{
		static unsigned char rec[TEST_REC_MAX];
		size_t rlen = test_fd_record(sv[0], rec);
		int alert = -1;

		assert_int_equal(rlen, TLS13_REC_HDR + 256 + TLS13_REC_TAG);
		assert_int_equal(tls13_rec_open(&r, rd, rec, rlen, out, &outlen,
						&alert), TLS13_OPEN_DATA);
		assert_int_equal(outlen, 6);
		assert_memory_equal(out, "padded", 6);
	}
	assert_int_equal(SSL_set_block_padding(c, 0), 1);

	/* the client's KeyUpdate, asking for ours */
	assert_int_equal(SSL_key_update(c, SSL_KEY_UPDATE_REQUESTED), 1);
	test_ssl_write(c, sv[1], "rekeyed", 7);
	assert_int_equal(test_raw_open(&r, rd, sv[0], out, &outlen),
			 TLS13_OPEN_KEY_REQUESTED);
	EVP_CIPHER_CTX_free(rd);
	rd = tls13_rec_cipher_ctx(&r, 0);
	assert_non_null(rd);
	assert_int_equal(test_raw_open(&r, rd, sv[0], out, &outlen),
			 TLS13_OPEN_DATA);
	assert_int_equal(outlen, 7);
	assert_memory_equal(out, "rekeyed", 7);
	/* ours, as asked, then data under the new key */
	{
		unsigned char rec[64];
		long n = tls13_rec_key_update(&r, w, rec);

		assert_int_equal(n, TLS13_REC_OVERHEAD + 5);
		test_fd_write(sv[0], rec, (size_t)n);
	}
	EVP_CIPHER_CTX_free(w);
	w = tls13_rec_cipher_ctx(&r, 1);
	assert_non_null(w);
	test_raw_seal(&r, w, sv[0], TLS13_CT_APPDATA, "after", 5);
	test_ssl_read(c, sv[1], out, 5);
	assert_memory_equal(out, "after", 5);
	/* the client answered nothing (ours was update_not_requested) */
	test_fd_empty(sv[0]);
	test_ssl_write(c, sv[1], "still", 5);
	assert_int_equal(test_raw_open(&r, rd, sv[0], out, &outlen),
			 TLS13_OPEN_DATA);
	assert_memory_equal(out, "still", 5);

	/* the client's KeyUpdate, not asking */
	assert_int_equal(SSL_key_update(c, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
	test_ssl_write(c, sv[1], "again", 5);
	assert_int_equal(test_raw_open(&r, rd, sv[0], out, &outlen),
			 TLS13_OPEN_KEY_CHANGED);
	EVP_CIPHER_CTX_free(rd);
	rd = tls13_rec_cipher_ctx(&r, 0);
	assert_non_null(rd);
	assert_int_equal(test_raw_open(&r, rd, sv[0], out, &outlen),
			 TLS13_OPEN_DATA);
	assert_memory_equal(out, "again", 5);
	test_raw_seal(&r, w, sv[0], TLS13_CT_APPDATA, "fine", 4);
	test_ssl_read(c, sv[1], out, 4);
	assert_memory_equal(out, "fine", 4);

	/* our close_notify ends OpenSSL's reading; its close_notify ours */
	test_raw_seal(&r, w, sv[0], TLS13_CT_ALERT, "\1\0", 2);
	{
		int k;

		test_fd_wait(sv[1], POLLIN);
		k = SSL_read(c, out, 1);
		assert_true(k <= 0);
		assert_int_equal(SSL_get_error(c, k), SSL_ERROR_ZERO_RETURN);
	}
	assert_true(SSL_shutdown(c) >= 0);
	assert_int_equal(test_raw_open(&r, rd, sv[0], out, &outlen),
			 TLS13_OPEN_CLOSE);

	EVP_CIPHER_CTX_free(w);
	EVP_CIPHER_CTX_free(rd);
	tls13_rec_clear(&r);
	SSL_free(s);
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
}

static void test_openssl_aes128(void **st)
{
	test_openssl(0x1301, "TLS_AES_128_GCM_SHA256");
}

static void test_openssl_aes256(void **st)
{
	test_openssl(0x1302, "TLS_AES_256_GCM_SHA384");
}

static void test_openssl_chacha(void **st)
{
	test_openssl(0x1303, "TLS_CHACHA20_POLY1305_SHA256");
}

/* ---- the API on its own ---- */

static void test_init(void **st)
{
	unsigned char s[TLS13_REC_MAX_SECRET] = { 1, 2, 3 };
	struct tls13_rec r;

	assert_true(tls13_rec_suite_ok(0x1301));
	assert_true(tls13_rec_suite_ok(0x1302));
	assert_true(tls13_rec_suite_ok(0x1303));
	assert_false(tls13_rec_suite_ok(0x1304));  /* AES-128-CCM */
	assert_false(tls13_rec_suite_ok(0x1305));
	assert_false(tls13_rec_suite_ok(0xc02f));  /* a TLS 1.2 suite */
	assert_int_equal(tls13_rec_init(&r, 0x1304, s, s, 32, 0, 0), -1);
	assert_null(r.cipher);
	/* the secret length is the suite's hash length */
	assert_int_equal(tls13_rec_init(&r, 0x1301, s, s, 48, 0, 0), -1);
	assert_null(r.cipher);
	assert_int_equal(r.rd.secret[0], 0);
	assert_int_equal(tls13_rec_init(&r, 0x1302, s, s, 32, 0, 0), -1);
	assert_int_equal(tls13_rec_init(&r, 0x1303, s, s, 31, 0, 0), -1);
	for (size_t i = 0; i < 3; i++) {
		unsigned suite = test_suites[i];

		assert_int_equal(tls13_rec_init(&r, suite, s, s,
						test_hash_len(suite), 5, 9), 0);
		assert_non_null(r.cipher);
		assert_int_equal(r.rd.seq, 5);
		assert_int_equal(r.wr.seq, 9);
		assert_int_equal(r.key_len, suite == 0x1301 ? 16 : 32);
		/* the same secret both ways: the same keys */
		assert_memory_equal(r.rd.key, r.wr.key, r.key_len);
		assert_memory_equal(r.rd.iv, r.wr.iv, 12);
		tls13_rec_clear(&r);
		/* wiped */
		assert_null(r.cipher);
		assert_int_equal(r.rd.secret[0], 0);
		assert_int_equal(r.wr.key[0] | r.wr.key[1] | r.wr.iv[0], 0);
	}
}

/* sizes 0, 1, 100 and 16384 both ways for each suite; 16385 refused */
static void test_round_trip(void **st)
{
	static unsigned char in[TLS13_REC_MAX_PLAIN + 1], rec[TEST_REC_MAX],
		out[TEST_REC_MAX];
	static const size_t sizes[] = { 0, 1, 100, TLS13_REC_MAX_PLAIN };

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i ^ (i >> 8));
	for (size_t si = 0; si < 3; si++) {
		struct test_pair p;

		test_pair_init(&p, test_suites[si]);
		for (size_t k = 0; k < 4; k++) {
			size_t n = sizes[k], outlen = 99;
			int alert = -1;
			long len;

			/* a to b */
			len = tls13_rec_seal(&p.a, p.aw, TLS13_CT_APPDATA, in,
					     n, rec);
			assert_int_equal(len, n + TLS13_REC_OVERHEAD);
			assert_int_equal(rec[0], 23);
			assert_int_equal(rec[1], 3);
			assert_int_equal(rec[2], 3);
			assert_int_equal(tls13_rec_header(rec, &alert),
					 len - TLS13_REC_HDR);
			if (n >= 100)   /* it is encrypted */
				assert_memory_not_equal(rec + TLS13_REC_HDR,
							in, n);
			assert_int_equal(tls13_rec_open(&p.b, p.br, rec,
							(size_t)len, out,
							&outlen, &alert),
					 TLS13_OPEN_DATA);
			assert_int_equal(outlen, n);
			if (n > 0)
				assert_memory_equal(out, in, n);
			/* b to a */
			len = tls13_rec_seal(&p.b, p.bw, TLS13_CT_APPDATA, in,
					     n, rec);
			assert_int_equal(len, n + TLS13_REC_OVERHEAD);
			assert_int_equal(tls13_rec_open(&p.a, p.ar, rec,
							(size_t)len, out,
							&outlen, &alert),
					 TLS13_OPEN_DATA);
			assert_int_equal(outlen, n);
			if (n > 0)
				assert_memory_equal(out, in, n);
		}
		assert_int_equal(p.a.wr.seq, 4);
		assert_int_equal(p.b.rd.seq, 4);
		/* too big: refused, the sequence unchanged */
		assert_int_equal(tls13_rec_seal(&p.a, p.aw, TLS13_CT_APPDATA,
						in, TLS13_REC_MAX_PLAIN + 1,
						rec), -1);
		assert_int_equal(p.a.wr.seq, 4);
		test_forth(&p, "still in step");
		test_back(&p, "both ways");
		test_pair_free(&p);
	}
}

/* any bit flipped anywhere: bad_record_mac, nothing out, nothing moved */
static void test_tamper(void **st)
{
	for (size_t si = 0; si < 3; si++) {
		struct test_pair p;
		unsigned char rec[128], bad[128], rec2[128], out[128];
		size_t outlen;
		long len, len2;
		int alert;

		test_pair_init(&p, test_suites[si]);
		len = tls13_rec_seal(&p.a, p.aw, TLS13_CT_APPDATA,
				     U("MAIL FROM:<a@b.example>\r\n"), 25, rec);
		assert_int_equal(len, 25 + TLS13_REC_OVERHEAD);
		for (long bit = 0; bit < len * 8; bit++) {
			memcpy(bad, rec, (size_t)len);
			bad[bit / 8] ^= (unsigned char)(1 << (bit % 8));
			alert = -1;
			outlen = 99;
			assert_int_equal(tls13_rec_open(&p.b, p.br, bad,
							(size_t)len, out,
							&outlen, &alert),
					 TLS13_OPEN_ERROR);
			assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
			assert_int_equal(outlen, 0);
			assert_int_equal(p.b.rd.seq, 0);
		}
		/* cut short, or too short to hold a tag and a type */
		for (long cut = 0; cut < len; cut++) {
			alert = -1;
			assert_int_equal(tls13_rec_open(&p.b, p.br, rec,
							(size_t)cut, out,
							&outlen, &alert),
					 TLS13_OPEN_ERROR);
			assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
		}
		/* a's own record with a's read key: the other direction */
		alert = -1;
		assert_int_equal(tls13_rec_open(&p.a, p.ar, rec, (size_t)len,
						out, &outlen, &alert),
				 TLS13_OPEN_ERROR);
		assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
		/* out of order: the second record first */
		len2 = tls13_rec_seal(&p.a, p.aw, TLS13_CT_APPDATA, U("RCPT"),
				      4, rec2);
		alert = -1;
		assert_int_equal(tls13_rec_open(&p.b, p.br, rec2, (size_t)len2,
						out, &outlen, &alert),
				 TLS13_OPEN_ERROR);
		assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
		/* the untouched records, in order, still open */
		assert_int_equal(tls13_rec_open(&p.b, p.br, rec, (size_t)len,
						out, &outlen, &alert),
				 TLS13_OPEN_DATA);
		assert_int_equal(outlen, 25);
		assert_memory_equal(out, "MAIL FROM:<a@b.example>\r\n", 25);
		/* replayed */
		alert = -1;
		assert_int_equal(tls13_rec_open(&p.b, p.br, rec, (size_t)len,
						out, &outlen, &alert),
				 TLS13_OPEN_ERROR);
		assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
		assert_int_equal(tls13_rec_open(&p.b, p.br, rec2, (size_t)len2,
						out, &outlen, &alert),
				 TLS13_OPEN_DATA);
		assert_memory_equal(out, "RCPT", 4);
		test_pair_free(&p);
	}
}

static void test_header(void **st)
{
	unsigned char h[TLS13_REC_HDR] = { 23, 3, 3, 0, 0 };
	int alert = -1;

	assert_int_equal(tls13_rec_header(h, &alert), 0);
	h[3] = 0x41;                  /* 16640 = 2^14 + 256 */
	assert_int_equal(tls13_rec_header(h, &alert), 16640);
	h[1] = 0;                     /* the legacy version is not checked */
	h[2] = 0;
	assert_int_equal(tls13_rec_header(h, &alert), 16640);
	h[4] = 1;
	assert_int_equal(tls13_rec_header(h, &alert), -1);
	assert_int_equal(alert, TLS13_AL_RECORD_OVERFLOW);
	h[3] = h[4] = 0xff;
	alert = -1;
	assert_int_equal(tls13_rec_header(h, &alert), -1);
	assert_int_equal(alert, TLS13_AL_RECORD_OVERFLOW);
	/* after the handshake only application_data goes outside */
	h[3] = 0;
	h[4] = 30;
	for (int t = 0; t < 256; t++) {
		if (t == 23)
			continue;
		h[0] = (unsigned char)t;
		alert = -1;
		assert_int_equal(tls13_rec_header(h, &alert), -1);
		assert_int_equal(alert, TLS13_AL_UNEXPECTED_MESSAGE);
	}
}

/* §5.4: TLSInnerPlaintext (content, type, padding) of at most 2^14 + 1 */
static void test_inner_limit(void **st)
{
	static unsigned char inner[TLS13_REC_MAX_PLAIN + 300];
	static unsigned char out[TLS13_REC_MAX_PLAIN + 300];
	struct test_pair p;
	size_t outlen;
	int alert;

	test_pair_init(&p, 0x1301);
	memset(inner, 'x', TLS13_REC_MAX_PLAIN);
	inner[TLS13_REC_MAX_PLAIN] = TLS13_CT_APPDATA;
	assert_int_equal(test_send_inner(&p, inner, TLS13_REC_MAX_PLAIN + 1,
					 out, &outlen, &alert),
			 TLS13_OPEN_DATA);
	assert_int_equal(outlen, TLS13_REC_MAX_PLAIN);
	/* one byte of padding more: too long, though its header is fine */
	inner[TLS13_REC_MAX_PLAIN + 1] = 0;
	assert_int_equal(test_send_inner(&p, inner, TLS13_REC_MAX_PLAIN + 2,
					 out, &outlen, &alert),
			 TLS13_OPEN_ERROR);
	assert_int_equal(alert, TLS13_AL_RECORD_OVERFLOW);
	test_pair_free(&p);

	/* as much padding as the header allows (2^14 + 256 - tag) */
	test_pair_init(&p, 0x1303);
	memset(inner, 0, sizeof(inner));
	inner[0] = 'y';
	inner[1] = TLS13_CT_APPDATA;
	assert_int_equal(test_send_inner(&p, inner,
					 TLS13_REC_MAX_BODY - TLS13_REC_TAG,
					 out, &outlen, &alert),
			 TLS13_OPEN_ERROR);
	assert_int_equal(alert, TLS13_AL_RECORD_OVERFLOW);
	test_pair_free(&p);
}

static void test_padding(void **st)
{
	static const size_t pads[] = { 1, 2, 15, 16, 200, 16000 };
	static unsigned char inner[TLS13_REC_MAX_PLAIN + 1], out[TEST_REC_MAX];
	struct test_pair p;
	size_t outlen;
	int alert;

	/* the hand sealer agrees with tls13_rec_seal (no padding) */
	{
		unsigned char r1[64], r2[64];
		long l1;
		size_t l2;

		test_pair_init(&p, 0x1302);
		l1 = tls13_rec_seal(&p.a, p.aw, TLS13_CT_APPDATA, U("abc"), 3,
				    r1);
		p.a.wr.seq--;
		l2 = test_seal_inner(&p.a, (const unsigned char *)"abc\x17", 4,
				     r2);
		assert_int_equal(l1, l2);
		assert_memory_equal(r1, r2, l2);
		test_pair_free(&p);
	}
	for (size_t si = 0; si < 3; si++) {
		test_pair_init(&p, test_suites[si]);
		for (size_t k = 0; k < sizeof(pads) / sizeof(pads[0]); k++) {
			memset(inner, 0, sizeof(inner));
			memcpy(inner, "abc\0d\0", 6);  /* zeros inside stay */
			inner[6] = TLS13_CT_APPDATA;
			assert_int_equal(test_send_inner(&p, inner, 7 + pads[k],
							 out, &outlen, &alert),
					 TLS13_OPEN_DATA);
			assert_int_equal(outlen, 6);
			assert_memory_equal(out, "abc\0d\0", 6);
		}
		/* no content, padded */
		memset(inner, 0, sizeof(inner));
		inner[0] = TLS13_CT_APPDATA;
		assert_int_equal(test_send_inner(&p, inner, 40, out, &outlen,
						 &alert), TLS13_OPEN_DATA);
		assert_int_equal(outlen, 0);
		/* an alert and a KeyUpdate may be padded too */
		memcpy(inner, "\1\0\x15\0\0\0", 6);
		assert_int_equal(test_send_inner(&p, inner, 6, out, &outlen,
						 &alert), TLS13_OPEN_CLOSE);
		test_pair_free(&p);

		test_pair_init(&p, test_suites[si]);
		memset(inner, 0, sizeof(inner));
		memcpy(inner, "\x18\0\0\1\0\x16", 6);
		assert_int_equal(test_send_inner(&p, inner, 30, out, &outlen,
						 &alert),
				 TLS13_OPEN_KEY_CHANGED);
		test_pair_free(&p);

		/* all zeros: no content type */
		for (size_t n = 1; n <= 300; n += 299) {
			test_pair_init(&p, test_suites[si]);
			memset(inner, 0, sizeof(inner));
			assert_int_equal(test_send_inner(&p, inner, n, out,
							 &outlen, &alert),
					 TLS13_OPEN_ERROR);
			assert_int_equal(alert, TLS13_AL_UNEXPECTED_MESSAGE);
			/* the MAC was good: the sequence moved */
			assert_int_equal(p.b.rd.seq, 1);
			test_pair_free(&p);
		}
	}
	/* an empty inner plaintext (a bare tag) has no type either: §5.4,
	 * unexpected_message, once the tag checked (the sequence moved) */
	test_pair_init(&p, 0x1301);
	assert_int_equal(test_send_inner(&p, inner, 0, out, &outlen, &alert),
			 TLS13_OPEN_ERROR);
	assert_int_equal(alert, TLS13_AL_UNEXPECTED_MESSAGE);
	assert_int_equal(p.b.rd.seq, 1);
	test_pair_free(&p);
}

struct test_alert_case {
	size_t n;
	unsigned char b[4];
	enum tls13_open want;
	int alert;
};

static void test_alerts(void **st)
{
	static const struct test_alert_case cases[] = {
		{ 2, { 1, 0 }, TLS13_OPEN_CLOSE, -1 },       /* close_notify */
		{ 2, { 1, 90 }, TLS13_OPEN_CLOSE, -1 },      /* user_canceled */
		{ 2, { 2, 0 }, TLS13_OPEN_CLOSE, -1 },       /* level ignored */
		{ 2, { 2, 40 }, TLS13_OPEN_ERROR, 256 + 40 },
		/* a warning-level alert is an error all the same */
		{ 2, { 1, 42 }, TLS13_OPEN_ERROR, 256 + 42 },
		{ 2, { 2, 20 }, TLS13_OPEN_ERROR, 256 + 20 },
		{ 2, { 2, 255 }, TLS13_OPEN_ERROR, 256 + 255 },
		{ 3, { 1, 0, 0 }, TLS13_OPEN_ERROR, TLS13_AL_DECODE_ERROR },
		{ 3, { 2, 40, 1 }, TLS13_OPEN_ERROR, TLS13_AL_DECODE_ERROR },
		{ 1, { 2 }, TLS13_OPEN_ERROR, TLS13_AL_DECODE_ERROR },
		{ 0, { 0 }, TLS13_OPEN_ERROR, TLS13_AL_DECODE_ERROR },
		{ 4, { 1, 0, 1, 0 }, TLS13_OPEN_ERROR, TLS13_AL_DECODE_ERROR },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct test_pair p;
		unsigned char out[64];
		size_t outlen = 99;
		int alert;

		test_pair_init(&p, test_suites[i % 3]);
		assert_int_equal(test_send(&p, TLS13_CT_ALERT, cases[i].b,
					   cases[i].n, out, &outlen, &alert),
				 cases[i].want);
		if (cases[i].alert >= 0)
			assert_int_equal(alert, cases[i].alert);
		assert_int_equal(outlen, 0);
		test_pair_free(&p);
	}
}

/* The peer asks for our key: both sides move on, both ways still work. */
static void test_key_update_requested(void **st)
{
	static const unsigned char ku[5] = { 24, 0, 0, 1, 1 };

	for (size_t si = 0; si < 3; si++) {
		struct test_pair p;
		unsigned char out[64], rec[64], old_rd[TLS13_REC_MAX_SECRET];
		size_t hl = test_hash_len(test_suites[si]), outlen = 99;
		long len;
		int alert;

		test_pair_init(&p, test_suites[si]);
		test_forth(&p, "one");
		test_back(&p, "two");
		memcpy(old_rd, p.b.rd.secret, hl);
		assert_int_equal(test_send(&p, TLS13_CT_HANDSHAKE, ku, 5, out,
					   &outlen, &alert),
				 TLS13_OPEN_KEY_REQUESTED);
		assert_int_equal(outlen, 0);
		assert_memory_not_equal(p.b.rd.secret, old_rd, hl);
		assert_int_equal(p.b.rd.seq, 0);
		assert_int_equal(p.b.hs_len, 0);
		/* a moves to its next write secret, as after any KeyUpdate */
		test_advance_write(&p);
		assert_memory_equal(p.a.wr.secret, p.b.rd.secret, hl);
		assert_memory_equal(p.a.wr.key, p.b.rd.key, p.b.key_len);
		assert_memory_equal(p.a.wr.iv, p.b.rd.iv, 12);
		/* b's old read context is stale: refused, nothing moved ... */
		len = tls13_rec_seal(&p.a, p.aw, TLS13_CT_APPDATA, U("new"), 3,
				     rec);
		alert = -1;
		assert_int_equal(tls13_rec_open(&p.b, p.br, rec, (size_t)len,
						out, &outlen, &alert),
				 TLS13_OPEN_ERROR);
		assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
		assert_int_equal(p.b.rd.seq, 0);
		/* ... a new one opens the same record */
		test_ctx(&p.br, &p.b, 0);
		assert_int_equal(tls13_rec_open(&p.b, p.br, rec, (size_t)len,
						out, &outlen, &alert),
				 TLS13_OPEN_DATA);
		assert_memory_equal(out, "new", 3);
		/* b answers with its own: a opens it as KEY_CHANGED */
		len = tls13_rec_key_update(&p.b, p.bw, rec);
		assert_int_equal(len, TLS13_REC_OVERHEAD + 5);
		assert_int_equal(p.b.wr.seq, 0);
		assert_int_equal(tls13_rec_open(&p.a, p.ar, rec, (size_t)len,
						out, &outlen, &alert),
				 TLS13_OPEN_KEY_CHANGED);
		assert_memory_equal(p.a.rd.secret, p.b.wr.secret, hl);
		test_pair_ctx(&p);
		for (int i = 0; i < 3; i++) {
			test_forth(&p, "after the update");
			test_back(&p, "250 2.0.0 ok");
		}
		assert_int_equal(p.a.wr.seq, 4);
		assert_int_equal(p.b.wr.seq, 3);
		test_pair_free(&p);
	}
}

/* records from a, what b must make of each, in order */
struct test_step {
	int type;
	size_t n;
	unsigned char b[12];
	enum tls13_open want;
	int alert;
};

static void test_steps(const struct test_step *s, size_t count)
{
	struct test_pair p;

	test_pair_init(&p, 0x1301);
	for (size_t i = 0; i < count; i++) {
		unsigned char out[64];
		size_t outlen = 99;
		int alert;

		assert_int_equal(test_send(&p, s[i].type, s[i].b, s[i].n, out,
					   &outlen, &alert), s[i].want);
		if (s[i].want == TLS13_OPEN_ERROR)
			assert_int_equal(alert, s[i].alert);
		if (s[i].want == TLS13_OPEN_DATA) {
			assert_int_equal(outlen, s[i].n);
			assert_memory_equal(out, s[i].b, s[i].n);
		} else {
			assert_int_equal(outlen, 0);
		}
	}
	test_pair_free(&p);
}

#define TEST_STEPS(...) do { \
	static const struct test_step s_[] = { __VA_ARGS__ }; \
	test_steps(s_, sizeof(s_) / sizeof(s_[0])); \
} while (0)

#define HS TLS13_CT_HANDSHAKE
#define AD TLS13_CT_APPDATA
#define OK_ TLS13_OPEN_DATA, 0
#define MORE TLS13_OPEN_NOTHING, 0
#define CHANGED TLS13_OPEN_KEY_CHANGED, 0
#define ASKED TLS13_OPEN_KEY_REQUESTED, 0
#define FAIL(a) TLS13_OPEN_ERROR, a

static void test_key_update_split(void **st)
{
	/* 3 bytes, then 2 */
	TEST_STEPS({ AD, 2, "hi", OK_ },
		   { HS, 3, { 24, 0, 0 }, MORE },
		   { HS, 2, { 1, 0 }, CHANGED });
	TEST_STEPS({ HS, 4, { 24, 0, 0, 1 }, MORE },
		   { HS, 1, { 1 }, ASKED });
	/* a byte at a time */
	TEST_STEPS({ HS, 1, { 24 }, MORE }, { HS, 1, { 0 }, MORE },
		   { HS, 1, { 0 }, MORE }, { HS, 1, { 1 }, MORE },
		   { HS, 1, { 1 }, ASKED });

	/* and after the split one, the keys are right on both sides */
	{
		struct test_pair p;
		unsigned char out[64];
		size_t outlen;
		int alert;

		test_pair_init(&p, 0x1303);
		assert_int_equal(test_send(&p, HS, "\x18\0\0", 3, out, &outlen,
					   &alert), TLS13_OPEN_NOTHING);
		assert_int_equal(p.b.hs_len, 3);
		assert_int_equal(test_send(&p, HS, "\1\0", 2, out, &outlen,
					   &alert), TLS13_OPEN_KEY_CHANGED);
		assert_int_equal(p.b.hs_len, 0);
		test_advance_write(&p);
		test_ctx(&p.br, &p.b, 0);
		test_forth(&p, "split update");
		test_back(&p, "unchanged way");
		/* a second KeyUpdate later works the same */
		assert_int_equal(test_send(&p, HS, "\x18\0\0\1\0", 5, out,
					   &outlen, &alert),
				 TLS13_OPEN_KEY_CHANGED);
		test_advance_write(&p);
		test_ctx(&p.br, &p.b, 0);
		test_forth(&p, "twice");
		test_pair_free(&p);
	}
}

static void test_key_update_refused(void **st)
{
	/* request_update other than 0 and 1 */
	TEST_STEPS({ HS, 5, { 24, 0, 0, 1, 2 }, FAIL(47) });
	TEST_STEPS({ HS, 5, { 24, 0, 0, 1, 255 }, FAIL(47) });
	TEST_STEPS({ HS, 3, { 24, 0, 0 }, MORE },
		   { HS, 2, { 1, 2 }, FAIL(47) });
	/* more after the KeyUpdate in its record (§5.1) */
	TEST_STEPS({ HS, 6, { 24, 0, 0, 1, 0, 23 }, FAIL(10) });
	TEST_STEPS({ HS, 10, { 24, 0, 0, 1, 0, 24, 0, 0, 1, 0 }, FAIL(10) });
	TEST_STEPS({ HS, 3, { 24, 0, 0 }, MORE },
		   { HS, 3, { 1, 1, 24 }, FAIL(10) });
	/* other records between its pieces */
	TEST_STEPS({ HS, 3, { 24, 0, 0 }, MORE },
		   { AD, 2, "hi", FAIL(10) });
	TEST_STEPS({ HS, 1, { 24 }, MORE },
		   { TLS13_CT_ALERT, 2, { 1, 0 }, FAIL(10) });
	/* its length is 1 */
	TEST_STEPS({ HS, 6, { 24, 0, 0, 2, 0, 0 }, FAIL(50) });
	TEST_STEPS({ HS, 5, { 24, 1, 0, 1, 0 }, FAIL(50) });
	TEST_STEPS({ HS, 4, { 24, 0, 0, 0 }, FAIL(50) });
	/* other handshake messages: NewSessionTicket, Finished, a
	 * Certificate (we never ask), a ClientHello */
	TEST_STEPS({ HS, 5, { 4, 0, 0, 1, 0 }, FAIL(10) });
	TEST_STEPS({ HS, 8, { 20, 0, 0, 4, 1, 2, 3, 4 }, FAIL(10) });
	TEST_STEPS({ HS, 4, { 11, 0, 0, 0 }, FAIL(10) });
	TEST_STEPS({ HS, 2, { 1, 0 }, MORE }, { HS, 2, { 0, 9 }, FAIL(10) });
	/* an empty handshake record (§5.1) */
	TEST_STEPS({ HS, 0, { 0 }, FAIL(10) });
	/* inner types that may not come here */
	TEST_STEPS({ 20, 1, { 1 }, FAIL(10) });        /* change_cipher_spec */
	TEST_STEPS({ 24, 3, { 1, 0, 0 }, FAIL(10) });  /* heartbeat */
	TEST_STEPS({ 0x7f, 3, "abc", FAIL(10) });
	TEST_STEPS({ 0xff, 3, "abc", FAIL(10) });
}

static void test_sequence_limits(void **st)
{
	struct test_pair p;
	unsigned char rec[64], out[64];
	size_t outlen;
	int alert;

	/* every byte of the sequence number counts in the nonce */
	test_pair_init(&p, 0x1301);
	p.a.wr.seq = p.b.rd.seq = UINT64_C(0x0102030405060708);
	test_forth(&p, "far along");
	assert_int_equal(p.b.rd.seq, UINT64_C(0x0102030405060709));
	p.b.rd.seq ^= UINT64_C(1) << 60;
	assert_int_equal(test_send(&p, AD, "x", 1, out, &outlen, &alert),
			 TLS13_OPEN_ERROR);
	assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
	test_pair_free(&p);

	/* the last sequence number is never used */
	test_pair_init(&p, 0x1303);
	p.a.wr.seq = p.b.rd.seq = UINT64_MAX - 1;
	test_forth(&p, "last");
	assert_int_equal(p.a.wr.seq, UINT64_MAX);
	assert_int_equal(tls13_rec_seal(&p.a, p.aw, AD, U("x"), 1, rec), -1);
	assert_int_equal(tls13_rec_key_update(&p.a, p.aw, rec), -1);
	assert_int_equal(p.a.wr.seq, UINT64_MAX);
	/* nor opened: a record sealed at it by hand, its MAC good */
	assert_int_equal(p.b.rd.seq, UINT64_MAX);
	assert_int_equal(test_seal_inner(&p.a, (const unsigned char *)"x\x17",
					 2, rec), 1 + TLS13_REC_OVERHEAD);
	alert = -1;
	assert_int_equal(tls13_rec_open(&p.b, p.br, rec,
					1 + TLS13_REC_OVERHEAD, out, &outlen,
					&alert), TLS13_OPEN_ERROR);
	assert_int_equal(alert, TLS13_AL_BAD_RECORD_MAC);
	p.b.rd.seq = UINT64_MAX - 1;  /* the check, not the MAC, said no */
	p.a.wr.seq = UINT64_MAX - 1;
	assert_int_equal(test_seal_inner(&p.a, (const unsigned char *)"x\x17",
					 2, rec), 1 + TLS13_REC_OVERHEAD);
	assert_int_equal(tls13_rec_open(&p.b, p.br, rec,
					1 + TLS13_REC_OVERHEAD, out, &outlen,
					&alert), TLS13_OPEN_DATA);
	test_pair_free(&p);

	/* worn: rekey at 2^24 records */
	test_pair_init(&p, 0x1302);
	assert_false(tls13_rec_write_worn(&p.a));
	p.a.wr.seq = (UINT64_C(1) << 24) - 1;
	assert_false(tls13_rec_write_worn(&p.a));
	p.b.rd.seq = p.a.wr.seq;
	test_forth(&p, "x");
	assert_true(tls13_rec_write_worn(&p.a));
	test_advance_write(&p);
	assert_false(tls13_rec_write_worn(&p.a));
	test_pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_rfc8448_keys),
		cmocka_unit_test(test_rfc8448_records),
		cmocka_unit_test(test_rfc8448_ticket_refused),
		cmocka_unit_test(test_rfc8448_key_update),
		cmocka_unit_test(test_openssl_aes128),
		cmocka_unit_test(test_openssl_aes256),
		cmocka_unit_test(test_openssl_chacha),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_inner_limit),
		cmocka_unit_test(test_padding),
		cmocka_unit_test(test_alerts),
		cmocka_unit_test(test_key_update_requested),
		cmocka_unit_test(test_key_update_split),
		cmocka_unit_test(test_key_update_refused),
		cmocka_unit_test(test_sequence_limits),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
