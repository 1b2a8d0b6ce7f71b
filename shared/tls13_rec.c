/* tls13_rec: TLS 1.3 record protection after the handshake (see
 * tls13_rec.h). Section numbers are RFC 8446's. */
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include "tls13_rec.h"

#define TLS13_HS_KEY_UPDATE 24
#define TLS13_AL_ILLEGAL_PARAMETER 47
/* §5.5: AES-GCM may protect 2^24.5 full-size records per key; rekey
 * well before (ChaCha20-Poly1305's limit is far above). */
#define TLS13_WRITE_REKEY   (UINT64_C(1) << 24)

int tls13_rec_suite_ok(unsigned suite)
{
	return suite == 0x1301 || suite == 0x1302 || suite == 0x1303;
}

/* HKDF-Expand-Label(secret, label, "", outlen) (§7.1) */
static int tls13_expand(const char *md, const unsigned char *secret,
			size_t slen, const char *label, unsigned char *out,
			size_t outlen)
{
	unsigned char info[2 + 1 + 6 + 16 + 1];
	size_t ll = strlen(label), n = 0;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ok;
	OSSL_PARAM p[5];
	EVP_KDF_CTX *kctx;
	EVP_KDF *kdf;

	if (ll > 16)
		return -1;
	info[n++] = (unsigned char)(outlen >> 8);
	info[n++] = (unsigned char)outlen;
	info[n++] = (unsigned char)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0;                       /* empty context */
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (kdf == NULL)
		return -1;
	kctx = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);
	if (kctx == NULL)
		return -1;
	p[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	p[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						(char *)md, 0);
	p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						 (void *)secret, slen);
	p[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n);
	p[4] = OSSL_PARAM_construct_end();
	ok = EVP_KDF_derive(kctx, out, outlen, p) == 1;
	EVP_KDF_CTX_free(kctx);
	OPENSSL_cleanse(info, sizeof(info));
	return ok ? 0 : -1;
}

/* key and iv from the direction's current secret (§7.3) */
static int tls13_dir_keys(const struct tls13_rec *r, struct tls13_dir *d)
{
	if (tls13_expand(r->md, d->secret, r->hash_len, "key", d->key,
			 r->key_len) < 0 ||
	    tls13_expand(r->md, d->secret, r->hash_len, "iv", d->iv,
			 sizeof(d->iv)) < 0)
		return -1;
	return 0;
}

/* application_traffic_secret_N+1 (§7.2), its keys, sequence 0 (§5.3) */
static int tls13_dir_next(const struct tls13_rec *r, struct tls13_dir *d)
{
	unsigned char next[TLS13_REC_MAX_SECRET];
	int rc;

	if (tls13_expand(r->md, d->secret, r->hash_len, "traffic upd", next,
			 r->hash_len) < 0)
		return -1;
	memcpy(d->secret, next, r->hash_len);
	OPENSSL_cleanse(next, sizeof(next));
	rc = tls13_dir_keys(r, d);
	d->seq = 0;
	return rc;
}

int tls13_rec_init(struct tls13_rec *r, unsigned suite,
		   const unsigned char *rsecret, const unsigned char *wsecret,
		   size_t len, uint64_t rseq, uint64_t wseq)
{
	const char *cipher;

	memset(r, 0, sizeof(*r));
	switch (suite) {
	case 0x1301:
		cipher = "AES-128-GCM", r->md = "SHA256";
		r->hash_len = 32, r->key_len = 16;
		break;
	case 0x1302:
		cipher = "AES-256-GCM", r->md = "SHA384";
		r->hash_len = 48, r->key_len = 32;
		break;
	case 0x1303:
		cipher = "ChaCha20-Poly1305", r->md = "SHA256";
		r->hash_len = 32, r->key_len = 32;
		break;
	default:
		return -1;
	}
	if (len != r->hash_len)
		goto fail;
	r->cipher = EVP_CIPHER_fetch(NULL, cipher, NULL);
	if (r->cipher == NULL)
		goto fail;
	memcpy(r->rd.secret, rsecret, len);
	memcpy(r->wr.secret, wsecret, len);
	r->rd.seq = rseq;
	r->wr.seq = wseq;
	if (tls13_dir_keys(r, &r->rd) < 0 || tls13_dir_keys(r, &r->wr) < 0)
		goto fail;
	return 0;
fail:
	tls13_rec_clear(r);
	return -1;
}

void tls13_rec_clear(struct tls13_rec *r)
{
	EVP_CIPHER_free(r->cipher);
	OPENSSL_cleanse(r, sizeof(*r));
}

EVP_CIPHER_CTX *tls13_rec_cipher_ctx(const struct tls13_rec *r, int enc)
{
	const struct tls13_dir *d = enc ? &r->wr : &r->rd;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	if (c == NULL)
		return NULL;
	/* the iv is set again for every record (tls13_nonce) */
	if (EVP_CipherInit_ex2(c, r->cipher, d->key, d->iv, enc, NULL) != 1) {
		EVP_CIPHER_CTX_free(c);
		return NULL;
	}
	return c;
}

/* §5.3: the sequence number, big-endian and left-padded, XOR the iv */
static void tls13_nonce(const struct tls13_dir *d, unsigned char n[12])
{
	memcpy(n, d->iv, 12);
	for (int i = 0; i < 8; i++)
		n[11 - i] ^= (unsigned char)(d->seq >> (8 * i));
}

long tls13_rec_header(const unsigned char hdr[TLS13_REC_HDR], int *alert)
{
	long len = (long)hdr[3] << 8 | hdr[4];

	/* §5: after the handshake every record is protected, so its outer
	 * type is application_data (a change_cipher_spec is only allowed
	 * while the handshake runs, §5) */
	if (hdr[0] != TLS13_CT_APPDATA) {
		*alert = TLS13_AL_UNEXPECTED_MESSAGE;
		return -1;
	}
	if (len > TLS13_REC_MAX_BODY) {
		*alert = TLS13_AL_RECORD_OVERFLOW;
		return -1;
	}
	return len;
}

long tls13_rec_seal(struct tls13_rec *r, EVP_CIPHER_CTX *c, int type,
		    const unsigned char *in, size_t n, unsigned char *out)
{
	size_t body = n + 1 + TLS13_REC_TAG;
	unsigned char nonce[12], t = (unsigned char)type;
	int l;

	if (n > TLS13_REC_MAX_PLAIN || r->wr.seq == UINT64_MAX)
		return -1;
	out[0] = TLS13_CT_APPDATA;           /* opaque_type, §5.2 */
	out[1] = 3;                          /* legacy_record_version */
	out[2] = 3;
	out[3] = (unsigned char)(body >> 8);
	out[4] = (unsigned char)body;
	tls13_nonce(&r->wr, nonce);
	if (EVP_EncryptInit_ex2(c, NULL, NULL, nonce, NULL) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &l, out, TLS13_REC_HDR) != 1 ||
	    (n > 0 && EVP_EncryptUpdate(c, out + TLS13_REC_HDR, &l, in,
					(int)n) != 1) ||
	    EVP_EncryptUpdate(c, out + TLS13_REC_HDR + n, &l, &t, 1) != 1 ||
	    EVP_EncryptFinal_ex(c, out + TLS13_REC_HDR + n + 1, &l) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TLS13_REC_TAG,
				out + TLS13_REC_HDR + n + 1) != 1)
		return -1;
	r->wr.seq++;
	return (long)(TLS13_REC_HDR + body);
}

/* Post-handshake messages from a client (§4.6): only KeyUpdate is
 * allowed (we never ask for a certificate), and it must end its record
 * (§5.1: messages before a key change align with a record boundary). */
static enum tls13_open tls13_post_hs(struct tls13_rec *r,
				     const unsigned char *p, size_t n,
				     int *alert)
{
	for (size_t i = 0; i < n; i++) {
		r->hs[r->hs_len++] = p[i];
		if (r->hs_len == 4) {
			if (r->hs[0] != TLS13_HS_KEY_UPDATE) {
				*alert = TLS13_AL_UNEXPECTED_MESSAGE;
				return TLS13_OPEN_ERROR;
			}
			if (r->hs[1] != 0 || r->hs[2] != 0 || r->hs[3] != 1) {
				*alert = TLS13_AL_DECODE_ERROR;
				return TLS13_OPEN_ERROR;
			}
		} else if (r->hs_len == 5) {
			int req = r->hs[4];

			r->hs_len = 0;
			if (req > 1) {               /* §4.6.3 */
				*alert = TLS13_AL_ILLEGAL_PARAMETER;
				return TLS13_OPEN_ERROR;
			}
			if (i + 1 != n) {
				*alert = TLS13_AL_UNEXPECTED_MESSAGE;
				return TLS13_OPEN_ERROR;
			}
			if (tls13_dir_next(r, &r->rd) < 0) {
				*alert = TLS13_AL_INTERNAL_ERROR;
				return TLS13_OPEN_ERROR;
			}
			return req ? TLS13_OPEN_KEY_REQUESTED :
				     TLS13_OPEN_KEY_CHANGED;
		}
	}
	return TLS13_OPEN_NOTHING;
}

enum tls13_open tls13_rec_open(struct tls13_rec *r, EVP_CIPHER_CTX *c,
			       const unsigned char *rec, size_t len,
			       unsigned char *out, size_t *outlen,
			       int *alert)
{
	unsigned char nonce[12];
	size_t clen, n;
	int l, l2, type;

	*outlen = 0;
	if (len < TLS13_REC_HDR + TLS13_REC_TAG || r->rd.seq == UINT64_MAX) {
		*alert = TLS13_AL_BAD_RECORD_MAC;
		return TLS13_OPEN_ERROR;
	}
	clen = len - TLS13_REC_HDR - TLS13_REC_TAG;
	/* §5.4: TLSInnerPlaintext is at most 2^14 + 1 bytes */
	if (clen > TLS13_REC_MAX_PLAIN + 1) {
		*alert = TLS13_AL_RECORD_OVERFLOW;
		return TLS13_OPEN_ERROR;
	}
	tls13_nonce(&r->rd, nonce);
	l = 0;                      /* plaintext so far (none when clen 0) */
	if (EVP_DecryptInit_ex2(c, NULL, NULL, nonce, NULL) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &l2, rec, TLS13_REC_HDR) != 1 ||
	    (clen > 0 && EVP_DecryptUpdate(c, out, &l, rec + TLS13_REC_HDR,
					   (int)clen) != 1) ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TLS13_REC_TAG,
				(void *)(rec + TLS13_REC_HDR + clen)) != 1 ||
	    EVP_DecryptFinal_ex(c, out + l, &l2) != 1) {
		*alert = TLS13_AL_BAD_RECORD_MAC;
		return TLS13_OPEN_ERROR;
	}
	r->rd.seq++;
	/* §5.4: the content type is the last non-zero byte; none at all
	 * (an empty or all-zero TLSInnerPlaintext) is unexpected_message */
	for (n = clen; n > 0 && out[n - 1] == 0; n--)
		;
	if (n == 0) {
		*alert = TLS13_AL_UNEXPECTED_MESSAGE;
		return TLS13_OPEN_ERROR;
	}
	type = out[--n];
	/* §5.1: a handshake message split over records must not have
	 * other record types between its pieces */
	if (r->hs_len > 0 && type != TLS13_CT_HANDSHAKE) {
		*alert = TLS13_AL_UNEXPECTED_MESSAGE;
		return TLS13_OPEN_ERROR;
	}
	switch (type) {
	case TLS13_CT_APPDATA:
		*outlen = n;
		return TLS13_OPEN_DATA;
	case TLS13_CT_ALERT:
		if (n != 2) {
			*alert = TLS13_AL_DECODE_ERROR;
			return TLS13_OPEN_ERROR;
		}
		/* §6.1: user_canceled is followed by close_notify; either
		 * ends the peer's data. Every other alert is an error,
		 * whatever its level (§6). */
		if (out[1] == TLS13_AL_CLOSE_NOTIFY ||
		    out[1] == TLS13_AL_USER_CANCELED)
			return TLS13_OPEN_CLOSE;
		*alert = 256 + out[1];
		return TLS13_OPEN_ERROR;
	case TLS13_CT_HANDSHAKE:
		if (n == 0) {                        /* §5.1 */
			*alert = TLS13_AL_UNEXPECTED_MESSAGE;
			return TLS13_OPEN_ERROR;
		}
		return tls13_post_hs(r, out, n, alert);
	default:
		*alert = TLS13_AL_UNEXPECTED_MESSAGE;
		return TLS13_OPEN_ERROR;
	}
}

long tls13_rec_key_update(struct tls13_rec *r, EVP_CIPHER_CTX *c,
			  unsigned char *out)
{
	/* KeyUpdate, update_not_requested (§4.6.3) */
	static const unsigned char msg[5] = { TLS13_HS_KEY_UPDATE, 0, 0, 1, 0 };
	long len = tls13_rec_seal(r, c, TLS13_CT_HANDSHAKE, msg, sizeof(msg),
				  out);

	if (len < 0 || tls13_dir_next(r, &r->wr) < 0)
		return -1;
	return len;
}

int tls13_rec_write_worn(const struct tls13_rec *r)
{
	return r->wr.seq >= TLS13_WRITE_REKEY;
}
