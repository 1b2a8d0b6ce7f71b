/* imap_session: connections of the IMAP server. Reads commands with the
 * pure parser, runs them (on the loop or the pool), writes responses,
 * handles STARTTLS, AUTHENTICATE continuations, IDLE, timeouts, rate and
 * failed-login limits. A session is freed only when no job of it is on
 * the pool (closing defers the free). */
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
#include <event2/listener.h>
#include <sys/inotify.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "imap_cmd.h"
#include "imap_session.h"
#include "listen.h"
#include "log.h"
#include "mstore.h"
#include "sasl_glue.h"
#include "tls.h"
#include "work.h"

#define IMAP_SESSION_OUT_HIGH (1024 * 1024)
#define IMAP_SESSION_OUT_LOW  (128 * 1024)
#define IMAP_SESSION_MAX_BAD  20
#define IMAP_SESSION_ADDR_SLOTS 1024

struct imap_session_listener {
	struct evconnlistener *l;
	struct event_base *base;
	struct work_pool *pool;
	const struct imap_settings *set;
	int implicit_tls;
	struct imap_session_listener *next;
};

/* Failed logins per client address (a small hash, oldest overwritten). */
struct imap_session_addr {
	char addr[64];
	unsigned fails;
	time_t since;
};

static struct imap_session *imap_session_list;
static struct imap_session_listener *imap_session_listeners;
static struct imap_session_addr imap_session_addrs[IMAP_SESSION_ADDR_SLOTS];
static uint64_t imap_session_next_id = 1;
static unsigned imap_session_n;

/* The parser's argument records: the loop is single-threaded and a
 * command is copied out (imap_session_take) before the next parse. */
static struct imap_arg imap_session_args[IMAP_MAX_ARGS];

static void imap_session_input(struct imap_session *s);
static void imap_session_free(struct imap_session *s);
static void imap_session_linger(struct imap_session *s);

unsigned imap_session_count(void)
{
	return imap_session_n;
}

struct imap_session *imap_session_find(uint64_t id)
{
	struct imap_session *s;

	for (s = imap_session_list; s != NULL; s = s->next)
		if (s->id == id && !s->closing)
			return s;
	return NULL;
}

void imap_session_send(struct imap_session *s, const char *data, size_t len)
{
	if (s->bev != NULL && len > 0)
		bufferevent_write(s->bev, data, len);
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

void imap_session_set_state(struct imap_session *s, enum imap_state st)
{
	struct timeval tv;

	s->state = st;
	tv.tv_sec = st == IMAP_ST_NOTAUTH ? s->set->login_timeout :
		s->set->idle_timeout;
	tv.tv_usec = 0;
	if (s->bev != NULL)
		bufferevent_set_timeouts(s->bev, &tv, &tv);
}

int imap_session_plain_disabled(const struct imap_session *s)
{
	if (s->tls)
		return 0;
	return s->set->disable_plaintext_auth || s->set->ssl_required;
}

/* ---- failed logins ---- */

static struct imap_session_addr *imap_session_addr_slot(const char *addr)
{
	unsigned h = 5381;
	const char *p;

	for (p = addr; *p != '\0'; p++)
		h = h * 33 + (unsigned char)*p;
	return &imap_session_addrs[h % IMAP_SESSION_ADDR_SLOTS];
}

int imap_session_addr_blocked(const struct imap_session *s)
{
	struct imap_session_addr *a = imap_session_addr_slot(s->addr);

	if (s->set->max_auth_fails_ip == 0 || strcmp(a->addr, s->addr) != 0)
		return 0;
	if (time(NULL) - a->since > (time_t)s->set->auth_fail_window)
		return 0;
	return a->fails >= s->set->max_auth_fails_ip;
}

static void imap_session_addr_fail(const struct imap_session *s)
{
	struct imap_session_addr *a = imap_session_addr_slot(s->addr);
	time_t now = time(NULL);

	if (strcmp(a->addr, s->addr) != 0 ||
	    now - a->since > (time_t)s->set->auth_fail_window) {
		snprintf(a->addr, sizeof(a->addr), "%s", s->addr);
		a->fails = 0;
		a->since = now;
	}
	a->fails++;
}

static void imap_session_timer_free(struct imap_session *s)
{
	if (s->timer != NULL) {
		event_free(s->timer);
		s->timer = NULL;
	}
}

static void imap_session_auth_delay_cb(evutil_socket_t fd, short what,
				       void *arg)
{
	struct imap_cmd *c = arg;
	struct imap_session *s = c->s;

	imap_session_timer_free(s);
	if (s->set->max_auth_fails > 0 &&
	    s->auth_fails >= s->set->max_auth_fails) {
		buf_puts(&c->out, "* BYE Too many invalid authentication "
			 "attempts\r\n");
		c->logout = 1;
	}
	imap_session_cmd_done(c);
}

void imap_session_auth_failed(struct imap_cmd *c, const char *user,
			      const char *mech, const char *reason,
			      const char *reply)
{
	struct imap_session *s = c->s;
	struct timeval tv;
	unsigned ms;

	log_info("imap: auth failed: client=%s, user=<%s>, method=%s, "
		 "reason=%s", s->addr, user != NULL ? user : "",
		 mech, reason);
	s->auth_fails++;
	imap_session_addr_fail(s);
	buf_printf(&c->out, "%s NO %s\r\n", c->tag, reply);
	ms = s->set->auth_fail_delay_ms;
	if (s->auth_fails > 1)
		ms <<= (s->auth_fails - 1 < 5 ? s->auth_fails - 1 : 5);
	if (ms > 15000)
		ms = 15000;
	imap_session_timer_free(s);
	s->timer = evtimer_new(s->base, imap_session_auth_delay_cb, c);
	if (s->timer == NULL) {
		imap_session_auth_delay_cb(-1, 0, c);
		return;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

/* ---- commands ---- */

static void imap_session_job_run(void *job)
{
	struct imap_cmd *c = job;

	if (c->def->flags & IMAP_CMD_SYNC)
		imap_cmd_sync(c, 1);
	c->def->fn(c);
}

static void imap_session_job_done(void *job)
{
	imap_session_cmd_done(job);
}

int imap_session_cmd_submit(struct imap_cmd *c)
{
	c->s->busy = 1;
	if (work_submit(c->s->pool, imap_session_job_run,
			imap_session_job_done, c) < 0) {
		c->s->busy = 0;
		return -1;
	}
	return 0;
}

static void imap_session_idle_cb(void *arg);

/* ---- IDLE notifications: one inotify instance for all sessions ----
 * (an instance per session would hit fs.inotify.max_user_instances, 128
 * by default, long before thousands of IDLE clients). A directory watched
 * by several sessions has one watch descriptor, counted. */

#define IMAP_SESSION_INO_DELAY_MS 100
#define IMAP_SESSION_INO_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | \
			       IN_MOVED_TO)

struct imap_session_wd {
	int wd;
	unsigned refs;
};

static int imap_session_ino_fd = -1;
static struct event *imap_session_ino_ev, *imap_session_ino_timer;
static struct imap_session_wd *imap_session_wds;
static size_t imap_session_nwds, imap_session_capwds;
static int imap_session_ino_all;

static struct imap_session_wd *imap_session_wd_find(int wd)
{
	size_t i;

	for (i = 0; i < imap_session_nwds; i++)
		if (imap_session_wds[i].wd == wd)
			return &imap_session_wds[i];
	return NULL;
}

/* Directories changed since the last fire: usually one or two. */
#define IMAP_SESSION_DIRTY_MAX 64
static int imap_session_dirty[IMAP_SESSION_DIRTY_MAX];
static size_t imap_session_ndirty;

static int imap_session_is_dirty(int wd)
{
	size_t i;

	if (wd < 0)
		return 0;
	for (i = 0; i < imap_session_ndirty; i++)
		if (imap_session_dirty[i] == wd)
			return 1;
	return 0;
}

static void imap_session_ino_fire(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s, *next;

	for (s = imap_session_list; s != NULL; s = next) {
		next = s->next;
		if (s->mode != IMAP_MODE_IDLE || s->closing)
			continue;
		if (imap_session_ino_all || imap_session_is_dirty(s->wd[0]) ||
		    imap_session_is_dirty(s->wd[1]))
			imap_session_idle_cb(s);
	}
	imap_session_ndirty = 0;
	imap_session_ino_all = 0;
}

static void imap_session_ino_read(evutil_socket_t fd, short what, void *arg)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct timeval tv = { 0, IMAP_SESSION_INO_DELAY_MS * 1000 };
	struct inotify_event *ev;
	ssize_t r, off;

	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		for (off = 0; off < r;
		     off += (ssize_t)sizeof(*ev) + (ssize_t)ev->len) {
			ev = (struct inotify_event *)(buf + off);
			if (ev->mask & IN_Q_OVERFLOW ||
			    imap_session_ndirty == IMAP_SESSION_DIRTY_MAX)
				imap_session_ino_all = 1;
			else if (!imap_session_is_dirty(ev->wd))
				imap_session_dirty[imap_session_ndirty++] =
					ev->wd;
		}
	}
	/* coalesce a burst (and our own new/ -> cur/ renames) */
	if (!evtimer_pending(imap_session_ino_timer, NULL))
		evtimer_add(imap_session_ino_timer, &tv);
}

static int imap_session_ino_init(struct event_base *base)
{
	if (imap_session_ino_fd >= 0)
		return 0;
	imap_session_ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (imap_session_ino_fd < 0)
		return -1;
	imap_session_ino_ev = event_new(base, imap_session_ino_fd,
					EV_READ | EV_PERSIST,
					imap_session_ino_read, NULL);
	imap_session_ino_timer = evtimer_new(base, imap_session_ino_fire, NULL);
	if (imap_session_ino_ev == NULL || imap_session_ino_timer == NULL ||
	    event_add(imap_session_ino_ev, NULL) < 0) {
		close(imap_session_ino_fd);
		imap_session_ino_fd = -1;
		return -1;
	}
	return 0;
}

static int imap_session_wd_add(const char *dir)
{
	struct imap_session_wd *w;
	int wd = inotify_add_watch(imap_session_ino_fd, dir,
				   IMAP_SESSION_INO_MASK);

	if (wd < 0)
		return -1;
	w = imap_session_wd_find(wd);
	if (w != NULL) {
		w->refs++;
		return wd;
	}
	if (imap_session_nwds == imap_session_capwds) {
		size_t ncap = imap_session_capwds ? imap_session_capwds * 2 : 64;
		struct imap_session_wd *nw = realloc(imap_session_wds,
						     ncap * sizeof(*nw));

		if (nw == NULL) {
			inotify_rm_watch(imap_session_ino_fd, wd);
			return -1;
		}
		imap_session_wds = nw;
		imap_session_capwds = ncap;
	}
	w = &imap_session_wds[imap_session_nwds++];
	w->wd = wd;
	w->refs = 1;
	return wd;
}

static void imap_session_wd_del(int wd)
{
	struct imap_session_wd *w = wd >= 0 ? imap_session_wd_find(wd) : NULL;

	if (w == NULL || --w->refs > 0)
		return;
	inotify_rm_watch(imap_session_ino_fd, wd);
	*w = imap_session_wds[--imap_session_nwds];
}

static void imap_session_unwatch(struct imap_session *s)
{
	imap_session_wd_del(s->wd[0]);
	imap_session_wd_del(s->wd[1]);
	s->wd[0] = s->wd[1] = -1;
	mstore_watch_free(s->watch);
	s->watch = NULL;
}

static void imap_session_watch(struct imap_session *s)
{
	static time_t last_warn;
	const char *name, *path;
	char dir[4200];
	struct err err;

	name = s->folder != NULL ? s->folder->name : s->snap_name;
	path = s->folder != NULL ? s->folder->path : s->snap_path;
	if (name == NULL || s->wd[0] >= 0 || s->watch != NULL)
		return;
	if (path != NULL && imap_session_ino_init(s->base) == 0) {
		snprintf(dir, sizeof(dir), "%s/new", path);
		s->wd[0] = imap_session_wd_add(dir);
		snprintf(dir, sizeof(dir), "%s/cur", path);
		s->wd[1] = imap_session_wd_add(dir);
		if (s->wd[0] >= 0 && s->wd[1] >= 0)
			return;
		imap_session_unwatch(s);
	}
	s->watch = mstore_watch_new(s->base, s->ms, name,
				    imap_session_idle_cb, s, &err);
	if (s->watch == NULL && time(NULL) - last_warn > 60) {
		last_warn = time(NULL);
		log_warn("imap: client=%s, user=<%s>: IDLE watch: %s",
			 s->addr, s->user, err.msg);
	}
}

static void imap_session_idle_start(struct imap_session *s, const char *tag)
{
	free(s->idle_tag);
	s->idle_tag = strdup(tag);
	s->mode = IMAP_MODE_IDLE;
	s->idle_dirty = 0;
	imap_session_watch(s);
}

static void imap_session_idle_stop(struct imap_session *s)
{
	imap_session_unwatch(s);
	s->mode = IMAP_MODE_CMD;
}

static void imap_session_idle_finish(struct imap_session *s)
{
	if (s->idle_tag != NULL)
		imap_session_printf(s, "%s OK Idle completed.\r\n",
				    s->idle_tag);
	free(s->idle_tag);
	s->idle_tag = NULL;
	s->idle_done_pending = 0;
}

static struct imap_cmd *imap_session_cmd_alloc(struct imap_session *s)
{
	struct imap_cmd *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->s = s;
	c->sid = s->id;
	c->new_state = -1;
	c->lit_fd = -1;
	buf_init(&c->out, 0);
	return c;
}

/* A change in the folder while idling (or DONE, restore = 1): sync on
 * the pool. */
static void imap_session_idle_sync(struct imap_session *s, int restore)
{
	struct imap_cmd *c;

	s->idle_dirty = 0;
	c = imap_session_cmd_alloc(s);
	if (c == NULL)
		return;
	c->def = &imap_cmd_idle_sync_def;
	c->no_tagged = 1;
	c->idle_restore = restore;
	c->tag = c->name;
	if (imap_session_cmd_submit(c) < 0)
		imap_cmd_free(c);
}

static void imap_session_idle_cb(void *arg)
{
	struct imap_session *s = arg;

	if (s->mode != IMAP_MODE_IDLE || s->closing)
		return;
	if (s->busy)
		s->idle_dirty = 1;
	else
		imap_session_idle_sync(s, 0);
}

void imap_session_cmd_done(struct imap_cmd *c)
{
	struct imap_session *s = c->s;
	struct evbuffer *out;

	int c_logout = c->logout;

	s->busy = 0;
	if (s->closing) {
		imap_cmd_free(c);
		imap_session_free(s);
		return;
	}
	if (c->new_state >= 0)
		imap_session_set_state(s, (enum imap_state)c->new_state);
	imap_session_send(s, c->out.p, c->out.len);
	if (c->idle_enter) {
		imap_session_printf(s, "+ idling\r\n");
		imap_session_idle_start(s, c->tag);
	}
	imap_cmd_free(c);
	if (c_logout || s->logout_pending) {
		imap_session_linger(s);
		return;
	}
	if (s->mode == IMAP_MODE_IDLE && s->idle_done_pending) {
		if (s->snap_name != NULL) {
			/* DONE: the folder comes back before the reply */
			s->idle_done_pending = 0;
			imap_session_idle_sync(s, 1);
			s->idle_done_pending = 1;
			return;
		}
		imap_session_idle_finish(s);
		s->mode = IMAP_MODE_CMD;
	} else if (s->mode == IMAP_MODE_IDLE && s->idle_dirty) {
		imap_session_idle_sync(s, 0);
		return;
	}
	out = bufferevent_get_output(s->bev);
	if (evbuffer_get_length(out) > IMAP_SESSION_OUT_HIGH) {
		s->out_paused = 1;
		return;
	}
	if (!s->in_input)
		imap_session_input(s);
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

	if (s->ms == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/tmp", mstore_root(s->ms));
	fd = open(path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR &&
			errno != EINVAL))
		return fd;
	/* no O_TMPFILE on this file system: a named file, unlinked */
	snprintf(path, sizeof(path), "%s/tmp/mra-append.%llu.XXXXXX",
		 mstore_root(s->ms), (unsigned long long)s->id);
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
			 "%s", s->addr, s->user, mstore_root(s->ms),
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
	static char chunk[64 * 1024];
	size_t left = o->used;

	while (left > 0) {
		size_t k = left < sizeof(chunk) ? left : sizeof(chunk), w = 0;
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
		imap_session_linger(s);
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
	c->def = imap_cmd_find(c->name);
	if (c->def == NULL) {
		s->bad_cmds++;
		imap_cmd_bad(c, "Unknown command.");
		imap_session_cmd_done(c);
		return;
	}
	if (!(c->def->states & (1u << s->state))) {
		imap_cmd_bad(c, "Command not valid in this state.");
		imap_session_cmd_done(c);
		return;
	}
	if (imap_cmd_check_mailboxes(c) < 0) {
		imap_session_cmd_done(c);
		return;
	}
	s->busy = 1;
	if (c->def->flags & IMAP_CMD_POOL) {
		if (imap_session_cmd_submit(c) < 0) {
			imap_cmd_no(c, "[UNAVAILABLE] Server busy.");
			imap_session_cmd_done(c);
		}
		return;
	}
	c->def->fn(c);
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

static void imap_session_rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;

	imap_session_timer_free(s);
	s->paused = 0;
	imap_session_input(s);
}

/* Command rate limit: beyond max per second, stop reading until the
 * next second (the client is slowed, not disconnected). Returns 1 when
 * the next command must wait. */
static int imap_session_rate_wait(struct imap_session *s)
{
	struct timeval tv = { 1, 0 };
	long now = (long)time(NULL);

	if (s->set->max_cmds_per_sec == 0)
		return 0;
	if (now != s->cmd_second) {
		s->cmd_second = now;
		s->cmd_count = 0;
	}
	if (s->cmd_count < s->set->max_cmds_per_sec)
		return 0;
	if (s->timer != NULL)
		return 1;
	s->timer = evtimer_new(s->base, imap_session_rate_cb, s);
	if (s->timer == NULL)
		return 0;
	s->paused = 1;
	evtimer_add(s->timer, &tv);
	return 1;
}

/* The reader's limits now: small literals before login (RFC 7888 §4
 * allows refusing; strangers must not make us hold much), bigger ones
 * after, and APPEND messages streamed to a file up to the size limit. */
static void imap_session_policy(const struct imap_session *s,
				struct imap_reader_policy *pol)
{
	memset(pol, 0, sizeof(*pol));
	pol->max_line = s->set->max_line;
	if (s->state == IMAP_ST_NOTAUTH) {
		pol->max_literal = s->set->max_login_literal;
	} else {
		pol->max_literal = s->set->max_literal;
		pol->max_stream = s->set->max_append;
	}
	pol->max_command = s->set->max_line + pol->max_literal;
	pol->quota_left = UINT64_MAX;
	if (s->quota_limit > 0)
		pol->quota_left = s->quota_used < s->quota_limit ?
			s->quota_limit - s->quota_used : 0;
}

/* Let in what the command being read may still need: its bytes so far
 * (up to the end of an accepted literal, or the part kept aside while a
 * message streams) and one more line. TCP holds back the rest. */
static void imap_session_read_limit(struct imap_session *s)
{
	size_t base = s->rd.need > s->rd.stream_at ? s->rd.need :
		s->rd.stream_at;

	if (s->bev != NULL)
		bufferevent_setwatermark(s->bev, EV_READ, 0,
					 base + s->set->max_line + 2);
}

static int imap_session_command(struct imap_session *s, struct evbuffer *in,
				char *p, const struct imap_reader_out *o)
{
	struct imap_cmd *c;

	c = imap_session_take(s, p, o->used, o->tag, imap_session_args,
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
	s->cmd_count++;
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
		if (imap_session_rate_wait(s))
			return 0;
		imap_session_policy(s, &pol);
		p = (char *)evbuffer_pullup(in, -1);
		if (p == NULL)
			return 0;
		ev = imap_reader_step(&s->rd, &pol, p, len, imap_session_args,
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
		return !s->logout_pending;
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
	imap_session_linger(s);
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
		imap_session_linger(s);
		return -1;
	}
	line = strndup(p, n);
	evbuffer_drain(in, used);
	if (line == NULL)
		return -1;
	if (s->mode == IMAP_MODE_AUTH) {
		struct imap_cmd *c = s->auth_cmd;

		s->auth_cmd = NULL;
		s->mode = IMAP_MODE_CMD;
		imap_cmd_auth_line(c, line, n);
	} else {
		/* RFC 2177 §3: DONE ends IDLE; anything else is BAD. */
		imap_session_idle_stop(s);
		if (strcasecmp(line, "DONE") != 0) {
			imap_session_printf(s, "%s BAD Expected DONE.\r\n",
					    s->idle_tag);
			free(s->idle_tag);
			s->idle_tag = NULL;
		} else if (s->busy || s->snap_name != NULL) {
			s->idle_done_pending = 1;
			s->mode = IMAP_MODE_IDLE;
			if (!s->busy)
				imap_session_idle_sync(s, 1);
		} else {
			imap_session_idle_finish(s);
		}
	}
	free(line);
	return 1;
}

static void imap_session_input(struct imap_session *s)
{
	struct evbuffer *in;
	size_t len;
	int go = 1;

	if (s->in_input)
		return;
	s->in_input = 1;
	while (go && s->bev != NULL && !s->busy && !s->paused &&
	       !s->closing && !s->logout_pending && !s->out_paused) {
		in = bufferevent_get_input(s->bev);
		len = evbuffer_get_length(in);
		if (len == 0)
			break;
		switch (s->mode) {
		case IMAP_MODE_AUTH:
		case IMAP_MODE_IDLE:
			if (s->mode == IMAP_MODE_IDLE && s->idle_done_pending) {
				go = 0;
				break;
			}
			go = imap_session_input_line(s, in, len) > 0;
			break;
		case IMAP_MODE_CMD:
			go = imap_session_input_cmd(s, in, len);
			break;
		}
	}
	s->in_input = 0;
	if (s->closing && !s->busy) {
		imap_session_free(s);
		return;
	}
	if (s->mode == IMAP_MODE_CMD)
		imap_session_read_limit(s);
}

/* ---- closing after the last response ---- */

/* 1 when every byte queued for the client has left (a STARTTLS filter
 * keeps its ciphertext on the underlying bufferevent). */
static int imap_session_flushed(struct imap_session *s)
{
	struct bufferevent *u;

	if (s->bev == NULL)
		return 1;
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return 0;
	u = bufferevent_get_underlying(s->bev);
	return u == NULL || evbuffer_get_length(bufferevent_get_output(u)) == 0;
}

static void imap_session_linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;
	struct timeval tv = { 0, 20000 };

	if (imap_session_flushed(s) || ++s->linger > 250) {
		imap_session_timer_free(s);
		imap_session_close(s);
		return;
	}
	evtimer_add(s->timer, &tv);
}

/* LOGOUT, BYE: stop reading, close once the output is sent. */
static void imap_session_linger(struct imap_session *s)
{
	struct timeval tv = { 0, 0 };

	s->logout_pending = 1;
	s->state = IMAP_ST_LOGOUT;
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ);
	if (s->busy)
		return;
	imap_session_timer_free(s);
	s->timer = evtimer_new(s->base, imap_session_linger_cb, s);
	if (s->timer == NULL) {
		imap_session_close(s);
		return;
	}
	evtimer_add(s->timer, &tv);
}

/* ---- bufferevent callbacks ---- */

static void imap_session_read_cb(struct bufferevent *bev, void *arg)
{
	imap_session_input(arg);
}

static void imap_session_write_cb(struct bufferevent *bev, void *arg)
{
	struct imap_session *s = arg;
	size_t left = evbuffer_get_length(bufferevent_get_output(bev));

	if (s->out_paused && left <= IMAP_SESSION_OUT_LOW) {
		s->out_paused = 0;
		imap_session_input(s);
	}
}

static void imap_session_event_cb(struct bufferevent *bev, short what,
				  void *arg)
{
	struct imap_session *s = arg;
	char why[128];

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->busy) {
			bufferevent_enable(bev, EV_READ);
			return;
		}
		log_info("imap: client=%s, user=<%s>: idle timeout", s->addr,
			 s->user != NULL ? s->user : "");
		imap_session_printf(s, "* BYE Disconnected for inactivity.\r\n");
		imap_session_linger(s);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		tls_bev_error(bev, why, sizeof(why));
		if (why[0] != '\0')
			log_info("imap: client=%s: TLS error: %s", s->addr,
				 why);
	}
	imap_session_close(s);
}

/* ---- life cycle ---- */

static void imap_session_unlink(struct imap_session *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (imap_session_list == s)
		imap_session_list = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
}

static void imap_session_free(struct imap_session *s)
{
	if (s->busy || s->in_input)
		return;
	imap_session_unlink(s);
	imap_session_timer_free(s);
	imap_session_unwatch(s);
	if (s->auth_cmd != NULL)
		imap_cmd_free(s->auth_cmd);
	mstore_folder_free(s->folder);
	imap_cmd_msg_snapshot_free(s);
	imap_session_stream_discard(s);
	mstore_free(s->ms);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->user != NULL)
		log_info("imap: logout: client=%s, user=<%s>", s->addr,
			 s->user);
	free(s->user);
	free(s->idle_tag);
	free(s);
	imap_session_n--;
}

void imap_session_close(struct imap_session *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	imap_session_unwatch(s);
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	/* a pending timer owns a command: let it fire and free */
	if (s->timer != NULL && s->busy)
		return;
	imap_session_timer_free(s);
	imap_session_free(s);
}

static void imap_session_greet(struct imap_session *s)
{
	struct buf b;

	buf_init(&b, 0);
	buf_puts(&b, "* OK [CAPABILITY ");
	imap_cmd_capability_text(s, &b);
	buf_printf(&b, "] %s IMAP4rev1 ready.\r\n", s->set->hostname);
	imap_session_send(s, b.p, b.len);
	buf_free(&b);
}

static void imap_session_accept_cb(struct evconnlistener *l,
				   evutil_socket_t fd, struct sockaddr *sa,
				   int salen, void *arg)
{
	struct imap_session_listener *li = arg;
	struct imap_session *s;
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	struct err err;
	int one = 1;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		evutil_closesocket(fd);
		return;
	}
	/* responses go out whole; no Nagle delay on their last segment */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->id = imap_session_next_id++;
	s->wd[0] = s->wd[1] = -1;
	s->lit_fd = -1;
	s->set = li->set;
	s->base = li->base;
	s->pool = li->pool;
	s->implicit_tls = li->implicit_tls;
	listen_addr_string(sa, s->addr, sizeof(s->addr));
	sasl_glue_ipport(sa, s->remote_ipport, sizeof(s->remote_ipport));
	if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0)
		sasl_glue_ipport((struct sockaddr *)&local, s->local_ipport,
				 sizeof(s->local_ipport));
	if (li->implicit_tls) {
		s->bev = tls_bev_accept(li->base, fd, li->set->tls, &err);
		s->tls = 1;
	} else {
		s->bev = bufferevent_socket_new(li->base, fd,
						BEV_OPT_CLOSE_ON_FREE);
		err_set(&err, 1, "bufferevent_socket_new failed");
	}
	if (s->bev == NULL) {
		log_warn("imap: client=%s: %s", s->addr, err.msg);
		evutil_closesocket(fd);
		free(s);
		return;
	}
	s->next = imap_session_list;
	if (imap_session_list != NULL)
		imap_session_list->prev = s;
	imap_session_list = s;
	imap_session_n++;
	bufferevent_setcb(s->bev, imap_session_read_cb, imap_session_write_cb,
			  imap_session_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_WRITE, IMAP_SESSION_OUT_LOW, 0);
	/* a client pipelining while a command runs is stopped by TCP
	 * back-pressure, not buffered without bound */
	bufferevent_setwatermark(s->bev, EV_READ, 0, s->set->max_line + 2);
	imap_session_set_state(s, IMAP_ST_NOTAUTH);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_debug("imap: connect from %s%s", s->addr,
		  li->implicit_tls ? " (imaps)" : "");
	imap_session_greet(s);
}

int imap_listener_start(struct event_base *base, struct work_pool *pool,
			int fd, const struct imap_settings *set,
			int implicit_tls, struct err *err)
{
	struct imap_session_listener *li;

	if (implicit_tls && set->tls == NULL)
		return err_set(err, 0, "IMAPS needs a TLS certificate");
	li = calloc(1, sizeof(*li));
	if (li == NULL)
		return err_set(err, 1, "out of memory");
	li->base = base;
	li->pool = pool;
	li->set = set;
	li->implicit_tls = implicit_tls;
	li->l = evconnlistener_new(base, imap_session_accept_cb, li,
				   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				   -1, fd);
	if (li->l == NULL) {
		free(li);
		return err_set(err, 1, "evconnlistener_new failed");
	}
	li->next = imap_session_listeners;
	imap_session_listeners = li;
	return 0;
}

void imap_shutdown(void)
{
	struct imap_session_listener *li;
	struct imap_session *s, *next;

	while ((li = imap_session_listeners) != NULL) {
		imap_session_listeners = li->next;
		evconnlistener_free(li->l);
		free(li);
	}
	for (s = imap_session_list; s != NULL; s = next) {
		next = s->next;
		imap_session_close(s);
	}
	if (imap_session_ino_ev != NULL)
		event_free(imap_session_ino_ev);
	if (imap_session_ino_timer != NULL)
		event_free(imap_session_ino_timer);
	imap_session_ino_ev = imap_session_ino_timer = NULL;
	if (imap_session_ino_fd >= 0)
		close(imap_session_ino_fd);
	imap_session_ino_fd = -1;
	free(imap_session_wds);
	imap_session_wds = NULL;
	imap_session_nwds = imap_session_capwds = 0;
}
