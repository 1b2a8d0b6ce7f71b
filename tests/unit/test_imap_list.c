/* Unit tests for mra/imap_list (LIST/LSUB arguments with LIST-EXTENDED,
 * RFC 5258, and LIST-STATUS, RFC 5819; which names a request returns)
 * and for the atom rule the LIST and SELECT arguments depend on: a "["
 * not closed on its line is an ATOM-CHAR (RFC 3501 §9). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "../../mra/imap_parser.h"
#include "../../mra/imap_list.h"

static const struct imap_parser_limits test_lim = {
	.max_line = 1024, .max_literal = 4096, .max_depth = 8
};

struct test_cmd {
	char buf[2048];
	char *tag;
	struct imap_arg args[64];
	int n;
};

/* Parse "t LIST <rest>\r\n"; the arguments after the name. */
static const struct imap_arg *test_args(struct test_cmd *t, const char *rest)
{
	struct imap_parse_need need;
	enum imap_parse_err err;
	size_t used;
	int len = snprintf(t->buf, sizeof(t->buf), "t LIST %s\r\n", rest);

	t->n = imap_parser_parse(&test_lim, t->buf, (size_t)len, &t->tag,
				 t->args, 64, &used, &need, &err);
	assert_true(t->n >= 1);
	return t->args[0].next;
}

static int test_req(const char *rest, int lsub, struct imap_list_req *req,
		    const char **why)
{
	static struct test_cmd t;

	return imap_list_parse(test_args(&t, rest), lsub, req, why);
}

static void test_atom_open_bracket(void **st)
{
	static const char in[] =
		"1 SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}\r\n";
	static struct test_cmd t;
	struct imap_parse_need need;
	enum imap_parse_err err;
	size_t used, i;

	/* imaptest atoms: BAD before, an atom now, however it arrives */
	for (i = 0; i < sizeof(in) - 1; i++) {
		memcpy(t.buf, in, i);
		assert_int_equal(imap_parser_parse(&test_lim, t.buf, i, &t.tag,
						   t.args, 64, &used, &need,
						   &err), IMAP_PARSE_NEED_MORE);
	}
	memcpy(t.buf, in, sizeof(in) - 1);
	assert_int_equal(imap_parser_parse(&test_lim, t.buf, sizeof(in) - 1,
					   &t.tag, t.args, 64, &used, &need,
					   &err), 2);
	assert_string_equal(t.args[1].s, "!#$&'+,-.0123456789:;<=>?@^_`|[}");
	/* an unclosed "[" ends at a space like any atom */
	test_args(&t, "\"\" a[b% \"x\"");
	assert_int_equal(t.n, 4);
	assert_string_equal(t.args[2].s, "a[b%");
	assert_string_equal(t.args[3].s, "x");
	/* and a closed one still holds spaces (RFC 3501 §6.4.5) */
	test_args(&t, "BODY[HEADER.FIELDS (From To)]<0.10>");
	assert_int_equal(t.n, 2);
	assert_string_equal(t.args[1].s, "BODY[HEADER.FIELDS (From To)]<0.10>");
}

static void test_parse_basic_and_extended(void **st)
{
	struct imap_list_req r;
	const char *why;

	assert_int_equal(test_req("\"\" %", 0, &r, &why), 0);
	assert_false(r.extended);
	assert_int_equal(r.npat, 1);
	assert_string_equal(r.pat[0]->s, "%");
	assert_int_equal(test_req("(SUBSCRIBED RECURSIVEMATCH) \"\" (a* b) "
				  "RETURN (CHILDREN STATUS (MESSAGES SIZE))",
				  0, &r, &why), 0);
	assert_true(r.extended);
	assert_int_equal(r.sel, IMAP_LIST_SEL_SUBSCRIBED |
			 IMAP_LIST_SEL_RECURSIVE);
	/* RFC 5258 §3.1: SUBSCRIBED selects and returns */
	assert_int_equal(r.ret, IMAP_LIST_RET_SUBSCRIBED |
			 IMAP_LIST_RET_CHILDREN | IMAP_LIST_RET_STATUS);
	assert_int_equal(r.status, IMAP_STATUS_MESSAGES | IMAP_STATUS_SIZE);
	assert_int_equal(r.npat, 2);
	assert_string_equal(r.pat[1]->s, "b");
	assert_int_equal(test_req("(remote) \"\" % return ()", 0, &r, &why), 0);
	assert_int_equal(r.sel, IMAP_LIST_SEL_REMOTE);
	assert_int_equal(test_req("(special-use) \"\" * return (special-use)",
				  0, &r, &why), 0);
	assert_int_equal(r.sel, IMAP_LIST_SEL_SPECIALUSE);
	assert_int_equal(r.ret, IMAP_LIST_RET_SPECIALUSE);
}

static void test_parse_refused(void **st)
{
	struct imap_list_req r;
	const char *why;

	/* the BADs of imaptest's listext script, and more */
	assert_int_equal(test_req("(imaptest) \"\" \"\"", 0, &r, &why), -1);
	assert_int_equal(test_req("(recursivematch) \"\" \"\"", 0, &r, &why), -1);
	assert_int_equal(test_req("(recursivematch remote) \"\" \"\"", 0, &r,
				  &why), -1);
	assert_int_equal(test_req("\"\" \"\" return (imaptest)", 0, &r, &why),
			 -1);
	assert_int_equal(test_req("\"\" \"\" return (status ())", 0, &r, &why),
			 -1);
	assert_int_equal(test_req("\"\" \"\" return (status (bogus))", 0, &r,
				  &why), -1);
	assert_int_equal(test_req("\"\" \"\" return", 0, &r, &why), -1);
	assert_int_equal(test_req("\"\" \"\" extra", 0, &r, &why), -1);
	assert_int_equal(test_req("\"\" ()", 0, &r, &why), -1);
	assert_int_equal(test_req("\"\" ((a))", 0, &r, &why), -1);
	assert_int_equal(test_req("\"\"", 0, &r, &why), -1);
	/* LSUB has no options and one pattern */
	assert_int_equal(test_req("(subscribed) \"\" %", 1, &r, &why), -1);
	assert_int_equal(test_req("\"\" (a b)", 1, &r, &why), -1);
	assert_int_equal(test_req("\"\" % return (children)", 1, &r, &why), -1);
	assert_int_equal(test_req("\"\" %", 1, &r, &why), 0);
	assert_non_null(why);
}

static void test_status_items(void **st)
{
	static struct test_cmd t;
	const struct imap_arg *a;
	unsigned items;

	a = test_args(&t, "(messages RECENT uidnext UIDVALIDITY unseen size)");
	assert_int_equal(imap_list_status_items(a, &items), 0);
	assert_int_equal(items, 0x3f);
	a = test_args(&t, "()");
	assert_int_equal(imap_list_status_items(a, &items), -1);
	a = test_args(&t, "(MESSAGES HIGHESTMODSEQX)");
	assert_int_equal(imap_list_status_items(a, &items), -1);
	a = test_args(&t, "MESSAGES");
	assert_int_equal(imap_list_status_items(a, &items), -1);
}

/* The subscribe script's tree: t (subscribed), t2 with t2.x subscribed,
 * t3 with t3.t3 subscribed. */
static void test_select_lsub_noselect_parent(void **st)
{
	struct imap_list_entry e[] = {
		{ "m", 0, 0, 0, 0 },
		{ "m.t", IMAP_LIST_A_SUBSCRIBED, 0, 0, 0 },
		{ "m.t2", 0, 0, 0, 0 },
		{ "m.t2.x", IMAP_LIST_A_SUBSCRIBED, 0, 0, 0 },
		{ "m.t3", IMAP_LIST_A_NOSELECT, 0, 0, 0 },
		{ "m.t3.t3", IMAP_LIST_A_SUBSCRIBED | IMAP_LIST_A_NONEXISTENT,
		  0, 0, 0 },
	};
	struct imap_list_req r;
	const char *why;

	/* LSUB "" m.% : m.t, m.t2 and m.t3 match */
	assert_int_equal(test_req("\"\" m.%", 1, &r, &why), 0);
	e[1].match = e[2].match = e[4].match = 1;
	imap_list_select(&r, '.', e, 6);
	assert_true(e[1].listed);
	assert_int_equal(e[1].out, 0);
	/* RFC 3501 §6.3.9: unsubscribed parents of subscribed names */
	assert_true(e[2].listed);
	assert_int_equal(e[2].out, IMAP_LIST_A_NOSELECT);
	assert_true(e[4].listed);
	assert_int_equal(e[4].out, IMAP_LIST_A_NOSELECT);
	assert_false(e[0].listed || e[3].listed || e[5].listed);
	/* "*" lists the subscribed names themselves, no parents */
	assert_int_equal(test_req("\"\" m.*", 1, &r, &why), 0);
	e[3].match = e[5].match = 1;
	imap_list_select(&r, '.', e, 6);
	assert_true(e[1].listed && e[3].listed && e[5].listed);
	assert_false(e[2].listed || e[4].listed);
	/* a subscribed name that is gone is \Noselect in LSUB */
	assert_int_equal(e[5].out, IMAP_LIST_A_NOSELECT);
}

/* imaptest listext: t7.t7 subscribed, t8.t8 and t8.t9 subscribed. */
static void test_select_recursivematch(void **st)
{
	struct imap_list_entry e[] = {
		{ "t7", IMAP_LIST_A_HASCHILDREN, 0, 0, 0 },
		{ "t7.t7", IMAP_LIST_A_SUBSCRIBED, 0, 0, 0 },
		{ "t8", IMAP_LIST_A_HASCHILDREN, 0, 0, 0 },
		{ "t8.t8", IMAP_LIST_A_SUBSCRIBED, 0, 0, 0 },
		{ "t8.t9", IMAP_LIST_A_SUBSCRIBED, 0, 0, 0 },
		{ "gone", IMAP_LIST_A_SUBSCRIBED | IMAP_LIST_A_NONEXISTENT |
		  IMAP_LIST_A_NOSELECT, 0, 0, 0 },
	};
	struct imap_list_req r;
	const char *why;

	/* pattern "*t7" / "*t8": both levels match; t8.t9 does not */
	assert_int_equal(test_req("(subscribed recursivematch) \"\" (*t7 *t8)",
				  0, &r, &why), 0);
	e[0].match = e[1].match = e[2].match = e[3].match = 1;
	imap_list_select(&r, '.', e, 6);
	/* RFC 5258 §3.5: CHILDINFO only for descendants not returned */
	assert_false(e[0].listed);
	assert_true(e[1].listed);
	assert_int_equal(e[1].out, IMAP_LIST_A_SUBSCRIBED);
	assert_true(e[2].listed);
	assert_int_equal(e[2].out, IMAP_LIST_A_HASCHILDREN |
			 IMAP_LIST_A_CHILDINFO);
	assert_true(e[3].listed);
	assert_false(e[4].listed);
	/* SUBSCRIBED alone: no parents; a gone name is \NonExistent only */
	assert_int_equal(test_req("(subscribed) \"\" *", 0, &r, &why), 0);
	e[4].match = e[5].match = 1;
	imap_list_select(&r, '.', e, 6);
	assert_false(e[0].listed || e[2].listed);
	assert_true(e[1].listed && e[3].listed && e[4].listed);
	assert_int_equal(e[5].out, IMAP_LIST_A_SUBSCRIBED |
			 IMAP_LIST_A_NONEXISTENT);
	/* plain LIST: never a gone name, never \Subscribed */
	assert_int_equal(test_req("\"\" *", 0, &r, &why), 0);
	imap_list_select(&r, '.', e, 6);
	assert_false(e[5].listed);
	assert_true(e[1].listed);
	assert_int_equal(e[1].out, 0);
	/* unless asked for with RETURN (SUBSCRIBED) */
	assert_int_equal(test_req("\"\" * return (subscribed)", 0, &r, &why), 0);
	imap_list_select(&r, '.', e, 6);
	assert_int_equal(e[1].out, IMAP_LIST_A_SUBSCRIBED);
	assert_int_equal(e[0].out, IMAP_LIST_A_HASCHILDREN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_atom_open_bracket),
		cmocka_unit_test(test_parse_basic_and_extended),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_status_items),
		cmocka_unit_test(test_select_lsub_noselect_parent),
		cmocka_unit_test(test_select_recursivematch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
