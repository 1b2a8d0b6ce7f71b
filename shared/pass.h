/* pass: password schemes as Dovecot and Postfix Admin store them,
 * "{SCHEME}data": PLAIN (CLEARTEXT), PLAIN-MD5, MD5-CRYPT, SHA256-CRYPT,
 * SHA512-CRYPT, BLF-CRYPT, CRYPT. The crypt family goes through
 * libxcrypt's crypt_rn; comparisons are constant-time. Thread-safe. */
#ifndef PASS_H
#define PASS_H

#include "err.h"

/* 1 match, 0 mismatch, -1 malformed hash or unknown scheme. A value
 * without {SCHEME} uses default_scheme (NULL: CRYPT, Dovecot's default).
 * Dovecot's encoding suffixes are understood: "{PLAIN-MD5.B64}",
 * "{SHA512-CRYPT.HEX}", "{PLAIN.B64}" hold the scheme's raw value in
 * base64 or hex. */
int pass_verify(const char *stored, const char *password, const char *default_scheme);
/* malloc'd "{SCHEME}hash" with a fresh random salt, or NULL (err filled). */
char *pass_hash(const char *scheme, const char *password, struct err *err);
/* 1 if scheme (case-insensitive) is one pass knows, else 0. */
int pass_scheme_known(const char *scheme);

#endif
