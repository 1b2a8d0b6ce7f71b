/* Fuzz target: XFORWARD attributes (smtp_xforward). The input is parsed
 * as an XFORWARD command line, as the session does, and each attribute
 * value, plus the whole input as one raw value of each attribute, is put
 * through smtp_xforward_value() from a heap copy of exactly its length
 * (ASan sees a read past it; the IPV6: bug read 5 bytes past). A value
 * kept is short, NUL-terminated and holds nothing that breaks a header
 * comment or a log line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "smtp_cmd.h"
#include "smtp_xforward.h"

static void fuzz_smtp_xforward_check(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_smtp_xforward_value(enum smtp_xforward_attr a,
                                     const char *p, size_t len)
{
	char *raw = malloc(len ? len : 1), *out;
	size_t i, n;
	int rc;

	out = malloc(SMTP_XFORWARD_VALUE_MAX + 1);
	if (raw == NULL || out == NULL)
		abort();
	memcpy(raw, p, len);
	rc = smtp_xforward_value(a, raw, len, out, SMTP_XFORWARD_VALUE_MAX + 1);
	fuzz_smtp_xforward_check(rc >= -1 && rc <= 1);
	if (rc >= 0) {
		n = strlen(out);
		fuzz_smtp_xforward_check(n <= SMTP_XFORWARD_VALUE_MAX);
		fuzz_smtp_xforward_check(rc == 1 || n == 0);
		for (i = 0; i < n; i++)
			fuzz_smtp_xforward_check(out[i] > 32 && out[i] < 127 &&
			                         out[i] != '(' && out[i] != ')' &&
			                         out[i] != '\\');
	}
	free(raw);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char verb[] = "XFORWARD ";
	char *line = malloc(sizeof(verb) - 1 + size);
	struct smtp_cmd c;
	int i, a;

	if (line == NULL)
		abort();
	memcpy(line, verb, sizeof(verb) - 1);
	memcpy(line + sizeof(verb) - 1, data, size);
	if (smtp_cmd_parse(line, sizeof(verb) - 1 + size, &c) == SMTP_OK &&
	    c.verb == SMTP_CMD_XFORWARD)
		for (i = 0; i < c.nxattr; i++) {
			enum smtp_xforward_attr k =
			    smtp_xforward_attr(c.xattr[i].name,
			                       c.xattr[i].name_len);

			fuzz_smtp_xforward_check(k <= SMTP_XFORWARD_UNKNOWN);
			fuzz_smtp_xforward_value(k, c.xattr[i].value,
			                         c.xattr[i].value_len);
		}
	for (a = 0; a < SMTP_XFORWARD_UNKNOWN; a++)
		fuzz_smtp_xforward_value((enum smtp_xforward_attr)a,
		                         (const char *)data, size);
	fuzz_smtp_xforward_check(smtp_xforward_attr((const char *)data, size) <=
	                         SMTP_XFORWARD_UNKNOWN);
	free(line);
	return 0;
}
