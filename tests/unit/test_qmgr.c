/* Tests for qmgr_nexthop_is_literal: which next hops need no DNS, so that
 * mx-relay may route on its loop (qmgr_conf.route_inline). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "qmgr.h"

static void test_literals(void **st)
{
	assert_int_equal(qmgr_nexthop_is_literal("[127.0.0.1]"), 1);
	assert_int_equal(qmgr_nexthop_is_literal("[127.0.0.1]:10025"), 1);
	assert_int_equal(qmgr_nexthop_is_literal("[::1]:25"), 1);
	assert_int_equal(qmgr_nexthop_is_literal("[2001:db8::5]"), 1);
}

static void test_names_need_dns(void **st)
{
	/* a name in brackets: no MX lookup, but still an address lookup */
	assert_int_equal(qmgr_nexthop_is_literal("[submission]:10025"), 0);
	assert_int_equal(qmgr_nexthop_is_literal("[mail.example.com]"), 0);
	/* no brackets: an MX lookup, even of an address-looking name */
	assert_int_equal(qmgr_nexthop_is_literal("127.0.0.1"), 0);
	assert_int_equal(qmgr_nexthop_is_literal("example.com:25"), 0);
}

static void test_malformed(void **st)
{
	assert_int_equal(qmgr_nexthop_is_literal(NULL), 0);
	assert_int_equal(qmgr_nexthop_is_literal(""), 0);
	assert_int_equal(qmgr_nexthop_is_literal("[127.0.0.1"), 0);
	assert_int_equal(qmgr_nexthop_is_literal("[127.0.0.1]:0"), 0);
	assert_int_equal(qmgr_nexthop_is_literal("[127.0.0.1]:99999"), 0);
	assert_int_equal(qmgr_nexthop_is_literal("[127.0.0.1]x"), 0);
	assert_int_equal(qmgr_nexthop_is_literal("[127.0.0.256]"), 0);
	assert_int_equal(qmgr_nexthop_is_literal("[]"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_names_need_dns),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
