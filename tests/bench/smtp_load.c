/* smtp_load: SMTP load generator for the benchmarks. Keeps C sessions
 * open at once, each sending one message over its own connection
 * (EHLO; MAIL, RCPT, DATA pipelined; body; QUIT), until N messages were
 * tried; prints messages per second accepted with 250. With -i it opens
 * idle sessions instead (greeting + EHLO, then nothing) and holds them,
 * for measuring the server's memory per idle session. With -D it opens
 * sessions that each send a message of -s bytes but not its final dot
 * and hold there: the server's memory per concurrent DATA session.
 *
 *   smtp_load -p PORT [-H 127.0.0.1] [-n 20000] [-c 20] [-s 4096]
 *             [-f from@example.net] [-t rcpt@demo.test]
 *   smtp_load -p PORT -i 1000 [-w SECONDS]      (idle sessions)
 *   smtp_load -p PORT -D 200 -s 1048576 [-w SECONDS]  (DATA sessions) */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

enum smtp_load_state {
	SMTP_LOAD_GREET, SMTP_LOAD_EHLO, SMTP_LOAD_ENV, SMTP_LOAD_BODY,
	SMTP_LOAD_QUIT, SMTP_LOAD_IDLE, SMTP_LOAD_HELD,
};

struct smtp_load {
	struct event_base *base;
	struct sockaddr_in sin;
	long total, started, done, ok, failed, active, idle_ready;
	long concurrency, idle, held;
	const char *from, *rcpt;
	char *body;
	size_t body_len;
	struct timespec t0;
	struct event *hold;
};

struct smtp_load_sess {
	struct smtp_load *L;
	struct bufferevent *bev;
	enum smtp_load_state state;
	int want;                     /* replies still expected in this step */
	int bad;
};

static double smtp_load_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void smtp_load_start(struct smtp_load *L);
static void smtp_load_read(struct bufferevent *bev, void *arg);
static void smtp_load_event(struct bufferevent *bev, short what, void *arg);

/* -D: the body (without its dot) is all written: one more held session. */
static void smtp_load_written(struct bufferevent *bev, void *arg)
{
	struct smtp_load_sess *s = arg;

	if (s->state != SMTP_LOAD_HELD || s->want == 0)
		return;
	s->want = 0;
	s->L->idle_ready++;
}

static void smtp_load_end(struct smtp_load_sess *s, int ok)
{
	struct smtp_load *L = s->L;
	struct linger lg = { 1, 0 };
	evutil_socket_t fd = bufferevent_getfd(s->bev);

	/* RST instead of TIME_WAIT: tens of thousands of connections */
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	bufferevent_free(s->bev);
	free(s);
	L->active--;
	L->done++;
	if (ok)
		L->ok++;
	else
		L->failed++;
	if (L->started < L->total)
		smtp_load_start(L);
	else if (L->active == 0)
		event_base_loopexit(L->base, NULL);
}

/* One reply line arrived; returns its code when it is the last line of a
 * reply, 0 for a continuation line. */
static int smtp_load_code(const char *line)
{
	if (strlen(line) < 3)
		return -1;
	if (line[3] == '-')
		return 0;
	return atoi(line);
}

/* Returns 1 when the session ended (and s is freed). */
static int smtp_load_step(struct smtp_load_sess *s, int code)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	struct smtp_load *L = s->L;

	switch (s->state) {
	case SMTP_LOAD_GREET:
		if (code != 220)
			s->bad = 1;
		evbuffer_add_printf(out, "EHLO load.example\r\n");
		s->state = SMTP_LOAD_EHLO;
		s->want = 1;
		return 0;
	case SMTP_LOAD_EHLO:
		if (L->idle > 0 && L->held == 0) {
			s->state = SMTP_LOAD_IDLE;
			L->idle_ready++;
			return 0;
		}
		evbuffer_add_printf(out, "MAIL FROM:<%s> SIZE=%zu\r\n"
		                    "RCPT TO:<%s>\r\nDATA\r\n", L->from,
		                    L->body_len, L->rcpt);
		s->state = SMTP_LOAD_ENV;
		s->want = 3;
		return 0;
	case SMTP_LOAD_ENV:
		if ((s->want == 3 || s->want == 2) && code != 250)
			s->bad = 1;
		if (--s->want > 0)
			return 0;
		if (code != 354 || s->bad) {
			smtp_load_end(s, 0);
			return 1;
		}
		if (L->held > 0) {
			/* everything but the final ".<CRLF>" */
			evbuffer_add_reference(out, L->body, L->body_len - 3,
			                       NULL, NULL);
			s->state = SMTP_LOAD_HELD;
			s->want = 1;
			bufferevent_setcb(s->bev, smtp_load_read,
			                  smtp_load_written, smtp_load_event, s);
			return 0;
		}
		evbuffer_add(out, L->body, L->body_len);
		s->state = SMTP_LOAD_BODY;
		s->want = 1;
		return 0;
	case SMTP_LOAD_BODY:
		s->bad = code != 250;
		evbuffer_add_printf(out, "QUIT\r\n");
		s->state = SMTP_LOAD_QUIT;
		return 0;
	case SMTP_LOAD_QUIT:
		smtp_load_end(s, !s->bad);
		return 1;
	case SMTP_LOAD_IDLE:
	case SMTP_LOAD_HELD:
		return 0;
	}
	return 0;
}

static void smtp_load_read(struct bufferevent *bev, void *arg)
{
	struct smtp_load_sess *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t n;

	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
		int code = smtp_load_code(line);

		free(line);
		if (code != 0 && smtp_load_step(s, code))
			return;   /* s is freed */
	}
}

static void smtp_load_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_load_sess *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;

		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
		           &one, sizeof(one));
		return;
	}
	smtp_load_end(s, 0);
}

static void smtp_load_start(struct smtp_load *L)
{
	struct smtp_load_sess *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return;
	s->L = L;
	s->state = SMTP_LOAD_GREET;
	s->bev = bufferevent_socket_new(L->base, -1, BEV_OPT_CLOSE_ON_FREE);
	L->started++;
	L->active++;
	bufferevent_setcb(s->bev, smtp_load_read, NULL, smtp_load_event, s);
	bufferevent_set_max_single_write(s->bev, 256 * 1024);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&L->sin,
	                               sizeof(L->sin)) < 0)
		smtp_load_end(s, 0);
}

/* A message of about size bytes: headers, then 76-character lines. */
static void smtp_load_body(struct smtp_load *L, size_t size)
{
	size_t cap = size + 256, o;
	char *b = malloc(cap);
	long line = 0;

	o = (size_t)snprintf(b, cap, "From: <%s>\r\nTo: <%s>\r\n"
	                     "Subject: load test\r\n\r\n", L->from, L->rcpt);
	while (o + 80 < size) {
		size_t i;

		for (i = 0; i < 76; i++)
			b[o++] = (char)('A' + (line + (long)i) % 26);
		b[o++] = '\r';
		b[o++] = '\n';
		line++;
	}
	memcpy(b + o, ".\r\n", 3);
	L->body = b;
	L->body_len = o + 3;
}

static void smtp_load_hold_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_load *L = arg;

	event_base_loopexit(L->base, NULL);
}

static void smtp_load_idle_check(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_load *L = arg;
	static int printed;

	if (!printed && L->idle_ready + L->failed >= L->idle) {
		printf("%s sessions ready: %ld (failed %ld)\n",
		       L->held > 0 ? "data" : "idle", L->idle_ready, L->failed);
		fflush(stdout);
		printed = 1;
	}
}

static void smtp_load_usage(void)
{
	fprintf(stderr, "usage: smtp_load -p PORT [-H host] [-n total] "
	        "[-c concurrency] [-s size] [-f from] [-t rcpt] "
	        "[-i idle -w seconds] [-D data-sessions -w seconds]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct smtp_load L;
	const char *host = "127.0.0.1";
	long port = 0, size = 4096, wait_s = 10, i;
	double t0, dt;
	int c;

	L.total = 20000;
	L.concurrency = 20;
	L.from = "load@example.net";
	L.rcpt = "alice@demo.test";
	while ((c = getopt(argc, argv, "H:p:n:c:s:f:t:i:w:D:")) != -1) {
		switch (c) {
		case 'H': host = optarg; break;
		case 'p': port = strtol(optarg, NULL, 10); break;
		case 'n': L.total = strtol(optarg, NULL, 10); break;
		case 'c': L.concurrency = strtol(optarg, NULL, 10); break;
		case 's': size = strtol(optarg, NULL, 10); break;
		case 'f': L.from = optarg; break;
		case 't': L.rcpt = optarg; break;
		case 'i': L.idle = strtol(optarg, NULL, 10); break;
		case 'w': wait_s = strtol(optarg, NULL, 10); break;
		case 'D': L.held = strtol(optarg, NULL, 10); break;
		default: smtp_load_usage();
		}
	}
	if (port <= 0 || port > 65535 || L.concurrency <= 0 || size < 100)
		smtp_load_usage();
	L.sin.sin_family = AF_INET;
	L.sin.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &L.sin.sin_addr) != 1)
		smtp_load_usage();
	L.base = event_base_new();
	smtp_load_body(&L, (size_t)size);
	if (L.held > 0)
		L.idle = L.held;
	if (L.idle > 0) {
		struct timeval tv = { wait_s, 0 }, tick = { 0, 100000 };
		struct event *ck = event_new(L.base, -1, EV_PERSIST,
		                             smtp_load_idle_check, &L);

		L.total = L.idle;
		for (i = 0; i < L.idle; i++)
			smtp_load_start(&L);
		event_add(ck, &tick);
		L.hold = evtimer_new(L.base, smtp_load_hold_done, &L);
		evtimer_add(L.hold, &tv);
		event_base_dispatch(L.base);
		printf("%s sessions held: %ld\n", L.held > 0 ? "data" : "idle",
		       L.idle_ready);
		return L.idle_ready == L.idle ? 0 : 1;
	}
	t0 = smtp_load_now();
	for (i = 0; i < L.concurrency && L.started < L.total; i++)
		smtp_load_start(&L);
	event_base_dispatch(L.base);
	dt = smtp_load_now() - t0;
	printf("messages: %ld accepted, %ld failed, %ld sessions, %ld bytes "
	       "each, %.2f s, %.0f msg/s\n", L.ok, L.failed, L.concurrency,
	       (long)L.body_len, dt, L.ok / dt);
	free(L.body);
	event_base_free(L.base);
	return L.failed == 0 ? 0 : 1;
}
