/* Fuzz target: smtp_cmd_parse over each CRLF line of the input, and xtext
 * decoding. Checks that every pointer out stays inside the line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "smtp_cmd.h"

static void fuzz_smtp_cmd_in(const char *line, size_t len, const char *p,
                             size_t n)
{
	if (p != NULL && (p < line || p + n > line + len))
		abort();
}

static void fuzz_smtp_cmd_one(const char *line, size_t len)
{
	struct smtp_cmd c;
	char out[128];
	int i;

	if (smtp_cmd_parse(line, len, &c) != SMTP_OK) {
		if (c.why == NULL)
			abort();
		return;
	}
	fuzz_smtp_cmd_in(line, len, c.arg, c.arg_len);
	fuzz_smtp_cmd_in(line, len, c.path, c.path_len);
	fuzz_smtp_cmd_in(line, len, c.envid, c.envid_len);
	fuzz_smtp_cmd_in(line, len, c.auth, c.auth_len);
	fuzz_smtp_cmd_in(line, len, c.orcpt, c.orcpt_len);
	fuzz_smtp_cmd_in(line, len, c.mech, c.mech_len);
	fuzz_smtp_cmd_in(line, len, c.initial, c.initial_len);
	for (i = 0; i < c.nxattr; i++) {
		fuzz_smtp_cmd_in(line, len, c.xattr[i].name, c.xattr[i].name_len);
		fuzz_smtp_cmd_in(line, len, c.xattr[i].value, c.xattr[i].value_len);
		(void)smtp_cmd_xtext_decode(c.xattr[i].value,
		                            c.xattr[i].value_len, out,
		                            sizeof(out));
	}
	if (c.envid != NULL &&
	    smtp_cmd_xtext_decode(c.envid, c.envid_len, out, sizeof(out)) < 0)
		abort();   /* the parser accepted it as xtext */
	if (smtp_cmd_name(c.verb) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;

	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((lf != NULL ? lf : end) - p);

		if (n > 0 && p[n - 1] == '\r')
			n--;
		fuzz_smtp_cmd_one(p, n);
		if (lf == NULL)
			break;
		p = lf + 1;
	}
	return 0;
}
