/* Unit tests for submission/sub_policy: mynetworks, restriction lists,
 * header scans. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../submission/sub_policy.h"

static void test_net_match(void **st)
{
	struct err err;
	struct sub_policy_net *n =
		sub_policy_net_new("127.0.0.0/8, [::1]/128 192.0.2.7 "
				   "10.1.2.128/25", &err);

	assert_non_null(n);
	assert_int_equal(sub_policy_net_match(n, "127.9.9.9"), 1);
	assert_int_equal(sub_policy_net_match(n, "128.0.0.1"), 0);
	assert_int_equal(sub_policy_net_match(n, "::1"), 1);
	assert_int_equal(sub_policy_net_match(n, "::2"), 0);
	assert_int_equal(sub_policy_net_match(n, "192.0.2.7"), 1);
	assert_int_equal(sub_policy_net_match(n, "192.0.2.8"), 0);
	assert_int_equal(sub_policy_net_match(n, "10.1.2.200"), 1);
	assert_int_equal(sub_policy_net_match(n, "10.1.2.127"), 0);
	assert_int_equal(sub_policy_net_match(n, "garbage"), 0);
	sub_policy_net_free(n);
	assert_null(sub_policy_net_new("10.0.0.0/33", &err));
	assert_null(sub_policy_net_new("example.com", &err));
	n = sub_policy_net_new("", &err);
	assert_non_null(n);
	assert_int_equal(sub_policy_net_match(n, "127.0.0.1"), 0);
	sub_policy_net_free(n);
	sub_policy_net_free(NULL);
}

static void test_relay_restrictions(void **st)
{
	struct sub_policy_restr r;
	struct sub_policy_facts f = { 0 };
	struct err err;

	assert_int_equal(sub_policy_restr_parse(
		"permit_mynetworks, permit_sasl_authenticated "
		"reject_unauth_destination", &r, &err), 0);
	assert_int_equal(r.n, 3);
	f.local_dest = 0;
	assert_int_equal(sub_policy_eval(&r, &f), SUB_V_REJECT_RELAY);
	f.local_dest = 1;
	assert_int_equal(sub_policy_eval(&r, &f), SUB_V_DUNNO);
	f.local_dest = 0;
	f.authenticated = 1;
	assert_int_equal(sub_policy_eval(&r, &f), SUB_V_PERMIT);
	f.authenticated = 0;
	f.mynetworks = 1;
	assert_int_equal(sub_policy_eval(&r, &f), SUB_V_PERMIT);
	assert_int_equal(sub_policy_restr_parse("permit_everyone", &r, &err),
			 -1);
	assert_non_null(strstr(err.msg, "permit_everyone"));
	assert_int_equal(sub_policy_restr_parse("", &r, &err), 0);
	assert_int_equal(sub_policy_eval(&r, &f), SUB_V_DUNNO);
}

static void test_login_mismatch(void **st)
{
	struct sub_policy_restr r;
	struct sub_policy_facts f = { .authenticated = 1, .login_mismatch = 1 };
	struct err err;

	assert_int_equal(sub_policy_restr_parse("reject_sender_login_mismatch",
						&r, &err), 0);
	assert_int_equal(sub_policy_eval(&r, &f), SUB_V_REJECT_LOGIN);
	f.login_mismatch = 0;
	assert_int_equal(sub_policy_eval(&r, &f), SUB_V_DUNNO);
	assert_int_equal(sub_policy_owner_match("a@x.test, Alice@Demo.Test",
						"alice@demo.test"), 1);
	assert_int_equal(sub_policy_owner_match("a@x.test", "alice@demo.test"),
			 0);
	assert_int_equal(sub_policy_owner_match(NULL, "alice@demo.test"), 0);
}

static const char test_msg[] =
	"Received: from a\r\n\tby b\r\nReturn-Path: <x@y>\r\n"
	"Subject: hi\r\nDelivered-To:  Carol@Demo.test \r\n"
	"X-Long: a\r\n Message-ID: folded, not a field\r\n\r\n"
	"Message-ID: <in-body@x>\r\n";

static void test_headers(void **st)
{
	size_t len = strlen(test_msg);
	size_t hl = sub_policy_hdr_len(test_msg, len);

	assert_int_equal(hl, strstr(test_msg, "\r\n\r\n") + 4 - test_msg);
	assert_int_equal(sub_policy_hdr_has(test_msg, len, "subject"), 1);
	/* in a continuation line or the body: not a field */
	assert_int_equal(sub_policy_hdr_has(test_msg, len, "Message-ID"), 0);
	assert_int_equal(sub_policy_hdr_has(test_msg, len, "Date"), 0);
	assert_int_equal(sub_policy_delivered_to(test_msg, len,
						 "carol@demo.test"), 1);
	assert_int_equal(sub_policy_delivered_to(test_msg, len,
						 "carol@demo.testx"), 0);
	assert_int_equal(sub_policy_insert_at(test_msg, len),
			 strstr(test_msg, "Subject:") - test_msg);
}

static void test_headers_edge(void **st)
{
	const char *only = "Received: x\r\n\r\nbody";
	const char *none = "no header end";
	const char *lf = "Subject: a\n\nb\n";

	assert_int_equal(sub_policy_insert_at(only, strlen(only)), 13);
	assert_int_equal(sub_policy_hdr_len(none, strlen(none)), strlen(none));
	assert_int_equal(sub_policy_hdr_has(lf, strlen(lf), "Subject"), 1);
	assert_int_equal(sub_policy_insert_at("", 0), 0);
	/* a byte at a time: never reads past len */
	for (size_t i = 0; i <= strlen(test_msg); i++) {
		assert_true(sub_policy_hdr_len(test_msg, i) <= i);
		assert_true(sub_policy_insert_at(test_msg, i) <= i);
		sub_policy_delivered_to(test_msg, i, "carol@demo.test");
	}
}

static void test_token(void **st)
{
	assert_int_equal(sub_policy_token_ok("4F2A9C01D3"), 1);
	assert_int_equal(sub_policy_token_ok("a.b-c_d"), 1);
	assert_int_equal(sub_policy_token_ok(""), 0);
	assert_int_equal(sub_policy_token_ok("../x"), 0);
	assert_int_equal(sub_policy_token_ok("a b"), 0);
	assert_int_equal(sub_policy_token_ok(NULL), 0);
	char big[80];
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(sub_policy_token_ok(big), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_net_match),
		cmocka_unit_test(test_relay_restrictions),
		cmocka_unit_test(test_login_mismatch),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_headers_edge),
		cmocka_unit_test(test_token),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
