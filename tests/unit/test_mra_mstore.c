/* Unit tests for mra/mstore: persistent UIDs, flags and keywords, several
 * processes appending at once, index crash recovery, folder names that
 * try to leave the mailbox, sync change reports, copy, list, IDLE watch,
 * and the quota COPY charges (issue #9). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>
#include "maildir.h"
#include "quota.h"
#include "../../mra/mstore.h"

static char test_root[256];

static int test_setup(void **st)
{
	char tmpl[] = "/tmp/mstore-test-XXXXXX";

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

static void test_uid_stable(void **st)
{
	struct mstore *ms;
	struct mstore_folder *f;
	struct err e;
	uint32_t uv;
	size_t i;

	ms = mstore_open(test_root, &e);
	assert_non_null(ms);
	for (i = 0; i < 3; i++)
		test_deliver(test_root, "Subject: hi\r\n\r\nbody\r\n");
	f = mstore_folder_open(ms, "inbox", 0, &e);
	assert_non_null(f);
	assert_int_equal(f->count, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(f->msgs[i].uid, i + 1);
		assert_true(f->msgs[i].flags & MSTORE_F_RECENT);
		assert_int_equal(f->msgs[i].size, 21);
		assert_int_equal(f->msgs[i].vsize, 21);
	}
	assert_int_equal(f->uidnext, 4);
	uv = f->uidvalidity;
	assert_true(uv != 0);
	mstore_folder_free(f);

	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(f);
	assert_int_equal(f->count, 3);
	assert_int_equal(f->uidvalidity, uv);
	assert_int_equal(f->msgs[2].uid, 3);
	assert_false(f->msgs[0].flags & MSTORE_F_RECENT);  /* taken before */
	mstore_folder_free(f);
	mstore_free(ms);
}

static void test_flags_keywords(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f;
	struct err e;
	int k;

	test_deliver(test_root, "Subject: a\n\nbody\n");
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(f);
	/* LF-only file: vsize counts the CRs IMAP adds */
	assert_int_equal(f->msgs[0].size, 17);
	assert_int_equal(f->msgs[0].vsize, 20);
	k = mstore_keyword(f, "$Forwarded", 1, &e);
	assert_int_equal(k, 0);
	assert_int_equal(mstore_keyword(f, "$forwarded", 0, &e), 0);
	assert_int_equal(mstore_keyword(f, "bad word", 1, &e), -1);
	assert_int_equal(mstore_set_flags(f, 0, MSTORE_FLAGS_REPLACE,
	                                  MSTORE_F_SEEN | MSTORE_F_FLAGGED,
	                                  1u << k, &e), 0);
	assert_non_null(strstr(f->msgs[0].name, ":2,FSa"));
	{
		struct buf b;

		buf_init(&b, 0);
		assert_int_equal(mstore_msg_read(f, 0, 1, &b, &e), 0);
		assert_string_equal(b.p, "Subject: a\r\n\r\nbody\r\n");
		assert_int_equal(b.len, f->msgs[0].vsize);
		buf_free(&b);
	}
	mstore_folder_free(f);
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_int_equal(f->msgs[0].flags, MSTORE_F_SEEN | MSTORE_F_FLAGGED);
	assert_int_equal(f->msgs[0].keywords, 1);
	assert_string_equal(f->keywords[0], "$Forwarded");
	mstore_folder_free(f);
	mstore_free(ms);
}

static void test_concurrent_append(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f;
	struct err e;
	pid_t kids[4];
	int i, status;
	size_t j;

	for (i = 0; i < 4; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			int n;

			for (n = 0; n < 25; n++) {
				uint32_t uid, uv;
				char msg[64];

				snprintf(msg, sizeof(msg), "Subject: %d/%d\r\n\r\nx\r\n", i, n);
				if (mstore_append(ms, "Drafts", msg, strlen(msg), MSTORE_F_DRAFT,
				                  NULL, 0, 0, &uid, &uv, &e) < 0 || uid == 0)
					_exit(1);
				/* a concurrent delivery into new/ too */
				if (n % 5 == 0) {
					char p[400];
					struct iovec iov = { msg, strlen(msg) };

					snprintf(p, sizeof(p), "%s/.Drafts", test_root);
					if (maildir_deliver(p, NULL, &iov, 1, "new", NULL,
					                    NULL, 0, &e) < 0)
						_exit(1);
					mstore_free(mstore_open(test_root, &e));
					{
						struct mstore_folder *g;

						g = mstore_folder_open(ms, "Drafts", 0, &e);
						if (g == NULL)
							_exit(1);
						mstore_folder_free(g);
					}
				}
			}
			_exit(0);
		}
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	f = mstore_folder_open(ms, "Drafts", 0, &e);
	assert_non_null(f);
	assert_int_equal(f->count, 120);
	for (j = 0; j < f->count; j++) {
		if (j > 0)
			assert_true(f->msgs[j].uid > f->msgs[j - 1].uid);
	}
	assert_int_equal(f->msgs[f->count - 1].uid, 120);
	assert_int_equal(f->uidnext, 121);
	mstore_folder_free(f);
	mstore_free(ms);
}

static void test_write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void test_crash_recovery(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f;
	char p[400], *data;
	struct err e;
	struct stat sb;
	uint32_t uv, uids[5];
	size_t i;
	int fd;

	for (i = 0; i < 5; i++) {
		assert_int_equal(mstore_append(ms, "Trash", "a\r\n", 3, 0, NULL, 0, 0,
		                               &uids[i], &uv, &e), 0);
		assert_int_equal(uids[i], i + 1);
	}
	/* torn index: cut the file inside the 4th message's line */
	snprintf(p, sizeof(p), "%s/.Trash/mstore-uidlist", test_root);
	assert_int_equal(stat(p, &sb), 0);
	data = malloc((size_t)sb.st_size);
	fd = open(p, O_RDONLY);
	assert_int_equal(read(fd, data, (size_t)sb.st_size), sb.st_size);
	close(fd);
	{
		char *l4 = data;

		for (i = 0; i < 4; i++)   /* header + 3 lines */
			l4 = strchr(l4, '\n') + 1;
		test_write_file(p, data, (size_t)(l4 - data) + 5);
	}
	free(data);
	/* a stale temp file from a crash mid-write is ignored */
	snprintf(p, sizeof(p), "%s/.Trash/mstore-uidlist.tmp", test_root);
	test_write_file(p, "garbage", 7);

	f = mstore_folder_open(ms, "Trash", 0, &e);
	assert_non_null(f);
	assert_int_equal(f->uidvalidity, uv);       /* header intact: kept */
	assert_int_equal(f->count, 5);
	assert_int_equal(f->msgs[0].uid, 1);        /* recoverable: same */
	assert_int_equal(f->msgs[2].uid, 3);
	assert_true(f->msgs[3].uid >= 6);           /* lost: new, never reused */
	assert_true(f->msgs[4].uid > f->msgs[3].uid);
	mstore_folder_free(f);

	/* index lost: everything gets UIDs again under a new UIDVALIDITY */
	snprintf(p, sizeof(p), "%s/.Trash/mstore-uidlist", test_root);
	assert_int_equal(unlink(p), 0);
	f = mstore_folder_open(ms, "Trash", 0, &e);
	assert_non_null(f);
	assert_true(f->uidvalidity != uv);
	assert_int_equal(f->count, 5);
	assert_int_equal(f->msgs[0].uid, 1);
	assert_int_equal(f->msgs[4].uid, 5);
	uv = f->uidvalidity;
	mstore_folder_free(f);

	/* garbage header: rebuilt as lost, never the same UIDVALIDITY even
	 * within the same second */
	test_write_file(p, "XX\n", 3);
	f = mstore_folder_open(ms, "Trash", 0, &e);
	assert_non_null(f);
	assert_int_equal(f->count, 5);
	assert_true(f->uidvalidity > uv);
	mstore_folder_free(f);
	mstore_free(ms);
}

static void test_names_refused(void **st)
{
	static const char *bad[] = { "", "..", "../x", "a/b", "/etc", ".hidden",
		"a..b", "x.", "a\x01", "~root", "a\\b", "A/../../x" };
	struct mstore *ms = mstore_open(test_root, NULL);
	char out[512];
	struct err e;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mstore_name_check(bad[i], &e), -1);
		assert_int_equal(mstore_create(ms, bad[i], &e), -1);
		assert_null(mstore_folder_open(ms, bad[i], 0, &e));
	}
	assert_int_equal(mstore_name_check("Archive.2024", &e), 0);
	assert_int_equal(mstore_user_root("/m", "../../etc@x", out, sizeof(out), &e), -1);
	assert_int_equal(mstore_user_root("/m", "a@..", out, sizeof(out), &e), -1);
	assert_int_equal(mstore_user_root("/m", "a/b@x", out, sizeof(out), &e), -1);
	assert_int_equal(mstore_user_root("/m", "noat", out, sizeof(out), &e), -1);
	assert_int_equal(mstore_user_root("/m", "Bob@Demo.Test", out, sizeof(out), &e), 0);
	assert_string_equal(out, "/m/demo.test/bob");
	mstore_free(ms);
}

static void test_sync_changes(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *a, *b;
	struct mstore_changes ch;
	struct err e;
	uint32_t uid;

	for (uid = 0; uid < 3; uid++)
		test_deliver(test_root, "Subject: s\r\n\r\nb\r\n");
	a = mstore_folder_open(ms, "INBOX", 0, &e);
	b = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_int_equal(a->count, 3);
	assert_int_equal(b->count, 3);
	/* b: flag message 1, delete and expunge message 2 */
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_REPLACE,
	                                  MSTORE_F_ANSWERED, 0, &e), 0);
	assert_int_equal(mstore_set_flags(b, 1, MSTORE_FLAGS_REPLACE,
	                                  MSTORE_F_DELETED, 0, &e), 0);
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(mstore_expunge(b, NULL, 0, 0, &ch, &e), 0);
	assert_int_equal(ch.nexpunged, 1);
	assert_int_equal(ch.expunged_seq[0], 2);
	mstore_changes_free(&ch);
	assert_int_equal(mstore_append(ms, "INBOX", "x\r\n", 3, 0, NULL, 0, 0, &uid,
	                               NULL, &e), 0);
	assert_int_equal(uid, 4);
	/* a sees all of it */
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(mstore_sync(a, &ch, &e), 0);
	assert_int_equal(ch.nexpunged, 1);
	assert_int_equal(ch.expunged_seq[0], 2);
	assert_int_equal(ch.expunged_uid[0], 2);
	assert_int_equal(ch.nnew, 1);
	assert_int_equal(ch.nchanged, 1);
	assert_int_equal(ch.changed_seq[0], 1);
	assert_int_equal(a->count, 3);
	assert_int_equal(a->msgs[0].flags & ~MSTORE_F_RECENT, MSTORE_F_ANSWERED);
	assert_int_equal(a->msgs[2].uid, 4);
	assert_int_equal(mstore_find_uid(a, 4), 2);
	assert_int_equal(mstore_find_uid(a, 2), -1);
	mstore_changes_free(&ch);
	/* a still reads message 1 although b renamed it */
	{
		struct buf buf;

		assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_REPLACE,
		                                  MSTORE_F_SEEN, 0, &e), 0);
		buf_init(&buf, 0);
		assert_int_equal(mstore_msg_read(a, 0, 0, &buf, &e), 0);
		assert_string_equal(buf.p, "Subject: s\r\n\r\nb\r\n");
		buf_free(&buf);
	}
	/* POP3-style forced expunge by uid */
	uid = 1;
	assert_int_equal(mstore_expunge(a, &uid, 1, 1, NULL, &e), 0);
	assert_int_equal(a->count, 2);
	mstore_folder_free(a);
	mstore_folder_free(b);
	mstore_free(ms);
}

static void test_copy_list_status(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder_info *l;
	struct mstore_folder *f;
	struct mstore_status s;
	size_t n, idx[2] = { 0, 1 }, i;
	uint32_t uids[2], uv;
	struct err e;
	int seen = 0;

	test_deliver(test_root, "Subject: 1\r\n\r\nb\r\n");
	test_deliver(test_root, "Subject: 2\r\n\r\nb\r\n");
	assert_int_equal(mstore_status(ms, "INBOX", &s, &e), 0);
	assert_int_equal(s.messages, 2);
	assert_int_equal(s.recent, 2);
	assert_int_equal(s.unseen, 2);
	assert_int_equal(s.uidnext, 3);
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_int_equal(f->msgs[0].uid, 1);   /* STATUS assigned them already */
	mstore_set_flags(f, 0, MSTORE_FLAGS_REPLACE, MSTORE_F_SEEN, 0, &e);
	assert_int_equal(mstore_copy(f, idx, 2, "Junk", 0, uids, &uv, &e), 0);
	assert_int_equal(uids[0], 1);
	assert_int_equal(uids[1], 2);
	assert_int_equal(mstore_copy(f, idx, 1, "Nope", 0, uids, &uv, &e), -1);
	mstore_folder_free(f);
	assert_int_equal(mstore_status(ms, "Junk", &s, &e), 0);
	assert_int_equal(s.messages, 2);
	assert_int_equal(s.unseen, 1);
	assert_int_equal(s.uidvalidity, uv);

	assert_int_equal(mstore_create(ms, "Archive.2024", &e), 0);
	assert_int_equal(mstore_create(ms, "Archive.2024", &e), -1);
	assert_int_equal(mstore_list(ms, &l, &n, &e), 0);
	assert_string_equal(l[0].name, "INBOX");
	for (i = 0; i < n; i++) {
		if (strcmp(l[i].name, "Archive") == 0) {
			assert_true(l[i].attrs & MSTORE_LIST_NOSELECT);
			assert_true(l[i].attrs & MSTORE_LIST_HASCHILDREN);
			seen |= 1;
		}
		if (strcmp(l[i].name, "Trash") == 0) {
			assert_true(l[i].attrs & MSTORE_LIST_TRASH);
			assert_true(l[i].attrs & MSTORE_LIST_SUBSCRIBED);
			seen |= 2;
		}
		if (strcmp(l[i].name, "Archive.2024") == 0) {
			assert_true(l[i].attrs & MSTORE_LIST_HASNOCHILDREN);
			seen |= 4;
		}
	}
	assert_int_equal(seen, 7);
	mstore_list_free(l, n);
	assert_int_equal(mstore_rename(ms, "Archive", "Old", &e), -1); /* noselect */
	assert_int_equal(mstore_rename(ms, "Archive.2024", "Old.2024", &e), 0);
	assert_int_equal(mstore_status(ms, "Old.2024", &s, &e), 0);
	assert_int_equal(mstore_delete(ms, "Old.2024", &e), 0);
	assert_int_equal(mstore_status(ms, "Old.2024", &s, &e), -1);
	assert_int_equal(mstore_delete(ms, "INBOX", &e), -1);
	assert_int_equal(mstore_subscribe(ms, "Gone", 1, &e), 0);
	assert_int_equal(mstore_list(ms, &l, &n, &e), 0);
	assert_true(l[n - 1].attrs & MSTORE_LIST_NONEXISTENT);
	mstore_list_free(l, n);
	mstore_free(ms);
}

/* A quiet folder is not rescanned, and any change still shows. */
static void test_sync_quiet(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *a, *b;
	struct mstore_changes ch;
	struct err e;

	test_deliver(test_root, "Subject: q\r\n\r\nb\r\n");
	a = mstore_folder_open(ms, "INBOX", 0, &e);
	b = mstore_folder_open(ms, "INBOX", 0, &e);
	sleep(3);
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(mstore_sync(a, &ch, &e), 0);   /* full scan, settles */
	assert_int_equal(mstore_sync(a, &ch, &e), 0);
	assert_true(a->stamp_ok);
	assert_int_equal(ch.nnew + ch.nexpunged + ch.nchanged, 0);
	assert_int_equal(mstore_set_flags(b, 0, MSTORE_FLAGS_REPLACE,
	                                  MSTORE_F_FLAGGED, 0, &e), 0);
	assert_int_equal(mstore_sync(a, &ch, &e), 0);
	assert_int_equal(ch.nchanged, 1);
	mstore_changes_free(&ch);
	test_deliver(test_root, "Subject: q2\r\n\r\nb\r\n");
	assert_int_equal(mstore_sync(a, &ch, &e), 0);
	assert_int_equal(ch.nnew, 1);
	assert_int_equal(a->count, 2);
	mstore_changes_free(&ch);
	mstore_folder_free(a);
	mstore_folder_free(b);
	mstore_free(ms);
}

static int test_watch_fired;

static void test_watch_cb(void *arg)
{
	test_watch_fired++;
	event_base_loopbreak(arg);
}

static void test_watch_deliver(evutil_socket_t fd, short what, void *arg)
{
	test_deliver(test_root, "Subject: w\r\n\r\nb\r\n");
}

static void test_watch(void **st)
{
	struct event_base *base = event_base_new();
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_watch *w;
	struct event *ev;
	struct timeval soon = { 0, 100000 }, limit = { 2, 0 };
	struct err e;

	w = mstore_watch_new(base, ms, "INBOX", test_watch_cb, base, &e);
	assert_non_null(w);
	assert_null(mstore_watch_new(base, ms, "../x", test_watch_cb, base, &e));
	ev = evtimer_new(base, test_watch_deliver, NULL);
	evtimer_add(ev, &soon);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	assert_int_equal(test_watch_fired, 1);
	event_free(ev);
	mstore_watch_free(w);
	mstore_watch_free(NULL);
	mstore_free(ms);
	mstore_free(NULL);
	event_base_free(base);
}

/* Usage as the files say, and as maildirsize says. */
static void test_usage(long long *disk_r, long long *files_r, long long *md_r,
                       long long *mdfiles_r)
{
	char p[400];
	long long limit;
	struct err e;
	int fd;
	char text[8192];
	ssize_t r;

	*disk_r = *files_r = 0;
	snprintf(p, sizeof(p), "%s/maildirsize", test_root);
	rename(p, "/tmp/mstore-test-maildirsize.keep");
	assert_int_equal(quota_usage(test_root, disk_r, files_r, &e), 0);
	rename("/tmp/mstore-test-maildirsize.keep", p);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	r = read(fd, text, sizeof(text));
	close(fd);
	assert_true(r > 0);
	assert_true(quota_parse(text, (size_t)r, &limit, md_r, mdfiles_r) >= 2);
}

/* RFC 9208 §4.3: COPY is charged; over the limit it fails whole; a MOVE
 * inside the mailbox is not charged; maildirsize follows the files. */
static void test_copy_quota(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f;
	struct mstore_status s;
	size_t idx[3] = { 0, 1, 2 };
	uint32_t uids[3], uv;
	long long disk, files, md, mdfiles;
	struct err e;
	int i, ok = 0, over = 0;

	for (i = 0; i < 3; i++)
		test_deliver(test_root, "Subject: q\r\n\r\n0123456789012345678901234567890123456789\r\n");
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(f);
	assert_int_equal(f->count, 3);
	/* room for the INBOX and two more copies of it */
	mstore_set_quota(ms, 3 * 3 * f->msgs[0].size + 10);
	for (i = 0; i < 5; i++) {
		int rc = mstore_copy(f, idx, 3, "Junk", 0, uids, &uv, &e);

		if (rc == 0)
			ok++;
		else if (rc == MSTORE_OVERQUOTA)
			over++;
		else
			fail_msg("copy: %s", e.msg);
	}
	assert_int_equal(ok, 2);
	assert_int_equal(over, 3);
	assert_int_equal(mstore_status(ms, "Junk", &s, &e), 0);
	assert_int_equal(s.messages, 6);
	test_usage(&disk, &files, &md, &mdfiles);
	assert_int_equal(files, 9);
	assert_true(disk <= (long long)(3 * 3 * f->msgs[0].size + 10));
	assert_int_equal(md, disk);
	assert_int_equal(mdfiles, files);
	/* at the limit, MOVE still works and changes nothing */
	assert_int_equal(mstore_copy(f, idx, 1, "Trash", MSTORE_COPY_MOVE, uids,
	                             &uv, &e), 0);
	assert_int_equal(mstore_expunge(f, &f->msgs[0].uid, 1, 1, NULL, &e), 0);
	test_usage(&disk, &files, &md, &mdfiles);
	assert_int_equal(files, 9);
	assert_int_equal(md, disk);
	assert_int_equal(mdfiles, 9);
	mstore_folder_free(f);
	mstore_free(ms);
}

/* Without a user map, maildirsize's own definition is the limit. */
static void test_copy_quota_from_maildirsize(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f;
	size_t idx[1] = { 0 };
	char p[400];
	struct err e;
	FILE *fp;

	test_deliver(test_root, "Subject: m\r\n\r\n0123456789012345678901234567890123456789\r\n");
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(f);
	snprintf(p, sizeof(p), "%s/maildirsize", test_root);
	fp = fopen(p, "w");
	assert_non_null(fp);
	fprintf(fp, "%lluS\n%llu 1\n", (unsigned long long)f->msgs[0].size + 5,
	        (unsigned long long)f->msgs[0].size);
	fclose(fp);
	assert_int_equal(mstore_copy(f, idx, 1, "Junk", 0, NULL, NULL, &e),
	                 MSTORE_OVERQUOTA);
	mstore_set_quota(ms, 3 * f->msgs[0].size);
	assert_int_equal(mstore_copy(f, idx, 1, "Junk", 0, NULL, NULL, &e), 0);
	mstore_folder_free(f);
	mstore_free(ms);
}

/* Processes copying at once: the check and the charge are one step under
 * quota.lock, so together they never pass the limit. */
static void test_copy_quota_concurrent(void **st)
{
	struct mstore *ms = mstore_open(test_root, NULL);
	struct mstore_folder *f;
	long long disk, files, md, mdfiles;
	uint64_t limit;
	struct err e;
	pid_t kids[4];
	int i, status;

	for (i = 0; i < 2; i++)
		test_deliver(test_root, "Subject: c\r\n\r\n0123456789012345678901234567890123456789\r\n");
	f = mstore_folder_open(ms, "INBOX", 0, &e);
	assert_non_null(f);
	limit = 2 * f->msgs[0].size * 10 + 1;
	mstore_set_quota(ms, limit);
	for (i = 0; i < 4; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			size_t idx[2] = { 0, 1 };
			int n, rc;

			for (n = 0; n < 10; n++) {
				rc = mstore_copy(f, idx, 2, "Trash", 0, NULL, NULL, &e);
				if (rc < 0 && rc != MSTORE_OVERQUOTA)
					_exit(1);
			}
			_exit(0);
		}
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	test_usage(&disk, &files, &md, &mdfiles);
	assert_int_equal(files, 20);   /* 2 + 9 copies of 2: the 10th is over */
	assert_true(disk <= (long long)limit);
	assert_int_equal(md, disk);
	assert_int_equal(mdfiles, files);
	mstore_folder_free(f);
	mstore_free(ms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_uid_stable, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_flags_keywords, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_append, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_crash_recovery, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_names_refused, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_sync_changes, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_copy_list_status, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_sync_quiet, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_watch, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_copy_quota, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_copy_quota_from_maildirsize, test_setup,
		                                test_teardown),
		cmocka_unit_test_setup_teardown(test_copy_quota_concurrent, test_setup,
		                                test_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
