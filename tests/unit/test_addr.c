/* Unit tests for shared/addr.c: RFC 5321 paths, bare addresses, the
 * canonical form and recipient_delimiter splitting. Every path is also fed
 * as each of its prefixes, which must never succeed unless they end in a
 * complete path. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "addr.h"

struct test_case {
	const char *in;
	unsigned flags;
	enum addr_rc rc;
	const char *local, *domain;   /* expected on ADDR_OK */
	size_t used;                  /* expected on ADDR_OK; 0 = strlen(in) */
};

#define N ADDR_NULL_OK
#define U ADDR_UTF8

static const struct test_case test_paths[] = {
	{ "<user@example.com>", 0, ADDR_OK, "user", "example.com", 0 },
	{ "<User.Name+tag@Example.COM>", 0, ADDR_OK, "User.Name+tag", "example.com", 0 },
	{ "<a@b> SIZE=100 BODY=8BITMIME", 0, ADDR_OK, "a", "b", 5 },
	{ "<a@b>", 0, ADDR_OK, "a", "b", 0 },
	{ "<x-y_z=1#{}|~^`'*/?&$@mail-1.ex-ample.org>", 0, ADDR_OK, "x-y_z=1#{}|~^`'*/?&$", "mail-1.ex-ample.org", 0 },
	{ "<>", N, ADDR_OK, "", "", 0 },
	{ "<> SIZE=10", N, ADDR_OK, "", "", 2 },
	{ "<>", 0, ADDR_ERR_NULL, NULL, NULL, 0 },
	/* quoted local parts, RFC 5321 §4.1.2 */
	{ "<\"john doe\"@example.com>", 0, ADDR_OK, "john doe", "example.com", 0 },
	{ "<\"a\\\"b\\\\c\"@x.y>", 0, ADDR_OK, "a\"b\\c", "x.y", 0 },
	{ "<\"\\a\"@x.y>", 0, ADDR_OK, "a", "x.y", 0 },
	{ "<\"\"@x.y>", 0, ADDR_OK, "", "x.y", 0 },
	{ "<\"a@b\"@x.y>", 0, ADDR_OK, "a@b", "x.y", 0 },
	{ "<\"a>b\"@x.y>", 0, ADDR_OK, "a>b", "x.y", 0 },
	{ "<\"ab@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<\"a\tb\"@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<\"a\\\tb\"@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<\"a\"b@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	/* dot-string rules */
	{ "<.a@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<a.@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<a..b@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<a b@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<a(c)@x.y>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<@x.y>", 0, ADDR_ERR_ROUTE, NULL, NULL, 0 },
	/* brackets */
	{ "user@example.com", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<user@example.com", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "< user@example.com>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<user@example.com >", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	/* domains */
	{ "<a@x>", 0, ADDR_OK, "a", "x", 0 },
	{ "<a@-x.y>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@x-.y>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@x..y>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@x.y.>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@.x.y>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@x_y.z>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@b@c>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[192.0.2.1]>", 0, ADDR_OK, "a", "[192.0.2.1]", 0 },
	{ "<a@[IPv6:2001:DB8::1]>", 0, ADDR_OK, "a", "[ipv6:2001:db8::1]", 0 },
	{ "<a@[IPv6:::ffff:192.0.2.1]>", 0, ADDR_OK, "a", "[ipv6:::ffff:192.0.2.1]", 0 },
	{ "<a@[192.0.2.256]>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[192.0.2]>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[IPv6:2001:db8::g]>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[2001:db8::1]>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[x-tag:stuff]>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[]>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[1.2.3.4]]>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[ 1.2.3.4]>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	{ "<a@[1.2.3.4>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
	/* source routes, RFC 5321 §4.1.1.3: refused */
	{ "<@a.example,@b.example:u@d.example>", 0, ADDR_ERR_ROUTE, NULL, NULL, 0 },
	{ "<@a.example:u@d.example>", N, ADDR_ERR_ROUTE, NULL, NULL, 0 },
	/* relay tricks */
	{ "<a%b@c.d>", 0, ADDR_ERR_RELAY_CHAR, NULL, NULL, 0 },
	{ "<b!a@c.d>", 0, ADDR_ERR_RELAY_CHAR, NULL, NULL, 0 },
	{ "<\"a%b\"@c.d>", 0, ADDR_ERR_RELAY_CHAR, NULL, NULL, 0 },
	{ "<a%b@c.d>", ADDR_RELAY_CHARS_OK, ADDR_OK, "a%b", "c.d", 0 },
	/* postmaster without domain, RFC 5321 §4.1.1.3 */
	{ "<Postmaster>", ADDR_POSTMASTER_OK, ADDR_OK, "Postmaster", "", 0 },
	{ "<postmaster>", 0, ADDR_ERR_NO_DOMAIN, NULL, NULL, 0 },
	{ "<user>", ADDR_POSTMASTER_OK, ADDR_ERR_NO_DOMAIN, NULL, NULL, 0 },
	{ "<user>", ADDR_NO_DOMAIN_OK, ADDR_ERR_NO_DOMAIN, NULL, NULL, 0 },
	/* 8-bit and SMTPUTF8, RFC 6531 §3.3 */
	{ "<j\xc3\xb6rg@example.com>", 0, ADDR_ERR_8BIT, NULL, NULL, 0 },
	{ "<j\xc3\xb6rg@example.com>", U, ADDR_OK, "j\xc3\xb6rg", "example.com", 0 },
	{ "<a@b\xc3\xbc\x63her.example>", U, ADDR_OK, "a", "b\xc3\xbc\x63her.example", 0 },
	{ "<a@B\xc3\x9c.example>", U, ADDR_OK, "a", "b\xc3\x9c.example", 0 },
	{ "<a@b\xc3\xbc.example>", 0, ADDR_ERR_8BIT, NULL, NULL, 0 },
	{ "<\"\xe2\x82\xac x\"@e.x>", U, ADDR_OK, "\xe2\x82\xac x", "e.x", 0 },
	{ "<\xf0\x9f\x93\xa7@e.x>", U, ADDR_OK, "\xf0\x9f\x93\xa7", "e.x", 0 },
	{ "<j\xc3rg@example.com>", U, ADDR_ERR_UTF8, NULL, NULL, 0 },
	{ "<\xc0\xaf@e.x>", U, ADDR_ERR_UTF8, NULL, NULL, 0 },          /* overlong */
	{ "<\xed\xa0\x80@e.x>", U, ADDR_ERR_UTF8, NULL, NULL, 0 },      /* surrogate */
	{ "<\xf4\x90\x80\x80@e.x>", U, ADDR_ERR_UTF8, NULL, NULL, 0 },  /* > U+10FFFF */
	{ "<\xff@e.x>", U, ADDR_ERR_UTF8, NULL, NULL, 0 },
	{ "<a@e\xe2\x82.x>", U, ADDR_ERR_UTF8, NULL, NULL, 0 },
	/* control bytes and NUL */
	{ "<a\x01@b.c>", 0, ADDR_ERR_SYNTAX, NULL, NULL, 0 },
	{ "<a@b\r\n.c>", 0, ADDR_ERR_DOMAIN, NULL, NULL, 0 },
};

static void test_check(const struct test_case *c, size_t len)
{
	struct addr a;
	size_t used = 12345;
	enum addr_rc rc = addr_parse_path(c->in, len, c->flags, &a, &used);

	if (rc != c->rc)
		fail_msg("\"%s\": got %d (%s), want %d", c->in, rc, addr_rc_str(rc), c->rc);
	if (rc != ADDR_OK)
		return;
	assert_string_equal(a.local, c->local);
	assert_string_equal(a.domain, c->domain);
	assert_int_equal(used, c->used ? c->used : strlen(c->in));
	assert_int_equal(a.is_null, strcmp(c->in, "<>") == 0 || strncmp(c->in, "<> ", 3) == 0);
}

static void test_path_cases(void **st)
{
	size_t i;

	for (i = 0; i < sizeof(test_paths) / sizeof(test_paths[0]); i++)
		test_check(&test_paths[i], strlen(test_paths[i].in));
}

/* Byte at a time: a prefix either fails or is a complete path ending in
 * '>' within the prefix (never reading past len: the copy is exact-size
 * on the heap so ASan sees any overread). */
static void test_path_prefixes(void **st)
{
	size_t i, k;

	for (i = 0; i < sizeof(test_paths) / sizeof(test_paths[0]); i++) {
		const struct test_case *c = &test_paths[i];
		size_t len = strlen(c->in);

		for (k = 0; k <= len; k++) {
			char *p = malloc(k ? k : 1);
			struct addr a;
			size_t used = 0;
			enum addr_rc rc;

			memcpy(p, c->in, k);
			rc = addr_parse_path(p, k, c->flags, &a, &used);
			if (rc == ADDR_OK) {
				assert_true(used >= 2 && used <= k);
				assert_int_equal(p[used - 1], '>');
				if (k < len && c->rc == ADDR_OK)
					assert_true(used == (c->used ? c->used : len));
			}
			if (k == len)
				assert_int_equal(rc, c->rc);
			free(p);
		}
	}
}

static void test_too_long(void **st)
{
	char buf[600];
	struct addr a;
	size_t used, n;

	/* 256 bytes of local part is the limit. */
	buf[0] = '<';
	memset(buf + 1, 'a', 256);
	memcpy(buf + 257, "@x.y>", 6);
	n = strlen(buf);
	assert_int_equal(addr_parse_path(buf, n, 0, &a, &used), ADDR_OK);
	assert_int_equal(strlen(a.local), 256);
	memset(buf + 1, 'a', 257);
	memcpy(buf + 258, "@x.y>", 6);
	assert_int_equal(addr_parse_path(buf, strlen(buf), 0, &a, &used), ADDR_ERR_TOO_LONG);
	/* Quoted: 256 including both quotes, with 4-byte UTF-8 near the end. */
	buf[1] = '"';
	memset(buf + 2, 'b', 254);
	memcpy(buf + 256, "\"@x.y>", 7);
	assert_int_equal(addr_parse_path(buf, strlen(buf), 0, &a, &used), ADDR_OK);
	assert_int_equal(strlen(a.local), 254);
	memcpy(buf + 253, "\xf0\x9f\x93\xa7\"@x.y>", 11);
	assert_int_equal(addr_parse_path(buf, strlen(buf), U, &a, &used), ADDR_ERR_TOO_LONG);
	memcpy(buf + 252, "\xf0\x9f\x93\xa7\"@x.y>", 11);
	assert_int_equal(addr_parse_path(buf, strlen(buf), U, &a, &used), ADDR_OK);
	/* Domain: 255 octets at most, labels 63. */
	memcpy(buf, "<a@", 3);
	for (n = 3; n < 3 + 255; n++)
		buf[n] = ((n - 3) % 50 == 49) ? '.' : 'd';
	memcpy(buf + n, ">", 2);
	assert_int_equal(addr_parse_path(buf, strlen(buf), 0, &a, &used), ADDR_OK);
	assert_int_equal(strlen(a.domain), 255);
	memcpy(buf + n, "d>", 3);
	assert_int_equal(addr_parse_path(buf, strlen(buf), 0, &a, &used), ADDR_ERR_TOO_LONG);
	memcpy(buf, "<a@", 3);
	memset(buf + 3, 'e', 64);
	memcpy(buf + 67, ".x>", 4);
	assert_int_equal(addr_parse_path(buf, strlen(buf), 0, &a, &used), ADDR_ERR_DOMAIN);
	memcpy(buf + 66, ".x>", 4);
	assert_int_equal(addr_parse_path(buf, strlen(buf), 0, &a, &used), ADDR_OK);
}

static void test_plain(void **st)
{
	struct addr a;

	assert_int_equal(addr_parse_plain("Bob@Demo.TEST", 13, 0, &a), ADDR_OK);
	assert_string_equal(a.local, "Bob");
	assert_string_equal(a.domain, "demo.test");
	assert_int_equal(addr_parse_plain("bob", 3, 0, &a), ADDR_ERR_NO_DOMAIN);
	assert_int_equal(addr_parse_plain("bob", 3, ADDR_NO_DOMAIN_OK, &a), ADDR_OK);
	assert_string_equal(a.local, "bob");
	assert_string_equal(a.domain, "");
	assert_int_equal(addr_parse_plain("<bob@x>", 7, 0, &a), ADDR_ERR_SYNTAX);
	assert_int_equal(addr_parse_plain("bob@x>", 6, 0, &a), ADDR_ERR_SYNTAX);
	assert_int_equal(addr_parse_plain("bob@x ", 6, 0, &a), ADDR_ERR_DOMAIN);
	assert_int_equal(addr_parse_plain("@x", 2, 0, &a), ADDR_ERR_ROUTE);
	assert_int_equal(addr_parse_plain("", 0, 0, &a), ADDR_ERR_NULL);
	assert_int_equal(addr_parse_plain("", 0, ADDR_NULL_OK, &a), ADDR_OK);
	assert_int_equal(a.is_null, 1);
	assert_int_equal(addr_parse_plain("\"a b\"@x", 7, 0, &a), ADDR_OK);
	assert_string_equal(a.local, "a b");
	/* len is honoured: the bytes after it are not read. */
	assert_int_equal(addr_parse_plain("bob@example.comXXX", 15, 0, &a), ADDR_OK);
	assert_string_equal(a.domain, "example.com");
}

/* Found by libFuzzer: inet_pton stops at a NUL inside a literal. */
static void test_literal_nul(void **st)
{
	static const char in[] = "<a@[IPv6:2001:db8::1\0]>";
	struct addr a;
	size_t used;

	assert_int_equal(addr_parse_path(in, sizeof(in) - 1, 0, &a, &used), ADDR_ERR_DOMAIN);
	assert_int_equal(addr_parse_path("<a@[1.2.3.4\0]>", 14, 0, &a, &used), ADDR_ERR_DOMAIN);
}

static void test_format(void **st)
{
	static const struct { const char *in, *out; } v[] = {
		{ "<a@b>", "a@b" },
		{ "<A.B@EXAMPLE.com>", "A.B@example.com" },
		{ "<\"abc\"@x>", "abc@x" },            /* quotes not needed: dropped */
		{ "<\"a.b\"@x>", "a.b@x" },
		{ "<\"a b\"@x>", "\"a b\"@x" },
		{ "<\"a..b\"@x>", "\"a..b\"@x" },
		{ "<\".a\"@x>", "\".a\"@x" },
		{ "<\"a.\"@x>", "\"a.\"@x" },
		{ "<\"\"@x>", "\"\"@x" },
		{ "<\"a\\\"b\"@x>", "\"a\\\"b\"@x" },
		{ "<\"a\\\\b\"@x>", "\"a\\\\b\"@x" },
		{ "<\"a@b\"@x>", "\"a@b\"@x" },
		{ "<a@[IPv6:::1]>", "a@[ipv6:::1]" },
		{ "<>", "" },
		{ "<postmaster>", "postmaster" },
		{ "<\xc3\xa9@x>", "\xc3\xa9@x" },
	};
	size_t i, used;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct addr a, b;
		char out[ADDR_TEXT_MAX];
		int n;

		assert_int_equal(addr_parse_path(v[i].in, strlen(v[i].in),
						 N | U | ADDR_POSTMASTER_OK, &a, &used), ADDR_OK);
		n = addr_format(&a, out, sizeof(out));
		assert_string_equal(out, v[i].out);
		assert_int_equal(n, strlen(v[i].out));
		/* The canonical text parses back to the same address. */
		assert_int_equal(addr_parse_plain(out, (size_t)n, N | U | ADDR_NO_DOMAIN_OK, &b), ADDR_OK);
		assert_string_equal(a.local, b.local);
		assert_string_equal(a.domain, b.domain);
	}
}

static void test_format_small(void **st)
{
	struct addr a;
	size_t used;
	char out[8];

	assert_int_equal(addr_parse_path("<abc@def>", 9, 0, &a, &used), ADDR_OK);
	assert_int_equal(addr_format(&a, out, 8), 7);
	assert_string_equal(out, "abc@def");
	assert_int_equal(addr_format(&a, out, 7), -1);
	assert_string_equal(out, "");
	assert_int_equal(addr_format(&a, out, 0), -1);
	assert_int_equal(addr_parse_path("<\"a b\"@x>", 9, 0, &a, &used), ADDR_OK);
	assert_int_equal(addr_format(&a, out, 8), 7);
	assert_int_equal(addr_format(&a, out, 7), -1);
	/* Exactly enough room, no domain. */
	assert_int_equal(addr_parse_plain("abcdef", 6, ADDR_NO_DOMAIN_OK, &a), ADDR_OK);
	assert_int_equal(addr_format(&a, out, 7), 6);
	assert_string_equal(out, "abcdef");
	assert_int_equal(addr_format(&a, out, 6), -1);
}

static void test_format_worst(void **st)
{
	char in[300], out[ADDR_TEXT_MAX];
	struct addr a;
	size_t used, i;

	/* 127 escaped pairs need 254 bytes of local part in quotes: the
	 * largest canonical form must fit in ADDR_TEXT_MAX. */
	in[0] = '<';
	in[1] = '"';
	for (i = 0; i < 127; i++)
		memcpy(in + 2 + 2 * i, "\\\"", 2);
	memcpy(in + 256, "\"@x>", 5);
	assert_int_equal(addr_parse_path(in, strlen(in), 0, &a, &used), ADDR_OK);
	assert_int_equal(strlen(a.local), 127);
	assert_int_equal(addr_format(&a, out, sizeof(out)), 2 + 254 + 2);
}

static void test_split_ext(void **st)
{
	char base[64];
	const char *ext;

	assert_int_equal(addr_split_ext("bob+lists", "+", base, sizeof(base), &ext), 1);
	assert_string_equal(base, "bob");
	assert_string_equal(ext, "lists");
	assert_int_equal(addr_split_ext("bob-x+y", "+-", base, sizeof(base), &ext), 1);
	assert_string_equal(base, "bob");
	assert_string_equal(ext, "x+y");
	assert_int_equal(addr_split_ext("bob", "+", base, sizeof(base), &ext), 0);
	assert_string_equal(base, "bob");
	assert_null(ext);
	assert_int_equal(addr_split_ext("+bob", "+", base, sizeof(base), &ext), 0);
	assert_string_equal(base, "+bob");
	assert_null(ext);
	assert_int_equal(addr_split_ext("bob+", "+", base, sizeof(base), &ext), 1);
	assert_string_equal(base, "bob");
	assert_string_equal(ext, "");
	assert_int_equal(addr_split_ext("bob+x", "", base, sizeof(base), &ext), 0);
	assert_string_equal(base, "bob+x");
	assert_int_equal(addr_split_ext("bob+x", NULL, base, sizeof(base), &ext), 0);
	assert_int_equal(addr_split_ext("bobby+x", "+", base, 6, &ext), 1);
	assert_string_equal(base, "bobby");
	assert_int_equal(addr_split_ext("bobby+x", "+", base, 5, &ext), -1);
	assert_null(ext);
	assert_int_equal(addr_split_ext("bobby", "+", base, 5, &ext), -1);
	assert_int_equal(addr_split_ext("bobb+x", "+", base, 5, &ext), 1);
	assert_string_equal(base, "bobb");
}

static void test_rc_str(void **st)
{
	assert_string_equal(addr_rc_str(ADDR_ERR_ROUTE), "source route not allowed");
	assert_string_not_equal(addr_rc_str(ADDR_ERR_RELAY_CHAR), addr_rc_str(ADDR_ERR_SYNTAX));
	assert_string_equal(addr_rc_str((enum addr_rc)999), "bad address");
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_path_cases),
		cmocka_unit_test(test_path_prefixes),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_literal_nul),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_small),
		cmocka_unit_test(test_format_worst),
		cmocka_unit_test(test_split_ext),
		cmocka_unit_test(test_rc_str),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
