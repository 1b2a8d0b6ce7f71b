/* Unit tests for the milter protocol codec (shared/milter_proto.c) and the
 * message edits (shared/milter_edit.c): framing (also a byte at a time),
 * every reply type, the bad replies a hostile milter may send, the
 * commands we encode byte for byte, and header/body modifications. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "milter.h"
#include "milter_edit.h"
#include "milter_proto.h"

/* A packet around data: length (cmd included), cmd, data. */
static size_t pkt(char *out, char cmd, const char *data, size_t len)
{
	uint32_t n = (uint32_t)len + 1;

	out[0] = (char)(n >> 24);
	out[1] = (char)(n >> 16);
	out[2] = (char)(n >> 8);
	out[3] = (char)n;
	out[4] = cmd;
	memcpy(out + 5, data, len);
	return len + 5;
}

static enum milter_rc parse(char type, const char *data, size_t len,
                            struct milter_reply *r)
{
	return milter_reply_parse(type, data, len, r);
}

/* ---- framing ---------------------------------------------------------- */

static void test_packet_whole_and_bytewise(void **st)
{
	char buf[64], cmd;
	const char *data;
	size_t n = pkt(buf, 'h', "X-A\0b\0", 6), dl, used, i;

	assert_int_equal(milter_packet_next(buf, n, 1024, &cmd, &data, &dl,
	                                    &used), MILTER_OK);
	assert_int_equal(cmd, 'h');
	assert_int_equal(dl, 6);
	assert_int_equal(used, n);
	assert_ptr_equal(data, buf + 5);
	for (i = 0; i < n; i++)
		assert_int_equal(milter_packet_next(buf, i, 1024, &cmd, &data,
		                                    &dl, &used), MILTER_NEED_MORE);
}

static void test_packet_limits(void **st)
{
	char cmd;
	const char *data;
	size_t dl, used;
	/* a length past the limit is refused at once, before the data */
	static const char big[5] = { 0, 0x20, 0, 1, 'b' };
	static const char zero[5] = { 0, 0, 0, 0, 'c' };

	assert_int_equal(milter_packet_next(big, 4, 1024, &cmd, &data, &dl,
	                                    &used), MILTER_ERR_TOO_LONG);
	assert_int_equal(milter_packet_next(zero, 5, 1024, &cmd, &data, &dl,
	                                    &used), MILTER_ERR_SYNTAX);
}

/* ---- replies ----------------------------------------------------------- */

static void test_reply_simple(void **st)
{
	static const char types[] = "acdrtps4f";
	struct milter_reply r;
	size_t i;

	for (i = 0; types[i] != '\0'; i++) {
		assert_int_equal(parse(types[i], "", 0, &r), MILTER_OK);
		assert_int_equal(r.type, types[i]);
	}
	assert_int_equal(parse('Z', "", 0, &r), MILTER_ERR_SYNTAX);
}

static void test_reply_headers(void **st)
{
	struct milter_reply r;
	static const char ins[] = "\0\0\0\1X-Spam\0Yes\0";
	static const char folded[] = "DKIM-Signature\0v=1; a=rsa-sha256;\n\tb=abc\0";

	assert_int_equal(parse('h', "X-Spam\0Yes\0", 11, &r), MILTER_OK);
	assert_int_equal(r.name_len, 6);
	assert_memory_equal(r.name, "X-Spam", 6);
	assert_int_equal(r.value_len, 3);
	assert_int_equal(parse('i', ins, sizeof(ins) - 1, &r), MILTER_OK);
	assert_int_equal(r.index, 1);
	assert_int_equal(parse('m', ins, sizeof(ins) - 1, &r), MILTER_OK);
	assert_int_equal(parse('h', folded, sizeof(folded) - 1, &r), MILTER_OK);
	/* an empty value is allowed (CHGHEADER deletes with it) */
	assert_int_equal(parse('m', "\0\0\0\1X-A\0\0", 9, &r), MILTER_OK);
	assert_int_equal(r.value_len, 0);
}

static void test_reply_headers_refused(void **st)
{
	struct milter_reply r;
	static const char inject[] = "X-A\0a\r\nBcc: x@evil\0";
	static const char bare_cr[] = "X-A\0a\rb\0";
	static const char colon[] = "X:A\0v\0";
	static const char space[] = "X A\0v\0";

	/* a line break not followed by white space starts a new header */
	assert_int_equal(parse('h', inject, sizeof(inject) - 1, &r),
	                 MILTER_ERR_SYNTAX);
	assert_int_equal(parse('h', bare_cr, sizeof(bare_cr) - 1, &r),
	                 MILTER_ERR_SYNTAX);
	assert_int_equal(parse('h', colon, sizeof(colon) - 1, &r),
	                 MILTER_ERR_SYNTAX);
	assert_int_equal(parse('h', space, sizeof(space) - 1, &r),
	                 MILTER_ERR_SYNTAX);
	assert_int_equal(parse('h', "\0v\0", 3, &r), MILTER_ERR_SYNTAX);
	/* missing NULs, trailing bytes, a short index */
	assert_int_equal(parse('h', "X-A\0v", 5, &r), MILTER_ERR_SYNTAX);
	assert_int_equal(parse('h', "X-A", 3, &r), MILTER_ERR_SYNTAX);
	assert_int_equal(parse('h', "X-A\0v\0z", 7, &r), MILTER_ERR_SYNTAX);
	assert_int_equal(parse('i', "\0\0", 2, &r), MILTER_ERR_SYNTAX);
}

static void test_reply_addresses(void **st)
{
	struct milter_reply r;
	static const char par[] = "<x@d>\0NOTIFY=NEVER\0";

	assert_int_equal(parse('+', "<x@d>\0", 6, &r), MILTER_OK);
	assert_int_equal(r.addr_len, 5);
	assert_int_equal(parse('-', "x@d\0", 4, &r), MILTER_OK);
	assert_int_equal(parse('2', par, sizeof(par) - 1, &r), MILTER_OK);
	assert_int_equal(r.args_len, 12);
	assert_int_equal(parse('e', "<>\0", 3, &r), MILTER_OK);
	assert_null(r.args);
	assert_int_equal(parse('+', "\0", 1, &r), MILTER_ERR_SYNTAX);
	assert_int_equal(parse('+', "a\nb\0", 4, &r), MILTER_ERR_SYNTAX);
	/* ADDRCPT has no arguments, ADDRCPT_PAR may */
	assert_int_equal(parse('+', par, sizeof(par) - 1, &r), MILTER_ERR_SYNTAX);
}

static void test_reply_replycode(void **st)
{
	struct milter_reply r;
	static const char ok[] = "554 5.7.1 Gtube pattern\0";
	static const char multi[] = "550-5.7.1 one\r\n550 5.7.1 two\0";
	static const char smuggle[] = "550 a\r\nRCPT TO:<x>\0";

	assert_int_equal(parse('y', ok, sizeof(ok) - 1, &r), MILTER_OK);
	assert_int_equal(r.code, 554);
	assert_int_equal(parse('y', multi, sizeof(multi) - 1, &r), MILTER_OK);
	assert_int_equal(r.code, 550);
	assert_int_equal(parse('y', smuggle, sizeof(smuggle) - 1, &r),
	                 MILTER_ERR_SYNTAX);
	/* only 4xx and 5xx: a milter may not make us say 250 */
	assert_int_equal(parse('y', "250 ok\0", 7, &r), MILTER_ERR_SYNTAX);
	assert_int_equal(parse('y', "55\0", 3, &r), MILTER_ERR_SYNTAX);
	assert_int_equal(parse('y', "550x\0", 5, &r), MILTER_ERR_SYNTAX);
	assert_int_equal(parse('y', "5a0 x\0", 6, &r), MILTER_ERR_SYNTAX);
}

static void test_reply_quarantine_and_body(void **st)
{
	struct milter_reply r;

	assert_int_equal(parse('q', "spam\0", 5, &r), MILTER_OK);
	assert_int_equal(r.text_len, 4);
	assert_int_equal(parse('q', "sp\nam\0", 6, &r), MILTER_ERR_SYNTAX);
	/* a body chunk is raw bytes, NULs included */
	assert_int_equal(parse('b', "a\0b\r\n", 5, &r), MILTER_OK);
	assert_int_equal(r.text_len, 5);
}

static void test_optneg(void **st)
{
	struct milter_optneg o;
	static const char plain[] = "\0\0\0\6\0\0\0\x01\0\0\0\x10";
	static const char macros[] =
	    "\0\0\0\6\0\0\1\xff\0\0\0\0"
	    "\0\0\0\2{auth_authen} i\0"
	    "\0\0\0\5i\0";
	static const char twice[] = "\0\0\0\6\0\0\0\0\0\0\0\0"
	    "\0\0\0\2i\0\0\0\0\2j\0";
	static const char stage[] = "\0\0\0\6\0\0\0\0\0\0\0\0\0\0\0\7i\0";
	static const char v1[] = "\0\0\0\1\0\0\0\0\0\0\0\0";

	assert_int_equal(milter_optneg_parse(plain, 12, &o), MILTER_OK);
	assert_int_equal(o.version, 6);
	assert_int_equal(o.actions, MILTER_A_ADDHDRS);
	assert_int_equal(o.protocol, MILTER_P_NOBODY);
	assert_null(o.macros[MILTER_M_ENVFROM]);
	assert_int_equal(milter_optneg_parse(macros, sizeof(macros) - 1, &o),
	                 MILTER_OK);
	assert_int_equal(o.macro_len[MILTER_M_ENVFROM], 15);
	assert_memory_equal(o.macros[MILTER_M_ENVFROM], "{auth_authen} i", 15);
	assert_memory_equal(o.macros[MILTER_M_EOM], "i", 1);
	assert_int_equal(milter_optneg_parse(plain, 11, &o), MILTER_ERR_SYNTAX);
	assert_int_equal(milter_optneg_parse(twice, sizeof(twice) - 1, &o),
	                 MILTER_ERR_SYNTAX);
	assert_int_equal(milter_optneg_parse(stage, sizeof(stage) - 1, &o),
	                 MILTER_ERR_SYNTAX);
	assert_int_equal(milter_optneg_parse(v1, 12, &o), MILTER_ERR_SYNTAX);
	/* a list without its NUL */
	assert_int_equal(milter_optneg_parse(macros, sizeof(macros) - 2, &o),
	                 MILTER_ERR_SYNTAX);
}

/* ---- commands ----------------------------------------------------------- */

static void test_put_commands(void **st)
{
	struct buf b;
	static const char optneg[] = "\0\0\0\x0dO\0\0\0\6\0\0\1\xff\x30\x1f\xf7\xff";
	static const char conn[] = "\0\0\0\x16" "Cmail.ex\0" "4\x01\xbb" "192.0.2.1\0";
	static const char unknown[] = "\0\0\0\x0a" "Cunknown\0U";
	static const char mail[] = "\0\0\0\x10" "M<a@b>\0SIZE=100\0";
	static const char macro[] = "\0\0\0\x08" "DMi\0ABC\0";
	const char *names[] = { "i" }, *values[] = { "ABC" };

	buf_init(&b, 0);
	assert_int_equal(milter_put_optneg(&b, 6, MILTER_A_ALL, MILTER_P_OFFER),
	                 MILTER_OK);
	assert_int_equal(b.len, sizeof(optneg) - 1);
	assert_memory_equal(b.p, optneg, b.len);
	buf_reset(&b);
	assert_int_equal(milter_put_connect(&b, "mail.ex", '4', 443,
	                                    "192.0.2.1"), MILTER_OK);
	assert_int_equal(b.len, sizeof(conn) - 1);
	assert_memory_equal(b.p, conn, b.len);
	buf_reset(&b);
	assert_int_equal(milter_put_connect(&b, "unknown", 'U', 0, ""),
	                 MILTER_OK);
	assert_int_equal(b.len, sizeof(unknown) - 1);
	assert_memory_equal(b.p, unknown, b.len);
	buf_reset(&b);
	{
		const char *args[] = { "SIZE=100" };

		assert_int_equal(milter_put_envelope(&b, MILTER_C_MAIL, "a@b",
		                                     args, 1), MILTER_OK);
	}
	assert_int_equal(b.len, sizeof(mail) - 1);
	assert_memory_equal(b.p, mail, b.len);
	buf_reset(&b);
	/* the macros go with the command they precede: 'M' */
	assert_int_equal(milter_put_macros(&b, MILTER_C_MAIL, names, values, 1),
	                 MILTER_OK);
	assert_int_equal(b.len, 4 + 1 + 1 + 2 + 4);
	assert_memory_equal(b.p, macro, b.len);
	buf_free(&b);
}

static void test_put_limits(void **st)
{
	struct buf b;
	char chunk[MILTER_CHUNK_MAX + 1];

	memset(chunk, 'x', sizeof(chunk));
	buf_init(&b, 16);
	assert_int_equal(milter_put_simple(&b, MILTER_C_EOH), MILTER_OK);
	assert_int_equal(b.len, 5);
	/* over max: refused and b unchanged */
	assert_int_equal(milter_put_helo(&b, "a.very.long.helo.name"),
	                 MILTER_ERR_BUF);
	assert_int_equal(b.len, 5);
	buf_free(&b);
	buf_init(&b, 0);
	assert_int_equal(milter_put_body(&b, chunk, sizeof(chunk)),
	                 MILTER_ERR_BUF);
	assert_int_equal(milter_put_body(&b, chunk, MILTER_CHUNK_MAX), MILTER_OK);
	assert_int_equal(b.len, MILTER_CHUNK_MAX + 5);
	buf_free(&b);
}

/* ---- the message ------------------------------------------------------- */

static const char msg[] =
	"Received: from a\r\n\tby b\r\n"
	"From: <a@demo.test>\r\n"
	"Subject: hi\r\n"
	"X-Tag: one\r\n"
	"X-Tag: two\r\n"
	"\r\n"
	"body\r\n";

static void test_hdr_walk(void **st)
{
	struct milter_hdr h;
	struct buf v;
	size_t off = 0;
	int n = 0;

	buf_init(&v, 0);
	assert_int_equal(milter_hdr_next(msg, strlen(msg), &off, &h), 1);
	assert_int_equal(h.name_len, 8);
	assert_int_equal(milter_hdr_value(&h, 0, &v), 0);
	/* folded: CRLF becomes LF, the one leading space goes */
	assert_string_equal(v.p, "from a\n\tby b");
	buf_reset(&v);
	assert_int_equal(milter_hdr_value(&h, 1, &v), 0);
	assert_string_equal(v.p, " from a\n\tby b");
	n = 1;
	while (milter_hdr_next(msg, strlen(msg), &off, &h) == 1)
		n++;
	assert_int_equal(n, 5);
	assert_string_equal(msg + off, "body\r\n");
	buf_free(&v);
}

static void test_hdr_walk_no_blank_line(void **st)
{
	static const char m[] = "Subject: x\r\nnot a header\r\n";
	struct milter_hdr h;
	size_t off = 0;

	assert_int_equal(milter_hdr_next(m, strlen(m), &off, &h), 1);
	assert_int_equal(milter_hdr_next(m, strlen(m), &off, &h), 0);
	assert_string_equal(m + off, "not a header\r\n");
}

static void test_edit_headers(void **st)
{
	struct milter_edit e[] = {
		{ MILTER_E_ADD, 0, "X-Spam", "Yes", 0 },
		{ MILTER_E_INSERT, 0, "Authentication-Results",
		  "mx; dkim=pass\n\theader.d=demo.test", 0 },
		{ MILTER_E_CHANGE, 2, "x-tag", "TWO", 0 },
		{ MILTER_E_CHANGE, 1, "Subject", "", 0 },
		{ MILTER_E_CHANGE, 5, "X-New", " lead", 1 },
		{ MILTER_E_CHANGE, 1, "X-Gone", "", 0 },
	};
	static const char want[] =
		"Authentication-Results: mx; dkim=pass\r\n\theader.d=demo.test\r\n"
		"Received: from a\r\n\tby b\r\n"
		"From: <a@demo.test>\r\n"
		"X-Tag: one\r\n"
		"X-Tag: TWO\r\n"
		"X-Spam: Yes\r\n"
		"X-New: lead\r\n"
		"\r\n"
		"body\r\n";
	struct buf out;

	buf_init(&out, 0);
	assert_int_equal(milter_edit_apply(msg, strlen(msg), e, 6, NULL, 0,
	                                   &out), 0);
	assert_string_equal(out.p, want);
	buf_free(&out);
}

static void test_edit_body_and_limit(void **st)
{
	struct milter_edit e = { MILTER_E_ADD, 0, "X-A", "b", 0 };
	struct buf out;

	buf_init(&out, 0);
	assert_int_equal(milter_edit_apply(msg, strlen(msg), NULL, 0,
	                                   "new\nbody\r\n", 10, &out), 0);
	assert_non_null(strstr(out.p, "\r\n\r\nnew\r\nbody\r\n"));
	assert_int_equal(strstr(out.p, "\r\n\r\n") + 4 + 11, out.p + out.len);
	buf_free(&out);
	buf_init(&out, 40);
	assert_int_equal(milter_edit_apply(msg, strlen(msg), &e, 1, NULL, 0,
	                                   &out), -1);
	buf_free(&out);
}

/* milter_client_names() (milter.c): what is not a numeric address gets
 * no lookup at all, Postfix's "unknown" and no PTR name. */
static void test_client_names_not_an_address(void **state)
{
	const char *bad[] = { "not-an-address", "", "127.0.0.1 ", "[::1]",
	                      "host.example" };
	char name[64], ptr[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(ptr, 'x', sizeof(ptr));
		milter_client_names(bad[i], name, sizeof(name), ptr,
		                    sizeof(ptr));
		assert_string_equal(name, "unknown");
		assert_string_equal(ptr, "");
	}
	milter_client_names(NULL, name, sizeof(name), ptr, sizeof(ptr));
	assert_string_equal(name, "unknown");
	assert_string_equal(ptr, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packet_whole_and_bytewise),
		cmocka_unit_test(test_packet_limits),
		cmocka_unit_test(test_reply_simple),
		cmocka_unit_test(test_reply_headers),
		cmocka_unit_test(test_reply_headers_refused),
		cmocka_unit_test(test_reply_addresses),
		cmocka_unit_test(test_reply_replycode),
		cmocka_unit_test(test_reply_quarantine_and_body),
		cmocka_unit_test(test_optneg),
		cmocka_unit_test(test_put_commands),
		cmocka_unit_test(test_put_limits),
		cmocka_unit_test(test_hdr_walk),
		cmocka_unit_test(test_hdr_walk_no_blank_line),
		cmocka_unit_test(test_edit_headers),
		cmocka_unit_test(test_edit_body_and_limit),
		cmocka_unit_test(test_client_names_not_an_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
