/* smtp_xforward: XFORWARD attribute names and values (see
 * smtp_xforward.h). Pure functions over the caller's bytes. */
#include <string.h>
#include <strings.h>
#include "smtp_cmd.h"
#include "smtp_xforward.h"

static const char *const smtp_xforward_names[] = {
	[SMTP_XFORWARD_NAME] = "NAME",
	[SMTP_XFORWARD_ADDR] = "ADDR",
	[SMTP_XFORWARD_HELO] = "HELO",
	[SMTP_XFORWARD_IDENT] = "IDENT",
	[SMTP_XFORWARD_PROTO] = "PROTO",
	[SMTP_XFORWARD_PORT] = "PORT",
	[SMTP_XFORWARD_SOURCE] = "SOURCE",
};

enum smtp_xforward_attr smtp_xforward_attr(const char *name, size_t len)
{
	int k;

	for (k = 0; k < SMTP_XFORWARD_UNKNOWN; k++)
		if (len == strlen(smtp_xforward_names[k]) &&
		    strncasecmp(name, smtp_xforward_names[k], len) == 0)
			return (enum smtp_xforward_attr)k;
	return SMTP_XFORWARD_UNKNOWN;
}

/* XFORWARD_README: the client says it does not know the value. */
static int smtp_xforward_unavailable(const char *v, size_t n)
{
	return (n == 13 && memcmp(v, "[UNAVAILABLE]", 13) == 0) ||
	       (n == 13 && memcmp(v, "[TEMPUNAVAIL]", 13) == 0);
}

int smtp_xforward_value(enum smtp_xforward_attr a, const char *raw,
                        size_t len, char *out, size_t outsize)
{
	char tmp[SMTP_XFORWARD_VALUE_MAX + 1];
	long n = smtp_cmd_xtext_decode(raw, len, tmp, sizeof(tmp));
	size_t skip = 0, i;

	if (outsize < sizeof(tmp))
		return -1;
	out[0] = '\0';
	if (n < 0)
		return -1;
	if (smtp_xforward_unavailable(tmp, (size_t)n))
		return 0;
	/* Postfix sends an IPv6 client address as "IPV6:2001:db8::1"; the
	 * prefix is counted off the decoded length, not the raw one. */
	if (a == SMTP_XFORWARD_ADDR && n >= 5 &&
	    strncasecmp(tmp, "IPV6:", 5) == 0) {
		skip = 5;
		if ((size_t)n == skip)
			return -1;
	}
	n -= (long)skip;
	for (i = 0; i < (size_t)n; i++) {
		unsigned char c = (unsigned char)tmp[skip + i];

		out[i] = (c < 33 || c > 126 || c == '(' || c == ')' ||
		          c == '\\') ? '?' : (char)c;
	}
	out[n] = '\0';
	return 1;
}
