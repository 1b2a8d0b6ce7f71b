#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "buf.h"
static void test_bound(void **st) { struct buf b; buf_init(&b, 4); assert_int_equal(buf_append(&b, "abcd", 4), 0); assert_int_equal(buf_append(&b, "e", 1), -1); assert_string_equal(b.p, "abcd"); buf_free(&b); }
int main(void) { const struct CMUnitTest t[] = { cmocka_unit_test(test_bound) }; return cmocka_run_group_tests(t, NULL, NULL); }
