/* Unit tests for shared/pass.c. The fixed hashes below were made by other
 * tools (not by pass.c), on 2026-11-26, with the command noted beside each. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>
#include "pass.h"

#define PW "Secret1!"

/* openssl passwd -1 -salt saltsalt 'Secret1!' */
static const char md5crypt[] = "$1$saltsalt$Xrh2DH5NTSSRnkxT2VSJV1";
/* openssl passwd -5 -salt saltsaltsalt 'Secret1!' */
static const char sha256crypt[] = "$5$saltsaltsalt$MFpzQ0LWahQaPNowr5EIdR3GvBS2ivf3hfFddRf7Hx4";
/* openssl passwd -6 -salt saltsaltsalt 'Secret1!' */
static const char sha512crypt[] = "$6$saltsaltsalt$cun35qjscyYOqKwIDoXk1x0YADVG/j.AU40sTqw/PxTkYNwwr2ddK9EuHMwxy0rsdSfrBmP.36lNoD1sKsbxu.";
/* openssl passwd -6 -salt 'rounds=10000$abc' 'x' */
static const char sha512rounds[] = "$6$rounds=10000$abc$UCUqOk6gcu9ZZtND2Z0UgYk8lwpVRmtR53Lsvl5g.kCesFgYAcUnyv3CZaGPARyVDChSCfm/81bYK.MFc2KRz1";
/* htpasswd -nbB -C 5 user 'Secret1!' */
static const char bcrypt[] = "$2y$05$kGmCGqHqgWBsrs673phMauhjBmmHtgCMsAMew0.7bVBfbKjmeeOaK";
/* htpasswd -nbd user 'Secret1' (traditional DES crypt, 8-char limit) */
static const char descrypt[] = "WXsqLsx/XXBEg";
/* htpasswd -nbm user 'Secret1!' (Apache's $apr1$, not a crypt(3) hash) */
static const char apr1[] = "$apr1$inxPZi6z$tlXQYjN5rwrYrgRxcCJ5M1";
/* printf %s 'Secret1!' | md5sum */
static const char md5hex[] = "f35dfb0188858f6292ed0ab40bd8597b";
/* printf %s 'Secret1!' | openssl dgst -md5 -binary | base64 */
static const char md5b64[] = "8137AYiFj2KS7Qq0C9hZew==";
/* openssl passwd -1 -salt xy '' (empty password) */
static const char md5crypt_empty[] = "$1$xy$JSgu5Zv4igzK2ULm5nTM30";

static char *cat(const char *a, const char *b)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "%s%s", a, b);
	return buf;
}

static void test_crypt_family_external(void **st)
{
	assert_int_equal(pass_verify(cat("{MD5-CRYPT}", md5crypt), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{MD5-CRYPT}", md5crypt), "Secret1?", NULL), 0);
	assert_int_equal(pass_verify(cat("{SHA256-CRYPT}", sha256crypt), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{SHA256-CRYPT}", sha256crypt), "secret1!", NULL), 0);
	assert_int_equal(pass_verify(cat("{SHA512-CRYPT}", sha512crypt), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{SHA512-CRYPT}", sha512crypt), "", NULL), 0);
	assert_int_equal(pass_verify(cat("{SHA512-CRYPT}", sha512rounds), "x", NULL), 1);
	assert_int_equal(pass_verify(cat("{SHA512-CRYPT}", sha512rounds), "y", NULL), 0);
	assert_int_equal(pass_verify(cat("{BLF-CRYPT}", bcrypt), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{BLF-CRYPT}", bcrypt), PW "x", NULL), 0);
	assert_int_equal(pass_verify(cat("{MD5-CRYPT}", md5crypt_empty), "", NULL), 1);
	assert_int_equal(pass_verify(cat("{MD5-CRYPT}", md5crypt_empty), "a", NULL), 0);
}

static void test_crypt_any(void **st)
{
	/* {CRYPT} takes whatever crypt(3) knows; scheme names are
	 * case-insensitive, and MD5 is Dovecot's alias of MD5-CRYPT. */
	assert_int_equal(pass_verify(cat("{CRYPT}", sha512crypt), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{crypt}", bcrypt), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{CRYPT}", descrypt), "Secret1", NULL), 1);
	assert_int_equal(pass_verify(cat("{CRYPT}", descrypt), "Secret2", NULL), 0);
	assert_int_equal(pass_verify(cat("{MD5}", md5crypt), PW, NULL), 1);
	/* Not crypt(3) at all: malformed, never a match. */
	assert_int_equal(pass_verify(cat("{CRYPT}", apr1), PW, NULL), -1);
	assert_int_equal(pass_verify("{CRYPT}", "", NULL), -1);
	assert_int_equal(pass_verify("{SHA512-CRYPT}$6$", PW, NULL), -1);
	assert_int_equal(pass_verify("{CRYPT}*0", "*0", NULL), -1);
}

static void test_plain_md5(void **st)
{
	assert_int_equal(pass_verify(cat("{PLAIN-MD5}", md5hex), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{PLAIN-MD5}", md5hex), "Secret1", NULL), 0);
	assert_int_equal(pass_verify(cat("{PLAIN-MD5}", md5b64), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{PLAIN-MD5}", md5b64), "x", NULL), 0);
	assert_int_equal(pass_verify("{PLAIN-MD5}F35DFB0188858F6292ED0AB40BD8597B", PW, NULL), 1);
	assert_int_equal(pass_verify("{PLAIN-MD5}f35dfb0188858f6292ed0ab40bd8597", PW, NULL), -1);
	assert_int_equal(pass_verify("{PLAIN-MD5}g35dfb0188858f6292ed0ab40bd8597b", PW, NULL), -1);
	assert_int_equal(pass_verify("{PLAIN-MD5}", PW, NULL), -1);
	/* MD5 of the empty string: printf %s '' | md5sum */
	assert_int_equal(pass_verify("{PLAIN-MD5}d41d8cd98f00b204e9800998ecf8427e", "", NULL), 1);
}

static void test_plain(void **st)
{
	assert_int_equal(pass_verify("{PLAIN}" PW, PW, NULL), 1);
	assert_int_equal(pass_verify("{CLEARTEXT}" PW, PW, NULL), 1);
	assert_int_equal(pass_verify("{PLAIN}" PW, "Secret1", NULL), 0);
	assert_int_equal(pass_verify("{PLAIN}" PW, PW "!", NULL), 0);
	assert_int_equal(pass_verify("{PLAIN}", "", NULL), 1);
	assert_int_equal(pass_verify("{PLAIN}", "x", NULL), 0);
	/* Everything after the first } is the password. */
	assert_int_equal(pass_verify("{PLAIN}{a}b", "{a}b", NULL), 1);
}

/* Dovecot's "{SCHEME.B64}" / "{SCHEME.HEX}": the data is that encoding of
 * the scheme's raw value (doveadm pw -s SCHEME.B64). Made with:
 * printf %s "$hash" | base64 -w0, and | xxd -p | tr -d '\n'. */
static const char sha512crypt_b64[] = "JDYkc2FsdHNhbHRzYWx0JGN1bjM1cWpzY3lZT3FLd0lEb1hrMXgwWUFEVkcvai5BVTQwc1Rxdy9QeFRrWU53d3IyZGRLOUV1SE13eHkwcnNkU2ZyQm1QLjM2bE5vRDFzS3NieHUu";
static const char sha512crypt_hex[] = "24362473616c7473616c7473616c742463756e3335716a736379594f714b7749446f586b31783059414456472f6a2e41553430735471772f5078546b594e7777723264644b394575484d77787930727364536672426d502e33366c4e6f4431734b736278752e";

static void test_encoding_suffix(void **st)
{
	assert_int_equal(pass_verify(cat("{PLAIN-MD5.B64}", md5b64), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{PLAIN-MD5.B64}", md5b64), "x", NULL), 0);
	assert_int_equal(pass_verify(cat("{plain-md5.hex}", md5hex), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{PLAIN-MD5.HEX}", md5hex), "Secret1", NULL), 0);
	assert_int_equal(pass_verify(cat("{SHA512-CRYPT.B64}", sha512crypt_b64), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{SHA512-CRYPT.B64}", sha512crypt_b64), "y", NULL), 0);
	assert_int_equal(pass_verify(cat("{SHA512-CRYPT.HEX}", sha512crypt_hex), PW, NULL), 1);
	assert_int_equal(pass_verify(cat("{CRYPT.HEX}", sha512crypt_hex), "z", NULL), 0);
	assert_int_equal(pass_verify("{PLAIN.B64}U2VjcmV0MSE=", PW, NULL), 1);
	assert_int_equal(pass_verify("{PLAIN.B64}U2VjcmV0MSE=", "Secret1", NULL), 0);
	assert_int_equal(pass_verify("{PLAIN.HEX}5365637265743121", PW, NULL), 1);
	/* the suffix on default_pass_scheme, for values without {SCHEME} */
	assert_int_equal(pass_verify(md5b64, PW, "PLAIN-MD5.B64"), 1);
	/* malformed: the wrong encoding, bad characters, a decoded NUL, a
	 * digest of the wrong size, an unknown base scheme */
	assert_int_equal(pass_verify(cat("{PLAIN-MD5.B64}", md5hex), PW, NULL), -1);
	assert_int_equal(pass_verify(cat("{PLAIN-MD5.HEX}", md5b64), PW, NULL), -1);
	assert_int_equal(pass_verify("{PLAIN.B64}!!!!", PW, NULL), -1);
	assert_int_equal(pass_verify("{PLAIN.B64}U2VjcmV0MSE", PW, NULL), -1);
	assert_int_equal(pass_verify("{PLAIN.HEX}536500", "Se", NULL), -1);
	assert_int_equal(pass_verify("{PLAIN.HEX}536", "S", NULL), -1);
	assert_int_equal(pass_verify("{PLAIN-MD5.HEX}00ff", PW, NULL), -1);
	assert_int_equal(pass_verify("{SSHA.B64}U2VjcmV0MSE=", PW, NULL), -1);
	assert_int_equal(pass_verify("{.B64}U2VjcmV0MSE=", PW, NULL), -1);
}

static void test_unknown_and_malformed(void **st)
{
	assert_int_equal(pass_verify("{ROT13}frperg", "secret", NULL), -1);
	assert_int_equal(pass_verify("{}x", "x", NULL), -1);
	assert_int_equal(pass_verify("secret", "secret", "NOSUCH"), -1);
	assert_int_equal(pass_verify(NULL, "x", NULL), -1);
	assert_int_equal(pass_verify("{PLAIN}x", NULL, NULL), -1);
	assert_int_equal(pass_scheme_known("sha512-crypt"), 1);
	assert_int_equal(pass_scheme_known("BLF-CRYPT"), 1);
	assert_int_equal(pass_scheme_known("SSHA"), 0);
	assert_int_equal(pass_scheme_known(NULL), 0);
}

static void test_default_scheme(void **st)
{
	/* No {SCHEME}: the default decides how to read the value. */
	assert_int_equal(pass_verify(sha512crypt, PW, "SHA512-CRYPT"), 1);
	assert_int_equal(pass_verify(sha512crypt, "nope", "SHA512-CRYPT"), 0);
	assert_int_equal(pass_verify(md5hex, PW, "PLAIN-MD5"), 1);
	assert_int_equal(pass_verify(PW, PW, "PLAIN"), 1);
	assert_int_equal(pass_verify(PW, PW, "SHA512-CRYPT"), -1);
	/* NULL default: CRYPT, as in Dovecot. */
	assert_int_equal(pass_verify(bcrypt, PW, NULL), 1);
	assert_int_equal(pass_verify(md5hex, PW, NULL), -1);
	/* An explicit prefix wins over the default. */
	assert_int_equal(pass_verify("{PLAIN}abc", "abc", "SHA512-CRYPT"), 1);
}

static void test_round_trip(void **st)
{
	static const struct { const char *scheme, *prefix; } v[] = {
		{ "PLAIN", "{PLAIN}" PW },
		{ "CLEARTEXT", "{PLAIN}" PW },
		{ "PLAIN-MD5", "{PLAIN-MD5}f35dfb0188858f6292ed0ab40bd8597b" },
		{ "MD5-CRYPT", "{MD5-CRYPT}$1$" },
		{ "SHA256-CRYPT", "{SHA256-CRYPT}$5$" },
		{ "SHA512-CRYPT", "{SHA512-CRYPT}$6$" },
		{ "blf-crypt", "{BLF-CRYPT}$2y$" },
		{ "CRYPT", "{CRYPT}$" },
	};
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct err err;
		char *h = pass_hash(v[i].scheme, PW, &err);
		char *h2;

		assert_non_null(h);
		assert_true(strncmp(h, v[i].prefix, strlen(v[i].prefix)) == 0);
		assert_int_equal(pass_verify(h, PW, NULL), 1);
		assert_int_equal(pass_verify(h, "wrong", NULL), 0);
		/* Two hashes of one password differ in their salt. */
		h2 = pass_hash(v[i].scheme, PW, &err);
		assert_non_null(h2);
		if (strstr(v[i].scheme, "CRYPT") != NULL || strstr(v[i].scheme, "crypt") != NULL)
			assert_string_not_equal(h, h2);
		free(h);
		free(h2);
	}
}

static void test_hash_unknown(void **st)
{
	struct err err;

	err.msg[0] = '\0';
	assert_null(pass_hash("ROT13", "x", &err));
	assert_non_null(strstr(err.msg, "ROT13"));
	assert_null(pass_hash(NULL, "x", &err));
}

/* crypt_rn with per-call state: threads verifying different algorithms
 * at once must each get their own right answer. */
struct test_job {
	char stored[256];
	const char *good;
	int ok;
};

static void *test_thread(void *arg)
{
	struct test_job *j = arg;
	int i;

	j->ok = 1;
	for (i = 0; i < 30; i++) {
		if (pass_verify(j->stored, j->good, NULL) != 1 ||
		    pass_verify(j->stored, "wrong", NULL) != 0)
			j->ok = 0;
	}
	return NULL;
}

static void test_threads(void **st)
{
	struct test_job jobs[4];
	pthread_t th[4];
	int i;

	snprintf(jobs[0].stored, sizeof(jobs[0].stored), "{SHA512-CRYPT}%s", sha512crypt);
	snprintf(jobs[1].stored, sizeof(jobs[1].stored), "{MD5-CRYPT}%s", md5crypt);
	snprintf(jobs[2].stored, sizeof(jobs[2].stored), "{SHA256-CRYPT}%s", sha256crypt);
	snprintf(jobs[3].stored, sizeof(jobs[3].stored), "{SHA512-CRYPT}%s", sha512rounds);
	jobs[0].good = jobs[1].good = jobs[2].good = PW;
	jobs[3].good = "x";
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, test_thread, &jobs[i]), 0);
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(jobs[i].ok, 1);
	}
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_crypt_family_external),
		cmocka_unit_test(test_crypt_any),
		cmocka_unit_test(test_plain_md5),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_encoding_suffix),
		cmocka_unit_test(test_unknown_and_malformed),
		cmocka_unit_test(test_default_scheme),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_hash_unknown),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
