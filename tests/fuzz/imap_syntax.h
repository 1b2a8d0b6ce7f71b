/* imap_syntax: a strict checker of IMAP response syntax (RFC 3501 §9) for
 * the renderers' unit tests and fuzz targets: parentheses balance outside
 * quoted strings and literals, a quoted string is 7-bit without CR, LF or
 * NUL and escapes only '"' and '\', a literal "{n}" CRLF holds exactly n
 * bytes and no NUL, and values in a list are separated by one space
 * (or touch, ")(", as body parts and addresses do). Header-only: each
 * test includes it. */
#ifndef IMAP_SYNTAX_H
#define IMAP_SYNTAX_H

#include <stddef.h>
#include <string.h>

#define IMAP_SYNTAX_MAX_DEPTH 200

static inline int imap_syntax_value(const char *p, size_t len, size_t *pos,
			     unsigned depth);

static inline int imap_syntax_atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\]", c) == NULL;
}

/* atom, a flag "\\Seen", or a fetch-att name "BODY[section]<origin>" */
static inline int imap_syntax_atom(const char *p, size_t len, size_t *pos)
{
	size_t i = *pos;

	if (i < len && p[i] == '\\')
		i++;
	while (i < len && imap_syntax_atom_char((unsigned char)p[i])) {
		if (p[i] == '[') {
			while (i < len && p[i] != ']' && p[i] != '\r' &&
			       p[i] != '\n' && p[i] != '\0')
				i++;
			if (i >= len || p[i] != ']')
				return -1;
		}
		i++;
	}
	if (i == *pos || (i == *pos + 1 && p[*pos] == '\\'))
		return -1;
	*pos = i;
	return 0;
}

static inline int imap_syntax_quoted(const char *p, size_t len, size_t *pos)
{
	size_t i = *pos + 1;

	while (i < len && p[i] != '"') {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r' || c == '\n' || c == 0 || c >= 0x80)
			return -1;
		if (c == '\\') {
			if (i + 1 >= len || (p[i + 1] != '"' && p[i + 1] != '\\'))
				return -1;
			i++;
		}
		i++;
	}
	if (i >= len)
		return -1;
	*pos = i + 1;
	return 0;
}

static inline int imap_syntax_literal(const char *p, size_t len, size_t *pos)
{
	size_t i = *pos + 1, n = 0;

	if (i >= len || p[i] < '0' || p[i] > '9')
		return -1;
	while (i < len && p[i] >= '0' && p[i] <= '9') {
		if (n > len)
			return -1;
		n = n * 10 + (size_t)(p[i++] - '0');
	}
	if (len - i < 3 || p[i] != '}' || p[i + 1] != '\r' || p[i + 2] != '\n')
		return -1;
	i += 3;
	if (len - i < n || memchr(p + i, '\0', n) != NULL)
		return -1;
	*pos = i + n;
	return 0;
}

/* A list; *count_r (may be NULL) gets its number of elements. */
static inline int imap_syntax_list(const char *p, size_t len, size_t *pos,
			    unsigned depth, size_t *count_r)
{
	size_t i = *pos + 1, n = 0;

	if (depth > IMAP_SYNTAX_MAX_DEPTH)
		return -1;
	while (i < len && p[i] != ')') {
		if (n > 0) {
			if (p[i] == ' ')
				i++;
			else if (!(p[i - 1] == ')' && p[i] == '('))
				return -1;
		}
		if (imap_syntax_value(p, len, &i, depth + 1) < 0)
			return -1;
		n++;
	}
	if (i >= len)
		return -1;
	*pos = i + 1;
	if (count_r != NULL)
		*count_r = n;
	return 0;
}

static inline int imap_syntax_value(const char *p, size_t len, size_t *pos,
			     unsigned depth)
{
	if (*pos >= len)
		return -1;
	switch (p[*pos]) {
	case '(':
		return imap_syntax_list(p, len, pos, depth, NULL);
	case '"':
		return imap_syntax_quoted(p, len, pos);
	case '{':
		return imap_syntax_literal(p, len, pos);
	default:
		return imap_syntax_atom(p, len, pos);
	}
}

/* p[0..len) is exactly one value (ENVELOPE, BODYSTRUCTURE). 0 or -1. */
static inline int imap_syntax_one(const char *p, size_t len)
{
	size_t pos = 0;

	if (imap_syntax_value(p, len, &pos, 0) < 0)
		return -1;
	return pos == len ? 0 : -1;
}

/* p[0..len) is whole untagged FETCH responses "* n FETCH (name value
 * ...)" CRLF. 0 or -1. */
static inline int imap_syntax_fetch(const char *p, size_t len)
{
	size_t pos = 0, n;

	while (pos < len) {
		if (len - pos < 3 || memcmp(p + pos, "* ", 2) != 0 ||
		    p[pos + 2] < '1' || p[pos + 2] > '9')
			return -1;
		pos += 2;
		while (pos < len && p[pos] >= '0' && p[pos] <= '9')
			pos++;
		if (len - pos < 8 || memcmp(p + pos, " FETCH (", 8) != 0)
			return -1;
		pos += 7;
		if (imap_syntax_list(p, len, &pos, 0, &n) < 0 || n == 0 ||
		    n % 2 != 0)
			return -1;
		if (len - pos < 2 || p[pos] != '\r' || p[pos + 1] != '\n')
			return -1;
		pos += 2;
	}
	return 0;
}

#endif
