/* imap_session: connections of the IMAP server, on shared/conn. Reads
 * commands with the pure parser, keeps the session's state machine
 * (imap_session_int.h), runs the commands (the session's own: CAPABILITY,
 * LOGOUT, IDLE; imap_login's; the mailbox commands of imap_commands, on
 * the loop or the pool), writes responses, handles AUTHENTICATE
 * continuations and IDLE. conn does
 * the rest: sockets, TLS, caps, pacing, timeouts as ops->timeout, and
 * closing once the output is sent. A session is freed only in
 * ops->closed, which conn never calls while the conn is BUSY (a job of the
 * session is out), so a job's done callback always finds its session. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/inotify.h>
#include <unistd.h>
#include "conn.h"
#include "imap_commands.h"
#include "imap_session_int.h"
#include "log.h"
#include "loginfail.h"
#include "mra_userip.h"
#include "mstore.h"
#include "work.h"

/* Output queued before commands wait for it to drain (conn_pace). */
#define IMAP_SESSION_OUT_HIGH (1024 * 1024)
#define IMAP_SESSION_MAX_BAD  20

/* ---- IDLE notifications: one inotify instance per server ----
 * (an instance per session would hit fs.inotify.max_user_instances, 128
 * by default, long before thousands of IDLE clients). A directory watched
 * by several sessions has one watch descriptor, counted. */

#define IMAP_SESSION_INO_DELAY_MS 100
#define IMAP_SESSION_INO_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | \
			       IN_MOVED_TO)
/* Directories changed since the last fire: usually one or two. */
#define IMAP_SESSION_DIRTY_MAX 64

struct imap_session_wd {
	int wd;
	unsigned refs;
};

struct imap_ino {
	int fd;                      /* -1 until the first IDLE */
	struct event *ev, *timer;
	struct imap_session_wd *wds;
	size_t nwds, capwds;
	int all;                     /* overflow: wake every IDLE session */
	int dirty[IMAP_SESSION_DIRTY_MAX];
	size_t ndirty;
};

struct imap_server {
	struct event_base *base;
	struct work_pool *pool;
	const struct imap_settings *set;
	struct conn_server *conns;
	struct imap_session *list;   /* every session (IDLE wake-ups) */
	struct imap_ino ino;
	time_t watch_warn;
	/* The parser's argument records: the loop is single-threaded and a
	 * command is copied out (imap_session_take) before the next parse. */
	struct imap_arg args[IMAP_MAX_ARGS];
	/* APPEND messages pass through here on their way to the file */
	char chunk[64 * 1024];
};

static void imap_session_input(struct imap_session *s);
static void imap_session_idle_cb(void *arg);
static int imap_session_idle_sync(struct imap_session *s);

unsigned imap_server_count(const struct imap_server *srv)
{
	return conn_server_count(srv->conns);
}

struct imap_session *imap_session_find(struct imap_server *srv, uint64_t id)
{
	struct conn *c = conn_find(srv->conns, id);

	if (c == NULL || conn_state(c) == CONN_ST_CLOSING)
		return NULL;
	return conn_session(c);
}

void imap_session_send(struct imap_session *s, const char *data, size_t len)
{
	if (len > 0)
		conn_write(s->conn, data, len);
}

void imap_session_printf(struct imap_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	imap_session_send(s, line, (size_t)n);
}

/* The idle timeout of the state (login_timeout before login), on the
 * bufferevent conn reads with: conn turns it into ops->timeout. */
static void imap_session_timeouts(struct imap_session *s)
{
	struct bufferevent *bev = conn_bev(s->conn);
	struct timeval tv;

	tv.tv_sec = s->st == IMAP_SS_NOTAUTH || s->st == IMAP_SS_SASL ?
		s->set->login_timeout : s->set->idle_timeout;
	tv.tv_usec = 0;
	if (bev != NULL)
		bufferevent_set_timeouts(bev, &tv, NULL);
}

/* The transitions of the diagram in imap_session_int.h (bit: to). */
static const unsigned imap_session_moves[] = {
	[IMAP_SS_NOTAUTH] = 1u << IMAP_SS_SASL | 1u << IMAP_SS_AUTH,
	[IMAP_SS_SASL] = 1u << IMAP_SS_NOTAUTH,
	[IMAP_SS_AUTH] = 1u << IMAP_SS_SELECTED | 1u << IMAP_SS_IDLE,
	[IMAP_SS_SELECTED] = 1u << IMAP_SS_AUTH | 1u << IMAP_SS_SELECTED |
		1u << IMAP_SS_IDLE,
	[IMAP_SS_IDLE] = 1u << IMAP_SS_AUTH | 1u << IMAP_SS_SELECTED,
	[IMAP_SS_LOGOUT] = 0,
};

void imap_session_enter(struct imap_session *s, enum imap_sstate st)
{
	if (st != s->st && st != IMAP_SS_LOGOUT &&
	    !(imap_session_moves[s->st] & (1u << st))) {
		/* a bug: say so, and end the session rather than serve a
		 * state the protocol does not have */
		log_error("imap: client=%s: state %d -> %d is not allowed",
			s->addr, (int)s->st, (int)st);
		st = IMAP_SS_LOGOUT;
		conn_close(s->conn);
	}
	s->st = st;
	imap_session_timeouts(s);
}

/* The RFC 3501 state commands are checked against. */
static enum imap_state imap_session_proto(const struct imap_session *s)
{
	switch (s->st) {
	case IMAP_SS_NOTAUTH:
	case IMAP_SS_SASL:
		return IMAP_ST_NOTAUTH;
	case IMAP_SS_AUTH:
		return IMAP_ST_AUTH;
	case IMAP_SS_SELECTED:
		return IMAP_ST_SELECTED;
	case IMAP_SS_IDLE:
		return s->u != NULL && s->u->sel_name != NULL ?
			IMAP_ST_SELECTED : IMAP_ST_AUTH;
	case IMAP_SS_LOGOUT:
		break;
	}
	return IMAP_ST_LOGOUT;
}

int imap_session_plain_disabled(const struct imap_session *s)
{
	if (conn_tls(s->conn))
		return 0;
	return s->set->disable_plaintext_auth || s->set->ssl_required;
}

void imap_session_close(struct imap_session *s)
{
	s->st = IMAP_SS_LOGOUT;
	conn_close(s->conn);
}

void imap_session_capability_text(const struct imap_session *s,
				  struct buf *out)
{
	buf_puts(out, "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE");
	if (imap_session_proto(s) == IMAP_ST_NOTAUTH) {
		if (s->set->tls != NULL && !conn_tls(s->conn))
			buf_puts(out, " STARTTLS");
		if (imap_session_plain_disabled(s))
			buf_puts(out, " LOGINDISABLED");
		else if (s->set->sasl)
			buf_puts(out, " AUTH=PLAIN AUTH=LOGIN");
		return;
	}
	buf_printf(out, " NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE"
		   " LIST-EXTENDED LIST-STATUS"
		   " QUOTA QUOTA=RES-STORAGE CONDSTORE QRESYNC ESEARCH"
		   " APPENDLIMIT=%zu", s->set->max_append);
}

/* ---- commands ---- */

static void imap_session_job_run(void *job)
{
	struct imap_cmd *c = job;

	if (c->def->states == 0)
		c->def->fn(c);          /* the session's own (IDLE's sync) */
	else
		imap_commands_run(c);
}

/* The conn is BUSY while the job is out, so c->s is alive; a client that
 * left meanwhile is seen by imap_session_cmd_done (conn_gone). */
static void imap_session_job_done(void *job)
{
	imap_session_cmd_done(job);
}

static int imap_session_cmd_submit(struct imap_cmd *c)
{
	conn_busy(c->s->conn);
	return work_submit(c->s->pool, imap_session_job_run,
			   imap_session_job_done, c);
}

static struct imap_session_wd *imap_session_wd_find(struct imap_ino *ino,
						    int wd)
{
	size_t i;

	for (i = 0; i < ino->nwds; i++)
		if (ino->wds[i].wd == wd)
			return &ino->wds[i];
	return NULL;
}

static int imap_session_is_dirty(const struct imap_ino *ino, int wd)
{
	size_t i;

	if (wd < 0)
		return 0;
	for (i = 0; i < ino->ndirty; i++)
		if (ino->dirty[i] == wd)
			return 1;
	return 0;
}

static void imap_session_ino_fire(evutil_socket_t fd, short what, void *arg)
{
	struct imap_server *srv = arg;
	struct imap_session *s, *next;

	for (s = srv->list; s != NULL; s = next) {
		next = s->next;
		if (s->st != IMAP_SS_IDLE ||
		    conn_state(s->conn) == CONN_ST_CLOSING)
			continue;
		if (srv->ino.all || imap_session_is_dirty(&srv->ino, s->wd[0]) ||
		    imap_session_is_dirty(&srv->ino, s->wd[1]))
			imap_session_idle_cb(s);
	}
	srv->ino.ndirty = 0;
	srv->ino.all = 0;
}

static void imap_session_ino_read(evutil_socket_t fd, short what, void *arg)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct timeval tv = { 0, IMAP_SESSION_INO_DELAY_MS * 1000 };
	struct imap_ino *ino = &((struct imap_server *)arg)->ino;
	struct inotify_event *ev;
	ssize_t r, off;

	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		for (off = 0; off < r;
		     off += (ssize_t)sizeof(*ev) + (ssize_t)ev->len) {
			ev = (struct inotify_event *)(buf + off);
			if (ev->mask & IN_Q_OVERFLOW ||
			    ino->ndirty == IMAP_SESSION_DIRTY_MAX)
				ino->all = 1;
			else if (!imap_session_is_dirty(ino, ev->wd))
				ino->dirty[ino->ndirty++] = ev->wd;
		}
	}
	/* coalesce a burst (and our own new/ -> cur/ renames) */
	if (!evtimer_pending(ino->timer, NULL))
		evtimer_add(ino->timer, &tv);
}

static int imap_session_ino_init(struct imap_server *srv)
{
	struct imap_ino *ino = &srv->ino;

	if (ino->fd >= 0)
		return 0;
	ino->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ino->fd < 0)
		return -1;
	ino->ev = event_new(srv->base, ino->fd, EV_READ | EV_PERSIST,
			    imap_session_ino_read, srv);
	ino->timer = evtimer_new(srv->base, imap_session_ino_fire, srv);
	if (ino->ev == NULL || ino->timer == NULL ||
	    event_add(ino->ev, NULL) < 0) {
		if (ino->ev != NULL)
			event_free(ino->ev);
		if (ino->timer != NULL)
			event_free(ino->timer);
		ino->ev = ino->timer = NULL;
		close(ino->fd);
		ino->fd = -1;
		return -1;
	}
	return 0;
}

static int imap_session_wd_add(struct imap_ino *ino, const char *dir)
{
	struct imap_session_wd *w;
	int wd = inotify_add_watch(ino->fd, dir, IMAP_SESSION_INO_MASK);

	if (wd < 0)
		return -1;
	w = imap_session_wd_find(ino, wd);
	if (w != NULL) {
		w->refs++;
		return wd;
	}
	if (ino->nwds == ino->capwds) {
		size_t ncap = ino->capwds ? ino->capwds * 2 : 64;
		struct imap_session_wd *nw = realloc(ino->wds,
						     ncap * sizeof(*nw));

		if (nw == NULL) {
			inotify_rm_watch(ino->fd, wd);
			return -1;
		}
		ino->wds = nw;
		ino->capwds = ncap;
	}
	w = &ino->wds[ino->nwds++];
	w->wd = wd;
	w->refs = 1;
	return wd;
}

static void imap_session_wd_del(struct imap_ino *ino, int wd)
{
	struct imap_session_wd *w = wd >= 0 ? imap_session_wd_find(ino, wd) :
		NULL;

	if (w == NULL || --w->refs > 0)
		return;
	inotify_rm_watch(ino->fd, wd);
	*w = ino->wds[--ino->nwds];
}

static void imap_session_unwatch(struct imap_session *s)
{
	imap_session_wd_del(&s->srv->ino, s->wd[0]);
	imap_session_wd_del(&s->srv->ino, s->wd[1]);
	s->wd[0] = s->wd[1] = -1;
	mstore_watch_free(s->watch);
	s->watch = NULL;
}

static void imap_session_watch(struct imap_session *s)
{
	struct imap_server *srv = s->srv;
	const char *name, *path;
	char dir[4200];
	struct err err;

	if (s->u == NULL || s->u->sel_name == NULL || s->wd[0] >= 0 ||
	    s->watch != NULL)
		return;
	name = s->u->sel_name;
	path = s->u->sel_path;
	if (path != NULL && imap_session_ino_init(srv) == 0) {
		snprintf(dir, sizeof(dir), "%s/new", path);
		s->wd[0] = imap_session_wd_add(&srv->ino, dir);
		snprintf(dir, sizeof(dir), "%s/cur", path);
		s->wd[1] = imap_session_wd_add(&srv->ino, dir);
		if (s->wd[0] >= 0 && s->wd[1] >= 0)
			return;
		imap_session_unwatch(s);
	}
	s->watch = mstore_watch_new(s->base, s->u->ms, name,
				    imap_session_idle_cb, s, &err);
	if (s->watch == NULL && time(NULL) - srv->watch_warn > 60) {
		srv->watch_warn = time(NULL);
		log_warn("imap: client=%s, user=<%s>: IDLE watch: %s",
			 s->addr, s->u->name, err.msg);
	}
}

/* ---- IDLE (RFC 2177) ----
 * IDLE reports what changed, answers "+ idling" and parks the selected
 * folder (only the compact view stays while the client waits). A change
 * in the folder runs a sync job that reports it (and parks again); one
 * that comes while a job runs is remembered (idle_dirty). DONE ends it:
 * the tagged OK, and the next command reopens the folder. */

/* Worker: report, then park. states 0 marks the session's own. */
static void imap_session_idle_job(struct imap_cmd *c)
{
	imap_commands_sync(c, 1);
	if (c->u != NULL && c->u->sel_name != NULL)
		imap_selected_park(c->u);
}

static const struct imap_cmd_def imap_session_idle_def = {
	"IDLE", 0, IMAP_CMD_POOL, imap_session_idle_job
};

static struct imap_cmd *imap_session_cmd_alloc(struct imap_session *s)
{
	return imap_cmd_new(s, s->id, s->u, s->set);
}

/* A change in the folder while idling: sync on the pool (the conn goes
 * BUSY). -1 when it could not start. */
static int imap_session_idle_sync(struct imap_session *s)
{
	struct imap_cmd *c;

	s->idle_dirty = 0;
	c = imap_session_cmd_alloc(s);
	if (c == NULL)
		return -1;
	c->def = &imap_session_idle_def;
	c->tag = c->name;        /* "": no tagged reply */
	if (imap_session_cmd_submit(c) < 0) {
		imap_cmd_free(c);
		return -1;
	}
	return 0;
}

static void imap_session_idle_cb(void *arg)
{
	struct imap_session *s = arg;

	if (s->st != IMAP_SS_IDLE)
		return;
	switch (conn_state(s->conn)) {
	case CONN_ST_BUSY:
		s->idle_dirty = 1;
		break;
	case CONN_ST_OPEN:
		if (imap_session_idle_sync(s) < 0)
			(void)conn_ready(s->conn);
		break;
	case CONN_ST_CLOSING:
		break;
	}
}

/* The IDLE command: its first sync runs as a job; its done callback
 * (imap_session_cmd_done) enters IDLE. */
static void imap_session_idle(struct imap_cmd *c)
{
	struct imap_session *s = c->s;

	free(s->idle_tag);
	s->idle_tag = strdup(c->tag);
	if (s->idle_tag == NULL) {
		imap_cmd_no(c, "[UNAVAILABLE] Out of memory.");
		imap_session_cmd_done(c);
		return;
	}
	c->def = &imap_session_idle_def;
	if (imap_session_cmd_submit(c) < 0) {
		free(s->idle_tag);
		s->idle_tag = NULL;
		imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
		imap_session_cmd_done(c);
	}
}

/* DONE (or a bad line) ends IDLE. */
static void imap_session_idle_end(struct imap_session *s, int done)
{
	imap_session_unwatch(s);
	if (done)
		imap_session_printf(s, "%s OK Idle completed.\r\n",
				    s->idle_tag);
	else    /* RFC 2177 §3: anything but DONE */
		imap_session_printf(s, "%s BAD Expected DONE.\r\n",
				    s->idle_tag);
	free(s->idle_tag);
	s->idle_tag = NULL;
	s->idle_dirty = 0;
	imap_session_enter(s, s->u != NULL && s->u->sel_name != NULL ?
			   IMAP_SS_SELECTED : IMAP_SS_AUTH);
}

/* ---- the session's own commands ---- */

static void imap_session_capability(struct imap_cmd *c)
{
	buf_puts(&c->out, "* CAPABILITY ");
	imap_session_capability_text(c->s, &c->out);
	buf_puts(&c->out, "\r\n");
	imap_cmd_ok(c, "Capability completed.");
	imap_session_cmd_done(c);
}

static void imap_session_logout(struct imap_cmd *c)
{
	buf_puts(&c->out, "* BYE Logging out.\r\n");
	imap_cmd_ok(c, "Logout completed.");
	c->logout = 1;
	imap_session_cmd_done(c);
}

static const struct imap_cmd_def imap_session_table[] = {
	{ "CAPABILITY", IMAP_CMD_S_ANY, 0, imap_session_capability },
	{ "LOGOUT", IMAP_CMD_S_ANY, 0, imap_session_logout },
	{ "STARTTLS", IMAP_CMD_S_NOTAUTH, 0, imap_login_starttls },
	{ "LOGIN", IMAP_CMD_S_NOTAUTH, 0, imap_login_login },
	{ "AUTHENTICATE", IMAP_CMD_S_NOTAUTH, 0, imap_login_authenticate },
	{ "IDLE", IMAP_CMD_S_LOGGEDIN, 0, imap_session_idle },
};

#define IMAP_SESSION_NTABLE \
	(sizeof(imap_session_table) / sizeof(imap_session_table[0]))

static const struct imap_cmd_def *imap_session_find_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < IMAP_SESSION_NTABLE; i++)
		if (strcmp(imap_session_table[i].name, name) == 0)
			return &imap_session_table[i];
	return imap_commands_find(name);
}

/* Runs with the conn BUSY (every command made it so): send, free c,
 * apply the state change, then conn_ready() (or the next IDLE sync). */
void imap_session_cmd_done(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct conn *cn = s->conn;
	int logout = c->logout, gone = conn_gone(cn);
	int idle = c->def == &imap_session_idle_def;

	if (!gone) {
		if (c->new_state == IMAP_ST_SELECTED)
			imap_session_enter(s, IMAP_SS_SELECTED);
		else if (c->new_state == IMAP_ST_AUTH &&
			 s->st == IMAP_SS_SELECTED)
			imap_session_enter(s, IMAP_SS_AUTH);
		imap_session_send(s, c->out.p, c->out.len);
		imap_session_send(s, c->tagged.p, c->tagged.len);
		if (idle && s->st != IMAP_SS_IDLE && !logout &&
		    c->tagged.len == 0) {
			/* the IDLE command's own sync: now idling */
			imap_session_printf(s, "+ idling\r\n");
			imap_session_enter(s, IMAP_SS_IDLE);
			imap_session_watch(s);
		}
	}
	imap_cmd_free(c);
	if (logout) {
		imap_session_close(s);   /* closes at conn_ready() */
	} else if (!gone && s->st == IMAP_SS_IDLE && s->idle_dirty) {
		if (imap_session_idle_sync(s) == 0)
			return;
	}
	/* reading resumes from the loop; -1: s is gone */
	(void)conn_ready(cn);
}

/* ---- APPEND messages streamed to a file ---- */

static void imap_session_stream_discard(struct imap_session *s)
{
	if (s->lit_fd >= 0)
		close(s->lit_fd);
	s->lit_fd = -1;
	s->lit_err = 0;
	s->lit_size = 0;
	free(s->lit_prefix);
	s->lit_prefix = NULL;
	s->lit_prefix_len = 0;
}

/* An unnamed file in the user's Maildir tmp/ (the file system the
 * message goes to; nothing is left behind if we die). */
static int imap_session_stream_open(struct imap_session *s)
{
	char path[4200];
	int fd;

	if (s->u == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/tmp", mstore_root(s->u->ms));
	fd = open(path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR &&
			errno != EINVAL))
		return fd;
	/* no O_TMPFILE on this file system: a named file, unlinked */
	snprintf(path, sizeof(path), "%s/tmp/mra-append.%llu.XXXXXX",
		 mstore_root(s->u->ms), (unsigned long long)s->id);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* The reader streams an APPEND message: keep the command's bytes so far
 * aside, open the file, invite the message (RFC 3501 §7.5). A file that
 * cannot be opened fails the command once the message is in (the client
 * sends it anyway after a "+" or with {n+}). */
static int imap_session_stream_begin(struct imap_session *s,
				     struct evbuffer *in,
				     const struct imap_reader_out *o)
{
	imap_session_stream_discard(s);
	s->lit_prefix = malloc(o->used);
	if (s->lit_prefix == NULL ||
	    evbuffer_remove(in, s->lit_prefix, o->used) != (int)o->used)
		return -1;
	s->lit_prefix_len = o->used;
	s->lit_fd = imap_session_stream_open(s);
	if (s->lit_fd < 0) {
		s->lit_err = errno != 0 ? errno : EIO;
		log_warn("imap: client=%s, user=<%s>: APPEND spool in %s/tmp: "
			 "%s", s->addr, s->u->name, mstore_root(s->u->ms),
			 strerror(s->lit_err));
	}
	if (o->cont)
		imap_session_printf(s, "+ OK\r\n");
	return 0;
}

/* Bytes of the streamed message: to the file, through one bounded
 * buffer; the input drains as it goes. */
static int imap_session_stream_data(struct imap_session *s,
				    struct evbuffer *in,
				    const struct imap_reader_out *o)
{
	char *chunk = s->srv->chunk;
	size_t left = o->used;

	while (left > 0) {
		size_t k = left < sizeof(s->srv->chunk) ? left :
			sizeof(s->srv->chunk), w = 0;
		int got = evbuffer_remove(in, chunk, k);

		if (got <= 0)
			return -1;
		while (s->lit_fd >= 0 && s->lit_err == 0 && w < (size_t)got) {
			ssize_t r = write(s->lit_fd, chunk + w, (size_t)got - w);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				s->lit_err = r < 0 ? errno : EIO;
			else
				w += (size_t)r;
		}
		left -= (size_t)got;
	}
	s->lit_size += o->used;
	if (o->last) {
		/* the command goes on after the message: parse it whole,
		 * with "{000}" where the message was announced */
		if (evbuffer_prepend(in, s->lit_prefix, s->lit_prefix_len) < 0)
			return -1;
		free(s->lit_prefix);
		s->lit_prefix = NULL;
		s->lit_prefix_len = 0;
	}
	return 0;
}

/* The streamed message belongs to the command just parsed: its argument
 * is the (empty) literal whose data starts at stream_at. */
static void imap_session_stream_attach(struct imap_session *s,
				       struct imap_cmd *c, size_t count,
				       size_t stream_at)
{
	size_t i;

	if (stream_at == 0 || (s->lit_fd < 0 && s->lit_err == 0))
		return;
	for (i = 0; i < count; i++) {
		if (c->args[i].type != IMAP_ARG_LITERAL ||
		    c->args[i].s != c->bytes + stream_at)
			continue;
		c->lit_arg = &c->args[i];
		c->lit_fd = s->lit_fd;
		c->lit_err = s->lit_err;
		c->lit_size = s->lit_size;
		s->lit_fd = -1;
		break;
	}
	imap_session_stream_discard(s);
}

/* A bad command line: BAD, or BYE after too many or when the client
 * cannot be resynchronised (fatal). */
static void imap_session_bad(struct imap_session *s, const char *tag,
			     const char *code, const char *why, int fatal)
{
	imap_session_printf(s, "%s BAD %s%s%s%s\r\n", tag,
			    code != NULL ? "[" : "", code != NULL ? code : "",
			    code != NULL ? "] " : "", why);
	if (++s->bad_cmds > IMAP_SESSION_MAX_BAD || fatal) {
		imap_session_printf(s, "* BYE %s\r\n", fatal ? why :
				    "Too many invalid commands.");
		imap_session_close(s);
	}
}

static int imap_session_upper(const char *in, char *out, size_t n)
{
	size_t i;

	for (i = 0; in[i] != '\0'; i++) {
		if (i + 1 >= n)
			return -1;
		out[i] = (char)((in[i] >= 'a' && in[i] <= 'z') ?
				in[i] - 32 : in[i]);
	}
	out[i] = '\0';
	return 0;
}

static void imap_session_dispatch(struct imap_session *s, struct imap_cmd *c)
{
	char sub[16];
	struct imap_arg *a = c->args;

	/* every command runs BUSY until imap_session_cmd_done() */
	conn_busy(s->conn);
	if (imap_session_upper(a->s, c->name, sizeof(c->name)) < 0 ||
	    a->type != IMAP_ARG_ATOM) {
		imap_cmd_bad(c, "Unknown command.");
		imap_session_cmd_done(c);
		return;
	}
	c->a = a->next;
	if (strcmp(c->name, "UID") == 0) {
		if (c->a == NULL || c->a->type != IMAP_ARG_ATOM ||
		    imap_session_upper(c->a->s, sub, sizeof(sub)) < 0) {
			imap_cmd_bad(c, "UID needs a command.");
			imap_session_cmd_done(c);
			return;
		}
		snprintf(c->name, sizeof(c->name), "UID %s", sub);
		c->uid = 1;
		c->a = c->a->next;
		c->nargs--;
	}
	c->def = imap_session_find_cmd(c->name);
	if (c->def == NULL) {
		s->bad_cmds++;
		imap_cmd_bad(c, "Unknown command.");
		imap_session_cmd_done(c);
		return;
	}
	if (!(c->def->states & (1u << imap_session_proto(s)))) {
		imap_cmd_bad(c, "Command not valid in this state.");
		imap_session_cmd_done(c);
		return;
	}
	if (imap_cmd_check_mailboxes(c) < 0) {
		imap_session_cmd_done(c);
		return;
	}
	if (c->def >= imap_session_table &&
	    c->def < imap_session_table + IMAP_SESSION_NTABLE) {
		c->def->fn(c);       /* the session's own: they finish c */
		return;
	}
	if (c->def->flags & IMAP_CMD_POOL) {
		if (imap_session_cmd_submit(c) < 0) {
			imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
			imap_session_cmd_done(c);
		}
		return;
	}
	imap_commands_run(c);
	imap_session_cmd_done(c);
}

/* Highest argument index used under a (the parser fills args in order,
 * so this is the count minus one). */
static size_t imap_session_arg_span(const struct imap_arg *args,
				    const struct imap_arg *a)
{
	size_t max = 0, m;

	for (; a != NULL; a = a->next) {
		if ((size_t)(a - args) > max)
			max = (size_t)(a - args);
		if (a->child != NULL) {
			m = imap_session_arg_span(args, a->child);
			if (m > max)
				max = m;
		}
	}
	return max;
}

/* Copy the parsed command out of the input buffer: args are rebased. */
static struct imap_cmd *imap_session_take(struct imap_session *s, char *p,
					  size_t used, char *tag,
					  struct imap_arg *args, int n)
{
	struct imap_cmd *c = imap_session_cmd_alloc(s);
	size_t i, count = imap_session_arg_span(args, args) + 1;

	if (c == NULL)
		return NULL;
	c->bytes = malloc(used + 1);
	c->args = malloc(sizeof(*args) * count);
	if (c->bytes == NULL || c->args == NULL) {
		imap_cmd_free(c);
		return NULL;
	}
	memcpy(c->bytes, p, used);
	c->bytes[used] = '\0';
	c->nbytes = used;
	c->tag = c->bytes + (tag - p);
	for (i = 0; i < count; i++) {
		c->args[i] = args[i];
		c->args[i].s = c->bytes + (args[i].s - p);
		if (args[i].child != NULL)
			c->args[i].child = c->args + (args[i].child - args);
		if (args[i].next != NULL)
			c->args[i].next = c->args + (args[i].next - args);
	}
	c->nargs = (unsigned)n - 1;
	return c;
}

/* The reader's limits now: small literals before login (RFC 7888 §4
 * allows refusing; strangers must not make us hold much), bigger ones
 * after, and APPEND messages streamed to a file up to the size limit. */
static void imap_session_policy(const struct imap_session *s,
				struct imap_reader_policy *pol)
{
	memset(pol, 0, sizeof(*pol));
	pol->max_line = s->set->max_line;
	if (s->u == NULL) {
		pol->max_literal = s->set->max_login_literal;
	} else {
		pol->max_literal = s->set->max_literal;
		pol->max_stream = s->set->max_append;
	}
	pol->max_command = s->set->max_line + pol->max_literal;
	pol->quota_left = UINT64_MAX;
	if (s->u != NULL && s->u->quota_limit > 0)
		pol->quota_left = s->u->quota_used < s->u->quota_limit ?
			s->u->quota_limit - s->u->quota_used : 0;
}

/* Let in what the command being read may still need: its bytes so far
 * (up to the end of an accepted literal, or the part kept aside while a
 * message streams) and one more line. TCP holds back the rest.
 * Not under TLS: libevent's OpenSSL bufferevent stops at the watermark
 * in the middle of a record and keeps the rest of it decrypted inside
 * OpenSSL, where no socket event will ever call for it (a client that
 * sent its whole pipeline then waits for ever). There the reader's own
 * limits bound what is held (max_line, max_command), reading is off
 * while a command runs (conn_busy) or the output backs up (conn_pace),
 * and one read takes at most a record. */
static void imap_session_read_limit(struct imap_session *s)
{
	size_t base = s->rd.need > s->rd.stream_at ? s->rd.need :
		s->rd.stream_at;
	struct bufferevent *bev = conn_bev(s->conn);

	if (bev != NULL)
		bufferevent_setwatermark(bev, EV_READ, 0, conn_tls(s->conn) ?
					 0 : base + s->set->max_line + 2);
}

static int imap_session_command(struct imap_session *s, struct evbuffer *in,
				char *p, const struct imap_reader_out *o)
{
	struct imap_cmd *c;

	c = imap_session_take(s, p, o->used, o->tag, s->srv->args,
			      o->nargs);
	evbuffer_drain(in, o->used);
	if (c == NULL) {
		imap_session_stream_discard(s);
		imap_session_printf(s, "* BYE Out of memory.\r\n");
		imap_session_close(s);
		return 0;
	}
	imap_session_stream_attach(s, c,
		imap_session_arg_span(c->args, c->args) + 1, o->stream_at);
	imap_session_dispatch(s, c);
	return 1;
}

/* One step of the command reader over the buffered input; 0 when
 * nothing more can be done now. */
static int imap_session_input_cmd(struct imap_session *s,
				  struct evbuffer *in, size_t len)
{
	struct imap_reader_policy pol;
	struct imap_reader_out o;
	enum imap_reader_ev ev;
	char *p = NULL;

	if (imap_reader_streaming(&s->rd)) {
		ev = imap_reader_step(&s->rd, NULL, NULL, len, NULL, 0, &o);
	} else {
		/* pacing and output back-pressure (conn_pace): a client
		 * that pipelines and never reads is held here */
		if (conn_pace(s->conn))
			return 0;
		imap_session_policy(s, &pol);
		p = (char *)evbuffer_pullup(in, -1);
		if (p == NULL)
			return 0;
		ev = imap_reader_step(&s->rd, &pol, p, len, s->srv->args,
				      IMAP_MAX_ARGS, &o);
	}
	switch (ev) {
	case IMAP_RD_MORE:
		return 0;
	case IMAP_RD_COMMAND:
		return imap_session_command(s, in, p, &o);
	case IMAP_RD_CONTINUE:
		imap_session_printf(s, "+ OK\r\n");
		return 1;
	case IMAP_RD_NO:
		imap_session_stream_discard(s);
		imap_session_printf(s, "%s NO [%s] %s\r\n", o.tag, o.code,
				    o.text);
		evbuffer_drain(in, o.used);
		return 1;
	case IMAP_RD_BAD:
	case IMAP_RD_FATAL:
		imap_session_stream_discard(s);
		imap_session_bad(s, o.tag, o.code, o.text,
				 ev == IMAP_RD_FATAL);
		evbuffer_drain(in, o.used);
		return s->st != IMAP_SS_LOGOUT;
	case IMAP_RD_DROP:
		evbuffer_drain(in, o.used);
		return 1;
	case IMAP_RD_STREAM:
		if (imap_session_stream_begin(s, in, &o) == 0)
			return 1;
		break;
	case IMAP_RD_DATA:
		if (imap_session_stream_data(s, in, &o) == 0)
			return 1;
		break;
	}
	imap_session_stream_discard(s);
	imap_session_printf(s, "* BYE Out of memory.\r\n");
	imap_session_close(s);
	return 0;
}

/* A raw line (AUTHENTICATE continuation, IDLE's DONE). */
static int imap_session_input_line(struct imap_session *s,
				   struct evbuffer *in, size_t len)
{
	size_t n, used;
	char *p = (char *)evbuffer_pullup(in, -1);
	char *line;
	int r;

	r = imap_parser_line(p, len, s->set->max_line, &n, &used);
	if (r == 0)
		return 0;
	if (r < 0) {
		/* the BYE must reach the client: linger, not close at once */
		imap_session_printf(s, "* BYE Line too long.\r\n");
		imap_session_close(s);
		return -1;
	}
	line = strndup(p, n);
	evbuffer_drain(in, used);
	if (line == NULL)
		return -1;
	if (s->st == IMAP_SS_SASL) {
		struct imap_cmd *c = s->auth_cmd;

		s->auth_cmd = NULL;
		imap_session_enter(s, IMAP_SS_NOTAUTH);
		imap_login_auth_line(c, line, n);
	} else {
		/* RFC 2177 §3: DONE ends IDLE; anything else is BAD. Input
		 * is read only while no sync job runs. */
		imap_session_idle_end(s, strcasecmp(line, "DONE") == 0);
	}
	free(line);
	return 1;
}

/* ops->input: the conn is OPEN and bytes wait. conn never calls it
 * nested (a STARTTLS filter that reads from inside our evbuffer_drain()
 * has its input handed over later, from the loop). */
static void imap_session_input(struct imap_session *s)
{
	struct bufferevent *bev;
	struct evbuffer *in;
	size_t len;
	int go = 1;

	while (go && conn_state(s->conn) == CONN_ST_OPEN &&
	       s->st != IMAP_SS_LOGOUT &&
	       (bev = conn_bev(s->conn)) != NULL) {
		in = bufferevent_get_input(bev);
		len = evbuffer_get_length(in);
		if (len == 0)
			break;
		if (s->st == IMAP_SS_SASL || s->st == IMAP_SS_IDLE)
			go = imap_session_input_line(s, in, len) > 0;
		else
			go = imap_session_input_cmd(s, in, len);
	}
	if (conn_state(s->conn) == CONN_ST_OPEN && s->st != IMAP_SS_SASL &&
	    s->st != IMAP_SS_IDLE)
		imap_session_read_limit(s);
}

/* ---- conn callbacks ---- */

static void imap_session_greet(struct imap_session *s)
{
	struct buf b;

	buf_init(&b, 0);
	buf_puts(&b, "* OK [CAPABILITY ");
	imap_session_capability_text(s, &b);
	buf_printf(&b, "] %s IMAP4rev1 ready.\r\n", s->set->hostname);
	imap_session_send(s, b.p, b.len);
	buf_free(&b);
}

static void *imap_session_open(struct conn *cn, void *ctx)
{
	struct imap_server *srv = ctx;
	struct imap_session *s = calloc(1, sizeof(*s));
	struct bufferevent *bev = conn_bev(cn);

	if (s == NULL)
		return NULL;
	s->id = conn_id(cn);
	s->conn = cn;
	s->srv = srv;
	s->set = srv->set;
	s->base = srv->base;
	s->pool = srv->pool;
	s->addr = conn_addr(cn);
	s->wd[0] = s->wd[1] = -1;
	s->lit_fd = -1;
	s->next = srv->list;
	if (srv->list != NULL)
		srv->list->prev = s;
	srv->list = s;
	s->st = IMAP_SS_NOTAUTH;
	imap_session_timeouts(s);
	/* a client pipelining while a command runs is stopped by TCP
	 * back-pressure, not buffered without bound */
	if (bev != NULL)
		bufferevent_setwatermark(bev, EV_READ, 0, s->set->max_line + 2);
	log_debug("imap: connect from %s%s", s->addr,
		  conn_implicit_tls(cn) ? " (imaps)" : "");
	imap_session_greet(s);
	return s;
}

static void imap_session_refuse(struct conn *cn, enum conn_refusal why,
				void *ctx)
{
	conn_printf(cn, "* BYE [UNAVAILABLE] Too many connections%s\r\n",
		    why == CONN_REFUSE_ADDR ? " from your address" : "");
}

static void imap_session_input_cb(struct conn *cn, void *sess, void *ctx)
{
	imap_session_input(sess);
}

static void imap_session_timeout(struct conn *cn, void *sess, void *ctx)
{
	struct imap_session *s = sess;

	log_info("imap: client=%s, user=<%s>: idle timeout", s->addr,
		 s->u != NULL ? s->u->name : "");
	imap_session_printf(s, "* BYE Disconnected for inactivity.\r\n");
	s->st = IMAP_SS_LOGOUT;
}

static void imap_session_closed(struct conn *cn, void *sess, int gone,
				const char *why, void *ctx)
{
	struct imap_server *srv = ctx;
	struct imap_session *s = sess;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (srv->list == s)
		srv->list = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	imap_session_unwatch(s);
	if (s->auth_cmd != NULL)
		imap_cmd_free(s->auth_cmd);
	if (s->lf_cmd != NULL)
		imap_cmd_free(s->lf_cmd);
	imap_session_stream_discard(s);
	if (s->u != NULL) {
		if (s->userip_held && s->set->userip != NULL)
			mra_userip_release(s->set->userip, s->u->name,
					   s->addr);
		log_info("imap: logout: client=%s, user=<%s>", s->addr,
			 s->u->name);
		imap_selected_unselect(s->u);
		mstore_free(s->u->ms);
		free(s->u->name);
		free(s->u);
	} else if (gone && why[0] != '\0') {
		log_debug("imap: client=%s: %s", s->addr, why);
	}
	free(s->idle_tag);
	free(s);
}

static const struct conn_ops imap_session_ops = {
	.open = imap_session_open,
	.refuse = imap_session_refuse,
	.input = imap_session_input_cb,
	.timeout = imap_session_timeout,
	.closed = imap_session_closed,
};

/* ---- the server ---- */

struct imap_server *imap_server_new(struct event_base *base,
				    struct work_pool *pool,
				    const struct imap_settings *set,
				    struct err *err)
{
	struct imap_server *srv = calloc(1, sizeof(*srv));
	struct conn_settings cs;

	if (srv == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	srv->base = base;
	srv->pool = pool;
	srv->set = set;
	srv->ino.fd = -1;
	memset(&cs, 0, sizeof(cs));
	cs.service = "imap";
	cs.tls = set->tls;
	cs.max_total = set->max_conns;
	cs.max_per_addr = set->max_conns_per_addr;
	cs.max_cmds_per_sec = set->max_cmds_per_sec;
	/* the per-state timeouts are set on the bufferevent
	 * (imap_session_timeouts); this one also ends a client that leaves
	 * output unread */
	cs.timeout = (int)set->idle_timeout;
	cs.busy_detached = 0;
	cs.write_hiwat = IMAP_SESSION_OUT_HIGH;
	srv->conns = conn_server_new(base, &cs, &imap_session_ops, srv, err);
	if (srv->conns == NULL) {
		free(srv);
		return NULL;
	}
	return srv;
}

int imap_server_listen(struct imap_server *srv, int fd, int implicit_tls,
		       struct err *err)
{
	if (implicit_tls && srv->set->tls == NULL)
		return err_set(err, 0, "IMAPS needs a TLS certificate");
	return conn_server_listen(srv->conns, fd,
				  implicit_tls ? CONN_LISTEN_TLS : 0, err);
}

void imap_server_stop_listening(struct imap_server *srv)
{
	conn_server_stop_listening(srv->conns);
}

void imap_server_free(struct imap_server *srv)
{
	if (srv == NULL)
		return;
	conn_server_free(srv->conns);
	if (srv->ino.ev != NULL)
		event_free(srv->ino.ev);
	if (srv->ino.timer != NULL)
		event_free(srv->ino.timer);
	if (srv->ino.fd >= 0)
		close(srv->ino.fd);
	free(srv->ino.wds);
	free(srv);
}
