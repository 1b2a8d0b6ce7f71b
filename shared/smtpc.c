/* smtpc: the SMTP client session. Setup (connect, greeting, EHLO,
 * STARTTLS, AUTH) runs once per connection and moves to the next address
 * when a host is unusable; then each smtpc_send runs one transaction as a
 * list of commands whose replies are matched in order (RFC 2920 §3.1: all
 * at once with PIPELINING, one by one without). The callback is always
 * run from its own event, never from inside a bufferevent callback, so
 * the caller may free or reuse the connection from it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include "sasl_glue.h"
#include "smtp_reply.h"
#include "smtpc.h"
#include "tls.h"

#define SMTPC_REPLY_MAX (64 * 1024)
#define SMTPC_BODY_CHUNK (64 * 1024)
#define SMTPC_OUT_HIGH (256 * 1024)

enum smtpc_state {
	SMTPC_ST_DOWN,        /* no connection (never made, or lost) */
	SMTPC_ST_CONNECT,
	SMTPC_ST_GREETING,
	SMTPC_ST_EHLO,
	SMTPC_ST_HELO,
	SMTPC_ST_STARTTLS,
	SMTPC_ST_HANDSHAKE,
	SMTPC_ST_AUTH,
	SMTPC_ST_IDLE,
	SMTPC_ST_TXN,         /* waiting for command replies */
	SMTPC_ST_BODY,        /* writing the message, then its reply */
};

enum smtpc_kind { SMTPC_K_RSET, SMTPC_K_XFORWARD, SMTPC_K_MAIL,
	SMTPC_K_RCPT, SMTPC_K_DATA, SMTPC_K_DOT };

struct smtpc_cmd {
	enum smtpc_kind kind;
	size_t ri;            /* RCPT: index into res.r */
	char *line;           /* with CRLF */
};

struct smtpc {
	struct event_base *base;
	struct smtpc_conf conf;
	char *helo_name;
	struct smtpc_addr *addrs;
	size_t naddrs, ai;
	char *user, *pass;
	struct bufferevent *bev;
	unsigned gen;         /* changes whenever bev is replaced or closed */
	enum smtpc_state st;
	/* what the server offered in its last EHLO */
	int pipelining, starttls, size_ok, eightbit, utf8, dsn, tls;
	char *auth_mechs, *xfwd_attrs;
	struct sasl_glue_client *sasl;
	char relay[320];
	char why[512];        /* reason the session could not be used */
	int used;             /* a transaction ran on this connection */
	int tls_refused;      /* "may": the server refused STARTTLS */
	size_t *idx, nidx;    /* recipients (indexes into env->rcpts) */
	/* the transaction */
	const struct queue_env *env;
	const char *data;
	size_t len, data_off;
	int at_bol, mail_failed;
	size_t naccepted;
	struct smtpc_cmd *cmds;
	size_t ncmds, isent, irep;
	struct smtpc_result res;
	smtpc_done_cb *cb;
	void *arg;
	struct event *done_ev;
};

static void smtpc_read(struct bufferevent *bev, void *arg);
static void smtpc_write(struct bufferevent *bev, void *arg);
static void smtpc_event(struct bufferevent *bev, short what, void *arg);
static void smtpc_connect_next(struct smtpc *c);
static void smtpc_txn_start(struct smtpc *c);

/* ---- small helpers ------------------------------------------------------ */

size_t smtpc_xtext(const char *in, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	unsigned char ch;

	if (outsz == 0)
		return 0;
	for (; in != NULL && *in != '\0'; in++) {
		ch = (unsigned char)*in;
		if (ch > 0x20 && ch < 0x7f && ch != '+' && ch != '=') {
			if (o + 1 >= outsz)
				break;
			out[o++] = (char)ch;
		} else {
			if (o + 3 >= outsz)
				break;
			out[o++] = '+';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
	return o;
}

static void smtpc_set_relay(struct smtpc *c)
{
	const struct smtpc_addr *a = &c->addrs[c->ai];
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (a->sa.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)&a->sa;
		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		port = ntohs(s->sin_port);
	} else if (a->sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)&a->sa;
		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		port = ntohs(s->sin6_port);
	}
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%d", a->host, ip, port);
}

static void smtpc_timeout(struct smtpc *c, int seconds)
{
	struct timeval tv = { seconds, 0 };

	if (c->bev != NULL)
		bufferevent_set_timeouts(c->bev, seconds > 0 ? &tv : NULL,
		    seconds > 0 ? &tv : NULL);
}

/* Output is assembled in a staging buffer and handed to the bufferevent
 * in one piece: after STARTTLS, libevent's OpenSSL filter runs SSL_write
 * for every evbuffer_add, so line-by-line adds made one TLS record per
 * body line (issue 12). Without memory for a stage, write directly. */
static struct evbuffer *smtpc_stage(struct smtpc *c)
{
	struct evbuffer *stage = evbuffer_new();

	return stage != NULL ? stage : bufferevent_get_output(c->bev);
}

static void smtpc_stage_send(struct smtpc *c, struct evbuffer *stage)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (stage == out)
		return;
	if (evbuffer_get_length(stage) > 0)
		evbuffer_add_buffer(out, stage);
	evbuffer_free(stage);
}

static void smtpc_send_line(struct smtpc *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void smtpc_send_line(struct smtpc *c, const char *fmt, ...)
{
	struct evbuffer *stage = smtpc_stage(c);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(stage, fmt, ap);
	va_end(ap);
	evbuffer_add(stage, "\r\n", 2);
	smtpc_stage_send(c, stage);
}

/* One-line copy of a reply ("550 5.1.1 text / more text"). */
static char *smtpc_reply_text(const struct smtp_reply *r)
{
	size_t pos = 0, tl, o, cap = r->len + 16;
	const char *t;
	char *s = malloc(cap);

	if (s == NULL)
		return NULL;
	o = (size_t)snprintf(s, cap, "%d", r->code);
	while (smtp_reply_line(r, &pos, &t, &tl) && o + tl + 4 < cap) {
		s[o++] = ' ';
		memcpy(s + o, t, tl);
		o += tl;
	}
	s[o] = '\0';
	for (o = 0; s[o] != '\0'; o++)
		if ((unsigned char)s[o] < 0x20)
			s[o] = ' ';
	return s;
}

static void smtpc_close(struct smtpc *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
	c->gen++;
	sasl_glue_client_free(c->sasl);
	c->sasl = NULL;
	c->st = SMTPC_ST_DOWN;
}

/* ---- results ------------------------------------------------------------ */

static void smtpc_result_set(struct smtpc *c, size_t ri, int code,
    const char *text)
{
	struct smtpc_rcpt_result *r = &c->res.r[ri];

	free(r->reply);
	r->code = code;
	r->reply = strdup(text != NULL ? text : "");
}

static void smtpc_cmds_free(struct smtpc *c)
{
	size_t i;

	for (i = 0; i < c->ncmds; i++)
		free(c->cmds[i].line);
	free(c->cmds);
	c->cmds = NULL;
	c->ncmds = c->isent = c->irep = 0;
}

static void smtpc_res_free(struct smtpc *c)
{
	size_t i;

	for (i = 0; i < c->res.n; i++)
		free(c->res.r[i].reply);
	free(c->res.r);
	memset(&c->res, 0, sizeof(c->res));
}

static void smtpc_done_run(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc *c = arg;
	smtpc_done_cb *cb = c->cb;
	void *cbarg = c->arg;
	struct smtpc_result res = c->res;

	/* Hand over first: the callback may start the next message. */
	memset(&c->res, 0, sizeof(c->res));
	c->cb = NULL;
	c->env = NULL;
	c->data = NULL;
	cb(cbarg, c, &res);
	{
		size_t i;
		for (i = 0; i < res.n; i++)
			free(res.r[i].reply);
		free(res.r);
	}
}

/* The transaction is over: every recipient without a final answer gets
 * code/text, and the callback is scheduled. */
static void smtpc_finish(struct smtpc *c, int code, const char *text)
{
	struct timeval zero = { 0, 0 };
	size_t i;

	for (i = 0; i < c->res.n; i++)
		if (c->res.r[i].code == 0)
			smtpc_result_set(c, i, code, text);
	snprintf(c->res.relay, sizeof(c->res.relay), "%s",
	    c->relay[0] ? c->relay : "none");
	c->res.tls = c->tls;
	smtpc_cmds_free(c);
	free(c->idx);
	c->idx = NULL;
	c->nidx = 0;
	if (c->st == SMTPC_ST_TXN || c->st == SMTPC_ST_BODY) {
		c->st = SMTPC_ST_IDLE;
		c->used = 1;
		smtpc_timeout(c, 0);
	}
	evtimer_add(c->done_ev, &zero);
}

/* The connection broke or a host turned out unusable. */
static void smtpc_fail(struct smtpc *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void smtpc_fail(struct smtpc *c, const char *fmt, ...)
{
	enum smtpc_state st = c->st;
	va_list ap;
	char text[600];

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	smtpc_close(c);
	if (c->cb == NULL)
		return;   /* idle connection closed: nothing to report */
	if (st < SMTPC_ST_IDLE && c->ai + 1 < c->naddrs) {
		c->ai++;
		smtpc_connect_next(c);
		return;
	}
	snprintf(text, sizeof(text), "451 4.4.2 %s", c->why);
	smtpc_finish(c, 451, text);
}

/* ---- session setup ------------------------------------------------------ */

static void smtpc_caps_reset(struct smtpc *c)
{
	c->pipelining = c->starttls = c->size_ok = c->eightbit = 0;
	c->utf8 = c->dsn = 0;
	free(c->auth_mechs);
	free(c->xfwd_attrs);
	c->auth_mechs = c->xfwd_attrs = NULL;
}

static char *smtpc_param_dup(const char *p, size_t n)
{
	return strndup(p, n);
}

static void smtpc_caps(struct smtpc *c, const struct smtp_reply *r)
{
	const char *p;
	size_t pl;

	smtpc_caps_reset(c);
	c->pipelining = smtp_reply_ehlo_has(r, "PIPELINING", NULL, NULL);
	c->starttls = smtp_reply_ehlo_has(r, "STARTTLS", NULL, NULL);
	c->size_ok = smtp_reply_ehlo_has(r, "SIZE", NULL, NULL);
	c->eightbit = smtp_reply_ehlo_has(r, "8BITMIME", NULL, NULL);
	c->utf8 = smtp_reply_ehlo_has(r, "SMTPUTF8", NULL, NULL);
	c->dsn = smtp_reply_ehlo_has(r, "DSN", NULL, NULL);
	if (smtp_reply_ehlo_has(r, "AUTH", &p, &pl))
		c->auth_mechs = smtpc_param_dup(p, pl);
	if (smtp_reply_ehlo_has(r, "XFORWARD", &p, &pl))
		c->xfwd_attrs = smtpc_param_dup(p, pl);
}

static void smtpc_ready(struct smtpc *c)
{
	c->st = SMTPC_ST_IDLE;
	smtpc_timeout(c, 0);
	if (c->cb != NULL)
		smtpc_txn_start(c);
}

static int smtpc_is_literal(const char *host)
{
	unsigned char b[16];

	return inet_pton(AF_INET, host, b) == 1 ||
	    inet_pton(AF_INET6, host, b) == 1;
}

static void smtpc_auth_start(struct smtpc *c)
{
	struct err err;
	const char *mech = NULL;
	char *out = NULL;
	enum sasl_glue_rc rc;

	c->sasl = sasl_glue_client_new("smtp", c->addrs[c->ai].host, c->user,
	    c->pass, tls_ssf(c->bev), &err);
	if (c->sasl == NULL) {
		smtpc_fail(c, "SASL client setup for %s: %s", c->relay, err.msg);
		return;
	}
	rc = sasl_glue_client_start(c->sasl, c->auth_mechs, &mech, &out);
	if (rc != SASL_GLUE_CONTINUE && rc != SASL_GLUE_OK) {
		smtpc_fail(c, "SASL authentication with %s failed: %s", c->relay,
		    rc == SASL_GLUE_NOMECH ? "no common mechanism" :
		    sasl_glue_client_error(c->sasl));
		free(out);
		return;
	}
	c->st = SMTPC_ST_AUTH;
	if (out != NULL)
		smtpc_send_line(c, "AUTH %s %s", mech, out);
	else
		smtpc_send_line(c, "AUTH %s", mech);
	free(out);
}

/* After EHLO (again after TLS): STARTTLS, AUTH, or ready. */
static void smtpc_after_ehlo(struct smtpc *c)
{
	if (!c->tls && c->conf.tls_level != SMTPC_TLS_NONE && c->starttls &&
	    c->conf.tls_ctx != NULL && !c->tls_refused) {
		c->st = SMTPC_ST_STARTTLS;
		smtpc_send_line(c, "STARTTLS");
		return;
	}
	if (!c->tls && c->conf.tls_level == SMTPC_TLS_ENCRYPT) {
		smtpc_fail(c, "TLS is required, but was not offered by host %s",
		    c->relay);
		return;
	}
	if (c->user != NULL && c->auth_mechs != NULL) {
		smtpc_auth_start(c);
		return;
	}
	smtpc_ready(c);
}

static void smtpc_on_setup_reply(struct smtpc *c, const struct smtp_reply *r)
{
	char *t = NULL;
	struct bufferevent *tb;
	struct err err;

	switch (c->st) {
	case SMTPC_ST_GREETING:
		if (r->code != 220)
			goto refused;
		c->st = SMTPC_ST_EHLO;
		smtpc_send_line(c, "EHLO %s", c->helo_name);
		return;
	case SMTPC_ST_EHLO:
		if (r->code / 100 == 2) {
			smtpc_caps(c, r);
			smtpc_after_ehlo(c);
			return;
		}
		if (c->tls)
			goto refused;
		/* RFC 5321 §3.2: fall back to HELO; no extensions then. */
		c->st = SMTPC_ST_HELO;
		smtpc_send_line(c, "HELO %s", c->helo_name);
		return;
	case SMTPC_ST_HELO:
		if (r->code / 100 != 2)
			goto refused;
		smtpc_caps_reset(c);
		smtpc_after_ehlo(c);
		return;
	case SMTPC_ST_STARTTLS:
		if (r->code != 220) {
			if (c->conf.tls_level == SMTPC_TLS_ENCRYPT)
				goto refused;
			/* "may": go on in plaintext after a refusal */
			c->tls_refused = 1;
			smtpc_after_ehlo(c);
			return;
		}
		/* RFC 3207 §4.2: nothing of the plaintext session survives. */
		evbuffer_drain(bufferevent_get_input(c->bev),
		    evbuffer_get_length(bufferevent_get_input(c->bev)));
		tb = tls_bev_starttls_client(c->bev, c->conf.tls_ctx,
		    smtpc_is_literal(c->addrs[c->ai].host) ? NULL :
		    c->addrs[c->ai].host, &err);
		if (tb == NULL) {
			smtpc_fail(c, "TLS setup with %s: %s", c->relay, err.msg);
			return;
		}
		c->bev = tb;
		c->gen++;
		c->st = SMTPC_ST_HANDSHAKE;
		return;
	case SMTPC_ST_AUTH:
		if (r->code == 235) {
			sasl_glue_client_free(c->sasl);
			c->sasl = NULL;
			smtpc_ready(c);
			return;
		}
		if (r->code == 334 && c->sasl != NULL) {
			char *in = strndup(r->last, r->lastlen), *out = NULL;
			enum sasl_glue_rc rc = in != NULL ?
			    sasl_glue_client_step(c->sasl, in, &out) :
			    SASL_GLUE_TEMPFAIL;
			free(in);
			if (rc == SASL_GLUE_CONTINUE || rc == SASL_GLUE_OK) {
				smtpc_send_line(c, "%s", out != NULL ? out : "");
				free(out);
				return;
			}
			free(out);
			smtpc_send_line(c, "*");
			smtpc_fail(c, "SASL authentication with %s failed: bad "
			    "challenge", c->relay);
			return;
		}
		t = smtpc_reply_text(r);
		smtpc_fail(c, "SASL authentication failed; server %s said: %s",
		    c->relay, t != NULL ? t : "?");
		free(t);
		return;
	default:
		return;
	}
refused:
	t = smtpc_reply_text(r);
	smtpc_fail(c, "host %s refused to talk to me: %s", c->relay,
	    t != NULL ? t : "?");
	free(t);
}

static void smtpc_connect_next(struct smtpc *c)
{
	const struct smtpc_addr *a = &c->addrs[c->ai];
	socklen_t sl = a->sa.ss_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	smtpc_close(c);
	smtpc_caps_reset(c);
	c->tls = 0;
	c->tls_refused = 0;
	c->used = 0;
	smtpc_set_relay(c);
	c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		smtpc_fail(c, "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, smtpc_read, smtpc_write, smtpc_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, SMTPC_REPLY_MAX);
	bufferevent_setwatermark(c->bev, EV_WRITE, SMTPC_BODY_CHUNK, 0);
	c->st = SMTPC_ST_CONNECT;
	smtpc_timeout(c, c->conf.connect_timeout);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&a->sa,
	    (int)sl) < 0) {
		smtpc_fail(c, "connect to %s: %s", c->relay,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return;
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- the transaction ---------------------------------------------------- */

static int smtpc_ascii(const char *s)
{
	for (; s != NULL && *s; s++)
		if ((unsigned char)*s >= 0x80)
			return 0;
	return 1;
}

static int smtpc_cmd_add(struct smtpc *c, enum smtpc_kind kind, size_t ri,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int smtpc_cmd_add(struct smtpc *c, enum smtpc_kind kind, size_t ri,
    const char *fmt, ...)
{
	va_list ap;
	char *line = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	c->cmds[c->ncmds].kind = kind;
	c->cmds[c->ncmds].ri = ri;
	c->cmds[c->ncmds].line = line;
	c->ncmds++;
	return 0;
}

static int smtpc_has_attr(const struct smtpc *c, const char *a)
{
	size_t al = strlen(a);
	const char *p = c->xfwd_attrs;

	while (p != NULL && *p) {
		while (*p == ' ')
			p++;
		if (strncasecmp(p, a, al) == 0 && (p[al] == ' ' || p[al] == '\0'))
			return 1;
		p = strchr(p, ' ');
	}
	return 0;
}

/* Postfix XFORWARD: the original client's attributes, so the next hop
 * logs and checks the real client. Kept to short lines. */
static int smtpc_cmds_xforward(struct smtpc *c)
{
	const struct queue_env *e = c->env;
	char name[300], addr[300], proto[80], helo[300];
	int rc = 0;

	smtpc_xtext(e->client_name ? e->client_name : "[UNAVAILABLE]", name,
	    sizeof(name));
	if (e->client_addr != NULL && strchr(e->client_addr, ':') != NULL) {
		char tmp[120];
		snprintf(tmp, sizeof(tmp), "IPV6:%s", e->client_addr);
		smtpc_xtext(tmp, addr, sizeof(addr));
	} else {
		smtpc_xtext(e->client_addr ? e->client_addr : "[UNAVAILABLE]",
		    addr, sizeof(addr));
	}
	smtpc_xtext(e->proto ? e->proto : "[UNAVAILABLE]", proto, sizeof(proto));
	smtpc_xtext(e->helo ? e->helo : "[UNAVAILABLE]", helo, sizeof(helo));
	if (smtpc_has_attr(c, "NAME") && smtpc_has_attr(c, "ADDR") &&
	    smtpc_has_attr(c, "PROTO"))
		rc |= smtpc_cmd_add(c, SMTPC_K_XFORWARD, 0,
		    "XFORWARD NAME=%s ADDR=%s PROTO=%s\r\n", name, addr, proto);
	if (smtpc_has_attr(c, "HELO"))
		rc |= smtpc_cmd_add(c, SMTPC_K_XFORWARD, 0, "XFORWARD HELO=%s\r\n",
		    helo);
	if (smtpc_has_attr(c, "IDENT"))
		rc |= smtpc_cmd_add(c, SMTPC_K_XFORWARD, 0,
		    "XFORWARD IDENT=%s\r\n", e->qid);
	return rc;
}

static int smtpc_cmds_build(struct smtpc *c)
{
	const size_t *idx = c->idx;
	size_t nidx = c->nidx;
	const struct queue_env *e = c->env;
	char params[128];
	size_t i;
	int rc = 0, utf8 = e->smtputf8 && !smtpc_ascii(e->sender);

	c->cmds = calloc(nidx + 8, sizeof(*c->cmds));
	if (c->cmds == NULL)
		return -1;
	if (c->used)
		rc |= smtpc_cmd_add(c, SMTPC_K_RSET, 0, "RSET\r\n");
	if (c->conf.xforward && c->xfwd_attrs != NULL)
		rc |= smtpc_cmds_xforward(c);
	for (i = 0; i < nidx; i++)
		if (e->smtputf8 && !smtpc_ascii(e->rcpts[idx[i]].addr))
			utf8 = 1;
	params[0] = '\0';
	if (c->size_ok)
		snprintf(params, sizeof(params), " SIZE=%zu", c->len);
	if (e->body8bit && c->eightbit)
		strncat(params, " BODY=8BITMIME", sizeof(params) - strlen(params) - 1);
	if (utf8 && c->utf8)
		strncat(params, " SMTPUTF8", sizeof(params) - strlen(params) - 1);
	rc |= smtpc_cmd_add(c, SMTPC_K_MAIL, 0, "MAIL FROM:<%s>%s\r\n", e->sender,
	    params);
	for (i = 0; i < nidx; i++) {
		const struct queue_rcpt *r = &e->rcpts[idx[i]];
		if (c->dsn && r->orcpt != NULL && strchr(r->orcpt, ' ') == NULL)
			rc |= smtpc_cmd_add(c, SMTPC_K_RCPT, i,
			    "RCPT TO:<%s> ORCPT=%s\r\n", r->addr, r->orcpt);
		else
			rc |= smtpc_cmd_add(c, SMTPC_K_RCPT, i, "RCPT TO:<%s>\r\n",
			    r->addr);
	}
	rc |= smtpc_cmd_add(c, SMTPC_K_DATA, 0, "DATA\r\n");
	if (utf8 && !c->utf8)
		return 1;
	return rc;
}

/* Send what may be sent now: everything with PIPELINING, else the next
 * command once the previous reply came. */
static void smtpc_cmds_push(struct smtpc *c)
{
	struct evbuffer *out = smtpc_stage(c);

	while (c->isent < c->ncmds && (c->pipelining || c->isent == c->irep)) {
		const char *l = c->cmds[c->isent].line;
		evbuffer_add(out, l, strlen(l));
		c->isent++;
	}
	smtpc_stage_send(c, out);
}

static void smtpc_txn_start(struct smtpc *c)
{
	int rc;

	c->st = SMTPC_ST_TXN;
	c->mail_failed = 0;
	c->naccepted = 0;
	rc = smtpc_cmds_build(c);
	if (rc != 0) {
		smtpc_finish(c, rc > 0 ? 550 : 451, rc > 0 ?
		    "550 5.6.7 SMTPUTF8 is required, but was not offered by host" :
		    "451 4.3.0 out of memory");
		return;
	}
	smtpc_timeout(c, c->conf.cmd_timeout);
	smtpc_cmds_push(c);
}

/* The body's last chunk, out: end it with CRLF if it did not, add the
 * final dot, send, and wait for the reply to the dot. */
static void smtpc_body_end(struct smtpc *c, struct evbuffer *out)
{
	if (!c->at_bol)
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
	smtpc_stage_send(c, out);
	c->cmds[c->ncmds].kind = SMTPC_K_DOT;
	c->cmds[c->ncmds].line = NULL;
	c->ncmds++;
	c->isent = c->ncmds;
	smtpc_timeout(c, c->conf.data_timeout);
}

/* Dot-stuff and send up to one chunk of the body (RFC 5321 §4.5.2); bare
 * LFs become CRLF so no receiver can see a line end we did not mean. */
static void smtpc_body_pump(struct smtpc *c)
{
	struct evbuffer *bout = bufferevent_get_output(c->bev), *out;
	const char *d = c->data;
	size_t end, i;
	const char *nl;

	while (c->data_off < c->len && evbuffer_get_length(bout) < SMTPC_OUT_HIGH) {
		end = c->data_off + SMTPC_BODY_CHUNK;
		if (end > c->len)
			end = c->len;
		/* one chunk, one contiguous piece (room for the dot-stuffing
		 * of a few lines and the final dot) */
		out = smtpc_stage(c);
		if (out != bout)
			evbuffer_expand(out, end - c->data_off + 256);
		while (c->data_off < end) {
			if (c->at_bol && d[c->data_off] == '.')
				evbuffer_add(out, ".", 1);
			nl = memchr(d + c->data_off, '\n', end - c->data_off);
			if (nl == NULL) {
				evbuffer_add(out, d + c->data_off, end - c->data_off);
				c->at_bol = 0;
				c->data_off = end;
				break;
			}
			i = (size_t)(nl - d);
			if (i > 0 && d[i - 1] == '\r') {
				evbuffer_add(out, d + c->data_off, i + 1 - c->data_off);
			} else {
				evbuffer_add(out, d + c->data_off, i - c->data_off);
				evbuffer_add(out, "\r\n", 2);
			}
			c->at_bol = 1;
			c->data_off = i + 1;
		}
		if (c->data_off < c->len)
			smtpc_stage_send(c, out);
		else
			smtpc_body_end(c, out);
	}
	if (c->len == 0 && c->cmds[c->ncmds - 1].kind != SMTPC_K_DOT)
		smtpc_body_end(c, smtpc_stage(c));
}

static void smtpc_on_txn_reply(struct smtpc *c, const struct smtp_reply *r)
{
	struct smtpc_cmd *cmd;
	char *t;

	if (c->irep >= c->isent) {
		smtpc_fail(c, "unexpected reply from %s", c->relay);
		return;
	}
	cmd = &c->cmds[c->irep++];
	t = smtpc_reply_text(r);
	switch (cmd->kind) {
	case SMTPC_K_RSET:
	case SMTPC_K_XFORWARD:
		break;
	case SMTPC_K_MAIL:
		if (r->code / 100 != 2) {
			c->mail_failed = 1;
			for (size_t i = 0; i < c->res.n; i++)
				smtpc_result_set(c, i, r->code, t);
		}
		break;
	case SMTPC_K_RCPT:
		if (c->mail_failed)
			break;
		if (r->code / 100 == 2) {
			c->naccepted++;
			/* provisional: final only with the "." reply */
			c->res.r[cmd->ri].code = 0;
		} else {
			smtpc_result_set(c, cmd->ri, r->code, t);
		}
		break;
	case SMTPC_K_DATA:
		if (r->code == 354 && c->naccepted > 0 && !c->mail_failed) {
			c->st = SMTPC_ST_BODY;
			c->data_off = 0;
			c->at_bol = 1;
			smtpc_body_pump(c);
			break;
		}
		if (r->code == 354) {
			/* RFC 2920 §3.1: nobody to send to; end it empty */
			evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
			c->cmds[c->ncmds].kind = SMTPC_K_DOT;
			c->cmds[c->ncmds].line = NULL;
			c->ncmds++;
			c->isent = c->ncmds;
			c->mail_failed = c->mail_failed ? 1 : 2;
			break;
		}
		smtpc_finish(c, r->code, t);
		free(t);
		return;
	case SMTPC_K_DOT:
		if (c->naccepted > 0 && c->mail_failed == 0)
			smtpc_finish(c, r->code, t);
		else
			smtpc_finish(c, 451, "451 4.3.0 no recipient accepted");
		free(t);
		return;
	}
	free(t);
	smtpc_cmds_push(c);
}

/* ---- bufferevent callbacks ---------------------------------------------- */

static void smtpc_read(struct bufferevent *bev, void *arg)
{
	struct smtpc *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct smtp_reply r;
	size_t used, len;
	enum smtp_reply_rc rc;
	const char *p;
	unsigned gen = c->gen;

	/* The greeting may be read before the "connected" event runs. */
	if (c->st == SMTPC_ST_CONNECT) {
		c->st = SMTPC_ST_GREETING;
		smtpc_timeout(c, c->conf.cmd_timeout);
	}
	while (c->gen == gen && (len = evbuffer_get_length(in)) > 0) {
		if (len > SMTPC_REPLY_MAX)
			len = SMTPC_REPLY_MAX;
		p = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
		rc = smtp_reply_parse(p, len, SMTPC_REPLY_MAX, &r, &used);
		if (rc == SMTP_REPLY_NEED_MORE)
			return;
		if (rc != SMTP_REPLY_OK) {
			smtpc_fail(c, "malformed reply from %s", c->relay);
			return;
		}
		if (c->st == SMTPC_ST_TXN || c->st == SMTPC_ST_BODY)
			smtpc_on_txn_reply(c, &r);
		else if (c->st != SMTPC_ST_IDLE)
			smtpc_on_setup_reply(c, &r);
		if (c->gen == gen)
			evbuffer_drain(in, used);
		else
			return;   /* closed, or replaced by a TLS bufferevent */
		if (c->st == SMTPC_ST_IDLE)
			evbuffer_drain(in, evbuffer_get_length(in));
	}
}

static void smtpc_write(struct bufferevent *bev, void *arg)
{
	struct smtpc *c = arg;

	if (c->st == SMTPC_ST_BODY && c->data_off < c->len)
		smtpc_body_pump(c);
}

static void smtpc_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtpc *c = arg;
	char tlserr[200];

	if (what & BEV_EVENT_CONNECTED) {
		if (c->st == SMTPC_ST_CONNECT) {
			c->st = SMTPC_ST_GREETING;
			smtpc_timeout(c, c->conf.cmd_timeout);
		} else if (c->st == SMTPC_ST_HANDSHAKE) {
			c->tls = 1;
			c->st = SMTPC_ST_EHLO;
			smtpc_send_line(c, "EHLO %s", c->helo_name);
		}
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		smtpc_fail(c, "conversation with %s timed out", c->relay);
	} else if (c->st == SMTPC_ST_HANDSHAKE) {
		tls_bev_error(bev, tlserr, sizeof(tlserr));
		smtpc_fail(c, "TLS handshake with %s failed: %s", c->relay,
		    tlserr[0] ? tlserr : "connection closed");
	} else if (c->st == SMTPC_ST_CONNECT) {
		smtpc_fail(c, "connect to %s: %s", c->relay,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	} else {
		smtpc_fail(c, "lost connection with %s", c->relay);
	}
}

/* ---- public ------------------------------------------------------------- */

struct smtpc *smtpc_new(struct event_base *base,
    const struct smtpc_conf *conf, const struct smtpc_addr *addrs,
    size_t naddrs, const char *user, const char *pass, struct err *err)
{
	struct smtpc *c;

	if (naddrs == 0) {
		err_set(err, 1, "no address to connect to");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto oom;
	c->base = base;
	c->conf = *conf;
	c->helo_name = strdup(conf->helo_name != NULL ? conf->helo_name :
	    "localhost");
	c->addrs = malloc(naddrs * sizeof(*addrs));
	c->done_ev = evtimer_new(base, smtpc_done_run, c);
	if (c->helo_name == NULL || c->addrs == NULL || c->done_ev == NULL)
		goto oom;
	memcpy(c->addrs, addrs, naddrs * sizeof(*addrs));
	c->naddrs = naddrs;
	if (user != NULL && pass != NULL) {
		c->user = strdup(user);
		c->pass = strdup(pass);
		if (c->user == NULL || c->pass == NULL)
			goto oom;
	}
	if (c->conf.cmd_timeout <= 0)
		c->conf.cmd_timeout = 300;
	if (c->conf.data_timeout <= 0)
		c->conf.data_timeout = 600;
	if (c->conf.connect_timeout <= 0)
		c->conf.connect_timeout = 30;
	c->st = SMTPC_ST_DOWN;
	return c;
oom:
	smtpc_free(c);
	err_set(err, 1, "out of memory");
	return NULL;
}

void smtpc_send(struct smtpc *c, const struct queue_env *env,
    const char *data, size_t len, const size_t *rcpt_idx, size_t nidx,
    smtpc_done_cb *cb, void *arg)
{
	c->env = env;
	c->data = data;
	c->len = len;
	c->cb = cb;
	c->arg = arg;
	c->res.r = calloc(nidx ? nidx : 1, sizeof(*c->res.r));
	c->res.n = c->res.r != NULL ? nidx : 0;
	c->idx = malloc((nidx ? nidx : 1) * sizeof(*c->idx));
	if (c->res.r == NULL || c->idx == NULL) {
		smtpc_finish(c, 451, "451 4.3.0 out of memory");
		return;
	}
	memcpy(c->idx, rcpt_idx, nidx * sizeof(*c->idx));
	c->nidx = nidx;
	if (c->st == SMTPC_ST_IDLE) {
		smtpc_txn_start(c);
		return;
	}
	/* (re)connect from the first address; the transaction starts when
	 * the session is ready (smtpc_ready). */
	c->ai = 0;
	smtpc_connect_next(c);
}

int smtpc_usable(const struct smtpc *c)
{
	return c != NULL && c->st == SMTPC_ST_IDLE && c->cb == NULL &&
	    !evtimer_pending(c->done_ev, NULL);
}

/* A connection being closed with QUIT outlives its smtpc: RFC 5321 §3.8,
 * the client "SHOULD wait until it receives the reply" to QUIT before it
 * closes. Closing as soon as QUIT was handed to the bufferevent lost it
 * under TLS (the ciphertext was still queued below the filter), and the
 * server logged "lost connection after DATA". The closer frees the
 * bufferevent at the reply, at EOF or error, or after SMTPC_QUIT_WAIT. */
#define SMTPC_QUIT_WAIT 5
#define SMTPC_QUIT_MAX_LINE 4096

struct smtpc_closer {
	struct bufferevent *bev;
	struct smtpc_closer *prev, *next;
};

static struct smtpc_closer *smtpc_closers;
static unsigned smtpc_nclosing;
static struct event_base *smtpc_draining;   /* in smtpc_closing_drain() */

unsigned smtpc_closing(void)
{
	return smtpc_nclosing;
}

static void smtpc_closer_done(struct smtpc_closer *k)
{
	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		smtpc_closers = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	bufferevent_free(k->bev);
	free(k);
	smtpc_nclosing--;
	if (smtpc_nclosing == 0 && smtpc_draining != NULL)
		event_base_loopbreak(smtpc_draining);
}

void smtpc_closing_abort(void)
{
	while (smtpc_closers != NULL)
		smtpc_closer_done(smtpc_closers);
}

static void smtpc_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

void smtpc_closing_drain(struct event_base *base)
{
	struct timeval tv = { SMTPC_QUIT_WAIT + 1, 0 };
	struct event *deadline;

	if (smtpc_nclosing > 0 &&
	    (deadline = evtimer_new(base, smtpc_drain_deadline, base)) != NULL) {
		evtimer_add(deadline, &tv);
		smtpc_draining = base;
		event_base_dispatch(base);
		smtpc_draining = NULL;
		event_free(deadline);
	}
	smtpc_closing_abort();
}

static void smtpc_closer_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line;

	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		/* the last line of a reply: "221 ..." or "221" (§4.2.1) */
		int last = n >= 3 && (n == 3 || line[3] == ' ');

		free(line);
		if (last) {
			smtpc_closer_done(arg);
			return;
		}
	}
	if (evbuffer_get_length(in) > SMTPC_QUIT_MAX_LINE)
		smtpc_closer_done(arg);
}

static void smtpc_closer_event(struct bufferevent *bev, short what, void *arg)
{
	smtpc_closer_done(arg);
}

/* QUIT on c's idle session, then hand its bufferevent to a closer; 0, or
 * -1 when out of memory (c->bev is then still c's). */
static int smtpc_quit(struct smtpc *c)
{
	struct timeval tv = { SMTPC_QUIT_WAIT, 0 };
	struct smtpc_closer *k = calloc(1, sizeof(*k));

	if (k == NULL)
		return -1;
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	smtpc_send_line(c, "QUIT");
	bufferevent_setcb(c->bev, smtpc_closer_read, NULL, smtpc_closer_event,
	    k);
	bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	k->bev = c->bev;
	k->next = smtpc_closers;
	if (k->next != NULL)
		k->next->prev = k;
	smtpc_closers = k;
	smtpc_nclosing++;
	c->bev = NULL;
	return 0;
}

static void smtpc_destroy(struct smtpc *c, int quit)
{
	if (c == NULL)
		return;
	/* QUIT politely (the closer owns the bufferevent then); without
	 * memory for it, close at once */
	if (quit && c->bev != NULL && c->st == SMTPC_ST_IDLE)
		(void)smtpc_quit(c);
	smtpc_close(c);
	smtpc_caps_reset(c);
	smtpc_cmds_free(c);
	smtpc_res_free(c);
	if (c->done_ev != NULL)
		event_free(c->done_ev);
	free(c->helo_name);
	free(c->addrs);
	free(c->user);
	if (c->pass != NULL)
		explicit_bzero(c->pass, strlen(c->pass));
	free(c->pass);
	free(c);
}

void smtpc_free(struct smtpc *c)
{
	smtpc_destroy(c, 1);
}

void smtpc_abort(struct smtpc *c)
{
	smtpc_destroy(c, 0);
}
