/* Tests for sasl_glue: our client and our server, both real Cyrus SASL with
 * the installed PLAIN and LOGIN plugins, talking through the glue API in
 * one process, as the mx-relay forwarder talks to submission. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include "sasl_glue.h"
#include "log.h"

static pthread_mutex_t test_lock = PTHREAD_MUTEX_INITIALIZER;
static char test_last_user[256];
static int test_calls;

/* The daemon's password map, in miniature. */
static int test_checkpass(void *arg, const char *user, const char *pass)
{
	int *tag = arg;
	int rc = 0;

	pthread_mutex_lock(&test_lock);
	test_calls++;
	snprintf(test_last_user, sizeof(test_last_user), "%s", user);
	pthread_mutex_unlock(&test_lock);
	if (*tag != 42)
		return -1;
	if (strcmp(user, "temp@example.org") == 0)
		return -1;
	if (strcmp(user, "alice@example.org") == 0)
		rc = strcmp(pass, "s3cret pass") == 0;
	else if (strcmp(user, "bob") == 0)
		rc = strcmp(pass, "hunter2") == 0;
	return rc;
}

static int test_tag = 42;

static int test_setup(void **st)
{
	struct err e;

	log_open("test_sasl_glue", 0, 1);
	log_set_debug(1);
	if (sasl_glue_server_init("mailpair-test", NULL, test_checkpass,
				  &test_tag, &e) < 0) {
		fprintf(stderr, "server init: %s\n", e.msg);
		return -1;
	}
	if (sasl_glue_client_init("mailpair-test", NULL, &e) < 0) {
		fprintf(stderr, "client init: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static struct sasl_glue_server *test_server(int ssf)
{
	struct err e;
	struct sasl_glue_server *s;

	s = sasl_glue_server_new("smtp", "mx.example.org", "127.0.0.1;587",
				 "127.0.0.1;40000", ssf, &e);
	if (s == NULL)
		fprintf(stderr, "server_new: %s\n", e.msg);
	assert_non_null(s);
	return s;
}

static struct sasl_glue_client *test_client(const char *user,
					    const char *pass, int ssf)
{
	struct err e;
	struct sasl_glue_client *c;

	c = sasl_glue_client_new("smtp", "mx.example.org", user, pass, ssf,
				 &e);
	if (c == NULL)
		fprintf(stderr, "client_new: %s\n", e.msg);
	assert_non_null(c);
	return c;
}

/* Run a whole exchange the way the two SMTP sides would, returning the
 * server's final answer; *mech_r gets the mechanism the client chose. */
static enum sasl_glue_rc test_exchange(struct sasl_glue_server *s,
				       struct sasl_glue_client *c,
				       const char *offer, char *mech_r,
				       size_t mechlen)
{
	enum sasl_glue_rc crc, src;
	const char *mech = NULL;
	char *cout = NULL, *sout = NULL;
	int rounds = 0;

	crc = sasl_glue_client_start(c, offer, &mech, &cout);
	if (crc != SASL_GLUE_OK && crc != SASL_GLUE_CONTINUE)
		return crc;
	assert_non_null(mech);
	snprintf(mech_r, mechlen, "%s", mech);
	src = sasl_glue_server_start(s, mech, cout, &sout);
	free(cout);
	while (src == SASL_GLUE_CONTINUE && rounds++ < 5) {
		assert_non_null(sout);
		cout = NULL;
		crc = sasl_glue_client_step(c, sout, &cout);
		free(sout);
		sout = NULL;
		assert_true(crc == SASL_GLUE_OK || crc == SASL_GLUE_CONTINUE);
		assert_non_null(cout);
		src = sasl_glue_server_step(s, cout, &sout);
		free(cout);
	}
	free(sout);
	return src;
}

static void test_mechs_default(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	const char *m = sasl_glue_server_mechs(s);

	/* Exactly our two: no CRAM-MD5, SCRAM, ANONYMOUS from the plugin
	 * directory, since mech_list comes from us. */
	assert_true(strcmp(m, "PLAIN LOGIN") == 0 ||
		    strcmp(m, "LOGIN PLAIN") == 0);
	sasl_glue_server_free(s);
}

static void test_plain_good(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	struct sasl_glue_client *c = test_client("alice@example.org",
						 "s3cret pass", 256);
	char mech[32];

	test_last_user[0] = '\0';
	assert_int_equal(test_exchange(s, c, "PLAIN", mech, sizeof(mech)),
			 SASL_GLUE_OK);
	assert_string_equal(mech, "PLAIN");
	/* user@domain reaches our callback whole, no realm split or added. */
	assert_string_equal(test_last_user, "alice@example.org");
	assert_string_equal(sasl_glue_server_user(s), "alice@example.org");
	assert_string_equal(sasl_glue_server_mech(s), "PLAIN");
	sasl_glue_client_free(c);
	sasl_glue_server_free(s);
}

static void test_login_good(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	struct sasl_glue_client *c = test_client("bob", "hunter2", 256);
	char mech[32];

	assert_int_equal(test_exchange(s, c, "LOGIN", mech, sizeof(mech)),
			 SASL_GLUE_OK);
	assert_string_equal(mech, "LOGIN");
	/* A bare name gets no "@mx.example.org" appended. */
	assert_string_equal(test_last_user, "bob");
	assert_string_equal(sasl_glue_server_user(s), "bob");
	sasl_glue_client_free(c);
	sasl_glue_server_free(s);
}

static void test_login_wire(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	char *out = NULL;

	/* RFC-less but universal LOGIN: "Username:" then "Password:". */
	assert_int_equal(sasl_glue_server_start(s, "LOGIN", NULL, &out),
			 SASL_GLUE_CONTINUE);
	assert_string_equal(out, "VXNlcm5hbWU6");
	free(out);
	/* "alice@example.org" */
	assert_int_equal(sasl_glue_server_step(s, "YWxpY2VAZXhhbXBsZS5vcmc=",
					       &out), SASL_GLUE_CONTINUE);
	assert_string_equal(out, "UGFzc3dvcmQ6");
	free(out);
	/* "s3cret pass" */
	assert_int_equal(sasl_glue_server_step(s, "czNjcmV0IHBhc3M=", &out),
			 SASL_GLUE_OK);
	free(out);
	assert_string_equal(sasl_glue_server_user(s), "alice@example.org");
	sasl_glue_server_free(s);
}

static void test_plain_bad_password(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	struct sasl_glue_client *c = test_client("alice@example.org",
						 "wrong", 256);
	char mech[32];

	assert_int_equal(test_exchange(s, c, "PLAIN LOGIN", mech,
				       sizeof(mech)), SASL_GLUE_FAIL);
	assert_null(sasl_glue_server_user(s));
	/* The reason is for logs and never holds the password. */
	assert_null(strstr(sasl_glue_server_error(s), "wrong"));
	sasl_glue_client_free(c);
	sasl_glue_server_free(s);
}

static void test_login_bad_password(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	struct sasl_glue_client *c = test_client("bob", "hunter3", 256);
	char mech[32];

	assert_int_equal(test_exchange(s, c, "LOGIN", mech, sizeof(mech)),
			 SASL_GLUE_FAIL);
	assert_null(sasl_glue_server_user(s));
	sasl_glue_client_free(c);
	sasl_glue_server_free(s);
}

static void test_unknown_user(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	struct sasl_glue_client *c = test_client("nobody@example.org",
						 "x", 256);
	char mech[32];

	assert_int_equal(test_exchange(s, c, "PLAIN", mech, sizeof(mech)),
			 SASL_GLUE_FAIL);
	sasl_glue_client_free(c);
	sasl_glue_server_free(s);
}

static void test_tempfail(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	struct sasl_glue_client *c = test_client("temp@example.org",
						 "s3cret pass", 256);
	char mech[32];

	assert_int_equal(test_exchange(s, c, "PLAIN", mech, sizeof(mech)),
			 SASL_GLUE_TEMPFAIL);
	sasl_glue_client_free(c);
	sasl_glue_server_free(s);
}

static void test_unknown_mech(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	struct sasl_glue_client *c = test_client("bob", "hunter2", 256);
	const char *mech = NULL;
	char *out = NULL;

	assert_int_equal(sasl_glue_server_start(s, "X-NOSUCH", NULL, &out),
			 SASL_GLUE_NOMECH);
	assert_null(out);
	sasl_glue_server_free(s);
	/* Installed on the system but not in our mech_list. */
	s = test_server(256);
	assert_int_equal(sasl_glue_server_start(s, "CRAM-MD5", NULL, &out),
			 SASL_GLUE_NOMECH);
	sasl_glue_server_free(s);
	/* Nothing in common with a server offering only others. */
	assert_int_equal(sasl_glue_client_start(c, "GSSAPI CRAM-MD5 X-FOO",
						&mech, &out),
			 SASL_GLUE_NOMECH);
	assert_null(out);
	sasl_glue_client_free(c);
}

static void test_client_picks_ours(void **st)
{
	struct sasl_glue_client *c = test_client("bob", "hunter2", 256);
	const char *mech = NULL;
	char *out = NULL;
	enum sasl_glue_rc rc;

	rc = sasl_glue_client_start(c, "GSSAPI CRAM-MD5 DIGEST-MD5 LOGIN",
				    &mech, &out);
	assert_true(rc == SASL_GLUE_CONTINUE || rc == SASL_GLUE_OK);
	assert_string_equal(mech, "LOGIN");
	free(out);
	sasl_glue_client_free(c);
}

static void test_plain_initial_response_wire(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	char *out = NULL;
	char b64[128];
	unsigned len;
	/* RFC 4616: authzid NUL authcid NUL passwd; authzid empty. */
	static const char ok[] = "\0bob\0hunter2";
	static const char proxy[] = "alice@example.org\0bob\0hunter2";

	assert_int_equal(sasl_encode64(ok, sizeof(ok) - 1, b64, sizeof(b64),
				       &len), SASL_OK);
	assert_int_equal(sasl_glue_server_start(s, "PLAIN", b64, &out),
			 SASL_GLUE_OK);
	assert_null(out);
	assert_string_equal(sasl_glue_server_user(s), "bob");
	sasl_glue_server_free(s);

	/* Acting as somebody else is refused even with a good password. */
	s = test_server(256);
	assert_int_equal(sasl_encode64(proxy, sizeof(proxy) - 1, b64,
				       sizeof(b64), &len), SASL_OK);
	assert_int_not_equal(sasl_glue_server_start(s, "PLAIN", b64, &out),
			     SASL_GLUE_OK);
	assert_null(sasl_glue_server_user(s));
	sasl_glue_server_free(s);
}

static void test_plain_no_initial_response(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	char *out = NULL;

	/* "AUTH PLAIN" alone: an empty challenge ("334 "). */
	assert_int_equal(sasl_glue_server_start(s, "PLAIN", NULL, &out),
			 SASL_GLUE_CONTINUE);
	assert_non_null(out);
	assert_string_equal(out, "");
	free(out);
	assert_int_equal(sasl_glue_server_step(s, "AGJvYgBodW50ZXIy", &out),
			 SASL_GLUE_OK);
	free(out);
	assert_string_equal(sasl_glue_server_user(s), "bob");
	sasl_glue_server_free(s);
}

static void test_bad_input(void **st)
{
	struct sasl_glue_server *s = test_server(256);
	char *out = NULL;

	/* Not base64. */
	assert_int_equal(sasl_glue_server_start(s, "PLAIN", "AGJv!!Yg", &out),
			 SASL_GLUE_BADPROT);
	assert_null(out);
	sasl_glue_server_free(s);
	/* "=" is an empty initial response: PLAIN cannot parse it. */
	s = test_server(256);
	assert_int_not_equal(sasl_glue_server_start(s, "PLAIN", "=", &out),
			     SASL_GLUE_OK);
	free(out);
	sasl_glue_server_free(s);
	/* "*" cancels (RFC 4954 §4: 501). */
	s = test_server(256);
	assert_int_equal(sasl_glue_server_start(s, "LOGIN", NULL, &out),
			 SASL_GLUE_CONTINUE);
	free(out);
	assert_int_equal(sasl_glue_server_step(s, "*", &out),
			 SASL_GLUE_BADPROT);
	assert_null(out);
	assert_null(sasl_glue_server_user(s));
	sasl_glue_server_free(s);
}

static void test_security_options(void **st)
{
	struct sasl_glue_server *s = test_server(0);
	struct sasl_glue_client *c;
	struct err e;
	const char *mech = NULL;
	char *out = NULL;

	assert_int_equal(sasl_glue_server_set_options(s, "noanonymous, "
						      "noplaintext", &e), 0);
	/* Plaintext mechanisms without TLS under them: nothing to offer. */
	assert_string_equal(sasl_glue_server_mechs(s), "");
	assert_int_equal(sasl_glue_server_set_options(s, "nosuchword", &e),
			 -1);
	sasl_glue_server_free(s);
	/* The same options over TLS: PLAIN is fine again. */
	s = test_server(256);
	assert_int_equal(sasl_glue_server_set_options(s, "noanonymous "
						      "noplaintext", &e), 0);
	assert_non_null(strstr(sasl_glue_server_mechs(s), "PLAIN"));
	sasl_glue_server_free(s);
	/* Our client never sends a password without TLS. */
	c = test_client("bob", "hunter2", 0);
	assert_int_equal(sasl_glue_client_start(c, "PLAIN LOGIN", &mech,
						&out), SASL_GLUE_NOMECH);
	assert_null(out);
	sasl_glue_client_free(c);
}

struct test_thread {
	const char *user, *pass;
	int ok;
};

static void *test_thread_run(void *arg)
{
	struct test_thread *t = arg;
	struct sasl_glue_server *s;
	struct sasl_glue_client *c;
	char mech[32];
	int i;

	for (i = 0; i < 50; i++) {
		s = sasl_glue_server_new("smtp", "mx.example.org", NULL, NULL,
					 256, NULL);
		c = sasl_glue_client_new("smtp", "mx.example.org", t->user,
					 t->pass, 256, NULL);
		if (s != NULL && c != NULL &&
		    test_exchange(s, c, i % 2 ? "PLAIN" : "LOGIN", mech,
				  sizeof(mech)) == SASL_GLUE_OK &&
		    strcmp(sasl_glue_server_user(s), t->user) == 0)
			t->ok++;
		sasl_glue_client_free(c);
		sasl_glue_server_free(s);
	}
	return NULL;
}

/* Steps run on worker threads: several at once must not mix users. */
static void test_threads(void **st)
{
	struct test_thread t[2] = {
		{ "alice@example.org", "s3cret pass", 0 },
		{ "bob", "hunter2", 0 },
	};
	pthread_t th[2];
	int i;

	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, test_thread_run,
						&t[i]), 0);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(t[0].ok, 50);
	assert_int_equal(t[1].ok, 50);
}

static void test_ipport(void **st)
{
	struct sockaddr_in sin;
	char out[64];

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(587);
	sin.sin_addr.s_addr = htonl(0xC0000207);
	sasl_glue_ipport((struct sockaddr *)&sin, out, sizeof(out));
	assert_string_equal(out, "192.0.2.7;587");
	sasl_glue_server_free(NULL);
	sasl_glue_client_free(NULL);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_mechs_default),
		cmocka_unit_test(test_plain_good),
		cmocka_unit_test(test_login_good),
		cmocka_unit_test(test_login_wire),
		cmocka_unit_test(test_plain_bad_password),
		cmocka_unit_test(test_login_bad_password),
		cmocka_unit_test(test_unknown_user),
		cmocka_unit_test(test_tempfail),
		cmocka_unit_test(test_unknown_mech),
		cmocka_unit_test(test_client_picks_ours),
		cmocka_unit_test(test_plain_initial_response_wire),
		cmocka_unit_test(test_plain_no_initial_response),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_security_options),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_ipport),
	};
	return cmocka_run_group_tests(t, test_setup, NULL);
}
