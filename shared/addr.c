/* addr: RFC 5321 §4.1.2 paths and mailboxes, RFC 6531 §3.3 with SMTPUTF8.
 * Pure functions over the caller's bytes: no I/O, no allocation. The
 * parsed local part is stored unquoted; addr_format quotes it again when
 * it is not a dot-atom, so equal addresses get equal text. */
#include <arpa/inet.h>
#include <string.h>
#include "addr.h"

/* RFC 5322 §3.2.3 atext, as RFC 5321 §4.1.2 uses it for Atom. */
static int addr_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* RFC 5321 §4.1.2 qtextSMTP: %d32-33 / %d35-91 / %d93-126. */
static int addr_qtext(unsigned char c)
{
	return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

static int addr_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-';
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 §4: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t addr_utf8_len(const unsigned char *s, size_t len)
{
	size_t n, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* A non-ASCII byte at s: the length of its UTF-8 sequence, or an error. */
static enum addr_rc addr_8bit(const unsigned char *s, size_t len, unsigned flags,
			      size_t *n_r)
{
	if (!(flags & ADDR_UTF8))
		return ADDR_ERR_8BIT;
	if ((*n_r = addr_utf8_len(s, len)) == 0)
		return ADDR_ERR_UTF8;
	return ADDR_OK;
}

/* RFC 5321 §4.1.2 Quoted-string; s[0] is the opening quote. */
static enum addr_rc addr_quoted(const unsigned char *s, size_t len, unsigned flags,
				struct addr *a, size_t *used_r)
{
	size_t i = 1, o = 0, n;
	enum addr_rc rc;

	/* The limit counts the text as written, both quotes included; the
	 * unquoted copy is never longer. */
	while (i < len && s[i] != '"') {
		if (s[i] == '\\') {
			/* quoted-pairSMTP = %d92 %d32-126 */
			if (i + 1 >= len || s[i + 1] < 32 || s[i + 1] > 126)
				return ADDR_ERR_SYNTAX;
			n = 2;
		} else if (addr_qtext(s[i])) {
			n = 1;
		} else if (s[i] >= 0x80) {
			if ((rc = addr_8bit(s + i, len - i, flags, &n)) != ADDR_OK)
				return rc;
		} else {
			return ADDR_ERR_SYNTAX;
		}
		if (i + n + 1 > ADDR_LOCAL_MAX)
			return ADDR_ERR_TOO_LONG;
		if (s[i] == '\\') {
			a->local[o++] = (char)s[i + 1];
		} else {
			memcpy(a->local + o, s + i, n);
			o += n;
		}
		i += n;
	}
	if (i >= len)
		return ADDR_ERR_SYNTAX;
	a->local[o] = '\0';
	*used_r = i + 1;
	return ADDR_OK;
}

/* RFC 5321 §4.1.2 Dot-string = Atom *("." Atom). */
static enum addr_rc addr_dotstring(const unsigned char *s, size_t len, unsigned flags,
				   struct addr *a, size_t *used_r)
{
	size_t i = 0, n;
	int atom = 0;          /* bytes in the current atom */
	enum addr_rc rc;

	while (i < len) {
		if (s[i] == '.') {
			if (atom == 0)
				return ADDR_ERR_SYNTAX;
			atom = 0;
			n = 1;
		} else if (addr_atext(s[i])) {
			atom++;
			n = 1;
		} else if (s[i] >= 0x80) {
			if ((rc = addr_8bit(s + i, len - i, flags, &n)) != ADDR_OK)
				return rc;
			atom++;
		} else {
			break;
		}
		if (i + n > ADDR_LOCAL_MAX)
			return ADDR_ERR_TOO_LONG;
		memcpy(a->local + i, s + i, n);
		i += n;
	}
	if (atom == 0)
		return ADDR_ERR_SYNTAX;
	a->local[i] = '\0';
	*used_r = i;
	return ADDR_OK;
}

/* RFC 5321 §4.1.3 address literals: IPv4 or "IPv6:" (the one
 * Standardized-tag there is); General-address-literal is refused. */
static enum addr_rc addr_literal(const char *s, size_t len, struct addr *a)
{
	char tmp[64];
	unsigned char bin[16];
	size_t i;

	if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof(tmp))
		return ADDR_ERR_DOMAIN;
	/* dcontent = %d33-90 / %d94-126; inet_pton would stop at a NUL. */
	for (i = 1; i < len - 1; i++)
		if (s[i] < 33 || s[i] > 126 || s[i] == '[' || s[i] == '\\' || s[i] == ']')
			return ADDR_ERR_DOMAIN;
	if (len - 2 > 5 && strncasecmp(s + 1, "IPv6:", 5) == 0) {
		memcpy(tmp, s + 6, len - 7);
		tmp[len - 7] = '\0';
		if (inet_pton(AF_INET6, tmp, bin) != 1)
			return ADDR_ERR_DOMAIN;
	} else {
		memcpy(tmp, s + 1, len - 2);
		tmp[len - 2] = '\0';
		if (inet_pton(AF_INET, tmp, bin) != 1)
			return ADDR_ERR_DOMAIN;
	}
	for (i = 0; i < len; i++)
		a->domain[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
	a->domain[len] = '\0';
	a->literal = 1;
	return ADDR_OK;
}

/* RFC 5321 §4.1.2 Domain: labels of letters, digits and inner hyphens
 * (plus U-labels with SMTPUTF8, RFC 6531 §3.3), at most 63 octets each
 * (RFC 1035 §2.3.4). s[0..len) is the whole domain text. */
static enum addr_rc addr_domain(const char *s, size_t len, unsigned flags, struct addr *a)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, label = 0, n;
	enum addr_rc rc;

	if (len > 0 && s[0] == '[')
		return addr_literal(s, len, a);
	if (len > ADDR_DOMAIN_MAX)
		return ADDR_ERR_TOO_LONG;
	while (i < len) {
		if (u[i] == '.') {
			if (label == 0 || s[i - 1] == '-')
				return ADDR_ERR_DOMAIN;
			label = 0;
			n = 1;
		} else if (addr_ldh(u[i])) {
			if (label == 0 && u[i] == '-')
				return ADDR_ERR_DOMAIN;
			label++;
			n = 1;
		} else if (u[i] >= 0x80) {
			if ((rc = addr_8bit(u + i, len - i, flags, &n)) != ADDR_OK)
				return rc;
			label += n;
		} else {
			return ADDR_ERR_DOMAIN;
		}
		if (label > 63)
			return ADDR_ERR_DOMAIN;
		for (; n > 0; n--, i++)
			a->domain[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
	}
	if (label == 0 || s[len - 1] == '-')
		return ADDR_ERR_DOMAIN;
	a->domain[len] = '\0';
	return ADDR_OK;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ). The domain runs
 * to the first '>' or the end; *used_r counts the bytes taken. */
static enum addr_rc addr_mailbox(const char *s, size_t len, unsigned flags,
				 struct addr *a, size_t *used_r)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n, d;
	enum addr_rc rc;

	if (len > 0 && s[0] == '"')
		rc = addr_quoted(u, len, flags, a, &n);
	else
		rc = addr_dotstring(u, len, flags, a, &n);
	if (rc != ADDR_OK)
		return rc;
	/* %-hack and bang paths ask us to relay: refused unless allowed. */
	if (!(flags & ADDR_RELAY_CHARS_OK) && strpbrk(a->local, "%!") != NULL)
		return ADDR_ERR_RELAY_CHAR;
	if (n >= len || s[n] != '@') {
		if (n < len && s[n] != '>')
			return ADDR_ERR_SYNTAX;
		if ((flags & ADDR_NO_DOMAIN_OK) ||
		    ((flags & ADDR_POSTMASTER_OK) && s[0] != '"' &&
		     strcasecmp(a->local, "postmaster") == 0)) {
			a->domain[0] = '\0';
			*used_r = n;
			return ADDR_OK;
		}
		return ADDR_ERR_NO_DOMAIN;
	}
	n++;
	for (d = n; d < len && s[d] != '>'; d++)
		;
	if ((rc = addr_domain(s + n, d - n, flags, a)) != ADDR_OK)
		return rc;
	*used_r = d;
	return ADDR_OK;
}

static void addr_reset(struct addr *a)
{
	a->is_null = 0;
	a->literal = 0;
	a->local[0] = '\0';
	a->domain[0] = '\0';
}

/* RFC 5321 §4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">", and "<>" for
 * the reverse-path of MAIL FROM. */
enum addr_rc addr_parse_path(const char *s, size_t len, unsigned flags,
			     struct addr *a, size_t *used_r)
{
	size_t n;
	enum addr_rc rc;

	addr_reset(a);
	if (len == 0 || s[0] != '<')
		return ADDR_ERR_SYNTAX;
	if (len >= 2 && s[1] == '>') {
		if (!(flags & ADDR_NULL_OK))
			return ADDR_ERR_NULL;
		a->is_null = 1;
		*used_r = 2;
		return ADDR_OK;
	}
	/* RFC 5321 §4.1.1.3: source routes MAY be ignored; we refuse them
	 * outright (they are relay requests). */
	if (len >= 2 && s[1] == '@')
		return ADDR_ERR_ROUTE;
	if ((rc = addr_mailbox(s + 1, len - 1, flags & ~ADDR_NO_DOMAIN_OK, a, &n)) != ADDR_OK)
		return rc;
	if (n + 1 >= len || s[n + 1] != '>')
		return ADDR_ERR_SYNTAX;
	*used_r = n + 2;
	return ADDR_OK;
}

enum addr_rc addr_parse_plain(const char *s, size_t len, unsigned flags,
			      struct addr *a)
{
	size_t n;
	enum addr_rc rc;

	addr_reset(a);
	if (len == 0) {
		if (!(flags & ADDR_NULL_OK))
			return ADDR_ERR_NULL;
		a->is_null = 1;
		return ADDR_OK;
	}
	if (s[0] == '@')
		return ADDR_ERR_ROUTE;
	if ((rc = addr_mailbox(s, len, flags, a, &n)) != ADDR_OK)
		return rc;
	return n == len ? ADDR_OK : ADDR_ERR_SYNTAX;
}

const char *addr_rc_str(enum addr_rc rc)
{
	switch (rc) {
	case ADDR_OK: return "ok";
	case ADDR_ERR_SYNTAX: return "bad address syntax";
	case ADDR_ERR_DOMAIN: return "bad domain syntax";
	case ADDR_ERR_TOO_LONG: return "address too long";
	case ADDR_ERR_NULL: return "null address not allowed";
	case ADDR_ERR_ROUTE: return "source route not allowed";
	case ADDR_ERR_RELAY_CHAR: return "% or ! not allowed in the local part";
	case ADDR_ERR_8BIT: return "8-bit address without SMTPUTF8";
	case ADDR_ERR_UTF8: return "invalid UTF-8 in address";
	case ADDR_ERR_NO_DOMAIN: return "address without domain";
	}
	return "bad address";
}

/* A local part that is a dot-atom needs no quotes (RFC 5321 §4.1.2:
 * quoting where not needed SHOULD be avoided). Non-ASCII bytes only get
 * here from an SMTPUTF8 parse, where they count as atext. */
static int addr_needs_quotes(const char *l)
{
	const unsigned char *u = (const unsigned char *)l;
	size_t i;

	if (u[0] == '\0' || u[0] == '.')
		return 1;
	for (i = 0; u[i] != '\0'; i++) {
		if (u[i] == '.' && (u[i + 1] == '.' || u[i + 1] == '\0'))
			return 1;
		if (u[i] != '.' && !addr_atext(u[i]) && u[i] < 0x80)
			return 1;
	}
	return 0;
}

int addr_format(const struct addr *a, char *out, size_t n)
{
	size_t o = 0, i, dl;
	int q;

	if (n == 0)
		return -1;
	out[0] = '\0';
	if (a->is_null)
		return 0;
	q = addr_needs_quotes(a->local);
	if (q)
		out[o++] = '"';
	for (i = 0; a->local[i] != '\0'; i++) {
		int esc = q && (a->local[i] == '"' || a->local[i] == '\\');

		if (o + (size_t)esc + 2 > n)    /* the byte(s) and a NUL */
			goto toolong;
		if (esc)
			out[o++] = '\\';
		out[o++] = a->local[i];
	}
	if (q) {
		if (o + 2 > n)
			goto toolong;
		out[o++] = '"';
	}
	dl = strlen(a->domain);
	if (dl > 0) {
		if (o + 1 + dl + 1 > n)
			goto toolong;
		out[o++] = '@';
		memcpy(out + o, a->domain, dl);
		o += dl;
	}
	if (o + 1 > n)
		goto toolong;
	out[o] = '\0';
	return (int)o;
toolong:
	out[0] = '\0';
	return -1;
}

int addr_split_ext(const char *local, const char *delims, char *base,
		   size_t n, const char **ext_r)
{
	size_t l = strlen(local), cut = l;

	*ext_r = NULL;
	if (delims != NULL && delims[0] != '\0') {
		cut = strcspn(local, delims);
		/* Postfix: a local part that starts with the delimiter has no
		 * extension ("+foo" stays "+foo"). */
		if (cut == 0)
			cut = l;
	}
	if (cut + 1 > n) {
		if (n > 0)
			base[0] = '\0';
		return -1;
	}
	memcpy(base, local, cut);
	base[cut] = '\0';
	if (cut == l)
		return 0;
	*ext_r = local + cut + 1;
	return 1;
}
