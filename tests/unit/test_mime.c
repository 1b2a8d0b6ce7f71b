/* Unit tests for shared/mime: tree offsets, ENVELOPE, BODYSTRUCTURE,
 * BODY[section] and the SEARCH decoders; hostile messages (issue #9)
 * render whole and well-formed, or not at all. */
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>
#include "mime.h"
#include "../fuzz/imap_syntax.h"

static const char test_simple[] =
	"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
	"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
	"Subject: afternoon meeting\r\n"
	"To: mooch@owatagu.example\r\n"
	"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
	"\r\n"
	"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

/* multipart/mixed: text, a message/rfc822 holding a multipart/alternative,
 * and a base64 attachment. */
static const char test_nested[] =
	"From: a@example.org\r\n"
	"To: b@example.org\r\n"
	"Subject: nested\r\n"
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--outer\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"first part\r\n"
	"--outer\r\n"
	"Content-Type: message/rfc822\r\n"
	"Content-Description: forwarded\r\n"
	"\r\n"
	"From: c@example.org\r\n"
	"Subject: inner\r\n"
	"Content-Type: multipart/alternative; boundary=inner\r\n"
	"\r\n"
	"--inner\r\n"
	"\r\n"
	"plain inner\r\n"
	"--inner\r\n"
	"Content-Type: text/html\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"<b>caf=C3=A9</b>\r\n"
	"--inner--\r\n"
	"--outer\r\n"
	"Content-Type: application/octet-stream; name=\"x.bin\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment; filename=\"x.bin\"\r\n"
	"Content-Language: en, de\r\n"
	"\r\n"
	"aGVsbG8gd29ybGQ=\r\n"
	"--outer--\r\n"
	"epilogue\r\n";

static struct mime_tree *test_parse(const char *m)
{
	struct mime_tree *t = NULL;
	struct err e;

	assert_int_equal(mime_parse(m, strlen(m), NULL, &t, &e), 0);
	assert_non_null(t);
	return t;
}

static void test_fetch(const struct mime_tree *t, const char *spec,
                       const char *want)
{
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(mime_section_fetch(t, spec, strlen(spec), &b), 0);
	assert_int_equal(b.len, strlen(want));
	if (b.len > 0)
		assert_memory_equal(b.p, want, b.len);
	buf_free(&b);
}

static void test_simple_structure(void **st)
{
	struct mime_tree *t = test_parse(test_simple);
	struct buf b;

	assert_int_equal(t->nparts, 1);
	buf_init(&b, 0);
	assert_int_equal(mime_bodystructure(t, 0, &b), 0);
	assert_string_equal(b.p, "(\"text\" \"plain\" (\"charset\" \"US-ASCII\") NIL NIL \"7bit\" 55 1)");
	buf_reset(&b);
	assert_int_equal(mime_envelope(t, 0, &b), 0);
	assert_string_equal(b.p,
		"(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"afternoon meeting\" "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((NIL NIL \"mooch\" \"owatagu.example\")) NIL NIL NIL "
		"\"<B27397-0100000@Blurdybloop.example>\")");
	buf_free(&b);
	test_fetch(t, "1", "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n");
	test_fetch(t, "TEXT", "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n");
	test_fetch(t, "2", "");
	test_fetch(t, "HEADER.FIELDS (subject TO)",
	           "Subject: afternoon meeting\r\nTo: mooch@owatagu.example\r\n\r\n");
	mime_tree_free(t);
}

static void test_nested_structure(void **st)
{
	struct mime_tree *t = test_parse(test_nested);
	struct buf b;

	/* message, text, rfc822, inner msg, 2 alternatives, attachment */
	assert_int_equal(t->nparts, 7);
	assert_true(t->parts[0].flags & MIME_PART_MULTIPART);
	assert_int_equal(t->parts[0].nchild, 3);
	buf_init(&b, 0);
	assert_int_equal(mime_bodystructure(t, 1, &b), 0);
	assert_string_equal(b.p,
		"((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)"
		"(\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7bit\" 224 "
		"(NIL \"inner\" ((NIL NIL \"c\" \"example.org\")) ((NIL NIL \"c\" \"example.org\")) "
		"((NIL NIL \"c\" \"example.org\")) NIL NIL NIL NIL NIL) "
		"((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 1 NIL NIL NIL NIL)"
		"(\"text\" \"html\" NIL NIL NIL \"quoted-printable\" 16 1 NIL NIL NIL NIL) "
		"\"alternative\" (\"boundary\" \"inner\") NIL NIL NIL) 13 NIL NIL NIL NIL)"
		"(\"application\" \"octet-stream\" (\"name\" \"x.bin\") NIL NIL \"base64\" 16 "
		"NIL (\"attachment\" (\"filename\" \"x.bin\")) (\"en\" \"de\") NIL) "
		"\"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)");
	buf_reset(&b);
	/* BODY (no extension data) */
	assert_int_equal(mime_bodystructure(t, 0, &b), 0);
	assert_string_equal(b.p,
		"((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 1)"
		"(\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7bit\" 224 "
		"(NIL \"inner\" ((NIL NIL \"c\" \"example.org\")) ((NIL NIL \"c\" \"example.org\")) "
		"((NIL NIL \"c\" \"example.org\")) NIL NIL NIL NIL NIL) "
		"((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 1)"
		"(\"text\" \"html\" NIL NIL NIL \"quoted-printable\" 16 1) \"alternative\") 13)"
		"(\"application\" \"octet-stream\" (\"name\" \"x.bin\") NIL NIL \"base64\" 16) \"mixed\")");
	buf_free(&b);

	test_fetch(t, "1", "first part");
	test_fetch(t, "1.MIME", "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	test_fetch(t, "2.HEADER",
	           "From: c@example.org\r\nSubject: inner\r\n"
	           "Content-Type: multipart/alternative; boundary=inner\r\n\r\n");
	test_fetch(t, "2.1", "plain inner");
	test_fetch(t, "2.2", "<b>caf=C3=A9</b>");
	test_fetch(t, "2.2.MIME", "Content-Type: text/html\r\n"
	           "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	test_fetch(t, "2.HEADER.FIELDS.NOT (From Content-Type)", "Subject: inner\r\n\r\n");
	test_fetch(t, "3", "aGVsbG8gd29ybGQ=");
	test_fetch(t, "4", "");
	test_fetch(t, "2.3", "");
	test_fetch(t, "1.1", "");
	/* 2 is the whole encapsulated message */
	{
		struct mime_sect s;

		assert_int_equal(mime_section(t, "2", 1, &s), MIME_SEC_OK);
		assert_int_equal(s.len, 224);
		assert_memory_equal(test_nested + s.off, "From: c@example.org\r\n", 21);
		assert_int_equal(mime_section(t, "0", 1, &s), MIME_SEC_BAD);
		assert_int_equal(mime_section(t, "1.", 2, &s), MIME_SEC_BAD);
		assert_int_equal(mime_section(t, "FOO", 3, &s), MIME_SEC_BAD);
		assert_int_equal(mime_section(t, "MIME", 4, &s), MIME_SEC_BAD);
	}
	buf_init(&b, 0);
	assert_int_equal(mime_body_text(t, 0, &b), 0);
	assert_non_null(strstr(b.p, "<b>caf\xc3\xa9</b>"));
	assert_non_null(strstr(b.p, "first part"));
	assert_null(strstr(b.p, "hello world"));   /* not text */
	buf_free(&b);
	mime_tree_free(t);
}

static void test_envelope_groups(void **st)
{
	static const char m[] =
		"From: \"Doe, John\" <john.doe@example.com> (comment)\r\n"
		"Sender: <@relay.example:bounce@example.com>\r\n"
		"To: undisclosed-recipients:;\r\n"
		"Cc: Team: ann@example.com, Bob <bob@example.com>;, x@y.example\r\n"
		"Subject: =?UTF-8?B?aMOpbGxv?= \"quoted\"\r\n"
		"In-Reply-To: <a@b>\r\n"
		"\r\n"
		"body\r\n";
	struct mime_tree *t = test_parse(m);
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(mime_envelope(t, 0, &b), 0);
	assert_string_equal(b.p,
		"(NIL \"=?UTF-8?B?aMOpbGxv?= \\\"quoted\\\"\" "
		"((\"Doe, John\" NIL \"john.doe\" \"example.com\")) "
		"((NIL \"@relay.example\" \"bounce\" \"example.com\")) "
		"((\"Doe, John\" NIL \"john.doe\" \"example.com\")) "
		"((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
		"((NIL NIL \"Team\" NIL)(NIL NIL \"ann\" \"example.com\")"
		"(\"Bob\" NIL \"bob\" \"example.com\")(NIL NIL NIL NIL)"
		"(NIL NIL \"x\" \"y.example\")) "
		"NIL \"<a@b>\" NIL)");
	buf_free(&b);
	mime_tree_free(t);
}

static void test_literal_strings(void **st)
{
	static const char m[] = "Subject: caf\xc3\xa9\r\n\r\n";
	struct mime_tree *t = test_parse(m);
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(mime_envelope(t, 0, &b), 0);
	assert_non_null(strstr(b.p, "(NIL {5}\r\ncaf\xc3\xa9 NIL"));
	buf_free(&b);
	mime_tree_free(t);
}

static void test_decode_header(void **st)
{
	static const char *in =
		"=?ISO-8859-1?Q?Andr=E9?= Pirard =?utf-8?q?a_b?=\r\n"
		" =?UTF-8?B?w6k=?=";
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(mime_decode_header(in, strlen(in), &b), 0);
	/* RFC 2047 §8: white space between adjacent encoded words goes */
	assert_string_equal(b.p, "Andr\xc3\xa9 Pirard a b\xc3\xa9");
	buf_reset(&b);
	assert_int_equal(mime_decode_header("=?bogus?X?abc?= x", 17, &b), 0);
	assert_string_equal(b.p, "=?bogus?X?abc?= x");
	buf_free(&b);
}

static void test_decode_body(void **st)
{
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(mime_decode_body("aGVs\r\nbG8=\r\n", 12, "BASE64", &b), 0);
	assert_string_equal(b.p, "hello");
	buf_reset(&b);
	assert_int_equal(mime_decode_body("a=3Db=\r\nc =\r\nd", 14, "quoted-printable", &b), 0);
	assert_string_equal(b.p, "a=bc d");
	buf_free(&b);
	assert_true(mime_contains("Hello World", 11, "WORLD", 5));
	assert_false(mime_contains("Hello", 5, "hellos", 6));
}

static void test_depth_limit(void **st)
{
	struct buf m, out;
	struct mime_tree *t = NULL;
	struct mime_limits lim = { 5, 0 };
	struct err e;
	int i;

	buf_init(&m, 0);
	for (i = 0; i < 50; i++)
		buf_printf(&m, "Content-Type: message/rfc822\r\n\r\n");
	buf_printf(&m, "Subject: deep\r\n\r\nx\r\n");
	assert_int_equal(mime_parse(m.p, m.len, &lim, &t, &e), 0);
	assert_true(t->nparts <= 5);
	buf_init(&out, 0);
	assert_int_equal(mime_bodystructure(t, 1, &out), 0);
	assert_non_null(strstr(out.p, "\"application\" \"octet-stream\""));
	buf_free(&out);
	mime_tree_free(t);
	buf_free(&m);
}

/* Feed growing prefixes: every prefix must parse and render. */
static void test_prefixes(void **st)
{
	size_t n, len = strlen(test_nested);

	for (n = 0; n <= len; n++) {
		struct mime_tree *t = NULL;
		struct buf b;
		struct err e;

		assert_int_equal(mime_parse(test_nested, n, NULL, &t, &e), 0);
		buf_init(&b, 0);
		assert_int_equal(mime_bodystructure(t, 1, &b), 0);
		assert_int_equal(mime_envelope(t, 0, &b), 0);
		assert_true(b.p[0] == '(');
		buf_free(&b);
		mime_tree_free(t);
	}
}

static void test_lf_only(void **st)
{
	static const char m[] = "Subject: x\n\nline1\nline2\n";
	struct mime_tree *t = test_parse(m);

	assert_int_equal(t->parts[0].hdr_len, 12);
	assert_int_equal(t->parts[0].body_len, 12);
	assert_int_equal(t->parts[0].body_lines, 2);
	test_fetch(t, "TEXT", "line1\nline2\n");
	mime_tree_free(t);
	mime_tree_free(NULL);
}

/* Render both structures of m unbounded (must succeed, well-formed), then
 * under every bound in steps: each either succeeds with the same bytes or
 * fails leaving out as it was (STYLE §4: no cut-off response). */
static void test_render_checked(const char *m, size_t len, struct buf *env_r)
{
	struct mime_tree *t = NULL;
	struct buf full, b;
	struct err e;
	size_t max, step;
	int ext, rc;

	assert_int_equal(mime_parse(m, len, NULL, &t, &e), 0);
	for (ext = -1; ext <= 1; ext++) {
		buf_init(&full, 0);
		if (ext < 0)
			assert_int_equal(mime_envelope(t, 0, &full), 0);
		else
			assert_int_equal(mime_bodystructure(t, ext, &full), 0);
		if (imap_syntax_one(full.p, full.len) != 0)
			fail_msg("malformed: %.300s", full.p);
		step = full.len / 37 + 1;
		for (max = 1; max < full.len + 8; max += step) {
			buf_init(&b, max);
			assert_int_equal(buf_append(&b, "x", 1), 0);
			rc = ext < 0 ? mime_envelope(t, 0, &b) :
			     mime_bodystructure(t, ext, &b);
			if (rc == 0) {
				assert_int_equal(b.len, full.len + 1);
				assert_memory_equal(b.p + 1, full.p, full.len);
			} else {
				assert_int_equal(rc, -1);
				assert_int_equal(b.len, 1);
				assert_int_equal(b.p[1], '\0');
			}
			buf_free(&b);
		}
		if (ext < 0 && env_r != NULL) {
			*env_r = full;
			continue;
		}
		buf_free(&full);
	}
	mime_tree_free(t);
}

/* A header field over 64 KB made ENVELOPE stop half-way: unbalanced
 * parentheses in the FETCH response. */
static void test_huge_subject(void **st)
{
	struct buf m, env;
	char want[64];

	buf_init(&m, 0);
	assert_int_equal(buf_puts(&m, "From: a@example.net\r\nSubject: "), 0);
	while (m.len < 100100)
		assert_int_equal(buf_puts(&m, "abcdefghij"), 0);
	assert_int_equal(buf_puts(&m, "\r\n\r\nbody\r\n"), 0);
	test_render_checked(m.p, m.len, &env);
	/* a long string goes as a literal, not a 100 KB quoted line */
	snprintf(want, sizeof(want), "(NIL {%zu}\r\nabcdefghij", m.len - 30 - 10);
	assert_memory_equal(env.p, want, strlen(want));
	buf_free(&env);
	buf_free(&m);
}

static void test_huge_addresses(void **st)
{
	struct buf m;
	int i;

	buf_init(&m, 0);
	assert_int_equal(buf_puts(&m, "From: "), 0);
	for (i = 0; i < 3000; i++)
		assert_int_equal(buf_printf(&m, "%s\"N\\\"ame %d\" <user%d@example.net>",
		                            i ? ",\r\n " : "", i, i), 0);
	assert_int_equal(buf_puts(&m, "\r\nTo: g: a@b, (c) <d@e>;\r\nCc: \""), 0);
	for (i = 0; i < 70000; i++)
		assert_int_equal(buf_putc(&m, 'q'), 0);
	assert_int_equal(buf_puts(&m, "\" <" ), 0);
	for (i = 0; i < 70000; i++)
		assert_int_equal(buf_putc(&m, 'l'), 0);
	assert_int_equal(buf_puts(&m, "@[1.2.3.4]>\r\nMessage-ID: <"), 0);
	for (i = 0; i < 100000; i++)
		assert_int_equal(buf_putc(&m, 'x'), 0);
	assert_int_equal(buf_puts(&m, "@x>\r\n\r\nb\r\n"), 0);
	test_render_checked(m.p, m.len, NULL);
	buf_free(&m);
}

static void test_huge_mime_fields(void **st)
{
	struct buf m;
	int i;

	buf_init(&m, 0);
	assert_int_equal(buf_puts(&m, "Content-Type: multipart/mixed; boundary=b; x"), 0);
	for (i = 0; i < 300; i++)
		assert_int_equal(buf_putc(&m, 'n'), 0);
	assert_int_equal(buf_puts(&m, "=1\r\n\r\n--b\r\nContent-Type: text/plain; name=\""), 0);
	for (i = 0; i < 70000; i++)
		assert_int_equal(buf_putc(&m, 'v'), 0);
	assert_int_equal(buf_puts(&m, "\"\r\nContent-Transfer-Encoding: "), 0);
	for (i = 0; i < 2000; i++)
		assert_int_equal(buf_putc(&m, 'e'), 0);
	assert_int_equal(buf_puts(&m, "\r\nContent-Description: \"\\\"\r\n"
	                 "Content-Disposition: attachment; filename=\"\xff\"\r\n"
	                 "Content-Language: a, b, c\r\n\r\nx\r\n--b--\r\n"), 0);
	test_render_checked(m.p, m.len, NULL);
	buf_free(&m);
}

/* RFC 3501 §4.3: no IMAP string holds a NUL; 8-bit and CR/LF force a
 * literal. */
static void test_nul_and_8bit(void **st)
{
	static const char m[] = "Subject: a\0b\x80\r\nFrom: \"x\0\" <a\0@b>\r\n"
	                        "Message-ID: <\r\n\r\n";
	struct buf env;

	test_render_checked(m, sizeof(m) - 1, &env);
	assert_null(memchr(env.p, '\0', env.len));
	assert_non_null(strstr(env.p, "(NIL {4}\r\na\x80" "b\x80 "));
	buf_free(&env);
}

static void test_deep_and_wide(void **st)
{
	struct buf m;
	int i;

	buf_init(&m, 0);
	for (i = 0; i < 60; i++)
		assert_int_equal(buf_printf(&m, "Content-Type: multipart/mixed; "
		                            "boundary=b%d\r\n\r\n--b%d\r\n", i, i), 0);
	assert_int_equal(buf_puts(&m, "Content-Type: message/rfc822\r\n\r\n"
	                          "Subject: inner\r\n\r\nx\r\n"), 0);
	test_render_checked(m.p, m.len, NULL);
	buf_reset(&m);
	assert_int_equal(buf_puts(&m, "Content-Type: multipart/mixed; boundary=w\r\n\r\n"), 0);
	for (i = 0; i < 1500; i++)
		assert_int_equal(buf_printf(&m, "--w\r\nContent-Type: message/rfc822\r\n\r\n"
		                            "From: p%d@x\r\n\r\n%d\r\n", i, i), 0);
	test_render_checked(m.p, m.len, NULL);
	buf_free(&m);
}

/* Dovecot's imaptest script fetch-envelope: its six messages (rewritten
 * here from fetch-envelope.mbox, with CRLF as APPEND stores them) and the
 * ENVELOPE the script expects of each. */
static const char *const test_fe_msgs[] = {
	"Message-ID: <msg@id>\r\n"
	"In-Reply-To: <reply@to.id>\r\n"
	"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"
	"Subject: subject header\r\n"
	"From: From Real <fromuser@fromdomain.org>\r\n"
	"To: To Real <touser@todomain.org>\r\n"
	"Cc: Cc Real <ccuser@ccdomain.org>\r\n"
	"Bcc: Bcc Real <bccuser@bccdomain.org>\r\n"
	"Sender: Sender Real <senderuser@senderdomain.org>\r\n"
	"Reply-To: ReplyTo Real <replytouser@replytodomain.org>\r\n"
	"\r\nbody\r\n",
	"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"
	"From: user@domain\r\n\r\nbody\r\n",
	"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"
	"From: user@domain\r\n\r\nbody\r\n",
	"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"
	"From: user@domain (Real Name)\r\n"
	"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"
	"Cc: group:;, group2: (foo) ;\r\n"
	"\r\nbody\r\n",
	"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"
	"From: user@domain (Real Name)\r\n"
	"Sender: \r\n"
	"Reply-To: \r\n"
	"\r\nbody\r\n",
	"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"
	"From: <@route:user@domain>\r\n\r\nbody\r\n",
};

static const char *const test_fe_want[] = {
	"(\"Thu, 15 Feb 2007 01:02:03 +0200\" \"subject header\" "
	"((\"From Real\" NIL \"fromuser\" \"fromdomain.org\")) "
	"((\"Sender Real\" NIL \"senderuser\" \"senderdomain.org\")) "
	"((\"ReplyTo Real\" NIL \"replytouser\" \"replytodomain.org\")) "
	"((\"To Real\" NIL \"touser\" \"todomain.org\")) "
	"((\"Cc Real\" NIL \"ccuser\" \"ccdomain.org\")) "
	"((\"Bcc Real\" NIL \"bccuser\" \"bccdomain.org\")) "
	"\"<reply@to.id>\" \"<msg@id>\")",
	"(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((NIL NIL \"user\" \"domain\")) "
	"((NIL NIL \"user\" \"domain\")) ((NIL NIL \"user\" \"domain\")) "
	"NIL NIL NIL NIL NIL)",
	"(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((NIL NIL \"user\" \"domain\")) "
	"((NIL NIL \"user\" \"domain\")) ((NIL NIL \"user\" \"domain\")) "
	"NIL NIL NIL NIL NIL)",
	"(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL "
	"((\"Real Name\" NIL \"user\" \"domain\")) "
	"((\"Real Name\" NIL \"user\" \"domain\")) "
	"((\"Real Name\" NIL \"user\" \"domain\")) "
	"((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")"
	"(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")"
	"(NIL NIL NIL NIL)) "
	"((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)"
	"(NIL NIL NIL NIL)) NIL NIL NIL)",
	"(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL "
	"((\"Real Name\" NIL \"user\" \"domain\")) "
	"((\"Real Name\" NIL \"user\" \"domain\")) "
	"((\"Real Name\" NIL \"user\" \"domain\")) NIL NIL NIL NIL NIL)",
	"(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL "
	"((NIL \"@route\" \"user\" \"domain\")) "
	"((NIL \"@route\" \"user\" \"domain\")) "
	"((NIL \"@route\" \"user\" \"domain\")) NIL NIL NIL NIL NIL)",
};

static void test_imaptest_fetch_envelope(void **st)
{
	size_t i;
	struct buf b;

	buf_init(&b, 0);
	for (i = 0; i < sizeof(test_fe_msgs) / sizeof(test_fe_msgs[0]); i++) {
		struct mime_tree *t = test_parse(test_fe_msgs[i]);

		buf_reset(&b);
		assert_int_equal(mime_envelope(t, 0, &b), 0);
		if (strcmp(b.p, test_fe_want[i]) != 0)
			fail_msg("message %zu:\n got %s\nwant %s", i + 1, b.p,
			         test_fe_want[i]);
		mime_tree_free(t);
	}
	buf_free(&b);
}

/* More ENVELOPE address forms: quoted names, encoded words kept as sent
 * (RFC 3501 §7.4.2), missing parts, a field with no address falling back
 * to From, an unterminated group closed. */
static void test_envelope_addresses(void **st)
{
	static const char m[] =
		"From: \"Real Name\" <user@domain>\r\n"
		"Sender: (nobody)\r\n"
		"Reply-To: =?utf-8?q?J=C3=B6rg?= <j@x>, \"Q \\\"R\\\"\" <q@r>\r\n"
		"To: user, <@d>, <>\r\n"
		"Cc: team: a@b\r\n"
		"Bcc: John Q. Public <jqp@x> (home), c . d @ e . f\r\n"
		"\r\nbody\r\n";
	struct mime_tree *t = test_parse(m);
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(mime_envelope(t, 0, &b), 0);
	assert_string_equal(b.p,
		"(NIL NIL ((\"Real Name\" NIL \"user\" \"domain\")) "
		"((\"Real Name\" NIL \"user\" \"domain\")) "
		"((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x\")"
		"(\"Q \\\"R\\\"\" NIL \"q\" \"r\")) "
		"((NIL NIL \"user\" \"MISSING_DOMAIN\")"
		"(NIL NIL \"MISSING_MAILBOX\" \"d\")"
		"(NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")) "
		"((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL)) "
		"((\"John Q. Public\" NIL \"jqp\" \"x\")(NIL NIL \"c.d\" \"e.f\")) "
		"NIL NIL)");
	buf_free(&b);
	mime_tree_free(t);
}

/* imaptest's fetch-bodystructure: a boundary folded inside its quotes,
 * and the BODY the script expects (imaptest compares case-insensitively). */
static void test_imaptest_fetch_bodystructure(void **st)
{
	static const char m[] =
		"From: user@domain.org\r\n"
		"Date: Sat, 24 Mar 2007 23:00:00 +0200\r\n"
		"Mime-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"foo\r\n"
		" bar\"\r\n"
		"\r\n"
		"--foo bar\r\n"
		"Content-Type: text/x-myown; charset=us-ascii\r\n"
		"\r\n"
		"hello\r\n"
		"\r\n"
		"--foo bar--\r\n";
	struct mime_tree *t = test_parse(m);
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(mime_bodystructure(t, 0, &b), 0);
	if (strcasecmp(b.p, "((\"TEXT\" \"x-MYOWN\" (\"CHARSET\" \"us-ascii\") NIL "
	                    "NIL \"7BIT\" 7 1) \"MIXED\")") != 0)
		fail_msg("got %s", b.p);
	buf_free(&b);
	mime_tree_free(t);
}

/* The body-fld-param list that a Content-Type of application/x with
 * params gets, and the same params under Content-Disposition. */
static void test_param(const char *params, const char *want)
{
	struct mime_tree *t;
	struct buf m, b, w;

	buf_init(&m, 0);
	buf_init(&b, 0);
	buf_init(&w, 0);
	assert_int_equal(buf_printf(&m, "Content-Type: application/x%s\r\n"
	                            "Content-Disposition: attachment%s\r\n"
	                            "\r\nx\r\n", params, params), 0);
	t = test_parse(m.p);
	assert_int_equal(mime_bodystructure(t, 1, &b), 0);
	assert_int_equal(buf_printf(&w, "(\"application\" \"x\" %s NIL NIL \"7bit\" 3 "
	                            "NIL (\"attachment\" %s) NIL NIL)", want, want), 0);
	if (strcmp(b.p, w.p) != 0)
		fail_msg("params [%s]\n got %s\nwant %s", params, b.p, w.p);
	mime_tree_free(t);
	buf_free(&m);
	buf_free(&b);
	buf_free(&w);
}

/* RFC 2231 §3 continuations and §4 charsets, joined and decoded. */
static void test_rfc2231(void **st)
{
	test_param("; name*0=\"a\"; name*1=\"b\"", "(\"name\" \"ab\")");
	test_param("; name*0*=us-ascii'en'a%20b; name*1*=%20c",
	           "(\"name\" \"a b c\")");
	/* §4.1: encoded and plain sections mixed; % is literal in a plain one */
	test_param("; NAME*0*=''a%20; name*1=\"%20b\"; Name*2*=%2e",
	           "(\"name\" \"a %20b.\")");
	/* any order, other parameters in between */
	test_param("; n*2=c; x=1; n*0=a; n*1=\"b\"", "(\"n\" \"abc\" \"x\" \"1\")");
	/* §4 alone */
	test_param("; name*=us-ascii''%41%42", "(\"name\" \"AB\")");
	test_param("; name*=''", "(\"name\" \"\")");
	/* not printable ASCII once decoded: stays encoded, in one section,
	 * and a plain fallback follows */
	test_param("; filename*0*=utf-8'de'%E2%82%AC; filename*1*=.txt; "
	           "filename=euro.txt",
	           "(\"filename*\" \"utf-8'de'%E2%82%AC.txt\" \"filename\" \"euro.txt\")");
	test_param("; a*=''x%0Dy", "(\"a*\" \"''x%0Dy\")");
	/* sections win over a plain value of the same name, wherever it is */
	test_param("; name=old; name*0=new", "(\"name\" \"new\")");
	/* malformed: a gap ends the value, a repeated section counts once,
	 * no section 0 is no value, bad %XX stays */
	test_param("; name*0=a; name*2=c", "(\"name\" \"a\")");
	test_param("; name*0=a; name*0=x; name*1=b", "(\"name\" \"ab\")");
	test_param("; name*1=b; name*2=c", "NIL");
	test_param("; name*1=b; name=plain", "(\"name\" \"plain\")");
	test_param("; name*=%4; n*=%zz%", "(\"name\" \"%4\" \"n\" \"%zz%\")");
	test_param("; name*0*=no-quotes%21", "(\"name\" \"no-quotes!\")");
	/* section numbers we do not take stay names as written */
	test_param("; a*00=x; b*1000=y; c*01=z", "(\"a*00\" \"x\" \"b*1000\" \"y\" \"c*01\" \"z\")");
	/* a plain name given twice: the first */
	test_param("; charset=utf-8; CHARSET=latin1", "(\"charset\" \"utf-8\")");
}

/* RFC 2231 where the parser itself uses a parameter: a boundary in
 * sections, a charset for SEARCH's body text. */
static void test_rfc2231_used(void **st)
{
	static const char m[] =
		"Content-Type: multipart/mixed; boundary*0=\"fo\"; boundary*1=o\r\n"
		"\r\n"
		"--foo\r\n"
		"Content-Type: text/plain; charset*=''iso-8859-1\r\n"
		"\r\n"
		"caf\xe9\r\n"
		"--foo--\r\n";
	struct mime_tree *t = test_parse(m);
	struct buf b;

	assert_int_equal(t->nparts, 2);
	assert_true(t->parts[0].flags & MIME_PART_MULTIPART);
	buf_init(&b, 0);
	assert_int_equal(mime_body_text(t, 0, &b), 0);
	assert_string_equal(b.p, "caf\xc3\xa9\n");
	buf_free(&b);
	mime_tree_free(t);
}

/* Hostile parameter lists: thousands of sections, of names, of repeats.
 * Only MIME_PARAMS_MAX (128) parameters of a field are read, so the join
 * is bounded; the output stays well-formed and whole under any bound. */
static void test_rfc2231_huge(void **st)
{
	struct mime_tree *t;
	struct buf m, b, want;
	int i;

	buf_init(&m, 0);
	buf_init(&b, 0);
	buf_init(&want, 0);
	assert_int_equal(buf_puts(&m, "Content-Type: application/x"), 0);
	for (i = 4999; i >= 0; i--)
		assert_int_equal(buf_printf(&m, "; n*%d=%c", i % 1000, 'a' + i % 26), 0);
	assert_int_equal(buf_puts(&m, "\r\n\r\nx\r\n"), 0);
	test_render_checked(m.p, m.len, NULL);
	t = test_parse(m.p);
	assert_int_equal(mime_bodystructure(t, 0, &b), 0);
	/* the first 128 read are sections 999 down to 872: no section 0 */
	assert_string_equal(b.p, "(\"application\" \"x\" NIL NIL NIL \"7bit\" 3)");
	mime_tree_free(t);

	buf_reset(&m);
	buf_reset(&b);
	assert_int_equal(buf_puts(&m, "Content-Type: application/x"), 0);
	for (i = 0; i < 5000; i++)
		assert_int_equal(buf_printf(&m, "; n*%d*=%%%02X", i, 'a' + i % 26), 0);
	assert_int_equal(buf_puts(&m, "\r\n\r\nx\r\n"), 0);
	test_render_checked(m.p, m.len, NULL);
	t = test_parse(m.p);
	assert_int_equal(mime_bodystructure(t, 0, &b), 0);
	assert_int_equal(buf_puts(&want, "(\"application\" \"x\" (\"n\" \""), 0);
	for (i = 0; i < 128; i++)
		assert_int_equal(buf_putc(&want, (char)('a' + i % 26)), 0);
	assert_int_equal(buf_puts(&want, "\") NIL NIL \"7bit\" 3)"), 0);
	assert_string_equal(b.p, want.p);
	mime_tree_free(t);

	buf_reset(&m);
	assert_int_equal(buf_puts(&m, "Content-Type: text/plain"), 0);
	for (i = 0; i < 3000; i++)
		assert_int_equal(buf_printf(&m, "; p%d*%d=\"v\"", i, i % 3), 0);
	assert_int_equal(buf_puts(&m, "\r\nContent-Disposition: inline"), 0);
	for (i = 0; i < 3000; i++)
		assert_int_equal(buf_puts(&m, "; f*0*=utf-8''%FF"), 0);
	assert_int_equal(buf_puts(&m, "\r\n\r\nx\r\n"), 0);
	test_render_checked(m.p, m.len, NULL);
	buf_free(&m);
	buf_free(&b);
	buf_free(&want);
}

/* SEARCH's substring test: right across its internal windows, and linear
 * (a naive scan of this takes minutes). */
static void test_contains(void **st)
{
	size_t hl = 4u << 20, nlen = 32768, i;
	char *hay = malloc(hl), *needle = malloc(nlen);
	unsigned seed = 1;

	assert_non_null(hay);
	assert_non_null(needle);
	memset(hay, 'a', hl);
	memset(needle, 'A', nlen);
	needle[nlen - 1] = 'b';
	assert_false(mime_contains(hay, hl, needle, nlen));
	hay[hl - 1] = 'B';
	assert_true(mime_contains(hay, hl, needle, nlen));
	assert_true(mime_contains(hay, hl, "AB", 2));
	for (i = 0; i < 200000; i++) {
		seed = seed * 1103515245 + 12345;
		hay[i] = "abAB"[(seed >> 16) & 3];
	}
	/* every needle cut from the text is found, wherever it sits */
	for (i = 0; i < 200; i++) {
		size_t off, len;

		seed = seed * 1103515245 + 12345;
		off = (seed >> 8) % 190000;
		len = 1 + (seed >> 4) % 9000;
		assert_true(mime_contains(hay, 200000, hay + off, len));
	}
	assert_false(mime_contains(hay, 200000, "c", 1));
	free(hay);
	free(needle);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_structure),
		cmocka_unit_test(test_nested_structure),
		cmocka_unit_test(test_envelope_groups),
		cmocka_unit_test(test_literal_strings),
		cmocka_unit_test(test_decode_header),
		cmocka_unit_test(test_decode_body),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_lf_only),
		cmocka_unit_test(test_huge_subject),
		cmocka_unit_test(test_huge_addresses),
		cmocka_unit_test(test_huge_mime_fields),
		cmocka_unit_test(test_nul_and_8bit),
		cmocka_unit_test(test_deep_and_wide),
		cmocka_unit_test(test_contains),
		cmocka_unit_test(test_imaptest_fetch_envelope),
		cmocka_unit_test(test_envelope_addresses),
		cmocka_unit_test(test_imaptest_fetch_bodystructure),
		cmocka_unit_test(test_rfc2231),
		cmocka_unit_test(test_rfc2231_used),
		cmocka_unit_test(test_rfc2231_huge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
