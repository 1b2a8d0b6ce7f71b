/* smtp_xforward: attribute names and the values a server keeps, each
 * value read from a heap copy of exactly its length (ASan sees a read
 * past it, as the old "IPV6:" handling did: 5 bytes past the copy). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "smtp_xforward.h"

static int xf(enum smtp_xforward_attr a, const char *raw, char *out)
{
	size_t len = strlen(raw);
	char *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, raw, len);   /* no NUL: exactly the bytes sent */
	rc = smtp_xforward_value(a, copy, len, out,
	                         SMTP_XFORWARD_VALUE_MAX + 1);
	free(copy);
	return rc;
}

static void test_names(void **st)
{
	assert_int_equal(smtp_xforward_attr("NAME", 4), SMTP_XFORWARD_NAME);
	assert_int_equal(smtp_xforward_attr("addr", 4), SMTP_XFORWARD_ADDR);
	assert_int_equal(smtp_xforward_attr("Helo", 4), SMTP_XFORWARD_HELO);
	assert_int_equal(smtp_xforward_attr("IDENT", 5), SMTP_XFORWARD_IDENT);
	assert_int_equal(smtp_xforward_attr("PROTO", 5), SMTP_XFORWARD_PROTO);
	assert_int_equal(smtp_xforward_attr("PORT", 4), SMTP_XFORWARD_PORT);
	assert_int_equal(smtp_xforward_attr("SOURCE", 6), SMTP_XFORWARD_SOURCE);
	assert_int_equal(smtp_xforward_attr("NAMEX", 5), SMTP_XFORWARD_UNKNOWN);
	assert_int_equal(smtp_xforward_attr("NAM", 3), SMTP_XFORWARD_UNKNOWN);
	assert_int_equal(smtp_xforward_attr("", 0), SMTP_XFORWARD_UNKNOWN);
	assert_true(SMTP_XFORWARD_PORT >= SMTP_XFORWARD_NKEPT);
}

/* Issue #9: the prefix came off the copy's start but not its length. */
static void test_ipv6_prefix(void **st)
{
	char out[SMTP_XFORWARD_VALUE_MAX + 1];

	assert_int_equal(xf(SMTP_XFORWARD_ADDR, "IPV6:2001:db8::1", out), 1);
	assert_string_equal(out, "2001:db8::1");
	assert_int_equal(xf(SMTP_XFORWARD_ADDR, "ipv6:::1", out), 1);
	assert_string_equal(out, "::1");
	/* xtext-encoded, the prefix is judged after decoding */
	assert_int_equal(xf(SMTP_XFORWARD_ADDR, "IPV6+3A::1", out), 1);
	assert_string_equal(out, "::1");
	assert_int_equal(xf(SMTP_XFORWARD_ADDR, "IPV6:", out), -1);
	assert_int_equal(xf(SMTP_XFORWARD_ADDR, "IPV6", out), 1);
	assert_string_equal(out, "IPV6");
	assert_int_equal(xf(SMTP_XFORWARD_ADDR, "192.0.2.7", out), 1);
	assert_string_equal(out, "192.0.2.7");
	/* only ADDR has the prefix */
	assert_int_equal(xf(SMTP_XFORWARD_NAME, "IPV6:x", out), 1);
	assert_string_equal(out, "IPV6:x");
}

static void test_unavailable(void **st)
{
	char out[SMTP_XFORWARD_VALUE_MAX + 1];

	assert_int_equal(xf(SMTP_XFORWARD_NAME, "[UNAVAILABLE]", out), 0);
	assert_string_equal(out, "");
	assert_int_equal(xf(SMTP_XFORWARD_HELO, "[TEMPUNAVAIL]", out), 0);
	assert_int_equal(xf(SMTP_XFORWARD_HELO, "[UNAVAILABLE]x", out), 1);
	assert_int_equal(xf(SMTP_XFORWARD_HELO, "", out), 1);
	assert_string_equal(out, "");
}

static void test_cleaned(void **st)
{
	char out[SMTP_XFORWARD_VALUE_MAX + 1];

	/* "(", ")", "\", NUL, 8-bit: nothing that breaks a Received:
	 * comment or a log line survives */
	assert_int_equal(xf(SMTP_XFORWARD_HELO, "a+28b+29+5Cc+00d+FFe", out), 1);
	assert_string_equal(out, "a?b??c?d?e");
	assert_int_equal(xf(SMTP_XFORWARD_HELO, "a+0D+0Ab", out), 1);
	assert_string_equal(out, "a??b");
}

static void test_bad_and_long(void **st)
{
	char out[SMTP_XFORWARD_VALUE_MAX + 1], big[400];

	assert_int_equal(xf(SMTP_XFORWARD_NAME, "a+4", out), -1);
	assert_int_equal(xf(SMTP_XFORWARD_NAME, "a+zz", out), -1);
	assert_int_equal(xf(SMTP_XFORWARD_NAME, "a=b", out), -1);
	memset(big, 'n', SMTP_XFORWARD_VALUE_MAX);
	big[SMTP_XFORWARD_VALUE_MAX] = '\0';
	assert_int_equal(xf(SMTP_XFORWARD_NAME, big, out), 1);
	assert_int_equal(strlen(out), SMTP_XFORWARD_VALUE_MAX);
	big[SMTP_XFORWARD_VALUE_MAX] = 'n';
	big[SMTP_XFORWARD_VALUE_MAX + 1] = '\0';
	assert_int_equal(xf(SMTP_XFORWARD_NAME, big, out), -1);
	/* an output buffer too small is refused, not overrun */
	assert_int_equal(smtp_xforward_value(SMTP_XFORWARD_NAME, "x", 1, out,
	                                     10), -1);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_ipv6_prefix),
		cmocka_unit_test(test_unavailable),
		cmocka_unit_test(test_cleaned),
		cmocka_unit_test(test_bad_and_long),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
