/* tls13_rec: TLS 1.3 record protection after the handshake (RFC 8446 §5,
 * §7.1-§7.3), for a server that lets OpenSSL do the handshake and then
 * keeps only the two traffic secrets and sequence numbers (about 250
 * bytes) instead of OpenSSL's SSL object (13 KB per live connection).
 * The same job as kernel TLS, in user space. Pure: no I/O, no event loop;
 * the crypto is OpenSSL's (HKDF, AES-GCM, ChaCha20-Poly1305). The caller
 * owns every buffer and passes a cipher context of its own making (see
 * tls13_rec_cipher_ctx), so that nothing is allocated while idle. */
#ifndef TLS13_REC_H
#define TLS13_REC_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#define TLS13_REC_HDR        5
#define TLS13_REC_TAG        16
#define TLS13_REC_MAX_PLAIN  16384                 /* 2^14, §5.1 */
#define TLS13_REC_MAX_BODY   (16384 + 256)         /* §5.2 */
/* a sealed record of n plaintext bytes takes n + TLS13_REC_OVERHEAD */
#define TLS13_REC_OVERHEAD   (TLS13_REC_HDR + 1 + TLS13_REC_TAG)
#define TLS13_REC_MAX_SECRET 48

/* content types (§5.1) */
#define TLS13_CT_ALERT       21
#define TLS13_CT_HANDSHAKE   22
#define TLS13_CT_APPDATA     23

/* alert descriptions we send (§6.2) */
#define TLS13_AL_CLOSE_NOTIFY       0
#define TLS13_AL_UNEXPECTED_MESSAGE 10
#define TLS13_AL_BAD_RECORD_MAC     20
#define TLS13_AL_RECORD_OVERFLOW    22
#define TLS13_AL_DECODE_ERROR       50
#define TLS13_AL_INTERNAL_ERROR     80
#define TLS13_AL_USER_CANCELED      90

struct tls13_dir {
	unsigned char secret[TLS13_REC_MAX_SECRET];
	unsigned char key[32];
	unsigned char iv[12];
	uint64_t seq;
};

struct tls13_rec {
	EVP_CIPHER *cipher;     /* owned (fetched at init) */
	const char *md;         /* "SHA256" or "SHA384" */
	uint8_t hash_len, key_len;
	uint8_t hs_len;         /* bytes of a post-handshake message so far */
	uint8_t hs[7];
	struct tls13_dir rd, wr;
};

/* suite: the cipher suite's two-byte id (SSL_CIPHER_get_protocol_id):
 * 0x1301 TLS_AES_128_GCM_SHA256, 0x1302 TLS_AES_256_GCM_SHA384, 0x1303
 * TLS_CHACHA20_POLY1305_SHA256. rsecret/wsecret: the peer's and our
 * application traffic secrets (client/server_application_traffic_secret_0
 * for a server), len bytes each (the suite's hash length). Both sequence
 * numbers start at rseq/wseq. 0, or -1 (unknown suite, wrong length, or
 * OpenSSL failed) with r cleared. */
int tls13_rec_init(struct tls13_rec *r, unsigned suite,
		   const unsigned char *rsecret, const unsigned char *wsecret,
		   size_t len, uint64_t rseq, uint64_t wseq);

/* Frees the cipher and wipes the secrets. */
void tls13_rec_clear(struct tls13_rec *r);

/* 1 when the suite is one tls13_rec_init takes. */
int tls13_rec_suite_ok(unsigned suite);

/* A new cipher context for one direction's records, keyed for sealing
 * (enc=1) or opening (enc=0); NULL on failure. The caller frees it with
 * EVP_CIPHER_CTX_free(); it is only valid until that direction's key
 * changes: for the read side, tls13_rec_open returning
 * TLS13_OPEN_KEY_CHANGED or TLS13_OPEN_KEY_REQUESTED; for the write side,
 * tls13_rec_key_update. */
EVP_CIPHER_CTX *tls13_rec_cipher_ctx(const struct tls13_rec *r, int enc);

/* The header of the next record (§5.2): its body length, or -1 with
 * *alert set (not application_data, or longer than TLS13_REC_MAX_BODY).
 * The legacy version field is ignored, as §5.1 asks. */
long tls13_rec_header(const unsigned char hdr[TLS13_REC_HDR], int *alert);

/* Seal n <= TLS13_REC_MAX_PLAIN bytes of content type type into out,
 * which has room for n + TLS13_REC_OVERHEAD. Returns the record's length,
 * or -1 (OpenSSL failed, or the write sequence is used up). */
long tls13_rec_seal(struct tls13_rec *r, EVP_CIPHER_CTX *c, int type,
		    const unsigned char *in, size_t n, unsigned char *out);

/* What tls13_rec_open found in a record. */
enum tls13_open {
	TLS13_OPEN_ERROR = -1,     /* *alert says why; close the connection */
	TLS13_OPEN_DATA = 0,       /* *outlen bytes of application data */
	TLS13_OPEN_NOTHING,        /* handled (a KeyUpdate half-received) */
	TLS13_OPEN_KEY_CHANGED,    /* the peer's KeyUpdate: read key changed */
	TLS13_OPEN_KEY_REQUESTED,  /* as above, and the peer asks for ours:
	                              send a KeyUpdate (tls13_rec_key_update)
	                              before any more data */
	TLS13_OPEN_CLOSE,          /* close_notify or user_canceled */
};

/* Open the record rec (header and body, len bytes, as checked by
 * tls13_rec_header) with c (made by tls13_rec_cipher_ctx(r, 0)); the
 * plaintext goes to out (room for len - TLS13_REC_HDR - TLS13_REC_TAG).
 * Alerts from the peer are reported as TLS13_OPEN_ERROR with *alert set
 * to 256 + the peer's description. */
enum tls13_open tls13_rec_open(struct tls13_rec *r, EVP_CIPHER_CTX *c,
			       const unsigned char *rec, size_t len,
			       unsigned char *out, size_t *outlen,
			       int *alert);

/* Seal our KeyUpdate (update_not_requested) into out (room for
 * TLS13_REC_OVERHEAD + 5) with c, then move to the next write secret.
 * Returns the record's length or -1. c is stale afterwards. */
long tls13_rec_key_update(struct tls13_rec *r, EVP_CIPHER_CTX *c,
			  unsigned char *out);

/* 1 when the write side should rekey before the next record: AES-GCM's
 * safety margin (§5.5) is far, but the check is cheap. */
int tls13_rec_write_worn(const struct tls13_rec *r);

#endif
