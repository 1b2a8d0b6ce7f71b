/* conn: the connection core (see conn.h). One struct conn per client,
 * found by id through the server's slot table (the id carries a
 * generation, so a stale id never finds a newer conn). Frees happen only
 * from the core's own event callbacks, never inside a protocol callback:
 * a close or a lost client seen while one runs is deferred to c->ev. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include "conn.h"
#include "listen.h"
#include "log.h"
#include "sasl_glue.h"
#include "tls.h"

#define CONN_MAX_LISTEN   16
#define CONN_ADDR_BUCKETS 256
#define CONN_POLL_MS      20

/* conn flags */
#define CONN_F_TLS        0x0001
#define CONN_F_IMPLICIT   0x0002
#define CONN_F_GONE       0x0004   /* client left; bev freed */
#define CONN_F_CLOSE_ASK  0x0008   /* conn_close() while BUSY */
#define CONN_F_OUT_PAUSE  0x0010   /* output over write_hiwat */
#define CONN_F_PACE_PAUSE 0x0020   /* over max_cmds_per_sec */
#define CONN_F_INPUT      0x0040   /* hand pending input to ops->input */
#define CONN_F_COUNTED    0x0080   /* counts towards the caps */
#define CONN_F_DEAD       0x0100   /* free at the next wake-up */
#define CONN_F_DRAIN      0x0200   /* CLOSING, flushed: reading to EOF */

/* After the last reply has left, unread input from the client is read
 * and dropped until it closes, at most this long: closing a socket with
 * unread bytes makes the kernel send a reset, which may destroy the reply
 * still on its way (the old POP3 code's half-close and drain). */
#define CONN_DRAIN_MS     2000

/* conn_vline() formats a line this long on the stack (longer: two adds). */
#define CONN_LINE_MAX     1024

/* Pieces of staged output one direct send takes (the rest is queued). */
#define CONN_SEND_IOV     16

struct conn {
	uint64_t id;
	struct conn_server *srv;
	struct bufferevent *bev;      /* NULL once the client is gone */
	struct tls_srv *tls;          /* bev's TLS state, borrowed: set and
	                                 cleared with bev; NULL: plain */
	struct event *ev;             /* wake-ups: deferred input, pacing,
	                                 flushing; made when first needed */
	struct event *tmo;            /* stalled too long: BUSY (with
	                                 busy_detached) or output unread */
	enum conn_state state;
	int flags;
	int in_cb;                    /* depth of protocol callbacks */
	struct evbuffer *stage;       /* output written inside a callback:
	                                 handed over in one piece when the
	                                 outermost one returns; NULL outside */
	int gone_code;                /* for ops->closed: 1 client gone */
	unsigned linger_polls;
	unsigned pace_count;
	time_t pace_sec;
	int port;
	void *sess;
	const char *why;              /* for ops->closed: static text, or
	                                 a caller's buffer used at once */
	char addr[48];
	char local_ipport[64], remote_ipport[64];
};

struct conn_addr {
	struct conn_addr *next;
	unsigned n;
	char addr[48];
};

struct conn_server {
	struct event_base *base;
	struct conn_settings set;
	struct conn_ops ops;
	void *ctx;
	struct evconnlistener *lis[CONN_MAX_LISTEN];
	int lis_flags[CONN_MAX_LISTEN];
	int nlis;
	struct conn **slots;
	uint32_t *gens;
	uint32_t *freelist;
	uint32_t nslots, nfree;
	unsigned total;               /* counted conns */
	unsigned live;                /* all conns, refused ones too */
	struct conn_addr *addrs[CONN_ADDR_BUCKETS];
};

static void conn_wake(struct conn *c, unsigned ms);
static void conn_destroy(struct conn *c);
static void conn_tmo_set(struct conn *c, int on);
static void conn_leave(struct conn *c);

/* ---- per-address counts ---------------------------------------------- */

static unsigned conn_addr_hash(const char *a)
{
	unsigned h = 2166136261u;

	while (*a != '\0')
		h = (h ^ (unsigned char)*a++) * 16777619u;
	return h % CONN_ADDR_BUCKETS;
}

static struct conn_addr *conn_addr_find(const struct conn_server *srv,
                                        const char *addr)
{
	struct conn_addr *e = srv->addrs[conn_addr_hash(addr)];

	while (e != NULL && strcmp(e->addr, addr) != 0)
		e = e->next;
	return e;
}

unsigned conn_server_count_addr(const struct conn_server *srv,
                                const char *addr)
{
	struct conn_addr *e = conn_addr_find(srv, addr);

	return e != NULL ? e->n : 0;
}

static int conn_addr_add(struct conn_server *srv, const char *addr)
{
	struct conn_addr *e = conn_addr_find(srv, addr);
	unsigned h;

	if (e != NULL) {
		e->n++;
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -1;
	snprintf(e->addr, sizeof(e->addr), "%s", addr);
	e->n = 1;
	h = conn_addr_hash(addr);
	e->next = srv->addrs[h];
	srv->addrs[h] = e;
	return 0;
}

static void conn_addr_del(struct conn_server *srv, const char *addr)
{
	struct conn_addr **pp = &srv->addrs[conn_addr_hash(addr)], *e;

	while ((e = *pp) != NULL && strcmp(e->addr, addr) != 0)
		pp = &e->next;
	if (e == NULL || --e->n > 0)
		return;
	*pp = e->next;
	free(e);
}

/* ---- session table --------------------------------------------------- */

struct conn *conn_find(struct conn_server *srv, uint64_t id)
{
	uint32_t slot = (uint32_t)id;

	if (srv == NULL || slot >= srv->nslots ||
	    srv->gens[slot] != (uint32_t)(id >> 32))
		return NULL;
	return srv->slots[slot];
}

static int conn_slot_get(struct conn_server *srv, struct conn *c)
{
	uint32_t slot;

	if (srv->nfree == 0) {
		uint32_t n = srv->nslots == 0 ? 64 : srv->nslots * 2, i;
		struct conn **sl;
		uint32_t *g, *f;

		sl = realloc(srv->slots, n * sizeof(*sl));
		if (sl == NULL)
			return -1;
		srv->slots = sl;
		g = realloc(srv->gens, n * sizeof(*g));
		if (g == NULL)
			return -1;
		srv->gens = g;
		f = realloc(srv->freelist, n * sizeof(*f));
		if (f == NULL)
			return -1;
		srv->freelist = f;
		for (i = n; i > srv->nslots; i--) {
			srv->slots[i - 1] = NULL;
			srv->gens[i - 1] = 1;
			srv->freelist[srv->nfree++] = i - 1;
		}
		srv->nslots = n;
	}
	slot = srv->freelist[--srv->nfree];
	srv->slots[slot] = c;
	c->id = ((uint64_t)srv->gens[slot] << 32) | slot;
	return 0;
}

static void conn_slot_put(struct conn_server *srv, uint64_t id)
{
	uint32_t slot = (uint32_t)id;

	srv->slots[slot] = NULL;
	if (++srv->gens[slot] == 0)
		srv->gens[slot] = 1;
	srv->freelist[srv->nfree++] = slot;
}

/* ---- accessors ------------------------------------------------------- */

uint64_t conn_id(const struct conn *c) { return c->id; }
struct conn_server *conn_server(const struct conn *c) { return c->srv; }
enum conn_state conn_state(const struct conn *c) { return c->state; }
struct bufferevent *conn_bev(const struct conn *c) { return c->bev; }
struct tls_srv *conn_tls_srv(const struct conn *c) { return c->tls; }
const char *conn_addr(const struct conn *c) { return c->addr; }
int conn_port(const struct conn *c) { return c->port; }
const char *conn_local_ipport(const struct conn *c) { return c->local_ipport; }
const char *conn_remote_ipport(const struct conn *c) { return c->remote_ipport; }
int conn_tls(const struct conn *c) { return (c->flags & CONN_F_TLS) != 0; }
int conn_implicit_tls(const struct conn *c)
{
	return (c->flags & CONN_F_IMPLICIT) != 0;
}
void *conn_session(const struct conn *c) { return c->sess; }
int conn_gone(const struct conn *c) { return (c->flags & CONN_F_GONE) != 0; }
unsigned conn_server_count(const struct conn_server *srv) { return srv->total; }

/* ---- reading on and off ---------------------------------------------- */

static void conn_update_read(struct conn *c)
{
	if (c->bev == NULL)
		return;
	/* busy_detached: a BUSY conn reads on (into the buffer, up to
	 * read_hiwat, not handed over) to see a client leave. A TLS
	 * handshake reads whatever the state: the output waiting behind it
	 * (a refusal's BYE, the greeting) leaves only once it is done. */
	if ((c->flags & CONN_F_DRAIN) ||
	    (c->tls != NULL && !tls_srv_done(c->tls)) ||
	    ((c->state == CONN_ST_OPEN || (c->state == CONN_ST_BUSY &&
	    c->srv->set.busy_detached)) &&
	    !(c->flags & (CONN_F_OUT_PAUSE | CONN_F_PACE_PAUSE))))
		bufferevent_enable(c->bev, EV_READ);
	else
		bufferevent_disable(c->bev, EV_READ);
}

/* A STARTTLS filter keeps its ciphertext on the underlying bufferevent:
 * both count. */
size_t conn_output_len(const struct conn *c)
{
	struct bufferevent *u;
	size_t n;

	if (c->bev == NULL)
		return 0;
	n = evbuffer_get_length(bufferevent_get_output(c->bev));
	if (c->stage != NULL)
		n += evbuffer_get_length(c->stage);
	u = bufferevent_get_underlying(c->bev);
	if (u != NULL)
		n += evbuffer_get_length(bufferevent_get_output(u));
	return n;
}

/* 1 when every queued byte has left. */
static int conn_flushed(const struct conn *c)
{
	return conn_output_len(c) == 0;
}

/* Output over the high-water mark: stop taking commands until it drains
 * (a client that pipelines FETCHes and never reads holds no more), and
 * give up on a client that leaves it unread for the timeout. */
static void conn_check_output(struct conn *c)
{
	if (c->bev == NULL || c->state != CONN_ST_OPEN ||
	    (c->flags & CONN_F_OUT_PAUSE))
		return;
	if (conn_output_len(c) > c->srv->set.write_hiwat) {
		c->flags |= CONN_F_OUT_PAUSE;
		bufferevent_setwatermark(c->bev, EV_WRITE,
		                         c->srv->set.write_hiwat / 4, 0);
		conn_update_read(c);
		conn_tmo_set(c, 1);
		/* a TLS filter's bytes drain on the bufferevent under it,
		 * whose callbacks are the filter's: look again by timer */
		if (bufferevent_get_underlying(c->bev) != NULL)
			conn_wake(c, CONN_POLL_MS);
	}
}

/* Output drained to write_hiwat / 4: take commands again. 1 when so. */
static int conn_output_resume(struct conn *c)
{
	if (conn_output_len(c) > c->srv->set.write_hiwat / 4)
		return 0;
	c->flags &= ~CONN_F_OUT_PAUSE;
	if (c->bev != NULL)
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	if (c->state == CONN_ST_OPEN)
		conn_tmo_set(c, 0);
	conn_update_read(c);
	c->flags |= CONN_F_INPUT;
	conn_wake(c, 0);
	return 1;
}

/* Hand pending input to the protocol: on the loop, never nested. */
static void conn_run_input(struct conn *c)
{
	c->flags &= ~CONN_F_INPUT;
	if (c->state != CONN_ST_OPEN || c->bev == NULL ||
	    (c->flags & (CONN_F_OUT_PAUSE | CONN_F_PACE_PAUSE)) ||
	    evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
		return;
	c->in_cb++;
	c->srv->ops.input(c, c->sess, c->srv->ctx);
	conn_leave(c);
	conn_check_output(c);
}

/* ---- output ---------------------------------------------------------- */

/* Where output goes now: the stage inside a protocol callback, else the
 * bufferevent. Writing line by line straight into a STARTTLS filter made
 * one TLS record (and one SSL_write) per piece, and on a plain socket
 * each reply cost two epoll_ctl calls and a loop turn (issue 12). NULL
 * when nothing may be written. */
static struct evbuffer *conn_out(struct conn *c)
{
	if (c->bev == NULL || c->state == CONN_ST_CLOSING)
		return NULL;
	if (c->in_cb > 0 && c->stage == NULL)
		c->stage = evbuffer_new();
	if (c->in_cb > 0 && c->stage != NULL)
		return c->stage;
	return bufferevent_get_output(c->bev);
}

/* Send what a plain socket takes now, without blocking and without
 * SIGPIPE (the bufferevent meets an error again and reports it). */
static void conn_send_now(struct evbuffer *b, evutil_socket_t fd)
{
	struct evbuffer_iovec v[CONN_SEND_IOV];
	struct iovec iov[CONN_SEND_IOV];
	struct msghdr m = { .msg_iov = iov };
	int n = evbuffer_peek(b, -1, NULL, v, CONN_SEND_IOV);
	ssize_t w;

	if (n > CONN_SEND_IOV)
		n = CONN_SEND_IOV;
	for (int i = 0; i < n; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
	}
	m.msg_iovlen = (size_t)(n > 0 ? n : 0);
	do
		w = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (w < 0 && errno == EINTR);
	if (w > 0)
		evbuffer_drain(b, (size_t)w);
}

void conn_flush(struct conn *c)
{
	struct evbuffer *stage = c->stage, *out;
	evutil_socket_t fd;

	if (stage == NULL)
		return;
	c->stage = NULL;
	if (c->bev != NULL && evbuffer_get_length(stage) > 0) {
		out = bufferevent_get_output(c->bev);
		/* a plain socket with nothing queued: write at once; what
		 * the socket does not take (or an error, which the
		 * bufferevent meets again and reports) is queued */
		if (!(c->flags & CONN_F_TLS) && evbuffer_get_length(out) == 0 &&
		    (fd = bufferevent_getfd(c->bev)) >= 0)
			conn_send_now(stage, fd);
		if (evbuffer_get_length(stage) > 0)
			evbuffer_add_buffer(out, stage);
		/* paused over output that has all left already: no drain
		 * will call conn_write_cb, so look again from the loop */
		if ((c->flags & CONN_F_OUT_PAUSE) &&
		    evbuffer_get_length(out) == 0)
			conn_wake(c, 0);
	}
	evbuffer_free(stage);
}

/* The outermost protocol callback returns: hand its output over. */
static void conn_leave(struct conn *c)
{
	if (--c->in_cb == 0)
		conn_flush(c);
}

void conn_hold(struct conn *c)
{
	c->in_cb++;
}

void conn_release(struct conn *c)
{
	conn_leave(c);
	conn_check_output(c);
}

void conn_write(struct conn *c, const void *data, size_t len)
{
	struct evbuffer *out = conn_out(c);

	if (out != NULL)
		evbuffer_add(out, data, len);
}

void conn_vprintf(struct conn *c, const char *fmt, va_list ap)
{
	struct evbuffer *out = conn_out(c);

	if (out != NULL)
		evbuffer_add_vprintf(out, fmt, ap);
}

void conn_vline(struct conn *c, const char *fmt, va_list ap)
{
	struct evbuffer *out = conn_out(c);
	char line[CONN_LINE_MAX];
	va_list aq;
	int n;

	if (out == NULL)
		return;
	/* one evbuffer_add per line: outside a callback, each add to a
	 * STARTTLS filter is a TLS record of its own */
	va_copy(aq, ap);
	n = vsnprintf(line, sizeof(line) - 2, fmt, aq);
	va_end(aq);
	if (n >= 0 && (size_t)n < sizeof(line) - 2) {
		memcpy(line + n, "\r\n", 2);
		evbuffer_add(out, line, (size_t)n + 2);
	} else if (evbuffer_add_vprintf(out, fmt, ap) >= 0) {
		evbuffer_add(out, "\r\n", 2);
	}
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_vprintf(c, fmt, ap);
	va_end(ap);
}

/* ---- life ------------------------------------------------------------ */

static void conn_destroy(struct conn *c)
{
	struct conn_server *srv = c->srv;

	if (c->in_cb > 0) {
		/* a protocol callback is on the stack: free from the loop */
		c->flags |= CONN_F_DEAD;
		conn_wake(c, 0);
		return;
	}
	conn_slot_put(srv, c->id);
	if (c->flags & CONN_F_COUNTED) {
		conn_addr_del(srv, c->addr);
		srv->total--;
	}
	srv->live--;
	if (c->sess != NULL && srv->ops.closed != NULL)
		srv->ops.closed(c, c->sess, c->gone_code,
		                c->why != NULL ? c->why : "", srv->ctx);
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->tmo != NULL)
		event_free(c->tmo);
	if (c->stage != NULL)
		evbuffer_free(c->stage);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c);
}

/* ops->timeout, then close. */
static void conn_timed_out(struct conn *c)
{
	if (c->srv->ops.timeout != NULL) {
		c->in_cb++;
		c->srv->ops.timeout(c, c->sess, c->srv->ctx);
		conn_leave(c);
	}
	conn_close(c);
}

static void conn_tmo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->state == CONN_ST_BUSY) {
		/* busy_detached: the client has waited long enough; the job
		 * will find its session CLOSING or gone */
		c->state = CONN_ST_OPEN;
		if (c->flags & CONN_F_CLOSE_ASK) {
			conn_close(c);   /* its farewell is written already */
			return;
		}
	} else if (c->state != CONN_ST_OPEN ||
	           !(c->flags & CONN_F_OUT_PAUSE)) {
		return;
	}
	conn_timed_out(c);
}

/* The stall timer: on (re)starts settings.timeout, off stops it. */
static void conn_tmo_set(struct conn *c, int on)
{
	struct timeval tv = { c->srv->set.timeout, 0 };

	if (!on || c->srv->set.timeout <= 0) {
		if (c->tmo != NULL)
			evtimer_del(c->tmo);
		return;
	}
	if (c->tmo == NULL)
		c->tmo = evtimer_new(c->srv->base, conn_tmo_cb, c);
	if (c->tmo == NULL) {
		log_error("%s: out of memory for a timer", c->srv->set.service);
		return;
	}
	evtimer_add(c->tmo, &tv);
}

/* The last reply has left: say so (FIN on a plain socket; a TLS layer
 * cannot half-close under its records), then read and drop whatever the
 * client still sends until it closes or CONN_DRAIN_MS pass. */
static void conn_drain_start(struct conn *c)
{
	evutil_socket_t fd;

	if (c->bev == NULL) {
		conn_destroy(c);
		return;
	}
	c->flags |= CONN_F_DRAIN;
	c->linger_polls = 0;
	if (!(c->flags & CONN_F_TLS) &&
	    (fd = bufferevent_getfd(c->bev)) >= 0)
		shutdown(fd, SHUT_WR);
	evbuffer_drain(bufferevent_get_input(c->bev),
	               evbuffer_get_length(bufferevent_get_input(c->bev)));
	conn_update_read(c);
	conn_wake(c, CONN_POLL_MS);
}

static void conn_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	time_t now;

	if (c->flags & CONN_F_DEAD) {
		conn_destroy(c);
		return;
	}
	if (c->state == CONN_ST_CLOSING) {
		if (c->flags & CONN_F_DRAIN) {
			if (++c->linger_polls * CONN_POLL_MS >= CONN_DRAIN_MS) {
				conn_destroy(c);
				return;
			}
		} else if (conn_flushed(c)) {
			conn_drain_start(c);
			return;
		} else if (++c->linger_polls * CONN_POLL_MS >=
		           c->srv->set.linger_ms) {
			conn_destroy(c);
			return;
		}
		conn_wake(c, CONN_POLL_MS);
		return;
	}
	if ((c->flags & CONN_F_OUT_PAUSE) && !conn_output_resume(c)) {
		if (c->bev != NULL && bufferevent_get_underlying(c->bev) != NULL)
			conn_wake(c, CONN_POLL_MS);
		return;
	}
	if (c->flags & CONN_F_PACE_PAUSE) {
		now = time(NULL);
		if (now == c->pace_sec) {
			conn_wake(c, 1000);
			return;
		}
		c->flags &= ~CONN_F_PACE_PAUSE;
		c->flags |= CONN_F_INPUT;
		conn_update_read(c);
	}
	if (c->flags & CONN_F_INPUT)
		conn_run_input(c);
}

/* Run conn_ev_cb after ms (0: at the next loop turn). */
static void conn_wake(struct conn *c, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (c->ev == NULL) {
		c->ev = evtimer_new(c->srv->base, conn_ev_cb, c);
		if (c->ev == NULL) {
			log_error("%s: out of memory for a timer",
			          c->srv->set.service);
			return;
		}
	}
	if (ms == 0)
		event_active(c->ev, EV_TIMEOUT, 0);
	else
		evtimer_add(c->ev, &tv);
}

void conn_close(struct conn *c)
{
	if (c->state == CONN_ST_CLOSING)
		return;
	if (c->state == CONN_ST_BUSY) {
		c->flags |= CONN_F_CLOSE_ASK;
		return;
	}
	conn_flush(c);   /* the farewell goes before the close */
	c->state = CONN_ST_CLOSING;
	c->linger_polls = 0;
	conn_tmo_set(c, 0);
	if (c->bev != NULL) {
		conn_update_read(c);
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		bufferevent_enable(c->bev, EV_WRITE);
	}
	conn_wake(c, 0);
}

void conn_busy(struct conn *c)
{
	if (c->state != CONN_ST_OPEN)
		return;
	c->state = CONN_ST_BUSY;
	conn_update_read(c);
	conn_tmo_set(c, c->srv->set.busy_detached);
}

int conn_ready(struct conn *c)
{
	if (c->state != CONN_ST_BUSY)
		return c->flags & CONN_F_GONE ? -1 : 0;
	c->state = CONN_ST_OPEN;
	if (c->flags & CONN_F_GONE) {
		conn_destroy(c);
		return -1;
	}
	if (c->flags & CONN_F_CLOSE_ASK) {
		conn_close(c);
		return 0;
	}
	conn_tmo_set(c, (c->flags & CONN_F_OUT_PAUSE) != 0);
	conn_update_read(c);
	c->flags |= CONN_F_INPUT;
	conn_wake(c, 0);
	return 0;
}

int conn_pace(struct conn *c)
{
	unsigned max = c->srv->set.max_cmds_per_sec;
	time_t now;

	conn_check_output(c);
	if (c->flags & CONN_F_OUT_PAUSE)
		return 1;
	if (max == 0)
		return 0;
	now = time(NULL);
	if (now != c->pace_sec) {
		c->pace_sec = now;
		c->pace_count = 0;
	}
	if (c->pace_count < max) {
		c->pace_count++;
		return 0;
	}
	c->flags |= CONN_F_PACE_PAUSE;
	conn_update_read(c);
	conn_wake(c, 1000);
	return 1;
}

int conn_starttls(struct conn *c, struct err *err)
{
	struct bufferevent *tb;
	struct tls_srv *ts;

	if (c->srv->set.tls == NULL || c->bev == NULL || (c->flags & CONN_F_TLS))
		return err_set(err, 0, "TLS not available");
	conn_flush(c);   /* "220 Ready to start TLS" leaves in plaintext */
	evbuffer_drain(bufferevent_get_input(c->bev),
	               evbuffer_get_length(bufferevent_get_input(c->bev)));
	tb = tls_bev_starttls_server(c->bev, c->srv->set.tls, &ts, err);
	if (tb == NULL)
		return -1;
	c->bev = tb;
	c->tls = ts;
	c->flags |= CONN_F_TLS;
	return 0;
}

/* ---- bufferevent callbacks ------------------------------------------- */

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->flags & CONN_F_DRAIN) {
		evbuffer_drain(bufferevent_get_input(bev),
		               evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	if (c->state != CONN_ST_OPEN)
		return;
	conn_run_input(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->state == CONN_ST_CLOSING) {
		if (!(c->flags & CONN_F_DRAIN) && conn_flushed(c))
			conn_drain_start(c);
		return;
	}
	if (c->flags & CONN_F_OUT_PAUSE)
		(void)conn_output_resume(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	char tlswhy[128], why[160];

	if (what & BEV_EVENT_CONNECTED) {
		conn_update_read(c);      /* the handshake no longer reads */
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (c->state == CONN_ST_OPEN) {
			conn_timed_out(c);
		} else {
			conn_update_read(c);
		}
		return;
	}
	if (c->state == CONN_ST_CLOSING) {
		conn_destroy(c);
		return;
	}
	c->gone_code = 1;
	c->why = "lost connection";
	why[0] = '\0';
	if ((what & BEV_EVENT_ERROR) && c->tls != NULL &&
	    tls_srv_error(c->tls, tlswhy, sizeof(tlswhy))[0] != '\0') {
		snprintf(why, sizeof(why), "TLS error: %s", tlswhy);
		c->why = "TLS error";
	}
	if (c->state == CONN_ST_BUSY && !c->srv->set.busy_detached) {
		/* the session's job is out: keep the conn until it is back */
		c->flags |= CONN_F_GONE;
		bufferevent_free(c->bev);
		c->bev = NULL;
		c->tls = NULL;
		return;
	}
	if (why[0] != '\0' && c->in_cb == 0)
		c->why = why;   /* used at once: no callback is on the stack */
	conn_destroy(c);
}

/* ---- accept ---------------------------------------------------------- */

static int conn_setup_bev(struct conn *c, int fd, int flags, struct err *err)
{
	struct conn_server *srv = c->srv;
	struct timeval tv = { srv->set.timeout, 0 };

	if (flags & CONN_LISTEN_TLS) {
		c->bev = tls_bev_accept(srv->base, fd, srv->set.tls, &c->tls,
		                        err);
		c->flags |= CONN_F_TLS | CONN_F_IMPLICIT;
	} else {
		c->bev = bufferevent_socket_new(srv->base, fd,
		                                BEV_OPT_CLOSE_ON_FREE);
		if (c->bev == NULL)
			err_set(err, 1, "bufferevent_socket_new failed");
	}
	if (c->bev == NULL)
		return -1;
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb,
	                  c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, srv->set.read_hiwat);
	/* bodies and literals come in large pieces: fewer loop turns (a
	 * TLS filter's socket reads what the kernel holds, at most 16 KB) */
	if (!(c->flags & CONN_F_TLS))
		bufferevent_set_max_single_read(c->bev, srv->set.read_hiwat);
	if (srv->set.timeout > 0)
		bufferevent_set_timeouts(c->bev, &tv, NULL);
	bufferevent_enable(c->bev, EV_WRITE);
	return 0;
}

/* fd is non-blocking (the listener makes it so; conn_server_accept for
 * other callers): conn_flush() and libevent write at once, and neither
 * may wait for a client that does not read. */
static int conn_serve(struct conn_server *srv, int fd,
                      const struct sockaddr *sa, socklen_t salen, int flags,
                      struct err *err)
{
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	struct conn *c;
	enum conn_refusal why = CONN_REFUSE_TOTAL;
	int one = 1, refuse = 0;

	c = calloc(1, sizeof(*c));
	if (c == NULL || conn_slot_get(srv, c) < 0) {
		free(c);
		evutil_closesocket(fd);
		return err_set(err, 1, "out of memory");
	}
	c->srv = srv;
	srv->live++;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	listen_addr_string(sa, c->addr, sizeof(c->addr));
	sasl_glue_ipport(sa, c->remote_ipport, sizeof(c->remote_ipport));
	if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0)
		sasl_glue_ipport((struct sockaddr *)&local, c->local_ipport,
		                 sizeof(c->local_ipport));
	if (sa->sa_family == AF_INET)
		c->port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	else if (sa->sa_family == AF_INET6)
		c->port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	(void)salen;
	if (conn_setup_bev(c, fd, flags, err) < 0) {
		evutil_closesocket(fd);
		c->state = CONN_ST_CLOSING;
		conn_destroy(c);
		return -1;
	}
	if (srv->set.max_total > 0 && srv->total >= srv->set.max_total)
		refuse = 1;
	else if (srv->set.max_per_addr > 0 &&
	         conn_server_count_addr(srv, c->addr) >= srv->set.max_per_addr) {
		refuse = 1;
		why = CONN_REFUSE_ADDR;
	}
	if (refuse) {
		log_info("%s: refused connection from %s: %s", srv->set.service,
		         c->addr, why == CONN_REFUSE_TOTAL ?
		         "too many connections" :
		         "too many connections from this address");
		if (srv->ops.refuse != NULL)
			srv->ops.refuse(c, why, srv->ctx);
		conn_close(c);
		return 0;
	}
	if (conn_addr_add(srv, c->addr) < 0) {
		c->state = CONN_ST_CLOSING;
		conn_destroy(c);
		return err_set(err, 1, "out of memory");
	}
	c->flags |= CONN_F_COUNTED;
	srv->total++;
	c->in_cb++;
	c->sess = srv->ops.open(c, srv->ctx);
	conn_leave(c);
	if (c->sess == NULL) {
		conn_close(c);
		return 0;
	}
	if (c->state == CONN_ST_OPEN)
		conn_update_read(c);
	return 0;
}

int conn_server_accept(struct conn_server *srv, int fd,
                       const struct sockaddr *sa, socklen_t salen, int flags,
                       struct err *err)
{
	if (evutil_make_socket_nonblocking(fd) < 0) {
		close(fd);
		return err_set(err, 1, "cannot make the socket non-blocking");
	}
	return conn_serve(srv, fd, sa, salen, flags, err);
}

static void conn_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                           struct sockaddr *sa, int salen, void *arg)
{
	struct conn_server *srv = arg;
	struct err err;
	int i, flags;

	for (i = 0; i < srv->nlis; i++)
		if (srv->lis[i] == l)
			break;
	flags = i < srv->nlis ? srv->lis_flags[i] : 0;
	if (conn_serve(srv, fd, sa, (socklen_t)salen, flags, &err) < 0)
		log_warn("%s: cannot serve a connection: %s",
		         srv->set.service, err.msg);
}

static void conn_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct conn_server *srv = arg;

	/* EMFILE and friends: say so; the listener goes on */
	log_warn("%s: accept: %s", srv->set.service,
	         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

int conn_server_listen(struct conn_server *srv, int fd, int flags,
                       struct err *err)
{
	struct evconnlistener *l;

	if ((flags & CONN_LISTEN_TLS) && srv->set.tls == NULL)
		return err_set(err, 0, "%s: implicit TLS needs a certificate",
		               srv->set.service);
	if (srv->nlis == CONN_MAX_LISTEN)
		return err_set(err, 0, "%s: too many listeners",
		               srv->set.service);
	l = evconnlistener_new(srv->base, conn_accept_cb, srv,
	                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	                       -1, fd);
	if (l == NULL)
		return err_set(err, 1, "%s: evconnlistener_new failed",
		               srv->set.service);
	evconnlistener_set_error_cb(l, conn_accept_error_cb);
	srv->lis[srv->nlis] = l;
	srv->lis_flags[srv->nlis++] = flags;
	return 0;
}

void conn_server_stop_listening(struct conn_server *srv)
{
	int i;

	for (i = 0; i < srv->nlis; i++)
		evconnlistener_free(srv->lis[i]);
	srv->nlis = 0;
}

struct conn_server *conn_server_new(struct event_base *base,
    const struct conn_settings *set, const struct conn_ops *ops, void *ctx,
    struct err *err)
{
	struct conn_server *srv;

	if (ops == NULL || ops->open == NULL || ops->input == NULL) {
		err_set(err, 0, "conn: open and input callbacks are needed");
		return NULL;
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	srv->base = base;
	srv->set = *set;
	srv->ops = *ops;
	srv->ctx = ctx;
	if (srv->set.service == NULL)
		srv->set.service = "conn";
	if (srv->set.read_hiwat == 0)
		srv->set.read_hiwat = 64 * 1024;
	if (srv->set.write_hiwat == 0)
		srv->set.write_hiwat = 256 * 1024;
	if (srv->set.linger_ms == 0)
		srv->set.linger_ms = 5000;
	return srv;
}

void conn_server_free(struct conn_server *srv)
{
	uint32_t i;
	unsigned b;

	if (srv == NULL)
		return;
	conn_server_stop_listening(srv);
	for (i = 0; i < srv->nslots; i++) {
		struct conn *c = srv->slots[i];

		if (c == NULL)
			continue;
		c->in_cb = 0;
		c->gone_code = 0;
		c->why = "server stopping";
		conn_destroy(c);
	}
	for (b = 0; b < CONN_ADDR_BUCKETS; b++)
		while (srv->addrs[b] != NULL) {
			struct conn_addr *e = srv->addrs[b];

			srv->addrs[b] = e->next;
			free(e);
		}
	free(srv->slots);
	free(srv->gens);
	free(srv->freelist);
	free(srv);
}
