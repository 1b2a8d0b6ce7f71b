/* Unit tests for mra/pop3_cmd: line framing with limits, command and
 * argument parsing (RFC 1939 §3, RFC 2449 §4, RFC 5034), numbers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "../../mra/pop3_cmd.h"

static enum pop3_rc test_parse(const char *s, struct pop3_cmd *c)
{
	return pop3_cmd_parse(s, strlen(s), c);
}

static void test_line(void **st)
{
	size_t n, used;

	assert_int_equal(pop3_cmd_line("STAT\r\nNOOP\r\n", 12, 255, &n, &used), POP3_OK);
	assert_int_equal(n, 4);
	assert_int_equal(used, 6);
	assert_int_equal(pop3_cmd_line("STAT\n", 5, 255, &n, &used), POP3_OK);
	assert_int_equal(n, 4);
	assert_int_equal(used, 5);
	assert_int_equal(pop3_cmd_line("STA", 3, 255, &n, &used), POP3_NEED_MORE);
	assert_int_equal(pop3_cmd_line("STATSTAT", 8, 8, &n, &used), POP3_ERR_TOO_LONG);
	/* a line end past max does not count */
	assert_int_equal(pop3_cmd_line("STATSTAT\r\n", 10, 8, &n, &used), POP3_ERR_TOO_LONG);
}

static void test_line_bytewise(void **st)
{
	const char *in = "RETR 12\r\n";
	size_t i, n, used;

	for (i = 0; i < strlen(in); i++)
		assert_int_equal(pop3_cmd_line(in, i, 255, &n, &used), POP3_NEED_MORE);
	assert_int_equal(pop3_cmd_line(in, strlen(in), 255, &n, &used), POP3_OK);
	assert_int_equal(n, 7);
}

/* Issue #9: pop3_session's line buffer is max bytes; a line of max - 1
 * bytes ending in a lone LF must still leave room for the NUL (an
 * 8,193-byte line wrote one byte past an 8,193-byte buffer). */
static void test_line_fits_buffer(void **st)
{
	static char in[8200];
	size_t max = 8194, n = 0, used = 0, i;

	memset(in, 'Q', sizeof(in));
	in[8193] = '\n';
	assert_int_equal(pop3_cmd_line(in, 8194, max, &n, &used), POP3_OK);
	assert_int_equal(n, 8193);
	assert_true(n < max);
	assert_int_equal(used, 8194);
	in[8192] = '\r';
	assert_int_equal(pop3_cmd_line(in, 8194, max, &n, &used), POP3_OK);
	assert_int_equal(n, 8192);
	/* one more byte is too long, whatever follows */
	in[8192] = 'Q';
	in[8193] = 'Q';
	in[8194] = '\n';
	assert_int_equal(pop3_cmd_line(in, 8195, max, &n, &used),
			 POP3_ERR_TOO_LONG);
	assert_int_equal(pop3_cmd_line(in, 8194, max, &n, &used),
			 POP3_ERR_TOO_LONG);
	for (i = 0; i < 8194; i++)
		assert_int_equal(pop3_cmd_line(in, i, max, &n, &used),
				 POP3_NEED_MORE);
	assert_int_equal(pop3_cmd_line(in, 0, 0, &n, &used), POP3_ERR_TOO_LONG);
}

static void test_commands(void **st)
{
	struct pop3_cmd c;

	assert_int_equal(test_parse("stat", &c), POP3_OK);
	assert_int_equal(c.id, POP3_CMD_STAT);
	assert_int_equal(test_parse("RETR 1", &c), POP3_OK);
	assert_int_equal(c.id, POP3_CMD_RETR);
	assert_int_equal(c.narg, 1);
	assert_memory_equal(c.arg[0], "1", 1);
	assert_int_equal(test_parse("TOP 2 10", &c), POP3_OK);
	assert_int_equal(c.narg, 2);
	assert_memory_equal(c.arg[1], "10", 2);
	assert_int_equal(test_parse("LIST", &c), POP3_OK);
	assert_int_equal(c.narg, 0);
	assert_int_equal(test_parse("UIDL 3", &c), POP3_OK);
	assert_int_equal(test_parse("STLS", &c), POP3_OK);
	assert_int_equal(c.id, POP3_CMD_STLS);
	assert_int_equal(test_parse("APOP x y", &c), POP3_ERR_UNKNOWN);
	assert_int_equal(test_parse("", &c), POP3_ERR_UNKNOWN);
	assert_int_equal(test_parse("STATS", &c), POP3_ERR_UNKNOWN);
}

static void test_arguments(void **st)
{
	struct pop3_cmd c;
	char big[80];

	assert_int_equal(test_parse("RETR", &c), POP3_ERR_SYNTAX);
	assert_int_equal(test_parse("TOP 1", &c), POP3_ERR_SYNTAX);
	assert_int_equal(test_parse("STAT 1", &c), POP3_ERR_SYNTAX);
	assert_int_equal(test_parse("LIST 1 2", &c), POP3_ERR_SYNTAX);
	assert_int_equal(test_parse("USER a\x01", &c), POP3_ERR_SYNTAX);
	memset(big, 'a', sizeof(big));
	memcpy(big, "USER ", 5);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(test_parse(big, &c), POP3_ERR_SYNTAX);   /* > 40 */
	/* a password keeps its spaces */
	assert_int_equal(test_parse("PASS two words ", &c), POP3_OK);
	assert_int_equal(c.arg_len[0], 10);
	assert_memory_equal(c.arg[0], "two words ", 10);
	assert_int_equal(test_parse("PASS", &c), POP3_ERR_SYNTAX);
	/* RFC 5034: AUTH, AUTH mech, AUTH mech long-initial-response */
	assert_int_equal(test_parse("AUTH", &c), POP3_OK);
	assert_int_equal(c.narg, 0);
	memset(big, 'Q', sizeof(big));
	memcpy(big, "AUTH PLAIN ", 11);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(test_parse(big, &c), POP3_OK);
	assert_int_equal(c.narg, 2);
	assert_int_equal(c.arg_len[1], sizeof(big) - 12);
}

static void test_numbers(void **st)
{
	unsigned long v;

	assert_int_equal(pop3_cmd_number("42", 2, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(pop3_cmd_number("", 0, &v), -1);
	assert_int_equal(pop3_cmd_number("-1", 2, &v), -1);
	assert_int_equal(pop3_cmd_number("1x", 2, &v), -1);
	assert_int_equal(pop3_cmd_number("2147483648", 10, &v), -1);
	assert_int_equal(pop3_cmd_number("99999999999", 11, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line),
		cmocka_unit_test(test_line_bytewise),
		cmocka_unit_test(test_line_fits_buffer),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_arguments),
		cmocka_unit_test(test_numbers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
