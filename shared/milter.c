/* milter: the MTA side of the milter protocol over sockets (see milter.h).
 * Runs on a worker thread: blocking sockets bounded by poll() timeouts.
 * One struct milter_conn per configured milter and SMTP session; a milter
 * that fails is closed and answers with milter_default_action for the rest
 * of the session, as Postfix does, so a dead milter never loses mail: with
 * the default (tempfail) the client is told 4xx and retries. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "milter.h"

static char *var_smtpd_milters, *var_milter_default_action;
static long var_milter_protocol, var_milter_connect_timeout;
static long var_milter_command_timeout, var_milter_content_timeout;
static long var_milter_threads;
static int var_peername_lookup;
static char *var_milter_macros[MILTER_NSTAGES];
static char *var_milter_daemon_name, *var_milter_macro_v;

/* Postfix 3.x defaults (postconf(5)). */
const struct cfg_param milter_params[] = {
	{ "smtpd_milters", CFG_STR, "", &var_smtpd_milters, 0, 0 },
	{ "milter_default_action", CFG_STR, "tempfail",
	  &var_milter_default_action, 0, 0 },
	{ "milter_protocol", CFG_INT, "6", &var_milter_protocol, 2, 6 },
	{ "milter_connect_timeout", CFG_TIME, "30s",
	  &var_milter_connect_timeout, 1, 3600 },
	{ "milter_command_timeout", CFG_TIME, "30s",
	  &var_milter_command_timeout, 1, 3600 },
	{ "milter_content_timeout", CFG_TIME, "300s",
	  &var_milter_content_timeout, 1, 3600 },
	{ "milter_connect_macros", CFG_STR, "j {daemon_name} {daemon_addr} v _",
	  &var_milter_macros[MILTER_M_CONNECT], 0, 0 },
	{ "milter_helo_macros", CFG_STR,
	  "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
	  &var_milter_macros[MILTER_M_HELO], 0, 0 },
	{ "milter_mail_macros", CFG_STR, "i {auth_type} {auth_authen} "
	  "{auth_author} {mail_addr} {mail_host} {mail_mailer}",
	  &var_milter_macros[MILTER_M_ENVFROM], 0, 0 },
	{ "milter_rcpt_macros", CFG_STR, "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
	  &var_milter_macros[MILTER_M_ENVRCPT], 0, 0 },
	{ "milter_data_macros", CFG_STR, "i", &var_milter_macros[MILTER_M_DATA],
	  0, 0 },
	{ "milter_end_of_data_macros", CFG_STR, "i",
	  &var_milter_macros[MILTER_M_EOM], 0, 0 },
	{ "milter_end_of_header_macros", CFG_STR, "i",
	  &var_milter_macros[MILTER_M_EOH], 0, 0 },
	{ "milter_macro_daemon_name", CFG_STR, "$myhostname",
	  &var_milter_daemon_name, 0, 0 },
	{ "milter_macro_v", CFG_STR, "mailpair", &var_milter_macro_v, 0, 0 },
	{ "milter_worker_threads", CFG_INT, "8", &var_milter_threads, 1, 1024 },
	/* Postfix's: the client's name (PTR, confirmed forward) for the
	 * milters' {client_name}; looked up only when milters are on */
	{ "smtpd_peername_lookup", CFG_BOOL, "yes", &var_peername_lookup, 0, 0 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};

/* ---- configuration ---------------------------------------------------- */

int milter_spec_check(const char *spec, struct err *err)
{
	const char *colon;

	if (strncmp(spec, "unix:", 5) == 0) {
		if (spec[5] != '/' ||
		    strlen(spec + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return err_set(err, 0, "bad socket \"%s\" in smtpd_milters: "
			               "unix:/absolute/path", spec);
		return 0;
	}
	if (strncmp(spec, "inet:", 5) == 0) {
		colon = strrchr(spec + 5, ':');
		if (colon != NULL && colon > spec + 5 && colon[1] != '\0' &&
		    strspn(colon + 1, "0123456789") == strlen(colon + 1) &&
		    atol(colon + 1) > 0 && atol(colon + 1) < 65536 &&
		    colon - (spec + 5) < 256)
			return 0;
	}
	return err_set(err, 0, "bad socket \"%s\" in smtpd_milters: "
	               "inet:host:port or unix:/path", spec);
}

void milter_conf_free(struct milter_conf *c)
{
	int i;

	if (c == NULL)
		return;
	cfg_list_free(c->specs);
	for (i = 0; i < MILTER_NSTAGES; i++)
		free(c->macros[i]);
	free(c->daemon_name);
	free(c->version);
	memset(c, 0, sizeof(*c));
}

int milter_conf_from_params(struct milter_conf *c, struct err *err)
{
	static const char *const acts[] = { "accept", "reject", "tempfail",
	                                    "quarantine" };
	int i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < 4; i++)
		if (strcasecmp(var_milter_default_action, acts[i]) == 0)
			break;
	if (i == 4)
		return err_set(err, 0, "bad value \"%s\" for milter_default_action: "
		               "accept, reject, tempfail or quarantine",
		               var_milter_default_action);
	c->default_action = (enum milter_action)i;
	c->specs = cfg_list_split(var_smtpd_milters);
	if (c->specs == NULL)
		return err_set(err, 1, "out of memory");
	for (c->n = 0; c->specs[c->n] != NULL; c->n++)
		if (milter_spec_check(c->specs[c->n], err) < 0) {
			milter_conf_free(c);
			return -1;
		}
	c->protocol = (int)var_milter_protocol;
	c->connect_timeout = (int)var_milter_connect_timeout;
	c->command_timeout = (int)var_milter_command_timeout;
	c->content_timeout = (int)var_milter_content_timeout;
	c->threads = (int)var_milter_threads;
	c->peername_lookup = var_peername_lookup;
	for (i = 0; i < MILTER_NSTAGES; i++)
		c->macros[i] = strdup(var_milter_macros[i]);
	c->daemon_name = strdup(var_milter_daemon_name);
	c->version = strdup(var_milter_macro_v);
	for (i = 0; i < MILTER_NSTAGES; i++)
		if (c->macros[i] == NULL)
			break;
	if (i < MILTER_NSTAGES || c->daemon_name == NULL || c->version == NULL) {
		milter_conf_free(c);
		return err_set(err, 1, "out of memory");
	}
	return 0;
}

/* ---- one milter ---------------------------------------------------------- */

enum milter_conn_state {
	MILTER_CS_NEW,        /* not connected yet */
	MILTER_CS_OPEN,       /* negotiated, in use */
	MILTER_CS_DONE,       /* accepted the connection: no more calls */
	MILTER_CS_FAILED,     /* broke: the default action from now on */
};

struct milter_conn {
	const char *spec;                  /* borrowed from the conf */
	enum milter_conn_state state;
	int fd;
	uint32_t actions, proto;
	char *macros[MILTER_NSTAGES];      /* the milter's own lists or NULL */
	int in_txn;                        /* MAIL sent, no EOM/ABORT yet */
	int txn_accepted;                  /* ACCEPT for this transaction */
	int data_sent;                     /* DATA went at the DATA command */
	struct buf in;                     /* bytes read, not yet parsed */
	size_t used;                       /* of in: the last packet given */
};

struct milter_sess {
	const struct milter_conf *conf;
	struct milter_conn *v;
	int n;
	struct buf out;                    /* packets being built */
};

struct milter_sess *milter_sess_new(const struct milter_conf *conf)
{
	struct milter_sess *ms = calloc(1, sizeof(*ms));
	int i;

	if (ms == NULL)
		return NULL;
	ms->conf = conf;
	ms->n = conf->n;
	ms->v = calloc((size_t)(conf->n > 0 ? conf->n : 1), sizeof(*ms->v));
	if (ms->v == NULL) {
		free(ms);
		return NULL;
	}
	for (i = 0; i < ms->n; i++) {
		ms->v[i].spec = conf->specs[i];
		ms->v[i].fd = -1;
		buf_init(&ms->v[i].in, MILTER_PKT_MAX + 8);
	}
	buf_init(&ms->out, 0);
	return ms;
}

static void milter_conn_close(struct milter_conn *mc)
{
	int i;

	if (mc->fd >= 0)
		close(mc->fd);
	mc->fd = -1;
	for (i = 0; i < MILTER_NSTAGES; i++) {
		free(mc->macros[i]);
		mc->macros[i] = NULL;
	}
	buf_free(&mc->in);
}

void milter_sess_free(struct milter_sess *ms)
{
	static const char quit[5] = { 0, 0, 0, 1, MILTER_C_QUIT };
	int i;

	if (ms == NULL)
		return;
	for (i = 0; i < ms->n; i++) {
		if (ms->v[i].fd >= 0 && ms->v[i].state == MILTER_CS_OPEN)
			(void)!send(ms->v[i].fd, quit, sizeof(quit),
			            MSG_DONTWAIT | MSG_NOSIGNAL);
		milter_conn_close(&ms->v[i]);
	}
	free(ms->v);
	buf_free(&ms->out);
	free(ms);
}

void milter_mods_free(struct milter_mods *m)
{
	size_t i;

	if (m == NULL)
		return;
	free(m->sender);
	for (i = 0; i < m->nadd; i++)
		free(m->add_rcpts[i]);
	for (i = 0; i < m->ndel; i++)
		free(m->del_rcpts[i]);
	free(m->add_rcpts);
	free(m->del_rcpts);
	buf_free(&m->msg);
	memset(m, 0, sizeof(*m));
}

/* ---- socket I/O, bounded by time ------------------------------------------ */

static long long milter_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline: 1 ready, 0 timeout, -1 error. */
static int milter_wait(int fd, short events, long long deadline)
{
	struct pollfd p = { fd, events, 0 };
	long long left;
	int rc;

	for (;;) {
		left = deadline - milter_now_ms();
		if (left <= 0)
			return 0;
		rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

static int milter_write_all(struct milter_conn *mc, const char *p, size_t n,
                            int timeout, struct err *err)
{
	long long deadline = milter_now_ms() + (long long)timeout * 1000;

	while (n > 0) {
		ssize_t w = send(mc->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR)
			return err_set(err, 1, "write: %s", strerror(errno));
		if (milter_wait(mc->fd, POLLOUT, deadline) <= 0)
			return err_set(err, 1, "timeout while writing");
	}
	return 0;
}

/* One reply packet: its type and data (into mc->in, valid until the next
 * read). A PROGRESS reply restarts the clock (libmilter's
 * smfi_progress()), so it is handled here. */
static int milter_read(struct milter_conn *mc, int timeout, char *type_r,
                       const char **data_r, size_t *len_r, struct err *err)
{
	long long deadline = milter_now_ms() + (long long)timeout * 1000;
	size_t used = 0;
	enum milter_rc rc;
	ssize_t r;

	/* the last packet's data was read by the caller meanwhile */
	buf_consume(&mc->in, mc->used);
	mc->used = 0;
	for (;;) {
		rc = milter_packet_next(mc->in.p != NULL ? mc->in.p : "",
		                        mc->in.len, MILTER_PKT_MAX, type_r,
		                        data_r, len_r, &used);
		if (rc == MILTER_OK && *type_r == MILTER_R_PROGRESS) {
			buf_consume(&mc->in, used);
			deadline = milter_now_ms() + (long long)timeout * 1000;
			continue;
		}
		if (rc == MILTER_OK) {
			mc->used = used;
			return 0;
		}
		if (rc == MILTER_ERR_TOO_LONG)
			return err_set(err, 0, "reply packet too long");
		if (rc != MILTER_NEED_MORE)
			return err_set(err, 0, "malformed reply packet");
		if (buf_reserve(&mc->in, 65536) < 0)
			return err_set(err, 1, "out of memory");
		r = recv(mc->fd, mc->in.p + mc->in.len,
		         mc->in.cap - mc->in.len - 1, MSG_DONTWAIT);
		if (r > 0) {
			mc->in.len += (size_t)r;
			mc->in.p[mc->in.len] = '\0';
			continue;
		}
		if (r == 0)
			return err_set(err, 1, "connection closed by milter");
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return err_set(err, 1, "read: %s", strerror(errno));
		if (milter_wait(mc->fd, POLLIN, deadline) <= 0)
			return err_set(err, 1, "timeout while reading");
	}
}

/* Non-blocking connect bounded by milter_connect_timeout. */
static int milter_dial(struct milter_conn *mc, int timeout, struct err *err)
{
	const char *spec = mc->spec;
	long long deadline = milter_now_ms() + (long long)timeout * 1000;
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	struct addrinfo hints, *res = NULL;
	int fd, soerr = 0, rc;
	socklen_t el = sizeof(soerr);

	memset(&ss, 0, sizeof(ss));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *su = (struct sockaddr_un *)&ss;

		su->sun_family = AF_UNIX;
		snprintf(su->sun_path, sizeof(su->sun_path), "%s", spec + 5);
		sl = sizeof(*su);
	} else {
		char host[256];
		const char *colon = strrchr(spec + 5, ':');
		size_t hl = (size_t)(colon - (spec + 5));

		if (hl >= sizeof(host))
			return err_set(err, 0, "bad socket");
		memcpy(host, spec + 5, hl);
		host[hl] = '\0';
		if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
			memmove(host, host + 1, hl - 2);
			host[hl - 2] = '\0';
		}
		memset(&hints, 0, sizeof(hints));
		hints.ai_socktype = SOCK_STREAM;
		rc = getaddrinfo(host, colon + 1, &hints, &res);
		if (rc != 0 || res == NULL)
			return err_set(err, 1, "%s: %s", host, gai_strerror(rc));
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sl = res->ai_addrlen;
		freeaddrinfo(res);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_set(err, 1, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		if (errno != EINPROGRESS) {
			err_set(err, 1, "connect: %s", strerror(errno));
			close(fd);
			return -1;
		}
		if (milter_wait(fd, POLLOUT, deadline) <= 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) < 0 ||
		    soerr != 0) {
			err_set(err, 1, "connect: %s", soerr != 0 ?
			        strerror(soerr) : "timed out");
			close(fd);
			return -1;
		}
	}
	mc->fd = fd;
	return 0;
}

/* ---- the conversation ------------------------------------------------------ */

static const char milter_stage_cmd[MILTER_NSTAGES] = {
	MILTER_C_CONNECT, MILTER_C_HELO, MILTER_C_MAIL, MILTER_C_RCPT,
	MILTER_C_DATA, MILTER_C_EOB, MILTER_C_EOH,
};

/* The value of one macro, or NULL (not sent). v and buf: scratch. */
static const char *milter_macro(const struct milter_sess *ms,
                                const struct milter_env *e, const char *name,
                                char *tmp, size_t tmplen)
{
	if (strcmp(name, "j") == 0 || strcmp(name, "{j}") == 0)
		return e->myhostname;
	if (strcmp(name, "{daemon_name}") == 0)
		return ms->conf->daemon_name;
	if (strcmp(name, "{daemon_addr}") == 0)
		return e->daemon_addr;
	if (strcmp(name, "v") == 0)
		return ms->conf->version;
	if (strcmp(name, "_") == 0 && e->client_addr != NULL) {
		snprintf(tmp, tmplen, "%s [%s]", e->client_name != NULL ?
		         e->client_name : "unknown", e->client_addr);
		return tmp;
	}
	if (strcmp(name, "{client_addr}") == 0)
		return e->client_addr;
	if (strcmp(name, "{client_name}") == 0)
		return e->client_name;
	if (strcmp(name, "{client_ptr}") == 0)
		return e->client_ptr;
	if (strcmp(name, "{client_connections}") == 0 &&
	    e->client_connections > 0) {
		snprintf(tmp, tmplen, "%u", e->client_connections);
		return tmp;
	}
	if (strcmp(name, "{client_port}") == 0 && e->client_port > 0) {
		snprintf(tmp, tmplen, "%d", e->client_port);
		return tmp;
	}
	if (strcmp(name, "i") == 0 || strcmp(name, "{i}") == 0)
		return e->qid != NULL && e->qid[0] != '\0' ? e->qid : NULL;
	if (strcmp(name, "{auth_type}") == 0)
		return e->auth_authen != NULL ? e->auth_type : NULL;
	if (strcmp(name, "{auth_authen}") == 0)
		return e->auth_authen;
	if (strcmp(name, "{auth_author}") == 0)
		return e->auth_authen != NULL ? e->auth_author : NULL;
	if (strcmp(name, "{mail_addr}") == 0)
		return e->sender;
	if (strcmp(name, "{mail_host}") == 0)
		return e->sender != NULL ? e->mail_host : NULL;
	if (strcmp(name, "{mail_mailer}") == 0)
		return e->sender != NULL ? e->mail_mailer : NULL;
	if (strcmp(name, "{rcpt_addr}") == 0)
		return e->rcpt;
	if (strcmp(name, "{rcpt_host}") == 0)
		return e->rcpt != NULL ? e->rcpt_host : NULL;
	if (strcmp(name, "{rcpt_mailer}") == 0)
		return e->rcpt != NULL ? e->rcpt_mailer : NULL;
	if (strcmp(name, "{cert_subject}") == 0)
		return e->cert_subject;
	if (strcmp(name, "{cert_issuer}") == 0)
		return e->cert_issuer;
	if (strcmp(name, "{tls_version}") == 0)
		return e->tls_version;
	if (strcmp(name, "{cipher}") == 0)
		return e->cipher;
	if (strcmp(name, "{cipher_bits}") == 0 && e->cipher != NULL) {
		snprintf(tmp, tmplen, "%d", e->cipher_bits);
		return tmp;
	}
	return NULL;
}

/* SMFIC_MACRO for a stage: the milter's own list if it sent one, else
 * the milter_*_macros parameter; macros without a value are left out. */
static int milter_put_stage_macros(struct milter_sess *ms,
    struct milter_conn *mc, enum milter_stage st, const struct milter_env *e)
{
	const char *list = mc->macros[st] != NULL ? mc->macros[st] :
	                   ms->conf->macros[st];
	char **names = cfg_list_split(list != NULL ? list : "");
	const char *nv[64], *vv[64];
	char tmp[64][64];
	size_t n = 0, i;
	int rc = 0;

	if (names == NULL)
		return -1;
	for (i = 0; names[i] != NULL && n < 64; i++) {
		const char *v = milter_macro(ms, e, names[i], tmp[n],
		                             sizeof(tmp[n]));

		if (v == NULL)
			continue;
		nv[n] = names[i];
		vv[n] = v;
		n++;
	}
	if (n > 0)
		rc = milter_put_macros(&ms->out, milter_stage_cmd[st], nv, vv, n);
	cfg_list_free(names);
	return rc < 0 ? -1 : 0;
}

static int milter_flush(struct milter_sess *ms, struct milter_conn *mc,
                        int timeout, struct err *err)
{
	int rc = milter_write_all(mc, ms->out.p, ms->out.len, timeout, err);

	buf_reset(&ms->out);
	return rc;
}

/* Connect and negotiate (SMFIC_OPTNEG): we offer every action and the
 * steps of MILTER_P_OFFER; the milter keeps a subset. */
static int milter_open(struct milter_sess *ms, struct milter_conn *mc,
                       struct err *err)
{
	const struct milter_conf *c = ms->conf;
	struct milter_optneg o;
	const char *data;
	size_t len;
	char type;
	int i;

	buf_init(&mc->in, MILTER_PKT_MAX + 8);
	if (milter_dial(mc, c->connect_timeout, err) < 0)
		return -1;
	if (milter_put_optneg(&ms->out, (uint32_t)c->protocol, MILTER_A_ALL,
	                      MILTER_P_OFFER) < 0 ||
	    milter_flush(ms, mc, c->command_timeout, err) < 0 ||
	    milter_read(mc, c->command_timeout, &type, &data, &len, err) < 0)
		return -1;
	if (type != MILTER_R_OPTNEG || milter_optneg_parse(data, len, &o) < 0)
		return err_set(err, 0, "bad option negotiation reply");
	if ((o.actions & ~MILTER_A_ALL) != 0 ||
	    (o.protocol & ~MILTER_P_OFFER) != 0)
		return err_set(err, 0, "asks for actions 0x%x, steps 0x%x that "
		               "we did not offer", (unsigned)o.actions,
		               (unsigned)o.protocol);
	mc->actions = o.actions;
	mc->proto = o.protocol;
	for (i = 0; i < MILTER_NSTAGES; i++)
		if (o.macros[i] != NULL &&
		    (mc->macros[i] = strndup(o.macros[i], o.macro_len[i])) == NULL)
			return err_set(err, 1, "out of memory");
	mc->state = MILTER_CS_OPEN;
	return 0;
}

/* The reply when a milter fails: milter_default_action (Postfix's texts). */
static void milter_default(struct milter_sess *ms, struct milter_result *res)
{
	switch (ms->conf->default_action) {
	case MILTER_ACT_REJECT:
		res->verdict = MILTER_V_REJECT;
		res->code = 550;
		snprintf(res->text, sizeof(res->text), "5.7.1 Command rejected");
		break;
	case MILTER_ACT_TEMPFAIL:
		res->verdict = MILTER_V_REJECT;
		res->code = 451;
		snprintf(res->text, sizeof(res->text),
		         "4.7.1 Service unavailable - try again later");
		break;
	case MILTER_ACT_QUARANTINE:
		if (res->quarantine[0] == '\0')
			snprintf(res->quarantine, sizeof(res->quarantine),
			         "milter failure");
		break;
	default:
		break;
	}
}

static void milter_fail(struct milter_sess *ms, struct milter_conn *mc,
                        const struct err *err, struct milter_result *res)
{
	if (res->why[0] == '\0')
		snprintf(res->why, sizeof(res->why), "milter %s: %s", mc->spec,
		         err->msg);
	milter_conn_close(mc);
	mc->state = ms->conf->default_action == MILTER_ACT_ACCEPT ?
	            MILTER_CS_DONE : MILTER_CS_FAILED;
	milter_default(ms, res);
}

/* REPLYCODE "550 5.7.1 text" (first line only) into res; an enhanced
 * status code (RFC 3463) is supplied when the milter gave none. */
static void milter_replycode(const struct milter_reply *r,
                             struct milter_result *res)
{
	const char *t = r->text + 3;
	size_t n = r->text_len - 3;
	const char *crlf;

	while (n > 0 && (*t == ' ' || *t == '-')) {
		t++;
		n--;
	}
	crlf = memchr(t, '\r', n);
	if (crlf != NULL)
		n = (size_t)(crlf - t);
	res->verdict = MILTER_V_REJECT;
	res->code = r->code;
	if (n >= 5 && t[0] == r->text[0] && t[1] == '.')
		snprintf(res->text, sizeof(res->text), "%.*s", (int)n, t);
	else
		snprintf(res->text, sizeof(res->text), "%c.7.1 %.*s",
		         r->text[0], (int)n, t);
}

/* An answer to a command other than end of message. Returns 1 when the
 * stage is decided (res set), 0 to go on to the next milter, -1 for a
 * protocol error. */
static int milter_verdict(struct milter_sess *ms, struct milter_conn *mc,
                          enum milter_stage st, char type, const char *data,
                          size_t len, struct milter_result *res)
{
	struct milter_reply r;

	if (milter_reply_parse(type, data, len, &r) != MILTER_OK)
		return -1;
	switch (type) {
	case MILTER_R_CONTINUE:
		return 0;
	case MILTER_R_ACCEPT:
		/* connection-level: no more calls; else this transaction */
		if (st <= MILTER_M_HELO)
			mc->state = MILTER_CS_DONE;
		else
			mc->txn_accepted = 1;
		return 0;
	case MILTER_R_REJECT:
		res->verdict = MILTER_V_REJECT;
		res->code = 550;
		snprintf(res->text, sizeof(res->text), "5.7.1 Command rejected");
		return 1;
	case MILTER_R_TEMPFAIL:
		res->verdict = MILTER_V_REJECT;
		res->code = 451;
		snprintf(res->text, sizeof(res->text),
		         "4.7.1 Service unavailable - try again later");
		return 1;
	case MILTER_R_SHUTDOWN:
		res->verdict = MILTER_V_REJECT;
		res->code = 421;
		snprintf(res->text, sizeof(res->text),
		         "4.7.0 Server closing connection");
		return 1;
	case MILTER_R_REPLYCODE:
		milter_replycode(&r, res);
		return 1;
	case MILTER_R_DISCARD:
		if (st <= MILTER_M_HELO)
			return -1;
		res->verdict = MILTER_V_DISCARD;
		return 1;
	default:
		return -1;
	}
}

/* Whether milter mc takes part in stage st now. */
static int milter_active(const struct milter_conn *mc, enum milter_stage st)
{
	if (mc->state != MILTER_CS_OPEN)
		return 0;
	return st <= MILTER_M_HELO || !mc->txn_accepted;
}

/* The NO* bit of a stage, and its NR_* (no reply) bit. */
static const uint32_t milter_no[MILTER_NSTAGES] = {
	MILTER_P_NOCONNECT, MILTER_P_NOHELO, MILTER_P_NOMAIL, MILTER_P_NORCPT,
	MILTER_P_NODATA, 0, MILTER_P_NOEOH,
};
static const uint32_t milter_nr[MILTER_NSTAGES] = {
	MILTER_P_NR_CONN, MILTER_P_NR_HELO, MILTER_P_NR_MAIL, MILTER_P_NR_RCPT,
	MILTER_P_NR_DATA, 0, MILTER_P_NR_EOH,
};

/* Encode the command of stage st (not EOM) into ms->out. */
static int milter_put_stage(struct milter_sess *ms, enum milter_stage st,
                            const struct milter_env *e)
{
	char family = 'U';
	const char *a = e->client_addr != NULL ? e->client_addr : "";

	switch (st) {
	case MILTER_M_CONNECT:
		if (e->client_addr != NULL)
			family = strchr(a, ':') != NULL ? '6' : '4';
		return milter_put_connect(&ms->out, e->client_name != NULL ?
		                          e->client_name : "unknown", family,
		                          (uint16_t)e->client_port, a);
	case MILTER_M_HELO:
		return milter_put_helo(&ms->out, e->helo != NULL ? e->helo : "");
	case MILTER_M_ENVFROM:
		return milter_put_envelope(&ms->out, MILTER_C_MAIL,
		                           e->sender != NULL ? e->sender : "",
		                           e->mail_args, e->nmail_args);
	case MILTER_M_ENVRCPT:
		return milter_put_envelope(&ms->out, MILTER_C_RCPT,
		                           e->rcpt != NULL ? e->rcpt : "", NULL, 0);
	case MILTER_M_DATA:
		return milter_put_simple(&ms->out, MILTER_C_DATA);
	case MILTER_M_EOH:
		return milter_put_simple(&ms->out, MILTER_C_EOH);
	default:
		return -1;
	}
}

/* One stage with one milter: macros, command, its reply. */
static int milter_stage_one(struct milter_sess *ms, struct milter_conn *mc,
                            enum milter_stage st, const struct milter_env *e,
                            int timeout, struct milter_result *res)
{
	struct err err;
	const char *data;
	size_t len;
	char type;
	int rc;

	if (st == MILTER_M_DATA)
		mc->data_sent = 1;
	if (mc->proto & milter_no[st])
		return 0;
	if (milter_put_stage_macros(ms, mc, st, e) < 0 ||
	    milter_put_stage(ms, st, e) < 0) {
		buf_reset(&ms->out);
		err_set(&err, 1, "out of memory");
		milter_fail(ms, mc, &err, res);
		return 1;
	}
	if (milter_flush(ms, mc, timeout, &err) < 0) {
		milter_fail(ms, mc, &err, res);
		return res->verdict != MILTER_V_CONTINUE;
	}
	if (mc->proto & milter_nr[st])
		return 0;
	if (milter_read(mc, timeout, &type, &data, &len, &err) < 0) {
		milter_fail(ms, mc, &err, res);
		return res->verdict != MILTER_V_CONTINUE;
	}
	rc = milter_verdict(ms, mc, st, type, data, len, res);
	if (rc < 0) {
		err_set(&err, 0, "unexpected reply '%c' to %c", type,
		        milter_stage_cmd[st]);
		milter_fail(ms, mc, &err, res);
		return res->verdict != MILTER_V_CONTINUE;
	}
	return rc;
}

/* A stage through every milter in order; the first refusal decides. A
 * milter that failed earlier in the session answers with the default
 * action again (Postfix keeps it so for the session). */
static void milter_stage(struct milter_sess *ms, enum milter_stage st,
                         const struct milter_env *e, struct milter_result *res)
{
	int i;

	for (i = 0; i < ms->n; i++) {
		struct milter_conn *mc = &ms->v[i];

		if (mc->state == MILTER_CS_FAILED) {
			/* met at MAIL and later, not at HELO */
			if (st <= MILTER_M_HELO)
				continue;
			milter_default(ms, res);
			if (res->verdict != MILTER_V_CONTINUE)
				return;
			continue;
		}
		if (!milter_active(mc, st))
			continue;
		if (milter_stage_one(ms, mc, st, e, ms->conf->command_timeout,
		                     res))
			return;
	}
}

static void milter_result_init(struct milter_result *res)
{
	memset(res, 0, sizeof(*res));
	res->verdict = MILTER_V_CONTINUE;
}

void milter_helo(struct milter_sess *ms, const struct milter_env *e,
                 struct milter_result *res)
{
	struct err err;
	int i;

	milter_result_init(res);
	for (i = 0; i < ms->n; i++) {
		struct milter_conn *mc = &ms->v[i];

		if (mc->state != MILTER_CS_NEW)
			continue;
		if (milter_open(ms, mc, &err) < 0) {
			buf_reset(&ms->out);
			milter_fail(ms, mc, &err, res);
			if (res->verdict != MILTER_V_CONTINUE)
				break;
			continue;
		}
		if (milter_stage_one(ms, mc, MILTER_M_CONNECT, e,
		                     ms->conf->command_timeout, res))
			break;
	}
	if (res->verdict == MILTER_V_CONTINUE)
		milter_stage(ms, MILTER_M_HELO, e, res);
	/* A milter that failed here does not cost the client its HELO: as
	 * in Postfix, the default action meets it at MAIL (the milter stays
	 * FAILED for the session). A milter's own refusal stands. */
	if (res->verdict == MILTER_V_REJECT && res->why[0] != '\0' &&
	    res->code != 421)
		res->verdict = MILTER_V_CONTINUE;
}

/* SMFIC_ABORT to each milter in a transaction; it sends no reply. */
static void milter_abort(struct milter_sess *ms)
{
	struct milter_result ignored;
	struct err err;
	int i;

	for (i = 0; i < ms->n; i++) {
		struct milter_conn *mc = &ms->v[i];

		mc->txn_accepted = 0;
		mc->data_sent = 0;
		if (mc->state != MILTER_CS_OPEN || !mc->in_txn)
			continue;
		mc->in_txn = 0;
		milter_result_init(&ignored);
		if (milter_put_simple(&ms->out, MILTER_C_ABORT) < 0 ||
		    milter_flush(ms, mc, ms->conf->command_timeout, &err) < 0) {
			buf_reset(&ms->out);
			err_set(&err, 1, "cannot send ABORT");
			milter_fail(ms, mc, &err, &ignored);
		}
	}
}

void milter_mail(struct milter_sess *ms, const struct milter_env *e,
                 struct milter_result *res)
{
	int i;

	milter_result_init(res);
	milter_abort(ms);
	for (i = 0; i < ms->n; i++)
		if (ms->v[i].state == MILTER_CS_OPEN)
			ms->v[i].in_txn = 1;
	milter_stage(ms, MILTER_M_ENVFROM, e, res);
}

void milter_rcpt(struct milter_sess *ms, const struct milter_env *e,
                 struct milter_result *res)
{
	milter_result_init(res);
	milter_stage(ms, MILTER_M_ENVRCPT, e, res);
}

/* Postfix sends the milters' DATA event when the client sends DATA, so a
 * refusal there is the reply to DATA (no 354); milter_message() then
 * skips DATA for the milters that had it. */
void milter_data(struct milter_sess *ms, const struct milter_env *e,
                 struct milter_result *res)
{
	milter_result_init(res);
	milter_stage(ms, MILTER_M_DATA, e, res);
}

/* ---- end of message ----------------------------------------------------------- */

/* What one milter asked for at end of message. */
struct milter_eom {
	struct milter_edit *edits;
	size_t nedits, cap;
	struct buf body;                   /* REPLBODY chunks */
	int replbody;
};

static void milter_eom_free(struct milter_eom *x)
{
	size_t i;

	for (i = 0; i < x->nedits; i++) {
		free(x->edits[i].name);
		free(x->edits[i].value);
	}
	free(x->edits);
	buf_free(&x->body);
	memset(x, 0, sizeof(*x));
}

/* An address from a milter: angle brackets dropped; NULL when it holds
 * white space or is empty (milter_proto already refused controls). */
static char *milter_addr_dup(const char *a, size_t n)
{
	size_t i;

	if (n >= 2 && a[0] == '<' && a[n - 1] == '>') {
		a++;
		n -= 2;
	}
	for (i = 0; i < n; i++)
		if (a[i] == ' ' || a[i] == '\t' || a[i] == '<' || a[i] == '>')
			return NULL;
	return strndup(a, n);
}

static int milter_list_add(char ***v, size_t *n, char *s)
{
	char **nv;

	if (s == NULL)
		return -1;
	nv = realloc(*v, (*n + 1) * sizeof(*nv));
	if (nv == NULL) {
		free(s);
		return -1;
	}
	nv[(*n)++] = s;
	*v = nv;
	return 0;
}

static int milter_edit_add(struct milter_eom *x, const struct milter_reply *r,
                           int leadspc)
{
	struct milter_edit *e;

	if (x->nedits == x->cap) {
		size_t cap = x->cap == 0 ? 8 : x->cap * 2;

		e = realloc(x->edits, cap * sizeof(*e));
		if (e == NULL)
			return -1;
		x->edits = e;
		x->cap = cap;
	}
	e = &x->edits[x->nedits];
	memset(e, 0, sizeof(*e));
	e->op = r->type == MILTER_R_ADDHEADER ? MILTER_E_ADD :
	        r->type == MILTER_R_INSHEADER ? MILTER_E_INSERT : MILTER_E_CHANGE;
	e->index = r->index;
	e->leadspc = leadspc;
	e->name = strndup(r->name, r->name_len);
	e->value = strndup(r->value, r->value_len);
	if (e->name == NULL || e->value == NULL) {
		free(e->name);
		free(e->value);
		return -1;
	}
	x->nedits++;
	return 0;
}

/* One modification: 0 taken, -1 protocol error (an action the milter
 * did not negotiate, a bad address) or out of memory. */
static int milter_modify(struct milter_conn *mc, const struct milter_reply *r,
                         struct milter_eom *x, struct milter_mods *mods,
                         struct milter_result *res)
{
	uint32_t need;
	int leadspc = (mc->proto & MILTER_P_HDR_LEADSPC) != 0;

	switch (r->type) {
	case MILTER_R_ADDHEADER:
	case MILTER_R_INSHEADER:
		need = MILTER_A_ADDHDRS;
		break;
	case MILTER_R_CHGHEADER:
		need = MILTER_A_CHGHDRS;
		break;
	case MILTER_R_ADDRCPT:
		need = MILTER_A_ADDRCPT;
		break;
	case MILTER_R_ADDRCPT_PAR:
		need = MILTER_A_ADDRCPT_PAR;
		break;
	case MILTER_R_DELRCPT:
		need = MILTER_A_DELRCPT;
		break;
	case MILTER_R_CHGFROM:
		need = MILTER_A_CHGFROM;
		break;
	case MILTER_R_REPLBODY:
		need = MILTER_A_CHGBODY;
		break;
	case MILTER_R_QUARANTINE:
		need = MILTER_A_QUARANTINE;
		break;
	default:
		return -1;
	}
	if ((mc->actions & need) == 0)
		return -1;
	switch (r->type) {
	case MILTER_R_ADDRCPT:
	case MILTER_R_ADDRCPT_PAR:
		return milter_list_add(&mods->add_rcpts, &mods->nadd,
		                       milter_addr_dup(r->addr, r->addr_len));
	case MILTER_R_DELRCPT:
		return milter_list_add(&mods->del_rcpts, &mods->ndel,
		                       milter_addr_dup(r->addr, r->addr_len));
	case MILTER_R_CHGFROM:
		free(mods->sender);
		/* the null sender is "<>": kept as "" */
		mods->sender = r->addr_len == 2 && memcmp(r->addr, "<>", 2) == 0 ?
		               strdup("") : milter_addr_dup(r->addr, r->addr_len);
		return mods->sender != NULL ? 0 : -1;
	case MILTER_R_REPLBODY:
		x->replbody = 1;
		return buf_append(&x->body, r->text, r->text_len);
	case MILTER_R_QUARANTINE:
		snprintf(res->quarantine, sizeof(res->quarantine), "%.*s",
		         (int)r->text_len, r->text);
		return 0;
	default:
		return milter_edit_add(x, r, leadspc);
	}
}

/* The headers, EOH and the body, each answered unless NR_*. 1: decided
 * (res), 0: go on, -1: failed (err). */
static int milter_content(struct milter_sess *ms, struct milter_conn *mc,
                          const struct milter_env *e, const char *msg,
                          size_t len, struct milter_result *res,
                          struct err *err)
{
	int t = ms->conf->content_timeout, leadspc, rc;
	struct milter_hdr h;
	struct buf v;
	size_t off = 0, bo;
	const char *data;
	size_t dlen;
	char type;

	leadspc = (mc->proto & MILTER_P_HDR_LEADSPC) != 0;
	buf_init(&v, 0);
	while (milter_hdr_next(msg, len, &off, &h) == 1) {
		if (mc->proto & MILTER_P_NOHDRS)
			continue;
		buf_reset(&v);
		if (milter_hdr_value(&h, leadspc, &v) < 0 ||
		    milter_put_header(&ms->out, h.p, h.name_len,
		                      v.p != NULL ? v.p : "", v.len) < 0 ||
		    milter_flush(ms, mc, t, err) < 0) {
			buf_free(&v);
			return err_set(err, 1, "cannot send a header");
		}
		if (mc->proto & MILTER_P_NR_HDR)
			continue;
		if (milter_read(mc, t, &type, &data, &dlen, err) < 0) {
			buf_free(&v);
			return -1;
		}
		rc = milter_verdict(ms, mc, MILTER_M_EOH, type, data, dlen, res);
		if (rc != 0 || mc->txn_accepted) {
			buf_free(&v);
			return rc < 0 ? err_set(err, 0, "bad reply to a header") : rc;
		}
	}
	buf_free(&v);
	if (milter_stage_one(ms, mc, MILTER_M_EOH, e, t, res) != 0)
		return 1;
	if (mc->state != MILTER_CS_OPEN || mc->txn_accepted)
		return 0;
	for (bo = off; bo < len && !(mc->proto & MILTER_P_NOBODY);) {
		size_t n = len - bo > MILTER_CHUNK_MAX ? MILTER_CHUNK_MAX : len - bo;

		if (milter_put_body(&ms->out, msg + bo, n) < 0 ||
		    milter_flush(ms, mc, t, err) < 0)
			return err_set(err, 1, "cannot send the body");
		bo += n;
		if (mc->proto & MILTER_P_NR_BODY)
			continue;
		if (milter_read(mc, t, &type, &data, &dlen, err) < 0)
			return -1;
		if (type == MILTER_R_SKIP && (mc->proto & MILTER_P_SKIP))
			break;
		rc = milter_verdict(ms, mc, MILTER_M_EOM, type, data, dlen, res);
		if (rc != 0 || mc->txn_accepted)
			return rc < 0 ? err_set(err, 0, "bad reply to the body") : rc;
	}
	return 0;
}

/* End of message with one milter: EOB, then modifications until the
 * final answer. 1: decided, 0: go on, -1: failed (err). */
static int milter_eob(struct milter_sess *ms, struct milter_conn *mc,
                      const struct milter_env *e, struct milter_eom *x,
                      struct milter_mods *mods, struct milter_result *res,
                      struct err *err)
{
	int t = ms->conf->content_timeout;
	struct milter_reply r;
	const char *data;
	size_t dlen;
	char type;

	if (milter_put_stage_macros(ms, mc, MILTER_M_EOM, e) < 0 ||
	    milter_put_simple(&ms->out, MILTER_C_EOB) < 0) {
		buf_reset(&ms->out);
		return err_set(err, 1, "out of memory");
	}
	if (milter_flush(ms, mc, t, err) < 0)
		return -1;
	for (;;) {
		if (milter_read(mc, t, &type, &data, &dlen, err) < 0)
			return -1;
		if (milter_reply_parse(type, data, dlen, &r) != MILTER_OK)
			return err_set(err, 0, "malformed reply '%c'", type);
		switch (type) {
		case MILTER_R_CONTINUE:
		case MILTER_R_ACCEPT:
			return 0;
		case MILTER_R_REJECT:
		case MILTER_R_TEMPFAIL:
		case MILTER_R_REPLYCODE:
		case MILTER_R_DISCARD:
		case MILTER_R_SHUTDOWN:
			return milter_verdict(ms, mc, MILTER_M_EOM, type, data,
			                      dlen, res) < 0 ? -1 : 1;
		default:
			if (milter_modify(mc, &r, x, mods, res) < 0)
				return err_set(err, 0, "bad modification '%c'",
				               type);
		}
	}
}

void milter_message(struct milter_sess *ms, const struct milter_env *e,
                    const char *msg, size_t len, size_t max_size,
                    struct milter_mods *mods, struct milter_result *res)
{
	struct milter_eom x;
	struct buf next;
	struct err err;
	int i, rc;

	milter_result_init(res);
	memset(mods, 0, sizeof(*mods));
	buf_init(&mods->msg, 0);
	for (i = 0; i < ms->n; i++) {
		struct milter_conn *mc = &ms->v[i];
		const char *cur = mods->changed ? mods->msg.p : msg;
		size_t curlen = mods->changed ? mods->msg.len : len;

		if (mc->state == MILTER_CS_FAILED) {
			milter_default(ms, res);
			if (res->verdict != MILTER_V_CONTINUE)
				break;
			continue;
		}
		if (!milter_active(mc, MILTER_M_DATA))
			continue;
		memset(&x, 0, sizeof(x));
		buf_init(&x.body, max_size > 0 ? max_size + 1 : 0);
		rc = mc->data_sent ? 0 :
		     milter_stage_one(ms, mc, MILTER_M_DATA, e,
		                      ms->conf->command_timeout, res);
		if (rc == 0 && mc->state == MILTER_CS_OPEN && !mc->txn_accepted) {
			rc = milter_content(ms, mc, e, cur, curlen, res, &err);
			if (rc == 0 && mc->state == MILTER_CS_OPEN &&
			    !mc->txn_accepted)
				rc = milter_eob(ms, mc, e, &x, mods, res, &err);
			if (rc < 0) {
				milter_fail(ms, mc, &err, res);
				rc = res->verdict != MILTER_V_CONTINUE;
			}
		}
		mc->in_txn = 0;
		if (rc == 0 && (x.nedits > 0 || x.replbody)) {
			buf_init(&next, max_size > 0 ? max_size + 65536 : 0);
			if (milter_edit_apply(cur, curlen, x.edits, x.nedits,
			                      x.replbody ? (x.body.p != NULL ?
			                      x.body.p : "") : NULL, x.body.len,
			                      &next) < 0) {
				buf_free(&next);
				err_set(&err, 1, "the changed message is too big");
				milter_fail(ms, mc, &err, res);
				rc = res->verdict != MILTER_V_CONTINUE;
			} else {
				buf_free(&mods->msg);
				mods->msg = next;
				mods->changed = 1;
			}
		}
		milter_eom_free(&x);
		if (rc != 0)
			break;
	}
	for (i = 0; i < ms->n; i++) {
		ms->v[i].txn_accepted = 0;
		ms->v[i].data_sent = 0;
	}
}

/* ---- the client's name ----------------------------------------------------- */

/* A PTR answer usable as a host name: letters, digits, '-', '_' and dots,
 * not all digits and dots (a "name" like 1.2.3.4 would pass for an
 * address); Postfix refuses such names too. */
static int milter_name_ok(const char *n)
{
	size_t i, len = strlen(n);
	int alpha = 0;

	if (len == 0 || len > 255)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)n[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    ch == '-' || ch == '_')
			alpha = 1;
		else if (!(ch >= '0' && ch <= '9') && ch != '.')
			return 0;
	}
	return alpha;
}

void milter_client_names(const char *addr, char *name, size_t namelen,
                         char *ptr, size_t ptrlen)
{
	struct addrinfo hints, *num = NULL, *fwd = NULL, *a;
	char host[NI_MAXHOST], want[NI_MAXHOST], got[NI_MAXHOST];

	snprintf(name, namelen, "unknown");
	if (ptrlen > 0)
		ptr[0] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST;
	hints.ai_socktype = SOCK_STREAM;
	if (addr == NULL || getaddrinfo(addr, NULL, &hints, &num) != 0)
		return;
	if (getnameinfo(num->ai_addr, num->ai_addrlen, want, sizeof(want),
	                NULL, 0, NI_NUMERICHOST) != 0 ||
	    getnameinfo(num->ai_addr, num->ai_addrlen, host, sizeof(host),
	                NULL, 0, NI_NAMEREQD) != 0 || !milter_name_ok(host)) {
		freeaddrinfo(num);
		return;
	}
	snprintf(ptr, ptrlen, "%s", host);
	/* confirmed when the name resolves back to the address */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = num->ai_family;
	hints.ai_socktype = SOCK_STREAM;
	freeaddrinfo(num);
	if (getaddrinfo(host, NULL, &hints, &fwd) != 0)
		return;
	for (a = fwd; a != NULL; a = a->ai_next)
		if (getnameinfo(a->ai_addr, a->ai_addrlen, got, sizeof(got),
		                NULL, 0, NI_NUMERICHOST) == 0 &&
		    strcasecmp(got, want) == 0) {
			snprintf(name, namelen, "%s", host);
			break;
		}
	freeaddrinfo(fwd);
}
