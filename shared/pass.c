/* pass: Dovecot-style password schemes. The crypt family goes through
 * libxcrypt's crypt_rn with a heap struct crypt_data per call (it is
 * large, and crypt() is not thread-safe); MD5 and the comparisons come
 * from OpenSSL (EVP, CRYPTO_memcmp). Nothing here logs or keeps state. */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "pass.h"

enum pass_kind { PASS_PLAIN, PASS_PLAIN_MD5, PASS_CRYPT };
enum pass_enc { PASS_ENC_NONE, PASS_ENC_B64, PASS_ENC_HEX };

#define PASS_DATA_MAX 1024      /* a decoded .B64/.HEX value */

struct pass_scheme {
	const char *name;       /* as written in {...}, case-insensitive */
	const char *canon;      /* name pass_hash writes */
	enum pass_kind kind;
	const char *prefix;     /* crypt_gensalt prefix; NULL = libxcrypt's default */
};

/* Names as in Dovecot's doveadm-pw(1) / "Password Schemes" list. */
static const struct pass_scheme pass_schemes[] = {
	{ "PLAIN", "PLAIN", PASS_PLAIN, NULL },
	{ "CLEARTEXT", "PLAIN", PASS_PLAIN, NULL },
	{ "PLAIN-MD5", "PLAIN-MD5", PASS_PLAIN_MD5, NULL },
	{ "LDAP-MD5", "PLAIN-MD5", PASS_PLAIN_MD5, NULL },
	{ "MD5-CRYPT", "MD5-CRYPT", PASS_CRYPT, "$1$" },
	{ "MD5", "MD5-CRYPT", PASS_CRYPT, "$1$" },
	{ "SHA256-CRYPT", "SHA256-CRYPT", PASS_CRYPT, "$5$" },
	{ "SHA512-CRYPT", "SHA512-CRYPT", PASS_CRYPT, "$6$" },
	{ "BLF-CRYPT", "BLF-CRYPT", PASS_CRYPT, "$2y$" },
	{ "CRYPT", "CRYPT", PASS_CRYPT, NULL },
	{ NULL, NULL, PASS_PLAIN, NULL },
};

static const struct pass_scheme *pass_find(const char *name, size_t len)
{
	const struct pass_scheme *s;

	for (s = pass_schemes; s->name != NULL; s++)
		if (strlen(s->name) == len && strncasecmp(s->name, name, len) == 0)
			return s;
	return NULL;
}

int pass_scheme_known(const char *scheme)
{
	return scheme != NULL && pass_find(scheme, strlen(scheme)) != NULL;
}

/* Plain text: compare SHA-256 digests so the time does not depend on
 * where, or whether, the lengths differ. */
static int pass_verify_plain(const char *stored, const char *password)
{
	unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
	unsigned int al = 0, bl = 0;

	if (!EVP_Digest(stored, strlen(stored), a, &al, EVP_sha256(), NULL) ||
	    !EVP_Digest(password, strlen(password), b, &bl, EVP_sha256(), NULL) ||
	    al != bl)
		return -1;
	return CRYPTO_memcmp(a, b, al) == 0;
}

static int pass_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* PLAIN-MD5 data is 32 hex digits or, as Dovecot also accepts, the
 * 24-character base64 form of the 16-byte digest. */
static int pass_md5_decode(const char *data, unsigned char out[16])
{
	size_t len = strlen(data), i;
	unsigned char tmp[24];

	if (len == 32) {
		for (i = 0; i < 16; i++) {
			int h = pass_hexval(data[2 * i]), l = pass_hexval(data[2 * i + 1]);

			if (h < 0 || l < 0)
				return -1;
			out[i] = (unsigned char)(h << 4 | l);
		}
		return 0;
	}
	if (len == 24 && data[22] == '=' && data[23] == '=' &&
	    EVP_DecodeBlock(tmp, (const unsigned char *)data, 24) == 18) {
		memcpy(out, tmp, 16);
		return 0;
	}
	return -1;
}

static int pass_md5(const char *password, unsigned char out[16])
{
	unsigned int len = 0;

	if (!EVP_Digest(password, strlen(password), out, &len, EVP_md5(), NULL) || len != 16)
		return -1;
	return 0;
}

static int pass_verify_md5(const char *data, const char *password)
{
	unsigned char want[16], got[16];

	if (pass_md5_decode(data, want) < 0 || pass_md5(password, got) < 0)
		return -1;
	return CRYPTO_memcmp(want, got, 16) == 0;
}

/* Any crypt(3) hash: the hash names its own algorithm and salt (Dovecot
 * likewise hands {SHA512-CRYPT} data straight to crypt()). */
static int pass_verify_crypt(const char *data, const char *password)
{
	struct crypt_data *cd;
	const char *out;
	size_t len = strlen(data);
	int rc = -1;

	if (len == 0 || (cd = calloc(1, sizeof(*cd))) == NULL)
		return -1;
	out = crypt_rn(password, data, cd, sizeof(*cd));
	/* A hash of another length than the stored one means the stored
	 * value is no complete hash ("$6$", or a hex digest read as DES). */
	if (out != NULL && out[0] != '*' && strlen(out) == len)
		rc = CRYPTO_memcmp(out, data, len) == 0;
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return rc;
}

/* Dovecot's encoding suffix, "{SCHEME.B64}" or "{SCHEME.HEX}": the
 * stored data is that encoding of the scheme's raw value (doveadm-pw(1)
 * -s SCHEME.B64). Splits it off name[0..*len); returns the encoding. */
static enum pass_enc pass_enc_split(const char *name, size_t *len)
{
	if (*len > 4 && strncasecmp(name + *len - 4, ".B64", 4) == 0) {
		*len -= 4;
		return PASS_ENC_B64;
	}
	if (*len > 4 && strncasecmp(name + *len - 4, ".HEX", 4) == 0) {
		*len -= 4;
		return PASS_ENC_HEX;
	}
	return PASS_ENC_NONE;
}

/* Decode data (hex or base64) into out, NUL-terminated; *n_r gets the
 * decoded length. -1 on bad input or when it does not fit. */
static int pass_decode(const char *data, enum pass_enc enc, unsigned char *out,
		       size_t outsz, size_t *n_r)
{
	size_t len = strlen(data), i, pad = 0;
	int n;

	if (enc == PASS_ENC_HEX) {
		if (len % 2 != 0 || len / 2 + 1 > outsz)
			return -1;
		for (i = 0; i < len / 2; i++) {
			int h = pass_hexval(data[2 * i]), l = pass_hexval(data[2 * i + 1]);

			if (h < 0 || l < 0)
				return -1;
			out[i] = (unsigned char)(h << 4 | l);
		}
		*n_r = len / 2;
		out[*n_r] = '\0';
		return 0;
	}
	/* EVP_DecodeBlock counts the '=' padding as zero bytes. */
	if (len == 0 || len % 4 != 0 || len / 4 * 3 + 1 > outsz)
		return -1;
	while (pad < 2 && data[len - 1 - pad] == '=')
		pad++;
	n = EVP_DecodeBlock(out, (const unsigned char *)data, (int)len);
	if (n < 0 || (size_t)n < pad)
		return -1;
	*n_r = (size_t)n - pad;
	out[*n_r] = '\0';
	return 0;
}

static int pass_verify_kind(const struct pass_scheme *s, const char *data,
			    const char *password)
{
	switch (s->kind) {
	case PASS_PLAIN:
		return pass_verify_plain(data, password);
	case PASS_PLAIN_MD5:
		return pass_verify_md5(data, password);
	case PASS_CRYPT:
		return pass_verify_crypt(data, password);
	}
	return -1;
}

/* A suffixed value: PLAIN-MD5's raw value is the 16-byte digest; for the
 * others (plain text, crypt strings) it is the text itself, which must
 * hold no NUL. */
static int pass_verify_enc(const struct pass_scheme *s, enum pass_enc enc,
			   const char *data, const char *password)
{
	unsigned char raw[PASS_DATA_MAX], got[16];
	size_t n = 0;
	int rc;

	if (pass_decode(data, enc, raw, sizeof(raw), &n) < 0)
		return -1;
	if (s->kind == PASS_PLAIN_MD5)
		rc = n != 16 || pass_md5(password, got) < 0 ? -1 :
		     CRYPTO_memcmp(raw, got, 16) == 0;
	else
		rc = memchr(raw, '\0', n) != NULL ? -1 :
		     pass_verify_kind(s, (const char *)raw, password);
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}

int pass_verify(const char *stored, const char *password, const char *default_scheme)
{
	const struct pass_scheme *s;
	const char *data = stored, *end;
	enum pass_enc enc = PASS_ENC_NONE;
	size_t len;

	if (stored == NULL || password == NULL)
		return -1;
	if (stored[0] == '{' && (end = strchr(stored, '}')) != NULL) {
		len = (size_t)(end - stored - 1);
		enc = pass_enc_split(stored + 1, &len);
		s = pass_find(stored + 1, len);
		data = end + 1;
	} else {
		if (default_scheme == NULL)
			default_scheme = "CRYPT";
		len = strlen(default_scheme);
		enc = pass_enc_split(default_scheme, &len);
		s = pass_find(default_scheme, len);
	}
	if (s == NULL)
		return -1;
	if (enc != PASS_ENC_NONE)
		return pass_verify_enc(s, enc, data, password);
	return pass_verify_kind(s, data, password);
}

static char *pass_join(const char *scheme, const char *data, struct err *err)
{
	size_t n = strlen(scheme) + strlen(data) + 3;
	char *out = malloc(n);

	if (out == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	snprintf(out, n, "{%s}%s", scheme, data);
	return out;
}

static char *pass_hash_crypt(const struct pass_scheme *s, const char *password,
			     struct err *err)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *out;
	char *res = NULL;

	/* NULL random bytes: libxcrypt reads them from the OS itself. */
	if (crypt_gensalt_rn(s->prefix, 0, NULL, 0, salt, sizeof(salt)) == NULL) {
		err_set(err, 0, "%s: cannot make a salt", s->canon);
		return NULL;
	}
	if ((cd = calloc(1, sizeof(*cd))) == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	out = crypt_rn(password, salt, cd, sizeof(*cd));
	if (out == NULL || out[0] == '*')
		err_set(err, 0, "%s: crypt failed", s->canon);
	else
		res = pass_join(s->canon, out, err);
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return res;
}

char *pass_hash(const char *scheme, const char *password, struct err *err)
{
	const struct pass_scheme *s;
	unsigned char md[16];
	char hex[33];
	int i;

	if (scheme == NULL || password == NULL ||
	    (s = pass_find(scheme, strlen(scheme))) == NULL) {
		err_set(err, 0, "unknown password scheme \"%.40s\"", scheme != NULL ? scheme : "");
		return NULL;
	}
	switch (s->kind) {
	case PASS_PLAIN:
		return pass_join(s->canon, password, err);
	case PASS_PLAIN_MD5:
		if (pass_md5(password, md) < 0) {
			err_set(err, 0, "MD5 is not available");
			return NULL;
		}
		for (i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		return pass_join(s->canon, hex, err);
	case PASS_CRYPT:
		return pass_hash_crypt(s, password, err);
	}
	return NULL;
}
