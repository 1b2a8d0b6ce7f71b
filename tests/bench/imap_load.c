/* imap_load: the project's IMAP load generator. Mode "mix": N clients
 * (threads, blocking sockets, 127.0.0.1 only) run a mixed workload for D
 * seconds and the tool prints operations per second per command. Mode
 * "idle": open N logged-in connections, SELECT INBOX and IDLE in each,
 * print READY, hold them for D seconds. Plain IMAP (the server must allow
 * plaintext logins) so that the figures measure the server, not TLS. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum imap_load_op {
	OP_LOGIN, OP_LIST, OP_STATUS, OP_SELECT, OP_FETCH_HDR, OP_FETCH_BODY,
	OP_STORE, OP_SEARCH, OP_APPEND, OP_EXPUNGE, OP_LOGOUT, OP_N
};
static const char *const imap_load_names[OP_N] = {
	"LOGIN", "LIST", "STATUS", "SELECT", "FETCH-HDR", "FETCH-BODY",
	"STORE", "SEARCH", "APPEND", "EXPUNGE", "LOGOUT"
};

struct imap_load_conn {
	int fd;
	char *buf;
	size_t len, cap;
	unsigned tag;
};

struct imap_load_client {
	pthread_t th;
	int id;
	unsigned long count[OP_N];
	double usec[OP_N];
	unsigned long errors;
	unsigned seed;
};

static int imap_load_port = 143;
static int imap_load_users = 10;
static const char *imap_load_pass = "secret";
static const char *imap_load_domain = "example.test";
static volatile int imap_load_stop;

static double imap_load_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int imap_load_connect(struct imap_load_conn *c)
{
	struct sockaddr_in sin;
	int one = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)imap_load_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(c->fd);
		return -1;
	}
	c->len = 0;
	c->tag = 0;
	return 0;
}

static int imap_load_send(struct imap_load_conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int imap_load_fill(struct imap_load_conn *c)
{
	ssize_t r;

	if (c->len == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 65536;
		char *nb = realloc(c->buf, ncap);

		if (nb == NULL)
			return -1;
		c->buf = nb;
		c->cap = ncap;
	}
	do
		r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return -1;
	c->len += (size_t)r;
	return 0;
}

/* Read one response line; literals {n} inside it are read and skipped.
 * out gets the start of the line. */
static int imap_load_line(struct imap_load_conn *c, char *out, size_t max)
{
	size_t pos = 0, n;
	char *lf;

	for (;;) {
		lf = c->len > pos ? memchr(c->buf + pos, '\n', c->len - pos) :
			NULL;
		if (lf == NULL) {
			if (imap_load_fill(c) < 0)
				return -1;
			continue;
		}
		n = (size_t)(lf - c->buf) + 1;
		if (n - pos >= 4 && lf[-1] == '\r' && lf[-2] == '}') {
			char *br = lf - 2;
			size_t lit;

			while (br > c->buf + pos && br[-1] != '{')
				br--;
			lit = strtoul(br, NULL, 10);
			while (c->len < n + lit)
				if (imap_load_fill(c) < 0)
					return -1;
			pos = n + lit;
			continue;
		}
		if (out != NULL) {
			size_t k = n < max ? n : max - 1;

			memcpy(out, c->buf, k);
			out[k] = '\0';
		}
		memmove(c->buf, c->buf + n, c->len - n);
		c->len -= n;
		return 0;
	}
}

/* Send "tagN cmd", read to the tagged reply; 0 when OK. */
static int imap_load_cmd(struct imap_load_conn *c, const char *fmt, ...)
{
	char cmd[2048], line[512], tag[16];
	va_list ap;
	int n;

	snprintf(tag, sizeof(tag), "t%u", ++c->tag);
	n = snprintf(cmd, sizeof(cmd), "%s ", tag);
	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "\r\n");
	if (imap_load_send(c, cmd, (size_t)n) < 0)
		return -1;
	for (;;) {
		if (imap_load_line(c, line, sizeof(line)) < 0)
			return -1;
		if (strncmp(line, tag, strlen(tag)) == 0 &&
		    line[strlen(tag)] == ' ')
			return strncmp(line + strlen(tag) + 1, "OK", 2) == 0 ?
				0 : -1;
	}
}

static int imap_load_append(struct imap_load_conn *c, unsigned seed)
{
	char body[2048], cmd[128], line[512], tag[16];
	int n, m;

	n = snprintf(body, sizeof(body),
		     "From: Load <load@example.net>\r\nTo: user@%s\r\n"
		     "Subject: load test %u\r\nMessage-ID: <%u.%ld@load>\r\n\r\n"
		     "This is a message appended by imap_load.\r\n",
		     imap_load_domain, seed, seed, (long)time(NULL));
	snprintf(tag, sizeof(tag), "t%u", ++c->tag);
	m = snprintf(cmd, sizeof(cmd), "%s APPEND INBOX (\\Seen) {%d+}\r\n",
		     tag, n);
	if (imap_load_send(c, cmd, (size_t)m) < 0 ||
	    imap_load_send(c, body, (size_t)n) < 0 ||
	    imap_load_send(c, "\r\n", 2) < 0)
		return -1;
	for (;;) {
		if (imap_load_line(c, line, sizeof(line)) < 0)
			return -1;
		if (strncmp(line, tag, strlen(tag)) == 0)
			return strncmp(line + strlen(tag) + 1, "OK", 2) == 0 ?
				0 : -1;
	}
}

#define TIMED(cl, op, expr) do { \
	double t0_ = imap_load_now(); \
	int r_ = (expr); \
	(cl)->usec[op] += (imap_load_now() - t0_) * 1e6; \
	(cl)->count[op]++; \
	if (r_ < 0) (cl)->errors++; \
} while (0)

static void *imap_load_client_run(void *arg)
{
	struct imap_load_client *cl = arg;
	struct imap_load_conn *c = calloc(1, sizeof(*c));
	char user[128];
	int i, exists;

	snprintf(user, sizeof(user), "user%d@%s", cl->id % imap_load_users,
		 imap_load_domain);
	while (!imap_load_stop && c != NULL) {
		char greet[256];

		if (imap_load_connect(c) < 0 ||
		    imap_load_line(c, greet, sizeof(greet)) < 0) {
			cl->errors++;
			sleep(1);
			continue;
		}
		TIMED(cl, OP_LOGIN, imap_load_cmd(c, "LOGIN %s %s", user,
						 imap_load_pass));
		TIMED(cl, OP_LIST, imap_load_cmd(c, "LIST \"\" *"));
		TIMED(cl, OP_STATUS, imap_load_cmd(c,
			"STATUS INBOX (MESSAGES UNSEEN UIDNEXT)"));
		TIMED(cl, OP_SELECT, imap_load_cmd(c, "SELECT INBOX"));
		exists = 200;
		for (i = 0; i < 20 && !imap_load_stop; i++) {
			unsigned r = (unsigned)rand_r(&cl->seed);
			unsigned seq = 1 + r % (unsigned)exists;

			TIMED(cl, OP_FETCH_HDR, imap_load_cmd(c,
				"FETCH %u:%u (UID FLAGS RFC822.SIZE "
				"BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT "
				"DATE)])", seq, seq + 9 < (unsigned)exists ?
				seq + 9 : (unsigned)exists));
			TIMED(cl, OP_FETCH_BODY, imap_load_cmd(c,
				"FETCH %u (BODY[])", seq));
			TIMED(cl, OP_STORE, imap_load_cmd(c,
				"STORE %u %cFLAGS (\\Flagged)", seq,
				(r & 1) ? '+' : '-'));
			TIMED(cl, OP_SEARCH, imap_load_cmd(c, (r & 2) ?
				"SEARCH UNSEEN" : "SEARCH FROM \"alice\""));
			if (i % 5 == 0) {
				TIMED(cl, OP_APPEND, imap_load_append(c, r));
				TIMED(cl, OP_STORE, imap_load_cmd(c,
					"STORE %u +FLAGS.SILENT (\\Deleted)",
					(unsigned)exists + 1));
				TIMED(cl, OP_EXPUNGE, imap_load_cmd(c,
								   "EXPUNGE"));
			}
		}
		TIMED(cl, OP_LOGOUT, imap_load_cmd(c, "LOGOUT"));
		close(c->fd);
	}
	if (c != NULL)
		free(c->buf);
	free(c);
	return NULL;
}

static int imap_load_mix(int clients, int seconds)
{
	struct imap_load_client *cl = calloc((size_t)clients, sizeof(*cl));
	unsigned long total = 0, errors = 0;
	double t0, el;
	int i, op;

	if (cl == NULL)
		return 1;
	t0 = imap_load_now();
	for (i = 0; i < clients; i++) {
		cl[i].id = i;
		cl[i].seed = (unsigned)i * 7919u + 1;
		pthread_create(&cl[i].th, NULL, imap_load_client_run, &cl[i]);
	}
	sleep((unsigned)seconds);
	imap_load_stop = 1;
	for (i = 0; i < clients; i++)
		pthread_join(cl[i].th, NULL);
	el = imap_load_now() - t0;
	printf("%-12s %10s %10s %10s\n", "command", "count", "ops/s",
	       "avg ms");
	for (op = 0; op < OP_N; op++) {
		unsigned long n = 0;
		double us = 0;

		for (i = 0; i < clients; i++) {
			n += cl[i].count[op];
			us += cl[i].usec[op];
		}
		total += n;
		printf("%-12s %10lu %10.1f %10.2f\n", imap_load_names[op], n,
		       (double)n / el, n ? us / (double)n / 1000.0 : 0.0);
	}
	for (i = 0; i < clients; i++)
		errors += cl[i].errors;
	printf("%-12s %10lu %10.1f   (%d clients, %.1f s, %lu errors)\n",
	       "TOTAL", total, (double)total / el, clients, el, errors);
	free(cl);
	return errors > total / 100 ? 1 : 0;
}

static int imap_load_idle(int n, int seconds)
{
	struct imap_load_conn *c = calloc(1, sizeof(*c));
	char line[512], user[128];
	int *fds = calloc((size_t)n, sizeof(int));
	struct rlimit rl;
	int i, ok = 0;

	if (c == NULL || fds == NULL)
		return 1;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (i = 0; i < n; i++) {
		snprintf(user, sizeof(user), "user%d@%s", i % imap_load_users,
			 imap_load_domain);
		if (imap_load_connect(c) < 0 ||
		    imap_load_line(c, line, sizeof(line)) < 0 ||
		    imap_load_cmd(c, "LOGIN %s %s", user, imap_load_pass) < 0 ||
		    imap_load_cmd(c, "SELECT INBOX") < 0 ||
		    imap_load_send(c, "i IDLE\r\n", 8) < 0 ||
		    imap_load_line(c, line, sizeof(line)) < 0 ||
		    line[0] != '+') {
			fprintf(stderr, "imap_load: connection %d failed\n", i);
			break;
		}
		fds[i] = c->fd;
		ok++;
	}
	printf("READY %d\n", ok);
	fflush(stdout);
	sleep((unsigned)seconds);
	for (i = 0; i < ok; i++)
		close(fds[i]);
	free(fds);
	free(c->buf);
	free(c);
	return ok == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *mode = "mix";
	int clients = 10, seconds = 30, opt;

	while ((opt = getopt(argc, argv, "m:c:d:p:u:P:D:")) != -1) {
		switch (opt) {
		case 'm': mode = optarg; break;
		case 'c': clients = atoi(optarg); break;
		case 'd': seconds = atoi(optarg); break;
		case 'p': imap_load_port = atoi(optarg); break;
		case 'u': imap_load_users = atoi(optarg); break;
		case 'P': imap_load_pass = optarg; break;
		case 'D': imap_load_domain = optarg; break;
		default:
			fprintf(stderr, "usage: imap_load [-m mix|idle] [-c clients]"
				" [-d seconds] [-p port] [-u users] [-P pass]"
				" [-D domain]\n");
			return 2;
		}
	}
	if (clients < 1 || seconds < 1 || imap_load_users < 1)
		return 2;
	if (strcmp(mode, "idle") == 0)
		return imap_load_idle(clients, seconds);
	return imap_load_mix(clients, seconds);
}
