/* Fuzz target for the LIST/LSUB pattern matcher (mra/imap_cmd_mbox.c
 * imap_cmd_mbox_match): on short inputs it must agree with the plain
 * backtracking reference of RFC 3501 §6.3.8 ("*" anything, "%" anything
 * but the separator); on long ones it must just return (its time is
 * O(pattern * name) by construction). Input: pattern NUL name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../mra/imap_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_match_ref(const char *pat, const char *name, char sep)
{
	if (*pat == '\0')
		return *name == '\0';
	if (*pat == '*' || *pat == '%') {
		for (;;) {
			if (fuzz_match_ref(pat + 1, name, sep))
				return 1;
			if (*name == '\0' || (*pat == '%' && *name == sep))
				return 0;
			name++;
		}
	}
	return *name != '\0' && *pat == *name &&
		fuzz_match_ref(pat + 1, name + 1, sep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 2), *pat, *name, *nul;
	size_t wild = 0, i;
	int got;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = '\0';
	pat = buf;
	nul = memchr(buf, '\0', size + 1);
	name = nul + 1;
	got = imap_cmd_mbox_match(pat, name, '.');
	for (i = 0; pat[i] != '\0'; i++)
		wild += pat[i] == '*' || pat[i] == '%';
	/* the reference is exponential: only where it is cheap */
	if (wild <= 6 && strlen(name) <= 24 &&
	    got != fuzz_match_ref(pat, name, '.'))
		abort();
	free(buf);
	return 0;
}
