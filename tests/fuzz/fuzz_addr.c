/* Fuzz target for shared/addr.c. The first byte picks the flags; the rest
 * is a MAIL FROM / RCPT TO argument. Checks the invariants, not just the
 * absence of crashes: a parsed path ends in '>' within the input, and its
 * canonical text parses back to the same address. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"

static void fuzz_addr_check(const struct addr *a, unsigned flags)
{
	char out[ADDR_TEXT_MAX], base[ADDR_LOCAL_MAX + 1];
	struct addr b;
	const char *ext;
	int n = addr_format(a, out, sizeof(out));

	if (n < 0 || (size_t)n != strlen(out))
		abort();
	if (addr_parse_plain(out, (size_t)n, flags | ADDR_NULL_OK | ADDR_NO_DOMAIN_OK |
			     ADDR_RELAY_CHARS_OK, &b) != ADDR_OK)
		abort();
	if (strcmp(a->local, b.local) != 0 || strcmp(a->domain, b.domain) != 0)
		abort();
	if (addr_split_ext(a->local, "+-", base, sizeof(base), &ext) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct addr a;
	size_t used = 0;
	unsigned flags;
	const char *s;
	char *copy;

	if (size == 0)
		return 0;
	flags = data[0] & 0x1f;
	/* An exact-size heap copy, so reading past size is caught by ASan. */
	if ((copy = malloc(size - 1 ? size - 1 : 1)) == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	s = copy;
	if (addr_parse_path(s, size - 1, flags, &a, &used) == ADDR_OK) {
		if (used < 2 || used > size - 1 || s[used - 1] != '>' || s[0] != '<')
			abort();
		fuzz_addr_check(&a, flags);
	}
	if (addr_parse_plain(s, size - 1, flags, &a) == ADDR_OK)
		fuzz_addr_check(&a, flags);
	free(copy);
	return 0;
}
