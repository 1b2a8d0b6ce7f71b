/* Unit tests for mra/imap_view.c: a session's view of its mailbox and the
 * untagged responses that keep it in step (RFC 3501 §7.3-7.4, RFC 7162).
 * The store's side is built by hand: arrays of struct mstore_msg. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../../mra/imap_view.h"

#define MAXM 64

struct store {
	struct mstore_msg m[MAXM];
	size_t n;
	const char *kw[MSTORE_MAX_KEYWORDS];
	uint64_t hms;
};

static void store_add(struct store *st, uint32_t uid, unsigned flags,
		      uint32_t kw, uint64_t modseq)
{
	struct mstore_msg *m = &st->m[st->n++];

	memset(m, 0, sizeof(*m));
	m->uid = uid;
	m->flags = flags;
	m->keywords = kw;
	m->modseq = modseq;
	if (modseq > st->hms)
		st->hms = modseq;
}

static void store_del(struct store *st, uint32_t uid)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		if (st->m[i].uid == uid) {
			memmove(&st->m[i], &st->m[i + 1],
				(st->n - i - 1) * sizeof(st->m[0]));
			st->n--;
			st->hms++;
			return;
		}
	fail_msg("no uid %u", uid);
}

static struct imap_view_src src_of(const struct store *st)
{
	struct imap_view_src s;

	s.msgs = st->m;
	s.count = st->n;
	s.kwnames = st->kw;
	s.uidvalidity = 777;
	s.uidnext = st->n ? st->m[st->n - 1].uid + 1 : 1;
	s.highestmodseq = st->hms;
	return s;
}

/* Offset of needle in the output, failing when absent. */
static size_t at(const struct buf *b, const char *needle)
{
	const char *p = b->p != NULL ? strstr(b->p, needle) : NULL;

	if (p == NULL)
		fail_msg("\"%s\" not in:\n%s", needle, b->p ? b->p : "");
	return (size_t)(p - b->p);
}

static int has(const struct buf *b, const char *needle)
{
	return b->p != NULL && strstr(b->p, needle) != NULL;
}

static void test_open_responses(void **state)
{
	struct store st = { .n = 0 };
	struct imap_view_src src;
	struct imap_view v;
	struct buf out;

	st.kw[0] = "$Junk";
	store_add(&st, 1, MSTORE_F_SEEN, 0, 3);
	store_add(&st, 4, 0, 1, 5);
	store_add(&st, 9, MSTORE_F_RECENT, 0, 9);
	src = src_of(&st);
	imap_view_init(&v);
	buf_init(&out, 0);
	assert_int_equal(imap_view_open(&v, &src, 0, &out), 0);
	assert_true(has(&out, "* FLAGS (\\Seen \\Answered \\Flagged "
			"\\Deleted \\Draft $Junk)\r\n"));
	assert_true(has(&out, "[PERMANENTFLAGS (\\Seen \\Answered "
			"\\Flagged \\Deleted \\Draft $Junk \\*)]"));
	assert_true(has(&out, "* 3 EXISTS\r\n* 1 RECENT\r\n"));
	assert_true(has(&out, "* OK [UNSEEN 2]"));
	assert_true(has(&out, "* OK [UIDVALIDITY 777]"));
	assert_true(has(&out, "* OK [UIDNEXT 10]"));
	assert_true(has(&out, "* OK [HIGHESTMODSEQ 9]"));
	assert_int_equal(v.count, 3);
	assert_int_equal(imap_view_recent(&v), 1);
	/* read-only: nothing is permanent (RFC 3501 §7.1) */
	buf_reset(&out);
	assert_int_equal(imap_view_open(&v, &src, 1, &out), 0);
	assert_true(has(&out, "[PERMANENTFLAGS ()]"));
	buf_free(&out);
	imap_view_free(&v);
}

/* The imaptest stress failure: a session told of 36 messages must never
 * get "* 38 EXPUNGE"; with 2 new messages and one expunged, EXPUNGE
 * names a number it knows and EXISTS follows. */
static void test_expunge_numbers_follow_the_view(void **state)
{
	struct store st = { .n = 0 };
	struct imap_view_src src;
	struct imap_view v;
	struct buf out;
	uint32_t u;

	for (u = 1; u <= 36; u++)
		store_add(&st, u, 0, 0, u);
	src = src_of(&st);
	imap_view_init(&v);
	buf_init(&out, 0);
	assert_int_equal(imap_view_open(&v, &src, 0, &out), 0);
	store_add(&st, 37, 0, 0, 40);
	store_add(&st, 38, 0, 0, 41);
	store_del(&st, 30);
	store_del(&st, 37);
	buf_reset(&out);
	src = src_of(&st);
	assert_int_equal(imap_view_sync(&v, &src, IMAP_VIEW_EXPUNGE, &out), 0);
	assert_string_equal(out.p, "* 30 EXPUNGE\r\n* 36 EXISTS\r\n"
			    "* 0 RECENT\r\n");
	assert_int_equal(v.count, 36);
	assert_int_equal(v.msgs[35].uid, 38);
	buf_free(&out);
	imap_view_free(&v);
}

/* RFC 3501 §7.4.1: no EXPUNGE during FETCH/STORE/SEARCH: the message
 * stays (gone) and the numbers do not move; EXISTS may still come. */
static void test_no_expunge_keeps_numbers(void **state)
{
	struct store st = { .n = 0 };
	struct imap_view_src src;
	struct imap_view v;
	struct buf out;
	size_t *idx, n;

	store_add(&st, 1, 0, 0, 1);
	store_add(&st, 2, 0, 0, 2);
	store_add(&st, 3, 0, 0, 3);
	src = src_of(&st);
	imap_view_init(&v);
	buf_init(&out, 0);
	assert_int_equal(imap_view_open(&v, &src, 0, &out), 0);
	store_del(&st, 1);
	store_del(&st, 2);
	store_add(&st, 7, 0, 0, 9);
	src = src_of(&st);
	buf_reset(&out);
	assert_int_equal(imap_view_sync(&v, &src, 0, &out), 0);
	assert_false(has(&out, "EXPUNGE"));
	assert_true(has(&out, "* 4 EXISTS\r\n"));
	assert_int_equal(v.count, 4);
	assert_true(v.msgs[0].gone && v.msgs[1].gone && !v.msgs[2].gone);
	/* sequence number 3 is still UID 3 */
	assert_int_equal(imap_view_seqset(&v, "3", 0, &idx, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v.msgs[idx[0]].uid, 3);
	free(idx);
	/* later, when allowed: highest first, each valid when read */
	buf_reset(&out);
	assert_int_equal(imap_view_sync(&v, &src, IMAP_VIEW_EXPUNGE, &out), 0);
	assert_string_equal(out.p, "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n");
	assert_int_equal(v.count, 2);
	buf_free(&out);
	imap_view_free(&v);
}

/* RFC 3501 §7.2.6: FLAGS announces a keyword before a FETCH uses it. */
static void test_new_keyword_announced_first(void **state)
{
	struct store st = { .n = 0 };
	struct imap_view_src src;
	struct imap_view v;
	struct buf out;

	store_add(&st, 5, 0, 0, 1);
	src = src_of(&st);
	imap_view_init(&v);
	buf_init(&out, 0);
	assert_int_equal(imap_view_open(&v, &src, 0, &out), 0);
	st.kw[0] = "$label1";
	st.m[0].keywords = 1;
	st.m[0].flags = MSTORE_F_FLAGGED;
	st.m[0].modseq = 4;
	src = src_of(&st);
	buf_reset(&out);
	assert_int_equal(imap_view_sync(&v, &src, IMAP_VIEW_EXPUNGE, &out), 0);
	assert_true(at(&out, "* FLAGS (") <
		    at(&out, "* 1 FETCH (UID 5 FLAGS (\\Flagged $label1))"));
	assert_true(has(&out, "$label1 \\*)]"));
	/* told once: nothing more */
	buf_reset(&out);
	assert_int_equal(imap_view_sync(&v, &src, IMAP_VIEW_EXPUNGE, &out), 0);
	assert_int_equal(out.len, 0);
	buf_free(&out);
	imap_view_free(&v);
}

/* RFC 7162: MODSEQ in unsolicited FETCH once CONDSTORE is on; VANISHED
 * instead of EXPUNGE under QRESYNC. */
static void test_condstore_and_qresync(void **state)
{
	struct store st = { .n = 0 };
	struct imap_view_src src;
	struct imap_view v;
	struct buf out;

	store_add(&st, 1, 0, 0, 1);
	store_add(&st, 2, 0, 0, 2);
	store_add(&st, 3, 0, 0, 3);
	store_add(&st, 4, 0, 0, 4);
	src = src_of(&st);
	imap_view_init(&v);
	v.opts = IMAP_VIEW_CONDSTORE | IMAP_VIEW_QRESYNC;
	buf_init(&out, 0);
	assert_int_equal(imap_view_open(&v, &src, 0, &out), 0);
	st.m[3].flags = MSTORE_F_SEEN;
	st.m[3].modseq = 8;
	store_del(&st, 2);
	store_del(&st, 3);
	src = src_of(&st);
	buf_reset(&out);
	assert_int_equal(imap_view_sync(&v, &src, IMAP_VIEW_EXPUNGE, &out), 0);
	assert_true(has(&out, "* VANISHED 2:3\r\n"));
	assert_false(has(&out, "EXPUNGE"));
	assert_true(has(&out, "* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (8))"));
	/* SELECT ... QRESYNC (777 4): what changed after 4, and what is
	 * gone of the UIDs the client knew */
	buf_reset(&out);
	assert_int_equal(imap_view_qresync(&v, 4, NULL, st.kw, &out), 0);
	assert_string_equal(out.p, "* VANISHED (EARLIER) 2:3\r\n"
			    "* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (8))\r\n");
	buf_reset(&out);
	assert_int_equal(imap_view_qresync(&v, 8, "1:3", st.kw, &out), 0);
	assert_string_equal(out.p, "* VANISHED (EARLIER) 2:3\r\n");
	buf_free(&out);
	imap_view_free(&v);
}

/* RFC 3501 §6.4.8, §9: '*' is the last message; a UID range names only
 * the UIDs in it, however large its end. */
static void test_sets(void **state)
{
	struct store st = { .n = 0 };
	struct imap_view_src src;
	struct imap_view v;
	struct buf out;
	size_t *idx, n;

	store_add(&st, 3, 0, 0, 1);
	store_add(&st, 5, 0, 0, 1);
	store_add(&st, 6, 0, 0, 1);
	src = src_of(&st);
	imap_view_init(&v);
	buf_init(&out, 0);
	assert_int_equal(imap_view_open(&v, &src, 0, &out), 0);
	assert_int_equal(imap_view_seqset(&v, "7:4294967295",
					  IMAP_VIEW_SET_UID, &idx, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(imap_view_seqset(&v, "7:*", IMAP_VIEW_SET_UID, &idx,
					  &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v.msgs[idx[0]].uid, 6);
	free(idx);
	assert_int_equal(imap_view_seqset(&v, "4:5,1:3,5", IMAP_VIEW_SET_UID,
					  &idx, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(idx[0], 0);
	assert_int_equal(idx[1], 1);
	free(idx);
	assert_int_equal(imap_view_seqset(&v, "2:*", 0, &idx, &n), 0);
	assert_int_equal(n, 2);
	free(idx);
	assert_int_equal(imap_view_seqset(&v, "4", 0, &idx, &n), -1);
	assert_int_equal(imap_view_seqset(&v, "2,1000",
					  IMAP_VIEW_SET_LENIENT, &idx, &n), 0);
	assert_int_equal(n, 1);
	free(idx);
	assert_int_equal(imap_view_seqset(&v, "1:x", 0, &idx, &n), -1);
	/* VANISHED of a UID FETCH: gaps below UIDNEXT only */
	buf_reset(&out);
	assert_int_equal(imap_view_put_vanished(&v, "1:4294967295", &out), 0);
	assert_string_equal(out.p, "* VANISHED (EARLIER) 1:2,4\r\n");
	buf_free(&out);
	imap_view_free(&v);
}

/* VANISHED (EARLIER) of wide, overlapping client ranges: written as
 * ranges, bounded by UIDNEXT and the view, never one UID at a time. */
static void test_vanished_wide_ranges(void **state)
{
	struct imap_view v;
	struct buf out;
	struct imap_view_msg m[2] = { { .uid = 4 }, { .uid = 900000 } };

	imap_view_init(&v);
	v.msgs = m;
	v.count = 2;
	v.uidnext = 1000001;
	buf_init(&out, 0);
	assert_int_equal(imap_view_put_vanished(&v, "1:4294967295", &out), 0);
	assert_string_equal(out.p, "* VANISHED (EARLIER) 1:3,5:899999,"
			    "900001:1000000\r\n");
	buf_reset(&out);
	assert_int_equal(imap_view_put_vanished(&v, "6:8,2:7,4,10", &out), 0);
	assert_string_equal(out.p, "* VANISHED (EARLIER) 2:3,5:8,10\r\n");
	buf_reset(&out);
	assert_int_equal(imap_view_put_vanished(&v, "4,900000", &out), 0);
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

/* A change the session made and reported itself is not reported again. */
static void test_told_not_repeated(void **state)
{
	struct store st = { .n = 0 };
	struct imap_view_src src;
	struct imap_view v;
	struct buf out;

	store_add(&st, 1, 0, 0, 1);
	src = src_of(&st);
	imap_view_init(&v);
	buf_init(&out, 0);
	assert_int_equal(imap_view_open(&v, &src, 0, &out), 0);
	st.m[0].flags = MSTORE_F_ANSWERED;
	st.m[0].modseq = 2;
	imap_view_told(&v, 0, MSTORE_F_ANSWERED, 0, 2);
	src = src_of(&st);
	buf_reset(&out);
	assert_int_equal(imap_view_sync(&v, &src, IMAP_VIEW_EXPUNGE, &out), 0);
	assert_int_equal(out.len, 0);
	assert_int_equal(imap_view_put_fetch(&v, 0, st.kw, 1, 1, &out), 0);
	assert_string_equal(out.p, "* 1 FETCH (UID 1 FLAGS (\\Answered) "
			    "MODSEQ (2))\r\n");
	buf_free(&out);
	imap_view_free(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_responses),
		cmocka_unit_test(test_expunge_numbers_follow_the_view),
		cmocka_unit_test(test_no_expunge_keeps_numbers),
		cmocka_unit_test(test_new_keyword_announced_first),
		cmocka_unit_test(test_condstore_and_qresync),
		cmocka_unit_test(test_sets),
		cmocka_unit_test(test_vanished_wide_ranges),
		cmocka_unit_test(test_told_not_repeated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
