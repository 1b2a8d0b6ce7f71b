/* Fuzz target: tls13_rec, the TLS 1.3 record layer. A server and its
 * peer with fixed secrets; the first byte picks the suite (bits 1-2:
 * 0x1301 + n % 3) and the mode (bit 0):
 *  0: the rest is a raw byte stream for the server: each header through
 *     tls13_rec_header, each whole record through tls13_rec_open. Most
 *     fail the MAC; the seeds hold records really sealed with the peer's
 *     secret below, so mutations also reach what follows decryption.
 *  1: the rest is chunks (type, length, bytes): the peer seals the bytes
 *     with that inner content type (high bit set: the inner plaintext is
 *     built here, with zero padding after the type) and the server opens
 *     the record. The result must be what a small model of §5.4, §5.1 and
 *     §4.6.3 predicts; data goes back sealed by the server and must open
 *     at the peer; a KeyUpdate moves the peer's write side on too, and
 *     one that asks is answered by the server's own (tls13_rec_key_update)
 *     which the peer must open as KEY_CHANGED. Stops at the first error.
 * Each open writes into a buffer of exactly the size the contract asks,
 * so ASan sees one byte more. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tls13_rec.h"

#define FUZZ_REC_MAX (TLS13_REC_HDR + TLS13_REC_MAX_BODY)

static void fuzz_tls13_rec_check(int cond)
{
	if (!cond)
		abort();
}

static unsigned fuzz_tls13_rec_suite(uint8_t b)
{
	return 0x1301 + (unsigned)((b >> 1) % 3);
}

/* the peer's write secret (the server's read) and the server's */
static void fuzz_tls13_rec_secrets(unsigned char *peer, unsigned char *srv)
{
	for (int i = 0; i < TLS13_REC_MAX_SECRET; i++) {
		peer[i] = (unsigned char)(0x11 * i + 1);
		srv[i] = (unsigned char)(0xa5 ^ (7 * i));
	}
}

static size_t fuzz_tls13_rec_hash_len(unsigned suite)
{
	return suite == 0x1302 ? 48 : 32;
}

static EVP_CIPHER_CTX *fuzz_tls13_rec_ctx(EVP_CIPHER_CTX *old,
					  const struct tls13_rec *r, int enc)
{
	EVP_CIPHER_CTX *c;

	EVP_CIPHER_CTX_free(old);
	c = tls13_rec_cipher_ctx(r, enc);
	fuzz_tls13_rec_check(c != NULL);
	return c;
}

static int fuzz_tls13_rec_alert_ok(int alert)
{
	return alert == TLS13_AL_UNEXPECTED_MESSAGE ||
	       alert == TLS13_AL_BAD_RECORD_MAC ||
	       alert == TLS13_AL_RECORD_OVERFLOW ||
	       alert == 47 /* illegal_parameter */ ||
	       alert == TLS13_AL_DECODE_ERROR ||
	       (alert >= 256 && alert < 512 && alert != 256 + 0 &&
		alert != 256 + TLS13_AL_USER_CANCELED);
}

/* open one record into a buffer of exactly the contract's size */
static enum tls13_open fuzz_tls13_rec_open(struct tls13_rec *r,
					   EVP_CIPHER_CTX *c,
					   const unsigned char *rec, size_t len,
					   unsigned char **out, size_t *outlen,
					   int *alert)
{
	size_t room = len > TLS13_REC_HDR + TLS13_REC_TAG ?
		      len - TLS13_REC_HDR - TLS13_REC_TAG : 0;
	uint64_t seq = r->rd.seq;
	enum tls13_open rc;

	*out = malloc(room ? room : 1);
	fuzz_tls13_rec_check(*out != NULL);
	*alert = -1;
	rc = tls13_rec_open(r, c, rec, len, *out, outlen, alert);
	switch (rc) {
	case TLS13_OPEN_ERROR:
		fuzz_tls13_rec_check(*outlen == 0);
		fuzz_tls13_rec_check(fuzz_tls13_rec_alert_ok(*alert));
		break;
	case TLS13_OPEN_DATA:
		fuzz_tls13_rec_check(*outlen < room);   /* the type byte */
		fuzz_tls13_rec_check(r->rd.seq == seq + 1);
		break;
	case TLS13_OPEN_KEY_CHANGED:
	case TLS13_OPEN_KEY_REQUESTED:
		fuzz_tls13_rec_check(*outlen == 0 && r->rd.seq == 0 &&
				     r->hs_len == 0);
		break;
	case TLS13_OPEN_NOTHING:
		fuzz_tls13_rec_check(r->hs_len > 0 && r->hs_len < 5);
		/* fall through */
	case TLS13_OPEN_CLOSE:
		fuzz_tls13_rec_check(*outlen == 0 && r->rd.seq == seq + 1);
		break;
	default:
		fuzz_tls13_rec_check(0);
	}
	return rc;
}

/* mode 0: a raw byte stream of records */
static void fuzz_tls13_rec_stream(unsigned suite, const uint8_t *p,
				  size_t len)
{
	unsigned char peer[TLS13_REC_MAX_SECRET], srv[TLS13_REC_MAX_SECRET];
	struct tls13_rec r;
	EVP_CIPHER_CTX *rd;

	fuzz_tls13_rec_secrets(peer, srv);
	fuzz_tls13_rec_check(tls13_rec_init(&r, suite, peer, srv,
					    fuzz_tls13_rec_hash_len(suite),
					    0, 0) == 0);
	rd = fuzz_tls13_rec_ctx(NULL, &r, 0);
	while (len >= TLS13_REC_HDR) {
		long declared = (long)p[3] << 8 | p[4], body;
		unsigned char *out;
		size_t outlen;
		int alert = -1;
		enum tls13_open rc;

		body = tls13_rec_header(p, &alert);
		if (body < 0) {
			fuzz_tls13_rec_check(
				(p[0] != TLS13_CT_APPDATA &&
				 alert == TLS13_AL_UNEXPECTED_MESSAGE) ||
				(p[0] == TLS13_CT_APPDATA &&
				 declared > TLS13_REC_MAX_BODY &&
				 alert == TLS13_AL_RECORD_OVERFLOW));
			break;
		}
		fuzz_tls13_rec_check(p[0] == TLS13_CT_APPDATA &&
				     body == declared);
		if (len - TLS13_REC_HDR < (size_t)body)
			break;
		rc = fuzz_tls13_rec_open(&r, rd, p,
					 TLS13_REC_HDR + (size_t)body, &out,
					 &outlen, &alert);
		free(out);
		if (rc == TLS13_OPEN_ERROR || rc == TLS13_OPEN_CLOSE)
			break;
		if (rc == TLS13_OPEN_KEY_CHANGED ||
		    rc == TLS13_OPEN_KEY_REQUESTED)
			rd = fuzz_tls13_rec_ctx(rd, &r, 0);
		p += TLS13_REC_HDR + (size_t)body;
		len -= TLS13_REC_HDR + (size_t)body;
	}
	EVP_CIPHER_CTX_free(rd);
	tls13_rec_clear(&r);
}

/* mode 1 */

/* What the server must make of an inner plaintext: §5.4 (the type is
 * the last non-zero byte), §5.1 (handshake pieces not interleaved,
 * nothing after a KeyUpdate in its record, no empty handshake record),
 * §6 (alerts), §4.6.3 (KeyUpdate); only KeyUpdate may come after the
 * handshake. hs/hs_len: the handshake bytes held over. */
static enum tls13_open fuzz_tls13_rec_model(unsigned char *hs, size_t *hs_len,
					    const unsigned char *in, size_t n,
					    size_t *dlen, int *alert)
{
	int type;

	*dlen = 0;
	while (n > 0 && in[n - 1] == 0)
		n--;
	if (n == 0) {
		*alert = TLS13_AL_UNEXPECTED_MESSAGE;
		return TLS13_OPEN_ERROR;
	}
	type = in[--n];
	if (*hs_len > 0 && type != TLS13_CT_HANDSHAKE) {
		*alert = TLS13_AL_UNEXPECTED_MESSAGE;
		return TLS13_OPEN_ERROR;
	}
	switch (type) {
	case TLS13_CT_APPDATA:
		*dlen = n;
		return TLS13_OPEN_DATA;
	case TLS13_CT_ALERT:
		if (n != 2) {
			*alert = TLS13_AL_DECODE_ERROR;
			return TLS13_OPEN_ERROR;
		}
		if (in[1] == 0 || in[1] == 90)
			return TLS13_OPEN_CLOSE;
		*alert = 256 + in[1];
		return TLS13_OPEN_ERROR;
	case TLS13_CT_HANDSHAKE:
		break;
	default:
		*alert = TLS13_AL_UNEXPECTED_MESSAGE;
		return TLS13_OPEN_ERROR;
	}
	if (n == 0) {
		*alert = TLS13_AL_UNEXPECTED_MESSAGE;
		return TLS13_OPEN_ERROR;
	}
	for (size_t i = 0; i < n; i++) {
		hs[(*hs_len)++] = in[i];
		if (*hs_len < 4)
			continue;
		if (*hs_len == 4) {
			if (hs[0] != 24) {
				*alert = TLS13_AL_UNEXPECTED_MESSAGE;
				return TLS13_OPEN_ERROR;
			}
			if (hs[1] != 0 || hs[2] != 0 || hs[3] != 1) {
				*alert = TLS13_AL_DECODE_ERROR;
				return TLS13_OPEN_ERROR;
			}
			continue;
		}
		*hs_len = 0;
		if (hs[4] > 1) {
			*alert = 47;
			return TLS13_OPEN_ERROR;
		}
		if (i + 1 != n) {
			*alert = TLS13_AL_UNEXPECTED_MESSAGE;
			return TLS13_OPEN_ERROR;
		}
		return hs[4] ? TLS13_OPEN_KEY_REQUESTED :
				TLS13_OPEN_KEY_CHANGED;
	}
	return TLS13_OPEN_NOTHING;
}

/* the peer seals any inner plaintext by hand */
static size_t fuzz_tls13_rec_seal_inner(struct tls13_rec *r,
					const unsigned char *in, size_t n,
					unsigned char *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	unsigned char nonce[12];
	size_t body = n + TLS13_REC_TAG;
	int l;

	fuzz_tls13_rec_check(c != NULL);
	memcpy(nonce, r->wr.iv, sizeof(nonce));
	for (int i = 0; i < 8; i++)
		nonce[11 - i] ^= (unsigned char)(r->wr.seq >> (8 * i));
	out[0] = TLS13_CT_APPDATA;
	out[1] = 3;
	out[2] = 3;
	out[3] = (unsigned char)(body >> 8);
	out[4] = (unsigned char)body;
	fuzz_tls13_rec_check(
		EVP_EncryptInit_ex2(c, r->cipher, r->wr.key, nonce,
				    NULL) == 1 &&
		EVP_EncryptUpdate(c, NULL, &l, out, TLS13_REC_HDR) == 1 &&
		(n == 0 || EVP_EncryptUpdate(c, out + TLS13_REC_HDR, &l, in,
					     (int)n) == 1) &&
		EVP_EncryptFinal_ex(c, out + TLS13_REC_HDR + n, &l) == 1 &&
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TLS13_REC_TAG,
				    out + TLS13_REC_HDR + n) == 1);
	EVP_CIPHER_CTX_free(c);
	r->wr.seq++;
	return TLS13_REC_HDR + body;
}

struct fuzz_tls13_rec_pair {
	struct tls13_rec peer, srv;
	EVP_CIPHER_CTX *pw, *pr, *sw, *sr;
	size_t hash_len;
};

/* the server seals data back; the peer must read it as it was */
static void fuzz_tls13_rec_echo(struct fuzz_tls13_rec_pair *x,
				const unsigned char *d, size_t n)
{
	static unsigned char rec[FUZZ_REC_MAX];
	unsigned char *out;
	size_t outlen;
	int alert;
	long len = tls13_rec_seal(&x->srv, x->sw, TLS13_CT_APPDATA, d, n, rec);

	fuzz_tls13_rec_check(len == (long)(n + TLS13_REC_OVERHEAD));
	fuzz_tls13_rec_check(fuzz_tls13_rec_open(&x->peer, x->pr, rec,
						 (size_t)len, &out, &outlen,
						 &alert) == TLS13_OPEN_DATA);
	fuzz_tls13_rec_check(outlen == n && memcmp(out, d, n) == 0);
	free(out);
}

/* after the server read a KeyUpdate */
static void fuzz_tls13_rec_rekey(struct fuzz_tls13_rec_pair *x, int asked)
{
	unsigned char rec[TLS13_REC_OVERHEAD + 5], *out;
	size_t outlen;
	int alert;
	long len;

	/* the peer's write side moves on as after its own KeyUpdate (the
	 * record made here is thrown away: it sent its KeyUpdate already) */
	fuzz_tls13_rec_check(tls13_rec_key_update(&x->peer, x->pw, rec) ==
			     (long)sizeof(rec));
	fuzz_tls13_rec_check(memcmp(x->peer.wr.secret, x->srv.rd.secret,
				    x->hash_len) == 0 &&
			     memcmp(x->peer.wr.key, x->srv.rd.key,
				    x->srv.key_len) == 0 &&
			     memcmp(x->peer.wr.iv, x->srv.rd.iv, 12) == 0 &&
			     x->peer.wr.seq == 0 && x->srv.rd.seq == 0);
	x->pw = fuzz_tls13_rec_ctx(x->pw, &x->peer, 1);
	x->sr = fuzz_tls13_rec_ctx(x->sr, &x->srv, 0);
	if (!asked)
		return;
	len = tls13_rec_key_update(&x->srv, x->sw, rec);
	fuzz_tls13_rec_check(len == (long)sizeof(rec) && x->srv.wr.seq == 0);
	fuzz_tls13_rec_check(fuzz_tls13_rec_open(&x->peer, x->pr, rec,
						 (size_t)len, &out, &outlen,
						 &alert) ==
			     TLS13_OPEN_KEY_CHANGED);
	free(out);
	x->sw = fuzz_tls13_rec_ctx(x->sw, &x->srv, 1);
	x->pr = fuzz_tls13_rec_ctx(x->pr, &x->peer, 0);
}

static void fuzz_tls13_rec_chunks(unsigned suite, const uint8_t *p,
				  size_t len)
{
	static unsigned char inner[255 + 1 + 16], rec[FUZZ_REC_MAX];
	unsigned char peer[TLS13_REC_MAX_SECRET], srv[TLS13_REC_MAX_SECRET];
	unsigned char hs[8];
	size_t hs_len = 0;
	struct fuzz_tls13_rec_pair x;

	fuzz_tls13_rec_secrets(peer, srv);
	x.hash_len = fuzz_tls13_rec_hash_len(suite);
	fuzz_tls13_rec_check(tls13_rec_init(&x.peer, suite, srv, peer,
					    x.hash_len, 0, 0) == 0);
	fuzz_tls13_rec_check(tls13_rec_init(&x.srv, suite, peer, srv,
					    x.hash_len, 0, 0) == 0);
	x.pw = fuzz_tls13_rec_ctx(NULL, &x.peer, 1);
	x.pr = fuzz_tls13_rec_ctx(NULL, &x.peer, 0);
	x.sw = fuzz_tls13_rec_ctx(NULL, &x.srv, 1);
	x.sr = fuzz_tls13_rec_ctx(NULL, &x.srv, 0);
	while (len >= 2) {
		int t = p[0], alert, want_alert = -1;
		size_t n = p[1] < len - 2 ? p[1] : len - 2, ilen, rlen;
		size_t outlen, dlen;
		const unsigned char *d = p + 2;
		unsigned char *out;
		enum tls13_open rc, want;

		p += 2 + n;
		len -= 2 + n;
		/* the inner plaintext, as sealed */
		memcpy(inner, d, n);
		inner[n] = (unsigned char)(t & 0x7f);
		ilen = n + 1;
		if (t & 0x80) {
			size_t pad = 1 + (n & 15);

			memset(inner + ilen, 0, pad);
			ilen += pad;
			rlen = fuzz_tls13_rec_seal_inner(&x.peer, inner, ilen,
							 rec);
		} else {
			long l = tls13_rec_seal(&x.peer, x.pw, t, d, n, rec);

			fuzz_tls13_rec_check(l >= 0);
			rlen = (size_t)l;
		}
		fuzz_tls13_rec_check(rlen == ilen + TLS13_REC_HDR +
					     TLS13_REC_TAG);
		fuzz_tls13_rec_check(tls13_rec_header(rec, &alert) ==
				     (long)(rlen - TLS13_REC_HDR));
		want = fuzz_tls13_rec_model(hs, &hs_len, inner, ilen, &dlen,
					    &want_alert);
		rc = fuzz_tls13_rec_open(&x.srv, x.sr, rec, rlen, &out,
					 &outlen, &alert);
		fuzz_tls13_rec_check(rc == want);
		if (rc == TLS13_OPEN_ERROR)
			fuzz_tls13_rec_check(alert == want_alert);
		if (rc == TLS13_OPEN_DATA)
			fuzz_tls13_rec_check(outlen == dlen &&
					     memcmp(out, inner, dlen) == 0);
		fuzz_tls13_rec_check(x.srv.hs_len == hs_len ||
				     rc == TLS13_OPEN_ERROR);
		if (rc == TLS13_OPEN_DATA)
			fuzz_tls13_rec_echo(&x, out, outlen);
		free(out);
		if (rc == TLS13_OPEN_ERROR || rc == TLS13_OPEN_CLOSE)
			break;
		if (rc == TLS13_OPEN_KEY_CHANGED ||
		    rc == TLS13_OPEN_KEY_REQUESTED) {
			fuzz_tls13_rec_rekey(&x,
					     rc == TLS13_OPEN_KEY_REQUESTED);
			/* both ways still work under the new keys */
			fuzz_tls13_rec_echo(&x, d, n);
		}
	}
	EVP_CIPHER_CTX_free(x.pw);
	EVP_CIPHER_CTX_free(x.pr);
	EVP_CIPHER_CTX_free(x.sw);
	EVP_CIPHER_CTX_free(x.sr);
	tls13_rec_clear(&x.peer);
	tls13_rec_clear(&x.srv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		fuzz_tls13_rec_chunks(fuzz_tls13_rec_suite(data[0]), data + 1,
				      size - 1);
	else
		fuzz_tls13_rec_stream(fuzz_tls13_rec_suite(data[0]), data + 1,
				      size - 1);
	return 0;
}
