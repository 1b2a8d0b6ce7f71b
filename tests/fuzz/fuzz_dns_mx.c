/* Fuzz target for the DNS reply parser (dns_mx_parse), which reads what
 * whoever runs a recipient domain's DNS sends. The input is copied to a
 * heap block of exactly its length (so ASan sees a read past it) and
 * parsed as an MX, A and AAAA reply with a small and a full output array;
 * checks the contract: a count within max or an error code, MX names
 * NUL-terminated, at most 253 characters, host name characters only, and
 * addresses of the family asked with the port given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "dns_mx.h"

#define FUZZ_DNS_MX_MAX 32

static void fuzz_dns_mx_check(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_dns_mx_hosts(const unsigned char *msg, size_t len,
			      size_t max)
{
	struct dns_mx_host h[FUZZ_DNS_MX_MAX];
	int n = dns_mx_parse(msg, len, 15, h, NULL, 0, max);

	fuzz_dns_mx_check(n == DNS_MX_BAD || n == DNS_MX_TRUNCATED ||
			  (n >= 0 && (size_t)n <= max));
	for (int i = 0; i < n; i++) {
		size_t l = strnlen(h[i].name, sizeof(h[i].name));

		fuzz_dns_mx_check(l <= DNS_MX_NAME_MAX - 2);
		fuzz_dns_mx_check(h[i].pref >= 0 && h[i].pref <= 65535);
		fuzz_dns_mx_check(strspn(h[i].name, "abcdefghijklmnopqrstuvwxyz"
					 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
				  == l);
		fuzz_dns_mx_check(l == 0 || (h[i].name[0] != '.' &&
					     h[i].name[l - 1] != '.' &&
					     strstr(h[i].name, "..") == NULL));
	}
}

static void fuzz_dns_mx_addrs(const unsigned char *msg, size_t len,
			      int qtype, size_t max)
{
	struct sockaddr_storage a[FUZZ_DNS_MX_MAX];
	int n = dns_mx_parse(msg, len, qtype, NULL, a, 2525, max);

	fuzz_dns_mx_check(n == DNS_MX_BAD || n == DNS_MX_TRUNCATED ||
			  (n >= 0 && (size_t)n <= max));
	for (int i = 0; i < n; i++) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a[i];

		fuzz_dns_mx_check(a[i].ss_family ==
				  (qtype == 1 ? AF_INET : AF_INET6));
		fuzz_dns_mx_check(ntohs(sin->sin_port) == 2525);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *msg = malloc(size ? size : 1);

	if (msg == NULL)
		return 0;
	memcpy(msg, data, size);
	fuzz_dns_mx_hosts(msg, size, 2);
	fuzz_dns_mx_hosts(msg, size, FUZZ_DNS_MX_MAX);
	fuzz_dns_mx_addrs(msg, size, 1, 1);
	fuzz_dns_mx_addrs(msg, size, 1, FUZZ_DNS_MX_MAX);
	fuzz_dns_mx_addrs(msg, size, 28, FUZZ_DNS_MX_MAX);
	free(msg);
	return 0;
}
