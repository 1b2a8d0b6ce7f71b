/* Tests for log: recognising the journal's stderr stream (JOURNAL_STREAM),
 * so a line is not written to both the journal and syslog under systemd,
 * and the sinks chosen from it (stderr redirected to a file here). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "log.h"

static void test_stream_matches(void **st)
{
	assert_int_equal(log_journal_stream_is("8:123456", 8, 123456), 1);
	assert_int_equal(log_journal_stream_is("0:1", 0, 1), 1);
	assert_int_equal(log_journal_stream_is(
		"18446744073709551615:42", 18446744073709551615ULL, 42), 1);
}

static void test_stream_other_file(void **st)
{
	assert_int_equal(log_journal_stream_is("8:123456", 8, 123457), 0);
	assert_int_equal(log_journal_stream_is("8:123456", 9, 123456), 0);
}

static void test_stream_malformed(void **st)
{
	assert_int_equal(log_journal_stream_is(NULL, 8, 1), 0);
	assert_int_equal(log_journal_stream_is("", 0, 0), 0);
	assert_int_equal(log_journal_stream_is("8", 8, 0), 0);
	assert_int_equal(log_journal_stream_is("8:", 8, 0), 0);
	assert_int_equal(log_journal_stream_is(":1", 0, 1), 0);
	assert_int_equal(log_journal_stream_is("8:1x", 8, 1), 0);
	assert_int_equal(log_journal_stream_is("8:1:2", 8, 1), 0);
	assert_int_equal(log_journal_stream_is("-8:1", 8, 1), 0);
	assert_int_equal(log_journal_stream_is(" 8:1", 8, 1), 0);
	/* one past 2^64-1 overflows: not a match for anything */
	assert_int_equal(log_journal_stream_is(
		"18446744073709551616:1", 18446744073709551615ULL, 1), 0);
}

/* Point stderr at a fresh file, log one line with JOURNAL_STREAM set to
 * env (NULL: unset, "SELF": the file's own dev:ino), return what stderr
 * got. */
static char *test_capture_line(const char *env, int to_syslog,
				const char *text)
{
	static char out[4096];
	char path[] = "/tmp/test_log_XXXXXX";
	char self[64];
	struct stat sb;
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	fflush(stderr);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	if (env == NULL) {
		unsetenv("JOURNAL_STREAM");
	} else {
		if (strcmp(env, "SELF") == 0) {
			snprintf(self, sizeof(self), "%llu:%llu",
				 (unsigned long long)sb.st_dev,
				 (unsigned long long)sb.st_ino);
			env = self;
		}
		setenv("JOURNAL_STREAM", env, 1);
	}
	log_open("test_log", to_syslog, 1);
	log_info("%s", text);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	unsetenv("JOURNAL_STREAM");
	n = pread(fd, out, sizeof(out) - 1, 0);
	assert_true(n >= 0);
	out[n] = '\0';
	close(fd);
	unlink(path);
	return out;
}

static char *test_capture(const char *env, int to_syslog)
{
	return test_capture_line(env, to_syslog, "one line");
}

static void test_journal_gets_syslog_copy_only(void **st)
{
	/* stderr is the journal and syslog is on: stderr stays silent */
	assert_string_equal(test_capture("SELF", 1), "");
}

static void test_journal_without_syslog_keeps_stderr(void **st)
{
	assert_non_null(strstr(test_capture("SELF", 0), "test_log["));
	assert_non_null(strstr(test_capture("SELF", 0), "]: one line\n"));
}

static void test_not_journal_keeps_stderr(void **st)
{
	/* no systemd, or JOURNAL_STREAM inherited but stderr elsewhere */
	assert_non_null(strstr(test_capture(NULL, 1), "]: one line\n"));
	assert_non_null(strstr(test_capture("1:2", 1), "]: one line\n"));
}

/* "Mon dd hh:mm:ss ident[pid]: text\n", one line whatever the text holds */
static void test_line_shape(void **st)
{
	char want[64];
	const char *out = test_capture_line(NULL, 0, "a\r\nforged: line");
	const char *p;

	snprintf(want, sizeof(want), " test_log[%ld]: a  forged: line\n",
		 (long)getpid());
	p = strstr(out, want);
	assert_non_null(p);
	assert_int_equal(p - out, 15);          /* "Dec  3 17:19:40" */
	assert_string_equal(p + strlen(want), "");
	assert_int_equal(out[3], ' ');
	assert_int_equal(out[9], ':');
	assert_int_equal(out[12], ':');
}

/* A line longer than the buffer is cut, still ends with one newline. */
static void test_long_line_cut(void **st)
{
	static char big[5000];
	const char *out;

	memset(big, 'x', sizeof(big) - 1);
	out = test_capture_line(NULL, 0, big);
	assert_true(strlen(out) > 2000 && strlen(out) < 2300);
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	assert_int_equal(out[strlen(out) - 2], 'x');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_matches),
		cmocka_unit_test(test_stream_other_file),
		cmocka_unit_test(test_stream_malformed),
		cmocka_unit_test(test_journal_gets_syslog_copy_only),
		cmocka_unit_test(test_journal_without_syslog_keeps_stderr),
		cmocka_unit_test(test_not_journal_keeps_stderr),
		cmocka_unit_test(test_line_shape),
		cmocka_unit_test(test_long_line_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
