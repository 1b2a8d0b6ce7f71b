/* smtp_cmd: verbs, MAIL/RCPT paths and parameters, BDAT, AUTH, XFORWARD,
 * xtext; plus every prefix of a command fed through smtp_line first (the
 * byte-at-a-time contract of the pair). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "smtp_cmd.h"

static enum smtp_rc parse(const char *s, struct smtp_cmd *c)
{
	return smtp_cmd_parse(s, strlen(s), c);
}

static void assert_span(const char *p, size_t n, const char *want)
{
	assert_int_equal(n, strlen(want));
	assert_memory_equal(p, want, n);
}

static void test_verbs(void **st)
{
	struct smtp_cmd c;

	assert_int_equal(parse("ehlo client.example", &c), SMTP_OK);
	assert_int_equal(c.verb, SMTP_CMD_EHLO);
	assert_span(c.arg, c.arg_len, "client.example");
	assert_int_equal(parse("QUIT", &c), SMTP_OK);
	assert_int_equal(c.verb, SMTP_CMD_QUIT);
	assert_int_equal(parse("NOOP anything at all", &c), SMTP_OK);
	assert_int_equal(parse("StartTLS", &c), SMTP_OK);
	assert_int_equal(c.verb, SMTP_CMD_STARTTLS);
	assert_int_equal(parse("FOO bar", &c), SMTP_ERR_UNKNOWN);
	assert_non_null(c.why);
	assert_int_equal(parse("MAILX FROM:<a@b>", &c), SMTP_ERR_UNKNOWN);
	assert_int_equal(parse("", &c), SMTP_ERR_UNKNOWN);
	assert_int_equal(parse("GET / HTTP/1.0", &c), SMTP_OK);
	assert_int_equal(c.verb, SMTP_CMD_HTTP);
}

static void test_arg_rules(void **st)
{
	struct smtp_cmd c;

	assert_int_equal(parse("EHLO", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("HELO   ", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("DATA x", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("RSET now", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("STARTTLS x", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("VRFY", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("DATA   ", &c), SMTP_OK);
	/* EHLO keeps the first word */
	assert_int_equal(parse("EHLO a.example extra", &c), SMTP_OK);
	assert_span(c.arg, c.arg_len, "a.example");
}

static void test_mail(void **st)
{
	struct smtp_cmd c;

	assert_int_equal(parse("MAIL FROM:<a@example.net>", &c), SMTP_OK);
	assert_int_equal(c.verb, SMTP_CMD_MAIL);
	assert_span(c.path, c.path_len, "a@example.net");
	assert_int_equal(parse("mail from: <a@example.net>", &c), SMTP_OK);
	assert_int_equal(parse("MAIL FROM:<>", &c), SMTP_OK);
	assert_int_equal(c.path_len, 0);
	assert_int_equal(parse("MAIL FROM:<\"a>b\"@example.net> SIZE=10", &c),
	                 SMTP_OK);
	assert_span(c.path, c.path_len, "\"a>b\"@example.net");
	assert_int_equal(c.size, 10);
	assert_int_equal(parse("MAIL FROM:a@example.net", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL TO:<a@example.net>", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@example.net", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@example.net>x", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a<b@example.net>", &c), SMTP_ERR_SYNTAX);
}

static void test_mail_params(void **st)
{
	struct smtp_cmd c;

	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=12345 BODY=8BITMIME "
	                       "SMTPUTF8 RET=HDRS ENVID=x+2By AUTH=<>", &c),
	                 SMTP_OK);
	assert_true(c.has_size);
	assert_int_equal(c.size, 12345);
	assert_int_equal(c.body, SMTP_BODY_8BITMIME);
	assert_int_equal(c.smtputf8, 1);
	assert_int_equal(c.ret, SMTP_RET_HDRS);
	assert_span(c.envid, c.envid_len, "x+2By");
	assert_span(c.auth, c.auth_len, "<>");
	assert_int_equal(parse("MAIL FROM:<a@b> body=binarymime", &c), SMTP_OK);
	assert_int_equal(c.body, SMTP_BODY_BINARYMIME);
	assert_int_equal(parse("MAIL FROM:<a@b> BODY=9BIT", &c), SMTP_ERR_PARAM);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=1x", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=1 SIZE=2", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b> SMTPUTF8=yes", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b> ENVID=a=b", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b> XYZZY=1", &c), SMTP_ERR_PARAM);
	assert_int_equal(parse("MAIL FROM:<a@b> =1", &c), SMTP_ERR_SYNTAX);
	/* a size past 64 bits is "too big", not a crash */
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=99999999999999999999", &c),
	                 SMTP_OK);
	assert_true(c.size == UINT64_MAX);
	/* RCPT parameters are not MAIL parameters */
	assert_int_equal(parse("MAIL FROM:<a@b> NOTIFY=NEVER", &c), SMTP_ERR_PARAM);
}

static void test_rcpt(void **st)
{
	struct smtp_cmd c;

	assert_int_equal(parse("RCPT TO:<bob@demo.test> NOTIFY=SUCCESS,FAILURE "
	                       "ORCPT=rfc822;bob+40demo.test", &c), SMTP_OK);
	assert_span(c.path, c.path_len, "bob@demo.test");
	assert_int_equal(c.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE);
	assert_span(c.orcpt, c.orcpt_len, "rfc822;bob+40demo.test");
	assert_int_equal(parse("RCPT TO:<b@d> NOTIFY=NEVER", &c), SMTP_OK);
	assert_int_equal(c.notify, SMTP_NOTIFY_NEVER);
	assert_int_equal(parse("RCPT TO:<b@d> NOTIFY=NEVER,DELAY", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("RCPT TO:<b@d> NOTIFY=SUCCESS,SUCCESS", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("RCPT TO:<b@d> NOTIFY=", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("RCPT TO:<b@d> ORCPT=bob", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("RCPT TO:<b@d> SIZE=1", &c), SMTP_ERR_PARAM);
	/* the path goes out raw: addr_parse_path judges routes and % */
	assert_int_equal(parse("RCPT TO:<@a,@b:u@d>", &c), SMTP_OK);
	assert_span(c.path, c.path_len, "@a,@b:u@d");
	assert_int_equal(parse("RCPT TO:", &c), SMTP_ERR_SYNTAX);
}

static void test_bdat(void **st)
{
	struct smtp_cmd c;

	assert_int_equal(parse("BDAT 1000", &c), SMTP_OK);
	assert_int_equal(c.chunk_size, 1000);
	assert_int_equal(c.last, 0);
	assert_int_equal(parse("BDAT 0 LAST", &c), SMTP_OK);
	assert_int_equal(c.chunk_size, 0);
	assert_int_equal(c.last, 1);
	assert_int_equal(parse("BDAT 10 last", &c), SMTP_OK);
	assert_int_equal(parse("BDAT x", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT 10 LAST x", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT 10 FIRST", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT 99999999999999999999", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT -1", &c), SMTP_ERR_SYNTAX);
}

static void test_auth(void **st)
{
	struct smtp_cmd c;

	assert_int_equal(parse("AUTH PLAIN AGJvYgBzZWNyZXQ=", &c), SMTP_OK);
	assert_span(c.mech, c.mech_len, "PLAIN");
	assert_span(c.initial, c.initial_len, "AGJvYgBzZWNyZXQ=");
	assert_int_equal(parse("AUTH LOGIN", &c), SMTP_OK);
	assert_null(c.initial);
	assert_int_equal(parse("AUTH PLAIN =", &c), SMTP_OK);
	assert_int_equal(parse("AUTH PL@IN", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("AUTH PLAIN a b", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("AUTH PLAIN a!b", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("AUTH", &c), SMTP_ERR_SYNTAX);
}

static void test_xforward(void **st)
{
	struct smtp_cmd c;

	assert_int_equal(parse("XFORWARD NAME=mx.example ADDR=192.0.2.1 "
	                       "IDENT=ABC123 HELO=[UNAVAILABLE]", &c), SMTP_OK);
	assert_int_equal(c.nxattr, 4);
	assert_span(c.xattr[0].name, c.xattr[0].name_len, "NAME");
	assert_span(c.xattr[0].value, c.xattr[0].value_len, "mx.example");
	assert_span(c.xattr[2].value, c.xattr[2].value_len, "ABC123");
	assert_int_equal(parse("XFORWARD EVIL=1", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("XFORWARD NAME", &c), SMTP_ERR_SYNTAX);
	assert_int_equal(parse("XFORWARD A=1 A=1 A=1 A=1 A=1 A=1 A=1 A=1 A=1",
	                       &c), SMTP_ERR_SYNTAX);
}

static void test_xtext(void **st)
{
	char out[16];

	assert_int_equal(smtp_cmd_xtext_decode("a+2Bb+3D", 8, out, sizeof(out)), 4);
	assert_string_equal(out, "a+b=");
	assert_int_equal(smtp_cmd_xtext_decode("a+2", 3, out, sizeof(out)), -1);
	assert_int_equal(smtp_cmd_xtext_decode("a+2b", 4, out, sizeof(out)), -1);
	assert_int_equal(smtp_cmd_xtext_decode("a=b", 3, out, sizeof(out)), -1);
	assert_int_equal(smtp_cmd_xtext_decode("a b", 3, out, sizeof(out)), -1);
	assert_int_equal(smtp_cmd_xtext_decode("abcdefgh", 8, out, 4), -1);
}

/* Byte at a time through the framing, then the parser: only the whole
 * line parses, and to the same result. */
static void test_bytewise(void **st)
{
	const char *in = "MAIL FROM:<\"x y\"@example.net> SIZE=42 BODY=8BITMIME\r\n";
	size_t len = strlen(in), i, n, used;
	struct smtp_cmd c;

	for (i = 0; i + 1 < len; i++)
		assert_int_equal(smtp_line_next(in, i, 512, &n, &used),
		                 SMTP_NEED_MORE);
	assert_int_equal(smtp_line_next(in, len, 512, &n, &used), SMTP_OK);
	assert_int_equal(smtp_cmd_parse(in, n, &c), SMTP_OK);
	assert_int_equal(c.size, 42);
	assert_span(c.path, c.path_len, "\"x y\"@example.net");
	for (i = 0; i < n; i++)
		(void)smtp_cmd_parse(in, i, &c);   /* prefixes never crash */
}

static void test_names(void **st)
{
	assert_string_equal(smtp_cmd_name(SMTP_CMD_RCPT), "RCPT");
	assert_string_equal(smtp_cmd_name(SMTP_CMD_NONE), "unknown");
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_arg_rules),
		cmocka_unit_test(test_mail),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_xforward),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_bytewise),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
