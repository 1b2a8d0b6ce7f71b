/* Unit tests for mra/mstore's session facts: \Recent claimed by exactly one
 * read-write open (RFC 3501 §2.3.2), CONDSTORE mod-sequences (RFC 7162),
 * the M1 -> M2 index upgrade, flag changes from several folder objects
 * and processes that must not overwrite each other, and UIDVALIDITY after
 * DELETE + CREATE (RFC 3501 §2.3.1.1). Real temporary Maildirs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include "maildir.h"
#include "../../mra/mstore.h"

static char test_root[256];

static int test_setup(void **st)
{
	char tmpl[] = "/tmp/mstore-sync-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	snprintf(test_root, sizeof(test_root), "%s/demo.test/bob", tmpl);
	return 0;
}

static int test_teardown(void **st)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(test_root) - 14),
	         test_root);
	return system(cmd) == 0 ? 0 : -1;
}

/* Deliver as submission does: into new/. */
static void test_deliver(const char *folder, const char *text)
{
	struct iovec iov = { (void *)text, strlen(text) };
	struct err e;

	assert_int_equal(maildir_deliver(folder, NULL, &iov, 1, "new", NULL, NULL,
	                                 0, &e), 0);
}

static size_t test_nrecent(const struct mstore_folder *f)
{
	size_t i, n = 0;

	for (i = 0; i < f->count; i++)
		if (f->msgs[i].flags & MSTORE_F_RECENT)
			n++;
	return n;
}

/* The first line of folder's index file. */
static void test_index_header(const char *folder, char *out, size_t n)
{
	char p[512];
	FILE *fp;

	snprintf(p, sizeof(p), "%s/mstore-uidlist", folder);
	fp = fopen(p, "r");
	assert_non_null(fp);
	assert_non_null(fgets(out, (int)n, fp));
	fclose(fp);
}

/* The current file name of the message with base name prefix base in
 * folder/cur (the flags as other Maildir readers see them). */
static void test_cur_name(const char *folder, const char *base, char *out,
                          size_t n)
{
	char p[512];
	struct dirent *de;
	DIR *d;
	int found = 0;

	snprintf(p, sizeof(p), "%s/cur", folder);
	d = opendir(p);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, base, strlen(base)) == 0) {
			snprintf(out, n, "%s", de->d_name);
			found++;
		}
	closedir(d);
	assert_int_equal(found, 1);
}

static void test_base(const struct mstore_msg *m, char *out, size_t n)
{
	snprintf(out, n, "%.*s", (int)strcspn(m->name, ":"), m->name);
}

/* Delivered to new/: the first read-write open claims them; EXAMINE sees
 * them without claiming; a later delivery goes to the next one to sync. */
static void test_recent_delivered(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *ro, *a, *b;
	struct mstore_changes ch;
	struct mstore_status s;
	struct err e;

	test_deliver(test_root, "Subject: 1\r\n\r\nb\r\n");
	test_deliver(test_root, "Subject: 2\r\n\r\nb\r\n");
	assert_int_equal(mstore_status(ms, "INBOX", &s, &e), 0);
	assert_int_equal(s.recent, 2);
	ro = mstore_folder_open(ms, "INBOX", 1, &e);
	assert_non_null(ro);
	assert_int_equal(ro->count, 2);
	assert_int_equal(test_nrecent(ro), 2);
	/* EXAMINE claimed nothing */
	assert_int_equal(mstore_status(ms, "INBOX", &s, &e), 0);
	assert_int_equal(s.recent, 2);
	a = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(a);
	assert_int_equal(test_nrecent(a), 2);
	assert_int_equal(mstore_status(ms, "INBOX", &s, &e), 0);
	assert_int_equal(s.recent, 0);
	assert_int_equal(s.messages, 2);
	b = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(b);
	assert_int_equal(b->count, 2);
	assert_int_equal(test_nrecent(b), 0);

	/* a third message: b syncs first and takes it; a keeps its own two */
	test_deliver(test_root, "Subject: 3\r\n\r\nb\r\n");
	assert_int_equal(mstore_status(ms, "INBOX", &s, &e), 0);
	assert_int_equal(s.recent, 1);
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(mstore_sync(b, &ch, &e), 0);
	assert_int_equal(ch.nnew, 1);
	mstore_changes_free(&ch);
	assert_int_equal(b->count, 3);
	assert_int_equal(test_nrecent(b), 1);
	assert_true(b->msgs[2].flags & MSTORE_F_RECENT);
	assert_int_equal(mstore_sync(a, NULL, &e), 0);
	assert_int_equal(a->count, 3);
	assert_int_equal(test_nrecent(a), 2);
	assert_false(a->msgs[2].flags & MSTORE_F_RECENT);
	/* b claimed the third before the readonly object synced */
	assert_int_equal(mstore_sync(ro, NULL, &e), 0);
	assert_int_equal(ro->count, 3);
	assert_int_equal(test_nrecent(ro), 2);   /* kept for its life */
	assert_false(ro->msgs[2].flags & MSTORE_F_RECENT);
	/* set_flags keeps the session's \Recent */
	assert_int_equal(mstore_set_flags(a, 0, MSTORE_FLAGS_ADD, MSTORE_F_SEEN, 0,
	                                  &e), 0);
	assert_int_equal(a->msgs[0].flags, MSTORE_F_SEEN | MSTORE_F_RECENT);
	assert_int_equal(mstore_sync(a, NULL, &e), 0);
	assert_int_equal(a->msgs[0].flags, MSTORE_F_SEEN | MSTORE_F_RECENT);
	mstore_folder_free(ro);
	mstore_folder_free(a);
	mstore_folder_free(b);
	assert_int_equal(mstore_status(ms, "INBOX", &s, &e), 0);
	assert_int_equal(s.recent, 0);
	mstore_free(ms);
}

/* APPEND, COPY and MOVE: recent to the first read-write open of the
 * destination only. */
static void test_recent_append_copy(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f, *g, *ro;
	struct mstore_status s;
	size_t idx[2] = { 0, 1 };
	uint32_t uids[2], uv, uid;
	struct err e;

	assert_int_equal(mstore_append(ms, "Drafts", "a\r\n", 3, MSTORE_F_SEEN,
	                               NULL, 0, 0, &uid, &uv, &e), 0);
	assert_int_equal(mstore_status(ms, "Drafts", &s, &e), 0);
	assert_int_equal(s.recent, 1);
	ro = mstore_folder_open(ms, "Drafts", 1, &e);
	assert_non_null(ro);
	assert_int_equal(test_nrecent(ro), 1);
	mstore_folder_free(ro);
	f = mstore_folder_open(ms, "Drafts", 0, &e);
	assert_non_null(f);
	assert_int_equal(f->count, 1);
	assert_int_equal(f->msgs[0].flags, MSTORE_F_SEEN | MSTORE_F_RECENT);
	/* APPEND into the folder this object has open: its next sync */
	assert_int_equal(mstore_append(ms, "Drafts", "b\r\n", 3, 0, NULL, 0, 0,
	                               &uid, &uv, &e), 0);
	assert_int_equal(mstore_sync(f, NULL, &e), 0);
	assert_int_equal(f->count, 2);
	assert_int_equal(test_nrecent(f), 2);
	g = mstore_folder_open(ms, "Drafts", 0, &e);
	assert_int_equal(test_nrecent(g), 0);
	mstore_folder_free(g);

	/* COPY into Junk */
	assert_int_equal(mstore_copy(f, idx, 2, "Junk", 0, uids, &uv, &e), 0);
	assert_int_equal(mstore_status(ms, "Junk", &s, &e), 0);
	assert_int_equal(s.recent, 2);
	ro = mstore_folder_open(ms, "Junk", 1, &e);
	assert_int_equal(test_nrecent(ro), 2);
	mstore_folder_free(ro);
	g = mstore_folder_open(ms, "Junk", 0, &e);
	assert_int_equal(g->count, 2);
	assert_int_equal(test_nrecent(g), 2);
	assert_int_equal(g->msgs[0].flags, MSTORE_F_SEEN | MSTORE_F_RECENT);
	mstore_folder_free(g);
	g = mstore_folder_open(ms, "Junk", 0, &e);
	assert_int_equal(test_nrecent(g), 0);
	mstore_folder_free(g);

	/* MOVE into Trash: copy + forced expunge */
	assert_int_equal(mstore_copy(f, idx, 2, "Trash", MSTORE_COPY_MOVE, uids,
	                             &uv, &e), 0);
	{
		uint32_t src[2] = { f->msgs[0].uid, f->msgs[1].uid };

		assert_int_equal(mstore_expunge(f, src, 2, 1, NULL, &e), 0);
	}
	assert_int_equal(f->count, 0);
	g = mstore_folder_open(ms, "Trash", 0, &e);
	assert_int_equal(g->count, 2);
	assert_int_equal(test_nrecent(g), 2);
	mstore_folder_free(g);
	assert_int_equal(mstore_status(ms, "Trash", &s, &e), 0);
	assert_int_equal(s.recent, 0);
	mstore_folder_free(f);
	mstore_free(ms);
}

/* RFC 7162: new messages, flag changes (another object's and our own, read
 * right after the next sync) and expunges raise the mod-sequences. */
static void test_modseq(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *a, *b;
	struct mstore_changes ch;
	struct mstore_status s;
	uint64_t h0, h1, m0;
	char hdr[200];
	struct err e;

	a = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(a);
	assert_int_equal(a->highestmodseq, 1);   /* starts at 1, empty */
	test_deliver(test_root, "Subject: 1\r\n\r\nb\r\n");
	test_deliver(test_root, "Subject: 2\r\n\r\nb\r\n");
	assert_int_equal(mstore_sync(a, NULL, &e), 0);
	assert_int_equal(a->count, 2);
	assert_true(a->msgs[0].modseq > 1);
	assert_true(a->msgs[1].modseq > a->msgs[0].modseq);
	assert_int_equal(a->highestmodseq, a->msgs[1].modseq);
	h0 = a->highestmodseq;
	m0 = a->msgs[0].modseq;
	b = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_int_equal(b->highestmodseq, h0);   /* no change, no bump */
	assert_int_equal(b->msgs[0].modseq, m0);

	/* another object's flag change */
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_ADD, MSTORE_F_FLAGGED,
	                                  0, &e), 0);
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(mstore_sync(a, &ch, &e), 0);
	assert_int_equal(ch.nchanged, 1);
	assert_int_equal(ch.changed_seq[0], 1);
	mstore_changes_free(&ch);
	assert_true(a->msgs[0].flags & MSTORE_F_FLAGGED);
	assert_true(a->msgs[0].modseq > h0);
	assert_int_equal(a->highestmodseq, a->msgs[0].modseq);
	assert_int_equal(a->msgs[1].modseq, h0);  /* untouched */
	h1 = a->highestmodseq;
	assert_int_equal(mstore_sync(b, NULL, &e), 0);
	assert_int_equal(b->msgs[0].modseq, a->msgs[0].modseq);  /* shared */

	/* our own change, read right after the next sync, in the same second */
	assert_int_equal(mstore_set_flags(a, 1, MSTORE_FLAGS_ADD, MSTORE_F_SEEN, 0,
	                                  &e), 0);
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(mstore_sync(a, &ch, &e), 0);
	assert_int_equal(ch.nchanged, 0);         /* we knew it already */
	mstore_changes_free(&ch);
	assert_true(a->msgs[1].modseq > h1);
	assert_int_equal(a->highestmodseq, a->msgs[1].modseq);
	h1 = a->highestmodseq;
	/* setting what is already there changes nothing */
	assert_int_equal(mstore_set_flags(a, 1, MSTORE_FLAGS_ADD, MSTORE_F_SEEN, 0,
	                                  &e), 0);
	assert_int_equal(mstore_sync(a, NULL, &e), 0);
	assert_int_equal(a->highestmodseq, h1);

	/* expunge: HIGHESTMODSEQ moves (RFC 7162 §3.1.2.1) */
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_ADD, MSTORE_F_DELETED,
	                                  0, &e), 0);
	assert_int_equal(mstore_expunge(b, NULL, 0, 0, NULL, &e), 0);
	assert_int_equal(b->count, 1);
	assert_true(b->highestmodseq > h1);
	assert_int_equal(mstore_sync(a, NULL, &e), 0);
	assert_int_equal(a->highestmodseq, b->highestmodseq);
	assert_int_equal(mstore_status(ms, "INBOX", &s, &e), 0);
	assert_int_equal(s.highestmodseq, a->highestmodseq);
	/* persisted in the M2 header */
	test_index_header(test_root, hdr, sizeof(hdr));
	{
		char want[200];

		snprintf(want, sizeof(want), "M2 %u %u %llu ", a->uidvalidity,
		         a->uidnext, (unsigned long long)a->highestmodseq);
		assert_memory_equal(hdr, want, strlen(want));
	}
	/* never goes down: STATUS and a fresh open read the same */
	mstore_folder_free(b);
	b = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_int_equal(b->highestmodseq, a->highestmodseq);
	assert_int_equal(b->msgs[0].modseq, a->msgs[0].modseq);
	mstore_folder_free(a);
	mstore_folder_free(b);
	mstore_free(ms);
}

/* The quiet-folder shortcut must not hide a session's own rename. */
static void test_modseq_quiet_folder(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *a;
	struct err e;
	uint64_t h;

	test_deliver(test_root, "Subject: q\r\n\r\nb\r\n");
	a = mstore_folder_open(ms, "INBOX", 0, &e);
	sleep(3);
	assert_int_equal(mstore_sync(a, NULL, &e), 0);   /* settles the stamps */
	assert_true(a->stamp_ok);
	h = a->highestmodseq;
	assert_int_equal(mstore_set_flags(a, 0, MSTORE_FLAGS_ADD, MSTORE_F_ANSWERED,
	                                  0, &e), 0);
	assert_int_equal(mstore_sync(a, NULL, &e), 0);
	assert_int_equal(a->highestmodseq, h + 1);
	assert_int_equal(a->msgs[0].modseq, h + 1);
	mstore_folder_free(a);
	mstore_free(ms);
}

static void test_write_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

/* An index from the previous version is read and upgraded in place. */
static void test_m1_upgrade(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f;
	struct mstore_status s;
	char p[512], hdr[200];
	struct err e;

	snprintf(p, sizeof(p), "%s/cur/1000.A.host:2,S", test_root);
	test_write_file(p, "a\r\n");
	snprintf(p, sizeof(p), "%s/cur/1001.B.host:2,FRa", test_root);
	test_write_file(p, "bb\r\n");
	snprintf(p, sizeof(p), "%s/cur/1002.C.host:2,", test_root);
	test_write_file(p, "ccc\r\n");   /* not in the old index */
	snprintf(p, sizeof(p), "%s/mstore-uidlist", test_root);
	test_write_file(p, "M1 777 13\nK 0 $Work\n"
	                   "5 3 3 1000 1000.A.host\n"
	                   "9 4 4 1001 1001.B.host\n");
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(f);
	assert_int_equal(f->uidvalidity, 777);
	assert_int_equal(f->count, 3);
	assert_int_equal(f->msgs[0].uid, 5);
	assert_int_equal(f->msgs[1].uid, 9);
	assert_int_equal(f->msgs[2].uid, 13);
	assert_int_equal(f->uidnext, 14);
	/* old messages: modseq 1, flags from the names, not recent */
	assert_int_equal(f->msgs[0].modseq, 1);
	assert_int_equal(f->msgs[1].modseq, 1);
	assert_int_equal(f->msgs[0].flags, MSTORE_F_SEEN);
	assert_int_equal(f->msgs[1].flags, MSTORE_F_FLAGGED | MSTORE_F_ANSWERED);
	assert_int_equal(f->msgs[1].keywords, 1);
	assert_string_equal(f->keywords[0], "$Work");
	/* the unknown file is new: next UID, a new modseq, recent */
	assert_int_equal(f->msgs[2].modseq, 2);
	assert_int_equal(f->highestmodseq, 2);
	assert_int_equal(test_nrecent(f), 1);
	assert_true(f->msgs[2].flags & MSTORE_F_RECENT);
	test_index_header(test_root, hdr, sizeof(hdr));
	assert_string_equal(hdr, "M2 777 14 2 14\n");
	mstore_folder_free(f);
	/* the upgraded file reads back the same, and keeps the flags seen */
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_int_equal(f->count, 3);
	assert_int_equal(f->msgs[1].modseq, 1);
	assert_int_equal(f->highestmodseq, 2);
	assert_int_equal(test_nrecent(f), 0);
	mstore_folder_free(f);
	assert_int_equal(mstore_status(ms, "INBOX", &s, &e), 0);
	assert_int_equal(s.highestmodseq, 2);
	assert_int_equal(s.uidvalidity, 777);
	mstore_free(ms);
}

/* imaptest's case: session 1 +FLAGS (\Answered), session 2 -FLAGS (\Seen)
 * from stale copies; both changes stay. */
static void test_flags_two_objects(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *a, *b;
	char base[300], name[400];
	struct err e;
	int k;

	assert_int_equal(mstore_append(ms, "INBOX", "x\r\n", 3, MSTORE_F_SEEN, NULL,
	                               0, 0, NULL, NULL, &e), 0);
	a = mstore_folder_open(ms, "INBOX", 0, &e);
	b = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_int_equal(a->msgs[0].flags & ~MSTORE_F_RECENT, MSTORE_F_SEEN);
	test_base(&a->msgs[0], base, sizeof(base));
	assert_int_equal(mstore_set_flags(a, 0, MSTORE_FLAGS_ADD, MSTORE_F_ANSWERED,
	                                  0, &e), 0);
	assert_int_equal(a->msgs[0].flags & ~MSTORE_F_RECENT,
	                 MSTORE_F_SEEN | MSTORE_F_ANSWERED);
	/* b still thinks the file is ":2,S" */
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_REMOVE, MSTORE_F_SEEN,
	                                  0, &e), 0);
	assert_int_equal(b->msgs[0].flags, MSTORE_F_ANSWERED);
	test_cur_name(test_root, base, name, sizeof(name));
	assert_non_null(strstr(name, ":2,R"));
	assert_int_equal(strlen(strstr(name, ":2,")), 4);
	assert_int_equal(mstore_sync(a, NULL, &e), 0);
	assert_int_equal(a->msgs[0].flags & ~MSTORE_F_RECENT, MSTORE_F_ANSWERED);

	/* the other way round: b adds \Seen back, then a (which knows
	 * ":2,R") removes \Answered */
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_ADD, MSTORE_F_SEEN, 0,
	                                  &e), 0);
	assert_int_equal(mstore_set_flags(a, 0, MSTORE_FLAGS_REMOVE,
	                                  MSTORE_F_ANSWERED, 0, &e), 0);
	assert_int_equal(a->msgs[0].flags & ~MSTORE_F_RECENT, MSTORE_F_SEEN);
	test_cur_name(test_root, base, name, sizeof(name));
	assert_string_equal(strstr(name, ":2,"), ":2,S");

	/* b's stale name ":2,RS" already "has" \Answered: that must not
	 * hide a's removal of it */
	assert_non_null(strstr(b->msgs[0].name, ":2,RS"));
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_ADD, MSTORE_F_ANSWERED,
	                                  0, &e), 0);
	test_cur_name(test_root, base, name, sizeof(name));
	assert_string_equal(strstr(name, ":2,"), ":2,RS");
	assert_int_equal(b->msgs[0].flags, MSTORE_F_SEEN | MSTORE_F_ANSWERED);

	/* keywords the same way */
	k = mstore_keyword(a, "$Work", 1, &e);
	assert_int_equal(k, 0);
	assert_int_equal(mstore_keyword(b, "$Work", 1, &e), 0);
	assert_int_equal(mstore_set_flags(a, 0, MSTORE_FLAGS_ADD, 0, 1u << k, &e), 0);
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_REMOVE, MSTORE_F_SEEN,
	                                  0, &e), 0);
	assert_int_equal(b->msgs[0].keywords, 1u << k);
	assert_int_equal(b->msgs[0].flags, MSTORE_F_ANSWERED);

	/* REPLACE sets exactly, but keeps $Forwarded's P letter */
	assert_int_equal(mstore_set_flags(a, 0, MSTORE_FLAGS_ADD, MSTORE_F_PASSED,
	                                  0, &e), 0);
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_REPLACE,
	                                  MSTORE_F_FLAGGED | MSTORE_F_RECENT, 0,
	                                  &e), 0);
	assert_int_equal(b->msgs[0].flags, MSTORE_F_FLAGGED | MSTORE_F_PASSED);
	assert_int_equal(b->msgs[0].keywords, 0);
	test_cur_name(test_root, base, name, sizeof(name));
	assert_string_equal(strstr(name, ":2,"), ":2,FP");

	/* gone: a permanent error */
	assert_int_equal(mstore_set_flags(a, 0, MSTORE_FLAGS_ADD, MSTORE_F_DELETED,
	                                  0, &e), 0);
	assert_int_equal(mstore_expunge(a, NULL, 0, 0, NULL, &e), 0);
	e.temp = 1;
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_ADD, MSTORE_F_SEEN, 0,
	                                  &e), -1);
	assert_int_equal(e.temp, 0);
	/* readonly objects change nothing */
	mstore_folder_free(b);
	b = mstore_folder_open(ms, "INBOX", 1, &e);
	assert_int_equal(mstore_append(ms, "INBOX", "y\r\n", 3, 0, NULL, 0, 0,
	                               NULL, NULL, &e), 0);
	assert_int_equal(mstore_sync(b, NULL, &e), 0);
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_ADD, MSTORE_F_SEEN, 0,
	                                  &e), -1);
	mstore_folder_free(a);
	mstore_folder_free(b);
	mstore_free(ms);
}

/* Four processes keep toggling their own flag on one message; when each
 * ends with its flag set, all four are there. */
static void test_flags_processes(void **st)
{
	static const unsigned bits[4] = { MSTORE_F_SEEN, MSTORE_F_ANSWERED,
	                                  MSTORE_F_FLAGGED, MSTORE_F_DRAFT };
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f;
	pid_t kids[4];
	struct err e;
	int i, status;

	assert_int_equal(mstore_append(ms, "INBOX", "x\r\n", 3, 0, NULL, 0, 0,
	                               NULL, NULL, &e), 0);
	for (i = 0; i < 4; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			struct mstore_folder *g = mstore_folder_open(ms, "INBOX", 0, &e);
			int n;

			if (g == NULL || g->count != 1)
				_exit(1);
			for (n = 0; n < 200; n++) {
				if (mstore_set_flags(g, 0, MSTORE_FLAGS_ADD, bits[i], 0,
				                     &e) < 0 ||
				    !(g->msgs[0].flags & bits[i]))
					_exit(2);
				if (n < 199 &&
				    (mstore_set_flags(g, 0, MSTORE_FLAGS_REMOVE, bits[i], 0,
				                      &e) < 0 ||
				     (g->msgs[0].flags & bits[i]))) {
					fprintf(stderr, "%d %d %s\n", i, n, e.msg);
					_exit(3);
				}
			}
			mstore_folder_free(g);
			_exit(0);
		}
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_int_equal(f->count, 1);
	assert_int_equal(f->msgs[0].flags & ~MSTORE_F_RECENT,
	                 MSTORE_F_SEEN | MSTORE_F_ANSWERED | MSTORE_F_FLAGGED |
	                 MSTORE_F_DRAFT);
	mstore_folder_free(f);
	mstore_free(ms);
}

/* imaptest "uidvalidity": STATUS, DELETE, CREATE, APPEND, STATUS shows a
 * different UIDVALIDITY, also within one second; a rebuilt INBOX too. */
static void test_uidvalidity_recreate(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_status s;
	struct mstore_folder *f;
	uint32_t uv[4], uid, auv;
	char p[512];
	struct err e;
	int i;

	for (i = 0; i < 4; i++) {
		assert_int_equal(mstore_create(ms, "Box", &e), 0);
		assert_int_equal(mstore_status(ms, "Box", &s, &e), 0);
		uv[i] = s.uidvalidity;
		assert_int_equal(mstore_append(ms, "Box", "x\r\n", 3, 0, NULL, 0, 0,
		                               &uid, &auv, &e), 0);
		assert_int_equal(uid, 1);
		assert_int_equal(auv, uv[i]);
		assert_int_equal(mstore_status(ms, "Box", &s, &e), 0);
		assert_int_equal(s.uidvalidity, uv[i]);
		assert_int_equal(s.highestmodseq, 2);
		if (i > 0)
			assert_true(uv[i] > uv[i - 1]);
		assert_int_equal(mstore_delete(ms, "Box", &e), 0);
	}
	/* another folder never reuses one either */
	assert_int_equal(mstore_create(ms, "Other", &e), 0);
	assert_int_equal(mstore_status(ms, "Other", &s, &e), 0);
	assert_true(s.uidvalidity > uv[3]);
	/* INBOX's index lost: rebuilt above everything given out */
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(f);
	uv[0] = f->uidvalidity;
	mstore_folder_free(f);
	snprintf(p, sizeof(p), "%s/mstore-uidlist", test_root);
	assert_int_equal(unlink(p), 0);
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(f);
	assert_true(f->uidvalidity > uv[0]);
	assert_true(f->uidvalidity > s.uidvalidity);
	mstore_folder_free(f);
	mstore_free(ms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_recent_delivered, test_setup,
		                                test_teardown),
		cmocka_unit_test_setup_teardown(test_recent_append_copy, test_setup,
		                                test_teardown),
		cmocka_unit_test_setup_teardown(test_modseq, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_modseq_quiet_folder, test_setup,
		                                test_teardown),
		cmocka_unit_test_setup_teardown(test_m1_upgrade, test_setup,
		                                test_teardown),
		cmocka_unit_test_setup_teardown(test_flags_two_objects, test_setup,
		                                test_teardown),
		cmocka_unit_test_setup_teardown(test_flags_processes, test_setup,
		                                test_teardown),
		cmocka_unit_test_setup_teardown(test_uidvalidity_recreate, test_setup,
		                                test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
