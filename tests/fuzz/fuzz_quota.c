/* Fuzz target: quota_parse on arbitrary maildirsize contents (the file
 * sits in the user's Maildir, which IMAP clients and other writers can
 * fill). Checks the contract: -1, or the line count, which then equals
 * the number of LFs as every line, the last too, ends in one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "quota.h"

static void fuzz_quota_check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	long long limit, bytes, files;
	size_t i, lfs = 0;
	int n;

	n = quota_parse(text, size, &limit, &bytes, &files);
	if (n < 0)
		return 0;
	for (i = 0; i < size; i++)
		lfs += text[i] == '\n';
	fuzz_quota_check((size_t)n == lfs);
	(void)quota_over(limit, bytes, 1);
	return 0;
}
