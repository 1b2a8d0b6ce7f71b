/* smtp_cmd: one SMTP command line -> verb and arguments (RFC 5321 §4.1,
 * RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 3030 BDAT/BINARYMIME, RFC 6531
 * SMTPUTF8, RFC 3461 DSN parameters, RFC 4954 AUTH, Postfix XFORWARD).
 * Pure: pointers in struct smtp_cmd point into the caller's line. */
#include <string.h>
#include <strings.h>
#include "smtp_cmd.h"

enum smtp_cmd_args { SMTP_CMD_ARG_NONE, SMTP_CMD_ARG_OPT, SMTP_CMD_ARG_REQ };

struct smtp_cmd_verbdef {
	const char *name;
	enum smtp_verb verb;
	enum smtp_cmd_args args;
	const char *syntax;          /* reply text when the arguments are bad */
};

static const struct smtp_cmd_verbdef smtp_cmd_verbs[] = {
	{ "EHLO", SMTP_CMD_EHLO, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: EHLO hostname" },
	{ "HELO", SMTP_CMD_HELO, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: HELO hostname" },
	{ "MAIL", SMTP_CMD_MAIL, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: MAIL FROM:<address>" },
	{ "RCPT", SMTP_CMD_RCPT, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: RCPT TO:<address>" },
	{ "DATA", SMTP_CMD_DATA, SMTP_CMD_ARG_NONE, "5.5.4 Syntax: DATA" },
	{ "BDAT", SMTP_CMD_BDAT, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: BDAT size [LAST]" },
	{ "RSET", SMTP_CMD_RSET, SMTP_CMD_ARG_NONE, "5.5.4 Syntax: RSET" },
	{ "NOOP", SMTP_CMD_NOOP, SMTP_CMD_ARG_OPT, NULL },
	{ "QUIT", SMTP_CMD_QUIT, SMTP_CMD_ARG_NONE, "5.5.4 Syntax: QUIT" },
	{ "HELP", SMTP_CMD_HELP, SMTP_CMD_ARG_OPT, NULL },
	{ "VRFY", SMTP_CMD_VRFY, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: VRFY address" },
	{ "EXPN", SMTP_CMD_EXPN, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: EXPN name" },
	{ "STARTTLS", SMTP_CMD_STARTTLS, SMTP_CMD_ARG_NONE, "5.5.4 Syntax: STARTTLS" },
	{ "AUTH", SMTP_CMD_AUTH, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: AUTH mechanism [initial-response]" },
	{ "XFORWARD", SMTP_CMD_XFORWARD, SMTP_CMD_ARG_REQ, "5.5.4 Syntax: XFORWARD attribute=value..." },
	{ "ETRN", SMTP_CMD_ETRN, SMTP_CMD_ARG_OPT, NULL },
	{ "TURN", SMTP_CMD_TURN, SMTP_CMD_ARG_OPT, NULL },
};

/* Lines a web client sends when it was pointed at an SMTP port. */
static const char *const smtp_cmd_http[] = {
	"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS",
	"Host:", "User-Agent:", "Content-Type:",
};

static const char *const smtp_cmd_xfwd_names[] = {
	"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE",
};

static int smtp_cmd_is_space(char c)
{
	return c == ' ' || c == '\t';
}

static int smtp_cmd_eq(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static size_t smtp_cmd_token(const char *p, const char *end)
{
	const char *q = p;

	while (q < end && !smtp_cmd_is_space(*q))
		q++;
	return (size_t)(q - p);
}

static const char *smtp_cmd_skip_space(const char *p, const char *end)
{
	while (p < end && smtp_cmd_is_space(*p))
		p++;
	return p;
}

static enum smtp_rc smtp_cmd_fail(struct smtp_cmd *cmd, enum smtp_rc rc,
                                  const char *why)
{
	cmd->why = why;
	return rc;
}

/* Digits only, at most 20; *overflow_r set when the value exceeds 64 bits
 * (the caller decides whether that is "too big" or bad syntax). */
static int smtp_cmd_number(const char *s, size_t len, uint64_t *v_r,
                           int *overflow_r)
{
	uint64_t v = 0;
	size_t i;

	*overflow_r = 0;
	if (len == 0 || len > 20)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			*overflow_r = 1;
		else
			v = v * 10 + d;
	}
	*v_r = *overflow_r ? UINT64_MAX : v;
	return 0;
}

/* RFC 3461 §4: xtext is printable ASCII except "+" and "=", with "+HH"
 * escapes (upper-case hex). */
static int smtp_cmd_xtext_ok(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			if (i + 2 >= len ||
			    strchr("0123456789ABCDEF", s[i + 1]) == NULL ||
			    strchr("0123456789ABCDEF", s[i + 2]) == NULL ||
			    s[i + 1] == '\0' || s[i + 2] == '\0')
				return 0;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return 0;
		}
	}
	return 1;
}

long smtp_cmd_xtext_decode(const char *in, size_t len, char *out,
                           size_t outcap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;

	if (outcap == 0 || !smtp_cmd_xtext_ok(in, len))
		return -1;
	for (i = 0; i < len; i++) {
		char c = in[i];

		if (c == '+') {
			c = (char)(((strchr(hex, in[i + 1]) - hex) << 4) |
			           (strchr(hex, in[i + 2]) - hex));
			i += 2;
		}
		if (o + 1 >= outcap)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return (long)o;
}

/* "<...>" with RFC 5321 §4.1.2 quoted strings, where ">" may appear
 * inside quotes and "\" quotes the next character. */
static enum smtp_rc smtp_cmd_path(const char **pp, const char *end,
                                  struct smtp_cmd *cmd, const char *syntax)
{
	const char *p = *pp, *q;
	int quoted = 0;

	if (p >= end || *p != '<')
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, syntax);
	for (q = p + 1; q < end; q++) {
		if (quoted && *q == '\\' && q + 1 < end)
			q++;
		else if (*q == '"')
			quoted = !quoted;
		else if (!quoted && *q == '>')
			break;
		else if (!quoted && *q == '<')
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, syntax);
	}
	if (q >= end)
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, syntax);
	cmd->path = p + 1;
	cmd->path_len = (size_t)(q - p - 1);
	q++;
	if (q < end && !smtp_cmd_is_space(*q))
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, syntax);
	*pp = q;
	return SMTP_OK;
}

static enum smtp_rc smtp_cmd_mail_param(struct smtp_cmd *cmd, const char *k,
    size_t klen, const char *v, size_t vlen, int has_v)
{
	int overflow;

	if (smtp_cmd_eq(k, klen, "SIZE")) {
		if (cmd->has_size || !has_v ||
		    smtp_cmd_number(v, vlen, &cmd->size, &overflow) < 0)
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad SIZE parameter");
		cmd->has_size = 1;
	} else if (smtp_cmd_eq(k, klen, "BODY")) {
		if (cmd->body != 0 || !has_v)
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad BODY parameter");
		if (smtp_cmd_eq(v, vlen, "7BIT"))
			cmd->body = SMTP_BODY_7BIT;
		else if (smtp_cmd_eq(v, vlen, "8BITMIME"))
			cmd->body = SMTP_BODY_8BITMIME;
		else if (smtp_cmd_eq(v, vlen, "BINARYMIME"))
			cmd->body = SMTP_BODY_BINARYMIME;
		else
			return smtp_cmd_fail(cmd, SMTP_ERR_PARAM,
			                     "5.5.4 Unsupported BODY parameter");
	} else if (smtp_cmd_eq(k, klen, "SMTPUTF8")) {
		if (cmd->smtputf8 || has_v)
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad SMTPUTF8 parameter");
		cmd->smtputf8 = 1;
	} else if (smtp_cmd_eq(k, klen, "AUTH")) {
		/* RFC 4954 §5: AUTH=<> or AUTH=xtext */
		if (cmd->auth != NULL || !has_v ||
		    (!smtp_cmd_eq(v, vlen, "<>") && !smtp_cmd_xtext_ok(v, vlen)) ||
		    vlen == 0)
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad AUTH parameter");
		cmd->auth = v;
		cmd->auth_len = vlen;
	} else if (smtp_cmd_eq(k, klen, "RET")) {
		if (cmd->ret != 0 || !has_v)
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad RET parameter");
		if (smtp_cmd_eq(v, vlen, "FULL"))
			cmd->ret = SMTP_RET_FULL;
		else if (smtp_cmd_eq(v, vlen, "HDRS"))
			cmd->ret = SMTP_RET_HDRS;
		else
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad RET parameter");
	} else if (smtp_cmd_eq(k, klen, "ENVID")) {
		/* RFC 3461 §4.4: at most 100 characters */
		if (cmd->envid != NULL || !has_v || vlen == 0 || vlen > 100 ||
		    !smtp_cmd_xtext_ok(v, vlen))
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad ENVID parameter");
		cmd->envid = v;
		cmd->envid_len = vlen;
	} else {
		return smtp_cmd_fail(cmd, SMTP_ERR_PARAM,
		                     "5.5.4 Unsupported option");
	}
	return SMTP_OK;
}

/* RFC 3461 §4.1: NEVER alone, or a list of SUCCESS, FAILURE, DELAY. */
static int smtp_cmd_notify(const char *v, size_t vlen)
{
	const char *p = v, *end = v + vlen;
	int bits = 0;

	while (p <= end) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t n = (c != NULL ? c : end) - p;
		int bit;

		if (smtp_cmd_eq(p, n, "NEVER"))
			bit = SMTP_NOTIFY_NEVER;
		else if (smtp_cmd_eq(p, n, "SUCCESS"))
			bit = SMTP_NOTIFY_SUCCESS;
		else if (smtp_cmd_eq(p, n, "FAILURE"))
			bit = SMTP_NOTIFY_FAILURE;
		else if (smtp_cmd_eq(p, n, "DELAY"))
			bit = SMTP_NOTIFY_DELAY;
		else
			return -1;
		if (bits & bit)
			return -1;
		bits |= bit;
		if (c == NULL)
			break;
		p = c + 1;
	}
	if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
		return -1;
	return bits;
}

static enum smtp_rc smtp_cmd_rcpt_param(struct smtp_cmd *cmd, const char *k,
    size_t klen, const char *v, size_t vlen, int has_v)
{
	if (smtp_cmd_eq(k, klen, "NOTIFY")) {
		int bits = has_v ? smtp_cmd_notify(v, vlen) : -1;

		if (cmd->notify != 0 || bits <= 0)
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad NOTIFY parameter");
		cmd->notify = bits;
	} else if (smtp_cmd_eq(k, klen, "ORCPT")) {
		/* RFC 3461 §4.2: addr-type ";" xtext */
		const char *semi = has_v ? memchr(v, ';', vlen) : NULL;

		if (cmd->orcpt != NULL || semi == NULL || semi == v ||
		    !smtp_cmd_xtext_ok(semi + 1, vlen - (size_t)(semi + 1 - v)))
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad ORCPT parameter");
		cmd->orcpt = v;
		cmd->orcpt_len = vlen;
	} else {
		return smtp_cmd_fail(cmd, SMTP_ERR_PARAM,
		                     "5.5.4 Unsupported option");
	}
	return SMTP_OK;
}

static enum smtp_rc smtp_cmd_params(struct smtp_cmd *cmd, const char *p,
                                    const char *end)
{
	while ((p = smtp_cmd_skip_space(p, end)) < end) {
		size_t n = smtp_cmd_token(p, end);
		const char *eq = memchr(p, '=', n);
		size_t klen = eq != NULL ? (size_t)(eq - p) : n;
		const char *v = eq != NULL ? eq + 1 : p + n;
		size_t vlen = eq != NULL ? n - klen - 1 : 0;
		enum smtp_rc rc;

		if (klen == 0)
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad parameter syntax");
		if (cmd->verb == SMTP_CMD_MAIL)
			rc = smtp_cmd_mail_param(cmd, p, klen, v, vlen, eq != NULL);
		else
			rc = smtp_cmd_rcpt_param(cmd, p, klen, v, vlen, eq != NULL);
		if (rc != SMTP_OK)
			return rc;
		p += n;
	}
	return SMTP_OK;
}

/* MAIL FROM:<path> [params] / RCPT TO:<path> [params]. RFC 5321 §4.1.1.2
 * has no space after the colon; many clients send one, so allow it. */
static enum smtp_rc smtp_cmd_mailrcpt(struct smtp_cmd *cmd,
                                      const struct smtp_cmd_verbdef *def)
{
	const char *kw = cmd->verb == SMTP_CMD_MAIL ? "FROM:" : "TO:";
	size_t kwlen = strlen(kw);
	const char *p = cmd->arg, *end = cmd->arg + cmd->arg_len;
	enum smtp_rc rc;

	if (cmd->arg_len < kwlen || strncasecmp(p, kw, kwlen) != 0)
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, def->syntax);
	p = smtp_cmd_skip_space(p + kwlen, end);
	rc = smtp_cmd_path(&p, end, cmd, def->syntax);
	if (rc != SMTP_OK)
		return rc;
	return smtp_cmd_params(cmd, p, end);
}

static enum smtp_rc smtp_cmd_bdat(struct smtp_cmd *cmd,
                                  const struct smtp_cmd_verbdef *def)
{
	const char *p = cmd->arg, *end = cmd->arg + cmd->arg_len;
	size_t n = smtp_cmd_token(p, end);
	int overflow;

	if (smtp_cmd_number(p, n, &cmd->chunk_size, &overflow) < 0 || overflow)
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, def->syntax);
	p = smtp_cmd_skip_space(p + n, end);
	if (p == end)
		return SMTP_OK;
	n = smtp_cmd_token(p, end);
	if (!smtp_cmd_eq(p, n, "LAST") || smtp_cmd_skip_space(p + n, end) != end)
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, def->syntax);
	cmd->last = 1;
	return SMTP_OK;
}

/* RFC 4954 §4: AUTH mechanism [initial-response]; the mechanism name is
 * 1-20 of A-Z 0-9 - _; the response is base64 or "=". */
static enum smtp_rc smtp_cmd_auth(struct smtp_cmd *cmd,
                                  const struct smtp_cmd_verbdef *def)
{
	const char *p = cmd->arg, *end = cmd->arg + cmd->arg_len;
	size_t n = smtp_cmd_token(p, end), i;

	if (n == 0 || n > 20)
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, def->syntax);
	for (i = 0; i < n; i++) {
		char c = p[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, def->syntax);
	}
	cmd->mech = p;
	cmd->mech_len = n;
	p = smtp_cmd_skip_space(p + n, end);
	if (p == end)
		return SMTP_OK;
	n = smtp_cmd_token(p, end);
	if (smtp_cmd_skip_space(p + n, end) != end)
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, def->syntax);
	for (i = 0; i < n; i++) {
		char c = p[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '+' || c == '/' ||
		      c == '='))
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.2 Invalid base64 data in initial response");
	}
	cmd->initial = p;
	cmd->initial_len = n;
	return SMTP_OK;
}

static enum smtp_rc smtp_cmd_xforward(struct smtp_cmd *cmd)
{
	const char *p = cmd->arg, *end = cmd->arg + cmd->arg_len;

	while ((p = smtp_cmd_skip_space(p, end)) < end) {
		size_t n = smtp_cmd_token(p, end), i, klen;
		const char *eq = memchr(p, '=', n);
		struct smtp_cmd_xattr *a;

		if (eq == NULL || cmd->nxattr >= SMTP_CMD_MAX_XATTR)
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad XFORWARD command syntax");
		klen = (size_t)(eq - p);
		for (i = 0; i < sizeof(smtp_cmd_xfwd_names) /
		                sizeof(smtp_cmd_xfwd_names[0]); i++)
			if (smtp_cmd_eq(p, klen, smtp_cmd_xfwd_names[i]))
				break;
		if (i == sizeof(smtp_cmd_xfwd_names) / sizeof(smtp_cmd_xfwd_names[0]))
			return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX,
			                     "5.5.4 Bad XFORWARD attribute name");
		a = &cmd->xattr[cmd->nxattr++];
		a->name = p;
		a->name_len = klen;
		a->value = eq + 1;
		a->value_len = n - klen - 1;
		p += n;
	}
	return SMTP_OK;
}

static enum smtp_rc smtp_cmd_args(struct smtp_cmd *cmd,
                                  const struct smtp_cmd_verbdef *def)
{
	if (def->args == SMTP_CMD_ARG_NONE && cmd->arg_len > 0)
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, def->syntax);
	if (def->args == SMTP_CMD_ARG_REQ && cmd->arg_len == 0)
		return smtp_cmd_fail(cmd, SMTP_ERR_SYNTAX, def->syntax);
	switch (cmd->verb) {
	case SMTP_CMD_EHLO:
	case SMTP_CMD_HELO:
		/* the first word is the name; anything after is ignored, as
		 * Postfix does */
		cmd->arg_len = smtp_cmd_token(cmd->arg, cmd->arg + cmd->arg_len);
		return SMTP_OK;
	case SMTP_CMD_MAIL:
	case SMTP_CMD_RCPT:
		return smtp_cmd_mailrcpt(cmd, def);
	case SMTP_CMD_BDAT:
		return smtp_cmd_bdat(cmd, def);
	case SMTP_CMD_AUTH:
		return smtp_cmd_auth(cmd, def);
	case SMTP_CMD_XFORWARD:
		return smtp_cmd_xforward(cmd);
	default:
		return SMTP_OK;
	}
}

enum smtp_rc smtp_cmd_parse(const char *line, size_t len,
                            struct smtp_cmd *cmd)
{
	const char *end = line + len, *p = smtp_cmd_skip_space(line, end);
	size_t vlen = smtp_cmd_token(p, end), i;
	const struct smtp_cmd_verbdef *def = NULL;

	memset(cmd, 0, sizeof(*cmd));
	for (i = 0; i < sizeof(smtp_cmd_verbs) / sizeof(smtp_cmd_verbs[0]); i++)
		if (smtp_cmd_eq(p, vlen, smtp_cmd_verbs[i].name))
			def = &smtp_cmd_verbs[i];
	if (def == NULL) {
		for (i = 0; i < sizeof(smtp_cmd_http) / sizeof(smtp_cmd_http[0]); i++)
			if (smtp_cmd_eq(p, vlen, smtp_cmd_http[i])) {
				cmd->verb = SMTP_CMD_HTTP;
				return SMTP_OK;
			}
		return smtp_cmd_fail(cmd, SMTP_ERR_UNKNOWN,
		                     "5.5.2 Error: command not recognized");
	}
	cmd->verb = def->verb;
	p = smtp_cmd_skip_space(p + vlen, end);
	while (end > p && smtp_cmd_is_space(end[-1]))
		end--;
	cmd->arg = p;
	cmd->arg_len = (size_t)(end - p);
	return smtp_cmd_args(cmd, def);
}

const char *smtp_cmd_name(enum smtp_verb verb)
{
	size_t i;

	for (i = 0; i < sizeof(smtp_cmd_verbs) / sizeof(smtp_cmd_verbs[0]); i++)
		if (smtp_cmd_verbs[i].verb == verb)
			return smtp_cmd_verbs[i].name;
	return verb == SMTP_CMD_HTTP ? "HTTP" : "unknown";
}
