/* dns_mx: resolver calls for the SMTP client, on worker threads. Each
 * call has its own res_state, so threads never share resolver state. The
 * answer parser is plain code over the received bytes (dn_expand does the
 * name compression), bounded by the message length. */
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

static unsigned dns_mx_get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

int dns_mx_parse(const unsigned char *msg, size_t len, int qtype,
    struct dns_mx_host *hosts, struct sockaddr_storage *addrs, int port,
    size_t max)
{
	const unsigned char *p, *end = msg + len;
	unsigned qd, an, i, type, rdlen;
	size_t n = 0;
	int k;

	if (len < 12)
		return -1;
	qd = dns_mx_get16(msg + 4);
	an = dns_mx_get16(msg + 6);
	p = msg + 12;
	for (i = 0; i < qd; i++) {
		if ((k = dn_skipname(p, end)) < 0 || p + k + 4 > end)
			return -1;
		p += k + 4;
	}
	for (i = 0; i < an && n < max; i++) {
		if ((k = dn_skipname(p, end)) < 0 || p + k + 10 > end)
			return -1;
		p += k;
		type = dns_mx_get16(p);
		rdlen = dns_mx_get16(p + 8);
		p += 10;
		if (p + rdlen > end)
			return -1;
		if ((int)type != qtype) {      /* e.g. a CNAME on the way */
			p += rdlen;
			continue;
		}
		if (qtype == ns_t_mx && hosts != NULL) {
			if (rdlen < 3 || dn_expand(msg, end, p + 2,
			    hosts[n].name, sizeof(hosts[n].name)) < 0)
				return -1;
			hosts[n].pref = (int)dns_mx_get16(p);
			n++;
		} else if (qtype == ns_t_a && rdlen == 4 && addrs != NULL) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&addrs[n++];
			memset(sin, 0, sizeof(*sin));
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)port);
			memcpy(&sin->sin_addr, p, 4);
		} else if (qtype == ns_t_aaaa && rdlen == 16 && addrs != NULL) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&addrs[n++];
			memset(s6, 0, sizeof(*s6));
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)port);
			memcpy(&s6->sin6_addr, p, 16);
		}
		p += rdlen;
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
 * err->temp 0 for NXDOMAIN, 1 for a failure to get an answer. */
static int dns_mx_query(const char *name, const char *resolver, int qtype,
    struct dns_mx_host *hosts, struct sockaddr_storage *addrs, int port,
    size_t max, struct err *err)
{
	struct __res_state st;
	unsigned char ans[8192];
	int len, n;

	if (dns_mx_res_init(&st, resolver, err) < 0)
		return -1;
	len = res_nquery(&st, name, ns_c_in, qtype, ans, sizeof(ans));
	if (len < 0) {
		int h = st.res_h_errno;
		res_nclose(&st);
		if (h == NO_DATA)
			return 0;
		if (h == HOST_NOT_FOUND)
			return err_set(err, 0, "%s: host or domain not found",
			    name);
		return err_set(err, 1, "%s: DNS lookup failed, try again",
		    name);
	}
	res_nclose(&st);
	n = dns_mx_parse(ans, (size_t)len, qtype, hosts, addrs, port, max);
	if (n < 0)
		return err_set(err, 1, "%s: malformed DNS answer", name);
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
