/* smtpd: the SMTP server session engine (see smtpd.h), on the connection
 * core (conn.h), which owns sockets, TLS, ids, caps, back-pressure and the
 * connection's life (OPEN, BUSY while a hook or job is out, CLOSING). One
 * struct smtpd_session per conn, found by id with conn_find(); only
 * smtpd_set_state() changes its protocol state. Commands go
 * smtpd_cmd_<verb>() (check) then the hook or smtpd_proceed_<verb>(). The
 * session owns its transaction strings and, during DATA/BDAT only, the
 * message buffer, which it hands to the message hook. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include "addr.h"
#include "buf.h"
#include "conn.h"
#include "log.h"
#include "milter.h"
#include "queue.h"
#include "sasl_glue.h"
#include "smtp_cmd.h"
#include "smtp_line.h"
#include "smtp_xforward.h"
#include "smtpd.h"
#include "smtpd_input.h"
#include "tls.h"
#include "work.h"

#define SMTPD_AUTH_LINE    (12288 + 2)   /* RFC 4954 §4 */
#define SMTPD_READ_HIWAT   (64 * 1024)
/* Replies not yet sent beyond which no more input is read: a client that
 * pipelines without reading could otherwise grow them without end. */
#define SMTPD_WRITE_HIWAT  (64 * 1024)
/* The message buffer grows by doubling up to this, then by this much. */
#define SMTPD_MSG_STEP     (1024 * 1024)
#define SMTPD_NVERBS       (SMTP_CMD_HTTP + 1)

/* Protocol states; whether the connection reads, waits (BUSY) or is
 * closing is conn's state. */
enum smtpd_state {
	SMTPD_ST_CONNECT,    /* before the greeting */
	SMTPD_ST_CMD,        /* reading commands */
	SMTPD_ST_DATA,       /* reading a DATA body */
	SMTPD_ST_BDAT,       /* reading a BDAT chunk */
	SMTPD_ST_AUTH,       /* reading a SASL response line */
};

/* The answer a session waits for (its conn is BUSY meanwhile, but for
 * CONNECT: before the greeting the input is read, to catch talkers). */
enum smtpd_wait {
	SMTPD_W_NONE, SMTPD_W_CONNECT, SMTPD_W_MAIL, SMTPD_W_RCPT,
	SMTPD_W_MESSAGE, SMTPD_W_AUTH_CHECK, SMTPD_W_AUTH_JOB,
	SMTPD_W_AUTH_VERDICT, SMTPD_W_MILTER,
};

/* session flags */
#define SMTPD_F_ESMTP      0x0001
#define SMTPD_F_GREET_WAIT 0x0004   /* greet timer still running */
#define SMTPD_F_GREET_OK   0x0008   /* connect hook said yes */
#define SMTPD_F_TOO_BIG    0x0020   /* message over the size limit */
#define SMTPD_F_BDAT       0x0040   /* this transaction uses BDAT */
#define SMTPD_F_BDAT_BAD   0x0080   /* BDAT chunk to discard (no txn) */
#define SMTPD_F_QUIT       0x0100
#define SMTPD_F_IN_HOOK    0x0200   /* a hook is on the stack */
#define SMTPD_F_RESUMED    0x0400   /* ... and has answered already */
#define SMTPD_F_SMTPUTF8   0x0800
#define SMTPD_F_XFWD       0x1000
#define SMTPD_F_DISCARD    0x2000   /* a milter said DISCARD: 250, drop */
#define SMTPD_F_MILTER_OK  0x4000   /* the milters passed this command */
#define SMTPD_F_NAMED      0x8000   /* the client's name was looked up */
#define SMTPD_F_BDAT_MREJ  0x10000  /* milters refused the first BDAT: read
                                       the chunk, then that reply */
#define SMTPD_F_BDAT_DROP  (SMTPD_F_BDAT_BAD | SMTPD_F_TOO_BIG | \
                            SMTPD_F_BDAT_MREJ)

/* XFORWARD attributes kept, indexed by enum smtp_xforward_attr */
#define SMTPD_XF_NAME  SMTP_XFORWARD_NAME
#define SMTPD_XF_ADDR  SMTP_XFORWARD_ADDR
#define SMTPD_XF_HELO  SMTP_XFORWARD_HELO
#define SMTPD_XF_IDENT SMTP_XFORWARD_IDENT
#define SMTPD_XF_PROTO SMTP_XFORWARD_PROTO
#define SMTPD_XF_N     SMTP_XFORWARD_NKEPT

struct smtpd_session {
	struct conn *conn;            /* borrowed: frees the session */
	struct smtpd_server *srv;
	struct event *timer;          /* greet wait; lazily made */
	enum smtpd_state state;
	enum smtpd_wait wait;
	int flags;
	int errors;
	char qid[SMTPD_QID_SIZE];
	char *helo;
	char *auth_user;
	char *xf[SMTPD_XF_N];
	/* the transaction */
	char *sender;
	char **rcpts, **orcpts;
	int *notify;
	int nrcpt, rcpt_cap;
	int body, ret;
	char *envid;
	uint64_t declared_size;
	char *pending;                /* RCPT being checked by the hook */
	char *pending_orcpt;
	int pending_notify;
	char *auth_mech, *auth_in;    /* AUTH waiting for auth_check */
	int auth_ok;                  /* SASL's yes (1) or no (0) while the
	                                 auth_verdict hook judges it */
	struct buf msg;               /* only during DATA / BDAT */
	size_t hdr_len;               /* our Received: at the start of msg */
	struct smtp_line_reader lr;
	struct smtp_line_data dr;
	uint64_t bdat_left;
	int bdat_last;
	int resume_code;              /* smtpd_resume() during the hook */
	char *resume_text;
	/* Ownership: while a SASL job is out, the job owns the
	 * sasl_glue_server (s->sasl is NULL); its completion gives it back
	 * only to the session that still waits for that job, else frees it. */
	struct sasl_glue_server *sasl;
	struct smtpd_auth_job *auth_job;  /* borrowed: identifies the job */
	enum smtp_verb last_verb;
	uint16_t cmd_ok[SMTPD_NVERBS], cmd_all[SMTPD_NVERBS];
	void *data;
	/* Milters: like the SASL state, the job owns the milter session
	 * while it is out (s->milter is NULL then). */
	struct milter_sess *milter;
	struct smtpd_milter_job *milter_job;  /* borrowed: identifies it */
	char *auth_type;              /* the login's mechanism ({auth_type}) */
	/* only with milters: the client's forward-confirmed name and PTR
	 * name (looked up by the first milter job), MAIL's AUTH= value and
	 * the transport/next hop the daemon resolved the sender and the
	 * pending recipient to (smtpd_set_route) */
	char *rname, *rptr;
	char *auth_author;
	int mrej_code;                /* SMTPD_F_BDAT_MREJ: the reply */
	char *mrej_text;
	char *route[4];               /* SMTPD_RT_* */
};

enum { SMTPD_RT_MAIL_MAILER, SMTPD_RT_MAIL_HOST, SMTPD_RT_RCPT_MAILER,
       SMTPD_RT_RCPT_HOST };

struct smtpd_server {
	struct event_base *base;
	struct smtpd_settings set;
	struct smtpd_hooks hooks;
	void *ctx;
	struct conn_server *conns;
	struct smtpd_session *opening;  /* in ops->open: not yet the conn's */
	char *mechs[2];               /* AUTH mechanisms: [0] plain, [1] TLS */
	unsigned jobs;                /* SASL jobs on the worker pool */
	int dead;                     /* freed while jobs were out */
	struct work_pool *milter_pool; /* NULL: no milters */
	int milter_stop;              /* being freed: milter jobs just end */
};

/* A SASL start/step on the worker pool. */
struct smtpd_auth_job {
	struct smtpd_server *srv;
	uint64_t sid;
	struct sasl_glue_server *sasl;  /* owned while the job is out */
	char *mech;                   /* NULL: a step */
	char *in;
	char *out;
	enum sasl_glue_rc rc;
};

static void smtpd_resumed(struct smtpd_session *s, int code,
                          const char *text);
static void smtpd_hook_begin(struct smtpd_session *s, enum smtpd_wait w);
static void smtpd_hook_end(struct smtpd_session *s);
static int smtpd_milter_stage(struct smtpd_session *s, enum milter_stage st,
                              int code, const char *text);

/* ---- small helpers --------------------------------------------------- */

/* n bytes exactly (a NUL from the client does not shorten the copy). */
static char *smtpd_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* XFORWARD's NAME; else the name the milters' lookup confirmed (for the
 * connection's own address only); else "unknown", as Postfix. */
static const char *smtpd_client_name(const struct smtpd_session *s)
{
	if (s->xf[SMTPD_XF_NAME] != NULL)
		return s->xf[SMTPD_XF_NAME];
	if (s->xf[SMTPD_XF_ADDR] == NULL && s->rname != NULL)
		return s->rname;
	return "unknown";
}

static const char *smtpd_client_addr(const struct smtpd_session *s)
{
	return s->xf[SMTPD_XF_ADDR] != NULL ? s->xf[SMTPD_XF_ADDR] :
	       conn_addr(s->conn);
}

/* The input buffer (conn keeps no BUSY conn whose client left). */
static struct evbuffer *smtpd_in(const struct smtpd_session *s)
{
	return bufferevent_get_input(conn_bev(s->conn));
}

static const char *smtpd_qid_or_none(const struct smtpd_session *s)
{
	return s->qid[0] != '\0' ? s->qid : "NOQUEUE";
}

/* Printable copy of untrusted bytes for a log line. */
static void smtpd_printable(const char *in, size_t len, char *out, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < len && o + 1 < n; i++) {
		unsigned char c = (unsigned char)in[i];

		out[o++] = (c >= 32 && c < 127) ? (char)c : '?';
	}
	out[o] = '\0';
}

static void smtpd_set_state(struct smtpd_session *s, enum smtpd_state st)
{
	s->state = st;
}

/* ---- replies --------------------------------------------------------- */

static void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_vline(s->conn, fmt, ap);
	va_end(ap);
}

/* A 4xx/5xx to a command: counts towards smtpd_hard_error_limit. */
static void smtpd_reply_error(struct smtpd_session *s, int code,
                              const char *text)
{
	smtpd_reply(s, "%d %s", code, text);
	if (code == 421) {
		conn_close(s->conn);
		return;
	}
	if (++s->errors >= s->srv->set.hard_error_limit) {
		log_info("too many errors after %s from %s[%s]",
		         smtp_cmd_name(s->last_verb), smtpd_client_name(s),
		         conn_addr(s->conn));
		smtpd_reply(s, "421 4.7.0 %s Error: too many errors",
		            s->srv->set.myhostname);
		conn_close(s->conn);
	}
}

/* A policy refusal, logged Postfix style. */
static void smtpd_reject(struct smtpd_session *s, const char *what, int code,
                         const char *text, const char *rcpt)
{
	log_info("%s: reject: %s from %s[%s]: %d %s; from=<%s> to=<%s> "
	         "proto=%s helo=<%s>", smtpd_qid_or_none(s), what,
	         smtpd_client_name(s), conn_addr(s->conn), code, text,
	         s->sender != NULL ? s->sender : "",
	         rcpt != NULL ? rcpt : "",
	         (s->flags & SMTPD_F_ESMTP) ? "ESMTP" : "SMTP",
	         s->helo != NULL ? s->helo : "");
	smtpd_reply_error(s, code, text);
}

/* ---- transactions ---------------------------------------------------- */

static void smtpd_txn_reset(struct smtpd_session *s)
{
	int i;

	for (i = 0; i < s->nrcpt; i++) {
		free(s->rcpts[i]);
		free(s->orcpts[i]);
	}
	free(s->rcpts);
	free(s->orcpts);
	free(s->notify);
	s->rcpts = s->orcpts = NULL;
	s->notify = NULL;
	s->nrcpt = s->rcpt_cap = 0;
	free(s->sender);
	free(s->envid);
	free(s->pending);
	free(s->pending_orcpt);
	s->sender = s->envid = s->pending = s->pending_orcpt = NULL;
	free(s->auth_author);
	s->auth_author = NULL;
	for (i = 0; i < 4; i++) {
		free(s->route[i]);
		s->route[i] = NULL;
	}
	s->body = s->ret = 0;
	s->declared_size = 0;
	s->qid[0] = '\0';
	s->flags &= ~(SMTPD_F_TOO_BIG | SMTPD_F_BDAT | SMTPD_F_SMTPUTF8 |
	              SMTPD_F_DISCARD);
	buf_free(&s->msg);
}

static int smtpd_txn_add_rcpt(struct smtpd_session *s)
{
	if (s->nrcpt == s->rcpt_cap) {
		int cap = s->rcpt_cap == 0 ? 4 : s->rcpt_cap * 2;
		char **r = realloc(s->rcpts, cap * sizeof(*r));
		char **o = r != NULL ? realloc(s->orcpts, cap * sizeof(*o)) : NULL;
		int *n;

		if (r != NULL)
			s->rcpts = r;
		if (o != NULL)
			s->orcpts = o;
		n = o != NULL ? realloc(s->notify, cap * sizeof(*n)) : NULL;
		if (n == NULL)
			return -1;
		s->notify = n;
		s->rcpt_cap = cap;
	}
	s->rcpts[s->nrcpt] = s->pending;
	s->orcpts[s->nrcpt] = s->pending_orcpt;
	s->notify[s->nrcpt] = s->pending_notify;
	s->nrcpt++;
	s->pending = s->pending_orcpt = NULL;
	return 0;
}

/* ---- finding a session ----------------------------------------------- */

/* The session of sid; NULL once it is closing or gone. */
static struct smtpd_session *smtpd_find(struct smtpd_server *srv,
                                        uint64_t sid)
{
	struct conn *c = conn_find(srv->conns, sid);
	struct smtpd_session *s;

	if (c == NULL || conn_state(c) == CONN_ST_CLOSING)
		return NULL;
	s = conn_session(c);
	/* a connect hook that answers from inside ops->open */
	if (s == NULL && srv->opening != NULL && srv->opening->conn == c)
		s = srv->opening;
	return s;
}

struct smtpd_session *smtpd_session_find(struct smtpd_server *srv,
                                         uint64_t sid)
{
	return srv != NULL ? smtpd_find(srv, sid) : NULL;
}

/* ---- session life ---------------------------------------------------- */

static void smtpd_log_disconnect(struct smtpd_session *s)
{
	char line[512];
	size_t o = 0;
	unsigned all = 0, ok = 0;
	int v;

	line[0] = '\0';
	for (v = 1; v < SMTPD_NVERBS; v++) {
		if (s->cmd_all[v] == 0)
			continue;
		all += s->cmd_all[v];
		ok += s->cmd_ok[v];
		if (s->cmd_ok[v] == s->cmd_all[v])
			o += snprintf(line + o, sizeof(line) - o, " %s=%u",
			              smtp_cmd_name(v), s->cmd_ok[v]);
		else
			o += snprintf(line + o, sizeof(line) - o, " %s=%u/%u",
			              smtp_cmd_name(v), s->cmd_ok[v],
			              s->cmd_all[v]);
		if (o >= sizeof(line))
			break;
	}
	for (o = 0; line[o] != '\0'; o++)
		if (line[o] >= 'A' && line[o] <= 'Z')
			line[o] = (char)(line[o] - 'A' + 'a');
	if (ok == all)
		log_info("disconnect from %s[%s]%s commands=%u",
		         smtpd_client_name(s), conn_addr(s->conn), line, all);
	else
		log_info("disconnect from %s[%s]%s commands=%u/%u",
		         smtpd_client_name(s), conn_addr(s->conn), line, ok,
		         all);
}

/* ops->closed: the conn goes (closed by us, the client gone, a TLS
 * error, the server stopping), and the session with it. */
static void smtpd_closed(struct conn *c, void *sess, int gone,
                         const char *why, void *ctx)
{
	struct smtpd_session *s = sess;
	struct smtpd_server *srv = ctx;
	const char *detail = strstr(why, ": ");
	int i;

	if (gone && strncmp(why, "TLS error", 9) == 0)
		log_info("SSL error after %s from %s[%s]: %s",
		         smtp_cmd_name(s->last_verb), smtpd_client_name(s),
		         conn_addr(c), detail != NULL ? detail + 2 : why);
	else if (gone && !(s->flags & SMTPD_F_QUIT))
		log_info("lost connection after %s from %s[%s]",
		         smtp_cmd_name(s->last_verb), smtpd_client_name(s),
		         conn_addr(c));
	if (s->wait == SMTPD_W_MESSAGE)
		log_info("%s: lost connection while the message was being "
		         "queued from %s[%s]", s->qid, smtpd_client_name(s),
		         conn_addr(c));
	smtpd_log_disconnect(s);
	if (srv->hooks.disconnect != NULL)
		srv->hooks.disconnect(s, srv->ctx);
	if (s->timer != NULL)
		event_free(s->timer);
	smtpd_txn_reset(s);
	/* NULL while a job is out: that job's completion frees it */
	sasl_glue_server_free(s->sasl);
	milter_sess_free(s->milter);
	free(s->helo);
	free(s->auth_user);
	free(s->auth_type);
	free(s->auth_mech);
	free(s->auth_in);
	free(s->resume_text);
	free(s->rname);
	free(s->rptr);
	free(s->mrej_text);
	for (i = 0; i < SMTPD_XF_N; i++)
		free(s->xf[i]);
	free(s);
}

static void smtpd_timer_cb(evutil_socket_t fd, short what, void *arg);

static int smtpd_timer_arm(struct smtpd_session *s, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (s->timer == NULL) {
		s->timer = evtimer_new(s->srv->base, smtpd_timer_cb, s);
		if (s->timer == NULL)
			return -1;
	}
	return evtimer_add(s->timer, &tv);
}

static void smtpd_greet(struct smtpd_session *s)
{
	struct evbuffer *in = smtpd_in(s);
	size_t n = evbuffer_get_length(in);

	if (n > 0) {
		/* Postfix postscreen "pregreet": a client that talks before
		 * the banner is a spam engine or pipelining blindly. */
		char first[64];
		unsigned char *p = evbuffer_pullup(in, n < 40 ? n : 40);

		smtpd_printable((const char *)p, n < 40 ? n : 40, first,
		                sizeof(first));
		log_info("PREGREET %zu from %s[%s]:%d: %s", n,
		         smtpd_client_name(s), conn_addr(s->conn),
		         conn_port(s->conn), first);
		smtpd_reply(s, "554 5.5.1 %s Error: SMTP protocol violation: "
		            "talking too early", s->srv->set.myhostname);
		conn_close(s->conn);
		return;
	}
	smtpd_reply(s, "220 %s %s", s->srv->set.myhostname,
	            s->srv->set.banner);
	smtpd_set_state(s, SMTPD_ST_CMD);
}

/* The greet wait is over: greet if the connect hook said yes. */
static void smtpd_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_session *s = arg;

	if (s->state != SMTPD_ST_CONNECT || !(s->flags & SMTPD_F_GREET_WAIT) ||
	    conn_state(s->conn) != CONN_ST_OPEN)
		return;
	s->flags &= ~SMTPD_F_GREET_WAIT;
	if (s->flags & SMTPD_F_GREET_OK)
		smtpd_greet(s);
}

/* ops->open: the session, then the connect hook (and the greet wait);
 * the 220 follows both. */
static void *smtpd_open(struct conn *c, void *ctx)
{
	struct smtpd_server *srv = ctx;
	struct smtpd_session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->conn = c;
	s->srv = srv;
	if (srv->milter_pool != NULL &&
	    (s->milter = milter_sess_new(srv->set.milters)) == NULL) {
		free(s);
		return NULL;
	}
	buf_init(&s->msg, 0);
	smtp_line_reader_init(&s->lr, srv->set.allow_bare_newline);
	log_info("connect from %s[%s]", smtpd_client_name(s), conn_addr(c));
	smtpd_set_state(s, SMTPD_ST_CONNECT);
	if (srv->set.greet_wait_ms > 0) {
		s->flags |= SMTPD_F_GREET_WAIT;
		if (smtpd_timer_arm(s, srv->set.greet_wait_ms) < 0)
			s->flags &= ~SMTPD_F_GREET_WAIT;
	}
	s->wait = SMTPD_W_CONNECT;
	if (srv->hooks.connect != NULL) {
		srv->opening = s;
		smtpd_hook_begin(s, SMTPD_W_CONNECT);
		srv->hooks.connect(s, srv->ctx);
		smtpd_hook_end(s);
		srv->opening = NULL;
	} else {
		smtpd_resumed(s, 0, NULL);
	}
	return s;
}

/* ops->refuse: over smtpd_client_connection_count_limit or
 * smtpd_connection_limit, in Postfix's words. */
static void smtpd_refuse(struct conn *c, enum conn_refusal why, void *ctx)
{
	struct smtpd_server *srv = ctx;

	if (why == CONN_REFUSE_ADDR)
		conn_printf(c, "421 4.7.0 %s Error: too many connections "
		            "from %s\r\n", srv->set.myhostname, conn_addr(c));
	else
		conn_printf(c, "421 4.7.0 %s Error: too many connections\r\n",
		            srv->set.myhostname);
}

/* ops->timeout: smtpd_timeout without a command, without the replies
 * being read, or while a hook or job was out. */
static void smtpd_timeout(struct conn *c, void *sess, void *ctx)
{
	struct smtpd_session *s = sess;

	log_info("timeout after %s from %s[%s]%s",
	         smtp_cmd_name(s->last_verb), smtpd_client_name(s),
	         conn_addr(c), conn_output_len(c) > SMTPD_WRITE_HIWAT ?
	         ": replies not read" : "");
	smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded",
	            s->srv->set.myhostname);
}

/* ---- hooks and their answers ---------------------------------------- */

static void smtpd_hook_begin(struct smtpd_session *s, enum smtpd_wait w)
{
	s->wait = w;
	s->flags |= SMTPD_F_IN_HOOK;
}

/* The hook returned: if it answered already, act on the answer now; else
 * the conn waits BUSY, reading nothing, until smtpd_resume() (before the
 * greeting it reads on, to catch a client that talks first). */
static void smtpd_hook_end(struct smtpd_session *s)
{
	char *text;

	s->flags &= ~SMTPD_F_IN_HOOK;
	if (!(s->flags & SMTPD_F_RESUMED)) {
		if (s->wait != SMTPD_W_CONNECT)
			conn_busy(s->conn);
		return;
	}
	s->flags &= ~SMTPD_F_RESUMED;
	text = s->resume_text;
	s->resume_text = NULL;
	smtpd_resumed(s, s->resume_code, text);
	free(text);
}

/* An answer came from outside the conn's callbacks: once nothing more
 * is awaited, the conn reads again (the pipelined input is taken from the
 * loop), or closes if a reply asked for it. Call it last. (A client that
 * leaves while its session waits is freed at once: busy_detached.) */
static void smtpd_settle(struct smtpd_session *s)
{
	if (s->wait == SMTPD_W_NONE && conn_state(s->conn) == CONN_ST_BUSY)
		(void)conn_ready(s->conn);
}

int smtpd_server_milters(const struct smtpd_server *srv)
{
	return srv->milter_pool != NULL;
}

void smtpd_set_route(struct smtpd_server *srv, uint64_t sid,
                     const char *mailer, const char *host)
{
	struct smtpd_session *s;
	int k;

	if (srv->milter_pool == NULL || mailer == NULL)
		return;   /* no milters: nothing to tell, nothing kept */
	s = smtpd_find(srv, sid);
	if (s == NULL || (s->wait != SMTPD_W_MAIL && s->wait != SMTPD_W_RCPT))
		return;
	k = s->wait == SMTPD_W_MAIL ? SMTPD_RT_MAIL_MAILER :
	    SMTPD_RT_RCPT_MAILER;
	free(s->route[k]);
	free(s->route[k + 1]);
	s->route[k] = strdup(mailer);
	s->route[k + 1] = host != NULL ? strdup(host) : NULL;
}

int smtpd_resume(struct smtpd_server *srv, uint64_t sid, int code,
                 const char *text)
{
	struct smtpd_session *s = smtpd_find(srv, sid);

	if (s == NULL || s->wait == SMTPD_W_NONE ||
	    s->wait == SMTPD_W_AUTH_JOB)
		return -1;
	if (s->flags & SMTPD_F_IN_HOOK) {
		if (s->flags & SMTPD_F_RESUMED)
			return -1;
		s->flags |= SMTPD_F_RESUMED;
		s->resume_code = code;
		s->resume_text = text != NULL ? strdup(text) : NULL;
		return 0;
	}
	smtpd_resumed(s, code, text);
	smtpd_settle(s);
	return 0;
}

static void smtpd_ok(struct smtpd_session *s)
{
	/* saturates like cmd_all: "help=65535" rather than a wrapped count */
	if (s->cmd_ok[s->last_verb] < UINT16_MAX)
		s->cmd_ok[s->last_verb]++;
}

static void smtpd_auth_start(struct smtpd_session *s);
static void smtpd_auth_conclude(struct smtpd_session *s);
static void smtpd_auth_finish(struct smtpd_session *s);
static void smtpd_message_done(struct smtpd_session *s, int code,
                               const char *text);

static void smtpd_resumed_hold(struct smtpd_session *s, int code,
                               const char *text);

/* The answer's reply (and whatever follows from it) leaves in one piece,
 * straight to a plain socket: most answers come from a worker or Redis,
 * outside the conn's callbacks, where each reply cost a write event and
 * a loop turn (issue 12). */
static void smtpd_resumed(struct smtpd_session *s, int code,
                          const char *text)
{
	struct conn *c = s->conn;

	conn_hold(c);
	smtpd_resumed_hold(s, code, text);
	conn_release(c);
}

static void smtpd_resumed_hold(struct smtpd_session *s, int code,
                               const char *text)
{
	enum smtpd_wait w = s->wait;

	s->wait = SMTPD_W_NONE;
	/* the daemon said yes to MAIL or RCPT: now the milters judge it */
	if ((code == 0 || (code >= 200 && code < 300)) &&
	    (w == SMTPD_W_MAIL || w == SMTPD_W_RCPT) &&
	    smtpd_milter_stage(s, w == SMTPD_W_MAIL ? MILTER_M_ENVFROM :
	                       MILTER_M_ENVRCPT, code, text))
		return;
	/* a 2xx from a hook is a yes with its own text */
	if (code >= 200 && code < 300 && w != SMTPD_W_MESSAGE) {
		if (w == SMTPD_W_MAIL || w == SMTPD_W_RCPT) {
			if (w == SMTPD_W_RCPT && smtpd_txn_add_rcpt(s) < 0) {
				code = 451;
				text = "4.3.0 Error: out of memory";
				goto refused;
			}
			smtpd_ok(s);
			smtpd_reply(s, "%d %s", code, text != NULL ? text : "Ok");
			return;
		}
		code = 0;
	}
refused:
	switch (w) {
	case SMTPD_W_CONNECT:
		if (code != 0) {
			log_info("NOQUEUE: reject: CONNECT from %s[%s]: %d %s",
			         smtpd_client_name(s), conn_addr(s->conn), code,
			         text != NULL ? text : "");
			smtpd_reply(s, "%d %s", code, text != NULL ? text :
			            "4.3.2 Service currently unavailable");
			conn_close(s->conn);
			return;
		}
		s->flags |= SMTPD_F_GREET_OK;
		if (!(s->flags & SMTPD_F_GREET_WAIT))
			smtpd_greet(s);
		return;
	case SMTPD_W_MAIL:
		if (code == 0) {
			smtpd_ok(s);
			smtpd_reply(s, "250 2.1.0 Ok");
			return;
		}
		smtpd_reject(s, "MAIL", code, text != NULL ? text :
		             "5.7.1 Sender address rejected", NULL);
		smtpd_txn_reset(s);
		return;
	case SMTPD_W_RCPT:
		if (code == 0 && smtpd_txn_add_rcpt(s) == 0) {
			smtpd_ok(s);
			smtpd_reply(s, "250 2.1.5 Ok");
			return;
		}
		if (code == 0) {
			code = 451;
			text = "4.3.0 Error: out of memory";
		}
		smtpd_reject(s, "RCPT", code, text != NULL ? text :
		             "5.7.1 Recipient address rejected", s->pending);
		free(s->pending);
		free(s->pending_orcpt);
		s->pending = s->pending_orcpt = NULL;
		return;
	case SMTPD_W_MESSAGE:
		smtpd_message_done(s, code, text);
		return;
	case SMTPD_W_AUTH_CHECK:
		if (code == 0) {
			smtpd_auth_start(s);
			return;
		}
		smtpd_reply_error(s, code, text != NULL ? text :
		                  "4.7.0 Temporary authentication failure");
		return;
	case SMTPD_W_AUTH_VERDICT:
		if (code == 0) {
			smtpd_auth_conclude(s);
			return;
		}
		/* refused whatever the credentials: no login, and the
		 * daemon has logged why */
		smtpd_auth_finish(s);
		smtpd_reply_error(s, code, text != NULL ? text :
		                  "4.7.0 Temporary authentication failure");
		return;
	default:
		return;
	}
}

/* ---- Received: header and the message hand-off ----------------------- */

/* RFC 3848 protocol names for the "with" clause. */
static const char *smtpd_protocol(const struct smtpd_session *s)
{
	static const char *const esmtp[] = { "ESMTP", "ESMTPA", "ESMTPS",
	                                     "ESMTPSA" };
	static const char *const utf8[] = { "UTF8SMTP", "UTF8SMTPA",
	                                    "UTF8SMTPS", "UTF8SMTPSA" };
	int i = (conn_tls(s->conn) ? 2 : 0) + (s->auth_user ? 1 : 0);

	if (!(s->flags & SMTPD_F_ESMTP))
		return "SMTP";
	return (s->flags & SMTPD_F_SMTPUTF8) ? utf8[i] : esmtp[i];
}

/* RFC 5321 §4.4 trace field, prepended to the message. */
static int smtpd_received(struct smtpd_session *s)
{
	const struct smtpd_settings *set = &s->srv->set;
	char tls[160], date[64];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
	if (buf_printf(&s->msg, "Received: from %s (%s [%s])\r\n",
	               s->xf[SMTPD_XF_HELO] != NULL ? s->xf[SMTPD_XF_HELO] :
	               s->helo, smtpd_client_name(s), smtpd_client_addr(s)) < 0)
		return -1;
	if (tls_srv_describe(conn_tls_srv(s->conn), tls, sizeof(tls)) > 0 &&
	    buf_printf(&s->msg, "\t(using %s)\r\n", tls) < 0)
		return -1;
	if (buf_printf(&s->msg, "\tby %s (%s) with %s id %s\r\n",
	               set->myhostname, set->name, smtpd_protocol(s),
	               s->qid) < 0)
		return -1;
	if (s->nrcpt == 1)
		return buf_printf(&s->msg, "\tfor <%s>; %s\r\n", s->rcpts[0],
		                  date);
	return buf_printf(&s->msg, "\t%s\r\n", date);
}

/* The message buffer: what the client declared (a claim, not a promise,
 * so at most SMTPD_MSG_STEP at first), growing in bounded steps and never
 * past the size limit: our Received: header, the limit, one byte to tell
 * "over" and what the DATA reader may hold back. */
static int smtpd_msg_begin(struct smtpd_session *s)
{
	size_t limit = s->srv->set.message_size_limit;
	size_t want = s->declared_size > 0 ? (size_t)s->declared_size : 4096;

	if (want > SMTPD_MSG_STEP)
		want = SMTPD_MSG_STEP;
	if (limit > 0 && want > limit)
		want = limit;
	buf_init(&s->msg, 0);
	if (buf_reserve_step(&s->msg, want + 1024, SMTPD_MSG_STEP) < 0)
		return -1;
	if (!s->srv->set.no_received && smtpd_received(s) < 0)
		return -1;
	s->hdr_len = s->msg.len;
	if (limit > 0)
		s->msg.max = s->hdr_len + limit + 1 + SMTP_LINE_DATA_HELD;
	return 0;
}

void smtpd_msg_free(struct smtpd_msg *m)
{
	int i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nrcpt; i++) {
		free(m->rcpts[i]);
		free(m->orcpts[i]);
	}
	free(m->rcpts);
	free(m->orcpts);
	free(m->notify);
	free(m->sender);
	free(m->data);
	free(m->envid);
	free(m->client_name);
	free(m->client_addr);
	free(m->helo);
	free(m->auth_user);
	free(m->xforward_ident);
	free(m->protocol);
	free(m->quarantine);
	free(m);
}

static char *smtpd_dup(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

/* Move the transaction into a struct smtpd_msg for the hook. */
static struct smtpd_msg *smtpd_msg_take(struct smtpd_session *s)
{
	struct smtpd_msg *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	memcpy(m->qid, s->qid, sizeof(m->qid));
	m->sender = s->sender;
	m->rcpts = s->rcpts;
	m->orcpts = s->orcpts;
	m->notify = s->notify;
	m->nrcpt = s->nrcpt;
	m->envid = s->envid;
	s->sender = s->envid = NULL;
	s->rcpts = s->orcpts = NULL;
	s->notify = NULL;
	s->nrcpt = s->rcpt_cap = 0;
	m->len = s->msg.len;
	m->data = buf_steal(&s->msg);
	m->body = s->body;
	m->ret = s->ret;
	m->smtputf8 = (s->flags & SMTPD_F_SMTPUTF8) != 0;
	m->client_name = strdup(smtpd_client_name(s));
	m->client_addr = strdup(smtpd_client_addr(s));
	m->helo = smtpd_dup(s->xf[SMTPD_XF_HELO] != NULL ?
	                    s->xf[SMTPD_XF_HELO] : s->helo);
	m->auth_user = smtpd_dup(s->auth_user);
	m->xforward_ident = smtpd_dup(s->xf[SMTPD_XF_IDENT]);
	m->protocol = strdup(s->xf[SMTPD_XF_PROTO] != NULL ?
	                     s->xf[SMTPD_XF_PROTO] : smtpd_protocol(s));
	if (m->data == NULL || m->client_name == NULL ||
	    m->client_addr == NULL || m->protocol == NULL) {
		smtpd_msg_free(m);
		return NULL;
	}
	return m;
}

static int smtpd_milter_message(struct smtpd_session *s,
                                struct smtpd_msg *m);

/* The message hook gets m, as the milters left it. */
static void smtpd_msg_hand_off(struct smtpd_session *s, struct smtpd_msg *m)
{
	struct smtpd_server *srv = s->srv;

	if (srv->hooks.message == NULL) {
		smtpd_msg_free(m);
		smtpd_message_done(s, 0, NULL);
		return;
	}
	smtpd_hook_begin(s, SMTPD_W_MESSAGE);
	srv->hooks.message(s, m, srv->ctx);
	smtpd_hook_end(s);
}

/* The body is complete and acceptable: hand it to the daemon. */
static void smtpd_msg_deliver(struct smtpd_session *s)
{
	struct smtpd_msg *m;
	size_t size = s->msg.len;
	int nrcpt = s->nrcpt;

	log_info("%s: from=<%s>, size=%zu, nrcpt=%d", s->qid, s->sender,
	         size, nrcpt);
	m = smtpd_msg_take(s);
	if (m == NULL) {
		smtpd_message_done(s, 451, "4.3.0 Error: out of memory");
		return;
	}
	if (smtpd_milter_message(s, m))
		return;
	smtpd_msg_hand_off(s, m);
}

static void smtpd_message_done(struct smtpd_session *s, int code,
                               const char *text)
{
	if (code == 0 || (code >= 200 && code < 300)) {
		smtpd_ok(s);
		if (code == 0)
			smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
		else
			smtpd_reply(s, "%d %s", code, text != NULL ? text : "");
	} else {
		smtpd_reject(s, "END-OF-MESSAGE", code, text != NULL ? text :
		             "4.3.0 Error: queue file write error", NULL);
	}
	smtpd_txn_reset(s);
}

/* End of a DATA body: judge what the reader saw. */
static void smtpd_data_end(struct smtpd_session *s)
{
	int bad = s->dr.flags;

	if (s->flags & SMTPD_F_TOO_BIG) {
		smtpd_reject(s, "END-OF-MESSAGE", 552,
		             "5.3.4 Error: message file too big", NULL);
		smtpd_txn_reset(s);
		return;
	}
	if (bad != 0 && !s->srv->set.allow_bare_newline) {
		/* Postfix smtpd_forbid_bare_newline: the whole message is
		 * refused, and since only CRLF.CRLF ended it, whatever was
		 * hidden behind a bare LF or CR went with it. */
		smtpd_reject(s, "END-OF-MESSAGE", 550,
		             (bad & SMTP_LINE_DATA_BARE_LF) ?
		             "5.5.2 Error: bare <LF> received" :
		             "5.5.2 Error: bare <CR> received", NULL);
		smtpd_txn_reset(s);
		return;
	}
	smtpd_msg_deliver(s);
}

/* ---- commands -------------------------------------------------------- */

/* A name from the client that goes into headers and logs: printable ASCII
 * without the characters that would break a Received: comment. */
static char *smtpd_clean_dup(const char *in, size_t len)
{
	char *p = smtpd_strndup(in, len > 255 ? 255 : len);
	size_t i;

	for (i = 0; p != NULL && p[i] != '\0'; i++)
		if ((unsigned char)p[i] < 33 || (unsigned char)p[i] > 126 ||
		    p[i] == '(' || p[i] == ')' || p[i] == '\\')
			p[i] = '?';
	return p;
}

static const char *smtpd_mechs(struct smtpd_session *s)
{
	struct smtpd_server *srv = s->srv;
	int tls = conn_tls(s->conn);
	struct sasl_glue_server *g;
	struct err err;

	if (srv->mechs[tls] != NULL)
		return srv->mechs[tls];
	g = sasl_glue_server_new(srv->set.sasl_service, srv->set.myhostname,
	                         NULL, NULL,
	                         tls ? tls_srv_ssf(conn_tls_srv(s->conn)) : 0,
	                         &err);
	if (g == NULL) {
		log_warn("SASL: %s", err.msg);
		return "";
	}
	if (srv->set.sasl_options == NULL ||
	    sasl_glue_server_set_options(g, srv->set.sasl_options, &err) == 0)
		srv->mechs[tls] = strdup(sasl_glue_server_mechs(g));
	else
		log_warn("SASL: %s", err.msg);
	sasl_glue_server_free(g);
	return srv->mechs[tls] != NULL ? srv->mechs[tls] : "";
}

static int smtpd_auth_offered(struct smtpd_session *s)
{
	const struct smtpd_settings *set = &s->srv->set;

	return set->auth_enable && (conn_tls(s->conn) || !set->tls_auth_only);
}

/* XFORWARD is Postfix's, not RFC 5321's; its XFORWARD_README lets a
 * server accept it from authorized clients only, which is the daemon's
 * call. No hook: not offered. */
static int smtpd_xforward_allowed(struct smtpd_session *s)
{
	return s->srv->hooks.xforward_ok != NULL &&
	       s->srv->hooks.xforward_ok(s, s->srv->ctx);
}

static void smtpd_proceed_ehlo(struct smtpd_session *s, enum smtp_verb verb);

static void smtpd_cmd_ehlo(struct smtpd_session *s, const struct smtp_cmd *c)
{
	free(s->helo);
	s->helo = smtpd_clean_dup(c->arg, c->arg_len);
	smtpd_txn_reset(s);
	if (smtpd_milter_stage(s, MILTER_M_HELO, c->verb, NULL))
		return;
	smtpd_proceed_ehlo(s, c->verb);
}

static void smtpd_proceed_ehlo(struct smtpd_session *s, enum smtp_verb verb)
{
	const struct smtpd_settings *set = &s->srv->set;
	const char *cap[12];
	char size[40], auth[256], auth_eq[256];
	int n = 0, i;

	smtpd_ok(s);
	if (verb == SMTP_CMD_HELO) {
		s->flags &= ~SMTPD_F_ESMTP;
		smtpd_reply(s, "250 %s", set->myhostname);
		return;
	}
	s->flags |= SMTPD_F_ESMTP;
	cap[n++] = "PIPELINING";
	if (set->message_size_limit > 0)
		snprintf(size, sizeof(size), "SIZE %zu", set->message_size_limit);
	else
		snprintf(size, sizeof(size), "SIZE");
	cap[n++] = size;
	if (set->tls_ctx != NULL && !conn_tls(s->conn))
		cap[n++] = "STARTTLS";
	if (smtpd_auth_offered(s) && smtpd_mechs(s)[0] != '\0') {
		snprintf(auth, sizeof(auth), "AUTH %s", smtpd_mechs(s));
		cap[n++] = auth;
		/* Pre-RFC 2554 clients (old Outlook) look for "AUTH=";
		 * Postfix's broken_sasl_auth_clients sends both forms. */
		if (set->auth_broken_clients) {
			snprintf(auth_eq, sizeof(auth_eq), "AUTH=%s",
			         smtpd_mechs(s));
			cap[n++] = auth_eq;
		}
	}
	cap[n++] = "ENHANCEDSTATUSCODES";
	cap[n++] = "8BITMIME";
	s->flags &= ~SMTPD_F_XFWD;
	if (smtpd_xforward_allowed(s)) {
		s->flags |= SMTPD_F_XFWD;
		cap[n++] = "XFORWARD NAME ADDR PROTO HELO IDENT SOURCE PORT";
	}
	if (!set->no_chunking)
		cap[n++] = "CHUNKING";
	cap[n++] = "SMTPUTF8";
	smtpd_reply(s, "250-%s", set->myhostname);
	for (i = 0; i < n; i++)
		smtpd_reply(s, "250%c%s", i + 1 < n ? '-' : ' ', cap[i]);
}

static long smtpd_xtext(const char *in, size_t len, char **out_r)
{
	char tmp[256];
	long n = smtp_cmd_xtext_decode(in, len, tmp, sizeof(tmp));

	*out_r = NULL;
	if (n < 0)
		return -1;
	*out_r = strdup(tmp);
	return *out_r == NULL ? -1 : n;
}

static void smtpd_cmd_mail(struct smtpd_session *s, const struct smtp_cmd *c)
{
	const struct smtpd_settings *set = &s->srv->set;
	unsigned flags = ADDR_NULL_OK | ADDR_RELAY_CHARS_OK;
	char text[ADDR_TEXT_MAX];
	struct addr a;
	size_t used;

	if (s->helo == NULL)
		return smtpd_reply_error(s, 503, "5.5.1 Error: send HELO/EHLO first");
	if (s->sender != NULL)
		return smtpd_reply_error(s, 503, "5.5.1 Error: nested MAIL command");
	if (set->tls_required && !conn_tls(s->conn))
		return smtpd_reply_error(s, 530, "5.7.0 Must issue a STARTTLS command first");
	if (c->has_size && set->message_size_limit > 0 &&
	    c->size > set->message_size_limit)
		return smtpd_reject(s, "MAIL", 552,
		                    "5.3.4 Message size exceeds fixed limit", NULL);
	if (c->body == SMTP_BODY_BINARYMIME)
		return smtpd_reply_error(s, 555, "5.5.4 Unsupported option: BODY=BINARYMIME");
	if (c->smtputf8)
		flags |= ADDR_UTF8;
	if (addr_parse_path(c->path - 1, c->path_len + 2, flags, &a, &used) !=
	        ADDR_OK || used != c->path_len + 2 ||
	    addr_format(&a, text, sizeof(text)) < 0)
		return smtpd_reject(s, "MAIL", 501,
		                    "5.1.7 Bad sender address syntax", NULL);
	if (c->envid != NULL && smtpd_xtext(c->envid, c->envid_len, &s->envid) < 0)
		return smtpd_reply_error(s, 501, "5.5.4 Bad ENVID parameter");
	s->sender = strdup(text);
	if (s->sender == NULL)
		return smtpd_reply_error(s, 451, "4.3.0 Error: out of memory");
	/* RFC 4954 §5: AUTH= is trusted from an authenticated client only
	 * ({auth_author} for the milters); "<>" says the author is unknown */
	if (c->auth != NULL && s->auth_user != NULL && s->milter != NULL &&
	    smtpd_xtext(c->auth, c->auth_len, &s->auth_author) >= 0 &&
	    s->auth_author != NULL && strcmp(s->auth_author, "<>") == 0) {
		free(s->auth_author);
		s->auth_author = NULL;
	}
	queue_qid_new(s->qid);
	if (s->auth_user != NULL)
		log_info("%s: client=%s[%s], sasl_username=%s", s->qid,
		         smtpd_client_name(s), conn_addr(s->conn), s->auth_user);
	else
		log_info("%s: client=%s[%s]", s->qid, smtpd_client_name(s),
		         conn_addr(s->conn));
	s->body = c->body;
	s->ret = c->ret;
	s->declared_size = c->has_size ? c->size : 0;
	if (c->smtputf8)
		s->flags |= SMTPD_F_SMTPUTF8;
	if (s->srv->hooks.mail == NULL) {
		s->wait = SMTPD_W_MAIL;
		return smtpd_resumed(s, 0, NULL);
	}
	smtpd_hook_begin(s, SMTPD_W_MAIL);
	s->srv->hooks.mail(s, s->sender, s->srv->ctx);
	smtpd_hook_end(s);
}

static void smtpd_cmd_rcpt(struct smtpd_session *s, const struct smtp_cmd *c)
{
	unsigned flags = ADDR_POSTMASTER_OK;
	char text[ADDR_TEXT_MAX], deny[ADDR_TEXT_MAX + 64];
	struct addr a;
	size_t used;
	enum addr_rc rc;

	if (s->sender == NULL)
		return smtpd_reply_error(s, 503, "5.5.1 Error: need MAIL command");
	if (s->nrcpt >= s->srv->set.recipient_limit) {
		/* RFC 5321 §4.5.3.1.8: 452, and the client goes on */
		smtpd_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (s->flags & SMTPD_F_SMTPUTF8)
		flags |= ADDR_UTF8;
	rc = addr_parse_path(c->path - 1, c->path_len + 2, flags, &a, &used);
	if (rc == ADDR_ERR_ROUTE || rc == ADDR_ERR_RELAY_CHAR) {
		/* source routes and %/! forms are relay tricks: refused as
		 * relaying, whatever domain they end in */
		char shown[128];

		smtpd_printable(c->path, c->path_len, shown, sizeof(shown));
		snprintf(deny, sizeof(deny), "5.7.1 <%s>: Relay access denied",
		         shown);
		return smtpd_reject(s, "RCPT", 554, deny, shown);
	}
	if (rc != ADDR_OK || used != c->path_len + 2 || a.is_null ||
	    addr_format(&a, text, sizeof(text)) < 0)
		return smtpd_reject(s, "RCPT", 501,
		                    "5.1.3 Bad recipient address syntax", NULL);
	free(s->pending);
	free(s->pending_orcpt);
	s->pending = strdup(text);
	s->pending_orcpt = c->orcpt != NULL ?
	                   smtpd_strndup(c->orcpt, c->orcpt_len) : NULL;
	s->pending_notify = c->notify;
	free(s->route[SMTPD_RT_RCPT_MAILER]);
	free(s->route[SMTPD_RT_RCPT_HOST]);
	s->route[SMTPD_RT_RCPT_MAILER] = s->route[SMTPD_RT_RCPT_HOST] = NULL;
	if (s->pending == NULL)
		return smtpd_reply_error(s, 451, "4.3.0 Error: out of memory");
	if (s->srv->hooks.rcpt == NULL) {
		s->wait = SMTPD_W_RCPT;
		return smtpd_resumed(s, 0, NULL);
	}
	smtpd_hook_begin(s, SMTPD_W_RCPT);
	s->srv->hooks.rcpt(s, s->pending, s->srv->ctx);
	smtpd_hook_end(s);
}

static int smtpd_txn_ready(struct smtpd_session *s)
{
	if (s->sender == NULL) {
		smtpd_reply_error(s, 503, "5.5.1 Error: need MAIL command");
		return 0;
	}
	if (s->nrcpt == 0) {
		smtpd_reply_error(s, 554, "5.5.1 Error: no valid recipients");
		return 0;
	}
	return 1;
}

static void smtpd_data_go(struct smtpd_session *s);

static void smtpd_cmd_data(struct smtpd_session *s, const struct smtp_cmd *c)
{
	if (!smtpd_txn_ready(s))
		return;
	if (s->flags & SMTPD_F_BDAT)
		return smtpd_reply_error(s, 503, "5.5.1 Error: DATA after BDAT");
	/* Postfix: the milters' DATA event comes with the command, before
	 * 354; the session reads nothing more meanwhile (DATA ends a
	 * PIPELINING group, RFC 2920 §3.1). */
	if (smtpd_milter_stage(s, MILTER_M_DATA, 0, NULL))
		return;
	smtpd_data_go(s);
}

/* DATA accepted: 354 and the body. */
static void smtpd_data_go(struct smtpd_session *s)
{
	if (smtpd_msg_begin(s) < 0) {
		buf_free(&s->msg);
		return smtpd_reply_error(s, 451, "4.3.0 Error: out of memory");
	}
	/* counted as ok by its final reply, not by the 354 */
	smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	smtp_line_data_init(&s->dr);
	smtpd_set_state(s, SMTPD_ST_DATA);
}

static void smtpd_bdat_begin(struct smtpd_session *s)
{
	if (smtpd_msg_begin(s) < 0) {
		buf_free(&s->msg);
		s->flags |= SMTPD_F_TOO_BIG;
	}
}

/* The first BDAT refused by the milters: its chunk is read, then the
 * reply (code 0: out of memory). */
static void smtpd_bdat_refuse(struct smtpd_session *s, int code,
                              const char *text)
{
	free(s->mrej_text);
	s->mrej_text = code != 0 && text != NULL ? strdup(text) : NULL;
	s->mrej_code = s->mrej_text != NULL ? code : 451;
	s->flags |= SMTPD_F_BDAT_MREJ;
}

/* RFC 3030 §3: the chunk is read even when the command is refused. */
static void smtpd_cmd_bdat(struct smtpd_session *s, const struct smtp_cmd *c)
{
	s->bdat_left = c->chunk_size;
	s->bdat_last = c->last;
	if (s->sender == NULL || s->nrcpt == 0) {
		s->flags |= SMTPD_F_BDAT_BAD;
	} else if (!(s->flags & SMTPD_F_BDAT)) {
		s->flags |= SMTPD_F_BDAT;
		/* the milters' DATA event, as for DATA: the first chunk
		 * waits in the input meanwhile (code 1: BDAT) */
		if (smtpd_milter_stage(s, MILTER_M_DATA, 1, NULL))
			return;
		smtpd_bdat_begin(s);
	}
	smtpd_set_state(s, SMTPD_ST_BDAT);
}

static void smtpd_cmd_starttls(struct smtpd_session *s)
{
	size_t n = evbuffer_get_length(smtpd_in(s));
	struct err err;
	int i;

	if (s->srv->set.tls_ctx == NULL)
		return smtpd_reply_error(s, 502, "5.5.1 Error: command not implemented");
	if (conn_tls(s->conn))
		return smtpd_reply_error(s, 554, "5.5.1 Error: TLS already active");
	smtpd_ok(s);
	smtpd_reply(s, "220 2.0.0 Ready to start TLS");
	if (n > 0)
		log_info("discarding %zu bytes pipelined after STARTTLS from "
		         "%s[%s]", n, smtpd_client_name(s), conn_addr(s->conn));
	/* RFC 3207 §4.2: conn_starttls() drops the bytes pipelined after
	 * STARTTLS (the CVE-2011-0411 injection); the session forgets all
	 * pre-TLS state here. */
	if (conn_starttls(s->conn, &err) < 0) {
		log_warn("STARTTLS from %s[%s]: %s", smtpd_client_name(s),
		         conn_addr(s->conn), err.msg);
		conn_close(s->conn);
		return;
	}
	s->flags &= ~(SMTPD_F_ESMTP | SMTPD_F_XFWD);
	smtpd_txn_reset(s);
	free(s->helo);
	free(s->auth_user);
	free(s->auth_type);
	s->helo = s->auth_user = s->auth_type = NULL;
	for (i = 0; i < SMTPD_XF_N; i++) {
		free(s->xf[i]);
		s->xf[i] = NULL;
	}
}

static void smtpd_cmd_xforward(struct smtpd_session *s,
                               const struct smtp_cmd *c)
{
	char v[SMTP_XFORWARD_VALUE_MAX + 1];
	char *keep[SMTPD_XF_N] = { NULL };
	int set[SMTPD_XF_N] = { 0 };
	int i, k;

	/* Offered at the last EHLO and still allowed now: the login may
	 * have changed since (the forwarder says EHLO before AUTH only). */
	if (!(s->flags & SMTPD_F_XFWD) || !smtpd_xforward_allowed(s))
		return smtpd_reply_error(s, 550, "5.7.0 Error: insufficient authorization");
	if (s->sender != NULL)
		return smtpd_reply_error(s, 503, "5.5.1 Error: MAIL transaction in progress");
	/* all attributes or none: judge them all before keeping any */
	for (i = 0; i < c->nxattr; i++) {
		const struct smtp_cmd_xattr *x = &c->xattr[i];
		enum smtp_xforward_attr a = smtp_xforward_attr(x->name,
		                                                x->name_len);
		int rc;

		if (a >= SMTP_XFORWARD_NKEPT)
			continue;   /* PORT, SOURCE: accepted, not kept */
		rc = smtp_xforward_value(a, x->value, x->value_len, v,
		                         sizeof(v));
		k = (int)a;
		free(keep[k]);
		keep[k] = NULL;
		set[k] = 1;
		if (rc > 0 && (keep[k] = strdup(v)) == NULL)
			rc = -2;
		if (rc < 0) {
			for (k = 0; k < SMTPD_XF_N; k++)
				free(keep[k]);
			if (rc == -2)
				return smtpd_reply_error(s, 451, "4.3.0 Error: out of memory");
			return smtpd_reply_error(s, 501, "5.5.4 Bad XFORWARD attribute value");
		}
	}
	for (k = 0; k < SMTPD_XF_N; k++) {
		if (!set[k])
			continue;
		free(s->xf[k]);
		s->xf[k] = keep[k];
	}
	smtpd_ok(s);
	smtpd_reply(s, "250 2.0.0 Ok");
}

static void smtpd_cmd_auth(struct smtpd_session *s, const struct smtp_cmd *c)
{
	if (!smtpd_auth_offered(s))
		return smtpd_reply_error(s, 503, "5.5.1 Error: authentication not enabled");
	if (s->auth_user != NULL)
		return smtpd_reply_error(s, 503, "5.5.1 Error: already authenticated");
	if (s->sender != NULL)
		return smtpd_reply_error(s, 503, "5.5.1 Error: MAIL transaction in progress");
	free(s->auth_mech);
	free(s->auth_in);
	s->auth_mech = smtpd_strndup(c->mech, c->mech_len);
	s->auth_in = c->initial != NULL ?
	             smtpd_strndup(c->initial, c->initial_len) : NULL;
	if (s->auth_mech == NULL)
		return smtpd_reply_error(s, 454, "4.7.0 Temporary authentication failure");
	if (s->srv->hooks.auth_check == NULL)
		return smtpd_auth_start(s);
	smtpd_hook_begin(s, SMTPD_W_AUTH_CHECK);
	s->srv->hooks.auth_check(s, s->auth_mech, s->srv->ctx);
	smtpd_hook_end(s);
}

static void smtpd_cmd_misc(struct smtpd_session *s, const struct smtp_cmd *c)
{
	switch (c->verb) {
	case SMTP_CMD_RSET:
		smtpd_txn_reset(s);
		smtpd_ok(s);
		smtpd_reply(s, "250 2.0.0 Ok");
		return;
	case SMTP_CMD_NOOP:
		smtpd_ok(s);
		smtpd_reply(s, "250 2.0.0 Ok");
		return;
	case SMTP_CMD_QUIT:
		smtpd_ok(s);
		s->flags |= SMTPD_F_QUIT;
		smtpd_reply(s, "221 2.0.0 Bye");
		conn_close(s->conn);
		return;
	case SMTP_CMD_HELP:
		smtpd_ok(s);
		smtpd_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA "
		            "BDAT RSET NOOP QUIT HELP VRFY%s%s",
		            s->srv->set.tls_ctx != NULL ? " STARTTLS" : "",
		            smtpd_auth_offered(s) ? " AUTH" : "");
		return;
	case SMTP_CMD_VRFY:
		/* RFC 5321 §3.5.3: 252 says nothing about the address */
		smtpd_ok(s);
		smtpd_reply(s, "252 2.0.0 Cannot VRFY user, but will accept "
		            "message and attempt delivery");
		return;
	case SMTP_CMD_EXPN:
		return smtpd_reply_error(s, 502, "5.5.1 EXPN command is disabled");
	case SMTP_CMD_HTTP:
		log_info("NOQUEUE: reject: HTTP command from %s[%s]",
		         smtpd_client_name(s), conn_addr(s->conn));
		smtpd_reply(s, "554 5.7.0 Error: this is an SMTP server, not a "
		            "web proxy");
		conn_close(s->conn);
		return;
	default:
		return smtpd_reply_error(s, 502, "5.5.1 Error: command not implemented");
	}
}

static void smtpd_command(struct smtpd_session *s, const char *line,
                          size_t len)
{
	struct smtp_cmd c;
	enum smtp_rc rc = smtp_cmd_parse(line, len, &c);

	s->last_verb = c.verb;
	if (s->cmd_all[c.verb] < UINT16_MAX)
		s->cmd_all[c.verb]++;
	if (rc == SMTP_ERR_UNKNOWN)
		return smtpd_reply_error(s, 500, c.why);
	if (rc == SMTP_ERR_PARAM)
		return smtpd_reply_error(s, 555, c.why);
	if (rc != SMTP_OK)
		return smtpd_reply_error(s, 501, c.why);
	switch (c.verb) {
	case SMTP_CMD_EHLO:
	case SMTP_CMD_HELO:
		return smtpd_cmd_ehlo(s, &c);
	case SMTP_CMD_MAIL:
		return smtpd_cmd_mail(s, &c);
	case SMTP_CMD_RCPT:
		return smtpd_cmd_rcpt(s, &c);
	case SMTP_CMD_DATA:
		return smtpd_cmd_data(s, &c);
	case SMTP_CMD_BDAT:
		if (s->srv->set.no_chunking)
			return smtpd_reply_error(s, 502, "5.5.1 Error: command not implemented");
		return smtpd_cmd_bdat(s, &c);
	case SMTP_CMD_STARTTLS:
		return smtpd_cmd_starttls(s);
	case SMTP_CMD_AUTH:
		return smtpd_cmd_auth(s, &c);
	case SMTP_CMD_XFORWARD:
		return smtpd_cmd_xforward(s, &c);
	default:
		return smtpd_cmd_misc(s, &c);
	}
}

/* ---- AUTH on the worker pool ---------------------------------------- */

static void smtpd_auth_job_free(struct smtpd_auth_job *j)
{
	free(j->mech);
	free(j->in);
	free(j->out);
	free(j);
}

/* Worker thread: touches the job only. */
static void smtpd_auth_work(void *arg)
{
	struct smtpd_auth_job *j = arg;

	if (j->mech != NULL)
		j->rc = sasl_glue_server_start(j->sasl, j->mech, j->in, &j->out);
	else
		j->rc = sasl_glue_server_step(j->sasl, j->in, &j->out);
}

static void smtpd_auth_finish(struct smtpd_session *s)
{
	sasl_glue_server_free(s->sasl);
	s->sasl = NULL;
	free(s->auth_mech);
	free(s->auth_in);
	s->auth_mech = s->auth_in = NULL;
	smtpd_set_state(s, SMTPD_ST_CMD);
}

/* A login that may not use XFORWARD loses the offer made at EHLO, with
 * any attributes it sent before AUTH. */
static void smtpd_auth_xforward_recheck(struct smtpd_session *s)
{
	int i;

	if (!(s->flags & SMTPD_F_XFWD) || smtpd_xforward_allowed(s))
		return;
	s->flags &= ~SMTPD_F_XFWD;
	for (i = 0; i < SMTPD_XF_N; i++) {
		free(s->xf[i]);
		s->xf[i] = NULL;
	}
}

/* The exchange ended in a yes or a no that stands: commit the login, or
 * count the failure; then 235 or 535. */
static void smtpd_auth_conclude(struct smtpd_session *s)
{
	struct smtpd_server *srv = s->srv;
	const char *mech = s->auth_mech != NULL ? s->auth_mech : "?";

	if (s->auth_ok) {
		s->auth_user = strdup(sasl_glue_server_user(s->sasl));
		if (s->auth_user == NULL) {
			smtpd_auth_finish(s);
			smtpd_reply_error(s, 454, "4.7.0 Temporary authentication failure");
			return;
		}
		log_info("%s[%s]: sasl_method=%s, sasl_username=%s",
		         smtpd_client_name(s), conn_addr(s->conn), mech,
		         s->auth_user);
		free(s->auth_type);
		s->auth_type = strdup(mech);
		if (srv->hooks.auth_result != NULL)
			srv->hooks.auth_result(s, mech, s->auth_user, 1, srv->ctx);
		smtpd_auth_xforward_recheck(s);
		smtpd_ok(s);
		smtpd_reply(s, "235 2.7.0 Authentication successful");
		smtpd_auth_finish(s);
		return;
	}
	/* One failure, one log line (fail2ban counts lines): the daemon's
	 * hook logs it when there is one. */
	if (srv->hooks.auth_result != NULL)
		srv->hooks.auth_result(s, mech,
		    sasl_glue_server_attempted_user(s->sasl), 0, srv->ctx);
	else
		log_warn("%s[%s]: SASL %s authentication failed: %s",
		         smtpd_client_name(s), conn_addr(s->conn), mech,
		         sasl_glue_server_error(s->sasl));
	smtpd_auth_finish(s);
	smtpd_reply_error(s, 535, "5.7.8 Error: authentication failed");
}

/* SASL said yes or no: the auth_verdict hook may still refuse (a
 * flooding address) before anything is revealed or committed. */
static void smtpd_auth_judge(struct smtpd_session *s, int ok)
{
	struct smtpd_server *srv = s->srv;
	const char *mech = s->auth_mech != NULL ? s->auth_mech : "?";

	s->auth_ok = ok;
	if (srv->hooks.auth_verdict == NULL) {
		smtpd_auth_conclude(s);
		return;
	}
	smtpd_hook_begin(s, SMTPD_W_AUTH_VERDICT);
	srv->hooks.auth_verdict(s, mech, ok ? sasl_glue_server_user(s->sasl) :
	                        sasl_glue_server_attempted_user(s->sasl), ok,
	                        srv->ctx);
	smtpd_hook_end(s);
}

static void smtpd_auth_result(struct smtpd_session *s,
                              struct smtpd_auth_job *j)
{
	const char *mech = s->auth_mech != NULL ? s->auth_mech : "?";

	switch (j->rc) {
	case SASL_GLUE_CONTINUE:
		smtpd_reply(s, "334 %s", j->out != NULL ? j->out : "");
		smtpd_set_state(s, SMTPD_ST_AUTH);
		return;
	case SASL_GLUE_OK:
		smtpd_auth_judge(s, 1);
		return;
	case SASL_GLUE_FAIL:
		smtpd_auth_judge(s, 0);
		return;
	case SASL_GLUE_BADPROT:
		smtpd_auth_finish(s);
		smtpd_reply_error(s, 501, "5.7.0 Authentication aborted");
		return;
	case SASL_GLUE_NOMECH:
		smtpd_auth_finish(s);
		smtpd_reply_error(s, 504, "5.5.4 Unsupported authentication mechanism");
		return;
	default:
		break;
	}
	log_warn("%s[%s]: SASL %s authentication: temporary failure: %s",
	         smtpd_client_name(s), conn_addr(s->conn), mech,
	         s->sasl != NULL ? sasl_glue_server_error(s->sasl) : "");
	smtpd_auth_finish(s);
	smtpd_reply_error(s, 454, "4.7.0 Temporary authentication failure");
}

/* Loop thread, after the worker: the client may have gone meanwhile. */
static void smtpd_auth_done(void *arg)
{
	struct smtpd_auth_job *j = arg;
	struct smtpd_server *srv = j->srv;
	struct smtpd_session *s;

	srv->jobs--;
	if (srv->dead) {
		sasl_glue_server_free(j->sasl);
		smtpd_auth_job_free(j);
		if (srv->jobs == 0)
			free(srv);
		return;
	}
	/* closed (a timeout) meanwhile: nobody takes the SASL state back,
	 * so the job frees it */
	s = smtpd_find(srv, j->sid);
	if (s == NULL || s->wait != SMTPD_W_AUTH_JOB || s->auth_job != j) {
		sasl_glue_server_free(j->sasl);
		smtpd_auth_job_free(j);
		return;
	}
	s->sasl = j->sasl;
	j->sasl = NULL;
	s->auth_job = NULL;
	s->wait = SMTPD_W_NONE;
	smtpd_auth_result(s, j);
	smtpd_auth_job_free(j);
	smtpd_settle(s);
}

static void smtpd_auth_submit(struct smtpd_session *s, const char *mech,
                              const char *in)
{
	struct smtpd_auth_job *j = calloc(1, sizeof(*j));

	if (j != NULL) {
		j->srv = s->srv;
		j->sid = conn_id(s->conn);
		j->sasl = s->sasl;
		j->mech = mech != NULL ? strdup(mech) : NULL;
		j->in = in != NULL ? strdup(in) : NULL;
	}
	if (j == NULL || (mech != NULL && j->mech == NULL) ||
	    (in != NULL && j->in == NULL) ||
	    work_submit(s->srv->set.pool, smtpd_auth_work, smtpd_auth_done,
	                j) < 0) {
		if (j != NULL)
			smtpd_auth_job_free(j);
		smtpd_auth_finish(s);
		smtpd_reply_error(s, 454, "4.7.0 Temporary authentication failure");
		return;
	}
	/* the job owns the SASL state now (see struct smtpd_session) */
	s->sasl = NULL;
	s->auth_job = j;
	s->srv->jobs++;
	s->wait = SMTPD_W_AUTH_JOB;
	conn_busy(s->conn);
}

static void smtpd_auth_start(struct smtpd_session *s)
{
	const struct smtpd_settings *set = &s->srv->set;
	const char *lip = conn_local_ipport(s->conn);
	const char *rip = conn_remote_ipport(s->conn);
	struct err err;

	sasl_glue_server_free(s->sasl);
	s->sasl = sasl_glue_server_new(set->sasl_service, set->myhostname,
	                               lip[0] ? lip : NULL, rip[0] ? rip : NULL,
	                               tls_srv_ssf(conn_tls_srv(s->conn)),
	                               &err);
	if (s->sasl != NULL && set->sasl_options != NULL &&
	    sasl_glue_server_set_options(s->sasl, set->sasl_options, &err) < 0) {
		sasl_glue_server_free(s->sasl);
		s->sasl = NULL;
	}
	if (s->sasl == NULL || set->pool == NULL) {
		log_warn("%s[%s]: SASL: %s", smtpd_client_name(s),
		         conn_addr(s->conn),
		         s->sasl == NULL ? err.msg : "no worker pool");
		smtpd_auth_finish(s);
		smtpd_reply_error(s, 454, "4.7.0 Temporary authentication failure");
		return;
	}
	smtpd_auth_submit(s, s->auth_mech, s->auth_in);
}

/* A line answering a 334 challenge (RFC 4954 §4; "*" cancels). */
static void smtpd_auth_response(struct smtpd_session *s, const char *line,
                                size_t len)
{
	char *in = smtpd_strndup(line, len);

	if (in == NULL) {
		smtpd_auth_finish(s);
		smtpd_reply_error(s, 454, "4.7.0 Temporary authentication failure");
		return;
	}
	smtpd_auth_submit(s, NULL, in);
	free(in);
}

/* ---- input ----------------------------------------------------------- */

static int smtpd_read_line(struct smtpd_session *s)
{
	struct evbuffer *in = smtpd_in(s);
	size_t max, n;
	char line[SMTPD_AUTH_LINE];
	enum smtp_rc rc;

	max = s->state == SMTPD_ST_AUTH ? SMTPD_AUTH_LINE : s->srv->set.line_limit;
	rc = smtpd_input_line(in, &s->lr, max, line, &n);
	if (rc == SMTP_NEED_MORE)
		return 0;
	if (rc == SMTP_ERR_TOO_LONG) {
		if (s->state == SMTPD_ST_AUTH)
			smtpd_auth_finish(s);
		smtpd_reply_error(s, 500, "5.5.2 Error: line too long");
		return 1;
	}
	if (rc != SMTP_OK) {
		log_info("%s after %s from %s[%s]", rc == SMTP_ERR_BARE_LF ?
		         "bare <LF> received" : "bare <CR> received",
		         smtp_cmd_name(s->last_verb), smtpd_client_name(s),
		         conn_addr(s->conn));
		smtpd_reply(s, "521 5.5.2 %s Error: bare <%s> received",
		            s->srv->set.myhostname,
		            rc == SMTP_ERR_BARE_LF ? "LF" : "CR");
		conn_close(s->conn);
		return 0;
	}
	if (s->state == SMTPD_ST_AUTH)
		smtpd_auth_response(s, line, n);
	else
		smtpd_command(s, line, n);
	return 1;
}

static int smtpd_over_limit(struct smtpd_session *s, size_t more)
{
	size_t limit = s->srv->set.message_size_limit;

	return limit > 0 && s->msg.len - s->hdr_len + more > limit;
}

static int smtpd_read_data(struct smtpd_session *s)
{
	struct evbuffer *in = smtpd_in(s);
	enum smtp_rc rc;

	if (s->flags & SMTPD_F_TOO_BIG)
		rc = smtpd_input_data(in, &s->dr, NULL, 0);
	else
		rc = smtpd_input_data(in, &s->dr, &s->msg, SMTPD_MSG_STEP);
	if (rc == SMTP_ERR_TOO_LONG) {
		/* over the limit (or out of memory): read on to the end of
		 * data without keeping it, then refuse */
		s->flags |= SMTPD_F_TOO_BIG;
		buf_free(&s->msg);
		return 1;
	}
	if (rc == SMTP_NEED_MORE)
		return 0;
	if (!(s->flags & SMTPD_F_TOO_BIG) && smtpd_over_limit(s, 0))
		s->flags |= SMTPD_F_TOO_BIG;
	smtpd_set_state(s, SMTPD_ST_CMD);
	smtpd_data_end(s);
	return 1;
}

static void smtpd_bdat_end(struct smtpd_session *s)
{
	smtpd_set_state(s, SMTPD_ST_CMD);
	if (s->flags & SMTPD_F_BDAT_MREJ) {
		char *text = s->mrej_text;

		s->flags &= ~SMTPD_F_BDAT_MREJ;
		s->mrej_text = NULL;
		/* as for DATA: the transaction is gone (RFC 3030 §3: a
		 * refused chunk ends it for the client too) */
		smtpd_txn_reset(s);
		smtpd_reply_error(s, s->mrej_code, text != NULL ? text :
		                  "4.3.0 Error: out of memory");
		free(text);
		return;
	}
	if (s->flags & SMTPD_F_BDAT_BAD) {
		s->flags &= ~SMTPD_F_BDAT_BAD;
		smtpd_txn_ready(s);
		return;
	}
	if (s->flags & SMTPD_F_TOO_BIG) {
		smtpd_reject(s, "END-OF-MESSAGE", 552,
		             "5.3.4 Error: message file too big", NULL);
		smtpd_txn_reset(s);
		return;
	}
	if (s->bdat_last) {
		smtpd_msg_deliver(s);
		return;
	}
	smtpd_ok(s);
	smtpd_reply(s, "250 2.0.0 Ok: %zu bytes", s->msg.len - s->hdr_len);
}

static int smtpd_read_bdat(struct smtpd_session *s)
{
	struct evbuffer *in = smtpd_in(s);
	size_t len = evbuffer_get_length(in);
	size_t n = len < s->bdat_left ? len : (size_t)s->bdat_left;

	if (n > 0) {
		if (!(s->flags & SMTPD_F_BDAT_DROP) &&
		    (smtpd_over_limit(s, n) ||
		     buf_reserve_step(&s->msg, n, SMTPD_MSG_STEP) < 0)) {
			s->flags |= SMTPD_F_TOO_BIG;
			buf_free(&s->msg);
		}
		if (s->flags & SMTPD_F_BDAT_DROP) {
			evbuffer_drain(in, n);
		} else {
			evbuffer_remove(in, s->msg.p + s->msg.len, n);
			s->msg.len += n;
			s->msg.p[s->msg.len] = '\0';
		}
		s->bdat_left -= n;
	}
	if (s->bdat_left > 0)
		return 0;
	smtpd_bdat_end(s);
	return 1;
}

/* ops->input: take what the conn has, as long as it stays OPEN (a hook
 * or job makes it BUSY, a 421 or QUIT CLOSING). Before each command,
 * conn_pace() pauses input while the client leaves too many replies
 * unread (RFC 2920 §3.1 asks clients to read them; a hostile one does
 * not). Before the greeting nothing is taken: it is judged then. */
static void smtpd_input(struct conn *c, void *sess, void *ctx)
{
	struct smtpd_session *s = sess;
	int more = 1;

	while (more && conn_state(c) == CONN_ST_OPEN) {
		switch (s->state) {
		case SMTPD_ST_CMD:
		case SMTPD_ST_AUTH:
			if (evbuffer_get_length(smtpd_in(s)) == 0 ||
			    conn_pace(c))
				return;
			more = smtpd_read_line(s);
			break;
		case SMTPD_ST_DATA:
			more = smtpd_read_data(s);
			break;
		case SMTPD_ST_BDAT:
			more = smtpd_read_bdat(s);
			break;
		default:
			more = 0;
			break;
		}
	}
}

/* ---- milters (milter.h), on the engine's own worker pool -------------- */

/* One milter stage on the pool. The job owns the session's milter state
 * while it is out, and copies of all it tells the milters. */
enum { SMTPD_MJ_NAME, SMTPD_MJ_ADDR, SMTPD_MJ_DADDR, SMTPD_MJ_HELO,
       SMTPD_MJ_QID, SMTPD_MJ_AUTH, SMTPD_MJ_MECH, SMTPD_MJ_TLSV,
       SMTPD_MJ_CIPHER, SMTPD_MJ_SENDER, SMTPD_MJ_RCPT, SMTPD_MJ_PTR,
       SMTPD_MJ_AUTHOR, SMTPD_MJ_MMAILER, SMTPD_MJ_MHOST, SMTPD_MJ_RMAILER,
       SMTPD_MJ_RHOST, SMTPD_MJ_CSUBJ, SMTPD_MJ_CISS, SMTPD_MJ_N };

struct smtpd_milter_job {
	struct smtpd_server *srv;
	uint64_t sid;
	struct milter_sess *ms;       /* owned while the job is out */
	enum milter_stage stage;
	enum smtpd_wait wait;         /* MAIL/RCPT: the answer it holds */
	int code;                     /* MAIL/RCPT: the daemon's yes;
	                                 HELO: the verb */
	char *text;
	char *str[SMTPD_MJ_N];
	struct milter_env env;
	struct smtpd_msg *msg;        /* end of data: owned */
	char margs[3][32];            /* MAIL's ESMTP arguments, re-made */
	const char *margv[3];
	size_t max_size;
	struct milter_result res;
	int all_deleted;              /* DELRCPT took every recipient */
	int resolve;                  /* look the client's name up first */
	char rname[256], rptr[256];   /* ... what it found */
};

static void smtpd_milter_job_free(struct smtpd_milter_job *j)
{
	int i;

	milter_sess_free(j->ms);
	smtpd_msg_free(j->msg);
	for (i = 0; i < SMTPD_MJ_N; i++)
		free(j->str[i]);
	free(j->text);
	free(j);
}

/* A sender's or recipient's domain: Postfix's next hop for "smtp" when
 * the daemon did not say (smtpd_set_route). */
static const char *smtpd_domain_of(const char *a)
{
	const char *at = a != NULL ? strrchr(a, '@') : NULL;

	return at != NULL && at[1] != '\0' ? at + 1 : NULL;
}

/* What the milters are told, copied from the session. */
static int smtpd_milter_env(struct smtpd_session *s,
                            struct smtpd_milter_job *j)
{
	const char *v[SMTPD_MJ_N] = { NULL };
	char daddr[64];
	const char *semi;
	struct tls_srv *ts;
	int i, bits = 0;

	snprintf(daddr, sizeof(daddr), "%s", conn_local_ipport(s->conn));
	if ((semi = strchr(daddr, ';')) != NULL)
		daddr[semi - daddr] = '\0';
	v[SMTPD_MJ_NAME] = smtpd_client_name(s);
	v[SMTPD_MJ_ADDR] = smtpd_client_addr(s);
	v[SMTPD_MJ_DADDR] = daddr[0] != '\0' ? daddr : NULL;
	v[SMTPD_MJ_HELO] = s->xf[SMTPD_XF_HELO] != NULL ?
	                   s->xf[SMTPD_XF_HELO] : s->helo;
	v[SMTPD_MJ_QID] = s->qid[0] != '\0' ? s->qid : NULL;
	v[SMTPD_MJ_AUTH] = s->auth_user;
	v[SMTPD_MJ_MECH] = s->auth_user != NULL ? s->auth_type : NULL;
	ts = conn_tls_srv(s->conn);
	if (tls_srv_done(ts)) {
		v[SMTPD_MJ_TLSV] = tls_srv_version(ts);
		v[SMTPD_MJ_CIPHER] = tls_srv_cipher(ts);
		bits = tls_srv_ssf(ts);
	}
	/* {cert_subject} and {cert_issuer} stay unset: the server never
	 * asks for a client certificate */
	v[SMTPD_MJ_SENDER] = s->sender;
	v[SMTPD_MJ_RCPT] = s->pending;
	v[SMTPD_MJ_PTR] = s->xf[SMTPD_XF_ADDR] == NULL ? s->rptr : NULL;
	v[SMTPD_MJ_AUTHOR] = s->auth_user != NULL ? s->auth_author : NULL;
	if (s->sender != NULL && s->sender[0] != '\0') {
		v[SMTPD_MJ_MMAILER] = s->route[SMTPD_RT_MAIL_MAILER] != NULL ?
		                      s->route[SMTPD_RT_MAIL_MAILER] : "smtp";
		v[SMTPD_MJ_MHOST] = s->route[SMTPD_RT_MAIL_MAILER] != NULL ?
		                    s->route[SMTPD_RT_MAIL_HOST] :
		                    smtpd_domain_of(s->sender);
	}
	if (s->pending != NULL) {
		v[SMTPD_MJ_RMAILER] = s->route[SMTPD_RT_RCPT_MAILER] != NULL ?
		                      s->route[SMTPD_RT_RCPT_MAILER] : "smtp";
		v[SMTPD_MJ_RHOST] = s->route[SMTPD_RT_RCPT_MAILER] != NULL ?
		                    s->route[SMTPD_RT_RCPT_HOST] :
		                    smtpd_domain_of(s->pending);
	}
	for (i = 0; i < SMTPD_MJ_N; i++)
		if (v[i] != NULL && (j->str[i] = strdup(v[i])) == NULL)
			return -1;
	j->env.myhostname = s->srv->set.myhostname;
	j->env.client_name = j->str[SMTPD_MJ_NAME];
	j->env.client_addr = j->str[SMTPD_MJ_ADDR];
	j->env.client_port = conn_port(s->conn);
	j->env.daemon_addr = j->str[SMTPD_MJ_DADDR];
	j->env.helo = j->str[SMTPD_MJ_HELO];
	j->env.qid = j->str[SMTPD_MJ_QID];
	j->env.auth_authen = j->str[SMTPD_MJ_AUTH];
	j->env.auth_type = j->str[SMTPD_MJ_MECH];
	j->env.tls_version = j->str[SMTPD_MJ_TLSV];
	j->env.cipher = j->str[SMTPD_MJ_CIPHER];
	j->env.cipher_bits = bits;
	j->env.sender = j->str[SMTPD_MJ_SENDER];
	j->env.rcpt = j->str[SMTPD_MJ_RCPT];
	j->env.client_ptr = j->str[SMTPD_MJ_PTR];
	j->env.auth_author = j->str[SMTPD_MJ_AUTHOR];
	j->env.mail_mailer = j->str[SMTPD_MJ_MMAILER];
	j->env.mail_host = j->str[SMTPD_MJ_MHOST];
	j->env.rcpt_mailer = j->str[SMTPD_MJ_RMAILER];
	j->env.rcpt_host = j->str[SMTPD_MJ_RHOST];
	j->env.cert_subject = j->str[SMTPD_MJ_CSUBJ];
	j->env.cert_issuer = j->str[SMTPD_MJ_CISS];
	/* Postfix counts the connections of this service from the address */
	j->env.client_connections = conn_server_count_addr(s->srv->conns,
	                                                   conn_addr(s->conn));
	/* the MAIL arguments a milter may judge (RFC 1870, 6152, 6531) */
	if (s->declared_size > 0)
		snprintf(j->margs[j->env.nmail_args++], sizeof(j->margs[0]),
		         "SIZE=%llu", (unsigned long long)s->declared_size);
	if (s->body == SMTP_BODY_8BITMIME || s->body == SMTP_BODY_7BIT)
		snprintf(j->margs[j->env.nmail_args++], sizeof(j->margs[0]),
		         "BODY=%s", s->body == SMTP_BODY_7BIT ? "7BIT" :
		         "8BITMIME");
	if (s->flags & SMTPD_F_SMTPUTF8)
		snprintf(j->margs[j->env.nmail_args++], sizeof(j->margs[0]),
		         "SMTPUTF8");
	for (i = 0; i < (int)j->env.nmail_args; i++)
		j->margv[i] = j->margs[i];
	j->env.mail_args = j->margv;
	return 0;
}

/* End of data, on the worker: the envelope changes go into the message
 * the job owns (DELRCPT first, then ADDRCPT, as Sendmail orders them). */
static int smtpd_milter_envelope(struct smtpd_msg *m,
                                 const struct milter_mods *mods)
{
	size_t i;
	int k, n;

	if (mods->sender != NULL) {
		char *snd = strdup(mods->sender);

		if (snd == NULL)
			return -1;
		free(m->sender);
		m->sender = snd;
	}
	for (i = 0; i < mods->ndel; i++)
		for (k = 0; k < m->nrcpt; k++) {
			if (strcasecmp(m->rcpts[k], mods->del_rcpts[i]) != 0)
				continue;
			free(m->rcpts[k]);
			free(m->orcpts[k]);
			n = m->nrcpt - k - 1;
			memmove(m->rcpts + k, m->rcpts + k + 1, n * sizeof(char *));
			memmove(m->orcpts + k, m->orcpts + k + 1, n * sizeof(char *));
			memmove(m->notify + k, m->notify + k + 1, n * sizeof(int));
			m->nrcpt--;
			k--;
		}
	for (i = 0; i < mods->nadd; i++) {
		size_t cap = (size_t)m->nrcpt + 1;
		char **r = realloc(m->rcpts, cap * sizeof(*r));
		char **o = r != NULL ? realloc(m->orcpts, cap * sizeof(*o)) : NULL;
		int *nt = NULL;

		if (r != NULL)
			m->rcpts = r;
		if (o != NULL)
			m->orcpts = o;
		if (o != NULL)
			nt = realloc(m->notify, cap * sizeof(*nt));
		if (nt == NULL)
			return -1;
		m->notify = nt;
		m->rcpts[m->nrcpt] = strdup(mods->add_rcpts[i]);
		m->orcpts[m->nrcpt] = NULL;
		m->notify[m->nrcpt] = 0;
		if (m->rcpts[m->nrcpt] == NULL)
			return -1;
		m->nrcpt++;
	}
	return 0;
}

/* Worker thread: touches the job only. */
static void smtpd_milter_work(void *arg)
{
	struct smtpd_milter_job *j = arg;
	struct milter_mods mods;
	struct smtpd_msg *m = j->msg;

	switch (j->stage) {
	case MILTER_M_HELO:
		/* Postfix's client name, looked up once per connection and
		 * only with milters: here, off the loop, before CONNECT */
		if (j->resolve) {
			milter_client_names(j->env.client_addr, j->rname,
			                    sizeof(j->rname), j->rptr,
			                    sizeof(j->rptr));
			j->env.client_name = j->rname;
			j->env.client_ptr = j->rptr[0] != '\0' ? j->rptr : NULL;
		}
		milter_helo(j->ms, &j->env, &j->res);
		return;
	case MILTER_M_DATA:
		milter_data(j->ms, &j->env, &j->res);
		return;
	case MILTER_M_ENVFROM:
		milter_mail(j->ms, &j->env, &j->res);
		return;
	case MILTER_M_ENVRCPT:
		milter_rcpt(j->ms, &j->env, &j->res);
		return;
	default:
		break;
	}
	milter_message(j->ms, &j->env, m->data, m->len, j->max_size, &mods,
	               &j->res);
	if (j->res.verdict == MILTER_V_CONTINUE) {
		if (smtpd_milter_envelope(m, &mods) < 0) {
			j->res.verdict = MILTER_V_REJECT;
			j->res.code = 451;
			snprintf(j->res.text, sizeof(j->res.text),
			         "4.3.0 Error: out of memory");
		} else if (mods.changed) {
			free(m->data);
			m->len = mods.msg.len;
			m->data = buf_steal(&mods.msg);
		}
		j->all_deleted = m->nrcpt == 0;
	}
	milter_mods_free(&mods);
}

static void smtpd_milter_log(struct smtpd_session *s,
                             const struct smtpd_milter_job *j)
{
	if (j->res.why[0] != '\0')
		log_warn("%s: %s; milter_default_action applies from now on",
		         smtpd_qid_or_none(s), j->res.why);
}

/* The milters have answered at end of data. */
static void smtpd_milter_eom_done(struct smtpd_session *s,
                                  struct smtpd_milter_job *j)
{
	struct smtpd_msg *m = j->msg;

	j->msg = NULL;
	if (j->res.verdict == MILTER_V_REJECT) {
		smtpd_msg_free(m);
		log_info("%s: milter-reject: END-OF-MESSAGE from %s[%s]: %d %s",
		         s->qid, smtpd_client_name(s), conn_addr(s->conn),
		         j->res.code, j->res.text);
		smtpd_message_done(s, j->res.code, j->res.text);
		return;
	}
	if (j->res.verdict == MILTER_V_DISCARD || j->all_deleted ||
	    (s->flags & SMTPD_F_DISCARD)) {
		/* Postfix answers 250 and drops it */
		log_info("%s: milter-discard: END-OF-MESSAGE from %s[%s]",
		         s->qid, smtpd_client_name(s), conn_addr(s->conn));
		smtpd_msg_free(m);
		smtpd_message_done(s, 0, NULL);
		return;
	}
	if (j->res.quarantine[0] != '\0') {
		log_info("%s: milter-hold: END-OF-MESSAGE from %s[%s]: %s",
		         s->qid, smtpd_client_name(s), conn_addr(s->conn),
		         j->res.quarantine);
		m->quarantine = strdup(j->res.quarantine);
		if (m->quarantine == NULL) {
			smtpd_msg_free(m);
			smtpd_message_done(s, 451, "4.3.0 Error: out of memory");
			return;
		}
	}
	smtpd_msg_hand_off(s, m);
}

static void smtpd_milter_result(struct smtpd_session *s,
                                struct smtpd_milter_job *j)
{
	const struct milter_result *r = &j->res;

	smtpd_milter_log(s, j);
	if (j->resolve) {
		free(s->rname);
		free(s->rptr);
		s->rname = strcmp(j->rname, "unknown") != 0 ?
		           strdup(j->rname) : NULL;
		s->rptr = j->rptr[0] != '\0' ? strdup(j->rptr) : NULL;
	}
	switch (j->stage) {
	case MILTER_M_DATA:
		if (r->verdict == MILTER_V_REJECT) {
			log_info("%s: milter-reject: %s from %s[%s]: %d %s; "
			         "from=<%s> proto=%s helo=<%s>", s->qid,
			         j->code ? "BDAT" : "DATA", smtpd_client_name(s),
			         conn_addr(s->conn), r->code, r->text,
			         s->sender != NULL ? s->sender : "",
			         (s->flags & SMTPD_F_ESMTP) ? "ESMTP" : "SMTP",
			         s->helo != NULL ? s->helo : "");
			if (j->code) {
				smtpd_bdat_refuse(s, r->code, r->text);
				smtpd_set_state(s, SMTPD_ST_BDAT);
				return;
			}
			/* Postfix resets the transaction; the client starts
			 * again with MAIL (RSET is harmless) */
			smtpd_txn_reset(s);
			smtpd_reply_error(s, r->code, r->text);
			return;
		}
		if (r->verdict == MILTER_V_DISCARD)
			s->flags |= SMTPD_F_DISCARD;
		if (j->code) {
			smtpd_bdat_begin(s);
			smtpd_set_state(s, SMTPD_ST_BDAT);
			return;
		}
		smtpd_data_go(s);
		return;
	case MILTER_M_HELO:
		if (r->verdict == MILTER_V_REJECT) {
			free(s->helo);
			s->helo = NULL;
			smtpd_reject(s, "HELO", r->code, r->text, NULL);
			return;
		}
		smtpd_proceed_ehlo(s, (enum smtp_verb)j->code);
		return;
	case MILTER_M_ENVFROM:
	case MILTER_M_ENVRCPT:
		s->wait = j->wait;
		if (r->verdict == MILTER_V_REJECT) {
			smtpd_resumed(s, r->code, r->text);
			return;
		}
		if (r->verdict == MILTER_V_DISCARD)
			s->flags |= SMTPD_F_DISCARD;
		s->flags |= SMTPD_F_MILTER_OK;
		smtpd_resumed(s, j->code, j->text);
		return;
	default:
		smtpd_milter_eom_done(s, j);
		return;
	}
}

/* Loop thread, after the worker: the client may have gone meanwhile. */
static void smtpd_milter_done(void *arg)
{
	struct smtpd_milter_job *j = arg;
	struct smtpd_server *srv = j->srv;
	struct smtpd_session *s = srv->milter_stop ? NULL :
	                          smtpd_find(srv, j->sid);

	if (s == NULL || s->wait != SMTPD_W_MILTER || s->milter_job != j) {
		smtpd_milter_job_free(j);
		return;
	}
	s->milter = j->ms;
	j->ms = NULL;
	s->milter_job = NULL;
	s->wait = SMTPD_W_NONE;
	smtpd_milter_result(s, j);
	smtpd_milter_job_free(j);
	smtpd_settle(s);
}

/* Start stage st if milters are on: 1 when the job is out (the answer
 * comes from smtpd_milter_done), 0 to go on without. code and text: what
 * to answer when they pass (the daemon's yes; for HELO the verb). */
static int smtpd_milter_stage(struct smtpd_session *s, enum milter_stage st,
                              int code, const char *text)
{
	struct smtpd_milter_job *j;

	if (s->flags & SMTPD_F_MILTER_OK) {
		s->flags &= ~SMTPD_F_MILTER_OK;
		return 0;
	}
	if (s->milter == NULL || s->srv->milter_pool == NULL)
		return 0;
	j = calloc(1, sizeof(*j));
	if (j == NULL || smtpd_milter_env(s, j) < 0 ||
	    (text != NULL && (j->text = strdup(text)) == NULL))
		goto fail;
	j->srv = s->srv;
	j->sid = conn_id(s->conn);
	j->stage = st;
	j->code = code;
	j->wait = st == MILTER_M_ENVFROM ? SMTPD_W_MAIL : SMTPD_W_RCPT;
	j->ms = s->milter;
	if (st == MILTER_M_HELO && !(s->flags & SMTPD_F_NAMED) &&
	    s->xf[SMTPD_XF_ADDR] == NULL &&
	    s->srv->set.milters->peername_lookup)
		j->resolve = 1;
	if (work_submit(s->srv->milter_pool, smtpd_milter_work,
	                smtpd_milter_done, j) < 0) {
		j->ms = NULL;
		goto fail;
	}
	s->milter = NULL;
	s->milter_job = j;
	s->wait = SMTPD_W_MILTER;
	if (j->resolve)
		s->flags |= SMTPD_F_NAMED;
	conn_busy(s->conn);
	return 1;
fail:
	if (j != NULL)
		smtpd_milter_job_free(j);
	if (st == MILTER_M_DATA && code == 1) {
		smtpd_bdat_refuse(s, 0, NULL);
		smtpd_set_state(s, SMTPD_ST_BDAT);
		return 1;
	}
	if (st == MILTER_M_HELO || st == MILTER_M_DATA) {
		smtpd_reply_error(s, 451, "4.3.0 Error: out of memory");
		return 1;
	}
	s->wait = st == MILTER_M_ENVFROM ? SMTPD_W_MAIL : SMTPD_W_RCPT;
	smtpd_resumed(s, 451, "4.3.0 Error: out of memory");
	return 1;
}

/* End of data with milters: 1 when the job took m. */
static int smtpd_milter_message(struct smtpd_session *s, struct smtpd_msg *m)
{
	struct smtpd_milter_job *j;

	if (s->milter == NULL || s->srv->milter_pool == NULL)
		return 0;
	j = calloc(1, sizeof(*j));
	if (j == NULL || smtpd_milter_env(s, j) < 0) {
		if (j != NULL)
			smtpd_milter_job_free(j);
		smtpd_msg_free(m);
		smtpd_message_done(s, 451, "4.3.0 Error: out of memory");
		return 1;
	}
	/* the envelope is in m now: the macros need it back */
	free(j->str[SMTPD_MJ_SENDER]);
	j->str[SMTPD_MJ_SENDER] = strdup(m->sender);
	j->env.sender = j->str[SMTPD_MJ_SENDER];
	j->srv = s->srv;
	j->sid = conn_id(s->conn);
	j->stage = MILTER_M_EOM;
	j->ms = s->milter;
	j->msg = m;
	j->max_size = s->srv->set.message_size_limit > 0 ?
	              s->srv->set.message_size_limit + 65536 : 0;
	if (j->str[SMTPD_MJ_SENDER] == NULL ||
	    work_submit(s->srv->milter_pool, smtpd_milter_work,
	                smtpd_milter_done, j) < 0) {
		j->ms = NULL;
		smtpd_milter_job_free(j);
		smtpd_message_done(s, 451, "4.3.0 Error: out of memory");
		return 1;
	}
	s->milter = NULL;
	s->milter_job = j;
	s->wait = SMTPD_W_MILTER;
	conn_busy(s->conn);
	return 1;
}

/* ---- server ---------------------------------------------------------- */

static const struct conn_ops smtpd_conn_ops = {
	.open = smtpd_open,
	.refuse = smtpd_refuse,
	.input = smtpd_input,
	.timeout = smtpd_timeout,
	.closed = smtpd_closed,
};

struct smtpd_server *smtpd_server_new(struct event_base *base,
    const struct smtpd_settings *set, const struct smtpd_hooks *hooks,
    void *ctx, struct err *err)
{
	struct conn_settings cs;
	struct smtpd_server *srv;

	if (set->myhostname == NULL || set->myhostname[0] == '\0') {
		err_set(err, 0, "smtpd: myhostname is not set");
		return NULL;
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	srv->base = base;
	srv->set = *set;
	if (hooks != NULL)
		srv->hooks = *hooks;
	srv->ctx = ctx;
	if (srv->set.name == NULL)
		srv->set.name = "smtpd";
	if (srv->set.banner == NULL)
		srv->set.banner = "ESMTP";
	if (srv->set.recipient_limit <= 0)
		srv->set.recipient_limit = 1000;
	if (srv->set.timeout <= 0)
		srv->set.timeout = 300;
	if (srv->set.hard_error_limit <= 0)
		srv->set.hard_error_limit = 20;
	if (srv->set.line_limit == 0)
		srv->set.line_limit = 2048;
	/* RFC 5321 §4.5.3.1.4: at least 512; our line copy holds 8192 */
	if (srv->set.line_limit < 512)
		srv->set.line_limit = 512;
	if (srv->set.line_limit > 8192)
		srv->set.line_limit = 8192;
	if (srv->set.sasl_service == NULL)
		srv->set.sasl_service = "smtp";
	memset(&cs, 0, sizeof(cs));
	cs.service = srv->set.name;
	cs.tls = srv->set.tls_ctx;
	cs.max_total = srv->set.connection_limit;
	cs.max_per_addr = srv->set.client_connection_limit;
	cs.timeout = srv->set.timeout;
	/* hooks and SASL jobs find their session by id: a client that
	 * leaves, or waits longer than smtpd_timeout for one, is let go */
	cs.busy_detached = 1;
	cs.read_hiwat = SMTPD_READ_HIWAT;
	cs.write_hiwat = SMTPD_WRITE_HIWAT;
	if (set->milters != NULL && set->milters->n > 0) {
		srv->milter_pool = work_pool_new(base, set->milters->threads > 0 ?
		                                 set->milters->threads : 8, err);
		if (srv->milter_pool == NULL) {
			free(srv);
			return NULL;
		}
	}
	srv->conns = conn_server_new(base, &cs, &smtpd_conn_ops, srv, err);
	if (srv->conns == NULL) {
		work_pool_free(srv->milter_pool);
		free(srv);
		return NULL;
	}
	return srv;
}

int smtpd_server_listen(struct smtpd_server *srv, int fd, int flags,
                        struct err *err)
{
	return conn_server_listen(srv->conns, fd, (flags & SMTPD_LISTEN_TLS) ?
	                          CONN_LISTEN_TLS : 0, err);
}

int smtpd_server_accept(struct smtpd_server *srv, int fd,
    const struct sockaddr *sa, int salen, int flags, struct err *err)
{
	return conn_server_accept(srv->conns, fd, sa, (socklen_t)salen,
	                          (flags & SMTPD_LISTEN_TLS) ?
	                          CONN_LISTEN_TLS : 0, err);
}

void smtpd_server_stop_listening(struct smtpd_server *srv)
{
	conn_server_stop_listening(srv->conns);
}

void smtpd_server_free(struct smtpd_server *srv)
{
	if (srv == NULL)
		return;
	/* milter jobs still out finish (bounded by the milter timeouts)
	 * and only free themselves: no session hears from them now */
	srv->milter_stop = 1;
	work_pool_free(srv->milter_pool);
	srv->milter_pool = NULL;
	conn_server_free(srv->conns);
	srv->conns = NULL;
	free(srv->mechs[0]);
	free(srv->mechs[1]);
	/* SASL jobs still on the pool find the server by pointer: the last
	 * one to finish frees it. */
	if (srv->jobs > 0)
		srv->dead = 1;
	else
		free(srv);
}

unsigned smtpd_server_sessions(const struct smtpd_server *srv)
{
	return conn_server_count(srv->conns);
}

/* ---- accessors ------------------------------------------------------- */

uint64_t smtpd_session_id(const struct smtpd_session *s)
{
	return conn_id(s->conn);
}

struct smtpd_server *smtpd_session_server(const struct smtpd_session *s)
{
	return s->srv;
}

const char *smtpd_session_qid(const struct smtpd_session *s)
{
	return s->qid;
}

const char *smtpd_session_client_addr(const struct smtpd_session *s)
{
	return smtpd_client_addr(s);
}

const char *smtpd_session_client_name(const struct smtpd_session *s)
{
	return smtpd_client_name(s);
}

int smtpd_session_client_port(const struct smtpd_session *s)
{
	return conn_port(s->conn);
}

const char *smtpd_session_helo(const struct smtpd_session *s)
{
	return s->helo;
}

const char *smtpd_session_sender(const struct smtpd_session *s)
{
	return s->sender;
}

const char *smtpd_session_auth_user(const struct smtpd_session *s)
{
	return s->auth_user;
}

int smtpd_session_tls(const struct smtpd_session *s)
{
	return conn_tls(s->conn);
}

int smtpd_session_nrcpt(const struct smtpd_session *s)
{
	return s->nrcpt;
}

size_t smtpd_session_declared_size(const struct smtpd_session *s)
{
	return (size_t)s->declared_size;
}

void smtpd_session_set_data(struct smtpd_session *s, void *data)
{
	s->data = data;
}

void *smtpd_session_data(const struct smtpd_session *s)
{
	return s->data;
}
