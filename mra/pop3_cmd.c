/* pop3_cmd: POP3 command lines to a struct pop3_cmd (RFC 1939 §3: a
 * case-insensitive keyword and up to two arguments of at most 40 octets,
 * separated by single spaces; we tolerate runs of spaces). Pure. */
#include <string.h>
#include <strings.h>
#include "pop3_cmd.h"

struct pop3_cmd_def {
	const char *name;
	enum pop3_cmd_id id;
	unsigned min, max;
};

static const struct pop3_cmd_def pop3_cmd_defs[] = {
	{ "USER", POP3_CMD_USER, 1, 1 }, { "PASS", POP3_CMD_PASS, 1, 1 },
	{ "QUIT", POP3_CMD_QUIT, 0, 0 }, { "STAT", POP3_CMD_STAT, 0, 0 },
	{ "LIST", POP3_CMD_LIST, 0, 1 }, { "RETR", POP3_CMD_RETR, 1, 1 },
	{ "DELE", POP3_CMD_DELE, 1, 1 }, { "NOOP", POP3_CMD_NOOP, 0, 0 },
	{ "RSET", POP3_CMD_RSET, 0, 0 }, { "TOP",  POP3_CMD_TOP,  2, 2 },
	{ "UIDL", POP3_CMD_UIDL, 0, 1 }, { "CAPA", POP3_CMD_CAPA, 0, 0 },
	{ "STLS", POP3_CMD_STLS, 0, 0 }, { "AUTH", POP3_CMD_AUTH, 0, 2 },
};

enum pop3_rc pop3_cmd_line(const char *buf, size_t len, size_t max,
                           size_t *linelen_r, size_t *used_r)
{
	size_t scan = len < max ? len : max;
	const char *nl = scan > 0 ? memchr(buf, '\n', scan) : NULL;
	size_t n;

	if (max == 0)
		return POP3_ERR_TOO_LONG;
	if (nl == NULL)
		return len >= max ? POP3_ERR_TOO_LONG : POP3_NEED_MORE;
	n = (size_t)(nl - buf);
	*used_r = n + 1;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	*linelen_r = n;
	return POP3_OK;
}

enum pop3_rc pop3_cmd_parse(const char *line, size_t len, struct pop3_cmd *cmd)
{
	const struct pop3_cmd_def *d = NULL;
	size_t i, p, kl;

	memset(cmd, 0, sizeof(*cmd));
	for (kl = 0; kl < len && line[kl] != ' '; kl++)
		;
	for (i = 0; i < sizeof(pop3_cmd_defs) / sizeof(pop3_cmd_defs[0]); i++)
		if (strlen(pop3_cmd_defs[i].name) == kl &&
		    strncasecmp(pop3_cmd_defs[i].name, line, kl) == 0)
			d = &pop3_cmd_defs[i];
	if (d == NULL)
		return POP3_ERR_UNKNOWN;
	cmd->id = d->id;
	for (i = 0; i < len; i++)   /* no controls, no NUL in a command */
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			return POP3_ERR_SYNTAX;
	p = kl;
	if (d->id == POP3_CMD_PASS) {
		/* the password is the rest of the line after one space */
		if (p >= len || p + 1 >= len)
			return POP3_ERR_SYNTAX;
		cmd->arg[0] = line + p + 1;
		cmd->arg_len[0] = len - p - 1;
		cmd->narg = 1;
		return POP3_OK;
	}
	while (p < len) {
		size_t s;

		while (p < len && line[p] == ' ')
			p++;
		if (p >= len)
			break;
		s = p;
		while (p < len && line[p] != ' ')
			p++;
		if (cmd->narg >= d->max)
			return POP3_ERR_SYNTAX;
		/* RFC 5034 §4: an AUTH initial response may exceed 40 */
		if (p - s > POP3_CMD_MAX_ARG &&
		    !(d->id == POP3_CMD_AUTH && cmd->narg == 1))
			return POP3_ERR_SYNTAX;
		cmd->arg[cmd->narg] = line + s;
		cmd->arg_len[cmd->narg++] = p - s;
	}
	if (cmd->narg < d->min)
		return POP3_ERR_SYNTAX;
	return POP3_OK;
}

int pop3_cmd_number(const char *s, size_t len, unsigned long *v_r)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0 || len > 10)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 0x7fffffffUL)
		return -1;
	*v_r = v;
	return 0;
}
