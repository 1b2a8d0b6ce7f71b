/* Fuzz target: submission's header scans (sub_policy_hdr_len, _hdr_has,
 * _delivered_to, _insert_at) on arbitrary message bytes, the way
 * sub_session runs them on a client's DATA. Checks the contracts: offsets
 * stay inside the header section, the section inside the input, and the
 * answers are 0 or 1. The first input line (up to 64 bytes) is also used
 * as the Delivered-To address and as an XFORWARD IDENT candidate. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sub_policy.h"

static void fuzz_sub_policy_check(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_sub_policy_headers(const char *msg, size_t len,
				    const char *addr)
{
	static const char *const names[] = { "Message-ID", "Date", "From",
		"Received", "Delivered-To", "Resent-Message-ID", "" };
	size_t hl = sub_policy_hdr_len(msg, len), at;
	size_t i;
	int r;

	fuzz_sub_policy_check(hl <= len);
	/* The section ends with its empty line, or runs to the end. */
	fuzz_sub_policy_check(hl == len || (hl > 0 && msg[hl - 1] == '\n'));
	at = sub_policy_insert_at(msg, len);
	fuzz_sub_policy_check(at <= hl);
	fuzz_sub_policy_check(at == 0 || msg[at - 1] == '\n' || at == hl);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		r = sub_policy_hdr_has(msg, len, names[i]);
		fuzz_sub_policy_check(r == 0 || r == 1);
	}
	r = sub_policy_delivered_to(msg, len, addr);
	fuzz_sub_policy_check(r == 0 || r == 1);
	r = sub_policy_delivered_to(msg, len, "bob@demo.test");
	fuzz_sub_policy_check(r == 0 || r == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	const char *nl = memchr(msg, '\n', size);
	size_t al = nl != NULL ? (size_t)(nl - msg) : size;
	char addr[65];
	int r;

	if (al > 64)
		al = 64;
	memcpy(addr, msg, al);
	addr[al] = '\0';
	fuzz_sub_policy_headers(msg, size, addr);
	/* Each prefix too: a message cut anywhere (torn DATA). */
	if (size > 0)
		fuzz_sub_policy_headers(msg, size - 1, addr);
	r = sub_policy_token_ok(addr);
	fuzz_sub_policy_check(r == 0 || r == 1);
	return 0;
}
