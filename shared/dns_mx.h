/* dns_mx: MX and address lookups for outbound delivery (RFC 5321 §5.1),
 * through res_nquery. Blocking: call only on the worker pool (work.h).
 * resolver: NULL or "" for the system's (/etc/resolv.conf; addresses also
 * through getaddrinfo, so /etc/hosts works), or "ip:port" (IPv4) to ask
 * one server, e.g. a test's dnsmasq. */
#ifndef DNS_MX_H
#define DNS_MX_H

#include <stddef.h>
#include <sys/socket.h>
#include "err.h"

/* RFC 1035 §2.3.4: 63 octets a label, 255 a name (wire form); a message
 * over TCP is at most 65535 octets (§4.2.2: a 16-bit length). */
#define DNS_MX_LABEL_MAX 63
#define DNS_MX_NAME_MAX 255
#define DNS_MX_MSG_MAX 65535

struct dns_mx_host {
	char name[256];     /* dotted, no final dot; "" is the root (null MX) */
	int pref;
};

/* The domain's mail exchangers, best first; hosts of equal preference in
 * random order. No MX records: the domain itself (the implicit MX). A
 * null MX (RFC 7505) or NXDOMAIN: -1 with err->temp = 0. Server failure,
 * timeout, a truncated or malformed reply: -1 with err->temp = 1.
 * *hosts_r is malloc'd: free(). */
int dns_mx_lookup(const char *domain, const char *resolver,
    struct dns_mx_host **hosts_r, size_t *n_r, struct err *err);

/* A and AAAA addresses of host (or host itself when it is an IP
 * literal), each with port set. Up to max; returns the count (>= 1) or
 * -1 with err (temp as above). */
int dns_mx_addrs(const char *host, const char *resolver, int port,
    struct sockaddr_storage *out, size_t max, struct err *err);

/* dns_mx_parse results other than a count. */
enum dns_mx_parse_rc {
	DNS_MX_BAD = -1,        /* malformed, or not a NOERROR response */
	DNS_MX_TRUNCATED = -2,  /* TC set: the answer section is incomplete */
};

/* Pure: parse the DNS response msg[0..len) to a query of qtype (1 = A,
 * 28 = AAAA, 15 = MX), reading nothing outside it. Every offset, label
 * length, name length and compression pointer is checked (pointers must
 * point back to a prior occurrence, so they cannot loop). For MX, fills
 * hosts with the max best preferences (an MX target must be a host name
 * of letters, digits, '-' and '_'); for A/AAAA, fills addrs (the first
 * max) with port. Records of other types (a CNAME on the way) are
 * checked for bounds and skipped. Returns the number filled (<= max), or
 * an enum dns_mx_parse_rc. */
int dns_mx_parse(const unsigned char *msg, size_t len, int qtype,
    struct dns_mx_host *hosts, struct sockaddr_storage *addrs, int port,
    size_t max);

#endif
