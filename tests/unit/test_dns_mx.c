/* Unit tests for shared/dns_mx: the reply parser over hand-built packets
 * (every prefix of a valid reply, pointer loops, bad lengths), and one
 * lookup against a small DNS server in a thread whose TCP reply is larger
 * than the old 8 KiB answer buffer. Each parse gets a heap copy of
 * exactly its length, so ASan sees any read past the end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns_mx.h"

#define T_A 1
#define T_CNAME 5
#define T_MX 15
#define T_AAAA 28

struct pkt {
	unsigned char b[DNS_MX_MSG_MAX];
	size_t n;
};

static void put8(struct pkt *p, unsigned v)
{
	p->b[p->n++] = (unsigned char)v;
}

static void put16(struct pkt *p, unsigned v)
{
	put8(p, v >> 8 & 0xff);
	put8(p, v & 0xff);
}

static void put_bytes(struct pkt *p, const void *v, size_t n)
{
	memcpy(p->b + p->n, v, n);
	p->n += n;
}

/* "a.b.c" uncompressed, with the root label. */
static void put_name(struct pkt *p, const char *name)
{
	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		put8(p, (unsigned)l);
		put_bytes(p, name, l);
		name += l + (dot ? 1 : 0);
	}
	put8(p, 0);
}

static void put_ptr(struct pkt *p, unsigned off)
{
	put16(p, 0xc000 | off);
}

/* Header and the question "example.test" (at offset 12) of qtype. */
static void put_head(struct pkt *p, unsigned flags, unsigned an, int qtype)
{
	p->n = 0;
	put16(p, 0x1234);
	put16(p, flags);
	put16(p, 1);
	put16(p, an);
	put16(p, 0);
	put16(p, 0);
	put_name(p, "example.test");
	put16(p, (unsigned)qtype);
	put16(p, 1);
}

/* Owner (a pointer to the question), type, class IN, TTL; the caller
 * writes rdlength and rdata. */
static void put_rr(struct pkt *p, int type)
{
	put_ptr(p, 12);
	put16(p, (unsigned)type);
	put16(p, 1);
	put16(p, 0);
	put16(p, 300);
}

/* Sets the rdlength written at off to what follows it. */
static void fix_rdlen(struct pkt *p, size_t off)
{
	size_t n = p->n - off - 2;

	p->b[off] = (unsigned char)(n >> 8);
	p->b[off + 1] = (unsigned char)n;
}

static void put_mx(struct pkt *p, unsigned pref, const char *host)
{
	size_t at;

	put_rr(p, T_MX);
	at = p->n;
	put16(p, 0);
	put16(p, pref);
	put_name(p, host);
	fix_rdlen(p, at);
}

static int parse(const struct pkt *p, size_t len, int qtype,
		 struct dns_mx_host *h, struct sockaddr_storage *a, size_t max)
{
	unsigned char *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, p->b, len);
	rc = dns_mx_parse(copy, len, qtype, h, a, 25, max);
	free(copy);
	return rc;
}

/* Two MX records, one target compressed against the question; a CNAME
 * on the way is skipped. */
static void build_mx(struct pkt *p)
{
	size_t at;

	put_head(p, 0x8180, 3, T_MX);
	put_rr(p, T_CNAME);
	put16(p, 2);
	put_ptr(p, 12);
	put_rr(p, T_MX);
	at = p->n;
	put16(p, 0);
	put16(p, 20);
	put8(p, 3);
	put_bytes(p, "mx2", 3);
	put_ptr(p, 12);
	fix_rdlen(p, at);
	put_mx(p, 10, "mx1.example.test");
}

static void test_mx_valid(void **st)
{
	struct pkt p;
	struct dns_mx_host h[4];

	build_mx(&p);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 4), 2);
	assert_string_equal(h[0].name, "mx2.example.test");
	assert_int_equal(h[0].pref, 20);
	assert_string_equal(h[1].name, "mx1.example.test");
	assert_int_equal(h[1].pref, 10);
}

static void test_null_mx(void **st)
{
	struct pkt p;
	struct dns_mx_host h[2];

	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 0, "");
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), 1);
	assert_string_equal(h[0].name, "");
	assert_int_equal(h[0].pref, 0);
}

static void build_a(struct pkt *p, int qtype)
{
	static const unsigned char a4[4] = { 192, 0, 2, 1 };
	unsigned char a6[16];

	inet_pton(AF_INET6, "2001:db8::1", a6);
	put_head(p, 0x8180, 2, qtype);
	put_rr(p, T_CNAME);
	put16(p, 6);
	put8(p, 3);
	put_bytes(p, "www", 3);
	put_ptr(p, 12);
	put_rr(p, qtype);
	put16(p, qtype == T_A ? 4 : 16);
	if (qtype == T_A)
		put_bytes(p, a4, 4);
	else
		put_bytes(p, a6, 16);
}

static void test_a_and_aaaa(void **st)
{
	struct pkt p;
	struct sockaddr_storage a[2];
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a[0];
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a[0];
	char text[64];

	build_a(&p, T_A);
	assert_int_equal(parse(&p, p.n, T_A, NULL, a, 2), 1);
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 25);
	inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
	assert_string_equal(text, "192.0.2.1");
	build_a(&p, T_AAAA);
	assert_int_equal(parse(&p, p.n, T_AAAA, NULL, a, 2), 1);
	assert_int_equal(s6->sin6_family, AF_INET6);
	inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof(text));
	assert_string_equal(text, "2001:db8::1");
	/* no room: validated, nothing written */
	assert_int_equal(parse(&p, p.n, T_AAAA, NULL, a, 0), 0);
	/* an A record that is not 4 octets */
	build_a(&p, T_A);
	p.b[p.n - 5] = 5;
	put8(&p, 0);
	assert_int_equal(parse(&p, p.n, T_A, NULL, a, 2), DNS_MX_BAD);
}

/* Every prefix of a whole reply is an error, never a read past it (ASan)
 * and never a partial answer; the whole reply parses. */
static void test_every_prefix(void **st)
{
	struct pkt p;
	struct dns_mx_host h[4];
	struct sockaddr_storage a[2];
	size_t k;

	build_mx(&p);
	for (k = 0; k < p.n; k++)
		assert_int_equal(parse(&p, k, T_MX, h, NULL, 4), DNS_MX_BAD);
	assert_int_equal(parse(&p, k, T_MX, h, NULL, 4), 2);
	build_a(&p, T_AAAA);
	for (k = 0; k < p.n; k++)
		assert_int_equal(parse(&p, k, T_AAAA, NULL, a, 2), DNS_MX_BAD);
	assert_int_equal(parse(&p, k, T_AAAA, NULL, a, 2), 1);
}

static void test_pointer_loops(void **st)
{
	struct pkt p;
	struct dns_mx_host h[2];
	size_t self;

	/* an owner name that points at itself */
	put_head(&p, 0x8180, 1, T_MX);
	self = p.n;
	put_mx(&p, 10, "mx.example.test");
	p.b[self] = (unsigned char)(0xc0 | self >> 8);
	p.b[self + 1] = (unsigned char)self;
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* an exchange of a label, then a pointer back to that label */
	put_head(&p, 0x8180, 1, T_MX);
	put_rr(&p, T_MX);
	put16(&p, 6);
	put16(&p, 10);
	self = p.n;
	put8(&p, 1);
	put8(&p, 'a');
	put_ptr(&p, (unsigned)self);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* two names pointing at each other: the second points forward */
	put_head(&p, 0x8180, 1, T_MX);
	put_rr(&p, T_MX);
	put16(&p, 6);
	put16(&p, 10);
	self = p.n;
	put_ptr(&p, (unsigned)self + 2);
	put_ptr(&p, (unsigned)self);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
}

static void test_pointer_out_of_range(void **st)
{
	struct pkt p;
	struct dns_mx_host h[2];

	/* past the end of the message */
	put_head(&p, 0x8180, 1, T_MX);
	put_rr(&p, T_MX);
	put16(&p, 4);
	put16(&p, 10);
	put_ptr(&p, 0x3fff);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* into the header */
	p.n -= 2;
	put_ptr(&p, 4);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* half a pointer at the very end */
	put_head(&p, 0x8180, 1, T_MX);
	put_rr(&p, T_MX);
	put16(&p, 3);
	put16(&p, 10);
	put8(&p, 0xc0);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
}

static void test_label_and_name_limits(void **st)
{
	struct pkt p;
	struct dns_mx_host h[2];
	char name[400], *o;
	int i;

	/* 63 octets is a label; 64 (0x40: an extended label type) is not */
	memset(name, 'a', 63);
	strcpy(name + 63, ".example");
	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 10, name);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), 1);
	assert_string_equal(h[0].name, name);
	memset(name, 'a', 64);
	strcpy(name + 64, ".example");
	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 10, name);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* 255 octets in wire form is a name (253 as text); 257 is not */
	for (o = name, i = 0; i < 3; i++, o += 64) {
		memset(o, 'b', 63);
		o[63] = '.';
	}
	memset(o, 'c', 61);
	o[61] = '\0';
	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 10, name);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), 1);
	assert_int_equal(strlen(h[0].name), 253);
	memset(o, 'c', 63);
	o[63] = '\0';
	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 10, name);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* too long only once a pointer is followed: labels ahead of
	 * "example.test" (14 octets), 192 octets then 243 */
	put_head(&p, 0x8180, 1, T_MX);
	put_rr(&p, T_MX);
	put16(&p, 2 + 3 * 64 + 2);
	put16(&p, 10);
	for (i = 0; i < 3; i++) {
		put8(&p, 63);
		memset(p.b + p.n, 'd', 63);
		p.n += 63;
	}
	put_ptr(&p, 12);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), 1);
	put_head(&p, 0x8180, 1, T_MX);
	put_rr(&p, T_MX);
	put16(&p, 2 + 3 * 64 + 51 + 2);
	put16(&p, 10);
	for (i = 0; i < 4; i++) {
		put8(&p, i < 3 ? 63 : 50);
		memset(p.b + p.n, 'd', i < 3 ? 63 : 50);
		p.n += i < 3 ? 63 : 50;
	}
	put_ptr(&p, 12);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
}

static void test_rdlength_checked(void **st)
{
	struct pkt p;
	struct dns_mx_host h[2];

	/* rdlength past the end */
	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 10, "mx.example.test");
	p.b[p.n - 21] = 0x01;
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* an exchange that runs past its rdata */
	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 10, "mx.example.test");
	p.b[p.n - 20] -= 4;
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* rdata longer than the exchange */
	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 10, "mx.example.test");
	p.b[p.n - 20] += 1;
	put8(&p, 0);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	/* no room for the preference */
	put_head(&p, 0x8180, 1, T_MX);
	put_rr(&p, T_MX);
	put16(&p, 1);
	put8(&p, 0);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
}

static void test_answer_counts(void **st)
{
	struct pkt p;
	struct dns_mx_host h[4];
	char name[32];
	int i, seen[40] = { 0 };

	/* more answers claimed than the message holds */
	put_head(&p, 0x8180, 65535, T_MX);
	put_mx(&p, 10, "mx.example.test");
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 4), DNS_MX_BAD);
	put_head(&p, 0x8180, 2, T_MX);
	put_mx(&p, 10, "mx.example.test");
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 4), DNS_MX_BAD);
	/* more than max: the best preferences are kept */
	put_head(&p, 0x8180, 40, T_MX);
	for (i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "mx%d.example.test", i);
		put_mx(&p, (unsigned)(100 + (i * 7) % 40), name);
	}
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 4), 4);
	for (i = 0; i < 4; i++) {
		assert_in_range(h[i].pref, 100, 103);
		assert_int_equal(seen[h[i].pref - 100]++, 0);
	}
	/* not a question and its answers */
	put_head(&p, 0x8180, 1, T_MX);
	put_mx(&p, 10, "mx.example.test");
	p.b[5] = 2;
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 4), DNS_MX_BAD);
}

static void test_header_flags(void **st)
{
	struct pkt p;
	struct dns_mx_host h[2];

	build_mx(&p);
	p.b[2] |= 0x02;   /* TC */
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_TRUNCATED);
	build_mx(&p);
	p.b[2] &= 0x7f;   /* a query, not a response */
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	build_mx(&p);
	p.b[3] |= 0x02;   /* SERVFAIL */
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	build_mx(&p);
	assert_int_equal(parse(&p, p.n, 99, h, NULL, 2), DNS_MX_BAD);
}

static void test_exchange_not_a_host_name(void **st)
{
	struct pkt p;
	struct dns_mx_host h[2];
	static const char *const bad[] = { "a.b", "a b", "a\nb" };

	for (size_t i = 0; i < 3; i++) {
		size_t at;

		put_head(&p, 0x8180, 1, T_MX);
		put_rr(&p, T_MX);
		at = p.n;
		put16(&p, 0);
		put16(&p, 10);
		put8(&p, 3);
		put_bytes(&p, bad[i], 3);
		put_ptr(&p, 12);
		fix_rdlen(&p, at);
		assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
	}
	put_head(&p, 0x8180, 1, T_MX);
	put_rr(&p, T_MX);
	put16(&p, 6);
	put16(&p, 10);
	put8(&p, 2);
	put8(&p, 'a');
	put8(&p, 0);
	put8(&p, 0);
	assert_int_equal(parse(&p, p.n, T_MX, h, NULL, 2), DNS_MX_BAD);
}

/* ---- a lookup whose reply is larger than 8 KiB, over TCP ------------- */

#define BIG_RECORDS 50

struct srv {
	int udp, tcp, port;
	volatile int stop;
	pthread_t th;
};

/* Header plus question of a query, or 0. */
static size_t srv_qlen(const unsigned char *q, size_t n)
{
	size_t off = 12;

	while (off < n && q[off] != 0)
		off += (size_t)q[off] + 1;
	return off + 5 <= n ? off + 5 : 0;
}

/* Over UDP: header and question, TC set, so the resolver asks again over
 * TCP (RFC 7766 §5). */
static void srv_udp(struct srv *s)
{
	unsigned char q[1500];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n = recvfrom(s->udp, q, sizeof(q), 0,
			     (struct sockaddr *)&from, &fl);
	size_t ql;

	if (n < 12 || (ql = srv_qlen(q, (size_t)n)) == 0)
		return;
	q[2] = (unsigned char)(0x80 | 0x02 | (q[2] & 0x01));
	q[3] = 0x80;
	memset(q + 6, 0, 6);
	(void)sendto(s->udp, q, ql, 0, (struct sockaddr *)&from, fl);
}

static int srv_read(int fd, unsigned char *b, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, b, n);

		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Over TCP: BIG_RECORDS MX records with 254-octet exchanges, the best
 * preference last, some 13 KB in all (the message starts after the
 * 2-octet length, RFC 1035 §4.2.2; pointers count from the message). */
static void srv_tcp(struct srv *s)
{
	static struct pkt p;
	unsigned char q[512], lb[2];
	char name[300];
	size_t ql, n, off;
	int fd = accept(s->tcp, NULL, NULL), i;
	struct timeval tv = { 5, 0 };

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (srv_read(fd, lb, 2) < 0 || (n = (size_t)lb[0] << 8 | lb[1]) >
	    sizeof(q) || srv_read(fd, q, n) < 0 || (ql = srv_qlen(q, n)) == 0) {
		close(fd);
		return;
	}
	p.n = 2;
	put_bytes(&p, q, ql);
	p.b[4] = (unsigned char)(0x80 | (q[2] & 0x01));
	p.b[5] = 0x80;
	p.b[8] = BIG_RECORDS >> 8;
	p.b[9] = BIG_RECORDS & 0xff;
	memset(p.b + 10, 0, 4);
	for (i = 0; i < BIG_RECORDS; i++) {
		/* "mxNNN", 3 x 63 octets, 54: 254 octets in wire form */
		snprintf(name, sizeof(name), "mx%03d.", i);
		memset(name + 6, 'a', 63 * 3 + 3 + 54);
		name[6 + 63] = name[6 + 127] = name[6 + 191] = '.';
		name[6 + 63 * 3 + 3 + 54] = '\0';
		put_mx(&p, (unsigned)(1000 - i), name);
	}
	n = p.n - 2;
	p.b[0] = (unsigned char)(n >> 8);
	p.b[1] = (unsigned char)n;
	for (off = 0; off < p.n; ) {
		ssize_t w = write(fd, p.b + off, p.n - off);

		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(fd);
}

static void *srv_run(void *arg)
{
	struct srv *s = arg;

	while (!s->stop) {
		struct pollfd pf[2] = { { s->udp, POLLIN, 0 },
					{ s->tcp, POLLIN, 0 } };

		if (poll(pf, 2, 100) <= 0)
			continue;
		if (pf[0].revents & POLLIN)
			srv_udp(s);
		if (pf[1].revents & POLLIN)
			srv_tcp(s);
	}
	return NULL;
}

static int srv_start(struct srv *s)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int one = 1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->udp = socket(AF_INET, SOCK_DGRAM, 0);
	if (s->udp < 0 || bind(s->udp, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(s->udp, (struct sockaddr *)&sin, &sl) < 0)
		return -1;
	s->port = ntohs(sin.sin_port);
	s->tcp = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(s->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s->tcp < 0 || bind(s->tcp, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(s->tcp, 4) < 0)
		return -1;
	s->stop = 0;
	return pthread_create(&s->th, NULL, srv_run, s) == 0 ? 0 : -1;
}

static void srv_stop(struct srv *s)
{
	s->stop = 1;
	pthread_join(s->th, NULL);
	close(s->udp);
	close(s->tcp);
}

/* The regression of issue #9: res_nquery returns the reply's full length
 * when it cut the reply to fit the answer buffer; the parser then read
 * the stack past the buffer. Now the whole reply is read and the best
 * preferences come back. */
static void test_lookup_reply_larger_than_8k(void **st)
{
	struct srv s;
	struct dns_mx_host *h = NULL;
	size_t n = 0;
	struct err err;
	char resolver[32];

	if (srv_start(&s) < 0)
		skip();
	snprintf(resolver, sizeof(resolver), "127.0.0.1:%d", s.port);
	assert_int_equal(dns_mx_lookup("big.example.test", resolver, &h, &n,
				       &err), 0);
	srv_stop(&s);
	assert_int_equal(n, 32);
	assert_int_equal(h[0].pref, 1000 - (BIG_RECORDS - 1));
	assert_memory_equal(h[0].name, "mx049.", 6);
	assert_int_equal(strlen(h[0].name), 252);
	assert_int_equal(h[31].pref, 1000 - (BIG_RECORDS - 32));
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mx_valid),
		cmocka_unit_test(test_null_mx),
		cmocka_unit_test(test_a_and_aaaa),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_pointer_loops),
		cmocka_unit_test(test_pointer_out_of_range),
		cmocka_unit_test(test_label_and_name_limits),
		cmocka_unit_test(test_rdlength_checked),
		cmocka_unit_test(test_answer_counts),
		cmocka_unit_test(test_header_flags),
		cmocka_unit_test(test_exchange_not_a_host_name),
		cmocka_unit_test(test_lookup_reply_larger_than_8k),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
