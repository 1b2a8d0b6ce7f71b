/* dns_mx: resolver calls for the SMTP client, on worker threads. Each
 * call has its own res_state, so threads never share resolver state. The
 * answer parser is our own code over (buffer, length), not dn_expand: a
 * reply comes from whoever runs DNS for a recipient domain, so every
 * offset and compression pointer in it is checked here, and the length
 * res_nquery reports is never trusted past the buffer it filled. */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "dns_mx.h"

#define DNS_MX_MAX 32
#define DNS_MX_HDR 12          /* RFC 1035 §4.1.1 */
#define DNS_MX_RR_FIXED 10     /* type, class, ttl, rdlength (§4.1.3) */
#define DNS_MX_RR_MIN 11       /* the root name plus the fixed part */
#define DNS_MX_FLAG_QR 0x8000
#define DNS_MX_FLAG_TC 0x0200
#define DNS_MX_RCODE 0x000f

static unsigned dns_mx_get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* RFC 5321 §2.3.5: a host name in SMTP is letters, digits and hyphens
 * ('_' is let through, as resolvers do); anything else in an MX target
 * (a '.', NUL or space inside a label) would change the name's meaning
 * once it is text. */
static int dns_mx_host_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The name at off (RFC 1035 §3.1, §4.1.4): labels of at most 63 octets,
 * 255 octets in all counting the length octets, ending in the root label
 * or a pointer. A pointer must point before the name it continues (to a
 * prior occurrence), so each jump goes strictly backwards and a chain of
 * pointers cannot loop. *end_r: the offset just after the name where it
 * is written (after its first pointer). text (NULL, or
 * DNS_MX_NAME_MAX + 1 bytes): the dotted name, host name characters
 * only. 0 or -1. */
static int dns_mx_name(const unsigned char *msg, size_t len, size_t off,
    char *text, size_t *end_r)
{
	size_t pos = off, floor = off, wire = 0, t = 0, to, i;
	int jumped = 0;
	unsigned c;

	for (;;) {
		if (pos >= len)
			return -1;
		c = msg[pos];
		if ((c & 0xc0) == 0xc0) {
			if (len - pos < 2)
				return -1;
			to = (size_t)(c & 0x3f) << 8 | msg[pos + 1];
			if (to < DNS_MX_HDR || to >= floor)
				return -1;
			if (!jumped)
				*end_r = pos + 2;
			jumped = 1;
			pos = floor = to;
			continue;
		}
		/* 0x40 and 0x80: extended label types (RFC 6891 §5), none
		 * of which may appear in these names. */
		if (c > DNS_MX_LABEL_MAX)
			return -1;
		wire += c + 1;
		if (wire > DNS_MX_NAME_MAX)
			return -1;
		if (c == 0)
			break;
		if (len - pos - 1 < c)
			return -1;
		if (text != NULL) {
			if (t > 0)
				text[t++] = '.';
			for (i = 0; i < c; i++) {
				if (!dns_mx_host_char(msg[pos + 1 + i]))
					return -1;
				text[t++] = (char)msg[pos + 1 + i];
			}
		}
		pos += 1 + c;
	}
	if (!jumped)
		*end_r = pos + 1;
	if (text != NULL)
		text[t] = '\0';
	return 0;
}

/* Keep the max best preferences (RFC 5321 §5.1: lower is better), in
 * whatever order; dns_mx_lookup sorts. */
static void dns_mx_keep(struct dns_mx_host *hosts, size_t max, size_t *n,
    int pref, const char *name)
{
	size_t i, worst = 0;

	if (*n < max) {
		worst = (*n)++;
	} else {
		for (i = 1; i < max; i++)
			if (hosts[i].pref > hosts[worst].pref)
				worst = i;
		if (max == 0 || pref >= hosts[worst].pref)
			return;
	}
	hosts[worst].pref = pref;
	memcpy(hosts[worst].name, name, strlen(name) + 1);
}

static void dns_mx_addr(struct sockaddr_storage *out, int qtype,
    const unsigned char *rdata, int port)
{
	memset(out, 0, sizeof(*out));
	if (qtype == ns_t_a) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		memcpy(&sin->sin_addr, rdata, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		memcpy(&s6->sin6_addr, rdata, 16);
	}
}

/* One answer record of the type asked, rdata at msg[off..end). */
static int dns_mx_rdata(const unsigned char *msg, size_t len, size_t off,
    size_t end, int qtype, struct dns_mx_host *hosts,
    struct sockaddr_storage *addrs, int port, size_t max, size_t *n)
{
	char name[DNS_MX_NAME_MAX + 1];
	size_t after;

	if (qtype == ns_t_mx) {
		/* RFC 1035 §3.3.9: PREFERENCE, then EXCHANGE, which must end
		 * where the rdata ends. */
		if (end - off < 3 ||
		    dns_mx_name(msg, len, off + 2, name, &after) < 0 ||
		    after != end)
			return -1;
		if (hosts != NULL)
			dns_mx_keep(hosts, max, n, (int)dns_mx_get16(msg + off),
			    name);
		return 0;
	}
	if (end - off != (qtype == ns_t_a ? 4u : 16u))
		return -1;
	if (addrs != NULL && *n < max)
		dns_mx_addr(&addrs[(*n)++], qtype, msg + off, port);
	return 0;
}

int dns_mx_parse(const unsigned char *msg, size_t len, int qtype,
    struct dns_mx_host *hosts, struct sockaddr_storage *addrs, int port,
    size_t max)
{
	unsigned flags, qd, an, i;
	size_t off, end, rdlen, n = 0;

	if (len < DNS_MX_HDR || len > DNS_MX_MSG_MAX ||
	    (qtype != ns_t_mx && qtype != ns_t_a && qtype != ns_t_aaaa))
		return DNS_MX_BAD;
	flags = dns_mx_get16(msg + 2);
	qd = dns_mx_get16(msg + 4);
	an = dns_mx_get16(msg + 6);
	if (!(flags & DNS_MX_FLAG_QR) || (flags & DNS_MX_RCODE) != 0)
		return DNS_MX_BAD;
	/* RFC 1035 §4.1.1, RFC 2181 §9: a truncated answer section is not
	 * to be used as if it were whole. */
	if (flags & DNS_MX_FLAG_TC)
		return DNS_MX_TRUNCATED;
	/* A reply to our one question; and no more records than the bytes
	 * could hold, so a forged count costs nothing. */
	if (qd != 1 || an > (len - DNS_MX_HDR) / DNS_MX_RR_MIN)
		return DNS_MX_BAD;
	if (dns_mx_name(msg, len, DNS_MX_HDR, NULL, &end) < 0 ||
	    len - end < 4)
		return DNS_MX_BAD;
	off = end + 4;
	for (i = 0; i < an; i++) {
		if (dns_mx_name(msg, len, off, NULL, &end) < 0 ||
		    len - end < DNS_MX_RR_FIXED)
			return DNS_MX_BAD;
		rdlen = dns_mx_get16(msg + end + 8);
		off = end + DNS_MX_RR_FIXED;
		if (rdlen > len - off)
			return DNS_MX_BAD;
		/* Other types (a CNAME on the way) and classes: skipped. */
		if ((int)dns_mx_get16(msg + end) == qtype &&
		    dns_mx_get16(msg + end + 2) == ns_c_in &&
		    dns_mx_rdata(msg, len, off, off + rdlen, qtype, hosts,
		    addrs, port, max, &n) < 0)
			return DNS_MX_BAD;
		off += rdlen;
	}
	return (int)n;
}

static int dns_mx_res_init(struct __res_state *st, const char *resolver,
    struct err *err)
{
	char ip[64];
	const char *colon;
	long port = 53;
	struct in_addr a;

	memset(st, 0, sizeof(*st));
	if (res_ninit(st) != 0)
		return err_set(err, 1, "resolver initialisation failed");
	if (resolver == NULL || *resolver == '\0')
		return 0;
	colon = strchr(resolver, ':');
	snprintf(ip, sizeof(ip), "%.*s", colon != NULL ?
	    (int)(colon - resolver) : (int)strlen(resolver), resolver);
	if (colon != NULL)
		port = strtol(colon + 1, NULL, 10);
	if (inet_pton(AF_INET, ip, &a) != 1 || port <= 0 || port > 65535) {
		res_nclose(st);
		return err_set(err, 0, "smtp_dns_resolver: bad address %s",
		    resolver);
	}
	st->nscount = 1;
	st->nsaddr_list[0].sin_family = AF_INET;
	st->nsaddr_list[0].sin_addr = a;
	st->nsaddr_list[0].sin_port = htons((uint16_t)port);
	return 0;
}

/* One query. Returns the record count (0 for "no such records"), or -1:
 * err->temp 0 for NXDOMAIN, 1 for a failure to get a whole answer. */
static int dns_mx_query(const char *name, const char *resolver, int qtype,
    struct dns_mx_host *hosts, struct sockaddr_storage *addrs, int port,
    size_t max, struct err *err)
{
	struct __res_state st;
	unsigned char *ans;
	int len, n;

	if (dns_mx_res_init(&st, resolver, err) < 0)
		return -1;
	/* Room for the largest message TCP can carry, so no reply is cut
	 * to fit. */
	ans = malloc(DNS_MX_MSG_MAX);
	if (ans == NULL) {
		res_nclose(&st);
		return err_set(err, 1, "out of memory");
	}
	len = res_nquery(&st, name, ns_c_in, qtype, ans, DNS_MX_MSG_MAX);
	if (len < 0) {
		int h = st.res_h_errno;
		res_nclose(&st);
		free(ans);
		if (h == NO_DATA)
			return 0;
		if (h == HOST_NOT_FOUND)
			return err_set(err, 0, "%s: host or domain not found",
			    name);
		return err_set(err, 1, "%s: DNS lookup failed, try again",
		    name);
	}
	res_nclose(&st);
	/* glibc returns the reply's full length when it cut the reply to
	 * fit the buffer (and sets TC): the bytes past the buffer were never
	 * stored, so such a reply is incomplete, never read on. */
	if ((size_t)len > DNS_MX_MSG_MAX)
		n = DNS_MX_TRUNCATED;
	else
		n = dns_mx_parse(ans, (size_t)len, qtype, hosts, addrs, port,
		    max);
	free(ans);
	if (n == DNS_MX_TRUNCATED)
		return err_set(err, 1, "%s: truncated DNS reply, try again",
		    name);
	if (n < 0)
		return err_set(err, 1, "%s: malformed DNS reply", name);
	return n;
}

static int dns_mx_cmp(const void *a, const void *b)
{
	const struct dns_mx_host *x = a, *y = b;

	return x->pref - y->pref;
}

int dns_mx_lookup(const char *domain, const char *resolver,
    struct dns_mx_host **hosts_r, size_t *n_r, struct err *err)
{
	struct dns_mx_host *h = calloc(DNS_MX_MAX, sizeof(*h));
	size_t i, j;
	int n;

	*hosts_r = NULL;
	*n_r = 0;
	if (h == NULL)
		return err_set(err, 1, "out of memory");
	n = dns_mx_query(domain, resolver, ns_t_mx, h, NULL, 0, DNS_MX_MAX, err);
	if (n < 0) {
		free(h);
		return -1;
	}
	if (n == 0) {
		/* RFC 5321 §5.1: no MX, the domain is its own exchanger. */
		snprintf(h[0].name, sizeof(h[0].name), "%s", domain);
		n = 1;
	}
	/* RFC 7505 §3: a single MX "." says the domain takes no mail. */
	if (n == 1 && h[0].name[0] == '\0') {
		free(h);
		return err_set(err, 0, "%s: domain does not accept mail "
		    "(null MX)", domain);
	}
	/* RFC 5321 §5.1: equal preferences in random order, then sort
	 * (qsort is not stable, which is fine after the shuffle). */
	for (i = (size_t)n; i > 1; i--) {
		unsigned int r = 0;
		if (getrandom(&r, sizeof(r), 0) < 0)
			r = 0;
		j = r % i;
		struct dns_mx_host t = h[i - 1];
		h[i - 1] = h[j];
		h[j] = t;
	}
	qsort(h, (size_t)n, sizeof(*h), dns_mx_cmp);
	*hosts_r = h;
	*n_r = (size_t)n;
	return 0;
}

static int dns_mx_literal(const char *host, int port,
    struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return 1;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return 1;
	}
	return 0;
}

static int dns_mx_getaddrinfo(const char *host, int port,
    struct sockaddr_storage *out, size_t max, struct err *err)
{
	struct addrinfo hints, *res, *ai;
	char ports[16];
	size_t n = 0;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(ports, sizeof(ports), "%d", port);
	rc = getaddrinfo(host, ports, &hints, &res);
	if (rc != 0)
		return err_set(err, rc == EAI_NONAME ? 0 : 1, "%s: %s", host,
		    gai_strerror(rc));
	for (ai = res; ai != NULL && n < max; ai = ai->ai_next)
		if (ai->ai_addrlen <= sizeof(*out))
			memcpy(&out[n++], ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(res);
	return n > 0 ? (int)n : err_set(err, 0, "%s: no address", host);
}

int dns_mx_addrs(const char *host, const char *resolver, int port,
    struct sockaddr_storage *out, size_t max, struct err *err)
{
	int n4, n6;

	if (max == 0)
		return err_set(err, 1, "no room for addresses");
	if (dns_mx_literal(host, port, out))
		return 1;
	if (resolver == NULL || *resolver == '\0')
		return dns_mx_getaddrinfo(host, port, out, max, err);
	n4 = dns_mx_query(host, resolver, ns_t_a, NULL, out, port, max, err);
	if (n4 < 0)
		return -1;
	n6 = dns_mx_query(host, resolver, ns_t_aaaa, NULL, out + n4, port,
	    max - (size_t)n4, err);
	if (n6 < 0 && n4 == 0)
		return -1;
	if (n4 + (n6 > 0 ? n6 : 0) == 0)
		return err_set(err, 0, "%s: no A or AAAA record", host);
	return n4 + (n6 > 0 ? n6 : 0);
}
