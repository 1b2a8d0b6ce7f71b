/* sub_policy: mynetworks, restriction lists and header scans for the
 * submission daemon. Pure except the two constructors. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "sub_policy.h"

struct sub_policy_cidr {
	int family;
	unsigned char addr[16];
	int bits;
};

struct sub_policy_net {
	struct sub_policy_cidr *v;
	size_t n;
};

/* "[::1]/128", "10.0.0.0/8", "192.0.2.7" */
static int sub_policy_cidr_parse(const char *s, struct sub_policy_cidr *c)
{
	char host[64];
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	long bits = -1;

	if (hl > 0 && s[0] == '[') {
		if (hl < 2 || s[hl - 1] != ']')
			return -1;
		s++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, c->addr) == 1) {
		c->family = AF_INET;
		c->bits = 32;
	} else if (inet_pton(AF_INET6, host, c->addr) == 1) {
		c->family = AF_INET6;
		c->bits = 128;
	} else {
		return -1;
	}
	if (slash != NULL) {
		if (cfg_parse_int(slash + 1, &bits) < 0 || bits < 0 ||
		    bits > c->bits)
			return -1;
		c->bits = (int)bits;
	}
	return 0;
}

struct sub_policy_net *sub_policy_net_new(const char *list, struct err *err)
{
	char **items = cfg_list_split(list ? list : "");
	struct sub_policy_net *n;
	size_t cnt = 0;

	if (items == NULL)
		return err_set(err, 1, "out of memory"), NULL;
	while (items[cnt] != NULL)
		cnt++;
	n = calloc(1, sizeof(*n));
	if (n == NULL || (cnt > 0 && (n->v = calloc(cnt, sizeof(*n->v))) == NULL)) {
		free(n);
		cfg_list_free(items);
		return err_set(err, 1, "out of memory"), NULL;
	}
	for (size_t i = 0; i < cnt; i++) {
		if (sub_policy_cidr_parse(items[i], &n->v[i]) < 0) {
			err_set(err, 0, "mynetworks: bad network \"%s\"",
				items[i]);
			cfg_list_free(items);
			sub_policy_net_free(n);
			return NULL;
		}
	}
	n->n = cnt;
	cfg_list_free(items);
	return n;
}

static int sub_policy_prefix_eq(const unsigned char *a, const unsigned char *b,
				int bits)
{
	int full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ b[full]) & (0xff << (8 - rest))) == 0;
}

int sub_policy_net_match(const struct sub_policy_net *n, const char *addr)
{
	unsigned char a4[4], a6[16];
	int is4, is6;

	if (n == NULL || addr == NULL)
		return 0;
	is4 = inet_pton(AF_INET, addr, a4) == 1;
	is6 = !is4 && inet_pton(AF_INET6, addr, a6) == 1;
	for (size_t i = 0; i < n->n; i++) {
		const struct sub_policy_cidr *c = &n->v[i];

		if (c->family == AF_INET && is4 &&
		    sub_policy_prefix_eq(c->addr, a4, c->bits))
			return 1;
		if (c->family == AF_INET6 && is6 &&
		    sub_policy_prefix_eq(c->addr, a6, c->bits))
			return 1;
	}
	return 0;
}

void sub_policy_net_free(struct sub_policy_net *n)
{
	if (n == NULL)
		return;
	free(n->v);
	free(n);
}

static const struct {
	const char *name;
	enum sub_policy_word w;
} sub_policy_words[] = {
	{ "permit_mynetworks", SUB_R_PERMIT_MYNETWORKS },
	{ "permit_sasl_authenticated", SUB_R_PERMIT_SASL_AUTHENTICATED },
	{ "reject_unauth_destination", SUB_R_REJECT_UNAUTH_DESTINATION },
	{ "permit_auth_destination", SUB_R_PERMIT_AUTH_DESTINATION },
	{ "reject_sender_login_mismatch", SUB_R_REJECT_SENDER_LOGIN_MISMATCH },
	{ "permit", SUB_R_PERMIT },
	{ "reject", SUB_R_REJECT },
};

int sub_policy_restr_parse(const char *text, struct sub_policy_restr *r,
			   struct err *err)
{
	char **items = cfg_list_split(text ? text : "");
	int rc = 0;

	if (items == NULL)
		return err_set(err, 1, "out of memory");
	r->n = 0;
	for (size_t i = 0; items[i] != NULL && rc == 0; i++) {
		size_t k, nw = sizeof(sub_policy_words) /
			       sizeof(sub_policy_words[0]);

		for (k = 0; k < nw; k++)
			if (strcasecmp(items[i], sub_policy_words[k].name) == 0)
				break;
		if (k == nw)
			rc = err_set(err, 0, "unknown restriction \"%s\"",
				     items[i]);
		else if (r->n >= SUB_R_MAX)
			rc = err_set(err, 0, "too many restrictions");
		else
			r->w[r->n++] = sub_policy_words[k].w;
	}
	cfg_list_free(items);
	return rc;
}

enum sub_policy_verdict sub_policy_eval(const struct sub_policy_restr *r,
					const struct sub_policy_facts *f)
{
	for (int i = 0; i < r->n; i++) {
		switch (r->w[i]) {
		case SUB_R_PERMIT_MYNETWORKS:
			if (f->mynetworks)
				return SUB_V_PERMIT;
			break;
		case SUB_R_PERMIT_SASL_AUTHENTICATED:
			if (f->authenticated)
				return SUB_V_PERMIT;
			break;
		case SUB_R_REJECT_UNAUTH_DESTINATION:
			if (!f->local_dest)
				return SUB_V_REJECT_RELAY;
			break;
		case SUB_R_PERMIT_AUTH_DESTINATION:
			if (f->local_dest)
				return SUB_V_PERMIT;
			break;
		case SUB_R_REJECT_SENDER_LOGIN_MISMATCH:
			if (f->login_mismatch)
				return SUB_V_REJECT_LOGIN;
			break;
		case SUB_R_PERMIT:
			return SUB_V_PERMIT;
		case SUB_R_REJECT:
			return SUB_V_REJECT;
		}
	}
	return SUB_V_DUNNO;
}

int sub_policy_restr_has(const struct sub_policy_restr *r,
			 enum sub_policy_word w)
{
	for (int i = 0; i < r->n; i++)
		if (r->w[i] == w)
			return 1;
	return 0;
}

size_t sub_policy_hdr_len(const char *msg, size_t len)
{
	size_t i = 0;

	while (i < len) {
		const char *nl = memchr(msg + i, '\n', len - i);
		size_t ll;

		if (nl == NULL)
			return len;
		ll = (size_t)(nl - (msg + i));
		if (ll == 0 || (ll == 1 && msg[i] == '\r'))
			return (size_t)(nl - msg) + 1;
		i = (size_t)(nl - msg) + 1;
	}
	return len;
}

/* Calls fn for each field start (not continuation lines) of the header
 * section; stops when fn returns non-zero, and returns that. */
static int sub_policy_fields(const char *msg, size_t len,
			     int (*fn)(const char *line, size_t ll, void *a),
			     void *arg)
{
	size_t hl = sub_policy_hdr_len(msg, len), i = 0;

	while (i < hl) {
		const char *nl = memchr(msg + i, '\n', hl - i);
		size_t ll = nl ? (size_t)(nl - (msg + i)) : hl - i;
		int rc;

		if (ll > 0 && msg[i + ll - 1] == '\r')
			ll--;
		if (ll > 0 && msg[i] != ' ' && msg[i] != '\t') {
			rc = fn(msg + i, ll, arg);
			if (rc != 0)
				return rc;
		}
		if (nl == NULL)
			break;
		i = (size_t)(nl - msg) + 1;
	}
	return 0;
}

static int sub_policy_name_is(const char *line, size_t ll, const char *name)
{
	size_t nl = strlen(name), i = nl;

	if (ll <= nl || strncasecmp(line, name, nl) != 0)
		return 0;
	/* RFC 5322 §3.6.8 allows no space before ':', but RFC 822 did;
	 * accept white space there as readers do. */
	while (i < ll && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i < ll && line[i] == ':';
}

static int sub_policy_has_fn(const char *line, size_t ll, void *a)
{
	return sub_policy_name_is(line, ll, a);
}

int sub_policy_hdr_has(const char *msg, size_t len, const char *name)
{
	return sub_policy_fields(msg, len, sub_policy_has_fn, (void *)name);
}

static int sub_policy_dt_fn(const char *line, size_t ll, void *a)
{
	const char *addr = a, *v;
	size_t al = strlen(addr), vl;

	if (!sub_policy_name_is(line, ll, "Delivered-To"))
		return 0;
	v = memchr(line, ':', ll) + 1;
	vl = ll - (size_t)(v - line);
	while (vl > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	return vl == al && strncasecmp(v, addr, al) == 0;
}

int sub_policy_delivered_to(const char *msg, size_t len, const char *addr)
{
	return sub_policy_fields(msg, len, sub_policy_dt_fn, (void *)addr);
}

size_t sub_policy_insert_at(const char *msg, size_t len)
{
	size_t hl = sub_policy_hdr_len(msg, len), i = 0, at = 0;

	while (i < hl) {
		const char *nl = memchr(msg + i, '\n', hl - i);
		size_t ll = nl ? (size_t)(nl - (msg + i)) : hl - i;

		if (ll == 0 || (ll == 1 && msg[i] == '\r'))
			break;  /* the empty line ending the header section */
		if (msg[i] != ' ' && msg[i] != '\t' &&
		    !sub_policy_name_is(msg + i, ll, "Received") &&
		    !sub_policy_name_is(msg + i, ll, "Return-Path"))
			break;
		if (nl == NULL)
			return hl;
		i = (size_t)(nl - msg) + 1;
		at = i;
	}
	return at;
}

int sub_policy_owner_match(const char *owners, const char *login)
{
	char **v;
	int hit = 0;

	if (owners == NULL || login == NULL)
		return 0;
	v = cfg_list_split(owners);
	if (v == NULL)
		return 0;
	for (size_t i = 0; v[i] != NULL && !hit; i++)
		hit = strcasecmp(v[i], login) == 0;
	cfg_list_free(v);
	return hit;
}

int sub_policy_token_ok(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return 0;
	for (; s[n] != '\0'; n++) {
		char c = s[n];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return 0;
	}
	return n >= 1 && n <= 64;
}
